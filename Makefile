# Every target sets up its own virtual environment from pyproject.toml first.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
TAXIFARE := $(VENV)/bin/taxifare

.PHONY: install demo test test-oldest bench bench-preprocess bench-train bench-pred bench-quality bench-distributed bench-dask bench-dedup bench-peers bench-formats soak notebook clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

## The main job on the built-in synthetic demo data: no cloud account, no download.
demo: install
	$(TAXIFARE) demo-data
	$(TAXIFARE) preprocess --data-size demo
	$(TAXIFARE) train --data-size demo
	$(TAXIFARE) pred

## The default test suite (what CI runs), in two pytest processes: most tests wait on a subprocess (the
## CLI, a Dask or TensorFlow worker) that uses one core. A test file stays in one process, so that its
## module-wide fixtures (trained runs, processed files) are made once.
PYTEST_ARGS ?= -q -n 2 --dist loadfile
test: install
	$(PY) -m pytest $(PYTEST_ARGS)

## The same suite on the oldest versions allowed (pandas 2.2, NumPy 1.26, pyarrow 24, TensorFlow 2.20...:
## tests/constraints-oldest.txt), in a virtual environment of its own; `make test` gets the newest (pandas 3).
VENV_OLDEST ?= .venv-oldest

$(VENV_OLDEST)/.installed: pyproject.toml tests/constraints-oldest.txt
	$(PYTHON) -m venv $(VENV_OLDEST)
	$(VENV_OLDEST)/bin/python -m pip install -q --upgrade pip
	$(VENV_OLDEST)/bin/python -m pip install -q -e '.[test]' -c tests/constraints-oldest.txt
	touch $@

test-oldest: $(VENV_OLDEST)/.installed
	$(VENV_OLDEST)/bin/python -m pytest $(PYTEST_ARGS)

## The exploration notebook run top to bottom in Jupyter (nbconvert) on fresh demo data in a temporary
## LOCAL_DATA_PATH; the executed copy, figures included, is build/explore_processed.ipynb.
$(VENV)/.notebook: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[notebook]'
	touch $@

notebook: $(VENV)/.notebook
	data=$$(mktemp -d) && trap 'rm -rf "$$data"' EXIT && export LOCAL_DATA_PATH="$$data" DATA_SIZE=demo && \
	$(TAXIFARE) --quiet demo-data --rows 20000 >/dev/null && $(TAXIFARE) --quiet preprocess >/dev/null && \
	$(PY) -m nbconvert --to notebook --execute --ExecutePreprocessor.timeout=600 \
		--output-dir build --output explore_processed.ipynb notebooks/explore_processed.ipynb

clean:
	rm -rf $(VENV) $(VENV_OLDEST) .pytest_cache

## Benchmarks: speed and memory, measured by scripts (never by timed tests).
bench: bench-preprocess bench-train bench-pred bench-quality bench-dask bench-distributed bench-dedup bench-peers bench-formats

bench-preprocess: install
	$(PY) benchmarks/bench_preprocess.py --rows 1000000 4000000

bench-train: install
	$(PY) benchmarks/bench_train.py --throughput-rows 2000000 --repeats 5 --rss-rows 1000000 4000000

## Test MAE of the default run on the real sample (3 seeds), outside rows, warm start against fresh, later dates,
## and the default against LightGBM on held-out rows that chose nothing.
bench-quality: install
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) benchmarks/bench_quality.py --seeds 42 7 11 --variant-seeds 1 --configs no-meter-steps no-flat-fares previous-default one-network 3-networks lr-0.001 --warm-passes 2 --later-check --dev-check

## One worker against two on this machine; all-reduce cost per step; projection to N machines.
bench-distributed: install
	$(PY) benchmarks/bench_distributed.py --rides 100000 --repeats 3

## One chunk's update of the duplicate index at 1M, 10M and 50M rows seen: sorted runs against one array.
bench-dedup: install
	$(PY) benchmarks/bench_dedup.py --rows 1000000 10000000 50000000

## The same rides as CSV, gzip and Parquet, in pairs (wall, peak memory; outputs byte-identical):
bench-formats: install
	$(PY) benchmarks/bench_formats.py --rows 1000000 4000000 --pairs 3

bench-pred: install
	$(PY) benchmarks/bench_pred.py --repeats 5

## One process against a local Dask cluster of 2 workers, in pairs, same raw CSV.
bench-dask: install
	$(PY) benchmarks/bench_dask.py --rows 1000000 4000000 --pairs 5 --workers 2

## The same job written in Polars and in DuckDB SQL (benchmarks/peers.py; the extra `bench` installs them):
## whole processes of 2 threads on the same raw CSV, in pairs; same rows and values checked.
bench-peers: install
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) benchmarks/bench_peers.py --rows 1000000 4000000 --pairs 5

## Kill preprocess 20 times and train 10 times at random moments; check the outputs.
soak: install
	$(PY) benchmarks/soak.py --rows 300000 --preprocess-kills 20 --train-kills 10
