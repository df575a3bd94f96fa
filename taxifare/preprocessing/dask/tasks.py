"""What the workers run, per partition, in input order as far as each step needs it:

1. scan: read one partition, apply the cleaning rules before `duplicate` (screen_rides) and the ones
   after it (later_verdicts), write the features of the rows that break none, and the row hashes
   grouped by bucket.
2. find duplicates: per hash bucket, a chain over the partitions in input order; each link looks the
   partition's hashes up in the bucket's index of every earlier row (dedup.SeenRows, as a local run
   does) and hands the grown index to the next link. A row's hash meets all its repeats in one bucket.
3. settle: drop the partition's duplicates from its features (a plain line filter), count every rule
   as the local run would, and sum its fares per local chunk.
4. place: copy the part into the processed CSV at its offset (the client then starts writing that range
   to disk).

A partition only needs the partitions before it, so partition 7 is settled and placed while later
ones are still being scanned. A task that runs twice (retried after its worker died) writes the same
files again.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import numpy as np

from taxifare.core.config import Settings
from taxifare.core.files import StagedFile
from taxifare.core.progress import peak_rss_mb
from taxifare.preprocessing.dask.parts import PartsFolder, save_array
from taxifare.preprocessing.dask.plan import CsvRange, Partition
from taxifare.preprocessing.dask.sources import open_partition
from taxifare.preprocessing.dask.target_sum import chunk_pieces
from taxifare.preprocessing.pipeline import placed_samples
from taxifare.preprocessing.processed_text import write_rows
from taxifare.preprocessing.sink import PickupWindow
from taxifare.rides.clean import KEPT, Rejects, later_samples, later_verdicts, screen_rides, settle_rejects
from taxifare.rides.dedup import SeenRows
from taxifare.rides.features import ride_features
from taxifare.rides.layout import CsvFormat
from taxifare.sources.raw_csv import line_blocks


@dataclasses.dataclass(frozen=True)
class TaskReport:
    """What a task tells the client: for progress, where the next partitions start, and the workers' peak memory."""

    worker: str
    peak_mb: float
    rows_read: int = 0  # scan: input lines (or result rows) read
    rows: int = 0  # scan: rows parsed
    bytes: int = 0  # settle and place: size of the part
    offset: int = 0  # place: where the part went in the processed CSV


def _report(**counts: int) -> TaskReport:
    from distributed import get_worker

    return TaskReport(get_worker().address, peak_rss_mb(), **counts)


def scan_partition(settings: Settings, part: Partition, index: int, folder: Path, buckets: int, csv_format: CsvFormat) -> TaskReport:
    parts = PartsFolder(folder)
    source = open_partition(part, settings, csv_format)
    rejects = Rejects()
    hashes, verdicts, rows, fares = [], [], [], []
    row_count, pickups = 0, PickupWindow()  # of the kept candidates: a later duplicate repeats a kept pickup
    with StagedFile(parts.scan_csv(index)) as candidates:
        for raw in source.chunks():
            screened = screen_rides(raw, settings.min_date, settings.max_date, settings.utc_label, sampled=rejects.samples)
            verdict = later_verdicts(screened.rides)
            kept = screened.rides.take(verdict == KEPT)
            write_rows(ride_features(kept), kept["fare_amount"], candidates.file)
            screened.rejects.samples.update(later_samples(raw, screened.rides, verdict, {**rejects.samples, **screened.rejects.samples}))
            _add_rejects(rejects, screened.rejects, row_count)
            hashes.append(screened.hashes)
            verdicts.append(verdict)
            rows.append(screened.rides.rows + row_count)
            fares.append(kept["fare_amount"])
            pickups.add(kept["pickup_datetime"])
            row_count += raw.num_rows
        candidates.commit(durable=False)
    rejects.counts["malformed_line"] = source.malformed_rows
    hashes = np.concatenate(hashes) if hashes else np.empty(0, dtype=np.uint64)
    hashes_bytes = parts.write_hashes(index, hashes, np.arange(len(hashes)), buckets)
    rows = _joined(rows, np.int64)
    arrays_bytes = parts.write_arrays(
        parts.scan_arrays(index),
        verdicts=_joined(verdicts, np.int8),
        rows=rows,
        lines=_positions(source, part, rows),
        fares=_joined(fares, np.float64),
    )
    rows_read = row_count + source.malformed_rows
    parts.write_record(
        parts.scan_record(index),
        {"rows": row_count, "rows_read": rows_read, "rejects": rejects.counts, "source_details": source.run_details(),
         "samples": placed_samples(rejects, lambda rows: _positions(source, part, rows), source.first_malformed), "positions": source.lines_read if isinstance(part, CsvRange) else row_count,
         "csv_bytes": parts.scan_csv(index).stat().st_size, "hashes_bytes": hashes_bytes, "arrays_bytes": arrays_bytes,
         "content_digests": source.content.digests().hex() if isinstance(part, CsvRange) else "", **pickups.fields()},
    )
    return _report(rows_read=rows_read, rows=row_count)


def _add_rejects(total: Rejects, chunk: Rejects, first_row: int) -> None:
    for rule, count in chunk.counts.items():
        total.counts[rule] += count
    for rule, (row, value) in chunk.samples.items():
        total.samples.setdefault(rule, (first_row + row, value))


def _positions(source, part: Partition, rows: np.ndarray) -> np.ndarray:
    """Where the partition's rows are: lines from the range's first (1), or rows of the sub-window's result
    (1-based, also when it comes from the sub-window's cache). The client adds what comes before."""
    return source.lines_of(rows) if isinstance(part, CsvRange) else rows + 1


def _joined(arrays: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(arrays).astype(dtype, copy=False) if arrays else np.empty(0, dtype=dtype)


@dataclasses.dataclass(frozen=True)
class BucketStep:
    """A link of a bucket's chain: the index after partition `index`, and that partition's duplicates."""

    seen: SeenRows  # hashes of the bucket's rows in partitions 0..index
    duplicates: np.ndarray  # where the partition's rows of this bucket that came before are (scan positions)


def find_duplicates(folder: Path, bucket: int, index: int, buckets: int, previous: BucketStep | None, scanned: TaskReport) -> BucketStep:
    """The link of partition `index` (`scanned`: its scan's report, which puts the link after the scan)."""
    hashes, positions = PartsFolder(folder).read_hashes(index, bucket, buckets)
    seen = previous.seen.copy() if previous else SeenRows()
    first = seen.first_occurrences(hashes)
    return BucketStep(seen, positions[~first])


def duplicates_of(step: BucketStep) -> np.ndarray:
    """The small half of a link, for the settle task, which has no use for the index."""
    return step.duplicates


def settle_partition(folder: Path, index: int, first_row: int, chunk_size: int, duplicates: list[np.ndarray]) -> TaskReport:
    """`first_row`: of the partition in the whole input; `duplicates`: per hash bucket, where the
    partition's duplicate rows are (find_duplicates)."""
    parts = PartsFolder(folder)
    scan = parts.read_record(parts.scan_record(index))
    arrays = np.load(parts.scan_arrays(index))
    verdicts = arrays["verdicts"]
    first = np.ones(len(verdicts), dtype=bool)
    for positions in duplicates:
        first[positions] = False
    candidates = verdicts == KEPT
    kept = first[candidates]
    _write_part(parts, index, kept)
    kept_rows = arrays["rows"][candidates][kept] + first_row
    pieces, cut_fares = chunk_pieces(arrays["fares"][kept], kept_rows, first_row, scan["rows"], chunk_size)
    fares_bytes = save_array(parts.part_fares(index), cut_fares)
    rejects = Rejects(dict(scan["rejects"]), {rule: tuple(sample) for rule, sample in scan["samples"].items()})
    settle_rejects(rejects, first, verdicts, arrays["lines"])
    size = parts.part_csv(index).stat().st_size
    parts.write_record(
        parts.part_record(index),
        {
            "rows_read": scan["rows_read"],
            "rows_kept": int(kept.sum()),
            "distinct_rows": int(first.sum()),
            "rejects": rejects.counts,
            "samples": rejects.samples,
            "positions": scan["positions"],
            "bytes": size,
            "fares_bytes": fares_bytes,
            "target_pieces": pieces,
            "source_details": scan["source_details"],
        },
    )
    return _report(bytes=size)


def _write_part(parts: PartsFolder, index: int, kept: np.ndarray) -> None:
    """The scanned features without the duplicates' lines: the scan file itself when there are none."""
    scanned, final = parts.scan_csv(index), parts.part_csv(index)
    if not scanned.exists():  # a task that ran before made the part and was lost with its worker
        return
    if kept.all():
        os.replace(scanned, final)
        return
    with StagedFile(final) as part, scanned.open("rb") as lines:
        line = 0
        for block in line_blocks(lines, scanned):
            ends = np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == ord("\n")) + 1
            starts = np.concatenate([[0], ends[:-1]])
            keep = kept[line : line + len(ends)]
            line += len(ends)
            # Runs of consecutive kept lines, copied as whole slices.
            edges = np.flatnonzero(np.diff(np.concatenate([[False], keep, [False]]).astype(np.int8)))
            for first_line, end_line in zip(edges[::2], edges[1::2]):
                part.write(block[starts[first_line] : ends[end_line - 1]])
        part.commit(durable=False)
    scanned.unlink()


def place_part(folder: Path, index: int, output: Path, offset: int, settled: TaskReport) -> TaskReport:
    """Copy part `index` (`settled`: its settle's report) into `output` from byte `offset` on."""
    with PartsFolder(folder).part_csv(index).open("rb") as part, output.open("r+b") as target:
        size = os.fstat(part.fileno()).st_size
        if size != settled.bytes:
            raise OSError(f"{part.name} has {size:,} bytes, not the {settled.bytes:,} that its record gives")
        if hasattr(os, "copy_file_range"):  # Linux: copied by the kernel
            copied = 0
            while copied < size:
                copied += os.copy_file_range(part.fileno(), target.fileno(), size - copied, copied, offset + copied)
        else:
            target.seek(offset)
            shutil.copyfileobj(part, target)
            target.flush()
    return _report(offset=offset, bytes=size)
