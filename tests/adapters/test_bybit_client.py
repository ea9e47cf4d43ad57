"""Bybit client end to end against the local server replaying the real linear capture on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from tradebus.adapters.bybit.client import BybitClient, bybit_keepalive, op_message
from tradebus.adapters.bybit.config import BybitConfig
from tradebus.adapters.bybit.emulator import BybitProtocol
from tradebus.adapters.bybit.parse import BybitParser
from tradebus.adapters.common.local_server import Fault, FaultKind, LocalVenueServer, Session
from tradebus.adapters.common.policy import Backoff, ConnectionPolicy
from tradebus.adapters.common.recorder import read_frames
from tradebus.engine.messages import BookResynced, FeedStale, Trade

from .waiting import Messages, run_until, run_until_replayed

FIX = Path(__file__).parent.parent / "fixtures" / "bybit"
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "DOGEUSDT")
BOOKS = [f"orderbook.200.{s}" for s in SYMBOLS]
TOPICS = BOOKS + [f"{k}.{s}" for k in ("publicTrade", "tickers", "kline.1") for s in SYMBOLS]


def capture() -> list[tuple[int, str]]:
    return [(t, raw) for t, c, raw in read_frames(FIX / "bybit_v5_public_2026-08-09.jsonl.gz") if c == "linear"]


def fast_policy(ping: float = 20.0) -> ConnectionPolicy:
    return ConnectionPolicy(
        backoff=Backoff(base=0.05, cap=0.1, min_delay=0.01, seed=5), keepalive=bybit_keepalive(ping), stale_after=10.0
    )


def reference() -> tuple[BybitParser, list[Trade]]:
    parser = BybitParser("linear")
    trades = [m for t, raw in capture() for m in parser.parse_frame(raw, t) if isinstance(m, Trade)]
    return parser, trades


async def test_dropped_connection_reconnects_resyncs_books_with_no_lost_or_duplicated_trades() -> None:
    frames = capture()
    faults = [Fault(FaultKind.DROP, at=700, match='"type":"delta"')]
    protocol = BybitProtocol(frames)
    out: list = []
    async with LocalVenueServer(protocol, frames, faults, resume_overlap=60, lifetime=30.0) as server:
        client = BybitClient(out.append, topics=TOPICS, url=server.ws_url, policy=fast_policy())
        await run_until_replayed(client, frames[-1][1], lambda: all(client.parser.book_in_sync(t) for t in BOOKS))
    assert client.connections == 2
    ref, ref_trades = reference()
    for topic in BOOKS:
        assert client.parser.book(topic).book.equals(ref.book(topic).book)
    keys = [m.trade_id for m in out if isinstance(m, Trade)]
    assert len(keys) == len(set(keys))
    assert set(keys) == {m.trade_id for m in ref_trades}
    resynced = [m for m in out if isinstance(m, BookResynced)]
    assert {m.instrument_id for m in resynced} == {f"{s}-LINEAR.BYBIT" for s in SYMBOLS}
    assert all("connection lost" in m.reason for m in resynced)


async def test_corrupted_update_id_makes_the_client_resubscribe_and_resync() -> None:
    frames = capture()
    faults = [Fault(FaultKind.CORRUPT, at=40, match='"topic":"orderbook.200.ETHUSDT","type":"delta"', field="u", value=5)]
    protocol = BybitProtocol(frames)
    out: list = []
    async with LocalVenueServer(protocol, frames, faults, lifetime=30.0) as server:
        client = BybitClient(out.append, topics=TOPICS, url=server.ws_url, policy=fast_policy(ping=0.05))
        await run_until_replayed(client, frames[-1][1], lambda: all(client.parser.book_in_sync(t) for t in BOOKS))
        sent = [json.loads(m) for m in server.sessions[0].received]
    assert client.connections == 1 and client.resubscriptions == 1
    assert {"op": "unsubscribe", "args": ["orderbook.200.ETHUSDT"]} in sent
    assert {"op": "ping"} in sent and protocol.pings > 0
    (resynced,) = [m for m in out if isinstance(m, BookResynced)]
    assert resynced.instrument_id == "ETHUSDT-LINEAR.BYBIT" and "expected u=" in resynced.reason
    ref, _ = reference()
    for topic in BOOKS:
        assert client.parser.book(topic).book.equals(ref.book(topic).book)


def test_protocol_answers_ping_and_subscribe_like_bybit() -> None:
    protocol = BybitProtocol(capture())
    session = Session(index=0, path="/v5/public/linear", query={})
    (pong,) = protocol.on_client_message('{"op":"ping"}', session)
    assert json.loads(pong)["ret_msg"] == "pong"
    (ack,) = protocol.on_client_message(op_message("subscribe", ["publicTrade.BTCUSDT"]), session)
    assert json.loads(ack)["success"] is True and "publicTrade.BTCUSDT" in session.subscriptions
    (err,) = protocol.on_client_message("{", session)
    assert json.loads(err)["success"] is False


def test_subscribe_frames_are_batched_by_ten_and_url_follows_category() -> None:
    client = BybitClient(lambda m: None, BybitConfig(category="spot"), topics=TOPICS)
    frames = [json.loads(f) for f in client.subscribe_frames()]
    assert [len(f["args"]) for f in frames] == [10, 6]
    assert sorted(a for f in frames for a in f["args"]) == sorted(TOPICS)
    assert client.url == "wss://stream.bybit.com/v5/public/spot"
    assert client.policy.keepalive.payload == '{"op":"ping"}'


async def test_rejected_subscription_stops_the_client_with_subscription_rejected() -> None:
    import pytest

    from tradebus.adapters.common.policy import SubscriptionRejected

    frames = capture()
    protocol = BybitProtocol(frames, rejected=frozenset({"orderbook.200.NOPEUSDT"}))
    out: list = []
    async with LocalVenueServer(protocol, frames, lifetime=30.0) as server:
        client = BybitClient(out.append, topics=[*TOPICS, "orderbook.200.NOPEUSDT"], url=server.ws_url, policy=fast_policy())
        with pytest.raises(SubscriptionRejected, match=r"bybit-linear: Bybit linear rejected a subscribe: 'Invalid topic: orderbook.200.NOPEUSDT'"):
            await asyncio.wait_for(client.run(), 20)
    assert client.connections == 1


async def test_server_that_stops_data_but_answers_pings_goes_stale_and_is_reconnected() -> None:
    frames = capture()
    faults = [Fault(FaultKind.SILENCE, at=300, seconds=float("inf"))]
    protocol = BybitProtocol(frames)
    out = Messages()
    policy = ConnectionPolicy(
        backoff=Backoff(base=0.05, cap=0.1, min_delay=0.01, seed=5), keepalive=bybit_keepalive(0.1), stale_after=1.0
    )
    async with LocalVenueServer(protocol, frames, faults, lifetime=30.0) as server:
        client = BybitClient(out.append, topics=TOPICS, url=server.ws_url, policy=policy)
        await run_until(client, lambda: client.connections >= 2, out, timeout=15.0)
        pongs_first = sum(m == '{"op":"ping"}' for m in server.sessions[0].received)
    stale = [m for m in out if isinstance(m, FeedStale)]
    assert pongs_first >= 5  # the silent server answered every ping: the connection was alive, the data was not
    assert len(stale) >= 1 and stale[0].source == "bybit-linear"
    assert (stale[0].ts_event - stale[0].last_message_ns) >= 1_000_000_000


async def test_feed_that_keeps_sending_data_is_never_stale_whatever_the_pings() -> None:
    frames = capture()
    protocol = BybitProtocol(frames)
    out: list = []
    policy = ConnectionPolicy(
        backoff=Backoff(base=0.05, cap=0.1, min_delay=0.01, seed=5), keepalive=bybit_keepalive(0.05), stale_after=1.0
    )
    async with LocalVenueServer(protocol, frames, speed=20.0, lifetime=60.0) as server:
        client = BybitClient(out.append, topics=TOPICS, url=server.ws_url, policy=policy)
        await run_until_replayed(client, frames[-1][1], lambda: all(client.parser.book_in_sync(t) for t in BOOKS), 40.0)
    assert client.connections == 1 and protocol.pings > 0
    assert not [m for m in out if isinstance(m, FeedStale)]
