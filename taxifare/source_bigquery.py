"""Raw rides from BigQuery: one parameterized query, read page by page and written through to the raw cache.

Each page is turned into the canonical raw text (the very strings a CSV reader returns for the cache
file), appended to a partial file beside the cache and handed on at once. The partial file becomes the
cache only after the last page, so an interrupted query never leaves a cache that looks complete, and
a rerun from the cache feeds cleaning exactly the same strings. An interrupted download is continued:
the rerun reads the rows already on disk, then asks the same finished query job for its result from
the next row (see download.py), so the cache and the processed output are those of an unbroken run.
"""

from __future__ import annotations

import concurrent.futures
import io
import logging
import re
from contextlib import closing
from typing import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import requests
from google.api_core import exceptions as api_exceptions
from google.auth import exceptions as auth_exceptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery
from google.cloud.bigquery.retry import DEFAULT_JOB_RETRY

from taxifare.config import Settings
from taxifare.errors import InputError, TaxifareError
from taxifare.download import Downloaded, ResumableDownload
from taxifare.source import RAW_COLUMNS, RAW_SCHEMA, CsvRideSource, exact_size_chunks

log = logging.getLogger("taxifare")

_QUERY = """
SELECT {columns}
FROM `{table}`
WHERE pickup_datetime >= @min_date AND pickup_datetime < @max_date
ORDER BY pickup_datetime
"""
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
DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S UTC"

_CLIENT_ERRORS = (
    api_exceptions.GoogleAPIError,
    auth_exceptions.GoogleAuthError,
    requests.exceptions.RequestException,
    ConnectionError,
    TimeoutError,
    concurrent.futures.TimeoutError,
)
_UNREACHABLE_ERRORS = (
    api_exceptions.ServerError,
    api_exceptions.TooManyRequests,
    auth_exceptions.TransportError,
    requests.exceptions.RequestException,
    ConnectionError,
)


def query_sql(table: str) -> str:
    if not _TABLE_ID.fullmatch(table):
        raise InputError(f"BigQuery table {table!r} is not a valid project.dataset.table name")
    return _QUERY.format(columns=", ".join(RAW_COLUMNS), table=table)


def raw_text_table(page: pd.DataFrame) -> pa.Table:
    """The page as the raw cache's strings: datetimes as `2009-06-15 17:26:21 UTC`, floats in their
    shortest round-trip form, passenger counts as whole numbers, NULL (and NaN) as null."""
    return pa.Table.from_arrays([_as_text(page[name]) for name in RAW_COLUMNS], schema=RAW_SCHEMA)


def _as_text(column: pd.Series) -> pa.Array:
    values = pa.array(column, from_pandas=True)
    if pa.types.is_timestamp(values.type):
        # strftime's %S would print the fraction of a second of a finer unit.
        seconds = pc.cast(pc.floor_temporal(values, unit="second"), pa.timestamp("s", tz="UTC"))
        return pc.strftime(seconds, format=DATETIME_FORMAT)
    return pc.cast(values, pa.string())


def _csv_header() -> bytes:
    return (",".join(RAW_COLUMNS) + "\n").encode()


def _csv_rows(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    # No value of the canonical text needs quotes; a null is an empty field.
    options = pa_csv.WriteOptions(include_header=False, quoting_style="none")
    pa_csv.write_csv(table, buffer, write_options=options)
    return buffer.getvalue()


def job_project(settings: Settings) -> str:
    """The project that runs (and pays for) the query job."""
    return settings.gcp_project or settings.gcp_project_data


def bigquery_client(settings: Settings) -> bigquery.Client:
    emulator = settings.bigquery_emulator_host
    return bigquery.Client(
        project=job_project(settings),
        # Without explicit anonymous credentials the client looks for a Google account even for an emulator.
        credentials=AnonymousCredentials() if emulator else None,
        client_options={"api_endpoint": emulator} if emulator else None,
    )


class BigQueryRideSource:
    """Rides of the settings' date window from `{GCP_PROJECT_DATA}.{BQ_DATASET}.raw_{DATA_SIZE}`, in chunks of
    CHUNK_SIZE rows, written through to the raw cache.

    Resumable when an earlier run left a partial download: the rerun reads the same job's result in the
    same order, the rows already downloaded from the partial file (a new query might return rides with
    equal pickup times in another order). The partial file has a fixed name, so the caller must hold
    the processed file's lock for the same window (preprocess does).
    """

    position = "row"
    first_malformed = None

    def __init__(self, settings: Settings):
        self.settings = settings
        self.table = settings.bq_table
        self.sql = query_sql(self.table)
        self.cache_path = settings.raw_cache_path
        identity = {"sql": self.sql, "min_date": str(settings.min_date), "max_date": str(settings.max_date)}
        self._download = ResumableDownload(self.cache_path, identity)
        self._saved = self._download.saved()
        self.resumable = self._saved is not None
        self.malformed_rows = 0
        self._total_rows: int | None = None
        self._details: dict = {}

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
        download, saved = self._download, self._saved
        try:
            rows = self._result(download, saved)
            if saved is not None:
                for table in CsvRideSource(download.partial, self.settings.chunk_size).chunks():
                    yield from table.to_batches()
            for page in self._pages(rows):
                text = raw_text_table(page)
                download.append(_csv_rows(text), text.num_rows)
                yield from text.to_batches()
            download.commit()
        finally:
            download.close()
        log.info("cached the query result as %s", self.cache_path)

    def _result(self, download: ResumableDownload, saved: Downloaded | None):
        """The query result to read, from the first row not downloaded yet."""
        settings = self.settings
        retry = bigquery.DEFAULT_RETRY.with_timeout(settings.bq_deadline)
        try:
            client = bigquery_client(settings)
            if saved is not None:
                rows = self._continued(client, download, saved, retry)
                download.start(saved)
                log.info("continuing the download of BigQuery job %s after row %d", saved.origin["job_id"], saved.rows)
                return rows
            job, rows = self._new_query(client, retry)
            download.start(Downloaded({"job_id": job.job_id, "project": job.project, "location": job.location}), _csv_header())
            return rows
        except _CLIENT_ERRORS as error:
            raise explain_failure(error, settings) from None

    def _continued(self, client: bigquery.Client, download: ResumableDownload, saved: Downloaded, retry):
        """The saved job's result from the first row not downloaded yet."""
        origin, settings = saved.origin, self.settings
        try:
            job = client.get_job(origin["job_id"], project=origin["project"], location=origin["location"], retry=retry)
            # job_retry=None: a job fetched by id cannot be rerun by the client, only read.
            rows = job.result(page_size=settings.chunk_size, start_index=saved.rows, retry=retry, job_retry=None, timeout=settings.bq_deadline)
        except api_exceptions.NotFound:
            # A new query may order rides of equal pickup times otherwise: the rows so far cannot be kept.
            download.discard()
            raise TaxifareError(
                f"BigQuery no longer holds the result of job {origin['job_id']} (it keeps one about a day); "
                f"the partial download of {self.cache_path.name} is discarded: rerun to query afresh"
            ) from None
        self._note(job, rows)
        return rows

    def _pages(self, rows) -> Iterator[pd.DataFrame]:
        try:
            yield from rows.to_dataframe_iterable(dtypes=PAGE_DTYPES)
        except _CLIENT_ERRORS as error:
            raise explain_failure(error, self.settings) from None

    def _note(self, job, rows) -> None:
        self._total_rows = rows.total_rows
        self._details = {
            "job_id": job.job_id,
            "location": job.location,
            "bytes_processed": job.total_bytes_processed,
            "rows": rows.total_rows,
        }

    def _new_query(self, client: bigquery.Client, retry):
        settings = self.settings
        # job_retry=None: otherwise the client wraps jobs.insert in a second retry of ten minutes.
        job = client.query(self.sql, job_config=self._job_config(), retry=retry, job_retry=None, timeout=settings.bq_deadline)
        log.info("BigQuery job %s is reading %s", job.job_id, self.table)
        job_retry = DEFAULT_JOB_RETRY.with_timeout(settings.bq_deadline)
        rows = job.result(page_size=settings.chunk_size, retry=retry, job_retry=job_retry, timeout=settings.bq_deadline)
        self._note(job, rows)
        return job, rows

    def _job_config(self) -> bigquery.QueryJobConfig:
        return bigquery.QueryJobConfig(
            query_parameters=[
                bigquery.ScalarQueryParameter("min_date", "TIMESTAMP", self.settings.min_date),
                bigquery.ScalarQueryParameter("max_date", "TIMESTAMP", self.settings.max_date),
            ]
        )


def explain_failure(error: Exception, settings: Settings) -> TaxifareError:
    """One line that says what went wrong with BigQuery and what to do about it."""
    cause = error
    while isinstance(cause, api_exceptions.RetryError) and cause.cause is not None:
        cause = cause.cause
    table = settings.bq_table
    if isinstance(cause, auth_exceptions.DefaultCredentialsError):
        return InputError(
            f"no raw data in {settings.raw_cache_path} and no Google Cloud credentials to query BigQuery: run "
            "`gcloud auth application-default login` and set GCP_PROJECT, or use local data instead "
            "(--input PATH, or `taxifare demo-data` with DATA_SIZE=demo)"
        )
    if isinstance(cause, (auth_exceptions.RefreshError, api_exceptions.Unauthorized)):
        return TaxifareError(
            f"Google Cloud refused the credentials ({_reason(cause)}); run `gcloud auth application-default login`"
        )
    if isinstance(cause, api_exceptions.Forbidden):
        return TaxifareError(
            f"BigQuery permission denied: {_reason(cause)} (the job reads {table} and runs in project "
            f"{job_project(settings)}{'' if settings.gcp_project else ' because GCP_PROJECT is not set'}; "
            "set GCP_PROJECT to a project where you may run BigQuery jobs)"
        )
    if isinstance(cause, api_exceptions.NotFound):
        return InputError(
            f"BigQuery: {_reason(cause)}; check GCP_PROJECT_DATA, BQ_DATASET and DATA_SIZE (table {table})"
        )
    if isinstance(cause, api_exceptions.BadRequest):
        return TaxifareError(f"BigQuery rejected the query on {table}: {_reason(cause)}")
    if isinstance(cause, (TimeoutError, concurrent.futures.TimeoutError)):
        return TaxifareError(
            f"the BigQuery query on {table} did not finish within BQ_DEADLINE={settings.bq_deadline:g} s; "
            "raise BQ_DEADLINE for a large query"
        )
    if isinstance(cause, _UNREACHABLE_ERRORS):
        where = settings.bigquery_emulator_host or "BigQuery"
        return TaxifareError(
            f"no answer from {where} within BQ_DEADLINE={settings.bq_deadline:g} s ({_reason(cause)}); "
            "check the network connection, or raise BQ_DEADLINE"
        )
    return TaxifareError(f"BigQuery failed: {_reason(cause)}")


def _reason(error: BaseException) -> str:
    if isinstance(error, api_exceptions.GoogleAPICallError):
        # The server's own message, without the request URL and job footer the client wraps it in.
        messages = [item.get("message") for item in error.errors if isinstance(item, dict) and item.get("message")]
        message = messages[0] if messages else (error.message or "").strip().split("\n")[0]
        return f"{error.code or ''} {message}".strip()
    text = str(error).strip().split("\n")[0]
    found = re.search(r"\[Errno -?\d+\] [^'\")]+|Remote end closed connection without response|timed out", text)
    return found.group(0) if found else text[:200] or type(error).__name__
