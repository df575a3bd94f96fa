"""A training run's progress, kept after every chunk so that a killed run resumes where it stopped.

The folder holds `state.json` (position in the data, metrics so far, early-stopping state) and the
weights file it names (`weights-<step>.npz`: every variable training changes, in the order of
`model.training_variables`). Write order: the new weights file is written and flushed first,
then state.json is replaced atomically, then older weights files are removed, so a crash at any moment
leaves a state.json naming a complete weights file. No pickle: plain arrays and JSON only. The
registry gets a full Keras file at the end; a checkpoint needs only the numbers, which take a
millisecond to write where `model.save` takes 50.
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


class Checkpoint:
    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.state_path = self.folder / "state.json"
        # Scratch: the processed rows as raw float32, rewritten at every start (see chunks.prepare_rows).
        self.row_file = self.folder / "rows.f32"

    def load(self) -> dict | None:
        """The saved state, or None when there is no usable checkpoint."""
        if not self.state_path.is_file():
            return None
        state = read_json(self.state_path, "training checkpoint")
        return state if (self.folder / state.get("weights_file", "")).is_file() else None

    def save(self, model, state: dict) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        weights_file = f"weights-{state['step']:06d}.npz"
        weights = io.BytesIO()
        np.savez(weights, *[variable.numpy() for variable in training_variables(model)])
        atomic_write_bytes(self.folder / weights_file, weights.getvalue())
        atomic_write_json(self.state_path, {**state, "weights_file": weights_file})
        for old in self.folder.glob("weights-*.npz"):
            if old.name != weights_file:
                old.unlink()
        fsync_directory(self.folder)

    def restore(self, model, state: dict) -> None:
        """Set the model's and its optimizer's variables to those saved with `state`."""
        path = self.folder / state["weights_file"]
        variables = training_variables(model)
        try:
            with np.load(path, allow_pickle=False) as saved:
                # By position: Keras numbers layer names per process, so names differ between builds.
                values = [saved[f"arr_{index}"] for index in range(len(saved.files))]
            if [value.shape for value in values] != [tuple(variable.shape) for variable in variables]:
                raise ValueError("its variables are not this model's")
            for variable, value in zip(variables, values):
                variable.assign(value)
        except (OSError, ValueError, zipfile.BadZipFile) as error:
            raise InputError(f"{path}: training checkpoint is unreadable ({error}); pass --force to start afresh") from None

    def discard(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
