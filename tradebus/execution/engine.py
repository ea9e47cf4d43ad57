"""Execution engine: the path from a strategy's command to the portfolio.

::

    SubmitOrder -> order manager (INITIALIZED) -> risk gate --deny--> OrderDenied
                                                     | pass
                                                     v
                   OrderSubmitted -> [journal] -> venue.submit
    venue events -> order manager -> (fill: portfolio) -> bus (-> PositionChanged)

The kernel calls the data hooks (:meth:`ExecutionEngine.on_bar`, ``on_trade``, ``on_quote``)
*before* strategies see the data: the venue matches working orders, then the portfolio is
marked and the risk gate updates its last price and breakers. A fill is booked in the
portfolio before ``OrderFilled`` is published, so a strategy's ``on_order_filled`` already
sees its new position; ``PositionChanged`` follows the fill.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from loguru import logger

from tradebus.engine.bus import MessageBus
from tradebus.engine.clock import Clock
from tradebus.engine.instrument import Instrument
from tradebus.engine.messages import (
    Bar,
    CancelOrder,
    ModifyOrder,
    OrderDenied,
    OrderFilled,
    OrderStatus,
    OrderSubmitted,
    Quote,
    SubmitOrder,
    Trade,
)
from tradebus.engine.portfolio import Portfolio
from tradebus.execution.orders import Order, OrderManager, OrderResolved
from tradebus.execution.venue import Venue
from tradebus.errors import OrderError
from tradebus.risk.gate import RiskGate

if TYPE_CHECKING:
    from tradebus.execution.journal import Journal

__all__ = ["ExecutionEngine"]


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
    """

    __slots__ = (
        "_bus",
        "_clock",
        "_journal",
        "_om",
        "_portfolio",
        "_risk",
        "_venue",
        "instruments",
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
    ) -> None:
        self._bus = bus
        self._clock = clock
        self.instruments = instruments
        self._risk = risk
        self._om = orders
        self._venue = venue
        self._portfolio = portfolio
        self._journal = journal
        risk.bind_orders(orders)  # working orders count in the position and exposure limits
        venue.bind(self.on_venue_event)

    @property
    def orders(self) -> OrderManager:
        """The order manager."""
        return self._om

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

    def submit(self, cmd: SubmitOrder) -> Order:
        """Check ``cmd`` and send it to the venue, or deny it.

        Returns the order (status DENIED, SUBMITTED, or whatever the venue answered synchronously).
        """
        om = self._om
        order = om.create(cmd)
        journal = self._journal
        if journal is not None:
            journal.record_command(cmd, order.client_order_id)
        now = self._clock.now_ns()
        reason = self._risk.check(cmd, om.open_count)
        if reason is not None:
            logger.info("order {} denied: {}", order.client_order_id, reason)
            self._event(OrderDenied(cmd.strategy_id, cmd.instrument_id, order.client_order_id, reason, now, now))
            return order
        event = OrderSubmitted(cmd.strategy_id, cmd.instrument_id, order.client_order_id, now, now)
        om.apply(event)
        if journal is not None:
            journal.record_event(event)  # journaled before the venue is called
        self._bus.publish(event)
        self._venue.submit(order)
        return order

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
        self._venue.cancel(order)

    def modify(self, cmd: ModifyOrder) -> None:
        """Check a modification with the risk gate and send it to the venue.

        A modification the gate refuses publishes ``OrderDenied`` with reason ``"modify: ..."``;
        the order itself keeps working unchanged (its state does not move).

        Raises
        ------
        OrderError
            If the client order id is unknown.
        """
        order = self._om.order(cmd.client_order_id)
        if not order.is_open:
            logger.info("modify of {} ignored: order is {}", order.client_order_id, order.status)
            return
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
        # The order being modified is already counted as open; it does not count twice.
        reason = self._risk.check(as_submit, self._om.open_count - 1)
        if reason is not None:
            now = self._clock.now_ns()
            logger.info("modify of {} denied: {}", order.client_order_id, reason)
            self._bus.publish(
                OrderDenied(order.strategy_id, order.instrument_id, order.client_order_id, f"modify: {reason}", now, now)
            )
            return
        if self._journal is not None:
            self._journal.record_command(cmd, order.client_order_id)
        self._venue.modify(order, cmd)

    def resolve_unknown(self, client_order_id: str) -> Order:
        """Resolve an UNKNOWN order by querying the venue.

        Fills the venue reports that were not booked yet are applied (and booked) first, then
        the order moves to the venue's status. A venue that does not know the order at all
        means the submit never arrived: the order resolves to REJECTED with that reason.

        Raises
        ------
        OrderError
            Unknown id, or the order is not UNKNOWN.
        """
        order = self._om.order(client_order_id)
        if order.status != OrderStatus.UNKNOWN:
            raise OrderError(f"order {client_order_id}: resolve_unknown needs UNKNOWN, status is {order.status}")
        report = self._venue.query_order(order)
        now = self._clock.now_ns()
        if report is None:
            status, reason = OrderStatus.REJECTED, "venue has no such order (submit never arrived)"
        else:
            for fill in report.fills:
                if fill.trade_id not in order.trade_ids:
                    self.on_venue_event(fill)
            if order.status != OrderStatus.UNKNOWN:
                return order
            status, reason = report.status, report.reason or "resolved by venue query"
            if status == OrderStatus.SUBMITTED:
                status = OrderStatus.ACCEPTED
        self._event(OrderResolved(order.strategy_id, order.instrument_id, client_order_id, status, reason, now, now))
        return order

    # ---------------------------------------------------------------- venue side

    def on_venue_event(self, event: Any) -> None:
        """Apply a venue event to its order (and the portfolio for a fill) and publish it."""
        self._om.apply(event)
        journal = self._journal
        if journal is not None:
            journal.record_event(event)
        if type(event) is OrderFilled:
            change = self._portfolio.apply_fill(event)
            bus = self._bus
            bus.publish(event)
            bus.publish(change)
        else:
            self._bus.publish(event)

    def _event(self, event: Any) -> None:
        self._om.apply(event)
        if self._journal is not None:
            self._journal.record_event(event)
        self._bus.publish(event)

    # --------------------------------------------------------------- data hooks

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
