"""ExecutionEngine: the submit -> risk -> OM -> venue -> fill -> portfolio -> bus path."""

from __future__ import annotations

import pytest

from tradebus.engine.messages import (
    CancelOrder,
    ModifyOrder,
    OrderAccepted,
    OrderCanceled,
    OrderDenied,
    OrderFilled,
    OrderModified,
    OrderSide,
    OrderStatus,
    OrderSubmitted,
    OrderType,
    PositionChanged,
)
from tradebus.errors import OrderError
from tradebus.execution.config import VenueConfig
from tradebus.risk.config import RiskConfig

from .conftest import IID, Stack, bar, build_stack, trade


def test_market_order_round_trip_publishes_events_in_order_and_books_fill() -> None:
    s = build_stack()
    s.feed_bar(bar(1, 100.0, 101.0, 99.0, 100.0))
    coid = s.submit(OrderSide.BUY, 1.0)
    assert [type(e) for e in s.events] == [OrderSubmitted]
    s.feed_bar(bar(2, 100.5, 102.0, 100.0, 101.0))
    assert [type(e) for e in s.events] == [OrderSubmitted, OrderAccepted, OrderFilled, PositionChanged]
    fill = s.events[2]
    assert fill.last_px == 100.5 and fill.last_qty == 1.0
    assert fill.fee == pytest.approx(100.5 * 0.0005)
    assert s.orders.order(coid).status == OrderStatus.FILLED
    assert s.portfolio.position(IID) == 1.0
    assert s.portfolio.equity() == pytest.approx(100_000.0 + (101.0 - 100.5) - fill.fee)


def test_strategy_sees_updated_position_inside_on_order_filled() -> None:
    s = build_stack()
    seen: list[float] = []
    s.bus.subscribe(OrderFilled, lambda e: seen.append(s.portfolio.position(IID)))
    s.feed_bar(bar(1, 100.0, 101.0, 99.0, 100.0))
    s.submit(OrderSide.SELL, 2.0)
    s.feed_bar(bar(2, 100.0, 101.0, 99.0, 100.0))
    assert seen == [-2.0]


def test_submit_order_when_risk_denies_publishes_denied_and_never_reaches_venue() -> None:
    s = build_stack(risk=RiskConfig(max_order_quantity=1.0))
    s.feed_bar(bar(1, 100.0, 101.0, 99.0, 100.0))
    coid = s.submit(OrderSide.BUY, 2.0)
    denied = s.of_type(OrderDenied)
    assert len(denied) == 1 and denied[0].reason == "max_order_quantity: 2.0 > 1.0"
    assert s.orders.order(coid).status == OrderStatus.DENIED
    s.feed_bar(bar(2, 100.0, 101.0, 99.0, 100.0))
    assert s.fills() == [] and s.venue.query_order(coid) is None


def test_cancel_resting_limit_arrives_before_next_bar_and_cancels_it() -> None:
    s = build_stack()
    s.feed_bar(bar(1, 100.0, 101.0, 99.0, 100.0))
    coid = s.submit(OrderSide.BUY, 1.0, OrderType.LIMIT, price=95.0)
    s.feed_bar(bar(2, 100.0, 101.0, 99.0, 100.0))
    assert s.orders.order(coid).status == OrderStatus.ACCEPTED
    now = s.clock.now_ns()
    s.engine.cancel(CancelOrder("s", IID, coid, now, now))
    s.feed_bar(bar(3, 100.0, 101.0, 90.0, 100.0))  # would have filled at 95
    assert s.orders.order(coid).status == OrderStatus.CANCELED
    assert s.fills() == [] and len(s.of_type(OrderCanceled)) == 1


def test_cancel_of_unknown_client_order_id_raises_order_error() -> None:
    s = build_stack()
    with pytest.raises(OrderError, match="nope"):
        s.engine.cancel(CancelOrder("s", IID, "nope", 0, 0))


def test_modify_limit_price_applies_on_arrival_and_fills_at_new_price() -> None:
    s = build_stack()
    s.feed_bar(bar(1, 100.0, 101.0, 99.0, 100.0))
    coid = s.submit(OrderSide.BUY, 1.0, OrderType.LIMIT, price=95.0)
    s.feed_bar(bar(2, 100.0, 101.0, 99.0, 100.0))
    now = s.clock.now_ns()
    s.engine.modify(ModifyOrder("s", IID, coid, now, now, price=98.0))
    s.feed_bar(bar(3, 100.0, 101.0, 97.0, 100.0))
    assert len(s.of_type(OrderModified)) == 1
    (fill,) = s.fills(coid)
    assert fill.last_px == 98.0
    assert s.orders.order(coid).price == 98.0


def half_filled_buy(risk: RiskConfig) -> tuple[Stack, str]:
    """A limit buy of 1.0 at 99 with 0.5 filled (a trade of 0.5 at 99; fills capped at the trade's size)."""
    s = build_stack(venue=VenueConfig(fill_on="trades", trade_size_limit=True), risk=risk)
    s.feed_trade(trade(1_000, 100.0))
    coid = s.submit(OrderSide.BUY, 1.0, OrderType.LIMIT, price=99.0)
    s.feed_trade(trade(1_001, 99.0, size=0.5))
    order = s.orders.order(coid)
    assert (order.status, order.filled_qty, order.leaves_qty) == (OrderStatus.PARTIALLY_FILLED, 0.5, 0.5)
    return s, coid


def test_modify_of_a_partly_filled_order_is_limited_on_its_new_quantity_and_notional() -> None:
    """max_order_quantity and max_order_notional limit the order's size: a buy of 1.0 with 0.5 filled,
    modified to 1.5, is an order of 1.5 (worth 1.5 * 100 = 150 at a limit of 100). Before, the gate saw the
    1.0 still to fill and the order rested with quantity 1.5 past a max_order_quantity of 1.2."""
    for risk, reason in (
        (RiskConfig(max_order_quantity=1.2), "modify: max_order_quantity: 1.5 > 1.2"),
        (RiskConfig(max_order_notional=120.0), "modify: max_order_notional: 150.0 > 120.0"),
    ):
        s, coid = half_filled_buy(risk)
        now = s.clock.now_ns()
        s.engine.modify(ModifyOrder("s", IID, coid, now, now, price=100.0, quantity=1.5))
        s.feed_trade(trade(1_002, 100.5, size=0.01))
        assert [d.reason for d in s.of_type(OrderDenied)] == [reason]
        order = s.orders.order(coid)
        assert (order.quantity, order.price, order.leaves_qty) == (1.0, 99.0, 0.5)
        assert s.of_type(OrderModified) == []


def test_modify_of_a_partly_filled_order_passes_its_size_limits_and_max_position_counts_what_can_fill() -> None:
    """At max_order_quantity 1.5, max_order_notional 150 and max_position 1.5, the modify to 1.5 at 100 passes:
    position 0.5 + the 1.0 that can still fill is 1.5 (the 0.5 filled is in the position, not counted twice)."""
    s, coid = half_filled_buy(RiskConfig(max_order_quantity=1.5, max_order_notional=150.0, max_position=1.5))
    now = s.clock.now_ns()
    s.engine.modify(ModifyOrder("s", IID, coid, now, now, price=100.0, quantity=1.5))
    s.feed_trade(trade(1_002, 100.5, size=0.01))
    assert s.of_type(OrderDenied) == []
    order = s.orders.order(coid)
    assert (order.quantity, order.price, order.leaves_qty) == (1.5, 100.0, 1.0)
    # one lot more is denied by max_position, counted on what can still fill
    s, coid = half_filled_buy(RiskConfig(max_position=1.5))
    s.engine.modify(ModifyOrder("s", IID, coid, now, now, price=100.0, quantity=1.501))
    (denied,) = s.of_type(OrderDenied)
    assert denied.reason == "modify: max_position: |0.5 + 1.001| = 1.501 > 1.5"


def test_modify_denied_by_risk_publishes_denied_and_order_keeps_working() -> None:
    s = build_stack(risk=RiskConfig(max_order_quantity=2.0))
    s.feed_bar(bar(1, 100.0, 101.0, 99.0, 100.0))
    coid = s.submit(OrderSide.BUY, 1.0, OrderType.LIMIT, price=95.0)
    s.feed_bar(bar(2, 100.0, 101.0, 99.0, 100.0))
    now = s.clock.now_ns()
    s.engine.modify(ModifyOrder("s", IID, coid, now, now, quantity=5.0))
    (denied,) = s.of_type(OrderDenied)
    assert denied.reason == "modify: max_order_quantity: 5.0 > 2.0"
    assert s.orders.order(coid).status == OrderStatus.ACCEPTED
