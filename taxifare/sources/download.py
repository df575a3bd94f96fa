"""A download kept on disk piece by piece, so that a rerun continues after the last piece written.

`.NAME.partial` holds the bytes so far and `.NAME.partial.json` what they are: the rows and bytes of the
pieces flushed to disk, and where they come from (`origin`, e.g. a BigQuery job) for a rerun to ask
for the rest. Each piece is flushed to disk before the record is replaced atomically, so the record
never claims bytes that are not there; a rerun cuts off anything past it. commit() renames the partial
file to NAME, which therefore only ever appears complete. `content` hashes the bytes appended (after
those that a rerun reads back from the partial file into it), for NAME's fingerprint.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from taxifare.core.errors import InputError
from taxifare.core.files import atomic_write_json, fsync_path, read_json
from taxifare.sources.identity import ContentHash


@dataclass
class Downloaded:
    origin: dict  # where the pieces come from, as the downloader needs it to ask for the rest
    rows: int = 0
    bytes: int = 0


class ResumableDownload:
    def __init__(self, path: Path, identity: dict):
        self.path = Path(path)
        self.partial = self.path.with_name(f".{self.path.name}.partial")
        self.record = self.path.with_name(f".{self.path.name}.partial.json")
        self.identity = identity  # what is downloaded; a record of anything else is not continued
        self.progress: Downloaded | None = None
        self.content = ContentHash()
        self._file = None

    def saved(self) -> Downloaded | None:
        """The progress of an earlier run that downloaded the same thing, its bytes cut back to the record."""
        try:
            record = read_json(self.record, "download record")
        except InputError:
            return None
        if record.get("identity") != self.identity or not self.partial.is_file():
            return None
        progress = Downloaded(**record["progress"])
        if self.partial.stat().st_size < progress.bytes:
            return None
        os.truncate(self.partial, progress.bytes)
        return progress

    def start(self, progress: Downloaded, header: bytes = b"") -> None:
        """Append to the partial file from `progress` (one that saved() returned, its origin possibly
        replaced), or begin it anew with `header`."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.progress = progress
        self._file = self.partial.open("ab" if progress.bytes else "wb")
        if progress.bytes:
            self._save_record()
        else:
            self.append(header, rows=0)

    def append(self, data: bytes, rows: int) -> None:
        self._file.write(data)
        self._file.flush()
        os.fsync(self._file.fileno())
        self.content.update(self.progress.bytes, data)
        self.progress.rows += rows
        self.progress.bytes += len(data)
        self._save_record()

    def _save_record(self) -> None:
        atomic_write_json(self.record, {"identity": self.identity, "progress": vars(self.progress)})

    def commit(self) -> None:
        self._file.close()
        os.replace(self.partial, self.path)
        self.record.unlink()
        fsync_path(self.path.parent)

    def close(self) -> None:
        """Stop, keeping what was written for a rerun to continue."""
        if self._file is not None:
            self._file.close()

    def discard(self) -> None:
        self.close()
        self.partial.unlink(missing_ok=True)
        self.record.unlink(missing_ok=True)
        self.content = ContentHash()
