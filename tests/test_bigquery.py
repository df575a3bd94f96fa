"""The BigQuery source, end to end: the real google-cloud-bigquery client against tests/fake_bigquery.py."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from taxifare.core.config import load_settings
from taxifare.core.errors import InputError, TaxifareError
from taxifare.core.lock import LockedError, OutputLock
from taxifare.preprocessing.run import preprocess
from taxifare.preprocessing.sink import csv_header, partial_path, read_manifest
from taxifare.rides.layout import RAW_COLUMNS
from taxifare.sources.bigquery import ORDER_COLUMNS, BigQueryRideSource
from taxifare.sources.csv_file import RAW_SCHEMA, CsvRideSource
from taxifare.sources.demo import demo_rides, write_demo_rides
from tests.conftest import assert_clean_error, cli_env, real_file, run_cli
from tests.fake_bigquery import typed_rides

TABLE = "wagon-public-datasets.taxifare.raw_10k"
PAGE = 1000


@pytest.fixture(scope="module")
def table_rides() -> pd.DataFrame:
    """What the fake table holds: 10,000 synthetic rides (those of `taxifare demo-data`, dirty rows included)."""
    return typed_rides(demo_rides(10_000, seed=5).head(10_000))


@pytest.fixture(scope="module")
def real_rides() -> pd.DataFrame:
    return typed_rides(pd.read_csv(real_file("lewagon-train_10k_ouic.csv"), dtype=str))


@pytest.fixture
def served(fake_bigquery, table_rides):
    fake_bigquery.tables[TABLE] = table_rides
    return fake_bigquery


def settings_for(emulator: str, tmp_path: Path, **flags):
    defaults = {
        "min_date": "2009-01-01",
        "max_date": "2015-01-01",
        "data_size": "10k",
        "chunk_size": PAGE,
        "local_data_path": tmp_path / "data",
        "gcp_project": "taxifare-tests",
        "bigquery_emulator_host": emulator,
        "bq_deadline": 2,
    }
    return load_settings({**defaults, **flags}, environ={}, dotenv_path=None)


def rows_in_window(rides: pd.DataFrame, settings) -> pd.DataFrame:
    """The rows that the query returns: in the window (the client sends its naive times as UTC), in the
    query's total order."""
    pickup = rides["pickup_datetime"]
    window = [pd.Timestamp(moment).tz_localize("UTC") if moment.tzinfo is None else moment for moment in (settings.min_date, settings.max_date)]
    picked = rides[(pickup >= window[0]) & (pickup < window[1])]
    return picked.sort_values(list(ORDER_COLUMNS), kind="stable", na_position="first").reset_index(drop=True)


def leftovers(settings) -> list[str]:
    raw = settings.raw_cache_path.parent
    return sorted(path.name for path in raw.iterdir()) if raw.is_dir() else []


@pytest.mark.parametrize("table", ["table_rides", "real_rides"])
def test_pages_stream_into_chunks_and_the_cache_appears_at_the_end(fake_bigquery, table, request, tmp_path):
    served = fake_bigquery
    rides = served.tables[TABLE] = request.getfixturevalue(table)
    settings = settings_for(served.url, tmp_path)
    expected = rows_in_window(rides, settings)
    source = BigQueryRideSource(settings)
    chunks = source.chunks()

    first = next(chunks)
    assert first.schema == RAW_SCHEMA and first.num_rows == PAGE
    assert served.pages_served == 1, "the first chunk must not wait for the whole result"
    assert source.estimated_rows() == len(expected)
    assert not settings.raw_cache_path.exists()
    assert leftovers(settings) == [f".{settings.raw_cache_path.name}.partial", f".{settings.raw_cache_path.name}.partial.json"]

    rest = list(chunks)
    assert [chunk.num_rows for chunk in rest[:-1]] == [PAGE] * (len(rest) - 1)
    assert sum(chunk.num_rows for chunk in [first, *rest]) == len(expected)
    pages = [request for request in served.seen("results") if request.args.get("maxResults") != "0"]
    assert len(pages) == len(rest) + 1 >= 5
    assert all(request.args["maxResults"] == str(PAGE) for request in pages)
    assert leftovers(settings) == [settings.raw_cache_path.name]

    streamed = pa.concat_tables([first, *rest])
    assert pa.concat_tables(CsvRideSource(settings.raw_cache_path, PAGE).chunks()).equals(streamed)
    # Arrow's parser reads each number back exactly (pandas' own needs float_precision, deprecated in pandas 3).
    cached = pd.read_csv(settings.raw_cache_path, engine="pyarrow")
    assert list(cached.columns) == list(RAW_COLUMNS)
    pickups = expected["pickup_datetime"].dt.strftime("%Y-%m-%d %H:%M:%S UTC")
    assert cached["pickup_datetime"].tolist() == pickups.tolist()
    for name in ("fare_amount", "pickup_longitude", "pickup_latitude", "dropoff_longitude", "dropoff_latitude"):
        assert cached[name].tolist() == expected[name].tolist()
    assert cached["passenger_count"].tolist() == expected["passenger_count"].tolist()


def test_dates_travel_as_query_parameters(served, tmp_path):
    settings = settings_for(served.url, tmp_path, min_date="2010-03-04 05:06:07", max_date="2013-01-01")
    preprocess(settings)

    [insert] = served.seen("insert")
    assert insert.path == "/bigquery/v2/projects/taxifare-tests/jobs"
    query = insert.body["configuration"]["query"]
    parameters = {item["name"]: item for item in query["queryParameters"]}
    assert {name: item["parameterType"]["type"] for name, item in parameters.items()} == {
        "min_date": "TIMESTAMP",
        "max_date": "TIMESTAMP",
    }
    assert pd.Timestamp(parameters["min_date"]["parameterValue"]["value"]) == pd.Timestamp("2010-03-04 05:06:07Z")
    assert pd.Timestamp(parameters["max_date"]["parameterValue"]["value"]) == pd.Timestamp("2013-01-01 00:00:00Z")
    sql = query["query"]
    assert "pickup_datetime >= @min_date AND pickup_datetime < @max_date" in sql
    assert sql.strip().endswith(f"ORDER BY {', '.join(ORDER_COLUMNS)}") and f"FROM `{TABLE}`" in sql
    assert sorted(ORDER_COLUMNS) == sorted(RAW_COLUMNS), "a total order names every column"
    assert f"SELECT {', '.join(RAW_COLUMNS)}" in sql
    assert not any(text in sql for text in ("2010", "2013", "05:06"))


def test_cached_rerun_is_byte_identical(served, tmp_path):
    settings = settings_for(served.url, tmp_path)
    streamed = preprocess(settings)
    streamed_bytes = streamed.output.read_bytes()
    manifest = read_manifest(streamed.output)
    assert manifest["complete"] and manifest["rows_kept"] > 0
    assert manifest["source"] == {"kind": "bigquery", "table": TABLE, "cache": str(settings.raw_cache_path)}
    job_id = served.seen("insert")[0].body["jobReference"]["jobId"]
    rows = len(rows_in_window(served.tables[TABLE], settings))
    bytes_billed = len(served.tables[TABLE]) * 56  # what the fake bills: the seven columns of every row of the table
    assert manifest["source_details"] == {"job_id": job_id, "location": "US", "bytes_processed": bytes_billed, "rows": rows}

    assert manifest["raw"]["table"] == TABLE and manifest["raw"]["files"][0]["path"] == str(settings.raw_cache_path)
    assert preprocess(settings).reused, "the cache the query left is the same rides"
    cached = preprocess(settings, force=True)
    assert len(served.seen("insert")) == 1, "the rerun must read the cache, not query again"
    assert read_manifest(cached.output)["source"] == {"kind": "csv", "path": str(settings.raw_cache_path), "layout": "taxifare's own names, as in the Kaggle and BigQuery exports"}
    assert cached.output.read_bytes() == streamed_bytes


def test_dropped_connection_leaves_no_cache_and_the_rerun_continues(served, tmp_path):
    settings = settings_for(served.url, tmp_path)
    served.drop_after_pages = 3
    started = time.monotonic()
    with pytest.raises(TaxifareError, match=r"no answer from http://127.0.0.1:\d+ within BQ_DEADLINE=2 s"):
        preprocess(settings)
    assert time.monotonic() - started < 15
    assert served.pages_served == 3
    assert not settings.raw_cache_path.exists()
    assert not read_manifest(partial_path(settings.processed_path))["complete"]

    served.drop_after_pages = None
    result = preprocess(settings)
    assert result.manifest["complete"] and settings.raw_cache_path.is_file()
    assert len(served.seen("insert")) == 1, "the rerun must read the same job's result, not query again"
    assert served.page_starts == list(range(0, len(rows_in_window(served.tables[TABLE], settings)), PAGE))
    assert leftovers(settings) == [settings.raw_cache_path.name]


def unbroken_run(served, tmp_path: Path) -> tuple[bytes, bytes]:
    """The processed CSV and the raw cache of a run of the table as it is now, that nothing interrupted."""
    settings = settings_for(served.url, tmp_path / "unbroken")
    result = preprocess(settings)
    return result.output.read_bytes(), settings.raw_cache_path.read_bytes()


def dropped_after_two_pages_then_restarted(served, settings) -> None:
    """A run that loses the connection after two pages; then the server restarts without its jobs, as
    BigQuery drops a job's result after about a day."""
    served.drop_after_pages = 2
    with pytest.raises(TaxifareError, match="no answer from"):
        preprocess(settings)
    served.drop_after_pages = None
    served.restart()


def test_after_a_restart_the_query_runs_again_and_the_download_continues_where_it_stopped(served, tmp_path, caplog):
    settings = settings_for(served.url, tmp_path)
    dropped_after_two_pages_then_restarted(served, settings)
    pages_before = len(served.page_starts)
    with caplog.at_level(logging.INFO, logger="taxifare"):
        result = preprocess(settings)

    first, second = (request.body["jobReference"]["jobId"] for request in served.seen("insert"))
    assert [served.seen("table")[0].path] == [f"/bigquery/v2/projects/{TABLE.replace('.', '/datasets/', 1).replace('.', '/tables/')}"]
    rows = len(rows_in_window(served.tables[TABLE], settings))
    assert served.page_starts[pages_before:] == list(range(2 * PAGE, rows, PAGE)), "only the rows not downloaded yet"
    assert result.manifest["complete"] and result.resumed_from_chunk == 2
    assert result.manifest["source_details"]["job_id"] == second
    said = [record.getMessage() for record in caplog.records if "no longer holds" in record.getMessage()]
    assert said == [f"BigQuery no longer holds the result of job {first} (it keeps one about a day); ran the same query "
                    f"again as job {second} (the table is unchanged since, the rows are in a total order): continuing after row {2 * PAGE}"]
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]
    processed, cache = unbroken_run(served, tmp_path)
    assert result.output.read_bytes() == processed and settings.raw_cache_path.read_bytes() == cache
    assert leftovers(settings) == [settings.raw_cache_path.name]


@pytest.mark.parametrize("metadata", ["shows it", "hides it"])
def test_after_a_restart_a_changed_table_is_downloaded_again_with_one_line_saying_why(served, table_rides, tmp_path, caplog, metadata):
    settings = settings_for(served.url, tmp_path)
    dropped_after_two_pages_then_restarted(served, settings)
    served.tables[TABLE] = table_rides.iloc[1::2]  # half the rides deleted since
    if metadata == "hides it":  # then the row count of the query run again tells
        served.tables.modified_ms[TABLE] = 0
    pages_before = len(served.page_starts)
    with caplog.at_level(logging.INFO, logger="taxifare"):
        result = preprocess(settings)

    first, second = (request.body["jobReference"]["jobId"] for request in served.seen("insert"))
    rows = len(rows_in_window(served.tables[TABLE], settings))
    why = (r"the table changed since \(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\)" if metadata == "shows it"
           else rf"the same query run again as job {second} gives {rows:,} rows, not [\d,]+")
    [warning] = [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]
    assert re.fullmatch(rf"BigQuery no longer holds the result of job {first} \(it keeps one about a day\),? (and )?{why}: "
                        "downloading the window again from its first row", warning), warning
    asked_to_continue = [2 * PAGE] if metadata == "hides it" else []  # the first page of the query run again
    assert served.page_starts[pages_before:] == asked_to_continue + list(range(0, rows, PAGE))
    assert result.manifest["complete"] and result.resumed_from_chunk is None
    processed, cache = unbroken_run(served, tmp_path)
    assert result.output.read_bytes() == processed and settings.raw_cache_path.read_bytes() == cache


def test_a_run_stopped_after_its_download_became_the_cache_is_finished_by_the_same_command(served, tmp_path):
    processed, cache = unbroken_run(served, tmp_path)
    (tmp_path / "stopped").mkdir()
    env = cli_env(tmp_path / "stopped", BQ_DEADLINE="10", BIGQUERY_EMULATOR_HOST=served.url)
    command = ["preprocess", "--data-size", "10k", "--chunk-size", str(PAGE), "--gcp-project", "taxifare-tests"]

    def limit_file_size():  # the last chunk, which follows the last page, cannot be written
        resource.setrlimit(resource.RLIMIT_FSIZE, (len(processed) - 1,) * 2)

    stopped = subprocess.run([sys.executable, "-m", "taxifare", *command], cwd=tmp_path / "stopped", env=env,
                             capture_output=True, text=True, preexec_fn=limit_file_size, timeout=60)
    assert_clean_error(stopped, 1, "File too large")
    [cached] = (tmp_path / "stopped" / "data").rglob("query_*.csv")
    assert cached.read_bytes() == cache, "the download was published as the raw cache before the run stopped"
    [unfinished] = (tmp_path / "stopped" / "data").rglob("processed_*.partial.json")
    assert json.loads(unfinished.read_text())["source"]["kind"] == "bigquery"

    rerun = run_cli(tmp_path / "stopped", *command, env=env, timeout=60)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{unfinished.with_suffix('.csv')} stopped after its download became the raw cache; starting it again from the cache" in rerun.stderr
    assert Path(rerun.stdout.strip()).read_bytes() == processed
    assert len(served.seen("insert")) == 2, "the rerun reads the cache"


# (status, reason, the server's message) -> (error class, what the one-line message must match)
ERROR_ANSWERS = {
    (400, "invalidQuery", "Syntax error: Unexpected keyword"): (
        TaxifareError,
        "BigQuery rejected the query on .*: 400 Syntax error: Unexpected keyword$",
    ),
    (403, "accessDenied", "Access Denied: Project taxifare-tests: User does not have bigquery.jobs.create"): (
        TaxifareError,
        r"BigQuery permission denied: 403 Access Denied: .* \(the job reads .* and runs in project taxifare-tests; "
        "set GCP_PROJECT to a project where you may run BigQuery jobs",
    ),
    (404, "notFound", "Not found: Dataset wagon-public-datasets:taxifare"): (
        InputError,
        "BigQuery: 404 Not found: Dataset .*; check GCP_PROJECT_DATA, BQ_DATASET and DATA_SIZE",
    ),
    (503, "backendError", "Service is unavailable"): (
        TaxifareError,
        r"no answer from .* within BQ_DEADLINE=2 s \(503 Service is unavailable\); check the network",
    ),
}


@pytest.mark.parametrize("answer", ERROR_ANSWERS, ids=lambda answer: str(answer[0]))
def test_error_answers_give_clear_messages(fake_bigquery, tmp_path, answer):
    fake_bigquery.error = answer
    settings = settings_for(fake_bigquery.url, tmp_path)
    error, expected = ERROR_ANSWERS[answer]
    with pytest.raises(error, match=expected) as raised:
        preprocess(settings)
    assert "\n" not in str(raised.value)
    assert leftovers(settings) == []


def test_unknown_table_is_not_found(fake_bigquery, tmp_path):
    with pytest.raises(InputError, match=f"Table wagon-public-datasets:taxifare.raw_10k was not found.*table {TABLE}"):
        preprocess(settings_for(fake_bigquery.url, tmp_path))


def test_empty_result_is_refused_but_leaves_a_header_and_a_complete_manifest(served, tmp_path):
    settings = settings_for(served.url, tmp_path, min_date="2016-01-01", max_date="2016-02-01")
    for force in (False, True):
        with pytest.raises(InputError, match="read no rows from"):
            preprocess(settings, force=force)
        assert settings.processed_path.read_bytes() == csv_header()
        manifest = read_manifest(settings.processed_path)
        assert manifest["complete"] and manifest["rows_read"] == 0
        assert settings.raw_cache_path.read_text() == ",".join(RAW_COLUMNS) + "\n"


def test_pages_with_nulls_keep_their_types(fake_bigquery, tmp_path):
    pickups = [f"2012-05-01 10:00:0{second} UTC" for second in range(6)]
    rides = pd.DataFrame(
        {
            "fare_amount": [None, None, None, "7.5", "-0.0", "1e-07"],
            "pickup_datetime": pickups,
            "pickup_longitude": ["-73.99"] * 6,
            "pickup_latitude": ["40.75"] * 6,
            "dropoff_longitude": [None, "-73.98", None, "-73.97", "-73.96", "-73.95"],
            "dropoff_latitude": ["40.76"] * 6,
            "passenger_count": [None, None, None, "1", None, "3"],
        }
    )
    fake_bigquery.tables[TABLE] = typed_rides(rides)
    settings = settings_for(fake_bigquery.url, tmp_path, chunk_size=3)
    chunks = list(BigQueryRideSource(settings).chunks())

    assert [chunk.schema for chunk in chunks] == [RAW_SCHEMA, RAW_SCHEMA]
    table = pa.concat_tables(chunks)
    assert table.column("passenger_count").to_pylist() == [None, None, None, "1", None, "3"]
    # -0.0 as 0: the query's order cannot tell the two zeros apart, so the text does not either.
    assert table.column("fare_amount").to_pylist() == [None, None, None, "7.5", "0", "1e-7"]
    assert table.column("pickup_datetime").to_pylist() == pickups
    assert pa.concat_tables(CsvRideSource(settings.raw_cache_path, 3).chunks()).equals(table)


def test_the_temporary_cache_is_written_only_under_the_output_lock(served, tmp_path):
    settings = settings_for(served.url, tmp_path)
    with OutputLock(settings.processed_path, "processed file"), pytest.raises(LockedError):
        preprocess(settings)
    assert served.requests == [] and leftovers(settings) == []

    killed_run = settings.raw_cache_path.with_name(f".{settings.raw_cache_path.name}.partial")
    killed_run.parent.mkdir(parents=True)
    killed_run.write_text("rows from a run killed outright")
    preprocess(settings)
    assert leftovers(settings) == [settings.raw_cache_path.name]


@pytest.mark.parametrize(
    "flags",
    [{"bq_dataset": "taxi`fare"}, {"data_size": "1k;DROP TABLE x"}, {"gcp_project_data": "wagon-public`; --"}],
)
def test_unsafe_names_are_refused_before_any_request(fake_bigquery, tmp_path, flags):
    with pytest.raises(InputError, match="is not a valid|is not a plain name"):
        settings_for(fake_bigquery.url, tmp_path, **flags)
    settings = dataclasses.replace(settings_for(fake_bigquery.url, tmp_path), **flags)
    with pytest.raises(InputError, match="is not a valid project.dataset.table name"):
        preprocess(settings)
    assert fake_bigquery.requests == []


def test_unreachable_server_fails_within_the_deadline(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(TaxifareError, match=r"within BQ_DEADLINE=2 s \(\[Errno 111\] Connection refused\)"):
        preprocess(settings_for(f"http://127.0.0.1:{port}", tmp_path))
    assert time.monotonic() - started < 15


def run_preprocess_cli(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    command = ["preprocess", "--data-size", "10k", "--chunk-size", str(PAGE), *args]
    return run_cli(tmp_path, *command, env=cli_env(tmp_path, BQ_DEADLINE="2", **env), timeout=60)


def test_cli_streams_from_bigquery_and_says_so(served, tmp_path):
    done = run_preprocess_cli(tmp_path, "--gcp-project", "taxifare-tests", BIGQUERY_EMULATOR_HOST=served.url)
    assert done.returncode == 0, done.stderr
    job_id = served.seen("insert")[0].body["jobReference"]["jobId"]
    summary = rf"source: +BigQuery {re.escape(TABLE)} \(job {job_id}, 0.6 MB processed\), cached as "  # 10,000 rows
    assert re.search(summary, done.stderr)
    output = Path(done.stdout.strip())
    assert json.loads(output.with_suffix(".json").read_text())["complete"]


@pytest.mark.parametrize(
    "args, error, expected",
    [
        ((), (404, "notFound", "Not found: Dataset x:taxifare"), "taxifare: error: BigQuery: 404 Not found: Dataset"),
        (("--bq-dataset", "taxi;fare"), None, "taxifare: error: --bq-dataset: 'taxi;fare' is not a valid BigQuery"),
    ],
)
def test_cli_errors_are_one_line(fake_bigquery, tmp_path, args, error, expected):
    fake_bigquery.error = error
    done = run_preprocess_cli(tmp_path, *args, BIGQUERY_EMULATOR_HOST=fake_bigquery.url)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith(expected), done.stderr
    assert "Traceback" not in done.stderr
    if error is None:
        assert fake_bigquery.requests == []


def test_missing_credentials_say_how_to_get_them(tmp_path):
    done = run_preprocess_cli(tmp_path, "--gcp-project", "taxifare-tests")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "no raw data in " in done.stderr and "query_2009-01-01_2015-01-01_10k.csv" in done.stderr
    assert "no Google Cloud credentials to query BigQuery: run `gcloud auth application-default login`" in done.stderr
    assert "--input PATH" in done.stderr


def test_sigkilled_download_continues_where_it_stopped_and_matches_an_unbroken_run(fake_bigquery, tmp_path):
    demo_csv = tmp_path / "demo.csv"
    write_demo_rides(demo_csv, rows=6000, seed=3)
    fake_bigquery.tables[TABLE] = typed_rides(pd.read_csv(demo_csv, dtype=str))
    args = ("--gcp-project", "taxifare-tests", "--min-date", "2009-01-01", "--max-date", "2015-01-01")
    env = cli_env(tmp_path / "killed", BQ_DEADLINE="10", BIGQUERY_EMULATOR_HOST=fake_bigquery.url)
    (tmp_path / "killed").mkdir()
    # The fourth page is held until the process is dead: the kill lands mid-download, never after it.
    fake_bigquery.hold_at_row = 3 * PAGE
    command = [sys.executable, "-m", "taxifare", "preprocess", "--data-size", "10k", "--chunk-size", str(PAGE), *args]
    process = subprocess.Popen(command, cwd=tmp_path / "killed", env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert fake_bigquery.held.wait(timeout=60), "the download never reached its fourth page"
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait(timeout=30)
        fake_bigquery.release.set()
    fake_bigquery.hold_at_row = None
    served_before = len(fake_bigquery.page_starts)
    [unfinished] = (tmp_path / "killed" / "data").rglob("processed_*.partial.json")
    written = json.loads(unfinished.read_text())["chunks_written"]

    resumed = run_cli(tmp_path / "killed", *command[3:], env=env, timeout=60)
    assert resumed.returncode == 0, resumed.stderr
    assert len(fake_bigquery.seen("insert")) == 1, "the rerun must read the same job's result, not query again"
    assert fake_bigquery.page_starts[served_before] == 3 * PAGE, "the rerun downloaded cached pages again"
    assert re.search(rf"resumed: +after chunk {written}\n", resumed.stderr), resumed.stderr

    (tmp_path / "plain").mkdir()
    plain_env = cli_env(tmp_path / "plain", BQ_DEADLINE="10", BIGQUERY_EMULATOR_HOST=fake_bigquery.url)
    plain = run_cli(tmp_path / "plain", *command[3:], env=plain_env, timeout=60)
    assert plain.returncode == 0, plain.stderr
    killed_output, plain_output = Path(resumed.stdout.strip()), Path(plain.stdout.strip())
    assert killed_output.read_bytes() == plain_output.read_bytes()
    [killed_cache] = (tmp_path / "killed" / "data").rglob("query_*.csv")
    [plain_cache] = (tmp_path / "plain" / "data").rglob("query_*.csv")
    assert killed_cache.read_bytes() == plain_cache.read_bytes()
