"""Training on small processed files: passes, splits, statistics, early stopping, the schedule, warm
starts, determinism and registry publishing."""

from __future__ import annotations

import datetime as dt
import json
import math

import numpy as np
import pytest

from taxifare.core.errors import InputError, TaxifareError
from taxifare.core.lock import lock_path
from taxifare.model.network import DATE_HOLD_LAYER, input_statistics, predict_fares, quantile_knots
from taxifare.model.saved import load_model
from taxifare.preprocessing.run import preprocess
from taxifare.preprocessing.sink import manifest_path
from taxifare.registry import store as registry_module
from taxifare.registry.store import RUN_FILES, Registry
from taxifare.rides.features import days_feature
from taxifare.sources.demo import write_demo_rides
from taxifare.training.data import evenly_spaced_rows, open_processed, prepare_rows, read_prepared_rows, row_hashes, span_rows
from taxifare.training.loop import checkpoint_folder, train
from taxifare.training.state import MIN_IMPROVEMENT, TrainingState
from tests.conftest import write_csv
from tests.training_data import demo_settings, processed_demo, with_registry

# Two networks: the ensemble's code paths at two fifths of the default's cost.
SMALL = {"chunk_size": 1500, "batch_size": 128, "hidden_units": (32, 16), "learning_rate": 0.005, "members": 2}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return processed_demo(tmp_path_factory.mktemp("demo"), rides=6000)


def _prepared(settings, folder, chunk_size=1500):
    return prepare_rows(open_processed(settings.processed_path, span_rows(chunk_size)), folder / "rows.f32")


def test_loss_falls_and_the_test_figure_beats_the_mean(demo, tmp_path):
    settings = with_registry(demo, tmp_path, **SMALL, epochs=4, patience=50)
    run = train(settings).run

    evaluations, final = run.metrics["evaluations"], run.metrics["final"]
    assert [entry["pass_number"] for entry in evaluations] == [1, 2, 3, 4]
    assert evaluations[-1]["loss"] < evaluations[0]["loss"]
    assert final["test_mae"] < 0.6 * final["baseline_test_mae"]
    assert final["test_rmse"] < final["baseline_test_rmse"]
    # The best evaluation's: the lowest, or one that a later evaluation beat by less than MIN_IMPROVEMENT.
    assert final["validation_mae"] <= min(entry["validation_mae"] for entry in evaluations) + MIN_IMPROVEMENT
    assert sorted(path.name for path in run.path.iterdir()) == sorted(RUN_FILES)
    assert Registry(tmp_path).latest().run_id == run.run_id
    assert not checkpoint_folder(settings, settings.processed_path).exists()


def test_test_figure_is_the_published_model_on_the_test_rows(demo, tmp_path):
    run = train(with_registry(demo, tmp_path, **SMALL, epochs=2)).run
    test = _prepared(demo, tmp_path).test
    fares = predict_fares(load_model(run.model_path), test[:, :-1])
    assert run.metrics["final"]["test_mae"] == pytest.approx(np.mean(np.abs(fares - test[:, -1])), rel=1e-6)
    assert run.metrics["final"]["test_rows"] == len(test) == run.params["data"]["test_rows"]


def test_epochs_are_passes_over_all_training_rows(demo, tmp_path):
    run = train(with_registry(demo, tmp_path, **{**SMALL, "chunk_size": 1000}, epochs=3, eval_every=2, patience=50)).run
    data, final, evaluations = run.params["data"], run.metrics["final"], run.metrics["evaluations"]

    assert final["rows_trained"] == 3 * data["train_rows"]
    assert final["passes"] == 3 and not final["stopped_early"]
    chunks = math.ceil(len(open_processed(demo.processed_path, span_rows(1000)).spans) / 8)
    assert final["chunks_trained"] == 3 * chunks
    # Every second chunk, and after every pass.
    per_pass = sorted({*range(2, chunks + 1, 2), chunks})
    assert [(entry["pass_number"], entry["chunk"]) for entry in evaluations] == [(p, c) for p in (1, 2, 3) for c in per_pass]
    assert final["optimizer_iterations"] > 3 * math.ceil(data["train_rows"] / 128) - 1


def test_splits_are_the_same_rows_whatever_the_chunk_size_and_never_trained_on(demo, tmp_path):
    splits = []
    for size in (40, 999, 50_000):
        prepared = _prepared(demo, tmp_path, size)
        columns = prepared.validation.shape[1]
        trained = read_prepared_rows(tmp_path / "rows.f32", columns, prepared, range(len(prepared.span_starts) - 1))
        splits.append((prepared.validation, prepared.test, trained))
    data = open_processed(demo.processed_path, 100)
    rows, hashes = data.rows, lambda part: row_hashes(part, data.identity)
    data.file.close()
    validation, test, trained = splits[0]
    assert 0.07 * rows < len(validation) < 0.13 * rows and 0.07 * rows < len(test) < 0.13 * rows
    assert len(validation) + len(test) + len(trained) == rows
    assert not set(hashes(trained)) & set(hashes(np.vstack([validation, test])))
    assert not set(hashes(validation)) & set(hashes(test))
    for other in splits[1:]:
        for mine, theirs in zip(splits[0][:2], other[:2]):
            np.testing.assert_array_equal(mine, theirs)
        np.testing.assert_array_equal(np.sort(hashes(trained)), np.sort(hashes(other[2])))


def test_statistics_are_those_of_the_training_rows(demo, tmp_path):
    prepared = _prepared(demo, tmp_path, 40)  # many small blocks merged
    trained = read_prepared_rows(tmp_path / "rows.f32", prepared.test.shape[1], prepared, range(len(prepared.span_starts) - 1))
    statistics = prepared.statistics
    assert statistics.count == len(trained)
    np.testing.assert_allclose(statistics.mean, trained.astype(np.float64).mean(axis=0), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(statistics.variance, trained.astype(np.float64).var(axis=0), rtol=1e-7, atol=1e-12)
    np.testing.assert_array_equal(statistics.maximum, trained.max(axis=0))


def test_model_standardizes_with_the_training_statistics(demo, tmp_path):
    run = train(with_registry(demo, tmp_path, **SMALL, epochs=1)).run
    mean, variance = input_statistics(load_model(run.model_path))
    statistics = _prepared(demo, tmp_path).statistics
    np.testing.assert_allclose(mean, statistics.mean[:-1], rtol=1e-6, atol=1e-7)
    constant = statistics.variance[:-1] < 1e-12
    np.testing.assert_allclose(variance[~constant], statistics.variance[:-1][~constant], rtol=1e-6)
    assert (variance[constant] == 1).all()


def test_the_quantile_sample_is_every_row_or_runs_spread_from_first_to_last(tmp_path):
    rows = np.arange(5000 * 3, dtype=np.float32).reshape(5000, 3)
    rows.tofile(tmp_path / "rows.f32")
    np.testing.assert_array_equal(evenly_spaced_rows(tmp_path / "rows.f32", 3, 5000), rows)
    sample = evenly_spaced_rows(tmp_path / "rows.f32", 3, 1000, runs=100)[:, 0] / 3
    assert len(sample) == len(np.unique(sample)) == 1000
    assert sample[0] == 0 and sample[-1] == 4999 and np.all(np.diff(sample)[:9] == 1)


def test_quantile_members_read_the_training_rows_quantiles(demo, tmp_path):
    run = train(with_registry(demo, tmp_path, **SMALL, epochs=1)).run
    knots = load_model(run.model_path).get_layer("quantile_normal").knots.numpy()
    prepared = _prepared(demo, tmp_path)
    trained = read_prepared_rows(tmp_path / "rows.f32", prepared.test.shape[1], prepared, range(len(prepared.span_starts) - 1))
    np.testing.assert_allclose(knots, quantile_knots(trained[:, :-1]), rtol=1e-6, atol=1e-7)


def test_early_stopping_publishes_the_best_weights_not_the_last(demo, tmp_path):
    # patience 1: the run stops right after its first evaluation that does not improve, so the last
    # evaluation is never the best one.
    run = train(with_registry(demo, tmp_path, **{**SMALL, "learning_rate": 0.05}, epochs=60, patience=1, lr_patience=1)).run
    final, evaluations = run.metrics["final"], run.metrics["evaluations"]
    assert final["stopped_early"] and final["passes"] < 60
    assert not evaluations[-1]["best"]
    best = min(evaluations, key=lambda entry: entry["validation_mae"])
    validation = _prepared(demo, tmp_path).validation
    fares = predict_fares(load_model(run.model_path), validation[:, :-1])
    assert np.mean(np.abs(fares - validation[:, -1])) == pytest.approx(best["validation_mae"], rel=1e-6)
    assert final["validation_mae"] == best["validation_mae"]


def test_learning_rate_halves_after_lr_patience_flat_evaluations():
    settings = demo_settings(__import__("pathlib").Path("/nonexistent"), learning_rate=0.008, lr_patience=2, patience=5)
    state = TrainingState("run", {}, settings.learning_rate)
    rates = []
    for mae in (3.0, 2.0, 2.0, 1.9995, 2.1, 1.5, 1.6, 1.6, 1.6, 1.6, 1.6):
        rates.append(state.observe(settings, mae)[1])
        state.evaluations.append(None)
    assert rates == [0.008, 0.008, 0.008, 0.004, 0.004, 0.004, 0.004, 0.002, 0.002, 0.001, 0.001]
    assert state.stopped_early and state.best_validation_mae == 1.5 and state.best_evaluation == 6


def test_same_seed_gives_the_same_metrics(demo, tmp_path):
    runs = [train(with_registry(demo, tmp_path / str(i), **{**SMALL, "chunk_size": 1200}, epochs=2, seed=11)).run for i in range(2)]
    assert runs[0].run_id != runs[1].run_id
    figures = [[_without_timings(entry) for entry in run.metrics["evaluations"]] for run in runs]
    assert figures[0] == figures[1]
    assert runs[0].metrics["final"]["test_mae"] == runs[1].metrics["final"]["test_mae"]


def _without_timings(entry: dict) -> dict:
    return {key: value for key, value in entry.items() if not key.endswith("seconds")}


def test_warm_start_continues_the_parent_on_new_data(demo, tmp_path):
    parent = train(with_registry(demo, tmp_path / "registry", **SMALL, epochs=3)).run
    newer = processed_demo(tmp_path / "newer", rides=3000, seed=99)
    budget = {**SMALL, "epochs": 1}
    warm = train(with_registry(newer, tmp_path / "registry", **budget), from_run=parent.run_id).run
    fresh = train(with_registry(newer, tmp_path / "fresh", **budget)).run

    assert warm.params["parent_run_id"] == parent.run_id and fresh.params["parent_run_id"] is None
    assert warm.metrics["final"]["optimizer_iterations"] > parent.metrics["final"]["optimizer_iterations"]
    for mine, theirs in zip(input_statistics(load_model(warm.model_path)), input_statistics(load_model(parent.model_path))):
        np.testing.assert_array_equal(mine, theirs)
    assert warm.metrics["final"]["test_mae"] < fresh.metrics["final"]["test_mae"]
    # Each model holds the date within its run's window; a warm start's window holds its parent's too.
    for run in (parent, warm, fresh):
        assert _held_dates(run) == pytest.approx(_window_days(run))
    (parent_first, parent_last), (new_first, new_last) = _window_days(parent), _window_days(fresh)
    assert _window_days(warm) == (min(parent_first, new_first), max(parent_last, new_last))
    assert train(with_registry(newer, tmp_path / "registry", **budget), from_run="latest").run.params["parent_run_id"] == warm.run_id


def _window_days(run) -> tuple[float, float]:
    return tuple(days_feature(dt.datetime.fromisoformat(run.params["data"][end])) for end in ("pickup_first", "pickup_last"))


def _held_dates(run) -> tuple[float, float]:
    config = load_model(run.model_path).get_layer(DATE_HOLD_LAYER).get_config()
    return config["low"][0], config["high"][0]


def test_warm_start_from_an_incompatible_run_is_refused(demo, tmp_path):
    parent = train(with_registry(demo, tmp_path, **SMALL, epochs=1)).run
    with pytest.raises(InputError, match="architecture is hidden units 32,16.*asks for hidden units 64"):
        train(with_registry(demo, tmp_path, **{**SMALL, "hidden_units": (64,)}), from_run=parent.run_id)
    with pytest.raises(InputError, match=r"dropout 0.1, 2 network\(s\); this run asks .* 1 network\(s\)"):
        train(with_registry(demo, tmp_path, **{**SMALL, "members": 1}), from_run=parent.run_id)
    params = json.loads((parent.path / "params.json").read_text())
    # A run from before --members: its ensemble is read from the architecture it describes.
    hyper = {key: value for key, value in params["hyperparameters"].items() if key != "members"}
    (parent.path / "params.json").write_text(json.dumps({**params, "hyperparameters": hyper}))
    with pytest.raises(InputError, match=r"2 network\(s\); this run asks .* 1 network\(s\)"):
        train(with_registry(demo, tmp_path, **{**SMALL, "members": 1}), from_run=parent.run_id)
    # A run from before the member designs: every network on standardized inputs.
    hyper = {key: value for key, value in params["hyperparameters"].items() if key != "member_designs"}
    (parent.path / "params.json").write_text(json.dumps({**params, "hyperparameters": hyper}))
    with pytest.raises(InputError, match="its networks are standardized, standardized; this taxifare's are standardized, quantile"):
        train(with_registry(demo, tmp_path, **SMALL), from_run=parent.run_id)
    # A run from before the flat-fare heads.
    hyper = {key: value for key, value in params["hyperparameters"].items() if key != "flat_fares"}
    (parent.path / "params.json").write_text(json.dumps({**params, "hyperparameters": hyper}))
    with pytest.raises(InputError, match=r"it has no flat-fare heads; this taxifare's start from \[45.0, 49.57"):
        train(with_registry(demo, tmp_path, **SMALL), from_run=parent.run_id)
    (parent.path / "params.json").write_text(json.dumps({**params, "preprocessor_version": 1}))
    with pytest.raises(InputError, match="preprocessor version 1"):
        train(with_registry(demo, tmp_path, **SMALL), from_run=parent.run_id)
    with pytest.raises(InputError, match="no run"):
        train(with_registry(demo, tmp_path, **SMALL), from_run="20200101T000000Z-abcdef")


def _failing_rename(*args):
    raise OSError(5, "Input/output error")


def _train_until_publish_fails(settings, monkeypatch) -> None:
    """Train to the end, then fail the registry's rename: the complete checkpoint stays behind."""
    with monkeypatch.context() as patch:
        patch.setattr(registry_module.os, "rename", _failing_rename)
        with pytest.raises(TaxifareError):
            train(settings)


def test_interrupted_publish_leaves_latest_unchanged_and_resumes(demo, tmp_path, monkeypatch):
    settings = with_registry(demo, tmp_path, **SMALL, epochs=1)
    first = train(settings).run
    _train_until_publish_fails(settings, monkeypatch)
    registry = Registry(tmp_path)
    assert [run.run_id for run in registry.runs()] == [first.run_id]
    assert registry.latest().run_id == first.run_id
    load_model(registry.latest().model_path)
    assert not list(tmp_path.glob(".tmp-*")), "a failed publish removes its temporary run folder"
    folder = checkpoint_folder(settings, settings.processed_path)
    assert (folder / "state.json").is_file() and not (folder / "rows.f32").exists()
    assert not lock_path(folder).exists()

    second = train(settings)
    assert second.resumed_at is not None and second.resumed_at.pass_index == 1
    assert registry.latest().run_id == second.run.run_id != first.run_id
    assert not list(tmp_path.glob(".tmp-*"))


def test_damaged_checkpoint_weights_are_a_clear_error(demo, tmp_path, monkeypatch):
    settings = with_registry(demo, tmp_path, **SMALL, epochs=1)
    _train_until_publish_fails(settings, monkeypatch)
    [weights] = checkpoint_folder(settings, settings.processed_path).glob("weights-*.npz")
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(InputError, match="checkpoint is unreadable.*--force"):
        train(settings)
    assert train(settings, force=True).resumed_at is None


def test_incomplete_processed_file_is_refused(demo, tmp_path):
    copy = tmp_path / "processed.csv"
    copy.write_bytes(demo.processed_path.read_bytes())
    manifest = json.loads(manifest_path(demo.processed_path).read_text())
    manifest_path(copy).write_text(json.dumps({**manifest, "complete": False}))
    with pytest.raises(InputError, match="incomplete"):
        train(with_registry(demo, tmp_path), input_path=copy)

    manifest_path(copy).write_text(json.dumps({**manifest, "preprocessor_version": 1}))
    with pytest.raises(InputError, match="preprocessor version 1"):
        train(with_registry(demo, tmp_path), input_path=copy)


def test_a_failure_before_any_checkpoint_leaves_no_scratch(tmp_path):
    settings = demo_settings(tmp_path)
    write_demo_rides(settings.raw_cache_path, rows=5)
    preprocess(settings)
    with pytest.raises(InputError, match="too few to split"):
        train(settings)
    assert list((tmp_path / "registry").rglob("*")) == [tmp_path / "registry" / ".checkpoints"]


def test_missing_processed_file_says_to_preprocess(demo, tmp_path):
    with pytest.raises(InputError, match="run `taxifare preprocess` first"):
        train(with_registry(demo, tmp_path), input_path=tmp_path / "absent.csv")


def test_checkpoint_of_other_settings_is_refused_unless_forced(demo, tmp_path, monkeypatch):
    settings = with_registry(demo, tmp_path, **SMALL, epochs=1)
    _train_until_publish_fails(settings, monkeypatch)
    with pytest.raises(InputError, match="other settings.*seed 42 -> 3.*--force"):
        train(with_registry(demo, tmp_path, **SMALL, epochs=1, seed=3))
    assert train(with_registry(demo, tmp_path, **SMALL, epochs=1, seed=3), force=True).resumed_at is None


def test_the_recorded_pickup_window_is_the_first_and_last_pickup_as_parsed(tmp_path):
    rng = np.random.default_rng(4)
    first, last = np.datetime64("2010-03-04T05:06:07"), np.datetime64("2014-05-06T07:08:09")
    pickups = first + rng.integers(1, int((last - first).astype(int)), 400).astype("timedelta64[s]")
    pickups[[150, 250]] = last, first  # inside the file, not at its ends
    lines = [
        f"k{i},{rng.uniform(4, 30):.2f},{str(pickup).replace('T', ' ')} UTC,{rng.uniform(-74.0, -73.95):.6f},"
        f"{rng.uniform(40.72, 40.79):.6f},{rng.uniform(-74.0, -73.95):.6f},{rng.uniform(40.72, 40.79):.6f},1"
        for i, pickup in enumerate(pickups)
    ]
    raw = write_csv(tmp_path / "rides.csv", lines)
    settings = demo_settings(tmp_path, chunk_size=70, data_size="window")
    manifest = preprocess(settings, input_path=raw).manifest
    assert (manifest["rows_kept"], manifest["pickup_first"], manifest["pickup_last"]) == (400, "2010-03-04T05:06:07", "2014-05-06T07:08:09")
    run = train(with_registry(settings, tmp_path / "registry", **SMALL, epochs=1)).run
    assert (run.params["data"]["pickup_first"], run.params["data"]["pickup_last"]) == ("2010-03-04T05:06:07", "2014-05-06T07:08:09")
