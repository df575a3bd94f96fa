"""Model quality with default flags, on rows the model never saw, and what a warm start buys.

    python benchmarks/bench_quality.py [--seeds 42 7 11] [--warm-passes 2] [--large-rows 0]

Everything runs through the real CLI in a scratch folder, as a new user would:
  1. Default run: `preprocess --input cab-fare-ashutoshgalinde_train.csv`, then `train` with no training
     flag, once per seed (SEED is the only thing changed). Reported: the test split's MAE and RMSE (rows
     picked by hash, never trained on, never used for early stopping), the predict-the-mean baseline,
     wall times. Target: test MAE <= $1.80, the default run within 3 minutes on 2 cores.
  2. Outside rows, scored with `taxifare evaluate` on the first seed's run:
     - `lewagon-train_10k_ouic.csv` less every `key` that appears in the training file;
     - the sample's rides from 2015, which the default window (pickups before 2015-01-01) leaves out of
       training: later rides than any the model saw, the way a deployed model meets them.
  3. Warm start: the sample split by pickup date; a parent trained with defaults on 2009-2011, then on
     2012-2014 a run `--from` the parent against a fresh run, both with the same budget of
     `--warm-passes` passes, scored on the 2012-2014 test split.
  4. With --large-rows N: the sample scaled to N processed rows (rows drawn with replacement, coordinates
     jittered by ~50 m before preprocessing) and trained with defaults; scored on the outside rows of (2),
     since jittered copies of a ride can sit in both the training and the test split.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO.parent / "shared" / "data" / "nyc-taxi"
TRAINING_FILE = SAMPLES / "cab-fare-ashutoshgalinde_train.csv"
OUTSIDE_FILE = SAMPLES / "lewagon-train_10k_ouic.csv"


def taxifare(workdir: Path, *args: str, **env: str) -> tuple[str, float]:
    """Run the CLI; its stdout and wall time. Exits the benchmark on failure."""
    environment = {**os.environ, "PYTHONPATH": str(REPO), "LOCAL_DATA_PATH": str(workdir / "data"), "LOCAL_REGISTRY_PATH": str(workdir / "registry"), **env}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "taxifare", *args], env=environment, cwd=workdir, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"taxifare {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done.stdout.strip(), time.perf_counter() - started


def run_metrics(run_folder: str) -> dict:
    return json.loads((Path(run_folder) / "metrics.json").read_text())["final"]


def scored(workdir: Path, rides: Path, model: str) -> dict:
    """`taxifare evaluate --json` of a run on a labelled raw CSV."""
    output, _ = taxifare(workdir, "evaluate", "--input", str(rides), "--model", model, "--json", "--plot", str(workdir / f"{rides.stem}.png"))
    figures = json.loads(output)
    return {key: figures[key] for key in ("rows_read", "rows_scored", "mae", "rmse", "median_absolute_error", "baseline_mae", "outside_training_window")}


def outside_files(workdir: Path) -> dict[str, Path]:
    training = pd.read_csv(TRAINING_FILE)
    outside = pd.read_csv(OUTSIDE_FILE)
    unseen = outside[~outside["key"].isin(set(training["key"]))]
    later = training[training["pickup_datetime"] >= "2015-01-01"].drop_duplicates()
    files = {"lewagon_10k_unseen_keys": workdir / "lewagon_unseen.csv", "rides_2015": workdir / "rides_2015.csv"}
    unseen.to_csv(files["lewagon_10k_unseen_keys"], index=False)
    later.to_csv(files["rides_2015"], index=False)
    return files


def default_runs(workdir: Path, seeds: list[int], outside: dict[str, Path]) -> dict:
    _, preprocess_seconds = taxifare(workdir, "preprocess", "--input", str(TRAINING_FILE), "--data-size", "sample")
    runs = []
    for seed in seeds:
        folder, seconds = taxifare(workdir, "train", "--data-size", "sample", "--force", SEED=str(seed))
        final = run_metrics(folder)
        runs.append({"seed": seed, "train_seconds": seconds, **{key: final[key] for key in ("test_mae", "test_rmse", "baseline_test_mae", "validation_mae", "passes", "stopped_early", "rows_trained")}})
        if seed == seeds[0]:
            outside_scores = {name: scored(workdir, path, Path(folder).name) if len(pd.read_csv(path)) else {"rows_read": 0} for name, path in outside.items()}
    return {"preprocess_seconds": preprocess_seconds, "runs": runs, "outside": outside_scores}


def warm_start(workdir: Path, passes: int) -> dict:
    old = ("--min-date", "2009-01-01", "--max-date", "2012-01-01", "--data-size", "early")
    new = ("--min-date", "2012-01-01", "--max-date", "2015-01-01", "--data-size", "later")
    for window in (old, new):
        taxifare(workdir, "preprocess", "--input", str(TRAINING_FILE), *window)
    parent, _ = taxifare(workdir, "train", *old)
    budget = ("--epochs", str(passes))
    warm, _ = taxifare(workdir, "train", *new, *budget, "--from", Path(parent).name)
    fresh, _ = taxifare(workdir, "train", *new, *budget, "--force", LOCAL_REGISTRY_PATH=str(workdir / "registry-fresh"))
    return {
        "parent_test_mae_on_2009_2011": run_metrics(parent)["test_mae"],
        "passes": passes,
        "warm_test_mae": run_metrics(warm)["test_mae"],
        "fresh_test_mae": run_metrics(fresh)["test_mae"],
        "baseline_test_mae": run_metrics(fresh)["baseline_test_mae"],
    }


def large_run(workdir: Path, rows: int, outside: dict[str, Path]) -> dict:
    rng = np.random.default_rng(0)
    sample = pd.read_csv(TRAINING_FILE)
    sample = sample[sample["pickup_datetime"] < "2015-01-01"].drop_duplicates()
    raw = workdir / "large_raw.csv"
    for part in range(0, rows, 1_000_000):
        drawn = sample.sample(min(1_000_000, rows - part), replace=True, random_state=int(rng.integers(2**31))).copy()
        for column in ("pickup_longitude", "pickup_latitude", "dropoff_longitude", "dropoff_latitude"):
            drawn[column] = drawn[column] + rng.normal(0, 0.0005, len(drawn))
        drawn.to_csv(raw, index=False, header=part == 0, mode="w" if part == 0 else "a")
    large = ("--data-size", "large")
    _, preprocess_seconds = taxifare(workdir, "preprocess", "--input", str(raw), *large)
    raw.unlink()
    folder, seconds = taxifare(workdir, "train", *large)
    final = run_metrics(folder)
    outside_scores = {name: scored(workdir, path, Path(folder).name) for name, path in outside.items() if len(pd.read_csv(path))}
    return {"rows": rows, "preprocess_seconds": preprocess_seconds, "train_seconds": seconds, "passes": final["passes"], "test_mae": final["test_mae"], "outside": outside_scores}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 7, 11])
    parser.add_argument("--warm-passes", type=int, default=2)
    parser.add_argument("--large-rows", type=int, default=0)
    args = parser.parse_args()
    if not TRAINING_FILE.is_file():
        sys.exit(f"{TRAINING_FILE} is absent: this benchmark measures quality on real rides only")
    results = {}
    with tempfile.TemporaryDirectory(prefix="taxifare-bench-quality-") as tmp:
        workdir = Path(tmp)
        outside = outside_files(workdir)
        results["default"] = default_runs(workdir, args.seeds, outside)
        results["warm_start"] = warm_start(workdir, args.warm_passes)
        if args.large_rows:
            results["large"] = large_run(workdir, args.large_rows, outside)
    print(json.dumps(results, indent=2, default=lambda value: round(value, 4)))

    runs = results["default"]["runs"]
    maes = [run["test_mae"] for run in runs]
    print(f"\ndefault run, test MAE over seeds {args.seeds}: median ${statistics.median(maes):.3f} "
          f"(range ${min(maes):.3f}-${max(maes):.3f}); target <= $1.80; predict-the-mean ${runs[0]['baseline_test_mae']:.3f}")
    times = [run["train_seconds"] for run in runs]
    print(f"default train wall time: median {statistics.median(times):.0f} s (max {max(times):.0f} s) + preprocess "
          f"{results['default']['preprocess_seconds']:.0f} s; target <= 180 s")
    for name, score in results["default"]["outside"].items():
        figure = (
            f"MAE ${score['mae']:.3f}, RMSE ${score['rmse']:.3f}, median ${score['median_absolute_error']:.3f} on "
            f"{score['rows_scored']:,} of {score['rows_read']:,} rides (predict-the-mean ${score['baseline_mae']:.3f})"
            if score.get("rows_scored") else "no rides left"
        )
        print(f"outside rows, {name}: {figure}")
    warm = results["warm_start"]
    print(f"warm start on 2012-2014 with {warm['passes']} passes: test MAE ${warm['warm_test_mae']:.3f} "
          f"from the 2009-2011 parent against ${warm['fresh_test_mae']:.3f} fresh (predict-the-mean ${warm['baseline_test_mae']:.3f})")
    if "large" in results:
        large = results["large"]
        outside = ", ".join(f"{name} ${score['mae']:.3f}" for name, score in large["outside"].items())
        print(f"{large['rows']:,} scaled rows: {large['passes']} passes in {large['train_seconds']:.0f} s, "
              f"test MAE ${large['test_mae']:.3f} (jittered copies: not a fair figure), outside MAE {outside}")


if __name__ == "__main__":
    main()
