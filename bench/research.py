"""Research benchmarks: dataset build, triple-barrier labelling, purged CV split generation.

Usage::

    python bench/research.py            # human-readable table
    python bench/research.py --json     # one JSON document
    python bench/research.py --size 1000000 --runs 3

Figures (medians of ``--runs`` runs, both sides timed in the same run; ratios are medians
of per-run ratios):

* ``dataset``: :func:`tradebus.research.dataset.build_dataset` of 20 features over
  ``--size`` bars read from a Parquet catalog, against ``FeatureBank.run_bars`` of the
  same features on the same arrays already in memory (target <= 1.5x); also the
  catalog read alone and the features of the already loaded bars
  (``ratio_excluding_read``: the builder's own overhead over the bank).
* ``triple_barrier``: :func:`tradebus.research.labels.triple_barrier` on every bar
  (vertical barrier 20 bars, EWM-vol widths) against a vectorised numpy implementation
  of the same rules (sliding windows, first touch by ``argmax``); the labels must agree.
* ``cv``: generating every split of :class:`PurgedKFold` (5 folds, labels spanning 20
  bars, 1 % embargo) and :class:`CombinatorialPurgedCV` (6 groups, 2 test groups) over
  ``--size`` samples, against scikit-learn's unpurged ``KFold``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from numpy.lib.stride_tricks import sliding_window_view
from sklearn.model_selection import KFold

from checkout import use_this_checkout

use_this_checkout()

from features import MIXED_BANK  # noqa: E402 (bench/features.py)

from tradebus.data.catalog import Catalog  # noqa: E402
from tradebus.features.bank import FeatureBank  # noqa: E402
from tradebus.research.dataset import build_dataset, feature_frame, load_config, load_events  # noqa: E402
from tradebus.research.labels import triple_barrier  # noqa: E402
from tradebus.research.splitters import CombinatorialPurgedCV, PurgedKFold  # noqa: E402

SPECS: list[dict[str, Any]] = MIXED_BANK  # the 20-feature bank of bench/features.py
HORIZON = 20
MIN = 60_000_000_000


def bars(n: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.002, n)))
    open_ = np.concatenate([[100.0], close[:-1]])
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, 0.001, n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, 0.001, n)))
    ts = 1_600_000_000 * 1_000_000_000 + MIN * np.arange(1, n + 1, dtype=np.int64)
    return pd.DataFrame({"ts_event": ts, "ts_init": ts, "open": open_, "high": high, "low": low, "close": close,
                         "volume": rng.uniform(1.0, 5.0, n)})


def median_time(fn: Callable[[], Any], runs: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(runs):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def numpy_triple_barrier(frame: pd.DataFrame, width: np.ndarray, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised long-side triple barrier (pt = sl = width): first touch via argmax over sliding windows."""
    o, h, lo, c = (frame[k].to_numpy() for k in ("open", "high", "low", "close"))
    n = len(c)
    m = n - horizon  # events whose vertical barrier lies inside the data
    up = c[:m] * (1.0 + width[:m])
    dn = c[:m] * (1.0 - width[:m])
    win = lambda a: sliding_window_view(a[1:], horizon)[:m]  # noqa: E731  bars i+1 .. i+horizon
    hit_up = (win(h) >= up[:, None]) | (win(o) >= up[:, None])
    hit_dn = (win(lo) <= dn[:, None]) | (win(o) <= dn[:, None])
    first_up = np.where(hit_up.any(axis=1), hit_up.argmax(axis=1), horizon)
    first_dn = np.where(hit_dn.any(axis=1), hit_dn.argmax(axis=1), horizon)
    first = np.minimum(first_up, first_dn)
    j = np.arange(m) + 1 + np.minimum(first, horizon - 1)
    opens = o[j]
    gap_up, gap_dn = opens >= up, opens <= dn
    barrier = np.where(first == horizon, 0, np.where(gap_up, 1, np.where(gap_dn, -1,
                       np.where(first_dn <= first_up, -1, 1))))
    exit_px = np.where(barrier == 0, c[np.arange(m) + horizon],
                       np.where(gap_up | gap_dn, opens, np.where(barrier == 1, up, dn)))
    return barrier, exit_px / c[:m] - 1.0


def bench_dataset(size: int, runs: int, root: Path) -> dict[str, Any]:
    frame = bars(size)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    Catalog(root).write(table, "sim", "spot", "X", "bars_1m", period="year", kind="bars", interval_ns=MIN)
    config = load_config({"catalog": str(root), "sources": [{"instrument": "X", "dataset": "sim/spot/X/bars_1m"}],
                          "features": SPECS})
    cols = [frame[k].to_numpy() for k in ("ts_event", "open", "high", "low", "close", "volume")]
    FeatureBank(SPECS).run_bars(*[c[:1000] for c in cols])  # compile / load the drivers
    build_dataset(config)
    # the two sides alternate within each run, and the ratio is the median of per-run ratios,
    # so load from other processes drifting between the sides cancels out
    bank_t, dataset_t, read_t, frame_t = [], [], [], []
    for _ in range(runs):
        t, ref = median_time(lambda: FeatureBank(SPECS).run_bars(*cols), 1)
        bank_t.append(t)
        t, out = median_time(lambda: build_dataset(config), 1)
        dataset_t.append(t)
        t, (kind, events) = median_time(lambda: load_events(root, "sim/spot/X/bars_1m"), 1)
        read_t.append(t)
        t, _ = median_time(lambda: feature_frame(events, kind, SPECS), 1)
        frame_t.append(t)
    assert np.array_equal(out.iloc[:, 2:].to_numpy(), ref, equal_nan=True)
    med = statistics.median
    return {"bars": size, "features": len(SPECS), "dataset_s": med(dataset_t), "bank_batch_s": med(bank_t),
            "ratio": med(d / b for d, b in zip(dataset_t, bank_t, strict=True)), "catalog_read_s": med(read_t),
            "features_from_loaded_bars_s": med(frame_t),
            "ratio_excluding_read": med(f / b for f, b in zip(frame_t, bank_t, strict=True)), "target_ratio": 1.5}


def bench_triple_barrier(size: int, runs: int) -> dict[str, Any]:
    frame = bars(size, seed=2)
    width = np.full(size, 0.004)
    triple_barrier(frame.iloc[:1000], width=width[:1000], max_bars=HORIZON)  # compile / load
    ours_s, ours = median_time(lambda: triple_barrier(frame, width=width, max_bars=HORIZON), runs)
    numpy_s, (barrier, ret) = median_time(lambda: numpy_triple_barrier(frame, width, HORIZON), runs)
    m = size - HORIZON
    agree = bool(np.array_equal(ours["barrier"].to_numpy()[:m], barrier)
                 and np.allclose(ours["ret"].to_numpy()[:m], ret, rtol=1e-12, atol=1e-15))
    return {"bars": size, "horizon": HORIZON, "tradebus_s": ours_s, "numpy_s": numpy_s, "ratio": ours_s / numpy_s,
            "labels_agree": agree}


def bench_cv(size: int, runs: int) -> dict[str, Any]:
    t0 = np.arange(size, dtype=np.int64) * MIN
    t1 = t0[np.minimum(np.arange(size) + HORIZON, size - 1)]
    X = np.zeros((size, 1))

    def consume(cv: Any) -> int:
        return sum(len(train) + len(test) for train, test in cv.split(X))

    kfold_s, _ = median_time(lambda: consume(PurgedKFold(5, t0=t0, t1=t1, embargo=0.01)), runs)
    cpcv_s, _ = median_time(lambda: consume(CombinatorialPurgedCV(6, 2, t0=t0, t1=t1, embargo=0.01)), runs)
    sk_s, _ = median_time(lambda: consume(KFold(5)), runs)
    return {"samples": size, "purged_kfold_s": kfold_s, "cpcv_15_splits_s": cpcv_s, "sklearn_kfold_s": sk_s,
            "purged_kfold_ratio": kfold_s / sk_s}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tradebus-bench-research-") as tmp:
        report = {
            "dataset": bench_dataset(args.size, args.runs, Path(tmp)),
            "triple_barrier": bench_triple_barrier(args.size, args.runs),
            "cv": bench_cv(args.size, args.runs),
        }
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        for section, figures in report.items():
            sys.stdout.write(f"{section}\n")
            for key, value in figures.items():
                text = f"{value:.4f}" if isinstance(value, float) else str(value)
                sys.stdout.write(f"  {key:<20} {text}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
