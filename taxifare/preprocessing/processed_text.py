"""The processed CSV's rows as text: taxifare's own encoder, used by both engines.

Its bytes are those of pyarrow's CSV writer, with which every earlier processed file was written (the
numbers go through the cast that writer uses), at half its cost: each run of one-hot columns is one
fixed-width text column built in NumPy, a column of few distinct values is formatted once per value,
and each row's pieces are joined in one pass.
"""

from __future__ import annotations

import functools
import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import BinaryIO, Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from taxifare.rides.features import FEATURE_NAMES, is_one_hot


def write_rows(features: pd.DataFrame, target: np.ndarray, file: BinaryIO) -> None:
    """CSV text of the rows: float32 values, one-hot columns as 0/1 integers, no header. Encoded a slice
    of rows at a time by _ENCODERS threads (Arrow and NumPy release the GIL) and written in order, with
    at most _ENCODERS slices waiting, which bounds the text held in memory."""
    pieces = [*_feature_pieces(features), _target_piece(np.asarray(target, dtype=np.float32))]
    encoders = _encoders()
    encoding: deque[Future] = deque()
    for start in range(0, len(features), _ENCODED_ROWS):
        encoding.append(encoders.submit(_encoded, pieces, start, min(start + _ENCODED_ROWS, len(features))))
        if len(encoding) > _ENCODERS:
            file.write(encoding.popleft().result())
    while encoding:
        file.write(encoding.popleft().result())


@functools.lru_cache(maxsize=1)
def _encoders() -> ThreadPoolExecutor:
    # Kept for the process: new threads for each chunk held more memory (4M rows: 510-540 MB at the peak,
    # against 490-505 MB with these threads and slices half as long).
    return ThreadPoolExecutor(max_workers=_ENCODERS, thread_name_prefix="csv-encoder")


# A forked child (a local Dask worker) has none of its parent's threads: it starts its own encoders.
os.register_at_fork(after_in_child=_encoders.cache_clear)


def _encoded(pieces: list[Piece], start: int, stop: int) -> pa.Buffer:
    rows = pc.binary_join_element_wise(*(piece(start, stop) for piece in pieces), _COMMA)
    _, offsets, data = rows.buffers()
    ends = np.frombuffer(offsets, dtype=np.int64)[[0, -1]]
    return data.slice(int(ends[0]), int(ends[1] - ends[0]))


_ENCODED_ROWS = 1 << 13
_ENCODERS = 2  # the cores of a small machine: the encoding is most of preprocess's work
_COMMA, _NEWLINE, _NOTHING = (pa.scalar(text, pa.large_binary()) for text in (b",", b"\n", b""))
Piece = Callable[[int, int], pa.Array]  # the text of one field (or run of fields) of rows start..stop


def _column_runs() -> tuple[tuple[bool, tuple[str, ...]], ...]:
    """FEATURE_NAMES in runs of consecutive one-hot columns and single numeric ones: (is one-hot, names)."""
    runs: list[tuple[bool, list[str]]] = []
    for name in FEATURE_NAMES:
        if is_one_hot(name) and runs and runs[-1][0]:
            runs[-1][1].append(name)
        else:
            runs.append((is_one_hot(name), [name]))
    return tuple((one_hot, tuple(names)) for one_hot, names in runs)


_COLUMN_RUNS = _column_runs()


def _feature_pieces(features: pd.DataFrame) -> list[Piece]:
    return [_one_hot_piece(np.column_stack([features[name].to_numpy() for name in names])) if one_hot
            else _number_piece(features[names[0]].to_numpy()) for one_hot, names in _COLUMN_RUNS]


def _target_piece(target: np.ndarray) -> Piece:
    number = _number_piece(target)
    return lambda start, stop: pc.binary_join_element_wise(number(start, stop), _NOTHING, _NEWLINE)


def _number_piece(values: np.ndarray) -> Piece:
    """The numbers as text. A column of few distinct values (passenger counts, hours, fares) is formatted
    once per distinct value, which is several times faster; they are told apart by their bits, so that
    0.0 and -0.0 keep their own texts."""
    sample = values[:_SAMPLED_VALUES]
    if len(np.unique(sample)) > len(sample) // 2:
        return lambda start, stop: _text(pa.array(values[start:stop]))
    encoded = pc.dictionary_encode(pa.array(values.view(f"i{values.itemsize}")))
    texts = _text(pa.array(encoded.dictionary.to_numpy().view(values.dtype)))
    return lambda start, stop: pc.take(texts, encoded.indices.slice(start, stop - start))


_SAMPLED_VALUES = 4096


def _text(numbers: pa.Array) -> pa.Array:
    return pc.cast(numbers, pa.large_string()).view(pa.large_binary())


def _one_hot_piece(digits: np.ndarray) -> Piece:
    """`0,1,0,...` per row: 0/1 digits (a row per ride) with commas between, all rows the same width."""
    width = 2 * digits.shape[1] - 1

    def text(start: int, stop: int) -> pa.Array:
        rows = np.empty((stop - start, width), dtype=np.uint8)
        rows[:, 1::2] = ord(",")
        np.add(digits[start:stop], ord("0"), out=rows[:, 0::2], casting="unsafe")
        offsets = np.arange(0, rows.size + 1, width, dtype=np.int64)
        return pa.Array.from_buffers(pa.large_binary(), len(rows), [None, pa.py_buffer(offsets), pa.py_buffer(rows)])

    return text
