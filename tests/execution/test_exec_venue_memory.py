"""A paper venue's memory stays flat over a long run: closed orders are forgotten (issue 13)."""

from __future__ import annotations

import gc
import tracemalloc

from tradebus.engine.clock import SimulatedClock
from tradebus.engine.messages import OrderFilled, OrderSide, OrderStatus, OrderType
from tradebus.execution.config import VenueConfig
from tradebus.execution.orders import Order
from tradebus.execution.paper import PaperVenue

from .conftest import IID, make_instrument, trade


class _Run:
    """A paper venue filling one market order per trade print, counting the fills it emits."""

    def __init__(self, **kw: object) -> None:
        self.clock = SimulatedClock(0)
        self.venue = PaperVenue(self.clock, {IID: make_instrument()}, VenueConfig(fill_on="trades"), **kw)  # type: ignore[arg-type]
        self.fills = 0
        self.venue.bind(self._on_event)
        self.n = 0

    def _on_event(self, event: object) -> None:
        if isinstance(event, OrderFilled):
            self.fills += 1

    def orders(self, count: int) -> list[str]:
        """Submit ``count`` market orders, each filled by the next print; their client ids."""
        coids = []
        for _ in range(count):
            self.n += 1
            ts = self.n * 1_000
            self.clock.advance_to(ts)
            coid = f"O-{self.n}"
            side = OrderSide.BUY if self.n % 2 else OrderSide.SELL
            self.venue.submit(Order(coid, "s", IID, side, OrderType.MARKET, 1.0, ts_created=ts))
            self.clock.advance_to(ts + 500)  # the order's arrival alert fires
            self.venue.on_trade(trade(ts + 500, 100.0 + self.n % 7))
            coids.append(coid)
        return coids


def test_paper_venue_answers_for_the_latest_closed_orders_and_forgets_older_ones() -> None:
    run = _Run(keep_closed=50)
    coids = run.orders(500)
    assert run.fills == 500
    for coid in coids[-50:]:
        report = run.venue.query_order(coid)
        assert report is not None and report.status is OrderStatus.FILLED and len(report.fills) == 1
    assert all(run.venue.query_order(coid) is None for coid in coids[:-50])
    assert run.venue.position(IID) == 0.0  # 250 buys and 250 sells of 1.0 each


def test_paper_venue_memory_does_not_grow_with_fills_after_warm_up() -> None:
    run = _Run(keep_closed=20)
    run.orders(1_000)  # warm-up: the closed-order window is full
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        run.orders(4_000)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # Keeping every order costs ~0.5 kB per fill (order, its fill, the dict entry): ~2 MB here;
    # the 20 orders kept (allocated after `before`) cost ~20 kB.
    assert run.fills == 5_000
    assert grown < 100_000, f"{grown} bytes retained over 4000 fills"
