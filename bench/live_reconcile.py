"""Start-up reconciliation of the live daemon with 1,000 open orders, beside the same number of bare REST round trips.

Usage::

    python bench/live_reconcile.py [--orders 1000] [--filled 100] [--repeat 3] [--json]

Each repeat, against a fresh :class:`~tradebus.adapters.binance.private_emulator.BinancePrivateEmulator`:

1. a first :class:`~tradebus.node.live.LiveNode` places ``--orders`` resting limit buys
   (journaled, acknowledged) and stops without canceling them (``cancel_on_stop: false``);
2. while it is down, a public trade fills ``--filled`` of them at the venue;
3. measured: a second daemon on the same journal, from ``run()`` until the start-up
   reconciliation is complete -- every journaled open order queried by client id, the
   fills missed while down booked from the venue's trade list (those orders FILLED), the
   balances compared and the start-up hold lifted;
4. reference: the same number of ``GET /api/v3/order`` (query by client id) requests for
   the same orders through a fresh :class:`~tradebus.adapters.binance.trading.BinanceTrading`
   (signed, ccxt, the same weight budget), one after another, no kernel (issued all at once,
   a thousand signed requests wait in the connection pool past Binance's 5 s ``recvWindow``
   on a loaded machine and are refused ``-1021``).

The emulator's per-minute weight is reset before steps 3 and 4, so each starts on a fresh
minute of Binance's 6,000 budget. Printed: both times (median over ``--repeat``), their
ratio, and the requests and weight the reconciliation used against the budget. With the
defaults the reconciliation needs 1,000 order queries (weight 4) and 100 trade-list
requests (weight 20): more than one minute's budget, so the shared budget paces it and
the time is mostly the wait for the next minute -- which is the point of the budget.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from loguru import logger  # noqa: E402
from pydantic import SecretStr  # noqa: E402

from tradebus.adapters.binance.emulator import BinanceProtocol  # noqa: E402
from tradebus.adapters.binance.private_emulator import WEIGHTS as VENUE_WEIGHTS  # noqa: E402
from tradebus.adapters.binance.private_emulator import BinancePrivateEmulator  # noqa: E402
from tradebus.adapters.binance.trading import WEIGHT_LIMIT, WEIGHTS, BinanceTrading  # noqa: E402
from tradebus.adapters.common.local_server import LocalVenueServer  # noqa: E402
from tradebus.engine.messages import OrderSide, OrderStatus, OrderType, SubmitOrder, Trade  # noqa: E402
from tradebus.node.live import ApiKeys, LiveNode, parse_live_config  # noqa: E402

IID = "BTCUSDT.BINANCE"
KEY, SECRET = "bench-key-0123456789", "bench-secret-0123456789"
INSTRUMENT = {"venue": "BINANCE", "symbol": "BTCUSDT", "base": "BTC", "quote": "USDT", "tick_size": 0.01,
              "lot_size": 1e-5, "taker_fee": 0.001, "maker_fee": 0.001, "margin": False}
QTY = 0.001


def _config(tmp: Path, ws_url: str, emulator: BinancePrivateEmulator) -> Any:
    return parse_live_config(
        {
            "instruments": [INSTRUMENT],
            "strategy": {"name": "tradebus.strategies.tick_ema:TickEmaCross", "instruments": [IID], "params": {"fast": 2, "slow": 5, "quantity": QTY}},
            "venue": {"fill_on": "trades"},
            "feeds": [{"venue": "binance", "market": "spot", "ws_url": ws_url, "subscriptions": {IID: ["trade"]}}],
            "warm_up": False,
            "journal": str(tmp / "journal.sqlite"),
            "live": {"rest_url": emulator.rest_url, "ws_api_url": emulator.ws_api_url, "cancel_on_stop": False,
                     "reconcile_interval": None, "stop_timeout": 60.0, "request_timeout": 30.0},
        },
        "<bench>",
    )


async def _until(check: Any, timeout: float, what: str) -> None:
    end = time.perf_counter() + timeout
    while not check():
        if time.perf_counter() > end:
            raise RuntimeError(f"bench: {what} not done within {timeout} s")
        await asyncio.sleep(0.001)


async def one(tmp: Path, n_orders: int, n_filled: int) -> dict[str, Any]:
    """One repeat (see the module docstring): the reconciliation's and the reference's times and requests."""
    keys = ApiKeys(SecretStr(KEY), SecretStr(SECRET))
    probe = _config(tmp, "ws://unused", BinancePrivateEmulator(KEY, SECRET, {}))
    async with BinancePrivateEmulator(KEY, SECRET, probe.instrument_map(), {"USDT": 10_000_000.0}) as emulator:
        async with LocalVenueServer(BinanceProtocol(None), [], lifetime=3600.0) as srv:
            config = _config(tmp, srv.ws_url, emulator)
            # 1. a journal with n_orders open orders: limit buys from 50,000 down, one tick apart
            first = LiveNode(config, keys, handle_signals=False)
            task = asyncio.create_task(first.run())
            await _until(lambda: first.running.is_set() and not first.guard.holds, 60, "first start")
            now = first.clock.now_ns()
            placed = [
                first.kernel.execution.submit(SubmitOrder("bench", IID, "", OrderSide.BUY, QTY, now, now, OrderType.LIMIT, 50_000.0 - i * 0.01))
                for i in range(n_orders)
            ]
            await _until(lambda: all(o.status is OrderStatus.ACCEPTED for o in placed), 600, "placing")
            first.stop("journal built")
            await task
            # 2. while down: a trade at the price of the n_filled-th order fills the n_filled highest
            price = 50_000.0 - (n_filled - 1) * 0.01
            emulator.on_trade(Trade(IID, now + 10**9, now + 10**9, price, 1_000.0, -1, "down"))
            assert len(emulator.trades) == n_filled
            filled = {o.client_order_id for o in placed[:n_filled]}
            # 3. the restart, timed until reconciled
            emulator.weight, before = 0, len(emulator.requests)
            second = LiveNode(config, keys, handle_signals=False)
            t0 = time.perf_counter()
            task = asyncio.create_task(second.run())
            orders = second.kernel.orders

            def reconciled() -> bool:
                if not second.running.is_set() or second.guard.holds:
                    return False
                return all(orders.order(c).status is OrderStatus.FILLED for c in filled)

            await _until(reconciled, 600, "reconciliation")
            elapsed = time.perf_counter() - t0
            requests = emulator.requests[before:]
            weight = sum(VENUE_WEIGHTS.get((method, path), 1) for method, path, _ in requests)
            assert len(orders.open_orders()) == n_orders - n_filled and not second.external_orders
            second.stop("bench done")
            await task
            # 4. the reference: the same order queries, bare, one after another
            emulator.weight = 0
            api = BinanceTrading(emulator.rest_url, keys.key, keys.secret, config.instrument_map())
            queries = list(placed)
            try:
                t1 = time.perf_counter()
                reports = [await api.query(o) for o in queries]
                bare = time.perf_counter() - t1
            finally:
                await api.close()
            assert all(r is not None for r in reports)
    by_kind: dict[str, int] = {}
    for method, path, _ in requests:
        by_kind[f"{method} {path}"] = by_kind.get(f"{method} {path}", 0) + 1
    return {"reconcile_s": elapsed, "reference_s": bare, "reference_requests": len(queries),
            "requests": len(requests), "requests_by_endpoint": by_kind, "weight": weight}


async def bench(n_orders: int, n_filled: int, repeat: int) -> dict[str, Any]:
    runs = []
    for i in range(repeat):
        with tempfile.TemporaryDirectory() as tmp:
            runs.append(await one(Path(tmp), n_orders, n_filled))
    med = {k: statistics.median(r[k] for r in runs) for k in ("reconcile_s", "reference_s", "requests", "weight")}
    return {
        "orders": n_orders,
        "filled_while_down": n_filled,
        "repeat": repeat,
        "runs": runs,
        "median": med,
        "reconcile_over_reference": med["reconcile_s"] / med["reference_s"],
        "weight_limit_per_minute": WEIGHT_LIMIT,
        "query_weight": WEIGHTS["private_get_order"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1000, help="open orders in the journal")
    parser.add_argument("--filled", type=int, default=100, help="of them filled at the venue while the daemon is down")
    parser.add_argument("--repeat", type=int, default=3, help="repeats (medians are reported)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()
    logger.remove()
    logger.add(sys.stderr, level="ERROR")
    report = asyncio.run(bench(args.orders, args.filled, args.repeat))
    if args.json:
        print(json.dumps(report, indent=2))
        return
    med = report["median"]
    print(f"start-up reconciliation, {args.orders:,} open orders ({args.filled} filled while down), median of {args.repeat}")
    print(f"  reconciliation (restart -> reconciled)   {med['reconcile_s'] * 1e3:9.1f} ms  "
          f"{med['requests']:.0f} requests, weight {med['weight']:.0f} of {WEIGHT_LIMIT}/min")
    print(f"  reference ({report['runs'][0]['reference_requests']:,} bare order queries)  {med['reference_s'] * 1e3:9.1f} ms")
    print(f"  reconciliation / reference = {report['reconcile_over_reference']:.2f}")


if __name__ == "__main__":
    main()
