"""The local model registry: one folder per completed training run, under LOCAL_REGISTRY_PATH.

    <registry>/<run id>/model.keras, params.json, metrics.json, history.csv, learning_curve.png

A run is written in full to a hidden temporary folder, flushed to disk, then renamed into place, so a
visible run folder is always complete. "Latest" is the completed run that finished last according to
its own params.json, never a guess from file names. Hidden folders (temporary runs, training
checkpoints) are not runs.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from taxifare.errors import InputError
from taxifare.files import fsync_directory, read_json

log = logging.getLogger("taxifare")

RUN_ID_PATTERN = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{6}$")
RUN_FILES = ("model.keras", "params.json", "metrics.json", "history.csv", "learning_curve.png")


def new_run_id(now: dt.datetime) -> str:
    """Sortable: the UTC start time, then random hex so that runs started in the same second differ."""
    return f"{now.astimezone(dt.timezone.utc):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


@dataclass(frozen=True)
class Run:
    run_id: str
    path: Path
    params: dict
    metrics: dict

    @property
    def model_path(self) -> Path:
        return self.path / "model.keras"

    @property
    def finished_at(self) -> str:
        return self.params.get("finished_at", "")


class Registry:
    def __init__(self, root: Path):
        self.root = Path(root)

    def runs(self) -> list[Run]:
        """Every completed run, oldest first by finishing time; unreadable folders are skipped with a warning."""
        if not self.root.is_dir():
            return []
        runs = []
        for folder in sorted(self.root.iterdir()):
            if folder.is_dir() and RUN_ID_PATTERN.fullmatch(folder.name):
                try:
                    runs.append(self._read_run(folder))
                except InputError as error:
                    log.warning("skipping registry folder %s: %s", folder.name, error)
        return sorted(runs, key=lambda run: (run.finished_at, run.run_id))

    def required_runs(self) -> list[Run]:
        """`runs()`, or an InputError saying to train first when there is none."""
        runs = self.runs()
        if not runs:
            raise InputError(f"no trained model in {self.root}; run `taxifare train` first")
        return runs

    def latest(self) -> Run:
        return self.required_runs()[-1]

    def get(self, run_id: str) -> Run:
        folder = self.root / run_id
        if not RUN_ID_PATTERN.fullmatch(run_id) or not folder.is_dir():
            known = self.runs()
            hint = f"the latest is {known[-1].run_id}; `taxifare models` lists them" if known else "run `taxifare train` first"
            raise InputError(f"no run {run_id!r} in {self.root}; {hint}")
        return self._read_run(folder)

    def publish(self, run_id: str, write_files: Callable[[Path], None]) -> Run:
        """Have `write_files` fill a temporary folder, then rename it into place as run `run_id`."""
        final = self.root / run_id
        temporary = self.root / f".tmp-{run_id}"
        shutil.rmtree(temporary, ignore_errors=True)
        temporary.mkdir(parents=True)
        write_files(temporary)
        for name in RUN_FILES:
            _fsync_file(temporary / name)
        fsync_directory(temporary)
        os.rename(temporary, final)
        fsync_directory(self.root)
        return self._read_run(final)

    def _read_run(self, folder: Path) -> Run:
        params = read_json(folder / "params.json", "run parameters file")
        metrics = read_json(folder / "metrics.json", "run metrics file")
        return Run(folder.name, folder, params, metrics)


def _fsync_file(path: Path) -> None:
    with path.open("rb") as file:
        os.fsync(file.fileno())


def format_runs(runs: list[Run]) -> str:
    """An aligned table, latest last."""
    lines = [f"{'run id':<23}  {'finished (UTC)':<25}  {'rows trained':>12}  {'test MAE':>11}"]
    for run in runs:
        final = run.metrics.get("final", {})
        mae = final.get("test_mae")
        lines.append(
            f"{run.run_id:<23}  {run.finished_at:<25}  {final.get('rows_trained', 0):>12,}  "
            f"{'$%.3f' % mae if mae is not None else '?':>11}"
        )
    return "\n".join(lines)
