"""A strategy placing market and limit orders, marketable and resting, priced off the quote or the book
(the paper-versus-replay comparisons on OKX and Bybit)."""

from __future__ import annotations

from collections.abc import Sequence

from tradebus.config.base import StrictModel
from tradebus.engine.messages import OrderSide, Trade
from tradebus.strategies.base import Strategy


class MixedOrdersParams(StrictModel):
    """``every``: trades between two orders; ``quantity``: of each order; ``ticks``: a limit's distance from its
    reference price; ``keep``: limit orders left working (older ones are canceled); ``ref``: ``"quote"`` (the
    last quote) or ``"book"`` (the L2 book's best levels) as the reference price."""

    every: int = 2
    quantity: float = 0.001
    ticks: int = 0
    keep: int = 2
    ref: str = "quote"


class MixedOrders(Strategy):
    """On every ``every``-th trade, in turn: a limit order resting ``ticks`` behind the reference price (the bid for
    a buy, the ask for a sell), one as far through it (marketable), and a market order; buys and sells alternate.
    The oldest limit orders beyond ``keep`` are canceled."""

    Params = MixedOrdersParams

    def __init__(self, instrument_ids: str | Sequence[str], *, every: int = 2, quantity: float = 0.001,
                 ticks: int = 0, keep: int = 2, ref: str = "quote", strategy_id: str | None = None) -> None:
        super().__init__(instrument_ids, strategy_id=strategy_id)
        self.every, self.quantity, self.ticks, self.keep, self.ref = every, quantity, ticks, keep, ref
        self.seen = 0
        self.limits: list[str] = []

    def on_trade(self, trade: Trade) -> None:
        iid = trade.instrument_id
        self.seen += 1
        if self.seen % self.every:
            return
        step = self.seen // self.every
        side = OrderSide.BUY if step % 2 else OrderSide.SELL
        if step % 3 == 0:
            self.submit_market(iid, side, self.quantity, reason=f"market {step}")
            return
        buy = side is OrderSide.BUY
        quote, book = self.cache.quote(iid), self.book(iid)
        if self.ref == "quote" and quote is not None:
            ref = quote.bid_price if buy else quote.ask_price
        elif self.ref == "book" and book is not None and len(book.bids(1)) and len(book.asks(1)):
            ref = book.best_bid()[0] if buy else book.best_ask()[0]
        else:
            ref = trade.price
        tick = self.instrument(iid).tick_size
        away = -self.ticks if (step % 3 == 1) == buy else self.ticks  # resting behind, or marketable through
        price = round(round(ref / tick + away) * tick, 10)
        self.limits.append(self.submit_limit(iid, side, self.quantity, price, reason=f"limit {step}"))
        while len(self.limits) > self.keep:
            self.cancel(self.limits.pop(0), reason="oldest limit")
