"""Golden output: the processed CSV of a fixed input and the row hashes that decide the split are
recorded in tests/golden.json, so that any change of output (a new pandas, NumPy or pyarrow) fails here.

The input is made by the code: `taxifare demo-data` rides of a fixed seed plus the malformed lines of
conftest. An intended change of output (a new PREPROCESSOR_VERSION, a new split) is recorded again with

    .venv/bin/python -m tests.test_golden --update

which rewrites tests/golden.json; commit its diff with the change that explains it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from taxifare.core.config import load_settings
from taxifare.preprocessing.run import preprocess
from taxifare.rides.features import PREPROCESSOR_VERSION
from taxifare.training.data import open_processed, read_rows
from taxifare.training.splits import TEST, TRAIN, VALIDATION, assign_sets, row_hashes
from tests.conftest import write_synthetic_raw

GOLDEN = Path(__file__).with_name("golden.json")
REFRESH = ".venv/bin/python -m tests.test_golden --update"
# Several chunks: duplicates span chunks, and unparseable values lie in later ones (pyarrow < 24 misread those).
LINES, CHUNK_SIZE = 5_000, 1_000
_MANIFEST_KEYS = ("rows_read", "rows_kept", "target_sum", "rejected", "rejected_samples")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def golden_figures(folder: Path) -> dict:
    """What is recorded: the hashes of the raw input, the processed CSV, its rows' hashes and their split,
    with the manifest's counts (which say where a changed output differs)."""
    raw = write_synthetic_raw(folder / "golden_raw.csv", LINES)
    settings = load_settings({"local_data_path": str(folder / "data"), "chunk_size": CHUNK_SIZE}, environ={}, dotenv_path=None)
    result = preprocess(settings, input_path=raw)
    data = open_processed(result.output, CHUNK_SIZE)
    try:
        rows = read_rows(data, data.spans)
        hashes = row_hashes(rows, data.identity)
        sets = assign_sets(hashes)
    finally:
        data.file.close()
    return {
        "preprocessor_version": PREPROCESSOR_VERSION,
        "raw_sha256": _sha256(raw.read_bytes()),
        "processed_sha256": _sha256(result.output.read_bytes()),
        "manifest": {key: result.manifest[key] for key in _MANIFEST_KEYS},
        "row_hashes_sha256": _sha256(hashes.astype("<u8").tobytes()),
        "split": {name: int((sets == code).sum()) for name, code in (("train", TRAIN), ("validation", VALIDATION), ("test", TEST))},
        "split_sha256": _sha256(sets.astype(np.int8).tobytes()),
    }


def _versions() -> dict:
    return {"pandas": pd.__version__, "numpy": np.__version__, "pyarrow": pa.__version__}


def test_processed_output_and_split_match_the_recorded_hashes(tmp_path):
    recorded = json.loads(GOLDEN.read_text(encoding="utf-8"))
    figures = golden_figures(tmp_path)
    changed = [key for key in figures if figures[key] != recorded.get(key)]
    why = (
        f"PREPROCESSOR_VERSION is {PREPROCESSOR_VERSION}, the hashes were recorded at {recorded.get('preprocessor_version')}"
        if figures["preprocessor_version"] != recorded.get("preprocessor_version")
        else f"same preprocessor version: with {_versions()} against {recorded.get('recorded_with')} the output changed"
    )
    assert not changed, (
        f"golden output changed in {', '.join(changed)} ({why}). If the change is intended, record it again with "
        f"`{REFRESH}` and commit tests/golden.json; now: {json.dumps({key: figures[key] for key in changed})}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Print the golden figures of this checkout, or record them.")
    parser.add_argument("--update", action="store_true", help=f"rewrite {GOLDEN.name} with them")
    with tempfile.TemporaryDirectory(prefix="taxifare-golden-") as folder:
        text = json.dumps({**golden_figures(Path(folder)), "recorded_with": _versions()}, indent=1) + "\n"
    if parser.parse_args().update:
        GOLDEN.write_text(text, encoding="utf-8")
        print(f"recorded in {GOLDEN}")
    else:
        print(text, end="")
