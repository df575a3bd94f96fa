"""preprocess's entry point: one writer per output, then the engine the settings choose (this process,
or a Dask cluster), and exit 2 when no row was kept."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Sequence

from taxifare.core.config import Settings
from taxifare.core.errors import InputError
from taxifare.core.files import describe_os_error
from taxifare.core.lock import OutputLock
from taxifare.preprocessing.local import preprocess_here
from taxifare.preprocessing.pipeline import PreprocessResult, nothing_kept
from taxifare.preprocessing.provenance import data_size_for
from taxifare.rides.layout import CsvFormat


def preprocess(
    settings: Settings,
    input_path: Path | str | Sequence[Path | str] | None = None,
    force: bool = False,
    keep_parts: bool = False,
    partition_size: int | None = None,
    csv_format: CsvFormat = CsvFormat(),
) -> PreprocessResult:
    """Raw rides -> the processed CSV and its manifest, in this process or, when the settings name a Dask
    scheduler or a number of workers, on that cluster. `input_path`: a file, a glob or several of them
    (read in the order given; on a cluster also fsspec URLs); `keep_parts` keeps the workers' parts of the
    output, and `partition_size` (bytes of raw CSV) replaces the automatic size. `csv_format` describes the
    input file(s): a header or --columns, the delimiter. Without a --data-size, the data set is named
    after the first input."""
    inputs = _input_texts(input_path)
    if csv_format != CsvFormat() and inputs is None:
        raise InputError("--columns and --delimiter describe an --input file; pass --input")
    on_cluster = bool(settings.dask_scheduler_address or settings.workers)
    if on_cluster:
        from taxifare.preprocessing.dask.connect import require_dask

        require_dask()
    if inputs is not None and "data_size" not in settings.given:
        settings = replace(settings, data_size=data_size_for(inputs[0]))
    output = settings.processed_path
    with OutputLock(output, "processed file"):
        if on_cluster:
            from taxifare.preprocessing.dask.run import preprocess_on_cluster

            result = preprocess_on_cluster(settings, inputs, force, keep_parts, partition_size, csv_format)
        else:
            try:
                result = preprocess_here(settings, inputs, force, csv_format)
            except OSError as error:
                raise describe_os_error(error) from error
    if result.manifest["rows_kept"] == 0:
        raise nothing_kept(result.manifest)
    return result


def _input_texts(input_path: Path | str | Sequence[Path | str] | None) -> list[str] | None:
    if input_path is None:
        return None
    texts = [str(input_path)] if isinstance(input_path, (str, Path)) else [str(item) for item in input_path]
    return texts or None
