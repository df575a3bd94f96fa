"""One worker against two on this machine, and what that predicts for N machines.

    python benchmarks/bench_distributed.py --rides 100000 --repeats 3

Processed rows: synthetic demo rides, preprocessed. Each measurement is a fresh `taxifare train --epochs 3`
(default model, --batch-size 256, one chunk per pass), alternated 1 worker / 2 workers --repeats times:
  - steady throughput (row-epochs per second over the passes after the first, whose time includes
    tracing the step function) and step time (those seconds per optimizer step); for 2 workers, both
    share this machine's cores;
  - all-reduce cost: two processes joined as a cluster on 127.0.0.1 time an all-reduce of a vector the
    size of the model's gradients (the exchange of every step), 500 times, in a traced function.
From them: the expected throughput on N machines, each with this machine's compute, if a step costs the
compute of 256/N rows plus the measured all-reduce (ring: roughly flat in N on a LAN; loopback here is
faster than a LAN, so the figure is optimistic by the network's extra latency).
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from taxifare.core.config import load_settings  # noqa: E402
from taxifare.preprocessing.run import preprocess  # noqa: E402
from taxifare.registry.store import Registry  # noqa: E402
from taxifare.sources.demo import write_demo_rides  # noqa: E402
from taxifare.training.tf_cluster import local_tf_configs  # noqa: E402

# Three passes of one chunk each: the first pays for tracing the step function, the other two are measured.
ARGS = ("train", "--epochs", "3", "--patience", "100", "--batch-size", "256", "--chunk-size", "200000")


def train_run(workdir: Path, workers: int) -> dict:
    registry = workdir / f"registry-{workers}-{time.monotonic_ns()}"
    env = {**os.environ, "PYTHONPATH": str(REPO), "LOCAL_DATA_PATH": str(workdir / "data"), "LOCAL_REGISTRY_PATH": str(registry), "TF_CPP_MIN_LOG_LEVEL": "2"}
    configs = local_tf_configs(workers)
    processes = []
    for index in range(workers):
        extra = {"TF_CONFIG": configs[index]} if workers > 1 else {}
        processes.append(subprocess.Popen([sys.executable, "-m", "taxifare", *ARGS], env={**env, **extra}, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    for process in processes:
        _, stderr = process.communicate(timeout=1800)
        if process.returncode:
            raise SystemExit(f"training failed: {stderr[-1500:]}")
    metrics = Registry(registry).latest().metrics
    final = metrics["final"]
    # Wall time of each pass after the first (its one chunk: reading, fitting), so no tracing.
    steady = statistics.median(entry["seconds"] for entry in metrics["evaluations"][1:])
    return {
        "rows": final["rows_trained"],
        "pass_seconds": steady,
        "steps": final["optimizer_iterations"],
        "row_epochs_per_s": final["rows_trained"] / final["passes"] / steady,
        "step_ms": 1000 * steady / (final["optimizer_iterations"] / final["passes"]),
        "test_mae": final["test_mae"],
    }


def allreduce_probe(size: int, repeats: int) -> None:
    """One of two processes (its TF_CONFIG in the environment): join, then time `repeats` all-reduces of
    `size` float32 (prints ms each)."""
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    import numpy as np
    import tensorflow as tf

    strategy = tf.distribute.MultiWorkerMirroredStrategy()

    @tf.function
    def reduce_many(vector):
        def step(value):
            return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, value * 1.0)

        total = tf.zeros_like(vector)
        for _ in tf.range(repeats):
            total += strategy.experimental_local_results(strategy.run(step, args=(vector,)))[0]
        return total

    vector = tf.constant(np.ones(size, dtype=np.float32))
    reduce_many(vector)  # trace and warm up
    started = time.perf_counter()
    reduce_many(vector)
    print(json.dumps({"allreduce_ms": 1000 * (time.perf_counter() - started) / repeats}))


def allreduce_ms(size: int, repeats: int) -> float:
    processes = [
        subprocess.Popen(
            [sys.executable, __file__, "--probe", "--size", str(size), "--probe-repeats", str(repeats)],
            env={**os.environ, "TF_CONFIG": config}, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        for config in local_tf_configs(2)
    ]
    outputs = [process.communicate(timeout=600)[0] for process in processes]
    return max(json.loads(output.strip().splitlines()[-1])["allreduce_ms"] for output in outputs)


def gradient_size() -> int:
    import numpy as np

    from taxifare.model.network import build_model
    from taxifare.model.spec import ModelSpec
    from taxifare.rides.features import FEATURE_NAMES

    settings = load_settings({}, environ={}, dotenv_path=None)
    spec = ModelSpec.of(settings)
    features = len(FEATURE_NAMES)
    model = build_model(spec, 0.001, 1, np.zeros(features), np.ones(features), 10.0)
    return int(sum(np.prod(variable.shape) for variable in model.trainable_variables))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rides", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int)
    parser.add_argument("--probe-repeats", type=int, default=500)
    options = parser.parse_args()
    if options.probe:
        allreduce_probe(options.size, options.probe_repeats)
        return

    with tempfile.TemporaryDirectory(prefix="bench-distributed-") as folder:
        workdir = Path(folder)
        settings = load_settings({"local_data_path": str(workdir / "data"), "data_size": "demo"}, environ={}, dotenv_path=None)
        write_demo_rides(settings.raw_cache_path, rows=options.rides)
        preprocess(settings)
        runs = {1: [], 2: []}
        for repeat in range(options.repeats):
            for workers in (1, 2):
                runs[workers].append(train_run(workdir, workers))
                print(f"repeat {repeat + 1}, {workers} worker(s): {json.dumps(runs[workers][-1])}", flush=True)
        size = gradient_size()
        reduce_ms = [allreduce_ms(size, options.probe_repeats) for _ in range(options.repeats)]

    def spread(values):
        return f"{statistics.median(values):,.1f} (min {min(values):,.1f}, max {max(values):,.1f})"

    print(f"\nrides {options.rides:,}; default model, {size:,} gradient values; batch 256; {options.repeats} repeats; medians (min, max)")
    for workers in (1, 2):
        print(f"  {workers} worker(s) on this machine: {spread([run['row_epochs_per_s'] for run in runs[workers]])} row-epochs/s (steady passes); "
              f"step {spread([run['step_ms'] for run in runs[workers]])} ms; test MAE {spread([run['test_mae'] for run in runs[workers]])}")
    print(f"  all-reduce of the gradients, 2 processes on 127.0.0.1: {spread(reduce_ms)} ms per step")
    step_one = statistics.median(run["step_ms"] for run in runs[1])
    reduce_one = statistics.median(reduce_ms)
    print("  expected on N machines like this one (compute of 256/N rows per step + one all-reduce):")
    for machines in (1, 2, 4, 8, 16):
        step = step_one / machines + (reduce_one if machines > 1 else 0.0)
        print(f"    N={machines:>2}: step {step:.2f} ms, {256 / step * 1000:,.0f} row-epochs/s")


if __name__ == "__main__":
    main()
