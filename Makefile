# `make train` and `make test` (and `make lint`: ruff, which CI runs before the tests; `make results`: RESULTS.md
# from the committed checkpoints); each creates .venv from requirements.txt first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
ROOT ?= ../shared/data/pickle

.PHONY: train test test-all lint bench results clean

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

train: $(VENV)/.installed
	$(PY) train.py --config configs/bach_rnn.yaml

test: $(VENV)/.installed
	$(PY) -m pytest -q -m "not slow"

lint: $(VENV)/.installed
	$(PY) -m ruff check .

test-all: $(VENV)/.installed
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) data/cache runs

bench: $(VENV)/.installed
	$(PY) benchmarks/bench.py

results: $(VENV)/.installed
	$(PY) scripts/results.py check --root $(ROOT)
