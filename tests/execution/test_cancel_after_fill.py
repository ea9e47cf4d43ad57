"""A cancel that reaches the simulated venue after the order closed is answered as tradebus answers it live.

Live, the venue refuses such a cancel (Binance ``-2011`` "Unknown order sent.", Bybit ``110001``, OKX
``51400``); :class:`~tradebus.execution.live.LiveVenue` queries the order, finds it closed, and emits
nothing but what closed it: ``OrderCancelRejected`` means "refused, and the order works on", which the
contingent orders and the execution algorithms answer by sending the cancel again
(``tests/live/test_live_cancel_busy.py``; the live race is
``tests/live/test_live_lifecycle.py::test_a_cancel_the_venue_refuses_because_the_order_filled_tells_only_the_fill``).
The simulated venue does the same: the strategy hears the fill, no refusal, no cancel, and the journal
holds the cancel command and the fill. Bars are (open, high, low, close), an hour apart.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tradebus.engine.instrument import Instrument
from tradebus.engine.kernel import Kernel
from tradebus.engine.messages import (
    Bar,
    CancelOrder,
    OrderAccepted,
    OrderCanceled,
    OrderCancelRejected,
    OrderFilled,
    OrderSide,
    OrderStatus,
    SubmitOrder,
    Trade,
)
from tradebus.execution.config import VenueConfig
from tradebus.execution.journal import Journal
from tradebus.strategies.base import Strategy

IID = "BTCUSD.SIM"
H = 3_600_000_000_000
T0 = 1_700_006_400_000_000_000
FLAT = (100.0, 100.0, 100.0, 100.0)
MINUTE = 60_000_000_000


class Canceler(Strategy):
    """Runs ``script[k](self)`` on the k-th bar or trade (1-based) and keeps what it hears of its orders."""

    contingent = True

    def __init__(self, script: dict[int, Callable[[Canceler], Any]]) -> None:
        super().__init__(IID, strategy_id="s")
        self.script = script
        self.n = 0
        self.ids: list[str] = []
        self.heard: list[tuple[str, str]] = []

    def on_bar(self, bar: Bar) -> None:
        self.n += 1
        action = self.script.get(self.n)
        if action is not None:
            action(self)

    def on_trade(self, trade: Trade) -> None:
        self.on_bar(None)  # type: ignore[arg-type]

    def on_order_filled(self, event: OrderFilled) -> None:
        self.heard.append(("filled", event.client_order_id))

    def on_order_canceled(self, event: OrderCanceled) -> None:
        self.heard.append(("canceled", event.client_order_id))

    def on_order_cancel_rejected(self, event: OrderCancelRejected) -> None:
        self.heard.append(("cancel rejected", event.client_order_id))


def kernel_of(venue: VenueConfig, journal: Journal | None = None, told: list[Any] | None = None) -> Kernel:
    """A kernel on the simulated venue; every event the venue emits is also appended to ``told``."""
    inst = Instrument(venue="SIM", symbol="BTCUSD", tick_size=0.01, lot_size=0.001, margin=True)
    kernel = Kernel([inst], venue_config=venue, initial_cash=1e6, journal=journal)
    if told is not None:
        handler = kernel.execution.on_venue_event
        kernel.venue.bind(lambda event: (told.append(event), handler(event)))
    return kernel


def bars(kernel: Kernel, rows: list[tuple[float, float, float, float]]) -> None:
    for k, (o, h, lo, c) in enumerate(rows, start=1):
        kernel.process(Bar(IID, T0 + k * H, T0 + k * H, o, h, lo, c, 10.0))
    kernel.stop()


def buy_limit_95(s: Canceler) -> None:
    s.ids.append(s.submit_limit(IID, OrderSide.BUY, 1.0, 95.0))


def cancel_it(s: Canceler) -> None:
    s.cancel(s.ids[0])


def test_a_cancel_that_reaches_the_venue_after_the_fill_tells_the_strategy_the_fill_only(tmp_path: Path) -> None:
    """A minute of latency: the buy limit 95 sent at bar 1's close works from bar 3's open; its cancel, sent at
    bar 2's close (the order open here), is handled at bar 4's open. Bar 3 (low 94) fills it at 95 first.
    The venue no longer works it: as live, the strategy hears the fill, neither a cancel nor a refusal;
    the journal holds the cancel command, the fill and no ``OrderCancelRejected``."""
    journal = Journal(tmp_path / "journal.sqlite")
    told: list[Any] = []
    try:
        kernel = kernel_of(VenueConfig(fill_on="bars", latency_ns=MINUTE), journal, told)
        s = Canceler({1: buy_limit_95, 2: cancel_it})
        kernel.add_strategy(s)
        bars(kernel, [FLAT, FLAT, (100.0, 100.0, 94.0, 99.0), FLAT])
        entries = [(e.kind, type(e.message).__name__) for e in journal.entries()]
    finally:
        journal.close()
    coid = s.ids[0]
    assert s.heard == [("filled", coid)]
    assert [type(e) for e in told] == [OrderAccepted, OrderFilled]
    order = kernel.orders.order(coid)
    assert order.status is OrderStatus.FILLED and order.filled_qty == 1.0 and order.avg_px == 95.0
    report = kernel.venue.query_order(coid)
    assert report is not None and report.status is OrderStatus.FILLED
    assert ("command", CancelOrder.__name__) in entries and ("event", OrderFilled.__name__) in entries
    assert ("event", OrderCancelRejected.__name__) not in entries and ("event", OrderCanceled.__name__) not in entries
    assert [kind for kind, name in entries if name == SubmitOrder.__name__] == ["command"]


def test_a_cancel_that_reaches_the_venue_after_the_fill_on_trades_tells_the_fill_only() -> None:
    """Latency 2 ns, one print a ns: the buy limit 95 sent at print 1 works from print 4 (arrival 3); the cancel
    sent at print 3 arrives at 5, handled at print 6. Print 4 (94) fills it at 95 before the cancel arrives."""
    told: list[Any] = []
    kernel = kernel_of(VenueConfig(fill_on="trades", latency_ns=2), told=told)
    s = Canceler({1: buy_limit_95, 3: cancel_it})
    kernel.add_strategy(s)
    for k, px in enumerate([100.0, 100.0, 100.0, 94.0, 100.0, 100.0], start=1):
        kernel.process(Trade(IID, T0 + k, T0 + k, px, 1.0, 0, str(k)))
    kernel.stop()
    assert s.heard == [("filled", s.ids[0])]
    assert OrderFilled in [type(e) for e in told] and OrderCancelRejected not in [type(e) for e in told]
    assert kernel.orders.order(s.ids[0]).status is OrderStatus.FILLED


def test_a_cancel_that_reaches_the_venue_before_the_fill_still_cancels() -> None:
    """The counterpart: the cancel sent at bar 2's close with no latency reaches the venue at bar 3's open,
    before bar 3 (low 94) would fill the order: canceled, nothing filled."""
    kernel = kernel_of(VenueConfig(fill_on="bars"))
    s = Canceler({1: buy_limit_95, 2: cancel_it})
    kernel.add_strategy(s)
    bars(kernel, [FLAT, FLAT, (100.0, 100.0, 94.0, 99.0), FLAT])
    assert s.heard == [("canceled", s.ids[0])]
    assert kernel.result.fills == []


def test_an_oco_sibling_that_fills_before_its_cancel_arrives_is_not_canceled_again(tmp_path: Path) -> None:
    """Buy limit 95 and buy stop 105, one OCO group; bar 2 (100, 106, 94, 100), path 100 -> 94 -> 106, fills the
    limit at 95, which sends the stop's cancel (it reaches the venue at bar 3's open), then fills the stop at 105.
    Live, the venue refuses that cancel and the query finds the stop filled: no ``OrderCancelRejected``, so the
    contingent orders do not send it again. The simulated venue answers so: one cancel, both fills heard."""

    def place(s: Canceler) -> None:
        s.ids.extend((s.submit_limit(IID, OrderSide.BUY, 1.0, 95.0), s.submit_stop(IID, OrderSide.BUY, 1.0, 105.0)))
        s.submit_oco(s.ids)

    journal = Journal(tmp_path / "journal.sqlite")
    try:
        kernel = kernel_of(VenueConfig(fill_on="bars"), journal)
        s = Canceler({1: place})
        kernel.add_strategy(s)
        bars(kernel, [FLAT, (100.0, 106.0, 94.0, 100.0), FLAT, FLAT, FLAT])
        cancels = [e.message for e in journal.entries() if type(e.message) is CancelOrder]
    finally:
        journal.close()
    limit, stop = s.ids
    assert s.heard == [("filled", limit), ("filled", stop)]
    assert [c.client_order_id for c in cancels] == [stop]
    assert [(f.client_order_id, f.price) for f in kernel.result.fills] == [(limit, 95.0), (stop, 105.0)]
