"""The parts folder beside the processed CSV: what each phase leaves, every file complete or absent.

    processed_….parts/
      job.json               the job's identity and plan; a different job clears the folder
      scan-00007.csv         features of partition 7's rows that break no rule, duplicates still in
      scan-00007.hashes.npy  hashes of its rows that reach the duplicate rule, grouped by hash bucket
      scan-00007.npz         per such row: later-rule verdict and row number; per candidate: fare
      scan-00007.json        its counts and the sizes of the three, written last: partition 7 is scanned
      part-00007.csv         partition 7's final rows, no header (the processed CSV is the header and
                             the parts in order)
      part-00007.npy         the fares of the local chunks that its edges cut (see target_sum.py)
      part-00007.json        its counts, fare sums and the sizes of the two, written last: partition 7 is settled

Every file is written to a temporary name and renamed into place, so a task that runs twice (retried
after its worker died, or left running by a killed client) leaves the same complete files. None of
them is flushed to disk (the processed CSV made of the parts is, at the end, and so are the parts that
--keep-parts keeps): a record counts only if it reads whole and the files it describes have the sizes it
gives, so whatever a machine crash cut short is made again (a file system that writes data before the
metadata that points to it, as ext4 and XFS do, leaves a file short, never holding stale bytes). A
flush per file kept each worker waiting on the disk for a tenth of a second or more per partition: a
journal commit also waits for the processed CSV's bytes that are being written.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np

from taxifare.core.errors import InputError
from taxifare.core.files import atomic_write_bytes, atomic_write_json, fsync_path, read_json


def parts_folder_for(processed_path: Path) -> Path:
    return processed_path.with_suffix(".parts")


class PartsFolder:
    def __init__(self, path: Path):
        self.path = Path(path)

    def scan_csv(self, index: int) -> Path:
        return self.path / f"scan-{index:05d}.csv"

    def scan_hashes(self, index: int) -> Path:
        return self.path / f"scan-{index:05d}.hashes.npy"

    def scan_arrays(self, index: int) -> Path:
        return self.path / f"scan-{index:05d}.npz"

    def scan_record(self, index: int) -> Path:
        return self.path / f"scan-{index:05d}.json"

    def part_csv(self, index: int) -> Path:
        return self.path / f"part-{index:05d}.csv"

    def part_fares(self, index: int) -> Path:
        return self.path / f"part-{index:05d}.npy"

    def part_record(self, index: int) -> Path:
        return self.path / f"part-{index:05d}.json"

    def settled(self, index: int) -> bool:
        # The scan's record and hashes too: a rerun counts the partition's rows from the one, and the
        # duplicate chains of the partitions after it read the other.
        return _whole(self.part_record(index), {"bytes": self.part_csv(index), "fares_bytes": self.part_fares(index)}) and _whole(
            self.scan_record(index), {"hashes_bytes": self.scan_hashes(index)})

    def scanned(self, index: int) -> bool:
        return self.settled(index) or _whole(self.scan_record(index), {
            "csv_bytes": self.scan_csv(index), "hashes_bytes": self.scan_hashes(index), "arrays_bytes": self.scan_arrays(index)})

    @property
    def job_path(self) -> Path:
        return self.path / "job.json"

    def read_record(self, path: Path) -> dict:
        return read_json(path, "part record")

    def write_record(self, path: Path, value: dict) -> None:
        atomic_write_json(path, value, durable=False)

    def previous_job(self) -> dict | None:
        return read_json(self.job_path, "parts job") if self.job_path.is_file() else None

    def start_job(self, job: dict) -> None:
        """An empty folder for `job`, whatever an earlier job left."""
        shutil.rmtree(self.path, ignore_errors=True)
        self.path.mkdir(parents=True)
        atomic_write_json(self.job_path, job)

    def remove(self, keep_parts: bool) -> None:
        """Everything once the processed CSV is complete; with `keep_parts`, all but the final parts."""
        if not keep_parts:
            shutil.rmtree(self.path, ignore_errors=True)
            return
        for path in self.path.iterdir():
            if path.name.startswith("part-") or path.name == "job.json":
                fsync_path(path)  # kept for later readers, so on disk as the processed CSV is
            else:
                path.unlink()

    def write_hashes(self, index: int, hashes: np.ndarray, positions: np.ndarray, buckets: int) -> int:
        """Row hashes with their positions, grouped by bucket (hash modulo `buckets`), input order kept
        within each; the file's size."""
        bucket = hashes % np.uint64(buckets)
        order = np.argsort(bucket, kind="stable")
        offsets = np.searchsorted(bucket[order], np.arange(buckets + 1, dtype=np.uint64))
        return save_array(
            self.scan_hashes(index),
            np.concatenate([offsets.astype(np.uint64), hashes[order], positions[order].astype(np.uint64)]),
        )

    def read_hashes(self, index: int, bucket: int, buckets: int) -> tuple[np.ndarray, np.ndarray]:
        """One bucket's hashes and positions from one partition; only that slice is read from disk."""
        data = np.load(self.scan_hashes(index), mmap_mode="r")
        offsets = data[: buckets + 1].astype(np.int64)
        start, stop, count = buckets + 1 + offsets[bucket], buckets + 1 + offsets[bucket + 1], offsets[-1]
        return np.array(data[start:stop]), np.array(data[start + count : stop + count]).astype(np.int64)

    def write_arrays(self, path: Path, **arrays: np.ndarray) -> int:
        """The arrays in one .npz file; its size."""
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        return _write(path, buffer)


def _whole(record: Path, files: dict[str, Path]) -> bool:
    """`record` exists and reads whole, and each file has the size that the record gives under its key."""
    try:
        sizes = read_json(record, "part record")
    except InputError:  # absent, or cut short by a machine crash
        return False
    return all(path.is_file() and path.stat().st_size == sizes.get(key) for key, path in files.items())


def save_array(path: Path, array: np.ndarray) -> int:
    """The array in one .npy file; its size."""
    buffer = io.BytesIO()
    np.save(buffer, array)
    return _write(path, buffer)


def _write(path: Path, buffer: io.BytesIO) -> int:
    data = buffer.getbuffer()
    atomic_write_bytes(path, data, durable=False)
    return data.nbytes
