"""The market guard in front of the risk gate, and the simulated venue's arrival alerts on a wall clock."""

from __future__ import annotations

import asyncio
import math

from tradebus.engine.bus import MessageBus
from tradebus.engine.clock import LiveClock, SimulatedClock
from tradebus.engine.instrument import Instrument
from tradebus.engine.messages import FeedStale, OrderAccepted, OrderSide, OrderType, SubmitOrder, Trade
from tradebus.risk.guard import GuardedRiskGate, MarketGuard
from tradebus.engine.portfolio import Portfolio
from tradebus.execution.config import VenueConfig
from tradebus.execution.orders import Order
from tradebus.execution.simulated import SimulatedVenue
from tradebus.risk.config import RiskConfig

IID = "BTCUSDT.BINANCE"
INSTRUMENT = Instrument(venue="BINANCE", symbol="BTCUSDT", tick_size=0.01, lot_size=1e-5)
T0 = 1_723_161_253_000_000_000


def submit(qty: float = 0.01) -> SubmitOrder:
    return SubmitOrder("s", IID, "s-1", OrderSide.BUY, qty, T0, T0)


def gate(guard: MarketGuard, **limits: float) -> GuardedRiskGate:
    portfolio = Portfolio({IID: INSTRUMENT}, 1000.0)
    return GuardedRiskGate(RiskConfig(**limits), portfolio, SimulatedClock(T0), MessageBus(), guard)


def test_stale_feed_denies_orders_on_its_instruments_until_data_arrives() -> None:
    guard = MarketGuard()
    guard.register_feed("binance-spot", [IID], {})
    risk = gate(guard)
    assert risk.check(submit()) is None
    guard.on_stale(FeedStale("binance-spot", T0 - 3_000_000_000, T0, T0))
    assert risk.check(submit()) == "feed stale: binance-spot delivered nothing for 3.0 s"
    guard.on_stale(FeedStale("okx-public", T0, T0, T0))  # another feed's silence changes nothing here
    guard.on_data(IID)
    assert risk.check(submit()) is None


def test_unsynced_book_denies_orders_and_the_risk_limits_still_apply_once_synced() -> None:
    synced = [False]
    guard = MarketGuard()
    guard.register_feed("binance-spot", [IID], {IID: lambda: synced[0]})
    risk = gate(guard, max_order_quantity=0.05)
    assert risk.check(submit()) == "book unsynced: the BTCUSDT.BINANCE order book is not in sync with the venue"
    synced[0] = True
    assert risk.check(submit()) is None
    assert risk.check(submit(0.1)) == "max_order_quantity: 0.1 > 0.05"


def order(coid: str = "s-1") -> Order:
    return Order(coid, "s", IID, OrderSide.BUY, OrderType.MARKET, 0.01, math.nan, math.nan, ts_created=T0)


async def test_with_a_live_clock_an_order_is_accepted_when_due_without_waiting_for_market_data() -> None:
    events: list = []
    venue = SimulatedVenue(LiveClock(), {IID: INSTRUMENT}, VenueConfig(fill_on="trades", latency_ns=1_000_000), events.append)
    venue.submit(order())
    assert events == []  # not before its arrival
    for _ in range(200):
        if events:
            break
        await asyncio.sleep(0.01)
    assert [type(e) for e in events] == [OrderAccepted]
    now = venue.clock.now_ns()
    venue.on_trade(Trade(IID, now, now + 1, 61830.0, 0.5, 1, "t1"))
    assert type(events[-1]).__name__ == "OrderFilled" and events[-1].last_px == 61830.0


async def test_closing_the_venue_cancels_its_pending_arrival_alerts() -> None:
    events: list = []
    venue = SimulatedVenue(LiveClock(), {IID: INSTRUMENT}, VenueConfig(fill_on="trades", latency_ns=20_000_000), events.append)
    venue.submit(order())
    venue.close()
    await asyncio.sleep(0.1)
    assert events == []


def test_with_a_simulated_clock_arrival_waits_for_the_next_market_event_as_before() -> None:
    clock = SimulatedClock(T0)
    events: list = []
    venue = SimulatedVenue(clock, {IID: INSTRUMENT}, VenueConfig(fill_on="trades"), events.append)
    venue.submit(order())
    assert clock.next_due == 2**63 - 1  # no alert was set
    clock.advance_to(T0 + 10)
    assert events == []
    venue.on_trade(Trade(IID, T0 + 10, T0 + 10, 61830.0, 0.5, 1, "t1"))
    assert [type(e).__name__ for e in events] == ["OrderAccepted", "OrderFilled"]
