"""``/health`` of a paper daemon whose only feed is a Binance kline stream, served on 127.0.0.1.

A kline frame becomes a :class:`~tradebus.engine.messages.Bar` only once its candle closes: a
``kline_1h`` feed delivers frames every few seconds and one message an hour. The frames are the
SUSHIUSDT ``kline_1m`` updates of the cryptofeed USD-M recording (``tests/fixtures/binance``),
the open ones only (``"x":false``): the candle never closes during the test.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tradebus.adapters.binance.emulator import BinanceProtocol
from tradebus.adapters.common.local_server import LocalVenueServer
from tradebus.node.daemon import PaperNode
from tradebus.ops.health import health_report

from adapters.binance_testdata import CF_USDM, cryptofeed_frames
from live.node_testdata import SUSHI_IID, config_of, sushi_kline_config

IID = SUSHI_IID
DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana" / "tradebus-daemon.json"
OPEN_KLINES = [f for f in cryptofeed_frames(CF_USDM) if f[1].startswith('{"stream":"sushiusdt@kline_1m"') and '"x":false' in f[1]]


def _config(srv: Any) -> dict[str, Any]:
    backoff = {"base": 0.05, "cap": 0.2, "min_delay": 0.01}
    data = sushi_kline_config(ws_url=srv.ws_url, rest_url=srv.http_url, backoff=backoff)
    data["ops"] = {"port": 0, "health_max_age": 60}
    return data


async def test_health_of_a_bar_only_feed_is_the_age_of_its_last_frame_not_of_its_last_bar() -> None:
    """A daemon on a kline feed answered 503 ("delivered no market data yet", then "silent for ... s")
    for most of each candle, though frames kept arriving: /health counted parsed messages only."""
    assert len(OPEN_KLINES) >= 10
    async with LocalVenueServer(BinanceProtocol(futures=True), OPEN_KLINES, lifetime=120.0) as srv:
        node = PaperNode(config_of(_config(srv)), handle_signals=False)
        task = asyncio.create_task(node.run())
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 30
            while loop.time() < deadline and not (node.feeds and node.feeds[0].client.frames == len(OPEN_KLINES)):
                await asyncio.sleep(0.02)
            client = node.feeds[0].client
            assert client is not None and client.frames == len(OPEN_KLINES)
            assert node.ops is not None and node.ops.server is not None
            async with httpx.AsyncClient(timeout=5.0) as http:
                resp = await http.get(f"http://127.0.0.1:{node.ops.server.port}/health")
                scrape = (await http.get(f"http://127.0.0.1:{node.ops.server.port}/metrics")).text
            assert resp.status_code == 200, resp.json()
            status = node.ops.status_text()
            # the same feed 61 s after its last frame: silent for longer than health_max_age
            later = client.last_frame_ns + 61_000_000_000
            stale_ok, stale = health_report(node, node.ops.metrics.last_recv_ns, 60.0, clock_ns=lambda: later)
        finally:
            node.stop("test done")
            await asyncio.wait_for(task, 20)
    assert node.router.messages == 0  # no candle closed: no message at all
    feed = resp.json()["feeds"][node.feeds[0].name]
    assert feed["connected"] is True and 0.0 <= feed["last_frame_age_seconds"] < 60.0
    assert feed["last_message_age_seconds"] is None
    assert re.search(r"^feeds: binance-usdm up \(last frame \d+\.\d+ s ago\)$", status, re.M), status
    gauges = {
        (s.name, s.labels.get("feed")): s.value
        for family in text_string_to_metric_families(scrape)
        for s in family.samples
        if s.name.startswith("tradebus_feed_last_")
    }
    assert 0.0 <= gauges[("tradebus_feed_last_frame_age_seconds", node.feeds[0].name)] < 60.0, gauges
    assert ("tradebus_feed_last_message_age_seconds", node.feeds[0].name) not in gauges
    assert not stale_ok
    assert stale["problems"] == [f"feed {node.feeds[0].name} silent for 61.0 s (> 60 s)"]


def test_the_dashboard_judges_feed_liveness_by_the_age_of_the_last_frame() -> None:
    """The liveness panel plotted the age of the last message, which climbs to the bar interval on a kline feed."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    live = [p for p in panels if any("last_frame_age" in t["expr"] for t in p.get("targets", []))]
    assert [p["title"] for p in live] == ["Last frame age"]
    assert not any("last_message_age" in t["expr"] for p in panels for t in p.get("targets", []))
