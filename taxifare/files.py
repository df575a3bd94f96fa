"""File I/O that survives crashes: every complete-looking file was written in full, then renamed into place."""

from __future__ import annotations

import errno
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from taxifare.errors import InputError, TaxifareError


def fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class StagedFile:
    """`with StagedFile(path) as staged:` write() to a temporary file beside `path`; commit() flushes it to
    disk and renames it over `path`. Leaving the block without commit() deletes it, so `path` is only
    ever absent, as it was, or complete.
    """

    def __init__(self, path: Path, temporary: Path | None = None):
        self.path = Path(path)
        self.temporary = temporary or self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        self._file = None
        self._committed = False

    def __enter__(self) -> "StagedFile":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.temporary.open("wb")
        return self

    def write(self, data: bytes) -> None:
        self._file.write(data)

    def fileno(self) -> int:
        """The file descriptor, for copies made by the kernel; what write() buffered is flushed first."""
        self._file.flush()
        return self._file.fileno()

    def commit(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self.temporary, self.path)
        self._committed = True
        fsync_directory(self.path.parent)

    def __exit__(self, *exc_info) -> None:
        if not self._committed:
            self._file.close()
            self.temporary.unlink(missing_ok=True)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to a temporary file beside `path`, flush it to disk, then rename it over `path`."""
    with StagedFile(path) as staged:
        staged.write(data)
        staged.commit()


def atomic_write_json(path: Path, value: Any) -> None:
    atomic_write_bytes(path, (json.dumps(value, indent=2, sort_keys=False) + "\n").encode())


def read_json(path: Path, what: str) -> dict:
    """A JSON object from `path`; a missing, unreadable or non-object file is a clear InputError."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no such {what}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"{path}: unreadable {what} ({error})") from None
    if not isinstance(value, dict):
        raise InputError(f"{path}: unreadable {what} (expected a JSON object)")
    return value


def describe_os_error(error: OSError, path: Path | None = None, doing: str | None = None) -> TaxifareError:
    """One readable line for a failed write: no space, file too large, read-only, permission; `doing` names
    the operation, e.g. "creating the processed file"."""
    where = path or error.filename or "file"
    reason = error.strerror or str(error)
    return TaxifareError(f"could not write {where}{f' ({doing})' if doing else ''}: {reason}")


@contextmanager
def writing(doing: str) -> Iterator[None]:
    """`with writing("creating the processed file"):` a failed file operation inside is one line naming it."""
    try:
        yield
    except OSError as error:
        if error.errno not in FILE_SYSTEM_ERRNOS:
            raise
        raise describe_os_error(error, doing=doing) from error


# Failures of the file system rather than of taxifare: the user can act on them (another path, more space).
_WRITE_ERRNOS = {errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
FILE_SYSTEM_ERRNOS = {*_WRITE_ERRNOS, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EISDIR}


def file_system_error(error: BaseException) -> TaxifareError | None:
    """One line naming the file, for an OSError of the file system that nothing closer to it explained."""
    if not isinstance(error, OSError) or error.errno not in FILE_SYSTEM_ERRNOS:
        return None
    if error.errno in _WRITE_ERRNOS:
        return describe_os_error(error)
    return TaxifareError(f"could not access {error.filename or 'a file'}: {error.strerror or error}")
