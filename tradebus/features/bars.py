"""Bars built from trades: time, tick, volume and dollar bars, one step kernel for live and batch.

:class:`BarBuilder` keeps one state vector. :meth:`BarBuilder.update` feeds one trade
and returns the bar it completes (or ``None``); :meth:`BarBuilder.run` feeds a whole
array of trades in one compiled loop. Both call the same ``@njit`` step function, so
the bars they produce are bit-identical (``np.array_equal``), however the trades are
split between the two.

Rules (no lookahead: a bar is known only once a trade shows it is over):

* ``time``: the bar of ``[k * interval, (k + 1) * interval)`` is emitted when the
  first trade at or after its end arrives, stamped ``ts_event = (k + 1) * interval``
  (its close, as catalog bars). Intervals without a trade give no bar.
* ``tick``: every ``threshold`` trades, stamped with the last trade's time.
* ``volume`` / ``dollar``: when the bar's summed size / ``price * size`` reaches
  ``threshold``; the trade that reaches it belongs to the bar (trades are not split),
  stamped with its time.

The step helpers are inlined (``inline="always"``) into the batch loop and into the
one-trade wrapper: called as functions, the reference counting of their array
arguments cost far more than the step itself (measured in ``bench/data.py``).

Each bar: ``ts_event`` (int64 ns) and the floats ``open, high, low, close, volume, vwap,
trades, buy_volume, sell_volume`` (aggressor 1 buy, -1 sell, 0 counted in neither). :meth:`flush` emits the
unfinished bar at the end of a history, if asked.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from tradebus.errors import FeatureError

__all__ = ["BAR_FIELDS", "BarBuilder"]

BAR_FIELDS = ("ts_event", "open", "high", "low", "close", "volume", "vwap", "trades", "buy_volume", "sell_volume")
_MODES = {"time": 0, "tick": 1, "volume": 2, "dollar": 3}
# state: 0 open, 1 high, 2 low, 3 close, 4 volume, 5 notional, 6 trades, 7 buy, 8 sell, 9 has a bar started (0/1);
# clock (int64, ns timestamps do not fit a float64 exactly): 0 bucket end (time bars), 1 last trade ts
_STATE = 10
_F = len(BAR_FIELDS) - 1  # the float fields; ts_event goes to its own int64 array


@njit(cache=True, inline="always")
def _emit(state: np.ndarray, out: np.ndarray, out_ts: np.ndarray, row: int, ts: int) -> None:
    out_ts[row] = ts
    out[row, 0] = state[0]
    out[row, 1] = state[1]
    out[row, 2] = state[2]
    out[row, 3] = state[3]
    out[row, 4] = state[4]
    out[row, 5] = state[5] / state[4] if state[4] > 0.0 else state[3]
    out[row, 6] = state[6]
    out[row, 7] = state[7]
    out[row, 8] = state[8]
    state[9] = 0.0


@njit(cache=True, inline="always")
def _add(state: np.ndarray, clock: np.ndarray, ts: int, price: float, size: float, aggressor: float) -> None:
    if state[9] == 0.0:
        state[0] = price
        state[1] = price
        state[2] = price
        state[4] = 0.0
        state[5] = 0.0
        state[6] = 0.0
        state[7] = 0.0
        state[8] = 0.0
        state[9] = 1.0
    state[1] = max(state[1], price)
    state[2] = min(state[2], price)
    state[3] = price
    state[4] += size
    state[5] += price * size
    state[6] += 1.0
    # branchless: the side of a trade is a coin flip, a branch on it mispredicts half the time
    state[7] += size * (aggressor > 0.0)
    state[8] += size * (aggressor < 0.0)
    clock[1] = ts


@njit(cache=True, inline="always")
def _step(state: np.ndarray, clock: np.ndarray, out: np.ndarray, out_ts: np.ndarray, row: int, ts: int, price: float,
          size: float, aggressor: float, mode: int, threshold: float, interval: int) -> int:
    """Feed one trade; write the bar it completes at row ``row`` and return 1 (else 0)."""
    emitted = 0
    if mode == 0:
        if state[9] == 1.0 and ts >= clock[0]:
            _emit(state, out, out_ts, row, clock[0])
            emitted = 1
        if state[9] == 0.0:
            clock[0] = (ts // interval + 1) * interval
        _add(state, clock, ts, price, size, aggressor)
        return emitted
    _add(state, clock, ts, price, size, aggressor)
    if mode == 1:
        done = state[6] >= threshold
    elif mode == 2:
        done = state[4] >= threshold
    else:
        done = state[5] >= threshold
    if done:
        _emit(state, out, out_ts, row, ts)
        return 1
    return 0


@njit(cache=True)
def _update(state: np.ndarray, clock: np.ndarray, out: np.ndarray, out_ts: np.ndarray, ts: int, price: float,
            size: float, aggressor: float, mode: int, threshold: float, interval: int) -> int:
    """One trade from Python: the same inlined :func:`_step` as :func:`_run`, at row 0."""
    return _step(state, clock, out, out_ts, 0, ts, price, size, aggressor, mode, threshold, interval)


@njit(cache=True)
def _flush(state: np.ndarray, out: np.ndarray, out_ts: np.ndarray, ts: int) -> None:
    _emit(state, out, out_ts, 0, ts)


@njit(cache=True)
def _run(state: np.ndarray, clock: np.ndarray, out: np.ndarray, out_ts: np.ndarray, ts: np.ndarray,
         price: np.ndarray, size: np.ndarray, aggressor: np.ndarray, mode: int, threshold: float, interval: int) -> int:
    rows = 0
    for i in range(ts.size):
        rows += _step(state, clock, out, out_ts, rows, ts[i], price[i], size[i], aggressor[i], mode, threshold, interval)
    return rows


class BarBuilder:
    """Build bars from trades, live (:meth:`update`) or in batch (:meth:`run`), bit-identically.

    Parameters
    ----------
    mode
        ``"time"``, ``"tick"``, ``"volume"`` or ``"dollar"``.
    interval_ns
        Bar length (time bars).
    threshold
        Trades per bar (tick), size per bar (volume) or ``price * size`` per bar (dollar).

    Examples
    --------
    >>> b = BarBuilder("tick", threshold=2)
    >>> b.update(1, 10.0, 1.0) is None, b.update(2, 11.0, 1.0)[1][3]  # close
    (True, 11.0)
    """

    def __init__(self, mode: str, *, interval_ns: int | None = None, threshold: float | None = None) -> None:
        if mode not in _MODES:
            raise FeatureError(f"bar mode {mode!r} is not one of {sorted(_MODES)}")
        if mode == "time" and (interval_ns is None or interval_ns <= 0):
            raise FeatureError("time bars need interval_ns > 0")
        if mode != "time" and (threshold is None or not threshold > 0):
            raise FeatureError(f"{mode} bars need threshold > 0")
        self.mode = mode
        self._mode = _MODES[mode]
        self._interval = int(interval_ns or 1)
        self._threshold = float(threshold or 0.0)
        self._state = np.zeros(_STATE)
        self._clock = np.zeros(2, dtype=np.int64)
        self._one = np.empty((1, _F))
        self._one_ts = np.empty(1, dtype=np.int64)

    def update(self, ts: int, price: float, size: float, aggressor: int = 0) -> tuple[int, np.ndarray] | None:
        """Feed one trade; return the bar it completes, ``(ts_event, values)``, or ``None``.

        ``values`` are the float fields of :data:`BAR_FIELDS` after ``ts_event``.
        """
        if _update(self._state, self._clock, self._one, self._one_ts, int(ts), float(price), float(size),
                   float(aggressor), self._mode, self._threshold, self._interval):
            return int(self._one_ts[0]), self._one[0].copy()
        return None

    def run(
        self, ts: np.ndarray, price: np.ndarray, size: np.ndarray, aggressor: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Feed many trades; return the bars they complete: ``ts_event`` (int64) and values ``(n, 9)``."""
        ts = np.ascontiguousarray(ts, dtype=np.int64)
        price = np.ascontiguousarray(price, dtype=np.float64)
        size = np.ascontiguousarray(size, dtype=np.float64)
        side = np.zeros(ts.size) if aggressor is None else np.ascontiguousarray(aggressor, dtype=np.float64)
        if not (ts.size == price.size == size.size == side.size):
            raise FeatureError("bar builder: ts, price, size and aggressor must have one length")
        out = np.empty((ts.size, _F))
        out_ts = np.empty(ts.size, dtype=np.int64)
        rows = _run(self._state, self._clock, out, out_ts, ts, price, size, side, self._mode, self._threshold,
                    self._interval)
        return out_ts[:rows].copy(), out[:rows].copy()

    def flush(self) -> tuple[int, np.ndarray] | None:
        """Emit the unfinished bar (time bars: stamped at its bucket end; others: at its last trade)."""
        if self._state[9] == 0.0:
            return None
        stamp = self._clock[0] if self._mode == 0 else self._clock[1]
        _flush(self._state, self._one, self._one_ts, stamp)
        return int(self._one_ts[0]), self._one[0].copy()
