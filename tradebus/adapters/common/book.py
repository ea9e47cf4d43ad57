"""A venue-independent L2 order book backed by sorted float64 arrays and Numba kernels.

Each side is a pair of float64 arrays (``price``, ``size``) holding the side's slots
``[lo, hi)`` sorted with the *best level last* (bids ascending, asks descending); there
is no dict of floats in the hot path. Applying one venue message (both sides) is
**one** compiled call (:func:`apply_levels`), which also reports whether the book is
crossed afterwards. The public accessors (:meth:`OrderBook.bids`, :meth:`OrderBook.top`
...) return best-first copies.

Why this layout: venues update levels all over a deep book (Binance touches ~30 levels
per diff across 1,000+), so a plain sorted array pays O(depth) shifts per insert or
removal. Here a removed level becomes a *tombstone* (size 0, price kept so the order
holds); an insert reuses the nearest tombstone or the free space at either end of
``[lo, hi)``, shifting only the levels in between; tombstones at both ends are trimmed
(so ``hi - 1`` is always the best live level) and the side is compacted when they
outnumber the live levels.

Level semantics are the usual L2 ones: an update carries the *new total size* at a
price; size 0 removes the level (removing an absent level is a no-op); an unknown
price with a positive size inserts a level at its sorted position.

Prices are compared exactly: both the snapshot and the deltas are parsed from the
venue's decimal strings with the same correctly rounded conversion, so one price
string always maps to one float64.
"""

from __future__ import annotations

from itertools import product

import numpy as np
from numba import njit

from tradebus.adapters.common import raw_levels
from tradebus.errors import BookError

__all__ = [
    "APPLIED",
    "CROSSED",
    "INVALID",
    "NO_ROOM",
    "OrderBook",
    "TOP_CHANGED",
    "apply_levels",
    "apply_side",
    "apply_top",
    "collect",
    "first_invalid",
    "load_side",
    "refresh_top",
    "warm_up",
]

_EMPTY = np.empty((0, 2), dtype=np.float64)

APPLIED = 0
"""Status of :func:`apply_levels`: the update was applied and the book is not crossed."""
CROSSED = 1
"""Status of :func:`apply_levels`: the update was applied and best bid >= best ask."""
INVALID = -1
"""Status of :func:`apply_levels`: a level was malformed; the book was left untouched."""
TOP_CHANGED = 2
"""Status of :func:`apply_top`: applied, not crossed, and the top of book moved (written to ``top``)."""
NO_ROOM = -2
"""Status of :func:`apply_top`: the update could overflow the arrays; nothing was applied."""

# layout of OrderBook.counts: per side [lo, hi, live]; bids at 0..2, asks at 3..5
_LO = 0
_HI = 1
_LIVE = 2


@njit(cache=True)
def _find(px: np.ndarray, lo: int, hi: int, price: float, descending: bool) -> int:
    """Index of ``price`` in ``px[lo:hi]`` (ascending, or descending) or of its insertion slot."""
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
def _compact(px: np.ndarray, sz: np.ndarray, lo: int, hi: int) -> int:
    """Squeeze the tombstones out of ``[lo, hi)`` towards ``lo``; return the new ``hi``."""
    w = lo
    for r in range(lo, hi):
        if sz[r] > 0.0:
            px[w] = px[r]
            sz[w] = sz[r]
            w += 1
    return w


@njit(cache=True)
def apply_side(px: np.ndarray, sz: np.ndarray, side: np.ndarray, levels: np.ndarray, descending: bool) -> None:
    """Apply ``levels`` (shape (m, 2): price, new size) to one side.

    ``side`` is the int64 triple ``[lo, hi, live]`` updated in place (see the module
    docstring for the tombstone layout). The caller guarantees at least ``m`` free slots
    outside ``[lo, hi)`` (see :meth:`OrderBook.reserve`), so an insert always finds room.
    """
    cap = px.shape[0]
    lo = side[0]
    hi = side[1]
    live = side[2]
    for i in range(levels.shape[0]):
        price = levels[i, 0]
        size = levels[i, 1]
        j = _find(px, lo, hi, price, descending)
        if j < hi and px[j] == price:
            if size > 0.0:
                if sz[j] == 0.0:
                    live += 1
                sz[j] = size
            elif sz[j] > 0.0:
                sz[j] = 0.0
                live -= 1
            continue
        if size <= 0.0:
            continue
        live += 1
        if j > lo and sz[j - 1] == 0.0:  # tombstone just below the slot: take it
            px[j - 1] = price
            sz[j - 1] = size
            continue
        if j < hi and sz[j] == 0.0:  # tombstone at the slot
            px[j] = price
            sz[j] = size
            continue
        # nearest free slot: a tombstone, or the free space just outside [lo, hi)
        left = j - 1
        right = j
        t = -1
        while left >= lo - 1 or right <= hi:
            if right <= hi:
                if right == hi:
                    if hi < cap:
                        t = hi
                        hi += 1
                        break
                elif sz[right] == 0.0:
                    t = right
                    break
            if left >= lo - 1:
                if left == lo - 1:
                    if lo > 0:
                        t = lo - 1
                        lo -= 1
                        break
                elif sz[left] == 0.0:
                    t = left
                    break
            left -= 1
            right += 1
        if t < 0:
            raise ValueError("order book side is full: reserve() was not called before apply")
        if t >= j:
            for k in range(t, j, -1):
                px[k] = px[k - 1]
                sz[k] = sz[k - 1]
            px[j] = price
            sz[j] = size
        else:
            for k in range(t, j - 1):
                px[k] = px[k + 1]
                sz[k] = sz[k + 1]
            px[j - 1] = price
            sz[j - 1] = size
    while hi > lo and sz[hi - 1] == 0.0:
        hi -= 1
    while lo < hi and sz[lo] == 0.0:
        lo += 1
    if hi - lo > 2 * live + 64:
        hi = _compact(px, sz, lo, hi)
    side[0] = lo
    side[1] = hi
    side[2] = live


@njit(cache=True)
def first_invalid(levels: np.ndarray) -> int:
    """Index of the first malformed row of ``levels`` (shape (m, 2)), or -1 if every row is valid.

    A row is valid when its price is finite and > 0 and its size finite and >= 0 (NaN fails both).
    """
    for i in range(levels.shape[0]):
        p = levels[i, 0]
        q = levels[i, 1]
        if not (p > 0.0 and p < np.inf and q >= 0.0 and q < np.inf):
            return i
    return -1


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

    ``counts`` is the int64 array ``[bid lo, bid hi, bid levels, ask lo, ask hi, ask
    levels]`` updated in place. Returns :data:`APPLIED`, :data:`CROSSED` (applied, and
    best bid >= best ask now) or :data:`INVALID` (a level has a non-finite or
    non-positive price or a negative or non-finite size: *nothing* was applied).
    """
    # one call per side: (bids, asks) may mix read-only and writeable arrays, which a tuple cannot hold
    if first_invalid(bids) >= 0 or first_invalid(asks) >= 0:
        return INVALID
    apply_side(bid_px, bid_sz, counts[0:3], bids, False)
    apply_side(ask_px, ask_sz, counts[3:6], asks, True)
    if counts[2] > 0 and counts[5] > 0 and bid_px[counts[1] - 1] >= ask_px[counts[4] - 1]:
        return CROSSED
    return APPLIED


@njit(cache=True, inline="always")
def refresh_top(
    bid_px: np.ndarray, bid_sz: np.ndarray, ask_px: np.ndarray, ask_sz: np.ndarray, counts: np.ndarray, top: np.ndarray
) -> bool:
    """Write (bid, bid size, ask, ask size) to ``top`` if it differs from it; return whether it did.

    Leaves ``top`` alone (and returns False) when a side is empty. ``top`` filled with NaN
    differs from every book.
    """
    if counts[2] == 0 or counts[5] == 0:
        return False
    b = counts[1] - 1
    a = counts[4] - 1
    if bid_px[b] == top[0] and bid_sz[b] == top[1] and ask_px[a] == top[2] and ask_sz[a] == top[3]:
        return False
    top[0] = bid_px[b]
    top[1] = bid_sz[b]
    top[2] = ask_px[a]
    top[3] = ask_sz[a]
    return True


@njit(cache=True, inline="always")
def apply_top(
    bid_px: np.ndarray,
    bid_sz: np.ndarray,
    ask_px: np.ndarray,
    ask_sz: np.ndarray,
    counts: np.ndarray,
    bids: np.ndarray,
    asks: np.ndarray,
    top: np.ndarray,
    track_top: bool,
) -> int:
    """The live path's one compiled call per message: room check, :func:`apply_levels`, top of book.

    Returns :data:`NO_ROOM` (nothing applied: grow the arrays and call again), the
    status of :func:`apply_levels`, or, when ``track_top`` is set and the applied book is
    not crossed, :data:`TOP_CHANGED` if :func:`refresh_top` moved ``top``.
    """
    if bid_px.shape[0] - (counts[1] - counts[0]) < bids.shape[0] or ask_px.shape[0] - (counts[4] - counts[3]) < asks.shape[0]:
        return NO_ROOM
    status = apply_levels(bid_px, bid_sz, ask_px, ask_sz, counts, bids, asks)
    if status == APPLIED and track_top and refresh_top(bid_px, bid_sz, ask_px, ask_sz, counts, top):
        return TOP_CHANGED
    return status


@njit(cache=True)
def collect(px: np.ndarray, sz: np.ndarray, lo: int, hi: int, depth: int) -> np.ndarray:
    """The best ``depth`` live levels of one side's ``[lo, hi)``, best first, shape (k, 2)."""
    out = np.empty((max(0, min(depth, hi - lo)), 2), dtype=np.float64)
    k = 0
    r = hi - 1
    while r >= lo and k < out.shape[0]:
        if sz[r] > 0.0:
            out[k, 0] = px[r]
            out[k, 1] = sz[r]
            k += 1
        r -= 1
    return out[:k]


@njit(cache=True)
def load_side(px: np.ndarray, sz: np.ndarray, start: int, levels: np.ndarray, descending: bool) -> int:
    """Write ``levels`` (any order; size-0 rows skipped; a repeated price keeps the last) from ``start``.

    Returns the end index (exclusive). The caller guarantees room for ``len(levels)``.
    Storage order as in :func:`apply_side` (best last).
    """
    n = start
    for i in range(levels.shape[0]):
        price = levels[i, 0]
        size = levels[i, 1]
        if size <= 0.0:
            continue
        j = _find(px, start, n, price, descending)
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
        Initial slots per side; the arrays grow (doubling) when an update could overflow.

    Notes
    -----
    ``store`` is one ``(4, capacity)`` float64 array whose rows ``bid_px``, ``bid_sz``,
    ``ask_px``, ``ask_sz`` are (one argument for a compiled call instead of four).
    ``bid_px``/``bid_sz`` hold the bid slots ascending and ``ask_px``/``ask_sz`` the ask
    slots descending within ``[lo, hi)``; ``counts`` is ``[bid lo, bid hi, bid levels,
    ask lo, ask hi, ask levels]``; a slot with size 0 is a tombstone (see the module
    docstring). The best level of a side is at ``hi - 1``. Use the accessors for
    best-first views. ``last_seq`` is the venue sequence id of the last applied update
    (maintained by :class:`tradebus.adapters.common.sync.BookSync`).
    """

    __slots__ = ("instrument_id", "store", "bid_px", "bid_sz", "ask_px", "ask_sz", "counts", "last_seq", "ts_event")

    def __init__(self, instrument_id: str, capacity: int = 2048) -> None:
        if capacity < 1:
            raise BookError(f"book {instrument_id}: capacity must be >= 1, got {capacity}")
        self.instrument_id = instrument_id
        self._set_store(np.zeros((4, capacity), dtype=np.float64))
        self.counts = np.zeros(6, dtype=np.int64)
        self.last_seq = -1
        self.ts_event = 0

    # ----------------------------------------------------------------- mutation

    def room(self, extra_bids: int, extra_asks: int) -> bool:
        """Whether ``extra_bids``/``extra_asks`` inserts fit without growing."""
        c = self.counts
        return bool(
            self.bid_px.shape[0] - (c[1] - c[0]) >= extra_bids and self.ask_px.shape[0] - (c[4] - c[3]) >= extra_asks
        )

    def reserve(self, extra_bids: int, extra_asks: int) -> None:
        """Grow (and re-centre) the arrays so that ``extra_bids``/``extra_asks`` inserts cannot overflow."""
        c = self.counts
        sides = ((0, 0, extra_bids), (2, 3, extra_asks))  # (first row of the side in store, counts base, extra)
        cap = self.store.shape[1]
        if all(cap - (c[base + 1] - c[base]) >= extra for _, base, extra in sides):
            return
        while any(cap - (c[base + 1] - c[base]) < extra for _, base, extra in sides):
            cap *= 2
        old = self.store
        new = np.zeros((4, cap), dtype=np.float64)
        for row, base, _ in sides:
            lo, hi = int(c[base]), int(c[base + 1])
            new_lo = (cap - (hi - lo)) // 2
            new[row : row + 2, new_lo : new_lo + hi - lo] = old[row : row + 2, lo:hi]
            c[base] = new_lo
            c[base + 1] = new_lo + hi - lo
        self._set_store(new)

    def _set_store(self, store: np.ndarray) -> None:
        """Take ``store`` (rows bid price, bid size, ask price, ask size) and its row views."""
        self.store = store
        self.bid_px, self.bid_sz, self.ask_px, self.ask_sz = store

    def clear(self) -> None:
        """Remove every level."""
        self.counts[:] = 0
        self.last_seq = -1

    def load(self, bids: np.ndarray, asks: np.ndarray, last_seq: int = -1, ts_event: int = 0) -> bool:
        """Replace the whole book with a snapshot; return True if it is crossed.

        ``bids``/``asks`` are float64 arrays of shape (n, 2) (price, size) in any order.
        The levels are placed in the middle of the arrays, leaving free room at both ends.
        """
        bids = _levels(bids, self.instrument_id, "bids")
        asks = _levels(asks, self.instrument_id, "asks")
        self.counts[:] = 0
        self.reserve(2 * bids.shape[0], 2 * asks.shape[0])
        b_lo = (self.bid_px.shape[0] - bids.shape[0]) // 2
        a_lo = (self.ask_px.shape[0] - asks.shape[0]) // 2
        b_hi = load_side(self.bid_px, self.bid_sz, b_lo, bids, False)
        a_hi = load_side(self.ask_px, self.ask_sz, a_lo, asks, True)
        self.counts[:] = (b_lo, b_hi, b_hi - b_lo, a_lo, a_hi, a_hi - a_lo)
        self.last_seq = last_seq
        self.ts_event = ts_event
        return self.crossed()

    def apply(self, bids: np.ndarray, asks: np.ndarray) -> int:
        """Apply one message's level updates (shape (m, 2) float64 each).

        Returns :data:`APPLIED`, :data:`CROSSED` or :data:`INVALID` (see :func:`apply_levels`;
        on INVALID the book is unchanged).

        The arrays must already be float64 (parsers produce them so); anything else
        raises :class:`BookError` rather than silently compiling a new specialisation in
        the hot path. Read-only arrays (a shared empty side, a buffer view) are accepted.
        """
        self._check_levels(bids, asks)
        if not self.room(bids.shape[0], asks.shape[0]):
            self.reserve(bids.shape[0], asks.shape[0])
        return apply_levels(self.bid_px, self.bid_sz, self.ask_px, self.ask_sz, self.counts, bids, asks)

    def apply_top(self, bids: np.ndarray, asks: np.ndarray, top: np.ndarray, track_top: bool = True) -> int:
        """:meth:`apply` fused with the top-of-book check in one compiled call (see :func:`apply_top`).

        ``top`` is a float64 array of 4 holding the last top seen (NaN: none); it is
        updated in place and :data:`TOP_CHANGED` returned when the top moved.
        """
        self._check_levels(bids, asks)
        status = apply_top(self.bid_px, self.bid_sz, self.ask_px, self.ask_sz, self.counts, bids, asks, top, track_top)
        if status == NO_ROOM:
            self.reserve(bids.shape[0], asks.shape[0])
            status = apply_top(self.bid_px, self.bid_sz, self.ask_px, self.ask_sz, self.counts, bids, asks, top, track_top)
        return status

    def _check_levels(self, bids: np.ndarray, asks: np.ndarray) -> None:
        if bids.dtype != np.float64 or asks.dtype != np.float64 or bids.ndim != 2 or asks.ndim != 2:
            raise BookError(
                f"book {self.instrument_id}: level arrays must be float64 of shape (n, 2), "
                f"got {bids.dtype}{bids.shape} / {asks.dtype}{asks.shape}"
            )

    # ------------------------------------------------------------------ queries

    @property
    def n_bids(self) -> int:
        """Number of bid levels."""
        return int(self.counts[2])

    @property
    def n_asks(self) -> int:
        """Number of ask levels."""
        return int(self.counts[5])

    def best_bid(self) -> tuple[float, float]:
        """(price, size) of the best bid, or (NaN, NaN) if there is none."""
        c = self.counts
        if c[2] == 0:
            return float("nan"), float("nan")
        return float(self.bid_px[c[1] - 1]), float(self.bid_sz[c[1] - 1])

    def best_ask(self) -> tuple[float, float]:
        """(price, size) of the best ask, or (NaN, NaN) if there is none."""
        c = self.counts
        if c[5] == 0:
            return float("nan"), float("nan")
        return float(self.ask_px[c[4] - 1]), float(self.ask_sz[c[4] - 1])

    def top_of_book(self) -> tuple[float, float, float, float] | None:
        """(bid, bid size, ask, ask size), or None if a side is empty."""
        c = self.counts
        if c[2] == 0 or c[5] == 0:
            return None
        b = c[1] - 1
        a = c[4] - 1
        return float(self.bid_px[b]), float(self.bid_sz[b]), float(self.ask_px[a]), float(self.ask_sz[a])

    def crossed(self) -> bool:
        """Whether best bid >= best ask (both sides non-empty)."""
        c = self.counts
        return bool(c[2] > 0 and c[5] > 0 and self.bid_px[c[1] - 1] >= self.ask_px[c[4] - 1])

    def bids(self, depth: int | None = None) -> np.ndarray:
        """Copy of the top ``depth`` bids (all if None), shape (k, 2), best first."""
        c = self.counts
        return collect(self.bid_px, self.bid_sz, c[0], c[1], c[2] if depth is None else depth)

    def asks(self, depth: int | None = None) -> np.ndarray:
        """Copy of the top ``depth`` asks (all if None), shape (k, 2), best first."""
        c = self.counts
        return collect(self.ask_px, self.ask_sz, c[3], c[4], c[5] if depth is None else depth)

    def top(self, depth: int) -> tuple[np.ndarray, np.ndarray]:
        """(bids, asks) of the top ``depth`` levels each."""
        return self.bids(depth), self.asks(depth)

    def equals(self, other: OrderBook) -> bool:
        """Exact level-by-level equality of both sides (sequence ids are not compared)."""
        if self.n_bids != other.n_bids or self.n_asks != other.n_asks:
            return False
        return bool(np.array_equal(self.bids(), other.bids()) and np.array_equal(self.asks(), other.asks()))

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


def warm_up() -> None:
    """Compile (or load from the on-disk cache) the book kernels for the arrays the live path gives them.

    A daemon calls it in its warm-up (:meth:`tradebus.node.daemon.PaperNode.run`), before any socket opens:
    compiled lazily, they ran on the daemon's event loop at its first book message, a cold cache (a first run
    after an install or an upgrade) holding the loop for seconds while the streams and timers waited.
    Level arrays as writable and as read-only float64 (a parser's buffer view, a shared empty side), in every
    pairing of the two sides (a message's bids and asks differ: one side may be the shared empty one): each
    is a specialisation of its own. The raw-text level parser (:func:`~tradebus.adapters.common.raw_levels.warm_up`)
    is compiled with them; a venue's own sequence kernels are its adapter's (``VenueAdapter.warm_up``).
    """
    for bids_writable, asks_writable in product((True, False), repeat=2):
        bids = np.array([[100.0, 1.0], [99.0, 2.0]])
        asks = np.array([[101.0, 1.0], [102.0, 2.0]])
        bids.flags.writeable = bids_writable
        asks.flags.writeable = asks_writable
        book = OrderBook("warm-up", capacity=4)
        book.load(bids, asks)
        book.apply(bids, asks)
        top = np.full(4, np.nan)
        book.apply_top(bids, asks, top)
        refresh_top(book.bid_px, book.bid_sz, book.ask_px, book.ask_sz, book.counts, top)  # BookSync's quotes
        book.top(1)
    first_invalid(np.array([[100.0, 1.0]]))  # a parser's check of its levels (tradebus.adapters.common.parsing)
    raw_levels.warm_up()
