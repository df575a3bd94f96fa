"""Bring-your-own files: headerless and `;`/tab exports named with --columns and --delimiter, and files
given to the wrong command (a processed file to preprocess, a raw one to train), each refused in words."""

from __future__ import annotations

import csv
import io

import pytest

from taxifare.core.config import load_settings
from taxifare.core.errors import InputError
from taxifare.preprocessing.run import preprocess
from taxifare.rides.layout import RAW_COLUMNS, CsvFormat
from taxifare.sources.identity import OutputConflict
from taxifare.training.loop import train
from tests.conftest import RAW_HEADER, REFERENCE_ROW, assert_clean_error, run_cli, write_csv

ROWS = [
    REFERENCE_ROW,
    "k1,16.9,2010-01-05 16:52:16 UTC,-74.016048,40.711303,-73.979268,40.782004,1",
    "k2,5.7,2011-08-18 00:35:00 UTC,-73.982738,40.76127,-73.991242,40.750562,2",
    "k3,7.7,2012-04-21 04:30:42 UTC,-73.98713,40.733143,-73.991567,40.758092,1",
    'k4,"5,3",2012-04-21 04:30:42 UTC,-73.98713,40.733143,-73.991567,40.758092,1',  # a quoted comma
    "k5,7.5,2013-07-06 17:18:00 UTC,-73.95,40.78",  # malformed
]
COLUMNS = RAW_HEADER.split(",")


def settings_for(tmp_path, **flags):
    return load_settings({"local_data_path": str(tmp_path / "data"), "chunk_size": 2, **flags}, environ={}, dotenv_path=None)


def export(path, rows: list[str], delimiter: str, columns: list[str] | None = None):
    """The rows (commas, header RAW_HEADER) rewritten with `delimiter`, with no header, their columns in
    the order `columns` gives."""
    columns = columns or COLUMNS
    text = io.StringIO()
    writer = csv.writer(text, delimiter=delimiter, lineterminator="\n")
    for row in csv.reader(rows):
        if len(row) == len(COLUMNS):
            row = [row[COLUMNS.index(name)] for name in columns]
        writer.writerow(row)
    path.write_text(text.getvalue())
    return path


@pytest.mark.parametrize("delimiter, flag", [(";", ";"), ("\t", "tab"), ("\t", "\\t"), (",", ",")])
def test_a_headerless_export_preprocesses_like_the_file_with_a_header(tmp_path, delimiter, flag):
    with_header = preprocess(settings_for(tmp_path, data_size="header"), input_path=write_csv(tmp_path / "rides.csv", ROWS))
    order = [*COLUMNS[1:], "key"]  # the Google Cloud samples put the key last
    raw = export(tmp_path / "rides.txt", ROWS, delimiter, order)
    csv_format = CsvFormat.from_flags(",".join(order), flag)
    result = preprocess(settings_for(tmp_path, data_size="headerless"), input_path=raw, csv_format=csv_format)
    assert result.output.read_bytes() == with_header.output.read_bytes()
    assert result.manifest["rows_kept"] == 4 and result.manifest["rejected"]["malformed_line"] == 1
    assert result.manifest["csv_format"] == {"columns": order, "delimiter": delimiter}


def test_another_layout_of_the_same_input_is_not_reused(tmp_path):
    raw = export(tmp_path / "rides.txt", ROWS, ";")
    settings = settings_for(tmp_path)
    first = preprocess(settings, input_path=raw, csv_format=CsvFormat.from_flags(",".join(COLUMNS), ";"))
    swapped = [COLUMNS[0], COLUMNS[1], COLUMNS[2], COLUMNS[4], COLUMNS[3], *COLUMNS[5:]]  # longitude <-> latitude
    with pytest.raises(OutputConflict, match="was made with csv_format .*'pickup_longitude', 'pickup_latitude'.*--force"):
        preprocess(settings, input_path=raw, csv_format=CsvFormat.from_flags(",".join(swapped), ";"))
    with pytest.raises(InputError, match=f"kept none of the {len(ROWS)} rows it read: outside_nyc 4 \\(first on line 1: pickup_longitude=40.783282\\)"):
        preprocess(settings, input_path=raw, csv_format=CsvFormat.from_flags(",".join(swapped), ";"), force=True)
    assert first.manifest["rows_kept"] > 0


@pytest.mark.parametrize(
    "lines, columns, delimiter, fragments",
    [
        ([RAW_HEADER.replace(",", ";"), REFERENCE_ROW.replace(",", ";")], None, None,
         ["missing column(s) fare_amount", "if its fields are separated by ';', pass --delimiter ';'"]),
        ([RAW_HEADER.replace(",", "\t"), REFERENCE_ROW.replace(",", "\t")], None, None, ["pass --delimiter tab"]),
        ([REFERENCE_ROW], None, None,
         ["missing column(s) fare_amount", "the header has k0, 7.5,", "looks like data", "name its columns with --columns"]),
        ([REFERENCE_ROW], "key,fare,pickup_datetime,pickup_longitude,pickup_latitude,dropoff_longitude,dropoff_latitude,passenger_count",
         None, ["--columns lacks fare_amount; it names key, fare, pickup_datetime"]),
        ([REFERENCE_ROW], ",".join(COLUMNS[1:]), None, ["--columns names 7 columns but the first line of", "has 8 fields: k0,7.5,"]),
        ([RAW_HEADER, REFERENCE_ROW], RAW_HEADER, None, ["the first line is a header (key, fare_amount,", "drop --columns"]),
    ],
    ids=["semicolons", "tabs", "no-header", "misnamed-column", "one-column-short", "header-and-columns"],
)
def test_wrong_layouts_say_what_is_missing_and_what_was_found(tmp_path, lines, columns, delimiter, fragments):
    path = tmp_path / "rides.csv"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError) as error:
        preprocess(settings_for(tmp_path), input_path=path, csv_format=CsvFormat.from_flags(columns, delimiter))
    for fragment in fragments:
        assert fragment in str(error.value)


@pytest.mark.parametrize(
    "columns, delimiter, fragment",
    [
        ("fare_amount,,pickup_datetime", None, "--columns: expected column names separated by commas"),
        ("fare_amount,fare_amount", None, "--columns: column named more than once: fare_amount"),
        (None, "::", "--delimiter: expected one character (e.g. ';'), or tab; received '::'"),
        (None, '"', "--delimiter: expected one character"),
    ],
)
def test_bad_flag_values(columns, delimiter, fragment):
    with pytest.raises(InputError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        CsvFormat.from_flags(columns, delimiter)


def test_cli_columns_without_input_is_a_clear_error(tmp_path):
    result = run_cli(tmp_path, "preprocess", "--columns", ",".join(RAW_COLUMNS))
    assert_clean_error(result, 2, "--columns and --delimiter describe an --input file")


def test_a_processed_file_given_to_preprocess_is_named_for_what_it_is(tmp_path):
    processed = preprocess(settings_for(tmp_path), input_path=write_csv(tmp_path / "rides.csv", ROWS)).output
    with pytest.raises(InputError, match="looks like a processed file .its columns are the model's features.; expected raw rides with columns fare_amount"):
        preprocess(settings_for(tmp_path, data_size="again"), input_path=processed)


def test_a_raw_file_given_to_train_is_named_for_what_it_is(tmp_path):
    raw = write_csv(tmp_path / "rides.csv", ROWS)
    with pytest.raises(InputError, match="looks like a raw rides file .* train reads a processed file of features"):
        train(load_settings({"local_registry_path": str(tmp_path / "registry")}, environ={}, dotenv_path=None), input_path=raw)


def test_a_raw_file_in_place_of_the_processed_one(tmp_path):
    settings = settings_for(tmp_path, data_size="demo")  # given: the output is not named after the input
    settings.processed_path.parent.mkdir(parents=True)
    write_csv(settings.processed_path, ROWS)
    with pytest.raises(InputError, match="looks like a raw rides file"):
        train(settings)
    with pytest.raises(InputError, match="is the output of this preprocess; move the raw file elsewhere first"):
        preprocess(settings, input_path=settings.processed_path)
    assert settings.processed_path.read_text().splitlines()[1:] == ROWS
