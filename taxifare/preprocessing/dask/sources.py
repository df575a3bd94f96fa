"""What a worker reads for one partition: a byte range of a CSV file, or one BigQuery sub-window.

Both hand out RAW_SCHEMA tables through `chunks()` and count `malformed_rows`, like the local sources,
and a sub-window is read by the local sources themselves: its own raw cache when present, else a
query that writes that cache through.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator

import fsspec
import pyarrow as pa

from taxifare.core.config import Settings
from taxifare.preprocessing.dask.plan import CsvRange, Partition
from taxifare.rides.layout import RAW_COLUMNS, CsvFormat
from taxifare.sources.csv_file import BLOCK_SIZE, CsvRideSource, RawLineParser, RideSource, exact_size_chunks, line_blocks
from taxifare.sources.identity import ContentHash, HashedReader


class CsvRangeSource:
    """The rows of a CsvRange, in chunks of `chunk_size` rows. Each line belongs to the range it starts in,
    so consecutive ranges read every line once; the header is checked by every range of the file. The
    content hash covers the segments that begin in the range (provenance.ContentHash)."""

    def __init__(self, part: CsvRange, chunk_size: int, csv_format: CsvFormat = CsvFormat()):
        self.part = part
        self.chunk_size = chunk_size
        self.csv_format = csv_format
        self.content = ContentHash(part.start, part.end)
        self._parser: RawLineParser | None = None

    position = "line"

    @property
    def malformed_rows(self) -> int:
        return self._parser.malformed_rows if self._parser else 0

    @property
    def first_malformed(self) -> tuple[int, str] | None:
        return self._parser.first_malformed if self._parser else None

    @property
    def lines_read(self) -> int:
        """Lines of the range read so far, for the line numbers of the ranges after it."""
        return self._parser.lines_read if self._parser else 0

    def lines_of(self, rows):
        """Lines counted from the range's first line (line 1); the client adds the lines before it."""
        return self._parser.lines_of(rows)

    def run_details(self) -> dict:
        return {}

    def chunks(self) -> Iterator[pa.Table]:
        with fsspec.open(self.part.url, "rb") as opened:
            file = HashedReader(opened, self.content)
            first_line = file.readline()
            columns = self.csv_format.column_names(first_line[:BLOCK_SIZE], self.part.url, RAW_COLUMNS)
            self._parser = RawLineParser(columns, self.part.url, self.csv_format.delimiter)
            first = self._first_line_start(file, len(first_line) if self.csv_format.has_header else 0)
            blocks = line_blocks(file, self.part.url, limit=self.part.end - first)
            yield from exact_size_chunks(self._parser.batches(blocks), self.chunk_size)
            file.read_rest()

    def _first_line_start(self, file: HashedReader, header_end: int) -> int:
        if self.part.start > header_end:
            file.seek(self.part.start - 1)
            file.readline()  # the end of the line that the previous range reads
        else:
            file.seek(header_end)
        return file.tell()


def open_partition(part: Partition, settings: Settings, csv_format: CsvFormat) -> RideSource | CsvRangeSource:
    """The partition's rows; `csv_format` is the layout of the --input files (not of raw caches)."""
    if isinstance(part, CsvRange):
        return CsvRangeSource(part, settings.chunk_size, csv_format)
    window = dataclasses.replace(settings, min_date=part.min_date, max_date=part.max_date)
    if window.raw_cache_path.is_file():
        return CsvRideSource(window.raw_cache_path, settings.chunk_size)
    from taxifare.sources.bigquery import BigQueryRideSource

    return BigQueryRideSource(window)
