"""Start-up reconciliation after a long outage: thousands of missed fills booked from the paged trade history, each once.

A first daemon places 300 resting limit buys of 10 units, sees 7 fills live (user stream,
journaled) and stops without canceling. While it is down, 2,605 public trades of one unit
each fill the orders one unit at a time (the account emulator limits a fill to the trade's
size): with the 7 seen live, 261 orders fill, one partly, 38 stay untouched. A second daemon on the same journal
must book the 2,605 missed fills from the venue's trade list -- read page by page (1,000 a
page), not order by order -- and the 7 it already had not again, resolve the recovered orders
from the venue's open-order list, and stay within the account's request-weight budget.

Checked against the emulator's own records (its trade list, its balances or position, its
request log), on Binance spot (``myTrades``) and USD-M (``userTrades``), 1,000 a page; OKX
spot and swap (``/api/v5/trade/fills``, ``after`` a ``billId``) and Bybit spot and linear
(``/v5/execution/list``, ``cursor``), 100 a page: 27 pages for 2,612 fills. OKX's and Bybit's
budgets (60 requests per 2 s, 10 a second) place 20 orders of 150 units instead of 300 of 10 (same
fills; 17 orders fill, one partly, 2 stay untouched), so the placing does not wait seconds for the budget.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from tests.live.live_harness import KEY, SECRET, until
from tests.live.node_testdata import BYBIT_IID, BYBIT_INSTRUMENT, OKX_IID, OKX_INSTRUMENT, USDM_IID, USDM_INSTRUMENT
from tests.live.venue_kits import PASSPHRASE
from tradebus.adapters.binance.emulator import BinanceProtocol
from tradebus.adapters.binance.private_emulator import BinanceFuturesEmulator, BinancePrivateEmulator
from tradebus.adapters.binance.trading import FUTURES_WEIGHT_LIMIT, WEIGHT_LIMIT
from tradebus.adapters.bybit.emulator import BybitProtocol
from tradebus.adapters.bybit.private_emulator import BybitLinearEmulator, BybitPrivateEmulator
from tradebus.adapters.common.account_emulator import AccountEmulator
from tradebus.adapters.common.local_server import LocalVenueServer, VenueProtocol
from tradebus.adapters.okx.emulator import OkxProtocol
from tradebus.adapters.okx.private_emulator import OkxPrivateEmulator, OkxSwapEmulator
from tradebus.engine.instrument import Instrument, InstrumentKind
from tradebus.engine.messages import OrderFilled, OrderSide, OrderStatus, OrderType, SubmitOrder, Trade
from tradebus.execution.journal import Journal
from tradebus.node.live import ApiKeys, LiveNode, parse_live_config

SPOT = {"venue": "BINANCE", "symbol": "BTCUSDT", "base": "BTC", "quote": "USDT", "tick_size": 0.01,
        "lot_size": 1e-5, "taker_fee": 0.001, "maker_fee": 0.001, "margin": False}
BYBIT_SPOT = {**SPOT, "venue": "BYBIT", "lot_size": 1e-6}
OKX_SWAP = {"venue": "OKX", "symbol": "BTC-USDT-SWAP", "kind": "perpetual", "base": "BTC", "quote": "USDT",
            "tick_size": 0.1, "lot_size": 1.0, "min_quantity": 1.0, "contract_size": 0.01, "taker_fee": 0.0005, "maker_fee": 0.0002}
UNIT = 0.125  # BTC per public trade, one fill each (a power of 2: sums of units are exact); contracts: 1
LIVE_FILLS, MISSED = 7, 2_605
PRICE = 50_000.0


@dataclass(frozen=True)
class Market:
    """One market's emulator, public stream, config and the requests the test counts."""

    name: str
    venue: str
    feed_market: str
    instrument: dict[str, Any]
    iid: str
    channel: str
    emulator_class: type[AccountEmulator]
    #: The public stream server's protocol (no frames: the test feeds the account its trades).
    protocol: Callable[[], VenueProtocol]
    #: The path of the trade-history request and of the query of one order (by client id).
    trades_path: str
    query_path: str
    #: Rows of one trade-history page.
    page: int
    #: Requests of the restart besides the trade-history pages, at most.
    others: int
    unit: float = UNIT
    #: Resting buys placed, of ``units`` units each (OKX's and Bybit's budgets: fewer, larger orders).
    orders: int = 300
    units: int = 10
    #: Binance's request-weight limit per minute (the emulator counts it); ``None``: other venues.
    weight_limit: int | None = None

    @property
    def perpetual(self) -> bool:
        return self.instrument.get("kind") == "perpetual"

    def keys(self) -> ApiKeys:
        return ApiKeys(SecretStr(KEY), SecretStr(SECRET), SecretStr(PASSPHRASE) if self.venue == "okx" else None)

    def emulator(self) -> AccountEmulator:
        kind = InstrumentKind.PERPETUAL if self.perpetual else InstrumentKind.SPOT
        inst = Instrument(**{**self.instrument, "kind": kind})
        return self.emulator_class(KEY, SECRET, {self.iid: inst}, {"USDT": 1e12}, passphrase=PASSPHRASE, trade_size_limit=True)

    def config(self, tmp: Path, ws_url: str, emulator: AccountEmulator) -> Any:
        return parse_live_config(
            {
                "instruments": [self.instrument],
                "strategy": {"name": "tradebus.strategies.tick_ema:TickEmaCross", "instruments": [self.iid],
                             "params": {"fast": 500, "slow": 1000, "quantity": self.unit}},  # never warm: only the test trades
                "venue": {"fill_on": "trades"},
                "feeds": [{"venue": self.venue, "market": self.feed_market, "ws_url": ws_url,
                           "subscriptions": {self.iid: [self.channel]}}],
                "warm_up": False,
                "initial_cash": 1e12,
                "journal": str(tmp / "journal.sqlite"),
                "live": {"market": "perpetual" if self.perpetual else "spot", "rest_url": emulator.rest_url,
                         "ws_api_url": emulator.ws_url, "cancel_on_stop": False, "reconcile_interval": None,
                         "submit_timeout": 30.0},  # placements may wait for the request budget
            },
            "<test>",
        )

    def venue_position(self, emulator: AccountEmulator) -> float:
        if self.perpetual:
            return emulator.position(emulator.symbol_of(Instrument(**{**self.instrument, "kind": InstrumentKind.PERPETUAL})))
        return emulator.balances.get("BTC", 0.0)


MARKETS = [
    Market("binance-spot", "binance", "spot", SPOT, "BTCUSDT.BINANCE", "trade", BinancePrivateEmulator, partial(BinanceProtocol, None),
           "/api/v3/myTrades", "/api/v3/order", 1_000, 5, weight_limit=WEIGHT_LIMIT),
    Market("binance-usdm", "binance", "usdm", USDM_INSTRUMENT, USDM_IID, "trade", BinanceFuturesEmulator, partial(BinanceProtocol, None),
           "/fapi/v1/userTrades", "/fapi/v1/order", 1_000, 11, weight_limit=FUTURES_WEIGHT_LIMIT),  # + the open algo orders, the margin check's positionRisk, the income history, the BNB balance, the order limits (rateLimit/order)
    Market("okx-spot", "okx", "spot", {**OKX_INSTRUMENT, "margin": False}, OKX_IID, "trades", OkxPrivateEmulator, partial(OkxProtocol, []),
           "/api/v5/trade/fills", "/api/v5/trade/order", 100, 7, orders=20, units=150),  # + the open algo orders, the listed symbols (account/instruments)
    Market("okx-swap", "okx", "swap", OKX_SWAP, "BTC-USDT-SWAP.OKX", "trades", OkxSwapEmulator, partial(OkxProtocol, []),
           "/api/v5/trade/fills", "/api/v5/trade/order", 100, 12, unit=1.0, orders=20, units=150),  # + the listed symbols, the margin check's positions, instruments, leverage-info, the funding bills
    Market("bybit-spot", "bybit", "spot", BYBIT_SPOT, "BTCUSDT.BYBIT", "publicTrade", BybitPrivateEmulator, partial(BybitProtocol, []),
           "/v5/execution/list", "/v5/order/realtime", 100, 5, orders=20, units=150),
    Market("bybit-linear", "bybit", "linear", BYBIT_INSTRUMENT, BYBIT_IID, "publicTrade", BybitLinearEmulator, partial(BybitProtocol, []),
           "/v5/execution/list", "/v5/order/realtime", 100, 8, orders=20, units=150),  # + the margin check's account info, position list
]


def _journal_trade_ids(path: Path) -> list[str]:
    journal = Journal(path)
    try:
        return [e.message.trade_id for e in journal.entries() if type(e.message) is OrderFilled]
    finally:
        journal.close()


@pytest.mark.parametrize("market", MARKETS, ids=[m.name for m in MARKETS])
async def test_thousands_of_fills_missed_while_down_are_booked_once_from_the_paged_history(market: Market, tmp_path: Path) -> None:
    keys = market.keys()
    emulator = market.emulator()
    iid, unit = market.iid, market.unit
    async with emulator, LocalVenueServer(market.protocol(), [], lifetime=120.0) as srv:
        config = market.config(tmp_path, srv.ws_url, emulator)
        first = LiveNode(config, keys, handle_signals=False)
        task = asyncio.create_task(first.run())
        await until(lambda: first.running.is_set() and not first.guard.holds, timeout=30)
        now = first.clock.now_ns()
        emulator.on_trade(Trade(iid, now, now, 60_000.0, 1.0, 1, "above"))  # the orders rest as makers
        placed = [
            first.kernel.execution.submit(SubmitOrder("t", iid, "", OrderSide.BUY, market.units * unit, now, now, OrderType.LIMIT, PRICE))
            for _ in range(market.orders)
        ]
        # Binance spot's 300 go out at the daemon's share of 100 orders per 10 s: four windows, 30 to 40 s of pacing alone
        await until(lambda: all(o.status is OrderStatus.ACCEPTED for o in placed), timeout=240)
        t = max(now, emulator.clock.now_ns()) + 10**9
        for i in range(LIVE_FILLS):  # seen live, on the user stream
            emulator.on_trade(Trade(iid, t + i * 10**6, t + i * 10**6, PRICE - 1, unit, -1, f"live-{i}"))
        await until(lambda: len(first.kernel.result.fills) == LIVE_FILLS, timeout=10)
        first.stop("going down")
        await asyncio.wait_for(task, 30)

        t += LIVE_FILLS * 10**6
        for i in range(MISSED):  # while down: nobody listens
            emulator.on_trade(Trade(iid, t + i * 10**6, t + i * 10**6, PRICE - 1, unit, -1, f"down-{i}"))
        venue_ids = sorted(str(f.trade_id) for f in emulator.fills)
        assert len(venue_ids) == LIVE_FILLS + MISSED
        venue_status = {coid: rec.status for coid, rec in emulator.orders.items()}
        still_open = sorted(c for c, s in venue_status.items() if s in (OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED))
        assert len(still_open) == market.orders - (LIVE_FILLS + MISSED) // market.units  # untouched + 1 partly filled

        before = len(emulator.requests)
        if market.weight_limit is not None:
            emulator.weight = 0  # a fresh minute of Binance's count
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
            budget = second.venue.api.budget
            peak, limit = budget.peak, budget.limit
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
    assert len(pages) == math.ceil((LIVE_FILLS + MISSED) / market.page)  # the short page is the last
    assert [r for r in requests if r[0] == "GET" and r[1] == market.query_path and r[2] in venue_status] == []
    assert len(requests) <= len(pages) + market.others
    assert peak <= limit
    if market.weight_limit is not None:
        assert emulator.weight <= market.weight_limit
