"""What both engines of preprocess share: planning the output (reuse, resume or start over), the result
and its log lines, the samples of rejected rows at their place in the input."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from taxifare.core.config import load_settings
from taxifare.core.errors import InputError, first_example, top_reasons
from taxifare.core.progress import log_summary, peak_rss_mb
from taxifare.preprocessing.provenance import conflict, window_cache_of
from taxifare.preprocessing.sink import finish_publishing, manifest_path, partial_path, read_manifest, sample_record
from taxifare.rides.clean import REJECT_RULES, Rejects
from taxifare.rides.features import PREPROCESSOR_VERSION
from taxifare.sources.identity import OutputConflict

log = logging.getLogger("taxifare")



@dataclass
class PreprocessResult:
    output: Path
    manifest: dict
    reused: bool
    resumed_from_chunk: int | None
    seconds: float


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


def placed_samples(rejects: Rejects, place: Callable[[np.ndarray], np.ndarray], first_malformed: tuple[int, str] | None = None
                   ) -> dict[str, tuple[int, str | None]]:
    """Each rule's sample at its place in the input: `place` turns rows of the cleaned table into lines of
    the file (or rows of a query result); the first malformed line, already placed, joins them."""
    rules = list(rejects.samples)
    where = place(np.array([rejects.samples[rule][0] for rule in rules], dtype=np.int64))
    samples = {rule: (int(at), rejects.samples[rule][1]) for rule, at in zip(rules, where)}
    if first_malformed:
        samples["malformed_line"] = first_malformed
    return samples


def sample_records(position: str, samples: dict[str, tuple[int, str | None]]) -> dict[str, dict]:
    """placed_samples as the manifest records them."""
    return {rule: sample_record(position, at, value) for rule, (at, value) in samples.items()}


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
        paths = source["path"] if isinstance(source["path"], list) else [source["path"]]
        return f"CSV {', '.join(paths)}" + (f" ({source['layout']})" if source.get("layout") else "")
    if source.get("kind") == "bigquery":
        processed = details.get("bytes_processed")
        scanned = f", {processed / 1e6:,.1f} MB processed" if processed is not None else ""
        if "caches" in source:
            jobs = f"{len(details.get('job_ids', []))} jobs"
            return f"BigQuery {source['table']} ({jobs}{scanned}), cached as {len(source['caches'])} sub-window files"
        return f"BigQuery {source['table']} (job {details.get('job_id')}{scanned}), cached as {source['cache']}"
    return ", ".join(f"{key}={value}" for key, value in source.items())
