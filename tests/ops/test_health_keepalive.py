"""``/health`` judges a feed by its market data, not by the venue's answers to its pings.

An OKX server that stops pushing data but answers every ``"ping"`` with ``"pong"`` (the
OKX emulator on 127.0.0.1 with a silence fault): the feed's frame age must grow from its last
data frame, or a stuck feed would look alive to the health check for as long as it answers.
"""

from __future__ import annotations

import asyncio

from tradebus.adapters.common.local_server import Fault, FaultKind, LocalVenueServer
from tradebus.adapters.okx.client import okx_keepalive
from tradebus.adapters.okx.emulator import OkxProtocol
from tradebus.node.daemon import PaperNode
from tradebus.ops.health import health_report

from live.node_testdata import OKX_INSTRUMENT, config_of, okx_frames, stream_config

OKX_IID = "BTC-USDT.OKX"


class _PingingNode(PaperNode):
    """A paper daemon whose OKX client pings after 0.1 s of silence (25 s by default)."""

    def _feeds_built(self) -> None:
        client = self.feeds[0].client
        assert client is not None
        client.policy.keepalive = okx_keepalive(0.1)


async def test_a_feed_silent_but_answering_pings_is_judged_silent_from_its_last_data_frame() -> None:
    frames = okx_frames()
    faults = [Fault(FaultKind.SILENCE, at=300, seconds=float("inf"))]
    async with LocalVenueServer(OkxProtocol(frames), frames, faults, lifetime=60.0) as srv:
        # stale_after far away: the connection is kept, only the pongs come
        # a book subscribed: a feed of trades alone is judged by its connection (a quiet market)
        data = stream_config(OKX_INSTRUMENT, OKX_IID, "okx", "spot", ["books", "trades"], ws_url=srv.ws_url,
                             stale_after=600.0)
        node = _PingingNode(config_of(data), handle_signals=False)
        task = asyncio.create_task(node.run())
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 30
            while loop.time() < deadline and not (srv.sessions and srv.sessions[0].received.count("ping") >= 20):
                await asyncio.sleep(0.05)
            client = node.feeds[0].client
            assert client is not None and srv.sessions[0].received.count("ping") >= 20
            last_data = client.last_data_ns()
            assert client.last_frame_ns - last_data >= 1_000_000_000  # pongs came for a second and more after the data
            later = last_data + 61_000_000_000
            ok, report = health_report(node, {}, 60.0, clock_ns=lambda: later)
        finally:
            node.stop("test done")
            await asyncio.wait_for(task, 20)
    assert not ok
    assert f"feed {node.feeds[0].name} silent for 61.0 s (> 60 s)" in report["problems"], report
