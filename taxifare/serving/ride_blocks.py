"""Raw rides from a CSV of any size (a file, or stdin), chunk by chunk: the text columns, each row's line
number, and the first rule that makes a row unusable, counted per rule. Shared by `pred` and `evaluate`;
the file is read by the one raw reader (sources/raw_csv.py).

A ride is unusable when it breaks a PREDICTION_RULES rule (it cannot be read, or lies outside what the
model knows). When the fare is scored (`evaluate`), the FARE_RULES come first: a row whose fare is
missing, not a number, or outside the training range is counted under its fare rule.
"""

from __future__ import annotations

import datetime as dt
import logging
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from taxifare.core.dates import EXPECTED
from taxifare.core.errors import ROW_WARNINGS, InputError, clipped, first_example, top_reasons
from taxifare.core.files import reading, reads_of
from taxifare.core.lines import LineChunk, iter_line_chunks, kept_line_numbers
from taxifare.rides.clean import (
    FARE_RANGE,
    LATITUDE_RANGE,
    LONGITUDE_RANGE,
    PASSENGER_RANGE,
    PREDICTION_RULES,
    parse_rides,
    prediction_failures,
    sample_value,
)
from taxifare.rides.features import TARGET
from taxifare.rides.layout import RAW_COLUMNS, SAMPLE_CHARS, CsvFormat
from taxifare.rides.table import Rides
from taxifare.sources.parquet_file import ParquetText, is_parquet
from taxifare.sources.raw_csv import STDIN, RawCsv, open_raw_csv, parse_lines

log = logging.getLogger("taxifare")
row_log = logging.getLogger(ROW_WARNINGS)

RIDE_COLUMNS = tuple(name for name in RAW_COLUMNS if name != TARGET)
MALFORMED_LINE = "malformed_line"
FARE_RULES = ("missing_fare", "unparseable_fare", "fare_out_of_range")
REPORTED_LINES = 20
# Texts read as a missing value, as preprocess reads them (pyarrow's defaults: "", NaN, NULL, N/A, ...).
_MISSING_TEXTS = pa.array(pa_csv.ConvertOptions().null_values, pa.string())
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
    position: str = "line"  # or "row", of a Parquet file
    counts: dict[str, int] = field(init=False)
    first_lines: list[tuple[int, str]] = field(default_factory=list)
    first_line_of: dict[str, int] = field(default_factory=dict)  # rule -> the first line that broke it
    first_value_of: dict[str, str] = field(default_factory=dict)  # rule -> what broke it on that line

    def __post_init__(self) -> None:
        self.counts = dict.fromkeys((MALFORMED_LINE, *(FARE_RULES if self.with_fare else ()), *PREDICTION_RULES), 0)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def add(self, lines: np.ndarray, rules: np.ndarray, value: Callable[[int], str]) -> None:
        """Count rows at `lines` left out for `rules`; `value(i)` is the text that broke rule `rules[i]`."""
        names, first, counts = np.unique(rules, return_index=True, return_counts=True)
        for rule, index, count in zip(names.tolist(), first.tolist(), counts.tolist()):
            self.counts[rule] += count
            if rule not in self.first_line_of:
                self.first_line_of[rule] = int(lines[index])
                self.first_value_of[rule] = value(index)
        room = REPORTED_LINES - len(self.first_lines)
        for line, rule in zip(lines[:room].tolist(), rules[:room].tolist()):
            self.first_lines.append((line, rule))
            row_log.warning("%s %d: not %s: %s", self.position, line, self.verb, RULE_TEXT[rule])

    def log_unreported(self) -> None:
        """The line that ends the capped list of warnings; with those silenced (--quiet), one line instead."""
        if not row_log.isEnabledFor(logging.WARNING):
            if self.total:
                log.warning("%s lines not %s: %s", f"{self.total:,}", self.verb, self.top_reasons())
            return
        unreported = self.total - len(self.first_lines)
        if unreported:
            row_log.warning("... and %s more lines not %s (counted by reason in the summary)", f"{unreported:,}", self.verb)

    def top_reasons(self) -> str:
        """The most frequent rules, each with its count, first line and value (errors.top_reasons)."""
        return top_reasons(self.counts, self._first_example) or "the input has no rows"

    def _first_example(self, rule: str) -> str:
        return first_example(f"{self.position} {self.first_line_of[rule]}", self.first_value_of[rule])


@contextmanager
def open_rides(path: Path, csv_format: CsvFormat, required: Sequence[str]) -> Iterator[RawCsv | ParquetText]:
    """The CSV at `path`, or stdin for "-", opened by the one raw reader (sources/raw_csv.py), or the
    Parquet file; a failed read is one line naming it."""
    name = "stdin" if str(path) == STDIN else str(path)
    if is_parquet(name):
        if csv_format != CsvFormat():
            raise InputError(f"--columns and --delimiter describe a CSV file; {name} is Parquet, which names its columns")
        with reading(name, "the rides"):
            parquet = ParquetText(Path(path), required)
        yield parquet
        return
    with ExitStack() as opened:
        with reading(name, "the rides"):
            raw = opened.enter_context(open_raw_csv(path, csv_format, required))
        raw.blocks = reads_of(raw.blocks, name, "the rides")
        yield raw


@dataclass
class RideBlock:
    """One chunk's rows: text columns, line numbers, parsed rides, which rows are usable and why not
    (`reasons`, "" for a usable row), and the line numbers of the malformed lines (not in `table`)."""

    rows_read: int
    table: pa.Table
    lines: np.ndarray
    rides: Rides
    reasons: np.ndarray
    malformed_lines: np.ndarray

    @property
    def usable(self) -> np.ndarray:
        return self.reasons == ""


def iter_ride_blocks(raw: RawCsv | ParquetText, rows_per_block: int, rejections: Rejections, utc_label: str) -> Iterator[RideBlock]:
    """The rows of the input in blocks of `rows_per_block` lines (or rows of a Parquet file); unusable rows
    are counted in `rejections`. `utc_label`: what " UTC" after a pickup time means (taxifare.core.dates)."""
    for rows_read, table, lines, malformed in _text_rows(raw, rows_per_block, rejections):
        rides, reasons, ride_text = rejected_rules(table, utc_label, rejections.with_fare)
        rows = np.flatnonzero(reasons != "")
        rejections.add(lines[rows], reasons[rows], lambda i: sample_value(reasons[rows[i]], ride_text, rides, int(rows[i])))
        yield RideBlock(rows_read, table, lines, rides, reasons, malformed)
    rejections.log_unreported()


def _text_rows(raw: RawCsv | ParquetText, rows_per_block: int, rejections: Rejections) -> Iterator[tuple[int, pa.Table, np.ndarray, np.ndarray]]:
    """Each block's lines (or rows) read, its rows as text columns, each row's line (or row) number, and
    the malformed lines."""
    if isinstance(raw, ParquetText):
        rejections.position = raw.position
        first = 1
        for table in raw.tables(rows_per_block):
            yield table.num_rows, table, np.arange(first, first + table.num_rows, dtype=np.int64), np.empty(0, dtype=np.int64)
            first += table.num_rows
        return
    for chunk in iter_line_chunks(raw.blocks, rows_per_block, raw.first_line):
        yield chunk.rows, *_read_text_rows(chunk, raw, rejections)


def rejected_rules(table: pa.Table, utc_label: str, with_fare: bool = False) -> tuple[Rides, np.ndarray, pa.Table]:
    """Parsed rides, per row the first rule it breaks ("" for a usable row), and the ride columns as they
    were parsed (missing-value texts as nulls); the FARE_RULES apply only `with_fare` (otherwise the fare
    is not read at all)."""
    fare_text = _as_missing(table.column(TARGET)) if with_fare else pa.array(["0"] * table.num_rows, pa.string())
    ride_text = pa.table({name: _as_missing(table.column(name)) for name in RIDE_COLUMNS})
    ride_text = ride_text.append_column(TARGET, fare_text)
    rides, parse_failures = parse_rides(ride_text, utc_label)
    failures = prediction_failures(rides, parse_failures)
    if with_fare:
        # First, so that a row whose only fault is its fare is not counted as a missing or bad value.
        failures = {**_fare_failures(rides, fare_text), **failures}
    reasons = np.full(table.num_rows, "", dtype=object)
    for rule in reversed(failures):
        reasons[failures[rule]] = rule
    return rides, reasons, ride_text


def _as_missing(text: pa.ChunkedArray) -> pa.ChunkedArray:
    """The column with the missing-value texts as nulls (the table keeps the text, for the output)."""
    return pc.if_else(pc.is_in(text, value_set=_MISSING_TEXTS), pa.scalar(None, pa.string()), text)


def _fare_failures(rides: Rides, fare_text) -> dict[str, np.ndarray]:
    missing = pc.is_null(fare_text).to_numpy(zero_copy_only=False)
    fare = rides[TARGET]
    return {
        "missing_fare": missing,
        "unparseable_fare": ~missing & np.isnan(fare),
        "fare_out_of_range": ~((fare > FARE_RANGE[0]) & (fare < FARE_RANGE[1])),
    }


def outside_training_window(rides: Rides, window: tuple[dt.datetime, dt.datetime] | None) -> np.ndarray:
    """Which rides were picked up before the first or after the last pickup a run trained on (all False
    when the run records no window)."""
    if window is None:
        return np.zeros(len(rides), dtype=bool)
    first, last = (np.datetime64(value.replace(tzinfo=None), "s") for value in window)
    pickup = rides["pickup_datetime"]
    return (pickup < first) | (pickup > last)


def format_window(window: tuple[dt.datetime, dt.datetime]) -> str:
    return f"{window[0]:%Y-%m-%d %H:%M:%S} .. {window[1]:%Y-%m-%d %H:%M:%S} New York time"


def _read_text_rows(chunk: LineChunk, raw: RawCsv, rejections: Rejections) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    """The chunk's rows as text columns (all of them, as written), each row's line number, and the line
    numbers of the malformed lines, which are counted and skipped."""
    parsed = parse_lines(chunk.data, raw, chunk.first_line, keep=None, as_written=True)
    skipped = chunk.first_line - 1 + np.asarray([number for number, _ in parsed.malformed], dtype=np.int64)
    texts = [text for _, text in parsed.malformed]
    rejections.add(skipped, np.full(len(skipped), MALFORMED_LINE, dtype=object), lambda i: clipped(texts[i], SAMPLE_CHARS))
    table = parsed.table
    return table, chunk.first_line - 1 + kept_line_numbers(table.num_rows, skipped - chunk.first_line + 1), skipped
