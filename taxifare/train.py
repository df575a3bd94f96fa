"""The training pipeline: processed chunks -> one Keras model -> a run in the registry.

One pass over the processed file: each chunk is SPANS_PER_CHUNK spans of lines from scattered places in
the file (a seeded shuffle), its holdout rows removed, its rows shuffled, then fitted for `epochs`
epochs. After each chunk the model is scored on the fixed holdout, early stopping is updated, and a
checkpoint is written; a killed run started again with the same command resumes after its last chunk.

Determinism. With the same data, settings and seed on the same machine and TensorFlow build, two runs
give identical metrics: the chunk order and each chunk's row order come from the seed and the chunk's
index alone, and the model's initial weights and dropout masks from Keras' seeded generators.
A resumed run restores, exactly, the weights, Adam's moments and iteration count, the batch-norm
statistics, the dropout generators' states, the early-stopping state and the figures so far, and redoes
the interrupted chunk from its start; its model and metrics are therefore the same as those of an
uninterrupted run. What differs: wall times, throughput and peak memory (they cover the last process
only) and the `resumed` record. A checkpoint is never reused with other settings or another processed
file (it is refused; `--force` starts afresh).
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import logging
import platform
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from taxifare import __version__
from taxifare.checkpoint import Checkpoint
from taxifare.chunks import (
    HOLDOUT_MAX_ROWS,
    SPANS_PER_CHUNK,
    ProcessedData,
    chunk_plan,
    open_processed,
    prepare_rows,
    read_ahead,
    read_prepared_rows,
    span_rows,
)
from taxifare.config import Settings
from taxifare.errors import InputError
from taxifare.files import atomic_write_json, describe_os_error
from taxifare.lock import OutputLock
from taxifare.model import (
    ARCHITECTURE,
    build_model,
    epoch_batches,
    import_keras,
    predict_fares,
)
from taxifare.progress import Progress, log_summary, peak_rss_mb
from taxifare.registry import Registry, Run, new_run_id

log = logging.getLogger("taxifare")

HISTORY_COLUMNS = ("chunk", "rows", "rows_trained", "loss", "mae", "holdout_mae", "holdout_rmse", "fit_seconds", "seconds")


@dataclass
class TrainResult:
    run: Run
    resumed_from_chunk: int | None
    seconds: float


def checkpoint_folder(settings: Settings, processed_path: Path) -> Path:
    """One checkpoint per processed file, so two runs on the same data meet at the same lock."""
    digest = hashlib.sha256(str(processed_path.resolve()).encode()).hexdigest()[:10]
    return settings.local_registry_path / ".checkpoints" / f"{processed_path.stem}-{digest}"


def train(settings: Settings, input_path: Path | None = None, force: bool = False) -> TrainResult:
    processed_path = Path(input_path) if input_path else settings.processed_path
    checkpoint = Checkpoint(checkpoint_folder(settings, processed_path))
    with OutputLock(checkpoint.folder, f"training checkpoint for {processed_path.name}"):
        try:
            return _train_locked(settings, processed_path, checkpoint, force)
        except OSError as error:
            raise describe_os_error(error) from error


def _train_locked(settings: Settings, processed_path: Path, checkpoint: Checkpoint, force: bool) -> TrainResult:
    started = time.monotonic()
    # Importing TensorFlow takes seconds of mostly Python work; the pass that prepares the rows is mostly
    # pyarrow's, which runs without the GIL, so the two overlap. build_model waits for the import if needed.
    threading.Thread(target=import_keras, name="taxifare-import", daemon=True).start()
    data = open_processed(processed_path, span_rows(settings.chunk_size))
    fingerprint = _fingerprint(settings, data)
    state = None if force else checkpoint.load()
    if state is not None and state["fingerprint"] != fingerprint:
        raise InputError(
            f"{checkpoint.folder} holds an unfinished run with other settings or data "
            f"({_differences(state['fingerprint'], fingerprint)}); rerun with those to resume it, "
            "or pass --force to discard it"
        )
    if state is None:
        checkpoint.discard()
    checkpoint.folder.mkdir(parents=True, exist_ok=True)
    prepared = prepare_rows(data, checkpoint.row_file)
    holdout = prepared.holdout
    if len(holdout) == 0:
        raise InputError(f"{processed_path}: {data.rows} rows are too few to set a holdout aside; expected at least 50")
    plan = chunk_plan(len(data.spans), settings.seed)
    resumed_from = state["step"] if state else None
    if state is None:
        state = _fresh_state(fingerprint, len(plan))
        model = build_model(data.feature_count, settings.learning_rate, settings.seed, data.mean_fare)
    else:
        model = build_model(data.feature_count, settings.learning_rate, settings.seed, data.mean_fare)
        checkpoint.restore(model, state)
        state["resumes"].append({"after_chunk": state["step"], "at": _now()})
        log.info("resuming run %s after chunk %d of %d", state["run_id"], state["step"], len(plan))
    if not state["done"]:
        _train_chunks(settings, data, plan, prepared, model, state, checkpoint)
    registry = Registry(settings.local_registry_path)
    run = _publish(registry, settings, data, holdout, model, state)
    checkpoint.discard()
    result = TrainResult(run, resumed_from, time.monotonic() - started)
    _log_result(result, state)
    return result


def _fingerprint(settings: Settings, data: ProcessedData) -> dict:
    return {
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
        "seed": settings.seed,
    }


def _differences(saved: dict, fresh: dict) -> str:
    changed = [f"{key} {saved.get(key)} -> {value}" for key, value in fresh.items() if saved.get(key) != value]
    return "; ".join(changed)[:300]


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _fresh_state(fingerprint: dict, chunks: int) -> dict:
    return {
        "fingerprint": fingerprint,
        "run_id": new_run_id(dt.datetime.now(dt.timezone.utc)),
        "started_at": _now(),
        "step": 0,
        "chunks_total": chunks,
        "rows_trained": 0,
        "target_sum": 0.0,
        "best_holdout_mae": None,
        "chunks_since_best": 0,
        "stopped_early": False,
        "done": False,
        "train_seconds": 0.0,
        "fit_seconds": 0.0,
        "per_chunk": [],
        "resumes": [],
    }


@dataclass
class TrainingChunk:
    rows_read: int
    rows_trained: int
    target_sum: float
    epochs: list  # a tf.data.Dataset of batches per epoch; none when no row is left to train on


def _train_chunks(settings, data, plan, prepared, model, state, checkpoint) -> None:
    steps = range(state["step"], len(plan))
    progress = Progress("train", total=sum(data.spans[index].rows for step in steps for index in plan[step]))

    def load(step: int) -> TrainingChunk:
        trainable = read_prepared_rows(checkpoint.row_file, len(data.columns), prepared, plan[step])
        return training_chunk(trainable, sum(data.spans[index].rows for index in plan[step]), settings, step)

    chunk_started = time.monotonic()
    for step, chunk in zip(steps, read_ahead(steps, load)):
        fit_started = time.monotonic()
        fit = _fit_chunk(model, chunk)
        fit["fit_seconds"] = round(time.monotonic() - fit_started, 3)
        mae, rmse = holdout_errors(model, prepared.holdout)
        # The chunk's wall time: waiting for its rows, fitting, scoring; the checkpoint's time goes to the next.
        seconds, chunk_started = time.monotonic() - chunk_started, time.monotonic()
        _record_chunk(state, settings, step, chunk, fit, mae, rmse, seconds)
        checkpoint.save(model, state)
        progress.advance(chunk.rows_read, note=f"chunk {step + 1} of {len(plan)}, holdout MAE ${mae:.2f}")
        if state["done"]:
            break
    progress.close()


def training_chunk(trainable: np.ndarray, rows_read: int, settings: Settings, step: int) -> TrainingChunk:
    """The chunk's trainable rows in a new seeded order for each epoch: the orders depend on the seed and
    the chunk's index alone, so a resumed run redoes a chunk exactly."""
    rng = np.random.default_rng([settings.seed, step])
    orders = [rng.permutation(len(trainable)).astype(np.int32) for _ in range(settings.epochs)]
    epochs = epoch_batches(trainable, orders, settings.batch_size) if len(trainable) else []
    return TrainingChunk(rows_read, len(trainable), float(trainable[:, -1].astype(np.float64).sum()), epochs)


def _fit_chunk(model, chunk: TrainingChunk) -> dict:
    """One `fit` call per epoch, each over its own order of the rows; the last epoch's training figures."""
    figures = {"loss": None, "mae": None}
    for batches in chunk.epochs:
        history = model.fit(batches, shuffle=False, verbose=0)
        figures = {name: float(history.history[name][-1]) for name in figures}
    return figures


def holdout_errors(model, holdout: np.ndarray) -> tuple[float, float]:
    """MAE and RMSE in dollars on the holdout rows."""
    errors = predict_fares(model, holdout[:, :-1]) - holdout[:, -1].astype(np.float64)
    return float(np.mean(np.abs(errors))), float(np.sqrt(np.mean(errors**2)))


def _record_chunk(state, settings, step, chunk: TrainingChunk, fit, mae, rmse, seconds) -> None:
    state["step"] = step + 1
    state["rows_trained"] += chunk.rows_trained
    state["target_sum"] += chunk.target_sum
    state["train_seconds"] += seconds
    state["fit_seconds"] += fit["fit_seconds"]
    state["per_chunk"].append(
        {
            "chunk": step + 1,
            "rows": chunk.rows_read,
            "rows_trained": state["rows_trained"],
            **fit,
            "holdout_mae": mae,
            "holdout_rmse": rmse,
            "seconds": round(seconds, 3),
        }
    )
    if state["best_holdout_mae"] is None or mae < state["best_holdout_mae"]:
        state["best_holdout_mae"], state["chunks_since_best"] = mae, 0
    else:
        state["chunks_since_best"] += 1
    # As Keras' EarlyStopping: stop once `patience` evaluations in a row bring no improvement.
    state["stopped_early"] = state["chunks_since_best"] > 0 and state["chunks_since_best"] >= settings.patience
    state["done"] = state["stopped_early"] or state["step"] == state["chunks_total"]


def _publish(registry: Registry, settings: Settings, data: ProcessedData, holdout: np.ndarray, model, state) -> Run:
    if (registry.root / state["run_id"]).is_dir():
        # Published just before a crash that left the checkpoint behind.
        return registry.get(state["run_id"])
    params = _params(settings, data, holdout, state)
    metrics = _metrics(model, holdout, state)

    def write_run(folder: Path) -> None:
        model.save(folder / "model.keras")
        atomic_write_json(folder / "params.json", params)
        atomic_write_json(folder / "metrics.json", metrics)
        _write_history(folder / "history.csv", state["per_chunk"])
        plot_learning_curve(folder / "learning_curve.png", state["per_chunk"], state["run_id"])

    return registry.publish(state["run_id"], write_run)


def _params(settings: Settings, data: ProcessedData, holdout: np.ndarray, state: dict) -> dict:
    manifest = data.manifest
    return {
        "run_id": state["run_id"],
        "started_at": state["started_at"],
        "finished_at": _now(),
        "parent_run_id": None,
        "hyperparameters": {
            "learning_rate": settings.learning_rate,
            "batch_size": settings.batch_size,
            "epochs": settings.epochs,
            "epochs_per_chunk": settings.epochs,
            "patience": settings.patience,
            "chunk_size": settings.chunk_size,
            "spans_per_chunk": SPANS_PER_CHUNK,
            "seed": settings.seed,
            "architecture": ARCHITECTURE,
            "hidden_units": [100, 50],
            "dropout": 0.1,
            "loss": "mse",
            "optimizer": "adam",
            "metrics": ["mae"],
        },
        "preprocessor_version": manifest["preprocessor_version"],
        "feature_names": list(manifest["feature_names"]),
        "target": manifest["target"],
        "data": {
            "processed_path": str(data.path.resolve()),
            "min_date": manifest.get("min_date"),
            "max_date": manifest.get("max_date"),
            "data_size": manifest.get("data_size"),
            **_pickup_range(data, holdout),
            "rows": data.rows,
            "train_rows": data.rows - len(holdout),
            "validation_rows": len(holdout),
            "test_rows": len(holdout),
            "holdout_rows": len(holdout),
            "holdout_share": data.holdout_share,
            "holdout_max_rows": HOLDOUT_MAX_ROWS,
        },
        "resumed": state["resumes"],
        "versions": _package_versions(),
    }


def _pickup_range(data: ProcessedData, holdout: np.ndarray) -> dict:
    days = holdout[:, data.columns.index("days_since_2009")].astype(np.float64) * 2090
    epoch = dt.datetime(2009, 1, 1, tzinfo=dt.timezone.utc)
    first, last = (epoch + dt.timedelta(days=float(value)) for value in (days.min(), days.max()))
    return {"pickup_first": first.isoformat(timespec="seconds"), "pickup_last": last.isoformat(timespec="seconds")}


def _metrics(model, holdout: np.ndarray, state: dict) -> dict:
    # The model has not changed since the last chunk was scored.
    last = state["per_chunk"][-1]
    mae, rmse = last["holdout_mae"], last["holdout_rmse"]
    train_mean = state["target_sum"] / max(state["rows_trained"], 1)
    baseline_errors = holdout[:, -1].astype(np.float64) - train_mean
    baseline = float(np.mean(np.abs(baseline_errors)))
    return {
        "final": {
            "test_mae": mae,
            "test_rmse": rmse,
            "baseline_test_mae": baseline,
            "baseline_test_rmse": float(np.sqrt(np.mean(baseline_errors**2))),
            "train_mean_fare": train_mean,
            "test_rows": len(holdout),
            "validation_mae": mae,
            "validation_rmse": rmse,
            "passes": 1,
            "holdout_mae": mae,
            "holdout_rmse": rmse,
            "baseline_holdout_mae": baseline,
            "holdout_rows": len(holdout),
            "rows_trained": state["rows_trained"],
            "chunks_trained": state["step"],
            "chunks_total": state["chunks_total"],
            "optimizer_iterations": int(model.optimizer.iterations.numpy()),
            "stopped_early": state["stopped_early"],
            "train_seconds": round(state["train_seconds"], 3),
            "fit_seconds": round(state["fit_seconds"], 3),
        },
        "per_chunk": state["per_chunk"],
        "evaluations": state["per_chunk"],
    }


def _package_versions() -> dict:
    import keras
    import pandas
    import pyarrow
    import tensorflow

    return {
        "python": platform.python_version(),
        "taxifare": __version__,
        "tensorflow": tensorflow.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "pandas": pandas.__version__,
        "pyarrow": pyarrow.__version__,
    }


def _write_history(path: Path, per_chunk: list[dict]) -> None:
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=HISTORY_COLUMNS)
        writer.writeheader()
        writer.writerows(per_chunk)


def plot_learning_curve(path: Path, per_chunk: list[dict], title: str) -> None:
    """Holdout MAE and training MAE per chunk (dollars) above, training loss (MSE) below."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    rows = [entry["rows_trained"] for entry in per_chunk]
    figure, (top, bottom) = pyplot.subplots(2, 1, sharex=True, figsize=(7, 6))
    top.plot(rows, [entry["holdout_mae"] for entry in per_chunk], marker="o", label="holdout MAE")
    top.plot(rows, [entry["mae"] for entry in per_chunk], marker=".", label="training MAE")
    top.set_ylabel("MAE ($)")
    top.legend()
    top.set_title(f"run {title}")
    bottom.plot(rows, [entry["loss"] for entry in per_chunk], marker=".", color="tab:red")
    bottom.set_ylabel("training loss (MSE)")
    bottom.set_xlabel("rows trained")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)


def _log_result(result: TrainResult, state: dict) -> None:
    final = result.run.metrics["final"]
    rows = [
        ("run", result.run.run_id),
        ("registry folder", str(result.run.path)),
        ("rows trained", f"{final['rows_trained']:,}"),
        ("chunks", f"{final['chunks_trained']} of {final['chunks_total']}" + (" (early stop)" if final["stopped_early"] else "")),
        ("epochs per chunk", result.run.params["hyperparameters"]["epochs_per_chunk"]),
        ("holdout rows", f"{final['holdout_rows']:,}"),
        ("holdout MAE", f"${final['holdout_mae']:.3f}"),
        ("holdout RMSE", f"${final['holdout_rmse']:.3f}"),
        ("predict-the-mean MAE", f"${final['baseline_holdout_mae']:.3f}"),
    ]
    if result.resumed_from_chunk is not None:
        rows.append(("resumed", f"after chunk {result.resumed_from_chunk} of {final['chunks_total']}"))
    rows += [
        ("wall time", f"{result.seconds:.1f} s" + (" (this process)" if state["resumes"] else "")),
        ("peak memory", f"{peak_rss_mb():,.0f} MB"),
    ]
    log_summary("train complete", rows)
