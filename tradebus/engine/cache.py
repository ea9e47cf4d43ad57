"""The cache: what strategies read about the market and their own state.

It keeps the last bar, trade and quote of every instrument (set by the kernel
before strategies see the message), the current feature values of every
instrument (:class:`FeatureView`), the L2 book of every instrument whose feed keeps one
(the adapter's own book, registered by the node: there is one book per instrument), and
read-only views of orders and positions (delegated to the order manager and the portfolio,
which own them).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from tradebus.engine.messages import Bar, Quote, Trade
from tradebus.errors import FeatureError

if TYPE_CHECKING:
    from tradebus.engine.portfolio import Portfolio
    from tradebus.execution.orders import Order, OrderManager

__all__ = ["BookView", "Cache", "FeatureView"]


class BookView(Protocol):
    """What a strategy may read of an L2 order book (``price, size`` rows, best first)."""

    last_seq: int

    def best_bid(self) -> tuple[float, float]: ...

    def best_ask(self) -> tuple[float, float]: ...

    def bids(self, depth: int | None = None) -> Any: ...

    def asks(self, depth: int | None = None) -> Any: ...


class FeatureView:
    """The current values of one instrument's features, by output name.

    ``row`` is the sequence of the bank's output values as of the last event the
    kernel delivered (a list in a batch backtest, the bank's output array
    otherwise); NaN means *not ready*. Look values up by name
    (``view["ema_fast"]``) or, in a hot loop, resolve the column once with
    :meth:`index` and read ``view.row[col]``.

    Parameters
    ----------
    names
        Output names in column order.
    """

    __slots__ = ("_index", "names", "row")

    def __init__(self, names: Sequence[str]) -> None:
        self.names: tuple[str, ...] = tuple(names)
        self._index: dict[str, int] = {name: col for col, name in enumerate(self.names)}
        self.row: Sequence[float] = [math.nan] * len(self.names)

    def index(self, name: str) -> int:
        """Column of output ``name``.

        Raises
        ------
        FeatureError
            If the instrument has no such feature output (the message lists the known ones).
        """
        col = self._index.get(name)
        if col is None:
            raise FeatureError(f"no feature output named {name!r}; known: {', '.join(self.names) or 'none'}")
        return col

    def __getitem__(self, name: str) -> float:
        return float(self.row[self.index(name)])

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def __len__(self) -> int:
        return len(self.names)

    def ready(self, name: str) -> bool:
        """Whether output ``name`` has a value (its warm-up is complete)."""
        value = self.row[self.index(name)]
        return value == value

    def as_dict(self) -> dict[str, float]:
        """``name -> value`` of every output (a copy)."""
        return {name: float(self.row[col]) for col, name in enumerate(self.names)}


class Cache:
    """Last market data per instrument plus views of orders, positions and features.

    Parameters
    ----------
    portfolio
        Owner of positions and PnL.
    orders
        Owner of the orders.
    """

    __slots__ = ("_books", "_orders", "_portfolio", "bars", "feature_views", "prices", "quotes", "trades")

    def __init__(self, portfolio: Portfolio, orders: OrderManager) -> None:
        self._portfolio = portfolio
        self._orders = orders
        #: ``instrument_id -> last Bar`` (written by the kernel).
        self.bars: dict[str, Bar] = {}
        #: ``instrument_id -> last Trade``.
        self.trades: dict[str, Trade] = {}
        #: ``instrument_id -> last Quote``.
        self.quotes: dict[str, Quote] = {}
        #: ``instrument_id -> latest price`` (bar close, trade price, quote or book mid).
        self.prices: dict[str, float] = {}
        #: ``instrument_id -> FeatureView``.
        self.feature_views: dict[str, FeatureView] = {}
        self._books: dict[str, Callable[[], BookView | None]] = {}

    # ------------------------------------------------------------------ market data

    def bar(self, instrument_id: str) -> Bar | None:
        """The last bar of the instrument, or ``None`` before the first."""
        return self.bars.get(instrument_id)

    def trade(self, instrument_id: str) -> Trade | None:
        """The last trade of the instrument, or ``None``."""
        return self.trades.get(instrument_id)

    def quote(self, instrument_id: str) -> Quote | None:
        """The last quote of the instrument, or ``None``."""
        return self.quotes.get(instrument_id)

    def price(self, instrument_id: str) -> float:
        """The latest price of the instrument: last bar close, trade price, quote mid or L2 book mid,
        whichever message came last. NaN before any market data of the instrument.
        """
        return self.prices.get(instrument_id, math.nan)

    def register_book(self, instrument_id: str, source: Callable[[], BookView | None]) -> None:
        """Make ``source()`` (the feed adapter's book of ``instrument_id``, or ``None``) readable by :meth:`book`."""
        self._books[instrument_id] = source

    def keeps_book(self, instrument_id: str) -> bool:
        """Whether a book of the instrument is registered (it may still be ``None`` before its first snapshot)."""
        return instrument_id in self._books

    def book(self, instrument_id: str) -> BookView | None:
        """The L2 book of the instrument, or ``None`` when no feed keeps one (yet).

        The book is the adapter's: it is current as of the last message delivered and may be
        out of sync with the venue while it resyncs (orders are then denied by the market guard).
        """
        source = self._books.get(instrument_id)
        return None if source is None else source()

    def features(self, instrument_id: str) -> FeatureView:
        """The instrument's :class:`FeatureView`.

        Raises
        ------
        FeatureError
            If the instrument has no feature bank.
        """
        view = self.feature_views.get(instrument_id)
        if view is None:
            raise FeatureError(f"instrument {instrument_id!r} has no features in this run")
        return view

    # ------------------------------------------------------------------ orders and positions

    def order(self, client_order_id: str) -> Order | None:
        """The order with this client order id, or ``None``."""
        return self._orders.get(client_order_id)

    def open_orders(self, instrument_id: str | None = None, strategy_id: str | None = None) -> list[Order]:
        """Working orders, optionally of one instrument and/or strategy, in creation order."""
        orders = self._orders.open_orders(instrument_id)
        if strategy_id is not None:
            orders = [o for o in orders if o.strategy_id == strategy_id]
        return orders

    def position(self, instrument_id: str) -> float:
        """Signed net position of the instrument."""
        return self._portfolio.position(instrument_id)

    def positions(self) -> dict[str, float]:
        """``instrument_id -> signed quantity`` of every open position."""
        return self._portfolio.positions()
