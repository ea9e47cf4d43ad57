"""A modification that is not applied reaches the strategy as ``OrderModifyRejected``.

``Strategy.modify`` promises the outcome as an event; a venue that ignored a modify (the
order no longer working, a post-only price that would take, a quantity not above what filled)
only wrote a log line, and the strategy never heard. Bars are (open, high, low, close); an
action decided at bar k's close reaches the venue at bar k+1's open.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tradebus.engine.bus import MessageBus
from tradebus.engine.clock import SimulatedClock
from tradebus.engine.instrument import Instrument
from tradebus.engine.kernel import Kernel
from tradebus.engine.messages import (
    Bar,
    ModifyOrder,
    OrderModified,
    OrderModifyRejected,
    OrderSide,
    OrderType,
    SubmitOrder,
    Trade,
)
from tradebus.engine.portfolio import Portfolio
from tradebus.execution.config import VenueConfig
from tradebus.execution.journal import Journal
from tradebus.execution.orders import OrderManager
from tradebus.strategies.base import Strategy

IID = "BTCUSD.SIM"
H = 3_600_000_000_000
T0 = 1_700_006_400_000_000_000
FLAT = (100.0, 100.0, 100.0, 100.0)


class Modifier(Strategy):
    """Runs ``script[k](self)`` on bar k (1-based) and keeps the modify outcomes it hears of."""

    def __init__(self, script: dict[int, Callable[[Modifier], Any]]) -> None:
        super().__init__(IID, strategy_id="s")
        self.script = script
        self.n = 0
        self.coid = ""
        self.heard: list[tuple[str, str, str]] = []

    def on_bar(self, bar: Bar) -> None:
        self.n += 1
        action = self.script.get(self.n)
        if action is not None:
            action(self)

    def on_order_modified(self, event: OrderModified) -> None:
        self.heard.append(("modified", event.client_order_id, f"{event.price}"))

    def on_order_modify_rejected(self, event: OrderModifyRejected) -> None:
        self.heard.append(("modify rejected", event.client_order_id, event.reason))


def run(bars: list[tuple[float, float, float, float]], script: dict[int, Callable[[Modifier], Any]]) -> Modifier:
    inst = Instrument(venue="SIM", symbol="BTCUSD", tick_size=0.01, lot_size=0.001, margin=True)
    kernel = Kernel([inst], venue_config=VenueConfig(fill_on="bars"), initial_cash=1e6)
    strategy = Modifier(script)
    kernel.add_strategy(strategy)
    for k, (o, h, lo, c) in enumerate(bars, start=1):
        kernel.process(Bar(IID, T0 + k * H, T0 + k * H, o, h, lo, c, 10.0))
    kernel.stop()
    return strategy


def place(**options: Any) -> Callable[[Modifier], Any]:
    def act(s: Modifier) -> None:
        s.coid = s.submit_limit(IID, OrderSide.BUY, 1.0, 95.0, **options)

    return act


def test_a_post_only_modify_that_would_take_is_rejected_and_the_order_keeps_its_price() -> None:
    """The post-only buy at 95 rests; moved to 101 at bar 2's close, it would take at bar 3's open
    (100): the venue refuses, the order stays at 95 and fills there in bar 4."""
    s = run([FLAT, FLAT, FLAT, (100.0, 100.0, 94.0, 96.0)],
            {1: place(post_only=True), 2: lambda s: s.modify(s.coid, price=101.0)})  # fmt: skip
    assert s.heard == [("modify rejected", s.coid, "post_only: limit 101.0 would take liquidity at 100.0")]
    order = s.ctx.orders.order(s.coid)
    assert order.price == 95.0 and order.filled_qty == 1.0 and order.avg_px == 95.0


def test_a_modify_that_reaches_the_venue_after_the_order_filled_is_rejected() -> None:
    """Moved to 96 at bar 2's close (the venue applies it at bar 3's open), then to 97 at bar 3's
    close: bar 3 fills the order at 96, so the second modify finds it closed."""
    script = {1: place(), 2: lambda s: s.modify(s.coid, price=96.0), 3: lambda s: s.modify(s.coid, price=97.0)}
    s = run([FLAT, FLAT, (100.0, 100.0, 95.5, 99.0), FLAT], script)
    assert s.heard == [("modified", s.coid, "96.0"), ("modify rejected", s.coid, "order is FILLED")]


def test_a_modify_the_venue_finds_no_longer_working_is_rejected() -> None:
    """A minute of latency: the buy limit sent at bar 1's close works from bar 3's open; the modify
    sent at bar 2's close (the order not yet accepted) is handled at bar 4's open. Bar 3 (low 94)
    fills the order at 95 before that, so the venue answers that it is not working."""
    inst = Instrument(venue="SIM", symbol="BTCUSD", tick_size=0.01, lot_size=0.001, margin=True)
    kernel = Kernel([inst], venue_config=VenueConfig(fill_on="bars", latency_ns=60_000_000_000), initial_cash=1e6)
    s = Modifier({1: place(), 2: lambda s: s.modify(s.coid, price=96.0)})
    kernel.add_strategy(s)
    for k, (o, h, lo, c) in enumerate([FLAT, FLAT, (100.0, 100.0, 94.0, 99.0), FLAT], start=1):
        kernel.process(Bar(IID, T0 + k * H, T0 + k * H, o, h, lo, c, 10.0))
    kernel.stop()
    assert s.heard == [("modify rejected", s.coid, "not working")]
    assert kernel.orders.order(s.coid).avg_px == 95.0


def test_a_modify_below_the_filled_quantity_is_rejected_on_trades() -> None:
    """Latency 1 ns, one print a ns: the buy limit 2 at 95 sent at print 1 works from print 3; the
    cut to 1 sent at print 2 (nothing filled yet) reaches the venue at print 4. Print 3 (94,
    size 1) fills 1 before: the cut is not above what filled, refused; print 4 fills the other 1."""
    inst = Instrument(venue="SIM", symbol="BTCUSD", tick_size=0.01, lot_size=0.001, margin=True)
    venue = VenueConfig(fill_on="trades", trade_size_limit=True, latency_ns=1)
    kernel = Kernel([inst], venue_config=venue, initial_cash=1e6)

    class OnTrades(Modifier):
        def on_trade(self, trade: Trade) -> None:
            self.on_bar(None)  # type: ignore[arg-type]

    s = OnTrades({1: lambda s: setattr(s, "coid", s.submit_limit(IID, OrderSide.BUY, 2.0, 95.0)),
                  2: lambda s: s.modify(s.coid, quantity=1.0)})  # fmt: skip
    kernel.add_strategy(s)
    for k, px in enumerate([100.0, 100.0, 94.0, 94.0], start=1):
        kernel.process(Trade(IID, T0 + k, T0 + k, px, 1.0, 0, str(k)))
    kernel.stop()
    assert s.heard == [("modify rejected", s.coid, "quantity 1.0 is not above the filled 1.0")]
    assert kernel.orders.order(s.coid).filled_qty == 2.0


def test_a_modify_rejection_is_journaled_and_replays_without_changing_the_order(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.db")
    try:
        submit = SubmitOrder("s", IID, "s-1", OrderSide.BUY, 1.0, 1, 1, OrderType.LIMIT, 95.0)
        journal.record_command(submit, "s-1")
        journal.record_command(ModifyOrder("s", IID, "s-1", 2, 2, price=101.0), "s-1")
        journal.record_event(OrderModifyRejected("s", IID, "s-1", "post_only: would take", 3, 3))
        inst = Instrument(venue="SIM", symbol="BTCUSD", tick_size=0.01, lot_size=0.001, margin=True)
        orders = OrderManager(MessageBus(), SimulatedClock())
        seen: list[Any] = []
        journal.replay(orders, Portfolio({IID: inst}, 1e6), 10, on_message=seen.append)
    finally:
        journal.close()
    assert OrderModifyRejected("s", IID, "s-1", "post_only: would take", 3, 3) in seen
    assert orders.order("s-1").price == 95.0
