"""preprocess and demo-data: raw rides in, the processed CSV (or the synthetic raw cache) out."""

from __future__ import annotations

import logging
from typing import Annotated, Optional

import typer

from taxifare.cli.options import (
    BigqueryEmulatorHost,
    BqDataset,
    BqDeadline,
    ChunkSize,
    Columns,
    Delimiter,
    GcpProject,
    GcpProjectData,
    MaxDate,
    MinDate,
    ProcessedDataSize,
    UtcLabel,
    settings_from,
)

log = logging.getLogger("taxifare")


def preprocess(
    context: typer.Context,
    min_date: MinDate = None,
    max_date: MaxDate = None,
    data_size: ProcessedDataSize = None,
    chunk_size: ChunkSize = None,
    gcp_project: GcpProject = None,
    gcp_project_data: GcpProjectData = None,
    bq_dataset: BqDataset = None,
    bq_deadline: BqDeadline = None,
    bigquery_emulator_host: BigqueryEmulatorHost = None,
    input: Annotated[
        Optional[list[str]],
        typer.Option(
            "--input",
            help="Raw rides to read instead of the cached query for the window: a CSV (.csv.gz: gzip), a Parquet "
            "file (.parquet), or a glob (rides-*.csv); give it again for more files, read in the order given. "
            "TLC headers of 2009-2016 are recognised. On a cluster also an fsspec URL (gs://..., s3://...) "
            "that the workers can read.",
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
    utc_label: UtcLabel = None,
) -> None:
    """Clean raw rides and turn them into model features, chunk by chunk, into one processed CSV.

    The rides come from --input, else the raw cache of the window, else BigQuery (which fills the cache).
    With --scheduler or --workers, Dask workers process partitions of the input in parallel; the output
    is byte-identical.
    """
    from taxifare.preprocessing.run import preprocess as run_preprocess
    from taxifare.rides.layout import CsvFormat

    settings = settings_from(
        context,
        min_date=min_date,
        max_date=max_date,
        data_size=data_size,
        chunk_size=chunk_size,
        gcp_project=gcp_project,
        gcp_project_data=gcp_project_data,
        bq_dataset=bq_dataset,
        bq_deadline=bq_deadline,
        bigquery_emulator_host=bigquery_emulator_host,
        dask_scheduler_address=scheduler,
        workers=workers,
        utc_label=utc_label,
    )
    csv_format = CsvFormat.from_flags(columns, delimiter)
    result = run_preprocess(settings, input_path=input, force=force, keep_parts=keep_parts, csv_format=csv_format)
    typer.echo(result.output)


def demo_data(
    context: typer.Context,
    rows: Annotated[int, typer.Option(min=1, max=50_000_000, help="Rides to generate.")] = 100_000,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same file.")] = 7,
    min_date: MinDate = None,
    max_date: MaxDate = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing demo file.")] = False,
) -> None:
    """Write a SYNTHETIC ride data set as the raw cache for DATA_SIZE=demo (no account needed)."""
    from taxifare.core.files import writing
    from taxifare.sources.demo import write_demo_rides

    settings = settings_from(context, min_date=min_date, max_date=max_date, data_size="demo")
    path = settings.raw_cache_path
    if path.exists() and not force:
        log.info("%s exists; keeping it (pass --force to regenerate)", path)
    else:
        with writing("writing the demo rides"):
            write_demo_rides(path, rows=rows, seed=seed)
        log.info("wrote %s synthetic rides to %s", f"{rows:,}", path)
    typer.echo(path)
