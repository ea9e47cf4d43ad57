"""A market-data feed, venue-neutral: its config (:class:`FeedConfig`) and its handle (:class:`Feed`).

Every venue package implements a :class:`Feed` subclass in its ``client.py`` (the live
WebSocket client, or its parser alone for a playback) and declares its channels, markets
and symbol rules in its ``config.py``; :mod:`tradebus.adapters.registry` maps the venue
name of a :class:`FeedConfig` to them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Protocol, Self

from pydantic import ConfigDict, Field, PositiveFloat, ValidationError, model_validator

from tradebus.config.base import StrictModel, WsUrl, unknown_key
from tradebus.adapters.common.book import OrderBook
from tradebus.adapters.common.client import Sink, StreamParser, WsClient, connection_lost
from tradebus.adapters.common.policy import Backoff, ConnectionPolicy, KeepAlive
from tradebus.adapters.common.skipped_streams import SkippedStreams
from tradebus.engine.instrument import Instrument
from tradebus.errors import ConfigError, DataError

if TYPE_CHECKING:
    from tradebus.adapters.common.recorder import FrameRecorder

__all__ = [
    "BackoffConfig",
    "Feed",
    "FeedConfig",
    "FeedFactory",
    "FeedOptions",
    "ParserFeed",
    "all_in_sync",
    "connection_policy",
    "venue_symbol",
]


_Model = StrictModel


class FeedOptions(_Model):
    """Base of a venue's own feed keys (its ``config.FEED_OPTIONS``; Binance: ``depth_speed``).

    A venue's options are written next to the common keys of a :class:`FeedConfig`
    (``depth_speed: 100ms`` beside ``venue: binance``); :meth:`of` reads them back, typed.
    """

    #: ``key -> what to write instead``: added to the error of a key the venue does not take.
    key_hints: ClassVar[dict[str, str]] = {}

    @classmethod
    def of(cls, feed: FeedConfig) -> Self:
        """The options given in ``feed`` (defaults for the keys it leaves out)."""
        return cls.model_validate(feed.model_extra or {})


class _HasSymbol(Protocol):
    @property
    def symbol(self) -> str: ...

    @property
    def venue(self) -> str: ...


class BackoffConfig(_Model):
    """Reconnect delays: capped exponential backoff with full jitter (seconds)."""

    base: PositiveFloat = 0.5
    cap: PositiveFloat = 30.0
    min_delay: float = Field(default=0.05, ge=0.0)

    @model_validator(mode="after")
    def _ordered(self) -> BackoffConfig:
        if self.cap < self.base or self.min_delay > self.cap:
            raise ValueError(f"need min_delay <= cap and base <= cap, got {self.model_dump()}")
        return self


class FeedConfig(_Model):
    """One live market-data connection (see the module docstring for the channel names).

    Parameters
    ----------
    venue
        A registered venue name (:data:`tradebus.adapters.registry.VENUES`).
    market
        One of the venue's markets (``VenueAdapter.markets``); it selects the endpoint and parser.
    ws_url
        The WebSocket endpoint; ``None`` uses the venue's production endpoint. For Binance it is
        the base (``/stream?streams=...`` is appended), for OKX and Bybit the full URL.
    subscriptions
        ``instrument_id -> channels``; every instrument must be one of the config's, with at
        most one bar stream (its bars are one series).
    stale_after
        Seconds without market data after which the feed is declared stale: ``FeedStale`` is
        published, orders on its instruments are denied until data flows again, and the
        connection is recycled. Keep-alive replies (pongs) and acknowledgements are not
        data; an outage counts as silence (a feed whose reconnections keep failing goes
        stale too). ``None``: the venue's default (Binance 30 s; OKX and Bybit 90 s, which a
        quiet but healthy book subscription does not reach). A feed of trade channels alone
        (:meth:`trades_only`) is silent whenever its market does not trade: its staleness is
        its connection's (any frame, or the answer to a WebSocket ping sent after
        ``stale_after / 3`` idle), so a quiet market on a live connection is not stale.
    backoff
        Reconnect delays.
    max_reconnects
        Stop the daemon after this many consecutive failed connection attempts (``None``: never).
    book_max_idle
        Book liveness, seconds: when trades or quotes of an instrument keep arriving but its
        L2 book has not changed for this long (on their receive times and on the venue's times
        they carry: :mod:`tradebus.risk.liveness`), the book is declared frozen: orders on the
        instrument are denied (``book unsynced: ...``) and the book is resynced; after such
        a resync, orders stay denied until the book's first live update.

    Any other key must be one of the venue's own (its :class:`FeedOptions`, e.g. Binance's
    ``depth_speed``, ``snapshot_fetcher`` and ``rest_url``): a key that neither knows, or a bad value of a
    venue key, is an error naming the key.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    venue: str
    market: str
    ws_url: WsUrl | None = None
    subscriptions: dict[str, list[str]] = Field(min_length=1)
    stale_after: PositiveFloat | None = None
    backoff: BackoffConfig = Field(default_factory=BackoffConfig)
    max_reconnects: int | None = Field(default=None, ge=0)
    book_max_idle: PositiveFloat = 10.0

    @model_validator(mode="after")
    def _check(self) -> FeedConfig:
        from tradebus.adapters.registry import VENUES  # the registry imports every venue, which imports this module

        adapter = VENUES.get(self.venue)
        if adapter is None:
            raise ValueError(f"venue: {self.venue!r} is not a known venue; use one of {sorted(VENUES)}")
        if self.market not in adapter.markets:
            raise ValueError(
                f"market: {self.market!r} is not a {self.venue} market; use one of {list(adapter.markets)}"
            )
        for iid, channels in self.subscriptions.items():
            if not channels:
                raise ValueError(f"subscriptions.{iid}: give at least one channel")
            if len(set(channels)) != len(channels):
                raise ValueError(f"subscriptions.{iid}: repeated channel in {channels}")
            for channel in channels:
                if not adapter.known_channel(channel):
                    raise ValueError(f"subscriptions.{iid}: unknown {self.venue} channel {channel!r}; a {self.venue} "
                                     f"feed's channels: {', '.join(adapter.channel_forms)}")
            bars = [ch for ch in channels if ch.split(".")[0].startswith(adapter.fill_channels["bars"])]
            if len(bars) > 1:
                raise ValueError(
                    f"subscriptions.{iid}: one bar stream per instrument (its bars make one series), got {bars}; "
                    "a higher timeframe: subscribe the finer one and build it in the strategy from its history "
                    "window, README 'Several timeframes'"
                )
        self._check_options(adapter.feed_options)
        adapter.check_feed(self)
        return self

    def _check_options(self, options: type[FeedOptions] | None) -> None:
        """Every key beyond the common ones must be one of the venue's options, with a valid value."""
        own = options.model_fields if options is not None else {}
        hints = options.key_hints if options is not None else {}
        for key in self.model_extra or {}:
            if key not in own:
                known = sorted({*FeedConfig.model_fields, *own})
                article = "an" if self.venue[:1] in "aeiou" else "a"
                hint = f"; {hints[key]}" if key in hints else ""
                raise ValueError(f"{key}: {unknown_key(key, known)}; {article} {self.venue} feed's keys: "
                                 f"{', '.join(known)}{hint}")
        if options is None:
            return
        try:
            options.of(self)
        except ValidationError as exc:
            first = exc.errors()[0]
            key = ".".join(str(part) for part in first["loc"])
            message = str(first["msg"]).removeprefix("Value error, ")
            raise ValueError(f"{key}: {message} (got {first.get('input')!r})") from None

    def channels_of(self, instrument_id: str) -> list[str]:
        """The channels subscribed for ``instrument_id`` (empty if none)."""
        return self.subscriptions.get(instrument_id, [])

    def has_book(self, instrument_id: str) -> bool:
        """Whether an L2 book channel is subscribed for ``instrument_id``."""
        from tradebus.adapters.registry import VENUES

        prefixes = VENUES[self.venue].book_channels
        return any(ch.split(".")[0] in prefixes for ch in self.channels_of(instrument_id))

    def quote_book(self, instrument_id: str) -> str | None:
        """The book channel whose top of book gives ``instrument_id``'s quotes, or ``None``.

        The book channel subscribed for it (a paper config subscribes at most one:
        :class:`~tradebus.node.config.PaperConfig`) when no other channel of the venue's quotes (a ticker, a best
        bid and offer) is: the book is then its only source of quotes, which a strategy's ``on_quote``, the
        paper venue's ``fill_on: quotes`` and the marks need. ``None``: no book, or the quotes come from elsewhere.
        """
        from tradebus.adapters.registry import VENUES

        adapter = VENUES[self.venue]
        channels = self.channels_of(instrument_id)
        books = [ch for ch in channels if ch.split(".")[0] in adapter.book_channels]
        others = tuple(q for q in adapter.fill_channels["quotes"] if q not in adapter.book_channels)
        if not books or any(ch.split(".")[0].startswith(others) for ch in channels):
            return None
        return books[0]

    def trades_only(self) -> bool:
        """Whether every subscribed channel is a trade channel (it pushes only when the market trades)."""
        from tradebus.adapters.registry import VENUES

        trades = VENUES[self.venue].fill_channels["trades"]
        return all(ch.split(".")[0] in trades for channels in self.subscriptions.values() for ch in channels)


def connection_policy(
    feed: FeedConfig, keepalive: KeepAlive, max_age: float | None = None, *, default_stale_after: float = 30.0
) -> ConnectionPolicy:
    """The connection policy of ``feed``: its backoff, staleness and reconnect limit with the venue's keep-alive.

    ``default_stale_after`` is the venue's staleness when the feed does not set ``stale_after``.
    """
    b = feed.backoff
    return ConnectionPolicy(
        backoff=Backoff(base=b.base, cap=b.cap, min_delay=b.min_delay),
        keepalive=keepalive,
        max_connection_age=max_age,
        stale_after=default_stale_after if feed.stale_after is None else feed.stale_after,
        max_reconnects=feed.max_reconnects,
        quiet_data=feed.trades_only(),
    )


class Feed(ABC):
    """One configured market-data feed: a live client, or its parser alone for a playback.

    The venue subclasses take ``(config, instruments, sink, *, live, recorder, clock_ns)``.

    Parameters
    ----------
    config
        The feed's config.
    instruments
        ``instrument_id -> Instrument`` of the whole run.
    sink
        Receives the core messages.
    live
        Build the WebSocket client (else only the parsing part, fed by :meth:`on_frame`).
    recorder
        Records every raw frame of the live client.
    clock_ns
        Receive-time (live) or current-time (playback) source.
    """

    #: Feed name: the client's name, its FeedStale ``source`` and its recorder connection prefix.
    name: str
    client: WsClient | None
    #: The recorded connection of the last frame played (:meth:`follow_connection`), ``None`` before the first.
    recorded_conn: str | None = None
    #: Receive time (ns) of the latest recorded proof of life of its connection played (a ``live:<feed>`` line of
    #: a feed of trade channels alone; ``0``: none): the playback's :meth:`connection_live_ns`.
    recorded_live_ns: int = 0
    #: Whether its book snapshots arrive on its stream (a resubscription's, a ``books5`` push), so that one
    #: proves the stream delivers; ``False``: they are fetched over REST (Binance), which a silent stream answers too.
    snapshots_on_stream: ClassVar[bool] = False

    def __init__(self, config: FeedConfig, instruments: dict[str, Instrument], sink: Sink) -> None:
        self.config = config
        self.instrument_ids: tuple[str, ...] = tuple(config.subscriptions)
        self.symbols: dict[str, str] = {iid: venue_symbol(config, instruments[iid]) for iid in self.instrument_ids}
        venues = {instruments[iid].venue for iid in self.instrument_ids}
        self.venue_name = venues.pop()
        self.sink = sink

    @abstractmethod
    def on_frame(self, raw: str | bytes, recv_ns: int, conn: str) -> None:
        """Parse one recorded frame of connection ``conn`` into the sink (raises ``ParseError``).

        A frame of another connection than the previous one's is a reconnect: the books are
        invalidated first (:meth:`follow_connection`), as the live client did when that
        connection ended.
        """

    @abstractmethod
    def invalidate_books(self, reason: str) -> None:
        """Mark every book out of sync for ``reason`` until the next connection's snapshot (a connection ended)."""

    def end_run(self, recv_ns: int) -> None:
        """The run ended at ``recv_ns`` (a daemon's stop, its ``run:stop`` line's time; a played recording's last
        line): deliver what the feed still holds back, as a daemon and a replay of its recording both do there.

        A venue with sequential trade ids holds the trades after a gap until the answer of its
        fetch (recorded, when played back); the run's end gives the recovery up, a fetch in flight
        canceled unrecorded (:meth:`~tradebus.adapters.common.trade_gaps.TradeGaps.end`). Nothing
        for other feeds.
        """

    def held_trades(self) -> list[dict[str, int | str]]:
        """The trades the feed holds back behind a gap in trade ids now (a venue with sequential trade ids:
        :meth:`~tradebus.adapters.common.trade_gaps.TradeGaps.held`; none for other feeds)."""
        return []

    def restart_run(self) -> None:
        """A daemon restarted on the recording played begins its session, after :meth:`end_run` ended the last one
        (the import of a recording several sessions were appended to: :mod:`tradebus.node.recording_import`).

        That daemon's feed began anew: every book is out of sync until the snapshot its first connection brings
        (its connection ids count from 1 again, so no change of connection tells it). A venue with sequential
        trade ids takes the first trade of each instrument as that daemon did, the ids printed while it was
        down a gap no fetch filled (:meth:`~tradebus.adapters.common.trade_gaps.TradeGaps.restart`).
        """
        self.invalidate_books("the daemon restarted: its books resync from the snapshot its connection brings")
        self.recorded_conn = None

    def check_played(self, recording: str | Path) -> None:
        """After the frames of ``recording`` played: refuse it if it held another variant of a stream the config
        subscribes (another book depth or bar size: :class:`SkippedStreams`), and not that stream.

        Raises
        ------
        DataError
            Naming ``recording``, the recorded stream, how many frames it held and the config's.
            Nothing for a feed that refuses such a frame as it comes (Binance).
        """

    def follow_connection(self, conn: str) -> None:
        """A recorded frame arrived on connection ``conn``: if it follows another connection, that one ended.

        Live, the client invalidates every book when its connection ends (nothing of them is
        emitted and orders on them are denied until the snapshot the next connection brings);
        a played recording does the same at the recorded end (:meth:`end_connection`), or, in a
        recording made before those lines, at the first frame of the next connection.
        """
        last = self.recorded_conn
        if conn != last:
            self.recorded_conn = conn
            if last is not None:
                self.invalidate_books(f"connection lost: recorded connection {last} ended")

    def end_connection(self, conn: str, reason: str) -> None:
        """Play the recorded end of connection ``conn`` (an ``end:`` line) for ``reason``: every book is out of sync.

        As the live client made them when ``conn`` ended, with its reason; the next connection's
        first line (a frame, or a snapshot fetched for it) does not invalidate them again.
        """
        self.invalidate_books(connection_lost(reason))
        self.recorded_conn = None

    @abstractmethod
    def book_checks(self) -> dict[str, Callable[[], bool]]:
        """``instrument_id -> in-sync test`` of every instrument with a subscribed L2 book."""

    def connection_live_ns(self) -> Callable[[], int] | None:
        """How a stale episode of this feed ends without market data, or ``None``: it ends only with data.

        A live feed of trade channels alone (``policy.quiet_data``) is silent whenever its market
        does not trade: its connection's :meth:`~tradebus.adapters.common.client.WsClient.live_ns`
        (any frame, or an answered ping) proves it live, as for its watchdog; played back, the
        proof its client recorded (:attr:`recorded_live_ns`; a recording without one keeps the
        block until data). A book or quote feed must deliver again (a book needs its snapshot).
        """
        client = self.client
        if client is None:
            return self._recorded_live_ns if self.config.trades_only() else None
        if not client.policy.quiet_data:
            return None
        return client.live_ns

    def _recorded_live_ns(self) -> int:
        return self.recorded_live_ns

    @abstractmethod
    def book(self, instrument_id: str) -> OrderBook | None:
        """The adapter's L2 book of ``instrument_id`` (``None`` before its first snapshot or without one)."""

    @abstractmethod
    def resync_book(self, instrument_id: str, reason: str) -> None:
        """Declare ``instrument_id``'s book(s) out of sync for ``reason`` and resync them (``BookResynced`` follows)."""

    @abstractmethod
    def subscribed_streams(self) -> tuple[str, ...]:
        """The streams this feed subscribes, spelt as its venue's server names a frame's (the emulator's ``topic_of``:
        ``btcusdt@depth@100ms``, ``books:BTC-USDT``, ``orderbook.50.BTCUSDT``)."""

    def unexpected_streams(self) -> dict[str, int]:
        """Frames per stream the venue sent that this feed did not subscribe (skipped)."""
        return {}

    def accepts(self, conn: str) -> bool:
        """Whether a recorded connection id belongs to this feed (``"{name}:{n}"``)."""
        return conn.partition(":")[0] == self.name

    async def run(self) -> None:
        """Run the live client until :meth:`stop` (raises ``VenueError`` on a fatal error)."""
        if self.client is None:
            raise ConfigError(f"feed {self.name}: built for playback, it has no connection to run")
        await self.client.run()

    def stop(self) -> None:
        """Ask the live client to disconnect."""
        if self.client is not None:
            self.client.stop()


class ParserFeed(Feed):
    """A feed whose venue parser turns each frame into core messages (``parse_frame``; OKX, Bybit).

    A played frame of a stream the config did not subscribe (a recording made with more
    channels or instruments) is skipped and counted (:attr:`skipped`), as a live connection
    of that config would never have received it; the venue says how its frames name their
    stream (:meth:`stream_of`) and lists the subscribed ones (:meth:`skip_unsubscribed`).
    Skipped frames of another variant of a subscribed stream (``books`` for ``books5``)
    refuse the recording once played (:meth:`check_played`) if it held none of the
    subscribed one: the config may subscribe two variants (``orderbook.1`` beside
    ``orderbook.50``), so the first such frame does not tell.
    """

    parser: StreamParser
    #: Frames skipped per stream the config does not subscribe (``None``: every frame is parsed).
    skipped: SkippedStreams | None = None
    #: Subscribed streams with variants that no frame came of yet (:meth:`check_played`).
    _unseen: set[str]

    @staticmethod
    def stream_of(raw: str | bytes) -> str | None:
        """The stream a data frame belongs to, spelt as the subscriptions (``None``: a control frame, or unknown)."""
        return None

    def skip_unsubscribed(
        self, streams: Iterable[str], variant_key: Callable[[str], Hashable | None] | None = None, fix: str = "channel"
    ) -> None:
        """Skip the played frames of every stream but ``streams`` (named as :meth:`stream_of` names them);
        ``variant_key`` and ``fix``: see :class:`SkippedStreams`."""
        self.skipped = SkippedStreams(self.name, streams, variant_key, fix)
        self._subscribed = frozenset(self.skipped.subscribed)
        self._unseen = set(self.skipped.variants())

    def on_frame(self, raw: str | bytes, recv_ns: int, conn: str) -> None:
        if conn != self.recorded_conn:
            self.follow_connection(conn)
        skipped = self.skipped
        if skipped is not None:
            stream = self.stream_of(raw)
            if stream is not None:
                if stream not in self._subscribed:
                    skipped.skip(stream)
                    return
                if self._unseen:
                    self._unseen.discard(stream)
        sink = self.sink
        for msg in self.parser.parse_frame(raw, recv_ns):
            sink(msg)

    def end_run(self, recv_ns: int) -> None:
        if self.skipped is not None:
            self.skipped.log()

    def check_played(self, recording: str | Path) -> None:
        if self.skipped is None or self.client is not None:
            return
        refusal = self.skipped.missing(self._unseen)
        if refusal is not None:
            raise DataError(f"{recording}: {refusal}")

    def subscribed_streams(self) -> tuple[str, ...]:
        return () if self.skipped is None else self.skipped.subscribed

    def unexpected_streams(self) -> dict[str, int]:
        return {} if self.skipped is None else dict(self.skipped.counts)

    def invalidate_books(self, reason: str) -> None:
        self.parser.invalidate_books(reason)


def all_in_sync(test: Callable[[str], bool], keys: list[str]) -> Callable[[], bool]:
    """A test that every one of ``keys`` passes ``test`` (the books of one instrument)."""
    return lambda: all(test(k) for k in keys)

def venue_symbol(feed: FeedConfig, instrument: _HasSymbol) -> str:
    """The symbol the venue's stream uses for ``instrument`` (e.g. Bybit linear drops ``-LINEAR``).

    Raises
    ------
    ConfigError
        If the instrument's symbol cannot be a symbol of that venue and market.
    """
    from tradebus.adapters.registry import VENUES

    iid = f"{instrument.symbol}.{instrument.venue}"
    return VENUES[feed.venue].stream_symbol(feed.market, instrument.symbol, iid)


class FeedFactory(Protocol):
    """How the registry builds a venue's :class:`Feed` (the constructor of its ``client.py`` feed)."""

    def __call__(
        self,
        config: FeedConfig,
        instruments: dict[str, Instrument],
        sink: Sink,
        *,
        live: bool,
        recorder: FrameRecorder | None,
        clock_ns: Callable[[], int],
    ) -> Feed: ...
