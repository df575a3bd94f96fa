"""Hostile processed files and registry contents: one clear line and exit 2, never a wrong file accepted."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from taxifare.preprocessing.sink import manifest_path, processed_fingerprint
from taxifare.training.loop import train
from tests.conftest import assert_clean_error, cli_env, run_cli
from tests.training_data import processed_demo, with_registry


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    settings = processed_demo(folder, rides=3000)
    # Any run will do: these tests damage its files, not its quality.
    settings = with_registry(settings, folder / "registry", chunk_size=3000, epochs=1, members=1, hidden_units=(16,))
    train(settings)
    return settings


@pytest.fixture
def copy(trained, tmp_path):
    """A private copy of the processed data and registry, free to damage."""
    shutil.copytree(trained.local_data_path, tmp_path / "data")
    shutil.copytree(trained.local_registry_path, tmp_path / "registry")
    processed = tmp_path / "data" / "processed" / trained.processed_path.name
    run = next(path for path in (tmp_path / "registry").iterdir() if not path.name.startswith("."))
    return processed, run


def edit_json(path, **changes):
    value = json.loads(path.read_text())
    value.update(changes)
    path.write_text(json.dumps(value))


def train_cli(tmp_path):
    return run_cli(tmp_path, "train", "--chunk-size", "3000", env=cli_env(tmp_path))


def test_a_manifest_that_does_not_match_its_csv(copy, tmp_path):
    processed, _ = copy
    with processed.open("a") as file:
        file.write("0," * 73 + "12.5\n")
    assert_clean_error(train_cli(tmp_path), 2, "the file changed after preprocessing")


def test_a_processed_file_from_another_preprocessor_version(copy, tmp_path):
    processed, _ = copy
    edit_json(manifest_path(processed), preprocessor_version=1)
    assert_clean_error(train_cli(tmp_path), 2, "made by preprocessor version 1", "preprocess --force")


# A process that exits while TensorFlow's libraries load can abort (SIGABRT, seen on a loaded machine)
# instead of exiting 2: a refused file is refused before the import starts.
_REFUSED_BEFORE_IMPORT = """
import sys
from taxifare.cli.main import main
try:
    main(["train", "--chunk-size", "3000"])
except SystemExit as stop:
    print(stop.code, "tensorflow" in sys.modules, "keras" in sys.modules)
"""


def test_a_refused_file_is_refused_before_tensorflow_is_imported(copy, tmp_path):
    processed, _ = copy
    edit_json(manifest_path(processed), preprocessor_version=1)
    done = subprocess.run([sys.executable, "-c", _REFUSED_BEFORE_IMPORT], env=cli_env(tmp_path), cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["2", "False", "False"], (done.stdout, done.stderr[-2000:])


def test_a_processed_csv_edited_by_hand_with_a_column_missing(copy, tmp_path):
    processed, _ = copy
    pd.read_csv(processed).drop(columns=["hour_cos"]).to_csv(processed, index=False)
    edit_json(manifest_path(processed), bytes=processed.stat().st_size, fingerprint=processed_fingerprint(processed))
    assert_clean_error(train_cli(tmp_path), 2, "header does not match its manifest")


def test_an_unreadable_manifest(copy, tmp_path):
    processed, _ = copy
    manifest_path(processed).write_bytes(b"\x00{not json")
    assert_clean_error(train_cli(tmp_path), 2, "unreadable processed-file manifest")


def test_a_registry_run_made_by_another_preprocessor(copy, tmp_path):
    _, run = copy
    params = json.loads((run / "params.json").read_text())
    params["preprocessor_version"] = 99
    (run / "params.json").write_text(json.dumps(params))
    assert_clean_error(run_cli(tmp_path, "pred", env=cli_env(tmp_path)), 2, "preprocessor version 99")


def test_a_registry_run_with_garbage_params_is_skipped_not_trusted(copy, tmp_path):
    _, run = copy
    (run / "params.json").write_text("[1, 2")
    listed = run_cli(tmp_path, "models", env=cli_env(tmp_path))
    assert "Traceback" not in listed.stderr and f"skipping registry folder {run.name}" in listed.stderr
    assert_clean_error(run_cli(tmp_path, "pred", env=cli_env(tmp_path)), 2, "run `taxifare train` first")


def test_many_unreadable_run_folders_are_named_three_at_a_time(copy, tmp_path):
    _, run = copy
    for number in range(5):
        (run.parent / f"20200101T00000{number}Z-00000{number}").mkdir()  # run ids with nothing inside
    listed = run_cli(tmp_path, "models", env=cli_env(tmp_path))
    assert listed.returncode == 0 and run.name in listed.stdout
    assert listed.stderr.count("skipping registry folder") == 3
    assert "skipping 2 more unreadable registry folders" in listed.stderr
