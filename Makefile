# Two commands on a fresh machine with only Python 3.11+:  make run  ·  make test
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test system-packages bench lint venv clean translations

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

# The compiled catalogues (.mo) are built here, at install, never committed: `make venv`, `make run`
# and `make test` (so CI) build them whenever a .po changed. Without them every page is in English.
TRANSLATIONS := mailadmin/translations
CATALOGUES := $(wildcard $(TRANSLATIONS)/*/LC_MESSAGES/messages.po)
COMPILED := $(CATALOGUES:.po=.mo)

$(TRANSLATIONS)/%/LC_MESSAGES/messages.mo: $(TRANSLATIONS)/%/LC_MESSAGES/messages.po $(VENV)/.installed
	$(BIN)/pybabel compile --statistics -d $(TRANSLATIONS) -l $* -i $< -o $@

venv: $(VENV)/.installed $(COMPILED)

# After changing a user-visible string: extract every string (babel.cfg) into messages.pot, merge it
# into each language's messages.po (new strings empty, changed ones fuzzy: translate them), compile.
# The languages besides English (the msgids); a new one: add it here and run make translations.
LANGUAGES := ru

translations: $(VENV)/.installed
	mkdir -p $(TRANSLATIONS)
	$(BIN)/pybabel extract -F babel.cfg -k count_of:2,3 -k _l -k lazy_gettext -k lazy_ngettext:1,2 -k N_ \
		--add-location=file --sort-output --no-wrap --project=mailadmin --omit-header -o $(TRANSLATIONS)/messages.pot .
	for lang in $(LANGUAGES); do \
		if [ -f $(TRANSLATIONS)/$$lang/LC_MESSAGES/messages.po ]; then \
			$(BIN)/pybabel update -i $(TRANSLATIONS)/messages.pot -d $(TRANSLATIONS) -l $$lang --no-wrap --ignore-obsolete; \
		else \
			$(BIN)/pybabel init -i $(TRANSLATIONS)/messages.pot -d $(TRANSLATIONS) -l $$lang --no-wrap; \
		fi; \
	done
	$(BIN)/pybabel compile --statistics -d $(TRANSLATIONS)

run: $(VENV)/.installed $(COMPILED)
	$(BIN)/python -m mailadmin.devtools.run

# What some tests need from the system (Chromium, jq, Dovecot, postfix's smtp-sink, Prometheus):
# installed with apt-get when run as root, else one line says which packages to install.
system-packages:
	$(PYTHON) mailadmin/devtools/system_packages.py

# pytest-xdist workers of `make test` (auto: one per core).
TEST_WORKERS ?= auto

# The whole suite spread over the cores, then the end-to-end tests that time the engine on their
# own (a busy machine would stall them), as CI does; both run, the exit code says if either failed.
# A part with e.g. PYTEST_ARGS="tests/e2e" or PYTEST_ARGS="--ignore=tests/e2e -x" (one run, as given).
test: system-packages $(VENV)/.installed-dev $(COMPILED)
ifeq ($(strip $(PYTEST_ARGS)),)
	status=0; \
	$(BIN)/python -m pytest -n $(TEST_WORKERS) -m "not engine_timed" || status=$$?; \
	$(BIN)/python -m pytest -n 2 -m engine_timed || status=$$?; \
	exit $$status
else
	$(BIN)/python -m pytest $(PYTEST_ARGS)
endif

# The benchmarks measure on PostgreSQL (each creates and drops a scratch database on this server).
BENCH_DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/test

bench: $(VENV)/.installed-dev
	BENCH_DATABASE_URL=$(BENCH_DATABASE_URL) $(BIN)/python -m bench

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) instance .pytest_cache
