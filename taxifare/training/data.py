"""The processed CSV as training data, never loaded whole, split once and for all into three sets.

The file is cut into spans of whole lines. One pass parses it, assigns every row to the training,
validation or test set by a hash of its identity columns, gathers per-feature statistics of the training rows,
and writes the training rows as raw float32 to a scratch file beside the checkpoint (the size of the
CSV, roughly), so that training, which reads the spans in a new seeded order on every pass over the data,
several scattered spans per chunk, the next chunk in a background thread, does not parse text again: on
two cores, parsing alongside TensorFlow slowed training by a fifth.

The split is taxifare.training.splits': a row's set depends on its values alone, so the three sets are the same
rows whatever the chunk size, in every run and every data set, and no validation or test row is ever
trained on.
"""

from __future__ import annotations

import io
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, Sequence, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv

from taxifare.core.errors import InputError
from taxifare.core.lines import LineSpan, line_spans_in, pread_span
from taxifare.preprocessing.sink import read_manifest
from taxifare.rides.features import FEATURE_NAMES, PREPROCESSOR_VERSION, TARGET
from taxifare.rides.layout import RAW_COLUMNS, header_fields
from taxifare.sources.identity import content_fingerprint
from taxifare.training import splits  # its caps are read at each call
from taxifare.training.splits import LEFT_OUT, TEST, TRAIN, VALIDATION, TrainingRowSample, assign_sets, identity_positions, row_hashes

SPANS_PER_CHUNK = 8
T = TypeVar("T")
G = TypeVar("G")


@dataclass(frozen=True)
class ProcessedData:
    """A complete processed CSV, its manifest, its spans of `span_rows` lines, and where its identity
    columns are (splits.identity_positions: what decides a row's set).

    The file is opened once and read through that handle only, so a `preprocess --force` that renames a
    new output over the path meanwhile changes nothing this run reads."""

    path: Path
    manifest: dict
    spans: list[LineSpan]
    file: BinaryIO
    identity: np.ndarray

    @property
    def columns(self) -> list[str]:
        return [*self.manifest["feature_names"], self.manifest["target"]]

    @property
    def feature_count(self) -> int:
        return len(self.manifest["feature_names"])

    @property
    def rows(self) -> int:
        return sum(span.rows for span in self.spans)


def open_processed(path: Path, span_rows: int) -> ProcessedData:
    """Open the processed file, check it against its manifest and index its spans; InputError if unusable."""
    if not path.is_file():
        raise InputError(f"no processed data at {path}; run `taxifare preprocess` first (or pass --input PATH){_other_data_sets(path)}")
    file = path.open("rb")
    try:
        first_line = file.readline(1 << 20)
        _refuse_raw_rides(first_line, path)
        manifest = read_manifest(path)
        check_trainable(manifest, path)
        _check_matches_manifest(file, manifest, path)
        header = first_line.decode("utf-8", errors="replace").strip().split(",")
        if header != [*manifest["feature_names"], manifest["target"]]:
            raise InputError(f"{path}: the header does not match its manifest's feature names; rerun `taxifare preprocess --force`")
        identity = identity_positions(header)
        return ProcessedData(path, manifest, list(line_spans_in(file, span_rows)), file, identity)
    except BaseException:
        file.close()
        raise


def _check_matches_manifest(file: BinaryIO, manifest: dict, path: Path) -> None:
    """The open file is the one the manifest describes: not changed since, nor replaced between the two reads."""
    size = os.fstat(file.fileno()).st_size
    recorded = manifest.get("fingerprint")
    if size != manifest.get("bytes") or (recorded is not None and content_fingerprint(file, size) != recorded):
        raise InputError(
            f"{path} ({size:,} bytes) is not the file its manifest describes ({manifest.get('bytes')} bytes): the file "
            "changed after preprocessing, or a preprocess replaced it just now; rerun train, or `taxifare preprocess --force`"
        )
    file.seek(0)


def _other_data_sets(path: Path) -> str:
    """A hint naming the processed data sets of the same window, when `path` follows the usual naming."""
    window = path.stem.rsplit("_", 1)[0]
    names = sorted(
        other.stem[len(window) + 1 :]
        for other in path.parent.glob(f"{window}_*.csv")
        if not other.name.endswith(".partial.csv")
    )
    return f"; this window has data set(s) {', '.join(names)}: pass --data-size NAME" if names and window.startswith("processed_") else ""


def _refuse_raw_rides(first_line: bytes, path: Path) -> None:
    """A raw rides file (its `first_line`) given where a processed one belongs is named for what it is."""
    names = header_fields(first_line, path)
    if set(RAW_COLUMNS) - {TARGET} <= set(names):
        raise InputError(
            f"{path} looks like a raw rides file (its columns include {', '.join(RAW_COLUMNS)}); train reads a processed "
            f"file of features, which `taxifare preprocess --input RAW.csv` writes (and prints)"
        )


def check_trainable(manifest: dict, path: Path) -> None:
    if not manifest.get("complete"):
        raise InputError(
            f"{path} is incomplete (its preprocessing was interrupted or is still running); "
            "run `taxifare preprocess` again to finish it"
        )
    version = manifest.get("preprocessor_version")
    if version != PREPROCESSOR_VERSION or list(manifest.get("feature_names", [])) != list(FEATURE_NAMES):
        raise InputError(
            f"{path} was made by preprocessor version {version}; this taxifare trains on version "
            f"{PREPROCESSOR_VERSION} only; rerun `taxifare preprocess --force`"
        )
    if manifest.get("target") != TARGET:
        raise InputError(f"{path}: manifest target is {manifest.get('target')!r}; expected {TARGET!r}")


def read_rows(data: ProcessedData, spans: Sequence[LineSpan]) -> np.ndarray:
    """The spans' rows as one float32 array: the feature columns, then the target."""
    text = b"".join(pread_span(data.file, span) for span in spans)
    if not text:
        return np.empty((0, len(data.columns)), dtype=np.float32)
    table = pa_csv.read_csv(
        io.BytesIO(text),
        read_options=pa_csv.ReadOptions(column_names=data.columns),
        convert_options=pa_csv.ConvertOptions(column_types={name: pa.float32() for name in data.columns}),
    )
    return np.column_stack([column.to_numpy() for column in table.columns]).astype(np.float32, copy=False)


def read_ahead(groups: Sequence[G], load: Callable[[G], T]) -> Iterator[T]:
    """`load(group)` of each group in turn; the next group is loaded in a background thread meanwhile."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="taxifare-read") as reader:
        pending = reader.submit(load, groups[0]) if groups else None
        for index in range(len(groups)):
            loaded = pending.result()
            if index + 1 < len(groups):
                pending = reader.submit(load, groups[index + 1])
            yield loaded


@dataclass
class FeatureStatistics:
    """Count, mean, sum of squared deviations, minimum and maximum of each column, merged block by block
    (Chan et al.'s pairwise update, stable in float64 whatever the number of rows)."""

    count: int
    mean: np.ndarray
    m2: np.ndarray
    minimum: np.ndarray
    maximum: np.ndarray

    @classmethod
    def empty(cls, columns: int) -> "FeatureStatistics":
        zeros = np.zeros(columns)
        return cls(0, zeros, zeros.copy(), np.full(columns, np.inf), np.full(columns, -np.inf))

    def add(self, rows: np.ndarray) -> None:
        if not len(rows):
            return
        values = rows.astype(np.float64)
        mean = values.mean(axis=0)
        self.merge(FeatureStatistics(len(values), mean, ((values - mean) ** 2).sum(axis=0), values.min(axis=0), values.max(axis=0)))

    def merge(self, other: "FeatureStatistics") -> None:
        """Fold in the statistics of other rows (another block, or another worker's share)."""
        if not other.count:
            return
        total = self.count + other.count
        delta = other.mean - self.mean
        self.mean = self.mean + delta * other.count / total
        self.m2 = self.m2 + other.m2 + delta**2 * self.count * other.count / total
        self.count = total
        self.minimum = np.minimum(self.minimum, other.minimum)
        self.maximum = np.maximum(self.maximum, other.maximum)

    @property
    def variance(self) -> np.ndarray:
        return self.m2 / max(self.count, 1)


@dataclass(frozen=True)
class PreparedRows:
    """What `prepare_rows` wrote and kept: the validation and test rows, statistics of the training rows
    (features, then the target), where each span's training rows start in the row file (`span_starts[i]`
    to `span_starts[i + 1]`, in rows), the held-out candidates beyond the caps (`left_out`, in no set),
    and the sample of the training rows' hashes."""

    validation: np.ndarray
    test: np.ndarray
    statistics: FeatureStatistics
    span_starts: np.ndarray
    left_out: int
    sample: TrainingRowSample

    @property
    def train_rows(self) -> int:
        return int(self.span_starts[-1])


def prepare_rows(data: ProcessedData, row_file: Path) -> PreparedRows:
    """One pass over the CSV that splits it once and for all: the training rows go to `row_file` as raw
    float32 (so training reads them without parsing text or hashing rows again); the validation and test
    rows are returned, in file order, at most VALIDATION_MAX_ROWS and TEST_MAX_ROWS each (the rows the
    hash picks beyond those are left out: a held-out row is never trained on)."""
    groups = [data.spans[i : i + SPANS_PER_CHUNK] for i in range(0, len(data.spans), SPANS_PER_CHUNK)]
    statistics, sample = FeatureStatistics.empty(len(data.columns)), TrainingRowSample.empty()
    held_out: dict[int, list[np.ndarray]] = {VALIDATION: [], TEST: []}
    room = {VALIDATION: splits.VALIDATION_MAX_ROWS, TEST: splits.TEST_MAX_ROWS}
    trainable_per_span, left_out = [], 0
    with row_file.open("wb") as target:
        for group, rows in zip(groups, read_ahead(groups, lambda group: read_rows(data, group))):
            hashes = row_hashes(rows, data.identity)
            sets = assign_sets(hashes)
            for name, parts in held_out.items():
                picked = np.flatnonzero(sets == name)
                sets[picked[room[name] :]] = LEFT_OUT
                parts.append(rows[picked[: room[name]]])
                room[name] -= len(parts[-1])
            trainable = sets == TRAIN
            left_out += int((sets == LEFT_OUT).sum())
            target.write(rows[trainable].tobytes())
            statistics.add(rows[trainable])
            sample.add(hashes[trainable])
            ends = np.cumsum([span.rows for span in group])
            trainable_per_span.extend(np.diff(np.cumsum(trainable)[ends - 1], prepend=0).tolist())
    validation, test = (_stack(held_out[name], len(data.columns)) for name in (VALIDATION, TEST))
    span_starts = np.concatenate([[0], np.cumsum(trainable_per_span, dtype=np.int64)])
    return PreparedRows(validation, test, statistics, span_starts, left_out, sample)


def _stack(parts: list[np.ndarray], columns: int) -> np.ndarray:
    return np.concatenate(parts) if parts else np.empty((0, columns), dtype=np.float32)


def read_prepared_rows(row_file: Path, columns: int, prepared: PreparedRows, span_indices: Sequence[int]) -> np.ndarray:
    """The trainable rows of the spans `span_indices` from a `prepare_rows` file."""
    ranges = [(int(prepared.span_starts[index]), int(prepared.span_starts[index + 1])) for index in span_indices]
    return _read_row_ranges(row_file, columns, ranges)


def evenly_spaced_rows(row_file: Path, columns: int, limit: int, runs: int = 1000) -> np.ndarray:
    """At most `limit` rows of a `prepare_rows` file: all of them, or `runs` runs of consecutive rows evenly
    spaced through it. Read, not memory-mapped: single rows spaced a page apart would map up to every page
    of the file into the process (hundreds of MB at millions of rows)."""
    rows = row_file.stat().st_size // (columns * np.dtype(np.float32).itemsize)
    if rows <= limit:
        return _read_row_ranges(row_file, columns, [(0, rows)])
    length = max(limit // runs, 1)
    starts = np.linspace(0, rows - length, min(runs, limit)).astype(np.int64)
    return _read_row_ranges(row_file, columns, [(int(start), int(start) + length) for start in starts])


def _read_row_ranges(row_file: Path, columns: int, ranges: Sequence[tuple[int, int]]) -> np.ndarray:
    """The rows [start, end) of each range of a `prepare_rows` file, in the order given."""
    row_bytes = columns * np.dtype(np.float32).itemsize
    with row_file.open("rb") as file:
        parts = []
        for start, end in ranges:
            file.seek(start * row_bytes)
            parts.append(np.fromfile(file, dtype=np.float32, count=(end - start) * columns).reshape(-1, columns))
    return _stack(parts, columns)


def chunk_plan(span_count: int, seed: int, pass_index: int) -> list[list[int]]:
    """Span indices of each training chunk of one pass over the data: a new seeded shuffle on every pass,
    SPANS_PER_CHUNK scattered spans per chunk."""
    order = np.random.default_rng([seed, pass_index]).permutation(span_count).tolist()
    return [order[i : i + SPANS_PER_CHUNK] for i in range(0, span_count, SPANS_PER_CHUNK)]


def span_rows(chunk_size: int) -> int:
    return -(-chunk_size // SPANS_PER_CHUNK)
