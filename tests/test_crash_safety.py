"""preprocess under SIGKILL, full disks and concurrent runs: real processes, real files."""

import json
import os
import resource
import signal
import subprocess
import sys
import time

import pytest

from taxifare.lock import OutputLock, lock_path
from taxifare.sink import partial_path
from tests.conftest import assert_clean_error, cli_env, real_file, run_cli

CHUNK = "2000"


@pytest.fixture(scope="module")
def raw_input():
    return real_file("cab-fare-ashutoshgalinde_train.csv")


@pytest.fixture(scope="module")
def reference(tmp_path_factory, raw_input):
    """The uninterrupted run's processed bytes and manifest."""
    tmp = tmp_path_factory.mktemp("reference")
    done = run_cli(tmp, "preprocess", "--input", str(raw_input), "--chunk-size", CHUNK)
    assert done.returncode == 0, done.stderr
    output = output_of(tmp)
    return output.read_bytes(), json.loads(output.with_suffix(".json").read_text())


def output_of(tmp_path):
    """Named after the input when no DATA_SIZE is given."""
    return tmp_path / "data" / "processed" / "processed_2009-01-01_2015-01-01_cab_fare_ashutoshgalinde_train.csv"


def partial_of(tmp_path):
    """Where the output is written until it is complete."""
    return partial_path(output_of(tmp_path))


def start(tmp_path, raw_input, **popen):
    return subprocess.Popen(
        [sys.executable, "-m", "taxifare", "preprocess", "--input", str(raw_input), "--chunk-size", CHUNK],
        cwd=tmp_path, env=cli_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen,
    )


def wait_for_bytes(path, minimum, process, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if path.exists() and path.stat().st_size >= minimum:
            return True
        time.sleep(0.002)
    return False


def assert_matches_reference(tmp_path, reference):
    data, manifest = reference
    output = output_of(tmp_path)
    resumed = json.loads(output.with_suffix(".json").read_text())
    assert resumed["complete"] is True
    assert output.read_bytes() == data
    for key in ("rows_read", "rows_kept", "rejected", "chunks_written", "bytes"):
        assert resumed[key] == manifest[key], key


@pytest.mark.parametrize("kill_at_fraction", [0.0, 0.05, 0.33, 0.71, 0.97])
def test_sigkill_then_rerun_gives_the_uninterrupted_output(tmp_path, raw_input, reference, kill_at_fraction):
    process = start(tmp_path, raw_input)
    reached = wait_for_bytes(partial_of(tmp_path), int(len(reference[0]) * kill_at_fraction), process)
    process.kill()
    process.communicate()
    assert reached or process.returncode == 0
    manifest_file = partial_of(tmp_path).with_suffix(".json")
    left = json.loads(manifest_file.read_text()) if manifest_file.exists() else {}
    rerun = run_cli(tmp_path, "preprocess", "--input", str(raw_input), "--chunk-size", CHUNK)
    assert rerun.returncode == 0, rerun.stderr
    if left.get("chunks_written") and not left["complete"]:
        assert f"resuming {partial_of(tmp_path)} after chunk {left['chunks_written']}" in rerun.stderr
    assert_matches_reference(tmp_path, reference)


def test_a_half_written_chunk_is_cut_off_on_resume(tmp_path, raw_input, reference):
    process = start(tmp_path, raw_input)
    wait_for_bytes(partial_of(tmp_path), len(reference[0]) // 2, process)
    process.kill()
    process.communicate()
    with partial_of(tmp_path).open("ab") as file:
        file.write(b"0.14285715,0.5,0.8660254,0,1,0,0,0,0,0,0,0,1,0,0")  # a torn, partial row
    rerun = run_cli(tmp_path, "preprocess", "--input", str(raw_input), "--chunk-size", CHUNK)
    assert rerun.returncode == 0, rerun.stderr
    assert "resuming" in rerun.stderr and "resumed" in rerun.stderr
    assert_matches_reference(tmp_path, reference)


def test_a_file_size_limit_fails_cleanly_and_the_rerun_completes(tmp_path, raw_input, reference):
    limit = len(reference[0]) // 3

    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    failed = subprocess.run(
        [sys.executable, "-m", "taxifare", "preprocess", "--input", str(raw_input), "--chunk-size", CHUNK],
        cwd=tmp_path, env=cli_env(tmp_path), capture_output=True, text=True, preexec_fn=limit_file_size,
    )
    assert_clean_error(failed, 1, "could not write", "File too large")
    manifest = json.loads(partial_of(tmp_path).with_suffix(".json").read_text())
    assert manifest["complete"] is False and not output_of(tmp_path).exists()
    rerun = run_cli(tmp_path, "preprocess", "--input", str(raw_input), "--chunk-size", CHUNK)
    assert rerun.returncode == 0, rerun.stderr
    assert_matches_reference(tmp_path, reference)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions")
def test_a_read_only_data_folder_is_a_clear_error(tmp_path, raw_input):
    (tmp_path / "data").mkdir()
    (tmp_path / "data").chmod(0o500)
    failed = run_cli(tmp_path, "preprocess", "--input", str(raw_input))
    assert_clean_error(failed, 1)


def test_a_second_run_on_the_same_output_refuses_and_names_the_first(tmp_path, raw_input):
    # The test process is the first run: it holds the same kind of lock a running preprocess holds.
    with OutputLock(output_of(tmp_path), "processed file"):
        second = run_cli(tmp_path, "preprocess", "--input", str(raw_input), "--chunk-size", CHUNK)
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
    done = run_cli(tmp_path, "preprocess", "--input", str(raw_input), "--chunk-size", CHUNK)
    assert done.returncode == 0, done.stderr
    assert f"lock left by process {dead.pid}" in done.stderr
    assert_matches_reference(tmp_path, reference)


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_is_a_one_line_message_and_the_rerun_resumes(tmp_path, raw_input, reference, stop):
    process = start(tmp_path, raw_input)
    wait_for_bytes(partial_of(tmp_path), len(reference[0]) // 4, process)
    process.send_signal(stop)
    _, stderr = process.communicate()
    if process.returncode != 0:  # it may have finished first
        assert process.returncode == 128 + stop and "Traceback" not in stderr
        assert f"taxifare: interrupted by {stop.name}; rerun the same command" in stderr
    rerun = run_cli(tmp_path, "preprocess", "--input", str(raw_input), "--chunk-size", CHUNK)
    assert rerun.returncode == 0, rerun.stderr
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
