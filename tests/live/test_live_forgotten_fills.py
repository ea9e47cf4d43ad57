"""An order whose fills the venue's trade history no longer lists: flagged and its instrument held, nothing invented.

The Binance account emulator forgets fills older than its history window
(``trade_history_ns``, as OKX's 3 days or Bybit's 7), while its order still says it filled.
The fill's stream frame is dropped, so only the query after the refused cancel could have booked it.
"""

from __future__ import annotations

import pytest

from tests.live.live_harness import IID, harness, settled, until
from tradebus.adapters.binance.private_emulator import StreamFault
from tradebus.engine.messages import AnomalyKind, CancelOrder, OrderAnomaly, OrderSide, OrderStatus
from tradebus.node.reconcile import Reconciler


async def test_an_order_whose_fill_the_venue_no_longer_lists_is_flagged_and_its_instrument_held() -> None:
    async with harness(stream_faults=[StreamFault("drop", '"x": "TRADE"')]) as h:
        holds: dict[str, str] = {}

        def hold(iid: str, reason: str) -> None:
            if reason:
                holds[iid] = reason
            else:
                holds.pop(iid, None)

        reconciler = Reconciler(h.kernel, h.venue, hold, 2.0)
        anomalies: list[OrderAnomaly] = []
        h.kernel.bus.subscribe(OrderAnomaly, anomalies.append)
        order = h.submit(OrderSide.BUY, 0.01, 60_000.0)
        await until(lambda: order.status is OrderStatus.ACCEPTED)
        h.trade(59_000.0)  # fills at the venue; its frame is lost
        h.trade(61_000.0)  # a millisecond later: the fill is beyond the history window
        h.emulator.trade_history_ns = 0
        assert h.emulator.orders[order.client_order_id].status is OrderStatus.FILLED
        h.kernel.execution.cancel(CancelOrder("s1", IID, order.client_order_id, 0, 0))  # refused: filled; queried
        await until(lambda: order.status is OrderStatus.FILLED)
        assert order.filled_qty == 0.0 and h.kernel.result.fills == []  # nothing invented
        [anomaly] = [a for a in anomalies if a.kind is AnomalyKind.MISSING_FILLS]
        assert anomaly.client_order_id == order.client_order_id and anomaly.instrument_id == IID
        assert "says 0.01 filled but lists fills for 0.0" in anomaly.detail
        assert order.client_order_id in holds[IID]
        await reconciler.round()  # the holding here differs from the venue's: still held
        assert order.client_order_id in holds[IID]
        h.emulator.balances["BTC"] = 0.0  # the account holds what this process booked again
        await reconciler.round()
        assert holds == {}


async def test_an_order_whose_fills_are_all_listed_is_neither_flagged_nor_held() -> None:
    async with harness(stream_faults=[StreamFault("drop", '"x": "TRADE"')]) as h:
        holds: dict[str, str] = {}
        Reconciler(h.kernel, h.venue, holds.__setitem__, 2.0)
        anomalies: list[OrderAnomaly] = []
        h.kernel.bus.subscribe(OrderAnomaly, anomalies.append)
        order = h.submit(OrderSide.BUY, 0.01, 60_000.0)
        await until(lambda: order.status is OrderStatus.ACCEPTED)
        h.trade(59_000.0)  # its frame is lost; the venue's trade history lists it
        h.trade(61_000.0)
        h.kernel.execution.cancel(CancelOrder("s1", IID, order.client_order_id, 0, 0))
        await until(lambda: order.status is OrderStatus.FILLED)
        await settled(h)  # every query's answer and every stream frame handled: an anomaly would be there
        assert order.filled_qty == pytest.approx(0.01) and len(h.kernel.result.fills) == 1
        assert [a for a in anomalies if a.kind is AnomalyKind.MISSING_FILLS] == [] and holds == {}
