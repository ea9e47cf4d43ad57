"""Binance error answers under the venue's own URLs: ccxt maps some codes by the request's URL into classes outside
its ``ExchangeError`` and ``NetworkError`` (spot ``-2021``: ``BadResponse``; ``-1008``: ``OperationFailed``).

The account emulator serves REST over TLS and the client names it by a URL ccxt takes for Binance's demo hosts
(:mod:`tests.live.venue_tls`), so each answer goes through ccxt's mapping as on the real venue.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.live.live_harness import IID, harness, until, usdm_harness
from tests.live.test_live_amend import _bought_with_stop
from tradebus.adapters.binance.private_emulator import RestFault
from tradebus.adapters.common.venue_clock import RESYNCS
from tradebus.engine.messages import ModifyOrder, OrderRejected, OrderReplaced, OrderSide, OrderStatus


@pytest.fixture
async def loop_errors() -> AsyncIterator[list[dict[str, Any]]]:
    """What reaches the event loop's exception handler (a request task that ended with an exception)."""
    seen: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _, context: seen.append(context))
    yield seen
    loop.set_exception_handler(None)


async def test_a_spot_stop_moved_past_the_last_trade_on_the_venue_url_is_placed_again(loop_errors: list[dict[str, Any]]) -> None:
    """Long 0.01 BTC, a sell stop at 59,000, moved to 60,500 (above the last trade) by one cancel-replace: Binance
    cancels the stop and refuses the new one (-2021, HTTP 409). The stop is placed again at 59,000. On a Binance URL
    ccxt raised its BadResponse: the request task died with it, the stop stayed canceled at the venue and nothing
    was placed again."""
    async with harness(venue_host="demo-api") as h:
        h.venue.on_replace = h.kernel.execution.submit
        replaced: list[OrderReplaced] = []
        h.kernel.bus.subscribe(OrderReplaced, replaced.append)
        stop = await _bought_with_stop(h)
        h.kernel.execution.modify(ModifyOrder("s1", IID, stop.client_order_id, 0, 0, trigger_price=60_500.0))
        await until(lambda: len(replaced) == 1 or bool(loop_errors))
        assert loop_errors == []
        again = h.kernel.orders.order(replaced[0].replacement_id)
        await until(lambda: again.status is OrderStatus.ACCEPTED)
        refused = [o for o in h.kernel.orders.orders() if o.status is OrderStatus.REJECTED]
        assert [o.trigger_price for o in refused] == [60_500.0] and "-2021" in refused[0].reason
        assert [r.order.trigger_price for r in h.emulator.open_orders()] == [59_000.0]
        await h.venue.drain()


@pytest.mark.parametrize(("market", "host"), [("spot", "demo-api"), ("spot", None), ("usdm", "demo-fapi")])
async def test_a_submit_answered_server_busy_is_queried_not_refused(
    market: str, host: str | None, loop_errors: list[dict[str, Any]]
) -> None:
    """A limit buy whose submit Binance answers -1008 (server overloaded, HTTP 503): the outcome is unknown, the order
    is queried; it is not rejected on that answer. On a Binance URL ccxt raised its OperationFailed: the request task
    died with it and the order was never queried; on another URL (``host`` None) its ExchangeError: rejected."""
    if market == "spot":
        context = harness(rest_faults=[RestFault("busy", "POST", "/api/v3/order")], venue_host=host)
        query = "/api/v3/order"
    else:
        context = usdm_harness(rest_faults=[RestFault("busy", "POST", "/fapi/v1/order")], venue_host=host)
        query = "/fapi/v1/order"
    async with context as h:
        rejected: list[OrderRejected] = []
        h.kernel.bus.subscribe(OrderRejected, rejected.append)
        order = h.submit(OrderSide.BUY, 0.01, 59_000.0)
        coid = order.client_order_id
        await until(lambda: ("GET", query, coid) in h.emulator.requests or bool(loop_errors))
        assert loop_errors == []
        assert ("POST", query, coid) in h.emulator.requests and h.emulator.open_orders() == []
        assert not any("-1008" in r.reason for r in rejected)
        await h.venue.drain()


@pytest.mark.parametrize(("market", "host"), [("spot", "demo-api"), ("spot", None), ("usdm", "demo-fapi")])
@pytest.mark.parametrize("code", ["-1021", "-1022"])
async def test_a_submit_refused_before_processing_is_rejected_at_once_with_its_code(
    market: str, host: str | None, code: str, loop_errors: list[dict[str, Any]]
) -> None:
    """Binance refuses a request whose timestamp is outside its recvWindow (-1021) or whose signature is wrong (-1022)
    before it reaches the matching engine: the order is not placed. ccxt maps -1021 to InvalidNonce, a NetworkError:
    the order was UNKNOWN and queried, and rejected as never arrived once the grace ran out, without the code. (A -1021
    is sent again after each of RESYNCS measures of Binance's clock, :mod:`tests.live.test_live_venue_clock`: refused
    every time here.)"""
    path = "/api/v3/order" if market == "spot" else "/fapi/v1/order"
    tries = RESYNCS + 1 if code == "-1021" else 1
    faults = [RestFault("refuse", "POST", path, code=code) for _ in range(tries)]
    fault = faults[-1]
    context = harness(rest_faults=faults, venue_host=host) if market == "spot" else usdm_harness(rest_faults=faults, venue_host=host)
    async with context as h:
        order = h.submit(OrderSide.BUY, 0.01, 59_000.0)
        await until(lambda: order.status is OrderStatus.REJECTED or bool(loop_errors))
        assert loop_errors == [] and fault.fired
        assert code in order.reason, order.reason
        assert h.venue.requests["query"] == 0
        await h.venue.drain()
    assert [m for m, p, c in h.emulator.requests if c == order.client_order_id] == ["POST"] * tries


async def test_a_submit_refused_for_too_many_orders_without_a_429_is_rate_limited(loop_errors: list[dict[str, Any]]) -> None:
    """ccxt maps Binance -1015 (too many new orders) to RateLimitExceeded, a NetworkError, whatever the HTTP status:
    refused unprocessed, it pauses the account like a 429 rather than being refused as an ordinary error."""
    fault = RestFault("refuse", "POST", "/api/v3/order", code="-1015")
    async with harness(rest_faults=[fault]) as h:
        order = h.submit(OrderSide.BUY, 0.01, 59_000.0)
        await until(lambda: order.status is OrderStatus.REJECTED or bool(loop_errors))
        assert loop_errors == [] and fault.fired
        assert "rate limit -1015" in order.reason, order.reason
        assert h.venue.requests["query"] == 0
        await h.venue.drain()


@pytest.mark.parametrize("code", ["-1003", "-1015"])
async def test_a_submit_refused_for_too_many_requests_or_orders_without_a_429_holds_what_met_the_limit(
    loop_errors: list[dict[str, Any]], code: str
) -> None:
    """Binance -1003 (too many requests) and -1015 (too many new orders) in an answer without HTTP 429 are ccxt's
    RateLimitExceeded with no status in its message: the order was refused as rate limited, but the account's budget
    saw status 0 and every other caller went on sending into the limit. A -1003 pauses the account's weight budget as
    a 429; a -1015 (an order limit: cancels still go) uses the order window up (the shortest, its message naming none)."""
    fault = RestFault("refuse", "POST", "/api/v3/order", code=code)
    async with harness(rest_faults=[fault]) as h:
        order = h.submit(OrderSide.BUY, 0.01, 59_000.0)
        await until(lambda: order.status is OrderStatus.REJECTED or bool(loop_errors))
        assert loop_errors == [] and fault.fired
        ten_s = h.venue.api.order_budgets[0]
        if code == "-1003":
            assert h.venue.api.budget.block_reason == "rate limited (429, code -1003)"
        else:
            assert h.venue.api.budget.blocked_until == 0.0 and ten_s.used == ten_s.limit
        await h.venue.drain()
