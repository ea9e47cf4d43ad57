"""Slippage models and fee tiers of the simulated venue, with hand-derived prices and fees."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from tradebus.engine.instrument import FeeTier, Instrument
from tradebus.engine.kernel import Kernel
from tradebus.engine.messages import Bar, OrderSide
from tradebus.execution.config import VenueConfig
from tradebus.execution.costs import SlippageConfig, slippage_bps
from tradebus.strategies.base import Strategy

IID = "BTCUSD.SIM"
H = 3_600_000_000_000
DAY = 24 * H
T0 = 1_700_006_400_000_000_000


class Script(Strategy):
    """Submits the scripted orders on the bars with those indices (market, or limit with a price)."""

    def __init__(self, script: dict[int, tuple[OrderSide, float, float | None]]) -> None:
        super().__init__(IID, strategy_id="script")
        self.script = script
        self.n = 0

    def on_bar(self, bar: Bar) -> None:
        self.n += 1
        order = self.script.get(self.n)
        if order is not None:
            side, qty, limit = order
            if limit is None:
                self.submit_market(IID, side, qty)
            else:
                self.submit_limit(IID, side, qty, limit)


def run(
    bars: list[tuple[float, float, float, float, float]],
    script: dict[int, tuple[OrderSide, float, float | None]],
    step: int = H,
    venue: dict[str, Any] | None = None,
    **inst: Any,
) -> Kernel:
    fields: dict[str, Any] = dict(venue="SIM", symbol="BTCUSD", tick_size=0.01, lot_size=0.001, margin=True)
    fields.update(inst)
    kernel = Kernel([Instrument(**fields)], venue_config=VenueConfig(fill_on="bars", **(venue or {})),
                    initial_cash=1e9)
    kernel.add_strategy(Script(script))
    for k, (o, h, lo, c, v) in enumerate(bars, start=1):
        kernel.process(Bar(IID, T0 + k * step, T0 + k * step, o, h, lo, c, v))
    kernel.stop()
    return kernel


BARS = [(100.0, 100.0, 100.0, 100.0, 400.0), (100.0, 102.0, 98.0, 101.0, 400.0)]


def test_fixed_bps_moves_a_market_buy_up_by_ten_bps() -> None:
    kernel = run(BARS, {1: (OrderSide.BUY, 1.0, None)}, venue={"slippage": {"model": "fixed", "bps": 10.0}})
    assert [f.price for f in kernel.result.fills] == [100.10]


@pytest.mark.parametrize(
    ("qty", "price"),
    [
        (4.0, 100.10),  # 4 / 400 = 1 % of the bar: 100 bps * sqrt(0.01) = 10 bps
        (16.0, 100.20),  # 4 %: 100 * 0.2 = 20 bps
        (400.0, 100.50),  # 100 %: 100 bps, capped at max_bps 50
    ],
)
def test_volume_participation_grows_with_the_share_of_bar_volume(qty: float, price: float) -> None:
    venue = {"slippage": {"model": "volume", "impact_bps": 100.0, "exponent": 0.5, "max_bps": 50.0}}
    kernel = run(BARS, {1: (OrderSide.BUY, qty, None)}, venue=venue)
    assert [f.price for f in kernel.result.fills] == [price]


def test_volatility_scaled_slippage_is_a_fraction_of_the_bar_range() -> None:
    """Bar 2: open 100, range 98..102 = 400 bps; k = 0.1 -> 40 bps; a sell fills at 99.60."""
    venue = {"slippage": {"model": "volatility", "k": 0.1}}
    kernel = run(BARS, {1: (OrderSide.SELL, 1.0, None)}, venue=venue)
    assert [f.price for f in kernel.result.fills] == [99.60]


def test_slippage_stays_inside_the_bar() -> None:
    venue = {"slippage": {"model": "fixed", "bps": 400.0}}  # 4 % would be 104 > high 102
    kernel = run(BARS, {1: (OrderSide.BUY, 1.0, None)}, venue=venue)
    assert [f.price for f in kernel.result.fills] == [102.0]


def test_slippage_model_pure_function_and_config_errors() -> None:
    assert slippage_bps(SlippageConfig(model="volume", bps=1.0, impact_bps=10.0, exponent=1.0), 5, 1, 1, 1, 50) == 2.0
    assert slippage_bps(SlippageConfig(model="volume", impact_bps=10.0, max_bps=30.0), 5, 1, 1, 1, 0.0) == 30.0
    with pytest.raises(ValidationError, match="either slippage_bps or a slippage model"):
        VenueConfig(slippage_bps=2.0, slippage={"model": "fixed", "bps": 1.0})
    with pytest.raises(ValidationError, match="k belongs to the 'volatility' model"):
        SlippageConfig(model="fixed", k=1.0)


@pytest.mark.parametrize("field", ["bps", "impact_bps", "k", "max_bps"])
def test_a_slippage_amount_that_is_not_a_finite_number_is_a_config_error(field: str) -> None:
    """``k: .inf`` with ``max_bps: .inf`` priced a fill on a bar of high == low at inf * 0 = NaN bps (the run
    stopped with "ValueError: cannot convert float NaN to integer"; the venue would now cancel every such
    order, "slipped price nan ..."): the config names the field instead."""
    model = {"impact_bps": "volume", "k": "volatility"}.get(field, "fixed")
    for bad in (float("inf"), float("nan")):
        with pytest.raises(ValidationError, match=f"slippage.{field}\n  Input should be a finite number"):
            VenueConfig(slippage={"model": model, field: bad})


TIERS = (FeeTier(1_000.0, 0.0005, 0.0008), FeeTier(5_000.0, -0.0001, 0.0006))


def test_fee_tiers_follow_the_trailing_traded_notional() -> None:
    """Market buys of 10 at 100 (notional 1000 each): base taker 0.1 % until 1000 has traded,
    then 0.08 % until 5000, then 0.06 %."""
    bars = [(100.0, 100.0, 100.0, 100.0, 1e6)] * 8
    script = {k: (OrderSide.BUY, 10.0, None) for k in range(1, 8)}
    kernel = run(bars, script, taker_fee=0.001, maker_fee=0.0008, fee_tiers=TIERS)
    assert [f.fee for f in kernel.result.fills] == pytest.approx([1.0, 0.8, 0.8, 0.8, 0.8, 0.6, 0.6])


def test_maker_rebate_of_the_top_tier_is_a_negative_fee() -> None:
    """After 5000 traded, a resting limit buy fills as maker at -0.01 %: a rebate of 0.099."""
    bars = [(100.0, 100.0, 100.0, 100.0, 1e6)] * 7 + [(100.0, 100.0, 98.0, 99.0, 1e6)] * 2
    script: dict[int, tuple[OrderSide, float, float | None]] = {k: (OrderSide.BUY, 10.0, None) for k in range(1, 6)}
    script[7] = (OrderSide.BUY, 1.0, 99.0)
    kernel = run(bars, script, taker_fee=0.001, maker_fee=0.0008, fee_tiers=TIERS)
    last = kernel.result.fills[-1]
    assert (last.price, last.liquidity) == (99.0, "MAKER")
    assert last.fee == pytest.approx(-99.0 * 0.0001)


def test_fee_tier_volume_expires_after_thirty_days() -> None:
    """Bars 10 days apart: the first fill's 1000 counts for the next two fills, not the fourth
    (30 days after the first, the window excludes it)."""
    bars = [(100.0, 100.0, 100.0, 100.0, 1e6)] * 6
    script = {1: (OrderSide.BUY, 10.0, None), 4: (OrderSide.BUY, 1.0, None)}
    kernel = run(bars, script, step=10 * DAY, taker_fee=0.001, fee_tiers=TIERS)
    # fill 1 at bar 2 (day 20), fill 2 at bar 5 (day 50): 30 days later, the 1000 has left the window
    assert [f.fee for f in kernel.result.fills] == pytest.approx([1.0, 0.1])


def test_venue_fee_override_ignores_the_tiers() -> None:
    bars = [(100.0, 100.0, 100.0, 100.0, 1e6)] * 4
    script = {k: (OrderSide.BUY, 10.0, None) for k in range(1, 4)}
    kernel = run(bars, script, venue={"taker_fee": 0.002}, taker_fee=0.001, fee_tiers=TIERS)
    assert [f.fee for f in kernel.result.fills] == pytest.approx([2.0, 2.0, 2.0])


def test_a_buy_slipped_beyond_the_exact_tick_grid_is_canceled_and_one_below_fills_on_it() -> None:
    """Tick 1e-8 holds 2 ** 46 ticks exactly (703,687.44). An open of 1,000,000.00 slipped 2 bps is
    1,000,200.00, 1.0002e14 ticks: ``round_price_up`` gave 1000199.99999999, a tick under the slipped
    price (its noise slack passes a tick there); the venue now cancels the order. 700,000.00 slipped is
    700,140.00 (7.0014e13 ticks) and fills there."""
    venue = {"slippage": {"model": "fixed", "bps": 2.0}}
    big = [(1e6, 1e6, 1e6, 1e6, 10.0), (1e6, 1.01e6, 0.99e6, 1e6, 10.0)]
    kernel = run(big, {1: (OrderSide.BUY, 1.0, None)}, venue=venue, tick_size=1e-8, lot_size=1e-8)
    assert not kernel.result.fills
    (order,) = kernel.result.orders
    assert order.status == "CANCELED" and order.reason == (
        "slipped price 1000200.0 is 100020000000000 ticks of 1e-08, more than floats hold exactly on that grid "
        "(below 70368744177664 ticks: 2 ** 46 over the grid's integer 1)"
    )
    below = [(7e5, 7e5, 7e5, 7e5, 10.0), (7e5, 7.01e5, 6.99e5, 7e5, 10.0)]
    kernel = run(below, {1: (OrderSide.BUY, 1.0, None)}, venue=venue, tick_size=1e-8, lot_size=1e-8)
    assert [f.price for f in kernel.result.fills] == [700140.0]
