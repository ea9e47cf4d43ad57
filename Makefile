# tradebus — the two Quickstart commands (`make backtest`, `make test`) need only Python 3.11 and make.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed


.PHONY: setup backtest test bench clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found; set PYTHON=/path/to/python3.11"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

setup: $(STAMP)

backtest: $(STAMP)
	$(PY) -m tradebus.cli backtest configs/quickstart.yaml --out runs/quickstart

test: $(STAMP)
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) bench/features.py
	$(PY) bench/throughput.py
	$(PY) bench/market_data.py

clean:
	rm -rf $(VENV) .cache runs
