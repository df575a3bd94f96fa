"""Parse raw text rides and drop the rows that cannot be real, counting each drop by the first rule it breaks.

Rules, in the order they are applied:
missing_value, unparseable_number, bad_datetime, outside_date_window, duplicate, zero_coordinates,
passenger_count_out_of_range, fare_out_of_range, outside_nyc.
Lines with the wrong number of fields never reach this module; the source counts them as malformed_line.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from taxifare.dedup import SeenRows
from taxifare.source import RAW_COLUMNS

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

# A plain decimal or scientific number; "nan" and "inf" are not accepted as ride values.
_NUMBER_PATTERN = r"^[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$"
# The BigQuery export form first; the others are unambiguous and common in hand-made files.
_DATETIME_FORMATS = (
    "%Y-%m-%d %H:%M:%S UTC",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%dT%H:%M:%SZ",
    "%Y-%m-%d %H:%M:%S%z",
    "%Y-%m-%dT%H:%M:%S%z",
)


@dataclass
class CleanChunk:
    rides: pd.DataFrame
    rejects: dict[str, int]


@dataclass
class ScreenedRides:
    """Rows that pass the rules before `duplicate`, with their row hashes (for that rule) and the counts so far."""

    rides: pd.DataFrame
    hashes: np.ndarray
    rejects: dict[str, int]


# The verdict of a ride that breaks none of the rules after `duplicate`.
KEPT = -1


def _parse_numbers(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """Float64 values (NaN where unusable) and a mask of present-but-unparseable cells."""
    try:
        numbers = pc.cast(column, pa.float64())
    except pa.ArrowInvalid:
        # Some cell is not a number: keep the ones that are, cell by cell (slower, so only now).
        is_number = pc.match_substring_regex(column, _NUMBER_PATTERN)
        numbers = pc.cast(pc.if_else(is_number, column, pa.scalar(None, pa.string())), pa.float64())
    values = numbers.to_numpy(zero_copy_only=False).astype(np.float64)  # a writable copy
    present = pc.is_valid(column).to_numpy(zero_copy_only=False)
    unusable = ~np.isfinite(values)
    values[unusable] = np.nan
    return values, present & unusable


def _parse_datetimes(column: pa.ChunkedArray) -> np.ndarray:
    """Seconds since the epoch (int64, UTC) as datetime64[s]; NaT where unparseable."""
    parsed = pc.strptime(column, format=_DATETIME_FORMATS[0], unit="s", error_is_null=True)
    for fmt in _DATETIME_FORMATS[1:]:
        if parsed.null_count == column.null_count:
            break
        fallback = pc.strptime(column, format=fmt, unit="s", error_is_null=True)
        parsed = pc.coalesce(parsed, fallback)
    seconds = pc.cast(parsed, pa.timestamp("s")).to_numpy(zero_copy_only=False).astype("datetime64[s]", copy=True)
    seconds[~_calendar_valid(column)] = np.datetime64("NaT")
    return seconds


def _calendar_valid(column: pa.ChunkedArray) -> np.ndarray:
    """Whether each leading date exists: strptime rolls 2013-02-30 over to March 2nd instead of failing.

    Only days 29-31 can roll over, so only those rows pay for the round-trip check.
    """
    valid = np.ones(len(column), dtype=bool)
    day = pc.utf8_slice_codeunits(column, 8, 10)
    suspects = pc.indices_nonzero(pc.fill_null(pc.greater(day, "28"), False))
    if len(suspects):
        date = pc.utf8_slice_codeunits(pc.take(column, suspects), 0, 10)
        parsed = pc.strptime(date, format="%Y-%m-%d", unit="s", error_is_null=True)
        same = pc.fill_null(pc.equal(pc.strftime(parsed, format="%Y-%m-%d"), date), False)
        valid[suspects.to_numpy()] = same.to_numpy(zero_copy_only=False)
    return valid


def parse_rides(table: pa.Table) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Typed rides and, per parse rule, the mask of rows that break it (in rule order, overlaps allowed)."""
    columns = {}
    missing = np.zeros(table.num_rows, dtype=bool)
    unparseable = np.zeros(table.num_rows, dtype=bool)
    for name in NUMERIC_COLUMNS:
        column = table.column(name)
        values, bad = _parse_numbers(column)
        columns[name] = values
        missing |= pc.is_null(column).to_numpy(zero_copy_only=False)
        unparseable |= bad
    pickup_text = table.column("pickup_datetime")
    pickup = _parse_datetimes(pickup_text)
    missing |= pc.is_null(pickup_text).to_numpy(zero_copy_only=False)
    columns["pickup_datetime"] = pickup
    rides = pd.DataFrame({name: columns[name] for name in RAW_COLUMNS})
    return rides, {
        "missing_value": missing,
        "unparseable_number": unparseable,
        "bad_datetime": np.isnat(pickup),
    }


def _outside(values: pd.Series, low: float, high: float) -> np.ndarray:
    return ~((values >= low) & (values <= high)).to_numpy()


def clean_rides(table: pa.Table, min_date: dt.datetime, max_date: dt.datetime, seen: SeenRows) -> CleanChunk:
    """The chunk's valid rides (pickup_datetime as UTC datetime64) and how many rows each rule dropped."""
    screened = screen_rides(table, min_date, max_date)
    first = seen.first_occurrences(screened.hashes)
    verdicts = later_verdicts(screened.rides)
    keep = first & (verdicts == KEPT)
    rejects = settle_rejects(screened.rejects, first, verdicts)
    return CleanChunk(rides=screened.rides[keep].reset_index(drop=True), rejects=rejects)


def screen_rides(table: pa.Table, min_date: dt.datetime, max_date: dt.datetime) -> ScreenedRides:
    """Parse the rows and apply the rules before `duplicate`; the rides' index is their row in `table`."""
    rides, parse_failures = parse_rides(table)
    rejects = dict.fromkeys(REJECT_RULES, 0)
    keep = np.ones(len(rides), dtype=bool)
    pickup = rides["pickup_datetime"].to_numpy()
    window_low = np.datetime64(min_date.replace(tzinfo=None), "s")
    window_high = np.datetime64(max_date.replace(tzinfo=None), "s")
    failures = {**parse_failures, "outside_date_window": ~((pickup >= window_low) & (pickup < window_high))}
    for rule, mask in failures.items():
        hit = keep & mask
        rejects[rule] += int(hit.sum())
        keep &= ~hit
    rides = rides[keep]
    return ScreenedRides(rides=rides, hashes=_row_hashes(rides), rejects=rejects)


def later_verdicts(rides: pd.DataFrame) -> np.ndarray:
    """Per ride, the index in REJECT_RULES of the first rule after `duplicate` that it breaks, else KEPT.

    Exact duplicates get the same verdict, so it can be computed before knowing which rows repeat others.
    """
    coords = rides[list(COORDINATE_COLUMNS)]
    fare = rides["fare_amount"]
    failures = {
        "zero_coordinates": (coords == 0).all(axis=1).to_numpy(),
        "passenger_count_out_of_range": bad_passenger_counts(rides),
        "fare_out_of_range": ~((fare > FARE_RANGE[0]) & (fare < FARE_RANGE[1])).to_numpy(),
        "outside_nyc": outside_nyc(rides),
    }
    verdicts = np.full(len(rides), KEPT, dtype=np.int8)
    for rule, mask in failures.items():
        verdicts[(verdicts == KEPT) & mask] = REJECT_RULES.index(rule)
    return verdicts


def settle_rejects(screened: dict[str, int], first: np.ndarray, verdicts: np.ndarray) -> dict[str, int]:
    """The screening counts plus the `duplicate` rule (rows not `first`) and the rules after it, for the rest."""
    rejects = dict(screened)
    rejects["duplicate"] += int((~first).sum())
    counts = np.bincount(verdicts[first & (verdicts != KEPT)], minlength=len(REJECT_RULES))
    for index, rule in enumerate(REJECT_RULES):
        rejects[rule] += int(counts[index])
    return rejects


def _row_hashes(rides: pd.DataFrame) -> np.ndarray:
    # -0.0 and 0.0 are the same value and must hash alike.
    normalized = rides.assign(**{name: rides[name] + 0.0 for name in NUMERIC_COLUMNS})
    return pd.util.hash_pandas_object(normalized, index=False).to_numpy()


def bad_passenger_counts(rides: pd.DataFrame) -> np.ndarray:
    passengers = rides["passenger_count"]
    return _outside(passengers, *PASSENGER_RANGE) | (passengers != np.round(passengers)).to_numpy()


def outside_nyc(rides: pd.DataFrame) -> np.ndarray:
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


def prediction_failures(rides: pd.DataFrame, parse_failures: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per PREDICTION_RULES rule, the rows of parsed rides that break it (overlaps allowed)."""
    return {
        **parse_failures,
        "passenger_count_out_of_range": bad_passenger_counts(rides),
        "outside_nyc": outside_nyc(rides),
    }
