"""Margin account of perpetuals: margin checks, tiers, liquidation, funding, the equity identity.

Numbers are derived by hand in each test; funding on real Binance XRP/USDT data is checked
against an independent pandas computation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradebus.account import MarginAccount
from tradebus.data.catalog import Catalog, DatasetRef
from tradebus.data.ingest import import_path
from tradebus.data.perpetual import read_funding_rates, read_mark_prices
from tradebus.data.replay import Replay, ReplaySource
from tradebus.data.resample import bars_from_trades
from tradebus.engine.instrument import CloseFee, Instrument, InstrumentKind, MarginMode, MarginTier
from tradebus.engine.kernel import Kernel
from tradebus.engine.messages import (
    Bar,
    FundingRate,
    Liquidity,
    MarkPrice,
    OrderDenied,
    OrderFilled,
    OrderSide,
    PositionLiquidated,
    Trade,
)
from tradebus.engine.perpetuals import FundingDue
from tradebus.engine.portfolio import Portfolio, Position
from tradebus.errors import DataError, OrderError
from tradebus.reports.metrics import compute_metrics
from tradebus.execution.config import VenueConfig
from tradebus.risk.config import RiskConfig
from tradebus.strategies.base import Strategy, feature_only

FIX = Path(__file__).parent.parent / "fixtures" / "perpetual"
H = 3_600_000_000_000
T0 = 1_700_000_000_000_000_000 // H * H


def perp(**overrides: Any) -> Instrument:
    fields: dict[str, Any] = dict(
        venue="SIM", symbol="BTCUSDT", kind=InstrumentKind.PERPETUAL, base="BTC", quote="USDT",
        tick_size=0.1, lot_size=0.001, leverage=10.0, maintenance_rate=0.005, liquidation_fee=0.005,
    )
    fields.update(overrides)
    return Instrument(**fields)


class BuyOnce(Strategy):
    """Buys (or sells) ``quantity`` at market on its first bar, then holds."""

    def __init__(self, iid: str, quantity: float, side: OrderSide = OrderSide.BUY) -> None:
        super().__init__(iid, strategy_id="buy-once")
        self.quantity = quantity
        self.side = side
        self.done = False
        self.denied: list[OrderDenied] = []

    def on_bar(self, bar: Bar) -> None:
        if not self.done:
            self.done = True
            self.submit_market(bar.instrument_id, self.side, self.quantity, reason="entry")

    def on_order_denied(self, event: OrderDenied) -> None:
        self.denied.append(event)


class HoldAfterFirstBar(Strategy):
    """:class:`BuyOnce` as a feature-only bar handler (the backtest takes its lean loop): a buy decided on bar 1."""

    def __init__(self, iid: str, quantity: float) -> None:
        super().__init__(iid, strategy_id="hold")
        self.quantity = quantity
        self.bars = 0

    @feature_only
    def on_bar(self, bar: Bar | None = None) -> None:
        self.bars += 1
        if self.bars == 1:
            self.submit_market(self.instrument_id, OrderSide.BUY, self.quantity, reason="entry")


def hourly_bars(root: Path, iid: str, closes: list[float]) -> ReplaySource:
    """Flat hourly bars closing at ``T0 + k * H`` (k = 1, 2, ...), from a CSV file; enough of them take a batch loop."""
    ts = [T0 + k * H for k in range(1, len(closes) + 1)]
    pd.DataFrame({"ts": ts, "open": closes, "high": closes, "low": closes, "close": closes, "volume": 1.0}).to_csv(
        root / "bars.csv", index=False
    )
    return ReplaySource.from_file(root / "bars.csv", iid, "bars", bar_time="close")


def run_and_process(build: Callable[[], Kernel], source: ReplaySource) -> tuple[Kernel, Kernel]:
    """A kernel of ``build`` through ``run`` (the batch loops), another through ``process`` one message at a time."""
    ran = build()
    ran.run(Replay([source]))
    processed = build()
    for msg in Replay([source]):
        processed.process(msg)
    processed.stop()
    return ran, processed


def flat_bar(iid: str, k: int, px: float) -> Bar:
    return Bar(iid, T0 + k * H, T0 + k * H, px, px, px, px, 1.0)


def opened_kernel(inst: Instrument, cash: float, qty: float, px: float = 20_000.0) -> tuple[Kernel, BuyOnce]:
    """A kernel whose strategy bought ``qty`` at ``px`` (decided on bar 1, filled at bar 2's open)."""
    kernel = Kernel([inst], venue_config=VenueConfig(fill_on="bars"), initial_cash=cash)
    strategy = BuyOnce(inst.instrument_id, qty)
    kernel.add_strategy(strategy)
    kernel.process(flat_bar(inst.instrument_id, 1, px))
    kernel.process(flat_bar(inst.instrument_id, 2, px))
    return kernel, strategy


# ----------------------------------------------------------------------------- margin checks


def test_order_beyond_available_margin_is_denied_with_reason() -> None:
    """Cross, 10x, 1000 USDT: 1 BTC at 20000 needs 2000 initial margin > 1000 available."""
    inst = perp()
    kernel, strategy = opened_kernel(inst, 1_000.0, 1.0)
    assert kernel.portfolio.position(inst.instrument_id) == 0.0
    [denied] = strategy.denied
    assert denied.reason.startswith("margin: ")
    assert "needs initial margin and fee 2000 USDT > available 1000 USDT" in denied.reason


def test_order_within_margin_opens_a_leveraged_position() -> None:
    """0.5 BTC at 20000 with 10x needs 1000: exactly the wallet; afterwards nothing is available."""
    inst = perp()
    kernel, strategy = opened_kernel(inst, 1_000.0, 0.5)
    assert strategy.denied == []
    assert kernel.portfolio.position(inst.instrument_id) == 0.5
    account = kernel.portfolio.account
    assert isinstance(account, MarginAccount)
    assert account.initial_margin("USDT") == pytest.approx(1_000.0)
    assert account.available("USDT") == pytest.approx(0.0)
    assert account.maintenance_margin("USDT") == pytest.approx(0.005 * 10_000.0)


def test_tiered_maintenance_margin_matches_binance_cum_amounts() -> None:
    """Binance BTCUSDT-style brackets: 0.4 % to 50k, 0.5 % to 250k, 1 % to 1M; the published
    maintenance amounts ("cum") are 0, 50 and 1300."""
    inst = perp(
        leverage=20.0,
        margin_tiers=(MarginTier(50_000, 0.004, 125), MarginTier(250_000, 0.005, 100), MarginTier(1_000_000, 0.01, 50)),
    )
    assert inst.maintenance_bracket(40_000) == (0.004, 0.0)
    assert inst.maintenance_bracket(100_000) == (0.005, pytest.approx(50.0))
    assert inst.maintenance_bracket(300_000) == (0.01, pytest.approx(1_300.0))
    assert inst.maintenance_margin(300_000) == pytest.approx(300_000 * 0.01 - 1_300)
    # continuous at the tier edges
    assert inst.maintenance_margin(50_000) == pytest.approx(inst.maintenance_margin(50_000.0001), abs=1e-3)


def test_tier_max_leverage_denies_a_position_too_large_for_the_leverage() -> None:
    inst = perp(leverage=20.0, margin_tiers=(MarginTier(50_000, 0.004, 125), MarginTier(250_000, 0.005, 10)))
    kernel, strategy = opened_kernel(inst, 1_000_000.0, 3.0)  # 60k notional: tier 2 allows 10x only
    [denied] = strategy.denied
    assert "allows leverage 10 < the instrument's 20" in denied.reason


# ----------------------------------------------------------------------------- liquidation


def test_isolated_long_is_liquidated_below_its_hand_derived_price() -> None:
    """1 BTC long at 20000, 10x isolated: margin 2000. Liquidation where
    2000 + (P - 20000) = 0.005 P, P = 18000 / 0.995 = 18090.45... At 18080 the margin left is
    2000 - 1920 = 80, less than the 0.5 % fee (90.40): the fee takes those 80, no more."""
    inst = perp(margin_mode=MarginMode.ISOLATED)
    kernel, _ = opened_kernel(inst, 10_000.0, 1.0)
    iid = inst.instrument_id
    assert kernel.portfolio.position(iid) == 1.0
    account = kernel.portfolio.account
    assert isinstance(account, MarginAccount)
    expected = 18_000.0 / 0.995
    events: list[PositionLiquidated] = []
    kernel.bus.subscribe(PositionLiquidated, events.append)
    kernel.process(MarkPrice(iid, T0 + 2 * H + 1, T0 + 2 * H + 1, 18_100.0, math.nan))
    assert account.liquidation_price(iid) == pytest.approx(expected)
    assert events == [] and kernel.portfolio.position(iid) == 1.0
    kernel.process(MarkPrice(iid, T0 + 2 * H + 2, T0 + 2 * H + 2, 18_080.0, math.nan))
    [event] = events
    assert (event.quantity, event.price, event.fee) == (1.0, 18_080.0, pytest.approx(80.0))
    assert (event.mark_price, event.insurance_fund_cover) == (18_080.0, 0.0)
    assert event.liquidation_price == pytest.approx(expected)
    assert kernel.portfolio.position(iid) == 0.0
    # wallet: 10000 + (18080 - 20000) - 80 (no trading fees here): the position's margin lost, no more
    assert account.balance("USDT") == pytest.approx(8_000.0)
    assert kernel.portfolio.equity() == pytest.approx(8_000.0)
    assert kernel.result.fills[-1].reason == "liquidation"
    assert kernel.result.liquidations == [event]


def test_a_leverage_whose_initial_margin_is_below_the_maintenance_rate_is_refused() -> None:
    """At 150x an isolated long of notional N holds N / 150 = 0.667 % of it, below a 1 % maintenance
    rate: it was liquidated at its opening fill (all 16 entries of perp_xrp_funding at 150x with
    ``maintenance_rate: 0.01`` were). The venues cap leverage at 1 / rate (Binance's first XRPUSDT
    bracket: 0.5 %, 75x); 100x, whose 1 % equals the rate, is the largest accepted."""
    with pytest.raises(OrderError, match=r"leverage 150 .* 0\.6667% .* below its maintenance rate 1\.0000%: "
                       r"every position would be liquidated as it opens \(the largest leverage it allows is 100\)"):
        perp(leverage=150.0, maintenance_rate=0.01, margin_mode=MarginMode.ISOLATED)
    with pytest.raises(OrderError, match="below its maintenance rate 2.0000%"):
        perp(leverage=60.0, margin_tiers=(MarginTier(max_notional=10_000.0, maintenance_rate=0.02, max_leverage=125.0),))
    with pytest.raises(OrderError, match="leverage 60 .* below its maintenance rate"):
        Instrument("SIM", "BTCUSDT", tick_size=0.1, lot_size=0.001, margin=True, leverage=60.0, maintenance_rate=0.02)
    inst = perp(leverage=100.0, maintenance_rate=0.01, margin_mode=MarginMode.ISOLATED)
    kernel, _ = opened_kernel(inst, 10_000.0, 1.0)
    assert kernel.portfolio.position(inst.instrument_id) == 1.0 and kernel.result.liquidations == []


def test_cross_short_is_liquidated_where_the_wallet_runs_out() -> None:
    """1 BTC short at 20000, 20x cross, wallet 1000: 1000 - (P - 20000) = 0.005 P,
    P = 21000 / 1.005 = 20895.52... A bar close stands in for the mark (no MarkPrice). At 20900
    100 is left of the wallet, less than the 104.50 fee: the fee takes the 100."""
    inst = perp(leverage=20.0)
    kernel = Kernel([inst], venue_config=VenueConfig(fill_on="bars"), initial_cash=1_000.0)
    kernel.add_strategy(BuyOnce(inst.instrument_id, 1.0, OrderSide.SELL))
    iid = inst.instrument_id
    kernel.process(flat_bar(iid, 1, 20_000.0))
    kernel.process(flat_bar(iid, 2, 20_000.0))
    account = kernel.portfolio.account
    assert isinstance(account, MarginAccount)
    assert account.liquidation_price(iid) == pytest.approx(21_000.0 / 1.005)
    kernel.process(flat_bar(iid, 3, 20_890.0))
    assert kernel.portfolio.position(iid) == -1.0
    kernel.process(flat_bar(iid, 4, 20_900.0))
    assert kernel.portfolio.position(iid) == 0.0
    assert kernel.portfolio.equity() == pytest.approx(0.0, abs=1e-9)
    assert kernel.result.liquidations[0].fee == pytest.approx(100.0)


def test_an_isolated_long_gapped_beyond_its_bankruptcy_price_loses_exactly_its_margin() -> None:
    """1 BTC long at 20000, 10x isolated: margin 2000, bankruptcy price 20000 - 2000 = 18000.
    A mark gapping to 15000 would lose 5000 + 75 fee; the venue's insurance fund takes the
    position at 18000: the wallet loses the 2000 margin, no fee, the fund covers (18000 - 15000) * 1."""
    inst = perp(margin_mode=MarginMode.ISOLATED)
    kernel, _ = opened_kernel(inst, 10_000.0, 1.0)
    iid = inst.instrument_id
    kernel.process(MarkPrice(iid, T0 + 2 * H + 1, T0 + 2 * H + 1, 15_000.0, math.nan))
    [event] = kernel.result.liquidations
    assert (event.quantity, event.price, event.fee) == (1.0, pytest.approx(18_000.0), 0.0)
    assert (event.mark_price, event.insurance_fund_cover) == (15_000.0, pytest.approx(3_000.0))
    [fill] = [f for f in kernel.result.fills if f.reason == "liquidation"]
    assert (fill.price, fill.fee) == (pytest.approx(18_000.0), 0.0)
    account = kernel.portfolio.account
    assert isinstance(account, MarginAccount)
    assert account.balance("USDT") == pytest.approx(8_000.0, abs=1e-9)
    assert kernel.portfolio.equity() == pytest.approx(8_000.0, abs=1e-9)


def test_an_isolated_long_pays_its_funding_out_of_its_own_margin() -> None:
    """1 BTC long at 20000, 10x isolated: margin 2000. Five fundings at 1 % of a 20000 mark pay
    1000, which Binance takes from the isolated wallet (its ``FUNDING_FEE`` update carries the
    isolated position): 1000 is left, so the liquidation price is
    ``(20000 - 1000) / (1 - 0.005)`` = 19095.48 and a mark of 19000 liquidates, the position
    losing exactly its margin. The cross balance does not pay the funding."""
    inst = perp(margin_mode=MarginMode.ISOLATED)
    kernel, _ = opened_kernel(inst, 10_000.0, 1.0)
    iid = inst.instrument_id
    account = kernel.portfolio.account
    assert isinstance(account, MarginAccount)
    available = account.available("USDT")
    for n in range(5):
        t = T0 + (3 + n) * H
        kernel.process(MarkPrice(iid, t, t, 20_000.0, math.nan))
        kernel.process(FundingRate(iid, t, t, 0.01, t))
    assert kernel.portfolio.funding_paid == pytest.approx(1_000.0)
    assert account.initial_margin("USDT") == pytest.approx(1_000.0)
    assert account.available("USDT") == pytest.approx(available)
    assert account.liquidation_price(iid) == pytest.approx(19_000.0 / 0.995)
    t = T0 + 9 * H
    kernel.process(MarkPrice(iid, t, t, 19_000.0, math.nan))
    [event] = kernel.result.liquidations
    assert (event.quantity, event.price, event.fee) == (1.0, 19_000.0, 0.0)
    assert account.balance("USDT") == pytest.approx(8_000.0)


def test_a_cross_short_gapped_beyond_its_bankruptcy_price_leaves_the_wallet_at_zero() -> None:
    """1 BTC short at 20000, 20x cross, wallet 1000: bankruptcy at 21000. A bar closing at 25000
    would leave 1000 - 5000 - 125 = -4125; the fund takes the position at 21000 and covers
    (25000 - 21000) * 1 = 4000: the wallet ends at 0, never below."""
    inst = perp(leverage=20.0)
    kernel = Kernel([inst], venue_config=VenueConfig(fill_on="bars"), initial_cash=1_000.0)
    kernel.add_strategy(BuyOnce(inst.instrument_id, 1.0, OrderSide.SELL))
    iid = inst.instrument_id
    for k, px in enumerate((20_000.0, 20_000.0, 25_000.0), start=1):
        kernel.process(flat_bar(iid, k, px))
    assert kernel.portfolio.position(iid) == 0.0
    [event] = kernel.result.liquidations
    assert (event.price, event.fee) == (pytest.approx(21_000.0), 0.0)
    assert event.insurance_fund_cover == pytest.approx(4_000.0)
    account = kernel.portfolio.account
    assert isinstance(account, MarginAccount)
    assert account.balance("USDT") == pytest.approx(0.0, abs=1e-9)
    assert kernel.portfolio.equity() == pytest.approx(0.0, abs=1e-9)
    kernel.stop()
    metrics = compute_metrics(kernel.result)
    assert (metrics["liquidations"], metrics["insurance_fund_cover"]) == (1, pytest.approx(4_000.0))


def test_cross_positions_gapped_together_share_the_cover_by_their_losses_and_spare_isolated_margin() -> None:
    """USDT 10000 backs a cross long of 1 BTC at 20000 (mark 12000: -8000), a cross short of 10 ETH at
    1000 (mark 1300: -3000) and an isolated long of 1 SOL at 100 with margin 10. Cross balance:
    10000 - 10 - 8000 - 3000 = -1010. The fund covers 1010, 1010 * 8/11 = 734.5454... on BTC
    (closed at 12734.5454...) and 1010 * 3/11 = 275.4545... on ETH (closed at 1300 - 27.5454...);
    the wallet keeps the isolated margin, 10, and nothing else."""
    btc, eth = perp(leverage=2.0), perp(symbol="ETHUSDT", base="ETH", leverage=10.0)
    sol = perp(symbol="SOLUSDT", base="SOL", leverage=10.0, margin_mode=MarginMode.ISOLATED)
    insts = {i.instrument_id: i for i in (btc, eth, sol)}
    positions = {iid: Position(iid, 1e-9, 1.0) for iid in insts}
    account = MarginAccount(insts, {"USDT": 10_000.0}, positions)
    for inst, side, qty, px, mark in ((btc, OrderSide.BUY, 1.0, 20_000.0, 12_000.0),
                                      (eth, OrderSide.SELL, 10.0, 1_000.0, 1_300.0),
                                      (sol, OrderSide.BUY, 1.0, 100.0, 100.0)):  # fmt: skip
        iid = inst.instrument_id
        account.apply_fill(OrderFilled("s", iid, "c", "v", "t", side, qty, px, 0.0, Liquidity.TAKER, 0, 0))
        pos = positions[iid]
        pos.quantity, pos.avg_price, pos.last_price = (qty if side > 0 else -qty), px, mark
    assert account.cross_balance("USDT") == pytest.approx(-1_010.0)
    assert account.liquidations() == [btc.instrument_id, eth.instrument_id]
    closes = account.liquidation_closes(account.liquidations())
    assert closes == [
        (btc.instrument_id, pytest.approx(12_000.0 + 1_010.0 * 8 / 11), 0.0, pytest.approx(1_010.0 * 8 / 11)),
        (eth.instrument_id, pytest.approx(1_300.0 - 1_010.0 * 3 / 11 / 10), 0.0, pytest.approx(1_010.0 * 3 / 11)),
    ]
    for iid, price, fee, _ in closes:
        pos = positions[iid]
        side = OrderSide.SELL if pos.quantity > 0 else OrderSide.BUY
        qty = abs(pos.quantity)
        account.apply_fill(OrderFilled("s", iid, "l", "v", "l", side, qty, price, fee, Liquidity.TAKER, 0, 0))
        pos.quantity = 0.0
    assert account.balance("USDT") == pytest.approx(10.0)
    assert account.cross_balance("USDT") == pytest.approx(0.0, abs=1e-9)


XRP_TIERS = (MarginTier(10_000, 0.005, 75), MarginTier(50_000, 0.01, 50), MarginTier(200_000, 0.02, 25),
             MarginTier(1_000_000, 0.05, 10))  # fmt: skip


def xrp_account(inst: Instrument, usdt: float, qty: float) -> tuple[MarginAccount, Position]:
    """A margin account holding ``qty`` (signed) of ``inst`` entered and marked at 1.0."""
    iid = inst.instrument_id
    pos = Position(iid, 1e-9, inst.contract_size)
    account = MarginAccount({iid: inst}, {"USDT": usdt}, {iid: pos})
    side = OrderSide.BUY if qty > 0 else OrderSide.SELL
    account.apply_fill(OrderFilled("s", iid, "c", "v", "t", side, abs(qty), 1.0, 0.0, Liquidity.TAKER, 0, 0))
    pos.quantity, pos.avg_price, pos.last_price = qty, 1.0, 1.0
    return account, pos


def test_a_tiered_liquidation_price_beyond_the_current_tier_uses_the_tier_it_lies_in() -> None:
    """Cross short of 9,000 XRP at 1.0 (tier 1, 0.5 %) on 3,000 USDT: by P = 1.33 its notional is in
    tier 2 (1 %, amount 50): 3,000 - 9,000 (P - 1) = 0.01 * 9,000 P - 50, P = 12,050 / 9,090 = 1.32563...
    Before, tier 1's rate gave 12,000 / 9,045 = 1.32670, where the position is already liquidated."""
    inst = perp(symbol="XRPUSDT", base="XRP", tick_size=0.0001, lot_size=0.1, leverage=5.0, margin_tiers=XRP_TIERS)
    account, pos = xrp_account(inst, 3_000.0, -9_000.0)
    price = account.liquidation_price(inst.instrument_id)
    assert price == pytest.approx(12_050.0 / 9_090.0, rel=1e-12)
    pos.last_price = 1.3256
    assert account.liquidations() == []
    pos.last_price = 1.3257
    assert account.liquidations() == [inst.instrument_id]


@pytest.mark.parametrize(
    ("kind", "usdt", "qty", "lo", "hi"),
    [
        (InstrumentKind.PERPETUAL, 45_000.0, 60_000.0, 0.05, 1.0),  # tier 3 at entry, liquidated in tier 2
        (InstrumentKind.PERPETUAL, 30_000.0, 100_000.0, 0.3, 1.0),  # stays in tier 3
        (InstrumentKind.PERPETUAL, 2_000.0, -9_000.0, 1.0, 1.5),
        (InstrumentKind.SPOT, 10_000.0, -9_000.0, 1.0, 3.0),  # margin spot: tier 1 at entry, liquidated in tier 2
    ],
)
def test_a_tiered_liquidation_price_is_where_a_price_scan_first_breaches(
    kind: InstrumentKind, usdt: float, qty: float, lo: float, hi: float
) -> None:
    """Brute force: the account's own breach test over a fine grid of marks starts at the formula's price."""
    spot = kind == InstrumentKind.SPOT
    inst = perp(symbol="XRPUSDT", base="XRP", kind=kind, margin=spot, tick_size=0.0001, lot_size=0.1,
                leverage=1.0 if spot else 5.0, margin_tiers=XRP_TIERS)  # fmt: skip
    account, pos = xrp_account(inst, usdt, qty)
    price = account.liquidation_price(inst.instrument_id)
    grid = np.linspace(lo, hi, 100_001)
    breached = []
    for mark in grid.tolist():
        pos.last_price = mark
        breached.append(bool(account.liquidations()))
    step = grid[1] - grid[0]
    edge = grid[np.flatnonzero(breached)].max() if qty > 0 else grid[np.flatnonzero(breached)].min()
    assert abs(edge - price) <= step


#: OKX 1INCHUSDT swap position tiers (announcement of 9 June 2022), by size in contracts of 1 1INCH.
OKX_1INCH_TIERS = tuple(
    MarginTier(math.inf, rate, lever, max_size=size)
    for size, rate, lever in ((1_000, 0.01, 75), (2_500, 0.015, 50), (65_000, 0.02, 20), (130_000, 0.025, 18.18))
)


def okx_swap(**overrides: Any) -> Instrument:
    fields: dict[str, Any] = dict(
        venue="OKX", symbol="1INCH-USDT-SWAP", base="1INCH", tick_size=0.0001, lot_size=1.0, taker_fee=0.0005,
        maintenance_close_fee=CloseFee.MARK, margin_tiers=OKX_1INCH_TIERS,
    )
    fields.update(overrides)
    return perp(**fields)


def test_an_okx_liquidation_price_uses_the_tier_of_the_positions_size() -> None:
    """Isolated long of 2,000 contracts (tier 2 by size: 1.5 %) entered at 0.5, 20x: margin 2,000 * 0.5 / 20 =
    50 USDT. OKX liquidates where margin plus PnL reaches the maintenance margin plus the taker fee at
    the mark: 50 + 2,000 (P - 0.5) = (0.015 + 0.0005) 2,000 P, P = 950 / 1,969 = 0.48248... (its notional,
    about 965 USDT, would be tier 1 by notional: 1 %, P = 950 / 1,979)."""
    inst = okx_swap(leverage=20.0, margin_mode=MarginMode.ISOLATED)
    iid = inst.instrument_id
    pos = Position(iid, 1e-9, inst.contract_size)
    account = MarginAccount({iid: inst}, {"USDT": 1_000.0}, {iid: pos})
    account.apply_fill(OrderFilled("s", iid, "c", "v", "t", OrderSide.BUY, 2_000.0, 0.5, 0.0, Liquidity.TAKER, 0, 0))
    pos.quantity, pos.avg_price, pos.last_price = 2_000.0, 0.5, 0.5
    price = account.liquidation_price(iid)
    assert price == pytest.approx(950.0 / 1_969.0, rel=1e-12)
    pos.last_price = price * (1.0 + 1e-9)
    assert account.liquidations() == [] and not account.breached(iid)
    pos.last_price = price * (1.0 - 1e-9)
    assert account.liquidations() == [iid] and account.breached(iid)


def test_an_okx_order_into_a_tier_by_size_allowing_less_leverage_is_denied() -> None:
    """75x is tier 1's leverage (up to 1,000 contracts); 1,001 contracts are tier 2, which allows 50x,
    whatever their notional (0.5 USDT each: 500.5 USDT)."""
    inst = okx_swap(leverage=75.0)
    kernel, strategy = opened_kernel(inst, 10_000.0, 1_001.0, px=0.5)
    [denied] = strategy.denied
    assert "makes a position of 1001 contracts, whose tier allows leverage 50 < the instrument's 75" in denied.reason
    kernel, strategy = opened_kernel(inst, 10_000.0, 1_000.0, px=0.5)
    assert strategy.denied == [] and kernel.portfolio.position(inst.instrument_id) == 1_000.0


class RestingLimits(Strategy):
    """Submits ``orders`` (side, quantity, limit price) on its first bar, each left resting below or above the market."""

    def __init__(self, iid: str, orders: list[tuple[OrderSide, float, float]]) -> None:
        super().__init__(iid, strategy_id="resting")
        self.orders = orders
        self.ids: list[str] = []
        self.denied: dict[str, str] = {}

    def on_bar(self, bar: Bar) -> None:
        if not self.ids:
            self.ids = [self.submit_limit(bar.instrument_id, side, qty, px) for side, qty, px in self.orders]

    def on_order_denied(self, event: OrderDenied) -> None:
        self.denied[event.client_order_id] = event.reason


def test_orders_each_under_a_tier_boundary_count_together_toward_the_tier() -> None:
    """Binance BTCUSDT-style brackets: 20x up to 50,000 USDT of notional, 10x above; the instrument at 20x.
    Bybit chooses the tier by "the position value and the active order value" (help center, Risk Limit),
    Binance refuses an order beyond the maximum position at the leverage (-2027) with the open orders counted.
    With 2 BTC bid at 19,000 (38,000) resting, a second 2 BTC bid reaches 4 x 19,000 = 76,000: tier 2, 10x < 20x,
    denied; a 0.6 BTC bid reaches 2.6 x 19,000 = 49,400, tier 1, passes. The 2 BTC offer at 21,000 (the
    other side) does not count toward a bid. Each bid alone was under the boundary: before the open orders
    counted, both 2 BTC bids passed and could fill to 76,000 of notional at 20x."""
    tiers = (MarginTier(50_000, 0.004, 20), MarginTier(250_000, 0.005, 10))
    inst = perp(leverage=20.0, margin_tiers=tiers)
    iid = inst.instrument_id
    kernel = Kernel([inst], venue_config=VenueConfig(fill_on="bars"), initial_cash=100_000.0)
    buy, sell = OrderSide.BUY, OrderSide.SELL
    strategy = RestingLimits(iid, [(buy, 2.0, 19_000.0), (sell, 2.0, 21_000.0), (buy, 2.0, 19_000.0),
                                   (buy, 0.6, 19_000.0)])  # fmt: skip
    kernel.add_strategy(strategy)
    kernel.process(flat_bar(iid, 1, 20_000.0))
    first, offer, second, small = strategy.ids
    assert list(strategy.denied) == [second]
    assert strategy.denied[second] == (
        f"margin: BUY 2.0 {iid} makes a position of notional 76000 with the working orders on its side (2), "
        "whose tier allows leverage 10 < the instrument's 20"
    )
    assert {o.client_order_id for o in kernel.orders.open_orders(iid)} == {first, offer, small}


# ----------------------------------------------------------------------------- funding


def test_funding_long_pays_short_receives_at_mark() -> None:
    inst = perp(contract_size=0.01, lot_size=1.0)  # OKX-style contracts of 0.01 BTC
    kernel, _ = opened_kernel(inst, 10_000.0, 30.0)  # 30 contracts = 0.3 BTC, 6000 notional, 600 margin
    iid = inst.instrument_id
    kernel.process(MarkPrice(iid, T0 + 2 * H + 5, T0 + 2 * H + 5, 21_000.0, math.nan))
    # announced for later: not settled yet
    kernel.process(FundingRate(iid, T0 + 2 * H + 6, T0 + 2 * H + 6, 0.0001, T0 + 3 * H))
    assert kernel.result.funding == []
    kernel.process(MarkPrice(iid, T0 + 3 * H, T0 + 3 * H, 21_000.0, math.nan))
    [paid] = kernel.result.funding
    assert paid.payment == pytest.approx(30 * 0.01 * 21_000.0 * 0.0001)  # 0.63
    assert paid.ts_event == T0 + 3 * H
    assert kernel.portfolio.funding_paid == pytest.approx(0.63)
    # unrealised at mark: 0.3 BTC * 1000
    assert kernel.portfolio.unrealized_pnl() == pytest.approx(300.0)
    assert kernel.portfolio.equity() == pytest.approx(10_000.0 + 300.0 - 0.63)


def _hold_xrp(
    start: str, end: str, quantity: float, cash: float = 10_000.0, leverage: float = 5.0
) -> tuple[Kernel, int]:
    """Buy ``quantity`` XRP on the first 5 m bar of freqtrade's XRP/USDT futures data, hold to ``end``."""
    inst = Instrument(
        venue="BINANCE", symbol="XRPUSDT", kind=InstrumentKind.PERPETUAL, base="XRP", quote="USDT",
        tick_size=0.0001, lot_size=0.1, taker_fee=0.0004, leverage=leverage,
    )
    iid = inst.instrument_id
    start_ns, end_ns = pd.Timestamp(start).value, pd.Timestamp(end).value
    kernel = Kernel([inst], venue_config=VenueConfig(fill_on="bars"), initial_cash=cash, equity_interval_ns=H)
    kernel.add_strategy(BuyOnce(iid, quantity))
    data = [
        m
        for m in read_mark_prices(FIX / "XRP_USDT_USDT-1h-mark.feather", iid)
        + read_funding_rates(FIX / "XRP_USDT_USDT-8h-funding_rate.feather", iid)
        if start_ns <= m.ts_init < end_ns
    ]
    kernel.feed_perpetual_data(data)
    source = ReplaySource.from_file(FIX / "XRP_USDT_USDT-5m-futures.parquet", iid, "bars", bar_time="open")
    kernel.run(Replay([source], start_ns=start_ns, end_ns=end_ns - 1))
    return kernel, end_ns


def test_funding_on_real_xrp_data_matches_pandas_reference() -> None:
    """Hold 10000 XRP long from 2021-11-17 through 2021-11-19 09:00 (Binance USD-M data).

    Reference, computed here with pandas from the raw files: every funding row inside the
    holding window pays ``quantity * mark * rate``, the mark being the open of the latest mark
    bar at or before the funding time (``merge_asof`` backward).
    """
    qty = 10_000.0
    kernel, end_ns = _hold_xrp("2021-11-17T00:00:00Z", "2021-11-19T09:30:00Z", qty)
    [entry] = [f for f in kernel.result.fills if f.reason == "entry"]
    funding = pd.read_feather(FIX / "XRP_USDT_USDT-8h-funding_rate.feather")[["date", "open"]]
    marks = pd.read_feather(FIX / "XRP_USDT_USDT-1h-mark.feather")[["date", "open"]]
    funding = funding.rename(columns={"open": "rate"})
    marks = marks.rename(columns={"open": "mark"})
    inside = funding[(funding["date"].astype("int64") > entry.ts_event) & (funding["date"].astype("int64") < end_ns)]
    ref = pd.merge_asof(inside.sort_values("date"), marks.sort_values("date"), on="date", direction="backward")
    ref["payment"] = qty * ref["mark"] * ref["rate"]
    assert len(ref) == 5  # 18th 00/08/16 h, 19th 00/08 h
    got = kernel.result.funding
    assert [f.ts_event for f in got] == ref["date"].astype("int64").tolist()
    assert [f.mark_price for f in got] == pytest.approx(ref["mark"].tolist())
    assert [f.payment for f in got] == pytest.approx(ref["payment"].tolist())
    assert kernel.portfolio.funding_paid == pytest.approx(ref["payment"].sum())
    # the equity identity with funding, at the end and at every sample
    pf = kernel.portfolio
    assert pf.equity() == pytest.approx(
        10_000.0 + pf.realized_pnl + pf.unrealized_pnl() - pf.fees_paid - pf.funding_paid, rel=1e-12
    )
    for s in kernel.result.equity:
        assert s.equity == pytest.approx(
            10_000.0 + s.realized_pnl + s.unrealized_pnl - s.fees_paid - s.funding_paid, rel=1e-12
        )
    # margin at mark in the samples: 10000 XRP * mark / 5
    last = kernel.result.equity[-1]
    assert last.margin == pytest.approx(qty * pf.last_price(entry.instrument_id) / 5.0)
    assert pf.last_price(entry.instrument_id) == marks.loc[marks["date"].astype("int64") < end_ns, "mark"].iloc[-1]


def test_liquidation_in_a_backtest_on_real_marks_matches_a_pandas_reference() -> None:
    """10000 XRP long at 50x on 300 USDT (the backtest loop, real Binance marks).

    Reference: after the entry, the first hourly mark (mark bar open) at which
    ``wallet - funding paid so far + 10000 * (mark - entry) < 0.005 * 10000 * mark`` is where
    the position is liquidated, at that mark, with a 0.5 % fee on its notional.
    """
    qty = 10_000.0
    kernel, _ = _hold_xrp("2021-11-17T00:00:00Z", "2021-11-19T09:30:00Z", qty, cash=300.0, leverage=50.0)
    [entry] = [f for f in kernel.result.fills if f.reason == "entry"]
    wallet = 300.0 - entry.fee
    marks = pd.read_feather(FIX / "XRP_USDT_USDT-1h-mark.feather")[["date", "open"]]
    marks["ts"] = marks["date"].astype("int64")
    funding = pd.read_feather(FIX / "XRP_USDT_USDT-8h-funding_rate.feather")[["date", "open"]]
    funding = funding.rename(columns={"open": "rate"})
    funding = pd.merge_asof(funding, marks[["date", "open"]], on="date", direction="backward")
    funding["payment"] = qty * funding["open"] * funding["rate"]
    funding["ts"] = funding["date"].astype("int64")
    after = marks[marks["ts"] > entry.ts_event].copy()
    paid = [funding.loc[(funding["ts"] > entry.ts_event) & (funding["ts"] < t), "payment"].sum() for t in after["ts"]]
    after["equity"] = wallet - pd.Series(paid, index=after.index) + qty * (after["open"] - entry.price)
    breach = after[after["equity"] < 0.005 * qty * after["open"]].iloc[0]
    assert (funding["ts"] < breach["ts"]).sum() == 2  # two fundings were paid before it
    [event] = kernel.result.liquidations
    assert (event.ts_event, event.mark_price, event.quantity) == (breach["ts"], breach["open"], qty)
    # the mark gapped beyond the bankruptcy price, where the margin is used up: the insurance fund
    # takes the position there, with no fee, and covers the rest
    assert breach["equity"] < 0.0
    bankruptcy = entry.price - (breach["equity"] - qty * (breach["open"] - entry.price)) / qty
    assert event.price == pytest.approx(bankruptcy, rel=1e-12) and event.fee == 0.0
    assert event.insurance_fund_cover == pytest.approx(-breach["equity"], rel=1e-9)
    assert kernel.portfolio.account.balance("USDT") == pytest.approx(0.0, abs=1e-9)
    # the documented liquidation price lies between the last safe mark and the breaching one
    safe = after[after["ts"] < breach["ts"]]["open"].iloc[-1]
    assert breach["open"] < event.liquidation_price < safe
    assert kernel.portfolio.position(entry.instrument_id) == 0.0
    assert kernel.result.fills[-1].reason == "liquidation"


def test_marks_and_funding_after_a_cut_do_not_change_the_run_before_it() -> None:
    """No lookahead: the samples before 2021-11-18 12:00 are the same whether the run stops there or goes on."""
    full, _ = _hold_xrp("2021-11-17T00:00:00Z", "2021-11-19T09:30:00Z", 10_000.0)
    cut, cut_ns = _hold_xrp("2021-11-17T00:00:00Z", "2021-11-18T12:00:00Z", 10_000.0)
    before = [s for s in full.result.equity if s.ts < cut_ns - H]
    assert before and before == [s for s in cut.result.equity if s.ts < cut_ns - H]
    assert [f for f in full.result.funding if f.ts_event < cut_ns] == cut.result.funding


# ----------------------------------------------------------------------------- the equity identity

_op = st.one_of(
    st.tuples(st.just("fill"), st.sampled_from([1, -1]), st.integers(1, 50), st.floats(100.0, 200.0), st.floats(0, 2)),
    st.tuples(st.just("mark"), st.floats(50.0, 300.0)),
    st.tuples(st.just("mark_price"), st.floats(50.0, 300.0)),
    st.tuples(st.just("funding"), st.floats(-0.003, 0.003)),
)


@settings(max_examples=200, deadline=None)
@given(ops=st.lists(_op, max_size=40))
def test_equity_is_cash_plus_realised_minus_fees_minus_funding_plus_unrealised_at_mark(ops: list[tuple]) -> None:
    inst = perp(contract_size=0.1, lot_size=1.0)
    iid = inst.instrument_id
    pf = Portfolio({iid: inst}, 5_000.0)
    account = pf.account
    assert isinstance(account, MarginAccount)
    for n, op in enumerate(ops):
        if op[0] == "fill":
            _, side, qty, px, fee = op
            pf.apply_fill(
                OrderFilled("s", iid, f"c{n}", f"v{n}", f"t{n}", OrderSide(side), float(qty), px, fee, Liquidity.TAKER, n, n)
            )
        elif op[0] == "mark":
            pf.mark(iid, op[1])
        elif op[0] == "mark_price":
            pf.mark_price(iid, op[1])
        else:
            pf.apply_funding(iid, op[1])
        expected = 5_000.0 + pf.realized_pnl - pf.fees_paid - pf.funding_paid + pf.unrealized_pnl()
        assert pf.equity() == pytest.approx(expected, rel=1e-9, abs=1e-6)
        # the wallet never holds the notional: wallet + unrealised at mark is the equity
        assert account.balance("USDT") + account.unrealized(iid) == pytest.approx(pf.equity(), rel=1e-9, abs=1e-6)


# ----------------------------------------------------------------------------- inputs


def test_mark_file_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "marks.csv"
    bad.write_text("date,mark_price\n2021-11-17T00:00:00+0000,1.0\n2021-11-16T00:00:00+0000,1.0\n")
    with pytest.raises(DataError, match="marks.csv row 2: times must strictly increase"):
        read_mark_prices(bad, "X.SIM")
    with pytest.raises(DataError, match="no such file"):
        read_funding_rates(tmp_path / "missing.feather", "X.SIM")
    nocol = tmp_path / "f.csv"
    nocol.write_text("date,x\n2021-11-17T00:00:00+0000,1.0\n")
    with pytest.raises(DataError, match="no value column"):
        read_funding_rates(nocol, "X.SIM")


def test_a_csv_date_that_is_not_iso_names_its_row(tmp_path: Path) -> None:
    """Before, a date pyarrow could not read as ISO text (one row of many) raised ArrowInvalid."""
    bad = tmp_path / "marks.csv"
    bad.write_text(
        "date,mark_price\n2021-11-17T00:00:00+00:00,1.0\n2021-11-17 01:00,1.1\n2021-11-17T02:00:00+00:00,1.2\n"
    )
    with pytest.raises(DataError, match=r"marks.csv row 2: date '2021-11-17 01:00' is not an ISO time with its offset"):
        read_mark_prices(bad, "X.SIM")
    funding = tmp_path / "funding.csv"
    funding.write_text("date,rate\n2021-11-17T00:00:00+00:00,0.0001\n17/11/2021 08:00,0.0001\n")
    with pytest.raises(DataError, match=r"funding.csv row 2: date '17/11/2021 08:00'"):
        read_funding_rates(funding, "X.SIM")
    good = tmp_path / "good.csv"
    good.write_text("date,mark_price\n2021-11-17T00:00:00+00:00,1.0\n2021-11-17T02:00:00+01:00,1.1\n")
    assert [m.ts_event for m in read_mark_prices(good, "X.SIM")] == [1637107200 * 10**9, 1637110800 * 10**9]


def test_a_funding_rate_beyond_every_venues_cap_is_refused_naming_the_row(tmp_path: Path) -> None:
    """A rate of 0.5 (a percent written as a fraction: 50 % of the notional at each funding) was accepted, only
    |rate| >= 1 refused; 0.03 (Binance's largest cap, 3 %) still passes, 0.05 + 0.001 does not."""
    funding = tmp_path / "funding.csv"
    funding.write_text("date,rate\n2021-11-17T00:00:00+00:00,0.0001\n2021-11-17T08:00:00+00:00,-0.03\n")
    assert [f.rate for f in read_funding_rates(funding, "X.SIM")] == [0.0001, -0.03]
    for rate in ("0.5", "-0.051"):
        funding.write_text(f"date,rate\n2021-11-17T00:00:00+00:00,0.0001\n2021-11-17T08:00:00+00:00,{rate}\n")
        with pytest.raises(
            DataError, match=rf"funding.csv row 2: funding rate {rate} at 2021-11-17T08:00:00Z is not a plausible funding "
            r"rate: beyond ±0.05 per funding interval"
        ):
            read_funding_rates(funding, "X.SIM")


def test_a_funding_rate_beyond_every_venues_cap_stops_the_kernel_naming_instrument_time_and_rate() -> None:
    """A catalog's funding_rates row or a feed's message reaches the account through the kernel: a rate of 0.5 on
    the long of 0.1 at 20,000 paid 1,000 (half its notional); now it stops the run with a DataError."""
    inst = perp()
    kernel, _ = opened_kernel(inst, 10_000.0, 0.1)
    iid = inst.instrument_id
    now = T0 + 2 * H + 10
    with pytest.raises(DataError, match=rf"{iid}: the FundingRate at ts_init {now} .*: funding rate 0.5 is not a plausible funding rate"):
        kernel.process(FundingRate(iid, now, now, 0.5, now))
    assert kernel.result.funding == []


def test_marks_and_funding_published_on_the_bus_reach_the_account() -> None:
    """The paper/live node publishes the MarkPrice and FundingRate its feeds parse on the bus
    (it does not call process): the account must see them there too."""
    inst = perp()
    kernel, _ = opened_kernel(inst, 10_000.0, 0.1)
    iid = inst.instrument_id
    now = T0 + 2 * H + 10
    kernel.bus.publish(MarkPrice(iid, now, now, 21_000.0, math.nan))
    assert kernel.portfolio.last_price(iid) == 21_000.0
    # a later bar close no longer values the position: the mark does
    kernel.process(flat_bar(iid, 3, 20_500.0))
    assert kernel.portfolio.last_price(iid) == 21_000.0
    kernel.bus.publish(FundingRate(iid, now + 1, now + 1, -0.0002, now + 1))
    [paid] = kernel.result.funding
    assert paid.payment == pytest.approx(0.1 * 21_000.0 * -0.0002)  # a long receives a negative rate
    assert kernel.portfolio.equity() == pytest.approx(10_000.0 + 100.0 + 0.42)


@pytest.mark.parametrize("lean", [False, True])
def test_announced_funding_settles_in_a_backtest_run_as_in_process(tmp_path: Path, lean: bool) -> None:
    """Funding announced an hour ahead, no mark price: the bar at the funding time settles it in both paths.

    The batch loops of ``run`` never settled it: only a later mark or funding message did, and
    here none comes.
    """
    inst = perp()
    iid = inst.instrument_id
    closes = [20_000.0 + 10.0 * k for k in range(1, 201)]
    source = hourly_bars(tmp_path, iid, closes)
    announced = FundingRate(iid, T0 + 4 * H + 1, T0 + 4 * H + 1, 0.0005, T0 + 6 * H)

    def kernel() -> Kernel:
        k = Kernel([inst], venue_config=VenueConfig(fill_on="bars"), initial_cash=10_000.0)
        k.add_strategy(HoldAfterFirstBar(iid, 0.1) if lean else BuyOnce(iid, 0.1))
        k.feed_perpetual_data([announced])
        return k

    ran, processed = run_and_process(kernel, source)
    [paid] = ran.result.funding
    assert paid == processed.result.funding[0] and len(processed.result.funding) == 1
    assert (paid.ts_event, paid.ts_init, paid.mark_price) == (T0 + 6 * H, T0 + 6 * H, closes[5])
    assert paid.payment == pytest.approx(0.1 * closes[5] * 0.0005)
    assert ran.result.equity == processed.result.equity


def test_an_order_after_a_mark_equal_to_the_close_is_checked_at_the_close(tmp_path: Path) -> None:
    """A run's risk gate hears every close, also one equal to the position's mark price.

    Nothing works between the entry and bar 150, so the loop tells the gate no price until the
    order's catch-up. That catch-up told it only prices that differ from the position's last
    price, which is the mark for a position valued at marks: bar 150's close, equal to the mark
    just before it, went unheard, and the order was checked at bar 149's close (249 <= 249.5:
    accepted, where ``process`` denies it).
    """
    inst = perp()
    iid = inst.instrument_id
    closes = [100.0 + k for k in range(1, 201)]
    source = hourly_bars(tmp_path, iid, closes)
    marks = [MarkPrice(iid, T0 + k * H - 1, T0 + k * H - 1, closes[k - 1], math.nan) for k in (100, 150)]

    class BuyTwice(Strategy):
        def __init__(self) -> None:
            super().__init__(iid, strategy_id="twice")
            self.n = 0

        def on_bar(self, bar: Bar) -> None:
            self.n += 1
            if self.n in (1, 150):
                self.submit_market(iid, OrderSide.BUY, 0.1 if self.n == 1 else 1.0, reason="buy")

    def kernel() -> Kernel:
        k = Kernel([inst], venue_config=VenueConfig(fill_on="bars"), initial_cash=10_000.0,
                   risk_config=RiskConfig(max_order_notional=249.5))  # fmt: skip
        k.add_strategy(BuyTwice())
        k.feed_perpetual_data(marks)
        return k

    ran, processed = run_and_process(kernel, source)
    assert [d.reason for d in ran.result.denials] == ["max_order_notional: 250.0 > 249.5"]
    assert [d.reason for d in processed.result.denials] == ["max_order_notional: 250.0 > 249.5"]
    assert len(ran.result.fills) == 1


def test_announced_funding_settles_on_the_first_message_at_its_time_without_marks() -> None:
    """No MarkPrice at all: the bar close is the mark, and a bar at the funding time settles it."""
    inst = perp()
    kernel, _ = opened_kernel(inst, 10_000.0, 0.1)
    iid = inst.instrument_id
    kernel.process(FundingRate(iid, T0 + 2 * H + 1, T0 + 2 * H + 1, 0.0005, T0 + 3 * H))
    kernel.process(Bar(iid, T0 + 3 * H - 1, T0 + 3 * H - 1, 20_000.0, 20_000.0, 20_000.0, 20_000.0, 1.0))
    assert kernel.result.funding == []
    kernel.process(flat_bar(iid, 3, 19_000.0))
    [paid] = kernel.result.funding
    # the bar stamped at the funding time closes then: its close is the price at that time
    assert (paid.mark_price, paid.payment) == (19_000.0, pytest.approx(0.1 * 19_000.0 * 0.0005))


def test_a_funding_is_settled_when_the_next_announcement_is_the_first_message_after_its_time() -> None:
    """0.1 BTC long marked at 20000; 0.1 % announced for T+8h. The first message after T+8h is the
    announcement of T+16h (a funding-rate channel that speaks first): T+8h's 0.1 % is paid,
    0.1 * 20000 * 0.001 = 2, before the new rate is recorded. Before, the new announcement replaced
    the due one and T+8h was never paid. A late repeat of T+16h after it is settled pays nothing."""
    inst = perp()
    kernel, _ = opened_kernel(inst, 10_000.0, 0.1)
    iid = inst.instrument_id
    t = T0 + 2 * H
    kernel.process(MarkPrice(iid, t + 1, t + 1, 20_000.0, math.nan))
    kernel.process(FundingRate(iid, t + 2, t + 2, 0.001, t + 8 * H))
    kernel.process(FundingRate(iid, t + 8 * H + 5, t + 8 * H + 5, 0.002, t + 16 * H))
    [paid] = kernel.result.funding
    assert (paid.ts_event, paid.rate, paid.payment) == (t + 8 * H, 0.001, pytest.approx(2.0))
    kernel.process(FundingRate(iid, t + 16 * H + 5, t + 16 * H + 5, 0.002, t + 16 * H))
    kernel.process(FundingRate(iid, t + 16 * H + 6, t + 16 * H + 6, 0.002, t + 16 * H))
    assert [(f.ts_event, f.payment) for f in kernel.result.funding] == [
        (t + 8 * H, pytest.approx(2.0)), (t + 16 * H, pytest.approx(4.0))
    ]
    assert kernel.portfolio.funding_paid == pytest.approx(6.0)


def test_funding_is_paid_on_the_position_held_at_its_time_not_after_the_first_trade_s_fill() -> None:
    """Mark 20,000, 0.1 % announced for T and again for T + 8h. The first trade after T fills a
    resting bid of 1 BTC: flat at T, the account pays nothing (it paid 1 * 20000 * 0.001 = 20 on
    the position the trade opened). The first trade after T + 8h fills a resting ask of the 1 BTC:
    long at T + 8h, the account pays 20 (it paid nothing on the position the trade closed)."""
    inst = perp()
    iid = inst.instrument_id

    class RestingOrders(Strategy):
        def on_trade(self, trade: Trade) -> None:
            if trade.trade_id == "1":
                self.submit_limit(iid, OrderSide.BUY, 1.0, 19_900.0, reason="bid")
            elif trade.trade_id == "3":
                self.submit_limit(iid, OrderSide.SELL, 1.0, 20_100.0, reason="ask")

    kernel = Kernel([inst], venue_config=VenueConfig(fill_on="trades"), initial_cash=10_000.0)
    kernel.add_strategy(RestingOrders(iid, strategy_id="resting"))
    t = T0 + 8 * H
    kernel.process(MarkPrice(iid, T0, T0, 20_000.0, math.nan))
    kernel.process(FundingRate(iid, T0 + 1, T0 + 1, 0.001, t))
    kernel.process(Trade(iid, T0 + 2, T0 + 2, 20_000.0, 0.5, 1, "1"))
    kernel.process(Trade(iid, t + 1_000, t + 1_000, 19_900.0, 2.0, -1, "2"))  # fills the bid after T
    assert kernel.portfolio.position(iid) == 1.0
    assert kernel.result.funding == [] and kernel.portfolio.funding_paid == 0.0
    kernel.process(FundingRate(iid, t + 2_000, t + 2_000, 0.001, t + 8 * H))
    kernel.process(Trade(iid, t + 3_000, t + 3_000, 20_000.0, 0.5, 1, "3"))
    kernel.process(Trade(iid, t + 8 * H + 1_000, t + 8 * H + 1_000, 20_100.0, 2.0, 1, "4"))  # fills the ask
    assert kernel.portfolio.position(iid) == 0.0
    [paid] = kernel.result.funding
    assert (paid.ts_event, paid.quantity, paid.mark_price) == (t + 8 * H, 1.0, 20_000.0)
    assert paid.payment == pytest.approx(20.0) and kernel.portfolio.funding_paid == pytest.approx(20.0)


@pytest.mark.parametrize("lean", [False, True])
def test_a_funding_row_stamped_at_a_bar_close_is_paid_on_the_fills_of_that_bar(tmp_path: Path, lean: bool) -> None:
    """Hourly bars closing at T0 + k h; a buy of 0.1 BTC decided on bar 1 fills at bar 2's open, an hour
    before bar 2's close at T0 + 2h. A funding file row and a mark stamped at that close (as Binance's
    funding history stamps most rows: on the hour) come from the feed before the bar: the position held
    at T0 + 2h is the 0.1 BTC long, which pays 0.1 * 20,100 (the mark) * 0.001 = 2.01. The row was
    settled before the bar's fills: flat, nothing paid."""
    inst = perp()
    iid = inst.instrument_id
    closes = [20_000.0 + 10.0 * k for k in range(1, 201)]
    source = hourly_bars(tmp_path, iid, closes)
    at = T0 + 2 * H
    feed = [MarkPrice(iid, at, at, 20_100.0, math.nan), FundingRate(iid, at, at, 0.001, at)]

    def kernel() -> Kernel:
        k = Kernel([inst], venue_config=VenueConfig(fill_on="bars"), initial_cash=10_000.0)
        k.add_strategy(HoldAfterFirstBar(iid, 0.1) if lean else BuyOnce(iid, 0.1))
        k.feed_perpetual_data(feed)
        return k

    for k in run_and_process(kernel, source):
        [fill] = k.result.fills
        assert (fill.ts_event, fill.price) == (at, closes[1])
        [paid] = k.result.funding
        assert (paid.ts_event, paid.quantity, paid.mark_price) == (at, 0.1, 20_100.0)
        assert paid.payment == pytest.approx(2.01)
        assert k.portfolio.funding_paid == pytest.approx(2.01)


@pytest.mark.parametrize("lean", [False, True])
def test_a_funding_inside_the_bar_whose_open_fills_an_entry_is_paid_on_the_new_position(
    tmp_path: Path, lean: bool
) -> None:
    """Hourly bars closing at T0 + k h; a buy of 0.1 BTC decided on bar 1 fills at bar 2's open, T0 + 1h.
    A funding of 0.1 % at T0 + 1h30 (inside bar 2, as a 4h or 1d bar holds its fundings, or a
    Binance funding row stamped 00:00:00.017 sits inside the bar opening at 00:00), marked 20,015
    then: the venue charges the position held then, the 0.1 BTC long: 0.1 * 20,015 * 0.001 = 2.0015,
    booked once bar 2 is matched (T0 + 2h). It was settled before bar 2's fills: flat, nothing paid."""
    inst = perp()
    iid = inst.instrument_id
    closes = [20_000.0 + 10.0 * k for k in range(1, 201)]
    source = hourly_bars(tmp_path, iid, closes)
    at = T0 + H + H // 2
    feed = [MarkPrice(iid, at, at, 20_015.0, math.nan), FundingRate(iid, at, at, 0.001, at)]

    def kernel() -> Kernel:
        k = Kernel([inst], venue_config=VenueConfig(fill_on="bars"), initial_cash=10_000.0)
        k.add_strategy(HoldAfterFirstBar(iid, 0.1) if lean else BuyOnce(iid, 0.1))
        k.feed_perpetual_data(feed)
        return k

    ran, processed = run_and_process(kernel, source)
    for k in (ran, processed):
        [fill] = k.result.fills
        assert (fill.ts_event, fill.price) == (T0 + 2 * H, closes[1])  # bar 2's open, stamped at its close
        [paid] = k.result.funding
        assert (paid.ts_event, paid.ts_init, paid.quantity, paid.mark_price) == (at, T0 + 2 * H, 0.1, 20_015.0)
        assert paid.payment == pytest.approx(2.0015)
        assert k.portfolio.funding_paid == pytest.approx(2.0015)
        assert k.result.funding_fills == [1]
    assert ran.result.equity == processed.result.equity


class _InAndOut(Strategy):
    """Buys 0.1 at market on bar 1 and sells it on bar 3: filled at the opens of bars 2 and 4."""

    def __init__(self, iid: str) -> None:
        super().__init__(iid, strategy_id="in-and-out")
        self.bars = 0

    def on_bar(self, bar: Bar | None = None) -> None:
        self.bars += 1
        if self.bars in (1, 3):
            side = OrderSide.BUY if self.bars == 1 else OrderSide.SELL
            self.submit_market(self.instrument_id, side, 0.1, reason="in" if self.bars == 1 else "out")


class _LeanInAndOut(_InAndOut):
    on_bar = feature_only(_InAndOut.on_bar)


@pytest.mark.parametrize("lean", [False, True])
def test_the_position_held_at_each_funding_time_pays_whether_a_bar_opens_at_it_or_before_it(
    tmp_path: Path, lean: bool
) -> None:
    """0.1 BTC bought at bar 2's open (T0 + 1h) and sold at bar 4's open (T0 + 3h); 0.1 % funding at
    T0 + 1h (marked 20,000), T0 + 2h30 (20,025) and T0 + 3h30 (20,035).

    - T0 + 1h is bar 2's open: a fill at the funding time itself is not held at it (the venue
      charges the positions that stand at that instant; the buy comes with it). Flat: nothing.
    - T0 + 2h30, inside bar 3: long 0.1, nothing at the venue: 0.1 * 20,025 * 0.001 = 2.0025, paid
      before bar 3's handlers (T0 + 3h).
    - T0 + 3h30, inside bar 4 whose open sold the long: flat, nothing. It was paid before bar 4's
      fills on the 0.1 long: 2.0035 more.
    """
    inst = perp()
    iid = inst.instrument_id
    closes = [20_000.0 + 10.0 * k for k in range(1, 201)]
    source = hourly_bars(tmp_path, iid, closes)
    feed: list[Any] = []
    for at, mark in ((T0 + H, 20_000.0), (T0 + 2 * H + H // 2, 20_025.0), (T0 + 3 * H + H // 2, 20_035.0)):
        feed += [MarkPrice(iid, at, at, mark, math.nan), FundingRate(iid, at, at, 0.001, at)]

    def kernel() -> Kernel:
        k = Kernel([inst], venue_config=VenueConfig(fill_on="bars"), initial_cash=10_000.0)
        k.add_strategy(_LeanInAndOut(iid) if lean else _InAndOut(iid))
        k.feed_perpetual_data(feed)
        return k

    ran, processed = run_and_process(kernel, source)
    for k in (ran, processed):
        assert [(f.ts_event, f.side) for f in k.result.fills] == [(T0 + 2 * H, "BUY"), (T0 + 4 * H, "SELL")]
        [paid] = k.result.funding
        assert (paid.ts_event, paid.ts_init, paid.quantity, paid.mark_price) == (
            T0 + 2 * H + H // 2, T0 + 3 * H, 0.1, 20_025.0
        )
        assert paid.payment == pytest.approx(2.0025)
        assert k.portfolio.funding_paid == pytest.approx(2.0025)
    assert ran.result.equity == processed.result.equity


class _FlipAfterGap(Strategy):
    """Buys 0.1 at market on bar 1 and sells 0.2 on bar 5 (long 0.1 -> short 0.1), at the next bars' opens."""

    def __init__(self, iid: str) -> None:
        super().__init__(iid, strategy_id="flip")
        self.bars = 0

    def on_bar(self, bar: Bar | None = None) -> None:
        self.bars += 1
        if self.bars in (1, 5):
            side = OrderSide.BUY if self.bars == 1 else OrderSide.SELL
            self.submit_market(self.instrument_id, side, 0.1 if self.bars == 1 else 0.2, reason="flip")


class _LeanFlipAfterGap(_FlipAfterGap):
    on_bar = feature_only(_FlipAfterGap.on_bar)


def _bars_with_a_gap(path: Path, minutes: list[int]) -> pd.DataFrame:
    """1-minute bars closing at ``T0 + k min`` for k in ``minutes``, opening at 20,000 + 10 k - 5, closing at 20,000 + 10 k."""
    m = 60_000_000_000
    frame = pd.DataFrame({
        "ts": [T0 + k * m for k in minutes], "open": [20_000.0 + 10.0 * k - 5.0 for k in minutes],
        "high": [20_000.0 + 10.0 * k for k in minutes], "low": [20_000.0 + 10.0 * k - 5.0 for k in minutes],
        "close": [20_000.0 + 10.0 * k for k in minutes], "volume": 1.0,
    })
    frame.to_csv(path, index=False)
    return frame


@pytest.mark.parametrize("lean", [False, True])
def test_a_funding_in_a_gap_of_the_bars_is_paid_on_the_position_before_the_next_bar_s_fills_at_its_open(
    tmp_path: Path, lean: bool
) -> None:
    """1-minute bars opening at 00:00 .. 00:04 (closing 00:01 .. 00:05), then none until the one opening
    at 00:10 (minutes missing from the data), and on; bar k (closing at k min) opens at 20,000 + 10 k - 5
    and closes at 20,000 + 10 k. 0.1 BTC bought on bar 1 (filled at bar 2's open); a sell of 0.2 decided
    on the bar closing 00:05 fills at the open of the bar opening 00:10 (20,105): long 0.1 -> short 0.1.
    A funding of 0.1 % at 00:07, no mark price: at 00:07 the long is held, and the first price after
    00:07 is that bar's open, so the long pays 0.1 * 20,105 * 0.001 = 2.0105, before the flip's fill.
    Before, the bar was taken to open at 00:05 (the previous close): the funding was held for the bar's
    fills and charged to the short at 20,050 (the 00:05 close): -2.005 (received).
    The ordinary case is as it was: a funding at 00:20:30, inside the bar 00:20 .. 00:21 with nothing at
    the venue, is paid before that bar on the short at the previous close (20,200): -2.02 (received).
    One at 00:33, in a second gap (00:30 .. 00:35) with nothing at the venue, is paid before the bar
    opening at 00:35, at its open 20,355 (before: at the 00:30 close, 20,300): -2.0355."""
    inst = perp()
    iid = inst.instrument_id
    m = 60_000_000_000
    _bars_with_a_gap(tmp_path / "bars.csv", [1, 2, 3, 4, 5] + list(range(11, 31)) + list(range(36, 60)))
    source = ReplaySource.from_file(tmp_path / "bars.csv", iid, "bars", bar_time="close")
    feed = [FundingRate(iid, at, at, 0.001, at) for at in (T0 + 7 * m, T0 + 20 * m + m // 2, T0 + 33 * m)]

    def kernel() -> Kernel:
        k = Kernel([inst], venue_config=VenueConfig(fill_on="bars"), initial_cash=10_000.0)
        k.add_strategy(_LeanFlipAfterGap(iid) if lean else _FlipAfterGap(iid))
        k.feed_perpetual_data(feed)
        return k

    ran, processed = run_and_process(kernel, source)
    for k in (ran, processed):
        assert [(f.ts_event, f.side, f.price) for f in k.result.fills] == [
            (T0 + 2 * m, "BUY", 20_015.0), (T0 + 11 * m, "SELL", 20_105.0)
        ]
        assert [(p.ts_event, p.ts_init, p.quantity, p.mark_price) for p in k.result.funding] == [
            (T0 + 7 * m, T0 + 11 * m, 0.1, 20_105.0), (T0 + 20 * m + m // 2, T0 + 21 * m, -0.1, 20_200.0),
            (T0 + 33 * m, T0 + 36 * m, -0.1, 20_355.0),
        ]
        assert [p.payment for p in k.result.funding] == [
            pytest.approx(2.0105), pytest.approx(-2.02), pytest.approx(-2.0355)
        ]
        assert k.portfolio.funding_paid == pytest.approx(2.0105 - 2.02 - 2.0355)
    assert ran.result.equity == processed.result.equity


@pytest.mark.parametrize("lean", [False, True])
@pytest.mark.parametrize("where", ["file", "catalog"])
def test_a_funding_in_the_first_gap_of_bars_of_a_known_interval_is_paid_before_the_next_bar_s_fills(
    tmp_path: Path, lean: bool, where: str
) -> None:
    """1-minute bars closing at 00:01, then none until the one closing at 00:05 (opening at 00:04), and on;
    bar k (closing at k min) opens at 20,000 + 10 k - 5 and closes at 20,000 + 10 k. 0.1 BTC bought on bar 1
    fills at the open of the bar closing at 00:05 (20,045, at 00:04). A funding of 0.1 % at 00:03, no mark
    price, lies in the gap, when nothing was held: nothing is paid. The source knows the interval (a file's
    ``interval: 1m``, a catalog dataset's manifest), so this first gap of the bars is one, although no two
    adjacent bars were seen before it. Before, the bar length was learnt from the bars' spacing only: the bar
    was taken to open at 00:01 (the previous close), the funding was held for its fills and charged to the
    long they bought, at 20,010 (the 00:01 close): 0.1 * 20,010 * 0.001 = 2.001. The ordinary case is as it
    was: one at 00:06:30, inside the bar closing at 00:07 with nothing at the venue, is paid before it by the
    long at the 00:06 close: 0.1 * 20,060 * 0.001 = 2.006."""
    inst = perp()
    iid = inst.instrument_id
    m = 60_000_000_000
    _bars_with_a_gap(tmp_path / "bars.csv", [1] + list(range(5, 31)))
    if where == "file":
        source = ReplaySource.from_file(tmp_path / "bars.csv", iid, "bars", interval="1m", bar_time="close")
    else:
        cat = Catalog(tmp_path / "catalog")
        import_path(cat, tmp_path / "bars.csv", venue="sim", market="usdm", symbol="BTCUSDT", kind="bars",
                    dataset="bars_1m", bar_time="close")
        source = ReplaySource.from_catalog(cat, iid, "sim", "usdm", "BTCUSDT", "bars_1m")
    assert source.bar_interval_ns() == m
    feed = [FundingRate(iid, at, at, 0.001, at) for at in (T0 + 3 * m, T0 + 6 * m + m // 2)]

    def kernel() -> Kernel:
        k = Kernel([inst], venue_config=VenueConfig(fill_on="bars"), initial_cash=10_000.0)
        k.add_strategy(_LeanFlipAfterGap(iid) if lean else _FlipAfterGap(iid))
        k.feed_perpetual_data(feed)
        return k

    ran = kernel()
    ran.run(Replay([source]))
    processed = kernel()
    processed.bar_intervals({iid: m})  # as a daemon says of its bar streams
    for msg in Replay([source]):
        processed.process(msg)
    processed.stop()
    for k in (ran, processed):
        assert [(f.ts_event, f.side, f.price) for f in k.result.fills] == [
            (T0 + 5 * m, "BUY", 20_045.0), (T0 + 9 * m, "SELL", 20_085.0)
        ]
        assert [(p.ts_event, p.quantity, p.mark_price) for p in k.result.funding] == [
            (T0 + 6 * m + m // 2, 0.1, 20_060.0)
        ]
        assert k.portfolio.funding_paid == pytest.approx(2.006)
    assert ran.result.equity == processed.result.equity


@pytest.mark.parametrize("lean", [False, True])
def test_a_funding_in_a_gap_due_at_another_instrument_s_bar_is_paid_before_the_next_bar_s_fills_at_its_open(
    tmp_path: Path, lean: bool
) -> None:
    """As the test above, with ETH's bars closing at k min + 30 s: BTC's funding at 00:07 falls due at
    ETH's bar of 00:07:30, while the sell waits at the venue for BTC's next bar, not known yet: held,
    then paid when that bar comes, opening at 00:10, after the funding: before its fills, on the long
    0.1 at its open 20,105: 2.0105 (before: after them, on the short at 20,050, -2.005)."""
    btc = perp()
    eth = perp(symbol="ETHUSDT", base="ETH", lot_size=0.01)
    b, e = btc.instrument_id, eth.instrument_id
    m = 60_000_000_000
    _bars_with_a_gap(tmp_path / "btc.csv", [1, 2, 3, 4, 5] + list(range(11, 60)))
    pd.DataFrame({"ts": [T0 + k * m + m // 2 for k in range(60)], "open": 1_000.0, "high": 1_000.0,
                  "low": 1_000.0, "close": 1_000.0, "volume": 1.0}).to_csv(tmp_path / "eth.csv", index=False)
    sources = [ReplaySource.from_file(tmp_path / "btc.csv", b, "bars", bar_time="close"),
               ReplaySource.from_file(tmp_path / "eth.csv", e, "bars", bar_time="close")]
    feed = [FundingRate(b, T0 + 7 * m, T0 + 7 * m, 0.001, T0 + 7 * m)]

    def kernel() -> Kernel:
        k = Kernel([btc, eth], venue_config=VenueConfig(fill_on="bars"), initial_cash=10_000.0)
        k.add_strategy(_LeanFlipAfterGap(b) if lean else _FlipAfterGap(b))
        k.feed_perpetual_data(feed)
        return k

    ran = kernel()
    ran.run(Replay(sources))
    processed = kernel()
    for msg in Replay(sources):
        processed.process(msg)
    processed.stop()
    for k in (ran, processed):
        assert [(f.ts_event, f.side, f.price) for f in k.result.fills] == [
            (T0 + 2 * m, "BUY", 20_015.0), (T0 + 11 * m, "SELL", 20_105.0)
        ]
        assert [(p.ts_event, p.ts_init, p.quantity, p.mark_price) for p in k.result.funding] == [
            (T0 + 7 * m, T0 + 11 * m, 0.1, 20_105.0)
        ]
        assert k.result.funding[0].payment == pytest.approx(2.0105)
    assert ran.result.equity == processed.result.equity


def test_a_funding_in_a_gap_due_at_another_instrument_s_bar_with_nothing_waiting_is_priced_at_its_last_close(
    tmp_path: Path,
) -> None:
    """BTC's 1-minute bars close at 00:01 .. 00:05, then none until 00:11 (bar k closing at 20,000 + 10 k);
    ETH's at k min + 30 s. 0.1 BTC bought on bar 1 (filled at bar 2's open, 20,015) and held. BTC's funding
    of 0.1 % at 00:07, no mark price, falls due at ETH's bar of 00:07:30 with no BTC order at the venue: it
    is paid then, on the long, at BTC's last price known at 00:07 and still at 00:07:30, the 00:05 close:
    0.1 * 20,050 * 0.001 = 2.005. The open of BTC's next bar (20,105 at 00:10) comes after that message:
    pricing it there would take a price the run had not seen yet."""
    btc = perp()
    eth = perp(symbol="ETHUSDT", base="ETH", lot_size=0.01)
    b, e = btc.instrument_id, eth.instrument_id
    m = 60_000_000_000
    _bars_with_a_gap(tmp_path / "btc.csv", [1, 2, 3, 4, 5] + list(range(11, 60)))
    pd.DataFrame({"ts": [T0 + k * m + m // 2 for k in range(60)], "open": 1_000.0, "high": 1_000.0,
                  "low": 1_000.0, "close": 1_000.0, "volume": 1.0}).to_csv(tmp_path / "eth.csv", index=False)
    sources = [ReplaySource.from_file(tmp_path / "btc.csv", b, "bars", bar_time="close"),
               ReplaySource.from_file(tmp_path / "eth.csv", e, "bars", bar_time="close")]

    def kernel() -> Kernel:
        k = Kernel([btc, eth], venue_config=VenueConfig(fill_on="bars"), initial_cash=10_000.0)
        k.add_strategy(BuyOnce(b, 0.1))
        k.feed_perpetual_data([FundingRate(b, T0 + 7 * m, T0 + 7 * m, 0.001, T0 + 7 * m)])
        return k

    ran = kernel()
    ran.run(Replay(sources))
    processed = kernel()
    for msg in Replay(sources):
        processed.process(msg)
    processed.stop()
    for k in (ran, processed):
        assert [(f.side, f.price) for f in k.result.fills] == [("BUY", 20_015.0)]
        assert [(p.ts_event, p.ts_init, p.quantity, p.mark_price) for p in k.result.funding] == [
            (T0 + 7 * m, T0 + 7 * m + m // 2, 0.1, 20_050.0)
        ]
        assert k.result.funding[0].payment == pytest.approx(2.005)


@pytest.mark.parametrize("lean", [False, True])
def test_a_funding_inside_a_volume_bar_is_paid_after_the_fill_at_its_open_not_taken_for_a_gap(
    tmp_path: Path, lean: bool
) -> None:
    """Volume bars of 1 BTC (two trades of 0.5 each, the first at the bar's open price 20,000 + 10 k - 5,
    the second closing it at 20,000 + 10 k) built from trades into the catalog: back to back, of any
    length. Bar 2 closes 5 ms after bar 1 (trades at 00:01:00.001 and .005), bar 6 opens with a trade at
    00:05:01 and closes at 00:10. 0.1 BTC bought on bar 1 (filled at bar 2's open), a sell of 0.2 decided
    on bar 5 fills at bar 6's open, 20,055, at 00:05:01: short 0.1 from then. A funding of 0.1 % at 00:07,
    inside bar 6, is the short's: held until bar 6 is matched, at the price of when it fell due (bar 5's
    close, 20,050): -0.1 * 20,050 * 0.001 = -2.005 (received). Before, the gap rule took bar 6 to open
    one bar length (the shortest spacing of closes, 5 ms) before its close, after the funding, and made
    the long 0.1 pay 0.1 * 20,055 * 0.001 = 2.0055 before the flip's fill."""
    inst = perp()
    iid = inst.instrument_id
    m, s = 60_000_000_000, 1_000_000_000
    spans = [(0, m), (m + 1_000_000, m + 5_000_000), (2 * m, 3 * m), (3 * m + s, 4 * m), (4 * m + s, 5 * m),
             (5 * m + s, 10 * m)] + [((k - 1) * m + s, k * m) for k in range(11, 51)]
    trades = [(T0 + t, 20_000.0 + 10.0 * k + (-5.0 if i == 0 else 0.0), 0.5, 1)
              for k, span in enumerate(spans, start=1) for i, t in enumerate(span)]
    pd.DataFrame(trades, columns=["ts", "price", "size", "side"]).to_csv(tmp_path / "trades.csv", index=False)
    cat = Catalog(tmp_path / "catalog")
    import_path(cat, tmp_path / "trades.csv", venue="sim", market="usdm", symbol="BTCUSDT", kind="trades",
                ts_unit="ns")
    manifest = bars_from_trades(cat, DatasetRef("sim", "usdm", "BTCUSDT", "trades"), "volume", threshold=1.0,
                                contract_size=1.0)
    assert manifest.rows == len(spans) and manifest.interval_ns is None
    source = ReplaySource.from_catalog(cat, iid, "sim", "usdm", "BTCUSDT", manifest.dataset)
    k = Kernel([inst], venue_config=VenueConfig(fill_on="bars"), initial_cash=10_000.0)
    k.add_strategy(_LeanFlipAfterGap(iid) if lean else _FlipAfterGap(iid))
    k.feed_perpetual_data([FundingRate(iid, T0 + 7 * m, T0 + 7 * m, 0.001, T0 + 7 * m)])
    k.run(Replay([source]))
    assert [(f.ts_event, f.side, f.price) for f in k.result.fills] == [
        (T0 + m + 5_000_000, "BUY", 20_015.0), (T0 + 10 * m, "SELL", 20_055.0)
    ]
    assert [(p.ts_event, p.quantity, p.mark_price) for p in k.result.funding] == [(T0 + 7 * m, -0.1, 20_050.0)]
    assert k.result.funding[0].payment == pytest.approx(-2.005)


def test_a_funding_at_the_close_of_a_live_kline_received_soon_after_a_late_one_is_paid_after_its_fills() -> None:
    """A paper daemon on 1-minute klines stamps each bar at its receive time (``ts_init``), its close at
    ``ts_event``: here 0.5 s after the close, but the kline closing at 00:02 came 60.1 s late (the loop was
    busy), 0.4 s before the next one. 0.1 bought on bar 1 (filled at 00:01, bar 2's open), 0.2 sold on bar 5
    (filled at 00:05, bar 6's open): short 0.1 from 00:05. A funding of 0.1 % at 00:06, the close of bar 6 (no
    mark price) is the short's: it receives 0.1 * 20,050 * 0.001 = 2.005 (at the 00:05 close, the price when it fell
    due), after bar 6's fills. The receive times' shortest spacing, 0.4 s, was taken for the bar length: bar 6
    was taken to open 0.1 s after 00:06, the funding to lie in a gap before it, and the long paid 2.0055 at bar 6's
    open before the sell filled. The bar length is the spacing of the bars' closes (``ts_event``)."""
    inst = perp()
    iid = inst.instrument_id
    m = 60_000_000_000
    k = Kernel([inst], venue_config=VenueConfig(fill_on="bars"), initial_cash=10_000.0)
    k.add_strategy(_FlipAfterGap(iid))
    k.feed_perpetual_data([FundingRate(iid, T0, T0, 0.001, T0 + 6 * m)])
    k.start()
    for j in range(1, 10):
        close = T0 + j * m
        late = 60_100_000_000 if j == 2 else 500_000_000
        k.process(Bar(iid, close, close + late, 20_000.0 + 10.0 * j - 5.0, 20_000.0 + 10.0 * j,
                      20_000.0 + 10.0 * j - 5.0, 20_000.0 + 10.0 * j, 1.0))
    k.stop()
    assert [(f.side, f.price) for f in k.result.fills] == [("BUY", 20_015.0), ("SELL", 20_055.0)]
    assert [(p.ts_event, p.quantity, p.mark_price) for p in k.result.funding] == [(T0 + 6 * m, -0.1, 20_050.0)]
    assert k.result.funding[0].payment == pytest.approx(-2.005)


@pytest.mark.parametrize("lean", [False, True])
def test_a_funding_due_on_another_instrument_s_bar_waits_for_the_bar_it_falls_in_or_the_end(
    tmp_path: Path, lean: bool
) -> None:
    """BTC: three hourly bars closing at T0 + 1h, 2h, 3h; 0.1 bought on bar 1 (filled at bar 2's open,
    T0 + 1h), a sell decided on bar 3 that no later bar fills. ETH's bars close at T0 + k h + 45 min.
    BTC's 0.1 % funding at T0 + 1h30 (mark 20,015) falls due at ETH's bar of T0 + 1h45, before BTC's
    bar 2 is matched: paid once it is, on the long, 0.1 * 20,015 * 0.001 = 2.0015. The one at
    T0 + 3h30 (mark 20,035) falls due at ETH's bar of T0 + 3h45 while the sell waits for a bar that
    never comes: the run's end pays it on the long still held, 2.0035, and the run's last equity
    sample (equity.csv's last row, the metrics' final equity) holds it: 10,000 - 2.0015 - 2.0035
    + 0.1 * (20,035 - 20,000) = 9,999.495 (it held 10,001.4985, the end's payment left out)."""
    btc = perp()
    eth = perp(symbol="ETHUSDT", base="ETH", lot_size=0.01)
    b, e = btc.instrument_id, eth.instrument_id
    pd.DataFrame({"ts": [T0 + k * H for k in (1, 2, 3)], "open": 20_000.0, "high": 20_000.0, "low": 20_000.0,
                  "close": 20_000.0, "volume": 1.0}).to_csv(tmp_path / "btc.csv", index=False)
    eth_ts = [T0 + k * H + 3 * H // 4 for k in range(0, 150)]
    pd.DataFrame({"ts": eth_ts, "open": 1_000.0, "high": 1_000.0, "low": 1_000.0, "close": 1_000.0,
                  "volume": 1.0}).to_csv(tmp_path / "eth.csv", index=False)
    sources = [ReplaySource.from_file(tmp_path / "btc.csv", b, "bars", bar_time="close"),
               ReplaySource.from_file(tmp_path / "eth.csv", e, "bars", bar_time="close")]
    feed: list[Any] = []
    for at, mark in ((T0 + H + H // 2, 20_015.0), (T0 + 3 * H + H // 2, 20_035.0)):
        feed += [MarkPrice(b, at, at, mark, math.nan), FundingRate(b, at, at, 0.001, at)]

    def kernel() -> Kernel:
        k = Kernel([btc, eth], venue_config=VenueConfig(fill_on="bars"), initial_cash=10_000.0)
        k.add_strategy(_LeanInAndOut(b) if lean else _InAndOut(b))
        k.feed_perpetual_data(feed)
        return k

    ran = kernel()
    ran.run(Replay(sources))
    processed = kernel()
    for msg in Replay(sources):
        processed.process(msg)
    processed.stop()
    for k in (ran, processed):
        assert [(f.ts_event, f.side) for f in k.result.fills] == [(T0 + 2 * H, "BUY")]
        assert [(p.ts_event, p.ts_init, p.quantity, p.mark_price) for p in k.result.funding] == [
            (T0 + H + H // 2, T0 + 2 * H, 0.1, 20_015.0), (T0 + 3 * H + H // 2, eth_ts[-1], 0.1, 20_035.0)
        ]
        assert [p.payment for p in k.result.funding] == [pytest.approx(2.0015), pytest.approx(2.0035)]
        last = k.result.equity[-1]
        assert (last.ts, last.funding_paid, last.equity) == (eth_ts[-1], pytest.approx(4.005), pytest.approx(9_999.495))
        assert k.result.equity_at_stop == pytest.approx(9_999.495)
    assert ran.result.equity == processed.result.equity


def test_every_bad_row_of_a_mark_or_funding_file_is_named(tmp_path: Path) -> None:
    """A value or ts_event that was not a number died with a ValueError traceback; times out of
    order and an impossible mark or rate named no row."""
    cases = {
        "date,mark_price\n2021-11-17T00:00:00+00:00,1.0\n2021-11-17T01:00:00+00:00,abc\n":
            r"marks.csv row 2: mark_price 'abc' is not a number$",
        "ts_event,mark_price\n1637107200000000000,1.0\nzz,1.1\n":
            r"marks.csv row 2: ts_event 'zz' is not a number",
        "date,mark_price\n2021-11-17T00:00:00+00:00,1.0\n2021-11-17T02:00:00+00:00,1.0\n2021-11-17T01:00:00+00:00,1.0\n":
            r"marks.csv row 3: times must strictly increase \(2021-11-17T01:00:00Z after row 2's 2021-11-17T02:00:00Z\)",
        "date,mark_price\n2021-11-17T00:00:00+00:00,1.0\n2021-11-17T01:00:00+00:00,-2.0\n":
            r"marks.csv row 2: mark price -2.0 at 2021-11-17T01:00:00Z must be > 0",
    }
    bad = tmp_path / "marks.csv"
    for text, message in cases.items():
        bad.write_text(text)
        with pytest.raises(DataError, match=message):
            read_mark_prices(bad, "X.SIM")
    funding = tmp_path / "funding.csv"
    funding.write_text("date,rate\n2021-11-17T00:00:00+00:00,0.0001\n2021-11-17T08:00:00.017+00:00,1.5\n")
    with pytest.raises(DataError, match=r"funding.csv row 2: funding rate 1.5 at 2021-11-17T08:00:00.017Z is not"):
        read_funding_rates(funding, "X.SIM")


def test_unpaid_fundings_are_handed_on_when_they_change_and_a_moving_rate_once_a_minute() -> None:
    """markPrice@1s: every frame announces the next funding with a moving estimated rate and a jittering
    receive delay. Over 150 s of frames the journal's list of unpaid fundings is written when the funding
    first appears, then at most once a minute for the rate (s 0, 60, 120), and again when it is paid;
    before, every frame rewrote it (one journal commit a second per perpetual)."""
    inst = perp()
    kernel, _ = opened_kernel(inst, 10_000.0, 0.1)
    iid = inst.instrument_id
    perpetuals = kernel.perpetuals
    assert perpetuals is not None
    written: list[list[FundingDue]] = []
    perpetuals.on_due = written.append
    t = T0 + 2 * H + 1
    second = 1_000_000_000
    for s in range(150):
        now = t + s * second
        kernel.process(FundingRate(iid, now - (s % 7) * 1_000_000, now, 0.0001 + s * 1e-7, T0 + 3 * H))
    assert [(len(w), w[0].at, w[0].rate) for w in written] == [
        (1, T0 + 3 * H, 0.0001),
        (1, T0 + 3 * H, pytest.approx(0.0001 + 60e-7)),
        (1, T0 + 3 * H, pytest.approx(0.0001 + 120e-7)),
    ]
    later = T0 + 3 * H + second  # past the funding time and its receive delay
    kernel.process(Bar(iid, later, later, 20_000.0, 20_000.0, 20_000.0, 20_000.0, 1.0))
    assert len(kernel.result.funding) == 1
    assert written[-1] == []


def _journal_of_a_buy(tmp_path: Path, inst: Instrument) -> Path:
    """The journal of a kernel that bought 0.1 of the perpetual ``inst`` at 20 000 on bars, then stopped."""
    from tradebus.execution.journal import Journal

    iid = inst.instrument_id
    path = tmp_path / "journal.sqlite"
    first = Kernel([inst], venue_config=VenueConfig(fill_on="bars"), initial_cash=10_000.0, journal=Journal(path))
    first.add_strategy(BuyOnce(iid, 0.1))
    first.process(flat_bar(iid, 1, 20_000.0))
    first.process(flat_bar(iid, 2, 20_000.0))
    assert first.portfolio.position(iid) == pytest.approx(0.1)
    return path


def test_a_restart_with_a_restored_position_and_no_price_yet_pays_its_funding_at_the_last_fill(tmp_path: Path) -> None:
    """A paper daemon bought 0.1 BTCUSDT perpetual at 20 000 and stopped; restarted on its journal, the first
    message is the funding of 03:00 (rate 0.0001), before any mark or bar. The restored position is priced
    at its journaled fill (Portfolio.apply_fill, the journal's mark), so the funding is paid, not lost:
    0.1 * 20 000 * 0.0001 = 0.2, on the position restored."""
    from tradebus.execution.journal import Journal

    inst = perp()
    iid = inst.instrument_id
    path = _journal_of_a_buy(tmp_path, inst)
    journal = Journal(path)
    second = Kernel([inst], venue_config=VenueConfig(fill_on="bars"), initial_cash=10_000.0, journal=journal)
    second.add_strategy(BuyOnce(iid, 0.1))
    journal.replay(second.orders, second.portfolio, T0 + 2 * H + 1, risk=second.risk,
                   on_message=second.record_journaled)
    second.process(FundingRate(iid, T0 + 3 * H, T0 + 3 * H, 0.0001, T0 + 3 * H))
    [paid] = second.result.funding
    assert (paid.quantity, paid.mark_price, paid.rate) == (pytest.approx(0.1), 20_000.0, 0.0001)
    assert paid.payment == pytest.approx(0.2, rel=1e-12)
    assert second.portfolio.funding_paid == pytest.approx(0.2, rel=1e-12)


def test_a_held_funding_without_a_mark_is_read_back_held_and_paid_at_the_last_fill_by_a_restart(tmp_path: Path) -> None:
    """The journal's ``funding_due`` row holds a funding held with no mark (NaN) beside a pending one (no mark,
    ``None``). It is msgpack, which keeps NaN (JSON would write null: the held funding read back pending, not paid
    at the restart but left waiting for a due time already past): read back, the held one is still NaN and a
    restart on the 0.1 BTCUSDT perpetual bought at 20 000 pays it at the journaled fill, 0.1 * 20 000 * 0.0001
    = 0.2; the pending one stays pending."""
    import math

    from tradebus.engine.perpetuals import FundingDue
    from tradebus.execution.journal import Journal

    inst = perp()
    iid = inst.instrument_id
    path = _journal_of_a_buy(tmp_path, inst)
    saved = [FundingDue(iid, T0 + 3 * H, T0 + 3 * H, 0.0001, math.nan), FundingDue(iid, T0 + 11 * H, T0 + 11 * H, 0.0002)]
    store = Journal(path)
    store.save_funding_due(saved)  # as Perpetuals.on_due stores them
    store.close()
    journal = Journal(path)
    held, pending = journal.funding_due()
    assert held.mark is not None and math.isnan(held.mark) and pending.mark is None
    assert (held.at, held.rate, pending.at, pending.rate) == (T0 + 3 * H, 0.0001, T0 + 11 * H, 0.0002)
    second = Kernel([inst], venue_config=VenueConfig(fill_on="bars"), initial_cash=10_000.0, journal=journal)
    journal.replay(second.orders, second.portfolio, T0 + 3 * H + 1, risk=second.risk, on_message=second.record_journaled)
    second.perpetuals.restore_due([held, pending], T0 + 3 * H + 1)
    [paid] = second.result.funding
    assert (paid.quantity, paid.mark_price, paid.rate, paid.ts_event) == (pytest.approx(0.1), 20_000.0, 0.0001, T0 + 3 * H)
    assert paid.payment == pytest.approx(0.2, rel=1e-12)
    assert second.perpetuals.next_funding_ns == T0 + 11 * H  # the pending one waits for its time
