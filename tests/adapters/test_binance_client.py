"""BinanceClient against the local venue emulator replaying real captures (127.0.0.1 only)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from loguru import logger

from tradebus.adapters.binance.client import BinanceClient, BinanceRouter, HttpDepthFetcher
from tradebus.adapters.binance.config import BinanceConfig, BinanceMarket
from tradebus.adapters.binance.emulator import BinanceProtocol, split_capture
from tradebus.adapters.common.local_server import Fault, FaultKind, LocalVenueServer
from tradebus.adapters.common.policy import Backoff, ConnectionPolicy
from tradebus.adapters.common.recorder import FrameRecorder, read_frames
from tradebus.engine.messages import (
    BookDelta,
    BookResynced,
    BookSnapshot,
    FeedStale,
    FundingRate,
    MarkPrice,
    Quote,
    Trade,
)
from tradebus.errors import VenueError

from .binance_testdata import USDM_CAPTURE, capture
from .waiting import Messages, run_until

SPOT_LINES = capture()[:2500]
SPOT_FRAMES, SPOT_SNAPSHOT = split_capture(SPOT_LINES)
SPOT_TRADE_IDS = [str(json.loads(raw)["data"]["t"]) for _, raw in SPOT_FRAMES if "@trade" in raw]


@pytest.fixture
def logs() -> Any:
    records: list[tuple[str, str]] = []
    handler = logger.add(lambda m: records.append((m.record["level"].name, m.record["message"])), level="DEBUG")
    yield records
    logger.remove(handler)


def policy(stale_after: float = 5.0, max_reconnects: int | None = 20) -> ConnectionPolicy:
    return ConnectionPolicy(
        backoff=Backoff(base=0.02, cap=0.05, min_delay=0.01, seed=7), stale_after=stale_after, max_reconnects=max_reconnects
    )


def spot_config(srv: LocalVenueServer, channels: list[str], **kw: Any) -> BinanceConfig:
    return BinanceConfig(symbols=["BTCUSDT"], channels=channels, ws_url=srv.ws_url, rest_url=srv.http_url, **kw)


def trades(out: list[Any]) -> list[Trade]:
    return [m for m in out if isinstance(m, Trade)]


async def test_reconnect_after_dropped_connection_loses_and_duplicates_no_trade() -> None:
    faults = [Fault(FaultKind.DROP, at=150, match="@trade"), Fault(FaultKind.DROP, at=100, match="@trade", connection=1)]
    out = Messages()
    async with LocalVenueServer(BinanceProtocol(SPOT_SNAPSHOT), SPOT_FRAMES, faults, resume_overlap=60) as srv:
        client = BinanceClient(spot_config(srv, ["trade"]), out.append, policy())
        await run_until(client, lambda: len(trades(out)) >= len(SPOT_TRADE_IDS), out)
    assert [t.trade_id for t in trades(out)] == SPOT_TRADE_IDS
    assert client.connections == 3
    assert client.feed.counts["duplicate_trade"] > 0  # the overlap was really re-sent and dropped


async def test_book_gap_triggers_rest_resync_and_no_book_message_from_a_broken_book() -> None:
    skipped = 120  # 0-based index, among the depth frames, of the diff the venue never sends
    faults = [Fault(FaultKind.SKIP, at=skipped, match="@depth")]
    out = Messages()
    depth_frames = sum("@depth" in raw for _, raw in SPOT_FRAMES)
    proto = BinanceProtocol(SPOT_SNAPSHOT)
    book_synced = asyncio.Event()
    depth_seen = 0

    def sink(message: Any) -> None:
        out.append(message)
        if isinstance(message, BookSnapshot):
            book_synced.set()

    async def hold_the_gap_until_synced(raw: str) -> None:
        # the skipped diff must break a synced book, however long the first snapshot takes
        nonlocal depth_seen
        if "@depth" in raw:
            depth_seen += 1
            if depth_seen > skipped:
                # bounded: a client that gave up (run_until's timeout) must not leave the server's exit waiting
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(book_synced.wait(), 90.0)

    async with LocalVenueServer(proto, SPOT_FRAMES, faults, gate=hold_the_gap_until_synced) as srv:
        # a REST timeout far beyond any stall of a loaded machine: one request per sync, none retried
        fetcher = HttpDepthFetcher(srv.http_url, BinanceMarket.SPOT, timeout=120.0)
        client = BinanceClient(spot_config(srv, ["trade", "depth"]), sink, policy(), fetcher=fetcher)

        def done() -> bool:
            return client.feed.counts["depth"] >= depth_frames - 1 and client.feed.books["BTCUSDT"].synced

        await run_until(client, done, out, timeout=60.0)  # a loaded machine can take 20 s to the first snapshot
    assert depth_seen == depth_frames
    resynced = [m for m in out if isinstance(m, BookResynced)]
    assert len(resynced) == 1 and resynced[0].reason.startswith("sequence gap (binance-spot)")
    assert proto.depth_requests == 2
    # every emitted delta continues the previous book message: nothing left a broken book
    last, after_snapshot = None, False
    for m in out:
        if isinstance(m, BookSnapshot):
            last, after_snapshot = m.last_seq, True
        elif isinstance(m, BookDelta):
            assert last is not None
            if after_snapshot:  # the spot rule's first diff straddles the snapshot id
                assert m.first_seq <= last + 1 <= m.last_seq, (m.first_seq, m.last_seq, last)
            else:
                assert m.first_seq == last + 1, (m.first_seq, last)
            last, after_snapshot = m.last_seq, False
    i = out.index(resynced[0])
    assert isinstance(out[i - 1], BookSnapshot)
    assert any(isinstance(m, Quote) for m in out[i:])  # quotes resume after the resync


@pytest.mark.parametrize("fetcher", ["ccxt", "http"])
async def test_snapshot_fetch_is_retried_after_a_5xx(fetcher: str) -> None:
    out = Messages()
    proto = BinanceProtocol(SPOT_SNAPSHOT, http_failures=1)
    async with LocalVenueServer(proto, SPOT_FRAMES) as srv:
        client = BinanceClient(spot_config(srv, ["depth"], snapshot_fetcher=fetcher), out.append, policy())
        await run_until(client, lambda: client.feed.books["BTCUSDT"].synced, out)
    assert proto.depth_requests == 2
    assert isinstance(next(m for m in out if not isinstance(m, FeedStale)), BookSnapshot)
    assert client.feed.books["BTCUSDT"].synced  # a stop loses nothing: the book stays as the last frame left it


async def test_silent_feed_publishes_feed_stale_and_reconnects() -> None:
    faults = [Fault(FaultKind.SILENCE, at=20, match="@trade", seconds=float("inf"))]
    out = Messages()
    async with LocalVenueServer(BinanceProtocol(SPOT_SNAPSHOT), SPOT_FRAMES, faults, resume_overlap=0) as srv:
        client = BinanceClient(spot_config(srv, ["trade"], stale_after=0.3), out.append, policy(stale_after=0.3))
        await run_until(client, lambda: client.connections >= 2 and len(trades(out)) > 40, out)
    stale = [m for m in out if isinstance(m, FeedStale)]
    assert stale and stale[0].source == "binance-spot"
    assert [t.trade_id for t in trades(out)] == SPOT_TRADE_IDS[: len(trades(out))]


async def test_garbled_and_unknown_frames_are_rejected_and_the_feed_goes_on() -> None:
    faults = [Fault(FaultKind.GARBLE, at=3, match="@trade"), Fault(FaultKind.UNKNOWN, at=5, match="@trade")]
    out = Messages()
    async with LocalVenueServer(BinanceProtocol(SPOT_SNAPSHOT), SPOT_FRAMES, faults) as srv:
        client = BinanceClient(spot_config(srv, ["trade"]), out.append, policy())
        await run_until(client, lambda: len(trades(out)) >= len(SPOT_TRADE_IDS) - 1, out)
    # the garbled frame is rejected; the unknown stream's frame is counted and skipped
    assert client.rejected == 1 and client.connections == 1
    assert client.feed.unexpected_streams == {"btcusdt@someNewStream": 1}
    assert [t.trade_id for t in trades(out)] == SPOT_TRADE_IDS[:3] + SPOT_TRADE_IDS[4:]


async def test_gives_up_after_max_reconnects_when_the_venue_refuses() -> None:
    async with LocalVenueServer(BinanceProtocol(SPOT_SNAPSHOT), SPOT_FRAMES, max_connections=0) as srv:
        client = BinanceClient(spot_config(srv, ["trade"]), lambda m: None, policy(max_reconnects=2))
        with pytest.raises(VenueError, match="gave up after 2"):
            await asyncio.wait_for(client.run(), 10)


async def test_recording_replays_through_the_same_path_into_identical_messages(tmp_path: Path) -> None:
    out = Messages()
    path = tmp_path / "rec.jsonl.gz"
    async with LocalVenueServer(BinanceProtocol(SPOT_SNAPSHOT), SPOT_FRAMES) as srv:
        cfg = spot_config(srv, ["trade", "bookTicker", "depth"])
        with FrameRecorder(path) as rec:
            client = BinanceClient(cfg, out.append, policy(), recorder=rec)
            await run_until(client, lambda: client.frames >= len(SPOT_FRAMES), out)
    replayed: list[Any] = []
    BinanceRouter(cfg, replayed.append).replay(read_frames(path))
    assert len(out) > 2000
    assert [type(m) for m in replayed] == [type(m) for m in out]
    for a, b in zip(replayed, out, strict=True):
        if isinstance(a, (BookDelta, BookSnapshot)):
            assert (a.last_seq, a.ts_init, a.bids.tolist(), a.asks.tolist()) == (b.last_seq, b.ts_init, b.bids.tolist(), b.asks.tolist())
        else:
            assert a == b
    # the REST snapshot it recorded names the feed that fetched it: a USD-M feed's is not this book's
    frames = list(read_frames(path))
    assert [conn for _, conn, _ in frames if conn.startswith("rest")] == ["rest:BTCUSDT@binance-spot:1"]
    foreign: list[Any] = []
    BinanceRouter(cfg, foreign.append).replay((t, conn.replace("@binance-spot", "@binance-usdm"), raw) for t, conn, raw in frames)
    assert BookSnapshot in {type(m) for m in replayed} and BookSnapshot not in {type(m) for m in foreign}


async def test_usdm_mark_price_funding_and_futures_book_rule() -> None:
    frames, snapshot = split_capture(capture(USDM_CAPTURE)[:1500])
    out = Messages()
    async with LocalVenueServer(BinanceProtocol(snapshot, futures=True), frames) as srv:
        cfg = BinanceConfig(
            market=BinanceMarket.USDM, symbols=["BTCUSDT"], channels=["markPrice", "depth"], depth_speed="0ms",
            ws_url=srv.ws_url, rest_url=srv.http_url,
        )
        client = BinanceClient(cfg, out.append, policy())
        n_mark = sum("@markPrice" in raw for _, raw in frames)
        await run_until(client, lambda: client.feed.counts["markPrice"] >= n_mark and client.feed.books["BTCUSDT"].synced, out)
    marks = [m for m in out if isinstance(m, MarkPrice)]
    assert len(marks) == n_mark and all(m.instrument_id == "BTCUSDT.BINANCE_USDM" for m in marks)
    assert len([m for m in out if isinstance(m, FundingRate)]) == n_mark
    assert sum(isinstance(m, BookSnapshot) for m in out) == 1 and any(isinstance(m, BookDelta) for m in out)


def test_http_fetcher_is_selected_by_config() -> None:
    cfg = BinanceConfig(symbols=["BTCUSDT"], channels=["depth"], snapshot_fetcher="http", rest_url="http://127.0.0.1:9")
    client = BinanceClient(cfg, lambda m: None)
    assert isinstance(client.fetcher, HttpDepthFetcher)
    assert client.connect_url() == "wss://stream.binance.com:9443/stream?streams=btcusdt@depth@100ms"


async def test_rejected_streams_stop_the_client_with_subscription_rejected() -> None:
    from tradebus.adapters.common.policy import SubscriptionRejected

    protocol = BinanceProtocol(SPOT_SNAPSHOT, rejected_streams=frozenset({"btcusdt@depth@100ms"}))
    async with LocalVenueServer(protocol, SPOT_FRAMES) as srv:
        client = BinanceClient(spot_config(srv, ["trade", "depth"]), lambda m: None, policy())
        with pytest.raises(SubscriptionRejected, match=r"binance-spot: binance refused the streams .*HTTP 400 .*invalid stream btcusdt@depth@100ms"):
            await asyncio.wait_for(client.run(), 10)
    assert client.connections == 0 and len(srv.sessions) == 0


def test_an_implausible_funding_rate_is_refused_once_and_the_mark_price_kept(logs: list[tuple[str, str]]) -> None:
    marks = [raw for _, raw in capture(USDM_CAPTURE) if "@markPrice" in raw][:6]
    rates = ["0.5", "0.5", "-0.07", "0.00002754", "0.5", "0.5"]  # implausible (beyond ±0.05) but for the fourth
    frames = [json.loads(raw) for raw in marks]
    for frame, rate in zip(frames, rates, strict=True):
        frame["data"]["r"] = rate
    out: list[Any] = []
    feed = BinanceRouter(BinanceConfig(market=BinanceMarket.USDM, symbols=["BTCUSDT"], channels=["markPrice"]), out.append)
    for i, frame in enumerate(frames):
        feed.on_frame(json.dumps(frame), i + 1)
    assert [(m.ts_init, m.mark_price) for m in out if isinstance(m, MarkPrice)] == [
        (i + 1, float(f["data"]["p"])) for i, f in enumerate(frames)
    ]
    assert [(m.ts_init, m.rate) for m in out if isinstance(m, FundingRate)] == [(4, 0.00002754)]
    warnings = [text for level, text in logs if level == "WARNING"]
    assert len(warnings) == 2, warnings  # one per run of implausible rates, not one per frame
    assert warnings[0].startswith("binance usdm BTCUSDT.BINANCE_USDM: funding rate 0.5 refused: it is not a plausible")
    assert warnings[1].startswith("binance usdm BTCUSDT.BINANCE_USDM: funding rate 0.5 refused")
    assert ("INFO", "binance usdm BTCUSDT.BINANCE_USDM: funding rate 2.754e-05 plausible again, 3 implausible rate(s) refused before it") in logs
    assert feed.funding_rates.refused == {"BTCUSDT.BINANCE_USDM": 2}


def test_error_reply_to_a_request_is_a_rejected_subscription() -> None:
    from tradebus.adapters.common.policy import SubscriptionRejected

    feed = BinanceRouter(BinanceConfig(symbols=["BTCUSDT"], channels=["trade"]), lambda m: None)
    with pytest.raises(SubscriptionRejected, match=r"binance rejected request id=3 \(streams \['btcusdt@trade'\]\): code 2 Invalid request"):
        feed.on_frame('{"error":{"code":2,"msg":"Invalid request: invalid stream"},"id":3}', 1)


#: Real Binance USD-M trades around an insurance-fund trade, 2023-04-05 (hftbacktest's
#: examples/usdm/btcusdt_20230405.dat.gz, MIT; /work/shared/data SOURCES): the book was 28147.0 / 28147.1.
_INSURANCE_TRADES = [
    '{"stream":"btcusdt@trade","data":{"e":"trade","E":1680652874144,"T":1680652874139,"s":"BTCUSDT","t":3535191079,"p":"28147.00","q":"0.005","X":"MARKET","m":true}}',
    '{"stream":"btcusdt@trade","data":{"e":"trade","E":1680652874406,"T":1680652874400,"s":"BTCUSDT","t":3535191080,"p":"28722.50","q":"0.001","X":"INSURANCE_FUND","m":true}}',
    '{"stream":"btcusdt@trade","data":{"e":"trade","E":1680652874422,"T":1680652874417,"s":"BTCUSDT","t":3535191081,"p":"28147.00","q":"0.001","X":"MARKET","m":true}}',
]


async def test_an_insurance_fund_trade_is_counted_not_delivered() -> None:
    """An insurance-fund (or ADL) trade prints off the book (here 2 % above it): delivered as a market
    trade, it filled a resting sell limit of a paper or replay run that no order of the book could have."""
    frames = [(1_680_652_874_146_719_000 + k, raw) for k, raw in enumerate(_INSURANCE_TRADES)]
    out = Messages()
    async with LocalVenueServer(BinanceProtocol(SPOT_SNAPSHOT), frames) as srv:
        config = BinanceConfig(market=BinanceMarket.USDM, symbols=["BTCUSDT"], channels=["trade"], ws_url=srv.ws_url,
                               rest_url=srv.http_url)  # fmt: skip
        client = BinanceClient(config, out.append, policy())
        await run_until(client, lambda: client.feed.counts["trade"] + client.feed.counts["trade_not_market"] >= 3, out)
    assert [(t.trade_id, t.price) for t in trades(out)] == [("3535191079", 28147.0), ("3535191081", 28147.0)]
    assert client.feed.counts["trade_not_market"] == 1


async def test_a_snapshot_answered_after_the_stop_is_neither_handled_nor_recorded(tmp_path: Path) -> None:
    """Before: a book's REST snapshot on its way when the client was stopped (the daemon's stop, its ``run:stop``
    already recorded) was recorded after the stop and handled (a BookSnapshot and its Quote published to a daemon
    whose timers had stopped) while the connection closed; a stopped client handles and records no frame."""
    out = Messages()
    path = tmp_path / "rec.jsonl.gz"
    asked, answer = asyncio.Event(), asyncio.Event()

    class HeldFetcher(HttpDepthFetcher):
        async def fetch(self, symbol: str, limit: int) -> bytes:
            body = await super().fetch(symbol, limit)
            asked.set()
            await answer.wait()  # answered once the client is stopped
            return body

    async with LocalVenueServer(BinanceProtocol(SPOT_SNAPSHOT), SPOT_FRAMES) as srv:
        with FrameRecorder(path) as rec:
            client = BinanceClient(spot_config(srv, ["depth"]), out.append, policy(), recorder=rec,
                                   fetcher=HeldFetcher(srv.http_url, BinanceMarket.SPOT, timeout=120.0))
            task = asyncio.create_task(client.run())
            try:
                await asyncio.wait_for(asked.wait(), 60.0)
            finally:
                client.stop()
                answer.set()
                await asyncio.wait_for(task, 10.0)
    assert [type(m).__name__ for m in out if isinstance(m, (BookSnapshot, Quote))] == []
    assert [conn for _, conn, _ in read_frames(path) if conn.startswith("rest")] == []


async def test_a_connection_the_client_recycles_amid_a_served_stream_loses_and_repeats_no_quote() -> None:
    """What `tradebus serve` relies on to resume after the frames it wrote (no overlap): the client recycles a
    connection by closing it and reads on until the server's close, so every frame the server wrote before
    learning of the close reaches the sink; the next connection's first quote is the recording's next one. The
    quotes (best bid/ask with sizes: consecutive bookTickers differ) come exactly once, in recorded order."""
    recorded = [
        tuple(float(d[k]) for k in ("b", "B", "a", "A"))
        for d in (json.loads(raw)["data"] for _, raw in SPOT_FRAMES if "@bookTicker" in raw)
    ]
    out = Messages()
    recycled: list[asyncio.Task[None]] = []

    def quotes() -> list[tuple[float, ...]]:
        return [(m.bid_price, m.bid_size, m.ask_price, m.ask_size) for m in out if isinstance(m, Quote)]

    def sink(message: Any) -> None:
        out.append(message)
        ws = client._ws  # the connection the client's timers close to recycle it (a stale feed, a scheduled age)
        if isinstance(message, Quote) and len(quotes()) == 300 and ws is not None:
            recycled.append(asyncio.get_running_loop().create_task(ws.close(1001, "stale feed")))

    async with LocalVenueServer(BinanceProtocol(SPOT_SNAPSHOT), SPOT_FRAMES, max_connections=None) as srv:
        client = BinanceClient(spot_config(srv, ["bookTicker"]), sink, policy())
        await run_until(client, lambda: len(quotes()) >= len(recorded) and client.connections == 2, out, timeout=60)
    assert recycled and client.connections == 2
    assert quotes() == recorded


class QuoteReconnectsHeld(BinanceProtocol):
    """Binance's plugin refusing every handshake of the quote stream after its first with HTTP 503 (which the client
    retries) until ``released`` is set: a reconnection that comes back only once the other feed ran ahead."""

    def __init__(self, snapshot: str) -> None:
        super().__init__(snapshot)
        self.released = False
        self.quote_handshakes = 0

    def refuse_handshake(self, path: str, query: dict[str, list[str]]) -> tuple[int, str] | None:
        if "btcusdt@bookTicker" in query.get("streams", [""])[0]:
            self.quote_handshakes += 1
            if self.quote_handshakes > 1 and not self.released:
                return 503, '{"code":-1,"msg":"held back by the test"}'
        return super().refuse_handshake(path, query)


async def test_two_feeds_on_one_unpaced_serve_each_read_their_frames_once_one_reconnecting_after_the_other_ran_ahead() -> None:
    """`tradebus serve --speed 0` with a daemon's two feeds on it, quotes and trades: the quote feed's connection was
    dropped at its 501st quote and came back after the trade feed had read every trade; the server kept one cursor for
    all connections, which the trade feed had moved past the last trade (the 2,496th of 2,499 frames), so the quote feed got
    none of the 1,346 quotes left. Each stream now moves only as the connections subscribed to it read it: the quote
    feed gets every recorded quote once, in order, and the trade feed every trade."""
    recorded = [
        tuple(float(d[k]) for k in ("b", "B", "a", "A"))
        for d in (json.loads(raw)["data"] for _, raw in SPOT_FRAMES if "@bookTicker" in raw)
    ]
    last_trade = max(i for i, (_, raw) in enumerate(SPOT_FRAMES) if "@trade" in raw)
    proto = QuoteReconnectsHeld(SPOT_SNAPSHOT)
    quoted, traded = Messages(), Messages()

    def quotes() -> list[tuple[float, ...]]:
        return [(m.bid_price, m.bid_size, m.ask_price, m.ask_size) for m in quoted if isinstance(m, Quote)]

    drop = [Fault(FaultKind.DROP, at=500, match="@bookTicker", connection=0)]
    # as `tradebus serve --speed 0` serves: unpaced, no overlap, any number of connections
    async with LocalVenueServer(proto, SPOT_FRAMES, drop, max_connections=None, lifetime=300.0) as srv:
        quote_client = BinanceClient(spot_config(srv, ["bookTicker"]), quoted.append, policy(max_reconnects=None))
        quoting = asyncio.create_task(run_until(quote_client, lambda: len(quotes()) >= len(recorded), quoted, timeout=120.0))
        deadline = asyncio.get_running_loop().time() + 60.0
        while proto.quote_handshakes < 2 and not quoting.done():  # dropped, its reconnection refused
            assert asyncio.get_running_loop().time() < deadline, "the quote feed was not dropped and back in 60 s"
            await asyncio.sleep(0.01)
        assert len(quotes()) == 500
        trade_client = BinanceClient(spot_config(srv, ["trade"]), traded.append, policy())
        await run_until(trade_client, lambda: len(trades(traded)) >= len(SPOT_TRADE_IDS), traded, timeout=120.0)
        assert srv.cursor > last_trade  # the trade feed ran ahead of the quote feed, to the last trade and past it
        proto.released = True
        await quoting
    assert quotes() == recorded
    assert [t.trade_id for t in trades(traded)] == SPOT_TRADE_IDS
