"""Slippage models on trade and quote fills, with hand-derived prices (tick 0.01).

A taker fill on a print moves against the trader by the model's basis points of the printed
price, rounded to the tick against the trader and capped by the order's limit; a resting
limit (maker) never slips. The volume model reads the print's size, the volatility model the
quote's spread or the move from the previous trade.
"""

from __future__ import annotations

from typing import Any

import pytest

from tradebus.engine.messages import Liquidity, OrderCanceled, OrderSide, OrderType
from tradebus.execution.config import VenueConfig
from tradebus.execution.costs import SlippageConfig, tick_slippage_bps

from .conftest import build_stack, quote, trade

BUY, SELL = OrderSide.BUY, OrderSide.SELL


def fill_on_trades(side: OrderSide, prints: list[tuple[float, float]], slippage: dict[str, Any], **order: Any) -> Any:
    """Submit after the first print; return the order's single fill."""
    s = build_stack(venue=VenueConfig(fill_on="trades", slippage=SlippageConfig(**slippage)))
    s.feed_trade(trade(1_000, *prints[0]))
    coid = s.submit(side, 1.0, **order)
    for k, (px, size) in enumerate(prints[1:], start=1):
        s.feed_trade(trade(1_000 + k, px, size=size))
    (fill,) = s.fills(coid)
    return fill


@pytest.mark.parametrize(("side", "expected"), [(BUY, 100.10), (SELL, 99.90)])
def test_fixed_bps_on_a_trade(side: OrderSide, expected: float) -> None:
    # 10 bps of 100.00 = 0.10 against the trader
    fill = fill_on_trades(side, [(100.0, 1.0), (100.0, 1.0)], {"bps": 10.0})
    assert fill.last_px == expected and fill.liquidity == Liquidity.TAKER


def test_fixed_bps_rounds_against_the_trader() -> None:
    # 10 bps of 100.37 = 0.10037: buy 100.47037 -> 100.48, sell 100.26963 -> 100.26
    assert fill_on_trades(BUY, [(100.0, 1.0), (100.37, 1.0)], {"bps": 10.0}).last_px == 100.48
    assert fill_on_trades(SELL, [(100.0, 1.0), (100.37, 1.0)], {"bps": 10.0}).last_px == 100.26


def test_volume_participation_reads_the_print_size() -> None:
    # 1.0 of a 4.0 print: 100 * (1/4) ** 0.5 = 50 bps of 100.00 -> 100.50; of a 100.0 print: 10 bps
    model = {"model": "volume", "impact_bps": 100.0, "exponent": 0.5}
    assert fill_on_trades(BUY, [(100.0, 1.0), (100.0, 4.0)], model).last_px == 100.50
    assert fill_on_trades(BUY, [(100.0, 1.0), (100.0, 100.0)], model).last_px == 100.10


def test_volatility_on_trades_reads_the_move_from_the_previous_print() -> None:
    # previous 100.00, print 102.00: k * 2 / 102 * 1e4 = 0.51 * 196.08 = 100 bps of 102 -> sell at 100.98
    fill = fill_on_trades(SELL, [(100.0, 1.0), (102.0, 1.0)], {"model": "volatility", "k": 0.51})
    assert fill.last_px == 100.98


def test_volatility_on_quotes_reads_the_spread_and_volume_the_touch_size() -> None:
    # bid 99.00 / ask 101.00: a buy takes the ask; spread 2 over 101 at k = 0.505 is 100 bps -> 102.01
    s = build_stack(venue=VenueConfig(fill_on="quotes", slippage=SlippageConfig(model="volatility", k=0.505)))
    s.feed_quote(quote(1_000, 99.0, 101.0))
    coid = s.submit(BUY, 1.0)
    s.feed_quote(quote(1_001, 99.0, 101.0))
    assert [f.last_px for f in s.fills(coid)] == [102.01]
    # a sell of 1.0 against a bid of size 0.25: 100 * (1 / 0.25) ** 0.5 = 200 bps of 99.00 -> 97.02
    s = build_stack(venue=VenueConfig(fill_on="quotes", slippage=SlippageConfig(model="volume", impact_bps=100.0)))
    s.feed_quote(quote(1_000, 99.0, 101.0))
    coid = s.submit(SELL, 1.0)
    s.feed_quote(quote(1_001, 99.0, 101.0, size=0.25))
    assert [f.last_px for f in s.fills(coid)] == [97.02]


def test_a_marketable_limit_slips_only_up_to_its_limit_and_a_resting_one_not_at_all() -> None:
    # marketable buy limit 100.05 against a 100.00 print: 100.10 capped at 100.05
    capped = fill_on_trades(BUY, [(100.0, 1.0), (100.0, 1.0)], {"bps": 10.0}, order_type=OrderType.LIMIT, price=100.05)
    assert capped.last_px == 100.05 and capped.liquidity == Liquidity.TAKER
    # a buy limit 99.00 resting under a 100.00 print fills at 99.00 as maker, unslipped
    resting = fill_on_trades(BUY, [(100.0, 1.0), (98.5, 1.0)], {"bps": 10.0}, order_type=OrderType.LIMIT, price=99.0)
    assert resting.last_px == 99.0 and resting.liquidity == Liquidity.MAKER


def test_a_triggered_stop_slips_from_the_print() -> None:
    # sell stop 99.00 triggered by a 95.00 print: 95 * (1 - 0.001) = 94.905 -> 94.90
    fill = fill_on_trades(SELL, [(100.0, 1.0), (95.0, 1.0)], {"bps": 10.0}, order_type=OrderType.STOP_MARKET, trigger=99.0)
    assert fill.last_px == 94.90


def test_tick_slippage_formula() -> None:
    assert tick_slippage_bps(SlippageConfig(bps=3.0), 5.0, 100.0, 1.0, 2.0) == 3.0
    volume = SlippageConfig(model="volume", bps=1.0, impact_bps=10.0, exponent=1.0)
    assert tick_slippage_bps(volume, 2.0, 100.0, 4.0, 0.0) == 6.0  # 1 + 10 * 2/4
    assert tick_slippage_bps(SlippageConfig(model="volume", impact_bps=10.0, max_bps=30.0), 1.0, 1.0, 0.0, 0.0) == 30.0
    assert tick_slippage_bps(SlippageConfig(model="volatility", k=0.5), 1.0, 200.0, 1.0, 4.0) == pytest.approx(100.0)


def test_a_sell_slipped_to_zero_on_a_trade_is_canceled_with_the_reason() -> None:
    # 9,999.5 bps of a 100.00 print: 100 * (1 - 0.99995) = 0.005, rounded down to 0.00 (20,000 bps, -100.00,
    # stopped the run with "OrderError: order ...: fill price -100.0 must be > 0"; the config now refuses
    # 10,000 bps and more); a buy pays 199.995, rounded up to 200.00
    s = build_stack(venue=VenueConfig(fill_on="trades", slippage=SlippageConfig(bps=9_999.5)))
    s.feed_trade(trade(1_000, 100.0))
    coid = s.submit(SELL, 1.0)
    s.feed_trade(trade(1_001, 100.0))
    assert not s.fills(coid)
    (canceled,) = s.of_type(OrderCanceled)
    assert canceled.client_order_id == coid and canceled.reason.endswith("(on the tick grid and within the bar or limit: 0.0) is not a positive price")
    assert fill_on_trades(BUY, [(100.0, 1.0), (100.0, 1.0)], {"bps": 9_999.5}).last_px == 200.0
