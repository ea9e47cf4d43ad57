"""A live-daemon strategy for the cancel-replace crash test: a trailing stop and a take-profit in one OCO group."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict

from tradebus.engine.messages import OrderDenied, OrderFilled, OrderSide, Trade
from tradebus.strategies.base import Strategy


class TrailingOcoParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    quantity: float
    offset: float
    take_profit: float
    enter: bool = True


class TrailingOco(Strategy):
    """Buys twice ``quantity`` at market on its first trade (if ``enter``; on a later one again if the risk gate
    denied it: a trade before the start-up reconciliation ended); once filled, sells ``quantity``
    by a trailing stop ``offset`` below and ``quantity`` by a limit at ``take_profit``, one OCO group
    (given by the ids of the two working orders)."""

    Params = TrailingOcoParams
    contingent = True

    def __init__(
        self,
        instrument_ids: str | Sequence[str],
        *,
        quantity: float,
        offset: float,
        take_profit: float,
        enter: bool = True,
        strategy_id: str | None = None,
    ) -> None:
        super().__init__(instrument_ids, strategy_id=strategy_id or "TrailingOco")
        self.quantity = quantity
        self.offset = offset
        self.take_profit = take_profit
        self.enter = enter
        self.entry: str | None = None
        self.denied: set[str] = set()

    def on_order_denied(self, event: OrderDenied) -> None:
        self.denied.add(event.client_order_id)

    def on_trade(self, trade: Trade) -> None:
        if self.entry in self.denied:
            self.enter, self.entry = True, None  # enter again
        if self.enter:
            self.enter = False
            self.entry = self.submit_market(trade.instrument_id, OrderSide.BUY, 2 * self.quantity)

    def on_order_filled(self, event: OrderFilled) -> None:
        if event.client_order_id != self.entry or self.position(event.instrument_id) < 2 * self.quantity - 1e-12:
            return
        iid = event.instrument_id
        stop = self.submit_trailing_stop(iid, OrderSide.SELL, self.quantity, offset=self.offset)
        target = self.submit_limit(iid, OrderSide.SELL, self.quantity, self.take_profit)
        self.submit_oco([stop, target])
