import datetime as dt

import numpy as np
import pyarrow as pa
import pytest

from taxifare.dates import parse_datetime, parse_datetime_column

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
    "0001-01-01T00:00:00+00:01",
    "9999-12-31T23:59:59-00:01",
    "2013-07-06 17:18:00 EST",
    "2013-07-06 17:18:00 America/New_York",
    "2013-07-06 17:18:00 utc",
    "2013-07-06 17:18:00UTC",
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


def _expected(text):
    try:
        value = parse_datetime(text)
    except ValueError:
        return np.datetime64("NaT")
    return np.datetime64(value.replace(tzinfo=None))


def test_scalar_and_column_paths_read_the_same_grammar():
    """Both paths read every sample (in two chunks, with a null), accept the same ones, with the same value."""
    column = parse_datetime_column(pa.chunked_array([SAMPLES[:25], SAMPLES[25:] + [None]]))
    expected = np.array([_expected(text) for text in SAMPLES], dtype="datetime64[s]")
    mismatches = [
        (text, got, want)
        for text, got, want in zip(SAMPLES, column, expected)
        if not (got == want or np.isnat(got) and np.isnat(want))
    ]
    assert mismatches == []
    assert np.isnat(column).tolist() == [False] * len(ACCEPTED) + [True] * (len(REFUSED) + 1)


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


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2013-07-06 17:18:00.000", dt.datetime(2013, 7, 6, 17, 18, tzinfo=UTC)),
        ("2013-07-06T12:00:00-04:00", dt.datetime(2013, 7, 6, 16, tzinfo=UTC)),
        ("2013-07-06T12:00:00+0530", dt.datetime(2013, 7, 6, 6, 30, tzinfo=UTC)),
        ("2013-07-06 17:18:00.999 UTC", dt.datetime(2013, 7, 6, 17, 18, 0, tzinfo=UTC)),
        ("2013-07-06", dt.datetime(2013, 7, 6, tzinfo=UTC)),
    ],
)
def test_values_are_utc(text, expected):
    assert parse_datetime(text) == expected


@pytest.mark.parametrize(
    "text, message",
    [
        ("2013-07-06 17:18:00 EST", "names the time zone EST; named zones are not accepted"),
        ("2013-07-06T17:18:00 America/New_York", "time zone America/New_York"),
        ("01/02/2010", "expected YYYY-MM-DD or YYYY-MM-DD HH:MM:SS"),
        ("Jan 2013", "expected YYYY-MM-DD"),
        ("March", "expected YYYY-MM-DD"),
        ("2013-02-30", "is not a real date and time (day is out of range for month)"),
        ("2013-07-06T12:00:00+24:00", "offset out of range"),
    ],
)
def test_refusals_say_what_is_expected(text, message):
    with pytest.raises(ValueError) as caught:
        parse_datetime(text)
    assert message in str(caught.value)


def test_column_path_reads_no_byte_of_the_next_value():
    values = parse_datetime_column(pa.array(["2013-07-06 17:18", ":30:00 next value", "2013-07-06", "T17:18:00"]))
    assert values.tolist()[::2] == [dt.datetime(2013, 7, 6, 17, 18), dt.datetime(2013, 7, 6)]
