# Two commands on a fresh machine: `make demo` (set up + main job) and `make test` (set up + tests).
# The venv is (re)installed only when pyproject.toml changes (the stamp file tracks it).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.dlopt-installed
PYTEST_ARGS ?=

.PHONY: setup demo test bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[hf,dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(VENV)/bin/dlopt list
	$(VENV)/bin/dlopt info resnet18

test: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
