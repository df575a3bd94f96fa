import json

import numpy as np
import pandas as pd
import pytest

from taxifare.core.config import load_settings
from taxifare.core.errors import InputError
from taxifare.preprocessing.run import preprocess
from taxifare.preprocessing.sink import manifest_path
from taxifare.rides.features import FEATURE_NAMES, PREPROCESSOR_VERSION
from taxifare.sources.csv_file import CsvRideSource
from tests.conftest import RAW_HEADER, REFERENCE_ROW, assert_clean_error, run_cli, write_csv


def settings_for(tmp_path, **flags):
    return load_settings({"local_data_path": str(tmp_path / "data"), **flags}, environ={}, dotenv_path=None)


def run(tmp_path, path, **flags):
    return preprocess(settings_for(tmp_path, **flags), input_path=path)


@pytest.mark.parametrize(
    "raw, small_chunks, duplicates, chunks_written",
    [("synthetic_10k", 500, 200, 20), ("real_102k", 1_000, 40_000, 103)],
)
def test_chunk_size_does_not_change_the_output(tmp_path, request, raw, small_chunks, duplicates, chunks_written):
    path = request.getfixturevalue(raw)
    small = run(tmp_path, path, chunk_size=small_chunks, data_size="small")
    large = run(tmp_path, path, chunk_size=100_000, data_size="large")
    assert small.output.read_bytes() == large.output.read_bytes()
    assert small.manifest["rejected"] == large.manifest["rejected"]
    assert small.manifest["rejected"]["duplicate"] > duplicates
    assert small.manifest["chunks_written"] == chunks_written
    assert large.manifest["chunks_written"] == -(-small.manifest["rows_read"] // 100_000)


def test_processed_file_and_manifest(tmp_path, rides_1k):
    result = run(tmp_path, rides_1k)
    processed = pd.read_csv(result.output)
    assert list(processed.columns) == [*FEATURE_NAMES, "fare_amount"]
    manifest = json.loads(manifest_path(result.output).read_text())
    assert manifest["complete"] is True
    assert manifest["feature_names"] == list(FEATURE_NAMES)
    assert manifest["preprocessor_version"] == PREPROCESSOR_VERSION
    assert manifest["rows_read"] == 1000
    assert manifest["rows_kept"] == len(processed)
    assert manifest["rows_kept"] + sum(manifest["rejected"].values()) == 1000
    assert manifest["rejected"]["zero_coordinates"] > 0
    assert manifest["bytes"] == result.output.stat().st_size
    assert manifest["source"] == {"kind": "csv", "path": str(rides_1k), "layout": "taxifare's own names, as in the Kaggle and BigQuery exports"}
    # One-hot columns are written as integers, the rest as float32 text.
    line = result.output.read_text().splitlines()[1].split(",")
    assert line[FEATURE_NAMES.index("dow_mon")] in {"0", "1"}


def test_date_window_is_half_open_in_utc(tmp_path):
    lines = [
        "a,5,2012-12-31 23:59:59 UTC,-73.95,40.78,-73.98,40.76,1",
        "b,6,2013-01-01 00:00:00 UTC,-73.95,40.78,-73.98,40.76,1",
        "c,7,2013-06-30 23:59:59 UTC,-73.95,40.78,-73.98,40.76,1",
        "d,8,2013-07-01 00:00:00 UTC,-73.95,40.78,-73.98,40.76,1",
        "e,9,2013-01-01 03:00:00+05:00,-73.95,40.78,-73.98,40.76,1",  # 2012-12-31 22:00 UTC
    ]
    path = write_csv(tmp_path / "window.csv", lines)
    result = run(tmp_path, path, min_date="2013-01-01", max_date="2013-07-01")
    assert result.manifest["rows_kept"] == 2
    assert result.manifest["rejected"]["outside_date_window"] == 3
    assert pd.read_csv(result.output)["fare_amount"].tolist() == [6, 7]


def test_complete_output_is_reused_unless_forced(tmp_path, synthetic_1k):
    first = run(tmp_path, synthetic_1k)
    modified = first.output.stat().st_mtime_ns
    again = run(tmp_path, synthetic_1k)
    assert again.reused and again.output.stat().st_mtime_ns == modified
    forced = preprocess(settings_for(tmp_path), input_path=synthetic_1k, force=True)
    assert not forced.reused and forced.output.read_bytes() == first.output.read_bytes()


def test_extra_and_reordered_columns_windows_line_endings_and_a_truncated_last_line(tmp_path):
    header = "passenger_count,note,dropoff_latitude,dropoff_longitude,pickup_latitude,pickup_longitude,pickup_datetime,fare_amount"
    lines = [
        '1,"hello, world",40.769802,-73.984365,40.783282,-73.950655,2013-07-06 17:18:00 UTC,7.5',
        "2,x,40.76,-73.98,40.78,-73.95,2013-07-07 17:18:00 UTC,8.5",
        "2,x,40.76,-73.98,40.78",
    ]
    path = tmp_path / "odd.csv"
    path.write_bytes(("\r\n".join([header, *lines])).encode())  # no final newline either
    result = run(tmp_path, path)
    assert result.manifest["rows_kept"] == 2
    assert result.manifest["rejected"]["malformed_line"] == 1
    reference = run(tmp_path, write_csv(tmp_path / "ref.csv", [REFERENCE_ROW]), data_size="ref")
    assert result.output.read_text().splitlines()[1] == reference.output.read_text().splitlines()[1]


def test_text_in_numbers_and_bad_datetimes_are_counted_not_fatal(tmp_path):
    lines = [
        REFERENCE_ROW,
        "k1,abc,2013-07-06 17:18:00 UTC,-73.95,40.78,-73.98,40.76,1",
        "k2,7.5,2013-07-06 17:18:00 UTC,west,40.78,-73.98,40.76,1",
        "k3,7.5,06/07/2013 17:18,-73.95,40.78,-73.98,40.76,1",
        "k4,7.5,2013-02-30 10:00:00 UTC,-73.95,40.78,-73.98,40.76,1",
    ]
    result = run(tmp_path, write_csv(tmp_path / "bad.csv", lines))
    assert result.manifest["rows_kept"] == 1
    assert result.manifest["rejected"]["unparseable_number"] == 2
    assert result.manifest["rejected"]["bad_datetime"] == 2


def test_header_only_gives_an_empty_complete_output_and_exit_2(tmp_path):
    path = write_csv(tmp_path / "header.csv", [])
    with pytest.raises(InputError, match="read no rows from CSV .*header.csv .*; expected raw rides"):
        run(tmp_path, path)
    output = settings_for(tmp_path, data_size="header").processed_path  # named after the input
    assert output.read_text().splitlines() == [",".join([*FEATURE_NAMES, "fare_amount"])]
    manifest = json.loads(manifest_path(output).read_text())
    assert manifest["complete"] and manifest["rows_read"] == 0


UNUSABLE = [
    "k1,7.5,2013-07-06 17:18:00 UTC,-73.95",  # line 2: malformed
    "",  # line 3: empty, skipped without a count
    "k2,-5,2013-07-06 17:18:00 UTC,-73.95,40.78,-73.98,40.76,1",
    "k3,7.5,2008-01-01 00:00:00 UTC,-73.95,40.78,-73.98,40.76,1",
    "\r",  # line 6: empty too
    "k4,-5,2013-07-06 17:18:00 UTC,-73.95,40.78,-73.98,40.76,1",  # a repeat of line 4
    "k5,-6.5,2013-07-06 17:18:00 UTC,-73.95,40.78,-73.98,40.76,1",
    "k6,7.5,2013-07-06 17:18:00 UTC,-73.95,41.5,-73.98,40.76,1",
    "k7,7.5,2013-07-06 17:18:00 UTC,-73.95,40.78,-73.98,40.76,1,extra",
]


def test_each_rule_keeps_its_first_value_and_line_whatever_the_blocks(tmp_path, monkeypatch):
    path = write_csv(tmp_path / "unusable.csv", UNUSABLE)
    expected = {
        "malformed_line": {"line": 2, "value": "k1,7.5,2013-07-06 17:18:00 UTC,-73.95"},
        "outside_date_window": {"line": 5, "value": "pickup_datetime=2008-01-01 00:00:00 UTC"},
        "duplicate": {"line": 7},
        "fare_out_of_range": {"line": 4, "value": "fare_amount=-5"},
        "outside_nyc": {"line": 9, "value": "pickup_latitude=41.5"},
    }
    for block_size in (1 << 20, 130):  # one block, or a block per two lines (130 bytes: the header fits)
        monkeypatch.setattr("taxifare.sources.raw_csv.BLOCK_SIZE", block_size)
        with pytest.raises(InputError):
            run(tmp_path, path, chunk_size=2)
        manifest = json.loads(manifest_path(settings_for(tmp_path, data_size="unusable").processed_path).read_text())
        assert manifest["rejected_samples"] == expected, block_size
        assert manifest["rejected"]["malformed_line"] == 2 and manifest["rejected"]["fare_out_of_range"] == 2


def test_rows_come_in_the_order_of_the_file_whatever_the_blocks(tmp_path, monkeypatch):
    """Blocks are parsed a block ahead, in a thread: the rows, the malformed lines and the line of each row
    still come in the order of the file, as from one block."""
    lines = [f"k{i},{i}.5,2013-07-06 17:18:00 UTC,-73.95,40.78,-73.98,40.76,1" if i % 5 else f"k{i},{i}" for i in range(60)]
    path = write_csv(tmp_path / "rides.csv", lines)
    read = {}
    for block_size in (1 << 20, 100):  # one block, or a block per line or two (once the header is read)
        source = CsvRideSource(path, chunk_size=7)
        monkeypatch.setattr("taxifare.sources.raw_csv.BLOCK_SIZE", block_size)
        fares = [fare for chunk in source.chunks() for fare in chunk.column("fare_amount").to_pylist()]
        read[block_size] = (fares, source.malformed_rows, source.first_malformed, source.lines_of(np.arange(len(fares))).tolist())
    assert read[100] == read[1 << 20]
    assert read[100][:3] == ([f"{i}.5" for i in range(60) if i % 5], 12, (2, "k0,0"))


def test_empty_lines_without_carriage_returns_still_count_in_the_lines_of_the_samples(tmp_path):
    good = "k1,7.5,2013-07-06 17:18:00 UTC,-73.95,40.78,-73.98,40.76,1"
    lines = [good, "", "", "k2,-5,2013-07-06 17:18:00 UTC,-73.95,40.78,-73.98,40.76,1", "",
             "k3,7.5,2013-07-06 17:18:00 UTC,-73.95,41.5,-73.98,40.76,1", "k4,7.5,2013-07-06 17:18:00 UTC,-73.95"]
    run(tmp_path, write_csv(tmp_path / "gaps.csv", lines))
    manifest = json.loads(manifest_path(settings_for(tmp_path, data_size="gaps").processed_path).read_text())
    assert manifest["rejected_samples"] == {
        "malformed_line": {"line": 8, "value": "k4,7.5,2013-07-06 17:18:00 UTC,-73.95"},
        "fare_out_of_range": {"line": 5, "value": "fare_amount=-5"},
        "outside_nyc": {"line": 7, "value": "pickup_latitude=41.5"},
    }


def test_keeping_no_row_exits_2_with_the_main_reasons_their_first_values_and_lines(tmp_path):
    result = run_cli(tmp_path, "preprocess", "--input", str(write_csv(tmp_path / "unusable.csv", UNUSABLE)))
    assert_clean_error(
        result, 2,
        "preprocess kept none of the 7 rows it read: malformed_line 2 (first on line 2: k1,7.5,2013-07-06 17:18:00 UTC,-73.95); "
        "fare_out_of_range 2 (first on line 4: fare_amount=-5); outside_date_window 1 (first on line 5: pickup_datetime=2008-01-01 00:00:00 UTC); "
        "2 more reasons",
    )
    assert "fare_out_of_range:   2 (first on line 4: fare_amount=-5)" in result.stderr


@pytest.mark.parametrize(
    "content, fragments",
    [
        (None, ["no such file"]),
        (b"", ["is empty"]),
        (b"\n\n", ["is empty"]),
        (b"fare_amount,pickup_datetime\n7,2013-07-06 17:18:00 UTC\n", ["missing column(s) pickup_longitude"]),
        (RAW_HEADER.replace("key", "fare_amount").encode() + b"\n", ["named more than once: fare_amount"]),
        (b"\x00\xff\xfe garbage \x81\x82\n\x00\x01", ["not a text CSV file"]),
    ],
)
def test_unusable_files_give_one_clear_line_and_exit_2(tmp_path, content, fragments):
    path = tmp_path / "input.csv"
    if content is not None:
        path.write_bytes(content)
    result = run_cli(tmp_path, "preprocess", "--input", str(path))
    assert_clean_error(result, 2, str(path), *fragments)


def test_cli_runs_preprocess_and_prints_the_output_path(tmp_path, synthetic_1k):
    result = run_cli(tmp_path, "preprocess", "--input", str(synthetic_1k), "--chunk-size", "300", "--data-size", "1k")
    assert result.returncode == 0, result.stderr
    output = tmp_path / "data" / "processed" / "processed_2009-01-01_2015-01-01_1k.csv"
    assert result.stdout.strip() == str(output)
    assert "rows kept" in result.stderr and "peak memory" in result.stderr
    assert json.loads(manifest_path(output).read_text())["chunks_written"] == 4


def test_cli_without_raw_data_says_what_to_do(tmp_path):
    result = run_cli(tmp_path, "preprocess", "--data-size", "200k")
    assert_clean_error(result, 2, "query_2009-01-01_2015-01-01_200k.csv", "--input")


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--chunk-size", "0"], "--chunk-size: expected a number from 1"),
        (["--data-size", "../x"], "not a plain name"),
        (["--min-date", "2015-01-01", "--max-date", "2014-01-01"], "must be before"),
        (["--min-date", "someday"], "could not read"),
    ],
)
def test_cli_bad_flags(tmp_path, args, fragment):
    assert_clean_error(run_cli(tmp_path, "preprocess", *args), 2, fragment)


def test_demo_data_then_preprocess(tmp_path):
    made = run_cli(tmp_path, "demo-data", "--rows", "5000")
    assert made.returncode == 0, made.stderr
    raw = pd.read_csv(made.stdout.strip())
    assert raw["key"].str.startswith("synthetic-").all()
    done = run_cli(tmp_path, "preprocess")
    assert done.returncode == 0, done.stderr
    manifest = json.loads(manifest_path(tmp_path / "data" / "processed" / "processed_2009-01-01_2015-01-01_demo.csv").read_text())
    for rule in ("duplicate", "zero_coordinates", "outside_nyc", "fare_out_of_range", "passenger_count_out_of_range"):
        assert manifest["rejected"][rule] > 0, rule
    assert 0.8 < manifest["rows_kept"] / manifest["rows_read"] < 0.95


def test_a_chunk_whose_features_fail_stops_the_run_after_the_chunks_before_it(tmp_path, synthetic_10k, monkeypatch):
    # The features are computed in a thread of their own (local.FeatureStage): its error must end the run,
    # with the chunks before it recorded and none after, and the resumed run must give the same bytes.
    from taxifare.preprocessing import local
    from taxifare.preprocessing.sink import partial_path, read_manifest

    calls = []

    def failing_on_the_third(rides):
        calls.append(len(rides))
        if len(calls) == 3:
            raise RuntimeError("features failed")
        return real(rides)

    real = local.ride_features
    monkeypatch.setattr(local, "ride_features", failing_on_the_third)
    settings = settings_for(tmp_path, chunk_size=1_000, data_size="cut")
    with pytest.raises(RuntimeError, match="features failed"):
        preprocess(settings, input_path=synthetic_10k)
    assert read_manifest(partial_path(settings.processed_path))["chunks_written"] == 2
    monkeypatch.setattr(local, "ride_features", real)
    resumed = preprocess(settings, input_path=synthetic_10k)
    whole = run(tmp_path, synthetic_10k, chunk_size=1_000, data_size="whole")
    assert resumed.output.read_bytes() == whole.output.read_bytes() and resumed.manifest["chunks_written"] == 10

