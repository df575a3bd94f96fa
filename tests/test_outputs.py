"""Outputs that belong to their input: a processed file is reused only for the rides it was made from,
replaced only whole, and named after its input when no data set name is given."""

import json
import os
import resource
import signal
import subprocess
import sys
import time

import pytest

from taxifare.core.config import load_settings
from taxifare.core.errors import InputError
from taxifare.core.lock import lock_path
from taxifare.preprocessing.run import preprocess
from taxifare.preprocessing.sink import manifest_path, partial_path, read_manifest
from taxifare.sources.demo import write_demo_rides
from taxifare.sources.identity import FINGERPRINT_BYTES, SEGMENT_BYTES, OutputConflict, file_fingerprint
from taxifare.training.data import open_processed, prepare_rows, read_prepared_rows
from tests.conftest import assert_clean_error, cli_env, run_cli

PROCESSED = "processed_2009-01-01_2015-01-01_{}.csv"


def settings_for(tmp_path, **flags):
    base = {"local_data_path": str(tmp_path / "data"), "chunk_size": 1000}
    return load_settings({**base, **flags}, environ={}, dotenv_path=None)


@pytest.fixture(scope="module")
def rides(tmp_path_factory):
    """Two different ride files and their sizes on disk."""
    folder = tmp_path_factory.mktemp("rides")
    write_demo_rides(folder / "rides.csv", rows=4000, seed=1)
    write_demo_rides(folder / "other.csv", rows=1500, seed=2)
    return folder / "rides.csv", folder / "other.csv"


def test_another_input_under_the_same_name_is_refused_naming_both(tmp_path, rides):
    first, other = rides
    output = preprocess(settings_for(tmp_path, data_size="mine"), input_path=first).output
    before = output.read_bytes()
    refused = run_cli(tmp_path, "preprocess", "--input", str(other), "--data-size", "mine")
    assert_clean_error(refused, 2, f"{output} was made from {first}", f"this run reads {other}", "--force", "--data-size")
    assert output.read_bytes() == before
    assert not lock_path(output).exists(), "a run that failed under the lock removes the lock file"
    preprocess(settings_for(tmp_path, data_size="mine"), input_path=other, force=True)
    assert read_manifest(output)["raw"]["files"][0]["path"] == str(other)


def test_rows_appended_to_the_input_are_not_hidden_by_the_old_output(tmp_path, rides):
    raw = tmp_path / "grows.csv"
    raw.write_bytes(rides[0].read_bytes())
    first = preprocess(settings_for(tmp_path), input_path=raw)
    assert preprocess(settings_for(tmp_path), input_path=raw).reused
    with raw.open("ab") as file:
        file.write(b"k9,9.5,2014-03-01 10:00:00 UTC,-73.95,40.78,-73.98,40.76,1\n")
    with pytest.raises(InputError, match=rf"was made from {raw} \({first.manifest['raw']['files'][0]['bytes']:,} bytes.*this run reads {raw} \("):
        preprocess(settings_for(tmp_path), input_path=raw)
    again = preprocess(settings_for(tmp_path), input_path=raw, force=True)
    assert again.manifest["rows_read"] == first.manifest["rows_read"] + 1


@pytest.fixture(scope="module")
def large_rides(tmp_path_factory, rides):
    """Rides over 3 MB: the first ride file's rows ten times over (repeats count as duplicates)."""
    lines = rides[0].read_bytes().splitlines(keepends=True)
    path = tmp_path_factory.mktemp("large") / "large.csv"
    path.write_bytes(lines[0] + b"".join(lines[1:]) * 10)
    assert path.stat().st_size > 3 * FINGERPRINT_BYTES
    return path


def edit_in_the_middle(raw) -> None:
    """Change one digit halfway through `raw`, more than a megabyte from either end (outside what the
    former fingerprint read), keeping its size and modification time."""
    stat = raw.stat()
    data = bytearray(raw.read_bytes())
    at = len(data) // 2 + next(offset for offset, byte in enumerate(data[len(data) // 2 :]) if chr(byte).isdigit())
    assert FINGERPRINT_BYTES < at < len(data) - FINGERPRINT_BYTES
    data[at] = ord("3") if data[at] != ord("3") else ord("4")
    raw.write_bytes(bytes(data))
    os.utime(raw, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert (raw.stat().st_size, raw.stat().st_mtime_ns) == (stat.st_size, stat.st_mtime_ns)


def test_a_file_rewritten_in_the_middle_at_the_same_size_and_time_is_told_apart(tmp_path, large_rides):
    raw = tmp_path / "same.csv"
    raw.write_bytes(large_rides.read_bytes())
    first = preprocess(settings_for(tmp_path), input_path=raw)
    recorded = first.manifest["raw"]["files"][0]
    assert recorded["fingerprint"] == file_fingerprint(str(raw)) and recorded["fingerprint"].startswith("xxh3_128:")
    assert preprocess(settings_for(tmp_path), input_path=raw).reused
    edit_in_the_middle(raw)
    with pytest.raises(OutputConflict, match=rf"was made from {raw} .*{recorded['fingerprint'][:18]}\); this run reads {raw} .*"
                                             "other content at the same size and time; pass --force"):
        preprocess(settings_for(tmp_path), input_path=raw)
    again = preprocess(settings_for(tmp_path), input_path=raw, force=True)
    assert again.manifest["raw"]["files"][0]["fingerprint"] == file_fingerprint(str(raw)) != recorded["fingerprint"]


def test_a_file_rewritten_while_its_output_was_unfinished_is_not_resumed_from(tmp_path, large_rides):
    """The resumed run reads the file from the start again: the bytes before where it stopped must be
    those the first run read, which it checks without reading anything twice."""
    raw = tmp_path / "rides.csv"
    raw.write_bytes(large_rides.read_bytes())
    command = ["preprocess", "--input", str(raw), "--chunk-size", "2000"]
    stopped = stop_when_half_written(tmp_path, command, preprocess(settings_for(tmp_path / "whole"), input_path=raw).manifest["bytes"])
    partial = partial_path(tmp_path / "data" / "processed" / PROCESSED.format("rides"))
    assert read_manifest(partial)["raw"]["read"]["segments"] * SEGMENT_BYTES > raw.stat().st_size // 2, stopped
    edit_in_the_middle(raw)
    refused = run_cli(tmp_path, *command)
    assert_clean_error(refused, 2, f"unfinished {partial} was made from other content of {raw}", "pass --force")


def stop_when_half_written(tmp_path, command: list[str], full_bytes: int) -> subprocess.CompletedProcess:
    """Run `command`, stopped (File too large) once its output has half of its `full_bytes`."""

    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (full_bytes // 2,) * 2)

    failed = subprocess.run([sys.executable, "-m", "taxifare", *command], cwd=tmp_path, env=cli_env(tmp_path),
                            capture_output=True, text=True, preexec_fn=limit_file_size)
    assert_clean_error(failed, 1, "File too large")
    return failed


def test_demo_data_force_then_preprocess_is_refused_until_forced(tmp_path):
    settings = settings_for(tmp_path)
    write_demo_rides(settings.raw_cache_path, rows=2000)
    preprocess(settings)
    assert run_cli(tmp_path, "demo-data", "--rows", "3000", "--force").returncode == 0
    refused = run_cli(tmp_path, "preprocess")
    cache = settings.raw_cache_path
    assert_clean_error(refused, 2, f"was made from {cache}", f"this run reads {cache}", "--force")
    assert preprocess(settings, force=True).manifest["rows_read"] > 3000


def test_an_input_without_a_data_set_name_names_the_output_and_says_how_to_train_on_it(tmp_path, rides):
    raw = tmp_path / "My Rides-2014.csv"
    raw.write_bytes(rides[1].read_bytes())
    done = run_cli(tmp_path, "preprocess", "--input", str(raw))
    assert done.returncode == 0, done.stderr
    output = tmp_path / "data" / "processed" / PROCESSED.format("My_Rides_2014")
    assert done.stdout.strip() == str(output)
    assert "taxifare train --data-size My_Rides_2014" in done.stderr
    manifest = read_manifest(output)
    assert manifest["data_size"] == "My_Rides_2014"
    assert manifest["raw"]["files"][0] == {"path": str(raw), "bytes": raw.stat().st_size, "modified": manifest["raw"]["files"][0]["modified"],
                                           "fingerprint": file_fingerprint(str(raw))}
    with pytest.raises(InputError, match="this window has data set.s. My_Rides_2014: pass --data-size NAME"):
        open_processed(settings_for(tmp_path).processed_path, 100)  # what `taxifare train` alone looks for
    from_environment = load_settings({"local_data_path": str(tmp_path / "data")}, environ={"DATA_SIZE": "chosen"}, dotenv_path=None)
    assert preprocess(from_environment, input_path=raw).output.name == PROCESSED.format("chosen")


def test_an_unfinished_output_of_another_input_is_not_resumed_from(tmp_path, rides):
    first, other = rides
    full = preprocess(settings_for(tmp_path / "reference"), input_path=first)

    stop_when_half_written(tmp_path, ["preprocess", "--input", str(first), "--data-size", "x", "--chunk-size", "500"], full.manifest["bytes"])
    partial = partial_path(tmp_path / "data" / "processed" / PROCESSED.format("x"))
    assert read_manifest(partial)["chunks_written"] > 0
    refused = run_cli(tmp_path, "preprocess", "--input", str(other), "--data-size", "x", "--chunk-size", "500")
    assert_clean_error(refused, 2, f"unfinished {partial} was made from {first}", f"this run reads {other}", "--force")
    resumed = preprocess(settings_for(tmp_path, data_size="x", chunk_size=500), input_path=first)
    assert resumed.resumed_from_chunk and resumed.output.read_bytes() == full.output.read_bytes()
    assert not partial.exists() and not manifest_path(partial).exists()


def test_a_reader_keeps_the_file_it_opened_while_a_forced_run_replaces_it(tmp_path, rides):
    first, other = rides
    settings = settings_for(tmp_path, data_size="same")
    old = preprocess(settings, input_path=first)
    old_copy = tmp_path / "old.csv"
    old_copy.write_bytes(old.output.read_bytes())
    manifest_path(old_copy).write_text(json.dumps(old.manifest))
    data = open_processed(old.output, 100)
    preprocess(settings, input_path=other, force=True)
    assert read_manifest(old.output)["raw"]["files"][0]["path"] == str(other)
    expected = open_processed(old_copy, 100)
    rows = prepare_rows(data, tmp_path / "rows.f32")
    reference = prepare_rows(expected, tmp_path / "reference.f32")
    columns = len(data.columns)
    assert read_prepared_rows(tmp_path / "rows.f32", columns, rows, range(len(data.spans))).tolist() == (
        read_prepared_rows(tmp_path / "reference.f32", columns, reference, range(len(expected.spans))).tolist()
    )
    assert (rows.test == reference.test).all() and data.manifest == old.manifest


def test_a_new_file_beside_the_old_manifest_is_refused_and_the_rerun_completes_the_swap(tmp_path, rides):
    first, other = rides
    settings = settings_for(tmp_path, data_size="same")
    preprocess(settings, input_path=first)
    # The state a crash leaves between the two renames of a publish: the new CSV, the old manifest.
    preprocess(settings_for(tmp_path / "elsewhere", data_size="same"), input_path=other)
    new = settings_for(tmp_path / "elsewhere", data_size="same").processed_path
    partial = partial_path(settings.processed_path)
    manifest_path(partial).write_text(manifest_path(new).read_text())
    os.replace(new, settings.processed_path)
    with pytest.raises(InputError, match="is not the file its manifest describes"):
        open_processed(settings.processed_path, 100)
    assert preprocess(settings, input_path=other).reused
    assert open_processed(settings.processed_path, 100).manifest["raw"]["files"][0]["path"] == str(other)


def test_train_racing_a_forced_preprocess_never_mixes_the_two(tmp_path, rides):
    big = tmp_path / "big.csv"
    write_demo_rides(big, rows=12_000, seed=5)
    small = rides[1]
    env = cli_env(tmp_path, DATA_SIZE="race", CHUNK_SIZE="1000", EVAL_EVERY="1000")
    old = preprocess(settings_for(tmp_path, data_size="race"), input_path=big).manifest
    train = subprocess.Popen(
        [sys.executable, "-m", "taxifare", "train", "--epochs", "1", "--hidden-units", "8", "--members", "1"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    checkpoints = tmp_path / "registry" / ".checkpoints"
    while train.poll() is None and not list(checkpoints.glob("*/rows.f32")):
        time.sleep(0.001)  # until train has opened the processed file and started reading it
    # Paused there (most likely mid-read), while a forced run replaces the file with one from other rides.
    train.send_signal(signal.SIGSTOP)
    try:
        rewrite = run_cli(tmp_path, "preprocess", "--input", str(small), "--force", env=env)
    finally:
        train.send_signal(signal.SIGCONT)
    assert rewrite.returncode == 0, rewrite.stderr
    _, stderr = train.communicate(timeout=300)
    # It opened the old file before the rename, and reads that file to the end: its rows, its manifest.
    assert train.returncode == 0, stderr
    params = json.loads(next((tmp_path / "registry").glob("*/params.json")).read_text())
    assert params["data"]["raw"] == old["raw"]
    assert params["data"]["rows"] == old["rows_kept"]
    assert params["data"]["train_rows"] + params["data"]["validation_rows"] + params["data"]["test_rows"] == old["rows_kept"]


def test_a_processed_file_edited_in_place_at_the_same_size_is_refused(tmp_path, rides):
    output = preprocess(settings_for(tmp_path), input_path=rides[1]).output
    data = bytearray(output.read_bytes())
    data[-2] = ord("1") if data[-2] != ord("1") else ord("2")  # the last fare's last digit
    output.write_bytes(bytes(data))
    with pytest.raises(InputError, match="is not the file its manifest describes"):
        open_processed(output, 100)
