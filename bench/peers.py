"""The same EMA-cross backtest in tradebus, backtesting.py and NautilusTrader: bars/s side by side.

The rule, on the 1M one-minute bars of ``bench/throughput.py`` (same seed): EMA 10 and 30 of
the close; from bar 1,000 on, the first bar records which EMA is above and each flip goes
long 1 BTC (fast above) or flat (fast below) with a market order; 2 bps taker fee.

* tradebus: :class:`~tradebus.strategies.ema_cross.EmaCross` through ``Kernel.run`` over a
  Parquet catalog (replay reading included), orders filled at the next bar's open: the event
  tier, the one the targets are for. The same strategy also runs in the accelerated tier
  (:func:`~tradebus.engine.accelerated.run_accelerated`, what ``tradebus sweep`` uses for such
  strategies: the same replay read, the same orders and fills), printed on its own line.
* backtesting.py: ``Strategy.next`` with ``buy(size=1)`` / ``position.close()``, filled at
  the next bar's open (``trade_on_close=False``), ``commission=0.0002``.
* NautilusTrader: ``BacktestEngine`` with registered ``ExponentialMovingAverage``
  indicators, a CASH account and a ``CurrencyPair`` with a 2 bps taker fee; its market
  orders fill against the bar that triggered them, at its close, which in this data is
  the next bar's open (every bar opens at the previous close), so the prices agree. It
  fills against the bar's volume, the others fill market orders whole: its bars get a
  volume of 1,000,000 BTC so that a 1 BTC order is never split.

Seeding: NautilusTrader and backtesting.py (``ewm(adjust=False)``) seed an EMA with the
first close, tradebus (as TA-Lib) with the mean of the first ``span`` closes. Decisions start
at bar 1,000, by when the two seeds' difference has decayed by ``(29/31)**1000 < 1e-29``,
far below a price's float resolution, so every engine makes the same decisions.

Checked: the same number of fills, the same fill prices and sides in the same order, and
the same PnL (cash flows, fees and the final position at the last close); any difference
is printed and makes the exit status non-zero. Timed: each engine's run only (data
preparation, engine construction and catalog writing excluded); medians of ``--runs``.
Missing peers (``make bench-peers`` installs them) are reported and skipped.

Usage::

    python bench/peers.py [--bars 1000000] [--runs 1] [--json]
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import math
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from numba import njit

from checkout import use_this_checkout

os.environ.setdefault("TQDM_DISABLE", "1")  # backtesting.py's progress bar
use_this_checkout()

from throughput import IID, MINUTE_NS, START_NS, instrument, make_bars  # noqa: E402

from loguru import logger  # noqa: E402

from tradebus.data.catalog import Catalog  # noqa: E402
from tradebus.data.replay import Replay, ReplaySource  # noqa: E402
from tradebus.engine.accelerated import run_accelerated  # noqa: E402
from tradebus.engine.kernel import Kernel  # noqa: E402
from tradebus.engine.messages import Bar  # noqa: E402
from tradebus.execution.config import VenueConfig  # noqa: E402
from tradebus.strategies.ema_cross import EmaCross, cross_signal  # noqa: E402
from tradebus.strategies.signal_kernel import SignalKernel  # noqa: E402

FAST, SLOW, FEE, QUANTITY = 10, 30, 0.0002, 1.0
WARMUP = 1_000  # index of the first bar that may decide

#: One fill as compared across engines: (side, price, quantity); fees are compared in the PnL.
Fill = tuple[str, float, float]


def pnl_of(fills: list[tuple[str, float, float, float]], last_close: float) -> float:
    """Cash flows minus fees plus the final position at ``last_close``; fills are (side, px, qty, fee)."""
    cash = position = 0.0
    for side, px, qty, fee in fills:
        signed = qty if side == "BUY" else -qty
        cash -= signed * px + fee
        position += signed
    return cash + position * last_close


def ohlc_frame(table: Any, names: tuple[str, ...]) -> Any:
    """The bars' ``names`` columns as a pandas DataFrame indexed by their close times (UTC)."""
    import pandas as pd

    return pd.DataFrame(
        {name: table.column(name).to_numpy() for name in names},
        index=pd.to_datetime(table.column("ts_event").to_numpy(), utc=True),
    )


@njit(cache=True)
def warm_cross_signal(
    values: np.ndarray, o: float, h: float, lo: float, c: float, v: float, target: float, params: np.ndarray,
    state: np.ndarray,
) -> float:
    """:func:`cross_signal` from the bar of index ``params[2]`` on (``state[1]`` counts the bars)."""
    seen = state[1]
    state[1] = seen + 1.0
    if seen < params[2]:
        return np.nan
    return cross_signal(values, o, h, lo, c, v, target, params, state)


class WarmEmaCross(EmaCross):
    """EmaCross deciding from the bar stamped ``start_ns`` on (the shared warm-up of the peers)."""

    def __init__(self, start_ns: int) -> None:
        super().__init__(IID, fast=FAST, slow=SLOW, quantity=QUANTITY)
        self.start_ns = start_ns

    def on_bar(self, bar: Bar) -> None:
        if bar.ts_event >= self.start_ns:
            self._decide()

    def signal_kernel(self) -> SignalKernel | None:
        """:func:`warm_cross_signal`: bar ``WARMUP`` is the first stamped ``start_ns`` or later."""
        kernel = super().signal_kernel()
        assert kernel is not None
        return dataclasses.replace(kernel, fn=warm_cross_signal, params=(*kernel.params, float(WARMUP)), state_size=2)


def run_tradebus(
    source: ReplaySource, runs: int, accelerated: bool = False
) -> tuple[list[float], list[tuple[str, float, float, float]]]:
    """Times and fills of ``runs`` runs of :class:`WarmEmaCross`, in the event or the accelerated tier."""
    start_ns = START_NS + (WARMUP + 1) * MINUTE_NS
    times = []
    for _ in range(runs):
        kernel = Kernel([instrument()], venue_config=VenueConfig(taker_fee=FEE), initial_cash=1_000_000.0)
        kernel.add_strategy(WarmEmaCross(start_ns))
        t0 = time.perf_counter()
        if accelerated:
            run_accelerated(kernel, Replay([source]))
        else:
            kernel.run(Replay([source]))
        times.append(time.perf_counter() - t0)
        fills = [(f.side, f.price, f.quantity, f.fee) for f in kernel.result.fills]
        del kernel
        gc.collect()
    return times, fills


def run_backtesting(table: Any, runs: int) -> tuple[list[float], list[tuple[str, float, float, float]]]:
    import pandas as pd
    from backtesting import Backtest, Strategy

    def ema(values: Any, span: int) -> Any:
        return pd.Series(values).ewm(span=span, adjust=False).mean().to_numpy()

    class BtEmaCross(Strategy):  # type: ignore[misc]
        def init(self) -> None:
            self.fast = self.I(ema, self.data.Close, FAST)
            self.slow = self.I(ema, self.data.Close, SLOW)
            self.above: bool | None = None

        def next(self) -> None:
            if len(self.data) <= WARMUP:
                return
            fast, slow = self.fast[-1], self.slow[-1]
            if fast > slow:
                now = True
            elif fast < slow:
                now = False
            else:
                return
            if now is not self.above:
                if self.above is not None:
                    if now:
                        self.buy(size=int(QUANTITY))
                    else:
                        self.position.close()
                self.above = now

    frame = ohlc_frame(table, ("open", "high", "low", "close", "volume"))
    frame.columns = ["Open", "High", "Low", "Close", "Volume"]
    times = []
    for _ in range(runs):
        bt = Backtest(frame, BtEmaCross, cash=1_000_000.0, commission=FEE, finalize_trades=False)
        t0 = time.perf_counter()
        stats = bt.run()
        times.append(time.perf_counter() - t0)
    opens = frame["Open"].to_numpy()
    fills: list[tuple[str, float, float, float]] = []
    trades = stats["_trades"].sort_values("EntryBar")
    events = []
    for trade in trades.itertuples():
        events.append((int(trade.EntryBar), "BUY", float(trade.EntryPrice), float(trade.Size)))
        if not math.isnan(trade.ExitPrice):
            events.append((int(trade.ExitBar), "SELL", float(trade.ExitPrice), float(trade.Size)))
    position = stats._strategy.position  # noqa: SLF001 (the open trade at the end, if any)
    if position.size:
        for trade in stats._strategy.trades:  # noqa: SLF001
            events.append((trade.entry_bar, "BUY", float(trade.entry_price), float(trade.size)))
    for bar, side, px, qty in sorted(events):
        assert px == opens[bar]
        fills.append((side, px, qty, px * qty * FEE))
    return times, fills


def run_nautilus(table: Any, runs: int) -> tuple[list[float], list[tuple[str, float, float, float]]]:
    from decimal import Decimal

    from nautilus_trader.backtest.engine import BacktestEngine, BacktestEngineConfig
    from nautilus_trader.config import LoggingConfig, StrategyConfig
    from nautilus_trader.indicators import ExponentialMovingAverage
    from nautilus_trader.model.currencies import BTC, USDT
    from nautilus_trader.model.data import BarType
    from nautilus_trader.model.enums import AccountType, OmsType, OrderSide
    from nautilus_trader.model.identifiers import InstrumentId, Symbol, TraderId, Venue
    from nautilus_trader.model.instruments import CurrencyPair
    from nautilus_trader.model.objects import Money, Price, Quantity
    from nautilus_trader.persistence.wranglers import BarDataWrangler
    from nautilus_trader.trading.strategy import Strategy

    venue = Venue("BENCH")
    pair = CurrencyPair(
        instrument_id=InstrumentId(Symbol("BTCUSDT"), venue),
        raw_symbol=Symbol("BTCUSDT"),
        base_currency=BTC,
        quote_currency=USDT,
        price_precision=2,
        size_precision=5,
        price_increment=Price.from_str("0.01"),
        size_increment=Quantity.from_str("0.00001"),
        lot_size=None,
        max_quantity=Quantity.from_int(1_000),
        min_quantity=Quantity.from_str("0.00001"),
        max_notional=None,
        min_notional=None,
        max_price=Price.from_str("10000000.00"),
        min_price=Price.from_str("0.01"),
        margin_init=Decimal(0),
        margin_maint=Decimal(0),
        maker_fee=Decimal("0.0001"),
        taker_fee=Decimal(str(FEE)),
        ts_event=0,
        ts_init=0,
    )
    bar_type = BarType.from_str("BTCUSDT.BENCH-1-MINUTE-LAST-EXTERNAL")
    frame = ohlc_frame(table, ("open", "high", "low", "close"))
    # NautilusTrader fills against the bar's volume split over its four prices; the other
    # engines fill a market order whole, so its bars get a volume no order here can exhaust.
    frame["volume"] = 1_000_000.0
    bars = BarDataWrangler(bar_type, pair).process(frame)
    start_ns = START_NS + (WARMUP + 1) * MINUTE_NS

    class NtConfig(StrategyConfig, frozen=True):
        instrument_id: InstrumentId
        bar_type: BarType

    class NtEmaCross(Strategy):  # type: ignore[misc]
        def __init__(self, config: NtConfig) -> None:
            super().__init__(config)
            self.fast = ExponentialMovingAverage(FAST)
            self.slow = ExponentialMovingAverage(SLOW)
            self.above: bool | None = None
            self.long = False
            self.quantity = Quantity.from_str("1.00000")
            self.fills: list[tuple[str, float, float, float]] = []

        def on_start(self) -> None:
            self.register_indicator_for_bars(self.config.bar_type, self.fast)
            self.register_indicator_for_bars(self.config.bar_type, self.slow)
            self.subscribe_bars(self.config.bar_type)

        def on_bar(self, bar: Any) -> None:
            if bar.ts_event < start_ns:
                return
            fast, slow = self.fast.value, self.slow.value
            if fast > slow:
                now = True
            elif fast < slow:
                now = False
            else:
                return
            if now is not self.above:
                if self.above is not None and now is not self.long:  # long/flat: no sell while flat
                    side = OrderSide.BUY if now else OrderSide.SELL
                    self.submit_order(self.order_factory.market(self.config.instrument_id, side, self.quantity))
                    self.long = now
                self.above = now

        def on_order_filled(self, event: Any) -> None:
            side = "BUY" if event.order_side == OrderSide.BUY else "SELL"
            self.fills.append((side, float(str(event.last_px)), float(str(event.last_qty)), event.commission.as_double()))

    times = []
    fills: list[tuple[str, float, float, float]] = []
    for _ in range(runs):
        engine = BacktestEngine(
            BacktestEngineConfig(
                trader_id=TraderId("BENCH-001"),
                logging=LoggingConfig(log_level="ERROR", bypass_logging=True),
                run_analysis=False,
            )
        )
        engine.add_venue(
            venue=venue,
            oms_type=OmsType.NETTING,
            account_type=AccountType.CASH,
            starting_balances=[Money(1_000_000, USDT), Money(0, BTC)],
            base_currency=None,
        )
        engine.add_instrument(pair)
        engine.add_data(bars)
        strategy = NtEmaCross(NtConfig(instrument_id=pair.id, bar_type=bar_type))
        engine.add_strategy(strategy)
        t0 = time.perf_counter()
        engine.run()
        times.append(time.perf_counter() - t0)
        fills = strategy.fills
        engine.dispose()
        gc.collect()
    return times, fills


def compare(name: str, ours: list[tuple[str, float, float, float]], theirs: list[tuple[str, float, float, float]], last: float) -> list[str]:
    """Differences between tradebus's fills and PnL and a peer's (empty: the same)."""
    problems = []
    if len(ours) != len(theirs):
        problems.append(f"{name}: {len(theirs):,} fills, tradebus {len(ours):,}")
    for k, (a, b) in enumerate(zip(ours, theirs, strict=False)):
        if a[:3] != b[:3]:
            problems.append(f"{name}: fill {k} is {b[:3]}, tradebus {a[:3]}")
            break
    p_ours, p_theirs = pnl_of(ours, last), pnl_of(theirs, last)
    if not math.isclose(p_ours, p_theirs, rel_tol=1e-9, abs_tol=0.01):
        problems.append(f"{name}: PnL {p_theirs:,.4f}, tradebus {p_ours:,.4f}")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bars", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = parser.parse_args()
    logger.remove()

    table = make_bars(args.bars)
    last_close = float(table.column("close")[-1].as_py())
    with tempfile.TemporaryDirectory(prefix="tradebus-peers-") as tmp:
        catalog = Catalog(Path(tmp) / "catalog")
        catalog.write(table, "bench", "spot", "BTCUSDT", "bars_1m", period="month", interval_ns=MINUTE_NS)
        source = ReplaySource.from_catalog(catalog, IID, "bench", "spot", "BTCUSDT", "bars_1m")
        run_tradebus(source, 1)  # warm-up: Numba cache load and imports
        ours_times, ours = run_tradebus(source, args.runs)
        run_tradebus(source, 1, accelerated=True)  # warm-up: the compiled loop (cached after the first run)
        fast_times, fast = run_tradebus(source, args.runs, accelerated=True)

    results: dict[str, Any] = {
        "bars": args.bars,
        "runs": args.runs,
        "tradebus": {"bars_per_second": args.bars / statistics.median(ours_times), "fills": len(ours), "pnl": pnl_of(ours, last_close)},
    }
    fast_rate = args.bars / statistics.median(fast_times)
    results["tradebus accelerated"] = {"bars_per_second": fast_rate, "fills": len(fast), "pnl": pnl_of(fast, last_close)}
    problems: list[str] = compare("tradebus accelerated", ours, fast, last_close)
    for name, runner in (("backtesting.py", run_backtesting), ("NautilusTrader", run_nautilus)):
        try:
            times, theirs = runner(table, args.runs)
        except ImportError as exc:
            results[name] = {"missing": str(exc)}
            continue
        rate = args.bars / statistics.median(times)
        results[name] = {
            "bars_per_second": rate,
            "fills": len(theirs),
            "pnl": pnl_of(theirs, last_close),
            "tradebus_ratio": results["tradebus"]["bars_per_second"] / rate,
            "accelerated_ratio": fast_rate / rate,
        }
        problems += compare(name, ours, theirs, last_close)
    results["differences"] = problems
    results["load_average_1m"] = os.getloadavg()[0]
    targets = {"backtesting.py": 10, "NautilusTrader": 50}
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(f"bars            {args.bars:,} one-minute bars, EMA {FAST}/{SLOW} long/flat, 2 bps, {args.runs} run(s), median")
        for name in ("tradebus", "backtesting.py", "NautilusTrader"):
            r = results[name]
            if "missing" in r:
                print(f"{name:<16}not installed ({r['missing']}); `make bench-peers` installs it")
                continue
            line = f"{name:<16}{r['bars_per_second']:>12,.0f} bars/s  {r['fills']:>7,} fills  PnL {r['pnl']:>14,.2f}"
            if name in targets:
                line += f"  tradebus = {r['tradebus_ratio']:.1f}x (target >= {targets[name]}x)"
            print(line)
        r = results["tradebus accelerated"]
        versus = ", ".join(
            f"{results[name]['accelerated_ratio']:,.0f}x {name}" for name in targets if "missing" not in results[name]
        )
        print(
            f"accelerated tier{r['bars_per_second']:>12,.0f} bars/s  {r['fills']:>7,} fills  PnL {r['pnl']:>14,.2f}"
            f"  the same strategy in tradebus's compiled tier (sweeps){': ' + versus if versus else ''}"
        )
        print("fills and PnL   " + ("identical in every engine that ran" if not problems else "DIFFER:"))
        for problem in problems:
            print(f"  {problem}")
        print(f"load average    {results['load_average_1m']:.1f} (machine shared with other processes)")
    if problems:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
