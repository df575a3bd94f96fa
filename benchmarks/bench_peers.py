"""taxifare preprocess against the same job written in Polars and in DuckDB SQL (peers.py), as whole processes.

    python benchmarks/bench_peers.py --rows 1000000 4000000 --pairs 5 [--baseline CHECKOUT]

For each size: writes a raw CSV (real rows scaled up, as bench_preprocess.py does), then runs `pairs`
rounds of the three on it, in a rotating order, each a process limited to 2 threads (POLARS_MAX_THREADS=2,
DuckDB `threads=2`; taxifare has its main thread and its writer thread), its output deleted before its
clock starts. Measures wall time, CPU seconds (user + system) and peak RSS of each process, through a
small launcher process: a child's peak RSS counts its parent's at the fork, and this script holds the
raw rows and the outputs it compares. Checks, on the first round's outputs, that the peers keep the
same rows in the same order with the same values to float32 precision. Reports the medians of the
paired ratios, because this VM is shared and its speed drifts.
Targets: taxifare's wall and CPU ratios to Polars' <= 1.0; taxifare's peak RSS <= 500 MB.
`--baseline`: another checkout of taxifare (e.g. `git worktree add /tmp/before HEAD~3`), timed in the same
rounds as `baseline`, so that a change is measured against the code before it on the same load.
"""

from __future__ import annotations

import argparse
import filecmp
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_preprocess import REPO, scaled_raw_files
from peers import write_spec

PEERS = ("polars", "duckdb")
# Runs the command (argv[2:]) and writes its exit code, wall seconds, CPU seconds and peak RSS (KB) to argv[1].
LAUNCHER = """import resource, subprocess, sys, time
started = time.perf_counter()
code = subprocess.call(sys.argv[2:], stdout=sys.stderr)
wall = time.perf_counter() - started
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
open(sys.argv[1], "w").write(f"{code} {wall} {usage.ru_utime + usage.ru_stime} {usage.ru_maxrss}")
"""


def timed_process(command: list[str], env: dict, log: Path) -> dict:
    """Wall time, CPU seconds (user + system) and peak RSS (MB) of one process run to its end."""
    figures = log.with_suffix(".figures")
    with log.open("w") as output:
        subprocess.run([sys.executable, "-c", LAUNCHER, str(figures), *command], env=env, stderr=output, cwd=log.parent, check=True)
    code, wall, cpu, peak_kb = figures.read_text().split()
    if int(code):
        sys.exit(f"{' '.join(command[:4])} ... failed:\n{log.read_text()[-3000:]}")
    return {"wall": float(wall), "cpu": float(cpu), "peak_mb": float(peak_kb) / 1024}


def run_engine(engine: str, raw: Path, workdir: Path, spec: Path, chunk_size: int, baseline: Path | None) -> tuple[dict, Path]:
    """Run one engine on `raw`; its figures and its output."""
    data = workdir / engine / "data"
    env = {**os.environ, "POLARS_MAX_THREADS": "2", "PYTHONPATH": str(REPO), "LOCAL_DATA_PATH": str(data)}
    if engine in ("taxifare", "baseline"):
        shutil.rmtree(data / "processed", ignore_errors=True)  # freeing it is not preprocessing
        if engine == "baseline":
            env["PYTHONPATH"] = str(baseline)
        command = [sys.executable, "-m", "taxifare", "preprocess", "--input", str(raw), "--data-size", "bench",
                   "--chunk-size", str(chunk_size), "--force"]
        measured = timed_process(command, env, data.parent / "taxifare.log")
        return measured, next((data / "processed").glob("*_bench.csv"))
    output = workdir / f"{engine}.csv"
    output.unlink(missing_ok=True)
    command = [sys.executable, str(REPO / "benchmarks" / "peers.py"), engine, str(spec), str(raw), str(output)]
    return timed_process(command, env, workdir / f"{engine}.log"), output


def row_blocks(path: Path, rows: int):
    """The CSV's rows as float64 tables of exactly `rows` rows (the last may be shorter)."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    reader = pa_csv.open_csv(path, read_options=pa_csv.ReadOptions(block_size=8 << 20))
    pending = None
    for batch in reader:
        table = pa.Table.from_batches([batch]) if pending is None else pa.concat_tables([pending, pa.Table.from_batches([batch])])
        while table.num_rows >= rows:
            yield table.slice(0, rows)
            table = table.slice(rows)
        pending = table
    if pending is not None and pending.num_rows:
        yield pending


def disagreement(ours: Path, theirs: Path) -> str | None:
    """None when `theirs` has the same columns, rows and values (to float32 precision) as `ours`, else how it differs."""
    import numpy as np

    tolerance = float(np.finfo(np.float32).eps)
    compared = 0
    blocks = zip(row_blocks(ours, 200_000), row_blocks(theirs, 200_000))
    for mine, peer in blocks:
        if mine.column_names != peer.column_names:
            return f"columns differ: {peer.column_names[:5]}..."
        if mine.num_rows != peer.num_rows:
            break
        for name in mine.column_names:
            a, b = (table.column(name).to_numpy().astype(np.float64) for table in (mine, peer))
            far = ~np.isclose(b, a, rtol=2 * tolerance, atol=tolerance)
            if far.any():
                row = compared + int(np.argmax(far))
                return f"row {row:,} {name}: taxifare {float(a[far][0])!r}, peer {float(b[far][0])!r} ({int(far.sum())} values in the block)"
        compared += mine.num_rows
    ours_rows, theirs_rows = (sum(1 for _ in path.open("rb")) - 1 for path in (ours, theirs))
    return None if ours_rows == theirs_rows else f"{theirs_rows:,} rows, taxifare {ours_rows:,}"


def median_ratio(pairs: list[dict], engine: str, key: str) -> str:
    ratios = [pair["taxifare"][key] / pair[engine][key] for pair in pairs]
    return f"{statistics.median(ratios):.2f} ({min(ratios):.2f}..{max(ratios):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 4_000_000])
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--peers", nargs="+", choices=PEERS, default=list(PEERS))
    parser.add_argument("--chunk-size", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--baseline", type=Path, help="another checkout of taxifare, timed as the engine `baseline`")
    args = parser.parse_args()
    for module in args.peers:
        if not importlib.util.find_spec(module):
            sys.exit(f"{module} is not installed: pip install -e '.[bench]'")

    compared = [*args.peers, *(["baseline"] if args.baseline else [])]
    engines = ["taxifare", *compared]
    summary = []
    with tempfile.TemporaryDirectory(prefix="taxifare-bench-peers-") as tmp:
        workdir = Path(tmp)
        spec = workdir / "spec.json"
        write_spec(spec)
        for rows, raw in scaled_raw_files(args.rows, args.seed, workdir):
            pairs = []
            for number in range(args.pairs):
                order = engines[number % len(engines):] + engines[: number % len(engines)]
                outputs, pair = {}, {}
                for engine in order:
                    (workdir / engine).mkdir(exist_ok=True)
                    pair[engine], outputs[engine] = run_engine(engine, raw, workdir, spec, args.chunk_size, args.baseline)
                if number == 0:
                    same_bytes = args.baseline and filecmp.cmp(outputs["taxifare"], outputs["baseline"], shallow=False)
                    for engine in compared:
                        differs = None if engine == "baseline" and same_bytes else disagreement(outputs["taxifare"], outputs[engine])
                        if differs:
                            sys.exit(f"{engine} does not agree with taxifare at {rows:,} rows: {differs}")
                    print(f"{rows:,} rows: {', '.join(compared)} keep the same rows with the same values as taxifare"
                          + (f" (baseline: the same bytes: {same_bytes})" if args.baseline else ""))
                pairs.append(pair)
                print(json.dumps({"rows": rows, "pair": number, **pair}, default=lambda v: round(v, 2)))
            summary.append((rows, pairs))

    print("\nmedians over the pairs; ratios are taxifare's over the engine's, median of the paired ratios (min..max)")
    print("rows       engine    wall s  CPU s  peak MB  taxifare wall ratio  taxifare CPU ratio")
    for rows, pairs in summary:
        for engine in engines:
            ratios = ("", "") if engine == "taxifare" else (median_ratio(pairs, engine, "wall"), median_ratio(pairs, engine, "cpu"))
            print(f"{rows:<10,} {engine:<9} {statistics.median(p[engine]['wall'] for p in pairs):<7.2f} "
                  f"{statistics.median(p[engine]['cpu'] for p in pairs):<6.2f} {max(p[engine]['peak_mb'] for p in pairs):<8.0f} "
                  f"{ratios[0]:<20} {ratios[1]}")
    print("targets: taxifare's wall and CPU ratios to polars <= 1.0; taxifare's peak RSS <= 500 MB")


if __name__ == "__main__":
    main()
