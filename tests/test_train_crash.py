"""`taxifare train` killed with SIGKILL resumes and finishes; two runs on the same data never overlap."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from taxifare.core.lock import OutputLock
from taxifare.model.saved import load_model
from taxifare.registry.store import Registry
from taxifare.training.loop import checkpoint_folder
from tests.conftest import assert_clean_error, cli_env, run_cli, stop_when
from tests.training_data import processed_demo, with_registry

# Two networks: the ensemble's checkpoint (each member's weights and Adam moments) at two fifths of the cost.
TRAIN_ARGS = ("train", "--chunk-size", "200", "--batch-size", "32", "--seed", "5", "--epochs", "2", "--hidden-units", "32,16", "--members", "2")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return processed_demo(tmp_path_factory.mktemp("crash"), rides=6000)


def _env(demo, registry):
    registry.parent.mkdir(parents=True, exist_ok=True)
    return cli_env(registry.parent, LOCAL_DATA_PATH=str(demo.local_data_path), LOCAL_REGISTRY_PATH=str(registry))


def _kill_after_chunks(demo, registry, chunks: int) -> dict:
    """Start training, SIGKILL it once its checkpoint records `chunks` chunks and before it published a
    run; the position the checkpoint holds."""
    state_file = checkpoint_folder(with_registry(demo, registry), demo.processed_path) / "state.json"
    process = subprocess.Popen(
        [sys.executable, "-m", "taxifare", *TRAIN_ARGS],
        cwd=registry.parent,
        env=_env(demo, registry),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        reached = stop_when(process, lambda: state_file.is_file() and json.loads(state_file.read_text())["chunks_trained"] >= chunks)
        assert reached, f"training ended ({process.returncode}) before it could be killed"
        state = json.loads(state_file.read_text())
        assert Registry(registry).runs() == [], "training published its run before it could be killed"
    finally:
        process.kill()
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    assert state["chunks_trained"] >= chunks
    return state["position"]


def test_sigkilled_training_resumes_and_matches_an_uninterrupted_run(demo, tmp_path):
    killed_registry = tmp_path / "killed" / "registry"
    # Past the first pass, so that the resumed run restores a learning curve, best weights and a chunk order.
    position = _kill_after_chunks(demo, killed_registry, chunks=25)

    resumed = run_cli(killed_registry.parent, *TRAIN_ARGS, env=_env(demo, killed_registry))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed:" in resumed.stderr and f"at pass {position['pass_index'] + 1}, chunk {position['chunk'] + 1}" in resumed.stderr

    plain_registry = tmp_path / "plain" / "registry"
    plain = run_cli(plain_registry.parent, *TRAIN_ARGS, env=_env(demo, plain_registry))
    assert plain.returncode == 0, plain.stderr[-2000:]

    resumed_run, plain_run = Registry(killed_registry).latest(), Registry(plain_registry).latest()
    assert str(resumed_run.path) == resumed.stdout.strip()
    final = resumed_run.metrics["final"]
    assert final["rows_trained"] == 2 * resumed_run.params["data"]["train_rows"]
    assert resumed_run.params["resumed"][0]["pass"] == position["pass_index"] + 1
    # Bit-identical to the run that was never interrupted (see the training loop's docstring).
    assert final["test_mae"] == plain_run.metrics["final"]["test_mae"]
    assert [entry["validation_mae"] for entry in resumed_run.metrics["evaluations"]] == [
        entry["validation_mae"] for entry in plain_run.metrics["evaluations"]
    ]
    assert resumed_run.model_path.read_bytes() != b"" and _weights(resumed_run) == _weights(plain_run)
    load_model(resumed_run.model_path)
    assert not checkpoint_folder(with_registry(demo, killed_registry), demo.processed_path).exists()


def _weights(run) -> list[bytes]:
    return [variable.numpy().tobytes() for variable in load_model(run.model_path).trainable_variables]


def test_second_training_on_the_same_data_is_refused(demo, tmp_path):
    registry = tmp_path / "registry"
    folder = checkpoint_folder(with_registry(demo, registry), demo.processed_path)
    with OutputLock(folder, "training checkpoint"):
        result = run_cli(tmp_path, *TRAIN_ARGS, env=_env(demo, registry))
    assert_clean_error(result, 1, f"in use by process {os.getpid()}")


def test_force_starts_afresh(demo, tmp_path):
    registry = tmp_path / "registry"
    _kill_after_chunks(demo, registry, chunks=2)
    result = run_cli(tmp_path, *TRAIN_ARGS, "--force", env=_env(demo, registry))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "resumed" not in result.stderr
    assert Registry(registry).latest().params["resumed"] == []


def test_checkpoint_weights_of_another_format_are_refused_in_one_line(demo, tmp_path):
    registry = tmp_path / "registry"
    _kill_after_chunks(demo, registry, chunks=2)
    folder = checkpoint_folder(with_registry(demo, registry), demo.processed_path)
    # The file the state names: the kill may land before the previous weights file was removed.
    weights = folder / json.loads((folder / "state.json").read_text())["weights_file"]
    with np.load(weights) as saved:
        # Stored by position, as taxifare once did: nothing says which variable each array belongs to.
        arrays = {f"{name.split('/')[0]}_{index}": saved[name] for index, name in enumerate(saved.files)}
    np.savez(weights, **arrays)
    result = run_cli(tmp_path, *TRAIN_ARGS, env=_env(demo, registry))
    assert_clean_error(result, 2, "training checkpoint does not fit this model (no current quantile_normal/knots, no current member_1_numeric_embedding/frequencies", "--force")
