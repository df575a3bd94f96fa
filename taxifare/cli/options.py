"""The options that several commands share, and the settings they make (flags > environment > .env > defaults)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from taxifare.core.config import Settings, load_settings

MinDate = Annotated[
    Optional[str],
    typer.Option(
        help="First pickup kept (inclusive), on the New York wall clock like every time: 2009-01-01 or 2009-01-01 06:00 "
        "(also with \" UTC\", see --utc-label); with Z, an offset (-05:00) or a zone (America/Chicago), converted. "
        "[env: MIN_DATE; default 2009-01-01]"
    ),
]
MaxDate = Annotated[Optional[str], typer.Option(help="Pickups kept are before this (same forms as --min-date). [env: MAX_DATE; default 2015-01-01]")]
UtcLabel = Annotated[
    Optional[str],
    typer.Option(
        help="What \" UTC\" after a pickup time means: wall-clock, the New York wall clock (the public NYC data's "
        "BigQuery label), or instant, a real UTC instant (converted to New York time). Times without a label are "
        "New York time, Z and offsets are instants, either way. [env: UTC_LABEL; default wall-clock]"
    ),
]
_DATA_SIZE_HELP = "Data set name (letters, digits, _): BigQuery table raw_{DATA_SIZE} and local file names. [env: DATA_SIZE; default demo"
DataSize = Annotated[Optional[str], typer.Option(help=_DATA_SIZE_HELP + "]")]
ProcessedDataSize = Annotated[Optional[str], typer.Option(help=_DATA_SIZE_HELP + ", or with --input the input file's name]")]
ChunkSize = Annotated[Optional[int], typer.Option(help="Rows per chunk. [env: CHUNK_SIZE; default 100000]")]
GcpProject = Annotated[
    Optional[str], typer.Option(help="Project that runs and pays for BigQuery jobs. [env: GCP_PROJECT]")
]
GcpProjectData = Annotated[
    Optional[str],
    typer.Option(help="Project holding the raw data. [env: GCP_PROJECT_DATA; default wagon-public-datasets]"),
]
BqDataset = Annotated[
    Optional[str], typer.Option(help="BigQuery dataset of the raw tables. [env: BQ_DATASET; default taxifare]")
]
BqDeadline = Annotated[
    Optional[float], typer.Option(help="Seconds to wait for BigQuery: its retries, and the query job. [env: BQ_DEADLINE; default 120]")
]
BigqueryEmulatorHost = Annotated[
    Optional[str],
    typer.Option(help="Send BigQuery requests to this endpoint (an emulator, a test server), with anonymous credentials. [env: BIGQUERY_EMULATOR_HOST]"),
]
Debug = Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")]
LocalDataPath = Annotated[
    Optional[str], typer.Option(help="Raw caches and processed files. [env: LOCAL_DATA_PATH; default ~/.taxifare/data]")
]
LocalRegistryPath = Annotated[
    Optional[str], typer.Option(help="Trained runs. [env: LOCAL_REGISTRY_PATH; default ~/.taxifare/registry]")
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Log only warnings and errors (no progress, no summaries).")]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Log debug lines too, and TensorFlow's own log lines.")]


Columns = Annotated[
    Optional[str],
    typer.Option(
        "--columns",
        help="The --input file has no header: its column names, in order, separated by commas, "
        "e.g. fare_amount,pickup_datetime,...,passenger_count,key (the raw columns; others are kept or ignored).",
    ),
]
Delimiter = Annotated[
    Optional[str],
    typer.Option("--delimiter", help="The character between the fields of the --input file, e.g. ';', or tab (also \\t). [default ,]"),
]
_REFERENCES = "latest (the newest run of any data set), best (lowest validation MAE among the runs comparable with latest), NAME:latest or NAME:best (among data set NAME's runs)"
ModelSpec = Annotated[
    Optional[str],
    typer.Option("--model", help=f"Run id (see `taxifare models`), or {_REFERENCES}. [default latest]"),
]
RunDataSize = Annotated[
    Optional[str],
    typer.Option(
        "--data-size",
        help="Narrow latest and best to the runs of this data set (the DATA_SIZE setting does not: it names the data "
        "to preprocess and train on). [default: runs of every data set]",
    ),
]
RunSpec = Annotated[str, typer.Argument(help=f"A run id from `taxifare models`, or {_REFERENCES}.")]


def settings_from(context: typer.Context, **flags) -> Settings:
    """The command's settings: its own flags over the root's (`taxifare --local-data-path DIR train`),
    which the root callback leaves in the context's `obj`."""
    return load_settings({**(context.find_root().obj or {}), **flags})
