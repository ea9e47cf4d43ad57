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

from tradebus.adapters.common.client import Sink, StreamBookClient
from tradebus.adapters.common.policy import Backoff, ConnectionPolicy, KeepAlive
from tradebus.adapters.common.recorder import FrameRecorder
from tradebus.adapters.okx.config import OkxConfig
from tradebus.adapters.okx.parse import OkxParser, book_key

__all__ = ["OkxClient", "okx_policy", "subscribe_message"]


def okx_policy(config: OkxConfig, seed: int | None = None) -> ConnectionPolicy:
    """The connection policy of OKX: idle ``"ping"`` keep-alive, jittered backoff, no scheduled reconnect."""
    return ConnectionPolicy(
        backoff=Backoff(seed=seed),
        keepalive=KeepAlive.okx(config.ping_after_s),
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
