"""Soak test: kill `taxifare preprocess` and `taxifare train` with SIGKILL at random moments, rerun, compare.

    python benchmarks/soak.py [--rows 300000] [--preprocess-kills 20] [--train-kills 10]

preprocess: one uninterrupted reference run, then a run that is killed at `--preprocess-kills` random
moments (each rerun resumes), then completed; the final processed CSV is compared with the reference
row by row (rows lost, rows duplicated, bytes identical).
train: a run killed at `--train-kills` random moments, each rerun resuming from its checkpoint, then
completed; checks that the registry holds exactly one new complete run, that `latest` loads, and that
the rows trained equal those of an uninterrupted run.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]

from bench_preprocess import scaled_raw_csv, seed_rows  # noqa: E402

from taxifare.registry.store import RUN_FILES  # noqa: E402


def taxifare(args: list[str], env: dict, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "taxifare", *args], env=env, cwd=cwd,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def finish(args: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "taxifare", *args], env=env, cwd=cwd, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"taxifare {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done


def kill_and_resume(
    args: list[str], env_for_cycle, cwd: Path, kills: int, expected_seconds: float, rng: random.Random,
    stats: collections.Counter,
):
    """Cycles on a fresh output: start, SIGKILL at a random moment, restart, kill again, then let it finish.

    Yields (cycle environment, the final run) per cycle, counting kills and resumes in `stats`.
    """
    cycle = 0
    while stats["kills"] < kills:
        env = env_for_cycle(cycle)
        final = None
        for _ in range(min(KILLS_PER_CYCLE, kills - stats["kills"])):
            process = taxifare(args, env, cwd)
            time.sleep(rng.uniform(0.02, 1.0) * expected_seconds)
            if process.poll() is not None:
                stdout, stderr = process.communicate()
                if process.returncode:
                    sys.exit(f"taxifare {' '.join(args)} failed on its own:\n{stderr[-3000:]}")
                stats["finished_before_kill"] += 1
                final = subprocess.CompletedProcess(args, 0, stdout, stderr)
                break
            process.kill()
            process.communicate()
            stats["kills"] += 1
        final = final or finish(args, env, cwd)
        stats["resumes"] += "resum" in final.stderr
        yield env, final
        cycle += 1


KILLS_PER_CYCLE = 2


def soak_preprocess(workdir: Path, raw: Path, kills: int, rng: random.Random) -> None:
    args = ["preprocess", "--input", str(raw), "--chunk-size", "20000"]
    base_env = {**os.environ, "PYTHONPATH": str(REPO)}
    started = time.monotonic()
    reference = Path(finish(args, {**base_env, "LOCAL_DATA_PATH": str(workdir / "reference")}, workdir).stdout.strip())
    expected_seconds = time.monotonic() - started
    want = collections.Counter(reference.read_bytes().splitlines())

    totals, stats = collections.Counter(), collections.Counter()
    cycles = kill_and_resume(
        args, lambda cycle: {**base_env, "LOCAL_DATA_PATH": str(workdir / f"killed-{cycle}")}, workdir, kills,
        expected_seconds, rng, stats,
    )
    for _, final in cycles:
        output = Path(final.stdout.strip())
        got = collections.Counter(output.read_bytes().splitlines())
        totals["identical"] += output.read_bytes() == reference.read_bytes()
        totals["complete"] += json.loads(output.with_suffix(".json").read_text())["complete"]
        totals["lost"] += sum((want - got).values())
        totals["duplicated"] += sum((got - want).values())
        totals["cycles"] += 1
    print(
        f"preprocess: kills {stats['kills']} in {totals['cycles']} cycles, runs that resumed {stats['resumes']}, "
        f"outputs identical {totals['identical']}/{totals['cycles']}, complete {totals['complete']}/{totals['cycles']}, "
        f"rows lost {totals['lost']}, rows duplicated {totals['duplicated']}"
    )


def soak_train(workdir: Path, raw: Path, kills: int, rng: random.Random) -> None:
    base_env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2", "LOCAL_DATA_PATH": str(workdir / "reference")}
    args = ["train", "--data-size", "soak", "--chunk-size", "20000", "--epochs", "3", "--eval-every", "4"]
    finish(["preprocess", "--input", str(raw), "--data-size", "soak", "--chunk-size", "20000"], base_env, workdir)
    reference_env = {**base_env, "LOCAL_REGISTRY_PATH": str(workdir / "registry-reference")}
    started = time.monotonic()
    finish(args, reference_env, workdir)
    expected_seconds = time.monotonic() - started
    reference = latest_run_summary(reference_env, workdir)

    totals, stats = collections.Counter(), collections.Counter()
    cycles = kill_and_resume(
        args, lambda cycle: {**base_env, "LOCAL_REGISTRY_PATH": str(workdir / f"registry-{cycle}")}, workdir, kills,
        expected_seconds, rng, stats,
    )
    for env, _ in cycles:
        runs = [path for path in Path(env["LOCAL_REGISTRY_PATH"]).iterdir() if not path.name.startswith(".")]
        resumed = latest_run_summary(env, workdir)
        totals["cycles"] += 1
        totals["all_complete"] += all(sorted(file.name for file in run.iterdir()) == sorted(RUN_FILES) for run in runs)
        # A kill that lands after the run was published, as the process exits, leaves it there, and the
        # rerun trains another.
        totals["extra_runs"] += len(runs) - 1
        totals["loads"] += resumed["loads"]
        totals["same_rows"] += resumed["rows_trained"] == reference["rows_trained"]
        totals["same_mae"] += abs(resumed["mae"] - reference["mae"]) < 1e-6
    print(
        f"train: kills {stats['kills']} in {totals['cycles']} cycles, runs that resumed {stats['resumes']}, "
        f"registries with only complete runs {totals['all_complete']}/{totals['cycles']} "
        f"({totals['extra_runs']} extra runs published before a kill), latest loads {totals['loads']}/{totals['cycles']}, "
        f"rows trained as uninterrupted {totals['same_rows']}/{totals['cycles']} ({reference['rows_trained']:,}), "
        f"test MAE as uninterrupted {totals['same_mae']}/{totals['cycles']} ({reference['mae']:.3f} $)"
    )


def latest_run_summary(env: dict, cwd: Path) -> dict:
    predicted = subprocess.run(
        [sys.executable, "-m", "taxifare", "pred"], env=env, cwd=cwd, capture_output=True, text=True
    )
    registry = Path(env["LOCAL_REGISTRY_PATH"])
    runs = sorted(path for path in registry.iterdir() if (path / "metrics.json").is_file())
    metrics = json.loads((runs[-1] / "metrics.json").read_text())
    return {
        "loads": predicted.returncode == 0,
        "rows_trained": metrics["final"]["rows_trained"],
        "mae": metrics["final"]["test_mae"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--preprocess-kills", type=int, default=20)
    parser.add_argument("--train-kills", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    import numpy as np

    with tempfile.TemporaryDirectory(prefix="taxifare-soak-") as tmp:
        workdir = Path(tmp)
        raw = workdir / "raw.csv"
        scaled_raw_csv(seed_rows(workdir), args.rows, raw, np.random.default_rng(args.seed))
        if args.preprocess_kills:
            soak_preprocess(workdir, raw, args.preprocess_kills, rng)
        if args.train_kills:
            soak_train(workdir, raw, args.train_kills, rng)


if __name__ == "__main__":
    main()
