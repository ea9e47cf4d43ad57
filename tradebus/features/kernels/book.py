"""Step kernels of the 'book' group (kind ids 500-599): order-book shape and order flow.

See :mod:`tradebus.features.registry` for the kernel contract.

Kinds
-----
=============== === ===================================== ======= ================
name            id  inputs                                outputs params
=============== === ===================================== ======= ================
microprice      500 bid, ask, bid_size, ask_size          value   (none)
book_imbalance  501 bid_sz_0..9, ask_sz_0..9              value   levels
ofi             502 bid_px_0..9, bid_sz_0..9,             value   levels, window
                    ask_px_0..9, ask_sz_0..9
=============== === ===================================== ======= ================

Input names are the feature bank's book fields (:data:`tradebus.features.spec.EVENT_FIELDS`):
``microprice`` reads best bid/ask and their sizes (from a quote or a book event); the
others read the top-10 level fields of a book event and use the first ``levels`` of them.

``microprice``
    Size-weighted mid ``(bid * ask_size + ask * bid_size) / (bid_size + ask_size)``:
    it leans towards the side with *less* resting size (the side more likely to be
    taken next). An event with a non-finite field, a non-positive price or size total,
    or a crossed quote (``bid > ask``) is skipped (output held; NaN before the first
    valid event).
``book_imbalance``
    ``(B - A) / (B + A)`` with ``B``/``A`` the total bid/ask size over the top
    ``levels`` levels, in [-1, 1]. A missing level (NaN size) counts as 0; an event
    with no size at all, or a negative size, is skipped.
``ofi``
    Multi-level order-flow imbalance in the style of Cont, Kukanov & Stoikov (2014),
    extended over levels (Xu, Gould & Howison 2018) with equal weights. Between two
    consecutive book states, level ``m`` contributes::

        e_m = q_b  1{p_b >= p_b'} - q_b' 1{p_b <= p_b'} - q_a 1{p_a <= p_a'} + q_a' 1{p_a >= p_a'}

    (primed: the previous state). The event's OFI is ``sum_{m < levels} e_m`` and the
    output is its rolling sum over the last ``window`` events (positive = net buying
    pressure, in size units). A level missing (NaN) in either state contributes 0; an
    event whose best level is missing or non-finite is skipped (state unchanged). The
    first valid event only sets the reference state; ready after ``window`` OFI values.
    The rolling sum is re-summed exactly every ``window`` steps so rounding cannot
    accumulate.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from tradebus.features.registry import FeatureKind, Param

__all__ = ["BOOK_IMBALANCE", "KINDS", "MICROPRICE", "OFI", "dispatch"]

MICROPRICE_ID = 500
BOOK_IMBALANCE_ID = 501
OFI_ID = 502

_N = 10  # levels per side provided by the bank's book events

# ----------------------------------------------------------------- microprice

# state: ready, last value


@njit(cache=True, _nrt=False)
def microprice_step(state: np.ndarray, params: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    """Size-weighted mid of the best bid/ask; inputs (bid, ask, bid_size, ask_size)."""
    bid = x[0]
    ask = x[1]
    bs = x[2]
    az = x[3]
    total = bs + az
    if (
        math.isfinite(bid)
        and math.isfinite(ask)
        and math.isfinite(total)
        and bid > 0.0
        and ask >= bid
        and bs >= 0.0
        and az >= 0.0
        and total > 0.0
    ):
        state[0] = 1.0
        state[1] = (bid * az + ask * bs) / total
    out[0] = state[1] if state[0] == 1.0 else np.nan


def _microprice_size(params: np.ndarray) -> int:
    return 2


def _one_warmup(params: np.ndarray) -> int:
    return 1


# ------------------------------------------------------------- book_imbalance

# state: ready, last value


@njit(cache=True, _nrt=False)
def book_imbalance_step(state: np.ndarray, params: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    """Top-``levels`` size imbalance; inputs bid_sz_0..9 then ask_sz_0..9."""
    levels = int(params[0])
    b = 0.0
    a = 0.0
    valid = True
    for m in range(levels):
        qb = x[m]
        qa = x[_N + m]
        if qb == qb:  # not NaN
            if qb < 0.0 or not math.isfinite(qb):
                valid = False
            b += qb
        if qa == qa:
            if qa < 0.0 or not math.isfinite(qa):
                valid = False
            a += qa
    total = a + b
    if valid and total > 0.0 and math.isfinite(total):
        state[0] = 1.0
        state[1] = (b - a) / total
    out[0] = state[1] if state[0] == 1.0 else np.nan


def _book_imbalance_size(params: np.ndarray) -> int:
    return 2


# ------------------------------------------------------------------------ ofi

# state: ready, count (ofi values seen), pos, has_prev, sum, out, since_resum,
#        prev levels (4 * _N: bid_px, bid_sz, ask_px, ask_sz), ring (window)
_O_READY = 0
_O_COUNT = 1
_O_POS = 2
_O_HAS_PREV = 3
_O_SUM = 4
_O_OUT = 5
_O_RESUM = 6
_O_PREV = 7
_O_RING = _O_PREV + 4 * _N


@njit(cache=True, _nrt=False)
def _level_ofi(pb: float, qb: float, pa: float, qa: float, pb0: float, qb0: float, pa0: float, qa0: float) -> float:
    e = 0.0
    if math.isfinite(pb) and math.isfinite(qb) and math.isfinite(pb0) and math.isfinite(qb0):
        if pb >= pb0:
            e += qb
        if pb <= pb0:
            e -= qb0
    if math.isfinite(pa) and math.isfinite(qa) and math.isfinite(pa0) and math.isfinite(qa0):
        if pa <= pa0:
            e -= qa
        if pa >= pa0:
            e += qa0
    return e


@njit(cache=True, _nrt=False)
def ofi_step(state: np.ndarray, params: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    """Multi-level OFI rolling sum; inputs bid_px_0..9, bid_sz_0..9, ask_px_0..9, ask_sz_0..9."""
    levels = int(params[0])
    window = int(params[1])
    ok = True
    for k in range(4):
        v = x[k * _N]
        if not math.isfinite(v) or v < 0.0:
            ok = False
    if ok and x[0] > x[2 * _N]:  # crossed best levels: not a valid book state
        ok = False
    if not ok:
        out[0] = state[_O_OUT] if state[_O_READY] == 1.0 else np.nan
        return
    prev = _O_PREV
    if state[_O_HAS_PREV] == 1.0:
        e = 0.0
        for m in range(levels):
            e += _level_ofi(
                x[m], x[_N + m], x[2 * _N + m], x[3 * _N + m],
                state[prev + m], state[prev + _N + m], state[prev + 2 * _N + m], state[prev + 3 * _N + m],
            )
        pos = int(state[_O_POS])
        old = state[_O_RING + pos]
        state[_O_RING + pos] = e
        state[_O_POS] = (pos + 1) % window
        state[_O_SUM] += e - old
        state[_O_RESUM] += 1.0
        if state[_O_RESUM] >= window:
            total = 0.0
            for i in range(window):
                total += state[_O_RING + i]
            state[_O_SUM] = total
            state[_O_RESUM] = 0.0
        state[_O_COUNT] += 1.0
        if state[_O_COUNT] >= window:
            state[_O_READY] = 1.0
            state[_O_OUT] = state[_O_SUM]
    for k in range(4 * _N):
        state[prev + k] = x[k]
    state[_O_HAS_PREV] = 1.0
    out[0] = state[_O_OUT] if state[_O_READY] == 1.0 else np.nan


def _ofi_size(params: np.ndarray) -> int:
    return _O_RING + int(params[1])


def _ofi_warmup(params: np.ndarray) -> int:
    return int(params[1]) + 1


_LEVELS_PARAM = Param("levels", 5, low=1, high=_N, integer=True)
_SZ = tuple(f"{side}_sz_{i}" for side in ("bid", "ask") for i in range(_N))
_ALL = tuple(f"{side}_{what}_{i}" for side in ("bid", "ask") for what in ("px", "sz") for i in range(_N))

MICROPRICE = FeatureKind(
    name="microprice",
    kind_id=MICROPRICE_ID,
    inputs=("bid", "ask", "bid_size", "ask_size"),
    outputs=("value",),
    params=(),
    state_size=_microprice_size,
    step=microprice_step,
    warmup=_one_warmup,
)
BOOK_IMBALANCE = FeatureKind(
    name="book_imbalance",
    kind_id=BOOK_IMBALANCE_ID,
    inputs=_SZ,
    outputs=("value",),
    params=(_LEVELS_PARAM,),
    state_size=_book_imbalance_size,
    step=book_imbalance_step,
    warmup=_one_warmup,
)
OFI = FeatureKind(
    name="ofi",
    kind_id=OFI_ID,
    inputs=_ALL,
    outputs=("value",),
    params=(_LEVELS_PARAM, Param("window", 100, low=1, high=1_000_000, integer=True)),
    state_size=_ofi_size,
    step=ofi_step,
    warmup=_ofi_warmup,
)

KINDS: tuple[FeatureKind, ...] = (MICROPRICE, BOOK_IMBALANCE, OFI)


@njit(cache=True, _nrt=False)
def dispatch(kind_id: int, state: np.ndarray, params: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    """Call the step kernel of ``kind_id`` (ids 500-502)."""
    if kind_id == MICROPRICE_ID:
        microprice_step(state, params, x, out)
    elif kind_id == BOOK_IMBALANCE_ID:
        book_imbalance_step(state, params, x, out)
    elif kind_id == OFI_ID:
        ofi_step(state, params, x, out)
