"""A training run's progress, kept after every chunk so that a killed run resumes where it stopped.

The folder holds `state.json` (a TrainingState) and the weights file it names (`weights-<chunk>.npz`):
every variable training changes, in the order of `model.training_variables` (`current_<i>`), and the
model's variables at the best evaluation so far (`best_<i>`). Write order: the new weights file is
written and flushed first, then state.json is replaced atomically, then older weights files are
removed, so a crash at any moment leaves a state.json naming a complete weights file. No pickle: plain
arrays and JSON only. The registry gets a full Keras file at the end; a checkpoint needs only the
numbers, which take a millisecond to write where `model.save` takes 50.
"""

from __future__ import annotations

import io
import shutil
import zipfile
from pathlib import Path

import numpy as np

from taxifare.errors import InputError
from taxifare.files import atomic_write_bytes, atomic_write_json, fsync_directory, read_json
from taxifare.model import training_variables
from taxifare.training.state import TrainingState


class Checkpoint:
    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.state_path = self.folder / "state.json"
        # Scratch: the training rows as raw float32, rewritten at every start (see data.prepare_rows).
        self.row_file = self.folder / "rows.f32"

    def load(self) -> TrainingState | None:
        """The saved state, or None when there is no usable checkpoint."""
        if not self.state_path.is_file():
            return None
        saved = read_json(self.state_path, "training checkpoint")
        if not (self.folder / saved.get("weights_file", "")).is_file():
            return None
        try:
            return TrainingState.from_json(saved)
        except (KeyError, TypeError) as error:
            raise InputError(f"{self.state_path}: training checkpoint is unreadable ({error}); pass --force to start afresh") from None

    def save(self, model, state: TrainingState, best_weights: list[np.ndarray]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        weights_file = f"weights-{state.chunks_trained:06d}.npz"
        current = {f"current_{i}": variable.numpy() for i, variable in enumerate(training_variables(model))}
        best = {f"best_{i}": value for i, value in enumerate(best_weights)}
        weights = io.BytesIO()
        np.savez(weights, **current, **best)
        atomic_write_bytes(self.folder / weights_file, weights.getvalue())
        atomic_write_json(self.state_path, {**state.to_json(), "weights_file": weights_file})
        for old in self.folder.glob("weights-*.npz"):
            if old.name != weights_file:
                old.unlink()
        fsync_directory(self.folder)

    def restore(self, model) -> list[np.ndarray]:
        """Set the model's and its optimizer's variables to those saved last; the best weights so far."""
        path = self.folder / read_json(self.state_path, "training checkpoint")["weights_file"]
        try:
            with np.load(path, allow_pickle=False) as saved:
                # By position: Keras numbers some variable names per process, so names differ between builds.
                current = [saved[f"current_{i}"] for i in range(sum(name.startswith("current_") for name in saved.files))]
                best = [saved[f"best_{i}"] for i in range(sum(name.startswith("best_") for name in saved.files))]
            assign_variables(training_variables(model), current)
            check_shapes(model.variables, best)
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as error:
            raise InputError(f"{path}: training checkpoint is unreadable ({error}); pass --force to start afresh") from None
        return best

    def discard(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def remove_scratch(self) -> None:
        """After a failure: the row file (every start rewrites it), and the folder unless it holds a state to
        resume from. A run killed outright leaves both; `taxifare models prune` removes them."""
        if (self.folder / "state.json").is_file():
            self.row_file.unlink(missing_ok=True)
        else:
            self.discard()


def check_shapes(variables: list, values: list[np.ndarray]) -> None:
    if [value.shape for value in values] != [tuple(variable.shape) for variable in variables]:
        raise ValueError("its variables are not this model's")


def assign_variables(variables: list, values: list[np.ndarray]) -> None:
    check_shapes(variables, values)
    for variable, value in zip(variables, values):
        variable.assign(value)
