"""MLflow tracking: what a train and an evaluate leave in a real MLflow store (SQLite, no network), read
back through MLflow's own client; an unreachable server or a missing extra costs one warning line."""

from __future__ import annotations

import dataclasses
import json
import logging
import socket
import subprocess
import sys

import pytest
from mlflow import MlflowClient

from taxifare.core.config import Settings, load_settings
from taxifare.preprocessing.sink import manifest_path
from taxifare.registry.store import Registry, Run
from taxifare.registry.tracking import REGISTRY_ID_TAG, log_evaluation, log_training
from taxifare.serving.evaluate import evaluate
from taxifare.training.loop import train
from tests.conftest import cli_env, run_cli, write_synthetic_raw
from tests.training_data import processed_demo, with_registry

SMALL = {"chunk_size": 1500, "batch_size": 128, "hidden_units": (32, 16), "learning_rate": 0.005, "members": 1}


@dataclasses.dataclass
class Tracked:
    settings: Settings
    parent: Run
    child: Run  # warm-started from parent
    client: MlflowClient


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return processed_demo(tmp_path_factory.mktemp("demo"), rides=6000)


@pytest.fixture(scope="module")
def tracked(demo, tmp_path_factory) -> Tracked:
    """Two runs trained with one SQLite store: a parent (2 passes, 2 evaluations each) and a warm start."""
    folder = tmp_path_factory.mktemp("tracked")
    settings = with_registry(demo, folder / "registry", mlflow_tracking_uri=f"sqlite:///{folder}/mlflow.db", **SMALL, epochs=2, eval_every=2)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)  # MLflow keeps a SQLite store's artifacts in ./mlruns
        parent = train(settings).run
        child = train(dataclasses.replace(settings, epochs=1), from_run=parent.run_id).run
    return Tracked(settings, parent, child, MlflowClient(settings.mlflow_tracking_uri))


def _mlflow_runs(client: MlflowClient, experiment: str) -> dict:
    """The experiment's MLflow runs by registry id (at most one each)."""
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    runs = client.search_runs([experiment_id])
    by_id = {run.data.tags[REGISTRY_ID_TAG]: run for run in runs}
    assert len(by_id) == len(runs), [run.info.run_name for run in runs]
    return by_id


def test_a_train_logs_one_run_with_settings_stepped_metrics_test_figures_artifacts_and_tags(tracked, tmp_path, demo):
    client, run = tracked.client, tracked.parent
    logged = _mlflow_runs(client, "taxifare-demo")[run.run_id]
    assert logged.info.run_name == run.run_id and logged.info.status == "FINISHED"
    params = logged.data.params
    assert params["learning_rate"] == "0.005" and params["hidden_units"] == "32,16" and params["epochs"] == "2"
    assert params["local_registry_path"] == str(tracked.settings.local_registry_path) and params["tf_config"] == ""
    assert "mlflow_tracking_uri" not in params and "given" not in params
    final = run.metrics["final"]
    assert logged.data.metrics["test_mae"] == pytest.approx(final["test_mae"])
    assert logged.data.metrics["baseline_test_mae"] == pytest.approx(final["baseline_test_mae"])
    evaluations = run.metrics["evaluations"]
    assert len(evaluations) >= 3  # within and after each pass
    for name, field in (("validation_mae", "validation_mae"), ("train_mae", "mae"), ("train_loss", "loss")):
        history = client.get_metric_history(logged.info.run_id, name)
        assert [point.step for point in history] == [entry["evaluation"] for entry in evaluations]
        assert [point.value for point in history] == pytest.approx([entry[field] for entry in evaluations])
    manifest = json.loads(manifest_path(demo.processed_path).read_text())
    tags = logged.data.tags
    assert tags["taxifare.data_set"] == "demo" and tags["taxifare.processed_fingerprint"] == manifest["fingerprint"]
    assert tags["taxifare.preprocessor_version"] == str(run.params["preprocessor_version"])
    assert "taxifare.parent_run_id" not in tags

    assert sorted(item.path for item in client.list_artifacts(logged.info.run_id)) == ["learning_curve.png", "params.json", "processed_manifest.json"]
    client.download_artifacts(logged.info.run_id, "", str(tmp_path))
    assert json.loads((tmp_path / "params.json").read_text()) == run.params
    assert json.loads((tmp_path / "processed_manifest.json").read_text()) == manifest
    assert (tmp_path / "learning_curve.png").read_bytes() == (run.path / "learning_curve.png").read_bytes()

    # Logged again, as a rerun does after a crash before the checkpoint went: the same MLflow run stays.
    log_training(tracked.settings, run, manifest)
    assert _mlflow_runs(client, "taxifare-demo")[run.run_id].info.run_id == logged.info.run_id
    # One cut short (still running) is replaced by a whole one.
    client.update_run(logged.info.run_id, status="RUNNING")
    log_training(tracked.settings, run, manifest)
    again = _mlflow_runs(client, "taxifare-demo")
    assert again[run.run_id].info.status == "FINISHED" and again[run.run_id].info.run_id != logged.info.run_id
    assert again[run.run_id].data.metrics["test_mae"] == pytest.approx(final["test_mae"])


def test_a_warm_start_is_tagged_with_its_parent_and_evaluate_logs_to_the_run_it_scored(tracked, tmp_path):
    logged = _mlflow_runs(tracked.client, "taxifare-demo")
    assert logged[tracked.child.run_id].data.tags["taxifare.parent_run_id"] == tracked.parent.run_id

    rides = write_synthetic_raw(tmp_path / "labelled rides.csv", 1000, seed=3)
    figures = evaluate(tracked.settings, rides, run_spec=tracked.parent.run_id, plot_path=tmp_path / "plot.png")
    parent_id = logged[tracked.parent.run_id].info.run_id
    metrics = tracked.client.get_run(parent_id).data.metrics
    assert metrics["evaluate/labelled_rides.csv/mae"] == pytest.approx(figures.mae)
    assert metrics["evaluate/labelled_rides.csv/rows_scored"] == figures.rows_scored
    artifacts = [item.path for item in tracked.client.list_artifacts(parent_id, "evaluate")]
    assert sorted(artifacts) == ["evaluate/labelled_rides.csv.json", "evaluate/plot.png"]
    child_metrics = tracked.client.get_run(logged[tracked.child.run_id].info.run_id).data.metrics
    assert not any(name.startswith("evaluate/") for name in child_metrics)


def test_the_tracking_settings_come_from_dotenv_beside_mlflows_own_variables(tmp_path, caplog):
    dotenv = tmp_path / ".env"
    dotenv.write_text("MLFLOW_TRACKING_URI=http://127.0.0.1:5000\nMLFLOW_EXPERIMENT_NAME=fares\nMLFLOW_TRACKING_USERNAME=me\n")
    settings = load_settings(environ={}, dotenv_path=dotenv)
    assert (settings.mlflow_tracking_uri, settings.mlflow_experiment_name) == ("http://127.0.0.1:5000", "fares")
    # Not taken for a misspelt MLFLOW_TRACKING_URI; MLflow reads it from the environment, never from .env.
    assert [record.getMessage() for record in caplog.records] == [
        f"{dotenv}:3: MLFLOW_TRACKING_USERNAME is not a taxifare setting; ignored (taxifare does not export .env values)"
    ]


def _untracked_run(tmp_path) -> Run:
    """A run as the registry reads it, enough for the tracking calls to name it."""
    return Run("20260101T000000Z-abcdef", tmp_path, {"data": {"data_size": "demo"}}, {"final": {}})


def test_evaluate_of_a_run_mlflow_does_not_know_is_one_warning(tracked, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="taxifare"):
        log_evaluation(tracked.settings, _untracked_run(tmp_path), {"input": "x.csv"}, str(tmp_path / "plot.png"))
    assert [record.getMessage() for record in caplog.records if record.name == "taxifare"] == [
        f"MLflow tracking at {tracked.settings.mlflow_tracking_uri} failed (experiment 'taxifare-demo' has no run tagged "
        "taxifare.run_id=20260101T000000Z-abcdef; was it trained without tracking?): figures not logged"
    ]


def test_without_the_extra_one_warning_line(demo, tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # what `import mlflow` meets where it is not installed
    settings = dataclasses.replace(demo, mlflow_tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    with caplog.at_level(logging.INFO, logger="taxifare"):
        log_training(settings, _untracked_run(tmp_path), {})
    assert [record.getMessage() for record in caplog.records] == [
        "MLFLOW_TRACKING_URI is set but MLflow is not installed (pip install 'taxifare[mlflow]'): "
        "run 20260101T000000Z-abcdef is in the local registry only"
    ]


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_unreachable_server_costs_one_warning_line_and_the_run_is_kept(demo, tmp_path):
    uri = f"http://127.0.0.1:{_closed_port()}"
    env = cli_env(tmp_path, LOCAL_DATA_PATH=str(demo.local_data_path), MLFLOW_TRACKING_URI=uri)
    # The timeout guards against MLflow's own HTTP retries, which would wait about 4 minutes.
    done = run_cli(tmp_path, "train", "--epochs", "1", "--hidden-units", "16", "--members", "1", "--chunk-size", "1500", env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    runs = Registry(tmp_path / "registry").runs()
    assert [str(run.path) for run in runs] == done.stdout.split()
    mentions = [line for line in done.stderr.splitlines() if "mlflow" in line.lower() or "retr" in line.lower()]
    assert len(mentions) == 1 and " WARNING " in mentions[0], done.stderr[-3000:]
    assert f"MLflow tracking at {uri} failed ([Errno 111] Connection refused): run {runs[0].run_id} is in the local registry only" in mentions[0]
    assert "Traceback" not in done.stderr


FRESH_STORE = """
import logging, sys
from taxifare.cli.main import _configure_logging
from taxifare.core.config import load_settings
from taxifare.registry.store import Run
from taxifare.registry.tracking import log_evaluation
_configure_logging()
settings = load_settings({"data_size": "demo"})
log_evaluation(settings, Run("20260101T000000Z-abcdef", None, {"data": {"data_size": "demo"}}, {}), {}, "")
"""


def test_mlflow_sets_up_a_new_store_without_a_line_of_its_own(tmp_path):
    env = cli_env(tmp_path, MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path}/mlflow.db")
    done = subprocess.run([sys.executable, "-c", FRESH_STORE], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert (tmp_path / "mlflow.db").is_file()
    assert [line.split(" ", 2)[2] for line in done.stderr.splitlines()] == [
        f"WARNING MLflow tracking at sqlite:///{tmp_path}/mlflow.db failed (no experiment 'taxifare-demo'): figures not logged"
    ]


NEVER_IMPORTS_MLFLOW = """
import sys
from taxifare.cli import main
try:
    main(["train", "--help"])
except SystemExit:
    pass
from taxifare.core.config import load_settings
from taxifare.registry.tracking import log_evaluation, log_training
settings = load_settings()
log_training(settings, None, {})
log_evaluation(settings, None, {}, "")
print("mlflow" in sys.modules)
"""


def test_without_the_setting_mlflow_is_never_imported(tmp_path):
    done = subprocess.run([sys.executable, "-c", NEVER_IMPORTS_MLFLOW], cwd=tmp_path, env=cli_env(tmp_path), capture_output=True, text=True)
    assert done.stdout.splitlines()[-1] == "False", done.stderr[-2000:]
