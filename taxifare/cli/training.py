"""train: the processed CSV in, a new run in the registry out."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from taxifare.cli.options import ChunkSize, DataSize, MaxDate, MinDate, settings_from

ProcessedInput = Annotated[
    Optional[Path], typer.Option("--input", help="Processed CSV to train on instead of the one for the window.")
]


def train(
    context: typer.Context,
    min_date: MinDate = None,
    max_date: MaxDate = None,
    data_size: DataSize = None,
    chunk_size: ChunkSize = None,
    input: ProcessedInput = None,
    from_run: Annotated[
        Optional[str],
        typer.Option(
            "--from",
            help="Continue from a registry run (an id; latest, the newest run of any data set; best; or NAME:latest, "
            "NAME:best of data set NAME): its weights, optimizer state and input statistics, trained further on this "
            "data as a new run that records its parent.",
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
    learning_rate: Annotated[Optional[float], typer.Option(help="Adam's initial learning rate. [env: LEARNING_RATE; default 0.002]")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Rows per gradient step. [env: BATCH_SIZE; default 256]")] = None,
    hidden_units: Annotated[
        Optional[str], typer.Option(help="Widths of the hidden ReLU layers (of each network of the ensemble). [env: HIDDEN_UNITS; default 128,64]")
    ] = None,
    dropout: Annotated[Optional[float], typer.Option(help="Dropout after each hidden layer (0 for none). [env: DROPOUT; default 0.1]")] = None,
    loss: Annotated[Optional[str], typer.Option(help="Training loss: mae, huber (delta $1) or mse. [env: LOSS; default mae]")] = None,
    members: Annotated[
        Optional[int],
        typer.Option(help="Networks in the ensemble, trained side by side; the fare is their mean (1 trains about 4x faster). [env: MEMBERS; default 5]"),
    ] = None,
    seed: Annotated[Optional[int], typer.Option(help="Random seed: weights, chunk orders, shuffles. [env: SEED; default 42]")] = None,
    force: Annotated[bool, typer.Option("--force", help="Discard an interrupted run's checkpoint and start afresh.")] = False,
) -> None:
    """Train the fare model on the processed CSV, pass after pass, chunk by chunk, and add the run to the
    local registry.

    Rows are split by a hash of their values alone into training (80%), validation (10%, at most 50,000
    rows: early stopping and the learning-rate schedule) and test (10%, at most 100,000 rows: the reported
    figures); held-out rows beyond those caps are left out, never trained on, so a row is a test row in
    every data set or in none. The run keeps its best weights. Rerun the same command to resume an
    interrupted run.

    Several machines: run this same command on every worker, each with its own TF_CONFIG (as set by
    Vertex AI, Kubeflow's TFJob and most schedulers), e.g. TF_CONFIG='{"cluster": {"worker":
    ["10.0.0.1:12345", "10.0.0.2:12345"]}, "task": {"type": "worker", "index": 0}}'. Each worker trains
    on its own share of the rows; --batch-size is the global batch (split evenly across workers); the
    chief (task 0) checkpoints and publishes, the others exit 0 once it has. Every exchange waits at most
    COLLECTIVE_TIMEOUT seconds (default 120). See the README's multi-worker section.

    Tracking: with MLFLOW_TRACKING_URI set (and `pip install 'taxifare[mlflow]'`), the run is also logged
    to MLflow, in the experiment MLFLOW_EXPERIMENT_NAME (default taxifare-DATA_SIZE).
    """
    from taxifare.training.loop import train as run_train

    settings = settings_from(
        context,
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
        members=members,
        seed=seed,
    )
    result = run_train(settings, input_path=input, force=force, from_run=from_run)
    typer.echo(result.run.path)
