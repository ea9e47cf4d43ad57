"""OKX v5 public market-data client: one WebSocket -> :class:`OkxParser` -> sink.

Subscriptions are ``(channel, instId)`` pairs kept as ``"channel:instId"`` in the
client's :class:`~tradebus.adapters.common.policy.SubscriptionSet`; after every
(re)connect they are sent as ``{"op": "subscribe", "args": [{"channel": ..., "instId": ...}, ...]}``
in batches of 50 (OKX limits a request to 64 kB). Keep-alive: the text ``"ping"`` when
nothing arrived for ``config.ping_after_s`` seconds (OKX drops a connection silent for
30 s and answers ``"pong"``).

Order books are checked by the parser (seqId chain, CRC32, crossed book). When a
book fails, the client unsubscribes and resubscribes that channel for that
instrument, which makes OKX send a fresh snapshot. When the connection drops,
every book is marked out of sync; the resubscription after the reconnect brings
the snapshots, each followed by :class:`~tradebus.engine.messages.BookResynced`.
Trades repeated across a reconnect are dropped by the parser (bounded window of
trade ids per instrument). Trades printed while the connection was down (or in a lost
frame) leave a gap in the trade ids: the parser holds that instrument's later trades, the
client fetches the missing ids from ``GET /api/v5/market/history-trades?type=1&after=``
(newest first, :data:`TRADES_PAGE` a page, :data:`TRADES_TIMEOUT` seconds in all; with
``x-simulated-trading: 1`` on the demo URL), records the answer as
``"rest-trades:<instId>"`` (asking again for ids the history did not hold yet, each answer
recorded: :mod:`tradebus.adapters.common.trade_gaps`) and the parser delivers them in id order
before the held trades, with :class:`~tradebus.engine.messages.TradesMissed`. The connection logic is
:class:`~tradebus.adapters.common.client.StreamBookClient`'s.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import msgspec
from loguru import logger

from tradebus.adapters.common.book import OrderBook
from tradebus.adapters.common.client import Sink, StreamBookClient
from tradebus.adapters.common.feed import FeedConfig, ParserFeed, all_in_sync, connection_policy
from tradebus.adapters.common.policy import Backoff, ConnectionPolicy, KeepAlive, KeepAliveMode
from tradebus.adapters.common.recorder import FrameRecorder
from tradebus.adapters.common.trade_gaps import TRADES_CONN
from tradebus.engine.instrument import Instrument
from tradebus.engine.messages import Trade
from tradebus.adapters.okx.config import OkxConfig, OkxFeedOptions
from tradebus.adapters.okx.parse import (
    BOOK_CHANNELS,
    OkxParser,
    book_key,
    frame_stream,
    parse_rest_trades,
    variant_key,
)
from tradebus.adapters.okx.schemas import OkxRestResponse
from tradebus.errors import ParseError, VenueError

__all__ = [
    "TRADES_PAGE", "TRADES_TIMEOUT", "OkxClient", "OkxFeedHandle", "okx_keepalive", "okx_policy", "subscribe_message",
]

#: Trades per page of ``GET /api/v5/market/history-trades`` (the venue's maximum).
TRADES_PAGE = 100

#: Seconds a fetch of missing trades may take, every page included.
TRADES_TIMEOUT = 10.0

_HISTORY_PATH = "/api/v5/market/history-trades"
_rest_response = msgspec.json.Decoder(OkxRestResponse)


def okx_keepalive(interval: float = 25.0, pong_timeout: float = 0.0) -> KeepAlive:
    """OKX keep-alive: send ``"ping"`` when nothing arrived for ``interval`` s (< 30 s, the server's limit).

    ``pong_timeout`` (s, ``0``: not checked): recycle the connection when nothing answers a ping.
    """
    return KeepAlive(KeepAliveMode.IDLE, interval, "ping", pong_timeout)


def okx_policy(config: OkxConfig, seed: int | None = None) -> ConnectionPolicy:
    """The connection policy of OKX: idle ``"ping"`` keep-alive, jittered backoff, no scheduled reconnect.

    A ``"pong"`` proves the connection (``pong_timeout_s`` after a ping, a silent connection is
    dead); only data refreshes the stale-feed watchdog (``stale_after_s``).
    """
    return ConnectionPolicy(
        backoff=Backoff(seed=seed),
        keepalive=okx_keepalive(config.ping_after_s, config.pong_timeout_s),
        stale_after=config.stale_after_s,
    )


def subscribe_message(op: str, pairs: Iterable[tuple[str, str]]) -> str:
    """``{"op": op, "args": [{"channel": c, "instId": i}, ...]}`` as JSON text."""
    args = [{"channel": channel, "instId": inst_id} for channel, inst_id in pairs]
    return msgspec.json.encode({"op": op, "args": args}).decode()


class OkxClient(StreamBookClient):
    """OKX public market data (see the module docstring).

    Parameters
    ----------
    sink
        Receives the core messages.
    config
        Endpoints and keep-alive settings.
    subscriptions
        Initial ``(channel, instId)`` pairs, e.g. ``[("books", "BTC-USDT"), ("trades", "BTC-USDT")]``.
    url
        Overrides ``config.public_url`` (tests point it at a local server).
    rest_url
        Overrides ``config.rest_url``, the REST base of the trade history.
    policy
        Overrides :func:`okx_policy`.
    recorder
        Records every raw frame.
    clock_ns
        Receive-time source.
    """

    batch = 50

    def __init__(
        self,
        sink: Sink,
        config: OkxConfig | None = None,
        subscriptions: Iterable[tuple[str, str]] = (),
        *,
        url: str | None = None,
        rest_url: str | None = None,
        policy: ConnectionPolicy | None = None,
        recorder: FrameRecorder | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.config = config or OkxConfig()
        name = f"{self.config.venue.lower()}-public"
        policy = policy or okx_policy(self.config)
        super().__init__(name, sink, policy, url or self.config.public_url, recorder, clock_ns)
        self.rest_url = (rest_url or self.config.rest_url).rstrip("/")
        self._http: Any = None
        self.parser = OkxParser(
            self.config.venue,
            verify_checksum=self.config.verify_checksum,
            resubscribe=self.resubscribe,
            fetch_trades=self._fetch_trades,
            sink=sink,
            clock_ns=clock_ns,
        )
        self.subscriptions.add(book_key(c, i) for c, i in subscriptions)

    async def subscribe(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Add ``(channel, instId)`` subscriptions (sent now if connected, and after every reconnect)."""
        await self.add_subscriptions(book_key(c, i) for c, i in pairs)

    def op_message(self, op: str, keys: Sequence[str]) -> str:
        return subscribe_message(op, (_split(key) for key in keys))

    async def on_stopped(self) -> None:
        await self.parser.gaps.close()
        await super().on_stopped()
        http, self._http = self._http, None
        if http is not None:
            await http.close()

    async def _fetch_trades(
        self, instrument_id: str, first: int, last: int, timeout: float = TRADES_TIMEOUT
    ) -> tuple[list[Trade], int]:
        """Trades ``first..last`` of ``instrument_id`` from the REST history, page by page; the answer is recorded.

        Whatever went wrong (venue error, malformed page, ``timeout``), the pages
        fetched until then are kept, logged, and recorded as the answer, so a playback
        recovers exactly what this run did.
        """
        inst_id = instrument_id.removesuffix(f".{self.config.venue}")
        items: list[str] = []
        after = last + 1
        try:
            async with asyncio.timeout(timeout):
                while after > first:
                    page = await self._history_page(inst_id, after)
                    ids = [int(t.trade_id) for t in parse_rest_trades(page, 0, instrument_id)]
                    raws = msgspec.json.decode(page, type=list[msgspec.Raw])
                    items += [bytes(r).decode() for r, tid in zip(raws, ids, strict=True) if first <= tid <= last]
                    if not ids or min(ids) >= after:  # the history holds nothing older (or did not move)
                        break
                    after = min(ids)
        except (VenueError, ParseError, TimeoutError) as exc:
            logger.warning(
                "{}: trades {}..{} of {}: fetch stopped after {} trades: {}: {}",
                self.name, first, last, inst_id, len(items), type(exc).__name__, exc,
            )
        raw = "[" + ",".join(items) + "]"
        recv_ns = self.clock_ns()
        if self.recorder is not None and not self._stopping:  # after stop() the recovery was given up (TradeGaps.end)
            self.recorder.write(recv_ns, f"{TRADES_CONN}{inst_id}", raw)
        return parse_rest_trades(raw, recv_ns, instrument_id), recv_ns

    async def _history_page(self, inst_id: str, after: int) -> bytes:
        """The ``data`` list of one page of ``inst_id``'s trades older than id ``after`` (newest first)."""
        import aiohttp

        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TRADES_TIMEOUT))
        what = f"OKX history-trades {inst_id} after {after}"
        params = {"instId": inst_id, "type": "1", "after": str(after), "limit": str(TRADES_PAGE)}
        headers = {"x-simulated-trading": "1"} if self.config.demo else None
        try:
            async with self._http.get(self.rest_url + _HISTORY_PATH, params=params, headers=headers) as resp:
                body = await resp.read()
                status = resp.status
        except aiohttp.ClientError as exc:
            raise VenueError(f"{what}: {type(exc).__name__}: {exc}") from exc
        if status != 200:
            raise VenueError(f"{what}: HTTP {status}: {body[:200]!r}")
        try:
            answer = _rest_response.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise VenueError(f"{what}: not an OKX answer ({exc}): {body[:200]!r}") from None
        if answer.code != "0":
            raise VenueError(f"{what}: code {answer.code} {answer.msg!r}")
        return bytes(answer.data)


def _split(key: str) -> tuple[str, str]:
    channel, _, inst_id = key.partition(":")
    return channel, inst_id


# ----------------------------------------------------------------------------- paper feed


class OkxFeedHandle(ParserFeed):
    """An OKX v5 public feed (``(channel, instId)`` subscriptions; books checked by seqId and CRC32)."""

    snapshots_on_stream = True

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
        endpoints = {"public_url": config.ws_url} if config.ws_url else {}
        rest_url = OkxFeedOptions.of(config).rest_url
        if rest_url:
            endpoints["rest_url"] = rest_url
        okx = OkxConfig(venue=self.venue_name, **endpoints)
        self.okx = okx
        self._inst_ids = frozenset(self.symbols.values())
        self.pairs = [(ch, self.symbols[iid]) for iid in self.instrument_ids for ch in config.channels_of(iid)]
        if live:
            keepalive = okx_keepalive(okx.ping_after_s, okx.pong_timeout_s)
            policy = connection_policy(config, keepalive, default_stale_after=okx.stale_after_s)
            client = OkxClient(sink, okx, self.pairs, policy=policy, recorder=recorder, clock_ns=clock_ns)
            self.client = client
            self.parser = client.parser
            self.name = client.name
        else:
            self.client = None
            self.parser = OkxParser(okx.venue, verify_checksum=okx.verify_checksum)
            self.name = f"{okx.venue.lower()}-public"
        for iid in self.instrument_ids:
            channel = config.quote_book(iid)
            if channel is not None:  # no ticker or bbo-tbt: the book gives the quotes
                self.parser.books.quote_keys.add(book_key(channel, self.symbols[iid]))
        self.skip_unsubscribed(
            (book_key(ch, inst_id) for ch, inst_id in self.pairs), variant_key, "book, candle or trades channel"
        )

    stream_of = staticmethod(frame_stream)

    def on_frame(self, raw: str | bytes, recv_ns: int, conn: str) -> None:
        if conn.startswith(TRADES_CONN):  # a recorded history-trades answer, not a frame of the stream
            sink = self.sink
            for msg in self.parser.on_trades_answer(raw, recv_ns, conn[len(TRADES_CONN) :]):
                sink(msg)
            return
        super().on_frame(raw, recv_ns, conn)

    def end_run(self, recv_ns: int) -> None:
        sink = self.sink
        for msg in self.parser.end_run(recv_ns):
            sink(msg)
        super().end_run(recv_ns)

    def restart_run(self) -> None:
        super().restart_run()
        self.parser.gaps.restart()

    def held_trades(self) -> list[dict[str, int | str]]:
        return self.parser.gaps.held()

    def accepts(self, conn: str) -> bool:
        if conn.startswith(TRADES_CONN):
            return conn[len(TRADES_CONN) :] in self._inst_ids
        return super().accepts(conn)

    def book_checks(self) -> dict[str, Callable[[], bool]]:
        checks: dict[str, Callable[[], bool]] = {}
        parser = self.parser
        for iid in self.instrument_ids:
            inst_id = self.symbols[iid]
            channels = [ch for ch in self.config.channels_of(iid) if ch in BOOK_CHANNELS]
            if channels:
                checks[iid] = all_in_sync(lambda ch, i=inst_id: parser.book_in_sync(i, ch), channels)
        return checks

    def book(self, instrument_id: str) -> OrderBook | None:
        inst_id = self.symbols[instrument_id]
        for channel in self.config.channels_of(instrument_id):
            if channel in BOOK_CHANNELS:
                sync = self.parser.books.syncs.get(book_key(channel, inst_id))
                return None if sync is None else sync.book
        return None

    def resync_book(self, instrument_id: str, reason: str) -> None:
        inst_id = self.symbols[instrument_id]
        for channel in self.config.channels_of(instrument_id):
            if channel in BOOK_CHANNELS:
                self.parser.books.lost(book_key(channel, inst_id), reason)
