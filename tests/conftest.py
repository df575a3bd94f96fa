"""Shared test helpers: real data location, tiny CSV writers, and running the CLI as a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fake_bigquery import FakeBigQuery

REPO = Path(__file__).resolve().parents[1]
REAL_DATA = REPO.parent / "shared" / "data" / "nyc-taxi"
RAW_HEADER = "key,fare_amount,pickup_datetime,pickup_longitude,pickup_latitude,dropoff_longitude,dropoff_latitude,passenger_count"
REFERENCE_ROW = "k0,7.5,2013-07-06 17:18:00 UTC,-73.950655,40.783282,-73.984365,40.769802,1"


def real_file(name: str) -> Path:
    path = REAL_DATA / name
    if not path.is_file():
        pytest.skip(f"real data sample {path} is absent")
    return path


@pytest.fixture
def real_1k() -> Path:
    return real_file("lewagon-train_1k_ouic.csv")


@pytest.fixture
def real_10k() -> Path:
    return real_file("lewagon-train_10k_ouic.csv")


def write_csv(path: Path, lines: list[str], header: str = RAW_HEADER, newline: str = "\n") -> Path:
    path.write_text(newline.join([header, *lines]) + newline, encoding="utf-8")
    return path


def cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A clean environment for the CLI: the repo on the path, data and registry in tmp, no stray config.

    No Google credentials can be found (an empty gcloud folder, no metadata-server probe), so nothing
    ever reaches the real BigQuery.
    """
    env = {key: value for key, value in os.environ.items() if key not in _CONFIG_VARIABLES}
    env.update(
        PYTHONPATH=str(REPO),
        HOME=str(tmp_path),
        CLOUDSDK_CONFIG=str(tmp_path / "gcloud"),
        NO_GCE_CHECK="true",
        LOCAL_DATA_PATH=str(tmp_path / "data"),
        LOCAL_REGISTRY_PATH=str(tmp_path / "registry"),
        TF_CPP_MIN_LOG_LEVEL="2",
    )
    env.update(extra)
    return env


_CONFIG_VARIABLES = {
    "MIN_DATE", "MAX_DATE", "DATA_SIZE", "CHUNK_SIZE", "LOCAL_DATA_PATH", "LOCAL_REGISTRY_PATH", "GCP_PROJECT",
    "GCP_PROJECT_DATA", "BQ_DATASET", "BIGQUERY_EMULATOR_HOST", "BQ_DEADLINE", "LEARNING_RATE", "BATCH_SIZE",
    "EPOCHS", "PATIENCE", "LR_PATIENCE", "EVAL_EVERY", "HIDDEN_UNITS", "DROPOUT", "LOSS", "SEED", "GOOGLE_APPLICATION_CREDENTIALS",
    "TF_CONFIG", "COLLECTIVE_TIMEOUT", "DASK_SCHEDULER_ADDRESS", "DASK_WORKERS",
}


def run_cli(tmp_path: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 300, **kwargs):
    """`taxifare ARGS` in a subprocess, from tmp_path (so no .env of the repo is read)."""
    return subprocess.run(
        [sys.executable, "-m", "taxifare", *args],
        cwd=kwargs.pop("cwd", tmp_path),
        env=env or cli_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


def assert_clean_error(result, exit_code: int, *fragments: str) -> None:
    """One readable error line on stderr, the expected exit code, never a traceback."""
    assert result.returncode == exit_code, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("taxifare: ")]
    assert len(errors) == 1, result.stderr[-2000:]
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


@pytest.fixture
def fake_bigquery():
    """A fake BigQuery REST server on 127.0.0.1 with no tables yet; see tests/fake_bigquery.py."""
    server = FakeBigQuery().start()
    yield server
    server.stop()
