"""Step kernels of the 'ta' group (kind ids 100-199): classic technical-analysis indicators.

Every kernel follows the contract of :mod:`tradebus.features.registry`: it updates
one float64 state row in place (a fresh row is all zeros, ``state[0]`` is the ready
flag) and writes every output slot on every call, NaN while not ready. Outputs are a
pure function of the state, so an event that is skipped (invalid input) leaves the
state untouched and re-emits the current values.

Kinds (id, spec name, inputs -> outputs, reference):

====  ==============  ===========================  ==================================  ==========================
id    name            inputs                       outputs                             reference
====  ==============  ===========================  ==================================  ==========================
100   rsi             x                            value                               ``talib.RSI``
101   macd            x                            macd, signal, hist                  ``talib.MACD``
102   atr             high, low, close             value                               ``talib.ATR``
103   bollinger       x                            mid, upper, lower, pctb, bandwidth  ``talib.BBANDS`` (SMA)
104   stoch           high, low, close             k, d                                ``talib.STOCH`` / ``STOCHF``
105   vwap            close, volume                value                               pandas rolling sums
106   session_vwap    close, volume, time          value                               pandas groupby cumsum
107   obv             close, volume                value                               ``talib.OBV``
108   realized_vol    x                            value                               pandas rolling sum
====  ==============  ===========================  ==================================  ==========================

NaN policy: every kernel here *skips* an event whose inputs are not finite (NaN or
+-inf; for volumes also negative, for ``realized_vol`` also non-positive prices):
the state does not change and the outputs repeat the last values. A gap in the data
therefore never poisons a feature for the rest of a run (TA-Lib, by contrast,
propagates a NaN forever through its recursive averages).

Rolling windows keep their raw values in a ring buffer inside the state row and
maintain shifted running sums (``sum(v - K)``, ``sum((v - K)**2)``). Every
``window`` pushes the sums are recomputed exactly from the buffer with ``K`` moved
to the newest value, so rounding error cannot accumulate over a long live run and
the cost stays O(1) amortised. A window whose values are all identical is detected
exactly (run length of equal values), so a flat market gives a variance of exactly
0 and a zero-volume window a sum of exactly 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from numba import njit

from tradebus.errors import FeatureError
from tradebus.features.kernels.core import ema_coefficient
from tradebus.features.registry import FeatureKind, Param, register

__all__ = [
    "ATR",
    "BOLLINGER",
    "KINDS",
    "MACD",
    "OBV",
    "REALIZED_VOL",
    "RSI",
    "SESSION_VWAP",
    "STOCH",
    "VWAP",
    "atr_step",
    "bollinger_step",
    "dispatch",
    "macd_step",
    "obv_step",
    "realized_vol_step",
    "rsi_step",
    "session_vwap_step",
    "stoch_step",
    "vwap_step",
]

_NAN = np.nan
_MAX_WINDOW = 1_000_000.0

# --------------------------------------------------------------------------------------
# Ring buffer with shifted running moments, stored in a state row at offset ``o``.
# Layout: count, head (next write slot), shift K, S1 = sum(v - K), S2 = sum((v - K)**2),
# pushes since the last exact recompute, run length of identical trailing values,
# then ``w`` raw values.
# --------------------------------------------------------------------------------------
_R_N = 0
_R_HEAD = 1
_R_K = 2
_R_S1 = 3
_R_S2 = 4
_R_PUSHES = 5
_R_RUN = 6
_R_BUF = 7


def _ring_size(window: int) -> int:
    return _R_BUF + window


@njit(cache=True, _nrt=False)
def _ring_push(state: np.ndarray, o: int, w: int, v: float) -> None:
    """Append ``v`` to the ring at ``o`` (capacity ``w``), evicting the oldest value when full."""
    n = int(state[o + _R_N])
    head = int(state[o + _R_HEAD])
    if n == 0:
        state[o + _R_K] = v
        state[o + _R_RUN] = 1.0
    else:
        newest = head - 1 if head > 0 else w - 1
        if state[o + _R_BUF + newest] == v:
            run = state[o + _R_RUN] + 1.0
            state[o + _R_RUN] = run if run < w else float(w)
        else:
            state[o + _R_RUN] = 1.0
    k = state[o + _R_K]
    if n == w:
        d_old = state[o + _R_BUF + head] - k
        state[o + _R_S1] -= d_old
        state[o + _R_S2] -= d_old * d_old
    else:
        state[o + _R_N] = n + 1.0
    d = v - k
    state[o + _R_S1] += d
    state[o + _R_S2] += d * d
    state[o + _R_BUF + head] = v
    head += 1
    state[o + _R_HEAD] = 0.0 if head == w else float(head)
    pushes = state[o + _R_PUSHES] + 1.0
    if pushes >= w:
        # Exact recompute, shifted to the newest value (the ring is full here).
        k = v
        s1 = 0.0
        s2 = 0.0
        for i in range(w):
            d = state[o + _R_BUF + i] - k
            s1 += d
            s2 += d * d
        state[o + _R_K] = k
        state[o + _R_S1] = s1
        state[o + _R_S2] = s2
        state[o + _R_PUSHES] = 0.0
    else:
        state[o + _R_PUSHES] = pushes


@njit(cache=True, _nrt=False)
def _ring_newest(state: np.ndarray, o: int, w: int) -> float:
    head = int(state[o + _R_HEAD])
    return state[o + _R_BUF + (head - 1 if head > 0 else w - 1)]


@njit(cache=True, _nrt=False)
def _ring_full(state: np.ndarray, o: int, w: int) -> bool:
    return state[o + _R_N] >= w


@njit(cache=True, _nrt=False)
def _ring_sum(state: np.ndarray, o: int, w: int) -> float:
    n = state[o + _R_N]
    if state[o + _R_RUN] >= n:
        return n * _ring_newest(state, o, w)
    return n * state[o + _R_K] + state[o + _R_S1]


@njit(cache=True, _nrt=False)
def _ring_mean(state: np.ndarray, o: int, w: int) -> float:
    n = state[o + _R_N]
    if state[o + _R_RUN] >= n:
        return _ring_newest(state, o, w)
    return state[o + _R_K] + state[o + _R_S1] / n


@njit(cache=True, _nrt=False)
def _ring_pvar(state: np.ndarray, o: int, w: int) -> float:
    """Population variance (ddof=0) of the values in the ring."""
    n = state[o + _R_N]
    if state[o + _R_RUN] >= n:
        return 0.0
    m1 = state[o + _R_S1] / n
    var = state[o + _R_S2] / n - m1 * m1
    return var if var > 0.0 else 0.0


# --------------------------------------------------------------------------------------
# 100 RSI
# --------------------------------------------------------------------------------------
@njit(cache=True, _nrt=False)
def _rsi_emit(state: np.ndarray, out: np.ndarray) -> None:
    if state[0] == 0.0:
        out[0] = _NAN
        return
    total = state[3] + state[4]
    out[0] = 100.0 * (state[3] / total) if total != 0.0 else 50.0


@njit(cache=True, _nrt=False)
def rsi_step(state: np.ndarray, params: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    """Relative Strength Index with Wilder smoothing.

    ``d_t = x_t - x_{t-1}``; ``G``/``L`` are the averages of ``max(d, 0)`` and
    ``max(-d, 0)``: the plain mean of the first ``window`` changes, then
    ``G_t = (G_{t-1} (n - 1) + gain_t) / n`` (same for ``L``);
    ``RSI = 100 G / (G + L)``.

    Reference: ``talib.RSI(x, timeperiod=window)``, same operation order (agrees to
    ~1e-15 relative; the last bit can differ with the C compiler's choices). Ready
    from the ``window + 1``-th valid value (TA-Lib's first non-NaN index is ``window``).

    NaN policy: skip (non-finite ``x`` leaves the state unchanged).

    Difference from TA-Lib: when ``G + L == 0`` (no movement at all since the start,
    or long enough for both averages to underflow) the output is 50 (neutral);
    TA-Lib returns 0, which reads as maximally oversold.

    State: ``[ready, count, prev, G, L]``. Params: ``[window]``.
    """
    v = x[0]
    if math.isfinite(v):
        n = params[0]
        count = state[1]
        if count == 0.0:
            state[1] = 1.0
        else:
            d = v - state[2]
            gain = state[3]
            loss = state[4]
            if count <= n:
                if d < 0.0:
                    loss -= d
                else:
                    gain += d
                if count == n:
                    gain /= n
                    loss /= n
                    state[0] = 1.0
                state[1] = count + 1.0
            else:
                loss *= n - 1.0
                gain *= n - 1.0
                if d < 0.0:
                    loss -= d
                else:
                    gain += d
                loss /= n
                gain /= n
            state[3] = gain
            state[4] = loss
        state[2] = v
    _rsi_emit(state, out)


# --------------------------------------------------------------------------------------
# 101 MACD
# --------------------------------------------------------------------------------------
@njit(cache=True, _nrt=False)
def _macd_emit(state: np.ndarray, out: np.ndarray) -> None:
    if state[0] == 0.0:
        out[0] = _NAN
        out[1] = _NAN
        out[2] = _NAN
        return
    out[0] = state[5]
    out[1] = state[4]
    out[2] = state[5] - state[4]


@njit(cache=True, _nrt=False)
def macd_step(state: np.ndarray, params: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    """Moving Average Convergence/Divergence with TA-Lib's seeding.

    ``macd = EMA_fast(x) - EMA_slow(x)``, ``signal = EMA_signal(macd)``,
    ``hist = macd - signal``, each EMA ``e_t = (x_t - e_{t-1}) k + e_{t-1}`` with
    ``k = 2 / (period + 1)``.

    Reference: ``talib.MACD(x, fastperiod, slowperiod, signalperiod)``, with its
    seeding and operation order (agrees to ~1e-13 relative). Both price EMAs start
    at index ``slow - 1`` (0-based, counting valid values): the slow one seeded with
    the mean of values ``0 .. slow-1``, the fast one with the mean of the ``fast``
    values ``slow-fast .. slow-1`` (not an EMA run from the first value). The signal
    EMA is seeded with the mean of the first ``signal`` macd values. All three
    outputs start together at index ``slow + signal - 2`` (33 for 12/26/9), TA-Lib's
    first non-NaN row, and are NaN before (macd too, as in TA-Lib). This differs
    from ``pandas.Series.ewm(span=..., adjust=False)``, which seeds with the first
    value; the difference decays as ``(1 - k)**t``.

    NaN policy: skip.

    State: ``[ready, count, ema_slow, ema_fast, ema_signal, macd, k_slow, k_fast, k_signal]``
    (the EMA slots hold running sums while seeding; each ``k`` is stored when its EMA's seed
    completes; until the price ones complete, the ``macd`` slot holds ``slow - fast``, the
    price the fast sum starts at, for :func:`_macd_check_state`). Params: ``[fast, slow, signal]``,
    ``fast < slow``.
    """
    v = x[0]
    if math.isfinite(v):
        fast = params[0]
        slow = params[1]
        sig = params[2]
        i = state[1]
        if i < slow:
            state[5] = slow - fast
            state[2] += v
            if i >= slow - fast:
                state[3] += v
            if i == slow - 1.0:
                state[2] /= slow
                state[3] /= fast
                state[6] = 2.0 / (slow + 1.0)
                state[7] = 2.0 / (fast + 1.0)
        else:
            state[2] = ((v - state[2]) * state[6]) + state[2]
            state[3] = ((v - state[3]) * state[7]) + state[3]
        if i >= slow - 1.0:
            macd = state[3] - state[2]
            state[5] = macd
            j = i - (slow - 1.0)
            if j < sig:
                state[4] += macd
                if j == sig - 1.0:
                    state[4] /= sig
                    state[8] = 2.0 / (sig + 1.0)
                    state[0] = 1.0
            else:
                state[4] = ((macd - state[4]) * state[8]) + state[4]
        if i < slow + sig:
            state[1] = i + 1.0
    _macd_emit(state, out)


# --------------------------------------------------------------------------------------
# 102 ATR
# --------------------------------------------------------------------------------------
@njit(cache=True, _nrt=False)
def atr_step(state: np.ndarray, params: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    """Average True Range with Wilder smoothing.

    ``TR_t = max(high_t, close_{t-1}) - min(low_t, close_{t-1})`` (computed as the
    largest of ``high - low``, ``|close_{t-1} - high|``, ``|close_{t-1} - low|``);
    the first ATR is the mean of ``TR_1 .. TR_n``, then
    ``ATR_t = (ATR_{t-1} (n - 1) + TR_t) / n``.

    Reference: ``talib.ATR(high, low, close, timeperiod=window)``, same operation
    order. The first bar only provides ``close_{t-1}``; ready from the
    ``window + 1``-th valid bar (TA-Lib's first non-NaN index is ``window``).

    NaN policy: skip the bar if any of high, low, close is not finite.

    State: ``[ready, count, prev_close, ATR]`` (``ATR`` holds the TR sum while
    seeding). Params: ``[window]``.
    """
    h = x[0]
    lo = x[1]
    c = x[2]
    if math.isfinite(h) and math.isfinite(lo) and math.isfinite(c):
        n = params[0]
        count = state[1]
        if count > 0.0:
            pc = state[2]
            tr = h - lo
            t2 = abs(pc - h)
            if t2 > tr:
                tr = t2
            t3 = abs(pc - lo)
            if t3 > tr:
                tr = t3
            if count <= n:
                state[3] += tr
                if count == n:
                    state[3] /= n
                    state[0] = 1.0
            else:
                a = state[3] * (n - 1.0)
                a += tr
                state[3] = a / n
        if count <= n:
            state[1] = count + 1.0
        state[2] = c
    out[0] = state[3] if state[0] != 0.0 else _NAN


# --------------------------------------------------------------------------------------
# 103 Bollinger bands
# --------------------------------------------------------------------------------------
_BB_RING = 2


@njit(cache=True, _nrt=False)
def bollinger_step(state: np.ndarray, params: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    """Bollinger bands on a simple moving average with population standard deviation.

    ``mid = mean(x[t-w+1..t])``, ``sd = sqrt(mean((x - mid)**2))`` (ddof=0),
    ``upper = mid + k sd``, ``lower = mid - k sd``,
    ``pctb = (x_t - lower) / (upper - lower)``, ``bandwidth = (upper - lower) / mid``
    (a fraction, not percent).

    Reference: ``talib.BBANDS(x, timeperiod=window, nbdevup=k, nbdevdn=k, matype=0)``
    for mid/upper/lower (TA-Lib's deviation is also ddof=0; pandas'
    ``rolling(w).std()`` is ddof=1, i.e. larger by ``sqrt(w / (w - 1))``);
    ``pctb`` and ``bandwidth`` are derived from those (TA-Lib has no such outputs).
    Ready once ``window`` valid values are in (TA-Lib's first non-NaN index is
    ``window - 1``).

    NaN policy: skip.

    Numerics: the moments come from sums of deviations from a shift that is moved to
    the newest value and recomputed exactly from the window every ``window`` values,
    so nothing drifts over a long run (TA-Lib keeps unshifted running sums over one
    call). Agreement with TA-Lib is ~1e-13 relative on BTC prices. A flat window gives
    ``sd == 0`` exactly, then ``pctb = 0.5``; ``bandwidth`` is NaN when ``mid == 0``.

    State: ``[ready, last_x, ring(window)]``. Params: ``[window, k]``.
    """
    v = x[0]
    w = int(params[0])
    if math.isfinite(v):
        state[1] = v
        _ring_push(state, _BB_RING, w, v)
        if _ring_full(state, _BB_RING, w):
            state[0] = 1.0
    if state[0] == 0.0:
        for i in range(5):
            out[i] = _NAN
        return
    mid = _ring_mean(state, _BB_RING, w)
    dev = math.sqrt(_ring_pvar(state, _BB_RING, w)) * params[1]
    upper = mid + dev
    lower = mid - dev
    width = upper - lower
    out[0] = mid
    out[1] = upper
    out[2] = lower
    out[3] = (state[1] - lower) / width if width > 0.0 else 0.5
    out[4] = width / mid if mid != 0.0 else _NAN


# --------------------------------------------------------------------------------------
# 104 Stochastic oscillator
# --------------------------------------------------------------------------------------
# Layout: ready, count, highest, highest_age, lowest, lowest_age, n, head,
# highs[kw], lows[kw], ring(%K, smooth), ring(slow %K, d_window).
_ST_N = 6
_ST_HEAD = 7
_ST_BUF = 8


@njit(cache=True, _nrt=False)
def _stoch_rescan(state: np.ndarray, kw: int, n: int, head: int, lows: bool) -> None:
    """Find the extreme of the high (or low) buffer and its age; newest wins ties."""
    base = _ST_BUF + (kw if lows else 0)
    best = 0.0
    best_age = 0
    for age in range(n):
        p = head - 1 - age
        if p < 0:
            p += kw
        val = state[base + p]
        if age == 0 or (val < best if lows else val > best):
            best = val
            best_age = age
    if lows:
        state[4] = best
        state[5] = best_age
    else:
        state[2] = best
        state[3] = best_age


@njit(cache=True, _nrt=False)
def stoch_step(state: np.ndarray, params: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    """Stochastic oscillator: slow %K and %D, both smoothed with simple averages.

    ``fastK_t = 100 (close_t - LL) / (HH - LL)`` over the last ``k_window`` bars
    (computed as ``(close - LL) / ((HH - LL) / 100)`` like TA-Lib),
    ``k = SMA(fastK, smooth)``, ``d = SMA(k, d_window)``.

    Reference: ``talib.STOCH(high, low, close, fastk_period=k_window,
    slowk_period=smooth, slowk_matype=0, slowd_period=d_window, slowd_matype=0)``
    returning ``(slowk, slowd)``; with ``smooth=1`` it is
    ``talib.STOCHF(high, low, close, fastk_period=k_window, fastd_period=d_window,
    fastd_matype=0)``. Both outputs start together at valid bar
    ``k_window + smooth + d_window - 3`` (0-based), where TA-Lib's first non-NaN row
    is (TA-Lib also withholds ``k`` until ``d`` exists).

    NaN policy: skip the bar if any of high, low, close is not finite.

    Differences from TA-Lib: a flat range (``HH == LL``) gives ``fastK = 50``
    (neutral); TA-Lib gives 0, which reads as maximally oversold. Averages use shifted sums instead of TA-Lib's running
    sum, agreeing to ~1e-13 absolute on the 0-100 scale.

    Params: ``[k_window, smooth, d_window]``.
    """
    h = x[0]
    lo = x[1]
    c = x[2]
    kw = int(params[0])
    sm = int(params[1])
    dw = int(params[2])
    r1 = _ST_BUF + 2 * kw
    r2 = r1 + _R_BUF + sm
    if math.isfinite(h) and math.isfinite(lo) and math.isfinite(c):
        n = int(state[_ST_N])
        head = int(state[_ST_HEAD])
        state[_ST_BUF + head] = h
        state[_ST_BUF + kw + head] = lo
        head = head + 1 if head + 1 < kw else 0
        if n < kw:
            n += 1
        state[_ST_N] = n
        state[_ST_HEAD] = head
        if n == 1 or h >= state[2]:
            state[2] = h
            state[3] = 0.0
        else:
            state[3] += 1.0
            if state[3] >= kw:
                _stoch_rescan(state, kw, n, head, False)
        if n == 1 or lo <= state[4]:
            state[4] = lo
            state[5] = 0.0
        else:
            state[5] += 1.0
            if state[5] >= kw:
                _stoch_rescan(state, kw, n, head, True)
        if n == kw:
            diff = (state[2] - state[4]) / 100.0
            fast_k = (c - state[4]) / diff if diff != 0.0 else 50.0
            _ring_push(state, r1, sm, fast_k)
            if _ring_full(state, r1, sm):
                _ring_push(state, r2, dw, _ring_mean(state, r1, sm))
                if _ring_full(state, r2, dw):
                    state[0] = 1.0
    if state[0] == 0.0:
        out[0] = _NAN
        out[1] = _NAN
        return
    out[0] = _ring_mean(state, r1, sm)
    out[1] = _ring_mean(state, r2, dw)


# --------------------------------------------------------------------------------------
# 105 rolling VWAP
# --------------------------------------------------------------------------------------
_VW_RING = 1


@njit(cache=True, _nrt=False)
def vwap_step(state: np.ndarray, params: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    """Rolling volume-weighted average price over the last ``window`` events.

    ``vwap = sum(price * volume) / sum(volume)`` over the window. The inputs are named
    after bar fields (``close, volume``) so that a bar spec needs no ``input``; for
    trades feed ``price, size``.

    Reference: ``(p * v).rolling(w).sum() / v.rolling(w).sum()`` in pandas. Ready once
    ``window`` valid events are in.

    NaN policy: skip an event whose price or volume is not finite or whose volume
    is negative. Zero volume is valid (it counts towards the window).

    Undefined case: a window whose volume is all zero gives NaN (while ready).

    State: ``[ready, ring(p*v), ring(v)]``. Params: ``[window]``.
    """
    p = x[0]
    vol = x[1]
    w = int(params[0])
    r2 = _VW_RING + _R_BUF + w
    if math.isfinite(p) and math.isfinite(vol) and vol >= 0.0:
        _ring_push(state, _VW_RING, w, p * vol)
        _ring_push(state, r2, w, vol)
        if _ring_full(state, r2, w):
            state[0] = 1.0
    if state[0] == 0.0:
        out[0] = _NAN
        return
    sv = _ring_sum(state, r2, w)
    out[0] = _ring_sum(state, _VW_RING, w) / sv if sv > 0.0 else _NAN


# --------------------------------------------------------------------------------------
# 106 session-anchored VWAP
# --------------------------------------------------------------------------------------
@njit(cache=True, _nrt=False)
def session_vwap_step(state: np.ndarray, params: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    """VWAP anchored at the start of each session, reset at every session boundary.

    Sessions are ``(start, end]`` by default (``right_closed=1``): the session of an
    event at ``time`` (seconds) is ``ceil((time - offset) / length) - 1``, so a bar
    stamped at its close time (tradebus ``Bar.ts_event``) that closes at midnight
    stays in the day it covers. With ``right_closed=0`` sessions are ``[start, end)``,
    ``floor((time - offset) / length)``; the two differ only for an event stamped
    exactly on a boundary (a trade at 00:00:00.000 opens the new day only with 0).
    ``vwap = cumsum(price * volume) / cumsum(volume)`` within
    the session. The inputs are named after bar fields (``close, volume, time``); for
    trades feed ``price, size, time``.

    Reference: pandas ``groupby(session).cumsum()`` of ``p * v`` and ``v``. Ready
    from the first valid event.

    NaN policy: skip an event whose price, volume or time is not finite or whose
    volume is negative; also skip an event whose session is earlier than the current
    one (late data is not folded into the wrong session).

    Undefined case: NaN while the current session has zero total volume.

    State: ``[ready, session, sum(p*v), sum(v)]``. Params:
    ``[session_seconds, offset_seconds, right_closed]``.
    """
    p = x[0]
    vol = x[1]
    t = x[2]
    if math.isfinite(p) and math.isfinite(vol) and math.isfinite(t) and vol >= 0.0:
        length = params[0]
        pos = (t - params[1]) / length
        session = np.ceil(pos) - 1.0 if params[2] != 0.0 else np.floor(pos)
        if state[0] == 0.0 or session > state[1]:
            state[1] = session
            state[2] = 0.0
            state[3] = 0.0
            state[0] = 1.0
        if session == state[1]:
            state[2] += p * vol
            state[3] += vol
    if state[0] == 0.0:
        out[0] = _NAN
        return
    out[0] = state[2] / state[3] if state[3] > 0.0 else _NAN


# --------------------------------------------------------------------------------------
# 107 OBV
# --------------------------------------------------------------------------------------
@njit(cache=True, _nrt=False)
def obv_step(state: np.ndarray, params: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    """On-balance volume.

    ``OBV_0 = volume_0``; then ``OBV_t = OBV_{t-1} + volume_t`` if
    ``close_t > close_{t-1}``, ``- volume_t`` if lower, unchanged if equal.

    Reference: ``talib.OBV(close, volume)``, exact (same start at the first volume,
    ready from the first valid event). OBV is cumulative: its level depends on where
    the run starts, only its changes are comparable across runs.

    NaN policy: skip an event whose close or volume is not finite or whose volume is
    negative.

    State: ``[ready, prev_close, obv]``. Params: none.
    """
    c = x[0]
    vol = x[1]
    if math.isfinite(c) and math.isfinite(vol) and vol >= 0.0:
        if state[0] == 0.0:
            state[2] = vol
            state[0] = 1.0
        elif c > state[1]:
            state[2] += vol
        elif c < state[1]:
            state[2] -= vol
        state[1] = c
    out[0] = state[2] if state[0] != 0.0 else _NAN


# --------------------------------------------------------------------------------------
# 108 realised volatility
# --------------------------------------------------------------------------------------
_RV_RING = 3


@njit(cache=True, _nrt=False)
def realized_vol_step(state: np.ndarray, params: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    """Rolling realised volatility of log returns.

    ``r_t = log(x_t) - log(x_{t-1})``, ``rv = sqrt(sum(r**2))`` over the last ``window``
    returns; with ``periods_per_year > 0`` it is annualised as
    ``sqrt(sum(r**2) * periods_per_year / window)`` (mean square return scaled to a
    year; e.g. 2190 for 4h bars over 365 days).

    Reference: pandas ``np.sqrt((np.log(x).diff() ** 2).rolling(window).sum())``
    (times ``sqrt(periods_per_year / window)``). Ready once ``window`` returns, i.e.
    ``window + 1`` valid prices, are in.

    NaN policy: skip an event whose price is not finite or not positive. A skipped
    event does not break the return chain: the next return is taken from the last
    valid price.

    State: ``[ready, has_prev, log(prev), ring(r**2)]``. Params: ``[window, periods_per_year]``.
    """
    v = x[0]
    w = int(params[0])
    if math.isfinite(v) and v > 0.0:
        log_v = math.log(v)
        if state[1] != 0.0:
            r = log_v - state[2]
            _ring_push(state, _RV_RING, w, r * r)
            if _ring_full(state, _RV_RING, w):
                state[0] = 1.0
        state[1] = 1.0
        state[2] = log_v
    if state[0] == 0.0:
        out[0] = _NAN
        return
    ss = _ring_sum(state, _RV_RING, w)
    if ss < 0.0:
        ss = 0.0
    ppy = params[1]
    out[0] = math.sqrt(ss * ppy / params[0]) if ppy > 0.0 else math.sqrt(ss)


# --------------------------------------------------------------------------------------
# Dispatch and registration
# --------------------------------------------------------------------------------------
@njit(cache=True, _nrt=False)
def dispatch(kind_id: int, state: np.ndarray, params: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    """Call the step kernel of ``kind_id`` (ids 100-108); unknown ids do nothing."""
    if kind_id == 100:
        rsi_step(state, params, x, out)
    elif kind_id == 101:
        macd_step(state, params, x, out)
    elif kind_id == 102:
        atr_step(state, params, x, out)
    elif kind_id == 103:
        bollinger_step(state, params, x, out)
    elif kind_id == 104:
        stoch_step(state, params, x, out)
    elif kind_id == 105:
        vwap_step(state, params, x, out)
    elif kind_id == 106:
        session_vwap_step(state, params, x, out)
    elif kind_id == 107:
        obv_step(state, params, x, out)
    elif kind_id == 108:
        realized_vol_step(state, params, x, out)


def _window(default: float | None, low: float = 1.0) -> Param:
    return Param("window", default, low=low, high=_MAX_WINDOW, integer=True)


def _macd_normalize(kwargs: dict[str, float]) -> dict[str, float]:
    """Reject ``fast >= slow`` (TA-Lib silently swaps them)."""
    try:
        fast = float(kwargs.get("fast", 12.0))
        slow = float(kwargs.get("slow", 26.0))
    except (TypeError, ValueError):
        return kwargs  # Param.check reports the malformed value with its name
    if fast >= slow:
        raise FeatureError(f"feature 'macd': parameter 'fast' ({fast:g}) must be smaller than 'slow' ({slow:g})")
    return kwargs


def _macd_check_state(params: np.ndarray, state: np.ndarray) -> None:
    """Refuse a seed whose fast sum started at another price than ``slow - fast`` of ``params``.

    While ``k_fast`` is not stored, the fast sum holds the prices from ``slow - fast`` (kept in
    ``state[5]``) to the last seen; other parameters that start it elsewhere before the last price
    would carry on another sum. A row of the layout before ``state[5]`` kept it (zero while
    seeding) is refused once it has seen a price: where its sum starts cannot be told.
    """
    seen = float(state[1])
    if state[7] != 0.0 or seen == 0.0:
        return
    fast, slow = float(params[0]), float(params[1])
    start, saved = slow - fast, float(state[5])
    if saved == 0.0:
        raise FeatureError(
            f"feature 'macd': the state has seen {int(seen)} prices, k_fast not stored yet, and does not say "
            "where its fast EMA's seed starts (a state saved by an earlier tradebus); run the stepper again from "
            "the first price"
        )
    if saved != start and seen > min(saved, start):
        raise FeatureError(
            f"feature 'macd': the state was saved with slow - fast = {int(saved)} (the fast EMA seeding from "
            f"price {int(saved)} of the {int(seen)} seen, k_fast not stored yet), not slow - fast = "
            f"{int(start)} (fast={int(fast)}, slow={int(slow)}); restore it with the parameters it was "
            "saved with"
        )


def _fixed(size: int) -> Callable[[np.ndarray], int]:
    def constant(params: np.ndarray) -> int:
        return size

    return constant


def _window_plus(extra: int) -> Callable[[np.ndarray], int]:
    def warmup(params: np.ndarray) -> int:
        return int(params[0]) + extra

    return warmup


def _macd_warmup(params: np.ndarray) -> int:
    return int(params[1]) + int(params[2]) - 1


def _stoch_warmup(params: np.ndarray) -> int:
    return int(params[0]) + int(params[1]) + int(params[2]) - 2


def _bollinger_size(params: np.ndarray) -> int:
    return _BB_RING + _ring_size(int(params[0]))


def _stoch_size(params: np.ndarray) -> int:
    return _ST_BUF + 2 * int(params[0]) + _ring_size(int(params[1])) + _ring_size(int(params[2]))


def _vwap_size(params: np.ndarray) -> int:
    return _VW_RING + 2 * _ring_size(int(params[0]))


def _realized_vol_size(params: np.ndarray) -> int:
    return _RV_RING + _ring_size(int(params[0]))


RSI = FeatureKind(
    name="rsi",
    kind_id=100,
    inputs=("x",),
    outputs=("value",),
    params=(_window(14.0, low=2.0),),
    state_size=_fixed(5),
    step=rsi_step,
    warmup=_window_plus(1),
)
MACD = FeatureKind(
    name="macd",
    kind_id=101,
    inputs=("x",),
    outputs=("macd", "signal", "hist"),
    params=(
        Param("fast", 12.0, low=2.0, high=_MAX_WINDOW, integer=True),
        Param("slow", 26.0, low=2.0, high=_MAX_WINDOW, integer=True),
        Param("signal", 9.0, low=1.0, high=_MAX_WINDOW, integer=True),
    ),
    state_size=_fixed(9),
    step=macd_step,
    # state[1] counts the prices seen up to slow + signal: the slow EMA seeds on the first slow of them (the
    # fast one's seed completes with it), the signal EMA on the macd values after the first slow - 1
    coefficients=(ema_coefficient(6, "slow"), ema_coefficient(7, "fast", seeded=None),
                  ema_coefficient(8, "signal", seeded_after="slow")),
    normalize=_macd_normalize,
    warmup=_macd_warmup,
    state_check=_macd_check_state,
)
ATR = FeatureKind(
    name="atr",
    kind_id=102,
    inputs=("high", "low", "close"),
    outputs=("value",),
    params=(_window(14.0),),
    state_size=_fixed(4),
    step=atr_step,
    warmup=_window_plus(1),
)
BOLLINGER = FeatureKind(
    name="bollinger",
    kind_id=103,
    inputs=("x",),
    outputs=("mid", "upper", "lower", "pctb", "bandwidth"),
    params=(_window(20.0), Param("k", 2.0, low=0.0)),
    state_size=_bollinger_size,
    step=bollinger_step,
    warmup=_window_plus(0),
)
STOCH = FeatureKind(
    name="stoch",
    kind_id=104,
    inputs=("high", "low", "close"),
    outputs=("k", "d"),
    params=(
        Param("k_window", 14.0, low=1.0, high=_MAX_WINDOW, integer=True),
        Param("smooth", 3.0, low=1.0, high=_MAX_WINDOW, integer=True),
        Param("d_window", 3.0, low=1.0, high=_MAX_WINDOW, integer=True),
    ),
    state_size=_stoch_size,
    step=stoch_step,
    warmup=_stoch_warmup,
)
VWAP = FeatureKind(
    name="vwap",
    kind_id=105,
    inputs=("close", "volume"),
    outputs=("value",),
    params=(_window(20.0),),
    state_size=_vwap_size,
    step=vwap_step,
    warmup=_window_plus(0),
)
SESSION_VWAP = FeatureKind(
    name="session_vwap",
    kind_id=106,
    inputs=("close", "volume", "time"),
    outputs=("value",),
    params=(
        Param("session_seconds", 86400.0, low=1e-9),
        Param("offset_seconds", 0.0),
        Param("right_closed", 1.0, low=0.0, high=1.0, integer=True),
    ),
    state_size=_fixed(4),
    step=session_vwap_step,
    warmup=_fixed(1),
)
OBV = FeatureKind(
    name="obv",
    kind_id=107,
    inputs=("close", "volume"),
    outputs=("value",),
    params=(),
    state_size=_fixed(3),
    step=obv_step,
    warmup=_fixed(1),
)
REALIZED_VOL = FeatureKind(
    name="realized_vol",
    kind_id=108,
    inputs=("x",),
    outputs=("value",),
    params=(_window(20.0), Param("periods_per_year", 0.0, low=0.0)),
    state_size=_realized_vol_size,
    step=realized_vol_step,
    warmup=_window_plus(1),
)

KINDS: tuple[FeatureKind, ...] = (RSI, MACD, ATR, BOLLINGER, STOCH, VWAP, SESSION_VWAP, OBV, REALIZED_VOL)

register(*KINDS)
