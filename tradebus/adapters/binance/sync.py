"""Binance diff-depth sequence rules: the checks a delta passes before it is applied to a book.

The state machine that uses them is :class:`~tradebus.adapters.common.sync.BookSync`.
Each rule has a compiled twin (:func:`_forward`, selected by the rule's
:class:`DiffDepthKind`) that :meth:`BinanceRule.fast_forward` runs over recorded batches
(:meth:`BookSync.fast_forward <tradebus.adapters.common.sync.BookSync.fast_forward>`),
and a compiled live step (:func:`_step`, :meth:`BinanceRule.live_step`) that
:meth:`BookSync.on_delta <tradebus.adapters.common.sync.BookSync.on_delta>` calls once
per delta.
"""

from __future__ import annotations

from enum import IntEnum
from functools import cache
from typing import Any, ClassVar

import numpy as np
from numba import njit, types

from tradebus.adapters.common.book import APPLIED, CROSSED, TOP_CHANGED, OrderBook, apply_levels, apply_top
from tradebus.adapters.common.sync import DROPPED, GAPPED, DeltaBatch, LiveStep, SequenceRule, Verdict
from tradebus.engine.messages import BookDelta, BookSnapshot

__all__ = ["BinanceFuturesRule", "BinanceRule", "BinanceSpotRule", "DiffDepthKind", "warm_up"]


class DiffDepthKind(IntEnum):
    """Which Binance diff-depth rule a compiled fast-forward follows."""

    SPOT = 0
    """``U <= previous u + 1 <= u`` (:class:`BinanceSpotRule`)."""
    FUTURES = 1
    """``pu == previous u`` (:class:`BinanceFuturesRule`)."""


_SPOT = int(DiffDepthKind.SPOT)  # a plain int: a compile-time constant of the compiled loop

# slots of the ``rule_state`` array the compiled loop reads and advances
_LAST_ID = 0
_IS_FIRST = 1
_KIND = 2  # read by the live step only; the batch loop takes the kind as an argument


_APPLY, _DROP, _GAP = int(Verdict.APPLY), int(Verdict.DROP), int(Verdict.GAP)


@njit(cache=True, inline="always")
def _judge(first_seq: int, last_seq: int, prev_seq: int, kind: int, rule_state: np.ndarray) -> int:
    """The :class:`Verdict` (as an int) of a delta under the Binance rule ``kind`` at ``rule_state``."""
    last_id = rule_state[_LAST_ID]
    is_first = rule_state[_IS_FIRST] == 1
    if kind == _SPOT:
        if last_seq <= last_id:
            return _DROP
        ok = first_seq <= last_id + 1
    else:
        if is_first:
            if last_seq < last_id:
                return _DROP
            ok = first_seq <= last_id <= last_seq
        else:
            if last_seq <= last_id:
                return _DROP
            ok = prev_seq == last_id
    return _APPLY if ok else _GAP


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
        u = last[i]
        verdict = _judge(first[i], u, prev[i], kind, rule_state)
        if verdict == _DROP:
            continue
        if verdict == _GAP:
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


@njit(cache=True, _nrt=False)
def _step(
    store: np.ndarray,
    counts: np.ndarray,
    rule_state: np.ndarray,
    bids: np.ndarray,
    asks: np.ndarray,
    top: np.ndarray,
    track_top: bool,
    first_seq: int,
    last_seq: int,
    prev_seq: int,
) -> int:
    """One live delta under the Binance rule ``rule_state[2]``; see :meth:`SequenceRule.live_step`.

    ``store`` is :attr:`OrderBook.store` (the four side arrays as rows).
    """
    verdict = _judge(first_seq, last_seq, prev_seq, rule_state[_KIND], rule_state)
    if verdict == _DROP:
        return DROPPED
    if verdict == _GAP:
        return GAPPED
    status = apply_top(store[0], store[1], store[2], store[3], counts, bids, asks, top, track_top)
    if status == APPLIED or status == TOP_CHANGED:
        rule_state[_LAST_ID] = last_seq
        rule_state[_IS_FIRST] = 0
    return status


_VEC = types.float64[::1]
_STORE = types.float64[:, ::1]
_LEVELS = types.Array(types.float64, 2, "A")  # any strides: BookSync checks only dtype and ndim
_IDS = types.int64[::1]
_STEP_SIG = (_STORE, _IDS, _IDS, _LEVELS, _LEVELS, _VEC, types.boolean, types.int64, types.int64, types.int64)


@cache
def _step_entry() -> LiveStep:
    """:func:`_step`'s compiled entry point for :data:`_STEP_SIG`, called without the dispatcher.

    The dispatcher would type-check every one of the 10 arguments per live message; the
    types are known (the book's and the rule's own contiguous arrays, float64 ``(n, 2)``
    level arrays checked by :meth:`BookSync.on_delta`), so the one overload is compiled
    (or loaded from cache) once and called directly.
    """
    _step.compile(_STEP_SIG)
    return _step.get_overload(_STEP_SIG)  # type: ignore[no-any-return]


class BinanceRule(SequenceRule):
    """What both Binance diff-depth rules share: the position (``last``, ``first``) and the compiled twin."""

    kind: ClassVar[DiffDepthKind]

    def __init__(self) -> None:
        # [last id, 1 if no delta applied since the snapshot, kind]: shared with the compiled twins
        self._kind = int(self.kind)
        self._state = np.array([-1, 1, self._kind], dtype=np.int64)

    @property
    def last(self) -> int:
        """``u`` of the last applied delta, or the snapshot's ``lastUpdateId``."""
        return int(self._state[_LAST_ID])

    @property
    def first(self) -> bool:
        """No delta applied since the snapshot."""
        return bool(self._state[_IS_FIRST])

    def reset(self, snapshot: BookSnapshot, extra: Any = None) -> None:
        self._state[_LAST_ID] = snapshot.last_seq
        self._state[_IS_FIRST] = 1

    def advance(self, delta: BookDelta) -> None:
        self._state[_LAST_ID] = delta.last_seq
        self._state[_IS_FIRST] = 0

    def fast_forward(self, book: OrderBook, batch: DeltaBatch, start: int) -> int:
        state = self._state
        stop = _forward(
            book.bid_px, book.bid_sz, book.ask_px, book.ask_sz, book.counts, batch.levels,
            batch.bid_start, batch.ask_start, batch.end, batch.first, batch.last, batch.prev,
            start, self._kind, state,
        )  # fmt: skip
        if (stop if stop >= 0 else -stop - 1) > start:
            book.last_seq = int(state[_LAST_ID])
        return stop

    def live_step(self) -> tuple[LiveStep, np.ndarray]:
        return _step_entry(), self._state


class BinanceSpotRule(BinanceRule):
    """Binance spot diff-depth rule.

    Drop every delta with ``u <= lastUpdateId``; the first applied delta must have
    ``U <= lastUpdateId + 1 <= u``; each later one ``U <= previous u + 1`` (and ``u >``
    previous ``u``, else it is dropped). Normally ``U == previous u + 1``; an event that
    overlaps ids already applied misses nothing (its levels are absolute quantities as of
    ``u``) and is applied, as Binance's procedure says: only ``U > previous u + 1`` is a
    missed event. ``first_seq`` = ``U``, ``last_seq`` = ``u``.
    """

    name = "binance-spot"
    kind = DiffDepthKind.SPOT

    def check(self, delta: BookDelta) -> Verdict:
        if delta.last_seq <= self.last:
            return Verdict.DROP
        return Verdict.APPLY if delta.first_seq <= self.last + 1 else Verdict.GAP

    def gap_reason(self, delta: BookDelta) -> str:
        return (
            f"sequence gap ({self.name}): expected U <= {self.last + 1} <= u, "
            f"got U={delta.first_seq} u={delta.last_seq}"
        )


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


def warm_up() -> None:
    """Compile (or load from the on-disk cache) :func:`_step`, the Binance live delta kernel.

    The Binance adapter's ``VenueAdapter.warm_up`` (:func:`tradebus.adapters.registry.warm_up`): compiled
    lazily, it ran on a daemon's event loop when its books were made, on a cold cache holding the loop while
    the depth snapshot requests timed out. The book kernels it calls are :func:`tradebus.adapters.common.book.warm_up`'s.
    """
    _step_entry()
