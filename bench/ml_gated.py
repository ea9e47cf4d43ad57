"""ML-gated system benchmarks on the shipped ETH/BTC 5-minute bars.

Usage::

    python bench/ml_gated.py            # human-readable table
    python bench/ml_gated.py --json     # one JSON document
    python bench/ml_gated.py --runs 5
    python bench/ml_gated.py --only live_compiled_vs_xgboost --only row_predict

Figures (medians of ``--runs`` runs, both sides timed in the same run; ratios are medians
of per-run ratios). The walk-forward segments are trained once (seeded: every training gives
the same models), every run only when ``training`` is measured:

* ``live_vs_precomputed``: a kernel run of :class:`~tradebus.research.edge_strategy.EdgeGated`
  over the 5,760 bars with the walk-forward models predicting per bar, against the same run
  on the batch predictions (the sweep mode); the decisions must be identical.
* ``training``: :func:`~tradebus.research.edge_walkforward.train_segments` with tuning
  (first segment), pruning and purged calibration, against the same segments fitted
  without them (the price of the validation machinery).
* ``live_compiled_vs_xgboost``: the live (per-bar) kernel run with the horizon models
  evaluated as compiled trees (:mod:`tradebus.research.trees`, one call per bar for all
  horizons), against the same run with one XGBoost ``predict`` per horizon model per bar (the
  path of a config backtest before); the edges and fills must be identical.
* ``gates``: :meth:`~tradebus.strategies.gates.EdgeGates.update` over the 5,760 bars' edges (the
  precomputed walk-forward run's) and volatilities with the config's gates, against the previous
  implementation (:class:`NumpyGates`: a deque copied into an array per bar, ``np.mean``/``np.std``,
  ``np.quantile`` even with its gate off); every decision and z-score must be identical bit for bit.
* ``row_predict``: one bar's edge (:meth:`~tradebus.research.model.ModelStep.predict_row` of
  the last segment), compiled against XGBoost, per call (median over every bar's row).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from checkout import use_this_checkout

REPO = use_this_checkout()

from tradebus.features.batch import compute_features  # noqa: E402
from tradebus.research.dataset import load_events  # noqa: E402
from tradebus.research.edge_walkforward import run_edges, train_segments  # noqa: E402
from tradebus.research.ml_gated import load_ml_gated_config  # noqa: E402
from tradebus.strategies.gates import EdgeGates, GatesConfig  # noqa: E402

CONFIG = REPO / "configs" / "systems" / "ml_gated.yaml"
FIGURES = ("live_vs_precomputed", "training", "live_compiled_vs_xgboost", "gates", "row_predict")


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


@contextmanager
def per_model_predict(trained: Any) -> Iterator[None]:
    """Every segment's edge model predicts with one XGBoost call per horizon model (the path before)."""
    models = [segment.step.model for segment in trained.segments]
    for model in models:
        model.compile_trees = False
    try:
        yield
    finally:
        for model in models:
            del model.compile_trees


def same_floats(a: list[tuple[int, float]], b: list[tuple[int, float]]) -> bool:
    """``(ts, value)`` records equal bit for bit (NaN equal to NaN)."""
    x, y = np.array(a, dtype=np.float64), np.array(b, dtype=np.float64)
    return x.shape == y.shape and bool((x.view(np.int64) == y.view(np.int64)).all())


class NumpyGates(EdgeGates):
    """:class:`EdgeGates` as it was: the history in a deque, numpy's mean, std and quantile per bar."""

    def __init__(self, config: GatesConfig) -> None:
        super().__init__(config)
        self._past: deque[float] = deque(maxlen=self._size)

    def _append(self, edge: float) -> None:
        self._past.append(edge)

    def _zscore(self, edge: float) -> float:
        w = self.config.zscore.window
        if len(self._past) < w:
            return math.nan
        past = np.fromiter(self._past, dtype=np.float64)[-w:]
        std = float(past.std(ddof=1))
        return (edge - float(past.mean())) / std if std > 0 else math.nan

    def _quantile_ok(self, edge: float, direction: int) -> bool:
        w = self.config.quantile.window
        if len(self._past) < w:
            return False
        past = np.fromiter(self._past, dtype=np.float64)[-w:]
        q = self.config.quantile.q
        return edge >= float(np.quantile(past, 1.0 - q)) if direction > 0 else edge <= float(np.quantile(past, q))

    def update(self, edge: float, vol_bps: float) -> tuple[int, str, str]:
        """:meth:`EdgeGates.update`, with the quantile computed on every bar as before."""
        if math.isfinite(edge) and edge != 0 and not self.config.quantile.enabled:
            self._quantile_ok(edge, 1 if edge > 0 else -1)
        return super().update(edge, vol_bps)


def gates(edges: list[float], vols: list[float], config: GatesConfig) -> tuple[float, float]:
    """Seconds to gate every bar: :class:`EdgeGates`, then :class:`NumpyGates` (the same decisions)."""

    def feed(kind: type[EdgeGates]) -> tuple[float, list[tuple[int, str, str, float]]]:
        state = kind(config)
        t = time.perf_counter()
        out = [(*state.update(e, v), state.z) for e, v in zip(edges, vols)]
        return time.perf_counter() - t, out

    subject_s, subject = feed(EdgeGates)
    reference_s, reference = feed(NumpyGates)
    same = [a[:3] for a in subject] == [b[:3] for b in reference] and same_floats(
        [(0, a[3]) for a in subject], [(0, b[3]) for b in reference])
    if not same:
        raise SystemExit("EdgeGates and the numpy reference disagree")
    return subject_s, reference_s


def row_predict(trained: Any, bars: Any, cfg: Any) -> tuple[float, float]:
    """Median seconds of one ``predict_row`` on each bar's features: compiled, then XGBoost."""
    step = trained.segments[-1].step
    features = compute_features(bars, cfg.features, event="bar")
    rows = features[list(step.columns)].dropna().to_numpy(dtype=np.float64)
    step._slots = tuple(range(len(step.columns)))  # rows in the model's column order
    step.predict_row(rows[0].tolist())  # compile the trees outside the timing

    def each_row() -> list[float]:
        times = []
        for row in rows:
            values = row.tolist()
            t = time.perf_counter()
            step.predict_row(values)
            times.append(time.perf_counter() - t)
        return times

    compiled = each_row()
    with per_model_predict(trained):
        xgboost = each_row()
    return statistics.median(compiled), statistics.median(xgboost)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", action="append", choices=FIGURES, help="figures to measure (default: all)")
    args = parser.parse_args(argv)
    figures = args.only or list(FIGURES)
    cfg = load_ml_gated_config(CONFIG)
    _, bars = load_events(cfg.data.catalog, cfg.data.dataset)
    m, wf = cfg.model, cfg.walkforward
    common = dict(min_train=wf.min_train, retrain_every=wf.retrain_every, params=m.params, cv_splits=m.cv_splits,
                  embargo=m.embargo, seed=m.seed, nthread=m.nthread)
    instrument = cfg.instrument.to_instrument()
    rows: dict[str, list[tuple[float, float]]] = {name: [] for name in figures}
    def train() -> Any:
        return train_segments(bars, cfg.features, m.columns, m.horizons, tune_grid=m.tune_grid, tune=m.tune,
                              prune_keep=m.prune_keep, calibrate=True, **common)

    # training is seeded: the other figures run the first training's models, trained once unless measured
    trained = None if "training" in rows else train()
    for _ in range(args.runs):
        if "training" in rows:
            full, models = timed(train)
            if trained is None:
                trained = models
            bare, _ = timed(lambda: train_segments(bars, cfg.features, m.columns, m.horizons, tune="none",
                                                   calibrate=False, **common))
            rows["training"].append((full, bare))

        def run(source: Any) -> Any:
            return run_edges(bars, instrument, cfg.strategy_params(), source, venue=cfg.venue,
                             initial_cash=cfg.initial_cash)

        if "live_vs_precomputed" in rows:
            pre_s, (pre, _) = timed(lambda: run(trained.precomputed_source()))
            live_s, (live, _) = timed(lambda: run(trained.live_source()))
            if live.fills != pre.fills:
                raise SystemExit("live and precomputed runs disagree")
            rows["live_vs_precomputed"].append((live_s, pre_s))
        if "live_compiled_vs_xgboost" in rows:
            compiled_s, (compiled, compiled_strategy) = timed(lambda: run(trained.live_source()))
            with per_model_predict(trained):
                xgboost_s, (xgboost, xgboost_strategy) = timed(lambda: run(trained.live_source()))
            if compiled.fills != xgboost.fills or not same_floats(compiled_strategy.outputs, xgboost_strategy.outputs):
                raise SystemExit("compiled and XGBoost per-bar runs disagree")
            rows["live_compiled_vs_xgboost"].append((compiled_s, xgboost_s))
        if "gates" in rows:
            _, (_, strategy) = timed(lambda: run(trained.precomputed_source()))
            vol_bps = compute_features(bars, cfg.features, event="bar")[strategy.params.vol_feature] * 1e4
            rows["gates"].append(gates([e for _, e in strategy.outputs], vol_bps.tolist(), strategy.params.gates))
        if "row_predict" in rows:
            rows["row_predict"].append(row_predict(trained, bars, cfg))
    out = {}
    for name, pairs in rows.items():
        out[name] = {"subject_s": statistics.median(a for a, _ in pairs),
                     "reference_s": statistics.median(b for _, b in pairs),
                     "ratio": statistics.median(a / b for a, b in pairs), "runs": args.runs}
    for name in ("live_vs_precomputed", "live_compiled_vs_xgboost", "gates"):
        if name in out:
            out[name]["bars"] = len(bars)
    if args.json:
        print(json.dumps(out, indent=2, sort_keys=True))
    else:
        for name, r in out.items():
            print(f"{name:24s} subject {r['subject_s']:11.6f} s  reference {r['reference_s']:11.6f} s  "
                  f"ratio {r['ratio']:6.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
