"""Connection policy, free of sockets: which errors to retry, how long to wait, what to resubscribe.

* :func:`classify_error` — RETRYABLE (abnormal close, timeouts, network errors, HTTP 5xx/429,
  a normal close by the server such as Binance's 24 h disconnect) or FATAL (auth errors,
  other 4xx such as a rejected subscription, bad URI, our own bugs).
* :class:`Backoff` — capped, jittered ("full jitter") exponential delays that reset once a
  connection has been healthy for ``reset_after`` seconds; seeded RNG for reproducible tests.
* :class:`SubscriptionSet` — the one tracked set of streams, replayed after every reconnect.
* :class:`KeepAlive` — per-venue application-level keep-alive (Binance: none, the
  websockets library answers the server's pings; OKX: ``"ping"`` when idle; Bybit:
  ``{"op":"ping"}`` every 20 s).
* :class:`ConnectionPolicy` — the bundle a client is configured with, including the
  venue's scheduled disconnect (``max_connection_age``: Binance closes after 24 h, so the
  client reconnects on its own a little before).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum

from websockets.exceptions import (
    ConnectionClosed,
    ConnectionClosedOK,
    InvalidHandshake,
    InvalidStatus,
    InvalidURI,
)

from tradebus.errors import ConfigError, ParseError, VenueError

__all__ = [
    "Backoff",
    "ConnectionPolicy",
    "ErrorClass",
    "FatalVenueError",
    "KeepAlive",
    "KeepAliveMode",
    "SubscriptionRejected",
    "SubscriptionSet",
    "classify_error",
]


class ErrorClass(StrEnum):
    """Whether a connection error is worth another attempt."""

    RETRYABLE = "RETRYABLE"
    FATAL = "FATAL"


class FatalVenueError(VenueError):
    """The venue refused us in a way that retrying cannot fix (auth, bad subscription)."""


class SubscriptionRejected(FatalVenueError):
    """The venue refused a subscription (an unknown stream, channel, topic or instrument).

    Handled the same way on every venue: the client stops (:meth:`WsClient.run
    <tradebus.adapters.common.client.WsClient.run>` raises it, naming the feed and the
    venue's reason) and a daemon running that feed shuts down with a non-zero exit.
    Retrying cannot help, and going on without the stream would trade on partial data.
    """


_RETRYABLE_CLOSE_CODES = {1000, 1001, 1006, 1011, 1012, 1013, 1014}


def classify_error(exc: BaseException) -> ErrorClass:
    """Say whether ``exc`` (raised while connecting or reading) should be retried.

    Retryable: a normal or abnormal close (codes 1000/1001 going away, 1006 no close frame,
    1011-1014 server errors), :class:`TimeoutError`, :class:`OSError` (refused, reset,
    unreachable), HTTP 5xx and 429 (rate limited), any other handshake failure.
    Fatal: HTTP 4xx other than 429 (401/403 auth, 400/404 bad request or path, 418 IP ban),
    a close with a policy/protocol code (1002, 1003, 1007, 1008, 1009, 1010 or 4xxx-app codes),
    a bad URI, :class:`FatalVenueError`, and anything else (a bug should stop the client).
    """
    if isinstance(exc, FatalVenueError):
        return ErrorClass.FATAL
    if isinstance(exc, ConnectionClosedOK):
        return ErrorClass.RETRYABLE
    if isinstance(exc, ConnectionClosed):
        frame = exc.rcvd or exc.sent
        code = 1006 if frame is None else frame.code
        return ErrorClass.RETRYABLE if code in _RETRYABLE_CLOSE_CODES else ErrorClass.FATAL
    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        if status >= 500 or status == 429:
            return ErrorClass.RETRYABLE
        return ErrorClass.FATAL
    if isinstance(exc, InvalidURI):
        return ErrorClass.FATAL
    if isinstance(exc, InvalidHandshake):
        return ErrorClass.RETRYABLE
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError, OSError, EOFError)):
        return ErrorClass.RETRYABLE
    if isinstance(exc, VenueError) and not isinstance(exc, ParseError):
        return ErrorClass.RETRYABLE
    return ErrorClass.FATAL


class Backoff:
    """Capped exponential backoff with full jitter that resets after a healthy connection.

    The n-th consecutive failure waits ``uniform(min_delay, min(cap, base * factor**n))``.
    Call :meth:`connected` when a connection is established and :meth:`next_delay` when it
    fails; if it stayed up at least ``reset_after`` seconds, the sequence starts over.

    Parameters
    ----------
    base, factor, cap
        First ceiling (s), growth factor, largest ceiling (s).
    min_delay
        Floor of every delay (s).
    reset_after
        Seconds a connection must have been healthy to reset the attempt counter.
    seed
        Seed of the private RNG (``None``: nondeterministic).
    """

    def __init__(
        self,
        base: float = 0.5,
        factor: float = 2.0,
        cap: float = 30.0,
        min_delay: float = 0.05,
        reset_after: float = 60.0,
        seed: int | None = None,
    ) -> None:
        if not (base > 0 and factor >= 1 and cap >= base and 0 <= min_delay <= cap and reset_after >= 0):
            raise ConfigError(
                f"backoff: need base > 0, factor >= 1, cap >= base, 0 <= min_delay <= cap, reset_after >= 0; "
                f"got base={base} factor={factor} cap={cap} min_delay={min_delay} reset_after={reset_after}"
            )
        self.base = base
        self.factor = factor
        self.cap = cap
        self.min_delay = min_delay
        self.reset_after = reset_after
        self.attempt = 0
        self._rng = random.Random(seed)
        self._connected_at: float | None = None

    def ceiling(self, attempt: int) -> float:
        """The largest delay of the ``attempt``-th consecutive failure (0-based)."""
        # exponent clamped so that factor ** attempt cannot overflow after a long outage
        return min(self.cap, self.base * self.factor ** min(attempt, 64))

    def connected(self, now: float) -> None:
        """Record that a connection was established at monotonic time ``now``."""
        self._connected_at = now

    def next_delay(self, now: float) -> float:
        """Seconds to wait before the next attempt after a failure at monotonic time ``now``."""
        if self._connected_at is not None and now - self._connected_at >= self.reset_after:
            self.attempt = 0
        self._connected_at = None
        ceiling = self.ceiling(self.attempt)
        self.attempt += 1
        return self.min_delay + self._rng.random() * max(0.0, ceiling - self.min_delay)

    def reset(self) -> None:
        """Start the sequence over."""
        self.attempt = 0
        self._connected_at = None

    def delays(self, now: float = 0.0) -> Iterator[float]:
        """Infinite generator of consecutive failure delays (no healthy connection in between)."""
        while True:
            yield self.next_delay(now)


class SubscriptionSet:
    """The streams a client wants, kept in insertion order; replayed after each reconnect."""

    def __init__(self, streams: Iterable[str] = ()) -> None:
        self._streams: dict[str, None] = {}
        self.add(streams)

    def add(self, streams: Iterable[str]) -> list[str]:
        """Add streams; return the ones that were new."""
        new = [s for s in streams if s not in self._streams]
        for s in new:
            self._streams[s] = None
        return new

    def remove(self, streams: Iterable[str]) -> list[str]:
        """Remove streams; return the ones that were present."""
        gone = [s for s in streams if s in self._streams]
        for s in gone:
            del self._streams[s]
        return gone

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(self._streams))

    def __len__(self) -> int:
        return len(self._streams)

    def __contains__(self, stream: object) -> bool:
        return stream in self._streams

    def batches(self, size: int) -> list[list[str]]:
        """The streams in chunks of at most ``size`` (venues cap streams per subscribe request)."""
        items = list(self._streams)
        return [items[i : i + size] for i in range(0, len(items), size)]


class KeepAliveMode(StrEnum):
    """When an application-level ping is sent."""

    NONE = "none"
    IDLE = "idle"
    PERIODIC = "periodic"


@dataclass(frozen=True)
class KeepAlive:
    """Application-level keep-alive of a venue.

    ``mode`` NONE sends nothing (protocol pings are answered by the library); IDLE sends
    ``payload`` when nothing was received for ``interval`` seconds; PERIODIC sends it every
    ``interval`` seconds regardless. ``pong_timeout`` (seconds, ``0``: not checked): a ping
    after which no frame at all arrived for this long means the connection is dead. The
    answer proves the connection only: the data has its own watchdog
    (:attr:`ConnectionPolicy.stale_after`).
    """

    mode: KeepAliveMode = KeepAliveMode.NONE
    interval: float = 0.0
    payload: str = ""
    pong_timeout: float = 0.0

    def __post_init__(self) -> None:
        if self.mode is not KeepAliveMode.NONE and not (self.interval > 0 and self.payload):
            raise ConfigError(f"keep-alive {self.mode}: interval must be > 0 and payload non-empty")
        if not self.pong_timeout >= 0:
            raise ConfigError(f"keep-alive: pong_timeout must be >= 0 s, got {self.pong_timeout!r}")

    def unanswered(self, ping_ns: int, last_frame_ns: int, now_ns: int) -> bool:
        """Whether the ping sent at ``ping_ns`` (``0``: none) got no frame back within ``pong_timeout``."""
        if not self.pong_timeout or not ping_ns or last_frame_ns >= ping_ns:
            return False
        return now_ns - ping_ns >= self.pong_timeout * 1e9

    def due(self, idle: float, since_ping: float) -> bool:
        """Whether to send a ping now, given seconds since the last frame received and since our last ping."""
        if self.mode is KeepAliveMode.IDLE:
            return idle >= self.interval and since_ping >= self.interval
        if self.mode is KeepAliveMode.PERIODIC:
            return since_ping >= self.interval
        return False


@dataclass
class ConnectionPolicy:
    """Everything a :class:`~tradebus.adapters.common.client.WsClient` needs to decide about its connection.

    Parameters
    ----------
    backoff
        Reconnect delays.
    keepalive
        Application-level keep-alive.
    max_connection_age
        Reconnect proactively after this many seconds (the venue's scheduled disconnect,
        minus a margin); ``None`` for venues without one.
    open_timeout
        Seconds allowed for the WebSocket handshake.
    confirm_timeout
        Seconds a private stream's connection may wait for the venue to confirm its subscription (the answers to
        its login and subscribe requests) before it is recycled (:class:`~tradebus.adapters.common.user_stream.UserStream`).
    stale_after
        Seconds without market data after which the feed is declared stale (FeedStale is
        published and the connection is recycled). Keep-alive replies and acknowledgements
        are not data; a venue's default is longer than the longest silence of a quiet but
        healthy subscription (see the venue's policy).
    max_reconnects
        Give up after this many consecutive failed attempts (``None``: never).
    quiet_data
        The subscriptions push only when the market trades (trade channels alone): a silence
        of the data on a live connection is a quiet market, not a stale feed. The watchdog is
        then refreshed by any frame and by the answer to a WebSocket ping, sent when the
        connection has been idle for ``stale_after / 3``: only a connection that stops
        answering goes stale.
    """

    backoff: Backoff = field(default_factory=Backoff)
    keepalive: KeepAlive = field(default_factory=KeepAlive)
    max_connection_age: float | None = None
    open_timeout: float = 10.0
    confirm_timeout: float = 30.0
    stale_after: float = 30.0
    max_reconnects: int | None = None
    quiet_data: bool = False

    def __post_init__(self) -> None:
        if self.max_connection_age is not None and self.max_connection_age <= 0:
            raise ConfigError(f"policy: max_connection_age must be > 0, got {self.max_connection_age}")
        if self.open_timeout <= 0 or self.confirm_timeout <= 0 or self.stale_after <= 0:
            raise ConfigError("policy: open_timeout, confirm_timeout and stale_after must be > 0")
