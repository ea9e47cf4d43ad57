"""A live-daemon strategy for the two-request cancel-replace crash test: two limit buys in one OCO group, one moved."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict

from tradebus.engine.messages import OrderDenied, OrderSide, Trade
from tradebus.strategies.base import Strategy


class MovedOcoParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    quantity: float
    near: float
    far: float
    move_at: float
    move_to: float
    enter: bool = True


class MovedOco(Strategy):
    """On its first trade (if ``enter``) buys ``quantity`` by a limit at ``near`` and by one at ``far``, one
    OCO group (on a later trade again if the risk gate denied both: a trade before the start-up
    reconciliation ended); at the first trade at or above ``move_at`` moves the ``near`` buy to
    ``move_to`` (once)."""

    Params = MovedOcoParams
    contingent = True

    def __init__(
        self,
        instrument_ids: str | Sequence[str],
        *,
        quantity: float,
        near: float,
        far: float,
        move_at: float,
        move_to: float,
        enter: bool = True,
        strategy_id: str | None = None,
    ) -> None:
        super().__init__(instrument_ids, strategy_id=strategy_id or "MovedOco")
        self.quantity, self.near, self.far = quantity, near, far
        self.move_at, self.move_to = move_at, move_to
        self.enter = enter
        self.moving: str | None = None
        self.entry: tuple[str, str] | None = None
        self.denied: set[str] = set()

    def on_trade(self, trade: Trade) -> None:
        iid = trade.instrument_id
        if self.entry is not None and self.denied.issuperset(self.entry):
            self.enter, self.entry, self.moving = True, None, None  # both buys denied: enter again
        if self.enter:
            self.enter = False
            self.moving = self.submit_limit(iid, OrderSide.BUY, self.quantity, self.near)
            self.entry = (self.moving, self.submit_limit(iid, OrderSide.BUY, self.quantity, self.far))
            self.submit_oco(list(self.entry))
        elif self.moving is not None and trade.price >= self.move_at:
            self.modify(self.moving, price=self.move_to)
            self.moving = None

    def on_order_denied(self, event: OrderDenied) -> None:
        self.denied.add(event.client_order_id)
