"""Text files as spans of whole lines: byte ranges found by one scan for newlines, read back by seeking
(training reads the processed CSV this way, in a shuffled order); or, for a stream that cannot seek
(stdin), as consecutive chunks of whole lines, each with the number of its first line (prediction and
evaluation stream raw CSVs of any size this way).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

_SCAN_BLOCK = 16 << 20


@dataclass(frozen=True)
class LineSpan:
    """Bytes [start, end) of a text file: `rows` whole lines, the first of them line `first_line` (1-based)."""

    start: int
    end: int
    rows: int
    first_line: int


def iter_line_spans(path: Path, lines_per_span: int) -> Iterator[LineSpan]:
    """Spans of `lines_per_span` lines (the last may be shorter) after the header line."""
    with path.open("rb") as file:
        offset = span_start = len(file.readline())
        lines_seen, lines_yielded, ends_in_newline = 0, 0, True
        while block := file.read(_SCAN_BLOCK):
            line_ends = offset + np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == 10) + 1
            numbers = lines_seen + np.arange(1, len(line_ends) + 1)
            for end in line_ends[numbers % lines_per_span == 0]:
                yield LineSpan(span_start, int(end), lines_per_span, 2 + lines_yielded)
                span_start, lines_yielded = int(end), lines_yielded + lines_per_span
            lines_seen += len(line_ends)
            offset += len(block)
            ends_in_newline = block.endswith(b"\n")
        if offset > span_start:
            # The last line may lack its newline; it is a line all the same.
            rows = lines_seen - lines_yielded + (not ends_in_newline)
            yield LineSpan(span_start, offset, rows, 2 + lines_yielded)


def read_span_bytes(file, span: LineSpan) -> bytes:
    file.seek(span.start)
    return file.read(span.end - span.start)


@dataclass(frozen=True)
class LineChunk:
    """`rows` whole lines of text, the first of them line `first_line` (1-based)."""

    data: bytes
    rows: int
    first_line: int


def iter_line_chunks(blocks: Iterable[bytes], lines_per_chunk: int, first_line: int) -> Iterator[LineChunk]:
    """Blocks of whole lines regrouped into chunks of `lines_per_chunk` lines (the last may be shorter);
    the last line of the last block may lack its newline."""
    pending: list[bytes] = []
    pending_lines = 0
    for block in blocks:
        ends = np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == 10) + 1
        if not block.endswith(b"\n"):
            ends = np.append(ends, len(block))
        taken, start = 0, 0
        while pending_lines + len(ends) - taken >= lines_per_chunk:
            taken += lines_per_chunk - pending_lines
            end = int(ends[taken - 1])
            yield LineChunk(b"".join([*pending, block[start:end]]), lines_per_chunk, first_line)
            first_line += lines_per_chunk
            pending, pending_lines, start = [], 0, end
        if start < len(block):
            pending.append(block[start:])
            pending_lines += len(ends) - taken
    if pending_lines:
        yield LineChunk(b"".join(pending), pending_lines, first_line)
