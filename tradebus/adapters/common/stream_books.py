"""The order books of one connection whose venue sends snapshots in-stream (OKX, Bybit).

OKX and Bybit send a book's snapshot on the stream right after a subscription, before
its updates; there is no REST snapshot to fetch. :class:`StreamBooks` keeps one
:class:`~tradebus.adapters.common.sync.BookSync` per book stream (its ``key``: OKX
``"books:BTC-USDT"``, Bybit ``"orderbook.200.BTCUSDT"``) with the venue's
:class:`~tradebus.adapters.common.sync.SequenceRule`, and resyncs a book by
**resubscribing** its stream: the snapshot requester of every book is
``resubscribe(key)`` (the client unsubscribes and subscribes again, the venue answers
with a fresh snapshot in-stream). While a book waits for that snapshot its updates are
dropped (they precede the snapshot and are contained in it) and nothing of it is
emitted; the snapshot that ends a resync is followed by
:class:`~tradebus.engine.messages.BookResynced` carrying the failure.

The parser feeds snapshots and deltas through :meth:`StreamBooks.on_snapshot` and
:meth:`StreamBooks.on_delta`, which return the messages the book emitted.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from tradebus.adapters.common.sync import BookSync, SequenceRule
from tradebus.engine.messages import BookDelta, BookSnapshot

__all__ = ["Resubscribe", "StreamBooks", "StreamBooksParser"]

Resubscribe = Callable[[str], Awaitable[None]]
"""Async ``resubscribe(key)``: unsubscribe and subscribe the book stream ``key`` again."""


class StreamBooks:
    """The books of one connection, resynced by resubscribing (see the module docstring).

    Parameters
    ----------
    make_rule
        ``make_rule(key)``: a fresh sequence rule for the book stream ``key``.
    resubscribe
        The client's resubscription; ``None`` (recorded playback, tests): a failed book
        waits for a snapshot fed by the caller.
    snapshot_timeout
        Seconds to wait for the snapshot a resubscription should bring before resubscribing again.

    Attributes
    ----------
    syncs
        ``key -> BookSync``.
    resync_requests
        ``(key, reason)`` of every failure that made a book ask for a fresh snapshot, in order.
    dropped
        Deltas dropped because their book was waiting for a snapshot.
    quote_keys
        Book streams whose book emits a :class:`~tradebus.engine.messages.Quote` when its top changes: the
        instrument's only source of quotes (no ticker subscribed; set by the feed before the first frame).
    """

    def __init__(
        self,
        make_rule: Callable[[str], SequenceRule],
        resubscribe: Resubscribe | None = None,
        *,
        snapshot_timeout: float = 10.0,
    ) -> None:
        self.syncs: dict[str, BookSync] = {}
        self.resync_requests: list[tuple[str, str]] = []
        self.dropped = 0
        self.quote_keys: set[str] = set()
        self._make_rule = make_rule
        self._resubscribe = resubscribe
        self._snapshot_timeout = snapshot_timeout
        self._out: list[Any] = []

    # ------------------------------------------------------------------ books

    def open(self, key: str, instrument_id: str) -> BookSync:
        """The book of stream ``key``, created (awaiting its first snapshot) on first use."""
        sync = self.syncs.get(key)
        if sync is None:
            resubscribe = self._resubscribe
            requester = None if resubscribe is None else _requester(resubscribe, key)
            sync = self.syncs[key] = BookSync(
                instrument_id,
                self._make_rule(key),
                self._out.append,
                requester,
                emit_quotes=key in self.quote_keys,
                snapshot_timeout=self._snapshot_timeout,
                snapshots_in_stream=True,
            )
        return sync

    def in_sync(self, key: str) -> bool:
        """Whether the book of ``key`` exists and is SYNCED."""
        sync = self.syncs.get(key)
        return sync is not None and sync.synced

    # ----------------------------------------------------------------- inputs

    def on_snapshot(self, key: str, sync: BookSync, snapshot: BookSnapshot, extra: Any = None) -> list[Any]:
        """Load ``snapshot`` into ``sync`` (the book of ``key``); return the emitted messages."""
        sync.on_snapshot(snapshot, extra)
        if not sync.synced:
            self._requested(key, sync)
        return self._take()

    def on_delta(self, key: str, sync: BookSync, delta: BookDelta, extra: Any = None) -> list[Any]:
        """Apply ``delta`` to ``sync`` (the book of ``key``); return the emitted messages."""
        if not sync.synced:
            self.dropped += 1
            if sync.failure is None:  # never synced and nothing asked for yet
                sync.mark_lost("update before any snapshot")
                self._requested(key, sync)
            return []
        sync.on_delta(delta, extra)
        if not sync.synced:
            self._requested(key, sync)
        return self._take()

    def lost(self, key: str, reason: str) -> None:
        """A message of stream ``key`` could not be used: its book (if any) resyncs.

        A book already waiting for a requested snapshot keeps waiting (its request retries on its own).
        """
        sync = self.syncs.get(key)
        if sync is not None and (sync.synced or sync.failure is None):
            sync.mark_lost(reason)
            self._requested(key, sync)

    def invalidate(self, reason: str) -> None:
        """Every book is out of sync (the connection dropped); the resubscription after the reconnect resyncs them."""
        for sync in self.syncs.values():
            sync.invalidate(reason, request=False)

    async def close(self) -> None:
        """Cancel pending resubscriptions."""
        for sync in self.syncs.values():
            await sync.close()

    # -------------------------------------------------------------- internals

    def _requested(self, key: str, sync: BookSync) -> None:
        self.resync_requests.append((key, sync.failure or ""))

    def _take(self) -> list[Any]:
        out = self._out
        if not out:
            return []
        taken = out[:]
        out.clear()
        return taken


def _requester(resubscribe: Resubscribe, key: str) -> Callable[[], Awaitable[None]]:
    async def request() -> None:
        await resubscribe(key)
        return None  # the snapshot arrives in-stream

    return request


class StreamBooksParser:
    """What the OKX and Bybit parsers expose of their :class:`StreamBooks` (``self.books``)."""

    books: StreamBooks
    data_ns: int = 0
    """Receive time (ns) of the latest push of a channel, whether or not it made a message (an
    OKX book heartbeat, an open candle); keep-alive replies and acknowledgements leave it."""

    @property
    def resync_requests(self) -> list[tuple[str, str]]:
        """``(book stream key, reason)`` of every failure that made a book ask for a fresh snapshot, in order."""
        return self.books.resync_requests

    def invalidate_books(self, reason: str) -> None:
        """Mark every book as out of sync (e.g. the connection dropped) without requesting a resync.

        Updates are dropped until each book's next snapshot, which the venue sends
        after the (re)subscription; that snapshot is followed by a
        :class:`~tradebus.engine.messages.BookResynced` carrying ``reason``.
        """
        self.books.invalidate(reason)
