"""The preprocess job as a data engineer would write it without taxifare, in Polars and in DuckDB SQL.

    python benchmarks/peers.py polars|duckdb SPEC RAW OUT

Reads the raw CSV, applies taxifare's cleaning rules (a row with a value missing, not a finite number,
a pickup outside the date grammar or the window, an exact repeat of an earlier row, all four coordinates
0, a passenger count not a whole 1..7, a fare not in (0, 400), a point outside the NYC box) and writes
the features and the fare as a CSV with taxifare's columns. The constants (window, ranges, districts,
landmarks, scales, column names) come from taxifare's modules through the SPEC file (`write_spec`), so
that the peers import neither taxifare nor pandas. Malformed lines (a wrong number of fields) are left to
each library's CSV reader. Benchmark-only dependencies: `pip install -e '.[bench]'`.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The date grammar (taxifare/core/dates.py): the usual form first; for the rows not in it, the other forms one
# after the other, once `T` is a space: a time with `Z` or an offset is an instant, converted to New York
# wall-clock time; one with ` UTC` or nothing after it is New York wall-clock time as written. (Named
# zones, which taxifare also reads, are not in the bench input and not read here.)
USUAL_FORMAT = "%Y-%m-%d %H:%M:%S UTC"
POLARS_INSTANT_FORMATS = ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%d %H:%M%#z"]
POLARS_WALL_CLOCK_FORMATS = ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M", "%Y-%m-%d"]
DUCKDB_INSTANT_FORMATS = ["%Y-%m-%d %H:%M:%S.%f%z", "%Y-%m-%d %H:%M:%S%z", "%Y-%m-%d %H:%M%z"]
DUCKDB_WALL_CLOCK_FORMATS = ["%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"]
_BASE32 = "0123456789bcdefghjkmnpqrstuvwxyz"


def write_spec(path: Path) -> None:
    """taxifare's constants, for the peers."""
    sys.path.insert(0, str(REPO))
    import pyarrow.csv as pa_csv

    from taxifare.core import dates
    from taxifare.core.config import load_settings
    from taxifare.rides import clean, features

    settings = load_settings({}, environ={}, dotenv_path=None)
    spec = {
        "missing": pa_csv.ConvertOptions().null_values,  # what taxifare's CSV reader reads as a missing value
        "numbers": list(clean.NUMERIC_COLUMNS), "names": [*features.FEATURE_NAMES, features.TARGET],
        "window": [settings.min_date.replace(tzinfo=None).isoformat(), settings.max_date.replace(tzinfo=None).isoformat()],
        "latitude": clean.LATITUDE_RANGE, "longitude": clean.LONGITUDE_RANGE, "passengers": clean.PASSENGER_RANGE,
        "fare": clean.FARE_RANGE, "districts": features.DISTRICTS, "landmarks": features.LANDMARKS,
        "centre": features.CENTRE, "rotations": features.ROTATIONS_DEGREES,
        "radius_km": features.EARTH_RADIUS_KM, "distance_scale_km": features.DISTANCE_SCALE_KM,
        "epoch": str(features.EPOCH_2009), "days_scale": features.DAYS_SCALE, "timezone": dates.NEW_YORK, "geohash_precision": features.GEOHASH_PRECISION,
    }
    path.write_text(json.dumps(spec))


def district_cell(text: str) -> int:
    cell = 0
    for char in text:
        cell = (cell << 5) | _BASE32.index(char)
    return cell


def run_polars(raw: Path, out: Path, spec: dict) -> None:
    import polars as pl

    lat_low, lat_high = spec["latitude"]
    lon_low, lon_high = spec["longitude"]
    window = [pl.lit(value).str.to_datetime() for value in spec["window"]]
    rides = pl.scan_csv(raw, infer_schema=False, null_values=spec["missing"]).select(
        *[pl.col(name).cast(pl.Float64, strict=False) for name in spec["numbers"]],
        pickup=_polars_pickup(pl.col("pickup_datetime"), spec["timezone"], pl),
    )
    finite = pl.all_horizontal(pl.col(name).is_finite() for name in spec["numbers"])
    rides = rides.filter(finite & pl.col("pickup").is_not_null() & (pl.col("pickup") >= window[0]) & (pl.col("pickup") < window[1]))
    rides = rides.unique(keep="first", maintain_order=True)
    coordinates = ["pickup_longitude", "pickup_latitude", "dropoff_longitude", "dropoff_latitude"]
    passengers = pl.col("passenger_count")
    rides = rides.filter(
        ~pl.all_horizontal(pl.col(name) == 0 for name in coordinates),
        passengers.is_between(*spec["passengers"]) & (passengers == passengers.round()),
        (pl.col("fare_amount") > spec["fare"][0]) & (pl.col("fare_amount") < spec["fare"][1]),
        pl.col("pickup_latitude").is_between(lat_low, lat_high), pl.col("dropoff_latitude").is_between(lat_low, lat_high),
        pl.col("pickup_longitude").is_between(lon_low, lon_high), pl.col("dropoff_longitude").is_between(lon_low, lon_high),
    )
    rides = rides.with_columns(
        pickup_cell=_polars_geohash("pickup", spec, pl), dropoff_cell=_polars_geohash("dropoff", spec, pl),
    )
    rides.select(_polars_features(spec, pl)).sink_csv(out)


def _polars_pickup(text, zone: str, pl):
    """New York wall-clock time, to the second."""
    usual = text.str.strptime(pl.Datetime("us"), USUAL_FORMAT, strict=False)
    return pl.when(usual.is_not_null()).then(usual).otherwise(_polars_other_forms(text, zone, pl))


def _polars_other_forms(text, zone: str, pl):
    text = text.str.replace(r"^(\d{4}-\d{2}-\d{2})T", "$1 ")
    instant, written = text.str.replace(r"Z$", "+00:00"), text.str.replace(r" UTC$", "")
    instants = [instant.str.strptime(pl.Datetime("us", "UTC"), fmt, strict=False).dt.convert_time_zone(zone).dt.replace_time_zone(None)
                for fmt in POLARS_INSTANT_FORMATS]
    wall_clock = [written.str.strptime(pl.Datetime("us"), fmt, strict=False) for fmt in POLARS_WALL_CLOCK_FORMATS]
    return pl.coalesce(*instants, *wall_clock).dt.truncate("1s")


def _polars_features(spec: dict, pl) -> list:
    radius, scale = spec["radius_km"], spec["distance_scale_km"]
    pickup = pl.col("pickup")
    angle = pickup.dt.hour().cast(pl.Float64) * (2 * math.pi) / 24
    days = (pickup - pl.lit(spec["epoch"]).str.to_datetime()).dt.total_seconds() / 86400 / spec["days_scale"]
    ends = {end: (pl.col(f"{end}_latitude").radians(), pl.col(f"{end}_longitude").radians()) for end in ("pickup", "dropoff")}

    def haversine(a, b):
        h = ((b[0] - a[0]) / 2).sin() ** 2 + a[0].cos() * b[0].cos() * ((b[1] - a[1]) / 2).sin() ** 2
        return (2 * radius * h.clip(0.0, 1.0).sqrt().arcsin() / scale).cast(pl.Float32)

    north_south = (ends["dropoff"][0] - ends["pickup"][0]).abs()
    east_west = (ends["dropoff"][1] - ends["pickup"][1]).abs() * ((ends["pickup"][0] + ends["dropoff"][0]) / 2).cos()
    columns = [((pl.col("passenger_count") - 1) / 7).cast(pl.Float32), angle.sin().cast(pl.Float32), angle.cos().cast(pl.Float32)]
    columns += [(pickup.dt.weekday() == day + 1).cast(pl.Int8) for day in range(7)]
    columns += [(pickup.dt.month() == month + 1).cast(pl.Int8) for month in range(12)]
    columns += [days.cast(pl.Float32), haversine(ends["pickup"], ends["dropoff"]),
                (radius * (north_south + east_west) / scale).cast(pl.Float32)]
    for end in ("pickup", "dropoff"):
        columns += [(pl.col(f"{end}_cell") == district_cell(district)).cast(pl.Int8) for district in spec["districts"]]
    for lat, lon in spec["landmarks"].values():
        place = (pl.lit(math.radians(lat)), pl.lit(math.radians(lon)))
        columns += [haversine(ends[end], place) for end in ("pickup", "dropoff")]
    columns += [column.cast(pl.Float32) for column in _coordinates(spec, ends, lambda length, leg: pl.when(length > 0).then(leg / length).otherwise(0.0))]
    columns.append(pl.col("fare_amount").cast(pl.Float32))
    return [column.alias(name) for column, name in zip(columns, spec["names"])]


def _polars_geohash(end: str, spec: dict, pl):
    """The geohash cell as an integer: longitude and latitude bits interleaved, longitude first."""
    bits = 5 * spec["geohash_precision"]
    lat_bits, lon_bits = bits // 2, (bits + 1) // 2

    def grid(value, low, high, bits):
        return ((value - low) / (high - low) * 2**bits).floor().clip(0, 2**bits - 1).cast(pl.Int64)

    index = {"lat": grid(pl.col(f"{end}_latitude"), -90.0, 90.0, lat_bits), "lon": grid(pl.col(f"{end}_longitude"), -180.0, 180.0, lon_bits)}
    cell = pl.lit(0, pl.Int64)
    for position in range(bits):
        axis, width = ("lon", lon_bits) if position % 2 == 0 else ("lat", lat_bits)
        cell = cell * 2 + (index[axis] // 2 ** (width - 1 - position // 2)) % 2
    return cell


def run_duckdb(raw: Path, out: Path, spec: dict) -> None:
    import duckdb

    connection = duckdb.connect(config={"threads": 2})
    connection.execute("SET TimeZone = 'UTC'")  # what an offset is converted from
    numbers = spec["numbers"]
    (lat_low, lat_high), (lon_low, lon_high) = spec["latitude"], spec["longitude"]
    coordinates = ["pickup_longitude", "pickup_latitude", "dropoff_longitude", "dropoff_latitude"]
    box = [f"{end}_{axis} BETWEEN {low} AND {high}" for end in ("pickup", "dropoff")
           for axis, low, high in (("latitude", lat_low, lat_high), ("longitude", lon_low, lon_high))]
    query = f"""
    WITH raw AS (
        SELECT row_number() OVER () AS line, * FROM read_csv($raw, header = true, all_varchar = true, nullstr = $nulls)
    ), parsed AS (
        SELECT line, {", ".join(f"TRY_CAST({name} AS DOUBLE) AS {name}" for name in numbers)}, {_duckdb_pickup(spec["timezone"])} AS pickup
        FROM raw
    ), screened AS (
        SELECT * FROM parsed
        WHERE {" AND ".join(f"isfinite({name})" for name in numbers)}
          AND pickup >= TIMESTAMP '{spec["window"][0]}' AND pickup < TIMESTAMP '{spec["window"][1]}'
    ), first_seen AS (
        SELECT * FROM screened QUALIFY row_number() OVER (PARTITION BY {", ".join([*numbers, "pickup"])} ORDER BY line) = 1
    ), kept AS (
        SELECT * FROM first_seen
        WHERE NOT ({" AND ".join(f"{name} = 0" for name in coordinates)})
          AND passenger_count BETWEEN {spec["passengers"][0]} AND {spec["passengers"][1]} AND passenger_count = round(passenger_count)
          AND fare_amount > {spec["fare"][0]} AND fare_amount < {spec["fare"][1]} AND {" AND ".join(box)}
    ), enriched AS (
        SELECT *, {_duckdb_geohash("pickup", spec)} AS pickup_cell, {_duckdb_geohash("dropoff", spec)} AS dropoff_cell
        FROM kept
    )
    SELECT {", ".join(f"{expression} AS {name}" for expression, name in zip(_duckdb_features(spec), spec["names"]))}
    FROM enriched ORDER BY line
    """
    connection.execute(f"COPY ({query}) TO '{out}' (HEADER, DELIMITER ',')", {"raw": str(raw), "nulls": spec["missing"]})


def _duckdb_pickup(zone: str) -> str:
    """New York wall-clock time, to the second."""
    text = r"regexp_replace(pickup_datetime, '^(\d{4}-\d{2}-\d{2})T', '\1 ')"
    instant = f"timezone('{zone}', try_strptime(regexp_replace({text}, 'Z$', '+00:00'), {DUCKDB_INSTANT_FORMATS}))"
    written = f"try_strptime(regexp_replace({text}, ' UTC$', ''), {DUCKDB_WALL_CLOCK_FORMATS})"
    usual = f"try_strptime(pickup_datetime, '{USUAL_FORMAT}')"
    return f"CASE WHEN {usual} IS NOT NULL THEN {usual} ELSE date_trunc('second', coalesce({instant}, {written})) END"


def _duckdb_geohash(end: str, spec: dict) -> str:
    """The geohash cell as an integer: longitude and latitude bits interleaved, longitude first."""
    bits = 5 * spec["geohash_precision"]
    lat_bits, lon_bits = bits // 2, (bits + 1) // 2
    index = {"lat": _duckdb_grid(f"{end}_latitude", -90.0, 90.0, lat_bits), "lon": _duckdb_grid(f"{end}_longitude", -180.0, 180.0, lon_bits)}
    terms = []
    for position in range(bits):
        axis, width = ("lon", lon_bits) if position % 2 == 0 else ("lat", lat_bits)
        # Parenthesised: SQL gives <<, >>, & and | one precedence, left to right.
        terms.append(f"(((({index[axis]}) >> {width - 1 - position // 2}) & 1) << {bits - 1 - position})")
    return " | ".join(terms)


def _duckdb_grid(value: str, low: float, high: float, bits: int) -> str:
    return f"least(greatest(floor(({value} - {low}) / {high - low} * {2**bits}), 0), {2**bits - 1})::BIGINT"


def _duckdb_features(spec: dict) -> list[str]:
    radius, scale = spec["radius_km"], spec["distance_scale_km"]
    angle = "(2 * pi() * hour(pickup) / 24)"
    ends = {end: (f"radians({end}_latitude)", f"radians({end}_longitude)") for end in ("pickup", "dropoff")}

    def haversine(a, b):
        h = f"sin(({b[0]} - {a[0]}) / 2) ^ 2 + cos({a[0]}) * cos({b[0]}) * sin(({b[1]} - {a[1]}) / 2) ^ 2"
        return f"(2 * {radius} * asin(sqrt(least(greatest({h}, 0.0), 1.0))) / {scale})::FLOAT"

    north_south = f"abs({ends['dropoff'][0]} - {ends['pickup'][0]})"
    east_west = f"abs({ends['dropoff'][1]} - {ends['pickup'][1]}) * cos(({ends['pickup'][0]} + {ends['dropoff'][0]}) / 2)"
    columns = ["((passenger_count - 1) / 7)::FLOAT", f"sin({angle})::FLOAT", f"cos({angle})::FLOAT"]
    columns += [f"(isodow(pickup) = {day + 1})::TINYINT" for day in range(7)]
    columns += [f"(month(pickup) = {month + 1})::TINYINT" for month in range(12)]
    columns += [f"((epoch(pickup) - epoch(TIMESTAMP '{spec['epoch']}')) / 86400 / {spec['days_scale']})::FLOAT",
                haversine(ends["pickup"], ends["dropoff"]), f"({radius} * ({north_south} + {east_west}) / {scale})::FLOAT"]
    for end in ("pickup", "dropoff"):
        columns += [f"({end}_cell = {district_cell(district)})::TINYINT" for district in spec["districts"]]
    for lat, lon in spec["landmarks"].values():
        place = (f"radians({lat})", f"radians({lon})")
        columns += [haversine(ends[end], place) for end in ("pickup", "dropoff")]
    ends = {end: tuple(_Sql(part) for part in parts) for end, parts in ends.items()}
    coordinates = _coordinates(spec, ends, lambda length, leg: f"CASE WHEN {length} > 0 THEN {leg} / {length} ELSE 0 END")
    columns += [f"({column})::FLOAT" for column in coordinates]
    return [*columns, "fare_amount::FLOAT"]


def _coordinates(spec: dict, ends: dict, direction) -> list:
    """Version 4's columns (taxifare/rides/features.py) from the ends' latitudes and longitudes in radians:
    Polars expressions, or _Sql text; `direction(length, leg)` is leg / length, 0 for no move."""
    radius, scale = spec["radius_km"], spec["distance_scale_km"]
    centre = [math.radians(value) for value in spec["centre"]]
    north = {end: (lat - centre[0]) * (radius / scale) for end, (lat, _) in ends.items()}
    east = {end: (lon - centre[1]) * (math.cos(centre[0]) * radius / scale) for end, (_, lon) in ends.items()}
    columns = []
    for angle in [0.0, *map(math.radians, spec["rotations"])]:
        cos, sin = math.cos(angle), math.sin(angle)
        for end in ("pickup", "dropoff"):
            columns += [north[end] * cos + east[end] * sin, east[end] * cos - north[end] * sin]
    legs = [north["dropoff"] - north["pickup"], east["dropoff"] - east["pickup"]]
    length = (legs[0] * legs[0] + legs[1] * legs[1]).sqrt()
    return [*columns, *legs, *(direction(length, leg) for leg in legs)]


class _Sql(str):
    """SQL text that the arithmetic of _coordinates writes as SQL."""

    def _op(self, operator: str, other) -> "_Sql":
        return _Sql(f"({self} {operator} {other})")

    def __add__(self, other):
        return self._op("+", other)

    def __sub__(self, other):
        return self._op("-", other)

    def __mul__(self, other):
        return self._op("*", other)

    def sqrt(self) -> "_Sql":
        return _Sql(f"sqrt({self})")


if __name__ == "__main__":
    job = {"polars": run_polars, "duckdb": run_duckdb}[sys.argv[1]]
    spec_path, raw, out = (Path(arg) for arg in sys.argv[2:5])
    job(raw, out, json.loads(spec_path.read_text()))
