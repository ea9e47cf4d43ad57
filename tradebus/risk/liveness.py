"""Book liveness: a book that stops changing while its instrument trades is frozen, not synced.

A book can pass every sequence check and still be dead: its diff stream is not arriving
(Binance frames of another depth speed than the one subscribed, a stream the venue
silently stopped) while the REST or in-stream snapshot it was loaded from stays in place.
Trades and quotes of the instrument keep flowing, so the feed is not stale either.
:class:`BookLiveness` is the one venue-neutral rule for this, fed with the times at
which each instrument's book changed and at which its trades or quotes arrived:

* a book is **frozen** when trades or quotes of its instrument have kept arriving for
  ``max_idle`` seconds since the first of them that followed its last change (a trade after
  a long quiet spell starts the window; it does not freeze the book by itself), on both
  clocks: their receive times and the venue's times they carry (see below);
* a frozen book is resynced (the feed's ``resync(reason)``: a REST snapshot on Binance, a
  resubscription on OKX/Bybit, which ends with ``BookResynced`` carrying the reason) and
  :meth:`BookLiveness.frozen` gives the reason orders are denied for;
* the snapshot of that resync does not prove the stream is alive: the book stays frozen
  until the first live change after it (if none comes within ``max_idle`` of activity,
  it is resynced again);
* only a book that is in sync is judged (one that is already resyncing is unsynced anyway).

The rule is synchronous and clock-free: times are the messages' receive times
(``ts_init``) and venue times (``ts_event``), so a replay of a recording takes the decisions
the live run took. Receive times alone cannot tell a dead depth stream from a stalled reader:
a connection's frames arrive in the venue's order, and after the event loop (or the network)
stalled longer than ``max_idle``, the first frame read may be a trade while the book updates
sent after it wait behind it, unread. The venue's times of that trade and of the trade before
the stall are as close as the venue printed them, so the span on the venue's clock is no
evidence of a freeze, and the book is judged only when both spans reach ``max_idle``. Live,
both clocks run at one pace, and a book whose updates stopped is caught as soon as on
receive times alone, give or take the difference of two frames' latencies; a paper daemon's
server replaying faster than recorded is judged on its receive times. A message without a
venue time (``ts_event == ts_init``: Binance spot's ``bookTicker``) spans none: a window of
such messages alone is judged on receive times (a stall can still freeze it), one with
venue-timed trades in it on their times, or on the receive times of the messages without
one that came since its last trade (a dead depth stream of a market whose trades stopped
is caught ``max_idle`` after the first quote that followed the last trade).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from loguru import logger

from tradebus.errors import ConfigError

__all__ = ["BookLiveness"]


@dataclass(slots=True)
class _Watch:
    max_idle_ns: int
    in_sync: Callable[[], bool]
    resync: Callable[[str], None]
    first_activity_ns: int = -1
    first_venue_ns: int | None = None  # venue time of the window's first venue-timed message
    last_venue_ns: int = 0  # latest venue time in the window
    timeless_ns: int | None = None  # receive time of the first message without a venue time since the last with one
    frozen: str | None = None
    resync_snapshot_seen: bool = False
    freezes: int = 0

    def start(self, ts_ns: int, ts_event_ns: int) -> None:
        """Start the window at a message received at ``ts_ns`` (venue time ``ts_event_ns``, if not ``ts_ns``)."""
        self.first_activity_ns = ts_ns
        self.first_venue_ns = None if ts_event_ns == ts_ns else ts_event_ns
        self.last_venue_ns = ts_event_ns
        self.timeless_ns = ts_ns if ts_event_ns == ts_ns else None


class BookLiveness:
    """The liveness rule for the books of a run (see the module docstring)."""

    __slots__ = ("_watches",)

    def __init__(self) -> None:
        self._watches: dict[str, _Watch] = {}

    def watch(
        self, instrument_id: str, max_idle: float, in_sync: Callable[[], bool], resync: Callable[[str], None]
    ) -> None:
        """Judge ``instrument_id``'s book: ``in_sync()`` says whether it is SYNCED, ``resync(reason)`` resyncs it."""
        if not max_idle > 0:
            raise ConfigError(f"book liveness {instrument_id}: max_idle must be > 0 s, got {max_idle!r}")
        self._watches[instrument_id] = _Watch(int(max_idle * 1e9), in_sync, resync)

    @property
    def freezes(self) -> dict[str, int]:
        """Books declared frozen so far, per instrument."""
        return {iid: w.freezes for iid, w in self._watches.items() if w.freezes}

    def on_book(self, instrument_id: str, snapshot: bool) -> None:
        """The book of ``instrument_id`` changed (``snapshot``: a whole book was loaded)."""
        w = self._watches.get(instrument_id)
        if w is None:
            return
        w.first_activity_ns = -1
        if w.frozen is None:
            return
        if snapshot and not w.resync_snapshot_seen:
            w.resync_snapshot_seen = True  # the resync's own snapshot: wait for a live change
            return
        logger.info("book {}: updates flow again after a freeze ({})", instrument_id, w.frozen)
        w.frozen = None

    def on_activity(self, instrument_id: str, ts_ns: int, ts_event_ns: int) -> None:
        """A trade or quote of ``instrument_id`` arrived at ``ts_ns`` (the venue's time ``ts_event_ns``,
        or ``ts_ns`` if it gives none); resync its book if it is frozen."""
        w = self._watches.get(instrument_id)
        if w is None:
            return
        if w.first_activity_ns < 0:
            w.start(ts_ns, ts_event_ns)
            return
        if ts_event_ns != ts_ns:
            w.timeless_ns = None
            if w.first_venue_ns is None:
                w.first_venue_ns = w.last_venue_ns = ts_event_ns
            elif ts_event_ns > w.last_venue_ns:
                w.last_venue_ns = ts_event_ns
        elif w.timeless_ns is None:
            w.timeless_ns = ts_ns
        idle = ts_ns - w.first_activity_ns
        if idle < w.max_idle_ns:
            return
        if w.first_venue_ns is not None:
            venue = w.last_venue_ns - w.first_venue_ns
            timeless = -1 if w.timeless_ns is None else ts_ns - w.timeless_ns
            idle = min(idle, max(venue, timeless))
            if idle < w.max_idle_ns:
                return
        if not w.in_sync():  # asked only here: this runs on every trade and quote
            w.start(ts_ns, ts_event_ns)
            return
        reason = (
            f"book frozen: trades/quotes of {instrument_id} for {idle / 1e9:.1f} s without a change of its book "
            f"(allowed {w.max_idle_ns / 1e9:g} s; is the depth stream arriving?)"
        )
        w.frozen = reason
        w.resync_snapshot_seen = False
        w.first_activity_ns = -1
        w.freezes += 1
        logger.warning("book {}: {} -> resync", instrument_id, reason)
        w.resync(reason)

    def frozen(self, instrument_id: str) -> str | None:
        """Why ``instrument_id``'s book counts as frozen, or ``None``."""
        w = self._watches.get(instrument_id)
        return None if w is None else w.frozen
