"""`taxifare pred` for one ride, whole process, against the time to import TensorFlow alone.

    python benchmarks/bench_pred.py --repeats 5

Trains a small run on synthetic demo rides in a temporary registry, then times, alternately, a fresh
`python -c "import tensorflow"` and a fresh `python -m taxifare pred` (the reference ride, latest run).
Target: pred <= TensorFlow import + 1 s (best of the repeats, both measured in this run).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def timed(command: list[str], env: dict, cwd: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="taxifare-bench-pred-") as tmp:
        workdir = Path(tmp)
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "LOCAL_DATA_PATH": str(workdir / "data"),
            "LOCAL_REGISTRY_PATH": str(workdir / "registry"),
            "TF_CPP_MIN_LOG_LEVEL": "2",
        }
        taxifare = [sys.executable, "-m", "taxifare"]
        for step in (["demo-data", "--rows", "20000"], ["preprocess"], ["train", "--epochs", "2"]):
            timed([*taxifare, *step], env, workdir)
        tf_import, pred = [], []
        for _ in range(args.repeats):
            tf_import.append(timed([sys.executable, "-c", "import tensorflow"], env, workdir))
            pred.append(timed([*taxifare, "pred"], env, workdir))
    print(f"import tensorflow: best {min(tf_import):.2f} s, median {sorted(tf_import)[len(tf_import) // 2]:.2f} s")
    print(f"taxifare pred:     best {min(pred):.2f} s, median {sorted(pred)[len(pred) // 2]:.2f} s")
    print(f"pred - import: {min(pred) - min(tf_import):+.2f} s (best), target <= +1.00 s")


if __name__ == "__main__":
    main()
