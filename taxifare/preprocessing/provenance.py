"""Whether an existing processed output belongs to the input and settings of a new run.

An output may be reused only after its input's content is read again and found the same (see
sources/identity.py for what is recorded); an unfinished output is continued only if the bytes read
again up to where it stopped are the same.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

from taxifare.sources.identity import ContentHash, file_fingerprint

_STAT_KEYS = ("path", "bytes", "modified")
# Manifest entries that must match, besides the raw input, for an output to serve a run.
SETTING_KEYS = ("preprocessor_version", "csv_format", "utc_label", "min_date", "max_date", "data_size")


def same_input(previous: dict | None, fresh: dict) -> bool:
    """Whether `previous` (a manifest's `raw`) names the rows `fresh` names, as far as can be told without
    reading them: the same table and window, or the same files at the same size and time (see
    changed_file). A BigQuery window matches a CSV when the CSV is the window's raw cache as that run
    left it."""
    if previous is None:
        return False
    if fresh["kind"] == "bigquery":
        return all(previous.get(key) == fresh[key] for key in ("kind", "table", "min_date", "max_date"))
    return [_stat(file) for file in previous.get("files") or []] == [_stat(file) for file in fresh["files"]]


def _stat(file: dict) -> dict:
    return {key: file.get(key) for key in _STAT_KEYS}


def changed_file(raw: dict) -> tuple[dict, dict] | None:
    """The first file of `raw` (a complete output's) that no longer holds what was read, each read whole to
    tell: as recorded, and with the fingerprint it has now."""
    for file in raw.get("files", []):
        if "fingerprint" in file:
            now = {**file, "fingerprint": file_fingerprint(file["path"])}
            if now["fingerprint"] != file["fingerprint"]:
                return file, now
    return None


def describe_raw(raw: dict | None, source: dict | None = None) -> str:
    if raw is None:
        where = (source or {}).get("path") or (source or {}).get("table") or "an unknown input"
        return f"{where} (recorded by an older taxifare, without a fingerprint)"
    if raw["kind"] == "bigquery":
        return f"BigQuery table {raw['table']}, pickups from {raw['min_date']} to {raw['max_date']}"
    files = raw["files"]
    if len(files) == 1:
        return describe_file(files[0])
    return f"{len(files)} files, {files[0]['path']} first ({sum(file['bytes'] for file in files):,} bytes)"


def describe_file(file: dict) -> str:
    modified = file["modified"][:19].replace("T", " ")
    fingerprint = f", {file['fingerprint'][:18]}" if "fingerprint" in file else ""
    return f"{file['path']} ({file['bytes']:,} bytes, modified {modified} UTC{fingerprint})"


def conflict(previous: dict, fresh: dict) -> str | None:
    """How an output's manifest `previous` differs from this run's `fresh` one, in words; None if it does not.
    A complete output's input is read whole to tell (the one read of it when the output is reused)."""
    raw = previous.get("raw")
    if not (same_input(raw, fresh["raw"]) or window_cache_of(previous, fresh)):
        return f"was made from {describe_raw(raw, previous.get('source'))}; this run reads {describe_raw(fresh['raw'])}"
    for key in SETTING_KEYS:
        if previous.get(key) != fresh[key]:
            return f"was made with {key} {previous.get(key)}; this run has {key} {fresh[key]}"
    changed = changed_file(raw) if previous.get("complete") and fresh["raw"]["kind"] == "csv" else None
    if changed:
        return f"was made from {describe_file(changed[0])}; this run reads {describe_file(changed[1])}, other content at the same size and time"
    return None


def window_cache_of(unfinished: dict, fresh: dict) -> bool:
    """Whether `unfinished` is a BigQuery window's output interrupted after its download became the raw
    cache that `fresh` reads: the same rows, which a fresh start from the cache gives byte for byte."""
    source = unfinished.get("source") or {}
    return (unfinished.get("complete") is False and source.get("kind") == "bigquery"
            and fresh["source"].get("kind") == "csv" and fresh["source"].get("path") == source.get("cache")
            and fresh.get("input") is None)


def expect_the_bytes_read_before(content: ContentHash, unfinished: dict, partial: Path) -> None:
    """A resumed run reads its input from the start again: the bytes that the chunks already written came
    from must be those it reads now (a file rewritten at the same size and time is not)."""
    raw = unfinished["raw"]
    if "read" in raw:
        where = raw["files"][0]["path"] if raw["kind"] == "csv" else f"the download of {raw['table']}"
        content.expect(raw["read"], f"unfinished {partial} was made from other content of {where}, changed since "
                                    "at the same size and time; pass --force to discard it")


def data_size_for(input_text: str) -> str:
    """A data set name for outputs made from `input_text`: its file name's stem, as letters, digits and _."""
    stem = PurePosixPath(str(input_text).replace("\\", "/")).stem
    return re.sub(r"[^A-Za-z0-9_]+", "_", stem).strip("_")[:64] or "input"
