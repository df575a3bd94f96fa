"""Text files as spans of whole lines: byte ranges found by one scan for newlines, read back by seeking
(training reads the processed CSV this way, in a shuffled order); or, for a stream that cannot seek
(stdin), as consecutive chunks of whole lines, each with the number of its first line (prediction and
evaluation stream raw CSVs of any size this way).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import BinaryIO, Iterable, Iterator

import numpy as np

_SCAN_BLOCK = 16 << 20


@dataclass(frozen=True)
class LineSpan:
    """Bytes [start, end) of a text file: `rows` whole lines, the first of them line `first_line` (1-based)."""

    start: int
    end: int
    rows: int
    first_line: int


def line_spans_in(file: BinaryIO, lines_per_span: int) -> Iterator[LineSpan]:
    """Spans of `lines_per_span` lines (the last may be shorter) after the header line, of a file open for
    binary reading, read from its current position (its header line)."""
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


def kept_line_numbers(kept: int, skipped: np.ndarray) -> np.ndarray:
    """1-based line numbers of the kept rows of a block whose lines `skipped` (1-based, sorted) were dropped."""
    return line_numbers(np.arange(1, kept + 1), skipped)


def line_numbers(positions: np.ndarray, skipped: np.ndarray) -> np.ndarray:
    """The line (1-based) of each kept line, given its 1-based position among the kept lines, when the
    lines `skipped` (1-based, sorted) were dropped.

    Kept line k lands on line k pushed down by every skipped line at or before it: skipped line i
    (0-based) comes before it exactly when skipped[i] - i <= k.
    """
    return positions + np.searchsorted(skipped - np.arange(len(skipped)), positions, side="right")


def empty_lines(block: bytes) -> np.ndarray:
    """1-based numbers of the empty lines ("" or a lone carriage return) of a block of whole lines."""
    if b"\n\n" not in block and b"\n\r\n" not in block and not block.startswith((b"\n", b"\r\n")):
        return np.empty(0, dtype=np.int64)  # the common case, found at memory speed
    data = np.frombuffer(block, dtype=np.uint8)
    ends = np.flatnonzero(data == 10)
    starts = np.concatenate([[0], ends[:-1] + 1])
    lengths = ends - starts
    empty = (lengths == 0) | ((lengths == 1) & (data[starts] == 13))
    return np.flatnonzero(empty).astype(np.int64) + 1


def pread_span(file: BinaryIO, span: LineSpan) -> bytes:
    """The span's bytes, by positional reads, so that threads may share the file."""
    parts, offset = [], span.start
    while offset < span.end:
        part = os.pread(file.fileno(), span.end - offset, offset)
        if not part:
            break
        parts.append(part)
        offset += len(part)
    return b"".join(parts)


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
