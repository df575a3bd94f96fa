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

MinDate = Annotated[
    Optional[str],
    typer.Option(help="First pickup kept (inclusive), ISO 8601: 2009-01-01 or 2009-01-01T06:00:00Z; UTC unless it has an offset. [env: MIN_DATE; default 2009-01-01]"),
]
MaxDate = Annotated[Optional[str], typer.Option(help="Pickups kept are before this (same forms as --min-date). [env: MAX_DATE; default 2015-01-01]")]
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
Debug = Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")]
LocalDataPath = Annotated[
    Optional[str], typer.Option(help="Raw caches and processed files. [env: LOCAL_DATA_PATH; default ~/.taxifare/data]")
]
LocalRegistryPath = Annotated[
    Optional[str], typer.Option(help="Trained runs. [env: LOCAL_REGISTRY_PATH; default ~/.taxifare/registry]")
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Log only warnings and errors (no progress, no summaries).")]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Log debug lines too, and TensorFlow's own log lines.")]


# The settings flags given before the command; the root callback sets them on every invocation.
_global_flags: dict[str, str | None] = {}
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


@app.callback()
def _root(
    debug: Debug = False,
    quiet: Quiet = False,
    verbose: Verbose = False,
    local_data_path: LocalDataPath = None,
    local_registry_path: LocalRegistryPath = None,
) -> None:
    """Configuration: flags > environment > ./.env > defaults (see .env.sample)."""
    if quiet and verbose:
        raise InputError("pass either --quiet or --verbose, not both")
    logging.getLogger("taxifare").setLevel(logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO)
    _quiet_libraries(verbose)
    _global_flags.update(local_data_path=local_data_path, local_registry_path=local_registry_path)


def _quiet_libraries(verbose: bool) -> None:
    """Silence TensorFlow, absl and gRPC (which log to stderr on their own) unless --verbose.

    Set before TensorFlow is imported, which reads these once. TF_CPP_MIN_LOG_LEVEL=3 drops its C++ lines
    of every level (a user's 2 still lets errors through); GRPC_VERBOSITY covers the gRPC lines a
    multi-worker run prints when a peer goes away.
    """
    import os
    import warnings

    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0" if verbose else "3"
    if verbose:
        return
    os.environ["GRPC_VERBOSITY"] = "NONE"
    for name in ("tensorflow", "absl", "keras"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"(tensorflow|keras|absl)(\.|$)")


def settings_from(**flags) -> Settings:
    return load_settings({**_global_flags, **flags})


@app.command()
def preprocess(
    min_date: MinDate = None,
    max_date: MaxDate = None,
    data_size: ProcessedDataSize = None,
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
    columns: Columns = None,
    delimiter: Delimiter = None,
) -> None:
    """Clean raw rides and turn them into model features, chunk by chunk, into one processed CSV.

    The rides come from --input, else the raw cache of the window, else BigQuery (which fills the cache).
    With --scheduler or --workers, Dask workers process partitions of the input in parallel; the output
    is byte-identical.
    """
    from taxifare.csv_format import CsvFormat
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
    csv_format = CsvFormat.from_flags(columns, delimiter)
    result = run_preprocess(settings, input_path=input, force=force, keep_parts=keep_parts, csv_format=csv_format)
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
    from taxifare.files import writing

    settings = settings_from(min_date=min_date, max_date=max_date, data_size="demo")
    path = settings.raw_cache_path
    if path.exists() and not force:
        log.info("%s exists; keeping it (pass --force to regenerate)", path)
    else:
        with writing("writing the demo rides"):
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
    from_run: Annotated[
        Optional[str],
        typer.Option(
            "--from",
            help="Continue from a registry run (an id, or latest / best of the DATA_SIZE data set): its weights, "
            "optimizer state and input statistics, trained further on this data as a new run that records its parent.",
        ),
    ] = None,
    epochs: Annotated[
        Optional[int], typer.Option(help="Most passes over the whole processed data; early stopping usually ends sooner. [env: EPOCHS; default 100]")
    ] = None,
    patience: Annotated[
        Optional[int],
        typer.Option(help="Stop after this many evaluations without a better validation MAE. [env: PATIENCE; default 8]"),
    ] = None,
    lr_patience: Annotated[
        Optional[int],
        typer.Option(help="Halve the learning rate after this many evaluations without improvement. [env: LR_PATIENCE; default 3]"),
    ] = None,
    eval_every: Annotated[
        Optional[int],
        typer.Option(help="Also evaluate every this many chunks within a pass (always after a pass). [env: EVAL_EVERY; default 10]"),
    ] = None,
    learning_rate: Annotated[Optional[float], typer.Option(help="Adam's initial learning rate. [env: LEARNING_RATE; default 0.001]")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Rows per gradient step. [env: BATCH_SIZE; default 256]")] = None,
    hidden_units: Annotated[
        Optional[str], typer.Option(help="Widths of the hidden ReLU layers. [env: HIDDEN_UNITS; default 256,128,64]")
    ] = None,
    dropout: Annotated[Optional[float], typer.Option(help="Dropout after each hidden layer (0 for none). [env: DROPOUT; default 0.1]")] = None,
    loss: Annotated[Optional[str], typer.Option(help="Training loss: huber (delta $1), mse or mae. [env: LOSS; default huber]")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Random seed: weights, chunk orders, shuffles. [env: SEED; default 42]")] = None,
    force: Annotated[bool, typer.Option("--force", help="Discard an interrupted run's checkpoint and start afresh.")] = False,
) -> None:
    """Train the fare model on the processed CSV, pass after pass, chunk by chunk, and add the run to the
    local registry.

    Rows are split by a hash of their values into training (80%), validation (10%, at most 50,000 rows:
    early stopping and the learning-rate schedule) and test (10%, at most 100,000 rows: the reported
    figures). The run keeps its best weights. Rerun the same command to resume an interrupted run.

    Several machines: run this same command on every worker, each with its own TF_CONFIG (as set by
    Vertex AI, Kubeflow's TFJob and most schedulers), e.g. TF_CONFIG='{"cluster": {"worker":
    ["10.0.0.1:12345", "10.0.0.2:12345"]}, "task": {"type": "worker", "index": 0}}'. Each worker trains
    on its own share of the rows; --batch-size is the global batch (split evenly across workers); the
    chief (task 0) checkpoints and publishes, the others exit 0 once it has. Every exchange waits at most
    COLLECTIVE_TIMEOUT seconds (default 120). See the README's multi-worker section.
    """
    from taxifare.training import train as run_train

    settings = settings_from(
        min_date=min_date,
        max_date=max_date,
        data_size=data_size,
        chunk_size=chunk_size,
        learning_rate=learning_rate,
        batch_size=batch_size,
        epochs=epochs,
        patience=patience,
        lr_patience=lr_patience,
        eval_every=eval_every,
        hidden_units=hidden_units,
        dropout=dropout,
        loss=loss,
        seed=seed,
    )
    result = run_train(settings, input_path=input, force=force, from_run=from_run)
    typer.echo(result.run.path)


ModelSpec = Annotated[
    Optional[str],
    typer.Option("--model", help="Run id (see `taxifare models`), or latest or best of the --data-size data set. [default latest]"),
]
RunDataSize = Annotated[
    Optional[str], typer.Option(help="Data set whose latest or best run --model picks. [env: DATA_SIZE; default demo]")
]


@app.command()
def pred(
    model: ModelSpec = None,
    data_size: RunDataSize = None,
    pickup_datetime: Annotated[
        Optional[str], typer.Option(help="Pickup time, ISO 8601 (--min-date forms); UTC unless it has an offset. [default 2013-07-06 17:18:00]")
    ] = None,
    pickup_longitude: Annotated[Optional[float], typer.Option(help="[default -73.950655]")] = None,
    pickup_latitude: Annotated[Optional[float], typer.Option(help="[default 40.783282]")] = None,
    dropoff_longitude: Annotated[Optional[float], typer.Option(help="[default -73.984365]")] = None,
    dropoff_latitude: Annotated[Optional[float], typer.Option(help="[default 40.769802]")] = None,
    passenger_count: Annotated[Optional[int], typer.Option(help="[default 1]")] = None,
    input: Annotated[
        Optional[Path], typer.Option("--input", help="CSV of rides (raw columns; others kept) to predict; - reads stdin.")
    ] = None,
    output: Annotated[
        Optional[Path],
        typer.Option(
            "--output",
            help="CSV to write: every input row, in order, plus predicted_fare, outside_training_window and "
            "not_predicted_reason. [default stdout]",
        ),
    ] = None,
    columns: Columns = None,
    delimiter: Delimiter = None,
    chunk_size: ChunkSize = None,
) -> None:
    """Predict fares with a trained run: one ride from flags (default the reference ride), or a CSV of rides.

    With --input, every input row gets an output row, in order: its fare, or an empty fare and the reason in
    not_predicted_reason. Exit 2 when no row can be predicted (the output is still written).
    """
    from taxifare import predict
    from taxifare.csv_format import CsvFormat

    settings = settings_from(chunk_size=chunk_size, data_size=data_size)
    ride = {
        "pickup_datetime": pickup_datetime,
        "pickup_longitude": pickup_longitude,
        "pickup_latitude": pickup_latitude,
        "dropoff_longitude": dropoff_longitude,
        "dropoff_latitude": dropoff_latitude,
        "passenger_count": passenger_count,
    }
    given = {name: value for name, value in ride.items() if value is not None}
    csv_format = CsvFormat.from_flags(columns, delimiter)
    if input is None:
        if output is not None or csv_format != CsvFormat():
            raise InputError("--output, --columns and --delimiter go with --input: pass --input rides.csv (or - for stdin)")
        fare = predict.predict_ride(settings, {**predict.REFERENCE_RIDE, **given}, run_spec=model)
        typer.echo(f"{fare:.2f}")
        return
    if given:
        raise InputError(f"--input predicts a CSV; drop the single-ride flag(s) {', '.join('--' + n.replace('_', '-') for n in given)}")
    result = predict.predict_csv(settings, input, output, run_spec=model, csv_format=csv_format)
    if result.output is not None:
        typer.echo(result.output)


@app.command()
def evaluate(
    input: Annotated[
        Path,
        typer.Option(
            "--input",
            help="Labelled raw CSV (fare_amount and the ride columns; others ignored), of any size: it is streamed; - reads stdin.",
        ),
    ],
    columns: Columns = None,
    delimiter: Delimiter = None,
    model: ModelSpec = None,
    data_size: RunDataSize = None,
    plot: Annotated[
        Optional[Path],
        typer.Option("--plot", help="PNG to write. [default ./evaluate_<input name>_<run id>.png]"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as one JSON object instead of text.")] = False,
    chunk_size: ChunkSize = None,
) -> None:
    """Score a trained run on labelled rides: MAE, RMSE, median absolute error, the run's predict-the-mean
    baseline, rows scored and rejected by reason, error by pickup year and by distance band, and a PNG of
    predicted against actual fares.

    The figures go to stdout (text, or --json); progress and the first rejected lines to stderr. Rows are
    rejected by the rules of pred plus unusable fares (missing, not a number, outside 0 < fare < 400). The
    median comes from a histogram of absolute errors in 1-cent bins (exact to half a cent up to $1,000);
    the plot is a 2-D histogram up to $100 on each axis. Exit 2 when no row can be scored.
    """
    from taxifare.csv_format import CsvFormat
    from taxifare.evaluate import evaluate as run_evaluate, format_evaluation

    settings = settings_from(chunk_size=chunk_size, data_size=data_size)
    csv_format = CsvFormat.from_flags(columns, delimiter)
    result = run_evaluate(settings, input, run_spec=model, plot_path=plot, csv_format=csv_format)
    if as_json:
        import json

        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        typer.echo(format_evaluation(result))


models_app = typer.Typer(
    help="The trained runs in the local registry. Alone: list them, oldest first (data set, main hyper-parameters, "
    "test MAE, parent run, aliases); an empty registry lists nothing.\n\n"
    "Aliases: `latest` is the run of a data set that finished last, `best` the one with the lowest test MAE; "
    "pred and evaluate take them with --model, for the data set of --data-size.",
    no_args_is_help=False,
)
app.add_typer(models_app, name="models")


@models_app.callback(invoke_without_command=True)
def models(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list (one object per run) instead of a table.")] = False,
) -> None:
    if ctx.invoked_subcommand is not None:
        return
    import dataclasses
    import json

    from taxifare.registry import Registry, format_runs, run_summaries

    summaries = run_summaries(Registry(settings_from().local_registry_path).runs())
    if as_json:
        typer.echo(json.dumps([dataclasses.asdict(summary) for summary in summaries], indent=2))
    elif summaries:
        typer.echo(format_runs(summaries))


RunSpec = Annotated[str, typer.Argument(help="A run id from `taxifare models`, or latest or best (of --data-size).")]


@models_app.command("show")
def models_show(run: RunSpec, data_size: RunDataSize = None) -> None:
    """Print one run's params and metrics as JSON (after checking its model file)."""
    import json

    from taxifare.model import check_model_file
    from taxifare.registry import Registry

    settings = settings_from(data_size=data_size)
    found = Registry(settings.local_registry_path).resolve(run, settings.data_size)
    check_model_file(found.model_path)
    typer.echo(json.dumps({"run_id": found.run_id, "params": found.params, "metrics": found.metrics}, indent=2))


@models_app.command("rm")
def models_rm(run_ids: Annotated[list[str], typer.Argument(help="Run ids from `taxifare models`.")]) -> None:
    """Remove runs. Each folder is renamed to a hidden name, then deleted: no half-removed run is ever listed."""
    from taxifare.registry import Registry

    registry = Registry(settings_from().local_registry_path)
    for run_id in run_ids:
        freed = registry.remove(run_id)
        typer.echo(f"removed run {run_id} ({freed:,} bytes)")


@models_app.command("prune")
def models_prune(
    keep: Annotated[int, typer.Option("--keep", min=0, help="Runs to keep per data set, newest first.")],
) -> None:
    """Remove all but the KEEP newest runs of each data set; each data set's best run (lowest test MAE) is
    always kept. Also removes the scratch of abandoned training runs (unfinished checkpoints and their lock
    files where no running train holds the lock, half-published and half-removed runs); a running train's
    files are left alone.

    A train or preprocess that fails removes its own scratch, except what a rerun resumes from. A run killed
    outright (SIGKILL, power loss) leaves it: training checkpoints, which prune removes, and in
    LOCAL_DATA_PATH an unfinished processed_*.partial.csv/.json, a Dask *.parts folder or a *.lock file,
    which a rerun of the same preprocess continues from or takes over (--force starts afresh); delete them
    by hand only when no preprocess is running."""
    from taxifare.prune import prune
    from taxifare.registry import Registry

    result = prune(Registry(settings_from().local_registry_path), keep)
    for item in result.removed:
        typer.echo(f"removed {item.what} {item.path} ({item.bytes:,} bytes)")
    for path in result.in_use:
        log.info("kept %s: a running train holds it", path)
    typer.echo(f"freed {result.bytes_freed:,} bytes")


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
        from taxifare.files import file_system_error

        explained = file_system_error(error)
        if explained is not None:
            _report_error(f"taxifare: error: {explained}")
            sys.exit(explained.exit_code)
        _report_error(
            f"taxifare: internal error: {type(error).__name__}: {first_line(error)} (rerun with --debug for details)"
        )
        sys.exit(1)


