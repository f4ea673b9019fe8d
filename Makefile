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

# The main job: train LeNet-5 on the bundled digits, export it to ONNX / TorchScript / torch.export,
# verify every export against the trained model, and benchmark every variant (about 2 minutes).
DEMO_OUT ?= artifacts
demo: setup
	$(VENV)/bin/dlopt list
	$(VENV)/bin/dlopt train lenet5 --out $(DEMO_OUT)
	$(VENV)/bin/dlopt export --out $(DEMO_OUT)
	$(VENV)/bin/dlopt verify --out $(DEMO_OUT)
	$(VENV)/bin/dlopt bench --out $(DEMO_OUT) --batch-size 1,8 --budget-s 10
	$(VENV)/bin/dlopt runs --out $(DEMO_OUT)

test: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
