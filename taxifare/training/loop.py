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
import functools
import hashlib
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from taxifare.core.config import Settings
from taxifare.core.files import describe_os_error
from taxifare.core.lock import OutputLock
from taxifare.core.progress import Progress
from taxifare.model.network import import_keras, shuffled_batches
from taxifare.registry.store import Registry, Run
from taxifare.registry.tracking import log_training
from taxifare.training.checkpoint import Checkpoint, assign_variables
from taxifare.training.data import PreparedRows, ProcessedData, chunk_plan, prepare_rows, read_ahead, read_prepared_rows
from taxifare.training.distributed import join_team
from taxifare.training.report import fare_errors, log_result, publish_run
from taxifare.training.start import Training, check_split_sizes, open_run, start_training
from taxifare.training.state import Evaluation, Position, TrainingState

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


def _train_locked(settings, processed_path: Path, checkpoint: Checkpoint, force: bool, from_run: str | None, team) -> TrainResult:
    started = time.monotonic()
    registry = Registry(settings.local_registry_path)
    data, parent, fingerprint, state = team.check_in(lambda: open_run(settings, processed_path, registry, checkpoint, force, from_run, team))
    # Importing TensorFlow takes seconds of mostly Python work; the pass that prepares the rows is mostly
    # pyarrow's, which runs without the GIL, so the two overlap. build_model waits for the import if needed.
    importing = threading.Thread(target=import_keras, name="taxifare-import", daemon=True)
    importing.start()
    with _waiting_on_failure(importing), data.file:
        prepared = team.prepare_rows(data, checkpoint.row_file)
        check_split_sizes(data, prepared)
        training = start_training(settings, data, prepared, checkpoint, state, parent, fingerprint, team)
        # Where the chief's checkpoint left off (None for a new run), as every worker reports it.
        saved_position = team.from_chief(dataclasses.asdict(state.position) if state is not None else None)
        resumed_at = Position(**saved_position) if saved_position is not None else None
        if not training.state.done:
            _train_passes(training, team)
        assign_variables(training.model.variables, training.best_weights)
        run = team.check_in(lambda: team.is_chief and publish_run(registry, settings, data, prepared, team.plain_model(training), training.state, parent))
        run = team.published(run)
        if team.is_chief:
            log_training(settings, run, data.manifest)
        checkpoint.discard()
        result = TrainResult(run, resumed_at, time.monotonic() - started)
        log_result(result.run, result.resumed_at, result.seconds)
        return result


@contextlib.contextmanager
def _waiting_on_failure(importing: threading.Thread):
    """A failure ends the process: not before the import is done, since a process that exits while
    TensorFlow's libraries load can abort (SIGABRT) instead of exiting with its own status."""
    try:
        yield
    except BaseException:
        importing.join()
        raise


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
