"""``live.on_mismatch``: what a persisting holding mismatch does to an instrument (hold, or REDUCING).

The live daemon trades Binance spot against the local account emulator. The config says the
account starts with 0.05 BTC; the venue holds 0.02 BTC: the start-up reconciliation finds the
mismatch. With the default ``hold`` every new order on the instrument is denied. With
``reducing`` an order passes only if it reduces the BTC held both here and at the venue
(working orders on its side included): a buy is denied, a sell of more than the venue holds
is denied, a sell of 0.01 fills at the venue, and then the venue's remaining 0.01 bounds the
next sells, a resting sell included. Either way the mismatch is never overwritten; once the
venue agrees, the next comparison lifts REDUCING.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from pydantic import SecretStr

from tradebus.engine.bus import MessageBus
from tradebus.engine.clock import SimulatedClock
from tradebus.engine.messages import Liquidity, OrderAccepted, OrderFilled, OrderSubmitted
from tradebus.engine.portfolio import Portfolio
from tradebus.execution.orders import OrderManager
from tradebus.risk.config import RiskConfig
from tradebus.risk.guard import GuardedRiskGate

from tests.live.live_harness import KEY, SECRET, until
from tests.live.node_testdata import BINANCE_INSTRUMENT, IID, SPOT_FRAMES, SPOT_SNAPSHOT, binance_config
from tradebus.adapters.binance.private_emulator import BinancePrivateEmulator, MatchingProtocol
from tradebus.adapters.common.local_server import LocalVenueServer
from tradebus.engine.instrument import Instrument
from tradebus.engine.messages import OrderSide, OrderStatus, OrderType, SubmitOrder, Trade, TradingState
from tradebus.errors import ConfigError
from tradebus.execution.orders import Order
from tradebus.node.live import ApiKeys, InstrumentHeld, LiveGuard, LiveNode, parse_live_config

SPOT = {**BINANCE_INSTRUMENT, "margin": False}
#: The first trades of the capture: prices for the marks, too few for the strategy's EMAs.
FRAMES = [f for f in SPOT_FRAMES if '@trade"' in f[1]][:20]
LAST_PRICE = float(json.loads(FRAMES[-1][1])["data"]["p"])


def _data(ws_url: str, rest_url: str, account_url: str, account_ws_url: str, on_mismatch: str | None) -> dict[str, Any]:
    data = binance_config(
        ws_url,
        rest_url,
        ["trade"],
        strategy={
            "name": "tradebus.strategies.tick_ema:TickEmaCross",
            "instruments": [IID],
            "params": {"fast": 2, "slow": 1000, "quantity": 0.01, "mode": "long_only"},  # never ready: no order of its own
        },
    )
    data["instruments"] = [SPOT]
    data["warm_up"] = False
    data["balances"] = {"USDT": 100_000.0, "BTC": 0.05}
    data["live"] = {
        "rest_url": account_url,
        "ws_api_url": account_ws_url,
        "request_timeout": 1.0,
        "submit_timeout": 1.0,
        "reconcile_interval": None,
    }
    if on_mismatch is not None:
        data["live"]["on_mismatch"] = on_mismatch
    return data


@asynccontextmanager
async def _node(on_mismatch: str | None) -> AsyncIterator[tuple[LiveNode, BinancePrivateEmulator, list[InstrumentHeld]]]:
    emulator = BinancePrivateEmulator(KEY, SECRET, {IID: Instrument(**SPOT)}, {"USDT": 100_000.0, "BTC": 0.02})
    async with emulator:
        protocol = MatchingProtocol(SPOT_SNAPSHOT, account=emulator, instrument_ids={"btcusdt": IID})
        async with LocalVenueServer(protocol, FRAMES) as srv:
            config = parse_live_config(_data(srv.ws_url, srv.http_url, emulator.rest_url, emulator.ws_api_url, on_mismatch), "<test>")
            node = LiveNode(config, ApiKeys(SecretStr(KEY), SecretStr(SECRET)), handle_signals=False)
            events: list[InstrumentHeld] = []
            node.kernel.bus.subscribe(InstrumentHeld, events.append)
            task = asyncio.create_task(node.run())
            try:
                await until(lambda: task.done() or (node.running.is_set() and node.kernel.result.trades == len(FRAMES)
                                                    and any(e.reason.startswith("reconciliation") for e in events)), timeout=20)
                yield node, emulator, events
            finally:
                node.stop("test done")
                await asyncio.wait_for(task, 20)


def _submit(node: LiveNode, side: OrderSide, qty: float, price: float | None = None) -> Order:
    now = node.clock.now_ns()
    typ = OrderType.MARKET if price is None else OrderType.LIMIT
    return node.kernel.execution.submit(SubmitOrder("TickEmaCross", IID, "", side, qty, now, now, typ, float("nan") if price is None else price))


async def test_by_default_a_persisting_mismatch_holds_the_instrument() -> None:
    async with _node(None) as (node, emulator, events):
        assert events[-1].state is TradingState.HALTED and "0.05 BTC held here but 0.02 at the venue" in events[-1].reason
        assert IID in node.guard.holds and not node.guard.reducing
        sell = _submit(node, OrderSide.SELL, 0.01)
        assert sell.status is OrderStatus.DENIED and "0.05 BTC held here but 0.02" in sell.reason
    assert not emulator.orders  # nothing reached the venue


async def test_reducing_lets_only_orders_through_that_reduce_the_holding_here_and_at_the_venue() -> None:
    async with _node("reducing") as (node, emulator, events):
        assert events[-1].state is TradingState.REDUCING and "0.05 BTC held here but 0.02 at the venue" in events[-1].reason
        assert IID not in node.guard.holds and node.guard.reducing[IID][1] == pytest.approx(0.03)
        assert node.guard.lot_sizes == {IID: SPOT["lot_size"]}
        buy = _submit(node, OrderSide.BUY, 0.001)
        assert buy.status is OrderStatus.DENIED and buy.reason.startswith("REDUCING")
        too_much = _submit(node, OrderSide.SELL, 0.03)  # reduces here (0.05) but would oversell the venue (0.02)
        assert too_much.status is OrderStatus.DENIED and "at the venue (0.02" in too_much.reason
        sell = _submit(node, OrderSide.SELL, 0.01)
        await until(lambda: sell.status is OrderStatus.ACCEPTED)
        last = emulator.clock.now_ns() + 10**6
        emulator.on_trade(Trade(IID, last, last, LAST_PRICE, 1.0, -1, "after-1"))
        await until(lambda: sell.status is OrderStatus.FILLED)
        assert emulator.balances["BTC"] == pytest.approx(0.01)
        assert node.kernel.portfolio.account.balance("BTC") == pytest.approx(0.04)
        # the venue's 0.01 left bounds the next sells, working ones included
        assert _submit(node, OrderSide.SELL, 0.015).status is OrderStatus.DENIED
        resting = _submit(node, OrderSide.SELL, 0.01, price=LAST_PRICE * 2)
        await until(lambda: resting.status is OrderStatus.ACCEPTED)
        more = _submit(node, OrderSide.SELL, 0.001)
        assert more.status is OrderStatus.DENIED and "working on the order's side -0.01" in more.reason
        assert node.guard.reducing[IID][1] == pytest.approx(0.03)  # the mismatch stays, never overwritten
        assert set(emulator.orders) == {sell.client_order_id, resting.client_order_id}
        # the account is put right at the venue: the next comparison lifts REDUCING
        emulator.balances["BTC"] = 0.04
        await node.reconciler.compare_balances(startup=False)
        assert IID not in node.guard.reducing and not node.guard.holds
        assert events[-1].state is TradingState.ACTIVE and events[-1].reason == ""
        buy = _submit(node, OrderSide.BUY, 0.001)
        assert buy.status is not OrderStatus.DENIED, buy.reason


def test_on_mismatch_takes_hold_or_reducing_only() -> None:
    data = _data("ws://x", "http://x", "http://x", "ws://x", "flatten")
    with pytest.raises(ConfigError, match="on_mismatch"):
        parse_live_config(data, "<test>")


class Guarded:
    """A live guard before the risk gate over a portfolio of ``instruments``, every order book on one manager."""

    def __init__(self, instruments: list[Instrument], cash: float, balances: dict[str, float] | None = None) -> None:
        bus, self.clock = MessageBus(), SimulatedClock(0)
        self.portfolio = Portfolio({i.instrument_id: i for i in instruments}, cash, balances)
        self.guard = LiveGuard()
        self.guard.lot_sizes = {i.instrument_id: i.lot_size for i in instruments}
        self.gate = GuardedRiskGate(RiskConfig(), self.portfolio, self.clock, bus, self.guard)
        self.orders = OrderManager(bus, self.clock)
        self.gate.bind_orders(self.orders)
        for inst in instruments:
            self.portfolio.mark(inst.instrument_id, 100.0)
            self.gate.on_price(inst.instrument_id, 100.0)

    def check(self, iid: str, side: OrderSide, qty: float) -> str | None:
        return self.gate.check(SubmitOrder("s", iid, "new", side, qty, 0, 0, OrderType.LIMIT, 100.0))

    def work(self, iid: str, side: OrderSide, qty: float) -> None:
        coid = self.orders.next_client_order_id("s")
        self.orders.create(SubmitOrder("s", iid, coid, side, qty, 0, 0, OrderType.LIMIT, 200.0))
        self.orders.apply(OrderSubmitted("s", iid, coid, 0, 0))
        self.orders.apply(OrderAccepted("s", iid, coid, "v" + coid, 0, 0))


def test_reducing_denies_a_sell_one_lot_of_1e8_beyond_a_holding_of_20() -> None:
    """The slack is float noise, never a lot (1e-9 of 20 BTC is two lots of 1e-8)."""
    perp = Instrument("BINANCE", "BTCUSDT", kind="perpetual", tick_size=0.1, lot_size=1e-8, leverage=100.0)
    iid = perp.instrument_id
    g = Guarded([perp], 1e6)
    g.portfolio.apply_fill(OrderFilled("s", iid, "c", "v", "t", OrderSide.BUY, 20.0, 100.0, 0.0, Liquidity.TAKER, 0, 0))
    g.guard.holding = g.portfolio.position
    g.guard.reducing[iid] = ("reconciliation: mismatch", 0.0)
    assert g.check(iid, OrderSide.SELL, 20.0) is None
    assert g.check(iid, OrderSide.SELL, sum([0.1] * 200)) is None  # 20.000000000000014: 20 but for float noise
    reason = g.check(iid, OrderSide.SELL, 20.00000001)
    assert reason is not None and reason.startswith("REDUCING: only orders reducing the holding here (20.0)")


def test_reducing_counts_the_working_sells_of_every_spot_instrument_trading_the_asset() -> None:
    """BTCUSDT and BTCUSDC sell the same BTC: 1.0 here, 0.5 at the venue, 0.4 of it offered on BTCUSDC."""
    usdt = Instrument("BINANCE", "BTCUSDT", tick_size=0.01, lot_size=0.001, margin=False, base="BTC", quote="USDT")
    usdc = Instrument("BINANCE", "BTCUSDC", tick_size=0.01, lot_size=0.001, margin=False, base="BTC", quote="USDC")
    g = Guarded([usdt, usdc], 0.0, {"USDT": 1000.0, "USDC": 1000.0, "BTC": 1.0})
    g.guard.holding = lambda _iid: g.portfolio.account.balance("BTC")
    for inst in (usdt, usdc):
        g.guard.reducing[inst.instrument_id] = ("reconciliation: mismatch", 0.5)
    g.work(usdc.instrument_id, OrderSide.SELL, 0.4)
    assert g.check(usdt.instrument_id, OrderSide.SELL, 0.1) is None
    reason = g.check(usdt.instrument_id, OrderSide.SELL, 0.4)  # 0.8 of the venue's 0.5 with the working sell
    assert reason == (
        "REDUCING: only orders reducing the holding here (1.0) and at the venue (0.5) pass; "
        "working on the order's side -0.4, order -0.4 (reconciliation: mismatch)"
    )
    assert g.check(usdc.instrument_id, OrderSide.SELL, 0.2) is not None
