"""Modifying a working order on a live venue: amended in place on OKX and Bybit, cancel-replaced on Binance spot.

Each test proves the venue's order changed by a trade that fills only the modified order:
the original price would not have been reached.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from loguru import logger

from tests.live.live_harness import ANSWERED, IID, WAIT, Harness, harness, until
from tests.live.live_harness import settled as quiet
from tests.live.venue_kits import KIT_ANSWERED, KITS, KitTape, VenueKit, kit_harness
from tests.live.test_live_resolved_contingent import Contingent
from tradebus.adapters.binance.private_emulator import BinancePrivateEmulator
from tradebus.adapters.common.account_emulator import RestFault
from tradebus.engine.kernel import Kernel
from tradebus.execution.contingent import REDUCE_TRIES, OrderSpec
from tradebus.execution.orders import Order
from tradebus.engine.messages import (
    AnomalyKind,
    CancelOrder,
    ModifyOrder,
    OrderAnomaly,
    OrderCanceled,
    OrderDenied,
    OrderModifyRejected,
    OrderReplaced,
    OrderResolved,
    OrderSide,
    OrderStatus,
    OrderType,
    SubmitOrder,
    Trade,
)

#: The client and the engine wait WAIT for an answer, for tests that do not test timeouts: a submit's or amend's
#: answer a loaded machine delays stays unanswered, not timed out and queried (KIT_TIMEOUTS' 0.5 s ran out on a
#: stalled loop, the query found no order yet and the submit was taken for REJECTED).
HELD = {"timeouts": KIT_ANSWERED, "request_timeout": WAIT}
#: HELD for :func:`~tests.live.live_harness.harness` (Binance spot) and
#: :func:`~tests.live.live_harness.usdm_harness` (Binance USD-M): FAST's 0.3 s and the client's 0.25 s ran out on a
#: stalled loop, and a 0.15 s slow answer was taken for a lost one.
SPOT_HELD = {"timeouts": ANSWERED, "request_timeout": WAIT}
USDM_HELD = {"timeouts": ANSWERED, "timeout": WAIT}


@pytest.mark.parametrize("kit", list(KITS.values()), ids=list(KITS))
async def test_amend_changes_the_working_order_in_place(kit: VenueKit) -> None:
    async with kit_harness(kit, **HELD) as h:
        execution = h.kernel.execution
        order = execution.submit(SubmitOrder("s1", kit.iid, "", OrderSide.BUY, 0.002, 0, 0, OrderType.LIMIT, 1_000.0))
        await until(lambda: order.status is OrderStatus.ACCEPTED)
        coid = order.client_order_id
        execution.modify(ModifyOrder("s1", kit.iid, coid, 0, 0, quantity=0.003, price=1_100.0))
        await until(lambda: order.price == 1_100.0 and order.quantity == 0.003)
        venue_order = h.emulator.orders[coid].order
        assert (venue_order.price, venue_order.quantity) == (1_100.0, 0.003)
        h.emulator.on_trade(Trade(kit.iid, 10**18, 10**18, 1_050.0, 1.0, -1, "t1"))  # above the original 1,000
        await until(lambda: order.status is OrderStatus.FILLED)
    assert order.filled_qty == pytest.approx(0.003)
    assert h.venue.requests["amend"] == 1 and h.venue.requests["cancel"] == 0
    assert [c for m, p, c in h.emulator.requests if m == "POST" and p == kit.place_path] == [coid]
    assert len(h.kernel.orders.orders()) == 1


@pytest.mark.parametrize("kit", list(KITS.values()), ids=list(KITS))
async def test_an_amend_of_a_closed_order_is_refused_and_the_order_queried(kit: VenueKit) -> None:
    async with kit_harness(kit, **HELD) as h:
        execution = h.kernel.execution
        refused: list[OrderModifyRejected] = []
        h.kernel.bus.subscribe(OrderModifyRejected, refused.append)
        order = execution.submit(SubmitOrder("s1", kit.iid, "", OrderSide.BUY, 0.002, 0, 0, OrderType.LIMIT, 1_000.0))
        await until(lambda: order.status is OrderStatus.ACCEPTED)
        rec = h.emulator.orders[order.client_order_id]
        h.emulator.on_trade(Trade(kit.iid, 10**18, 10**18, 999.0, 1.0, -1, "t1"))  # fills at the venue...
        assert rec.status is OrderStatus.FILLED
        # ... and the modification races it: refused by the venue, the order ends FILLED, once.
        execution.modify(ModifyOrder("s1", kit.iid, order.client_order_id, 0, 0, price=1_100.0))
        await until(lambda: order.status is OrderStatus.FILLED and h.venue.requests["amend"] == 1)
        await h.venue.drain(WAIT)
    assert order.price == 1_000.0 and order.filled_qty == pytest.approx(0.002)
    assert len(h.kernel.result.fills) == 1
    # the strategy hears that its modification was not applied
    assert [r.client_order_id for r in refused] == [order.client_order_id] and refused[0].reason


@pytest.mark.parametrize("kit", list(KITS.values()), ids=list(KITS))
async def test_an_amend_answered_after_the_fill_that_completed_it_leaves_the_order_filled(kit: VenueKit) -> None:
    """A buy of 0.003 amended to 0.002; the venue amends it, a trade of 0.002 fills it, and the fill's
    stream frame arrives before the amend's (slow) answer. Before, that answer raised OrderError in the
    request's task (a traceback in the daemon's log) and the order stayed PARTIALLY_FILLED, 0.001 left."""
    path = {"okx": "/api/v5/trade/amend-order", "bybit": "/v5/order/amend"}[kit.venue]
    async with kit_harness(kit, rest_faults=[RestFault("slow", "POST", path, seconds=0.3)], trade_size_limit=True, **HELD) as h:
        execution = h.kernel.execution
        order = execution.submit(SubmitOrder("s1", kit.iid, "", OrderSide.BUY, 0.003, 0, 0, OrderType.LIMIT, 1_000.0))
        await until(lambda: order.status is OrderStatus.ACCEPTED)
        execution.modify(ModifyOrder("s1", kit.iid, order.client_order_id, 0, 0, quantity=0.002))
        await until(lambda: h.emulator.orders[order.client_order_id].order.quantity == 0.002)
        h.emulator.on_trade(Trade(kit.iid, 10**18, 10**18, 999.0, 0.002, -1, "t1"))
        await until(lambda: order.filled_qty == pytest.approx(0.002))
        assert order.status is OrderStatus.PARTIALLY_FILLED  # the amend's answer has not come yet
        await h.venue.drain(WAIT)
        assert h.venue.requests["amend"] == 1
    assert h.emulator.orders[order.client_order_id].status is OrderStatus.FILLED
    assert (order.status, order.quantity, order.filled_qty) == (OrderStatus.FILLED, 0.002, pytest.approx(0.002))
    assert h.kernel.orders.open_orders() == []


@pytest.mark.parametrize("kit", list(KITS.values()), ids=list(KITS))
async def test_an_oco_member_completed_by_its_late_answered_amend_cancels_its_sibling(kit: VenueKit) -> None:
    """Two OCO limit buys of 0.003 (1,000 and 900); the first is amended to 0.002 and a trade of 0.002
    fills it before the amend's (slow) answer: its fill cut the sibling to the 0.001 still believed
    left. Before, the answer that completed the first left the sibling working for 0.001; now the
    sibling is canceled, as on a last fill."""
    strategy = Contingent(kit.iid)
    path = {"okx": "/api/v5/trade/amend-order", "bybit": "/v5/order/amend"}[kit.venue]
    slow = [RestFault("slow", "POST", path, seconds=0.3)]
    async with kit_harness(kit, rest_faults=slow, strategies=[strategy], trade_size_limit=True, **HELD) as h:
        first, second = strategy.submit_oco([
            OrderSpec(kit.iid, OrderSide.BUY, 0.003, price=1_000.0), OrderSpec(kit.iid, OrderSide.BUY, 0.003, price=900.0),
        ])
        a, b = (h.kernel.orders.order(c) for c in (first, second))
        await until(lambda: a.status is OrderStatus.ACCEPTED and b.status is OrderStatus.ACCEPTED)
        strategy.modify(first, quantity=0.002)
        await until(lambda: h.emulator.orders[first].order.quantity == 0.002)
        h.emulator.on_trade(Trade(kit.iid, 10**18, 10**18, 999.0, 0.002, -1, "t1"))
        await until(lambda: a.status is OrderStatus.FILLED)
        await until(lambda: b.status is OrderStatus.CANCELED)
        await h.venue.drain(WAIT)
    assert h.emulator.orders[second].status is OrderStatus.CANCELED
    assert h.emulator.open_orders() == []


@pytest.mark.parametrize("kit", list(KITS.values()), ids=list(KITS))
async def test_a_fill_racing_an_in_place_amend_buys_the_new_total_and_no_more(kit: VenueKit) -> None:
    """A buy of 0.003 at 1,000 fills 0.001; it is amended to 0.004 in all at 1,100, and while the amend waits at the
    venue a trade fills 0.001 more. OKX's ``newSz`` and Bybit's ``qty`` are the order's new total, fills included,
    applied by the venue in place: the daemon sends 0.004 and the order buys 0.004 in all, whatever filled meanwhile
    (sent as what is left to fill, 0.003, it would buy 0.003)."""
    path = {"okx": "/api/v5/trade/amend-order", "bybit": "/v5/order/amend"}[kit.venue]
    release = asyncio.Event()
    held = [RestFault("hold", "POST", path, release=release)]
    async with kit_harness(kit, rest_faults=held, trade_size_limit=True, **HELD) as h:
        execution = h.kernel.execution
        order = execution.submit(SubmitOrder("s1", kit.iid, "", OrderSide.BUY, 0.003, 0, 0, OrderType.LIMIT, 1_000.0))
        await until(lambda: order.status is OrderStatus.ACCEPTED)
        coid = order.client_order_id
        h.emulator.on_trade(Trade(kit.iid, 10**18, 10**18, 999.0, 0.001, -1, "t1"))
        await until(lambda: order.filled_qty == pytest.approx(0.001))
        execution.modify(ModifyOrder("s1", kit.iid, coid, 0, 0, quantity=0.004, price=1_100.0))
        await until(lambda: held[0].fired)
        h.emulator.on_trade(Trade(kit.iid, 10**18 + 1, 10**18 + 1, 999.0, 0.001, -1, "t2"))  # before the amend is done
        release.set()
        await until(lambda: order.quantity == 0.004 and order.filled_qty == pytest.approx(0.002))
        h.emulator.on_trade(Trade(kit.iid, 10**18 + 2, 10**18 + 2, 1_050.0, 1.0, -1, "t3"))
        await until(lambda: order.status is OrderStatus.FILLED)
        await h.venue.drain(WAIT)
    assert h.emulator.orders[coid].filled == pytest.approx(0.004) and order.filled_qty == pytest.approx(0.004)
    assert h.kernel.portfolio.position(kit.iid) == pytest.approx(0.004)


@pytest.mark.parametrize("kit", list(KITS.values()), ids=list(KITS))
async def test_an_amend_below_what_a_racing_fill_bought_cancels_the_rest(kit: VenueKit) -> None:
    """A buy of 0.003 at 1,000 is amended down to 0.001 in all, and while the amend waits at the venue a trade fills
    0.002 of it. OKX and Bybit refuse an amend to a total at or below what is filled (the order keeps working for its
    old remainder, 0.001). Before, the strategy got ``OrderModifyRejected`` and the order went on to buy 0.003 in all;
    now the query after the refusal finds 0.002 filled, at least the 0.001 asked, and the rest is canceled: 0.002 in
    all, nothing working."""
    path = {"okx": "/api/v5/trade/amend-order", "bybit": "/v5/order/amend"}[kit.venue]
    release = asyncio.Event()
    held = [RestFault("hold", "POST", path, release=release)]
    async with kit_harness(kit, rest_faults=held, trade_size_limit=True, **HELD) as h:
        execution = h.kernel.execution
        order = execution.submit(SubmitOrder("s1", kit.iid, "", OrderSide.BUY, 0.003, 0, 0, OrderType.LIMIT, 1_000.0))
        await until(lambda: order.status is OrderStatus.ACCEPTED)
        coid = order.client_order_id
        execution.modify(ModifyOrder("s1", kit.iid, coid, 0, 0, quantity=0.001))
        await until(lambda: held[0].fired)
        h.emulator.on_trade(Trade(kit.iid, 10**18, 10**18, 999.0, 0.002, -1, "t1"))  # before the amend is done
        release.set()
        await until(lambda: order.filled_qty == pytest.approx(0.002) and h.venue.in_flight == 0)
        await until(lambda: not order.is_open and not h.emulator.open_orders())
        h.emulator.on_trade(Trade(kit.iid, 10**18 + 1, 10**18 + 1, 999.0, 1.0, -1, "t2"))  # would fill the rest
        await asyncio.sleep(0.2)
        await h.venue.drain(WAIT)
    assert order.status is OrderStatus.CANCELED
    assert h.emulator.orders[coid].filled == pytest.approx(0.002) and order.filled_qty == pytest.approx(0.002)
    assert h.kernel.portfolio.position(kit.iid) == pytest.approx(0.002)


async def test_binance_spot_cancel_replaces_and_the_replacement_trades() -> None:
    async with harness(**SPOT_HELD) as h:
        h.venue.on_replace = h.kernel.execution.submit  # as the live node wires it
        order = h.submit(OrderSide.BUY, 0.01, 50_000.0)
        await until(lambda: order.status is OrderStatus.ACCEPTED)
        coid = order.client_order_id
        h.kernel.execution.modify(ModifyOrder("s1", IID, coid, 0, 0, price=55_000.0))
        await until(lambda: len(h.kernel.orders.orders()) == 2)
        new = next(o for o in h.kernel.orders.orders() if o.client_order_id != coid)
        await until(lambda: new.status is OrderStatus.ACCEPTED)
        assert order.status is OrderStatus.CANCELED and h.emulator.orders[coid].status == "CANCELED"
        assert (new.price, new.quantity, new.side) == (55_000.0, 0.01, OrderSide.BUY)
        h.trade(54_000.0)  # above the original 50,000
        await until(lambda: new.status is OrderStatus.FILLED)
    assert h.posts(coid) == 1 and h.posts(new.client_order_id) == 1
    assert h.kernel.portfolio.position(IID) == pytest.approx(0.01)


async def test_a_partly_filled_binance_spot_order_is_cancel_replaced_for_what_is_left_of_its_new_quantity() -> None:
    """A buy of 0.01 at 50,000 fills 0.004 (a trade of 0.004 at 49,990); a modify to 0.012 in all at 55,000 is one
    ``POST /api/v3/order/cancelReplace``: Binance places the replacement as a new order, so it is a buy of 0.008
    (0.012 less the 0.004 filled), and the two together buy 0.012."""
    async with harness(trade_size_limit=True, **SPOT_HELD) as h:
        h.venue.on_replace = h.kernel.execution.submit
        order = h.submit(OrderSide.BUY, 0.01, 50_000.0)
        await until(lambda: order.status is OrderStatus.ACCEPTED)
        coid = order.client_order_id
        h.trade(49_990.0, 0.004)
        await until(lambda: order.filled_qty == pytest.approx(0.004))
        h.kernel.execution.modify(ModifyOrder("s1", IID, coid, 0, 0, quantity=0.012, price=55_000.0))
        await until(lambda: len(h.kernel.orders.orders()) == 2)
        new = next(o for o in h.kernel.orders.orders() if o.client_order_id != coid)
        await until(lambda: new.status is OrderStatus.ACCEPTED)
        venue = h.emulator.orders[new.client_order_id].order
        assert (venue.side, venue.quantity, venue.price) == (OrderSide.BUY, 0.008, 55_000.0)
        assert h.emulator.orders[coid].status == "CANCELED" and order.status is OrderStatus.CANCELED
        assert [p for m, p, c in h.emulator.requests if c == new.client_order_id] == ["/api/v3/order/cancelReplace"]
        h.trade(54_000.0, 0.008)
        await until(lambda: new.status is OrderStatus.FILLED)
    assert h.kernel.portfolio.position(IID) == pytest.approx(0.012)


@pytest.mark.parametrize(("modified", "raced", "left"), [(0.012, 0.004, 0.008), (0.006, 0.008, None)], ids=["reduced", "canceled"])
async def test_a_fill_racing_a_binance_spot_cancel_replace_never_buys_more_than_asked(
    modified: float, raced: float, left: float | None
) -> None:
    """A buy of 0.01 at 50,000, nothing filled, is modified to ``modified`` in all at 55,000: one ``POST
    /api/v3/order/cancelReplace`` whose replacement is a buy of ``modified`` (less the 0.0 known filled). The request
    reaches Binance, and before it cancels the order a trade at 49,990 fills ``raced`` of it; the fill's user-stream
    frame comes 1 s late, and the answer's ``cancelResponse.executedQty`` says ``raced``.

    Modified to 0.012, 0.004 raced: before, the replacement went on buying 0.012, 0.016 in all; now it is cut at once
    to what is left, 0.008 (a cancel-replace of it), and the order and its replacements buy 0.012. Modified to 0.006,
    0.008 raced: the order bought more than asked before its cancel (nothing can undo that); before, the replacement
    bought 0.006 more (0.014 in all); now it is canceled at once, 0.008 in all. Checked at the emulated venue and by the
    position."""
    from tradebus.adapters.binance.private_emulator import RestFault as BinanceFault, StreamFault

    release = asyncio.Event()
    held = [BinanceFault("hold", "POST", "/api/v3/order/cancelReplace", release=release)]
    late = [StreamFault("delay", match='"x": "TRADE"', seconds=1.0)]
    warnings: list[str] = []
    sink = logger.add(warnings.append, level="WARNING", format="{message}")
    try:
        async with harness(rest_faults=held, stream_faults=late, trade_size_limit=True, **SPOT_HELD) as h:
            h.venue.on_replace = h.kernel.execution.submit
            order = h.submit(OrderSide.BUY, 0.01, 50_000.0)
            await until(lambda: order.status is OrderStatus.ACCEPTED)
            coid = order.client_order_id
            h.kernel.execution.modify(ModifyOrder("s1", IID, coid, 0, 0, quantity=modified, price=55_000.0))
            await until(lambda: held[0].fired)  # the request waits at the venue, the order not canceled yet
            h.trade(49_990.0, raced)
            assert h.emulator.orders[coid].filled == pytest.approx(raced) and order.filled_qty == 0.0
            release.set()

            def settled() -> bool:
                working = h.kernel.orders.open_orders()
                return (
                    order.filled_qty == pytest.approx(raced) and not h.venue.replaced_in_flight() and h.venue.in_flight == 0
                    and all(o.status is OrderStatus.ACCEPTED for o in working)
                    and sorted(o.client_order_id for o in working) == sorted(r.order.client_order_id for r in h.emulator.open_orders())
                )

            await until(settled)
            working = [r.order for r in h.emulator.open_orders()]
            h.trade(54_000.0, 0.02)  # fills all a working replacement is for
            await until(lambda: not h.kernel.orders.open_orders())
            await h.venue.drain(WAIT)
    finally:
        logger.remove(sink)
    bought = modified if left is not None else raced
    assert sum(r.filled for r in h.emulator.orders.values()) == pytest.approx(bought)
    assert h.kernel.portfolio.position(IID) == pytest.approx(bought)
    assert [(o.quantity, o.price) for o in working] == ([(pytest.approx(left), 55_000.0)] if left is not None else [])
    assert any(coid in w and f"{raced} filled at the venue" in w for w in warnings)


async def test_a_modify_of_a_raced_replacement_from_its_order_replaced_handler_is_refused_naming_the_cut() -> None:
    """As the "reduced" case above (a buy of 0.01 modified to 0.012 at 55,000, 0.004 filled by the race), and a
    strategy modifies the replacement in its ``OrderReplaced`` handler (to 0.015 at 56,000), before the daemon's cut of
    it to 0.008 leaves. Before, that modify's cancel-replace made the cut cancel the replacement instead, which canceled
    the modify's own replacement too: 0.004 bought in all, and the modify refused as 'canceled during its
    cancel-replace', which the strategy never asked. Now the modify is refused with an ``OrderModifyRejected`` naming
    the race and the cut, the cut goes (0.008 at 55,000, its ``OrderReplaced`` follows for the strategy to modify
    again): 0.012 in all, never more than asked."""
    from tradebus.adapters.binance.private_emulator import RestFault as BinanceFault, StreamFault

    release = asyncio.Event()
    held = [BinanceFault("hold", "POST", "/api/v3/order/cancelReplace", release=release)]
    late = [StreamFault("delay", match='"x": "TRADE"', seconds=1.0)]
    async with harness(rest_faults=held, stream_faults=late, trade_size_limit=True, **SPOT_HELD) as h:
        h.venue.on_replace = h.kernel.execution.submit
        order = h.submit(OrderSide.BUY, 0.01, 50_000.0)
        await until(lambda: order.status is OrderStatus.ACCEPTED)
        coid = order.client_order_id
        replaced: list[OrderReplaced] = []
        refused: list[OrderModifyRejected] = []

        def on_replaced(event: OrderReplaced) -> None:  # what a strategy's on_order_replaced does
            replaced.append(event)
            if event.client_order_id == coid:
                h.kernel.execution.modify(ModifyOrder("s1", IID, event.replacement_id, 0, 0, quantity=0.015, price=56_000.0))

        h.kernel.bus.subscribe(OrderReplaced, on_replaced, IID)
        h.kernel.bus.subscribe(OrderModifyRejected, refused.append, IID)
        h.kernel.execution.modify(ModifyOrder("s1", IID, coid, 0, 0, quantity=0.012, price=55_000.0))
        await until(lambda: held[0].fired)
        h.trade(49_990.0, 0.004)
        release.set()

        def settled() -> bool:
            working = h.kernel.orders.open_orders()
            return (
                len(replaced) == 2 and h.venue.in_flight == 0 and not h.venue.replaced_in_flight() and len(working) == 1
                and all(o.status is OrderStatus.ACCEPTED for o in working)
                and sorted(o.client_order_id for o in working) == sorted(r.order.client_order_id for r in h.emulator.open_orders())
            )

        await until(settled)
        working = [(r.order.quantity, r.order.price) for r in h.emulator.open_orders()]
        h.trade(54_000.0, 0.02)  # fills all a working order is for
        await until(lambda: not h.kernel.orders.open_orders())
        await quiet(h)
        await h.venue.drain(WAIT)
    first = replaced[0].replacement_id
    assert [(e.client_order_id, e.replacement_id) for e in replaced] == [(coid, first), (first, replaced[1].replacement_id)]
    [refusal] = refused
    assert refusal.client_order_id == first
    assert f"its order {coid} filled 0.004 before its cancel-replace's cancel" in refusal.reason
    assert "being cut to what is left of the modified total" in refusal.reason
    assert working == [(pytest.approx(0.008), 55_000.0)]
    assert sum(r.filled for r in h.emulator.orders.values()) == pytest.approx(0.012)
    assert h.kernel.portfolio.position(IID) == pytest.approx(0.012)


async def test_a_raced_cancel_replaces_replacement_whose_cut_is_withdrawn_at_send_time_is_canceled() -> None:
    """As the "reduced" case above (a buy of 0.01 modified to 0.012, 0.004 filled by the race), but the cut of the
    replacement, a cancel-replace of it to 0.008, is withdrawn unsent: the daemon's send-time refusal
    (:attr:`LiveVenue.refusal`, here the one it gives when the journal's trading state cannot be read, which sets no
    trading state and so cancels nothing itself) refuses it. Before, the replacement kept working for 0.012 and bought
    it: 0.016 in all. Now the replacement is canceled (a cancel is never withdrawn): 0.004 in all, nothing working."""
    from tradebus.adapters.binance.private_emulator import RestFault as BinanceFault, StreamFault

    release = asyncio.Event()
    held = [BinanceFault("hold", "POST", "/api/v3/order/cancelReplace", release=release)]
    late = [StreamFault("delay", match='"x": "TRADE"', seconds=1.0)]
    async with harness(rest_faults=held, stream_faults=late, trade_size_limit=True, **SPOT_HELD) as h:
        h.venue.on_replace = h.kernel.execution.submit
        order = h.submit(OrderSide.BUY, 0.01, 50_000.0)
        await until(lambda: order.status is OrderStatus.ACCEPTED)
        coid = order.client_order_id
        why = "the journal's trading state could not be read (OperationalError: disk I/O error)"
        h.venue.refusal = lambda orders, replaced: why if replaced and replaced != (coid,) else None
        h.kernel.execution.modify(ModifyOrder("s1", IID, coid, 0, 0, quantity=0.012, price=55_000.0))
        await until(lambda: held[0].fired)
        h.trade(49_990.0, 0.004)
        release.set()
        await until(lambda: order.filled_qty == pytest.approx(0.004) and h.venue.in_flight == 0)
        await until(lambda: not h.kernel.orders.open_orders() and not h.emulator.open_orders())
        h.trade(54_000.0, 0.02)  # would fill a replacement left working
        await quiet(h)
        await h.venue.drain(WAIT)
    assert sum(r.filled for r in h.emulator.orders.values()) == pytest.approx(0.004)
    assert h.kernel.portfolio.position(IID) == pytest.approx(0.004)


@pytest.mark.parametrize(("fault", "bought"), [("error5xx", 0.004), ("lose", 0.012)], ids=["never-arrived", "answer-lost"])
async def test_a_raced_cancel_replaces_replacement_whose_cut_gets_no_answer_never_buys_more_than_asked(
    fault: str, bought: float
) -> None:
    """As the "reduced" case above (a buy of 0.01 modified to 0.012, 0.004 filled by the race), but the cut of the
    replacement, a cancel-replace of it to 0.008, gets no answer. "never-arrived": a gateway ``503`` before Binance
    processed it (nothing happened; the outcome unknown to the daemon); before, the replacement was only queried, found
    working for 0.012 and left so: it bought 0.012, 0.016 in all. Now the replacement is canceled: 0.004 in all.
    "answer-lost": the cut was processed and its answer lost; the replacement's cut, 0.008, works on and buys: 0.012
    in all, as asked (the cancel of the replaced order finds it gone)."""
    from tradebus.adapters.binance.private_emulator import RestFault as BinanceFault, StreamFault

    release = asyncio.Event()
    path = "/api/v3/order/cancelReplace"
    faults = [BinanceFault("hold", "POST", path, release=release), BinanceFault(fault, "POST", path)]  # the second: the cut's
    late = [StreamFault("delay", match='"x": "TRADE"', seconds=1.0)]
    # FAST: the cut the 503 leaves unknown is queried at its submit timeout
    async with harness(rest_faults=faults, stream_faults=late, trade_size_limit=True, request_timeout=WAIT) as h:
        h.venue.on_replace = h.kernel.execution.submit
        order = h.submit(OrderSide.BUY, 0.01, 50_000.0)
        await until(lambda: order.status is OrderStatus.ACCEPTED)
        h.kernel.execution.modify(ModifyOrder("s1", IID, order.client_order_id, 0, 0, quantity=0.012, price=55_000.0))
        await until(lambda: faults[0].fired)
        h.trade(49_990.0, 0.004)
        release.set()
        await until(lambda: faults[1].fired and order.filled_qty == pytest.approx(0.004))

        def settled() -> bool:
            working = h.kernel.orders.open_orders()
            return (
                h.venue.in_flight == 0 and not h.venue.replaced_in_flight()
                and all(o.status is OrderStatus.ACCEPTED for o in working)
                and sorted(o.client_order_id for o in working) == sorted(r.order.client_order_id for r in h.emulator.open_orders())
            )

        await until(settled)
        h.trade(54_000.0, 0.02)  # fills all a working replacement is for
        await until(lambda: not h.kernel.orders.open_orders())
        await quiet(h)
        await h.venue.drain(WAIT)
    assert sum(r.filled for r in h.emulator.orders.values()) == pytest.approx(bought)
    assert h.kernel.portfolio.position(IID) == pytest.approx(bought)


async def test_a_raced_cancel_replaces_replacement_whose_cut_is_refused_after_its_cancel_is_placed_again_for_the_cut() -> None:
    """As the "reduced" case above (a buy of 0.01 modified to 0.012, 0.004 filled by the race), but Binance cancels the
    replacement and refuses the cut's new order (a ``refuse_new`` fault: ``-2021``, the new order's ``-2010``). The
    replacement is then placed again alone. Before, it was placed again for its old size, 0.012, and bought it: 0.016
    in all. Now it is placed for what is left of the cut's total, 0.008: 0.012 in all, as asked."""
    from tradebus.adapters.binance.private_emulator import RestFault as BinanceFault, StreamFault

    modified, raced, placed = 0.012, 0.004, 0.008
    release = asyncio.Event()
    path = "/api/v3/order/cancelReplace"
    faults = [BinanceFault("hold", "POST", path, release=release), BinanceFault("refuse_new", "POST", path)]  # the second: the cut's
    late = [StreamFault("delay", match='"x": "TRADE"', seconds=1.0)]
    async with harness(rest_faults=faults, stream_faults=late, trade_size_limit=True, **SPOT_HELD) as h:
        h.venue.on_replace = h.kernel.execution.submit
        order = h.submit(OrderSide.BUY, 0.01, 50_000.0)
        await until(lambda: order.status is OrderStatus.ACCEPTED)
        h.kernel.execution.modify(ModifyOrder("s1", IID, order.client_order_id, 0, 0, quantity=modified, price=55_000.0))
        await until(lambda: faults[0].fired)
        h.trade(49_990.0, raced)
        release.set()
        await until(lambda: faults[1].fired and order.filled_qty == pytest.approx(raced))

        def settled() -> bool:
            working = h.kernel.orders.open_orders()
            return (
                h.venue.in_flight == 0 and not h.venue.replaced_in_flight() and len(working) == 1
                and all(o.status is OrderStatus.ACCEPTED for o in working)
                and sorted(o.client_order_id for o in working) == sorted(r.order.client_order_id for r in h.emulator.open_orders())
            )

        await until(settled)
        working = [(r.order.quantity, r.order.price) for r in h.emulator.open_orders()]
        h.trade(54_000.0, 0.02)  # fills all a working order is for
        await until(lambda: not h.kernel.orders.open_orders())
        await quiet(h)
        await h.venue.drain(WAIT)
    assert working == [(pytest.approx(placed), 55_000.0)]
    assert sum(r.filled for r in h.emulator.orders.values()) == pytest.approx(modified)
    assert h.kernel.portfolio.position(IID) == pytest.approx(modified)


async def test_a_raced_cancel_replaces_cut_refused_after_fills_reached_the_modified_total_places_nothing_again(tmp_path: Path) -> None:
    """As the case above (a buy of 0.01 modified to 0.012, 0.004 filled by the race, the cut of the replacement to
    0.008 canceled by Binance and its new order refused, ``-2021``), but while the cut waits at the venue (one fault
    on it: held, then ``refuse_new``) a trade at 54,000 fills the replacement's 0.008: the fills reach the modified
    total, 0.012, before the cut's cancel. Nothing is placed again (0.008 - (0.008 - 0) is left), the modify is
    refused (``OrderModifyRejected``), the replacement ends canceled with its 0.008 filled, and the journal holds it
    so: 0.012 in all, nothing working."""
    from tradebus.adapters.binance.private_emulator import RestFault as BinanceFault, StreamFault
    from tradebus.execution.journal import Journal

    modified, raced = 0.012, 0.004
    swap, cut = asyncio.Event(), asyncio.Event()
    path = "/api/v3/order/cancelReplace"
    faults = [BinanceFault("hold", "POST", path, release=swap), BinanceFault("refuse_new", "POST", path, release=cut)]
    late = [StreamFault("delay", match='"x": "TRADE"', seconds=1.0)]
    journal = Journal(tmp_path / "journal.db")
    refused: list[OrderModifyRejected] = []
    async with harness(rest_faults=faults, stream_faults=late, trade_size_limit=True, journal=journal, **SPOT_HELD) as h:
        h.venue.on_replace = h.kernel.execution.submit
        h.kernel.bus.subscribe(OrderModifyRejected, refused.append, IID)
        order = h.submit(OrderSide.BUY, 0.01, 50_000.0)
        await until(lambda: order.status is OrderStatus.ACCEPTED)
        coid = order.client_order_id
        h.kernel.execution.modify(ModifyOrder("s1", IID, coid, 0, 0, quantity=modified, price=55_000.0))
        await until(lambda: faults[0].fired)
        h.trade(49_990.0, raced)
        swap.set()
        await until(lambda: faults[1].fired)  # the cut waits at the venue
        [replacement] = [o for o in h.kernel.orders.open_orders() if o.client_order_id != coid and o.quantity == pytest.approx(modified)]
        rid = replacement.client_order_id
        h.trade(54_000.0, 0.008)  # fills the replacement's 0.008 before the cut's cancel
        assert h.emulator.orders[rid].filled == pytest.approx(0.008)
        cut.set()
        await until(lambda: not h.kernel.orders.open_orders() and h.venue.in_flight == 0)
        await quiet(h)
        await h.venue.drain(WAIT)
        placed = [c for m, p, c in h.emulator.requests if m == "POST"]
        h.trade(54_000.0, 0.02)  # would fill an order placed again
        await quiet(h)
    assert not h.emulator.open_orders()
    assert len(placed) == 3  # the order, the cancel-replace, the cut: nothing placed again
    assert replacement.status is OrderStatus.CANCELED and replacement.filled_qty == pytest.approx(0.008)
    assert [e.client_order_id for e in refused] == [rid]
    assert sum(r.filled for r in h.emulator.orders.values()) == pytest.approx(modified)
    assert h.kernel.portfolio.position(IID) == pytest.approx(modified)
    entries = [type(e.message).__name__ for e in journal.entries() if getattr(e.message, "client_order_id", "") == rid]
    journal.close()
    assert entries[-1] == "OrderCanceled" and entries.count("OrderFilled") >= 1


@asynccontextmanager
async def _restarted_on(emulator: BinancePrivateEmulator, path: Path, strategies: Sequence[Any] = ()) -> AsyncIterator[Kernel]:
    """A live process restarted on the journal at ``path`` against ``emulator``, started as the live node starts one
    (``LiveNode._recover``, then ``_reconcile_positions``): the journal replayed, its open orders tracked and its
    cancel-replaces taken over by the venue, ``strategies`` added, the start-up reconciliation run, then
    ``replace_resumed``."""
    from pydantic import SecretStr

    from tests.live.live_harness import INST, KEY, SECRET
    from tradebus.adapters.binance.trading import BinanceTrading
    from tradebus.adapters.binance.user_stream import BinanceUserStream, UserStreamParser
    from tradebus.engine.clock import LiveClock
    from tradebus.execution.journal import Journal
    from tradebus.execution.live import LiveVenue
    from tradebus.node.reconcile import Reconciler

    journal, clock = Journal(path), LiveClock()
    api = BinanceTrading(emulator.rest_url, SecretStr(KEY), SecretStr(SECRET), {IID: INST}, timeout=WAIT)
    venue = LiveVenue(api, clock)
    kernel = Kernel([INST], clock=clock, venue=venue, timeouts=ANSWERED, initial_cash=100_000.0, journal=journal)
    unknown = journal.replay(kernel.orders, kernel.portfolio, clock.now_ns(), risk=kernel.risk, on_message=kernel.record_journaled)
    venue.on_answer, venue.on_cancel, venue.on_replace = kernel.execution.reconcile_order, kernel.execution.cancel, kernel.execution.submit
    stream = BinanceUserStream(emulator.ws_api_url, SecretStr(KEY), SecretStr(SECRET), UserStreamParser({IID: INST}, venue.order), venue.emit)
    task = asyncio.create_task(stream.run())
    try:
        await until(lambda: any(s.authed for s in emulator.sessions))
        for order in kernel.orders.open_orders():
            venue.track(order)
        venue.resume_replaces(kernel.journaled_replaces.values())
        venue.resume_swaps(kernel.journaled_swaps.values(), kernel.orders.get)
        for strategy in strategies:
            kernel.add_strategy(strategy)
        kernel.start()
        await Reconciler(kernel, venue, lambda iid, reason: None, 2.0).startup(unknown, [])
        await venue.drain(WAIT)
        venue.replace_resumed()
        yield kernel
        await venue.drain(WAIT)
    finally:
        stream.stop()
        await task
        await venue.aclose()
        journal.close()


@pytest.mark.parametrize("killed", ["before-the-answer", "before-the-cut"])
async def test_a_raced_cancel_replaces_replacement_left_working_by_a_kill_is_cut_by_the_restart(tmp_path: Path, killed: str) -> None:
    """As the "reduced" case above (a buy of 0.01 modified to 0.012 in all, 0.004 filled by a trade racing the
    cancel-replace), but the daemon is killed (its journal closed, nothing more sent): "before-the-answer" while the
    cancel-replace waits at Binance (done after the kill: the order canceled with 0.004 filled, the replacement
    working for 0.012); "before-the-cut": once its answer told the 0.004, while the cut of the replacement to 0.008
    waits at Binance (done only after the restart: refused, its order gone). Before, the restarted daemon found the
    replacement working for 0.012 and left it: 0.016 bought in all. Now the restart compares the 0.004 the venue
    filled with the 0.0 the journal says the replacement was sized on and cuts it to 0.008: 0.012 in all."""
    from tradebus.adapters.binance.private_emulator import RestFault as BinanceFault, StreamFault
    from tradebus.execution.journal import Journal

    path = "/api/v3/order/cancelReplace"
    replace, cut = asyncio.Event(), asyncio.Event()
    faults = [BinanceFault("hold", "POST", path, release=replace)]
    if killed == "before-the-cut":
        faults.append(BinanceFault("hold", "POST", path, release=cut))
    late = [StreamFault("delay", match='"x": "TRADE"', seconds=1.0)]
    journal = Journal(tmp_path / "journal.sqlite")
    async with harness(rest_faults=faults, stream_faults=late, trade_size_limit=True, journal=journal, **SPOT_HELD) as h:
        h.venue.on_replace = h.kernel.execution.submit
        order = h.submit(OrderSide.BUY, 0.01, 50_000.0)  # at the clock's time: the restart reads the trade history since it
        await until(lambda: order.status is OrderStatus.ACCEPTED)
        coid = order.client_order_id
        h.kernel.execution.modify(ModifyOrder("s1", IID, coid, 0, 0, quantity=0.012, price=55_000.0))
        await until(lambda: faults[0].fired)
        h.trade(49_990.0, 0.004)
        if killed == "before-the-cut":
            replace.set()
            await until(lambda: faults[1].fired)
        journal.close()  # killed: nothing more reaches the journal or the venue
        h.kernel.clock.stop()
        h.stream.stop()
        await h.venue.aclose()
        replace.set()
        await until(lambda: [(r.order.quantity, r.order.price) for r in h.emulator.open_orders()] == [(0.012, 55_000.0)])
        try:
            async with _restarted_on(h.emulator, tmp_path / "journal.sqlite") as kernel:
                await until(lambda: [r.order.quantity for r in h.emulator.open_orders()] == [pytest.approx(0.008)])
                cut.set()  # the killed daemon's cut, if it waits, reaches Binance now: its order is gone
                h.emulator.on_trade(Trade(IID, h.t0 + 10**9, h.t0 + 10**9, 54_000.0, 0.02, 1, "late"))  # fills what works
                await until(lambda: not h.emulator.open_orders() and not kernel.orders.open_orders())
        finally:
            cut.set()  # a held request would keep the emulator from stopping
        assert kernel.portfolio.position(IID) == pytest.approx(0.012)
    assert sum(r.filled for r in h.emulator.orders.values()) == pytest.approx(0.012)
    # the restart read the trade history from the order's creation (one 24 h window), not from 1970 (some 20,000
    # windows): one read by time (it names no order). The reads by orderId are queries' (a canceled order's fills),
    # one more when the kill came before the daemon had booked its query's answer: the restart queries it again
    trades = [c for m, p, c in h.emulator.requests if p == "/api/v3/myTrades"]
    queried = {c for m, p, c in h.emulator.requests if (m, p) == ("GET", "/api/v3/order")}
    assert trades.count("") == 1 and set(trades) - {""} <= queried


@pytest.mark.parametrize("restarted", [False, True], ids=["running", "restarted"])
async def test_a_good_till_date_order_cancel_replaced_on_binance_spot_still_ends_at_its_date(tmp_path: Path, restarted: bool) -> None:
    """A buy of 0.01 at 50,000 made good till a date 30 s away (``gtd``), then moved to 51,000: Binance spot
    cancel-replaces it (a new client order id, ``OrderReplaced``). Before, the expiry timer named the replaced order,
    already canceled, so at the date nothing happened: the replacement the user asked to end kept working at the
    venue, and its row said GTC. Now the replacement carries the date (``expire_ns``, its own timer and journaled
    link) and is canceled then; "restarted": the daemon is killed after the replacement was placed
    and a restart on its journal cancels it at the date. The date comes at once by the clock's ``run_due`` (a date
    2 s away passed on a stalled loop before the replacement was placed, and the original's timer canceled it)."""
    from tradebus.execution.contingent import ContingentOrders
    from tradebus.execution.journal import Journal
    from tradebus.reports.writers import ORDER_COLUMNS, order_row

    path = tmp_path / "journal.sqlite"
    journal = Journal(path)
    async with harness(journal=journal, **SPOT_HELD) as h:
        h.venue.on_replace = h.kernel.execution.submit
        contingent = ContingentOrders(h.kernel)
        order = h.submit(OrderSide.BUY, 0.01, 50_000.0)
        await until(lambda: order.status is OrderStatus.ACCEPTED)
        coid = order.client_order_id
        expire = (h.kernel.clock.now_ns() // 10**9 + 30) * 10**9  # whole seconds, before any request timeout (WAIT)
        contingent.gtd(coid, expire)
        h.kernel.execution.modify(ModifyOrder("s1", IID, coid, 0, 0, price=51_000.0))
        await until(lambda: len(h.kernel.orders.orders()) == 2)
        new = h.kernel.orders.orders()[1]
        await until(lambda: new.status is OrderStatus.ACCEPTED and order.status is OrderStatus.CANCELED)
        assert new.expire_ns == expire and h.kernel.clock.now_ns() < expire
        assert order_row(new, "", "")[ORDER_COLUMNS.index("time_in_force")] == "GTD"  # orders.csv
        if restarted:
            journal.close()  # killed: nothing more reaches the journal or the venue
            h.kernel.clock.stop()
            h.stream.stop()
            await h.venue.aclose()
            async with _restarted_on(h.emulator, path, [Contingent(IID)]) as kernel:
                ended = kernel.orders.order(new.client_order_id)
                assert ended.expire_ns == expire
                await _expired(kernel, ended, expire)
        else:
            ended = new
            await _expired(h.kernel, new, expire)
            await h.venue.drain(WAIT)
        assert ended.status is OrderStatus.CANCELED
        assert h.emulator.orders[new.client_order_id].status == "CANCELED" and h.emulator.open_orders() == []
    # one cancel of the replacement, at its date: a restart sets its timer once
    assert [p for m, p, c in h.emulator.requests if c == new.client_order_id and m == "DELETE"] == ["/api/v3/order"]


async def _expired(kernel: Kernel, order: Order, expire: int) -> None:
    """Fire the timers of ``kernel`` due by ``expire`` ns, by 1 ns short of it first: ``order`` is open until then, its cancel
    (its expiry) is sent and answered at it."""
    kernel.clock.run_due(expire - 1)
    assert order.is_open, "canceled before its date"
    kernel.clock.run_due(expire)
    await until(lambda: not order.is_open)


async def test_a_binance_spot_cancel_replace_is_no_anomaly_but_a_repeated_cancel_frame_still_is() -> None:
    """The replaced order's cancel is emitted from the cancel-replace's answer, then the user stream's CANCELED
    frame repeats it: expected, not a ``duplicate_event`` anomaly (a WARNING on every modify before). The
    same frame sent twice: the second is one."""
    from tradebus.adapters.binance.private_emulator import StreamFault

    for faults in ([], [StreamFault("duplicate", match='"x": "CANCELED"')]):
        async with harness(stream_faults=faults, **SPOT_HELD) as h:
            h.venue.on_replace = h.kernel.execution.submit
            anomalies: list[OrderAnomaly] = []
            h.kernel.bus.subscribe(OrderAnomaly, anomalies.append)
            warnings: list[str] = []
            sink = logger.add(warnings.append, level="WARNING", format="{message}")
            try:
                order = h.submit(OrderSide.BUY, 0.01, 50_000.0)
                await until(lambda: order.status is OrderStatus.ACCEPTED)  # noqa: B023
                coid = order.client_order_id
                h.kernel.execution.modify(ModifyOrder("s1", IID, coid, 0, 0, price=55_000.0))
                await until(lambda: len(h.kernel.orders.orders()) == 2)  # noqa: B023
                new = h.kernel.orders.orders()[-1]
                await until(lambda: new.status is OrderStatus.ACCEPTED)  # noqa: B023
                h.trade(54_000.0)
                await until(lambda: new.status is OrderStatus.FILLED)  # noqa: B023 - its frame follows the CANCELED ones
                await h.venue.drain(WAIT)
            finally:
                logger.remove(sink)
        assert order.status is OrderStatus.CANCELED and order.venue_filled_qty == 0.0
        expected = [(coid, AnomalyKind.DUPLICATE_EVENT, "canceled repeated in CANCELED")] if faults else []
        assert [(a.client_order_id, a.kind, a.detail) for a in anomalies] == expected
        logged = [f"order {coid}: {a.kind} ({a.event}): {a.detail}" for a in anomalies]
        assert [w.rstrip() for w in warnings if "duplicate_event" in w] == logged



async def test_a_canceled_frame_repeated_while_its_cancel_replace_is_unanswered_is_a_duplicate_anomaly() -> None:
    """As above, but the cancel-replace's answer comes 0.3 s late: the CANCELED frame and its repeat both arrive while
    the request is unanswered, and the daemon holds them until the answer. Before, the repeat took the place of the
    first one held: dropped with no ``duplicate_event`` (a WARNING and an anomaly for the same repeat after the
    answer). Now both are passed on after the answer: the order is canceled once, and the repeat is the anomaly."""
    from tradebus.adapters.binance.private_emulator import RestFault as BinanceFault, StreamFault

    slow = [BinanceFault("slow", "POST", "/api/v3/order/cancelReplace", seconds=0.3)]
    async with harness(rest_faults=slow, stream_faults=[StreamFault("duplicate", match='"x": "CANCELED"')], **SPOT_HELD) as h:
        h.venue.on_replace = h.kernel.execution.submit
        anomalies: list[OrderAnomaly] = []
        canceled: list[OrderCanceled] = []
        h.kernel.bus.subscribe(OrderAnomaly, anomalies.append)
        h.kernel.bus.subscribe(OrderCanceled, canceled.append)
        order = h.submit(OrderSide.BUY, 0.01, 50_000.0)
        await until(lambda: order.status is OrderStatus.ACCEPTED)
        coid = order.client_order_id
        h.kernel.execution.modify(ModifyOrder("s1", IID, coid, 0, 0, price=55_000.0))
        await until(lambda: slow[0].fired and h.emulator.orders[coid].status == "CANCELED")
        await until(lambda: len(h.kernel.orders.orders()) == 2 and order.status is OrderStatus.CANCELED)
        new = h.kernel.orders.orders()[-1]
        await until(lambda: new.status is OrderStatus.ACCEPTED)
        await h.venue.drain(WAIT)
    assert [c.client_order_id for c in canceled] == [coid] and new.price == 55_000.0
    assert [(a.client_order_id, a.kind, a.detail) for a in anomalies] == [
        (coid, AnomalyKind.DUPLICATE_EVENT, "canceled repeated in CANCELED")
    ]

async def test_a_cancel_replace_whose_cancel_event_is_dropped_still_replaces_once() -> None:
    from tradebus.adapters.binance.private_emulator import StreamFault

    async with harness(stream_faults=[StreamFault("drop", match='"x": "CANCELED"')], **SPOT_HELD) as h:
        h.venue.on_replace = h.kernel.execution.submit
        order = h.submit(OrderSide.BUY, 0.01, 50_000.0)
        await until(lambda: order.status is OrderStatus.ACCEPTED)
        h.kernel.execution.modify(ModifyOrder("s1", IID, order.client_order_id, 0, 0, price=55_000.0))
        # the cancel is confirmed only by the cancel timeout's query
        await until(lambda: len(h.kernel.orders.orders()) == 2)
        new = next(o for o in h.kernel.orders.orders() if o is not order)
        await until(lambda: new.status is OrderStatus.ACCEPTED)
        await h.venue.drain(WAIT)
    assert order.status is OrderStatus.CANCELED and new.price == 55_000.0
    assert len(h.kernel.orders.orders()) == 2


async def test_binance_spot_trailing_stop_trails_by_one_request_cancel_replaces() -> None:
    """Long 0.01 BTC; a trailing sell stop 500 below the last trade (60,000): trigger 59,500. Trades
    at 61,000 and 62,000 move it to 60,500 and 61,500, each by one ``POST /api/v3/order/cancelReplace``
    (the venue always holds exactly one stop: there is no moment without one); 61,400 sells the
    position at the venue. The live venue refused every trigger modify: the stop stayed at 59,500."""
    from tradebus.execution.contingent import ContingentOrders

    async with harness(**SPOT_HELD) as h:
        h.venue.on_replace = h.kernel.execution.submit
        contingent = ContingentOrders(h.kernel)
        buy = h.submit(OrderSide.BUY, 0.01)
        await until(lambda: buy.status is OrderStatus.ACCEPTED)
        h.trade(60_000.0)
        await until(lambda: buy.status is OrderStatus.FILLED)
        # the default: not reduce-only on a cash spot instrument (Binance spot refuses reduce-only orders)
        first = contingent.trailing_stop("s1", IID, OrderSide.SELL, 0.01, offset=500.0)
        assert not h.kernel.orders.order(first).reduce_only

        def venue_stops() -> list[float]:
            return [r.order.trigger_price for r in h.emulator.open_orders()]

        await until(lambda: venue_stops() == [59_500.0])
        for price, trigger in ((61_000.0, 60_500.0), (62_000.0, 61_500.0)):
            h.trade(price)
            await until(lambda: venue_stops() == [trigger])  # noqa: B023
            # the kernel's trailing stop is the replacement once the cancel-replace's answer arrived (the venue's
            # stop moves before it): ACCEPTED at the trigger; the replaced one, ACCEPTED at the old trigger till then
            trailing = lambda: [(o.status, o.trigger_price) for o in map(h.kernel.orders.order, contingent._trailing)]  # noqa: E731
            await until(lambda: trailing() == [(OrderStatus.ACCEPTED, trigger)])  # noqa: B023
        h.trade(61_400.0)
        await until(lambda: h.kernel.portfolio.position(IID) == pytest.approx(0.0))
        await h.venue.drain(WAIT)
    assert h.venue.requests["replace"] == 2 and h.venue.requests["cancel"] == 0
    assert [p for m, p, c in h.emulator.requests if p == "/api/v3/order/cancelReplace"] == ["/api/v3/order/cancelReplace"] * 2
    replaced = [o for o in h.kernel.orders.orders() if o.order_type is OrderType.STOP_MARKET]
    assert [str(o.status) for o in replaced] == ["CANCELED", "CANCELED", "FILLED"]


async def test_binance_spot_trailing_stops_move_due_while_its_cancel_replace_is_unanswered_is_sent_once_it_is_answered() -> None:
    """Long 0.01 BTC; a trailing sell stop 500 below 60,000: 59,500. 61,000 moves it to 60,500 by a cancelReplace
    the venue holds unanswered; 62,000 comes meanwhile, 61,500 due. Once it is answered, one more cancelReplace
    moves the replacement to 61,500 (never two at once, no modify of the order being replaced); 61,400 sells. The
    move went to the order being replaced, refused: the replacement stayed at 60,500, and at 61,400 its move to
    61,500 was refused by Binance (the market had reached it) and it was placed again at 60,500."""
    from tradebus.execution.contingent import ContingentOrders

    release = asyncio.Event()
    held = RestFault("hold", "POST", "/api/v3/order/cancelReplace", release=release)
    async with harness(rest_faults=[held], timeouts=ANSWERED, request_timeout=WAIT) as h:
        h.venue.on_replace = h.kernel.execution.submit
        contingent = ContingentOrders(h.kernel)
        refused: list[OrderModifyRejected] = []
        h.kernel.bus.subscribe(OrderModifyRejected, refused.append)
        buy = h.submit(OrderSide.BUY, 0.01)
        await until(lambda: buy.status is OrderStatus.ACCEPTED)
        h.trade(60_000.0)
        await until(lambda: buy.status is OrderStatus.FILLED)
        first = contingent.trailing_stop("s1", IID, OrderSide.SELL, 0.01, offset=500.0)
        await until(lambda: h.kernel.orders.order(first).status is OrderStatus.ACCEPTED)
        h.trade(61_000.0)
        await until(lambda: held.fired)  # the cancelReplace reached the venue, unanswered
        h.trade(62_000.0)
        release.set()
        # Both cancel-replaces done: the stop the kernel holds works and nothing is on its way.
        await until(lambda: h.venue.in_flight == 0 and [o.status for o in h.kernel.orders.open_orders()] == [OrderStatus.ACCEPTED])
        [working] = h.kernel.orders.open_orders()
        assert working.trigger_price == 61_500.0
        assert [(r.order.client_order_id, r.order.trigger_price) for r in h.emulator.open_orders()] == [(working.client_order_id, 61_500.0)]
        h.trade(61_400.0)
        await until(lambda: working.status is OrderStatus.FILLED)
        await h.venue.drain(WAIT)
    stops = [o for o in h.kernel.orders.orders() if o.order_type is OrderType.STOP_MARKET]
    assert [(o.trigger_price, str(o.status)) for o in stops] == [(59_500.0, "CANCELED"), (60_500.0, "CANCELED"), (61_500.0, "FILLED")]
    assert [p for m, p, c in h.emulator.requests if p == "/api/v3/order/cancelReplace"] == ["/api/v3/order/cancelReplace"] * 2
    assert h.venue.requests["replace"] == 2 and refused == []
    assert h.kernel.portfolio.position(IID) == pytest.approx(0.0)


async def test_a_two_request_cancel_replace_of_an_oco_member_keeps_the_group_on_binance_usdm() -> None:
    """USD-M amends nothing here and has no one-request cancel-replace: a modify cancels the order, then
    places its replacement. Long 0.01; two reduce-only sells, 61,000 and 63,000, one OCO group; the first
    moved to 61,500. A trade at 61,600 fills the replacement: its sibling must be canceled. The links
    were dropped with the first order's cancel: the 63,000 sell kept working."""
    from tests.live.live_harness import usdm_harness
    from tradebus.execution.contingent import ContingentOrders

    async with usdm_harness(**USDM_HELD) as h:
        contingent = ContingentOrders(h.kernel)
        buy = h.submit(OrderSide.BUY, 0.01)
        await until(lambda: buy.status is OrderStatus.ACCEPTED)
        h.trade(60_000.0)
        await until(lambda: h.kernel.portfolio.position(h.iid) == pytest.approx(0.01))
        near = h.submit(OrderSide.SELL, 0.01, 61_000.0, reduce_only=True)
        far = h.submit(OrderSide.SELL, 0.01, 63_000.0, reduce_only=True)
        await until(lambda: near.status is OrderStatus.ACCEPTED and far.status is OrderStatus.ACCEPTED)
        contingent.oco([near.client_order_id, far.client_order_id])
        h.kernel.execution.modify(ModifyOrder("s1", h.iid, near.client_order_id, 0, 0, price=61_500.0))
        await until(lambda: len(h.kernel.orders.orders()) == 4)
        new = h.kernel.orders.orders()[-1]
        await until(lambda: new.status is OrderStatus.ACCEPTED)
        assert near.status is OrderStatus.CANCELED and new.price == 61_500.0
        h.trade(61_600.0)
        await until(lambda: new.status is OrderStatus.FILLED)
        await until(lambda: not far.is_open)
        await h.venue.drain(WAIT)
    assert far.status is OrderStatus.CANCELED and h.emulator.orders[far.client_order_id].status is OrderStatus.CANCELED
    assert [c for m, p, c in h.emulator.requests if m == "DELETE"] == [near.client_order_id, far.client_order_id]
    assert h.kernel.portfolio.position(h.iid) == pytest.approx(0.0)
    assert h.venue.requests["replace"] == 0 and h.venue.requests["amend"] == 0


async def test_a_two_request_cancel_replace_of_a_take_profit_keeps_the_bracket_on_binance_usdm() -> None:
    """Long 0.01 by a bracket with a take-profit at 65,000 (cooldown 1 bar), moved to 62,000 on USD-M
    (cancel, then a new order). A trade at 62,100 fills it: the bracket is closed, its cooldown refuses
    the next one. The bracket still named the canceled order as its child: it never closed."""
    from tests.live.live_harness import usdm_harness
    from tradebus.execution.contingent import ContingentOrders

    async with usdm_harness(**USDM_HELD) as h:
        contingent = ContingentOrders(h.kernel)
        entry = contingent.bracket("s1", h.iid, OrderSide.BUY, 0.01, take_profit=65_000.0, cooldown_bars=1)
        await until(lambda: h.kernel.orders.order(entry).status is OrderStatus.ACCEPTED)
        h.trade(60_000.0)
        await until(lambda: h.kernel.orders.order(entry).status is OrderStatus.FILLED)
        h.trade(60_000.0)  # arms the take-profit
        await until(lambda: len(h.kernel.orders.orders()) == 2)
        target = h.kernel.orders.orders()[-1]
        await until(lambda: target.status is OrderStatus.ACCEPTED)
        h.kernel.execution.modify(ModifyOrder("s1", h.iid, target.client_order_id, 0, 0, price=62_000.0))
        await until(lambda: len(h.kernel.orders.orders()) == 3)
        new = h.kernel.orders.orders()[-1]
        await until(lambda: new.status is OrderStatus.ACCEPTED)
        h.trade(62_100.0)
        await until(lambda: new.status is OrderStatus.FILLED)
        await h.venue.drain(WAIT)
    assert target.status is OrderStatus.CANCELED and h.kernel.portfolio.position(h.iid) == pytest.approx(0.0)
    assert contingent.in_cooldown("s1", h.iid) == 2
    assert contingent.bracket("s1", h.iid, OrderSide.BUY, 0.01, take_profit=65_000.0) is None


async def _bought_with_stop(h: Harness) -> Order:
    """Buy 0.01 filled at 60,000, then a sell stop-market for it at 59,000, working at the venue."""
    buy = h.submit(OrderSide.BUY, 0.01)
    await until(lambda: buy.status is OrderStatus.ACCEPTED)
    h.trade(60_000.0)
    await until(lambda: buy.status is OrderStatus.FILLED)
    stop = h.kernel.execution.submit(SubmitOrder("s1", IID, "", OrderSide.SELL, 0.01, 0, 0, OrderType.STOP_MARKET, trigger_price=59_000.0))
    await until(lambda: stop.status is OrderStatus.ACCEPTED)
    return stop


async def test_a_stop_moved_past_the_last_trade_is_placed_again_at_its_trigger_on_binance_spot() -> None:
    """Long 0.01 BTC, a sell stop at 59,000; last trade 60,000. Moving the stop to 60,500 (above the
    last trade) by one cancel-replace: Binance cancels the stop and refuses the new one ("Order would
    trigger immediately.", -2010; the request answers -2021). The stop is placed again at 59,000, and
    sells at 58,900. The emulator took the new stop, which then sold at the next trade, 59,900."""
    async with harness(**SPOT_HELD) as h:
        h.venue.on_replace = h.kernel.execution.submit
        replaced: list[OrderReplaced] = []
        h.kernel.bus.subscribe(OrderReplaced, replaced.append)
        stop = await _bought_with_stop(h)
        h.kernel.execution.modify(ModifyOrder("s1", IID, stop.client_order_id, 0, 0, trigger_price=60_500.0))
        await until(lambda: len(replaced) == 1)
        again = h.kernel.orders.order(replaced[0].replacement_id)
        await until(lambda: again.status is OrderStatus.ACCEPTED)
        refused = [o for o in h.kernel.orders.orders() if o.status is OrderStatus.REJECTED]
        assert [o.trigger_price for o in refused] == [60_500.0] and "-2021" in refused[0].reason
        assert stop.status is OrderStatus.CANCELED and again.trigger_price == 59_000.0
        assert [r.order.trigger_price for r in h.emulator.open_orders()] == [59_000.0]
        h.trade(59_900.0)
        await h.venue.drain(WAIT)
        assert h.kernel.portfolio.position(IID) == pytest.approx(0.01)
        h.trade(58_900.0)
        await until(lambda: again.status is OrderStatus.FILLED)
    assert h.kernel.portfolio.position(IID) == pytest.approx(0.0)
    assert h.venue.requests["replace"] == 1


async def test_a_trailing_stop_whose_cancel_replace_answer_is_lost_trails_by_its_replacement() -> None:
    """Long 0.01 BTC; a trailing sell stop 500 below 60,000 (59,500). A trade at 61,000 moves it to
    60,500 by one cancel-replace, which Binance does but whose answer is lost: the queries find the
    stop canceled and the replacement working. 62,000 must move the replacement to 61,500. Its trailing
    was dropped with the stop: the replacement stayed at 60,500, trailing nothing."""
    from tradebus.adapters.binance.private_emulator import RestFault
    from tradebus.execution.contingent import ContingentOrders

    async with harness(rest_faults=[RestFault("lose", "POST", "/api/v3/order/cancelReplace")], **SPOT_HELD) as h:
        h.venue.on_replace = h.kernel.execution.submit
        contingent = ContingentOrders(h.kernel)
        buy = h.submit(OrderSide.BUY, 0.01)
        await until(lambda: buy.status is OrderStatus.ACCEPTED)
        h.trade(60_000.0)
        await until(lambda: buy.status is OrderStatus.FILLED)
        first = contingent.trailing_stop("s1", IID, OrderSide.SELL, 0.01, offset=500.0)

        def venue_stops() -> list[float]:
            return [r.order.trigger_price for r in h.emulator.open_orders()]

        await until(lambda: venue_stops() == [59_500.0])
        h.trade(61_000.0)
        await until(lambda: venue_stops() == [60_500.0] and len(h.kernel.orders.orders()) == 3)
        new = h.kernel.orders.orders()[-1]
        await until(lambda: new.status is OrderStatus.ACCEPTED and h.kernel.orders.order(first).status is OrderStatus.CANCELED)
        h.trade(62_000.0)
        await until(lambda: venue_stops() == [61_500.0])
        await h.venue.drain(WAIT)
    assert h.venue.requests["replace"] == 2


@pytest.mark.parametrize("cancel_answer_s", [0.0, 0.6], ids=["cancel-answered-first", "cancel-answered-later"])
async def test_a_query_sent_before_a_two_request_cancel_replace_does_not_abandon_it(cancel_answer_s: float) -> None:
    """USD-M: a limit buy at 59,000 is queried (a reconnect's query: answered 0.3 s later, saying NEW as at
    its processing), then moved to 59,500 (cancel, then a new order; the cancel answered at once or
    after the query); the stream's cancel frame comes 1 s late. The query's answer, sent before the cancel, said nothing of it: the modification was
    abandoned (OrderModifyRejected "still working after its cancel-replace's cancel"), then the cancel
    closed the order and no replacement was placed."""
    from tests.live.live_harness import usdm_harness
    from tradebus.adapters.binance.private_emulator import StreamFault

    rest = [RestFault("slow", "GET", "/fapi/v1/order", seconds=0.3)]
    if cancel_answer_s:
        rest.append(RestFault("slow", "DELETE", "/fapi/v1/order", seconds=cancel_answer_s))
    late = [StreamFault("delay", '"x": "CANCELED"', seconds=1.0)]
    async with usdm_harness(stream_faults=late, rest_faults=rest, **USDM_HELD) as h:
        refused: list[OrderModifyRejected] = []
        h.kernel.bus.subscribe(OrderModifyRejected, refused.append)
        order = h.submit(OrderSide.BUY, 0.01, 59_000.0)
        await until(lambda: order.status is OrderStatus.ACCEPTED)
        coid = order.client_order_id
        h.kernel.execution.reconcile_order(coid)
        await until(lambda: ("GET", "/fapi/v1/order", coid) in h.emulator.requests)
        h.kernel.execution.modify(ModifyOrder("s1", h.iid, coid, 0, 0, price=59_500.0))
        await until(lambda: len(h.kernel.orders.orders()) == 2 or not order.is_open)
        await until(lambda: not order.is_open)
        await h.venue.drain(WAIT)
        assert refused == []
        new = h.kernel.orders.orders()[-1]
        await until(lambda: new.status is OrderStatus.ACCEPTED)
    assert order.status is OrderStatus.CANCELED and new is not order
    assert (new.price, new.quantity) == (59_500.0, 0.01)
    assert [r.order.price for r in h.emulator.open_orders()] == [59_500.0]


async def test_a_two_request_cancel_replace_whose_cancel_failed_is_refused_and_the_order_keeps_working() -> None:
    """USD-M: the cancel of a cancel-replace meets a 503 before the venue processed it: the query sent after
    it finds the order working; the modification is refused, the order works on at its price, once."""
    from tests.live.live_harness import usdm_harness

    async with usdm_harness(rest_faults=[RestFault("error5xx", "DELETE", "/fapi/v1/order")], **USDM_HELD) as h:
        refused: list[OrderModifyRejected] = []
        h.kernel.bus.subscribe(OrderModifyRejected, refused.append)
        order = h.submit(OrderSide.BUY, 0.01, 59_000.0)
        await until(lambda: order.status is OrderStatus.ACCEPTED)
        h.kernel.execution.modify(ModifyOrder("s1", h.iid, order.client_order_id, 0, 0, price=59_500.0))
        await until(lambda: len(refused) == 1)
        await h.venue.drain(WAIT)
    assert refused[0].reason == "still working after its cancel-replace's cancel"
    assert order.status is OrderStatus.ACCEPTED and order.price == 59_000.0
    assert len(h.kernel.orders.orders()) == 1 and [r.order.price for r in h.emulator.open_orders()] == [59_000.0]


async def test_an_order_canceled_during_its_two_request_cancel_replace_is_not_replaced() -> None:
    """USD-M: a limit buy at 59,000 is moved to 59,500 (cancel, then a new order) and, before the cancel is
    confirmed, canceled by the strategy (an OCO sibling filled, an exit). The cancel's confirmation placed
    the replacement anyway: a buy the strategy had canceled kept working at 59,500 at the venue."""
    from tests.live.live_harness import usdm_harness
    from tradebus.engine.messages import CancelOrder

    async with usdm_harness(**USDM_HELD) as h:
        refused: list[OrderModifyRejected] = []
        h.kernel.bus.subscribe(OrderModifyRejected, refused.append)
        order = h.submit(OrderSide.BUY, 0.01, 59_000.0)
        await until(lambda: order.status is OrderStatus.ACCEPTED)
        coid = order.client_order_id
        h.kernel.execution.modify(ModifyOrder("s1", h.iid, coid, 0, 0, price=59_500.0))
        h.kernel.execution.cancel(CancelOrder("s1", h.iid, coid, 0, 0))
        await until(lambda: order.status is OrderStatus.CANCELED)
        await h.venue.drain(WAIT)
    assert h.emulator.open_orders() == [] and h.kernel.orders.open_orders() == []
    assert len(h.kernel.orders.orders()) == 1 and [r.client_order_id for r in refused] == [coid]


async def test_two_modifies_during_one_two_request_cancel_replace_are_both_applied() -> None:
    """USD-M: a limit buy of 0.01 at 59,000 is moved to 59,500 (cancel, then a new order) and, before the
    cancel is confirmed, cut to 0.005 (an OCO sibling's partial fill does so). The second modification
    took the first's place: the replacement was 0.005 at 59,000, the price move lost without a word."""
    from tests.live.live_harness import usdm_harness

    async with usdm_harness(**USDM_HELD) as h:
        refused: list[OrderModifyRejected] = []
        h.kernel.bus.subscribe(OrderModifyRejected, refused.append)
        order = h.submit(OrderSide.BUY, 0.01, 59_000.0)
        await until(lambda: order.status is OrderStatus.ACCEPTED)
        coid = order.client_order_id
        h.kernel.execution.modify(ModifyOrder("s1", h.iid, coid, 0, 0, price=59_500.0))
        h.kernel.execution.modify(ModifyOrder("s1", h.iid, coid, 0, 0, quantity=0.005))
        await until(lambda: len(h.kernel.orders.orders()) == 2)
        new = h.kernel.orders.orders()[-1]
        await until(lambda: new.status is OrderStatus.ACCEPTED and order.status is OrderStatus.CANCELED)
        await h.venue.drain(WAIT)
    assert (new.price, new.quantity) == (59_500.0, 0.005) and refused == []
    assert [(r.order.price, r.order.quantity) for r in h.emulator.open_orders()] == [(59_500.0, 0.005)]


async def _cancel_during_replace(h: Harness, coid: str, **change: float) -> None:
    """Move ``coid`` by one (slow) cancel-replace, then cancel it once the venue has processed the replace."""
    h.kernel.execution.modify(ModifyOrder("s1", IID, coid, 0, 0, **change))
    await until(lambda: h.emulator.orders[coid].status == "CANCELED")  # processed; its answer is on its way
    h.kernel.execution.cancel(CancelOrder("s1", IID, coid, 0, 0))


async def test_an_order_canceled_during_its_one_request_cancel_replace_leaves_nothing_working() -> None:
    """Binance spot: a limit buy at 50,000 is moved to 55,000 by one cancel-replace, whose answer is slow
    (0.15 s), and canceled by the strategy meanwhile. The venue did the cancel-replace first (the cancel
    then refused: unknown order); its answer placed the replacement, OrderReplaced moved the order to it,
    and a buy the strategy had canceled kept working at 55,000 at the venue."""
    async with harness(rest_faults=[RestFault("slow", "POST", "/api/v3/order/cancelReplace", seconds=0.15)], **SPOT_HELD) as h:
        h.venue.on_replace = h.kernel.execution.submit
        seen: list[object] = []
        for cls in (OrderModifyRejected, OrderReplaced, OrderCanceled, OrderResolved):
            h.kernel.bus.subscribe(cls, seen.append)
        order = h.submit(OrderSide.BUY, 0.01, 50_000.0)
        await until(lambda: order.status is OrderStatus.ACCEPTED)
        coid = order.client_order_id
        await _cancel_during_replace(h, coid, price=55_000.0)
        await until(lambda: h.emulator.open_orders() == [] and h.kernel.orders.open_orders() == [])
        await h.venue.drain(WAIT)
        new = next(o for o in h.kernel.orders.orders() if o is not order)
    assert order.status is OrderStatus.CANCELED and new.status is OrderStatus.CANCELED
    # closed by the query after the refused cancel, or by the cancel-replace's answer: it does not matter which
    told = sorted(type(e).__name__ for e in seen if e.client_order_id == coid)
    assert told in (["OrderModifyRejected", "OrderResolved"], ["OrderCanceled", "OrderModifyRejected"])


async def test_a_stop_canceled_during_its_refused_one_request_cancel_replace_is_not_placed_again() -> None:
    """Binance spot: long 0.01 BTC, a sell stop at 59,000 moved to 60,500 (above the last trade) by one
    cancel-replace whose answer is slow: Binance cancels the stop and refuses the new one (-2021). The
    strategy cancels the stop meanwhile. The refusal placed the stop again at 59,000: a stop the strategy
    had canceled working at the venue."""
    async with harness(rest_faults=[RestFault("slow", "POST", "/api/v3/order/cancelReplace", seconds=0.15)], **SPOT_HELD) as h:
        h.venue.on_replace = h.kernel.execution.submit
        refused: list[OrderModifyRejected] = []
        h.kernel.bus.subscribe(OrderModifyRejected, refused.append)
        stop = await _bought_with_stop(h)
        coid = stop.client_order_id
        await _cancel_during_replace(h, coid, trigger_price=60_500.0)
        await until(lambda: len(refused) == 1)
        await h.venue.drain(WAIT)
    assert h.emulator.open_orders() == [] and h.kernel.orders.open_orders() == []
    assert stop.status is OrderStatus.CANCELED and len(h.kernel.orders.orders()) == 3  # the buy, the stop, the refused one


async def test_a_two_request_cancel_replace_whose_confirming_query_fails_asks_again() -> None:
    """USD-M: a limit buy at 59,000 moved to 59,500 (cancel, then a new order); the venue cancels it, the
    stream's cancel frame is lost and the two queries sent after the cancel's answer meet a 503. Nothing
    asked again: the order stayed ACCEPTED here at 59,000 though canceled at the venue, nothing was placed
    in its place and the cancel-replace stayed pending for good."""
    from tests.live.live_harness import usdm_harness
    from tradebus.adapters.binance.private_emulator import StreamFault

    rest = [RestFault("error5xx", "GET", "/fapi/v1/order"), RestFault("error5xx", "GET", "/fapi/v1/order")]  # the first two
    async with usdm_harness(stream_faults=[StreamFault("drop", '"x": "CANCELED"')], rest_faults=rest, **USDM_HELD) as h:
        replaced: list[OrderReplaced] = []
        h.kernel.bus.subscribe(OrderReplaced, replaced.append)
        order = h.submit(OrderSide.BUY, 0.01, 59_000.0)
        await until(lambda: order.status is OrderStatus.ACCEPTED)
        coid = order.client_order_id
        h.kernel.execution.modify(ModifyOrder("s1", h.iid, coid, 0, 0, price=59_500.0))
        await until(lambda: len(replaced) == 1)
        new = h.kernel.orders.order(replaced[0].replacement_id)
        await until(lambda: new.status is OrderStatus.ACCEPTED and order.status is OrderStatus.CANCELED)
        await h.venue.drain(WAIT)
    assert all(f.fired for f in rest)
    assert (new.price, new.quantity) == (59_500.0, 0.01) and [r.order.price for r in h.emulator.open_orders()] == [59_500.0]
    assert h.venue._replacing == {}


async def test_a_lost_cancel_of_the_replacement_of_an_order_canceled_during_its_cancel_replace_is_settled() -> None:
    """Binance spot, no periodic open-order check, no reconciliation: a limit buy at 50,000 moved to 55,000
    by one slow cancel-replace and canceled by the strategy meanwhile; the venue places the replacement,
    which is canceled at once, and both that cancel's answer and its stream frame are lost. That cancel
    had no timeout (sent by the venue layer, not the engine): the replacement stayed ACCEPTED here for
    good though canceled at the venue."""
    from tradebus.adapters.binance.private_emulator import StreamFault

    rest = [
        RestFault("slow", "POST", "/api/v3/order/cancelReplace", seconds=0.15),
        # processed, answered after the client's timeout (a lost answer: aiohttp sends a DELETE again on a dropped connection)
        RestFault("slow", "DELETE", "/api/v3/order", at=1, seconds=0.6),  # the strategy's cancel (refused) is the first
    ]
    stream = [StreamFault("drop", '"X": "CANCELED"', at=1)]  # the first: the order's, by the cancel-replace
    async with harness(rest_faults=rest, stream_faults=stream) as h:
        h.venue.on_replace = h.kernel.execution.submit
        order = h.submit(OrderSide.BUY, 0.01, 50_000.0)
        await until(lambda: order.status is OrderStatus.ACCEPTED)
        coid = order.client_order_id
        await _cancel_during_replace(h, coid, price=55_000.0)
        await until(lambda: len(h.kernel.orders.orders()) == 2)
        new = h.kernel.orders.orders()[-1]
        await until(lambda: h.emulator.open_orders() == [] and all(f.fired for f in rest + stream))
        await until(lambda: new.status is OrderStatus.CANCELED)
        await h.venue.drain(WAIT)
    assert order.status is OrderStatus.CANCELED and h.kernel.orders.open_orders() == []


async def test_a_lost_refused_cancel_of_the_filled_replacement_of_an_order_canceled_during_its_cancel_replace_books_the_fill() -> None:
    """As above, but the replacement fills at the venue before its cancel arrives (the fill's stream frame
    lost): the cancel is refused and its answer lost. The fill was never booked: a bought 0.01 BTC
    missing from the portfolio, the replacement ACCEPTED here for good."""
    from tradebus.adapters.binance.private_emulator import StreamFault

    rest = [
        RestFault("slow", "POST", "/api/v3/order/cancelReplace", seconds=0.15),
        RestFault("slow", "DELETE", "/api/v3/order", at=1, seconds=0.6),  # answered after the client's timeout
    ]
    stream = [StreamFault("drop", '"X": "FILLED"')]
    async with harness(rest_faults=rest, stream_faults=stream) as h:
        h.venue.on_replace = h.kernel.execution.submit
        order = h.submit(OrderSide.BUY, 0.01, 50_000.0)
        await until(lambda: order.status is OrderStatus.ACCEPTED)
        coid = order.client_order_id
        await _cancel_during_replace(h, coid, price=55_000.0)
        await until(lambda: [r.order.price for r in h.emulator.open_orders()] == [55_000.0])
        h.trade(54_000.0)  # fills the replacement at the venue, before the cancel-replace's answer
        await until(lambda: len(h.kernel.orders.orders()) == 2)
        new = h.kernel.orders.orders()[-1]
        await until(lambda: all(f.fired for f in rest + stream))
        await until(lambda: new.status is OrderStatus.FILLED)
        await h.venue.drain(WAIT)
    assert order.status is OrderStatus.CANCELED and h.kernel.orders.open_orders() == []
    venue_fill = h.emulator.fills[0].fill
    assert [(venue_fill.client_order_id, venue_fill.last_qty)] == [(new.client_order_id, 0.01)]
    assert [(f.client_order_id, f.quantity, f.price) for f in h.kernel.result.fills] == [(new.client_order_id, 0.01, venue_fill.last_px)]


async def test_the_cancel_of_an_order_canceled_during_its_cancel_replace_tells_the_filled_quantity_the_answer_gave() -> None:
    """Binance spot: a limit buy of 0.02 at 50,000, half filled, moved to 55,000 by one slow cancel-replace and
    canceled by the strategy meanwhile; the user stream's cancel frame is lost, and the strategy's cancel
    (refused: the order is gone) is answered after the client's timeout. The order's cancel comes from the
    cancel-replace's answer, which tells 0.01 filled (``cancelResponse.executedQty``): that quantity was dropped,
    the cancel journaled as telling none, and the order queried for it."""
    from tradebus.adapters.binance.private_emulator import StreamFault

    rest = [
        RestFault("slow", "POST", "/api/v3/order/cancelReplace", seconds=0.15),
        RestFault("slow", "DELETE", "/api/v3/order", seconds=0.6),  # the strategy's cancel: no answer in time
    ]
    async with harness(rest_faults=rest, stream_faults=[StreamFault("drop", '"X": "CANCELED"')], trade_size_limit=True) as h:
        h.venue.on_replace = h.kernel.execution.submit
        canceled: list[OrderCanceled] = []
        h.kernel.bus.subscribe(OrderCanceled, canceled.append)
        order = h.submit(OrderSide.BUY, 0.02, 50_000.0)
        await until(lambda: order.status is OrderStatus.ACCEPTED)
        h.trade(49_000.0, 0.01)
        await until(lambda: order.filled_qty > 0.0)
        coid = order.client_order_id
        await _cancel_during_replace(h, coid, price=55_000.0)
        await until(lambda: order.status is OrderStatus.CANCELED and all(f.fired for f in rest))
        await h.venue.drain(WAIT)
    assert [c.filled_qty for c in canceled if c.client_order_id == coid] == [pytest.approx(0.01)]
    assert order.venue_filled_qty == pytest.approx(0.01) and order.filled_qty == pytest.approx(0.01)
    # no order query asserted: under load the strategy's slow cancel times out before the answer is read, and the
    # query that follows is right (the quantity told by the answer is what is checked above)


async def test_the_cancel_of_an_order_whose_replacement_was_refused_tells_the_filled_quantity_the_answer_gave() -> None:
    """Binance spot: a post-only buy of 0.02 at 50,000, half filled, then a trade at 51,000; moved to 51,500 by one
    cancel-replace: Binance cancels it and refuses the new order, which would take (-2021), the answer's
    ``cancelResponse.executedQty`` telling 0.01 filled; the user stream's cancel frame is lost. The order is placed
    again as it was, for the 0.01 left. Its cancel told no filled quantity (NaN) and the order was queried for it."""
    from tradebus.adapters.binance.private_emulator import StreamFault

    async with harness(stream_faults=[StreamFault("drop", '"X": "CANCELED"')], trade_size_limit=True, **SPOT_HELD) as h:
        h.venue.on_replace = h.kernel.execution.submit
        canceled: list[OrderCanceled] = []
        replaced: list[OrderReplaced] = []
        h.kernel.bus.subscribe(OrderCanceled, canceled.append)
        h.kernel.bus.subscribe(OrderReplaced, replaced.append)
        order = h.kernel.execution.submit(SubmitOrder("s1", IID, "", OrderSide.BUY, 0.02, 0, 0, OrderType.LIMIT, 50_000.0, post_only=True))
        await until(lambda: order.status is OrderStatus.ACCEPTED)
        h.trade(49_000.0, 0.01)
        await until(lambda: order.filled_qty > 0.0)
        h.trade(51_000.0, 0.01)
        coid = order.client_order_id
        h.kernel.execution.modify(ModifyOrder("s1", IID, coid, 0, 0, price=51_500.0))
        await until(lambda: len(replaced) == 1 and order.status is OrderStatus.CANCELED)
        again = h.kernel.orders.order(replaced[0].replacement_id)
        await until(lambda: again.status is OrderStatus.ACCEPTED)
        await h.venue.drain(WAIT)
    refused = [o for o in h.kernel.orders.orders() if o.status is OrderStatus.REJECTED]
    assert [o.price for o in refused] == [51_500.0] and "-2021" in refused[0].reason
    assert [c.filled_qty for c in canceled if c.client_order_id == coid] == [pytest.approx(0.01)]
    assert order.venue_filled_qty == pytest.approx(0.01) and (again.quantity, again.price) == (pytest.approx(0.01), 50_000.0)
    # no order query asserted: under load the strategy's slow cancel times out before the answer is read, and the
    # query that follows is right (the quantity told by the answer is what is checked above)


async def test_an_order_placed_again_after_its_refused_replacement_is_for_what_the_venue_left_of_it() -> None:
    """As above, the partial fill's stream frame lost too: only the -2021 answer tells 0.01 filled. The order
    was placed again for 0.02, what was left of it before the fill here: an order of 0.02 could buy 0.03 in all."""
    from tradebus.adapters.binance.private_emulator import StreamFault

    lost = [StreamFault("drop", '"X": "PARTIALLY_FILLED"'), StreamFault("drop", '"X": "CANCELED"')]
    async with harness(stream_faults=lost, trade_size_limit=True, **SPOT_HELD) as h:
        h.venue.on_replace = h.kernel.execution.submit
        replaced: list[OrderReplaced] = []
        h.kernel.bus.subscribe(OrderReplaced, replaced.append)
        order = h.kernel.execution.submit(SubmitOrder("s1", IID, "", OrderSide.BUY, 0.02, 0, 0, OrderType.LIMIT, 50_000.0, post_only=True))
        await until(lambda: order.status is OrderStatus.ACCEPTED)
        h.trade(49_000.0, 0.01)
        await until(lambda: h.emulator.fills and lost[0].fired)
        h.trade(51_000.0, 0.01)
        h.kernel.execution.modify(ModifyOrder("s1", IID, order.client_order_id, 0, 0, price=51_500.0))
        await until(lambda: len(replaced) == 1)
        again = h.kernel.orders.order(replaced[0].replacement_id)
        await until(lambda: again.status is OrderStatus.ACCEPTED and order.status is OrderStatus.CANCELED and order.filled_qty > 0.0)
        await h.venue.drain(WAIT)
    assert (again.quantity, again.price) == (pytest.approx(0.01), 50_000.0)
    assert [r.order.quantity for r in h.emulator.open_orders()] == [pytest.approx(0.01)]
    assert order.filled_qty == pytest.approx(0.01) and h.kernel.portfolio.position(IID) == pytest.approx(0.01)


#: The amend path and a final refusal code of each venue (a parameter error).
AMEND_REFUSED = {"okx": ("/api/v5/trade/amend-order", "51000"), "bybit": ("/v5/order/amend", "10001")}



@pytest.mark.parametrize("kit", list(KITS.values()), ids=list(KITS))
async def test_a_raise_of_an_oco_member_above_its_sibling_is_denied_before_the_venue(kit: VenueKit) -> None:
    """Two OCO limit buys of 0.003 (1,000 and 900); the strategy raises the first to 0.004. Before, the amend went to
    the venue (the group could buy 0.004, and a fill of the sibling would reduce the first back); now it is denied as
    the backtest denies it, with no request, and a lowering to 0.002 is amended at the venue."""
    path, _ = AMEND_REFUSED[kit.venue]
    strategy = Contingent(kit.iid)
    async with kit_harness(kit, strategies=[strategy], trade_size_limit=True, **HELD) as h:
        denied: list[Any] = []
        h.kernel.bus.subscribe(OrderDenied, denied.append)
        first, second = strategy.submit_oco([
            OrderSpec(kit.iid, OrderSide.BUY, 0.003, price=1_000.0), OrderSpec(kit.iid, OrderSide.BUY, 0.003, price=900.0),
        ])
        a, b = (h.kernel.orders.order(c) for c in (first, second))
        await until(lambda: a.status is OrderStatus.ACCEPTED and b.status is OrderStatus.ACCEPTED)
        strategy.modify(first, quantity=0.004)
        assert [(d.client_order_id, d.reason.startswith(f"modify: OCO: {first} to 0.004")) for d in denied] == [(first, True)]
        strategy.modify(first, quantity=0.002)
        await until(lambda: h.emulator.orders[first].order.quantity == pytest.approx(0.002))
        await h.venue.drain(WAIT)
        assert len(KitTape(h, kit.iid, 0).posts(path)) == 1 and a.quantity == pytest.approx(0.002)
        assert h.emulator.orders[second].order.quantity == pytest.approx(0.003)

@pytest.mark.parametrize("kit", list(KITS.values()), ids=list(KITS))
async def test_an_oco_sibling_whose_reduction_is_refused_is_reduced_at_the_next_market_event(kit: VenueKit) -> None:
    """Two OCO limit buys of 0.003 (1,000 and 900); a trade of 0.001 fills a third of the first, so the sibling is
    reduced to 0.002, and the venue refuses that amend. Before, the sibling stayed at 0.003 (the group could buy 0.004);
    the reduction is sent again at the next trade, once, and the venue's sibling is at 0.002."""
    path, code = AMEND_REFUSED[kit.venue]
    strategy = Contingent(kit.iid)
    refused = [RestFault("refuse", "POST", path, code=code)]
    async with kit_harness(kit, rest_faults=refused, strategies=[strategy], trade_size_limit=True, **HELD) as h:
        got: list[OrderModifyRejected] = []
        h.kernel.bus.subscribe(OrderModifyRejected, got.append)
        first, second = strategy.submit_oco([
            OrderSpec(kit.iid, OrderSide.BUY, 0.003, price=1_000.0), OrderSpec(kit.iid, OrderSide.BUY, 0.003, price=900.0),
        ])
        a, b = (h.kernel.orders.order(c) for c in (first, second))
        await until(lambda: a.status is OrderStatus.ACCEPTED and b.status is OrderStatus.ACCEPTED)
        tape = KitTape(h, kit.iid, 10**18, size=0.001)
        tape.trade(999.0)  # fills 0.001 of the first
        await until(lambda: a.filled_qty == pytest.approx(0.001) and len(got) == 1)
        await h.venue.drain(WAIT)
        assert h.emulator.orders[second].order.quantity == pytest.approx(0.003) and b.quantity == pytest.approx(0.003)
        tape.trade(1_100.0)  # fills nothing: the reduction is sent again
        await until(lambda: h.emulator.orders[second].order.quantity == pytest.approx(0.002))
        await until(lambda: b.quantity == pytest.approx(0.002))
        tape.trade(1_100.0)
        await h.venue.drain(WAIT)
        assert len(tape.posts(path)) == 2 and b.status is OrderStatus.ACCEPTED


@pytest.mark.parametrize("kit", list(KITS.values()), ids=list(KITS))
async def test_an_oco_sibling_whose_reduction_the_venue_keeps_refusing_is_canceled(kit: VenueKit) -> None:
    """As above, but the venue refuses every amend of the sibling (it cannot modify it): after ``REDUCE_TRIES``
    refusals, one at a time, one per trade, the sibling (not reduce-only) is canceled, logged at WARNING. Before, it
    kept buying 0.003 after the group had bought 0.001."""
    path, code = AMEND_REFUSED[kit.venue]
    strategy = Contingent(kit.iid)
    refused = [RestFault("refuse", "POST", path, code=code) for _ in range(REDUCE_TRIES)]
    warnings: list[str] = []
    sink = logger.add(lambda m: warnings.append(m.record["message"]), level="WARNING")
    try:
        async with kit_harness(kit, rest_faults=refused, strategies=[strategy], trade_size_limit=True, **HELD) as h:
            first, second = strategy.submit_oco([
                OrderSpec(kit.iid, OrderSide.BUY, 0.003, price=1_000.0), OrderSpec(kit.iid, OrderSide.BUY, 0.003, price=900.0),
            ])
            a, b = (h.kernel.orders.order(c) for c in (first, second))
            await until(lambda: a.status is OrderStatus.ACCEPTED and b.status is OrderStatus.ACCEPTED)
            tape = KitTape(h, kit.iid, 10**18, size=0.001)
            tape.trade(999.0)  # fills 0.001 of the first
            for n in range(1, REDUCE_TRIES + 1):
                await until(lambda: len(tape.posts(path)) == n and h.venue.in_flight == 0)
                await h.venue.drain(WAIT)
                tape.trade(1_100.0)  # fills nothing: the reduction is sent again, then the sibling canceled
            await until(lambda: b.status is OrderStatus.CANCELED)
            await h.venue.drain(WAIT)
            assert h.emulator.orders[second].status is OrderStatus.CANCELED and a.status is OrderStatus.PARTIALLY_FILLED
            assert len(tape.posts(path)) == REDUCE_TRIES
    finally:
        logger.remove(sink)
    assert any(second in w and f"refused {REDUCE_TRIES} times" in w and "canceled" in w for w in warnings)


@pytest.mark.parametrize("kit", list(KITS.values()), ids=list(KITS))
async def test_an_oco_siblings_reduction_the_order_rate_holds_back_goes_once_the_window_passes(kit: VenueKit) -> None:
    """Two OCO limit buys of 0.003 (1,000 and 900) under ``max_orders_per_window: 2`` in 3 s; a trade of 0.001 fills a
    third of the first: the sibling's reduction to 0.002 is denied by the gate's order rate (the two buys used the
    window), and again at each of ``REDUCE_TRIES`` trades. Before, those denials counted as the venue's refusals: the
    sibling was canceled and the group broken, for a limit that passes with time. Now they do not count: once the
    window has passed, the next trade reduces the sibling to 0.002 at the venue, still working in its group. The
    window is 10 min, which no stall of a loaded machine passes, and the trade after it comes with the kernel's clock
    pinned past it (a 3 s window had passed on a stalled loop before the denials were counted)."""
    from tradebus.risk.config import RiskConfig

    path, _ = AMEND_REFUSED[kit.venue]
    strategy = Contingent(kit.iid)
    window = 600_000_000_000
    risk = RiskConfig(max_orders_per_window=2, order_rate_window_ns=window)
    async with kit_harness(kit, strategies=[strategy], trade_size_limit=True, risk_config=risk, **HELD) as h:
        denied: list[OrderDenied] = []
        h.kernel.bus.subscribe(OrderDenied, denied.append)
        first, second = strategy.submit_oco([
            OrderSpec(kit.iid, OrderSide.BUY, 0.003, price=1_000.0), OrderSpec(kit.iid, OrderSide.BUY, 0.003, price=900.0),
        ])
        a, b = (h.kernel.orders.order(c) for c in (first, second))
        passed = h.kernel.clock.now_ns()
        await until(lambda: a.status is OrderStatus.ACCEPTED and b.status is OrderStatus.ACCEPTED)
        tape = KitTape(h, kit.iid, 10**18, size=0.001)
        tape.trade(999.0)  # fills 0.001 of the first
        await until(lambda: a.filled_qty == pytest.approx(0.001) and len(denied) == 1)
        for n in range(2, REDUCE_TRIES + 1):
            tape.trade(1_100.0)  # fills nothing: the reduction is checked again, and denied
            assert len(denied) == n
        assert h.kernel.clock.now_ns() - passed < window, "the rate window passed: the test proves nothing"
        assert all(d.client_order_id == second and d.reason.startswith("modify: max_order_rate:") for d in denied)
        await h.venue.drain(WAIT)
        assert b.status is OrderStatus.ACCEPTED and h.emulator.orders[second].status is OrderStatus.ACCEPTED
        with h.kernel.clock.pinned(passed + window + 100_000_000):
            tape.trade(1_100.0)  # the window has passed: the reduction goes
        await until(lambda: b.quantity == pytest.approx(0.002))
        await h.venue.drain(WAIT)
        assert h.emulator.orders[second].order.quantity == pytest.approx(0.002) and b.status is OrderStatus.ACCEPTED
        assert len(KitTape(h, kit.iid, 0).posts(path)) == 1 and h.kernel.portfolio.account.oco_groups().get(second)


@pytest.mark.parametrize("kit", list(KITS.values()), ids=list(KITS))
async def test_an_oco_siblings_reduction_the_price_band_holds_back_counts_as_a_refusal(kit: VenueKit) -> None:
    """Two OCO limit buys of 0.003 (1,000 and 960, within ``price_band_pct: 5`` of the last trade, 1,000); a trade of
    0.001 at 999 fills a third of the first, and the price runs to 1,100 before the fill's report: the sibling's
    reduction to 0.002 is denied by the band (960 is 12.7 % from 1,100), at each trade while the price stays away,
    which it may never leave. Taken as a denial that passes with time, it was sent again uncounted at every trade,
    a WARNING each, the sibling working at 0.003 meanwhile (the group could fill 0.004). The band is a check of the
    order's own price: after ``REDUCE_TRIES`` denials the sibling is canceled, as for a venue's refusals."""
    from tradebus.risk.config import RiskConfig

    strategy = Contingent(kit.iid)
    risk = RiskConfig(price_band_pct=5.0)
    async with kit_harness(kit, strategies=[strategy], trade_size_limit=True, risk_config=risk, **HELD) as h:
        denied: list[OrderDenied] = []
        h.kernel.bus.subscribe(OrderDenied, denied.append)
        tape = KitTape(h, kit.iid, 10**18, size=0.001)
        tape.trade(1_000.0)  # the band's last price
        first, second = strategy.submit_oco([
            OrderSpec(kit.iid, OrderSide.BUY, 0.003, price=1_000.0), OrderSpec(kit.iid, OrderSide.BUY, 0.003, price=960.0),
        ])
        a, b = (h.kernel.orders.order(c) for c in (first, second))
        await until(lambda: a.status is OrderStatus.ACCEPTED and b.status is OrderStatus.ACCEPTED)
        tape.trade(999.0)  # fills 0.001 of the first at the venue
        tape.trade(1_100.0)  # before its report arrives
        await until(lambda: a.filled_qty == pytest.approx(0.001) and len(denied) == 1)
        for _ in range(REDUCE_TRIES + 2):
            tape.trade(1_100.0)  # fills nothing: the reduction is sent again while it is not counted out
        await until(lambda: not b.is_open)
        await h.venue.drain(WAIT)
    assert all(d.client_order_id == second and d.reason.startswith("modify: price_band:") for d in denied)
    assert len(denied) == REDUCE_TRIES
    assert b.status is OrderStatus.CANCELED and h.emulator.orders[second].status is OrderStatus.CANCELED


def _one_account(kit: VenueKit, emu: Any) -> VenueKit:
    """``kit`` whose every harness trades on ``emu``: one account across a daemon and its restart."""
    return VenueKit(**{**kit.__dict__, "make_emulator": lambda *a, **k: emu})


def _queried(h: Any, *coids: str) -> list[Order]:
    """The orders ``coids`` a restart restored, each tracked by the venue and queried, as the daemon's start does."""
    orders = [h.kernel.orders.order(c) for c in coids]
    for order in orders:
        h.venue.track(order)
        h.kernel.execution.resolve_unknown(order.client_order_id)
    return orders


async def _oco_reduction_refused(h: Any, kit: VenueKit, strategy: Contingent) -> tuple[str, str]:
    """Two OCO limit buys of 0.003 (1,000 and 900); a trade of 0.001 fills a third of the first and the venue
    refuses the sibling's reduction once. Returns the two client order ids."""
    got: list[OrderModifyRejected] = []
    h.kernel.bus.subscribe(OrderModifyRejected, got.append)
    first, second = strategy.submit_oco([
        OrderSpec(kit.iid, OrderSide.BUY, 0.003, price=1_000.0), OrderSpec(kit.iid, OrderSide.BUY, 0.003, price=900.0),
    ])
    a, b = (h.kernel.orders.order(c) for c in (first, second))
    await until(lambda: a.status is OrderStatus.ACCEPTED and b.status is OrderStatus.ACCEPTED)
    KitTape(h, kit.iid, 10**18, size=0.001).trade(999.0)  # fills 0.001 of the first
    await until(lambda: a.filled_qty == pytest.approx(0.001) and len(got) == 1)
    await h.venue.drain(WAIT)
    return first, second


@pytest.mark.parametrize("kit", list(KITS.values()), ids=list(KITS))
async def test_a_restart_reduces_the_oco_sibling_whose_reduction_the_venue_refused(kit: VenueKit, tmp_path: Path) -> None:
    """As the first test above, but the daemon stops after the refusal, before the next trade. The restart linked
    the group again with the sibling at 0.003 and nothing reduced it: the group could buy 0.004. The journal holds
    the partly filled member: the sibling is reduced to 0.002 at the first trade after the restart."""
    path, code = AMEND_REFUSED[kit.venue]
    journal = tmp_path / "journal.sqlite"
    emu = kit.emulator([RestFault("refuse", "POST", path, code=code)], trade_size_limit=True)
    one_account = _one_account(kit, emu)
    strategy = Contingent(kit.iid)
    async with kit_harness(one_account, journal=journal, strategies=[strategy], **HELD) as h:
        first, second = await _oco_reduction_refused(h, kit, strategy)
    assert emu.orders[second].order.quantity == pytest.approx(0.003)
    async with kit_harness(one_account, journal=journal, strategies=[Contingent(kit.iid)], **HELD) as h:
        orders = _queried(h, first, second)
        await until(lambda: orders[0].status is OrderStatus.PARTIALLY_FILLED and orders[1].status is OrderStatus.ACCEPTED)
        KitTape(h, kit.iid, 10**18 + 10**9, size=0.001).trade(1_100.0)  # fills nothing
        await until(lambda: emu.orders[second].order.quantity == pytest.approx(0.002))
        await until(lambda: orders[1].quantity == pytest.approx(0.002))
        await h.venue.drain(WAIT)
        assert orders[1].status is OrderStatus.ACCEPTED and len(KitTape(h, kit.iid, 0).posts(path)) == 2



@pytest.mark.parametrize("kit", list(KITS.values()), ids=list(KITS))
async def test_a_restart_counts_on_the_refusals_of_an_oco_siblings_reduction(kit: VenueKit, tmp_path: Path) -> None:
    """Two OCO limit buys of 0.003 (1,000 and 900); a trade of 0.001 fills a third of the first, and the venue refuses
    every amend of the sibling. The daemon stops after the second refusal. Before, the restart counted from zero: it
    sent the reduction up to ``REDUCE_TRIES`` more times (the third refusal only counted as the first). Now the
    journaled count goes on: the first refusal after the restart is the third, and the sibling is canceled."""
    path, code = AMEND_REFUSED[kit.venue]
    journal = tmp_path / "journal.sqlite"
    faults = [RestFault("refuse", "POST", path, code=code) for _ in range(2 * REDUCE_TRIES)]
    emu = kit.emulator(faults, trade_size_limit=True)
    one_account = _one_account(kit, emu)
    strategy = Contingent(kit.iid)
    async with kit_harness(one_account, journal=journal, strategies=[strategy], **HELD) as h:
        first, second = strategy.submit_oco([
            OrderSpec(kit.iid, OrderSide.BUY, 0.003, price=1_000.0), OrderSpec(kit.iid, OrderSide.BUY, 0.003, price=900.0),
        ])
        a, b = (h.kernel.orders.order(c) for c in (first, second))
        await until(lambda: a.status is OrderStatus.ACCEPTED and b.status is OrderStatus.ACCEPTED)
        tape = KitTape(h, kit.iid, 10**18, size=0.001)
        tape.trade(999.0)  # fills 0.001 of the first: the sibling's reduction, refused
        await until(lambda: len(tape.posts(path)) == 1 and h.venue.in_flight == 0)
        await h.venue.drain(WAIT)
        tape.trade(1_100.0)  # fills nothing: sent again, refused a second time
        await until(lambda: len(tape.posts(path)) == 2 and h.venue.in_flight == 0)
        await h.venue.drain(WAIT)
    assert REDUCE_TRIES == 3 and emu.orders[second].order.quantity == pytest.approx(0.003)
    async with kit_harness(one_account, journal=journal, strategies=[Contingent(kit.iid)], **HELD) as h:
        orders = _queried(h, first, second)
        await until(lambda: orders[0].status is OrderStatus.PARTIALLY_FILLED and orders[1].status is OrderStatus.ACCEPTED)
        tape = KitTape(h, kit.iid, 10**18 + 10**9, size=0.001)
        for _ in range(REDUCE_TRIES):
            tape.trade(1_100.0)  # fills nothing: the third refusal, then the cancel (before: more reductions)
            await until(lambda: h.venue.in_flight == 0)
            await h.venue.drain(WAIT)
        await until(lambda: orders[1].status is OrderStatus.CANCELED)
        await h.venue.drain(WAIT)
        assert len(tape.posts(path)) == REDUCE_TRIES and emu.orders[second].status is OrderStatus.CANCELED


@pytest.mark.parametrize("kit", list(KITS.values()), ids=list(KITS))
async def test_a_restart_rebuilds_the_room_of_a_partly_filled_spot_oco(kit: VenueKit, tmp_path: Path) -> None:
    """Cash-only spot: two OCO limit buys of 0.003 (1,000 and 900); a trade of 0.001 fills a third of the first, the
    sibling's reduction to 0.002 is refused, and the daemon stops. The group may buy 0.002 more: it holds
    0.002 * 1,000 USDT (plus the fee rate), once. Before, the restart linked the group with no room: the sibling held
    0.003 * 900 = 2.7 USDT, and a buy that the 0.7 USDT over-held left no room for was denied."""
    path, code = AMEND_REFUSED[kit.venue]
    journal = tmp_path / "journal.sqlite"
    emu = kit.emulator([RestFault("refuse", "POST", path, code=code)], trade_size_limit=True)
    one_account = _one_account(kit, emu)
    strategy = Contingent(kit.iid)
    async with kit_harness(one_account, journal=journal, strategies=[strategy], **HELD) as h:
        assert h.kernel.instruments[kit.iid].cash_only
        first, second = await _oco_reduction_refused(h, kit, strategy)
        held = h.kernel.portfolio.account.locked("USDT")
    async with kit_harness(one_account, journal=journal, strategies=[Contingent(kit.iid)], **HELD) as h:
        orders = _queried(h, first, second)
        await until(lambda: orders[0].status is OrderStatus.PARTIALLY_FILLED and orders[1].status is OrderStatus.ACCEPTED)
        account, inst = h.kernel.portfolio.account, h.kernel.instruments[kit.iid]
        rate = 1.0 + max(inst.maker_fee, inst.taker_fee)
        assert account.oco_room(second) == pytest.approx(0.002)
        assert account.locked("USDT") == pytest.approx(0.002 * 1_000.0 * rate) == pytest.approx(held)
        # A buy at 500 for what the balance leaves beside 2.35 USDT held: room for it only with the group's room.
        qty = round((account.balance("USDT") - 2.35 * rate) / (500.0 * rate) - 0.0005, 3)
        buy = KitTape(h, kit.iid, 0).submit(OrderSide.BUY, qty, OrderType.LIMIT, price=500.0)
        assert buy.status is not OrderStatus.DENIED, buy.reason
        await until(lambda: buy.status is OrderStatus.ACCEPTED)
        await h.venue.drain(WAIT)

@pytest.mark.parametrize("kit", list(KITS.values()), ids=list(KITS))
async def test_a_restart_rebuilds_the_room_of_a_spot_oco_its_reductions_lowered(kit: VenueKit, tmp_path: Path) -> None:
    """Cash-only spot: an OCO of a limit buy of 0.010 at 950 and a stop-limit buy of 0.010 (1,050, limit 1,070); a
    trade at 940 fills 0.003 of the limit (the stop is reduced to 0.007), one at 1,060 fills 0.005 of the stop (the
    limit is reduced to 0.005), and the daemon stops. The group bought 0.008 of its 0.010: each member may fill
    0.002 more. Before, the restart took the group's size as its largest member's quantity now, 0.007 (its
    reductions lowered it), and rebuilt a room of none (0.007 - 0.008): the account held nothing for the group,
    and the next partial fill (0.001 of the stop) canceled the limit instead of reducing it to 0.004."""
    journal = tmp_path / "journal.sqlite"
    emu = kit.emulator(None, None, True)
    one_account = _one_account(kit, emu)
    strategy = Contingent(kit.iid)
    async with kit_harness(one_account, journal=journal, strategies=[strategy], **HELD) as h:
        tape = KitTape(h, kit.iid, 10**18)
        tape.size = 0.001
        tape.trade(1_000.0)  # a last price below the stop's trigger
        limit, stop = strategy.submit_oco([
            OrderSpec(kit.iid, OrderSide.BUY, 0.010, price=950.0),
            OrderSpec(kit.iid, OrderSide.BUY, 0.010, price=1_070.0, trigger_price=1_050.0),
        ])
        a, b = (h.kernel.orders.order(c) for c in (limit, stop))
        await until(lambda: a.status is OrderStatus.ACCEPTED and b.status is OrderStatus.ACCEPTED)
        tape.size = 0.003
        tape.trade(940.0)
        await until(lambda: a.filled_qty == pytest.approx(0.003) and b.quantity == pytest.approx(0.007))
        tape.size = 0.005
        tape.trade(1_060.0)
        await until(lambda: b.filled_qty == pytest.approx(0.005) and a.quantity == pytest.approx(0.005))
        await h.venue.drain(WAIT)
        account = h.kernel.portfolio.account
        running = (account.oco_room(limit), account.oco_room(stop))
        held = account.locked("USDT")
        assert running == (pytest.approx(0.002), pytest.approx(0.002))
    async with kit_harness(one_account, journal=journal, strategies=[Contingent(kit.iid)], **HELD) as h:
        orders = _queried(h, limit, stop)
        await until(lambda: all(o.status is OrderStatus.PARTIALLY_FILLED for o in orders))
        a, b = orders
        account, inst = h.kernel.portfolio.account, h.kernel.instruments[kit.iid]
        assert (account.oco_room(limit), account.oco_room(stop)) == running
        rate = 1.0 + max(inst.maker_fee, inst.taker_fee)
        # The group holds what its largest holder may still buy: the stop's 0.002 at 1,070.
        assert account.locked("USDT") == pytest.approx(0.002 * 1_070.0 * rate) == pytest.approx(held)
        tape = KitTape(h, kit.iid, 2 * 10**18, size=0.001)
        tape.trade(1_060.0)  # fills 0.001 of the stop: the limit is reduced to its 0.003 filled + 0.001
        await until(lambda: b.filled_qty == pytest.approx(0.006) and a.quantity == pytest.approx(0.004))
        await h.venue.drain(WAIT)
        assert a.status is OrderStatus.PARTIALLY_FILLED and emu.orders[limit].order.quantity == pytest.approx(0.004)
        assert (account.oco_room(limit), account.oco_room(stop)) == (pytest.approx(0.001), pytest.approx(0.001))


async def test_a_cancel_replace_of_an_oco_sibling_whose_reduction_was_refused_is_reduced_at_the_next_trade() -> None:
    """Binance spot: two OCO limit buys of 0.003 (50,000 and 49,000); a trade of 0.001 fills a third of the first, the
    sibling's reduction to 0.002 (a cancel-replace) is refused, and the sibling is then moved to 49,500 by a
    cancel-replace. Before, its replacement kept 0.003 and nothing reduced it (the reduction stayed with the replaced
    order): the group could buy 0.004. The next trade reduces the replacement to 0.002."""
    from tradebus.execution.contingent import ContingentOrders

    refused = [RestFault("refuse", "POST", "/api/v3/order/cancelReplace", code="-2022")]
    async with harness(rest_faults=refused, trade_size_limit=True, **SPOT_HELD) as h:
        h.venue.on_replace = h.kernel.execution.submit
        contingent = ContingentOrders(h.kernel)
        got: list[OrderModifyRejected] = []
        replaced: list[OrderReplaced] = []
        h.kernel.bus.subscribe(OrderModifyRejected, got.append)
        h.kernel.bus.subscribe(OrderReplaced, replaced.append)
        a, b = h.submit(OrderSide.BUY, 0.003, 50_000.0), h.submit(OrderSide.BUY, 0.003, 49_000.0)
        await until(lambda: a.status is OrderStatus.ACCEPTED and b.status is OrderStatus.ACCEPTED)
        contingent.oco([a.client_order_id, b.client_order_id])
        h.trade(49_900.0, 0.001)  # fills 0.001 of the first
        await until(lambda: a.filled_qty == pytest.approx(0.001) and len(got) == 1)
        await h.venue.drain(WAIT)
        h.kernel.execution.modify(ModifyOrder("s1", IID, b.client_order_id, 0, 0, price=49_500.0))
        await until(lambda: len(replaced) == 1)
        new = h.kernel.orders.order(replaced[0].replacement_id)
        await until(lambda: new.status is OrderStatus.ACCEPTED and b.status is OrderStatus.CANCELED)
        await h.venue.drain(WAIT)
        assert (new.quantity, new.price) == (pytest.approx(0.003), 49_500.0)
        h.trade(51_000.0, 0.001)  # fills nothing: the reduction is sent for the replacement
        sibling = lambda: [r.order for r in h.emulator.open_orders() if r.order.client_order_id != a.client_order_id]  # noqa: E731
        await until(lambda: [o.quantity for o in sibling()] == [pytest.approx(0.002)])
        await h.venue.drain(WAIT)
        [working] = [o for o in h.kernel.orders.open_orders() if o is not a]
        assert (working.quantity, working.price) == (pytest.approx(0.002), 49_500.0)
        assert working.client_order_id == sibling()[0].client_order_id and a.quantity == pytest.approx(0.003)


async def test_a_cancel_replace_of_a_spot_oco_member_keeps_the_room_the_groups_fill_left_it() -> None:
    """Binance spot (cash only): two OCO limit buys of 0.003 (50,000 and 49,000); a trade of 0.001 fills a third of
    the first, the sibling's reduction to 0.002 (a cancel-replace) is refused, and the sibling is moved to 49,500 by
    a cancel-replace: its replacement, for 0.003, may fill 0.002 more. The group holds what its largest member may
    still buy: 0.002 * 50,000 USDT (plus the fee rate), the first's. Before, the replacement was linked with no
    room: it held 0.003 * 49,500 = 148.5 USDT, and a buy the 48.5 USDT over-held left no room for was denied by
    the risk gate for buying power."""
    from tradebus.execution.contingent import ContingentOrders

    refused = [RestFault("refuse", "POST", "/api/v3/order/cancelReplace", code="-2022")]
    async with harness(rest_faults=refused, trade_size_limit=True, **SPOT_HELD) as h:
        h.venue.on_replace = h.kernel.execution.submit
        contingent = ContingentOrders(h.kernel)
        got: list[OrderModifyRejected] = []
        replaced: list[OrderReplaced] = []
        h.kernel.bus.subscribe(OrderModifyRejected, got.append)
        h.kernel.bus.subscribe(OrderReplaced, replaced.append)
        account, inst = h.kernel.portfolio.account, h.kernel.instruments[IID]
        assert inst.cash_only
        a, b = h.submit(OrderSide.BUY, 0.003, 50_000.0), h.submit(OrderSide.BUY, 0.003, 49_000.0)
        await until(lambda: a.status is OrderStatus.ACCEPTED and b.status is OrderStatus.ACCEPTED)
        contingent.oco([a.client_order_id, b.client_order_id])
        h.trade(49_900.0, 0.001)  # fills 0.001 of the first; the sibling's reduction is refused
        await until(lambda: a.filled_qty == pytest.approx(0.001) and len(got) == 1)
        await h.venue.drain(WAIT)
        assert account.oco_room(b.client_order_id) == pytest.approx(0.002)
        h.kernel.execution.modify(ModifyOrder("s1", IID, b.client_order_id, 0, 0, price=49_500.0))
        await until(lambda: len(replaced) == 1)
        new = h.kernel.orders.order(replaced[0].replacement_id)
        await until(lambda: new.status is OrderStatus.ACCEPTED and b.status is OrderStatus.CANCELED)
        await h.venue.drain(WAIT)
        assert (new.quantity, new.price) == (pytest.approx(0.003), 49_500.0)
        assert account.oco_groups()[new.client_order_id] == (a.client_order_id, new.client_order_id)
        assert account.oco_room(new.client_order_id) == pytest.approx(0.002)
        rate = 1.0 + max(inst.maker_fee, inst.taker_fee)
        assert account.locked("USDT") == pytest.approx(0.002 * 50_000.0 * rate)
        # A buy at 20,000 for what the balance leaves beside 110 USDT held: room for it only with the group's room
        # (the risk gate's check; the venue, which holds each order of the group in full, refuses it).
        qty = round((account.balance("USDT") - 110.0 * rate) / (20_000.0 * rate) - 0.0005, 3)
        buy = h.submit(OrderSide.BUY, qty, 20_000.0)
        assert buy.status is OrderStatus.SUBMITTED, buy.reason
        await until(lambda: buy.status is OrderStatus.REJECTED)
        await h.venue.drain(WAIT)


async def test_a_restart_after_a_cancel_replace_of_a_partly_filled_spot_oco_member_keeps_its_fills(tmp_path: Path) -> None:
    """Binance spot (cash only): two OCO limit buys of 0.003 (50,000 and 49,000); a trade of 0.001 fills a third of
    the first, the sibling's reduction to 0.002 is refused, and the first is moved to 49,800 by a cancel-replace (its
    replacement buys the 0.002 left). The daemon stops and restarts on its journal. The group bought 0.001 of its
    0.003: each member may buy 0.002 more, as the running account held (0.002 * 49,800 USDT plus the fee rate).
    Before, the restart counted the fills of the group's members as its journal's last link names them, the
    replacement and the sibling: the first's 0.001 was lost, so the account held the sibling's 0.003 * 49,000
    = 147 USDT and the sibling's reduction was never sent again (the group could buy 0.004); it is now sent at the
    first trade after the restart."""
    from pydantic import SecretStr

    from tests.live.live_harness import INST, KEY, SECRET, _harness
    from tradebus.adapters.binance.private_emulator import BinancePrivateEmulator
    from tradebus.adapters.binance.trading import BinanceTrading
    from tradebus.engine.clock import LiveClock
    from tradebus.execution.journal import Journal

    refused = [RestFault("refuse", "POST", "/api/v3/order/cancelReplace", code="-2022")]
    emu = BinancePrivateEmulator(KEY, SECRET, {IID: INST}, {"USDT": 100_000.0}, refused, None, trade_size_limit=True)
    journals: list[Journal] = []

    async def session(strategy: Contingent) -> Any:
        await emu.start()
        api = BinanceTrading(emu.rest_url, SecretStr(KEY), SecretStr(SECRET), {IID: INST}, timeout=WAIT)
        journals.append(Journal(tmp_path / "journal.sqlite"))
        return _harness(emu, api, INST, LiveClock(), ANSWERED, journals[-1], [strategy], first_trade=None)

    strategy = Contingent(IID)
    async with await session(strategy) as h:
        h.venue.on_replace = h.kernel.execution.submit
        got: list[OrderModifyRejected] = []
        replaced: list[OrderReplaced] = []
        h.kernel.bus.subscribe(OrderModifyRejected, got.append)
        h.kernel.bus.subscribe(OrderReplaced, replaced.append)
        h.trade(60_000.0)
        first, second = strategy.submit_oco([
            OrderSpec(IID, OrderSide.BUY, 0.003, price=50_000.0), OrderSpec(IID, OrderSide.BUY, 0.003, price=49_000.0),
        ])
        a, b = (h.kernel.orders.order(c) for c in (first, second))
        await until(lambda: a.status is OrderStatus.ACCEPTED and b.status is OrderStatus.ACCEPTED)
        h.trade(49_900.0, 0.001)  # fills 0.001 of the first; the sibling's reduction is refused
        await until(lambda: a.filled_qty == pytest.approx(0.001) and len(got) == 1)
        await h.venue.drain(WAIT)
        strategy.modify(first, price=49_800.0)
        await until(lambda: len(replaced) == 1)
        moved = replaced[0].replacement_id
        new = h.kernel.orders.order(moved)
        await until(lambda: new.status is OrderStatus.ACCEPTED and a.status is OrderStatus.CANCELED)
        await h.venue.drain(WAIT)
        account = h.kernel.portfolio.account
        running = (account.oco_room(moved), account.oco_room(second))
        held = account.locked("USDT")
        assert running == (pytest.approx(0.002), pytest.approx(0.002)) and new.quantity == pytest.approx(0.002)
    journals[0].close()
    assert emu.orders[second].order.quantity == pytest.approx(0.003)
    async with await session(Contingent(IID)) as h:
        h.venue.on_replace = h.kernel.execution.submit
        reduced: list[OrderReplaced] = []
        h.kernel.bus.subscribe(OrderReplaced, reduced.append)
        orders = _queried(h, moved, second)
        await until(lambda: all(o.status is OrderStatus.ACCEPTED for o in orders))
        account, inst = h.kernel.portfolio.account, h.kernel.instruments[IID]
        assert (account.oco_room(moved), account.oco_room(second)) == running
        rate = 1.0 + max(inst.maker_fee, inst.taker_fee)
        assert account.locked("USDT") == pytest.approx(0.002 * 49_800.0 * rate) == pytest.approx(held)
        h.trade(60_000.0)  # fills nothing: the sibling's reduction is sent again (a cancel-replace)
        await until(lambda: len(reduced) == 1)
        await h.venue.drain(WAIT)
        assert reduced[0].client_order_id == second
        assert emu.orders[reduced[0].replacement_id].order.quantity == pytest.approx(0.002)
    journals[1].close()


async def test_an_oco_sibling_placed_again_after_its_reductions_replacement_was_refused_is_reduced_at_the_next_trade() -> None:
    """Binance spot: two OCO post-only buys of 0.003 (50,000 and 49,000); a trade of 0.001 fills a third of the first,
    and the sibling's reduction to 0.002 goes as one cancel-replace. The ask has fallen to 48,900 when it arrives:
    Binance cancels the sibling and refuses the new order, which would take (-2021), and the sibling is placed again
    as it was, for 0.003, once the ask is back at 50,100. Before, that was the end of the reduction: the group could
    buy 0.004. Now it counts as a refusal and the next trade reduces the sibling to 0.002."""
    import asyncio

    from tradebus.engine.messages import Quote
    from tradebus.adapters.binance.private_emulator import RestFault as BinanceFault
    from tradebus.execution.contingent import ContingentOrders

    swap, again = asyncio.Event(), asyncio.Event()
    held = [BinanceFault("hold", "POST", "/api/v3/order/cancelReplace", release=swap),
            BinanceFault("hold", "POST", "/api/v3/order", at=2, release=again)]
    async with harness(rest_faults=held, trade_size_limit=True, **SPOT_HELD) as h:
        h.venue.on_replace = h.kernel.execution.submit
        contingent = ContingentOrders(h.kernel)
        replaced: list[OrderReplaced] = []
        h.kernel.bus.subscribe(OrderReplaced, replaced.append)
        a, b = (h.kernel.execution.submit(SubmitOrder("s1", IID, "", OrderSide.BUY, 0.003, 0, 0, OrderType.LIMIT, px, post_only=True))
                for px in (50_000.0, 49_000.0))
        await until(lambda: a.status is OrderStatus.ACCEPTED and b.status is OrderStatus.ACCEPTED)
        contingent.oco([a.client_order_id, b.client_order_id])
        h.trade(49_900.0, 0.001)  # fills 0.001 of the first; the sibling's cancel-replace waits at the venue
        await until(lambda: a.filled_qty == pytest.approx(0.001) and held[0].fired)
        h.emulator.on_quote(Quote(IID, 0, 0, 48_800.0, 1.0, 48_900.0, 1.0))
        swap.set()
        await until(lambda: held[1].fired)  # placed again as it was
        h.emulator.on_quote(Quote(IID, 0, 0, 50_000.0, 1.0, 50_100.0, 1.0))
        again.set()
        await until(lambda: len(replaced) == 1)
        placed = h.kernel.orders.order(replaced[0].replacement_id)
        await until(lambda: placed.status is OrderStatus.ACCEPTED and b.status is OrderStatus.CANCELED)
        await h.venue.drain(WAIT)
        assert (placed.quantity, placed.price) == (pytest.approx(0.003), 49_000.0)
        h.trade(51_000.0, 0.001)  # fills nothing: the reduction is sent again
        sibling = lambda: [r.order for r in h.emulator.open_orders() if r.order.client_order_id != a.client_order_id]  # noqa: E731
        await until(lambda: [o.quantity for o in sibling()] == [pytest.approx(0.002)])
        await h.venue.drain(WAIT)
        [working] = [o for o in h.kernel.orders.open_orders() if o is not a]
        assert (working.client_order_id, working.quantity) == (sibling()[0].client_order_id, pytest.approx(0.002))
