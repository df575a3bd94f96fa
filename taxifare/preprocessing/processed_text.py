"""The processed CSV's rows as text, for both engines: Polars' CSV writer.

Each float32 value is written as the shortest text that reads back as the same float32, one-hot columns
as 0/1. Polars formats a float in half the time of pyarrow's cast (53 against 112 ns here), which
taxifare's own encoder used until preprocessor version 4 (whose coordinates tripled the float columns),
and it writes from NumPy's arrays without copying them. Polars' thread pool does not survive a fork: see
dask/connect.py.
"""

from __future__ import annotations

import os
import re
from typing import BinaryIO

import numpy as np
import pandas as pd

from taxifare.rides.features import FEATURE_NAMES, TARGET


def write_rows(features: pd.DataFrame, target: np.ndarray, file: BinaryIO) -> None:
    """CSV text of the rows, features then fare, no header, appended to `file`."""
    import polars  # only the commands that write processed rows pay for its import

    columns = {name: features[name].to_numpy() for name in FEATURE_NAMES}
    columns[TARGET] = np.asarray(target, dtype=np.float32)
    try:
        polars.DataFrame(columns).write_csv(file, include_header=False)
    except OSError as error:
        raise _with_errno(error) from error


def _with_errno(error: OSError) -> OSError:
    """Polars passes the system's error on as text alone ("File too large (os error 27)"): the same error
    with its number, so that a full disk or a file size limit is told as such (core/files.py)."""
    found = re.search(r"os error (\d+)|Errno (\d+)", str(error))
    if error.errno is not None or found is None:
        return error
    number = int(found.group(1) or found.group(2))
    return OSError(number, os.strerror(number))
