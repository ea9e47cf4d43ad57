"""A local venue emulator for tests: a real websockets server on 127.0.0.1 replaying recorded frames.

The server is venue-agnostic; a :class:`VenueProtocol` plugin speaks the venue's
dialect (how subscriptions are made and acknowledged, which stream a frame belongs
to, application pings, REST endpoints such as the depth snapshot). Binance's plugin
lives in :mod:`tradebus.adapters.binance.emulator`; OKX/Bybit plugins subclass
:class:`StreamBookProtocol`, which serves the in-stream book snapshot a late
(re)subscription gets from those venues.

Replay model
------------
The server holds one list of recorded frames ``(recv_ns, raw)`` and one cursor over it
(the frames the venue has printed; :meth:`VenueProtocol.on_sent` sees each once, in order).
A connection starts sending once it has at least one subscription, from
``max(0, cursor - resume_overlap)`` — so a client that reconnects sees a few frames
again (to exercise trade de-duplication). Only frames whose
:meth:`VenueProtocol.topic_of` is subscribed (or ``None``: sent to everyone) are sent.

``speed=None`` sends as fast as the socket drains, and the cursor only moves as connections
send; each stream (topic) moves only as connections subscribed to it read it: a connection starts
each stream it subscribes where the connections before it left that stream (less the overlap, counted
back from the cursor), so two clients on different streams (a daemon's two feeds) each read every frame
of theirs once whichever runs ahead, and a client that reconnects misses nothing. ``speed=k`` runs one replay clock for the whole
server from the first subscription: recording time = ``t0 + (wall - wall0) * k`` (``t0`` the
first frame's). Every frame is printed (handed to ``on_sent``) when the clock reaches it, sent
or not, by the connections streaming or, while none is (all dropped, hung or silenced for good),
by the server itself: no plugin state runs ahead of the clock, and a connection made later (a
reconnect, a second client) starts at the venue's now, with the ``resume_overlap`` frames before it.
With ``hold=True`` the paced clock stops instead while no connection streams (nothing is printed) and
goes on when one streams again: a restarted client goes on where the last one left off, at the pace
kept, however long it took to come back.
When the recording is exhausted the connection stays open and silent
(``close_at_end=False``) or is closed normally.

Fault injection
---------------
Each :class:`Fault` fires once, on connection number ``connection`` (0 = first), when
that connection is about to send its ``at``-th frame (0-based) among the frames whose
raw text contains ``match``:

``DROP``      abort the TCP connection (client sees an abnormal close, code 1006); with ``missed=n``
              the client misses the dropped frame and ``n - 1`` more: the next connection starts after
              them (less the resume overlap). Unpaced, the cursor moves past them at once (the plugin
              sees them go by, as its REST history); paced, they go by at their recorded times
``DELAY``     sleep ``seconds`` before sending the frame
``GARBLE``    send the frame cut in half (invalid JSON) instead
``SKIP``      do not send the frame (a sequence gap for book streams)
``SILENCE``   send nothing for ``seconds`` (``math.inf``: until the server stops); the connection stays
              alive: client messages are still answered (application pings) and so are WebSocket pings
``HANG``      the connection dies without a close: nothing more is read or sent on it (pings go
              unanswered) until the client closes it or the server stops
``UNKNOWN``   send the plugin's unknown-message-type frame before the frame
``CORRUPT``   send the frame with ``field`` replaced by ``value`` (plugin decides where the field lives)

Bounded: the server stops itself after ``lifetime`` seconds (a held ``gate`` or ``http_gate``, a
DELAY or SILENCE ends there too), its :meth:`LocalVenueServer.stop` waits at most ``stop_timeout``
seconds for its connections to end, and at most
``max_connections`` connections are accepted over its life (``None``: any number, as
``tradebus serve`` takes a daemon's restarts and reconnections for as long as it runs).
:attr:`LocalVenueServer.sessions` holds the session of every connection of a bounded server's
life (the tests read a closed connection's), and only those of the open connections of an
unbounded one, which forgets a session (and its plugin its state, :meth:`VenueProtocol.on_disconnect`)
as its connection ends.
"""

from __future__ import annotations

import asyncio
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from loguru import logger
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from tradebus.errors import ConfigError, VenueError

__all__ = ["Fault", "FaultKind", "LocalVenueServer", "Session", "StreamBookProtocol", "VenueProtocol"]


class FaultKind(StrEnum):
    """What a :class:`Fault` does (see the module docstring)."""

    DROP = "DROP"
    DELAY = "DELAY"
    GARBLE = "GARBLE"
    SKIP = "SKIP"
    SILENCE = "SILENCE"
    HANG = "HANG"
    UNKNOWN = "UNKNOWN"
    CORRUPT = "CORRUPT"


@dataclass(frozen=True)
class Fault:
    """One injected fault.

    Parameters
    ----------
    kind
        :class:`FaultKind`.
    at
        0-based index, among this connection's frames containing ``match``, of the frame it hits.
    match
        Substring selecting the frames ``at`` counts (``""``: every frame).
    connection
        Connection number it applies to (0 = the first accepted connection).
    seconds
        For DELAY and SILENCE.
    field, value
        For CORRUPT: the field to overwrite and its new value.
    missed
        For DROP: frames printed while the client is away (see the module docstring).
    """

    kind: FaultKind
    at: int
    match: str = ""
    connection: int = 0
    seconds: float = 0.0
    field: str = ""
    value: Any = None
    missed: int = 0


@dataclass
class Session:
    """State of one client connection, shared with the protocol plugin."""

    index: int
    path: str
    query: dict[str, list[str]]
    subscriptions: set[str] = field(default_factory=set)
    subscribed: asyncio.Event = field(default_factory=asyncio.Event)
    received: list[str] = field(default_factory=list)
    sent: int = 0

    def subscribe(self, topics: Sequence[str]) -> None:
        """Add topics (sets the ``subscribed`` event)."""
        self.subscriptions.update(topics)
        if self.subscriptions:
            self.subscribed.set()

    def unsubscribe(self, topics: Sequence[str]) -> None:
        """Remove topics."""
        self.subscriptions.difference_update(topics)


class VenueProtocol(ABC):
    """A venue dialect for :class:`LocalVenueServer`.

    Implement :meth:`topic_of` and :meth:`on_client_message`; override the rest as needed.
    """

    name: str = "venue"

    def on_connect(self, session: Session) -> list[str]:
        """Frames to send right after the handshake; may subscribe from the URL (``session.query``)."""
        return []

    @abstractmethod
    def on_client_message(self, text: str, session: Session) -> list[str]:
        """Handle a client frame (subscribe, unsubscribe, ping...); return the replies to send."""

    @abstractmethod
    def topic_of(self, raw: str) -> str | None:
        """The subscription topic a recorded frame belongs to (``None``: send it to every connection)."""

    def is_stream_frame(self, raw: str) -> bool:
        """Whether a recorded frame is data of one of this venue's streams (not a control frame, not another
        venue's). Default: it has a topic."""
        return self.topic_of(raw) is not None

    def render(self, raw: str, session: Session) -> str:
        """The frame as sent to this session (default: unchanged)."""
        return raw

    def on_sent(self, raw: str) -> None:
        """Called with each recorded frame the server moved its cursor past (sent, or skipped by a fault)."""
        return

    def on_disconnect(self, session: Session) -> None:
        """Called once the connection of ``session`` has ended: forget what the plugin keeps of it."""
        return

    def http(self, path: str, query: dict[str, list[str]]) -> tuple[int, str] | None:
        """Answer a plain HTTP GET (REST endpoint): ``(status, json body)``, or ``None`` for 404."""
        return None

    def refuse_handshake(self, path: str, query: dict[str, list[str]]) -> tuple[int, str] | None:
        """``(status, json body)`` to refuse a WebSocket handshake on ``path?query``, or ``None`` to accept it."""
        return None

    def unknown_message(self) -> str:
        """A frame of a type the client does not know (for the UNKNOWN fault)."""
        return '{"e":"someNewEvent","E":0}'

    def corrupt(self, raw: str, field_name: str, value: Any) -> str:
        """``raw`` with ``field_name`` set to ``value`` (for the CORRUPT fault)."""
        return raw


class StreamBookProtocol(VenueProtocol):
    """A venue whose books start with an in-stream snapshot after each subscription (OKX, Bybit).

    The plugin rebuilds every recorded book from the frames the server has replayed
    (:meth:`apply_book`). A subscription to a book made after its recorded snapshot
    went by (a resubscribe, a reconnect) gets a snapshot of the book in place of the
    next recorded update of that book (the update is folded into it), so snapshot and
    updates reach the session in stream order; at once, with the subscribe reply, when
    the recording holds no further update. Recorded updates already contained in a
    snapshot are not re-sent to that session.

    Parameters
    ----------
    frames
        The same ``(recv_ns, raw)`` list given to the server (book frames are indexed by identity).
    """

    def __init__(self, frames: Sequence[tuple[int, str]]) -> None:
        self._ordinal: dict[int, tuple[str, int]] = {}
        counts: dict[str, int] = {}
        for _, raw in frames:
            key = self.book_key(raw)
            if key is not None:
                counts[key] = counts.get(key, 0) + 1
                self._ordinal[id(raw)] = (key, counts[key])
        self._total = counts
        self._applied: dict[str, int] = {}
        self._sent_upto: dict[tuple[int, str], int] = {}
        self._pending: set[tuple[int, str]] = set()
        self.snapshots_served = 0

    # ------------------------------------------------------------- venue hooks

    @abstractmethod
    def book_key(self, raw: str) -> str | None:
        """The book stream (subscription topic) of a recorded book data frame, ``None`` for other frames."""

    @abstractmethod
    def apply_book(self, key: str, raw: str) -> None:
        """Apply a recorded book frame of stream ``key`` to the plugin's copy of that book."""

    @abstractmethod
    def book_ready(self, key: str) -> bool:
        """Whether the plugin's copy of book ``key`` holds a snapshot."""

    @abstractmethod
    def snapshot_frame(self, key: str) -> str:
        """A venue snapshot frame of the plugin's current copy of book ``key``."""

    # ----------------------------------------------------------------- shared

    def subscribe_book(self, key: str, session: Session) -> list[str]:
        """Book part of subscribing ``session`` to ``key``: the snapshot now, or later in place of the next update."""
        if not self.book_ready(key):
            return []  # the recorded snapshot is still ahead: the session gets it in stream order
        if self._applied[key] >= self._total[key]:
            self._sent_upto[(session.index, key)] = self._applied[key]
            self.snapshots_served += 1
            return [self.snapshot_frame(key)]
        self._pending.add((session.index, key))
        return []

    def render(self, raw: str, session: Session) -> str | None:  # type: ignore[override]
        """The frame for this session; ``None`` (not sent) for book updates its snapshot already holds."""
        entry = self._ordinal.get(id(raw))
        if entry is None:
            return raw
        key, ordinal = entry
        marker = (session.index, key)
        if marker in self._pending:
            if ordinal <= self._applied.get(key, 0):
                return None
            self._apply(raw, key, ordinal)
            self._pending.discard(marker)
            self._sent_upto[marker] = ordinal
            self.snapshots_served += 1
            return self.snapshot_frame(key)
        if ordinal <= self._sent_upto.get(marker, 0):
            return None
        return raw

    def on_disconnect(self, session: Session) -> None:
        for marker in [m for m in self._sent_upto if m[0] == session.index]:
            del self._sent_upto[marker]
        self._pending = {m for m in self._pending if m[0] != session.index}

    def on_sent(self, raw: str) -> None:
        entry = self._ordinal.get(id(raw))
        if entry is not None and entry[1] > self._applied.get(entry[0], 0):
            self._apply(raw, *entry)

    def _apply(self, raw: str, key: str, ordinal: int) -> None:
        self.apply_book(key, raw)
        self._applied[key] = ordinal


class LocalVenueServer:
    """Replays recorded frames to WebSocket clients on 127.0.0.1, speaking a venue protocol.

    Parameters
    ----------
    protocol
        The venue plugin.
    frames
        Recorded frames ``(recv_ns, raw_text)`` in order.
    faults
        Faults to inject.
    resume_overlap
        Frames re-sent to a reconnecting client (see the module docstring).
    speed
        ``None``: as fast as possible; else replay at ``speed`` times the recorded pace.
    close_at_end
        Close connections normally once every frame was sent.
    lifetime
        Seconds after which the server stops itself.
    max_connections
        Connections accepted over the server's life; further attempts are refused with HTTP 503.
        ``None``: no limit (and :attr:`sessions` holds the open connections' only).
    ping_interval
        Seconds between the server's WebSocket pings (also their timeout); ``None``: no pings
        (a soak that lets a client fall behind by TCP back-pressure alone).
    gate
        Awaited with each frame before it is sent: holding it holds the stream (a test of
        latency 0 against a live account holds the next trade while an order is in flight).
    http_gate
        Awaited with each plain GET's path (and query) before it is answered: holding it holds
        that REST answer (a test holds a trade-history answer until its client has stopped).
    hold
        Paced: stop the clock while no connection streams, rather than print on without one
        (see the module docstring).
    stop_timeout
        Seconds :meth:`stop` waits for the connections to end (a client answering no close
        takes websockets' 10 s close timeout).

    A ``frames`` sequence that is not a list or tuple (e.g. one that makes frames on access)
    is indexed in place, not copied.

    Use as ``async with LocalVenueServer(...) as server:``; ``server.ws_url`` and
    ``server.http_url`` are the endpoints.

    Attributes
    ----------
    sessions
        The connections' sessions in the order they connected: every one of a bounded server's
        life, the open ones of a server of ``max_connections=None``.
    connections
        Connections accepted so far (a session's ``index`` is their count before it).
    """

    def __init__(
        self,
        protocol: VenueProtocol,
        frames: Sequence[tuple[int, str]],
        faults: Sequence[Fault] = (),
        *,
        resume_overlap: int = 0,
        speed: float | None = None,
        close_at_end: bool = False,
        lifetime: float = 60.0,
        max_connections: int | None = 16,
        ping_interval: float | None = 20.0,
        gate: Callable[[str], Awaitable[None]] | None = None,
        http_gate: Callable[[str], Awaitable[None]] | None = None,
        hold: bool = False,
        stop_timeout: float = 30.0,
    ) -> None:
        if speed is not None and not speed > 0:
            raise ConfigError(f"local server: speed must be > 0 or None, got {speed!r}")
        if resume_overlap < 0:
            raise ConfigError(f"local server: resume_overlap must be >= 0, got {resume_overlap}")
        if not stop_timeout > 0:
            raise ConfigError(f"local server: stop_timeout must be > 0, got {stop_timeout!r}")
        self.protocol = protocol
        self.frames = list(frames) if isinstance(frames, list | tuple) else frames
        self.ping_interval = ping_interval
        self.gate = gate
        self.http_gate = http_gate
        self.hold = hold
        self.stop_timeout = stop_timeout
        self.faults = list(faults)
        self.resume_overlap = resume_overlap
        self.speed = speed
        self.close_at_end = close_at_end
        self.lifetime = lifetime
        self.max_connections = max_connections
        self.sessions: list[Session] = []
        self.connections = 0
        self.http_requests: list[str] = []
        self.cursor = 0
        self.port = 0
        self._clock: _ReplayClock | None = None
        self._printer: asyncio.Task[None] | None = None
        self._streaming: set[int] = set()  # sessions whose send loop prints frames (paced)
        self._unwatched = asyncio.Event()  # set while no session streams: the server prints
        self._resume_floor = 0  # frames a DROP with ``missed`` made the next connection miss
        self._read_upto: dict[str, int] = {}  # unpaced: per topic, the index after the last frame a connection read
        self._server: Server | None = None
        self._stopper: asyncio.TimerHandle | None = None
        self._fired: set[int] = set()
        self._done = asyncio.Event()
        self._holding: set[asyncio.Task[Any]] = set()  # tasks held in a gate, a DELAY or a SILENCE: a stop ends the hold

    # --------------------------------------------------------------- lifecycle

    @property
    def ws_url(self) -> str:
        """``ws://127.0.0.1:<port>``."""
        return f"ws://127.0.0.1:{self.port}"

    @property
    def http_url(self) -> str:
        """``http://127.0.0.1:<port>`` (same port: plain GETs are answered by the plugin)."""
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Bind an ephemeral port on 127.0.0.1 and start serving."""
        self._server = await serve(
            self._handle,
            "127.0.0.1",
            0,
            process_request=self._process_request,
            ping_interval=self.ping_interval,
            ping_timeout=self.ping_interval,
            max_size=2**24,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        loop = asyncio.get_running_loop()
        self._stopper = loop.call_later(self.lifetime, lambda: loop.create_task(self._expire()))
        logger.debug("local {} server on {}", self.protocol.name, self.ws_url)

    async def stop(self) -> None:
        """Close every connection and stop listening.

        Raises
        ------
        VenueError
            A connection's handling had not ended ``stop_timeout`` seconds after the stop (a ``gate``
            that outlives its cancellation); it is cancelled again and left.
        """
        if self._stopper is not None:
            self._stopper.cancel()
            self._stopper = None
        self._done.set()
        for task in self._holding:
            task.cancel(_STOPPED)
        printer, self._printer = self._printer, None
        if printer is not None:
            printer.cancel()
            await asyncio.gather(printer, return_exceptions=True)
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        try:
            await asyncio.wait_for(server.wait_closed(), self.stop_timeout)
        except TimeoutError:
            stuck = [task for task in server.handler_tasks if not task.done()]
            for task in stuck:
                task.cancel()
            raise VenueError(
                f"local {self.protocol.name} server: {len(stuck)} connection(s) still handled {self.stop_timeout:g} s "
                "after the server stopped (held in a gate that does not end when cancelled?): cancelled and left"
            ) from None

    async def _expire(self) -> None:
        """Stop at the end of the server's lifetime (nobody awaits this task: an error is logged)."""
        try:
            await self.stop()
        except VenueError as exc:
            logger.error("{}", exc)

    async def _held(self, aw: Awaitable[Any]) -> bool:
        """Await ``aw`` in the caller's task (no task of its own: the frame's timing is unchanged) unless the
        server stops first, which cancels it there; whether the server stopped."""
        task = asyncio.current_task()
        assert task is not None
        self._holding.add(task)
        try:
            await aw
        except asyncio.CancelledError as exc:
            if exc.args != (_STOPPED,):
                raise
            task.uncancel()
        finally:
            self._holding.discard(task)
        return self._done.is_set()

    async def wait_stopped(self) -> None:
        """Return once the server has stopped (by :meth:`stop` or at the end of its lifetime)."""
        await self._done.wait()

    async def __aenter__(self) -> LocalVenueServer:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Stop the server; a failure of the stop (:meth:`stop`) while the body raised is logged, and the body's
        error (a test's failed assertion) is the one that goes on, noting it."""
        try:
            await self.stop()
        except Exception as failure:
            if exc is None:
                raise
            logger.error("local {} server: stopped after {}: {}", self.protocol.name, type(exc).__name__, failure)
            exc.add_note(f"then the local {self.protocol.name} server's stop failed: {failure}")

    # -------------------------------------------------------------------- http

    def _process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | Awaitable[Response] | None:
        if self.max_connections is not None and self.connections >= self.max_connections:
            return self._response(503, '{"msg":"too many connections"}')
        if request.headers.get("Upgrade", "").lower() == "websocket":
            parts = urlsplit(request.path)
            refused = self.protocol.refuse_handshake(parts.path, parse_qs(parts.query))
            return None if refused is None else self._response(*refused)
        self.http_requests.append(request.path)
        if self.http_gate is not None:
            return self._answer_after_gate(request.path)
        return self._answer(request.path)

    async def _answer_after_gate(self, path: str) -> Response:
        assert self.http_gate is not None
        if await self._held(self.http_gate(path)):
            return self._response(503, '{"msg":"server stopped"}')
        return self._answer(path)

    def _answer(self, path: str) -> Response:
        parts = urlsplit(path)
        answer = self.protocol.http(parts.path, parse_qs(parts.query))
        if answer is None:
            return self._response(404, '{"msg":"not found"}')
        return self._response(*answer)

    @staticmethod
    def _response(status: int, body: str) -> Response:
        data = body.encode()
        headers = Headers(
            [("Content-Type", "application/json"), ("Content-Length", str(len(data))), ("Connection", "close")]
        )
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 503: "Service Unavailable"}.get(status, "Error")
        return Response(status, reason, headers, data)

    # --------------------------------------------------------------- websocket

    async def _handle(self, ws: ServerConnection) -> None:
        parts = urlsplit(ws.request.path if ws.request is not None else "/")
        session = Session(index=self.connections, path=parts.path, query=parse_qs(parts.query))
        self.connections += 1
        self.sessions.append(session)
        reader: asyncio.Task[None] | None = None
        try:
            for reply in self.protocol.on_connect(session):
                await ws.send(reply)
            reader = asyncio.create_task(self._read(ws, session))
            await self._send_loop(ws, session)
        except ConnectionClosed:
            pass
        finally:
            if reader is not None:
                reader.cancel()
                try:
                    await reader
                except (asyncio.CancelledError, ConnectionClosed):
                    pass
            self.protocol.on_disconnect(session)
            if self.max_connections is None:
                self.sessions.remove(session)

    async def _read(self, ws: ServerConnection, session: Session) -> None:
        async for message in ws:
            text = message if isinstance(message, str) else message.decode("utf-8", "replace")
            session.received.append(text)
            for reply in self.protocol.on_client_message(text, session):
                await ws.send(reply)

    async def _send_loop(self, ws: ServerConnection, session: Session) -> None:
        await _first(session.subscribed.wait(), self._done.wait(), ws.wait_closed())
        if not session.subscribed.is_set() or self._done.is_set():
            return
        clock = self._start_clock()
        if clock is not None:
            self._streaming.add(session.index)
            self._unwatched.clear()
            clock.resume()
        try:
            await self._stream(ws, session, clock)
        finally:
            self._stop_streaming(session)

    async def _stream(self, ws: ServerConnection, session: Session, clock: _ReplayClock | None) -> None:
        protocol = self.protocol
        faults = [(i, f) for i, f in enumerate(self.faults) if f.connection == session.index]
        match_counts = dict.fromkeys({f.match for _, f in faults}, 0)
        start = max(0, max(self.cursor, self._resume_floor) - self.resume_overlap)
        # unpaced, a stream starts where the connections before left it: its frames no connection read are sent
        read = None if clock is not None else dict(self._read_upto)
        unread = () if read is None else [read.get(topic, 0) for topic in session.subscriptions]
        i = min(start, self.cursor, *unread)  # frames up to ``start`` not yet printed are printed, not sent
        while i < len(self.frames) and not self._done.is_set():
            recv_ns, raw = self.frames[i]
            if clock is not None:
                await clock.wait_until(recv_ns)
            topic = protocol.topic_of(raw)
            if topic is not None and topic not in session.subscriptions:
                i += 1
                self._advance(i, raw)
                continue
            if i < (start if read is None or topic is None else min(start, read.get(topic, 0))):
                i += 1
                self._advance(i, raw)
                continue
            if self.gate is not None and await self._held(self.gate(raw)):
                return
            out: str | None = protocol.render(raw, session)
            for key in match_counts:
                if key in raw:
                    match_counts[key] += 1
            for fid, fault in faults:
                if fid in self._fired or fault.match not in raw or match_counts[fault.match] - 1 != fault.at:
                    continue
                self._fired.add(fid)
                if fault.kind is FaultKind.HANG or (fault.kind is FaultKind.SILENCE and math.isinf(fault.seconds)):
                    self._stop_streaming(session)  # the venue goes on printing without this connection
                out = await self._inject(ws, fault, out, session)
                if fault.kind is FaultKind.DROP:
                    # the frame was not delivered: the cursor stays on it unless the venue went on printing
                    missed = min(i + fault.missed, len(self.frames))
                    if clock is None:
                        for j in range(i, missed):
                            self._advance(j + 1, self.frames[j][1])
                            self._mark_read(j, protocol.topic_of(self.frames[j][1]), session)
                    else:
                        self._resume_floor = max(self._resume_floor, missed)
                    return
                if fault.kind is FaultKind.HANG or (fault.kind is FaultKind.SILENCE and math.isinf(fault.seconds)):
                    return
            if out is not None:
                await ws.send(out)
                session.sent += 1
            if read is not None:
                self._mark_read(i, topic, session)
            i += 1
            self._advance(i, raw)
            if session.sent % 64 == 0:
                await asyncio.sleep(0)
        if self.close_at_end:
            await ws.close()
        else:
            await _first(self._done.wait(), ws.wait_closed())

    def _start_clock(self) -> _ReplayClock | None:
        """The paced replay clock, started (with the printer of unwatched frames) at the first subscription."""
        if self.speed is None:
            return None
        if self._clock is None:
            self._clock = _ReplayClock(self.speed, self.frames[0][0] if len(self.frames) else 0, time.monotonic())
            if not self.hold:
                self._printer = asyncio.create_task(self._print_unwatched(self._clock))
        return self._clock

    async def _print_unwatched(self, clock: _ReplayClock) -> None:
        """Print each frame at its time while no connection streams (so none would print it)."""
        printed = 0
        while self.cursor < len(self.frames):
            await self._unwatched.wait()
            i = self.cursor
            await clock.wait_until(self.frames[i][0])
            if not self._unwatched.is_set() or self.cursor != i:
                continue  # a connection started streaming meanwhile: it prints
            self._advance(i + 1, self.frames[i][1])
            printed += 1
            if printed % 64 == 0:
                await asyncio.sleep(0)

    def _stop_streaming(self, session: Session) -> None:
        self._streaming.discard(session.index)
        if not self._streaming:
            self._unwatched.set()
            if self.hold and self._clock is not None:
                self._clock.pause()

    def _mark_read(self, i: int, topic: str | None, session: Session) -> None:
        """Unpaced: frame ``i`` of ``topic`` went by ``session`` (sent, or lost to it): the stream's next reader
        starts after it."""
        if topic is not None and topic in session.subscriptions and i >= self._read_upto.get(topic, 0):
            self._read_upto[topic] = i + 1

    def _advance(self, i: int, raw: str) -> None:
        if i > self.cursor:
            self.cursor = i
            self.protocol.on_sent(raw)

    async def _inject(self, ws: ServerConnection, fault: Fault, out: str | None, session: Session) -> str | None:
        kind = fault.kind
        logger.debug("local server: injecting {} on connection {} frame {}", kind, session.index, fault.at)
        if kind is FaultKind.DROP:
            ws.transport.abort()
            return None
        if kind is FaultKind.DELAY:
            await self._held(asyncio.sleep(fault.seconds))
            return out
        if kind is FaultKind.GARBLE:
            return None if out is None else out[: len(out) // 2]
        if kind is FaultKind.SKIP:
            return None
        if kind is FaultKind.SILENCE:
            if math.isinf(fault.seconds):
                await _first(self._done.wait(), ws.wait_closed())
                return None
            await self._held(asyncio.sleep(fault.seconds))
            return out
        if kind is FaultKind.HANG:
            ws.transport.pause_reading()  # no client frame is read: no ping is answered, no message handled
            await _first(self._done.wait(), ws.wait_closed())
            ws.transport.abort()  # a dead peer answers no close handshake either
            return None
        if kind is FaultKind.UNKNOWN:
            await ws.send(self.protocol.unknown_message())
            return out
        if kind is FaultKind.CORRUPT:
            return None if out is None else self.protocol.corrupt(out, fault.field, fault.value)
        raise ConfigError(f"local server: unknown fault kind {kind!r}")


@dataclass
class _ReplayClock:
    """A paced server's one clock: recording time ``t0_ns + (wall - wall0) * speed`` (monotonic wall seconds).

    :meth:`pause` and :meth:`resume` stop it and start it again where it stopped (``wall0`` moves on by the pause).
    """

    speed: float
    t0_ns: int
    wall0: float
    paused_at: float | None = None

    def pause(self) -> None:
        """Stop the clock (a held server with no connection streaming)."""
        if self.paused_at is None:
            self.paused_at = time.monotonic()

    def resume(self) -> None:
        """Start the clock again at the recording time it stopped at."""
        if self.paused_at is not None:
            self.wall0 += time.monotonic() - self.paused_at
            self.paused_at = None

    async def wait_until(self, recv_ns: int) -> None:
        """Return once the clock has reached recording time ``recv_ns``."""
        wait = self.wall0 + (recv_ns - self.t0_ns) / 1e9 / self.speed - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)


_STOPPED = "local venue server stopped"
"""The message of the cancellation a stop ends a hold with (:meth:`LocalVenueServer._held`)."""


async def _first(*aws: Any) -> None:
    """Wait until the first of ``aws`` completes; cancel the others."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            if not t.done():
                t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
