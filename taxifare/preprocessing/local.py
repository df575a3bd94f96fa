"""preprocess in this process: source -> clean -> features -> sink, one chunk at a time."""

from __future__ import annotations

import datetime as dt
import logging
import time
from contextlib import closing
from pathlib import Path

import numpy as np

from taxifare.core.config import Settings
from taxifare.core.errors import InputError
from taxifare.core.files import reading, reads_of
from taxifare.core.progress import Progress
from taxifare.preprocessing.pipeline import PreprocessResult, log_result, placed_samples, plan_output, sample_records
from taxifare.preprocessing.provenance import expect_the_bytes_read_before
from taxifare.preprocessing.sink import PickupWindow, ProcessedWriter, new_manifest, partial_path, publish
from taxifare.rides.clean import Rejects, SeenRows, clean_rides
from taxifare.rides.features import ride_features
from taxifare.rides.layout import CsvFormat
from taxifare.sources.csv_file import CsvRideSource, RideSource
from taxifare.sources.identity import bigquery_raw, csv_raw, file_identity, raw_after_reading
from taxifare.sources.parquet_file import ParquetRideSource, is_parquet

log = logging.getLogger("taxifare")

RAW_RIDES = "the raw rides"
FILE_SOURCES = (CsvRideSource, ParquetRideSource)



def open_source(settings: Settings, input_path: Path | None, csv_format: CsvFormat = CsvFormat()) -> RideSource:
    """The `--input` file (laid out as `csv_format` says), else the raw cache of the window, else a
    BigQuery query that fills the cache."""
    path = input_path if input_path is not None else settings.raw_cache_path
    if input_path is not None or path.is_file():
        with reading(path, RAW_RIDES):
            if is_parquet(path):
                if csv_format != CsvFormat():
                    raise InputError(f"--columns and --delimiter describe a CSV file; {path} is Parquet, which names its columns")
                return ParquetRideSource(path, settings.chunk_size)
            return CsvRideSource(path, settings.chunk_size, csv_format)
    from taxifare.sources.bigquery import BigQueryRideSource

    return BigQueryRideSource(settings)


def raw_identity(settings: Settings, source: RideSource) -> dict:
    if isinstance(source, FILE_SOURCES):
        return csv_raw([source.path])
    return bigquery_raw(settings.bq_table, settings.min_date, settings.max_date)


def _raw_after_reading(settings: Settings, raw: dict, source: RideSource) -> dict:
    """`raw` with the fingerprint of what was read. A BigQuery source's rows are now in the raw cache, which
    the next run reads instead: that file is recorded, with the fingerprint of what the download wrote."""
    if raw["kind"] == "bigquery":
        return raw_after_reading(raw, [source.content.fingerprint()], [file_identity(settings.raw_cache_path)])
    return raw_after_reading(raw, [source.content.fingerprint()])


def preprocess_here(settings: Settings, input_path: Path | None, force: bool, csv_format: CsvFormat) -> PreprocessResult:
    started = time.monotonic()
    output = settings.processed_path
    source = open_source(settings, input_path, csv_format)
    if input_path is not None and input_path.resolve() == output.resolve():
        raise InputError(f"--input {input_path} is the output of this preprocess; move the raw file elsewhere first")
    input_text = str(input_path.resolve()) if input_path else None
    fresh = new_manifest(settings, source.describe(), input_text, csv_format, raw_identity(settings, source))
    plan = plan_output(output, fresh, force, source.resumable)
    if plan.reuse:
        return PreprocessResult(output, plan.reuse, True, None, time.monotonic() - started)

    writer = ProcessedWriter(partial_path(output), plan.resume or fresh)
    resumed = plan.resume["chunks_written"] if plan.resume else None  # before the writer counts on from it
    try:
        if plan.resume:
            writer.reopen()
            expect_the_bytes_read_before(source.content, plan.resume, writer.path)
            log.info("resuming %s after chunk %d", writer.path, resumed)
        else:
            writer.start()
        _run_chunks(settings, source, writer, skip_chunks=writer.manifest["chunks_written"])
    finally:
        writer.close()
    publish(writer.path, output)
    result = PreprocessResult(output, writer.manifest, False, resumed, time.monotonic() - started)
    log_result(result)
    return result


def _run_chunks(settings: Settings, source: RideSource, writer: ProcessedWriter, skip_chunks: int) -> None:
    seen, pickups = SeenRows(), PickupWindow()
    progress = Progress("preprocess", total=source.estimated_rows(), done=writer.manifest["rows_read"])
    malformed_before = rows_before = 0
    kept = writer.manifest["rows_kept"]
    chunks = source.chunks()
    if isinstance(source, FILE_SOURCES):  # only reads (a BigQuery source also writes its cache)
        chunks = reads_of(chunks, source.path, RAW_RIDES)
    with closing(chunks):
        for index, raw in enumerate(chunks):
            cleaned = clean_rides(raw, settings.min_date, settings.max_date, seen, settings.utc_label)
            pickups.add(cleaned.rides["pickup_datetime"].to_numpy())
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
            writer.manifest["raw"] = {**writer.manifest["raw"], "read": source.content.mark()}
            first_row = rows_before - raw.num_rows
            samples = sample_records(source.position, placed_samples(cleaned.rejects, lambda rows: source.lines_of(first_row + rows)))
            features = ride_features(cleaned.rides)
            writer.append(features, cleaned.rides["fare_amount"].to_numpy(), raw.num_rows + malformed, cleaned.rejects.counts, samples)
            kept += len(features)
            progress.advance(raw.num_rows + malformed, note=f"kept {kept:,}")
    trailing_malformed = source.malformed_rows - malformed_before
    progress.close()
    writer.finish(
        rows_read=trailing_malformed,
        rejects={"malformed_line": trailing_malformed},
        samples=sample_records(source.position, placed_samples(Rejects(), np.asarray, source.first_malformed)),
        extra={
            "duplicate_index_bytes": seen.nbytes,
            "completed_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "source_details": source.run_details(),
            "raw": _raw_after_reading(settings, writer.manifest["raw"], source),
            **pickups.fields(),
        },
    )
