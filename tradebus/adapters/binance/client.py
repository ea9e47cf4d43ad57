"""Binance market-data client (spot and USD-M): streams -> parsers -> books -> sink.

:class:`BinanceRouter` is the synchronous part: it routes each combined-stream frame by
its stream name through a dict of handlers to the parsers, keeps one
:class:`~tradebus.adapters.common.sync.BookSync` per symbol for the diff-depth stream,
drops repeated trades (by trade id, bounded memory) and hands core messages to the
sink. It is used both live (by :class:`BinanceClient`) and to replay a recording
(:meth:`BinanceRouter.replay`), so a recording goes through exactly the same code.

:class:`BinanceClient` adds the connection (a :class:`~tradebus.adapters.common.client.WsClient`
on ``{ws_url}/stream?streams=...``) and the REST depth snapshot, fetched with ccxt
(``ccxt.async_support.binance`` with its URLs pointed at the configured ``rest_url``,
calling the implicit ``public_get_depth`` / ``fapipublic_get_depth`` endpoints, no
market loading) or with a plain aiohttp GET (``snapshot_fetcher: http``).

Messages: ``trade``/``aggTrade`` -> Trade; closed ``kline`` -> Bar; ``bookTicker`` ->
Quote; ``depth`` + snapshot -> BookSnapshot, BookDelta, BookResynced and (only when
``bookTicker`` is not subscribed) Quote from the book; ``markPrice`` -> MarkPrice +
FundingRate.
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, NamedTuple

import msgspec
from loguru import logger
from websockets.exceptions import InvalidStatus

from tradebus.adapters.binance.config import BinanceConfig, BinanceFeedOptions, BinanceMarket, kline_interval
from tradebus.adapters.binance.parse import (
    StreamKind,
    parse_agg_trade,
    parse_book_ticker,
    parse_depth_snapshot,
    parse_depth_update,
    parse_kline,
    parse_mark_price,
    parse_rest_trades,
    parse_trade,
    parse_trade_id,
    split_stream,
    stream_kind,
    variant_key,
)
from tradebus.adapters.common.book import OrderBook
from tradebus.adapters.common.client import Sink, WsClient, connection_lost
from tradebus.dedup import TradeDeduper
from tradebus.adapters.common.feed import Feed, FeedConfig, connection_policy
from tradebus.adapters.common.parsing import WHOLE_FRAME, FrameError, FundingRateCheck, frame_error
from tradebus.adapters.common.policy import Backoff, ConnectionPolicy, FatalVenueError, KeepAlive, SubscriptionRejected
from tradebus.adapters.common.recorder import FrameRecorder
from tradebus.adapters.common.skipped_streams import SkippedStreams
from tradebus.adapters.common.trade_gaps import TRADES_CONN, TradeFetch, TradeGaps
from tradebus.adapters.binance.sync import BinanceFuturesRule, BinanceSpotRule
from tradebus.adapters.common.sync import BookSync, SequenceRule
from tradebus.engine.instrument import Instrument
from tradebus.engine.messages import BookSnapshot, Trade
from tradebus.errors import ParseError, VenueError

__all__ = [
    "MAX_CONNECTION_AGE",
    "SNAPSHOT_CONN",
    "RestAnswer",
    "TRADES_CONN",
    "BinanceClient", "BinanceRouter", "CcxtDepthFetcher", "DepthFetcher", "BinanceFeedHandle",
    "HttpDepthFetcher",
    "binance_keepalive",
    "binance_policy",
    "feed_name",
    "rest_answer",
    "rest_conn",
]

Handler = Callable[[str | bytes, int], None]
SnapshotFetch = Callable[[str], Awaitable[BookSnapshot]]

_control = msgspec.json.Decoder()


#: Trades per page of ``aggTrades`` / ``historicalTrades`` (the venue's maximum).
TRADES_PAGE = 1000

#: Seconds a fetch of missing trades may take, every page included.
TRADES_TIMEOUT = 10.0

#: Seconds after which a connection is recycled: 23 h 50 min (Binance cuts every connection at 24 h).
MAX_CONNECTION_AGE = 23 * 3600 + 50 * 60


#: Recorder connection prefix of a REST depth snapshot: ``"rest:<SYMBOL>@<connection id>"``.
SNAPSHOT_CONN = "rest:"


def feed_name(market: BinanceMarket) -> str:
    """The name of the feed of ``market`` (``"binance-usdm"``): its logs, FeedStale source and recorded connections."""
    return f"binance-{market.value}"


def rest_conn(prefix: str, symbol: str, source: str) -> str:
    """The recorded connection id of a REST answer about ``symbol`` fetched by ``source``.

    ``source`` is the stream connection a depth snapshot was fetched for (``"binance-usdm:2"``)
    or, for a trade history, the feed's name: ``rest_conn("rest:", "BTCUSDT", "binance-usdm:2")
    == "rest:BTCUSDT@binance-usdm:2"``. A spot and a USD-M feed of one symbol fetch their
    snapshots and trade histories under one symbol, so the id names the feed that asked, for a
    playback to hand the answer to that feed; a snapshot's names its connection too, for the
    playback to load it into the book of that connection only.
    """
    return f"{prefix}{symbol}@{source}"


class RestAnswer(NamedTuple):
    """What the connection id of a recorded REST answer says (:func:`rest_answer`)."""

    prefix: str
    """:data:`SNAPSHOT_CONN` or :data:`TRADES_CONN`."""
    symbol: str
    feed: str | None
    """The feed that fetched it; ``None`` in a recording made before the ids named it (``"rest:BTCUSDT"``)."""
    connection: str | None
    """The stream connection a snapshot was fetched for (``"binance-spot:2"``); ``None`` for a trade
    history, and for a snapshot of a recording made before the ids named it (``"rest:BTCUSDT@binance-spot"``)."""


def rest_answer(conn: str) -> RestAnswer | None:
    """What a recorded REST answer's connection id says (:class:`RestAnswer`), ``None`` for a stream frame's.

    ``"rest:BTCUSDT@binance-spot:2"`` gives ``("rest:", "BTCUSDT", "binance-spot", "binance-spot:2")``,
    ``"rest-trades:BTCUSDT@binance-spot"`` gives ``("rest-trades:", "BTCUSDT", "binance-spot", None)``.
    """
    for prefix in (SNAPSHOT_CONN, TRADES_CONN):
        if conn.startswith(prefix):
            symbol, at, source = conn[len(prefix) :].partition("@")
            if not at:
                return RestAnswer(prefix, symbol, None, None)
            feed, colon, _ = source.partition(":")
            return RestAnswer(prefix, symbol, feed, source if colon else None)
    return None


def binance_keepalive() -> KeepAlive:
    """Binance keep-alive: the server pings every 20 s (3 min for futures); the websockets library pongs."""
    return KeepAlive()


def binance_policy(seed: int | None = None) -> ConnectionPolicy:
    """Binance defaults: no app pings, reconnect before the venue's 24 h disconnect."""
    return ConnectionPolicy(backoff=Backoff(seed=seed), keepalive=binance_keepalive(), max_connection_age=MAX_CONNECTION_AGE)


class BinanceRouter:
    """Frame router of one Binance connection: stream name -> parser -> (book) -> sink.

    Parameters
    ----------
    config
        The adapter config (symbols, channels, market, venue name).
    sink
        Receives core messages.
    fetch_snapshot
        Async ``fetch(symbol) -> BookSnapshot`` used by the books to (re)sync;
        ``None`` when snapshots are fed with :meth:`on_snapshot_frame` (replay).
    fetch_trades
        Async fetch of the trades a gap in trade ids skipped (:attr:`gaps`); ``None`` when
        the recorded answers are fed with :meth:`on_trades_frame` (replay).
    clock_ns
        Time source for messages the feed creates itself (BookResynced).
    as_frame
        How the books hand a fetched snapshot's messages to the sink (the client's
        :meth:`~tradebus.adapters.common.client.WsClient.as_frame`: as one frame).
    strict_streams
        A frame of a subscribed kind of stream with other parameters than subscribed (e.g.
        ``btcusdt@depth@0ms`` when ``btcusdt@depth@100ms`` is subscribed) raises
        :class:`~tradebus.errors.DataError` instead of being skipped: for replays, where it
        means the recording was made with another config.

    Attributes
    ----------
    gaps
        Trade-id continuity (:class:`~tradebus.adapters.common.trade_gaps.TradeGaps`): trades
        after a gap wait until the missing ones were fetched (or the fetch failed).
    funding_rates
        Refuses a ``markPriceUpdate``'s implausible funding rate (its mark price is used).
    unexpected_streams
        Frames per stream name that is not subscribed (skipped, never parsed). The first frame
        of each such stream is logged at WARNING, their counts once more by :meth:`log_skipped`.
    unknown
        Frames that could not be routed (unexpected streams and undecodable frames).
    """

    def __init__(
        self,
        config: BinanceConfig,
        sink: Sink,
        fetch_snapshot: SnapshotFetch | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
        *,
        strict_streams: bool = False,
        fetch_trades: TradeFetch | None = None,
        as_frame: Callable[[Callable[[], None], int], None] | None = None,
    ) -> None:
        self.config = config
        self.sink = sink
        self.dedup = TradeDeduper(config.dedup_capacity)
        self.gaps = TradeGaps(
            f"binance {config.market.value}",
            sink,
            self.dedup.seen,
            recover="recorded" if fetch_trades is None else "fetch",
            fetch=fetch_trades,
            clock_ns=clock_ns,
        )
        self.counts: Counter[str] = Counter()
        self.funding_rates = FundingRateCheck(f"binance {config.market.value}")
        self.unknown = 0
        self.skipped = SkippedStreams(
            f"binance {config.market.value}", config.streams(), variant_key,
            "depth_speed / kline_<interval> / trade or aggTrade channel"
        )
        self.unexpected_streams: Counter[str] = self.skipped.counts
        self._strict = strict_streams
        self.books: dict[str, BookSync] = {}
        self._handlers: dict[str, Handler] = {}
        self._fetch = fetch_snapshot
        self._fetch_trades = fetch_trades
        self._as_frame = as_frame
        quotes_from_book = "bookTicker" not in config.channels
        for stream in config.streams():
            symbol = stream.partition("@")[0].upper()
            iid = config.instrument_id(symbol)
            kind = stream_kind(stream)
            if kind is StreamKind.DEPTH:
                self.books[symbol] = self._make_sync(symbol, iid, quotes_from_book)
            self._handlers[stream] = self._handler(kind, iid, symbol)

    # -------------------------------------------------------------- handlers

    def _make_sync(self, symbol: str, iid: str, emit_quotes: bool) -> BookSync:
        rule: SequenceRule = BinanceSpotRule() if self.config.market is BinanceMarket.SPOT else BinanceFuturesRule()
        fetch = self._fetch
        requester = None if fetch is None else (lambda: fetch(symbol))
        return BookSync(iid, rule, self.sink, requester, emit_quotes=emit_quotes, as_frame=self._as_frame)

    def _handler(self, kind: StreamKind | None, iid: str, symbol: str) -> Handler:
        sink = self.sink
        counts = self.counts
        seen = self.dedup.seen
        if kind is StreamKind.TRADE or kind is StreamKind.AGG_TRADE:
            parse = parse_trade if kind is StreamKind.TRADE else parse_agg_trade
            key = kind.value
            line = self.gaps.line(iid)
            off_sequence = self.gaps.off_sequence

            def on_trade(raw: str | bytes, recv_ns: int) -> None:
                trade = parse(raw, recv_ns, iid)
                if trade is None:  # an insurance-fund or ADL trade: no order book saw it, but it has its id
                    counts["trade_not_market"] += 1
                    if parse_trade_id(raw) == line.next_id:
                        line.next_id += 1
                    return
                if seen((iid, trade.trade_id)):
                    counts["duplicate_" + key] += 1
                    return
                counts[key] += 1
                tid = int(trade.trade_id)
                if tid == line.next_id:
                    line.next_id = tid + 1
                    sink(trade)
                else:
                    off_sequence(line, trade, tid)

            return on_trade
        if kind is StreamKind.BOOK_TICKER:

            def on_ticker(raw: str | bytes, recv_ns: int) -> None:
                sink(parse_book_ticker(raw, recv_ns, iid))
                counts["bookTicker"] += 1

            return on_ticker
        if kind is StreamKind.KLINE:

            def on_kline(raw: str | bytes, recv_ns: int) -> None:
                bar = parse_kline(raw, recv_ns, iid)
                counts["kline"] += 1
                if bar is not None:
                    counts["bar"] += 1
                    sink(bar)

            return on_kline
        if kind is StreamKind.DEPTH:
            sync = self.books[symbol]
            on_delta = sync.on_delta

            def on_depth(raw: str | bytes, recv_ns: int) -> None:
                try:
                    delta = parse_depth_update(raw, recv_ns, iid)
                except ParseError as exc:
                    sync.mark_lost(f"unparseable depth frame: {exc}")
                    raise
                on_delta(delta)
                counts["depth"] += 1

            return on_depth
        if kind is StreamKind.MARK_PRICE:

            accept_rate = self.funding_rates.accept

            def on_mark(raw: str | bytes, recv_ns: int) -> None:
                mark, funding = parse_mark_price(raw, recv_ns, iid)
                counts["markPrice"] += 1
                sink(mark)
                if funding is not None and accept_rate(iid, funding.rate):
                    sink(funding)

            return on_mark
        raise VenueError(f"binance: no parser for stream kind {kind!r} ({iid})")

    # ----------------------------------------------------------------- input

    def on_frame(self, raw: str | bytes, recv_ns: int) -> None:
        """Route one received frame; raises :class:`ParseError` for a frame that cannot be used.

        A frame of a stream that is not subscribed is counted in :attr:`unexpected_streams`
        and skipped (see ``strict_streams``).
        """
        if self.gaps.recovering and self._fetch_trades is None:
            self.gaps.expire(recv_ns)
        stream = split_stream(raw)
        if stream is not None:
            handler = self._handlers.get(stream)
            if handler is not None:
                handler(raw, recv_ns)
                return
        self._on_other(raw, stream, recv_ns)

    def _on_other(self, raw: str | bytes, stream: str | None, recv_ns: int) -> None:
        if stream is not None:
            self._unexpected(stream)
            return
        try:
            msg = _control.decode(raw)
        except msgspec.DecodeError as exc:
            self.unknown += 1
            raise frame_error("Binance", "", raw, exc) from None
        if isinstance(msg, dict) and isinstance(msg.get("stream"), str):
            handler = self._handlers.get(msg["stream"])
            if handler is not None:  # a combined-stream frame laid out differently (e.g. spaces)
                handler(raw, recv_ns)
                return
            self._unexpected(msg["stream"])
            return
        if isinstance(msg, dict) and "id" in msg and "result" in msg:
            self.counts["ack"] += 1
            return
        if isinstance(msg, dict) and isinstance(msg.get("error"), dict):
            err = msg["error"]
            raise SubscriptionRejected(
                f"binance rejected request id={msg.get('id')} (streams {self.config.streams()}): "
                f"code {err.get('code')} {err.get('msg')}"
            )
        self.unknown += 1
        raise FrameError(
            "Binance", "", WHOLE_FRAME, "expected a combined-stream frame, a request result or an error", raw
        )

    def _unexpected(self, stream: str) -> None:
        """Count and skip a frame of a stream that is not subscribed; warn at its first frame."""
        self.unknown += 1
        if self._strict:
            # a feed subscribes one variant of a stream, so a frame of another means its own is not recorded
            instead = self.skipped.instead(stream)
            if instead:
                raise self.skipped.mismatch(stream, instead[0])
        self.skipped.skip(stream)

    def log_skipped(self) -> None:
        """Log, in one WARNING, how many frames of each unsubscribed stream were skipped (nothing if none)."""
        self.skipped.log()

    def on_snapshot_frame(self, raw: str | bytes, recv_ns: int, symbol: str) -> None:
        """Feed a REST depth snapshot body (recorded or fetched) to ``symbol``'s book."""
        sync = self.books.get(symbol)
        if sync is None:
            raise ParseError(f"binance: depth snapshot for {symbol}, which has no depth subscription")
        sync.on_snapshot(parse_depth_snapshot(raw, recv_ns, sync.instrument_id))

    def on_trades_frame(self, raw: str | bytes, recv_ns: int, symbol: str) -> None:
        """Feed a recorded REST trade-history answer (``"rest-trades:<SYMBOL>"``) to ``symbol``'s pending gap."""
        iid = self.config.instrument_id(symbol)
        if iid not in self.gaps.lines:
            raise ParseError(f"binance: recorded trades for {symbol}, which has no trade subscription")
        self.gaps.on_recorded(iid, parse_rest_trades(raw, recv_ns, iid, "aggTrade" in self.config.channels), recv_ns)

    def start_books(self) -> None:
        """Request a snapshot for every book that is not SYNCED (no-op without a fetcher)."""
        if self._fetch is None:
            return
        for sync in self.books.values():
            sync.request()

    def invalidate_books(self, reason: str) -> None:
        """Mark every book as broken (connection lost): nothing is emitted until resynced.

        No snapshot is requested here; :meth:`start_books` does it once reconnected.
        """
        for sync in self.books.values():
            sync.invalidate(reason, request=False)

    async def close(self) -> None:
        """Cancel pending snapshot requests and trade fetches."""
        for sync in self.books.values():
            await sync.close()
        await self.gaps.close()

    def replay(self, frames: Iterable[tuple[int, str, str | bytes]]) -> None:
        """Run recorded ``(recv_ns, conn, raw)`` frames through the same path as live frames.

        Frames whose ``conn`` starts with ``"rest:"`` are REST depth snapshots
        (``"rest:<SYMBOL>@<connection id>"``, :func:`rest_conn`), with ``"rest-trades:"`` trade-history
        answers; those another feed fetched are skipped. Rejected frames are logged and
        skipped, as live.
        """
        name = feed_name(self.config.market)
        for recv_ns, conn, raw in frames:
            answer = rest_answer(conn)
            try:
                if answer is None:
                    self.on_frame(raw, recv_ns)
                    continue
                prefix, symbol, feed, _ = answer
                if feed is not None and feed != name:
                    continue
                if prefix == SNAPSHOT_CONN:
                    self.on_snapshot_frame(raw, recv_ns, symbol)
                else:
                    self.on_trades_frame(raw, recv_ns, symbol)
            except ParseError as exc:
                logger.warning("binance replay: frame rejected: {}", exc)


class DepthFetcher(ABC):
    """Base of the REST fetchers: ``await fetch(symbol)`` returns the raw JSON body of a depth snapshot,
    ``await trades(...)`` one page of the trade history."""

    @abstractmethod
    async def fetch(self, symbol: str, limit: int) -> bytes:
        """Raw JSON body of the depth snapshot of ``symbol``."""

    @abstractmethod
    async def trades(self, symbol: str, aggregated: bool, from_id: int, limit: int) -> bytes:
        """Raw JSON body of ``aggTrades`` (``aggregated``) or ``historicalTrades`` from id ``from_id`` on."""

    async def close(self) -> None:
        """Release the HTTP session."""
        return


class CcxtDepthFetcher(DepthFetcher):
    """Depth snapshot through ``ccxt.async_support.binance`` pointed at ``rest_base``.

    Uses the implicit endpoints (``public_get_depth`` for spot, ``fapipublic_get_depth``
    for USD-M), so no market loading happens. ccxt returns decoded JSON; it is
    re-encoded (the same values, byte layout may differ) for the parser and the recorder.
    """

    def __init__(self, rest_base: str, market: BinanceMarket) -> None:
        import ccxt.async_support as ccxt_async

        self._exchange = ccxt_async.binance({"enableRateLimit": False})
        api = self._exchange.urls["api"]
        api["public"] = f"{rest_base}/api/v3"
        api["fapiPublic"] = f"{rest_base}/fapi/v1"
        self._market = market

    async def fetch(self, symbol: str, limit: int) -> bytes:
        import ccxt

        params = {"symbol": symbol, "limit": limit}
        try:
            if self._market is BinanceMarket.SPOT:
                body = await self._exchange.public_get_depth(params)
            else:
                body = await self._exchange.fapipublic_get_depth(params)
        except (ccxt.AuthenticationError, ccxt.PermissionDenied, ccxt.BadSymbol) as exc:
            raise FatalVenueError(f"binance depth {symbol}: {exc}") from exc
        except ccxt.BaseError as exc:
            raise VenueError(f"binance depth {symbol}: {type(exc).__name__}: {exc}") from exc
        return msgspec.json.encode(body)

    async def trades(self, symbol: str, aggregated: bool, from_id: int, limit: int) -> bytes:
        import ccxt

        ex = self._exchange
        spot = self._market is BinanceMarket.SPOT
        if aggregated:
            call = ex.public_get_aggtrades if spot else ex.fapipublic_get_aggtrades
        else:
            call = ex.public_get_historicaltrades if spot else ex.fapipublic_get_historicaltrades
        try:
            body = await call({"symbol": symbol, "fromId": from_id, "limit": limit})
        except ccxt.BaseError as exc:
            raise VenueError(f"binance trades {symbol} from {from_id}: {type(exc).__name__}: {exc}") from exc
        return msgspec.json.encode(body)

    async def close(self) -> None:
        await self._exchange.close()


class HttpDepthFetcher(DepthFetcher):
    """Depth snapshot with a plain aiohttp GET on ``{rest_base}{path}?symbol=..&limit=..``."""

    def __init__(self, rest_base: str, market: BinanceMarket, timeout: float = 10.0) -> None:
        self._api = rest_base + ("/api/v3" if market is BinanceMarket.SPOT else "/fapi/v1")
        self._url = self._api + "/depth"
        self._timeout = timeout
        self._session: Any = None

    async def fetch(self, symbol: str, limit: int) -> bytes:
        return await self._get(self._url, {"symbol": symbol, "limit": str(limit)}, f"depth {symbol}")

    async def trades(self, symbol: str, aggregated: bool, from_id: int, limit: int) -> bytes:
        url = self._api + ("/aggTrades" if aggregated else "/historicalTrades")
        params = {"symbol": symbol, "fromId": str(from_id), "limit": str(limit)}
        return await self._get(url, params, f"trades {symbol} from {from_id}")

    async def _get(self, url: str, params: dict[str, str], what: str) -> bytes:
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._timeout))
        try:
            async with self._session.get(url, params=params) as resp:
                body = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise VenueError(f"binance {what}: {type(exc).__name__}: {exc}") from exc
        if status >= 500 or status == 429:
            raise VenueError(f"binance {what}: HTTP {status}: {body[:200]!r}")
        if status != 200:
            raise FatalVenueError(f"binance {what}: HTTP {status}: {body[:200]!r}")
        return body

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class BinanceClient(WsClient):
    """Live Binance market data (spot or USD-M) for the configured symbols and channels.

    Parameters
    ----------
    config
        Endpoints, symbols, channels.
    sink
        Receives core messages (``kernel.process``).
    policy
        Connection policy (default :func:`binance_policy`).
    recorder
        Records every frame and REST answer (``conn`` = ``"rest:<SYMBOL>@<connection id>"`` for a
        depth snapshot, the connection it was fetched for, ``"rest-trades:<SYMBOL>@<name>"`` for trades, :func:`rest_conn`); default:
        one opened on ``config.record_path`` if set.
    fetcher
        REST depth fetcher (default from ``config.snapshot_fetcher``).
    """

    def __init__(
        self,
        config: BinanceConfig,
        sink: Sink,
        policy: ConnectionPolicy | None = None,
        recorder: FrameRecorder | None = None,
        fetcher: DepthFetcher | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        if recorder is None and config.record_path is not None:
            recorder = FrameRecorder(config.record_path)
        policy = policy or binance_policy()
        policy.stale_after = config.stale_after
        super().__init__(feed_name(config.market), sink, policy, recorder, clock_ns)
        self.config = config
        self._aggregated = "aggTrade" in config.channels
        trades = self._aggregated or "trade" in config.channels
        if fetcher is None and ("depth" in config.channels or trades):
            cls = CcxtDepthFetcher if config.snapshot_fetcher == "ccxt" else HttpDepthFetcher
            fetcher = cls(config.rest_base, config.market)
        self.fetcher = fetcher
        self.feed = BinanceRouter(
            config,
            sink,
            self._fetch_snapshot if fetcher else None,
            clock_ns,
            fetch_trades=self._fetch_trades if fetcher and trades else None,
            as_frame=self.as_frame,
        )
        self.subscriptions.add(config.streams())

    async def _fetch_snapshot(self, symbol: str) -> BookSnapshot:
        assert self.fetcher is not None
        body = await self.fetcher.fetch(symbol, self.config.depth_limit)
        recv_ns = self.clock_ns()
        if self.recorder is not None and not self._stopping:  # after stop() it is not handled either (as_frame)
            # the fetch of a connection that ended is cancelled (on_disconnected): this answer is this connection's
            conn = rest_conn(SNAPSHOT_CONN, symbol, self.conn_id or self.name)
            self.recorder.write(recv_ns, conn, body.decode())
        sync = self.feed.books[symbol]
        return parse_depth_snapshot(body, recv_ns, sync.instrument_id)

    async def _fetch_trades(
        self, instrument_id: str, first: int, last: int, timeout: float = TRADES_TIMEOUT
    ) -> tuple[list[Trade], int]:
        """Trades ``first..last`` of ``instrument_id`` from the REST history, page by page; the answer is recorded.

        Whatever went wrong (venue error, malformed page, ``timeout``), the pages
        fetched until then are kept, logged, and recorded as the answer, so a playback
        recovers exactly what this run did.
        """
        assert self.fetcher is not None
        symbol = next(s for s in self.config.symbols if self.config.instrument_id(s) == instrument_id)
        items: list[msgspec.Raw] = []
        start = first
        try:
            async with asyncio.timeout(timeout):
                while start <= last:
                    body = await self.fetcher.trades(symbol, self._aggregated, start, min(TRADES_PAGE, last - start + 1))
                    page = msgspec.json.decode(body, type=list[msgspec.Raw])
                    ids = [int(t.trade_id) for t in parse_rest_trades(body, 0, instrument_id, self._aggregated)]
                    kept = [raw for raw, tid in zip(page, ids, strict=True) if start <= tid <= last]
                    items += kept
                    if not kept or ids[-1] >= last:
                        break
                    start = ids[-1] + 1
        except (VenueError, ParseError, msgspec.DecodeError, TimeoutError) as exc:
            logger.warning(
                "{}: trades {}..{} of {}: fetch stopped after {} trades: {}: {}",
                self.name, first, last, symbol, len(items), type(exc).__name__, exc,
            )
        raw = b"[" + b",".join(bytes(item) for item in items) + b"]"
        recv_ns = self.clock_ns()
        if self.recorder is not None and not self._stopping:  # after stop() the recovery was given up (TradeGaps.end)
            self.recorder.write(recv_ns, rest_conn(TRADES_CONN, symbol, self.name), raw.decode())
        return parse_rest_trades(raw, recv_ns, instrument_id, self._aggregated), recv_ns

    def connect_url(self) -> str:
        return f"{self.config.ws_base}/stream?streams={'/'.join(self.subscriptions)}"

    def translate_error(self, exc: Exception) -> Exception:
        """A handshake refused with HTTP 400 is Binance rejecting the streams named in the URL."""
        if isinstance(exc, InvalidStatus) and exc.response.status_code == 400:
            body = bytes(exc.response.body or b"")[:200].decode("utf-8", "replace")
            return SubscriptionRejected(f"binance refused the streams {list(self.subscriptions)}: HTTP 400 {body}")
        return exc

    def subscribe_frames(self) -> list[str]:
        return []

    def on_frame(self, raw: str | bytes, recv_ns: int) -> None:
        self.feed.on_frame(raw, recv_ns)

    async def on_connected(self) -> None:
        self.feed.start_books()

    def on_disconnected(self, reason: str) -> None:
        if self._stopping:
            return  # a stop loses nothing: the books stay as the last frame left them, as a replay has them
        self.feed.invalidate_books(connection_lost(reason))

    async def on_stopped(self) -> None:
        await self.feed.close()
        if self.fetcher is not None:
            await self.fetcher.close()


# ----------------------------------------------------------------------------- paper feed


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
        intervals = [i for i in map(kline_interval, channels) if i is not None]
        options = BinanceFeedOptions.of(config)
        self.binance = BinanceConfig(
            market=BinanceMarket(config.market),
            symbols=[self.symbols[iid] for iid in self.instrument_ids],
            channels=["kline" if ch.startswith("kline_") else ch for ch in channels],  # type: ignore[arg-type]
            **({"kline_interval": intervals[0]} if intervals else {}),
            ws_url=config.ws_url,
            rest_url=options.rest_url,
            venue=self.venue_name,
            **({"stale_after": config.stale_after} if config.stale_after is not None else {}),
            snapshot_fetcher=options.snapshot_fetcher,
            **({"depth_speed": options.depth_speed} if options.depth_speed else {}),
        )
        self.name = feed_name(self.binance.market)
        self._reseeded: set[str] = set()  # books given a recorded snapshot since the last stream frame
        if live:
            policy = connection_policy(config, binance_keepalive(), MAX_CONNECTION_AGE)
            client = BinanceClient(self.binance, sink, policy, recorder, clock_ns=clock_ns)
            self.client = client
            self.feed = client.feed
            self.name = client.name
        else:
            self.client = None
            # a playback must fail loudly on a recording made with other stream parameters
            self.feed = BinanceRouter(self.binance, sink, None, clock_ns, strict_streams=True)

    def on_frame(self, raw: str | bytes, recv_ns: int, conn: str) -> None:
        answer = rest_answer(conn)
        if answer is not None:
            prefix, symbol, _, connection = answer
            if prefix != SNAPSHOT_CONN:
                self.feed.on_trades_frame(raw, recv_ns, symbol)
            elif connection is None:
                self._on_recorded_snapshot(raw, recv_ns, symbol)
            else:
                # fetched for ``connection``: a new one's snapshot may come before its first frame
                if connection != self.recorded_conn:
                    self.follow_connection(connection)
                self.feed.on_snapshot_frame(raw, recv_ns, symbol)
            return
        if conn != self.recorded_conn:
            self.follow_connection(conn)
        if self._reseeded:
            self._reseeded.clear()
        self.feed.on_frame(raw, recv_ns)

    def _on_recorded_snapshot(self, raw: str | bytes, recv_ns: int, symbol: str) -> None:
        """A REST snapshot of a recording made before its line named its connection (``"rest:<SYMBOL>@<feed>"``).

        One fetched on reconnecting may precede the new connection's first frame. Live, a snapshot
        is fetched only for a book out of sync, so one that finds the book in sync followed a
        connection loss the recording does not show yet: the book is invalidated first, and kept
        when the next connection's first frame arrives. (A snapshot the previous connection
        fetched after its last frame is taken for the next one's too: its line does not say.)
        """
        sync = self.feed.books.get(symbol)
        if sync is not None and sync.synced:
            sync.invalidate(f"connection lost: recorded connection {self.recorded_conn} ended", request=False)
        self.feed.on_snapshot_frame(raw, recv_ns, symbol)
        self._reseeded.add(symbol)

    def end_run(self, recv_ns: int) -> None:
        self.feed.gaps.end(recv_ns)
        self.feed.log_skipped()

    def restart_run(self) -> None:
        self._reseeded.clear()  # a snapshot the last session fetched for a connection it did not reach
        super().restart_run()
        self.feed.gaps.restart()

    def held_trades(self) -> list[dict[str, int | str]]:
        return self.feed.gaps.held()

    def invalidate_books(self, reason: str) -> None:
        for symbol, sync in self.feed.books.items():
            if symbol not in self._reseeded:  # not seeded by a snapshot fetched for the new connection
                sync.invalidate(reason, request=False)
        self._reseeded.clear()

    def accepts(self, conn: str) -> bool:
        """Whether ``conn`` is this feed's: its stream connection, or a REST answer it fetched (:func:`rest_conn`).

        A REST answer of a recording made before the ids named their feed (``"rest:BTCUSDT"``)
        is accepted by every Binance feed with that book (snapshot) or symbol (trades): the
        playback refuses such an id when two feeds accept it.
        """
        answer = rest_answer(conn)
        if answer is None:
            return super().accepts(conn)
        prefix, symbol, feed, _ = answer
        if feed is not None and feed != self.name:
            return False
        return symbol in (self.feed.books if prefix == SNAPSHOT_CONN else self.binance.symbols)

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

    def subscribed_streams(self) -> tuple[str, ...]:
        return tuple(self.binance.streams())

    def unexpected_streams(self) -> dict[str, int]:
        return dict(self.feed.unexpected_streams)


def _synced(sync: BookSync) -> Callable[[], bool]:
    return lambda: sync.synced
