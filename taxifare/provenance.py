"""Which raw rides a processed output was made from, and whether an existing output may serve a new run.

A raw file is known by its path, size, modification time and a fingerprint of its content: a SHA-256 of
its size, first megabyte and last megabyte, which costs the same on a 1 MB and a 100 GB file. A BigQuery
source is known by its table and date window; once read, by its raw cache file too, which the next run
reads instead.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from taxifare.errors import InputError

FINGERPRINT_BYTES = 1 << 20
# Manifest entries that must match, besides the raw input, for an output to serve a run.
SETTING_KEYS = ("preprocessor_version", "csv_format", "min_date", "max_date", "data_size")


class OutputConflict(InputError):
    """An existing output was made from other rides or settings; only --force may replace it."""


def content_fingerprint(file: BinaryIO, size: int) -> str:
    """SHA-256 of the size, the first and the last megabyte of an open binary file of `size` bytes."""
    digest = hashlib.sha256(str(size).encode())
    file.seek(0)
    digest.update(file.read(FINGERPRINT_BYTES))
    if size > FINGERPRINT_BYTES:
        file.seek(max(size - FINGERPRINT_BYTES, FINGERPRINT_BYTES))
        digest.update(file.read(FINGERPRINT_BYTES))
    return "sha256:" + digest.hexdigest()


def file_identity(path: Path) -> dict:
    """Path (absolute), size, modification time (UTC) and content fingerprint of a local file."""
    path = Path(path).resolve()
    with path.open("rb") as file:
        status = os.fstat(file.fileno())
        fingerprint = content_fingerprint(file, status.st_size)
    return {"path": str(path), "bytes": status.st_size, "modified": utc_text(status.st_mtime_ns), "fingerprint": fingerprint}


def utc_text(nanoseconds: int) -> str:
    moment = dt.datetime.fromtimestamp(nanoseconds // 1_000_000_000, dt.timezone.utc)
    return (moment + dt.timedelta(microseconds=nanoseconds // 1000 % 1_000_000)).isoformat()


def csv_raw(locations: list[str | Path]) -> dict:
    """The `raw` record of CSV input: each file's identity, from a local path or an fsspec URL."""
    return {"kind": "csv", "files": [_identity(str(location)) for location in locations]}


def _identity(location: str) -> dict:
    return _url_identity(location) if "://" in location else file_identity(Path(location))


def _url_identity(url: str) -> dict:
    """file_identity of a file that fsspec reads; its modification time as that file system gives it."""
    import fsspec

    filesystem, path = fsspec.core.url_to_fs(url)
    info = filesystem.info(path)
    modified = next((info[key] for key in ("mtime", "LastModified", "updated", "created") if info.get(key)), None)
    if isinstance(modified, (int, float)):
        modified = utc_text(int(modified * 1e9))
    with filesystem.open(path, "rb") as file:
        fingerprint = content_fingerprint(file, info["size"])
    return {"path": url, "bytes": info["size"], "modified": str(modified), "fingerprint": fingerprint}


def bigquery_raw(table: str, min_date: dt.datetime, max_date: dt.datetime) -> dict:
    return {"kind": "bigquery", "table": table, "min_date": min_date.isoformat(), "max_date": max_date.isoformat()}


def same_input(previous: dict | None, fresh: dict) -> bool:
    """Whether `previous` (a manifest's `raw`) names the rows `fresh` names. A BigQuery window matches a
    CSV when the CSV is the window's raw cache as that run left it."""
    if previous is None:
        return False
    if fresh["kind"] == "bigquery":
        return all(previous.get(key) == fresh[key] for key in ("kind", "table", "min_date", "max_date"))
    return previous.get("files") == fresh["files"]


def describe_raw(raw: dict | None, source: dict | None = None) -> str:
    if raw is None:
        where = (source or {}).get("path") or (source or {}).get("table") or "an unknown input"
        return f"{where} (recorded by an older taxifare, without a fingerprint)"
    if raw["kind"] == "bigquery":
        return f"BigQuery table {raw['table']}, pickups from {raw['min_date']} to {raw['max_date']}"
    files = raw["files"]
    if len(files) == 1:
        return _describe_file(files[0])
    return f"{len(files)} files, {files[0]['path']} first ({sum(file['bytes'] for file in files):,} bytes)"


def _describe_file(file: dict) -> str:
    modified = file["modified"][:19].replace("T", " ")
    return f"{file['path']} ({file['bytes']:,} bytes, modified {modified} UTC, {file['fingerprint'][:15]})"


def conflict(previous: dict, fresh: dict) -> str | None:
    """How an output's manifest `previous` differs from this run's `fresh` one, in words; None if it does not."""
    if not same_input(previous.get("raw"), fresh["raw"]):
        return f"was made from {describe_raw(previous.get('raw'), previous.get('source'))}; this run reads {describe_raw(fresh['raw'])}"
    for key in SETTING_KEYS:
        if previous.get(key) != fresh[key]:
            return f"was made with {key} {previous.get(key)}; this run has {key} {fresh[key]}"
    return None


def data_size_for(input_text: str) -> str:
    """A data set name for outputs made from `input_text`: its file name's stem, as letters, digits and _."""
    stem = PurePosixPath(str(input_text).replace("\\", "/")).stem
    return re.sub(r"[^A-Za-z0-9_]+", "_", stem).strip("_")[:64] or "input"
