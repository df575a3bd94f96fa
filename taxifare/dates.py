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
  (clock.py). `America/New_York` itself is taken as written.
A wall-clock time is never an error: the hour skipped in spring (02:30 on a switch day) and the hour
that occurs twice in autumn are kept as the clock shows them; durations are counted on the wall clock.

`parse_datetime` reads one value; `parse_datetime_column` reads a pyarrow column at once with the same
pattern and the same range checks (days per month, hours, offsets); a test feeds both the same strings.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy and pyarrow load only with a column to read: settings and --help stay light
    import numpy as np
    import pyarrow as pa

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
_FIRST, _LAST = "0001-01-01T00:00:00", "9999-12-31T23:59:59"  # the range of datetime.datetime


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


def parse_datetime_column(column: pa.ChunkedArray | pa.Array, utc_label: str = WALL_CLOCK) -> np.ndarray:
    """Each value as New York wall-clock datetime64[s], whole seconds (fractions dropped); NaT where null
    or not in the grammar.

    One regular-expression pass checks the grammar; the fields are then read from fixed byte positions
    (the grammar pins them), several times faster than extracting them with the pattern. Only instants
    and named zones are converted (clock.py); values that fail the pattern are tried for a named zone.
    """
    import numpy as np
    import pyarrow.compute as pc

    from taxifare.clock import instants_of

    matched = pc.fill_null(pc.match_substring_regex(column, PATTERN), False).to_numpy(zero_copy_only=False)
    head, tail, lengths = _head_and_tail_bytes(column)
    year, month, day = _number(head, 0, 4), _number(head, 5, 2), _number(head, 8, 2)
    hour, minute = _number(head, 11, 2) * (lengths > 10), _number(head, 14, 2) * (lengths > 10)
    second = _number(head, 17, 2) * ((lengths >= 19) & (head[:, 16] == ord(":")))
    offset_hours, offset_minutes, sign = _offsets(tail, lengths)
    first_of_month = ((year - 1970) * 12 + month - 1).astype("datetime64[M]")
    days_in_month = ((first_of_month + 1).astype("datetime64[D]") - first_of_month.astype("datetime64[D]")).astype(np.int64)
    values = first_of_month.astype("datetime64[s]") + (day - 1) * 86_400 + hour * 3600 + minute * 60 + second
    valid = (
        (month >= 1) & (month <= 12) & (day >= 1) & (day <= days_in_month) & (hour <= 23) & (minute <= 59)
        & (second <= 59) & (values >= np.datetime64(_FIRST)) & (values <= np.datetime64(_LAST))
    )
    zoned = _zoned_rows(column, matched, valid)
    valid &= matched & (offset_hours <= 23) & (offset_minutes <= 59)
    instant = valid & ((sign != 0) | (tail[:, -1] == ord("Z")) | ((utc_label == INSTANT) & _ends_with_utc(tail)))
    rows = np.flatnonzero(instant)
    _to_new_york(values, valid, rows, values[rows] - sign[rows] * (offset_hours[rows] * 3600 + offset_minutes[rows] * 60))
    for zone, rows in zoned.items():
        valid[rows] = True
        if zone != NEW_YORK:
            _to_new_york(values, valid, rows, instants_of(values[rows], zone))
    values[~valid] = np.datetime64("NaT")
    return values


def _to_new_york(values: np.ndarray, valid: np.ndarray, rows: np.ndarray, instants: np.ndarray) -> None:
    """Set `values[rows]` to the New York times of their `instants`; a row whose instant or New York time
    falls outside the range of datetime is not valid (as the scalar path, which raises OverflowError)."""
    import numpy as np

    from taxifare.clock import new_york_times

    if not len(rows):
        return
    local = new_york_times(instants)
    first, last = np.datetime64(_FIRST), np.datetime64(_LAST)
    values[rows] = local
    valid[rows] &= (instants >= first) & (instants <= last) & (local >= first) & (local <= last)


def _zoned_rows(column: pa.ChunkedArray | pa.Array, matched: np.ndarray, valid: np.ndarray) -> dict[str, np.ndarray]:
    """The rows written with a known named zone, as indices by zone: looked for among those the fast
    pattern refused and whose fields are real (usually none, so that the common column pays nothing)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    candidates = np.flatnonzero(~matched & valid)
    if not len(candidates):
        return {}
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    zones = pc.struct_field(pc.extract_regex(array.take(pa.array(candidates)), ZONED_PATTERN), "zone").dictionary_encode()
    codes = pc.fill_null(zones.indices, -1).to_numpy(zero_copy_only=False)
    known = zone_names()
    return {zone: candidates[codes == code] for code, zone in enumerate(zones.dictionary.to_pylist()) if zone in known}


def _ends_with_utc(tail: np.ndarray) -> np.ndarray:
    return (tail[:, -4] == ord(" ")) & (tail[:, -3] == ord("U")) & (tail[:, -2] == ord("T")) & (tail[:, -1] == ord("C"))


_HEAD, _TAIL = 19, 6  # `YYYY-MM-DD HH:MM:SS`; the longest offset, `+HH:MM`


def _head_and_tail_bytes(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each value's first _HEAD and last _TAIL bytes, and its length in bytes.

    Bytes past a value's end belong to the next value (or are 0 after the last): read them only where
    the length says they are the value's own. A value of the grammar has at least _TAIL bytes.
    """
    import numpy as np
    import pyarrow as pa

    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    array = array.cast(pa.large_binary())
    _, offsets, data = array.buffers()
    offsets = np.frombuffer(offsets, np.int64)[array.offset : array.offset + len(array) + 1]
    data = np.frombuffer(data, np.uint8) if data else np.empty(0, np.uint8)
    starts, lengths = offsets[:-1], np.diff(offsets)
    width = int(lengths[0]) if len(lengths) else 0
    if width >= _HEAD and (lengths == width).all():  # the usual column, one format throughout: views, no copies
        rows = data[offsets[0] : offsets[-1]].reshape(-1, width)
        return rows[:, :_HEAD], rows[:, width - _TAIL :], lengths
    data = np.concatenate([data, np.zeros(_HEAD, np.uint8)])
    head = data[starts[:, None] + np.arange(_HEAD)]
    tail = data[np.maximum(starts + lengths - _TAIL, 0)[:, None] + np.arange(_TAIL)]
    return head, tail, lengths


def _number(bytes_: np.ndarray, first: int, digits: int) -> np.ndarray:
    """The decimal number in columns first .. first + digits - 1 (meaningful where those are digits)."""
    import numpy as np

    value = np.zeros(len(bytes_), dtype=np.int64)
    for column in range(first, first + digits):
        value = value * 10 + bytes_[:, column] - ord("0")
    return value


def _offsets(tail: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hours, minutes and sign (+1, -1; 0 without one) of each value's numeric offset, all 0 where it has none.

    In a value of the grammar, a sign past the minutes (byte 16 on) can only start the offset, which ends
    the value: `+HH`, `+HHMM` or `+HH:MM`, so the sign is 3, 5 or 6 bytes before the end; the minutes,
    when given, are the last two bytes.
    """
    import numpy as np

    sign_column = np.full(len(tail), -1, dtype=np.int64)
    for back in (3, 5, 6):
        column = _TAIL - back
        is_sign = ((tail[:, column] == ord("+")) | (tail[:, column] == ord("-"))) & (lengths - back >= 16)
        sign_column[is_sign] = column
    has_offset = sign_column >= 0
    rows = np.arange(len(tail))
    sign = np.where(has_offset, np.where(tail[rows, sign_column] == ord("-"), -1, 1), 0)
    hours = (tail[rows, sign_column + 1].astype(np.int64) - ord("0")) * 10 + tail[rows, sign_column + 2] - ord("0")
    minutes = _number(tail, _TAIL - 2, 2)
    return hours * has_offset, minutes * (has_offset & (sign_column < _TAIL - 3)), sign
