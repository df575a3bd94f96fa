"""Typed columns (a BigQuery page, a Parquet file) as the raw text a CSV reader returns for the same
rides, so that cleaning reads one representation whatever the origin, and a Parquet copy of a CSV gives
the same processed rows."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

LABELLED_UTC = "%Y-%m-%d %H:%M:%S UTC"  # BigQuery's TIMESTAMP text: read by the UTC_LABEL setting
_WALL_CLOCK = "%Y-%m-%d %H:%M:%S"
_INSTANT = "%Y-%m-%dT%H:%M:%SZ"


def raw_text(values: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Datetimes to the second: naive ones as wall-clock text, UTC ones labelled ` UTC` (as BigQuery writes
    them), those of another zone as their instant with `Z`; floats in their shortest round-trip form;
    whole numbers as such; nulls (and NaN) stay null."""
    if pa.types.is_timestamp(values.type):
        zone = values.type.tz
        unit = pa.timestamp("s", tz=None if zone is None else "UTC")
        # strftime's %S would print the fraction of a second of a finer unit.
        seconds = pc.cast(pc.floor_temporal(values, unit="second"), unit)
        return pc.strftime(seconds, format=_WALL_CLOCK if zone is None else LABELLED_UTC if zone.upper() in ("UTC", "Z", "+00:00") else _INSTANT)
    if pa.types.is_floating(values.type):
        # -0.0 + 0.0 is 0.0: BigQuery orders the two zeros as equal, so their text must not tell them apart.
        values = pc.add(values, pa.scalar(0.0, values.type))
    return pc.cast(values, pa.string())
