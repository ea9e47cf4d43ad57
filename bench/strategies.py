"""Benchmark: what the Strategy API's history windows cost in the batch backtest loop.

Three strategies that subscribe to bars run over the same bars in the kernel's batch loop:

* ``reference`` -- an empty ``on_bar`` (the loop's own cost per bar);
* ``history`` -- the same with a 100-bar history window kept (``history_sizes``);
* ``history_read`` -- keeps the window and reads ``self.bars(100).close`` on every bar.

Target: keeping a window adds at most 1.0x the reference's per-bar time (ratio
``history / reference <= 2.0``). Figures are medians of ``--repeats`` runs (CPU time).

Usage::

    python bench/strategies.py [--n 200000] [--repeats 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np
import pandas as pd

from checkout import use_this_checkout

use_this_checkout()

from tradebus.engine.instrument import Instrument  # noqa: E402
from tradebus.engine.kernel import Kernel  # noqa: E402
from tradebus.engine.messages import Bar  # noqa: E402
from tradebus.research.lookahead import MemoryReplay, SourceFrame  # noqa: E402
from tradebus.strategies.base import Strategy  # noqa: E402

IID = "BTCUSDT.BENCH"
MIN = 60_000_000_000
WINDOW = 100


class Empty(Strategy):
    def on_bar(self, bar: Bar) -> None:
        pass


class Keeps(Empty):
    def history_sizes(self, instrument_id: str) -> dict[str, int]:
        return {"bars": WINDOW}


class Reads(Keeps):
    def on_bar(self, bar: Bar) -> None:
        self.bars(WINDOW).close  # noqa: B018


def bars(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    close = 30_000.0 * np.exp(np.cumsum(rng.normal(0, 0.001, n)))
    ts = (np.arange(n, dtype=np.int64) + 1) * MIN
    return pd.DataFrame({"ts_event": ts, "ts_init": ts, "open": close, "high": close * 1.001, "low": close * 0.999,
                         "close": close, "volume": np.full(n, 1.0)})  # fmt: skip


def run(cls: type[Strategy], frame: pd.DataFrame) -> float:
    """CPU ns per bar of one backtest."""
    kernel = Kernel([Instrument("BENCH", "BTCUSDT")])
    kernel.add_strategy(cls(IID))
    replay = MemoryReplay([SourceFrame(IID, "bars", frame)])
    batches = list(replay.batches())

    class Ready:
        def batches(self) -> list:
            return batches

    cpu0 = time.process_time_ns()
    kernel.run(Ready())
    return (time.process_time_ns() - cpu0) / len(frame)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200_000, help="bars per run")
    parser.add_argument("--repeats", type=int, default=5, help="runs per strategy (median reported)")
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args()
    frame = bars(args.n)
    run(Reads, frame.iloc[:2000])  # warm-up
    cases = {"reference": Empty, "history": Keeps, "history_read": Reads}
    medians = {name: statistics.median(run(cls, frame) for _ in range(args.repeats)) for name, cls in cases.items()}
    ratio = medians["history"] / medians["reference"]
    out = {
        "n": args.n,
        "repeats": args.repeats,
        "ns_per_bar": medians,
        "history_over_reference": ratio,
        "target_history_over_reference": 2.0,
        "ok": ratio <= 2.0,
    }
    if args.json:
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
        return
    sys.stdout.write(f"batch backtest per bar (CPU, median of {args.repeats}), n={args.n}\n")
    for name, value in medians.items():
        sys.stdout.write(f"  {name:<13} {value:8.1f} ns/bar\n")
    sys.stdout.write(f"  history / reference = {ratio:.2f} (target <= 2.0: {'ok' if out['ok'] else 'MISSED'})\n")


if __name__ == "__main__":
    main()
