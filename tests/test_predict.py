"""Predictions: one ride, CSV in and CSV out with bad rows, and the registry commands' output and errors."""

from __future__ import annotations

import datetime as dt
import io
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from taxifare.core.errors import InputError
from taxifare.core.lines import kept_line_numbers
from taxifare.model.saved import load_model
from taxifare.registry.store import Registry
from taxifare.rides.features import FEATURE_NAMES, days_feature, feature_matrix, ride_features
from taxifare.serving.predict import REFERENCE_RIDE, predict_csv, predict_ride
from tests.conftest import RAW_HEADER, REFERENCE_ROW, assert_clean_error, cli_env, run_cli, write_csv
from tests.training_data import trained_demo, with_registry


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Settings whose registry holds one run, trained well enough to give sensible fares."""
    return trained_demo(tmp_path_factory.mktemp("trained"), 6000, chunk_size=3000, epochs=6, learning_rate=0.005, batch_size=128, members=1)


def test_reference_ride_gets_a_plausible_fare(trained):
    assert 4 < predict_ride(trained, REFERENCE_RIDE) < 40


def test_csv_in_csv_out_keeps_columns_and_reports_bad_rows(trained, tmp_path, caplog):
    good = "k1,7.5,2013-07-06 17:18:00 UTC,-73.950655,40.783282,-73.984365,40.769802,1,hello"
    lines = [
        good,
        "k2,5,2010-01-05 16:52:16 UTC,0,0,0,0,1,zero",  # outside the area
        "k3,6,2010-01-05 16:52:16 UTC,-73.97,40.76",  # too few fields
        "k4,8,not a date,-73.97,40.76,-73.98,40.75,1,x",
        'k5,,2011-08-18 00:35:00 UTC,-73.982738,40.76127,-73.991242,40.750562,2,"quoted, comma"',
        "k6,9,2011-08-18 00:35:00 UTC,-73.982738,40.76127,-73.991242,40.750562,9,crowd",
        "k7,9,2011-08-18 00:35:00 UTC,-73.982738,40.76127,-73.991242,abc,1,nan",
        "k8,9,2011-08-18 00:35:00 UTC,,,-73.991242,40.750562,1,NA",  # missing coordinates
        "k9,9,2011-08-18 00:35:00 UTC,-73.982738,40.76127,-73.991242,40.750562,two,",
        *_DISTINCT_RIDES,  # k10 shares a chunk with k9, k11 and k12 share one
    ]
    rides = write_csv(tmp_path / "rides.csv", lines, header=RAW_HEADER + ",note")
    output = tmp_path / "out" / "predictions.csv"

    result = predict_csv(with_registry(trained, trained.local_registry_path, chunk_size=2), rides, output)

    table = pd.read_csv(output, dtype=str, keep_default_na=False)
    assert list(table.columns) == [*RAW_HEADER.split(","), "note", "predicted_fare", "outside_training_window", "not_predicted_reason"]
    # Every input row, in order; the malformed line k3 keeps its place, its fields empty.
    assert table["key"].tolist() == ["k1", "k2", "", "k4", "k5", "k6", "k7", "k8", "k9", "k10", "k11", "k12"]
    assert table["note"].tolist() == ["hello", "zero", "", "x", "quoted, comma", "crowd", "nan", "NA", "", "a", "b", "c"]
    assert table["not_predicted_reason"].tolist() == [
        "", "outside_nyc", "malformed_line", "bad_datetime", "", "passenger_count_out_of_range", "unparseable_number",
        "missing_value", "unparseable_number", "", "", "",
    ]
    assert table["outside_training_window"].tolist() == ["0", "", "", "", "0", "", "", "", "", "0", "0", "0"]
    # Each fare is its own row's: the rides differ, so a fare moved to another row would not match.
    predicted = {key: fare for key, fare in zip(table["key"], table["predicted_fare"]) if fare}
    expected = {line.split(",")[0]: predict_ride(trained, _ride_of(line)) for line in [good, lines[4], *_DISTINCT_RIDES]}
    assert len(set(round(fare, 2) for fare in expected.values())) == len(expected)
    assert predicted.keys() == expected.keys()
    for key, fare in expected.items():
        assert float(predicted[key]) == pytest.approx(fare, abs=0.006), key
    assert (result.rows_read, result.predicted) == (12, 5)
    assert dict(result.rejected.first_lines) == {
        3: "outside_nyc",
        4: "malformed_line",
        5: "bad_datetime",
        7: "passenger_count_out_of_range",
        8: "unparseable_number",
        9: "missing_value",
        10: "unparseable_number",
    }
    assert "line 4: not predicted: wrong number of fields" in caplog.text


_DISTINCT_RIDES = (
    "k10,7,2012-03-01 08:05:00 UTC,-73.990,40.750,-73.960,40.770,1,a",
    "k11,7,2014-11-20 22:40:00 UTC,-73.870,40.770,-73.980,40.760,3,b",
    "k12,7,2010-05-15 13:00:00 UTC,-74.005,40.710,-73.995,40.730,2,c",
)


def _ride_of(line: str) -> dict:
    """The ride of a RAW_HEADER line, as predict_ride takes it."""
    fields = dict(zip(RAW_HEADER.split(","), line.split(",")))
    return {name: fields[name] for name in REFERENCE_RIDE}


def test_csv_without_fare_column_is_predicted(trained, tmp_path):
    header = "pickup_datetime,pickup_longitude,pickup_latitude,dropoff_longitude,dropoff_latitude,passenger_count"
    rides = write_csv(tmp_path / "rides.csv", ["2013-07-06 17:18:00 UTC,-73.950655,40.783282,-73.984365,40.769802,1"], header=header)
    result = predict_csv(trained, rides, tmp_path / "out.csv")
    assert result.predicted == 1
    assert pd.read_csv(tmp_path / "out.csv").columns[-3] == "predicted_fare"


def test_csv_missing_a_ride_column_is_a_clear_error(trained, tmp_path):
    rides = write_csv(tmp_path / "rides.csv", ["1,2"], header="pickup_datetime,passenger_count")
    with pytest.raises(InputError, match="missing column"):
        predict_csv(trained, rides, tmp_path / "out.csv")


def test_one_ride_outside_the_area_is_a_clear_error(trained):
    with pytest.raises(InputError, match="outside the area the model knows"):
        predict_ride(trained, {**REFERENCE_RIDE, "pickup_latitude": 41.5})


def test_one_ride_reads_the_csv_date_grammar(trained):
    same_time = {**REFERENCE_RIDE, "pickup_datetime": "2013-07-06T17:18:00.000-04:00"}
    assert predict_ride(trained, same_time) == predict_ride(trained, REFERENCE_RIDE)
    for text, fragment in [("2013-07-06 17:18:00 Nowhere/City", "names the time zone Nowhere/City"), ("07/06/2013", "expected YYYY-MM-DD")]:
        with pytest.raises(InputError, match=f"^--pickup-datetime: .*{fragment}"):
            predict_ride(trained, {**REFERENCE_RIDE, "pickup_datetime": text})


def _ride_at(pickup: dt.datetime) -> dict:
    return {**REFERENCE_RIDE, "pickup_datetime": f"{pickup:%Y-%m-%d %H:%M:%S} UTC"}


def test_one_ride_outside_the_training_window_is_predicted_with_a_warning(trained, caplog):
    run = Registry(trained.local_registry_path).latest()
    first, last = run.pickup_window
    assert first < dt.datetime(2013, 7, 6, tzinfo=dt.timezone.utc) < last
    assert 0 < predict_ride(trained, _ride_at(last + dt.timedelta(days=30)))
    window = f"{first:%Y-%m-%d %H:%M:%S} .. {last:%Y-%m-%d %H:%M:%S} New York time"
    assert f"outside the training window of run {run.run_id} ({window}): priced as on the window's nearest day" in caplog.text
    caplog.clear()
    predict_ride(trained, REFERENCE_RIDE)
    assert "outside the training window" not in caplog.text


def test_a_ride_outside_the_training_window_is_priced_as_on_its_nearest_day(trained):
    import keras

    run = Registry(trained.local_registry_path).latest()
    model = load_model(run.model_path)
    first, last = (moment.replace(tzinfo=None) for moment in run.pickup_window)
    ride = {name: [value] for name, value in REFERENCE_RIDE.items() if name != "pickup_datetime"}
    features = feature_matrix(ride_features({**ride, "pickup_datetime": np.array(["2013-07-06T17:18"], dtype="datetime64[s]")}))
    day = FEATURE_NAMES.index("days_since_2009")
    # The fare before the meter's step (embeddings.MeterSteps), where a fifth of a day moves it by cents.
    unstepped = keras.Model(model.inputs[0], model.get_layer("meter_steps").input[1])

    def fare_on(days: float) -> float:
        on_day = features.copy()
        on_day[:, day] = days
        return float(np.asarray(unstepped(on_day, training=False))[0, 0])

    start, end = days_feature(first), days_feature(last)
    assert fare_on(end + 0.5) == fare_on(end + 3.0) == fare_on(end)
    assert fare_on(start - 2.0) == fare_on(start)
    assert fare_on(end - 0.2) != fare_on(end)  # inside the window, the date counts


def test_csv_flags_and_counts_rides_outside_the_training_window(trained, tmp_path):
    first, last = Registry(trained.local_registry_path).latest().pickup_window
    second = dt.timedelta(seconds=1)
    pickups = [first - second, first, dt.datetime(2013, 7, 6, 17, 18, tzinfo=dt.timezone.utc), last, last + second]
    lines = [f"k{i},7.5,{pickup:%Y-%m-%d %H:%M:%S} UTC,-73.950655,40.783282,-73.984365,40.769802,1" for i, pickup in enumerate(pickups)]
    rides = write_csv(tmp_path / "rides.csv", lines)
    result = predict_csv(trained, rides, tmp_path / "out.csv")
    assert pd.read_csv(tmp_path / "out.csv")["outside_training_window"].tolist() == [1, 0, 0, 0, 1]
    assert (result.predicted, result.outside_training_window) == (5, 2)


def test_a_run_that_records_no_training_window_is_not_checked(trained, tmp_path, caplog):
    registry = tmp_path / "registry"
    shutil.copytree(trained.local_registry_path, registry)
    [params_file] = registry.glob("*/params.json")
    params = json.loads(params_file.read_text())
    del params["data"]["pickup_first"]
    params_file.write_text(json.dumps(params))
    rides = write_csv(tmp_path / "rides.csv", ["k0,7.5,2031-01-01 00:00:00 UTC,-73.950655,40.783282,-73.984365,40.769802,1"])
    predict_csv(with_registry(trained, registry), rides, tmp_path / "out.csv")
    assert pd.read_csv(tmp_path / "out.csv")["outside_training_window"].tolist() == [0]
    assert "records no training window" in caplog.text


@pytest.mark.parametrize(
    "kept, skipped, expected",
    [(3, [], [1, 2, 3]), (3, [2], [1, 3, 4]), (2, [1, 2], [3, 4]), (2, [2, 4], [1, 3])],
)
def test_kept_line_numbers(kept, skipped, expected):
    assert kept_line_numbers(kept, np.array(skipped, dtype=np.int64)).tolist() == expected


# The command line, in subprocesses.


def test_pred_cli_one_ride_prints_the_fare(trained, tmp_path):
    result = run_cli(tmp_path, "pred", env=_env(tmp_path, trained))
    assert result.returncode == 0, result.stderr[-2000:]
    assert float(result.stdout.strip()) == pytest.approx(predict_ride(trained, REFERENCE_RIDE), abs=0.006)


def test_pred_cli_unknown_zone_is_one_clear_error(trained, tmp_path):
    result = run_cli(tmp_path, "pred", "--pickup-datetime", "2013-07-06 17:18:00 Nowhere/City", env=_env(tmp_path, trained))
    assert_clean_error(result, 2, "--pickup-datetime:", "the time zone database does not know", "-05:00")
    assert "Warning" not in result.stderr


def test_pred_cli_csv_to_a_file(trained, tmp_path):
    rides = write_csv(tmp_path / "rides.csv", [REFERENCE_ROW, "bad,1,2,3"])
    result = run_cli(tmp_path, "pred", "--input", str(rides), "--output", "out.csv", env=_env(tmp_path, trained))
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout == "out.csv\n"
    table = pd.read_csv(tmp_path / "out.csv", dtype=str, keep_default_na=False)
    assert table["key"].tolist() == ["k0", ""] and table["not_predicted_reason"].tolist() == ["", "malformed_line"]
    assert "line 3: not predicted" in result.stderr


def test_pred_cli_reads_a_headerless_export_on_stdin_and_writes_pure_csv_to_stdout(trained, tmp_path):
    columns = "fare_amount,pickup_datetime,pickup_longitude,pickup_latitude,dropoff_longitude,dropoff_latitude,passenger_count,key"
    good = "7.5;2013-07-06 17:18:00 UTC;-73.950655;40.783282;-73.984365;40.769802;1;k0"
    other = "7.5;2012-03-01 08:05:00 UTC;-73.990;40.750;-73.960;40.770;2;k2"
    rides = [good, "7.5;2013-07-06 17:18:00 UTC;-73.95;41.9;-73.98;40.76;1;far", other]
    result = run_cli(
        tmp_path, "pred", "--input", "-", "--columns", columns, "--delimiter", ";",
        env=_env(tmp_path, trained), input="\n".join(rides) + "\n",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(result.stdout.splitlines()) == 1 + len(rides)  # the CSV and nothing else
    table = pd.read_csv(io.StringIO(result.stdout), sep=";", dtype=str, keep_default_na=False)
    assert list(table.columns) == [*columns.split(","), "predicted_fare", "outside_training_window", "not_predicted_reason"]
    assert table["key"].tolist() == ["k0", "far", "k2"]  # row N of the output is row N of the input
    assert table["not_predicted_reason"].tolist() == ["", "outside_nyc", ""]
    assert table["predicted_fare"][1] == ""
    for row, line in ((0, good), (2, other)):
        ride = dict(zip(columns.split(","), line.split(";")))
        expected = predict_ride(trained, {name: ride[name] for name in REFERENCE_RIDE})
        assert float(table["predicted_fare"][row]) == pytest.approx(expected, abs=0.006), row
    assert float(table["predicted_fare"][0]) != pytest.approx(float(table["predicted_fare"][2]), abs=0.02)
    assert "line 2: not predicted" in result.stderr and "rows predicted" in result.stderr


def test_pred_cli_that_predicts_no_row_exits_2_with_the_top_reasons(trained, tmp_path):
    lines = [
        "k1,5,2010-01-05 16:52:16 UTC,0,0,0,0,1",
        "k2,5,someday,-73.95,40.78,-73.98,40.76,1",
        "k3,5,2010-01-05 16:52:16 UTC,-73.95,41.9,-73.98,40.76,1",
    ]
    rides = write_csv(tmp_path / "rides.csv", lines)
    result = run_cli(tmp_path, "pred", "--input", str(rides), env=_env(tmp_path, trained))
    assert_clean_error(
        result, 2, "rides.csv: no row could be predicted (3 read: outside_nyc 2 (first on line 2: pickup_longitude=0); "
        "bad_datetime 1 (first on line 3: pickup_datetime=someday))",
        "not_predicted_reason column of the CSV on stdout",
    )
    table = pd.read_csv(io.StringIO(result.stdout), dtype=str, keep_default_na=False)
    assert table["not_predicted_reason"].tolist() == ["outside_nyc", "bad_datetime", "outside_nyc"]


def test_a_processed_file_given_to_pred_is_named_for_what_it_is(trained, tmp_path):
    with pytest.raises(InputError, match="looks like a processed file"):
        predict_csv(trained, trained.processed_path, tmp_path / "out.csv")


def test_pred_output_without_input_is_a_clear_error(tmp_path):
    assert_clean_error(run_cli(tmp_path, "pred", "--output", "out.csv"), 2, "go with --input")


def test_models_show_prints_params_and_metrics(trained, tmp_path):
    run_id = _run_ids(trained)[0]
    result = run_cli(tmp_path, "models", "show", run_id, env=_env(tmp_path, trained))
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["run_id"] == run_id
    assert shown["params"]["preprocessor_version"] and shown["metrics"]["final"]["test_mae"] > 0


@pytest.mark.parametrize("command", [("pred",), ("models", "show", "20250101T000000Z-abcdef"), ("models", "rm", "20250101T000000Z-abcdef")])
def test_no_registry_says_to_train_first(tmp_path, command):
    assert_clean_error(run_cli(tmp_path, *command), 2, "run `taxifare train` first")


@pytest.mark.parametrize("command", [("pred", "--model"), ("models", "show")])
def test_unknown_run_id_is_a_clear_error(trained, tmp_path, command):
    result = run_cli(tmp_path, *command, "../../etc", env=_env(tmp_path, trained))
    assert_clean_error(result, 2, "no run '../../etc'", "taxifare models")


@pytest.mark.parametrize("command", [("pred", "--model"), ("models", "show")])
def test_corrupt_model_file_is_a_clear_error(trained, tmp_path, command):
    registry = tmp_path / "registry"
    shutil.copytree(trained.local_registry_path, registry)
    run_id = _run_ids(trained)[0]
    model_file = registry / run_id / "model.keras"
    model_file.write_bytes(model_file.read_bytes()[:5000])
    result = run_cli(tmp_path, *command, run_id, env=_env(tmp_path, trained, registry=registry))
    assert_clean_error(result, 2, "model file is corrupt")


def _run_ids(settings) -> list[str]:
    return sorted(path.name for path in settings.local_registry_path.iterdir() if not path.name.startswith("."))


def _env(tmp_path, settings, registry=None):
    return cli_env(tmp_path, LOCAL_REGISTRY_PATH=str(registry or settings.local_registry_path))


def test_warnings_about_bad_lines_stop_at_twenty_and_say_how_many_more(trained, tmp_path, caplog):
    bad = "k,6,not a date,-73.97,40.76,-73.98,40.75,1"
    rides = write_csv(tmp_path / "rides.csv", [REFERENCE_ROW, *[bad] * 25])
    with caplog.at_level("WARNING", logger="taxifare"):
        result = predict_csv(with_registry(trained, trained.local_registry_path, chunk_size=7), rides, tmp_path / "out.csv")
    warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert result.rejected.counts["bad_datetime"] == 25
    assert [message for message in warnings if "not predicted" in message][-1] == (
        "... and 5 more lines not predicted (counted by reason in the summary)"
    )
    assert sum(message.startswith("line ") for message in warnings) == 20
