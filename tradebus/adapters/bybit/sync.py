"""Bybit order-book integrity: the update-id rule, as a :class:`SequenceRule`.

The book itself is the common Numba :class:`~tradebus.adapters.common.book.OrderBook`,
kept by a :class:`~tradebus.adapters.common.sync.BookSync` (see
:mod:`tradebus.adapters.common.stream_books`: a failed book is resynced by
resubscribing its topic, Bybit then sends a fresh snapshot). Rules, from the Bybit v5
docs "Orderbook" (https://bybit-exchange.github.io/docs/v5/websocket/public/orderbook,
"Process snapshot/delta" and the ``u`` field) and the v5 SBE level-50 guide (which
spells out the same ``u`` rules for the snapshot/delta model):

* After subscribing the first message is a ``snapshot``. **Every** snapshot replaces
  the local book (Bybit re-sends one when its service restarts, on extreme bursts,
  after a precision change; level-1 books re-send one after 3 s without change, with
  an unchanged ``u``): :meth:`BybitRule.reset` restarts the chain from its ``u``.
* A ``delta`` must have ``u == previous u + 1`` (``u`` increases by one per message,
  snapshots included); anything else -- a missing message, or a repeat with
  ``u <= previous u`` that must never be applied twice -- is a gap: resync.
* ``u == 1`` means the service restarted: "you'll receive "u"=1, which is a snapshot
  data due to the restart of the service. So please overwrite your local orderbook".
  Any message with ``u == 1`` is therefore a snapshot, even if typed ``delta``
  (:func:`is_snapshot`): the book is rebuilt from its levels and the chain restarts from 1.
* After applying, best bid must be below best ask (checked by the BookSync).
"""

from __future__ import annotations

from typing import Any

from tradebus.adapters.common.sync import SequenceRule, Verdict
from tradebus.engine.messages import BookDelta, BookSnapshot

__all__ = ["BybitRule", "is_snapshot"]


def is_snapshot(frame_type: str, u: int) -> bool:
    """Whether a book message replaces the book: a ``snapshot``, or any message with ``u == 1`` (service restart)."""
    return frame_type == "snapshot" or u == 1


class BybitRule(SequenceRule):
    """The ``u`` chain of one Bybit book (see the module docstring).

    Parameters
    ----------
    where
        Name of the book in failure reasons (``"BYBIT linear orderbook.200.BTCUSDT"``).

    Attributes
    ----------
    last
        ``u`` of the last message in the book.
    """

    name = "bybit"

    def __init__(self, where: str) -> None:
        self.where = where
        self.last = -1

    def reset(self, snapshot: BookSnapshot, extra: Any = None) -> None:
        self.last = snapshot.last_seq

    def check(self, delta: BookDelta) -> Verdict:
        return Verdict.APPLY if delta.last_seq == self.last + 1 else Verdict.GAP

    def advance(self, delta: BookDelta) -> None:
        self.last = delta.last_seq

    def gap_reason(self, delta: BookDelta) -> str:
        u = delta.last_seq
        kind = "repeated/out-of-order" if u <= self.last else "missing"
        return f"{self.where}: delta u={u} after u={self.last}, expected u={self.last + 1} ({kind} messages)"
