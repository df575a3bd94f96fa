"""Making room in the registry: remove runs, keeping the newest of each data set, the best of each group
of comparable runs and every run a reference names, and the scratch that abandoned training runs left
behind.

Scratch is hidden, so it never shows as a run:
- `.checkpoints/<name>/`: an unfinished training run's checkpoint. Removed only while prune holds its
  lock (`<name>.lock`, see lock.py), so a checkpoint that a running `train` holds is never touched; the
  lock file goes when prune releases it.
- `.tmp-<run id>/`: a run that `train` was publishing. Removed only when no training lock is held,
  since a running train may be filling one.
- `.removing-<run id>/`: a run whose removal stopped half way.

A dry run removes nothing and takes no lock: it lists what a real one would remove now.
"""

from __future__ import annotations

import contextlib
import fcntl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from taxifare.core.lock import LockedError, OutputLock, lock_path
from taxifare.registry.store import REMOVING_PREFIX, Registry, Run, alias_targets, best_run, delete_tree, runs_by_data_set

CHECKPOINTS_FOLDER = ".checkpoints"
PUBLISHING_PREFIX = ".tmp-"


@dataclass(frozen=True)
class Removed:
    path: Path
    what: str  # "run" or "scratch"
    bytes: int
    run: Run | None = None


@dataclass
class PruneResult:
    dry_run: bool = False
    removed: list[Removed] = field(default_factory=list)  # with --dry-run: what would be removed
    in_use: list[Path] = field(default_factory=list)

    @property
    def bytes_freed(self) -> int:
        return sum(item.bytes for item in self.removed)


def runs_to_prune(runs: list[Run], keep: int) -> list[Run]:
    """The runs (oldest first) beyond the `keep` newest of each data set, sparing the best of each group
    of comparable runs and every run a reference (latest, best, NAME:latest, NAME:best) names."""
    kept = {run_id for run_id, names in alias_targets(runs).items() if names}
    for of_data_set in runs_by_data_set(runs).values():
        kept.update(run.run_id for run in of_data_set[max(len(of_data_set) - keep, 0) :])
    for group in {run.comparable_group for run in runs}:
        best = best_run([run for run in runs if run.comparable_group == group])
        if best is not None:
            kept.add(best.run_id)
    return [run for run in runs if run.run_id not in kept]


def prune(registry: Registry, keep: int, dry_run: bool = False) -> PruneResult:
    """Remove the runs `runs_to_prune` names, then the abandoned scratch; with `dry_run`, only list them."""
    result = PruneResult(dry_run)
    for run in runs_to_prune(registry.runs(), keep):
        size = _size(run.path) if dry_run else registry.remove(run.run_id)
        result.removed.append(Removed(run.path, "run", size, run))
    remove_abandoned_scratch(registry, result)
    return result


def remove_abandoned_scratch(registry: Registry, result: PruneResult) -> None:
    remove = _size if result.dry_run else delete_tree
    training = _remove_unheld_checkpoints(registry.root / CHECKPOINTS_FOLDER, result)
    for folder in sorted(registry.root.glob(f"{PUBLISHING_PREFIX}*")):
        if training:
            result.in_use.append(folder)
        else:
            result.removed.append(Removed(folder, "scratch", remove(folder)))
    for folder in sorted(registry.root.glob(f"{REMOVING_PREFIX}*")):
        result.removed.append(Removed(folder, "scratch", remove(folder)))


def _remove_unheld_checkpoints(checkpoints: Path, result: PruneResult) -> bool:
    """Delete every checkpoint folder whose lock nobody holds; whether some training lock is held."""
    if not checkpoints.is_dir():
        return False
    entries = list(checkpoints.iterdir())
    names = {path.name for path in entries if path.is_dir()}
    names |= {path.name.removesuffix(".lock") for path in entries if path.name.endswith(".lock") and path.is_file()}
    held = False
    for folder in sorted(checkpoints / name for name in names):
        lock = _unheld(folder) if result.dry_run else OutputLock(folder, "training checkpoint", doing="removing abandoned training scratch")
        try:
            with lock:
                if folder.is_dir():
                    result.removed.append(Removed(folder, "scratch", _size(folder) if result.dry_run else delete_tree(folder)))
        except LockedError:
            held = True
            if folder.is_dir():
                result.in_use.append(folder)
    return held


@contextlib.contextmanager
def _unheld(target: Path) -> Iterator[None]:
    """For a dry run: LockedError when a process holds the lock of `target`, found without taking the
    lock (nor creating its file)."""
    with contextlib.suppress(FileNotFoundError), lock_path(target).open("rb") as file:
        try:
            fcntl.flock(file.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)  # released as the file closes
        except BlockingIOError:
            raise LockedError(f"{target} is held") from None
    yield


def _size(path: Path) -> int:
    return sum(entry.stat().st_size for entry in path.rglob("*") if entry.is_file())
