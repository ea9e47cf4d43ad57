"""Run the live-trading daemon: the same as ``tradebus live CONFIG [--out DIR] [--dry-run] [--mainnet]``.

Usage::

    export TRADEBUS_BINANCE_API_KEY=... TRADEBUS_BINANCE_API_SECRET=...
    python scripts/live.py configs/live_binance_testnet.yaml --out runs/live-binance --dry-run

Testnet unless the config says ``live.environment: mainnet`` and ``--mainnet`` is given. Stop it
with Ctrl-C (SIGINT) or SIGTERM: it cancels its open orders (``live.cancel_on_stop``), closes its
connections, flushes the journal and writes the run outputs (with ``--out``).
"""

from __future__ import annotations

import sys

from tradebus.cli import main

if __name__ == "__main__":
    main(["live", *sys.argv[1:]])
