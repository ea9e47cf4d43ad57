"""A query the venue leaves unanswered: what each maker of it logs comes next, and a stop during an amend's backoff.

Three makers query an order (:class:`~tradebus.execution.live.LiveVenue`): the engine (its reconciliation, asking
again every ``retry_ns``), the live venue once of its own (after a refused cancel or amend, a stream's news), and
an unanswered amend's task once its window is over (asking again with backoff, up to 60 s, until one is answered).
Each logged "the engine asks again later" when the venue did not answer; the warning now says what follows, and
each test sees it happen. A daemon stopped while an amend's query backs off does not wait for that sleep: its
stop's waits for the requests in flight (``live.request_timeout`` each) waited it out and named it a request still
unanswered. On the OKX and Bybit account emulators (which amend in place) and their recorded public streams, all on
127.0.0.1; a query or an amend met with a 503 from the gateway is one without an answer.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgspec
import pytest
from loguru import logger

from tests.live.live_harness import KEY, SECRET, WAIT, until
from tests.live.test_live_amend import HELD
from tests.live.test_live_amend_in_flight import LIMIT_AMEND, REFUSED
from tests.live.test_live_stop_unanswered import journaled
from tests.live.test_live_unheard_amend import CASES as RESTING
from tests.live.venue_kits import BYBIT, KIT_ANSWERED, KITS, OKX, PASSPHRASE, VenueKit, kit_harness
from tradebus.adapters.common.account_emulator import RestFault, StreamFault
from tradebus.adapters.common.local_server import LocalVenueServer
from tradebus.engine.messages import (
    CancelOrder, ModifyOrder, OrderModifyRejected, OrderSide, OrderStatus, OrderType, SubmitOrder, Trade,
)
from tradebus.node.live import ApiKeys, LiveNode, parse_live_config

#: Where each venue answers the query of an order; how its private stream tells an order canceled; a code it refuses
#: a cancel with (OKX: 51400, the order filled, canceled or unknown; Bybit: 110001, the order does not exist).
QUERY = {"okx": "/api/v5/trade/order", "bybit": "/v5/order/realtime"}
CANCELED = {"okx": '"canceled"', "bybit": '"Cancelled"'}
CANCEL = {"okx": "/api/v5/trade/cancel-order", "bybit": "/v5/order/cancel"}
CANCEL_REFUSED = {"okx": "51400", "bybit": "110001"}


@contextmanager
def logged() -> Iterator[list[str]]:
    """The log lines (``LEVEL message``) while in the block."""
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(m.rstrip("\n")), level="INFO", format="{level} {message}")
    try:
        yield lines
    finally:
        logger.remove(sink)


def no_answer(lines: list[str], coid: str) -> list[str]:
    """What each warning of a query of ``coid`` left unanswered says comes next."""
    head = f"WARNING query of {coid}: no answer ("
    return [line.split("); ", 1)[1] for line in lines if line.startswith(head)]


def short_window(api: Any) -> None:
    """Make the window of an amend with no answer 1.5 s (with the 1 s of clock skew each venue's adds)."""
    if hasattr(api, "recv_window_ms"):
        api.recv_window_ms = 500  # Bybit's X-BAPI-RECV-WINDOW
    else:
        api.amend_deadline_s = 0.5  # OKX's expTime


@pytest.mark.parametrize("kit", [OKX, BYBIT], ids=["okx", "bybit"])
async def test_a_stop_while_an_unanswered_amends_query_backs_off_neither_waits_for_it_nor_names_it_unanswered(
    kit: VenueKit, tmp_path: Path
) -> None:
    """A resting buy is amended; the amend and the query after its window meet a 503, the next query due 600 s later
    (``live.retry_interval``). The daemon is stopped then (``live.cancel_on_stop``): its cancel is done at the venue,
    but the stream's report of it lost, so at ``live.stop_timeout`` the stop waits for the requests in flight and
    queries the order. Before, each of those waits (``live.request_timeout``, 1 s here) lasted until its timeout, the
    sleeping amend's task being one of the tasks it waited for, and logged it as a request still unanswered
    (``stopping: 1 request(s) to the venue still unanswered after 1 s: amend:...``, twice); now neither waits for it,
    the stop's query tells the order canceled, and the journal holds that."""
    qty, price = RESTING[kit.venue][1]
    amended = price - 10.0
    async with kit.make_emulator(KEY, SECRET, kit.instruments(), {"USDT": 100_000.0}, passphrase=PASSPHRASE) as emulator:
        emulator.stream_faults.append(StreamFault("drop", CANCELED[kit.venue]))
        async with LocalVenueServer(kit.make_protocol(kit.frames, emulator), kit.frames) as srv:
            raw = kit.config(tmp_path, srv.ws_url, emulator, stop_timeout=1.0, retry_interval=600.0, check_interval=None,
                             reconcile_interval=None)
            raw["strategy"] = {"name": "tests.live.resting_strategy:RestingBuy", "instruments": [kit.iid],
                               "params": {"quantity": qty, "price": price}}
            config = parse_live_config(raw, "<test>")
            node = LiveNode(config, ApiKeys.from_env(config.live, kit.env), handle_signals=False)
            with logged() as lines:
                task = asyncio.create_task(node.run())
                try:
                    await until(lambda: task.done() or (node.running.is_set() and bool(node.kernel.orders.orders())
                                                        and node.kernel.orders.orders()[0].status is OrderStatus.ACCEPTED))
                    assert not task.done(), "the daemon stopped early"
                    order = node.kernel.orders.orders()[0]
                    coid = order.client_order_id
                    short_window(node.venue.api)
                    emulator.rest_faults += [RestFault("error5xx", "POST", LIMIT_AMEND[kit.venue]),
                                             RestFault("error5xx", "GET", QUERY[kit.venue])]
                    now = node.clock.now_ns()
                    node.kernel.execution.modify(ModifyOrder(order.strategy_id, kit.iid, coid, now, now, price=amended))
                    await until(lambda: task.done() or bool(no_answer(lines, coid)))
                    assert not task.done(), "the daemon stopped early"
                    # The amend's task sleeps; the venue keeps the order meanwhile (the task answers the amend later).
                    assert not node.venue.forget(coid)
                finally:
                    node.stop("test done")
                    await asyncio.wait_for(task, 60)
    assert no_answer(lines, coid) == ["its unanswered amend's answer waits for it: queried again in 600 s"]
    assert not [line for line in lines if "still unanswered after" in line], [line for line in lines if "unanswered" in line]
    assert order.status is OrderStatus.CANCELED and order.price == price
    assert emulator.orders[coid].status is OrderStatus.CANCELED and emulator.orders[coid].order.price == price
    assert journaled(node, coid)[-1] == "OrderResolved:CANCELED"
    assert not node.left_at_venue and node.summary.orders_left == []


@pytest.mark.parametrize("kit", list(KITS.values()), ids=list(KITS))
async def test_a_query_the_engine_made_left_unanswered_is_made_again_after_its_retry_interval(kit: VenueKit) -> None:
    """The engine's query of a working order meets a 503: the warning says the engine asks again within its
    ``retry_ns`` (0.2 s), and it does: the next query is answered."""
    async with kit_harness(kit, **HELD) as h:
        with logged() as lines:
            order = h.kernel.execution.submit(SubmitOrder("s1", kit.iid, "", OrderSide.BUY, 0.002, 0, 0, OrderType.LIMIT, 1_000.0))
            await until(lambda: order.status is OrderStatus.ACCEPTED)
            coid = order.client_order_id
            h.emulator.rest_faults.append(RestFault("error5xx", "GET", QUERY[kit.venue]))
            h.kernel.execution.reconcile_order(coid)
            await until(lambda: h.venue.requests["query"] == 2 and h.venue.in_flight == 0)
        assert no_answer(lines, coid) == ["the engine asks again within 0.2 s (its retry interval)"]
        assert h.emulator.rest_faults[-1].fired and order.status is OrderStatus.ACCEPTED


@pytest.mark.parametrize("kit", list(KITS.values()), ids=list(KITS))
async def test_a_query_the_venue_made_of_its_own_left_unanswered_is_made_again_by_the_cancel_timeout(kit: VenueKit) -> None:
    """The venue refuses a cancel; the live venue's own query that follows meets a 503: the warning says it was asked
    once and the engine's queries ask again, among them the cancel's timeout (5 s), which does: the order, still
    working at the venue, is told so (its cancel refused)."""
    async with kit_harness(kit, timeouts=msgspec.structs.replace(KIT_ANSWERED, cancel_ns=5_000_000_000), request_timeout=WAIT) as h:
        with logged() as lines:
            order = h.kernel.execution.submit(SubmitOrder("s1", kit.iid, "", OrderSide.BUY, 0.002, 0, 0, OrderType.LIMIT, 1_000.0))
            await until(lambda: order.status is OrderStatus.ACCEPTED)
            coid = order.client_order_id
            h.emulator.rest_faults += [RestFault("refuse", "POST", CANCEL[kit.venue], code=CANCEL_REFUSED[kit.venue]),
                                       RestFault("error5xx", "GET", QUERY[kit.venue])]
            h.kernel.execution.cancel(CancelOrder("s1", kit.iid, coid, 0, 0))
            await until(lambda: h.venue.requests["query"] >= 2 and h.venue.in_flight == 0 and order.status is OrderStatus.ACCEPTED)
        assert no_answer(lines, coid) == [
            "asked once: the engine's own queries of it ask again (a cancel's timeout, the check of orders silent for its "
            "check interval, a stream's reconnect)"
        ]
        assert f"WARNING order {coid}: cancel not confirmed within 5 s; state UNKNOWN, querying the venue" in lines
        assert h.emulator.orders[coid].status is OrderStatus.ACCEPTED


@pytest.mark.parametrize("kit", list(KITS.values()), ids=list(KITS))
async def test_an_unanswered_amends_query_left_unanswered_is_made_again_by_the_amends_task(kit: VenueKit) -> None:
    """An amend meets a 503, and so does the query after its window (1.5 s here): the warning says the amend's answer
    waits for the next query, 0.2 s later (the engine's ``retry_ns``), and it is made: its answer tells the amend, which
    never reached the venue, not applied (``OrderModifyRejected``)."""
    async with kit_harness(kit, **HELD) as h:
        refused: list[OrderModifyRejected] = []
        h.kernel.bus.subscribe(OrderModifyRejected, refused.append)
        with logged() as lines:
            order = h.kernel.execution.submit(SubmitOrder("s1", kit.iid, "", OrderSide.BUY, 0.002, 0, 0, OrderType.LIMIT, 1_000.0))
            await until(lambda: order.status is OrderStatus.ACCEPTED)
            coid = order.client_order_id
            short_window(h.venue.api)
            h.emulator.rest_faults += [RestFault("error5xx", "POST", LIMIT_AMEND[kit.venue]),
                                       RestFault("error5xx", "GET", QUERY[kit.venue])]
            h.kernel.execution.modify(ModifyOrder("s1", kit.iid, coid, 0, 0, price=990.0))
            await until(lambda: bool(refused) and h.venue.in_flight == 0)
        assert no_answer(lines, coid) == ["its unanswered amend's answer waits for it: queried again in 0.2 s"]
        assert h.venue.requests["query"] == 2 and refused[0].reason.startswith("no answer, and not applied within")
        assert order.price == h.emulator.orders[coid].order.price == 1_000.0


@pytest.mark.parametrize("kit", list(KITS.values()), ids=list(KITS))
async def test_an_unanswered_amend_of_an_order_closed_while_its_query_was_out_is_refused_at_once(kit: VenueKit) -> None:
    """An amend meets a 503; the query after its window is held by the venue while the order is canceled (the stream
    tells it), then meets a 503. The warning said the amend's answer waits for a query again 600 s later
    (``retry_ns``), which was never made: the task slept those 600 s, then refused the amend for the order's close.
    Now the warning says the amend is refused for the close, and it is at once, with no query more."""
    async with kit_harness(kit, timeouts=msgspec.structs.replace(KIT_ANSWERED, retry_ns=600_000_000_000),
                           request_timeout=WAIT) as h:
        refused: list[OrderModifyRejected] = []
        h.kernel.bus.subscribe(OrderModifyRejected, refused.append)
        release = asyncio.Event()
        with logged() as lines:
            order = h.kernel.execution.submit(SubmitOrder("s1", kit.iid, "", OrderSide.BUY, 0.002, 0, 0, OrderType.LIMIT, 1_000.0))
            await until(lambda: order.status is OrderStatus.ACCEPTED)
            coid = order.client_order_id
            short_window(h.venue.api)
            query_held = RestFault("error5xx", "GET", QUERY[kit.venue], release=release)
            h.emulator.rest_faults += [RestFault("error5xx", "POST", LIMIT_AMEND[kit.venue]), query_held]
            h.kernel.execution.modify(ModifyOrder("s1", kit.iid, coid, 0, 0, price=990.0))
            try:
                await until(lambda: query_held.fired)
                h.kernel.execution.cancel(CancelOrder("s1", kit.iid, coid, 0, 0))
                await until(lambda: order.status is OrderStatus.CANCELED)
            finally:
                release.set()
            await until(lambda: bool(refused) and h.venue.in_flight == 0)
        assert no_answer(lines, coid) == [
            "the order is CANCELED: its unanswered amend is refused (closed before the venue answered)"
        ]
        assert [r.reason for r in refused] == ["order is CANCELED (closed before the venue answered)"]
        assert h.venue.requests["query"] == 1 and h.emulator.orders[coid].order.price == 1_000.0


@pytest.mark.parametrize("kit", list(KITS.values()), ids=list(KITS))
async def test_the_query_after_an_amend_refused_for_fills_left_unanswered_is_made_again_and_the_rest_canceled(
    kit: VenueKit,
) -> None:
    """A buy of 0.003 at 1,000 is amended down to 0.001 in all while a trade fills 0.002 of it; the venue refuses the
    amend (a total at or below what is filled), and its query that follows, the one that tells whether fills reached
    the 0.001, meets a 503. It was asked once: the rest (0.001) worked on until the engine's check of silent orders
    (30 s by default, none here: for good), fillable beyond what the strategy asked. The query is now made again after
    the engine's ``retry_ns`` (0.2 s), with the amend's backoff, its answer tells 0.002 filled, and the rest is
    canceled: 0.002 bought in all."""
    path = LIMIT_AMEND[kit.venue]
    release = asyncio.Event()
    held = [RestFault("hold", "POST", path, release=release)]
    async with kit_harness(kit, rest_faults=held, trade_size_limit=True, **HELD) as h:
        with logged() as lines:
            execution = h.kernel.execution
            order = execution.submit(SubmitOrder("s1", kit.iid, "", OrderSide.BUY, 0.003, 0, 0, OrderType.LIMIT, 1_000.0))
            await until(lambda: order.status is OrderStatus.ACCEPTED)
            coid = order.client_order_id
            execution.modify(ModifyOrder("s1", kit.iid, coid, 0, 0, quantity=0.001))
            await until(lambda: held[0].fired)
            h.emulator.on_trade(Trade(kit.iid, 10**18, 10**18, 999.0, 0.002, -1, "t1"))  # before the amend is done
            await until(lambda: order.filled_qty == pytest.approx(0.002))
            queried = h.venue.requests["query"]
            h.emulator.rest_faults.append(RestFault("error5xx", "GET", QUERY[kit.venue]))
            release.set()
            await until(lambda: not order.is_open and not h.emulator.open_orders())
            await h.venue.drain(WAIT)
        assert no_answer(lines, coid) == [
            "whether fills reached its refused amend's total waits for it (its rest is canceled if so): queried again in 0.2 s"
        ]
    assert h.emulator.rest_faults[-1].fired and h.venue.requests["query"] - queried == 2
    assert order.status is OrderStatus.CANCELED and h.emulator.orders[coid].status is OrderStatus.CANCELED
    assert h.emulator.orders[coid].filled == pytest.approx(0.002) and h.kernel.portfolio.position(kit.iid) == pytest.approx(0.002)


@pytest.mark.parametrize("kit", list(KITS.values()), ids=list(KITS))
async def test_an_amend_at_the_venue_while_a_refused_lower_totals_query_backs_off_is_taken(kit: VenueKit) -> None:
    """A buy of 0.003 at 1,000 is amended down to 0.002; the venue refuses it, and the query that tells whether fills
    reached 0.002 is held, then meets a 503. Meanwhile a user amends the order at the venue to 990 (its web page). The
    refused amend still counted as on its way while its query backed off: the stream's report of the new price was
    dropped (an amend of ours being on its way) and the answered query's terms blanked, so the order stayed at 1,000
    here while the venue held 990. Now a refused amend is no longer on its way, and the order is at 990."""
    async with kit_harness(kit, **HELD) as h:
        execution = h.kernel.execution
        order = execution.submit(SubmitOrder("s1", kit.iid, "", OrderSide.BUY, 0.003, 0, 0, OrderType.LIMIT, 1_000.0))
        await until(lambda: order.status is OrderStatus.ACCEPTED)
        coid = order.client_order_id
        release = asyncio.Event()
        query_held = RestFault("error5xx", "GET", QUERY[kit.venue], release=release)
        h.emulator.rest_faults += [RestFault("refuse", "POST", LIMIT_AMEND[kit.venue], code=REFUSED[kit.venue]),
                                   query_held]
        refused: list[OrderModifyRejected] = []
        h.kernel.bus.subscribe(OrderModifyRejected, refused.append)
        execution.modify(ModifyOrder("s1", kit.iid, coid, 0, 0, quantity=0.002))
        try:
            await until(lambda: query_held.fired and bool(refused))
            await h.venue.api.amend(order, 0.003, 990.0, math.nan)  # a user's amend at the venue
            assert h.emulator.orders[coid].order.price == 990.0
        finally:
            release.set()
        await until(lambda: order.price == 990.0 or (coid not in h.venue._amend_tasks and h.venue.in_flight == 0
                                                     and h.venue.requests["query"] >= 2))
        assert order.price == 990.0 and order.quantity == 0.003 and order.is_open
