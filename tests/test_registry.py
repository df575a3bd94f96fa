"""The registry's lifecycle: aliases per data set, listing, removing and pruning runs and scratch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from taxifare import registry as registry_module
from taxifare.demo import write_demo_rides
from taxifare.errors import InputError
from taxifare.preprocess import preprocess
from taxifare.registry import RUN_FILES, Registry
from taxifare.training import train
from tests.conftest import REPO, assert_clean_error, cli_env, run_cli
from tests.training_data import demo_settings, with_registry


def _processed(folder, data_size: str, rides: int = 1500):
    settings = demo_settings(folder, chunk_size=50_000, data_size=data_size)
    write_demo_rides(settings.raw_cache_path, rows=rides, seed=7)
    preprocess(settings)
    return settings


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A registry with three runs on data set `small` (a well trained one first) and one on `other`."""
    folder = tmp_path_factory.mktemp("registry")
    registry = folder / "registry"
    small, other = _processed(folder / "small", "small"), _processed(folder / "other", "other")
    runs = [
        train(with_registry(small, registry, chunk_size=2000, epochs=3, learning_rate=0.01, batch_size=64)).run,
        train(with_registry(small, registry, chunk_size=2000, learning_rate=1e-6)).run,
        train(with_registry(small, registry, chunk_size=2000, learning_rate=1e-6, seed=3)).run,
        train(with_registry(other, registry, chunk_size=2000)).run,
    ]
    return registry, runs


@pytest.fixture
def registry(trained, tmp_path):
    """A private copy of the trained registry, free to remove from; and the runs, oldest first."""
    root, runs = trained
    shutil.copytree(root, tmp_path / "registry")
    return Registry(tmp_path / "registry"), [run.run_id for run in runs]


def _test_mae(registry: Registry, run_id: str) -> float:
    return json.loads((registry.root / run_id / "metrics.json").read_text())["final"]["test_mae"]


def test_latest_and_best_are_per_data_set(registry):
    registry, (first, second, third, other) = registry
    best = min((first, second, third), key=lambda run_id: _test_mae(registry, run_id))
    assert best != third, "the fixture should make the best run of `small` another than its latest"

    assert registry.resolve(None, "small").run_id == third
    assert registry.resolve("latest", "small").run_id == third
    assert registry.resolve("best", "small").run_id == best
    assert registry.resolve("latest", "other").run_id == other
    assert registry.resolve("best", "other").run_id == other
    assert registry.resolve(second, "other").run_id == second


def test_no_run_of_the_data_set_names_the_data_sets_that_have_runs(registry):
    registry, _ = registry
    with pytest.raises(InputError, match=r"no run trained on data set 'big'.*data set\(s\) other, small"):
        registry.resolve("best", "big")


def test_pred_takes_an_alias_of_its_data_set(registry, tmp_path):
    registry, (first, second, third, other) = registry
    best = min((first, second, third), key=lambda run_id: _test_mae(registry, run_id))
    env = cli_env(tmp_path, LOCAL_REGISTRY_PATH=str(registry.root), DATA_SIZE="small")
    done = run_cli(tmp_path, "pred", "--model", "best", env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"predicted with run {best}" in done.stderr

    assert_clean_error(run_cli(tmp_path, "pred", "--data-size", "big", env=env), 2, "data set(s) other, small")


def test_models_json_lists_data_set_hyperparameters_test_mae_parent_and_aliases(registry, tmp_path):
    registry, run_ids = registry
    done = run_cli(tmp_path, "models", "--json", env=cli_env(tmp_path, LOCAL_REGISTRY_PATH=str(registry.root)))
    assert done.returncode == 0, done.stderr
    listed = json.loads(done.stdout)
    assert [entry["run_id"] for entry in listed] == run_ids
    for entry in listed:
        params = json.loads((registry.root / entry["run_id"] / "params.json").read_text())
        hyper = params["hyperparameters"]
        assert entry["data_size"] == params["data"]["data_size"]
        assert (entry["learning_rate"], entry["batch_size"], entry["epochs"]) == (
            hyper["learning_rate"], hyper["batch_size"], hyper["epochs"]
        )
        assert (entry["hidden_units"], entry["loss"]) == (hyper["hidden_units"], hyper["loss"])
        assert entry["test_mae"] == _test_mae(registry, entry["run_id"])
        assert entry["parent_run_id"] is None
    aliases = {entry["run_id"]: entry["aliases"] for entry in listed}
    assert "latest" in aliases[run_ids[2]] and aliases[run_ids[3]] == ["latest", "best"]
    assert sum("best" in names for names in aliases.values()) == 2


def test_models_table_has_a_row_per_run(registry, tmp_path):
    registry, run_ids = registry
    done = run_cli(tmp_path, "models", env=cli_env(tmp_path, LOCAL_REGISTRY_PATH=str(registry.root)))
    assert done.returncode == 0, done.stderr
    header, *rows = done.stdout.strip().splitlines()
    assert header.split()[:4] == ["run", "id", "data", "set"]
    assert [row.split()[0] for row in rows] == run_ids
    assert rows[3].split()[1] == "other" and rows[3].rstrip().endswith("latest,best")


def test_an_empty_registry_lists_nothing_and_exits_0(tmp_path):
    done = run_cli(tmp_path, "models")
    assert (done.returncode, done.stdout) == (0, ""), done.stderr
    done = run_cli(tmp_path, "models", "--json")
    assert (done.returncode, json.loads(done.stdout)) == (0, [])


def test_rm_never_lists_a_half_removed_run(registry, monkeypatch):
    registry, (first, second, third, other) = registry
    seen_while_deleting = []
    real_rmtree = shutil.rmtree

    def crash_half_way(path, ignore_errors=False):
        if not os.path.exists(path):
            return
        os.unlink(os.path.join(path, "model.keras"))
        seen_while_deleting.append([run.run_id for run in Registry(registry.root).runs()])
        raise KeyboardInterrupt

    monkeypatch.setattr(registry_module.shutil, "rmtree", crash_half_way)
    with pytest.raises(KeyboardInterrupt):
        registry.remove(second)
    monkeypatch.setattr(registry_module.shutil, "rmtree", real_rmtree)

    assert seen_while_deleting == [[first, third, other]]
    assert [run.run_id for run in registry.runs()] == [first, third, other]
    for run in registry.runs():
        assert sorted(path.name for path in run.path.iterdir()) == sorted(RUN_FILES)
    assert registry.remove(third) > 0
    assert [run.run_id for run in registry.runs()] == [first, other]


def test_rm_of_an_unknown_run_is_a_clear_error(registry, tmp_path):
    registry, _ = registry
    done = run_cli(tmp_path, "models", "rm", "../small", env=cli_env(tmp_path, LOCAL_REGISTRY_PATH=str(registry.root)))
    assert_clean_error(done, 2, "no run '../small'")


HOLD_LOCK = """
import sys, time
from pathlib import Path
from taxifare.lock import OutputLock
with OutputLock(Path(sys.argv[1]), "training checkpoint"):
    print("held", flush=True)
    time.sleep(120)
"""


def _scratch(path, size: int):
    path.mkdir(parents=True)
    (path / "data.bin").write_bytes(b"x" * size)
    return path


def _bytes_under(path) -> int:
    return sum(entry.stat().st_size for entry in path.rglob("*") if entry.is_file())


def test_prune_keeps_the_newest_and_the_best_of_each_data_set_and_spares_a_running_train(registry, tmp_path):
    registry, (first, second, third, other) = registry
    best = min((first, second, third), key=lambda run_id: _test_mae(registry, run_id))
    root = registry.root
    dead = _scratch(root / ".checkpoints" / "processed_dead-0123456789", 1000)
    (root / ".checkpoints" / "processed_dead-0123456789.lock").write_text('{"pid": 999999999, "host": "x"}')
    live = _scratch(root / ".checkpoints" / "processed_live-0123456789", 2000)
    publishing = _scratch(root / ".tmp-20250101T000000Z-abcdef", 3000)
    half_removed = _scratch(root / ".removing-20240101T000000Z-abcdef", 4000)
    expected_runs = {run_id for run_id in (first, second, third) if run_id not in (best, third)}
    expected_bytes = sum(_bytes_under(root / run_id) for run_id in expected_runs) + 1000 + 4000
    env = cli_env(tmp_path, LOCAL_REGISTRY_PATH=str(root), PYTHONPATH=str(REPO))
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(live)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        done = run_cli(tmp_path, "models", "prune", "--keep", "1", env=env)
    finally:
        holder.kill()
        holder.wait()

    assert done.returncode == 0, done.stderr
    assert {run.run_id for run in registry.runs()} == {best, third, other}
    assert not dead.exists() and not half_removed.exists()
    assert live.is_dir() and publishing.is_dir(), "a running train's checkpoint and publish folder must stay"
    assert f"freed {expected_bytes:,} bytes" in done.stdout
    assert sum(line.startswith("removed run") for line in done.stdout.splitlines()) == len(expected_runs)

    done = run_cli(tmp_path, "models", "prune", "--keep", "1", env=env)
    assert done.returncode == 0, done.stderr
    assert not live.exists() and not publishing.exists()
    assert f"freed {2000 + 3000:,} bytes" in done.stdout
    assert {run.run_id for run in registry.runs()} == {best, third, other}
