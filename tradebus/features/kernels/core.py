"""Step kernels of the 'core' group (kind ids 1-99). See tradebus.features.registry.

Returns, exponentially weighted moments, rolling-window statistics and the
classic moving averages. Every kernel follows the registry contract
``step(state, params, x, out)``: a fresh state row is all zeros, ``state[0]`` is
the ready flag, every output slot is written on every call (NaN while not
ready).

Conventions shared by the kernels below
---------------------------------------
* EWM kinds store the pandas centre of mass ``com`` (``alpha = 1 / (1 + com)``),
  so ``span``/``halflife``/``alpha``/``com`` all map to the same float64 alpha as
  pandas computes it. They follow ``pandas.Series.ewm(adjust=True,
  ignore_na=False)``: a NaN input is skipped for the estimate but still ages the
  weights, and the previous estimate is repeated at the NaN row.
* Rolling kinds follow ``pandas.Series.rolling(window, min_periods)``: the
  window is the last ``window`` *events* (NaN included), statistics use the
  non-NaN values in it and are NaN while fewer than ``min_periods`` are present
  (``min_periods=0`` means ``window``, pandas' default). The window is kept in
  the state row as a ring buffer.
* A non-finite input (NaN, +-inf) is missing for every kind below but the returns:
  pandas also leaves +-inf out of its rolling windows and EWM estimates, and one inf
  must not turn a running sum into ``inf - inf`` (NaN for the rest of a run).
* Ready flags are sticky: a kernel is ready once it has seen its warm-up count
  of non-NaN inputs (``FeatureKind.warmup``); a later NaN still yields a NaN
  output where the policy says so.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from tradebus.errors import FeatureError
from tradebus.features.registry import Coefficient, FeatureKind, Param

__all__ = ["BATCH_KINDS", "KINDS", "dispatch"]

_NAN = np.nan
# Every kernel and helper here is compiled with ``_nrt=False``: none allocates, and
# without NRT Numba emits no incref/decref call for each array passed to a helper
# (measured: ~40 such calls per event in a kernel with one helper, 3x the cost).
#: Exact recomputation period of the incremental rolling sums (at least the window).
_RECOMPUTE_MIN = 64


# ----------------------------------------------------------------------------- helpers


@njit(cache=True, _nrt=False, inline="always")
def _neumaier(total: float, comp: float, value: float) -> tuple[float, float]:
    """Compensated (Neumaier) addition: returns the new ``(total, compensation)``."""
    t = total + value
    # Operands picked by selects, not a branch: the comparison is a coin flip on noisy data.
    first = abs(total) >= abs(value)
    big = total if first else value
    small = value if first else total
    return t, comp + ((big - t) + small)


@njit(cache=True, _nrt=False)
def _wrap(i: int, n: int) -> int:
    """``i % n`` for ``0 <= i < 2 n`` without an integer division."""
    return i - n if i >= n else i


@njit(cache=True, _nrt=False)
def _next_pos(pos: float, n: int) -> float:
    """Next ring position after ``pos`` (a float in ``[0, n)``), computed in floating point.

    Same values as ``_wrap(int(pos) + 1, n)``, but the position carried from one event
    to the next never goes through a float -> int -> float round trip, which in a
    batch loop is the longest dependency chain of a ring-buffer kernel.
    """
    nxt = pos + 1.0
    return 0.0 if nxt >= n else nxt


# ----------------------------------------------------------------------------- returns
# state: [ready, seen, pos, ring[lag]]


@njit(cache=True, _nrt=False)
def _lagged(state: np.ndarray, lag: int, x: float) -> float:
    """Push ``x`` into the lag ring; return the value ``lag`` events ago (NaN before)."""
    seen = state[1]
    p = state[2]
    pos = int(p)
    old = state[3 + pos] if seen >= lag else _NAN
    state[3 + pos] = x
    state[2] = _next_pos(p, lag)
    state[1] = seen + 1.0
    if seen >= lag:
        state[0] = 1.0
    return old


@njit(cache=True, _nrt=False)
def _ret(old: float, x: float) -> float:
    return x / old - 1.0 if old == old and x == x and old != 0.0 else _NAN


@njit(cache=True, _nrt=False)
def _log_ret(old: float, x: float) -> float:
    return math.log(x / old) if old > 0.0 and x > 0.0 else _NAN


@njit(cache=True, _nrt=False)
def ret_step(state: np.ndarray, params: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    """Simple return ``x[t] / x[t-lag] - 1``.

    pandas: ``s.pct_change(lag, fill_method=None)``; TA-Lib: ``ROCR(x, lag) - 1``.
    NaN policy: propagate (a NaN at either end gives NaN); a zero base gives NaN
    (pandas gives ±inf). Ready after ``lag + 1`` events.
    """
    out[0] = _ret(_lagged(state, int(params[0]), x[0]), x[0])


@njit(cache=True, _nrt=False)
def log_ret_step(state: np.ndarray, params: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    """Log return ``log(x[t] / x[t-lag])``.

    pandas: ``np.log(s / s.shift(lag))``. NaN policy: propagate; a non-positive
    price at either end gives NaN. Ready after ``lag + 1`` events.
    """
    out[0] = _log_ret(_lagged(state, int(params[0]), x[0]), x[0])


@njit(cache=True, _nrt=False, inline="always")
def _lag_run(kind_id: int, state: np.ndarray, params: np.ndarray, inputs: np.ndarray, result: np.ndarray) -> None:
    """Batch loop of ret / log_ret: the lagged value comes from the ring for the first
    ``lag`` rows and from ``inputs`` after them (the same values the ring would hold);
    the ring, position and count end as ``n`` pushes leave them."""
    lag = int(params[0])
    n = result.shape[0]
    seen = state[1]
    p = int(state[2])
    for i in range(min(lag, n)):
        old = state[3 + _wrap(p + i, lag)] if seen + i >= lag else _NAN
        v = inputs[i]
        result[i] = _ret(old, v) if kind_id == 1 else _log_ret(old, v)
    if lag == 1 and n > 1:
        # The previous value carried in a register: with a lag only known at run time every
        # row reloads it (~2.5 ns of a log return's ~6).
        old = inputs[0]
        for i in range(1, n):
            v = inputs[i]
            result[i] = _ret(old, v) if kind_id == 1 else _log_ret(old, v)
            old = v
    else:
        for i in range(lag, n):
            v = inputs[i]
            result[i] = _ret(inputs[i - lag], v) if kind_id == 1 else _log_ret(inputs[i - lag], v)
    for i in range(max(0, n - lag), n):
        state[3 + (p + i) % lag] = inputs[i]
    state[1] = seen + n
    state[2] = float((p + n) % lag)
    if seen + n > lag:
        state[0] = 1.0


def _lag_state_size(params: np.ndarray) -> int:
    return 3 + int(params[0])


def _lag_warmup(params: np.ndarray) -> int:
    return int(params[0]) + 1


# ----------------------------------------------------------------------------- EWM
# state: [ready, nobs, started, mean, cov, sum_wt, sum_wt2, old_wt, factor, W, cmean, M2, M3, M4]
# factor = 1 - alpha, stored at the first observation
_E_FACTOR = 8
_E_W, _E_CMEAN, _E_M2, _E_M3, _E_M4 = range(9, 14)
_EWM_STATE = 14


#: The EWM header ``state[0:9]`` as a tuple (ready, nobs, started, mean, cov, sum_wt, sum_wt2, old_wt, factor).
EwmHeader = tuple[float, float, float, float, float, float, float, float, float]


@njit(cache=True, _nrt=False)
def _ewm_load(state: np.ndarray) -> EwmHeader:
    return state[0], state[1], state[2], state[3], state[4], state[5], state[6], state[7], state[8]


@njit(cache=True, _nrt=False)
def _ewm_store(state: np.ndarray, h: EwmHeader) -> None:
    state[0], state[1], state[2], state[3], state[4], state[5], state[6], state[7], state[8] = h


@njit(cache=True, _nrt=False, inline="always")
def _ewm_next(h: EwmHeader, params: np.ndarray, x: float) -> EwmHeader:
    """Advance the pandas ``ewm(adjust=True, ignore_na=False)`` mean/cov recurrence by ``x``.

    Works on the header as values, so a batch loop keeps it in registers; sets the
    sticky ready flag once ``nobs >= min_periods``.
    """
    ready, nobs, started, mean, cov, sw, sw2, old_wt, factor = h
    obs = math.isfinite(x)
    if obs:
        nobs += 1.0
    if started != 0.0:
        sw *= factor
        sw2 *= factor * factor
        old_wt = old_wt * factor
        if obs:
            old_mean = mean
            if mean != x:
                mean = (old_wt * old_mean + x) / (old_wt + 1.0)
            d_old = old_mean - mean
            d_new = x - mean
            cov = (old_wt * (cov + d_old * d_old) + d_new * d_new) / (old_wt + 1.0)
            sw += 1.0
            sw2 += 1.0
            old_wt += 1.0
    elif obs:
        started = 1.0
        factor = 1.0 - 1.0 / (1.0 + params[0])
        mean = x
        cov = 0.0
        sw = 1.0
        sw2 = 1.0
        old_wt = 1.0
    if nobs >= params[1]:
        ready = 1.0
    return ready, nobs, started, mean, cov, sw, sw2, old_wt, factor


@njit(cache=True, _nrt=False)
def _ewm_update(state: np.ndarray, params: np.ndarray, x: float) -> bool:
    """Advance the EWM recurrence held in ``state``; returns whether ``nobs >= min_periods``."""
    h = _ewm_next(_ewm_load(state), params, x)
    _ewm_store(state, h)
    return h[1] >= params[1]


@njit(cache=True, _nrt=False)
def _ewm_var(h: EwmHeader) -> float:
    """Bias-corrected EWM variance (pandas ``bias=False``) of a header, NaN when undefined."""
    sw = h[5]
    num = sw * sw
    den = num - h[6]
    if den > 0.0:
        return (num / den) * h[4]
    return _NAN


@njit(cache=True, _nrt=False, inline="always")
def _ewm_value(kind_id: int, h: EwmHeader, params: np.ndarray, x: float) -> float:
    """Output of EWM kind ``kind_id`` (10 mean, 11 var, 12 std, 13 z-score) after ``x`` was added."""
    if h[1] < params[1]:
        return _NAN
    if kind_id == 10:
        return h[3]
    if kind_id == 11:
        return _ewm_var(h)
    if kind_id == 12:
        return math.sqrt(_ewm_var(h))
    if not math.isfinite(x):
        return _NAN
    sd = math.sqrt(_ewm_var(h))
    return (x - h[3]) / sd if sd > 0.0 else _NAN


@njit(cache=True, _nrt=False, inline="always")
def _ewm_step(kind_id: int, state: np.ndarray, params: np.ndarray, x: float) -> float:
    h = _ewm_next(_ewm_load(state), params, x)
    _ewm_store(state, h)
    return _ewm_value(kind_id, h, params, x)


@njit(cache=True, _nrt=False, inline="always")
def _ewm_run(kind_id: int, state: np.ndarray, params: np.ndarray, inputs: np.ndarray, result: np.ndarray) -> None:
    h = _ewm_load(state)
    for i in range(result.shape[0]):
        v = inputs[i]
        h = _ewm_next(h, params, v)
        result[i] = _ewm_value(kind_id, h, params, v)
    _ewm_store(state, h)


@njit(cache=True, _nrt=False)
def ewm_mean_step(state: np.ndarray, params: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    """Exponentially weighted mean ``sum(w_i x_i) / sum(w_i)``, ``w_i = (1-alpha)^(t-i)``.

    pandas: ``s.ewm(com=com, adjust=True, min_periods=min_periods).mean()`` (the same
    recurrence, so the results agree to the last bits). NaN policy: skip (ages the
    weights, repeats the previous mean).
    """
    out[0] = _ewm_step(10, state, params, x[0])


@njit(cache=True, _nrt=False)
def ewm_var_step(state: np.ndarray, params: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    """Exponentially weighted variance, bias corrected.

    pandas: ``s.ewm(com=com, adjust=True, min_periods=min_periods).var()`` (``bias=False``).
    NaN policy: skip (ages the weights, repeats the previous estimate).
    """
    out[0] = _ewm_step(11, state, params, x[0])


@njit(cache=True, _nrt=False)
def ewm_std_step(state: np.ndarray, params: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    """Exponentially weighted standard deviation ``sqrt(ewm_var)``.

    pandas: ``s.ewm(com=com, adjust=True, min_periods=min_periods).std()``.
    NaN policy: skip (ages the weights, repeats the previous estimate).
    """
    out[0] = _ewm_step(12, state, params, x[0])


@njit(cache=True, _nrt=False)
def ewm_zscore_step(state: np.ndarray, params: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    """EWM z-score ``(x - ewm_mean) / ewm_std``, both including the current ``x``.

    pandas: ``(s - s.ewm(...).mean()) / s.ewm(...).std()``. NaN policy: propagate
    (a NaN input gives NaN; it still ages the weights). A zero std gives NaN.
    """
    out[0] = _ewm_step(13, state, params, x[0])


@njit(cache=True, _nrt=False)
def _ewm_central_update(state: np.ndarray, params: np.ndarray, x: float) -> bool:
    """Advance the weighted central moments ``W, mean, M2, M3, M4`` (Pébay's update).

    The old moments decay by ``1 - alpha`` every event (NaN included), then ``x``
    joins with weight 1. Returns whether ``nobs >= min_periods``.
    """
    ready = _ewm_update(state, params, x)
    factor = state[_E_FACTOR]  # 0 before the first observation, when every moment is 0 too
    wa = state[_E_W] * factor
    m2 = state[_E_M2] * factor
    m3 = state[_E_M3] * factor
    m4 = state[_E_M4] * factor
    mean = state[_E_CMEAN]
    if math.isfinite(x):
        if state[_E_W] == 0.0:
            wa, mean, m2, m3, m4 = 1.0, x, 0.0, 0.0, 0.0
        else:
            w = wa + 1.0
            d = x - mean
            d2 = d * d
            m4 = (
                m4
                + wa * (wa * wa - wa + 1.0) * d2 * d2 / (w * w * w)
                + 6.0 * d2 * m2 / (w * w)
                - 4.0 * d * m3 / w
            )
            m3 = m3 + wa * (wa - 1.0) * d2 * d / (w * w) - 3.0 * d * m2 / w
            m2 = m2 + wa * d2 / w
            mean = mean + d / w
            wa = w
    state[_E_W] = wa
    state[_E_CMEAN] = mean
    state[_E_M2] = m2
    state[_E_M3] = m3
    state[_E_M4] = m4
    return ready


@njit(cache=True, _nrt=False)
def ewm_skew_step(state: np.ndarray, params: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    """Exponentially weighted skewness ``m3 / m2^1.5`` (biased, population form).

    ``m_k = sum(w_i (x_i - mean)^k) / sum(w_i)`` with ``w_i = (1-alpha)^(t-i)``
    (adjust=True weights). pandas has no EWM skew; reference:
    ``np.average((x - mu)**3, weights=w) / np.average((x - mu)**2, weights=w)**1.5``.
    NaN policy: skip (ages the weights, repeats the previous estimate); zero
    spread gives NaN.
    """
    if _ewm_central_update(state, params, x[0]) and state[_E_M2] > 0.0:
        m2 = state[_E_M2] / state[_E_W]
        out[0] = (state[_E_M3] / state[_E_W]) / (m2 * math.sqrt(m2))
    else:
        out[0] = _NAN


@njit(cache=True, _nrt=False)
def ewm_kurt_step(state: np.ndarray, params: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    """Exponentially weighted excess kurtosis ``m4 / m2^2 - 3`` (biased, population form).

    Moments as in :func:`ewm_skew_step`; pandas has no EWM kurtosis; reference:
    ``np.average((x - mu)**4, weights=w) / np.average((x - mu)**2, weights=w)**2 - 3``.
    NaN policy: skip; zero spread gives NaN.
    """
    if _ewm_central_update(state, params, x[0]) and state[_E_M2] > 0.0:
        m2 = state[_E_M2] / state[_E_W]
        out[0] = (state[_E_M4] / state[_E_W]) / (m2 * m2) - 3.0
    else:
        out[0] = _NAN


def _ewm_state_size(params: np.ndarray) -> int:
    return _EWM_STATE


#: ``factor = 1 - 1 / (1 + com)`` as :func:`_ewm_next` stores it, kept at ``state[8]`` from the first observation.
_EWM_FACTOR = Coefficient(
    "factor", _E_FACTOR, "com", lambda com: 1.0 - 1.0 / (1.0 + com), lambda f: 1.0 / (1.0 - f) - 1.0, stored_flag=2
)


def _ewm_warmup(params: np.ndarray) -> int:
    return int(params[1])


def _ewm_normalize(kwargs: dict[str, float]) -> dict[str, float]:
    """Map ``span``/``halflife``/``alpha``/``com`` to pandas' ``com``; default ``min_periods``.

    The conversions are pandas' own (``get_center_of_mass``), so the float64 alpha
    is the one pandas uses. ``min_periods`` defaults to the equivalent span rounded up.
    """
    given = [k for k in ("com", "span", "halflife", "alpha") if k in kwargs]
    if len(given) != 1:
        raise FeatureError(f"EWM feature needs exactly one of com, span, halflife, alpha; got {given or 'none'}")
    key = given[0]
    try:
        v = float(kwargs.pop(key))
    except (TypeError, ValueError):
        raise FeatureError(f"EWM feature: parameter {key!r} must be a number") from None
    if key == "span":
        if not v >= 1.0:
            raise FeatureError(f"EWM feature: span must be >= 1, got {v}")
        com = (v - 1.0) / 2.0
    elif key == "halflife":
        if not v > 0.0:
            raise FeatureError(f"EWM feature: halflife must be > 0, got {v}")
        com = 1.0 / (1.0 - math.exp(math.log(0.5) / v)) - 1.0
    elif key == "alpha":
        if not 0.0 < v <= 1.0:
            raise FeatureError(f"EWM feature: alpha must be in (0, 1], got {v}")
        com = 1.0 / v - 1.0
    else:
        com = v
    kwargs["com"] = com
    if "min_periods" not in kwargs and math.isfinite(com) and com >= 0.0:
        kwargs["min_periods"] = float(max(1, math.ceil(2.0 * com + 1.0 - 1e-9)))
    return kwargs


# ----------------------------------------------------------------------------- rolling moments
# state: [ready, seen, pos, count, nobs, K, S1, C1, S2, C2, since, prev, run, ring[window]]
_R_RING = 13


@njit(cache=True, _nrt=False)
def _min_periods(params: np.ndarray) -> float:
    w = params[0]
    mp = params[1]
    return w if mp == 0.0 or mp > w else mp


#: The rolling-moments header ``state[0:13]`` as a tuple
#: (ready, seen, pos, count, nobs, K, S1, C1, S2, C2, since, prev, run).
RollHeader = tuple[float, float, float, float, float, float, float, float, float, float, float, float, float]


@njit(cache=True, _nrt=False)
def _roll_load(state: np.ndarray) -> RollHeader:
    return (state[0], state[1], state[2], state[3], state[4], state[5], state[6], state[7], state[8], state[9],
            state[10], state[11], state[12])


@njit(cache=True, _nrt=False)
def _roll_store(state: np.ndarray, h: RollHeader) -> None:
    (state[0], state[1], state[2], state[3], state[4], state[5], state[6], state[7], state[8], state[9],
     state[10], state[11], state[12]) = h


@njit(cache=True, _nrt=False)
def _roll_recompute_column(
    inputs: np.ndarray, last: int, q: int, w: int, k: float, squares: bool
) -> tuple[float, float]:
    """:func:`_roll_recompute` of the ring the window ``inputs[last - w + 1 : last + 1]`` would leave.

    ``q`` is the ring position after ``inputs[last]`` was pushed (the oldest slot): slot
    ``r`` holds ``inputs[last + 1 - q + r]`` for ``r < q``, else ``inputs[last + 1 - q + r - w]``.
    The slots are summed in the same order, so the sums have the same bits.
    """
    s1 = 0.0
    s2 = 0.0
    base = last + 1 - q
    for r in range(w):
        v = inputs[base + r if r < q else base + r - w]
        if math.isfinite(v):
            d = v - k
            s1 += d
            if squares:
                s2 += d * d
    return s1, s2


@njit(cache=True, _nrt=False)
def _roll_recompute(state: np.ndarray, w: int, k: float, squares: bool) -> tuple[float, float]:
    """Exact sums ``(S1, S2)`` of the ring buffer's non-NaN values shifted by ``k`` (one pass, slot order)."""
    return _roll_recompute_column(state, _R_RING + w - 1, 0, w, k, squares)


@njit(cache=True, _nrt=False, inline="always")
def _roll_add(h: RollHeader, w: int, old: float, x: float, squares: bool) -> RollHeader:
    """Take ``old`` out of the window sums (NaN: nothing leaves) and put ``x`` in.

    Everything of a push but the ring and its position: ``seen``, the count, the
    shifted compensated sums, the constant-run length, ``since`` and the ready flag.
    The caller checks :func:`_roll_due` afterwards.
    """
    ready, seen, p, count, nobs, k, s1, c1, s2, c2, since, prev, run = h
    if math.isfinite(old):
        count -= 1.0
        d = old - k
        s1, c1 = _neumaier(s1, c1, -d)
        if squares:
            s2, c2 = _neumaier(s2, c2, -(d * d))
    seen += 1.0
    if math.isfinite(x):
        if count == 0.0:
            k = x
            s1 = 0.0
            c1 = 0.0
            s2 = 0.0
            c2 = 0.0
        else:
            d = x - k
            s1, c1 = _neumaier(s1, c1, d)
            if squares:
                s2, c2 = _neumaier(s2, c2, d * d)
        count += 1.0
        nobs += 1.0
        if squares:
            if nobs > 1.0 and x == prev:
                run += 1.0
            else:
                run = 1.0
            prev = x
    since += 1.0
    if nobs >= w:
        ready = 1.0
    return ready, seen, p, count, nobs, k, s1, c1, s2, c2, since, prev, run


@njit(cache=True, _nrt=False, inline="always")
def _roll_due(h: RollHeader, w: int, squares: bool) -> bool:
    """Whether the sums are due for their exact recomputation."""
    since = h[10]
    return since >= w and (squares or since >= _RECOMPUTE_MIN) and h[3] > 0.0


@njit(cache=True, _nrt=False, inline="always")
def _roll_centre(h: RollHeader) -> float:
    """The new shift ``K`` of a recomputation: the current window mean."""
    return h[5] + (h[6] + h[7]) / h[3]


@njit(cache=True, _nrt=False, inline="always")
def _roll_rebased(h: RollHeader, k: float, s1: float, s2: float) -> RollHeader:
    """The header with the exact sums ``s1``, ``s2`` around ``k`` (compensations and ``since`` reset)."""
    return h[0], h[1], h[2], h[3], h[4], k, s1, 0.0, s2, 0.0, 0.0, h[11], h[12]


@njit(cache=True, _nrt=False, inline="always")
def _roll_next(state: np.ndarray, h: RollHeader, w: int, x: float, squares: bool) -> RollHeader:
    """Push ``x`` into the window and update the shifted sums ``S1 = sum(x-K)``, ``S2 = sum((x-K)^2)``.

    Sums are compensated (Neumaier) and recomputed exactly every ``window``
    events (``max(window, 64)`` for sum and mean, which do not cancel), O(1)
    amortised, around ``K`` moved to the current window mean, so the sums never
    cancel catastrophically: the error is bounded by the drift of the level within
    one period, not over the run.
    ``squares=False`` (sum, mean) skips ``S2`` and the constant-run length. The
    header travels as values (a batch loop keeps it in registers); only the ring
    lives in ``state``.
    """
    p = h[2]
    pos = int(p)
    old = state[_R_RING + pos] if h[1] >= w else _NAN
    state[_R_RING + pos] = x
    h = _roll_add(h, w, old, x, squares)
    h = (h[0], h[1], _next_pos(p, w), h[3], h[4], h[5], h[6], h[7], h[8], h[9], h[10], h[11], h[12])
    if _roll_due(h, w, squares):
        k = _roll_centre(h)
        s1, s2 = _roll_recompute(state, w, k, squares)
        h = _roll_rebased(h, k, s1, s2)
    return h


@njit(cache=True, _nrt=False)
def _roll_var(h: RollHeader) -> float:
    """Sample variance (ddof=1) of the window of a header; exactly 0 for a constant run (as pandas)."""
    n = h[3]
    if n < 2.0:
        return _NAN
    if h[12] >= n:
        return 0.0
    s1 = h[6] + h[7]
    v = ((h[8] + h[9]) - s1 * s1 / n) / (n - 1.0)
    return v if v > 0.0 else 0.0


@njit(cache=True, _nrt=False, inline="always")
def _roll_min_periods(kind_id: int, params: np.ndarray) -> float:
    """Values a rolling kind needs in its window before it has an output (sma: the whole window)."""
    return params[0] if kind_id == 30 else _min_periods(params)


@njit(cache=True, _nrt=False, inline="always")
def _roll_value(kind_id: int, h: RollHeader, min_periods: float, x: float) -> float:
    """Output of rolling kind ``kind_id`` (20 sum, 21 mean, 22 var, 23 std, 26 z-score, 30 sma)."""
    count = h[3]
    if not (count >= min_periods and count > 0.0):
        return _NAN
    if kind_id == 20:
        return count * h[5] + (h[6] + h[7])
    if kind_id == 21 or kind_id == 30:
        return h[5] + (h[6] + h[7]) / count
    if kind_id == 22:
        return _roll_var(h)
    if kind_id == 23:
        return math.sqrt(_roll_var(h))
    if not math.isfinite(x):
        return _NAN
    sd = math.sqrt(_roll_var(h))
    return (x - (h[5] + (h[6] + h[7]) / count)) / sd if sd > 0.0 else _NAN


@njit(cache=True, _nrt=False, inline="always")
def _roll_step(kind_id: int, state: np.ndarray, params: np.ndarray, x: float) -> float:
    h = _roll_next(state, _roll_load(state), int(params[0]), x, (kind_id == 22 or kind_id == 23 or kind_id == 26))
    _roll_store(state, h)
    return _roll_value(kind_id, h, _roll_min_periods(kind_id, params), x)


@njit(cache=True, _nrt=False, inline="always")
def _roll_run(kind_id: int, state: np.ndarray, params: np.ndarray, inputs: np.ndarray, result: np.ndarray) -> None:
    """The step kernel over a column, with the ring left alone after the first window.

    The first ``window`` events go through the ring as the step kernel does; from
    then on the value leaving the window is ``inputs[i - window]`` (the ring slot
    holds exactly that), recomputations read the window from ``inputs`` in ring
    order, and the ring and its position are written once at the end, so the state
    is the step kernel's, bit for bit.
    """
    w = int(params[0])
    n = result.shape[0]
    squares = (kind_id == 22 or kind_id == 23 or kind_id == 26)
    min_periods = _roll_min_periods(kind_id, params)
    p0 = int(state[2])
    h = _roll_load(state)
    head = min(n, w)
    for i in range(head):
        v = inputs[i]
        h = _roll_next(state, h, w, v, squares)
        result[i] = _roll_value(kind_id, h, min_periods, v)
    for i in range(head, n):
        v = inputs[i]
        h = _roll_add(h, w, inputs[i - w], v, squares)
        if _roll_due(h, w, squares):
            k = _roll_centre(h)
            s1, s2 = _roll_recompute_column(inputs, i, (p0 + i + 1) % w, w, k, squares)
            h = _roll_rebased(h, k, s1, s2)
        result[i] = _roll_value(kind_id, h, min_periods, v)
    if n > w:
        for i in range(n - w, n):
            state[_R_RING + (p0 + i) % w] = inputs[i]
        h = (h[0], h[1], float((p0 + n) % w), h[3], h[4], h[5], h[6], h[7], h[8], h[9], h[10], h[11], h[12])
    _roll_store(state, h)


@njit(cache=True, _nrt=False)
def rolling_sum_step(state: np.ndarray, params: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    """Rolling sum of the non-NaN values in the last ``window`` events.

    pandas: ``s.rolling(window, min_periods).sum()``. NaN policy: skip inside the
    window, NaN output while fewer than ``min_periods`` values (default: any NaN
    in a full window propagates, as pandas).
    """
    out[0] = _roll_step(20, state, params, x[0])


@njit(cache=True, _nrt=False)
def rolling_mean_step(state: np.ndarray, params: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    """Rolling mean of the window.

    pandas: ``s.rolling(window, min_periods).mean()``. NaN policy: as rolling_sum.
    """
    out[0] = _roll_step(21, state, params, x[0])


@njit(cache=True, _nrt=False)
def rolling_var_step(state: np.ndarray, params: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    """Rolling sample variance (ddof=1); 0 for a constant window.

    pandas: ``s.rolling(window, min_periods).var()``. NaN policy: as rolling_sum;
    NaN with fewer than 2 values.
    """
    out[0] = _roll_step(22, state, params, x[0])


@njit(cache=True, _nrt=False)
def rolling_std_step(state: np.ndarray, params: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    """Rolling sample standard deviation ``sqrt(rolling_var)``.

    pandas: ``s.rolling(window, min_periods).std()``. NaN policy: as rolling_var.
    """
    out[0] = _roll_step(23, state, params, x[0])


@njit(cache=True, _nrt=False)
def rolling_zscore_step(state: np.ndarray, params: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    """Rolling z-score ``(x - mean) / std`` of the last value against its window (ddof=1).

    pandas: ``(s - s.rolling(w).mean()) / s.rolling(w).std()``. NaN policy: a NaN
    input gives NaN, otherwise as rolling_var; a zero std gives NaN.
    """
    out[0] = _roll_step(26, state, params, x[0])


@njit(cache=True, _nrt=False)
def sma_step(state: np.ndarray, params: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    """Simple moving average over ``window`` events.

    TA-Lib: ``SMA(x, timeperiod=window)``; pandas: ``s.rolling(window).mean()``.
    NaN policy: propagate (NaN while a NaN is in the window).
    """
    out[0] = _roll_step(30, state, params, x[0])


def _roll_state_size(params: np.ndarray) -> int:
    return _R_RING + int(params[0])


def _window_warmup(params: np.ndarray) -> int:
    return int(params[0])


def _check_min_periods(kwargs: dict[str, float]) -> dict[str, float]:
    """Reject ``min_periods`` larger than ``window`` (0 means ``window``)."""
    try:
        if "min_periods" in kwargs and "window" in kwargs and float(kwargs["min_periods"]) > float(kwargs["window"]):
            raise FeatureError(
                f"rolling feature: min_periods ({kwargs['min_periods']}) must be <= window ({kwargs['window']})"
            )
    except (TypeError, ValueError):
        pass  # Param.check reports the non-numeric value with its name
    return kwargs


# ----------------------------------------------------------------------------- rolling min / max
# state: [ready, seen, pos, count, nobs, head, size, ring[w], dq_idx[w], dq_val[w]]
_M_SEEN, _M_POS, _M_COUNT, _M_NOBS, _M_HEAD, _M_SIZE = range(1, 7)
_M_RING = 7


#: The rolling-extreme header as a tuple (ready, seen, pos, count, nobs, head, size).
ExtremeHeader = tuple[float, float, int, float, float, int, int]


@njit(cache=True, _nrt=False, inline="always")
def _extreme_load(state: np.ndarray) -> ExtremeHeader:
    return (state[0], state[_M_SEEN], int(state[_M_POS]), state[_M_COUNT], state[_M_NOBS], int(state[_M_HEAD]),
            int(state[_M_SIZE]))


@njit(cache=True, _nrt=False, inline="always")
def _extreme_store(state: np.ndarray, h: ExtremeHeader) -> None:
    state[0], state[_M_SEEN], state[_M_POS], state[_M_COUNT], state[_M_NOBS], state[_M_HEAD], state[_M_SIZE] = h


@njit(cache=True, _nrt=False, inline="always")
def _extreme_next(state: np.ndarray, h: ExtremeHeader, w: int, x: float, sign: float) -> ExtremeHeader:
    """Push ``x`` into the window and the monotonic deque of ``sign * x`` (the ring and deque live in ``state``)."""
    if not math.isfinite(x):
        x = _NAN
    ready, t, pos, count, nobs, head, size = h
    ring = _M_RING
    idx = _M_RING + w
    val = _M_RING + 2 * w
    if t >= w:
        old = state[ring + pos]
        if old == old:
            count -= 1.0
    state[ring + pos] = x
    pos = _wrap(pos + 1, w)
    while size > 0 and state[idx + head] <= t - w:
        head = _wrap(head + 1, w)
        size -= 1
    if x == x:
        count += 1.0
        nobs += 1.0
        y = sign * x
        while size > 0 and state[val + _wrap(head + size - 1, w)] <= y:
            size -= 1
        slot = _wrap(head + size, w)
        state[idx + slot] = t
        state[val + slot] = y
        size += 1
    if nobs >= w:
        ready = 1.0
    return ready, t + 1.0, pos, count, nobs, head, size


@njit(cache=True, _nrt=False, inline="always")
def _extreme_value(state: np.ndarray, h: ExtremeHeader, w: int, min_periods: float, sign: float) -> float:
    if h[6] > 0 and h[3] >= min_periods:
        return sign * state[_M_RING + 2 * w + h[5]]
    return _NAN


@njit(cache=True, _nrt=False)
def _roll_extreme(state: np.ndarray, params: np.ndarray, x: float, sign: float) -> float:
    """Monotonic-deque rolling maximum of ``sign * x`` (sign=-1 gives the minimum); O(1) amortised."""
    w = int(params[0])
    h = _extreme_next(state, _extreme_load(state), w, x, sign)
    _extreme_store(state, h)
    return _extreme_value(state, h, w, _min_periods(params), sign)


@njit(cache=True, _nrt=False, inline="always")
def _extreme_run(sign: float, state: np.ndarray, params: np.ndarray, inputs: np.ndarray, result: np.ndarray) -> None:
    """:func:`_roll_extreme` over a column, the header in registers (stored once at the end): the same outputs and state."""
    w = int(params[0])
    min_periods = _min_periods(params)
    h = _extreme_load(state)
    for i in range(result.shape[0]):
        h = _extreme_next(state, h, w, inputs[i], sign)
        result[i] = _extreme_value(state, h, w, min_periods, sign)
    _extreme_store(state, h)


@njit(cache=True, _nrt=False)
def rolling_max_step(state: np.ndarray, params: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    """Rolling maximum of the window (monotonic deque in the state row).

    pandas: ``s.rolling(window, min_periods).max()``; TA-Lib: ``MAX``. NaN policy: as rolling_sum.
    """
    out[0] = _roll_extreme(state, params, x[0], 1.0)


@njit(cache=True, _nrt=False)
def rolling_min_step(state: np.ndarray, params: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    """Rolling minimum of the window (monotonic deque in the state row).

    pandas: ``s.rolling(window, min_periods).min()``; TA-Lib: ``MIN``. NaN policy: as rolling_sum.
    """
    out[0] = _roll_extreme(state, params, x[0], -1.0)


def _extreme_state_size(params: np.ndarray) -> int:
    return _M_RING + 3 * int(params[0])


# ----------------------------------------------------------------------------- rolling rank
# state: [ready, seen, pos, count, nobs, ring[w]]
_K_SEEN, _K_POS, _K_COUNT, _K_NOBS = range(1, 5)
_K_RING = 5


@njit(cache=True, _nrt=False)
def rolling_rank_step(state: np.ndarray, params: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    """Percentile rank of the last value in its window, ties averaged, in (0, 1].

    ``(#{y < x} + (#{y == x} + 1) / 2) / count`` over the non-NaN window values.
    pandas: ``s.rolling(window, min_periods).rank(pct=True)`` (method="average").
    NaN policy: a NaN input gives NaN; otherwise as rolling_sum. O(window) per event.
    """
    w = int(params[0])
    v = x[0] if math.isfinite(x[0]) else _NAN
    pos = int(state[_K_POS])
    if state[_K_SEEN] >= w:
        old = state[_K_RING + pos]
        if old == old:
            state[_K_COUNT] -= 1.0
    state[_K_RING + pos] = v
    state[_K_POS] = _wrap(pos + 1, w)
    state[_K_SEEN] += 1.0
    if v == v:
        state[_K_COUNT] += 1.0
        state[_K_NOBS] += 1.0
    if state[_K_NOBS] >= w:
        state[0] = 1.0
    n = state[_K_COUNT]
    if v == v and n >= _min_periods(params):
        less = 0.0
        equal = 0.0
        for i in range(min(int(state[_K_SEEN]), w)):
            y = state[_K_RING + i]
            if y < v:
                less += 1.0
            elif y == v:
                equal += 1.0
        out[0] = (less + (equal + 1.0) / 2.0) / n
    else:
        out[0] = _NAN


def _rank_state_size(params: np.ndarray) -> int:
    return _K_RING + int(params[0])


# ----------------------------------------------------------------------------- EMA (TA-Lib seeding)
# state: [ready, n, seed_sum, ema, k]; k = 2 / (span + 1), stored when the seed completes


@njit(cache=True, _nrt=False, inline="always")
def _ema_next(
    ready: float, n: float, seed: float, ema: float, k: float, span: float, v: float
) -> tuple[float, float, float, float, float]:
    """Advance the TA-Lib EMA header ``(ready, n, seed_sum, ema, k)`` by ``v``."""
    if math.isfinite(v):
        if ready != 0.0:
            ema = (v - ema) * k + ema
        else:
            seed += v
            n += 1.0
            if n >= span:
                ema = seed / span
                k = 2.0 / (span + 1.0)
                ready = 1.0
    return ready, n, seed, ema, k


@njit(cache=True, _nrt=False)
def ema_step(state: np.ndarray, params: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    """TA-Lib exponential moving average, ``k = 2 / (span + 1)``.

    Seeded with the SMA of the first ``span`` values, then
    ``ema = (x - ema) * k + ema`` — the same operations as ``talib.EMA(x, span)``
    (TA-Lib's default compatibility mode), so they agree after warm-up. For the
    pandas ``ewm(span).mean()`` use ``ewm_mean``. NaN policy: skip (a NaN input
    leaves the state unchanged and repeats the current value).
    """
    was_ready = state[0]
    ready, n, seed, ema, k = _ema_next(was_ready, state[1], state[2], state[3], state[4], params[0], x[0])
    state[3] = ema
    if was_ready == 0.0:  # once ready, only the EMA moves
        state[0], state[1], state[2], state[4] = ready, n, seed, k
    out[0] = ema if ready != 0.0 else _NAN


@njit(cache=True, _nrt=False, inline="always")
def _ema_run(state: np.ndarray, params: np.ndarray, inputs: np.ndarray, result: np.ndarray) -> None:
    ready, n, seed, ema, k = state[0], state[1], state[2], state[3], state[4]
    span = params[0]
    for i in range(result.shape[0]):
        ready, n, seed, ema, k = _ema_next(ready, n, seed, ema, k, span, inputs[i])
        result[i] = ema if ready != 0.0 else _NAN
    state[0], state[1], state[2], state[3], state[4] = ready, n, seed, ema, k


def _ema_state_size(params: np.ndarray) -> int:
    return 5


def ema_coefficient(slot: int, param: str = "span", seeded: int | None = 1, seeded_after: str | None = None) -> Coefficient:
    """The TA-Lib EMA's ``k = 2 / (param + 1)``, kept at ``state[slot]`` once its seed completes.

    Named ``k`` for the ``span`` of ``ema``, ``k_<param>`` for the three EMAs of ``macd``;
    ``state[seeded]`` counts the values seen while seeding (:class:`Coefficient`).
    """
    return Coefficient("k" if param == "span" else f"k_{param}", slot, param,
                       lambda v: 2.0 / (v + 1.0), lambda k: 2.0 / k - 1.0, seeded=seeded, seeded_after=seeded_after)  # fmt: skip


# ----------------------------------------------------------------------------- WMA
# state: [ready, seen, pos, count, nobs, S, N, since, ring[w]]
_W_SEEN, _W_POS, _W_COUNT, _W_NOBS, _W_S, _W_N, _W_SINCE = range(1, 8)
_W_RING = 8


@njit(cache=True, _nrt=False)
def wma_step(state: np.ndarray, params: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    """Linearly weighted moving average ``sum(i * x_i) / (w (w + 1) / 2)``, newest weight ``w``.

    TA-Lib: ``WMA(x, timeperiod=window)``. Incremental ``N' = N - S + w x`` with an
    exact recomputation every ``max(window, 64)`` events. NaN policy: propagate
    (NaN while a NaN is in the window).
    """
    w = int(params[0])
    v = x[0]
    seen = state[_W_SEEN]
    pos = int(state[_W_POS])
    vz = v if math.isfinite(v) else 0.0
    if seen >= w:
        old = state[_W_RING + pos]
        if math.isfinite(old):
            state[_W_COUNT] -= 1.0
        state[_W_N] = state[_W_N] - state[_W_S] + w * vz
        state[_W_S] = state[_W_S] - (old if math.isfinite(old) else 0.0) + vz
    else:
        state[_W_N] += (seen + 1.0) * vz
        state[_W_S] += vz
    state[_W_RING + pos] = v
    pos = _wrap(pos + 1, w)
    state[_W_POS] = pos
    state[_W_SEEN] = seen + 1.0
    if math.isfinite(v):
        state[_W_COUNT] += 1.0
        state[_W_NOBS] += 1.0
    state[_W_SINCE] += 1.0
    if seen + 1.0 >= w and state[_W_SINCE] >= max(w, _RECOMPUTE_MIN):
        s = 0.0
        nsum = 0.0
        for j in range(w):
            y = state[_W_RING + _wrap(pos + j, w)]
            if math.isfinite(y):
                s += y
                nsum += (j + 1.0) * y
        state[_W_S] = s
        state[_W_N] = nsum
        state[_W_SINCE] = 0.0
    if state[_W_NOBS] >= w:
        state[0] = 1.0
    if state[_W_COUNT] >= w:
        out[0] = state[_W_N] / (w * (w + 1.0) / 2.0)
    else:
        out[0] = _NAN


@njit(cache=True, _nrt=False)
def _wma_run(state: np.ndarray, params: np.ndarray, inputs: np.ndarray, result: np.ndarray) -> None:
    """:func:`wma_step` over a column with the header in registers and the ring written at the end.

    The value leaving the window at event ``i`` is ``inputs[i - w]`` once the column has
    filled a window (before, the ring slot of the state the run started from); exact
    recomputations read the window the same way, in ring order. Outputs and final state
    are the step kernel's, bit for bit.
    """
    w = int(params[0])
    n = result.shape[0]
    p0 = int(state[_W_POS])
    seen = state[_W_SEEN]
    count = state[_W_COUNT]
    nobs = state[_W_NOBS]
    s = state[_W_S]
    nsum = state[_W_N]
    since = state[_W_SINCE]
    ready = state[0]
    every = max(w, _RECOMPUTE_MIN)
    div = w * (w + 1.0) / 2.0
    for i in range(n):
        v = inputs[i]
        vz = v if math.isfinite(v) else 0.0
        if seen >= w:
            old = inputs[i - w] if i >= w else state[_W_RING + (p0 + i) % w]
            if math.isfinite(old):
                count -= 1.0
            nsum = nsum - s + w * vz
            s = s - (old if math.isfinite(old) else 0.0) + vz
        else:
            nsum += (seen + 1.0) * vz
            s += vz
        if math.isfinite(v):
            count += 1.0
            nobs += 1.0
        since += 1.0
        seen += 1.0
        if seen >= w and since >= every:
            s = 0.0
            nsum = 0.0
            for j in range(w):
                k = i - w + 1 + j
                y = inputs[k] if k >= 0 else state[_W_RING + (p0 + k + w) % w]
                if math.isfinite(y):
                    s += y
                    nsum += (j + 1.0) * y
            since = 0.0
        if nobs >= w:
            ready = 1.0
        result[i] = nsum / div if count >= w else _NAN
    for i in range(max(0, n - w), n):
        state[_W_RING + (p0 + i) % w] = inputs[i]
    state[0] = ready
    state[_W_SEEN] = seen
    state[_W_POS] = float((p0 + n) % w)
    state[_W_COUNT] = count
    state[_W_NOBS] = nobs
    state[_W_S] = s
    state[_W_N] = nsum
    state[_W_SINCE] = since


def _wma_state_size(params: np.ndarray) -> int:
    return _W_RING + int(params[0])


# ----------------------------------------------------------------------------- batch loops of the kinds
# ``FeatureKind.batch`` of the kinds with a header small enough to keep in registers: the
# step kernel over a whole column (flattened, one input and one output per row), with the
# same arithmetic as the step kernel, so outputs and final state agree bit for bit.


@njit(cache=True, _nrt=False, inline="always")
def ret_batch(state: np.ndarray, params: np.ndarray, inputs: np.ndarray, result: np.ndarray) -> None:
    """:func:`ret_step` over a column."""
    _lag_run(1, state, params, inputs, result)


@njit(cache=True, _nrt=False, inline="always")
def log_ret_batch(state: np.ndarray, params: np.ndarray, inputs: np.ndarray, result: np.ndarray) -> None:
    """:func:`log_ret_step` over a column."""
    _lag_run(2, state, params, inputs, result)


@njit(cache=True, _nrt=False, inline="always")
def ewm_mean_batch(state: np.ndarray, params: np.ndarray, inputs: np.ndarray, result: np.ndarray) -> None:
    """:func:`ewm_mean_step` over a column."""
    _ewm_run(10, state, params, inputs, result)


@njit(cache=True, _nrt=False, inline="always")
def ewm_var_batch(state: np.ndarray, params: np.ndarray, inputs: np.ndarray, result: np.ndarray) -> None:
    """:func:`ewm_var_step` over a column."""
    _ewm_run(11, state, params, inputs, result)


@njit(cache=True, _nrt=False, inline="always")
def ewm_std_batch(state: np.ndarray, params: np.ndarray, inputs: np.ndarray, result: np.ndarray) -> None:
    """:func:`ewm_std_step` over a column."""
    _ewm_run(12, state, params, inputs, result)


@njit(cache=True, _nrt=False, inline="always")
def ewm_zscore_batch(state: np.ndarray, params: np.ndarray, inputs: np.ndarray, result: np.ndarray) -> None:
    """:func:`ewm_zscore_step` over a column."""
    _ewm_run(13, state, params, inputs, result)


@njit(cache=True, _nrt=False, inline="always")
def rolling_sum_batch(state: np.ndarray, params: np.ndarray, inputs: np.ndarray, result: np.ndarray) -> None:
    """:func:`rolling_sum_step` over a column."""
    _roll_run(20, state, params, inputs, result)


@njit(cache=True, _nrt=False, inline="always")
def rolling_mean_batch(state: np.ndarray, params: np.ndarray, inputs: np.ndarray, result: np.ndarray) -> None:
    """:func:`rolling_mean_step` over a column."""
    _roll_run(21, state, params, inputs, result)


@njit(cache=True, _nrt=False, inline="always")
def rolling_var_batch(state: np.ndarray, params: np.ndarray, inputs: np.ndarray, result: np.ndarray) -> None:
    """:func:`rolling_var_step` over a column."""
    _roll_run(22, state, params, inputs, result)


@njit(cache=True, _nrt=False, inline="always")
def rolling_std_batch(state: np.ndarray, params: np.ndarray, inputs: np.ndarray, result: np.ndarray) -> None:
    """:func:`rolling_std_step` over a column."""
    _roll_run(23, state, params, inputs, result)


@njit(cache=True, _nrt=False, inline="always")
def rolling_min_batch(state: np.ndarray, params: np.ndarray, inputs: np.ndarray, result: np.ndarray) -> None:
    """:func:`rolling_min_step` over a column."""
    _extreme_run(-1.0, state, params, inputs, result)


@njit(cache=True, _nrt=False, inline="always")
def rolling_max_batch(state: np.ndarray, params: np.ndarray, inputs: np.ndarray, result: np.ndarray) -> None:
    """:func:`rolling_max_step` over a column."""
    _extreme_run(1.0, state, params, inputs, result)


@njit(cache=True, _nrt=False, inline="always")
def rolling_zscore_batch(state: np.ndarray, params: np.ndarray, inputs: np.ndarray, result: np.ndarray) -> None:
    """:func:`rolling_zscore_step` over a column."""
    _roll_run(26, state, params, inputs, result)


@njit(cache=True, _nrt=False, inline="always")
def sma_batch(state: np.ndarray, params: np.ndarray, inputs: np.ndarray, result: np.ndarray) -> None:
    """:func:`sma_step` over a column."""
    _roll_run(30, state, params, inputs, result)


@njit(cache=True, _nrt=False, inline="always")
def ema_batch(state: np.ndarray, params: np.ndarray, inputs: np.ndarray, result: np.ndarray) -> None:
    """:func:`ema_step` over a column."""
    _ema_run(state, params, inputs, result)


@njit(cache=True, _nrt=False, inline="always")
def wma_batch(state: np.ndarray, params: np.ndarray, inputs: np.ndarray, result: np.ndarray) -> None:
    """:func:`wma_step` over a column."""
    _wma_run(state, params, inputs, result)


# ----------------------------------------------------------------------------- registry

_X = ("x",)
_V = ("value",)
_LAG = (Param("lag", 1, low=1, high=1_000_000, integer=True),)
_EWM = (Param("com", None, low=0.0), Param("min_periods", None, low=1, integer=True))
_ROLL = (Param("window", None, low=1, high=1_000_000, integer=True),
         Param("min_periods", 0, low=0, high=1_000_000, integer=True))
_ROLL2 = (Param("window", None, low=2, high=1_000_000, integer=True),
          Param("min_periods", 0, low=0, high=1_000_000, integer=True))
_WINDOW = (Param("window", None, low=1, high=1_000_000, integer=True),)
_SPAN = (Param("span", None, low=1, high=1_000_000, integer=True),)


_EWM_USAGE = "one of span, halflife, alpha, com (required); min_periods=span rounded up"


def _kind(
    name: str, kind_id: int, params: tuple[Param, ...], size, step, warmup, normalize=None, batch=None
) -> FeatureKind:
    ewm = normalize is _ewm_normalize
    coefficients = (_EWM_FACTOR,) if ewm else (ema_coefficient(4),) if step is ema_step else ()
    return FeatureKind(name, kind_id, _X, _V, params, size, step, normalize=normalize, warmup=warmup, batch=batch,
                       usage=_EWM_USAGE if ewm else None, coefficients=coefficients)  # fmt: skip


KINDS: tuple[FeatureKind, ...] = (
    _kind("ret", 1, _LAG, _lag_state_size, ret_step, _lag_warmup, batch=ret_batch),
    _kind("log_ret", 2, _LAG, _lag_state_size, log_ret_step, _lag_warmup, batch=log_ret_batch),
    _kind("ewm_mean", 10, _EWM, _ewm_state_size, ewm_mean_step, _ewm_warmup, _ewm_normalize, batch=ewm_mean_batch),
    _kind("ewm_var", 11, _EWM, _ewm_state_size, ewm_var_step, _ewm_warmup, _ewm_normalize, batch=ewm_var_batch),
    _kind("ewm_std", 12, _EWM, _ewm_state_size, ewm_std_step, _ewm_warmup, _ewm_normalize, batch=ewm_std_batch),
    _kind("ewm_zscore", 13, _EWM, _ewm_state_size, ewm_zscore_step, _ewm_warmup, _ewm_normalize,
          batch=ewm_zscore_batch),
    _kind("ewm_skew", 14, _EWM, _ewm_state_size, ewm_skew_step, _ewm_warmup, _ewm_normalize),
    _kind("ewm_kurt", 15, _EWM, _ewm_state_size, ewm_kurt_step, _ewm_warmup, _ewm_normalize),
    _kind("rolling_sum", 20, _ROLL, _roll_state_size, rolling_sum_step, _window_warmup, _check_min_periods,
          batch=rolling_sum_batch),
    _kind("rolling_mean", 21, _ROLL, _roll_state_size, rolling_mean_step, _window_warmup, _check_min_periods,
          batch=rolling_mean_batch),
    _kind("rolling_var", 22, _ROLL2, _roll_state_size, rolling_var_step, _window_warmup, _check_min_periods,
          batch=rolling_var_batch),
    _kind("rolling_std", 23, _ROLL2, _roll_state_size, rolling_std_step, _window_warmup, _check_min_periods,
          batch=rolling_std_batch),
    _kind("rolling_min", 24, _ROLL, _extreme_state_size, rolling_min_step, _window_warmup, _check_min_periods,
          batch=rolling_min_batch),
    _kind("rolling_max", 25, _ROLL, _extreme_state_size, rolling_max_step, _window_warmup, _check_min_periods,
          batch=rolling_max_batch),
    _kind("rolling_zscore", 26, _ROLL2, _roll_state_size, rolling_zscore_step, _window_warmup, _check_min_periods,
          batch=rolling_zscore_batch),
    _kind("rolling_rank", 27, _ROLL, _rank_state_size, rolling_rank_step, _window_warmup, _check_min_periods),
    _kind("sma", 30, _WINDOW, _roll_state_size, sma_step, _window_warmup, batch=sma_batch),
    _kind("ema", 31, _SPAN, _ema_state_size, ema_step, _window_warmup, batch=ema_batch),
    _kind("wma", 32, _WINDOW, _wma_state_size, wma_step, _window_warmup, batch=wma_batch),
)


@njit(cache=True, inline="always")
def dispatch(kind_id: int, state: np.ndarray, params: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    """Call the step kernel of ``kind_id`` (an ``if`` chain over the ids of :data:`KINDS`)."""
    if kind_id == 1:
        ret_step(state, params, x, out)
    elif kind_id == 2:
        log_ret_step(state, params, x, out)
    elif kind_id == 10:
        ewm_mean_step(state, params, x, out)
    elif kind_id == 11:
        ewm_var_step(state, params, x, out)
    elif kind_id == 12:
        ewm_std_step(state, params, x, out)
    elif kind_id == 13:
        ewm_zscore_step(state, params, x, out)
    elif kind_id == 14:
        ewm_skew_step(state, params, x, out)
    elif kind_id == 15:
        ewm_kurt_step(state, params, x, out)
    elif kind_id == 20:
        rolling_sum_step(state, params, x, out)
    elif kind_id == 21:
        rolling_mean_step(state, params, x, out)
    elif kind_id == 22:
        rolling_var_step(state, params, x, out)
    elif kind_id == 23:
        rolling_std_step(state, params, x, out)
    elif kind_id == 24:
        rolling_min_step(state, params, x, out)
    elif kind_id == 25:
        rolling_max_step(state, params, x, out)
    elif kind_id == 26:
        rolling_zscore_step(state, params, x, out)
    elif kind_id == 27:
        rolling_rank_step(state, params, x, out)
    elif kind_id == 30:
        sma_step(state, params, x, out)
    elif kind_id == 31:
        ema_step(state, params, x, out)
    elif kind_id == 32:
        wma_step(state, params, x, out)


#: Kind ids with a batch loop of their own (``FeatureKind.batch``).
BATCH_KINDS = frozenset(kind.kind_id for kind in KINDS if kind.batch is not None)
