"""Orders and the order manager: the order state machine.

Every change of an order's state is caused by an event (``OrderSubmitted``,
``OrderAccepted``, ``OrderFilled``, ...) applied through :meth:`OrderManager.apply`.
The allowed transitions are the explicit table :data:`TRANSITIONS`, keyed by
``(status, event kind)``; anything else raises :class:`~tradebus.errors.InvalidTransition`
naming the order, its state and the event.

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

``UNKNOWN`` is entered when a submit or a cancel timed out (:class:`OrderTimedOut`): the
order may or may not be at the venue. It is *never* treated as rejected; it is resolved
by querying the venue (``Venue.query_order``) and applying what the venue reports
(missing fills, then :class:`OrderResolved` or a regular event).
"""

from __future__ import annotations

import math
from typing import Any

import msgspec

from tradebus.engine.bus import MessageBus
from tradebus.engine.clock import Clock
from tradebus.engine.messages import (
    OrderAccepted,
    OrderCanceled,
    OrderDenied,
    OrderExpired,
    OrderFilled,
    OrderModified,
    OrderRejected,
    OrderSide,
    OrderStatus,
    OrderSubmitted,
    OrderTriggered,
    OrderType,
    SubmitOrder,
    TimeInForce,
)
from tradebus.errors import InvalidTransition, OrderError
from tradebus.execution.client_ids import ClientOrderIds

__all__ = [
    "OPEN_STATUSES",
    "TERMINAL_STATUSES",
    "TRANSITIONS",
    "Order",
    "OrderManager",
    "OrderResolved",
    "OrderTimedOut",
]


class OrderTimedOut(msgspec.Struct, frozen=True, gc=False):
    """A submit or cancel got no answer in time: the order's state at the venue is unknown."""

    strategy_id: str
    instrument_id: str
    client_order_id: str
    reason: str
    ts_event: int
    ts_init: int


class OrderResolved(msgspec.Struct, frozen=True, gc=False):
    """The venue was queried about an ``UNKNOWN`` order and reported ``status``."""

    strategy_id: str
    instrument_id: str
    client_order_id: str
    status: OrderStatus
    reason: str
    ts_event: int
    ts_init: int


S = OrderStatus

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
    (S.UNKNOWN, "resolved"): S.UNKNOWN,  # placeholder: the target is the event's status
}

#: Statuses an ``OrderResolved`` may move an UNKNOWN order to.
_RESOLVABLE = frozenset(
    {S.ACCEPTED, S.TRIGGERED, S.PARTIALLY_FILLED, S.FILLED, S.CANCELED, S.REJECTED, S.EXPIRED}
)

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

# Quantities are float64: a remaining quantity below this fraction of the order is float noise.
_QTY_RTOL = 1e-9
_INF = math.inf
# An order's trade ids are kept in a tuple up to this many fills (linear lookups), then in a set.
_TUPLE_TRADE_IDS = 16


class Order:
    """The order manager's record of one order (mutable; changed only by the order manager).

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
        Fees of the applied fills, and their trade ids (a tuple, or a set once there are many).
    venue_order_id
        The venue's id once accepted (``""`` before).
    ts_created, ts_last
        When the order was created, and the ``ts_event`` of the last applied event.
    reason
        Reason of the last denial, rejection, cancel, expiry or timeout (``""`` otherwise).
    """

    __slots__ = (
        "avg_px",
        "client_order_id",
        "fee_paid",
        "filled_qty",
        "instrument_id",
        "order_type",
        "post_only",
        "price",
        "quantity",
        "reason",
        "reduce_only",
        "side",
        "status",
        "strategy_id",
        "tif",
        "trade_ids",
        "trigger_price",
        "ts_created",
        "ts_last",
        "venue_order_id",
    )

    def __init__(
        self,
        client_order_id: str,
        strategy_id: str,
        instrument_id: str,
        side: OrderSide,
        order_type: OrderType,
        quantity: float,
        price: float = math.nan,
        trigger_price: float = math.nan,
        tif: TimeInForce = TimeInForce.GTC,
        post_only: bool = False,
        reduce_only: bool = False,
        ts_created: int = 0,
    ) -> None:
        self.client_order_id = client_order_id
        self.strategy_id = strategy_id
        self.instrument_id = instrument_id
        self.side = side
        self.order_type = order_type
        self.quantity = quantity
        self.price = price
        self.trigger_price = trigger_price
        self.tif = tif
        self.post_only = post_only
        self.reduce_only = reduce_only
        self.status = OrderStatus.INITIALIZED
        self.filled_qty = 0.0
        self.avg_px = math.nan
        self.fee_paid = 0.0
        self.venue_order_id = ""
        self.ts_created = ts_created
        self.ts_last = ts_created
        self.reason = ""
        # A tuple while the order has few fills (a set costs 216 bytes per order), a set beyond.
        self.trade_ids: tuple[str, ...] | set[str] = ()

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
        return {name: getattr(self, name) for name in self.__slots__ if name != "trade_ids"} | {
            "trade_ids": sorted(self.trade_ids)
        }

    def __repr__(self) -> str:
        return (
            f"Order({self.client_order_id} {self.instrument_id} {self.side.name} {self.order_type} "
            f"qty={self.quantity} px={self.price} trg={self.trigger_price} {self.status} "
            f"filled={self.filled_qty})"
        )


class OrderManager:
    """Keeps every order of a run and moves it through the state machine.

    Parameters
    ----------
    bus
        Where :meth:`process` publishes the events it applies.
    clock
        Source of ``ts_created`` for new orders.
    client_ids
        Issues the client order ids (:mod:`tradebus.execution.client_ids`); a backtest's
        deterministic ids when omitted.

    Notes
    -----
    :meth:`apply` mutates state only after the whole event was checked (transition, overfill,
    duplicate trade id), so a rejected event never leaves an order half-updated.
    """

    __slots__ = ("_bus", "_clock", "_open", "_orders", "client_ids")

    def __init__(self, bus: MessageBus, clock: Clock, client_ids: ClientOrderIds | None = None) -> None:
        self._bus = bus
        self._clock = clock
        self._orders: dict[str, Order] = {}
        self._open: dict[str, Order] = {}
        self.client_ids = client_ids if client_ids is not None else ClientOrderIds()

    # ----------------------------------------------------------------- creation

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
        orders = self._orders
        if coid in orders:
            raise OrderError(f"order {coid}: client_order_id already used in this run")
        order = orders[coid] = Order(
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
            self._clock.now_ns(),
        )
        return order

    def restore(self, order: Order) -> None:
        """Insert an order rebuilt elsewhere (journal replay); the id generator takes note of its id."""
        self._orders[order.client_order_id] = order
        if order.is_open:
            self._open[order.client_order_id] = order
        else:
            self._open.pop(order.client_order_id, None)
        self.client_ids.observe(order.client_order_id, order.strategy_id)

    # --------------------------------------------------------------- transitions

    def apply(self, event: Any) -> Order:
        """Apply an order event to its order and return the order.

        Raises
        ------
        OrderError
            Unknown client order id or event type, an overfill, or a duplicate trade id.
        InvalidTransition
            The event is not allowed in the order's current state.
        """
        order = self._orders.get(event.client_order_id)
        if order is None:
            raise OrderError(f"{type(event).__name__}: unknown client_order_id {event.client_order_id!r}")
        cls = type(event)
        if cls is OrderFilled:
            return self._apply_fill(order, event)
        table = _BY_TYPE.get(cls)
        if table is None:
            raise OrderError(f"order {order.client_order_id}: {cls.__name__} is not an order event")
        target = table.get(order.status)
        if target is None:
            raise self._invalid(order, _EVENT_KIND[cls], event)
        if cls is OrderSubmitted or cls is OrderTriggered:
            pass
        elif cls is OrderAccepted:
            order.venue_order_id = event.venue_order_id
        elif cls is OrderModified:
            if event.quantity < order.filled_qty * (1.0 + _QTY_RTOL):
                raise OrderError(
                    f"order {order.client_order_id}: modified quantity {event.quantity} is not above "
                    f"the filled quantity {order.filled_qty}"
                )
            order.quantity = event.quantity
            order.price = event.price
            order.trigger_price = event.trigger_price
        elif cls is OrderResolved:
            if event.status not in _RESOLVABLE:
                raise InvalidTransition(f"order {order.client_order_id}: cannot resolve UNKNOWN to {event.status}")
            target = event.status
            order.reason = event.reason
        else:
            order.reason = event.reason
        order.status = target
        order.ts_last = event.ts_event
        if target in OPEN_STATUSES:
            self._open[order.client_order_id] = order
        else:
            self._open.pop(order.client_order_id, None)
        return order

    def _apply_fill(self, order: Order, fill: OrderFilled) -> Order:
        qty = fill.last_qty
        px = fill.last_px
        trade_id = fill.trade_id
        trade_ids = order.trade_ids
        prev = order.filled_qty
        total = prev + qty
        quantity = order.quantity
        if (
            not (qty > 0.0 and qty < _INF and px > 0.0 and px < _INF)
            or trade_id in trade_ids
            or total > quantity * (1.0 + _QTY_RTOL)
        ):
            raise self._bad_fill(order, fill)
        done = total >= quantity * (1.0 - _QTY_RTOL)
        target = (_ON_FILLED if done else _ON_PARTIAL).get(order.status)
        if target is None:
            raise self._invalid(order, "filled" if done else "partially_filled", fill)
        order.avg_px = px if prev == 0.0 else (order.avg_px * prev + px * qty) / total
        order.filled_qty = total
        order.fee_paid += fill.fee
        if len(trade_ids) < _TUPLE_TRADE_IDS:
            order.trade_ids = (*trade_ids, trade_id)
        elif type(trade_ids) is tuple:
            order.trade_ids = {*trade_ids, trade_id}
        else:
            trade_ids.add(trade_id)
        if fill.venue_order_id and not order.venue_order_id:
            order.venue_order_id = fill.venue_order_id
        order.status = target
        order.ts_last = fill.ts_event
        if target in OPEN_STATUSES:
            self._open[order.client_order_id] = order
        else:
            self._open.pop(order.client_order_id, None)
        return order

    @staticmethod
    def _bad_fill(order: Order, fill: OrderFilled) -> OrderError:
        """The error of a fill :meth:`_apply_fill` refuses (checks in this order)."""
        coid = order.client_order_id
        qty = fill.last_qty
        if not (qty > 0.0 and qty < _INF):
            return OrderError(f"order {coid}: fill quantity {qty!r} must be > 0")
        if not (fill.last_px > 0.0 and fill.last_px < _INF):
            return OrderError(f"order {coid}: fill price {fill.last_px!r} must be > 0")
        if fill.trade_id in order.trade_ids:
            return OrderError(f"order {coid}: duplicate fill, trade_id {fill.trade_id!r}")
        return OrderError(
            f"order {coid}: overfill: filled {order.filled_qty} + {qty} > quantity {order.quantity}"
        )

    @staticmethod
    def _invalid(order: Order, kind: str, event: Any) -> InvalidTransition:
        return InvalidTransition(
            f"order {order.client_order_id}: invalid transition from {order.status} on {kind} "
            f"({type(event).__name__})"
        )

    def process(self, event: Any) -> Order:
        """:meth:`apply` the event, then publish it on the bus."""
        order = self.apply(event)
        self._bus.publish(event)
        return order

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

    @property
    def open_count(self) -> int:
        """Number of open orders (cheap; used by the risk gate)."""
        return len(self._open)

    def orders(self) -> list[Order]:
        """Every order of the run, in creation order."""
        return list(self._orders.values())
