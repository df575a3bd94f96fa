"""Which rows a run trains on: each processed row's set by its content alone, and the sample of training
rows that a run keeps to recognise them later.

The set of a row depends on a 64-bit hash of its float32 values in the identity columns (version 3's 73
features, then the fare, found by name in the processed header) and on fixed thresholds, never on the file
it is in: a row is a test row in every data set or in none, so no run's test figure includes rows another
run (a parent, say) trained on, and features appended by a later preprocessor version move no row between
sets, so the figures of two versions are of the same rows. The held-out sets are capped in memory: the
first candidates in file order are kept; those beyond a cap are left out (neither trained on nor scored).

A run also keeps the hashes of its training rows (with its parent's), so that `evaluate` can tell rows it
trained on: all of them up to SAMPLE_CAPACITY distinct rows, beyond that a bottom-k sample (the rows whose
sample key, another mix of the row hash, is among the SAMPLE_CAPACITY smallest), which estimates the share
of any file's rows seen in training from the rows that fall in the sample.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from taxifare.core.errors import InputError
from taxifare.core.files import atomic_write_bytes
from taxifare.core.row_hash import hash_words, mix
from taxifare.rides.features import FEATURE_NAMES, PREFIX_VERSIONS, TARGET

TRAIN, VALIDATION, TEST, LEFT_OUT = 0, 1, 2, 3
VALIDATION_SHARE = TEST_SHARE = 0.1
# Validation is scored at every evaluation: 50,000 rows measure MAE with a standard error of ~1.7 cents
# on real rides and cost ~3% of a 100,000-row chunk's training. The test set is scored once, at the end.
VALIDATION_MAX_ROWS = 50_000
TEST_MAX_ROWS = 100_000
# FNV-1a of the identity columns' float32 values as 64-bit words, SplitMix64 finish; fixed thresholds.
# "row-hash-1" hashed every column, so version 4's new columns moved rows between sets; on a version-3 file
# (whose columns are the identity columns, in order) both give the same hashes.
SPLIT_METHOD = "row-hash-2"
ALL_COLUMNS_METHOD = "row-hash-1"
IDENTITY_COLUMNS = (*FEATURE_NAMES[: PREFIX_VERSIONS[3]], TARGET)
_TEST_BELOW = np.uint64(int(TEST_SHARE * 2.0**64))
_HELD_OUT_BELOW = np.uint64(int((TEST_SHARE + VALIDATION_SHARE) * 2.0**64))
SAMPLE_CAPACITY = 1 << 18  # 2 MB of hashes per run at most
_ALL = np.uint64(2**64 - 1)


def split_definition() -> dict:
    """What decides the three sets, as recorded in a run's params (runs are comparable only if it is equal)."""
    return {
        "method": SPLIT_METHOD,
        "validation_share": VALIDATION_SHARE,
        "test_share": TEST_SHARE,
        "validation_max_rows": VALIDATION_MAX_ROWS,
        "test_max_rows": TEST_MAX_ROWS,
    }


def comparable_group(manifest: dict) -> str:
    """A short digest of the processed data (its manifest's fingerprint, size, rows and fare sum) and the
    split definition: runs with the same one were scored on the same validation and test rows."""
    data = {key: manifest.get(key) for key in ("fingerprint", "bytes", "rows_kept", "target_sum", "data_size")}
    text = json.dumps({"data": data, "split": split_definition()}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def identity_positions(columns: Sequence[str], method: str = SPLIT_METHOD) -> np.ndarray:
    """Where the columns that a row's hash covers under `method` are among `columns` (a processed header:
    features, then the fare); InputError if some are missing or the method is unknown."""
    if method == ALL_COLUMNS_METHOD:
        return np.arange(len(columns))
    if method != SPLIT_METHOD:
        raise InputError(f"unknown split method {method!r} (this taxifare knows {ALL_COLUMNS_METHOD} and {SPLIT_METHOD})")
    missing = [name for name in IDENTITY_COLUMNS if name not in columns]
    if missing:
        raise InputError(f"the data lacks {len(missing)} of the columns that decide each row's set (e.g. {missing[0]}); rerun `taxifare preprocess --force`")
    return np.array([list(columns).index(name) for name in IDENTITY_COLUMNS])


def recorded_method(params: dict) -> str:
    """The split method a run's params record (runs from before row-hash-2 hashed every column)."""
    return (params.get("split") or {}).get("method", ALL_COLUMNS_METHOD)


def hashed_as_now(method: str, columns: Sequence[str]) -> bool:
    """Whether rows of these `columns` (features, then the fare) split by `method` have the hashes, and so the
    sets, that SPLIT_METHOD gives them now."""
    return method == SPLIT_METHOD or (method == ALL_COLUMNS_METHOD and tuple(columns) == IDENTITY_COLUMNS)


def row_hashes(rows: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each row's float32 values in the columns at `positions` (`identity_positions`):
    FNV-1a over 64-bit words, then a SplitMix64 finish."""
    rows = np.ascontiguousarray(rows[:, positions], dtype=np.float32)
    if rows.shape[1] % 2:
        rows = np.hstack([rows, np.zeros((len(rows), 1), dtype=np.float32)])
    return hash_words(rows.view(np.uint64).T, len(rows))


def assign_sets(hashes: np.ndarray) -> np.ndarray:
    """TRAIN, VALIDATION or TEST for each row, from its `row_hashes` and fixed thresholds."""
    sets = np.full(len(hashes), TRAIN, dtype=np.int8)
    sets[hashes < _HELD_OUT_BELOW] = VALIDATION
    sets[hashes < _TEST_BELOW] = TEST
    return sets


def sample_keys(hashes: np.ndarray) -> np.ndarray:
    """The training sample's key of each row hash: independent of the split, which uses the hash itself."""
    return mix(hashes ^ np.uint64(0x9E3779B97F4A7C15))


@dataclass
class TrainingRowSample:
    """Sample keys of training rows: the key of every training row up to `threshold` is in `keys` (sorted,
    distinct), at most SAMPLE_CAPACITY of them. Until full, `threshold` is the largest possible key (the
    sample holds every row); beyond, it keeps the smallest keys and `threshold` is the largest kept."""

    keys: np.ndarray
    threshold: np.uint64 = _ALL

    @classmethod
    def empty(cls) -> "TrainingRowSample":
        return cls(np.empty(0, dtype=np.uint64))

    @property
    def complete(self) -> bool:
        """Whether it holds every training row (then its answers are exact)."""
        return bool(self.threshold == _ALL)

    def add(self, hashes: np.ndarray) -> None:
        """Take in training rows, by their `row_hashes`."""
        keys = sample_keys(hashes)
        self.merge(TrainingRowSample(np.unique(keys[keys <= self.threshold])))

    def merge(self, other: "TrainingRowSample") -> None:
        """The sample of both row sets (a bottom-k sample of a union is that of the two samples). The
        keys of both are sorted and distinct: the other's are inserted where they belong, no sort."""
        threshold = min(self.threshold, other.threshold)
        mine, theirs = (sample.keys[sample.keys <= threshold] for sample in (self, other))
        places = np.searchsorted(mine, theirs)
        known = places < len(mine)
        known[known] = mine[places[known]] == theirs[known]
        keys = np.insert(mine, places[~known], theirs[~known])
        if len(keys) > SAMPLE_CAPACITY:
            keys = keys[:SAMPLE_CAPACITY]
            threshold = keys[-1]
        self.keys, self.threshold = keys, np.uint64(threshold)

    def look_up(self, hashes: np.ndarray) -> tuple[int, int]:
        """Of the rows of these `row_hashes`, how many fall in the sample's range, and how many of those
        are training rows."""
        keys = sample_keys(hashes)
        keys = keys[keys <= self.threshold]
        found = np.searchsorted(self.keys, keys)
        seen = found < len(self.keys)
        seen[seen] = self.keys[found[seen]] == keys[seen]
        return len(keys), int(seen.sum())

    def save(self, path: Path) -> None:
        import io

        buffer = io.BytesIO()
        np.savez(buffer, keys=self.keys, threshold=np.array([self.threshold], dtype=np.uint64))
        atomic_write_bytes(path, buffer.getvalue())

    @classmethod
    def load(cls, path: Path) -> "TrainingRowSample":
        try:
            with np.load(path, allow_pickle=False) as stored:
                keys, threshold = stored["keys"], stored["threshold"]
        except (OSError, ValueError, KeyError) as error:
            raise InputError(f"{path}: unreadable sample of training rows ({error})") from None
        if keys.dtype != np.uint64 or threshold.shape != (1,):
            raise InputError(f"{path}: not a sample of training rows")
        return cls(keys, np.uint64(threshold[0]))
