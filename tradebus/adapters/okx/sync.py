"""OKX order-book integrity: the seqId rule and the CRC32 checksum, as a :class:`SequenceRule`.

The book itself is the common Numba :class:`~tradebus.adapters.common.book.OrderBook`,
kept by a :class:`~tradebus.adapters.common.sync.BookSync` (see
:mod:`tradebus.adapters.common.stream_books`: a failed book is resynced by
resubscribing, OKX then sends a fresh snapshot). The rules come from the OKX v5 API
docs, "Order book channel"
(https://www.okx.com/docs-v5/en/#order-book-trading-market-data-ws-order-book-channel),
sections *Sequence ID* and *Checksum*:

Sequence (``books``, ``books-l2-tbt``, ``books50-l2-tbt``)
    * A snapshot has ``prevSeqId == -1``; its ``seqId`` starts the chain.
    * An update must have ``prevSeqId`` equal to the ``seqId`` of the previous
      message, otherwise a message was lost: gap, resync.
    * Heartbeat: after ~60 s without changes OKX sends an update with empty
      ``bids``/``asks`` and ``prevSeqId == seqId == previous seqId``. It changes
      nothing and is dropped. ``prevSeqId == seqId`` *with* levels is not a
      documented case and is treated as a gap.
    * Reset: during maintenance OKX may send an update whose ``seqId`` is
      *smaller* than its ``prevSeqId``; it is accepted (its ``prevSeqId`` must
      still match) and the chain continues from the new ``seqId``.
    * Frames without ``seqId`` (OKX before mid-2022, e.g. the 2022-05-13 capture
      in the test fixtures; ``last_seq == -1`` in the core messages) are not
      sequence-checked; the checksum then guards the book alone.

Checksum
    After applying a message, take the best 25 bids and 25 asks and build
    ``bid1px:bid1sz:ask1px:ask1sz:bid2px:...`` from the *original strings*
    (``"0.5000"`` stays ``"0.5000"``); when one side has fewer than 25 levels the
    missing entries are skipped. The CRC32 of that string, as a signed 32-bit
    integer, must equal ``checksum``. OKX announced in 2026 that the field will be
    deprecated and always sent as ``0``; a ``0`` (or absent) checksum is therefore
    not verified -- a genuine CRC of 0 has probability 2**-32 and ``seqId`` still
    guards those messages.

Raw strings: the Numba book holds floats. :class:`OkxRule` keeps, per side, a map
``price -> raw level`` (:class:`~tradebus.adapters.okx.schemas.OkxLevel`, the strings
OKX sent, an object the garbage collector does not track) filled from the same parsed
levels as the book (:class:`OkxLevels`, the ``extra`` payload of each message); the
checksum looks up the raw strings of the book's top 25 prices there.
Entries of removed levels are not deleted on the hot path (a stale entry is never
read: a price back in the book was re-set by the update that brought it back); the
maps are pruned to the book's prices when they grow past twice its size.

A failing check (gap, checksum, crossed book) leaves the book invalid: the BookSync
stops emitting anything of it until the fresh snapshot has been loaded, so no
rollback is needed.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

import msgspec

from tradebus.adapters.common.book import OrderBook
from tradebus.adapters.common.sync import SequenceRule, Verdict
from tradebus.adapters.okx.schemas import OkxLevel
from tradebus.engine.messages import BookDelta, BookSnapshot

__all__ = ["CHECKSUM_DEPTH", "OkxLevels", "OkxRule", "okx_checksum"]

CHECKSUM_DEPTH = 25
"""Levels per side covered by the OKX checksum."""

_PRUNE_SLACK = 256


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
    return _crc(
        [f"{p}:{s}" for p, s in bids[:CHECKSUM_DEPTH]], [f"{p}:{s}" for p, s in asks[:CHECKSUM_DEPTH]]
    )


def _crc(bids: list[str], asks: list[str]) -> int:
    """Signed CRC32 of ``"price:size"`` strings interleaved bid, ask, bid, ... (the longer side's rest last)."""
    n = min(len(bids), len(asks))
    parts = [x for pair in zip(bids, asks) for x in pair]
    parts += bids[n:] or asks[n:]
    crc = zlib.crc32(":".join(parts).encode("ascii"))
    return crc - 0x100000000 if crc & 0x80000000 else crc


class OkxLevels(msgspec.Struct, frozen=True, gc=False):
    """The ``extra`` payload of an OKX book message for :class:`OkxRule`.

    ``checksum`` is the message's (``None`` if absent); ``bids``/``asks`` are its levels
    as OKX's strings, in the order of the message's float levels (``None`` when the
    checksum is not verified).
    """

    checksum: int | None
    bids: list[OkxLevel] | None = None
    asks: list[OkxLevel] | None = None


class OkxRule(SequenceRule):
    """The OKX seqId chain and CRC32 checksum of one book (see the module docstring).

    Parameters
    ----------
    where
        Name of the book in failure reasons (``"OKX BTC-USDT books"``).

    Attributes
    ----------
    last
        ``seqId`` of the last message in the book (-1: the book is not sequenced).
    expects_checksum, expects_seq
        The snapshot carried ``checksum`` / ``seqId``: its updates must carry them too.
    checked
        Messages whose checksum was verified.
    """

    name = "okx"

    def __init__(self, where: str) -> None:
        self.where = where
        self.last = -1
        self.expects_checksum = False
        self.expects_seq = False
        self.checked = 0
        self._bids: dict[float, OkxLevel] = {}
        self._asks: dict[float, OkxLevel] = {}

    def reset(self, snapshot: BookSnapshot, extra: Any = None) -> None:
        self.last = snapshot.last_seq
        self.expects_seq = snapshot.last_seq != -1
        self.expects_checksum = extra is not None and extra.checksum is not None
        if extra is not None and extra.bids is not None:
            self._bids = dict(zip(snapshot.bids[:, 0].tolist(), extra.bids, strict=True))  # type: ignore[index]
            self._asks = dict(zip(snapshot.asks[:, 0].tolist(), extra.asks, strict=True))  # type: ignore[index]
        else:
            self._bids = {}
            self._asks = {}

    def check(self, delta: BookDelta) -> Verdict:
        n = delta.bids.shape[0] + delta.asks.shape[0]  # type: ignore[attr-defined]
        if self.last != -1:
            if delta.prev_seq != self.last:
                return Verdict.GAP
            if delta.last_seq == delta.prev_seq:
                return Verdict.GAP if n else Verdict.DROP  # a heartbeat changes nothing
        return Verdict.APPLY if n else Verdict.DROP

    def advance(self, delta: BookDelta) -> None:
        self.last = delta.last_seq

    def gap_reason(self, delta: BookDelta) -> str:
        if delta.prev_seq != self.last:
            return (
                f"{self.where}: prevSeqId {delta.prev_seq} != last seqId {self.last} "
                f"(seqId {delta.last_seq}): messages were lost"
            )
        n = delta.bids.shape[0] + delta.asks.shape[0]  # type: ignore[attr-defined]
        return f"{self.where}: seqId == prevSeqId == {delta.last_seq} but the update carries {n} levels"

    def verify(self, book: OrderBook, msg: BookDelta | BookSnapshot, extra: Any = None) -> str | None:
        """Keep the raw strings of the levels and check the message's CRC32 (if it has a non-zero one)."""
        if extra is None or extra.bids is None:
            return None
        bids = self._bids
        asks = self._asks
        if isinstance(msg, BookDelta):
            if extra.bids:
                bids.update(zip(msg.bids[:, 0].tolist(), extra.bids))  # type: ignore[index]
            if extra.asks:
                asks.update(zip(msg.asks[:, 0].tolist(), extra.asks))  # type: ignore[index]
            if len(bids) + len(asks) > 2 * (book.n_bids + book.n_asks) + _PRUNE_SLACK:
                self._prune(book)
        expected = extra.checksum
        if not expected:
            return None
        try:
            top_bids = [bids[p] for p in book.bids(CHECKSUM_DEPTH)[:, 0].tolist()]
            top_asks = [asks[p] for p in book.asks(CHECKSUM_DEPTH)[:, 0].tolist()]
        except KeyError as exc:
            return f"{self.where}: no raw strings for price {exc.args[0]!r} of the book"
        got = _crc([f"{lv.px}:{lv.sz}" for lv in top_bids], [f"{lv.px}:{lv.sz}" for lv in top_asks])
        if got != expected:
            return f"{self.where}: checksum {got} of the local book != OKX checksum {expected}"
        self.checked += 1
        return None

    def raw_levels(self, book: OrderBook) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """Every level of ``book`` as OKX's ``(price, size)`` strings, best first: ``(bids, asks)``.

        Raises
        ------
        KeyError
            The raw strings are not kept (checksum not verified) or miss a price.
        """
        bids = self._bids
        asks = self._asks
        return (
            [(bids[p].px, bids[p].sz) for p in book.bids()[:, 0].tolist()],
            [(asks[p].px, asks[p].sz) for p in book.asks()[:, 0].tolist()],
        )

    def _prune(self, book: OrderBook) -> None:
        bids = self._bids
        asks = self._asks
        self._bids = {p: bids[p] for p in book.bids()[:, 0].tolist() if p in bids}
        self._asks = {p: asks[p] for p in book.asks()[:, 0].tolist() if p in asks}
