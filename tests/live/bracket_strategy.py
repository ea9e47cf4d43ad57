"""A paper-daemon strategy for the bracket restart tests: one bracket on the first trade."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict

from tradebus.engine.messages import OrderSide, OrderType, Trade
from tradebus.strategies.base import Strategy


class OneBracketParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    quantity: float
    stop_loss: float | None = None
    take_profit: float | None = None
    span: float | None = None
    enter: bool = True
    lower_take_profit_to: float | None = None


class OneBracket(Strategy):
    """Buys ``quantity`` at market with a stop-loss and a take-profit on its first trade (if ``enter``): at
    ``stop_loss`` and ``take_profit``, or ``span`` below and above that trade's price. Not entering, with
    ``lower_take_profit_to``: on its first trade it modifies the take-profit working (a limit) to that price once,
    as a freqtrade ROI table's next step does."""

    Params = OneBracketParams
    contingent = True

    def __init__(
        self,
        instrument_ids: str | Sequence[str],
        *,
        quantity: float,
        stop_loss: float | None = None,
        take_profit: float | None = None,
        span: float | None = None,
        enter: bool = True,
        lower_take_profit_to: float | None = None,
        strategy_id: str | None = None,
    ) -> None:
        super().__init__(instrument_ids, strategy_id=strategy_id or "OneBracket")
        self.quantity = quantity
        self.stop_loss = stop_loss
        self.take_profit = take_profit
        self.span = span
        self.enter = enter
        self.lower_take_profit_to = lower_take_profit_to

    def on_trade(self, trade: Trade) -> None:
        if not self.enter and self.lower_take_profit_to is not None:
            price, self.lower_take_profit_to = self.lower_take_profit_to, None
            for order in self.ctx.cache.open_orders(trade.instrument_id, self.strategy_id):
                if order.order_type is OrderType.LIMIT:
                    self.modify(order.client_order_id, price=price)
        if self.enter:
            self.enter = False
            if self.span is not None:
                stop_loss, take_profit = round(trade.price - self.span, 8), round(trade.price + self.span, 8)
            else:
                assert self.stop_loss is not None and self.take_profit is not None
                stop_loss, take_profit = self.stop_loss, self.take_profit
            self.submit_bracket(trade.instrument_id, OrderSide.BUY, self.quantity, stop_loss=stop_loss, take_profit=take_profit)
