"""The registry's lifecycle: aliases per data set, listing, removing and pruning runs and scratch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from taxifare.core.errors import InputError
from taxifare.preprocessing.run import preprocess
from taxifare.registry import store as registry_module
from taxifare.registry.store import RUN_FILES, Registry
from taxifare.sources.demo import write_demo_rides
from taxifare.training.loop import train
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
    quick = {"chunk_size": 2000, "members": 1, "hidden_units": (32, 16)}
    runs = [
        train(with_registry(small, registry, **quick, epochs=3, learning_rate=0.01, batch_size=64)).run,
        # Stops early: at this learning rate the second pass cannot improve on the first.
        train(with_registry(small, registry, **quick, epochs=5, patience=1, learning_rate=1e-6)).run,
        train(with_registry(small, registry, **quick, epochs=2, learning_rate=1e-6, seed=3)).run,
        train(with_registry(other, registry, **quick, epochs=2)).run,
    ]
    return registry, runs


@pytest.fixture
def registry(trained, tmp_path):
    """A private copy of the trained registry, free to remove from; and the runs, oldest first."""
    root, runs = trained
    shutil.copytree(root, tmp_path / "registry")
    return Registry(tmp_path / "registry"), [run.run_id for run in runs]


def _final(registry: Registry, run_id: str) -> dict:
    return json.loads((registry.root / run_id / "metrics.json").read_text())["final"]


def _edit(registry: Registry, run_id: str, name: str, change) -> None:
    """Rewrite one file (params or metrics) of a run in the private copy."""
    path = registry.root / run_id / f"{name}.json"
    content = json.loads(path.read_text())
    change(content)
    path.write_text(json.dumps(content))


def _by_validation(registry: Registry, run_ids) -> list[str]:
    return sorted(run_ids, key=lambda run_id: _final(registry, run_id)["validation_mae"])


def test_latest_is_the_newest_run_of_any_data_set_unless_one_is_named(registry):
    registry, (first, second, third, other) = registry
    assert registry.resolve(None).run_id == other
    assert registry.resolve("latest").run_id == other
    assert registry.resolve("latest", "small").run_id == third
    assert registry.resolve("small:latest").run_id == third
    assert registry.resolve("other:latest").run_id == other
    assert registry.resolve(second, "other").run_id == second  # a run id is never narrowed
    with pytest.raises(InputError, match="small:latest names data set small, but --data-size says other"):
        registry.resolve("small:latest", "other")


def test_latest_follows_the_finishing_time_to_the_microsecond_not_the_id(registry):
    registry, (first, second, third, other) = registry
    # The oldest id finishes last; then two runs finish within the same second, the earlier id later.
    _edit(registry, first, "params", lambda params: params.update(finished_at="2031-01-01T00:00:09.000001+00:00"))
    _edit(registry, third, "params", lambda params: params.update(finished_at="2031-01-01T00:00:05.900000+00:00"))
    assert registry.resolve("small:latest").run_id == first
    _edit(registry, second, "params", lambda params: params.update(finished_at="2031-01-01T00:00:09.000002+00:00"))
    assert registry.resolve("small:latest").run_id == second
    assert [run.run_id for run in registry.runs()] == [other, third, first, second]
    _edit(registry, second, "params", lambda params: params.update(finished_at="2031-01-01T00:00:09+00:00"))
    _edit(registry, first, "params", lambda params: params.update(finished_at="2031-01-01T01:00:09+01:00"))  # the same instant
    assert [run.run_id for run in registry.runs()][-2:] == sorted([first, second])  # then by id: a total order


def test_best_is_the_lowest_validation_mae_among_runs_comparable_with_latest(registry):
    registry, (first, second, third, other) = registry
    best, runner_up, worst = _by_validation(registry, [first, second, third])
    assert best != third, "the fixture should make the best run of `small` another than its latest"
    groups = {run.run_id: run.comparable_group for run in registry.runs()}
    assert groups[first] == groups[second] == groups[third] != groups[other]
    assert registry.resolve("small:best").run_id == best
    assert registry.resolve("best", "small").run_id == best
    assert registry.resolve("best").run_id == other  # the only run comparable with the latest
    # The test figure plays no part: the worst run on validation gets the lowest test MAE.
    _edit(registry, worst, "metrics", lambda metrics: metrics["final"].update(test_mae=0.01))
    assert registry.resolve("small:best").run_id == best
    # A run on other processed data under the same name is not comparable: once latest, its group rules.
    _edit(registry, worst, "params", lambda params: params["data"].update(comparable_group="f00d"))
    _edit(registry, worst, "params", lambda params: params.update(finished_at="2031-01-01T00:00:00+00:00"))
    assert registry.resolve("small:best").run_id == worst


def test_no_run_of_the_data_set_names_the_data_sets_that_have_runs(registry):
    registry, _ = registry
    with pytest.raises(InputError, match=r"no run trained on data set 'big'.*data set\(s\) other, small"):
        registry.resolve("best", "big")
    with pytest.raises(InputError, match=r"no run trained on data set 'big'"):
        registry.resolve("big:latest")


def test_pred_names_the_run_its_data_set_and_test_mae_also_quiet(registry, tmp_path):
    registry, (first, second, third, other) = registry
    # DATA_SIZE names the data to preprocess and train on; it does not narrow the run (a .env from
    # .env.sample sets it to demo).
    env = cli_env(tmp_path, LOCAL_REGISTRY_PATH=str(registry.root), DATA_SIZE="small")
    for flags, run_id in ([(), other], [("--data-size", "small"), third], [("--model", "small:best"), _by_validation(registry, [first, second, third])[0]]):
        done = run_cli(tmp_path, "--quiet", "pred", *flags, env=env)
        assert done.returncode == 0, done.stderr[-2000:]
        run = registry.get(run_id)
        named = [line for line in done.stderr.splitlines() if "predicting with run" in line]
        assert len(named) == 1 and named[0].endswith(f"predicting with run {run_id} (data set {run.data_size}, test MAE ${run.test_mae:.3f})"), done.stderr
        synthetic = [line for line in done.stderr.splitlines() if "synthetic demo rides" in line]
        assert len(synthetic) == 1 and f"run {run_id} was trained on synthetic demo rides" in synthetic[0]
    assert_clean_error(run_cli(tmp_path, "pred", "--data-size", "big", env=env), 2, "data set(s) other, small")


def test_models_json_lists_groups_passes_figures_parent_and_references(registry, tmp_path):
    registry, run_ids = registry
    done = run_cli(tmp_path, "models", "--json", env=cli_env(tmp_path, LOCAL_REGISTRY_PATH=str(registry.root)))
    assert done.returncode == 0, done.stderr
    listed = json.loads(done.stdout)
    assert [entry["run_id"] for entry in listed] == run_ids
    for entry in listed:
        params = json.loads((registry.root / entry["run_id"] / "params.json").read_text())
        hyper, final = params["hyperparameters"], _final(registry, entry["run_id"])
        assert (entry["data_size"], entry["comparable_group"]) == (params["data"]["data_size"], params["data"]["comparable_group"])
        assert entry["synthetic"] is True
        assert (entry["learning_rate"], entry["batch_size"], entry["epochs"]) == (hyper["learning_rate"], hyper["batch_size"], hyper["epochs"])
        assert entry["passes"] == final["passes"]
        assert (entry["hidden_units"], entry["loss"]) == (hyper["hidden_units"], hyper["loss"])
        assert (entry["validation_mae"], entry["test_mae"]) == (final["validation_mae"], final["test_mae"])
        assert entry["parent_run_id"] is None
    assert any(entry["passes"] < entry["epochs"] for entry in listed), "a run that stopped early shows the passes it ran"
    best = _by_validation(registry, run_ids[:3])[0]
    aliases = {entry["run_id"]: entry["aliases"] for entry in listed}
    assert aliases == {
        **{run_id: [] for run_id in run_ids[:3]},
        run_ids[2]: ["small:latest"],
        best: ["small:best"],
        run_ids[3]: ["latest", "best", "other:latest", "other:best"],
    }


def test_models_table_has_a_row_per_run_with_its_group_and_passes(registry, tmp_path):
    registry, run_ids = registry
    done = run_cli(tmp_path, "models", env=cli_env(tmp_path, LOCAL_REGISTRY_PATH=str(registry.root)))
    assert done.returncode == 0, done.stderr
    header, *rows = done.stdout.strip().splitlines()
    assert header.split()[:5] == ["run", "id", "data", "set", "group"]
    assert [row.split()[0] for row in rows] == run_ids
    groups = {run.run_id: run.comparable_group for run in registry.runs()}
    for row, run_id in zip(rows, run_ids):
        final = _final(registry, run_id)
        cells = row.split()
        assert cells[1:4] == [registry.get(run_id).data_size, "(synthetic)", groups[run_id]]
        assert f"{final['passes']}/" in cells[8] and f"${final['validation_mae']:.3f}" in cells
    assert rows[3].rstrip().endswith("latest,best,other:latest,other:best")


def test_an_empty_registry_lists_nothing_and_exits_0(tmp_path):
    done = run_cli(tmp_path, "models")
    assert (done.returncode, done.stdout) == (0, ""), done.stderr
    done = run_cli(tmp_path, "models", "--json")
    assert (done.returncode, json.loads(done.stdout)) == (0, [])


def test_rm_of_a_reference_says_which_run_it_removed(registry, tmp_path):
    registry, run_ids = registry
    best = _by_validation(registry, run_ids[:3])[0]
    done = run_cli(tmp_path, "models", "rm", "small:best", env=cli_env(tmp_path, LOCAL_REGISTRY_PATH=str(registry.root)))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"removed run {best} (data set small, test MAE $")
    assert best not in [run.run_id for run in registry.runs()]


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
from taxifare.core.lock import OutputLock
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


def test_prune_keeps_the_newest_the_best_of_each_group_and_the_referenced_and_spares_a_running_train(registry, tmp_path):
    registry, (first, second, third, other) = registry
    best = _by_validation(registry, [first, second, third])[0]
    # The test figure plays no part in what is kept.
    for run_id in (first, second, third):
        if run_id != best:
            _edit(registry, run_id, "metrics", lambda metrics: metrics["final"].update(test_mae=0.01))
    root = registry.root
    dead = _scratch(root / ".checkpoints" / "processed_dead-0123456789", 1000)
    (root / ".checkpoints" / "processed_dead-0123456789.lock").write_text('{"pid": 999999999, "host": "x"}')
    live = _scratch(root / ".checkpoints" / "processed_live-0123456789", 2000)
    publishing = _scratch(root / ".tmp-20250101T000000Z-abcdef", 3000)
    half_removed = _scratch(root / ".removing-20240101T000000Z-abcdef", 4000)
    expected_runs = {run_id for run_id in (first, second, third) if run_id not in (best, third)}
    assert expected_runs
    expected_bytes = sum(_bytes_under(root / run_id) for run_id in expected_runs) + 1000 + 4000
    env = cli_env(tmp_path, LOCAL_REGISTRY_PATH=str(root), PYTHONPATH=str(REPO))
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(live)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = sorted(str(path) for path in root.rglob("*"))
        dry = run_cli(tmp_path, "models", "prune", "--keep", "1", "--dry-run", env=env)
        assert dry.returncode == 0, dry.stderr
        assert sorted(str(path) for path in root.rglob("*")) == before, "a dry run removes nothing"
        done = run_cli(tmp_path, "models", "prune", "--keep", "1", env=env)
    finally:
        holder.kill()
        holder.wait()

    assert done.returncode == 0, done.stderr
    assert {run.run_id for run in registry.runs()} == {best, third, other}
    assert not dead.exists() and not half_removed.exists()
    assert live.is_dir() and publishing.is_dir(), "a running train's checkpoint and publish folder must stay"
    assert f"freed {expected_bytes:,} bytes" in done.stdout
    removed = sorted(line for line in done.stdout.splitlines() if line.startswith("removed run"))
    assert [line.split()[2] for line in removed] == sorted(expected_runs)
    assert all("data set small" in line and "validation MAE $" in line for line in removed)
    assert dry.stdout.replace("would remove", "removed").replace("would free", "freed") == done.stdout

    done = run_cli(tmp_path, "models", "prune", "--keep", "1", env=env)
    assert done.returncode == 0, done.stderr
    assert not live.exists() and not publishing.exists()
    assert f"freed {2000 + 3000:,} bytes" in done.stdout
    assert {run.run_id for run in registry.runs()} == {best, third, other}
