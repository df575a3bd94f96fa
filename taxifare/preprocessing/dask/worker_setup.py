"""What the local cluster's workers set up when they start (a module of its own: it imports Dask)."""

from __future__ import annotations

from distributed import WorkerPlugin


class ArrowThreads(WorkerPlugin):
    """Arrow's thread pool as large as the worker's threads (one here), not one thread per core of the
    machine in every worker process. Arrow's conversions to pandas use that pool: two workers with two
    pool threads each, on two cores, cost about a twentieth more CPU and a second of a 25-second run."""

    name = "taxifare-arrow-threads"

    def setup(self, worker) -> None:
        import pyarrow

        pyarrow.set_cpu_count(worker.state.nthreads)


class QuietWhileClosing(WorkerPlugin):
    """No Dask log lines from a worker once it is closing. The local cluster's workers print to the
    user's terminal; when a run ends or is interrupted, what they would log then (the scans they cancel,
    a heartbeat that meets a closed connection, with its traceback) is expected and says nothing, and
    the client has said in one line what happened."""

    name = "taxifare-quiet-while-closing"

    def setup(self, worker) -> None:
        import logging

        from distributed.core import Status

        closing = {Status.closing, Status.closed, Status.closing_gracefully}

        def running(record: logging.LogRecord) -> bool:
            return worker.status not in closing

        # On the handlers: a logger's own filters do not see the records of its child loggers.
        for handler in logging.getLogger("distributed").handlers:
            handler.addFilter(running)
