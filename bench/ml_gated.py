"""ML-gated system benchmarks on the shipped ETH/BTC 5-minute bars.

Usage::

    python bench/ml_gated.py            # human-readable table
    python bench/ml_gated.py --json     # one JSON document
    python bench/ml_gated.py --runs 5

Figures (medians of ``--runs`` runs, both sides timed in the same run; ratios are medians
of per-run ratios):

* ``live_vs_precomputed``: a kernel run of :class:`~tradebus.research.edge_strategy.EdgeGated`
  over the 5,760 bars with the walk-forward models predicting per bar, against the same run
  on the batch predictions (the sweep mode); the decisions must be identical.
* ``training``: :func:`~tradebus.research.edge_walkforward.train_segments` with tuning
  (first segment), pruning and purged calibration, against the same segments fitted
  without them (the price of the validation machinery).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

from checkout import use_this_checkout

REPO = use_this_checkout()

from tradebus.research.dataset import load_events  # noqa: E402
from tradebus.research.edge_walkforward import run_edges, train_segments  # noqa: E402
from tradebus.research.ml_gated import load_ml_gated_config  # noqa: E402

CONFIG = REPO / "configs" / "systems" / "ml_gated.yaml"


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    cfg = load_ml_gated_config(CONFIG)
    _, bars = load_events(cfg.data.catalog, cfg.data.dataset)
    m, wf = cfg.model, cfg.walkforward
    common = dict(min_train=wf.min_train, retrain_every=wf.retrain_every, params=m.params, cv_splits=m.cv_splits,
                  embargo=m.embargo, seed=m.seed, nthread=m.nthread)
    instrument = cfg.instrument.to_instrument()
    rows: dict[str, list[tuple[float, float]]] = {"live_vs_precomputed": [], "training": []}
    for _ in range(args.runs):
        full, trained = timed(lambda: train_segments(bars, cfg.features, m.columns, m.horizons, tune_grid=m.tune_grid,
                                                     tune=m.tune, prune_keep=m.prune_keep, calibrate=True, **common))
        bare, _ = timed(lambda: train_segments(bars, cfg.features, m.columns, m.horizons, tune="none",
                                               calibrate=False, **common))
        rows["training"].append((full, bare))

        def run(source: Any) -> Any:
            return run_edges(bars, instrument, cfg.strategy_params(), source, venue=cfg.venue,
                             initial_cash=cfg.initial_cash)

        pre_s, (pre, _) = timed(lambda: run(trained.precomputed_source()))
        live_s, (live, _) = timed(lambda: run(trained.live_source()))
        if live.fills != pre.fills:
            raise SystemExit("live and precomputed runs disagree")
        rows["live_vs_precomputed"].append((live_s, pre_s))
    out = {}
    for name, pairs in rows.items():
        out[name] = {"subject_s": statistics.median(a for a, _ in pairs),
                     "reference_s": statistics.median(b for _, b in pairs),
                     "ratio": statistics.median(a / b for a, b in pairs), "runs": args.runs}
    out["live_vs_precomputed"]["bars"] = len(bars)
    if args.json:
        print(json.dumps(out, indent=2, sort_keys=True))
    else:
        for name, r in out.items():
            print(f"{name:22s} subject {r['subject_s']:8.3f} s  reference {r['reference_s']:8.3f} s  "
                  f"ratio {r['ratio']:6.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
