"""The one date grammar of taxifare, for flags, settings, `.env` values, CSV cells and `pred` flags, and
its one clock: New York wall-clock time.

Accepted (ISO 8601): `YYYY-MM-DD`, or `YYYY-MM-DD` then `T` or a space then `HH:MM[:SS[.fraction]]`,
followed by nothing, ` UTC`, `Z`, a numeric offset (`+05:00`, `-0500`, `+05`) or a space and a time
zone of the zone database (` America/New_York`, ` EST`). Fractions of a second are read and dropped:
rides and windows are kept to the second. Refused: ambiguous or partial forms (`01/02/2010`, `Jan 2013`,
`March`) and zone names the database does not know.

Every value is read as a New York wall-clock time (naive: the time a clock in New York showed), since
the public NYC data (the Kaggle files, the BigQuery tables they come from, the TLC trip records) writes
pickups that way, whatever the label:
- a time with nothing after it, or with ` UTC` (BigQuery's TIMESTAMP label, not the meter's clock), is
  taken as it is written; `utc_label=INSTANT` declares a source whose ` UTC` marks real instants;
- `Z` and numeric offsets are instants, and a time in another named zone is that zone's wall clock
  (read as zoneinfo reads it, fold=0): both are converted to New York time, daylight saving included
  (rides/clock.py). `America/New_York` itself is taken as written.
A wall-clock time is never an error: the hour skipped in spring (02:30 on a switch day) and the hour
that occurs twice in autumn are kept as the clock shows them; durations are counted on the wall clock.

`parse_datetime` reads one value; `parse_datetime_column` (rides/date_columns.py) reads a pyarrow column
at once with the same pattern and the same range checks (days per month, hours, offsets); a test feeds
both the same strings. This module needs neither numpy nor pyarrow: settings and --help stay light.
"""

from __future__ import annotations

import datetime as dt
import functools
import re

WALL_CLOCK, INSTANT = "wall-clock", "instant"
UTC_LABELS = (WALL_CLOCK, INSTANT)  # what ` UTC` means
NEW_YORK = "America/New_York"
EXPECTED = (
    "YYYY-MM-DD or YYYY-MM-DD HH:MM:SS[.fff] with an optional UTC, Z, offset (-05:00) or time zone "
    "(America/New_York), e.g. 2013-07-06 17:18:00 UTC"
)

# [0-9], not \d: Python's \d also matches other scripts' digits, RE2's (pyarrow's) does not.
_DATE_AND_TIME = (
    r"^(?P<year>[0-9]{4})-(?P<month>[0-9]{2})-(?P<day>[0-9]{2})"
    r"(?:[T ](?P<hour>[0-9]{2}):(?P<minute>[0-9]{2})(?::(?P<second>[0-9]{2})(?:[.,][0-9]+)?)?"
)
_SUFFIX = r"(?P<utc> UTC)|(?P<z>Z)|(?P<sign>[+-])(?P<offset_hours>[0-9]{2})(?::?(?P<offset_minutes>[0-9]{2}))?"
_ZONE = r" (?P<zone>[A-Za-z][A-Za-z0-9_+/-]*)"
PATTERN = _DATE_AND_TIME + f"(?:{_SUFFIX})?)?$"  # every form but named zones: the column's fast path
ZONED_PATTERN = _DATE_AND_TIME + _ZONE + ")$"
_DATETIME = re.compile(_DATE_AND_TIME + f"(?:{_SUFFIX}|{_ZONE})?)?$")
_NUMBER_FIELDS = ("year", "month", "day", "hour", "minute", "second", "offset_hours", "offset_minutes")
FIRST_TIME, LAST_TIME = "0001-01-01T00:00:00", "9999-12-31T23:59:59"  # the range of datetime.datetime


def parse_datetime(text: str, utc_label: str = WALL_CLOCK) -> dt.datetime:
    """`text` as a naive New York wall-clock datetime, in whole seconds; ValueError saying what was
    expected if it is not in the grammar."""
    match = _DATETIME.match(text)
    if match is None:
        raise ValueError(f"could not read {text!r} as a date; expected {EXPECTED}")
    fields = {name: int(match[name] or 0) for name in _NUMBER_FIELDS}
    if fields["offset_hours"] > 23 or fields["offset_minutes"] > 59:
        raise ValueError(f"{text!r} has an offset out of range; expected -23:59 to +23:59")
    try:
        written = dt.datetime(*(fields[name] for name in _NUMBER_FIELDS[:6]))
    except ValueError as error:
        raise ValueError(f"{text!r} is not a real date and time ({error})") from None
    zone = _zone_of(text, match, fields, utc_label)
    try:
        return written if zone is None else written.replace(tzinfo=zone).astimezone(_zone(NEW_YORK)).replace(tzinfo=None)
    except OverflowError:
        raise ValueError(f"{text!r} is not a real date and time (its New York time is out of range)") from None


def _zone_of(text: str, match: re.Match, fields: dict[str, int], utc_label: str) -> dt.tzinfo | None:
    """The zone `text` is written in; None for New York wall-clock time."""
    if match["zone"]:
        if match["zone"] not in zone_names():
            raise ValueError(
                f"{text!r} names the time zone {match['zone']}, which the time zone database does not know; "
                f"expected a zone such as America/New_York, or Z, UTC or an offset such as -05:00"
            )
        return _zone(match["zone"])
    if match["sign"]:
        offset = dt.timedelta(hours=fields["offset_hours"], minutes=fields["offset_minutes"])
        return dt.timezone(-offset if match["sign"] == "-" else offset)
    if match["z"] or (match["utc"] and utc_label == INSTANT):
        return dt.timezone.utc
    return None


@functools.lru_cache(maxsize=None)
def zone_names() -> frozenset[str]:
    """The zones of the time zone database, less `localtime` (this machine's own zone, whatever it is)."""
    import zoneinfo

    return frozenset(zoneinfo.available_timezones() - {"localtime", "posixrules"})


def _zone(name: str) -> dt.tzinfo:
    import zoneinfo

    return zoneinfo.ZoneInfo(name)


def source_timestamp(wall_clock: dt.datetime, utc_label: str) -> dt.datetime:
    """The TIMESTAMP that a source with this ` UTC` label writes for New York wall-clock time `wall_clock`:
    its figures labelled UTC, or (INSTANT) the instant it names (the first, if the clock shows it twice)."""
    if utc_label == WALL_CLOCK:
        return wall_clock.replace(tzinfo=dt.timezone.utc)
    return wall_clock.replace(tzinfo=_zone(NEW_YORK)).astimezone(dt.timezone.utc)
