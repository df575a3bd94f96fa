"""The `taxifare` command line: thin wrappers over the pipeline functions.

Heavy libraries (pandas, pyarrow, TensorFlow) are imported inside the commands that use them, so
`taxifare --help` answers at once. `main` is the one place that turns exceptions into exit codes.
"""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from taxifare.config import Settings, load_settings
from taxifare.errors import Interrupted, TaxifareError

log = logging.getLogger("taxifare")

app = typer.Typer(
    help="NYC taxi-fare prediction on data too big for memory: preprocess, train, predict.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

MinDate = Annotated[Optional[str], typer.Option(help="First pickup date kept (inclusive, UTC). [env: MIN_DATE; default 2009-01-01]")]
MaxDate = Annotated[Optional[str], typer.Option(help="Pickup dates kept are before this (UTC). [env: MAX_DATE; default 2015-01-01]")]
DataSize = Annotated[
    Optional[str],
    typer.Option(help="Data set name (letters, digits, _): BigQuery table raw_{DATA_SIZE} and local file names. [env: DATA_SIZE; default demo]"),
]
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
Debug = Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")]


@app.callback()
def _root(debug: Debug = False) -> None:
    """Configuration: flags > environment > ./.env > defaults (see .env.sample)."""


def settings_from(**flags) -> Settings:
    return load_settings(flags)


@app.command()
def preprocess(
    min_date: MinDate = None,
    max_date: MaxDate = None,
    data_size: DataSize = None,
    chunk_size: ChunkSize = None,
    gcp_project: GcpProject = None,
    gcp_project_data: GcpProjectData = None,
    bq_dataset: BqDataset = None,
    input: Annotated[
        Optional[Path], typer.Option("--input", help="Raw CSV to read instead of the cached query for the window.")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Redo the output even if it is complete.")] = False,
) -> None:
    """Clean raw rides and turn them into model features, chunk by chunk, into one processed CSV.

    The rides come from --input, else the raw cache of the window, else BigQuery (which fills the cache).
    """
    from taxifare.preprocess import preprocess as run_preprocess

    settings = settings_from(
        min_date=min_date,
        max_date=max_date,
        data_size=data_size,
        chunk_size=chunk_size,
        gcp_project=gcp_project,
        gcp_project_data=gcp_project_data,
        bq_dataset=bq_dataset,
    )
    result = run_preprocess(settings, input_path=input, force=force)
    typer.echo(result.output)


@app.command("demo-data")
def demo_data(
    rows: Annotated[int, typer.Option(min=1, max=50_000_000, help="Rides to generate.")] = 100_000,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same file.")] = 7,
    min_date: MinDate = None,
    max_date: MaxDate = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing demo file.")] = False,
) -> None:
    """Write a SYNTHETIC ride data set as the raw cache for DATA_SIZE=demo (no account needed)."""
    from taxifare.demo import write_demo_rides

    settings = settings_from(min_date=min_date, max_date=max_date, data_size="demo")
    path = settings.raw_cache_path
    if path.exists() and not force:
        log.info("%s exists; keeping it (pass --force to regenerate)", path)
    else:
        write_demo_rides(path, rows=rows, seed=seed)
        log.info("wrote %s synthetic rides to %s", f"{rows:,}", path)
    typer.echo(path)


def _configure_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    logger = logging.getLogger("taxifare")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False


def _report_error(message: str) -> None:
    if sys.stderr.isatty():
        import colorama

        message = f"{colorama.Fore.RED}{message}{colorama.Style.RESET_ALL}"
    print(message, file=sys.stderr)


def _raise_interrupted(signal_number: int, frame) -> None:
    raise Interrupted(signal_number, signal.Signals(signal_number).name)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    _configure_logging()
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, _raise_interrupted)
    try:
        app(args=argv, prog_name="taxifare")
    except Interrupted as error:
        _report_error(f"taxifare: {error}")
        sys.exit(error.exit_code)
    except TaxifareError as error:
        if debug:
            raise
        _report_error(f"taxifare: error: {error}")
        sys.exit(error.exit_code)
    except Exception as error:  # the last line of defence: never a raw traceback without --debug
        if debug:
            raise
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        _report_error(f"taxifare: internal error: {type(error).__name__}: {first_line} (rerun with --debug for details)")
        sys.exit(1)


