"""A live-daemon strategy that decides several orders on one trade (the decision-log order test)."""

from __future__ import annotations

from collections.abc import Sequence

from tradebus.config.base import StrictModel
from tradebus.engine.messages import OrderSide, Trade
from tradebus.strategies.base import Strategy


class BurstParams(StrictModel):
    """``per_trade`` market buys of ``quantity`` on each of the first ``trades`` trades."""

    per_trade: int = 3
    trades: int = 2
    quantity: float = 0.001


class BurstBuy(Strategy):
    """Buys ``per_trade`` times at market on each of its first ``trades`` trades (see :class:`BurstParams`)."""

    Params = BurstParams

    def __init__(self, instrument_ids: str | Sequence[str], *, per_trade: int = 3, trades: int = 2,
                 quantity: float = 0.001, strategy_id: str | None = None) -> None:
        super().__init__(instrument_ids, strategy_id=strategy_id)
        self.per_trade, self.left, self.quantity = per_trade, trades, quantity

    def on_trade(self, trade: Trade) -> None:
        if self.left <= 0:
            return
        self.left -= 1
        for k in range(self.per_trade):
            self.submit_market(self.instrument_id, OrderSide.BUY, self.quantity, reason=f"burst {k}")
