"""Books that freeze: the real USD-M capture streams ``btcusdt@depth@0ms``; a config expecting another speed.

* ``tradebus replay`` of that capture with the default depth speed (100ms) stops with an error
  naming the streams seen and expected (exit 3) instead of trading on a book frozen at its snapshot;
* a paper daemon against a local server serving the capture, configured for 100ms, gets no depth
  update: the book-liveness rule marks the book frozen, orders are denied (``book unsynced: ...``)
  and the book is resynced from REST (``BookResynced``), and stays denied while no update comes;
* with ``depth_speed: 0ms`` the same run and replay keep the book in sync and never freeze it.
"""

from __future__ import annotations

import gzip
import json
import time
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
from tradebus.engine.messages import BookResynced, OrderDenied, OrderSide, Quote, SubmitOrder, Trade
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


async def run_usdm(
    depth_speed: str | None, done_when: str, stall_after_trade: str | None = None
) -> tuple[PaperNode, list[Any], list[str]]:
    """Paper daemon against the USD-M capture served at 8x its pace; book_max_idle 0.5 s (4 s of recording).

    ``stall_after_trade``: the handling of that trade (its id) blocks the event loop for 1 s, twice
    book_max_idle (a strategy's slow callback, a pause of the process): the frames sent meanwhile,
    and those the server sends late in a burst once it runs again, are read after it.
    """
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

        def stall(trade: Trade) -> None:
            if trade.trade_id == stall_after_trade:
                time.sleep(1.0)  # the fault itself: the loop can run nothing meanwhile

        kernel.bus.subscribe(Trade, stall)

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


def usdm_kind(raw: str) -> str:
    """``depth``, ``activity`` (a trade or bookTicker frame) or ``other`` (markPrice, the REST snapshot)."""
    if '"stream":"btcusdt@depth@0ms"' in raw:
        return "depth"
    return "activity" if '"stream":"btcusdt@trade"' in raw or '"stream":"btcusdt@bookTicker"' in raw else "other"


def replay_stalled_usdm(tmp_path: Path, stall_ns: int, cut_depth: bool) -> tuple[Playback, int, list[Any]]:
    """The USD-M capture as read by a reader stalled ``stall_ns`` halfway: after a trade that follows
    a depth frame and precedes another trade, every later frame is received ``stall_ns`` later
    (``cut_depth``: and the depth frames after it never come). Replayed with ``book_max_idle`` 0.5 s;
    returns the playback, the stalled line's index and the first trade or quote handled on a frozen book."""
    kinds = [usdm_kind(raw) for _, raw in USDM_LINES]
    at = next(i for i in range(len(kinds) // 2, len(kinds) - 1)
              if kinds[i - 1] == "depth" and kinds[i] == kinds[i + 1] == "activity")
    path = tmp_path / "stalled.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for i, (recv_ns, raw) in enumerate(USDM_LINES):
            if i > at and not (cut_depth and kinds[i] == "depth"):
                f.write(f"{recv_ns + stall_ns} {raw}\n")
            elif i <= at:
                f.write(f"{recv_ns} {raw}\n")
    playback = Playback(config_of(usdm_config(None, None, depth_speed="0ms", book_max_idle=0.5)))
    first_frozen: list[Any] = []

    def on_activity(msg: Trade | Quote) -> None:
        if not first_frozen and playback.guard.liveness.freezes:
            first_frozen.append(msg)

    playback.kernel.bus.subscribe(Trade, on_activity)
    playback.kernel.bus.subscribe(Quote, on_activity)
    playback.run(path)
    return playback, at, first_frozen


def usdm_venue_ns(raw: str) -> int:
    """The venue time a trade or bookTicker frame carries (its transaction time ``T``), ns."""
    return int(json.loads(raw)["data"]["T"]) * 1_000_000


@pytest.mark.usefixtures("_loguru_to_current_stderr")
def test_a_reader_stalled_longer_than_book_max_idle_does_not_freeze_a_book_whose_updates_flow(
    tmp_path: Path,
) -> None:
    """Seen under load: the event loop stalled for more than book_max_idle after a trade, the next frame
    read was a trade (the depth update sent after it waiting behind it), and the book was declared frozen
    by 2 s of receive time between two trades the venue printed milliseconds apart: resynced, orders denied."""
    playback, at, frozen = replay_stalled_usdm(tmp_path, 2_000_000_000, cut_depth=False)
    assert playback.guard.liveness.freezes == {} and frozen == []
    assert playback.guard.block_reason(USDM_IID) is None
    # guards the setup: the stall is 4x book_max_idle, between two trades printed within it
    assert usdm_venue_ns(USDM_LINES[at + 1][1]) - usdm_venue_ns(USDM_LINES[at][1]) < 500_000_000


@pytest.mark.usefixtures("_loguru_to_current_stderr")
def test_a_stalled_reader_of_a_frozen_book_freezes_it_when_the_venue_printed_book_max_idle_of_trades(
    tmp_path: Path,
) -> None:
    """The same stall with the depth frames after it cut: the book freezes at the first trade or quote the
    venue printed 0.5 s (its own clock, ``T``) after the first one since the last depth frame, the same
    message as without the stall (on receive times alone, that one freezes it 41 ms of receive time earlier,
    the two frames' latencies differing by that much)."""
    frozen_at = []
    for stall_ns in (2_000_000_000, 0):
        playback, at, frozen = replay_stalled_usdm(tmp_path, stall_ns, cut_depth=True)
        assert playback.guard.liveness.freezes == {USDM_IID: 1}
        frozen_at.append((frozen[0].ts_event, frozen[0].ts_init - stall_ns))
    start_ns = usdm_venue_ns(USDM_LINES[at][1])
    expected = next((usdm_venue_ns(raw), recv_ns) for recv_ns, raw in USDM_LINES[at:]
                    if usdm_kind(raw) == "activity" and usdm_venue_ns(raw) - start_ns >= 500_000_000)
    assert frozen_at == [expected, expected]


async def test_paper_daemon_whose_loop_stalls_twice_book_max_idle_between_two_trades_keeps_the_book_in_sync() -> None:
    """The flaky run's cause, made certain: the loop stalls 1 s (book_max_idle 0.5 s) while a trade is
    handled whose next frame is a trade, printed milliseconds later; its receive time is 1 s after the
    stalled one's, the depth frames after it not read yet. The book froze, was resynced, orders denied."""
    kinds = [usdm_kind(raw) for _, raw in USDM_FRAMES]
    at = next(i for i in range(len(kinds) // 2, len(kinds) - 1)
              if '"stream":"btcusdt@trade"' in USDM_FRAMES[i][1] and kinds[i + 1] == "activity")
    stalled = str(json.loads(USDM_FRAMES[at][1])["data"]["t"])
    node, events, _ = await run_usdm("0ms", "replayed", stall_after_trade=stalled)
    assert [e for e in events if isinstance(e, BookResynced)] == []
    assert node.guard.liveness.freezes == {}
    assert node.router.counts["BookDelta"] > 1000


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
