"""Stateless, row-wise, vectorized features: cleaned rides in, float32/int8 feature columns out.

Nothing here depends on other rows or on the chunk a row arrives in, so the processed file is the same
whatever the chunk size, and prediction applies exactly the transformation training saw.
Bump PREPROCESSOR_VERSION whenever a feature's definition, order or scaling changes.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping

import numpy as np

PREPROCESSOR_VERSION = 4  # 3: hours, days and dates on the New York wall clock (core/dates.py); 4: + coordinates
# Earlier versions whose features are this version's first columns, unchanged (version: how many): their
# runs still predict, handed only the columns they were trained on.
PREFIX_VERSIONS = {3: 73}

EARTH_RADIUS_KM = 6371.0
DISTANCE_SCALE_KM = 100.0
EPOCH_2009 = np.datetime64("2009-01-01T00:00:00", "s")
DAYS_SCALE = 2090.0

GEOHASH_PRECISION = 5
DISTRICTS = (
    "dr5ru dr5rs dr5rv dr72h dr72j dr5re dr5rk dr5rz dr5ry dr5rt "
    "dr5rg dr5x1 dr5x0 dr72m dr5rm dr5rx dr5x2 dr5rw dr5rh dr5x8"
).split()
_BASE32 = "0123456789bcdefghjkmnpqrstuvwxyz"

# Airports and Midtown: fares jump for airport trips (JFK flat fare, Newark surcharge).
LANDMARKS = {
    "jfk": (40.6413, -73.7781),
    "lga": (40.7769, -73.8740),
    "ewr": (40.6895, -74.1745),
    "midtown": (40.7549, -73.9840),
}

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")

ONE_HOT_PREFIXES = ("dow_", "month_", "pickup_geohash_", "dropoff_geohash_")

# The ends' positions as kilometres north and east of Midtown (over DISTANCE_SCALE_KM), and turned by these
# angles: a fare's steps follow the street grid (Manhattan's avenues run about 29 degrees east of north),
# zones and borough lines, which no single axis lines up with.
CENTRE = LANDMARKS["midtown"]
ROTATIONS_DEGREES = (15, 30, 45, 60)


def _feature_names() -> list[str]:
    names = ["passenger_count_scaled", "hour_sin", "hour_cos"]
    names += [f"dow_{day}" for day in WEEKDAYS]
    names += [f"month_{month}" for month in MONTHS]
    names += ["days_since_2009", "haversine_distance", "manhattan_distance"]
    names += [f"pickup_geohash_{district}" for district in DISTRICTS]
    names += [f"dropoff_geohash_{district}" for district in DISTRICTS]
    names += [f"{end}_distance_{place}" for place in LANDMARKS for end in ("pickup", "dropoff")]
    # Version 4 appends; the names above are version 3's, in its order (PREFIX_VERSIONS).
    names += [f"{end}_{axis}" for end in ("pickup", "dropoff") for axis in ("north", "east")]
    names += [f"{end}_{axis}_{angle}" for angle in ROTATIONS_DEGREES for end in ("pickup", "dropoff") for axis in ("north", "east")]
    names += ["trip_north", "trip_east", "trip_direction_north", "trip_direction_east"]
    return names


FEATURE_NAMES: tuple[str, ...] = tuple(_feature_names())
TARGET = "fare_amount"


def is_one_hot(name: str) -> bool:
    return name.startswith(ONE_HOT_PREFIXES)


def haversine_km(lat1, lon1, lat2, lon2) -> np.ndarray:
    return _haversine(_Points.of(lat1, lon1), _Points.of(lat2, lon2))


@dataclasses.dataclass(frozen=True)
class _Points:
    """Coordinates in radians, with the cosine of the latitude: a ride's ends meet nine distances each."""

    lat: np.ndarray
    lon: np.ndarray
    cos_lat: np.ndarray

    @classmethod
    def of(cls, lat, lon) -> "_Points":
        lat, lon = (np.radians(np.asarray(v, dtype=np.float64)) for v in (lat, lon))
        return cls(lat, lon, np.cos(lat))


def _haversine(start: _Points, end: _Points) -> np.ndarray:
    """sin²(Δlat/2) + cos·cos·sin²(Δlon/2), then 2R·asin(√a): the same operations in the same order as the
    one-line formula (so the same bits), in place in two arrays instead of a dozen temporaries."""
    a = _half_angle_sin_squared(end.lat, start.lat)
    b = _half_angle_sin_squared(end.lon, start.lon)
    b *= start.cos_lat * end.cos_lat
    a += b
    np.sqrt(np.clip(a, 0.0, 1.0, out=a), out=a)
    np.arcsin(a, out=a)
    a *= 2 * EARTH_RADIUS_KM
    return a


def _half_angle_sin_squared(to, start) -> np.ndarray:
    angle = np.subtract(to, start)
    angle /= 2
    return np.square(np.sin(angle, out=angle), out=angle)


def _manhattan(start: _Points, end: _Points) -> np.ndarray:
    """North-south plus east-west leg lengths, the east-west leg measured at the mean latitude."""
    north_south = np.abs(end.lat - start.lat)
    east_west = np.abs(end.lon - start.lon) * np.cos((start.lat + end.lat) / 2)
    return EARTH_RADIUS_KM * (north_south + east_west)


def _grid_index(values, low: float, high: float, bits: int) -> np.ndarray:
    scaled = np.floor((np.asarray(values, dtype=np.float64) - low) / (high - low) * (1 << bits))
    return np.clip(scaled, 0, (1 << bits) - 1).astype(np.int64)


def geohash_to_cell(text: str) -> int:
    cell = 0
    for char in text:
        cell = (cell << 5) | _BASE32.index(char)
    return cell


_LANDMARK_POINTS = tuple(_Points.of(lat, lon) for lat, lon in LANDMARKS.values())


def _cell_indices(cell: int) -> tuple[int, int]:
    """(latitude index, longitude index) of a geohash cell: its bits interleave the two, longitude first."""
    bits = format(cell, f"0{5 * GEOHASH_PRECISION}b")
    return int(bits[1::2], 2), int(bits[0::2], 2)


def _district_table() -> tuple[int, int, np.ndarray]:
    """The grid around the districts: its first latitude and longitude indices, and the index in DISTRICTS
    of each of its cells (len(DISTRICTS) for no district) with a border of no district all round."""
    indices = np.array([_cell_indices(geohash_to_cell(district)) for district in DISTRICTS])
    first = indices.min(axis=0) - 1
    table = np.full(indices.max(axis=0) - first + 2, len(DISTRICTS), dtype=np.int8)
    table[tuple((indices - first).T)] = np.arange(len(DISTRICTS))
    return int(first[0]), int(first[1]), table


_DISTRICT_LAT0, _DISTRICT_LON0, _DISTRICT_TABLE = _district_table()
_CENTRE = _Points.of(*CENTRE)


def _one_hot(codes: np.ndarray, size: int) -> np.ndarray:
    """Rows of 0/1 (int8); a code outside 0..size-1 gives an all-zero row. Column-major: each column is
    one contiguous array, as the feature table takes them."""
    return (codes[None, :] == np.arange(size)[:, None]).view(np.int8).T


def _district_one_hot(lat, lon) -> np.ndarray:
    """The geohash cells' indices, looked up in the small grid around the districts (anything beyond it
    lands on its border), without building the cells' bits."""
    total_bits = 5 * GEOHASH_PRECISION
    rows = _grid_index(lat, -90.0, 90.0, total_bits // 2) - _DISTRICT_LAT0
    columns = _grid_index(lon, -180.0, 180.0, (total_bits + 1) // 2) - _DISTRICT_LON0
    height, width = _DISTRICT_TABLE.shape
    np.clip(rows, 0, height - 1, out=rows)
    np.clip(columns, 0, width - 1, out=columns)
    return _one_hot(_DISTRICT_TABLE[rows, columns], len(DISTRICTS))


def _as_float32(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


_GREGORIAN_CYCLE_DAYS = 146_097  # 400 years
# hour_sin and hour_cos of each hour 0-23, as float32: rides take 24 values, not one sine per ride.
_HOUR_SIN_COS = _as_float32([np.sin(2 * np.pi * np.arange(24) / 24), np.cos(2 * np.pi * np.arange(24) / 24)])


def ride_features(rides: Mapping) -> dict[str, np.ndarray]:
    """The feature columns (FEATURE_NAMES, in order, each a NumPy array) of cleaned rides, row for row.

    `rides` (a rides.table.Rides, or any mapping of column names to arrays: a pandas DataFrame, say) needs
    pickup_datetime (datetime64 without a zone: New York wall-clock time, as core/dates.py reads
    it), the four coordinates and passenger_count. The hour, weekday, month and days since 2009 are those
    of the wall clock, counted as it shows them (a day is 86,400 of its seconds, DST changes or not).
    """
    pickup = _wall_clock(rides["pickup_datetime"])
    hour, weekday, month = _calendar(pickup)
    hour_sin, hour_cos = _HOUR_SIN_COS[:, hour]
    days = days_feature(pickup)

    ends = ("pickup_latitude", "pickup_longitude", "dropoff_latitude", "dropoff_longitude")
    plat, plon, dlat, dlon = (np.asarray(rides[name], dtype=np.float64) for name in ends)
    pickup, dropoff = _Points.of(plat, plon), _Points.of(dlat, dlon)

    columns = [
        _as_float32((np.asarray(rides["passenger_count"], dtype=np.float64) - 1) / 7)[:, None],
        hour_sin[:, None],
        hour_cos[:, None],
        _one_hot(weekday, 7),
        _one_hot(month - 1, 12),
        _as_float32(days)[:, None],
        _as_float32(_haversine(pickup, dropoff) / DISTANCE_SCALE_KM)[:, None],
        _as_float32(_manhattan(pickup, dropoff) / DISTANCE_SCALE_KM)[:, None],
        _district_one_hot(plat, plon),
        _district_one_hot(dlat, dlon),
    ]
    for place in _LANDMARK_POINTS:
        columns.append(_as_float32(_haversine(pickup, place) / DISTANCE_SCALE_KM)[:, None])
        columns.append(_as_float32(_haversine(dropoff, place) / DISTANCE_SCALE_KM)[:, None])
    columns.append(_coordinate_columns(pickup, dropoff))

    names = iter(FEATURE_NAMES)
    return {next(names): np.ascontiguousarray(block[:, j]) for block in columns for j in range(block.shape[1])}


def days_feature(wall_clock: np.ndarray | dt.datetime) -> np.ndarray | float:
    """The days_since_2009 feature (float64) of pickups at these New York wall-clock times: a datetime64 array,
    or one naive datetime."""
    moment = wall_clock if isinstance(wall_clock, np.ndarray) else np.datetime64(wall_clock, "s")
    return (moment - EPOCH_2009) / np.timedelta64(1, "s") / 86400 / DAYS_SCALE


def feature_matrix(features: Mapping[str, np.ndarray], count: int = len(FEATURE_NAMES)) -> np.ndarray:
    """The first `count` feature columns as one float32 matrix, a row per ride: what a model takes."""
    names = FEATURE_NAMES[:count]
    matrix = np.empty((len(features[names[0]]), count), dtype=np.float32)
    for column, name in enumerate(names):
        matrix[:, column] = features[name]
    return matrix


def _coordinate_columns(pickup: _Points, dropoff: _Points) -> np.ndarray:
    """Version 4's columns, in FEATURE_NAMES' order: each end north and east of CENTRE, then turned by each of
    ROTATIONS_DEGREES, then the trip's north and east legs and its direction (a unit vector; 0, 0 for no move).
    Computed in float64 (a short trip's legs are small differences of large positions), stored column-major,
    so that each column is contiguous for the table."""
    north, east = np.empty((len(pickup.lat), 2)), np.empty((len(pickup.lat), 2))  # pickup, dropoff
    (north[:, 0], east[:, 0]), (north[:, 1], east[:, 1]) = _north_east(pickup), _north_east(dropoff)
    block = np.empty((len(north), 4 * (1 + len(ROTATIONS_DEGREES)) + 4), dtype=np.float32, order="F")
    for index, angle in enumerate(np.radians((0, *ROTATIONS_DEGREES))):
        turned = block[:, 4 * index : 4 * index + 4]  # pickup north, east, dropoff north, east
        turned[:, 0::2] = north * np.cos(angle) + east * np.sin(angle)
        turned[:, 1::2] = east * np.cos(angle) - north * np.sin(angle)
    legs = np.column_stack([north[:, 1] - north[:, 0], east[:, 1] - east[:, 0]])
    length = np.hypot(legs[:, 0], legs[:, 1])[:, None]
    block[:, -4:-2] = legs
    block[:, -2:] = np.divide(legs, length, out=np.zeros_like(legs), where=length > 0)
    return block


def _north_east(points: _Points) -> tuple[np.ndarray, np.ndarray]:
    """Kilometres north and east of CENTRE over DISTANCE_SCALE_KM, on the plane tangent there (a few
    tenths of a percent off across the city)."""
    north = (points.lat - _CENTRE.lat) * EARTH_RADIUS_KM / DISTANCE_SCALE_KM
    east = (points.lon - _CENTRE.lon) * _CENTRE.cos_lat * EARTH_RADIUS_KM / DISTANCE_SCALE_KM
    return north, east


def _wall_clock(pickup) -> np.ndarray:
    dtype = getattr(pickup, "dtype", None)
    if not (isinstance(dtype, np.dtype) and dtype.kind == "M"):  # a pandas column with a zone is not
        raise ValueError("pickup_datetime must be New York wall-clock times without a zone (see taxifare.core.dates)")
    return np.asarray(pickup).astype("datetime64[s]", copy=False)


def _calendar(wall_clock: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hour (0-23), weekday (Monday 0) and month (1-12) of wall-clock times."""
    days = wall_clock.astype("datetime64[D]")
    hour = (wall_clock - days).astype(np.int64) // 3600
    weekday = (days.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday
    month = _MONTH_BY_DAY_OF_CYCLE[days.astype(np.int64) % _GREGORIAN_CYCLE_DAYS]
    return hour, weekday, month


def _month_by_day_of_cycle() -> np.ndarray:
    """The month (1-12) of each day of the 400-year cycle from 1970-01-01 on: the Gregorian calendar repeats
    after it, so a table lookup gives the month that numpy's datetime64[M] conversion does, ten times cheaper.
    Each of its 4,800 months repeated as many times as it has days."""
    first_days = np.arange(4801).astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)
    return np.repeat((np.arange(4800) % 12 + 1).astype(np.int8), np.diff(first_days))


_MONTH_BY_DAY_OF_CYCLE = _month_by_day_of_cycle()
