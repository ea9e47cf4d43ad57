"""A bracket whose entry's fills reach the daemon after the entry's cancel still arms its exits for them.

The entry is partly filled at the venue; the private stream's fill frames are late, so the cancel
frame (which says how much filled) comes first. Against the OKX and Bybit account emulators.
"""

from __future__ import annotations

import pytest

from tests.live.live_harness import until
from tests.live.test_live_resolved_contingent import T0, Contingent
from tests.live.venue_kits import KITS, KitTape, VenueKit, kit_harness
from tradebus.adapters.common.account_emulator import StreamFault
from tradebus.engine.messages import OrderCanceled, OrderFilled, OrderSide, OrderStatus, OrderType


@pytest.mark.parametrize("kit", list(KITS.values()), ids=list(KITS))
async def test_a_bracket_entry_canceled_before_its_late_fills_came_arms_its_exits_for_them(kit: VenueKit) -> None:
    """Buy 0.003 at 60,000 (stop-loss 59,000, take-profit 61,000); two trades of 0.001 fill 0.002 at the
    venue, whose two fill frames are held back 0.5 s; the entry is canceled and its cancel frame (0.002
    filled) comes first. Before, the cancel found nothing filled and dropped the bracket: the 0.002
    bought, booked when the fills came, never got a stop-loss or take-profit. Now the bracket waits for
    the fills the venue reported and the next trade arms both exits for 0.002."""
    strategy = Contingent(kit.iid)
    late = [StreamFault("delay", kit.fill_frame, at=n, seconds=0.5) for n in (0, 1)]
    async with kit_harness(kit, late, strategies=[strategy], trade_size_limit=True) as h:
        seen: list[tuple[str, float]] = []
        h.kernel.bus.subscribe(OrderFilled, lambda e: seen.append(("fill", e.last_qty)))
        h.kernel.bus.subscribe(OrderCanceled, lambda e: seen.append(("cancel", e.filled_qty)))
        tape = KitTape(h, kit.iid, T0, size=0.001)
        entry_id = strategy.submit_bracket(kit.iid, OrderSide.BUY, 0.003, entry_price=60_000.0, stop_loss=59_000.0,
                                           take_profit=61_000.0)
        assert entry_id is not None
        entry = h.kernel.orders.order(entry_id)
        await until(lambda: entry.status is OrderStatus.ACCEPTED)
        tape.trade(59_990.0)
        tape.trade(59_995.0)
        await until(lambda: h.emulator.orders[entry_id].filled == pytest.approx(0.002))
        strategy.cancel(entry_id)
        await until(lambda: entry.status is OrderStatus.CANCELED and entry.filled_qty == pytest.approx(0.002), timeout=5.0)
        assert seen == [("cancel", pytest.approx(0.002)), ("fill", pytest.approx(0.001)), ("fill", pytest.approx(0.001))]
        tape.trade(60_010.0)  # arms the exits
        children = lambda: [o for o in h.kernel.orders.orders() if o.client_order_id != entry_id]  # noqa: E731
        await until(lambda: len(children()) == 2 and all(o.status is OrderStatus.ACCEPTED for o in children()))
        await h.venue.drain()
        stop, target = children()
        assert (stop.order_type, stop.trigger_price, stop.quantity) == (OrderType.STOP_MARKET, 59_000.0, pytest.approx(0.002))
        assert (target.order_type, target.price, target.quantity) == (OrderType.LIMIT, 61_000.0, pytest.approx(0.002))
