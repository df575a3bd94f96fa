"""The local model registry: one folder per completed training run, under LOCAL_REGISTRY_PATH.

    <registry>/<run id>/model.keras, params.json, metrics.json, history.csv, learning_curve.png

A run is written in full to a hidden temporary folder, flushed to disk, then renamed into place, so a
visible run folder is always complete. "Latest" is the completed run that finished last according to
its own params.json, never a guess from file names. Hidden folders (temporary runs, training
checkpoints) are not runs.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import math
import os
import re
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from taxifare.errors import InputError
from taxifare.files import fsync_path, read_json

log = logging.getLogger("taxifare")

RUN_ID_PATTERN = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{6}$")
RUN_FILES = ("model.keras", "params.json", "metrics.json", "history.csv", "learning_curve.png")


def new_run_id(now: dt.datetime) -> str:
    """Sortable: the UTC start time, then random hex so that runs started in the same second differ."""
    return f"{now.astimezone(dt.timezone.utc):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


ALIASES = ("latest", "best")
REMOVING_PREFIX = ".removing-"
_SKIPS_SHOWN = 3  # unreadable run folders named one by one; the rest are counted


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
    def data_size(self) -> str:
        return str(self.params["data"].get("data_size"))

    @property
    def parent_run_id(self) -> str | None:
        return self.params.get("parent_run_id")

    @property
    def hyperparameters(self) -> dict:
        return self.params.get("hyperparameters") or {}

    @property
    def test_mae(self) -> float | None:
        value = self.metrics["final"].get("test_mae")
        return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None

    @property
    def pickup_window(self) -> tuple[dt.datetime, dt.datetime] | None:
        """The earliest and latest pickup trained on (UTC), or None when the run does not record them."""
        data = self.params["data"]
        try:
            return tuple(_utc(dt.datetime.fromisoformat(data[key])) for key in ("pickup_first", "pickup_last"))
        except (KeyError, TypeError, ValueError):
            return None


def _utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value.astimezone(dt.timezone.utc)


def best_run(runs: list[Run]) -> Run | None:
    """The run with the lowest test MAE (the newest of equals); None when no run records one."""
    scored = [run for run in reversed(runs) if run.test_mae is not None]
    return min(scored, key=lambda run: run.test_mae) if scored else None


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
        return sorted(runs, key=lambda run: (run.finished_at, run.run_id))

    def required_runs(self, data_size: str | None = None) -> list[Run]:
        """The runs of data set `data_size` (all for None), or an InputError saying to train first, or
        naming the data sets that have runs."""
        runs = self.runs()
        if not runs:
            raise InputError(f"no trained model in {self.root}; run `taxifare train` first")
        matching = [run for run in runs if data_size is None or run.data_size == data_size]
        if not matching:
            trained = ", ".join(sorted({run.data_size for run in runs}))
            raise InputError(
                f"no run trained on data set {data_size!r} in {self.root}; runs exist for data set(s) {trained} "
                "(pick one with --data-size or DATA_SIZE)"
            )
        return matching

    def latest(self, data_size: str | None = None) -> Run:
        """The run that finished last (on data set `data_size`, or on any)."""
        return self.required_runs(data_size)[-1]

    def best(self, data_size: str | None = None) -> Run:
        """The run with the lowest test MAE (on data set `data_size`, or on any)."""
        best = best_run(self.required_runs(data_size))
        if best is None:
            raise InputError(f"no run of data set {data_size!r} in {self.root} records a test MAE; use a run id or latest")
        return best

    def resolve(self, spec: str | None, data_size: str) -> Run:
        """The run named by `spec`: a run id, `latest` (also for None) or `best`; aliases are per data set."""
        if spec is None or spec == "latest":
            return self.latest(data_size)
        if spec == "best":
            return self.best(data_size)
        return self.get(spec)

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
                f"expected a run id, {' or '.join(ALIASES)}; `taxifare models` lists them"
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


@dataclass(frozen=True)
class RunSummary:
    """What `taxifare models` shows of a run (also its --json form)."""

    run_id: str
    data_size: str
    finished_at: str
    aliases: list[str]
    learning_rate: float | None
    batch_size: int | None
    epochs: int | None
    hidden_units: list[int] | None
    dropout: float | None
    loss: str | None
    test_mae: float | None
    baseline_test_mae: float | None
    parent_run_id: str | None


def run_summaries(runs: list[Run]) -> list[RunSummary]:
    """One summary per run, in the order given, naming the aliases (latest, best) each run holds."""
    aliases: dict[str, list[str]] = {run.run_id: [] for run in runs}
    for data_size in {run.data_size for run in runs}:
        of_data_set = [run for run in runs if run.data_size == data_size]
        aliases[of_data_set[-1].run_id].append("latest")
        best = best_run(of_data_set)
        if best is not None:
            aliases[best.run_id].append("best")
    return [_summary(run, aliases[run.run_id]) for run in runs]


def _summary(run: Run, aliases: list[str]) -> RunSummary:
    hyper = run.hyperparameters
    return RunSummary(
        run_id=run.run_id,
        data_size=run.data_size,
        finished_at=run.finished_at,
        aliases=aliases,
        learning_rate=hyper.get("learning_rate"),
        batch_size=hyper.get("batch_size"),
        epochs=hyper.get("epochs"),
        hidden_units=hyper.get("hidden_units"),
        dropout=hyper.get("dropout"),
        loss=hyper.get("loss"),
        test_mae=run.test_mae,
        baseline_test_mae=run.metrics["final"].get("baseline_test_mae"),
        parent_run_id=run.parent_run_id,
    )


_COLUMNS = ("run id", "data set", "finished (UTC)", "lr", "batch", "epochs", "hidden", "dropout", "loss", "test MAE", "parent", "alias")


def format_runs(summaries: list[RunSummary]) -> str:
    """An aligned table, oldest first; empty text for no runs."""
    if not summaries:
        return ""
    rows = [list(_COLUMNS)] + [_row(summary) for summary in summaries]
    widths = [max(len(row[column]) for row in rows) for column in range(len(_COLUMNS))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)


def _row(summary: RunSummary) -> list[str]:
    def text(value) -> str:
        return "-" if value is None else str(value)

    return [
        summary.run_id,
        summary.data_size,
        summary.finished_at[:19].replace("T", " "),
        text(summary.learning_rate),
        text(summary.batch_size),
        text(summary.epochs),
        "-" if summary.hidden_units is None else "x".join(str(units) for units in summary.hidden_units),
        text(summary.dropout),
        text(summary.loss),
        "-" if summary.test_mae is None else f"${summary.test_mae:.3f}",
        text(summary.parent_run_id),
        ",".join(summary.aliases),
    ]
