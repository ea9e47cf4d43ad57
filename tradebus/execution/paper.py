"""The simulated venue of a paper daemon (:class:`PaperVenue`)."""

from __future__ import annotations

from collections.abc import Iterable

from tradebus.engine.clock import Clock
from tradebus.engine.instrument import Instrument
from tradebus.engine.messages import OrderStatus
from tradebus.execution.config import VenueConfig
from tradebus.execution.orders import Order
from tradebus.execution.simulated import TRADE_ID_PREFIX, VENUE_ORDER_ID_PREFIX, SimulatedVenue, simulated_id_number
from tradebus.execution.venue import OrderStatusReport

__all__ = ["PaperVenue"]


class PaperVenue(SimulatedVenue):
    """The simulated venue of a paper daemon, able to take over from a stopped process.

    The matching engine lives in the daemon's process, so its working orders end with
    it. :meth:`resume` tells a fresh venue the position the journal recorded (so that
    reduce-only orders are judged against it) and which orders the previous process may
    have been working; :meth:`query_order` answers for those, when the journal's recovery
    resolves them, that the restart canceled them (their journaled fills stay booked).
    It answers for the latest ``keep_closed`` closed orders only (a daemon runs for days;
    its execution engine learns of every close at once, so only a late query looks back).
    Its venue order ids (``SIM-n``) and trade ids (``SIM-Tn``) go on after the highest the
    journaled orders carry, so that they never repeat across restarts.

    On trades and quotes each action arrives by a clock alert at its arrival time, whatever
    the clock: the daemon's wall clock, or the simulated clock of ``tradebus replay`` of its
    recording. So a replay accepts an order, marketable or resting, against the prices known
    when it arrived, as the daemon did, not at the next trade of its instrument. The daemon
    decides on a frame once it has read it, after its receive time, where a replay's clock
    stands: an action arrives 1 ns after the latency so that, in a replay as live, it meets no
    message of the frame it was decided on. The daemon's venue adds that 1 ns too: an action a
    timer decides, at its due time on both clocks, arrives at the same nanosecond in both.
    An order that arrived on a silent market before the daemon stopped is accepted at the
    recording's ``run:stop`` line as it was by the daemon.
    """

    def __init__(
        self,
        clock: Clock,
        instruments: dict[str, Instrument],
        config: VenueConfig | None = None,
        keep_closed: int | None = 1_000,
    ) -> None:
        super().__init__(clock, instruments, config, arrival_alerts=True, keep_closed=keep_closed)
        if self._alerts:
            self._latency += 1
        self._previous: dict[str, Order] = {}

    def resume(
        self, positions: dict[str, float], previous_orders: Iterable[Order], journaled: Iterable[Order] = ()
    ) -> None:
        """Take over the journaled ``positions`` and the orders of the stopped process.

        ``journaled`` are every order the journal brought back: numbering goes on after their ids.
        """
        for iid, qty in positions.items():
            if iid in self._positions:
                self._positions[iid] = qty
        self._previous.update((order.client_order_id, order) for order in previous_orders)
        for order in journaled:
            self._venue_ids = max(self._venue_ids, simulated_id_number(order.venue_order_id, VENUE_ORDER_ID_PREFIX))
            for trade_id in order.trade_ids:
                self._trade_ids = max(self._trade_ids, simulated_id_number(trade_id, TRADE_ID_PREFIX))

    def query_order(self, client_order_id: str) -> OrderStatusReport | None:
        """The venue's view of an order; an order of the stopped process is CANCELED by the restart."""
        report = super().query_order(client_order_id)
        order = self._previous.get(client_order_id)
        if report is None and order is not None:
            return OrderStatusReport(
                client_order_id,
                order.venue_order_id,
                OrderStatus.CANCELED,
                order.filled_qty,
                self.clock.now_ns(),
                (),
                "paper venue restarted: the simulated venue working this order stopped with the previous process",
            )
        return report
