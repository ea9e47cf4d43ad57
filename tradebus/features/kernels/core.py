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
* Ready flags are sticky: a kernel is ready once it has seen its warm-up count
  of non-NaN inputs (``FeatureKind.warmup``); a later NaN still yields a NaN
  output where the policy says so.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from tradebus.errors import FeatureError
from tradebus.features.registry import FeatureKind, Param

__all__ = ["KINDS", "dispatch"]

_NAN = np.nan
# Every kernel and helper here is compiled with ``_nrt=False``: none allocates, and
# without NRT Numba emits no incref/decref call for each array passed to a helper
# (measured: ~40 such calls per event in a kernel with one helper, 3x the cost).
#: Exact recomputation period of the incremental rolling sums (at least the window).
_RECOMPUTE_MIN = 64


# ----------------------------------------------------------------------------- helpers


@njit(cache=True, _nrt=False)
def _neumaier(total: float, comp: float, value: float) -> tuple[float, float]:
    """Compensated (Neumaier) addition: returns the new ``(total, compensation)``."""
    t = total + value
    if abs(total) >= abs(value):
        comp += (total - t) + value
    else:
        comp += (value - t) + total
    return t, comp


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
def ret_step(state: np.ndarray, params: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    """Simple return ``x[t] / x[t-lag] - 1``.

    pandas: ``s.pct_change(lag, fill_method=None)``; TA-Lib: ``ROCR(x, lag) - 1``.
    NaN policy: propagate (a NaN at either end gives NaN); a zero base gives NaN
    (pandas gives ±inf). Ready after ``lag + 1`` events.
    """
    old = _lagged(state, int(params[0]), x[0])
    if old == old and x[0] == x[0] and old != 0.0:
        out[0] = x[0] / old - 1.0
    else:
        out[0] = _NAN


@njit(cache=True, _nrt=False)
def log_ret_step(state: np.ndarray, params: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    """Log return ``log(x[t] / x[t-lag])``.

    pandas: ``np.log(s / s.shift(lag))``. NaN policy: propagate; a non-positive
    price at either end gives NaN. Ready after ``lag + 1`` events.
    """
    old = _lagged(state, int(params[0]), x[0])
    if old > 0.0 and x[0] > 0.0:
        out[0] = math.log(x[0] / old)
    else:
        out[0] = _NAN


def _lag_state_size(params: np.ndarray) -> int:
    return 3 + int(params[0])


def _lag_warmup(params: np.ndarray) -> int:
    return int(params[0]) + 1


# ----------------------------------------------------------------------------- EWM
# state: [ready, nobs, started, mean, cov, sum_wt, sum_wt2, old_wt, W, cmean, M2, M3, M4]
_E_NOBS, _E_STARTED, _E_MEAN, _E_COV, _E_SW, _E_SW2, _E_OLDWT = range(1, 8)
_E_W, _E_CMEAN, _E_M2, _E_M3, _E_M4 = range(8, 13)
_EWM_STATE = 13


@njit(cache=True, _nrt=False)
def _ewm_update(state: np.ndarray, params: np.ndarray, x: float) -> bool:
    """Advance the pandas ``ewm(adjust=True, ignore_na=False)`` mean/cov recurrence.

    Returns whether ``nobs >= min_periods`` (and sets the sticky ready flag).
    """
    factor = 1.0 - 1.0 / (1.0 + params[0])
    obs = x == x
    if obs:
        state[_E_NOBS] += 1.0
    if state[_E_STARTED] != 0.0:
        state[_E_SW] *= factor
        state[_E_SW2] *= factor * factor
        old_wt = state[_E_OLDWT] * factor
        if obs:
            old_mean = state[_E_MEAN]
            mean = old_mean
            if mean != x:
                mean = (old_wt * old_mean + x) / (old_wt + 1.0)
            d_old = old_mean - mean
            d_new = x - mean
            state[_E_COV] = (old_wt * (state[_E_COV] + d_old * d_old) + d_new * d_new) / (old_wt + 1.0)
            state[_E_MEAN] = mean
            state[_E_SW] += 1.0
            state[_E_SW2] += 1.0
            old_wt += 1.0
        state[_E_OLDWT] = old_wt
    elif obs:
        state[_E_STARTED] = 1.0
        state[_E_MEAN] = x
        state[_E_COV] = 0.0
        state[_E_SW] = 1.0
        state[_E_SW2] = 1.0
        state[_E_OLDWT] = 1.0
    if state[_E_NOBS] >= params[1]:
        state[0] = 1.0
        return True
    return False


@njit(cache=True, _nrt=False)
def _ewm_var(state: np.ndarray) -> float:
    """Bias-corrected EWM variance (pandas ``bias=False``), NaN when undefined."""
    num = state[_E_SW] * state[_E_SW]
    den = num - state[_E_SW2]
    if den > 0.0:
        return (num / den) * state[_E_COV]
    return _NAN


@njit(cache=True, _nrt=False)
def ewm_mean_step(state: np.ndarray, params: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    """Exponentially weighted mean ``sum(w_i x_i) / sum(w_i)``, ``w_i = (1-alpha)^(t-i)``.

    pandas: ``s.ewm(com=com, adjust=True, min_periods=min_periods).mean()`` (the same
    recurrence, so the results agree to the last bits). NaN policy: skip (ages the
    weights, repeats the previous mean).
    """
    if _ewm_update(state, params, x[0]):
        out[0] = state[_E_MEAN]
    else:
        out[0] = _NAN


@njit(cache=True, _nrt=False)
def ewm_var_step(state: np.ndarray, params: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    """Exponentially weighted variance, bias corrected.

    pandas: ``s.ewm(com=com, adjust=True, min_periods=min_periods).var()`` (``bias=False``).
    NaN policy: skip (ages the weights, repeats the previous estimate).
    """
    if _ewm_update(state, params, x[0]):
        out[0] = _ewm_var(state)
    else:
        out[0] = _NAN


@njit(cache=True, _nrt=False)
def ewm_std_step(state: np.ndarray, params: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    """Exponentially weighted standard deviation ``sqrt(ewm_var)``.

    pandas: ``s.ewm(com=com, adjust=True, min_periods=min_periods).std()``.
    NaN policy: skip (ages the weights, repeats the previous estimate).
    """
    if _ewm_update(state, params, x[0]):
        out[0] = math.sqrt(_ewm_var(state))
    else:
        out[0] = _NAN


@njit(cache=True, _nrt=False)
def ewm_zscore_step(state: np.ndarray, params: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    """EWM z-score ``(x - ewm_mean) / ewm_std``, both including the current ``x``.

    pandas: ``(s - s.ewm(...).mean()) / s.ewm(...).std()``. NaN policy: propagate
    (a NaN input gives NaN; it still ages the weights). A zero std gives NaN.
    """
    v = x[0]
    if _ewm_update(state, params, v) and v == v:
        sd = math.sqrt(_ewm_var(state))
        out[0] = (v - state[_E_MEAN]) / sd if sd > 0.0 else _NAN
    else:
        out[0] = _NAN


@njit(cache=True, _nrt=False)
def _ewm_central_update(state: np.ndarray, params: np.ndarray, x: float) -> bool:
    """Advance the weighted central moments ``W, mean, M2, M3, M4`` (Pébay's update).

    The old moments decay by ``1 - alpha`` every event (NaN included), then ``x``
    joins with weight 1. Returns whether ``nobs >= min_periods``.
    """
    ready = _ewm_update(state, params, x)
    factor = 1.0 - 1.0 / (1.0 + params[0])
    wa = state[_E_W] * factor
    m2 = state[_E_M2] * factor
    m3 = state[_E_M3] * factor
    m4 = state[_E_M4] * factor
    mean = state[_E_CMEAN]
    if x == x:
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
_R_SEEN, _R_POS, _R_COUNT, _R_NOBS, _R_K, _R_S1, _R_C1, _R_S2, _R_C2, _R_SINCE, _R_PREV, _R_RUN = range(1, 13)
_R_RING = 13


@njit(cache=True, _nrt=False)
def _min_periods(params: np.ndarray) -> float:
    w = params[0]
    mp = params[1]
    return w if mp == 0.0 or mp > w else mp


@njit(cache=True, _nrt=False)
def _roll_recompute(state: np.ndarray, w: int) -> None:
    """Exact two-pass recomputation of the shifted sums from the ring buffer."""
    n = 0
    total = 0.0
    for i in range(w):
        v = state[_R_RING + i]
        if v == v:
            total += v
            n += 1
    k = total / n if n > 0 else 0.0
    s1 = 0.0
    s2 = 0.0
    for i in range(w):
        v = state[_R_RING + i]
        if v == v:
            d = v - k
            s1 += d
            s2 += d * d
    state[_R_K] = k
    state[_R_S1] = s1
    state[_R_C1] = 0.0
    state[_R_S2] = s2
    state[_R_C2] = 0.0
    state[_R_SINCE] = 0.0


@njit(cache=True, _nrt=False)
def _roll_update(state: np.ndarray, w: int, min_periods: float, x: float, squares: bool) -> bool:
    """Push ``x`` into the window and update the shifted sums ``S1 = sum(x-K)``, ``S2 = sum((x-K)^2)``.

    Sums are compensated (Neumaier) and recomputed exactly (two-pass) every
    ``window`` events, O(1) amortised; ``K`` is the window mean at the last
    recomputation, so the sums never cancel catastrophically: the error is
    bounded by the drift of the level within one window, not over the run.
    ``squares=False`` (sum, mean) skips ``S2`` and the constant-run length. Returns
    whether the window holds at least ``min_periods`` non-NaN values.
    """
    # Header fields are read once into locals and stored once: in a batch loop a field
    # updated twice through memory (remove the old value, add the new) doubles its chain.
    seen = state[_R_SEEN]
    p = state[_R_POS]
    pos = int(p)
    count = state[_R_COUNT]
    k = state[_R_K]
    s1 = state[_R_S1]
    c1 = state[_R_C1]
    s2 = state[_R_S2]
    c2 = state[_R_C2]
    if seen >= w:
        old = state[_R_RING + pos]
        if old == old:
            count -= 1.0
            d = old - k
            s1, c1 = _neumaier(s1, c1, -d)
            if squares:
                s2, c2 = _neumaier(s2, c2, -(d * d))
    state[_R_RING + pos] = x
    state[_R_POS] = _next_pos(p, w)
    state[_R_SEEN] = seen + 1.0
    nobs = state[_R_NOBS]
    if x == x:
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
            if nobs > 1.0 and x == state[_R_PREV]:
                state[_R_RUN] += 1.0
            else:
                state[_R_RUN] = 1.0
            state[_R_PREV] = x
    state[_R_COUNT] = count
    state[_R_NOBS] = nobs
    state[_R_K] = k
    state[_R_S1] = s1
    state[_R_C1] = c1
    state[_R_S2] = s2
    state[_R_C2] = c2
    since = state[_R_SINCE] + 1.0
    state[_R_SINCE] = since
    if since >= w:
        _roll_recompute(state, w)
    if nobs >= w:
        state[0] = 1.0
    return count >= min_periods and count > 0.0


@njit(cache=True, _nrt=False)
def _roll_mean(state: np.ndarray) -> float:
    return state[_R_K] + (state[_R_S1] + state[_R_C1]) / state[_R_COUNT]


@njit(cache=True, _nrt=False)
def _roll_var(state: np.ndarray) -> float:
    """Sample variance (ddof=1) of the window; exactly 0 for a constant run (as pandas)."""
    n = state[_R_COUNT]
    if n < 2.0:
        return _NAN
    if state[_R_RUN] >= n:
        return 0.0
    s1 = state[_R_S1] + state[_R_C1]
    v = ((state[_R_S2] + state[_R_C2]) - s1 * s1 / n) / (n - 1.0)
    return v if v > 0.0 else 0.0


@njit(cache=True, _nrt=False)
def rolling_sum_step(state: np.ndarray, params: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    """Rolling sum of the non-NaN values in the last ``window`` events.

    pandas: ``s.rolling(window, min_periods).sum()``. NaN policy: skip inside the
    window, NaN output while fewer than ``min_periods`` values (default: any NaN
    in a full window propagates, as pandas).
    """
    if _roll_update(state, int(params[0]), _min_periods(params), x[0], False):
        out[0] = state[_R_COUNT] * state[_R_K] + (state[_R_S1] + state[_R_C1])
    else:
        out[0] = _NAN


@njit(cache=True, _nrt=False)
def rolling_mean_step(state: np.ndarray, params: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    """Rolling mean of the window.

    pandas: ``s.rolling(window, min_periods).mean()``. NaN policy: as rolling_sum.
    """
    if _roll_update(state, int(params[0]), _min_periods(params), x[0], False):
        out[0] = _roll_mean(state)
    else:
        out[0] = _NAN


@njit(cache=True, _nrt=False)
def rolling_var_step(state: np.ndarray, params: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    """Rolling sample variance (ddof=1); 0 for a constant window.

    pandas: ``s.rolling(window, min_periods).var()``. NaN policy: as rolling_sum;
    NaN with fewer than 2 values.
    """
    if _roll_update(state, int(params[0]), _min_periods(params), x[0], True):
        out[0] = _roll_var(state)
    else:
        out[0] = _NAN


@njit(cache=True, _nrt=False)
def rolling_std_step(state: np.ndarray, params: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    """Rolling sample standard deviation ``sqrt(rolling_var)``.

    pandas: ``s.rolling(window, min_periods).std()``. NaN policy: as rolling_var.
    """
    if _roll_update(state, int(params[0]), _min_periods(params), x[0], True):
        out[0] = math.sqrt(_roll_var(state))
    else:
        out[0] = _NAN


@njit(cache=True, _nrt=False)
def rolling_zscore_step(state: np.ndarray, params: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    """Rolling z-score ``(x - mean) / std`` of the last value against its window (ddof=1).

    pandas: ``(s - s.rolling(w).mean()) / s.rolling(w).std()``. NaN policy: a NaN
    input gives NaN, otherwise as rolling_var; a zero std gives NaN.
    """
    v = x[0]
    if _roll_update(state, int(params[0]), _min_periods(params), v, True) and v == v:
        sd = math.sqrt(_roll_var(state))
        out[0] = (v - _roll_mean(state)) / sd if sd > 0.0 else _NAN
    else:
        out[0] = _NAN


@njit(cache=True, _nrt=False)
def sma_step(state: np.ndarray, params: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    """Simple moving average over ``window`` events.

    TA-Lib: ``SMA(x, timeperiod=window)``; pandas: ``s.rolling(window).mean()``.
    NaN policy: propagate (NaN while a NaN is in the window).
    """
    if _roll_update(state, int(params[0]), params[0], x[0], False):
        out[0] = _roll_mean(state)
    else:
        out[0] = _NAN


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


@njit(cache=True, _nrt=False)
def _roll_extreme(state: np.ndarray, params: np.ndarray, x: float, sign: float) -> float:
    """Monotonic-deque rolling maximum of ``sign * x`` (sign=-1 gives the minimum); O(1) amortised."""
    w = int(params[0])
    ring = _M_RING
    idx = _M_RING + w
    val = _M_RING + 2 * w
    t = state[_M_SEEN]
    pos = int(state[_M_POS])
    if t >= w:
        old = state[ring + pos]
        if old == old:
            state[_M_COUNT] -= 1.0
    state[ring + pos] = x
    state[_M_POS] = _wrap(pos + 1, w)
    head = int(state[_M_HEAD])
    size = int(state[_M_SIZE])
    while size > 0 and state[idx + head] <= t - w:
        head = _wrap(head + 1, w)
        size -= 1
    if x == x:
        state[_M_COUNT] += 1.0
        state[_M_NOBS] += 1.0
        y = sign * x
        while size > 0 and state[val + _wrap(head + size - 1, w)] <= y:
            size -= 1
        slot = _wrap(head + size, w)
        state[idx + slot] = t
        state[val + slot] = y
        size += 1
    state[_M_HEAD] = head
    state[_M_SIZE] = size
    state[_M_SEEN] = t + 1.0
    if state[_M_NOBS] >= w:
        state[0] = 1.0
    if size > 0 and state[_M_COUNT] >= _min_periods(params):
        return sign * state[val + head]
    return _NAN


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
    v = x[0]
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
# state: [ready, n, seed_sum, ema]


@njit(cache=True, _nrt=False)
def ema_step(state: np.ndarray, params: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    """TA-Lib exponential moving average, ``k = 2 / (span + 1)``.

    Seeded with the SMA of the first ``span`` values, then
    ``ema = (x - ema) * k + ema`` — the same operations as ``talib.EMA(x, span)``
    (TA-Lib's default compatibility mode), so they agree after warm-up. For the
    pandas ``ewm(span).mean()`` use ``ewm_mean``. NaN policy: skip (a NaN input
    leaves the state unchanged and repeats the current value).
    """
    v = x[0]
    span = params[0]
    if v == v:
        if state[0] != 0.0:
            state[3] = (v - state[3]) * (2.0 / (span + 1.0)) + state[3]
        else:
            state[2] += v
            state[1] += 1.0
            if state[1] >= span:
                state[3] = state[2] / span
                state[0] = 1.0
    out[0] = state[3] if state[0] != 0.0 else _NAN


def _ema_state_size(params: np.ndarray) -> int:
    return 4


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
    vz = v if v == v else 0.0
    if seen >= w:
        old = state[_W_RING + pos]
        if old == old:
            state[_W_COUNT] -= 1.0
        state[_W_N] = state[_W_N] - state[_W_S] + w * vz
        state[_W_S] = state[_W_S] - (old if old == old else 0.0) + vz
    else:
        state[_W_N] += (seen + 1.0) * vz
        state[_W_S] += vz
    state[_W_RING + pos] = v
    pos = _wrap(pos + 1, w)
    state[_W_POS] = pos
    state[_W_SEEN] = seen + 1.0
    if v == v:
        state[_W_COUNT] += 1.0
        state[_W_NOBS] += 1.0
    state[_W_SINCE] += 1.0
    if seen + 1.0 >= w and state[_W_SINCE] >= max(w, _RECOMPUTE_MIN):
        s = 0.0
        nsum = 0.0
        for j in range(w):
            y = state[_W_RING + _wrap(pos + j, w)]
            if y == y:
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


def _wma_state_size(params: np.ndarray) -> int:
    return _W_RING + int(params[0])


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


def _kind(name: str, kind_id: int, params: tuple[Param, ...], size, step, warmup, normalize=None) -> FeatureKind:
    return FeatureKind(name, kind_id, _X, _V, params, size, step, normalize=normalize, warmup=warmup)


KINDS: tuple[FeatureKind, ...] = (
    _kind("ret", 1, _LAG, _lag_state_size, ret_step, _lag_warmup),
    _kind("log_ret", 2, _LAG, _lag_state_size, log_ret_step, _lag_warmup),
    _kind("ewm_mean", 10, _EWM, _ewm_state_size, ewm_mean_step, _ewm_warmup, _ewm_normalize),
    _kind("ewm_var", 11, _EWM, _ewm_state_size, ewm_var_step, _ewm_warmup, _ewm_normalize),
    _kind("ewm_std", 12, _EWM, _ewm_state_size, ewm_std_step, _ewm_warmup, _ewm_normalize),
    _kind("ewm_zscore", 13, _EWM, _ewm_state_size, ewm_zscore_step, _ewm_warmup, _ewm_normalize),
    _kind("ewm_skew", 14, _EWM, _ewm_state_size, ewm_skew_step, _ewm_warmup, _ewm_normalize),
    _kind("ewm_kurt", 15, _EWM, _ewm_state_size, ewm_kurt_step, _ewm_warmup, _ewm_normalize),
    _kind("rolling_sum", 20, _ROLL, _roll_state_size, rolling_sum_step, _window_warmup, _check_min_periods),
    _kind("rolling_mean", 21, _ROLL, _roll_state_size, rolling_mean_step, _window_warmup, _check_min_periods),
    _kind("rolling_var", 22, _ROLL2, _roll_state_size, rolling_var_step, _window_warmup, _check_min_periods),
    _kind("rolling_std", 23, _ROLL2, _roll_state_size, rolling_std_step, _window_warmup, _check_min_periods),
    _kind("rolling_min", 24, _ROLL, _extreme_state_size, rolling_min_step, _window_warmup, _check_min_periods),
    _kind("rolling_max", 25, _ROLL, _extreme_state_size, rolling_max_step, _window_warmup, _check_min_periods),
    _kind("rolling_zscore", 26, _ROLL2, _roll_state_size, rolling_zscore_step, _window_warmup, _check_min_periods),
    _kind("rolling_rank", 27, _ROLL, _rank_state_size, rolling_rank_step, _window_warmup, _check_min_periods),
    _kind("sma", 30, _WINDOW, _roll_state_size, sma_step, _window_warmup),
    _kind("ema", 31, _SPAN, _ema_state_size, ema_step, _window_warmup),
    _kind("wma", 32, _WINDOW, _wma_state_size, wma_step, _window_warmup),
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
