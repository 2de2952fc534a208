# The two commands a new user needs: `make demo` and `make test`. Both set up the virtual environment
# from the committed lock (uv.lock) with nothing but python3 on the machine; `make setup` installs the
# system packages the tests need (Debian, as root), and `make test` says what is missing instead.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
UV      = $(BIN)/uv
# The uv that made uv.lock; pip bootstraps it into the virtual environment.
UV_VERSION = 0.13.9
STAMP   = $(VENV)/.keytrail-installed
LOWEST  = .venv-lowest
export UV_PROJECT_ENVIRONMENT = $(VENV)
export UV_PYTHON_DOWNLOADS = never

.PHONY: demo screenshots test lint docs pytest test-lowest smoke bench bench-full bench-startup diagrams setup system-deps system-check system-auto lock clean

$(UV):
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet 'uv==$(UV_VERSION)'

# Exactly the lock: keytrail editable, its dependencies, the dev group (--inexact keeps uv itself).
$(STAMP): pyproject.toml uv.lock $(UV)
	$(UV) sync --locked --inexact --quiet --python $(BIN)/python
	touch $(STAMP)

# After changing a dependency in pyproject.toml: refresh uv.lock and commit it.
lock: $(UV)
	$(UV) lock

# Debian packages the tests and diagrams need (PostgreSQL server, Graphviz): installs them (root).
setup:
	@sh scripts/system-deps.sh --install

system-deps: setup

# Names what is missing and how to get it, installs nothing.
system-check:
	@sh scripts/system-deps.sh --check

# What `make test` runs: as root on Debian it installs what is missing (and says so), so that the
# README's two commands set a fresh machine up alone; elsewhere it only names what is missing.
system-auto:
	@sh scripts/system-deps.sh --auto

demo: $(STAMP)
	rm -rf demo-output && mkdir -p demo-output
	$(BIN)/keytrail --db sqlite:///demo-output/keytrail.db demo --report demo-output/report.html

# The README's picture of the demo's report (docs/img/report.png): Debian's chromium through Playwright.
screenshots: demo
	$(BIN)/python scripts/screenshots.py demo-output/report.html docs/img/report.png

# Style, types, and the invariants of issue 10: no private attribute of another object (ruff SLF001),
# the layering contracts (lint-imports, [tool.importlinter] in pyproject.toml), no module over 400 lines.
lint: $(STAMP)
	$(BIN)/ruff check keytrail tests scripts $(wildcard benchmarks)
	$(BIN)/ruff format --check keytrail tests scripts $(wildcard benchmarks)
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python scripts/check_module_size.py

# The reference in docs/, built as a site: --strict turns a broken link or anchor, a missing page or
# one left out of mkdocs.yml's nav into a failure. (Never add -q: it hides the warnings --strict counts.)
docs: $(STAMP)
	$(BIN)/mkdocs build --strict --site-dir site

pytest: $(STAMP) system-auto
	$(BIN)/pytest

test: lint docs pytest

# The floors in pyproject.toml, proven: every direct dependency at its lowest allowed release.
# The suite without its PostgreSQL cases, to keep CI short: they exercise the server more than the
# floors, and psycopg at its floor is still installed and imported by every test.
test-lowest: $(UV)
	rm -rf $(LOWEST)
	$(UV) venv --quiet --python $(BIN)/python $(LOWEST)
	VIRTUAL_ENV=$(LOWEST) $(UV) pip install --quiet --resolution lowest-direct -e . --group dev
	$(LOWEST)/bin/pytest -q -p no:cacheprovider -m "not postgres"

# The built wheel, installed (not editable) in a clean virtual environment: --version, the demo, the plugin.
smoke: $(UV)
	UV=$(UV) PYTHON=$(BIN)/python sh scripts/smoke.sh

bench: $(STAMP) system-check
	$(BIN)/python benchmarks/run.py --quick

bench-full: $(STAMP) system-check
	$(BIN)/python benchmarks/run.py

# `keytrail --help` and `keytrail status` against `import typer, rich`, as ratios.
bench-startup: $(STAMP)
	$(BIN)/python benchmarks/startup.py

clean:
	rm -rf $(VENV) $(LOWEST) demo-output site .pytest_cache .mypy_cache .ruff_cache
