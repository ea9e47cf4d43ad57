"""Step kernels of the 'flow' group (kind ids 400-499): trade-flow and liquidity measures.

See :mod:`tradebus.features.registry` for the kernel contract.

Kinds
-----
================ === ================== ============== ==============================
name             id  inputs             outputs        params
================ === ================== ============== ==============================
signed_volume    400 size, side         value          window
trade_imbalance  401 size, side         value          window
amihud           402 price, size        value          window, scale
kyle_lambda      403 price, size, side  value          window
vpin             404 size, side         value          bucket_volume, n_buckets
================ === ================== ============== ==============================

Inputs come from trades: ``side`` is the aggressor side, +1 buy, -1 sell, 0 unknown
(only its sign is used). Windows count valid trades, not time.

Shared policy: a trade with a non-finite field or a negative ``size`` is skipped
(state unchanged, outputs held at the last valid values; NaN while not ready).
``amihud`` also skips ``size == 0`` and ``price <= 0`` (its ratio is undefined there);
a trade whose ratio over- or underflows adds no ratio but becomes the reference price. An output that overflows float64
(sizes around 1e300) is NaN, never inf.

Rolling sums (``signed_volume``, ``trade_imbalance``, ``amihud``) are updated by
adding the new value and subtracting the one leaving the window, and re-summed
exactly from the window every ``window`` steps, so rounding cannot accumulate
past one window. A window whose values are all zero gives an exact 0 sum (a count
of non-zero entries is kept), so ``0/0`` is detected exactly, never as ``1e-17/1e-17``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from tradebus.features.kernels.stats import _comoments
from tradebus.features.registry import FeatureKind, Param, register

__all__ = ["AMIHUD", "KINDS", "KYLE_LAMBDA", "SIGNED_VOLUME", "TRADE_IMBALANCE", "VPIN", "dispatch"]

SIGNED_VOLUME_ID = 400
TRADE_IMBALANCE_ID = 401
AMIHUD_ID = 402
KYLE_LAMBDA_ID = 403
VPIN_ID = 404

# common header: ready, count, pos, last output
_READY = 0
_COUNT = 1
_POS = 2
_OUT = 3


@njit(cache=True, _nrt=False)
def _sign(v: float) -> float:
    if v > 0.0:
        return 1.0
    if v < 0.0:
        return -1.0
    return 0.0


@njit(cache=True, _nrt=False)
def _hold(state: np.ndarray, out: np.ndarray) -> None:
    out[0] = state[_OUT] if state[_READY] == 1.0 else np.nan


@njit(cache=True, _nrt=False)
def _emit(state: np.ndarray, out: np.ndarray, value: float) -> None:
    if not math.isfinite(value):
        value = np.nan  # an overflowed sum (sizes ~1e300), never inf
    state[_READY] = 1.0
    state[_OUT] = value
    out[0] = value


@njit(cache=True, _nrt=False)
def _advance(state: np.ndarray, w: int) -> tuple[int, bool, bool]:
    """Return ``(slot, evicting, full)`` for the next value and move the write position."""
    pos = int(state[_POS])
    evicting = state[_COUNT] >= w
    nxt = pos + 1
    state[_POS] = 0 if nxt == w else nxt
    if not evicting:
        state[_COUNT] += 1.0
    return pos, evicting, state[_COUNT] >= w


@njit(cache=True, _nrt=False)
def _roll(state: np.ndarray, buf: int, w: int, slot: int, evicting: bool, value: float, s: int, nz: int) -> None:
    """Put ``value`` in ring buffer ``buf`` at ``slot``; keep its sum ``state[s]`` and non-zero count ``state[nz]``.

    Re-sums the buffer exactly when the write position wraps to 0.
    """
    old = state[buf + slot]
    if evicting:
        state[s] -= old
        if old != 0.0:
            state[nz] -= 1.0
    state[buf + slot] = value
    state[s] += value
    if value != 0.0:
        state[nz] += 1.0
    if slot == w - 1 or state[nz] == 0.0:
        total = 0.0
        if state[nz] != 0.0:
            for i in range(w):
                total += state[buf + i]
        state[s] = total


# --------------------------------------------------------------------------- signed volume

# state: header[4], sum, nonzero, buf[w]


@njit(cache=True, _nrt=False)
def signed_volume_step(state: np.ndarray, params: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    r"""Rolling signed volume: :math:`\sum_{i \in W} \mathrm{sign}(side_i)\,size_i` over the last ``window`` trades.

    Reference: ``pd.Series(side * size).rolling(window).sum()``.

    NaN policy: see the module docstring. Unknown side (0) contributes 0.

    Inputs ``(size, side)``; params ``(window,)``; state ``6 + window``.
    """
    size = x[0]
    side = x[1]
    if not (math.isfinite(size) and math.isfinite(side)) or size < 0.0:
        _hold(state, out)
        return
    w = int(params[0])
    slot, evicting, full = _advance(state, w)
    _roll(state, 6, w, slot, evicting, _sign(side) * size, 4, 5)
    if full:
        _emit(state, out, state[4])
    else:
        out[0] = np.nan


def _signed_volume_size(params: np.ndarray) -> int:
    return 6 + int(params[0])


def _window_warmup(params: np.ndarray) -> int:
    return int(params[0])


def _window_plus_one_warmup(params: np.ndarray) -> int:
    # the first valid trade only seeds the previous price
    return int(params[0]) + 1


# --------------------------------------------------------------------------- trade imbalance

# state: header[4], buy_sum, buy_nz, sell_sum, sell_nz, buy[w], sell[w]


@njit(cache=True, _nrt=False)
def trade_imbalance_step(state: np.ndarray, params: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    r"""Rolling trade order-flow imbalance :math:`(B - S)/(B + S)` in ``[-1, 1]``.

    :math:`B` and :math:`S` are the buy and sell volumes of the last ``window``
    trades. Trades of unknown side (0) take a place in the window but count in
    neither :math:`B` nor :math:`S`.

    Reference: ``(b.rolling(w).sum() - s.rolling(w).sum()) / (b.rolling(w).sum() + s.rolling(w).sum())``
    with ``b = size * (side > 0)``, ``s = size * (side < 0)``.

    NaN policy: see the module docstring. A window without classified volume
    (:math:`B + S = 0`) gives NaN.

    Inputs ``(size, side)``; params ``(window,)``; state ``8 + 2*window``.
    """
    size = x[0]
    side = x[1]
    if not (math.isfinite(size) and math.isfinite(side)) or size < 0.0:
        _hold(state, out)
        return
    w = int(params[0])
    sgn = _sign(side)
    slot, evicting, full = _advance(state, w)
    _roll(state, 8, w, slot, evicting, size if sgn > 0.0 else 0.0, 4, 5)
    _roll(state, 8 + w, w, slot, evicting, size if sgn < 0.0 else 0.0, 6, 7)
    if not full:
        out[0] = np.nan
        return
    b = state[4]
    s = state[6]
    tot = b + s
    _emit(state, out, (b - s) / tot if tot > 0.0 else np.nan)


def _trade_imbalance_size(params: np.ndarray) -> int:
    return 8 + 2 * int(params[0])


# --------------------------------------------------------------------------- Amihud

# state: header[4], sum, nonzero, has_last, last_price, buf[w]


@njit(cache=True, _nrt=False)
def amihud_step(state: np.ndarray, params: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    r"""Rolling Amihud illiquidity: mean of :math:`|\ln(p_t/p_{t-1})| / (p_t\,q_t)` times ``scale``.

    Granularity is the caller's: each event contributes the absolute log return
    since the previous valid event divided by its dollar volume :math:`p_t q_t`.
    Fed with trades (``price``, ``size``) it is the per-trade ratio (noisy, many zero
    returns); fed with bars (``close`` as price, ``volume`` as size) it is the
    classic Amihud (2002) ratio at the bar frequency, with ``close * volume`` as the
    dollar volume. ``scale`` (default 1e6, as in the literature) multiplies the mean.
    The first valid event only seeds the price.

    Reference: ``(abs(np.log(p).diff()) / (p * q)).rolling(window).mean() * scale``.

    NaN policy: see the module docstring; events with ``size <= 0`` or
    ``price <= 0`` are skipped (price not recorded either). A constant price gives 0.

    Inputs ``(price, size)``; params ``(window, scale)``; state ``8 + window``.
    """
    p = x[0]
    q = x[1]
    if not (math.isfinite(p) and math.isfinite(q)) or p <= 0.0 or q <= 0.0:
        _hold(state, out)
        return
    if state[6] == 0.0:
        state[6] = 1.0
        state[7] = p
        out[0] = np.nan
        return
    rel = p / state[7]
    dollars = p * q
    state[7] = p
    if not (rel > 0.0 and math.isfinite(rel) and dollars > 0.0 and math.isfinite(dollars)):
        # p / p_prev or p * q over- or underflowed: no ratio, but p is the next reference
        _hold(state, out)
        return
    ratio = abs(math.log(rel)) / dollars
    w = int(params[0])
    slot, evicting, full = _advance(state, w)
    _roll(state, 8, w, slot, evicting, ratio, 4, 5)
    if full:
        _emit(state, out, state[4] / w * params[1])
    else:
        out[0] = np.nan


def _amihud_size(params: np.ndarray) -> int:
    return 8 + int(params[0])


# --------------------------------------------------------------------------- Kyle's lambda

# state: header[4], has_last, last_price, dp[w], flow[w]


@njit(cache=True, _nrt=False)
def kyle_lambda_step(state: np.ndarray, params: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    r"""Rolling Kyle's lambda: OLS slope of the price change on the signed volume.

    Per valid trade, :math:`\Delta p_t = p_t - p_{t-1}` (price units, previous valid
    trade) and :math:`v_t = \mathrm{sign}(side_t)\,size_t`. Over the last ``window``
    pairs, :math:`\lambda = \mathrm{Cov}(\Delta p, v)/\mathrm{Var}(v)` (OLS with an
    intercept), recomputed from the window each step (O(window), no drift). The first
    valid trade only seeds the price. Per-trade granularity: on bars use a feature
    that supplies signed bar volume.

    Reference: ``numpy.polyfit(v_win, dp_win, 1)[0]`` / statsmodels OLS slope per window.

    NaN policy: see the module docstring. A window of constant signed volume has no
    slope: NaN.

    Inputs ``(price, size, side)``; params ``(window,)``; state ``6 + 2*window``.
    """
    p = x[0]
    q = x[1]
    side = x[2]
    if not (math.isfinite(p) and math.isfinite(q) and math.isfinite(side)) or q < 0.0:
        _hold(state, out)
        return
    if state[4] == 0.0:
        state[4] = 1.0
        state[5] = p
        out[0] = np.nan
        return
    dp = p - state[5]
    state[5] = p
    if not math.isfinite(dp):
        _hold(state, out)  # prices of opposite sign near 1e308: no usable change
        return
    w = int(params[0])
    slot, _, full = _advance(state, w)
    state[6 + slot] = dp
    state[6 + w + slot] = _sign(side) * q
    if not full:
        out[0] = np.nan
        return
    # the rolling OLS sums of 'stats' (exact zeros for constants), dp in its x slot, v in its y slot
    _, _, _, svv, sdv = _comoments(state, w, 6)
    _emit(state, out, sdv / svv if svv > 0.0 else np.nan)


def _kyle_lambda_size(params: np.ndarray) -> int:
    return 6 + 2 * int(params[0])


# --------------------------------------------------------------------------- VPIN

# state: header[4] (count = completed buckets, capped at n), cur_buy, cur_sell, cur_total, imbalance[n]
_VP_BUF = 7


@njit(cache=True, _nrt=False)
def _vpin_close(state: np.ndarray, n: int, imbalance: float) -> None:
    slot, _, _ = _advance(state, n)
    state[_VP_BUF + slot] = imbalance
    state[4] = 0.0
    state[5] = 0.0
    state[6] = 0.0


@njit(cache=True, _nrt=False)
def vpin_step(state: np.ndarray, params: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    r"""Volume-synchronised probability of informed trading (Easley, López de Prado, O'Hara 2012).

    Trades fill consecutive volume buckets of ``bucket_volume`` :math:`V`. Each trade
    is classified by its ``side`` field (no bulk classification): buys add to the
    bucket's :math:`V^B`, sells to :math:`V^S`, unknown side (0) fills the bucket but
    adds to neither. Over the last ``n = n_buckets`` completed buckets

    .. math:: \mathrm{VPIN} = \frac{\sum_\tau |V^B_\tau - V^S_\tau|}{n V} \in [0, 1]

    Bucket splitting: a trade larger than the room left in the current bucket fills
    it, and its remainder flows into the next buckets with the same side (so one
    trade can complete several buckets); a bucket is completed exactly when a trade
    reaches its capacity, without any equality test on accumulated floats. A trade
    that completes more than ``n`` buckets at once writes only the last ``n``.

    The output changes only when a bucket completes and is held in between; ready once
    ``n`` buckets are complete.

    Reference: the same bucketing written in plain Python over the trade list (tests).

    NaN policy: see the module docstring; ``size == 0`` trades change nothing.

    Inputs ``(size, side)``; params ``(bucket_volume, n_buckets)``; state ``7 + n_buckets``.
    """
    q = x[0]
    side = x[1]
    if not (math.isfinite(q) and math.isfinite(side)) or q < 0.0:
        _hold(state, out)
        return
    vb = params[0]
    n = int(params[1])
    sgn = _sign(side)
    rem = q
    closed = False
    while rem > 0.0:
        room = vb - state[6]
        take = rem if rem < room else room
        if sgn > 0.0:
            state[4] += take
        elif sgn < 0.0:
            state[5] += take
        rem -= take
        if take < room:
            state[6] += take
            break
        _vpin_close(state, n, abs(state[4] - state[5]))
        closed = True
        full = np.floor(rem / vb)  # float: math.floor would return an int64 and overflow
        if full >= 1.0:
            imb = vb if sgn != 0.0 else 0.0
            for _ in range(int(min(full, float(n)))):
                _vpin_close(state, n, imb)
            rem -= full * vb
    if closed and state[_COUNT] >= n:
        total = 0.0
        for i in range(n):
            total += state[_VP_BUF + i]
        _emit(state, out, total / (n * vb))
    else:
        _hold(state, out)


def _vpin_size(params: np.ndarray) -> int:
    return _VP_BUF + int(params[1])


# --------------------------------------------------------------------------- kinds and dispatch

_WINDOW = Param("window", 100, low=1, high=1_000_000, integer=True)

SIGNED_VOLUME = FeatureKind(
    name="signed_volume",
    kind_id=SIGNED_VOLUME_ID,
    inputs=("size", "side"),
    outputs=("value",),
    params=(_WINDOW,),
    state_size=_signed_volume_size,
    step=signed_volume_step,
    warmup=_window_warmup,
)
TRADE_IMBALANCE = FeatureKind(
    name="trade_imbalance",
    kind_id=TRADE_IMBALANCE_ID,
    inputs=("size", "side"),
    outputs=("value",),
    params=(_WINDOW,),
    state_size=_trade_imbalance_size,
    step=trade_imbalance_step,
    warmup=_window_warmup,
)
AMIHUD = FeatureKind(
    name="amihud",
    kind_id=AMIHUD_ID,
    inputs=("price", "size"),
    outputs=("value",),
    params=(_WINDOW, Param("scale", 1e6, low=0.0)),
    state_size=_amihud_size,
    step=amihud_step,
    warmup=_window_plus_one_warmup,
)
KYLE_LAMBDA = FeatureKind(
    name="kyle_lambda",
    kind_id=KYLE_LAMBDA_ID,
    inputs=("price", "size", "side"),
    outputs=("value",),
    params=(Param("window", 100, low=3, high=1_000_000, integer=True),),
    state_size=_kyle_lambda_size,
    step=kyle_lambda_step,
    warmup=_window_plus_one_warmup,
)
VPIN = FeatureKind(
    name="vpin",
    kind_id=VPIN_ID,
    inputs=("size", "side"),
    outputs=("value",),
    params=(Param("bucket_volume", None, low=1e-12), Param("n_buckets", 50, low=1, high=100_000, integer=True)),
    state_size=_vpin_size,
    step=vpin_step,
)

KINDS: tuple[FeatureKind, ...] = (SIGNED_VOLUME, TRADE_IMBALANCE, AMIHUD, KYLE_LAMBDA, VPIN)


@njit(cache=True, _nrt=False)
def dispatch(kind_id: int, state: np.ndarray, params: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    """Call the step kernel of ``kind_id`` (ids 400-404)."""
    if kind_id == SIGNED_VOLUME_ID:
        signed_volume_step(state, params, x, out)
    elif kind_id == TRADE_IMBALANCE_ID:
        trade_imbalance_step(state, params, x, out)
    elif kind_id == AMIHUD_ID:
        amihud_step(state, params, x, out)
    elif kind_id == KYLE_LAMBDA_ID:
        kyle_lambda_step(state, params, x, out)
    elif kind_id == VPIN_ID:
        vpin_step(state, params, x, out)


register(*KINDS)
