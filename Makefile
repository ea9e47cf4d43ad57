# tradebus — the two Quickstart commands (`make backtest`, `make test`) need only Python 3.11 and make.
# `make backtest` installs the runtime dependencies; `make test` adds the dev extras. Every install
# is held to the versions in constraints.txt (`make constraints` refreshes it from a fresh venv).
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
RUNTIME := $(VENV)/.installed-runtime
DEV := $(VENV)/.installed-dev
LOG := $(VENV)/install.log
PIP := $(PY) -m pip install --disable-pip-version-check --quiet -c constraints.txt
# pip and setuptools print banners of their own; they go to $(LOG), shown only if an install fails.
QUIET_INSTALL = >>$(LOG) 2>&1 || { cat $(LOG); echo "install failed; log: $(LOG)"; exit 1; }

.PHONY: setup backtest test bench bench-peers constraints clean

$(PY):
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found; set PYTHON=/path/to/python3.11"; exit 1; }
	@$(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --disable-pip-version-check --quiet --upgrade pip $(QUIET_INSTALL)

$(RUNTIME): pyproject.toml constraints.txt | $(PY)
	@echo "installing tradebus and its runtime dependencies into $(VENV) (first time: a few minutes)"
	@$(PIP) -e . $(QUIET_INSTALL)
	@touch $@

$(DEV): $(RUNTIME)
	@echo "installing the test dependencies into $(VENV)"
	@$(PIP) -e ".[dev]" $(QUIET_INSTALL)
	@touch $@

setup: $(DEV)

backtest: $(RUNTIME)
	$(PY) -m tradebus.cli backtest configs/quickstart.yaml --out runs/quickstart

# One pytest worker per core, at most 4 (each holds its own Numba and data; pytest-xdist); tests are
# handed out as workers free up.
test: $(DEV)
	$(PY) -m pytest -n auto --maxprocesses 4 --dist worksteal

BENCHES := features throughput execution journal market_data venue_books market_data_latency data research perpetuals sweep soak live book_fills strategies live_soak ml_gated accelerated peers cold_start live_reconcile kind_loops clock_due resting_orders

bench: $(DEV)
	@for b in $(BENCHES); do echo "== bench/$$b.py"; $(PY) bench/$$b.py || exit 1; done

# bench/peers.py against backtesting.py and NautilusTrader (the `peers` extra, bench only). NautilusTrader
# needs pandas<3 and constraints.txt pins pandas 3, so they get a venv of their own, resolved without it.
PEERS_VENV := .venv-peers
bench-peers:
	@test -x $(PEERS_VENV)/bin/python || $(PYTHON) -m venv $(PEERS_VENV)
	@echo "installing tradebus and the peers extra into $(PEERS_VENV) (first time: a few minutes)"
	@$(PEERS_VENV)/bin/python -m pip install --disable-pip-version-check --quiet -e ".[peers]" >$(PEERS_VENV)/install.log 2>&1 || { cat $(PEERS_VENV)/install.log; exit 1; }
	$(PEERS_VENV)/bin/python bench/peers.py

# Rebuild constraints.txt: the newest versions that pyproject.toml allows, resolved in a scratch venv.
constraints:
	rm -rf .venv-constraints
	$(PYTHON) -m venv .venv-constraints
	.venv-constraints/bin/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	.venv-constraints/bin/python -m pip freeze --exclude-editable | grep -v '^tradebus' > constraints.txt
	rm -rf .venv-constraints

clean:
	rm -rf $(VENV) .cache runs
