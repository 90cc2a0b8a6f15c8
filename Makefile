# Two targets do all the set-up: `make quickstart` and `make test` (see README.md).
# TORCH pins the torch wheel pip installs: torch==2.13.0 resolves to a CPU wheel on machines that
# keep one on disk, and to PyPI's default (CUDA) build elsewhere; `make TORCH=torch ...` takes the newest.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
PYTEST_ARGS ?=
# the suite runs on every core (pytest-xdist), a test file per worker so module fixtures are built once;
# `make test PARALLEL=` runs it in one process
PARALLEL ?= -n auto --dist loadfile
BIN := $(VENV)/bin

.PHONY: install quickstart test lint clean

$(BIN)/auxopt: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)" -e ".[dev]"
	touch $@

install: $(BIN)/auxopt

quickstart: install
	$(BIN)/auxopt quickstart

test: install
	$(BIN)/python -m pytest $(PARALLEL) $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check auxopt tests benchmarks studies examples optunahub-registry docs
	$(BIN)/ruff format --check auxopt tests benchmarks studies examples optunahub-registry docs

clean:
	rm -rf $(VENV) quickstart.db
