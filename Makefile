# Every target creates .venv when it is missing, so a fresh clone needs only
# Python 3.11+, git, openssl and the PostgreSQL 15 binaries.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_WORKERS ?= 2

.PHONY: all venv demo test test-fast lint format bench proto system-packages clean

all: test

$(STAMP): pyproject.toml constraints.txt
	@scripts/make-venv $(PYTHON) $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) -m warden.demo

# System packages that some tests drive for real (nginx for the certificate helper,
# chromium for the HTML report). Installed with apt-get when missing.
system-packages:
	@scripts/ensure-system-packages nginx chromium

# The suite takes about 5 minutes on 2 cores. The outer timeout is a guard: should a
# stuck worker stall pytest-xdist, the run is interrupted and still prints its summary.
TEST_TIME_LIMIT ?= 45m

test: $(STAMP) system-packages
	timeout --foreground --signal=INT --kill-after=60 $(TEST_TIME_LIMIT) $(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadgroup

test-fast: $(STAMP)
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadgroup -m "not slow and not postgres and not datasets"

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy

format: $(STAMP)
	$(VENV)/bin/ruff format src tests bench
	$(VENV)/bin/ruff check --fix src tests bench

bench: $(STAMP) system-packages
	$(PY) -m bench

proto: $(STAMP)
	$(PY) scripts/gen_proto.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .benchmarks
