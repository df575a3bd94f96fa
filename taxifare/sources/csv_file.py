"""Raw ride sources: a local CSV (the raw cache or any `--input` file), read in exact-size chunks.

Every source yields pyarrow tables with the seven RAW_COLUMNS as strings, so that cleaning parses one
representation whatever the origin (a local CSV, or a BigQuery page turned into the cache's text).
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Protocol, Sequence

import numpy as np
import pyarrow as pa

from taxifare.core.errors import clipped
from taxifare.core.lines import empty_lines, line_numbers
from taxifare.rides.layout import RAW_COLUMNS, SAMPLE_CHARS, CsvFormat
from taxifare.sources.identity import ContentHash
from taxifare.sources.raw_csv import RawCsv, estimated_rows, layout_of, open_raw_csv, parse_lines

RAW_SCHEMA = pa.schema([(name, pa.string()) for name in RAW_COLUMNS])

class RideSource(Protocol):
    """What the pipeline needs from a source of raw rides."""

    resumable: bool  # reads the same rows in the same order every time
    malformed_rows: int  # rows skipped so far because they could not be split into fields
    first_malformed: tuple[int, str] | None  # the line and text of the first of them
    position: str  # what `lines_of` counts: "line" (of a file) or "row" (of a query result)
    paths: Sequence[Path]  # the raw files it reads (none for a query)
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


@dataclass(frozen=True)
class _Block:
    """Where a parsed block's rows lie: its first row and line, and the lines that gave no row."""

    first_row: int
    first_line: int
    malformed: np.ndarray  # 1-based among the block's non-empty lines
    empty: np.ndarray  # 1-based among all its lines


class RawLineParser:
    """Parses an open raw CSV's blocks into RAW_SCHEMA batches, one block at a time.

    Lines with the wrong number of fields are skipped and counted in `malformed_rows`; the first is kept
    as `first_malformed` (its line and text). Empty lines are skipped. `lines_of` gives the line of any
    row parsed so far, counting from the input's first data line.
    """

    def __init__(self, raw: RawCsv):
        self.raw = raw
        self.malformed_rows = 0
        self.first_malformed: tuple[int, str] | None = None
        self.lines_read = 0
        self._rows = 0
        self._blocks: list[_Block] = []

    def batches(self) -> Iterator[pa.RecordBatch]:
        """Each block is parsed in a thread while the caller works on the rows of the one before (Arrow
        releases the GIL); the blocks are read and hashed, and their lines counted, here, in file order."""
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="csv-parser") as parser:
            parsing: tuple[bytes, Future] | None = None
            next_line = self.raw.first_line
            for block in self.raw.blocks:
                parsed = parser.submit(parse_lines, block, self.raw, next_line, RAW_COLUMNS)
                lines = block.count(b"\n") + (not block.endswith(b"\n"))
                next_line += lines
                if parsing is not None:
                    yield from self._rows_of(*parsing)
                parsing = (block, lines, parsed)
            if parsing is not None:
                yield from self._rows_of(*parsing)

    def _rows_of(self, block: bytes, lines: int, parsing: Future) -> Iterator[pa.RecordBatch]:
        parsed = parsing.result()
        self._count_lines(block, lines, parsed.table.num_rows, parsed.malformed)
        yield from parsed.table.to_batches()

    def _count_lines(self, block: bytes, lines: int, rows: int, malformed: list[tuple[int, str]]) -> None:
        numbers = np.array([number for number, _ in malformed], dtype=np.int64)
        # Without a carriage return, every line is a row, a malformed line or an empty one: when the first
        # two account for all of them, there is no empty line to look for.
        no_empty = lines == rows + len(malformed) and b"\r" not in block
        located = _Block(self._rows, self.raw.first_line + self.lines_read, numbers, np.empty(0, np.int64) if no_empty else empty_lines(block))
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


class CsvRideSource:
    """Raw rides from a CSV file (a local path, or an fsspec URL), in chunks of exactly `chunk_size` rows
    (the last may be shorter); with `byte_range`, only the lines that start in it (sources/raw_csv.py).

    Lines with the wrong number of fields are skipped and counted in `malformed_rows`.
    A file reads the same every time, so an interrupted run over it can be resumed.
    """

    resumable = True
    position = "line"

    def __init__(self, location: str | Path, chunk_size: int, csv_format: CsvFormat = CsvFormat(), content: ContentHash | None = None,
                 byte_range: tuple[int, int] | None = None):
        self.location, self.path = str(location), Path(location)
        self.chunk_size = chunk_size
        self.csv_format = csv_format
        self.content = content or ContentHash()  # hashed as read; `content` to go on with one begun elsewhere
        self.byte_range = byte_range
        self.layout = layout_of(self.location, csv_format, RAW_COLUMNS)  # a wrong file is refused now, before any output is planned
        self._parser: RawLineParser | None = None

    @property
    def malformed_rows(self) -> int:
        return self._parser.malformed_rows if self._parser else 0

    @property
    def first_malformed(self) -> tuple[int, str] | None:
        return self._parser.first_malformed if self._parser else None

    @property
    def paths(self) -> list[Path]:
        return [self.path]

    @property
    def lines_read(self) -> int:
        """Lines read so far (of the range: the ranges after it number their lines from there)."""
        return self._parser.lines_read if self._parser else 0

    def lines_of(self, rows: np.ndarray) -> np.ndarray:
        """The line of each row, counted from the file's first line (from the range's, for a range)."""
        return self._parser.lines_of(rows)

    def describe(self) -> dict:
        return {"kind": "csv", "path": str(self.path), "layout": self.layout}

    def estimated_rows(self) -> int | None:
        return estimated_rows([str(self.path)], self.path.stat().st_size)

    def chunks(self) -> Iterator[pa.Table]:
        return exact_size_chunks(self.batches(), self.chunk_size)

    def run_details(self) -> dict:
        return {}

    def fingerprints(self) -> list[str]:
        """The fingerprint of what was read (once it is all read)."""
        return [self.content.fingerprint()]

    def batches(self) -> Iterator[pa.RecordBatch]:
        # Whole-line blocks read here and parsed one at a time: Arrow's own streaming reader reads
        # ahead of a slower consumer and, on a large file, holds hundreds of megabytes doing so.
        with open_raw_csv(self.location, self.csv_format, RAW_COLUMNS, self.content, self.byte_range) as raw:
            self._parser = RawLineParser(raw)
            yield from self._parser.batches()
