"""What a finished training run leaves behind: its registry folder (model, params, metrics, history,
learning curve) and the summary in the log. The reported figures are the test set's, scored once with
the published (best) weights, beside the predict-the-mean baseline; validation figures are kept too."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import logging
import platform
import re
from pathlib import Path

import numpy as np

from taxifare import __version__
from taxifare.core.config import Settings
from taxifare.core.files import atomic_write_json
from taxifare.core.progress import log_summary, peak_rss_mb
from taxifare.model.network import HUBER_DELTA, predict_fares
from taxifare.model.spec import ModelSpec
from taxifare.registry.store import SAMPLE_FILE, Registry, Run
from taxifare.rides.features import DAYS_SCALE, FEATURE_NAMES
from taxifare.training.data import SPANS_PER_CHUNK, PreparedRows, ProcessedData
from taxifare.training.splits import TrainingRowSample, comparable_group, split_definition
from taxifare.training.state import Evaluation, Position, TrainingState

log = logging.getLogger("taxifare")

HISTORY_COLUMNS = tuple(field.name for field in dataclasses.fields(Evaluation))
_EPOCH_2009 = dt.datetime(2009, 1, 1, tzinfo=dt.timezone.utc)
_DAYS_COLUMN = FEATURE_NAMES.index("days_since_2009")
SYNTHETIC_KEY = b"synthetic-"  # how every key of `taxifare demo-data` (demo.py) starts


def fare_errors(model, rows: np.ndarray) -> tuple[float, float]:
    """MAE and RMSE in dollars of the model on `rows` (features, then the fare)."""
    errors = predict_fares(model, rows[:, :-1]) - rows[:, -1].astype(np.float64)
    return float(np.mean(np.abs(errors))), float(np.sqrt(np.mean(errors**2)))


def publish_run(registry: Registry, settings: Settings, data: ProcessedData, prepared: PreparedRows, model, state: TrainingState, parent: Run | None) -> Run:
    """Score the model (holding its best weights) on the test rows and publish the run."""
    if (registry.root / state.run_id).is_dir():
        # Published just before a crash that left the checkpoint behind.
        return registry.get(state.run_id)
    sample, covers_parents = _training_sample(prepared, parent)
    params = _params(settings, data, prepared, state, parent)
    params["data"]["training_sample"] = {"file": SAMPLE_FILE, "rows": len(sample.keys), "complete": sample.complete, "covers_parents": covers_parents}
    metrics = _metrics(model, prepared, state)

    def write_run(folder: Path) -> None:
        model.save(folder / "model.keras")
        sample.save(folder / SAMPLE_FILE)
        atomic_write_json(folder / "params.json", params)
        atomic_write_json(folder / "metrics.json", metrics)
        _write_history(folder / "history.csv", state.evaluations)
        plot_learning_curve(folder / "learning_curve.png", state.evaluations, state.run_id)

    return registry.publish(state.run_id, write_run)


def _training_sample(prepared: PreparedRows, parent: Run | None) -> tuple[TrainingRowSample, bool]:
    """The sample of this run's training rows merged with its parent's (which holds the grandparent's), and
    whether every ancestor's rows are in it (not when a parent was trained by an older taxifare)."""
    sample = TrainingRowSample(prepared.sample.keys.copy(), prepared.sample.threshold)
    if parent is None:
        return sample, True
    recorded = parent.params["data"].get("training_sample")
    if not recorded or not (parent.path / SAMPLE_FILE).is_file():
        log.warning("parent run %s keeps no sample of its training rows (an older taxifare trained it): evaluate will not recognise them", parent.run_id)
        return sample, False
    sample.merge(TrainingRowSample.load(parent.path / SAMPLE_FILE))
    return sample, bool(recorded.get("covers_parents"))


def pickup_range(data: ProcessedData, prepared: PreparedRows, parent: Run | None) -> tuple[dt.datetime, dt.datetime]:
    """The first and last pickup of the processed data (with a parent's, for a warm start), New York wall
    clock without a zone: as preprocess parsed them, or, for a file made by an older taxifare, from the date
    feature (within ~10 s). The run's training window: recorded in its params, and its model holds the date
    feature within it."""
    recorded = data.manifest.get("pickup_first"), data.manifest.get("pickup_last")
    if all(recorded):
        first, last = (dt.datetime.fromisoformat(text) for text in recorded)
    else:
        days = prepared.statistics.minimum[_DAYS_COLUMN], prepared.statistics.maximum[_DAYS_COLUMN]
        first, last = (_EPOCH_2009 + dt.timedelta(days=float(value) * DAYS_SCALE) for value in days)
    if parent is not None and parent.params.get("data", {}).get("pickup_first"):
        first = min(_naive(first), _naive(dt.datetime.fromisoformat(parent.params["data"]["pickup_first"])))
        last = max(_naive(last), _naive(dt.datetime.fromisoformat(parent.params["data"]["pickup_last"])))
    return _naive(first), _naive(last)


def _naive(moment: dt.datetime) -> dt.datetime:
    """Without a zone, as the parsed pickups are (a zoned time recorded by an older taxifare is UTC)."""
    return moment.astimezone(dt.timezone.utc).replace(tzinfo=None) if moment.tzinfo else moment


def synthetic_rides(manifest: dict) -> bool | None:
    """Whether the processed data was made from `taxifare demo-data`'s synthetic rides: the first lines
    of its raw files hold a key that starts with "synthetic-". None when no raw file can be read."""
    raw = manifest.get("raw") or {}
    if raw.get("kind") == "bigquery":
        return False
    answers = []
    for file in raw.get("files") or []:
        try:
            with open(file["path"], "rb") as opened:
                head = opened.read(1 << 16).splitlines()[:2]
        except (OSError, KeyError, TypeError):
            continue
        fields = [field.strip(b'"') for line in head for field in re.split(rb"[,;\t|]", line)]
        answers.append(any(field.startswith(SYNTHETIC_KEY) for field in fields))
    return any(answers) if answers else None


def _params(settings: Settings, data: ProcessedData, prepared: PreparedRows, state: TrainingState, parent: Run | None) -> dict:
    manifest = data.manifest
    spec = ModelSpec.of(settings)
    pickup_first, pickup_last = (moment.isoformat(timespec="seconds") for moment in pickup_range(data, prepared, parent))
    return {
        "run_id": state.run_id,
        "started_at": state.started_at,
        # To the microsecond, so that `latest` orders runs finished within the same second.
        "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds"),
        "parent_run_id": state.parent_run_id,
        "hyperparameters": {
            "learning_rate": settings.learning_rate,
            "batch_size": settings.batch_size,
            "epochs": settings.epochs,
            "patience": settings.patience,
            "lr_patience": settings.lr_patience,
            "eval_every": settings.eval_every,
            "chunk_size": settings.chunk_size,
            "spans_per_chunk": SPANS_PER_CHUNK,
            "seed": settings.seed,
            "hidden_units": list(spec.hidden_units),
            "dropout": spec.dropout,
            "members": spec.members,
            "member_designs": spec.member_designs(),
            "flat_fares": list(spec.flat_fares),
            "meter_steps": spec.meter_steps,
            "loss": spec.loss,
            "huber_delta": HUBER_DELTA if spec.loss == "huber" else None,
            "architecture": spec.describe(),
            "optimizer": "adam",
        },
        "preprocessor_version": manifest["preprocessor_version"],
        "feature_names": list(manifest["feature_names"]),
        "target": manifest["target"],
        "data": {
            "processed_path": str(data.path.resolve()),
            "data_size": manifest.get("data_size"),
            "source": manifest.get("source"),
            "raw": manifest.get("raw"),
            "min_date": manifest.get("min_date"),
            "max_date": manifest.get("max_date"),
            "pickup_first": pickup_first,
            "pickup_last": pickup_last,
            "rows": data.rows,
            "train_rows": prepared.train_rows,
            "validation_rows": len(prepared.validation),
            "test_rows": len(prepared.test),
            "comparable_group": comparable_group(manifest),
            "synthetic": synthetic_rides(manifest),
        },
        "split": {**split_definition(), "left_out_rows": prepared.left_out},
        "resumed": state.resumes,
        "versions": _package_versions(),
    }


def _metrics(model, prepared: PreparedRows, state: TrainingState) -> dict:
    test_mae, test_rmse = fare_errors(model, prepared.test)
    mean_fare = float(prepared.statistics.mean[-1])
    baseline = prepared.test[:, -1].astype(np.float64) - mean_fare
    best = next(entry for entry in state.evaluations if entry.evaluation == state.best_evaluation)
    return {
        "final": {
            "test_mae": test_mae,
            "test_rmse": test_rmse,
            "baseline_test_mae": float(np.mean(np.abs(baseline))),
            "baseline_test_rmse": float(np.sqrt(np.mean(baseline**2))),
            "train_mean_fare": mean_fare,
            "test_rows": len(prepared.test),
            "validation_mae": best.validation_mae,
            "validation_rmse": best.validation_rmse,
            "validation_rows": len(prepared.validation),
            "best_evaluation": best.evaluation,
            "best_pass": best.pass_number,
            "evaluations": len(state.evaluations),
            "rows_trained": state.rows_trained,
            "chunks_trained": state.chunks_trained,
            "passes": state.passes_started,
            "stopped_early": state.stopped_early,
            "final_learning_rate": state.learning_rate,
            "optimizer_iterations": int(model.optimizer.iterations.numpy()),
            "train_seconds": round(state.train_seconds, 3),
            "fit_seconds": round(state.fit_seconds, 3),
        },
        "evaluations": [dataclasses.asdict(entry) for entry in state.evaluations],
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


def _write_history(path: Path, evaluations: list[Evaluation]) -> None:
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=HISTORY_COLUMNS)
        writer.writeheader()
        writer.writerows(dataclasses.asdict(entry) for entry in evaluations)


def plot_learning_curve(path: Path, evaluations: list[Evaluation], title: str) -> None:
    """Validation and training MAE per evaluation (dollars) above, the best marked; the learning rate below."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    rows = [entry.rows_trained for entry in evaluations]
    figure, (top, bottom) = pyplot.subplots(2, 1, sharex=True, figsize=(7, 6), height_ratios=(3, 1))
    top.plot(rows, [entry.validation_mae for entry in evaluations], marker="o", markersize=3, label="validation MAE")
    top.plot(rows, [entry.mae for entry in evaluations], marker=".", markersize=3, label="training MAE (last chunk)")
    best = [entry for entry in evaluations if entry.best][-1:]
    top.scatter([entry.rows_trained for entry in best], [entry.validation_mae for entry in best], s=80, facecolors="none", edgecolors="black", label="published (best)", zorder=3)
    top.set_ylabel("MAE ($)")
    top.legend()
    top.set_title(f"run {title}")
    bottom.step(rows, [entry.learning_rate for entry in evaluations], where="post", color="tab:red")
    bottom.set_yscale("log")
    bottom.set_ylabel("learning rate")
    bottom.set_xlabel("rows trained (row-epochs)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)


def log_result(run: Run, resumed_at: Position | None, seconds: float) -> None:
    final, hyper, data = run.metrics["final"], run.params["hyperparameters"], run.params["data"]
    stop = " (early stop)" if final["stopped_early"] else ""
    rows = [
        ("run", run.run_id),
        ("registry folder", str(run.path)),
        ("continued from", run.params["parent_run_id"] or "-"),
        ("rows (train / validation / test)", f"{data['train_rows']:,} / {data['validation_rows']:,} / {data['test_rows']:,}"),
        ("passes", f"{final['passes']} of at most {hyper['epochs']}{stop}; best at pass {final['best_pass']}"),
        ("rows trained", f"{final['rows_trained']:,}"),
        ("learning rate", f"{hyper['learning_rate']:g} -> {final['final_learning_rate']:g}"),
        ("validation MAE", f"${final['validation_mae']:.3f}"),
        ("test MAE", f"${final['test_mae']:.3f}"),
        ("test RMSE", f"${final['test_rmse']:.3f}"),
        ("predict-the-mean test MAE", f"${final['baseline_test_mae']:.3f}"),
    ]
    if resumed_at is not None:
        rows.append(("resumed", f"at pass {resumed_at.pass_index + 1}, chunk {resumed_at.chunk + 1}"))
    rows += [
        ("wall time", f"{seconds:.1f} s" + (" (this process)" if run.params["resumed"] else "")),
        ("peak memory", f"{peak_rss_mb():,.0f} MB"),
    ]
    log_summary("train complete", rows)
