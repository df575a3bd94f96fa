"""pred and evaluate: a registry run and rides in, fares or figures out."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from taxifare.cli.options import ChunkSize, Columns, Delimiter, ModelSpec, RunDataSize, UtcLabel, settings_from
from taxifare.core.errors import InputError


def pred(
    context: typer.Context,
    model: ModelSpec = None,
    data_size: RunDataSize = None,
    pickup_datetime: Annotated[
        Optional[str],
        typer.Option(
            help="Pickup time, on the New York wall clock (also with \" UTC\", see --utc-label); with Z, an offset or "
            "a zone, converted (the --min-date forms). [default 2013-07-06 17:18:00 UTC]"
        ),
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
    utc_label: UtcLabel = None,
) -> None:
    """Predict fares with a trained run (default the newest of any data set; stderr names it, its data set
    and test MAE): one ride from flags (default the reference ride), or a CSV of rides.

    With --input, every input row gets an output row, in order: its fare, or an empty fare and the reason in
    not_predicted_reason. Exit 2 when no row can be predicted (the output is still written).
    """
    from taxifare.rides.layout import CsvFormat
    from taxifare.serving import predict

    settings = settings_from(context, chunk_size=chunk_size, utc_label=utc_label)
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
        fare = predict.predict_ride(settings, {**predict.REFERENCE_RIDE, **given}, run_spec=model, data_set=data_size)
        typer.echo(f"{fare:.2f}")
        return
    if given:
        raise InputError(f"--input predicts a CSV; drop the single-ride flag(s) {', '.join('--' + n.replace('_', '-') for n in given)}")
    result = predict.predict_csv(settings, input, output, run_spec=model, csv_format=csv_format, data_set=data_size)
    if result.output is not None:
        typer.echo(result.output)


def evaluate(
    context: typer.Context,
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
    utc_label: UtcLabel = None,
) -> None:
    """Score a trained run on labelled rides: MAE, RMSE, median absolute error, the run's predict-the-mean
    baseline, rows scored and rejected by reason, error by pickup year and by distance band, and a PNG of
    predicted against actual fares.

    The figures go to stdout (text, or --json); progress and the first rejected lines to stderr. Rows are
    rejected by the rules of pred plus unusable fares (missing, not a number, outside 0 < fare < 400). The
    median comes from a histogram of absolute errors in 1-cent bins (exact to half a cent up to $1,000);
    the plot is a 2-D histogram up to $100 on each axis. Rows the run trained on are recognised and
    counted, with a warning that the figures are then partly in-sample. Exit 2 when no row can be scored.
    """
    from taxifare.rides.layout import CsvFormat
    from taxifare.serving.evaluate import evaluate as run_evaluate
    from taxifare.serving.evaluate import format_evaluation

    settings = settings_from(context, chunk_size=chunk_size, utc_label=utc_label)
    csv_format = CsvFormat.from_flags(columns, delimiter)
    result = run_evaluate(settings, input, run_spec=model, plot_path=plot, csv_format=csv_format, data_set=data_size)
    if as_json:
        import json

        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        typer.echo(format_evaluation(result))
