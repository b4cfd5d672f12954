# Two commands on a fresh machine: `make run` and `make test`. Both create and reuse a
# local virtual environment (.venv) with the project installed in editable mode.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run demo test lint install default-artifact clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/riskscore serve

demo: $(STAMP)
	$(BIN)/riskscore demo

test: $(STAMP)
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

default-artifact: $(STAMP)
	$(BIN)/python -m models.train.build_default_artifact

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
