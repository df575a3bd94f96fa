"""The client's side of preprocess on a Dask cluster: plan the partitions, run the tasks (pipeline.py),
which assemble the one processed CSV from the parts in order, and write the same manifest as a local run.

The client holds no rows: the tasks exchange files in the parts folder (which the workers and the
client must all see: this machine's disk for --workers, a shared file system for a real cluster), and
tell the client only counts.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
import os
import time
from pathlib import Path

import numpy as np

from taxifare.core.config import Settings
from taxifare.core.errors import InputError, TaxifareError
from taxifare.core.files import atomic_write_json, describe_os_error, start_writeback
from taxifare.core.progress import Progress
from taxifare.preprocessing.dask.connect import Cluster, cluster_for
from taxifare.preprocessing.dask.parts import PartsFolder, parts_folder_for
from taxifare.preprocessing.dask.pipeline import Pipeline
from taxifare.preprocessing.dask.plan import CsvFile, CsvRange, JobPlan, csv_ranges, list_csv_files, new_plan, partition_bytes, query_windows
from taxifare.preprocessing.dask.target_sum import TargetSum
from taxifare.preprocessing.pipeline import PreprocessResult, log_result, plan_output
from taxifare.preprocessing.sink import (
    PickupWindow,
    add_samples,
    csv_header,
    manifest_path,
    new_manifest,
    partial_path,
    processed_fingerprint,
    publish,
    sample_record,
)
from taxifare.rides.layout import RAW_COLUMNS, CsvFormat
from taxifare.sources.identity import bigquery_raw, csv_raw, joined_fingerprint, raw_after_reading
from taxifare.sources.parquet_file import is_parquet
from taxifare.sources.raw_csv import estimated_rows, layout_of

log = logging.getLogger("taxifare")



@dataclasses.dataclass(frozen=True)
class JobInput:
    """The raw rides of a job: CSV files (`--input`, or the window's raw cache), else BigQuery."""

    source: dict  # as the manifest records it
    input: str | list[str] | None  # the manifest's `input`: what the user passed, resolved
    files: tuple[CsvFile, ...]  # none for BigQuery
    raw: dict  # the manifest's `raw`: what identifies the rides (see provenance.py)
    csv_format: CsvFormat = CsvFormat()  # of the --input files

    @classmethod
    def of(cls, settings: Settings, inputs: list[str] | None, csv_format: CsvFormat = CsvFormat()) -> "JobInput":
        if inputs is not None:
            resolved = [text if "://" in text else str(Path(text).expanduser().resolve()) for text in inputs]
            files = tuple(file for pattern in resolved for file in list_csv_files(pattern))
            parquet = next((file.url for file in files if is_parquet(file.url)), None)
            if parquet:
                raise InputError(f"{parquet}: Parquet input is read in this process for now; leave out --workers and --scheduler")
            source = {"kind": "csv", "path": inputs[0] if len(inputs) == 1 else inputs, "layout": _layouts(files, csv_format)}
            if [file.url for file in files] != resolved:
                source["files"] = [file.url for file in files]
            return cls(source, resolved[0] if len(resolved) == 1 else resolved, files, csv_raw([file.url for file in files]), csv_format)
        if settings.raw_cache_path.is_file():
            cache = str(settings.raw_cache_path)
            files = tuple(list_csv_files(cache))
            return cls({"kind": "csv", "path": cache, "layout": _layouts(files, CsvFormat())}, None, files, csv_raw([file.url for file in files]))
        from taxifare.sources.bigquery import query_sql

        query_sql(settings.bq_table)  # refuses an unsafe table name before any worker sends a query
        raw = bigquery_raw(settings.bq_table, settings.min_date, settings.max_date)
        return cls({"kind": "bigquery", "table": settings.bq_table}, None, (), raw)


def _layouts(files: tuple[CsvFile, ...], csv_format: CsvFormat) -> str:
    """The layout of the files, each header checked here, before any worker starts (a wrong file is one line)."""
    layouts = dict.fromkeys(layout_of(file.url, csv_format, RAW_COLUMNS) for file in files)
    return "; ".join(layouts)


def preprocess_on_cluster(settings: Settings, inputs: list[str] | None, force: bool, keep_parts: bool,
                          partition_size: int | None = None, csv_format: CsvFormat = CsvFormat()) -> PreprocessResult:
    """preprocess(), on the cluster that `settings` name; `partition_size` (bytes) overrides the automatic one."""
    started = time.monotonic()
    output = settings.processed_path
    job_input = JobInput.of(settings, inputs, csv_format)
    fresh = new_manifest(settings, job_input.source, job_input.input, job_input.csv_format, job_input.raw)
    reuse = plan_output(output, fresh, force, can_resume=False).reuse  # the parts folder is how it resumes
    if reuse:
        return PreprocessResult(output, reuse, True, None, time.monotonic() - started)

    parts = PartsFolder(parts_folder_for(output))
    try:
        with cluster_for(settings) as cluster:
            plan = _plan(parts, settings, job_input, fresh, cluster, force, partition_size)
            if job_input.files == ():
                fresh["source"]["caches"] = [str(_window_cache(settings, part)) for part in plan.partitions]
            fresh["engine"] = {"kind": "dask", "scheduler": cluster.address, "workers": cluster.workers,
                               "threads": cluster.threads, "partitions": len(plan.partitions), "buckets": plan.buckets}
            output.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(manifest_path(partial_path(output)), fresh)  # marked incomplete until the very end
            manifest = _assemble(cluster, settings, output, parts, plan, fresh, job_input)
    except OSError as error:
        raise describe_os_error(error) from error
    parts.remove(keep_parts)
    result = PreprocessResult(output, manifest, False, None, time.monotonic() - started)
    log_result(result)
    return result


def _window_cache(settings: Settings, part) -> Path:
    return dataclasses.replace(settings, min_date=part.min_date, max_date=part.max_date).raw_cache_path


def _plan(parts: PartsFolder, settings: Settings, job_input: JobInput, fresh: dict, cluster: Cluster,
          force: bool, partition_size: int | None) -> JobPlan:
    """The saved plan when the parts folder holds this very job (a rerun continues it), else a new one."""
    identity = {key: fresh[key] for key in ("preprocessor_version", "input", "csv_format", "utc_label", "source", "raw",
                                            "min_date", "max_date", "data_size", "chunk_size")}
    previous = parts.previous_job()
    if previous and previous["identity"] == identity and not force:
        plan = JobPlan.from_json(previous["plan"])
        count = len(plan.partitions)
        scanned = sum(parts.scanned(index) for index in range(count))
        settled = sum(parts.settled(index) for index in range(count))
        log.info("continuing the job in %s: %d of %d partitions already scanned, %d settled", parts.path, scanned, count, settled)
        return plan
    if job_input.files:
        total = sum(file.size for file in job_input.files)
        step = partition_size or partition_bytes(total, cluster.threads)
        plan = new_plan(csv_ranges(list(job_input.files), step), cluster.threads)
    else:
        plan = new_plan(query_windows(settings.min_date, settings.max_date, 4 * cluster.threads), cluster.threads)
    parts.start_job({"identity": identity, "plan": plan.to_json()})
    return plan


def _assemble(cluster: Cluster, settings: Settings, output: Path, parts: PartsFolder, plan: JobPlan, manifest: dict,
              job_input: JobInput) -> dict:
    """The processed CSV: the header, then every part at its offset, copied there by the workers as the
    pipeline settles them; once all of it is on disk, its complete manifest, and both published."""
    partial = partial_path(output)
    header = csv_header()
    with partial.open("wb") as file:
        file.write(header)
        file.flush()
        progress = Progress("preprocess", total=estimated_rows([file.url for file in job_input.files], sum(file.size for file in job_input.files)))
        pipeline = Pipeline(cluster, settings, parts, plan, job_input.csv_format)
        # Each part's writeback starts as it lands, here, where waiting for the disk's queue costs no
        # worker time, so that the one fsync at the end has little left to wait for.
        result = pipeline.run(partial, len(header), progress, lambda offset, size: start_writeback(file.fileno(), offset, size))
        manifest["engine"]["worker_peak_mb"] = result.peaks
        progress.close()
        os.fsync(file.fileno())
        if os.fstat(file.fileno()).st_size != result.size:
            raise TaxifareError(f"{partial}: the placed parts add up to {os.fstat(file.fileno()).st_size:,} bytes, "
                                f"not {result.size:,}; run preprocess again")
    _count_parts(parts, plan, manifest, job_input.csv_format)
    if job_input.files:
        manifest["raw"] = raw_after_reading(manifest["raw"], _fingerprints(parts, plan, job_input.files))
    manifest["fingerprint"] = processed_fingerprint(partial)
    atomic_write_json(manifest_path(partial), manifest)
    publish(partial, output)
    return manifest


def _fingerprints(parts: PartsFolder, plan: JobPlan, files: tuple[CsvFile, ...]) -> list[str]:
    """Each input file's fingerprint: the content digests of its byte ranges, joined in input order."""
    digests = {file.url: "" for file in files}
    for index, part in enumerate(plan.partitions):
        digests[part.url] += parts.read_record(parts.scan_record(index))["content_digests"]
    return [joined_fingerprint(bytes.fromhex(digests[file.url])) for file in files]


def _count_parts(parts: PartsFolder, plan: JobPlan, manifest: dict, csv_format: CsvFormat) -> None:
    """Add up the parts' counts into the manifest, as the local run counts its chunks."""
    target, pickups = TargetSum(), PickupWindow()
    distinct = 0
    jobs = []
    files = {part.url for part in plan.partitions if isinstance(part, CsvRange)}
    before: dict[str | None, int] = {}  # lines (or result rows) of the earlier partitions of each file
    for index, part in enumerate(plan.partitions):
        record = parts.read_record(parts.part_record(index))
        url = part.url if isinstance(part, CsvRange) else None
        offset = before.get(url, 1 if url and csv_format.has_header else 0)  # line 1 of a file with a header is that
        for rule, (at, value) in record["samples"].items():
            sample = sample_record("line" if url else "row", offset + at, value)
            add_samples(manifest, {rule: {**sample, "file": url} if len(files) > 1 else sample})
        before[url] = offset + record["positions"]
        manifest["rows_read"] += record["rows_read"]
        manifest["rows_kept"] += record["rows_kept"]
        manifest["bytes"] += record["bytes"]
        for rule, count in record["rejects"].items():
            manifest["rejected"][rule] += count
        target.add(record["target_pieces"], np.load(parts.part_fares(index)))
        distinct += record["distinct_rows"]
        if record["source_details"]:
            jobs.append(record["source_details"])
        pickups.add_fields(parts.read_record(parts.scan_record(index)))
    rows = manifest["rows_read"] - manifest["rejected"]["malformed_line"]
    manifest.update(
        target_sum=target.result(),
        chunks_written=math.ceil(rows / manifest["chunk_size"]),
        complete=True,
        duplicate_index_bytes=8 * distinct,
        completed_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        source_details=_query_details(jobs),
        **pickups.fields(),
    )


def _query_details(jobs: list[dict]) -> dict:
    """The BigQuery jobs of the sub-windows, summed up; nothing for CSV input (as a local run)."""
    if not jobs:
        return {}
    return {
        "job_ids": [job["job_id"] for job in jobs],
        "bytes_processed": sum(job["bytes_processed"] or 0 for job in jobs),
        "rows": sum(job["rows"] or 0 for job in jobs),
    }
