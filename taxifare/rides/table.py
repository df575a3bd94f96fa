"""Parsed rides as NumPy columns, each ride with its row in the table it was parsed from: what cleaning
hands to the features and to `pred`. Without pandas, whose import alone took as long as cleaning 300,000
rides, and whose row selections copied every column twice; `numpy_values` reads Arrow's columns without
it too."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

_NUMPY_TYPES = {pa.float64(): np.float64, pa.int64(): np.int64, pa.int32(): np.int32, pa.int8(): np.int8}


@dataclass(frozen=True)
class Rides:
    columns: dict[str, np.ndarray]  # one length
    rows: np.ndarray  # each ride's row in the table it was parsed from, ascending

    @classmethod
    def numbered(cls, columns: dict[str, np.ndarray]) -> "Rides":
        """Rides whose rows are 0, 1, 2...: the table's own rows."""
        length = len(next(iter(columns.values()))) if columns else 0
        return cls(columns, np.arange(length))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.columns[name]

    def take(self, which: np.ndarray) -> "Rides":
        """The rides of a boolean mask (or of positions), keeping their rows."""
        return Rides({name: values[which] for name, values in self.columns.items()}, self.rows[which])

    def renumbered(self) -> "Rides":
        """The same rides, as rows 0, 1, 2... of a table of their own."""
        return Rides.numbered(self.columns)

    def at_row(self, row: int) -> dict[str, object]:
        """The values of the ride parsed from `row`."""
        position = int(np.searchsorted(self.rows, row))
        return {name: values[position] for name, values in self.columns.items()}


def numpy_values(column: pa.Array | pa.ChunkedArray, null: object = None) -> np.ndarray:
    """The values of an Arrow column of booleans or numbers, read from its buffers (read-only unless it has
    nulls, which become `null`; refused without it). pyarrow's own to_numpy, like its scalars made from
    Python values, imports pandas at its first call."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if array.null_count and null is None:
        raise ValueError("an Arrow column with nulls has no NumPy values without a value for them")
    dtype = np.dtype(bool if array.type == pa.bool_() else _NUMPY_TYPES[array.type])
    if not len(array):
        return np.empty(0, dtype=dtype)
    validity, data = array.buffers()[:2]
    if dtype == bool:
        values = _bits(data, array.offset, len(array))
    else:
        values = np.frombuffer(data, dtype, count=len(array), offset=array.offset * dtype.itemsize)
    if array.null_count:
        values = values.copy()
        values[~_bits(validity, array.offset, len(array))] = null
    return values


def _bits(buffer: pa.Buffer, offset: int, length: int) -> np.ndarray:
    """Arrow's bitmap (least significant bit first) as booleans."""
    return np.unpackbits(np.frombuffer(buffer, np.uint8), bitorder="little")[offset : offset + length].view(bool)
