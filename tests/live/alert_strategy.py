"""Paper-daemon strategies for the timer tests: a timer or alert, a market buy when it fires."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from tradebus.config.base import StrictModel
from tradebus.engine.messages import OrderAccepted, OrderSide, TimeEvent, Trade
from tradebus.strategies.base import Strategy


class AlertParams(StrictModel):
    """The alert is due ``after_ms`` after the ``at_trade``-th trade (1-based; a negative ``after_ms``: already past as
    it is set); it buys ``quantity``."""

    after_ms: int = 300
    quantity: float = 0.01
    at_trade: int = 1


class AlertBuy(Strategy):
    """Sets the alert ``buy`` on its ``at_trade``-th trade and buys at market when it fires (see :class:`AlertParams`)."""

    Params = AlertParams

    def __init__(self, instrument_ids: str | Sequence[str], *, after_ms: int = 300, quantity: float = 0.01,
                 at_trade: int = 1, strategy_id: str | None = None) -> None:
        super().__init__(instrument_ids, strategy_id=strategy_id)
        self.after_ns, self.quantity, self.at_trade = after_ms * 1_000_000, quantity, at_trade
        self.trades = 0
        #: ``(due time, trades seen before it)`` of each firing.
        self.fired: list[tuple[int, int]] = []
        #: The clock's time as each firing decided.
        self.decided: list[int] = []

    def on_trade(self, trade: Trade) -> None:
        self.trades += 1
        if self.trades == self.at_trade:
            self.set_alert("buy", trade.ts_init + self.after_ns)

    def on_timer(self, event: TimeEvent) -> None:
        self.fired.append((event.ts_event, self.trades))
        self.decided.append(self.clock.now_ns())
        self.submit_market(self.instrument_id, OrderSide.BUY, self.quantity, reason="alert")


class TimerParams(StrictModel):
    """The timer is set in ``on_start``, every ``every_ms``; its first firing buys ``quantity``."""

    every_ms: int = 500
    quantity: float = 0.01


class TimerBuy(Strategy):
    """Sets the timer ``rebalance`` in ``on_start`` and buys at market when it first fires (see :class:`TimerParams`)."""

    Params = TimerParams

    def __init__(self, instrument_ids: str | Sequence[str], *, every_ms: int = 500, quantity: float = 0.01,
                 strategy_id: str | None = None) -> None:
        super().__init__(instrument_ids, strategy_id=strategy_id)
        self.every_ns, self.quantity = every_ms * 1_000_000, quantity
        self.trades = 0
        #: ``(due time, trades seen before it)`` of each firing.
        self.fired: list[tuple[int, int]] = []

    def on_start(self) -> None:
        self.set_timer("rebalance", self.every_ns)

    def on_trade(self, trade: Trade) -> None:
        self.trades += 1

    def on_timer(self, event: TimeEvent) -> None:
        self.fired.append((event.ts_event, self.trades))
        self.cancel_timer("rebalance")
        self.submit_market(self.instrument_id, OrderSide.BUY, self.quantity, reason="rebalance")


class HeldParams(TimerParams):
    """:class:`TimerParams`, and the trade ``hold_trade`` (1-based) holds the event loop until ``hold_ms`` after the timer's due time."""

    hold_trade: int = 3
    hold_ms: int = 150


class HeldTimerBuy(TimerBuy):
    """:class:`TimerBuy` whose ``hold_trade``-th trade keeps the loop busy past the timer's due time (see :class:`HeldParams`).

    The daemon's timer then fires late, on the wall clock. In a replay (its wall clock far
    past the recorded due time) nothing is held.
    """

    Params = HeldParams

    def __init__(self, instrument_ids: str | Sequence[str], *, every_ms: int = 500, quantity: float = 0.01,
                 hold_trade: int = 3, hold_ms: int = 150, strategy_id: str | None = None) -> None:
        super().__init__(instrument_ids, every_ms=every_ms, quantity=quantity, strategy_id=strategy_id)
        self.hold_trade, self.hold_ns = hold_trade, hold_ms * 1_000_000
        #: When the timer is due (set in ``on_start``).
        self.due_ns = 0

    def on_start(self) -> None:
        super().on_start()
        self.due_ns = self.clock.now_ns() + self.every_ns

    def on_trade(self, trade: Trade) -> None:
        super().on_trade(trade)
        if self.trades == self.hold_trade:
            while time.time_ns() < self.due_ns + self.hold_ns:
                time.sleep(0.005)


class TickTimer(Strategy):
    """Sets the timer ``tick`` in ``on_start``, every ``every_ms``, and notes each firing, before and after ``on_stop``."""

    Params = TimerParams

    def __init__(self, instrument_ids: str | Sequence[str], *, every_ms: int = 500, quantity: float = 0.01,
                 strategy_id: str | None = None) -> None:
        super().__init__(instrument_ids, strategy_id=strategy_id)
        self.every_ns = every_ms * 1_000_000
        self.stopped = False
        #: Due times of the firings before ``on_stop`` and after it.
        self.fired: list[int] = []
        self.fired_after_stop: list[int] = []

    def on_start(self) -> None:
        self.set_timer("tick", self.every_ns)

    def on_stop(self) -> None:
        self.stopped = True

    def on_timer(self, event: TimeEvent) -> None:
        (self.fired_after_stop if self.stopped else self.fired).append(event.ts_event)


class TwoAlertsParams(StrictModel):
    """On trade ``at_trade`` (1-based): alerts ``first_ms`` and ``second_ms`` after it; then the loop is held until ``hold_ms`` after it."""

    at_trade: int = 5
    first_ms: int = 1
    second_ms: int = 3
    hold_ms: int = 20
    quantity: float = 0.01


class TwoAlerts(Strategy):
    """Buys at market when its first alert fires and notes, when its second fires, what the venue has answered.

    Its ``at_trade``-th trade has the loop held past both due times once the frame is handled, so
    the daemon's loop finds both due at once (see :class:`TwoAlertsParams`).
    """

    Params = TwoAlertsParams

    def __init__(self, instrument_ids: str | Sequence[str], *, at_trade: int = 5, first_ms: int = 1,
                 second_ms: int = 3, hold_ms: int = 20, quantity: float = 0.01, strategy_id: str | None = None) -> None:
        super().__init__(instrument_ids, strategy_id=strategy_id)
        self.at_trade, self.quantity = at_trade, quantity
        self.first_ns, self.second_ns, self.hold_ns = first_ms * 1_000_000, second_ms * 1_000_000, hold_ms * 1_000_000
        self.trades = 0
        self.accepted = 0
        #: ``(alert name, due time, acceptances seen)`` of each firing.
        self.fired: list[tuple[str, int, int]] = []

    def on_trade(self, trade: Trade) -> None:
        self.trades += 1
        if self.trades != self.at_trade:
            return
        self.set_alert("first", trade.ts_init + self.first_ns)
        self.set_alert("second", trade.ts_init + self.second_ns)
        asyncio.get_running_loop().call_soon(self._hold, trade.ts_init + self.hold_ns)

    @staticmethod
    def _hold(until_ns: int) -> None:
        """Other work of the loop (another feed, a flush), after the frame: it keeps the alerts from firing on time."""
        while time.time_ns() < until_ns:
            time.sleep(0.002)

    def on_timer(self, event: TimeEvent) -> None:
        self.fired.append((event.name, event.ts_event, self.accepted))
        if event.name == "first":
            self.submit_market(self.instrument_id, OrderSide.BUY, self.quantity, reason="first")

    def on_order_accepted(self, event: OrderAccepted) -> None:
        self.accepted += 1


class TimerAndAlert(Strategy):
    """In ``on_start``: the timer ``tick`` every ``every_ms``, then the alert ``alert`` due at its second firing.

    Notes each firing ``(name, due time)``; at the tie the timer, created first, fires first (as in a replay).
    """

    Params = TimerParams

    def __init__(self, instrument_ids: str | Sequence[str], *, every_ms: int = 500, quantity: float = 0.01,
                 strategy_id: str | None = None) -> None:
        super().__init__(instrument_ids, strategy_id=strategy_id)
        self.every_ns = every_ms * 1_000_000
        self.fired: list[tuple[str, int]] = []

    def on_start(self) -> None:
        self.set_timer("tick", self.every_ns)
        self.set_alert("alert", self.clock.now_ns() + 2 * self.every_ns)

    def on_timer(self, event: TimeEvent) -> None:
        self.fired.append((event.name, event.ts_event))
