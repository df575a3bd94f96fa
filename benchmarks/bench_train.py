"""Streamed training against a plain in-memory fit, and training memory at two data sizes.

    python benchmarks/bench_train.py --throughput-rows 2000000 --repeats 5 --rss-rows 1000000 4000000

Processed rows: the real sample in ../shared/data/nyc-taxi, preprocessed (synthetic demo rides when the
folder is absent), its data lines repeated up to each size, with a manifest to match.
  1. Throughput, same model, batch size (256) and training rows, each measurement in a fresh process,
     in-memory and streamed alternated --repeats times (paired, in that order):
     - streamed: `taxifare.training.loop.train` at CHUNK_SIZE 100000, one pass over the data (--epochs 1);
       row-epochs per second of the chunk loop (background reads, fitting, validation scoring every 10
       chunks and after the pass, a checkpoint per chunk), of its fitting alone, and of the whole call
       (plus the pass that splits the rows, model build, test scoring and registry publish);
     - in memory: every training row loaded first (not timed), then one `model.fit(x, y, batch_size=256)`
       of the same model (the default: numeric embeddings, architecture and loss as `taxifare train` builds them).
  2. Peak RSS of `taxifare train` as a whole process (from its own summary), at each --rss-rows size.
Targets: streamed >= 0.9x in-memory; peak RSS flat from 1M to 4M processed rows.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from taxifare.core.config import load_settings  # noqa: E402
from taxifare.model.network import build_model  # noqa: E402
from taxifare.model.spec import ModelSpec  # noqa: E402
from taxifare.preprocessing.run import preprocess  # noqa: E402
from taxifare.preprocessing.sink import manifest_path, processed_fingerprint, read_manifest  # noqa: E402
from taxifare.rides.features import FEATURE_NAMES  # noqa: E402
from taxifare.sources.demo import write_demo_rides  # noqa: E402
from taxifare.training.data import SPANS_PER_CHUNK, FeatureStatistics, open_processed, read_rows, span_rows  # noqa: E402
from taxifare.training.loop import train  # noqa: E402
from taxifare.training.splits import TRAIN, assign_sets, row_hashes  # noqa: E402

REAL_SAMPLE = REPO.parent / "shared" / "data" / "nyc-taxi" / "cab-fare-ashutoshgalinde_train.csv"


def seed_processed(workdir: Path) -> Path:
    """A processed CSV made by the real pipeline from the real sample (or demo rides)."""
    settings = load_settings({"local_data_path": str(workdir / "seed"), "data_size": "seed"}, environ={}, dotenv_path=None)
    if REAL_SAMPLE.is_file():
        print(f"seed rows: real sample {REAL_SAMPLE.name}, preprocessed")
        raw = REAL_SAMPLE
    else:
        print("seed rows: synthetic demo rides (real sample absent), preprocessed")
        raw = workdir / "demo.csv"
        write_demo_rides(raw, rows=100_000)
    return preprocess(settings, input_path=raw).output


def scaled_processed(seed: Path, rows: int, target: Path) -> Path:
    """`rows` processed rows: the seed file's data lines repeated, and a complete manifest for them."""
    with seed.open("rb") as file:
        header, body = file.readline(), file.read()
    lines = body.count(b"\n")
    copies, rest = divmod(rows, lines)
    tail = b"".join(body.splitlines(keepends=True)[:rest])
    with target.open("wb") as file:
        file.write(header)
        for _ in range(copies):
            file.write(body)
        file.write(tail)
    seed_manifest = read_manifest(seed)
    mean_fare = seed_manifest["target_sum"] / seed_manifest["rows_kept"]
    manifest = {**seed_manifest, "rows_kept": rows, "target_sum": mean_fare * rows, "bytes": target.stat().st_size,
                "fingerprint": processed_fingerprint(target)}
    manifest_path(target).write_text(json.dumps(manifest))
    return target


def settings_for(workdir: Path, **flags):
    base = {"local_data_path": str(workdir / "data"), "local_registry_path": str(workdir / "registry")}
    return load_settings({**base, **flags}, environ={}, dotenv_path=None)


def in_memory_throughput(processed: Path, settings) -> dict:
    data = open_processed(processed, span_rows(settings.chunk_size))
    rows = read_rows(data, data.spans)
    rows = rows[assign_sets(row_hashes(rows, data.identity)) == TRAIN]
    statistics = FeatureStatistics.empty(rows.shape[1])
    statistics.add(rows)
    spec = ModelSpec.of(settings)
    day = FEATURE_NAMES.index("days_since_2009")
    dates = (statistics.minimum[day], statistics.maximum[day])
    model = build_model(spec, settings.learning_rate, settings.seed, statistics.mean[:-1], statistics.variance[:-1], statistics.mean[-1], None, dates)
    started = time.perf_counter()
    # The fares as a column, as the streamed loop feeds them (an ensemble's loss compares each member with it).
    model.fit(rows[:, :-1], rows[:, -1:], batch_size=settings.batch_size, epochs=1, verbose=0)
    seconds = time.perf_counter() - started
    return {"rows": len(rows), "seconds": seconds, "row_epochs_per_s": len(rows) / seconds}


def streamed_throughput(processed: Path, settings) -> dict:
    started = time.perf_counter()
    run = train(settings, input_path=processed, force=True).run
    wall = time.perf_counter() - started
    final = run.metrics["final"]
    return {
        "rows": final["rows_trained"],
        "loop_seconds": final["train_seconds"],
        "wall_seconds": wall,
        "fit_seconds": final["fit_seconds"],
        "row_epochs_per_s": final["rows_trained"] / final["train_seconds"],
        "row_epochs_per_s_fitting": final["rows_trained"] / final["fit_seconds"],
        "row_epochs_per_s_whole_call": final["rows_trained"] / wall,
        "test_mae": final["test_mae"],
    }


def measure_in_subprocess(kind: str, processed: Path, workdir: Path) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--measure", kind, "--processed", str(processed), "--workdir", str(workdir)],
        capture_output=True, text=True, cwd=workdir, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    if done.returncode:
        sys.exit(f"{kind} measurement failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def train_process_peak_rss(processed: Path, workdir: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "LOCAL_REGISTRY_PATH": str(workdir / "registry-rss")}
    started = time.perf_counter()
    done = subprocess.run(
        # One whole pass: every row must go through for the memory figure to mean anything.
        [sys.executable, "-m", "taxifare", "train", "--input", str(processed), "--force", "--epochs", "1"],
        env=env, capture_output=True, text=True, cwd=workdir,
    )
    if done.returncode:
        sys.exit(f"train failed:\n{done.stderr[-3000:]}")
    peak = float(re.search(r"peak memory:\s+([\d,]+) MB", done.stderr).group(1).replace(",", ""))
    return {"peak_rss_mb": peak, "wall_seconds": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--throughput-rows", type=int, default=2_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rss-rows", type=int, nargs="*", default=[1_000_000, 4_000_000])
    parser.add_argument("--measure", choices=["in-memory", "streamed"], help=argparse.SUPPRESS)
    parser.add_argument("--processed", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure = in_memory_throughput if args.measure == "in-memory" else streamed_throughput
        # One pass: the streamed run trains every row once, as the in-memory fit does.
        print(json.dumps(measure(args.processed, settings_for(args.workdir, epochs=1))))
        return

    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="taxifare-bench-train-") as tmp:
        workdir = Path(tmp)
        seed = seed_processed(workdir)
        processed = scaled_processed(seed, args.throughput_rows, workdir / "processed_throughput.csv")
        # Each measurement in a fresh process, alternated and repeated: this machine's speed drifts by
        # tens of percent between runs, so each in-memory run is paired with the streamed run after it,
        # and the pairs' median ratio is the figure (the best of each kind is shown too).
        memory, streamed = [], []
        for _ in range(args.repeats):
            memory.append(measure_in_subprocess("in-memory", processed, workdir))
            streamed.append(measure_in_subprocess("streamed", processed, workdir))
        results["throughput"] = {"in_memory": memory, "streamed": streamed}
        for figure in ("row_epochs_per_s", "row_epochs_per_s_fitting", "row_epochs_per_s_whole_call"):
            ratios = [run[figure] / baseline["row_epochs_per_s"] for baseline, run in zip(memory, streamed)]
            best = max(run[figure] for run in streamed) / max(run["row_epochs_per_s"] for run in memory)
            results["throughput"][figure] = {"paired_ratios": ratios, "median": statistics.median(ratios), "best": best}
        processed.unlink()
        results["rss"] = []
        for rows in args.rss_rows:
            processed = scaled_processed(seed, rows, workdir / f"processed_{rows}.csv")
            results["rss"].append({"rows": rows, **train_process_peak_rss(processed, workdir)})
            processed.unlink()
            shutil.rmtree(workdir / "registry-rss", ignore_errors=True)

    throughput = results["throughput"]
    print(json.dumps(results, indent=2, default=lambda v: round(v, 3)))
    print(f"\nstreamed / in-memory row-epochs per second, {args.repeats} pairs (median of pairs; best vs best):")
    for figure, label in (
        ("row_epochs_per_s", "chunk loop (reads, fitting, validation scoring, checkpoints)"),
        ("row_epochs_per_s_fitting", "its fitting alone"),
        ("row_epochs_per_s_whole_call", "whole train call (plus the pass that splits the rows, publish)"),
    ):
        print(f"  {throughput[figure]['median']:.2f}; {throughput[figure]['best']:.2f}  {label}")
    print("  target >= 0.9 for the chunk loop")
    for entry in results["rss"]:
        print(f"taxifare train on {entry['rows']:>10,} processed rows: peak RSS {entry['peak_rss_mb']:,.0f} MB, "
              f"{entry['wall_seconds']:.0f} s")
    print(f"spans per chunk {SPANS_PER_CHUNK}; target: peak RSS flat from the smallest to the largest size")


if __name__ == "__main__":
    main()
