"""OKX order-book integrity: sequence rules, CRC32 checksum, crossed-book guard.

The rules implemented here come from the OKX v5 API docs, "Order book channel"
(https://www.okx.com/docs-v5/en/#order-book-trading-market-data-ws-order-book-channel),
sections *Sequence ID* and *Checksum*:

Sequence (``books``, ``books-l2-tbt``, ``books50-l2-tbt``)
    * A snapshot has ``prevSeqId == -1``; its ``seqId`` starts the chain.
    * An update must have ``prevSeqId`` equal to the ``seqId`` of the previous
      message, otherwise a message was lost: :class:`~tradebus.errors.SequenceGap`.
    * Heartbeat: after ~60 s without changes OKX sends an update with empty
      ``bids``/``asks`` and ``prevSeqId == seqId == previous seqId``. It is
      accepted and changes nothing. ``prevSeqId == seqId`` *with* levels is not
      a documented case and is treated as a gap.
    * Reset: during maintenance OKX may send an update whose ``seqId`` is
      *smaller* than its ``prevSeqId``; it is accepted (its ``prevSeqId`` must
      still match) and the chain continues from the new ``seqId``.
    * Frames without ``seqId`` (OKX before mid-2022, e.g. the 2022-05-13
      capture in the test fixtures) are not sequence-checked; the checksum then
      guards the book alone.

Checksum
    After applying a message, take the best 25 bids and 25 asks and build
    ``bid1px:bid1sz:ask1px:ask1sz:bid2px:...`` from the *original strings*
    (``"0.5000"`` stays ``"0.5000"``); when one side has fewer than 25 levels
    the missing entries are skipped. The CRC32 of that string, as a signed
    32-bit integer, must equal ``checksum``. OKX announced in 2026 that the
    field will be deprecated and always sent as ``0``; a ``0`` (or absent)
    checksum is therefore not verified -- a genuine CRC of 0 has probability
    2**-32 and ``seqId`` still guards those messages.

Every check runs with rollback: a message that fails leaves the book exactly as
it was before the message (tested level by level), and the caller resynchronises
by resubscribing, which makes OKX send a fresh snapshot.
"""

from __future__ import annotations

import math
import zlib
from bisect import bisect_left
from collections.abc import Sequence

import numpy as np

from tradebus.adapters.okx.schemas import OkxBook
from tradebus.errors import ChecksumMismatch, CrossedBook, ParseError, SequenceGap

__all__ = [
    "CHECKSUM_DEPTH",
    "OkxBookSync",
    "RawBookSide",
    "check_sequence",
    "okx_checksum",
    "parse_levels",
]

CHECKSUM_DEPTH = 25
"""Levels per side covered by the OKX checksum."""

Level = tuple[float, float, str, str]
"""A parsed level: price, size, and the raw price and size strings."""

_MAX = 1.7976931348623157e308


def okx_checksum(bids: Sequence[tuple[str, str]], asks: Sequence[tuple[str, str]]) -> int:
    """Signed CRC32 of the best 25 levels per side, interleaved bid/ask.

    Parameters
    ----------
    bids, asks
        ``(price_string, size_string)`` pairs, best first. Only the first
        :data:`CHECKSUM_DEPTH` of each are used.

    Returns
    -------
    int
        The CRC32 as OKX sends it: a signed 32-bit integer.

    Examples
    --------
    The OKX docs' example: bids ``[["3366.1","7"]]``, asks
    ``[["3366.8","9"],["3368","8"],["3372","8"]]`` check the string
    ``"3366.1:7:3366.8:9:3368:8:3372:8"``.
    """
    nb = min(len(bids), CHECKSUM_DEPTH)
    na = min(len(asks), CHECKSUM_DEPTH)
    parts: list[str] = []
    append = parts.append
    for i in range(max(nb, na)):
        if i < nb:
            append(bids[i][0])
            append(bids[i][1])
        if i < na:
            append(asks[i][0])
            append(asks[i][1])
    crc = zlib.crc32(":".join(parts).encode("ascii"))
    return crc - 0x100000000 if crc & 0x80000000 else crc


def parse_levels(raw: list[list[str]], side: str, where: str) -> list[Level]:
    """Validate and convert OKX levels ``[price, size, "0", orders]`` before anything is mutated.

    Raises
    ------
    ParseError
        A level is not a list of at least two strings, a price is not a
        positive finite number, or a size is not a finite number >= 0.
    """
    out: list[Level] = []
    for i, level in enumerate(raw):
        if len(level) < 2:
            raise ParseError(f"{where}: {side}[{i}] = {level!r}: expected [price, size, ...]")
        px_s = level[0]
        sz_s = level[1]
        try:
            px = float(px_s)
            sz = float(sz_s)
        except ValueError:
            raise ParseError(f"{where}: {side}[{i}] = {level!r}: price and size must be decimal strings") from None
        if not (0.0 < px <= _MAX) or not (0.0 <= sz <= _MAX):
            raise ParseError(f"{where}: {side}[{i}] = {level!r}: expected price > 0 and size >= 0, both finite")
        out.append((px, sz, px_s, sz_s))
    return out


def check_sequence(last_seq: int | None, prev_seq: int | None, seq: int | None, n_levels: int, where: str) -> None:
    """Apply the OKX ``seqId``/``prevSeqId`` rules to one update (see module docstring).

    Parameters
    ----------
    last_seq
        ``seqId`` of the last message applied to the book (``None`` if unknown).
    prev_seq, seq
        ``prevSeqId`` and ``seqId`` of the incoming update (``None`` if absent).
    n_levels
        Number of bid + ask levels in the update.
    where
        Context for the error message (instrument, channel).

    Raises
    ------
    SequenceGap
        ``prevSeqId`` does not continue the chain, or a same-id message carries levels.
    """
    if seq is None or prev_seq is None or last_seq is None:
        return
    if prev_seq != last_seq:
        raise SequenceGap(f"{where}: prevSeqId {prev_seq} != last seqId {last_seq} (seqId {seq}): messages were lost")
    if seq == prev_seq and n_levels:
        raise SequenceGap(f"{where}: seqId == prevSeqId == {seq} but the update carries {n_levels} levels")


class RawBookSide:
    """One side of an L2 book that keeps OKX's raw price/size strings.

    Prices are kept sorted best-first (a sorted list of keys: ``price`` for
    asks, ``-price`` for bids) next to a dict ``price -> (price_str, size_str,
    size)``. A 400-level side makes an insert a ~400-pointer memmove, far below
    the cost of parsing the frame.
    """

    __slots__ = ("_keys", "_levels", "_sign")

    def __init__(self, *, descending: bool) -> None:
        self._sign = -1.0 if descending else 1.0
        self._keys: list[float] = []
        self._levels: dict[float, tuple[str, str, float]] = {}

    def __len__(self) -> int:
        return len(self._keys)

    def get(self, price: float) -> tuple[str, str, float] | None:
        """The level at ``price`` or ``None``."""
        return self._levels.get(price)

    def put(self, price: float, entry: tuple[str, str, float] | None) -> None:
        """Set the level at ``price`` to ``entry`` (``None`` or size 0 removes it)."""
        levels = self._levels
        present = price in levels
        if entry is None or entry[2] == 0.0:
            if present:
                key = self._sign * price
                del self._keys[bisect_left(self._keys, key)]
                del levels[price]
            return
        if not present:
            key = self._sign * price
            keys = self._keys
            keys.insert(bisect_left(keys, key), key)
        levels[price] = entry

    def clear(self) -> None:
        """Remove every level."""
        self._keys.clear()
        self._levels.clear()

    def best(self) -> float:
        """Best price, NaN if the side is empty."""
        return self._sign * self._keys[0] if self._keys else math.nan

    def top_raw(self, n: int) -> list[tuple[str, str]]:
        """Raw ``(price_str, size_str)`` of the best ``n`` levels."""
        sign = self._sign
        levels = self._levels
        out = []
        for k in self._keys[:n]:
            entry = levels[sign * k]
            out.append((entry[0], entry[1]))
        return out

    def to_array(self, n: int | None = None) -> np.ndarray:
        """Best ``n`` (all if ``None``) levels as a float64 ``(n, 2)`` array of price, size."""
        sign = self._sign
        keys = self._keys if n is None else self._keys[:n]
        levels = self._levels
        arr = np.empty((len(keys), 2), dtype=np.float64)
        for i, k in enumerate(keys):
            price = sign * k
            arr[i, 0] = price
            arr[i, 1] = levels[price][2]
        return arr


class OkxBookSync:
    """The L2 book of one OKX instrument with its sequence and checksum rules.

    Parameters
    ----------
    where
        Name used in error messages (``"BTC-USDT books"``).
    verify_checksum
        Verify the CRC32 checksum (default ``True``).

    Notes
    -----
    :meth:`apply_snapshot` and :meth:`apply_update` are all-or-nothing: on any
    exception the book is left exactly as before the call.
    """

    __slots__ = ("bids", "asks", "last_seq", "has_snapshot", "verify_checksum", "where", "checked", "_fields")

    def __init__(self, where: str, *, verify_checksum: bool = True) -> None:
        self.bids = RawBookSide(descending=True)
        self.asks = RawBookSide(descending=False)
        self.last_seq: int | None = None
        self.has_snapshot = False
        self.verify_checksum = verify_checksum
        self.where = where
        self.checked = 0
        """Number of messages whose checksum was verified."""
        self._fields = (False, False)
        """Whether the snapshot carried ``checksum`` and ``seqId``: updates must then carry them too."""

    # ------------------------------------------------------------------ queries

    def checksum(self) -> int:
        """The checksum of the current book, computed like OKX does."""
        return okx_checksum(self.bids.top_raw(CHECKSUM_DEPTH), self.asks.top_raw(CHECKSUM_DEPTH))

    def best_bid(self) -> float:
        """Best bid price (NaN if none)."""
        return self.bids.best()

    def best_ask(self) -> float:
        """Best ask price (NaN if none)."""
        return self.asks.best()

    def state(self) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """All raw levels, best first: ``(bids, asks)``; equality of two states means identical books."""
        return self.bids.top_raw(len(self.bids)), self.asks.top_raw(len(self.asks))

    # ---------------------------------------------------------------- mutations

    def apply_snapshot(self, msg: OkxBook) -> tuple[list[Level], list[Level]]:
        """Replace the book with a snapshot; return the parsed ``(bids, asks)``.

        Raises
        ------
        ParseError
            A level is malformed (book untouched).
        ChecksumMismatch, CrossedBook
            The snapshot is inconsistent (previous book restored).
        """
        bids = parse_levels(msg.bids, "bids", self.where)
        asks = parse_levels(msg.asks, "asks", self.where)
        if msg.prevSeqId is not None and msg.prevSeqId != -1:
            raise ParseError(f"{self.where}: snapshot with prevSeqId {msg.prevSeqId}, expected -1")
        saved = (self.bids, self.asks, self.last_seq, self.has_snapshot)
        self.bids = RawBookSide(descending=True)
        self.asks = RawBookSide(descending=False)
        for px, sz, px_s, sz_s in bids:
            self.bids.put(px, (px_s, sz_s, sz))
        for px, sz, px_s, sz_s in asks:
            self.asks.put(px, (px_s, sz_s, sz))
        try:
            self._verify(msg.checksum)
        except (ChecksumMismatch, CrossedBook):
            self.bids, self.asks, self.last_seq, self.has_snapshot = saved
            raise
        self.last_seq = msg.seqId
        self.has_snapshot = True
        self._fields = (msg.checksum is not None, msg.seqId is not None)
        return bids, asks

    def apply_update(self, msg: OkxBook) -> tuple[list[Level], list[Level]]:
        """Apply an incremental update; return the parsed ``(bids, asks)`` (both empty for a heartbeat).

        Raises
        ------
        ParseError
            A level is malformed, or the update lacks the ``checksum``/``seqId``
            fields its snapshot had (book untouched).
        SequenceGap
            No snapshot yet, or the ``seqId`` chain is broken (book untouched).
        ChecksumMismatch, CrossedBook
            The book after the update disagrees with OKX (update rolled back).
        """
        if not self.has_snapshot:
            raise SequenceGap(f"{self.where}: update before any snapshot")
        has_checksum, has_seq = self._fields
        if has_checksum and msg.checksum is None:
            raise ParseError(f"{self.where}: update without 'checksum' although the snapshot had one")
        if has_seq and (msg.seqId is None or msg.prevSeqId is None):
            raise ParseError(f"{self.where}: update without 'seqId'/'prevSeqId' although the snapshot had them")
        bids = parse_levels(msg.bids, "bids", self.where)
        asks = parse_levels(msg.asks, "asks", self.where)
        check_sequence(self.last_seq, msg.prevSeqId, msg.seqId, len(bids) + len(asks), self.where)
        undo: list[tuple[RawBookSide, float, tuple[str, str, float] | None]] = []
        for side, levels in ((self.bids, bids), (self.asks, asks)):
            for px, sz, px_s, sz_s in levels:
                undo.append((side, px, side.get(px)))
                side.put(px, (px_s, sz_s, sz))
        try:
            self._verify(msg.checksum)
        except (ChecksumMismatch, CrossedBook):
            for side, px, old in reversed(undo):
                side.put(px, old)
            raise
        if msg.seqId is not None:
            self.last_seq = msg.seqId
        return bids, asks

    def _verify(self, expected: int | None) -> None:
        bb = self.bids.best()
        ba = self.asks.best()
        if bb >= ba:
            raise CrossedBook(f"{self.where}: best bid {bb} >= best ask {ba}")
        if self.verify_checksum and expected:
            got = self.checksum()
            if got != expected:
                raise ChecksumMismatch(f"{self.where}: checksum {got} of the local book != OKX checksum {expected}")
            self.checked += 1
