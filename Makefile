# Two commands do all set-up on a fresh machine:
#   make local   run the main job locally (ICE emulator + file store, no cloud account); its records
#                go to .records, where `.venv/bin/ice-upload-sync stats` looks by default
#   make test    run the whole test suite (what CI runs): make lint (ruff), then pytest
# Deploying (README "Deploy"):
#   make package         vendor function/requirements.txt into function/python for FC (python3.10, no Docker)
#   make template-check  render template.yml with `s preview` and check it against fc3's schema, from the
#                        variables of `source deploy.env` (a copy of deploy.env.example, filled in)
#                        (offline, where npm cannot install s: make template-check ARGS=--python-renderer)
#   make emulator        the ICE emulator alone, with the sample jobs of make local; prints the variables
#                        that point the function or the command line at it (make emulator PORT=9000)
# ARGS passes options to the script behind local, emulator or template-check (ARGS=--help lists them).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
ARGS   ?=
PORT   ?= 8080

.PHONY: local test lint emulator clean package template-check

$(STAMP): function/requirements.txt tests/requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .  # the ice-upload-sync command
	touch $(STAMP)

local: $(STAMP)
	$(PY) -m tests.local_run $(ARGS)

test: lint
	$(PY) -m pytest

lint: $(STAMP)
	$(PY) -m ruff check function tests

emulator: $(STAMP)
	$(PY) -m tests.support.ice --sample-jobs --port $(PORT) $(ARGS)

package:
	$(PYTHON) tests/deploy/package.py

template-check: $(STAMP)
	$(PY) -m tests.deploy.template_check $(ARGS)

# Everything the targets above create: the venv, the local run's records (.records, also the
# command line's default store; .local-records from older versions), the package
# (function/python, its bytecode, build/), the deploy caches (.cache: pip and npm), test caches.
clean:
	rm -rf $(VENV) .local-records .records build function/python function/.python.new .cache \
		function/*.egg-info .hypothesis .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
