"""The kline interval of a paper feed: ``kline_<interval>`` channels, served on 127.0.0.1.

No capture holds a Binance ``kline_1h`` frame, so the hourly frames are crafted from the
real SUSHIUSDT ``kline_1m`` frames of the cryptofeed USD-M recording (``tests/fixtures/binance``)
in Binance's documented format: stream ``sushiusdt@kline_1h``, ``"i":"1h"``, the candle's
``t``/``T`` those of the hour 22:00-22:59:59.999 UTC, and the last frame (the real one
closing its minute, ``"x":true``) sent at the hour's end (``E`` = ``T + 1``). The server
sends both the real minute frames and the crafted hourly ones, each only to a connection
that subscribed its stream.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from pydantic import ValidationError

from tradebus.adapters.binance.emulator import BinanceProtocol
from tradebus.adapters.common.feed import FeedConfig
from tradebus.adapters.common.local_server import LocalVenueServer
from tradebus.engine.messages import Bar
from tradebus.node.feeds import build_feeds
from tradebus.errors import ConfigError
from tradebus.node.daemon import PaperNode

from adapters.binance_testdata import CF_USDM, cryptofeed_frames
from live.node_testdata import SUSHI_IID, config_of, sushi_kline_config

IID = SUSHI_IID
HOUR_START_MS = 1626991200000  # 2021-07-22 22:00:00 UTC, the hour of the recording
HOUR_END_MS = HOUR_START_MS + 3_600_000


def _minute_frames() -> list[tuple[int, str]]:
    """The real SUSHIUSDT kline_1m frames up to the one closing the recording's first minute."""
    frames = []
    for recv_ns, raw in cryptofeed_frames(CF_USDM):
        if raw.startswith('{"stream":"sushiusdt@kline_1m"'):
            frames.append((recv_ns, raw))
            if '"x":true' in raw:
                break
    return frames


def _hourly(frames: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """The minute frames turned into frames of the 22:00 hourly candle (see the module docstring)."""
    out = []
    for recv_ns, raw in frames:
        msg = json.loads(raw)
        msg["stream"] = "sushiusdt@kline_1h"
        k = msg["data"]["k"]
        k.update({"i": "1h", "t": HOUR_START_MS, "T": HOUR_END_MS - 1})
        if k["x"]:
            msg["data"]["E"] = HOUR_END_MS
        out.append((recv_ns, json.dumps(msg, separators=(",", ":"))))
    return out


MINUTES = _minute_frames()
HOURS = _hourly(MINUTES)


def _config(feed: dict[str, Any]) -> dict[str, Any]:
    return sushi_kline_config(**feed)


async def test_a_kline_1h_feed_delivers_the_hourly_bar_stamped_at_its_close() -> None:
    """A feed could only subscribe kline_1m: ``kline_interval: 1h`` was refused as an unknown key."""
    frames = sorted(MINUTES + HOURS)
    async with LocalVenueServer(BinanceProtocol(futures=True), frames, lifetime=120.0) as srv:
        feed = {"ws_url": srv.ws_url, "subscriptions": {IID: ["kline_1h"]}, "backoff": {"base": 0.05, "cap": 0.2}}
        node = PaperNode(config_of(_config(feed)), handle_signals=False)
        bars: list[Bar] = []
        task = asyncio.create_task(node.run())
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 30
            while loop.time() < deadline and not (node.feeds and node.feeds[0].client.frames == len(HOURS)):
                await asyncio.sleep(0.02)
            client = node.feeds[0].client
            assert client is not None and client.frames == len(HOURS)  # the hourly frames, none of the minute ones
            assert client.connect_url().endswith("/stream?streams=sushiusdt@kline_1h")
            last = node.kernel.cache.bar(IID)
            if last is not None:
                bars.append(last)
        finally:
            node.stop("test done")
            await asyncio.wait_for(task, 20)
    closed = json.loads(HOURS[-1][1])["data"]["k"]
    assert node.summary.counts["bars"] == 1
    assert len(bars) == 1 and bars[0].instrument_id == IID
    assert bars[0].ts_event == HOUR_END_MS * 1_000_000  # the hour's close, as a catalog bars_1h bar is stamped
    assert (bars[0].open, bars[0].high, bars[0].low, bars[0].close, bars[0].volume) == tuple(
        float(closed[f]) for f in "ohlcv"
    )


@pytest.mark.parametrize(
    ("market", "channel", "stream"),
    [("usdm", "kline", "kline_1m"), ("usdm", "kline_1M", "kline_1M"), ("spot", "kline_1s", "kline_1s")],
)
def test_a_kline_channel_subscribes_the_stream_of_its_interval(market: str, channel: str, stream: str) -> None:
    feed = {"market": market, "ws_url": "ws://127.0.0.1:9", "subscriptions": {IID: [channel]}}
    feeds = build_feeds(config_of(_config(feed)), lambda msg: None, live=True)
    assert feeds[0].client is not None
    assert feeds[0].client.connect_url() == f"ws://127.0.0.1:9/stream?streams=sushiusdt@{stream}"


@pytest.mark.parametrize(
    ("market", "channels", "needle"),
    [
        ("usdm", ["kline_1s"], "subscriptions.SUSHIUSDT.BINANCE_USDM: 'kline_1s' is not offered on binance usdm"),
        ("usdm", ["kline_2m"], "'kline_2m' is not offered on binance usdm; use kline_<interval> with one of"),
        ("usdm", ["kline_1m", "kline_1h"], "one bar stream per instrument"),
    ],
)
def test_a_kline_interval_the_venue_does_not_offer_is_a_config_error(market: str, channels: list[str], needle: str) -> None:
    with pytest.raises(ConfigError, match="feeds.0") as info:
        config_of(_config({"market": market, "subscriptions": {IID: channels}}))
    assert needle in str(info.value)


def test_kline_interval_as_a_feed_key_points_to_the_channel() -> None:
    with pytest.raises(ConfigError, match="kline_interval: unknown key") as info:
        config_of(_config({"kline_interval": "1h"}))
    assert "kline_1h" in str(info.value)


@pytest.mark.parametrize(
    ("venue", "market", "channels"),
    [("okx", "spot", ["trades", "candle1m", "candle1H"]), ("bybit", "linear", ["publicTrade", "kline.1", "kline.60"])],
)
def test_two_bar_streams_of_one_instrument_are_a_config_error(venue: str, market: str, channels: list[str]) -> None:
    """Minute and hourly candles of one instrument went to on_bar as one series, interleaved."""
    with pytest.raises(ValidationError, match=r"subscriptions\.X: one bar stream per instrument") as info:
        FeedConfig(venue=venue, market=market, subscriptions={"X": channels})
    # a multi-timeframe user is told where the higher timeframe comes from
    assert "build it in the strategy from its history window, README 'Several timeframes'" in str(info.value)


def test_bars_built_from_trades_beside_a_bar_stream_are_a_config_error() -> None:
    """On_bar got the feed's hourly klines and 1m bars built from trades, interleaved (a backtest refuses it)."""
    data = _config({"subscriptions": {IID: ["aggTrade", "kline_1h"]}})
    data["bars"] = {IID: {"mode": "time", "interval": "1m"}}
    with pytest.raises(ConfigError, match=rf"bars\.{IID}: {IID} already has a bar stream \(feeds\.0: 'kline_1h'\)"):
        config_of(data)
