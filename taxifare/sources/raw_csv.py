"""The one reader of raw CSV rides, for every path: preprocess (a whole file, or a byte range of one on a
Dask worker), pred and evaluate (a file or stdin).

`open_raw_csv` opens the input (a local path, an fsspec URL or "-" for stdin; gzip-compressed when its
name ends in .gz), checks its column names
(rides/layout.py) before any row is read, and hands out its data lines in blocks of whole lines, hashing
what it reads when asked (sources/identity.py). `parse_lines` turns one such block into text columns,
setting aside the lines with the wrong number of fields: the callers count them as malformed and say
where they are. `csv_header` and `csv_rows` write text tables back as CSV: the raw cache of a BigQuery
download, and pred's output (the input's columns as written, plus the prediction).
"""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import sys
import zlib
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator, Sequence

import pyarrow as pa
import pyarrow.csv as pa_csv

from taxifare.core.errors import InputError, first_line
from taxifare.rides.layout import CsvFormat, header_fields, layout_name
from taxifare.sources.identity import ContentHash, HashedReader

BLOCK_SIZE = 16 << 20
MAX_LINE_BYTES = 64 << 20
_SAMPLE_BYTES = 1 << 20
STDIN = "-"


@dataclass
class RawCsv:
    """An open raw CSV: its name in messages, its column names and delimiter, and its data lines in blocks
    of whole lines, the first of them line `first_line` (of the file; of the range, for a byte range)."""

    name: str
    columns: list[str]
    delimiter: str
    first_line: int
    blocks: Iterator[bytes]
    layout: str  # the layout recognised from the header, in words (rides/layout.py)
    header: list[str]  # the column names as the file (or --columns) writes them; `columns` are taxifare's


@contextmanager
def open_raw_csv(location: str | Path, csv_format: CsvFormat, required: Sequence[str], content: ContentHash | None = None,
                 byte_range: tuple[int, int] | None = None) -> Iterator[RawCsv]:
    """The CSV at `location` with its columns checked for the `required` ones. `content` hashes every byte
    read, the rest of the file too once the blocks are all read. `byte_range` (start, end): only the lines
    that start in it; the header is checked all the same."""
    text = str(location)
    name = "stdin" if text == STDIN else text
    whole = byte_range is None or is_compressed(text)  # a compressed file is one range: its bytes cannot be cut
    with ExitStack() as opened:
        hashed = file = _open(text, opened)
        if content is not None:
            hashed = file = HashedReader(file, content)
        if is_compressed(text):
            file = _Inflated(opened.enter_context(gzip.GzipFile(fileobj=file, mode="rb")), name)
        first = file.readline(MAX_LINE_BYTES)
        columns = csv_format.column_names(first, name, required)
        header_end = len(first) if csv_format.has_header else 0
        if whole:
            blocks = line_blocks(file, name)
            if not csv_format.has_header and first:
                blocks = itertools.chain([first], blocks)  # the first line is a ride
        else:
            start = _first_line_start(file, byte_range[0], header_end)
            blocks = line_blocks(file, name, limit=byte_range[1] - start)
        if content is not None:
            blocks = _then_the_rest(blocks, hashed)
        first_line_number = 1 if byte_range is not None else 1 + bool(csv_format.has_header)  # a range counts its own lines
        header = header_fields(first, name, csv_format.delimiter) if csv_format.has_header else list(csv_format.columns)
        layout = layout_name(header) if csv_format.has_header else "--columns"
        yield RawCsv(name, columns, csv_format.delimiter, first_line_number, blocks, layout, header)


def is_compressed(location: str | Path) -> bool:
    """Whether the file is gzip-compressed CSV (by its name, as the TLC and most tools name them)."""
    return str(location).lower().endswith(".gz")


def layout_of(location: str | Path, csv_format: CsvFormat, required: Sequence[str]) -> str:
    """The layout of the file at `location`, once its columns are checked (InputError if wrong)."""
    with open_raw_csv(location, csv_format, required) as raw:
        return raw.layout


class _Inflated:
    """A gzip stream whose damage (a truncated file, bytes that are not gzip) is bad input, in one line."""

    def __init__(self, file: gzip.GzipFile, name: str):
        self._file, self._name = file, name

    def read(self, size: int = -1) -> bytes:
        return self._inflate(self._file.read, size)

    def readline(self, size: int = -1) -> bytes:
        return self._inflate(self._file.readline, size)

    def _inflate(self, read, size: int) -> bytes:
        try:
            return read(size)
        except (EOFError, zlib.error, gzip.BadGzipFile) as error:
            raise InputError(f"{self._name}: not a whole gzip file ({first_line(error) or type(error).__name__})") from None


def _open(text: str, opened: ExitStack) -> BinaryIO:
    if text == STDIN:
        return sys.stdin.buffer
    if "://" in text:
        import fsspec

        return opened.enter_context(fsspec.open(text, "rb"))
    if not Path(text).is_file():
        raise InputError(f"{text}: no such file")
    return opened.enter_context(open(text, "rb"))


def _first_line_start(file: BinaryIO, start: int, header_end: int) -> int:
    """Where the first line that starts at or after `start` begins: each line belongs to the range it
    starts in, so consecutive ranges read every line once."""
    if start > header_end:
        file.seek(start - 1)
        file.readline()  # the end of the line that the previous range reads
    else:
        file.seek(header_end)
    return file.tell()


def _then_the_rest(blocks: Iterator[bytes], file: HashedReader) -> Iterator[bytes]:
    yield from blocks
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


@dataclass(frozen=True)
class ParsedLines:
    """A block's rows as text columns, and its lines with the wrong number of fields: (number, text), the
    number 1-based among the lines the parser saw (every line, or every non-empty one)."""

    table: pa.Table
    malformed: list[tuple[int, str]]


def parse_lines(block: bytes, raw: RawCsv, first_line_number: int, keep: Sequence[str] | None, as_written: bool = False) -> ParsedLines:
    """The columns `keep` (None: all) of a block of whole lines, as text.

    By default, a missing-value text ("", NULL, NaN...) is a null and empty lines are skipped, as cleaning
    wants them. `as_written` keeps every text as it is and takes an empty line for a malformed one, so that
    every line of the input is a row or a malformed line (pred writes one output row per input line).
    """
    malformed: list[tuple[int, str]] = []

    def skip_malformed(row: pa_csv.InvalidRow) -> str:
        malformed.append((row.number, row.text))
        return "skip"

    names = list(keep) if keep is not None else raw.columns
    convert = pa_csv.ConvertOptions(column_types={name: pa.string() for name in names}, strings_can_be_null=not as_written, check_utf8=False)
    if keep is not None:
        convert.include_columns = names
    try:
        table = pa_csv.read_csv(
            io.BytesIO(block),
            # One thread, so that the reader knows the number of each malformed line; one Arrow block for
            # the whole block, so that no line straddles two.
            read_options=pa_csv.ReadOptions(column_names=raw.columns, use_threads=False, block_size=len(block) + 1),
            parse_options=pa_csv.ParseOptions(delimiter=raw.delimiter, invalid_row_handler=skip_malformed, ignore_empty_lines=not as_written),
            convert_options=convert,
        )
    except pa.ArrowInvalid as error:
        raise InputError(f"{raw.name}: unreadable CSV near line {first_line_number}: {first_line(error) or type(error).__name__}") from None
    return ParsedLines(table, malformed)


def estimated_rows(locations: Sequence[str], total_bytes: int) -> int | None:
    """Rows in CSV files of `total_bytes` bytes in all, from the line length in the first megabyte of the
    first (for a progress ETA only); None when that tells nothing."""
    if not locations:
        return None
    with ExitStack() as opened:
        file = stored = _open(str(locations[0]), opened)
        if is_compressed(locations[0]):
            file = _Inflated(opened.enter_context(gzip.GzipFile(fileobj=stored, mode="rb")), str(locations[0]))
        sample = file.read(_SAMPLE_BYTES)
        stored_bytes = stored.tell()  # of a compressed file, what gave the sample (about)
    if not sample or not stored_bytes:
        return None
    bytes_per_line = stored_bytes / max(sample.count(b"\n"), 1)
    return max(int(total_bytes / bytes_per_line) - 1, 0)


def csv_header(names: Sequence[str], delimiter: str = ",") -> bytes:
    text = io.StringIO()
    csv.writer(text, delimiter=delimiter, lineterminator="\n").writerow(names)
    return text.getvalue().encode()


def csv_rows(table: pa.Table, delimiter: str = ",") -> bytes:
    """CSV rows, quoted only if some value needs it (pyarrow's "needed" style quotes every text value); a
    null is an empty field."""
    buffer = io.BytesIO()
    try:
        pa_csv.write_csv(table, buffer, pa_csv.WriteOptions(include_header=False, quoting_style="none", delimiter=delimiter))
    except pa.ArrowInvalid:
        buffer = io.BytesIO()
        pa_csv.write_csv(table, buffer, pa_csv.WriteOptions(include_header=False, quoting_style="needed", delimiter=delimiter))
    return buffer.getvalue()
