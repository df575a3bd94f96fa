import datetime as dt
from pathlib import Path

import pytest

from taxifare.core.config import load_settings
from taxifare.core.errors import InputError


def test_defaults(tmp_path):
    settings = load_settings(environ={}, dotenv_path=tmp_path / "absent.env")
    assert settings.min_date == dt.datetime(2009, 1, 1)
    assert settings.max_date == dt.datetime(2015, 1, 1)
    assert settings.utc_label == "wall-clock"
    assert settings.chunk_size == 100_000
    assert settings.data_size == "demo"
    assert settings.local_data_path == Path("~/.taxifare/data").expanduser()
    assert settings.raw_cache_path.name == "query_2009-01-01_2015-01-01_demo.csv"
    assert settings.processed_path.name == "processed_2009-01-01_2015-01-01_demo.csv"


def test_precedence_flag_over_environment_over_dotenv_over_default(tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text("# comment\nexport CHUNK_SIZE=11\nDATA_SIZE='from_dotenv'\nMIN_DATE=2010-01-01\nSEED=3\n")
    environ = {"CHUNK_SIZE": "22", "DATA_SIZE": "from_env"}
    settings = load_settings({"chunk_size": 33}, environ=environ, dotenv_path=dotenv)
    assert settings.chunk_size == 33  # flag
    assert settings.data_size == "from_env"  # environment
    assert settings.min_date.year == 2010 and settings.seed == 3  # .env
    assert settings.batch_size == 256  # default


def test_training_defaults_and_model_flags(tmp_path):
    settings = load_settings(environ={}, dotenv_path=None)
    assert (settings.epochs, settings.patience, settings.lr_patience, settings.eval_every) == (100, 8, 3, 10)
    assert (settings.hidden_units, settings.dropout, settings.loss, settings.learning_rate) == ((128, 64), 0.1, "mae", 0.002)
    custom = load_settings({"hidden_units": " 64, 32 ", "loss": "MAE", "dropout": "0"}, environ={}, dotenv_path=None)
    assert (custom.hidden_units, custom.loss, custom.dropout) == ((64, 32), "mae", 0.0)


@pytest.mark.parametrize(
    "environ, fragment",
    [
        ({"CHUNK_SIZE": "0"}, "CHUNK_SIZE: expected a number from 1"),
        ({"CHUNK_SIZE": "-5"}, "CHUNK_SIZE"),
        ({"CHUNK_SIZE": "99999999999"}, "CHUNK_SIZE"),
        ({"CHUNK_SIZE": "ten"}, "expected a whole number"),
        ({"DATA_SIZE": "../etc"}, "not a plain name"),
        ({"DATA_SIZE": "a/b"}, "not a plain name"),
        ({"DATA_SIZE": "x`y"}, "not a plain name"),
        ({"BQ_DATASET": "taxi;drop"}, "BigQuery dataset"),
        ({"GCP_PROJECT_DATA": "bad`project"}, "project id"),
        ({"MIN_DATE": "yesterday-ish"}, "could not read"),
        ({"MIN_DATE": "2015-01-01", "MAX_DATE": "2010-01-01"}, "must be before"),
        ({"LEARNING_RATE": "nan"}, "positive finite"),
        ({"HIDDEN_UNITS": "256,,64"}, "HIDDEN_UNITS: expected layer widths"),
        ({"HIDDEN_UNITS": "256;128"}, "e.g. 256,128,64"),
        ({"HIDDEN_UNITS": "0"}, "HIDDEN_UNITS"),
        ({"DROPOUT": "1"}, "DROPOUT: expected a number from 0 to below 1"),
        ({"DROPOUT": "-0.1"}, "DROPOUT"),
        ({"LOSS": "hinge"}, "LOSS: expected one of huber, mse, mae"),
        ({"PATIENCE": "0"}, "PATIENCE: expected a number from 1"),
        ({"EVAL_EVERY": "0"}, "EVAL_EVERY"),
    ],
)
def test_bad_values_are_clear_input_errors(tmp_path, environ, fragment):
    with pytest.raises(InputError, match=None) as caught:
        load_settings(environ=environ, dotenv_path=None)
    assert fragment in str(caught.value)


def test_dates_are_new_york_wall_clock_times_and_utc_label_says_what_utc_means(tmp_path):
    settings = load_settings(
        environ={"MIN_DATE": "2013-07-06T16:00:00.000Z", "MAX_DATE": "2013-07-08 00:00:00 UTC"}, dotenv_path=None
    )
    assert settings.min_date == dt.datetime(2013, 7, 6, 12)
    assert settings.max_date == dt.datetime(2013, 7, 8)
    assert settings.raw_cache_path.name == "query_2013-07-06T120000_2013-07-08_demo.csv"
    dotenv = tmp_path / ".env"
    dotenv.write_text("UTC_LABEL=instant\n")
    instant = load_settings({"max_date": "2013-07-08 00:00:00 UTC"}, environ={"MIN_DATE": "2013-07-06 16:00:00 UTC"}, dotenv_path=dotenv)
    assert (instant.utc_label, instant.min_date, instant.max_date) == ("instant", dt.datetime(2013, 7, 6, 12), dt.datetime(2013, 7, 7, 20))
    with pytest.raises(InputError, match="UTC_LABEL: expected one of wall-clock, instant; received 'utc'"):
        load_settings(environ={"UTC_LABEL": "utc"}, dotenv_path=None)


@pytest.mark.parametrize(
    "text, expected",
    [("July 8 2013", "expected YYYY-MM-DD"), ("01/02/2010", "expected YYYY-MM-DD"), ("Jan 2013", "expected YYYY-MM-DD"),
     ("March", "expected YYYY-MM-DD"), ("2013-07-06 17:18:00 Nowhere/City", "expected a zone such as America/New_York")],
)
def test_ambiguous_dates_and_unknown_zones_are_refused_with_the_expected_form(text, expected):
    with pytest.raises(InputError) as caught:
        load_settings({"max_date": text}, environ={}, dotenv_path=None)
    assert str(caught.value).startswith("--max-date: ")
    assert expected in str(caught.value)


def test_dotenv_comments_quotes_and_export(tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text(
        "LOCAL_DATA_PATH=/srv/data  # where the rides go\n"
        "export LOCAL_REGISTRY_PATH='/srv/runs # not a comment'\n"
        'DATA_SIZE="1k"  # quoted\n'
        "MIN_DATE=2010-01-01T00:00:00Z\n"
    )
    settings = load_settings(environ={}, dotenv_path=dotenv)
    assert settings.local_data_path == Path("/srv/data")
    assert settings.local_registry_path == Path("/srv/runs # not a comment")
    assert settings.data_size == "1k"
    assert settings.min_date == dt.datetime(2009, 12, 31, 19)  # 2010-01-01T00:00:00Z in New York


@pytest.mark.parametrize("line, suggestion", [("EPOCH=20", "EPOCHS"), ("epochs=20", "EPOCHS"), ("DATA_PATH=/x", "LOCAL_DATA_PATH")])
def test_misspelt_dotenv_setting_is_an_error_with_a_suggestion(tmp_path, line, suggestion):
    dotenv = tmp_path / ".env"
    dotenv.write_text(f"SEED=1\n{line}\n")
    with pytest.raises(InputError) as caught:
        load_settings(environ={}, dotenv_path=dotenv)
    key = line.partition("=")[0]
    assert str(caught.value) == f"{dotenv}:2: unknown setting {key} in .env; did you mean {suggestion}?"


def test_foreign_dotenv_keys_are_ignored_with_a_warning_and_the_environment_is_not_checked(tmp_path, caplog):
    dotenv = tmp_path / ".env"
    dotenv.write_text("GOOGLE_APPLICATION_CREDENTIALS=/keys/sa.json\nEPOCHS=7\n")
    settings = load_settings(environ={"EPOCH": "20", "PATH": "/bin"}, dotenv_path=dotenv)
    assert settings.epochs == 7
    warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert warnings == [f"{dotenv}:1: GOOGLE_APPLICATION_CREDENTIALS is not a taxifare setting; ignored (taxifare does not export .env values)"]


def test_malformed_dotenv_line(tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text("CHUNK_SIZE 5\n")
    with pytest.raises(InputError, match=r"\.env:1: expected KEY=VALUE"):
        load_settings(environ={}, dotenv_path=dotenv)
