"""Accelerated tier against a hand-written ``@njit`` EMA-cross loop on the same bars, in the same run.

Generates ``--bars`` one-minute bars of a geometric random walk (fixed seed) and times, on them:

* ``accelerated``: :func:`tradebus.engine.accelerated.simulate` of ``EmaCross(fast=10, slow=30,
  long_only, quantity 1)`` with a 2 bps taker fee, from a built kernel to the fill and equity
  arrays (support checks, the compiled loop: the feature bank's EMA steppers, the signal
  kernel, the venue's fill rule, the portfolio's accounting, hourly equity samples). Turning
  the arrays into a ``RunResult`` of Python objects is timed apart (``collect``);
* ``hand_njit``: one ``@njit`` function written for this rule only (the same EMAs seeded with
  the SMA of the first ``span`` closes, long/flat on the crossings, next-open fills, 2 bps,
  cash and position, fills into arrays, equity sampled hourly like the kernel's default
  curve); the two sides must agree on every fill and on the final equity;
* ``event``: :meth:`Kernel.run` of the same strategy on the same bars (context: bars/s).

Figures are medians over ``--runs`` (the accelerated and hand sides alternate; each run starts
from a fresh kernel); ``ratio`` = accelerated / hand_njit time (target <= 3).

Usage::

    python bench/accelerated.py [--bars 1000000] [--runs 7] [--event-runs 1] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time

from checkout import use_this_checkout

REPO = use_this_checkout()
os.environ.setdefault("NUMBA_CACHE_DIR", str(REPO / ".cache" / "numba"))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from loguru import logger  # noqa: E402
from numba import njit  # noqa: E402

from tradebus.engine.accelerated import BarArrays, collect, simulate  # noqa: E402
from tradebus.engine.instrument import Instrument  # noqa: E402
from tradebus.engine.kernel import Kernel  # noqa: E402
from tradebus.execution.config import VenueConfig  # noqa: E402
from tradebus.research.lookahead import MemoryReplay, SourceFrame  # noqa: E402
from tradebus.strategies.ema_cross import EmaCross  # noqa: E402

MINUTE_NS = 60_000_000_000
HOUR_NS = 60 * MINUTE_NS
START_NS = 1_704_067_200_000_000_000  # 2024-01-01T00:00:00Z
SEED = 20240101
IID = "BTCUSDT.BENCH"
FAST, SLOW, FEE = 10, 30, 0.0002
TARGET = 3.0


def make_bars(n: int) -> BarArrays:
    """``n`` one-minute bars of a geometric random walk (deterministic), stamped at their close."""
    rng = np.random.default_rng(SEED)
    close = 40_000.0 * np.exp(np.cumsum(rng.normal(0.0, 0.0008, n)))
    close = np.round(close, 2)
    open_ = np.empty(n)
    open_[0] = close[0]
    open_[1:] = close[:-1]
    spread = np.abs(rng.normal(0.0, 0.0005, n)) * close
    high = np.round(np.maximum(open_, close) + spread, 2)
    low = np.round(np.minimum(open_, close) - spread, 2)
    volume = np.round(rng.uniform(1.0, 50.0, n), 4)
    ts = START_NS + MINUTE_NS * np.arange(1, n + 1, dtype=np.int64)
    return BarArrays.of(ts_event=ts, ts_init=ts, open=open_, high=high, low=low, close=close, volume=volume)


def make_kernel() -> Kernel:
    instrument = Instrument("BENCH", "BTCUSDT", tick_size=0.01, lot_size=1e-5, taker_fee=FEE, maker_fee=FEE,
                            margin=True)  # fmt: skip
    kernel = Kernel([instrument], initial_cash=1e9, venue_config=VenueConfig())
    kernel.add_strategy(EmaCross(IID, fast=FAST, slow=SLOW, quantity=1.0))
    return kernel


@njit(cache=True)
def hand_ema_cross(
    op: np.ndarray, cl: np.ndarray, fast: int, slow: int, fee_rate: float, cash0: float,
    ts: np.ndarray, interval: int, fill_bar: np.ndarray, fill_px: np.ndarray, samples: np.ndarray,
) -> tuple[int, float]:  # fmt: skip
    """EMA(fast) x EMA(slow) of the close (SMA-seeded), long 1 / flat, filled at the next open; (fills, equity).

    ``samples`` receives the equity at the first bar at or after each multiple of ``interval``.
    """
    next_sample = ts[0] // interval * interval
    n_samples = 0
    kf = 2.0 / (fast + 1.0)
    ks = 2.0 / (slow + 1.0)
    sf = 0.0
    ss = 0.0
    ef = 0.0
    es = 0.0
    above = 0
    pending = 0
    pos = 0.0
    cash = cash0
    n_fills = 0
    n = cl.shape[0]
    for i in range(n):
        if pending != 0:
            px = op[i]
            qty = 1.0 if pending > 0 else -1.0
            cash -= qty * px + px * fee_rate
            pos += qty
            fill_bar[n_fills] = i
            fill_px[n_fills] = px
            n_fills += 1
            pending = 0
        c = cl[i]
        if ts[i] >= next_sample:
            samples[n_samples] = cash + pos * c
            n_samples += 1
            next_sample = (ts[i] // interval + 1) * interval
        if i < fast:
            sf += c
            if i == fast - 1:
                ef = sf / fast
        else:
            ef = (c - ef) * kf + ef
        if i < slow:
            ss += c
            if i == slow - 1:
                es = ss / slow
            continue
        es = (c - es) * ks + es
        now = 1 if ef > es else -1 if ef < es else 0
        if now == 0 or now == above:
            continue
        if above != 0:
            if now > 0 and pos == 0.0:
                pending = 1
            elif now < 0 and pos > 0.0:
                pending = -1
        above = now
    return n_fills, cash + pos * cl[n - 1]


def time_accelerated(bars: BarArrays) -> tuple[float, float, object]:
    kernel = make_kernel()
    t0 = time.perf_counter()
    run = simulate(kernel, bars)
    t1 = time.perf_counter()
    collect(kernel, bars, run)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, kernel.result


def time_hand(bars: BarArrays) -> tuple[float, int, float, np.ndarray, np.ndarray]:
    fill_bar = np.empty(len(bars.close), dtype=np.int64)
    fill_px = np.empty(len(bars.close))
    samples = np.empty(len(bars.close) + 1)
    t0 = time.perf_counter()
    n_fills, equity = hand_ema_cross(
        bars.open, bars.close, FAST, SLOW, FEE, 1e9, bars.ts_init, HOUR_NS, fill_bar, fill_px, samples
    )
    return time.perf_counter() - t0, n_fills, equity, fill_bar[:n_fills], fill_px[:n_fills]


def time_event(bars: BarArrays) -> float:
    frame = pd.DataFrame({name: getattr(bars, name) for name in BarArrays.__dataclass_fields__})
    kernel = make_kernel()
    replay = MemoryReplay([SourceFrame(IID, "bars", frame)], 65_536)
    t0 = time.perf_counter()
    kernel.run(replay)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bars", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--event-runs", type=int, default=1, help="event-tier runs (0: skip)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = parser.parse_args()
    logger.remove()
    bars = make_bars(args.bars)
    # Warm-up: compile or load both loops and the bank drivers.
    small = make_bars(1_000)
    time_accelerated(small)
    time_hand(small)
    accel, collect, hand = [], [], []
    result: object = None
    hand_out: tuple[float, int, float, np.ndarray, np.ndarray] | None = None
    for run in range(args.runs):
        order = (0, 1) if run % 2 == 0 else (1, 0)
        for side in order:
            if side == 0:
                a, c, result = time_accelerated(bars)
                accel.append(a)
                collect.append(c)
            else:
                hand_out = time_hand(bars)
                hand.append(hand_out[0])
    assert result is not None and hand_out is not None
    fills = result.fills  # type: ignore[attr-defined]
    ts = bars.ts_event.tolist()
    final = result.equity[-1].equity  # type: ignore[attr-defined]
    agree = len(fills) == hand_out[1] and all(
        f.ts_event == ts[int(b)] and f.price == p for f, b, p in zip(fills, hand_out[3], hand_out[4], strict=True)
    ) and math.isclose(final, hand_out[2], rel_tol=1e-9)
    event = [time_event(bars) for _ in range(args.event_runs)]
    a_med, h_med = statistics.median(accel), statistics.median(hand)
    out = {
        "bars": args.bars,
        "runs": args.runs,
        "fills": len(fills),
        "accelerated_s": a_med,
        "hand_njit_s": h_med,
        "ratio": a_med / h_med,
        "target_ratio": TARGET,
        "met": a_med / h_med <= TARGET,
        "accelerated_bars_per_s": args.bars / a_med,
        "hand_njit_bars_per_s": args.bars / h_med,
        "collect_s": statistics.median(collect),
        "fills_agree": agree,
        "event_s": statistics.median(event) if event else None,
        "event_bars_per_s": args.bars / statistics.median(event) if event else None,
    }
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"bars {args.bars:,}, EmaCross {FAST}/{SLOW} long_only, 2 bps; medians of {args.runs} runs")
    print(f"  accelerated tier (simulate)   {a_med * 1e3:9.2f} ms  {out['accelerated_bars_per_s']:>14,.0f} bars/s")
    print(f"  hand-written @njit loop       {h_med * 1e3:9.2f} ms  {out['hand_njit_bars_per_s']:>14,.0f} bars/s")
    print(f"  ratio accelerated / hand      {out['ratio']:9.2f} x  (target <= {TARGET:g}: {'met' if out['met'] else 'missed'})")
    print(f"  fills {len(fills):,}; both sides agree fill for fill and on final equity: {agree}")
    print(f"  RunResult objects (collect)   {out['collect_s'] * 1e3:9.2f} ms")
    if event:
        print(f"  event tier (Kernel.run)       {out['event_s'] * 1e3:9.2f} ms  {out['event_bars_per_s']:>14,.0f} bars/s")


if __name__ == "__main__":
    main()
