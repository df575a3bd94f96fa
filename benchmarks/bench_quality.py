"""Model quality on the real sample: the default run and the variants tried, against LightGBM on the same split.

    python benchmarks/bench_quality.py [--seeds 42 7 11] [--configs NAME ...] [--variant-seeds 1]
                                       [--lightgbm-leaves 31 63 127 255] [--warm-passes 2] [--later-check]
                                       [--dev-check] [--workdir DIR]

Everything runs through the real CLI in a scratch folder, as a new user would:
  1. `preprocess --input cab-fare-ashutoshgalinde_train.csv`, then `train` once per configuration: the default
     (no training flag) once per seed, each variant with the first --variant-seeds seeds. A variant is
     training flags and/or another model shape (ModelSpec fields that are not settings, set by starting the CLI through this script
     with other defaults). Per run: validation MAE (what chose the default), test MAE (rows picked by hash,
     never trained on, never used to choose), the outside sets' MAE, wall time of the whole `train` command
     and its peak memory (from its summary).
  2. Outside rows, never used to choose anything, preprocessed like the training file and scored on the
     same rows for every model: `lewagon-train_10k_ouic.csv` (whose rides come from Kaggle's file, as the
     training file's do), whole ("lewagon") and less the rows that are training rows ("lewagon-not-trained",
     the fair figure); the sample's rides from 2015, later than the default window (2009-2014).
  3. LightGBM (L1 objective) on exactly the same training, validation and test rows and features (read
     with taxifare's own split code), a small grid, each entry at the same seeds as the default (its bagging
     and feature sampling draw from them), early-stopped and chosen on median validation MAE, in a process
     of its own for its peak memory; the default's test MAE minus LightGBM's, seed by seed. A benchmark-only
     dependency: `pip install -e '.[bench]'`.
  4. Warm start: a parent trained with defaults on 2009-2011, then on 2012-2014 a run `--from` the parent
     against a fresh run, both with `--warm-passes` passes, scored on the 2012-2014 test split.
  5. Rides after the window (--later-check, what chose to hold the date within the training window): a
     default train on 2009-2013, scored on the 2014 rides of the split's training and validation sets (never
     its test rows, which the figures above report), as it prices them (the date held at the window's last
     day) and with the date let through (extrapolated, as runs before the hold did).
  6. Rows that chose nothing (--dev-check): one raw line in 8, by a hash of its text, held out of a copy of
     the training file; the default (at each seed) and LightGBM (its grid, chosen as in step 3) trained on
     the rest, as in steps 1 and 3, and scored on the held-out rows, with the paired standard error of their
     difference. Validation MAE is what early stopping picks the best of ~30 evaluations on, so it flatters
     the default (whose score jumps from pass to pass) more than LightGBM; test MAE may choose nothing. These
     rows give a third, unbiased comparison that may be looked at while choosing.
Targets: the default's test MAE <= $1.55 and below LightGBM's; its train within 3 minutes, 1.2 GB.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import hashlib
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SAMPLES = REPO.parent / "shared" / "data" / "nyc-taxi"
TRAINING_FILE = SAMPLES / "cab-fare-ashutoshgalinde_train.csv"
OUTSIDE_FILE = SAMPLES / "lewagon-train_10k_ouic.csv"
# --dev-check holds out one raw line in DEV_SHARE, by a hash of its text.
DEV_SHARE = 8

# name -> (training flags, ModelSpec fields). The first is the default; the others are what was tried
# against it (on validation MAE) and stay here so that the choice can be checked. "no-embeddings" is the
# model of the runs before the numeric embeddings (one network of 256-128-64 on the standardized features).
CONFIGS: dict[str, tuple[tuple[str, ...], dict]] = {
    "default": ((), {}),
    "no-embeddings": (("--hidden-units", "256,128,64", "--learning-rate", "0.001", "--members", "1"), {"frequencies": 0}),
    "previous-default": (("--hidden-units", "256,128,64", "--learning-rate", "0.001", "--members", "1"), {"scalars": False}),
    "one-network": (("--members", "1"), {}),
    "3-networks": (("--members", "3"), {}),
    "8-networks": (("--members", "8"), {}),
    "no-scalars": ((), {"scalars": False}),
    "layers-256-128-64": (("--hidden-units", "256,128,64"), {}),
    "layers-256-128": (("--hidden-units", "256,128"), {}),
    "scale-0.1": ((), {"frequency_scales": (0.1,)}),
    "scale-2.0": ((), {"frequency_scales": (2.0,)}),
    "32-frequencies": ((), {"frequencies": 32}),
    "dims-16": ((), {"embedding_dims": 16}),
    "scale-0.5": ((), {"frequency_scales": (0.5,)}),
    "loss-mae": (("--loss", "mae"), {}),
    "batch-128": (("--batch-size", "128"), {}),
    "batch-512": (("--batch-size", "512"), {}),
    "lr-0.001": (("--learning-rate", "0.001"), {}),
    "lr-0.0005": (("--learning-rate", "0.0005"), {}),
    "lr-0.003": (("--learning-rate", "0.003"), {}),
    "dropout-0": (("--dropout", "0"), {}),
    "dropout-0.2": (("--dropout", "0.2"), {}),
    # With the split of row-hash-2 (version 3's rows in each set again):
    "lr-patience-2": (("--lr-patience", "2"), {}),
    "dropout-0.3": (("--dropout", "0.3"), {}),
    "dims-4": ((), {"embedding_dims": 4}),
    "10-networks-64-32": (("--members", "10", "--hidden-units", "64,32"), {}),
    "dropout-0.05": (("--dropout", "0.05"), {}),
    "patience-12": (("--patience", "12"), {}),
    "batch-512-lr-0.004": (("--batch-size", "512", "--learning-rate", "0.004"), {}),
    # The member designs (spec.MEMBER_DESIGNS), with the L1 loss; the default before them:
    "huber-all-standardized": (("--loss", "huber"), {"designs": ("standardized",)}),
    "all-standardized": ((), {"designs": ("standardized",)}),
    "all-quantile": ((), {"designs": ("quantile",)}),
    "standardized-quantile": ((), {"designs": ("standardized", "quantile")}),
    "standardized-distance-rate": ((), {"designs": ("standardized", "distance-rate")}),
    "one-frequency-scale": ((), {"frequency_scales": (0.25,)}),
    # Without the flat-fare heads for JFK's rides (spec.FLAT_FARES), the default before them:
    "no-flat-fares": ((), {"flat_fares": ()}),
    # Fares between the meter's steps (spec.METER_STEPS), the default before them:
    "no-meter-steps": ((), {"meter_steps": False}),
}
LIGHTGBM_GRID = (
    {"num_leaves": 31, "learning_rate": 0.05},
    {"num_leaves": 63, "learning_rate": 0.05},
    {"num_leaves": 127, "learning_rate": 0.03, "bagging_fraction": 0.8, "bagging_freq": 1, "feature_fraction": 0.8},
    {"num_leaves": 255, "learning_rate": 0.03, "bagging_fraction": 0.8, "bagging_freq": 1, "feature_fraction": 0.8},
)


def taxifare(workdir: Path, *args: str, model: dict | None = None, **env: str) -> tuple[str, str, float]:
    """Run the CLI (with other ModelSpec defaults when `model` is given); stdout, stderr and wall time."""
    environment = {**os.environ, "PYTHONPATH": str(REPO), "LOCAL_DATA_PATH": str(workdir / "data"), "LOCAL_REGISTRY_PATH": str(workdir / "registry"), **env}
    launcher = [__file__, "--cli", json.dumps(model)] if model else ["-m", "taxifare"]
    started = time.perf_counter()
    done = subprocess.run([sys.executable, *launcher, *args], env=environment, cwd=workdir, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"taxifare {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done.stdout.strip(), done.stderr, time.perf_counter() - started


def cli_with_model_defaults(model: dict, args: list[str]) -> None:
    """The CLI, in this process, with `model` replacing ModelSpec's defaults (the fields that are no setting)."""
    from taxifare.cli import main as cli_main
    from taxifare.model.spec import ModelSpec

    with_defaults = [field for field in dataclasses.fields(ModelSpec) if field.default is not dataclasses.MISSING]
    unknown = set(model) - {field.name for field in with_defaults}
    if unknown:
        sys.exit(f"not ModelSpec fields with defaults: {sorted(unknown)}")
    ModelSpec.__init__.__defaults__ = tuple(model.get(field.name, field.default) for field in with_defaults)
    sys.argv = ["taxifare", *args]
    cli_main()


def processed(workdir: Path, raw: Path, name: str, *window: str) -> Path:
    stdout, _, _ = taxifare(workdir, "preprocess", "--input", str(raw), "--data-size", name, *window)
    return Path(stdout.splitlines()[-1])


def outside_sets(workdir: Path, train: np.ndarray) -> dict[str, np.ndarray]:
    """The outside rows, preprocessed like the training file: the Le Wagon file, whose rides all come from
    Kaggle's file as the training file's do (so some are training rows: they are also scored apart), and the
    sample's 2015 rides."""
    later = workdir / "rides_2015.csv"
    sample = pd.read_csv(TRAINING_FILE)
    sample[sample["pickup_datetime"] >= "2015-01-01"].to_csv(later, index=False)
    lewagon = processed_rows(processed(workdir, OUTSIDE_FILE, "lewagon"))
    trained_on = {row.tobytes() for row in train}
    seen = np.array([row.tobytes() in trained_on for row in lewagon], dtype=bool)
    return {
        "lewagon": lewagon,
        "lewagon-not-trained": lewagon[~seen],
        "2015": processed_rows(processed(workdir, later, "later", "--min-date", "2015-01-01", "--max-date", "2016-01-01")),
    }


def processed_rows(path: Path) -> np.ndarray:
    return pd.read_csv(path, dtype=np.float32).to_numpy()


def paired_standard_error(errors: np.ndarray, other: np.ndarray) -> float:
    """The standard error of the mean difference between two models' absolute errors on the same rows."""
    return float((errors - other).std() / np.sqrt(len(errors)))


def maes(predicted: dict[str, np.ndarray], sets: dict[str, np.ndarray]) -> dict[str, float]:
    """Each set's MAE, of the `predicted` fares of its rows (features, then fare)."""
    return {name: float(np.mean(np.abs(predicted[name] - rows[:, -1]))) for name, rows in sets.items()}


def train_run(workdir: Path, name: str, seed: int, outside: dict[str, np.ndarray]) -> dict:
    from taxifare.model.network import predict_fares
    from taxifare.model.saved import load_model

    flags, model = CONFIGS[name]
    stdout, stderr, seconds = taxifare(workdir, "train", "--data-size", "sample", "--force", *flags, model=model, SEED=str(seed))
    folder = Path(stdout.splitlines()[-1])
    final = json.loads((folder / "metrics.json").read_text())["final"]
    architecture = json.loads((folder / "params.json").read_text())["hyperparameters"]["architecture"]
    peak = float(re.search(r"peak memory:\s+([\d,]+) MB", stderr).group(1).replace(",", ""))
    figures = {key: final[key] for key in ("validation_mae", "test_mae", "baseline_test_mae", "passes", "stopped_early")}
    trained = load_model(folder / "model.keras")
    outside_figures = maes({name: predict_fares(trained, rows[:, :-1]) for name, rows in outside.items()}, outside)
    return {"config": name, "seed": seed, "train_seconds": seconds, "peak_mb": peak, **figures, "outside": outside_figures, "architecture": architecture}


def split_rows(processed_path: Path, folder: Path) -> dict[str, np.ndarray]:
    """The training, validation and test rows of a processed file, by the split code that `train` uses."""
    from taxifare.training.data import open_processed, prepare_rows, span_rows

    data = open_processed(processed_path, span_rows(100_000))
    with data.file:
        prepared = prepare_rows(data, folder / "rows.f32")
    train = np.fromfile(folder / "rows.f32", dtype=np.float32).reshape(-1, len(data.columns))
    return {"train": train, "validation": prepared.validation, "test": prepared.test}


def lightgbm_runs(folder: Path, leaves: list[int], seeds: list[int]) -> list[dict]:
    """The configurations of LIGHTGBM_GRID with these `leaves`: trained on the training rows, early-stopped on
    validation; the rows from the .npy files that main() saved in `folder`."""
    import lightgbm

    sets = {path.stem: np.load(path) for path in folder.glob("*.npy") if not path.stem.startswith("predicted-")}
    train, validation = sets.pop("train"), sets["validation"]
    runs = []
    for params, seed in ((params, seed) for params in LIGHTGBM_GRID if params["num_leaves"] in leaves for seed in seeds):
        started = time.perf_counter()
        fitting = lightgbm.Dataset(train[:, :-1], train[:, -1])
        stopping = lightgbm.Dataset(validation[:, :-1], validation[:, -1], reference=fitting)
        booster = lightgbm.train(
            {"objective": "l1", "metric": "l1", "verbose": -1, "num_threads": 2, "seed": seed, **params},
            fitting, num_boost_round=10_000, valid_sets=[stopping], callbacks=[lightgbm.early_stopping(200, verbose=False)],
        )
        predictions = {name: booster.predict(rows[:, :-1], num_iteration=booster.best_iteration) for name, rows in sets.items()}
        for name, predicted in predictions.items():
            np.save(folder / f"predicted-{params['num_leaves']}-{seed}-{name}.npy", predicted)
        figures = maes(predictions, sets)
        figures["validation_mae"], figures["test_mae"] = figures.pop("validation"), figures.pop("test")
        runs.append({"params": params, "seed": seed, "trees": booster.best_iteration, "train_seconds": time.perf_counter() - started, **figures})
    return runs


def lightgbm_in_subprocess(sets: dict[str, np.ndarray], folder: Path, leaves: list[int], seeds: list[int]) -> dict:
    folder.mkdir()
    for name, rows in sets.items():
        np.save(folder / f"{name}.npy", rows)
    grid = json.dumps({"leaves": leaves, "seeds": seeds})
    done = subprocess.run([sys.executable, __file__, "--lightgbm", str(folder), grid], capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"LightGBM failed (pip install -e '.[bench]' installs it):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def warm_start(workdir: Path, passes: int) -> dict:
    old = ("--min-date", "2009-01-01", "--max-date", "2012-01-01", "--data-size", "early")
    new = ("--min-date", "2012-01-01", "--max-date", "2015-01-01", "--data-size", "later_years")
    for window in (old, new):
        taxifare(workdir, "preprocess", "--input", str(TRAINING_FILE), *window)
    parent = taxifare(workdir, "train", *old)[0].splitlines()[-1]
    budget = ("--epochs", str(passes))
    warm = taxifare(workdir, "train", *new, *budget, "--from", Path(parent).name)[0].splitlines()[-1]
    fresh = taxifare(workdir, "train", *new, *budget, "--force", LOCAL_REGISTRY_PATH=str(workdir / "registry-fresh"))[0].splitlines()[-1]
    metrics = {name: json.loads((Path(folder) / "metrics.json").read_text())["final"] for name, folder in (("parent", parent), ("warm", warm), ("fresh", fresh))}
    return {"passes": passes, **{f"{name}_test_mae": final["test_mae"] for name, final in metrics.items()}, "baseline_test_mae": metrics["fresh"]["baseline_test_mae"]}


def later_check(workdir: Path, split: dict[str, np.ndarray], seeds: list[int]) -> dict:
    """Step 5 of the docstring: per seed, the 2014 rides' MAE with the date held and let through."""
    from taxifare.model.network import DATE_HOLD_LAYER, predict_fares
    from taxifare.model.saved import load_model
    from taxifare.rides.features import FEATURE_NAMES, days_feature

    window = ("--min-date", "2009-01-01", "--max-date", "2014-01-01", "--data-size", "before_2014")
    taxifare(workdir, "preprocess", "--input", str(TRAINING_FILE), *window)
    day = FEATURE_NAMES.index("days_since_2009")
    rows = np.concatenate([split["train"], split["validation"]])
    later = rows[rows[:, day] >= days_feature(dt.datetime(2014, 1, 1))]
    figures = []
    for seed in seeds:
        folder = Path(taxifare(workdir, "train", *window, "--force", SEED=str(seed))[0].splitlines()[-1])
        held, let_through = load_model(folder / "model.keras"), load_model(folder / "model.keras")
        layer = let_through.get_layer(DATE_HOLD_LAYER)
        layer.bounds = tuple([bound] * len(bounds) for bound, bounds in zip((-np.inf, np.inf), layer.bounds))
        errors = [np.abs(predict_fares(model, later[:, :-1]) - later[:, -1]) for model in (held, let_through)]
        figures.append({"seed": seed, "held_mae": float(errors[0].mean()), "extrapolated_mae": float(errors[1].mean()),
                        "paired_standard_error": paired_standard_error(*errors)})
    return {"rows": len(later), "runs": figures}


def dev_check(workdir: Path, seeds: list[int], leaves: list[int]) -> dict:
    """Step 6 of the docstring: per seed, the default and LightGBM on rows that chose nothing, not even a pass."""
    from taxifare.model.network import predict_fares
    from taxifare.model.saved import load_model

    folder = workdir / "dev-check"  # its own, so that the main split's row file stays as it is
    folder.mkdir(exist_ok=True)
    header, *lines = TRAINING_FILE.read_bytes().splitlines(keepends=True)
    is_dev = [int(hashlib.md5(line.rstrip(b"\r\n")).hexdigest(), 16) % DEV_SHARE == 0 for line in lines]
    for name, wanted in (("less_dev", False), ("dev", True)):
        (folder / f"sample_{name}.csv").write_bytes(header + b"".join(line for line, dev in zip(lines, is_dev) if dev == wanted))
    kept = processed(workdir, folder / "sample_less_dev.csv", "sample_less_dev")
    dev = processed_rows(processed(workdir, folder / "sample_dev.csv", "dev"))
    lightgbm = lightgbm_in_subprocess({**split_rows(kept, folder), "dev": dev}, folder / "lightgbm", leaves, seeds)
    chosen = chosen_lightgbm(lightgbm["runs"])["num_leaves"]
    figures = []
    for seed in seeds:
        run_folder = Path(taxifare(workdir, "train", "--data-size", "sample_less_dev", "--force", SEED=str(seed))[0].splitlines()[-1])
        errors = np.abs(predict_fares(load_model(run_folder / "model.keras"), dev[:, :-1]) - dev[:, -1])
        booster = np.abs(np.load(folder / "lightgbm" / f"predicted-{chosen}-{seed}-dev.npy") - dev[:, -1])
        validation = json.loads((run_folder / "metrics.json").read_text())["final"]["validation_mae"]
        run = next(entry for entry in lightgbm["runs"] if entry["params"]["num_leaves"] == chosen and entry["seed"] == seed)
        figures.append({"seed": seed, "validation_mae": validation, "dev_mae": float(errors.mean()),
                        "lightgbm_validation_mae": run["validation_mae"], "lightgbm_dev_mae": float(booster.mean()),
                        "paired_standard_error": paired_standard_error(errors, booster)})
    return {"rows": len(dev), "lightgbm_leaves": chosen, "runs": figures}


def chosen_lightgbm(runs: list[dict]) -> dict:
    """The grid entry of lowest median validation MAE over the seeds, with its median and per-seed test MAE."""
    by_leaves: dict[int, list[dict]] = {}
    for entry in runs:
        by_leaves.setdefault(entry["params"]["num_leaves"], []).append(entry)
    leaves, entries = min(by_leaves.items(), key=lambda item: statistics.median(entry["validation_mae"] for entry in item[1]))
    return {
        "num_leaves": leaves,
        "validation_mae": statistics.median(entry["validation_mae"] for entry in entries),
        "test_mae": statistics.median(entry["test_mae"] for entry in entries),
        "test_by_seed": {str(entry["seed"]): entry["test_mae"] for entry in entries},
    }


def print_table(runs: list[dict], lightgbm: dict | None, outside_names: list[str]) -> None:
    widths = [max(len(name), 6) for name in outside_names]
    print(f"\n{'configuration':26} {'seed':>4} {'val MAE':>8} {'test MAE':>8} " + " ".join(f"{name:>{width}}" for name, width in zip(outside_names, widths)) + f" {'train s':>8} {'peak MB':>8} {'passes':>6}")

    def line(name: str, seed, figures: dict, outside: dict, seconds: float, peak: float, passes: int) -> None:
        columns = " ".join(f"{outside[name_]:>{width}.3f}" for name_, width in zip(outside_names, widths))
        print(f"{name:26} {seed:>4} {figures['validation_mae']:>8.3f} {figures['test_mae']:>8.3f} {columns} {seconds:>8.0f} {peak:>8.0f} {passes:>6}")

    for run in runs:
        line(run["config"], run["seed"], run, run["outside"], run["train_seconds"], run["peak_mb"], run["passes"])
    for entry in lightgbm["runs"] if lightgbm else []:
        name = f"LightGBM L1, {entry['params']['num_leaves']} leaves" + (" *" if entry["params"]["num_leaves"] == lightgbm["chosen"]["num_leaves"] else "")
        line(name, entry["seed"], entry, entry, entry["train_seconds"], lightgbm["peak_mb"], entry["trees"])
    print("outside columns: MAE on those rows. * LightGBM's choice on median validation MAE over the seeds (its seed draws "
          "its bagging and feature sampling); its passes column is trees, its time excludes reading the rows, its peak "
          "memory is its process's over the whole grid")


def main() -> None:
    # The script's own subprocesses: the CLI with other model defaults, LightGBM in a process of its own.
    if sys.argv[1:2] == ["--cli"]:
        return cli_with_model_defaults(json.loads(sys.argv[2]), sys.argv[3:])
    if sys.argv[1:2] == ["--lightgbm"]:
        runs = lightgbm_runs(Path(sys.argv[2]), **json.loads(sys.argv[3]))
        print(json.dumps({"runs": runs, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 7, 11])
    parser.add_argument("--configs", nargs="*", default=list(CONFIGS)[1:], choices=list(CONFIGS)[1:], help="variants to run besides the default")
    parser.add_argument("--variant-seeds", type=int, default=1, help="how many of --seeds each variant runs with (the first ones)")
    leaves = [params["num_leaves"] for params in LIGHTGBM_GRID]
    parser.add_argument("--lightgbm-leaves", type=int, nargs="*", default=leaves, choices=leaves, help="LightGBM's grid entries to run (none: no LightGBM)")
    parser.add_argument("--warm-passes", type=int, default=2, help="0 skips the warm-start comparison")
    parser.add_argument("--later-check", action="store_true", help="step 5: the 2014 rides of a 2009-2013 train, date held or extrapolated")
    parser.add_argument("--dev-check", action="store_true", help="step 6: the default and LightGBM on rows that chose nothing")
    parser.add_argument("--workdir", type=Path, help="a folder to work in and keep (its runs' history.csv); default a temporary one")
    args = parser.parse_args()
    if not TRAINING_FILE.is_file():
        sys.exit(f"{TRAINING_FILE} is absent: this benchmark measures quality on real rides only")
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="taxifare-bench-quality-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        split = split_rows(processed(workdir, TRAINING_FILE, "sample"), workdir)
        outside = outside_sets(workdir, split["train"])
        results["outside_rows"] = {name: len(rows) for name, rows in outside.items()}
        if args.lightgbm_leaves:
            results["lightgbm"] = lightgbm_in_subprocess({**split, **outside}, workdir / "lightgbm", args.lightgbm_leaves, args.seeds)
            results["lightgbm"]["chosen"] = chosen_lightgbm(results["lightgbm"]["runs"])
        runs = [train_run(workdir, "default", seed, outside) for seed in args.seeds]
        runs += [train_run(workdir, name, seed, outside) for seed in args.seeds[: args.variant_seeds] for name in args.configs]
        results["runs"] = runs
        if args.warm_passes:
            results["warm_start"] = warm_start(workdir, args.warm_passes)
        if args.later_check:
            results["later"] = later_check(workdir, split, args.seeds[: args.variant_seeds])
        if args.dev_check:
            results["dev"] = dev_check(workdir, args.seeds, args.lightgbm_leaves or [127])
    print(json.dumps(results, indent=2, default=lambda value: round(value, 4)))

    print_table(runs, results.get("lightgbm"), list(outside))
    defaults = [run for run in runs if run["config"] == "default"]
    test = [run["test_mae"] for run in defaults]
    seconds = [run["train_seconds"] for run in defaults]
    lightgbm = "LightGBM not run"
    if "lightgbm" in results:
        chosen = results["lightgbm"]["chosen"]
        gaps = [run["test_mae"] - chosen["test_by_seed"][str(run["seed"])] for run in defaults]
        lightgbm = (f"LightGBM median ${chosen['test_mae']:.3f} over the same seeds (range ${min(chosen['test_by_seed'].values()):.3f}-"
                    f"${max(chosen['test_by_seed'].values()):.3f}); default minus LightGBM, seed by seed, median {100 * statistics.median(gaps):+.1f} cents")
    print(f"\ndefault ({defaults[0]['architecture']}):\n  test MAE median ${statistics.median(test):.3f} over seeds {args.seeds} "
          f"(range ${min(test):.3f}-${max(test):.3f}); {lightgbm}; target <= $1.55 and below LightGBM; "
          f"predict-the-mean ${defaults[0]['baseline_test_mae']:.3f}")
    print(f"  train wall time median {statistics.median(seconds):.0f} s (max {max(seconds):.0f} s), peak memory max "
          f"{max(run['peak_mb'] for run in defaults):,.0f} MB; targets <= 180 s, <= 1,200 MB")
    if "warm_start" in results:
        warm = results["warm_start"]
        print(f"warm start on 2012-2014 with {warm['passes']} passes: test MAE ${warm['warm_test_mae']:.3f} from the 2009-2011 "
              f"parent against ${warm['fresh_test_mae']:.3f} fresh (predict-the-mean ${warm['baseline_test_mae']:.3f})")
    for run in results.get("later", {}).get("runs", []):
        print(f"2014 rides ({results['later']['rows']:,}) of a 2009-2013 train, seed {run['seed']}: MAE ${run['held_mae']:.3f} with "
              f"the date held at the window's last day, ${run['extrapolated_mae']:.3f} extrapolated (paired standard error "
              f"${run['paired_standard_error']:.3f})")
    for run in results.get("dev", {}).get("runs", []):
        print(f"dev rows ({results['dev']['rows']:,} raw lines held out of a default train, seed {run['seed']}): default "
              f"${run['dev_mae']:.3f} (its validation ${run['validation_mae']:.3f}), LightGBM {results['dev']['lightgbm_leaves']} "
              f"leaves ${run['lightgbm_dev_mae']:.3f} (validation ${run['lightgbm_validation_mae']:.3f}); default minus LightGBM "
              f"{100 * (run['dev_mae'] - run['lightgbm_dev_mae']):+.1f} cents (paired standard error "
              f"{100 * run['paired_standard_error']:.1f})")


if __name__ == "__main__":
    main()
