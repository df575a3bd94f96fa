"""Raw rides from a Parquet file (the TLC publishes its trip records so), read a row group's batches at a
time, so that memory stays as flat as for CSV, and turned into the raw text a CSV of the same rides gives
(raw_text.py): the same processed rows either way.

The file's whole content is fingerprinted before the first row is read: Parquet is not read front to
back, and a resumed run must know that the rows already written came from these very bytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from taxifare.core.errors import InputError, first_line
from taxifare.rides.layout import RAW_COLUMNS, layout_name, raw_names
from taxifare.sources.csv_file import RAW_SCHEMA, exact_size_chunks
from taxifare.sources.identity import ContentHash
from taxifare.sources.raw_text import raw_text

_BATCH_ROWS = 65_536


def is_parquet(location: str | Path) -> bool:
    return str(location).lower().endswith((".parquet", ".parq"))


class ParquetRideSource:
    """The rows of a Parquet file, in chunks of exactly `chunk_size` rows; a row's position is its row
    number (1-based). A file has no malformed lines: a value that is not a ride is rejected by cleaning."""

    resumable = True
    position = "row"
    malformed_rows = 0
    first_malformed = None

    def __init__(self, location: str | Path, chunk_size: int, content: ContentHash | None = None):
        self.path = Path(location)
        self.chunk_size = chunk_size
        self.content = content or ContentHash()
        names = self._file().schema_arrow.names
        self._columns = dict(zip(raw_names(names, self.path, RAW_COLUMNS), names))  # taxifare's name -> the file's
        self.layout = f"Parquet, {layout_name(names)}"

    @property
    def paths(self) -> list[Path]:
        return [self.path]

    def describe(self) -> dict:
        return {"kind": "parquet", "path": str(self.path), "layout": self.layout}

    def estimated_rows(self) -> int:
        return self._file().metadata.num_rows

    def lines_of(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(rows, dtype=np.int64) + 1

    def run_details(self) -> dict:
        return {}

    def fingerprints(self) -> list[str]:
        """The fingerprint of what was read (once it is all read)."""
        return [self.content.fingerprint()]

    def chunks(self) -> Iterator[pa.Table]:
        return exact_size_chunks(self.batches(), self.chunk_size)

    def batches(self) -> Iterator[pa.RecordBatch]:
        with self.path.open("rb") as file:
            self.content.read_rest(file)
        yield from _text_batches(self.path, [self._columns[name] for name in RAW_COLUMNS], RAW_SCHEMA, _BATCH_ROWS)

    def _file(self) -> pq.ParquetFile:
        return _parquet_file(self.path)


def _parquet_file(path: Path) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(path, pre_buffer=False)
    except (pa.ArrowInvalid, OSError) as error:
        if isinstance(error, OSError) and not path.is_file():
            raise InputError(f"{path}: no such file") from None
        raise InputError(f"{path}: not a readable Parquet file ({first_line(error)})") from None


def _text_batches(path: Path, columns: list[str] | None, schema: pa.Schema, batch_rows: int) -> Iterator[pa.RecordBatch]:
    """The `columns` (None: all) of the file as text batches of at most `batch_rows` rows, named by `schema`."""
    parquet = _parquet_file(path)
    # One row group at a time: asked for all of them, the reader buffers ahead in proportion to the file.
    for row_group in range(parquet.num_row_groups):
        batches = parquet.iter_batches(batch_size=batch_rows, row_groups=[row_group], columns=columns, use_threads=False)
        while batch := _next_batch(path, batches, row_group):
            yield pa.RecordBatch.from_arrays([raw_text(column) for column in batch.columns], schema=schema)


def _next_batch(path: Path, batches: Iterator[pa.RecordBatch], row_group: int) -> pa.RecordBatch | None:
    try:
        return next(batches, None)
    except (pa.ArrowException, OSError) as error:
        raise InputError(f"{path}: row group {row_group + 1} is not readable Parquet ({first_line(error)})") from None


class ParquetText:
    """A Parquet file opened for pred and evaluate, as `open_raw_csv` opens a CSV: its column names
    (taxifare's, and as the file writes them), and its rows as tables of text, every column."""

    delimiter = ","  # of the output written beside it
    position = "row"

    def __init__(self, path: Path, required: list[str] | tuple[str, ...]):
        self.path, self.name = Path(path), str(path)
        self.header = _parquet_file(self.path).schema_arrow.names
        self.columns = raw_names(self.header, self.path, required)
        self.layout = f"Parquet, {layout_name(self.header)}"

    def tables(self, rows: int) -> Iterator[pa.Table]:
        """Tables of at most `rows` rows, a row group at a time."""
        schema = pa.schema([(name, pa.string()) for name in self.columns])
        for batch in _text_batches(self.path, None, schema, rows):
            yield pa.Table.from_batches([batch])
