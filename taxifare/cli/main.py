"""The `taxifare` command: the root options, the commands (one module per group, each a thin wrapper over
the pipeline functions), and `main`, the one place that turns exceptions into exit codes."""

from __future__ import annotations

import functools
import gc
import logging
import os
import signal
import sys
from typing import Annotated

import typer

from taxifare import __version__
from taxifare.cli import data, models, scoring, training
from taxifare.cli.options import Debug, LocalDataPath, LocalRegistryPath, Quiet, Verbose
from taxifare.cli.quiet import pass_on_captured_output, quiet_libraries
from taxifare.core.errors import ROW_WARNINGS, InputError, Interrupted, TaxifareError, first_line, stop_received
from taxifare.core.malloc import use_few_arenas

log = logging.getLogger("taxifare")

app = typer.Typer(
    help="NYC taxi-fare prediction on data too big for memory: preprocess, train, predict.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command()(data.preprocess)
app.command("demo-data")(data.demo_data)
app.command()(training.train)
app.command()(scoring.pred)
app.command()(scoring.evaluate)
app.add_typer(models.models_app, name="models")


def _print_version(asked: bool) -> None:
    if asked:
        typer.echo(f"taxifare {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    context: typer.Context,
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print taxifare's version and exit.")
    ] = False,
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
    logging.getLogger(ROW_WARNINGS).setLevel(logging.ERROR if quiet else logging.NOTSET)
    quiet_libraries(verbose)
    context.obj = {"local_data_path": local_data_path, "local_registry_path": local_registry_path}


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


def _on_stop_signal(command_pid: int, forced: bool, signal_number: int, frame) -> None:
    if os.getpid() != command_pid:
        # A process forked from the command (a local Dask worker). Ctrl-C reaches the terminal's whole
        # process group, and the command closes its workers itself; a SIGTERM of its own just ends it.
        if signal_number == signal.SIGTERM:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
        return
    raise stop_received(Interrupted(signal_number, signal.Signals(signal_number).name, forced))


def main(argv: list[str] | None = None) -> None:
    try:
        _run(sys.argv[1:] if argv is None else argv)
    finally:
        pass_on_captured_output()
        # The interpreter's last garbage collections walk every object left, a few hundred milliseconds
        # with Dask or TensorFlow loaded, for nothing: the command has closed what it opened.
        gc.freeze()


def _run(argv: list[str]) -> None:
    debug = "--debug" in argv
    use_few_arenas()
    _configure_logging()
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, functools.partial(_on_stop_signal, os.getpid(), "--force" in argv))
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
        from taxifare.core.files import file_system_error

        explained = file_system_error(error)
        if explained is not None:
            _report_error(f"taxifare: error: {explained}")
            sys.exit(explained.exit_code)
        _report_error(
            f"taxifare: internal error: {type(error).__name__}: {first_line(error)} (rerun with --debug for details)"
        )
        sys.exit(1)
