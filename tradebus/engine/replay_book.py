"""The L2 book a backtest keeps from its replayed book messages, for strategies to read.

A paper or live daemon's strategies read the feed adapter's book (``cache.book``, registered
by the node). A backtest has no adapter: the kernel applies each
:class:`~tradebus.engine.messages.BookSnapshot` / ``BookDelta`` it processes to a
:class:`ReplayBook` and registers that with the cache, so ``Strategy.book()`` shows the book the
data had up to the message being handled, in a backtest as in the daemon. It is the data's book:
a ``fill_on: book`` venue's own copy, which takes the venue's fills off its levels until their next
update, is not it.
"""

from __future__ import annotations

import heapq
import math

import numpy as np

from tradebus.engine.messages import BookDelta, BookSnapshot

__all__ = ["ReplayBook"]

_NONE = (math.nan, math.nan)


class ReplayBook:
    """One instrument's L2 book (``price -> size`` per side), a :class:`~tradebus.engine.cache.BookView`."""

    __slots__ = ("_asks", "_best_ask", "_best_bid", "_bids", "last_seq", "ts_event")

    def __init__(self) -> None:
        self._bids: dict[float, float] = {}
        self._asks: dict[float, float] = {}
        self._best_bid = -math.inf
        self._best_ask = math.inf
        #: Sequence id of the last message applied (-1: none).
        self.last_seq = -1
        #: Venue time of the last message applied.
        self.ts_event = 0

    def apply(self, msg: BookSnapshot | BookDelta) -> None:
        """Apply one book message (a snapshot replaces the book; a size of 0 removes a level)."""
        bids, asks = self._bids, self._asks
        if type(msg) is BookSnapshot:
            bids.clear()
            asks.clear()
            self._best_bid, self._best_ask = -math.inf, math.inf
        best = self._best_bid
        for price, size in msg.bids.tolist():  # type: ignore[attr-defined]
            if size > 0.0:
                bids[price] = size
                if price > best:
                    best = price
            elif bids.pop(price, None) is not None and price == best:
                best = max(bids) if bids else -math.inf
        self._best_bid = best
        best = self._best_ask
        for price, size in msg.asks.tolist():  # type: ignore[attr-defined]
            if size > 0.0:
                asks[price] = size
                if price < best:
                    best = price
            elif asks.pop(price, None) is not None and price == best:
                best = min(asks) if asks else math.inf
        self._best_ask = best
        self.last_seq = msg.last_seq
        self.ts_event = msg.ts_event

    def best_bid(self) -> tuple[float, float]:
        """(price, size) of the best bid, or (NaN, NaN) if there is none."""
        return (self._best_bid, self._bids[self._best_bid]) if self._bids else _NONE

    def best_ask(self) -> tuple[float, float]:
        """(price, size) of the best ask, or (NaN, NaN) if there is none."""
        return (self._best_ask, self._asks[self._best_ask]) if self._asks else _NONE

    def bids(self, depth: int | None = None) -> np.ndarray:
        """The top ``depth`` bids (all if None), shape (k, 2), best first."""
        items = self._bids.items()
        return _rows(sorted(items, reverse=True) if depth is None else heapq.nlargest(depth, items))

    def asks(self, depth: int | None = None) -> np.ndarray:
        """The top ``depth`` asks (all if None), shape (k, 2), best first."""
        items = self._asks.items()
        return _rows(sorted(items) if depth is None else heapq.nsmallest(depth, items))


def _rows(levels: list[tuple[float, float]]) -> np.ndarray:
    return np.asarray(levels, dtype=np.float64).reshape(-1, 2)
