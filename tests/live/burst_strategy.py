"""A live-daemon strategy that decides several orders on one trade (the decision-log order test)."""

from __future__ import annotations

from collections.abc import Sequence

from tradebus.config.base import StrictModel
from tradebus.engine.messages import OrderSide, Trade, TradingState
from tradebus.strategies.base import Strategy


class BurstParams(StrictModel):
    """``per_trade`` market buys of ``quantity`` on each of the first ``trades`` trades; ``halt``: then trading
    HALTED, as a breaker tripped in the same frame sets it."""

    per_trade: int = 3
    trades: int = 2
    quantity: float = 0.001
    halt: bool = False


class BurstBuy(Strategy):
    """Buys ``per_trade`` times at market on each of its first ``trades`` trades (see :class:`BurstParams`)."""

    Params = BurstParams

    def __init__(self, instrument_ids: str | Sequence[str], *, per_trade: int = 3, trades: int = 2,
                 quantity: float = 0.001, halt: bool = False, strategy_id: str | None = None) -> None:
        super().__init__(instrument_ids, strategy_id=strategy_id)
        self.per_trade, self.left, self.quantity, self.halt = per_trade, trades, quantity, halt

    def on_trade(self, trade: Trade) -> None:
        if self.left <= 0:
            return
        self.left -= 1
        for k in range(self.per_trade):
            self.submit_market(self.instrument_id, OrderSide.BUY, self.quantity, reason=f"burst {k}")
        if self.halt:
            kernel = self.kernel.trading_state.__self__  # type: ignore[attr-defined]  # (the context offers no risk gate)
            kernel.risk.set_state(TradingState.HALTED, "burst test halt")
