# Everything a fresh machine needs: Python 3.11 and make.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
export HOST PORT

.PHONY: run test test-tools bench install dev clean screenshots

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

# The try-it command: the synthetic demo trial (accounts with a published password) is loaded into a store
# with no clinical data and no demo yet, and the terminal says so. TRIALAUDIT_DEMO=0 make run: no demo.
run: $(VENV)/.installed
	TRIALAUDIT_DEMO=$${TRIALAUDIT_DEMO:-1} $(BIN)/trialaudit serve --host $(HOST) --port $(PORT)

# Programs some tests run (the README's First steps use curl and jq; tests/web drives chromium): apt-get installs the missing ones.
TEST_TOOLS ?= curl jq chromium
test-tools:
	@missing=; for tool in $(TEST_TOOLS); do command -v $$tool >/dev/null || missing="$$missing $$tool"; done; \
	if [ -n "$$missing" ]; then echo "installing$$missing (used by the tests) with apt-get"; \
		(apt-get update -qq && apt-get install -y -qq $$missing) >/dev/null \
		|| { echo "the tests need$$missing: apt-get install$$missing"; exit 1; }; fi

test: $(VENV)/.installed-dev test-tools
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -p no:cacheprovider $(PYTEST_ARGS)

bench: $(VENV)/.installed-dev
	@command -v wrk >/dev/null || { echo "installing wrk (the load generator) with apt-get"; \
		(apt-get update -qq && apt-get install -y -qq wrk) >/dev/null || { echo "wrk is needed: apt-get install wrk"; exit 1; }; }
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache

# Refresh the README's screenshots (docs/screenshots/) from the browser tests.
screenshots: $(VENV)/.installed-dev test-tools
	TRIALAUDIT_SCREENSHOTS=1 $(BIN)/python -m pytest -p no:cacheprovider -q tests/web/test_browser.py tests/web/test_site_browser.py
