"""Making room in the registry: remove runs, keeping the newest and the best of each data set, and the
scratch that abandoned training runs left behind.

Scratch is hidden, so it never shows as a run:
- `.checkpoints/<name>/`: an unfinished training run's checkpoint. Removed only while prune holds its
  lock (`<name>.lock`, see lock.py), so a checkpoint that a running `train` holds is never touched; the
  lock file goes when prune releases it.
- `.tmp-<run id>/`: a run that `train` was publishing. Removed only when no training lock is held,
  since a running train may be filling one.
- `.removing-<run id>/`: a run whose removal stopped half way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from taxifare.lock import LockedError, OutputLock
from taxifare.registry import REMOVING_PREFIX, Registry, Run, best_run, delete_tree

CHECKPOINTS_FOLDER = ".checkpoints"
PUBLISHING_PREFIX = ".tmp-"


@dataclass(frozen=True)
class Removed:
    path: Path
    what: str  # "run" or "scratch"
    bytes: int


@dataclass
class PruneResult:
    removed: list[Removed] = field(default_factory=list)
    in_use: list[Path] = field(default_factory=list)

    @property
    def bytes_freed(self) -> int:
        return sum(item.bytes for item in self.removed)


def runs_to_prune(runs: list[Run], keep: int) -> list[Run]:
    """The runs beyond the `keep` newest of each data set, sparing each data set's best run."""
    kept: set[str] = set()
    for data_size in {run.data_size for run in runs}:
        of_data_set = [run for run in runs if run.data_size == data_size]
        kept.update(run.run_id for run in of_data_set[max(len(of_data_set) - keep, 0) :])
        best = best_run(of_data_set)
        if best is not None:
            kept.add(best.run_id)
    return [run for run in runs if run.run_id not in kept]


def prune(registry: Registry, keep: int) -> PruneResult:
    """Remove the runs `runs_to_prune` names, then the abandoned scratch."""
    result = PruneResult()
    for run in runs_to_prune(registry.runs(), keep):
        result.removed.append(Removed(run.path, "run", registry.remove(run.run_id)))
    remove_abandoned_scratch(registry, result)
    return result


def remove_abandoned_scratch(registry: Registry, result: PruneResult) -> None:
    training = _remove_unheld_checkpoints(registry.root / CHECKPOINTS_FOLDER, result)
    for folder in sorted(registry.root.glob(f"{PUBLISHING_PREFIX}*")):
        if training:
            result.in_use.append(folder)
        else:
            result.removed.append(Removed(folder, "scratch", delete_tree(folder)))
    for folder in sorted(registry.root.glob(f"{REMOVING_PREFIX}*")):
        result.removed.append(Removed(folder, "scratch", delete_tree(folder)))


def _remove_unheld_checkpoints(checkpoints: Path, result: PruneResult) -> bool:
    """Delete every checkpoint folder whose lock nobody holds; whether some training lock is held."""
    if not checkpoints.is_dir():
        return False
    entries = list(checkpoints.iterdir())
    names = {path.name for path in entries if path.is_dir()}
    names |= {path.name.removesuffix(".lock") for path in entries if path.name.endswith(".lock") and path.is_file()}
    held = False
    for folder in sorted(checkpoints / name for name in names):
        try:
            with OutputLock(folder, "training checkpoint", doing="removing abandoned training scratch"):
                if folder.is_dir():
                    result.removed.append(Removed(folder, "scratch", delete_tree(folder)))
        except LockedError:
            held = True
            if folder.is_dir():
                result.in_use.append(folder)
    return held
