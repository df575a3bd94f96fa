"""Raw ride sources: a local CSV (the raw cache or any `--input` file), read in exact-size chunks.

Every source yields pyarrow tables with the seven RAW_COLUMNS as strings, so that cleaning parses one
representation whatever the origin (a local CSV, or a BigQuery page turned into the cache's text).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator, Protocol, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv

from taxifare.core.errors import InputError, clipped, first_line
from taxifare.core.lines import empty_lines, line_numbers
from taxifare.rides.layout import RAW_COLUMNS, SAMPLE_CHARS, CsvFormat
from taxifare.sources.identity import ContentHash, HashedReader

RAW_SCHEMA = pa.schema([(name, pa.string()) for name in RAW_COLUMNS])

BLOCK_SIZE = 16 << 20
MAX_LINE_BYTES = 64 << 20
_SAMPLE_BYTES = 1 << 20


class RideSource(Protocol):
    """What the pipeline needs from a source of raw rides."""

    resumable: bool  # reads the same rows in the same order every time
    malformed_rows: int  # rows skipped so far because they could not be split into fields
    first_malformed: tuple[int, str] | None  # the line and text of the first of them
    position: str  # what `lines_of` counts: "line" (of a file) or "row" (of a query result)
    content: ContentHash  # of the bytes read so far (a file's, or the raw cache a query writes)

    def describe(self) -> dict:
        """Stable identity of the input, recorded in the manifest."""

    def estimated_rows(self) -> int | None:
        """A row count for the progress ETA; None while unknown."""

    def chunks(self) -> Iterator[pa.Table]:
        """RAW_SCHEMA tables of exactly the chunk size, the last one possibly shorter."""

    def run_details(self) -> dict:
        """Facts learnt while reading (e.g. a query job id), recorded in the manifest at the end."""

    def lines_of(self, rows: np.ndarray) -> np.ndarray:
        """Where each row read so far (0-based over all chunks) is in the input: its `position`, 1-based."""


def exact_size_chunks(batches: Iterable[pa.RecordBatch], chunk_size: int) -> Iterator[pa.Table]:
    """Regroup RAW_SCHEMA batches of any sizes into tables of exactly `chunk_size` rows (the last may be shorter)."""
    pending: list[pa.RecordBatch] = []
    pending_rows = 0
    for batch in batches:
        pending.append(batch)
        pending_rows += batch.num_rows
        while pending_rows >= chunk_size:
            table = pa.Table.from_batches(pending, schema=RAW_SCHEMA)
            yield table.slice(0, chunk_size)
            rest = table.slice(chunk_size)
            pending, pending_rows = rest.to_batches(), rest.num_rows
    if pending_rows:
        yield pa.Table.from_batches(pending, schema=RAW_SCHEMA)


def read_columns(path: Path, csv_format: CsvFormat, required: Sequence[str] = RAW_COLUMNS) -> list[str]:
    """Column names of a CSV file (its header, or csv_format's), checked for the `required` columns."""
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    with path.open("rb") as file:
        return csv_format.column_names(file.readline(BLOCK_SIZE), path, required)


def estimate_row_count(path: Path) -> int:
    """Rows in a CSV, estimated from the line length in its first megabyte (for an ETA only)."""
    size = path.stat().st_size
    with path.open("rb") as file:
        sample = file.read(_SAMPLE_BYTES)
    lines = max(sample.count(b"\n"), 1)
    return max(int(size / (len(sample) / lines)) - 1, 0)


@dataclass(frozen=True)
class _Block:
    """Where a parsed block's rows lie: its first row and line, and the lines that gave no row."""

    first_row: int
    first_line: int
    malformed: np.ndarray  # 1-based among the block's non-empty lines
    empty: np.ndarray  # 1-based among all its lines


class RawLineParser:
    """Parses blocks of whole CSV lines into RAW_SCHEMA batches, one block at a time.

    Lines with the wrong number of fields are skipped and counted in `malformed_rows`; the first is kept
    as `first_malformed` (its line and text). Empty lines are skipped. `lines_of` gives the line of any
    row parsed so far, counting from line `first_line`.
    """

    def __init__(self, columns: list[str], where: object, delimiter: str = ",", first_line: int = 1):
        self.columns = columns
        self.where = where
        self.delimiter = delimiter
        self.malformed_rows = 0
        self.first_malformed: tuple[int, str] | None = None
        self.lines_read = 0
        self._first_line = first_line
        self._rows = 0
        self._blocks: list[_Block] = []

    def batches(self, blocks: Iterable[bytes]) -> Iterator[pa.RecordBatch]:
        for block in blocks:
            malformed: list[tuple[int, str]] = []
            try:
                table = pa_csv.read_csv(io.BytesIO(block), **self._csv_options(len(block), malformed))
            except pa.ArrowInvalid as error:
                raise InputError(f"{self.where}: unreadable CSV: {first_line(error) or type(error).__name__}") from None
            self._count_lines(block, table.num_rows, malformed)
            yield from table.select(list(RAW_COLUMNS)).to_batches()

    def _count_lines(self, block: bytes, rows: int, malformed: list[tuple[int, str]]) -> None:
        numbers = np.array([number for number, _ in malformed], dtype=np.int64)
        lines = block.count(b"\n") + (not block.endswith(b"\n"))
        # Without a carriage return, every line is a row, a malformed line or an empty one: when the first
        # two account for all of them, there is no empty line to look for.
        no_empty = lines == rows + len(malformed) and b"\r" not in block
        located = _Block(self._rows, self._first_line + self.lines_read, numbers, np.empty(0, np.int64) if no_empty else empty_lines(block))
        if malformed and self.first_malformed is None:
            line = int(line_numbers(numbers[:1], located.empty)[0]) + located.first_line - 1
            self.first_malformed = (line, clipped(malformed[0][1], SAMPLE_CHARS))
        self._blocks.append(located)
        self._rows += rows
        self.malformed_rows += len(malformed)
        self.lines_read += lines

    def lines_of(self, rows: np.ndarray) -> np.ndarray:
        """The line of each row (0-based, counted over every batch so far), for the rejection samples."""
        rows = np.asarray(rows, dtype=np.int64)
        lines = np.zeros(len(rows), dtype=np.int64)
        block_of = np.searchsorted([block.first_row for block in self._blocks], rows, side="right") - 1
        for index in np.unique(block_of):
            block, inside = self._blocks[index], block_of == index
            among_filled = line_numbers(rows[inside] - block.first_row + 1, block.malformed)
            lines[inside] = block.first_line - 1 + line_numbers(among_filled, block.empty)
        return lines

    def _csv_options(self, block_bytes: int, malformed: list[tuple[int, str]]) -> dict:
        def skip_malformed(row: pa_csv.InvalidRow) -> str:
            malformed.append((row.number, row.text))
            return "skip"

        return {
            # One Arrow block per block read, so that no line straddles two.
            "read_options": pa_csv.ReadOptions(column_names=self.columns, use_threads=False, block_size=block_bytes + 1),
            "parse_options": pa_csv.ParseOptions(delimiter=self.delimiter, invalid_row_handler=skip_malformed),
            "convert_options": pa_csv.ConvertOptions(
                include_columns=list(RAW_COLUMNS),
                column_types=RAW_SCHEMA,
                strings_can_be_null=True,
                check_utf8=False,
            ),
        }


class CsvRideSource:
    """Raw rides from a CSV file, in chunks of exactly `chunk_size` rows (the last may be shorter).

    Lines with the wrong number of fields are skipped and counted in `malformed_rows`.
    A file reads the same every time, so an interrupted run over it can be resumed.
    """

    resumable = True
    position = "line"

    def __init__(self, path: Path, chunk_size: int, csv_format: CsvFormat = CsvFormat(), content: ContentHash | None = None):
        self.path = Path(path)
        self.chunk_size = chunk_size
        self.csv_format = csv_format
        self.content = content or ContentHash()  # hashed as read; `content` to go on with one begun elsewhere
        header_lines = 0 if csv_format.columns else 1
        self._parser = RawLineParser(read_columns(self.path, csv_format), self.path, csv_format.delimiter, first_line=1 + header_lines)

    @property
    def malformed_rows(self) -> int:
        return self._parser.malformed_rows

    @property
    def first_malformed(self) -> tuple[int, str] | None:
        return self._parser.first_malformed

    def lines_of(self, rows: np.ndarray) -> np.ndarray:
        return self._parser.lines_of(rows)

    def describe(self) -> dict:
        return {"kind": "csv", "path": str(self.path)}

    def estimated_rows(self) -> int:
        return estimate_row_count(self.path)

    def chunks(self) -> Iterator[pa.Table]:
        return exact_size_chunks(self._batches(), self.chunk_size)

    def run_details(self) -> dict:
        return {}

    def _batches(self) -> Iterator[pa.RecordBatch]:
        # Whole-line blocks read here and parsed one at a time: Arrow's own streaming reader reads
        # ahead of a slower consumer and, on a large file, holds hundreds of megabytes doing so.
        with self.path.open("rb") as opened:
            file = HashedReader(opened, self.content)
            if self.csv_format.has_header:
                file.readline()  # already read by read_columns
            yield from self._parser.batches(line_blocks(file, self.path))
            file.read_rest()


def line_blocks(file: BinaryIO, where: object, limit: int | None = None) -> Iterator[bytes]:
    """The rest of `file` in blocks of whole lines, about BLOCK_SIZE bytes each.

    With `limit`, only the lines that start within the next `limit` bytes: the last one is read to
    its end, wherever that is, and the next reader of the file starts after it.
    """
    rest = b""
    remaining = limit
    while remaining is None or remaining > 0:
        data = file.read(BLOCK_SIZE if remaining is None else min(BLOCK_SIZE, remaining))
        if not data:
            break
        if remaining is not None:
            remaining -= len(data)
        data = rest + data
        cut = data.rfind(b"\n") + 1
        if cut == 0 and len(data) > MAX_LINE_BYTES:
            raise InputError(f"{where}: a line longer than {MAX_LINE_BYTES >> 20} MB; expected CSV rows of rides")
        if cut:
            yield data[:cut]
        rest = data[cut:]
    if rest and limit is not None:
        rest += file.readline()
    if rest.strip():
        yield rest
