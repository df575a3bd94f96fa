"""models: list, show, remove and prune the runs of the local registry."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from taxifare.cli.options import RunDataSize, RunSpec, settings_from

log = logging.getLogger("taxifare")


models_app = typer.Typer(
    help="The trained runs in the local registry. Alone: list them, oldest first (data set, comparable group, "
    "passes run, main hyper-parameters, validation and test MAE, parent run, the references that name each).\n\n"
    "References: `latest` is the run that finished last, `best` the one with the lowest validation MAE among "
    "the runs comparable with it (same group: same processed data and split); `NAME:latest` and `NAME:best` "
    "the same among the runs of data set NAME. pred, evaluate, train --from and these commands take them.",
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

    from taxifare.registry.run_table import format_runs, run_summaries
    from taxifare.registry.store import Registry

    summaries = run_summaries(Registry(settings_from(context).local_registry_path).runs())
    if as_json:
        typer.echo(json.dumps([dataclasses.asdict(summary) for summary in summaries], indent=2))
    elif summaries:
        typer.echo(format_runs(summaries))


@models_app.command("show")
def models_show(context: typer.Context, run: RunSpec, data_size: RunDataSize = None) -> None:
    """Print one run's params and metrics as JSON (after checking its model file)."""
    import json

    from taxifare.model.saved import check_model_file
    from taxifare.registry.store import Registry

    found = Registry(settings_from(context).local_registry_path).resolve(run, data_size)
    check_model_file(found.model_path)
    typer.echo(json.dumps({"run_id": found.run_id, "params": found.params, "metrics": found.metrics}, indent=2))


@models_app.command("rm")
def models_rm(
    context: typer.Context,
    runs: Annotated[list[str], typer.Argument(help="Run ids from `taxifare models`, or references (latest, best, NAME:best...).")],
) -> None:
    """Remove runs, each named by its id or a reference (resolved before any is removed). Each folder is
    renamed to a hidden name, then deleted: no half-removed run is ever listed."""
    from taxifare.registry.store import Registry

    registry = Registry(settings_from(context).local_registry_path)
    chosen = {found.run_id: found for found in (registry.resolve(spec) for spec in runs)}
    for found in chosen.values():
        freed = registry.remove(found.run_id)
        typer.echo(f"removed {found.describe()}: {freed:,} bytes")


@models_app.command("prune")
def models_prune(
    context: typer.Context,
    keep: Annotated[int, typer.Option("--keep", min=0, help="Runs to keep per data set, newest first.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Remove nothing: print what would be removed.")] = False,
) -> None:
    """Remove all but the KEEP newest runs of each data set. Always kept: the best run (lowest validation
    MAE) of each group of comparable runs, and every run a reference names (latest, best, NAME:latest,
    NAME:best). Also removes the scratch of abandoned training runs (unfinished checkpoints and their lock
    files where no running train holds the lock, half-published and half-removed runs); a running train's
    files are left alone. Each removal is printed; --dry-run prints them and removes nothing.

    A train or preprocess that fails removes its own scratch, except what a rerun resumes from. A run killed
    outright (SIGKILL, power loss) leaves it: training checkpoints, which prune removes, and in
    LOCAL_DATA_PATH an unfinished processed_*.partial.csv/.json, a Dask *.parts folder or a *.lock file,
    which a rerun of the same preprocess continues from or takes over (--force starts afresh); delete them
    by hand only when no preprocess is running."""
    from taxifare.registry.prune import prune
    from taxifare.registry.store import Registry

    result = prune(Registry(settings_from(context).local_registry_path), keep, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    for item in result.removed:
        what = f"{item.run.describe()}, group {item.run.comparable_group}, {_validation(item.run)}" if item.run else f"scratch {item.path}"
        typer.echo(f"{verb} {what}: {item.bytes:,} bytes")
    for path in result.in_use:
        log.info("kept %s: a running train holds it", path)
    typer.echo(f"{'would free' if dry_run else 'freed'} {result.bytes_freed:,} bytes")


def _validation(run) -> str:
    return "no validation MAE" if run.validation_mae is None else f"validation MAE ${run.validation_mae:.3f}"
