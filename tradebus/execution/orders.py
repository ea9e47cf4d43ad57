"""Orders and the order manager: the order state machine.

Every change of an order's state is caused by an event (``OrderSubmitted``,
``OrderAccepted``, ``OrderFilled``, ...) applied through :meth:`OrderManager.apply`.
The regular transitions are the explicit table :data:`TRANSITIONS`, keyed by
``(status, event kind)``.

State machine::

    INITIALIZED ──denied──▶ DENIED
         │ submitted
         ▼
     SUBMITTED ──rejected──▶ REJECTED
         │ accepted                 ╲ timed_out ▶ UNKNOWN ──resolved/accepted/fill/...──▶ (venue's state)
         ▼
     ACCEPTED ──triggered──▶ TRIGGERED
         │ fill (partial)            │
         ▼                           ▼
     PARTIALLY_FILLED ──fill──▶ FILLED
     (any working state) ──canceled──▶ CANCELED, ──expired──▶ EXPIRED

``UNKNOWN`` is entered when a submit or a cancel timed out or failed (:class:`OrderTimedOut`):
the order may or may not be at the venue. It is *never* treated as rejected; it is resolved
by querying the venue (``Venue.query_order``) and applying what the venue reports (missing
fills, then :class:`OrderResolved`).

Races of real venues
--------------------
A venue's events may arrive late, twice, out of order, or for an id this process never
created. None of these raises, and no fill is lost or booked twice:

* a fill is deduplicated by its venue ``trade_id`` (per order); a repeat is dropped with an
  :class:`~tradebus.engine.messages.OrderAnomaly` ``DUPLICATE_FILL``;
* any other fill is applied, whatever the order's state: after a cancel or expiry, or after a
  query closed the order FILLED before the venue listed all its fills (``FILL_AFTER_CLOSE``; the
  order stays closed unless the fill completes it), beyond the
  order's quantity (``OVERFILL``; the order is FILLED), on an order believed REJECTED
  (``REOPENED``; it was alive at the venue after all);
* a status event the table has no entry for is older than what the order already knows
  (an acknowledgement after a fill, a cancel after the order filled) or repeats it; it is
  dropped (``STALE_EVENT``, ``DUPLICATE_EVENT``), except on a REJECTED order, which it reopens;
  a repeated cancel or expiry that tells the venue's filled quantity the first did not is dropped
  too, and the execution engine keeps the quantity (:meth:`OrderManager.note_venue_filled`);
  the one repeat of a close told by two sources (a cancel-replace's answer, then the venue's
  stream: :meth:`OrderManager.expect_repeat`) is dropped without an anomaly (logged at DEBUG);
* an amend's ``OrderModified`` arriving after the fills that reached its new quantity (the
  venue amended, then filled the rest, and its stream was faster than the amend's answer)
  leaves the order FILLED at that quantity;
* an event for an unknown client order id changes no order (``UNKNOWN_ORDER``); the execution
  engine still books such a fill (the position is real), once per ``trade_id``.

A dropped event returns ``None`` from :meth:`OrderManager.apply`; the caller neither journals
nor publishes it. Anomalies are published on the bus as they are found.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping
from itertools import islice
from typing import Any

import msgspec
from loguru import logger

from tradebus.account.base import UNTRACK_AT, WorkingLeaves
from tradebus.engine.bus import MessageBus
from tradebus.engine.clock import Clock
from tradebus.engine.messages import (
    AnomalyKind,
    OrderAccepted,
    OrderAnomaly,
    OrderCancelRejected,
    OrderCanceled,
    OrderDenied,
    OrderExpired,
    OrderFilled,
    OrderModified,
    OrderModifyRejected,
    OrderRejected,
    OrderResolved,
    OrderSide,
    OrderStatus,
    OrderSubmitted,
    OrderTimedOut,
    OrderTriggered,
    OrderType,
    SubmitOrder,
    TimeInForce,
)
from tradebus.engine.perpetuals import LIQUIDATION_STRATEGY
from tradebus.dedup import TradeDeduper
from tradebus.errors import InvalidTransition, OrderError
from tradebus.execution.client_ids import ClientOrderIds

__all__ = [
    "ACCOUNT_CLOSES",
    "FLATTEN_STRATEGY",
    "KILL_STRATEGY",
    "OPEN_STATUSES",
    "TERMINAL_STATUSES",
    "TRANSITIONS",
    "Order",
    "OrderManager",
    "OrderResolved",
    "OrderTimedOut",
    "closing_event",
]


S = OrderStatus

#: ``strategy_id`` of the orders an operator's ``/flatten`` sends (:mod:`tradebus.ops.hooks`).
FLATTEN_STRATEGY = "ops"
#: ``strategy_id`` of the kill switch's flattening orders (``live-kill --flatten``, :mod:`tradebus.node.flatten`).
KILL_STRATEGY = "killswitch"
#: ``strategy_id`` of the fills no strategy sent that close the account's position in an instrument, whoever holds it:
#: a liquidation, an operator's ``/flatten``, the kill switch's ``live-kill --flatten``. Each closes the same fraction
#: of every strategy's position (the kernel's :meth:`~tradebus.engine.kernel.Kernel.strategy_position`,
#: ``trades.csv``, ``attribution.csv``).
ACCOUNT_CLOSES = frozenset({LIQUIDATION_STRATEGY, FLATTEN_STRATEGY, KILL_STRATEGY})

#: Statuses in which an order is working (or may be working) at the venue.
OPEN_STATUSES = frozenset({S.SUBMITTED, S.ACCEPTED, S.TRIGGERED, S.PARTIALLY_FILLED, S.UNKNOWN})
#: Statuses no event can leave.
TERMINAL_STATUSES = frozenset({S.DENIED, S.FILLED, S.CANCELED, S.REJECTED, S.EXPIRED})

_WORKING_EXITS = {
    "partially_filled": S.PARTIALLY_FILLED,
    "filled": S.FILLED,
    "canceled": S.CANCELED,
    "expired": S.EXPIRED,
    "timed_out": S.UNKNOWN,
}

#: ``(status, event kind) -> new status``. Event kinds: ``denied``, ``submitted``, ``accepted``,
#: ``rejected``, ``triggered``, ``modified``, ``partially_filled``, ``filled`` (an ``OrderFilled``
#: that completes the order), ``canceled``, ``expired``, ``timed_out``, ``resolved`` (target
#: taken from :class:`OrderResolved`, checked against :data:`_RESOLVABLE`).
TRANSITIONS: dict[tuple[OrderStatus, str], OrderStatus] = {
    (S.INITIALIZED, "denied"): S.DENIED,
    (S.INITIALIZED, "submitted"): S.SUBMITTED,
    # A venue may report fills or a cancel before (or instead of) its acknowledgement.
    (S.SUBMITTED, "accepted"): S.ACCEPTED,
    (S.SUBMITTED, "rejected"): S.REJECTED,
    **{(S.SUBMITTED, kind): target for kind, target in _WORKING_EXITS.items()},
    (S.ACCEPTED, "triggered"): S.TRIGGERED,
    (S.ACCEPTED, "modified"): S.ACCEPTED,
    **{(S.ACCEPTED, kind): target for kind, target in _WORKING_EXITS.items()},
    (S.TRIGGERED, "modified"): S.TRIGGERED,
    **{(S.TRIGGERED, kind): target for kind, target in _WORKING_EXITS.items()},
    (S.PARTIALLY_FILLED, "modified"): S.PARTIALLY_FILLED,
    **{(S.PARTIALLY_FILLED, kind): target for kind, target in _WORKING_EXITS.items()},
    (S.UNKNOWN, "accepted"): S.ACCEPTED,
    (S.UNKNOWN, "rejected"): S.REJECTED,
    (S.UNKNOWN, "triggered"): S.TRIGGERED,
    (S.UNKNOWN, "partially_filled"): S.PARTIALLY_FILLED,
    (S.UNKNOWN, "filled"): S.FILLED,
    (S.UNKNOWN, "canceled"): S.CANCELED,
    (S.UNKNOWN, "expired"): S.EXPIRED,
    (S.UNKNOWN, "modified"): S.UNKNOWN,
    # ``resolved``: the target is the event's status (a query's answer may move any open order).
    **{(status, "resolved"): S.UNKNOWN for status in (S.SUBMITTED, S.ACCEPTED, S.TRIGGERED, S.PARTIALLY_FILLED)},
    (S.UNKNOWN, "resolved"): S.UNKNOWN,
}

#: Statuses an ``OrderResolved`` may move an order to (``SUBMITTED``: the venue has the order
#: but has not acknowledged it yet).
_RESOLVABLE = frozenset(
    {S.SUBMITTED, S.ACCEPTED, S.TRIGGERED, S.PARTIALLY_FILLED, S.FILLED, S.CANCELED, S.REJECTED, S.EXPIRED}
)
#: Statuses that claim no fill: an order with fills in one of them is PARTIALLY_FILLED.
_UNFILLED = frozenset({S.SUBMITTED, S.ACCEPTED, S.TRIGGERED})
#: The status a venue status event stands for (``None``: depends on the event).
_MEANS: dict[str, OrderStatus | None] = {
    "accepted": S.ACCEPTED,
    "rejected": S.REJECTED,
    "triggered": S.TRIGGERED,
    "modified": None,
    "canceled": S.CANCELED,
    "expired": S.EXPIRED,
    "timed_out": S.UNKNOWN,
    "resolved": None,
}
#: A REJECTED order (a venue that did not know it, asked too early) seen alive again.
_REOPEN = {"accepted": S.ACCEPTED, "triggered": S.TRIGGERED, "canceled": S.CANCELED, "expired": S.EXPIRED}
#: Closed statuses a late fill leaves as they are (unless it completes the order).
_CLOSED_KEEP = frozenset({S.CANCELED, S.EXPIRED, S.DENIED, S.INITIALIZED})
#: Closes that end an order short of its quantity, whose events may tell the venue's filled quantity or not.
_CLOSED_UNFILLED = frozenset({S.CANCELED, S.EXPIRED})

_EVENT_KIND: dict[type, str] = {
    OrderDenied: "denied",
    OrderSubmitted: "submitted",
    OrderAccepted: "accepted",
    OrderRejected: "rejected",
    OrderTriggered: "triggered",
    OrderModified: "modified",
    OrderCanceled: "canceled",
    OrderExpired: "expired",
    OrderTimedOut: "timed_out",
    OrderResolved: "resolved",
}

#: ``event type -> {status: new status}``: :data:`TRANSITIONS` regrouped for one lookup per event.
_BY_TYPE: dict[type, dict[OrderStatus, OrderStatus]] = {
    cls: {status: target for (status, k), target in TRANSITIONS.items() if k == kind}
    for cls, kind in _EVENT_KIND.items()
}
_ON_FILLED = {status: target for (status, k), target in TRANSITIONS.items() if k == "filled"}
_ON_PARTIAL = {status: target for (status, k), target in TRANSITIONS.items() if k == "partially_filled"}

# Read on every order (an EnumType attribute lookup costs ~60 ns).
_INITIALIZED = S.INITIALIZED
_SUBMITTED = S.SUBMITTED
_ACCEPTED = S.ACCEPTED
# Quantities are float64: a remaining quantity below this fraction of the order is float noise.
_QTY_RTOL = 1e-9
_INF = math.inf
# An order's trade ids are kept in a tuple up to this many fills (linear lookups), then in a set.
_TUPLE_TRADE_IDS = 16


def closing_event(
    event: OrderResolved, filled_qty: float = math.nan
) -> OrderCanceled | OrderExpired | OrderRejected | None:
    """The venue event a query's answer stands for, for those who follow orders by their events.

    An :class:`OrderResolved` that closes an order unfilled (``CANCELED``, ``EXPIRED``,
    ``REJECTED``) stands for the ``OrderCanceled``, ``OrderExpired`` or ``OrderRejected`` the
    private stream did not deliver: a strategy's ``on_order_canceled`` (``_expired``,
    ``_rejected``) hook is called with it. Any other resolution stands for no event (``None``):
    fills the query found were booked as ``OrderFilled`` before it, and an order the venue
    still works goes on with its later events. It is built only for a resolution the order
    manager applied, and a stream event arriving after it repeats the order's state (dropped),
    so each hook is called once.

    Parameters
    ----------
    event
        The resolution, as published.
    filled_qty
        The order's filled quantity when it closed (NaN: not known).
    """
    status = event.status
    sid, iid, coid, reason = event.strategy_id, event.instrument_id, event.client_order_id, event.reason
    if status is S.CANCELED:
        return OrderCanceled(sid, iid, coid, reason, event.ts_event, event.ts_init, filled_qty)
    if status is S.EXPIRED:
        return OrderExpired(sid, iid, coid, reason, event.ts_event, event.ts_init, filled_qty)
    if status is S.REJECTED:
        return OrderRejected(sid, iid, coid, reason, event.ts_event, event.ts_init)
    return None


class Order(msgspec.Struct, gc=False, eq=False):
    """The order manager's record of one order (mutable; changed only by the order manager).

    A struct the cyclic garbage collector does not track (it holds no reference cycle): a
    backtest keeps every order, and each tracked one would be walked by every young-generation
    collection. Two orders are equal only if they are the same object.

    Attributes
    ----------
    client_order_id, strategy_id, instrument_id
        Identity. ``client_order_id`` is unique within a run.
    side, order_type, quantity, price, trigger_price, tif, post_only, reduce_only
        What was asked (``price``/``trigger_price`` NaN when not applicable); a modification
        updates ``quantity``/``price``/``trigger_price``.
    status
        Current :class:`OrderStatus`.
    filled_qty, avg_px
        Cumulative filled quantity and its volume-weighted price (NaN before the first fill).
    fee_paid, trade_ids
        Fees of the applied fills (in the quote currency: see ``OrderManager``'s ``fee_value``), and
        their trade ids (a tuple, or a set once there are many).
    venue_order_id
        The venue's id once accepted (``""`` before).
    ts_created, ts_last
        When the order was created, and the ``ts_event`` of the last applied event
        (``ts_created`` until then: the order manager sets both at creation; an order built
        by hand states its ``ts_last``, 0 by default).
    reason
        Reason of the last denial, rejection, cancel, expiry or timeout (``""`` otherwise).
    fee_in_kind
        The part of the fills' fees the venue took in the base asset, out of the coins bought
        (see ``OrderManager``'s ``fee_in_kind``): a buy moved the position by ``filled_qty`` less it.
    venue_filled_qty
        The venue's cumulative filled quantity as the last ``OrderCanceled``, ``OrderExpired`` or
        ``OrderResolved`` that said it reported it (NaN: none did; told after a close that did not:
        :meth:`OrderManager.note_venue_filled`). Above ``filled_qty``: fills the
        venue made that are not booked (lost frames, or a trade history that lists them late);
        journaled with those events, so a restart queries such an order again.
    expire_ns
        When a good-till-date order ends (``Strategy.submit_gtd``: the order is sent as ``tif`` and expired
        at this time, :mod:`tradebus.execution.contingent`); 0: not good-till-date. ``orders.csv`` then says
        ``GTD`` as its time in force.
    """

    client_order_id: str
    strategy_id: str
    instrument_id: str
    side: OrderSide
    order_type: OrderType
    quantity: float
    price: float = math.nan
    trigger_price: float = math.nan
    tif: TimeInForce = TimeInForce.GTC
    post_only: bool = False
    reduce_only: bool = False
    ts_created: int = 0
    status: OrderStatus = S.INITIALIZED
    filled_qty: float = 0.0
    avg_px: float = math.nan
    fee_paid: float = 0.0
    venue_order_id: str = ""
    ts_last: int = 0
    reason: str = ""
    # A tuple while the order has few fills (a set costs 216 bytes per order), a set beyond.
    trade_ids: tuple[str, ...] | set[str] = ()
    fee_in_kind: float = 0.0
    venue_filled_qty: float = math.nan
    expire_ns: int = 0

    @property
    def type(self) -> OrderType:
        """Alias of :attr:`order_type`."""
        return self.order_type

    @property
    def leaves_qty(self) -> float:
        """Quantity still to fill (0 once the order is closed)."""
        if self.status in TERMINAL_STATUSES:
            return 0.0
        return max(self.quantity - self.filled_qty, 0.0)

    @property
    def is_open(self) -> bool:
        """True while the order is (or may be) working at the venue."""
        return self.status in OPEN_STATUSES

    @property
    def is_closed(self) -> bool:
        """True once no event can change the order any more."""
        return self.status in TERMINAL_STATUSES

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly snapshot (used by the journal and reports)."""
        return {name: getattr(self, name) for name in _ORDER_FIELDS if name != "trade_ids"} | {
            "trade_ids": sorted(self.trade_ids)
        }

    def __repr__(self) -> str:
        return (
            f"Order({self.client_order_id} {self.instrument_id} {self.side.name} {self.order_type} "
            f"qty={self.quantity} px={self.price} trg={self.trigger_price} {self.status} "
            f"filled={self.filled_qty})"
        )


_ORDER_FIELDS = tuple(sorted(Order.__struct_fields__))
# How long a released order stays known at least (:attr:`OrderManager.keep_released_ns`): 5 minutes of the
# clock cover a user stream's reconnect (backoff capped at 10 s), a request's timeout and the engine's query
# retries, and a venue's usual rate-limit pause (a 429's ``Retry-After``); a request still on its way after
# that keeps its order (:attr:`OrderManager.on_forget`), and a venue's event after it is an unknown order's.
_RELEASE_GRACE_NS = 300_000_000_000
# Trade ids of fills booked on no order (or on a forgotten one) kept at most (:attr:`OrderManager.keep_trade_ids`):
# ~230 bytes each (measured), 2.3 MB in all.
_KEEP_TRADE_IDS = 10_000


class OrderManager:
    """Keeps the orders of a run and moves them through the state machine (a daemon forgets released ones: :meth:`release`).

    Parameters
    ----------
    bus
        Where every :class:`~tradebus.engine.messages.OrderAnomaly` goes (the execution engine
        publishes the events it applies).
    clock
        Source of ``ts_created`` for new orders and of anomalies' ``ts_init``.
    client_ids
        Issues the client order ids (:mod:`tradebus.execution.client_ids`); a backtest's
        deterministic ids when omitted.
    fee_value
        A fill's fee in the quote currency, for a fill whose fee the venue charged in another
        asset (``OrderFilled.fee_asset``; the kernel passes
        :meth:`~tradebus.engine.portfolio.Portfolio.fee_value`); the fee as given when omitted.
    fee_in_kind
        The part of a fill's fee charged in its instrument's base asset, out of the coins bought
        (:meth:`~tradebus.engine.portfolio.Portfolio.fee_in_kind`), summed in ``Order.fee_in_kind``;
        none when omitted.

    Notes
    -----
    :meth:`apply` mutates state only after the whole event was checked, so an event it refuses
    (malformed input) never leaves an order half-updated.
    """

    __slots__ = (
        "_bus", "_clock", "_external", "_fee_in_kind", "_fee_value", "_open", "_orders", "_released",
        "_repeats", "_watchers", "_working", "client_ids", "count_open", "created", "keep_released",
        "keep_released_ns", "leaves", "lookup", "on_forget",
    )  # fmt: skip

    def __init__(
        self,
        bus: MessageBus,
        clock: Clock,
        client_ids: ClientOrderIds | None = None,
        fee_value: Callable[[OrderFilled], float] | None = None,
        fee_in_kind: Callable[[OrderFilled], float] | None = None,
    ) -> None:
        self._bus = bus
        self._clock = clock
        self._fee_value = fee_value
        self._fee_in_kind = fee_in_kind
        self._orders: dict[str, Order] = {}
        self._open: dict[str, Order] = {}
        #: :attr:`open_count` as a callable, without a Python frame (the account asks on every order).
        self.count_open: Callable[[], int] = self._open.__len__
        #: :meth:`get` as a callable, without a Python frame (the execution engine asks on every fill).
        self.lookup: Callable[[str], Order | None] = self._orders.get
        # instrument_id -> its orders in _open: has_open() without a walk over every open order
        # (asked for every bar of ten interleaved instruments while one of them has an order).
        self._working: dict[str, int] = {}
        #: The remaining quantity of the open orders per instrument and side, kept as they change (the risk gate's).
        self.leaves = WorkingLeaves(self._open)
        # Called with an order after each change of one that is or was open (:meth:`watch`).
        self._watchers: list[Callable[[Order], None]] = [self.leaves.order_changed]
        self.client_ids = client_ids if client_ids is not None else ClientOrderIds()
        # (client_order_id, trade_id) of the fills of orders this process never created or forgot (release): the
        # latest keep_trade_ids.
        self._external = TradeDeduper(_KEEP_TRADE_IDS)
        #: Orders ever created in this process (journal replay included), forgotten ones too.
        self.created = 0
        #: How many released closed orders stay known (:meth:`release`).
        self.keep_released = 1000
        #: How long (clock ns) a released closed order stays known however many were released since (:meth:`release`;
        #: 5 minutes: a stream's reconnect, a request's timeout and retries, a venue's usual rate-limit pause).
        self.keep_released_ns = _RELEASE_GRACE_NS
        #: Asked before a released order is forgotten (the execution engine's): forgets what others keep of it, or
        #: says ``False`` while a request about it is still on its way (it stays known one more window).
        self.on_forget: Callable[[str], bool] | None = None
        # (client_order_id, clock ns when released), oldest first.
        self._released: deque[tuple[str, int]] = deque()
        # Orders whose close was told by one source and will be repeated by another (expect_repeat).
        self._repeats: set[str] = set()

    # ----------------------------------------------------------------- creation

    def watch(self, callback: Callable[[Order], None]) -> None:
        """Call ``callback(order)`` after each change of an order that is or was open: it opened, filled, was
        modified or closed (an account keeps what the open orders hold this way: :meth:`Account.track
        <tradebus.account.base.Account.track>`), when at least :data:`~tradebus.account.base.UNTRACK_AT` orders are
        open after it: with fewer, a :class:`~tradebus.account.base.KeptTotals` keeps no totals (it dropped them at
        the change that left ``UNTRACK_AT``, the count moving by one order a change)."""
        self._watchers.append(callback)

    def next_client_order_id(self, strategy_id: str) -> str:
        """Next id for ``strategy_id`` (:meth:`ClientOrderIds.next`)."""
        return self.client_ids.next(strategy_id)

    def create(self, cmd: SubmitOrder) -> Order:
        """Register a new INITIALIZED order from a submit command.

        An empty ``cmd.client_order_id`` gets :meth:`next_client_order_id`.

        Raises
        ------
        OrderError
            If the client order id is already used.
        """
        coid = cmd.client_order_id or self.next_client_order_id(cmd.strategy_id)
        # When the strategy decided, as the journal restores it (the clock reads later).
        ts = cmd.ts_init if cmd.ts_init > 0 else self._clock.now_ns()
        # ts_last given here rather than by a __post_init__ (msgspec's callback costs ~0.35 us per order).
        order = Order(
            coid,
            cmd.strategy_id,
            cmd.instrument_id,
            cmd.side,
            cmd.order_type,
            cmd.quantity,
            cmd.price,
            cmd.trigger_price,
            cmd.time_in_force,
            cmd.post_only,
            cmd.reduce_only,
            ts,
            ts_last=ts,
        )
        # one lookup of the run's orders, not a test and then a store (the id was never used: the usual case)
        if self._orders.setdefault(coid, order) is not order:
            raise OrderError(f"order {coid}: client_order_id already used in this run")
        self.created += 1
        return order

    def restore(self, order: Order) -> None:
        """Insert an order rebuilt elsewhere (journal replay); the id generator takes note of its id."""
        self._orders[order.client_order_id] = order
        self._set_open(order, order.is_open)
        self.client_ids.observe(order.client_order_id, order.strategy_id)

    @property
    def keep_trade_ids(self) -> int:
        """How many trade ids of fills booked on no order, or on an order forgotten since (:meth:`release`), stay
        known to book each once (:meth:`note_external_fill`); older ones are forgotten."""
        return self._external.capacity

    @keep_trade_ids.setter
    def keep_trade_ids(self, value: int) -> None:
        self._external.capacity = value

    def set_expiry(self, client_order_id: str, expire_ns: int) -> None:
        """Note that an order is good-till-date, ending at ``expire_ns`` (:attr:`Order.expire_ns`)."""
        self.order(client_order_id).expire_ns = expire_ns

    def release(self, client_order_id: str) -> None:
        """Say that a closed order was written out (run outputs) and journaled: it may be forgotten.

        A released order stays known while it is among the latest :attr:`keep_released` released
        orders or was released less than :attr:`keep_released_ns` ago, so that a late or repeated
        venue event (a fill frame, a cancel's answer, a query's) still finds its order (booked on it,
        deduplicated, flagged); then it is forgotten, unless an event reopened it (it works: kept
        until it closed again) or :attr:`on_forget` says a request about it is still on its way (each
        is asked again one window later). The trade ids of a forgotten order's fills are
        kept with those of unknown orders (:attr:`keep_trade_ids`): a repeat of one of its fills
        (a stream replaying after a reconnect) is a duplicate, not an unknown order's new fill.
        A daemon calls this to keep its memory bounded; a backtest never does (its results list
        every order).
        """
        released = self._released
        now = self._clock.now_ns()
        released.append((client_order_id, now))
        horizon = now - self.keep_released_ns
        kept = []
        while len(released) > self.keep_released and released[0][1] <= horizon:
            coid = released.popleft()[0]
            order = self._orders.get(coid)
            if order is None:
                continue
            if not order.is_closed or (self.on_forget is not None and not self.on_forget(coid)):
                kept.append((coid, now))  # reopened by an event, or asked about: one more window
                continue
            del self._orders[coid]
            self._repeats.discard(coid)
            trade_ids = order.trade_ids
            if trade_ids:  # a set (many fills) in a fixed order: which is forgotten first is the same every run
                self._external.first_seen(tuple((coid, t) for t in (trade_ids if type(trade_ids) is tuple else sorted(trade_ids))))
        released.extend(kept)

    # --------------------------------------------------------------- transitions

    def apply(self, event: Any) -> Order | None:
        """Apply an order event to its order; return the order, or ``None`` if the event was dropped.

        An event is dropped (with an :class:`~tradebus.engine.messages.OrderAnomaly` on the bus)
        when it repeats or predates what the order already knows, or names an unknown client
        order id; see the module docstring. A venue's race never raises.

        Raises
        ------
        OrderError
            A message that is not an order event, a fill of non-positive or non-finite
            quantity or price, or a modification below the filled quantity (malformed input).
        InvalidTransition
            An :class:`OrderResolved` to a status no query can report, or an ``OrderDenied`` /
            ``OrderSubmitted`` (this process's own decisions) in a state they cannot follow.
        """
        order = self._orders.get(event.client_order_id)
        cls = type(event)
        if order is None:
            if cls is OrderFilled:
                self.note_external_fill(event)
            else:
                self._anomaly(None, event, AnomalyKind.UNKNOWN_ORDER, "no order has this client_order_id")
            return None
        if cls is OrderFilled:
            return self.apply_fill(order, event)
        if cls is OrderModifyRejected or cls is OrderCancelRejected:
            return order  # the order works on as it was
        table = _BY_TYPE.get(cls)
        if table is None:
            raise OrderError(f"order {order.client_order_id}: {cls.__name__} is not an order event")
        target = table.get(order.status)
        if target is None:
            target = self._off_table(order, _EVENT_KIND[cls], event)
            if target is None:
                return None
        if cls is OrderSubmitted or cls is OrderTriggered:
            pass
        elif cls is OrderAccepted:
            order.venue_order_id = event.venue_order_id
        elif cls is OrderModified:
            if event.quantity < order.filled_qty * (1.0 + _QTY_RTOL):
                if event.quantity < order.filled_qty * (1.0 - _QTY_RTOL):
                    raise OrderError(
                        f"order {order.client_order_id}: modified quantity {event.quantity} is below "
                        f"the filled quantity {order.filled_qty}"
                    )
                target = S.FILLED  # amended down, then filled to the new quantity before the amend's answer came
            order.quantity = event.quantity
            order.price = event.price
            order.trigger_price = event.trigger_price
        elif cls is OrderResolved:
            if event.status not in _RESOLVABLE:
                raise InvalidTransition(f"order {order.client_order_id}: cannot resolve {order.status} to {event.status}")
            target = event.status
            order.reason = event.reason
            if event.filled_qty == event.filled_qty:
                order.venue_filled_qty = event.filled_qty
        else:
            order.reason = event.reason
            if (cls is OrderCanceled or cls is OrderExpired) and event.filled_qty == event.filled_qty:
                order.venue_filled_qty = event.filled_qty
        if order.filled_qty and target in _UNFILLED:
            target = S.PARTIALLY_FILLED  # e.g. an UNKNOWN order with fills the venue reports working
        order.status = target
        order.ts_last = event.ts_event
        self._set_open(order, target in OPEN_STATUSES)
        return order

    def mark_submitted(self, order: Order, ts: int) -> None:
        """Move a new order to SUBMITTED at ``ts``: :meth:`apply` of its ``OrderSubmitted``, without the event.

        For a submission that nothing journals or receives (a backtest): no event object is built.

        Raises
        ------
        InvalidTransition
            If the order is not INITIALIZED (as :meth:`apply` raises for this process's own decision).
        """
        if order.status is not _INITIALIZED:
            raise InvalidTransition(f"order {order.client_order_id}: invalid transition from {order.status} on submitted")
        order.status = _SUBMITTED
        order.ts_last = ts
        # _set_open(order, True) inline (a call less per order): an INITIALIZED order is not among the open ones.
        self._open[order.client_order_id] = order
        working = self._working
        iid = order.instrument_id
        working[iid] = working.get(iid, 0) + 1
        if len(self._open) >= UNTRACK_AT:
            for watcher in self._watchers:
                watcher(order)

    def mark_accepted(self, order: Order, venue_order_id: str, ts: int) -> bool:
        """Move a SUBMITTED order to ACCEPTED at ``ts``: :meth:`apply` of its ``OrderAccepted``, without the event.

        For an acknowledgement that nothing journals (the caller's to know: the execution engine
        binds this to a venue only without a journal). Returns ``False`` and changes nothing when
        something receives ``OrderAccepted`` or the order is not this manager's SUBMITTED order
        without fills: the caller then emits the event, which handles every race.
        """
        if (
            order.status is not _SUBMITTED
            or order.filled_qty
            or self._orders.get(order.client_order_id) is not order
            or OrderAccepted in self._bus.wanted
        ):
            return False
        order.status = _ACCEPTED
        order.venue_order_id = venue_order_id
        order.ts_last = ts
        return True

    def _off_table(self, order: Order, kind: str, event: Any) -> OrderStatus | None:
        """Target of a status event :data:`TRANSITIONS` has no entry for (``None``: drop it)."""
        status = order.status
        if kind == "denied" or kind == "submitted":  # this process's own decisions: a bug, not a race
            raise InvalidTransition(
                f"order {order.client_order_id}: invalid transition from {status} on {kind} ({type(event).__name__})"
            )
        if status is S.REJECTED and kind in _REOPEN:
            self._anomaly(order, event, AnomalyKind.REOPENED, f"{kind} after REJECTED: the venue has the order")
            return _REOPEN[kind]
        if kind == "accepted" and not order.venue_order_id:
            order.venue_order_id = event.venue_order_id
        means = event.status if kind == "resolved" else _MEANS[kind]
        if kind == "resolved" and means is status and status in _CLOSED_UNFILLED and event.filled_qty == event.filled_qty:
            self.note_venue_filled(order, event.filled_qty)  # journaled by the execution engine: no repeat
            return None
        if means is status and order.client_order_id in self._repeats:
            self._repeats.discard(order.client_order_id)
            logger.debug("order {}: {} repeated in {}, as expected (told by two sources)", order.client_order_id, kind, status)
            return None
        if means is status:
            self._anomaly(order, event, AnomalyKind.DUPLICATE_EVENT, f"{kind} repeated in {status}")
        else:
            self._anomaly(order, event, AnomalyKind.STALE_EVENT, f"{kind} arrived in {status}: ignored")
        return None

    def apply_fill(self, order: Order, fill: OrderFilled) -> Order | None:
        """Apply a fill of ``order`` (see :meth:`apply`); ``None`` if its ``trade_id`` was booked already."""
        qty = fill.last_qty
        px = fill.last_px
        trade_id = fill.trade_id
        trade_ids = order.trade_ids
        if not (qty > 0.0 and qty < _INF and px > 0.0 and px < _INF):
            raise self._bad_fill(order, fill)
        if trade_id in trade_ids:
            self._anomaly(order, fill, AnomalyKind.DUPLICATE_FILL, f"trade_id {trade_id!r} already booked")
            return None
        prev = order.filled_qty
        total = prev + qty
        quantity = order.quantity
        done = total >= quantity * (1.0 - _QTY_RTOL)
        target = (_ON_FILLED if done else _ON_PARTIAL).get(order.status)
        odd = target is None or total > quantity * (1.0 + _QTY_RTOL)
        if odd:
            target = self._odd_fill(order, fill, done, total)
        order.avg_px = px if prev == 0.0 else (order.avg_px * prev + px * qty) / total
        order.filled_qty = total
        if not fill.fee_asset:
            order.fee_paid += fill.fee
        else:
            fee_value, fee_in_kind = self._fee_value, self._fee_in_kind
            order.fee_paid += fill.fee if fee_value is None else fee_value(fill)
            if fee_in_kind is not None:
                order.fee_in_kind += fee_in_kind(fill)
        if type(trade_ids) is not tuple:
            trade_ids.add(trade_id)
        elif len(trade_ids) < _TUPLE_TRADE_IDS:
            order.trade_ids = trade_ids + (trade_id,)  # () + (t,) is (t,) itself; (*a, t) builds a list first
        else:
            order.trade_ids = {*trade_ids, trade_id}
        if fill.venue_order_id and not order.venue_order_id:
            order.venue_order_id = fill.venue_order_id
        order.status = target
        order.ts_last = fill.ts_event
        self._set_open(order, target in OPEN_STATUSES)
        return order

    def _odd_fill(self, order: Order, fill: OrderFilled, done: bool, total: float) -> OrderStatus:
        """Target of a fill the table has no entry for, or an overfill; publishes the anomaly."""
        status = order.status
        if total > order.quantity * (1.0 + _QTY_RTOL):
            kind, target = AnomalyKind.OVERFILL, S.FILLED
            detail = f"filled {order.filled_qty} + {fill.last_qty} > quantity {order.quantity} in {status}"
        elif status in _CLOSED_KEEP:
            kind, target = AnomalyKind.FILL_AFTER_CLOSE, S.FILLED if done else status
            detail = f"fill of {fill.last_qty} after {status}: booked"
        elif status is S.REJECTED:
            kind, target = AnomalyKind.REOPENED, S.FILLED if done else S.PARTIALLY_FILLED
            detail = f"fill of {fill.last_qty} after REJECTED: the venue has the order"
        elif order.filled_qty < order.quantity * (1.0 - _QTY_RTOL):  # a query closed it before its venue listed this fill
            kind, target = AnomalyKind.FILL_AFTER_CLOSE, S.FILLED
            detail = f"fill of {fill.last_qty} after FILLED with {order.filled_qty} booked: booked"
        else:  # FILLED within float tolerance of the quantity
            kind, target = AnomalyKind.OVERFILL, S.FILLED
            detail = f"fill of {fill.last_qty} after FILLED"
        self._anomaly(order, fill, kind, detail)
        return target

    def note_external_fill(self, fill: OrderFilled) -> bool:
        """Record a fill of an order this process never created, or forgot; ``False`` if already recorded (booked).

        Publishes ``UNKNOWN_ORDER`` (new) or ``DUPLICATE_FILL`` (repeat, by ``trade_id``, among the
        latest :attr:`keep_trade_ids` recorded). The caller books a new one: the position is real.
        """
        if self._external.seen((fill.client_order_id, fill.trade_id)):
            self._anomaly(None, fill, AnomalyKind.DUPLICATE_FILL, f"trade_id {fill.trade_id!r} already booked")
            return False
        self._anomaly(None, fill, AnomalyKind.UNKNOWN_ORDER, "fill of an order this process did not create: booked")
        return True

    def note_venue_filled(self, order: Order, venue_filled: float) -> bool:
        """Keep the venue's filled quantity of a CANCELED or EXPIRED ``order`` whose close did not tell it.

        Told after the close: by a query's answer, or by a repeat of the close (the venue's own
        cancel after the one a cancel-replace's answer stood for). Changes nothing else (the status,
        ``ts_last``). Returns whether it was kept: ``False`` when ``venue_filled`` is NaN, the order
        is in another status, or its ``venue_filled_qty`` is known already. The execution engine
        journals a kept one as an :class:`OrderResolved` repeating the order's status, which
        :meth:`apply` takes as this note.
        """
        if venue_filled != venue_filled or order.status not in _CLOSED_UNFILLED or order.venue_filled_qty == order.venue_filled_qty:
            return False
        order.venue_filled_qty = venue_filled
        return True

    def expect_repeat(self, client_order_id: str) -> None:
        """Say that the close just applied to this order will be repeated once by another source.

        A live venue that closed the order from a request's answer (a cancel-replace's) while its
        stream will also report the close. That one repeat is dropped without an anomaly (a later
        one is a ``DUPLICATE_EVENT``); :meth:`apply` still returns ``None`` for it, so the execution
        engine keeps a venue filled quantity it tells (:meth:`note_venue_filled`).
        """
        self._repeats.add(client_order_id)

    def note_missing_fills(self, order: Order, venue_filled: float, ts_event: int) -> bool:
        """Flag a venue that says ``order`` filled ``venue_filled`` while it lists fewer fills than that.

        Publishes ``MISSING_FILLS`` naming the order, the venue's filled quantity and the one
        booked; books nothing (no fill is invented; the execution engine reads the order's
        fills again). Returns whether the venue's quantity is above the booked one (float
        noise aside).
        """
        booked = order.filled_qty
        if not venue_filled > booked * (1.0 + _QTY_RTOL):
            return False
        detail = (
            f"the venue says {venue_filled} filled but lists fills for {booked}: {venue_filled - booked:g} "
            "not booked (its trade history does not list them yet, or no longer)"
        )
        logger.error("order {} ({}): {}: {}", order.client_order_id, order.instrument_id, AnomalyKind.MISSING_FILLS, detail)
        now = self._clock.now_ns()
        self._bus.publish(
            OrderAnomaly(order.strategy_id, order.instrument_id, order.client_order_id, AnomalyKind.MISSING_FILLS,
                         "OrderStatusReport", detail, ts_event, now)
        )
        return True

    def _anomaly(self, order: Order | None, event: Any, kind: AnomalyKind, detail: str) -> None:
        name = type(event).__name__
        coid = event.client_order_id
        logger.warning("order {}: {} ({}): {}", coid, kind, name, detail)
        now = self._clock.now_ns()
        strategy_id = order.strategy_id if order is not None else getattr(event, "strategy_id", "")
        self._bus.publish(
            OrderAnomaly(strategy_id, event.instrument_id, coid, kind, name, detail, event.ts_event, now)
        )

    @staticmethod
    def _bad_fill(order: Order, fill: OrderFilled) -> OrderError:
        """The error of a malformed fill :meth:`apply_fill` refuses."""
        coid = order.client_order_id
        qty = fill.last_qty
        if not (qty > 0.0 and qty < _INF):
            return OrderError(f"order {coid}: fill quantity {qty!r} must be > 0")
        return OrderError(f"order {coid}: fill price {fill.last_px!r} must be > 0")

    # ------------------------------------------------------------------ queries

    def order(self, client_order_id: str) -> Order:
        """The order with this id.

        Raises
        ------
        OrderError
            If no such order exists.
        """
        order = self._orders.get(client_order_id)
        if order is None:
            raise OrderError(f"unknown client_order_id {client_order_id!r}")
        return order

    def get(self, client_order_id: str) -> Order | None:
        """The order with this id, or ``None``."""
        return self._orders.get(client_order_id)

    def open_orders(self, instrument_id: str | None = None) -> list[Order]:
        """Orders still (possibly) working, in creation order; optionally of one instrument."""
        if instrument_id is None:
            return list(self._open.values())
        return [o for o in self._open.values() if o.instrument_id == instrument_id]

    def has_open(self, instrument_id: str) -> bool:
        """Whether an order of ``instrument_id`` is still (possibly) working."""
        return instrument_id in self._working

    @property
    def working_instruments(self) -> Mapping[str, int]:
        """``instrument_id -> number of its (possibly) working orders``, for every such instrument (read-only, live)."""
        return self._working

    def _set_open(self, order: Order, is_open: bool) -> None:
        """Count ``order`` among the open orders or not (and its instrument among the working ones)."""
        coid = order.client_order_id
        working = self._working
        if is_open:
            if coid not in self._open:
                iid = order.instrument_id
                working[iid] = working.get(iid, 0) + 1
            self._open[coid] = order
        else:
            gone = self._open.pop(coid, None)
            if gone is None:
                return  # never open: nothing counted it
            iid = gone.instrument_id
            left = working[iid] - 1
            if left:
                working[iid] = left
            else:
                del working[iid]
        if len(self._open) >= UNTRACK_AT:
            for watcher in self._watchers:
                watcher(order)

    @property
    def open_count(self) -> int:
        """Number of open orders (cheap; used by the risk gate)."""
        return len(self._open)

    def latest(self, n: int) -> list[Order]:
        """The ``n`` orders created last (forgotten ones aside), in creation order."""
        orders = self._orders
        return [orders[coid] for coid in reversed(list(islice(reversed(orders), n)))]

    def orders(self) -> list[Order]:
        """Every order of the run, in creation order."""
        return list(self._orders.values())
