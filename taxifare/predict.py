"""Fares from a registry run: one ride from flags, or a CSV of rides of any size, streamed.

Rides go through exactly the preprocessing the run was trained on: `parse_rides`, the checks in
`prediction_failures`, then `ride_features`; the run's params.json records the preprocessor version,
and a run made by another version is refused. A ride picked up outside the run's training window
(its first..last pickup) is still predicted, but flagged: a warning for one ride, a 0/1 column
`outside_training_window` and a count for a CSV.
"""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv

from taxifare.config import Settings, parse_date
from taxifare.errors import InputError
from taxifare.features import FEATURE_NAMES, PREPROCESSOR_VERSION, ride_features
from taxifare.files import StagedFile, describe_os_error
from taxifare.model import load_model, predict_fares
from taxifare.progress import Progress, log_summary
from taxifare.registry import Registry, Run
from taxifare.rides import (
    RIDE_COLUMNS,
    RULE_TEXT,
    Rejections,
    format_window,
    iter_ride_blocks,
    outside_training_window,
    rejected_rules,
)
from taxifare.source import read_header

log = logging.getLogger("taxifare")

PREDICTION_COLUMN = "predicted_fare"
OUTSIDE_WINDOW_COLUMN = "outside_training_window"
REFERENCE_RIDE = {
    "pickup_datetime": "2013-07-06 17:18:00 UTC",
    "pickup_longitude": -73.950655,
    "pickup_latitude": 40.783282,
    "dropoff_longitude": -73.984365,
    "dropoff_latitude": 40.769802,
    "passenger_count": 1,
}


def load_run(settings: Settings, model: str | None) -> tuple[Run, object]:
    """The run `model` names (a run id, latest or best of settings.data_size; default latest) and its
    Keras model; InputError if it cannot serve this package."""
    run = Registry(settings.local_registry_path).resolve(model, settings.data_size)
    version = run.params.get("preprocessor_version")
    if version != PREPROCESSOR_VERSION or run.params.get("feature_names") != list(FEATURE_NAMES):
        raise InputError(
            f"run {run.run_id} was trained on preprocessor version {version}, but this taxifare applies version "
            f"{PREPROCESSOR_VERSION}; train a new run (`taxifare train`) or use the taxifare that made it"
        )
    return run, load_model(run.model_path)


def predict_ride(settings: Settings, ride: dict, run_spec: str | None = None) -> float:
    """The fare in dollars of one ride given as {column: value} for RIDE_COLUMNS."""
    pickup = parse_date("--pickup-datetime", str(ride["pickup_datetime"]))
    text = {name: [str(ride[name])] for name in RIDE_COLUMNS}  # the CSV path reads the same date grammar
    rides, reasons = rejected_rules(pa.table(text, schema=pa.schema([(n, pa.string()) for n in RIDE_COLUMNS])))
    if reasons[0]:
        received = ", ".join(f"{name}={ride[name]}" for name in RIDE_COLUMNS)
        raise InputError(f"cannot predict this ride: {RULE_TEXT[reasons[0]]}; received {received}")
    run, model = load_run(settings, run_spec)
    fare = float(predict_fares(model, ride_features(rides).to_numpy(np.float32))[0])
    log.info("predicted with run %s", run.run_id)
    if outside_training_window(rides, _training_window(run))[0]:
        log.warning(
            "pickup %s is outside the training window of run %s (%s): the fare is extrapolated",
            f"{pickup:%Y-%m-%d %H:%M:%S} UTC", run.run_id, format_window(run.pickup_window),
        )
    return fare


def _training_window(run: Run):
    """The run's first and last pickup; None, with a warning, for a run that does not record them."""
    window = run.pickup_window
    if window is None:
        log.warning("run %s records no training window (pickup_first, pickup_last); pickup dates are not checked", run.run_id)
    return window


@dataclass
class CsvPredictions:
    output: Path
    run_id: str
    training_window: str
    rows_read: int = 0
    predicted: int = 0
    outside_training_window: int = 0
    rejected: Rejections = field(default_factory=lambda: Rejections("predicted"))


def predict_csv(settings: Settings, input_path: Path, output_path: Path, run_spec: str | None = None) -> CsvPredictions:
    """Write every predictable row of `input_path`, all its columns, plus predicted_fare, to `output_path`."""
    header = read_header(input_path, required=RIDE_COLUMNS)
    for column in (PREDICTION_COLUMN, OUTSIDE_WINDOW_COLUMN):
        if column in header:
            raise InputError(f"{input_path}: already has a {column} column; expected rides without predictions")
    if output_path.exists() and output_path.resolve() == input_path.resolve():
        raise InputError(f"--output {output_path} is the input file; expected another path")
    run, model = load_run(settings, run_spec)
    window = _training_window(run)
    result = CsvPredictions(output_path, run.run_id, format_window(window) if window else "unknown")
    try:
        with StagedFile(output_path) as staged:
            _stream_predictions(settings, input_path, header, staged, model, window, result)
            staged.commit()
    except OSError as error:
        raise describe_os_error(error, output_path) from error
    _log_result(result)
    return result


def _stream_predictions(settings, input_path, header, target: StagedFile, model, window, result: CsvPredictions) -> None:
    progress = Progress("pred", total=None)
    target.write(_csv_header([*header, PREDICTION_COLUMN, OUTSIDE_WINDOW_COLUMN]))
    for block in iter_ride_blocks(input_path, header, settings.chunk_size, result.rejected):
        rides = block.rides[block.usable]
        fares = predict_fares(model, ride_features(rides).to_numpy(np.float32)) if len(rides) else np.empty(0)
        outside = outside_training_window(rides, window)
        predicted = block.table.filter(pa.array(block.usable))
        predicted = predicted.append_column(PREDICTION_COLUMN, pa.array(np.round(fares, 2)))
        target.write(_csv_rows(predicted.append_column(OUTSIDE_WINDOW_COLUMN, pa.array(outside.astype(np.int8)))))
        result.rows_read += block.rows_read
        result.predicted += len(rides)
        result.outside_training_window += int(outside.sum())
        progress.advance(block.rows_read, note=f"predicted {result.predicted:,}")
    progress.close()


def _csv_header(names: list[str]) -> bytes:
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerow(names)
    return text.getvalue().encode()


def _csv_rows(table: pa.Table) -> bytes:
    """CSV rows, quoted only if some value needs it (pyarrow's "needed" style quotes every text value)."""
    buffer = io.BytesIO()
    try:
        pa_csv.write_csv(table, buffer, pa_csv.WriteOptions(include_header=False, quoting_style="none"))
    except pa.ArrowInvalid:
        buffer = io.BytesIO()
        pa_csv.write_csv(table, buffer, pa_csv.WriteOptions(include_header=False, quoting_style="needed"))
    return buffer.getvalue()


def _log_result(result: CsvPredictions) -> None:
    rows = [
        ("run", result.run_id),
        ("output", str(result.output)),
        ("rows read", f"{result.rows_read:,}"),
        ("rows predicted", f"{result.predicted:,}"),
        ("  outside training window", f"{result.outside_training_window:,} ({result.training_window}; flagged in {OUTSIDE_WINDOW_COLUMN})"),
        ("rows not predicted", f"{result.rejected.total:,}"),
    ]
    rows += [(f"  {rule}", f"{count:,}") for rule, count in result.rejected.counts.items() if count]
    log_summary("pred complete", rows)
