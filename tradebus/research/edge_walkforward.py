"""Rolling walk-forward of an edge model traded by :class:`~tradebus.research.edge_strategy.EdgeGated`.

Segment ``k`` starts at bar ``s_k = min_train + k * retrain_every``, moved back to the first
of the bars sharing its time (:func:`~tradebus.research.walkforward.segment_starts`: live
predictions switch models by time, so the bars of one time belong to one segment). Its model
(:class:`~tradebus.research.edge.HorizonEdge`) is trained on the bars before ``s_k``
(the last ``train_window`` of them, if set) whose features are ready and whose every
horizon's forward return is known before the segment starts (``t1 < ts[s_k]``: purged).
Within those rows, hyper-parameter tuning and edge calibration use a purged K-fold
(:class:`~tradebus.research.splitters.PurgedKFold`, label intervals ``[ts, t1]``, with
embargo), so no out-of-fold prediction comes from a model trained on overlapping labels.
Optionally the columns are pruned to the most important ones and the model refitted. The
calibration's out-of-fold models repeat that procedure on their own fold's training rows: they
prune there, and, when the parameters in force were tuned, rerun the tuning there (a nested
purged K-fold, :class:`_FoldTuning`; with ``tune: first``, on the first window's rows among
them, or on all of them when the fold's test rows hold most of the first window), so no test
fold's labels help choose the parameters or the columns that predict it. The nested tuning costs up to ``cv_splits`` more tuning runs per
tuned segment (grid points x ``cv_splits`` fits each, on fewer rows).

A segment needs at least :data:`ROWS_A_FOLD` training rows per fold (``10 * cv_splits``), and
every fold of each purged K-fold, segment's or nested, at least :data:`ROWS_A_FOLD` training rows
once the purge and embargo have taken theirs: a fold left with fewer is a
:class:`~tradebus.errors.ConfigError` naming it, not a model fitted on a row or two.

:func:`train_segments` fits every segment's model and predicts its bars in batch;
:func:`run_edges` trades the bars on the event-driven kernel from either the batch
predictions (:class:`~tradebus.research.edge_strategy.PrecomputedEdges`) or the models
predicting live per bar (:class:`~tradebus.research.edge_strategy.ModelEdges`), in one pass
(positions carry across segment starts as they would live); :func:`segment_table` gives
per segment the rank IC and hit rate of the edge against the realised combined return,
the entries, the fills, the denied orders, the PnL and the feature importance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from loguru import logger
from threadpoolctl import threadpool_limits

from tradebus.engine.instrument import Instrument
from tradebus.engine.kernel import Kernel, RunResult
from tradebus.errors import ConfigError
from tradebus.execution.config import VenueConfig
from tradebus.features.batch import compute_features
from tradebus.features.spec import FeatureSpec, load_specs
from tradebus.reports.denials import warn_denials
from tradebus.research.edge import (
    calibrate_edge,
    combined_target,
    fit_edge,
    oof_edge,
    prune_columns,
    rank_ic,
    tune_edge,
)
from tradebus.research.labels import forward_returns
from tradebus.research.lookahead import MemoryReplay, SourceFrame
from tradebus.research.model import ModelStep
from tradebus.research.splitters import PurgedKFold
from tradebus.research.edge_strategy import EdgeGated, EdgeSource, ModelEdges, PrecomputedEdges
from tradebus.research.walkforward import denied_between, segment_starts

__all__ = ["ROWS_A_FOLD", "EdgeSegment", "TrainedEdges", "run_edges", "segment_table", "train_segments"]

#: Training rows a segment needs per fold of its purged K-fold, and the fewest a fold may keep
#: after its purge and embargo.
ROWS_A_FOLD = 10


@dataclass
class EdgeSegment:
    """One walk-forward segment: bars ``[start, end)``, its model and how it was fitted.

    ``fold_params`` holds the parameters each calibration fold was fitted with (its own tuning
    run, :class:`_FoldTuning`), ``fold_tuning`` on which rows they were chosen; both empty when
    the parameters were not tuned.
    """

    start: int
    end: int
    step: ModelStep
    train_rows: int
    params: dict[str, Any]
    calibration: dict[str, float]
    importance: dict[str, float]
    tuning: list[dict[str, Any]] = field(default_factory=list)
    fold_params: list[dict[str, Any]] = field(default_factory=list)
    fold_tuning: list[str] = field(default_factory=list)


@dataclass
class TrainedEdges:
    """Every segment, the batch edges of every bar (NaN before the first segment) and the targets."""

    ts: np.ndarray
    segments: list[EdgeSegment]
    edges: np.ndarray
    target: np.ndarray
    forward: dict[int, np.ndarray]

    def live_source(self) -> ModelEdges:
        """The segments' models predicting per bar."""
        return ModelEdges([int(self.ts[s.start]) for s in self.segments], [s.step for s in self.segments])

    def precomputed_source(self) -> PrecomputedEdges:
        """The batch predictions looked up by bar time."""
        return PrecomputedEdges(self.ts, self.edges)


@dataclass
class _FoldTuning:
    """The parameters of a calibration fold, chosen without the fold's test labels (nested purged K-fold).

    The segment's parameters came from :func:`tune_edge` on the bars ``tuned_on`` (this segment's
    training rows, or the first segment's with ``tune: first``), which hold labels of the
    calibration folds' test rows. A fold instead reruns that tuning on the bars of ``tuned_on``
    among its own training rows (what the outer purge and embargo left), with the same grid and a
    purged K-fold of ``cv_splits`` folds and ``embargo`` rows of its own. A fold whose training
    rows hold all of ``tuned_on`` gets the segment's choice (the same run). A fold left with fewer
    than ``ROWS_A_FOLD * cv_splits`` of them (with ``tune: first``, a later segment's fold whose test rows
    hold most of the first window) reruns the tuning on all its training rows instead, and says so
    in the log. Each fold's parameters are appended to ``log``, how they were chosen to ``how``.

    Raises
    ------
    ConfigError
        The nested purged K-fold cannot be made on the fold's rows (a fold of it left with fewer
        than :data:`ROWS_A_FOLD` training rows by the purge and embargo), naming ``where``, the fold
        and its rows.
    """

    X: np.ndarray
    forward: Mapping[int, np.ndarray]
    weights: Mapping[int, float]
    grid: Mapping[str, Sequence[Any]]
    base: Mapping[str, Any] | None
    ts: np.ndarray
    t1: np.ndarray
    rows: np.ndarray
    tuned_on: np.ndarray
    chosen: Mapping[str, Any]
    cv_splits: int
    embargo: int
    seed: int
    nthread: int
    log: list[dict[str, Any]]
    how: list[str]
    where: str

    def __call__(self, train: np.ndarray) -> dict[str, Any]:
        """The parameters of the fold whose training positions (into ``rows``) are ``train``."""
        fold, own = len(self.log), self.rows[train]
        pool = own[np.isin(own, self.tuned_on)]
        if np.array_equal(pool, self.tuned_on):
            params = dict(self.chosen)
            self.how.append(f"the segment's choice: its {len(own)} training rows hold the {len(pool)} it was tuned on")
        else:
            if len(pool) < ROWS_A_FOLD * self.cv_splits:
                logger.info("{}: calibration fold {} holds only {} of the {} rows the parameters in force were tuned "
                            "on, fewer than {} ({} purged folds); it tunes on its {} training rows", self.where, fold,
                            len(pool), len(self.tuned_on), ROWS_A_FOLD * self.cv_splits, self.cv_splits, len(own))
                self.how.append(f"tuned on its {len(own)} training rows (only {len(pool)} of the {len(self.tuned_on)} "
                                "the parameters in force were tuned on)")
                pool = own
            else:
                self.how.append(f"tuned on {len(pool)} of the {len(self.tuned_on)} rows the parameters in force were "
                                "tuned on")
            inner = PurgedKFold(self.cv_splits, t0=self.ts[pool], t1=self.t1[pool], embargo=self.embargo,
                                min_train=ROWS_A_FOLD)
            try:
                params = tune_edge(self.X[pool], {h: self.forward[h][pool] for h in self.weights}, self.weights,
                                   self.grid, inner, self.base, seed=self.seed, nthread=self.nthread).params
            except ConfigError as exc:
                raise ConfigError(f"{self.where}: calibration fold {fold}'s nested tuning on {len(pool)} rows: "
                                  f"{exc}") from None
        self.log.append(params)
        return params


def train_segments(
    bars: pd.DataFrame,
    specs: Sequence[FeatureSpec | Mapping[str, Any]],
    columns: Sequence[str],
    weights: Mapping[int, float],
    *,
    min_train: int,
    retrain_every: int,
    train_window: int | None = None,
    params: Mapping[str, Any] | None = None,
    tune_grid: Mapping[str, Sequence[Any]] | None = None,
    tune: str = "first",
    cv_splits: int = 4,
    embargo: int = 0,
    prune_keep: int | None = None,
    calibrate: bool = True,
    seed: int = 0,
    nthread: int = 1,
) -> TrainedEdges:
    """Fit each segment's edge model on purged past data and predict its bars (module docstring).

    Parameters
    ----------
    bars
        ``ts_event, open, high, low, close, volume`` in time order.
    specs, columns
        Features computed on the bars and the columns the model may use.
    weights
        ``horizon (bars) -> weight`` of the combined target.
    min_train, retrain_every, train_window
        First segment start, segment length and (optional) rolling training length, in bars
        (a start among bars sharing a time moves back to the first of them).
    params, tune_grid, tune
        XGBoost parameters; a grid tuned by purged K-fold IC ``"first"`` (first segment
        only, its choice kept), ``"every"`` segment, or ``"none"``. Each calibration fold
        reruns the tuning that chose the parameters in force on its own training rows
        (:class:`_FoldTuning`).
    cv_splits, embargo
        Purged K-fold folds and embargo (rows) for tuning and calibration.
    prune_keep
        Keep this many most important columns (refit), or all when ``None``; each
        calibration fold prunes on its own training rows (:func:`~tradebus.research.edge.oof_edge`'s ``keep``).
    calibrate
        Map the raw edge through the purged out-of-fold OLS line (:func:`calibrate_edge`).
    seed, nthread
        XGBoost ``random_state`` and threads.

    Raises
    ------
    ConfigError
        Fewer than ``ROWS_A_FOLD * cv_splits`` training rows before a segment, or a purged K-fold
        (the segment's, or a calibration fold's nested one) with a fold that the purge and embargo
        leave fewer than :data:`ROWS_A_FOLD` training rows: the message names the segment, the fold
        and the rows.
    """
    specs = load_specs(list(specs))
    n = len(bars)
    if tune not in ("none", "first", "every"):
        raise ConfigError(f"edge walk-forward: tune must be 'none', 'first' or 'every', got {tune!r}")
    if retrain_every < 1 or not 0 < min_train < n:
        raise ConfigError(f"edge walk-forward: need retrain_every >= 1 and 0 < min_train < {n} bars")
    ts = bars["ts_event"].to_numpy(dtype=np.int64)
    features = compute_features(bars, specs, event="bar")
    missing = [c for c in columns if c not in features.columns]
    if missing:
        raise ConfigError(f"edge walk-forward: no feature column(s) {missing}; have {list(features.columns)}")
    X_all = features[list(columns)].to_numpy(dtype=np.float64)
    fwd = forward_returns(bars, sorted(weights), kind="bps")
    forward = {h: fwd[f"fwd_{h}"].to_numpy() for h in sorted(weights)}
    t1 = fwd[f"t1_{max(weights)}"].to_numpy()
    target = combined_target(forward, weights)
    usable = ~np.isnan(X_all).any(axis=1) & np.isfinite(target) & (t1 >= 0)
    edges = np.full(n, np.nan)
    segments: list[EdgeSegment] = []
    chosen: dict[str, Any] = dict(params or {})
    tuned_on: np.ndarray | None = None  # the bars (training rows) the parameters in force were tuned on
    starts = segment_starts(ts, min_train, retrain_every=retrain_every)
    with threadpool_limits(nthread):
        for k, s in enumerate(starts):
            lo = 0 if train_window is None else max(0, s - train_window)
            rows = lo + np.flatnonzero(usable[lo:s] & (t1[lo:s] < ts[s]))
            when = pd.Timestamp(int(ts[s]), unit="ns", tz="UTC").isoformat()
            if len(rows) < ROWS_A_FOLD * cv_splits:
                raise ConfigError(f"edge walk-forward: only {len(rows)} training rows before bar {s} ({when}) (bars "
                                  f"of the training window with every model column set whose {max(weights)}-bar label "
                                  f"ends before it), fewer than the {ROWS_A_FOLD * cv_splits} that {cv_splits} purged "
                                  f"folds need ({ROWS_A_FOLD} a fold, and each fold {ROWS_A_FOLD} training rows after "
                                  "its purge and embargo)")
            where = f"segment {k} (bar {s}, {when})"
            try:
                cv = PurgedKFold(cv_splits, t0=ts[rows], t1=t1[rows], embargo=embargo, min_train=ROWS_A_FOLD)
                fw = {h: forward[h][rows] for h in forward}
                tuning: list[dict[str, Any]] = []
                if tune_grid and (tune == "every" or (tune == "first" and k == 0)):
                    result = tune_edge(X_all[rows], fw, weights, tune_grid, cv, params, seed=seed, nthread=nthread)
                    chosen, tuning, tuned_on = result.params, result.scores, rows
                cols = list(columns)
                model = fit_edge(X_all[rows], fw, weights, chosen, seed=seed, nthread=nthread)
                if prune_keep is not None and prune_keep < len(cols):
                    cols = prune_columns(model, cols, prune_keep)
                    model = fit_edge(features[cols].to_numpy(dtype=np.float64)[rows], fw, weights, chosen, seed=seed,
                                     nthread=nthread)
                calibration = {"offset": 0.0, "scale": 1.0, "rows": 0}
                fold_params: list[dict[str, Any]] = []
                fold_tuning: list[str] = []
                if calibrate:
                    retune = None
                    if tuned_on is not None:
                        retune = _FoldTuning(X_all, forward, weights, tune_grid or {}, params, ts, t1, rows, tuned_on,
                                             chosen, cv_splits, embargo, seed, nthread, fold_params, fold_tuning, where)
                    oof = oof_edge(X_all[rows], fw, weights, cv, chosen, keep=prune_keep, fold_params=retune,
                                   seed=seed, nthread=nthread)
                    calibration = calibrate_edge(model, oof, target[rows])
            except ConfigError as exc:  # a purged K-fold the rows cannot make: name the segment
                if str(exc).startswith(where):
                    raise ConfigError(f"edge walk-forward: {exc}") from None
                raise ConfigError(f"edge walk-forward: {where}, {len(rows)} training rows: {exc}") from None
            step = ModelStep(model, tuple(cols), tuple(specs), output="predict")
            end = starts[k + 1] if k + 1 < len(starts) else n
            edges[s:end] = step.predict_frame(features.iloc[s:end])
            importance = dict(zip(cols, (float(v) for v in model.feature_importances_), strict=True))
            segments.append(EdgeSegment(s, end, step, len(rows), dict(chosen), calibration, importance, tuning,
                                        fold_params, fold_tuning))
    return TrainedEdges(ts, segments, edges, target, forward)


def run_edges(
    bars: pd.DataFrame,
    instrument: Instrument,
    strategy_params: Mapping[str, Any],
    source: EdgeSource | None,
    *,
    venue: VenueConfig | None = None,
    initial_cash: float = 100_000.0,
) -> tuple[RunResult, EdgeGated]:
    """Trade ``bars`` with :class:`EdgeGated` on ``source`` on the kernel; the run and the strategy.

    ``source=None`` loads the model step saved at ``strategy_params["model"]``. The equity is
    sampled after every bar time (after all the bars of a time), whatever the spacing of the bars.
    """
    strategy = EdgeGated(instrument.instrument_id, source=source, **strategy_params)
    ts = bars["ts_event"].to_numpy(dtype=np.int64)
    kernel = Kernel([instrument], venue_config=venue or VenueConfig(), initial_cash=initial_cash,
                    equity_interval_ns=1)
    kernel.add_strategy(strategy)
    frame = bars if "ts_init" in bars.columns else bars.assign(ts_init=ts)
    result = kernel.run(MemoryReplay([SourceFrame(instrument.instrument_id, "bars", frame)]))
    return result, strategy


def segment_table(trained: TrainedEdges, result: RunResult, strategy: EdgeGated) -> pd.DataFrame:
    """Per segment: rank IC, hit rate, entries, fills, denied orders, PnL (equity change) and the top features.

    Denied orders (buying power, risk limits) are counted per segment, and a warning gives their
    count with the first one's time and reason, as :func:`~tradebus.research.walkforward.walk_forward` does.
    """
    ts = trained.ts
    eq_ts = np.array([e.ts for e in result.equity], dtype=np.int64)
    eq_val = np.array([e.equity for e in result.equity], dtype=np.float64)
    entry_ts = np.array([e[0] for e in strategy.entries], dtype=np.int64)
    fill_ts = np.array([f.ts_event for f in result.fills], dtype=np.int64)
    rows = []
    for k, seg in enumerate(trained.segments):
        a, b = seg.start, seg.end
        e, y = trained.edges[a:b], trained.target[a:b]
        ok = np.isfinite(e) & np.isfinite(y) & (e != 0)
        hit = float(np.mean(np.sign(e[ok]) == np.sign(y[ok]))) if ok.any() else float("nan")
        first = np.searchsorted(eq_ts, ts[a], side="left") - 1
        before = eq_val[first] if first >= 0 else result.initial_cash
        end = eq_val[np.searchsorted(eq_ts, ts[b - 1], side="right") - 1]
        top = sorted(seg.importance.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
        rows.append({
            "segment": k, "start": int(ts[a]), "end": int(ts[b - 1]), "bars": b - a, "train_rows": seg.train_rows,
            "ic": rank_ic(e, y), "hit_rate": hit,
            "entries": int(((entry_ts >= ts[a]) & (entry_ts <= ts[b - 1])).sum()),
            "fills": int(((fill_ts >= ts[a]) & (fill_ts <= ts[b - 1])).sum()),
            "denied": denied_between(result, int(ts[a]), int(ts[b - 1])),
            "pnl": float(end - before), "calibration_scale": seg.calibration["scale"],
            "columns": len(seg.step.columns), "top_features": ", ".join(f"{c}={v:.3f}" for c, v in top),
        })
    warn_denials(result.denials, "edge walk-forward")
    return pd.DataFrame(rows)
