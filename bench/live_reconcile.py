"""Start-up reconciliation of the live daemon with 1,000 open orders and 10,000 fills missed while down, beside bare REST round trips.

Usage::

    python bench/live_reconcile.py [--orders 1000] [--fills 10000] [--repeat 3] [--json]

Each repeat, against a fresh :class:`~tradebus.adapters.binance.private_emulator.BinancePrivateEmulator`
(public trades fill at most their own size, so one order takes many fills):

1. a first :class:`~tradebus.node.live.LiveNode` places ``--orders`` resting limit buys of
   ``ceil(fills / orders) + 1`` units of 0.125 BTC each (journaled, acknowledged) and stops
   without canceling them (``cancel_on_stop: false``);
2. while it is down, ``--fills`` public trades of 0.125 BTC each fill the orders one unit at
   a time, in order: ``--fills`` fills, most orders FILLED, one partly, the rest untouched;
3. measured: a second daemon on the same journal, from ``run()`` until the start-up
   reconciliation is complete -- the fills missed while down read from the symbol's trade
   list page by page (``GET /api/v3/myTrades``, 1,000 a page) and booked once each, the
   orders that still differ queried, the balances compared and the start-up hold lifted;
4. reference: the per-order reconciliation this replaced -- :meth:`~tradebus.adapters.binance.trading.BinanceTrading.query`
   of each of the ``--orders`` orders (``GET /api/v3/order`` by client id, weight 4, and
   ``GET /api/v3/myTrades`` of its ``orderId``, weight 5, when it has fills) through a fresh
   ``BinanceTrading`` (signed, ccxt, the same weight budget), one after another, no kernel.
   With the defaults that is ~8,500 weight: more than one minute's budget, so the budget
   makes it wait for the next minute.

The emulator's per-minute weight is reset before steps 3 and 4, so each starts on a fresh
minute of Binance's 6,000 budget. Printed: both times (median over ``--repeat``), their
ratio, the requests by endpoint and the weight the reconciliation used against the budget.
Asserted: every venue fill booked exactly once (the journal's trade ids are the venue's),
the position equal to the venue's balance, and the weight within the budget.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from checkout import use_this_checkout

ROOT = use_this_checkout()

from loguru import logger  # noqa: E402
from pydantic import SecretStr  # noqa: E402

from tradebus.adapters.binance.emulator import BinanceProtocol  # noqa: E402
from tradebus.adapters.binance.private_emulator import BinancePrivateEmulator  # noqa: E402
from tradebus.adapters.binance.trading import WEIGHT_LIMIT, WEIGHTS, BinanceTrading  # noqa: E402
from tradebus.adapters.common.local_server import LocalVenueServer  # noqa: E402
from tradebus.engine.messages import OrderSide, OrderStatus, OrderType, SubmitOrder, Trade  # noqa: E402
from tradebus.node.live import ApiKeys, LiveNode, parse_live_config  # noqa: E402

IID = "BTCUSDT.BINANCE"
KEY, SECRET = "bench-key-0123456789", "bench-secret-0123456789"
INSTRUMENT = {"venue": "BINANCE", "symbol": "BTCUSDT", "base": "BTC", "quote": "USDT", "tick_size": 0.01,
              "lot_size": 1e-5, "taker_fee": 0.001, "maker_fee": 0.001, "margin": False}
UNIT = 0.125  # BTC per public trade: one fill (a power of 2: sums of it are exact)


def _config(tmp: Path, ws_url: str, emulator: BinancePrivateEmulator) -> Any:
    return parse_live_config(
        {
            "instruments": [INSTRUMENT],
            "strategy": {"name": "tradebus.strategies.tick_ema:TickEmaCross", "instruments": [IID], "params": {"fast": 2, "slow": 5, "quantity": UNIT}},
            "venue": {"fill_on": "trades"},
            "feeds": [{"venue": "binance", "market": "spot", "ws_url": ws_url, "subscriptions": {IID: ["trade"]}}],
            "warm_up": False,
            "initial_cash": 1e12,  # the orders rest at 50,000 and buy up to 1,000 x 1.375 BTC
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


async def one(tmp: Path, n_orders: int, n_fills: int) -> dict[str, Any]:
    """One repeat (see the module docstring): the reconciliation's and the reference's times and requests."""
    keys = ApiKeys(SecretStr(KEY), SecretStr(SECRET))
    probe = _config(tmp, "ws://unused", BinancePrivateEmulator(KEY, SECRET, {}))
    units = math.ceil(n_fills / n_orders) + 1
    qty = round(units * UNIT, 8)
    emulator = BinancePrivateEmulator(KEY, SECRET, probe.instrument_map(), {"USDT": 1e12}, trade_size_limit=True)
    async with emulator:
        async with LocalVenueServer(BinanceProtocol(None), [], lifetime=3600.0) as srv:
            config = _config(tmp, srv.ws_url, emulator)
            # 1. a journal with n_orders open orders: limit buys at 50,000
            first = LiveNode(config, keys, handle_signals=False)
            task = asyncio.create_task(first.run())
            await _until(lambda: first.running.is_set() and not first.guard.holds, 60, "first start")
            now = first.clock.now_ns()
            emulator.on_trade(Trade(IID, now, now, 60_000.0, 1.0, 1, "before"))  # the orders rest (maker), none takes
            placed = [
                first.kernel.execution.submit(SubmitOrder("bench", IID, "", OrderSide.BUY, qty, now, now, OrderType.LIMIT, 50_000.0))
                for _ in range(n_orders)
            ]
            await _until(lambda: all(o.status is OrderStatus.ACCEPTED for o in placed), 10, "placing")
            first.stop("journal built")
            await task
            # 2. while down: n_fills trades of one unit each, every one filling the first order still working
            t = max(now, emulator.clock.now_ns()) + 10**9
            for i in range(n_fills):
                emulator.on_trade(Trade(IID, t + i * 10**6, t + i * 10**6, 49_999.0, UNIT, -1, f"down-{i}"))
            assert len(emulator.fills) == n_fills
            # 3. the restart, timed until reconciled
            emulator.weight, before = 0, len(emulator.requests)
            second = LiveNode(config, keys, handle_signals=False)
            t0 = time.perf_counter()
            task = asyncio.create_task(second.run())
            orders = second.kernel.orders
            venue_status = {coid: rec.status for coid, rec in emulator.orders.items()}

            def reconciled() -> bool:
                if not second.running.is_set() or second.guard.holds:
                    return False
                return all(o.status is venue_status[o.client_order_id] for o in orders.open_orders())

            await _until(reconciled, 600, "reconciliation")
            elapsed = time.perf_counter() - t0
            requests = emulator.requests[before:]
            weight = emulator.weight  # the venue's count of this minute (reset before the restart)
            kernel = second.kernel
            assert len(orders.open_orders()) == sum(1 for st in venue_status.values() if st in (OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED))
            assert not second.external_orders
            position = kernel.portfolio.position(IID)
            budget_peak = second.venue.api.budget.peak
            second.stop("bench done")
            await task
            trade_ids = _journal_trade_ids(config.journal)
            assert sorted(trade_ids) == sorted(str(f.trade_id) for f in emulator.fills), "a fill lost or booked twice"
            assert math.isclose(position, emulator.balances["BTC"], abs_tol=1e-9), (position, emulator.balances["BTC"])
            assert weight <= WEIGHT_LIMIT and budget_peak <= WEIGHT_LIMIT, f"over budget: weight {weight}, peak {budget_peak}"
            # 4. the reference: each order queried (with its trades), one after another
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
            "requests": len(requests), "requests_by_endpoint": by_kind, "weight": weight,
            "fills_booked_at_startup": second.reconciler.fills_caught_up}


def _journal_trade_ids(path: Path | None) -> list[str]:
    """Trade ids of every fill in the journal (each entry once)."""
    from tradebus.engine.messages import OrderFilled
    from tradebus.execution.journal import Journal

    assert path is not None
    journal = Journal(path)
    try:
        return [e.message.trade_id for e in journal.entries() if type(e.message) is OrderFilled]
    finally:
        journal.close()


async def bench(n_orders: int, n_fills: int, repeat: int) -> dict[str, Any]:
    runs = []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as tmp:
            runs.append(await one(Path(tmp), n_orders, n_fills))
    med = {k: statistics.median(r[k] for r in runs) for k in ("reconcile_s", "reference_s", "requests", "weight")}
    return {
        "orders": n_orders,
        "fills_while_down": n_fills,
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
    parser.add_argument("--fills", type=int, default=10_000, help="fills of them at the venue while the daemon is down")
    parser.add_argument("--repeat", type=int, default=3, help="repeats (medians are reported)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()
    logger.remove()
    logger.add(sys.stderr, level="ERROR")
    report = asyncio.run(bench(args.orders, args.fills, args.repeat))
    if args.json:
        print(json.dumps(report, indent=2))
        return
    med = report["median"]
    print(f"start-up reconciliation, {args.orders:,} open orders, {args.fills:,} fills missed while down, median of {args.repeat}")
    print(f"  reconciliation (restart -> reconciled)   {med['reconcile_s'] * 1e3:9.1f} ms  "
          f"{med['requests']:.0f} requests, weight {med['weight']:.0f} of {WEIGHT_LIMIT}/min")
    for endpoint, n in sorted(report["runs"][0]["requests_by_endpoint"].items()):
        print(f"      {endpoint:<28} {n:6d}")
    print(f"  reference (per-order queries of {report['runs'][0]['reference_requests']:,} orders)  {med['reference_s'] * 1e3:9.1f} ms")
    print(f"  reconciliation / reference = {report['reconcile_over_reference']:.2f}")


if __name__ == "__main__":
    main()
