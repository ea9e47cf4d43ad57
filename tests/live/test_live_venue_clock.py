"""This machine's clock off the venue's (:mod:`tradebus.adapters.common.venue_clock`), on the account emulators.

An emulator judges a signed request's timestamp, and a private stream's login, against its own ``venue_time`` (the wall
clock unless a test sets one) as the venue does against its time: Binance's 1 s ahead / ``recvWindow`` behind
(``-1021``), OKX's 30 s (``50102``, the login's ``60006``), Bybit's ``recv_window`` (``10002``) and its auth's
``expires`` after the venue's time. A venue clock set apart from the wall clock is this machine's clock off the venue's.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from tests.live.live_harness import harness, until, usdm_harness
from tests.live.test_live_refused_run import _paths, _tree
from tests.live.test_live_secrets import ACCOUNTS
from tests.live.venue_kits import KITS, kit_harness
from tradebus.adapters.common.account_emulator import RestFault
from tradebus.adapters.common.venue_clock import MAX_OFFSET_S, RESYNCS
from tradebus.cli import EXIT_CODES
from tradebus.engine.messages import OrderSide, OrderStatus, OrderType, SubmitOrder
from tradebus.execution.live import ClockRefused
from tradebus.node.live import ApiKeys, LiveNode, parse_live_config

#: Each account's order path, clock code and time endpoint.
_VENUES = {
    "binance": ("/api/v3/order", "-1021", "/api/v3/time"),
    "usdm": ("/fapi/v1/order", "-1021", "/fapi/v1/time"),
    "okx": ("/api/v5/trade/order", "50102", "/api/v5/public/time"),
    "bybit": ("/v5/order/create", "10002", "/v5/market/time"),
}


def _context(name: str, faults: list[RestFault], host: str | None = None) -> Any:
    if name == "binance":
        return harness(rest_faults=faults, venue_host=host)
    if name == "usdm":
        return usdm_harness(rest_faults=faults, venue_host=host)
    return kit_harness(KITS[name], rest_faults=faults)


def _submit(h: Any, name: str) -> Any:
    if name in KITS:
        kit = KITS[name]
        return h.kernel.execution.submit(SubmitOrder("s1", kit.iid, "", OrderSide.BUY, 0.002, 0, 0, OrderType.LIMIT, 1_000.0))
    return h.submit(OrderSide.BUY, 0.01, 59_000.0)


@pytest.mark.parametrize(
    ("name", "host"), [("binance", "demo-api"), ("binance", None), ("usdm", "demo-fapi"), ("okx", None), ("bybit", None)]
)
async def test_an_order_refused_once_for_its_timestamp_is_placed_after_a_measure_of_the_venues_clock(
    name: str, host: str | None
) -> None:
    """A limit buy whose POST the venue refuses for its timestamp (Binance -1021, OKX 50102, Bybit 10002: nothing done):
    it was rejected at once, though a request sent again would pass (a loop stalled past the venue's window between
    signing and sending, a clock stepped). The venue's time is now read (its time endpoint) and the order sent again:
    it works, and was sent twice, the time read between."""
    path, code, time_path = _VENUES[name]
    if name in KITS:
        path = KITS[name].place_path
    fault = RestFault("refuse", "POST", path, code=code)
    async with _context(name, [fault], host) as h:
        order = _submit(h, name)
        await until(lambda: order.status is not OrderStatus.SUBMITTED and order.status is not OrderStatus.INITIALIZED)
        assert fault.fired and order.status is OrderStatus.ACCEPTED, (order.status, order.reason)
        await h.venue.drain()
    sent = [(m, p) for m, p, c in h.emulator.requests if c == order.client_order_id or p == time_path]
    assert sent == [("POST", path), ("GET", time_path), ("POST", path)]


@pytest.mark.parametrize(("name", "advice"), [("binance", "synchronise the clock"), ("usdm", "synchronise the clock"),
                                              ("okx", "synchronise this machine's clock"), ("bybit", "synchronise this machine's clock")])
async def test_an_order_refused_for_its_timestamp_after_every_measure_is_refused_naming_the_clock(name: str, advice: str) -> None:
    """Refused for its timestamp again after each of the RESYNCS measures of the venue's clock: the order is rejected
    with ClockRefused (the live daemon stops on it, exit 2), naming the code, the measures and what to do."""
    path, code, time_path = _VENUES[name]
    if name in KITS:
        path = KITS[name].place_path
    faults = [RestFault("refuse", "POST", path, code=code) for _ in range(RESYNCS + 1)]
    async with _context(name, faults) as h:
        order = _submit(h, name)
        await until(lambda: order.status is OrderStatus.REJECTED)
        await h.venue.drain()
    assert all(f.fired for f in faults)
    assert code in order.reason and f"after {RESYNCS} measures" in order.reason and advice in order.reason, order.reason
    assert sum(1 for _, p, _ in h.emulator.requests if p == time_path) == RESYNCS


@pytest.mark.parametrize("name", ["binance", "usdm", "okx", "bybit"])
async def test_a_daemon_whose_clock_is_45_s_behind_the_venues_starts_and_trades(name: str, tmp_path: Path) -> None:
    """The venue's clock 45 s ahead of this machine's (beyond every venue's window for a signed request): the first
    read of the account was refused for its timestamp and the daemon stopped ('reading the account failed', exit 1).
    It now reads the venue's time, stamps its requests and its user stream's login (OKX's login, Bybit's auth, Binance
    spot's subscription) on the venue's clock, and trades: an order placed is accepted."""
    account = ACCOUNTS[name]
    async with account.served(tmp_path, []) as (emulator, data):
        emulator.venue_time = lambda: time.time() + 45.0
        config = parse_live_config(data, "<test>")
        node = LiveNode(config, ApiKeys.from_env(config.live, account.env()), handle_signals=False)
        task = asyncio.create_task(node.run())
        try:
            await until(lambda: task.done() or node.running.is_set(), timeout=60)
            assert not task.done(), task.exception()
            assert node.stream.subscribed.is_set()
            for _ in range(120):  # denied while the start-up reconciliation runs
                now = node.clock.now_ns()
                order = node.kernel.execution.submit(
                    SubmitOrder("TickEmaCross", account.iid, "", OrderSide.BUY, account.qty, now, now, OrderType.LIMIT, account.price)
                )
                await until(lambda: order.status not in (OrderStatus.SUBMITTED, OrderStatus.UNKNOWN), timeout=30)  # noqa: B023
                if order.status is not OrderStatus.DENIED:
                    break
                await asyncio.sleep(0.5)
            assert order.status is OrderStatus.ACCEPTED, order.reason
            assert abs(node.venue.api.venue_clock.offset + 45.0) < 5.0
        finally:
            node.stop("test done")
            ended = await asyncio.gather(task, return_exceptions=True)
    assert not isinstance(ended[0], BaseException), ended[0]


@pytest.mark.parametrize("name", ["binance", "okx"])
async def test_a_daemon_whose_clock_is_minutes_off_the_venues_stops_naming_the_clock_and_leaves_nothing(
    name: str, tmp_path: Path
) -> None:
    """The venue's clock 150 s ahead, more than the MAX_OFFSET_S the daemon trades on (it stamps events, ages orders and
    runs timers on this machine's clock): ClockRefused, exit 2, naming the offset and NTP; nothing of the run is left."""
    account = ACCOUNTS[name]
    run = tmp_path / "run"
    run.mkdir()
    async with account.served(tmp_path / "venue", []) as (emulator, data):
        emulator.venue_time = lambda: time.time() + 150.0
        config = parse_live_config(_paths(data, run), "<test>")
        node = LiveNode(config, ApiKeys.from_env(config.live, account.env()), handle_signals=False)
        with pytest.raises(ClockRefused, match=r"this machine's clock is 1[45]\d\.\d+ s behind .*'s time") as info:
            await asyncio.wait_for(node.run(), 60)
        assert not emulator.orders
    assert f"more than the {MAX_OFFSET_S:g} s" in str(info.value) and "NTP" in str(info.value)
    assert next(c for cls, c in EXIT_CODES if isinstance(info.value, cls)) == 2
    assert _tree(run) == {}


async def test_an_okx_login_refused_for_its_timestamp_measures_okxs_clock_and_logs_in_again(tmp_path: Path) -> None:
    """OKX answers a reconnecting private stream's login 60006 ("Timestamp request expired"): the daemon stopped
    ('fatal connection error', exit 1). The stream now reads OKX's time, reconnects and logs in again; the daemon runs
    on. Refused so after every one of the RESYNCS measures, it stops with ClockRefused (exit 2), naming the clock."""
    account = ACCOUNTS["okx"]
    async with account.served(tmp_path, []) as (emulator, data):
        config = parse_live_config(data, "<test>")
        node = LiveNode(config, ApiKeys.from_env(config.live, account.env()), handle_signals=False)
        task = asyncio.create_task(node.run())
        try:
            await until(lambda: task.done() or node.running.is_set(), timeout=60)
            assert not task.done()
            stream = node.stream
            opened = stream.connections
            emulator.login_errors.append("60006")
            await emulator.drop_sessions()
            await until(lambda: task.done() or (stream.connections >= opened + 2 and stream.subscribed.is_set()), timeout=60)
            assert not task.done() and emulator.login_errors == []
            assert ("GET", "/api/v5/public/time", "") in emulator.requests
            emulator.login_errors.extend(["60004"] + ["60006"] * RESYNCS)
            await emulator.drop_sessions()
            with pytest.raises(ClockRefused, match="okx-private: the venue refused this machine's clock: .*60006") as info:
                await asyncio.wait_for(task, 60)
        finally:
            if not task.done():
                node.stop("test done")
                await asyncio.gather(task, return_exceptions=True)
    assert f"after {RESYNCS} measures" in str(info.value)
    assert next(c for cls, c in EXIT_CODES if isinstance(info.value, cls)) == 2


async def test_a_bybit_auth_refused_for_its_expires_measures_bybits_clock_and_logs_in_again(tmp_path: Path) -> None:
    """This machine's clock steps 30 s back while the daemon runs (an NTP step; a loop stalled over 10 s between the
    auth's signing and Bybit's reading of it alike): the reconnecting private stream's ``auth``, its ``expires`` 10 s
    ahead of this machine's clock, has passed on Bybit's, which answers "Params Error". That was taken for a refused key:
    the daemon stopped, exit 2, blaming the key. The stream now reads Bybit's time, reconnects and logs in again; the
    daemon runs on. Refused so after every one of the RESYNCS measures, it stops with ClockRefused (exit 2) naming the
    clock, never the key."""
    account = ACCOUNTS["bybit"]
    async with account.served(tmp_path, []) as (emulator, data):
        config = parse_live_config(data, "<test>")
        node = LiveNode(config, ApiKeys.from_env(config.live, account.env()), handle_signals=False)
        task = asyncio.create_task(node.run())
        try:
            await until(lambda: task.done() or node.running.is_set(), timeout=60)
            assert not task.done(), task.exception()
            await until(lambda: task.done() or node._startup_task.done(), timeout=60)  # its REST reads made
            stream, clock = node.stream, node.venue.api.venue_clock
            opened = stream.connections
            emulator.venue_time = lambda: time.time() + 30.0
            await emulator.drop_sessions()
            await until(lambda: task.done() or (stream.connections >= opened + 2 and stream.subscribed.is_set()), timeout=60)
            assert not task.done(), task.exception()
            assert ("GET", "/v5/market/time", "") in emulator.requests and abs(clock.offset + 30.0) < 5.0
            emulator.auth_errors.extend(["Params Error"] * (RESYNCS + 1))
            await emulator.drop_sessions()
            with pytest.raises(ClockRefused, match="bybit-private: the venue refused this machine's clock: .*Params Error") as info:
                await asyncio.wait_for(task, 60)
        finally:
            if not task.done():
                node.stop("test done")
                await asyncio.gather(task, return_exceptions=True)
    assert f"after {RESYNCS} measures" in str(info.value) and "api_key" not in str(info.value).lower()
    assert next(c for cls, c in EXIT_CODES if isinstance(info.value, cls)) == 2


async def test_a_request_that_reaches_binance_after_a_stall_longer_than_its_recvwindow_is_sent_again_and_placed() -> None:
    """The event loop stalls 6 s between a limit buy's signing and Binance's reading of it (a loaded machine: here the
    emulator's first read of its clock blocks the loop), past the request's 5 s recvWindow: -1021. The order was
    rejected (a test on a loaded CI machine failed so); it is now sent again after a measure of Binance's clock, which
    finds it in step, and placed."""
    stalled: list[float] = []

    def venue_time() -> float:
        if not stalled:
            stalled.append(time.time())
            time.sleep(6.0)  # the stall itself: the loop blocked, as on a loaded machine
        return time.time()

    async with harness(request_timeout=30.0) as h:  # the client outwaits the stall: only the venue's window is met
        h.emulator.venue_time = venue_time
        order = h.submit(OrderSide.BUY, 0.01, 59_000.0)
        # UNKNOWN meanwhile: the engine's submit timeout passed during the stall; the answer or a query settles it
        await until(lambda: order.status in (OrderStatus.ACCEPTED, OrderStatus.REJECTED), timeout=60)
        assert stalled and order.status is OrderStatus.ACCEPTED, (order.status, order.reason)
        await h.venue.drain()
    # a request refused on its signature's timestamp is not recorded: the time read, then the POST that was placed
    sent = [(m, p) for m, p, c in h.emulator.requests if (m, c) == ("POST", order.client_order_id) or p == "/api/v3/time"]
    assert sent == [("GET", "/api/v3/time"), ("POST", "/api/v3/order")]
    assert abs(h.venue.api.venue_clock.offset) < 1.0


async def test_a_binance_subscription_refused_for_its_timestamp_after_ntp_set_the_clock_right_measures_binances_clock_again(
    tmp_path: Path,
) -> None:
    """The daemon started 45 s behind Binance and stamps on the offset it measured; NTP then sets this machine's clock
    right (as the WARNING advises), and the user stream reconnects before any REST request: its subscription, stamped
    45 s ahead, is refused -1021 ("... 1000ms ahead of the server's time."). The daemon stopped ('fatal connection
    error', exit 1); the stream now measures Binance's clock and subscribes again, the daemon running on."""
    account = ACCOUNTS["binance"]
    async with account.served(tmp_path, []) as (emulator, data):
        emulator.venue_time = lambda: time.time() + 45.0
        config = parse_live_config(data, "<test>")
        node = LiveNode(config, ApiKeys.from_env(config.live, account.env()), handle_signals=False)
        task = asyncio.create_task(node.run())
        try:
            await until(lambda: task.done() or node.running.is_set(), timeout=60)
            assert not task.done(), task.exception()
            await until(lambda: task.done() or node._startup_task.done(), timeout=60)  # its REST reads made
            clock, stream = node.venue.api.venue_clock, node.stream
            assert abs(clock.offset + 45.0) < 5.0
            emulator.venue_time = time.time  # this machine's clock stepped 45 s forward: right now
            opened = stream.connections
            await emulator.drop_sessions()
            await until(lambda: task.done() or (stream.connections >= opened + 2 and stream.subscribed.is_set()), timeout=60)
            assert not task.done(), task.exception()
            assert abs(clock.offset) < 5.0
        finally:
            if not task.done():
                node.stop("test done")
            ended = await asyncio.gather(task, return_exceptions=True)
    assert not isinstance(ended[0], BaseException), ended[0]
