"""Backtest == paper: one recorded stream run as a playback and through the daemon gives the same trading."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import numpy as np
import pytest

from tradebus.adapters.binance.emulator import BinanceProtocol, split_capture
from tradebus.adapters.common.local_server import Fault, FaultKind, LocalVenueServer
from tradebus.adapters.common.recorder import FrameRecorder, iter_hftbacktest, read_frames
from tradebus.engine.messages import BookDelta, BookResynced, BookSnapshot, OrderDenied, Quote, Trade
from tradebus.node.playback import Playback, play
from tradebus.node.daemon import PaperNode

from .node_testdata import (
    BINANCE_INSTRUMENT,
    IID,
    OKX_IID,
    OKX_INSTRUMENT,
    SPOT_CAPTURE,
    SPOT_FRAMES,
    SPOT_QUOTES,
    SPOT_SNAPSHOT,
    SPOT_TRADE_IDS,
    USDM_CAPTURE,
    USDM_IID,
    USDM_INSTRUMENT,
    binance_config,
    binance_reference_book,
    config_of,
    fill_keys,
    okx_frames,
    order_keys,
    run_node,
    stream_config,
    usdm_config,
)


async def test_paper_daemon_and_playback_of_the_same_capture_give_identical_orders_and_fills(tmp_path: Path) -> None:
    # (a) the capture played back as a backtest (simulated clock at the recorded receive times)
    config = config_of(binance_config("ws://unused", "http://unused", ["trade", "bookTicker"]))
    backtest = play(SPOT_CAPTURE, config)
    # (b) the daemon (wall clock) connected to a local server replaying the same capture
    async with LocalVenueServer(BinanceProtocol(SPOT_SNAPSHOT), SPOT_FRAMES) as srv:
        data = binance_config(srv.ws_url, srv.http_url, ["trade", "bookTicker"], tmp=tmp_path, record=True)
        node = PaperNode(config_of(data), handle_signals=False)
        result = node.kernel.result
        await run_node(node, lambda: result.trades == len(SPOT_TRADE_IDS) and result.quotes == SPOT_QUOTES)
    assert result.trades == backtest.kernel.result.trades == len(SPOT_TRADE_IDS)
    assert result.quotes == backtest.kernel.result.quotes == SPOT_QUOTES
    assert len(backtest.kernel.result.fills) >= 15  # the strategy really trades on this capture
    assert fill_keys(result.fills) == fill_keys(backtest.kernel.result.fills)
    assert order_keys(result.orders) == order_keys(backtest.kernel.result.orders)
    # the daemon's own recording, played back, gives the same again
    replayed = play(tmp_path / "frames.jsonl.gz", node.config)
    assert fill_keys(replayed.kernel.result.fills) == fill_keys(result.fills)
    # receive times differ (wall clock vs recorded), so do the times the kernel stamps
    assert result.start_ns != backtest.kernel.result.start_ns


async def test_replay_of_a_recording_with_a_reconnect_denies_and_fills_what_the_daemon_did(tmp_path: Path) -> None:
    # the connection drops mid-stream: live, the book is unsynced from the drop until the REST
    # snapshot the next connection fetches, and orders on it are denied meanwhile
    drop = [Fault(FaultKind.DROP, at=200, match="@trade")]
    async with LocalVenueServer(BinanceProtocol(SPOT_SNAPSHOT), SPOT_FRAMES, drop, resume_overlap=60, lifetime=60.0) as srv:
        data = binance_config(srv.ws_url, srv.http_url, ["trade", "bookTicker", "depth"], tmp=tmp_path, record=True)
        node = PaperNode(config_of(data), handle_signals=False)
        live: list = []
        for cls in (BookResynced, OrderDenied):
            node.kernel.bus.subscribe(cls, live.append)
        result = node.kernel.result

        def done() -> bool:
            sync = node.feeds[0].feed.books["BTCUSDT"]  # type: ignore[attr-defined]
            return result.trades == len(SPOT_TRADE_IDS) and sync.synced and sync.resyncs == 1

        await run_node(node, done)
    assert node.summary.feeds["binance-spot"]["connections"] == 2
    assert any(isinstance(m, OrderDenied) and "book unsynced" in m.reason for m in live)
    replay = Playback(node.config)
    replayed: list = []
    for cls in (BookResynced, OrderDenied):
        replay.kernel.bus.subscribe(cls, replayed.append)
    replay.run(tmp_path / "frames.jsonl.gz")
    assert [(type(m), m.instrument_id) for m in replayed if isinstance(m, BookResynced)] == [(BookResynced, IID)]
    assert [(m.client_order_id, m.reason) for m in replayed if isinstance(m, OrderDenied)] == [
        (m.client_order_id, m.reason) for m in live if isinstance(m, OrderDenied)
    ]
    assert fill_keys(replay.kernel.result.fills) == fill_keys(result.fills)
    assert order_keys(replay.kernel.result.orders) == order_keys(result.orders)


class HeldSnapshots(BinanceProtocol):
    """The venue answers depth snapshot requests with 503 (the client retries) while ``hold`` is set."""

    hold = True

    def http(self, path: str, query: dict[str, list[str]]) -> tuple[int, str] | None:
        if path.endswith("/depth") and self.hold:
            return 503, '{"code":-1001,"msg":"Internal error; unable to process your request."}'
        return super().http(path, query)


def book_messages(messages: list) -> list[tuple]:
    """What a strategy saw of the book, in order: each message's type, receive time and content."""
    rows: list[tuple] = []
    for m in messages:
        if isinstance(m, BookDelta):
            rows.append(("delta", m.ts_init, m.last_seq))
        elif isinstance(m, BookSnapshot):
            rows.append(("snapshot", m.ts_init, m.last_seq))
        elif isinstance(m, Quote):
            rows.append(("quote", m.ts_init, m.bid_price, m.bid_size, m.ask_price, m.ask_size))
        elif isinstance(m, BookResynced):
            rows.append(("resynced", m.ts_event, m.ts_init))
    return rows


async def test_replay_of_a_drop_after_a_snapshot_answered_past_the_last_frame_keeps_the_book_the_daemon_kept(
    tmp_path: Path,
) -> None:
    # connection 1's snapshot is answered after its last frame, then the connection drops: the daemon's
    # book is unsynced from the drop until the snapshot fetched for connection 2, after 2's first frames
    protocol = HeldSnapshots(SPOT_SNAPSHOT)
    drop = [Fault(FaultKind.DROP, at=100, match="@trade")]
    node: PaperNode
    seen = {"trades": 0, "second": 0}

    async def handled_all_sent(srv: LocalVenueServer, resyncs: int) -> None:
        client = node.feeds[0].client
        sync = node.feeds[0].feed.books["BTCUSDT"]  # type: ignore[attr-defined]
        while client is None or client.frames < sum(s.sent for s in srv.sessions):
            await asyncio.sleep(0.005)
        protocol.hold = False
        while not (sync.synced and sync.resyncs == resyncs):
            await asyncio.sleep(0.005)
        protocol.hold = True

    async def gate(raw: str) -> None:
        if len(srv.sessions) == 1 and "@trade" in raw:
            seen["trades"] += 1
            if seen["trades"] == 101:  # the frame the DROP hits: connection 1 sent its last
                await handled_all_sent(srv, 0)
        elif len(srv.sessions) == 2:
            seen["second"] += 1
            if seen["second"] == 40:
                await handled_all_sent(srv, 1)

    async with LocalVenueServer(protocol, SPOT_FRAMES, drop, resume_overlap=60, lifetime=120.0, gate=gate) as srv:
        data = binance_config(srv.ws_url, srv.http_url, ["depth", "trade"], tmp=tmp_path, record=True)
        node = PaperNode(config_of(data), handle_signals=False)
        live: list = []
        for cls in (BookDelta, BookSnapshot, BookResynced, Quote):
            node.kernel.bus.subscribe(cls, live.append)
        result = node.kernel.result

        def done() -> bool:
            sync = node.feeds[0].feed.books["BTCUSDT"]  # type: ignore[attr-defined]
            return result.trades == len(SPOT_TRADE_IDS) and sync.synced and sync.resyncs == 1

        await run_node(node, done)
    recorded = [conn for _, conn, _ in read_frames(tmp_path / "frames.jsonl.gz")]
    runs = [conn for i, conn in enumerate(recorded) if i == 0 or conn != recorded[i - 1]]
    assert [conn.partition("@")[0] for conn in runs] == [
        "binance-spot:1", "rest:BTCUSDT", "binance-spot:2", "rest:BTCUSDT", "binance-spot:2"
    ]
    replay = Playback(node.config)
    replayed: list = []
    for cls in (BookDelta, BookSnapshot, BookResynced, Quote):
        replay.kernel.bus.subscribe(cls, replayed.append)
    replay.run(tmp_path / "frames.jsonl.gz")
    assert sum(isinstance(m, BookResynced) for m in live) == 1
    assert book_messages(replayed) == book_messages(live)
    assert fill_keys(replay.kernel.result.fills) == fill_keys(result.fills)
    assert order_keys(replay.kernel.result.orders) == order_keys(result.orders)
    # each snapshot's line names the connection it was fetched for
    assert runs[1::2] == ["rest:BTCUSDT@binance-spot:1", "rest:BTCUSDT@binance-spot:2"]


async def test_replay_of_an_alert_due_while_the_connection_is_down_denies_it_as_the_daemon_did(tmp_path: Path) -> None:
    # the daemon's book is out of sync from the moment its connection ends: an alert that fires before
    # the next connection's first frame and its snapshot is denied "book unsynced", in the replay too
    protocol = HeldSnapshots(SPOT_SNAPSHOT)
    protocol.hold = False
    drop = [Fault(FaultKind.DROP, at=200, match="@trade")]
    strategy = {
        "name": "tests.live.alert_strategy:AlertBuy",
        "instruments": [IID],
        "params": {"after_ms": 300, "at_trade": 200},  # connection 1's last trade
    }
    node: PaperNode
    seen = {"trades": 0}

    async def hold_the_next_connection_until_the_alert_fired(raw: str) -> None:
        if len(srv.sessions) == 1 and "@trade" in raw:
            seen["trades"] += 1
            if seen["trades"] == 100:  # connection 1's book in sync well before its end
                while not node.feeds[0].feed.books["BTCUSDT"].synced:  # type: ignore[attr-defined]
                    await asyncio.sleep(0.005)
            if seen["trades"] == 201:  # the frame the DROP hits: no snapshot until the alert fired
                protocol.hold = True
        elif len(srv.sessions) == 2:
            while not node.kernel.strategies[0].fired:  # type: ignore[attr-defined]
                await asyncio.sleep(0.005)
            protocol.hold = False

    async with LocalVenueServer(
        protocol, SPOT_FRAMES, drop, resume_overlap=60, lifetime=120.0, gate=hold_the_next_connection_until_the_alert_fired
    ) as srv:
        data = binance_config(srv.ws_url, srv.http_url, ["trade", "depth"], tmp=tmp_path, record=True, strategy=strategy)
        node = PaperNode(config_of(data), handle_signals=False)
        live: list = []
        for cls in (BookResynced, OrderDenied):
            node.kernel.bus.subscribe(cls, live.append)
        result = node.kernel.result

        def done() -> bool:
            sync = node.feeds[0].feed.books["BTCUSDT"]  # type: ignore[attr-defined]
            return result.trades == len(SPOT_TRADE_IDS) and sync.synced and sync.resyncs == 1

        await run_node(node, done)
    assert node.summary.feeds["binance-spot"]["connections"] == 2
    denied = [(m.client_order_id, m.reason) for m in live if isinstance(m, OrderDenied)]
    assert len(denied) == 1 and denied[0][1].startswith("book unsynced")
    replay = Playback(node.config)
    replayed: list = []
    for cls in (BookResynced, OrderDenied):
        replay.kernel.bus.subscribe(cls, replayed.append)
    replay.run(tmp_path / "frames.jsonl.gz")
    assert replay.kernel.strategies[0].fired == node.kernel.strategies[0].fired  # type: ignore[attr-defined]
    assert [(m.client_order_id, m.reason) for m in replayed if isinstance(m, OrderDenied)] == denied
    assert [(m.reason, m.ts_init) for m in replayed if isinstance(m, BookResynced)] == [
        (m.reason, m.ts_init) for m in live if isinstance(m, BookResynced)
    ]
    assert fill_keys(replay.kernel.result.fills) == fill_keys(result.fills)
    assert order_keys(replay.kernel.result.orders) == order_keys(result.orders)
    # the lost connection's end is a line of its own; the daemon's stop of the second keeps its books and is not one
    ends = [(conn, raw) for _, conn, raw in read_frames(tmp_path / "frames.jsonl.gz", ends=True) if conn.startswith("end:")]
    assert [conn for conn, _ in ends] == ["end:binance-spot:1"]


def test_replayed_frame_of_a_new_okx_connection_unsyncs_the_book_until_its_snapshot() -> None:
    playback = Playback(config_of(stream_config(OKX_INSTRUMENT, OKX_IID, "okx", "spot", ["books", "trades"])))
    deltas: list[BookDelta] = []
    playback.kernel.bus.subscribe(BookDelta, deltas.append)
    frames = okx_frames()
    books = [i for i, (_, raw) in enumerate(frames) if '"instId":"BTC-USDT"},"action":"update"' in raw]
    cut = books[len(books) // 2]
    for recv_ns, raw in frames[:cut]:
        playback.feed_frame(recv_ns, "okx-public:1", raw)
    assert playback.guard.block_reason(OKX_IID) is None
    applied = len(deltas)
    for recv_ns, raw in frames[cut:]:  # the next connection's updates, with no snapshot of it yet
        playback.feed_frame(recv_ns, "okx-public:2", raw)
    # live, the dropped connection left the book out of sync until the new one's snapshot
    assert len(deltas) == applied
    assert (playback.guard.block_reason(OKX_IID) or "").startswith("book unsynced")


@pytest.mark.parametrize("frames_first", [0, 40], ids=["snapshot-first", "frames-first"])
def test_replayed_reconnect_resyncs_the_binance_book_from_the_snapshot_fetched_for_it(frames_first: int) -> None:
    # live, the REST snapshot fetched on reconnecting may come before or after the new connection's first frames
    playback = Playback(config_of(binance_config(None, None, ["trade", "depth"])))
    resynced: list[BookResynced] = []
    playback.kernel.bus.subscribe(BookResynced, resynced.append)
    venue = BinanceProtocol(SPOT_SNAPSHOT)
    assert SPOT_SNAPSHOT is not None
    playback.feed_frame(SPOT_FRAMES[0][0], "rest:BTCUSDT", SPOT_SNAPSHOT)
    cut = 1500
    for recv_ns, raw in SPOT_FRAMES[:cut]:
        playback.feed_frame(recv_ns, "binance-spot:1", raw)
        venue.on_sent(raw)
    status, snapshot = venue.http("/api/v3/depth", {"symbol": ["BTCUSDT"]})  # type: ignore[misc]
    assert status == 200
    for recv_ns, raw in SPOT_FRAMES[cut : cut + frames_first]:
        playback.feed_frame(recv_ns, "binance-spot:2", raw)
    playback.feed_frame(SPOT_FRAMES[cut + frames_first][0], "rest:BTCUSDT", snapshot)
    for recv_ns, raw in SPOT_FRAMES[cut + frames_first :]:
        playback.feed_frame(recv_ns, "binance-spot:2", raw)
    sync = playback.feeds[0].feed.books["BTCUSDT"]  # type: ignore[attr-defined]
    assert sync.synced and sync.book.last_seq == binance_reference_book()[2]
    assert [m.reason.startswith("connection lost") for m in resynced] == [True]


async def record_stale_spot_run(tmp_path: Path) -> tuple[PaperNode, list[OrderDenied]]:
    """A paper run of :class:`~tests.live.cross_market_strategy.CrossMarket` (orders spot on every 10th USD-M trade)
    whose spot feed goes silent twice (its connection and the next), recorded to ``tmp_path / "frames.jsonl.gz"``;
    returns the node and the orders it denied. The watchdog allows 2 s of silence: a loop stalled past a shorter
    one (0.5 s) made stale stretches while spot data flowed, holding no denial or ending the capture in one; the
    captures play at 3x so that spot flows again well before they end."""
    usdm_frames, usdm_snapshot = split_capture(list(iter_hftbacktest(USDM_CAPTURE)))
    silent = [Fault(FaultKind.SILENCE, at=500, seconds=math.inf), Fault(FaultKind.SILENCE, at=0, connection=1, seconds=math.inf)]
    spot_server = LocalVenueServer(BinanceProtocol(SPOT_SNAPSHOT), SPOT_FRAMES, silent, speed=3.0, lifetime=120.0)
    usdm_server = LocalVenueServer(BinanceProtocol(usdm_snapshot, futures=True), usdm_frames, speed=3.0, lifetime=120.0)
    async with spot_server as spot, usdm_server as usdm:
        spot_feed = binance_config(spot.ws_url, spot.http_url, ["trade", "bookTicker"], stale_after=2.0)["feeds"][0]
        usdm_feed = {**usdm_config(usdm.ws_url, usdm.http_url)["feeds"][0], "subscriptions": {USDM_IID: ["trade"]}}
        data = {
            "instruments": [BINANCE_INSTRUMENT, USDM_INSTRUMENT],
            "strategy": CROSS_MARKET,
            "venue": {"fill_on": "trades"},
            "feeds": [spot_feed, usdm_feed],
            "warm_up": False,
            "record": str(tmp_path / "frames.jsonl.gz"),
        }
        node = PaperNode(config_of(data), handle_signals=False)
        denied: list[OrderDenied] = []
        node.kernel.bus.subscribe(OrderDenied, denied.append)
        await run_node(node, lambda: spot.cursor >= len(SPOT_FRAMES) and usdm.cursor >= len(usdm_frames), timeout=120.0)
    assert node.summary.feeds["binance-spot"]["connections"] >= 3
    assert denied and all(m.reason.startswith("feed stale: binance-spot delivered nothing") for m in denied)
    return node, denied


#: Orders spot on every 10th USD-M trade: its decisions come from the feed that stays live.
CROSS_MARKET = {
    "name": "tests.live.cross_market_strategy:CrossMarket",
    "instruments": [USDM_IID, IID],
    "params": {"every": 10, "quantity": 0.001},
}


async def test_replay_of_a_recording_with_a_stale_stretch_denies_and_fills_what_the_daemon_did(tmp_path: Path) -> None:
    """The spot feed goes silent twice (its connection and the next): the daemon's watchdog declares it stale and
    the orders a strategy decides on the USD-M trades meanwhile are denied, until spot data flows again. The
    replay of its recording had no watchdog: it placed and filled those orders. The recording now holds the
    watchdog's FeedStale lines, and the replay denies the same orders."""
    node, denied = await record_stale_spot_run(tmp_path)
    result = node.kernel.result
    ids = [o.client_order_id for o in result.orders]
    later = result.orders[ids.index(denied[-1].client_order_id) + 1 :]
    assert any(o.filled_qty > 0 for o in later)  # the block was lifted when spot data flowed again
    replay = Playback(node.config)
    replayed: list[OrderDenied] = []
    replay.kernel.bus.subscribe(OrderDenied, replayed.append)
    replay.run(tmp_path / "frames.jsonl.gz")
    assert [(m.client_order_id, m.reason) for m in replayed] == [(m.client_order_id, m.reason) for m in denied]
    assert fill_keys(replay.kernel.result.fills) == fill_keys(result.fills)
    assert order_keys(replay.kernel.result.orders) == order_keys(result.orders)


async def test_backtest_over_the_import_of_a_recording_with_a_stale_stretch_is_refused_naming_it(tmp_path: Path) -> None:
    """The same paper run, imported into a catalog and backtested: the import left the stale-feed episodes out and
    the backtest, which has no market guard, placed and filled the spot orders the daemon denied. The import now
    stores each stretch (from the FeedStale to the spot data that lifted the daemon's block) in the manifests of
    the spot datasets, and a backtest whose window overlaps one is refused, naming it; one outside them runs."""
    import yaml
    from typer.testing import CliRunner

    from tradebus.cli import app
    from tradebus.node.recording_import import import_recording
    from tradebus.reports.metrics import format_ns

    node, denied = await record_stale_spot_run(tmp_path)
    manifests = import_recording(tmp_path / "frames.jsonl.gz", node.config, tmp_path / "cat")
    stretches = manifests[(IID, "trades")].stale
    assert stretches and all(feed == "binance-spot" for _, _, feed in stretches)
    assert manifests[(IID, "quotes")].stale == stretches and manifests[(USDM_IID, "trades")].stale == []
    # every order the daemon denied was decided in a stretch, and each stretch holds one
    assert all(any(a <= m.ts_init < b for a, b, _ in stretches) for m in denied)
    assert all(any(a <= m.ts_init < b for m in denied) for a, b, _ in stretches)
    run = {
        "instruments": [BINANCE_INSTRUMENT, USDM_INSTRUMENT],
        "strategy": CROSS_MARKET,
        "venue": {"fill_on": "trades"},
        "data": {"catalog": str(tmp_path / "cat"), "sources": [
            {"instrument": USDM_IID, "kind": "trades", "dataset": "binance_usdm/usdm/BTCUSDT/trades"},
            {"instrument": IID, "kind": "trades", "dataset": "binance/spot/BTCUSDT/trades"}]},
    }

    def backtest(name: str, **window: str) -> object:
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump({**run, "data": {**run["data"], **window}}, sort_keys=False), encoding="utf-8")
        return CliRunner().invoke(app, ["backtest", str(path), "--out", str(tmp_path / name)], catch_exceptions=False)

    a, b, _ = stretches[0]
    result = backtest("over")
    assert result.exit_code == 3, result.output
    assert (
        f"over.yaml: data.sources.1.dataset: the {IID} feed binance-spot of the recording this dataset "
        f"({tmp_path / 'cat'}/binance/spot/BTCUSDT/trades) was imported from was stale from {format_ns(a)} (its "
        f"watchdog's FeedStale) to {format_ns(b)} (when the daemon's market guard let orders through again): the "
        f"paper daemon denied every new order on {IID} in between"
    ) in " ".join(result.output.split())
    assert not (tmp_path / "over").exists()
    before = backtest("before", end=format_ns(a))  # a receive time, to the nanosecond
    assert before.exit_code == 0, before.output
    assert (tmp_path / "before" / "fills.csv").is_file()


async def test_replay_of_a_trades_only_feed_live_again_on_a_quiet_market_allows_what_the_daemon_did(tmp_path: Path) -> None:
    """A spot feed of trades alone loses its connection silently (stale, recycled); the new connection answers
    its pings but its market prints nothing for a while: the daemon allowed orders on spot again once the new
    connection answered, and they filled when spot traded again. Its replay had no connection to ask (pongs
    are not frames): it kept denying them until the next spot trade. The recording now holds the moment the
    connection proved itself live, and the replay denies and fills what the daemon did."""
    usdm_frames, usdm_snapshot = split_capture(list(iter_hftbacktest(USDM_CAPTURE)))
    faults = [Fault(FaultKind.HANG, at=40, match="@trade")]  # the first connection dies without a close
    node: PaperNode
    denied: list[OrderDenied] = []
    quiet = {"held": False}

    def allowed_again() -> bool:
        """The daemon placed a spot order decided after its new connection answered a ping."""
        client = node.feeds[0].client
        refused = {m.client_order_id for m in denied}
        return client is not None and client.last_pong_ns > 0 and any(
            o.instrument_id == IID and o.ts_created > client.last_pong_ns and o.client_order_id not in refused
            for o in node.kernel.orders.orders()
        )

    async def a_quiet_market_on_the_next_connection(raw: str) -> None:
        # its first trade waits until the daemon allowed a spot order on the answered ping (a fixed 2.5 s of
        # silence ran out on a loaded machine before the pong, and no order came between it and spot's next trade)
        if spot.connections == 2 and "@trade" in raw and not quiet["held"]:
            quiet["held"] = True
            while not allowed_again():
                await asyncio.sleep(0.005)

    spot_server = LocalVenueServer(
        BinanceProtocol(SPOT_SNAPSHOT), SPOT_FRAMES, faults, speed=4.0, lifetime=60.0, gate=a_quiet_market_on_the_next_connection
    )
    usdm_server = LocalVenueServer(BinanceProtocol(usdm_snapshot, futures=True), usdm_frames, speed=4.0, lifetime=60.0)
    async with spot_server as spot, usdm_server as usdm:
        spot_feed = binance_config(spot.ws_url, spot.http_url, ["trade"], stale_after=1.0)["feeds"][0]
        usdm_feed = {**usdm_config(usdm.ws_url, usdm.http_url)["feeds"][0], "subscriptions": {USDM_IID: ["trade"]}}
        data = {
            "instruments": [BINANCE_INSTRUMENT, USDM_INSTRUMENT],
            "strategy": {
                "name": "tests.live.cross_market_strategy:CrossMarket",
                "instruments": [USDM_IID, IID],  # orders spot on every 10th USD-M trade
                "params": {"every": 10, "quantity": 0.001},
            },
            "venue": {"fill_on": "trades"},
            "feeds": [spot_feed, usdm_feed],
            "warm_up": False,
            "record": str(tmp_path / "frames.jsonl.gz"),
        }
        node = PaperNode(config_of(data), handle_signals=False)
        trades: list[Trade] = []
        node.kernel.bus.subscribe(OrderDenied, denied.append)
        node.kernel.bus.subscribe(Trade, trades.append)
        await run_node(node, lambda: spot.cursor >= len(SPOT_FRAMES) and usdm.cursor >= len(usdm_frames), timeout=40.0)
    assert quiet["held"]
    result = node.kernel.result
    client = node.feeds[0].client
    assert client is not None and client.connections == 2 and client.last_pong_ns > 0
    assert denied and all(m.reason.startswith("feed stale: binance-spot delivered nothing") for m in denied)
    ids = [o.client_order_id for o in result.orders]
    lifted = result.orders[ids.index(denied[-1].client_order_id) + 1 :]
    spot_back = min(t.ts_init for t in trades if t.instrument_id == IID and t.ts_init > denied[-1].ts_init)
    assert any(o.ts_created < spot_back for o in lifted)  # allowed by the answered ping, before spot traded again
    assert any(o.filled_qty > 0 for o in lifted)
    recording = tmp_path / "frames.jsonl.gz"
    assert [raw for _, conn, raw in read_frames(recording, episodes=True) if conn == "live:binance-spot"] == ["pong"]
    replay = Playback(node.config)
    replayed: list[OrderDenied] = []
    replay.kernel.bus.subscribe(OrderDenied, replayed.append)
    replay.run(recording)
    assert [(m.client_order_id, m.reason) for m in replayed] == [(m.client_order_id, m.reason) for m in denied]
    assert fill_keys(replay.kernel.result.fills) == fill_keys(result.fills)
    assert order_keys(replay.kernel.result.orders) == order_keys(result.orders)
    # a recording made before the proof was recorded keeps the block until spot trades again, as before
    old = tmp_path / "old.jsonl.gz"
    with FrameRecorder(old) as rec:
        for line in read_frames(recording, episodes=True):
            if not line[1].startswith("live:"):
                rec.write(*line)
    old_replay = Playback(node.config)
    old_denied: list[OrderDenied] = []
    old_replay.kernel.bus.subscribe(OrderDenied, old_denied.append)
    old_replay.run(old)
    assert len(old_denied) > len(denied) and all(o.ts_created >= spot_back for o in old_replay.kernel.result.orders
                                                 if o.client_order_id not in {m.client_order_id for m in old_denied}
                                                 and o.ts_created > denied[-1].ts_init)



def test_a_backtest_of_an_imported_book_filling_on_trades_is_marked_at_the_book_as_the_paper_run(
    tmp_path: Path,
) -> None:
    """The USD-M capture (trades and the 0 ms diff-depth book) run by a paper daemon (its playback) and imported
    into a catalog and backtested with its book and trades sources, filling on trades: the same 63 fills, but
    the backtest was marked at the last trade where the daemon marks at its book's mid: 35 of the 37 equity
    samples (1 s apart) were 0.0005 off (0.01 BTC x half the 0.1 tick), the final equity 99,986.0113284 against
    the daemon's 99,986.0118284. The backtest is marked at its replayed book's mid now: each sample's mark is
    the mid of the book the catalog's rows up to its time leave (rebuilt with dicts), or the price of a trade
    after them, as a quote's mid and a trade's price mark a daemon; the final equity is the daemon's."""
    import yaml

    from tests.test_cli_backtest import _touches
    from tradebus.cli import run_backtest
    from tradebus.data.catalog import Catalog
    from tradebus.node.recording_import import import_recording

    data = usdm_config(None, None, depth_speed="0ms")
    data["feeds"][0]["subscriptions"] = {USDM_IID: ["trade", "depth"]}
    data["report"] = {"equity_interval": "1s"}
    config = config_of(data)
    paper = play(USDM_CAPTURE, config).kernel.result
    import_recording(USDM_CAPTURE, config, tmp_path / "cat")
    run = {
        "instruments": [USDM_INSTRUMENT], "strategy": data["strategy"], "venue": {"fill_on": "trades"},
        "report": {"equity_interval": "1s"},
        "data": {"catalog": str(tmp_path / "cat"), "sources": [
            {"instrument": USDM_IID, "kind": kind, "dataset": f"binance_usdm/usdm/BTCUSDT/{kind}"}
            for kind in ("book", "trades")]},
    }
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(run, sort_keys=False), encoding="utf-8")
    backtest, metrics, _ = run_backtest(tmp_path / "run.yaml", tmp_path / "out")
    assert len(paper.fills) == 63 and fill_keys(backtest.fills) == fill_keys(paper.fills)
    catalog = Catalog(tmp_path / "cat")
    rows = catalog.read("binance_usdm", "usdm", "BTCUSDT", "book")
    trades = catalog.read("binance_usdm", "usdm", "BTCUSDT", "trades")
    book_ts, trade_ts = rows.column("ts_init").to_numpy(), trades.column("ts_init").to_numpy()
    trade_px = trades.column("price").to_pylist()
    samples = backtest.equity[1:]  # the first is taken at the first row, before any book
    times = [s.ts + 1 for s in samples[:-1]] + [2**63 - 1]  # a sample holds its time's rows; the last, every row
    expected = []  # the mid of the book the rows up to the sample leave, or the price of a trade after them
    for t, (bid, ask) in zip(times, _touches(rows, times), strict=True):
        book, trade = book_ts[book_ts < t][-1], int(np.searchsorted(trade_ts, t)) - 1
        expected.append(trade_px[trade] if trade_ts[trade] > book else round((bid + ask) / 2, 2))
    assert len(samples) == 36 and sum(round(e * 10, 6) % 1 == 0.5 for e in expected) > 10  # many at a mid
    assert [s.marks[0] for s in samples] == expected
    assert metrics["final_equity"] == paper.equity[-1].equity == backtest.equity[-1].equity
    # the daemon's book messages take the samples that fall due at them, as the backtest's rows do (the daemon's
    # router handed them to the bus past Kernel.process: 2 of the 37 samples were taken at a later message, either
    # side of a fill); its samples are the backtest's, time and equity
    assert [(s.ts, s.equity) for s in paper.equity] == [(s.ts, s.equity) for s in backtest.equity]
