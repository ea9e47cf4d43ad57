"""Execution algorithms across a daemon restart: the ones the stopped process left working end ``interrupted``.

An algorithm (:mod:`tradebus.strategies.algos`) runs in the process's memory: its schedule, its
timer and which orders are its children are lost when a paper or live daemon stops (SIGTERM, a
crash, ``kill -9``). Its start and end are journaled (:class:`~tradebus.engine.messages.AlgoStarted`,
:class:`~tradebus.engine.messages.AlgoEnded`); a daemon restarted on the journal hands every
journaled message to :meth:`AlgoRecovery.note` (the kernel's ``record_journaled``) and, before the
strategies' ``on_start``, calls :meth:`AlgoRecovery.interrupt`. A live daemon does so once its start-up
reconciliation has ended (:class:`~tradebus.node.live.LiveNode`), so that the
children's states and fills are the venue's, a child filled while the daemon was down included; one
stopped before that leaves the algorithms to the next restart (:meth:`AlgoRecovery.postpone`) and does
not start the strategies. Each algorithm started and not ended:

1. its children (the strategy's orders journaled after its start whose
   :attr:`~tradebus.engine.messages.SubmitOrder.parent` is its name; not their reason, which a
   strategy's own orders may word alike) still working are canceled, reason
   ``"<name>: interrupted by restart"``
   (a paper restart has already canceled them with its simulated venue; a live one has them
   at the exchange); a child the live start-up could not settle with the venue (``UNKNOWN``: its
   query unanswered) is canceled once its query tells it is still working (:meth:`AlgoRecovery.on_resolved`);
2. it is journaled ended, status ``interrupted``, with what its children filled (live: what the
   venue reported them filled at the start-up);
3. a warning names it with its parent, filled and remaining quantities;
4. its strategy's :meth:`~tradebus.strategies.base.Strategy.on_algo_interrupted` receives that
   :class:`~tradebus.engine.messages.AlgoEnded`, before its ``on_start``: the strategy decides
   whether to work the rest (a new algorithm of ``event.remaining``) or not.

Nothing of the algorithm is sent again by the restart, so its parent is neither doubled nor lost
in silence. A child's fill that the venue makes after the restart read it (a live child filled
before its cancel arrived) reaches the strategy's ``on_order_filled`` as any fill of its orders;
it is not in the event's ``filled``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from loguru import logger

from tradebus.engine.messages import AlgoEnded, AlgoStarted, CancelOrder, OrderStatus, SubmitOrder

if TYPE_CHECKING:
    from tradebus.execution.orders import OrderManager, OrderResolved
    from tradebus.strategies.base import Strategy

__all__ = ["INTERRUPTED_REASON", "AlgoRecovery"]

#: Why a restart ended an algorithm (the :class:`AlgoEnded` reason, and its children's cancels').
INTERRUPTED_REASON = "interrupted by restart"


class AlgoRecovery:
    """The algorithms a journal holds as started and not ended, and their children (see the module docstring)."""

    def __init__(self) -> None:
        # (strategy id, name) -> (its start, its children's client order ids), in journal order.
        self._open: dict[tuple[str, str], tuple[AlgoStarted, list[str]]] = {}
        # Children UNKNOWN at the restart: canceled once resolved still working.
        self._unsettled: dict[str, str] = {}

    @property
    def pending(self) -> bool:
        """Whether a journaled algorithm waits to be interrupted, or a child of one to be settled."""
        return bool(self._open or self._unsettled)

    def note(self, msg: object) -> None:
        """Take one journaled message (every one, in ``seq`` order; others than algorithms' and submits are ignored)."""
        if isinstance(msg, AlgoStarted):
            self._open[(msg.strategy_id, msg.name)] = (msg, [])
        elif isinstance(msg, AlgoEnded):
            self._open.pop((msg.strategy_id, msg.name), None)
        elif isinstance(msg, SubmitOrder) and msg.parent and self._open:
            entry = self._open.get((msg.strategy_id, msg.parent))
            if entry is not None:
                entry[1].append(msg.client_order_id)

    def postpone(self, why: str) -> None:
        """Leave the journaled algorithms not ended to the next restart (nothing canceled, nothing journaled), saying ``why``."""
        for started, _ in self._open.values():
            logger.warning("{} {}: not interrupted now, left to the next restart: {}", started.strategy_id, started.name, why)
        self._open.clear()

    def interrupt(
        self,
        strategies: Iterable[Strategy],
        orders: OrderManager,
        cancel: Callable[[CancelOrder], None],
        publish: Callable[[AlgoEnded], None],
        now_ns: int,
    ) -> list[AlgoEnded]:
        """End every journaled algorithm not ended: cancel its working children, publish (journal) its end, warn,
        and tell its strategy (``on_algo_interrupted``); return the ends in journal order.

        An algorithm of a strategy the config no longer runs is ended and warned of all the same.
        """
        by_id = {s.strategy_id: s for s in strategies}
        ended: list[AlgoEnded] = []
        for started, children in self._open.values():
            why = f"{started.name}: {INTERRUPTED_REASON}"
            filled = 0.0
            working: list[str] = []
            for cid in children:
                order = orders.get(cid)
                if order is None:
                    continue
                filled += order.filled_qty
                if order.status == OrderStatus.UNKNOWN:
                    self._unsettled[cid] = why
                    working.append(cid)
                elif order.is_open:
                    cancel(CancelOrder(order.strategy_id, order.instrument_id, cid, now_ns, now_ns, why))
                    working.append(cid)
            event = AlgoEnded(
                started.strategy_id, started.instrument_id, started.name, started.kind, started.side,
                started.quantity, "interrupted", filled, now_ns, now_ns, tuple(children), INTERRUPTED_REASON,
            )  # fmt: skip
            publish(event)
            logger.warning(
                "{} {}: {} (started {}): parent {} {} {}, {} filled, {} left unsent{}; the strategy is told "
                "(on_algo_interrupted), nothing of it is sent again",
                started.strategy_id, started.name, INTERRUPTED_REASON, started.kind, started.side.name,
                started.quantity, started.instrument_id, filled, event.remaining,
                f", working children canceled: {', '.join(working)}" if working else "",
            )  # fmt: skip
            ended.append(event)
        self._open.clear()
        for event in ended:
            strategy = by_id.get(event.strategy_id)
            if strategy is not None:
                strategy.on_algo_interrupted(event)
        return ended

    def on_resolved(self, event: OrderResolved, orders: OrderManager, cancel: Callable[[CancelOrder], None]) -> None:
        """Cancel a child left UNKNOWN at the restart that its query found still working."""
        why = self._unsettled.pop(event.client_order_id, None)
        if why is None:
            return
        order = orders.get(event.client_order_id)
        if order is not None and order.is_open and order.status != OrderStatus.UNKNOWN:
            cancel(CancelOrder(order.strategy_id, order.instrument_id, order.client_order_id, event.ts_init,
                               event.ts_init, why))  # fmt: skip
