"""MLflow tracking, the optional extra `taxifare[mlflow]`: the local registry seen in a team's MLflow.

With MLFLOW_TRACKING_URI set, every published training run becomes one MLflow run named after its
registry id, in experiment MLFLOW_EXPERIMENT_NAME (default `taxifare-<data set>`): the settings as
params; train loss and MAE, validation MAE and RMSE, learning rate and rows trained per evaluation
(step = evaluation number); the final test figures; the learning curve, the registry's params.json and
the processed manifest as artifacts; tags for the data set, processed fingerprint, preprocessor version
and warm-start parent. `evaluate` adds its figures and plot to the MLflow run of the run it scored.

The registry stays the source of truth: a failure here (no extra installed, a server down) is one
warning line and never fails the command. MLflow is imported only here, and only with the setting given.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import os
import re
import time
import urllib.parse
import warnings
from typing import Callable

from taxifare.core.config import Settings
from taxifare.core.errors import first_line
from taxifare.registry.store import Run

log = logging.getLogger("taxifare")

REGISTRY_ID_TAG = "taxifare.run_id"
# MLflow's own settings, unless the environment gives them. Its HTTP client retries an unreachable server
# 7 times with doubling waits, about 4 minutes, and waits 120 s for an answer: taxifare gives up within
# seconds. And it prints a link to each finished run on stdout, where the command's results go.
_MLFLOW_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}
# metrics.json "evaluations" field -> MLflow metric logged at each evaluation's step.
_STEPPED_METRICS = {
    "loss": "train_loss",
    "mae": "train_mae",
    "validation_mae": "validation_mae",
    "validation_rmse": "validation_rmse",
    "learning_rate": "learning_rate",
    "rows_trained": "rows_trained",
}
# metrics.json "final" field -> MLflow metric. The validation figures are the published (best) evaluation's.
_FINAL_METRICS = {
    "test_mae": "test_mae",
    "test_rmse": "test_rmse",
    "baseline_test_mae": "baseline_test_mae",
    "baseline_test_rmse": "baseline_test_rmse",
    "validation_mae": "best_validation_mae",
    "validation_rmse": "best_validation_rmse",
    "train_mean_fare": "train_mean_fare",
    "train_seconds": "train_seconds",
}
_EVALUATION_METRICS = ("mae", "rmse", "median_absolute_error", "baseline_mae", "baseline_rmse", "rows_read", "rows_scored", "outside_training_window")
_SETTINGS_NOT_LOGGED = {"given", "mlflow_tracking_uri"}  # not a setting; may hold credentials
_BATCH = 1000  # MLflow's limit of metrics per log_batch call


class TrackingError(Exception):
    """Something the tracking server holds is not as taxifare needs it (said in the warning line)."""


def log_training(settings: Settings, run: Run, manifest: dict) -> None:
    """Log a published run (trained on the processed file of `manifest`) as one MLflow run; once only."""
    if settings.mlflow_tracking_uri:
        _tracked(settings, f"run {run.run_id} is in the local registry only", lambda client: _log_training(client, settings, run, manifest))


def log_evaluation(settings: Settings, run: Run, figures: dict, plot_path: str) -> None:
    """Add an evaluation's figures (`evaluate.Evaluation.to_dict()`) and plot to the MLflow run of `run`."""
    if settings.mlflow_tracking_uri:
        _tracked(settings, "figures not logged", lambda client: _log_evaluation(client, settings, run, figures, plot_path))


def _tracked(settings: Settings, consequence: str, action: Callable) -> None:
    verbose = log.getEffectiveLevel() <= logging.DEBUG
    for name, value in _MLFLOW_DEFAULTS.items():
        os.environ.setdefault(name, value)
    with warnings.catch_warnings():
        if not verbose:
            warnings.simplefilter("ignore")  # MLflow's deprecation and future warnings
        try:
            import mlflow
        except ImportError:
            log.warning("MLFLOW_TRACKING_URI is set but MLflow is not installed (pip install 'taxifare[mlflow]'): %s", consequence)
            return
        if not verbose:
            # MLflow's own lines (setting up a new store's tables, retries, errors it also raises), which it
            # configures on import; the one warning line is taxifare's.
            logging.getLogger("mlflow").setLevel(logging.CRITICAL)
        try:
            action(mlflow.MlflowClient(tracking_uri=settings.mlflow_tracking_uri))
        except Exception as error:  # whatever MLflow, its store or the network raise: the command's result stands
            log.debug("MLflow tracking failed", exc_info=True)
            log.warning("MLflow tracking at %s failed (%s): %s", _shown_uri(settings.mlflow_tracking_uri), _reason(error), consequence)


def _shown_uri(uri: str) -> str:
    """The URI without a password (`https://user:secret@host` -> `https://user@host`)."""
    parts = urllib.parse.urlsplit(uri)
    if parts.password is None:
        return uri
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", "@", 1)).geturl()


def _reason(error: Exception) -> str:
    """The operating system's words where the network failed (`[Errno 111] Connection refused`), else
    the exception's first line, shortened: MLflow's own messages quote whole URLs and retry policies."""
    text = first_line(error)
    errno = re.search(r"\[Errno -?\d+\] [^'\")]+", text)
    if errno:
        return errno.group(0).strip()
    return text if len(text) <= 200 else text[:197] + "..."


def _experiment(client, settings: Settings, run: Run, create: bool):
    name = settings.mlflow_experiment_name or f"taxifare-{run.data_size}"
    experiment = client.get_experiment_by_name(name)
    if experiment is None and create:
        try:
            return client.get_experiment(client.create_experiment(name))
        except Exception:  # another train created it in the meantime, or the error stands
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
    if experiment is None:
        raise TrackingError(f"no experiment {name!r}")
    if experiment.lifecycle_stage != "active":
        raise TrackingError(f"experiment {name!r} is deleted; restore it or set MLFLOW_EXPERIMENT_NAME")
    return experiment


def _find_run(client, experiment, registry_id: str):
    """The MLflow run logged for registry run `registry_id`, or None."""
    found = client.search_runs([experiment.experiment_id], filter_string=f"tags.`{REGISTRY_ID_TAG}` = '{registry_id}'", max_results=1)
    return found[0] if found else None


def _log_training(client, settings: Settings, run: Run, manifest: dict) -> None:
    experiment = _experiment(client, settings, run, create=True)
    logged = _find_run(client, experiment, run.run_id)
    if logged is not None and logged.info.status == "FINISHED":
        return  # a rerun after a crash between this and the checkpoint's removal
    if logged is not None:
        client.delete_run(logged.info.run_id)  # cut short: logged again in full
    created = client.create_run(experiment.experiment_id, start_time=_milliseconds(run.params["started_at"]), tags=_tags(run, manifest), run_name=run.run_id)
    mlflow_id = created.info.run_id
    try:
        client.log_batch(mlflow_id, params=_params(settings))
        metrics = _training_metrics(run)
        for start in range(0, len(metrics), _BATCH):
            client.log_batch(mlflow_id, metrics=metrics[start : start + _BATCH])
        client.log_artifact(mlflow_id, str(run.path / "learning_curve.png"))
        client.log_artifact(mlflow_id, str(run.path / "params.json"))
        client.log_dict(mlflow_id, manifest, "processed_manifest.json")
    except BaseException:
        with contextlib.suppress(Exception):
            client.set_terminated(mlflow_id, "FAILED")
        raise
    client.set_terminated(mlflow_id, "FINISHED", end_time=_milliseconds(run.finished_at))
    log.info("logged to MLflow: %s", _run_location(settings.mlflow_tracking_uri, experiment, mlflow_id))


def _run_location(uri: str, experiment, mlflow_id: str) -> str:
    """The run's page on an MLflow server, or where it is in a store."""
    shown = _shown_uri(uri)
    if shown.startswith(("http://", "https://")):
        return f"{shown.rstrip('/')}/#/experiments/{experiment.experiment_id}/runs/{mlflow_id}"
    return f"{shown}, experiment {experiment.name}, run {mlflow_id}"


def _tags(run: Run, manifest: dict) -> dict[str, str]:
    tags = {
        REGISTRY_ID_TAG: run.run_id,
        "taxifare.data_set": run.data_size,
        "taxifare.processed_fingerprint": str(manifest.get("fingerprint")),
        "taxifare.preprocessor_version": str(run.params.get("preprocessor_version")),
        "taxifare.registry_path": str(run.path),
        "mlflow.source.name": "taxifare train",
        "mlflow.source.type": "LOCAL",
    }
    if run.parent_run_id:
        tags["taxifare.parent_run_id"] = run.parent_run_id
    return tags


def _params(settings: Settings) -> list:
    from mlflow.entities import Param

    def text(value) -> str:
        if value is None:
            return ""
        if isinstance(value, tuple):
            return ",".join(str(item) for item in value)
        return value.isoformat() if isinstance(value, dt.datetime) else str(value)

    return [Param(field.name, text(getattr(settings, field.name))) for field in dataclasses.fields(settings) if field.name not in _SETTINGS_NOT_LOGGED]


def _training_metrics(run: Run) -> list:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = [
        Metric(name, float(entry[field]), now, int(entry["evaluation"]))
        for entry in run.metrics.get("evaluations", [])
        for field, name in _STEPPED_METRICS.items()
        if entry.get(field) is not None
    ]
    final = run.metrics["final"]
    metrics += [Metric(name, float(final[field]), now, 0) for field, name in _FINAL_METRICS.items() if isinstance(final.get(field), (int, float))]
    return metrics


def _log_evaluation(client, settings: Settings, run: Run, figures: dict, plot_path: str) -> None:
    from mlflow.entities import Metric

    experiment = _experiment(client, settings, run, create=False)
    logged = _find_run(client, experiment, run.run_id)
    if logged is None:
        raise TrackingError(f"experiment {experiment.name!r} has no run tagged {REGISTRY_ID_TAG}={run.run_id}; was it trained without tracking?")
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", os.path.basename(figures["input"])) or "input"
    now = int(time.time() * 1000)
    metrics = [Metric(f"evaluate/{name}/{key}", float(figures[key]), now, 0) for key in _EVALUATION_METRICS]
    mlflow_id = logged.info.run_id
    client.log_batch(mlflow_id, metrics=metrics)
    client.log_dict(mlflow_id, figures, f"evaluate/{name}.json")
    client.log_artifact(mlflow_id, plot_path, "evaluate")
    log.info("logged the evaluation to MLflow: %s", _run_location(settings.mlflow_tracking_uri, experiment, mlflow_id))


def _milliseconds(iso_time: str) -> int:
    return int(dt.datetime.fromisoformat(iso_time).timestamp() * 1000)
