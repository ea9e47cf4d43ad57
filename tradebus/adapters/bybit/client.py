"""Bybit v5 public market-data client: one WebSocket per category -> :class:`BybitParser` -> sink.

Subscriptions are Bybit topics (``"publicTrade.BTCUSDT"``, ``"orderbook.200.BTCUSDT"``,
``"tickers.BTCUSDT"``, ``"kline.1.BTCUSDT"``) sent after every (re)connect as
``{"op": "subscribe", "args": [...]}`` in batches of 10 (Bybit's limit per request
on spot). Keep-alive: ``{"op": "ping"}`` every ``config.ping_interval_s`` seconds.

Order books follow the update-id rules of :mod:`tradebus.adapters.bybit.sync`. When a
book fails, the client unsubscribes and resubscribes its topic; Bybit answers with a
snapshot. When the connection drops every book is marked out of sync until the
snapshot that the resubscription brings, then :class:`~tradebus.engine.messages.BookResynced`
is emitted. Trades repeated across a reconnect are dropped by trade id ``i``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable

import msgspec
from loguru import logger

from tradebus.adapters.bybit.config import BybitConfig
from tradebus.adapters.bybit.parse import BybitParser
from tradebus.adapters.common.client import Sink, WsClient
from tradebus.adapters.common.policy import Backoff, ConnectionPolicy, KeepAlive
from tradebus.adapters.common.recorder import FrameRecorder

__all__ = ["BybitClient", "bybit_policy", "op_message"]

_BATCH = 10


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


class BybitClient(WsClient):
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
        super().__init__(name, sink, policy or bybit_policy(self.config), recorder, clock_ns)
        self.url = url or self.config.ws_url
        self.parser = BybitParser(self.config.category, self.config.venue, on_resync=self._on_resync)
        self.resubscriptions = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.subscriptions.add(topics)

    async def subscribe(self, topics: Iterable[str]) -> None:
        """Add topics (sent now if connected, and after every reconnect)."""
        added = self.subscriptions.add(topics)
        for i in range(0, len(added), _BATCH):
            await self.send(op_message("subscribe", added[i : i + _BATCH]))

    def connect_url(self) -> str:
        return self.url

    def subscribe_frames(self) -> list[str]:
        return [op_message("subscribe", batch) for batch in self.subscriptions.batches(_BATCH)]

    def on_frame(self, raw: str | bytes, recv_ns: int) -> None:
        sink = self.sink
        for msg in self.parser.parse_frame(raw, recv_ns):
            sink(msg)

    def on_disconnected(self, reason: str) -> None:
        self.parser.invalidate_books(f"connection lost ({reason})")

    async def on_stopped(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _on_resync(self, topic: str, symbol: str, reason: str) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        task = loop.create_task(self._resubscribe(topic), name=f"bybit-resub:{topic}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _resubscribe(self, topic: str) -> None:
        self.resubscriptions += 1
        logger.info("{}: resubscribing {} for a fresh snapshot", self.name, topic)
        await self.send(op_message("unsubscribe", [topic]))
        await self.send(op_message("subscribe", [topic]))
