"""Binance diff-depth sequence rules: the checks a delta passes before it is applied to a book.

The state machine that uses them is :class:`~tradebus.adapters.common.sync.BookSync`;
their compiled twins (``kernel_id``) drive its fast-forward of recorded batches.
"""

from __future__ import annotations

from typing import Any

from tradebus.adapters.common.sync import SequenceRule, Verdict
from tradebus.engine.messages import BookDelta, BookSnapshot

__all__ = ["BinanceFuturesRule", "BinanceSpotRule"]


class BinanceSpotRule(SequenceRule):
    """Binance spot diff-depth rule.

    Drop every delta with ``u <= lastUpdateId``; the first applied delta must have
    ``U <= lastUpdateId + 1 <= u``; each later one ``U == previous u + 1``.
    ``first_seq`` = ``U``, ``last_seq`` = ``u``.
    """

    name = "binance-spot"
    kernel_id = 0

    def __init__(self) -> None:
        self.last = -1
        self.first = True

    def reset(self, snapshot: BookSnapshot, extra: Any = None) -> None:
        self.last = snapshot.last_seq
        self.first = True

    def check(self, delta: BookDelta) -> Verdict:
        if delta.last_seq <= self.last:
            return Verdict.DROP
        if self.first:
            ok = delta.first_seq <= self.last + 1 <= delta.last_seq
        else:
            ok = delta.first_seq == self.last + 1
        return Verdict.APPLY if ok else Verdict.GAP

    def advance(self, delta: BookDelta) -> None:
        self.last = delta.last_seq
        self.first = False

    def gap_reason(self, delta: BookDelta) -> str:
        if self.first:
            want = f"U <= {self.last + 1} <= u"
        else:
            want = f"U == {self.last + 1}"
        return f"sequence gap ({self.name}): expected {want}, got U={delta.first_seq} u={delta.last_seq}"


class BinanceFuturesRule(SequenceRule):
    """Binance USD-M / COIN-M diff-depth rule.

    Drop every delta with ``u < lastUpdateId``; the first applied delta must have
    ``U <= lastUpdateId <= u``; each later one ``pu == previous u``. Once synced, a delta
    with ``u <= previous u`` (a repeat) is dropped. ``first_seq`` = ``U``,
    ``last_seq`` = ``u``, ``prev_seq`` = ``pu``.
    """

    name = "binance-futures"
    kernel_id = 1

    def __init__(self) -> None:
        self.last = -1
        self.first = True

    def reset(self, snapshot: BookSnapshot, extra: Any = None) -> None:
        self.last = snapshot.last_seq
        self.first = True

    def check(self, delta: BookDelta) -> Verdict:
        if self.first:
            if delta.last_seq < self.last:
                return Verdict.DROP
            ok = delta.first_seq <= self.last <= delta.last_seq
        else:
            if delta.last_seq <= self.last:
                return Verdict.DROP
            ok = delta.prev_seq == self.last
        return Verdict.APPLY if ok else Verdict.GAP

    def advance(self, delta: BookDelta) -> None:
        self.last = delta.last_seq
        self.first = False

    def gap_reason(self, delta: BookDelta) -> str:
        if self.first:
            return (
                f"sequence gap ({self.name}): expected U <= {self.last} <= u, "
                f"got U={delta.first_seq} u={delta.last_seq}"
            )
        return f"sequence gap ({self.name}): expected pu == {self.last}, got pu={delta.prev_seq} u={delta.last_seq}"
