"""Typed facades of the order-book features (kernels in :mod:`tradebus.features.kernels.book`).

``Microprice.update(bid, ask, bid_size, ask_size)`` takes the best quote;
``BookImbalance`` and ``Ofi`` take the top-10 levels of a book, best first, through
:meth:`BookImbalance.update_book` / :meth:`Ofi.update_book` (float64 arrays; missing
levels may be shorter arrays and are treated as absent). In a
:class:`~tradebus.features.bank.FeatureBank` the same kinds read the bank's book
fields (``bid_px_0`` .. ``ask_sz_9``).

Examples
--------
>>> Microprice().update(100.0, 101.0, 3.0, 1.0)
100.75
>>> import numpy as np
>>> BookImbalance(levels=2).update_book(np.array([10.0, 9.0]), np.array([1.0, 1.0]),
...                                     np.array([11.0, 12.0]), np.array([3.0, 1.0]))
-0.3333333333333333
"""

from __future__ import annotations

import numpy as np

from tradebus.errors import FeatureError
from tradebus.features.kernels.book import _N
from tradebus.features.stepper import Stepper

__all__ = ["BookImbalance", "Microprice", "Ofi"]


def _pack_levels(x: np.ndarray, bid_px: np.ndarray, bid_sz: np.ndarray, ask_px: np.ndarray, ask_sz: np.ndarray,
                 with_prices: bool) -> None:
    x[:] = np.nan
    sides = (bid_px, bid_sz, ask_px, ask_sz) if with_prices else (bid_sz, ask_sz)
    for k, arr in enumerate(sides):
        n = min(len(arr), _N)
        x[k * _N : k * _N + n] = arr[:n]


class Microprice(Stepper):
    """Size-weighted mid of the best bid/ask; ``update(bid, ask, bid_size, ask_size)``."""

    KIND = "microprice"
    __slots__ = ()

    def __init__(self) -> None:
        super().__init__()


class BookImbalance(Stepper):
    """``(bid size - ask size) / total`` over the top ``levels`` levels (missing levels count 0)."""

    KIND = "book_imbalance"
    __slots__ = ()

    def __init__(self, *, levels: int = 5) -> None:
        super().__init__(levels=levels)

    def update_book(self, bid_px: np.ndarray, bid_sz: np.ndarray, ask_px: np.ndarray, ask_sz: np.ndarray) -> float:
        """Feed one book state (arrays best first; prices are not used)."""
        if len(bid_sz) != len(bid_px) or len(ask_sz) != len(ask_px):
            raise FeatureError("book_imbalance: price and size arrays of a side must have the same length")
        x = np.empty(2 * _N, dtype=np.float64)
        _pack_levels(x, bid_px, bid_sz, ask_px, ask_sz, with_prices=False)
        return self.update(*x)  # type: ignore[return-value]


class Ofi(Stepper):
    """Multi-level order-flow imbalance summed over the last ``window`` book events."""

    KIND = "ofi"
    __slots__ = ()

    def __init__(self, *, levels: int = 5, window: int = 100) -> None:
        super().__init__(levels=levels, window=window)

    def update_book(self, bid_px: np.ndarray, bid_sz: np.ndarray, ask_px: np.ndarray, ask_sz: np.ndarray) -> float:
        """Feed one book state (arrays best first)."""
        if len(bid_sz) != len(bid_px) or len(ask_sz) != len(ask_px):
            raise FeatureError("ofi: price and size arrays of a side must have the same length")
        x = np.empty(4 * _N, dtype=np.float64)
        _pack_levels(x, bid_px, bid_sz, ask_px, ask_sz, with_prices=True)
        return self.update(*x)  # type: ignore[return-value]
