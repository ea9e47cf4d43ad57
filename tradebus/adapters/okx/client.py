"""OKX v5 public market-data client: one WebSocket -> :class:`OkxParser` -> sink.

Subscriptions are ``(channel, instId)`` pairs kept as ``"channel:instId"`` in the
client's :class:`~tradebus.adapters.common.policy.SubscriptionSet`; after every
(re)connect they are sent as ``{"op": "subscribe", "args": [{"channel": ..., "instId": ...}, ...]}``
in batches. Keep-alive: the text ``"ping"`` when nothing arrived for
``config.ping_after_s`` seconds (OKX drops a connection silent for 30 s and answers
``"pong"``).

Order books are checked by the parser (seqId chain, CRC32, crossed book). When a
book fails, the client unsubscribes and resubscribes that channel for that
instrument, which makes OKX send a fresh snapshot. When the connection drops,
every book is marked out of sync; the resubscription after the reconnect brings
the snapshots, each followed by :class:`~tradebus.engine.messages.BookResynced`.
Trades repeated across a reconnect are dropped by the parser (bounded window of
trade ids per instrument).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable

import msgspec
from loguru import logger

from tradebus.adapters.common.client import Sink, WsClient
from tradebus.adapters.common.policy import Backoff, ConnectionPolicy, KeepAlive
from tradebus.adapters.common.recorder import FrameRecorder
from tradebus.adapters.okx.config import OkxConfig
from tradebus.adapters.okx.parse import OkxParser

__all__ = ["OkxClient", "okx_policy", "subscribe_message"]

_BATCH = 50
"""Subscription args per frame (OKX limits a request to 64 kB)."""


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


class OkxClient(WsClient):
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
        super().__init__(
            f"{self.config.venue.lower()}-public", sink, policy or okx_policy(self.config), recorder, clock_ns
        )
        self.url = url or self.config.public_url
        self.parser = OkxParser(self.config.venue, verify_checksum=self.config.verify_checksum, on_resync=self._on_resync)
        self.resubscriptions = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.subscriptions.add(f"{c}:{i}" for c, i in subscriptions)

    # ------------------------------------------------------------------ public

    async def subscribe(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Add ``(channel, instId)`` subscriptions (sent now if connected, and after every reconnect)."""
        added = self.subscriptions.add(f"{c}:{i}" for c, i in pairs)
        if added:
            await self.send(subscribe_message("subscribe", (_split(s) for s in added)))

    # ------------------------------------------------------------------- hooks

    def connect_url(self) -> str:
        return self.url

    def subscribe_frames(self) -> list[str]:
        return [subscribe_message("subscribe", (_split(s) for s in batch)) for batch in self.subscriptions.batches(_BATCH)]

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

    # --------------------------------------------------------------- internals

    def _on_resync(self, channel: str, inst_id: str, reason: str) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        task = loop.create_task(self._resubscribe(channel, inst_id), name=f"okx-resub:{channel}:{inst_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _resubscribe(self, channel: str, inst_id: str) -> None:
        self.resubscriptions += 1
        logger.info("{}: resubscribing {} {} for a fresh snapshot", self.name, channel, inst_id)
        await self.send(subscribe_message("unsubscribe", [(channel, inst_id)]))
        await self.send(subscribe_message("subscribe", [(channel, inst_id)]))


def _split(stream: str) -> tuple[str, str]:
    channel, _, inst_id = stream.partition(":")
    return channel, inst_id
