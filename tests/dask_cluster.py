"""A real Dask cluster on 127.0.0.1 for the tests: a `dask scheduler` and `dask worker` processes."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

START_TIMEOUT_S = 60


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class DaskCluster:
    """`dask scheduler` and single-threaded `dask worker` processes (no nanny, so a killed worker stays dead)."""

    def __init__(self, folder: Path, env: dict[str, str]):
        self.folder = folder
        self.env = env
        self.address = f"tcp://127.0.0.1:{free_port()}"
        self.scheduler: subprocess.Popen | None = None
        self.workers: dict[str, subprocess.Popen] = {}

    def start(self, workers: int) -> "DaskCluster":
        port = self.address.rsplit(":", 1)[1]
        self.scheduler = self._spawn("scheduler", "scheduler", "--host", "127.0.0.1", "--port", port, "--no-dashboard")
        for number in range(workers):
            self.start_worker(f"worker-{number}")
        self.wait_for_workers(workers)
        return self

    def start_worker(self, name: str) -> None:
        self.workers[name] = self._spawn(
            name, "worker", self.address, "--name", name, "--nthreads", "1", "--no-nanny", "--no-dashboard",
            "--host", "127.0.0.1", "--local-directory", str(self.folder / name), "--death-timeout", "60",
        )

    def kill_worker(self, name: str) -> None:
        process = self.workers.pop(name)
        process.kill()
        process.wait(timeout=START_TIMEOUT_S)

    def wait_for_workers(self, count: int) -> None:
        from distributed import Client

        with Client(self.address, timeout=START_TIMEOUT_S) as client:
            client.wait_for_workers(count, timeout=START_TIMEOUT_S)
            deadline = time.monotonic() + START_TIMEOUT_S
            while len(client.nthreads()) != count and time.monotonic() < deadline:
                time.sleep(0.1)  # a killed worker may still be listed for a moment
            assert len(client.nthreads()) == count, client.nthreads()

    def wait_until_idle(self) -> None:
        """Until no worker runs a task: those of a killed client run to their end."""
        from distributed import Client

        with Client(self.address, timeout=START_TIMEOUT_S) as client:
            deadline = time.monotonic() + START_TIMEOUT_S
            while any(client.processing().values()) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not any(client.processing().values()), client.processing()

    def stop(self) -> None:
        # Killed outright: a worker's graceful shutdown waits seconds for the scheduler.
        for process in [*self.workers.values(), self.scheduler]:
            if process is not None:
                process.kill()
                process.wait(timeout=START_TIMEOUT_S)

    def _spawn(self, name: str, *args: str) -> subprocess.Popen:
        log = (self.folder / f"{name}.log").open("ab")
        return subprocess.Popen([sys.executable, "-m", "dask", *args], env=self.env, stdout=log, stderr=log)
