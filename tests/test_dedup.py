"""The duplicate index: exact first occurrences over many chunks, at a flat cost per chunk."""

from __future__ import annotations

import math

import numpy as np

from taxifare.rides.dedup import SeenRows


def _reference_first_occurrences(chunks: list[np.ndarray]) -> list[list[bool]]:
    seen: set[int] = set()
    masks = []
    for chunk in chunks:
        mask = []
        for value in chunk.tolist():
            mask.append(value not in seen)
            seen.add(value)
        masks.append(mask)
    return masks


def test_first_occurrences_match_a_plain_set_over_many_chunks():
    generator = np.random.default_rng(3)
    # Few distinct values, chunks of uneven sizes: repeats within a chunk, across neighbours and far back.
    chunks = [generator.integers(0, 5000, size, dtype=np.uint64) for size in generator.integers(0, 400, 80)]
    seen = SeenRows()
    assert [seen.first_occurrences(chunk).tolist() for chunk in chunks] == _reference_first_occurrences(chunks)
    assert len(seen) == len(np.unique(np.concatenate(chunks)))
    assert seen.nbytes == 8 * len(seen)


def test_a_new_chunk_leaves_the_large_runs_untouched():
    seen = SeenRows()
    for start in range(0, 100_000, 1000):
        seen.first_occurrences(np.arange(start, start + 1000, dtype=np.uint64) * np.uint64(2654435761))
    runs = list(seen._runs)
    assert len(runs) <= math.log2(len(seen)) + 1
    assert all(np.all(run[:-1] < run[1:]) for run in runs)
    # A chunk of one new row must not copy the hundred thousand rows already indexed.
    seen.first_occurrences(np.array([7], dtype=np.uint64))
    assert seen._runs[0] is runs[0]
    assert len(seen) == 100_001
