"""Training on small processed files: learning, optimizer state, holdout, determinism, registry publishing."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from taxifare import registry as registry_module
from taxifare.chunks import open_processed, prepare_rows, span_rows
from taxifare.errors import InputError, TaxifareError
from taxifare.model import load_model
from taxifare.registry import RUN_FILES, Registry
from taxifare.sink import manifest_path
from taxifare.train import checkpoint_folder, train
from tests.training_data import processed_demo, with_registry


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return processed_demo(tmp_path_factory.mktemp("demo"), rides=6000)


def test_loss_falls_and_holdout_beats_the_mean(demo, tmp_path):
    settings = with_registry(demo, tmp_path, chunk_size=1500, epochs=6, learning_rate=0.005, batch_size=128, patience=50)
    run = train(settings).run

    per_chunk, final = run.metrics["per_chunk"], run.metrics["final"]
    assert len(per_chunk) == 4
    assert per_chunk[-1]["loss"] < per_chunk[0]["loss"]
    assert final["holdout_mae"] < 0.75 * final["baseline_holdout_mae"]
    assert final["holdout_mae"] == pytest.approx(per_chunk[-1]["holdout_mae"])
    assert sorted(path.name for path in run.path.iterdir()) == sorted(RUN_FILES)
    assert Registry(tmp_path).latest().run_id == run.run_id
    assert not checkpoint_folder(settings, settings.processed_path).exists()


def test_optimizer_state_carries_across_chunks(demo, tmp_path):
    settings = with_registry(demo, tmp_path, chunk_size=1000, epochs=2, batch_size=100)
    run = train(settings).run

    trained = np.diff([0] + [entry["rows_trained"] for entry in run.metrics["per_chunk"]])
    steps = sum(math.ceil(rows / 100) * 2 for rows in trained)
    assert len(trained) > 1
    assert run.metrics["final"]["optimizer_iterations"] == steps
    model = load_model(run.model_path, compile=True)
    assert int(model.optimizer.iterations.numpy()) == steps


def test_holdout_rows_are_the_same_whatever_the_chunk_size(demo, tmp_path):
    row_file = tmp_path / "rows.f32"
    holdouts = [
        prepare_rows(open_processed(demo.processed_path, span_rows(size)), row_file).holdout for size in (40, 999, 50_000)
    ]
    assert len(holdouts[0]) > 0.05 * open_processed(demo.processed_path, 100).rows
    for other in holdouts[1:]:
        np.testing.assert_array_equal(holdouts[0], other)


def test_holdout_rows_are_never_trained_on(demo, tmp_path):
    run = train(with_registry(demo, tmp_path, chunk_size=2500)).run
    data = run.params["data"]
    assert run.metrics["final"]["rows_trained"] + data["holdout_rows"] == data["rows"]


def test_same_seed_gives_the_same_metrics(demo, tmp_path):
    runs = [train(with_registry(demo, tmp_path / str(i), chunk_size=1200, seed=11)).run for i in range(2)]
    assert runs[0].run_id != runs[1].run_id
    figures = [[_without_timings(entry) for entry in run.metrics["per_chunk"]] for run in runs]
    assert figures[0] == figures[1]
    assert runs[0].metrics["final"]["holdout_mae"] == runs[1].metrics["final"]["holdout_mae"]


def _without_timings(entry: dict) -> dict:
    return {key: value for key, value in entry.items() if not key.endswith("seconds")}


def _failing_rename(*args):
    raise OSError(5, "Input/output error")


def test_interrupted_publish_leaves_latest_unchanged_and_resumes(demo, tmp_path, monkeypatch):
    settings = with_registry(demo, tmp_path, chunk_size=2500)
    first = train(settings).run
    with monkeypatch.context() as patch:
        patch.setattr(registry_module.os, "rename", _failing_rename)
        with pytest.raises(TaxifareError):
            train(settings)
    registry = Registry(tmp_path)
    assert [run.run_id for run in registry.runs()] == [first.run_id]
    assert registry.latest().run_id == first.run_id
    load_model(registry.latest().model_path)
    assert list(tmp_path.glob(".tmp-*"))

    second = train(settings)
    assert second.resumed_from_chunk == second.run.metrics["final"]["chunks_total"]
    assert registry.latest().run_id == second.run.run_id != first.run_id
    assert not list(tmp_path.glob(".tmp-*"))


def test_damaged_checkpoint_weights_are_a_clear_error(demo, tmp_path, monkeypatch):
    settings = with_registry(demo, tmp_path, chunk_size=2500)
    with monkeypatch.context() as patch:
        patch.setattr(registry_module.os, "rename", _failing_rename)
        with pytest.raises(TaxifareError):
            train(settings)
    [weights] = checkpoint_folder(settings, settings.processed_path).glob("weights-*.npz")
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(InputError, match="checkpoint is unreadable.*--force"):
        train(settings)
    assert train(settings, force=True).resumed_from_chunk is None


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


def test_missing_processed_file_says_to_preprocess(demo, tmp_path):
    with pytest.raises(InputError, match="run `taxifare preprocess` first"):
        train(with_registry(demo, tmp_path), input_path=tmp_path / "absent.csv")


def test_checkpoint_of_other_settings_is_refused_unless_forced(demo, tmp_path):
    settings = with_registry(demo, tmp_path, chunk_size=2500)
    folder = checkpoint_folder(settings, settings.processed_path)
    folder.mkdir(parents=True)
    (folder / "weights-000001.npz").write_bytes(b"not used")
    (folder / "state.json").write_text(json.dumps({"weights_file": "weights-000001.npz", "fingerprint": {"seed": 1}}))
    with pytest.raises(InputError, match="--force"):
        train(settings)
    assert train(settings, force=True).resumed_from_chunk is None
