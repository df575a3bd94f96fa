"""Raw rides from a CSV of any size, span by span: the text columns, each row's line number, and the
first rule that makes a row unusable, counted per rule. Shared by `pred` and `evaluate`.

A ride is unusable when it breaks a PREDICTION_RULES rule (it cannot be read, or lies outside what the
model knows). When the fare is scored (`evaluate`), the FARE_RULES come first: a row whose fare is
missing, not a number, or outside the training range is counted under its fare rule.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from taxifare.clean import FARE_RANGE, LATITUDE_RANGE, LONGITUDE_RANGE, PASSENGER_RANGE, PREDICTION_RULES, parse_rides, prediction_failures
from taxifare.dates import EXPECTED
from taxifare.errors import InputError, first_line
from taxifare.features import TARGET
from taxifare.lines import LineSpan, iter_line_spans, kept_line_numbers, read_span_bytes
from taxifare.source import RAW_COLUMNS

log = logging.getLogger("taxifare")

RIDE_COLUMNS = tuple(name for name in RAW_COLUMNS if name != TARGET)
MALFORMED_LINE = "malformed_line"
FARE_RULES = ("missing_fare", "unparseable_fare", "fare_out_of_range")
REPORTED_LINES = 20
RULE_TEXT = {
    MALFORMED_LINE: "wrong number of fields",
    "missing_fare": "fare_amount is missing",
    "unparseable_fare": "fare_amount is not a number",
    "fare_out_of_range": f"fare_amount is outside the training range ({FARE_RANGE[0]:g} < fare < {FARE_RANGE[1]:g})",
    "missing_value": "a value is missing",
    "unparseable_number": "a value is not a number",
    "bad_datetime": f"pickup_datetime is not a date and time of the form {EXPECTED}",
    "passenger_count_out_of_range": f"passenger_count is not a whole number from {PASSENGER_RANGE[0]} to {PASSENGER_RANGE[1]}",
    "outside_nyc": (
        f"a point is outside the area the model knows (latitude {LATITUDE_RANGE[0]}..{LATITUDE_RANGE[1]}, "
        f"longitude {LONGITUDE_RANGE[0]}..{LONGITUDE_RANGE[1]})"
    ),
}


@dataclass
class Rejections:
    """Rows left out, per rule, and the first REPORTED_LINES of them logged as `line N: not <verb>: why`."""

    verb: str
    with_fare: bool = False
    counts: dict[str, int] = field(init=False)
    first_lines: list[tuple[int, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.counts = dict.fromkeys((MALFORMED_LINE, *(FARE_RULES if self.with_fare else ()), *PREDICTION_RULES), 0)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def add(self, lines: np.ndarray, rules: np.ndarray) -> None:
        for rule, count in zip(*np.unique(rules, return_counts=True)):
            self.counts[rule] += int(count)
        room = REPORTED_LINES - len(self.first_lines)
        for line, rule in zip(lines[:room].tolist(), rules[:room].tolist()):
            self.first_lines.append((line, rule))
            log.warning("line %d: not %s: %s", line, self.verb, RULE_TEXT[rule])

    def log_unreported(self) -> None:
        """The line that ends the capped list of warnings."""
        unreported = self.total - len(self.first_lines)
        if unreported:
            log.warning("... and %s more lines not %s (counted by reason in the summary)", f"{unreported:,}", self.verb)


@dataclass
class RideBlock:
    """One span's readable rows: text columns, line numbers, parsed rides, and which rows are usable."""

    rows_read: int
    table: pa.Table
    lines: np.ndarray
    rides: pd.DataFrame
    usable: np.ndarray


def iter_ride_blocks(path: Path, header: list[str], rows_per_block: int, rejections: Rejections) -> Iterator[RideBlock]:
    """The rows of CSV `path` in blocks of `rows_per_block` lines; unusable rows are counted in `rejections`."""
    with path.open("rb") as source:
        for span in iter_line_spans(path, rows_per_block):
            table, lines = _read_text_rows(source, span, header, rejections)
            rides, reasons = rejected_rules(table, rejections.with_fare)
            usable = reasons == ""
            rejections.add(lines[~usable], reasons[~usable])
            yield RideBlock(span.rows, table, lines, rides, usable)
    rejections.log_unreported()


def rejected_rules(table: pa.Table, with_fare: bool = False) -> tuple[pd.DataFrame, np.ndarray]:
    """Parsed rides, and per row the first rule it breaks ("" for a usable row); the FARE_RULES apply
    only `with_fare` (otherwise the fare is not read at all)."""
    fare_text = table.column(TARGET) if with_fare else pa.array(["0"] * table.num_rows, pa.string())
    rides, parse_failures = parse_rides(table.select(list(RIDE_COLUMNS)).append_column(TARGET, fare_text))
    failures = prediction_failures(rides, parse_failures)
    if with_fare:
        # First, so that a row whose only fault is its fare is not counted as a missing or bad value.
        failures = {**_fare_failures(rides, fare_text), **failures}
    reasons = np.full(table.num_rows, "", dtype=object)
    for rule in reversed(failures):
        reasons[failures[rule]] = rule
    return rides, reasons


def _fare_failures(rides: pd.DataFrame, fare_text) -> dict[str, np.ndarray]:
    missing = pc.is_null(fare_text).to_numpy(zero_copy_only=False)
    fare = rides[TARGET].to_numpy()
    return {
        "missing_fare": missing,
        "unparseable_fare": ~missing & np.isnan(fare),
        "fare_out_of_range": ~((fare > FARE_RANGE[0]) & (fare < FARE_RANGE[1])),
    }


def outside_training_window(rides: pd.DataFrame, window: tuple[dt.datetime, dt.datetime] | None) -> np.ndarray:
    """Which rides were picked up before the first or after the last pickup a run trained on (all False
    when the run records no window)."""
    if window is None:
        return np.zeros(len(rides), dtype=bool)
    first, last = (np.datetime64(value.replace(tzinfo=None), "s") for value in window)
    pickup = rides["pickup_datetime"].to_numpy()
    return (pickup < first) | (pickup > last)


def format_window(window: tuple[dt.datetime, dt.datetime]) -> str:
    return f"{window[0]:%Y-%m-%d %H:%M:%S} .. {window[1]:%Y-%m-%d %H:%M:%S} UTC"


def _read_text_rows(source, span: LineSpan, header: list[str], rejections: Rejections) -> tuple[pa.Table, np.ndarray]:
    """The span's rows as text columns and each row's line number; malformed lines are counted and skipped."""
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
    rejections.add(span.first_line - 1 + skipped, np.full(len(skipped), MALFORMED_LINE, dtype=object))
    return table, span.first_line - 1 + kept_line_numbers(table.num_rows, skipped)
