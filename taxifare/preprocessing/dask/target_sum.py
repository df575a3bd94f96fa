"""The manifest's `target_sum`, to the last bit of the local run's.

A local run adds, chunk after chunk of CHUNK_SIZE input rows, the NumPy sum of the chunk's kept fares;
a floating-point sum depends on that grouping. So each part reports its fares per local chunk: a chunk
that lies wholly inside the partition as its sum, one cut by a partition edge as the fares themselves,
which the client joins with the neighbouring parts' before summing.
"""

from __future__ import annotations

import numpy as np


def chunk_pieces(fares: np.ndarray, rows: np.ndarray, first_row: int, row_count: int, chunk_size: int) -> tuple[list[dict], np.ndarray]:
    """Per local chunk touching rows [first_row, first_row + row_count) of the input: `sum`, or `fares`
    (how many of the returned array's fares, in piece order, belong to that chunk).

    `fares` are the partition's kept fares and `rows` their row numbers in the whole input (ascending).
    The input's last chunk, shorter than the others, counts as cut: its fares sum the same either way.
    """
    pieces, cut = [], []
    if row_count == 0:
        return pieces, np.empty(0, dtype=np.float64)
    chunks = rows // chunk_size
    for chunk in range(first_row // chunk_size, (first_row + row_count - 1) // chunk_size + 1):
        in_chunk = fares[np.searchsorted(chunks, chunk) : np.searchsorted(chunks, chunk, side="right")]
        if first_row <= chunk * chunk_size and (chunk + 1) * chunk_size <= first_row + row_count:
            pieces.append({"chunk": chunk, "sum": float(np.sum(in_chunk, dtype=np.float64))})
        else:
            pieces.append({"chunk": chunk, "fares": len(in_chunk)})
            cut.append(in_chunk)
    return pieces, np.concatenate(cut).astype(np.float64, copy=False) if cut else np.empty(0, dtype=np.float64)


class TargetSum:
    """Adds the parts' pieces, given in input order, the way the local run adds its chunks."""

    def __init__(self) -> None:
        self.total = 0.0
        self._open_chunk: int | None = None
        self._open_fares: list[np.ndarray] = []

    def add(self, pieces: list[dict], cut_fares: np.ndarray) -> None:
        used = 0
        for piece in pieces:
            if piece["chunk"] != self._open_chunk:
                self._close()
            if "sum" in piece:
                self.total += piece["sum"]
            else:
                self._open_chunk = piece["chunk"]
                self._open_fares.append(cut_fares[used : used + piece["fares"]])
                used += piece["fares"]

    def result(self) -> float:
        self._close()
        return self.total

    def _close(self) -> None:
        if self._open_chunk is not None:
            fares = np.concatenate(self._open_fares) if self._open_fares else np.empty(0, dtype=np.float64)
            self.total += float(np.sum(fares, dtype=np.float64))
        self._open_chunk, self._open_fares = None, []
