"""Brackets and OCO groups follow an order that only a query of the venue found closed (``OrderResolved``).

The daemon cancels an order; the private stream's frame of the cancel is dropped, so the cancel
timeout moves the order to ``UNKNOWN`` and a query finds it canceled. The contingent orders
act as on the stream's ``OrderCanceled``: a bracket's partly filled entry arms its stop-loss and
take-profit for the filled part; an OCO member leaves its group. Against the OKX and Bybit
account emulators.
"""

from __future__ import annotations

import pytest

from tests.live.live_harness import until
from tests.live.venue_kits import BYBIT, KITS, KitTape, VenueKit, kit_harness
from tradebus.adapters.common.account_emulator import StreamFault
from tradebus.engine.messages import OrderSide, OrderStatus, OrderType
from tradebus.execution.contingent import OrderSpec
from tradebus.execution.orders import OrderResolved
from tradebus.strategies.base import Strategy

T0 = 1_786_310_819_680_000_000


class Contingent(Strategy):
    """A strategy the test drives by hand, with contingent orders."""

    contingent = True

    def __init__(self, instrument_id: str) -> None:
        super().__init__(instrument_id, strategy_id="brackets")


def _cancel_frame(kit: VenueKit) -> str:
    return '"Cancelled"' if kit is BYBIT else '"state": "canceled"'


@pytest.mark.parametrize("kit", list(KITS.values()), ids=list(KITS))
async def test_a_partly_filled_bracket_entry_a_query_found_canceled_arms_its_exits_for_the_filled_part(kit: VenueKit) -> None:
    """Buy 0.002 at 60,000 with stop-loss 59,000 and take-profit 61,000; a trade of 0.001 fills half of
    it; the entry is canceled and the stream's cancel frame is lost. Before, the bracket stayed waiting
    for its entry and the 0.001 bought was never protected; now the next trade arms both exits for 0.001."""
    strategy = Contingent(kit.iid)
    async with kit_harness(kit, [StreamFault("drop", _cancel_frame(kit))], strategies=[strategy], trade_size_limit=True) as h:
        resolved: list[OrderResolved] = []
        h.kernel.bus.subscribe(OrderResolved, resolved.append)
        tape = KitTape(h, kit.iid, T0, size=0.001)
        entry_id = strategy.submit_bracket(kit.iid, OrderSide.BUY, 0.002, entry_price=60_000.0, stop_loss=59_000.0,
                                           take_profit=61_000.0)
        assert entry_id is not None
        entry = h.kernel.orders.order(entry_id)
        await until(lambda: entry.status is OrderStatus.ACCEPTED)
        tape.trade(59_990.0)
        await until(lambda: entry.filled_qty == pytest.approx(0.001))
        strategy.cancel(entry_id)
        await until(lambda: entry.status is OrderStatus.CANCELED, timeout=5.0)
        assert [r.status for r in resolved] == [OrderStatus.CANCELED]  # the query told it, not the stream
        tape.trade(60_010.0)  # arms the exits
        children = lambda: [o for o in h.kernel.orders.orders() if o.client_order_id != entry_id]  # noqa: E731
        await until(lambda: len(children()) == 2 and all(o.status is OrderStatus.ACCEPTED for o in children()))
        await h.venue.drain()
        stop, target = children()
        assert (stop.order_type, stop.trigger_price, stop.quantity) == (OrderType.STOP_MARKET, 59_000.0, pytest.approx(0.001))
        assert (target.order_type, target.price, target.quantity) == (OrderType.LIMIT, 61_000.0, pytest.approx(0.001))
        assert h.kernel.portfolio.account.oco_groups()[stop.client_order_id] == (stop.client_order_id, target.client_order_id)


@pytest.mark.parametrize("kit", list(KITS.values()), ids=list(KITS))
async def test_an_oco_member_a_query_found_canceled_leaves_its_group(kit: VenueKit) -> None:
    """Two resting limit buys as one OCO group; one is canceled and the stream's cancel frame is lost.
    Before, the query's answer left it linked with its sibling (in the account's groups too); now it
    leaves the group as on the stream's cancel."""
    strategy = Contingent(kit.iid)
    async with kit_harness(kit, [StreamFault("drop", _cancel_frame(kit))], strategies=[strategy]) as h:
        resolved: list[OrderResolved] = []
        h.kernel.bus.subscribe(OrderResolved, resolved.append)
        first, second = strategy.submit_oco([
            OrderSpec(kit.iid, OrderSide.BUY, 0.001, price=1_000.0),
            OrderSpec(kit.iid, OrderSide.BUY, 0.001, price=1_001.0),
        ])
        orders = [h.kernel.orders.order(c) for c in (first, second)]
        await until(lambda: all(o.status is OrderStatus.ACCEPTED for o in orders))
        assert set(h.kernel.portfolio.account.oco_groups()) == {first, second}
        strategy.cancel(first)
        await until(lambda: orders[0].status is OrderStatus.CANCELED, timeout=5.0)
        assert [r.status for r in resolved] == [OrderStatus.CANCELED]
        await h.venue.drain()
        assert first not in h.kernel.portfolio.account.oco_groups()
        assert orders[1].status is OrderStatus.ACCEPTED
