"""Simulated venue v1: bars (intrabar path), trades, quotes, TIF, post-only, reduce-only, latency."""

from __future__ import annotations

import math

import pytest

from tradebus.engine.messages import (
    CancelOrder,
    Liquidity,
    ModifyOrder,
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderSide,
    OrderStatus,
    OrderSubmitted,
    OrderTriggered,
    OrderType,
    SubmitOrder,
    Quote,
    TimeInForce,
    Trade,
)
from tradebus.execution.config import VenueConfig
from tradebus.execution.simulated import SimulatedVenue

from .conftest import BAR_NS, IID, bar, build_stack, quote, trade

BUY, SELL = OrderSide.BUY, OrderSide.SELL
LIMIT, STOP, STOP_LIMIT = OrderType.LIMIT, OrderType.STOP_MARKET, OrderType.STOP_LIMIT


def _started(**kw: object):
    s = build_stack(**kw)  # type: ignore[arg-type]
    s.feed_bar(bar(1, 100.0, 101.0, 99.0, 100.0))
    return s


# ------------------------------------------------------------------------ bars


def test_market_order_decided_on_bar_fills_at_next_bar_open_not_decision_bar() -> None:
    s = _started()
    coid = s.submit(BUY, 1.0)
    assert s.fills() == []
    s.feed_bar(bar(2, 103.0, 104.0, 102.0, 103.5))
    (fill,) = s.fills(coid)
    assert fill.last_px == 103.0 and fill.liquidity == Liquidity.TAKER and fill.ts_event == 2 * BAR_NS


def test_resting_buy_limit_fills_at_limit_as_maker_when_low_reaches_it() -> None:
    s = _started()
    coid = s.submit(BUY, 1.0, LIMIT, price=98.0)
    s.feed_bar(bar(2, 100.0, 101.0, 97.5, 100.0))
    (fill,) = s.fills(coid)
    assert fill.last_px == 98.0 and fill.liquidity == Liquidity.MAKER
    assert fill.fee == pytest.approx(98.0 * 0.0002)


def test_resting_buy_limit_not_reached_stays_working() -> None:
    s = _started()
    coid = s.submit(BUY, 1.0, LIMIT, price=98.0)
    s.feed_bar(bar(2, 100.0, 101.0, 98.5, 100.0))
    assert s.fills() == [] and s.orders.order(coid).status == OrderStatus.ACCEPTED


def test_limit_fill_through_mode_needs_price_beyond_limit() -> None:
    s = _started(venue=VenueConfig(limit_fill="through"))
    coid = s.submit(BUY, 1.0, LIMIT, price=98.0)
    s.feed_bar(bar(2, 100.0, 101.0, 98.0, 100.0))  # touches only
    assert s.fills() == []
    s.feed_bar(bar(3, 100.0, 101.0, 97.99, 100.0))
    assert s.fills(coid)[0].last_px == 98.0


@pytest.mark.parametrize("limit_fill", ["touch", "through"])
@pytest.mark.parametrize(("side", "limit", "edge_bar", "beyond_bar"), [
    (BUY, 98.0, (100.0, 101.0, 98.0, 100.0), (100.0, 101.0, 97.99, 100.0)),  # the low exactly at the limit
    (SELL, 101.0, (100.0, 101.0, 99.0, 100.0), (100.0, 101.01, 99.0, 100.0)),  # the high exactly at the limit
])  # fmt: skip
def test_a_resting_limit_exactly_at_the_bars_extreme_fills_on_touch_only(
    side: OrderSide, limit: float, edge_bar: tuple[float, ...], beyond_bar: tuple[float, ...], limit_fill: str
) -> None:
    """The docs' rule (``limit_fill``): "touch" fills when the bar reaches the limit, "through" only when it
    trades beyond it; both fill at the limit as maker."""
    s = _started(venue=VenueConfig(limit_fill=limit_fill))  # type: ignore[arg-type]
    coid = s.submit(side, 1.0, LIMIT, price=limit)
    s.feed_bar(bar(2, *edge_bar))
    assert [(f.last_px, f.liquidity) for f in s.fills(coid)] == ([(limit, Liquidity.MAKER)] if limit_fill == "touch" else [])
    s.feed_bar(bar(3, *beyond_bar))
    assert [(f.last_px, f.liquidity) for f in s.fills(coid)] == [(limit, Liquidity.MAKER)]


def test_resting_buy_limit_fills_at_open_when_bar_gaps_below_it() -> None:
    s = _started()
    coid = s.submit(BUY, 1.0, LIMIT, price=95.0)
    s.feed_bar(bar(2, 100.0, 101.0, 99.0, 100.0))
    s.feed_bar(bar(3, 93.0, 94.0, 92.0, 93.5))
    (fill,) = s.fills(coid)
    assert fill.last_px == 93.0 and fill.liquidity == Liquidity.MAKER


def test_buy_limit_marketable_on_arrival_fills_at_open_as_taker() -> None:
    s = _started()
    coid = s.submit(BUY, 1.0, LIMIT, price=105.0)
    s.feed_bar(bar(2, 101.0, 102.0, 100.0, 101.0))
    (fill,) = s.fills(coid)
    assert fill.last_px == 101.0 and fill.liquidity == Liquidity.TAKER


def test_sell_stop_triggers_at_trigger_price_and_fills_there() -> None:
    s = _started()
    coid = s.submit(SELL, 1.0, STOP, trigger=98.0)
    s.feed_bar(bar(2, 100.0, 101.0, 97.0, 99.0))
    assert [type(e) for e in s.events if getattr(e, "client_order_id", None) == coid][-3:] == [
        OrderAccepted,
        OrderTriggered,
        OrderFilled,
    ]
    (fill,) = s.fills(coid)
    assert fill.last_px == 98.0 and fill.liquidity == Liquidity.TAKER


def test_sell_stop_fills_at_open_when_bar_gaps_through_trigger() -> None:
    s = _started()
    coid = s.submit(SELL, 1.0, STOP, trigger=98.0)
    s.feed_bar(bar(2, 96.0, 97.0, 95.0, 96.5))
    assert s.fills(coid)[0].last_px == 96.0


def test_buy_stop_limit_triggers_then_rests_at_limit_when_trigger_price_above_limit() -> None:
    s = _started()
    # Down bar path: open 100 -> high 103 -> low 99.5 -> close 100.
    coid = s.submit(BUY, 1.0, STOP_LIMIT, price=100.0, trigger=102.0)
    s.feed_bar(bar(2, 100.5, 103.0, 99.5, 100.0))
    assert s.orders.order(coid).status == OrderStatus.FILLED
    (fill,) = s.fills(coid)
    assert fill.last_px == 100.0 and fill.liquidity == Liquidity.MAKER


def test_stop_limit_triggered_but_limit_never_reached_stays_triggered() -> None:
    s = _started()
    coid = s.submit(BUY, 1.0, STOP_LIMIT, price=100.0, trigger=102.0)
    s.feed_bar(bar(2, 101.0, 103.0, 100.5, 102.5))  # up bar: low 100.5 comes before the trigger
    assert s.orders.order(coid).status == OrderStatus.TRIGGERED and s.fills() == []
    s.feed_bar(bar(3, 101.0, 101.5, 99.0, 100.0))
    assert s.fills(coid)[0].last_px == 100.0


def test_up_bar_path_fills_buy_limit_at_low_before_sell_limit_at_high() -> None:
    s = _started()
    sell = s.submit(SELL, 1.0, LIMIT, price=103.0)
    buy = s.submit(BUY, 1.0, LIMIT, price=98.0)
    s.feed_bar(bar(2, 100.0, 104.0, 97.0, 102.0))  # up bar: open -> low -> high -> close
    assert [f.client_order_id for f in s.fills()] == [buy, sell]


def test_down_bar_path_fills_sell_limit_at_high_before_buy_limit_at_low() -> None:
    s = _started()
    buy = s.submit(BUY, 1.0, LIMIT, price=98.0)
    sell = s.submit(SELL, 1.0, LIMIT, price=103.0)
    s.feed_bar(bar(2, 100.0, 104.0, 97.0, 99.0))  # down bar: open -> high -> low -> close
    assert [f.client_order_id for f in s.fills()] == [sell, buy]


def test_long_with_stop_and_take_profit_in_same_down_bar_takes_profit_first() -> None:
    s = _started()
    s.submit(BUY, 1.0)
    s.feed_bar(bar(2, 100.0, 100.5, 99.5, 100.0))
    stop = s.submit(SELL, 1.0, STOP, trigger=97.0, reduce_only=True)
    take = s.submit(SELL, 1.0, LIMIT, price=103.0, reduce_only=True)
    s.feed_bar(bar(3, 100.0, 104.0, 96.0, 98.0))
    assert s.orders.order(take).status == OrderStatus.FILLED
    assert s.orders.order(stop).status == OrderStatus.CANCELED  # reduce-only: nothing left to reduce
    assert s.portfolio.position(IID) == 0.0


def test_ioc_limit_not_marketable_on_arrival_expires() -> None:
    s = _started()
    coid = s.submit(BUY, 1.0, LIMIT, price=95.0, tif=TimeInForce.IOC)
    s.feed_bar(bar(2, 100.0, 101.0, 90.0, 100.0))
    assert s.orders.order(coid).status == OrderStatus.EXPIRED and s.fills() == []
    assert len(s.of_type(OrderExpired)) == 1


def test_fok_limit_marketable_on_arrival_fills_completely() -> None:
    s = _started()
    coid = s.submit(BUY, 2.0, LIMIT, price=101.0, tif=TimeInForce.FOK)
    s.feed_bar(bar(2, 100.0, 101.0, 99.0, 100.0))
    assert s.orders.order(coid).status == OrderStatus.FILLED and s.fills(coid)[0].last_qty == 2.0


def test_post_only_limit_that_would_take_liquidity_is_rejected() -> None:
    s = _started()
    coid = s.submit(BUY, 1.0, LIMIT, price=101.0, post_only=True)
    s.feed_bar(bar(2, 100.0, 101.0, 99.0, 100.0))
    (rej,) = s.of_type(OrderRejected)
    assert rej.client_order_id == coid and rej.reason.startswith("post_only")
    assert s.orders.order(coid).status == OrderStatus.REJECTED


def test_post_only_limit_resting_is_accepted_and_fills_as_maker() -> None:
    s = _started()
    coid = s.submit(BUY, 1.0, LIMIT, price=99.0, post_only=True)
    s.feed_bar(bar(2, 100.0, 101.0, 98.0, 100.0))
    assert s.fills(coid)[0].liquidity == Liquidity.MAKER


def test_post_only_limit_modified_to_a_marketable_price_keeps_its_price_and_never_takes() -> None:
    """Resting buy 98 moved to 102 while bar 3 opens at 100: the amend would take, so it is
    ignored (no taker fill at 100); bar 4 comes down to 97.5 and fills it at 98 as maker."""
    s = _started()
    coid = s.submit(BUY, 1.0, LIMIT, price=98.0, post_only=True)
    s.feed_bar(bar(2, 100.0, 101.0, 99.0, 100.0))
    s.engine.modify(ModifyOrder("s", IID, coid, 2 * BAR_NS, 2 * BAR_NS, price=102.0))
    s.feed_bar(bar(3, 100.0, 101.0, 99.0, 100.0))
    assert s.fills(coid) == [] and s.orders.order(coid).price == 98.0
    s.feed_bar(bar(4, 100.0, 100.0, 97.5, 99.0))
    assert [(f.last_px, f.liquidity) for f in s.fills(coid)] == [(98.0, Liquidity.MAKER)]


@pytest.mark.parametrize("fill_on", ["trades", "quotes"])
def test_post_only_limit_modified_to_a_marketable_price_on_ticks_never_takes(fill_on: str) -> None:
    s = build_stack(venue=VenueConfig(fill_on=fill_on))
    feed = (lambda ts, px: s.feed_trade(trade(ts, px))) if fill_on == "trades" else (
        lambda ts, px: s.feed_quote(quote(ts, px - 0.1, px))
    )
    feed(1_000, 100.0)
    coid = s.submit(BUY, 1.0, LIMIT, price=98.0, post_only=True)
    feed(1_001, 100.0)
    s.engine.modify(ModifyOrder("s", IID, coid, 1_001, 1_001, price=102.0))
    feed(1_002, 100.5)
    assert s.fills(coid) == [] and s.orders.order(coid).price == 98.0
    assert s.orders.order(coid).status == OrderStatus.ACCEPTED


def test_post_only_stop_limit_that_would_take_at_its_trigger_expires() -> None:
    """Up bar 100 -> 99 -> 104 -> 103.5: the buy stop at 102 triggers at 102, marketable against
    its limit 103, so the post-only order expires there instead of a taker fill at 102."""
    s = _started()
    coid = s.submit(BUY, 1.0, STOP_LIMIT, price=103.0, trigger=102.0, post_only=True)
    s.feed_bar(bar(2, 100.0, 104.0, 99.0, 103.5))
    assert s.fills(coid) == []
    (expired,) = s.of_type(OrderExpired)
    assert expired.client_order_id == coid and expired.reason.startswith("post_only")


def test_post_only_stop_limit_gapped_above_its_limit_rests_and_fills_as_maker() -> None:
    """Bar 2 opens at 104, through the trigger 102 and above the limit 103: triggered at the open,
    it rests at 103 (not taking) and fills there as maker when the bar comes down to 102.5."""
    s = _started()
    coid = s.submit(BUY, 1.0, STOP_LIMIT, price=103.0, trigger=102.0, post_only=True)
    s.feed_bar(bar(2, 104.0, 104.5, 102.5, 103.0))
    assert [(f.last_px, f.liquidity) for f in s.fills(coid)] == [(103.0, Liquidity.MAKER)]


def test_post_only_stop_limit_on_trades_expires_instead_of_taking() -> None:
    s = build_stack(venue=VenueConfig(fill_on="trades"))
    s.feed_trade(trade(1_000, 100.0))
    coid = s.submit(BUY, 1.0, STOP_LIMIT, price=103.0, trigger=102.0, post_only=True)
    s.feed_trade(trade(1_001, 100.0))
    s.feed_trade(trade(1_002, 102.5))
    assert s.fills(coid) == [] and s.orders.order(coid).status == OrderStatus.EXPIRED


def test_post_only_limit_arriving_before_any_price_rests_and_fills_as_maker() -> None:
    """No trade before the order: it cannot be judged marketable, and post-only it must not
    take, so it rests; the next trade at 99 passes through its 100 bid: maker at 100."""
    s = build_stack(venue=VenueConfig(fill_on="trades"))
    coid = s.submit(BUY, 1.0, LIMIT, price=100.0, post_only=True)
    s.feed_trade(trade(1_000, 99.0))
    assert [(f.last_px, f.liquidity) for f in s.fills(coid)] == [(100.0, Liquidity.MAKER)]


def test_reduce_only_when_flat_is_rejected() -> None:
    s = _started()
    coid = s.submit(SELL, 1.0, reduce_only=True)
    s.feed_bar(bar(2, 100.0, 101.0, 99.0, 100.0))
    assert s.orders.order(coid).status == OrderStatus.REJECTED
    assert s.portfolio.position(IID) == 0.0


def test_reduce_only_larger_than_position_is_capped_and_never_flips() -> None:
    s = _started()
    s.submit(BUY, 1.0)
    s.feed_bar(bar(2, 100.0, 101.0, 99.0, 100.0))
    coid = s.submit(SELL, 3.0, reduce_only=True)
    s.feed_bar(bar(3, 100.0, 101.0, 99.0, 100.0))
    (fill,) = s.fills(coid)
    assert fill.last_qty == 1.0
    assert s.orders.order(coid).status == OrderStatus.CANCELED
    assert s.portfolio.position(IID) == 0.0


@pytest.mark.parametrize("mode", ["cap", "reject"])
def test_reduce_only_closing_a_position_left_by_float_sums_fills_its_whole_lots(mode: str) -> None:
    # 0.03 - 0.01 - 0.01 is 0.009999999999999997 in floats: the reduce-only sell of the 0.01 left was
    # capped there (a fill of 0.009999999999999997, off the 0.001 lot grid) or, rejecting, canceled
    s = _started(venue=VenueConfig(reduce_only_mode=mode))  # type: ignore[arg-type]
    s.submit(BUY, 0.03)
    s.feed_bar(bar(2, 100.0, 101.0, 99.0, 100.0))
    for i in (3, 4):
        s.submit(SELL, 0.01)
        s.feed_bar(bar(i, 100.0, 101.0, 99.0, 100.0))
    coid = s.submit(SELL, 0.01, reduce_only=True)
    s.feed_bar(bar(5, 100.0, 101.0, 99.0, 100.0))
    (fill,) = s.fills(coid)
    assert fill.last_qty == 0.01
    assert s.orders.order(coid).status == OrderStatus.FILLED
    assert abs(s.portfolio.position(IID)) < 1e-15
    later = s.submit(BUY, 0.01, reduce_only=True)  # flat: nothing left to reduce, not a fill of the float residue
    s.feed_bar(bar(6, 100.0, 101.0, 99.0, 100.0))
    assert s.fills(later) == [] and s.orders.order(later).status is not OrderStatus.FILLED


def test_reduce_only_reject_mode_cancels_oversized_order_without_fill() -> None:
    s = _started(venue=VenueConfig(reduce_only_mode="reject"))
    s.submit(BUY, 1.0)
    s.feed_bar(bar(2, 100.0, 101.0, 99.0, 100.0))
    coid = s.submit(SELL, 3.0, reduce_only=True)
    s.feed_bar(bar(3, 100.0, 101.0, 99.0, 100.0))
    assert s.fills(coid) == [] and s.orders.order(coid).status == OrderStatus.CANCELED
    assert s.portfolio.position(IID) == 1.0


def test_latency_longer_than_a_bar_delays_fill_to_the_first_bar_opening_after_arrival() -> None:
    # Decided at bar 1's close, arrives one bar and 1 ns later: inside bar 3 (which opened at bar
    # 2's close), so bar 3's open is a price from before the arrival; bar 4 is the first it may use.
    s = _started(venue=VenueConfig(latency_ns=BAR_NS + 1))
    coid = s.submit(BUY, 1.0)
    s.feed_bar(bar(2, 101.0, 102.0, 100.0, 101.0))
    s.feed_bar(bar(3, 104.0, 105.0, 103.0, 104.0))
    assert s.fills() == [] and s.orders.order(coid).status == OrderStatus.SUBMITTED
    s.feed_bar(bar(4, 107.0, 108.0, 106.0, 107.0))
    (fill,) = s.fills(coid)
    assert fill.last_px == 107.0
    (acc,) = s.of_type(OrderAccepted)
    assert acc.ts_event == BAR_NS + BAR_NS + 1


def test_latency_of_exactly_one_bar_arrives_at_the_next_open() -> None:
    s = _started(venue=VenueConfig(latency_ns=BAR_NS))
    coid = s.submit(BUY, 1.0)
    s.feed_bar(bar(2, 101.0, 102.0, 100.0, 101.0))
    s.feed_bar(bar(3, 104.0, 105.0, 103.0, 104.0))
    assert s.fills(coid)[0].last_px == 104.0


def test_slippage_on_taker_fill_is_clamped_to_bar_high() -> None:
    s = _started(venue=VenueConfig(slippage_bps=100.0))
    coid = s.submit(BUY, 1.0)
    s.feed_bar(bar(2, 100.0, 100.5, 99.0, 100.2))  # 1% would be 101.0 > high
    assert s.fills(coid)[0].last_px == 100.5


def test_slippage_on_taker_fill_moves_price_against_trader_by_bps() -> None:
    s = _started(venue=VenueConfig(slippage_bps=10.0))
    coid = s.submit(SELL, 1.0)
    s.feed_bar(bar(2, 100.0, 101.0, 99.0, 100.0))
    assert s.fills(coid)[0].last_px == pytest.approx(99.9)


@pytest.mark.parametrize(("side", "open_", "expected"), [(BUY, 600.05, "600.18"), (SELL, 600.06, "599.93")])
def test_slipped_fill_price_is_an_exact_tick_multiple_without_float_noise(
    side: OrderSide, open_: float, expected: str
) -> None:
    # 60018 * 0.01 == 600.1800000000001 and 59993 * 0.01 == 599.9300000000001 in float64.
    s = _started(venue=VenueConfig(slippage_bps=2.0))
    coid = s.submit(side, 1.0)
    s.feed_bar(bar(2, open_, 601.0, 599.0, 600.5))
    assert repr(s.fills(coid)[0].last_px) == expected


def test_fee_override_from_config_replaces_instrument_fee() -> None:
    s = _started(venue=VenueConfig(taker_fee=0.01))
    coid = s.submit(BUY, 2.0)
    s.feed_bar(bar(2, 100.0, 101.0, 99.0, 100.0))
    assert s.fills(coid)[0].fee == pytest.approx(2.0 * 100.0 * 0.01)


def test_unknown_instrument_order_is_rejected_by_venue() -> None:
    s = _started()
    order = s.orders.create(SubmitOrder("s", "ETHUSDT.BINANCE", "x-1", BUY, 1.0, 0, 0))
    s.orders.apply(OrderSubmitted("s", "ETHUSDT.BINANCE", "x-1", 0, 0))
    s.venue.submit(order)
    assert order.status == OrderStatus.REJECTED and "unknown instrument" in order.reason


# ---------------------------------------------------------------- trades/quotes


def test_trade_mode_fills_only_at_trade_strictly_after_arrival() -> None:
    s = build_stack(venue=VenueConfig(fill_on="trades", latency_ns=10))
    s.feed_trade(trade(1_000, 100.0))
    coid = s.submit(BUY, 1.0)
    s.feed_trade(trade(1_010, 101.0))  # arrival is 1_010: not strictly after
    assert s.fills() == []
    s.feed_trade(trade(1_011, 102.0))
    (fill,) = s.fills(coid)
    assert fill.last_px == 102.0 and fill.ts_event == 1_011


@pytest.mark.parametrize("fast_path", [True, False])
@pytest.mark.parametrize("fill_on", ["trades", "quotes"])
def test_order_accepted_on_its_arrival_alert_never_fills_on_an_event_received_before_it_arrived(
    monkeypatch: pytest.MonkeyPatch, fill_on: str, fast_path: bool
) -> None:
    # a paper venue's alert accepts the order when it is due; the feed then releases events it
    # held back (trades behind a gap in the trade ids), received before the order arrived
    monkeypatch.setattr(SimulatedVenue, "fast_path", fast_path)
    s = build_stack(venue=VenueConfig(fill_on=fill_on, latency_ns=10), arrival_alerts=True)
    feed = s.feed_trade if fill_on == "trades" else s.feed_quote

    def event(ts: int, px: float) -> Trade | Quote:
        return trade(ts, px) if fill_on == "trades" else quote(ts, px - 1.0, px)

    feed(event(1_000, 100.0))
    coid = s.submit(BUY, 1.0)  # arrives at 1_010
    s.clock.advance_to(2_000)  # its alert
    assert [e.ts_event for e in s.of_type(OrderAccepted)] == [1_010]
    for ts in (1_005, 1_009):  # held back, released after the acceptance
        feed(event(ts, 99.0))
    assert s.fills() == []
    feed(event(2_001, 102.0))
    (fill,) = s.fills(coid)
    assert fill.last_px == 102.0 and fill.ts_event == 2_001


def test_trade_mode_resting_limit_fills_at_limit_as_maker() -> None:
    s = build_stack(venue=VenueConfig(fill_on="trades"))
    s.feed_trade(trade(1_000, 100.0))
    coid = s.submit(BUY, 1.0, LIMIT, price=99.0)
    s.feed_trade(trade(1_001, 99.5))
    s.feed_trade(trade(1_002, 98.5))
    (fill,) = s.fills(coid)
    assert fill.last_px == 99.0 and fill.liquidity == Liquidity.MAKER


def test_trade_mode_size_limit_gives_partial_fills() -> None:
    s = build_stack(venue=VenueConfig(fill_on="trades", trade_size_limit=True))
    s.feed_trade(trade(1_000, 100.0))
    coid = s.submit(BUY, 1.0, LIMIT, price=99.0)
    s.feed_trade(trade(1_001, 99.0, size=0.4))
    assert s.orders.order(coid).status == OrderStatus.PARTIALLY_FILLED
    assert [f.last_qty for f in s.venue.query_order(coid).fills] == [0.4]  # type: ignore[union-attr]
    s.feed_trade(trade(1_002, 98.0, size=0.25))
    s.feed_trade(trade(1_003, 98.0, size=5.0))
    assert [f.last_qty for f in s.fills(coid)] == [0.4, 0.25, pytest.approx(0.35)]
    assert s.orders.order(coid).status == OrderStatus.FILLED
    # The venue's report lists the same fills, in order.
    assert s.venue.query_order(coid).fills == tuple(s.fills(coid))  # type: ignore[union-attr]


def test_trade_mode_fok_expires_when_trade_size_too_small() -> None:
    s = build_stack(venue=VenueConfig(fill_on="trades", trade_size_limit=True))
    s.feed_trade(trade(1_000, 100.0))
    coid = s.submit(BUY, 1.0, tif=TimeInForce.FOK)
    s.feed_trade(trade(1_001, 100.0, size=0.5))
    assert s.orders.order(coid).status == OrderStatus.EXPIRED and s.fills() == []


def test_trade_mode_stop_triggers_on_print_beyond_trigger_and_fills_at_print() -> None:
    s = build_stack(venue=VenueConfig(fill_on="trades"))
    s.feed_trade(trade(1_000, 100.0))
    coid = s.submit(SELL, 1.0, STOP, trigger=99.0)
    s.feed_trade(trade(1_001, 99.5))
    assert s.fills() == []
    s.feed_trade(trade(1_002, 98.7))
    assert s.fills(coid)[0].last_px == 98.7
    assert len(s.of_type(OrderTriggered)) == 1


def test_quote_mode_market_buy_fills_at_ask_and_sell_at_bid() -> None:
    s = build_stack(venue=VenueConfig(fill_on="quotes"))
    s.feed_quote(quote(1_000, 99.9, 100.1))
    buy = s.submit(BUY, 1.0)
    sell = s.submit(SELL, 1.0)
    s.feed_quote(quote(1_001, 100.0, 100.2))
    assert s.fills(buy)[0].last_px == 100.2
    assert s.fills(sell)[0].last_px == 100.0


def test_quote_mode_post_only_buy_at_or_above_ask_is_rejected() -> None:
    s = build_stack(venue=VenueConfig(fill_on="quotes"))
    s.feed_quote(quote(1_000, 99.9, 100.1))
    coid = s.submit(BUY, 1.0, LIMIT, price=100.1, post_only=True)
    s.feed_quote(quote(1_001, 99.9, 100.1))
    assert s.orders.order(coid).status == OrderStatus.REJECTED


def test_cancel_arriving_before_fill_wins_on_trades() -> None:
    s = build_stack(venue=VenueConfig(fill_on="trades"))
    s.feed_trade(trade(1_000, 100.0))
    coid = s.submit(BUY, 1.0, LIMIT, price=99.0)
    s.feed_trade(trade(1_001, 100.0))
    s.engine.cancel(CancelOrder("s", IID, coid, 1_001, 1_001))
    s.feed_trade(trade(1_002, 98.0))
    assert s.fills() == [] and s.orders.order(coid).status == OrderStatus.CANCELED
    assert len(s.of_type(OrderCanceled)) == 1


def test_query_order_reports_venue_state_and_fills() -> None:
    s = _started()
    coid = s.submit(BUY, 1.0)
    s.feed_bar(bar(2, 100.0, 101.0, 99.0, 100.0))
    report = s.venue.query_order(coid)
    assert report is not None
    assert report.status == OrderStatus.FILLED and report.filled_qty == 1.0 and len(report.fills) == 1
    assert not math.isnan(report.fills[0].last_px)
