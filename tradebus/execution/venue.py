"""The venue interface shared by the simulated venue and live venues.

A venue receives orders from the :class:`~tradebus.execution.engine.ExecutionEngine` and
answers with order events (``OrderAccepted``, ``OrderRejected``, ``OrderTriggered``,
``OrderModified``, ``OrderModifyRejected``, ``OrderFilled``, ``OrderCanceled``, ``OrderExpired``) through the event
handler bound with :meth:`Venue.bind`. Events may be emitted synchronously from any method or
later (a live venue emits them from its user-stream task on the event loop's thread), late,
twice or out of order: the order manager copes (see :mod:`tradebus.execution.orders`).

A venue that definitively refuses an order emits ``OrderRejected``; one that does not apply a
modification emits ``OrderModifyRejected`` (the order works on unchanged). A :meth:`Venue.submit` or
:meth:`Venue.cancel` that raises means "no answer": the execution engine moves the order to
``UNKNOWN`` and asks :meth:`Venue.query_order`, never assuming a rejection. Every
``OrderFilled`` carries the venue's ``trade_id``; fills are deduplicated by it.

Nothing here assumes where time comes from: a venue reads the injected clock only.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import msgspec

from tradebus.engine.messages import Bar, ModifyOrder, OrderFilled, OrderStatus, Quote, Trade
from tradebus.execution.orders import Order
from tradebus.errors import VenueError

__all__ = ["EventHandler", "OrderStatusReport", "Venue", "terms_text", "venue_terms"]

EventHandler = Callable[[Any], None]


class OrderStatusReport(msgspec.Struct, frozen=True, gc=False):
    """What a venue knows about one order, answered by :meth:`Venue.query_order`.

    ``fills`` lists every fill of the order the venue knows of (the order manager ignores
    the ones it already booked, by ``trade_id``). ``status`` is the venue's: ``SUBMITTED``
    for an order it holds but has not acknowledged yet. ``quantity``, ``price`` and
    ``trigger_price`` are the order's terms as the venue holds them now (its total quantity,
    limit price and stop trigger; NaN: not told, or not the order's kind): an amend made at
    the venue while this process did not hear it (a restart, a private stream that was down)
    shows in them, and the execution engine applies it as an ``OrderModified``. ``instrument_id`` is the order's
    instrument where a listing of several tells it (``""``: not told): a venue numbering its order ids per symbol
    (Binance spot) may give an order of another symbol the venue order id of one here. ``list_id`` is the venue's id
    of the order list the order rests in (Binance spot's ``orderListId`` of an OCO leg; ``""``: none, or not told).
    """

    client_order_id: str
    venue_order_id: str
    status: OrderStatus
    filled_qty: float
    ts_event: int
    fills: tuple[OrderFilled, ...] = ()
    reason: str = ""
    quantity: float = math.nan
    price: float = math.nan
    trigger_price: float = math.nan
    instrument_id: str = ""
    list_id: str = ""


def venue_terms(order: Order, report: OrderStatusReport) -> tuple[float, float, float] | None:
    """``(quantity, price, trigger_price)`` of ``order`` as ``report`` tells them, or ``None`` when they are the order's.

    Each is the order's own where the report tells none (NaN) or the order has none (a market order's price, a
    limit order's trigger: a venue's row may carry a market order's protection price). They differ beyond float noise
    (``1e-9`` of the value): the venue holds what was sent, on the instrument's grid as the risk gate checked it, so
    any other value is the venue's (one off that grid too: the caller judges it).
    """
    qty = report.quantity if report.quantity == report.quantity else order.quantity
    price = order.price
    if report.price == report.price and price == price:
        price = report.price
    trigger = order.trigger_price
    if report.trigger_price == report.trigger_price and trigger == trigger:
        trigger = report.trigger_price
    if _same(qty, order.quantity) and _same(price, order.price) and _same(trigger, order.trigger_price):
        return None
    return qty, price, trigger


def terms_text(quantity: float, price: float, trigger: float) -> str:
    """An order's terms in a log line: ``0.0015 @ 64566.26``, a stop's ``(trigger 60000.0)``, a market order's quantity alone."""
    text = f"{quantity}" if price != price else f"{quantity} @ {price}"
    return text if trigger != trigger else f"{text} (trigger {trigger})"


def _same(a: float, b: float) -> bool:
    """Equal up to float noise, or both NaN."""
    return math.isclose(a, b, rel_tol=1e-9) or (a != a and b != b)


class Venue(ABC):
    """Where orders are worked: the simulated matching engine or an exchange.

    Parameters
    ----------
    emit
        Handler of the events the venue produces; usually bound later by the execution
        engine with :meth:`bind`.
    """

    def __init__(self, emit: EventHandler | None = None) -> None:
        self._emit: EventHandler = self._unbound if emit is None else emit

    @property
    def reports_funding(self) -> bool:
        """Whether the venue settles funding itself and emits its payments (``FundingPaid``): then the only funding booked."""
        return False

    @property
    def arms_at_fill(self) -> bool:
        """Whether a bracket's exits are sent as soon as its entry's fill is known, rather than at the instrument's
        next bar, trade or quote (:mod:`~tradebus.execution.contingent`).

        A live venue: the position is at the exchange from the fill on, and the instrument's next market event
        may be seconds away (minutes, its stream down), the position unprotected meanwhile. This default (the
        simulated venue, backtest and paper) arms them at the next market event: it fills only while it matches
        one, so no exit could fill before that event anyway, and on bars an exit sent at the entry's fill would
        arrive inside the bar the entry filled in.
        """
        return False

    def bind(self, emit: EventHandler) -> None:
        """Send every event this venue produces to ``emit``."""
        self._emit = emit

    def emit(self, event: Any) -> None:
        """Hand one event to the bound handler (raises :class:`VenueError` if none is bound)."""
        self._emit(event)

    def _unbound(self, event: Any) -> None:
        raise VenueError(
            f"{type(self).__name__}: no event handler bound for {type(event).__name__}; call bind() first"
        )

    @abstractmethod
    def submit(self, order: Order) -> None:
        """Send a new order (already SUBMITTED in the order manager)."""

    @abstractmethod
    def cancel(self, order: Order) -> None:
        """Ask to cancel a working order."""

    @abstractmethod
    def modify(self, order: Order, cmd: ModifyOrder) -> None:
        """Ask to change a working order's quantity, price or trigger (NaN fields unchanged)."""

    @abstractmethod
    def query_order(self, client_order_id: str) -> OrderStatusReport | None:
        """What the venue knows now of the order with this client id; ``None`` if it has none.

        Used to resolve an order in the UNKNOWN state after a timed-out or failed request, and
        to recover events lost on the way (missing fills are booked from ``fills``). May raise
        (no answer); the execution engine asks again later.
        """

    def submit_ended_ns(self, client_order_id: str) -> int | None:
        """When the request that sent this order ended (answered, refused or given up), clock ns.

        ``None`` while it is still on its way: it may not even have left yet (a rate-limit pause
        holds it), and may reach the venue after a query of the order sent later, so a venue that
        does not know the order proves nothing. ``0`` (this default): no later than the order was
        submitted (a venue that takes the order at once, an order sent by an earlier process).
        """
        return 0

    def cancel_resent_ns(self, client_order_id: str) -> int | None:
        """When the latest cancel of this order was last sent again, or will be, clock ns (a venue that sends a
        cancel again after the venue refused it as busy with the order); ``None`` (this default): not sent again.
        The execution engine's cancel timeout counts from it: each request of a cancel gets the whole timeout."""
        return None

    def forget(self, client_order_id: str) -> bool:
        """Drop what this venue keeps of a closed order the order manager forgets; ``False`` (kept) while a
        request about it is still on its way. This default keeps nothing per order once it is closed."""
        return True

    def replaced_in_flight(self) -> tuple[str, ...]:
        """Client ids of the working orders a one-request cancel-replace in flight replaces: their replacements,
        working orders too, stand for them, and the risk gate counts each pair once. This default venue replaces
        nothing in flight."""
        return ()

    def set_submit_timeout(self, timeout_ns: int | None) -> None:  # noqa: B027 - optional hook
        """The execution engine's submit timeout, clock ns (``None``: none): a venue that may hold a submit
        before sending it (a live venue behind a rate-limit pause) withdraws, unsent and ``REJECTED``, one it
        could not send within it, except one restoring an order the venue has already canceled (that one
        waits). The default venue sends at once and ignores it."""

    def set_query_retry(self, retry_ns: int | None) -> None:  # noqa: B027 - optional hook
        """The execution engine's query retry, clock ns (``None``: none): a venue that queries an order itself until
        the venue answers (a live venue after an unanswered amend's window) asks again after it, and longer after each
        query unanswered. The default venue queries nothing itself and ignores it."""

    def bind_repeat_expected(self, expect: Callable[[str], None]) -> None:  # noqa: B027 - optional hook
        """Where to say that an order's close, emitted from a request's answer, will be repeated once by the
        venue's stream (the execution engine binds :meth:`~tradebus.execution.orders.OrderManager.expect_repeat`):
        that repeat is no anomaly. The default venue tells every event once and ignores it."""

    def bind_modify_check(self, check: Callable[[Order, ModifyOrder], bool]) -> None:  # noqa: B027 - optional hook
        """Where to check again a modification the venue sends later than it was made (the execution engine binds its
        risk gate's check: ``False``, denied, ``OrderDenied`` published): a live venue's modify kept while an amend of
        the order is on its way is checked as it leaves. The default venue sends every modification at once and
        ignores it."""

    def flush(self) -> None:  # noqa: B027 - optional hook
        """Deliver the answers still on their way to the strategy (the end of a run: the kernel's
        :meth:`~tradebus.engine.kernel.Kernel.stop`). The default venue holds none back."""

    def on_bar(self, bar: Bar) -> None:  # noqa: B027 - optional hook, no-op for live venues
        """Market data hook: match working orders against a bar (no-op unless simulated)."""

    def on_trade(self, trade: Trade) -> None:  # noqa: B027
        """Market data hook: match working orders against a trade (no-op unless simulated)."""

    def on_quote(self, quote: Quote) -> None:  # noqa: B027
        """Market data hook: match working orders against a quote (no-op unless simulated)."""
