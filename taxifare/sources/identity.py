"""What raw rides were read: the identity of their files and a fingerprint of their content.

A raw file is known by its path, size and modification time, and once read by a fingerprint of its
whole content, which the readers compute from the bytes they read anyway (ContentHash). A BigQuery
source is known by its table and date window; once read, by its raw cache file too, which the next run
reads instead. Whether an output may serve a run is preprocessing/provenance.py's question.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from pathlib import Path
from typing import BinaryIO

import xxhash

from taxifare.core.errors import InputError

FINGERPRINT_BYTES = 1 << 20
SEGMENT_BYTES = 256 << 10  # a Dask range reads at most this much past its end to finish its last segment
_READ_BYTES = 16 << 20
_FINGERPRINT_KIND = "xxh3_128"


class OutputConflict(InputError):
    """An existing output was made from other rides or settings; only --force may replace it."""


class ContentHash:
    """The fingerprint of a file's content, computed by whatever reads the file.

    The file is cut into segments of SEGMENT_BYTES; the fingerprint is the XXH3-128 of the segments'
    XXH3-128 digests, in order. The reader of bytes [start, end) hashes the segments that begin there,
    reading on past `end` to the end of the last one (read_rest): the byte ranges of a Dask plan give,
    joined in order, the digests of the whole file, whatever the cut, so both engines record the same
    fingerprint. Reads may come in any order and overlap; only the bytes next in line are hashed.
    """

    def __init__(self, start: int = 0, end: int | None = None):
        self._next = _segment_start(start)  # the next byte to hash
        self._stop = None if end is None else max(_segment_start(end), self._next)
        self._segment = xxhash.xxh3_128()
        self._filled = 0  # bytes of the current segment hashed so far
        self._digests = bytearray()
        self._running = xxhash.xxh3_128()  # of the digests so far
        self._expected: tuple[dict, str] | None = None

    def update(self, position: int, data: bytes) -> None:
        """Hash what `data`, read from byte `position` on, brings of the bytes next in line."""
        skip = self._next - position
        if not 0 <= skip < len(data):
            return
        take = len(data) - skip if self._stop is None else min(len(data) - skip, self._stop - self._next)
        view = memoryview(data)[skip : skip + max(take, 0)]
        while view:
            piece = view[: SEGMENT_BYTES - self._filled]
            self._segment.update(piece)
            self._filled += len(piece)
            self._next += len(piece)
            view = view[len(piece) :]
            if self._filled == SEGMENT_BYTES:
                self._close_segment()

    def read_rest(self, file: BinaryIO) -> None:
        """Read from `file` what is left to hash: to the end of the range's last segment, or of the file."""
        while self._stop is None or self._next < self._stop:
            file.seek(self._next)
            data = file.read(_READ_BYTES if self._stop is None else min(_READ_BYTES, self._stop - self._next))
            if not data:
                break
            self.update(self._next, data)

    def mark(self) -> dict:
        """How far the hashing has come, for a later run to check with expect()."""
        return {"segments": len(self._digests) // 16, "digest": self._running.hexdigest()}

    def expect(self, mark: dict, conflict: str) -> None:
        """Raise OutputConflict(`conflict`) unless the first segments hashed are those of `mark`."""
        self._expected = (mark, conflict)
        self._check()

    def digests(self) -> bytes:
        """The digests of the segments hashed, the last (short) one closed: call at the end of reading."""
        if self._filled:
            self._close_segment()
        return bytes(self._digests)

    def fingerprint(self) -> str:
        self.digests()
        return f"{_FINGERPRINT_KIND}:{self._running.hexdigest()}"

    def _close_segment(self) -> None:
        digest = self._segment.digest()
        self._digests += digest
        self._running.update(digest)
        self._segment.reset()
        self._filled = 0
        self._check()

    def _check(self) -> None:
        if self._expected and self._expected[0]["segments"] == len(self._digests) // 16:
            (mark, conflict), self._expected = self._expected, None
            if self._running.hexdigest() != mark["digest"]:
                raise OutputConflict(conflict)


def _segment_start(offset: int) -> int:
    """The first segment boundary at or after `offset`."""
    return -(-offset // SEGMENT_BYTES) * SEGMENT_BYTES


def joined_fingerprint(digests: bytes) -> str:
    """The fingerprint of a file from its segments' digests (those of its byte ranges, joined in order)."""
    return f"{_FINGERPRINT_KIND}:{xxhash.xxh3_128(digests).hexdigest()}"


class HashedReader:
    """A binary file whose reads feed a ContentHash (the calls that the CSV readers make)."""

    def __init__(self, file: BinaryIO, content: ContentHash):
        self._file = file
        self.content = content

    def read(self, size: int = -1) -> bytes:
        position = self._file.tell()
        data = self._file.read(size)
        self.content.update(position, data)
        return data

    def readline(self, size: int = -1) -> bytes:
        position = self._file.tell()
        data = self._file.readline(size)
        self.content.update(position, data)
        return data

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def read_rest(self) -> None:
        self.content.read_rest(self._file)


def content_fingerprint(file: BinaryIO, size: int) -> str:
    """SHA-256 of the size, the first and the last megabyte of an open binary file of `size` bytes: the
    processed CSV's quick check, made on every training start (a raw input is hashed whole)."""
    digest = hashlib.sha256(str(size).encode())
    file.seek(0)
    digest.update(file.read(FINGERPRINT_BYTES))
    if size > FINGERPRINT_BYTES:
        file.seek(max(size - FINGERPRINT_BYTES, FINGERPRINT_BYTES))
        digest.update(file.read(FINGERPRINT_BYTES))
    return "sha256:" + digest.hexdigest()


def file_identity(path: Path) -> dict:
    """Path (absolute), size and modification time (UTC) of a local file."""
    path = Path(path).resolve()
    status = path.stat()
    return {"path": str(path), "bytes": status.st_size, "modified": utc_text(status.st_mtime_ns)}


def utc_text(nanoseconds: int) -> str:
    moment = dt.datetime.fromtimestamp(nanoseconds // 1_000_000_000, dt.timezone.utc)
    return (moment + dt.timedelta(microseconds=nanoseconds // 1000 % 1_000_000)).isoformat()


def csv_raw(locations: list[str | Path]) -> dict:
    """The `raw` record of CSV input before reading: each file's identity, from a local path or an fsspec URL."""
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
    return {"path": url, "bytes": info["size"], "modified": str(modified)}


def file_fingerprint(location: str) -> str:
    """The fingerprint of a file read whole (a local path or an fsspec URL)."""
    content = ContentHash()
    with _open_binary(location) as file:
        content.read_rest(file)
    return content.fingerprint()


def _open_binary(location: str):
    if "://" not in location:
        return open(location, "rb")
    import fsspec

    return fsspec.open(location, "rb")


def bigquery_raw(table: str, min_date: dt.datetime, max_date: dt.datetime) -> dict:
    return {"kind": "bigquery", "table": table, "min_date": min_date.isoformat(), "max_date": max_date.isoformat()}


def raw_after_reading(raw: dict, fingerprints: list[str], files: list[dict] | None = None) -> dict:
    """`raw` once read: each file (or, for BigQuery, the raw cache it wrote: `files`) with its fingerprint."""
    read = {key: value for key, value in raw.items() if key != "read"}
    return {**read, "files": [{**file, "fingerprint": fingerprint} for file, fingerprint in zip(files or raw["files"], fingerprints)]}
