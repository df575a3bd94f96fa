"""The local model registry: one folder per completed training run, under LOCAL_REGISTRY_PATH.

    <registry>/<run id>/model.keras, params.json, metrics.json, history.csv, learning_curve.png,
                        training_rows.npz

A run is written in full to a hidden temporary folder, flushed to disk, then renamed into place, so a
visible run folder is always complete. Hidden folders (temporary runs, training checkpoints) are not runs.

A run is named by its id or by a reference: `latest` is the run that finished last according to its own
params.json (to the microsecond, then by id: a total order), never a guess from file names; `best` is the
run with the lowest validation MAE among those comparable with `latest` (trained on the same processed
data with the same split, so scored on the same validation rows). `NAME:latest` and `NAME:best` are the
same among the runs of data set NAME.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
import math
import os
import re
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from taxifare.core.errors import InputError
from taxifare.core.files import fsync_path, read_json

log = logging.getLogger("taxifare")

RUN_ID_PATTERN = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{6}$")
SAMPLE_FILE = "training_rows.npz"  # the hashes of the rows a run trained on (training/splits.py)
RUN_FILES = ("model.keras", "params.json", "metrics.json", "history.csv", "learning_curve.png", SAMPLE_FILE)
REFERENCE_PATTERN = re.compile(r"^(?:(?P<data_set>[A-Za-z0-9_]{1,64}):)?(?P<alias>latest|best)$")
REMOVING_PREFIX = ".removing-"
_SKIPS_SHOWN = 3  # unreadable run folders named one by one; the rest are counted
_NEVER = dt.datetime.min.replace(tzinfo=dt.timezone.utc)


def new_run_id(now: dt.datetime) -> str:
    """Sortable: the UTC start time, then random hex so that runs started in the same second differ."""
    return f"{now.astimezone(dt.timezone.utc):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def _finite(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


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

    @property
    def order(self) -> tuple[dt.datetime, str]:
        """Finishing time (to the microsecond), then id: how runs are ordered, oldest first."""
        try:
            finished = _utc(dt.datetime.fromisoformat(self.finished_at))
        except (TypeError, ValueError):
            finished = _NEVER
        return finished, self.run_id

    @property
    def data_size(self) -> str:
        return str(self.params["data"].get("data_size"))

    @property
    def comparable_group(self) -> str:
        """Runs of one group were trained on the same processed data with the same split. A run from
        before groups were recorded gets one from its processed file's path and row counts."""
        data = self.params["data"]
        if data.get("comparable_group"):
            return str(data["comparable_group"])
        legacy = repr([data.get(key) for key in ("processed_path", "rows", "validation_rows", "test_rows")])
        return "old-" + hashlib.sha256(legacy.encode()).hexdigest()[:4]

    @property
    def synthetic(self) -> bool:
        """Whether it was trained on `taxifare demo-data`'s synthetic rides (as recorded at training)."""
        return self.params["data"].get("synthetic") is True

    @property
    def parent_run_id(self) -> str | None:
        return self.params.get("parent_run_id")

    @property
    def hyperparameters(self) -> dict:
        return self.params.get("hyperparameters") or {}

    @property
    def test_mae(self) -> float | None:
        return _finite(self.metrics["final"].get("test_mae"))

    @property
    def validation_mae(self) -> float | None:
        return _finite(self.metrics["final"].get("validation_mae"))

    @property
    def pickup_window(self) -> tuple[dt.datetime, dt.datetime] | None:
        """The earliest and latest pickup trained on, New York wall-clock times (tagged UTC only so that records
        written with an offset compare alike), or None when the run does not record them."""
        data = self.params["data"]
        try:
            return tuple(_utc(dt.datetime.fromisoformat(data[key])) for key in ("pickup_first", "pickup_last"))
        except (KeyError, TypeError, ValueError):
            return None

    def describe(self) -> str:
        """Its id, data set and test MAE, as pred and evaluate name the run they use."""
        mae = "-" if self.test_mae is None else f"${self.test_mae:.3f}"
        return f"run {self.run_id} (data set {self.data_size}, test MAE {mae})"


def _utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value.astimezone(dt.timezone.utc)


def best_run(runs: list[Run]) -> Run | None:
    """Among the runs (oldest first) comparable with the last, the one with the lowest validation MAE (the
    newest of equals); None when none records one. The test figure plays no part."""
    if not runs:
        return None
    group = runs[-1].comparable_group
    scored = [run for run in reversed(runs) if run.comparable_group == group and run.validation_mae is not None]
    return min(scored, key=lambda run: run.validation_mae) if scored else None


def runs_by_data_set(runs: list[Run]) -> dict[str, list[Run]]:
    """The runs of each data set, in the order given, data sets by name."""
    grouped: dict[str, list[Run]] = {}
    for run in runs:
        grouped.setdefault(run.data_size, []).append(run)
    return dict(sorted(grouped.items()))


def alias_targets(runs: list[Run]) -> dict[str, list[str]]:
    """For each run (oldest first), the references that name it: latest, best, NAME:latest, NAME:best."""
    aliases: dict[str, list[str]] = {run.run_id: [] for run in runs}
    scopes = [("", runs)] + [(f"{name}:", of_data_set) for name, of_data_set in runs_by_data_set(runs).items()]
    for prefix, scope in scopes:
        if scope:
            aliases[scope[-1].run_id].append(f"{prefix}latest")
            best = best_run(scope)
            if best is not None:
                aliases[best.run_id].append(f"{prefix}best")
    return aliases


class Registry:
    def __init__(self, root: Path):
        self.root = Path(root)

    def runs(self) -> list[Run]:
        """Every completed run, oldest first by finishing time; unreadable folders are skipped with a warning."""
        if not self.root.is_dir():
            return []
        runs, skipped = [], []
        for folder in sorted(self.root.iterdir()):
            if folder.is_dir() and RUN_ID_PATTERN.fullmatch(folder.name):
                try:
                    runs.append(self._read_run(folder))
                except InputError as error:
                    skipped.append((folder.name, error))
        for name, error in skipped[:_SKIPS_SHOWN]:
            log.warning("skipping registry folder %s: %s", name, error)
        if len(skipped) > _SKIPS_SHOWN:
            log.warning("skipping %d more unreadable registry folders in %s", len(skipped) - _SKIPS_SHOWN, self.root)
        return sorted(runs, key=lambda run: run.order)

    def required_runs(self, data_set: str | None = None) -> list[Run]:
        """The runs of data set `data_set` (all for None), or an InputError saying to train first, or
        naming the data sets that have runs."""
        runs = self.runs()
        if not runs:
            raise InputError(f"no trained model in {self.root}; run `taxifare train` first")
        by_data_set = runs_by_data_set(runs)
        matching = runs if data_set is None else by_data_set.get(data_set, [])
        if not matching:
            trained = ", ".join(by_data_set)
            raise InputError(
                f"no run trained on data set {data_set!r} in {self.root}; runs exist for data set(s) {trained} "
                "(name one with --data-size or NAME:latest, or leave it out for the newest run of any)"
            )
        return matching

    def latest(self, data_set: str | None = None) -> Run:
        """The run that finished last (on data set `data_set`, or on any)."""
        return self.required_runs(data_set)[-1]

    def best(self, data_set: str | None = None) -> Run:
        """The run with the lowest validation MAE among those comparable with `latest(data_set)`."""
        best = best_run(self.required_runs(data_set))
        if best is None:
            raise InputError(f"no run comparable with the latest in {self.root} records a validation MAE; use a run id or latest")
        return best

    def resolve(self, spec: str | None, data_set: str | None = None) -> Run:
        """The run named by `spec`: a run id, or a reference (latest, also for None; best; NAME:latest,
        NAME:best); `data_set` narrows latest and best to that data set's runs."""
        reference = REFERENCE_PATTERN.fullmatch(spec or "latest")
        if reference is None:
            return self.get(spec)
        named = reference["data_set"]
        if named and data_set and named != data_set:
            raise InputError(f"{spec} names data set {named}, but --data-size says {data_set}; give one of them")
        narrowed = named or data_set
        return self.latest(narrowed) if reference["alias"] == "latest" else self.best(narrowed)

    def get(self, run_id: str) -> Run:
        return self._read_run(self._run_folder(run_id))

    def remove(self, run_id: str) -> int:
        """Delete run `run_id` and return the bytes freed. The folder is first renamed to a hidden name, so
        no reader ever sees a half-removed run; a crash mid-delete leaves only hidden scratch (`prune`)."""
        folder = self._run_folder(run_id)
        hidden = self.root / f"{REMOVING_PREFIX}{run_id}"
        delete_tree(hidden)
        os.rename(folder, hidden)
        fsync_path(self.root)
        return delete_tree(hidden)

    def _run_folder(self, run_id: str) -> Path:
        folder = self.root / run_id
        if not RUN_ID_PATTERN.fullmatch(run_id) or not folder.is_dir():
            known = self.runs()
            hint = (
                "expected a run id, latest, best, NAME:latest or NAME:best; `taxifare models` lists them"
                if known
                else "run `taxifare train` first"
            )
            raise InputError(f"no run {run_id!r} in {self.root}; {hint}")
        return folder

    def publish(self, run_id: str, write_files: Callable[[Path], None]) -> Run:
        """Have `write_files` fill a temporary folder, then rename it into place as run `run_id`."""
        final = self.root / run_id
        temporary = self.root / f".tmp-{run_id}"
        shutil.rmtree(temporary, ignore_errors=True)
        temporary.mkdir(parents=True)
        try:
            write_files(temporary)
            for name in RUN_FILES:
                fsync_path(temporary / name)
            fsync_path(temporary)
            os.rename(temporary, final)
        except BaseException:
            shutil.rmtree(temporary, ignore_errors=True)  # a killed run's is left to `taxifare models prune`
            raise
        fsync_path(self.root)
        return self._read_run(final)

    def _read_run(self, folder: Path) -> Run:
        params = read_json(folder / "params.json", "run parameters file")
        metrics = read_json(folder / "metrics.json", "run metrics file")
        for value, where in ((params.get("data"), "params.json: data"), (metrics.get("final"), "metrics.json: final")):
            if not isinstance(value, dict):
                raise InputError(f"{folder}: {where} is not a JSON object")
        return Run(folder.name, folder, params, metrics)


def delete_tree(path: Path) -> int:
    """Delete a folder (absent is fine) and return the bytes its files held."""
    size = 0
    for folder, _, names in os.walk(path):
        for name in names:
            with contextlib.suppress(FileNotFoundError):  # another remover got there first
                size += os.lstat(os.path.join(folder, name)).st_size
    shutil.rmtree(path, ignore_errors=True)
    return size
