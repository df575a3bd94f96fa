"""The processed CSV's rows: processed_text.write_rows writes each float32 as the shortest text that reads
back as the same value, in a format fixed for the preprocessor version (so an interrupted run resumed by
this code, and the golden output, stay byte-identical); sink.ProcessedWriter writes and records nothing
after a chunk that failed."""

from __future__ import annotations

import io
import os
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pytest

from taxifare.core.config import load_settings
from taxifare.preprocessing import processed_text, sink
from taxifare.rides.features import FEATURE_NAMES, TARGET, is_one_hot
from taxifare.rides.layout import CsvFormat

# Values whose text is easy to get wrong: signed zeros, exponents both ways, the float32 extremes.
_AWKWARD = np.array([0.0, -0.0, 1.0, -1.0, 0.1, 1e-7, -2.5e-12, 1e-45, 3.4028235e38, 123456.78, 1e7, 1e-5, 0.000123], np.float32)


def feature_rows(count: int, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    columns = {}
    for group in one_hot_groups():  # at most one 1 in a row, as features.py makes them
        ones = rng.integers(-1, len(group), count)
        columns.update((name, (ones == place).astype(np.int8)) for place, name in enumerate(group))
    for name in FEATURE_NAMES:
        if not is_one_hot(name):
            values = (rng.standard_normal(count) * 10.0 ** rng.integers(-8, 8, count)).astype(np.float32)
            values[: len(_AWKWARD)] = _AWKWARD[: count]
            columns[name] = values
    # A column of few distinct values, which is formatted once per value: 0.0 and -0.0 among them.
    columns["hour_sin"] = rng.choice(_AWKWARD, count)
    target = rng.uniform(0, 400, count).round(2)
    return pd.DataFrame(columns), target


def one_hot_groups() -> list[list[str]]:
    groups: dict[str, list[str]] = {}
    for name in filter(is_one_hot, FEATURE_NAMES):
        groups.setdefault(name[: name.rindex("_")], []).append(name)
    return list(groups.values())


def written(features: pd.DataFrame, target: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    processed_text.write_rows(features, target, buffer)
    return buffer.getvalue()


def read_back(text: bytes) -> pa.Table:
    names = [*FEATURE_NAMES, TARGET]
    types = {name: pa.int8() if is_one_hot(name) else pa.float32() for name in names}
    return pa_csv.read_csv(io.BytesIO(text), read_options=pa_csv.ReadOptions(column_names=names), convert_options=pa_csv.ConvertOptions(column_types=types))


def test_rows_read_back_as_the_same_float32_bits_and_one_hot_digits():
    features, target = feature_rows(5_000)
    text = written(features, target)
    assert text.count(b"\n") == 5_000 and text.splitlines()[0].count(b",") == len(FEATURE_NAMES)
    table = read_back(text)
    for name in FEATURE_NAMES:
        values = features[name].to_numpy()
        bits = f"i{values.itemsize}"
        np.testing.assert_array_equal(table[name].to_numpy().view(bits), values.view(bits), err_msg=name)
    np.testing.assert_array_equal(table[TARGET].to_numpy(), target.astype(np.float32))


def test_the_awkward_values_have_the_texts_of_this_preprocessor_version():
    """The shortest text of each float32, in the one format every file of version 4 has: a change here
    (another Polars) must bump PREPROCESSOR_VERSION."""
    features, target = feature_rows(len(_AWKWARD))
    column = FEATURE_NAMES.index(next(name for name in FEATURE_NAMES if not is_one_hot(name) and name != "hour_sin"))
    texts = [line.split(b",")[column].decode() for line in written(features, target).splitlines()]
    assert texts == ["0.0", "-0.0", "1.0", "-1.0", "0.1", "1e-7", "-2.5e-12", "1e-45", "3.4028235e+38", "123456.78", "10000000.0", "0.00001", "0.000123"]


@pytest.mark.parametrize("change", ["none", "two ones", "a 2", "a -1", "floats"])
def test_one_hot_columns_are_written_as_the_digits_they_hold(change):
    """A one-hot group is written as one text per row when it holds 0s and at most one 1 a row, else column by
    column: the same digits either way."""
    features, target = feature_rows(200)
    group = one_hot_groups()[-1]
    if change == "two ones":
        features.loc[7, group[:2]] = 1
    elif change in ("a 2", "a -1"):
        features.loc[7, group[3]] = int(change[2:])
    elif change == "floats":
        features[group] = np.float32(0)  # whose bytes are 0s, as a one-hot group's are
    expected = features[group].to_numpy()
    fields = [line.split(b",") for line in written(features, target).splitlines()]
    columns = [FEATURE_NAMES.index(name) for name in group]
    texts = np.array([[row[column].decode() for column in columns] for row in fields])
    if change == "floats":
        np.testing.assert_array_equal(texts, np.where(expected == 1, "1.0", "0.0"))
    else:
        np.testing.assert_array_equal(texts, expected.astype(str))


def test_an_empty_chunk_writes_nothing():
    features, target = feature_rows(0)
    assert written(features, target) == b""


class FailingFile:
    """A file whose `fail_at`-th write (1-based) fails as a full disk does."""

    def __init__(self, file, fail_at: int):
        self.file, self.fail_at, self.writes = file, fail_at, 0

    def write(self, data) -> int:
        self.writes += 1
        if self.writes == self.fail_at:
            time.sleep(0.5)  # the next chunk is appended meanwhile
            self.file.write(bytes(data)[:100])  # part of it, as a full disk leaves it
            raise OSError(28, "No space left on device")
        return self.file.write(data)

    def __getattr__(self, name):
        return getattr(self.file, name)


def new_writer(path) -> sink.ProcessedWriter:
    settings = load_settings({"data_size": "test", "chunk_size": "100"}, environ={}, dotenv_path=None)
    writer = sink.ProcessedWriter(path, sink.new_manifest(settings, {"kind": "test"}, None, CsvFormat(), {"kind": "test"}))
    writer.start()
    return writer


def append_three_chunks(writer: sink.ProcessedWriter) -> list[tuple[pd.DataFrame, np.ndarray]]:
    """The chunks appended; the error of the one that failed."""
    chunks = [feature_rows(100, seed) for seed in range(3)]
    try:
        for features, target in chunks:
            writer.append(features, target, rows_read=100, rejects={}, samples={})
        writer.wait()
    finally:
        writer.close()
    return chunks


def test_nothing_is_written_after_a_chunk_that_a_full_disk_cut_short(tmp_path):
    path = tmp_path / "processed.partial.csv"
    writer = new_writer(path)
    writer._file = FailingFile(writer._file, fail_at=2)
    with pytest.raises(OSError, match="No space left"):
        append_three_chunks(writer)
    recorded = sink.read_manifest(path)
    first = len(sink.csv_header()) + len(written(*feature_rows(100, 0)))
    assert recorded["chunks_written"] == 1 and recorded["rows_kept"] == 100 and recorded["bytes"] == first
    assert path.stat().st_size == first + 100  # the failed chunk's part, cut off on resume; no third chunk


def test_nothing_is_recorded_after_a_chunk_whose_flush_failed(tmp_path, monkeypatch):
    path = tmp_path / "processed.partial.csv"
    writer = new_writer(path)
    flushes = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if fd == writer._file.fileno():
            flushes.append(fd)
            if len(flushes) == 2:
                time.sleep(0.5)  # the third chunk is appended and written meanwhile
                raise OSError(5, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OSError, match="Input/output error"):
        append_three_chunks(writer)
    recorded = sink.read_manifest(path)
    assert recorded["chunks_written"] == 1 and recorded["bytes"] == len(sink.csv_header()) + len(written(*feature_rows(100, 0)))
