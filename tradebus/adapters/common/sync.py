"""Keeping an L2 book in sync with a venue: the generic resync state machine.

A :class:`BookSync` owns one :class:`~tradebus.adapters.common.book.OrderBook` and is
fed the venue's :class:`~tradebus.engine.messages.BookSnapshot` and
:class:`~tradebus.engine.messages.BookDelta` messages (already parsed) in arrival order.
It has two states:

``SYNCED``
    Each delta is checked by the venue's :class:`SequenceRule`, applied, checked for a
    crossed book and verified by the rule (e.g. a checksum). Then the delta is emitted,
    followed by a :class:`~tradebus.engine.messages.Quote` if the top of book changed
    (and ``emit_quotes`` is on).
``AWAITING_SNAPSHOT``
    Nothing is emitted (no Quote, no book message: never trade on a broken book).
    Deltas are buffered (bounded). A fresh snapshot is requested through the injected
    async ``request_snapshot`` callable; when a snapshot arrives (returned by that
    callable — Binance REST — or delivered in-stream through :meth:`BookSync.on_snapshot`
    — OKX/Bybit after a resubscribe), the book is loaded, the buffered deltas that follow
    it are replayed through the rule, and the machine goes back to ``SYNCED``, emitting
    a :class:`~tradebus.engine.messages.BookSnapshot` of the rebuilt book, then
    :class:`~tradebus.engine.messages.BookResynced` (``reason`` = the failure that caused
    the resync; not emitted for the initial sync), then a Quote.

    With ``snapshots_in_stream=True`` (OKX, Bybit: the venue sends the snapshot on the
    stream after a (re)subscription, before any later delta) nothing is buffered: every
    delta received while waiting precedes the snapshot and is contained in it.

Any failure — sequence gap, checksum mismatch, crossed book, a malformed level, an
explicit :meth:`BookSync.invalidate` (e.g. the connection dropped) — moves the machine
to ``AWAITING_SNAPSHOT``. The delta that revealed the failure is kept in the buffer: it
may be exactly what follows the next snapshot.

Writing a venue rule
--------------------
Subclass :class:`SequenceRule` and implement :meth:`~SequenceRule.reset`,
:meth:`~SequenceRule.check` and :meth:`~SequenceRule.advance`; override
:meth:`~SequenceRule.verify` for checksums. The rule never touches the book or
emits anything; it only judges sequence ids (and, in ``verify``, the book). ``extra`` is
an opaque venue payload passed along with a message (e.g. OKX: the checksum and the raw
price/size strings), ``None`` if the venue has none. Example (sequence ids that must
follow each other by one)::

    class ConsecutiveRule(SequenceRule):
        name = "consecutive"

        def reset(self, snapshot, extra=None):
            self.last = snapshot.last_seq

        def check(self, delta):
            if delta.last_seq <= self.last:
                return Verdict.DROP
            if delta.first_seq == self.last + 1:
                return Verdict.APPLY
            return Verdict.GAP

        def advance(self, delta):
            self.last = delta.last_seq

The rules live with their venues: Binance's (:mod:`tradebus.adapters.binance.sync`),
OKX's (:class:`tradebus.adapters.okx.sync.OkxRule`, with the CRC32 in ``verify``) and Bybit's
(:class:`tradebus.adapters.bybit.sync.BybitRule`). A rule may also apply a recorded batch
in compiled code (:meth:`SequenceRule.fast_forward`; Binance's do), which
:meth:`BookSync.fast_forward` uses on recorded batches, and judge and apply one live delta
in one compiled call (:meth:`SequenceRule.live_step`), which :meth:`BookSync.on_delta` uses.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Awaitable, Callable
from enum import IntEnum, StrEnum
from typing import Any

import numpy as np
from loguru import logger

from tradebus.adapters.common.book import APPLIED, CROSSED, INVALID, NO_ROOM, TOP_CHANGED, OrderBook, refresh_top
from tradebus.engine.messages import BookDelta, BookResynced, BookSnapshot, Quote
from tradebus.errors import BookError, ConfigError

__all__ = [
    "BookSync",
    "DeltaBatch",
    "LiveStep",
    "SequenceRule",
    "SnapshotRequester",
    "SyncState",
    "Verdict",
]

SnapshotRequester = Callable[[], Awaitable[BookSnapshot | None]]
"""Async callable asking the venue for a fresh snapshot.

Returns the snapshot (Binance: REST depth) or ``None`` when the snapshot will arrive
in-stream (OKX/Bybit: resubscribe) and be passed to :meth:`BookSync.on_snapshot`.
An exception means "try again later" (after a backoff delay).
"""


class SyncState(StrEnum):
    """State of a :class:`BookSync`."""

    SYNCED = "SYNCED"
    AWAITING_SNAPSHOT = "AWAITING_SNAPSHOT"


class Verdict(IntEnum):
    """What a :class:`SequenceRule` says about a delta."""

    APPLY = 0
    """The delta continues the book: apply it."""
    DROP = 1
    """The delta is older than the book (already contained in it): skip it silently."""
    GAP = 2
    """At least one delta is missing between the book and this one: resync."""


_SYNCED = SyncState.SYNCED
_APPLY = Verdict.APPLY
_GAP = Verdict.GAP
_F64 = np.dtype(np.float64)

DROPPED = 3
"""Code of a :meth:`SequenceRule.live_step`: the delta is older than the book, skipped."""
GAPPED = 4
"""Code of a :meth:`SequenceRule.live_step`: a delta is missing before this one; nothing applied."""

LiveStep = Callable[
    [np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, bool, int, int, int], int
]
"""A rule's compiled live step (see :meth:`SequenceRule.live_step`)."""


class SequenceRule(ABC):
    """Venue-specific sequence rule for one book (one instance per book).

    Subclasses set ``name`` and implement :meth:`reset`, :meth:`check`, :meth:`advance`;
    :meth:`verify` and :meth:`gap_reason` have defaults.
    """

    name: str = "rule"

    @abstractmethod
    def reset(self, snapshot: BookSnapshot, extra: Any = None) -> None:
        """Start over from ``snapshot`` (its ``last_seq`` is the venue's snapshot id)."""

    @abstractmethod
    def check(self, delta: BookDelta) -> Verdict:
        """Judge ``delta`` against the current position; must not change the rule's state."""

    @abstractmethod
    def advance(self, delta: BookDelta) -> None:
        """Record that ``delta`` was applied (called only after APPLY and a successful apply)."""

    def verify(self, book: OrderBook, msg: BookDelta | BookSnapshot, extra: Any = None) -> str | None:
        """Check the book after ``msg`` was applied; return a failure reason or ``None`` if fine.

        The default checks nothing. OKX overrides it with its CRC32 checksum.
        """
        return None

    def fast_forward(self, book: OrderBook, batch: DeltaBatch, start: int) -> int | None:
        """Apply ``batch`` from message ``start`` on to ``book`` in compiled code, advancing the rule.

        For :meth:`BookSync.fast_forward`. A rule with a compiled twin (Binance's) judges
        and applies the messages exactly as :meth:`check`, :meth:`advance` and
        :meth:`BookSync.on_delta` would, and moves ``book.last_seq`` with it.

        Returns
        -------
        int or None
            The index of the first message not applied (``len(batch)``: all were): a gap,
            a malformed message (nothing of it applied, the rule not advanced) or one that
            needs more book capacity; ``-index - 1`` when message ``index`` was applied but
            crossed the book (the rule advanced past it); ``None`` (the default) when the
            rule has no compiled twin and nothing was done.
        """
        return None

    def live_step(self) -> tuple[LiveStep, np.ndarray] | None:
        """The rule's compiled live step and the int64 state array it judges and advances.

        :meth:`BookSync.on_delta` then handles a delta of a SYNCED book with one call
        ``step(book.store, book.counts, state, bids, asks, top, track_top, first_seq,
        last_seq, prev_seq)`` that does what :meth:`check`, :meth:`OrderBook.apply_top
        <tradebus.adapters.common.book.OrderBook.apply_top>` and :meth:`advance` would,
        advancing only when the delta was applied and the book is not crossed. The step
        is called without type checks: ``on_delta`` passes only float64 2-D level arrays
        (any strides) and sends other deltas down the Python path. Only for rules whose
        :meth:`verify` checks nothing.

        The step returns :data:`DROPPED` or :data:`GAPPED` (nothing done), else the status
        of ``apply_top`` (``NO_ROOM``: nothing done, the caller grows the book).

        Returns
        -------
        tuple or None
            ``(step, state)``; ``None`` (the default) when the rule has no compiled twin.
        """
        return None

    def gap_reason(self, delta: BookDelta) -> str:
        """Human-readable reason for a GAP verdict on ``delta`` (used in logs and BookResynced)."""
        return (
            f"sequence gap ({self.name}): delta first_seq={delta.first_seq} last_seq={delta.last_seq} "
            f"prev_seq={delta.prev_seq} does not continue the book"
        )


class DeltaBatch:
    """Recorded deltas of one book packed into aligned arrays for :meth:`BookSync.fast_forward`.

    Message ``i`` has bid levels ``levels[bid_start[i]:ask_start[i]]`` and ask levels
    ``levels[ask_start[i]:end[i]]``; ``first``/``last``/``prev`` are its sequence ids.
    """

    __slots__ = ("levels", "bid_start", "ask_start", "end", "first", "last", "prev", "ts_event", "ts_init")

    def __init__(self, deltas: list[BookDelta]) -> None:
        n = len(deltas)
        self.bid_start = np.empty(n, dtype=np.int64)
        self.ask_start = np.empty(n, dtype=np.int64)
        self.end = np.empty(n, dtype=np.int64)
        parts: list[np.ndarray] = []
        pos = 0
        for i, d in enumerate(deltas):
            self.bid_start[i] = pos
            pos += d.bids.shape[0]  # type: ignore[attr-defined]
            self.ask_start[i] = pos
            pos += d.asks.shape[0]  # type: ignore[attr-defined]
            self.end[i] = pos
            parts += (d.bids, d.asks)  # type: ignore[list-item]
        self.levels = np.ascontiguousarray(np.concatenate(parts) if parts else np.empty((0, 2)), dtype=np.float64)
        self.first = np.array([d.first_seq for d in deltas], dtype=np.int64)
        self.last = np.array([d.last_seq for d in deltas], dtype=np.int64)
        self.prev = np.array([d.prev_seq for d in deltas], dtype=np.int64)
        self.ts_event = np.array([d.ts_event for d in deltas], dtype=np.int64)
        self.ts_init = np.array([d.ts_init for d in deltas], dtype=np.int64)

    def __len__(self) -> int:
        return self.first.shape[0]

    @property
    def n_levels(self) -> int:
        """Total level updates in the batch."""
        return int(self.levels.shape[0])


class BookSync:
    """Resync state machine around one order book (see the module docstring).

    Parameters
    ----------
    instrument_id
        Instrument of the book (used on every emitted message).
    rule
        The venue's :class:`SequenceRule` (a fresh instance per book).
    emit
        Sink for the emitted core messages (``kernel.process``, ``bus.publish`` ...).
    request_snapshot
        Async callable fetching or requesting a fresh snapshot (:data:`SnapshotRequester`);
        ``None`` when snapshots only ever arrive in-stream.
    emit_quotes
        Emit a :class:`Quote` whenever the top of book changes (turn off when the venue's
        own best-bid/ask stream is the quote source).
    emit_deltas
        Emit every applied :class:`BookDelta`.
    max_buffer
        Deltas kept while awaiting a snapshot; the oldest is dropped beyond it (the rule
        then sees a gap and a newer snapshot is requested).
    retry_delays
        Seconds to wait before each snapshot attempt (the last value repeats).
    snapshot_timeout
        Seconds allowed for an in-stream snapshot to arrive after a request that
        returned ``None`` before requesting again.
    capacity
        Initial book capacity per side.
    snapshots_in_stream
        The venue delivers snapshots in-stream, ahead of the deltas that follow them, so
        deltas received while awaiting a snapshot are dropped instead of buffered.
    as_frame
        ``as_frame(load, ts_ns)`` calls ``load()``, which loads a snapshot ``request_snapshot`` returned
        and emits its messages (BookSnapshot, BookResynced, Quote): the client's
        :meth:`~tradebus.adapters.common.client.WsClient.as_frame`, so that they reach the sink
        as one frame, as their recorded answer is played. Default: ``load()``.

    Attributes
    ----------
    failure
        Why the book is not SYNCED (the last failure), ``None`` while SYNCED and before
        the first failure.
    """

    def __init__(
        self,
        instrument_id: str,
        rule: SequenceRule,
        emit: Callable[[Any], None],
        request_snapshot: SnapshotRequester | None = None,
        *,
        emit_quotes: bool = True,
        emit_deltas: bool = True,
        max_buffer: int = 10_000,
        retry_delays: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, 5.0),
        snapshot_timeout: float = 10.0,
        capacity: int = 2048,
        snapshots_in_stream: bool = False,
        as_frame: Callable[[Callable[[], None], int], None] | None = None,
    ) -> None:
        if max_buffer < 1:
            raise ConfigError(f"book sync {instrument_id}: max_buffer must be >= 1, got {max_buffer}")
        if not retry_delays or any(d < 0 for d in retry_delays):
            raise ConfigError(f"book sync {instrument_id}: retry_delays must be non-empty and >= 0")
        self.instrument_id = instrument_id
        self.rule = rule
        # the rule's one-call live path, if it has a compiled twin and nothing to verify after a delta
        compiled = rule.live_step() if type(rule).verify is SequenceRule.verify else None
        self._step, self._rule_state = compiled if compiled is not None else (None, None)
        self._live: LiveStep | None = None  # self._step while SYNCED, else None: one load tells both
        self.book = OrderBook(instrument_id, capacity)
        self.state = SyncState.AWAITING_SNAPSHOT
        self.emit_quotes = emit_quotes
        self.emit_deltas = emit_deltas
        self._emit = emit
        self._request = request_snapshot
        self._buffer: deque[tuple[BookDelta, Any]] = deque()
        self._max_buffer = max_buffer
        self._retry_delays = retry_delays
        self._snapshot_timeout = snapshot_timeout
        self._reason: str | None = None
        self._in_stream = snapshots_in_stream
        self._as_frame = _directly if as_frame is None else as_frame
        self.failure: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._synced_event = asyncio.Event()
        self._top = np.full(4, np.nan)  # the last Quote emitted (NaN: none since the last failure)
        self.resyncs = 0
        self.dropped_from_buffer = 0
        self.snapshot_requests = 0

    # --------------------------------------------------------------- lifecycle

    def start(self, request: bool = True) -> None:
        """Begin the initial sync: request a snapshot now (``request=False``: wait for one in-stream)."""
        self.state = SyncState.AWAITING_SNAPSHOT
        self._live = None
        self._reason = None
        if request:
            self._schedule_request()

    async def wait_synced(self, timeout: float | None = None) -> bool:
        """Wait until the book is SYNCED; return False on timeout."""
        try:
            await asyncio.wait_for(self._synced_event.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        """Cancel a pending snapshot request."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    @property
    def synced(self) -> bool:
        """Whether the book is SYNCED (safe to read and trade on)."""
        return self.state is SyncState.SYNCED

    # ------------------------------------------------------------------ inputs

    def on_delta(self, delta: BookDelta, extra: Any = None) -> None:
        """Feed one parsed venue delta (in arrival order)."""
        step = self._live
        if step is not None:
            bids = delta.bids
            asks = delta.asks
            if bids.dtype is _F64 is asks.dtype and bids.ndim == 2 == asks.ndim:  # type: ignore[attr-defined]
                book = self.book
                code = step(
                    book.store, book.counts, self._rule_state, bids, asks, self._top, self.emit_quotes,  # type: ignore[arg-type]
                    delta.first_seq, delta.last_seq, delta.prev_seq,
                )  # fmt: skip
                if code == APPLIED or code == TOP_CHANGED:
                    book.last_seq = delta.last_seq
                    book.ts_event = delta.ts_event
                    if self.emit_deltas:
                        self._emit(delta)
                    if code == TOP_CHANGED:
                        bid, bid_size, ask, ask_size = self._top.tolist()
                        self._emit(Quote(self.instrument_id, delta.ts_event, delta.ts_init, bid, bid_size, ask, ask_size))
                    return
                if code == DROPPED:
                    return
                if code == GAPPED:
                    self._buffer_delta(delta, extra)
                    self._fail(self.rule.gap_reason(delta))
                    return
                if code != NO_ROOM:
                    self._buffer_delta(delta, extra)
                    self._fail(self._failure(code, delta))
                    return
                # NO_ROOM: nothing was done; the Python path below grows the book
        elif self.state is not _SYNCED:
            self._buffer_delta(delta, extra)
            return
        verdict = self.rule.check(delta)
        if verdict is not _APPLY:
            if verdict is _GAP:
                self._buffer_delta(delta, extra)
                self._fail(self.rule.gap_reason(delta))
            return
        status = self._apply(delta, extra, self.emit_quotes)
        if status.__class__ is str:
            self._buffer_delta(delta, extra)
            self._fail(status)  # type: ignore[arg-type]
            return
        if self.emit_deltas:
            self._emit(delta)
        if status == TOP_CHANGED:
            bid, bid_size, ask, ask_size = self._top.tolist()
            self._emit(Quote(self.instrument_id, delta.ts_event, delta.ts_init, bid, bid_size, ask, ask_size))

    def on_snapshot(self, snapshot: BookSnapshot, extra: Any = None) -> None:
        """Load a snapshot (fetched or in-stream), replay the buffered deltas and go SYNCED if they fit."""
        if snapshot.instrument_id != self.instrument_id:
            logger.warning(
                "book {}: ignoring a snapshot for {}", self.instrument_id, snapshot.instrument_id
            )
            return
        book = self.book
        try:
            crossed = book.load(snapshot.bids, snapshot.asks, snapshot.last_seq, snapshot.ts_event)
        except BookError as exc:
            book.clear()
            self._fail(f"unusable snapshot seq={snapshot.last_seq}: {exc}")
            return
        self.rule.reset(snapshot, extra)
        if crossed:
            self._fail(
                f"crossed book in snapshot seq={snapshot.last_seq}: bid {book.best_bid()[0]} >= ask {book.best_ask()[0]}"
            )
            return
        bad = self.rule.verify(book, snapshot, extra)
        if bad is not None:
            self._fail(bad)
            return
        last_ts = (snapshot.ts_event, snapshot.ts_init)
        buffered = self._buffer
        while buffered:
            delta, dextra = buffered[0]
            verdict = self.rule.check(delta)
            if verdict is Verdict.DROP:
                buffered.popleft()
                continue
            if verdict is Verdict.GAP:
                self._fail(self.rule.gap_reason(delta))
                return
            failure = self._apply(delta, dextra, False)
            if failure.__class__ is str:
                self._fail(failure)  # type: ignore[arg-type]
                return
            buffered.popleft()
            last_ts = (delta.ts_event, delta.ts_init)
        self._go_synced(last_ts[0], last_ts[1], snapshot.ts_init)

    def fast_forward(self, batch: DeltaBatch) -> None:
        """Apply a batch of recorded deltas in compiled code, emitting nothing per delta.

        For replays and backtests where the deltas are published elsewhere: the book and
        the rule advance exactly as with :meth:`on_delta` for every delta, but only the
        state changes (no BookDelta/Quote per message; one Quote at the end if the top
        changed). Needs a rule with a compiled twin (:meth:`SequenceRule.fast_forward`)
        and a SYNCED book; otherwise, and from the first delta that fails, the deltas go
        through :meth:`on_delta` (so failures resync exactly as live).
        """
        n = len(batch)
        i = 0
        rule = self.rule
        while i < n:
            book = self.book
            stop = rule.fast_forward(book, batch, i) if self.state is SyncState.SYNCED else None
            if stop is None:
                self.on_delta(_delta_at(batch, i, self.instrument_id))
                i += 1
                continue
            applied_to = stop if stop >= 0 else -stop - 1
            if applied_to > i:
                book.ts_event = int(batch.ts_event[applied_to - 1])
            if stop == n:
                break
            if stop < 0:  # applied but crossed: fail like on_delta does
                bid, ask = book.best_bid()[0], book.best_ask()[0]
                self._buffer_delta(_delta_at(batch, applied_to, self.instrument_id), None)
                self._fail(f"crossed book after delta seq={batch.last[applied_to]}: bid {bid} >= ask {ask}")
                i = applied_to + 1
                continue
            n_bids = int(batch.ask_start[stop] - batch.bid_start[stop])
            n_asks = int(batch.end[stop] - batch.ask_start[stop])
            if not book.room(n_bids, n_asks):
                book.reserve(n_bids, n_asks)  # out of room: grow and resume in compiled code
                i = stop
                continue
            self.on_delta(_delta_at(batch, stop, self.instrument_id))  # gap or malformed: handled as live
            i = stop + 1
        if self.emit_quotes and self.state is SyncState.SYNCED and n:
            self._maybe_quote(int(batch.ts_event[n - 1]), int(batch.ts_init[n - 1]))

    def invalidate(self, reason: str, request: bool = True) -> None:
        """Declare the book untrustworthy (e.g. the connection dropped) and drop buffered deltas.

        ``request=False`` waits for :meth:`request` (e.g. once reconnected) instead of
        asking for a snapshot now, and cancels a request in progress (its answer would
        belong to the lost connection).
        """
        self._buffer.clear()
        if not request and self._task is not None and not self._task.done():
            self._task.cancel()
            self._task = None
        self._fail(reason, request)

    def mark_lost(self, reason: str) -> None:
        """A message of this book's stream was lost (e.g. it could not be parsed): resync.

        Buffered deltas are kept; the next snapshot decides which of them still apply.
        """
        self._fail(reason)

    def request(self) -> None:
        """Ask for a snapshot now if not SYNCED (no-op while a request is already pending)."""
        if self.state is not SyncState.SYNCED:
            self._schedule_request()

    # --------------------------------------------------------------- internals

    def _apply(self, delta: BookDelta, extra: Any, track_top: bool) -> int | str:
        """Apply ``delta``; return APPLIED or TOP_CHANGED (``self._top`` moved), or why it failed."""
        book = self.book
        status = book.apply_top(delta.bids, delta.asks, self._top, track_top)  # type: ignore[arg-type]
        if status == APPLIED or status == TOP_CHANGED:
            rule = self.rule
            bad = rule.verify(book, delta, extra)
            if bad is not None:
                return bad
            rule.advance(delta)
            book.last_seq = delta.last_seq
            book.ts_event = delta.ts_event
            return status
        return self._failure(status, delta)

    def _failure(self, status: int, delta: BookDelta) -> str:
        """Why applying ``delta`` failed with ``status`` (CROSSED or INVALID)."""
        book = self.book
        if status == CROSSED:
            return (
                f"crossed book after delta seq={delta.last_seq}: "
                f"bid {book.best_bid()[0]} >= ask {book.best_ask()[0]}"
            )
        if status == INVALID:
            return f"malformed level in delta seq={delta.last_seq} (non-finite/non-positive price or bad size)"
        raise AssertionError(f"unknown book status {status}")

    def _buffer_delta(self, delta: BookDelta, extra: Any) -> None:
        if self._in_stream:
            return
        buffered = self._buffer
        if len(buffered) >= self._max_buffer:
            buffered.popleft()
            self.dropped_from_buffer += 1
        buffered.append((delta, extra))

    def _fail(self, reason: str, request: bool = True) -> None:
        was_synced = self.state is SyncState.SYNCED
        self.state = SyncState.AWAITING_SNAPSHOT
        self._live = None
        self.failure = reason
        self._synced_event.clear()
        self._top[:] = np.nan
        if was_synced:
            self._reason = reason
        logger.warning("book {}: {} -> awaiting snapshot", self.instrument_id, reason)
        if request:
            self._schedule_request()

    def _go_synced(self, ts_event: int, ts_init: int, received_ns: int) -> None:
        """Emit the rebuilt book (as of the message at ``ts_event``/``ts_init``), loaded from a snapshot received at ``received_ns``."""
        self.state = SyncState.SYNCED
        self._live = self._step
        self.failure = None
        self._synced_event.set()
        book = self.book
        self._emit(
            BookSnapshot(
                instrument_id=self.instrument_id,
                ts_event=ts_event,
                ts_init=ts_init,
                bids=book.bids(),
                asks=book.asks(),
                last_seq=book.last_seq,
            )
        )
        if self._reason is not None:
            self.resyncs += 1
            logger.info("book {}: resynced ({})", self.instrument_id, self._reason)
            # the snapshot's receive time, its recorded line's: not when the daemon's loop got here
            self._emit(BookResynced(self.instrument_id, self._reason, ts_event, received_ns))
        self._reason = None
        if self.emit_quotes:
            self._maybe_quote(ts_event, ts_init)

    def _maybe_quote(self, ts_event: int, ts_init: int) -> None:
        book = self.book
        top = self._top
        if refresh_top(book.bid_px, book.bid_sz, book.ask_px, book.ask_sz, book.counts, top):
            bid, bid_size, ask, ask_size = top.tolist()
            self._emit(Quote(self.instrument_id, ts_event, ts_init, bid, bid_size, ask, ask_size))

    def _schedule_request(self) -> None:
        request = self._request
        if request is None or (self._task is not None and not self._task.done()):
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            logger.debug("book {}: no running loop; snapshot must be fed with on_snapshot()", self.instrument_id)
            return
        self._task = loop.create_task(self._resync_loop(request), name=f"resync:{self.instrument_id}")

    async def _resync_loop(self, request: SnapshotRequester) -> None:
        attempt = 0
        while self.state is not SyncState.SYNCED:
            delay = self._retry_delays[min(attempt, len(self._retry_delays) - 1)]
            if delay > 0:
                await asyncio.sleep(delay)
            if self.state is SyncState.SYNCED:
                return
            attempt += 1
            self.snapshot_requests += 1
            try:
                snapshot = await request()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure of the fetch means "retry later"
                logger.warning("book {}: snapshot request {} failed: {!r}", self.instrument_id, attempt, exc)
                continue
            if snapshot is not None:
                # a snapshot that does not fit (older than the buffered deltas, crossed ...) is
                # requested again by this loop, after the next retry delay, not at once
                self._as_frame(lambda: self.on_snapshot(snapshot), snapshot.ts_init)
                continue
            if await self.wait_synced(self._snapshot_timeout):
                return


def _directly(load: Callable[[], None], ts_ns: int) -> None:
    load()


def _delta_at(batch: DeltaBatch, i: int, instrument_id: str) -> BookDelta:
    """Message ``i`` of a batch as a BookDelta."""
    return BookDelta(
        instrument_id,
        int(batch.ts_event[i]),
        int(batch.ts_init[i]),
        batch.levels[batch.bid_start[i] : batch.ask_start[i]],
        batch.levels[batch.ask_start[i] : batch.end[i]],
        int(batch.first[i]),
        int(batch.last[i]),
        int(batch.prev[i]),
    )
