# One command each, from a fresh machine:  make main  (train + evaluate)   make test
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
WORKDIR ?= runs/default
CONFIG ?= configs/default.py

.PHONY: setup data main test clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

data:
	@bash scripts/offline_data.sh

setup: $(VENV)/.installed data

main: setup
	$(PY) train.py --config=$(CONFIG) --workdir=$(WORKDIR)
	$(PY) evaluate.py --workdir=$(WORKDIR)

test: setup
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV)  # (runs/ stays: trained runs are yours to delete)
