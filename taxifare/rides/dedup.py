"""The duplicate index: 64-bit hashes of every row kept so far, to drop exact duplicates across an input.

The hashes live in sorted runs, each more than twice the size of the next, like an LSM tree: a chunk's
new hashes become a run of their own, and the smallest runs are merged while the rule is broken. Each
hash is merged about log2(rows / chunk) times over a whole input, so the cost of a chunk stays flat as
the index grows (one sorted array kept whole would be copied, hundreds of megabytes, for every chunk),
and a lookup is a binary search in each of at most log2(rows) runs.
"""

from __future__ import annotations

import numpy as np


class SeenRows:
    """Hashes of every kept row so far, to drop exact duplicates across the whole input.

    Costs 8 bytes per distinct row, plus a transient copy of the runs being merged.
    Two different rows share a 64-bit hash with probability about n**2 / 2**65 over n rows.
    """

    def __init__(self) -> None:
        self._runs: list[np.ndarray] = []  # sorted, each longer than twice the next

    def __len__(self) -> int:
        return sum(len(run) for run in self._runs)

    @property
    def nbytes(self) -> int:
        return sum(run.nbytes for run in self._runs)

    def copy(self) -> "SeenRows":
        """An index that grows apart from this one (the runs themselves are never changed, only replaced)."""
        copied = SeenRows()
        copied._runs = list(self._runs)
        return copied

    def first_occurrences(self, hashes: np.ndarray) -> np.ndarray:
        """Mask of rows seen for the first time (earlier rows of the same call count), and remember them."""
        # Sorted distinct hashes: searched in that order, each run is read front to back, cache-friendly.
        distinct, first_rows = np.unique(hashes, return_index=True)
        new = ~self._known(distinct)
        fresh = np.zeros(len(hashes), dtype=bool)
        fresh[first_rows[new]] = True
        self._add(distinct[new])
        return fresh

    def _known(self, distinct: np.ndarray) -> np.ndarray:
        known = np.zeros(len(distinct), dtype=bool)
        for run in self._runs:
            positions = np.searchsorted(run, distinct)
            inside = positions < len(run)
            known[inside] |= run[positions[inside]] == distinct[inside]
        return known

    def _add(self, run: np.ndarray) -> None:
        if not len(run):
            return
        self._runs.append(run)
        while len(self._runs) > 1 and len(self._runs[-2]) <= 2 * len(self._runs[-1]):
            newer = self._runs.pop()
            # NumPy's stable sort (timsort for uint64) finds the two sorted runs and merges them, in place:
            # a sorted copy would hold a third array of the index's size at the peak.
            merged = np.concatenate((self._runs[-1], newer))
            merged.sort(kind="stable")
            self._runs[-1] = merged
