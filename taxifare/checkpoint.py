"""A training run's progress, kept after every chunk so that a killed run resumes where it stopped.

The folder holds `state.json` (position in the data, metrics so far, early-stopping and random-generator
state) and the model file it names (`model-<step>.keras`: weights and optimizer state). Write order: the
new model file is written and flushed first, then state.json is replaced atomically, then older model
files are removed, so a crash at any moment leaves a state.json naming a complete model file.
No pickle: Keras native files and JSON only.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from taxifare.files import atomic_write_json, fsync_directory, read_json


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
        return state if (self.folder / state.get("model_file", "")).is_file() else None

    def model_path(self, state: dict) -> Path:
        return self.folder / state["model_file"]

    def save(self, model, state: dict) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        model_file = f"model-{state['step']:06d}.keras"
        model.save(self.folder / model_file)
        with (self.folder / model_file).open("rb") as file:
            os.fsync(file.fileno())
        atomic_write_json(self.state_path, {**state, "model_file": model_file})
        for old in self.folder.glob("model-*.keras"):
            if old.name != model_file:
                old.unlink()
        fsync_directory(self.folder)

    def discard(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
