"""Several raw files read one after another as one source (a glob, or --input given more than once):
rows numbered across the files, each row placed at its line (or row) in its own file. The Dask engine
reads the same files, as the same list (input_files), in partitions.
"""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pyarrow as pa

from taxifare.core.errors import InputError
from taxifare.rides.layout import CsvFormat
from taxifare.sources.csv_file import CsvRideSource, exact_size_chunks
from taxifare.sources.parquet_file import ParquetRideSource, is_parquet

_GLOB_CHARS = "*?["


def is_pattern(text: str) -> bool:
    return any(char in text for char in _GLOB_CHARS) and not Path(text).exists()


def local_files(inputs: Sequence[str]) -> list[Path]:
    """The files that local paths and globs name, each glob's in name order, in the order given."""
    files = []
    for text in inputs:
        if "://" in text:
            raise InputError(f"--input {text}: a URL is read by Dask workers; add --workers N or --scheduler ADDRESS")
        matches = sorted(glob.glob(str(Path(text).expanduser()))) if is_pattern(text) else [text]
        if not matches:
            raise InputError(f"--input {text}: no file matches")
        files += [Path(name).resolve() if is_pattern(text) else Path(name) for name in matches]
    return files


def file_source(path: Path, chunk_size: int, csv_format: CsvFormat) -> CsvRideSource | ParquetRideSource:
    """The source of one raw file: Parquet by its name, else CSV (gzip-compressed by its name)."""
    if not is_parquet(path):
        return CsvRideSource(path, chunk_size, csv_format)
    if csv_format != CsvFormat():
        raise InputError(f"--columns and --delimiter describe a CSV file; {path} is Parquet, which names its columns")
    return ParquetRideSource(path, chunk_size)


class SeveralFiles:
    """The rows of several files, in order, in chunks of exactly `chunk_size` rows (a chunk may span two
    files). Every file is opened, and its columns checked, before any row is read."""

    resumable = False  # a partial output of several files is started again, never continued

    def __init__(self, given: Sequence[str], paths: Sequence[Path], chunk_size: int, csv_format: CsvFormat):
        self.given = list(given)
        self.sources = [file_source(path, chunk_size, csv_format) for path in paths]
        positions = {source.position for source in self.sources}
        if len(positions) > 1:
            raise InputError(f"--input {' '.join(self.given)} mixes Parquet and CSV files; preprocess each kind in a run of its own")
        self.position = positions.pop()
        self.chunk_size = chunk_size
        self._starts: list[int] = []  # the first row of each file begun
        self._rows = 0

    @property
    def paths(self) -> list[Path]:
        return [source.path for source in self.sources]

    @property
    def malformed_rows(self) -> int:
        return sum(source.malformed_rows for source in self.sources)

    @property
    def first_malformed(self) -> tuple[int, str, str] | None:
        """The first malformed line: its line, text and file."""
        return next(((*source.first_malformed, str(source.path)) for source in self.sources if source.first_malformed), None)

    def describe(self) -> dict:
        """As the Dask engine describes the same input: the files listed when the inputs are not just them."""
        layouts = dict.fromkeys(source.layout for source in self.sources)
        described = {"kind": "csv", "path": self.given if len(self.given) > 1 else self.given[0], "layout": "; ".join(layouts)}
        files = [str(path.resolve()) for path in self.paths]
        if files != [str(Path(text).expanduser().resolve()) for text in self.given]:
            described["files"] = files
        return described

    def estimated_rows(self) -> int | None:
        counts = [source.estimated_rows() for source in self.sources]
        return None if None in counts else sum(counts)

    def chunks(self) -> Iterator[pa.Table]:
        return exact_size_chunks(self.batches(), self.chunk_size)

    def run_details(self) -> dict:
        return {}

    def fingerprints(self) -> list[str]:
        return [fingerprint for source in self.sources for fingerprint in source.fingerprints()]

    def lines_of(self, rows: np.ndarray) -> np.ndarray:
        """Each row's line (or row) in its own file."""
        rows = np.asarray(rows, dtype=np.int64)
        files = self._file_indices(rows)
        lines = np.zeros(len(rows), dtype=np.int64)
        for index in np.unique(files):
            inside = files == index
            lines[inside] = self.sources[index].lines_of(rows[inside] - self._starts[index])
        return lines

    def files_of(self, rows: np.ndarray) -> list[str]:
        return [str(self.sources[index].path) for index in self._file_indices(np.asarray(rows, dtype=np.int64))]

    def _file_indices(self, rows: np.ndarray) -> np.ndarray:
        return np.searchsorted(self._starts, rows, side="right") - 1

    def batches(self) -> Iterator[pa.RecordBatch]:
        for source in self.sources:
            self._starts.append(self._rows)
            for batch in source.batches():
                self._rows += batch.num_rows
                yield batch
