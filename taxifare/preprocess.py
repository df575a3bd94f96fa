"""The preprocessing pipeline: source -> clean -> features -> sink, one chunk at a time."""

from __future__ import annotations

import datetime as dt
import logging
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from taxifare.clean import REJECT_RULES, SeenRows, clean_rides
from taxifare.config import Settings
from taxifare.csv_format import CsvFormat
from taxifare.errors import InputError
from taxifare.features import PREPROCESSOR_VERSION, ride_features
from taxifare.files import describe_os_error
from taxifare.lock import OutputLock
from taxifare.progress import Progress, log_summary, peak_rss_mb
from taxifare.sink import ProcessedWriter, manifest_path, new_manifest, read_manifest
from taxifare.source import CsvRideSource, RideSource

log = logging.getLogger("taxifare")

# Manifest entries that must match for a complete output to be reused.
_SAME_JOB_KEYS = ("preprocessor_version", "input", "csv_format", "min_date", "max_date", "data_size")
# ... and for an interrupted one to be continued rather than redone.
_RESUME_KEYS = (*_SAME_JOB_KEYS, "source", "chunk_size")


@dataclass
class PreprocessResult:
    output: Path
    manifest: dict
    reused: bool
    resumed_from_chunk: int | None
    seconds: float


def open_source(settings: Settings, input_path: Path | None, csv_format: CsvFormat = CsvFormat()) -> RideSource:
    """The `--input` file (laid out as `csv_format` says), else the raw cache of the window, else a
    BigQuery query that fills the cache."""
    if input_path is not None:
        return CsvRideSource(input_path, settings.chunk_size, csv_format)
    if settings.raw_cache_path.is_file():
        return CsvRideSource(settings.raw_cache_path, settings.chunk_size)
    from taxifare.source_bigquery import BigQueryRideSource

    return BigQueryRideSource(settings)


def _matches(previous: dict, fresh: dict, keys: tuple[str, ...]) -> bool:
    return all(previous.get(key) == fresh[key] for key in keys)


def reusable(previous: dict | None, fresh: dict, output: Path) -> bool:
    return bool(previous and previous.get("complete") and _matches(previous, fresh, _SAME_JOB_KEYS)) and (
        output.is_file() and output.stat().st_size == previous.get("bytes")
    )


def _resumable(previous: dict | None, fresh: dict, output: Path, source: RideSource) -> bool:
    if not source.resumable or previous is None or previous.get("complete"):
        return False
    if not _matches(previous, fresh, _RESUME_KEYS):
        return False
    return output.is_file() and output.stat().st_size >= previous.get("bytes", 0)


def existing_manifest(output: Path) -> dict | None:
    if not manifest_path(output).is_file():
        return None
    try:
        return read_manifest(output)
    except InputError:
        return None


def preprocess(
    settings: Settings,
    input_path: Path | str | None = None,
    force: bool = False,
    keep_parts: bool = False,
    partition_size: int | None = None,
    csv_format: CsvFormat = CsvFormat(),
) -> PreprocessResult:
    """Raw rides -> the processed CSV and its manifest, in this process or, when the settings name a Dask
    scheduler or a number of workers, on that cluster. There `input_path` may also be a glob or a URL,
    `keep_parts` keeps the workers' parts of the output, and `partition_size` (bytes of raw CSV) replaces
    the automatic size. `csv_format` describes the input file(s): a header or --columns, the delimiter."""
    if csv_format != CsvFormat() and input_path is None:
        raise InputError("--columns and --delimiter describe an --input file; pass --input")
    on_cluster = bool(settings.dask_scheduler_address or settings.workers)
    if on_cluster:
        from taxifare.cluster.connect import require_dask

        require_dask()
    elif not isinstance(input_path, Path) and input_path is not None:
        input_path = _local_input(input_path)
    output = settings.processed_path
    with OutputLock(output, "processed file"):
        if on_cluster:
            from taxifare.cluster.run import preprocess_on_cluster

            input_text = None if input_path is None else str(input_path)
            return preprocess_on_cluster(settings, input_text, force, keep_parts, partition_size, csv_format)
        return _preprocess_locked(settings, input_path, force, csv_format)


def _local_input(text: str) -> Path:
    if "://" in text or (any(char in text for char in "*?[") and not Path(text).exists()):
        raise InputError(f"--input {text}: a glob or URL is read by Dask workers; add --workers N or --scheduler ADDRESS")
    return Path(text)


def _preprocess_locked(settings: Settings, input_path: Path | None, force: bool, csv_format: CsvFormat) -> PreprocessResult:
    started = time.monotonic()
    output = settings.processed_path
    source = open_source(settings, input_path, csv_format)
    if input_path is not None and input_path.resolve() == output.resolve():
        raise InputError(f"--input {input_path} is the output of this preprocess; move the raw file elsewhere first")
    fresh = new_manifest(
        source.describe(), settings.min_date, settings.max_date, settings.data_size, settings.chunk_size
    )
    fresh["input"] = str(input_path.resolve()) if input_path else None
    fresh["csv_format"] = csv_format.describe()
    previous = existing_manifest(output)
    if reusable(previous, fresh, output) and not force:
        log.info("%s is complete; reusing it (pass --force to redo it)", output)
        return PreprocessResult(output, previous, True, None, time.monotonic() - started)

    resume = _resumable(previous, fresh, output, source) and not force
    writer = ProcessedWriter(output, previous if resume else fresh)
    try:
        if resume:
            writer.reopen()
            log.info("resuming %s after chunk %d", output, previous["chunks_written"])
        else:
            writer.start()
        _run_chunks(settings, source, writer, skip_chunks=writer.manifest["chunks_written"])
    except OSError as error:
        raise describe_os_error(error) from error
    finally:
        writer.close()
    result = PreprocessResult(
        output, writer.manifest, False, previous["chunks_written"] if resume else None, time.monotonic() - started
    )
    log_result(result)
    return result


def _run_chunks(settings: Settings, source: RideSource, writer: ProcessedWriter, skip_chunks: int) -> None:
    seen = SeenRows()
    progress = Progress("preprocess", total=source.estimated_rows())
    malformed_before = 0
    kept = writer.manifest["rows_kept"]
    with closing(source.chunks()) as chunks:
        for index, raw in enumerate(chunks):
            cleaned = clean_rides(raw, settings.min_date, settings.max_date, seen)
            malformed = source.malformed_rows - malformed_before
            malformed_before = source.malformed_rows
            if progress.total is None:
                progress.total = source.estimated_rows()
            if index < skip_chunks:
                # Already in the output: replayed only to rebuild the duplicate index.
                progress.advance(raw.num_rows + malformed)
                continue
            cleaned.rejects["malformed_line"] += malformed
            features = ride_features(cleaned.rides)
            writer.append(features, cleaned.rides["fare_amount"].to_numpy(), raw.num_rows + malformed, cleaned.rejects)
            kept += len(features)
            progress.advance(raw.num_rows + malformed, note=f"kept {kept:,}")
    trailing_malformed = source.malformed_rows - malformed_before
    progress.close()
    writer.finish(
        rows_read=trailing_malformed,
        rejects={"malformed_line": trailing_malformed},
        extra={
            "duplicate_index_bytes": seen.nbytes,
            "completed_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "source_details": source.run_details(),
        },
    )


def log_result(result: PreprocessResult) -> None:
    manifest = result.manifest
    rows_read = manifest["rows_read"]
    rejected = sum(manifest["rejected"].values())
    rows = [
        ("source", _describe_source(manifest["source"], manifest.get("source_details", {}))),
        ("output", str(result.output)),
        ("rows read", f"{rows_read:,}"),
        ("rows kept", f"{manifest['rows_kept']:,}"),
        ("rows rejected", f"{rejected:,}"),
    ]
    rows += [(f"  {rule}", f"{manifest['rejected'][rule]:,}") for rule in REJECT_RULES if manifest["rejected"][rule]]
    if result.resumed_from_chunk is not None:
        rows.append(("resumed", f"after chunk {result.resumed_from_chunk}"))
    rows += [
        ("chunks", f"{manifest['chunks_written']}"),
        ("wall time", f"{result.seconds:.1f} s"),
        ("throughput", f"{rows_read / max(result.seconds, 1e-9):,.0f} rows/s"),
        ("peak memory", f"{peak_rss_mb():,.0f} MB"),
        ("preprocessor", f"version {PREPROCESSOR_VERSION}"),
    ]
    engine = manifest.get("engine")
    if engine:
        peaks = engine["worker_peak_mb"].values()
        rows += [
            ("cluster", f"Dask {engine['scheduler']}, {engine['workers']} workers, {engine['threads']} threads"),
            ("partitions", f"{engine['partitions']} ({engine['buckets']} hash buckets)"),
            ("worker memory", f"peak {max(peaks, default=0):,.0f} MB"),
        ]
    log_summary("preprocess complete", rows)


def _describe_source(source: dict, details: dict) -> str:
    if source.get("kind") == "csv":
        return f"CSV {source['path']}"
    if source.get("kind") == "bigquery":
        processed = details.get("bytes_processed")
        scanned = f", {processed / 1e6:,.1f} MB processed" if processed is not None else ""
        if "caches" in source:
            jobs = f"{len(details.get('job_ids', []))} jobs"
            return f"BigQuery {source['table']} ({jobs}{scanned}), cached as {len(source['caches'])} sub-window files"
        return f"BigQuery {source['table']} (job {details.get('job_id')}{scanned}), cached as {source['cache']}"
    return ", ".join(f"{key}={value}" for key, value in source.items())
