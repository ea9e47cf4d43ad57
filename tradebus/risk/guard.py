"""The market guard: no new order on an instrument whose market data cannot be trusted.

:class:`MarketGuard` tracks, per instrument, whether its feed went stale (``FeedStale``
until its stream's next market-data message, a book snapshot only if the stream pushed it; for a
feed of trade channels alone, also until its connection proves live again), whether its subscribed L2 book is in sync with the
venue (asked of the adapter at decision time) and whether its book is frozen
(:mod:`tradebus.risk.liveness`). :class:`GuardedRiskGate` is the risk gate with the guard
asked first; a blocked order is denied with ``"feed stale: ..."`` or ``"book unsynced: ..."``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial
from typing import Protocol

from loguru import logger

from tradebus.engine.bus import MessageBus
from tradebus.engine.clock import Clock
from tradebus.engine.messages import FeedStale, SubmitOrder
from tradebus.engine.portfolio import Portfolio
from tradebus.risk.config import RiskConfig
from tradebus.risk.gate import RiskGate
from tradebus.risk.liveness import BookLiveness

__all__ = ["GUARD_CHECKS", "GuardedFeed", "GuardedRiskGate", "MarketGuard"]

#: The guard's denials, ``"<check>: ..."``: each blocks an instrument whatever the order until its data can be
#: trusted again, so it passes with time (as the gate's :data:`~tradebus.risk.gate.PASSING_CHECKS`).
GUARD_CHECKS = ("feed stale", "book unsynced")


class _FeedSettings(Protocol):
    @property
    def book_max_idle(self) -> float: ...


class GuardedFeed(Protocol):
    """What the guard needs of a market-data feed (``tradebus.node.feeds.Feed`` is one)."""

    name: str
    instrument_ids: tuple[str, ...]
    snapshots_on_stream: bool

    @property
    def config(self) -> _FeedSettings: ...

    def book_checks(self) -> dict[str, Callable[[], bool]]: ...

    def connection_live_ns(self) -> Callable[[], int] | None: ...

    def resync_book(self, instrument_id: str, reason: str) -> None: ...


class MarketGuard:
    """Per-instrument market-data health, asked before every order.

    An instrument is blocked while any of its feeds is stale, each until live again by its own rule
    (from its ``FeedStale`` until the next market-data message of that instrument a stream delivers: a trade, quote, bar or book
    change, a mark price or funding rate, or a book snapshot of a feed whose snapshots come on its stream (OKX, Bybit: a resubscription's, every
    ``books5`` push, Bybit's repeat of an unchanged book), not one fetched over REST (Binance), which a silent stream
    does not prove; a feed of trade channels
    alone, silent whenever its market does not trade, is live again as soon as its connection
    proves it, by the rule its watchdog follows: any frame or an answered ping received after
    the ``FeedStale``, asked when an order is checked), while its subscribed L2 book is out of sync
    (asked of the adapter when an order is checked, so no transition can be missed), or
    while its book is frozen (:class:`~tradebus.risk.liveness.BookLiveness`:
    trades or quotes flow but the book has not changed for the feed's ``book_max_idle``;
    the book is resynced).

    A mark price (or funding rate) ends a stale episode: it is the stream pushing data of the instrument, which
    the feed's watchdog counts as such (a feed whose only live channel is mark price never goes stale), so an
    instrument blocked after a reconnection while its market is quiet would otherwise stay blocked by history
    alone. It proves the stream, not the book: an unsynced or frozen book still blocks by its own rule.
    """

    __slots__ = ("_book_checks", "_connection_live", "_feeds", "_snapshots_on_stream", "_stale", "liveness")

    def __init__(self) -> None:
        #: instrument -> {each of its stale feeds: (the reason, its latest FeedStale's time, on the feed's clock)}
        self._stale: dict[str, dict[str, tuple[str, int]]] = {}
        #: feed -> receive time (ns) of its connection's latest proof of life (trades-only feeds)
        self._connection_live: dict[str, Callable[[], int]] = {}
        self._feeds: dict[str, tuple[str, ...]] = {}
        self._book_checks: dict[str, Callable[[], bool]] = {}
        #: instruments whose book snapshots come on their feed's stream
        self._snapshots_on_stream: set[str] = set()
        self.liveness = BookLiveness()

    def register_feed(
        self,
        name: str,
        instrument_ids: Iterable[str],
        book_checks: dict[str, Callable[[], bool]],
        *,
        book_max_idle: float | None = None,
        resync: Callable[[str, str], None] | None = None,
        connection_live_ns: Callable[[], int] | None = None,
        snapshots_on_stream: bool = False,
    ) -> None:
        """Declare a feed's instruments and, per instrument with a book, its in-sync test.

        With ``book_max_idle`` (seconds) and ``resync(instrument_id, reason)``, those books
        are also watched for liveness. ``connection_live_ns`` (a feed of trade channels alone):
        the receive time (ns) of its connection's latest proof of life, which ends a stale
        episode as market data does. ``snapshots_on_stream``: its book snapshots arrive on its
        stream, so one ends a stale episode as market data does (:meth:`on_snapshot`).
        """
        self._feeds[name] = tuple(instrument_ids)
        if snapshots_on_stream:
            self._snapshots_on_stream.update(self._feeds[name])
        if connection_live_ns is not None:
            self._connection_live[name] = connection_live_ns
        self._book_checks.update(book_checks)
        if book_max_idle is not None and resync is not None:
            for iid, in_sync in book_checks.items():
                self.liveness.watch(iid, book_max_idle, in_sync, partial(resync, iid))

    def register(self, feed: GuardedFeed) -> None:
        """Declare ``feed`` (instruments, in-sync tests of its books, their liveness rule)."""
        self.register_feed(
            feed.name,
            feed.instrument_ids,
            feed.book_checks(),
            book_max_idle=feed.config.book_max_idle,
            resync=feed.resync_book,
            connection_live_ns=feed.connection_live_ns(),
            snapshots_on_stream=feed.snapshots_on_stream,
        )

    def block_reason(self, instrument_id: str) -> str | None:
        """Why no new order may be sent on ``instrument_id`` now, or ``None``."""
        if self._stale:
            reason = self.stale_reason(instrument_id)
            if reason is not None:
                return reason
        check = self._book_checks.get(instrument_id)
        if check is not None and not check():
            return f"book unsynced: the {instrument_id} order book is not in sync with the venue"
        frozen = self.liveness.frozen(instrument_id)
        if frozen is not None:
            return f"book unsynced: {frozen}"
        return None

    def order_reason(self, cmd: SubmitOrder, working: Callable[[str, bool, str], float]) -> str | None:
        """Why ``cmd`` may not be sent now, or ``None``: :meth:`block_reason` of its instrument.

        A subclass may look at the order itself; ``working(instrument_id, buy, exclude)`` is
        the signed remaining quantity of the working orders on one side of what the instrument
        holds: its position, or for a cash-only instrument its base asset, on every cash-only
        instrument trading that asset (``exclude``: a client order id left out).
        """
        return self.block_reason(cmd.instrument_id)

    def on_stale(self, msg: FeedStale) -> None:
        """Block every instrument of the silent feed."""
        silent = (msg.ts_event - msg.last_message_ns) / 1e9
        for iid in self._feeds.get(msg.source, ()):
            self._stale.setdefault(iid, {})[msg.source] = (f"feed stale: {msg.source} delivered nothing for {silent:.1f} s", msg.ts_event)
        logger.warning(
            "feed {} stale: orders on {} stop until data flows again", msg.source, self._feeds.get(msg.source, ())
        )

    def on_data(self, instrument_id: str) -> None:
        """A stream delivered a market-data message of ``instrument_id``: none of its feeds is stale any more
        (a message does not name its feed)."""
        if self._stale and self._stale.pop(instrument_id, None) is not None:
            logger.info("feed of {} live again: orders allowed", instrument_id)

    def on_snapshot(self, instrument_id: str) -> None:
        """A book snapshot of ``instrument_id`` arrived: market data (:meth:`on_data`) if its feed's stream pushed it."""
        if self._stale and instrument_id in self._snapshots_on_stream:
            self.on_data(instrument_id)

    def stale(self, instrument_id: str) -> bool:
        """Whether ``instrument_id``'s feed is currently stale."""
        return self.stale_reason(instrument_id) is not None

    def stale_reason(self, instrument_id: str) -> str | None:
        """Why orders on ``instrument_id`` are denied for stale feeds (``"feed stale: ..."``, one per feed), or ``None``."""
        stale = self._stale.get(instrument_id)
        if stale is None:
            return None
        for source, (_, since) in list(stale.items()):
            live_ns = self._connection_live.get(source)
            if live_ns is not None and live_ns() > since:
                del stale[source]
                logger.info("feed {} of {} live again (its connection answers; its market may be quiet)", source, instrument_id)
        if stale:
            return "; ".join(reason for reason, _ in stale.values())
        del self._stale[instrument_id]
        logger.info("feeds of {} live again: orders allowed", instrument_id)
        return None


class GuardedRiskGate(RiskGate):
    """The risk gate with the :class:`MarketGuard` asked first (see :class:`MarketGuard`)."""

    __slots__ = ("guard",)

    def __init__(
        self, config: RiskConfig, portfolio: Portfolio, clock: Clock, bus: MessageBus, guard: MarketGuard
    ) -> None:
        super().__init__(config, portfolio, clock, bus)
        self.guard = guard

    def check(
        self, cmd: SubmitOrder, open_orders: int = 0, *, order_quantity: float | None = None, rated: bool = False,
    ) -> str | None:
        """The guard's reason to block ``cmd`` (:meth:`MarketGuard.order_reason`), else :meth:`RiskGate.check`."""
        reason = self.guard.order_reason(cmd, self._working_holding)
        if reason is not None:
            return reason
        return super().check(cmd, open_orders, order_quantity=order_quantity, rated=rated)

