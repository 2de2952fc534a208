# The two commands a new user needs: `make demo` and `make test`. Both set up everything.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.keytrail-installed

.PHONY: demo test lint pytest bench bench-full diagrams system-deps clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Debian packages the tests and diagrams need (PostgreSQL server, Graphviz); installed when missing and root.
system-deps:
	@sh scripts/system-deps.sh

demo: $(STAMP)
	rm -rf demo-output && mkdir -p demo-output
	$(BIN)/keytrail --db sqlite:///demo-output/keytrail.db demo

# Style, types, and the invariants of issue 10: no private attribute of another object (ruff SLF001),
# the layering contracts (lint-imports, [tool.importlinter] in pyproject.toml), no module over 400 lines.
lint: $(STAMP)
	$(BIN)/ruff check keytrail tests scripts $(wildcard benchmarks)
	$(BIN)/ruff format --check keytrail tests scripts $(wildcard benchmarks)
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python scripts/check_module_size.py

pytest: $(STAMP) system-deps
	$(BIN)/pytest

test: lint pytest

bench: $(STAMP) system-deps
	$(BIN)/python benchmarks/run.py --quick

bench-full: $(STAMP) system-deps
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) demo-output .pytest_cache .mypy_cache .ruff_cache
