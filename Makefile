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

BENCHES := features throughput execution market_data venue_books market_data_latency research

bench: $(STAMP)
	@for b in $(BENCHES); do echo "== bench/$$b.py"; $(PY) bench/$$b.py || exit 1; done

clean:
	rm -rf $(VENV) .cache runs
