"""Start-up reconciliation after a long outage: thousands of missed fills booked from the paged trade history, each once.

A first daemon places 300 resting limit buys of 10 units, sees 7 fills live (user stream,
journaled) and stops without canceling. While it is down, 2,605 public trades of one unit
each fill the orders one unit at a time (the account emulator limits a fill to the trade's
size): with the 7 seen live, 261 orders fill, one partly, 38 stay untouched. A second daemon on the same journal
must book the 2,605 missed fills from the venue's trade list -- read page by page (1,000 a
page), not order by order -- and the 7 it already had not again, resolve the recovered orders
from the venue's open-order list, and stay within the account's request-weight budget.

Checked against the emulator's own records (its trade list, its balances or position, its
request log), on Binance spot (``myTrades``) and USD-M (``userTrades``).
"""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from tests.live.live_harness import KEY, SECRET, until
from tests.live.node_testdata import USDM_IID, USDM_INSTRUMENT
from tradebus.adapters.binance.emulator import BinanceProtocol
from tradebus.adapters.binance.private_emulator import BinanceFuturesEmulator, BinancePrivateEmulator
from tradebus.adapters.binance.trading import FUTURES_WEIGHT_LIMIT, WEIGHT_LIMIT
from tradebus.adapters.common.account_emulator import AccountEmulator
from tradebus.adapters.common.local_server import LocalVenueServer
from tradebus.engine.instrument import Instrument, InstrumentKind
from tradebus.engine.messages import OrderFilled, OrderSide, OrderStatus, OrderType, SubmitOrder, Trade
from tradebus.execution.journal import Journal
from tradebus.node.live import ApiKeys, LiveNode, parse_live_config

SPOT = {"venue": "BINANCE", "symbol": "BTCUSDT", "base": "BTC", "quote": "USDT", "tick_size": 0.01,
        "lot_size": 1e-5, "taker_fee": 0.001, "maker_fee": 0.001, "margin": False}
UNIT = 0.125  # BTC per public trade, one fill each (a power of 2: sums of units are exact)
ORDERS, UNITS, LIVE_FILLS, MISSED = 300, 10, 7, 2_605
PRICE = 50_000.0


class Market:
    """One Binance market's emulator, config and trade-list request."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.perpetual = name == "usdm"
        self.instrument = USDM_INSTRUMENT if self.perpetual else SPOT
        self.iid = USDM_IID if self.perpetual else "BTCUSDT.BINANCE"
        self.trades_path = "/fapi/v1/userTrades" if self.perpetual else "/api/v3/myTrades"
        self.query_path = "/fapi/v1/order" if self.perpetual else "/api/v3/order"
        self.limit = FUTURES_WEIGHT_LIMIT if self.perpetual else WEIGHT_LIMIT

    def emulator(self) -> AccountEmulator:
        kind = InstrumentKind.PERPETUAL if self.perpetual else InstrumentKind.SPOT
        inst = Instrument(**{**self.instrument, "kind": kind})
        cls = BinanceFuturesEmulator if self.perpetual else BinancePrivateEmulator
        return cls(KEY, SECRET, {self.iid: inst}, {"USDT": 1e12}, trade_size_limit=True)

    def config(self, tmp: Path, ws_url: str, emulator: AccountEmulator) -> Any:
        return parse_live_config(
            {
                "instruments": [self.instrument],
                "strategy": {"name": "tradebus.strategies.tick_ema:TickEmaCross", "instruments": [self.iid],
                             "params": {"fast": 500, "slow": 1000, "quantity": UNIT}},  # never warm: only the test trades
                "venue": {"fill_on": "trades"},
                "feeds": [{"venue": "binance", "market": "usdm" if self.perpetual else "spot", "ws_url": ws_url,
                           "subscriptions": {self.iid: ["trade"]}}],
                "warm_up": False,
                "initial_cash": 1e12,
                "journal": str(tmp / "journal.sqlite"),
                "live": {"market": "perpetual" if self.perpetual else "spot", "rest_url": emulator.rest_url,
                         "ws_api_url": emulator.ws_url, "cancel_on_stop": False, "reconcile_interval": None},
            },
            "<test>",
        )

    def venue_position(self, emulator: AccountEmulator) -> float:
        if self.perpetual:
            assert isinstance(emulator, BinanceFuturesEmulator)
            return emulator.position("BTCUSDT")
        return emulator.balances.get("BTC", 0.0)


def _journal_trade_ids(path: Path) -> list[str]:
    journal = Journal(path)
    try:
        return [e.message.trade_id for e in journal.entries() if type(e.message) is OrderFilled]
    finally:
        journal.close()


@pytest.mark.parametrize("market", [Market("spot"), Market("usdm")], ids=["spot", "usdm"])
async def test_thousands_of_fills_missed_while_down_are_booked_once_from_the_paged_history(market: Market, tmp_path: Path) -> None:
    keys = ApiKeys(SecretStr(KEY), SecretStr(SECRET))
    emulator = market.emulator()
    iid = market.iid
    async with emulator, LocalVenueServer(BinanceProtocol(None), [], lifetime=120.0) as srv:
        config = market.config(tmp_path, srv.ws_url, emulator)
        first = LiveNode(config, keys, handle_signals=False)
        task = asyncio.create_task(first.run())
        await until(lambda: first.running.is_set() and not first.guard.holds, timeout=30)
        now = first.clock.now_ns()
        emulator.on_trade(Trade(iid, now, now, 60_000.0, 1.0, 1, "above"))  # the orders rest as makers
        placed = [
            first.kernel.execution.submit(SubmitOrder("t", iid, "", OrderSide.BUY, UNITS * UNIT, now, now, OrderType.LIMIT, PRICE))
            for _ in range(ORDERS)
        ]
        await until(lambda: all(o.status is OrderStatus.ACCEPTED for o in placed), timeout=60)
        t = max(now, emulator.clock.now_ns()) + 10**9
        for i in range(LIVE_FILLS):  # seen live, on the user stream
            emulator.on_trade(Trade(iid, t + i * 10**6, t + i * 10**6, PRICE - 1, UNIT, -1, f"live-{i}"))
        await until(lambda: len(first.kernel.result.fills) == LIVE_FILLS, timeout=10)
        first.stop("going down")
        await asyncio.wait_for(task, 30)

        t += LIVE_FILLS * 10**6
        for i in range(MISSED):  # while down: nobody listens
            emulator.on_trade(Trade(iid, t + i * 10**6, t + i * 10**6, PRICE - 1, UNIT, -1, f"down-{i}"))
        venue_ids = sorted(str(f.trade_id) for f in emulator.fills)
        assert len(venue_ids) == LIVE_FILLS + MISSED
        venue_status = {coid: rec.status for coid, rec in emulator.orders.items()}
        still_open = sorted(c for c, s in venue_status.items() if s in (OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED))
        assert len(still_open) == ORDERS - (LIVE_FILLS + MISSED) // UNITS  # 38 untouched + 1 partly filled

        before = len(emulator.requests)
        emulator.weight = 0  # a fresh minute of the venue's count
        second = LiveNode(config, keys, handle_signals=False)
        task = asyncio.create_task(second.run())
        orders = second.kernel.orders

        def reconciled() -> bool:
            if not second.running.is_set() or second.guard.holds:
                return False
            return sorted(o.client_order_id for o in orders.open_orders()) == still_open

        try:
            await until(reconciled, timeout=60)
            assert all(orders.order(c).status is s for c, s in venue_status.items())
            position = second.kernel.portfolio.position(iid)
            requests = emulator.requests[before:]
            peak = second.venue.api.budget.peak
            caught_up = second.reconciler.fills_caught_up
        finally:
            second.stop("test done")
            await asyncio.wait_for(task, 30)

    # every venue fill in the journal exactly once, with the venue's trade id
    assert sorted(_journal_trade_ids(tmp_path / "journal.sqlite")) == venue_ids
    assert caught_up == MISSED  # the 7 booked live were in the pages too, and skipped
    assert math.isclose(position, market.venue_position(emulator), abs_tol=1e-9)
    # paged: a few trade-list requests, no per-order query or per-order trade list
    pages = [r for r in requests if r[1] == market.trades_path]
    assert len(pages) == math.ceil((LIVE_FILLS + MISSED) / 1_000)  # 1,000 + 1,000 + 612: the short page is the last
    assert [r for r in requests if r[1] == market.query_path] == []
    assert len(requests) <= 8
    assert emulator.weight <= market.limit and peak <= market.limit
