# Everything a fresh machine needs: Python 3.11 and make.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
export HOST PORT

.PHONY: run test bench install dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
dev: $(VENV)/.installed-dev

run: $(VENV)/.installed
	$(BIN)/trialaudit serve --host $(HOST) --port $(PORT)

test: $(VENV)/.installed-dev
	@command -v chromium >/dev/null || { echo "installing chromium (the browser tests of tests/web) with apt-get"; \
		(apt-get update -qq && apt-get install -y -qq chromium) >/dev/null || echo "chromium is needed by tests/web: apt-get install chromium"; }
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -p no:cacheprovider $(PYTEST_ARGS)

bench: $(VENV)/.installed-dev
	@command -v wrk >/dev/null || { echo "installing wrk (the load generator) with apt-get"; \
		(apt-get update -qq && apt-get install -y -qq wrk) >/dev/null || { echo "wrk is needed: apt-get install wrk"; exit 1; }; }
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache
