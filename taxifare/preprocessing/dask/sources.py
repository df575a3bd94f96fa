"""What a worker reads for one partition: a byte range of a CSV file, or one BigQuery sub-window.

Both are read by the local sources themselves: a range by the CSV source (each line belongs to the range
it starts in, so consecutive ranges read every line once; the header is checked by every range of the
file; the content hash covers the segments that begin in the range), a sub-window from its own raw cache
when present, else by a query that writes that cache through.
"""

from __future__ import annotations

import dataclasses

from taxifare.core.config import Settings
from taxifare.preprocessing.dask.plan import CsvRange, Partition
from taxifare.rides.layout import CsvFormat
from taxifare.sources.csv_file import CsvRideSource, RideSource
from taxifare.sources.identity import ContentHash


def open_partition(part: Partition, settings: Settings, csv_format: CsvFormat) -> RideSource:
    """The partition's rows; `csv_format` is the layout of the --input files (not of raw caches)."""
    if isinstance(part, CsvRange):
        return CsvRideSource(part.url, settings.chunk_size, csv_format, ContentHash(part.start, part.end), (part.start, part.end))
    window = dataclasses.replace(settings, min_date=part.min_date, max_date=part.max_date)
    if window.raw_cache_path.is_file():
        return CsvRideSource(window.raw_cache_path, settings.chunk_size)
    from taxifare.sources.bigquery import BigQueryRideSource

    return BigQueryRideSource(window)
