"""Columns of times converted to New York wall-clock time, the one clock of taxifare (see core/dates.py).

Instants (seconds since 1970, UTC) and wall-clock times of another zone are converted by the rules of
the time zone database, as Python's zoneinfo applies them to one value (which core.dates.parse_datetime
does): daylight saving time, its changes of rules over the years, and the local mean time before 1883.

Vectorized with a table of the zone's UTC offsets: an entry at the start of each run of consecutive
years that the values touch, and one per change of offset within those years, found by asking zoneinfo
for the offset once a day and bisecting to the second where it changes (about 1 ms per zone and year,
cached). A value's offset is then one binary search in that table.
"""

from __future__ import annotations

import datetime as dt
import functools
from zoneinfo import ZoneInfo

import numpy as np

from taxifare.core.dates import NEW_YORK

_UTC_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_DAY = 86_400
_MEAN_YEAR = 31_556_952  # seconds in a mean Gregorian year
# Zoneinfo is asked only between these instants, so that no local time leaves datetime's years 1-9999.
_FIRST_PROBE = int((dt.datetime(1, 1, 2, tzinfo=dt.timezone.utc) - _UTC_EPOCH).total_seconds())
_LAST_PROBE = int((dt.datetime(9999, 12, 30, tzinfo=dt.timezone.utc) - _UTC_EPOCH).total_seconds())


def new_york_times(instants: np.ndarray) -> np.ndarray:
    """UTC instants (datetime64[s]) as New York wall-clock times (datetime64[s])."""
    seconds = instants.view(np.int64)
    return (seconds + _offsets(NEW_YORK, seconds, wall_clock=False)).view("datetime64[s]")


def instants_of(wall_clock: np.ndarray, zone: str) -> np.ndarray:
    """Wall-clock times of `zone` (datetime64[s]) as UTC instants, as zoneinfo reads them with fold=0: a
    time that occurs twice (clocks set back) is its first occurrence, a time that is skipped (clocks set
    forward) takes the offset in force before the change."""
    seconds = wall_clock.view(np.int64)
    return (seconds - _offsets(zone, seconds, wall_clock=True)).view("datetime64[s]")


def _offsets(zone: str, seconds: np.ndarray, wall_clock: bool) -> np.ndarray:
    """Each value's UTC offset in seconds: at that instant, or for that wall-clock time (fold=0)."""
    if not len(seconds):
        return np.zeros(0, dtype=np.int64)
    moments, before, after = _table(zone, _years_near(seconds))
    # On the wall clock, a change takes effect at its instant plus the larger of the two offsets: until
    # then a wall-clock time either is skipped or occurs a first time, and fold=0 reads both the old way.
    bounds = moments + np.maximum(before, after) if wall_clock else moments
    in_force = np.concatenate([before[:1], after])  # before the first entry, then after each
    return in_force[np.searchsorted(bounds, seconds, side="right")]


def _years_near(seconds: np.ndarray) -> list[int]:
    """The years of the values, and the one before and after each (so that any value's year, and the
    instant of any wall-clock time, is among them), within 1-9999."""
    low, high = (int(value) // _MEAN_YEAR + 1970 for value in (seconds.min(), seconds.max()))  # a day off at most
    if high - low <= 64:
        seen = range(low, high + 1)
    else:  # values far apart (a stray date in bad data): only the years they touch
        seen = (np.flatnonzero(np.bincount(seconds // _MEAN_YEAR + 1970 - low)) + low).tolist()
    return sorted({year for near in seen for year in (near - 1, near, near + 1) if 1 <= year <= 9999})


def _table(zone: str, years: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The instants of the offset table (seconds since 1970) and the offsets before and after each."""
    rows, chosen = [], set(years)
    for year in years:
        if year - 1 not in chosen:  # a run of years starts: its first entry gives the offset in force
            start = _year_start(year)
            rows.append((start, _offset(zone, start - 1), _offset(zone, start)))
        rows.extend(_changes_in(zone, year))
    moments, before, after = (np.array(column, dtype=np.int64) for column in zip(*rows))
    return moments, before, after


def _year_start(year: int) -> int:
    seconds = int((dt.datetime(year, 1, 1, tzinfo=dt.timezone.utc) - _UTC_EPOCH).total_seconds()) if year <= 9999 else _LAST_PROBE
    return min(max(seconds, _FIRST_PROBE), _LAST_PROBE)


@functools.lru_cache(maxsize=None)
def _changes_in(zone: str, year: int) -> tuple[tuple[int, int, int], ...]:
    """(instant, offset before, offset after) of each change of the zone's offset in the year, from just
    after its first second to its end (UTC), assuming no two changes within a day."""
    start, end = _year_start(year), _year_start(year + 1)
    changes = []
    earlier, offset = start, _offset(zone, start)
    for probe in [*range(start + _DAY, end, _DAY), end]:
        now = _offset(zone, probe)
        if now != offset:
            changes.append((_first_second_of(zone, earlier, probe, offset), offset, now))
            offset = now
        earlier = probe
    return tuple(changes)


def _first_second_of(zone: str, low: int, high: int, old: int) -> int:
    """The first instant in (low, high] whose offset is no longer `old` (the one at `low`)."""
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if _offset(zone, middle) == old else (low, middle)
    return high


def _offset(zone: str, seconds: int) -> int:
    moment = _UTC_EPOCH + dt.timedelta(seconds=min(max(seconds, _FIRST_PROBE), _LAST_PROBE))
    return int(moment.astimezone(ZoneInfo(zone)).utcoffset().total_seconds())
