"""The preprocessing pipeline: source -> clean -> features -> sink, one chunk at a time."""

from __future__ import annotations

import datetime as dt
import logging
import time
from contextlib import closing
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from taxifare.clean import REJECT_RULES, Rejects, SeenRows, clean_rides
from taxifare.config import Settings, load_settings
from taxifare.csv_format import CsvFormat
from taxifare.errors import InputError, first_example, top_reasons
from taxifare.features import PREPROCESSOR_VERSION, ride_features
from taxifare.files import describe_os_error, reading, reads_of
from taxifare.lock import OutputLock
from taxifare.progress import Progress, log_summary, peak_rss_mb
from taxifare.provenance import (OutputConflict, bigquery_raw, conflict, csv_raw, data_size_for, expect_the_bytes_read_before, file_identity,
                                 raw_after_reading, window_cache_of)
from taxifare.sink import PickupWindow, ProcessedWriter, finish_publishing, manifest_path, new_manifest, partial_path, publish, read_manifest, sample_record
from taxifare.source import CsvRideSource, RideSource

log = logging.getLogger("taxifare")

RAW_RIDES = "the raw rides"


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
    path = input_path if input_path is not None else settings.raw_cache_path
    if input_path is not None or path.is_file():
        with reading(path, RAW_RIDES):
            return CsvRideSource(path, settings.chunk_size, csv_format)
    from taxifare.source_bigquery import BigQueryRideSource

    return BigQueryRideSource(settings)


def raw_identity(settings: Settings, source: RideSource) -> dict:
    if isinstance(source, CsvRideSource):
        return csv_raw([source.path])
    return bigquery_raw(settings.bq_table, settings.min_date, settings.max_date)


def _raw_after_reading(settings: Settings, raw: dict, source: RideSource) -> dict:
    """`raw` with the fingerprint of what was read. A BigQuery source's rows are now in the raw cache, which
    the next run reads instead: that file is recorded, with the fingerprint of what the download wrote."""
    if raw["kind"] == "bigquery":
        return raw_after_reading(raw, [source.content.fingerprint()], [file_identity(settings.raw_cache_path)])
    return raw_after_reading(raw, [source.content.fingerprint()])


@dataclass(frozen=True)
class OutputPlan:
    reuse: dict | None = None  # the manifest of the complete output to reuse as it is
    resume: dict | None = None  # the manifest of the partial output to continue


def plan_output(output: Path, fresh: dict, force: bool, can_resume: bool) -> OutputPlan:
    """Reuse the complete output made from the same rides and settings, continue the partial one, or start
    afresh (an empty plan); raise OutputConflict rather than replace an output of other rides or settings
    without --force."""
    finish_publishing(output)
    if force:
        return OutputPlan()
    published = existing_manifest(output)
    if not (published and published.get("complete") and _intact(output, published)):
        published = None
    published_conflict = published and conflict(published, fresh)
    if published and not published_conflict:
        log.info("%s is complete and made from the same input; reusing it (pass --force to redo it)", output)
        return OutputPlan(reuse=published)
    partial = partial_path(output)
    unfinished = existing_manifest(partial)
    unfinished_conflict = unfinished and conflict(unfinished, fresh)
    if unfinished and not unfinished_conflict and can_resume and _continuable(unfinished, fresh, partial):
        return OutputPlan(resume=unfinished)
    if unfinished and window_cache_of(unfinished, fresh):
        log.info("%s stopped after its download became the raw cache; starting it again from the cache", partial)
    way_out = "or another --data-size (a new name) to keep both"
    if published_conflict:
        raise OutputConflict(f"{output} {published_conflict}; pass --force to replace it, {way_out}")
    if unfinished_conflict:
        raise OutputConflict(f"unfinished {partial} {unfinished_conflict}; pass --force to discard it, {way_out}")
    return OutputPlan()


def _intact(output: Path, manifest: dict) -> bool:
    return output.is_file() and output.stat().st_size == manifest.get("bytes")


def _continuable(manifest: dict, fresh: dict, partial: Path) -> bool:
    same_chunks = manifest.get("chunk_size") == fresh["chunk_size"] and manifest.get("source") == fresh["source"]
    return same_chunks and partial.is_file() and partial.stat().st_size >= manifest.get("bytes", 0)


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
    if input_path is not None and "data_size" not in settings.given:
        settings = replace(settings, data_size=data_size_for(str(input_path)))
    output = settings.processed_path
    with OutputLock(output, "processed file"):
        if on_cluster:
            from taxifare.cluster.run import preprocess_on_cluster

            input_text = None if input_path is None else str(input_path)
            result = preprocess_on_cluster(settings, input_text, force, keep_parts, partition_size, csv_format)
        else:
            try:
                result = _preprocess_locked(settings, input_path, force, csv_format)
            except OSError as error:
                raise describe_os_error(error) from error
    if result.manifest["rows_kept"] == 0:
        raise nothing_kept(result.manifest)
    return result


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
    fresh["utc_label"] = settings.utc_label
    fresh["raw"] = raw_identity(settings, source)
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
    if isinstance(source, CsvRideSource):  # only reads (a BigQuery source also writes its cache)
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
            samples = located_samples(cleaned.rejects, source, rows_before - raw.num_rows)
            features = ride_features(cleaned.rides)
            writer.append(features, cleaned.rides["fare_amount"].to_numpy(), raw.num_rows + malformed, cleaned.rejects.counts, samples)
            kept += len(features)
            progress.advance(raw.num_rows + malformed, note=f"kept {kept:,}")
    trailing_malformed = source.malformed_rows - malformed_before
    progress.close()
    writer.finish(
        rows_read=trailing_malformed,
        rejects={"malformed_line": trailing_malformed},
        samples=malformed_sample(source),
        extra={
            "duplicate_index_bytes": seen.nbytes,
            "completed_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "source_details": source.run_details(),
            "raw": _raw_after_reading(settings, writer.manifest["raw"], source),
            **pickups.fields(),
        },
    )


def located_samples(rejects: Rejects, source, first_row: int) -> dict[str, dict]:
    """The chunk's samples, each at its line in the input (or row of the query result)."""
    rules = list(rejects.samples)
    lines = source.lines_of(np.array([first_row + rejects.samples[rule][0] for rule in rules], dtype=np.int64))
    return {rule: sample_record(source.position, line, rejects.samples[rule][1]) for rule, line in zip(rules, lines)}


def malformed_sample(source) -> dict[str, dict]:
    first = source.first_malformed
    return {"malformed_line": sample_record(source.position, *first)} if first else {}


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
    samples = manifest.get("rejected_samples", {})
    rows += [(f"  {rule}", f"{manifest['rejected'][rule]:,}{_first_text(samples.get(rule))}")
             for rule in REJECT_RULES if manifest["rejected"][rule]]
    if result.resumed_from_chunk is not None:
        rows.append(("resumed", f"after chunk {result.resumed_from_chunk}"))
    rows += [
        ("chunks", f"{manifest['chunks_written']}"),
        ("wall time", f"{result.seconds:.1f} s"),
        ("throughput", f"{rows_read / max(result.seconds, 1e-9):,.0f} rows/s"),
        ("peak memory", f"{peak_rss_mb():,.0f} MB"),
        ("preprocessor", f"version {PREPROCESSOR_VERSION}"),
    ]
    if manifest["rows_kept"]:
        rows.append(("train on it", train_command(manifest)))
    engine = manifest.get("engine")
    if engine:
        peaks = engine["worker_peak_mb"].values()
        rows += [
            ("cluster", f"Dask {engine['scheduler']}, {engine['workers']} workers, {engine['threads']} threads"),
            ("partitions", f"{engine['partitions']} ({engine['buckets']} hash buckets)"),
            ("worker memory", f"peak {max(peaks, default=0):,.0f} MB"),
        ]
    log_summary("preprocess complete" if manifest["rows_kept"] else "preprocess kept no row", rows)


def _first_text(sample: dict | None) -> str:
    if not sample:
        return ""
    where = " ".join(f"{key} {value:,}" for key, value in sample.items() if key in ("line", "row"))
    if "file" in sample:
        where += f" of {sample['file']}"
    return first_example(where, sample.get("value"))


def nothing_kept(manifest: dict) -> InputError:
    """Exit 2 for a run that kept no row: the main reasons, each with its first sample."""
    samples = manifest.get("rejected_samples", {})
    reasons = top_reasons({rule: manifest["rejected"][rule] for rule in REJECT_RULES}, lambda rule: _first_text(samples.get(rule)))
    if not manifest["rows_read"]:
        return InputError(f"preprocess read no rows from {_describe_source(manifest['source'], manifest.get('source_details') or {})}; expected raw rides")
    return InputError(f"preprocess kept none of the {manifest['rows_read']:,} rows it read: {reasons}")


def train_command(manifest: dict) -> str:
    """What to type next to train on this output: its data set name, and its window unless the default."""
    command = f"taxifare train --data-size {manifest['data_size']}"
    defaults = load_settings({}, environ={}, dotenv_path=None)
    for flag, default in (("min-date", defaults.min_date), ("max-date", defaults.max_date)):
        value = dt.datetime.fromisoformat(manifest[flag.replace("-", "_")])
        if value != default:
            command += f" --{flag} {value.isoformat() if value.time() != dt.time(0) else value.date()}"
    return command


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
