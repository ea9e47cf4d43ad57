"""Liquidation of margin spot positions (``margin: true``), hand-derived and against a reconstruction.

A margin spot position is margined like a cross linear perpetual settling in its quote asset; it
is liquidated when the wallet plus the position's value falls below its maintenance margin
(``maintenance_rate`` of its notional). Before, it never was: a levered short rode a rally to a
negative equity and kept its position.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradebus.account import MarginAccount
from tradebus.data.catalog import Catalog
from tradebus.data.replay import ReplaySource
from tradebus.engine.accelerated import AcceleratedUnsupported, run_accelerated
from tradebus.engine.instrument import Instrument, InstrumentKind
from tradebus.engine.kernel import Kernel, RunResult
from tradebus.engine.messages import Bar, OrderSide, OrderStatus
from tradebus.engine.portfolio import Position
from tradebus.execution.config import VenueConfig
from tradebus.research.lookahead import MemoryReplay, SourceFrame
from tradebus.strategies.base import Strategy, feature_only
from tradebus.strategies.ema_cross import EmaCross
from tradebus.strategies.tick_ema import TickEmaCross

from tests.account.test_margin_spot import IID, Book, spot
from tests.engine.test_accelerated import BARS, H4_NS
from tests.engine.test_kernel_batches import T0, assert_same, run_both, trade_source

COINBASE = "BTC-USD.COINBASE"


def test_a_levered_long_is_liquidated_below_its_hand_derived_price() -> None:
    """3x, 10,000 USD, 1.5 BTC bought at 20,000 (no fee): wallet -20,000. Liquidated where
    -20,000 + 1.5 P = 0.005 * 1.5 P: P = 20,000 / (1.5 * 0.995) = 13,400.33..."""
    book = Book(spot(leverage=3.0))
    book.fill(OrderSide.BUY, 1.5, 20_000.0, 0.0)
    account = book.account
    assert account.liquidation_price("BTC-USD.SIM") == pytest.approx(20_000.0 / 1.4925, rel=1e-12)
    book.mark(13_401.0)
    assert not account.breached("BTC-USD.SIM") and account.liquidations() == []
    assert account.maintenance_margin("USD") == pytest.approx(0.005 * 1.5 * 13_401.0, rel=1e-12)
    book.mark(13_400.0)
    assert account.breached("BTC-USD.SIM") and account.liquidations() == ["BTC-USD.SIM"]


def test_a_short_is_liquidated_above_its_hand_derived_price_and_an_unlevered_long_never() -> None:
    """1x short 0.5 sold at 20,000: wallet 20,000; 20,000 - 0.5 P = 0.0025 P at P = 39,800.99...
    A 1x long that spent its cash (wallet 0) is worth at least its maintenance at any price."""
    book = Book(spot())
    book.fill(OrderSide.SELL, 0.5, 20_000.0, 0.0)
    account = book.account
    assert account.liquidation_price("BTC-USD.SIM") == pytest.approx(20_000.0 / 0.5025, rel=1e-12)
    book.mark(39_800.0)
    assert account.liquidations() == []
    book.mark(39_802.0)
    assert account.liquidations() == ["BTC-USD.SIM"] and account.breached("BTC-USD.SIM")
    long = Book(spot())
    long.fill(OrderSide.BUY, 0.5, 20_000.0, 0.0)
    assert math.isnan(long.account.liquidation_price("BTC-USD.SIM"))
    long.mark(1.0)
    assert long.account.liquidations() == [] and not long.account.breached("BTC-USD.SIM")


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    leverage=st.sampled_from([1.0, 2.0, 3.0, 5.0, 10.0]),
    maintenance=st.floats(0.0, 0.99),  # a share of the initial margin (1 / leverage)
    usd=st.floats(1.0, 1e7),
    fills=st.lists(st.tuples(st.booleans(), st.floats(1e-4, 50.0), st.floats(1.0, 1e5), st.floats(0.0, 100.0)),
                   min_size=1, max_size=4),
    mark=st.floats(0.01, 1e6),
)  # fmt: skip
def test_a_lone_positions_liquidation_price_is_the_price_of_the_general_formula_to_the_bit(
    leverage: float,
    maintenance: float,
    usd: float,
    fills: list[tuple[bool, float, float, float]],
    mark: float,
) -> None:
    """The one margin spot instrument on its quote asset (liquidation_price's shortcut) against the same position
    beside a flat second one on that asset, which adds nothing to the margin backing it (the general formula);
    the batch loops' liquidation bounds come from it, so a price one ulp off moves a liquidation."""
    inst = spot(leverage=leverage, maintenance_rate=maintenance / leverage)
    other = spot(symbol="ETH-USD", base="ETH", leverage=leverage, maintenance_rate=maintenance / leverage)
    alone, beside = Book(inst, usd), Book(inst, usd)
    positions = {IID: beside.pos, "ETH-USD.SIM": Position("ETH-USD.SIM", 1e-7)}
    beside.account = MarginAccount({IID: inst, "ETH-USD.SIM": other}, {"USD": usd}, positions)
    for buy, qty, px, fee in fills:
        for book in (alone, beside):
            book.fill(OrderSide.BUY if buy else OrderSide.SELL, qty, px, fee)
    for book in (alone, beside):
        book.mark(mark)
    price, general = alone.account.liquidation_price(IID), beside.account.liquidation_price(IID)
    assert price == general or (math.isnan(price) and math.isnan(general))


# ----------------------------------------------------------------------------- backtests


def coinbase(leverage: float) -> Instrument:
    return Instrument("COINBASE", "BTC-USD", base="BTC", quote="USD", tick_size=0.01, lot_size=1e-8,
                      min_notional=1.0, maker_fee=0.004, taker_fee=0.006, margin=True, leverage=leverage)  # fmt: skip


def levered_kernel() -> Kernel:
    """EmaCross 10/30 long/short of 1.2 BTC on 100,000 USD at 4x: a short rides a rally into liquidation."""
    kernel = Kernel([coinbase(4.0)], initial_cash=100_000.0, venue_config=VenueConfig(), equity_interval_ns=H4_NS * 6)
    kernel.add_strategy(EmaCross(COINBASE, fast=10, slow=30, quantity=1.2, mode="long_short"))
    return kernel


def replay() -> MemoryReplay:
    return MemoryReplay([SourceFrame(COINBASE, "bars", BARS)], 700)  # type: ignore[arg-type]


def first_breach(result: RunResult) -> tuple[int, float, float, float]:
    """``(ts, close, position, wallet)`` of the first bar close below maintenance, rebuilt from the strategy's fills.

    The wallet is the cash less what the fills paid; at each close (after the fills of that bar)
    the position is liquidated when ``wallet + q * close < 0.005 * |q| * close``.
    """
    fills = [f for f in result.fills if f.reason != "liquidation"]
    wallet, q, k = 100_000.0, 0.0, 0
    for ts, close in zip(BARS["ts_event"].tolist(), BARS["close"].tolist(), strict=True):
        while k < len(fills) and fills[k].ts_event == ts:
            signed = fills[k].quantity if fills[k].side == "BUY" else -fills[k].quantity
            wallet -= signed * fills[k].price + fills[k].fee
            q += signed
            k += 1
        if q != 0.0 and wallet + q * close < 0.005 * abs(q) * close:
            return ts, close, q, wallet
    raise AssertionError("no breach in the reconstruction")


def test_a_levered_backtest_liquidates_at_the_first_close_below_maintenance() -> None:
    result = levered_kernel().run(replay())
    [event] = result.liquidations
    ts, close, q, wallet = first_breach(result)
    assert (event.ts_event, event.mark_price, event.quantity) == (ts, close, q)
    assert q < 0.0 and close > event.liquidation_price  # a short, gapped beyond its liquidation price
    # and beyond its bankruptcy price, where wallet + q * P = 0: the insurance fund takes it there
    bankruptcy = -wallet / q
    assert close > bankruptcy and event.price == pytest.approx(bankruptcy, rel=1e-12)
    assert event.insurance_fund_cover == pytest.approx(-(wallet + q * close), rel=1e-9)
    [fill] = [f for f in result.fills if f.reason == "liquidation"]
    assert (fill.ts_event, fill.side, fill.quantity) == (ts, "BUY", -q)
    assert (fill.price, fill.fee) == (event.price, 0.0)
    # no fill of the strategy's at that close; the liquidation leaves it flat
    assert [f for f in result.fills if f.ts_event == ts] == [fill]
    upto = result.fills[: result.fills.index(fill) + 1]
    assert sum(f.quantity if f.side == "BUY" else -f.quantity for f in upto) == pytest.approx(0.0, abs=1e-12)
    assert any(s.ts >= ts for s in result.equity)  # the run goes on after it
    assert all(s.maintenance_margin == pytest.approx(0.005 * abs(s.position_value), rel=1e-12) for s in result.equity)


def test_one_message_at_a_time_liquidates_as_the_batch_loop() -> None:
    batch = levered_kernel().run(replay())
    single = levered_kernel()
    for row in BARS.itertuples(index=False):
        single.process(Bar(COINBASE, row.ts_event, row.ts_init, row.open, row.high, row.low, row.close, row.volume))
    single.stop()
    assert batch.liquidations == single.result.liquidations and len(batch.liquidations) == 1
    assert batch.fills == single.result.fills
    assert batch.equity == single.result.equity


def test_the_accelerated_tier_hands_a_liquidation_to_the_event_tier() -> None:
    """The compiled loop does not liquidate: it stops where a position reaches its liquidation."""
    with pytest.raises(AcceleratedUnsupported, match=r"reaches its liquidation at bar \d+ \(ts 1746676800000000000\)"):
        run_accelerated(levered_kernel(), replay())


def test_the_accelerated_tier_equals_the_event_tier_up_to_the_liquidation() -> None:
    """On the bars before the liquidating close both tiers agree, maintenance margin column included."""
    cut = BARS[BARS["ts_event"] < 1746676800000000000]
    event = levered_kernel().run(MemoryReplay([SourceFrame(COINBASE, "bars", cut)], 700))  # type: ignore[arg-type]
    fast = run_accelerated(levered_kernel(), MemoryReplay([SourceFrame(COINBASE, "bars", cut)], 700))  # type: ignore[arg-type]
    assert event.liquidations == [] and len(event.fills) > 20
    assert fast.fills == event.fills and fast.equity == event.equity
    assert max(s.maintenance_margin for s in fast.equity) > 0.0


def crash(n: int) -> pa.Table:
    """Trades falling 5 %, rising 20 %, crashing 50 % in n / 600 trades (log), then drifting: a levered
    long meets its liquidation before the strategy's EMAs cross."""
    rng = np.random.default_rng(11)
    parts = ((n // 10, -0.05), (4 * n // 10, 0.2), (n // 600, -0.5), (n - n // 2 - n // 600, 0.0))
    drift = np.concatenate([np.full(m, move / m) for m, move in parts])
    price = np.round(30_000.0 * np.exp(np.cumsum(drift + rng.normal(0.0, 0.0003, n))), 2)
    ts = T0 + np.cumsum(rng.integers(1, 3, n)).astype(np.int64) * 1_000_000
    return pa.table({
        "ts_event": ts, "ts_init": ts, "price": price, "size": np.full(n, 0.01),
        "aggressor": rng.choice(np.array([-1, 1], dtype=np.int8), n), "trade_id": [str(k) for k in range(n)],
    })  # fmt: skip


@pytest.mark.parametrize("mode", ["long_only", "long_short"])
def test_trade_batches_liquidate_at_the_trade_process_liquidates_at(tmp_path: Path, mode: str) -> None:
    """The trade batch loop checks a lone margin spot position only at prices beyond its bounds: the
    same trades must liquidate it as one at a time, where every trade is checked."""
    source = trade_source(tmp_path, crash(30_000))

    def build() -> Kernel:
        inst = Instrument("SIM", "BTCUSDT", tick_size=0.01, lot_size=0.0001, taker_fee=0.0002, margin=True,
                          leverage=10.0)  # fmt: skip
        kernel = Kernel([inst], venue_config=VenueConfig(fill_on="trades"), initial_cash=10_000.0)
        kernel.add_strategy(TickEmaCross("BTCUSDT.SIM", fast=400, slow=4_000, quantity=2.5, mode=mode))
        return kernel

    fast, slow = run_both([source], build, batch_rows=2_000)
    assert_same(fast, slow, min_fills=2)
    assert len(fast.result.liquidations) >= 1
    assert fast.result.liquidations == slow.result.liquidations


# ----------------------------------------------------------------------------- acting on the liquidating bar


class ShortThenBuy(Strategy):
    """Sells 1.9 at its 2nd bar, then buys 0.1 at every bar from the 13th to the 19th.

    Its 13th bar is the one whose close liquidates the short: one at a time the kernel liquidates
    after the strategies have seen the bar, so that bar's buy works when the liquidation cancels it.
    """

    def __init__(self, instrument_id: str) -> None:
        super().__init__(instrument_id, strategy_id="stubborn")
        self.n = 0

    def on_bar(self, bar: Bar | None) -> None:
        self.n += 1
        if self.n == 2:
            self.submit_market(self.instrument_id, OrderSide.SELL, 1.9)
        elif 13 <= self.n < 20:
            self.submit_market(self.instrument_id, OrderSide.BUY, 0.1)


class FeatureOnlyShortThenBuy(ShortThenBuy):
    @feature_only
    def on_bar(self, bar: Bar | None) -> None:
        super().on_bar(bar)


def rally(start: int = T0) -> pa.Table:
    """30 one-minute bars: 20,000 for ten, then 21,000, 22,000, 23,000 (a 4x short of 1.9 at 20,000
    with a 10 % maintenance rate is below it there: 48,000 - 1.9 P < 0.1 * 1.9 P above 22,966), 23,100 ..."""
    close = np.array([20_000.0] * 10 + [21_000.0, 22_000.0, 23_000.0, 23_100.0, 23_200.0] + [23_300.0] * 15)
    ts = start + 60_000_000_000 * np.arange(1, 31, dtype=np.int64)
    return pa.table({"ts_event": ts, "ts_init": ts, "open": close, "high": close, "low": close, "close": close,
                     "volume": np.full(30, 100.0)})  # fmt: skip


@pytest.mark.parametrize("kind", [InstrumentKind.SPOT, InstrumentKind.PERPETUAL])
@pytest.mark.parametrize("lean", [False, True], ids=["bars", "feature_only"])
@pytest.mark.parametrize("count", [1, 2], ids=["one_instrument", "mixed_bars"])
def test_bar_batches_liquidate_after_the_strategies_as_process(
    tmp_path: Path, kind: InstrumentKind, lean: bool, count: int
) -> None:
    """An order decided on the liquidating bar is canceled by the liquidation, in batches as one at a time.

    Before, the bar loops liquidated before delivering the bar: the strategy saw a flat position,
    its buy survived and filled at the next open (one fill more, equity 4,111.50 instead of 4,091.50).
    """
    catalog = Catalog(tmp_path / "c")
    sources = []
    for k in range(count):
        catalog.write(rally(), "sim", "spot", f"C{k}USD", "bars", period="month")
        sources.append(ReplaySource.from_catalog(catalog, f"C{k}USD.SIM", "sim", "spot", f"C{k}USD", "bars"))

    def build() -> Kernel:
        margined = Instrument("SIM", "C0USD", kind=kind, base="C0", quote="USD", margin=kind == InstrumentKind.SPOT,
                              leverage=4.0, maintenance_rate=0.1)  # fmt: skip
        others = [Instrument("SIM", f"C{k}USD", base=f"C{k}", quote="USD") for k in range(1, count)]
        kernel = Kernel([margined, *others], initial_cash=10_000.0, venue_config=VenueConfig())
        kernel.add_strategy((FeatureOnlyShortThenBuy if lean else ShortThenBuy)("C0USD.SIM"))
        return kernel

    fast, slow = run_both(sources, build, batch_rows=500)
    assert_same(fast, slow, min_fills=8)
    [event] = fast.result.liquidations
    assert (event.price, event.quantity) == (23_000.0, -1.9) and fast.result.liquidations == slow.result.liquidations
    assert [o.status for o in fast.result.orders][:2] == [OrderStatus.FILLED, OrderStatus.CANCELED]
    # 10,000 + 1.9 * (20,000 - 23,000) - 0.5 % of 43,700; then 0.1 bought at 23,200 and five at 23,300 (no fees)
    assert fast.portfolio.equity() == pytest.approx(10_000.0 - 5_700.0 - 218.5 + 0.1 * 100.0, abs=1e-6)
