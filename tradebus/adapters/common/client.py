"""The asyncio WebSocket client base shared by the venue adapters.

:class:`WsClient` owns the connection loop and applies a
:class:`~tradebus.adapters.common.policy.ConnectionPolicy`: connect to the configured URL,
send the subscription frames for the tracked :class:`SubscriptionSet`, hand every frame
(with its local receive time) to :meth:`WsClient.on_frame` (telling its :class:`FrameListener`
where the frame's messages begin and end, as for a REST answer's through :meth:`WsClient.as_frame`), record raw frames if a
:class:`~tradebus.adapters.common.recorder.FrameRecorder` is attached, send the venue's
keep-alive, publish FeedStale and recycle the connection when the feed's market data stops
(FeedStale also when the silence is an outage whose reconnections keep failing), recycle a
connection whose keep-alive ping got no answer,
reconnect before the venue's scheduled disconnect, and after any retryable error
reconnect with jittered backoff; tell its ``connection_listeners`` of every connection
opened and every one ended (not by a stop) as it happens. A fatal error (auth, a bug in
a handler or the sink) stops :meth:`WsClient.run` by raising, credentials the venue refuses (a
key revoked while it runs, met when a private stream reconnects) with
:class:`~tradebus.execution.live.CredentialsRefused`; a subscription the venue
refuses stops it with
:class:`~tradebus.adapters.common.policy.SubscriptionRejected` on every venue (Binance:
an ``error`` reply or a refused combined-stream handshake; OKX: an ``error`` event;
Bybit: a ``success: false`` subscribe reply).

Two clocks: :attr:`WsClient.last_frame_ns` (any frame: the connection is alive, the
keep-alive's idle time and its answer) and :meth:`WsClient.last_data_ns` (frames carrying
market data: the stale-feed watchdog). A keep-alive reply (OKX ``"pong"``, Bybit
``op: ping`` answers) or a request's acknowledgement proves the connection, not the data:
a server that stops pushing data but still answers pings goes stale. A feed of trade channels
alone (``policy.quiet_data``) is silent whenever its market does not trade: its watchdog
follows :meth:`WsClient.live_ns` (any frame, or the answer to a WebSocket ping the client
sends after ``stale_after / 3`` idle), so only a connection that stops answering goes stale.
Each ``FeedStale`` is recorded (a ``stale:<feed>`` line), and for such a feed the first proof of
life after it too (a ``live:<feed>`` line: a pong is no frame), so a replay blocks and lifts as
the market guard did (:mod:`tradebus.adapters.common.recorder`). So is the end of each connection
(an ``end:<connection id>`` line, as :meth:`WsClient.on_disconnected` invalidates the books, with
the reason :func:`connection_lost` words), so a replay's books go out of sync at the same moment; a
deliberate stop ends no book's sync and is not recorded.

Venue clients subclass it and implement :meth:`WsClient.connect_url`,
:meth:`WsClient.subscribe_frames` and :meth:`WsClient.on_frame`; they route frames to
parsers through a dict of handlers keyed by stream name. :class:`StreamBookClient` is
the base of the venues whose books resync by resubscribing (OKX, Bybit): one URL, one
stateful parser, subscription keys sent in batches of ``{"op": ...}`` requests.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol, cast

from loguru import logger
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tradebus.adapters.common.policy import (
    ConnectionPolicy,
    ErrorClass,
    SubscriptionRejected,
    SubscriptionSet,
    classify_error,
)
from tradebus.adapters.common.recorder import LIVE_PREFIX, STALE_PREFIX, FrameRecorder, FrameWriter
from tradebus.adapters.common.stream_books import StreamBooks
from tradebus.adapters.common.watchdog import StaleWatchdog
from tradebus.engine.messages import FeedStale
from tradebus.execution.live import CredentialsRefused
from tradebus.errors import ParseError, VenueError

__all__ = [
    "ConnectionListener",
    "FrameListener",
    "Sink",
    "StreamBookClient",
    "StreamParser",
    "WsClient",
    "connection_lost",
]

Sink = Callable[[Any], None]
"""Where core messages go (``kernel.process``, ``bus.publish``, ``list.append`` in tests)."""

ConnectionListener = Callable[["WsClient", bool, str], None]
"""Told ``(client, connected, reason)`` when a connection opens (``reason`` empty) or ends."""


def connection_lost(reason: str) -> str:
    """Why the books of a connection that ended for ``reason`` are out of sync (live and replayed alike)."""
    return f"connection lost: {reason}"


class FrameListener(Protocol):
    """Told where the messages of each received frame begin and end (the node's router)."""

    def frame_started(self, ts_ns: int) -> None:
        """A frame received at ``ts_ns`` is about to be parsed: what reaches the sink until the end is of it."""
        ...

    def frame_ended(self) -> None:
        """The frame's messages have all reached the sink (also when it was rejected or its handling raised)."""
        ...


class WsClient(ABC):
    """Connection loop of one venue WebSocket (see the module docstring).

    Parameters
    ----------
    name
        Feed name (logs, FeedStale ``source``, recorder connection ids ``"{name}:{n}"``).
    sink
        Receives core messages.
    policy
        Reconnect/keep-alive/staleness policy.
    recorder
        Records every raw frame with its receive time, or ``None``.
    clock_ns
        Wall-clock source of receive times (``ts_init``).
    """

    def __init__(
        self,
        name: str,
        sink: Sink,
        policy: ConnectionPolicy,
        recorder: FrameWriter | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.name = name
        self.sink = sink
        self.policy = policy
        self.recorder = recorder
        self.clock_ns = clock_ns
        self.subscriptions = SubscriptionSet()
        self.watchdog = StaleWatchdog(name, policy.stale_after, self._on_stale)
        self.connections = 0
        #: Frames received over every connection; one is counted as it is handed to :meth:`on_frame`, which
        #: runs without yielding: another task that sees the count sees those frames handled.
        self.frames = 0
        #: Receive time (ns) of the latest frame of any connection (``0``: none yet), keep-alive
        #: replies included: the connection's liveness (the data's is :meth:`last_data_ns`).
        self.last_frame_ns = 0
        #: Receive time (ns) of the latest answer to a WebSocket ping of a ``quiet_data`` feed (``0``: none).
        self.last_pong_ns = 0
        self._pong_waiter: asyncio.Future[float] | None = None
        #: Time of the recorded ``FeedStale`` of a ``quiet_data`` feed whose connection has not proved
        #: live since (``0``: none): its first proof (frame or pong) is recorded.
        self._unproved_since = 0
        self.rejected = 0
        self.conn_id = ""
        self.connected = asyncio.Event()
        self._ws: ClientConnection | None = None
        self._stopping = False
        self._stop_event = asyncio.Event()
        self._last_ping = 0.0
        self._ping_sent_ns = 0
        #: Asked after every frame; ``True``: yield to the event loop before the next frame (a
        #: live venue queued requests while handling it: a burst of queued frames waits, the
        #: order goes out first). ``None``: frames are handled back to back.
        self.yield_when: Callable[[], bool] | None = None
        #: Told before and after each frame is handed to :meth:`on_frame` (``None``: nobody).
        self.frame_listener: FrameListener | None = None
        #: Told when a connection opens and when one ends other than by :meth:`stop` (each
        #: event as it happens, however short the outage: the operations layer's alerts).
        self.connection_listeners: list[ConnectionListener] = []

    # ------------------------------------------------------------ venue hooks

    @abstractmethod
    def connect_url(self) -> str:
        """URL to open (may carry the subscriptions, e.g. Binance combined streams)."""

    @abstractmethod
    def subscribe_frames(self) -> list[str]:
        """Frames to send right after connecting to (re)subscribe ``self.subscriptions``."""

    @abstractmethod
    def on_frame(self, raw: str | bytes, recv_ns: int) -> None:
        """Handle one received frame; raise :class:`ParseError` to reject it (it is logged and skipped)."""

    def last_data_ns(self) -> int:
        """Receive time (ns) of the latest frame carrying market data (``0``: none yet), whether or not it made a message.

        The base counts every frame: a venue whose keep-alive is protocol-level (Binance: the
        websockets library answers its pings) hands :meth:`on_frame` nothing else.
        """
        return self.last_frame_ns

    def live_ns(self) -> int:
        """Receive time (ns) the stale-feed watchdog and ``/health`` judge the feed by (``0``: none yet).

        The latest market data; for a ``policy.quiet_data`` feed (trade channels alone, silent
        while the market is), also the latest frame of any kind and the latest answered ping.
        """
        data = self.last_data_ns()
        if not self.policy.quiet_data:
            return data
        return max(data, self.last_frame_ns, self.last_pong_ns)

    def shown_url(self, url: str) -> str:
        """``url`` as logged (without its query; a venue hides a credential in its path here)."""
        return url.split("?")[0]

    async def before_connect(self) -> None:
        """Called before each connection attempt (e.g. fetch the listen key :meth:`connect_url` names)."""
        return

    async def on_connected(self) -> None:
        """Called after the subscription frames were sent (e.g. start book snapshots)."""
        return

    def on_disconnected(self, reason: str) -> None:
        """Called when a connection ended (e.g. invalidate order books)."""
        return

    async def on_stopped(self) -> None:
        """Called once when :meth:`run` returns (close REST sessions, flush recorders)."""
        return

    def translate_error(self, exc: Exception) -> Exception:
        """The venue's meaning of a connection error (e.g. a refused handshake that is a rejected subscription)."""
        return exc

    # ------------------------------------------------------------------- loop

    def stop(self) -> None:
        """Ask :meth:`run` to close the connection and return; no frame is handled or recorded from now on. A connection
        attempt under way (:meth:`before_connect`'s request, the handshake) ends with it, its connection closed unused."""
        self._stopping = True
        self._stop_event.set()
        ws = self._ws
        if ws is not None:
            asyncio.get_running_loop().create_task(ws.close())

    async def run(self) -> None:
        """Connect, receive and reconnect per policy until :meth:`stop` or a fatal error.

        Raises
        ------
        SubscriptionRejected
            The venue refused a subscription (named with the feed and the venue's reason).
        CredentialsRefused
            The venue refused the account's credentials (named with the feed and the venue's reason).
        VenueError
            After ``policy.max_reconnects`` consecutive failed attempts, or on a fatal error
            (the original exception is chained).
        """
        policy = self.policy
        failures = 0
        silence = asyncio.create_task(self._watch_while_down(), name=f"silence:{self.name}")
        try:
            while not self._stopping:
                reason = "closed"
                opened_before = self.connections
                try:
                    await self._connect_and_receive()
                except asyncio.CancelledError:
                    raise
                except Exception as raised:  # noqa: BLE001 - classified below; fatal ones re-raised
                    exc = self.translate_error(raised)
                    reason = f"{type(exc).__name__}: {exc}"
                    if isinstance(exc, SubscriptionRejected):
                        logger.error("{}: subscription rejected, stopping: {}", self.name, exc)
                        raise SubscriptionRejected(f"{self.name}: {exc}") from raised
                    if isinstance(exc, CredentialsRefused):  # a key revoked while the daemon runs: retrying cannot help
                        logger.error("{}: the venue refused {}, stopping: {}", self.name, exc.what, exc)
                        raise type(exc)(f"{self.name}: the venue refused {exc.what}: {exc}") from raised
                    if classify_error(exc) is ErrorClass.FATAL:
                        logger.error("{}: fatal error, stopping: {}", self.name, reason)
                        raise VenueError(f"{self.name}: fatal connection error: {reason}") from exc
                finally:
                    self._ws = None
                    was_connected = self.connected.is_set()
                    self.connected.clear()
                    if self.connections > opened_before:
                        failures = 0
                opened = self.connections > opened_before
                if self._stopping:  # a stop loses nothing (the books stay as the last frame left them): not recorded
                    self.on_disconnected("stopped")
                    break
                self._connection_ended(reason, opened)
                if was_connected:
                    self._tell_listeners(False, reason)
                failures += 1
                if policy.max_reconnects is not None and failures > policy.max_reconnects:
                    raise VenueError(f"{self.name}: gave up after {failures - 1} reconnect attempts ({reason})")
                delay = policy.backoff.next_delay(time.monotonic())
                logger.warning("{}: connection ended ({}); reconnecting in {:.2f} s", self.name, reason, delay)
                try:
                    await asyncio.wait_for(self._stop_event.wait(), delay)
                except TimeoutError:
                    pass
        finally:
            silence.cancel()
            await asyncio.gather(silence, return_exceptions=True)
            if self.recorder is not None:
                self.recorder.flush()
            await self.on_stopped()

    def _connection_ended(self, reason: str, opened: bool) -> None:
        """Record the end of the connection just ``opened`` (an ``end:`` line), then :meth:`on_disconnected`.

        A replay invalidates the books at that line as the client does here; an attempt that opened
        no connection ended nothing of it (the books are out of sync since the last one ended).
        """
        if opened and self.recorder is not None:
            self.recorder.connection_ended(self.clock_ns(), self.conn_id, reason)
        self.on_disconnected(reason)

    async def _watch_while_down(self) -> None:
        """Between connections (once one was open), publish FeedStale when the silence gets too long.

        An open connection's own timers watch it; this covers an outage whose reconnection
        attempts keep failing.
        """
        tick = min(1.0, self.policy.stale_after / 4)
        while True:
            await asyncio.sleep(tick)
            if self.connections and not self.connected.is_set():
                self._data_to_watchdog()
                self.watchdog.check(self.clock_ns())

    def _on_stale(self, msg: FeedStale) -> None:
        """Record the watchdog's ``FeedStale`` (a replay blocks from the same moment), then hand it to the sink."""
        if self.recorder is not None:
            self.recorder.write(msg.ts_init, STALE_PREFIX + self.name, str(msg.last_message_ns))
            if self.policy.quiet_data:
                self._unproved_since = msg.ts_event
        self.sink(msg)

    def _proved_live(self, recv_ns: int, proof: str) -> None:
        """Record the first proof of life (``"frame"``, ``"pong"``) after a ``FeedStale`` of a ``quiet_data`` feed.

        The market guard lifts the feed's stale block on it (:meth:`live_ns`, asked when an order
        is checked); a replay has no connection to ask, so it lifts the block at this line.
        """
        self._unproved_since = 0
        if self.recorder is not None:
            self.recorder.write(recv_ns, LIVE_PREFIX + self.name, proof)

    def _data_to_watchdog(self) -> None:
        """Tell the watchdog of the latest market data (:meth:`live_ns`; once a tick: a frame only writes its clock)."""
        live_ns = self.live_ns()
        if live_ns > self.watchdog.last_message_ns:
            self.watchdog.touch(live_ns)

    async def _connect_and_receive(self) -> None:
        policy = self.policy
        await self.before_connect()
        if self._stopping:  # stopped during it: nothing would close a connection opened now (a quiet stream waits for good)
            return
        url = self.connect_url()
        async with connect(url, open_timeout=policy.open_timeout, max_size=2**24, close_timeout=2) as ws:
            self._ws = ws
            if self._stopping:  # stopped during the handshake: stop() found no connection to close
                return
            self.connections += 1
            self.conn_id = f"{self.name}:{self.connections}"
            now = time.monotonic()
            policy.backoff.connected(now)
            self._last_ping = now
            self._ping_sent_ns = 0
            self._pong_waiter = None
            self.watchdog.start(self.clock_ns())
            logger.info("{}: connected to {} ({})", self.name, self.shown_url(url), self.conn_id)
            for frame in self.subscribe_frames():
                await ws.send(frame)
            self.connected.set()
            self._tell_listeners(True, "")
            await self.on_connected()
            timers = asyncio.create_task(self._timers(ws, now), name=f"timers:{self.conn_id}")
            try:
                await self._receive(ws)
            finally:
                timers.cancel()
                try:
                    await timers
                except asyncio.CancelledError:
                    pass

    def _tell_listeners(self, connected: bool, reason: str) -> None:
        for listener in self.connection_listeners:
            try:
                listener(self, connected, reason)
            except Exception:  # an observer's bug must not end the feed
                logger.exception("{}: a connection listener failed", self.name)

    def as_frame(self, deliver: Callable[[], None], ts_ns: int) -> None:
        """Call ``deliver`` (what hands a REST answer received at ``ts_ns`` to the sink) as one frame for the :class:`FrameListener`.

        A recording holds the answer as one line, received at ``ts_ns`` and played at that
        instant: a due alert fires before its first message and after its last, not between them
        (a sync snapshot and its quote), and they are handled at the answer's receive time, also
        when the rebuilt book carries the earlier time of the last buffered delta it applied.
        An answer received after :meth:`stop` is dropped, as a frame is (its fetch does not record it).
        """
        if self._stopping:
            return
        listener = self.frame_listener
        if listener is None:
            deliver()
            return
        listener.frame_started(ts_ns)
        try:
            deliver()
        finally:
            listener.frame_ended()

    async def _receive(self, ws: ClientConnection) -> None:
        clock = self.clock_ns
        recorder = self.recorder
        on_frame = self.on_frame
        conn = self.conn_id
        yield_when = self.yield_when
        listener = self.frame_listener
        async for raw in ws:
            if self._stopping:  # a frame read after stop() is neither handled nor recorded: its daemon has stopped
                break
            recv_ns = clock()
            self.frames += 1
            self.last_frame_ns = recv_ns
            if recorder is not None:
                if self._unproved_since and recv_ns > self._unproved_since:
                    self._proved_live(recv_ns, "frame")
                recorder.write(recv_ns, conn, raw)
            if listener is not None:
                listener.frame_started(recv_ns)
            try:
                on_frame(raw, recv_ns)
            except ParseError as exc:
                self.rejected += 1
                logger.warning("{}: frame rejected: {}", self.name, exc)
            finally:
                if listener is not None:
                    listener.frame_ended()
            if yield_when is not None and yield_when():
                await asyncio.sleep(0)

    async def _timers(self, ws: ClientConnection, opened: float) -> None:
        """Keep-alive (and its answer), stale-feed watchdog and scheduled reconnect for one connection."""
        policy = self.policy
        keepalive = policy.keepalive
        watchdog = self.watchdog
        tick = min(1.0, policy.stale_after / 4, keepalive.interval / 4 if keepalive.interval else 1.0)
        if keepalive.pong_timeout:
            tick = min(tick, keepalive.pong_timeout / 4)
        for _ in itertools.count():
            await asyncio.sleep(tick)
            now = time.monotonic()
            now_ns = self.clock_ns()
            if keepalive.unanswered(self._ping_sent_ns, self.last_frame_ns, now_ns):
                logger.warning(
                    "{}: no answer to the keep-alive within {:.1f} s, recycling connection {}",
                    self.name, keepalive.pong_timeout, self.conn_id,
                )
                await ws.close(1001, "keep-alive unanswered")
                return
            idle = (now_ns - max(self.last_frame_ns, watchdog.last_message_ns)) / 1e9
            if keepalive.due(idle, now - self._last_ping):
                self._last_ping = now
                if self.last_frame_ns >= self._ping_sent_ns:  # the wait for an answer starts at the first unanswered ping
                    self._ping_sent_ns = now_ns
                await ws.send(keepalive.payload)
            if policy.quiet_data:
                await self._ping_when_quiet(ws, now_ns)
            self._data_to_watchdog()
            if watchdog.check(now_ns):
                logger.warning("{}: no market data, recycling connection {}", self.name, self.conn_id)
                await ws.close(1001, "stale feed")
                return
            if policy.max_connection_age is not None and now - opened >= policy.max_connection_age:
                logger.info("{}: connection {} reached its scheduled age, reconnecting", self.name, self.conn_id)
                await ws.close(1000, "scheduled reconnect")
                return

    async def _ping_when_quiet(self, ws: ClientConnection, now_ns: int) -> None:
        """Ping a quiet connection (idle ``stale_after / 3``; one ping at a time): its answer refreshes :meth:`live_ns`."""
        if self._pong_waiter is not None and not self._pong_waiter.done():
            return
        if now_ns - max(self.live_ns(), self.watchdog.last_message_ns) < self.policy.stale_after * 1e9 / 3:
            return
        try:
            waiter = cast("asyncio.Future[float]", await ws.ping())  # websockets returns the pong's future
        except ConnectionClosed:
            return
        self._pong_waiter = waiter
        waiter.add_done_callback(self._on_pong)

    def _on_pong(self, waiter: asyncio.Future[float]) -> None:
        if not waiter.cancelled() and waiter.exception() is None:
            self.last_pong_ns = pong_ns = self.clock_ns()
            if self._unproved_since and pong_ns > self._unproved_since:
                self._proved_live(pong_ns, "pong")

    async def send(self, frame: str) -> None:
        """Send a frame on the current connection (no-op when disconnected)."""
        ws = self._ws
        if ws is None:
            return
        try:
            await ws.send(frame)
        except ConnectionClosed:
            logger.debug("{}: send on a closed connection dropped", self.name)


class StreamParser(Protocol):
    """What :class:`StreamBookClient` needs of its venue parser."""

    books: StreamBooks
    data_ns: int
    """Receive time of the latest push of a channel (not a keep-alive reply nor an acknowledgement)."""

    def parse_frame(self, raw: str | bytes, recv_ns: int) -> list[Any]:
        """Core messages of one frame (raises :class:`ParseError` to reject it)."""
        ...

    def invalidate_books(self, reason: str) -> None:
        """Every book is out of sync until its next snapshot."""
        ...


class StreamBookClient(WsClient):
    """A venue connection whose books get their snapshots by (re)subscribing (OKX, Bybit).

    Subscriptions are the venue's stream keys (OKX ``"books:BTC-USDT"``, Bybit
    ``"orderbook.200.BTCUSDT"``), sent after every (re)connect in batches of
    :attr:`batch` with :meth:`op_message`. Every frame goes through :attr:`parser`
    into the sink. A failed book calls :meth:`resubscribe` (unsubscribe, subscribe:
    the venue answers with a fresh snapshot); a dropped connection marks every book
    out of sync until the snapshots the resubscription after the reconnect brings.

    Subclasses set :attr:`batch`, implement :meth:`op_message` and create
    ``self.parser`` with ``resubscribe=self.resubscribe`` before using the client.

    Attributes
    ----------
    resubscriptions
        Books resubscribed to get a fresh snapshot.
    """

    batch: int = 10
    """Stream keys per subscribe request."""
    parser: StreamParser

    def __init__(
        self,
        name: str,
        sink: Sink,
        policy: ConnectionPolicy,
        url: str,
        recorder: FrameRecorder | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        super().__init__(name, sink, policy, recorder, clock_ns)
        self.url = url
        self.resubscriptions = 0

    @abstractmethod
    def op_message(self, op: str, keys: Sequence[str]) -> str:
        """The venue request ``op`` (``"subscribe"``/``"unsubscribe"``) for stream ``keys``, as JSON text."""

    async def add_subscriptions(self, keys: Iterable[str]) -> None:
        """Add stream keys (sent now if connected, and after every reconnect)."""
        added = self.subscriptions.add(keys)
        for i in range(0, len(added), self.batch):
            await self.send(self.op_message("subscribe", added[i : i + self.batch]))

    async def resubscribe(self, key: str) -> None:
        """Unsubscribe and subscribe ``key`` again: the venue sends a fresh book snapshot."""
        self.resubscriptions += 1
        logger.info("{}: resubscribing {} for a fresh snapshot", self.name, key)
        await self.send(self.op_message("unsubscribe", [key]))
        await self.send(self.op_message("subscribe", [key]))

    def connect_url(self) -> str:
        return self.url

    def last_data_ns(self) -> int:
        """The parser's :attr:`StreamParser.data_ns`: keep-alive replies and acknowledgements do not count."""
        return self.parser.data_ns

    def subscribe_frames(self) -> list[str]:
        return [self.op_message("subscribe", keys) for keys in self.subscriptions.batches(self.batch)]

    def on_frame(self, raw: str | bytes, recv_ns: int) -> None:
        sink = self.sink
        for msg in self.parser.parse_frame(raw, recv_ns):
            sink(msg)

    def on_disconnected(self, reason: str) -> None:
        if self._stopping:
            return  # a stop loses nothing: the books stay as the last frame left them, as a replay has them
        self.parser.invalidate_books(connection_lost(reason))

    async def on_stopped(self) -> None:
        await self.parser.books.close()
