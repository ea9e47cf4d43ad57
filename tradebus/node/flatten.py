"""The kill switch's ``--flatten``: close what the journal holds with market orders, journaled like any order.

:func:`flatten` replays the journal (as a restarting daemon does) to learn each instrument's
position, then sells, per instrument, the smaller of that position and the venue's balance
of the base asset (whole lots; spot holds no shorts), as a MARKET order of the strategy
:data:`KILL_STRATEGY`; a perpetual's position is closed by a reduce-only MARKET order of the
smaller of the journal's and the venue's position (:meth:`TradingApi.positions`) when both
are on the same side (none otherwise: the start-up reconciliation holds such an instrument). The order is journaled before it is sent (command, ``OrderSubmitted``)
and its answer and fills after (``OrderAccepted``, ``OrderFilled`` from the venue's trade
history, by trade id): the next daemon on the journal starts flat, and its start-up
reconciliation agrees with the venue. A place without an answer stays SUBMITTED in the
journal: the next start queries it by client id, as after a crash. Stop the daemon first: a
daemon still running keeps trading until it is restarted on the HALTED journal (a fill it
books from its stream is not journaled twice).
"""

from __future__ import annotations

import asyncio

from loguru import logger

from tradebus.engine.bus import MessageBus
from tradebus.engine.clock import LiveClock
from tradebus.engine.instrument import Instrument, InstrumentKind
from tradebus.engine.messages import (
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderRejected,
    OrderSide,
    OrderStatus,
    OrderSubmitted,
    OrderType,
    SubmitOrder,
)
from tradebus.engine.portfolio import Portfolio
from tradebus.execution.journal import Journal
from tradebus.execution.live import NoAnswer, TradingApi, VenueRejected
from tradebus.execution.orders import KILL_STRATEGY, Order, OrderManager
from tradebus.execution.venue import OrderStatusReport
from tradebus.node.config import PaperConfig

__all__ = ["KILL_STRATEGY", "flatten"]

_CLOSED = frozenset({OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.EXPIRED, OrderStatus.REJECTED})


async def flatten(
    config: PaperConfig, api: TradingApi, journal: Journal, timeout: float = 10.0, reason: str = "kill switch"
) -> tuple[list[OrderStatusReport], list[str]]:
    """Sell every position the journal holds (see the module docstring).

    ``timeout`` bounds the wait for each order to close (polling the venue by client id). Each
    order's reason (``orders.csv`` ``submit_reason``, the ``reason`` of its fills and of the
    round trip it closes) is ``flatten (<reason>)``, the kill's reason.
    Returns the venue's final report of each order that closed, and the client ids of those
    not closed: still open after ``timeout``, or placed without an answer (state unknown).
    """
    instruments = config.instrument_map()
    clock = LiveClock()
    orders = OrderManager(MessageBus(), clock)
    portfolio = Portfolio(instruments, config.initial_cash, config.balances, config.fee_assets())
    journal.replay(orders, portfolio, clock.now_ns())
    held = {b.asset: b.free + b.locked for b in await api.balances()}
    perpetual = any(inst.kind is InstrumentKind.PERPETUAL for inst in instruments.values())
    venue_positions = {p.instrument_id: p.quantity for p in await api.positions() if p.one_way} if perpetual else {}
    reports = []
    left: list[str] = []
    for iid, inst in instruments.items():
        side, qty, reduce_only = _closing(inst, portfolio.position(iid), held, venue_positions)
        if not qty > 0.0:
            continue
        now = clock.now_ns()
        cmd = SubmitOrder(
            KILL_STRATEGY, iid, "", side, qty, now, now, OrderType.MARKET, reduce_only=reduce_only, reason=f"flatten ({reason})"
        )
        order = orders.create(cmd)
        coid = order.client_order_id
        journal.record_command(cmd, coid)
        journal.record_event(OrderSubmitted(KILL_STRATEGY, iid, coid, now, now))
        logger.warning("kill switch: flattening {}: {} {} at market ({})", iid, side.name.lower(), qty, coid)
        try:
            ack = await api.place(order)
        except VenueRejected as exc:
            journal.record_event(OrderRejected(KILL_STRATEGY, iid, coid, f"flatten: {exc}", clock.now_ns(), clock.now_ns()))
            logger.error("kill switch: flattening {} refused: {}", iid, exc)
            continue
        except NoAnswer as exc:
            logger.error("kill switch: flattening {}: no answer ({}); the next start queries {}", iid, exc, coid)
            left.append(coid)
            continue
        journal.record_event(OrderAccepted(KILL_STRATEGY, iid, coid, ack.venue_order_id, ack.ts_event, clock.now_ns()))
        report = await _settle(api, order, timeout)
        if report is None:
            logger.error("kill switch: flattening order {} still open after {} s; the next start queries it", coid, timeout)
            left.append(coid)
            continue
        booked = {(e.message.client_order_id, e.message.trade_id) for e in journal.entries() if type(e.message) is OrderFilled}
        for fill in report.fills:
            if (coid, fill.trade_id) not in booked:  # a daemon still running may have booked it from its stream
                journal.record_event(fill)
        if report.status in (OrderStatus.CANCELED, OrderStatus.EXPIRED):
            journal.record_event(OrderCanceled(KILL_STRATEGY, iid, coid, "flatten: closed unfilled", report.ts_event, clock.now_ns(), report.filled_qty))
        reports.append(report)
    return reports, left


def _closing(inst: Instrument, here: float, held: dict[str, float], venue_positions: dict[str, float]) -> tuple[OrderSide, float, bool]:
    """Side, whole-lot quantity and reduce-only flag of the order closing the journal's position ``here``."""
    if inst.kind is InstrumentKind.PERPETUAL:
        there = venue_positions.get(inst.instrument_id, 0.0)
        size = min(abs(here), abs(there)) if here * there > 0.0 else 0.0
        side = OrderSide.SELL if here > 0.0 else OrderSide.BUY
        return side, inst.round_quantity(size), True
    return OrderSide.SELL, inst.round_quantity(min(here, held.get(inst.base, 0.0))), False


async def _settle(api: TradingApi, order: Order, timeout: float) -> OrderStatusReport | None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        try:
            report = await api.query(order)
        except (NoAnswer, VenueRejected) as exc:
            logger.warning("kill switch: query of the flattening order: {}", exc)
            report = None
        if report is not None and report.status in _CLOSED:
            return report
        await asyncio.sleep(0.2)
    return None
