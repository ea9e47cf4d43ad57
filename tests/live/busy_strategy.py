"""A paper-daemon strategy whose handler keeps the event loop busy before it decides (the decision-time tests)."""

from __future__ import annotations

import time
from collections.abc import Sequence

from tradebus.config.base import StrictModel
from tradebus.engine.messages import OrderAccepted, OrderSide, Trade
from tradebus.strategies.base import Strategy


class BusyParams(StrictModel):
    """The ``hold_trade``-th trade (1-based) holds the loop until ``hold_ms`` after its receipt, then buys ``quantity``."""

    hold_trade: int = 5
    hold_ms: int = 150
    quantity: float = 0.01


class BusyBuy(Strategy):
    """Buys at market on its ``hold_trade``-th trade, after a busy stretch of ``hold_ms`` (see :class:`BusyParams`).

    In the daemon the decision is taken ``hold_ms`` after the trade's receive time, on the wall
    clock. In a replay (its wall clock far past the recorded receive time) nothing is held.
    """

    Params = BusyParams

    def __init__(self, instrument_ids: str | Sequence[str], *, hold_trade: int = 5, hold_ms: int = 150,
                 quantity: float = 0.01, strategy_id: str | None = None) -> None:
        super().__init__(instrument_ids, strategy_id=strategy_id)
        self.hold_trade, self.hold_ns, self.quantity = hold_trade, hold_ms * 1_000_000, quantity
        self.trades = 0
        #: The clock's time when the strategy decided, and the receive time of the trade it decided on.
        self.decided: list[tuple[int, int]] = []

    def on_trade(self, trade: Trade) -> None:
        self.trades += 1
        if self.trades != self.hold_trade:
            return
        while time.time_ns() < trade.ts_init + self.hold_ns:
            time.sleep(0.005)
        self.decided.append((self.clock.now_ns(), trade.ts_init))
        self.submit_market(self.instrument_id, OrderSide.BUY, self.quantity, reason="busy")


class WatchParams(StrictModel):
    """On the ``at_trade``-th trade (1-based) bid ``below`` under its price for ``quantity``."""

    at_trade: int = 1
    below: float = 0.1
    quantity: float = 0.1


class AcceptWatch(Strategy):
    """Rests one limit buy on its ``at_trade``-th trade and notes how many trades it had seen when the venue accepted it.

    See :class:`WatchParams`.
    """

    Params = WatchParams

    def __init__(self, instrument_ids: str | Sequence[str], *, at_trade: int = 1, below: float = 0.1,
                 quantity: float = 0.1, strategy_id: str | None = None) -> None:
        super().__init__(instrument_ids, strategy_id=strategy_id)
        self.at_trade, self.below, self.quantity = at_trade, below, quantity
        self.trades = 0
        #: ``(ts_init, trades seen)`` of each acceptance.
        self.accepted: list[tuple[int, int]] = []

    def on_trade(self, trade: Trade) -> None:
        self.trades += 1
        if self.trades == self.at_trade:
            self.submit_limit(self.instrument_id, OrderSide.BUY, self.quantity, round(trade.price - self.below, 2),
                              reason="watch")

    def on_order_accepted(self, event: OrderAccepted) -> None:
        self.accepted.append((event.ts_init, self.trades))
