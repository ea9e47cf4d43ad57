"""The local venue emulator with Binance's dialect: subscriptions, REST, faults, bounded life."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from loguru import logger
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedError

from tradebus.adapters.binance.emulator import BinanceProtocol, split_capture
from tradebus.adapters.common.local_server import Fault, FaultKind, LocalVenueServer, Session, VenueProtocol
from tradebus.adapters.common.recorder import read_frames
from tradebus.adapters.okx.client import subscribe_message
from tradebus.adapters.okx.emulator import OkxProtocol
from tradebus.errors import ConfigError, VenueError

from .binance_testdata import capture

LINES = capture()[:600]
FRAMES, SNAPSHOT = split_capture(LINES)
TRADES = [raw for _, raw in FRAMES if "@trade" in raw]
STREAMS = "/stream?streams=btcusdt@trade"
OKX_PUBLIC = Path(__file__).parents[1] / "fixtures" / "okx" / "okx_v5_public_2022-05-13.jsonl.gz"
# The test clients take every frame into an unbounded queue (``max_queue=None``): a client that stops
# reading with frames still coming pauses its socket, never sees the server's close frame and only
# closes after websockets' 10 s close timeout.


async def recv_all(url: str, n: int, timeout: float = 5.0) -> list[str]:
    out: list[str] = []
    async with connect(url, max_queue=None) as ws:
        while len(out) < n:
            out.append(await asyncio.wait_for(ws.recv(), timeout))
    return out


def http_get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


async def test_combined_stream_url_subscribes_and_only_subscribed_frames_are_sent() -> None:
    async with LocalVenueServer(BinanceProtocol(SNAPSHOT), FRAMES, lifetime=10) as srv:
        got = await recv_all(srv.ws_url + STREAMS, len(TRADES))
    assert got == TRADES


async def test_subscribe_method_is_acknowledged_and_ws_path_sends_bare_payloads() -> None:
    async with LocalVenueServer(BinanceProtocol(SNAPSHOT), FRAMES, lifetime=10) as srv:
        async with connect(srv.ws_url + "/ws") as ws:
            await ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": 3}))
            assert json.loads(await ws.recv()) == {"result": None, "id": 3}
            first = json.loads(await ws.recv())
            await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 4}))
            replies = [json.loads(await asyncio.wait_for(ws.recv(), 5)) for _ in range(len(TRADES))]
    assert first == json.loads(TRADES[0])["data"]
    assert {"result": ["btcusdt@trade"], "id": 4} in replies


async def test_bad_requests_get_binance_error_objects() -> None:
    async with LocalVenueServer(BinanceProtocol(SNAPSHOT), FRAMES, lifetime=10) as srv:
        async with connect(srv.ws_url + "/ws") as ws:
            await ws.send("not json")
            assert json.loads(await ws.recv())["error"]["code"] == 3
            await ws.send(json.dumps({"method": "SUBSCRIBE", "params": [1], "id": 9}))
            reply = json.loads(await ws.recv())
    assert reply["error"]["code"] == 2 and reply["id"] == 9


async def test_rest_depth_snapshot_and_errors() -> None:
    proto = BinanceProtocol(SNAPSHOT, http_failures=1)
    async with LocalVenueServer(proto, FRAMES, lifetime=10) as srv:
        url = srv.http_url + "/api/v3/depth?symbol=BTCUSDT&limit=1000"
        first = await asyncio.to_thread(http_get, url)
        second = await asyncio.to_thread(http_get, url)
        missing = await asyncio.to_thread(http_get, srv.http_url + "/api/v3/nothing")
        no_symbol = await asyncio.to_thread(http_get, srv.http_url + "/api/v3/depth")
    assert first[0] == 503
    assert second == (200, SNAPSHOT.encode())
    assert missing[0] == 404 and no_symbol[0] == 400
    assert proto.depth_requests == 3


async def test_snapshot_served_after_replay_is_rebuilt_at_the_cursor() -> None:
    depth = [raw for _, raw in FRAMES if "@depth" in raw]
    async with LocalVenueServer(BinanceProtocol(SNAPSHOT), FRAMES, lifetime=10) as srv:
        await recv_all(srv.ws_url + "/stream?streams=btcusdt@depth@100ms", len(depth))
        status, body = await asyncio.to_thread(http_get, srv.http_url + "/api/v3/depth?symbol=BTCUSDT&limit=5")
    snap = json.loads(body)
    assert status == 200 and snap["lastUpdateId"] == json.loads(depth[-1])["data"]["u"]
    assert len(snap["bids"]) == 5 and float(snap["bids"][0][0]) < float(snap["asks"][0][0])


class FedBinanceProtocol(BinanceProtocol):
    """Binance's plugin noting when (monotonic seconds) each recorded frame reached :meth:`on_sent`."""

    def __init__(self, snapshot: str) -> None:
        super().__init__(snapshot)
        self.fed: list[tuple[float, int]] = []

    def on_sent(self, raw: str) -> None:
        self.fed.append((time.monotonic(), RECV_NS[id(raw)]))
        super().on_sent(raw)


RECV_NS = {id(raw): recv_ns for recv_ns, raw in FRAMES}


async def test_a_paced_replay_hands_unsubscribed_frames_to_the_plugin_no_earlier_than_their_recorded_time() -> None:
    # a client on trades only: the quotes and depth diffs between two trades reach the plugin (an account
    # emulator's quotes, the REST depth) all the same, but not before the replay clock reaches them
    speed = 2.0
    proto = FedBinanceProtocol(SNAPSHOT)
    async with LocalVenueServer(proto, FRAMES, speed=speed, lifetime=10) as srv:
        subscribed_at = time.monotonic()  # the replay clock starts with the subscription, after this
        got = await recv_all(srv.ws_url + STREAMS, 3)
    assert got == TRADES[:3] and len(proto.fed) > 3
    t0 = FRAMES[0][0]
    ahead = [
        (recv_ns - t0) / 1e9 - (wall - subscribed_at) * speed
        for wall, recv_ns in proto.fed
        if (recv_ns - t0) / 1e9 > (wall - subscribed_at) * speed + 0.005
    ]
    assert ahead == []  # seconds of recording the plugin held ahead of the replay clock


async def _dropped(url: str) -> float:
    """Read ``url`` until the server drops the connection; the time the first frame arrived."""
    first: list[float] = []
    with pytest.raises(ConnectionClosedError):
        async with connect(url, max_queue=None) as ws:
            while True:
                await asyncio.wait_for(ws.recv(), 5)
                first = first or [time.monotonic()]
    return first[0]


async def test_a_paced_drop_hands_the_frames_the_client_misses_to_the_plugin_at_their_recorded_times() -> None:
    speed = 2.0
    proto = FedBinanceProtocol(SNAPSHOT)
    faults = [Fault(FaultKind.DROP, at=1, match="@trade", missed=300)]
    async with LocalVenueServer(proto, FRAMES, faults, speed=speed, lifetime=10) as srv:
        subscribed_at = time.monotonic()  # the replay clock starts with the subscription, after this
        await _dropped(srv.ws_url + STREAMS)
        missed_middle = [raw for _, raw in FRAMES].index(TRADES[1]) + 150
        while srv.cursor < missed_middle:  # the venue goes on printing with no client connected
            await asyncio.sleep(0.05)
    t0 = FRAMES[0][0]
    ahead = [
        (recv_ns - t0) / 1e9 - (wall - subscribed_at) * speed
        for wall, recv_ns in proto.fed
        if (recv_ns - t0) / 1e9 > (wall - subscribed_at) * speed + 0.005
    ]
    assert ahead == []  # seconds of recording the plugin held ahead of the replay clock
    assert [recv_ns for _, recv_ns in proto.fed] == [recv_ns for recv_ns, _ in FRAMES[: len(proto.fed)]]  # once, in order


async def test_a_paced_reconnect_resumes_at_the_venues_now_not_where_the_client_left() -> None:
    speed = 2.0
    recorded = {raw: (recv_ns - FRAMES[0][0]) / 1e9 for recv_ns, raw in FRAMES}
    faults = [Fault(FaultKind.DROP, at=1, match="@trade")]
    async with LocalVenueServer(BinanceProtocol(SNAPSHOT), FRAMES, faults, resume_overlap=3, speed=speed, lifetime=10) as srv:
        first_at = await _dropped(srv.ws_url + STREAMS)  # the clock started before trade 0 (at +0.151 s) arrived
        await asyncio.sleep(0.75)  # away while the venue prints 1.5 s of recording
        reconnect_at = time.monotonic()
        again = await recv_all(srv.ws_url + STREAMS, 4)
    venue_now = recorded[TRADES[0]] + (reconnect_at - first_at) * speed  # at least
    start = TRADES.index(again[0])
    assert again == TRADES[start : start + 4]
    assert recorded[again[0]] > venue_now - 0.2  # the 3 frames of overlap are ~20 ms of recording


async def test_a_held_paced_replay_waits_for_its_next_client_and_resumes_where_the_last_left() -> None:
    """``hold=True``: the 4.1 s recording at speed 20 would be printed out 0.2 s after the first subscription;
    held, the clock stops while no client streams, and one that comes back 0.5 s later gets the trades from
    where the dropped one left off (the 3 frames of overlap before trade 1, which it never got), not the end."""
    faults = [Fault(FaultKind.DROP, at=1, match="@trade")]
    async with LocalVenueServer(BinanceProtocol(SNAPSHOT), FRAMES, faults, resume_overlap=3, speed=20.0, lifetime=10, hold=True) as srv:
        await _dropped(srv.ws_url + STREAMS)
        await asyncio.sleep(0.5)  # away past the recording's end on a clock that ran on
        again = await recv_all(srv.ws_url + STREAMS, 6)
    start = TRADES.index(again[0])
    assert start <= 1 and again == TRADES[start : start + 6]


@pytest.mark.parametrize(
    ("fault", "check"),
    [
        (Fault(FaultKind.SKIP, at=2, match="@trade"), lambda got: got == TRADES[:2] + TRADES[3:6]),
        (Fault(FaultKind.GARBLE, at=1), lambda got: got[1] == TRADES[1][: len(TRADES[1]) // 2]),
        (Fault(FaultKind.UNKNOWN, at=1), lambda got: "someNewEvent" in got[1] and got[2] == TRADES[1]),
        (
            Fault(FaultKind.CORRUPT, at=0, field="p", value="-1"),
            lambda got: json.loads(got[0])["data"]["p"] == "-1" and got[1:] == TRADES[1:5],
        ),
        (Fault(FaultKind.DELAY, at=1, seconds=0.05), lambda got: got == TRADES[:5]),
    ],
    ids=["skip", "garble", "unknown", "corrupt", "delay"],
)
async def test_fault_injection(fault: Fault, check: object) -> None:
    async with LocalVenueServer(BinanceProtocol(SNAPSHOT), FRAMES, [fault], lifetime=10) as srv:
        got = await recv_all(srv.ws_url + STREAMS, 5)
    assert check(got)  # type: ignore[operator]


async def test_drop_fault_aborts_and_reconnect_resumes_with_overlap() -> None:
    faults = [Fault(FaultKind.DROP, at=4, match="@trade")]
    async with LocalVenueServer(BinanceProtocol(SNAPSHOT), FRAMES, faults, resume_overlap=3, lifetime=10) as srv:
        got: list[str] = []
        with pytest.raises(ConnectionClosedError):
            async with connect(srv.ws_url + STREAMS, max_queue=None) as ws:
                while True:
                    got.append(await asyncio.wait_for(ws.recv(), 5))
        again = await recv_all(srv.ws_url + STREAMS, 6)
    assert got == TRADES[:4]
    start = TRADES.index(again[0])
    assert start < 4 and again == TRADES[start : start + 6]  # overlap re-sends, nothing is lost


async def test_silence_fault_sends_nothing_for_the_given_time() -> None:
    faults = [Fault(FaultKind.SILENCE, at=2, seconds=float("inf"))]
    async with LocalVenueServer(BinanceProtocol(SNAPSHOT), FRAMES, faults, lifetime=10) as srv:
        async with connect(srv.ws_url + STREAMS) as ws:
            got = [await asyncio.wait_for(ws.recv(), 5) for _ in range(2)]
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(ws.recv(), 0.3)
    assert got == TRADES[:2]


async def test_server_stops_by_itself_after_its_lifetime() -> None:
    srv = LocalVenueServer(BinanceProtocol(SNAPSHOT), FRAMES, lifetime=0.2)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await srv.start()
    await asyncio.wait_for(srv.wait_stopped(), 5)
    assert loop.time() - started >= 0.2 and srv._server is None
    with pytest.raises(OSError):
        async with connect(srv.ws_url + STREAMS, open_timeout=1):
            pass


async def test_connection_limit_refuses_extra_clients() -> None:
    async with LocalVenueServer(BinanceProtocol(SNAPSHOT), FRAMES, lifetime=10, max_connections=1) as srv:
        async with connect(srv.ws_url + STREAMS, max_queue=None):
            with pytest.raises(Exception, match="503"):
                async with connect(srv.ws_url + STREAMS):
                    pass


class EchoProtocol(VenueProtocol):
    """A minimal plugin: every frame is one topic; 'sub' subscribes; 'ping' -> 'pong'."""

    name = "echo"

    def on_client_message(self, text: str, session: Session) -> list[str]:
        if text == "ping":
            return ["pong"]
        session.subscribe([text])
        return [f"ack {text}"]

    def topic_of(self, raw: str) -> str | None:
        return raw.split(":", 1)[0]


async def test_a_plugin_only_needs_topic_of_and_on_client_message() -> None:
    frames = [(i, f"t{i % 2}:{i}") for i in range(6)]
    async with LocalVenueServer(EchoProtocol(), frames, lifetime=10) as srv:
        async with connect(srv.ws_url) as ws:
            await ws.send("ping")
            assert await ws.recv() == "pong"
            await ws.send("t1")
            got = [await asyncio.wait_for(ws.recv(), 5) for _ in range(4)]
    assert got == ["ack t1", "t1:1", "t1:3", "t1:5"]
    assert srv.sessions[0].received == ["ping", "t1"]


def test_bad_server_parameters_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="speed"):
        LocalVenueServer(EchoProtocol(), [], speed=0)
    with pytest.raises(ConfigError, match="stop_timeout must be > 0, got 0"):
        LocalVenueServer(EchoProtocol(), [], stop_timeout=0)


async def wait_until(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Return once ``condition()`` holds (checked as the loop turns); fail naming ``what`` after ``timeout`` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, f"not within {timeout} s: {what}"
        await asyncio.sleep(0.01)


async def test_an_unbounded_server_forgets_the_sessions_of_closed_connections() -> None:
    """A server of max_connections=None (`tradebus serve`) kept the session of every connection of its life, and
    its OKX plugin the book state of each: a serve with a daemon reconnecting for days grew without bound (200
    connections: 200 sessions); now it holds the open connections' only and the plugin forgets a closed one's."""
    frames = [(t, raw) for t, _, raw in read_frames(OKX_PUBLIC)]
    protocol = OkxProtocol(frames)
    subscribe = subscribe_message("subscribe", [("books", "BTC-USDT")])
    async with LocalVenueServer(protocol, frames, lifetime=600, max_connections=None) as srv:
        async with connect(srv.ws_url, max_queue=None) as ws:
            await ws.send(subscribe)
            await wait_until(lambda: srv.cursor == len(frames), "the recording streamed")
        for n in range(200):  # each gets the book's snapshot at once (the recorded one went by)
            async with connect(srv.ws_url, max_queue=None) as ws:
                await ws.send(subscribe)
                assert json.loads(await asyncio.wait_for(ws.recv(), 60))["event"] == "subscribe", n
        await wait_until(lambda: not srv.sessions, "every session forgotten")
        assert srv.connections == 201
        assert protocol.snapshots_served == 200  # the book state the plugin kept per connection: forgotten too
        assert not protocol._sent_upto and not protocol._pending


@pytest.mark.parametrize(
    "hold", ["gate", Fault(FaultKind.DELAY, at=0, seconds=3600), Fault(FaultKind.SILENCE, at=0, seconds=3600)],
    ids=["gate", "delay", "silence"],
)
async def test_a_stop_ends_a_connection_held_in_a_gate_or_a_fault(hold: object) -> None:
    """A server stopped while a connection's frame was held (a test's gate not yet opened, an hour's DELAY or
    SILENCE) never returned from stop(): it waited for that connection's handling to end; now the hold ends with
    the server."""
    never = asyncio.Event()
    held = asyncio.Event()

    async def gate(raw: str) -> None:
        held.set()
        await never.wait()

    faults = [hold] if isinstance(hold, Fault) else []
    srv = LocalVenueServer(
        BinanceProtocol(SNAPSHOT), FRAMES, faults, lifetime=600, gate=gate if hold == "gate" else None
    )
    await srv.start()
    async with connect(srv.ws_url + STREAMS, max_queue=None):
        await wait_until(lambda: held.is_set() or bool(srv._fired), "the first frame held")
        await asyncio.wait_for(srv.stop(), 60)
    assert not never.is_set()


async def test_a_stop_that_a_connection_outlives_is_an_error_naming_it() -> None:
    """The bound of stop(): a gate that goes on waiting when cancelled holds its connection past ``stop_timeout``,
    and stop() says so rather than wait for ever."""
    never = asyncio.Event()
    held = asyncio.Event()

    async def stubborn_gate(raw: str) -> None:
        held.set()
        try:
            await never.wait()
        except asyncio.CancelledError:
            await never.wait()  # withstands the first cancellation (the stop), not the second

    srv = LocalVenueServer(BinanceProtocol(SNAPSHOT), FRAMES, lifetime=600, gate=stubborn_gate, stop_timeout=0.5)
    await srv.start()
    async with connect(srv.ws_url + STREAMS, max_queue=None, close_timeout=0.1):
        await wait_until(held.is_set, "the first frame held")
        with pytest.raises(VenueError, match=r"local binance server: 1 connection\(s\) still handled 0.5 s after the server stopped"):
            await asyncio.wait_for(srv.stop(), 60)


async def test_an_error_in_the_body_is_raised_though_the_stop_then_outlives_its_bound() -> None:
    """``async with LocalVenueServer(...)`` whose body failed (a test's assertion) while a connection was held past
    ``stop_timeout``: the stop's VenueError replaced the assertion, shown only as its context. The body's error is
    raised now, noting the stop's failure, which is logged at ERROR."""
    never = asyncio.Event()
    held = asyncio.Event()
    errors: list[str] = []

    async def stubborn_gate(raw: str) -> None:
        held.set()
        try:
            await never.wait()
        except asyncio.CancelledError:
            await never.wait()  # withstands the first cancellation (the stop), not the second

    sink = logger.add(lambda m: errors.append(m.record["message"]), level="ERROR")
    try:
        with pytest.raises(AssertionError, match="the body's own failure") as raised:
            async with LocalVenueServer(BinanceProtocol(SNAPSHOT), FRAMES, lifetime=600, gate=stubborn_gate, stop_timeout=0.5) as srv:
                async with connect(srv.ws_url + STREAMS, max_queue=None, close_timeout=0.1):
                    await wait_until(held.is_set, "the first frame held")
                raise AssertionError("the body's own failure")
    finally:
        logger.remove(sink)
    stuck = "local binance server: 1 connection(s) still handled 0.5 s after the server stopped"
    assert any(stuck in note for note in raised.value.__notes__)
    assert [e for e in errors if stuck in e and "stopped after AssertionError" in e]
