"""Fares from a registry run: one ride from flags, or a CSV of rides of any size, streamed.

Rides go through exactly the preprocessing the run was trained on: `parse_rides`, the checks in
`prediction_failures`, then `ride_features`; the run's params.json records the preprocessor version,
and a run made by another version is refused.
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

from taxifare.lines import LineSpan, iter_line_spans, read_span_bytes
from taxifare.clean import LATITUDE_RANGE, LONGITUDE_RANGE, PASSENGER_RANGE, PREDICTION_RULES, parse_rides, prediction_failures
from taxifare.config import Settings, parse_date
from taxifare.errors import InputError, first_line
from taxifare.features import FEATURE_NAMES, PREPROCESSOR_VERSION, TARGET, ride_features
from taxifare.files import StagedFile, describe_os_error
from taxifare.model import load_model, predict_fares
from taxifare.progress import Progress, log_summary
from taxifare.registry import Registry, Run
from taxifare.source import RAW_COLUMNS, read_header

log = logging.getLogger("taxifare")

RIDE_COLUMNS = tuple(name for name in RAW_COLUMNS if name != TARGET)
PREDICTION_COLUMN = "predicted_fare"
REFERENCE_RIDE = {
    "pickup_datetime": "2013-07-06 17:18:00 UTC",
    "pickup_longitude": -73.950655,
    "pickup_latitude": 40.783282,
    "dropoff_longitude": -73.984365,
    "dropoff_latitude": 40.769802,
    "passenger_count": 1,
}
MALFORMED_LINE = "malformed_line"
REPORTED_LINES = 20
_RULE_TEXT = {
    MALFORMED_LINE: "wrong number of fields",
    "missing_value": "a value is missing",
    "unparseable_number": "a value is not a number",
    "bad_datetime": "pickup_datetime is not a date and time",
    "passenger_count_out_of_range": f"passenger_count is not a whole number from {PASSENGER_RANGE[0]} to {PASSENGER_RANGE[1]}",
    "outside_nyc": (
        f"a point is outside the area the model knows (latitude {LATITUDE_RANGE[0]}..{LATITUDE_RANGE[1]}, "
        f"longitude {LONGITUDE_RANGE[0]}..{LONGITUDE_RANGE[1]})"
    ),
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


def rejected_rules(table: pa.Table):
    """Parsed rides, and per row the first PREDICTION_RULES rule it breaks ("" for a predictable row)."""
    rides_text = table.select(list(RIDE_COLUMNS)).append_column(TARGET, pa.array(["0"] * table.num_rows, pa.string()))
    rides, parse_failures = parse_rides(rides_text)
    failures = prediction_failures(rides, parse_failures)
    reasons = np.full(table.num_rows, "", dtype=object)
    for rule in reversed(PREDICTION_RULES):
        reasons[failures[rule]] = rule
    return rides, reasons


def predict_ride(settings: Settings, ride: dict, run_spec: str | None = None) -> float:
    """The fare in dollars of one ride given as {column: value} for RIDE_COLUMNS."""
    pickup = parse_date("--pickup-datetime", str(ride["pickup_datetime"]))
    text = {name: [str(ride[name])] for name in RIDE_COLUMNS}
    text["pickup_datetime"] = [f"{pickup:%Y-%m-%d %H:%M:%S} UTC"]
    rides, reasons = rejected_rules(pa.table(text, schema=pa.schema([(n, pa.string()) for n in RIDE_COLUMNS])))
    if reasons[0]:
        received = ", ".join(f"{name}={ride[name]}" for name in RIDE_COLUMNS)
        raise InputError(f"cannot predict this ride: {_RULE_TEXT[reasons[0]]}; received {received}")
    run, model = load_run(settings, run_spec)
    fare = float(predict_fares(model, ride_features(rides).to_numpy(np.float32))[0])
    log.info("predicted with run %s", run.run_id)
    return fare


@dataclass
class CsvPredictions:
    output: Path
    run_id: str
    rows_read: int = 0
    predicted: int = 0
    rejected: dict[str, int] = field(default_factory=lambda: dict.fromkeys((MALFORMED_LINE, *PREDICTION_RULES), 0))
    first_rejected_lines: list[tuple[int, str]] = field(default_factory=list)

    def reject(self, lines: np.ndarray, rules: np.ndarray) -> None:
        for line, rule in zip(lines.tolist(), rules.tolist()):
            self.rejected[rule] += 1
            if len(self.first_rejected_lines) < REPORTED_LINES:
                self.first_rejected_lines.append((line, rule))
                log.warning("line %d: not predicted: %s", line, _RULE_TEXT[rule])


def predict_csv(settings: Settings, input_path: Path, output_path: Path, run_spec: str | None = None) -> CsvPredictions:
    """Write every predictable row of `input_path`, all its columns, plus predicted_fare, to `output_path`."""
    header = read_header(input_path, required=RIDE_COLUMNS)
    if PREDICTION_COLUMN in header:
        raise InputError(f"{input_path}: already has a {PREDICTION_COLUMN} column; expected rides without predictions")
    if output_path.exists() and output_path.resolve() == input_path.resolve():
        raise InputError(f"--output {output_path} is the input file; expected another path")
    run, model = load_run(settings, run_spec)
    result = CsvPredictions(output_path, run.run_id)
    try:
        with StagedFile(output_path) as staged:
            _stream_predictions(settings, input_path, header, staged, model, result)
            staged.commit()
    except OSError as error:
        raise describe_os_error(error, output_path) from error
    _log_result(result)
    return result


def _stream_predictions(settings, input_path, header, target: StagedFile, model, result: CsvPredictions) -> None:
    progress = Progress("pred", total=None)
    with input_path.open("rb") as source:
        target.write(_csv_header([*header, PREDICTION_COLUMN]))
        for span in iter_line_spans(input_path, settings.chunk_size):
            table, lines = _read_text_rows(source, span, header, result)
            rides, reasons = rejected_rules(table)
            good = reasons == ""
            result.reject(lines[~good], reasons[~good])
            fares = predict_fares(model, ride_features(rides[good]).to_numpy(np.float32)) if good.any() else np.empty(0)
            target.write(_csv_rows(table.filter(pa.array(good)).append_column(PREDICTION_COLUMN, pa.array(np.round(fares, 2)))))
            result.rows_read += span.rows
            result.predicted += int(good.sum())
            progress.advance(span.rows, note=f"predicted {result.predicted:,}")
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


def _read_text_rows(source, span: LineSpan, header: list[str], result: CsvPredictions) -> tuple[pa.Table, np.ndarray]:
    """The span's rows as text columns and each row's line number; malformed lines are reported and skipped."""
    malformed: list[int] = []

    def skip(row: pa_csv.InvalidRow) -> str:
        malformed.append(row.number)
        return "skip"

    try:
        table = pa_csv.read_csv(
            io.BytesIO(read_span_bytes(source, span)),
            # One thread, so that the reader knows the line number of each malformed row.
            read_options=pa_csv.ReadOptions(column_names=header, use_threads=False),
            parse_options=pa_csv.ParseOptions(invalid_row_handler=skip, ignore_empty_lines=False),
            convert_options=pa_csv.ConvertOptions(
                column_types={name: pa.string() for name in header}, strings_can_be_null=True, check_utf8=False
            ),
        )
    except pa.ArrowInvalid as error:
        raise InputError(f"unreadable CSV near line {span.first_line}: {first_line(error)}") from None
    skipped = np.asarray(malformed, dtype=np.int64)
    result.reject(span.first_line - 1 + skipped, np.full(len(skipped), MALFORMED_LINE, dtype=object))
    return table, span.first_line - 1 + kept_line_numbers(table.num_rows, skipped)


def kept_line_numbers(kept: int, skipped: np.ndarray) -> np.ndarray:
    """1-based line numbers of the kept rows of a block whose lines `skipped` (1-based, sorted) were dropped.

    Row k lands on line k + 1 pushed down by every skipped line at or before it: skipped line i (0-based)
    comes before row k exactly when skipped[i] - i <= k + 1.
    """
    positions = np.arange(1, kept + 1)
    return positions + np.searchsorted(skipped - np.arange(len(skipped)), positions, side="right")


def _log_result(result: CsvPredictions) -> None:
    rejected = sum(result.rejected.values())
    rows = [
        ("run", result.run_id),
        ("output", str(result.output)),
        ("rows read", f"{result.rows_read:,}"),
        ("rows predicted", f"{result.predicted:,}"),
        ("rows not predicted", f"{rejected:,}"),
    ]
    rows += [(f"  {rule}", f"{count:,}") for rule, count in result.rejected.items() if count]
    log_summary("pred complete", rows)
