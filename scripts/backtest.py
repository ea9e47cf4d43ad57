"""Run a backtest: the same as ``tradebus backtest CONFIG [--out DIR]``.

Usage::

    python scripts/backtest.py configs/quickstart.yaml --out runs/quickstart
"""

from __future__ import annotations

import sys

from tradebus.cli import main

if __name__ == "__main__":
    main(["backtest", *sys.argv[1:]])
