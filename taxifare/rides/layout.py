"""How a raw CSV file is laid out: where its column names come from (its first line, or `--columns` for
a file without a header) and the character between its fields (`--delimiter`).

The names are checked before any row is read, so that a wrong file is refused in one line that says what
is missing and what was found, and calls a processed file, a headerless file or a delimiter mix-up by
its name.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Sequence

from taxifare.core.errors import InputError
from taxifare.rides.features import FEATURE_NAMES

# The columns every source yields, as text, whatever its layout.
RAW_COLUMNS = (
    "fare_amount",
    "pickup_datetime",
    "pickup_longitude",
    "pickup_latitude",
    "dropoff_longitude",
    "dropoff_latitude",
    "passenger_count",
)
SAMPLE_CHARS = 80  # of a rejected value or line, quoted in the manifest and the summary

# The public files' own names for the raw columns (TLC yellow-taxi trip records), by era; the 2010-2014
# files use taxifare's names (some put a space after each comma of the header: names are stripped).
_TLC_2009 = {
    "Trip_Pickup_DateTime": "pickup_datetime", "Start_Lon": "pickup_longitude", "Start_Lat": "pickup_latitude",
    "End_Lon": "dropoff_longitude", "End_Lat": "dropoff_latitude", "Passenger_Count": "passenger_count", "Fare_Amt": "fare_amount",
}
_TLC_2015 = {"tpep_pickup_datetime": "pickup_datetime"}
_RENAMED = {**_TLC_2009, **_TLC_2015}
_TLC_2010_MARKS = ("vendor_id", "rate_code", "dropoff_datetime")
# From July 2016 on, TLC files give taxi zones instead of coordinates.
_ZONE_COLUMNS = ("PULocationID", "DOLocationID")

_TAB_NAMES = ("\\t", "tab", "\t")
_OTHER_DELIMITERS = {";": "';'", "\t": "tab", "|": "'|'"}


@dataclass(frozen=True)
class CsvFormat:
    """`columns`: the names of a headerless file's fields, in order (None: the first line names them)."""

    columns: tuple[str, ...] | None = None
    delimiter: str = ","

    @classmethod
    def from_flags(cls, columns: str | None = None, delimiter: str | None = None) -> "CsvFormat":
        return cls(
            None if columns is None else _column_list(columns),
            "," if delimiter is None else _delimiter(delimiter),
        )

    @property
    def has_header(self) -> bool:
        return self.columns is None

    def describe(self) -> dict | None:
        """What a manifest records of a layout other than a header and commas (None for that one)."""
        if self == CsvFormat():
            return None
        return {"columns": None if self.columns is None else list(self.columns), "delimiter": self.delimiter}

    def column_names(self, first_line: bytes, where: object, required: Sequence[str]) -> list[str]:
        """The file's column names, from its header or `columns`, checked for the `required` ones
        against the file's `first_line`; InputError with the reason. The names of the public files'
        layouts (layout_name) come back as taxifare's."""
        fields = header_fields(first_line, where, self.delimiter)
        if self.columns is None:
            if not fields:
                raise InputError(f"{where}: the file is empty; expected a CSV header with {', '.join(required)}")
            return raw_names(fields, where, required)
        missing = [name for name in required if name not in self.columns]
        if missing:
            raise InputError(f"--columns lacks {', '.join(missing)}; it names {', '.join(self.columns)}")
        if fields and set(required) <= set(fields):
            raise InputError(f"{where}: the first line is a header ({', '.join(fields)[:200]}); drop --columns, which is for a file without one")
        if fields and len(fields) != len(self.columns):
            raise InputError(
                f"--columns names {len(self.columns)} columns but the first line of {where} has {len(fields)} fields: "
                f"{_shown(first_line)}"
            )
        return list(self.columns)


def raw_names(fields: Sequence[str], where: object, required: Sequence[str]) -> list[str]:
    """A file's column names (a CSV header, a Parquet schema) as taxifare's, the public layouts' names
    renamed, checked for the `required` ones; InputError with the reason."""
    names = [_RENAMED.get(name, name) for name in fields]
    _check_header(names, where, required)
    return names


def layout_name(fields: Sequence[str]) -> str:
    """Which of the public layouts a file's column names are, in words."""
    fields = set(fields)
    if fields & set(_TLC_2009):
        return "TLC yellow taxi, 2009"
    if fields & set(_TLC_2015):
        return "TLC yellow taxi, 2015-2016"
    if fields & set(_TLC_2010_MARKS):
        return "TLC yellow taxi, 2010-2014"
    return "taxifare's own names, as in the Kaggle and BigQuery exports"


def header_fields(first_line: bytes, where: object, delimiter: str = ",") -> list[str]:
    """The fields of a CSV's first line, stripped ([] for an empty line); InputError for binary bytes."""
    if not first_line.strip():
        return []
    try:
        text = first_line.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = "\0"
    if any(char < " " and char not in "\t\r\n" for char in text):
        raise InputError(f"{where}: not a text CSV file (the first line holds binary or non-UTF-8 bytes)")
    return [name.strip() for name in next(csv.reader(io.StringIO(text), delimiter=delimiter))]


def looks_processed(names: Sequence[str]) -> bool:
    """Whether most of the names are feature names: a processed file, not raw rides."""
    return sum(name in FEATURE_NAMES for name in names) > len(names) / 2


def _check_header(names: list[str], where: object, required: Sequence[str]) -> None:
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise InputError(f"{where}: column named more than once: {', '.join(repeated)}")
    missing = [name for name in required if name not in names]
    if not missing:
        return
    if set(_ZONE_COLUMNS) <= set(names):
        raise InputError(
            f"{where} gives taxi zones ({', '.join(_ZONE_COLUMNS)}) instead of pickup and dropoff coordinates, as the "
            "TLC trip records do from July 2016 on; taxifare's features need coordinates (TLC files up to June 2016 have them)"
        )
    if looks_processed(names):
        raise InputError(
            f"{where} looks like a processed file (its columns are the model's features); expected raw rides "
            f"with columns {', '.join(required)}; a processed file is for `taxifare train --input`"
        )
    raise InputError(f"{where}: missing column(s) {', '.join(missing)}; the header has {', '.join(names)[:200]}{_hint(names)}")


def _hint(names: list[str]) -> str:
    """Why a header may lack the columns: another delimiter, or no header at all."""
    if len(names) == 1:
        for delimiter, flag in _OTHER_DELIMITERS.items():
            if delimiter in names[0]:
                return f"; if its fields are separated by {flag}, pass --delimiter {flag}"
    if any(_is_number(name) for name in names):
        return "; the first line looks like data: for a file without a header, name its columns with --columns"
    return ""


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _shown(line: bytes) -> str:
    text = line.decode("utf-8", errors="replace").strip()
    return text if len(text) <= 120 else text[:117] + "..."


def _column_list(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(","))
    if not all(names):
        raise InputError(f"--columns: expected column names separated by commas, e.g. key,fare_amount,pickup_datetime,...; received {text!r}")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise InputError(f"--columns: column named more than once: {', '.join(repeated)}")
    return names


def _delimiter(text: str) -> str:
    if text.lower() in _TAB_NAMES:
        return "\t"
    if len(text) != 1 or text in "\"\r\n":
        raise InputError(f"--delimiter: expected one character (e.g. ';'), or tab; received {text!r}")
    return text
