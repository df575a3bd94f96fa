"""64-bit hashes of rows of numbers, for telling rows apart (the duplicate index of preprocess) and for
spreading them evenly (the split of training): FNV-1a over each row's 64-bit words, then SplitMix64's
finish, so that every input bit moves every output bit."""

from __future__ import annotations

from typing import Iterable

import numpy as np

_START = np.uint64(0xCBF29CE484222325)
_PRIME = np.uint64(0x100000001B3)


def hash_words(columns: Iterable[np.ndarray], rows: int) -> np.ndarray:
    """The hash of each of `rows` rows whose 64-bit words are given column by column (uint64 arrays)."""
    hashes = np.full(rows, _START, dtype=np.uint64)
    for column in columns:
        hashes = (hashes ^ column) * _PRIME
    return mix(hashes)


def mix(hashes: np.ndarray) -> np.ndarray:
    """SplitMix64's finish."""
    hashes = hashes ^ (hashes >> np.uint64(30))
    hashes = hashes * np.uint64(0xBF58476D1CE4E5B9)
    hashes = hashes ^ (hashes >> np.uint64(27))
    hashes = hashes * np.uint64(0x94D049BB133111EB)
    return hashes ^ (hashes >> np.uint64(31))
