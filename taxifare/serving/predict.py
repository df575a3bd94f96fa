"""Fares from a registry run: one ride from flags, or a CSV of rides of any size, streamed: one output row for each input row.

Rides go through exactly the preprocessing the run was trained on: `parse_rides`, the checks in
`prediction_failures`, then `ride_features`; the run's params.json records the preprocessor version and
the features' names. A run of an earlier version whose features are this version's first columns
(features.PREFIX_VERSIONS) is handed those columns only, so it predicts as it did; another version is refused. A ride picked up outside the run's training window
(its first..last pickup) is still predicted, but flagged: a warning for one ride, a 0/1 column
`outside_training_window` and a count for a CSV. The run's model prices it as on the window's nearest day
(embeddings.TrainingRange; runs before it extrapolate).
"""

from __future__ import annotations

import logging
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np
import pyarrow as pa

from taxifare.core.config import Settings, parse_date
from taxifare.core.errors import InputError, TaxifareError
from taxifare.core.files import StagedFile, describe_os_error
from taxifare.core.progress import Progress, log_summary
from taxifare.model.network import holds_dates, predict_fares
from taxifare.model.saved import load_model
from taxifare.registry.store import Registry, Run
from taxifare.rides.features import FEATURE_NAMES, PREFIX_VERSIONS, PREPROCESSOR_VERSION, feature_matrix, ride_features
from taxifare.rides.layout import CsvFormat
from taxifare.serving.ride_blocks import (
    MALFORMED_LINE,
    RIDE_COLUMNS,
    RULE_TEXT,
    Rejections,
    RideBlock,
    format_window,
    iter_ride_blocks,
    open_rides,
    outside_training_window,
    rejected_rules,
)
from taxifare.sources.parquet_file import ParquetText
from taxifare.sources.raw_csv import RawCsv, csv_header, csv_rows

log = logging.getLogger("taxifare")

PREDICTION_COLUMN = "predicted_fare"
OUTSIDE_WINDOW_COLUMN = "outside_training_window"
REASON_COLUMN = "not_predicted_reason"
ADDED_COLUMNS = (PREDICTION_COLUMN, OUTSIDE_WINDOW_COLUMN, REASON_COLUMN)
REFERENCE_RIDE = {
    "pickup_datetime": "2013-07-06 17:18:00 UTC",
    "pickup_longitude": -73.950655,
    "pickup_latitude": 40.783282,
    "dropoff_longitude": -73.984365,
    "dropoff_latitude": 40.769802,
    "passenger_count": 1,
}


def load_run(settings: Settings, model: str | None, data_set: str | None = None, doing: str = "predicting with") -> tuple[Run, object]:
    """The run `model` names (a run id or a reference, default latest; `data_set` narrows latest and best)
    and its Keras model; InputError if it cannot serve this package. Says which run it is (`doing` it)."""
    run = Registry(settings.local_registry_path).resolve(model, data_set)
    version, names = run.params.get("preprocessor_version"), run.params.get("feature_names")
    if not _servable(version, names):
        raise InputError(
            f"run {run.run_id} was trained on preprocessor version {version}, but this taxifare applies version "
            f"{PREPROCESSOR_VERSION}; train a new run (`taxifare train`) or use the taxifare that made it"
        )
    _log_always(f"{doing} {run.describe()}")
    if run.synthetic:
        log.warning("run %s was trained on synthetic demo rides (`taxifare demo-data`), not real ones: its fares are not real NYC fares", run.run_id)
    return run, load_model(run.model_path)


def _servable(version, names) -> bool:
    """Whether this taxifare computes the features of a run of preprocessor `version` trained on `names`."""
    counts = {**PREFIX_VERSIONS, PREPROCESSOR_VERSION: len(FEATURE_NAMES)}
    count = counts.get(version) if isinstance(version, int) else None
    return count is not None and names == list(FEATURE_NAMES[:count])


def trained_features(run: Run, rides) -> np.ndarray:
    """The features of cleaned `rides` (float32) that `run` was trained on: the first columns of this version's."""
    return feature_matrix(ride_features(rides), len(run.params["feature_names"]))


def _log_always(message: str) -> None:
    """An info line that --quiet keeps too: which run answered is part of every answer."""
    log.handle(log.makeRecord(log.name, logging.INFO, __file__, 0, message, None, None))


def predict_ride(settings: Settings, ride: dict, run_spec: str | None = None, data_set: str | None = None) -> float:
    """The fare in dollars of one ride given as {column: value} for RIDE_COLUMNS."""
    pickup = parse_date("--pickup-datetime", str(ride["pickup_datetime"]), settings.utc_label)
    text = {name: [str(ride[name])] for name in RIDE_COLUMNS}  # the CSV path reads the same date grammar
    rides, reasons, _ = rejected_rules(pa.table(text, schema=pa.schema([(n, pa.string()) for n in RIDE_COLUMNS])), settings.utc_label)
    if reasons[0]:
        received = ", ".join(f"{name}={ride[name]}" for name in RIDE_COLUMNS)
        raise InputError(f"cannot predict this ride: {RULE_TEXT[reasons[0]]}; received {received}")
    run, model = load_run(settings, run_spec, data_set)
    fare = float(predict_fares(model, trained_features(run, rides))[0])
    if outside_training_window(rides, _training_window(run))[0]:
        how = "priced as on the window's nearest day" if holds_dates(model) else "the fare is extrapolated"
        log.warning(
            "pickup %s is outside the training window of run %s (%s): %s",
            f"{pickup:%Y-%m-%d %H:%M:%S} New York time", run.run_id, format_window(run.pickup_window), how,
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
    input: str
    output: Path | None  # None: stdout
    run_id: str
    training_window: str
    rows_read: int = 0
    predicted: int = 0
    outside_training_window: int = 0
    rejected: Rejections = field(default_factory=lambda: Rejections("predicted"))


def predict_csv(
    settings: Settings,
    input_path: Path,
    output_path: Path | None = None,
    run_spec: str | None = None,
    csv_format: CsvFormat = CsvFormat(),
    data_set: str | None = None,
) -> CsvPredictions:
    """Every row of `input_path` ("-": stdin), in order, with all its columns plus predicted_fare,
    outside_training_window and not_predicted_reason, written to `output_path` (None: stdout). A row
    that cannot be predicted keeps its place with an empty fare and its reason. When no row can be
    predicted, the output is written all the same, then InputError says why."""
    if output_path is not None and output_path.exists() and str(input_path) != "-" and output_path.resolve() == input_path.resolve():
        raise InputError(f"--output {output_path} is the input file; expected another path")
    with open_rides(input_path, csv_format, RIDE_COLUMNS) as rides_input:
        for column in ADDED_COLUMNS:
            if column in rides_input.columns:
                raise InputError(f"{rides_input.name}: already has a {column} column; expected rides without predictions")
        run, model = load_run(settings, run_spec, data_set)
        window = _training_window(run)
        result = CsvPredictions(rides_input.name, output_path, run.run_id, format_window(window) if window else "unknown")
        with _output(output_path) as target:
            _stream_predictions(settings, rides_input, target, run, model, window, result)
    _log_result(result)
    if result.predicted == 0:
        where = f"; each row's reason is in the {REASON_COLUMN} column of {output_path or 'the CSV on stdout'}"
        raise InputError(
            f"{result.input}: no row could be predicted ({result.rows_read:,} read: {result.rejected.top_reasons()})"
            f"{where if result.rows_read else ''}"
        )
    return result


@contextmanager
def _output(path: Path | None) -> Iterator[BinaryIO | StagedFile]:
    """The output file, staged and renamed into place once complete; or stdout for None."""
    try:
        if path is None:
            yield sys.stdout.buffer
            sys.stdout.buffer.flush()
            return
        with StagedFile(path) as staged:
            yield staged
            staged.commit()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so that the exit flush fails no more
        raise TaxifareError("stdout was closed before every prediction was written; the rest were not predicted") from None
    except OSError as error:
        raise describe_os_error(error, path) from error


def _stream_predictions(settings, rides_input: RawCsv | ParquetText, target, run: Run, model, window, result: CsvPredictions) -> None:
    progress = Progress("pred", total=None)
    target.write(csv_header([*rides_input.header, *ADDED_COLUMNS], rides_input.delimiter))
    for block in iter_ride_blocks(rides_input, settings.chunk_size, result.rejected, settings.utc_label):
        rides = block.rides.take(block.usable)
        fares = predict_fares(model, trained_features(run, rides)) if len(rides) else np.empty(0)
        outside = outside_training_window(rides, window)
        target.write(csv_rows(_output_rows(block, fares, outside), rides_input.delimiter))
        result.rows_read += block.rows_read
        result.predicted += len(rides)
        result.outside_training_window += int(outside.sum())
        progress.advance(block.rows_read, note=f"predicted {result.predicted:,}")
    progress.close()


def _output_rows(block: RideBlock, fares: np.ndarray, outside: np.ndarray) -> pa.Table:
    """The block's rows in input order, each with its fare or the reason it has none; a malformed line
    becomes a row whose fields are empty but for the reason."""
    usable = block.usable
    fare, flag = np.zeros(len(usable)), np.zeros(len(usable), dtype=np.int8)
    fare[usable], flag[usable] = np.round(fares, 2), outside
    rows = block.table.append_column(PREDICTION_COLUMN, pa.array(fare, mask=~usable))
    rows = rows.append_column(OUTSIDE_WINDOW_COLUMN, pa.array(flag, mask=~usable))
    malformed = len(block.malformed_lines)
    order = np.argsort(np.concatenate([block.lines, block.malformed_lines]), kind="stable")
    reasons = np.concatenate([block.reasons, np.full(malformed, MALFORMED_LINE, dtype=object)])[order]
    if malformed:
        indices = np.concatenate([np.arange(rows.num_rows), np.zeros(malformed, dtype=np.int64)])[order]
        rows = rows.take(pa.array(indices, mask=order >= rows.num_rows))
    return rows.append_column(REASON_COLUMN, pa.array(reasons, pa.string(), mask=reasons == ""))


def _log_result(result: CsvPredictions) -> None:
    rows = [
        ("run", result.run_id),
        ("input", result.input),
        ("output", str(result.output or "stdout")),
        ("rows read", f"{result.rows_read:,}"),
        ("rows predicted", f"{result.predicted:,}"),
        ("  outside training window", f"{result.outside_training_window:,} ({result.training_window}; flagged in {OUTSIDE_WINDOW_COLUMN})"),
        ("rows not predicted", f"{result.rejected.total:,} (the reason of each in {REASON_COLUMN})"),
    ]
    rows += [(f"  {rule}", f"{count:,}") for rule, count in result.rejected.counts.items() if count]
    log_summary("pred complete", rows)
