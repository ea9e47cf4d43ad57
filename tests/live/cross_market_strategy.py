"""A strategy that orders one market on the trades of another (the stale-feed replay tests)."""

from __future__ import annotations

from collections.abc import Sequence

from tradebus.config.base import StrictModel
from tradebus.engine.messages import OrderSide, Trade
from tradebus.strategies.base import Strategy


class CrossMarketParams(StrictModel):
    """``every``: trades of the first instrument between two orders; ``quantity``: of each order."""

    every: int = 20
    quantity: float = 0.001


class CrossMarket(Strategy):
    """On every ``every``-th trade of its first instrument, a market order on its second, buys and sells in turn.

    Its decisions come from one feed and its orders go to another: an order can be decided while the
    traded instrument's feed is stale.
    """

    Params = CrossMarketParams

    def __init__(self, instrument_ids: str | Sequence[str], *, every: int = 20, quantity: float = 0.001,
                 strategy_id: str | None = None) -> None:
        super().__init__(instrument_ids, strategy_id=strategy_id)
        self.signal, self.traded = self.instrument_ids[0], self.instrument_ids[1]
        self.every, self.quantity = every, quantity
        self.seen = 0

    def on_trade(self, trade: Trade) -> None:
        if trade.instrument_id != self.signal:
            return
        self.seen += 1
        if self.seen % self.every == 0:
            side = OrderSide.BUY if self.seen // self.every % 2 else OrderSide.SELL
            self.submit_market(self.traded, side, self.quantity, reason=f"trade {self.seen} of {self.signal}")
