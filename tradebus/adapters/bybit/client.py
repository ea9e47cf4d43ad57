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

import msgspec

from tradebus.adapters.bybit.config import BybitConfig
from tradebus.adapters.bybit.parse import BybitParser
from tradebus.adapters.common.client import Sink, StreamBookClient
from tradebus.adapters.common.policy import Backoff, ConnectionPolicy, KeepAlive
from tradebus.adapters.common.recorder import FrameRecorder

__all__ = ["BybitClient", "bybit_policy", "op_message"]


def bybit_policy(config: BybitConfig, seed: int | None = None) -> ConnectionPolicy:
    """The connection policy of Bybit: periodic ``{"op":"ping"}``, jittered backoff."""
    return ConnectionPolicy(
        backoff=Backoff(seed=seed),
        keepalive=KeepAlive.bybit(config.ping_interval_s),
        stale_after=config.ping_interval_s + config.pong_timeout_s,
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
