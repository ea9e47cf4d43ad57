"""A query the venue leaves unanswered: what each maker of it logs comes next.

Three makers query an order (:class:`~tradebus.execution.live.LiveVenue`): the engine (its reconciliation, asking
again every ``retry_ns``), the live venue once of its own (after a refused cancel or amend, a stream's news), and
an unanswered amend's task once its window is over (asking again with backoff, up to 60 s, until one is answered).
Each logged "the engine asks again later" when the venue did not answer; the warning now says what follows, and
each test sees it happen. On the OKX and Bybit account emulators (which amend in place), on 127.0.0.1; a query met
with a 503 from the gateway is one without an answer.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import msgspec
import pytest
from loguru import logger

from tests.live.live_harness import WAIT, until
from tests.live.test_live_amend import HELD
from tests.live.test_live_amend_in_flight import LIMIT_AMEND
from tests.live.venue_kits import KIT_ANSWERED, KITS, VenueKit, kit_harness
from tradebus.adapters.common.account_emulator import RestFault
from tradebus.engine.messages import CancelOrder, ModifyOrder, OrderModifyRejected, OrderSide, OrderStatus, OrderType, SubmitOrder

#: Where each venue answers the query of an order, and cancels one; a code it refuses a cancel with (OKX: 51400, the
#: order filled, canceled or unknown; Bybit: 110001, the order does not exist).
QUERY = {"okx": "/api/v5/trade/order", "bybit": "/v5/order/realtime"}
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
