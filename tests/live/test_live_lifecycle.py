"""Order lifecycle through the live Binance venue against the local account emulator.

Each test runs the kernel, :class:`LiveVenue` (ccxt REST) and the user-data stream against a
real aiohttp server on 127.0.0.1 that verifies every signature and matches orders on the
trades the test feeds it; faults are injected by the emulator.
"""

from __future__ import annotations

import asyncio
import math
import json
import time
from typing import Any

import msgspec
import pytest
from loguru import logger

from tests.live.live_harness import (
    ANSWERED, FAST, IID, WAIT, Harness, harness, held_window, later_than, settled, stepping_budget, until, usdm_harness,
)
from tradebus.adapters.binance.private_emulator import RestFault, StreamFault
from tradebus.adapters.binance.trading import FUTURES_WEIGHT_LIMIT, WEIGHT_HEADER, WEIGHT_LIMIT
from tradebus.adapters.common.ratelimit import WeightBudget
from tradebus.engine.messages import (
    AnomalyKind, CancelOrder, ModifyOrder, OrderAnomaly, OrderCanceled, OrderCancelRejected, OrderFilled, OrderReplaced, OrderSide,
    OrderStatus, OrderType, SubmitOrder,
)
from tradebus.execution.live import RateLimited


def _queries(h: Harness, client_order_id: str) -> int:
    """How many times the venue was asked about this order (``GET /api/v3/order``)."""
    return sum(1 for m, p, c in h.emulator.requests if (m, p, c) == ("GET", "/api/v3/order", client_order_id))


def _position_matches_account(h: object) -> None:
    emu = h.emulator  # type: ignore[attr-defined]
    kernel = h.kernel  # type: ignore[attr-defined]
    assert kernel.portfolio.position(IID) == pytest.approx(emu.balances.get("BTC", 0.0), abs=1e-12)
    booked = sorted(f.trade_id for f in kernel.result.fills)
    assert booked == sorted(str(t["id"]) for t in emu.trades)


async def test_place_fill_and_cancel() -> None:
    async with harness() as h:
        buy = h.submit(OrderSide.BUY, 0.01, 59_000.0)
        await until(lambda: buy.status is OrderStatus.ACCEPTED)
        h.trade(59_500.0)
        await settled(h)  # what the venue sent about that trade has been handled
        assert buy.status is OrderStatus.ACCEPTED
        h.trade(58_990.0)
        await until(lambda: buy.status is OrderStatus.FILLED)
        assert buy.avg_px == 59_000.0  # a resting limit fills at its price
        rest = h.submit(OrderSide.SELL, 0.01, 70_000.0)
        await until(lambda: rest.status is OrderStatus.ACCEPTED)
        h.kernel.execution.cancel(CancelOrder("s1", IID, rest.client_order_id, 0, 0))
        await until(lambda: rest.status is OrderStatus.CANCELED)
        _position_matches_account(h)
        assert h.posts(buy.client_order_id) == h.posts(rest.client_order_id) == 1


async def test_lost_ack_with_lost_events_is_resolved_by_query_not_resent() -> None:
    faults = [RestFault("lose")]
    records: list[Any] = []
    sink = logger.add(records.append, level="DEBUG")
    try:
        async with harness(faults, [StreamFault("drop", '"x": "NEW"')]) as h:
            order = h.submit(OrderSide.BUY, 0.01, 50_000.0)
            await until(lambda: h.venue.requests["query"] >= 1)  # the submit timed out: UNKNOWN, queried
            await until(lambda: order.status is OrderStatus.ACCEPTED)
            assert h.posts(order.client_order_id) == 1
            assert faults[0].fired
    finally:
        logger.remove(sink)
    # a query whose answer is on its way is no failure: one line, no traceback
    pending = [m.record for m in records if "query not answered now" in m.record["message"]]
    assert pending and all(r["level"].name == "INFO" and r["exception"] is None for r in pending)
    assert not [m for m in records if m.record["exception"] is not None]
    # how the UNKNOWN order ended is logged, not only that it was queried, and in words that say what UNKNOWN is
    # and what the daemon did (before: "order ...: UNKNOWN here, ACCEPTED at the venue (filled 0.0 of 0.01), as its
    # answer says")
    settled = [m.record for m in records if m.record["message"].startswith(f"order {order.client_order_id}: UNKNOWN here")]
    assert [r["level"].name for r in settled] == ["INFO"], [m.record["message"] for m in records]
    assert settled[0]["message"] == (
        f"order {order.client_order_id}: UNKNOWN here (its state at the venue not known: a submit or cancel timed out "
        "or failed, or it was open when the daemon last stopped; queried by its client order id, never re-sent); the "
        "venue answers ACCEPTED (filled 0.0 of 0.01): ACCEPTED here from now on"
    )


async def test_submit_answered_5xx_becomes_rejected_only_after_the_grace_and_is_never_resent() -> None:
    """The user saw "state UNKNOWN, querying the venue", then "query not answered now", and no line saying the
    order had ended REJECTED (the venue never got it); the rejection is logged at WARNING with its reason."""
    records: list[Any] = []
    sink = logger.add(records.append, level="INFO")
    try:
        async with harness([RestFault("error5xx")]) as h:
            order = h.submit(OrderSide.BUY, 0.01, 50_000.0)
            await until(lambda: order.status is OrderStatus.UNKNOWN)
            await until(lambda: order.status is OrderStatus.REJECTED, timeout=4.0)
            assert "never arrived" in order.reason
            assert h.posts(order.client_order_id) == 1
    finally:
        logger.remove(sink)
    (line,) = [m.record for m in records if m.record["message"].startswith(f"order {order.client_order_id}: UNKNOWN here")]
    assert line["level"].name == "WARNING" and order.reason in line["message"]
    assert line["message"] == (
        f"order {order.client_order_id}: UNKNOWN here (its state at the venue not known: a submit or cancel timed out "
        f"or failed, or it was open when the daemon last stopped; queried by its client order id, never re-sent), and "
        f"the {order.reason}: REJECTED here (never placed, not re-sent)"
    )


@pytest.mark.parametrize("kind", ["rate_limit", "ban"])
async def test_429_and_418_reject_the_submit_at_once_pause_every_request_for_retry_after_and_nothing_is_resent(kind: str) -> None:
    """Binance: "HTTP 4XX return codes are used for malformed requests; the issue is on the sender's side"
    (429: a request rate limit broken, 418: the IP banned); only a 5XX leaves the outcome unknown."""
    # the next submit waits out Retry-After in the client: its submit timeout is longer than that wait; the client
    # reads every answer however late (on a loaded machine a 429 read past its 0.25 s would be a submit unanswered)
    async with harness([RestFault(kind, retry_after=1)], timeouts=ANSWERED, request_timeout=WAIT) as h:
        order = h.submit(OrderSide.BUY, 0.01, 50_000.0)
        await until(lambda: order.status is OrderStatus.REJECTED)
        assert "rate limit" in order.reason and "-1003" in order.reason and "never arrived" not in order.reason
        assert h.venue.requests["query"] == 0
        assert h.posts(order.client_order_id) == 1
        after = h.submit(OrderSide.BUY, 0.01, 50_000.0)
        await until(lambda: after.status is OrderStatus.ACCEPTED)  # waits out Retry-After (1 s) first
        times = h.emulator.request_times
        assert len(times) >= 2 and times[1] - times[0] >= 1.0  # the next submit waited for Retry-After
        assert h.venue.api.budget.peak <= 6000 * 0.8  # type: ignore[attr-defined]


def _stepping_budget(hold: asyncio.Event | None = None) -> WeightBudget:
    """Binance spot's budget on a stepping clock (:func:`stepping_budget`)."""
    return stepping_budget(WEIGHT_LIMIT, WEIGHT_HEADER, hold)


async def test_a_submit_that_would_wait_out_a_418_ban_past_its_timeout_is_withdrawn_never_sent() -> None:
    """A 418's ``Retry-After`` (5 s) outlasts the next submit's timeout (0.3 s): sent when the ban ends, it
    would trade at a price decided seconds before. It is REJECTED at once, naming the ban and the venue's
    code, and never sent; a cancel (it lowers the risk) waits the ban out and goes."""
    async with harness([RestFault("ban", at=1, retry_after=5)], request_timeout=WAIT) as h:  # the 418 read however late
        working = h.submit(OrderSide.BUY, 0.01, 50_000.0)
        await until(lambda: working.status is OrderStatus.ACCEPTED)
        banned = h.submit(OrderSide.BUY, 0.01, 50_000.0)
        await until(lambda: banned.status is OrderStatus.REJECTED)
        order = h.submit(OrderSide.BUY, 0.01, 50_000.0)
        await until(lambda: order.status is OrderStatus.REJECTED)
        assert "withdrawn" in order.reason and "IP banned (418, code -1003) until" in order.reason
        h.kernel.execution.cancel(CancelOrder("s1", IID, working.client_order_id, 0, 0))
        await until(lambda: working.status is OrderStatus.CANCELED)  # once the ban is over
        await h.venue.drain()
        assert order.status is OrderStatus.REJECTED and h.venue.api.budget.blocked_until < time.time()  # type: ignore[attr-defined]
        assert [m for m, _, c in h.emulator.requests if c == order.client_order_id] == []


async def test_a_cancel_replace_that_would_wait_out_a_418_ban_past_its_timeout_is_withdrawn_and_the_order_works_on() -> None:
    """Binance spot moves a limit order by one cancel-replace request, whose replacement is a submit: behind
    a ban longer than its timeout it is withdrawn, never sent; the order keeps working at its price."""
    async with harness([RestFault("ban", "GET", "/api/v3/account", retry_after=5)], request_timeout=WAIT) as h:  # the 418 read however late
        h.venue.on_replace = h.kernel.execution.submit
        order = h.submit(OrderSide.BUY, 0.01, 50_000.0)
        await until(lambda: order.status is OrderStatus.ACCEPTED)
        with pytest.raises(RateLimited, match="418"):
            await h.venue.api.balances()
        h.kernel.execution.modify(ModifyOrder("s1", IID, order.client_order_id, 0, 0, price=51_000.0))
        await until(lambda: len(h.kernel.orders.orders()) == 2 and h.kernel.orders.orders()[1].status is OrderStatus.REJECTED)
        replacement = h.kernel.orders.orders()[1]
        assert "withdrawn" in replacement.reason and "IP banned (418, code -1003) until" in replacement.reason
        assert order.status is OrderStatus.ACCEPTED and order.price == 50_000.0
        assert h.emulator.orders[order.client_order_id].status is OrderStatus.ACCEPTED
        assert [p for _, p, _ in h.emulator.requests if p == "/api/v3/order/cancelReplace"] == []


async def test_a_stop_placed_again_after_its_refused_cancel_replace_waits_out_a_full_window_rather_than_be_withdrawn() -> None:
    """Binance spot: long 0.01 BTC, a sell stop at 59,000 moved to 60,500 (above the last trade): the venue
    cancels it and refuses the new one (-2021), an answer that shows the minute's weight used up. The stop
    is placed again as it was, after the next window, however far past its submit timeout: it was withdrawn,
    the stop canceled and nothing placed in its place."""
    resume = asyncio.Event()
    # FAST's submit timeout (a submit held past it is withdrawn, unless it restores a stop) but no cancel timeout, and
    # the REST client waiting WAIT: the answer telling the minute used up is read however late (on a loaded machine
    # one read past the client's 0.25 s tells the budget nothing, and the stop is placed again at once)
    read = msgspec.structs.replace(FAST, cancel_ns=int(WAIT * 1e9))
    async with harness(budget=_stepping_budget(resume), weight_clock=held_window, timeouts=read, request_timeout=WAIT) as h:
        h.venue.on_replace = h.kernel.execution.submit
        buy = h.submit(OrderSide.BUY, 0.01)
        await until(lambda: buy.status is OrderStatus.ACCEPTED)
        h.trade(60_000.0)
        await until(lambda: buy.status is OrderStatus.FILLED)
        now = h.kernel.clock.now_ns()
        stop = h.kernel.execution.submit(SubmitOrder("s1", IID, "", OrderSide.SELL, 0.01, now, now, OrderType.STOP_MARKET, trigger_price=59_000.0))
        await until(lambda: stop.status is OrderStatus.ACCEPTED)
        h.emulator.weight = WEIGHT_LIMIT  # the cancel-replace's answer tells the minute used up
        h.kernel.execution.modify(ModifyOrder("s1", IID, stop.client_order_id, 0, 0, trigger_price=60_500.0))
        await until(lambda: h.venue.api.budget.waits >= 1)  # type: ignore[attr-defined]
        h.emulator.weight = 0
        resume.set()
        await until(lambda: len(h.kernel.orders.orders()) == 4 and h.kernel.orders.orders()[-1].status is OrderStatus.ACCEPTED)
        again = h.kernel.orders.orders()[-1]
        refused = [o for o in h.kernel.orders.orders() if o.status is OrderStatus.REJECTED]
        assert [o.trigger_price for o in refused] == [60_500.0] and "-2021" in refused[0].reason
        assert stop.status is OrderStatus.CANCELED and again.trigger_price == 59_000.0
        assert [r.order.trigger_price for r in h.emulator.open_orders()] == [59_000.0]
        h.trade(58_900.0)
        await until(lambda: again.status is OrderStatus.FILLED)
    assert h.kernel.portfolio.position(IID) == pytest.approx(0.0, abs=1e-12)


async def test_a_two_request_replacement_after_its_cancel_waits_out_a_full_window_rather_than_be_withdrawn() -> None:
    """Binance USD-M: a limit buy at 59,000 moved to 59,500 by a cancel, then a new order; the answer that confirms the
    cancel (the query sent after the DELETE's answer: the stream's CANCELED frame is lost) shows the minute's weight
    used up (2,400 of 2,400). The new order's POST waits for the next minute, far past its 0.3 s submit timeout,
    logged at WARNING naming the order it restores, and works at 59,500: it was withdrawn, the buy canceled and
    nothing placed in its place."""
    resume = asyncio.Event()
    answer = asyncio.Event()
    # The query that confirms the cancel, held at the venue until the test has used up the minute's weight; no other
    # confirms it (the stream's frame dropped): so the replacement, not that query, is the request the window holds.
    confirming = RestFault("hold", "GET", "/fapi/v1/order", release=answer)
    # FAST's submit timeout (a submit held past it is withdrawn, unless it restores an order) but no cancel timeout (the
    # only query is the one sent on the DELETE's answer), and the REST client waiting WAIT (answers read however late).
    read = msgspec.structs.replace(FAST, cancel_ns=int(WAIT * 1e9))
    warnings: list[Any] = []
    sink = logger.add(warnings.append, level="WARNING")
    try:
        async with usdm_harness([StreamFault("drop", '"X": "CANCELED"')], timeout=WAIT, timeouts=read,
                                budget=stepping_budget(FUTURES_WEIGHT_LIMIT, WEIGHT_HEADER, resume)) as h:
            replaced: list[OrderReplaced] = []
            h.kernel.bus.subscribe(OrderReplaced, replaced.append)
            budget = h.venue.api.budget  # type: ignore[attr-defined]
            order = h.submit(OrderSide.BUY, 0.01, 59_000.0)
            await until(lambda: order.status is OrderStatus.ACCEPTED and h.venue.in_flight == 0)
            h.emulator.rest_faults.append(confirming)  # from now on: the next query
            h.kernel.execution.modify(ModifyOrder("s1", h.iid, order.client_order_id, 0, 0, price=59_500.0))
            await until(lambda: confirming.fired and h.emulator.orders[order.client_order_id].status is OrderStatus.CANCELED)
            h.emulator.weight = FUTURES_WEIGHT_LIMIT  # type: ignore[attr-defined]  # the query's answer tells the minute used up
            answer.set()
            await until(lambda: len(replaced) == 1)
            new = h.kernel.orders.order(replaced[0].replacement_id)
            await until(lambda: budget.waits >= 1 or not new.is_open)
            assert new.status is not OrderStatus.REJECTED, new.reason  # withdrawn
            assert budget.waits >= 1 and new.client_order_id not in h.emulator.orders  # held for the next window
            [held] = [r.record["message"] for r in warnings if "never withdrawn" in r.record["message"]]
            assert order.client_order_id in held and "request budget used (2400 + 0 over 1920)" in held
            h.emulator.weight = 0  # type: ignore[attr-defined]
            resume.set()  # the next window
            await until(lambda: new.status is OrderStatus.ACCEPTED and order.status is OrderStatus.CANCELED)
            await h.venue.drain()
    finally:
        logger.remove(sink)
    assert [(r.order.client_order_id, r.order.price, r.order.quantity) for r in h.emulator.open_orders()] == [
        (new.client_order_id, 59_500.0, 0.01)
    ]
    assert [c for m, p, c in h.emulator.requests if m == "POST" and p == "/fapi/v1/order"] == [order.client_order_id, new.client_order_id]


def _stream_caught_up(h: Harness) -> bool:
    """Whether the user stream has handled every frame the emulator queued to it."""
    return h.stream.frames >= sum(s.queued for s in h.emulator.sessions)


async def test_a_two_request_replacement_near_the_weight_limit_waits_for_its_cancels_answer() -> None:
    """Binance USD-M, every answer telling the minute's weight near the limit (1,800 of 2,400: past what this
    process leaves the account's other callers): a limit buy at 59,000 moved to 59,500. The stream's CANCELED
    frame comes first and the DELETE's answer, held, tells the minute used up (2,400). The replacement is not
    sent on the frame but once the answer is read, and waits for the next window; sent on the frame, it went
    into the full minute (at a real venue a 429, and the buy canceled with nothing in its place)."""
    resume, answer = asyncio.Event(), asyncio.Event()
    late = RestFault("late", "DELETE", "/fapi/v1/order", release=answer)
    budget = stepping_budget(FUTURES_WEIGHT_LIMIT, WEIGHT_HEADER, resume)
    async with usdm_harness(rest_faults=[late], timeout=WAIT, timeouts=ANSWERED, budget=budget) as h:
        try:
            h.emulator.weight = 1_800  # type: ignore[attr-defined]
            replaced: list[OrderReplaced] = []
            h.kernel.bus.subscribe(OrderReplaced, replaced.append)
            order = h.submit(OrderSide.BUY, 0.01, 59_000.0)
            await until(lambda: order.status is OrderStatus.ACCEPTED)
            assert budget.used == 1_800  # a new order weighs 0 (it counts against the order limits)
            h.emulator.weight = FUTURES_WEIGHT_LIMIT - 1  # type: ignore[attr-defined]  # the DELETE's answer tells 2,400
            h.kernel.execution.modify(ModifyOrder("s1", h.iid, order.client_order_id, 0, 0, price=59_500.0))
            await until(lambda: late.fired and h.emulator.orders[order.client_order_id].status is OrderStatus.CANCELED)
            await until(lambda: _stream_caught_up(h))  # the CANCELED frame handled, the DELETE's answer held
            assert [o.client_order_id for o in h.kernel.orders.orders()] == [order.client_order_id]  # nothing submitted yet
            assert order.status is OrderStatus.ACCEPTED  # its cancel follows the replacement
            answer.set()
            await until(lambda: budget.waits >= 1)
            h.emulator.weight = 0  # type: ignore[attr-defined]
            resume.set()
            await until(lambda: len(replaced) == 1)
            new = h.kernel.orders.order(replaced[0].replacement_id)
            await until(lambda: new.status is OrderStatus.ACCEPTED and order.status is OrderStatus.CANCELED)
            await h.venue.drain()
        finally:
            answer.set()  # an answer still held would hold the emulator's stop
    assert [(r.order.price, r.order.quantity) for r in h.emulator.open_orders()] == [(59_500.0, 0.01)]
    assert budget.peak <= FUTURES_WEIGHT_LIMIT


async def test_a_held_replacement_whose_cancels_answer_is_lost_leaves_once_the_budgets_window_turns() -> None:
    """Binance USD-M, the minute's weight near the limit (1,800 of 2,400): a limit buy at 59,000 moved to 59,500 is
    canceled, the stream's CANCELED frame comes and its replacement waits for the DELETE's answer, which never comes
    (the REST client's timeout far off: a lost answer). It waited for that timeout, though the budget's window turned
    meanwhile, after which an answer of the window before tells nothing. It now leaves once the window turns, the
    DELETE's answer still unheard. The budget's clock is the test's: it moves to the next minute once the
    replacement is held."""
    answer = asyncio.Event()
    late = RestFault("late", "DELETE", "/fapi/v1/order", release=answer)
    now = [math.floor(time.time() / 60.0) * 60.0 + 59.0]  # a second before the minute ends
    budget = WeightBudget(FUTURES_WEIGHT_LIMIT, 60.0, header=WEIGHT_HEADER, monotonic=lambda: now[0])
    async with usdm_harness(rest_faults=[late], timeout=100 * WAIT, timeouts=ANSWERED, budget=budget) as h:
        try:
            h.emulator.weight = 1_800  # type: ignore[attr-defined]
            replaced: list[OrderReplaced] = []
            h.kernel.bus.subscribe(OrderReplaced, replaced.append)
            order = h.submit(OrderSide.BUY, 0.01, 59_000.0)
            await until(lambda: order.status is OrderStatus.ACCEPTED)
            h.kernel.execution.modify(ModifyOrder("s1", h.iid, order.client_order_id, 0, 0, price=59_500.0))
            await until(lambda: late.fired and h.emulator.orders[order.client_order_id].status is OrderStatus.CANCELED)
            await until(lambda: _stream_caught_up(h))  # the CANCELED frame handled, the DELETE's answer held
            assert [o.client_order_id for o in h.kernel.orders.orders()] == [order.client_order_id]  # held
            now[0] += 1.0  # the next minute: nothing of the last one's weight counts
            await until(lambda: len(replaced) == 1)
            assert not answer.is_set()
            new = h.kernel.orders.order(replaced[0].replacement_id)
            await until(lambda: new.status is OrderStatus.ACCEPTED and order.status is OrderStatus.CANCELED)
            answer.set()
            await h.venue.drain()
        finally:
            answer.set()  # an answer still held would hold the emulator's stop
    assert [(r.order.price, r.order.quantity) for r in h.emulator.open_orders()] == [(59_500.0, 0.01)]


async def test_a_two_request_replacement_with_room_in_the_budget_leaves_on_the_streams_cancel_frame() -> None:
    """Binance USD-M, the minute's weight far from the limit: the replacement of a limit buy moved from 59,000 to
    59,500 leaves on the stream's CANCELED frame, before the DELETE's answer (held until the replacement reached
    the venue): the order is off the book no longer than the stream takes."""
    answer = asyncio.Event()
    late = RestFault("late", "DELETE", "/fapi/v1/order", release=answer)
    # The REST client outwaits the test's waits: a replacement left only at the DELETE's timeout fails them.
    async with usdm_harness(rest_faults=[late], timeout=2 * WAIT, timeouts=ANSWERED) as h:
        try:
            replaced: list[OrderReplaced] = []
            h.kernel.bus.subscribe(OrderReplaced, replaced.append)
            order = h.submit(OrderSide.BUY, 0.01, 59_000.0)
            await until(lambda: order.status is OrderStatus.ACCEPTED)
            h.kernel.execution.modify(ModifyOrder("s1", h.iid, order.client_order_id, 0, 0, price=59_500.0))
            await until(lambda: len(replaced) == 1)
            new = h.kernel.orders.order(replaced[0].replacement_id)
            await until(lambda: new.client_order_id in h.emulator.orders)
            assert not answer.is_set() and late.fired  # placed while the DELETE's answer was still held
            answer.set()
            await until(lambda: new.status is OrderStatus.ACCEPTED and order.status is OrderStatus.CANCELED)
            await h.venue.drain()
        finally:
            answer.set()  # an answer still held would hold the emulator's stop
    assert [(r.order.price, r.order.quantity) for r in h.emulator.open_orders()] == [(59_500.0, 0.01)]


async def test_a_submit_behind_a_429_pause_shorter_than_its_timeout_waits_it_out_and_is_accepted() -> None:
    async with harness([RestFault("rate_limit", retry_after=0.1)], budget=_stepping_budget(), request_timeout=WAIT) as h:  # the 429 read however late
        refused = h.submit(OrderSide.BUY, 0.01, 50_000.0)
        await until(lambda: refused.status is OrderStatus.REJECTED)
        order = h.submit(OrderSide.BUY, 0.01, 50_000.0)
        await until(lambda: order.status is OrderStatus.ACCEPTED)
        assert h.posts(order.client_order_id) == 1 and h.venue.api.budget.waits == 1  # type: ignore[attr-defined]


async def test_a_query_that_passes_the_429_pause_before_the_held_submit_does_not_reject_it() -> None:
    """A submit that waits out a 429's pause shorter than its timeout, but is held past its timeout (its
    wait ends late), is queried; the query passes the pause first and the venue does not know the order:
    no proof that the submit never arrives, as it leaves after. Believed, the order was REJECTED while the
    venue then placed it."""
    resume = asyncio.Event()
    # the 429 read however late
    async with harness([RestFault("rate_limit", retry_after=0.1)], budget=_stepping_budget(resume), request_timeout=WAIT) as h:
        refused = h.submit(OrderSide.BUY, 0.01, 50_000.0)
        await until(lambda: refused.status is OrderStatus.REJECTED)
        order = h.submit(OrderSide.BUY, 0.01, 50_000.0)
        coid = order.client_order_id
        # UNKNOWN at its timeout (0.3 s), then queried every 0.15 s: the fifth past the 0.6 s grace from its creation
        await until(lambda: _queries(h, coid) >= 5 or order.status is OrderStatus.REJECTED)
        assert order.status is OrderStatus.UNKNOWN and h.posts(coid) == 0
        resume.set()
        await until(lambda: order.status is OrderStatus.ACCEPTED)
        asked = [m for m, _, c in h.emulator.requests if c == coid]
        assert asked.index("POST") >= 5 and h.posts(coid) == 1 and h.emulator.orders[coid].status is OrderStatus.ACCEPTED


async def test_a_submit_held_by_the_429_pause_then_unanswered_is_rejected_only_the_grace_after_it_left() -> None:
    """The grace in which a venue that does not know an order is not believed runs from when its submit
    left, not from when it was queued behind the pause."""
    resume = asyncio.Event()
    faults = [RestFault("rate_limit", retry_after=0.1), RestFault("error5xx")]  # the next POST
    async with harness(faults, budget=_stepping_budget(resume), request_timeout=WAIT) as h:  # the 429 read however late
        refused = h.submit(OrderSide.BUY, 0.01, 50_000.0)
        await until(lambda: refused.status is OrderStatus.REJECTED)
        order = h.submit(OrderSide.BUY, 0.01, 50_000.0)
        coid = order.client_order_id
        await until(lambda: _queries(h, coid) >= 5 or order.status is OrderStatus.REJECTED)
        left = h.kernel.clock.now_ns()
        resume.set()  # its POST is answered 503: not processed
        await until(lambda: order.status is OrderStatus.REJECTED)
        assert faults[1].fired and coid not in h.emulator.orders and "never arrived" in order.reason
        assert order.ts_last - left >= FAST.not_found_grace_ns


async def test_duplicated_and_reordered_stream_events_are_booked_once() -> None:
    faults = [StreamFault("duplicate", '"x": "TRADE"'), StreamFault("reorder", '"x": "NEW"', at=1)]
    async with harness(stream_faults=faults) as h:
        first = h.submit(OrderSide.BUY, 0.02, 60_000.0)
        await until(lambda: first.status is OrderStatus.ACCEPTED)
        h.trade(60_000.0, size=0.01)
        h.trade(60_000.0, size=5.0)
        await until(lambda: first.status is OrderStatus.FILLED)
        second = h.submit(OrderSide.SELL, 0.02, 59_000.0)  # its NEW is held back until the next event
        await until(lambda: second.client_order_id in h.emulator.orders)
        h.trade(59_500.0)
        await until(lambda: second.status is OrderStatus.FILLED)
        await settled(h)  # the duplicate and the late NEW have been handled
        assert all(f.fired for f in faults)
        assert first.status is second.status is OrderStatus.FILLED  # the late NEW changed nothing
        assert first.filled_qty == pytest.approx(0.02) and second.filled_qty == pytest.approx(0.02)
        _position_matches_account(h)
        assert h.kernel.portfolio.position(IID) == pytest.approx(0.0, abs=1e-12)


async def test_fill_seen_only_in_trade_history_is_booked_once_by_trade_id() -> None:
    async with harness(stream_faults=[StreamFault("drop", '"x": "TRADE"')]) as h:
        order = h.submit(OrderSide.BUY, 0.01, 60_000.0)
        await until(lambda: order.status is OrderStatus.ACCEPTED)
        h.trade(59_000.0)  # fills at the venue; its TRADE event is lost
        await settled(h)
        assert order.status is OrderStatus.ACCEPTED
        h.kernel.execution.cancel(CancelOrder("s1", IID, order.client_order_id, 0, 0))  # refused: already filled
        await until(lambda: order.status is OrderStatus.FILLED)
        assert [f.trade_id for f in h.kernel.result.fills] == [str(h.emulator.trades[0]["id"])]
        asked = _queries(h, order.client_order_id)
        h.kernel.execution.reconcile_order(order.client_order_id)  # asking again books nothing new
        await until(lambda: _queries(h, order.client_order_id) > asked and h.venue.in_flight == 0)  # its answer applied
        assert len(h.kernel.result.fills) == 1
        _position_matches_account(h)


async def test_a_wrong_secret_is_refused_by_the_signature_check() -> None:
    async with harness(secret="not-the-secret", timeouts=ANSWERED, request_timeout=WAIT) as h:  # the refusal read however late
        order = h.submit(OrderSide.BUY, 0.01, 50_000.0)
        await until(lambda: order.status is OrderStatus.REJECTED)
        assert "-1022" in order.reason
        assert h.emulator.orders == {}


async def test_cancel_racing_a_fill_whose_event_is_late_books_the_fill_once() -> None:
    async with harness(stream_faults=[StreamFault("delay", '"x": "TRADE"', seconds=0.5)]) as h:
        order = h.submit(OrderSide.BUY, 0.01, 60_000.0)
        await until(lambda: order.status is OrderStatus.ACCEPTED)
        h.trade(59_000.0)  # fills at the venue; the event is on its way, slowly
        h.kernel.execution.cancel(CancelOrder("s1", IID, order.client_order_id, 0, 0))  # too late: refused
        await until(lambda: order.status is OrderStatus.FILLED)
        await settled(h)  # the delayed TRADE event has been handled after the query booked the fill
        assert h.emulator.stream_faults[0].fired
        assert len(h.kernel.result.fills) == 1 and order.filled_qty == pytest.approx(0.01)
        _position_matches_account(h)


async def test_a_cancel_the_venue_refuses_because_the_order_filled_tells_only_the_fill() -> None:
    """The venue refuses the cancel of an order it filled (-2011 "Unknown order sent."); the query after the
    refusal finds it FILLED: no ``OrderCancelRejected`` (that says the order works on), no ``OrderCanceled``,
    only the fill. The simulated venue answers such a cancel so (``tests/execution/test_cancel_after_fill.py``)."""
    async with harness(stream_faults=[StreamFault("delay", '"x": "TRADE"', seconds=0.5)]) as h:
        heard: list[object] = []
        for kind in (OrderCancelRejected, OrderCanceled, OrderFilled):
            h.kernel.bus.subscribe(kind, heard.append)
        order = h.submit(OrderSide.BUY, 0.01, 60_000.0)
        await until(lambda: order.status is OrderStatus.ACCEPTED)
        h.trade(59_000.0)  # fills at the venue; the event is on its way, slowly
        h.kernel.execution.cancel(CancelOrder("s1", IID, order.client_order_id, 0, 0))
        await until(lambda: order.status is OrderStatus.FILLED)
        await settled(h)
        assert ("DELETE", "/api/v3/order", order.client_order_id) in h.emulator.requests
        assert [type(e) for e in heard] == [OrderFilled] and order.filled_qty == pytest.approx(0.01)


async def test_an_answered_query_is_not_asked_again_and_again() -> None:
    """Found by the kill -9 soak: a reconcile of an order (after a restart, a stream reconnect)
    made the live venue query it every ``retry_interval`` for ever, the answers applied in
    between; the queries (weight 24 each) ate the rate budget and new orders waited for it."""
    # every request waits for its answer however late (on a loaded machine a query answered past the REST client's
    # 0.25 s, or a submit past FAST's 0.3 s, is rightly asked again: a query this test does not mean)
    async with harness(timeouts=ANSWERED, request_timeout=WAIT) as h:
        rest = h.submit(OrderSide.BUY, 0.01, 50_000.0)
        done = h.submit(OrderSide.BUY, 0.01)
        await until(lambda: rest.status is OrderStatus.ACCEPTED)
        h.trade(60_000.0)
        await until(lambda: done.status is OrderStatus.FILLED)
        for order in (rest, done):
            h.kernel.execution.reconcile_order(order.client_order_id)  # each query sent, its retry set
        await until(lambda: _queries(h, rest.client_order_id) and _queries(h, done.client_order_id) and h.venue.in_flight == 0)
        await later_than(h.venue.clock, FAST.retry_ns + 10_000_000)  # the retries (set before the answers) are due by then
        await settled(h)  # a query a retry sent has reached the venue and been answered
        queries = {o.client_order_id: _queries(h, o.client_order_id) for o in (rest, done)}
        assert queries == {rest.client_order_id: 1, done.client_order_id: 1}
        assert rest.status is OrderStatus.ACCEPTED and done.status is OrderStatus.FILLED


async def test_a_daemon_forgets_when_the_submits_of_its_closed_orders_ended() -> None:
    """The live venue kept, for every order it ever sent, when its submit ended: a daemon running for
    weeks grew without bound. Those of closed orders are forgotten (the engine asks only of an open one)."""
    # 25 market orders at once: on a loaded machine a request may outlast the harness's 0.25 s client timeout
    # (an order whose POST timed out before it was sent never reaches the venue, and the test waits for all). Two
    # batches and the resting order stay within this process's share of spot's 100 orders per 10 s (80), which
    # counts a batch until an answer tells that the fills of the one before took it off the venue's count.
    patient = msgspec.structs.replace(FAST, submit_ns=30_000_000_000)
    async with harness(timeouts=patient, request_timeout=10.0) as h:
        rest = h.submit(OrderSide.BUY, 0.001, 50_000.0)
        await until(lambda: rest.status is OrderStatus.ACCEPTED)
        filled = []
        for _ in range(24):
            batch = [h.submit(OrderSide.BUY, 0.001) for _ in range(25)]
            await until(lambda: all(o.client_order_id in h.emulator.orders for o in batch), 10.0)  # noqa: B023
            h.trade(60_000.0)
            await until(lambda: all(o.status is OrderStatus.FILLED for o in batch), 10.0)  # noqa: B023
            filled += batch
        remembered = [o for o in filled if h.venue.submit_ended_ns(o.client_order_id) != 0]
        assert len(remembered) <= 300, f"{len(remembered)} of {len(filled)} closed orders' submits still kept"
        assert h.venue.submit_ended_ns(rest.client_order_id) not in (0, None)  # open: its submit's end is kept
        assert rest.status is OrderStatus.ACCEPTED and h.kernel.portfolio.position(IID) == pytest.approx(0.6)


def _late_fill_frame(h: Harness, order: Any, qty: float, trade_id: int) -> None:
    """The venue's executionReport of a fill of ``order`` it matched before its cancel, reaching the daemon after it."""
    event = {
        "e": "executionReport", "E": int(time.time() * 1000), "T": int(time.time() * 1000), "s": "BTCUSDT",
        "c": order.client_order_id, "C": "", "S": "BUY", "x": "TRADE", "X": "CANCELED", "i": 7_000 + trade_id,
        "l": f"{qty:.8f}", "z": f"{qty:.8f}", "L": "50000.00000000", "n": "0.00000000", "N": "USDT", "t": trade_id,
        "m": True,
    }  # fmt: skip
    frame = json.dumps({"subscriptionId": 0, "event": event})
    for session in h.emulator.sessions:
        if session.authed:
            session.send(frame)


async def test_a_daemon_forgets_its_released_closed_orders_once_past_the_grace_window() -> None:
    """The live venue kept every order it ever sent (the stream parser's lookup), and its queries' answers, for as
    long as the daemon ran. An order the order manager forgets (released by the outputs, past the window of the
    latest ``keep_released`` and of ``keep_released_ns``) is forgotten by the venue too."""
    # 25 market orders at once (two batches within spot's order budget, as above): on a loaded machine their acks may
    # take longer than FAST's 0.3 s submit timeout (an order whose timeout's query is on its way when it is released
    # is rightly kept one more window) or than the harness's 0.25 s client timeout (an order whose POST timed out
    # unsent never reaches the venue).
    patient = msgspec.structs.replace(FAST, submit_ns=30_000_000_000)
    async with harness(timeouts=patient, request_timeout=10.0) as h:
        om = h.kernel.orders
        om.keep_released, om.keep_released_ns = 50, 0
        rest = h.submit(OrderSide.BUY, 0.001, 50_000.0)
        await until(lambda: rest.status is OrderStatus.ACCEPTED)
        filled = []
        for _ in range(16):
            batch = [h.submit(OrderSide.BUY, 0.001) for _ in range(25)]
            await until(lambda: all(o.client_order_id in h.emulator.orders for o in batch), 10.0)  # noqa: B023
            h.trade(60_000.0)
            await until(lambda: all(o.status is OrderStatus.FILLED for o in batch), 10.0)  # noqa: B023
            for order in batch:
                om.release(order.client_order_id)  # as the daemon's outputs do once its row is written
            filled += batch
        known = [o for o in filled if h.venue.order(o.client_order_id) is not None]
        assert len(known) == 50, f"{len(known)} of {len(filled)} released closed orders still kept by the venue"
        assert all(h.venue.order(o.client_order_id) is o and om.get(o.client_order_id) is o for o in filled[-50:])
        assert all(h.venue.submit_ended_ns(o.client_order_id) == 0 for o in filled[:-50])
        assert h.venue.order(rest.client_order_id) is rest  # open: kept
        assert rest.status is OrderStatus.ACCEPTED and h.kernel.portfolio.position(IID) == pytest.approx(0.4)


async def test_a_late_fill_frame_is_booked_on_its_closed_released_order_and_after_it_was_forgotten_as_an_unknown_one() -> None:
    """A fill the venue matched before an order's cancel may reach the daemon after the cancel and after the outputs
    released the order: within the grace window it is booked on its order (its strategy's fill); past it the order is
    forgotten and the fill is booked as an unknown order's (the position is real), never dropped."""
    # no submit or cancel timeout, every answer waited for however late: a query a late answer sends (a loaded
    # machine) keeps its order until answered, which a released order here must not wait for
    async with harness(timeouts=ANSWERED, request_timeout=WAIT) as h:
        om = h.kernel.orders
        om.keep_released, om.keep_released_ns = 1, 0
        anomalies: list[OrderAnomaly] = []
        h.kernel.bus.subscribe(OrderAnomaly, anomalies.append)
        gone, late = h.submit(OrderSide.BUY, 0.001, 50_000.0), h.submit(OrderSide.BUY, 0.001, 50_000.0)
        await until(lambda: gone.status is late.status is OrderStatus.ACCEPTED)
        for order in (gone, late):
            h.kernel.execution.cancel(CancelOrder("s1", IID, order.client_order_id, 0, 0))
        await until(lambda: gone.status is late.status is OrderStatus.CANCELED)
        await settled(h)
        om.release(gone.client_order_id)
        om.release(late.client_order_id)  # one released order is kept: gone is forgotten
        assert om.get(gone.client_order_id) is None and h.venue.order(gone.client_order_id) is None
        assert om.get(late.client_order_id) is late and h.venue.order(late.client_order_id) is late
        _late_fill_frame(h, late, 0.0004, 901)
        _late_fill_frame(h, gone, 0.0003, 902)
        await until(lambda: len(h.kernel.result.fills) == 2)
        by_order = {f.client_order_id: f for f in h.kernel.result.fills}
        assert by_order[late.client_order_id].strategy_id == "s1" and late.filled_qty == pytest.approx(0.0004)
        assert by_order[gone.client_order_id].quantity == pytest.approx(0.0003) and gone.filled_qty == 0.0
        assert h.kernel.portfolio.position(IID) == pytest.approx(0.0007)
        kinds = {(a.client_order_id, a.kind) for a in anomalies}
        assert kinds == {(late.client_order_id, AnomalyKind.FILL_AFTER_CLOSE), (gone.client_order_id, AnomalyKind.UNKNOWN_ORDER)}


async def test_a_fill_frame_of_a_forgotten_order_that_comes_again_is_not_booked_twice() -> None:
    """A fill's frame of an order forgotten since (released, past the window) that the stream sends again (a replay
    after a reconnect) was booked a second time as an unknown order's fill: the forgotten order's trade ids were
    not kept. It is a duplicate; a new trade of the same order is still booked (the position is real)."""
    # no submit or cancel timeout, every answer waited for however late: a query a late answer sends (a loaded
    # machine) keeps its order until answered, which a released order here must not wait for
    async with harness(timeouts=ANSWERED, request_timeout=WAIT) as h:
        om = h.kernel.orders
        om.keep_released, om.keep_released_ns = 0, 0
        anomalies: list[OrderAnomaly] = []
        h.kernel.bus.subscribe(OrderAnomaly, anomalies.append)
        order = h.submit(OrderSide.BUY, 0.001)
        await until(lambda: order.client_order_id in h.emulator.orders)
        h.trade(60_000.0)
        await until(lambda: order.status is OrderStatus.FILLED)
        await settled(h)
        [fill] = h.kernel.result.fills
        om.release(order.client_order_id)
        assert om.get(order.client_order_id) is None and h.venue.order(order.client_order_id) is None
        new = str(int(fill.trade_id) + 1_000)
        _late_fill_frame(h, order, 0.001, int(fill.trade_id))  # the same trade, sent again
        _late_fill_frame(h, order, 0.0002, int(new))  # a trade not booked before, in the next frame
        await until(lambda: h.kernel.result.fills[-1].trade_id == new)
        await settled(h)
        assert [f.trade_id for f in h.kernel.result.fills] == [fill.trade_id, new]
        assert h.kernel.portfolio.position(IID) == pytest.approx(0.0012)
        assert [a.kind for a in anomalies] == [AnomalyKind.DUPLICATE_FILL, AnomalyKind.UNKNOWN_ORDER]


async def test_a_cancel_refused_after_its_order_was_forgotten_does_not_query_it() -> None:
    """A cancel sent while its order worked, held by a used-up weight window until the order had filled, was
    released and forgotten, is refused (-2011): no query of it follows (nothing here knows the order anymore;
    queried, its answer went to an engine that no longer knows it)."""
    resume = asyncio.Event()
    # no submit or cancel timeout within the test, every answer waited for however late (on a loaded machine a
    # submit answered past FAST's 0.3 s is rightly queried: a query this test does not mean)
    async with harness(budget=_stepping_budget(resume), weight_clock=held_window, timeouts=ANSWERED, request_timeout=WAIT) as h:
        om = h.kernel.orders
        om.keep_released, om.keep_released_ns = 0, 0
        order = h.submit(OrderSide.BUY, 0.001, 50_000.0)
        await until(lambda: order.status is OrderStatus.ACCEPTED)
        h.emulator.weight = WEIGHT_LIMIT
        await h.venue.api.balances()  # its answer tells the minute used up: the next request waits for the next
        h.trade(49_000.0)  # fills it at the venue; its frame is on its way
        h.kernel.execution.cancel(CancelOrder("s1", IID, order.client_order_id, 0, 0))  # sent while it works here
        await until(lambda: h.venue.api.budget.waits >= 1 and order.status is OrderStatus.FILLED)  # type: ignore[attr-defined]
        om.release(order.client_order_id)
        assert om.get(order.client_order_id) is None and h.venue.order(order.client_order_id) is None
        h.emulator.weight = 0
        resume.set()
        await until(lambda: h.venue.requests["cancel"] == 1 and h.venue.in_flight == 0)
        await settled(h)
        assert h.emulator.orders[order.client_order_id].status is OrderStatus.FILLED  # the cancel was refused
        assert _queries(h, order.client_order_id) == 0 and h.venue.requests["query"] == 0
        assert h.kernel.portfolio.position(IID) == pytest.approx(0.001)
