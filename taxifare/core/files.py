"""File I/O that survives crashes: every complete-looking file was written in full, then renamed into place."""

from __future__ import annotations

import ctypes
import errno
import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Iterator, TypeVar

from taxifare.core.errors import InputError, TaxifareError

T = TypeVar("T")


def fsync_path(path: Path) -> None:
    """Flush a file, or a folder's entries (after a rename in it), to disk."""
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

    @property
    def file(self) -> BinaryIO:
        """The temporary file itself, for writers that want a real file object (pyarrow's)."""
        return self._file

    def fileno(self) -> int:
        """The file descriptor, for copies made by the kernel; what write() buffered is flushed first."""
        self._file.flush()
        return self._file.fileno()

    def commit(self, durable: bool = True) -> None:
        """Rename the file into place; `durable`: flushed to disk first, and the rename after it.

        Not durable is for intermediate files whose size a later check compares with a durable record:
        a process killed after the rename leaves them whole, and only a machine crash can cut them short.
        """
        self._file.flush()
        if durable:
            os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self.temporary, self.path)
        self._committed = True
        if durable:
            fsync_path(self.path.parent)

    def __exit__(self, *exc_info) -> None:
        if not self._committed:
            self._file.close()
            self.temporary.unlink(missing_ok=True)


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing a range of the file to disk now, without waiting for it, so that a
    later fsync finds little left to do (Linux's sync_file_range; elsewhere nothing: the fsync does it all)."""
    if _sync_file_range is not None:
        _sync_file_range(fd, offset, length, _SYNC_FILE_RANGE_WRITE)


def _libc_sync_file_range():
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    return function


_SYNC_FILE_RANGE_WRITE = 2
_sync_file_range = _libc_sync_file_range()


def atomic_write_bytes(path: Path, data: bytes, durable: bool = True) -> None:
    """Write `data` to a temporary file beside `path`, then rename it over `path`; `durable`: flushed to
    disk first, and the rename after it (see StagedFile.commit)."""
    with StagedFile(path) as staged:
        staged.write(data)
        staged.commit(durable)


def atomic_write_json(path: Path, value: Any, durable: bool = True) -> None:
    atomic_write_bytes(path, (json.dumps(value, indent=2, sort_keys=False) + "\n").encode(), durable)


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
    the operation, e.g. "creating the processed file". Told neither the file nor the operation, and for an
    error that not only a write gives (a read can fail with permission denied, or an I/O error), it says
    which file could not be accessed rather than claim a write."""
    where = path or error.filename or "a file"
    verb = "write" if path or doing or error.errno in _WRITE_ERRNOS else "access"
    return TaxifareError(f"could not {verb} {where}{f' ({doing})' if doing else ''}: {_reason(error)}")


def _reason(error: OSError) -> str:
    return error.strerror or str(error)


@contextmanager
def writing(doing: str) -> Iterator[None]:
    """`with writing("creating the processed file"):` a failed file operation inside is one line naming it."""
    try:
        yield
    except OSError as error:
        if error.errno not in FILE_SYSTEM_ERRNOS:
            raise
        raise describe_os_error(error, doing=doing) from error


@contextmanager
def reading(path: Path | str, what: str) -> Iterator[None]:
    """`with reading(path, "the raw rides"):` a failed read inside is one line naming the file and the read."""
    try:
        yield
    except OSError as error:
        kind = InputError if error.errno in _BAD_INPUT_ERRNOS else TaxifareError
        raise kind(f"could not read {what} from {error.filename or path}: {_reason(error)}") from error


def reads_of(items: Iterable[T], path: Path | str, what: str) -> Iterator[T]:
    """`items`, as they are read from `path`: a failed read while producing one is one line (see reading)."""
    with reading(path, what):
        yield from items


# Failures of the file system rather than of taxifare: the user can act on them (another path, more space).
_WRITE_ERRNOS = {errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
FILE_SYSTEM_ERRNOS = {*_WRITE_ERRNOS, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EISDIR}
# A file that cannot be read for these is bad input (exit 2); for others (an I/O error), a failure (exit 1).
_BAD_INPUT_ERRNOS = {errno.EACCES, errno.EPERM, errno.ENOENT, errno.ENOTDIR, errno.EISDIR}


def file_system_error(error: BaseException) -> TaxifareError | None:
    """One line naming the file, for an OSError of the file system that nothing closer to it explained."""
    if not isinstance(error, OSError) or error.errno not in FILE_SYSTEM_ERRNOS:
        return None
    return describe_os_error(error)
