# sluice — the two commands a new user needs are `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
RUNTIME_STAMP := $(VENV)/.runtime-installed
DEV_STAMP := $(VENV)/.dev-installed
NODE_STAMP := node_modules/.installed

.PHONY: run test lint bench lock clean assets

$(RUNTIME_STAMP): requirements.lock pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --require-hashes --no-deps -r requirements.lock
	$(PIP) install --quiet --no-deps --no-build-isolation -e .
	@touch $@

$(DEV_STAMP): $(RUNTIME_STAMP) requirements-dev.lock
	$(PIP) install --quiet --require-hashes --no-deps -r requirements-dev.lock
	$(PIP) install --quiet --no-deps --no-build-isolation -e .
	@touch $@

# The JavaScript function runtime's libraries (package-lock.json), only where Node.js is present:
# without node, Python functions work and JavaScript functions fail with a clear message.
$(NODE_STAMP): package.json package-lock.json
	@if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then \
		npm ci --no-audit --no-fund --ignore-scripts --loglevel=error && touch $@; \
	else \
		echo "note: Node.js not found: JavaScript functions are unavailable (Python functions work)"; \
	fi

run: $(RUNTIME_STAMP) $(NODE_STAMP)
	$(VENV)/bin/sluice serve

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check src tests benchmarks docs/examples
	$(VENV)/bin/ruff format --check src tests benchmarks docs/examples
	$(VENV)/bin/mypy

test: lint $(NODE_STAMP)
	$(VENV)/bin/pytest

bench: $(RUNTIME_STAMP) $(NODE_STAMP)
	$(PY) benchmarks/run_all.py

# Regenerate the lock files (needs pip-tools in some environment: PIPCOMPILE=/path/to/pip-compile).
PIPCOMPILE ?= pip-compile
LOCKFLAGS := --generate-hashes --allow-unsafe --no-emit-index-url --no-emit-find-links --strip-extras
lock:
	$(PIPCOMPILE) -q $(LOCKFLAGS) -o requirements.lock requirements.in
	$(PIPCOMPILE) -q $(LOCKFLAGS) -o requirements-dev.lock requirements-dev.in

# Rebuild the console's bundled front-end assets (CodeMirror editor, Chart.js charts) from the pinned
# console/package-lock.json. Needs Node.js and npm; not part of run/test: the built files under
# src/sluice/console/static/vendor/ are committed. esbuild's binary comes from its optional platform
# package (@esbuild/linux-x64 etc.), so its install script is not needed.
assets:
	cd console && npm ci --no-audit --no-fund --ignore-scripts && npm run build

clean:
	rm -rf $(VENV) node_modules .mypy_cache .ruff_cache .pytest_cache
