"""Every feature column against a plain per-row computation written independently of the package."""

import datetime as dt
import math

import numpy as np
import pandas as pd
import pygeohash
import pytest

from taxifare.rides.clean import SeenRows, clean_rides
from taxifare.rides.features import DISTRICTS, FEATURE_NAMES, GEOHASH_PRECISION, LANDMARKS, _grid_index, geohash_to_cell, haversine_km, ride_features
from taxifare.sources.csv_file import CsvRideSource
from tests.conftest import write_csv

WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
GEOHASHES = "dr5ru dr5rs dr5rv dr72h dr72j dr5re dr5rk dr5rz dr5ry dr5rt dr5rg dr5x1 dr5x0 dr72m dr5rm dr5rx dr5x2 dr5rw dr5rh dr5x8".split()
EXPECTED_NAMES = [
    "passenger_count_scaled", "hour_sin", "hour_cos",
    *(f"dow_{day}" for day in WEEKDAYS),
    *(f"month_{month}" for month in MONTHS),
    "days_since_2009", "haversine_distance", "manhattan_distance",
    *(f"pickup_geohash_{cell}" for cell in GEOHASHES),
    *(f"dropoff_geohash_{cell}" for cell in GEOHASHES),
    "pickup_distance_jfk", "dropoff_distance_jfk", "pickup_distance_lga", "dropoff_distance_lga",
    "pickup_distance_ewr", "dropoff_distance_ewr", "pickup_distance_midtown", "dropoff_distance_midtown",
    # Version 4's, after version 3's (whose runs are handed the columns above only).
    "pickup_north", "pickup_east", "dropoff_north", "dropoff_east",
    *(f"{end}_{axis}_{angle}" for angle in (15, 30, 45, 60) for end in ("pickup", "dropoff") for axis in ("north", "east")),
    "trip_north", "trip_east", "trip_direction_north", "trip_direction_east",
]
MIDTOWN = (40.7549, -73.9840)


def expected_features(ride: dict) -> dict:
    """One ride's features, computed the slow obvious way: the pickup is a New York wall-clock time, whose
    hour, weekday and month are the ones it shows."""
    local = ride["pickup_datetime"].to_pydatetime()
    plat, plon = ride["pickup_latitude"], ride["pickup_longitude"]
    dlat, dlon = ride["dropoff_latitude"], ride["dropoff_longitude"]
    out = {
        "passenger_count_scaled": (ride["passenger_count"] - 1) / 7,
        "hour_sin": math.sin(2 * math.pi * local.hour / 24),
        "hour_cos": math.cos(2 * math.pi * local.hour / 24),
        "days_since_2009": (local - dt.datetime(2009, 1, 1)).total_seconds() / 86400 / 2090,
        "haversine_distance": great_circle_km(plat, plon, dlat, dlon) / 100,
        "manhattan_distance": rectilinear_km(plat, plon, dlat, dlon) / 100,
    }
    for i, day in enumerate(WEEKDAYS):
        out[f"dow_{day}"] = int(local.weekday() == i)
    for i, month in enumerate(MONTHS):
        out[f"month_{month}"] = int(local.month == i + 1)
    pickup_cell = pygeohash.encode(plat, plon, precision=5)
    dropoff_cell = pygeohash.encode(dlat, dlon, precision=5)
    for district in DISTRICTS:
        out[f"pickup_geohash_{district}"] = int(pickup_cell == district)
        out[f"dropoff_geohash_{district}"] = int(dropoff_cell == district)
    for place, (lat, lon) in LANDMARKS.items():
        out[f"pickup_distance_{place}"] = great_circle_km(plat, plon, lat, lon) / 100
        out[f"dropoff_distance_{place}"] = great_circle_km(dlat, dlon, lat, lon) / 100
    for end, (lat, lon) in (("pickup", (plat, plon)), ("dropoff", (dlat, dlon))):
        north, east = north_east_km(lat, lon)
        out[f"{end}_north"], out[f"{end}_east"] = north / 100, east / 100
        for angle in (15, 30, 45, 60):
            # The point's position along axes turned `angle` degrees clockwise (north towards east).
            bearing, length = math.atan2(east, north) - math.radians(angle), math.hypot(north, east)
            out[f"{end}_north_{angle}"], out[f"{end}_east_{angle}"] = length * math.cos(bearing) / 100, length * math.sin(bearing) / 100
    pickup, dropoff = north_east_km(plat, plon), north_east_km(dlat, dlon)
    trip_north, trip_east = dropoff[0] - pickup[0], dropoff[1] - pickup[1]
    out["trip_north"], out["trip_east"] = trip_north / 100, trip_east / 100
    moved = math.hypot(trip_north, trip_east) > 0
    bearing = math.atan2(trip_east, trip_north)
    out["trip_direction_north"], out["trip_direction_east"] = (math.cos(bearing), math.sin(bearing)) if moved else (0, 0)
    return out


def north_east_km(lat, lon):
    """Kilometres north and east of Midtown on the plane tangent there."""
    return 6371.0 * math.radians(lat - MIDTOWN[0]), 6371.0 * math.radians(lon - MIDTOWN[1]) * math.cos(math.radians(MIDTOWN[0]))


def great_circle_km(lat1, lon1, lat2, lon2):
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0 * math.asin(math.sqrt(h))


def rectilinear_km(lat1, lon1, lat2, lon2):
    mean_lat = math.radians((lat1 + lat2) / 2)
    return 6371.0 * (abs(math.radians(lat2 - lat1)) + abs(math.radians(lon2 - lon1)) * math.cos(mean_lat))


def cleaned(path) -> pd.DataFrame:
    source = CsvRideSource(path, 100_000)
    window = (dt.datetime(2009, 1, 1), dt.datetime(2016, 1, 1))
    seen = SeenRows()
    return pd.concat([pd.DataFrame(clean_rides(table, *window, seen, "wall-clock").rides.columns) for table in source.chunks()], ignore_index=True)


def feature_frame(rides: pd.DataFrame) -> pd.DataFrame:
    """ride_features of a DataFrame of rides, as a DataFrame with the rides' index."""
    return pd.DataFrame(ride_features(rides), index=rides.index)


def assert_features_match(rides: pd.DataFrame):
    features = feature_frame(rides)
    assert list(features.columns) == list(FEATURE_NAMES) == EXPECTED_NAMES
    assert len(FEATURE_NAMES) == 97
    for i, ride in enumerate(rides.to_dict("records")):
        expected = expected_features(ride)
        assert set(expected) == set(FEATURE_NAMES)
        got = features.iloc[i]
        for name in FEATURE_NAMES:
            assert got[name] == pytest.approx(expected[name], rel=1e-5, abs=1e-6), (i, name)


def test_features_on_raw_rows(rides_1k):
    rides = cleaned(rides_1k)
    assert len(rides) > 900
    assert_features_match(rides)


def test_features_on_synthetic_rows_across_dst_and_new_year(tmp_path):
    lines = [
        # 02:30 on 10 March 2013 never showed on a New York clock (2:00 became 3:00): kept as written.
        "k1,10,2013-03-10 02:30:00 UTC,-73.99,40.75,-73.78,40.64,2",
        # 01:30 on 3 November 2013 showed twice (2:00 became 1:00): one wall-clock time.
        "k2,10,2013-11-03 01:30:00 UTC,-73.87,40.77,-73.99,40.75,7",
        "k3,10,2013-12-31 23:00:00 UTC,-73.95,40.78,-73.95,40.78,1",
        "k4,10,2009-01-01 00:00:00 UTC,-74.29,40.51,-73.71,40.89,3",
    ]
    rides = cleaned(write_csv(tmp_path / "rides.csv", lines))
    assert len(rides) == 4
    assert_features_match(rides)
    features = feature_frame(rides)
    hours = np.round(np.arctan2(features["hour_sin"], features["hour_cos"]) * 24 / (2 * np.pi)) % 24
    assert hours.tolist() == [2, 1, 23, 0]
    assert features.loc[2, "month_dec"] == 1 and features.loc[2, "dow_tue"] == 1
    assert features.loc[3, "days_since_2009"] == 0 and features.loc[3, "dow_thu"] == 1


def test_days_since_2009_count_the_seconds_of_the_wall_clock():
    """From 01:00 to 04:00 on the day clocks went forward the wall clock shows 3 hours (2 passed); on the
    day they went back, 3 hours too (4 passed): a day is 86,400 seconds of the clock, whatever happened."""
    times = ["2013-03-10 01:00", "2013-03-10 04:00", "2013-11-03 01:00", "2013-11-03 04:00"]
    rides = pd.DataFrame({"pickup_datetime": pd.to_datetime(times), "passenger_count": 1, "pickup_latitude": 40.7,
                          "pickup_longitude": -73.9, "dropoff_latitude": 40.8, "dropoff_longitude": -73.95})
    days = feature_frame(rides)["days_since_2009"].to_numpy(np.float64) * 2090
    assert days[1] - days[0] == pytest.approx(3 / 24, abs=1e-3) and days[3] - days[2] == pytest.approx(3 / 24, abs=1e-3)


def test_a_pickup_with_a_zone_is_refused():
    """An aware timestamp is an instant, not the wall-clock time the features need: core/dates.py and rides/date_columns.py convert."""
    rides = pd.DataFrame({"pickup_datetime": pd.to_datetime(["2013-07-06 21:18"]).tz_localize("UTC"), "passenger_count": 1,
                          "pickup_latitude": 40.7, "pickup_longitude": -73.9, "dropoff_latitude": 40.8, "dropoff_longitude": -73.95})
    with pytest.raises(ValueError, match="New York wall-clock times without a zone"):
        feature_frame(rides)


def test_hour_weekday_and_month_are_read_off_the_wall_clock_across_clock_changes_and_decades():
    # Every 17 minutes of the 2012 changes (11 March, 4 November), and random times from 1950 to 2040.
    changes = pd.date_range("2012-03-10", "2012-03-12", freq="17min").append(pd.date_range("2012-11-03", "2012-11-05", freq="17min"))
    seconds = np.random.default_rng(0).integers(-20 * 365 * 86400, 70 * 365 * 86400, 5_000)
    pickups = changes.append(pd.DatetimeIndex(pd.to_datetime(seconds, unit="s")))
    rides = pd.DataFrame({"pickup_datetime": pickups, "passenger_count": 1, "pickup_latitude": 40.7, "pickup_longitude": -73.9,
                          "dropoff_latitude": 40.8, "dropoff_longitude": -73.95})
    features = feature_frame(rides)
    expected_hour_cos = np.cos(2 * np.pi * pickups.hour.to_numpy() / 24).astype(np.float32)
    assert (features["hour_cos"].to_numpy() == expected_hour_cos).all()
    assert (features[[f"dow_{day}" for day in WEEKDAYS]].to_numpy().argmax(axis=1) == pickups.day_of_week).all()
    assert (features[[f"month_{month}" for month in MONTHS]].to_numpy().argmax(axis=1) == pickups.month - 1).all()


def test_one_hot_columns_are_int8_and_values_float32(rides_1k):
    features = feature_frame(cleaned(rides_1k))
    assert features["dow_mon"].dtype == np.int8 and features["pickup_geohash_dr5ru"].dtype == np.int8
    assert features["haversine_distance"].dtype == np.float32
    assert (features.filter(like="dow_").sum(axis=1) == 1).all()
    assert (features.filter(like="month_").sum(axis=1) == 1).all()


def geohash_cells(lat, lon, precision: int = GEOHASH_PRECISION) -> np.ndarray:
    """Geohash cells as integers (5 bits per character), by bit interleaving: the reference the district
    columns are checked against (features.py looks the cells up on the grid instead of building them).

    Bit i of the cell, counted from the most significant, is a longitude bit when i is even and a
    latitude bit when odd; each coordinate's bits are its position in the range, as a binary fraction.
    """
    total_bits = 5 * precision
    lon_bits, lat_bits = (total_bits + 1) // 2, total_bits // 2
    lat_index = _grid_index(lat, -90.0, 90.0, lat_bits)
    lon_index = _grid_index(lon, -180.0, 180.0, lon_bits)
    cells = np.zeros(len(lat_index), dtype=np.int64)
    for position in range(total_bits):
        if position % 2 == 0:
            bit = (lon_index >> (lon_bits - 1 - position // 2)) & 1
        else:
            bit = (lat_index >> (lat_bits - 1 - position // 2)) & 1
        cells = (cells << 1) | bit
    return cells



def test_geohash_cells_match_an_independent_implementation_on_thousands_of_points(rides_10k):
    raw = pd.read_csv(rides_10k, on_bad_lines="skip")
    lat = np.concatenate([raw["pickup_latitude"], raw["dropoff_latitude"]])
    lon = np.concatenate([raw["pickup_longitude"], raw["dropoff_longitude"]])
    usable = (np.abs(lat) <= 90) & (np.abs(lon) <= 180) & ~np.isnan(lat) & ~np.isnan(lon)
    lat, lon = lat[usable], lon[usable]
    assert len(lat) > 15_000
    expected = [geohash_to_cell(pygeohash.encode(a, o, precision=5)) for a, o in zip(lat, lon)]
    assert geohash_cells(lat, lon).tolist() == expected


def test_geohash_cells_on_exact_cell_boundaries():
    # 40.78125 and -73.95751953125 lie exactly on precision-5 cell edges.
    lat = np.array([40.78125, 40.78125 - 1e-9, -90.0, 89.99999, 0.0])
    lon = np.array([-73.95751953125, -73.95751953125 - 1e-9, -180.0, 179.99999, 0.0])
    expected = [geohash_to_cell(pygeohash.encode(a, o, precision=5)) for a, o in zip(lat, lon)]
    assert geohash_cells(lat, lon).tolist() == expected


def test_features_do_not_depend_on_the_other_rows(rides_1k):
    rides = cleaned(rides_1k)
    whole = feature_frame(rides)
    parts = pd.concat([feature_frame(rides.iloc[i : i + 7]) for i in range(0, len(rides), 7)])
    pd.testing.assert_frame_equal(whole, parts)


def rides_at(lat, lon, pickups=None) -> pd.DataFrame:
    """Rides from (lat, lon) to (lon-shifted) points, at noon on 2013-07-06 unless `pickups` says otherwise."""
    n = len(lat)
    pickups = np.full(n, np.datetime64("2013-07-06T12:00:00", "s")) if pickups is None else pickups
    return pd.DataFrame({"pickup_datetime": pickups, "passenger_count": np.ones(n), "pickup_latitude": lat,
                         "pickup_longitude": lon, "dropoff_latitude": lat[::-1], "dropoff_longitude": lon[::-1]})


def test_district_columns_are_the_geohash_cells_on_a_million_points_and_on_every_cell_edge():
    """The districts are looked up on the geohash grid, not by geohash: the same cell for every point, at the
    edges between cells too (grid lines are exact binary fractions: a point on one, or one float off it)."""
    rng = np.random.default_rng(5)
    lat, lon = rng.uniform(40.3, 41.2, 1_000_000), rng.uniform(-74.5, -73.4, 1_000_000)
    step = 180 / 4096  # both a latitude and a longitude cell (2^12 and 2^13 of them)
    lat_lines = -90 + step * np.arange(int(130.3 / step), int(131.2 / step) + 1)
    lon_lines = -180 + step * np.arange(int(105.5 / step), int(106.6 / step) + 1)
    edge_lat, edge_lon = (np.stack([np.nextafter(v, -np.inf), v, np.nextafter(v, np.inf)]).ravel() for v in (lat_lines, lon_lines))
    edge_lat, edge_lon = (grid.ravel() for grid in np.meshgrid(edge_lat, edge_lon))
    lat, lon = np.concatenate([lat, edge_lat, [np.nan, 91.0, -74.0]]), np.concatenate([lon, edge_lon, [-73.9, -73.9, 200.0]])
    with np.errstate(invalid="ignore"):  # the NaN, cast to a grid index
        features = feature_frame(rides_at(lat, lon))
        for end, (a, o) in (("pickup", (lat, lon)), ("dropoff", (lat[::-1], lon[::-1]))):
            expected = geohash_cells(a, o)[:, None] == np.array([geohash_to_cell(d) for d in DISTRICTS])[None, :]
            got = features[[f"{end}_geohash_{district}" for district in DISTRICTS]].to_numpy()
            assert (got == expected).all(), end
    assert features[[f"pickup_geohash_{d}" for d in DISTRICTS]].to_numpy().sum(axis=0).min() > 1000
    # On the edges themselves, geohash's bisection agrees. (A float or two below an edge, (v + 90) / 180 * 2^12
    # can round up to the edge: geohash_cells then names the cell above, as the processed files always had.)
    exactly_on = np.isin(edge_lat, lat_lines) & np.isin(edge_lon, lon_lines)
    cells = [pygeohash.encode(a, o, precision=5) for a, o in zip(edge_lat[exactly_on], edge_lon[exactly_on])]
    on_edges = features.iloc[1_000_000 : 1_000_000 + len(edge_lat)][exactly_on]
    assert len(cells) > 300 and len(set(cells) & set(DISTRICTS)) == len(DISTRICTS)
    for cell, (_, row) in zip(cells, on_edges.iterrows()):
        assert [d for d in DISTRICTS if row[f"pickup_geohash_{d}"]] == ([cell] if cell in DISTRICTS else [])


def test_landmark_and_trip_distances_have_the_bits_of_the_one_line_haversine():
    rng = np.random.default_rng(6)
    lat1, lon1, lat2, lon2 = rng.uniform(40, 41.5, 500_000), rng.uniform(-75, -73, 500_000), rng.uniform(-90, 90, 500_000), rng.uniform(-180, 180, 500_000)
    p1, l1, p2, l2 = (np.radians(v) for v in (lat1, lon1, lat2, lon2))
    a = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin((l2 - l1) / 2) ** 2
    assert haversine_km(lat1, lon1, lat2, lon2).tobytes() == (2 * 6371.0 * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))).tobytes()


def test_months_match_numpy_calendar_every_day_from_1600_to_2400():
    days = np.arange(np.datetime64("1600-01-01"), np.datetime64("2400-01-01")).astype("datetime64[s]")
    pickups = days + np.random.default_rng(7).integers(0, 86400, len(days)).astype("timedelta64[s]")
    features = feature_frame(rides_at(np.full(len(days), 40.7), np.full(len(days), -73.9), pd.Series(pickups)))
    expected = pickups.astype("datetime64[M]").astype(np.int64) % 12
    assert (features[[f"month_{month}" for month in MONTHS]].to_numpy().argmax(axis=1) == expected).all()
