"""Text files as spans of whole lines: byte ranges found by one scan for newlines, read back by seeking.

Training reads the processed CSV this way in a shuffled order; prediction and evaluation stream raw CSVs
of any size span by span and still know each row's line number.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

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
        yield from line_spans_in(file, lines_per_span)


def line_spans_in(file: BinaryIO, lines_per_span: int) -> Iterator[LineSpan]:
    """iter_line_spans of a file open for binary reading, read from its current position (its header line)."""
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
