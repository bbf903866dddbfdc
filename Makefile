# Even & Piu — the two commands a new machine needs: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
IDP    := tests/integration/idp

.PHONY: demo test lint install system-deps idp-deps bench clean

# Python environment: the package and its dev tools, pinned by constraints.txt.
install: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $@

# Real components for the demo and the integration tests (Debian, as root; no-op otherwise).
system-deps:
	@scripts/install-system-deps

# The OIDC provider the tests run (npm oidc-provider, pinned by its lockfile).
idp-deps: $(IDP)/node_modules/.package-lock.json
$(IDP)/node_modules/.package-lock.json: $(IDP)/package-lock.json
	cd $(IDP) && npm ci --no-audit --no-fund --loglevel=error

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: install system-deps idp-deps lint
	$(BIN)/python -m pytest -q

demo: install system-deps
	$(BIN)/python scripts/demo.py

bench: install system-deps
	@echo "benchmarks: see bench/"

clean:
	rm -rf $(VENV) .demo .pytest_cache .mypy_cache .ruff_cache $(IDP)/node_modules
