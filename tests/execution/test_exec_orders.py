"""Order manager: deterministic ids, the transition table, invalid transitions, overfill, UNKNOWN."""

from __future__ import annotations

import gc
import math
import tracemalloc

import pytest
from loguru import logger

from tradebus.engine.bus import MessageBus
from tradebus.engine.clock import SimulatedClock
from tradebus.engine.messages import (
    AnomalyKind,
    Liquidity,
    OrderAccepted,
    OrderAnomaly,
    OrderCanceled,
    OrderDenied,
    OrderExpired,
    OrderFilled,
    OrderModified,
    OrderRejected,
    OrderSide,
    OrderStatus,
    OrderSubmitted,
    OrderTriggered,
    OrderType,
    SubmitOrder,
)
from tradebus.errors import InvalidTransition, OrderError
from tradebus.execution.orders import (
    TERMINAL_STATUSES,
    TRANSITIONS,
    Order,
    OrderManager,
    OrderResolved,
    OrderTimedOut,
)

from .conftest import IID, bar, build_stack

S = OrderStatus


def _om() -> OrderManager:
    return OrderManager(MessageBus(), SimulatedClock(5))


def _cmd(coid: str = "", qty: float = 2.0, typ: OrderType = OrderType.LIMIT) -> SubmitOrder:
    return SubmitOrder("strat", IID, coid, OrderSide.BUY, qty, 0, 0, typ, 100.0)


def _fill(coid: str, qty: float, px: float = 100.0, trade_id: str = "T1") -> OrderFilled:
    return OrderFilled("strat", IID, coid, "V1", trade_id, OrderSide.BUY, qty, px, 0.01, Liquidity.MAKER, 1, 1)


def _accepted(om: OrderManager, coid: str = "c-1", qty: float = 2.0) -> None:
    om.create(_cmd(coid, qty))
    om.apply(OrderSubmitted("strat", IID, coid, 1, 1))
    om.apply(OrderAccepted("strat", IID, coid, "V1", 1, 1))


def test_client_order_ids_are_deterministic_per_strategy() -> None:
    a, b = _om(), _om()
    ids_a = [a.next_client_order_id("x"), a.next_client_order_id("x"), a.next_client_order_id("y")]
    ids_b = [b.next_client_order_id("x"), b.next_client_order_id("x"), b.next_client_order_id("y")]
    assert ids_a == ids_b and len(set(ids_a)) == 3  # the layout: tests/execution/test_exec_client_ids.py


def test_create_without_id_assigns_next_id_and_duplicate_id_raises() -> None:
    om = _om()
    order = om.create(_cmd())
    coid = order.client_order_id
    assert coid == _om().next_client_order_id("strat") and order.status == S.INITIALIZED and order.ts_created == 5
    with pytest.raises(OrderError, match=f"{coid}: client_order_id already used"):
        om.create(_cmd(coid))
    # the refused command leaves the order holding the id as it was, and counts no order
    assert om.get(coid) is order and om.orders() == [order] and om.created == 1


def test_full_lifecycle_partial_then_filled_tracks_qty_and_average_price() -> None:
    om = _om()
    _accepted(om)
    order = om.apply(_fill("c-1", 0.5, 100.0, "T1"))
    assert order.status == S.PARTIALLY_FILLED and order.leaves_qty == 1.5
    order = om.apply(_fill("c-1", 1.5, 104.0, "T2"))
    assert order.status == S.FILLED and order.filled_qty == 2.0
    assert order.avg_px == pytest.approx((0.5 * 100 + 1.5 * 104) / 2.0)
    assert om.open_orders() == [] and order.leaves_qty == 0.0


def test_denied_only_from_initialized() -> None:
    om = _om()
    order = om.create(_cmd("c-1"))
    om.apply(OrderDenied("strat", IID, "c-1", "max_order_quantity: 2.0 > 1.0", 1, 1))
    assert order.status == S.DENIED and order.reason == "max_order_quantity: 2.0 > 1.0"
    _accepted(om, "c-2")
    with pytest.raises(InvalidTransition, match="c-2: invalid transition from ACCEPTED on denied"):
        om.apply(OrderDenied("strat", IID, "c-2", "late", 1, 1))


def test_venue_event_for_an_order_never_sent_is_dropped_not_applied() -> None:
    om = _om()
    order = om.create(_cmd("c-1"))
    assert om.apply(OrderAccepted("strat", IID, "c-1", "V1", 1, 1)) is None
    assert order.status == S.INITIALIZED


def test_submitted_twice_is_a_bug_and_names_order_state_and_event() -> None:
    om = _om()
    _accepted(om)
    with pytest.raises(InvalidTransition) as err:
        om.apply(OrderSubmitted("strat", IID, "c-1", 2, 2))
    message = str(err.value)
    assert "c-1" in message and "ACCEPTED" in message and "OrderSubmitted" in message


def test_mark_submitted_leaves_the_order_as_applying_its_event_does() -> None:
    by_event, direct = _om(), _om()
    for om in (by_event, direct):
        om.create(_cmd("c-1"))
    by_event.apply(OrderSubmitted("strat", IID, "c-1", 7, 7))
    direct.mark_submitted(direct.order("c-1"), 7)
    a, b = by_event.order("c-1"), direct.order("c-1")
    assert (b.status, b.ts_last) == (a.status, a.ts_last) == (S.SUBMITTED, 7)
    assert direct.open_orders() == [b] and direct.count_open() == by_event.count_open() == 1
    with pytest.raises(InvalidTransition):
        direct.mark_submitted(b, 8)  # a second submission of one order is a bug, as with the event
    # A second order of the instrument counts in its working orders as with the event, and both leave it.
    for om in (by_event, direct):
        om.create(_cmd("c-2"))
    by_event.apply(OrderSubmitted("strat", IID, "c-2", 8, 8))
    direct.mark_submitted(direct.order("c-2"), 8)
    assert dict(direct.working_instruments) == dict(by_event.working_instruments) == {IID: 2}
    for om in (by_event, direct):
        for coid in ("c-1", "c-2"):
            om.apply(OrderCanceled("strat", IID, coid, "gone", 9, 9))
        assert not om.has_open(IID) and dict(om.working_instruments) == {} and om.count_open() == 0


def test_the_engine_builds_order_submitted_only_for_a_journal_or_a_subscriber() -> None:
    stack = build_stack()
    bus = MessageBus()  # a bus nobody listens on for OrderSubmitted (the stack's records every event)
    stack.engine._bus = bus  # noqa: SLF001
    seen: list[OrderSubmitted] = []
    stack.engine.submit(_cmd("c-1", typ=OrderType.MARKET))
    assert stack.orders.order("c-1").status is S.SUBMITTED and bus.published == 0
    bus.subscribe(OrderSubmitted, seen.append)
    stack.engine.submit(_cmd("c-2", typ=OrderType.MARKET))
    assert [e.client_order_id for e in seen] == ["c-2"] and stack.orders.order("c-2").status is S.SUBMITTED


@pytest.mark.parametrize("terminal", sorted(TERMINAL_STATUSES))
def test_no_event_leaves_a_terminal_state(terminal: OrderStatus) -> None:
    assert not any(state == terminal for state, _ in TRANSITIONS)


def test_fill_beyond_quantity_is_booked_as_overfill() -> None:
    om = _om()
    _accepted(om)
    om.apply(_fill("c-1", 1.5, trade_id="T1"))
    order = om.apply(_fill("c-1", 1.0, trade_id="T2"))
    assert order is not None and order.filled_qty == 2.5 and order.status == S.FILLED


def test_a_fill_listed_after_a_query_closed_its_order_filled_short_is_a_fill_after_close_not_an_overfill() -> None:
    bus = MessageBus()
    om = OrderManager(bus, SimulatedClock(5))
    anomalies: list[OrderAnomaly] = []
    bus.subscribe(OrderAnomaly, anomalies.append)
    _accepted(om)
    om.apply(_fill("c-1", 0.5, trade_id="T1"))
    om.apply(OrderResolved("strat", IID, "c-1", S.FILLED, "resolved by venue query", 2, 2))  # its history lists T1 only
    order = om.apply(_fill("c-1", 1.5, trade_id="T2"))  # listed (or streamed) late
    assert order is not None and order.filled_qty == 2.0 and order.status == S.FILLED
    assert [(a.kind, a.detail) for a in anomalies] == [
        (AnomalyKind.FILL_AFTER_CLOSE, "fill of 1.5 after FILLED with 0.5 booked: booked")
    ]
    om.apply(_fill("c-1", 0.5, trade_id="T3"))  # beyond the quantity: an overfill still
    assert anomalies[-1].kind is AnomalyKind.OVERFILL


def test_duplicate_trade_id_fill_is_dropped() -> None:
    om = _om()
    _accepted(om)
    om.apply(_fill("c-1", 0.5, trade_id="T1"))
    assert om.apply(_fill("c-1", 0.5, trade_id="T1")) is None
    assert om.order("c-1").filled_qty == 0.5


def test_an_order_of_many_fills_keeps_every_trade_id_in_order_then_in_a_set_and_drops_repeats_of_any() -> None:
    """Up to 16 fills the trade ids are a tuple in fill order, from the 17th a set; a repeat of any is dropped."""
    om = _om()
    _accepted(om, qty=20.0)
    for n in range(1, 17):
        om.apply(_fill("c-1", 1.0, trade_id=f"T{n}"))
    order = om.order("c-1")
    assert order.trade_ids == tuple(f"T{n}" for n in range(1, 17))
    for n in range(17, 20):
        om.apply(_fill("c-1", 1.0, trade_id=f"T{n}"))
    assert order.trade_ids == {f"T{n}" for n in range(1, 20)}
    for repeat in ("T1", "T16", "T17", "T19"):
        assert om.apply(_fill("c-1", 1.0, trade_id=repeat)) is None
    assert (order.filled_qty, order.status) == (19.0, S.PARTIALLY_FILLED)
    assert om.apply(_fill("c-1", 1.0, trade_id="T20")) is order
    assert (order.filled_qty, order.status, len(order.trade_ids)) == (20.0, S.FILLED, 20)


def test_stop_order_triggered_then_filled() -> None:
    om = _om()
    _accepted(om)
    assert om.apply(OrderTriggered("strat", IID, "c-1", 2, 2)).status == S.TRIGGERED
    assert om.apply(_fill("c-1", 2.0)).status == S.FILLED


def test_modify_updates_price_and_quantity_but_not_below_filled() -> None:
    om = _om()
    _accepted(om)
    om.apply(_fill("c-1", 1.0))
    order = om.apply(OrderModified("strat", IID, "c-1", 3.0, 99.0, math.nan, 2, 2))
    assert (order.quantity, order.price, order.status) == (3.0, 99.0, S.PARTIALLY_FILLED)
    with pytest.raises(OrderError, match="below the filled quantity"):
        om.apply(OrderModified("strat", IID, "c-1", 0.5, 99.0, math.nan, 2, 2))


def test_an_amend_answered_after_the_fills_that_reached_its_quantity_leaves_the_order_filled() -> None:
    """Amended from 2 to 1, then 1 filled, the stream's fill before the amend's answer: the venue's
    order is complete. Before, the answer raised OrderError and the order stayed PARTIALLY_FILLED."""
    om = _om()
    _accepted(om)
    om.apply(_fill("c-1", 1.0))
    order = om.apply(OrderModified("strat", IID, "c-1", 1.0, 99.0, math.nan, 2, 2))
    assert (order.quantity, order.price, order.status, order.is_open) == (1.0, 99.0, S.FILLED, False)
    assert om.open_orders() == []


@pytest.mark.parametrize(
    ("event", "status"),
    [
        (OrderCanceled("strat", IID, "c-1", "user", 2, 2), S.CANCELED),
        (OrderExpired("strat", IID, "c-1", "IOC", 2, 2), S.EXPIRED),
    ],
)
def test_working_order_can_be_canceled_or_expired(event: object, status: OrderStatus) -> None:
    om = _om()
    _accepted(om)
    assert om.apply(event).status == status


def test_the_expected_repeat_of_a_close_is_no_anomaly_but_a_further_repeat_is() -> None:
    """A live venue closed the order from a cancel-replace's answer; its stream repeats the cancel once:
    dropped without an anomaly (it was a duplicate_event WARNING on every modify). Another repeat is one."""
    bus = MessageBus()
    om = OrderManager(bus, SimulatedClock(5))
    anomalies: list[OrderAnomaly] = []
    bus.subscribe(OrderAnomaly, anomalies.append)
    _accepted(om)
    assert om.apply(OrderCanceled("strat", IID, "c-1", "replaced", 2, 2)) is not None
    om.expect_repeat("c-1")
    assert om.apply(OrderCanceled("strat", IID, "c-1", "canceled", 3, 3, 0.0)) is None  # the stream's
    assert anomalies == []
    order = om.order("c-1")
    assert om.note_venue_filled(order, 0.0) and order.venue_filled_qty == 0.0  # the engine keeps what it told
    assert om.apply(OrderCanceled("strat", IID, "c-1", "canceled", 3, 3, 0.0)) is None  # a genuine repeat
    assert [(a.kind, a.detail) for a in anomalies] == [(AnomalyKind.DUPLICATE_EVENT, "canceled repeated in CANCELED")]
    assert order.status is S.CANCELED and order.ts_last == 2


def test_rejected_from_submitted_records_reason() -> None:
    om = _om()
    om.create(_cmd("c-1"))
    om.apply(OrderSubmitted("strat", IID, "c-1", 1, 1))
    order = om.apply(OrderRejected("strat", IID, "c-1", "post_only: would take", 2, 2))
    assert order.status == S.REJECTED and order.reason == "post_only: would take"


def test_timeout_moves_submitted_to_unknown_not_rejected_and_stays_open() -> None:
    om = _om()
    om.create(_cmd("c-1"))
    om.apply(OrderSubmitted("strat", IID, "c-1", 1, 1))
    order = om.apply(OrderTimedOut("strat", IID, "c-1", "submit timed out after 5 s", 2, 2))
    assert order.status == S.UNKNOWN and order.is_open and om.open_orders() == [order]


def test_unknown_resolves_to_reported_status_and_rejects_nonsense() -> None:
    om = _om()
    om.create(_cmd("c-1"))
    om.apply(OrderSubmitted("strat", IID, "c-1", 1, 1))
    om.apply(OrderTimedOut("strat", IID, "c-1", "timeout", 2, 2))
    with pytest.raises(InvalidTransition, match="cannot resolve UNKNOWN to INITIALIZED"):
        om.apply(OrderResolved("strat", IID, "c-1", S.INITIALIZED, "", 3, 3))
    assert om.apply(OrderResolved("strat", IID, "c-1", S.ACCEPTED, "venue has it", 3, 3)).status == S.ACCEPTED


def test_engine_resolve_unknown_books_missed_fill_from_venue_query() -> None:
    s = build_stack()
    s.feed_bar(bar(1, 100.0, 101.0, 99.0, 100.0))
    coid = s.submit(OrderSide.BUY, 1.0)
    # The venue's answers are lost (as on a timed-out connection): the OM hears only a timeout.
    lost: list[object] = []
    s.venue.bind(lost.append)
    s.feed_bar(bar(2, 100.0, 101.0, 99.0, 100.0))
    s.venue.bind(s.engine.on_venue_event)
    s.engine.on_venue_event(OrderTimedOut("s", IID, coid, "submit timed out", 2, 2))
    assert s.orders.order(coid).status == S.UNKNOWN and s.portfolio.position(IID) == 0.0
    order = s.engine.resolve_unknown(coid)
    assert order.status == S.FILLED and order.filled_qty == 1.0
    assert s.portfolio.position(IID) == 1.0
    assert len(s.fills(coid)) == 1


def test_engine_resolve_unknown_when_venue_never_got_order_resolves_rejected() -> None:
    s = build_stack()
    s.feed_bar(bar(1, 100.0, 101.0, 99.0, 100.0))
    order = s.orders.create(SubmitOrder("s", IID, "", OrderSide.BUY, 1.0, 0, 0))
    s.orders.apply(OrderSubmitted("s", IID, order.client_order_id, 0, 0))
    s.engine.on_venue_event(OrderTimedOut("s", IID, order.client_order_id, "timeout", 1, 1))
    s.engine.resolve_unknown(order.client_order_id)
    assert order.status == S.REJECTED and "never arrived" in order.reason


def test_engine_resolve_unknown_on_working_order_resolves_accepted() -> None:
    s = build_stack()
    s.feed_bar(bar(1, 100.0, 101.0, 99.0, 100.0))
    coid = s.submit(OrderSide.BUY, 1.0, OrderType.LIMIT, price=90.0)
    s.feed_bar(bar(2, 100.0, 101.0, 99.0, 100.0))
    s.engine.on_venue_event(OrderTimedOut("s", IID, coid, "cancel timed out", 2, 2))
    assert s.engine.resolve_unknown(coid).status == S.ACCEPTED


def test_resolve_unknown_on_order_not_unknown_raises() -> None:
    s = build_stack()
    s.feed_bar(bar(1, 100.0, 101.0, 99.0, 100.0))
    coid = s.submit(OrderSide.BUY, 1.0)
    with pytest.raises(OrderError, match="needs UNKNOWN"):
        s.engine.resolve_unknown(coid)


def test_an_order_is_equal_only_to_itself_and_starts_with_ts_last_at_its_creation() -> None:
    a = Order("c-1", "s", IID, OrderSide.BUY, OrderType.LIMIT, 1.0, 100.0, ts_created=7, ts_last=7)
    b = Order("c-1", "s", IID, OrderSide.BUY, OrderType.LIMIT, 1.0, 100.0, ts_created=7, ts_last=7)
    assert a != b and a == a
    assert len({a, b}) == 2  # hashable by identity: orders key dicts and sets
    assert (a.ts_created, a.ts_last, a.status, a.filled_qty, a.trade_ids) == (7, 7, OrderStatus.INITIALIZED, 0.0, ())
    # The order manager sets both at creation: the strategy's decision time, else its clock's (5).
    decided = _om().create(SubmitOrder("strat", IID, "c-3", OrderSide.BUY, 2.0, 3, 3))
    undated = _om().create(SubmitOrder("strat", IID, "c-4", OrderSide.BUY, 2.0, 0, 0))
    assert [(o.ts_created, o.ts_last) for o in (decided, undated)] == [(3, 3), (5, 5)]
    assert math.isnan(a.avg_px)
    assert Order("c-2", "s", IID, OrderSide.SELL, OrderType.MARKET, 1.0, ts_created=7, ts_last=9).ts_last == 9
    keys = list(a.to_dict())  # the snapshot's keys as before: in name order, trade ids last
    assert keys == [*sorted(set(keys) - {"trade_ids"}), "trade_ids"]


def test_has_open_follows_every_way_an_order_opens_and_closes() -> None:
    om = _om()
    _accepted(om, "c-1")
    _accepted(om, "c-2")
    om.mark_submitted(om.create(_cmd("c-3")), 1)
    assert om.has_open(IID) and dict(om.working_instruments) == {IID: 3}
    om.apply(_fill("c-1", 2.0))  # filled: closed
    om.apply(_fill("c-2", 1.0, trade_id="T2"))  # partly filled: still working
    om.apply(OrderCanceled("strat", IID, "c-3", "user", 2, 2))
    assert dict(om.working_instruments) == {IID: 1}
    om.apply(_fill("c-2", 1.0, trade_id="T3"))
    assert not om.has_open(IID) and not om.working_instruments and not om.has_open("OTHER.VENUE")
    om.restore(om.order("c-2"))  # a closed order restored stays closed
    assert not om.has_open(IID)


def test_a_released_order_is_forgotten_only_past_both_windows_and_when_nothing_asks_about_it_anymore() -> None:
    """A released closed order stays known while among the latest ``keep_released`` or released less than
    ``keep_released_ns`` ago (a burst of releases does not forget an order whose late events may still come),
    and while ``on_forget`` says a request about it is on its way."""
    clock = SimulatedClock(0)
    om = OrderManager(MessageBus(), clock)
    om.keep_released, om.keep_released_ns = 2, 1_000
    busy = {"c-0"}
    asked: list[str] = []
    om.on_forget = lambda coid: asked.append(coid) or coid not in busy
    for i in range(6):
        _accepted(om, f"c-{i}")
        om.apply(_fill(f"c-{i}", 2.0, trade_id=f"T{i}"))
        om.release(f"c-{i}")
    assert all(om.get(f"c-{i}") is not None for i in range(6)) and asked == []  # all released within 1 µs
    clock.advance_to(1_000)
    _accepted(om, "c-6")
    om.apply(_fill("c-6", 2.0, trade_id="T6"))
    om.release("c-6")
    assert [i for i in range(7) if om.get(f"c-{i}") is not None] == [0, 5, 6]  # c-0: a query of it is on its way
    assert asked == [f"c-{i}" for i in range(5)]
    busy.clear()
    clock.advance_to(2_000)
    for i in (7, 8):
        _accepted(om, f"c-{i}")
        om.apply(_fill(f"c-{i}", 2.0, trade_id=f"T{i}"))
        om.release(f"c-{i}")
    assert [i for i in range(9) if om.get(f"c-{i}") is not None] == [7, 8]


def test_the_trade_ids_of_fills_of_unknown_orders_kept_are_bounded_and_the_latest_still_book_once() -> None:
    """A daemon kept the (client id, trade id) of every fill of an order it never created for as long as it ran.
    The latest ``keep_trade_ids`` are kept: a repeat of one of them is still a duplicate, and memory stays flat."""
    bus = MessageBus()
    om = OrderManager(bus, SimulatedClock(5))
    kept = 10_000  # the default keep_trade_ids

    def external(n: int) -> bool:
        return om.note_external_fill(_fill(f"ext-{n:06d}", 1.0, trade_id=f"X{n:09d}"))

    logger.disable("tradebus.execution.orders")  # the captured log would grow with each fill's warning
    tracemalloc.start()  # before the warm-up: the keys it allocates and the measured part frees are traced
    try:
        assert all(external(n) for n in range(kept))  # warm-up: the window is full
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        assert all(external(n) for n in range(kept, kept + 5_000))
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
        logger.enable("tradebus.execution.orders")
    # Keeping every key costs ~170 bytes a fill: ~0.9 MB here.
    assert grown < 100_000, f"{grown} bytes retained over 5000 fills of unknown orders"
    anomalies: list[OrderAnomaly] = []
    bus.subscribe(OrderAnomaly, anomalies.append)
    assert not any(external(n) for n in range(5_000, kept + 5_000, 100))  # the latest: booked once
    assert [a.kind for a in anomalies] == [AnomalyKind.DUPLICATE_FILL] * 100


def test_a_released_order_an_event_reopened_is_forgotten_once_it_closed_again() -> None:
    """An order released REJECTED that a late acknowledgement reopened was dropped from the released orders when
    its turn came while it worked, so it stayed known for the rest of the run once it closed. It stays known
    while it works and is forgotten past the window once closed again."""
    clock = SimulatedClock(0)
    om = OrderManager(MessageBus(), clock)
    om.keep_released, om.keep_released_ns = 1, 0
    om.create(_cmd("c-0"))
    om.apply(OrderSubmitted("strat", IID, "c-0", 1, 1))
    om.apply(OrderRejected("strat", IID, "c-0", "the venue did not know it yet", 1, 1))
    om.release("c-0")  # as the daemon's outputs do once its REJECTED row is written
    om.apply(OrderAccepted("strat", IID, "c-0", "V1", 2, 2))  # it was alive at the venue after all
    assert om.order("c-0").status is S.ACCEPTED
    for i in (1, 2):
        _accepted(om, f"c-{i}")
        om.apply(_fill(f"c-{i}", 2.0, trade_id=f"T{i}"))
        om.release(f"c-{i}")
    assert om.get("c-0") is not None and om.get("c-1") is None  # working: kept
    om.apply(_fill("c-0", 2.0, trade_id="T0"))
    for i in (3, 4):
        _accepted(om, f"c-{i}")
        om.apply(_fill(f"c-{i}", 2.0, trade_id=f"T{i}"))
        om.release(f"c-{i}")
    assert [i for i in range(5) if om.get(f"c-{i}") is not None] == [4]
