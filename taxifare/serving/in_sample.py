"""Whether the rides `evaluate` scores are rides the run trained on (then its figures are in-sample).

Each scored ride becomes the row the run would have seen in its processed file (its features and fare as
float32), whose hash, computed as the run's split method did (splits.identity_positions), is looked up
in the sample of training rows the run keeps (splits.TrainingRowSample, with its parents'). The sample
holds every training row of all but huge runs, so the count is exact; beyond it, the share is estimated
from the scored rows that fall in the sample's range.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from taxifare.core.errors import InputError
from taxifare.registry.store import SAMPLE_FILE, Run
from taxifare.rides.features import TARGET
from taxifare.training.splits import TrainingRowSample, identity_positions, recorded_method, row_hashes

log = logging.getLogger("taxifare")


@dataclass
class InSampleCheck:
    sample: TrainingRowSample | None  # None: the rows it trained on cannot be recognised
    positions: np.ndarray | None = None  # the columns its row hashes cover, among its features and the fare
    unknown: str = "the run keeps no sample of its training rows"  # why, when `sample` is None
    checked: int = 0  # scored rows in the sample's range (all of them when the sample is complete)
    seen: int = 0  # of those, rows the run trained on

    @classmethod
    def of(cls, run: Run) -> "InSampleCheck":
        path = run.path / SAMPLE_FILE
        if not run.params["data"].get("training_sample") or not path.is_file():
            log.info("run %s keeps no sample of its training rows (an older taxifare trained it): rows it trained on are not recognised", run.run_id)
            return cls(None)
        method = recorded_method(run.params)
        try:
            positions = identity_positions([*run.params["feature_names"], TARGET], method)
        except InputError:
            log.info("run %s was split by %s, which this taxifare does not know: rows it trained on are not recognised", run.run_id, method)
            return cls(None, unknown=f"the run was split by {method}, which this taxifare does not know")
        return cls(TrainingRowSample.load(path), positions)

    def add(self, features: np.ndarray, fares: np.ndarray) -> None:
        """Look up scored rides: their features (float32) and fares, as the processed file holds them."""
        if self.sample is not None:
            rows = np.column_stack([features.astype(np.float32), fares.astype(np.float32)])
            checked, seen = self.sample.look_up(row_hashes(rows, self.positions))
            self.checked += checked
            self.seen += seen

    @property
    def share(self) -> float | None:
        return self.seen / self.checked if self.checked else None

    def describe(self, scored: int) -> str:
        if self.sample is None:
            return f"not known ({self.unknown})"
        if self.sample.complete:
            return f"{self.seen:,} of the {scored:,} rows scored ({self.seen / max(scored, 1):.1%})"
        if not self.checked:
            return f"not known (none of the {scored:,} rows scored falls in the run's sample of its training rows)"
        return f"about {self.share:.1%} of the rows scored (estimated from the {self.checked:,} in the run's sample of its training rows)"

    def warn(self, run: Run, scored: int) -> None:
        """One line when some scored rows were trained on."""
        if self.seen:
            log.warning(
                "run %s trained on %s: these figures are partly in-sample, not a fair test; score it on rides it "
                "never saw (its test MAE was measured on such rides)", run.run_id, self.describe(scored),
            )
