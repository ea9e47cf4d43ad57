"""Binance diff-depth sequence rules: the checks a delta passes before it is applied to a book.

The state machine that uses them is :class:`~tradebus.adapters.common.sync.BookSync`.
Each rule has a compiled twin (:func:`_forward`, selected by the rule's
:class:`DiffDepthKind`) that :meth:`BinanceRule.fast_forward` runs over recorded batches
(:meth:`BookSync.fast_forward <tradebus.adapters.common.sync.BookSync.fast_forward>`).
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any, ClassVar

import numpy as np
from numba import njit

from tradebus.adapters.common.book import APPLIED, CROSSED, OrderBook, apply_levels
from tradebus.adapters.common.sync import DeltaBatch, SequenceRule, Verdict
from tradebus.engine.messages import BookDelta, BookSnapshot

__all__ = ["BinanceFuturesRule", "BinanceRule", "BinanceSpotRule", "DiffDepthKind"]


class DiffDepthKind(IntEnum):
    """Which Binance diff-depth rule a compiled fast-forward follows."""

    SPOT = 0
    """``U == previous u + 1`` (:class:`BinanceSpotRule`)."""
    FUTURES = 1
    """``pu == previous u`` (:class:`BinanceFuturesRule`)."""


_SPOT = int(DiffDepthKind.SPOT)  # a plain int: a compile-time constant of the compiled loop

# slots of the ``rule_state`` array the compiled loop reads and advances
_LAST_ID = 0
_IS_FIRST = 1


@njit(cache=True)
def _forward(
    bid_px: np.ndarray,
    bid_sz: np.ndarray,
    ask_px: np.ndarray,
    ask_sz: np.ndarray,
    counts: np.ndarray,
    levels: np.ndarray,
    bid_start: np.ndarray,
    ask_start: np.ndarray,
    end: np.ndarray,
    first: np.ndarray,
    last: np.ndarray,
    prev: np.ndarray,
    start: int,
    kind: int,
    rule_state: np.ndarray,
) -> int:
    """Apply messages from ``start`` on under the Binance rule ``kind``; see :meth:`SequenceRule.fast_forward`.

    ``rule_state`` = ``[last id, 1 if no delta applied since the snapshot else 0]``.
    """
    for i in range(start, first.shape[0]):
        last_id = rule_state[_LAST_ID]
        is_first = rule_state[_IS_FIRST] == 1
        u = last[i]
        if kind == _SPOT:
            if u <= last_id:
                continue
            ok = (first[i] <= last_id + 1 <= u) if is_first else (first[i] == last_id + 1)
        else:
            if is_first:
                if u < last_id:
                    continue
                ok = first[i] <= last_id <= u
            else:
                if u <= last_id:
                    continue
                ok = prev[i] == last_id
        if not ok:
            return i
        nb = ask_start[i] - bid_start[i]
        na = end[i] - ask_start[i]
        if bid_px.shape[0] - (counts[1] - counts[0]) < nb or ask_px.shape[0] - (counts[4] - counts[3]) < na:
            return i
        status = apply_levels(
            bid_px, bid_sz, ask_px, ask_sz, counts, levels[bid_start[i] : ask_start[i]], levels[ask_start[i] : end[i]]
        )
        if status == CROSSED:
            # applied, and undoing is not possible here: the rule advances past it and the
            # Python path fails the book (the resync rebuilds everything anyway)
            rule_state[_LAST_ID] = u
            rule_state[_IS_FIRST] = 0
            return -i - 1
        if status != APPLIED:
            # malformed: nothing was applied, so the rule must not advance either; the Python
            # path then sees the same delta as APPLY, fails to apply it and resyncs
            return i
        rule_state[_LAST_ID] = u
        rule_state[_IS_FIRST] = 0
    return first.shape[0]


class BinanceRule(SequenceRule):
    """What both Binance diff-depth rules share: the position (``last``, ``first``) and the compiled twin."""

    kind: ClassVar[DiffDepthKind]

    def __init__(self) -> None:
        self.last = -1
        """``u`` of the last applied delta, or the snapshot's ``lastUpdateId``."""
        self.first = True
        """No delta applied since the snapshot."""

    def reset(self, snapshot: BookSnapshot, extra: Any = None) -> None:
        self.last = snapshot.last_seq
        self.first = True

    def advance(self, delta: BookDelta) -> None:
        self.last = delta.last_seq
        self.first = False

    def fast_forward(self, book: OrderBook, batch: DeltaBatch, start: int) -> int:
        state = np.array([self.last, 1 if self.first else 0], dtype=np.int64)
        stop = _forward(
            book.bid_px, book.bid_sz, book.ask_px, book.ask_sz, book.counts, batch.levels,
            batch.bid_start, batch.ask_start, batch.end, batch.first, batch.last, batch.prev,
            start, int(self.kind), state,
        )  # fmt: skip
        if (stop if stop >= 0 else -stop - 1) > start:
            book.last_seq = int(state[_LAST_ID])
        self.last = int(state[_LAST_ID])
        self.first = bool(state[_IS_FIRST])
        return stop


class BinanceSpotRule(BinanceRule):
    """Binance spot diff-depth rule.

    Drop every delta with ``u <= lastUpdateId``; the first applied delta must have
    ``U <= lastUpdateId + 1 <= u``; each later one ``U == previous u + 1``.
    ``first_seq`` = ``U``, ``last_seq`` = ``u``.
    """

    name = "binance-spot"
    kind = DiffDepthKind.SPOT

    def check(self, delta: BookDelta) -> Verdict:
        if delta.last_seq <= self.last:
            return Verdict.DROP
        if self.first:
            ok = delta.first_seq <= self.last + 1 <= delta.last_seq
        else:
            ok = delta.first_seq == self.last + 1
        return Verdict.APPLY if ok else Verdict.GAP

    def gap_reason(self, delta: BookDelta) -> str:
        if self.first:
            want = f"U <= {self.last + 1} <= u"
        else:
            want = f"U == {self.last + 1}"
        return f"sequence gap ({self.name}): expected {want}, got U={delta.first_seq} u={delta.last_seq}"


class BinanceFuturesRule(BinanceRule):
    """Binance USD-M / COIN-M diff-depth rule.

    Drop every delta with ``u < lastUpdateId``; the first applied delta must have
    ``U <= lastUpdateId <= u``; each later one ``pu == previous u``. Once synced, a delta
    with ``u <= previous u`` (a repeat) is dropped. ``first_seq`` = ``U``,
    ``last_seq`` = ``u``, ``prev_seq`` = ``pu``.
    """

    name = "binance-futures"
    kind = DiffDepthKind.FUTURES

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

    def gap_reason(self, delta: BookDelta) -> str:
        if self.first:
            return (
                f"sequence gap ({self.name}): expected U <= {self.last} <= u, "
                f"got U={delta.first_seq} u={delta.last_seq}"
            )
        return f"sequence gap ({self.name}): expected pu == {self.last}, got pu={delta.prev_seq} u={delta.last_seq}"
