"""Step kernels of the 'regime' group (kind ids 300-399): change points, memory, volatility, hidden states.

See :mod:`tradebus.features.registry` for the kernel contract.

Kinds
-----
====== === ====== ========================== ==============================================
name   id  inputs outputs                    params
====== === ====== ========================== ==============================================
cusum  300 x      event, s_pos, s_neg        threshold, input_is_return
hurst  301 x      hurst                      window, max_lag
garch  302 x      variance, vol, zscore      omega, alpha, beta, init_var
hmm    303 x      p0, p1, p2, p3             n_states, a00..a33, mean0..3, std0..3, init0..3
====== === ====== ========================== ==============================================

Shared NaN policy: an event whose input is not finite is skipped; the state does not
change and the outputs repeat those of the last valid observation (``cusum``'s
``event`` is 0 on a skipped step: events mark steps, they are not levels).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numba import njit

from tradebus.errors import FeatureError
from tradebus.features.kernels.stats import _hold
from tradebus.features.registry import FeatureKind, Param, register

__all__ = ["CUSUM", "GARCH", "HMM", "HMM_MAX_STATES", "HURST", "KINDS", "dispatch"]

CUSUM_ID = 300
HURST_ID = 301
GARCH_ID = 302
HMM_ID = 303

HMM_MAX_STATES = 4


# --------------------------------------------------------------------------- CUSUM

# state: ready, count, last_x, s_pos, s_neg


@njit(cache=True, _nrt=False)
def cusum_step(state: np.ndarray, params: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    r"""Symmetric CUSUM filter (López de Prado, *Advances in Financial ML*, 2.5.2.1).

    With the increment :math:`d_t` (see below) and threshold :math:`h`:

    .. math::

        S^+_t = \max(0, S^+_{t-1} + d_t),\quad S^-_t = \min(0, S^-_{t-1} + d_t)

    If :math:`S^-_t < -h` the step emits ``event = -1`` and resets :math:`S^-_t = 0`;
    otherwise if :math:`S^+_t > h` it emits ``+1`` and resets :math:`S^+_t = 0`;
    otherwise ``event = 0``. Only the side that fired is reset (as the book's
    ``getTEvents``). ``s_pos``/``s_neg`` are the sums after any reset.

    Input: with ``input_is_return = 0`` (default) ``x`` is a level (price or log
    price) and :math:`d_t = x_t - x_{t-1}` between consecutive valid observations;
    the first observation only seeds the level. With ``input_is_return = 1``, ``x`` is
    already the increment (a return) and :math:`d_t = x_t`. The threshold is in the
    units of :math:`d_t` (price units, or log-return units on log prices).

    Reference: the book's loop ``getTEvents(gRaw, h)`` (``diff`` of the series).

    NaN policy: a non-finite ``x`` is skipped (``event = 0``, sums held; the next
    increment spans the gap).
    """
    xv = x[0]
    if not math.isfinite(xv):
        if state[0] == 1.0:
            out[0] = 0.0
            out[1] = state[3]
            out[2] = state[4]
        else:
            out[0] = np.nan
            out[1] = np.nan
            out[2] = np.nan
        return
    if params[1] == 0.0:
        if state[1] == 0.0:
            state[1] = 1.0
            state[2] = xv
            out[0] = np.nan
            out[1] = np.nan
            out[2] = np.nan
            return
        d = xv - state[2]
        state[2] = xv
    else:
        d = xv
    h = params[0]
    sp = max(0.0, state[3] + d)
    sn = min(0.0, state[4] + d)
    ev = 0.0
    if sn < -h:
        sn = 0.0
        ev = -1.0
    elif sp > h:
        sp = 0.0
        ev = 1.0
    state[3] = sp
    state[4] = sn
    state[0] = 1.0
    out[0] = ev
    out[1] = sp
    out[2] = sn


def _cusum_size(params: np.ndarray) -> int:
    return 5


def _cusum_warmup(params: np.ndarray) -> int:
    return 1 if params[1] else 2


# --------------------------------------------------------------------------- Hurst

# state: ready, count, pos, hurst, buf[w], scratch[w] (the window in time order)
_HU_BUF = 4


@njit(cache=True, _nrt=False)
def hurst_step(state: np.ndarray, params: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    r"""Rolling Hurst exponent by the lag-variance (variogram) method.

    Over the last ``window`` valid values :math:`x_0..x_{w-1}` of a *level* series
    (log price recommended), for each lag :math:`k = 1..L` (``L = max_lag``) take the
    ``w - k`` differences :math:`x_{i+k} - x_i` and their variance :math:`v_k`
    (population, mean removed, so a linear drift does not count as memory). For a
    process with Hurst exponent :math:`H`, :math:`v_k \propto k^{2H}`, so

    .. math:: H = \tfrac12\,\mathrm{slope}\big(\log v_k \sim \log k\big)

    by ordinary least squares over the ``L`` lags. ``H ≈ 0.5``: random walk;
    ``H > 0.5``: persistent (trending increments); ``H < 0.5``: mean reverting.
    The R/S method was not chosen: on windows of a few hundred points its
    small-sample bias is large and needs the Anis-Lloyd correction.

    Cost: O(window * max_lag) per step, about 5 µs at window 100, max_lag 10 on the
    2-core build machine: meant for bars, not for every trade.

    Reference: the same estimator written with numpy on each window (tests).

    NaN policy: a non-finite ``x`` is skipped (output held). A window with a zero
    variance at any lag (e.g. a constant input) gives NaN.

    Inputs ``(x,)``; params ``(window, max_lag)`` with ``2 <= max_lag <= window // 2``.
    """
    xv = x[0]
    if not math.isfinite(xv):
        _hold(state, 3, out, 1)
        return
    w = int(params[0])
    lmax = int(params[1])
    pos = int(state[2])
    state[_HU_BUF + pos] = xv
    pos += 1
    if pos == w:
        pos = 0
    state[2] = pos
    if state[1] < w:
        state[1] += 1.0
        if state[1] < w:
            out[0] = np.nan
            return
    # copy the ring (oldest first, pos is the oldest) to the scratch row: the lag loops
    # then read contiguous memory instead of taking a modulo per element
    c = _HU_BUF + w
    for i in range(w - pos):
        state[c + i] = state[_HU_BUF + pos + i]
    for i in range(pos):
        state[c + w - pos + i] = state[_HU_BUF + i]
    sx = 0.0
    sxx = 0.0
    sy = 0.0
    sxy = 0.0
    ok = True
    for k in range(1, lmax + 1):
        m = w - k
        ref = state[c + k] - state[c]
        s1 = 0.0
        for i in range(m):
            s1 += (state[c + i + k] - state[c + i]) - ref
        mu = s1 / m
        s2 = 0.0
        for i in range(m):
            d = (state[c + i + k] - state[c + i]) - ref - mu
            s2 += d * d
        v = s2 / m
        if not v > 0.0:
            ok = False
            break
        lk = math.log(k)
        lv = math.log(v)
        sx += lk
        sxx += lk * lk
        sy += lv
        sxy += lk * lv
    if ok:
        n = float(lmax)
        h = 0.5 * (n * sxy - sx * sy) / (n * sxx - sx * sx)
        out[0] = h if math.isfinite(h) else np.nan  # inf variances from ~1e300 inputs
    else:
        out[0] = np.nan
    state[0] = 1.0
    state[3] = out[0]


def _hurst_size(params: np.ndarray) -> int:
    return _HU_BUF + 2 * int(params[0])


def _hurst_warmup(params: np.ndarray) -> int:
    return int(params[0])


def _hurst_normalize(kwargs: dict[str, float]) -> dict[str, float]:
    w = kwargs.get("window", 100)
    lag = kwargs.get("max_lag", 10)
    if isinstance(w, int | float) and isinstance(lag, int | float) and lag > w // 2:
        raise FeatureError(
            f"feature 'hurst': max_lag ({lag}) must be <= window // 2 ({int(w) // 2}) "
            "so every lag has enough differences"
        )
    return kwargs


# --------------------------------------------------------------------------- GARCH(1,1)

# state: ready, count, h (variance of the next return), out[3]


@njit(cache=True, _nrt=False)
def garch_step(state: np.ndarray, params: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    r"""GARCH(1,1) conditional variance filter with given parameters.

    .. math:: h_{t+1} = \omega + \alpha\,r_t^2 + \beta\,h_t

    Input ``x`` is the return :math:`r_t` (any return convention; ``omega`` is in its
    squared units; returns are not demeaned). On each valid return the kernel outputs
    ``variance`` = :math:`h_{t+1}`, the forecast for the *next* return given data up to
    ``t``, ``vol`` = :math:`\sqrt{h_{t+1}}`, and ``zscore`` = :math:`r_t/\sqrt{h_t}`, the
    standardised residual of the return just seen under its prior forecast.

    Initial variance :math:`h_1`: ``init_var`` if > 0, else the unconditional variance
    :math:`\omega/(1-\alpha-\beta)` (which then requires :math:`\alpha+\beta<1`).
    Unlike ``arch``'s backcast (a weighted mean of the first squared returns), this
    uses no data from the future. Ready after the first valid return.

    Reference: the recursion written with numpy (tests); ``arch``'s
    ``GARCH`` variance recursion with the same :math:`h_1`.

    NaN policy: a non-finite return is skipped (variance not advanced, outputs held),
    and so is a return so large that :math:`h_{t+1}` would overflow to inf.
    """
    r = x[0]
    if not math.isfinite(r):
        _hold(state, 3, out, 3)
        return
    omega = params[0]
    a = params[1]
    b = params[2]
    if state[1] == 0.0:
        h = params[3] if params[3] > 0.0 else omega / (1.0 - a - b)
    else:
        h = state[2]
    hn = omega + a * r * r + b * h
    if not math.isfinite(hn):
        # r ~ 1e150 or beyond: the variance would stay infinite forever; skip it
        _hold(state, 3, out, 3)
        return
    state[1] = 1.0
    state[2] = hn
    state[0] = 1.0
    out[0] = hn
    out[1] = math.sqrt(hn)
    out[2] = r / math.sqrt(h)
    state[3] = out[0]
    state[4] = out[1]
    state[5] = out[2]


def _garch_size(params: np.ndarray) -> int:
    return 6


def _one(params: np.ndarray) -> int:
    return 1


def _garch_normalize(kwargs: dict[str, float]) -> dict[str, float]:
    omega = kwargs.get("omega")
    if isinstance(omega, int | float) and not omega > 0.0:
        raise FeatureError(f"feature 'garch': parameter 'omega' must be > 0, got {omega!r}")
    a = kwargs.get("alpha", 0.0)
    b = kwargs.get("beta", 0.0)
    init = kwargs.get("init_var", 0.0)
    if all(isinstance(v, int | float) for v in (a, b, init)) and init == 0.0 and a + b >= 1.0:
        raise FeatureError(
            f"feature 'garch': alpha + beta = {a + b} >= 1 has no unconditional variance; give init_var > 0"
        )
    return kwargs


# --------------------------------------------------------------------------- HMM forward filter

# params: n_states, a[16] (row-major a_ij = P(j | i)), mean[4], std[4], init[4]
_HP_A = 1
_HP_MEAN = 17
_HP_STD = 21
_HP_INIT = 25
# state: ready, count, alpha[4] (filtered probabilities, also the held outputs), scratch pred[4], logl[4]
_HS_ALPHA = 2
_HS_PRED = 6
_HS_LOGL = 10


@njit(cache=True, _nrt=False)
def hmm_step(state: np.ndarray, params: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    r"""Forward filter of a Gaussian hidden Markov model with given parameters.

    For ``K = n_states`` (2..4) states with transition matrix :math:`A_{ij} = P(s_t=j
    \mid s_{t-1}=i)`, emission :math:`N(\mu_j, \sigma_j^2)` and initial
    probabilities :math:`\pi`, the filtered probabilities after each observation are

    .. math::

        \alpha_1(j) \propto \pi_j\,\phi_j(x_1),\quad
        \alpha_t(j) \propto \phi_j(x_t) \sum_i \alpha_{t-1}(i) A_{ij}

    normalised to sum to one (the scaled forward algorithm), so :math:`\alpha_t(j) =
    P(s_t = j \mid x_{1..t})`: no smoothing, no lookahead. Emission densities are
    combined in log space relative to the largest one, so an outlier does not
    underflow all of them to zero; if even that fails (an infinite distance to every
    mean) the observation is treated as uninformative and the prediction is kept.

    Outputs ``p0..p3``: :math:`\alpha_t(j)`; NaN for ``j >= K``. Ready after the first
    valid observation.

    Reference: the scaled forward algorithm written with numpy and
    ``scipy.stats.norm.pdf`` (tests); ``hmmlearn``'s ``predict_proba`` is the
    *smoothed* posterior and differs by design.

    NaN policy: a non-finite ``x`` is skipped (outputs held; no prediction step).
    """
    K = int(params[0])
    xv = x[0]
    if not math.isfinite(xv):
        ready = state[0] == 1.0
        for j in range(HMM_MAX_STATES):
            out[j] = state[_HS_ALPHA + j] if (ready and j < K) else np.nan
        return
    pred = state[_HS_PRED : _HS_PRED + HMM_MAX_STATES]
    logl = state[_HS_LOGL : _HS_LOGL + HMM_MAX_STATES]
    first = state[1] == 0.0
    for j in range(K):
        if first:
            pj = params[_HP_INIT + j]
        else:
            pj = 0.0
            for i in range(K):
                pj += state[_HS_ALPHA + i] * params[_HP_A + i * HMM_MAX_STATES + j]
        pred[j] = pj
        sd = params[_HP_STD + j]
        z = (xv - params[_HP_MEAN + j]) / sd
        logl[j] = -0.5 * z * z - math.log(sd)
    m = -np.inf
    for j in range(K):
        if pred[j] > 0.0 and logl[j] > m:
            m = logl[j]
    total = 0.0
    if math.isfinite(m):
        for j in range(K):
            wj = pred[j] * math.exp(logl[j] - m) if pred[j] > 0.0 else 0.0
            pred[j] = wj
            total += wj
    else:
        for j in range(K):
            total += pred[j]
    for j in range(HMM_MAX_STATES):
        if j < K:
            v = pred[j] / total
            state[_HS_ALPHA + j] = v
            out[j] = v
        else:
            out[j] = np.nan
    state[1] = 1.0
    state[0] = 1.0


def _hmm_size(params: np.ndarray) -> int:
    return _HS_LOGL + HMM_MAX_STATES


def _is_seq(v: Any) -> bool:
    return isinstance(v, Sequence | np.ndarray) and not isinstance(v, str)


def _as_float(kind: str, name: str, v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        raise FeatureError(f"feature {kind!r}: {name} must be a number, got {v!r}") from None


def _hmm_normalize(kwargs: dict[str, Any]) -> dict[str, float]:
    """Map ``transition`` (K x K), ``means``, ``stds``, ``init`` lists to flat params and validate them.

    Flat keys (``a01``, ``mean1``, ...) may be given instead. ``init`` defaults to
    uniform. Checks: ``2 <= K <= 4``, every row of the transition matrix and ``init``
    non-negative and summing to 1 (within 1e-9), every used ``std`` > 0.
    """
    kw: dict[str, Any] = dict(kwargs)
    trans = kw.pop("transition", None)
    means = kw.pop("means", None)
    stds = kw.pop("stds", None)
    init = kw.pop("init", None)
    flat: dict[str, float] = {}
    if means is not None:
        if not _is_seq(means):
            raise FeatureError(f"feature 'hmm': means must be a list of numbers, got {means!r}")
        k_guess = len(means)
    else:
        k_guess = sum(1 for j in range(HMM_MAX_STATES) if f"mean{j}" in kw)
    K_raw = kw.pop("n_states", k_guess)
    K = int(_as_float("hmm", "n_states", K_raw))
    if K != _as_float("hmm", "n_states", K_raw) or not 2 <= K <= HMM_MAX_STATES:
        raise FeatureError(f"feature 'hmm': n_states must be a whole number in 2..{HMM_MAX_STATES}, got {K_raw!r}")

    def vector(name: str, values: Any, prefix: str) -> list[float]:
        if values is None:
            if not all(f"{prefix}{j}" in kw for j in range(K)):
                raise FeatureError(f"feature 'hmm': {name} missing; give {name}=[...] or {prefix}0..{prefix}{K - 1}")
            return [_as_float("hmm", f"{prefix}{j}", kw.pop(f"{prefix}{j}")) for j in range(K)]
        if not _is_seq(values) or len(values) != K:
            raise FeatureError(f"feature 'hmm': {name} must be a list of {K} numbers, got {values!r}")
        return [_as_float("hmm", f"{name}[{j}]", v) for j, v in enumerate(values)]

    mu = vector("means", means, "mean")
    sd = vector("stds", stds, "std")
    if init is None and not any(f"init{j}" in kw for j in range(K)):
        pi = [1.0 / K] * K
    else:
        pi = vector("init", init, "init")
    if trans is not None:
        if not (_is_seq(trans) and len(trans) == K and all(_is_seq(r) for r in trans)):
            raise FeatureError(f"feature 'hmm': transition must be a {K}x{K} list of rows, got {trans!r}")
        rows = []
        for i, row in enumerate(trans):
            if len(row) != K:
                raise FeatureError(f"feature 'hmm': transition row {i} must have {K} entries, got {row!r}")
            rows.append([_as_float("hmm", f"transition[{i}][{j}]", v) for j, v in enumerate(row)])
    else:
        if not all(f"a{i}{j}" in kw for i in range(K) for j in range(K)):
            raise FeatureError(
                f"feature 'hmm': transition missing; give transition=[[...]] ({K}x{K}) or a00..a{K - 1}{K - 1}"
            )
        rows = [[_as_float("hmm", f"a{i}{j}", kw.pop(f"a{i}{j}")) for j in range(K)] for i in range(K)]
    for name, vals in (("means", mu), ("stds", sd), ("init", pi)):
        for j, v in enumerate(vals):
            if not math.isfinite(v):
                raise FeatureError(f"feature 'hmm': {name}[{j}] is missing or not finite ({v!r})")
    for j, v in enumerate(sd):
        if not v > 0.0:
            raise FeatureError(f"feature 'hmm': stds[{j}] must be > 0, got {v!r}")
    if any(v < 0.0 for v in pi) or abs(sum(pi) - 1.0) > 1e-9:
        raise FeatureError(f"feature 'hmm': init must be non-negative and sum to 1, got {pi!r}")
    for i, row in enumerate(rows):
        if not all(math.isfinite(v) and v >= 0.0 for v in row) or abs(sum(row) - 1.0) > 1e-9:
            raise FeatureError(
                f"feature 'hmm': transition row {i} must be non-negative probabilities summing to 1, got {row!r}"
            )
    flat["n_states"] = float(K)
    for i in range(HMM_MAX_STATES):
        for j in range(HMM_MAX_STATES):
            flat[f"a{i}{j}"] = float(rows[i][j]) if i < K and j < K else 0.0
    for j in range(HMM_MAX_STATES):
        flat[f"mean{j}"] = float(mu[j]) if j < K else 0.0
        flat[f"std{j}"] = float(sd[j]) if j < K else 1.0
        flat[f"init{j}"] = float(pi[j]) if j < K else 0.0
    for key in list(kw):
        if key in flat:
            kw.pop(key)  # flat keys of unused states, given explicitly
    flat.update({k: v for k, v in kw.items()})  # leftovers: unknown names, reported by pack()
    return flat


# --------------------------------------------------------------------------- kinds and dispatch

CUSUM = FeatureKind(
    name="cusum",
    kind_id=CUSUM_ID,
    inputs=("x",),
    outputs=("event", "s_pos", "s_neg"),
    params=(Param("threshold", None, low=0.0), Param("input_is_return", 0, low=0, high=1, integer=True)),
    state_size=_cusum_size,
    step=cusum_step,
    warmup=_cusum_warmup,
)
HURST = FeatureKind(
    name="hurst",
    kind_id=HURST_ID,
    inputs=("x",),
    outputs=("hurst",),
    params=(Param("window", 100, low=8, high=100_000, integer=True), Param("max_lag", 10, low=2, integer=True)),
    state_size=_hurst_size,
    step=hurst_step,
    normalize=_hurst_normalize,
    warmup=_hurst_warmup,
)
GARCH = FeatureKind(
    name="garch",
    kind_id=GARCH_ID,
    inputs=("x",),
    outputs=("variance", "vol", "zscore"),
    params=(
        Param("omega", None, low=0.0),
        Param("alpha", None, low=0.0, high=1.0),
        Param("beta", None, low=0.0, high=1.0),
        Param("init_var", 0.0, low=0.0),
    ),
    state_size=_garch_size,
    step=garch_step,
    normalize=_garch_normalize,
    warmup=_one,
)
HMM = FeatureKind(
    name="hmm",
    kind_id=HMM_ID,
    inputs=("x",),
    outputs=tuple(f"p{j}" for j in range(HMM_MAX_STATES)),
    params=(
        Param("n_states", None, low=2, high=HMM_MAX_STATES, integer=True),
        *(Param(f"a{i}{j}", None, low=0.0, high=1.0) for i in range(HMM_MAX_STATES) for j in range(HMM_MAX_STATES)),
        *(Param(f"mean{j}", None) for j in range(HMM_MAX_STATES)),
        *(Param(f"std{j}", None, low=0.0) for j in range(HMM_MAX_STATES)),
        *(Param(f"init{j}", None, low=0.0, high=1.0) for j in range(HMM_MAX_STATES)),
    ),
    state_size=_hmm_size,
    step=hmm_step,
    normalize=_hmm_normalize,
    warmup=_one,
    usage="transition=required (K x K, K = 2..4), means=required (K), stds=required (K), init=uniform (K)",
)

KINDS: tuple[FeatureKind, ...] = (CUSUM, HURST, GARCH, HMM)


@njit(cache=True, _nrt=False)
def dispatch(kind_id: int, state: np.ndarray, params: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    """Call the step kernel of ``kind_id`` (ids 300-303)."""
    if kind_id == CUSUM_ID:
        cusum_step(state, params, x, out)
    elif kind_id == HURST_ID:
        hurst_step(state, params, x, out)
    elif kind_id == GARCH_ID:
        garch_step(state, params, x, out)
    elif kind_id == HMM_ID:
        hmm_step(state, params, x, out)


register(*KINDS)
