"""OKX client end to end against the local server replaying the real capture on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from tradebus.adapters.common.local_server import Fault, FaultKind, LocalVenueServer, Session
from tradebus.adapters.common.policy import Backoff, ConnectionPolicy
from tradebus.adapters.common.recorder import read_frames
from tradebus.adapters.okx.client import OkxClient, okx_keepalive, subscribe_message
from tradebus.adapters.okx.emulator import OkxProtocol
from tradebus.adapters.okx.parse import OkxParser
from tradebus.engine.messages import BookResynced, FeedStale, Trade

from .waiting import Messages, run_until, run_until_replayed

FIX = Path(__file__).parent.parent / "fixtures" / "okx"
INSTS = ("BTC-USD-220527", "UNI-USD-SWAP", "BTC-USDT")
PAIRS = [(ch, inst) for ch in ("books", "trades", "tickers") for inst in INSTS]


def capture() -> list[tuple[int, str]]:
    return [(t, raw) for t, _, raw in read_frames(FIX / "okx_v5_public_2022-05-13.jsonl.gz")]


def fast_policy() -> ConnectionPolicy:
    return ConnectionPolicy(
        backoff=Backoff(base=0.05, cap=0.1, min_delay=0.01, seed=3), keepalive=okx_keepalive(25.0), stale_after=10.0
    )


def raw_state(parser: OkxParser, inst: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The book of ``inst`` as OKX's raw strings, best first (the client's books are out of sync once stopped)."""
    sync = parser.book(inst)
    assert sync is not None
    return sync.rule.raw_levels(sync.book)  # type: ignore[attr-defined]


def reference() -> tuple[OkxParser, list[Trade]]:
    parser = OkxParser()
    trades = [m for t, raw in capture() for m in parser.parse_frame(raw, t) if isinstance(m, Trade)]
    return parser, trades


async def test_dropped_connection_reconnects_resyncs_books_with_no_lost_or_duplicated_trades() -> None:
    frames = capture()
    faults = [Fault(FaultKind.DROP, at=120, match='"action":"update"')]
    protocol = OkxProtocol(frames)
    out: list = []
    async with LocalVenueServer(protocol, frames, faults, resume_overlap=25, lifetime=30.0) as server:
        client = OkxClient(out.append, subscriptions=PAIRS, url=server.ws_url, policy=fast_policy())
        await run_until_replayed(client, frames[-1][1], lambda: all(client.parser.book_in_sync(i) for i in INSTS))
    assert client.connections == 2
    ref, ref_trades = reference()
    for inst in INSTS:
        assert raw_state(client.parser, inst) == raw_state(ref, inst)
    trades = [m for m in out if isinstance(m, Trade)]
    keys = [(m.instrument_id, m.trade_id) for m in trades]
    assert len(keys) == len(set(keys))
    assert set(keys) == {(m.instrument_id, m.trade_id) for m in ref_trades}
    resynced = [m for m in out if isinstance(m, BookResynced)]
    assert {m.instrument_id for m in resynced} == {f"{i}.OKX" for i in INSTS}
    assert all("connection lost" in m.reason for m in resynced)
    assert protocol.snapshots_served == 3


async def test_corrupted_checksum_makes_the_client_resubscribe_and_resync() -> None:
    frames = capture()
    faults = [Fault(FaultKind.CORRUPT, at=30, match='"instId":"BTC-USDT"},"action":"update"', field="checksum", value=123)]
    protocol = OkxProtocol(frames)
    out: list = []
    async with LocalVenueServer(protocol, frames, faults, lifetime=30.0) as server:
        client = OkxClient(out.append, subscriptions=PAIRS, url=server.ws_url, policy=fast_policy())
        await run_until_replayed(client, frames[-1][1], lambda: all(client.parser.book_in_sync(i) for i in INSTS))
        sent = [json.loads(m) for m in server.sessions[0].received if m.startswith("{")]
    assert client.connections == 1 and client.resubscriptions == 1
    assert {"op": "unsubscribe", "args": [{"channel": "books", "instId": "BTC-USDT"}]} in sent
    (resynced,) = [m for m in out if isinstance(m, BookResynced)]
    assert resynced.instrument_id == "BTC-USDT.OKX" and "checksum" in resynced.reason
    ref, _ = reference()
    for inst in INSTS:
        assert raw_state(client.parser, inst) == raw_state(ref, inst)


async def test_a_recording_holding_the_keepalive_pong_is_served_as_recorded_without_it() -> None:
    """The client records OKX's text ``"pong"`` (the answer to its keep-alive ``"ping"``) as a frame of its
    connection: ``tradebus serve`` of such a recording died building the emulator (msgspec.DecodeError)."""
    frames = capture()
    frames.insert(200, (frames[199][0], "pong"))
    protocol = OkxProtocol(frames)
    assert not protocol.is_stream_frame("pong")  # answered to a ping by the emulator, never replayed
    out: list = []
    async with LocalVenueServer(protocol, frames, [], lifetime=120.0) as server:
        client = OkxClient(out.append, subscriptions=PAIRS, url=server.ws_url, policy=fast_policy())
        await run_until_replayed(
            client, frames[-1][1], lambda: all(client.parser.book_in_sync(i) for i in INSTS), timeout=120.0
        )
    ref, ref_trades = reference()
    def fields(trades: list[Trade]) -> list[tuple]:  # ts_init is the receive time: the client's, not the recording's
        return [(m.instrument_id, m.trade_id, m.ts_event, m.price, m.size, m.aggressor) for m in trades]

    assert fields([m for m in out if isinstance(m, Trade)]) == fields(ref_trades)
    for inst in INSTS:
        assert raw_state(client.parser, inst) == raw_state(ref, inst)


def test_protocol_answers_ping_and_subscribe_like_okx() -> None:
    protocol = OkxProtocol(capture())
    session = Session(index=0, path="/ws/v5/public", query={})
    assert protocol.on_client_message("ping", session) == ["pong"]
    (ack,) = protocol.on_client_message(subscribe_message("subscribe", [("trades", "BTC-USDT")]), session)
    assert json.loads(ack)["event"] == "subscribe" and "trades:BTC-USDT" in session.subscriptions
    (err,) = protocol.on_client_message('{"op":"bogus"}', session)
    assert json.loads(err)["event"] == "error"


def test_subscribe_frames_batch_all_pairs() -> None:
    client = OkxClient(lambda m: None, subscriptions=PAIRS, url="ws://127.0.0.1:1")
    (frame,) = client.subscribe_frames()
    assert sorted((a["channel"], a["instId"]) for a in json.loads(frame)["args"]) == sorted(PAIRS)
    assert client.policy.keepalive.payload == "ping"


async def test_rejected_subscription_stops_the_client_with_subscription_rejected() -> None:
    import pytest

    from tradebus.adapters.common.policy import SubscriptionRejected

    frames = capture()
    protocol = OkxProtocol(frames, rejected=frozenset({"books:BTC-XXX"}))
    out: list = []
    async with LocalVenueServer(protocol, frames, lifetime=30.0) as server:
        client = OkxClient(out.append, subscriptions=[*PAIRS, ("books", "BTC-XXX")], url=server.ws_url, policy=fast_policy())
        with pytest.raises(SubscriptionRejected, match=r"okx-public: OKX rejected a subscription: code 60018 .*BTC-XXX"):
            await asyncio.wait_for(client.run(), 20)
    assert client.connections == 1  # not retried: the venue will refuse it again


async def test_server_that_stops_data_but_answers_pings_goes_stale_and_is_reconnected() -> None:
    frames = capture()
    faults = [Fault(FaultKind.SILENCE, at=300, seconds=float("inf"))]
    out = Messages()
    policy = ConnectionPolicy(
        backoff=Backoff(base=0.05, cap=0.1, min_delay=0.01, seed=3), keepalive=okx_keepalive(0.1), stale_after=1.0
    )
    async with LocalVenueServer(OkxProtocol(frames), frames, faults, lifetime=30.0) as server:
        client = OkxClient(out.append, subscriptions=PAIRS, url=server.ws_url, policy=policy)
        await run_until(client, lambda: client.connections >= 2, out, timeout=15.0)
        pings_first = server.sessions[0].received.count("ping")
    stale = [m for m in out if isinstance(m, FeedStale)]
    assert pings_first >= 5  # each "ping" of the idle client got its "pong": the connection was alive, the data was not
    assert len(stale) >= 1 and stale[0].source == "okx-public"
    assert (stale[0].ts_event - stale[0].last_message_ns) >= 1_000_000_000


async def test_feed_that_keeps_sending_data_is_never_stale_whatever_the_pings() -> None:
    frames = capture()
    out: list = []
    policy = ConnectionPolicy(
        backoff=Backoff(base=0.05, cap=0.1, min_delay=0.01, seed=3), keepalive=okx_keepalive(0.05), stale_after=1.0
    )
    async with LocalVenueServer(OkxProtocol(frames), frames, speed=2.0, lifetime=60.0) as server:
        client = OkxClient(out.append, subscriptions=PAIRS, url=server.ws_url, policy=policy)
        await run_until_replayed(client, frames[-1][1], lambda: all(client.parser.book_in_sync(i) for i in INSTS), 40.0)
    assert client.connections == 1
    assert not [m for m in out if isinstance(m, FeedStale)]


class _DeafOkx(OkxProtocol):
    """An OKX server whose connection died half-way: pings go unanswered."""

    def on_client_message(self, text: str, session: Session) -> list[str]:
        return [] if text == "ping" else super().on_client_message(text, session)


async def test_unanswered_ping_recycles_the_connection_before_the_data_watchdog_fires() -> None:
    frames = capture()
    faults = [Fault(FaultKind.SILENCE, at=300, seconds=float("inf"))]
    out = Messages()
    policy = ConnectionPolicy(
        backoff=Backoff(base=0.05, cap=0.1, min_delay=0.01, seed=3),
        keepalive=okx_keepalive(0.1, pong_timeout=0.3),
        stale_after=60.0,
    )
    async with LocalVenueServer(_DeafOkx(frames), frames, faults, lifetime=30.0) as server:
        client = OkxClient(out.append, subscriptions=PAIRS, url=server.ws_url, policy=policy)
        await run_until(client, lambda: client.connections >= 2, out, timeout=15.0)
    assert not [m for m in out if isinstance(m, FeedStale)]
