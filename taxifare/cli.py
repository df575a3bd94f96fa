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
from taxifare.errors import InputError, Interrupted, TaxifareError, first_line

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
        Optional[str],
        typer.Option(
            "--input",
            help="Raw CSV to read instead of the cached query for the window. On a cluster also a glob "
            "(rides-*.csv) or an fsspec URL (gs://..., s3://...) that the workers can read.",
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Redo the output even if it is complete.")] = False,
    scheduler: Annotated[
        Optional[str],
        typer.Option("--scheduler", help="Run on the Dask cluster of this scheduler, e.g. tcp://HOST:8786. [env: DASK_SCHEDULER_ADDRESS]"),
    ] = None,
    workers: Annotated[
        Optional[int],
        typer.Option("--workers", help="Run on a local Dask cluster of this many worker processes. [env: DASK_WORKERS]"),
    ] = None,
    keep_parts: Annotated[
        bool, typer.Option("--keep-parts", help="On a cluster, keep the workers' parts of the output beside it.")
    ] = False,
) -> None:
    """Clean raw rides and turn them into model features, chunk by chunk, into one processed CSV.

    The rides come from --input, else the raw cache of the window, else BigQuery (which fills the cache).
    With --scheduler or --workers, Dask workers process partitions of the input in parallel; the output
    is byte-identical.
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
        dask_scheduler_address=scheduler,
        workers=workers,
    )
    result = run_preprocess(settings, input_path=input, force=force, keep_parts=keep_parts)
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


ProcessedInput = Annotated[
    Optional[Path], typer.Option("--input", help="Processed CSV to train on instead of the one for the window.")
]


@app.command()
def train(
    min_date: MinDate = None,
    max_date: MaxDate = None,
    data_size: DataSize = None,
    chunk_size: ChunkSize = None,
    input: ProcessedInput = None,
    learning_rate: Annotated[Optional[float], typer.Option(help="Adam learning rate. [env: LEARNING_RATE; default 0.0005]")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Rows per gradient step. [env: BATCH_SIZE; default 256]")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Epochs on each chunk. [env: EPOCHS; default 1]")] = None,
    patience: Annotated[
        Optional[int], typer.Option(help="Stop after this many chunks without a better holdout MAE. [env: PATIENCE; default 5]")
    ] = None,
    seed: Annotated[Optional[int], typer.Option(help="Random seed: weights, chunk order, shuffles. [env: SEED; default 42]")] = None,
    force: Annotated[bool, typer.Option("--force", help="Discard an interrupted run's checkpoint and start afresh.")] = False,
) -> None:
    """Train the fare model on the processed CSV, chunk by chunk, and add the run to the local registry."""
    from taxifare.train import train as run_train

    settings = settings_from(
        min_date=min_date,
        max_date=max_date,
        data_size=data_size,
        chunk_size=chunk_size,
        learning_rate=learning_rate,
        batch_size=batch_size,
        epochs=epochs,
        patience=patience,
        seed=seed,
    )
    result = run_train(settings, input_path=input, force=force)
    typer.echo(result.run.path)


@app.command()
def pred(
    model: Annotated[Optional[str], typer.Option("--model", help="Run id to use (see `taxifare models`); default the latest.")] = None,
    pickup_datetime: Annotated[Optional[str], typer.Option(help="Pickup time (UTC unless it names a zone). [default 2013-07-06 17:18:00]")] = None,
    pickup_longitude: Annotated[Optional[float], typer.Option(help="[default -73.950655]")] = None,
    pickup_latitude: Annotated[Optional[float], typer.Option(help="[default 40.783282]")] = None,
    dropoff_longitude: Annotated[Optional[float], typer.Option(help="[default -73.984365]")] = None,
    dropoff_latitude: Annotated[Optional[float], typer.Option(help="[default 40.769802]")] = None,
    passenger_count: Annotated[Optional[int], typer.Option(help="[default 1]")] = None,
    input: Annotated[Optional[Path], typer.Option("--input", help="CSV of rides (raw columns; others kept) to predict.")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", help="CSV to write: the input rows plus predicted_fare.")] = None,
    chunk_size: ChunkSize = None,
) -> None:
    """Predict fares with a trained run: one ride from flags (default the reference ride), or a CSV of rides."""
    from taxifare import predict

    settings = settings_from(chunk_size=chunk_size)
    ride = {
        "pickup_datetime": pickup_datetime,
        "pickup_longitude": pickup_longitude,
        "pickup_latitude": pickup_latitude,
        "dropoff_longitude": dropoff_longitude,
        "dropoff_latitude": dropoff_latitude,
        "passenger_count": passenger_count,
    }
    given = {name: value for name, value in ride.items() if value is not None}
    if input is None and output is None:
        fare = predict.predict_ride(settings, {**predict.REFERENCE_RIDE, **given}, run_id=model)
        typer.echo(f"{fare:.2f}")
        return
    if input is None or output is None:
        raise InputError("--input and --output go together: pass both to predict a CSV of rides")
    if given:
        raise InputError(f"--input predicts a CSV; drop the single-ride flag(s) {', '.join('--' + n.replace('_', '-') for n in given)}")
    result = predict.predict_csv(settings, input, output, run_id=model)
    typer.echo(result.output)


models_app = typer.Typer(help="List the trained runs in the local registry, or show one.", no_args_is_help=False)
app.add_typer(models_app, name="models")


@models_app.callback(invoke_without_command=True)
def models(ctx: typer.Context) -> None:
    """List the runs: id, finishing date, rows trained, final holdout MAE (latest last)."""
    if ctx.invoked_subcommand is not None:
        return
    from taxifare.registry import Registry, format_runs

    typer.echo(format_runs(Registry(settings_from().local_registry_path).required_runs()))


@models_app.command("show")
def models_show(run_id: Annotated[str, typer.Argument(help="A run id from `taxifare models`.")]) -> None:
    """Print one run's params and metrics as JSON (after checking its model file)."""
    import json

    from taxifare.model import check_model_file
    from taxifare.registry import Registry

    run = Registry(settings_from().local_registry_path).get(run_id)
    check_model_file(run.model_path)
    typer.echo(json.dumps({"run_id": run.run_id, "params": run.params, "metrics": run.metrics}, indent=2))


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
        _report_error(
            f"taxifare: internal error: {type(error).__name__}: {first_line(error)} (rerun with --debug for details)"
        )
        sys.exit(1)


