"""Preprocess throughput and memory against the I/O floor, on real rows scaled up.

    python benchmarks/bench_preprocess.py --rows 1000000 4000000

For each size: writes a raw CSV of that many rows (real rows from ../shared/data/nyc-taxi sampled with
replacement plus small jitter; synthetic demo rows when the folder is absent), then measures
  - `taxifare preprocess` as a whole process: wall time, rows/s, peak RSS (from its own summary);
  - the I/O floor in the same run: reading the raw CSV with pyarrow, and writing the processed rows (the
    processed table, already in memory as float32 and int8 columns) with taxifare's own CSV writer, chunk
    by chunk, the fastest that writes these bytes (pyarrow's CSV writer takes about twice as long).
Targets: preprocess wall time <= 1.5x the I/O floor (set when the floor wrote with pyarrow's writer); peak
RSS <= 500 MB at CHUNK_SIZE=100000, and from 1M to 4M rows growing by no more than the duplicate index (8
bytes per distinct row).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

if TYPE_CHECKING:
    import pandas as pd

REPO = Path(__file__).resolve().parents[1]
REAL_SAMPLE = REPO.parent / "shared" / "data" / "nyc-taxi" / "cab-fare-ashutoshgalinde_train.csv"


def seed_rows(workdir: Path) -> pa.Table:
    if REAL_SAMPLE.is_file():
        print(f"seed rows: real sample {REAL_SAMPLE.name}")
        return pa_csv.read_csv(REAL_SAMPLE)
    from taxifare.sources.demo import write_demo_rides

    print("seed rows: synthetic demo rows (real sample absent)")
    path = workdir / "seed.csv"
    write_demo_rides(path, rows=100_000)
    return pa_csv.read_csv(path)


def scaled_raw_csv(seed: pa.Table, rows: int, path: Path, rng: np.random.Generator) -> None:
    """`rows` rows sampled with replacement from `seed`, each nudged by a few metres, seconds and cents."""
    picked = seed.take(pa.array(rng.integers(0, seed.num_rows, rows)))
    columns = {"key": pa.array(np.arange(rows).astype(str))}
    fare = picked.column("fare_amount").to_numpy(zero_copy_only=False)
    columns["fare_amount"] = pa.array(np.round(fare + rng.normal(0, 0.05, rows), 2))
    pickup = pc.strptime(picked.column("pickup_datetime"), format="%Y-%m-%d %H:%M:%S UTC", unit="s", error_is_null=True)
    shift = pa.array(rng.integers(-600, 600, rows).astype("timedelta64[s]"))
    columns["pickup_datetime"] = pc.strftime(pc.add(pickup, shift), format="%Y-%m-%d %H:%M:%S UTC")
    for name in ("pickup_longitude", "pickup_latitude", "dropoff_longitude", "dropoff_latitude"):
        values = picked.column(name).to_numpy(zero_copy_only=False)
        columns[name] = pa.array(np.round(values + rng.normal(0, 2e-4, rows), 6))
    columns["passenger_count"] = picked.column("passenger_count")
    pa_csv.write_csv(pa.table(columns), path)


def scaled_raw_files(sizes: list[int], seed: int, workdir: Path) -> Iterator[tuple[int, Path]]:
    """For each size, a raw CSV of that many rows in `workdir`, deleted once the caller moves on."""
    rng = np.random.default_rng(seed)
    rows_seed = seed_rows(workdir)
    for rows in sizes:
        raw = workdir / f"raw_{rows}.csv"
        scaled_raw_csv(rows_seed, rows, raw, rng)
        yield rows, raw
        raw.unlink()


def run_preprocess(raw: Path, data_dir: Path, chunk_size: int) -> dict:
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "LOCAL_DATA_PATH": str(data_dir), "PYTHONPATH": str(REPO)}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "taxifare", "preprocess", "--input", str(raw), "--data-size", "bench",
         "--chunk-size", str(chunk_size), "--force"],
        env=env, capture_output=True, text=True, cwd=data_dir,
    )
    wall = time.perf_counter() - started
    if done.returncode:
        sys.exit(f"preprocess failed:\n{done.stderr[-3000:]}")
    peak = float(re.search(r"peak memory:\s+([\d,]+) MB", done.stderr).group(1).replace(",", ""))
    output = Path(done.stdout.strip())
    manifest = json.loads(output.with_suffix(".json").read_text())
    return {"wall": wall, "peak_mb": peak, "output": output, "manifest": manifest}


def io_floor(raw: Path, processed: Path, workdir: Path, chunk_size: int) -> tuple[float, float]:
    from taxifare.preprocessing.processed_text import write_rows  # here: the scripts that share this module's raw files need not load it

    started = time.perf_counter()
    reader = pa_csv.open_csv(raw, read_options=pa_csv.ReadOptions(block_size=16 << 20))
    for _ in reader:
        pass
    read_seconds = time.perf_counter() - started
    features, target = processed_rows(processed)
    started = time.perf_counter()
    with (workdir / "floor.csv").open("wb") as file:
        for start in range(0, len(features), chunk_size):
            write_rows(features.iloc[start : start + chunk_size], target[start : start + chunk_size], file)
    write_seconds = time.perf_counter() - started
    (workdir / "floor.csv").unlink()
    return read_seconds, write_seconds


def processed_rows(processed: Path) -> tuple["pd.DataFrame", np.ndarray]:
    """The processed file's features with the types preprocess writes them from, and its fares."""
    import pandas as pd

    from taxifare.rides.features import FEATURE_NAMES, TARGET, is_one_hot

    table = pa_csv.read_csv(processed)
    features = pd.DataFrame({name: table.column(name).to_numpy().astype(np.int8 if is_one_hot(name) else np.float32)
                             for name in FEATURE_NAMES})
    return features, table.column(TARGET).to_numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 4_000_000])
    parser.add_argument("--chunk-size", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    results = []
    with tempfile.TemporaryDirectory(prefix="taxifare-bench-") as tmp:
        workdir = Path(tmp)
        for rows, raw in scaled_raw_files(args.rows, args.seed, workdir):
            measured = run_preprocess(raw, workdir / "data", args.chunk_size)
            read_s, write_s = io_floor(raw, measured["output"], workdir, args.chunk_size)
            manifest = measured["manifest"]
            floor = read_s + write_s
            results.append(
                {
                    "rows": rows,
                    "raw_mb": raw.stat().st_size / 2**20,
                    "kept": manifest["rows_kept"],
                    "preprocess_s": measured["wall"],
                    "rows_per_s": rows / measured["wall"],
                    "floor_read_s": read_s,
                    "floor_write_s": write_s,
                    "ratio_to_floor": measured["wall"] / floor,
                    "peak_rss_mb": measured["peak_mb"],
                    "dup_index_mb": manifest["duplicate_index_bytes"] / 2**20,
                }
            )
            print(json.dumps(results[-1], indent=None, default=lambda v: round(v, 3)))

    print("\nrows       raw MB  kept       preprocess s  rows/s     floor s (read+write)  x floor  peak RSS MB  dup index MB")
    for r in results:
        print(
            f"{r['rows']:<10,} {r['raw_mb']:<7.0f} {r['kept']:<10,} {r['preprocess_s']:<13.2f} {r['rows_per_s']:<10,.0f} "
            f"{r['floor_read_s'] + r['floor_write_s']:5.2f} ({r['floor_read_s']:.2f}+{r['floor_write_s']:.2f})     "
            f"{r['ratio_to_floor']:<8.2f} {r['peak_rss_mb']:<12.0f} {r['dup_index_mb']:.1f}"
        )
    print("targets: x floor <= 1.5 (set when the floor wrote with pyarrow's CSV writer, twice as slow); peak RSS <= 500 MB; "
          "RSS growth 1M->4M <= duplicate index growth")
    if len(results) > 1:
        growth = results[-1]["peak_rss_mb"] - results[0]["peak_rss_mb"]
        index_growth = results[-1]["dup_index_mb"] - results[0]["dup_index_mb"]
        print(f"peak RSS growth {results[0]['rows']:,} -> {results[-1]['rows']:,}: {growth:.0f} MB "
              f"(duplicate index growth {index_growth:.0f} MB)")


if __name__ == "__main__":
    main()
