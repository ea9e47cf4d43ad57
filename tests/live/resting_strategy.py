"""Live-daemon strategies for the stop tests: limit buys far below the market, resting until the stop cancels them."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from tradebus.config.base import StrictModel
from tradebus.engine.messages import OrderAccepted, OrderFilled, OrderSide, TimeEvent, Trade
from tradebus.strategies.base import Strategy


class RestingParams(StrictModel):
    """``price``: of the resting buy; ``fail_in``: the hook that raises ``ZeroDivisionError`` on its first call
    (``""``: none); ``on_stop_price``: a limit buy submitted in ``on_stop`` (0: none)."""

    quantity: float = 0.001
    price: float = 10_000.0
    fail_in: str = ""
    on_stop_price: float = 0.0


class RestingBuy(Strategy):
    """Submits one limit buy at ``price`` on its first trade (see :class:`RestingParams`)."""

    Params = RestingParams

    def __init__(self, instrument_ids: str | Sequence[str], *, quantity: float = 0.001, price: float = 10_000.0,
                 fail_in: str = "", on_stop_price: float = 0.0, strategy_id: str | None = None) -> None:
        super().__init__(instrument_ids, strategy_id=strategy_id)
        self.quantity, self.price, self.fail_in, self.on_stop_price = quantity, price, fail_in, on_stop_price
        self.placed = ""
        self.accepted_in: asyncio.Task[Any] | None = None

    def on_trade(self, trade: Trade) -> None:
        if not self.placed:
            self.placed = self.submit_limit(self.instrument_id, OrderSide.BUY, self.quantity, self.price)

    def on_order_accepted(self, event: OrderAccepted) -> None:
        # Kept, as a strategy may keep what it met: the task is then never freed, and asyncio reports
        # an exception a task ended with only when it is freed (or its exception is asked for).
        self.accepted_in = asyncio.current_task()
        if self.fail_in == "on_order_accepted":
            raise ZeroDivisionError("division by zero in on_order_accepted")

    def on_order_filled(self, event: OrderFilled) -> None:
        if self.fail_in == "on_order_filled":
            raise ZeroDivisionError("division by zero in on_order_filled")

    def on_stop(self) -> None:
        if self.on_stop_price:
            self.submit_limit(self.instrument_id, OrderSide.BUY, self.quantity, self.on_stop_price)


class RepeatingParams(StrictModel):
    """A limit buy at ``price`` at every firing of a timer every ``every_ms``; ``on_stop_price``: one more in
    ``on_stop`` (0: none)."""

    quantity: float = 0.001
    price: float = 10_000.0
    every_ms: int = 20
    on_stop_price: float = 0.0


class RepeatingBuy(Strategy):
    """Submits a limit buy at ``price`` at every firing of its timer, set in ``on_start`` (see :class:`RepeatingParams`)."""

    Params = RepeatingParams

    def __init__(self, instrument_ids: str | Sequence[str], *, quantity: float = 0.001, price: float = 10_000.0,
                 every_ms: int = 20, on_stop_price: float = 0.0, strategy_id: str | None = None) -> None:
        super().__init__(instrument_ids, strategy_id=strategy_id)
        self.quantity, self.price, self.every_ns, self.on_stop_price = quantity, price, every_ms * 1_000_000, on_stop_price
        #: Client order ids of every order submitted, in order.
        self.sent: list[str] = []

    def on_start(self) -> None:
        self.set_timer("again", self.every_ns)

    def on_timer(self, event: TimeEvent) -> None:
        self.sent.append(self.submit_limit(self.instrument_id, OrderSide.BUY, self.quantity, self.price))

    def on_stop(self) -> None:
        if self.on_stop_price:
            self.sent.append(self.submit_limit(self.instrument_id, OrderSide.BUY, self.quantity, self.on_stop_price))
