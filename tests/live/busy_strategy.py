"""A paper-daemon strategy whose handler keeps the event loop busy before it decides (the decision-time tests)."""

from __future__ import annotations

import time
from collections.abc import Sequence

from pydantic import BaseModel

from tradebus.config.base import StrictModel
from tradebus.engine.messages import BookResynced, BookSnapshot, OrderAccepted, OrderDenied, OrderRejected, OrderSide, Quote, Trade
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


class BookParams(StrictModel):
    """On the ``nth`` message of kind ``on`` (``"snapshot"``: BookSnapshot, ``"resynced"``: BookResynced) buy ``quantity``."""

    on: str = "snapshot"
    nth: int = 1
    quantity: float = 0.01


class BookWatch(Strategy):
    """Buys at market on a book message and notes how many quotes it had seen when the venue answered.

    See :class:`BookParams`. The quotes of a book-only feed come from the book: the one that
    follows a (re)sync snapshot was received with it.
    """

    Params = BookParams

    def __init__(self, instrument_ids: str | Sequence[str], *, on: str = "snapshot", nth: int = 1,
                 quantity: float = 0.01, strategy_id: str | None = None) -> None:
        super().__init__(instrument_ids, strategy_id=strategy_id)
        self.kind = BookSnapshot if on == "snapshot" else BookResynced
        self.nth, self.quantity = nth, quantity
        self.seen = 0
        self.quotes = 0
        #: ``(clock time, ts_init of the message)`` of the decision.
        self.decided: list[tuple[int, int]] = []
        #: ``(event type name, ts_init, quotes seen)`` of each answer of the venue.
        self.answered: list[tuple[str, int, int]] = []

    @classmethod
    def data_kinds(cls, params: BaseModel) -> frozenset[str]:
        """The strategy acts on the book."""
        return frozenset({"book"})

    def on_start(self) -> None:
        self.kernel.bus.subscribe(self.kind, self.on_book, self.instrument_id)

    def on_book(self, msg: BookSnapshot | BookResynced) -> None:
        self.seen += 1
        if self.seen == self.nth:
            self.decided.append((self.clock.now_ns(), msg.ts_init))
            self.submit_market(self.instrument_id, OrderSide.BUY, self.quantity, reason="book")

    def on_quote(self, quote: Quote) -> None:
        self.quotes += 1

    def on_order_accepted(self, event: OrderAccepted) -> None:
        self.answered.append(("accepted", event.ts_init, self.quotes))

    def on_order_rejected(self, event: OrderRejected) -> None:
        self.answered.append(("rejected", event.ts_init, self.quotes))

    def on_order_denied(self, event: OrderDenied) -> None:
        self.answered.append(("denied: " + event.reason, event.ts_init, self.quotes))
