"""The market guard's denials (unsynced book, stale feed) pass with time: an OCO sibling's reduction they
hold back is sent again, uncounted, and the group is not broken for them."""

from __future__ import annotations

import functools

import pytest

from tradebus.engine.instrument import Instrument
from tradebus.engine.kernel import Kernel
from tradebus.engine.messages import OrderDenied, OrderSide, OrderStatus, Trade
from tradebus.execution.config import VenueConfig
from tradebus.execution.contingent import REDUCE_TRIES
from tradebus.risk.guard import GuardedRiskGate, MarketGuard
from tradebus.strategies.base import Strategy

IID = "BTCUSD.SIM"
T0 = 1_700_006_400_000_000_000
SECOND = 1_000_000_000


class Oco(Strategy):
    """Places an OCO of a buy limit at 95 and a buy stop at 105, 1.0 each, at the first trade."""

    contingent = True

    def __init__(self) -> None:
        super().__init__(IID, strategy_id="s")
        self.ids: list[str] = []
        self.denied: list[OrderDenied] = []

    def on_trade(self, trade: Trade) -> None:
        if not self.ids:
            self.ids = [self.submit_limit(IID, OrderSide.BUY, 1.0, 95.0), self.submit_stop(IID, OrderSide.BUY, 1.0, 105.0)]
            self.submit_oco(self.ids)

    def on_order_denied(self, event: OrderDenied) -> None:
        self.denied.append(event)


def test_an_oco_siblings_reduction_an_unsynced_book_holds_back_goes_once_the_book_is_back_in_sync() -> None:
    """A print of 0.3 at 94 fills 0.3 of the limit while the paper daemon's book is unsynced (a resync in
    progress, trades flowing): the stop's reduction to 0.7 is denied ``modify: book unsynced: ...`` at that
    print and at each of the next four. Before, those denials counted as the venue's refusals: after ``REDUCE_TRIES``
    the stop (not reduce-only) was canceled, the group broken, and the print at 106 bought nothing: the 0.7
    the group still had to buy at 105 was lost. Now they do not count: once the book is in sync, the next print
    reduces the stop to 0.7, and 106 fills it: the group buys 1.0."""
    guard = MarketGuard()
    synced = [True]
    guard.register_feed("sim-book", [IID], {IID: lambda: synced[0]})
    inst = Instrument(venue="SIM", symbol="BTCUSD", tick_size=0.01, lot_size=0.001, margin=True)
    kernel = Kernel(
        [inst],
        venue_config=VenueConfig(fill_on="trades", trade_size_limit=True),
        initial_cash=1e6,
        risk_factory=functools.partial(GuardedRiskGate, guard=guard),
    )
    strategy = Oco()
    kernel.add_strategy(strategy)
    # (price, size, book in sync at that print)
    prints = [(100.0, 1.0, True), (94.0, 0.3, False), (96.0, 1.0, False), (96.0, 1.0, False), (96.0, 1.0, False),
              (96.0, 1.0, False), (96.0, 1.0, True), (106.0, 5.0, True)]  # fmt: skip
    for k, (px, size, in_sync) in enumerate(prints, start=1):
        synced[0] = in_sync
        kernel.process(Trade(IID, T0 + k * SECOND, T0 + k * SECOND, px, size, 0, str(k)))
    kernel.stop()
    limit, stop = (kernel.orders.order(c) for c in strategy.ids)
    # denied at every print while the book is unsynced (more than REDUCE_TRIES times: none counted), then it goes
    assert len(strategy.denied) > REDUCE_TRIES
    assert sorted({(d.ts_event - T0) // SECOND for d in strategy.denied}) == [2, 3, 4, 5, 6]
    assert all(d.client_order_id == stop.client_order_id for d in strategy.denied)
    assert all(d.reason.startswith("modify: book unsynced: the BTCUSD.SIM order book") for d in strategy.denied)
    assert [(f.client_order_id, f.price, f.quantity) for f in kernel.result.fills] == [
        (limit.client_order_id, 95.0, 0.3), (stop.client_order_id, 106.0, pytest.approx(0.7))
    ]
    assert stop.status is OrderStatus.FILLED and stop.quantity == pytest.approx(0.7)
    assert kernel.portfolio.position(IID) == pytest.approx(1.0)
