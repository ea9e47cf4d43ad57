"""Feature-framework benchmarks: bank per-event cost and batch speed, each against a reference timed in the same run.

Usage::

    python bench/features.py            # human-readable table
    python bench/features.py --json     # one JSON document
    python bench/features.py --size 1000000 --runs 3

Figures (medians of ``--runs`` runs):

* ``bank``: ns per ``FeatureBank.update_bar`` call from Python for a bank of 20
  features mixed across groups, against the same call on an empty bank (the
  Python -> Numba call floor), the banks timed in turn in every run;
  ``vs_empty`` is their ratio (target <= 2x).
* ``batch``: ns per value of ``Stepper.run`` for every core kind over ``--size``
  values, against a hand-written single-purpose ``@njit`` loop (target <= 1.5x)
  and against pandas / TA-Lib.
* ``per_kind`` (only with ``--per-kind``): ns per feature of every kind of the mixed
  bank, live: ``update_bar`` of a bank of 20 copies of that kind minus the empty
  bank's, over 20, thread CPU time, every bank timed in turn in every run (inputs
  that are features of the mixed bank read ``close`` instead).

Cold start (process start to the first bank update) is ``bench/cold_start.py``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import talib
from numba import njit

from checkout import use_this_checkout

use_this_checkout()

from tradebus.features.bank import FeatureBank  # noqa: E402
from tradebus.features.registry import all_kinds  # noqa: E402
from tradebus.features.stepper import Stepper  # noqa: E402
from tradebus.features.warmup import warm_up  # noqa: E402

MIXED_BANK: list[dict[str, Any]] = [
    {"name": "r", "kind": "log_ret", "input": "close"},
    {"name": "ema_fast", "kind": "ema", "params": {"span": 12}, "input": "close"},
    {"name": "ema_slow", "kind": "ema", "params": {"span": 26}, "input": "close"},
    {"name": "sma", "kind": "sma", "params": {"window": 20}, "input": "close"},
    {"name": "wma", "kind": "wma", "params": {"window": 10}, "input": "close"},
    {"name": "vol", "kind": "ewm_std", "params": {"span": 30}, "input": "r"},
    {"name": "rstd", "kind": "rolling_std", "params": {"window": 20}, "input": "r"},
    {"name": "z", "kind": "rolling_zscore", "params": {"window": 50}, "input": "r"},
    {"name": "hi", "kind": "rolling_max", "params": {"window": 20}, "input": "high"},
    {"name": "lo", "kind": "rolling_min", "params": {"window": 20}, "input": "low"},
    {"name": "rsi", "kind": "rsi", "params": {"window": 14}, "input": "close"},
    {"name": "rsi_ema", "kind": "ema", "params": {"span": 5}, "input": "rsi"},
    {"name": "macd", "kind": "macd", "input": "close"},
    {"name": "atr", "kind": "atr", "params": {"window": 14}},
    {"name": "bb", "kind": "bollinger", "params": {"window": 20}, "input": "close"},
    {"name": "stoch", "kind": "stoch"},
    {"name": "obv", "kind": "obv", "input": ["close", "volume"]},
    {"name": "corr", "kind": "rolling_corr", "params": {"window": 30}, "input": ["r", "volume"]},
    {"name": "cusum", "kind": "cusum", "params": {"threshold": 0.02}, "input": "close"},
    {"name": "ewz", "kind": "ewm_zscore", "params": {"span": 40}, "input": "close"},
]


#: The ten core kinds of MIXED_BANK; twice over they make the 20-feature core-only bank.
CORE_KINDS = {"log_ret", "ema", "sma", "wma", "ewm_std", "rolling_std", "rolling_zscore", "rolling_max",
              "rolling_min", "ewm_zscore"}


def available_specs() -> list[dict[str, Any]]:
    """The mixed bank restricted to kinds registered in this checkout."""
    names = {k.name for k in all_kinds()}
    return [s for s in MIXED_BANK if s["kind"] in names]


def median_of(runs: int, fn: Callable[[], float]) -> float:
    return statistics.median(fn() for _ in range(runs))


def bar_rows(n: int) -> list[tuple[int, float, float, float, float, float]]:
    """``n`` seeded ``update_bar`` argument rows (a random walk around 30,000)."""
    rng = np.random.default_rng(0)
    close = 30_000.0 * np.exp(np.cumsum(rng.normal(0, 0.002, n)))
    return [
        (1_700_000_000_000_000_000 + i * 60_000_000_000, c, c * 1.001, c * 0.999, c, v)
        for i, (c, v) in enumerate(zip(close.tolist(), rng.lognormal(2, 1, n).tolist(), strict=True))
    ]


def bank_per_event(runs: int, n: int = 200_000) -> dict[str, float]:
    rows = bar_rows(n)

    def one(specs: list[dict[str, Any]]) -> float:
        update = FeatureBank(specs).update_bar
        start = time.perf_counter()
        for row in rows:
            update(*row)
        return (time.perf_counter() - start) / n * 1e9

    specs = available_specs()
    core_only = [
        dict(s, name=f"{s['name']}{k}", input=f"r{k}" if s["input"] == "r" else s["input"])
        for k in (0, 1)
        for s in MIXED_BANK
        if s["kind"] in CORE_KINDS and s["input"] in ("close", "high", "low", "r")
    ]
    banks = {"ns_per_event": specs, "ns_per_event_20_core": core_only, "ns_per_event_empty_bank": []}
    times: dict[str, list[float]] = {key: [] for key in banks}
    for _ in range(runs):  # alternate, so every bank sees the same machine load
        for key, bank_specs in banks.items():
            times[key].append(one(bank_specs))
    return {"features": float(len(specs)), **{key: statistics.median(t) for key, t in times.items()}}


def copies_of(spec: dict[str, Any], count: int = 20) -> list[dict[str, Any]]:
    """``count`` copies of a mixed-bank spec, reading ``close`` where it read another feature."""
    features = {s["name"] for s in MIXED_BANK}
    inputs = spec.get("input")
    if isinstance(inputs, list):
        inputs = ["close" if i in features else i for i in inputs]
    elif inputs in features:
        inputs = "close"
    base = {key: value for key, value in spec.items() if key != "input"}
    return [dict(base, name=f"{spec['kind']}{k}", **({} if inputs is None else {"input": inputs})) for k in range(count)]


def per_kind(runs: int, n: int = 20_000) -> dict[str, float]:
    """ns of thread CPU per feature of every kind of the mixed bank, live (see the module docstring)."""
    rows = bar_rows(n)
    banks = {"": FeatureBank([])}
    for spec in available_specs():
        if spec["kind"] not in banks:
            banks[spec["kind"]] = FeatureBank(copies_of(spec))
    times: dict[str, list[float]] = {key: [] for key in banks}
    for _ in range(runs):  # alternate, so every bank sees the same machine load
        for key, bank in banks.items():
            update = bank.update_bar
            start = time.thread_time_ns()
            for row in rows:
                update(*row)
            times[key].append((time.thread_time_ns() - start) / n)
    empty = statistics.median(times.pop(""))
    return {key: (statistics.median(t) - empty) / 20 for key, t in times.items()}


# ---------------------------------------------------------------- hand-written single-purpose loops
@njit(cache=True)
def _hand_ret(x: np.ndarray, out: np.ndarray) -> None:
    out[0] = np.nan
    for i in range(1, x.shape[0]):
        out[i] = x[i] / x[i - 1] - 1.0


@njit(cache=True)
def _hand_log_ret(x: np.ndarray, out: np.ndarray) -> None:
    out[0] = np.nan
    for i in range(1, x.shape[0]):
        out[i] = math.log(x[i] / x[i - 1])


@njit(cache=True)
def _hand_ema(x: np.ndarray, out: np.ndarray, span: int) -> None:
    k = 2.0 / (span + 1.0)
    s = 0.0
    for i in range(span):
        s += x[i]
        out[i] = np.nan
    e = s / span
    out[span - 1] = e
    for i in range(span, x.shape[0]):
        e = (x[i] - e) * k + e
        out[i] = e


@njit(cache=True)
def _hand_ewm_mean(x: np.ndarray, out: np.ndarray, span: int) -> None:
    # pandas' adjust=True mean recurrence (the kernel's formula; no NaN handling, the input has none)
    factor = 1.0 - 1.0 / (1.0 + (span - 1.0) / 2.0)
    mean = x[0]
    old_wt = 1.0
    out[0] = mean if span <= 1 else np.nan
    for i in range(1, x.shape[0]):
        v = x[i]
        old_wt = old_wt * factor
        if mean != v:
            mean = (old_wt * mean + v) / (old_wt + 1.0)
        old_wt += 1.0
        out[i] = mean if i + 1 >= span else np.nan


@njit(cache=True, inline="always")
def _add(total: float, comp: float, value: float) -> tuple[float, float]:
    """Neumaier compensated addition, as the rolling kernels do it."""
    t = total + value
    first = abs(total) >= abs(value)
    big = total if first else value
    small = value if first else total
    return t, comp + ((big - t) + small)


@njit(cache=True, inline="always")
def _hand_rolling_moments(x: np.ndarray, out: np.ndarray, w: int, std: bool) -> None:
    # The kernels' formula: compensated sums shifted by K, recomputed exactly (in ring order)
    # every window (every max(window, 64) events for the mean) around K moved to the mean,
    # exactly 0 variance for a constant run. No NaN handling (the input has none).
    k = 0.0
    s1 = c1 = s2 = c2 = 0.0
    count = 0.0
    since = 0.0
    prev = 0.0
    run = 0.0
    every = w if std else max(w, 64)
    for i in range(x.shape[0]):
        if i >= w:
            d = x[i - w] - k
            count -= 1.0
            s1, c1 = _add(s1, c1, -d)
            if std:
                s2, c2 = _add(s2, c2, -(d * d))
        v = x[i]
        if count == 0.0:
            k = v
            s1 = c1 = s2 = c2 = 0.0
        else:
            d = v - k
            s1, c1 = _add(s1, c1, d)
            if std:
                s2, c2 = _add(s2, c2, d * d)
        count += 1.0
        if std:
            run = run + 1.0 if i > 0 and v == prev else 1.0
            prev = v
        since += 1.0
        if since >= every:
            k = k + (s1 + c1) / count
            s1 = s2 = 0.0
            for r in range(w):  # ring slot r holds x[j] with j % w == r
                j = i - ((i - r) % w)
                d = x[j] - k
                s1 += d
                if std:
                    s2 += d * d
            c1 = c2 = 0.0
            since = 0.0
        if count < w:
            out[i] = np.nan
        elif not std:
            out[i] = k + (s1 + c1) / count
        elif run >= count:
            out[i] = 0.0
        else:
            t = s1 + c1
            var = ((s2 + c2) - t * t / count) / (count - 1.0)
            out[i] = math.sqrt(var if var > 0.0 else 0.0)


@njit(cache=True)
def _hand_rolling_mean(x: np.ndarray, out: np.ndarray, w: int) -> None:
    _hand_rolling_moments(x, out, w, False)


@njit(cache=True)
def _hand_rolling_std(x: np.ndarray, out: np.ndarray, w: int) -> None:
    _hand_rolling_moments(x, out, w, True)


@njit(cache=True)
def _hand_rolling_max(x: np.ndarray, out: np.ndarray, w: int) -> None:
    idx = np.empty(x.shape[0], dtype=np.int64)
    head = 0
    tail = 0
    for i in range(x.shape[0]):
        while tail > head and idx[head] <= i - w:
            head += 1
        while tail > head and x[idx[tail - 1]] <= x[i]:
            tail -= 1
        idx[tail] = i
        tail += 1
        out[i] = x[idx[head]] if i + 1 >= w else np.nan


@njit(cache=True)
def _hand_wma(x: np.ndarray, out: np.ndarray, w: int) -> None:
    div = w * (w + 1) / 2.0
    for i in range(x.shape[0]):
        if i + 1 < w:
            out[i] = np.nan
            continue
        s = 0.0
        for j in range(w):
            s += (j + 1.0) * x[i - w + 1 + j]
        out[i] = s / div


BATCH_CASES: list[tuple[str, dict[str, Any], Callable[..., None] | None, tuple[int, ...], Callable[..., Any] | None]] = [
    ("ret", {}, _hand_ret, (), lambda s: s.pct_change(fill_method=None)),
    ("log_ret", {}, _hand_log_ret, (), lambda s: np.log(s / s.shift(1))),
    ("ewm_mean", {"span": 20}, _hand_ewm_mean, (20,), lambda s: s.ewm(span=20, min_periods=20).mean()),
    ("ewm_std", {"span": 20}, None, (), lambda s: s.ewm(span=20, min_periods=20).std()),
    ("ewm_zscore", {"span": 20}, None, (), None),
    ("ewm_skew", {"span": 20}, None, (), None),
    ("rolling_sum", {"window": 20}, None, (), lambda s: s.rolling(20).sum()),
    ("rolling_mean", {"window": 20}, _hand_rolling_mean, (20,), lambda s: s.rolling(20).mean()),
    ("rolling_std", {"window": 20}, _hand_rolling_std, (20,), lambda s: s.rolling(20).std()),
    ("rolling_max", {"window": 20}, _hand_rolling_max, (20,), lambda s: s.rolling(20).max()),
    ("rolling_zscore", {"window": 20}, None, (), None),
    ("rolling_rank", {"window": 20}, None, (), lambda s: s.rolling(20).rank(pct=True)),
    ("sma", {"window": 20}, _hand_rolling_mean, (20,), lambda s: talib.SMA(s.to_numpy(), 20)),
    ("ema", {"span": 20}, _hand_ema, (20,), lambda s: talib.EMA(s.to_numpy(), 20)),
    ("wma", {"window": 10}, _hand_wma, (10,), lambda s: talib.WMA(s.to_numpy(), 10)),
]


def batch_speed(runs: int, size: int) -> dict[str, dict[str, float]]:
    rng = np.random.default_rng(1)
    x = 30_000.0 * np.exp(np.cumsum(rng.normal(0, 0.001, size)))
    series = pd.Series(x)
    out = np.empty(size)
    results: dict[str, dict[str, float]] = {}
    for name, params, hand, hand_args, reference in BATCH_CASES:
        Stepper(name, **params).run(x[:100])

        def ours(name: str = name, params: dict[str, Any] = params) -> float:
            s = Stepper(name, **params)
            start = time.perf_counter()
            s.run(x)
            return (time.perf_counter() - start) / size * 1e9

        if hand is None:
            row = {"ns_per_value": median_of(runs, ours)}
        else:
            hand(x[:100], out[:100], *hand_args)

            def hand_time(hand: Callable[..., None] = hand, args: tuple[int, ...] = hand_args) -> float:
                start = time.perf_counter()
                hand(x, np.empty(size), *args)  # allocates its output, as Stepper.run does
                return (time.perf_counter() - start) / size * 1e9

            mine, theirs = [], []
            for _ in range(runs):  # alternate, so both sides see the same machine load
                mine.append(ours())
                theirs.append(hand_time())
            row = {"ns_per_value": statistics.median(mine), "hand_ns_per_value": statistics.median(theirs)}
            row["vs_hand"] = row["ns_per_value"] / row["hand_ns_per_value"]
            hand(x, out, *hand_args)
            row["hand_same_bits"] = bool(np.array_equal(np.asarray(Stepper(name, **params).run(x)).reshape(size), out, equal_nan=True))
        if reference is not None:

            def ref_time(reference: Callable[..., Any] = reference) -> float:
                start = time.perf_counter()
                reference(series)
                return (time.perf_counter() - start) / size * 1e9

            row["reference_ns_per_value"] = median_of(runs, ref_time)
            row["vs_reference"] = row["ns_per_value"] / row["reference_ns_per_value"]
        results[name] = row
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--size", type=int, default=10_000_000, help="values per batch run")
    parser.add_argument("--runs", type=int, default=5, help="runs per figure (median reported)")
    parser.add_argument("--per-kind", action="store_true", help="also time every kind of the bank alone")
    args = parser.parse_args()
    warm_up()
    report: dict[str, Any] = {
        "bank": bank_per_event(args.runs),
        "batch": batch_speed(max(1, args.runs // 2 + 1), args.size),
        "size": args.size,
        "runs": args.runs,
    }
    if args.per_kind:
        report["per_kind"] = per_kind(args.runs)
    report["bank"]["vs_empty"] = report["bank"]["ns_per_event"] / report["bank"]["ns_per_event_empty_bank"]
    if args.json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return
    b = report["bank"]
    lines = [
        f"bank of {int(b['features'])} mixed features: {b['ns_per_event']:.0f} ns/event from Python; "
        f"empty bank {b['ns_per_event_empty_bank']:.0f} ns; ratio {b['vs_empty']:.2f}x (target <= 2x); "
        f"20 core features {b['ns_per_event_20_core']:.0f} ns",
        f"batch over {args.size:,} values (ns/value; ratio vs hand-written @njit loop, target <= 1.5x):",
    ]
    for name, row in report["batch"].items():
        parts = [f"  {name:15s} {row['ns_per_value']:7.2f}"]
        if "vs_hand" in row:
            mark = "ok" if row["vs_hand"] <= 1.5 else "MISS"
            parts.append(f"hand {row['hand_ns_per_value']:6.2f} ({row['vs_hand']:.2f}x {mark})")
        if "vs_reference" in row:
            parts.append(f"pandas/TA-Lib {row['reference_ns_per_value']:6.2f} ({row['vs_reference']:.2f}x)")
        lines.append("  ".join(parts))
    if "per_kind" in report:
        costs = sorted(report["per_kind"].items(), key=lambda item: -item[1])
        lines.append("ns per feature, live, a bank of 20 copies minus the empty bank (thread CPU):")
        lines.append("  " + ", ".join(f"{kind} {ns:.1f}" for kind, ns in costs))
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
