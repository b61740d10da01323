# Set-up is part of every target: a fresh clone needs only Python 3.10+.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TORCH_VERSION := 2.13.0
CONFIG ?= conf/cartpole_mbppo.yaml

.PHONY: setup fit test benchmark clean ui docs

setup: $(STAMP)

# torch is installed first and alone: every later requirement accepts the installed version,
# so no install step ever downloads a different (CUDA) build.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==$(TORCH_VERSION)
	$(PY) -m pip install --quiet -e ".[test,tune]"
	touch $(STAMP)

fit: setup
	$(PY) scripts/fit.py --config $(CONFIG)

# Two workers: each test runs single-threaded in its own folder, so they share nothing. An idle
# worker takes queued tests from the other (worksteal); tests/conftest.py starts the long ones first
# on both. The 30 slowest are listed at the end, so each run's log shows where the time goes;
# TEST_CPU_LOG=cpu.jsonl make test also writes each test's CPU seconds, which the load does not change.
test: setup
	$(PY) -m pytest -q -n 2 --dist worksteal --durations=30

benchmark: setup
	$(PY) benchmarks/solve_cartpole.py --config conf/cartpole_dqn.yaml

# The docs site (mkdocs, Material, mkdocstrings) into site/; strict: any warning fails the build.
DOCS_STAMP := $(VENV)/.docs-installed
$(DOCS_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e ".[docs]"
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 DISABLE_MKDOCS_2_WARNING=true $(PY) -m mkdocs build --strict

ui: setup
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db

clean:
	rm -rf $(VENV) .pytest_cache site
