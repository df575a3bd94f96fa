"""The processed CSV's rows: processed_text.write_rows gives, byte for byte, the text of pyarrow's CSV
writer, with which every earlier processed file was written (so an interrupted run resumed by this code,
and the golden output, stay byte-identical); sink.ProcessedWriter writes and records nothing after a
chunk that failed."""

from __future__ import annotations

import io
import multiprocessing
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
    for name in FEATURE_NAMES:
        if is_one_hot(name):
            columns[name] = rng.integers(0, 2, count).astype(np.int8)
        else:
            values = (rng.standard_normal(count) * 10.0 ** rng.integers(-8, 8, count)).astype(np.float32)
            values[: len(_AWKWARD)] = _AWKWARD[: count]
            columns[name] = values
    # A column of few distinct values, which is formatted once per value: 0.0 and -0.0 among them.
    columns["hour_sin"] = rng.choice(_AWKWARD, count)
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
    processed_text.write_rows(features, target, buffer)
    return buffer.getvalue()


def test_rows_are_the_bytes_of_pyarrows_csv_writer():
    features, target = feature_rows(5_000)
    text = written(features, target)
    assert text == pyarrow_text(features, target)
    assert text.count(b"\n") == 5_000 and text.splitlines()[0].count(b",") == len(FEATURE_NAMES)


def test_a_chunk_longer_than_one_encoded_slice_is_written_whole(monkeypatch):
    monkeypatch.setattr(processed_text, "_ENCODED_ROWS", 1_000)
    features, target = feature_rows(2_500, seed=1)
    assert written(features, target) == pyarrow_text(features, target)


def _write_in_a_child(features: pd.DataFrame, target: np.ndarray, expected: bytes) -> None:
    os._exit(0 if written(features, target) == expected else 1)


def test_a_forked_child_encodes_with_threads_of_its_own():
    """The encoder threads are kept for the process; a child forked after they started (a local Dask
    worker) has none of them, and would wait for its slices forever on its parent's."""
    features, target = feature_rows(2_000, seed=2)
    expected = written(features, target)  # the parent's encoders are running now
    child = multiprocessing.get_context("fork").Process(target=_write_in_a_child, args=(features, target, expected))
    child.start()
    child.join(timeout=30)
    if child.exitcode is None:
        child.kill()
    assert child.exitcode == 0


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
