"""A SYNTHETIC NYC ride data set, seeded, for running the whole job with no cloud account.

Every `key` starts with "synthetic-" so the rows can never be mistaken for real TLC data.
Fares follow the NYC meter rules of each era plus noise; a realistic share of rows is dirty.
Pickup times are New York wall-clock times labelled " UTC", as the Kaggle and BigQuery exports write them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from taxifare.core.files import atomic_write_bytes

# (name, latitude, longitude, spread in degrees, weight) of pickup/dropoff hot spots.
_PLACES = (
    ("midtown", 40.7549, -73.9840, 0.012, 0.30),
    ("downtown", 40.7127, -74.0059, 0.010, 0.12),
    ("upper_east", 40.7736, -73.9566, 0.010, 0.12),
    ("upper_west", 40.7870, -73.9754, 0.010, 0.10),
    ("chelsea_village", 40.7400, -74.0000, 0.010, 0.14),
    ("harlem", 40.8116, -73.9465, 0.012, 0.04),
    ("brooklyn", 40.6782, -73.9442, 0.030, 0.07),
    ("queens", 40.7282, -73.8500, 0.030, 0.04),
    ("jfk", 40.6413, -73.7781, 0.004, 0.04),
    ("lga", 40.7769, -73.8740, 0.003, 0.03),
)
_JFK = 8
_START, _END = np.datetime64("2009-01-01T00:00:00", "s"), np.datetime64("2015-07-01T00:00:00", "s")
_RATE_CHANGE = np.datetime64("2012-09-04T00:00:00", "s")
_MTA_TAX_START = np.datetime64("2009-11-01T00:00:00", "s")


def _sample_points(rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    weights = np.array([place[4] for place in _PLACES])
    which = rng.choice(len(_PLACES), size=count, p=weights / weights.sum())
    centers = np.array([(place[1], place[2], place[3]) for place in _PLACES])[which]
    lat = centers[:, 0] + rng.normal(0, 1, count) * centers[:, 2]
    lon = centers[:, 1] + rng.normal(0, 1, count) * centers[:, 2] * 1.3
    return lat, lon, which


def _route_km(lat1, lon1, lat2, lon2) -> np.ndarray:
    north_south = np.abs(lat2 - lat1) * 111.2
    east_west = np.abs(lon2 - lon1) * 111.2 * np.cos(np.radians(40.75))
    return (north_south + east_west) * 1.05 + 0.2


def meter_fares(pickup: np.ndarray, route_km: np.ndarray, slow_minutes: np.ndarray, jfk_trip: np.ndarray) -> np.ndarray:
    """NYC meter fare of each ride (before tips and tolls), by the rules in force at pickup.

    Before 2012-09-04: $2.50 initial, $0.40 per 1/5 mile, $0.40 per slow minute, JFK flat $45.
    From 2012-09-04: $2.50 initial, $0.50 per 1/5 mile, $0.50 per slow minute, JFK flat $52.
    Night (20:00-06:00) $0.50, weekday peak (16:00-20:00) $1.00, MTA tax $0.50 from late 2009.
    """
    new_rates = pickup >= _RATE_CHANGE
    unit = np.where(new_rates, 0.50, 0.40)
    miles = route_km / 1.609
    fare = 2.50 + unit * np.floor(miles * 5) + unit * np.floor(slow_minutes)
    local = pd.DatetimeIndex(pickup)  # New York wall-clock times, as the public data writes them
    hour, weekday = local.hour.to_numpy(), local.day_of_week.to_numpy()
    fare += np.where((hour >= 20) | (hour < 6), 0.50, 0.0)
    fare += np.where((weekday < 5) & (hour >= 16) & (hour < 20), 1.00, 0.0)
    fare = np.where(jfk_trip, np.where(new_rates, 52.0, 45.0), fare)
    fare += np.where(pickup >= _MTA_TAX_START, 0.50, 0.0)
    return fare


def demo_rides(rows: int, seed: int = 7) -> pd.DataFrame:
    """The synthetic rides, with the raw columns of the BigQuery tables plus a `key`."""
    rng = np.random.default_rng(seed)
    pickup = _START + rng.integers(0, int((_END - _START) / np.timedelta64(1, "s")), rows).astype("timedelta64[s]")
    plat, plon, pickup_place = _sample_points(rng, rows)
    dlat, dlon, dropoff_place = _sample_points(rng, rows)
    route_km = _route_km(plat, plon, dlat, dlon)
    local_hour = pickup.astype("datetime64[h]").astype(np.int64) % 24
    busy = np.isin(local_hour, [8, 9, 10, 16, 17, 18, 19])
    speed_kmh = np.clip(rng.normal(np.where(busy, 14, 22), 4), 5, 45)
    slow_minutes = route_km / speed_kmh * 60 * np.clip(rng.normal(np.where(busy, 0.35, 0.15), 0.08), 0, 0.8)
    jfk_trip = ((pickup_place == _JFK) ^ (dropoff_place == _JFK)) & (
        np.isin(pickup_place, range(6)) | np.isin(dropoff_place, range(6))
    )
    fare = meter_fares(pickup, route_km, slow_minutes, jfk_trip) + rng.normal(0, 0.6, rows)
    fare = np.round(np.maximum(fare, 2.5), 2)
    passengers = rng.choice([1, 2, 3, 4, 5, 6], size=rows, p=[0.69, 0.15, 0.05, 0.03, 0.05, 0.03])

    rides = pd.DataFrame(
        {
            "key": [f"synthetic-{i:09d}" for i in range(rows)],
            "fare_amount": fare,
            "pickup_datetime": pd.DatetimeIndex(pickup).strftime("%Y-%m-%d %H:%M:%S UTC"),
            "pickup_longitude": np.round(plon, 6),
            "pickup_latitude": np.round(plat, 6),
            "dropoff_longitude": np.round(dlon, 6),
            "dropoff_latitude": np.round(dlat, 6),
            "passenger_count": passengers,
        }
    )
    return _add_dirt(rides, rng)


def _add_dirt(rides: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Dirty rows at shares like the real data: zero coordinates, far-away points, bad fares and counts."""
    rows = len(rides)

    def pick(share: float) -> np.ndarray:
        return rng.random(rows) < share

    coords = ["pickup_longitude", "pickup_latitude", "dropoff_longitude", "dropoff_latitude"]
    rides.loc[pick(0.02), coords] = 0.0
    far = pick(0.004)
    rides.loc[far, "dropoff_latitude"] += rng.choice([-1.5, 1.2, 20.0], far.sum())
    rides.loc[pick(0.003), "fare_amount"] *= -1
    rides.loc[pick(0.003), "passenger_count"] = 0
    duplicated = rides.iloc[np.flatnonzero(pick(0.03))].copy()
    duplicated["key"] = duplicated["key"].str.replace("synthetic-", "synthetic-dup-")
    # An exact copy of a ride, key apart: the same trip exported twice.
    return pd.concat([rides, duplicated]).sample(frac=1.0, random_state=int(rng.integers(2**31))).reset_index(drop=True)


def write_demo_rides(path: Path, rows: int, seed: int = 7) -> None:
    rides = demo_rides(rows, seed)
    atomic_write_bytes(Path(path), rides.to_csv(index=False).encode())
