"""preprocess in this process: source -> clean -> features -> sink, one chunk at a time, the features of
one chunk computed in a thread while the next is read and cleaned."""

from __future__ import annotations

import datetime as dt
import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from pathlib import Path

import numpy as np

from taxifare.core.config import Settings
from taxifare.core.errors import InputError
from taxifare.core.files import reading, reads_of
from taxifare.core.progress import Progress
from taxifare.preprocessing.pipeline import PreprocessResult, log_result, placed_samples, plan_output, sample_records
from taxifare.preprocessing.provenance import expect_the_bytes_read_before
from taxifare.preprocessing.sink import PickupWindow, ProcessedWriter, new_manifest, partial_path, publish, sample_record
from taxifare.rides.clean import Rejects, SeenRows, clean_rides
from taxifare.rides.features import TARGET, ride_features
from taxifare.rides.layout import CsvFormat
from taxifare.rides.table import Rides
from taxifare.sources.csv_file import RideSource
from taxifare.sources.identity import bigquery_raw, csv_raw, file_identity, raw_after_reading
from taxifare.sources.several_files import SeveralFiles, file_source, local_files

log = logging.getLogger("taxifare")

RAW_RIDES = "the raw rides"



def open_source(settings: Settings, inputs: list[str] | None, csv_format: CsvFormat = CsvFormat()) -> RideSource:
    """The `--input` file(s) (laid out as `csv_format` says; Parquet by name), else the raw cache of the
    window, else a BigQuery query that fills the cache."""
    if inputs is None and not settings.raw_cache_path.is_file():
        from taxifare.sources.bigquery import BigQueryRideSource

        return BigQueryRideSource(settings)
    paths = local_files(inputs) if inputs is not None else [settings.raw_cache_path]
    with reading(paths[0], RAW_RIDES):
        if len(paths) == 1 and (inputs is None or len(inputs) == 1):
            return file_source(paths[0], settings.chunk_size, csv_format)
        return SeveralFiles(inputs, paths, settings.chunk_size, csv_format)


def raw_identity(settings: Settings, source: RideSource) -> dict:
    if source.paths:
        return csv_raw(source.paths)
    return bigquery_raw(settings.bq_table, settings.min_date, settings.max_date)


def _raw_after_reading(settings: Settings, raw: dict, source: RideSource) -> dict:
    """`raw` with the fingerprint of what was read. A BigQuery source's rows are now in the raw cache, which
    the next run reads instead: that file is recorded, with the fingerprint of what the download wrote."""
    if raw["kind"] == "bigquery":
        return raw_after_reading(raw, [source.content.fingerprint()], [file_identity(settings.raw_cache_path)])
    return raw_after_reading(raw, source.fingerprints())


def preprocess_here(settings: Settings, inputs: list[str] | None, force: bool, csv_format: CsvFormat) -> PreprocessResult:
    started = time.monotonic()
    output = settings.processed_path
    source = open_source(settings, inputs, csv_format)
    if any(path.resolve() == output.resolve() for path in source.paths):
        raise InputError(f"--input {output} is the output of this preprocess; move the raw file elsewhere first")
    resolved = [str(Path(text).expanduser().resolve()) for text in inputs or []]
    input_text = (resolved if len(resolved) > 1 else resolved[0]) if resolved else None  # as the Dask engine records it
    fresh = new_manifest(settings, source.describe(), input_text, csv_format, raw_identity(settings, source))
    plan = plan_output(output, fresh, force, source.resumable)
    if plan.reuse:
        return PreprocessResult(output, plan.reuse, True, None, time.monotonic() - started)

    writer = ProcessedWriter(partial_path(output), plan.resume or fresh)
    resumed = plan.resume["chunks_written"] if plan.resume else None  # before the writer counts on from it
    featured = FeatureStage(writer)
    try:
        if plan.resume:
            writer.reopen()
            expect_the_bytes_read_before(source.content, plan.resume, writer.path)
            log.info("resuming %s after chunk %d", writer.path, resumed)
        else:
            writer.start()
        _run_chunks(settings, source, featured, skip_chunks=writer.manifest["chunks_written"])
    finally:
        featured.close()
        writer.close()
    publish(writer.path, output)
    result = PreprocessResult(output, writer.manifest, False, resumed, time.monotonic() - started)
    log_result(result)
    return result


class FeatureStage:
    """Each chunk's features computed in a thread of their own and appended to the writer in order, while
    this thread reads and cleans the next chunk (NumPy releases the GIL): the features are the largest
    part of a chunk's work. At most one chunk waits here, which bounds the memory held."""

    def __init__(self, writer: ProcessedWriter):
        self.writer = writer
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="features")
        self._last: Future | None = None

    def append(self, rides: Rides, raw_read: dict | None, rows_read: int, rejects: dict[str, int], samples: dict[str, dict]) -> None:
        """`raw_read`: how far the raw input was read with this chunk (sources/identity.py's mark), if it can resume."""
        self.wait()
        self._last = self._thread.submit(self._append, rides, raw_read, rows_read, rejects, samples)

    def _append(self, rides: Rides, raw_read: dict | None, rows_read: int, rejects: dict[str, int], samples: dict[str, dict]) -> None:
        features = ride_features(rides)
        if raw_read is not None:
            self.writer.manifest["raw"] = {**self.writer.manifest["raw"], "read": raw_read}
        self.writer.append(features, rides[TARGET], rows_read, rejects, samples)

    def wait(self) -> None:
        """Block until every chunk is with the writer; re-raise the error of the last one."""
        last, self._last = self._last, None
        if last is not None:
            last.result()

    def close(self) -> None:
        self._thread.shutdown(wait=True)


def _run_chunks(settings: Settings, source: RideSource, featured: FeatureStage, skip_chunks: int) -> None:
    writer = featured.writer
    seen, pickups = SeenRows(), PickupWindow()
    progress = Progress("preprocess", total=source.estimated_rows(), done=writer.manifest["rows_read"])
    malformed_before = rows_before = 0
    kept = writer.manifest["rows_kept"]
    chunks = source.chunks()
    if source.paths:  # only reads (a BigQuery source also writes its cache)
        chunks = reads_of(chunks, ", ".join(map(str, source.paths)), RAW_RIDES)
    with closing(chunks):
        for index, raw in enumerate(chunks):
            cleaned = clean_rides(raw, settings.min_date, settings.max_date, seen, settings.utc_label)
            pickups.add(cleaned.rides["pickup_datetime"])
            malformed = source.malformed_rows - malformed_before
            malformed_before = source.malformed_rows
            if progress.total is None:
                progress.total = source.estimated_rows()
            rows_before += raw.num_rows
            if index < skip_chunks:
                # Already in the output, and counted as done: replayed only to rebuild the duplicate index.
                progress.advance(0, note=f"re-reading chunk {index + 1} of {skip_chunks}, written before, for its duplicates")
                continue
            cleaned.rejects.counts["malformed_line"] += malformed
            raw_read = source.content.mark() if source.resumable else None
            samples = _chunk_samples(source, cleaned.rejects, first_row=rows_before - raw.num_rows)
            featured.append(cleaned.rides, raw_read, raw.num_rows + malformed, cleaned.rejects.counts, samples)
            kept += len(cleaned.rides)
            progress.advance(raw.num_rows + malformed, note=f"kept {kept:,}")
    featured.wait()
    trailing_malformed = source.malformed_rows - malformed_before
    progress.close()
    writer.finish(
        rows_read=trailing_malformed,
        rejects={"malformed_line": trailing_malformed},
        samples=_malformed_sample(source),
        extra={
            "duplicate_index_bytes": seen.nbytes,
            "completed_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "source_details": source.run_details(),
            "raw": _raw_after_reading(settings, writer.manifest["raw"], source),
            **pickups.fields(),
        },
    )


def _chunk_samples(source: RideSource, rejects: Rejects, first_row: int) -> dict[str, dict]:
    """The chunk's samples, each at its line in the input (or row of the query result); of several files,
    with the file's name."""
    samples = placed_samples(rejects, lambda rows: source.lines_of(first_row + rows))
    records = sample_records(source.position, samples)
    if isinstance(source, SeveralFiles):
        files = source.files_of(np.array([first_row + rejects.samples[rule][0] for rule in records], dtype=np.int64))
        records = {rule: {**record, "file": file} for (rule, record), file in zip(records.items(), files)}
    return records


def _malformed_sample(source: RideSource) -> dict[str, dict]:
    first = source.first_malformed
    if not first:
        return {}
    return {"malformed_line": {**sample_record(source.position, first[0], first[1]), **({"file": first[2]} if len(first) > 2 else {})}}
