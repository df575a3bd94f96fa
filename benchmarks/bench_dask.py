"""preprocess in one process against `--workers N` (a local Dask cluster), on the same raw CSV, in pairs.

    python benchmarks/bench_dask.py --rows 1000000 4000000 --pairs 5 --workers 2

For each size: writes a raw CSV (real rows scaled up as in bench_preprocess.py, synthetic when the real
sample is absent), then runs `pairs` pairs of (single process, cluster), in alternating order, and
measures for each run: wall time, CPU seconds of all its processes (user + system, the client and the
worker processes it started and reaped), the client's peak memory (its summary) and each worker's
(the manifest's engine field). Checks that both outputs are byte-identical.
Reports medians of the paired ratios, because this VM's speed drifts between runs.
Targets (2 cores): cluster rows/s >= 1.25x single; cluster CPU s per million rows <= 1.3x single;
the client's peak memory flat from the smallest to the largest size.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_preprocess import REPO, scaled_raw_files


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(raw: Path, data_dir: Path, chunk_size: int, workers: int | None) -> dict:
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "LOCAL_DATA_PATH": str(data_dir), "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "taxifare", "preprocess", "--input", str(raw), "--data-size", "bench",
               "--chunk-size", str(chunk_size), "--force"]
    if workers:
        command += ["--workers", str(workers)]
    # The previous run's output goes before the clock starts: freeing a gigabyte of it takes ~0.7 s, the
    # same for both engines, and is not preprocessing.
    shutil.rmtree(data_dir / "processed", ignore_errors=True)
    cpu_before, started = children_cpu_seconds(), time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=data_dir)
    wall, cpu = time.perf_counter() - started, children_cpu_seconds() - cpu_before
    if done.returncode:
        sys.exit(f"preprocess failed:\n{done.stderr[-3000:]}")
    output = Path(done.stdout.strip())
    manifest = json.loads(output.with_suffix(".json").read_text())
    peaks = manifest.get("engine", {}).get("worker_peak_mb", {})
    return {
        "wall": wall,
        "cpu": cpu,
        "client_mb": float(re.search(r"peak memory:\s+([\d,]+) MB", done.stderr).group(1).replace(",", "")),
        "worker_mb": sorted(round(peak) for peak in peaks.values()),
        "output": output,
        "rows_read": manifest["rows_read"],
    }


def same_bytes(first: Path, second: Path) -> bool:
    return subprocess.run(["cmp", "-s", str(first), str(second)]).returncode == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 4_000_000])
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--chunk-size", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    summary = []
    with tempfile.TemporaryDirectory(prefix="taxifare-bench-dask-") as tmp:
        workdir = Path(tmp)
        for rows, raw in scaled_raw_files(args.rows, args.seed, workdir):
            pairs = []
            for number in range(args.pairs):
                order = [None, args.workers] if number % 2 == 0 else [args.workers, None]
                measured = {workers: run(raw, workdir / f"data_{workers or 1}", args.chunk_size, workers) for workers in order}
                single, cluster = measured[None], measured[args.workers]
                if not same_bytes(single["output"], cluster["output"]):
                    sys.exit("the cluster's processed CSV differs from the single process's")
                pairs.append((single, cluster))
                print(json.dumps({"rows": rows, "pair": number, **{
                    f"{name}_{key}": value for name, run_ in (("single", single), ("cluster", cluster))
                    for key, value in run_.items() if key != "output"}}, default=lambda v: round(v, 2)))
            summary.append((rows, pairs))

    print(f"\n{args.workers} workers against one process; medians over the pairs (min..max of the ratios)")
    print("rows       single s  cluster s  speedup            single CPU s/M  cluster CPU s/M  CPU ratio          "
          "client MB (single, cluster)  worker peak MB")
    for rows, pairs in summary:
        speedups = [single["wall"] / cluster["wall"] for single, cluster in pairs]
        cpu_ratios = [cluster["cpu"] / single["cpu"] for single, cluster in pairs]
        per_million = rows / 1e6
        print(
            f"{rows:<10,} {statistics.median(p[0]['wall'] for p in pairs):<9.1f} "
            f"{statistics.median(p[1]['wall'] for p in pairs):<10.1f} "
            f"{statistics.median(speedups):.2f} ({min(speedups):.2f}..{max(speedups):.2f})   "
            f"{statistics.median(p[0]['cpu'] for p in pairs) / per_million:<15.1f} "
            f"{statistics.median(p[1]['cpu'] for p in pairs) / per_million:<16.1f} "
            f"{statistics.median(cpu_ratios):.2f} ({min(cpu_ratios):.2f}..{max(cpu_ratios):.2f})   "
            f"{max(p[0]['client_mb'] for p in pairs):.0f}, {max(p[1]['client_mb'] for p in pairs):<22.0f} "
            f"{max(max(p[1]['worker_mb'], default=0) for p in pairs)}"
        )
    if len(summary) > 1:
        # Fixed costs (starting workers, imports) cancel out: what each further million rows costs.
        (small, small_pairs), (large, large_pairs) = summary[0], summary[-1]
        marginal = [statistics.median(p[side]["cpu"] for p in large_pairs) - statistics.median(p[side]["cpu"] for p in small_pairs)
                    for side in (0, 1)]
        per_million = (large - small) / 1e6
        print(f"marginal CPU s per million rows ({small:,} -> {large:,}): single {marginal[0] / per_million:.1f}, "
              f"cluster {marginal[1] / per_million:.1f}, ratio {marginal[1] / marginal[0]:.2f}")
    print("targets: speedup >= 1.25; CPU ratio <= 1.3; the cluster client's MB flat across sizes")


if __name__ == "__main__":
    main()
