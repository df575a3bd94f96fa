"""The Dask cluster that preprocess runs on: an existing scheduler, or local worker processes."""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from contextlib import contextmanager
from typing import Iterator

from taxifare.core.config import Settings
from taxifare.core.errors import InputError, TaxifareError, first_line

log = logging.getLogger("taxifare")

CONNECT_TIMEOUT_S = 10


def require_dask() -> None:
    """Fail with one line, before any work, when the optional Dask extra is not installed."""
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise InputError("--scheduler and --workers need Dask, an optional extra: pip install 'taxifare[dask]'") from None


# The local cluster's workers are forked from this process, which has imported everything they run:
# they start in a fraction of a second instead of several, and keep glibc's malloc defaults (a spawned
# worker gets Dask's MALLOC_TRIM_THRESHOLD_=65536, which here costs four times the page faults and
# about a fifth more CPU). Their statistical profiler (a stack sample every 10 ms, for the dashboard,
# which this cluster does not serve) costs about 7% more. The event loops' housekeeping is slowed from
# tens of milliseconds to a second or more: the blocked-loop check, the dashboard's system monitor and
# the memory monitor cost a tenth of a core in all at their defaults, a fiftieth at these, on cores that
# the scans need. A worker is sent its next scan only when it starts it (saturation 1.0, not 1.1), so
# that the small tasks that a finished scan makes ready go first (see pipeline.py).
_LOCAL_WORKER_CONFIG = {
    "distributed.scheduler.worker-saturation": 1.0,
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "5s",
    "distributed.worker.memory.monitor-interval": "1s",
}


@dataclasses.dataclass(frozen=True)
class Cluster:
    client: object  # distributed.Client
    address: str
    workers: int
    threads: int


@contextmanager
def cluster_for(settings: Settings) -> Iterator[Cluster]:
    """A client of the scheduler at DASK_SCHEDULER_ADDRESS, or of a local cluster of `workers` processes."""
    import dask
    import distributed

    from taxifare.preprocessing.dask.worker_setup import ArrowThreads, QuietWhileClosing

    if settings.dask_scheduler_address and settings.workers:
        raise InputError("pass either --scheduler (DASK_SCHEDULER_ADDRESS) or --workers (DASK_WORKERS), not both")
    if settings.workers:
        # One thread per worker process: the pipeline holds the GIL for much of each chunk.
        # No dashboard; the scheduler's small HTTP server (health checks) still starts, on a free port
        # rather than 8787, which another cluster on this machine may hold.
        # Forked, unless this process has loaded Polars (it wrote processed rows in this process before):
        # Polars' thread pool does not survive a fork, and a forked worker would wait on it forever.
        start = {"distributed.worker.multiprocessing-method": "spawn" if "polars" in sys.modules else "fork"}
        with _workers_in_a_group_of_their_own(), dask.config.set({**_LOCAL_WORKER_CONFIG, **start}), distributed.LocalCluster(
            n_workers=settings.workers, threads_per_worker=1, processes=True, dashboard_address=None,
            scheduler_kwargs={"dashboard_address": ":0"},
        ) as local, distributed.Client(local) as client:
            client.register_plugin(ArrowThreads())
            client.register_plugin(QuietWhileClosing())
            yield _described(client)
        return
    with _connected(settings.dask_scheduler_address) as client:
        yield _described(client)


_forking_workers = False


def _own_process_group() -> None:
    if _forking_workers:
        os.setpgid(0, 0)


os.register_at_fork(after_in_child=_own_process_group)


@contextmanager
def _workers_in_a_group_of_their_own() -> Iterator[None]:
    """The workers forked meanwhile leave the terminal's process group: Ctrl-C reaches the command, which
    closes them, and not the workers themselves, which would stop mid-task with a traceback (Polars
    turns the signal into a KeyboardInterrupt wherever it is working)."""
    global _forking_workers
    _forking_workers = True
    try:
        yield
    finally:
        _forking_workers = False


@contextmanager
def _connected(address: str) -> Iterator[object]:
    import distributed

    try:
        client = distributed.Client(address, timeout=CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError, ValueError) as error:
        raise TaxifareError(
            f"could not reach the Dask scheduler at {address} ({first_line(error) or type(error).__name__}); "
            "check --scheduler (DASK_SCHEDULER_ADDRESS) and that the scheduler is running"
        ) from None
    with client:
        try:
            client.wait_for_workers(1, timeout=CONNECT_TIMEOUT_S)
        except TimeoutError:
            raise TaxifareError(f"the Dask scheduler at {address} has no workers; start some with `dask worker {address}`") from None
        yield client


def _described(client) -> Cluster:
    threads = client.nthreads()
    cluster = Cluster(client, client.scheduler.address, len(threads), sum(threads.values()))
    log.info("Dask cluster %s: %d workers, %d threads", cluster.address, cluster.workers, cluster.threads)
    return cluster
