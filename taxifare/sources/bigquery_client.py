"""The BigQuery client as taxifare uses it, and what its failures mean, in one line each."""

from __future__ import annotations

import concurrent.futures
import re

import requests
from google.api_core import exceptions as api_exceptions
from google.auth import exceptions as auth_exceptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from taxifare.core.config import Settings
from taxifare.core.errors import InputError, TaxifareError

CLIENT_ERRORS = (
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
            f"Google Cloud refused the credentials ({reason(cause)}); run `gcloud auth application-default login`"
        )
    if isinstance(cause, api_exceptions.Forbidden):
        return TaxifareError(
            f"BigQuery permission denied: {reason(cause)} (the job reads {table} and runs in project "
            f"{job_project(settings)}{'' if settings.gcp_project else ' because GCP_PROJECT is not set'}; "
            "set GCP_PROJECT to a project where you may run BigQuery jobs)"
        )
    if isinstance(cause, api_exceptions.NotFound):
        return InputError(
            f"BigQuery: {reason(cause)}; check GCP_PROJECT_DATA, BQ_DATASET and DATA_SIZE (table {table})"
        )
    if isinstance(cause, api_exceptions.BadRequest):
        return TaxifareError(f"BigQuery rejected the query on {table}: {reason(cause)}")
    if isinstance(cause, (TimeoutError, concurrent.futures.TimeoutError)):
        return TaxifareError(
            f"the BigQuery query on {table} did not finish within BQ_DEADLINE={settings.bq_deadline:g} s; "
            "raise BQ_DEADLINE for a large query"
        )
    if isinstance(cause, _UNREACHABLE_ERRORS):
        where = settings.bigquery_emulator_host or "BigQuery"
        return TaxifareError(
            f"no answer from {where} within BQ_DEADLINE={settings.bq_deadline:g} s ({reason(cause)}); "
            "check the network connection, or raise BQ_DEADLINE"
        )
    return TaxifareError(f"BigQuery failed: {reason(cause)}")


def reason(error: BaseException) -> str:
    if isinstance(error, api_exceptions.GoogleAPICallError):
        # The server's own message, without the request URL and job footer the client wraps it in.
        messages = [item.get("message") for item in error.errors if isinstance(item, dict) and item.get("message")]
        message = messages[0] if messages else (error.message or "").strip().split("\n")[0]
        return f"{error.code or ''} {message}".strip()
    text = str(error).strip().split("\n")[0]
    found = re.search(r"\[Errno -?\d+\] [^'\")]+|Remote end closed connection without response|timed out", text)
    return found.group(0) if found else text[:200] or type(error).__name__
