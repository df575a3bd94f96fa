import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from taxifare.rides.clean import REJECT_RULES, SeenRows, clean_rides
from taxifare.rides.table import Rides, numpy_values
from taxifare.sources.csv_file import CsvRideSource
from tests.conftest import write_csv

WINDOW = (dt.datetime(2009, 1, 1), dt.datetime(2015, 1, 1))
GOOD = "7.5,2013-07-06 17:18:00 UTC,-73.950655,40.783282,-73.984365,40.769802,1"


def clean_lines(tmp_path, lines, window=WINDOW, chunk_size=1000, utc_label="wall-clock"):
    path = write_csv(tmp_path / "rides.csv", [f"k{i},{line}" for i, line in enumerate(lines)])
    source = CsvRideSource(path, chunk_size)
    seen = SeenRows()
    kept, rejects = [], dict.fromkeys(REJECT_RULES, 0)
    for table in source.chunks():
        chunk = clean_rides(table, *window, seen, utc_label)
        kept.append(chunk.rides)
        for rule, count in chunk.rejects.counts.items():
            rejects[rule] += count
    rejects["malformed_line"] += source.malformed_rows
    return kept, rejects


def only(rejects):
    return {rule: count for rule, count in rejects.items() if count}


@pytest.mark.parametrize(
    "line, rule",
    [
        (",2013-07-06 17:18:00 UTC,-73.95,40.78,-73.98,40.76,1", "missing_value"),
        ("NaN,2013-07-06 17:18:00 UTC,-73.95,40.78,-73.98,40.76,1", "missing_value"),
        ("7.5,2013-07-06 17:18:00 UTC,-73.95,40.78,-73.98,40.76,", "missing_value"),
        ("seven,2013-07-06 17:18:00 UTC,-73.95,40.78,-73.98,40.76,1", "unparseable_number"),
        ("inf,2013-07-06 17:18:00 UTC,-73.95,40.78,-73.98,40.76,1", "unparseable_number"),
        ("7.5,2013-07-06 17:18:00 UTC,-73.95,40.78,-73.98,40.76,one", "unparseable_number"),
        ("7.5,2013-13-45 17:18:00 UTC,-73.95,40.78,-73.98,40.76,1", "bad_datetime"),
        ("7.5,not a date,-73.95,40.78,-73.98,40.76,1", "bad_datetime"),
        ("7.5,2013-07-06 17:18:00 Nowhere/City,-73.95,40.78,-73.98,40.76,1", "bad_datetime"),
        ("7.5,2013-07-06 17:18:00 utc,-73.95,40.78,-73.98,40.76,1", "bad_datetime"),
        ("7.5,07/06/2013 17:18,-73.95,40.78,-73.98,40.76,1", "bad_datetime"),
        ("7.5,2013-02-29 17:18:00 UTC,-73.95,40.78,-73.98,40.76,1", "bad_datetime"),
        ("7.5,2008-12-31 23:59:59 UTC,-73.95,40.78,-73.98,40.76,1", "outside_date_window"),
        ("7.5,2015-01-01 00:00:00 UTC,-73.95,40.78,-73.98,40.76,1", "outside_date_window"),
        ("7.5,1969-07-20 20:17:00 UTC,-73.95,40.78,-73.98,40.76,1", "outside_date_window"),
        ("7.5,2101-01-01 00:00:00 UTC,-73.95,40.78,-73.98,40.76,1", "outside_date_window"),
        ("7.5,2013-07-06 17:18:00 UTC,0,0,0,0,1", "zero_coordinates"),
        ("7.5,2013-07-06 17:18:00 UTC,-73.95,40.78,-73.98,40.76,0", "passenger_count_out_of_range"),
        ("7.5,2013-07-06 17:18:00 UTC,-73.95,40.78,-73.98,40.76,8", "passenger_count_out_of_range"),
        ("7.5,2013-07-06 17:18:00 UTC,-73.95,40.78,-73.98,40.76,1.5", "passenger_count_out_of_range"),
        ("0,2013-07-06 17:18:00 UTC,-73.95,40.78,-73.98,40.76,1", "fare_out_of_range"),
        ("-5,2013-07-06 17:18:00 UTC,-73.95,40.78,-73.98,40.76,1", "fare_out_of_range"),
        ("400,2013-07-06 17:18:00 UTC,-73.95,40.78,-73.98,40.76,1", "fare_out_of_range"),
        ("1e308,2013-07-06 17:18:00 UTC,-73.95,40.78,-73.98,40.76,1", "fare_out_of_range"),
        ("7.5,2013-07-06 17:18:00 UTC,-73.95,40.95,-73.98,40.76,1", "outside_nyc"),
        ("7.5,2013-07-06 17:18:00 UTC,-73.95,40.78,-73.98,40.49,1", "outside_nyc"),
        ("7.5,2013-07-06 17:18:00 UTC,-74.31,40.78,-73.98,40.76,1", "outside_nyc"),
        ("7.5,2013-07-06 17:18:00 UTC,-73.95,40.78,-73.69,40.76,1", "outside_nyc"),
        ("7.5,2013-07-06 17:18:00 UTC,-73.95,40.78,0,0,1", "outside_nyc"),
    ],
)
def test_each_rule_rejects_and_counts(tmp_path, line, rule):
    kept, rejects = clean_lines(tmp_path, [GOOD, line])
    assert only(rejects) == {rule: 1}
    assert sum(len(frame) for frame in kept) == 1


def test_rows_at_the_edges_of_the_ranges_are_kept(tmp_path):
    lines = [
        "399.99,2009-01-01 00:00:00 UTC,-74.3,40.5,-73.7,40.9,7",
        "0.01,2014-12-31 23:59:59 UTC,-73.7,40.9,-74.3,40.5,1",
        "5,2013-07-06 17:18:00 UTC,-73.95,40.78,-73.98,40.76,1",
    ]
    kept, rejects = clean_lines(tmp_path, lines)
    assert only(rejects) == {}
    assert sum(len(frame) for frame in kept) == 3


def test_every_form_is_read_on_the_new_york_wall_clock(tmp_path):
    """Plain and " UTC" times as written; Z, offsets and named zones converted (17:18 EDT is 21:18 UTC)."""
    forms = [
        "2013-07-06 17:18:00.000", "2013-07-06 17:18:00 UTC", "2013-07-06T21:18:00.5Z", "2013-07-06T17:18:00-04:00",
        "2013-07-07 06:48+0930", "2013-07-06 17:18:00 America/New_York", "2013-07-06 16:18:00 America/Chicago",
        "2013-07-06 16:18:00 EST",  # the zone database's EST is -05:00 all year
    ]
    kept, rejects = clean_lines(tmp_path, [f"{i + 5},{form},-73.95,40.78,-73.98,40.76,1" for i, form in enumerate(forms)])
    assert only(rejects) == {}
    assert kept[0]["pickup_datetime"].tolist() == [pd.Timestamp("2013-07-06 17:18:00")] * len(forms)


@pytest.mark.parametrize(
    "utc_label, inside, outside",
    [
        ("wall-clock", ["2013-07-06 17:18:00 UTC", "2013-07-06T21:18:00Z"], ["2013-07-06 17:17:59 UTC", "2013-07-06T21:17:59Z"]),
        ("instant", ["2013-07-06 21:18:00 UTC", "2013-07-06 17:18:00"], ["2013-07-06 17:18:00 UTC", "2013-07-06 17:17:59"]),
    ],
)
def test_the_window_is_on_the_new_york_wall_clock_and_utc_label_says_what_utc_means(tmp_path, utc_label, inside, outside):
    window = (dt.datetime(2013, 7, 6, 17, 18), dt.datetime(2013, 7, 7))
    lines = [f"{i + 5},{text},-73.95,40.78,-73.98,40.76,1" for i, text in enumerate(inside + outside)]
    kept, rejects = clean_lines(tmp_path, lines, window=window, utc_label=utc_label)
    assert only(rejects) == {"outside_date_window": len(outside)}
    assert kept[0]["fare_amount"].tolist() == [5, 6]


def test_duplicates_are_removed_across_chunks_and_keep_the_first(tmp_path):
    other = GOOD.replace("7.5", "9.0")
    kept, rejects = clean_lines(tmp_path, [GOOD, other, GOOD, other, GOOD], chunk_size=2)
    assert rejects["duplicate"] == 3
    fares = np.concatenate([frame["fare_amount"] for frame in kept])
    assert fares.tolist() == [7.5, 9.0]


def test_a_row_counts_once_under_its_first_rule(tmp_path):
    # Zero coordinates, no passengers and a negative fare: only the first rule in order counts it.
    kept, rejects = clean_lines(tmp_path, ["-3,2013-07-06 17:18:00 UTC,0,0,0,0,0"])
    assert only(rejects) == {"zero_coordinates": 1}


def test_malformed_lines_are_skipped_and_counted(tmp_path):
    kept, rejects = clean_lines(tmp_path, [GOOD, "7.5,2013-07-06 17:18:00 UTC,-73.95", GOOD.replace("7.5", "8")])
    assert only(rejects) == {"malformed_line": 1}


def test_seen_rows_memory_is_eight_bytes_per_distinct_row():
    seen = SeenRows()
    hashes = np.arange(1000, dtype=np.uint64) * np.uint64(2654435761)
    assert seen.first_occurrences(hashes).all()
    assert not seen.first_occurrences(hashes[::-1]).any()
    assert len(seen) == 1000 and seen.nbytes == 8000
    fresh = seen.first_occurrences(np.array([5, 5, 7, 0], dtype=np.uint64))
    assert fresh.tolist() == [True, False, True, False]


@pytest.mark.parametrize("values", [[1.5, -0.0, 3e300, np.nan, 7.0], [True, False, True, True, False, False, True, False, True, True]])
def test_numpy_values_reads_arrow_buffers_at_any_offset(values):
    """Arrow columns (chunked, sliced at every offset, of booleans whose bits start mid-byte) read as
    pyarrow's own to_numpy reads them."""
    whole = pa.chunked_array([pa.array(values[:2]), pa.array(values[2:])])
    for start in range(len(values)):
        for column in (whole.slice(start), whole.slice(start).combine_chunks(), whole.slice(start, 0)):
            got, expected = numpy_values(column), np.asarray(column)
            np.testing.assert_array_equal(got, expected)
            assert got.dtype == expected.dtype


def test_numpy_values_gives_nulls_the_value_asked_for():
    column = pa.chunked_array([pa.array([9.0, 1.0, None]), pa.array([None, 4.0])]).slice(1)
    np.testing.assert_array_equal(numpy_values(column, null=np.nan), [1.0, np.nan, np.nan, 4.0])
    assert numpy_values(pa.array([True, None, False]).slice(1), null=True).tolist() == [True, False]
    with pytest.raises(ValueError, match="nulls"):
        numpy_values(column)


def test_rides_keep_the_rows_they_were_parsed_from():
    rides = Rides.numbered({"fare_amount": np.array([5.0, 6.0, 7.0, 8.0])}).take(np.array([False, True, False, True]))
    assert rides.rows.tolist() == [1, 3] and rides.at_row(3) == {"fare_amount": 8.0}
    assert rides.renumbered().rows.tolist() == [0, 1] and len(rides) == 2
