"""Execution engine: the path from a strategy's command to the portfolio.

::

    SubmitOrder -> order manager (INITIALIZED) -> venue's client id rule, risk gate --deny--> OrderDenied
                                                     | pass
                                                     v
                   OrderSubmitted -> [journal] -> venue.submit
    venue events -> order manager -> (fill: portfolio) -> bus (-> PositionChanged)

Venue events may arrive late, twice, out of order or for unknown ids: the order manager
drops what it already knows and books every other fill (see :mod:`tradebus.execution.orders`);
a fill of an order this process never created is booked too (:meth:`ExecutionEngine.on_external_fill`).
A fill or a close whose event carries the venue's cumulative filled quantity (``filled_qty``)
and says more than is booked with it (an earlier fill's frame was lost) queries the order at once;
a venue's push of that quantity apart from the fills (``OrderFillsReported``), which may come before
them, queries it only if still more than is booked ``fill_grace_ns`` later (the last fill's frame was lost).
A query whose answer says more filled than the fills the venue's trade history lists (``MISSING_FILLS``)
is asked again, up to :data:`MISSING_FILLS_READS` times, until the fills are listed and booked. One whose
quantity, price or trigger differ from the open order's (amended at the venue, unheard here) modifies the
order as an amend's acknowledgement does (``OrderModified``, journaled), before its fills are booked; so do the terms
a live venue's private stream tells of an amend made at the venue (``OrderTermsReported``).
A live venue's funding payments (``FundingPaid``) and the fills of its liquidation orders (strategy
``"liquidation"``) go to the kernel's perpetuals (:attr:`ExecutionEngine.on_venue_funding`,
:attr:`ExecutionEngine.on_venue_liquidation`).

Requests without answers: a :meth:`Venue.submit` or :meth:`Venue.cancel` that raises moves the
order to ``UNKNOWN`` (``OrderTimedOut``) and the venue is queried at once. With
:class:`OrderTimeouts` (a live venue, whose answers can be lost), a submit that gets no answer, or a cancel that does
not close the order, within its timeout on the clock does the same (counted from the cancel's latest request
when the venue sends it again, :meth:`Venue.cancel_resent_ns`; unless the venue refused the cancel
and found the order still working: ``OrderCancelRejected``, journaled and published); an ``UNKNOWN`` order the
query cannot settle is asked again every ``retry_ns``; and every open order silent for
``check_ns`` is queried, which recovers events lost on the way. A venue that does not know an
order is believed only once its submit request ended (:meth:`Venue.submit_ended_ns`: a submit held
by a rate-limit pause may leave after a query of the order) more than ``not_found_grace_ns`` ago
(a request cannot arrive later than that); only then does the order become ``REJECTED``.

The kernel calls the data hooks (:meth:`ExecutionEngine.on_bar`, ``on_trade``, ``on_quote``)
*before* strategies see the data: the venue matches working orders, then the portfolio is
marked and the risk gate updates its last price and breakers. A fill is booked in the
portfolio before ``OrderFilled`` is published, so a strategy's ``on_order_filled`` already
sees its new position; ``PositionChanged`` follows the fill.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar

import msgspec
from loguru import logger

from tradebus.engine.bus import MessageBus
from tradebus.engine.clock import Clock
from tradebus.engine.instrument import Instrument
from tradebus.engine.messages import (
    Bar,
    CancelOrder,
    ContingentLinked,
    FundingPaid,
    ModifyOrder,
    OrderCancelRejected,
    OrderCanceled,
    OrderDenied,
    OrderExpired,
    OrderFilled,
    OrderFillsReported,
    OrderModified,
    OrderModifyRejected,
    OrderReplaced,
    OrderResolved,
    OrderStatus,
    OrderSubmitted,
    OrderTermsReported,
    OrderTimedOut,
    PositionChanged,
    Quote,
    SubmitOrder,
    Trade,
)
from tradebus.engine.perpetuals import LIQUIDATION_STRATEGY
from tradebus.engine.portfolio import Portfolio
from tradebus.execution.client_ids import ClientIdRule
from tradebus.execution.orders import Order, OrderManager
from tradebus.execution.venue import OrderStatusReport, Venue, terms_text, venue_terms
from tradebus.errors import OrderError, VenueError
from tradebus.risk.gate import RiskGate

if TYPE_CHECKING:
    from tradebus.execution.journal import Journal

__all__ = ["MISSING_FILLS_READS", "ExecutionEngine", "OrderTimeouts"]

_S = OrderStatus

#: What an order whose state the venue's answer settles was waiting on here, for the log line saying how it ended.
_NOT_KNOWN_YET: dict[OrderStatus, str] = {
    _S.UNKNOWN: "its state at the venue not known: a submit or cancel timed out or failed, or it was open when the "
                "daemon last stopped; queried by its client order id, never re-sent",
    _S.SUBMITTED: "its submit sent, no answer yet",
}

#: Queries of an order whose venue says it filled more than the fills its trade history lists
#: (``OrderAnomaly`` ``MISSING_FILLS``), ``retry_ns`` after the anomaly, then each twice as long after
#: the previous answer (with the live default of 5 s: 5, 10, 20, 40 and 80 s). Binance and Bybit list
#: a fill a few seconds after its order counts it filled: each listed fill is booked once (by
#: ``trade_id``); one still missing after the last read stays so (logged; the instrument stays held).
MISSING_FILLS_READS = 5


class OrderTimeouts(msgspec.Struct, frozen=True):
    """Run-time timeouts of venue requests, in clock nanoseconds (all > 0).

    Attributes
    ----------
    submit_ns
        A submit without any answer (ack, reject, fill, cancel) this long after it was sent
        times out: the order becomes ``UNKNOWN`` and the venue is queried. The venue is told it
        (:meth:`Venue.set_submit_timeout`): a live venue whose rate limit would hold a submit
        longer withdraws it unsent (``REJECTED``), unless it restores an order the venue canceled.
    cancel_ns
        An order still open this long after a cancel was sent times out the same way (after its
        latest request, where the venue sends it again: :meth:`Venue.cancel_resent_ns`).
    retry_ns
        An ``UNKNOWN`` order the query could not settle (no answer, or a venue that does not
        know it yet) is queried again after this long.
    check_ns
        Every open order without an event for this long is queried (``None``: never): recovers
        events the venue sent but that never arrived.
    not_found_grace_ns
        A venue that does not know an order whose submit request ended less than this ago may
        not have received it yet; one that ended earlier never arrived (the venue's request window,
        e.g. Binance ``recvWindow``), and the order is ``REJECTED``.
    fill_grace_ns
        A venue's push saying more of an order filled than is booked (``OrderFillsReported``,
        Bybit's ``order`` topic) may come before the fills' own frames: the order is queried only
        if still short this long after it (a fill's frame was lost).
    """

    submit_ns: int = 5_000_000_000
    cancel_ns: int = 5_000_000_000
    retry_ns: int = 5_000_000_000
    check_ns: int | None = 30_000_000_000
    not_found_grace_ns: int = 10_000_000_000
    fill_grace_ns: int = 1_000_000_000

    def __post_init__(self) -> None:
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise OrderError(f"OrderTimeouts.{name} must be > 0 ns, got {value}")


class ExecutionEngine:
    """Wires risk gate, order manager, venue and portfolio, and publishes every event.

    Parameters
    ----------
    bus, clock
        The run's message bus and clock.
    instruments
        ``instrument_id -> Instrument``.
    risk, orders, venue, portfolio
        The components; the engine binds itself as the venue's event handler.
    journal
        Optional :class:`~tradebus.execution.journal.Journal` (paper/live): every command is
        written before it is sent to the venue, every event as it is applied.
    timeouts
        Run-time timeouts of venue requests (:class:`OrderTimeouts`); ``None`` (the simulated
        venue, which never loses an answer):
        no timers, an order whose request failed stays ``UNKNOWN`` until a query settles it
        (:meth:`resolve_unknown`), and a venue that does not know an order is believed.
    client_id_rules
        ``instrument_id -> the form of client order id its venue takes`` (or a function returning
        it, called at the first id a strategy gives itself): an order whose id (one a strategy
        gave itself) breaks it is denied, naming the id and the rule, before anything is sent;
        an instrument without one takes any id.
    """

    #: Build ``OrderAccepted`` and ``PositionChanged`` only when something journals or receives
    #: them (the order manager and the portfolio are updated the same either way). ``False``
    #: builds and publishes every one; tests run both ways and compare the results.
    fast_path: ClassVar[bool] = True

    __slots__ = (
        "_bus",
        "_cancel_alerts",
        "_client_id_rules",
        "_clock",
        "_fills_awaited",
        "_journal",
        "_lean",
        "_om",
        "_portfolio",
        "_reread_due",
        "_retrying",
        "_risk",
        "_seq",
        "_terms_refused",
        "_timeouts",
        "_venue",
        "instruments",
        "on_fills_listed",
        "on_venue_funding",
        "on_venue_liquidation",
    )

    def __init__(
        self,
        bus: MessageBus,
        clock: Clock,
        instruments: dict[str, Instrument],
        risk: RiskGate,
        orders: OrderManager,
        venue: Venue,
        portfolio: Portfolio,
        journal: Journal | None = None,
        timeouts: OrderTimeouts | None = None,
        client_id_rules: Mapping[str, ClientIdRule] | Callable[[], Mapping[str, ClientIdRule]] | None = None,
    ) -> None:
        self._bus = bus
        self._client_id_rules = client_id_rules
        self._clock = clock
        self.instruments = instruments
        self._risk = risk
        self._om = orders
        self._venue = venue
        self._portfolio = portfolio
        self._journal = journal
        # Working orders count in the position and exposure limits; a stricter trading state cancels them.
        risk.bind_orders(orders, self._cancel_disallowed, venue.replaced_in_flight)
        self._timeouts = timeouts
        self._seq = 0  # makes clock alert names unique
        self._retrying: dict[str, str] = {}  # orders with a query retry pending -> the name of its alert
        self._cancel_alerts: dict[str, str] = {}  # orders with a cancel timeout pending -> the name of its alert
        # Orders whose venue lists fewer fills than it says filled -> reads made since; those with a read due.
        self._fills_awaited: dict[str, int] = {}
        self._reread_due: set[str] = set()
        # Orders -> the venue's terms last found that they cannot take (_apply_terms): logged once, not at each frame.
        self._terms_refused: dict[str, tuple[float, float, float]] = {}
        venue.bind(self.on_venue_event)
        orders.on_forget = self._forget
        venue.set_submit_timeout(timeouts.submit_ns if timeouts is not None else None)
        venue.set_query_retry(timeouts.retry_ns if timeouts is not None else None)
        venue.bind_repeat_expected(orders.expect_repeat)
        venue.bind_modify_check(partial(self._modify_allowed, rated=True))
        #: Books a venue's funding payment (``FundingPaid``); the kernel's perpetuals, when it has margined instruments.
        self.on_venue_funding: Callable[[FundingPaid], None] | None = None
        #: Books a fill of the venue's liquidation order (strategy ``"liquidation"``); as :attr:`on_venue_funding`.
        self.on_venue_liquidation: Callable[[OrderFilled], None] | None = None
        #: Told each order whose ``MISSING_FILLS`` the reads again resolved (its fills listed and booked as the
        #: venue says filled); the live reconciliation, which lifts the instrument's hold.
        self.on_fills_listed: Callable[[Order], None] | None = None
        self._lean = self.fast_path
        bind_accepted = getattr(venue, "bind_accepted", None)
        if bind_accepted is not None and self._lean and journal is None:
            # The order manager applies an acknowledgement nothing receives without its event (one call);
            # an order filled in its acceptance's step is moved by its fill alone while nothing receives it.
            bind_accepted(orders.mark_accepted, bus.wanted)
        if timeouts is not None and timeouts.check_ns is not None:
            clock.set_timer(f"orders-check-{id(self)}", timeouts.check_ns, self._check_open)

    @property
    def orders(self) -> OrderManager:
        """The order manager."""
        return self._om

    def journal_links(self, msg: ContingentLinked) -> None:
        """Journal (and commit) the links of contingent orders; nothing without a journal."""
        if self._journal is not None:
            self._journal.record_command(msg, msg.client_order_id)

    @property
    def portfolio(self) -> Portfolio:
        """The portfolio."""
        return self._portfolio

    @property
    def risk(self) -> RiskGate:
        """The risk gate."""
        return self._risk

    @property
    def venue(self) -> Venue:
        """The venue."""
        return self._venue

    # ------------------------------------------------------------------ commands

    def submit(self, cmd: SubmitOrder, *, replaces: str = "", sized_on: float = float("nan")) -> Order:
        """Check ``cmd`` and send it to the venue, or deny it.

        ``replaces``: the client id of a working order this one replaces in a cancel-replace sent
        as one request; it is checked as a modification of that order (what that order holds and
        its place among the open orders are not counted twice), and its intent is journaled and
        published (``ContingentLinked`` ``"replace"``) before the venue is called, with ``sized_on``
        (NaN: not given), that order's filled quantity ``cmd``'s quantity was sized on: a restart
        compares it with what the venue says that order filled.

        Returns the order (status DENIED, SUBMITTED, or whatever the venue answered synchronously).

        Raises
        ------
        DataError
            The journal cannot be written (:attr:`Journal.failure
            <tradebus.execution.journal.Journal.failure>`): the order is not sent.
        """
        om = self._om
        order = om.create(cmd)
        journal = self._journal
        if journal is not None:
            journal.record_command(cmd, order.client_order_id)
        now = self._clock.now_ns()
        reason = self._id_refusal(cmd) if cmd.client_order_id and self._client_id_rules is not None else None
        if reason is None and replaces:
            reason = self._risk.check(msgspec.structs.replace(cmd, client_order_id=replaces), om.count_open() - 1)
        elif reason is None:
            reason = self._risk.check(cmd, om.count_open())
        if reason is not None:
            # A daemon logs each denial once, at WARNING (its decision line); a backtest one WARNING per check.
            logger.debug("order {} denied: {}", order.client_order_id, reason)
            self._event(OrderDenied(cmd.strategy_id, cmd.instrument_id, order.client_order_id, reason, now, now))
            return order
        if journal is None and OrderSubmitted not in self._bus.wanted:
            om.mark_submitted(order, now)  # an event nobody journals or receives is not built
        else:
            event = OrderSubmitted(cmd.strategy_id, cmd.instrument_id, order.client_order_id, now, now)
            if journal is not None:
                # Journaled before the venue is called; an order the journal could not take stays INITIALIZED.
                journal.record_event(event)
            om.apply(event)
            self._bus.publish(event)
        if replaces:
            self._replacing(cmd, replaces, order.client_order_id, now, sized_on)
        try:
            self._venue.submit(order)
        except Exception as exc:  # noqa: BLE001 - the venue's failure is an answer we do not have
            logger.opt(exception=exc).error("order {}: venue.submit raised", order.client_order_id)
            if order.status is _S.SUBMITTED:
                self._time_out(order, f"submit failed: {type(exc).__name__}: {exc}")
            return order
        timeouts = self._timeouts
        if timeouts is not None and order.status is _S.SUBMITTED:
            self._alert(order, "submit", timeouts.submit_ns, self._on_submit_timeout)
        return order

    def _id_refusal(self, cmd: SubmitOrder) -> str | None:
        """Why the venue would refuse the client order id a strategy gave ``cmd`` itself, if it would (ids made
        here always pass); a rules factory is called at the first such id."""
        rules = self._client_id_rules
        if callable(rules):
            rules = self._client_id_rules = dict(rules())
        rule = rules.get(cmd.instrument_id) if rules else None
        return None if rule is None else rule.refusal(cmd.client_order_id)

    def _replacing(self, cmd: SubmitOrder, replaced: str, replacement: str, now: int, sized_on: float) -> None:
        """Journal and publish the intent of a cancel-replace before it is sent (``ContingentLinked``
        ``"replace"``, ``params`` ``sized_on`` when given): a restart after a crash in flight moves the replaced
        order's links to the replacement if the venue shows it working (:meth:`ContingentOrders.restore`)."""
        if self._journal is None and ContingentLinked not in self._bus.wanted:
            return
        params = {} if sized_on != sized_on else {"sized_on": sized_on}
        self.replacing(ContingentLinked(cmd.strategy_id, cmd.instrument_id, replaced, "replace", (replaced, replacement), params, now, now))

    def replacing(self, link: ContingentLinked) -> None:
        """Journal and publish a cancel-replace's intent (``ContingentLinked`` ``"replace"``) before its request is sent.

        The venue's two-request cancel-replace gives one with no replacement id yet (its cancel is
        about to be sent; a restart places the replacement, see :class:`~tradebus.execution.live.LiveVenue`).
        """
        self.journal_links(link)
        self._bus.publish(link)

    def cancel(self, cmd: CancelOrder) -> None:
        """Ask the venue to cancel an open order (a closed one is left alone, with a log line).

        Raises
        ------
        OrderError
            If the client order id is unknown.
        """
        order = self._om.order(cmd.client_order_id)
        if not order.is_open:
            logger.info("cancel of {} ignored: order is {}", order.client_order_id, order.status)
            return
        if self._journal is not None:
            self._journal.record_command(cmd, order.client_order_id)
        try:
            self._venue.cancel(order)
        except Exception as exc:  # noqa: BLE001 - did the cancel arrive? only a query can tell
            logger.opt(exception=exc).error("order {}: venue.cancel raised", order.client_order_id)
            if order.is_open and order.status is not _S.UNKNOWN:
                self._time_out(order, f"cancel failed: {type(exc).__name__}: {exc}")
            return
        timeouts = self._timeouts
        if timeouts is not None and order.is_open:
            earlier = self._cancel_alerts.pop(order.client_order_id, None)
            if earlier is not None:  # the latest cancel is timed
                self._clock.cancel(earlier)
            alert = self._alert(order, "cancel", timeouts.cancel_ns, self._on_cancel_timeout)
            self._cancel_alerts[order.client_order_id] = alert

    def _cancel_disallowed(self, order: Order, reason: str) -> None:
        """Cancel a working order the risk gate's new trading state no longer allows (journaled as any cancel)."""
        now = self._clock.now_ns()
        self.cancel(CancelOrder(order.strategy_id, order.instrument_id, order.client_order_id, now, now, reason))

    def modify(self, cmd: ModifyOrder) -> None:
        """Check a modification with the risk gate and send it to the venue.

        A modification the gate refuses publishes ``OrderDenied`` with reason ``"modify: ..."``;
        the order itself keeps working unchanged (its state does not move). One of an order that
        no longer works publishes ``OrderModifyRejected``, as the venue does for a modification it
        does not apply.

        Raises
        ------
        OrderError
            If the client order id is unknown.
        """
        order = self._om.order(cmd.client_order_id)
        if not order.is_open:
            logger.info("modify of {} rejected: order is {}", order.client_order_id, order.status)
            now = self._clock.now_ns()
            reason = f"order is {order.status}"
            self._event(OrderModifyRejected(order.strategy_id, order.instrument_id, order.client_order_id, reason, now, now))
            return
        if not self._modify_allowed(order, cmd):
            return
        if self._journal is not None:
            self._journal.record_command(cmd, order.client_order_id)
        self._venue.modify(order, cmd)

    def _modify_allowed(self, order: Order, cmd: ModifyOrder, rated: bool = False) -> bool:
        """Whether the risk gate lets ``cmd`` modify ``order`` now; denied: ``OrderDenied`` ``"modify: ..."`` published.
        ``rated``: checked again as it leaves (:meth:`Venue.bind_modify_check`), the order rate counted it already."""
        qty = order.quantity if cmd.quantity != cmd.quantity else cmd.quantity
        as_submit = SubmitOrder(
            order.strategy_id,
            order.instrument_id,
            order.client_order_id,
            order.side,
            qty - order.filled_qty,
            cmd.ts_event,
            cmd.ts_init,
            order.order_type,
            order.price if cmd.price != cmd.price else cmd.price,
            order.trigger_price if cmd.trigger_price != cmd.trigger_price else cmd.trigger_price,
            order.tif,
            order.post_only,
            order.reduce_only,
        )
        # The order being modified is already counted as open; it does not count twice. Its size
        # limits are on the new quantity, what can still fill is the rest of the checks'.
        # ``rated`` only when set: a gate of a test or an extension may not take it (a first check never needs it).
        extra = {"rated": True} if rated else {}
        reason = self._risk.check(as_submit, self._om.open_count - 1, order_quantity=qty, **extra)
        if reason is None:
            return True
        now = self._clock.now_ns()
        logger.info("modify of {} denied{}: {}", order.client_order_id, " as it leaves" if rated else "", reason)
        self._bus.publish(
            OrderDenied(order.strategy_id, order.instrument_id, order.client_order_id, f"modify: {reason}", now, now)
        )
        return False

    def resolve_unknown(self, client_order_id: str) -> Order:
        """Resolve an UNKNOWN order by querying the venue (see :meth:`reconcile_order`).

        Raises
        ------
        OrderError
            Unknown id, or the order is not UNKNOWN.
        """
        order = self._om.order(client_order_id)
        if order.status is not _S.UNKNOWN:
            raise OrderError(f"order {client_order_id}: resolve_unknown needs UNKNOWN, status is {order.status}")
        return self.reconcile_order(client_order_id)

    def time_out(self, client_order_id: str, reason: str) -> Order:
        """Stop waiting for the venue's word on an open order: it becomes ``UNKNOWN`` (``OrderTimedOut`` with
        ``reason``, journaled) and the venue is queried at once (:meth:`reconcile_order`), as when a request's
        timeout runs out; what it waited for (a cancel's timeout) no longer fires. An ``UNKNOWN`` order is
        queried; a closed one is left as it is. A stopping live daemon's deadline for its cancels uses it
        (:meth:`tradebus.node.live.LiveNode._query_left`).

        Raises
        ------
        OrderError
            If the client order id is unknown.
        """
        order = self._om.order(client_order_id)
        if not order.is_open:
            return order
        alert = self._cancel_alerts.pop(client_order_id, None)
        if alert is not None:
            self._clock.cancel(alert)
        if order.status is _S.UNKNOWN:
            return self.reconcile_order(client_order_id)
        self._time_out(order, reason)
        return order

    def reconcile_order(self, client_order_id: str) -> Order:
        """Query the venue about an open order and apply what it reports.

        Fills the venue reports that were not booked yet are applied (and booked) first, by
        ``trade_id``; then, if the order's state still differs from the venue's (or is
        ``UNKNOWN``), :class:`~tradebus.engine.messages.OrderResolved` moves it to the venue's
        status, even when the missing fills moved it already (a partly filled, then canceled
        order ends CANCELED). A venue that does not know the order is believed only for a
        ``SUBMITTED`` or ``UNKNOWN`` order whose submit request ended more than ``not_found_grace_ns``
        ago (REJECTED then; never while it is on its way, :meth:`Venue.submit_ended_ns`);
        a query that raises or cannot settle an ``UNKNOWN`` order is retried after ``retry_ns``
        (with :class:`OrderTimeouts`) unless an answer was applied in the meantime. Of a closed
        order only missing fills are booked, and the venue's filled quantity a CANCELED or EXPIRED one's close
        did not tell is kept and journaled (a restart does not query it again). A venue whose answer says more filled than the fills it
        lists (its trade history lags, or no longer lists some) publishes an ``OrderAnomaly``
        ``MISSING_FILLS``; the difference is not booked, and the order is queried again
        (:data:`MISSING_FILLS_READS`) until its fills are listed and booked.

        Raises
        ------
        OrderError
            If the client order id is unknown.
        """
        order = self._om.order(client_order_id)
        try:
            report = self._venue.query_order(client_order_id)
        except VenueError as exc:  # no answer yet (a live venue's is on its way): ask again later
            # Once per query: with a retry already set, this is the query still on its way that it waits for.
            level = "DEBUG" if client_order_id in self._retrying else "INFO"
            logger.log(level, "order {}: query not answered now ({}: {})", client_order_id, type(exc).__name__, exc)
            self._retry(order)
            return order
        except Exception as exc:  # noqa: BLE001 - no answer: ask again later
            logger.opt(exception=exc).warning("order {}: venue.query_order raised", client_order_id)
            self._retry(order)
            return order
        retry = self._retrying.pop(client_order_id, None)
        if retry is not None:  # answered: the pending retry has nothing left to ask
            self._clock.cancel(retry)
        if report is None:
            if order.is_open:
                self._not_found(order)
        else:
            self._apply_report(order, report)
        return order

    def _not_found(self, order: Order) -> None:
        status = order.status
        if status is not _S.UNKNOWN and status is not _S.SUBMITTED:
            logger.error("order {}: {} here, but the venue does not know it; left as is", order.client_order_id, status)
            return
        now = self._clock.now_ns()
        timeouts = self._timeouts
        ended = self._venue.submit_ended_ns(order.client_order_id)
        if timeouts is not None and ended is None:
            logger.info("order {}: the venue does not know it, but its submit is still on its way; asking again",
                        order.client_order_id)
            if status is _S.UNKNOWN:
                self._retry(order)
            return
        age = now - max(order.ts_created, ended or 0)
        if timeouts is not None and age < timeouts.not_found_grace_ns:
            if status is _S.UNKNOWN:
                self._retry(order)  # the submit may still be on its way
            return
        reason = f"venue has no such order {age / 1e9:.3f} s after its submit was sent (the submit never arrived)"
        logger.warning("order {}: {} here ({}), and the {}: REJECTED here (never placed, not re-sent)",
                       order.client_order_id, status, _NOT_KNOWN_YET[status], reason)
        self._event(OrderResolved(order.strategy_id, order.instrument_id, order.client_order_id, _S.REJECTED, reason, now, now))

    def _apply_report(self, order: Order, report: OrderStatusReport) -> None:
        # An amend the venue made is of the order its fills fill: applied before them (an order amended up, then
        # filled to the new total, is FILLED, not overfilled); a SUBMITTED order cannot take one until resolved.
        submitted = order.status is _S.SUBMITTED
        if not submitted:
            self._apply_terms(order, report)
        trade_ids = order.trade_ids
        for fill in report.fills:
            if fill.trade_id not in trade_ids:
                self.on_venue_event(fill)
                trade_ids = order.trade_ids
        self._note_venue_filled(order, report.filled_qty)
        if order.client_order_id in self._fills_awaited:
            self._fills_reread(order, report.filled_qty)
        elif self._om.note_missing_fills(order, report.filled_qty, report.ts_event):
            self._await_fills(order, report.filled_qty)
        status = report.status
        if status in (_S.SUBMITTED, _S.ACCEPTED, _S.TRIGGERED) and order.filled_qty:
            status = _S.PARTIALLY_FILLED
        if order.is_open and (order.status is _S.UNKNOWN or order.status != status):
            now = self._clock.now_ns()
            reason = report.reason or "resolved by venue query"
            if order.status is _S.UNKNOWN or order.status is _S.SUBMITTED:
                logger.info("order {}: {} here ({}); the venue answers {} (filled {} of {}): {} here from now on",
                            order.client_order_id, order.status, _NOT_KNOWN_YET[order.status], status,
                            report.filled_qty, order.quantity, status)
            event = OrderResolved(
                order.strategy_id, order.instrument_id, order.client_order_id, status, reason, now, now, report.filled_qty
            )
            self._event(event)
        if submitted:
            self._apply_terms(order, report)

    def _terms_reported(self, event: OrderTermsReported) -> None:
        """The venue's stream told an order's terms (an amend made at the venue): applied as a query's answer's are."""
        order = self._om.get(event.client_order_id)
        if order is None:
            return
        report = OrderStatusReport(event.client_order_id, order.venue_order_id, order.status, math.nan, event.ts_event,
                                   quantity=event.quantity, price=event.price, trigger_price=event.trigger_price)
        self._apply_terms(order, report, "by another client, as the venue's stream says")

    def _apply_terms(self, order: Order, report: OrderStatusReport, how: str = "unheard here") -> None:
        """Take the quantity, price and trigger the venue's answer tells (:func:`venue_terms`) where they differ from
        the open ``order``'s: an amend made at the venue that this process did not make (``how``: heard from the
        venue's stream, or unheard: made while it was down, or while its private stream was). Applied as an amend's
        acknowledgement is (``OrderModified``: the order, the account's holds, journaled, published), with a WARNING
        naming the old and the new terms. Terms the order cannot take (a quantity below what is filled, off the
        instrument's lot or tick grid) are not applied: an ERROR names them, once per order and terms (each later frame
        of the order tells them again), and the order keeps its own."""
        inst = self.instruments.get(order.instrument_id)
        if not order.is_open or order.status is _S.SUBMITTED or inst is None:
            return
        terms = venue_terms(order, report)
        if terms is None:
            return
        qty, price, trigger = terms
        coid = order.client_order_id
        old, new = terms_text(order.quantity, order.price, order.trigger_price), terms_text(qty, price, trigger)
        filled = max(order.filled_qty, report.filled_qty if report.filled_qty == report.filled_qty else 0.0)
        why = f"quantity {qty} is below the {filled} filled" if qty < filled * (1.0 - 1e-9) else inst.validate_order(qty, price)
        if why is None and trigger == trigger:
            why = inst.price_grid_reason(trigger)
        if why is not None:
            if self._terms_refused.get(coid) != terms:  # every later frame of the order tells them again
                self._terms_refused[coid] = terms
                logger.error("order {} ({}): the venue's answer has it at {}, {} here; not applied: {}",
                             coid, order.instrument_id, new, old, why)
            return
        self._terms_refused.pop(coid, None)
        logger.warning("order {} ({}): amended at the venue {}: {} here, {} at the venue; taken as the venue's",
                       coid, order.instrument_id, how, old, new)
        now = self._clock.now_ns()
        self.on_venue_event(OrderModified(order.strategy_id, order.instrument_id, coid, qty, price, trigger, now, now))

    def _note_venue_filled(self, order: Order, venue_filled: float) -> bool:
        """Keep and journal the venue's filled quantity of a CANCELED or EXPIRED order whose close did not tell it.

        Journaled as an :class:`OrderResolved` repeating the order's status (not published: the order
        did not change), so that a restart does not query the order again for it.
        """
        if not self._om.note_venue_filled(order, venue_filled):
            return False
        if self._journal is not None:
            now = self._clock.now_ns()
            self._journal.record_event(OrderResolved(order.strategy_id, order.instrument_id, order.client_order_id,
                                                     order.status, "venue's filled quantity, told after the close", now,
                                                     now, venue_filled))  # fmt: skip
        return True

    def _fills_reread(self, order: Order, venue_filled: float) -> None:
        """A query's answer about an order whose venue-listed fills fell short (:data:`MISSING_FILLS_READS`)."""
        coid = order.client_order_id
        if not venue_filled > order.filled_qty * (1.0 + 1e-9):
            del self._fills_awaited[coid]
            logger.info("order {} ({}): the venue lists its fills now, {:g} booked as it says filled; missing_fills resolved",
                        coid, order.instrument_id, order.filled_qty)
            if self.on_fills_listed is not None:
                self.on_fills_listed(order)
        elif coid not in self._reread_due:
            self._await_fills(order, venue_filled)

    def _await_fills(self, order: Order, venue_filled: float) -> None:
        """Query ``order`` again, ``retry_ns`` doubled at each read, while the venue lists fewer fills than it says filled."""
        timeouts = self._timeouts
        if timeouts is None:
            return  # the simulated venue lists every fill at once
        coid = order.client_order_id
        reads = self._fills_awaited.get(coid, 0)
        if reads >= MISSING_FILLS_READS:
            del self._fills_awaited[coid]
            logger.error(
                "order {} ({}): the venue says {:g} filled but still lists fills for {:g} after {} reads: {:g} not booked; "
                "its instrument stays held until the holding here equals the venue's",
                coid, order.instrument_id, venue_filled, order.filled_qty, reads, venue_filled - order.filled_qty,
            )  # fmt: skip
            return
        self._fills_awaited[coid] = reads + 1
        self._reread_due.add(coid)
        delay = timeouts.retry_ns << reads
        logger.warning("order {}: the venue lists fills for {:g} of the {:g} it says filled; reading them again in {:g} s "
                       "({} of {})", coid, order.filled_qty, venue_filled, delay / 1e9, reads + 1, MISSING_FILLS_READS)
        self._alert(order, "fills-reread", delay, self._on_fills_reread)

    def _on_fills_reread(self, order: Order) -> None:
        coid = order.client_order_id
        self._reread_due.discard(coid)
        if coid in self._fills_awaited and self._om.get(coid) is order:
            self.reconcile_order(coid)

    # ------------------------------------------------------------------ timeouts

    def _time_out(self, order: Order, reason: str) -> None:
        """Move an open order to UNKNOWN and query the venue about it at once."""
        now = self._clock.now_ns()
        logger.warning("order {}: {}; state UNKNOWN, querying the venue", order.client_order_id, reason)
        self._event(OrderTimedOut(order.strategy_id, order.instrument_id, order.client_order_id, reason, now, now))
        self.reconcile_order(order.client_order_id)

    def _alert(self, order: Order, what: str, delay_ns: int, callback: Any) -> str:
        self._seq += 1
        name = f"order-{what}-{order.client_order_id}-{self._seq}"
        self._clock.set_alert(name, self._clock.now_ns() + delay_ns, lambda _event: callback(order))
        return name

    def _forget(self, client_order_id: str) -> bool:
        """Whether the order manager may forget this released order: not while a query of it is due (a retry,
        a read of its missing fills); the venue drops what it keeps of it (:meth:`Venue.forget`)."""
        if client_order_id in self._retrying or client_order_id in self._fills_awaited:
            return False
        if not self._venue.forget(client_order_id):
            return False
        self._terms_refused.pop(client_order_id, None)
        return True

    def _on_submit_timeout(self, order: Order) -> None:
        if order.status is _S.SUBMITTED:
            self._time_out(order, f"no answer to the submit within {self._timeouts.submit_ns / 1e9:g} s")  # type: ignore[union-attr]

    def _on_cancel_timeout(self, order: Order) -> None:
        coid = order.client_order_id
        self._cancel_alerts.pop(coid, None)
        if not order.is_open or order.status is _S.UNKNOWN:
            return
        cancel_ns = self._timeouts.cancel_ns  # type: ignore[union-attr]
        resent = self._venue.cancel_resent_ns(coid)
        if resent is not None and (wait := resent + cancel_ns - self._clock.now_ns()) > 0:
            self._cancel_alerts[coid] = self._alert(order, "cancel", wait, self._on_cancel_timeout)
            return
        self._time_out(order, f"cancel not confirmed within {cancel_ns / 1e9:g} s")

    def _retry(self, order: Order) -> None:
        timeouts = self._timeouts
        if timeouts is not None and order.client_order_id not in self._retrying:
            self._retrying[order.client_order_id] = self._alert(order, "query", timeouts.retry_ns, self._on_retry)

    def _on_retry(self, order: Order) -> None:
        self._retrying.pop(order.client_order_id, None)  # an answer since it was set canceled it
        self.reconcile_order(order.client_order_id)

    def _check_open(self, event: Any) -> None:
        """Query every open order silent for ``check_ns`` (recovers lost venue events)."""
        horizon = event.ts_event - self._timeouts.check_ns  # type: ignore[union-attr]
        for order in self._om.open_orders():
            if order.ts_last <= horizon:
                self.reconcile_order(order.client_order_id)

    # ---------------------------------------------------------------- venue side

    def on_venue_event(self, event: Any) -> None:
        """Apply a venue event to its order (and the portfolio for a fill) and publish it.

        An event the order manager drops (a repeat, or older than what the order knows) is
        neither journaled nor published (a repeated cancel or expiry that tells the venue's filled
        quantity the first did not: the quantity is kept and journaled, and checked as the first
        close's would have been); a fill of an unknown order goes to
        :meth:`on_external_fill`.
        """
        om = self._om
        journal = self._journal
        if type(event) is OrderFilled:
            if event.strategy_id == LIQUIDATION_STRATEGY and self.on_venue_liquidation is not None:
                self.on_venue_liquidation(event)
                return
            order = om.lookup(event.client_order_id)
            if order is None:
                self.on_external_fill(event)
                return
            if om.apply_fill(order, event) is None:
                return
            if journal is not None:
                journal.record_event(event)
            bus = self._bus
            # The position as this fill left it, built only when something receives it.
            if PositionChanged in bus.wanted or not self._lean:
                change = self._portfolio.apply_fill(event)
            else:
                self._portfolio.book_fill(event)
                change = None
            bus.publish(event)
            if change is not None:
                bus.publish(change)
            if event.filled_qty > order.filled_qty * (1.0 + 1e-9):
                self._fills_missing(order, event.filled_qty)
        elif type(event) is FundingPaid:
            if self.on_venue_funding is None:
                logger.error("venue funding payment of {} on {} not booked: no margined instrument", event.payment,
                             event.instrument_id)
                return
            self.on_venue_funding(event)
        elif type(event) is OrderFillsReported:
            self._fills_reported(event)
        elif type(event) is OrderTermsReported:
            self._terms_reported(event)
        elif type(event) is OrderCancelRejected:
            self._cancel_refused(event)
        elif type(event) is OrderReplaced:
            # Not an order state (the replaced order's OrderCanceled follows, the replacement's own
            # events are its); not journaled: ContingentOrders journals the links it moves.
            self._bus.publish(event)
        else:
            order = om.apply(event)
            cls = type(event)
            if order is None:
                if cls is OrderCanceled or cls is OrderExpired:
                    self._close_repeated(event)
                return
            if journal is not None:
                journal.record_event(event)
            self._bus.publish(event)
            if cls is OrderCanceled or cls is OrderExpired:
                self._check_closed(order, event.filled_qty)

    def _cancel_refused(self, event: OrderCancelRejected) -> None:
        """Journal and publish a venue's final refusal of a cancel of a working order (the order does not
        change); its cancel is answered, so its timeout no longer moves it to ``UNKNOWN``."""
        order = self._om.get(event.client_order_id)
        if order is None or not order.is_open:
            logger.info("order {}: cancel refused ({}), but the order is closed here; not published",
                        event.client_order_id, event.reason)
            return
        alert = self._cancel_alerts.pop(order.client_order_id, None)
        if alert is not None:
            self._clock.cancel(alert)
        if self._journal is not None:
            self._journal.record_event(event)
        self._bus.publish(event)

    def _check_closed(self, order: Order, venue_filled: float) -> None:
        """Ask the venue for the fills of a closed order whose booked quantity may fall short.

        ``venue_filled`` is the venue's cumulative quantity from the closing event: more than
        booked means fills are missing; NaN (the venue did not say) is checked when the engine
        has timeouts (a venue whose events can be lost).
        """
        if venue_filled > order.filled_qty * (1.0 + 1e-9) or (venue_filled != venue_filled and self._timeouts):
            self.reconcile_order(order.client_order_id)

    def _close_repeated(self, event: OrderCanceled | OrderExpired) -> None:
        """A close the order manager dropped as a repeat may tell the venue's filled quantity the first did not
        (the venue's own cancel after the one a cancel-replace's answer stood for): kept, journaled, checked."""
        order = self._om.get(event.client_order_id)
        if order is not None and self._note_venue_filled(order, event.filled_qty):
            self._check_closed(order, event.filled_qty)

    def _fills_reported(self, event: OrderFillsReported) -> None:
        """Check, ``fill_grace_ns`` later, an order the venue says filled more of than is booked: its
        fills' frames may only be on their way (a venue without :class:`OrderTimeouts` loses none)."""
        order = self._om.get(event.client_order_id)
        timeouts = self._timeouts
        venue_filled = event.filled_qty
        if order is None or timeouts is None or not venue_filled > order.filled_qty * (1.0 + 1e-9):
            return
        self._alert(order, "fills", timeouts.fill_grace_ns, lambda late: self._on_fills_due(late, venue_filled))

    def _on_fills_due(self, order: Order, venue_filled: float) -> None:
        if venue_filled > order.filled_qty * (1.0 + 1e-9) and self._om.get(order.client_order_id) is order:
            self._fills_missing(order, venue_filled)

    def _fills_missing(self, order: Order, venue_filled: float) -> None:
        """The venue said it filled ``venue_filled`` of ``order``, more than is booked with it: a fill's
        frame was lost; the query books the missing fills (by ``trade_id``)."""
        # Once per query: with a retry set, the query is on its way and this frame is one more it will answer.
        level = "DEBUG" if order.client_order_id in self._retrying else "WARNING"
        logger.log(
            level, "order {}: the venue says {:g} filled, {:g} booked; a fill's frame was lost, querying the venue",
            order.client_order_id, venue_filled, order.filled_qty,
        )  # fmt: skip
        self.reconcile_order(order.client_order_id)

    def on_external_fill(self, fill: OrderFilled) -> None:
        """Book a fill of an order this process never created (once per ``trade_id``).

        The position is real, so it is booked (and journaled, so a restart keeps it), with an
        ``UNKNOWN_ORDER`` anomaly. The hook where live reconciliation reports external orders.
        A fill on an instrument the run does not trade (an order placed by hand on another
        symbol of the account) is the account's, not the run's: logged, not booked.
        """
        if fill.instrument_id not in self.instruments:
            logger.info("order {}: fill {} of {} {} on {}, not an instrument of this run: not booked",
                        fill.client_order_id, fill.trade_id, fill.side.name, fill.last_qty, fill.instrument_id)
            return
        if not self._om.note_external_fill(fill):
            return
        if self._journal is not None:
            self._journal.record_event(fill)
        change = self._portfolio.apply_fill(fill)
        self._bus.publish(fill)
        self._bus.publish(change)

    def book_liquidation(self, fill: OrderFilled) -> PositionChanged:
        """Book the fill that closes a liquidated position (no order of ours; no anomaly either).

        Journaled (a restart keeps the closed position), booked and published with its
        ``PositionChanged``, which is returned.
        """
        if self._journal is not None:
            self._journal.record_event(fill)
        change = self._portfolio.apply_fill(fill)
        self._bus.publish(fill)
        self._bus.publish(change)
        return change

    def _event(self, event: Any) -> None:
        if self._om.apply(event) is None:
            return
        if self._journal is not None:
            self._journal.record_event(event)
        self._bus.publish(event)

    # --------------------------------------------------------------- data hooks

    def mark(self, instrument_id: str, price: float) -> None:
        """Mark the portfolio and the risk gate at ``price`` (as after matching a trade at it)."""
        self._portfolio.mark(instrument_id, price)
        self._risk.on_price(instrument_id, price)

    def on_bar(self, bar: Bar) -> None:
        """Match working orders on ``bar``, then mark the portfolio and risk at its close."""
        self._venue.on_bar(bar)
        iid = bar.instrument_id
        self._portfolio.mark(iid, bar.close)
        self._risk.on_price(iid, bar.close)

    def on_trade(self, trade: Trade) -> None:
        """Match working orders on ``trade``, then mark portfolio and risk at its price."""
        self._venue.on_trade(trade)
        iid = trade.instrument_id
        self._portfolio.mark(iid, trade.price)
        self._risk.on_price(iid, trade.price)

    def on_quote(self, quote: Quote) -> None:
        """Match working orders on ``quote``, then mark portfolio and risk at the mid price."""
        self._venue.on_quote(quote)
        mid = 0.5 * (quote.bid_price + quote.ask_price)
        iid = quote.instrument_id
        self._portfolio.mark(iid, mid)
        self._risk.on_price(iid, mid)
