"""The paper-trading daemon: live market data, the kernel, the simulated venue and a journal.

:class:`TradingNode` runs on one asyncio loop. Each configured feed is a venue client
(:mod:`tradebus.adapters.binance`, ``okx``, ``bybit``) whose task hands every normalised
message to a :class:`NodeRouter`, synchronously, on the loop's thread::

    venue WS --frame--> client (recv time, recorder) --> parser/book sync --> NodeRouter
        Trade/Quote/Bar  -> kernel.process (clock, venue matching, features, strategies);
                            trades and quotes first tell the book-liveness rule they flow
        BookSnapshot/BookDelta -> the node's book of the instrument, then the bus
        FeedStale -> MarketGuard (orders on the feed's instruments stop), then the bus
        BookResynced, MarkPrice, FundingRate -> the bus (and the log)

The kernel is the backtest kernel with a :class:`~tradebus.engine.clock.LiveClock`, a
:class:`PaperVenue` (the simulated matching engine, with arrival alerts on the wall
clock) and a :class:`GuardedRiskGate`: the risk gate plus one check in front of the
others, asked of the :class:`MarketGuard` -- an instrument whose feed went stale
(``FeedStale`` until its next market-data message), whose subscribed L2 book is not in
sync with the venue (asked of the adapter at decision time) or whose book is frozen
(trades or quotes flow but the book has not changed for the feed's ``book_max_idle``:
:mod:`tradebus.adapters.common.liveness`; the book is resynced) gets ``OrderDenied`` with
the reason ``"feed stale: ..."`` or ``"book unsynced: ..."``.

Lifecycle of :meth:`TradingNode.run`:

1. warm up the Numba feature kernels (before any socket is opened);
2. replay the SQLite journal (:class:`~tradebus.execution.journal.Journal`): orders,
   positions, the risk gate's trading and breaker state and the run's fills are rebuilt, and
   client order ids begin a new epoch; orders left UNKNOWN are resolved by querying the venue, per the
   journal's contract. The simulated venue of the previous process stopped with it, so an
   order it was working resolves to CANCELED with that reason: nothing is re-sent,
   invented or duplicated, and new client order ids never repeat journaled ones;
3. start the strategies, then the feed clients (which subscribe);
4. run until SIGINT/SIGTERM, ``max_seconds``, ``max_messages`` or a fatal feed error;
5. stop the clients, cancel their tasks, stop the kernel, close recorder and journal.

Every order decision is logged on one line with its reason (``decision ...``).

This module is the integration layer of paper trading: unlike the rest of
:mod:`tradebus.engine` it imports the venue adapters.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loguru import logger

from tradebus.adapters.binance.client import BinanceClient, BinanceFeed
from tradebus.adapters.binance.config import BinanceConfig, BinanceMarket
from tradebus.adapters.bybit.client import BybitClient
from tradebus.adapters.bybit.config import BybitConfig
from tradebus.adapters.bybit.parse import BybitParser
from tradebus.adapters.common.book import OrderBook
from tradebus.adapters.common.client import Sink, WsClient
from tradebus.adapters.common.liveness import BookLiveness
from tradebus.adapters.common.policy import Backoff, ConnectionPolicy, KeepAlive
from tradebus.adapters.common.recorder import FrameRecorder
from tradebus.adapters.okx.client import OkxClient
from tradebus.adapters.okx.config import OkxConfig
from tradebus.adapters.okx.parse import BOOK_CHANNELS as OKX_BOOK_CHANNELS
from tradebus.adapters.okx.parse import OkxParser
from tradebus.adapters.okx.parse import book_key as okx_book_key
from tradebus.engine.bus import MessageBus
from tradebus.engine.clock import Clock, LiveClock
from tradebus.engine.instrument import Instrument
from tradebus.engine.kernel import Kernel, RunResult
from tradebus.engine.messages import (
    Bar,
    BookDelta,
    BookResynced,
    BookSnapshot,
    FeedStale,
    FundingRate,
    MarkPrice,
    OrderDenied,
    OrderStatus,
    OrderSubmitted,
    Quote,
    SubmitOrder,
    Trade,
)
from tradebus.engine.portfolio import Portfolio
from tradebus.errors import ConfigError
from tradebus.execution.config import VenueConfig
from tradebus.execution.journal import Journal
from tradebus.execution.orders import Order
from tradebus.execution.simulated import SimulatedVenue
from tradebus.execution.venue import OrderStatusReport
from tradebus.node.config import FeedConfig, PaperConfig, dump_paper_config, load_paper_config, venue_symbol
from tradebus.risk.config import RiskConfig
from tradebus.risk.gate import RiskGate
from tradebus.strategies.base import resolve_strategy

if TYPE_CHECKING:
    from tradebus.reports.writers import RunDirectory

__all__ = [
    "Feed",
    "GuardedRiskGate",
    "MarketGuard",
    "NodeRouter",
    "NodeSummary",
    "PaperVenue",
    "TradingNode",
    "build_feeds",
    "build_paper_kernel",
    "kept_files",
    "run_paper",
    "write_outputs",
]

_MARKET_DATA = (Trade, Quote, Bar)


# ----------------------------------------------------------------------------- guard


class MarketGuard:
    """Per-instrument market-data health, asked before every order.

    An instrument is blocked while its feed is stale (from ``FeedStale`` until the next
    market-data message of that instrument), while its subscribed L2 book is out of sync
    (asked of the adapter when an order is checked, so no transition can be missed), or
    while its book is frozen (:class:`~tradebus.adapters.common.liveness.BookLiveness`:
    trades or quotes flow but the book has not changed for the feed's ``book_max_idle``;
    the book is resynced).
    """

    __slots__ = ("_book_checks", "_feeds", "_stale", "liveness")

    def __init__(self) -> None:
        self._stale: dict[str, str] = {}
        self._feeds: dict[str, tuple[str, ...]] = {}
        self._book_checks: dict[str, Callable[[], bool]] = {}
        self.liveness = BookLiveness()

    def register_feed(
        self,
        name: str,
        instrument_ids: Iterable[str],
        book_checks: dict[str, Callable[[], bool]],
        *,
        book_max_idle: float | None = None,
        resync: Callable[[str, str], None] | None = None,
    ) -> None:
        """Declare a feed's instruments and, per instrument with a book, its in-sync test.

        With ``book_max_idle`` (seconds) and ``resync(instrument_id, reason)``, those books
        are also watched for liveness.
        """
        self._feeds[name] = tuple(instrument_ids)
        self._book_checks.update(book_checks)
        if book_max_idle is not None and resync is not None:
            for iid, in_sync in book_checks.items():
                self.liveness.watch(iid, book_max_idle, in_sync, partial(resync, iid))

    def register(self, feed: Feed) -> None:
        """Declare ``feed`` (instruments, in-sync tests of its books, their liveness rule)."""
        self.register_feed(
            feed.name,
            feed.instrument_ids,
            feed.book_checks(),
            book_max_idle=feed.config.book_max_idle,
            resync=feed.resync_book,
        )

    def block_reason(self, instrument_id: str) -> str | None:
        """Why no new order may be sent on ``instrument_id`` now, or ``None``."""
        reason = self._stale.get(instrument_id)
        if reason is not None:
            return reason
        check = self._book_checks.get(instrument_id)
        if check is not None and not check():
            return f"book unsynced: the {instrument_id} order book is not in sync with the venue"
        frozen = self.liveness.frozen(instrument_id)
        if frozen is not None:
            return f"book unsynced: {frozen}"
        return None

    def on_stale(self, msg: FeedStale) -> None:
        """Block every instrument of the silent feed."""
        silent = (msg.ts_event - msg.last_message_ns) / 1e9
        for iid in self._feeds.get(msg.source, ()):
            self._stale[iid] = f"feed stale: {msg.source} delivered nothing for {silent:.1f} s"
        logger.warning(
            "feed {} stale: orders on {} stop until data flows again", msg.source, self._feeds.get(msg.source, ())
        )

    def on_data(self, instrument_id: str) -> None:
        """A market-data message of ``instrument_id`` arrived: it is not stale any more."""
        if self._stale and self._stale.pop(instrument_id, None) is not None:
            logger.info("feed of {} live again: orders allowed", instrument_id)

    def stale(self, instrument_id: str) -> bool:
        """Whether ``instrument_id``'s feed is currently stale."""
        return instrument_id in self._stale


class GuardedRiskGate(RiskGate):
    """The risk gate with the :class:`MarketGuard` asked first (see the module docstring)."""

    __slots__ = ("guard",)

    def __init__(
        self, config: RiskConfig, portfolio: Portfolio, clock: Clock, bus: MessageBus, guard: MarketGuard
    ) -> None:
        super().__init__(config, portfolio, clock, bus)
        self.guard = guard

    def check(self, cmd: SubmitOrder, open_orders: int = 0) -> str | None:
        """The guard's block reason for ``cmd.instrument_id``, else :meth:`RiskGate.check`."""
        reason = self.guard.block_reason(cmd.instrument_id)
        if reason is not None:
            return reason
        return super().check(cmd, open_orders)


# ----------------------------------------------------------------------------- venue


class PaperVenue(SimulatedVenue):
    """The simulated venue of a paper daemon, able to take over from a stopped process.

    The matching engine lives in the daemon's process, so its working orders end with
    it. :meth:`resume` tells a fresh venue the position the journal recorded (so that
    reduce-only orders are judged against it) and which orders the previous process may
    have been working; :meth:`query_order` answers for those, when the journal's recovery
    resolves them, that the restart canceled them (their journaled fills stay booked).
    """

    def __init__(
        self, clock: Clock, instruments: dict[str, Instrument], config: VenueConfig | None = None
    ) -> None:
        super().__init__(clock, instruments, config)
        self._previous: dict[str, Order] = {}

    def resume(self, positions: dict[str, float], previous_orders: Iterable[Order]) -> None:
        """Take over the journaled ``positions`` and the orders of the stopped process."""
        for iid, qty in positions.items():
            if iid in self._positions:
                self._positions[iid] = qty
        self._previous.update((order.client_order_id, order) for order in previous_orders)

    def query_order(self, client_order_id: str) -> OrderStatusReport | None:
        """The venue's view of an order; an order of the stopped process is CANCELED by the restart."""
        report = super().query_order(client_order_id)
        order = self._previous.get(client_order_id)
        if report is None and order is not None:
            return OrderStatusReport(
                client_order_id,
                order.venue_order_id,
                OrderStatus.CANCELED,
                order.filled_qty,
                self.clock.now_ns(),
                (),
                "paper venue restarted: the simulated venue working this order stopped with the previous process",
            )
        return report


# ----------------------------------------------------------------------------- kernel


def build_paper_kernel(
    config: PaperConfig, clock: Clock, guard: MarketGuard, journal: Journal | None = None
) -> tuple[Kernel, PaperVenue]:
    """The kernel of a paper run (or of its playback): guarded risk gate, paper venue, journal."""
    instruments = config.instrument_map()
    venue = PaperVenue(clock, instruments, config.venue)
    kernel = Kernel(
        instruments.values(),
        clock=clock,
        venue=venue,
        risk_config=config.risk,
        risk_factory=lambda risk, portfolio, clk, bus: GuardedRiskGate(risk, portfolio, clk, bus, guard),
        journal=journal,
        initial_cash=config.initial_cash,
        balances=config.balances,
        features=config.features,
        equity_interval_ns=config.report.equity_interval_ns,
    )
    cls = resolve_strategy(config.strategy.name)
    params = cls.Params.model_validate(config.strategy.params)
    kernel.add_strategy(cls.from_params(config.strategy.instruments, params, config.strategy.id))
    return kernel, venue


# ----------------------------------------------------------------------------- feeds


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


class NodeRouter:
    """The sink of every feed: routes each message to the kernel, the books, the guard or the bus.

    Parameters
    ----------
    kernel
        The (started) kernel.
    guard
        Market-data health of the run.
    max_messages
        Process at most this many market-data messages (trades, quotes, bars, book
        messages); later ones are dropped and ``on_limit`` is called once.
    on_limit
        Called when ``max_messages`` is reached.

    Attributes
    ----------
    books
        The node's L2 book per instrument, built from the adapters' BookSnapshot/BookDelta.
    counts
        Messages handled per type name (``"ignored"``: instruments the kernel does not trade,
        ``"after_limit"``: dropped after ``max_messages``).
    """

    def __init__(
        self,
        kernel: Kernel,
        guard: MarketGuard,
        *,
        max_messages: int | None = None,
        on_limit: Callable[[], None] | None = None,
    ) -> None:
        self.kernel = kernel
        self.guard = guard
        self.books: dict[str, OrderBook] = {}
        self.counts: Counter[str] = Counter()
        self.messages = 0
        self.max_messages = max_messages
        self._on_limit = on_limit
        self._closed = False
        self._process = kernel.process
        self._publish = kernel.bus.publish
        self._instruments = kernel.instruments
        self._liveness = guard.liveness
        self._dispatch: dict[type, Callable[[Any], None]] = {
            Trade: self._activity,
            Quote: self._activity,
            Bar: self._data,
            BookSnapshot: self._snapshot,
            BookDelta: self._delta,
            BookResynced: self._resynced,
            FeedStale: self._stale,
            MarkPrice: self._publish,
            FundingRate: self._publish,
        }
        kernel.bus.subscribe(OrderSubmitted, self._log_submitted)
        kernel.bus.subscribe(OrderDenied, self._log_denied)

    def __call__(self, msg: Any) -> None:
        """Handle one message from a feed."""
        handler = self._dispatch.get(type(msg))
        if handler is None:
            self.counts["unroutable"] += 1
            logger.warning("node: no route for a {} message, dropped", type(msg).__name__)
            return
        handler(msg)

    def _admit(self, msg: Any) -> bool:
        iid = msg.instrument_id
        if iid not in self._instruments:
            self.counts["ignored"] += 1
            return False
        if self._closed:
            self.counts["after_limit"] += 1
            return False
        self.messages += 1
        limit = self.max_messages
        if limit is not None and self.messages >= limit:
            self._closed = True
            if self._on_limit is not None:
                self._on_limit()
        self.guard.on_data(iid)
        return True

    def _data(self, msg: Bar) -> None:
        if self._admit(msg):
            self._process(msg)

    def _activity(self, msg: Trade | Quote) -> None:
        if self._admit(msg):
            self._liveness.on_activity(msg.instrument_id, msg.ts_init)  # before the strategy sees it
            self._process(msg)

    def _snapshot(self, msg: BookSnapshot) -> None:
        if not self._admit(msg):
            return
        book = self.books.get(msg.instrument_id)
        if book is None:
            book = self.books[msg.instrument_id] = OrderBook(msg.instrument_id)
        book.load(msg.bids, msg.asks, msg.last_seq, msg.ts_event)  # type: ignore[arg-type]
        self._liveness.on_book(msg.instrument_id, snapshot=True)
        self.counts["BookSnapshot"] += 1
        self._publish(msg)

    def _delta(self, msg: BookDelta) -> None:
        if not self._admit(msg):
            return
        book = self.books.get(msg.instrument_id)
        if book is None:
            # A delta always follows its book's snapshot; without one there is nothing to update.
            self.counts["delta_without_book"] += 1
            return
        book.apply(msg.bids, msg.asks)  # type: ignore[arg-type]
        book.last_seq = msg.last_seq
        self._liveness.on_book(msg.instrument_id, snapshot=False)
        self.counts["BookDelta"] += 1
        self._publish(msg)

    def _resynced(self, msg: BookResynced) -> None:
        self.counts["BookResynced"] += 1
        logger.warning("book {} resynced after: {}", msg.instrument_id, msg.reason)
        self._publish(msg)

    def _stale(self, msg: FeedStale) -> None:
        self.counts["FeedStale"] += 1
        self.guard.on_stale(msg)
        self._publish(msg)

    # ------------------------------------------------------------------ decision log

    def _describe(self, client_order_id: str) -> str:
        order = self.kernel.orders.get(client_order_id)
        if order is None:
            return client_order_id
        price = "" if order.price != order.price else f" @ {order.price!r}"
        return (
            f"{client_order_id} {order.strategy_id}: {order.side.name} {order.quantity!r} "
            f"{order.instrument_id} {order.order_type}{price}"
        )

    def _log_submitted(self, event: OrderSubmitted) -> None:
        why = self.kernel.result.submit_reasons.get(event.client_order_id, "")
        logger.info("decision {} -> submitted ({})", self._describe(event.client_order_id), why or "no reason given")

    def _log_denied(self, event: OrderDenied) -> None:
        why = self.kernel.result.submit_reasons.get(event.client_order_id, "")
        logger.info(
            "decision {} -> denied: {} (strategy reason: {})",
            self._describe(event.client_order_id),
            event.reason,
            why or "none given",
        )


# ----------------------------------------------------------------------------- daemon


@dataclass
class NodeSummary:
    """What a daemon run did (written as ``node.json`` next to the run outputs)."""

    stop_reason: str = ""
    started_ns: int = 0
    stopped_ns: int = 0
    messages: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    feeds: dict[str, dict[str, int]] = field(default_factory=dict)
    recovered_orders: int = 0
    resolved_unknown: list[str] = field(default_factory=list)
    recovered_positions: dict[str, float] = field(default_factory=dict)
    positions: dict[str, float] = field(default_factory=dict)
    orders: int = 0
    fills: int = 0

    def to_json(self) -> str:
        """Deterministically ordered JSON text."""
        return json.dumps(asdict(self), indent=2, sort_keys=True)


class TradingNode:
    """The paper-trading daemon (see the module docstring).

    Parameters
    ----------
    config
        The validated paper config (paths resolved).
    max_seconds
        Stop after this many seconds of running (``None``: until a signal).
    max_messages
        Stop after this many market-data messages (``None``: no limit).
    handle_signals
        Install SIGINT/SIGTERM handlers for the duration of :meth:`run` (needs the main thread).

    Notes
    -----
    Construction builds the kernel and opens the journal (no I/O on the network, no
    compilation); call :meth:`run` once. ``kernel``, ``router``, ``guard`` and ``venue``
    are available as soon as the node is constructed (tests and benchmarks subscribe to
    ``kernel.bus``); ``feeds`` once :meth:`run` started them.
    """

    def __init__(
        self,
        config: PaperConfig,
        *,
        max_seconds: float | None = None,
        max_messages: int | None = None,
        handle_signals: bool = True,
    ) -> None:
        if max_seconds is not None and not max_seconds > 0:
            raise ConfigError(f"paper: max_seconds must be > 0, got {max_seconds!r}")
        if max_messages is not None and max_messages < 1:
            raise ConfigError(f"paper: max_messages must be >= 1, got {max_messages!r}")
        self.config = config
        self.max_seconds = max_seconds
        self.handle_signals = handle_signals
        self.clock = LiveClock()
        self.guard = MarketGuard()
        self.journal = None if config.journal is None else _open_journal(config.journal, config.journal_sync)
        try:
            self.kernel, self.venue = build_paper_kernel(config, self.clock, self.guard, self.journal)
        except Exception:
            if self.journal is not None:
                self.journal.close()
            raise
        self.router = NodeRouter(self.kernel, self.guard, max_messages=max_messages, on_limit=self._limit_reached)
        self.feeds: list[Feed] = []
        self.recorder: FrameRecorder | None = None
        self.summary = NodeSummary()
        self.running = asyncio.Event()
        self._stop: asyncio.Event | None = None
        self._stop_reason = ""

    # ------------------------------------------------------------------ control

    def stop(self, reason: str = "stop requested") -> None:
        """Ask :meth:`run` to shut down (safe from a signal handler or any callback on the loop)."""
        if not self._stop_reason:
            self._stop_reason = reason
        if self._stop is not None:
            self._stop.set()

    def _limit_reached(self) -> None:
        self.stop(f"max_messages reached ({self.router.max_messages})")

    # ------------------------------------------------------------------ run

    async def run(self) -> NodeSummary:
        """Warm up, recover, subscribe, trade until stopped, shut down; return the summary.

        Raises
        ------
        VenueError
            A feed failed fatally (after the daemon shut down cleanly).
        """
        loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        if self._stop_reason:
            self._stop.set()
        summary = self.summary
        summary.started_ns = self.clock.now_ns()
        # Installed first: a signal during the warm-up or the recovery stops the daemon cleanly.
        signals = self._install_signals(loop) if self.handle_signals else []
        tasks: dict[asyncio.Task[None], Feed] = {}
        failure: BaseException | None = None
        try:
            if self.config.warm_up:
                from tradebus.features.warmup import warm_up

                logger.info("warming up the feature kernels")
                warm_up()
            self._recover()
            self.kernel.start()
            if self.config.record is not None:
                self.recorder = FrameRecorder(self.config.record)
            self.feeds = build_feeds(self.config, self.router, live=True, recorder=self.recorder)
            for feed in self.feeds:
                self.guard.register(feed)
            await asyncio.sleep(0)  # let a signal received so far be handled before subscribing
            if not self._stop.is_set():
                tasks = {asyncio.create_task(feed.run(), name=f"feed:{feed.name}"): feed for feed in self.feeds}
                self.running.set()
                logger.info("paper daemon running: {} feed(s), strategy {}", len(self.feeds), self.config.strategy.name)
                failure = await self._serve(tasks)
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)
            await self._shutdown(tasks)
        if failure is not None:
            raise failure
        return summary

    async def _serve(self, tasks: dict[asyncio.Task[None], Feed]) -> BaseException | None:
        assert self._stop is not None
        stopper = asyncio.create_task(self._stop.wait(), name="node:stop")
        try:
            done, _ = await asyncio.wait(
                [stopper, *tasks], timeout=self.max_seconds, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stopper.cancel()
        if not done:
            self.stop(f"max_seconds reached ({self.max_seconds} s)")
            return None
        for task in done:
            if task is stopper or task.cancelled():
                continue
            feed = tasks[task]
            exc = task.exception()
            if exc is not None:
                self.stop(f"feed {feed.name} failed: {exc}")
                logger.error("feed {} failed, stopping the daemon: {}", feed.name, exc)
                return exc
            self.stop(f"feed {feed.name} ended")
        return None

    async def _shutdown(self, tasks: dict[asyncio.Task[None], Feed]) -> None:
        logger.info("paper daemon stopping: {}", self._stop_reason or "stopped")
        for feed in self.feeds:
            feed.stop()
        pending = [t for t in tasks if not t.done()]
        if pending:
            _, still = await asyncio.wait(pending, timeout=5.0)
            for task in still:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        self.venue.close()
        self.kernel.stop()
        if self.recorder is not None:
            self.recorder.close()
        if self.journal is not None:
            self.journal.close()
        summary = self.summary
        summary.stop_reason = self._stop_reason or "stopped"
        summary.stopped_ns = self.clock.now_ns()
        summary.messages = self.router.messages
        result = self.kernel.result
        counts = {"bars": result.bars, "trades": result.trades, "quotes": result.quotes, **self.router.counts}
        summary.counts = dict(sorted(counts.items()))
        for feed in self.feeds:
            client = feed.client
            if client is not None:
                summary.feeds[feed.name] = {
                    "connections": client.connections,
                    "frames": client.frames,
                    "rejected": client.rejected,
                    "unexpected_streams": sum(feed.unexpected_streams().values()),
                }
        portfolio = self.kernel.portfolio
        summary.positions = {iid: portfolio.position(iid) for iid in self.kernel.instruments}
        summary.orders = len(self.kernel.orders.orders())
        summary.fills = len(self.kernel.result.fills)
        logger.info(
            "paper daemon stopped: {} messages, {} orders, {} fills, positions {}",
            summary.messages,
            summary.orders,
            summary.fills,
            summary.positions,
        )

    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> list[int]:
        installed = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stop, f"signal {sig.name}")
            installed.append(sig)
        return installed

    def _recover(self) -> None:
        """Rebuild orders and positions from the journal and resolve the UNKNOWN orders."""
        journal = self.journal
        if journal is None:
            return
        kernel = self.kernel
        unknown = journal.replay(
            kernel.orders, kernel.portfolio, self.clock.now_ns(), risk=kernel.risk, on_message=kernel.record_journaled
        )
        orders = kernel.orders.orders()
        if not orders:
            return
        positions = {iid: kernel.portfolio.position(iid) for iid in kernel.instruments}
        self.venue.resume(positions, unknown)
        for order in unknown:
            kernel.execution.resolve_unknown(order.client_order_id)
            logger.warning("recovered order {} resolved: {} ({})", order.client_order_id, order.status, order.reason)
        summary = self.summary
        summary.recovered_orders = len(orders)
        summary.resolved_unknown = [o.client_order_id for o in unknown]
        summary.recovered_positions = {iid: qty for iid, qty in positions.items() if qty}
        logger.info(
            "recovered {} order(s) from journal {}; positions {}",
            len(orders),
            journal.path,
            summary.recovered_positions,
        )


def _open_journal(path: Path, synchronous: str) -> Journal:
    path.parent.mkdir(parents=True, exist_ok=True)
    return Journal(path, synchronous)  # type: ignore[arg-type]


def run_paper(
    config_path: str | Path,
    out_dir: str | Path | None = None,
    *,
    max_seconds: float | None = None,
    max_messages: int | None = None,
    force: bool = False,
    overrides: Sequence[str] = (),
) -> tuple[NodeSummary, RunResult]:
    """Load a paper config, run the daemon until stopped, and write its outputs.

    With ``out_dir``, the run's ``fills.csv``, ``orders.csv``, ``equity.csv``,
    ``metrics.json`` and ``config.yaml`` (as ``tradebus backtest`` writes them) and
    ``node.json`` (:class:`NodeSummary`) are written there when the daemon stops. The
    directory may hold the config's journal and recording (they are never touched);
    anything else is refused before the daemon starts, unless ``force``
    (:class:`~tradebus.reports.writers.RunDirectory`).

    Raises
    ------
    ConfigError
        An invalid config, or an output directory holding files the run does not write
        (before any I/O).
    VenueError
        A feed failed fatally.
    """
    from tradebus.reports.writers import RunDirectory

    config = load_paper_config(config_path, overrides)
    run_dir = None if out_dir is None else RunDirectory(out_dir, "paper", keep=kept_files(config), force=force)
    node = TradingNode(config, max_seconds=max_seconds, max_messages=max_messages)
    try:
        summary = asyncio.run(node.run())
    finally:
        if run_dir is not None:
            write_outputs(run_dir, node.kernel, config, {"node.json": node.summary.to_json()})
    return summary, node.kernel.result


def kept_files(config: PaperConfig) -> list[Path]:
    """The files a paper config names that are not run outputs (journal, recording): never touched."""
    return [path for path in (config.journal, config.record) if path is not None]


def write_outputs(run_dir: RunDirectory, kernel: Kernel, config: PaperConfig, extra: dict[str, str]) -> None:
    """Write a paper or playback run like a backtest run directory, plus ``extra`` files."""
    from tradebus.reports.metrics import compute_metrics
    from tradebus.reports.writers import write_run

    lot_sizes = {iid: inst.lot_size for iid, inst in kernel.instruments.items()}
    result = kernel.result
    with run_dir:
        write_run(run_dir, result, compute_metrics(result, lot_sizes), dump_paper_config(config), extra, lot_sizes)
    logger.info("run outputs written to {}", run_dir.path)
