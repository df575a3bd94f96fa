"""The processed CSV's rows: sink.write_rows gives, byte for byte, the text of pyarrow's CSV writer, with
which every earlier processed file was written (so an interrupted run resumed by this code, and the
golden output, stay byte-identical)."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv

from taxifare import sink
from taxifare.features import FEATURE_NAMES, TARGET, is_one_hot

# Values whose text is easy to get wrong: signed zeros, exponents both ways, the float32 extremes.
_AWKWARD = np.array([0.0, -0.0, 1.0, -1.0, 0.1, 1e-7, -2.5e-12, 1e-45, 3.4028235e38, 123456.78, 1e7, 1e-5, 0.000123], np.float32)


def feature_rows(count: int, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    columns = {}
    for name in FEATURE_NAMES:
        if is_one_hot(name):
            columns[name] = rng.integers(0, 2, count).astype(np.int8)
        else:
            values = (rng.standard_normal(count) * 10.0 ** rng.integers(-8, 8, count)).astype(np.float32)
            values[: len(_AWKWARD)] = _AWKWARD[: count]
            columns[name] = values
    target = rng.uniform(0, 400, count).round(2)
    return pd.DataFrame(columns), target


def pyarrow_text(features: pd.DataFrame, target: np.ndarray) -> bytes:
    arrays = [pa.array(features[name].to_numpy()) for name in FEATURE_NAMES]
    table = pa.Table.from_arrays([*arrays, pa.array(target.astype(np.float32))], names=[*FEATURE_NAMES, TARGET])
    buffer = io.BytesIO()
    pa_csv.write_csv(table, buffer, write_options=pa_csv.WriteOptions(include_header=False))
    return buffer.getvalue()


def written(features: pd.DataFrame, target: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    sink.write_rows(features, target, buffer)
    return buffer.getvalue()


def test_rows_are_the_bytes_of_pyarrows_csv_writer():
    features, target = feature_rows(5_000)
    text = written(features, target)
    assert text == pyarrow_text(features, target)
    assert text.count(b"\n") == 5_000 and text.splitlines()[0].count(b",") == len(FEATURE_NAMES)


def test_a_chunk_longer_than_one_encoded_slice_is_written_whole(monkeypatch):
    monkeypatch.setattr(sink, "_ENCODED_ROWS", 1_000)
    features, target = feature_rows(2_500, seed=1)
    assert written(features, target) == pyarrow_text(features, target)


def test_an_empty_chunk_writes_nothing():
    features, target = feature_rows(0)
    assert written(features, target) == b""
