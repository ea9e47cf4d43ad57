"""Run the paper-trading daemon: the same as ``tradebus paper CONFIG [--out DIR] [--max-seconds S]``.

Usage::

    python scripts/paper.py configs/paper_binance.yaml --out runs/paper-binance

Stop it with Ctrl-C (SIGINT) or SIGTERM: it cancels its feeds, flushes the journal and the
recorder, writes the run outputs (with ``--out``) and exits with status 0.
"""

from __future__ import annotations

import sys

from tradebus.cli import main

if __name__ == "__main__":
    main(["paper", *sys.argv[1:]])
