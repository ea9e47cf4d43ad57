"""Cost of perpetual accounting: the same backtest on a spot (margin) and a perpetual instrument.

The bars of ``throughput.py`` (a seeded random walk of one-minute bars) run through EmaCross
long/short, once on a margin-enabled spot instrument and once on a linear perpetual at 5x
cross with an hourly mark price and 8-hourly funding (a ``MarkPrice`` every 60 bars, a
``FundingRate`` every 480 bars, through ``Kernel.feed_perpetual_data``). Both check initial
margin on every order and fill; the perpetual run also marks and checks liquidation on every
bar while a position is open, and settles funding.

Reported: bars/s of each (median of ``--runs``, CPU time of this process), and the ratio
perpetual / spot time per bar. Target: at most 1.5x.

Usage::

    python bench/perpetuals.py [--bars 200000] [--runs 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from pathlib import Path

from checkout import use_this_checkout

use_this_checkout()

from loguru import logger  # noqa: E402
from throughput import MINUTE_NS, make_bars  # noqa: E402

from tradebus.data.catalog import Catalog  # noqa: E402
from tradebus.data.replay import Replay, ReplaySource  # noqa: E402
from tradebus.engine.instrument import Instrument, InstrumentKind  # noqa: E402
from tradebus.engine.kernel import Kernel  # noqa: E402
from tradebus.engine.messages import FundingRate, MarkPrice  # noqa: E402
from tradebus.strategies.ema_cross import EmaCross  # noqa: E402

IID = "BTCUSDT.BENCH"
TARGET = 1.5


def _instrument(perpetual: bool) -> Instrument:
    kind = InstrumentKind.PERPETUAL if perpetual else InstrumentKind.SPOT
    return Instrument(
        "BENCH", "BTCUSDT", kind=kind, base="BTC", quote="USDT", tick_size=0.01, lot_size=1e-5,
        taker_fee=0.0004, margin=not perpetual, leverage=5.0,
    )


def _run(replay: Replay, perpetual: bool, feed: list) -> tuple[float, Kernel]:
    kernel = Kernel([_instrument(perpetual)], initial_cash=1_000_000.0)
    kernel.add_strategy(EmaCross(IID, fast=10, slow=30, mode="long_short", quantity=1.0))
    if perpetual:
        kernel.feed_perpetual_data(feed)
    c0 = time.process_time()
    kernel.run(replay)
    return time.process_time() - c0, kernel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bars", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    logger.remove()
    table = make_bars(args.bars)
    ts = table.column("ts_init").to_pylist()
    close = table.column("close").to_pylist()
    feed: list[MarkPrice | FundingRate] = []
    for k in range(0, args.bars, 60):
        feed.append(MarkPrice(IID, ts[k] + 1, ts[k] + 1, close[k], math.nan))
        if k % 480 == 0:
            feed.append(FundingRate(IID, ts[k] + 2, ts[k] + 2, 0.0001, ts[k] + 2))
    with tempfile.TemporaryDirectory(prefix="tradebus-bench-") as tmp:
        catalog = Catalog(Path(tmp) / "catalog")
        catalog.write(table, "bench", "spot", "BTCUSDT", "bars_1m", period="month", interval_ns=MINUTE_NS)
        replay = Replay([ReplaySource.from_catalog(catalog, IID, "bench", "spot", "BTCUSDT", "bars_1m")])
        _run(Replay([replay.sources[0]], end_ns=ts[999]), False, [])  # warm-up: numba cache, imports
        spot = [_run(replay, False, [])[0] for _ in range(args.runs)]
        perp_runs = [_run(replay, True, feed) for _ in range(args.runs)]
    perp = [t for t, _ in perp_runs]
    kernel = perp_runs[-1][1]
    spot_s, perp_s = statistics.median(spot), statistics.median(perp)
    out = {
        "bench": "perpetuals",
        "bars": args.bars,
        "spot_bars_per_s": args.bars / spot_s,
        "perpetual_bars_per_s": args.bars / perp_s,
        "ratio": perp_s / spot_s,
        "target_ratio": TARGET,
        "fills": len(kernel.result.fills),
        "funding_settlements": len(kernel.result.funding),
        "liquidations": len(kernel.result.liquidations),
    }
    if args.json:
        print(json.dumps(out))
        return
    print(f"spot (margin) : {out['spot_bars_per_s']:,.0f} bars/s (median of {args.runs}, CPU time)")
    print(f"perpetual     : {out['perpetual_bars_per_s']:,.0f} bars/s ({out['fills']} fills, "
          f"{out['funding_settlements']} funding settlements, {out['liquidations']} liquidations)")
    print(f"ratio         : {out['ratio']:.2f}x (target <= {TARGET}x)")


if __name__ == "__main__":
    main()
