"""A training run's state between chunks: position in the data, early stopping, the learning-rate
schedule and the figures so far. Saved as JSON with every checkpoint, so a killed run resumes exactly.

Early stopping and the schedule both count evaluations (one after every pass over the data, and one
every `eval_every` chunks within a long pass). An evaluation improves on the best when its validation
MAE is lower by more than MIN_IMPROVEMENT; after `lr_patience` evaluations in a row without one the
learning rate is halved (reduce on plateau), after `patience` training stops. The run publishes the
weights of its best evaluation, not its last.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field

from taxifare.core.config import Settings

# A tenth of a cent: a smaller change of validation MAE is noise, not progress.
MIN_IMPROVEMENT = 0.001
LR_FACTOR = 0.5
# The schedule stops halving here; early stopping then ends the run.
MIN_LR_FACTOR = 1 / 64


def now_utc() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


@dataclass
class Evaluation:
    """One scoring of the model on the validation rows; a line of history.csv."""

    evaluation: int
    pass_number: int  # 1-based: the pass the evaluated chunk belongs to
    chunk: int  # 1-based, within that pass
    rows_trained: int  # row-epochs so far
    learning_rate: float
    loss: float | None  # training loss and MAE of the last chunk fitted
    mae: float | None
    validation_mae: float
    validation_rmse: float
    best: bool
    seconds: float


@dataclass
class Position:
    """The next chunk to train: chunk `chunk` (0-based) of pass `pass_index` (0-based)."""

    pass_index: int = 0
    chunk: int = 0


@dataclass
class TrainingState:
    run_id: str
    fingerprint: dict
    learning_rate: float
    parent_run_id: str | None = None
    started_at: str = field(default_factory=now_utc)
    position: Position = field(default_factory=Position)
    chunks_trained: int = 0
    rows_trained: int = 0
    best_validation_mae: float | None = None
    best_evaluation: int | None = None
    evaluations_since_best: int = 0
    stopped_early: bool = False
    done: bool = False
    train_seconds: float = 0.0
    fit_seconds: float = 0.0
    evaluations: list[Evaluation] = field(default_factory=list)
    resumes: list[dict] = field(default_factory=list)

    @property
    def passes_started(self) -> int:
        return self.position.pass_index + (self.position.chunk > 0)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, saved: dict) -> "TrainingState":
        values = {name: saved[name] for name in (f.name for f in dataclasses.fields(cls))}
        values["position"] = Position(**values["position"])
        values["evaluations"] = [Evaluation(**entry) for entry in values["evaluations"]]
        return cls(**values)

    def advance(self, chunks_in_pass: int, rows: int, fit_seconds: float) -> None:
        """Count a trained chunk and move to the next."""
        self.chunks_trained += 1
        self.rows_trained += rows
        self.fit_seconds += fit_seconds
        self.position.chunk += 1
        if self.position.chunk == chunks_in_pass:
            self.position = Position(self.position.pass_index + 1, 0)

    def observe(self, settings: Settings, mae: float) -> tuple[bool, float]:
        """Update early stopping and the schedule with a validation MAE: (improved, next learning rate)."""
        improved = self.best_validation_mae is None or mae < self.best_validation_mae - MIN_IMPROVEMENT
        if improved:
            self.best_validation_mae, self.best_evaluation = mae, len(self.evaluations) + 1
            self.evaluations_since_best = 0
        else:
            self.evaluations_since_best += 1
            if self.evaluations_since_best % settings.lr_patience == 0:
                floor = settings.learning_rate * MIN_LR_FACTOR
                self.learning_rate = max(self.learning_rate * LR_FACTOR, floor)
        self.stopped_early = self.evaluations_since_best >= settings.patience
        return improved, self.learning_rate

    def finish_if_over(self, max_passes: int) -> None:
        self.done = self.stopped_early or self.position.pass_index >= max_passes
