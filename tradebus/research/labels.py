"""Labels and event sampling: forward returns, triple-barrier and meta-labels, CUSUM events, sample weights.

Every function takes one instrument's bars (numpy arrays or a frame with ``ts_event,
open, high, low, close``) and returns a *separate* frame keyed by ``ts_event`` (the
event time), never columns added to a feature frame. Each label carries ``t1``, the
time its outcome is known (the end of its interval), which the splitters of
:mod:`tradebus.research.splitters` purge by.

Bars that share a time (threshold bars, a dataset's ``shared_times``) are taken in file
order, as a backtest replays them: a horizon of ``h`` bars is ``h`` rows later, a bar
sharing the event's time but after it in the file lies in the event's future (``t1`` may
then equal ``ts_event``), and no label of a bar reads one before it. Such frames are keyed
by ``ts_event`` and the position among the rows of that time, in file order, in the
labels as in the dataset.

Triple barrier
--------------
An event at bar ``i`` enters at ``close[i]``. With volatility ``w`` (a fraction of the
price, known at bar ``i``), the profit-taking barrier lies ``pt * w`` and the stop-loss
barrier ``sl * w`` away from the entry, on the side given by ``side`` (+1 long: profit
above; -1 short: profit below). Bars ``i+1 .. last`` are scanned, ``last`` being the
vertical barrier (``max_bars`` later and/or the last bar with ``ts_event <= ts[i] +
max_ns``). A barrier is touched when the bar's high/low reaches it (a price equal to the barrier
does, to within 1e-12 of the entry price: the barrier's float rounding).

* If a bar *opens* beyond a barrier, that barrier is hit first and the exit is at the
  open (a gap is not filled at the barrier price).
* If both barriers lie inside one bar's range, the order is unknown; ``tie_break``
  decides: ``"stop"`` (default, conservative: stop-loss first), ``"profit"``, or
  ``"open"`` (the barrier nearer to the bar's open is touched first; equal distance:
  stop-loss).
* Otherwise the exit is at the barrier price, and at ``close[last]`` on the vertical
  barrier (label ``sign(ret)``, or 0 with ``vertical_label="zero"``).

``barrier`` is +1 (profit), -1 (stop) or 0 (vertical); ``complete`` is False for an
event whose vertical barrier lies beyond the data and which touched nothing: its return stops at
the last close, no outcome (:func:`known_returns`, :func:`mark_incomplete`; ``tradebus research
labels`` and :func:`meta_labels` write such a row with a null ``label``/``meta`` and a NaN ``ret``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import numpy as np
import pandas as pd
from numba import njit

from tradebus.engine.clock import iso_ns
from tradebus.errors import DataError
from tradebus.features.batch import compute_features

__all__ = [
    "average_uniqueness",
    "clip_forward_returns",
    "concurrency",
    "cusum_events",
    "forward_label_end",
    "known_returns",
    "forward_returns",
    "mark_incomplete",
    "meta_labels",
    "return_attribution_weights",
    "time_decay",
    "triple_barrier",
    "volatility",
]

_TIES = {"stop": 0, "profit": 1, "open": 2}
#: A price within this fraction of the entry price of a barrier reaches it (float rounding of the barrier).
_TOUCH_RTOL = 1e-12


def _array(frame: pd.DataFrame, name: str) -> np.ndarray:
    """The price column ``name`` as float64, refused when a value is not finite (naming its row and time)."""
    if name not in frame.columns:
        raise DataError(f"labels: bars frame has no column {name!r}")
    values = frame[name].to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        row = int(bad[0])
        when = f" (ts_event {iso_ns(int(frame['ts_event'].iat[row]))})" if "ts_event" in frame.columns else ""
        raise DataError(f"labels: bars frame's {name} is {values[row]} at row {row}{when}"
                        f"{f' and {bad.size - 1} more rows' if bad.size > 1 else ''}: a label needs finite prices")
    return values


def _times(frame: pd.DataFrame) -> np.ndarray:
    if "ts_event" not in frame.columns:
        raise DataError("labels: bars frame has no column 'ts_event'")
    ts = frame["ts_event"].to_numpy(dtype=np.int64)
    if ts.size and not (ts[1:] >= ts[:-1]).all():
        row = int(np.argmax(ts[1:] < ts[:-1])) + 1
        raise DataError(f"labels: ts_event decreases at row {row}: bars must be in time order")
    return ts


# ---------------------------------------------------------------------------- forward returns


def forward_returns(
    bars: pd.DataFrame,
    horizons: list[int] | tuple[int, ...],
    kind: Literal["raw", "log", "bps"] = "raw",
    clip_quantile: float | None = None,
) -> pd.DataFrame:
    """Return from ``close[i]`` to ``close[i + h]`` for every horizon ``h`` (bars).

    Parameters
    ----------
    bars
        ``ts_event`` and ``close`` columns.
    horizons
        Positive horizons in bars.
    kind
        ``"raw"`` (``c[i+h]/c[i] - 1``), ``"log"`` or ``"bps"`` (raw × 10 000).
    clip_quantile
        If set (``0 < q < 0.5``), clip each column to its ``[q, 1 - q]`` quantiles over
        every row: each label's bounds know the returns after it, a description of the
        sample, not labels to train on over time (:func:`~tradebus.research.walkforward.walk_forward`
        clips each segment by its training rows instead).

    Returns
    -------
    pandas.DataFrame
        ``ts_event``, then per horizon ``fwd_<h>`` and ``t1_<h>`` (the time the return
        is known, ``ts_event[i + h]``; -1 when beyond the data, where the return is NaN).
    """
    ts = _times(bars)
    close = _array(bars, "close")
    n = close.shape[0]
    if clip_quantile is not None and not 0.0 < clip_quantile < 0.5:
        raise DataError(f"labels: clip_quantile must be in (0, 0.5), got {clip_quantile}")
    out = pd.DataFrame({"ts_event": ts})
    for h in horizons:
        if int(h) != h or h <= 0:
            raise DataError(f"labels: horizons must be positive integers, got {h!r}")
        h = int(h)
        future = np.full(n, np.nan)
        t1 = np.full(n, -1, dtype=np.int64)
        if h < n:
            future[: n - h] = close[h:]
            t1[: n - h] = ts[h:]
        if kind == "log":
            values = np.log(future / close)
        elif kind in ("raw", "bps"):
            values = future / close - 1.0
            if kind == "bps":
                values = values * 1e4
        else:
            raise DataError(f"labels: unknown return kind {kind!r}; expected raw, log or bps")
        out[f"fwd_{h}"] = values
        out[f"t1_{h}"] = t1
    return out if clip_quantile is None else clip_forward_returns(out, horizons, clip_quantile)


def clip_forward_returns(labels: pd.DataFrame, horizons: list[int] | tuple[int, ...], q: float) -> pd.DataFrame:
    """Clip every ``fwd_<h>`` column of ``labels`` to its ``[q, 1 - q]`` quantiles over the frame's rows.

    The bounds come from every row given, later ones included: a description of those rows
    (pass the rows of the window the labels describe), not labels to train on over time.

    Parameters
    ----------
    labels
        A frame of :func:`forward_returns`.
    horizons
        Its horizons.
    q
        ``0 < q < 0.5``.

    Returns
    -------
    pandas.DataFrame
        A copy with the clipped columns.
    """
    if not 0.0 < q < 0.5:
        raise DataError(f"labels: clip_quantile must be in (0, 0.5), got {q}")
    out = labels.copy()
    for h in horizons:
        name = f"fwd_{h}"
        if name not in out.columns:
            raise DataError(f"labels: forward-return frame has no column {name!r}")
        values = out[name].to_numpy(dtype=np.float64)
        if np.isnan(values).all():
            continue
        lo, hi = np.nanquantile(values, [q, 1.0 - q])
        out[name] = np.clip(values, lo, hi)
    return out


def forward_label_end(labels: pd.DataFrame, horizons: list[int] | tuple[int, ...]) -> np.ndarray:
    """The time every forward return of a row is known: its latest ``t1_<h>`` over ``horizons``.

    This is the end of the row's label interval, by which a splitter purges: a row labelled
    at several horizons overlaps a test fold as long as its longest label does.

    Parameters
    ----------
    labels
        A frame of :func:`forward_returns` (``t1_<h>`` per horizon).
    horizons
        The horizons it was built with.

    Returns
    -------
    numpy.ndarray
        int64 times; -1 where any horizon lies beyond the data.
    """
    if not horizons:
        raise DataError("labels: no horizon given")
    columns = [f"t1_{h}" for h in horizons]
    for name in columns:
        if name not in labels.columns:
            raise DataError(f"labels: forward-return frame has no column {name!r}")
    ends = labels[columns].to_numpy(dtype=np.int64)
    return np.where((ends >= 0).all(axis=1), ends.max(axis=1), -1)


# ---------------------------------------------------------------------------- volatility


def volatility(bars: pd.DataFrame, method: Literal["ewm", "atr"] = "ewm", span: int = 20) -> np.ndarray:
    """Volatility as a fraction of price at each bar, from the feature bank (known at that bar).

    ``"ewm"``: EWM standard deviation of log returns (``ewm_std`` of ``log_ret``,
    span ``span``); ``"atr"``: ``atr(window=span) / close``. NaN during warm-up.
    """
    if method == "ewm":
        specs = [
            {"name": "r", "kind": "log_ret", "input": "close"},
            {"name": "vol", "kind": "ewm_std", "params": {"span": span}, "input": "r"},
        ]
        return compute_features(bars, specs, event="bar")["vol"].to_numpy()
    if method == "atr":
        atr = compute_features(bars, [{"name": "atr", "kind": "atr", "params": {"window": span}}], event="bar")
        return atr["atr"].to_numpy() / _array(bars, "close")
    raise DataError(f"labels: unknown volatility method {method!r}; expected ewm or atr")


# ---------------------------------------------------------------------------- triple barrier


@njit(cache=True)
def _triple_barrier_kernel(  # noqa: PLR0913
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    events: np.ndarray,
    last: np.ndarray,
    side: np.ndarray,
    up: np.ndarray,
    down: np.ndarray,
    tie: int,
    end: np.ndarray,
    ret: np.ndarray,
    barrier: np.ndarray,
) -> None:
    """Scan each event's bars for the first barrier touch (see the module docstring)."""
    for k in range(events.shape[0]):
        i = events[k]
        p0 = close[i]
        s = side[k]
        if s > 0:
            pt_px = p0 * (1.0 + up[k])
            sl_px = p0 * (1.0 - down[k])
        else:
            pt_px = p0 * (1.0 - up[k])
            sl_px = p0 * (1.0 + down[k])
        # p0 * (1 + w) rounds twice: 100 * (1 + 0.1) is 110.00000000000001, which a high of 110 must reach
        tol = _TOUCH_RTOL * p0
        hit = 0
        exit_px = close[last[k]]
        j_end = last[k]
        for j in range(i + 1, last[k] + 1):
            o = open_[j]
            if s > 0:
                gap_pt = o >= pt_px - tol
                gap_sl = o <= sl_px + tol
                in_pt = high[j] >= pt_px - tol
                in_sl = low[j] <= sl_px + tol
            else:
                gap_pt = o <= pt_px + tol
                gap_sl = o >= sl_px - tol
                in_pt = low[j] <= pt_px + tol
                in_sl = high[j] >= sl_px - tol
            if gap_pt:
                hit, exit_px = 1, o
            elif gap_sl:
                hit, exit_px = -1, o
            elif in_pt and in_sl:
                if tie == 1:
                    hit = 1
                elif tie == 2:
                    hit = 1 if abs(pt_px - o) < abs(sl_px - o) else -1
                else:
                    hit = -1
                exit_px = pt_px if hit == 1 else sl_px
            elif in_pt:
                hit, exit_px = 1, pt_px
            elif in_sl:
                hit, exit_px = -1, sl_px
            if hit != 0:
                j_end = j
                break
        end[k] = j_end
        barrier[k] = hit
        ret[k] = s * (exit_px / p0 - 1.0)


def triple_barrier(
    bars: pd.DataFrame,
    events: np.ndarray | None = None,
    *,
    width: np.ndarray | None = None,
    pt: float = 1.0,
    sl: float = 1.0,
    max_bars: int | None = None,
    max_ns: int | None = None,
    side: np.ndarray | float = 1.0,
    regime: np.ndarray | None = None,
    regime_multipliers: Mapping[int, tuple[float, float]] | None = None,
    tie_break: Literal["stop", "profit", "open"] = "stop",
    vertical_label: Literal["sign", "zero"] = "sign",
) -> pd.DataFrame:
    """Triple-barrier labels of ``events`` (row positions in ``bars``); see the module docstring.

    Parameters
    ----------
    bars
        ``ts_event, open, high, low, close`` in time order (equal times in file order).
    events
        Row positions of the events (default: every bar).
    width
        Volatility per *bar* (fraction of price), e.g. :func:`volatility`; default 1 (then
        ``pt``/``sl`` are plain fractions). Events whose width is NaN or <= 0 are dropped.
    pt, sl
        Barrier multipliers of the width (``np.inf`` disables a barrier).
    max_bars, max_ns
        Vertical barrier in bars and/or nanoseconds after the event (the nearer one wins;
        neither: the end of the data).
    side
        +1 long / -1 short, per event or one value.
    regime, regime_multipliers
        Regime id per *bar*; ``{regime: (pt, sl)}`` overrides the multipliers of events
        whose bar is in that regime.
    tie_break
        Which barrier is touched first when both lie inside one bar (``"stop"``, ``"profit"``, ``"open"``).
    vertical_label
        Label of a vertical-barrier exit: ``sign(ret)`` or 0.

    Returns
    -------
    pandas.DataFrame
        ``ts_event`` (event time), ``t1`` (exit bar time), ``index``/``end_index`` (row
        positions), ``side``, ``ret`` (side-adjusted return), ``label`` (-1/0/1),
        ``barrier`` (+1 profit / -1 stop / 0 vertical), ``pt_width``/``sl_width``,
        ``complete``.
    """
    ts = _times(bars)
    o, h, lo, c = (_array(bars, name) for name in ("open", "high", "low", "close"))
    n = c.shape[0]
    ev = np.arange(n, dtype=np.int64) if events is None else np.asarray(events, dtype=np.int64)
    if ev.size and (ev.min() < 0 or ev.max() >= n):
        raise DataError(f"labels: event positions must lie in [0, {n}), got {ev.min()}..{ev.max()}")
    if tie_break not in _TIES:
        raise DataError(f"labels: tie_break must be one of {sorted(_TIES)}, got {tie_break!r}")
    sides = np.broadcast_to(np.asarray(side, dtype=np.float64), ev.shape).copy()
    if not np.isin(sides, (-1.0, 1.0)).all():
        raise DataError("labels: side must be +1 (long) or -1 (short)")
    w = np.ones(n) if width is None else np.asarray(width, dtype=np.float64)
    if w.shape != (n,):
        raise DataError(f"labels: width must have one value per bar ({n}), got shape {w.shape}")
    pt_m = np.full(ev.shape, float(pt))
    sl_m = np.full(ev.shape, float(sl))
    if regime_multipliers:
        if regime is None:
            raise DataError("labels: regime_multipliers need a regime array")
        reg = np.asarray(regime)[ev]
        for key, (p, s) in regime_multipliers.items():
            mask = reg == key
            pt_m[mask], sl_m[mask] = p, s
    we = w[ev]
    keep = np.isfinite(we) & (we > 0)
    ev, sides, pt_m, sl_m, we = ev[keep], sides[keep], pt_m[keep], sl_m[keep], we[keep]
    last = np.full(ev.shape, n - 1, dtype=np.int64)
    if max_bars is not None:
        last = np.minimum(last, ev + int(max_bars))
    if max_ns is not None:
        last = np.minimum(last, np.searchsorted(ts, ts[ev] + int(max_ns), side="right") - 1)
    end = np.empty(ev.shape, dtype=np.int64)
    ret = np.empty(ev.shape, dtype=np.float64)
    barrier = np.empty(ev.shape, dtype=np.int64)
    _triple_barrier_kernel(o, h, lo, c, ev, last, sides, pt_m * we, sl_m * we, _TIES[tie_break], end, ret, barrier)
    label = np.where(barrier != 0, barrier, 0 if vertical_label == "zero" else np.sign(ret)).astype(np.int64)
    # the vertical barrier (the nearer of the two) lies inside the data
    horizon_in_data = np.zeros(ev.shape, dtype=bool)
    if max_bars is not None:
        horizon_in_data |= ev + int(max_bars) <= n - 1
    if max_ns is not None and n:
        horizon_in_data |= ts[ev] + int(max_ns) <= ts[-1]
    return pd.DataFrame(
        {
            "ts_event": ts[ev],
            "t1": ts[end],
            "index": ev,
            "end_index": end,
            "side": sides,
            "ret": ret,
            "label": label,
            "barrier": barrier,
            "pt_width": pt_m * we,
            "sl_width": sl_m * we,
            "complete": (barrier != 0) | horizon_in_data,
        }
    )


def known_returns(labels: pd.DataFrame) -> np.ndarray:
    """Each triple-barrier label's return, NaN where the label is incomplete.

    An incomplete label (no barrier touched before the data ends, its vertical barrier beyond
    it) has a return cut at the last close: no label to train on, score or count a class by.

    Parameters
    ----------
    labels
        A frame of :func:`triple_barrier` (``ret`` and ``complete``).

    Returns
    -------
    numpy.ndarray
        float64 returns, one per row.
    """
    ret = labels["ret"].to_numpy(dtype=np.float64)
    return np.where(labels["complete"].to_numpy(dtype=bool), ret, np.nan)


def mark_incomplete(labels: pd.DataFrame) -> pd.DataFrame:
    """``labels`` with no outcome on its incomplete rows: ``ret`` NaN (:func:`known_returns`), ``label`` null.

    The rows stay (``complete`` False), so the frame keeps one row per event, but carry no
    class or return to train on, score or count by.

    Parameters
    ----------
    labels
        A frame of :func:`triple_barrier`.

    Returns
    -------
    pandas.DataFrame
        A copy; ``label`` a nullable ``Int64`` column.
    """
    out = labels.copy()
    complete = labels["complete"].to_numpy(dtype=bool)
    out["ret"] = known_returns(labels)
    out["label"] = pd.array(labels["label"].to_numpy(), dtype="Int64")
    out.loc[~complete, "label"] = pd.NA
    return out


def meta_labels(labels: pd.DataFrame) -> pd.DataFrame:
    """Meta-labels of a primary model's trades (triple-barrier labels with its ``side``).

    ``meta`` is 1 when the trade in the primary's direction made money (profit barrier,
    or a positive vertical exit), else 0, and null where the label is incomplete (its
    ``ret`` NaN: :func:`mark_incomplete`); ``t1`` is kept for purging.
    """
    out = mark_incomplete(labels)[["ts_event", "t1", "index", "end_index", "side", "ret"]]
    ret = out["ret"].to_numpy()
    out["meta"] = pd.array((ret > 0).astype(np.int64), dtype="Int64")
    out.loc[np.isnan(ret), "meta"] = pd.NA
    return out


# ---------------------------------------------------------------------------- CUSUM


@njit(cache=True)
def _cusum_kernel(r: np.ndarray, h: np.ndarray, out: np.ndarray) -> int:
    s_pos = 0.0
    s_neg = 0.0
    count = 0
    for t in range(r.shape[0]):
        if not (np.isfinite(r[t]) and np.isfinite(h[t])):
            continue
        s_pos = max(0.0, s_pos + r[t])
        s_neg = min(0.0, s_neg + r[t])
        # a falling threshold can put both sums past it at one bar: both reset, one event
        up = s_pos > h[t]
        down = s_neg < -h[t]
        if up:
            s_pos = 0.0
        if down:
            s_neg = 0.0
        if up or down:
            out[count] = t
            count += 1
    return count


def cusum_events(close: np.ndarray, threshold: float | np.ndarray) -> np.ndarray:
    """Row positions sampled by the symmetric CUSUM filter on log returns.

    ``S+ = max(0, S+ + r_t)``, ``S- = min(0, S- + r_t)``; an event at ``t`` when
    ``S+ > h_t`` or ``S- < -h_t``, and each sum past its threshold is reset to 0 (López de
    Prado, AFML 2.5.2.1: ``S_t = max(S+, -S-)`` is reset; both when a falling ``h_t`` puts
    both past it at once, so the same excursion is not sampled again at ``t + 1``). ``threshold``
    is one value or one per bar (e.g. ``k * volatility(...)``); bars with a NaN
    return or threshold are skipped.
    """
    c = np.asarray(close, dtype=np.float64)
    r = np.full(c.shape, np.nan)
    r[1:] = np.log(c[1:] / c[:-1])
    h = np.broadcast_to(np.asarray(threshold, dtype=np.float64), c.shape).copy()
    out = np.empty(c.shape, dtype=np.int64)
    count = _cusum_kernel(r, h, out)
    return out[:count].copy()


# ---------------------------------------------------------------------------- sample weights


def concurrency(start: np.ndarray, end: np.ndarray, n_bars: int) -> np.ndarray:
    """Number of labels whose interval ``[start, end]`` (bar positions, inclusive) covers each bar."""
    diff = np.zeros(n_bars + 1, dtype=np.int64)
    np.add.at(diff, np.asarray(start, dtype=np.int64), 1)
    np.add.at(diff, np.asarray(end, dtype=np.int64) + 1, -1)
    return np.cumsum(diff[:-1])


def average_uniqueness(start: np.ndarray, end: np.ndarray, n_bars: int) -> np.ndarray:
    """Average uniqueness of each label: the mean of ``1 / concurrency`` over its bars."""
    start = np.asarray(start, dtype=np.int64)
    end = np.asarray(end, dtype=np.int64)
    c = concurrency(start, end, n_bars)
    inv = np.zeros(n_bars + 1)
    np.divide(1.0, c, out=inv[1:], where=c > 0)
    cum = np.cumsum(inv)
    return (cum[end + 1] - cum[start]) / (end - start + 1)


def return_attribution_weights(start: np.ndarray, end: np.ndarray, close: np.ndarray) -> np.ndarray:
    """Weights by attributed absolute return, ``|sum_{t in (start, end]} r_t / c_t|``, scaled to sum to n.

    ``r_t`` is the log return of bar ``t`` and ``c_t`` the concurrency (the bar of the
    event itself is excluded: its return happened before the event).
    """
    start = np.asarray(start, dtype=np.int64)
    end = np.asarray(end, dtype=np.int64)
    c_arr = np.asarray(close, dtype=np.float64)
    n = c_arr.shape[0]
    r = np.zeros(n)
    r[1:] = np.log(c_arr[1:] / c_arr[:-1])
    conc = concurrency(start, end, n)
    share = np.zeros(n + 1)
    np.divide(r, conc, out=share[1:], where=conc > 0)
    cum = np.cumsum(share)
    w = np.abs(cum[end + 1] - cum[start + 1])
    total = w.sum()
    return w * (len(w) / total) if total > 0 else np.ones(len(w))


def time_decay(uniqueness: np.ndarray, c: float = 1.0) -> np.ndarray:
    """Time-decay factors over cumulative uniqueness (labels in time order).

    Linear in cumulative uniqueness ``x``, 1 for the newest label; the oldest gets
    ``c`` (``0 <= c <= 1``), or 0 for the oldest ``-c`` share of ``x`` (``-1 < c < 0``).
    Multiply with the other weights.
    """
    if not -1.0 < c <= 1.0:
        raise DataError(f"labels: time-decay c must lie in (-1, 1], got {c}")
    x = np.cumsum(np.asarray(uniqueness, dtype=np.float64))
    total = x[-1]
    slope = (1.0 - c) / total if c >= 0 else 1.0 / ((c + 1.0) * total)
    const = 1.0 - slope * total
    return np.maximum(const + slope * x, 0.0)
