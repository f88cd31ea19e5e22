# Two commands on a fresh machine with only Python 3.11+:  make run  ·  make test
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test bench lint venv clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall only when a requirements file changes.
$(VENV)/.installed: requirements.txt $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt $(VENV)/.installed
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed

run: $(VENV)/.installed
	$(BIN)/python -m mailadmin.devtools.run

# The whole suite; a part with e.g. PYTEST_ARGS="tests/e2e" or PYTEST_ARGS="--ignore=tests/e2e -x".
test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The benchmarks measure on PostgreSQL (each creates and drops a scratch database on this server).
BENCH_DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/test

bench: $(VENV)/.installed-dev
	BENCH_DATABASE_URL=$(BENCH_DATABASE_URL) $(BIN)/python -m bench

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) instance .pytest_cache
