"""Books that freeze: the real USD-M capture streams ``btcusdt@depth@0ms``; a config expecting another speed.

* ``tradebus replay`` of that capture with the default depth speed (100ms) stops with an error
  naming the streams seen and expected (exit 3) instead of trading on a book frozen at its snapshot;
* a paper daemon against a local server serving the capture, configured for 100ms, gets no depth
  update: the book-liveness rule marks the book frozen, orders are denied (``book unsynced: ...``)
  and the book is resynced from REST (``BookResynced``), and stays denied while no update comes;
* with ``depth_speed: 0ms`` the same run and replay keep the book in sync and never freeze it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from loguru import logger
from typer.testing import CliRunner

from tradebus.adapters.binance.client import BinanceRouter
from tradebus.adapters.binance.config import BinanceConfig, BinanceMarket
from tradebus.adapters.binance.emulator import BinanceProtocol, split_capture
from tradebus.adapters.common.local_server import LocalVenueServer
from tradebus.adapters.common.recorder import iter_hftbacktest
from tradebus.cli import app
from tradebus.engine.messages import BookResynced, OrderDenied, OrderSide, SubmitOrder
from tradebus.node.daemon import PaperNode
from tradebus.node.playback import Playback, play

from .node_testdata import (
    BYBIT_IID,
    BYBIT_INSTRUMENT,
    OKX_IID,
    OKX_INSTRUMENT,
    USDM_CAPTURE,
    USDM_IID,
    bybit_linear_frames,
    config_of,
    okx_frames,
    run_node,
    stream_config,
    usdm_config,
)

USDM_LINES = list(iter_hftbacktest(USDM_CAPTURE))
USDM_FRAMES, USDM_SNAPSHOT = split_capture(USDM_LINES)
DEPTH_FRAMES = sum('"stream":"btcusdt@depth@0ms"' in raw for _, raw in USDM_FRAMES)


def test_capture_streams_depth_at_0ms() -> None:
    # guards the fixture: the tests below are meaningless without 0ms depth frames and a REST snapshot
    assert DEPTH_FRAMES > 1000 and USDM_SNAPSHOT is not None
    assert not any("@depth@100ms" in raw for _, raw in USDM_FRAMES)


@pytest.mark.usefixtures("_loguru_to_current_stderr")
def test_replay_of_a_0ms_recording_with_a_100ms_config_fails_loudly_naming_the_streams(tmp_path: Path) -> None:
    cfg = tmp_path / "usdm.yaml"
    cfg.write_text(yaml.safe_dump(usdm_config(None, None)), encoding="utf-8")
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["replay", str(USDM_CAPTURE), "--config", str(cfg), "--out", str(out)])
    assert res.exit_code == 3, res.output
    text = " ".join(res.output.split())
    assert "the recording's streams do not match the config" in text
    assert "'btcusdt@depth@0ms'" in text and "subscribes 'btcusdt@depth@100ms'" in text
    assert "usdm_btcusdt_20230404_head4000.gz" in text
    assert not out.exists()  # no outputs that look like a run


@pytest.mark.usefixtures("_loguru_to_current_stderr")
def test_replay_of_another_venues_recording_fails_instead_of_trading_on_nothing(tmp_path: Path) -> None:
    """An OKX recording under the USD-M config: every frame was skipped, and the run wrote zeros and exited 0."""
    cfg = tmp_path / "usdm.yaml"
    cfg.write_text(yaml.safe_dump(usdm_config(None, None)), encoding="utf-8")
    okx = Path(__file__).resolve().parents[1] / "fixtures" / "okx" / "okx_v5_public_2022-05-13.jsonl.gz"
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["replay", str(okx), "--config", str(cfg), "--out", str(out)])
    assert res.exit_code == 3, res.output
    text = " ".join(res.output.split())
    assert "okx_v5_public_2022-05-13.jsonl.gz: nothing to replay: its frames are on {'okx-public': 410}, none on " \
           "the config's feeds (binance-usdm)" in text
    assert not out.exists()


@pytest.mark.usefixtures("_loguru_to_current_stderr")
def test_replay_with_the_recorded_depth_speed_keeps_the_book_in_sync(tmp_path: Path) -> None:
    playback = play(USDM_CAPTURE, config_of(usdm_config(None, None, depth_speed="0ms")))
    assert playback.stats.rejected == {}
    # a stream of a kind the config does not subscribe at all is skipped, not an error
    assert playback.stats.unexpected_streams == {"binance-usdm": {"btcusdt@markPrice@1s": 35}}
    assert playback.guard.liveness.freezes == {}
    assert playback.guard.block_reason(USDM_IID) is None
    book = playback.kernel.cache.book(USDM_IID)
    assert book.last_seq > 2710246765483  # moved past the REST snapshot's lastUpdateId
    assert playback.router.counts["BookDelta"] > 1000
    cfg = tmp_path / "usdm.yaml"
    cfg.write_text(yaml.safe_dump(usdm_config(None, None, depth_speed="0ms")), encoding="utf-8")
    res = CliRunner().invoke(app, ["replay", str(USDM_CAPTURE), "--config", str(cfg), "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output


def test_live_feed_counts_frames_of_an_unsubscribed_depth_speed_and_warns_once() -> None:
    warnings: list[str] = []
    sink_id = logger.add(lambda m: warnings.append(str(m)), level="WARNING", format="{message}")
    try:
        config = BinanceConfig(market=BinanceMarket.USDM, symbols=["BTCUSDT"], channels=["trade", "bookTicker", "depth"])
        feed = BinanceRouter(config, lambda m: None)
        for recv_ns, raw in USDM_FRAMES:
            feed.on_frame(raw, recv_ns)
    finally:
        logger.remove(sink_id)
    assert feed.unexpected_streams == {"btcusdt@depth@0ms": DEPTH_FRAMES, "btcusdt@markPrice@1s": 35}
    about = [w for w in warnings if "btcusdt@depth@0ms" in w]
    assert len(about) == 1, about  # at its first frame, not one per frame nor per 10 s of the capture
    assert "instead of the subscribed 'btcusdt@depth@100ms'" in about[0]


@pytest.mark.usefixtures("_loguru_to_current_stderr")
def test_replay_of_a_subset_of_the_streams_names_each_skipped_stream_once_and_counts_them_at_the_end(
    tmp_path: Path,
) -> None:
    """A trade-only config on the capture (bookTicker, depth and markPrice frames too): it printed one
    "skipped so far" WARNING per stream and 10 s of recording, 12 for these 35 s (about 150 for 8.5 minutes)."""
    data = usdm_config(None, None)
    data["feeds"][0]["subscriptions"] = {USDM_IID: ["trade"]}
    del data["feeds"][0]["snapshot_fetcher"]
    cfg = tmp_path / "trades.yaml"
    cfg.write_text(yaml.safe_dump(data), encoding="utf-8")
    res = CliRunner().invoke(app, ["replay", str(USDM_CAPTURE), "--config", str(cfg), "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    skipped = {s: sum(f'"stream":"{s}"' in raw for _, raw in USDM_FRAMES)
               for s in ("btcusdt@bookTicker", "btcusdt@depth@0ms", "btcusdt@markPrice@1s")}
    assert min(skipped.values()) > 30  # guards the fixture: every stream has frames over the capture
    lines = [line for line in res.output.splitlines() if "unsubscribed stream" in line]
    assert [line.partition("WARNING ")[2] for line in lines] == [
        *(f"binance usdm: skipping the frames of unsubscribed stream {s!r} (subscribed: btcusdt@trade); "
          "their count is logged at the end of the run" for s in skipped),
        "binance usdm: skipped frames of unsubscribed streams: "
        + ", ".join(f"{s!r} {n:,}" for s, n in skipped.items()),
    ]
    stats = json.loads((tmp_path / "o" / "playback.json").read_text(encoding="utf-8"))
    assert stats["unexpected_streams"] == {"binance-usdm": skipped}


async def run_usdm(depth_speed: str | None, done_when: str) -> tuple[PaperNode, list[Any], list[str]]:
    """Paper daemon against the USD-M capture served at 8x its pace; book_max_idle 0.5 s (4 s of recording)."""
    events: list[Any] = []
    probes: list[str] = []
    proto = BinanceProtocol(USDM_SNAPSHOT, futures=True)
    async with LocalVenueServer(proto, USDM_FRAMES, speed=8.0, lifetime=60.0) as srv:
        data = usdm_config(srv.ws_url, srv.http_url, depth_speed=depth_speed, book_max_idle=0.5)
        node = PaperNode(config_of(data), handle_signals=False)
        kernel = node.kernel
        for cls in (BookResynced, OrderDenied):
            kernel.bus.subscribe(cls, events.append)

        def probe(_: Any) -> None:
            # an order right after the book was resynced from a frozen state
            now = kernel.clock.now_ns()
            coid = f"probe-{len(probes) + 1}"
            probes.append(coid)
            kernel.submit(SubmitOrder("probe", USDM_IID, coid, OrderSide.BUY, 0.01, now, now, reason="probe"))

        kernel.bus.subscribe(BookResynced, probe)

        def done() -> bool:
            if done_when == "resynced":
                return any(isinstance(e, BookResynced) for e in events) and bool(probes)
            return srv.cursor >= len(USDM_FRAMES)

        await run_node(node, done, timeout=40.0)
    return node, events, probes


async def test_paper_daemon_with_the_wrong_depth_speed_marks_the_frozen_book_unsynced_denies_and_resyncs() -> None:
    node, events, probes = await run_usdm(None, "resynced")
    resynced = [e for e in events if isinstance(e, BookResynced)]
    assert resynced and resynced[0].instrument_id == USDM_IID
    assert resynced[0].reason.startswith(f"book frozen: trades/quotes of {USDM_IID}")
    denied = {e.client_order_id: e.reason for e in events if isinstance(e, OrderDenied)}
    # after the resync the book is loaded but still receives no update: orders stay denied
    assert denied[probes[0]].startswith(f"book unsynced: book frozen: trades/quotes of {USDM_IID}")
    assert node.guard.liveness.freezes[USDM_IID] >= 1
    feed = node.feeds[0]
    assert feed.feed.books["BTCUSDT"].resyncs >= 1  # type: ignore[attr-defined]
    assert node.summary.feeds["binance-usdm"]["connections"] == 1


async def test_paper_daemon_with_the_recorded_depth_speed_keeps_the_book_in_sync() -> None:
    node, events, probes = await run_usdm("0ms", "replayed")
    assert [e for e in events if isinstance(e, BookResynced)] == []
    assert not any(isinstance(e, OrderDenied) and e.reason.startswith("book unsynced") for e in events)
    assert node.guard.liveness.freezes == {}
    assert node.router.counts["BookDelta"] > 1000 and node.summary.feeds["binance-usdm"]["unexpected_streams"] == 0


@pytest.mark.parametrize("venue", ["okx", "bybit"])
def test_liveness_rule_freezes_okx_and_bybit_books_whose_updates_stop_while_trades_flow(venue: str) -> None:
    """The same venue-neutral rule on the stream-book venues: the real recordings with the book's
    updates cut after the first 20 while trades and tickers go on; the book freezes and is resynced."""

    if venue == "okx":
        iid, frames, conn = OKX_IID, okx_frames(), "okx-public:1"
        config = stream_config(OKX_INSTRUMENT, iid, "okx", "spot", ["trades", "tickers", "books"], book_max_idle=1.0)
        book_marker = '"channel":"books","instId":"BTC-USDT"'
    else:
        iid, frames, conn = BYBIT_IID, bybit_linear_frames(), "linear"
        channels = ["publicTrade", "tickers", "orderbook.200"]
        config = stream_config(BYBIT_INSTRUMENT, iid, "bybit", "linear", channels, book_max_idle=1.0)
        book_marker = '"topic":"orderbook.200.BTCUSDT"'
    for cut, expect_freeze in ((None, False), (20, True)):
        playback = Playback(config_of(config))
        playback.kernel.start()
        seen = 0
        for recv_ns, raw in frames:
            if book_marker in raw:
                seen += 1
                if cut is not None and seen > cut:
                    continue
            playback.feed_frame(recv_ns, conn, raw)
        freezes = playback.guard.liveness.freezes
        if not expect_freeze:
            assert freezes == {} and playback.guard.block_reason(iid) is None
            continue
        assert freezes == {iid: 1}
        reason = playback.guard.block_reason(iid)
        assert reason is not None and reason.startswith("book unsynced")
        assert playback.feeds[0].book_checks()[iid]() is False  # the book itself awaits a fresh snapshot
