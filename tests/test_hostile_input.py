"""Hostile and malformed input: every case ends in rows rejected and counted, or one clear line and exit 2."""

import json

import pandas as pd
import pytest

from taxifare.rides.features import FEATURE_NAMES
from tests.conftest import RAW_HEADER, REFERENCE_ROW, assert_clean_error, cli_env, run_cli

ROW = "k,{fare},{when},{plon},{plat},-73.984365,40.769802,1"
GOOD = dict(fare="7.5", when="2013-07-06 17:18:00 UTC", plon="-73.950655", plat="40.783282")


def row(**changes):
    return ROW.format(**{**GOOD, **changes})


def preprocess_bytes(tmp_path, content: bytes):
    path = tmp_path / "input.csv"
    path.write_bytes(content)
    result = run_cli(tmp_path, "preprocess", "--input", str(path))
    manifest_file = tmp_path / "data" / "processed" / "processed_2009-01-01_2015-01-01_input.json"
    manifest = json.loads(manifest_file.read_text()) if manifest_file.exists() else None
    return result, manifest


def lines(*rows, header=RAW_HEADER):
    return ("\n".join([header, REFERENCE_ROW, *rows]) + "\n").encode()


@pytest.mark.parametrize(
    "content, rule",
    [
        pytest.param(lines(row(fare="NaN")), "missing_value", id="nan-as-text"),
        pytest.param(lines(row(fare="inf")), "unparseable_number", id="inf-as-text"),
        pytest.param(lines(row(plat="-Infinity")), "unparseable_number", id="minus-infinity"),
        pytest.param(lines(row(fare="1e308")), "fare_out_of_range", id="1e308"),
        pytest.param(lines(row(fare="1e999")), "unparseable_number", id="overflowing-number"),
        pytest.param(lines(row(fare="-0.0")), "fare_out_of_range", id="negative-zero-fare"),
        pytest.param(lines(row(when="1969-12-31 23:59:59 UTC")), "outside_date_window", id="before-1970"),
        pytest.param(lines(row(when="2101-03-01 00:00:00 UTC")), "outside_date_window", id="after-2100"),
        pytest.param(lines(row(when="2013-07-06 17:18:00 PST")), "bad_datetime", id="named-time-zone"),
        pytest.param(lines(row(when="2013-02-29 10:00:00 UTC")), "bad_datetime", id="impossible-date"),
        pytest.param(lines(row(fare='"7,5"')), "unparseable_number", id="quoted-comma-in-number"),
        pytest.param(lines(row(plon="-73.95\xff\xfe".encode("latin-1").decode("latin-1"))), "unparseable_number", id="latin1-text"),
        pytest.param(lines().replace(b"\n", b"\r\n") + b"k,7", "malformed_line", id="crlf-and-truncated"),
        pytest.param(lines("k,1,2,3"), "malformed_line", id="too-few-fields"),
        pytest.param(lines(row() + ",surplus"), "malformed_line", id="too-many-fields"),
    ],
)
def test_bad_rows_are_rejected_and_counted(tmp_path, content, rule):
    result, manifest = preprocess_bytes(tmp_path, content)
    assert result.returncode == 0, result.stderr
    assert manifest["rows_kept"] == 1
    assert {name: count for name, count in manifest["rejected"].items() if count} == {rule: 1}


def test_non_utf8_bytes_inside_a_value_reject_only_that_row(tmp_path):
    content = lines(row(plon="X")).replace(b",X,", b",-73.9\xff\xfe,")
    result, manifest = preprocess_bytes(tmp_path, content)
    assert result.returncode == 0, result.stderr
    assert manifest["rows_kept"] == 1 and manifest["rejected"]["unparseable_number"] == 1


def test_time_zone_offsets_are_converted_to_new_york_wall_clock(tmp_path):
    # The reference's " UTC" is the New York wall clock (as the public data writes it): 17:18 EDT is 21:18Z.
    content = lines(row(when="2013-07-06T17:18:00-04:00"), row(when="2013-07-06T21:18:00Z"))
    result, manifest = preprocess_bytes(tmp_path, content)
    assert manifest["rows_kept"] == 1 and manifest["rejected"]["duplicate"] == 2


def test_a_utf8_bom_is_ignored(tmp_path):
    result, manifest = preprocess_bytes(tmp_path, b"\xef\xbb\xbf" + lines())
    assert result.returncode == 0 and manifest["rows_kept"] == 1


def test_negative_zero_never_reaches_the_output(tmp_path):
    # Rides whose features are exactly zero: local midnight (hour_sin), one passenger, dropoff at the
    # pickup (both distances); pickup at the 2009 epoch, at JFK, dropoff in Midtown (landmark distances).
    zero_features = {
        1: ["hour_sin", "passenger_count_scaled", "haversine_distance", "manhattan_distance"],
        2: ["days_since_2009", "pickup_distance_jfk", "dropoff_distance_midtown"],
    }
    content = lines(
        "z1,8,2013-07-07 00:00:00 UTC,-73.984365,40.769802,-73.984365,40.769802,1",
        "z2,52,2009-01-01 00:00:00 UTC,-73.7781,40.6413,-73.9840,40.7549,1",
        "z3,-0.0,2013-07-06 18:00:00 UTC,-73.950655,40.783282,-73.984365,40.769802,1",
        "z4,9,2013-07-06 18:00:00 UTC,-73.950655,40.783282,-73.984365,40.769802,-0",
    )
    result, manifest = preprocess_bytes(tmp_path, content)
    assert result.returncode == 0, result.stderr
    assert manifest["rows_kept"] == 3 and manifest["rejected"]["fare_out_of_range"] == 1
    assert manifest["rejected"]["passenger_count_out_of_range"] == 1
    output = tmp_path / "data" / "processed" / "processed_2009-01-01_2015-01-01_input.csv"
    text = output.read_text().splitlines()
    processed = pd.read_csv(output)
    for position, names in zero_features.items():  # after the reference row
        assert (processed.loc[position, names] == 0).all(), processed.loc[position, names]
    signed_zeros = [field for line in text[1:] for field in line.split(",") if field.startswith("-") and float(field) == 0]
    assert signed_zeros == []


def test_a_single_ten_megabyte_line(tmp_path):
    huge = "k" * 10_000_000 + row(fare="11")[1:]
    result, manifest = preprocess_bytes(tmp_path, lines(huge, row(fare="9")))
    assert result.returncode == 0, result.stderr
    assert manifest["rows_kept"] == 3


@pytest.mark.parametrize(
    "content, fragment",
    [
        pytest.param(bytes(range(256)) * 40, "not a text CSV file", id="binary-garbage"),
        pytest.param(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100, "not a text CSV file", id="an-image"),
        pytest.param(RAW_HEADER.replace("key", "passenger_count").encode() + b"\n", "named more than once", id="column-twice"),
        pytest.param(b"just some text\nwithout the columns\n", "missing column(s) fare_amount", id="plain-text"),
        pytest.param(b"", "is empty", id="empty"),
    ],
)
def test_unusable_files_are_one_clear_line(tmp_path, content, fragment):
    result, _ = preprocess_bytes(tmp_path, content)
    assert_clean_error(result, 2, fragment)


@pytest.mark.parametrize(
    "env, fragment",
    [
        pytest.param({"CHUNK_SIZE": "0"}, "CHUNK_SIZE: expected a number from 1", id="chunk-zero"),
        pytest.param({"CHUNK_SIZE": "-100"}, "CHUNK_SIZE: expected a number from 1", id="chunk-negative"),
        pytest.param({"CHUNK_SIZE": "1" + "0" * 30}, "CHUNK_SIZE: expected a number from 1", id="chunk-absurd"),
        pytest.param({"CHUNK_SIZE": "1e5"}, "expected a whole number", id="chunk-float"),
        pytest.param({"MIN_DATE": "2016-01-01"}, "must be before", id="min-after-max"),
        pytest.param({"MAX_DATE": "31/31/2014"}, "MAX_DATE: could not read", id="bad-date"),
        pytest.param({"DATA_SIZE": "a/b"}, "DATA_SIZE: 'a/b' is not a plain name", id="size-slash"),
        pytest.param({"DATA_SIZE": ".."}, "is not a plain name", id="size-dotdot"),
        pytest.param({"DATA_SIZE": "1k`; DROP"}, "is not a plain name", id="size-backtick"),
        pytest.param({"BQ_DATASET": "taxifare;"}, "BQ_DATASET", id="dataset-semicolon"),
        pytest.param({"GCP_PROJECT": "my project"}, "GCP_PROJECT", id="project-space"),
    ],
)
def test_bad_environment_values(tmp_path, env, fragment):
    result = run_cli(tmp_path, "preprocess", env=cli_env(tmp_path, **env))
    assert_clean_error(result, 2, fragment)


def test_bad_dotenv_value_names_the_file(tmp_path):
    (tmp_path / ".env").write_text("CHUNK_SIZE=lots\n")
    assert_clean_error(run_cli(tmp_path, "preprocess"), 2, "CHUNK_SIZE (.env): expected a whole number")


def test_an_unknown_flag_is_a_usage_error(tmp_path):
    result = run_cli(tmp_path, "preprocess", "--chunksize", "5")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "No such option" in result.stderr


def test_output_columns_survive_hostile_rows(tmp_path):
    result, manifest = preprocess_bytes(tmp_path, lines(row(fare="NaN"), row(fare="1e308"), "k,1,2"))
    processed = pd.read_csv(tmp_path / "data" / "processed" / "processed_2009-01-01_2015-01-01_input.csv")
    assert list(processed.columns) == [*FEATURE_NAMES, "fare_amount"] and len(processed) == 1
    assert manifest["rows_read"] == 4
