"""A trades-only feed on a quiet market is not stale while its connection is alive; a dead one is.

A trade channel pushes only when the market trades: an instrument may print nothing for longer
than the feed's ``stale_after`` while the connection is healthy. The venue emulators on
127.0.0.1 play a quiet market (``SILENCE``: no data, every ping still answered) and a dead
connection (``HANG``: nothing read or sent, pings unanswered).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Any

import pytest

from tradebus.adapters.binance.emulator import BinanceProtocol
from tradebus.adapters.common.local_server import Fault, FaultKind, LocalVenueServer, VenueProtocol
from tradebus.adapters.okx.emulator import OkxProtocol
from tradebus.engine.messages import FeedStale, Trade
from tradebus.node.daemon import PaperNode
from tradebus.ops.health import health_report

from live.node_testdata import (
    IID,
    OKX_IID,
    OKX_INSTRUMENT,
    SPOT_FRAMES,
    SPOT_SNAPSHOT,
    binance_config,
    config_of,
    okx_frames,
)
from live.node_testdata import stream_config

STALE_AFTER = 1.0


def _binance(srv: LocalVenueServer) -> dict[str, Any]:
    data = binance_config(srv.ws_url, srv.http_url, ["trade"], stale_after=STALE_AFTER)
    data["warm_up"] = False
    return data


def _okx(srv: LocalVenueServer) -> dict[str, Any]:
    return stream_config(OKX_INSTRUMENT, OKX_IID, "okx", "spot", ["trades"], ws_url=srv.ws_url, stale_after=STALE_AFTER)


VENUES: dict[str, tuple[Callable[[], VenueProtocol], list[tuple[int, str]], str, str, Callable[..., dict[str, Any]]]] = {
    "binance": (lambda: BinanceProtocol(SPOT_SNAPSHOT), SPOT_FRAMES, "@trade", IID, _binance),
    "okx": (lambda: OkxProtocol(okx_frames()), okx_frames(), '"channel":"trades"', OKX_IID, _okx),
}


async def _until(done: Callable[[], bool], timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline and not done():
        await asyncio.sleep(0.02)
    assert done(), "condition not reached"


@pytest.mark.parametrize("venue", list(VENUES))
async def test_a_trades_only_feed_whose_market_goes_quiet_is_not_stale_while_its_connection_answers(venue: str) -> None:
    """The instrument prints 40 trades, then none for 4 x ``stale_after`` on a connection that answers every
    ping: the feed went stale every ``stale_after``, its orders were denied and its connection recycled."""
    protocol, frames, trade, iid, make = VENUES[venue]
    quiet = [Fault(FaultKind.SILENCE, at=40, match=trade, connection=n, seconds=math.inf) for n in range(8)]
    async with LocalVenueServer(protocol(), frames, quiet, lifetime=60.0) as srv:
        node = PaperNode(config_of(make(srv)), handle_signals=False)
        stale: list[FeedStale] = []
        trades: list[Trade] = []
        node.kernel.bus.subscribe(FeedStale, stale.append)
        node.kernel.bus.subscribe(Trade, trades.append)
        task = asyncio.create_task(node.run())
        try:
            await _until(lambda: node.running.is_set() and len(trades) >= 40, 60.0)
            client = node.feeds[0].client
            assert client is not None
            quiet_since = client.last_data_ns()
            await _until(lambda: time.time_ns() - quiet_since > 4 * STALE_AFTER * 1e9, 30.0)
            ok, report = health_report(node, {}, 2 * STALE_AFTER)
        finally:
            node.stop("test done")
            await asyncio.wait_for(task, 20)
    assert stale == []
    assert not node.guard.stale(iid)
    assert client.connections == 1
    assert ok, report["problems"]


async def test_a_trades_only_feed_whose_connection_dies_silently_goes_stale_and_reconnects() -> None:
    """The same feed, but the connection dies without a close (pings unanswered): it is stale after
    ``stale_after``, orders on it stop, it is recycled and the next connection's trades lift the block."""
    hang = [Fault(FaultKind.HANG, at=40, match="@trade")]
    async with LocalVenueServer(BinanceProtocol(SPOT_SNAPSHOT), SPOT_FRAMES, hang, lifetime=60.0) as srv:
        node = PaperNode(config_of(_binance(srv)), handle_signals=False)
        stale: list[FeedStale] = []
        trades: list[Trade] = []
        node.kernel.bus.subscribe(FeedStale, stale.append)
        node.kernel.bus.subscribe(Trade, trades.append)
        task = asyncio.create_task(node.run())
        try:
            await _until(lambda: bool(stale), 60.0)
            blocked = node.guard.stale(IID)
            await _until(lambda: len(trades) > 40 and not node.guard.stale(IID), 30.0)
        finally:
            node.stop("test done")
            await asyncio.wait_for(task, 20)
    client = node.feeds[0].client
    assert client is not None and client.connections >= 2
    assert blocked and stale[0].source == node.feeds[0].name
    assert stale[0].ts_event - stale[0].last_message_ns >= STALE_AFTER * 1e9


async def test_a_trades_only_feed_stale_over_a_dead_connection_allows_orders_once_a_new_connection_answers() -> None:
    """The connection dies without a close, the feed goes stale and reconnects; the new connection is healthy
    (it answers pings) but its market prints no trade: orders stayed denied "feed stale: ..." until the next
    trade, however long the quiet lasted, though the watchdog judged the feed live again by its connection."""
    faults = [
        Fault(FaultKind.HANG, at=40, match="@trade"),
        Fault(FaultKind.SILENCE, at=0, match="@trade", connection=1, seconds=math.inf),  # no trade on the new one
    ]
    async with LocalVenueServer(BinanceProtocol(SPOT_SNAPSHOT), SPOT_FRAMES, faults, lifetime=60.0) as srv:
        node = PaperNode(config_of(_binance(srv)), handle_signals=False)
        stale: list[FeedStale] = []
        trades: list[Trade] = []
        node.kernel.bus.subscribe(FeedStale, stale.append)
        node.kernel.bus.subscribe(Trade, trades.append)
        task = asyncio.create_task(node.run())
        try:
            await _until(lambda: bool(stale), 60.0)
            blocked = node.guard.block_reason(IID)
            client = node.feeds[0].client
            assert client is not None
            await _until(lambda: client.connections >= 2 and client.connected.is_set(), 30.0)
            await _until(lambda: node.guard.block_reason(IID) is None, 4 * STALE_AFTER)
            ok, report = health_report(node, {}, 2 * STALE_AFTER)
        finally:
            node.stop("test done")
            await asyncio.wait_for(task, 20)
    assert blocked is not None and blocked.startswith("feed stale: ")
    assert len(trades) == 40  # the block was lifted by the connection, not by a trade
    assert len(stale) == 1 and client.connections == 2
    assert ok, report["problems"]
