"""Tick-to-order latency of the live daemon against the local Binance account emulator, beside the paper daemon's.

Usage::

    NUMBA_CACHE_DIR=.cache/numba .venv/bin/python bench/live.py [--json] [--copies N] [--speed X]

Both sides replay the same Binance spot BTCUSDT capture (trades and bookTicker) from a
:class:`~tradebus.adapters.common.local_server.LocalVenueServer` in this process, with the
strategy of ``bench/market_data_latency.py`` (``Flipper``: one market order per trade):

* reference: the paper daemon (:class:`~tradebus.node.daemon.PaperNode`), ``tick_to_accept``
  = receive time of the trade -> ``OrderAccepted`` of the simulated venue;
* live: :class:`~tradebus.node.live.LiveNode` against
  :class:`~tradebus.adapters.binance.private_emulator.BinancePrivateEmulator` (signed REST
  through ccxt, HMAC verified, user stream), ``tick_to_sent`` = receive time -> the POST's
  arrival at the emulator, and ``tick_to_accept`` = receive time -> ``OrderAccepted`` (REST ack).

Target (issue 9): live p99 tick-to-sent no worse than the paper p99 tick-to-accept. Prints both.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from loguru import logger  # noqa: E402
from pydantic import SecretStr  # noqa: E402

from market_data_latency import DECIDED_ON, DECIDING_ON, Flipper, frames, percentiles  # noqa: E402,F401
from market_data_latency import run as paper_run  # noqa: E402
from tradebus.adapters.binance.private_emulator import BinancePrivateEmulator, MatchingProtocol  # noqa: E402
from tradebus.adapters.common.local_server import LocalVenueServer  # noqa: E402
from tradebus.engine.messages import OrderAccepted, OrderSubmitted  # noqa: E402
from tradebus.node.live import ApiKeys, LiveNode, parse_live_config  # noqa: E402

IID = "BTCUSDT.BINANCE"
KEY, SECRET = "bench-key", "bench-secret"


async def live_run(copies: int, speed: float | None) -> dict[str, Any]:
    data = frames(copies)
    n_trades = sum("@trade" in raw for _, raw in data)
    DECIDED_ON.clear()
    sent_ns: dict[str, int] = {}
    accept_ns: list[int] = []
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        logger.remove()
        logger.add(tmp / "live.log", level="INFO")
        instrument = {"venue": "BINANCE", "symbol": "BTCUSDT", "base": "BTC", "quote": "USDT", "tick_size": 0.01,
                      "lot_size": 1e-5, "taker_fee": 0.001, "maker_fee": 0.001, "margin": True}
        probe = parse_live_config({"instruments": [instrument], "strategy": {"name": "__main__:Flipper", "instruments": [IID]},
                                   "feeds": [{"venue": "binance", "market": "spot", "subscriptions": {IID: ["trade"]}}]})
        emulator = BinancePrivateEmulator(KEY, SECRET, probe.instrument_map(), {"USDT": 100_000.0})
        async with emulator:
            protocol = MatchingProtocol(None, account=emulator, instrument_ids={"btcusdt": IID})
            async with LocalVenueServer(protocol, data, speed=speed, lifetime=3600.0) as srv:
                config = parse_live_config(
                    {
                        "instruments": [instrument],
                        "strategy": {"name": "__main__:Flipper", "instruments": [IID]},
                        "venue": {"fill_on": "trades"},
                        "feeds": [{"venue": "binance", "market": "spot", "ws_url": srv.ws_url,
                                   "subscriptions": {IID: ["trade", "bookTicker"]}}],
                        "journal": str(tmp / "journal.sqlite"),
                        "live": {"rest_url": emulator.rest_url, "ws_api_url": emulator.ws_api_url},
                    },
                    "<bench>",
                )
                node = LiveNode(config, ApiKeys(SecretStr(KEY), SecretStr(SECRET)), handle_signals=False)
                clock_ns = time.time_ns

                def on_submitted(event: OrderSubmitted) -> None:
                    DECIDED_ON[event.client_order_id] = DECIDING_ON[0]

                def on_accepted(event: OrderAccepted) -> None:
                    accept_ns.append(clock_ns() - DECIDED_ON[event.client_order_id])

                node.kernel.bus.subscribe(OrderSubmitted, on_submitted)
                node.kernel.bus.subscribe(OrderAccepted, on_accepted)
                result = node.kernel.result
                task = asyncio.create_task(node.run())
                t0 = time.perf_counter()
                while not task.done() and (result.trades < n_trades or len(accept_ns) < len(DECIDED_ON)):
                    await asyncio.sleep(0.05)
                    if time.perf_counter() - t0 > 600:
                        break
                elapsed = time.perf_counter() - t0
                node.stop("bench done")
                await task
                sent_ns = {c: emulator.placed_ns[c] - t for c, t in DECIDED_ON.items() if c in emulator.placed_ns}
    return {
        "decisions": len(DECIDED_ON),
        "placed": len(sent_ns),
        "trades": result.trades,
        "elapsed_s": elapsed,
        "tick_to_sent": percentiles(list(sent_ns.values())),
        "tick_to_accept": percentiles(accept_ns),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--copies", type=int, default=1, help="capture repetitions (1 -> 676 trades)")
    parser.add_argument("--speed", type=float, default=2.0, help="replay pace; 0 = as fast as possible")
    args = parser.parse_args()
    paper = asyncio.run(paper_run(args.copies, args.speed or None, True))
    live = asyncio.run(live_run(args.copies, args.speed or None))
    ratio = live["tick_to_sent"]["p99_us"] / paper["tick_to_accept"]["p99_us"]
    report = {"paper": paper, "live": live, "live_p99_sent_over_paper_p99_accept": ratio}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"tick-to-order, {live['decisions']:,} live decisions ({paper['decisions']:,} paper), "
          f"{args.copies} copies at {args.speed or 'max'}x")
    rows = [("paper tick_to_accept", paper["tick_to_accept"]), ("live tick_to_sent", live["tick_to_sent"]),
            ("live tick_to_accept", live["tick_to_accept"])]
    for name, p in rows:
        print(f"  {name:<22} p50 {p['p50_us']:8.1f} us   p99 {p['p99_us']:8.1f} us   max {p['max_us']:9.1f} us")
    print(f"  live p99 tick-to-sent / paper p99 tick-to-accept = {ratio:.2f} (target <= 1)")


if __name__ == "__main__":
    main()
