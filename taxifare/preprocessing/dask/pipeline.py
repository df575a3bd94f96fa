"""The job as one graph of Dask tasks (tasks.py), handed to the scheduler at once.

Partition i needs only the partitions before it: it is settled once partitions 0..i are scanned (the
duplicate chains and its first row need them), and placed once 0..i are settled (its offset is their
size). So the processed CSV fills up, and goes to disk, while later partitions are still scanned, and
what is left when the last scan ends is the last partition's share. Scans run in input order; every
other task is small and outranks them (priority), so a worker that finishes a scan first does the
follow-ups that it made possible.

The client holds counts only (rows and bytes per partition, through small tasks that add them up) and
no chain index: each link is let go once the next one and its partition's settle have it.
"""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path
from typing import Callable, Union

from taxifare.core.config import Settings
from taxifare.core.errors import TaxifareError, first_line
from taxifare.core.progress import Progress
from taxifare.preprocessing.dask.connect import Cluster
from taxifare.preprocessing.dask.parts import PartsFolder
from taxifare.preprocessing.dask.plan import JobPlan
from taxifare.preprocessing.dask.tasks import TaskReport, duplicates_of, find_duplicates, place_part, scan_partition, settle_partition
from taxifare.rides.layout import CsvFormat

_SCAN, _FOLLOW_UP = 0, 1  # task priorities: higher runs first
Count = Union[int, object]  # a number, or the future of one


def rows_after(first_row: int, scanned: TaskReport) -> int:
    """The first row of the next partition."""
    return first_row + scanned.rows


def bytes_after(offset: int, settled: TaskReport) -> int:
    """Where the next partition's part starts in the processed CSV."""
    return offset + settled.bytes


@dataclasses.dataclass
class PipelineResult:
    size: Count  # of the processed CSV once every part is placed
    peaks: dict[str, float]  # MB, per worker


class Pipeline:
    def __init__(self, cluster: Cluster, settings: Settings, parts: PartsFolder, plan: JobPlan, csv_format: CsvFormat):
        self.client = cluster.client
        self.settings, self.parts, self.plan, self.csv_format = settings, parts, plan, csv_format
        self._watched: dict[str, str] = {}  # key of a scan, settle or place future -> its kind
        self._run_id = uuid.uuid4().hex[:8]

    def run(self, output: Path, first_offset: int, progress: Progress, placed: Callable[[int, int], None]) -> PipelineResult:
        """Scan, settle and place every partition that the parts folder does not hold yet, the parts going
        into `output` from `first_offset` on; `placed(offset, size)` is called as each part lands."""
        from distributed import KilledWorker, as_completed

        futures, size = self._submit_all(output, first_offset, progress)
        peaks: dict[str, float] = {}
        scanned = len(self.plan.partitions) - sum(kind == "scan" for kind in self._watched.values())
        # On a failure the tasks left are not cancelled here: the client's close releases them all, where
        # cancelling futures whose dependents the client does not hold trips the scheduler (an assert).
        try:
            for future in as_completed(futures):
                report = future.result()
                peaks[report.worker] = max(peaks.get(report.worker, 0.0), report.peak_mb)
                kind = self._watched[future.key]
                if kind == "scan":
                    scanned += 1
                    progress.advance(report.rows_read, note=f"{scanned}/{len(self.plan.partitions)} partitions scanned")
                elif kind == "place":
                    placed(report.offset, report.bytes)
            size = size if isinstance(size, int) else size.result()
        except KilledWorker as error:
            kind = str(error.task).split("-")[0]
            raise TaxifareError(f"a {kind} task failed on every worker it ran on ({first_line(error)}); see the workers' logs") from None
        return PipelineResult(size, peaks)

    def _submit_all(self, output: Path, first_offset: int, progress: Progress) -> tuple[list, Count]:
        """The futures of the scans, settles and places, and (the future of) the processed CSV's size."""
        parts, count = self.parts, len(self.plan.partitions)
        settled_before = [parts.settled(index) for index in range(count)]  # each record read once
        last_unsettled = max((index for index, done in enumerate(settled_before) if not done), default=-1)
        chains: list = [None] * self.plan.buckets  # per bucket, its last link
        first_row: Count = 0
        offset: Count = first_offset
        futures = []
        for index in range(count):
            if settled_before[index] or parts.scanned(index):
                record = parts.read_record(parts.scan_record(index))
                progress.advance(record["rows_read"])
                scanned: TaskReport | object = TaskReport("", 0.0, rows=record["rows"])
            else:
                scanned = self._submit("scan", index, scan_partition, self.settings, self.plan.partitions[index], index,
                                       parts.path, self.plan.buckets, self.csv_format, priority=_SCAN)
                futures.append(scanned)
            if index <= last_unsettled:  # no later partition looks up the rows of those after it
                chains = [self._follow_up(f"duplicates-{bucket}-{index}", find_duplicates, parts.path, bucket, index,
                                          self.plan.buckets, link, scanned)
                          for bucket, link in enumerate(chains)]
            if settled_before[index]:
                settled: TaskReport | object = TaskReport("", 0.0, bytes=parts.read_record(parts.part_record(index))["bytes"])
            else:
                duplicates = [self._follow_up(f"duplicates-of-{bucket}-{index}", duplicates_of, link)
                              for bucket, link in enumerate(chains)]
                settled = self._submit("settle", index, settle_partition, parts.path, index, first_row, self.settings.chunk_size,
                                       duplicates, priority=_FOLLOW_UP)
                futures.append(settled)
            futures.append(self._submit("place", index, place_part, parts.path, index, output, offset, settled, priority=_FOLLOW_UP))
            first_row = self._sum(f"rows-after-{index}", rows_after, first_row, scanned)
            offset = self._sum(f"bytes-after-{index}", bytes_after, offset, settled)
        return futures, offset

    def _sum(self, name: str, function, total: Count, report) -> Count:
        """function(total, report), here when both are known, else as a task."""
        if isinstance(report, TaskReport) and isinstance(total, int):
            return function(total, report)
        return self._follow_up(name, function, total, report)

    def _follow_up(self, name: str, function, *args):
        return self.client.submit(function, *args, key=f"{name}-{self._run_id}", priority=_FOLLOW_UP, pure=False)

    def _submit(self, kind: str, index: int, function, *args, priority: int):
        key = f"{kind}-{index}-{self._run_id}"
        self._watched[key] = kind
        return self.client.submit(function, *args, key=key, priority=priority, pure=False)
