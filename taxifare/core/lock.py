"""One writer per output: an advisory lock file that names its owner.

The lock is an `flock` on `<output>.lock`, so the kernel releases it when its process dies, however it
dies; the file's text (pid, host, start time, command) is only there to tell the user who holds it and
to note when a dead process's lock is taken over. A lock released normally removes its file; one whose
process was killed stays until the next run takes it over.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
import socket
import sys
from pathlib import Path

from taxifare.core.errors import TaxifareError
from taxifare.core.files import writing

log = logging.getLogger("taxifare")


class LockedError(TaxifareError):
    exit_code = 1


def lock_path(target: Path) -> Path:
    return target.with_name(target.name + ".lock")


def _owner_text() -> str:
    return json.dumps(
        {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join(os.path.basename(arg) if i == 0 else arg for i, arg in enumerate(sys.argv))[:300],
        }
    )


def _read_owner(file) -> dict:
    file.seek(0)
    try:
        owner = json.loads(file.read() or "{}")
    except ValueError:
        return {}
    return owner if isinstance(owner, dict) else {}


class OutputLock:
    """`with OutputLock(path, "processed file"):` holds the lock for `path` or raises LockedError."""

    def __init__(self, target: Path, what: str, doing: str | None = None):
        self.path = lock_path(Path(target))
        self.what = what
        self.doing = doing or f"creating the {what}"
        self._file = None

    def __enter__(self) -> "OutputLock":
        with writing(self.doing):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            file = self._lock_current_file()
        previous = _read_owner(file)
        if previous.get("pid") and not _is_alive(previous):
            log.warning("taking over the lock left by process %s, which is no longer running", previous["pid"])
        file.seek(0)
        file.truncate()
        file.write(_owner_text())
        file.flush()
        self._file = file
        _held.add(file.fileno())
        return self

    def _lock_current_file(self):
        """The lock file, locked; retried when its holder removed it between our open and our lock."""
        while True:
            file = open(self.path, "a+", encoding="utf-8")
            try:
                fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = _read_owner(file)
                file.close()
                raise LockedError(
                    f"the {self.what} is in use by process {owner.get('pid', '?')} on {owner.get('host', '?')} "
                    f"(started {owner.get('started', '?')}: {owner.get('command', '?')}); "
                    f"wait for it to finish or stop it (lock: {self.path})"
                ) from None
            if _same_file(file, self.path):
                return file
            file.close()

    def __exit__(self, *exc_info) -> None:
        # Removed while still locked: a process that opened the old file and locks it after us sees that
        # the path no longer leads to it, and starts over (see _lock_current_file).
        _held.discard(self._file.fileno())
        with contextlib.suppress(OSError):
            self.path.unlink()
        self._file.close()
        self._file = None


def _same_file(file, path: Path) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(file.fileno()).st_ino
    except FileNotFoundError:
        return False


# Descriptors of the locks this process holds. A forked child (a local Dask worker) closes its copies,
# so that the lock dies with the process that took it, not with the last of its children.
_held: set[int] = set()


def _close_held_locks() -> None:
    for descriptor in _held:
        os.close(descriptor)
    _held.clear()


os.register_at_fork(after_in_child=_close_held_locks)


def _is_alive(owner: dict) -> bool:
    if owner.get("host") != socket.gethostname():
        return True
    import psutil  # here: only a lock found held needs it, and it costs every command's start-up 10 ms

    return psutil.pid_exists(int(owner["pid"]))
