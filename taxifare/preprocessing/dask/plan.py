"""The input split into partitions that workers read on their own, in input order.

A CSV input (one file, a glob, or fsspec URLs such as gs://bucket/rides-*.csv) is cut into byte
ranges; BigQuery's date window into sub-windows, each its own parameterized query. The plan is saved
with the parts, so a rerun continues with the same partitions whatever the number of workers.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math

import fsspec

from taxifare.core.errors import InputError, first_line
from taxifare.sources.raw_csv import is_compressed

PARTITIONS_PER_THREAD = 4  # enough for an even finish when partitions take unequal times
MIN_PARTITION_BYTES = 256 << 10
MAX_PARTITION_BYTES = 64 << 20
# Each hash bucket is a chain of small tasks, a link per partition, so buckets multiply the tasks. A link
# costs about a fiftieth of its partition's scan, divided by the buckets: one chain keeps up with a dozen
# worker threads, and 16 with hundreds.
PARTITIONS_PER_BUCKET = 16
MAX_BUCKETS = 16


@dataclasses.dataclass(frozen=True)
class CsvFile:
    url: str  # a local path, or an fsspec URL
    size: int


@dataclasses.dataclass(frozen=True)
class CsvRange:
    """The rows of one CSV file whose lines start at a byte offset in [start, end)."""

    url: str
    start: int
    end: int


@dataclasses.dataclass(frozen=True)
class QueryWindow:
    """The rides picked up in [min_date, max_date), a sub-window of the job's date window."""

    min_date: dt.datetime
    max_date: dt.datetime


Partition = CsvRange | QueryWindow


@dataclasses.dataclass(frozen=True)
class JobPlan:
    partitions: tuple[Partition, ...]
    buckets: int  # hash buckets of the duplicate shuffle

    def to_json(self) -> dict:
        return {"partitions": [_partition_json(part) for part in self.partitions], "buckets": self.buckets}

    @classmethod
    def from_json(cls, value: dict) -> "JobPlan":
        return cls(tuple(_partition_from_json(part) for part in value["partitions"]), value["buckets"])


def new_plan(partitions: list[Partition], threads: int) -> JobPlan:
    partitions = finer_at_the_end(partitions, threads)
    return JobPlan(tuple(partitions), min(MAX_BUCKETS, max(1, math.ceil(len(partitions) / PARTITIONS_PER_BUCKET))))


def finer_at_the_end(partitions: list[Partition], threads: int) -> list[Partition]:
    """The last `threads` partitions cut in halves, three times over (the last `threads` of the halves
    each time): the plan ends with `threads` halves of a partition, `threads` quarters and 2 x `threads` eighths.

    The workers take partitions in input order, so the last ones decide how unevenly they finish: with
    the shortest tasks last, a worker that ran out of partitions waits an eighth of a partition for the
    others, not a whole one, and the last parts, which go to disk after every scan is done, are small;
    the count grows by only three per thread.
    """
    for _ in range(3):
        cut = len(partitions) - threads
        partitions = partitions[:cut] + [half for part in partitions[cut:] for half in _halves(part)]
    return partitions


def _halves(part: Partition) -> list[Partition]:
    if isinstance(part, CsvRange):
        middle = (part.start + part.end) // 2
        whole = part.end - part.start <= 1 or is_compressed(part.url)
        return [part] if whole else [CsvRange(part.url, part.start, middle), CsvRange(part.url, middle, part.end)]
    seconds = int((part.max_date - part.min_date).total_seconds())
    middle = part.min_date + dt.timedelta(seconds=seconds // 2)
    return [QueryWindow(part.min_date, middle), QueryWindow(middle, part.max_date)] if seconds > 1 else [part]


def _partition_json(part: Partition) -> dict:
    if isinstance(part, CsvRange):
        return {"csv": [part.url, part.start, part.end]}
    return {"window": [part.min_date.isoformat(), part.max_date.isoformat()]}


def _partition_from_json(value: dict) -> Partition:
    if "csv" in value:
        return CsvRange(*value["csv"])
    return QueryWindow(*(dt.datetime.fromisoformat(text) for text in value["window"]))


def list_csv_files(pattern: str) -> list[CsvFile]:
    """The files that a path, a glob or an fsspec URL names, in name order, with their sizes."""
    try:
        filesystem, path = fsspec.core.url_to_fs(pattern)
        names = sorted(filesystem.glob(path)) if any(char in path for char in "*?[") else [path]
        files = [CsvFile(_url(filesystem, pattern, name), filesystem.size(name)) for name in names if filesystem.isfile(name)]
    except (ImportError, ValueError) as error:  # no filesystem package for the URL's scheme
        raise InputError(f"{pattern}: {first_line(error)}") from None
    except OSError as error:
        raise InputError(f"{pattern}: cannot list the input ({first_line(error) or type(error).__name__})") from None
    if not files:
        raise InputError(f"{pattern}: no such file")
    return files


def _url(filesystem: fsspec.AbstractFileSystem, pattern: str, name: str) -> str:
    return filesystem.unstrip_protocol(name) if "://" in pattern else name


def partition_bytes(total_bytes: int, threads: int) -> int:
    """A partition size that gives every worker thread a few partitions, within sensible bounds."""
    wanted = math.ceil(total_bytes / max(1, threads * PARTITIONS_PER_THREAD))
    return min(max(wanted, MIN_PARTITION_BYTES), MAX_PARTITION_BYTES)


def csv_ranges(files: list[CsvFile], step: int) -> list[CsvRange]:
    """Each file cut into about `step`-byte ranges (at least one per file, so that each header is checked;
    a compressed file is one range)."""
    ranges = []
    for file in files:
        count = 1 if is_compressed(file.url) else max(1, math.ceil(file.size / step))
        edges = [file.size * index // count for index in range(count + 1)]
        ranges += [CsvRange(file.url, start, end) for start, end in zip(edges, edges[1:])]
    return ranges


def query_windows(min_date: dt.datetime, max_date: dt.datetime, count: int) -> list[QueryWindow]:
    """The window cut into `count` sub-windows of equal length, at whole seconds."""
    seconds = (max_date - min_date).total_seconds()
    count = max(1, min(count, int(seconds)))
    edges = [min_date + dt.timedelta(seconds=round(seconds * index / count)) for index in range(count)] + [max_date]
    return [QueryWindow(start, end) for start, end in zip(edges, edges[1:])]
