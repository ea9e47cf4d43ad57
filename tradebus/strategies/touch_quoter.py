"""TouchQuoter: a minimal market maker quoting the best bid and ask of one instrument's L2 book.

Every ``interval`` (on multiples of it since the epoch, from the first book message on) the
strategy cancels its working orders and posts a post-only bid at the best bid and a
post-only ask at the best ask, ``quantity`` each, skipping the side that could take the
position beyond ``max_position`` if the new quote and every quote of that side still open
filled (a quote whose cancel the venue has not confirmed may still fill, venue latency
permitting). The best prices come from the run's L2 book (``self.book()``: the replayed
book in a backtest, the feed's in a daemon), so it needs a ``book`` data source; its first
:class:`~tradebus.engine.messages.BookSnapshot` / ``BookDelta`` starts the timer. It exists to exercise ``fill_on: book`` (queue positions, latency)
and to be run the same way in hftbacktest (``tests/execution/test_book_vs_hftbacktest.py``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from pydantic import BaseModel, Field

from tradebus.config.base import StrictModel
from tradebus.engine.messages import BookDelta, BookSnapshot, OrderSide, TimeEvent
from tradebus.errors import ConfigError
from tradebus.strategies.base import Strategy

__all__ = ["TouchQuoter", "TouchQuoterParams"]


class TouchQuoterParams(StrictModel):
    """Parameters of :class:`TouchQuoter`."""

    interval_ns: int = Field(default=1_000_000_000, gt=0)
    quantity: float = Field(gt=0)
    max_position: float = Field(gt=0)


class TouchQuoter(Strategy):
    """Quote both sides of one instrument at the touch every ``interval_ns`` (see the module docstring).

    Raises
    ------
    ConfigError
        If given more than one instrument id.
    """

    Params = TouchQuoterParams
    label = "touch_quoter"

    def __init__(
        self,
        instrument_ids: str | Sequence[str],
        *,
        interval_ns: int = 1_000_000_000,
        quantity: float,
        max_position: float,
        strategy_id: str | None = None,
    ) -> None:
        super().__init__(instrument_ids, strategy_id=strategy_id or "TouchQuoter")
        if len(self.instrument_ids) != 1:
            raise ConfigError(
                f"{self.strategy_id}: TouchQuoter quotes one instrument's book, got {len(self.instrument_ids)} "
                f"instruments: {', '.join(self.instrument_ids)} (run one TouchQuoter per instrument)"
            )
        self.interval_ns = interval_ns
        self.quantity = quantity
        self.max_position = max_position
        self._timer = False

    @classmethod
    def data_kinds(cls, params: BaseModel) -> frozenset[str]:
        """The strategy reads the L2 book."""
        return frozenset({"book"})

    def on_start(self) -> None:
        """Subscribe to the instrument's book messages."""
        iid = self.instrument_ids[0]
        bus = self.kernel.bus
        bus.subscribe(BookSnapshot, self.on_book, iid)
        bus.subscribe(BookDelta, self.on_book, iid)

    def on_book(self, msg: BookSnapshot | BookDelta) -> None:
        """Start the quoting timer at the first book message."""
        if not self._timer:
            self._timer = True
            start = msg.ts_init - msg.ts_init % self.interval_ns
            self.clock.set_timer(f"{self.strategy_id}-quote", self.interval_ns, self.on_quote_timer, start_ns=start)

    def on_quote_timer(self, event: TimeEvent) -> None:
        """Cancel the working quotes and post fresh ones at the touch."""
        iid = self.instrument_ids[0]
        self.cancel_all(iid, reason="requote")
        book = self.book(iid)
        if book is None:
            return
        bid, ask = book.best_bid()[0], book.best_ask()[0]
        if math.isnan(bid) or math.isnan(ask):
            return
        pos = self.position(iid)
        bids = asks = 0.0
        for order in self.ctx.orders.open_orders(iid):
            if order.strategy_id == self.strategy_id:
                if order.side is OrderSide.BUY:
                    bids += order.leaves_qty
                else:
                    asks += order.leaves_qty
        if pos + bids + self.quantity <= self.max_position + 1e-12:
            self.submit_limit(iid, OrderSide.BUY, self.quantity, bid, post_only=True, reason="bid")
        if pos - asks - self.quantity >= -self.max_position - 1e-12:
            self.submit_limit(iid, OrderSide.SELL, self.quantity, ask, post_only=True, reason="ask")
