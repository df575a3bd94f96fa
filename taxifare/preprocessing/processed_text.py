"""The processed CSV's rows as text, for both engines: Polars' CSV writer.

Each float32 value is written as the shortest text that reads back as the same float32, one-hot columns
as 0/1. Polars formats a float in half the time of pyarrow's cast (53 against 112 ns here), which
taxifare's own encoder used until preprocessor version 4 (whose coordinates tripled the float columns),
and it writes from NumPy's arrays without copying them. Polars' thread pool does not survive a fork: see
dask/connect.py.

A one-hot group (the weekday's 7 columns, say) is written as one column of its texts ("0,0,1,0,0,0,0"),
which Polars copies, instead of as 0/1 numbers, which it formats one by one: the same bytes, and a quarter
of the writer's time when its 59 one-hot columns were formatted each.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from itertools import groupby
from typing import BinaryIO

import numpy as np

from taxifare.rides.features import FEATURE_NAMES, ONE_HOT_PREFIXES, TARGET


def _column_groups() -> list[tuple[str, ...]]:
    """FEATURE_NAMES in order, each one-hot group together, each other column alone."""
    prefix_of = lambda name: next((prefix for prefix in ONE_HOT_PREFIXES if name.startswith(prefix)), name)  # noqa: E731
    return [tuple(names) for _, names in groupby(FEATURE_NAMES, key=prefix_of)]


_GROUPS = _column_groups()


def load_writer() -> None:
    """Import Polars now: in a thread of its own while the first chunk is read and parsed (which release
    the GIL), its import is off the critical path; the first write pays for it otherwise."""
    import polars  # noqa: F401


def write_rows(features: Mapping[str, np.ndarray], target: np.ndarray, file: BinaryIO) -> None:
    """CSV text of the rows, features then fare, no header, appended to `file`."""
    import polars  # only the commands that write processed rows pay for its import

    columns = {}
    for names in _GROUPS:
        texts = _one_hot_texts(polars, [np.asarray(features[name]) for name in names]) if len(names) > 1 else None
        if texts is None:
            columns.update((name, np.asarray(features[name])) for name in names)
        else:
            columns[names[0]] = texts
    columns[TARGET] = np.asarray(target, dtype=np.float32)
    try:
        polars.DataFrame(columns).write_csv(file, include_header=False, quote_style="never")
    except OSError as error:
        raise _with_errno(error) from error


def _one_hot_texts(polars, columns: list[np.ndarray]):
    """The group's rows as texts ("0,1,0"), a Polars Enum; None unless its columns are of bytes (int8, as
    features.py makes them) and each row holds at most one 1 and otherwise 0s."""
    if any(column.dtype.itemsize != 1 or column.dtype.kind not in "iub" for column in columns):
        return None
    codes = np.zeros(len(columns[0]), dtype=np.uint8)  # 0: no 1 in the row, j + 1: the 1 in column j
    ones = np.zeros(len(columns[0]), dtype=np.uint8)
    for place, column in enumerate(columns, start=1):
        bits = column.view(np.uint8)  # a negative int8 becomes more than 1
        if bits.max(initial=0) > 1:
            return None
        ones += bits
        codes += bits * np.uint8(place)
    if ones.max(initial=0) > 1:
        return None
    width = len(columns)
    texts = [",".join("1" if place == one else "0" for place in range(1, width + 1)) for one in range(width + 1)]
    return polars.Series(codes).cat.to(polars.Enum(texts))


def _with_errno(error: OSError) -> OSError:
    """Polars passes the system's error on as text alone ("File too large (os error 27)"): the same error
    with its number, so that a full disk or a file size limit is told as such (core/files.py)."""
    found = re.search(r"os error (\d+)|Errno (\d+)", str(error))
    if error.errno is not None or found is None:
        return error
    number = int(found.group(1) or found.group(2))
    return OSError(number, os.strerror(number))
