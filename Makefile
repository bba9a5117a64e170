# Two-command setup: `make install` builds .venv, `make test` installs then runs every test.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
INTEGRATIONS := $(wildcard integrations/*/pyproject.toml)
export HF_HUB_OFFLINE := 1
export ANONYMIZED_TELEMETRY := False
export TOKENIZERS_PARALLELISM := false

.PHONY: install test test-fast demo bench lint clean

install: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# torch goes in first and pinned: an unpinned torch would pull a multi-GB CUDA build.
$(STAMP): $(PY) pyproject.toml $(INTEGRATIONS)
	$(PIP) install --quiet "torch==2.13.0"
	$(PIP) install --quiet -e ".[dev]" $(foreach p,$(dir $(INTEGRATIONS)),-e "./$(p)[test]")
	touch $(STAMP)

test: install
	$(PY) -m pytest tests $(wildcard integrations/*/tests) -q --durations=15

# The inner loop: every test not marked slow (`make test` runs them all).
test-fast: install
	$(PY) -m pytest tests $(wildcard integrations/*/tests) -q -m "not slow"

demo: install
	$(VENV)/bin/mlret demo

bench: install
	$(PY) benchmarks/encode_speed.py
	$(PY) benchmarks/retrieve_speed.py
	$(PY) benchmarks/quality_ha.py
	$(PY) benchmarks/finetune_ha.py
	$(PY) benchmarks/finetune_passages.py
	$(PY) benchmarks/selftrain_ha.py --seeds 0,1,2,3,4,5,6,7,8,9 --arms without,without-reordered,with,with-propagation --append
	$(PY) benchmarks/selftrain_ha.py --seeds 1,6 --arms without,with,with-propagation --out benchmarks/results/selftrain_ha_timed
	$(PY) benchmarks/propagation_cost.py
	$(PY) benchmarks/documents.py

lint: install
	$(VENV)/bin/ruff check mlret_rag tests benchmarks integrations

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
