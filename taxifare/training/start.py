"""How a run begins: its processed data opened, then its model and TrainingState fresh, warm-started
from a parent run (`--from`), or resumed from the chief's checkpoint when that checkpoint was made with
the same settings and data (its fingerprint); on every worker of a team, the chief's.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from taxifare.core.config import Settings
from taxifare.core.errors import InputError
from taxifare.model.network import QUANTILE_SAMPLE_ROWS, build_model, input_statistics, quantile_knots
from taxifare.model.saved import load_model
from taxifare.model.spec import ModelSpec
from taxifare.registry.store import Registry, Run, new_run_id
from taxifare.rides.features import days_feature
from taxifare.training.checkpoint import Checkpoint, copy_training_variables, framework_versions
from taxifare.training.data import PreparedRows, ProcessedData, evenly_spaced_rows, open_processed, span_rows
from taxifare.training.report import pickup_range
from taxifare.training.splits import ALL_COLUMNS_METHOD, SPLIT_METHOD, hashed_as_now, recorded_method
from taxifare.training.state import TrainingState, now_utc

log = logging.getLogger("taxifare")


@dataclass
class Training:
    """Everything the loop works on."""

    settings: Settings
    data: ProcessedData
    prepared: PreparedRows
    checkpoint: Checkpoint
    model: object
    state: TrainingState
    best_weights: list[np.ndarray]  # the model's variables at the best evaluation so far
    make_model: Callable[[], object]  # a new model of this run's shape and input statistics


def open_run(settings, processed_path: Path, registry: Registry, checkpoint: Checkpoint, force: bool, from_run: str | None, team):
    """The data, and on the chief the parent run, fingerprint and saved state; the checkpoint folder ready."""
    data = open_processed(processed_path, span_rows(settings.chunk_size))
    parent = _parent_run(registry, settings, data, from_run) if from_run and team.is_chief else None
    fingerprint = _fingerprint(settings, data, parent, team.size)
    state = None if force or not team.is_chief else checkpoint.load()
    if state is not None and state.fingerprint != fingerprint:
        raise InputError(
            f"{checkpoint.folder} holds an unfinished run with other settings or data "
            f"({_differences(state.fingerprint, fingerprint)}); rerun with those to resume it, "
            "or pass --force to discard it"
        )
    if state is None:
        checkpoint.discard()
    checkpoint.folder.mkdir(parents=True, exist_ok=True)
    return data, parent, fingerprint, state


def _parent_run(registry: Registry, settings: Settings, data: ProcessedData, spec: str) -> Run:
    """The run to warm-start from, checked against this data and model shape before any training."""
    parent = registry.resolve(spec)
    params, hyper = parent.params, parent.params.get("hyperparameters", {})
    if params.get("preprocessor_version") != data.manifest["preprocessor_version"] or params.get("feature_names") != data.manifest["feature_names"]:
        raise InputError(
            f"cannot continue run {parent.run_id}: it was trained on preprocessor version "
            f"{params.get('preprocessor_version')}, this data is version {data.manifest['preprocessor_version']}"
        )
    method = recorded_method(params)
    if not hashed_as_now(method, data.columns):
        how = f" (a hash of all {len(data.columns)} columns)" if method == ALL_COLUMNS_METHOD else ""
        raise InputError(
            f"cannot continue run {parent.run_id}: its rows were split by {method}{how}, which puts some of its "
            "training rows in this run's test set; train afresh without --from"
        )
    theirs = (tuple(hyper.get("hidden_units") or ()), hyper.get("dropout"), _members(hyper))
    ours = (settings.hidden_units, settings.dropout, settings.members)
    if theirs != ours:
        raise InputError(
            f"cannot continue run {parent.run_id}: its architecture is hidden units {_units(theirs[0])}, dropout "
            f"{theirs[1]}, {theirs[2]} network(s); this run asks for hidden units {_units(ours[0])}, dropout {ours[1]}, "
            f"{ours[2]} network(s) (pass the same --hidden-units, --dropout and --members, or train afresh without --from)"
        )
    spec = ModelSpec.of(settings)
    designs = spec.member_designs()
    # Runs from before the member designs had every network on standardized inputs.
    their_designs = hyper.get("member_designs", ["standardized"] * ours[2])
    if their_designs != designs:
        raise InputError(
            f"cannot continue run {parent.run_id}: its networks are {', '.join(their_designs)}; this taxifare's are "
            f"{', '.join(designs)} (an earlier version trained it): train afresh without --from"
        )
    # Runs from before the flat-fare heads have none.
    their_flat_fares = hyper.get("flat_fares", [])
    if their_flat_fares != list(spec.flat_fares):
        recorded = f"its flat-fare heads start from {their_flat_fares}" if their_flat_fares else "it has no flat-fare heads"
        raise InputError(
            f"cannot continue run {parent.run_id}: {recorded}; this taxifare's start from {list(spec.flat_fares)} "
            "(an earlier version trained it): train afresh without --from"
        )
    return parent


def _members(hyper: dict) -> int:
    """Runs from before --members record the ensemble only in their architecture's description."""
    if "members" in hyper:
        return hyper["members"]
    ensemble = re.search(r"-> (\d+) networks\b", hyper.get("architecture", ""))
    return int(ensemble.group(1)) if ensemble else 1


def _units(units) -> str:
    return ",".join(str(unit) for unit in units) or "?"


def _fingerprint(settings: Settings, data: ProcessedData, parent: Run | None, workers: int) -> dict:
    # A multi-worker run walks the data in other chunks: its checkpoint resumes with as many workers only.
    return ({"workers": workers} if workers > 1 else {}) | {
        "processed_path": str(data.path.resolve()),
        "processed_bytes": data.manifest.get("bytes"),
        "processed_completed_at": data.manifest.get("completed_at"),
        "rows": data.rows,
        "preprocessor_version": data.manifest["preprocessor_version"],
        "split_method": SPLIT_METHOD,
        "chunk_size": settings.chunk_size,
        "batch_size": settings.batch_size,
        "learning_rate": settings.learning_rate,
        "epochs": settings.epochs,
        "patience": settings.patience,
        "lr_patience": settings.lr_patience,
        "eval_every": settings.eval_every,
        "hidden_units": list(settings.hidden_units),
        "dropout": settings.dropout,
        "members": settings.members,
        "loss": settings.loss,
        "seed": settings.seed,
        "parent_run_id": parent.run_id if parent else None,
        # Another build may number, order or compute the variables differently.
        **framework_versions(),
    }


def _differences(saved: dict, fresh: dict) -> str:
    changed = [f"{key} {saved.get(key)} -> {value}" for key, value in fresh.items() if saved.get(key) != value]
    return "; ".join(changed)[:300]


def check_split_sizes(data: ProcessedData, prepared: PreparedRows) -> None:
    if min(len(prepared.validation), len(prepared.test), prepared.train_rows) == 0:
        raise InputError(
            f"{data.path}: {data.rows} rows are too few to split into training, validation and test sets; "
            "expected at least 100"
        )


def start_training(settings, data, prepared: PreparedRows, checkpoint, state, parent: Run | None, fingerprint, team) -> Training:
    """The model and state of a new run (fresh, or warm-started from `parent`), or of a resumed one; on every
    worker of a team, the chief's."""
    training = _start_model(settings, data, prepared, checkpoint, state, parent, fingerprint, team)
    team.share_training(training)
    return training


def _training_quantiles(spec: ModelSpec, row_file: Path, columns: int) -> np.ndarray | None:
    """The numeric features' quantile knots over (a sample of) the training rows, for the quantile members."""
    if "quantile" not in spec.member_designs():
        return None
    rows = evenly_spaced_rows(row_file, columns, QUANTILE_SAMPLE_ROWS)
    return quantile_knots(rows[:, :-1]) if len(rows) else None


def _start_model(settings, data, prepared: PreparedRows, checkpoint, state, parent: Run | None, fingerprint, team) -> Training:
    spec = ModelSpec.of(settings)
    statistics = prepared.statistics
    mean, variance, mean_fare = statistics.mean[:-1], statistics.variance[:-1], float(statistics.mean[-1])
    parent_model = load_model(parent.model_path, compile=True) if parent else None
    if parent_model is not None:
        mean, variance = input_statistics(parent_model)
    # Only a fresh run needs them: a warm start copies the parent's knots with its other variables, a resumed
    # run restores its own. Each worker of a team has its own share of the rows; the chief's quantiles stand
    # for all, so only the chief computes them.
    fresh = parent_model is None and state is None and team.is_chief
    knots = _training_quantiles(spec, checkpoint.row_file, len(data.columns)) if fresh else None
    date_range = tuple(days_feature(moment) for moment in pickup_range(data, prepared, parent))
    mean, variance, knots, date_range = team.from_chief((mean, variance, knots, date_range))
    mean, variance, knots = np.asarray(mean), np.asarray(variance), None if knots is None else np.asarray(knots)
    make_model = functools.partial(build_model, spec, settings.learning_rate, settings.seed, mean, variance, mean_fare, knots, tuple(date_range))
    model = team.build(make_model)
    # On the chief; a checkpoint it refuses stops every worker with its message.
    restored = team.check_in(lambda: checkpoint.restore(model) if state is not None else None)
    if state is not None:
        best_weights = restored
        state.resumes.append({"at": now_utc(), "pass": state.position.pass_index + 1, "chunk": state.position.chunk + 1})
        log.info("resuming run %s at pass %d, chunk %d", state.run_id, state.position.pass_index + 1, state.position.chunk + 1)
        return Training(settings, data, prepared, checkpoint, model, state, best_weights, make_model)
    if parent_model is not None:
        copy_training_variables(parent_model, model, f"run {parent.run_id}")
        model.optimizer.learning_rate.assign(settings.learning_rate)
        log.info("continuing from %s", parent.describe())
    run_id = new_run_id(dt.datetime.now(dt.timezone.utc))
    state = TrainingState(run_id, fingerprint, settings.learning_rate, parent_run_id=parent.run_id if parent else None)
    return Training(settings, data, prepared, checkpoint, model, state, [variable.numpy() for variable in model.variables], make_model)
