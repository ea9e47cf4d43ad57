"""Seeded fuzzer: the accelerated tier against the event tier, fill for fill.

Each seed draws a whole setup: a strategy among those that declare a signal kernel (EmaCross,
MacdCross, BollingerReversion, RsiReversion, and two user kernels of this file: one on an SMA,
one that cycles through fractional and leveraged targets) with parameters anywhere in their valid
ranges (edges included: ``fast == slow - 1``, windows of 1 or 2, RSI levels at 1 and 99, a band
``k`` of 0.01 or 6), the instrument (tick, lot, minimum quantity and notional, maker and taker
fees, margin or cash), the venue's fees and slippage model, the initial cash (one draw too small
for a single lot), the risk limits and breakers, the equity interval, and the data: a random
slice of the real Coinbase 4h bars (gapped opens, bursts of one receive time) or synthetic bars
(holes in time, bars sharing a time, flat runs, bars without volume, jumps of x5 and /5, prices from 3e-6 to 2e6 on
or off the tick grid). ``Kernel.run`` and ``run_accelerated`` must give the same orders (status,
reason), denials, fills (time, side, quantity, price, fee, ids) and equity samples, or the
accelerated tier must refuse the run (:class:`AcceleratedUnsupported`: the event tier runs it).

What the accelerated tier cannot express at all (a second instrument or strategy, latency, a
perpetual, fee tiers, borrowing, holdings) is fuzzed at the config level in
``tests/sweep/test_sweep_tier_fuzz.py``. This fuzzer found quantities and slipped prices of so many
lots or ticks that the instrument's rounding keeps float noise the loop's exact grid does not
(``test_a_price_on_a_grid_the_instruments_rounding_leaves_noise_on_stops_the_accelerated_run``).

CI runs a few seeds; ``TRADEBUS_FUZZ_SEEDS=2000`` (and ``TRADEBUS_FUZZ_FIRST``) runs more.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from numba import njit

from tradebus.engine.accelerated import AcceleratedUnsupported, run_accelerated
from tradebus.engine.instrument import Instrument
from tradebus.engine.kernel import Kernel, RunResult
from tradebus.engine.messages import Bar
from tradebus.execution.config import VenueConfig
from tradebus.features.spec import FeatureSpec
from tradebus.research.lookahead import MemoryReplay, SourceFrame
from tradebus.risk.config import RiskConfig
from tradebus.strategies.base import Strategy
from tradebus.strategies.bollinger import BollingerReversion
from tradebus.strategies.ema_cross import EmaCross
from tradebus.strategies.macd import MacdCross
from tradebus.strategies.rsi import RsiReversion
from tradebus.strategies.signal import BarSignal, SignalParams
from tradebus.strategies.signal_kernel import SignalKernel

from tests.engine.test_accelerated import BARS, GAPPED, H4_NS, IID, AboveSma, full_key, key

FIRST = int(os.environ.get("TRADEBUS_FUZZ_FIRST", "0"))
SEEDS = range(FIRST, FIRST + int(os.environ.get("TRADEBUS_FUZZ_SEEDS", "8")))
MIN_NS = 60_000_000_000


@njit(cache=True)
def cycle_signal(
    values: np.ndarray, o: float, h: float, lo: float, c: float, v: float, target: float, params: np.ndarray,
    state: np.ndarray,
) -> float:
    """Every ``params[1]`` ready bars, the next of the targets ``params[2:]`` (NaN while the SMA is not ready)."""
    if values[int(params[0])] != values[int(params[0])]:
        return np.nan
    state[0] += 1.0
    if state[0] % params[1] != 0.0:
        return np.nan
    n = len(params) - 2
    k = int(state[1]) % n
    state[1] += 1.0
    return params[2 + k]


class CycleParams(SignalParams):
    window: int = 3
    period: int = 1
    targets: tuple[float, ...] = (1.0, -1.0)


class Cycle(BarSignal):
    """A user strategy whose kernel walks through fractional, flat, reversed and leveraged targets."""

    Params = CycleParams

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._state = np.zeros(2)

    def specs(self) -> tuple[FeatureSpec, ...]:
        return (FeatureSpec(name="sma", kind="sma", params={"window": self.params.window}, input="close"),)

    def _params(self) -> tuple[float, ...]:
        return (float(self._cols["sma"]), float(self.params.period), *self.params.targets)

    def decide(self, bar: Bar, value: dict[str, float]) -> tuple[float, str] | None:
        raw = cycle_signal(self._view.row, bar.open, bar.high, bar.low, bar.close, bar.volume, self.target,
                           np.array(self._params()), self._state)  # fmt: skip
        if raw != raw:
            return None
        return raw, "up" if raw > 0 else "down" if raw < 0 else "flat"

    def signal_kernel(self) -> SignalKernel:
        return self.kernel_of(cycle_signal, self._params(), 2, ("up", "flat", "down"))


def draw_strategy(rng: random.Random) -> tuple[str, Callable[[], Strategy], bool]:
    """``(name, factory, whether its reasons carry values)`` of a random strategy with random valid parameters."""
    mode = rng.choice(["long_only", "long_short"])
    kind = rng.choice(["ema", "macd", "bollinger", "rsi", "sma", "cycle"])
    q = 1.0  # scaled by the caller: quantity is a whole number of lots
    if kind == "ema":
        slow = rng.choice([2, 3, rng.randrange(2, 80)])
        fast = rng.choice([slow - 1, 1, rng.randrange(1, slow)])
        return f"ema {fast}/{slow}", lambda: EmaCross(IID, fast=fast, slow=slow, mode=mode, quantity=q), False
    if kind == "macd":
        slow = rng.choice([3, rng.randrange(3, 60)])
        fast = rng.choice([slow - 1, 2, rng.randrange(2, slow)])
        sig = rng.choice([1, 2, rng.randrange(1, 20)])
        return (f"macd {fast}/{slow}/{sig}",
                lambda: MacdCross(IID, fast=fast, slow=slow, signal=sig, mode=mode, quantity=q), False)  # fmt: skip
    if kind == "bollinger":
        window = rng.choice([2, 3, rng.randrange(2, 60)])
        k = rng.choice([0.01, 0.5, 2.0, 2.0, 6.0, rng.uniform(0.01, 3.0)])
        return (f"bollinger {window} {k:g}",
                lambda: BollingerReversion(IID, window=window, k=k, mode=mode, quantity=q), True)  # fmt: skip
    if kind == "rsi":
        window = rng.choice([2, 3, rng.randrange(2, 40)])
        levels = sorted(rng.choice([1.0, 99.0, 50.0, rng.uniform(1.0, 99.0), rng.uniform(1.0, 99.0)]) for _ in range(4))
        oversold, exit_short, exit_long, overbought = levels
        if not oversold < exit_long <= overbought or not oversold <= exit_short < overbought:
            oversold, exit_short, exit_long, overbought = 1.0, 1.0, 99.0, 99.0
            oversold, overbought = rng.choice([(1.0, 99.0), (30.0, 70.0), (49.0, 51.0)])
            exit_short = exit_long = 50.0
        return (f"rsi {window} {oversold:g}/{exit_short:g}/{exit_long:g}/{overbought:g}",
                lambda: RsiReversion(IID, window=window, oversold=oversold, overbought=overbought,
                                     exit_long=exit_long, exit_short=exit_short, mode=mode, quantity=q), True)  # fmt: skip
    if kind == "sma":
        window = rng.choice([1, 2, rng.randrange(1, 60)])
        band = rng.choice([0.0, 0.001, 0.05])
        return f"sma {window} {band:g}", lambda: AboveSma(IID, window=window, band=band, mode=mode, quantity=q), False
    window = rng.choice([1, 2, rng.randrange(1, 20)])
    period = rng.choice([1, 1, 2, rng.randrange(1, 12)])
    targets = tuple(rng.choice([1.0, -1.0, 0.0, 0.37, -0.5, 2.5, 1e-9, 1.0 + 1e-12]) for _ in range(rng.randrange(1, 6)))
    return (f"cycle {window} {period} {targets}",
            lambda: Cycle(IID, window=window, period=period, targets=targets, mode=mode, quantity=q), False)  # fmt: skip


def with_quantity(make: Callable[[], Strategy], quantity: float) -> Callable[[], Strategy]:
    """``make`` with its size set to ``quantity`` (the strategies are built with a placeholder size)."""

    def build() -> Strategy:
        strategy = make()
        strategy.params = strategy.params.model_copy(update={"quantity": quantity})  # type: ignore[attr-defined]
        if isinstance(strategy, EmaCross):
            strategy._setup(**strategy.params.model_dump())  # noqa: SLF001 (its short target follows the size)
        return strategy

    return build


def synthetic_bars(rng: random.Random, tick: float) -> pd.DataFrame:
    """Bars with holes in time, flat runs, zero volume, jumps and extreme price levels."""
    n = rng.randrange(30, 700)
    step = rng.choice([MIN_NS, 15 * MIN_NS, H4_NS])
    times = np.cumsum([step * (rng.choice([1] * 12 + [0, 2, 7, 300])) for _ in range(n)]) + 1_717_200_000_000_000_000
    price = rng.choice([0.05, 3.0, 250.0, 60_000.0, 2e6]) if tick >= 1e-4 else 3e-6
    vol = rng.choice([0.0005, 0.01, 0.05])
    on_grid = rng.random() < 0.7
    rows = []
    flat = 0
    for _ in range(n):
        if flat > 0:
            flat -= 1
            o = h = lo = c = price
            v = rng.choice([0.0, 0.0, 1.0])
        else:
            if rng.random() < 0.05:
                flat = rng.randrange(1, 40)
            jump = rng.choice([1.0] * 60 + [5.0, 0.2])
            o = price * jump * math.exp(rng.gauss(0.0, vol / 4))
            c = o * math.exp(rng.gauss(0.0, vol))
            h = max(o, c) * math.exp(abs(rng.gauss(0.0, vol / 2)))
            lo = min(o, c) * math.exp(-abs(rng.gauss(0.0, vol / 2)))
            v = rng.choice([0.0, rng.uniform(0.0, 5.0), rng.uniform(0.0, 5e4), 1e-6])
        if on_grid:
            o, h, lo, c = (max(round(x / tick), 1) * tick for x in (o, h, lo, c))
            h, lo = max(h, o, c), min(lo, o, c)
        rows.append((o, h, lo, c, v))
        price = c
    out = pd.DataFrame(rows, columns=["open", "high", "low", "close", "volume"])
    out.insert(0, "ts_init", times.astype("int64"))
    out.insert(0, "ts_event", times.astype("int64"))
    return out


def draw_setup(seed: int) -> dict[str, object]:
    rng = random.Random(f"accelerated fuzz {seed}")
    name, make, valued = draw_strategy(rng)
    real = rng.random() < 0.5
    if real:
        tick = rng.choice([0.01, 0.5, 1.0])
        start = rng.randrange(0, len(BARS) - 40)
        frame = (GAPPED if rng.random() < 0.3 else BARS).iloc[start : start + rng.randrange(40, 1_500)]
        frame = frame.reset_index(drop=True)
        if rng.random() < 0.3:  # received in bursts: several bars share a receive time
            every = rng.choice((2, 3, 6)) * H4_NS
            frame["ts_init"] = (frame["ts_event"] + every - 1) // every * every
    else:
        tick = rng.choice([1e-8, 1e-4, 0.01, 0.5, 1.0, 5.0])
        frame = synthetic_bars(rng, tick)
    price = float(frame["close"].median())
    lot = rng.choice([1e-8, 1e-5, 0.001, 0.01, 0.1, 1.0, 5.0])
    min_quantity = rng.choice([0.0, 0.0, lot, lot * 3])
    # a size worth about 10 ** U(-4, 0.5) of 100k of the quote asset, in whole lots (at least one)
    quantity = max(1, round(10 ** rng.uniform(-4.0, 0.5) * 1e5 / price / lot)) * lot
    quantity = float(f"{quantity:.12g}")
    maker, taker = rng.choice([(0.0, 0.0), (-0.0001, 0.0004), (0.001, 0.001), (0.004, 0.006), (0.01, 0.02)])
    margin = rng.random() < 0.4
    base, quote = rng.choice([("BTC", "USD"), ("BTC", "USD"), ("", "")])
    inst = Instrument(
        "COINBASE", "BTC-USD", kind="spot", base=base, quote=quote, tick_size=tick,
        lot_size=lot, min_quantity=min_quantity, min_notional=rng.choice([0.0, 0.0, 1.0, 10.0, quantity * price * 0.8]),
        maker_fee=maker, taker_fee=taker, margin=margin, leverage=rng.choice([1.0, 1.0, 3.0, 10.0]) if margin else 1.0,
    )  # fmt: skip
    slippage = rng.choice(["none", "legacy", "fixed", "volume", "volatility"])
    venue_fee = rng.choice([{}, {}, {"taker_fee": 0.0}, {"taker_fee": 0.0005, "maker_fee": -0.0001}, {"taker_fee": -0.0002}])
    if slippage == "legacy":
        venue = VenueConfig(slippage_bps=rng.choice([0.5, 2.0, 25.0]), **venue_fee)
    elif slippage == "fixed":
        venue = VenueConfig(slippage={"model": "fixed", "bps": rng.choice([0.0, 1.0, 499.0]),
                                      "max_bps": rng.choice([500.0, 0.5])}, **venue_fee)  # fmt: skip
    elif slippage == "volume":
        venue = VenueConfig(slippage={"model": "volume", "bps": rng.choice([0.0, 1.0]),
                                      "impact_bps": rng.choice([0.0, 30.0, 1e4]),
                                      "exponent": rng.choice([0.5, 1.0, 2.0, 0.01]),
                                      "max_bps": rng.choice([500.0, 40.0, 1e-3])}, **venue_fee)  # fmt: skip
    elif slippage == "volatility":
        venue = VenueConfig(slippage={"model": "volatility", "bps": rng.choice([0.0, 3.0]),
                                      "k": rng.choice([0.01, 0.05, 1.0]), "max_bps": rng.choice([500.0, 40.0])},
                            **venue_fee)  # fmt: skip
    else:
        venue = VenueConfig(**venue_fee)
    # options of fills on trades, quotes and contingent orders: nothing here may depend on them
    more = random.Random(f"accelerated fuzz options {seed}")  # drawn apart: the setups above stay what they were
    venue = venue.model_copy(update={"bar_path": more.choice(["close_direction", "high_first", "low_first", "stop_first"]),
                                     "limit_fill": more.choice(["touch", "through"]),
                                     "trade_size_limit": more.random() < 0.5,
                                     "reduce_only_mode": more.choice(["cap", "reject"])})  # fmt: skip
    notional = quantity * price
    cash = rng.choice([notional * rng.uniform(0.1, 0.9) * lot / quantity, notional * 0.5, notional * 1.01,
                       notional * 1.5, notional * 4, notional * 4, 1e9, 1e9, 1e9])  # fmt: skip
    risk = RiskConfig()
    for field, values in (("max_order_notional", (notional * 0.9, notional * 2)), ("max_position", (0.0, quantity, quantity * 0.5)),
                          ("max_order_quantity", (quantity, quantity * 0.7)), ("max_open_orders", (1, 5)),
                          ("price_band_pct", (0.01,))):  # fmt: skip
        if rng.random() < 0.12:
            risk = risk.model_copy(update={field: rng.choice(values)})
    if rng.random() < 0.3:
        risk = risk.model_copy(update={"max_drawdown_pct": rng.choice((0.5, 4.0, 100.0)),
                                       "drawdown_action": rng.choice(("halt", "reduce"))})  # fmt: skip
    if rng.random() < 0.3:
        risk = risk.model_copy(update={"max_daily_loss_pct": rng.choice((0.05, 1.0, 100.0)),
                                       "daily_loss_action": rng.choice(("halt", "reduce"))})  # fmt: skip
    if rng.random() < 0.25:
        risk = risk.model_copy(update={"max_gross_exposure": rng.choice((0.3, 1.0, 1.5, 5.0))})
    if rng.random() < 0.25:
        risk = risk.model_copy(update={"max_consecutive_losses": rng.choice((1, 2, 5)),
                                       "loss_streak_action": rng.choice(("halt", "reduce"))})  # fmt: skip
    if rng.random() < 0.25:
        span = int(frame["ts_init"].iloc[-1] - frame["ts_init"].iloc[0]) // max(len(frame), 1)
        risk = risk.model_copy(update={"max_orders_per_window": rng.choice((1, 2, 3)),
                                       "order_rate_window_ns": max(1, span * rng.choice((1, 3, 10)))})  # fmt: skip
    # features of the config besides the strategy's: they come first in the bank, moving its columns
    extra = [FeatureSpec(name=n, kind=kind, params=params, input="close") for n, kind, params in
             more.sample([("sma_4", "sma", {"window": 4}), ("ema_10", "ema", {"span": 25}), ("rsi_5", "rsi", {"window": 5}),
                         ("x", "ema", {"span": 2})], more.choice([0, 0, 1, 2]))]  # fmt: skip
    balances = {"USD": cash} if quote == "USD" and more.random() < 0.3 else None
    interval = rng.choice([MIN_NS, 3_600_000_000_000, H4_NS, H4_NS * 6, 7 * 86_400_000_000_000])
    return {"name": name, "make": with_quantity(make, quantity), "valued": valued, "inst": inst, "venue": venue,
            "cash": cash, "balances": balances, "features": extra, "risk": risk, "interval": interval, "frame": frame}  # fmt: skip


def run_both(setup: dict[str, object]) -> tuple[RunResult, RunResult | None]:
    """``(event result, accelerated result or None when the accelerated tier refused the run)``."""

    def fresh() -> Kernel:
        k = Kernel([setup["inst"]], initial_cash=setup["cash"], venue_config=setup["venue"],  # type: ignore[list-item,arg-type]
                   risk_config=setup["risk"], equity_interval_ns=setup["interval"], balances=setup["balances"],  # type: ignore[arg-type]
                   features=setup["features"])  # type: ignore[arg-type]  # fmt: skip
        k.add_strategy(setup["make"]())  # type: ignore[operator]
        return k

    frame = setup["frame"]
    event = fresh().run(MemoryReplay([SourceFrame(IID, "bars", frame)], 700))  # type: ignore[arg-type]
    try:
        fast = run_accelerated(fresh(), MemoryReplay([SourceFrame(IID, "bars", frame)], 700))  # type: ignore[arg-type]
    except AcceleratedUnsupported:
        return event, None
    return event, fast


def assert_equal_runs(event: RunResult, fast: RunResult, valued: bool) -> None:
    orders, denials, reasons = full_key(fast)
    assert orders == full_key(event)[0]
    assert denials == full_key(event)[1]
    if not valued:  # RSI and Bollinger word their decisions with values in the event tier only
        assert reasons == full_key(event)[2]
    assert key(fast) == key(event)
    assert fast.equity == event.equity
    assert (fast.bars, fast.start_ns, fast.end_ns, fast.first_event_ns, fast.last_event_ns) == (
        event.bars, event.start_ns, event.end_ns, event.first_event_ns, event.last_event_ns)


@pytest.mark.parametrize("seed", SEEDS)
def test_random_strategies_params_data_and_costs_give_the_event_tiers_fills(seed: int) -> None:
    setup = draw_setup(seed)
    event, fast = run_both(setup)
    if fast is None:  # refused: the event tier runs it (tier: auto)
        return
    assert_equal_runs(event, fast, bool(setup["valued"]))
