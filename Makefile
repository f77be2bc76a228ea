# Trilho: `make run` serves the demo on http://127.0.0.1:8000; `make test` runs the whole suite.
# Both create .venv with the first Python 3.11+ found (PYTHON=... picks one) and install into it.

SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
DATA_DIR := $(or $(TRILHO_DATA_DIR),var)
# The install is redone when pyproject.toml's content changes (not its timestamp).
STAMP := $(VENV)/.installed-$(firstword $(shell cksum pyproject.toml))
PYTEST_ARGS ?= -q
# pytest-xdist processes of `make test` (the tests of the redis group run one after another on one
# of them, tests/conftest.py); TEST_WORKERS=0 runs the suite in a single process. Three on two cores:
# the real-worker and browser tests spend most of their time waiting, and the other two fill it.
TEST_WORKERS ?= 3
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help install run test lint worker bench

help:
	@echo "make run     install, migrate, load the demo, serve http://127.0.0.1:8000 with a worker"
	@echo "             (ADDR=host:port serves, prints and writes links with another address)"
	@echo "make test    install and run the test suite (PYTEST_ARGS='-k board' to narrow it)"
	@echo "make lint    ruff check, ruff format --check, import contracts, manage.py check, makemigrations --check"
	@echo "make worker  one embedded Celery worker with beat, on both queues: steps and sweeps (what make run starts)"
	@echo "make bench   run the benchmarks in bench/ (they print figures, never fail on timing)"

$(PY):
	@python=$$(bin/find-python) && \
	echo "Creating $(VENV) with $$python ($$("$$python" -V 2>&1))" && \
	"$$python" -m venv $(VENV)

$(STAMP): | $(PY)
	@$(PY) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { \
	  echo "$(VENV) was made with $$($(PY) -V 2>&1); Trilho needs Python 3.11+. Remove $(VENV) and run make again." >&2; \
	  exit 1; }
	@echo "Installing Trilho and its development tools into $(VENV) (browsers are never downloaded)..."
	$(PY) -m pip install --quiet --editable ".[dev]"
	@rm -f $(VENV)/.installed-*
	@touch $@

install: $(STAMP)

run: install
	@bin/run-dev

test: install
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(PY) manage.py check
	$(PY) manage.py makemigrations --check --dry-run

worker: install
	$(BIN)/celery -A orchestrator worker -P solo -B -l info --schedule $(DATA_DIR)/celerybeat-schedule

bench: install
	@shopt -s nullglob; found=0; \
	for script in bench/[!_]*.py; do \
	  found=1; echo "== $$script"; $(PY) "$$script" || exit $$?; \
	done; \
	[ $$found = 1 ] || echo "No benchmarks in bench/ yet."
