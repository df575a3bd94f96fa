"""Parse raw text rides and drop the rows that cannot be real, counting each drop by the first rule it breaks.

Rules, in the order they are applied:
missing_value, unparseable_number, bad_datetime, outside_date_window, duplicate, zero_coordinates,
passenger_count_out_of_range, fare_out_of_range, outside_nyc.
Lines with the wrong number of fields never reach this module; the source counts them as malformed_line.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Container
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from taxifare.core.errors import clipped
from taxifare.core.row_hash import hash_words
from taxifare.rides.date_columns import parse_datetime_column
from taxifare.rides.dedup import SeenRows
from taxifare.rides.layout import RAW_COLUMNS, SAMPLE_CHARS
from taxifare.rides.table import Rides, numpy_values

NUMERIC_COLUMNS = tuple(name for name in RAW_COLUMNS if name != "pickup_datetime")
COORDINATE_COLUMNS = ("pickup_longitude", "pickup_latitude", "dropoff_longitude", "dropoff_latitude")

REJECT_RULES = (
    "malformed_line",
    "missing_value",
    "unparseable_number",
    "bad_datetime",
    "outside_date_window",
    "duplicate",
    "zero_coordinates",
    "passenger_count_out_of_range",
    "fare_out_of_range",
    "outside_nyc",
)

LATITUDE_RANGE = (40.5, 40.9)
LONGITUDE_RANGE = (-74.3, -73.7)
PASSENGER_RANGE = (1, 7)
FARE_RANGE = (0.0, 400.0)  # exclusive at both ends
_BOX = {name: LONGITUDE_RANGE if name.endswith("longitude") else LATITUDE_RANGE for name in COORDINATE_COLUMNS}

# A plain decimal or scientific number; "nan" and "inf" are not accepted as ride values.
_NUMBER_PATTERN = r"^[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$"
_NULL_TEXT = pa.nulls(1, pa.string())[0]  # pa.scalar(None, ...) would import pandas


@dataclass
class Rejects:
    """Rows dropped, per rule, and the first of them: its row in the table that was cleaned (a caller
    turns it into a line of the input) and the offending value as text (None for `duplicate`)."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REJECT_RULES, 0))
    samples: dict[str, tuple[int, str | None]] = field(default_factory=dict)

    def count(self, rule: str, mask: np.ndarray, rows: np.ndarray, value) -> None:
        """Count the rows of `mask`; the first, if it is the first of its rule, is the sample (`value(row)`;
        None: the caller has one already)."""
        hits = int(mask.sum())
        self.counts[rule] += hits
        if hits and rule not in self.samples and value is not None:
            row = int(rows[np.argmax(mask)])
            self.samples[rule] = (row, value(row))


@dataclass
class CleanChunk:
    rides: Rides
    rejects: Rejects


@dataclass
class ScreenedRides:
    """Rows that pass the rules before `duplicate`, with their row hashes (for that rule) and the counts so far."""

    rides: Rides
    hashes: np.ndarray
    rejects: Rejects


# The verdict of a ride that breaks none of the rules after `duplicate`.
KEPT = -1


def _parse_numbers(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """Float64 values (NaN where unusable) and a mask of present-but-unparseable cells."""
    try:
        numbers = pc.cast(column, pa.float64())
    except pa.ArrowInvalid:
        # Some cell is not a number: keep the ones that are, cell by cell (slower, so only now).
        is_number = pc.match_substring_regex(column, _NUMBER_PATTERN)
        numbers = pc.cast(pc.if_else(is_number, column, _NULL_TEXT), pa.float64())
    values = numpy_values(numbers, null=np.nan)
    present = numpy_values(pc.is_valid(column))
    unusable = ~np.isfinite(values)
    return np.where(unusable, np.nan, values), present & unusable


def parse_rides(table: pa.Table, utc_label: str) -> tuple[Rides, dict[str, np.ndarray]]:
    """Typed rides (pickup_datetime on the New York wall clock; `utc_label`: what " UTC" means, see
    taxifare.core.dates) and, per parse rule, the mask of rows that break it (in rule order, overlaps allowed)."""
    columns = {}
    missing = np.zeros(table.num_rows, dtype=bool)
    unparseable = np.zeros(table.num_rows, dtype=bool)
    for name in NUMERIC_COLUMNS:
        column = table.column(name)
        values, bad = _parse_numbers(column)
        columns[name] = values
        missing |= numpy_values(pc.is_null(column))
        unparseable |= bad
    pickup_text = table.column("pickup_datetime")
    pickup = parse_datetime_column(pickup_text, utc_label)
    missing |= numpy_values(pc.is_null(pickup_text))
    columns["pickup_datetime"] = pickup
    rides = Rides.numbered({name: columns[name] for name in RAW_COLUMNS})
    return rides, {
        "missing_value": missing,
        "unparseable_number": unparseable,
        "bad_datetime": np.isnat(pickup),
    }


def _outside(values: np.ndarray, low: float, high: float) -> np.ndarray:
    return ~((values >= low) & (values <= high))


def clean_rides(table: pa.Table, min_date: dt.datetime, max_date: dt.datetime, seen: SeenRows, utc_label: str) -> CleanChunk:
    """The chunk's valid rides (pickup_datetime as New York wall-clock datetime64) and how many rows each
    rule dropped; the window's dates are New York wall-clock times too, `utc_label` says what " UTC" means."""
    screened = screen_rides(table, min_date, max_date, utc_label)
    first = seen.first_occurrences(screened.hashes)
    verdicts = later_verdicts(screened.rides)
    keep = first & (verdicts == KEPT)
    settle_rejects(screened.rejects, first, verdicts, screened.rides.rows)
    screened.rejects.samples.update(later_samples(table, screened.rides, verdicts, screened.rejects.samples))
    return CleanChunk(rides=screened.rides.take(keep).renumbered(), rejects=screened.rejects)


def screen_rides(
    table: pa.Table, min_date: dt.datetime, max_date: dt.datetime, utc_label: str, sampled: Container[str] = ()
) -> ScreenedRides:
    """Parse the rows and apply the rules before `duplicate`; the rides' index is their row in `table`.
    `sampled`: rules that the caller has a sample of already, whose value is not looked up again."""
    rides, parse_failures = parse_rides(table, utc_label)
    rejects = Rejects()
    keep = np.ones(len(rides), dtype=bool)
    pickup = rides["pickup_datetime"]
    low, high = (np.datetime64(value, "s") for value in (min_date, max_date))
    failures = {**parse_failures, "outside_date_window": ~((pickup >= low) & (pickup < high))}
    rows = np.arange(len(rides))
    for rule, mask in failures.items():
        hit = keep & mask
        rejects.count(rule, hit, rows, None if rule in sampled else lambda row: sample_value(rule, table, rides, row))
        keep &= ~hit
    rides = rides.take(keep)
    return ScreenedRides(rides=rides, hashes=_row_hashes(rides), rejects=rejects)


def later_verdicts(rides: Rides) -> np.ndarray:
    """Per ride, the index in REJECT_RULES of the first rule after `duplicate` that it breaks, else KEPT.

    Exact duplicates get the same verdict, so it can be computed before knowing which rows repeat others.
    """
    fare = rides["fare_amount"]
    failures = {
        "zero_coordinates": np.logical_and.reduce([rides[name] == 0 for name in COORDINATE_COLUMNS]),
        "passenger_count_out_of_range": bad_passenger_counts(rides),
        "fare_out_of_range": ~((fare > FARE_RANGE[0]) & (fare < FARE_RANGE[1])),
        "outside_nyc": outside_nyc(rides),
    }
    verdicts = np.full(len(rides), KEPT, dtype=np.int8)
    for rule, mask in failures.items():
        verdicts[(verdicts == KEPT) & mask] = REJECT_RULES.index(rule)
    return verdicts


def settle_rejects(rejects: Rejects, first: np.ndarray, verdicts: np.ndarray, rows: np.ndarray) -> None:
    """Add to the screening's `rejects` the `duplicate` rule (rows not `first`, whose sample is its row in
    `rows`) and the counts of the rules after it, for the rest."""
    rejects.count("duplicate", ~first, rows, lambda row: None)
    counts = np.bincount(verdicts[first & (verdicts != KEPT)], minlength=len(REJECT_RULES))
    for index, rule in enumerate(REJECT_RULES):
        rejects.counts[rule] += int(counts[index])


def later_samples(table: pa.Table, rides: Rides, verdicts: np.ndarray, known: dict) -> dict[str, tuple[int, str]]:
    """The first ride of each verdict (not yet in `known`) with its value: always a first occurrence, since
    an earlier exact copy would have the same verdict."""
    samples = {}
    for index in np.unique(verdicts[verdicts != KEPT]):
        rule = REJECT_RULES[index]
        if rule not in known:
            row = int(rides.rows[np.argmax(verdicts == index)])
            samples[rule] = (row, sample_value(rule, table, rides, row))
    return samples


def sample_value(rule: str, table: pa.Table, rides: Rides, row: int) -> str:
    """`column=text` of the value that makes row `row` of `table` break `rule` (rides: its parsed rows)."""
    text = {name: _text_at(table.column(name), row) for name in RAW_COLUMNS}
    parsed = rides.at_row(row)
    candidates = {
        "missing_value": [name for name in RAW_COLUMNS if text[name] is None],
        "unparseable_number": [name for name in NUMERIC_COLUMNS if text[name] is not None and np.isnan(parsed[name])],
        "outside_nyc": [name for name in COORDINATE_COLUMNS if not _BOX[name][0] <= parsed[name] <= _BOX[name][1]],
        "zero_coordinates": list(COORDINATE_COLUMNS),
        "passenger_count_out_of_range": ["passenger_count"],
        "fare_out_of_range": ["fare_amount"],
        "missing_fare": ["fare_amount"],
        "unparseable_fare": ["fare_amount"],
    }.get(rule, ["pickup_datetime"])
    shown = candidates if rule == "zero_coordinates" else candidates[:1]
    return clipped(" ".join(f"{name}={text[name] or ''}" for name in shown), SAMPLE_CHARS)


def _text_at(column: pa.ChunkedArray, row: int) -> str | None:
    """A cell's text; bytes that are not UTF-8 (which the rules read as not a number) become U+FFFD."""
    value = column.slice(row, 1).cast(pa.binary())[0].as_py()
    return None if value is None else value.decode("utf-8", "replace")


def _row_hashes(rides: Rides) -> np.ndarray:
    """Equal rides hash alike: -0.0 and 0.0 are one value (+ 0.0 makes them one bit pattern)."""
    numbers = [(rides[name] + 0.0).view(np.uint64) for name in NUMERIC_COLUMNS]
    pickups = rides["pickup_datetime"].astype("datetime64[s]", copy=False).view(np.uint64)
    return hash_words([*numbers, pickups], len(rides))


def bad_passenger_counts(rides: Rides) -> np.ndarray:
    passengers = rides["passenger_count"]
    return _outside(passengers, *PASSENGER_RANGE) | (passengers != np.round(passengers))


def outside_nyc(rides: Rides) -> np.ndarray:
    return (
        _outside(rides["pickup_latitude"], *LATITUDE_RANGE)
        | _outside(rides["dropoff_latitude"], *LATITUDE_RANGE)
        | _outside(rides["pickup_longitude"], *LONGITUDE_RANGE)
        | _outside(rides["dropoff_longitude"], *LONGITUDE_RANGE)
    )


# What makes a ride unfit for prediction, in the order reported: it cannot be read, or it lies outside
# what the model was trained on (passenger counts and the NYC box).
PREDICTION_RULES = (
    "missing_value",
    "unparseable_number",
    "bad_datetime",
    "passenger_count_out_of_range",
    "outside_nyc",
)


def prediction_failures(rides: Rides, parse_failures: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per PREDICTION_RULES rule, the rows of parsed rides that break it (overlaps allowed)."""
    return {
        **parse_failures,
        "passenger_count_out_of_range": bad_passenger_counts(rides),
        "outside_nyc": outside_nyc(rides),
    }
