"""Bybit v5 public market-data client: one WebSocket per category -> :class:`BybitParser` -> sink.

Subscriptions are Bybit topics (``"publicTrade.BTCUSDT"``, ``"orderbook.200.BTCUSDT"``,
``"tickers.BTCUSDT"``, ``"kline.1.BTCUSDT"``) sent after every (re)connect as
``{"op": "subscribe", "args": [...]}`` in batches of 10 (Bybit's limit per request
on spot). Keep-alive: ``{"op": "ping"}`` every ``config.ping_interval_s`` seconds.

Order books follow the update-id rule of :mod:`tradebus.adapters.bybit.sync`. When a
book fails, the client unsubscribes and resubscribes its topic; Bybit answers with a
snapshot. When the connection drops every book is marked out of sync until the
snapshot that the resubscription brings, then :class:`~tradebus.engine.messages.BookResynced`
is emitted. Trades repeated across a reconnect are dropped by trade id ``i``. The
connection logic is :class:`~tradebus.adapters.common.client.StreamBookClient`'s.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import msgspec
from loguru import logger

from tradebus.adapters.bybit.config import BybitConfig
from tradebus.adapters.bybit.parse import BybitParser, frame_stream, variant_key
from tradebus.adapters.common.book import OrderBook
from tradebus.adapters.common.client import Sink, StreamBookClient
from tradebus.adapters.common.feed import FeedConfig, ParserFeed, all_in_sync, connection_policy
from tradebus.adapters.common.policy import Backoff, ConnectionPolicy, KeepAlive, KeepAliveMode
from tradebus.adapters.common.recorder import FrameRecorder
from tradebus.engine.instrument import Instrument

__all__ = ["BybitClient", "BybitFeedHandle", "bybit_keepalive", "bybit_policy", "op_message"]


def bybit_keepalive(interval: float = 20.0, pong_timeout: float = 0.0) -> KeepAlive:
    """Bybit keep-alive: send ``{"op":"ping"}`` every ``interval`` s.

    ``pong_timeout`` (s, ``0``: not checked): recycle the connection when nothing answers a ping.
    """
    return KeepAlive(KeepAliveMode.PERIODIC, interval, '{"op":"ping"}', pong_timeout)


def bybit_policy(config: BybitConfig, seed: int | None = None) -> ConnectionPolicy:
    """The connection policy of Bybit: periodic ``{"op":"ping"}``, jittered backoff.

    A pong proves the connection (``pong_timeout_s`` after a ping, a silent connection is
    dead); only data refreshes the stale-feed watchdog (``stale_after_s``).
    """
    return ConnectionPolicy(
        backoff=Backoff(seed=seed),
        keepalive=bybit_keepalive(config.ping_interval_s, config.pong_timeout_s),
        stale_after=config.stale_after_s,
    )


def op_message(op: str, topics: Iterable[str]) -> str:
    """``{"op": op, "args": [topics...]}`` as JSON text."""
    return msgspec.json.encode({"op": op, "args": list(topics)}).decode()


class BybitClient(StreamBookClient):
    """Bybit public market data of one category (see the module docstring).

    Parameters
    ----------
    sink
        Receives the core messages.
    config
        Category, endpoints and keep-alive settings.
    topics
        Initial topics.
    url
        Overrides the category's URL (tests point it at a local server).
    policy
        Overrides :func:`bybit_policy`.
    recorder
        Records every raw frame.
    clock_ns
        Receive-time source.
    """

    batch = 10

    def __init__(
        self,
        sink: Sink,
        config: BybitConfig | None = None,
        topics: Iterable[str] = (),
        *,
        url: str | None = None,
        policy: ConnectionPolicy | None = None,
        recorder: FrameRecorder | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.config = config or BybitConfig()
        name = f"{self.config.venue.lower()}-{self.config.category}"
        policy = policy or bybit_policy(self.config)
        super().__init__(name, sink, policy, url or self.config.ws_url, recorder, clock_ns)
        self.parser = BybitParser(self.config.category, self.config.venue, resubscribe=self.resubscribe)
        self.subscriptions.add(topics)

    async def subscribe(self, topics: Iterable[str]) -> None:
        """Add topics (sent now if connected, and after every reconnect)."""
        await self.add_subscriptions(topics)

    def op_message(self, op: str, keys: Sequence[str]) -> str:
        return op_message(op, keys)


# ----------------------------------------------------------------------------- paper feed


class BybitFeedHandle(ParserFeed):
    """A Bybit v5 public feed of one category (topics ``channel.SYMBOL``; books checked by update id)."""

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
        url_key = "spot_url" if config.market == "spot" else "linear_url"
        bybit = BybitConfig(category=config.market, venue=self.venue_name)  # type: ignore[arg-type]
        updates: dict[str, Any] = {}
        if config.ws_url:
            updates[url_key] = config.ws_url
        self.bybit = bybit.model_copy(update=updates) if updates else bybit
        self.topics = [f"{ch}.{self.symbols[iid]}" for iid in self.instrument_ids for ch in config.channels_of(iid)]
        if live:
            if any(topic.startswith("publicTrade.") for topic in self.topics):
                # linear trade ids are UUIDs, spot ones one sequence shared by every symbol: a gap cannot be seen
                logger.warning(
                    "{}-{}: Bybit public trade ids are not sequential: trade continuity cannot be checked, so "
                    "trades printed while the connection is down are missing (no TradesMissed)",
                    self.venue_name.lower(), config.market,
                )
            keepalive = bybit_keepalive(self.bybit.ping_interval_s, self.bybit.pong_timeout_s)
            policy = connection_policy(config, keepalive, default_stale_after=self.bybit.stale_after_s)
            client = BybitClient(sink, self.bybit, self.topics, policy=policy, recorder=recorder, clock_ns=clock_ns)
            self.client = client
            self.parser = client.parser
            self.name = client.name
        else:
            self.client = None
            self.parser = BybitParser(config.market, self.venue_name)
            self.name = f"{self.venue_name.lower()}-{config.market}"
        for iid in self.instrument_ids:
            channel = config.quote_book(iid)
            if channel is not None:  # no tickers: the book gives the quotes
                self.parser.books.quote_keys.add(f"{channel}.{self.symbols[iid]}")
        self.skip_unsubscribed(self.topics, variant_key, "orderbook.<depth> / kline.<interval> channel")

    stream_of = staticmethod(frame_stream)

    def book_checks(self) -> dict[str, Callable[[], bool]]:
        checks: dict[str, Callable[[], bool]] = {}
        for iid in self.instrument_ids:
            symbol = self.symbols[iid]
            topics = [f"{ch}.{symbol}" for ch in self.config.channels_of(iid) if ch.startswith("orderbook.")]
            if topics:
                checks[iid] = all_in_sync(self.parser.book_in_sync, topics)
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
