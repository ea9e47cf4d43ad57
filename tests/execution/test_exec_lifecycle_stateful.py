"""Stateful property test of the order lifecycle against a venue whose truth is the oracle.

The model venue (:mod:`.venue_model`) decides everything a real venue decides: when a submit
arrives (or whether it is discarded for arriving too late), acceptance or rejection, fills of
any size, expiries, and cancels when they arrive. Requests may fail on the way (the call raises,
before or after the venue got it). Every event the venue sends sits on a wire from which
hypothesis delivers any event next, delivers it twice, or drops it, while the clock moves and
the engine's timeouts, retries and periodic checks query the venue.

Checked at every step, against the venue's truth only:

* the position equals the signed sum of the venue's fills the engine was told about (delivered
  on the wire or listed in a query's answer): no fill lost, none booked twice, none invented;
* every order the engine holds is one the strategy submitted, and its filled quantity is the
  sum of its told fills;

and at the end, once the venue has handled every request, every event was delivered or lost,
and the clock has run past every timeout: every order's state and filled quantity equal the
venue's (an order the venue never received is REJECTED), and the position equals all of the
venue's fills of this process's orders (plus the external fills that arrived: one lost on
the wire is for the live reconciliation from the venue's trade history).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from loguru import logger

from tradebus.engine.messages import CancelOrder, OrderFilled, OrderSide, OrderStatus
from tradebus.execution.engine import OrderTimeouts

from .venue_model import IID, WORKING, Rig, build_rig

S = OrderStatus
SEC = 1_000_000_000
TIMEOUTS = OrderTimeouts(
    submit_ns=5 * SEC, cancel_ns=5 * SEC, retry_ns=2 * SEC, check_ns=30 * SEC, not_found_grace_ns=10 * SEC
)
QTY = st.sampled_from([0.25, 0.5, 1.0, 2.0])


@pytest.fixture(autouse=True)
def _quiet() -> Iterator[None]:
    """Thousands of anomaly warnings and failed-request tracebacks: not worth formatting."""
    logger.disable("tradebus")
    yield
    logger.enable("tradebus")


def _signed(fill: OrderFilled) -> float:
    return fill.last_qty if fill.side is OrderSide.BUY else -fill.last_qty


class OrderLifecycle(RuleBasedStateMachine):
    """Strategy, venue and wire moves; the invariants compare the engine with the venue's truth."""

    rig: Rig

    @initialize()
    def start(self) -> None:
        self.rig = build_rig(TIMEOUTS)
        self.venue = self.rig.venue
        self.submitted: set[str] = set()
        self.booked: Counter[str] = Counter()
        self.rig.engine._bus.subscribe(OrderFilled, lambda f: self.booked.update([f.trade_id]))
        self.n_external = 0

    # ------------------------------------------------------------------ strategy

    @rule(qty=QTY, side=st.sampled_from(OrderSide), fail=st.sampled_from([None, None, None, "before", "after"]))
    def submit(self, qty: float, side: OrderSide, fail: str | None) -> None:
        self.venue.fail_next_submit = fail
        self.submitted.add(self.rig.submit(qty, side))

    @rule(data=st.data(), fail=st.booleans())
    def cancel(self, data: st.DataObject, fail: bool) -> None:
        open_orders = self.rig.orders.open_orders()
        if not open_orders:
            return
        order = data.draw(st.sampled_from(open_orders))
        self.venue.fail_next_cancel = fail
        now = self.rig.clock.now_ns()
        self.rig.engine.cancel(CancelOrder("s", IID, order.client_order_id, now, now))
        self.venue.fail_next_cancel = False

    # --------------------------------------------------------------------- venue

    @precondition(lambda self: bool(self.venue.submits))
    @rule(data=st.data(), accept=st.sampled_from([True, True, True, False]))
    def submit_arrives(self, data: st.DataObject, accept: bool) -> None:
        coid = data.draw(st.sampled_from(sorted(self.venue.submits)))
        self.venue.arrive(coid, accept)

    @precondition(lambda self: bool(self.venue.cancels))
    @rule(data=st.data(), says_filled=st.booleans())
    def cancel_arrives(self, data: st.DataObject, says_filled: bool) -> None:
        self.venue.cancel_arrives(data.draw(st.integers(0, len(self.venue.cancels) - 1)), says_filled)

    def _working(self) -> list[str]:
        return sorted(c for c, vo in self.venue.truth.items() if vo.status in WORKING)

    @precondition(lambda self: bool(self._working()))
    @rule(data=st.data(), qty=QTY)
    def venue_fills(self, data: st.DataObject, qty: float) -> None:
        self.venue.fill(data.draw(st.sampled_from(self._working())), qty)

    @precondition(lambda self: bool(self._working()))
    @rule(data=st.data(), says_filled=st.booleans())
    def venue_expires(self, data: st.DataObject, says_filled: bool) -> None:
        self.venue.expire(data.draw(st.sampled_from(self._working())), says_filled)

    @rule(qty=QTY, side=st.sampled_from(OrderSide))
    def external_fill(self, qty: float, side: OrderSide) -> None:
        self.n_external += 1
        self.venue.external_fill(f"ext-{self.n_external}", side, qty)

    @rule(fail=st.booleans())
    def queries_fail(self, fail: bool) -> None:
        self.venue.fail_queries = fail

    # ---------------------------------------------------------------------- wire

    @precondition(lambda self: bool(self.venue.wire))
    @rule(data=st.data(), twice=st.sampled_from([False, False, False, True]))
    def deliver(self, data: st.DataObject, twice: bool) -> None:
        index = data.draw(st.integers(0, len(self.venue.wire) - 1))  # any event: reordering
        self.venue.deliver(index, keep=twice)

    @precondition(lambda self: bool(self.venue.wire))
    @rule(data=st.data())
    def lose(self, data: st.DataObject) -> None:
        self.venue.wire.pop(data.draw(st.integers(0, len(self.venue.wire) - 1)))

    @rule(dt=st.integers(0, 12 * SEC))
    def time_passes(self, dt: int) -> None:
        self.rig.clock.advance_to(self.rig.clock.now_ns() + dt)

    # ---------------------------------------------------------------- invariants

    @invariant()
    def position_is_the_sum_of_the_fills_the_venue_told(self) -> None:
        told = self.venue.told
        expected = sum(_signed(f) for f in self.venue.fills if f.trade_id in told)
        assert abs(self.rig.position() - expected) < 1e-9
        assert set(self.booked) == told, "a told fill is not booked, or a booked fill was never made"
        assert all(n == 1 for n in self.booked.values()), f"booked twice: {self.booked}"

    @invariant()
    def no_order_invented_and_fills_per_order_match(self) -> None:
        orders = self.rig.orders.orders()
        assert {o.client_order_id for o in orders} == self.submitted
        told = self.venue.told
        for order in orders:
            vo = self.venue.truth.get(order.client_order_id)
            fills = [] if vo is None else [f for f in vo.fills if f.trade_id in told]
            assert abs(order.filled_qty - sum(f.last_qty for f in fills)) < 1e-9, order

    def teardown(self) -> None:
        if not hasattr(self, "rig"):
            return
        v, clock = self.venue, self.rig.clock
        v.fail_queries = False
        while v.submits:
            v.arrive(next(iter(v.submits)))
        while v.cancels:
            v.cancel_arrives()
        v.deliver_all()
        for _ in range(4):  # past every timeout, retry and check
            clock.advance_to(clock.now_ns() + 31 * SEC)
        self.position_is_the_sum_of_the_fills_the_venue_told()
        self.no_order_invented_and_fills_per_order_match()
        for order in self.rig.orders.orders():
            vo = v.truth.get(order.client_order_id)
            expected = S.REJECTED if vo is None else vo.status
            assert order.status == expected, (order, vo)
            if vo is not None:
                assert order.filled_qty == vo.filled
        # Every fill of this process's orders is booked by now; an external fill lost on the
        # wire is recovered only from the venue's trade history (live reconciliation).
        own = [f for f in v.fills if f.client_order_id in v.truth or f.trade_id in v.told]
        assert abs(self.rig.position() - sum(_signed(f) for f in own)) < 1e-9


OrderLifecycle.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestOrderLifecycle = OrderLifecycle.TestCase
