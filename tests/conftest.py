"""Shared test helpers: real data location, tiny CSV writers, and running the CLI as a real subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

from taxifare.sources.demo import demo_rides
from tests.fake_bigquery import FakeBigQuery

REPO = Path(__file__).resolve().parents[1]
# The real samples are extras: every test that reads them also runs on synthetic rides. Point
# TAXIFARE_REAL_DATA at a missing folder to run the suite as a checkout without ../shared does.
REAL_DATA = Path(os.environ.get("TAXIFARE_REAL_DATA", REPO.parent / "shared" / "data" / "nyc-taxi"))
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


@pytest.fixture
def real_102k() -> Path:
    """102,827 lines, 49k of them exact duplicates of others."""
    return real_file("cab-fare-ashutoshgalinde_train.csv")


# Lines of kinds `taxifare demo-data` never writes: too few fields, a fare that is no number, a day
# that does not exist.
DIRTY_LINES = (
    "dirt-1,7.5,2013-07-06 17:18:00 UTC,-73.95,40.78",
    "dirt-2,abc,2013-07-06 17:18:00 UTC,-73.95,40.78,-73.98,40.76,1",
    "dirt-3,7.5,2013-02-30 10:00:00 UTC,-73.95,40.78,-73.98,40.76,1",
)


def write_synthetic_raw(path: Path, lines: int, seed: int = 7) -> Path:
    """A raw CSV of exactly `lines` data lines: synthetic rides from `taxifare demo-data`, with its share
    of dirty rows and exact duplicates spread through the file, and the DIRTY_LINES among them."""
    body = demo_rides(lines, seed).head(lines - len(DIRTY_LINES)).to_csv(index=False).splitlines()
    header, rows = body[0], body[1:]
    for number, dirt in enumerate(DIRTY_LINES, start=1):
        rows.insert(number * len(rows) // (len(DIRTY_LINES) + 1), dirt)
    return write_csv(path, rows, header=header)


@pytest.fixture(scope="session")
def synthetic_1k(tmp_path_factory) -> Path:
    return write_synthetic_raw(tmp_path_factory.mktemp("synthetic") / "synthetic_1k.csv", 1000)


@pytest.fixture(scope="session")
def synthetic_10k(tmp_path_factory) -> Path:
    return write_synthetic_raw(tmp_path_factory.mktemp("synthetic") / "synthetic_10k.csv", 10_000)


@pytest.fixture(params=["synthetic", "real"])
def rides_1k(request) -> Path:
    """1,000 raw lines: synthetic rides, then the real sample (skipped where ../shared is absent)."""
    return request.getfixturevalue(f"{request.param}_1k")


@pytest.fixture(params=["synthetic", "real"])
def rides_10k(request) -> Path:
    """10,000 raw lines: synthetic rides, then the real sample (skipped where ../shared is absent)."""
    return request.getfixturevalue(f"{request.param}_10k")


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
    "TF_CONFIG", "COLLECTIVE_TIMEOUT", "DASK_SCHEDULER_ADDRESS", "DASK_WORKERS", "UTC_LABEL", "MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME",
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


def stop_when(process: subprocess.Popen, reached: Callable[[], object], timeout: float = 120) -> bool:
    """Wait until `reached()` holds, then freeze `process` with SIGSTOP, so that what it has left on disk
    can be read while it makes no more progress. False when it exited first.

    The caller then kills it (SIGKILL works on a stopped process) or lets it go on with SIGCONT.
    """
    deadline = time.monotonic() + timeout
    while not reached():
        if process.poll() is not None:
            return False
        assert time.monotonic() < deadline, f"not reached within {timeout} s"
        time.sleep(0.002)
    os.kill(process.pid, signal.SIGSTOP)
    _, status = os.waitpid(process.pid, os.WUNTRACED)
    if os.WIFSTOPPED(status):
        return True
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, so Popen cannot
    return False


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
