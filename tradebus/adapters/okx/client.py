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
trade ids per instrument). The connection logic is
:class:`~tradebus.adapters.common.client.StreamBookClient`'s.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence

import msgspec

from tradebus.adapters.common.book import OrderBook
from tradebus.adapters.common.client import Sink, StreamBookClient
from tradebus.adapters.common.feed import FeedConfig, ParserFeed, all_in_sync, connection_policy
from tradebus.adapters.common.policy import Backoff, ConnectionPolicy, KeepAlive, KeepAliveMode
from tradebus.adapters.common.recorder import FrameRecorder
from tradebus.engine.instrument import Instrument
from tradebus.adapters.okx.config import OkxConfig
from tradebus.adapters.okx.parse import BOOK_CHANNELS, OkxParser, book_key

__all__ = ["OkxClient", "OkxFeedHandle", "okx_keepalive", "okx_policy", "subscribe_message"]


def okx_keepalive(interval: float = 25.0) -> KeepAlive:
    """OKX keep-alive: send ``"ping"`` when nothing arrived for ``interval`` s (< 30 s, the server's limit)."""
    return KeepAlive(KeepAliveMode.IDLE, interval, "ping")


def okx_policy(config: OkxConfig, seed: int | None = None) -> ConnectionPolicy:
    """The connection policy of OKX: idle ``"ping"`` keep-alive, jittered backoff, no scheduled reconnect."""
    return ConnectionPolicy(
        backoff=Backoff(seed=seed),
        keepalive=okx_keepalive(config.ping_after_s),
        stale_after=config.ping_after_s + config.pong_timeout_s,
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
        policy: ConnectionPolicy | None = None,
        recorder: FrameRecorder | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.config = config or OkxConfig()
        name = f"{self.config.venue.lower()}-public"
        policy = policy or okx_policy(self.config)
        super().__init__(name, sink, policy, url or self.config.public_url, recorder, clock_ns)
        self.parser = OkxParser(
            self.config.venue, verify_checksum=self.config.verify_checksum, resubscribe=self.resubscribe
        )
        self.subscriptions.add(book_key(c, i) for c, i in subscriptions)

    async def subscribe(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Add ``(channel, instId)`` subscriptions (sent now if connected, and after every reconnect)."""
        await self.add_subscriptions(book_key(c, i) for c, i in pairs)

    def op_message(self, op: str, keys: Sequence[str]) -> str:
        return subscribe_message(op, (_split(key) for key in keys))


def _split(key: str) -> tuple[str, str]:
    channel, _, inst_id = key.partition(":")
    return channel, inst_id


# ----------------------------------------------------------------------------- paper feed


class OkxFeedHandle(ParserFeed):
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
        self.okx = okx
        self.pairs = [(ch, self.symbols[iid]) for iid in self.instrument_ids for ch in config.channels_of(iid)]
        if live:
            policy = connection_policy(config, okx_keepalive(okx.ping_after_s))
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
