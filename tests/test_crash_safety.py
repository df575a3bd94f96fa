"""preprocess under SIGKILL, full disks and concurrent runs: real processes, real files."""

import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time

import pytest

from taxifare.core.config import load_settings
from taxifare.core.lock import OutputLock, lock_path
from taxifare.preprocessing.run import preprocess
from taxifare.preprocessing.sink import partial_path
from tests.conftest import assert_clean_error, cli_env, run_cli, stop_when, write_synthetic_raw
from tests.test_cli import FakeTerminal

# 5,000 synthetic lines in chunks of 100: some fifty chunks, duplicates of rows from before any kill
# point after it, and dirty lines, so a resumed run must rebuild its duplicate index and counts.
CHUNK = "100"


@pytest.fixture(scope="module")
def raw_input(tmp_path_factory):
    return write_synthetic_raw(tmp_path_factory.mktemp("raw") / "rides.csv", 5000, seed=3)


def preprocess_args(raw_input, chunk=CHUNK) -> list[str]:
    # A fixed data set name: the crash tests watch one output whatever the input file is called.
    return ["preprocess", "--input", str(raw_input), "--chunk-size", chunk, "--data-size", "demo"]


def run_preprocess(tmp_path, raw_input, chunk=CHUNK):
    return run_cli(tmp_path, *preprocess_args(raw_input, chunk))


def reference_of(tmp, raw_input, chunk=CHUNK):
    """The uninterrupted run's processed bytes and manifest."""
    done = run_preprocess(tmp, raw_input, chunk)
    assert done.returncode == 0, done.stderr
    return output_of(tmp).read_bytes(), json.loads(output_of(tmp).with_suffix(".json").read_text())


@pytest.fixture(scope="module")
def reference(tmp_path_factory, raw_input):
    return reference_of(tmp_path_factory.mktemp("reference"), raw_input)


def output_of(tmp_path):
    return tmp_path / "data" / "processed" / "processed_2009-01-01_2015-01-01_demo.csv"


def partial_of(tmp_path):
    """Where the output is written until it is complete."""
    return partial_path(output_of(tmp_path))


def manifest_left(tmp_path) -> dict:
    manifest_file = partial_of(tmp_path).with_suffix(".json")
    return json.loads(manifest_file.read_text()) if manifest_file.exists() else {}


def start(tmp_path, raw_input, chunk=CHUNK, *flags):
    return subprocess.Popen(
        [sys.executable, "-m", "taxifare", *preprocess_args(raw_input, chunk), *flags],
        cwd=tmp_path, env=cli_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def output_reaches(tmp_path, minimum):
    output = partial_of(tmp_path)
    return lambda: output.exists() and output.stat().st_size >= minimum


def stop_mid_run(tmp_path, raw_input, minimum_bytes, chunk=CHUNK, *flags) -> subprocess.Popen:
    """A preprocess (with `flags`) frozen (SIGSTOP) once its output holds `minimum_bytes`, and before it completed.

    A run that completed before it could be stopped is started again, from nothing.
    """
    for _ in range(3):
        process = start(tmp_path, raw_input, chunk, *flags)
        stopped = stop_when(process, output_reaches(tmp_path, minimum_bytes))
        if stopped and not manifest_left(tmp_path).get("complete") and not output_of(tmp_path).exists():
            return process
        process.kill()
        process.communicate()
        shutil.rmtree(tmp_path / "data")
    pytest.fail("preprocess completed before it could be stopped, three times")


def kill_mid_run(tmp_path, raw_input, minimum_bytes, chunk=CHUNK) -> dict:
    """SIGKILL a preprocess once its output holds `minimum_bytes`, before it completed; the manifest it left."""
    process = stop_mid_run(tmp_path, raw_input, minimum_bytes, chunk)
    left = manifest_left(tmp_path)
    process.kill()
    process.communicate()
    assert process.returncode == -signal.SIGKILL
    return left


def assert_matches_reference(tmp_path, reference):
    data, manifest = reference
    output = output_of(tmp_path)
    resumed = json.loads(output.with_suffix(".json").read_text())
    assert resumed["complete"] is True
    assert output.read_bytes() == data
    # The whole record is the uninterrupted run's (counts, samples, fingerprints), but for when it completed.
    assert {**resumed, "completed_at": None} == {**manifest, "completed_at": None}


@pytest.mark.parametrize("kill_at_fraction", [0.0, 0.05, 0.33, 0.71, 0.97])
def test_sigkill_then_rerun_gives_the_uninterrupted_output(tmp_path, raw_input, reference, kill_at_fraction):
    left = kill_mid_run(tmp_path, raw_input, int(len(reference[0]) * kill_at_fraction))
    chunks = reference[1]["chunks_written"]
    # The chunk in flight at the kill may not be in the manifest yet; the one before it is.
    assert left.get("chunks_written", 0) >= int(chunks * kill_at_fraction) - 1
    rerun = run_preprocess(tmp_path, raw_input)
    assert rerun.returncode == 0, rerun.stderr
    if left.get("chunks_written"):
        assert f"resuming {partial_of(tmp_path)} after chunk {left['chunks_written']}" in rerun.stderr
    assert_matches_reference(tmp_path, reference)


def test_sigkill_then_rerun_on_the_real_sample(tmp_path, real_102k):
    raw = real_102k
    (tmp_path / "reference").mkdir()
    reference = reference_of(tmp_path / "reference", raw, chunk="2000")
    left = kill_mid_run(tmp_path, raw, len(reference[0]) // 2, chunk="2000")
    rerun = run_preprocess(tmp_path, raw, chunk="2000")
    assert rerun.returncode == 0, rerun.stderr
    assert f"resuming {partial_of(tmp_path)} after chunk {left['chunks_written']}" in rerun.stderr
    assert_matches_reference(tmp_path, reference)


def test_a_half_written_chunk_is_cut_off_on_resume(tmp_path, raw_input, reference):
    left = kill_mid_run(tmp_path, raw_input, len(reference[0]) // 2)
    with partial_of(tmp_path).open("ab") as file:
        file.write(b"0.14285715,0.5,0.8660254,0,1,0,0,0,0,0,0,0,1,0,0")  # a torn, partial row
    rerun = run_preprocess(tmp_path, raw_input)
    assert rerun.returncode == 0, rerun.stderr
    assert f"resuming {partial_of(tmp_path)} after chunk {left['chunks_written']}" in rerun.stderr
    assert re.search(rf"INFO   resumed: +after chunk {left['chunks_written']}\n", rerun.stderr), rerun.stderr
    assert_matches_reference(tmp_path, reference)


def test_the_progress_of_a_resumed_run_starts_where_the_first_run_stopped(tmp_path, raw_input, reference, monkeypatch):
    left = kill_mid_run(tmp_path, raw_input, len(reference[0]) // 2)
    screen = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", screen)
    monkeypatch.setenv("COLUMNS", "200")
    settings = load_settings({"local_data_path": tmp_path / "data", "chunk_size": CHUNK, "data_size": "demo"}, environ={}, dotenv_path=None)
    preprocess(settings, raw_input)
    first_drawn = screen.getvalue().split("\r")[1]
    assert f"preprocess: {left['rows_read']:,} rows of ~" in first_drawn and "re-reading chunk 1 of" in first_drawn, first_drawn
    assert_matches_reference(tmp_path, reference)


def test_a_file_size_limit_fails_cleanly_and_the_rerun_completes(tmp_path, raw_input, reference):
    limit = len(reference[0]) // 3

    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    failed = subprocess.run(
        [sys.executable, "-m", "taxifare", *preprocess_args(raw_input)],
        cwd=tmp_path, env=cli_env(tmp_path), capture_output=True, text=True, preexec_fn=limit_file_size,
    )
    assert_clean_error(failed, 1, "could not write", "File too large")
    assert manifest_left(tmp_path)["complete"] is False and not output_of(tmp_path).exists()
    rerun = run_preprocess(tmp_path, raw_input)
    assert rerun.returncode == 0, rerun.stderr
    assert_matches_reference(tmp_path, reference)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions")
def test_a_read_only_data_folder_is_a_clear_error(tmp_path, raw_input):
    (tmp_path / "data").mkdir()
    (tmp_path / "data").chmod(0o500)
    failed = run_cli(tmp_path, *preprocess_args(raw_input))
    assert_clean_error(failed, 1)


def test_a_second_run_on_the_same_output_refuses_and_names_the_first(tmp_path, raw_input):
    # The test process is the first run: it holds the same kind of lock a running preprocess holds.
    with OutputLock(output_of(tmp_path), "processed file"):
        second = run_preprocess(tmp_path, raw_input)
        assert json.loads(lock_path(output_of(tmp_path)).read_text())["pid"] == os.getpid()
    assert_clean_error(second, 1, "in use by process", str(os.getpid()), "wait for it to finish")
    assert not output_of(tmp_path).exists()
    assert not lock_path(output_of(tmp_path)).exists(), "the holder removes its lock file on release"


def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path, raw_input, reference):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock = lock_path(output_of(tmp_path))
    lock.parent.mkdir(parents=True)
    lock.write_text(json.dumps({"pid": dead.pid, "host": os.uname().nodename, "started": "x", "command": "taxifare"}))
    done = run_preprocess(tmp_path, raw_input)
    assert done.returncode == 0, done.stderr
    assert f"lock left by process {dead.pid}" in done.stderr
    assert_matches_reference(tmp_path, reference)


@pytest.mark.parametrize(
    "stop, flags, rerun_advice",
    [(signal.SIGINT, (), "rerun the same command"), (signal.SIGTERM, (), "rerun the same command"),
     (signal.SIGINT, ("--force",), "rerun without --force")],  # which would start afresh
)
def test_ctrl_c_or_sigterm_is_a_one_line_message_and_the_rerun_resumes(tmp_path, raw_input, reference, stop, flags, rerun_advice):
    process = stop_mid_run(tmp_path, raw_input, len(reference[0]) // 4, CHUNK, *flags)
    process.send_signal(stop)
    os.kill(process.pid, signal.SIGCONT)
    _, stderr = process.communicate()
    assert process.returncode == 128 + stop and "Traceback" not in stderr
    assert stderr.splitlines()[-1] == f"taxifare: interrupted by {stop.name}; {rerun_advice} to continue where it stopped"
    assert manifest_left(tmp_path)["complete"] is False
    rerun = run_preprocess(tmp_path, raw_input)
    assert rerun.returncode == 0, rerun.stderr
    assert "resuming" in rerun.stderr
    assert_matches_reference(tmp_path, reference)


def test_a_forked_child_does_not_keep_the_lock_alive(tmp_path):
    # Local Dask workers are forked from the preprocess process while it holds the output's lock.
    started, ready = os.pipe()
    with OutputLock(output_of(tmp_path), "processed file"):
        child = os.fork()
        if child == 0:
            os.write(ready, b"1")  # the at-fork handlers have run by now
            time.sleep(5)
            os._exit(0)
        assert os.read(started, 1) == b"1"
    try:
        with OutputLock(output_of(tmp_path), "processed file"):
            pass
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
