# Two commands on a fresh machine: `make demo` (set up + main job) and `make test` (set up + tests).
# The venv is (re)installed only when pyproject.toml changes (the stamp file tracks it).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.dlopt-installed
PYTEST_ARGS ?=

.PHONY: setup demo test bench clean screenshot browser

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[hf,timm,dev]'
	touch $(STAMP)

setup: $(STAMP)

# The main job: the whole pipeline (train, prune + fine-tune, int8, export, verify, bench, report) on
# LeNet-5 and on ResNet-18 at 32x32, both on the bundled digits; each prints where its report is.
DEMO_OUT ?= artifacts
demo: setup
	$(VENV)/bin/dlopt list
	$(VENV)/bin/dlopt pipeline lenet5 --config benchmarks/configs/demo-lenet5.toml --out $(DEMO_OUT)
	$(VENV)/bin/dlopt pipeline resnet18 --config benchmarks/configs/demo-resnet18.toml --out $(DEMO_OUT)
	$(VENV)/bin/dlopt runs --out $(DEMO_OUT)

# A report rendered in a real browser: make screenshot [REPORT=path/report.html] (installs Debian's chromium).
# benchmarks/render_report.py checks it fetches nothing outside the file and every image decodes, and keeps
# the screenshot in docs/report-screenshot.png (results: benchmarks/results/render_report.json).
REPORT ?= $(lastword $(sort $(wildcard $(DEMO_OUT)/resnet18/*/report.html)))
browser:
	command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

screenshot: browser setup
	$(PY) benchmarks/render_report.py $(REPORT) --screenshot docs/report-screenshot.png

test: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

# docs/results.md and the README's results table, regenerated from benchmarks/results/*.json (no setup needed
# beyond the venv: it reads JSON only). `$(PY) benchmarks/results_doc.py --check` says whether they are stale.
.PHONY: results-doc
results-doc: setup
	$(PY) benchmarks/results_doc.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
