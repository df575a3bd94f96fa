"""Columns of date texts read at once, by the grammar of core/dates.py (which reads one value), as New
York wall-clock datetime64[s]; a test feeds both the same strings."""

from __future__ import annotations

import functools

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from taxifare.core.dates import FIRST_TIME, INSTANT, LAST_TIME, NEW_YORK, PATTERN, WALL_CLOCK, ZONED_PATTERN, zone_names
from taxifare.rides.clock import instants_of, new_york_times
from taxifare.rides.table import numpy_values


def parse_datetime_column(column: pa.ChunkedArray | pa.Array, utc_label: str = WALL_CLOCK) -> np.ndarray:
    """Each value as New York wall-clock datetime64[s], whole seconds (fractions dropped); NaT where null
    or not in the grammar.

    One regular-expression pass checks the grammar; the fields are then read from fixed byte positions
    (the grammar pins them), several times faster than extracting them with the pattern. Only instants
    and named zones are converted (clock.py); values that fail the pattern are tried for a named zone.
    """
    head, tail, lengths = _head_and_tail_bytes(column)
    if _all_in_usual_form(column, head, tail, lengths):  # the pattern and the offsets have nothing to find
        matched = np.ones(len(lengths), dtype=bool)
        offset_hours = offset_minutes = sign = np.zeros(len(lengths), dtype=np.int64)
    else:
        matched = numpy_values(pc.match_substring_regex(column, PATTERN), null=False)
        offset_hours, offset_minutes, sign = _offsets(tail, lengths)
    year, month, day = _number(head, 0, 4), _number(head, 5, 2), _number(head, 8, 2)
    hour, minute = _number(head, 11, 2) * (lengths > 10), _number(head, 14, 2) * (lengths > 10)
    second = _number(head, 17, 2) * ((lengths >= 19) & (head[:, 16] == ord(":")))
    starts = _month_starts()
    months = np.clip(year * 12 + month - 1, 0, len(starts) - 2)  # a month out of range is not valid anyway
    first_day, days_in_month = starts[months], starts[months + 1] - starts[months]
    values = ((first_day + day - 1) * 86_400 + hour * 3600 + minute * 60 + second).astype("datetime64[s]")
    valid = (
        (year <= 9999) & (month >= 1) & (month <= 12) & (day >= 1) & (day <= days_in_month) & (hour <= 23) & (minute <= 59)
        & (second <= 59) & (values >= np.datetime64(FIRST_TIME)) & (values <= np.datetime64(LAST_TIME))
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


@functools.lru_cache(maxsize=1)
def _month_starts() -> np.ndarray:
    """The day (since 1970) on which each month of the years 0-9999 begins, by months since year 0, and
    then January of 10000: a lookup, several times faster than NumPy's calendar on each value."""

    return (np.arange(10_000 * 12 + 1) - 1970 * 12).astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)


def _to_new_york(values: np.ndarray, valid: np.ndarray, rows: np.ndarray, instants: np.ndarray) -> None:
    """Set `values[rows]` to the New York times of their `instants`; a row whose instant or New York time
    falls outside the range of datetime is not valid (as the scalar path, which raises OverflowError)."""


    if not len(rows):
        return
    local = new_york_times(instants)
    first, last = np.datetime64(FIRST_TIME), np.datetime64(LAST_TIME)
    values[rows] = local
    valid[rows] &= (instants >= first) & (instants <= last) & (local >= first) & (local <= last)


def _zoned_rows(column: pa.ChunkedArray | pa.Array, matched: np.ndarray, valid: np.ndarray) -> dict[str, np.ndarray]:
    """The rows written with a known named zone, as indices by zone: looked for among those the fast
    pattern refused and whose fields are real (usually none, so that the common column pays nothing)."""

    candidates = np.flatnonzero(~matched & valid)
    if not len(candidates):
        return {}
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    zones = pc.struct_field(pc.extract_regex(array.take(pa.array(candidates)), ZONED_PATTERN), "zone").dictionary_encode()
    codes = numpy_values(zones.indices, null=-1)
    known = zone_names()
    return {zone: candidates[codes == code] for code, zone in enumerate(zones.dictionary.to_pylist()) if zone in known}


_USUAL_DIGITS = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18]  # of `YYYY-MM-DD HH:MM:SS UTC`
_USUAL_SEPARATORS = ([4, 7, 13, 16], [ord("-"), ord("-"), ord(":"), ord(":")])


def _all_in_usual_form(column: pa.ChunkedArray | pa.Array, head: np.ndarray, tail: np.ndarray, lengths: np.ndarray) -> bool:
    """Whether every value is `YYYY-MM-DD HH:MM:SS UTC` (the Kaggle and BigQuery exports), or every value
    `YYYY-MM-DD HH:MM:SS` (the TLC files), with `T` or a space in the middle: then each matches PATTERN and
    has no offset, which the bytes show at a fraction of the cost."""
    if not len(lengths) or column.null_count:
        return False
    if (lengths == _HEAD + 4).all():
        suffix = _ends_with_utc(tail).all()
    else:
        suffix = (lengths == _HEAD).all()
    separators, expected = _USUAL_SEPARATORS
    return bool(
        suffix
        and ((head[:, _USUAL_DIGITS] - np.uint8(ord("0"))) <= 9).all()
        and (head[:, separators] == expected).all()
        and ((head[:, 10] == ord(" ")) | (head[:, 10] == ord("T"))).all()
    )


def _ends_with_utc(tail: np.ndarray) -> np.ndarray:
    return (tail[:, -4] == ord(" ")) & (tail[:, -3] == ord("U")) & (tail[:, -2] == ord("T")) & (tail[:, -1] == ord("C"))


_HEAD, _TAIL = 19, 6  # `YYYY-MM-DD HH:MM:SS`; the longest offset, `+HH:MM`


def _head_and_tail_bytes(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each value's first _HEAD and last _TAIL bytes, and its length in bytes.

    Bytes past a value's end belong to the next value (or are 0 after the last): read them only where
    the length says they are the value's own. A value of the grammar has at least _TAIL bytes.
    """

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
