# Every target sets up its own virtual environment from pyproject.toml first.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
TAXIFARE := $(VENV)/bin/taxifare

.PHONY: install demo test bench soak clean

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

## The default test suite (what CI runs).
test: install
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache

## Training and prediction benchmarks (streamed vs in-memory throughput, memory, pred latency).
.PHONY: bench-train bench-pred
bench-train: install
	$(PY) benchmarks/bench_train.py --throughput-rows 400000 --rss-rows 1000000 4000000

bench-pred: install
	$(PY) benchmarks/bench_pred.py --repeats 5
