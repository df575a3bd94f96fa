"""The duplicate index: time and memory of one chunk's update as the index grows, old against new.

    python benchmarks/bench_dedup.py --rows 1000000 10000000 50000000 --chunk 100000

Old: one sorted array, `np.insert` of each chunk's new hashes (copies the whole index every chunk).
New: taxifare.rides.dedup.SeenRows, sorted runs merged by size. Both are fed chunks of random 64-bit hashes
(all new, the worst case for the index). The new index is filled chunk by chunk from empty, so its
figure at each size includes the merges of a real run: the mean over the whole fill (amortized) and
the mean and worst of the next `--measure` chunks. The old index is set to a sorted array of that size
at once (filling it by inserts is the quadratic cost this measures) and timed over `--measure` chunks.
Memory: the index's own bytes, and the peak extra bytes one update allocates (tracemalloc).
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from taxifare.rides.dedup import SeenRows  # noqa: E402


class OneSortedArray:
    """The index as it was before the sorted runs: every chunk's new hashes inserted into one sorted array."""

    def __init__(self, size: int, generator: np.random.Generator) -> None:
        self._sorted = np.sort(random_hashes(generator, size))

    @property
    def nbytes(self) -> int:
        return self._sorted.nbytes

    def first_occurrences(self, hashes: np.ndarray) -> np.ndarray:
        first_in_chunk = np.zeros(len(hashes), dtype=bool)
        first_in_chunk[np.unique(hashes, return_index=True)[1]] = True
        positions = np.searchsorted(self._sorted, hashes)
        known = np.zeros(len(hashes), dtype=bool)
        inside = positions < len(self._sorted)
        known[inside] = self._sorted[positions[inside]] == hashes[inside]
        fresh = first_in_chunk & ~known
        new_hashes = np.sort(hashes[fresh])
        self._sorted = np.insert(self._sorted, np.searchsorted(self._sorted, new_hashes), new_hashes)
        return fresh


def random_hashes(generator: np.random.Generator, size: int) -> np.ndarray:
    return generator.integers(0, np.iinfo(np.uint64).max, size, dtype=np.uint64, endpoint=True)


def timed_updates(index, generator: np.random.Generator, chunk: int, count: int) -> tuple[list[float], int]:
    """Seconds of each of `count` chunk updates, and the peak bytes allocated beyond the index."""
    times, peak = [], 0
    for _ in range(count):
        hashes = random_hashes(generator, chunk)
        tracemalloc.start()
        started = time.perf_counter()
        index.first_occurrences(hashes)
        times.append(time.perf_counter() - started)
        peak = max(peak, tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    return times, peak


def report(name: str, rows: int, times: list[float], index_bytes: int, extra: int, amortized: float | None) -> None:
    whole = f"{amortized * 1000:8.1f}" if amortized is not None else "       -"
    print(
        f"{name:4} {rows / 1e6:6.0f}M  {whole}  {np.mean(times) * 1000:8.1f}  {max(times) * 1000:8.1f}"
        f"  {index_bytes / 2**20:9.0f}  {extra / 2**20:9.0f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000, 50_000_000])
    parser.add_argument("--chunk", type=int, default=100_000)
    parser.add_argument("--measure", type=int, default=20, help="chunks timed at each size")
    args = parser.parse_args()
    generator = np.random.default_rng(0)
    print(f"ms per chunk of {args.chunk:,} new rows; MiB")
    print("     rows    fill-mean      mean     worst      index  update-peak")
    new, filled, fill_seconds = SeenRows(), 0, 0.0
    for rows in sorted(args.rows):
        while len(new) < rows:
            hashes = random_hashes(generator, args.chunk)
            started = time.perf_counter()
            new.first_occurrences(hashes)
            fill_seconds += time.perf_counter() - started
            filled += 1
        amortized = fill_seconds / filled
        times, extra = timed_updates(new, generator, args.chunk, args.measure)
        report("new", rows, times, new.nbytes, extra, amortized)
        old = OneSortedArray(rows, generator)
        times, extra = timed_updates(old, generator, args.chunk, args.measure)
        report("old", rows, times, old.nbytes, extra, None)
        del old


if __name__ == "__main__":
    main()
