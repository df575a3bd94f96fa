"""What the raw input's fingerprint costs: the whole content hashed as the reader reads it.

    python benchmarks/bench_fingerprint.py --megabytes 100 --repeats 5

Writes a raw CSV of about that size (the real sample repeated; demo rows when it is absent), then, in
interleaved repeats on the page-cached file:
  - hash: ContentHash fed the file's bytes in the reader's 16 MB blocks, from memory: what hashing adds
    to every preprocess (the reader reads those blocks anyway);
  - pass: file_fingerprint, the whole file read and hashed, which a reuse check costs (the one read of
    the file when an existing output is reused);
  - sampled: the former fingerprint (size, first and last megabyte), for comparison;
and once, for scale, the local reader itself (CsvRideSource: blocks parsed into chunks, hash included).
Figures are per 100 MiB: median, and min-max over the repeats.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from taxifare.sources.csv_file import CsvRideSource
from taxifare.sources.identity import ContentHash, content_fingerprint, file_fingerprint

REPO = Path(__file__).resolve().parents[1]
REAL_SAMPLE = REPO.parent / "shared" / "data" / "nyc-taxi" / "cab-fare-ashutoshgalinde_train.csv"


BLOCK = 16 << 20


def write_input(path: Path, megabytes: int) -> None:
    seed = REAL_SAMPLE
    if not seed.is_file():
        from taxifare.sources.demo import write_demo_rides

        seed = path.with_name("demo.csv")
        write_demo_rides(seed, rows=200_000)
    header, *rows = seed.read_bytes().splitlines(keepends=True)
    body = b"".join(rows)
    with path.open("wb") as file:
        file.write(header)
        while file.tell() < megabytes << 20:
            file.write(body)


def timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def read_all(path: Path) -> None:
    for _ in CsvRideSource(path, 100_000).chunks():
        pass


def hash_blocks(data: bytes) -> None:
    content, view = ContentHash(), memoryview(data)  # blocks as views: the reader's are not copies either
    for start in range(0, len(data), BLOCK):
        content.update(start, view[start : start + BLOCK])
    content.fingerprint()


def sampled_fingerprint(path: Path, size: int) -> None:
    with path.open("rb") as file:
        content_fingerprint(file, size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--megabytes", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "rides.csv"
        write_input(path, args.megabytes)
        size = path.stat().st_size
        data = path.read_bytes()
        runs: dict[str, list[float]] = {"hash": [], "pass": [], "sampled": []}
        for _ in range(args.repeats):
            runs["hash"].append(timed(lambda: hash_blocks(data)))
            runs["pass"].append(timed(lambda: file_fingerprint(str(path))))
            runs["sampled"].append(timed(lambda: sampled_fingerprint(path, size)))
        runs["read (parse)"] = [timed(lambda: read_all(path))]
        scale = 1000 * (100 << 20) / size
        print(f"input: {size / 1e6:,.0f} MB, {args.repeats} repeats; ms per 100 MiB (median, min-max)")
        for name, seconds in runs.items():
            print(f"  {name:14s} {statistics.median(seconds) * scale:8.1f}  ({min(seconds) * scale:.1f}-{max(seconds) * scale:.1f})")


if __name__ == "__main__":
    main()
