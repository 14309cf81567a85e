# sluice — the two commands a new user needs are `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
RUNTIME_STAMP := $(VENV)/.runtime-installed
DEV_STAMP := $(VENV)/.dev-installed

.PHONY: run test lint bench lock clean

$(RUNTIME_STAMP): requirements.lock pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --require-hashes --no-deps -r requirements.lock
	$(PIP) install --quiet --no-deps --no-build-isolation -e .
	@touch $@

$(DEV_STAMP): $(RUNTIME_STAMP) requirements-dev.lock
	$(PIP) install --quiet --require-hashes --no-deps -r requirements-dev.lock
	$(PIP) install --quiet --no-deps --no-build-isolation -e .
	@touch $@

run: $(RUNTIME_STAMP)
	$(VENV)/bin/sluice serve

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check src tests benchmarks docs/examples
	$(VENV)/bin/ruff format --check src tests benchmarks docs/examples
	$(VENV)/bin/mypy

test: lint
	$(VENV)/bin/pytest

bench: $(RUNTIME_STAMP)
	$(PY) benchmarks/run_all.py

# Regenerate the lock files (needs pip-tools in some environment: PIPCOMPILE=/path/to/pip-compile).
PIPCOMPILE ?= pip-compile
LOCKFLAGS := --generate-hashes --allow-unsafe --no-emit-index-url --no-emit-find-links --strip-extras
lock:
	$(PIPCOMPILE) -q $(LOCKFLAGS) -o requirements.lock requirements.in
	$(PIPCOMPILE) -q $(LOCKFLAGS) -o requirements-dev.lock requirements-dev.in

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
