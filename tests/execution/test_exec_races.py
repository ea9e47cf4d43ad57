"""Races a real venue produces, one test each: nothing raises, no fill is lost or booked twice.

Each test fails on the order manager before the lifecycle fix (it raised on the event, before
the portfolio booked the fill, or left the order SUBMITTED / open).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tradebus.engine.messages import (
    AnomalyKind,
    CancelOrder,
    OrderAccepted,
    OrderCanceled,
    OrderSide,
    OrderStatus,
    OrderTimedOut,
)
from tradebus.errors import OrderError
from tradebus.engine.bus import MessageBus
from tradebus.engine.portfolio import Portfolio
from tradebus.execution.engine import OrderTimeouts
from tradebus.execution.journal import Journal
from tradebus.execution.orders import OrderManager

from .venue_model import IID, build_rig

S = OrderStatus
SEC = 1_000_000_000
TIMEOUTS = OrderTimeouts(
    submit_ns=5 * SEC, cancel_ns=5 * SEC, retry_ns=2 * SEC, check_ns=30 * SEC, not_found_grace_ns=10 * SEC
)


def test_fill_after_cancel_is_booked_with_an_anomaly_and_the_order_stays_canceled() -> None:
    rig = build_rig()
    coid = rig.submit(2.0)
    v = rig.venue
    v.arrive(coid)
    v.fill(coid, 0.5)  # the venue fills, then cancels the rest; the wire reorders the two
    v.cancels.append(coid)
    v.cancel_arrives(says_filled=False)
    v.deliver(0)  # accepted
    v.deliver(1)  # canceled, before the fill that happened first
    v.deliver(0)  # the fill
    assert rig.position() == 0.5
    assert rig.status(coid) == S.CANCELED and rig.orders.order(coid).filled_qty == 0.5
    assert [a.kind for a in rig.anomalies()] == [AnomalyKind.FILL_AFTER_CLOSE]


def test_cancel_reporting_more_filled_than_booked_fetches_the_lost_fill() -> None:
    rig = build_rig()
    coid = rig.submit(2.0)
    v = rig.venue
    v.arrive(coid)
    v.fill(coid, 0.5)
    v.cancels.append(coid)
    v.cancel_arrives()  # carries filled 0.5
    v.wire.pop(1)  # the fill is lost
    v.deliver_all()
    assert v.queries == 1 and rig.position() == 0.5
    assert rig.status(coid) == S.CANCELED and rig.orders.order(coid).filled_qty == 0.5


def test_fill_after_expiry_is_booked() -> None:
    rig = build_rig()
    coid = rig.submit(2.0)
    v = rig.venue
    v.arrive(coid)
    v.fill(coid, 1.0)
    v.expire(coid, says_filled=False)
    v.deliver(0)
    v.deliver(1)  # expired
    v.deliver(0)  # fill
    assert rig.position() == 1.0 and rig.status(coid) == S.EXPIRED
    assert rig.anomalies(AnomalyKind.FILL_AFTER_CLOSE)


def test_fill_before_acknowledgement_then_late_ack_then_more_fills() -> None:
    rig = build_rig()
    coid = rig.submit(2.0)
    v = rig.venue
    v.arrive(coid)
    v.fill(coid, 0.5)
    v.fill(coid, 1.5)
    v.deliver(1)  # first fill before the ack
    v.deliver(0)  # ack after a fill: stale, dropped
    v.deliver(0)  # last fill
    order = rig.orders.order(coid)
    assert order.status == S.FILLED and order.filled_qty == 2.0 and order.venue_order_id == "V1"
    assert rig.position() == 2.0
    assert [a.kind for a in rig.anomalies()] == [AnomalyKind.STALE_EVENT]


def test_duplicate_fill_is_booked_once() -> None:
    rig = build_rig()
    coid = rig.submit(2.0)
    v = rig.venue
    v.arrive(coid)
    v.fill(coid, 1.0)
    v.deliver(0)
    v.deliver(0, keep=True)
    v.deliver(0)  # the same fill again (same trade_id)
    assert rig.position() == 1.0 and len(rig.booked()) == 1
    assert rig.orders.order(coid).filled_qty == 1.0
    assert [a.kind for a in rig.anomalies()] == [AnomalyKind.DUPLICATE_FILL]


def test_duplicate_ack_and_cancel_are_dropped() -> None:
    rig = build_rig()
    coid = rig.submit(1.0)
    v = rig.venue
    v.arrive(coid)
    v.deliver(0, keep=True)
    v.deliver(0)
    v.cancels.append(coid)
    v.cancel_arrives()
    v.deliver(0, keep=True)
    v.deliver(0)
    assert rig.status(coid) == S.CANCELED
    assert [e.client_order_id for e in rig.published if type(e) in (OrderAccepted, OrderCanceled)] == [coid, coid]
    assert [a.kind for a in rig.anomalies()] == [AnomalyKind.DUPLICATE_EVENT, AnomalyKind.DUPLICATE_EVENT]


def test_a_repeated_cancel_telling_the_filled_quantity_the_first_did_not_is_kept_journaled_and_its_lost_fill_fetched(
    tmp_path: Path,
) -> None:
    """The cancel a cancel-replace's answer stood for told no filled quantity; the venue's own cancel, later,
    tells 0.5: it was dropped as a repeat with the quantity, and the fill whose frame was lost never fetched."""
    journal = Journal(tmp_path / "journal.sqlite")
    rig = build_rig(journal=journal)
    coid = rig.submit(2.0)
    v = rig.venue
    v.arrive(coid)
    v.deliver(0)
    v.fill(coid, 0.5)
    v.wire.pop(0)  # the fill's frame is lost
    v.cancels.append(coid)
    v.cancel_arrives(says_filled=False)
    v.deliver(0)
    assert rig.status(coid) == S.CANCELED and v.queries == 0
    now = rig.clock.now_ns()
    rig.engine.on_venue_event(OrderCanceled("s", IID, coid, "canceled by user", now, now, 0.5))  # the venue's own
    order = rig.orders.order(coid)
    assert order.status is S.CANCELED and order.venue_filled_qty == 0.5
    assert v.queries == 1 and rig.position() == 0.5 and order.filled_qty == 0.5
    assert [e.client_order_id for e in rig.published if type(e) is OrderCanceled] == [coid]  # one cancel for the strategies
    restored = OrderManager(MessageBus(), rig.clock)
    journal.replay(restored, Portfolio(rig.portfolio.instruments, 1e12), now)
    journal.close()
    assert restored.order(coid).venue_filled_qty == 0.5 and restored.order(coid).filled_qty == 0.5


def test_cancel_confirmation_after_fill_is_stale() -> None:
    rig = build_rig()
    coid = rig.submit(1.0)
    v = rig.venue
    v.arrive(coid)
    v.deliver(0)
    v.fill(coid, 1.0)
    v.deliver(0)
    now = rig.clock.now_ns()
    rig.engine.on_venue_event(OrderCanceled("s", IID, coid, "late cancel", now, now))
    assert rig.status(coid) == S.FILLED and rig.position() == 1.0
    assert rig.anomalies(AnomalyKind.STALE_EVENT)


def test_fill_for_unknown_client_id_is_booked_once_with_an_anomaly() -> None:
    rig = build_rig()
    v = rig.venue
    v.external_fill("web-123", OrderSide.SELL, 0.3)
    v.deliver(0, keep=True)
    v.deliver(0)
    assert rig.position() == -0.3 and len(rig.booked()) == 1
    assert rig.orders.get("web-123") is None  # no order invented
    assert [a.kind for a in rig.anomalies()] == [AnomalyKind.UNKNOWN_ORDER, AnomalyKind.DUPLICATE_FILL]


def test_status_event_for_unknown_client_id_is_reported_not_invented() -> None:
    rig = build_rig()
    now = rig.clock.now_ns()
    rig.engine.on_venue_event(OrderAccepted("s", IID, "ghost-1", "V9", now, now))
    assert rig.orders.get("ghost-1") is None and rig.anomalies(AnomalyKind.UNKNOWN_ORDER)


def test_submit_that_raises_after_reaching_the_venue_is_unknown_then_resolved_by_query() -> None:
    rig = build_rig()
    v = rig.venue
    v.fail_next_submit = "after"  # the venue took the order, the answer was lost
    coid = rig.submit(1.0)
    assert v.queries == 1 and rig.status(coid) == S.ACCEPTED  # queried at once, not left SUBMITTED
    v.fill(coid, 1.0)
    v.deliver_all()
    assert rig.status(coid) == S.FILLED and rig.position() == 1.0


def test_submit_that_raises_before_reaching_the_venue_never_stays_submitted() -> None:
    rig = build_rig()
    rig.venue.fail_next_submit = "before"
    coid = rig.submit(1.0)
    order = rig.orders.order(coid)
    assert order.status == S.REJECTED and "never arrived" in order.reason
    assert rig.orders.open_count == 0  # target_position is not blocked by a phantom working order


def test_submit_that_raises_with_timeouts_stays_unknown_until_the_grace_ends() -> None:
    rig = build_rig(TIMEOUTS)
    rig.venue.fail_next_submit = "before"
    coid = rig.submit(1.0)
    assert rig.status(coid) == S.UNKNOWN  # not assumed rejected: the request may be in flight
    rig.clock.advance_to(rig.clock.now_ns() + 9 * SEC)
    assert rig.status(coid) == S.UNKNOWN and rig.venue.queries >= 4  # asked again every retry_ns
    rig.clock.advance_to(rig.clock.now_ns() + 2 * SEC)
    assert rig.status(coid) == S.REJECTED


def test_unknown_partly_filled_then_canceled_resolves_canceled() -> None:
    rig = build_rig()
    v = rig.venue
    coid = rig.submit(2.0)
    v.arrive(coid)
    v.fill(coid, 0.5)
    v.cancels.append(coid)
    v.cancel_arrives()
    v.wire.clear()  # all lost
    with pytest.raises(OrderError, match="needs UNKNOWN"):
        rig.engine.resolve_unknown(coid)
    rig.engine.on_venue_event(OrderTimedOut("s", IID, coid, "cancel timed out", 2, 2))
    order = rig.engine.resolve_unknown(coid)
    assert order.status == S.CANCELED and not order.is_open
    assert order.filled_qty == 0.5 and rig.position() == 0.5


def test_submit_without_answer_times_out_to_unknown_and_is_resolved_by_query() -> None:
    rig = build_rig(TIMEOUTS)
    v = rig.venue
    coid = rig.submit(1.0)
    v.arrive(coid)
    v.fill(coid, 1.0)
    v.wire.clear()  # ack and fill lost
    rig.clock.advance_to(rig.clock.now_ns() + 5 * SEC)
    assert rig.status(coid) == S.FILLED and rig.position() == 1.0


def test_cancel_without_confirmation_times_out_and_query_finds_the_order_working() -> None:
    rig = build_rig(TIMEOUTS)
    v = rig.venue
    coid = rig.submit(1.0)
    v.arrive(coid)
    v.deliver()
    now = rig.clock.now_ns()
    rig.engine.cancel(CancelOrder("s", IID, coid, now, now))
    v.cancels.clear()  # the cancel never reaches the venue
    rig.clock.advance_to(now + 5 * SEC)
    assert rig.status(coid) == S.ACCEPTED  # UNKNOWN, then the venue says it still works
    assert v.queries == 1


def test_lost_fill_of_a_working_order_is_recovered_by_the_periodic_check() -> None:
    rig = build_rig(TIMEOUTS)
    v = rig.venue
    coid = rig.submit(1.0)
    v.arrive(coid)
    v.deliver()
    v.fill(coid, 1.0)
    v.wire.clear()
    rig.clock.advance_to(rig.clock.now_ns() + 61 * SEC)
    assert rig.status(coid) == S.FILLED and rig.position() == 1.0


def test_late_accept_reopens_an_order_rejected_because_the_venue_did_not_know_it() -> None:
    rig = build_rig()  # no timeouts: a venue that does not know the order is believed at once
    v = rig.venue
    v.fail_next_submit = "before"
    coid = rig.submit(1.0)
    assert rig.status(coid) == S.REJECTED
    v.submits[coid] = (rig.orders.order(coid), rig.clock.now_ns())
    v.arrive(coid)
    v.fill(coid, 1.0)
    v.deliver_all()
    assert rig.status(coid) == S.FILLED and rig.position() == 1.0
    assert rig.anomalies(AnomalyKind.REOPENED)


def test_timeouts_must_be_positive() -> None:
    with pytest.raises(OrderError, match="submit_ns"):
        OrderTimeouts(submit_ns=0)


def test_a_released_closed_order_is_not_forgotten_while_a_retry_of_its_query_is_due() -> None:
    """An order whose query went unanswered closes (the venue's cancel arrives) and is released while the retry of
    the query is due: it stays known until the retry was answered, then is forgotten (forgotten earlier, the retry
    asked about an order no longer known)."""
    rig = build_rig(TIMEOUTS)
    v = rig.venue
    rig.orders.keep_released, rig.orders.keep_released_ns = 0, 0
    coid = rig.submit(1.0)
    v.arrive(coid)
    v.deliver()
    now = rig.clock.now_ns()
    rig.engine.cancel(CancelOrder("s", IID, coid, now, now))
    v.fail_queries = True
    rig.clock.advance_to(now + 5 * SEC)  # the cancel timed out: UNKNOWN; its query is not answered
    assert rig.status(coid) == S.UNKNOWN and v.queries == 1
    v.cancel_arrives()
    v.deliver()
    assert rig.status(coid) == S.CANCELED
    rig.orders.release(coid)  # as the daemon's outputs do once its row is written
    assert rig.orders.get(coid) is not None
    v.fail_queries = False
    rig.clock.advance_to(rig.clock.now_ns() + 2 * SEC)  # the retry asks again, answered
    assert v.queries == 2 and rig.status(coid) == S.CANCELED
    other = rig.submit(1.0)
    v.arrive(other)
    v.fill(other, 1.0)
    v.deliver_all()
    rig.orders.release(other)
    assert rig.orders.get(coid) is None and rig.orders.get(other) is None
    assert rig.position() == 1.0
