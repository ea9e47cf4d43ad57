"""The accelerated tier against the event tier, fill for fill, on real Coinbase 4h bars."""

from __future__ import annotations

import importlib
import itertools

import math
import random
import sys
from collections.abc import Callable
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tradebus.engine.accelerated import (
    AcceleratedUnsupported,
    BarArrays,
    _grid_of,
    _loop,
    run_accelerated,
    unsupported,
)
from tradebus.engine.instrument import LOTS_RTOL, ROUNDING_RTOL, TICKS_RTOL, Instrument
from tradebus.engine.kernel import Kernel, RunResult
from tradebus.engine.messages import Bar, FundingRate, OrderSide, OrderStatus
from tradebus.engine.portfolio import Portfolio
from tradebus.execution.config import VenueConfig
from tradebus.research.lookahead import MemoryReplay, SourceFrame
from tradebus.risk.breakers import Breakers
from tradebus.risk.config import RiskConfig
from numba import njit

from tradebus.features.spec import FeatureSpec
from tradebus.strategies.base import Strategy
from tradebus.strategies.bollinger import BollingerReversion
from tradebus.strategies.donchian import DonchianBreakout
from tradebus.strategies.ema_cross import EmaCross
from tradebus.strategies.macd import MacdCross
from tradebus.strategies.rsi import RsiReversion
from tradebus.strategies.signal import BarSignal, SignalParams
from tradebus.strategies.signal_kernel import SignalKernel, declared_kernel

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "bars" / "coinbase_btc_usd_4h_sample.csv"
IID = "BTC-USD.COINBASE"
H4_NS = 4 * 3_600_000_000_000


def bars() -> pd.DataFrame:
    """The 3,000 Coinbase BTC-USD 4h candles (2024-06 -> 2025-10), stamped at their close."""
    df = pd.read_csv(FIXTURE)
    close_ns = (df["ts"] * 1_000_000 + H4_NS).astype("int64")
    out = pd.DataFrame({"ts_event": close_ns, "ts_init": close_ns})
    for col in ("open", "high", "low", "close", "volume"):
        out[col] = df[col].astype(float)
    return out


BARS = bars()


def instrument(
    margin: bool, min_notional: float = 1.0, assets: tuple[str, str] = ("BTC", "USD"), tick_size: float = 0.01
) -> Instrument:
    """The Quickstart's Coinbase BTC-USD spot instrument (``margin``: short selling allowed).

    ``assets``: its base and quote (``("", "")``: it names neither, and the account uses placeholders).
    """
    return Instrument(
        "COINBASE", "BTC-USD", kind="spot", base=assets[0], quote=assets[1], tick_size=tick_size, lot_size=1e-8,
        min_notional=min_notional, maker_fee=0.004, taker_fee=0.006, margin=margin,
    )  # fmt: skip


def kernel(
    make: Callable[[], Strategy], venue: VenueConfig, *, margin: bool = False, cash: float = 1e6,
    risk: RiskConfig | None = None, min_notional: float = 1.0, assets: tuple[str, str] = ("BTC", "USD"),
    tick_size: float = 0.01,
) -> Kernel:  # fmt: skip
    k = Kernel([instrument(margin, min_notional, assets, tick_size)], initial_cash=cash, venue_config=venue, risk_config=risk,
               equity_interval_ns=H4_NS * 6)  # fmt: skip
    k.add_strategy(make())
    return k


def both(
    make: Callable[[], Strategy], venue: VenueConfig, frame: pd.DataFrame = BARS, **kw: object
) -> tuple[RunResult, RunResult]:
    """``(event result, accelerated result)`` of the same strategy, venue and bars."""
    event = kernel(make, venue, **kw).run(MemoryReplay([SourceFrame(IID, "bars", frame)], 700))  # type: ignore[arg-type]
    fast = run_accelerated(kernel(make, venue, **kw), MemoryReplay([SourceFrame(IID, "bars", frame)], 700))  # type: ignore[arg-type]
    return event, fast


def key(result: RunResult) -> list[tuple[object, ...]]:
    return [(f.ts_event, f.side, f.quantity, f.price, f.fee, f.liquidity, f.client_order_id, f.trade_id)
            for f in result.fills]  # fmt: skip


VENUES = {
    "fees": VenueConfig(),
    "fixed_2bps": VenueConfig(slippage_bps=2.0),
    "volume": VenueConfig(taker_fee=0.001, slippage={"model": "volume", "bps": 1.0, "impact_bps": 30.0}),
    "volatility": VenueConfig(slippage={"model": "volatility", "k": 0.05, "max_bps": 40.0}),
}
STRATEGIES: dict[str, tuple[Callable[[], Strategy], bool]] = {
    "ema_10_30": (lambda: EmaCross(IID, fast=10, slow=30, quantity=0.5), False),
    "ema_5_60_short": (lambda: EmaCross(IID, fast=5, slow=60, mode="long_short", quantity=0.25), True),
    "macd_default": (lambda: MacdCross(IID, quantity=0.5), False),
    "macd_8_21_5_short": (lambda: MacdCross(IID, fast=8, slow=21, signal=5, mode="long_short", quantity=0.3), True),
    "rsi_14": (lambda: RsiReversion(IID, quantity=0.5), False),
    "rsi_7_short": (lambda: RsiReversion(IID, window=7, oversold=25, overbought=75, mode="long_short",
                                         quantity=0.2), True),  # fmt: skip
    "bollinger_20": (lambda: BollingerReversion(IID, quantity=0.5), False),
    "bollinger_30_short": (lambda: BollingerReversion(IID, window=30, k=1.5, mode="long_short", quantity=0.4), True),
}


@pytest.mark.parametrize("venue", list(VENUES))
@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_accelerated_fills_and_equity_equal_the_event_tier(strategy: str, venue: str) -> None:
    make, margin = STRATEGIES[strategy]
    event, fast = both(make, VENUES[venue], margin=margin)
    assert len(event.fills) >= 10  # the strategy trades on this data
    assert key(fast) == key(event)
    assert fast.equity == event.equity
    assert fast.equity[-1].equity == event.equity[-1].equity
    assert len(fast.orders) == len(event.orders) and not event.denials
    assert (fast.bars, fast.start_ns, fast.end_ns, fast.first_event_ns, fast.last_event_ns) == (
        event.bars, event.start_ns, event.end_ns, event.first_event_ns, event.last_event_ns)
    if strategy.startswith(("ema", "macd")):  # reasons without values: the same text
        assert [f.reason for f in fast.fills] == [f.reason for f in event.fills]


def test_slipped_prices_are_on_the_tick_grid_and_cost_the_trader() -> None:
    _, plain = both(STRATEGIES["ema_10_30"][0], VENUES["fees"])
    _, slipped = both(STRATEGIES["ema_10_30"][0], VENUES["fixed_2bps"])
    assert len(plain.fills) == len(slipped.fills)
    for a, b in zip(plain.fills, slipped.fills, strict=True):
        assert (b.price >= a.price) if b.side == "BUY" else (b.price <= a.price)
        assert round(b.price * 100) == pytest.approx(b.price * 100, abs=1e-6)
        assert b.fee == pytest.approx(b.quantity * b.price * 0.006, rel=1e-12)


@pytest.mark.parametrize("increment", [0.01, 1e-8, 0.5, 0.25, 5.0, 1e-5, 0.1, 0.10000004, 0.1000004])
def test_decimal_grid_matches_the_instrument_rounding(increment: float) -> None:
    inst = Instrument("X", "Y", tick_size=increment, lot_size=increment)
    step, m, scale = _grid_of(increment, "tick_size")
    rng = random.Random(7)
    for _ in range(5_000):
        price = rng.uniform(0.0, 120_000.0) if increment >= 1e-5 else rng.uniform(0.0, 50.0)
        ticks = lots = price * scale / m
        slack = min(max(1e-9, ticks * TICKS_RTOL), max(1e-3, ticks * ROUNDING_RTOL))
        assert float(math.ceil(ticks - slack) * m) / scale == inst.round_price_up(price)
        assert float(math.floor(ticks + slack) * m) / scale == inst.round_price_down(price)
        assert float(math.floor(lots + min(max(1e-9, lots * LOTS_RTOL), max(1e-3, lots * ROUNDING_RTOL))) * m) / scale == inst.round_quantity(price)


def test_a_slipped_price_on_a_grid_of_billions_of_ticks_keeps_its_tick_in_both_tiers() -> None:
    """Whole-dollar opens slipped by 2 bps land on the 1e-5 grid (60000 * 1.0002 = 60012.0) at
    6e9 ticks, where ``price / tick`` misses its whole number by more than an absolute 1e-9."""
    frame = BARS.copy()
    frame["open"] = frame["open"].round()
    frame["high"] = frame[["open", "high"]].max(axis=1)
    frame["low"] = frame[["open", "low"]].min(axis=1)
    event, fast = both(STRATEGIES["ema_10_30"][0], VENUES["fixed_2bps"], frame, tick_size=1e-5)
    assert len(event.fills) >= 10 and key(fast) == key(event)
    bar_at = frame.set_index("ts_event")
    for fill in event.fills:
        bar = bar_at.loc[fill.ts_event]
        if fill.side == "BUY":
            slipped = Decimal(repr(float(bar.open))) * Decimal("1.0002")
            expected = min(float(slipped.quantize(Decimal("1e-5"), ROUND_CEILING)), bar.high)
        else:
            slipped = Decimal(repr(float(bar.open))) * Decimal("0.9998")
            expected = max(float(slipped.quantize(Decimal("1e-5"), ROUND_FLOOR)), bar.low)
        assert fill.price == expected


def test_perturbing_future_bars_leaves_earlier_fills_unchanged() -> None:
    cut = 1_500
    future = BARS.copy()
    rng = np.random.default_rng(3)
    scale = rng.uniform(0.7, 1.3, len(future) - cut)
    for col in ("open", "high", "low", "close"):
        future.loc[cut:, col] = future.loc[cut:, col].to_numpy() * scale
    future.loc[cut:, "volume"] = future.loc[cut:, "volume"].to_numpy()[::-1]
    for make, margin in (STRATEGIES["ema_10_30"], STRATEGIES["rsi_7_short"]):
        _, base = both(make, VENUES["volume"], margin=margin)
        _, moved = both(make, VENUES["volume"], future, margin=margin)
        t_cut = int(BARS["ts_init"][cut])  # bar `cut` is the first changed one: its fills may change
        before = [k for k in key(base) if k[0] < t_cut]
        assert before and before == [k for k in key(moved) if k[0] < t_cut]
        assert [s for s in base.equity if s.ts < t_cut] == [s for s in moved.equity if s.ts < t_cut]
        assert key(moved) != key(base)  # the perturbation does change later fills


def test_same_bars_twice_give_identical_results() -> None:
    make = STRATEGIES["bollinger_20"][0]
    first = run_accelerated(kernel(make, VENUES["volatility"]), BarArrays.of(**{c: BARS[c] for c in BARS}))
    second = run_accelerated(kernel(make, VENUES["volatility"]), BarArrays.of(**{c: BARS[c] for c in BARS}))
    assert first.fills == second.fills and first.equity == second.equity


def test_strategies_differing_only_in_parameters_share_one_compiled_loop() -> None:
    """EmaCross names its features after its spans (``ema_10``): a sweep over the spans still
    compiles the bank's drivers and the loop once, not once per trial (a cold cache paid ~2 s a trial)."""
    modules, loops = set(), set()
    for fast, slow in ((10, 30), (7, 35), (3, 40)):
        k = kernel(lambda fast=fast, slow=slow: EmaCross(IID, fast=fast, slow=slow, quantity=0.5), VENUES["fees"])
        run_accelerated(k, BarArrays.of(**{c: BARS[c] for c in BARS}))
        bank = k.banks[IID]
        assert bank.columns[-2:] == (f"ema_{fast}", f"ema_{slow}")
        modules.add(bank._module)  # noqa: SLF001
        loops.add(_loop(bank, k.strategies[0].signal_kernel()))
    assert len(modules) == 1 and len(loops) == 1


def order_key(result: RunResult) -> list[tuple[object, ...]]:
    return [(o.client_order_id, o.side, o.quantity, o.status, o.filled_qty, o.avg_px, o.fee_paid, o.ts_created,
             o.ts_last, o.venue_order_id, o.trade_ids) for o in result.orders]  # fmt: skip


def test_an_order_still_working_when_the_data_end_equals_the_event_tiers() -> None:
    """The data end on the bar an order was decided on: it never reached the venue (no venue id, no fill)."""
    make = STRATEGIES["ema_5_60_short"][0]
    event = kernel(make, VENUES["fees"], margin=True).run(MemoryReplay([SourceFrame(IID, "bars", BARS)], 700))
    decided = int((BARS["ts_init"] < event.fills[5].ts_event).sum())
    cut = BARS.iloc[:decided].reset_index(drop=True)
    event, fast = both(make, VENUES["fees"], cut, margin=True)
    assert len(event.orders) == len(event.fills) + 1 and event.orders[-1].filled_qty == 0.0
    assert order_key(fast) == order_key(event)
    assert key(fast) == key(event) and fast.equity == event.equity


def test_bars_received_in_bursts_are_sampled_after_the_last_bar_of_their_time() -> None:
    """Three bars share each receive time: both tiers mark a sample at the last of them, and the first sample
    carries the first bar's close at its own time (buy & hold buys there, not at the time's last close)."""
    burst = BARS.copy()
    burst["ts_init"] = (burst["ts_event"] + 3 * H4_NS - 1) // (3 * H4_NS) * (3 * H4_NS)
    make, margin = STRATEGIES["ema_5_60_short"]
    event, fast = both(make, VENUES["fixed_2bps"], burst, margin=margin)
    by_time = burst.groupby("ts_init")["close"]
    last_close, first_close = by_time.last(), by_time.first()
    assert len(event.fills) >= 10 and key(fast) == key(event)
    assert fast.equity == event.equity
    assert [s.marks for s in event.equity] == [(last_close[s.ts],) for s in event.equity]
    start = int(burst["ts_init"].iloc[0])
    assert first_close[start] != last_close[start]  # the burst moved the price within the first time
    for result in (event, fast):
        assert [s.first_prices for s in result.equity[:2]] == [((start, IID, first_close[start]),), ()]


def test_bars_out_of_time_order_are_refused_naming_the_bar() -> None:
    frame = BARS.copy()
    frame.loc[[2000, 2001], ["ts_event", "ts_init"]] = frame.loc[[2001, 2000], ["ts_event", "ts_init"]].to_numpy()
    ts = frame.ts_init
    with pytest.raises(AcceleratedUnsupported,
                       match=f"not in time order \\(bar 2001 at ts {ts[2001]} is earlier than bar 2000 at ts {ts[2000]}\\)"):
        run_accelerated(kernel(STRATEGIES["ema_10_30"][0], VENUES["fees"]), BarArrays.of(**{c: frame[c] for c in frame}))


class EmaCrossWithStop(EmaCross):
    """EmaCross that also acts on its own bars: its kernel no longer describes it."""

    def on_bar(self, bar: Bar) -> None:
        super().on_bar(bar)


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda: DonchianBreakout(IID, quantity=0.5), "declares no signal kernel"),
        (lambda: EmaCrossWithStop(IID, fast=10, slow=30, quantity=0.5), "declares no signal kernel"),
    ],
)
def test_strategy_without_a_signal_kernel_is_refused_with_the_reason(make: Callable[[], Strategy], needle: str) -> None:
    k = kernel(make, VenueConfig())
    assert declared_kernel(k.strategies[0]) is None
    why = unsupported(k)
    assert why is not None and needle in why
    with pytest.raises(AcceleratedUnsupported, match=needle):
        run_accelerated(kernel(make, VenueConfig()), BarArrays.of(**{c: BARS[c] for c in BARS}))


@pytest.mark.parametrize(
    ("venue", "needle"),
    [(VenueConfig(latency_ns=1), "latency"), (VenueConfig(fill_on="trades"), "fill on bars")],
)
def test_venue_options_it_does_not_model_are_refused(venue: VenueConfig, needle: str) -> None:
    why = unsupported(kernel(STRATEGIES["ema_10_30"][0], venue))
    assert why is not None and needle in why


def full_key(result: RunResult) -> tuple[object, ...]:
    """Everything a run records of its orders: orders (with status and reason), denials, submit reasons."""
    orders = [(*k, o.reason) for k, o in zip(order_key(result), result.orders, strict=True)]
    denials = [(d.strategy_id, d.instrument_id, d.client_order_id, d.reason, d.ts_event, d.ts_init)
               for d in result.denials]  # fmt: skip
    return orders, denials, result.submit_reasons


def assert_same_run(event: RunResult, fast: RunResult) -> None:
    assert full_key(fast) == full_key(event)
    assert key(fast) == key(event) and [f.reason for f in fast.fills] == [f.reason for f in event.fills]
    assert fast.equity == event.equity


GAPPED = BARS.copy()
GAPPED.loc[1:, "open"] = GAPPED["close"].shift(1)[1:] * 1.03  # every bar opens 3 % above the last close
GAPPED["high"] = GAPPED[["high", "open"]].max(axis=1)


@pytest.mark.parametrize(
    ("case", "strategy", "options", "frame", "reason"),
    [
        ("buying_power", "macd_default", {"cash": 100_000.0}, BARS, "buying_power: BUY 0.5 BTC-USD.COINBASE needs "),
        ("min_notional", "ema_10_30", {"min_notional": 35_000.0}, BARS, "instrument: notional "),
        ("max_order_quantity", "ema_5_60_short", {"margin": True, "risk": RiskConfig(max_order_quantity=0.3)}, BARS,
         "max_order_quantity: 0.5 > 0.3"),
        ("max_order_notional", "ema_5_60_short", {"margin": True, "risk": RiskConfig(max_order_notional=25_000.0)},
         BARS, "max_order_notional: "),
        ("max_position", "ema_10_30", {"risk": RiskConfig(max_position=0.4)}, BARS,
         "max_position: |0.0 + 0.5| = 0.5 > 0.4"),
        ("unpaid_fill", "ema_10_30", {"cash": 68_000.0}, GAPPED, ("insufficient balance: ", "buying_power: ")),
        # a margin spot instrument: initial margin at the order, again at the (gapped) fill
        ("margin", "ema_5_60_short", {"margin": True, "cash": 25_000.0}, BARS, "margin: "),
        ("unmargined_fill", "ema_5_60_short", {"margin": True, "cash": 20_000.0}, GAPPED, "margin: "),
        ("drawdown_halt", "macd_default", {"risk": RiskConfig(max_drawdown_pct=3.0)}, BARS,
         "trading_state: HALTED denies every order"),
        ("drawdown_reduce", "macd_default", {"risk": RiskConfig(max_drawdown_pct=3.0, drawdown_action="reduce")},
         BARS, "trading_state: REDUCING allows only reducing orders; position "),
        ("daily_loss_halt", "macd_default", {"risk": RiskConfig(max_daily_loss_pct=0.1)}, BARS,
         "trading_state: HALTED denies every order"),
        ("gross_exposure_breaker", "ema_5_60_short", {"margin": True, "cash": 60_000.0,
         "risk": RiskConfig(max_gross_exposure=0.35)}, BARS,
         ("trading_state: REDUCING allows only reducing orders", "max_gross_exposure: ")),
        ("max_gross_exposure", "macd_default", {"cash": 100_000.0, "risk": RiskConfig(max_gross_exposure=0.3)}, BARS,
         "max_gross_exposure: "),
        ("loss_streak", "macd_default", {"risk": RiskConfig(max_consecutive_losses=3)}, BARS,
         "trading_state: HALTED denies every order"),
        ("max_order_rate", "ema_5_60_short", {"margin": True, "risk": RiskConfig(max_orders_per_window=2,
         order_rate_window_ns=3 * 86_400_000_000_000)}, BARS, "max_order_rate: 2 orders in 259200000000000 ns >= 2"),
        # several checks fail at once: the gate's first one words the denial
        ("first_check", "ema_10_30", {"cash": 20_000.0, "min_notional": 35_000.0,
                                      "risk": RiskConfig(max_order_quantity=0.3, max_position=0.1)}, BARS,
         ("instrument: notional ", "buying_power: ")),
    ],
)  # fmt: skip
def test_denied_orders_and_unpaid_fills_equal_the_event_tiers(
    case: str, strategy: str, options: dict[str, object], frame: pd.DataFrame, reason: str | tuple[str, ...]
) -> None:
    """The gate's and the account's refusals happen in the loop: same orders, reasons, denials and fills."""
    make = STRATEGIES[strategy][0]
    event, fast = both(make, VENUES["fees"], frame, **options)
    refused = [o.reason for o in event.orders if o.reason]
    assert refused and all(r.startswith(reason) for r in refused), refused[:3]
    canceled = [o for o in event.orders if o.status is OrderStatus.CANCELED]
    if case == "unpaid_fill":  # the gate's 2 % buffer passes the order, the gapped open then costs more
        assert canceled and all(o.venue_order_id and o.reason.startswith("insufficient") for o in canceled)
    elif case == "unmargined_fill":  # checked at the close, the open 3 % higher needs more margin
        assert canceled and all(o.venue_order_id and o.reason.startswith("margin: fill ") for o in canceled)
    else:
        assert not canceled and len(event.denials) == len(refused)
    if case == "first_check":
        assert {r.split(":")[0] for r in refused} == {"instrument", "buying_power"}
    elif case == "drawdown_reduce":  # the sell that HALTED denies passes: it reduces the position
        halt = RiskConfig(max_drawdown_pct=3.0)
        halted = {o.ts_created: o for o in both(make, VENUES["fees"], frame, risk=halt)[1].orders}
        passed = [o for o in event.orders if o.status is OrderStatus.FILLED and halted[o.ts_created].reason]
        assert passed and all(o.side is OrderSide.SELL for o in passed)
    elif case not in ("max_position", "max_order_quantity"):
        assert event.fills  # some orders pass: the run is a mix
    assert_same_run(event, fast)


def test_an_order_at_max_order_notional_but_for_float_noise_passes_in_both_tiers() -> None:
    """0.3 BTC at the close 97391.71 is 29217.513 (29217.513000000003 in floats): within a limit of 29217.513."""
    make = lambda: EmaCross(IID, fast=10, slow=30, quantity=0.3)  # noqa: E731
    event, fast = both(make, VENUES["fees"], risk=RiskConfig(max_order_notional=29_217.513))
    at_limit = [o for o in event.orders if o.ts_created == 1_733_342_400_000_000_000]  # 2024-12-04 20:00 UTC
    assert [(o.side, o.status, o.reason) for o in at_limit] == [(OrderSide.BUY, OrderStatus.FILLED, "")]
    assert any(o.reason.startswith("max_order_notional: ") for o in event.orders)  # the limit denies the others above it
    assert_same_run(event, fast)


def test_an_order_one_lot_over_max_order_notional_is_denied_in_both_tiers() -> None:
    """12.8 BTC at the close 62668.26 is 802153.728 (802153.7280000001 in floats): within a limit of 802153.728.
    One lot of 1e-8 more is worth 0.000627, less than LIMIT_RTOL (1e-9) of the limit (0.000802): the slack
    is float noise, never a lot's notional (before, 12.80000001 passed)."""
    for quantity, passes in ((12.8, True), (12.80000001, False)):
        make = lambda q=quantity: EmaCross(IID, fast=10, slow=30, quantity=q)  # noqa: E731
        event, fast = both(make, VENUES["fees"], BARS.iloc[:300], cash=1e7, risk=RiskConfig(max_order_notional=802_153.728))
        first = event.orders[0]
        assert (first.ts_created, first.side) == (1_719_792_000_000_000_000, OrderSide.BUY)  # at the close 62668.26
        if passes:
            assert (first.status, first.reason) == (OrderStatus.FILLED, "")
        else:
            assert (first.status, first.reason) == (
                OrderStatus.DENIED, "max_order_notional: 802153.728627 > 802153.728"
            )
        assert_same_run(event, fast)


def test_an_order_one_lot_over_max_gross_exposure_is_denied_in_both_tiers() -> None:
    """12.8 BTC at the close 62668.26 is 802153.728 (802153.7280000001 in floats), an exposure of 0.0802153728
    of an equity of 10,000,000. One lot of 1e-8 more raises it by 6.3e-11, less than LIMIT_RTOL (1e-9) of the
    limit (8.0e-11): the slack is float noise, never a lot's worth (before, 12.80000001 passed)."""
    for quantity, passes in ((12.8, True), (12.80000001, False)):
        make = lambda q=quantity: EmaCross(IID, fast=10, slow=30, quantity=q)  # noqa: E731
        risk = RiskConfig(max_gross_exposure=0.0802153728)
        event, fast = both(make, VENUES["fees"], BARS.iloc[:300], cash=1e7, risk=risk)
        first = event.orders[0]
        assert (first.ts_created, first.side) == (1_719_792_000_000_000_000, OrderSide.BUY)  # at the close 62668.26
        if passes:
            assert (first.status, first.reason) == (OrderStatus.FILLED, "")
        else:
            assert first.status is OrderStatus.DENIED
            assert first.reason == (
                "max_gross_exposure: 0.0802154 > 0.0802153728 "
                "(gross notional 802153.728627 with working orders, equity 10000000.0)"
            )
        assert_same_run(event, fast)


def test_an_order_at_max_order_quantity_but_for_float_noise_passes_and_one_lot_more_is_denied_in_both_tiers() -> None:
    """A limit of 0.7 - 0.4 (0.29999999999999993) is 0.3 but for float noise; 0.30000001 is one lot of 1e-8 more."""
    for quantity, passes in ((0.3, True), (0.30000001, False)):
        make = lambda q=quantity: EmaCross(IID, fast=10, slow=30, quantity=q)  # noqa: E731
        event, fast = both(make, VENUES["fees"], BARS.iloc[:300], risk=RiskConfig(max_order_quantity=0.7 - 0.4))
        first = event.orders[0]
        assert first.side is OrderSide.BUY
        if passes:
            assert (first.status, first.reason) == (OrderStatus.FILLED, "")
        else:
            assert (first.status, first.reason) == (
                OrderStatus.DENIED, "max_order_quantity: 0.30000001 > 0.3"
            )
        assert_same_run(event, fast)


def test_a_position_one_lot_over_max_position_is_denied_in_both_tiers() -> None:
    """A lot of 1e-8 is less than LIMIT_RTOL (1e-9) of a limit of 20 BTC: the slack is float noise, not a lot."""
    for quantity, passes in ((20.0, True), (sum([0.1] * 200), True), (20.00000001, False)):
        make = lambda q=quantity: EmaCross(IID, fast=10, slow=30, quantity=q)  # noqa: E731
        event, fast = both(make, VENUES["fees"], BARS.iloc[:300], cash=1e7, risk=RiskConfig(max_position=20.0))
        first = event.orders[0]
        assert first.side is OrderSide.BUY
        if passes:
            assert (first.status, first.reason) == (OrderStatus.FILLED, "")
        else:
            assert first.status is OrderStatus.DENIED
            assert first.reason == "max_position: |0.0 + 20.00000001| = 20.00000001 > 20.0"
        assert_same_run(event, fast)


@pytest.mark.parametrize(
    ("mode", "margin", "cash", "reason"),
    [
        # 0.2 x (62668.26 x 1.02) x 1.006 is 12861.03099024 (12861.030990240002 in floats)
        ("long_only", False, 12_861.03099024, "buying_power: BUY 0.2 BTC-USD.COINBASE needs "),
        # 0.2 x 62668.26 / 1 + 0.2 x 62668.26 x 0.006 is 12608.853912 (12608.853912000002 in floats)
        ("long_short", True, 12_608.853912, "margin: BUY 0.2 BTC-USD.COINBASE needs initial margin and fee "),
    ],
)
def test_a_buy_of_exactly_the_cash_but_for_float_noise_passes_in_both_tiers(
    mode: str, margin: bool, cash: float, reason: str
) -> None:
    """The first buy (at the close 62668.26 of 2024-07-01 00:00 UTC) needs the whole cash; one lot more is
    denied. The first 300 bars: later a short of the whole cash at leverage 1 reaches its liquidation."""
    for quantity, passes in ((0.2, True), (0.20000001, False)):
        make = lambda q=quantity: EmaCross(IID, fast=10, slow=30, quantity=q, mode=mode)  # noqa: E731
        event, fast = both(make, VENUES["fees"], BARS.iloc[:300], margin=margin, cash=cash)
        first = event.orders[0]
        assert (first.ts_created, first.side) == (1_719_792_000_000_000_000, OrderSide.BUY)
        if passes and margin:  # the next open is above the close: the fill needs more margin than the order
            assert first.status is OrderStatus.CANCELED and first.reason.startswith("margin: fill 0.2 ")
        elif passes:
            assert (first.status, first.reason) == (OrderStatus.FILLED, "")
        else:
            assert first.status is OrderStatus.DENIED and first.reason.startswith(reason.replace("0.2 ", "0.20000001 "))
        assert_same_run(event, fast)


def test_the_loops_gross_exposure_breaker_has_the_gates_slack_as_the_event_tiers_has() -> None:
    """1.1 BTC at 100 on an equity of 10_000 is 0.011000000000000001 in floats: within a limit of 0.011
    (the gate passes such an order; tests/risk covers the event tier's breaker)."""
    k = kernel(STRATEGIES["ema_10_30"][0], VENUES["fees"])
    k.prepare()
    loop = _loop(k.banks[IID], k.strategies[0].signal_kernel())
    breakers = sys.modules[loop.py_func.__module__]._breakers
    cash = 10_000.0 - 1.1 * 100.0
    assert 1.1 * 100.0 / (cash + 1.1 * 100.0) > 0.011
    off = (math.nan, 0.0, math.nan, 0.0)  # no drawdown, no daily loss breaker
    assert breakers(cash, 1.1, 1.0, 100.0, 0, math.nan, 0.0, -1, math.nan, 0.0, 0.0, *off, 0.011)[-1] == 0.0
    assert breakers(cash, 1.1, 1.0, 100.01, 0, math.nan, 0.0, -1, math.nan, 0.0, 0.0, *off, 0.011)[-1] == 1.0


@pytest.mark.parametrize("offset", [0.0, 1e-6])
@pytest.mark.parametrize(("reference", "pct"), [(110.0, 1.0), (110.0, 3.0), (1234.56, 10.0)])
def test_the_loops_drawdown_and_daily_loss_breakers_trip_where_the_event_tiers_do(
    reference: float, pct: float, offset: float
) -> None:
    """An equity at ``(1 - pct / 100) * reference`` trips (its fall rounds below the limit: 110 * 0.99
    falls 0.009999999999999948); one a millionth of the reference above does not. Breakers decides
    the same (tests/risk/test_breakers.py)."""
    k = kernel(STRATEGIES["ema_10_30"][0], VENUES["fees"])
    k.prepare()
    loop = _loop(k.banks[IID], k.strategies[0].signal_kernel())
    breakers = sys.modules[loop.py_func.__module__]._breakers
    equity = reference * (1.0 - pct / 100.0) + reference * offset
    inst = Instrument("COINBASE", "BTC-USD", tick_size=0.01, lot_size=1e-8)
    halt = 2.0  # the loop's HALTED
    for limit in ("max_drawdown_pct", "max_daily_loss_pct"):
        portfolio = Portfolio({inst.instrument_id: inst}, reference)
        event = Breakers(RiskConfig(**{limit: pct}), portfolio)  # type: ignore[arg-type]
        event.on_mark(0)
        portfolio.cash = equity
        event.on_mark(1)
        falls = (pct / 100.0, math.nan) if limit == "max_drawdown_pct" else (math.nan, pct / 100.0)
        limits = (falls[0], halt, falls[1], halt, math.nan)  # dd_fall, dd_action, dl_fall, dl_action, gross
        # (cash, pos, cs, last, now, peak, dd, day, start, dl, gx, *limits): a first mark, then the fall
        first = breakers(reference, 0.0, 1.0, math.nan, 0, math.nan, 0.0, -1, math.nan, 0.0, 0.0, *limits)
        _, dd_state, _, _, dl_state, _ = breakers(equity, 0.0, 1.0, math.nan, 1, *first, *limits)
        assert (max(dd_state, dl_state) == halt) == bool(event.tripped) == (offset == 0.0), limit


@pytest.mark.parametrize(("equity", "trips"), [(5e-5, False), (1e-12, False), (0.0, True)])
def test_the_loops_100_percent_breakers_trip_at_zero_equity_only_as_the_event_tiers_do(equity: float, trips: bool) -> None:
    """A 100 % drawdown or daily loss tripped at an equity up to 1e-9 of the reference (the slack), in both tiers."""
    k = kernel(STRATEGIES["ema_10_30"][0], VENUES["fees"])
    k.prepare()
    loop = _loop(k.banks[IID], k.strategies[0].signal_kernel())
    breakers = sys.modules[loop.py_func.__module__]._breakers
    inst = Instrument("COINBASE", "BTC-USD", tick_size=0.01, lot_size=1e-8)
    reference, halt = 100_000.0, 2.0
    for limit in ("max_drawdown_pct", "max_daily_loss_pct"):
        portfolio = Portfolio({inst.instrument_id: inst}, reference)
        event = Breakers(RiskConfig(**{limit: 100.0}), portfolio)  # type: ignore[arg-type]
        event.on_mark(0)
        portfolio.cash = equity
        event.on_mark(1)
        falls = (1.0, math.nan) if limit == "max_drawdown_pct" else (math.nan, 1.0)
        limits = (falls[0], halt, falls[1], halt, math.nan)
        first = breakers(reference, 0.0, 1.0, math.nan, 0, math.nan, 0.0, -1, math.nan, 0.0, 0.0, *limits)
        _, dd_state, _, _, dl_state, _ = breakers(equity, 0.0, 1.0, math.nan, 1, *first, *limits)
        assert (max(dd_state, dl_state) == halt) == bool(event.tripped) == trips, limit


def test_a_reversal_while_reducing_is_sent_as_its_close_alone_in_both_tiers() -> None:
    """Strategy.target_position closes instead of reversing while REDUCING (the gate denied the whole reversal)."""
    make = STRATEGIES["ema_5_60_short"][0]
    risk = RiskConfig(max_daily_loss_pct=0.1, daily_loss_action="reduce")
    event, fast = both(make, VENUES["fees"], BARS, margin=True, risk=risk)
    positions = list(itertools.accumulate(f.quantity if f.side == "BUY" else -f.quantity for f in event.fills))
    flat = [i for i, q in enumerate(positions) if abs(q) < 1e-12]
    assert len(flat) >= 3, positions[:20]  # without a breaker this strategy is never flat after its first fill
    assert not [o for o in event.orders if o.reason.startswith("trading_state")]
    assert all(event.fills[i].quantity == 0.25 for i in flat)  # the close alone, not the 0.5 of the reversal
    assert_same_run(event, fast)


@pytest.mark.parametrize("strategy", ["ema_10_30", "ema_5_60_short"])
def test_an_instrument_naming_no_assets_is_funded_as_in_the_event_tier(strategy: str) -> None:
    """The account keeps the cash under placeholder names then; the loop once read a balance of 0 and denied every buy."""
    make, margin = STRATEGIES[strategy]
    event, fast = both(make, VENUES["fees"], margin=margin, assets=("", ""))
    assert len(event.fills) >= 10 and not event.denials
    assert_same_run(event, fast)


@pytest.mark.parametrize("seed", range(48))
def test_random_instruments_venues_cash_and_limits_give_the_event_tiers_run(seed: int) -> None:
    """Seeded random setups: the instrument's grids, assets, fees and minimums, the venue's slippage,
    the cash, the risk limits (a drawdown and a daily-loss breaker in 40 % each, gross exposure, a loss
    streak and an order-rate limit in 30 %), the strategy, the bars' span, bursts of
    one receive time and the equity interval; about half the runs have denials (the unpaid fill has its own case in the
    denial test)."""
    rng = random.Random(seed)
    name = rng.choice(list(STRATEGIES))
    make, margin = STRATEGIES[name]
    base, quote = rng.choice([("BTC", "USD"), ("", "")])
    fee = rng.choice([0.0, 0.001, 0.006])
    inst = Instrument(
        "COINBASE", "BTC-USD", kind="spot", base=base, quote=quote, tick_size=rng.choice([0.01, 0.5, 1.0]),
        lot_size=rng.choice([1e-8, 1e-4, 0.01, 0.05]), min_notional=rng.choice([0.0, 10.0, 10.0, 30_000.0]),
        maker_fee=fee / 2.0, taker_fee=fee, margin=margin,
    )  # fmt: skip
    risk = RiskConfig(
        max_order_notional=rng.choice([None, None, 40_000.0]), max_position=rng.choice([None, None, 0.3, 1.0]),
        max_order_quantity=rng.choice([None, None, 0.4]),
    )  # fmt: skip
    venue = VENUES[rng.choice(list(VENUES))]
    cash = rng.choice([20_000.0, 60_000.0, 68_000.0, 1e6])
    start = rng.randrange(0, 1_500)
    frame = (GAPPED if rng.random() < 0.3 else BARS).iloc[start : start + rng.randrange(800, 1_500)].reset_index(drop=True)
    timing = random.Random(f"timing {seed}")  # drawn apart: the setups above stay what they were
    if timing.random() < 0.3:  # received in bursts: several bars share a receive time
        every = timing.choice((2, 3, 6)) * H4_NS
        frame["ts_init"] = (frame["ts_event"] + every - 1) // every * every
    interval = timing.choice((H4_NS * 6, H4_NS * 6, H4_NS, 3_600_000_000_000, H4_NS * 3))
    breaker = random.Random(f"breaker {seed}")
    if breaker.random() < 0.4:
        risk = risk.model_copy(update={"max_drawdown_pct": breaker.choice((0.5, 1.5, 4.0)),
                                       "drawdown_action": breaker.choice(("halt", "reduce"))})  # fmt: skip
    if breaker.random() < 0.4:
        risk = risk.model_copy(update={"max_daily_loss_pct": breaker.choice((0.05, 0.1, 0.3)),
                                       "daily_loss_action": breaker.choice(("halt", "reduce"))})  # fmt: skip
    if breaker.random() < 0.3:
        risk = risk.model_copy(update={"max_gross_exposure": breaker.choice((0.3, 0.6, 1.5))})
    if breaker.random() < 0.3:
        risk = risk.model_copy(update={"max_consecutive_losses": breaker.choice((2, 3, 5)),
                                       "loss_streak_action": breaker.choice(("halt", "reduce"))})  # fmt: skip
    if breaker.random() < 0.3:
        risk = risk.model_copy(update={"max_orders_per_window": breaker.choice((1, 2, 3)),
                                       "order_rate_window_ns": breaker.choice((1, 2, 7)) * 86_400_000_000_000})  # fmt: skip

    def fresh() -> Kernel:
        k = Kernel([inst], initial_cash=cash, venue_config=venue, risk_config=risk, equity_interval_ns=interval)
        k.add_strategy(make())
        return k

    event = fresh().run(MemoryReplay([SourceFrame(IID, "bars", frame)], 700))  # type: ignore[arg-type]
    fast = run_accelerated(fresh(), MemoryReplay([SourceFrame(IID, "bars", frame)], 700))  # type: ignore[arg-type]
    assert event.orders  # the strategy decides on this span
    if name.startswith(("ema", "macd")):
        assert_same_run(event, fast)
    else:  # RSI and Bollinger word their decisions with values in the event tier only
        assert full_key(fast)[:2] == full_key(event)[:2]  # orders (status, reason) and denials
        assert key(fast) == key(event) and fast.equity == event.equity


def test_an_order_below_the_lot_size_still_stops_the_accelerated_run() -> None:
    """The instrument's quantity rules are worded by the instrument: the event tier runs those."""
    inst_min = Instrument("COINBASE", "BTC-USD", kind="spot", base="BTC", quote="USD", tick_size=0.01, lot_size=1e-8,
                          min_quantity=0.6, min_notional=1.0, maker_fee=0.004, taker_fee=0.006)  # fmt: skip
    k = Kernel([inst_min], initial_cash=1e6, venue_config=VenueConfig(), equity_interval_ns=H4_NS * 6)
    k.add_strategy(STRATEGIES["ema_10_30"][0]())
    with pytest.raises(AcceleratedUnsupported, match="minimum quantity or lot size"):
        run_accelerated(k, BarArrays.of(**{c: BARS[c] for c in BARS}))


def test_an_order_of_more_lots_than_the_grid_arithmetic_holds_stops_the_accelerated_run() -> None:
    """1e15 BTC in lots of 1e-8 overflowed the loop's int64 lot count: it ran on with no order (the event tier denies 25)."""
    k = kernel(lambda: EmaCross(IID, fast=10, slow=30, quantity=1e15), VENUES["fees"])
    with pytest.raises(AcceleratedUnsupported, match="more lots than the loop rounds"):
        run_accelerated(k, BarArrays.of(**{c: BARS[c] for c in BARS}))
    event = kernel(lambda: EmaCross(IID, fast=10, slow=30, quantity=1e15), VENUES["fees"]).run(
        MemoryReplay([SourceFrame(IID, "bars", BARS)], 700)  # type: ignore[arg-type]
    )
    assert event.orders and len(event.denials) == len(event.orders)


def test_a_price_of_billions_of_ticks_of_1e8_is_the_exact_decimal_in_both_tiers() -> None:
    """BTC near 67,769 slipped 2 bps onto a 1e-8 tick: ``Instrument.round_price_up`` gave 67769.12111400001
    (``round(n * 1e-8, 11)``, three digits beyond the tick's own, kept the product's float noise), the
    loop's exact grid 67769.121114: the loop stopped and the event tier refused the price of a limit there.
    Rounded to the tick's own 8 digits, both give 67769.121114 and the accelerated run equals the event run."""
    inst = Instrument("COINBASE", "BTC-USD", kind="spot", base="BTC", quote="USD", tick_size=1e-8, lot_size=1e-8,
                      taker_fee=0.001)  # fmt: skip

    def fresh() -> Kernel:
        k = Kernel([inst], initial_cash=1e6, venue_config=VENUES["fixed_2bps"], equity_interval_ns=H4_NS * 6)
        k.add_strategy(STRATEGIES["ema_10_30"][0]())
        return k

    event = fresh().run(MemoryReplay([SourceFrame(IID, "bars", BARS)], 700))  # type: ignore[arg-type]
    prices = [f.price for f in event.fills]
    assert 67769.121114 in prices and 67769.12111400001 not in prices
    assert all(p == float(Decimal(repr(p)).quantize(Decimal("1e-8"))) for p in prices)
    fast = run_accelerated(fresh(), MemoryReplay([SourceFrame(IID, "bars", BARS)], 700))  # type: ignore[arg-type]
    assert_same_run(event, fast)


def test_a_reversal_of_600000_coins_in_lots_of_1e8_runs_alike_in_both_tiers() -> None:
    """A reversal of 2 x 300,000.12345678 coins in lots of 1e-8 (60,000,024,691,356 lots, below 2 ** 46)
    fills 600000.24691356 in both tiers: the event tier denied it while the bound counted the lot's grid
    integer in three digits more than its own (below 1,125,899,906,843 lots of 1e-8), and the loop stopped."""
    inst = instrument(True)
    frame = BARS.copy()
    frame[["open", "high", "low", "close"]] /= 100_000.0  # a coin near 0.6 USD

    def fresh() -> Kernel:
        k = Kernel([inst], initial_cash=1e7, venue_config=VENUES["fees"], equity_interval_ns=H4_NS * 6)
        k.add_strategy(EmaCross(IID, fast=10, slow=30, mode="long_short", quantity=300000.12345678))
        return k

    event = fresh().run(MemoryReplay([SourceFrame(IID, "bars", frame)], 700))  # type: ignore[arg-type]
    assert not event.denials and event.fills[1].quantity == 600000.24691356  # 2 x 300,000.12345678
    fast = run_accelerated(fresh(), MemoryReplay([SourceFrame(IID, "bars", frame)], 700))  # type: ignore[arg-type]
    assert_same_run(event, fast)


def test_a_quantity_on_the_grid_of_a_lot_a_few_ulps_off_its_decimal_is_kept_in_both_tiers() -> None:
    """703,687.44177663 coins (2 ** 46 - 1 lots) in lots of 1.000000000000001e-08, the decimal 1e-8 six units in
    its last place off: both tiers bought 703,687.44177662, one lot less, counting quantity / lot (0.08 of a lot
    below the count there) instead of lots of the decimal, as validate_order does."""
    inst = Instrument("COINBASE", "BTC-USD", kind="spot", base="BTC", quote="USD", tick_size=0.01,
                      lot_size=1.000000000000001e-08, min_notional=1.0, taker_fee=0.006)  # fmt: skip
    frame = BARS.copy()
    frame[["open", "high", "low", "close"]] /= 100_000.0

    def fresh() -> Kernel:
        k = Kernel([inst], initial_cash=1e7, venue_config=VENUES["fees"], equity_interval_ns=H4_NS * 6)
        k.add_strategy(EmaCross(IID, fast=10, slow=30, quantity=703_687.44177663))
        return k

    event = fresh().run(MemoryReplay([SourceFrame(IID, "bars", frame)], 700))  # type: ignore[arg-type]
    assert not event.denials and {f.quantity for f in event.fills} == {703_687.44177663}
    fast = run_accelerated(fresh(), MemoryReplay([SourceFrame(IID, "bars", frame)], 700))  # type: ignore[arg-type]
    assert_same_run(event, fast)


def test_a_quantity_beyond_the_float_grid_stops_the_accelerated_run_and_is_denied_in_the_event_tier() -> None:
    """800,000 coins in lots of 1e-8 is 8e13 lots, beyond ``EXACT_GRID`` (2 ** 46 over the grid's integer 1)."""
    inst = instrument(True)
    frame = BARS.copy()
    frame[["open", "high", "low", "close"]] /= 100_000.0

    def fresh() -> Kernel:
        k = Kernel([inst], initial_cash=1e7, venue_config=VENUES["fees"], equity_interval_ns=H4_NS * 6)
        k.add_strategy(EmaCross(IID, fast=10, slow=30, mode="long_short", quantity=800_000.0))
        return k

    event = fresh().run(MemoryReplay([SourceFrame(IID, "bars", frame)], 700))  # type: ignore[arg-type]
    assert not event.fills and event.denials[0].reason == (
        "instrument: quantity 800000.0 is 80000000000000 lots of 1e-08, more than floats hold exactly on "
        "that grid (below 70368744177664 lots: 2 ** 46 over the grid's integer 1)"
    )
    with pytest.raises(AcceleratedUnsupported, match="more lots than the loop rounds"):
        run_accelerated(fresh(), MemoryReplay([SourceFrame(IID, "bars", frame)], 700))  # type: ignore[arg-type]


@njit(cache=True)
def above_sma_signal(
    values: np.ndarray, o: float, h: float, lo: float, c: float, v: float, target: float, params: np.ndarray,
    state: np.ndarray,
) -> float:
    """Long while the close is above its SMA by ``params[1]``, short below it by as much."""
    sma = values[int(params[0])]
    if c > sma * (1.0 + params[1]):
        return 1.0
    if c < sma * (1.0 - params[1]):
        return -1.0
    return np.nan


class AboveSmaParams(SignalParams):
    window: int = 50
    band: float = 0.01


class AboveSma(BarSignal):
    """A user strategy (not in the library) that declares its own signal kernel."""

    Params = AboveSmaParams

    def specs(self) -> tuple[FeatureSpec, ...]:
        return (FeatureSpec(name="sma", kind="sma", params={"window": self.params.window}, input="close"),)

    def decide(self, bar: Bar, value: dict[str, float]) -> tuple[float, str] | None:
        sma, band = value["sma"], self.params.band
        if bar.close > sma * (1.0 + band):
            return 1.0, "above"
        if bar.close < sma * (1.0 - band):
            return -1.0, "below"
        return None

    def signal_kernel(self) -> SignalKernel:
        return self.kernel_of(above_sma_signal, (self._cols["sma"], self.params.band), 0, ("above", "", "below"))


@pytest.mark.parametrize("mode", ["long_only", "long_short"])
def test_a_user_strategy_with_its_own_signal_kernel_matches_the_event_tier(mode: str) -> None:
    event, fast = both(lambda: AboveSma(IID, quantity=0.3, mode=mode), VENUES["volume"], margin=True)
    assert len(event.fills) > 20
    assert key(fast) == key(event) and fast.equity == event.equity
    assert [f.reason for f in fast.fills] == [f.reason for f in event.fills]


class RenamedEmaCross(EmaCross):
    """A subclass that adds nothing: it still runs in the accelerated tier."""


def test_a_subclass_that_adds_nothing_keeps_the_kernel_and_one_that_adds_a_label_loses_it() -> None:
    k = kernel(lambda: RenamedEmaCross(IID, fast=10, slow=30, quantity=0.5), VenueConfig())
    assert unsupported(k) is None

    class Relabelled(EmaCross):
        label = "ma"

    k = kernel(lambda: Relabelled(IID, fast=10, slow=30, quantity=0.5), VenueConfig())
    why = unsupported(k)
    assert why is not None and "declares no signal kernel" in why


USER_SIGNAL_MODULE = '''
import numpy as np
from numba import njit
from tradebus.features.spec import FeatureSpec
from tradebus.strategies.signal import BarSignal, SignalParams


@njit(cache=True)
def band():
    return {band}


@njit(cache=True)
def band_signal(values, o, h, lo, c, v, target, params, state):
    sma = values[int(params[0])]
    if c > sma * (1.0 + band()):
        return 1.0
    if c < sma * (1.0 - band()):
        return -1.0
    return np.nan


class BandParams(SignalParams):
    window: int = 50


class Band(BarSignal):
    Params = BandParams

    def specs(self):
        return (FeatureSpec(name="sma", kind="sma", params={{"window": self.params.window}}, input="close"),)

    def decide(self, bar, value):
        if bar.close > value["sma"] * (1.0 + {band}):
            return 1.0, "above"
        if bar.close < value["sma"] * (1.0 - {band}):
            return -1.0, "below"
        return None

    def signal_kernel(self):
        return self.kernel_of(band_signal, (self._cols["sma"],), 0, ("above", "", "below"))
'''


def test_editing_a_helper_of_a_user_signal_kernel_compiles_a_new_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loop was named after the kernel function's source alone: after an edit of a helper it calls
    (the band, 1 % -> 3.5 %) the accelerated tier ran the loop compiled with the old helper (77 fills;
    the event tier 35)."""
    monkeypatch.syspath_prepend(str(tmp_path))
    name = "tradebus_test_user_band_signal"
    runs = []
    for band in ("0.01", "0.035"):
        (tmp_path / f"{name}.py").write_text(USER_SIGNAL_MODULE.format(band=band), encoding="utf-8")
        monkeypatch.delitem(sys.modules, name, raising=False)
        module = importlib.import_module(name)
        event, fast = both(lambda: module.Band(IID, quantity=0.3), VENUES["fees"])  # noqa: B023
        assert key(fast) == key(event)
        runs.append(len(event.fills))
    assert runs[0] != runs[1]  # the edit changes what the strategy does


@pytest.mark.parametrize("maintenance", [0.004, 0.05, 0.5, 0.998])
@pytest.mark.parametrize(("pos", "quote"), [(0.3, -12_345.67), (2.5, -1e6), (0.3, 250.0), (-0.3, 20_000.0),
                                            (-7.0, 1e9), (-0.3, -5.0)])  # fmt: skip
def test_the_loops_band_of_marks_where_no_liquidation_can_hold_ends_at_the_exact_liquidation_price(
    pos: float, quote: float, maintenance: float
) -> None:
    """The loop skips the liquidation check at a close whose mark lies strictly inside ``_safe_marks``.
    The check (quote + position value <= maintenance margin + 1e-9 of the notional, at contract size 1)
    holds at the price ``-quote / (pos * (1 - maintenance - 1e-9))`` of a long (at or below it) and
    ``quote / (|pos| * (1 + maintenance + 1e-9))`` of a short (at or above it), computed here in
    decimals: the band ends within 1e-6 of that price on its safe side, and the check holds nowhere
    inside it (its first and last floats and points between)."""
    k = kernel(STRATEGIES["ema_10_30"][0], VENUES["fees"])
    k.prepare()
    loop = _loop(k.banks[IID], k.strategies[0].signal_kernel())
    low, high = sys.modules[loop.py_func.__module__]._safe_marks(False, pos, quote, 1.0, maintenance)
    d_pos, d_quote, keep = Decimal(pos), Decimal(quote), Decimal(maintenance) + Decimal("1e-9")
    root = -d_quote / (d_pos * (1 - keep)) if pos > 0 else d_quote / (-d_pos * (1 + keep))

    def liquidated(mark: float) -> bool:  # the loop's check, operation for operation
        notional = abs(pos) * (1.0 * mark)
        return quote + pos * 1.0 * mark <= notional * maintenance + 1e-9 * notional

    if pos > 0:
        assert high == math.inf and root <= Decimal(low) <= root + abs(root) * Decimal("2e-6")
        inside = [math.nextafter(low, math.inf), *(low + abs(low) * f + f for f in (1e-9, 1e-3, 1.0, 1e3))]
    else:
        assert low == -math.inf and root - abs(root) * Decimal("2e-6") <= Decimal(high) <= root
        inside = [math.nextafter(high, -math.inf), *(high - abs(high) * f - f for f in (1e-9, 1e-3, 1.0, 1e3))]
    assert not any(map(liquidated, inside))
    beyond = float(root) - abs(float(root)) * 1e-9 if pos > 0 else float(root) + abs(float(root)) * 1e-9
    assert liquidated(beyond)  # and just beyond the price, the check holds


@pytest.mark.parametrize("strategy", ["ema_10_30", "bollinger_20"])
def test_the_loop_leaves_the_banks_workspace_as_the_bank_fed_every_bar_leaves_it(strategy: str) -> None:
    """The loop's step_bar writes only the bar fields the features read (EmaCross's and Bollinger's read
    the close alone, not the time): its run ends with the workspace, time field of the last bar
    (1761624000.0 s, 2025-10-28 04:00 UTC) included, equal to a bank fed the same bars by run_bars."""
    k = kernel(STRATEGIES[strategy][0], VENUES["fees"])
    bars = BarArrays.of(**{c: BARS[c] for c in BARS})
    run_accelerated(k, bars)
    fed = kernel(STRATEGIES[strategy][0], VENUES["fees"])
    fed.prepare()
    bank = fed.banks[IID]
    bank.run_bars(bars.ts_event, bars.open, bars.high, bars.low, bars.close, bars.volume)
    assert k.banks[IID]._ws[0] == bars.ts_event[-1] / 1e9  # noqa: SLF001
    np.testing.assert_array_equal(k.banks[IID]._ws, bank._ws)  # noqa: SLF001


def test_a_slipped_price_beyond_the_exact_grid_cancels_its_order_alike_in_both_tiers() -> None:
    """BTC x 10 on a 1e-8 tick, slipped 2 bps: below 703,687.44 (2 ** 46 ticks) the opens fill on the
    grid, beyond it the venue cancels the order. The loop stopped at the first such open (the buy
    filling on 2024-11-06 08:00 at 743,480.5 * 1.0002 = 743,629.1961) while the event tier filled it."""
    inst = Instrument("COINBASE", "BTC-USD", kind="spot", base="BTC", quote="USD", tick_size=1e-8, lot_size=1e-8,
                      taker_fee=0.001)  # fmt: skip
    frame = BARS.copy()
    frame[["open", "high", "low", "close"]] *= 10.0

    def fresh() -> Kernel:
        k = Kernel([inst], initial_cash=1e9, venue_config=VENUES["fixed_2bps"], equity_interval_ns=H4_NS * 6)
        k.add_strategy(STRATEGIES["ema_10_30"][0]())
        return k

    event = fresh().run(MemoryReplay([SourceFrame(IID, "bars", frame)], 700))  # type: ignore[arg-type]
    # the first fill: 626,691.4 * 1.0002 = 626,816.73828 (on the grid, 6.3e13 ticks)
    assert event.fills[0].side == "BUY" and event.fills[0].price == 626816.73828
    refused = [o for o in event.orders if o.status == OrderStatus.CANCELED]
    assert len(event.fills) >= 10 and len(refused) >= 10
    assert refused[0].ts_last == pd.Timestamp("2024-11-06 08:00").value and refused[0].reason == (
        "slipped price 743629.1961 is 74362919610000 ticks of 1e-08, more than floats hold exactly on that grid "
        "(below 70368744177664 ticks: 2 ** 46 over the grid's integer 1)"
    )
    fast = run_accelerated(fresh(), MemoryReplay([SourceFrame(IID, "bars", frame)], 700))  # type: ignore[arg-type]
    assert_same_run(event, fast)


def test_a_perpetual_with_funding_in_a_gap_of_its_bars_is_refused_naming_funding() -> None:
    """The accelerated tier pays no funding: a perpetual's run (here with a funding of 0.1 % falling in a
    gap of its 4h bars, which the event tier pays before the next bar's fills) is refused, not run
    without its payments."""
    perp = Instrument("BINANCE", "BTCUSDT", kind="perpetual", base="BTC", quote="USDT", tick_size=0.01,
                      lot_size=1e-3, leverage=5.0, maintenance_rate=0.005)  # fmt: skip
    iid = perp.instrument_id
    frame = BARS.drop(index=BARS.index[100:103]).reset_index(drop=True)  # three bars missing
    at = int(BARS["ts_init"].iloc[101])

    def build() -> Kernel:
        k = Kernel([perp], initial_cash=1e6, venue_config=VenueConfig(), equity_interval_ns=H4_NS * 6)
        k.add_strategy(EmaCross(iid, fast=10, slow=30, quantity=0.5))
        k.feed_perpetual_data([FundingRate(iid, at, at, 0.001, at)])
        return k

    why = unsupported(build())
    assert why is not None and "perpetual" in why and "funding" in why
    with pytest.raises(AcceleratedUnsupported, match="funding"):
        run_accelerated(build(), MemoryReplay([SourceFrame(iid, "bars", frame)], 700))  # type: ignore[arg-type]
    event = build().run(MemoryReplay([SourceFrame(iid, "bars", frame)], 700))  # type: ignore[arg-type]
    [paid] = event.funding
    assert paid.ts_event == at and paid.ts_init == int(frame["ts_init"].iloc[100])
