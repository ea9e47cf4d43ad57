"""Walk-forward retraining backtests: retrain on the purged past, trade the next segment on the kernel.

Segment ``k`` starts at bar ``s_k = min_train + k * retrain_every`` (or every
``retrain_every_ns`` of time, e.g. every 30 days), moved back to the first of the bars
sharing its time (threshold bars): the model switches by time, so the bars of one time
belong to one segment (its model is the same, as their labels end at or after that
time and are purged). Its model is fitted
on the bars before ``s_k`` whose label is known before the segment starts
(``t1 < ts[s_k]``: purged) and whose features are ready; it then trades bars ``s_k ..
s_{k+1} - 1`` through :class:`~tradebus.research.strategy.ModelSignal` on the
event-driven kernel. All segments run in one kernel pass (the strategy switches models
at the segment starts, trained beforehand on past data only), so the out-of-sample
equity curve and trade log are stitched by construction and positions carry across
segment boundaries as they would live.

Per segment: the rank IC (Spearman) and hit rate of the model output against the
label return, the number of fills, of orders denied (buying power, risk limits; a warning
counts them all) and the PnL (equity change over the segment).

With ``clip_quantile``, segment ``k``'s labels (its training rows and the returns its IC
is measured on) are clipped to the ``[q, 1 - q]`` quantiles of its training rows' returns:
bounds known at ``s_k``. Clipping every label with quantiles of the whole sample would let
each segment's labels depend on the returns of later segments.

Determinism: estimators get ``random_state=seed`` when they take one, and fitting runs
under a one-thread limit for BLAS/OpenMP (``threadpoolctl``); the same inputs give
byte-identical outputs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from sklearn.base import clone
from threadpoolctl import threadpool_limits

from tradebus.engine.instrument import Instrument
from tradebus.engine.kernel import Kernel, RunResult
from tradebus.errors import ConfigError
from tradebus.execution.config import VenueConfig
from tradebus.features.batch import compute_features
from tradebus.features.spec import FeatureSpec, load_specs
from tradebus.reports.denials import warn_denials
from tradebus.research.config import model_columns_problem
from tradebus.research.lookahead import MemoryReplay, SourceFrame
from tradebus.research.model import ModelStep
from tradebus.research.strategy import ModelSignal

__all__ = ["WalkForwardResult", "denied_between", "segment_starts", "walk_forward"]


@dataclass
class WalkForwardResult:
    """Segments, stitched out-of-sample equity and trade log of a walk-forward backtest."""

    segments: pd.DataFrame
    equity: pd.DataFrame
    fills: pd.DataFrame
    outputs: np.ndarray
    result: RunResult

    def summary(self) -> dict[str, Any]:
        """JSON-ready totals."""
        seg = self.segments
        return {
            "segments": len(seg),
            "mean_ic": float(np.nanmean(seg["ic"])) if len(seg) else None,
            "mean_hit_rate": float(np.nanmean(seg["hit_rate"])) if len(seg) else None,
            "pnl": float(seg["pnl"].sum()),
            "fills": int(seg["fills"].sum()),
            "denied": int(seg["denied"].sum()),
            "final_equity": float(self.equity["equity"].iat[-1]) if len(self.equity) else None,
        }


def segment_starts(ts: np.ndarray, min_train: int, *, retrain_every: int | None = None,
                   retrain_every_ns: int | None = None) -> list[int]:
    """The first bar of each walk-forward segment, none splitting the bars of one time.

    Marks fall at bar ``min_train + k * retrain_every`` or every ``retrain_every_ns`` from
    bar ``min_train``'s time; each segment starts at the first bar at or after its mark's time.
    A model switched by time (live) covers every bar of that time, so a start among bars
    sharing a time moves back to the first of them and batch predictions by position agree.

    Parameters
    ----------
    ts
        Bar ``ts_event`` (int64 ns), non-decreasing.
    min_train
        Position of the first mark (``0 < min_train < len(ts)``).
    retrain_every, retrain_every_ns
        Segment length in bars or in nanoseconds; give one.

    Returns
    -------
    list[int]
        Increasing, distinct segment starts.
    """
    if retrain_every is not None:
        marks = ts[min_train::retrain_every]
    else:
        assert retrain_every_ns is not None
        marks = np.arange(int(ts[min_train]), int(ts[-1]) + 1, retrain_every_ns, dtype=np.int64)
    return sorted(set(np.searchsorted(ts, marks, side="left").tolist()))


def denied_between(result: RunResult, start_ns: int, end_ns: int) -> int:
    """Orders of ``result`` denied (buying power, risk limits) at times ``start_ns`` to ``end_ns`` inclusive."""
    return sum(1 for d in result.denials if start_ns <= d.ts_event <= end_ns)


def _utc(ts: int) -> str:
    return pd.Timestamp(int(ts), unit="ns", tz="UTC").isoformat()


def _seeded(estimator: Any, seed: int) -> Any:
    model = clone(estimator)
    if "random_state" in model.get_params():
        model.set_params(random_state=seed)
    return model


def walk_forward(
    bars: pd.DataFrame,
    instrument: Instrument,
    specs: Sequence[FeatureSpec | dict[str, Any]],
    columns: Sequence[str],
    label_ret: np.ndarray,
    label_t1: np.ndarray,
    estimator: Any,
    *,
    retrain_every: int | None = None,
    retrain_every_ns: int | None = None,
    min_train: int,
    quantity: float,
    upper: float = 0.55,
    lower: float = 0.45,
    mode: str = "long_only",
    venue: VenueConfig | None = None,
    initial_cash: float = 100_000.0,
    seed: int = 0,
    clip_quantile: float | None = None,
    on_segment: Callable[[int, int], None] | None = None,
) -> WalkForwardResult:
    """Run a walk-forward retraining backtest of one instrument's bars.

    Parameters
    ----------
    bars
        ``ts_event, ts_init, open, high, low, close, volume`` in time order.
    instrument
        The traded instrument (its id names the run).
    specs, columns
        Features computed on the bars and the columns fed to the model.
    label_ret, label_t1
        Per bar: the label's return (the target is ``label_ret > 0``; NaN = no label)
        and the time it is known (purging).
    estimator
        Unfitted classifier (cloned per segment).
    retrain_every, retrain_every_ns
        Segment length in bars, or in nanoseconds (a segment starts at the first bar at or
        after each multiple of it past the first segment's start); give one. A start among
        bars sharing a time moves back to the first of them.
    min_train
        Bars before the first segment (fewer when bar ``min_train`` shares its time with earlier bars).
    quantity, upper, lower, mode
        :class:`~tradebus.research.strategy.ModelSignal` parameters.
    venue, initial_cash
        Simulated venue settings and starting cash.
    seed
        ``random_state`` of the estimators.
    clip_quantile
        If set (``0 < q < 0.5``), clip each segment's labels to the ``[q, 1 - q]`` quantiles
        of its training rows' returns (pass unclipped ``label_ret``).
    on_segment
        Called with ``(segments trained, total)`` after each model is fitted (progress).
    """
    specs = load_specs(list(specs))
    n = len(bars)
    if (retrain_every is None) == (retrain_every_ns is None):
        raise ConfigError("walk-forward: give one of retrain_every (bars) and retrain_every_ns")
    if (retrain_every or retrain_every_ns or 0) < 1 or not 0 < min_train < n:
        raise ConfigError(f"walk-forward: need a positive retrain period and 0 < min_train < {n} bars")
    if clip_quantile is not None and not 0.0 < clip_quantile < 0.5:
        raise ConfigError(f"walk-forward: clip_quantile must be in (0, 0.5), got {clip_quantile}")
    ts = bars["ts_event"].to_numpy(dtype=np.int64)
    features = compute_features(bars, specs, event="bar")
    problem = model_columns_problem(list(columns), list(features.columns))
    if problem is not None:
        raise ConfigError(problem)
    X = features[list(columns)].to_numpy(dtype=np.float64)
    ret = np.asarray(label_ret, dtype=np.float64)
    t1 = np.asarray(label_t1, dtype=np.int64)
    usable = ~np.isnan(X).any(axis=1) & ~np.isnan(ret)
    starts = segment_starts(ts, min_train, retrain_every=retrain_every, retrain_every_ns=retrain_every_ns)
    steps: list[ModelStep] = []
    train_counts = []
    clip_bounds = []
    with threadpool_limits(1):
        for s in starts:
            train = np.flatnonzero(usable[:s] & (t1[:s] < ts[s]))
            if len(train) == 0:
                raise ConfigError(f"walk-forward: no training row before bar {s} ({_utc(ts[s])}): no earlier bar has "
                                  f"every model column ready and a label ended before it; raise min_train")
            lo, hi = -np.inf, np.inf
            if clip_quantile is not None:
                lo, hi = np.quantile(ret[train], [clip_quantile, 1.0 - clip_quantile])
            clip_bounds.append((lo, hi))
            y = (np.clip(ret[train], lo, hi) > 0).astype(np.int64)
            if len(np.unique(y)) < 2:
                raise ConfigError(f"walk-forward: the {len(train)} training rows before bar {s} ({_utc(ts[s])}) all "
                                  f"have a label return {'> 0' if y[0] else '<= 0'}: a classifier needs both classes; "
                                  f"raise min_train")
            model = _seeded(estimator, seed).fit(X[train], y)
            steps.append(ModelStep(model, tuple(columns), tuple(specs)))
            train_counts.append(len(train))
            if on_segment is not None:
                on_segment(len(steps), len(starts))
    strategy = ModelSignal(instrument.instrument_id, model=steps[0], quantity=quantity, upper=upper, lower=lower,
                           mode=mode)  # type: ignore[arg-type]
    strategy.schedule([int(ts[s]) for s in starts], steps)
    # equity after every bar time: a segment's PnL is read at its bars' times, irregular or shared
    kernel = Kernel([instrument], venue_config=venue or VenueConfig(), initial_cash=initial_cash,
                    equity_interval_ns=1)
    kernel.add_strategy(strategy)
    result = kernel.run(MemoryReplay([SourceFrame(instrument.instrument_id, "bars", bars)]))
    outputs = np.array([v for _, v in strategy.outputs])
    equity = pd.DataFrame([(e.ts, e.equity) for e in result.equity], columns=["ts", "equity"])
    fills = pd.DataFrame([(f.ts_event, f.side, f.quantity, f.price, f.fee, f.reason) for f in result.fills],
                         columns=["ts_event", "side", "quantity", "price", "fee", "reason"])
    eq_ts, eq_val = equity["ts"].to_numpy(), equity["equity"].to_numpy()
    rows = []
    bounds = [*starts, n]
    for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        seg = slice(a, b)
        ok = ~np.isnan(outputs[seg]) & ~np.isnan(ret[seg])
        o, r = outputs[seg][ok], np.clip(ret[seg][ok], *clip_bounds[k])
        ic = float(spearmanr(o, r).statistic) if ok.sum() > 2 and np.ptp(o) > 0 and np.ptp(r) > 0 else float("nan")
        hit = float(np.mean((o > 0.5) == (r > 0))) if ok.any() else float("nan")
        # equity just before the segment's first bar and at its last bar
        before = eq_val[np.searchsorted(eq_ts, ts[a], side="left") - 1] if a > 0 else initial_cash
        end = eq_val[np.searchsorted(eq_ts, ts[b - 1], side="right") - 1]
        n_fills = int(((fills["ts_event"] >= ts[a]) & (fills["ts_event"] <= ts[b - 1])).sum()) if len(fills) else 0
        n_denied = denied_between(result, int(ts[a]), int(ts[b - 1]))
        rows.append({"segment": k, "start": int(ts[a]), "end": int(ts[b - 1]), "train_rows": train_counts[k],
                     "ic": ic, "hit_rate": hit, "fills": n_fills, "denied": n_denied, "pnl": float(end - before)})
    warn_denials(result.denials, "walk-forward")
    oos = equity[equity["ts"] >= ts[starts[0]]].reset_index(drop=True)
    return WalkForwardResult(pd.DataFrame(rows), oos, fills, outputs, result)
