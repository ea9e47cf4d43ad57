"""A paper-daemon strategy for the borrowing-interest tests: a market sell on a session's first trade (a loan)."""

from __future__ import annotations

from collections.abc import Sequence

from tradebus.config.base import StrictModel
from tradebus.engine.messages import OrderSide, Trade
from tradebus.strategies.base import Strategy


class ShortParams(StrictModel):
    """``quantity``: what the sell borrows (the base asset), once per daemon session."""

    quantity: float = 0.5


class ShortOnce(Strategy):
    """Sells ``quantity`` at market on the first trade it sees: a margin account borrows the base asset."""

    Params = ShortParams

    def __init__(self, instrument_ids: str | Sequence[str], *, quantity: float = 0.5,
                 strategy_id: str | None = None) -> None:
        super().__init__(instrument_ids, strategy_id=strategy_id)
        self.quantity = quantity
        self.sent = False

    def on_trade(self, trade: Trade) -> None:
        if not self.sent:
            self.sent = True
            self.submit_market(trade.instrument_id, OrderSide.SELL, self.quantity, reason="borrow")
