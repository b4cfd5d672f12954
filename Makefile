# Two commands on a fresh machine: `make run` and `make test`. Both create and reuse a
# local virtual environment (.venv) with the project installed in editable mode: serving
# needs only the runtime dependencies; the tests also train small sequence models (torch).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.installed-run
STAMP := $(VENV)/.installed

.PHONY: run demo test fuzz lint outage-soak restart-soak screenshots install system-packages default-artifact sequence-artifact faults clean

$(RUN_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $(RUN_STAMP)

$(STAMP): $(RUN_STAMP)
	$(BIN)/pip install --quiet -e '.[dev,train]'
	touch $(STAMP)

install: $(STAMP)

run: $(RUN_STAMP)
	$(BIN)/riskscore serve

demo: $(RUN_STAMP)
	$(BIN)/riskscore demo

# What the tests need from the system (browser, PostgreSQL, Redis): installed with apt-get
# when run as root, otherwise one line says what to install. The list is in the script.
system-packages:
	bash tests/system_packages.sh

test: $(STAMP) system-packages
	$(BIN)/pytest

# The API conformance run at full size: schemathesis, every check, >= 10,000 generated
# cases against a throwaway `riskscore serve` (the CI-sized run is part of `make test`).
fuzz: $(STAMP)
	nice -n 10 $(BIN)/python -m tests.service.fuzz.harness

# Broker faults, repeated (not part of `make test`; see the README's "Broker faults"): the
# broker-outage test OUTAGE_RUNS times in a row, each in a fresh session; then `kill -9` of
# `riskscore serve` and a new start on the same ports, RESTART_RUNS times.
OUTAGE_RUNS ?= 50
RESTART_RUNS ?= 20
OUTAGE_TEST := tests/streaming/test_stream_processing.py::test_a_broker_outage_mid_run_loses_nothing

outage-soak: $(STAMP)
	@passed=0; for i in $$(seq $(OUTAGE_RUNS)); do \
		if $(BIN)/pytest -q -p no:cacheprovider $(OUTAGE_TEST) > outage-soak.log 2>&1; \
		then passed=$$((passed + 1)); else echo "run $$i failed:"; tail -40 outage-soak.log; fi; \
	done; echo "$$passed/$(OUTAGE_RUNS) outage runs passed"; test $$passed -eq $(OUTAGE_RUNS)

restart-soak: $(STAMP)
	$(BIN)/python -m tests.service.serve_restarts --runs $(RESTART_RUNS)

# The README's report screenshots, as the browser test renders them (headless Chromium).
screenshots: $(STAMP)
	$(BIN)/pytest -q tests/reports/test_browser.py::test_reports_render_their_charts_in_a_browser
	cp test-artifacts/browser/decision.png docs/report-decision.png
	cp test-artifacts/browser/summary.png docs/report-summary.png

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# Faults under HTTP load on loopback (README, "Reliability and security"): kill -9 of
# serve 20 times, then SIGTERM with requests in flight. A few minutes; each exits 1 when
# its target is missed.
faults: $(STAMP)
	$(BIN)/riskscore bench crash --kills 20 --rate 200
	$(BIN)/riskscore bench sigterm --concurrency 32 --seconds 3

default-artifact: $(STAMP)
	$(BIN)/python -m models.train.build_default_artifact

sequence-artifact: $(STAMP)
	$(BIN)/python -m models.train.build_default_sequence_artifact

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
