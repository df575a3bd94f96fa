"""The public file formats against plain CSV: the same rides as CSV, gzip-compressed CSV and Parquet (the
TLC's Parquet typing: naive timestamps, doubles, integers), each preprocessed as a whole process.

    python benchmarks/bench_formats.py --rows 1000000 4000000 --pairs 3

For each size and pair: the three runs back to back (CSV first), wall time and peak RSS from the run's
own summary; the outputs must be byte-identical. Reports, per format, the median of the paired ratios
to CSV (wall, peak). Target: memory as flat as for CSV (peak within ~10% of CSV's, and flat from 1M to
4M rows); speed is reported, not targeted (gzip pays for inflating, Parquet for turning values into text).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import shutil
import statistics
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from bench_preprocess import run_preprocess, scaled_raw_files

FORMATS = ("csv", "gzip", "parquet")


def copies(raw: Path) -> dict[str, Path]:
    """The CSV, its gzip copy and its Parquet copy, the rows in the same order."""
    gz = raw.with_suffix(".csv.gz")
    with raw.open("rb") as source, gzip.open(gz, "wb", compresslevel=6) as target:
        shutil.copyfileobj(source, target, 16 << 20)
    parquet = raw.with_suffix(".parquet")
    table = pa_csv.read_csv(raw, convert_options=pa_csv.ConvertOptions(column_types={"pickup_datetime": pa.string()}))
    pickup = pc.strptime(pc.utf8_slice_codeunits(table.column("pickup_datetime"), 0, 19), format="%Y-%m-%d %H:%M:%S", unit="us")
    table = table.set_column(table.schema.get_field_index("pickup_datetime"), "tpep_pickup_datetime", pickup)
    pq.write_table(table.drop(["key"]), parquet, row_group_size=1_000_000)
    return {"csv": raw, "gzip": gz, "parquet": parquet}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--chunk-size", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="taxifare-bench-formats-") as folder:
        workdir = Path(folder)
        for rows, raw in scaled_raw_files(args.rows, seed=7, workdir=workdir):
            files = copies(raw)
            sizes = {name: path.stat().st_size / 1e6 for name, path in files.items()}
            runs: dict[str, list[dict]] = {name: [] for name in FORMATS}
            for pair in range(args.pairs):
                digests = set()
                for name in FORMATS:
                    measured = run_preprocess(files[name], workdir / f"data_{name}", args.chunk_size)
                    digests.add(hashlib.md5(Path(measured["output"]).read_bytes()).hexdigest())
                    runs[name].append(measured)
                assert len(digests) == 1, f"the formats gave different outputs at {rows:,} rows"
            print(f"\n{rows:,} rows, {args.pairs} pairs (outputs byte-identical)")
            print("format   file MB  median wall s  wall / CSV  median peak MB  peak / CSV")
            for name in FORMATS:
                walls = [run["wall"] / csv_run["wall"] for run, csv_run in zip(runs[name], runs["csv"])]
                peaks = [run["peak_mb"] / csv_run["peak_mb"] for run, csv_run in zip(runs[name], runs["csv"])]
                print(f"{name:<8} {sizes[name]:<8.0f} {statistics.median(run['wall'] for run in runs[name]):<14.2f} "
                      f"{statistics.median(walls):<11.2f} {statistics.median(run['peak_mb'] for run in runs[name]):<15.0f} "
                      f"{statistics.median(peaks):.2f}")
            for path in files.values():
                if path != raw:
                    path.unlink()


if __name__ == "__main__":
    main()
