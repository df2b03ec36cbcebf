# Shortcuts over scripts/dev.py and bench/. POSIX make; `.ci/run` does not use this file.
#   make install | test | run | bench | bench-peers      (extra arguments: ARGS="...")
#   make bench-peers ARGS=--quick                         (a short smoke run)
#   make chaos | fuzz                                     (the long reliability suites)
#   make screenshots                                      (the dashboard, into screenshots/)

PYTHON ?= python3
POSTGRES ?= postgresql://postgres@127.0.0.1:5432/postgres
VENV_PYTHON = .venv/bin/python
DBOS_VENV = .bench/dbos-venv
ARGS ?=

.PHONY: install test run bench bench-peers chaos fuzz screenshots

install:
	$(PYTHON) scripts/dev.py install

test:
	$(PYTHON) scripts/dev.py test $(ARGS)

run:
	$(PYTHON) scripts/dev.py run $(ARGS)

bench: install
	$(VENV_PYTHON) bench/engine.py --postgres $(POSTGRES) $(ARGS)

# Each peer lives in its own virtual environment, rebuilt from scratch when its pins change;
# none of their installs touches .venv (Prefect pins an older FastAPI than ours).
TEMPORAL_VENV = .bench/temporal-venv
PREFECT_VENV = .bench/prefect-venv

$(DBOS_VENV)/installed: bench/peers/requirements.txt
	$(PYTHON) -m venv --clear $(DBOS_VENV)
	$(DBOS_VENV)/bin/python -m pip install --quiet -r bench/peers/requirements.txt
	touch $@

$(TEMPORAL_VENV)/installed: bench/peers/temporal-requirements.txt
	$(PYTHON) -m venv --clear $(TEMPORAL_VENV)
	$(TEMPORAL_VENV)/bin/python -m pip install --quiet -r bench/peers/temporal-requirements.txt
	touch $@

$(PREFECT_VENV)/installed: bench/peers/prefect-requirements.txt
	$(PYTHON) -m venv --clear $(PREFECT_VENV)
	$(PREFECT_VENV)/bin/python -m pip install --quiet -r bench/peers/prefect-requirements.txt
	touch $@

# The bench group (matplotlib, for the plots) goes into .venv on top of `install`'s sync.
bench-peers: install $(DBOS_VENV)/installed $(TEMPORAL_VENV)/installed $(PREFECT_VENV)/installed
	UV_PROJECT_ENVIRONMENT=.venv UV_PYTHON_DOWNLOADS=never .venv/bin/uv sync --locked \
		--inexact --all-extras --group bench --quiet
	$(VENV_PYTHON) bench/peers.py --postgres $(POSTGRES) $(ARGS)

# The full chaos run: workers SIGKILLed under load, then a database restart; prints a report.
# CI runs a bounded slice of it as tests/chaos/test_chaos.py.
chaos: install
	$(VENV_PYTHON) -m tests.chaos --postgres $(POSTGRES) $(ARGS)

# The long fuzzing run (SQLite, then PostgreSQL); CI runs the same suite with 8 cases a test.
fuzz: install
	FUZZ_MAX_EXAMPLES=$${FUZZ_MAX_EXAMPLES:-200} TEST_POSTGRES_URL=$(POSTGRES) \
		$(VENV_PYTHON) -m pytest tests/fuzz -p no:cacheprovider $(ARGS)

# The dashboard in Debian's Chromium (/usr/bin/chromium; Playwright downloads no browser):
# screenshots/*.png (ignored) and the README's docs/images/dashboard-run.png.
screenshots: install
	$(VENV_PYTHON) scripts/screenshots.py
