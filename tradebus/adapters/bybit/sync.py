"""Bybit order-book integrity: update-id rules and the crossed-book guard.

Rules, from the Bybit v5 docs "Orderbook" (https://bybit-exchange.github.io/docs/v5/websocket/public/orderbook,
"Process snapshot/delta" and the ``u`` field) and the v5 SBE level-50 guide (which spells
out the same ``u`` rules for the snapshot/delta model):

* After subscribing the first message is a ``snapshot``. **Every** snapshot
  replaces the local book (Bybit re-sends one when its service restarts, on
  extreme bursts, after a precision change; level-1 books re-send one after 3 s
  without change, with an unchanged ``u``).
* A ``delta`` must have ``u == previous u + 1`` (``u`` increases by one per
  message, snapshots included); anything else means lost messages:
  :class:`~tradebus.errors.SequenceGap`. A delta with ``u <= previous u`` is a
  repeat and is also rejected (never applied twice).
* ``u == 1`` means the service restarted: "you'll receive "u"=1, which is a
  snapshot data due to the restart of the service. So please overwrite your
  local orderbook". We therefore treat *any* message with ``u == 1`` as a
  snapshot, even if it is typed ``delta``: the book is cleared and rebuilt from
  its levels, and the continuity check restarts from 1.
* After applying, best bid must be below best ask, else
  :class:`~tradebus.errors.CrossedBook`.

Every mutation is all-or-nothing: a message that fails leaves the book as it was.
"""

from __future__ import annotations

import math
from bisect import bisect_left

import numpy as np

from tradebus.adapters.bybit.schemas import BybitBook
from tradebus.errors import CrossedBook, ParseError, SequenceGap

__all__ = ["BookSide", "BybitBookSync", "check_update_id", "parse_levels"]

Level = tuple[float, float]
_MAX = 1.7976931348623157e308


def parse_levels(raw: list[list[str]], side: str, where: str) -> list[Level]:
    """Validate and convert Bybit levels ``[price, size]`` before anything is mutated.

    Raises
    ------
    ParseError
        A level is not ``[price, size]``, a price is not positive and finite, or a size is negative/non-finite.
    """
    out: list[Level] = []
    for i, level in enumerate(raw):
        if len(level) != 2:
            raise ParseError(f"{where}: {side}[{i}] = {level!r}: expected [price, size]")
        try:
            px = float(level[0])
            sz = float(level[1])
        except ValueError:
            raise ParseError(f"{where}: {side}[{i}] = {level!r}: price and size must be decimal strings") from None
        if not (0.0 < px <= _MAX) or not (0.0 <= sz <= _MAX):
            raise ParseError(f"{where}: {side}[{i}] = {level!r}: expected price > 0 and size >= 0, both finite")
        out.append((px, sz))
    return out


def check_update_id(last_u: int | None, u: int, where: str) -> None:
    """Require ``u == last_u + 1`` for a delta (``u == 1`` is handled as a snapshot by the caller).

    Raises
    ------
    SequenceGap
        No snapshot yet (``last_u is None``) or ``u`` does not follow ``last_u``.
    """
    if last_u is None:
        raise SequenceGap(f"{where}: delta u={u} before any snapshot")
    if u != last_u + 1:
        kind = "repeated/out-of-order" if u <= last_u else "missing"
        raise SequenceGap(f"{where}: delta u={u} after u={last_u}, expected u={last_u + 1} ({kind} messages)")


class BookSide:
    """One side of an L2 book: sorted keys (``price`` for asks, ``-price`` for bids) and ``price -> size``."""

    __slots__ = ("_keys", "_sizes", "_sign")

    def __init__(self, *, descending: bool) -> None:
        self._sign = -1.0 if descending else 1.0
        self._keys: list[float] = []
        self._sizes: dict[float, float] = {}

    def __len__(self) -> int:
        return len(self._keys)

    def get(self, price: float) -> float:
        """Size at ``price`` (0.0 if absent)."""
        return self._sizes.get(price, 0.0)

    def put(self, price: float, size: float) -> None:
        """Set the size at ``price``; 0 removes the level (removing an absent level is a no-op)."""
        sizes = self._sizes
        present = price in sizes
        if size == 0.0:
            if present:
                del self._keys[bisect_left(self._keys, self._sign * price)]
                del sizes[price]
            return
        if not present:
            key = self._sign * price
            keys = self._keys
            keys.insert(bisect_left(keys, key), key)
        sizes[price] = size

    def best(self) -> float:
        """Best price, NaN if empty."""
        return self._sign * self._keys[0] if self._keys else math.nan

    def levels(self, n: int | None = None) -> list[Level]:
        """Best ``n`` (all if ``None``) levels as ``(price, size)``, best first."""
        sign = self._sign
        sizes = self._sizes
        keys = self._keys if n is None else self._keys[:n]
        return [(sign * k, sizes[sign * k]) for k in keys]

    def to_array(self, n: int | None = None) -> np.ndarray:
        """Best ``n`` levels as a float64 ``(n, 2)`` array."""
        levels = self.levels(n)
        return np.array(levels, dtype=np.float64).reshape(len(levels), 2)


class BybitBookSync:
    """The L2 book of one Bybit topic with its update-id rules.

    Parameters
    ----------
    where
        Name used in error messages (``"BYBIT linear orderbook.200.BTCUSDT"``).
    """

    __slots__ = ("bids", "asks", "last_u", "where")

    def __init__(self, where: str) -> None:
        self.bids = BookSide(descending=True)
        self.asks = BookSide(descending=False)
        self.last_u: int | None = None
        self.where = where

    @property
    def has_snapshot(self) -> bool:
        """Whether a snapshot was applied."""
        return self.last_u is not None

    def best_bid(self) -> float:
        """Best bid price (NaN if none)."""
        return self.bids.best()

    def best_ask(self) -> float:
        """Best ask price (NaN if none)."""
        return self.asks.best()

    def state(self) -> tuple[list[Level], list[Level]]:
        """All levels, best first: ``(bids, asks)``; equal states mean identical books."""
        return self.bids.levels(), self.asks.levels()

    def apply_snapshot(self, msg: BybitBook) -> tuple[list[Level], list[Level]]:
        """Replace the book; return the parsed ``(bids, asks)``.

        Raises
        ------
        ParseError
            A level is malformed (book untouched).
        CrossedBook
            The snapshot is crossed (previous book kept).
        """
        bids = parse_levels(msg.b, "b", self.where)
        asks = parse_levels(msg.a, "a", self.where)
        new_bids = BookSide(descending=True)
        new_asks = BookSide(descending=False)
        for px, sz in bids:
            new_bids.put(px, sz)
        for px, sz in asks:
            new_asks.put(px, sz)
        if new_bids.best() >= new_asks.best():
            raise CrossedBook(f"{self.where}: snapshot u={msg.u} is crossed: {new_bids.best()} >= {new_asks.best()}")
        self.bids, self.asks, self.last_u = new_bids, new_asks, msg.u
        return bids, asks

    def apply_delta(self, msg: BybitBook) -> tuple[list[Level], list[Level]]:
        """Apply a delta; return the parsed ``(bids, asks)``.

        Raises
        ------
        ParseError
            A level is malformed (book untouched).
        SequenceGap
            ``u`` does not continue the book (book untouched).
        CrossedBook
            The book would be crossed (delta rolled back).
        """
        bids = parse_levels(msg.b, "b", self.where)
        asks = parse_levels(msg.a, "a", self.where)
        check_update_id(self.last_u, msg.u, self.where)
        undo: list[tuple[BookSide, float, float]] = []
        for side, levels in ((self.bids, bids), (self.asks, asks)):
            for px, sz in levels:
                undo.append((side, px, side.get(px)))
                side.put(px, sz)
        bb, ba = self.bids.best(), self.asks.best()
        if bb >= ba:
            for side, px, old in reversed(undo):
                side.put(px, old)
            raise CrossedBook(f"{self.where}: delta u={msg.u} crosses the book: best bid {bb} >= best ask {ba}")
        self.last_u = msg.u
        return bids, asks
