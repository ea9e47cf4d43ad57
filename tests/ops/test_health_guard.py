"""``/health`` agrees with the market guard: an instrument whose orders the guard denies is a problem.

A book can be in sync by its sequence ids and still frozen (the daemon subscribed a depth speed
the server does not send: trades flow, the book never changes), and a feed can be stale (the
daemon's watchdog) well before ``health_max_age``: either way every order on the instrument is
denied, so ``/health`` must not answer 200 with no problem.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from tradebus.adapters.binance.emulator import BinanceProtocol
from tradebus.adapters.common.local_server import LocalVenueServer
from tradebus.engine.messages import BookResynced, FeedStale
from tradebus.node.daemon import PaperNode
from tradebus.ops.health import health_report

from live.node_testdata import IID, SPOT_FRAMES, SPOT_SNAPSHOT, USDM_IID, binance_config, config_of, usdm_config

from .conftest import USDM_FRAMES, USDM_SNAPSHOT


async def _health_once(node: PaperNode, iid: str, ready: Callable[[], bool], timeout: float) -> tuple[str | None, bool, dict[str, Any]]:
    """Run ``node`` until ``ready()`` (at most ``timeout`` s); the guard's reason to deny orders on ``iid``,
    then ``/health``'s answer (ok, report), both read then."""
    task = asyncio.create_task(node.run())
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline and not ready():
            await asyncio.sleep(0.02)
        blocked = node.guard.block_reason(iid)
        ok, report = health_report(node, {}, 60.0)
    finally:
        node.stop("test done")
        await asyncio.wait_for(task, 20)
    return blocked, ok, report


async def test_health_is_503_while_the_guard_denies_orders_on_a_frozen_book() -> None:
    proto = BinanceProtocol(USDM_SNAPSHOT, futures=True)
    async with LocalVenueServer(proto, USDM_FRAMES, speed=8.0, lifetime=60.0) as srv:
        # depth@100ms subscribed, the capture sends depth@0ms: the book is loaded once and never changes
        data = usdm_config(srv.ws_url, srv.http_url, book_max_idle=0.5)
        node = PaperNode(config_of(data), handle_signals=False)
        resynced: list[Any] = []
        node.kernel.bus.subscribe(BookResynced, resynced.append)
        blocked, ok, report = await _health_once(node, USDM_IID, lambda: bool(resynced) and node.running.is_set(), 40)
    assert resynced, "the frozen book must be resynced"
    assert blocked is not None and blocked.startswith("book unsynced: book frozen")
    assert not ok, report
    assert report["orders_blocked"] == {USDM_IID: blocked}
    assert f"orders on {USDM_IID} denied: {blocked.removeprefix('book unsynced: ')}" in report["problems"]


async def test_health_is_503_while_the_guard_denies_orders_on_a_stale_feed_younger_than_health_max_age() -> None:
    frames = [f for f in SPOT_FRAMES if '@trade"' in f[1]][:20]
    async with LocalVenueServer(BinanceProtocol(SPOT_SNAPSHOT), frames, lifetime=60.0) as srv:
        # the 20 trades, then silence: stale after 0.5 s, while /health allows 60 s without a frame
        # (quotes subscribed too: a feed of trades alone is judged by its connection, which stays alive)
        data = binance_config(srv.ws_url, srv.http_url, ["trade", "bookTicker"], stale_after=0.5)
        data["warm_up"] = False
        node = PaperNode(config_of(data), handle_signals=False)
        stale: list[Any] = []
        node.kernel.bus.subscribe(FeedStale, stale.append)
        blocked, ok, report = await _health_once(node, IID, lambda: bool(stale) and node.guard.stale(IID), 30)
    assert blocked is not None and blocked.startswith("feed stale: binance-spot delivered nothing for")
    assert not ok, report
    assert report["orders_blocked"] == {IID: blocked}
    assert f"orders on {IID} denied: {blocked}" in report["problems"]
    age = report["feeds"]["binance-spot"]["last_frame_age_seconds"]
    assert age is not None and age < 60.0  # the frame-age check alone would have passed
