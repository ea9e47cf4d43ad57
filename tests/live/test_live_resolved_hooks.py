"""A strategy learns how its order ended when only a query of the venue tells it (``OrderResolved``).

The daemon cancels a resting order; the private stream's frame of the cancel is dropped (or
held back), so the cancel timeout moves the order to ``UNKNOWN`` and a query finds it canceled.
The strategy's ``on_order_canceled`` is called once: by the resolution, and not again when the
stream's frame arrives after it. Against the OKX and Bybit account emulators.
"""

from __future__ import annotations

import pytest

from tests.live.live_harness import until
from tests.live.venue_kits import BYBIT, KITS, VenueKit, kit_harness
from tradebus.adapters.common.account_emulator import StreamFault
from tradebus.engine.messages import OrderAccepted, OrderAnomaly, OrderCanceled, OrderExpired, OrderRejected, OrderSide, OrderStatus
from tradebus.execution.orders import OrderResolved
from tradebus.strategies.base import Strategy


class HookRecorder(Strategy):
    """Records the order hooks called, as ``(hook, client order id)``."""

    def __init__(self, instrument_id: str) -> None:
        super().__init__(instrument_id, strategy_id="recorder")
        self.calls: list[tuple[str, str]] = []

    def on_order_accepted(self, event: OrderAccepted) -> None:
        self.calls.append(("accepted", event.client_order_id))

    def on_order_canceled(self, event: OrderCanceled) -> None:
        self.calls.append(("canceled", event.client_order_id))

    def on_order_expired(self, event: OrderExpired) -> None:
        self.calls.append(("expired", event.client_order_id))

    def on_order_rejected(self, event: OrderRejected) -> None:
        self.calls.append(("rejected", event.client_order_id))


def _cancel_frame(kit: VenueKit) -> str:
    return '"Cancelled"' if kit is BYBIT else '"state": "canceled"'


@pytest.mark.parametrize("late", [False, True], ids=["dropped", "late"])
@pytest.mark.parametrize("kit", list(KITS.values()), ids=list(KITS))
async def test_a_cancel_only_a_query_confirms_calls_on_order_canceled_once(kit: VenueKit, late: bool) -> None:
    fault = StreamFault("delay", _cancel_frame(kit), seconds=1.5) if late else StreamFault("drop", _cancel_frame(kit))
    strategy = HookRecorder(kit.iid)
    async with kit_harness(kit, [fault], strategies=[strategy]) as h:
        resolved: list[OrderResolved] = []
        anomalies: list[OrderAnomaly] = []
        h.kernel.bus.subscribe(OrderResolved, resolved.append)
        h.kernel.bus.subscribe(OrderAnomaly, anomalies.append)
        coid = strategy.submit_limit(kit.iid, OrderSide.BUY, 0.002, 1_000.0)
        order = h.kernel.orders.order(coid)
        await until(lambda: order.status is OrderStatus.ACCEPTED)
        strategy.cancel(coid)
        await until(lambda: order.status is OrderStatus.CANCELED, timeout=5.0)
        assert [r.status for r in resolved] == [OrderStatus.CANCELED]  # the query told it, not the stream
        if late:  # the stream's cancel came after all, and was dropped as a repeat
            await until(lambda: any(a.event == "OrderCanceled" for a in anomalies), timeout=5.0)
        await h.venue.drain()
        assert h.emulator.orders[coid].status is OrderStatus.CANCELED
    assert strategy.calls == [("accepted", coid), ("canceled", coid)]
