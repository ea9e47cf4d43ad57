"""A bracket on Binance spot (a cash-only instrument) through the live venue and the local account emulator.

Binance spot has no reduce-only orders, and the stop-loss and take-profit both sell the BTC the
entry bought: the children go as plain orders, and the account holds that BTC once for the pair.
"""

from __future__ import annotations

import pytest

from tests.live.live_harness import IID, harness, until
from tradebus.engine.messages import OrderDenied, OrderRejected, OrderSide, OrderStatus
from tradebus.execution.contingent import ContingentOrders


async def test_a_binance_spot_bracket_rests_both_children_and_the_filled_one_cancels_the_other() -> None:
    """Buy 0.01 BTC at market (fills at the trade 60,000); the next trade arms the stop-loss 59,000
    and the take-profit 61,000, both resting at the venue. A trade at 61,100 fills the take-profit
    at the venue; the stop-loss is then canceled there. Refused before: both children were
    reduce-only (refused locally), and the take-profit was denied for the BTC the stop holds."""
    async with harness() as h:
        refused: list[OrderDenied | OrderRejected] = []
        h.kernel.bus.subscribe(OrderDenied, refused.append)
        h.kernel.bus.subscribe(OrderRejected, refused.append)
        contingent = ContingentOrders(h.kernel)
        entry = contingent.bracket("s1", IID, OrderSide.BUY, 0.01, stop_loss=59_000.0, take_profit=61_000.0)
        assert entry is not None
        await until(lambda: h.kernel.orders.order(entry).status is OrderStatus.ACCEPTED)
        h.trade(60_000.0)
        await until(lambda: h.kernel.orders.order(entry).status is OrderStatus.FILLED)
        h.trade(60_000.0)  # arms the children
        await until(lambda: len(h.emulator.open_orders()) == 2 or bool(refused))
        assert refused == []
        stop, target = h.kernel.orders.orders()[1:]
        assert {r.order.client_order_id for r in h.emulator.open_orders()} == {stop.client_order_id, target.client_order_id}
        assert (stop.order_type.name, stop.trigger_price, target.order_type.name, target.price) == (
            "STOP_MARKET", 59_000.0, "LIMIT", 61_000.0)
        assert not stop.reduce_only and not target.reduce_only
        h.trade(61_100.0)
        await until(lambda: target.status is OrderStatus.FILLED and stop.status is OrderStatus.CANCELED)
        await h.venue.drain()
    assert h.emulator.orders[stop.client_order_id].status is OrderStatus.CANCELED
    assert h.emulator.open_orders() == []
    assert h.kernel.portfolio.position(IID) == pytest.approx(0.0)
    assert h.kernel.portfolio.account.balance("BTC") == pytest.approx(0.0, abs=1e-12)
