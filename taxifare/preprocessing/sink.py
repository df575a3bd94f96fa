"""The processed CSV and its JSON manifest.

An output is written as `processed_X.partial.csv` with its manifest `processed_X.partial.json`, and
renamed over `processed_X.csv` and `processed_X.json` once complete: a reader of the published file
(train) never sees it change under it, and the published pair is replaced only by a complete one.

Write order, so that a crash at any point can be resumed: the chunk's rows are appended to the partial
CSV and flushed to disk first; only then is its manifest, which records the CSV's valid length and how
much input it covers, replaced atomically. On resume, anything past the manifest's `bytes` is cut off.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from taxifare.core.config import Settings
from taxifare.core.errors import InputError
from taxifare.core.files import atomic_write_json, fsync_path, read_json
from taxifare.preprocessing.processed_text import load_writer, write_rows
from taxifare.rides.clean import REJECT_RULES
from taxifare.rides.features import FEATURE_NAMES, PREPROCESSOR_VERSION, TARGET, is_one_hot
from taxifare.rides.layout import CsvFormat
from taxifare.sources.identity import content_fingerprint

MANIFEST_FORMAT = "taxifare-processed"


def manifest_path(processed_path: Path) -> Path:
    return processed_path.with_suffix(".json")


def partial_path(processed_path: Path) -> Path:
    """Where an output is written until it is complete."""
    return processed_path.with_name(f"{processed_path.stem}.partial.csv")


def processed_fingerprint(path: Path) -> str:
    with path.open("rb") as file:
        return content_fingerprint(file, os.fstat(file.fileno()).st_size)


def publish(partial: Path, output: Path) -> None:
    """Rename a complete partial output over the published one: the CSV, then its manifest. A reader that
    opened the old CSV keeps reading it whole; one that pairs the new CSV with the old manifest finds that
    the manifest's size and fingerprint do not match it (see training.data.open_processed)."""
    if partial.is_file():  # else a crash came between the two renames
        os.replace(partial, output)
    os.replace(manifest_path(partial), manifest_path(output))
    fsync_path(output.parent)


def finish_publishing(output: Path) -> None:
    """Complete a publish that a crash cut short: a complete partial manifest is the last step left."""
    partial = partial_path(output)
    try:
        complete = read_manifest(partial).get("complete")
    except InputError:
        return
    if complete:
        publish(partial, output)


def csv_header() -> bytes:
    return (",".join((*FEATURE_NAMES, TARGET)) + "\n").encode()


def new_manifest(settings: Settings, source: dict, input_text: str | None, csv_format: CsvFormat, raw: dict) -> dict:
    """The manifest of an output not yet begun: what it will be made from (`source`, the `--input` as given
    to the engine, the layout of its files, `raw`: sources/identity.py's record) and with which settings."""
    return {
        "format": MANIFEST_FORMAT,
        "preprocessor_version": PREPROCESSOR_VERSION,
        "feature_names": list(FEATURE_NAMES),
        "one_hot_features": [name for name in FEATURE_NAMES if is_one_hot(name)],
        "target": TARGET,
        "source": source,
        "min_date": settings.min_date.isoformat(),
        "max_date": settings.max_date.isoformat(),
        "data_size": settings.data_size,
        "chunk_size": settings.chunk_size,
        "rows_read": 0,
        "rows_kept": 0,
        "target_sum": 0.0,
        "rejected": dict.fromkeys(REJECT_RULES, 0),
        "rejected_samples": {},
        "chunks_written": 0,
        "bytes": len(csv_header()),
        "complete": False,
        "input": input_text,
        "csv_format": csv_format.describe(),
        "utc_label": settings.utc_label,
        "raw": raw,
    }


def add_samples(manifest: dict, samples: dict[str, dict]) -> None:
    """Keep the first sample of each rule ({"line" or "row": N, "value": text}), in REJECT_RULES order."""
    known = {**samples, **manifest.setdefault("rejected_samples", {})}
    manifest["rejected_samples"] = {rule: known[rule] for rule in REJECT_RULES if rule in known}


def sample_record(position: str, at: int, value: str | None) -> dict:
    return {position: int(at), **({"value": value} if value is not None else {})}


@dataclass
class PickupWindow:
    """The first and last pickup of the kept rows as parsed (not rebuilt from the float32 date feature),
    for the manifest's `pickup_first` and `pickup_last`; both engines gather it."""

    first: np.datetime64 | None = None
    last: np.datetime64 | None = None

    def add(self, pickups: np.ndarray) -> None:
        if len(pickups):
            low, high = np.min(pickups), np.max(pickups)
            self.first = low if self.first is None else min(self.first, low)
            self.last = high if self.last is None else max(self.last, high)

    def add_fields(self, record: dict) -> None:
        """Take in another window's `fields` (a Dask partition's)."""
        if record.get("pickup_first"):
            self.add(np.array([record["pickup_first"], record["pickup_last"]], dtype="datetime64[s]"))

    def fields(self) -> dict:
        if self.first is None:
            return {}
        return {"pickup_first": np.datetime_as_string(self.first, "s"), "pickup_last": np.datetime_as_string(self.last, "s")}


def read_manifest(processed_path: Path) -> dict:
    return read_json(manifest_path(processed_path), "processed-file manifest")


class ProcessedWriter:
    """Appends feature chunks to the processed CSV and keeps its manifest in step.

    A chunk goes through two background threads, so that its path overlaps with parsing the next chunks:
    the writer encodes its rows (pyarrow and NumPy release the GIL) and writes them, the recorder flushes
    them to disk and only then records them in the manifest, while the writer goes on with the next
    chunk. At most one chunk waits at each thread, which keeps memory bounded; nothing is written after a
    chunk whose writing failed, and nothing recorded after one whose recording failed.
    """

    def __init__(self, path: Path, manifest: dict):
        self.path = Path(path)
        self.manifest = manifest
        self._file = None
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="processed-writer")
        self._writer.submit(load_writer)  # a failed import fails the first write again, which reports it
        self._recorder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="processed-recorder")
        self._written: Future | None = None  # the last chunk appended: its end in the file
        self._recording: list[Future] = []  # the chunks not yet recorded, oldest first

    def start(self) -> None:
        """Begin a new file: the header alone, and a manifest marked incomplete."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        manifest_path(self.path).unlink(missing_ok=True)
        self._file = self.path.open("wb")
        self._file.write(csv_header())
        self._sync()
        self._save_manifest()

    def reopen(self) -> None:
        """Continue a file after an interruption: drop whatever followed the last recorded chunk."""
        self._file = self.path.open("r+b")
        self._file.truncate(self.manifest["bytes"])
        self._file.seek(self.manifest["bytes"])
        self._sync()

    def append(self, features: Mapping[str, np.ndarray], target: np.ndarray, rows_read: int, rejects: dict[str, int], samples: dict[str, dict]) -> None:
        if self._written is not None:  # the chunk before: written
            self._written.result()
        while len(self._recording) > 1 or (self._recording and self._recording[0].done()):  # at most one left to record
            self._recording.pop(0).result()
        previous = self._recording[-1] if self._recording else None
        self._written = self._writer.submit(self._write_chunk, features, target)
        self._recording.append(self._recorder.submit(self._record_chunk, previous, self._written, len(target), target, rows_read, rejects, samples))

    def wait(self) -> None:
        """Block until every chunk appended is on disk and in the manifest; re-raise the first error."""
        written, recording, self._written, self._recording = self._written, self._recording, None, []
        if written is not None:
            written.result()
        for chunk in recording:
            chunk.result()

    def _write_chunk(self, features: Mapping[str, np.ndarray], target: np.ndarray) -> int:
        """Its end in the file."""
        write_rows(features, target, self._file)
        self._file.flush()
        return self._file.tell()

    def _record_chunk(self, previous: Future | None, written: Future, rows: int, target: np.ndarray, rows_read: int,
                      rejects: dict[str, int], samples: dict[str, dict]) -> None:
        if previous is not None:
            previous.result()  # nothing is recorded after a chunk that failed
        end = written.result()
        os.fsync(self._file.fileno())  # its rows, and maybe some of the next chunk's, which no manifest counts
        self.manifest["bytes"] = end
        self.manifest["rows_kept"] += rows
        self.manifest["target_sum"] += float(np.sum(target, dtype=np.float64))
        self.manifest["chunks_written"] += 1
        self._count_read(rows_read, rejects, samples)
        self._save_manifest()

    def _count_read(self, rows_read: int, rejects: dict[str, int], samples: dict[str, dict]) -> None:
        self.manifest["rows_read"] += rows_read
        for rule, count in rejects.items():
            self.manifest["rejected"][rule] += count
        add_samples(self.manifest, samples)

    def finish(self, rows_read: int = 0, rejects: dict[str, int] | None = None, samples: dict[str, dict] | None = None, extra: dict | None = None) -> None:
        """Mark the output complete, counting rows read (and rejected) after the last chunk."""
        self.wait()
        self.close()
        self._count_read(rows_read, rejects or {}, samples or {})
        self.manifest.update(extra or {})
        self.manifest["fingerprint"] = processed_fingerprint(self.path)
        self.manifest["complete"] = True
        self._save_manifest()

    def close(self) -> None:
        """Stop the threads (letting the chunks in flight finish) and close the file."""
        self._writer.shutdown(wait=True)
        self._recorder.shutdown(wait=True)
        if self._file is not None:
            self._file.close()
            self._file = None

    def _sync(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())

    def _save_manifest(self) -> None:
        atomic_write_json(manifest_path(self.path), self.manifest)
