"""What `taxifare models` shows of the registry's runs: one summary per run, as a table or JSON."""

from __future__ import annotations

from dataclasses import dataclass

from taxifare.registry.store import Run, alias_targets


@dataclass(frozen=True)
class RunSummary:
    """What `taxifare models` shows of a run (also its --json form). `comparable_group`: runs that share
    it were trained on the same processed data with the same split, so their validation and test figures
    are measured on the same rows. `passes`: passes over the data actually run (`epochs`: the most allowed)."""

    run_id: str
    data_size: str
    comparable_group: str
    synthetic: bool
    finished_at: str
    aliases: list[str]
    learning_rate: float | None
    batch_size: int | None
    passes: int | None
    epochs: int | None
    hidden_units: list[int] | None
    dropout: float | None
    loss: str | None
    validation_mae: float | None
    test_mae: float | None
    baseline_test_mae: float | None
    parent_run_id: str | None


def run_summaries(runs: list[Run]) -> list[RunSummary]:
    """One summary per run, in the order given (oldest first), naming the references each run answers to."""
    aliases = alias_targets(runs)
    return [_summary(run, aliases[run.run_id]) for run in runs]


def _summary(run: Run, aliases: list[str]) -> RunSummary:
    hyper, final = run.hyperparameters, run.metrics["final"]
    return RunSummary(
        run_id=run.run_id,
        data_size=run.data_size,
        comparable_group=run.comparable_group,
        synthetic=run.synthetic,
        finished_at=run.finished_at,
        aliases=aliases,
        learning_rate=hyper.get("learning_rate"),
        batch_size=hyper.get("batch_size"),
        passes=final.get("passes"),
        epochs=hyper.get("epochs"),
        hidden_units=hyper.get("hidden_units"),
        dropout=hyper.get("dropout"),
        loss=hyper.get("loss"),
        validation_mae=run.validation_mae,
        test_mae=run.test_mae,
        baseline_test_mae=final.get("baseline_test_mae"),
        parent_run_id=run.parent_run_id,
    )


_COLUMNS = (
    "run id", "data set", "group", "finished (UTC)", "lr", "batch", "passes", "hidden", "dropout", "loss",
    "val MAE", "test MAE", "parent", "aliases",
)


def format_runs(summaries: list[RunSummary]) -> str:
    """An aligned table, oldest first; empty text for no runs."""
    if not summaries:
        return ""
    rows = [list(_COLUMNS)] + [_row(summary) for summary in summaries]
    widths = [max(len(row[column]) for row in rows) for column in range(len(_COLUMNS))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)


def _row(summary: RunSummary) -> list[str]:
    def text(value) -> str:
        return "-" if value is None else str(value)

    def dollars(value: float | None) -> str:
        return "-" if value is None else f"${value:.3f}"

    return [
        summary.run_id,
        summary.data_size + (" (synthetic)" if summary.synthetic else ""),
        summary.comparable_group,
        summary.finished_at[:19].replace("T", " "),
        text(summary.learning_rate),
        text(summary.batch_size),
        f"{text(summary.passes)}/{text(summary.epochs)}",
        "-" if summary.hidden_units is None else "x".join(str(units) for units in summary.hidden_units),
        text(summary.dropout),
        text(summary.loss),
        dollars(summary.validation_mae),
        dollars(summary.test_mae),
        text(summary.parent_run_id),
        ",".join(summary.aliases),
    ]
