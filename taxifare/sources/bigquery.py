"""Raw rides from BigQuery: one parameterized query, read page by page and written through to the raw cache.

Each page is turned into the canonical raw text (the very strings a CSV reader returns for the cache
file), appended to a partial file beside the cache and handed on at once. The partial file becomes the
cache only after the last page, so an interrupted query never leaves a cache that looks complete, and
a rerun from the cache feeds cleaning exactly the same strings. An interrupted download is continued:
the rerun reads the rows already on disk, then asks the same finished query job for its result from
the next row (see download.py), so the cache and the processed output are those of an unbroken run.
BigQuery keeps a job's result about a day. Once it is gone, the query runs again and the download
continues where it stopped if that is provably the same rows in the same order: the query orders by
every column (a total order), and the table has not changed since the first job was created. Otherwise
the download starts again from the first row, with one line that says why.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from contextlib import closing
from typing import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
from google.api_core import exceptions as api_exceptions
from google.cloud import bigquery
from google.cloud.bigquery.retry import DEFAULT_JOB_RETRY

from taxifare.core.config import Settings
from taxifare.core.dates import source_timestamp
from taxifare.core.errors import InputError
from taxifare.rides.layout import RAW_COLUMNS
from taxifare.sources.bigquery_client import CLIENT_ERRORS, bigquery_client, explain_failure, reason
from taxifare.sources.csv_file import RAW_SCHEMA, CsvRideSource, exact_size_chunks
from taxifare.sources.download import Downloaded, ResumableDownload
from taxifare.sources.identity import ContentHash
from taxifare.sources.raw_csv import csv_header, csv_rows
from taxifare.sources.raw_text import raw_text

log = logging.getLogger("taxifare")

_QUERY = """
SELECT {columns}
FROM `{table}`
WHERE pickup_datetime >= @min_date AND pickup_datetime < @max_date
ORDER BY {order}
"""
# Every column, pickup time first: a total order, so that the query run again returns the rows in the
# same order (rows equal in every column read the same; the text drops a zero's sign, see raw_text.py).
ORDER_COLUMNS = ("pickup_datetime", "pickup_longitude", "pickup_latitude", "dropoff_longitude", "dropoff_latitude",
                 "passenger_count", "fare_amount")
# The table id is the only text pasted into the SQL. The settings checked each part against BigQuery's
# naming rules; this last guard holds whatever built them: no quote, backtick, space or semicolon.
_TABLE_ID = re.compile(r"[a-z0-9.:-]+\.[A-Za-z0-9_]+\.[A-Za-z0-9_]+")

# Declared, so that a page whose column is all NULL has the same dtypes as any other page.
PAGE_DTYPES = {
    "fare_amount": "float64",
    "pickup_datetime": "datetime64[us, UTC]",
    "pickup_longitude": "float64",
    "pickup_latitude": "float64",
    "dropoff_longitude": "float64",
    "dropoff_latitude": "float64",
    "passenger_count": "Int64",
}


def query_sql(table: str) -> str:
    if not _TABLE_ID.fullmatch(table):
        raise InputError(f"BigQuery table {table!r} is not a valid project.dataset.table name")
    return _QUERY.format(columns=", ".join(RAW_COLUMNS), table=table, order=", ".join(ORDER_COLUMNS))


def raw_text_table(page: pd.DataFrame) -> pa.Table:
    """The page as the raw cache's strings: datetimes as `2009-06-15 17:26:21 UTC`, floats in their
    shortest round-trip form, passenger counts as whole numbers, NULL (and NaN) as null."""
    return pa.Table.from_arrays([raw_text(pa.array(page[name], from_pandas=True)) for name in RAW_COLUMNS], schema=RAW_SCHEMA)


def _origin(job, rows) -> dict:
    """What a rerun needs to ask for the rest of a job's result, or to tell whether running it again gives the same."""
    created = job.created.isoformat() if job.created else None
    return {"job_id": job.job_id, "project": job.project, "location": job.location, "created": created, "rows": rows.total_rows}


class BigQueryRideSource:
    """Rides of the settings' date window from `{GCP_PROJECT_DATA}.{BQ_DATASET}.raw_{DATA_SIZE}`, in chunks of
    CHUNK_SIZE rows, written through to the raw cache.

    Resumable when an earlier run left a partial download that can be continued: the rerun reads the
    rows already downloaded from the partial file, then the rest of the same result (or of the same
    query run again, see the module's docstring). The partial file has a fixed name, so the caller must
    hold the processed file's lock for the same window (preprocess does).
    """

    position = "row"
    first_malformed = None
    paths = ()  # no raw file is read: the rows come from a query (and go to the raw cache)

    def __init__(self, settings: Settings):
        self.settings = settings
        self.table = settings.bq_table
        self.sql = query_sql(self.table)
        self.cache_path = settings.raw_cache_path
        identity = {"sql": self.sql, "min_date": str(settings.min_date), "max_date": str(settings.max_date), "utc_label": settings.utc_label}
        self._download = ResumableDownload(self.cache_path, identity)
        self._saved = self._download.saved()
        self._rows = None  # the query result, from the first row not downloaded yet
        self.malformed_rows = 0
        self._total_rows: int | None = None
        self._details: dict = {}

    @property
    def resumable(self) -> bool:
        """Whether this run continues an earlier download; asks BigQuery whether it can, when there is one."""
        if self._saved is not None:
            self._open()
        return self._saved is not None

    @property
    def content(self) -> ContentHash:
        """The raw cache's content, as far as downloaded (and, continuing a download, read again)."""
        return self._download.content

    def describe(self) -> dict:
        return {"kind": "bigquery", "table": self.table, "cache": str(self.cache_path)}

    def estimated_rows(self) -> int | None:
        return self._total_rows

    def run_details(self) -> dict:
        return dict(self._details)

    def lines_of(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(rows) + 1

    def chunks(self) -> Iterator[pa.Table]:
        with closing(self._cached_text_batches()) as batches:
            yield from exact_size_chunks(batches, self.settings.chunk_size)

    def _cached_text_batches(self) -> Iterator[pa.RecordBatch]:
        download = self._download
        try:
            rows = self._open()
            if self._saved is not None:
                earlier = CsvRideSource(download.partial, self.settings.chunk_size, content=download.content)
                for table in earlier.chunks():
                    yield from table.to_batches()
            for page in self._pages(rows):
                text = raw_text_table(page)
                download.append(csv_rows(text), text.num_rows)
                yield from text.to_batches()
            download.commit()
        finally:
            download.close()
        log.info("cached the query result as %s", self.cache_path)

    def _open(self):
        """The query result to read, from the first row not downloaded yet (asked for once)."""
        if self._rows is None:
            try:
                self._rows = self._result(bigquery_client(self.settings))
            except CLIENT_ERRORS as error:
                raise explain_failure(error, self.settings) from None
        return self._rows

    def _result(self, client: bigquery.Client):
        job = rows = None
        if self._saved is not None:
            job, rows, continues = self._continued(client, self._saved)
            if continues:
                self._download.start(self._saved)
                return rows
            self._download.discard()
            self._saved = None
        if rows is None:
            job, rows = self._new_query(client)
        self._download.start(Downloaded(_origin(job, rows)), csv_header(RAW_COLUMNS))
        return rows

    def _continued(self, client: bigquery.Client, saved: Downloaded):
        """(job, its result, whether it continues the download): the saved job's result from the first row
        not downloaded yet; once BigQuery no longer holds it, the same query's run again, which continues
        the download if it gives the same rows in the same order, else is read from its first row (no
        result at all if the table changed)."""
        origin = saved.origin
        try:
            job = client.get_job(origin["job_id"], project=origin["project"], location=origin["location"], retry=self._retry())
            rows = self._rows_of(job, saved.rows)
            log.info("continuing the download of BigQuery job %s after row %d", job.job_id, saved.rows)
            self._note(job, rows)
            return job, rows, True
        except api_exceptions.NotFound:
            pass
        gone = f"BigQuery no longer holds the result of job {origin['job_id']} (it keeps one about a day)"
        changed = self._changed_since(client, origin)
        if changed:
            log.warning("%s and %s: downloading the window again from its first row", gone, changed)
            return None, None, False
        job, rows = self._new_query(client, saved.rows)
        if rows.total_rows != origin["rows"]:
            log.warning("%s, and the same query run again as job %s gives %s rows, not %s: downloading the window "
                        "again from its first row", gone, job.job_id, f"{rows.total_rows:,}", f"{origin['rows']:,}")
            # Fetched again: the job object holds the page from `saved.rows` that result() asked for.
            job = client.get_job(job.job_id, project=job.project, location=job.location, retry=self._retry())
            return job, self._rows_of(job), False
        log.info("%s; ran the same query again as job %s (the table is unchanged since, the rows are in a total "
                 "order): continuing after row %d", gone, job.job_id, saved.rows)
        saved.origin = _origin(job, rows)
        return job, rows, True

    def _changed_since(self, client: bigquery.Client, origin: dict) -> str | None:
        """Why the table may hold other rows than when the job of `origin` ran; None if it cannot."""
        if not origin.get("created"):
            return "BigQuery gave no creation time for that job"
        try:
            table = client.get_table(self.table, retry=self._retry(), timeout=self.settings.bq_deadline)
        except api_exceptions.ClientError as error:
            return f"the table's last change cannot be read ({reason(error)})"
        if table.streaming_buffer is not None:
            return "rows are being streamed into the table"
        if table.modified is None or table.modified > dt.datetime.fromisoformat(origin["created"]):
            return f"the table changed since ({table.modified:%Y-%m-%d %H:%M:%S} UTC)" if table.modified else "the table gives no time of change"
        return None

    def _pages(self, rows) -> Iterator[pd.DataFrame]:
        try:
            yield from rows.to_dataframe_iterable(dtypes=PAGE_DTYPES)
        except CLIENT_ERRORS as error:
            raise explain_failure(error, self.settings) from None

    def _note(self, job, rows) -> None:
        self._total_rows = rows.total_rows
        self._details = {
            "job_id": job.job_id,
            "location": job.location,
            "bytes_processed": job.total_bytes_processed,
            "rows": rows.total_rows,
        }

    def _retry(self):
        return bigquery.DEFAULT_RETRY.with_timeout(self.settings.bq_deadline)

    def _rows_of(self, job, start_index: int = 0, job_retry=None):
        """The job's result from row `start_index` on; job_retry=None for a job fetched by id, which the
        client cannot rerun, only read."""
        settings = self.settings
        return job.result(page_size=settings.chunk_size, start_index=start_index, retry=self._retry(), job_retry=job_retry,
                          timeout=settings.bq_deadline)

    def _new_query(self, client: bigquery.Client, start_index: int = 0):
        """A new job of the query, and its result from row `start_index` on."""
        settings = self.settings
        # job_retry=None: otherwise the client wraps jobs.insert in a second retry of ten minutes.
        job = client.query(self.sql, job_config=self._job_config(), retry=self._retry(), job_retry=None, timeout=settings.bq_deadline)
        log.info("BigQuery job %s is reading %s", job.job_id, self.table)
        rows = self._rows_of(job, start_index, DEFAULT_JOB_RETRY.with_timeout(settings.bq_deadline))
        self._note(job, rows)
        return job, rows

    def _job_config(self) -> bigquery.QueryJobConfig:
        return bigquery.QueryJobConfig(
            query_parameters=[
                # The window is New York wall-clock time; the table's TIMESTAMPs are that (UTC_LABEL=wall-clock) or instants.
                bigquery.ScalarQueryParameter("min_date", "TIMESTAMP", source_timestamp(self.settings.min_date, self.settings.utc_label)),
                bigquery.ScalarQueryParameter("max_date", "TIMESTAMP", source_timestamp(self.settings.max_date, self.settings.utc_label)),
            ]
        )
