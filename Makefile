# make test   install into .venv (once) and run the test suite; PYTEST_ARGS passes options
# make run    install into .venv (once) and start the whole stack with `zmx up`
# make bench  run the matcher, ZeroMQ and journal benchmarks
# make soak   the soak test: load, a kill -9 of every process, invariants (ZMX_SOAK_SECONDS, default 600)
# make clean  remove the virtualenv and build leftovers (never the data directory)

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
VENV_PYTHON := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: test run bench clean

test: $(VENV)/.installed-test /usr/bin/chromium
	$(VENV_PYTHON) -m pytest $(PYTEST_ARGS)

run: $(VENV)/.installed
	exec $(VENV)/bin/zmx up

.PHONY: soak
soak: $(VENV)/.installed-test
	$(VENV_PYTHON) -m pytest -m soak -s tests/soak $(PYTEST_ARGS)

bench: $(VENV)/.installed-bench
	$(VENV_PYTHON) loadtest/bench_matcher.py
	$(VENV_PYTHON) loadtest/bench_zmq.py
	$(VENV_PYTHON) loadtest/bench_journal.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

$(VENV)/pyvenv.cfg:
	@test -n "$(PYTHON)" || { echo "make: python3.11 or python3 is required" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(VENV_PYTHON) -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(VENV)/pyvenv.cfg setup.cfg pyproject.toml
	$(VENV_PYTHON) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-bench: $(VENV)/.installed
	$(VENV_PYTHON) -m pip install --quiet -e '.[bench]'
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(VENV_PYTHON) -m pip install --quiet -e '.[test]'
	touch $@

# The market page's browser test drives Debian's Chromium (Playwright, no browser download).
/usr/bin/chromium:
	@if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null
