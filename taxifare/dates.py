"""The one date grammar of taxifare, for flags, settings, `.env` values, CSV cells and `pred` flags.

Accepted (ISO 8601): `YYYY-MM-DD`, or `YYYY-MM-DD` then `T` or a space then `HH:MM[:SS[.fraction]]`,
followed by nothing, `Z`, ` UTC` or a numeric offset (`+05:00`, `-0500`, `+05`). A time with an offset
is converted to UTC; one with nothing is taken as UTC, like the ` UTC` of the BigQuery and Kaggle
exports (features.py then derives New York local hours, weekdays and months). Fractions of a second
are read and dropped: rides and windows are kept to the second.

Refused: named zones (`EST`, `America/New_York`), whose offset depends on a zone database and on the
date; ambiguous or partial forms (`01/02/2010`, `Jan 2013`, `March`).

`parse_datetime` reads one value; `parse_datetime_column` reads a pyarrow column at once with the same
pattern and the same range checks (days per month, hours, offsets); a test feeds both the same strings.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy and pyarrow load only with a column to read: settings and --help stay light
    import numpy as np
    import pyarrow as pa

EXPECTED = "YYYY-MM-DD or YYYY-MM-DD HH:MM:SS[.fff] with an optional Z, UTC or offset (+05:00), e.g. 2013-07-06 17:18:00 UTC"

# [0-9], not \d: Python's \d also matches other scripts' digits, RE2's (pyarrow's) does not.
PATTERN = (
    r"^(?P<year>[0-9]{4})-(?P<month>[0-9]{2})-(?P<day>[0-9]{2})"
    r"(?:[T ](?P<hour>[0-9]{2}):(?P<minute>[0-9]{2})(?::(?P<second>[0-9]{2})(?:[.,][0-9]+)?)?"
    r"(?:Z| UTC|(?P<sign>[+-])(?P<offset_hours>[0-9]{2})(?::?(?P<offset_minutes>[0-9]{2}))?)?)?$"
)
_DATETIME = re.compile(PATTERN)
_NAMED_ZONE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9:.,]+ ?(?P<zone>[A-Za-z][A-Za-z_+-]*(?:/[A-Za-z_+-]+)*)$")
_NUMBER_FIELDS = ("year", "month", "day", "hour", "minute", "second", "offset_hours", "offset_minutes")
_FIRST, _LAST = "0001-01-01T00:00:00", "9999-12-31T23:59:59"  # the range of datetime.datetime


def parse_datetime(text: str) -> dt.datetime:
    """`text` as an aware UTC datetime, in whole seconds; ValueError saying what was expected if it is not in the grammar."""
    match = _DATETIME.match(text)
    if match is None:
        raise ValueError(_refusal(text))
    fields = {name: int(match[name] or 0) for name in _NUMBER_FIELDS}
    if fields["offset_hours"] > 23 or fields["offset_minutes"] > 59:
        raise ValueError(f"{text!r} has an offset out of range; expected -23:59 to +23:59")
    offset = dt.timedelta(hours=fields["offset_hours"], minutes=fields["offset_minutes"])
    try:
        value = dt.datetime(*(fields[name] for name in _NUMBER_FIELDS[:6]), tzinfo=dt.timezone.utc)
        return value - offset if match["sign"] == "+" else value + offset
    except (ValueError, OverflowError) as error:
        raise ValueError(f"{text!r} is not a real date and time ({error})") from None


def _refusal(text: str) -> str:
    named = _NAMED_ZONE.match(text)
    if named and named["zone"] != "UTC":
        return (
            f"{text!r} names the time zone {named['zone']}; named zones are not accepted (their offset depends "
            f"on the date), use Z, UTC or a numeric offset such as -05:00"
        )
    return f"could not read {text!r} as a date; expected {EXPECTED}"


def parse_datetime_column(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Each value as UTC datetime64[s], whole seconds (fractions dropped); NaT where null or not in the grammar.

    One regular-expression pass checks the grammar; the fields are then read from fixed byte positions
    (the grammar pins them), several times faster than extracting them with the pattern.
    """
    import numpy as np
    import pyarrow.compute as pc

    matched = pc.fill_null(pc.match_substring_regex(column, PATTERN), False).to_numpy(zero_copy_only=False)
    head, tail, lengths = _head_and_tail_bytes(column)
    year, month, day = _number(head, 0, 4), _number(head, 5, 2), _number(head, 8, 2)
    hour, minute = _number(head, 11, 2) * (lengths > 10), _number(head, 14, 2) * (lengths > 10)
    second = _number(head, 17, 2) * ((lengths >= 19) & (head[:, 16] == ord(":")))
    offset_hours, offset_minutes, sign = _offsets(tail, lengths)
    first_of_month = ((year - 1970) * 12 + month - 1).astype("datetime64[M]")
    days_in_month = ((first_of_month + 1).astype("datetime64[D]") - first_of_month.astype("datetime64[D]")).astype(np.int64)
    seconds = hour * 3600 + minute * 60 + second - sign * (offset_hours * 3600 + offset_minutes * 60)
    values = first_of_month.astype("datetime64[s]") + (day - 1) * 86_400 + seconds
    valid = (
        matched
        & (month >= 1) & (month <= 12) & (day >= 1) & (day <= days_in_month)
        & (hour <= 23) & (minute <= 59) & (second <= 59) & (offset_hours <= 23) & (offset_minutes <= 59)
        & (values >= np.datetime64(_FIRST)) & (values <= np.datetime64(_LAST))
    )
    values[~valid] = np.datetime64("NaT")
    return values


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
