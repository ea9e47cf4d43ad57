"""A venue-independent L2 order book backed by sorted float64 arrays and Numba kernels.

Each side is a pair of float64 arrays (``price``, ``size``) kept sorted with the
*best level last* (bids ascending, asks descending) and a level count; there is no
dict of floats in the hot path. Best-last storage makes the common case cheap: venue
updates cluster at the top of the book, and inserting or removing a level only shifts
the levels *better* than it (a handful), not the whole deep book behind it. The
public accessors (:meth:`OrderBook.bids`, :meth:`OrderBook.top`...) return best-first. Applying one venue message (both sides) is **one** compiled call
(:func:`apply_levels`), which also reports whether the book is crossed afterwards.

Level semantics are the usual L2 ones: an update carries the *new total size* at a
price; size 0 removes the level (removing an absent level is a no-op); an unknown
price with a positive size inserts a level at its sorted position.

Prices are compared exactly: both the snapshot and the deltas are parsed from the
venue's decimal strings with the same ``float()`` conversion, so one price string
always maps to one float64.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from tradebus.errors import BookError

__all__ = [
    "APPLIED",
    "CROSSED",
    "INVALID",
    "OrderBook",
    "apply_levels",
    "apply_side",
    "load_side",
]

_EMPTY = np.empty((0, 2), dtype=np.float64)

APPLIED = 0
"""Status of :func:`apply_levels`: the update was applied and the book is not crossed."""
CROSSED = 1
"""Status of :func:`apply_levels`: the update was applied and best bid >= best ask."""
INVALID = -1
"""Status of :func:`apply_levels`: a level was malformed; the book was left untouched."""


@njit(cache=True)
def _find(px: np.ndarray, n: int, price: float, descending: bool) -> int:
    """Index of ``price`` in ``px[:n]`` (sorted ascending, or descending if ``descending``) or of its insertion slot."""
    lo = 0
    hi = n
    if descending:
        while lo < hi:
            mid = (lo + hi) >> 1
            if px[mid] > price:
                lo = mid + 1
            else:
                hi = mid
    else:
        while lo < hi:
            mid = (lo + hi) >> 1
            if px[mid] < price:
                lo = mid + 1
            else:
                hi = mid
    return lo


@njit(cache=True)
def apply_side(px: np.ndarray, sz: np.ndarray, n: int, levels: np.ndarray, descending: bool) -> int:
    """Apply ``levels`` (shape (m, 2): price, new size) to one side and return its new level count.

    The side is stored best-last: ascending for bids (``descending=False``), descending
    for asks (``descending=True``).

    The caller guarantees ``len(px) >= n + m`` (see :meth:`OrderBook.reserve`), so an
    insert never overflows. Size 0 removes the level; removing an absent level is a no-op.
    """
    for i in range(levels.shape[0]):
        price = levels[i, 0]
        size = levels[i, 1]
        j = _find(px, n, price, descending)
        if j < n and px[j] == price:
            if size > 0.0:
                sz[j] = size
            else:
                for k in range(j, n - 1):
                    px[k] = px[k + 1]
                    sz[k] = sz[k + 1]
                n -= 1
        elif size > 0.0:
            for k in range(n, j, -1):
                px[k] = px[k - 1]
                sz[k] = sz[k - 1]
            px[j] = price
            sz[j] = size
            n += 1
    return n


@njit(cache=True)
def apply_levels(
    bid_px: np.ndarray,
    bid_sz: np.ndarray,
    ask_px: np.ndarray,
    ask_sz: np.ndarray,
    counts: np.ndarray,
    bids: np.ndarray,
    asks: np.ndarray,
) -> int:
    """Apply one message's bid and ask updates in one call.

    ``counts`` is an int64 array ``[n_bids, n_asks]`` updated in place. Returns
    :data:`APPLIED`, :data:`CROSSED` (applied, and best bid >= best ask now) or
    :data:`INVALID` (a level has a non-finite or non-positive price or a negative or
    non-finite size: *nothing* was applied).
    """
    for levels in (bids, asks):
        for i in range(levels.shape[0]):
            p = levels[i, 0]
            s = levels[i, 1]
            if not (p > 0.0 and p < np.inf and s >= 0.0 and s < np.inf):
                return INVALID
    nb = apply_side(bid_px, bid_sz, counts[0], bids, False)
    na = apply_side(ask_px, ask_sz, counts[1], asks, True)
    counts[0] = nb
    counts[1] = na
    if nb > 0 and na > 0 and bid_px[nb - 1] >= ask_px[na - 1]:
        return CROSSED
    return APPLIED


@njit(cache=True)
def load_side(px: np.ndarray, sz: np.ndarray, levels: np.ndarray, descending: bool) -> int:
    """Replace one side with ``levels`` (any order; size-0 rows skipped; a repeated price keeps the last).

    Returns the level count. The caller guarantees ``len(px) >= len(levels)``. Storage
    order as in :func:`apply_side` (best last).
    """
    n = 0
    for i in range(levels.shape[0]):
        price = levels[i, 0]
        size = levels[i, 1]
        if size <= 0.0:
            continue
        j = _find(px, n, price, descending)
        if j < n and px[j] == price:
            sz[j] = size
            continue
        for k in range(n, j, -1):
            px[k] = px[k - 1]
            sz[k] = sz[k - 1]
        px[j] = price
        sz[j] = size
        n += 1
    return n


class OrderBook:
    """An L2 book: sorted price/size float64 arrays per side, mutated by Numba kernels.

    Parameters
    ----------
    instrument_id
        Key of the instrument (``"BTCUSDT.BINANCE"``), used in error messages.
    capacity
        Initial levels per side; the arrays grow (doubling) when an update could overflow.

    Notes
    -----
    ``bid_px``/``bid_sz`` hold the bids ascending and ``ask_px``/``ask_sz`` the asks
    descending, so the best level of each side is at index ``n - 1``; only the first
    ``n_bids``/``n_asks`` entries are meaningful. Use the accessors for best-first views.
    ``last_seq`` is the venue sequence id of the last applied update (maintained by
    :class:`tradebus.adapters.common.sync.BookSync`).
    """

    __slots__ = ("instrument_id", "bid_px", "bid_sz", "ask_px", "ask_sz", "counts", "last_seq", "ts_event")

    def __init__(self, instrument_id: str, capacity: int = 2048) -> None:
        if capacity < 1:
            raise BookError(f"book {instrument_id}: capacity must be >= 1, got {capacity}")
        self.instrument_id = instrument_id
        self.bid_px = np.zeros(capacity, dtype=np.float64)
        self.bid_sz = np.zeros(capacity, dtype=np.float64)
        self.ask_px = np.zeros(capacity, dtype=np.float64)
        self.ask_sz = np.zeros(capacity, dtype=np.float64)
        self.counts = np.zeros(2, dtype=np.int64)
        self.last_seq = -1
        self.ts_event = 0

    # ----------------------------------------------------------------- mutation

    def reserve(self, extra_bids: int, extra_asks: int) -> None:
        """Grow the arrays so that ``extra_bids``/``extra_asks`` inserts cannot overflow."""
        need = max(int(self.counts[0]) + extra_bids, int(self.counts[1]) + extra_asks)
        cap = self.bid_px.shape[0]
        if need <= cap:
            return
        while cap < need:
            cap *= 2
        for name in ("bid_px", "bid_sz", "ask_px", "ask_sz"):
            old = getattr(self, name)
            new = np.zeros(cap, dtype=np.float64)
            new[: old.shape[0]] = old
            setattr(self, name, new)

    def clear(self) -> None:
        """Remove every level."""
        self.counts[:] = 0
        self.last_seq = -1

    def load(self, bids: np.ndarray, asks: np.ndarray, last_seq: int = -1, ts_event: int = 0) -> bool:
        """Replace the whole book with a snapshot; return True if it is crossed.

        ``bids``/``asks`` are float64 arrays of shape (n, 2) (price, size) in any order.
        """
        bids = _levels(bids, self.instrument_id, "bids")
        asks = _levels(asks, self.instrument_id, "asks")
        self.counts[:] = 0
        self.reserve(bids.shape[0], asks.shape[0])
        self.counts[0] = load_side(self.bid_px, self.bid_sz, bids, False)
        self.counts[1] = load_side(self.ask_px, self.ask_sz, asks, True)
        self.last_seq = last_seq
        self.ts_event = ts_event
        return self.crossed()

    def apply(self, bids: np.ndarray, asks: np.ndarray) -> int:
        """Apply one message's level updates (shape (m, 2) float64 each).

        Returns :data:`APPLIED`, :data:`CROSSED` or :data:`INVALID` (see :func:`apply_levels`;
        on INVALID the book is unchanged).

        The arrays must already be float64 and C-contiguous (parsers produce them so);
        anything else raises :class:`BookError` rather than silently compiling a new
        specialisation in the hot path.
        """
        if bids.dtype != np.float64 or asks.dtype != np.float64 or bids.ndim != 2 or asks.ndim != 2:
            raise BookError(
                f"book {self.instrument_id}: level arrays must be float64 of shape (n, 2), "
                f"got {bids.dtype}{bids.shape} / {asks.dtype}{asks.shape}"
            )
        counts = self.counts
        if counts[0] + bids.shape[0] > self.bid_px.shape[0] or counts[1] + asks.shape[0] > self.ask_px.shape[0]:
            self.reserve(bids.shape[0], asks.shape[0])
        return apply_levels(self.bid_px, self.bid_sz, self.ask_px, self.ask_sz, counts, bids, asks)

    # ------------------------------------------------------------------ queries

    @property
    def n_bids(self) -> int:
        """Number of bid levels."""
        return int(self.counts[0])

    @property
    def n_asks(self) -> int:
        """Number of ask levels."""
        return int(self.counts[1])

    def best_bid(self) -> tuple[float, float]:
        """(price, size) of the best bid, or (NaN, NaN) if there is none."""
        n = self.counts[0]
        if n == 0:
            return float("nan"), float("nan")
        return float(self.bid_px[n - 1]), float(self.bid_sz[n - 1])

    def best_ask(self) -> tuple[float, float]:
        """(price, size) of the best ask, or (NaN, NaN) if there is none."""
        n = self.counts[1]
        if n == 0:
            return float("nan"), float("nan")
        return float(self.ask_px[n - 1]), float(self.ask_sz[n - 1])

    def crossed(self) -> bool:
        """Whether best bid >= best ask (both sides non-empty)."""
        nb, na = self.counts[0], self.counts[1]
        return bool(nb > 0 and na > 0 and self.bid_px[nb - 1] >= self.ask_px[na - 1])

    def bids(self, depth: int | None = None) -> np.ndarray:
        """Copy of the top ``depth`` bids (all if None), shape (k, 2), best first."""
        n = self.n_bids
        k = n if depth is None else min(depth, n)
        return np.column_stack((self.bid_px[n - k : n][::-1], self.bid_sz[n - k : n][::-1]))

    def asks(self, depth: int | None = None) -> np.ndarray:
        """Copy of the top ``depth`` asks (all if None), shape (k, 2), best first."""
        n = self.n_asks
        k = n if depth is None else min(depth, n)
        return np.column_stack((self.ask_px[n - k : n][::-1], self.ask_sz[n - k : n][::-1]))

    def top(self, depth: int) -> tuple[np.ndarray, np.ndarray]:
        """(bids, asks) of the top ``depth`` levels each."""
        return self.bids(depth), self.asks(depth)

    def equals(self, other: OrderBook) -> bool:
        """Exact level-by-level equality of both sides (sequence ids are not compared)."""
        nb, na = self.n_bids, self.n_asks
        if nb != other.n_bids or na != other.n_asks:
            return False
        return bool(
            np.array_equal(self.bid_px[:nb], other.bid_px[:nb])
            and np.array_equal(self.bid_sz[:nb], other.bid_sz[:nb])
            and np.array_equal(self.ask_px[:na], other.ask_px[:na])
            and np.array_equal(self.ask_sz[:na], other.ask_sz[:na])
        )

    def __repr__(self) -> str:
        bb, ba = self.best_bid(), self.best_ask()
        return (
            f"OrderBook({self.instrument_id}, bids={self.n_bids}, asks={self.n_asks}, "
            f"best={bb[0]}x{bb[1]} / {ba[0]}x{ba[1]}, last_seq={self.last_seq})"
        )


def _levels(levels: object, instrument_id: str, side: str) -> np.ndarray:
    """Coerce snapshot levels to a C-contiguous float64 (n, 2) array at the boundary."""
    arr = np.ascontiguousarray(levels if levels is not None else _EMPTY, dtype=np.float64)
    if arr.size == 0:
        return _EMPTY
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise BookError(f"book {instrument_id}: {side} must have shape (n, 2), got {arr.shape}")
    if not np.all(np.isfinite(arr)) or np.any(arr[:, 0] <= 0.0) or np.any(arr[:, 1] < 0.0):
        raise BookError(f"book {instrument_id}: {side} holds a non-finite, non-positive price or negative size")
    return arr
