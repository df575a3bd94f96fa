"""Training checkpoints restore every variable by name, and refuse weights that are not this model's."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from taxifare.core.errors import InputError
from taxifare.model.network import build_model, training_variables
from taxifare.model.spec import EMBEDDING_DIMS, ModelSpec
from taxifare.training.checkpoint import Checkpoint
from taxifare.training.loop import checkpoint_folder, train
from taxifare.training.state import TrainingState
from tests.test_train import SMALL, _train_until_publish_fails
from tests.training_data import processed_demo, with_registry

FEATURES = 5


def _model(hidden_units=(8, 4), seed=1):
    """One network (the default ensemble's members are the same network under prefixed names)."""
    return build_model(ModelSpec(hidden_units, 0.1, "huber", members=1), 0.01, seed, np.zeros(FEATURES), np.ones(FEATURES), 10.0)


def _trained_model():
    """A model a few steps in: Adam's moments and the dropout generators have left their initial values."""
    model = _model()
    rows = np.random.default_rng(0).normal(size=(256, FEATURES)).astype(np.float32)
    model.fit(rows, rows.sum(axis=1), batch_size=32, verbose=0)
    return model


def _saved(folder, model) -> Checkpoint:
    checkpoint = Checkpoint(folder)
    state = TrainingState("run", {}, 0.01)
    checkpoint.save(model, state, [variable.numpy() * 2 for variable in model.variables])
    return checkpoint


def _rewrite(checkpoint: Checkpoint, change) -> None:
    """Replace the checkpoint's weights file with `change` applied to its {name: array}."""
    [path] = checkpoint.folder.glob("weights-*.npz")
    with np.load(path) as saved:
        arrays = change({name: saved[name] for name in saved.files})
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    path.write_bytes(buffer.getvalue())


def _restored(checkpoint: Checkpoint, model):
    checkpoint.load()
    return checkpoint.restore(model)


def _values(variables) -> list[bytes]:
    return [variable.numpy().tobytes() for variable in variables]


def test_restore_goes_by_name_not_by_position(tmp_path):
    trained = _trained_model()
    checkpoint = _saved(tmp_path, trained)
    # The same arrays under the same names, stored in the opposite order.
    _rewrite(checkpoint, lambda arrays: dict(reversed(arrays.items())))
    fresh = _model(seed=2)  # built later: Keras numbers its optimizer and generators differently
    best = _restored(checkpoint, fresh)
    assert _values(training_variables(fresh)) == _values(training_variables(trained))
    assert [value.tobytes() for value in best] == [(variable.numpy() * 2).tobytes() for variable in trained.variables]


def test_weights_of_another_architecture_are_refused(tmp_path):
    checkpoint = _saved(tmp_path, _trained_model())
    with pytest.raises(InputError, match=r"does not fit this model \(unknown current dropout_2/seed_generator_state, .*--force"):
        _restored(checkpoint, _model(hidden_units=(8,)))
    # Five features embedded in EMBEDDING_DIMS dimensions each, and the five themselves: the first hidden layer's inputs.
    inputs = FEATURES * EMBEDDING_DIMS + FEATURES
    with pytest.raises(InputError, match=rf"current hidden_1/kernel has shape \({inputs}, 8\), the model's \({inputs}, 16\)"):
        _restored(checkpoint, _model(hidden_units=(16, 4)))


def test_weights_under_unknown_or_positional_names_are_refused(tmp_path):
    checkpoint = _saved(tmp_path, _trained_model())
    # The format that went by position: current_0, current_1, ...
    _rewrite(checkpoint, lambda arrays: {f"{name.split('/')[0]}_{index}": value for index, (name, value) in enumerate(arrays.items())})
    with pytest.raises(InputError, match=r"does not fit this model \(no current numeric_embedding/frequencies, .* and \d+ more\)"):
        _restored(checkpoint, _model())


def test_moments_stored_under_each_others_names_are_restored_where_the_names_say(tmp_path):
    trained = _trained_model()
    checkpoint = _saved(tmp_path, trained)
    momentum, velocity = "current/optimizer/fare/kernel/momentum", "current/optimizer/fare/kernel/velocity"
    _rewrite(checkpoint, lambda arrays: arrays | {momentum: arrays[velocity], velocity: arrays[momentum]})
    fresh = _model()
    _restored(checkpoint, fresh)
    restored = {variable.name: variable.numpy().tobytes() for variable in fresh.optimizer.variables}
    original = {variable.name: variable.numpy().tobytes() for variable in trained.optimizer.variables}
    assert restored["fare_kernel_momentum"] == original["fare_kernel_velocity"] != original["fare_kernel_momentum"]


def test_checkpoint_of_another_tensorflow_is_refused(tmp_path_factory, monkeypatch):
    demo = processed_demo(tmp_path_factory.mktemp("checkpoint-demo"), rides=3000)
    registry = tmp_path_factory.mktemp("registry")
    settings = with_registry(demo, registry, **SMALL, epochs=1)
    _train_until_publish_fails(settings, monkeypatch)
    state_path = checkpoint_folder(settings, settings.processed_path) / "state.json"
    saved = json.loads(state_path.read_text())
    saved["fingerprint"] |= {"tensorflow": "2.0.0", "keras": "2.3.1"}
    state_path.write_text(json.dumps(saved))
    with pytest.raises(InputError, match=r"other settings or data \(tensorflow 2.0.0 -> .*; keras 2.3.1 -> .*--force"):
        train(settings)
