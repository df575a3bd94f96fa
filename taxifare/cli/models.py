"""models: list, show, remove and prune the runs of the local registry."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from taxifare.cli.options import RunDataSize, RunSpec, settings_from

log = logging.getLogger("taxifare")


models_app = typer.Typer(
    help="The trained runs in the local registry. Alone: list them, oldest first (data set, main hyper-parameters, "
    "test MAE, parent run, aliases); an empty registry lists nothing.\n\n"
    "Aliases: `latest` is the run of a data set that finished last, `best` the one with the lowest test MAE; "
    "pred and evaluate take them with --model, for the data set of --data-size.",
    no_args_is_help=False,
)


@models_app.callback(invoke_without_command=True)
def models(
    context: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list (one object per run) instead of a table.")] = False,
) -> None:
    if context.invoked_subcommand is not None:
        return
    import dataclasses
    import json

    from taxifare.registry import Registry, format_runs, run_summaries

    summaries = run_summaries(Registry(settings_from(context).local_registry_path).runs())
    if as_json:
        typer.echo(json.dumps([dataclasses.asdict(summary) for summary in summaries], indent=2))
    elif summaries:
        typer.echo(format_runs(summaries))


@models_app.command("show")
def models_show(context: typer.Context, run: RunSpec, data_size: RunDataSize = None) -> None:
    """Print one run's params and metrics as JSON (after checking its model file)."""
    import json

    from taxifare.model import check_model_file
    from taxifare.registry import Registry

    settings = settings_from(context, data_size=data_size)
    found = Registry(settings.local_registry_path).resolve(run, settings.data_size)
    check_model_file(found.model_path)
    typer.echo(json.dumps({"run_id": found.run_id, "params": found.params, "metrics": found.metrics}, indent=2))


@models_app.command("rm")
def models_rm(context: typer.Context, run_ids: Annotated[list[str], typer.Argument(help="Run ids from `taxifare models`.")]) -> None:
    """Remove runs. Each folder is renamed to a hidden name, then deleted: no half-removed run is ever listed."""
    from taxifare.registry import Registry

    registry = Registry(settings_from(context).local_registry_path)
    for run_id in run_ids:
        freed = registry.remove(run_id)
        typer.echo(f"removed run {run_id} ({freed:,} bytes)")


@models_app.command("prune")
def models_prune(
    context: typer.Context,
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

    result = prune(Registry(settings_from(context).local_registry_path), keep)
    for item in result.removed:
        typer.echo(f"removed {item.what} {item.path} ({item.bytes:,} bytes)")
    for path in result.in_use:
        log.info("kept %s: a running train holds it", path)
    typer.echo(f"freed {result.bytes_freed:,} bytes")
