"""Market-data feeds of a paper run: one :class:`Feed` per configured feed.

A feed is a venue's live client, or its parser alone when a recording is played back. It
hands every normalised message to a sink (the :class:`~tradebus.node.router.NodeRouter`),
answers whether each of its L2 books is in sync, resyncs a book on request and exposes the
adapter's book of each instrument (the one book of that instrument: strategies read it
through ``cache.book``).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from functools import partial
from typing import Any

from tradebus.adapters.binance.client import BinanceClient, BinanceFeed
from tradebus.adapters.binance.config import BinanceConfig, BinanceMarket
from tradebus.adapters.bybit.client import BybitClient
from tradebus.adapters.bybit.config import BybitConfig
from tradebus.adapters.bybit.parse import BybitParser
from tradebus.adapters.common.book import OrderBook
from tradebus.adapters.common.client import Sink, WsClient
from tradebus.adapters.common.policy import Backoff, ConnectionPolicy, KeepAlive
from tradebus.adapters.common.recorder import FrameRecorder
from tradebus.adapters.okx.client import OkxClient
from tradebus.adapters.okx.config import OkxConfig
from tradebus.adapters.okx.parse import BOOK_CHANNELS as OKX_BOOK_CHANNELS
from tradebus.adapters.okx.parse import OkxParser
from tradebus.adapters.okx.parse import book_key as okx_book_key
from tradebus.engine.cache import Cache
from tradebus.engine.instrument import Instrument
from tradebus.errors import ConfigError
from tradebus.node.config import FeedConfig, PaperConfig, venue_symbol
from tradebus.risk.guard import MarketGuard

__all__ = ["BinanceFeedHandle", "BybitFeedHandle", "Feed", "OkxFeedHandle", "attach_feeds", "build_feeds"]


def _policy(feed: FeedConfig, keepalive: KeepAlive, max_age: float | None = None) -> ConnectionPolicy:
    b = feed.backoff
    return ConnectionPolicy(
        backoff=Backoff(base=b.base, cap=b.cap, min_delay=b.min_delay),
        keepalive=keepalive,
        max_connection_age=max_age,
        stale_after=feed.stale_after,
        max_reconnects=feed.max_reconnects,
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

    def __init__(self, config: FeedConfig, instruments: dict[str, Instrument], sink: Sink) -> None:
        self.config = config
        self.instrument_ids: tuple[str, ...] = tuple(config.subscriptions)
        self.symbols: dict[str, str] = {iid: venue_symbol(config, instruments[iid]) for iid in self.instrument_ids}
        venues = {instruments[iid].venue for iid in self.instrument_ids}
        self.venue_name = venues.pop()
        self.sink = sink

    @abstractmethod
    def on_frame(self, raw: str | bytes, recv_ns: int, conn: str) -> None:
        """Parse one recorded frame of connection ``conn`` into the sink (raises ``ParseError``)."""

    @abstractmethod
    def book_checks(self) -> dict[str, Callable[[], bool]]:
        """``instrument_id -> in-sync test`` of every instrument with a subscribed L2 book."""

    @abstractmethod
    def book(self, instrument_id: str) -> OrderBook | None:
        """The adapter's L2 book of ``instrument_id`` (``None`` before its first snapshot or without one)."""

    @abstractmethod
    def resync_book(self, instrument_id: str, reason: str) -> None:
        """Declare ``instrument_id``'s book(s) out of sync for ``reason`` and resync them (``BookResynced`` follows)."""

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


class BinanceFeedHandle(Feed):
    """A Binance spot/USD-M feed (combined streams; REST depth snapshots)."""

    def __init__(
        self,
        config: FeedConfig,
        instruments: dict[str, Instrument],
        sink: Sink,
        *,
        live: bool,
        recorder: FrameRecorder | None,
        clock_ns: Callable[[], int],
    ) -> None:
        super().__init__(config, instruments, sink)
        channels = next(iter(config.subscriptions.values()))
        self.binance = BinanceConfig(
            market=BinanceMarket(config.market),
            symbols=[self.symbols[iid] for iid in self.instrument_ids],
            channels=channels,  # type: ignore[arg-type]
            ws_url=config.ws_url,
            rest_url=config.rest_url,
            venue=self.venue_name,
            stale_after=config.stale_after,
            snapshot_fetcher=config.snapshot_fetcher,
            **({"depth_speed": config.depth_speed} if config.depth_speed else {}),
        )
        self.name = f"binance-{config.market}"
        if live:
            policy = _policy(config, KeepAlive.binance(), ConnectionPolicy.binance().max_connection_age)
            client = BinanceClient(self.binance, sink, policy, recorder, clock_ns=clock_ns)
            self.client = client
            self.feed = client.feed
            self.name = client.name
        else:
            self.client = None
            # a playback must fail loudly on a recording made with other stream parameters
            self.feed = BinanceFeed(self.binance, sink, None, clock_ns, strict_streams=True)

    def on_frame(self, raw: str | bytes, recv_ns: int, conn: str) -> None:
        if conn.startswith("rest:"):
            self.feed.on_snapshot_frame(raw, recv_ns, conn[5:])
        else:
            self.feed.on_frame(raw, recv_ns)

    def accepts(self, conn: str) -> bool:
        if conn.startswith("rest:"):
            return conn[5:] in self.feed.books
        return super().accepts(conn)

    def book_checks(self) -> dict[str, Callable[[], bool]]:
        books = self.feed.books
        return {self.binance.instrument_id(symbol): _synced(sync) for symbol, sync in books.items()}

    def book(self, instrument_id: str) -> OrderBook | None:
        sync = self.feed.books.get(self.symbols[instrument_id])
        return None if sync is None else sync.book

    def resync_book(self, instrument_id: str, reason: str) -> None:
        sync = self.feed.books.get(self.symbols[instrument_id])
        if sync is not None and sync.synced:
            sync.mark_lost(reason)

    def unexpected_streams(self) -> dict[str, int]:
        return dict(self.feed.unexpected_streams)


def _synced(sync: Any) -> Callable[[], bool]:
    return lambda: sync.synced


class _ParserFeed(Feed):
    """A feed whose venue parser turns each frame into core messages (``parse_frame``)."""

    parser: OkxParser | BybitParser

    def on_frame(self, raw: str | bytes, recv_ns: int, conn: str) -> None:
        sink = self.sink
        for msg in self.parser.parse_frame(raw, recv_ns):
            sink(msg)


class OkxFeedHandle(_ParserFeed):
    """An OKX v5 public feed (``(channel, instId)`` subscriptions; books checked by seqId and CRC32)."""

    def __init__(
        self,
        config: FeedConfig,
        instruments: dict[str, Instrument],
        sink: Sink,
        *,
        live: bool,
        recorder: FrameRecorder | None,
        clock_ns: Callable[[], int],
    ) -> None:
        super().__init__(config, instruments, sink)
        okx = OkxConfig(venue=self.venue_name, **({"public_url": config.ws_url} if config.ws_url else {}))
        if config.rest_url:
            okx = okx.model_copy(update={"rest_url": config.rest_url})
        self.okx = okx
        self.pairs = [(ch, self.symbols[iid]) for iid in self.instrument_ids for ch in config.channels_of(iid)]
        if live:
            policy = _policy(config, KeepAlive.okx(okx.ping_after_s))
            client = OkxClient(sink, okx, self.pairs, policy=policy, recorder=recorder, clock_ns=clock_ns)
            self.client = client
            self.parser = client.parser
            self.name = client.name
        else:
            self.client = None
            self.parser = OkxParser(okx.venue, verify_checksum=okx.verify_checksum)
            self.name = f"{okx.venue.lower()}-public"

    def book_checks(self) -> dict[str, Callable[[], bool]]:
        checks: dict[str, Callable[[], bool]] = {}
        parser = self.parser
        for iid in self.instrument_ids:
            inst_id = self.symbols[iid]
            channels = [ch for ch in self.config.channels_of(iid) if ch in OKX_BOOK_CHANNELS]
            if channels:
                checks[iid] = _all_in_sync(lambda ch, i=inst_id: parser.book_in_sync(i, ch), channels)
        return checks

    def book(self, instrument_id: str) -> OrderBook | None:
        inst_id = self.symbols[instrument_id]
        for channel in self.config.channels_of(instrument_id):
            if channel in OKX_BOOK_CHANNELS:
                sync = self.parser.books.syncs.get(okx_book_key(channel, inst_id))
                return None if sync is None else sync.book
        return None

    def resync_book(self, instrument_id: str, reason: str) -> None:
        inst_id = self.symbols[instrument_id]
        for channel in self.config.channels_of(instrument_id):
            if channel in OKX_BOOK_CHANNELS:
                self.parser.books.lost(okx_book_key(channel, inst_id), reason)


def _all_in_sync(test: Callable[[str], bool], keys: list[str]) -> Callable[[], bool]:
    return lambda: all(test(k) for k in keys)


class BybitFeedHandle(_ParserFeed):
    """A Bybit v5 public feed of one category (topics ``channel.SYMBOL``; books checked by update id)."""

    def __init__(
        self,
        config: FeedConfig,
        instruments: dict[str, Instrument],
        sink: Sink,
        *,
        live: bool,
        recorder: FrameRecorder | None,
        clock_ns: Callable[[], int],
    ) -> None:
        super().__init__(config, instruments, sink)
        url_key = "spot_url" if config.market == "spot" else "linear_url"
        bybit = BybitConfig(category=config.market, venue=self.venue_name)  # type: ignore[arg-type]
        updates: dict[str, Any] = {}
        if config.ws_url:
            updates[url_key] = config.ws_url
        if config.rest_url:
            updates["rest_url"] = config.rest_url
        self.bybit = bybit.model_copy(update=updates) if updates else bybit
        self.topics = [f"{ch}.{self.symbols[iid]}" for iid in self.instrument_ids for ch in config.channels_of(iid)]
        if live:
            policy = _policy(config, KeepAlive.bybit(self.bybit.ping_interval_s))
            client = BybitClient(sink, self.bybit, self.topics, policy=policy, recorder=recorder, clock_ns=clock_ns)
            self.client = client
            self.parser = client.parser
            self.name = client.name
        else:
            self.client = None
            self.parser = BybitParser(config.market, self.venue_name)
            self.name = f"{self.venue_name.lower()}-{config.market}"

    def book_checks(self) -> dict[str, Callable[[], bool]]:
        checks: dict[str, Callable[[], bool]] = {}
        for iid in self.instrument_ids:
            symbol = self.symbols[iid]
            topics = [f"{ch}.{symbol}" for ch in self.config.channels_of(iid) if ch.startswith("orderbook.")]
            if topics:
                checks[iid] = _all_in_sync(self.parser.book_in_sync, topics)
        return checks

    def book(self, instrument_id: str) -> OrderBook | None:
        symbol = self.symbols[instrument_id]
        for channel in self.config.channels_of(instrument_id):
            if channel.startswith("orderbook."):
                sync = self.parser.books.syncs.get(f"{channel}.{symbol}")
                return None if sync is None else sync.book
        return None

    def resync_book(self, instrument_id: str, reason: str) -> None:
        symbol = self.symbols[instrument_id]
        for channel in self.config.channels_of(instrument_id):
            if channel.startswith("orderbook."):
                self.parser.books.lost(f"{channel}.{symbol}", reason)


_FEEDS: dict[str, type[Feed]] = {"binance": BinanceFeedHandle, "okx": OkxFeedHandle, "bybit": BybitFeedHandle}


def build_feeds(
    config: PaperConfig,
    sink: Sink,
    *,
    live: bool,
    recorder: FrameRecorder | None = None,
    clock_ns: Callable[[], int] = time.time_ns,
) -> list[Feed]:
    """One :class:`Feed` per configured feed, every one handing its messages to ``sink``."""
    instruments = config.instrument_map()
    feeds = [
        _FEEDS[fc.venue](fc, instruments, sink, live=live, recorder=recorder, clock_ns=clock_ns) for fc in config.feeds
    ]
    names = [f.name for f in feeds]
    if len(set(names)) != len(names):
        raise ConfigError(
            f"feeds: two feeds share a connection name in {names}; their recordings could not be told apart"
        )
    return feeds


# ----------------------------------------------------------------------------- router


def attach_feeds(feeds: list[Feed], guard: MarketGuard, cache: Cache) -> None:
    """Declare every feed to the market guard and make its books readable through ``cache.book``."""
    for feed in feeds:
        guard.register(feed)
        for iid in feed.book_checks():
            cache.register_book(iid, partial(feed.book, iid))
