"""Backtest throughput on the full path, and the cost of one market-order round trip.

Generates a deterministic random walk of one-minute bars (fixed seed), writes it to
a temporary Parquet catalog, and runs it through the whole kernel path:
replay -> bus -> feature bank (EMA 10 and 30) -> EmaCross long_only quantity 1 ->
risk gate -> order manager -> simulated venue (2 bps taker fee) -> portfolio.

Reported: bars/s (median of ``--runs`` runs, replay reading included, catalog
writing excluded) next to the bars/s of a plain CPython loop running the same
EMA-cross rule over Python lists in the same process (:func:`plain_ema_cross`: the
same TA-Lib-seeded EMAs, decisions at the close, market fills at the next open,
2 bps fee; its fills and PnL are checked against the kernel's), their ratio
(target >= 1/8), the bars/s of 2 and 10 interleaved instruments with identical
times (the same number of bars in all, an EmaCross each) as a share of one instrument's
(target >= 70%), the bars/s of the same run with drawdown and daily-loss breakers that never
trip as a share of the run without (no target; the same fills), the CPU time of the bar part alone
(:class:`SignalsOnly`: the same run whose crossings send no order) against the plain loop and what the
orders add per fill, fills, final PnL, peak RSS,
and the cost of one market-order round trip (submit -> risk -> order manager -> venue -> fill
on the next bar -> portfolio -> strategy callback), measured as the extra time per bar of a strategy
that sends a market order on every bar over one that never trades, on the same data
(CPU time of this process, so that other load on the machine distorts it less).

Usage::

    python bench/throughput.py [--bars 1000000] [--runs 3] [--json] [--profile]
    python bench/throughput.py --ticks [--trades 2000000] [--runs 3] [--json]

``--ticks`` replays synthetic trades through TickEmaCross (EMA 20/80 of trade prices,
long/short, market orders filled on the next trade) and times the same rule as a plain
loop over the list of prices in the same run (target: kernel >= 1/8 of the loop).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import math
import os
import platform
import pstats
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("NUMBA_CACHE_DIR", str(Path(__file__).resolve().parent.parent / ".cache" / "numba"))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
from loguru import logger  # noqa: E402

from checkout import use_this_checkout  # noqa: E402

use_this_checkout()

from tradebus.data.catalog import Catalog  # noqa: E402
from tradebus.data.replay import Replay, ReplaySource  # noqa: E402
from tradebus.engine.instrument import Instrument  # noqa: E402
from tradebus.engine.kernel import Kernel  # noqa: E402
from tradebus.engine.messages import Bar, OrderFilled, OrderSide  # noqa: E402
from tradebus.execution.config import VenueConfig  # noqa: E402
from tradebus.risk.config import RiskConfig  # noqa: E402
from tradebus.strategies.base import Strategy  # noqa: E402
from tradebus.strategies.ema_cross import EmaCross  # noqa: E402
from tradebus.strategies.tick_ema import TickEmaCross  # noqa: E402

MINUTE_NS = 60_000_000_000
START_NS = 1_704_067_200_000_000_000  # 2024-01-01T00:00:00Z
SEED = 20240101
IID = "BTCUSDT.BENCH"
#: Risk limits that never trip on the benchmark's walk: the cost of evaluating breakers.
BREAKERS = RiskConfig(max_drawdown_pct=99.0, max_daily_loss_pct=99.0)


def make_bars(n: int, seed: int = SEED) -> pa.Table:
    """``n`` one-minute bars of a geometric random walk (deterministic for a seed)."""
    rng = np.random.default_rng(seed)
    log_ret = rng.normal(0.0, 0.0008, n)
    close = np.round(30_000.0 * np.exp(np.cumsum(log_ret)), 2)
    open_ = np.empty(n)
    open_[0] = 30_000.0
    open_[1:] = close[:-1]
    wick = np.abs(rng.normal(0.0, 0.0004, (2, n)))
    high = np.round(np.maximum(open_, close) * (1.0 + wick[0]), 2)
    low = np.round(np.minimum(open_, close) * (1.0 - wick[1]), 2)
    volume = np.round(rng.lognormal(1.0, 0.5, n), 6)
    ts = START_NS + MINUTE_NS * np.arange(1, n + 1, dtype=np.int64)
    return pa.table(
        {"ts_event": ts, "ts_init": ts, "open": open_, "high": high, "low": low, "close": close, "volume": volume}
    )


def instrument() -> Instrument:
    """The benchmark instrument: 2 bps taker fee, 1e-5 lots."""
    return Instrument("BENCH", "BTCUSDT", tick_size=0.01, lot_size=1e-5, maker_fee=0.0001, taker_fee=0.0002)


class EveryBar(Strategy):
    """Round-trip probe: a market order on every bar, alternating buy and sell."""

    def __init__(self, instrument_id: str, trade: bool) -> None:
        super().__init__(instrument_id, strategy_id="probe")
        self.trade = trade
        self.side = OrderSide.BUY
        self.filled = 0

    def on_bar(self, bar: Bar) -> None:
        if self.trade:
            self.submit_market(self.instrument_id, self.side, 1.0)
            self.side = OrderSide.SELL if self.side is OrderSide.BUY else OrderSide.BUY

    def on_order_filled(self, event: OrderFilled) -> None:
        self.filled += 1


class SignalsOnly(EmaCross):
    """EmaCross whose crossings send no order: the bar part of the run (replay, features, decisions) alone."""

    def target_position(self, instrument_id: str, target: float, *, reason: str = "") -> str | None:
        return None


def plain_ema_cross(
    fill_prices: list[float], closes: list[float], fast: int, slow: int, quantity: float, low: float, fee: float
) -> tuple[int, float]:
    """The EMA-cross rule as a plain Python loop over lists; return (fills, final PnL).

    EMAs of ``closes`` as TA-Lib computes them (seeded with the mean of the first ``span``
    values); the first event with both ready records which is above, a flip targets
    ``quantity`` (up) or ``low`` (down: 0 long/flat, ``-quantity`` long/short), and the market
    order fills at the next event's ``fill_prices`` entry (the next bar's open, or the next
    trade's price) paying ``fee`` of its notional.
    """
    kf, ks = 2.0 / (fast + 1.0), 2.0 / (slow + 1.0)
    sum_f = sum_s = ema_f = ema_s = 0.0
    n_f = n_s = 0
    above: bool | None = None
    pending = position = cash = 0.0
    fills = 0
    for o, c in zip(fill_prices, closes):
        if pending:
            cash -= pending * o + abs(pending) * o * fee
            position += pending
            pending = 0.0
            fills += 1
        if n_f >= fast:
            ema_f = (c - ema_f) * kf + ema_f
        else:
            sum_f += c
            n_f += 1
            if n_f >= fast:
                ema_f = sum_f / fast
        if n_s >= slow:
            ema_s = (c - ema_s) * ks + ema_s
        else:
            sum_s += c
            n_s += 1
            if n_s < slow:
                continue
            ema_s = sum_s / slow
        if ema_f > ema_s:
            now = True
        elif ema_f < ema_s:
            now = False
        else:
            continue
        if now is not above:
            if above is not None:
                pending = (quantity if now else low) - position
            above = now
    return fills, cash + position * closes[-1]


def make_trades(n: int, seed: int = SEED) -> pa.Table:
    """``n`` trades of a random walk, 1 to 100 ms apart (deterministic for a seed)."""
    rng = np.random.default_rng(seed)
    price = np.round(30_000.0 * np.exp(np.cumsum(rng.normal(0.0, 0.0002, n))), 2)
    ts = START_NS + np.cumsum(rng.integers(1, 101, n)).astype(np.int64) * 1_000_000
    return pa.table(
        {
            "ts_event": ts,
            "ts_init": ts,
            "price": price,
            "size": np.round(rng.lognormal(-3.0, 1.0, n), 6) + 0.00001,
            "aggressor": rng.choice(np.array([-1, 1], dtype=np.int8), n),
            "trade_id": np.arange(n).astype(str),
        }
    )


def bench_ticks(args: argparse.Namespace) -> dict[str, object]:
    """Trades with orders (TickEmaCross 20/80 long/short) against the plain loop over the same ticks."""
    table = make_trades(args.trades)
    prices = table.column("price").to_pylist()
    inst = Instrument("BENCH", "BTCUSDT", tick_size=0.01, lot_size=1e-5, taker_fee=0.0002, margin=True)
    venue = VenueConfig(taker_fee=0.0002, fill_on="trades")

    def run(replay: Replay) -> tuple[float, float, Kernel]:
        kernel = Kernel([inst], venue_config=venue, initial_cash=1_000_000.0)
        kernel.add_strategy(TickEmaCross(IID, fast=20, slow=80, quantity=1.0))
        t0, c0 = time.perf_counter(), time.process_time()
        kernel.run(replay)
        return time.perf_counter() - t0, time.process_time() - c0, kernel

    with tempfile.TemporaryDirectory(prefix="tradebus-bench-") as tmp:
        catalog = Catalog(Path(tmp) / "catalog")
        catalog.write(table, "bench", "spot", "BTCUSDT", "trades", period="month")
        source = ReplaySource.from_catalog(catalog, IID, "bench", "spot", "BTCUSDT", "trades")
        run(Replay([source], end_ns=int(table.column("ts_init")[1000].as_py())))  # warm-up
        times: list[float] = []
        plain_times: list[float] = []
        cpu: list[float] = []
        plain_cpu: list[float] = []
        for _ in range(args.runs):
            t0, c0 = time.perf_counter(), time.process_time()
            plain_fills, plain_pnl = plain_ema_cross(prices, prices, 20, 80, 1.0, -1.0, 0.0002)
            plain_times.append(time.perf_counter() - t0)
            plain_cpu.append(time.process_time() - c0)
            elapsed, used, kernel = run(Replay([source]))
            times.append(elapsed)
            cpu.append(used)
            fills, pnl = len(kernel.result.fills), kernel.portfolio.equity() - kernel.result.initial_cash
            trades = kernel.result.trades
            del kernel
            gc.collect()
    median, plain_median = statistics.median(times), statistics.median(plain_times)
    figures: dict[str, object] = {
        "trades": trades,
        "runs": args.runs,
        "trades_per_second": trades / median,
        "plain_loop_trades_per_second": trades / plain_median,
        "ratio_to_plain_loop": plain_median / median,
        "cpu_ratio_to_plain_loop": statistics.median(plain_cpu) / statistics.median(cpu),
        "fills": fills,
        "final_pnl": pnl,
        "plain_loop_fills": plain_fills,
        "plain_loop_pnl": plain_pnl,
        "load_average_1m": os.getloadavg()[0],
    }
    if not args.json:
        print(f"trades          {trades:,} synthetic trades, TickEmaCross 20/80 long/short, {args.runs} runs")
        print(f"kernel          {figures['trades_per_second']:,.0f} trades/s wall (median)")
        print(
            f"plain loop      {figures['plain_loop_trades_per_second']:,.0f} trades/s (same rule over a list of prices); "
            f"kernel/plain = 1/{1 / (plain_median / median):.2f} (target >= 1/8; "
            f"1/{1 / figures['cpu_ratio_to_plain_loop']:.2f} in CPU time)"
        )
        print(f"fills           {fills:,} (plain loop {plain_fills:,}); PnL {pnl:,.2f} (plain loop {plain_pnl:,.2f})")
        print(f"load average    {figures['load_average_1m']:.1f}")
    if plain_fills != fills or not math.isclose(plain_pnl, pnl, rel_tol=1e-9, abs_tol=1e-6):
        raise SystemExit(f"the plain tick loop disagrees: {plain_fills} fills, PnL {plain_pnl} vs {fills}, {pnl}")
    return figures


def several_instruments(root: Path, count: int, total: int) -> Callable[[], tuple[float, float, int]]:
    """A runner of ``count`` interleaved instruments with identical times (``total`` bars in all).

    Each instrument has its own random walk and its own EmaCross 10/30; the runner returns
    (wall seconds, CPU seconds, fills) of one run.
    """
    catalog = Catalog(root)
    sources = []
    for k in range(count):
        symbol = f"I{k}USDT"
        catalog.write(make_bars(total // count, seed=SEED + k), "bench", "spot", symbol, "bars_1m", period="month")
        sources.append(ReplaySource.from_catalog(catalog, f"{symbol}.BENCH", "bench", "spot", symbol, "bars_1m"))
    insts = [
        Instrument("BENCH", f"I{k}USDT", tick_size=0.01, lot_size=1e-5, maker_fee=0.0001, taker_fee=0.0002)
        for k in range(count)
    ]

    def run() -> tuple[float, float, int]:
        kernel = Kernel(insts, venue_config=VenueConfig(taker_fee=0.0002), initial_cash=1_000_000.0 * count)
        for src in sources:
            kernel.add_strategy(EmaCross(src.instrument_id, fast=10, slow=30, quantity=1.0, strategy_id=src.instrument_id))
        t0, c0 = time.perf_counter(), time.process_time()
        kernel.run(Replay(sources))
        elapsed, used, fills = time.perf_counter() - t0, time.process_time() - c0, len(kernel.result.fills)
        del kernel
        gc.collect()
        return elapsed, used, fills

    return run


def _rss_mb() -> float:
    """Peak resident set size of this process so far, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_once(replay: Replay, strategy: Strategy, risk: RiskConfig | None = None) -> tuple[float, float, Kernel]:
    """Run a fresh kernel; return (wall seconds, CPU seconds of this process, kernel)."""
    kernel = Kernel(
        [instrument()], venue_config=VenueConfig(taker_fee=0.0002), initial_cash=1_000_000.0, risk_config=risk
    )
    kernel.add_strategy(strategy)
    t0, c0 = time.perf_counter(), time.process_time()
    kernel.run(replay)
    return time.perf_counter() - t0, time.process_time() - c0, kernel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bars", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--probe-bars", type=int, default=100_000, help="bars per round-trip measurement")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of one full run")
    parser.add_argument(
        "--instruments",
        type=lambda text: [int(x) for x in text.split(",") if x],
        default=[2, 10],
        help="interleaved instrument counts to compare with one (comma-separated; empty: none)",
    )
    parser.add_argument("--ticks", action="store_true", help="trades with orders against a plain loop over the ticks")
    parser.add_argument("--trades", type=int, default=2_000_000, help="synthetic trades of --ticks")
    args = parser.parse_args()
    logger.remove()
    if args.ticks:
        figures = bench_ticks(args)
        if args.json:
            print(json.dumps(figures, indent=2))
        return

    table = make_bars(args.bars)
    opens, closes = table.column("open").to_pylist(), table.column("close").to_pylist()
    with tempfile.TemporaryDirectory(prefix="tradebus-bench-") as tmp:
        catalog = Catalog(Path(tmp) / "catalog")
        catalog.write(table, "bench", "spot", "BTCUSDT", "bars_1m", period="month", interval_ns=MINUTE_NS)
        source = ReplaySource.from_catalog(catalog, IID, "bench", "spot", "BTCUSDT", "bars_1m")
        replay = Replay([source])

        # Warm-up: numba compilation/cache load and imports are not part of the figure.
        run_once(Replay([source], end_ns=START_NS + 1000 * MINUTE_NS), EmaCross(IID, fast=10, slow=30, quantity=1.0))
        gc.collect()

        times: list[float] = []
        cpu: list[float] = []
        rss_before = _rss_mb()
        plain_times: list[float] = []
        plain_cpu: list[float] = []
        # Several instruments, timed in the same loop as one (alternating runs share the load).
        runners = {count: several_instruments(Path(tmp) / f"several{count}", count, args.bars) for count in args.instruments}
        several_runs: dict[int, list[tuple[float, float, int]]] = {count: [] for count in args.instruments}
        breaker_runs: list[tuple[float, float, int]] = []
        bars_only_cpu: list[float] = []
        for _ in range(args.runs):
            for count, runner in runners.items():
                several_runs[count].append(runner())
            t0, c0 = time.perf_counter(), time.process_time()
            plain_fills, plain_pnl = plain_ema_cross(opens, closes, 10, 30, 1.0, 0.0, 0.0002)
            plain_times.append(time.perf_counter() - t0)
            plain_cpu.append(time.process_time() - c0)
            elapsed, used, kernel = run_once(replay, EmaCross(IID, fast=10, slow=30, quantity=1.0))
            times.append(elapsed)
            cpu.append(used)
            rss_peak = _rss_mb()
            bars, fills, fees = kernel.result.bars, len(kernel.result.fills), kernel.portfolio.fees_paid
            pnl = kernel.portfolio.equity() - kernel.result.initial_cash
            # Kernels hold reference cycles (strategy <-> kernel, venue <-> engine): free them now.
            del kernel
            gc.collect()
            elapsed, used, kernel = run_once(replay, EmaCross(IID, fast=10, slow=30, quantity=1.0), risk=BREAKERS)
            breaker_runs.append((elapsed, used, len(kernel.result.fills)))
            del kernel
            gc.collect()
            _, used, kernel = run_once(replay, SignalsOnly(IID, fast=10, slow=30, quantity=1.0))
            bars_only_cpu.append(used)
            del kernel
            gc.collect()

        profile_text = ""
        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
            run_once(replay, EmaCross(IID, fast=10, slow=30, quantity=1.0))
            profiler.disable()
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(15)
            profile_text = out.getvalue()


        probe_end = START_NS + args.probe_bars * MINUTE_NS
        trips: list[float] = []
        for _ in range(max(args.runs, 3)):
            _, idle, _k = run_once(Replay([source], end_ns=probe_end), EveryBar(IID, trade=False))
            _, busy, k_busy = run_once(Replay([source], end_ns=probe_end), EveryBar(IID, trade=True))
            trips.append((busy - idle) / max(len(k_busy.result.fills), 1) * 1e6)
            del _k, k_busy
            gc.collect()

    median = statistics.median(times)
    plain_median = statistics.median(plain_times)
    figures = {
        "bars": bars,
        "runs": args.runs,
        "seconds_median": median,
        "bars_per_second": bars / median,
        "bars_per_second_best": bars / min(times),
        "bars_per_cpu_second": bars / statistics.median(cpu),
        "load_average_1m": os.getloadavg()[0],
        "plain_loop_bars_per_second": bars / plain_median,
        "ratio_to_plain_loop": plain_median / median,
        "cpu_ratio_to_plain_loop": statistics.median(plain_cpu) / statistics.median(cpu),
        "plain_loop_fills": plain_fills,
        "plain_loop_pnl": plain_pnl,
        "fills": fills,
        "final_pnl": pnl,
        "fees_paid": fees,
        "instruments": {
            str(count): {
                "bars_per_second": bars / statistics.median(r[0] for r in rows),
                "bars_per_cpu_second": bars / statistics.median(r[1] for r in rows),
                "fills": rows[-1][2],
                "ratio_to_single": median / statistics.median(r[0] for r in rows),
                "cpu_ratio_to_single": statistics.median(cpu) / statistics.median(r[1] for r in rows),
            }
            for count, rows in several_runs.items()
        },
        "bars_only": {
            "bars_per_cpu_second": bars / statistics.median(bars_only_cpu),
            "cpu_ratio_to_plain_loop": statistics.median(plain_cpu) / statistics.median(bars_only_cpu),
            "order_part_us_per_fill": (statistics.median(cpu) - statistics.median(bars_only_cpu)) / max(fills, 1) * 1e6,
        },
        "breakers": {
            "bars_per_second": bars / statistics.median(r[0] for r in breaker_runs),
            "fills": breaker_runs[-1][2],
            "ratio_to_none": median / statistics.median(r[0] for r in breaker_runs),
            "cpu_ratio_to_none": statistics.median(cpu) / statistics.median(r[1] for r in breaker_runs),
        },
        "peak_rss_mb": rss_peak,
        "rss_before_runs_mb": rss_before,
        "round_trip_us_median": statistics.median(trips),
        "round_trip_us_runs": trips,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print(f"bars            {figures['bars']:,} one-minute bars, {args.runs} runs")
        print(
            f"throughput      {figures['bars_per_second']:,.0f} bars/s wall (median; best "
            f"{figures['bars_per_second_best']:,.0f}); {figures['bars_per_cpu_second']:,.0f} bars per CPU second"
        )
        print(
            f"plain loop      {figures['plain_loop_bars_per_second']:,.0f} bars/s (same rule over Python lists, median); "
            f"kernel/plain = 1/{1 / figures['ratio_to_plain_loop']:.2f} (target >= 1/8; "
            f"1/{1 / figures['cpu_ratio_to_plain_loop']:.2f} in CPU time)"
        )
        print(f"fills           {figures['fills']:,} (plain loop {plain_fills:,})")
        print(f"final PnL       {figures['final_pnl']:,.2f} (fees {figures['fees_paid']:,.2f})")
        for k, v in figures["instruments"].items():  # type: ignore[attr-defined]
            print(
                f"{k:>2} instruments  {v['bars_per_second']:,.0f} bars/s (identical times, {args.bars:,} bars in all, "
                f"{v['fills']:,} fills) = {v['ratio_to_single']:.0%} of one instrument (target >= 70%; "
                f"{v['cpu_ratio_to_single']:.0%} in CPU time)"
            )
        only = figures["bars_only"]
        print(
            f"bars only       {only['bars_per_cpu_second']:,.0f} bars per CPU second with no order sent (the same "  # type: ignore[index]
            f"crossings) = 1/{1 / only['cpu_ratio_to_plain_loop']:.2f} of the plain loop in CPU time; the orders "  # type: ignore[index]
            f"add {only['order_part_us_per_fill']:.2f} us CPU per fill"  # type: ignore[index]
        )
        b = figures["breakers"]
        print(
            f"breakers        {b['bars_per_second']:,.0f} bars/s with drawdown and daily-loss limits that never trip "  # type: ignore[index]
            f"({b['fills']:,} fills) = {b['ratio_to_none']:.0%} of the run without ({b['cpu_ratio_to_none']:.0%} in "  # type: ignore[index]
            "CPU time; no target)"
        )
        print(
            f"peak RSS        {figures['peak_rss_mb']:,.1f} MB ({figures['rss_before_runs_mb']:,.1f} MB after "
            "imports, data generation and catalog writing)"
        )
        print(f"round trip      {figures['round_trip_us_median']:.2f} us CPU per market order (median)")
        print(f"load average    {figures['load_average_1m']:.1f} (machine shared with other processes)")
    if profile_text:
        print(profile_text, file=sys.stderr)
    if not math.isfinite(pnl):
        raise SystemExit("benchmark produced a non-finite PnL")
    if breaker_runs[-1][2] != fills:
        raise SystemExit(f"limits that never trip changed the run: {breaker_runs[-1][2]} fills vs {fills}")
    if plain_fills != fills or not math.isclose(plain_pnl, pnl, rel_tol=1e-9, abs_tol=1e-6):
        raise SystemExit(f"the plain loop disagrees: {plain_fills} fills, PnL {plain_pnl} vs {fills}, {pnl}")


if __name__ == "__main__":
    main()
