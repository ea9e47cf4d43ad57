"""A query's answer telling an amend made at the venue that no event told (a restart, a private stream down).

The end-to-end cases (a daemon restarted or reconnected against each venue's account emulator) are in
``tests/live/test_live_unheard_amend.py``; these are the answers no emulator gives: an amend followed by fills
to the new total, and answers the order cannot take (below its fills, off the instrument's grid), which must
leave it as it was.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from loguru import logger

from tradebus.engine.bus import MessageBus
from tradebus.engine.messages import OrderAnomaly, OrderModified, OrderStatus
from tradebus.engine.portfolio import Portfolio
from tradebus.execution.journal import Journal
from tradebus.execution.orders import OrderManager

from .venue_model import build_rig

S = OrderStatus


def _modified(rig: object) -> list[OrderModified]:
    return [e for e in rig.published if type(e) is OrderModified]  # type: ignore[attr-defined]


def test_an_amend_the_answer_tells_modifies_the_order_and_is_journaled(tmp_path: Path) -> None:
    """A limit buy of 1.0 @ 100 amended at the venue to 1.5 @ 100.25: the query's answer says so."""
    journal = Journal(tmp_path / "journal.sqlite")
    rig = build_rig(journal=journal)
    rig.engine._bus.subscribe(OrderModified, rig.published.append)  # noqa: SLF001
    coid = rig.submit(1.0)
    rig.venue.arrive(coid)
    rig.venue.deliver_all()
    rig.venue.amend_unheard(coid, 1.5, 100.25)
    order = rig.engine.reconcile_order(coid)
    assert (order.quantity, order.price, order.status) == (1.5, 100.25, S.ACCEPTED)
    assert [(e.quantity, e.price) for e in _modified(rig)] == [(1.5, 100.25)]
    rig.engine.reconcile_order(coid)  # the same answer again: nothing new
    assert len(_modified(rig)) == 1
    restored = OrderManager(MessageBus(), rig.clock)
    journal.replay(restored, Portfolio(rig.portfolio.instruments, 1e12), rig.clock.now_ns())
    journal.close()
    assert (restored.order(coid).quantity, restored.order(coid).price) == (1.5, 100.25)


def test_an_order_amended_up_then_filled_to_the_new_total_is_filled_not_overfilled() -> None:
    """1.0 amended to 1.5, then filled 1.5 while unheard: the answer's fills are of the amended order."""
    rig = build_rig()
    rig.engine._bus.subscribe(OrderModified, rig.published.append)  # noqa: SLF001
    coid = rig.submit(1.0)
    rig.venue.arrive(coid)
    rig.venue.deliver_all()
    rig.venue.amend_unheard(coid, 1.5)
    rig.venue.fill(coid, 1.5)
    rig.venue.wire.clear()  # the fill's frame is lost too
    order = rig.engine.reconcile_order(coid)
    assert (order.status, order.quantity, order.filled_qty) == (S.FILLED, 1.5, 1.5)
    assert rig.position() == 1.5
    assert rig.anomalies() == []


@pytest.mark.parametrize(
    ("quantity", "price", "why"),
    [
        (0.4, None, "quantity 0.4 is below the 0.6 filled"),
        (1.0005, None, "quantity 1.0005 is not a multiple of the lot size 0.001"),
        (None, 100.005, "price 100.005 is not a multiple of the tick size 0.01"),
    ],
    ids=["below-filled", "off-lot", "off-tick"],
)
def test_an_answer_the_order_cannot_take_leaves_it_as_it_was_and_says_why(
    quantity: float | None, price: float | None, why: str,
) -> None:
    """A limit buy of 1.0 @ 100 with 0.6 filled; the venue's answer says a total below that, or off the grid."""
    rig = build_rig()
    rig.engine._bus.subscribe(OrderModified, rig.published.append)  # noqa: SLF001
    coid = rig.submit(1.0)
    rig.venue.arrive(coid)
    rig.venue.fill(coid, 0.6)
    rig.venue.deliver_all()
    rig.venue.amend_unheard(coid, quantity, price)
    errors: list[str] = []
    sink = logger.add(lambda m: errors.append(str(m)), level="ERROR")
    try:
        order = rig.engine.reconcile_order(coid)
    finally:
        logger.remove(sink)
    assert (order.quantity, order.price, order.filled_qty, order.status) == (1.0, 100.0, 0.6, S.PARTIALLY_FILLED)
    assert _modified(rig) == [] and rig.position() == 0.6
    assert len(errors) == 1 and coid in errors[0] and why in errors[0]
    assert [e for e in rig.published if type(e) is OrderAnomaly] == []
