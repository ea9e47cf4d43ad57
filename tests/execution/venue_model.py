"""A model venue for the order-lifecycle tests: the venue's truth, and a lossy wire to the engine.

:class:`ModelVenue` implements the :class:`~tradebus.execution.venue.Venue` interface with the
plainest possible matching: the *test* decides when a request arrives, whether an order is
accepted, when it fills (and by how much), expires or is canceled. Each decision updates the
venue's truth (:attr:`ModelVenue.truth`) and puts the event the venue would send on the wire
(:attr:`ModelVenue.wire`); the test then delivers wire events to the engine in any order, twice,
or never. :meth:`ModelVenue.query_order` answers from the truth, as an exchange's REST query
does. The truth is the oracle: the code under test never writes to it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from tradebus.engine.bus import MessageBus
from tradebus.engine.clock import SimulatedClock
from tradebus.engine.instrument import Instrument
from tradebus.engine.messages import (
    Liquidity,
    ModifyOrder,
    OrderAccepted,
    OrderAnomaly,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderSide,
    OrderStatus,
    OrderType,
    SubmitOrder,
)
from tradebus.engine.portfolio import Portfolio
from tradebus.errors import VenueError
from tradebus.execution.engine import ExecutionEngine, OrderTimeouts
from tradebus.execution.journal import Journal
from tradebus.execution.orders import Order, OrderManager
from tradebus.execution.venue import OrderStatusReport, Venue
from tradebus.risk.config import RiskConfig
from tradebus.risk.gate import RiskGate

IID = "BTCUSDT.BINANCE"
S = OrderStatus
WORKING = frozenset({S.ACCEPTED, S.PARTIALLY_FILLED})


@dataclass
class VenueOrder:
    """The venue's truth about one order."""

    coid: str
    strategy_id: str
    side: OrderSide
    quantity: float
    venue_order_id: str
    status: OrderStatus = S.ACCEPTED
    fills: list[OrderFilled] = field(default_factory=list)
    ts_event: int = 0
    price: float = math.nan

    @property
    def filled(self) -> float:
        return sum(f.last_qty for f in self.fills)


class ModelVenue(Venue):
    """Venue truth + a wire of undelivered events (see the module docstring).

    Parameters
    ----------
    clock
        The run's clock (event and arrival times).
    grace_ns
        A submit arriving this long or more after it was sent is discarded, as a venue's
        request window (Binance ``recvWindow``) does; must equal the engine's
        ``not_found_grace_ns``.
    """

    def __init__(self, clock: SimulatedClock, grace_ns: int = 2**62) -> None:
        super().__init__()
        self.clock = clock
        self.grace_ns = grace_ns
        self.truth: dict[str, VenueOrder] = {}
        #: Submits on their way: ``coid -> (order, sent at)``.
        self.submits: dict[str, tuple[Order, int]] = {}
        #: Cancels on their way (client order ids).
        self.cancels: list[str] = []
        #: Events the venue sent that the engine has not been handed yet.
        self.wire: list[Any] = []
        #: ``"before"``: the next submit raises without reaching the venue; ``"after"``: it
        #: reaches the venue, then raises (a connection cut before the answer).
        self.fail_next_submit: str | None = None
        self.fail_next_cancel = False
        self.fail_queries = False
        self.queries = 0
        #: Trade ids the engine was handed: delivered on the wire, or listed in a query's answer.
        self.told: set[str] = set()
        #: Every fill the venue made, of this process's orders and of external ones.
        self.fills: list[OrderFilled] = []
        self._trade = 0
        self._vid = 0

    # ----------------------------------------------------------- Venue interface

    def submit(self, order: Order) -> None:
        fail, self.fail_next_submit = self.fail_next_submit, None
        if fail != "before":
            self.submits[order.client_order_id] = (order, self.clock.now_ns())
        if fail == "after":
            self.arrive(order.client_order_id)
            self.wire.pop()  # the acknowledgement is lost with the connection
        if fail is not None:
            raise VenueError(f"model venue: connection reset while sending {order.client_order_id}")

    def cancel(self, order: Order) -> None:
        self.cancels.append(order.client_order_id)
        if self.fail_next_cancel:
            self.fail_next_cancel = False
            raise VenueError(f"model venue: connection reset while canceling {order.client_order_id}")

    def modify(self, order: Order, cmd: ModifyOrder) -> None:
        raise VenueError("model venue: modify not modelled")

    def query_order(self, client_order_id: str) -> OrderStatusReport | None:
        self.queries += 1
        if self.fail_queries:
            raise VenueError("model venue: query timed out")
        vo = self.truth.get(client_order_id)
        if vo is None:
            return None
        self.told.update(f.trade_id for f in vo.fills)
        return OrderStatusReport(vo.coid, vo.venue_order_id, vo.status, vo.filled, vo.ts_event, tuple(vo.fills),
                                 quantity=vo.quantity, price=vo.price)

    # ---------------------------------------------------------- venue decisions

    def arrive(self, coid: str, accept: bool = True, reason: str = "insufficient balance") -> bool:
        """The submit of ``coid`` reaches the venue; ``False`` if the venue discarded it (too late)."""
        order, sent = self.submits.pop(coid)
        now = self.clock.now_ns()
        if now - sent >= self.grace_ns:
            return False
        self._vid += 1
        vo = VenueOrder(coid, order.strategy_id, order.side, order.quantity, f"V{self._vid}", ts_event=now, price=order.price)
        self.truth[coid] = vo
        if accept:
            self.wire.append(OrderAccepted(order.strategy_id, IID, coid, vo.venue_order_id, now, now))
        else:
            vo.status = S.REJECTED
            self.wire.append(OrderRejected(order.strategy_id, IID, coid, reason, now, now))
        return True

    def fill(self, coid: str, qty: float, px: float = 100.0) -> OrderFilled:
        """Fill a working order by ``qty`` (capped at what it has left)."""
        vo = self.truth[coid]
        assert vo.status in WORKING
        qty = min(qty, vo.quantity - vo.filled)
        now = self.clock.now_ns()
        self._trade += 1
        fill = OrderFilled(
            vo.strategy_id, IID, coid, vo.venue_order_id, f"T{self._trade}", vo.side, qty, px, 0.0,
            Liquidity.TAKER, now, now,
        )
        vo.fills.append(fill)
        self.fills.append(fill)
        vo.status = S.FILLED if vo.filled >= vo.quantity else S.PARTIALLY_FILLED
        vo.ts_event = now
        self.wire.append(fill)
        return fill

    def amend_unheard(self, coid: str, quantity: float | None = None, price: float | None = None) -> None:
        """Amend a working order at the venue (a user on its web page) with nothing on the wire: the engine
        learns it only from a query's answer. The venue checks nothing: its answer says what the test says."""
        vo = self.truth[coid]
        assert vo.status in WORKING
        if quantity is not None:
            vo.quantity = quantity
        if price is not None:
            vo.price = price
        vo.ts_event = self.clock.now_ns()

    def external_fill(self, coid: str, side: OrderSide, qty: float, px: float = 100.0) -> OrderFilled:
        """A fill of an order placed outside this process (its id is unknown to the engine)."""
        now = self.clock.now_ns()
        self._trade += 1
        fill = OrderFilled("", IID, coid, "VX", f"T{self._trade}", side, qty, px, 0.0, Liquidity.TAKER, now, now)
        self.fills.append(fill)
        self.wire.append(fill)
        return fill

    def cancel_arrives(self, index: int = 0, says_filled: bool = True) -> None:
        """A cancel reaches the venue: a working order is canceled, anything else is left alone.

        ``says_filled``: the cancel event carries the order's cumulative filled quantity.
        """
        coid = self.cancels.pop(index)
        vo = self.truth.get(coid)
        if vo is None or vo.status not in WORKING:
            return
        now = self.clock.now_ns()
        vo.status, vo.ts_event = S.CANCELED, now
        filled = vo.filled if says_filled else math.nan
        self.wire.append(OrderCanceled(vo.strategy_id, IID, coid, "canceled by user", now, now, filled))

    def expire(self, coid: str, says_filled: bool = True) -> None:
        vo = self.truth[coid]
        assert vo.status in WORKING
        now = self.clock.now_ns()
        vo.status, vo.ts_event = S.EXPIRED, now
        filled = vo.filled if says_filled else math.nan
        self.wire.append(OrderExpired(vo.strategy_id, IID, coid, "GTD expired", now, now, filled))

    # ------------------------------------------------------------------ the wire

    def deliver(self, index: int = 0, keep: bool = False) -> Any:
        """Hand wire event ``index`` to the engine (``keep``: it will be delivered again)."""
        event = self.wire[index] if keep else self.wire.pop(index)
        if type(event) is OrderFilled:
            self.told.add(event.trade_id)
        self.emit(event)
        return event

    def deliver_all(self) -> None:
        while self.wire:
            self.deliver()


@dataclass
class Rig:
    """An execution engine wired to a :class:`ModelVenue`, recording what the bus publishes."""

    clock: SimulatedClock
    venue: ModelVenue
    orders: OrderManager
    portfolio: Portfolio
    engine: ExecutionEngine
    published: list[Any]
    n: int = 0

    def submit(self, qty: float = 1.0, side: OrderSide = OrderSide.BUY) -> str:
        self.n += 1
        now = self.clock.now_ns()
        coid = f"s{self.n}"
        cmd = SubmitOrder("s", IID, coid, side, qty, now, now, OrderType.LIMIT, 100.0)
        self.engine.submit(cmd)
        return coid

    def anomalies(self, kind: str | None = None) -> list[OrderAnomaly]:
        return [e for e in self.published if type(e) is OrderAnomaly and (kind is None or e.kind == kind)]

    def booked(self) -> list[OrderFilled]:
        return [e for e in self.published if type(e) is OrderFilled]

    def position(self) -> float:
        return self.portfolio.position(IID)

    def status(self, coid: str) -> OrderStatus:
        return self.orders.order(coid).status


def build_rig(timeouts: OrderTimeouts | None = None, journal: Journal | None = None) -> Rig:
    inst = Instrument("BINANCE", "BTCUSDT", tick_size=0.01, lot_size=0.001, margin=True)
    instruments = {IID: inst}
    bus = MessageBus()
    clock = SimulatedClock(1_000)
    portfolio = Portfolio(instruments, 1e12)
    gate = RiskGate(RiskConfig(), portfolio, clock, bus)
    om = OrderManager(bus, clock)
    grace = timeouts.not_found_grace_ns if timeouts is not None else 2**62
    venue = ModelVenue(clock, grace)
    extra = {} if timeouts is None else {"timeouts": timeouts}
    engine = ExecutionEngine(bus, clock, instruments, gate, om, venue, portfolio, journal, **extra)
    published: list[Any] = []
    for t in (OrderFilled, OrderAnomaly, OrderAccepted, OrderCanceled, OrderExpired, OrderRejected):
        bus.subscribe(t, published.append)
    return Rig(clock, venue, om, portfolio, engine, published)
