import datetime as dt
import random

import numpy as np
import pyarrow as pa
import pytest

from taxifare.core.dates import INSTANT, UTC_LABELS, WALL_CLOCK, parse_datetime, source_timestamp
from taxifare.rides.date_columns import parse_datetime_column

UTC = dt.timezone.utc

ACCEPTED = [
    "2013-07-06 17:18:00 UTC",
    "2013-07-06 17:18:00",
    "2013-07-06T17:18:00",
    "2013-07-06T17:18:00Z",
    "2013-07-06 17:18:00.000",
    "2013-07-06 17:18:59.999999999 UTC",
    "2013-07-06T17:18:00,5Z",
    "2013-07-06 17:18",
    "2013-07-06T17:18Z",
    "2013-07-06",
    "2013-07-06T12:00:00-04:00",
    "2013-07-06T12:00:00+0530",
    "2013-07-06 12:00:00.25+05",
    "2013-07-06T12:00-0930",
    "2013-07-06T23:30:00-23:59",
    "2012-02-29 10:00:00 UTC",
    "2000-02-29",
    "0001-01-01T00:00:00",
    "9999-12-31T23:59:59",
    "0001-01-01T05:00:00Z",  # 00:03:58 in New York, whose clocks kept local mean time until 1883
    "9999-12-31T23:59:59Z",
    "9999-12-31T23:59:59+00:01",
    "2013-07-06 17:18:00 EST",
    "2013-07-06 17:18:00 America/New_York",
    "2013-07-06T17:18 America/Chicago",
    "2013-07-06 17:18:00.5 Europe/London",
    "2013-07-06 17:18:00 Etc/GMT-14",
    "2013-03-10 02:30:00 US/Eastern",
    "2013-03-10 02:30:00 America/New_York",
]
REFUSED = [
    "2013-02-29 10:00:00 UTC",
    "2013-02-30",
    "1900-02-29",
    "2013-04-31 00:00:00",
    "2013-13-01",
    "2013-00-10",
    "2013-07-00",
    "2013-07-06 24:00:00",
    "2013-07-06 17:60:00",
    "2013-07-06 17:18:60",
    "2013-07-06T12:00:00+24:00",
    "2013-07-06T12:00:00+05:60",
    "0000-12-31",
    "0001-01-01T00:00:00Z",  # 1 January of year 1 is still year 0 in New York
    "0001-01-01T00:00:00+00:01",
    "9999-12-31T23:59:59-00:01",
    "0001-01-01T00:00:00 Asia/Tokyo",  # an instant in year 0
    "2013-07-06 17:18:00 utc",
    "2013-07-06 17:18:00UTC",
    "2013-07-06 17:18:00EST",
    "2013-07-06 17:18:00  EST",
    "2013-07-06 EST",
    "2013-07-06 17:18:00 Nowhere/City",
    "2013-07-06 17:18:00 localtime",
    "2013-07-06 17:18:00 +05:00",
    "2013-07-06 17:18:00+5:00",
    "2013-07-06 17:18:00+05:0",
    "2013-07-06 17:18:00.",
    "2013-07-06 17:18:00Z ",
    " 2013-07-06",
    "2013-07-06T",
    "2013-07-06 17",
    "2013-07-06 17:1",
    "2013-7-6",
    "13-07-06",
    "20130706",
    "2013/07/06",
    "01/02/2010",
    "Jan 2013",
    "March",
    "July 8 2013",
    "2013-07-06 17:18:00 UTC+1",
    "２０１３-07-06",
    "",
    "+05:00",
]
SAMPLES = ACCEPTED + REFUSED


def _expected(text, utc_label=WALL_CLOCK):
    try:
        return np.datetime64(parse_datetime(text, utc_label), "s")
    except ValueError:
        return np.datetime64("NaT")


def _mismatches(texts, column, utc_label):
    expected = np.array([_expected(text, utc_label) for text in texts], dtype="datetime64[s]")
    return [(text, got, want) for text, got, want in zip(texts, column, expected) if not (got == want or np.isnat(got) and np.isnat(want))]


@pytest.mark.parametrize("utc_label", UTC_LABELS)
def test_scalar_and_column_paths_read_the_same_grammar(utc_label):
    """Both paths read every sample (in two chunks, with a null), accept the same ones, with the same value."""
    column = parse_datetime_column(pa.chunked_array([SAMPLES[:25], SAMPLES[25:] + [None]]), utc_label)
    assert _mismatches(SAMPLES, column, utc_label) == []
    assert np.isnat(column).tolist() == [False] * len(ACCEPTED) + [True] * (len(REFUSED) + 1)


# Years of New York's eras: local mean time, the 1883 railway time, war time, the 1966, 1974, 1987 and 2007
# rules, and far beyond the zone database's last listed change (2037), where its rule string applies.
_YEARS = (1800, 1883, 1918, 1942, 1945, 1966, 1974, 1975, 1987, 2006, 2007, 2011, 2013, 2037, 2038, 2100, 2200)


def _random_texts(count: int) -> list[str]:
    """Times of those years with every kind of suffix, and every 7 minutes of days when clocks changed."""
    rng = random.Random(0)
    suffixes = ["", " UTC", "Z", "-04:00", "+05:30", "-0500", " America/New_York", " EST", " Europe/London",
                " Australia/Lord_Howe", " Pacific/Apia", " Etc/GMT-14", " US/Eastern"]
    texts = []
    for _ in range(count):
        moment = dt.datetime(rng.choice(_YEARS), 1, 1) + dt.timedelta(seconds=rng.randrange(365 * 86400))
        texts.append(f"{moment:%Y-%m-%d %H:%M:%S}{rng.choice(suffixes)}")
    for day in ["2013-03-10", "2013-11-03", "1990-04-01", "1990-10-28", "2013-03-31", "2013-10-27", "2011-12-29", "2011-12-30"]:
        texts += [f"{day} {minute // 60:02d}:{minute % 60:02d}:00{rng.choice(suffixes)}" for minute in range(0, 1440, 7)]
    return texts


@pytest.mark.parametrize("utc_label", UTC_LABELS)
def test_the_column_converts_as_zoneinfo_does_across_centuries_and_clock_changes(utc_label):
    """Instants and named zones, converted by the column's offset tables, land where Python's zoneinfo puts
    them: in every era of New York's clocks, and in zones with 30-minute changes (Lord Howe) and a skipped
    day (Apia, 30 December 2011)."""
    texts = _random_texts(4000)
    column = parse_datetime_column(pa.array(texts), utc_label)
    assert _mismatches(texts, column, utc_label) == []
    assert not np.isnat(column).any()


def test_a_column_of_one_width_reads_as_a_mixed_one():
    """A column whose values all have one length is read through views of its bytes, not by gathering:
    each sample's length class, as a column of its own (and sliced, as a chunk of a larger one), reads
    as the scalar path does."""
    by_length: dict[int, list[str]] = {}
    for text in SAMPLES:
        by_length.setdefault(len(text.encode()), []).append(text)
    for texts in by_length.values():
        for column in (pa.array(texts * 3), pa.array(["x", *texts * 3])[1:]):
            expected = np.array([_expected(text) for text in texts * 3], dtype="datetime64[s]")
            assert parse_datetime_column(column).astype(str).tolist() == expected.astype(str).tolist(), texts


USUAL_FORM = [  # `YYYY-MM-DD HH:MM:SS UTC`, the public data's form, with the refusals that it can hold
    "2013-07-06 17:18:00 UTC", "2013-07-06T17:18:00 UTC", "2012-02-29 10:00:00 UTC", "2013-03-10 02:30:00 UTC",
    "0001-01-01 00:00:00 UTC", "9999-12-31 23:59:59 UTC", "2013-02-29 10:00:00 UTC", "1900-02-29 00:00:00 UTC",
    "2013-04-31 00:00:00 UTC", "2013-13-01 00:00:00 UTC", "2013-00-10 00:00:00 UTC", "2013-07-00 00:00:00 UTC",
    "2013-07-06 24:00:00 UTC", "2013-07-06 17:60:00 UTC", "2013-07-06 17:18:60 UTC", "0000-12-31 00:00:00 UTC",
]
# A byte off the usual form each (`:` reads as the digit 10): a column that holds one is read by the pattern.
NEAR_USUAL_FORM = ["2013-07-06 17:18:00 UTX", "201:-07-06 17:18:00 UTC", "2013-07-06 17:18:0: UTC", "2013/07/06 17:18:00 UTC",
                   "2013-07-06 17.18:00 UTC", "2013-07-06_17:18:00 UTC", "2013-07-06 17:18:00+UTC", "2013-07-06 17:18:001 UTC",
                   "2013-07-06 17:18:00.000", "2013-07-06T17:18:00+0530"]


@pytest.mark.parametrize("utc_label", UTC_LABELS)
def test_a_column_in_the_usual_form_reads_as_the_scalar_path_does(utc_label):
    """A column all in the usual form skips the pattern (its bytes show that each value matches it, with no
    offset): its values, real dates or not, are read as the scalar path reads them, in both clocks, and so
    are those of a column where one value breaks the form by one byte."""
    texts = USUAL_FORM + [f"{text[:19]} UTC" for text in _random_texts(500)]
    naive = [text[:19] for text in texts]  # the TLC files' form
    for column in (texts, naive, *([*form[:7], odd, *form[7:]] for form in (texts, naive) for odd in NEAR_USUAL_FORM)):
        values = parse_datetime_column(pa.array(column), utc_label)
        assert _mismatches(column, values, utc_label) == [], column[7]
    with_null = parse_datetime_column(pa.array([*texts, None]), utc_label)
    assert _mismatches(texts, with_null[:-1], utc_label) == [] and np.isnat(with_null[-1])
    sliced = pa.array(["x", *texts])[1:]  # a chunk of a larger column
    assert _mismatches(texts, parse_datetime_column(sliced, utc_label), utc_label) == []


@pytest.mark.parametrize(
    "text, wall_clock, instant",
    [
        ("2013-07-06 17:18:00.000", dt.datetime(2013, 7, 6, 17, 18), None),
        ("2013-07-06 17:18:00 UTC", dt.datetime(2013, 7, 6, 17, 18), dt.datetime(2013, 7, 6, 13, 18)),
        ("2013-07-06 17:18:00.999 UTC", dt.datetime(2013, 7, 6, 17, 18), dt.datetime(2013, 7, 6, 13, 18)),
        ("2013-07-06T17:18:00-04:00", dt.datetime(2013, 7, 6, 17, 18), None),
        ("2013-07-06T21:18:00Z", dt.datetime(2013, 7, 6, 17, 18), None),
        ("2013-01-06T22:18:00Z", dt.datetime(2013, 1, 6, 17, 18), None),  # -05:00 in winter
        ("2013-07-06T12:00:00+0530", dt.datetime(2013, 7, 6, 2, 30), None),
        ("2013-07-06 16:18:00 America/Chicago", dt.datetime(2013, 7, 6, 17, 18), None),
        ("2013-07-06", dt.datetime(2013, 7, 6), None),
        # Clocks forward at 2:00 EST (07:00 UTC) on 10 March 2013, back at 2:00 EDT (06:00 UTC) on 3 November.
        ("2013-03-10T06:59:59Z", dt.datetime(2013, 3, 10, 1, 59, 59), None),
        ("2013-03-10T07:00:00Z", dt.datetime(2013, 3, 10, 3), None),
        ("2013-11-03T05:30:00Z", dt.datetime(2013, 11, 3, 1, 30), None),
        ("2013-11-03T06:30:00Z", dt.datetime(2013, 11, 3, 1, 30), None),
        ("2013-11-03T07:00:00Z", dt.datetime(2013, 11, 3, 2), None),
        # A wall-clock time is kept as written, even one the clocks skipped or showed twice ...
        ("2013-03-10 02:30:00", dt.datetime(2013, 3, 10, 2, 30), None),
        ("2013-03-10 02:30:00 UTC", dt.datetime(2013, 3, 10, 2, 30), dt.datetime(2013, 3, 9, 21, 30)),
        ("2013-11-03 01:30:00 America/New_York", dt.datetime(2013, 11, 3, 1, 30), None),
        # ... but another zone's name is converted as zoneinfo reads it (fold=0: the offset before the change).
        ("2013-03-10 02:30:00 US/Eastern", dt.datetime(2013, 3, 10, 3, 30), None),
    ],
)
def test_values_are_new_york_wall_clock_times(text, wall_clock, instant):
    """`instant`: the value when " UTC" marks an instant (UTC_LABEL=instant), where it differs."""
    assert parse_datetime(text) == wall_clock
    assert parse_datetime(text, INSTANT) == (instant or wall_clock)
    for utc_label, expected in ((WALL_CLOCK, wall_clock), (INSTANT, instant or wall_clock)):
        assert parse_datetime_column(pa.array([text]), utc_label).tolist() == [expected]


@pytest.mark.parametrize(
    "text, message",
    [
        ("2013-07-06 17:18:00 Nowhere/City", "names the time zone Nowhere/City, which the time zone database does not know"),
        ("2013-07-06T17:18:00 localtime", "time zone localtime"),
        ("01/02/2010", "expected YYYY-MM-DD or YYYY-MM-DD HH:MM:SS"),
        ("Jan 2013", "expected YYYY-MM-DD"),
        ("March", "expected YYYY-MM-DD"),
        ("2013-02-30", "is not a real date and time (day is out of range for month)"),
        ("2013-07-06T12:00:00+24:00", "offset out of range"),
        ("0001-01-01T00:00:00Z", "is not a real date and time (its New York time is out of range)"),
    ],
)
def test_refusals_say_what_is_expected(text, message):
    with pytest.raises(ValueError) as caught:
        parse_datetime(text)
    assert message in str(caught.value)


def test_a_window_date_is_asked_of_a_source_as_the_source_writes_it():
    """BigQuery's TIMESTAMP parameters: the wall-clock figures as they are, or the instant they name."""
    summer, winter = dt.datetime(2013, 7, 6, 17, 18), dt.datetime(2013, 1, 6, 17, 18)
    assert source_timestamp(summer, WALL_CLOCK) == dt.datetime(2013, 7, 6, 17, 18, tzinfo=UTC)
    assert source_timestamp(summer, INSTANT) == dt.datetime(2013, 7, 6, 21, 18, tzinfo=UTC)
    assert source_timestamp(winter, INSTANT) == dt.datetime(2013, 1, 6, 22, 18, tzinfo=UTC)


def test_column_path_reads_no_byte_of_the_next_value():
    values = parse_datetime_column(pa.array(["2013-07-06 17:18", ":30:00 next value", "2013-07-06", "T17:18:00"]))
    assert values.tolist()[::2] == [dt.datetime(2013, 7, 6, 17, 18), dt.datetime(2013, 7, 6)]
