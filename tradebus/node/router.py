"""The node's router: every feed message to the kernel, the market guard or the bus, and the decision log."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from loguru import logger

from tradebus.engine.clock import LiveClock
from tradebus.engine.kernel import Kernel
from tradebus.engine.messages import (
    Bar,
    BookDelta,
    BookResynced,
    BookSnapshot,
    FeedStale,
    FundingRate,
    MarkPrice,
    OrderDenied,
    OrderSubmitted,
    Quote,
    Trade,
    TradesMissed,
)
from tradebus.errors import StrategyError
from tradebus.risk.guard import MarketGuard
from tradebus.strategies.failure import raise_strategy_failure, strategy_failure

__all__ = ["NodeRouter"]


class NodeRouter:
    """The sink of every feed: routes each message to the kernel, the guard or the bus.

    Book messages are published on the bus (after telling the liveness rule the book
    changed); the book itself is the adapter's, read through ``kernel.cache.book``.
    On a paper daemon's clock (:class:`~tradebus.engine.clock.LiveClock` ``replay_times``), each
    message is handled with the clock pinned at its frame's receive time, the time its recording
    holds and a replay's clock stands at, however late the busy loop read it: what a strategy
    decides on it is stamped then and reaches the simulated venue at that time + latency, as in
    the replay, not at the handling time + latency (a frame received in between would be matched
    otherwise). A live daemon's clock reads the wall clock: its orders leave when decided.
    Before each message, the timers and alerts of the kernel's clock due by the message's
    receive time fire (:meth:`~tradebus.engine.clock.Clock.run_due`): a simulated order's
    arrival is handled before the first message received after it, as in a replay, even
    when frames were waiting while the loop could not run its timer callbacks. After each
    message, those due by then fire too (an order decided on it with no latency arrives at
    once, not when the event loop next runs its callbacks). The messages of one frame of a
    feed's connection (told by its client: :meth:`frame_started`, :meth:`frame_ended`) were
    received at one instant, and a replay's clock, moved once per frame, fires nothing between
    them: what is due by a frame's receive time fires before the frame is parsed (its book deltas
    or sync snapshot applied), what fell due while it was handled after its last message, so an
    order decided on the first trade of a frame of several reaches the venue after the others,
    as in the replay. The messages of a REST answer are one frame too (a sync snapshot's
    BookSnapshot, BookResynced and Quote: told by the client's ``as_frame``), as its recorded
    line is played, at the answer's receive time (the rebuilt book carries the earlier time of
    the last buffered delta it applied). A message routed outside a frame (a stale feed's notice, a direct call)
    is a frame of its own. Nothing fires after a message (or a frame) received no
    later than the answer of the latest trade recovery: a
    :class:`~tradebus.engine.messages.TradesMissed` and the trades its feed releases after it,
    synchronously (those recovered, stamped with the answer's receive time, then those held back
    behind the gap, received before it). The venue had printed every released trade before an
    order, cancel or modification decided on one of them reached it, and a good-till-date expiry
    due after their receipt did not end an order before them: what falls due during the release
    fires before the first message received after it (or when the loop next runs its callbacks,
    once the release is over), as a replay's clock fires it. The kernel's mark-driven breakers
    are evaluated after each message (:meth:`~tradebus.risk.gate.RiskGate.evaluate_marks`):
    live, a message is a time of its own, and a breaker trips on it without waiting for the
    next one.

    Each decision is logged (submitted or denied, with the strategy's reason). A decision
    taken on a message is logged once the message is handled, its order on its way: a log
    line costs about as much as the rest of the decision, and the order goes first. Within a
    frame that is once the frame has ended and what fell due while it was handled has fired
    (a simulated order decided on it has arrived), with the decisions those arrivals took
    after the frame's. On a live venue, whose request is a task that starts only once control
    returns to the event loop, that is later still (:attr:`log_later`, set by the live daemon):
    once the loop has run the first step of the requests queued (the first of them is on the
    socket by then unless it waits for a connection or the rate budget; the others may wait
    for a connection of their own; a frame routed after it in the same step of the loop, a read that
    held both, is logged after its own), or before one of them refused in that step is reported
    (:meth:`log_decisions`, called by the live venue).
    One taken elsewhere (a timer, a venue's answer) is logged at once, after those of a message
    still waiting. Those taken before a strategy's hook raised are logged before ``on_failure``
    reports it.

    Parameters
    ----------
    kernel
        The (started) kernel.
    guard
        Market-data health of the run.
    max_messages
        Process at most this many market-data messages (trades, quotes, bars, book
        messages); later ones are dropped and ``on_limit`` is called once.
    on_limit
        Called when ``max_messages`` is reached.
    on_failure
        Called once with the :class:`~tradebus.errors.StrategyError` of an exception a strategy's
        hook raised while a message was handled (chained to it); later market data is dropped.
        Without it that error is raised to the feed. An exception that did not come from a
        strategy is raised as it is, either way.

    Attributes
    ----------
    counts
        Messages handled per type name (``"ignored"``: instruments the kernel does not trade,
        ``"after_limit"``: dropped after ``max_messages``, ``"after_failure"``: dropped after a
        strategy failed, ``"after_stop"``: dropped after :meth:`stop_data`).
    failure
        The strategy failure reported to ``on_failure``, if any.
    """

    def __init__(
        self,
        kernel: Kernel,
        guard: MarketGuard,
        *,
        max_messages: int | None = None,
        on_limit: Callable[[], None] | None = None,
        on_failure: Callable[[StrategyError], None] | None = None,
    ) -> None:
        self.kernel = kernel
        self.guard = guard
        self.counts: Counter[str] = Counter()
        self.messages = 0
        self.max_messages = max_messages
        self._on_limit = on_limit
        self._on_failure = on_failure
        self.failure: StrategyError | None = None
        self._closed = False
        self._closed_count = "after_limit"  # what a message dropped once closed counts as
        # Receive time of the latest trade recovery's answer: a message received by then is part of its release.
        self._recovered_ns = -1
        self._process = kernel.process
        self._evaluate_marks = kernel.risk.evaluate_marks
        clock = kernel.clock
        self._run_due = clock.run_due
        self._now_ns = clock.now_ns
        # A paper daemon's clock: each message is handled at its frame's receive time, as in a replay.
        self._pin = clock.pin if isinstance(clock, LiveClock) and clock.replay_times else None
        # The latest receive time handled: where a replay's clock stands (it never goes back).
        self._received_ns = -1
        # Within a frame (frame_started .. frame_ended, which fire what is due); something fell due after a message of it.
        self._in_frame = False
        self._due_at_frame_end = False
        self._publish = kernel.bus.publish
        self._instruments = kernel.instruments
        self._liveness = guard.liveness
        self._on_snapshot = guard.on_snapshot
        self._dispatch: dict[type, Callable[[Any], None]] = {
            Trade: self._activity,
            Quote: self._activity,
            Bar: self._data,
            BookSnapshot: self._snapshot,
            BookDelta: self._delta,
            BookResynced: self._resynced,
            FeedStale: self._stale,
            TradesMissed: self._trades_missed,
            MarkPrice: self._pushed,
            FundingRate: self._pushed,
        }
        # Decisions taken while a message is handled, logged after it.
        self._decided: list[OrderSubmitted | OrderDenied] = []
        self._in_message = False
        #: Runs a callback once the event loop has run what is ready (a live daemon's ``loop.call_soon``): the
        #: decisions of a message or frame are logged then, after the first step of the requests they queued.
        #: ``None``: logged at once (a simulated venue's order has arrived by then).
        self.log_later: Callable[[Callable[[], None]], object] | None = None
        # Decisions put in _decided since the start, and logged from it: a deferred log writes those taken before it
        # was scheduled (a frame routed after it in the same step of the loop waits for its own requests).
        self._decided_count = 0
        self._logged_count = 0
        self._log_scheduled = 0
        kernel.bus.subscribe(OrderSubmitted, self._on_decision)
        kernel.bus.subscribe(OrderDenied, self._on_decision)

    def __call__(self, msg: Any) -> None:
        """Handle one message from a feed, after the clock's timers and alerts due by its receive time."""
        handler = self._dispatch.get(type(msg))
        if handler is None:
            self.counts["unroutable"] += 1
            logger.warning("node: no route for a {} message, dropped", type(msg).__name__)
            return
        run_due = self._run_due
        framed = self._in_frame
        outer = self._in_message  # a message routed while one is handled: its decisions wait for the outer one
        self._in_message = True
        pin = self._pin
        received = msg.ts_init
        unpinned: int | None = None
        if pin is not None:
            # Trades released behind a gap (received earlier) are handled at the recovery's answer,
            # the line a replay's clock stands at.
            if received > self._received_ns:
                self._received_ns = received
            received = self._received_ns
            unpinned = pin(received)
        try:
            if not framed:  # a frame's start fired what was due by its receive time
                run_due(received)
            handler(msg)
            self._evaluate_marks()  # a message is a time of its own: a breaker trips without waiting for the next
            if pin is not None:
                pin(unpinned)
                pin = None
            if msg.ts_init > self._recovered_ns:
                if framed:
                    self._due_at_frame_end = True
                else:
                    run_due(self._now_ns())
        except Exception as exc:
            if self._on_failure is None:
                raise_strategy_failure(exc, self._now_ns())
            failure = strategy_failure(exc, self._now_ns())
            if failure is None:
                raise
            failure.__cause__ = exc
            self._failed(failure)
        finally:
            if pin is not None:
                pin(unpinned)
            self._in_message = outer
            if not outer and not framed:  # a frame's decisions are logged once its orders have arrived
                self._log_after_sends()

    def frame_started(self, ts_ns: int) -> None:
        """The messages routed from now until :meth:`frame_ended` are those of one frame received at ``ts_ns``.

        What fell due by then fires now, before the frame is parsed: the feed changes its books
        (a delta, a sync snapshot) before it routes their messages, and a replay fires it before the line.
        Its messages are handled at ``ts_ns`` (or a later routed time): a REST answer's rebuilt book
        carries the time of the last buffered delta it applied, received before the answer.
        """
        if ts_ns > self._received_ns:
            self._received_ns = ts_ns
        self._in_frame = True
        self._due_at_frame_end = False
        self._run_due(ts_ns)

    def frame_ended(self) -> None:
        """The frame's messages are all routed: fire what fell due while they were handled."""
        self._in_frame = False
        if self._due_at_frame_end:
            self._due_at_frame_end = False
            outer = self._in_message
            self._in_message = True  # what the arrivals decide is logged after the frame's decisions
            try:
                self._run_due(self._now_ns())
            finally:
                self._in_message = outer
        if not self._in_message:
            self._log_after_sends()

    def stop_data(self) -> None:
        """Drop the market data routed from now on (counted ``"after_stop"``): no strategy decides on it."""
        self._closed = True
        self._closed_count = "after_stop"

    def _failed(self, failure: StrategyError) -> None:
        """Report a strategy's failure once and drop the market data that follows."""
        self._closed = True
        self._closed_count = "after_failure"
        if self.failure is None:
            self.failure = failure
            assert self._on_failure is not None
            self._log_decided()  # the decisions taken before it, not after the failure's report
            self._on_failure(failure)

    def _admit(self, msg: Any, live: bool = True) -> bool:
        """Whether ``msg`` goes on (counted); ``live``: it proves the instrument's stream delivers data."""
        iid = msg.instrument_id
        if iid not in self._instruments:
            self.counts["ignored"] += 1
            return False
        if self._closed:
            self.counts[self._closed_count] += 1
            return False
        self.messages += 1
        limit = self.max_messages
        if limit is not None and self.messages >= limit:
            self._closed = True
            if self._on_limit is not None:
                self._on_limit()
        if live:
            self.guard.on_data(iid)
        return True

    def _pushed(self, msg: MarkPrice | FundingRate) -> None:
        # pushed by the instrument's stream: the feed delivers, as its watchdog counts it (no trading data, no admit)
        self.guard.on_data(msg.instrument_id)
        self._publish(msg)

    def _data(self, msg: Bar) -> None:
        if self._admit(msg):
            self._process(msg)

    def _activity(self, msg: Trade | Quote) -> None:
        if self._admit(msg):
            self._liveness.on_activity(msg.instrument_id, msg.ts_init, msg.ts_event)  # before the strategy sees it
            self._process(msg)

    def _snapshot(self, msg: BookSnapshot) -> None:
        if not self._admit(msg, live=False):
            return
        # data only if the stream pushed it: a REST snapshot is answered while the stream is silent
        self._on_snapshot(msg.instrument_id)
        self._liveness.on_book(msg.instrument_id, snapshot=True)
        self.counts["BookSnapshot"] += 1
        self._process(msg)

    def _delta(self, msg: BookDelta) -> None:
        if not self._admit(msg):
            return
        self._liveness.on_book(msg.instrument_id, snapshot=False)
        self.counts["BookDelta"] += 1
        self._process(msg)

    def _resynced(self, msg: BookResynced) -> None:
        self.counts["BookResynced"] += 1
        logger.warning("book {} resynced after: {}", msg.instrument_id, msg.reason)
        self._publish(msg)

    def _trades_missed(self, msg: TradesMissed) -> None:
        self.counts["TradesMissed"] += 1
        if msg.ts_init > self._recovered_ns:
            self._recovered_ns = msg.ts_init
        if msg.instrument_id in self._instruments:
            self.kernel.on_trades_missed(msg)  # before the recovered trades, which follow it
        self._publish(msg)

    def _stale(self, msg: FeedStale) -> None:
        self.counts["FeedStale"] += 1
        self.guard.on_stale(msg)
        self._publish(msg)

    # ------------------------------------------------------------------ decision log

    def _describe(self, client_order_id: str) -> str:
        order = self.kernel.orders.get(client_order_id)
        if order is None:
            return client_order_id
        price = "" if order.price != order.price else f" @ {order.price!r}"
        return (
            f"{client_order_id} {order.strategy_id}: {order.side.name} {order.quantity!r} "
            f"{order.instrument_id} {order.order_type}{price}"
        )

    def _on_decision(self, event: OrderSubmitted | OrderDenied) -> None:
        if self._in_message:
            self._decided.append(event)
            self._decided_count += 1
        else:
            self._log_decided()  # those of a message whose deferred log has not run yet go first
            self._log_decision(event)

    def _log_after_sends(self) -> None:
        """Log the decisions taken, at once or (:attr:`log_later`) once the requests they queued have started."""
        if not self._decided:
            return
        if self.log_later is None:
            self._log_decided()
        elif self._log_scheduled != self._decided_count:
            upto = self._log_scheduled = self._decided_count
            self.log_later(lambda: self._log_decided(upto))

    def log_decisions(self) -> None:
        """Log now the decisions still waiting for :attr:`log_later` (a live venue is about to report a request of
        theirs refused: the decision goes first)."""
        self._log_decided()

    def _log_decided(self, upto: int | None = None) -> None:
        """Log the decisions taken while a message (or a frame) was handled, in the order they were taken (``upto``:
        those of them before the ``upto``-th, the rest stay)."""
        decided = self._decided
        n = len(decided) if upto is None else upto - self._logged_count
        if n > 0:
            if n < len(decided):
                decided, self._decided = decided[:n], decided[n:]
            else:
                self._decided = []
            self._logged_count += n
            for event in decided:
                self._log_decision(event)

    def _log_decision(self, event: OrderSubmitted | OrderDenied) -> None:
        if type(event) is OrderSubmitted:
            self._log_submitted(event)
        else:
            self._log_denied(event)  # type: ignore[arg-type]

    def _log_submitted(self, event: OrderSubmitted) -> None:
        why = self.kernel.result.submit_reasons.get(event.client_order_id, "")
        logger.bind(client_order_id=event.client_order_id, strategy_id=event.strategy_id, decision="submitted").info(
            "decision {} -> submitted ({})", self._describe(event.client_order_id), why or "no reason given"
        )

    def _log_denied(self, event: OrderDenied) -> None:
        why = self.kernel.result.submit_reasons.get(event.client_order_id, "")
        logger.bind(client_order_id=event.client_order_id, strategy_id=event.strategy_id, decision="denied").warning(
            "decision {} -> denied: {} (strategy reason: {})",
            self._describe(event.client_order_id),
            event.reason,
            why or "none given",
        )
