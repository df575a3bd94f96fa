"""The training loop: passes over the processed data, chunk by chunk, into one Keras model.

`--epochs` passes at most. Each pass reads every span of training rows once, in a new seeded order,
SPANS_PER_CHUNK scattered spans per chunk, each chunk's rows shuffled; the next chunk is read in the
background while the current one trains. The model is scored on the validation rows after every pass
and every `eval_every` chunks within a pass; early stopping and the learning-rate schedule act on those
evaluations (see state.py), and the run publishes its best weights, scored once on the test rows.

Determinism. With the same data, settings and seed on the same machine and TensorFlow build, two runs
give identical metrics: chunk orders and row orders come from the seed and the chunk's pass and index
alone, and the initial weights and dropout masks from Keras' seeded generators. A checkpoint after every
chunk holds the weights, Adam's moments, iteration count and learning rate, the dropout generators'
states, the best weights so far and the TrainingState; a run killed mid-chunk resumes by redoing that
chunk from its start, so its model and metrics are those of an uninterrupted run. What differs: wall
times and peak memory (they cover the last process only) and the `resumed` record. A checkpoint is
never reused with other settings or another processed file (it is refused; `--force` starts afresh).

Warm start (`--from RUN`): the new model takes the run's weights, optimizer state and input statistics
(the Normalization layer's mean and variance), then trains on this file with a fresh learning-rate
schedule, early stopping and splits of its own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import functools
import hashlib
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from taxifare.config import Settings
from taxifare.errors import InputError
from taxifare.files import describe_os_error
from taxifare.lock import OutputLock
from taxifare.model import ModelSpec, build_model, import_keras, input_statistics, load_model, shuffled_batches
from taxifare.progress import Progress
from taxifare.registry import Registry, Run, new_run_id
from taxifare.training.checkpoint import Checkpoint, assign_variables, copy_training_variables, framework_versions
from taxifare.training.distributed import join_team
from taxifare.training.data import (
    PreparedRows,
    ProcessedData,
    chunk_plan,
    open_processed,
    prepare_rows,
    read_ahead,
    read_prepared_rows,
    span_rows,
)
from taxifare.training.report import fare_errors, log_result, publish_run
from taxifare.training.state import Evaluation, Position, TrainingState, now_utc

log = logging.getLogger("taxifare")


@dataclass
class TrainResult:
    run: Run
    resumed_at: Position | None
    seconds: float


def checkpoint_folder(settings: Settings, processed_path: Path) -> Path:
    """One checkpoint per processed file, so two runs on the same data meet at the same lock."""
    digest = hashlib.sha256(str(processed_path.resolve()).encode()).hexdigest()[:10]
    return settings.local_registry_path / ".checkpoints" / f"{processed_path.stem}-{digest}"


def train(settings: Settings, input_path: Path | None = None, force: bool = False, from_run: str | None = None) -> TrainResult:
    """Train alone, or as one worker of the cluster in settings.tf_config (see distributed.py)."""
    processed_path = Path(input_path) if input_path else settings.processed_path
    team = join_team(settings) or Solo()
    folder = checkpoint_folder(settings, processed_path)
    # Only the chief checkpoints; another worker keeps its scratch rows in a folder of its own.
    checkpoint = Checkpoint(folder if team.is_chief else folder.with_name(f"{folder.name}.worker-{team.index}"))
    with contextlib.ExitStack() as stack:
        team.check_in(lambda: stack.enter_context(OutputLock(checkpoint.folder, f"training checkpoint for {processed_path.name}")))
        try:
            return _train_locked(settings, processed_path, checkpoint, force, from_run, team)
        except OSError as error:
            raise describe_os_error(error) from error
        finally:
            checkpoint.remove_scratch()  # what a finished run left is gone already; a failed one's rows go


class Solo:
    """A single process: the team of one that `distributed.Team` generalizes."""

    is_chief, index, size = True, 0, 1

    def check_in(self, step: Callable):
        return step()

    def from_chief(self, value):
        return value

    def build(self, make_model: Callable):
        return make_model()

    def share_training(self, training: "Training") -> None:
        pass

    def prepare_rows(self, data: ProcessedData, row_file: Path) -> PreparedRows:
        return prepare_rows(data, row_file)

    def chunks_per_pass(self, span_count: int, seed: int) -> int:
        return len(chunk_plan(span_count, seed, 0))

    def load_chunk(self, training: "Training", position: Position) -> "TrainingChunk":
        settings = training.settings
        spans = chunk_plan(len(training.data.spans), settings.seed, position.pass_index)[position.chunk]
        rows = read_prepared_rows(training.checkpoint.row_file, len(training.data.columns), training.prepared, spans)
        order = np.random.default_rng([settings.seed, position.pass_index, position.chunk]).permutation(len(rows))
        batches = shuffled_batches(rows, order.astype(np.int32), settings.batch_size) if len(rows) else None
        return TrainingChunk(len(rows), batches)

    def fit(self, training: "Training", chunk: "TrainingChunk") -> dict:
        if chunk.batches is None:
            return {"loss": None, "mae": None}
        history = training.model.fit(chunk.batches, shuffle=False, verbose=0).history
        return {name: float(history[name][-1]) for name in ("loss", "mae")}

    def score(self, training: "Training", rows: np.ndarray) -> tuple[float, float]:
        return fare_errors(training.model, rows)

    def plain_model(self, training: "Training"):
        return training.model

    def published(self, run: Run) -> Run:
        return run


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


def _train_locked(settings, processed_path: Path, checkpoint: Checkpoint, force: bool, from_run: str | None, team) -> TrainResult:
    started = time.monotonic()
    # Importing TensorFlow takes seconds of mostly Python work; the pass that prepares the rows is mostly
    # pyarrow's, which runs without the GIL, so the two overlap. build_model waits for the import if needed.
    threading.Thread(target=import_keras, name="taxifare-import", daemon=True).start()
    registry = Registry(settings.local_registry_path)
    data, parent, fingerprint, state = team.check_in(lambda: _open(settings, processed_path, registry, checkpoint, force, from_run, team))
    with data.file:
        prepared = team.prepare_rows(data, checkpoint.row_file)
        _check_split_sizes(data, prepared)
        training = _start(settings, data, prepared, checkpoint, state, parent, fingerprint, team)
        # Where the chief's checkpoint left off (None for a new run), as every worker reports it.
        saved_position = team.from_chief(dataclasses.asdict(state.position) if state is not None else None)
        resumed_at = Position(**saved_position) if saved_position is not None else None
        if not training.state.done:
            _train_passes(training, team)
        assign_variables(training.model.variables, training.best_weights)
        run = team.check_in(lambda: team.is_chief and publish_run(registry, settings, data, prepared, team.plain_model(training), training.state, parent))
        run = team.published(run)
        checkpoint.discard()
        result = TrainResult(run, resumed_at, time.monotonic() - started)
        log_result(result.run, result.resumed_at, result.seconds)
        return result


def _open(settings, processed_path: Path, registry: Registry, checkpoint: Checkpoint, force: bool, from_run: str | None, team):
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
    parent = registry.resolve(spec, settings.data_size)
    params, hyper = parent.params, parent.params.get("hyperparameters", {})
    if params.get("preprocessor_version") != data.manifest["preprocessor_version"] or params.get("feature_names") != data.manifest["feature_names"]:
        raise InputError(
            f"cannot continue run {parent.run_id}: it was trained on preprocessor version "
            f"{params.get('preprocessor_version')}, this data is version {data.manifest['preprocessor_version']}"
        )
    theirs = (tuple(hyper.get("hidden_units") or ()), hyper.get("dropout"))
    ours = (settings.hidden_units, settings.dropout)
    if theirs != ours:
        raise InputError(
            f"cannot continue run {parent.run_id}: its architecture is hidden units {_units(theirs[0])}, dropout "
            f"{theirs[1]}; this run asks for hidden units {_units(ours[0])}, dropout {ours[1]} "
            "(pass the same --hidden-units and --dropout, or train afresh without --from)"
        )
    return parent


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
        "chunk_size": settings.chunk_size,
        "batch_size": settings.batch_size,
        "learning_rate": settings.learning_rate,
        "epochs": settings.epochs,
        "patience": settings.patience,
        "lr_patience": settings.lr_patience,
        "eval_every": settings.eval_every,
        "hidden_units": list(settings.hidden_units),
        "dropout": settings.dropout,
        "loss": settings.loss,
        "seed": settings.seed,
        "parent_run_id": parent.run_id if parent else None,
        # Another build may number, order or compute the variables differently.
        **framework_versions(),
    }


def _differences(saved: dict, fresh: dict) -> str:
    changed = [f"{key} {saved.get(key)} -> {value}" for key, value in fresh.items() if saved.get(key) != value]
    return "; ".join(changed)[:300]


def _check_split_sizes(data: ProcessedData, prepared: PreparedRows) -> None:
    if min(len(prepared.validation), len(prepared.test), prepared.train_rows) == 0:
        raise InputError(
            f"{data.path}: {data.rows} rows are too few to split into training, validation and test sets; "
            "expected at least 100"
        )


def _start(settings, data, prepared: PreparedRows, checkpoint, state, parent: Run | None, fingerprint, team) -> Training:
    """The model and state of a new run (fresh, or warm-started from `parent`), or of a resumed one; on every
    worker of a team, the chief's."""
    training = _start_model(settings, data, prepared, checkpoint, state, parent, fingerprint, team)
    team.share_training(training)
    return training


def _start_model(settings, data, prepared: PreparedRows, checkpoint, state, parent: Run | None, fingerprint, team) -> Training:
    spec = ModelSpec(settings.hidden_units, settings.dropout, settings.loss)
    statistics = prepared.statistics
    mean, variance, mean_fare = statistics.mean[:-1], statistics.variance[:-1], float(statistics.mean[-1])
    parent_model = load_model(parent.model_path, compile=True) if parent else None
    if parent_model is not None:
        mean, variance = input_statistics(parent_model)
    mean, variance = (np.asarray(values) for values in team.from_chief((mean, variance)))
    make_model = functools.partial(build_model, spec, settings.learning_rate, settings.seed, mean, variance, mean_fare)
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
        log.info("continuing from run %s", parent.run_id)
    run_id = new_run_id(dt.datetime.now(dt.timezone.utc))
    state = TrainingState(run_id, fingerprint, settings.learning_rate, parent_run_id=parent.run_id if parent else None)
    return Training(settings, data, prepared, checkpoint, model, state, [variable.numpy() for variable in model.variables], make_model)


@dataclass
class TrainingChunk:
    rows: int
    batches: object  # a tf.data.Dataset; None when no row is left to train on


def _remaining_positions(state: TrainingState, chunks_per_pass: int, passes: int) -> list[Position]:
    start = state.position
    return [
        Position(pass_index, chunk)
        for pass_index in range(start.pass_index, passes)
        for chunk in range(start.chunk if pass_index == start.pass_index else 0, chunks_per_pass)
    ]


def _train_passes(training: Training, team) -> None:
    settings, data, state = training.settings, training.data, training.state
    chunks_per_pass = team.chunks_per_pass(len(data.spans), settings.seed)
    positions = _remaining_positions(state, chunks_per_pass, settings.epochs)
    progress = Progress("train", total=None, unit="row-epochs")
    chunk_started = time.monotonic()
    for position, chunk in zip(positions, read_ahead(positions, functools.partial(team.load_chunk, training))):
        fit_started = time.monotonic()
        fit = team.fit(training, chunk)
        fit_seconds = time.monotonic() - fit_started
        # The chunk's wall time: waiting for its rows, fitting, scoring; the checkpoint's time goes to the next.
        state.advance(chunks_per_pass, chunk.rows, fit_seconds)
        if state.position.chunk == 0 or state.position.chunk % settings.eval_every == 0:
            _evaluate(training, team, position, fit, time.monotonic() - chunk_started)
        state.train_seconds += time.monotonic() - chunk_started
        chunk_started = time.monotonic()
        state.finish_if_over(settings.epochs)
        if team.is_chief:
            training.checkpoint.save(training.model, state, training.best_weights)
        progress.advance(chunk.rows, note=_progress_note(state, settings, position))
        if state.done:
            break
    progress.close()
    if state.stopped_early:
        log.info("early stop: no better validation MAE in %d evaluations", settings.patience)


def _progress_note(state: TrainingState, settings: Settings, position: Position) -> str:
    best = f", best validation MAE ${state.best_validation_mae:.3f}" if state.best_validation_mae is not None else ""
    return f"pass {position.pass_index + 1} of at most {settings.epochs}{best}"


def _evaluate(training: Training, team, position: Position, fit: dict, seconds: float) -> None:
    state, model = training.state, training.model
    mae, rmse = team.score(training, training.prepared.validation)
    learning_rate = state.learning_rate
    improved, next_rate = state.observe(training.settings, mae)
    if improved:
        training.best_weights = [variable.numpy() for variable in model.variables]
    state.evaluations.append(
        Evaluation(
            evaluation=len(state.evaluations) + 1,
            pass_number=position.pass_index + 1,
            chunk=position.chunk + 1,
            rows_trained=state.rows_trained,
            learning_rate=learning_rate,
            loss=fit["loss"],
            mae=fit["mae"],
            validation_mae=mae,
            validation_rmse=rmse,
            best=improved,
            seconds=round(seconds, 3),
        )
    )
    if next_rate != learning_rate:
        model.optimizer.learning_rate.assign(next_rate)
        log.info("validation MAE flat for %d evaluations: learning rate %.3g -> %.3g", state.evaluations_since_best, learning_rate, next_rate)
