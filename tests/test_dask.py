"""preprocess on a real Dask cluster (a `dask scheduler` and two `dask worker` processes on 127.0.0.1):
byte for byte the local run's output, whatever the partitions, through killed workers and clients."""

from __future__ import annotations

import contextlib
import gzip
import os
import re
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
from taxifare.core.errors import InputError
from taxifare.core.lock import OutputLock
from taxifare.preprocessing.dask.plan import csv_ranges, list_csv_files, new_plan
from taxifare.preprocessing.dask.sources import open_partition
from taxifare.preprocessing.run import preprocess
from taxifare.preprocessing.sink import partial_path, read_manifest
from taxifare.rides.layout import CsvFormat
from taxifare.sources.csv_file import CsvRideSource
from taxifare.sources.demo import write_demo_rides
from tests.conftest import RAW_HEADER, assert_clean_error, cli_env, real_file, run_cli, stop_when, write_csv
from tests.dask_cluster import DaskCluster, free_port
from tests.fake_bigquery import typed_rides

# Keys that differ between a local and a cluster run of the same job by design.
ENGINE_KEYS = {"engine", "completed_at"}
DIRT = [
    "x1,7.5,2013-07-06 17:18:00 UTC,-73.95,40.78",  # malformed: too few fields
    "x2,abc,2013-07-06 17:18:00 UTC,-73.95,40.78,-73.98,40.76,1",
    "x3,7.5,2013-02-30 10:00:00 UTC,-73.95,40.78,-73.98,40.76,1",
    "x4,7.50,2013-07-06 17:18:00 UTC,-73.950,40.78,-73.98,40.76,1.0",  # the same ride as x5 once parsed
    "x5,7.5,2013-07-06 17:18:00 UTC,-73.95,40.78,-73.98,40.76,1",
]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dask")
    started = DaskCluster(folder, cli_env(folder))
    try:
        yield started.start(workers=2)
    finally:
        started.stop()


@pytest.fixture(scope="module")
def rides(tmp_path_factory) -> Path:
    """Synthetic rides with dirt, and exact copies of the first rows at the end (other partitions)."""
    path = tmp_path_factory.mktemp("rides") / "rides.csv"
    write_demo_rides(path, rows=20_000, seed=11)
    lines = path.read_text().splitlines()
    with path.open("a") as file:
        file.write("\n".join([*DIRT[:3], *lines[1:300], *DIRT[3:]]) + "\n")
    return path


def settings_for(data: Path, **flags):
    return load_settings({"local_data_path": str(data), "chunk_size": 1000, **flags}, environ={}, dotenv_path=None)


def local_run(tmp_path: Path, raw: Path, **flags):
    return preprocess(settings_for(tmp_path / "local", **flags), input_path=raw)


def assert_same_as_local(result, local) -> None:
    assert result.output.read_bytes() == local.output.read_bytes()
    same = {key: value for key, value in result.manifest.items() if key not in ENGINE_KEYS}
    assert same == {key: value for key, value in local.manifest.items() if key not in ENGINE_KEYS}


@pytest.mark.parametrize("partition_size", [60_000, 700_000])
def test_the_cluster_writes_the_local_output_byte_for_byte(tmp_path, cluster, rides, partition_size):
    local = local_run(tmp_path, rides)
    settings = settings_for(tmp_path / "cluster", dask_scheduler_address=cluster.address)
    result = preprocess(settings, input_path=rides, partition_size=partition_size)
    assert_same_as_local(result, local)
    engine = result.manifest["engine"]
    # The last two partitions halved, and the last two halves halved again, twice (finer_at_the_end).
    assert engine["partitions"] == -(-rides.stat().st_size // partition_size) + 2 + 2 + 2
    assert (engine["buckets"] > 1) == (partition_size == 60_000)  # several duplicate chains, or one
    assert engine["workers"] == 2 and len(engine["worker_peak_mb"]) == 2
    rejected = local.manifest["rejected"]
    assert rejected["duplicate"] > 300 and rejected["malformed_line"] == 1 and rejected["bad_datetime"] == 1
    assert not settings.processed_path.with_suffix(".parts").exists()


def test_the_real_sample_with_its_49k_duplicates(tmp_path, cluster):
    raw = real_file("cab-fare-ashutoshgalinde_train.csv")
    local = local_run(tmp_path, raw, chunk_size=7000)
    settings = settings_for(tmp_path / "cluster", chunk_size=7000, dask_scheduler_address=cluster.address)
    result = preprocess(settings, input_path=raw, partition_size=1_000_000)
    assert_same_as_local(result, local)
    assert result.manifest["rejected"]["duplicate"] > 40_000


def test_the_cluster_reuses_only_an_output_of_the_same_rides(tmp_path, cluster, rides):
    settings = settings_for(tmp_path, data_size="same", dask_scheduler_address=cluster.address)
    first = preprocess(settings, input_path=rides)
    lines = rides.read_text().splitlines()
    other = write_csv(tmp_path / "other.csv", lines[1:2000], header=lines[0])
    with pytest.raises(InputError, match=f"{first.output} was made from {rides}.*this run reads {other}"):
        preprocess(settings, input_path=other)
    assert preprocess(settings, input_path=rides).reused
    assert preprocess(settings, input_path=other, force=True).manifest["raw"]["files"][0]["path"] == str(other)


@pytest.mark.parametrize("csv_format", [CsvFormat(), CsvFormat(tuple(RAW_HEADER.split(",")), ";")], ids=["header", "headerless"])
def test_every_line_belongs_to_exactly_one_byte_range(tmp_path, csv_format):
    lines = ["k,1,2013-07-06 17:18:00 UTC,-73.9,40.7,-73.9,40.7,1", "", "bad,line", "k,2,2013-07-06 17:18:01 UTC,-73.9,40.7,-73.9,40.7,2"]
    header = [] if csv_format.columns else [RAW_HEADER]
    path = tmp_path / "odd.csv"
    text = "\r\n".join([*header, *lines * 30, "k,3,2013"])  # no final newline
    path.write_bytes(text.replace(",", csv_format.delimiter).encode())
    whole = CsvRideSource(path, 7, csv_format)
    expected = pa.concat_tables(whole.chunks())
    assert expected.num_rows == 60  # without a header, the first line is a ride
    for step in (1, 5, 64, 1000):
        plan = new_plan(csv_ranges(list_csv_files(str(path)), step), threads=2)  # the last ranges cut finer too
        settings = load_settings({"chunk_size": "7"}, environ={}, dotenv_path=None)
        sources = [open_partition(part, settings, csv_format) for part in plan.partitions]
        tables = [table for source in sources for table in source.chunks()]
        assert pa.concat_tables(tables).equals(expected), step
        assert sum(source.malformed_rows for source in sources) == whole.malformed_rows == 31


def test_the_last_partitions_are_the_shortest_and_the_plan_covers_every_byte(tmp_path):
    path = tmp_path / "rides.csv"
    path.write_bytes(b"x" * 8_000)
    plan = new_plan(csv_ranges(list_csv_files(str(path)), 1_000), threads=2)
    sizes = [part.end - part.start for part in plan.partitions]
    assert sizes == [1_000] * 6 + [500] * 2 + [250] * 2 + [125] * 4
    assert all(part.end == after.start for part, after in zip(plan.partitions, plan.partitions[1:]))
    assert plan.partitions[0].start == 0 and plan.partitions[-1].end == 8_000


def test_a_gzip_file_is_one_partition_and_reads_like_the_csv(tmp_path, cluster, rides):
    compressed = tmp_path / "rides.csv.gz"
    compressed.write_bytes(gzip.compress(rides.read_bytes()))
    local = local_run(tmp_path, compressed)
    assert local.output.read_bytes() == local_run(tmp_path / "plain", rides).output.read_bytes()
    settings = settings_for(tmp_path / "cluster", dask_scheduler_address=cluster.address)
    result = preprocess(settings, input_path=compressed, partition_size=60_000)
    assert result.manifest["engine"]["partitions"] == 1
    assert_same_as_local(result, local)


def test_a_headerless_semicolon_export_on_the_cluster(tmp_path, cluster, rides):
    lines = rides.read_text().splitlines()
    export = tmp_path / "rides.txt"
    export.write_text("\n".join(line.replace(",", ";") for line in lines[1:]) + "\n")  # no quoted commas in these rides
    csv_format = CsvFormat(tuple(lines[0].split(",")), ";")
    local = preprocess(settings_for(tmp_path / "local"), input_path=export, csv_format=csv_format)
    assert local.output.read_bytes() == local_run(tmp_path / "with-header", rides).output.read_bytes()
    settings = settings_for(tmp_path / "cluster", dask_scheduler_address=cluster.address)
    result = preprocess(settings, input_path=export, partition_size=60_000, csv_format=csv_format)
    assert result.manifest["engine"]["partitions"] > 1
    assert_same_as_local(result, local)


@pytest.mark.parametrize("scheme", ["", "file://"], ids=["path", "fsspec-url"])
def test_a_glob_reads_like_the_files_joined(tmp_path, cluster, rides, scheme):
    lines = rides.read_text().splitlines()
    folder = tmp_path / "in"
    folder.mkdir()
    for name, part in (("a", lines[1:9000]), ("b", lines[9000:])):
        write_csv(folder / f"rides-{name}.csv", part, header=lines[0])
    local = local_run(tmp_path, rides)
    settings = settings_for(tmp_path / "cluster", dask_scheduler_address=cluster.address)
    result = preprocess(settings, input_path=f"{scheme}{folder}/rides-*.csv")
    assert result.output.read_bytes() == local.output.read_bytes()
    assert result.manifest["rejected"] == local.manifest["rejected"]
    assert result.manifest["source"]["files"] == [f"{scheme}{folder}/rides-a.csv", f"{scheme}{folder}/rides-b.csv"]
    # Samples name their file, and count lines from its own header.
    malformed = result.manifest["rejected_samples"]["malformed_line"]
    assert malformed == {"line": lines.index(DIRT[0]) - 9000 + 2, "value": DIRT[0], "file": f"{scheme}{folder}/rides-b.csv"}
    if not scheme:  # this process reads the same glob, and the same files given one by one, alike
        for data, given in (("here-glob", f"{folder}/rides-*.csv"), ("here-list", [folder / "rides-a.csv", folder / "rides-b.csv"])):
            here = preprocess(settings_for(tmp_path / data), input_path=given)
            assert here.output.read_bytes() == local.output.read_bytes()
            assert here.manifest["rejected_samples"] == result.manifest["rejected_samples"]
        on_cluster = preprocess(settings_for(tmp_path / "cluster-list", dask_scheduler_address=cluster.address), input_path=given)
        assert_same_as_local(on_cluster, here)


def test_cli_on_a_local_cluster_of_worker_processes(tmp_path, rides):
    local = local_run(tmp_path, rides)
    done = run_cli(tmp_path, "preprocess", "--input", str(rides), "--chunk-size", "1000", "--workers", "2", "--keep-parts")
    assert done.returncode == 0, done.stderr[-3000:]
    output = Path(done.stdout.strip())
    assert output.read_bytes() == local.output.read_bytes()
    assert "cluster:" in done.stderr and "2 workers" in done.stderr and "rows/s" in done.stderr
    parts = sorted(output.with_suffix(".parts").glob("part-*.csv"))
    assert len(parts) == read_manifest(output)["engine"]["partitions"] > 1
    assert b"".join(part.read_bytes() for part in parts) == local.output.read_bytes().split(b"\n", 1)[1]


def cluster_cli(tmp_path: Path, address: str, raw: Path) -> list[str]:
    return [sys.executable, "-m", "taxifare", "preprocess", "--input", str(raw), "--scheduler", address]


def output_of(tmp_path: Path) -> Path:
    """The output of `--input .../rides.csv`, named after it."""
    return tmp_path / "data" / "processed" / "processed_2009-01-01_2015-01-01_rides.csv"


def wait_for(condition, process: subprocess.Popen, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        found = condition()
        if found:
            return found
        time.sleep(0.005)
    raise AssertionError(f"not reached before the run ended ({process.poll()})")


@pytest.fixture(scope="module")
def large_rides(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("large") / "rides.csv"
    write_demo_rides(path, rows=150_000, seed=3)
    return path


@pytest.fixture(scope="module")
def large_local(tmp_path_factory, large_rides):
    return preprocess(settings_for(tmp_path_factory.mktemp("large-local"), chunk_size=100_000), input_path=large_rides)


def test_rerun_after_the_client_was_killed_reuses_the_finished_parts(tmp_path, cluster, large_rides, large_local):
    parts = output_of(tmp_path).with_suffix(".parts")
    client = subprocess.Popen(cluster_cli(tmp_path, cluster.address, large_rides), cwd=tmp_path, env=cli_env(tmp_path),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for(lambda: len(list(parts.glob("scan-*.json"))) >= 2, client)
    client.kill()
    client.communicate()
    scanned = len(list(parts.glob("scan-*.json")))
    assert read_manifest(partial_path(output_of(tmp_path)))["complete"] is False and not output_of(tmp_path).exists()

    rerun = run_cli(tmp_path, *cluster_cli(tmp_path, cluster.address, large_rides)[3:])
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    reused = re.search(rf"continuing the job in {re.escape(str(parts))}: (\d+) of \d+ partitions already scanned", rerun.stderr)
    assert int(reused.group(1)) >= scanned >= 2
    assert output_of(tmp_path).read_bytes() == large_local.output.read_bytes()


def test_files_that_a_machine_crash_cut_short_are_made_again(tmp_path, cluster, large_rides, large_local):
    """The parts folder's files are renamed into place without an fsync (only their records are flushed):
    after a machine crash a file may be shorter than its record says, and must then be made again, not
    reused. Here partition 0 loses half of its CSV, partition 1 of its row hashes (which the duplicate
    chains read again even once it is settled), partition 2 of its arrays, partition 3 of its last record."""
    parts = output_of(tmp_path).with_suffix(".parts")
    client = subprocess.Popen(cluster_cli(tmp_path, cluster.address, large_rides), cwd=tmp_path, env=cli_env(tmp_path),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for(lambda: (parts / "part-00001.json").exists() and (parts / "scan-00003.json").exists(), client)
    client.kill()
    client.communicate()
    cluster.wait_until_idle()
    damaged = [next(path for path in (parts / "part-00000.csv", parts / "scan-00000.csv") if path.exists()),
               parts / "scan-00001.hashes.npy", parts / "scan-00002.npz",
               next(path for path in (parts / "part-00003.json", parts / "scan-00003.json") if path.exists())]
    for path in damaged:
        with path.open("r+b") as file:
            file.truncate(path.stat().st_size // 2)

    rerun = run_cli(tmp_path, *cluster_cli(tmp_path, cluster.address, large_rides)[3:])
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert output_of(tmp_path).read_bytes() == large_local.output.read_bytes()


def test_a_killed_worker_has_its_task_retried_and_the_output_is_identical(tmp_path, cluster, large_rides, large_local):
    parts = output_of(tmp_path).with_suffix(".parts")
    victim = cluster.workers["worker-0"]
    client = subprocess.Popen(cluster_cli(tmp_path, cluster.address, large_rides), cwd=tmp_path, env=cli_env(tmp_path),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # Killed while it writes a scan: its partition must be scanned again by the other worker.
        in_flight = _freeze_while_writing(victim, parts, client)
        cluster.kill_worker("worker-0")
        assert all(path.exists() for path in in_flight), "the worker finished its scan before it was killed"
        _, stderr = client.communicate(timeout=120)
    finally:
        cluster.start_worker("worker-0")
    assert client.returncode == 0, stderr[-3000:]
    assert output_of(tmp_path).read_bytes() == large_local.output.read_bytes()
    cluster.wait_for_workers(2)


def _freeze_while_writing(worker: subprocess.Popen, parts: Path, client: subprocess.Popen) -> list[Path]:
    """Stop `worker` (SIGSTOP) at a moment it has a scan file half written; those files."""
    def writing():
        assert client.poll() is None, f"the run ended ({client.returncode}) before the worker could be caught writing"
        return list(parts.glob(f".scan-*.{worker.pid}.tmp"))

    while True:
        assert stop_when(worker, writing, timeout=60), "the worker died"
        in_flight = writing()
        if in_flight:
            return in_flight
        os.kill(worker.pid, signal.SIGCONT)  # it finished that file between the look and the stop


def test_an_unreachable_scheduler_is_one_line_and_exit_1(tmp_path, rides):
    address = f"tcp://127.0.0.1:{free_port()}"
    failed = run_cli(tmp_path, "preprocess", "--input", str(rides), "--scheduler", address)
    assert_clean_error(failed, 1, f"could not reach the Dask scheduler at {address}")
    assert not output_of(tmp_path).exists()


@pytest.mark.parametrize(
    "content, fragments",
    [
        (b"fare_amount,pickup_datetime\n7,2013-07-06 17:18:00 UTC\n", ["missing column(s) pickup_longitude"]),
        (b"", ["is empty"]),
        (None, ["no such file"]),
    ],
)
def test_bad_input_on_the_cluster_is_one_clear_line(tmp_path, cluster, content, fragments):
    path = tmp_path / "input.csv"
    if content is not None:
        path.write_bytes(content)
    failed = run_cli(tmp_path, "preprocess", "--input", str(path), "--scheduler", cluster.address)
    assert_clean_error(failed, 2, str(path), *fragments)
    assert not output_of(tmp_path).exists()


def test_a_second_run_on_the_same_output_refuses(tmp_path, cluster, rides):
    with OutputLock(output_of(tmp_path), "processed file"):
        second = run_cli(tmp_path, "preprocess", "--input", str(rides), "--scheduler", cluster.address)
    assert_clean_error(second, 1, "in use by process", str(os.getpid()))


def test_a_url_without_a_cluster_says_to_add_one_and_a_glob_without_a_match_says_so(tmp_path):
    failed = run_cli(tmp_path, "preprocess", "--input", "gs://bucket/rides.csv")
    assert_clean_error(failed, 2, "read by Dask workers; add --workers N or --scheduler ADDRESS")
    failed = run_cli(tmp_path, "preprocess", "--input", str(tmp_path / "rides-*.csv"))
    assert_clean_error(failed, 2, "rides-*.csv: no file matches")


def test_scheduler_and_workers_together_are_refused(tmp_path, rides):
    failed = run_cli(tmp_path, "preprocess", "--input", str(rides), "--workers", "2", env=cli_env(tmp_path, DASK_SCHEDULER_ADDRESS="tcp://127.0.0.1:1"))
    assert_clean_error(failed, 2, "either --scheduler (DASK_SCHEDULER_ADDRESS) or --workers")


@pytest.mark.parametrize("engine, stop", [("scheduler", "SIGTERM"), ("workers", "SIGTERM"), ("workers", "Ctrl-C")])
def test_a_stop_signal_ends_the_client_with_one_line(tmp_path, cluster, large_rides, engine, stop):
    """SIGTERM reaches the client alone; Ctrl-C the terminal's whole process group, local workers too."""
    command = cluster_cli(tmp_path, cluster.address, large_rides)
    if engine == "workers":  # the local cluster's workers print to the same terminal
        command = [*command[:-2], "--workers", "2"]
    with contextlib.ExitStack() as held:
        # Dask's usual dashboard port, taken as by another cluster on the machine (if not taken already).
        with contextlib.suppress(OSError):
            held.enter_context(socket.create_server(("127.0.0.1", 8787)))
        client = subprocess.Popen(command, cwd=tmp_path, env=cli_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, start_new_session=True)
        wait_for(lambda: list(output_of(tmp_path).with_suffix(".parts").glob("scan-*.json")), client)
        if stop == "Ctrl-C":
            os.killpg(client.pid, signal.SIGINT)
        else:
            client.send_signal(signal.SIGTERM)
        _, stderr = client.communicate(timeout=60)
    number = signal.SIGINT if stop == "Ctrl-C" else signal.SIGTERM
    assert client.returncode == 128 + number and "Traceback" not in stderr
    # Only taxifare's own lines: no Dask log lines about the tasks it cancelled, no warning about ports.
    foreign = [line for line in stderr.splitlines() if line.strip() and not re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [A-Z]+ |taxifare: ", line)]
    assert not foreign, stderr
    assert f"taxifare: interrupted by {number.name}; rerun the same command" in stderr
    assert read_manifest(partial_path(output_of(tmp_path)))["complete"] is False


def test_bigquery_sub_windows_are_queried_by_the_workers_in_parallel(tmp_path, cluster, fake_bigquery, rides):
    fake_bigquery.tables["wagon-public-datasets.taxifare.raw_fake"] = typed_rides(pd.read_csv(rides, dtype=str).iloc[:20_000])
    flags = {"data_size": "fake", "gcp_project": "taxifare-tests", "bigquery_emulator_host": fake_bigquery.url, "bq_deadline": 10}
    local = preprocess(settings_for(tmp_path / "local", **flags))
    settings = settings_for(tmp_path / "cluster", dask_scheduler_address=cluster.address, **flags)
    result = preprocess(settings)
    assert result.output.read_bytes() == local.output.read_bytes()
    for key in ("rows_read", "rows_kept", "rejected", "rejected_samples", "target_sum", "bytes", "chunks_written", "duplicate_index_bytes"):
        assert result.manifest[key] == local.manifest[key], key

    windows = []
    for insert in fake_bigquery.seen("insert")[1:]:
        parameters = {item["name"]: item["parameterValue"]["value"] for item in insert.body["configuration"]["query"]["queryParameters"]}
        windows.append((pd.Timestamp(parameters["min_date"]), pd.Timestamp(parameters["max_date"])))
    windows.sort()
    sub_windows = 4 * 2 + 2 + 2 + 2  # four per worker thread, then the last two halved, three times
    assert len(windows) == result.manifest["engine"]["partitions"] == sub_windows
    edges = [start for start, _ in windows] + [windows[-1][1]]
    assert edges[0] == pd.Timestamp("2009-01-01", tz="UTC") and edges[-1] == pd.Timestamp("2015-01-01", tz="UTC")
    assert all(end == start for (_, end), (start, _) in zip(windows, windows[1:]))
    caches = result.manifest["source"]["caches"]
    assert len(caches) == sub_windows and all(Path(cache).is_file() for cache in caches)
    assert len(result.manifest["source_details"]["job_ids"]) == sub_windows

    again = preprocess(settings, force=True)
    assert len(fake_bigquery.seen("insert")) == 1 + sub_windows, "the rerun must read the sub-window caches"
    assert again.output.read_bytes() == local.output.read_bytes()


# Preprocess in this process (Polars writes the rows, and its thread pool starts), then on a local
# cluster from the same process: its workers must not be forked copies of a process with that pool.
_LOCAL_THEN_CLUSTER = """
import hashlib
import sys
from taxifare.core.config import load_settings
from taxifare.preprocessing.run import preprocess

for folder, workers in (("local", None), ("cluster", 2)):
    settings = load_settings({"local_data_path": f"{sys.argv[2]}/{folder}", "chunk_size": 1000, "workers": workers}, environ={}, dotenv_path=None)
    print(hashlib.sha256(preprocess(settings, sys.argv[1]).output.read_bytes()).hexdigest())
"""


def test_a_local_cluster_started_by_a_process_that_wrote_rows_itself_finishes(tmp_path, synthetic_1k):
    done = subprocess.run(
        [sys.executable, "-c", _LOCAL_THEN_CLUSTER, str(synthetic_1k), str(tmp_path)],
        env=cli_env(tmp_path), cwd=tmp_path, capture_output=True, text=True, timeout=180,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    local, cluster = done.stdout.split()
    assert local == cluster
