"""The live venue: the :class:`~tradebus.execution.venue.Venue` interface over an exchange's REST and user stream.

The kernel and the execution engine are synchronous and run on the event loop's thread; an
exchange answers over the network. :class:`LiveVenue` bridges the two without blocking:

``submit`` / ``cancel``
    start a task that sends the request through the venue's :class:`TradingApi`. The answer
    is turned into events on arrival: an acknowledgement -> ``OrderAccepted``, a definitive
    refusal (:class:`VenueRejected`, a rate-limited request's :class:`RateLimited` too) -> ``OrderRejected``
    (submit) or a query (cancel: the order may be closed already; found still working, ``OrderCancelRejected``
    tells the strategy). A cancel or amend the venue refuses as busy with the order (:class:`OrderBusy`,
    "try again later") is sent again after each of :attr:`LiveVenue.busy_delays` while the order is open; one
    refused because an earlier cancel of it is being done (:class:`CancelPending`) emits and queries nothing.
    **No answer** (timeout, dropped connection, 5xx: any :class:`NoAnswer`) emits nothing: the order stays
    SUBMITTED until the execution engine's :class:`~tradebus.execution.engine.OrderTimeouts` move it to
    ``UNKNOWN`` and query it. A request without an answer is never re-sent: only a query by client order id
    settles it. A submit (a new order, an OCO order list, a cancel-replace's replacement) leaves within its submit timeout
    (:meth:`set_submit_timeout`, the engine's) or not at all (:func:`send_within`): one the
    account's rate budget would hold longer (a 429's or a 418 ban's pause, OKX ``50011``, Bybit
    ``10006``, or a full weight window) is withdrawn unsent, ``OrderRejected`` at once with a reason
    naming the pause, the venue's code and its end (sent when the pause ends, it would trade at a
    price decided long before); one that would wait less waits. A cancel or a query waits it out,
    and so does a submit that restores an order the venue has already canceled (:func:`send_late`:
    a two-request cancel-replace's replacement, a Binance USD-M stop's replacement sent after its
    ``DELETE``, an order placed again as it was after its replacement was refused): the strategy had
    that order working, and its absence (a position without its stop) is worse than its lateness;
    the wait is logged at WARNING.
``modify``
    a venue that amends in place (:attr:`TradingApi.supports_amend`: OKX, Bybit) gets the
    new total quantity and price; its acknowledgement -> ``OrderModified``, its refusal ->
    ``OrderModifyRejected``. A refusal or no answer leaves the order as it was and queries it; an
    amend to a lower total refused because fills reached it meanwhile (the venues refuse a total at or
    below the filled quantity) is found so by that query, and the rest of the order is canceled.
    One amend of an order is on its way at a time (two racing requests may be applied in either order, the
    venue ending at the older terms): a modify meanwhile is kept, merged into one kept before (each term its
    latest), and sent once the amend is answered, refused or unanswered, if the risk gate, asked again then, still
    lets it (else ``OrderDenied``); an unanswered amend may still be applied within its request's window
    (:meth:`TradingApi.amend_expiry_s`): the next leaves only after that window and a query of the order's terms,
    which answers the unanswered one (applied: ``OrderModified``; not: ``OrderModifyRejected``; a query left
    unanswered is made again, :meth:`LiveVenue.set_query_retry`, until one is answered, the order closes or the
    daemon stops). Each modify gets
    one answer (modifies merged while kept, one for all): a refusal of an amend (or an unanswered one not applied)
    whose terms the kept one all sets again is told only after the kept one's answer, and only if the venue does
    not apply that one either (refused, unanswered and not applied, denied, dropped): applied, its
    ``OrderModified`` answers both. A cancel of the order drops the kept
    modify, as does the order's close before it leaves (``OrderModifyRejected`` either way); a restart does
    not send it (the venue's answer tells the terms; a trailing stop moves again at its next price).
    A venue with a cancel-replace in one request (:meth:`TradingApi.can_replace`: Binance
    spot; a Binance USD-M stop, cancel then place back to back by the adapter) gets it: the replacement (a new client id, the new quantity, price and trigger) is
    submitted through :attr:`LiveVenue.on_replace` with ``replaces=`` and sent with the cancel;
    the venue's success emits ``OrderAccepted`` (replacement), ``OrderReplaced``, then the
    ``OrderCanceled`` of the order (held until then if the user stream told it first); a failed
    cancel rejects the replacement (``OrderModifyRejected``); the replacement is sized on the fills known
    when it is sent, and when the answer's filled quantity of the canceled order
    (:attr:`Ack.canceled_filled_qty`) is larger (a fill raced the request) it is cut at once to what is left
    of the new quantity by a cancel-replace of it, or canceled when nothing is left or that cut is withdrawn,
    refused or unanswered (a WARNING names the quantities); a replacement refused after the
    cancel places the order again as it was, for what the venue left of it (the filled quantity the
    refusal told, :attr:`ReplacementRejected.canceled_filled_qty`, which the order's ``OrderCanceled``
    carries too) (``OrderReplaced``), one round trip without it (the cut of a replacement a fill raced: for
    what is left of the cut's total, or not at all when nothing is). A replacement a restart finds working
    (the process stopped before the answer or the cut) is cut then (:meth:`LiveVenue.resume_swaps`). A cancel
    of the order while its cancel-replace is in flight wins: the replacement the venue placed
    meanwhile is canceled at once, through the engine's cancel (:attr:`LiveVenue.on_cancel`: its
    cancel timeout queries the replacement, as for any cancel), ``OrderModifyRejected`` instead of
    ``OrderReplaced``.
    Another venue without amend gets a **cancel-replace** in two requests (never for a trigger
    price: a stop would be off the venue between them; ``OrderModifyRejected`` at once): the order is canceled, and once the cancel is confirmed (not
    filled in the meantime) a new order with a new client id for the quantity left, at the
    new price, is submitted through :attr:`LiveVenue.on_replace` (the engine's ``submit``:
    it passes the risk gate and the journal like any order; a modify of it while its cancel is on
    its way is merged into that one replacement), then ``OrderReplaced``, then the
    order's ``OrderCanceled`` (so an OCO group or bracket follows the replacement). The stream may tell the
    cancel before the cancel's answer, whose headers tell the rate budget the weight used: the replacement then
    leaves at once while the budget has room (:meth:`TradingApi.has_room_to_place`), else it (and the cancel
    it follows) waits for that answer, which may show the minute used up (a replacement sent into it: a 429), or for
    the budget's window to turn with room (:meth:`TradingApi.seconds_to_room`: an answer lost is not waited for
    a request timeout). When the
    order closed otherwise first (filled), is canceled by the engine meanwhile, or still works at
    a query sent once the cancel was answered (an earlier query's answer may predate the cancel:
    it is not believed; the engine asks again every ``retry_ns`` until one is answered, the stream's
    cancel frame may be lost), nothing is replaced: ``OrderModifyRejected``; so it is when the risk gate
    denies the replacement. Its intent is journaled before the cancel is sent
    (:attr:`LiveVenue.on_replacing`: ``ContingentLinked`` ``"replace"`` with no replacement id yet and
    the modification's ``quantity`` and ``price``), and a restart picks it up
    (:meth:`LiveVenue.resume_replaces`, then :meth:`LiveVenue.replace_resumed` once the start-up
    reconciliation settled the orders): the order found canceled (not filled) and nothing yet submitted
    in its place, the replacement is submitted then, followed by ``OrderReplaced``; found filled
    or closed otherwise, ``OrderModifyRejected``; still working (the cancel never left), it is
    cancel-replaced again.
``query_order``
    is asked synchronously by the engine. It answers with the venue's reply to the latest
    query of that order if one arrived since; otherwise it starts the query and raises
    (no answer yet). When the reply arrives, :attr:`LiveVenue.on_answer` (the engine's
    ``reconcile_order``) is called, which asks again and gets it. A venue that does not know
    the order answers ``None``: the engine believes it only once the order's submit request ended
    (:meth:`LiveVenue.submit_ended_ns`; one held by a rate-limit pause may leave after a later
    query) more than its grace period ago. Of a CANCELED or EXPIRED order it answers that the order
    filled nothing (the order's status, ``filled_qty`` 0) once the order closed longer ago than the
    venue documents keeping such orders without fills (:attr:`TradingApi.forgets_unfilled_closed_ns`).
    An answer to a query sent or answered while an amend of the order was on its way tells no quantity,
    price or trigger (NaN): it may have been read before the amend, and would undo it.
user stream
    the venue's private stream is parsed into the same order events, handed to :meth:`emit`
    as they arrive; they may come before the REST answer, after it, twice or out of order
    (the order manager keeps what is new and books each fill once, by ``trade_id``).
    A frame telling an order's terms (``OrderTermsReported``: an amend made at the venue, on a user's web page) goes
    to the engine, which applies other terms than the order's as an amend; not while an amend of this process is on
    its way (its answer tells them), and after one, terms other than the order's are asked of the venue (a query)
    rather than taken: the frame may have been sent before that amend.
    Balance updates are not order events: the stream client hands them to the node.

Nothing here names an exchange: a venue package provides the :class:`TradingApi`
(e.g. :class:`tradebus.adapters.binance.trading.BinanceTrading`) and its stream parser.
"""

from __future__ import annotations

import asyncio
import math
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar, TypeVar

import msgspec
from loguru import logger

from tradebus.engine.clock import Clock
from tradebus.engine.instrument import Instrument
from tradebus.engine.messages import (
    CancelOrder,
    ContingentLinked,
    FundingPaid,
    ModifyOrder,
    OrderAccepted,
    OrderCancelRejected,
    OrderFilled,
    OrderModified,
    OrderModifyRejected,
    OrderCanceled,
    OrderRejected,
    OrderReplaced,
    OrderStatus,
    OrderTermsReported,
    OrderType,
    SubmitOrder,
)
from tradebus.errors import VenueError
from tradebus.execution.orders import Order
from tradebus.execution.venue import EventHandler, OrderStatusReport, Venue, venue_terms

__all__ = [
    "BUSY_RETRY_DELAYS",
    "CLOCK_MARGIN_NS",
    "QUERY_RETRY_CAP_S",
    "AccountBalance",
    "AccountMargin",
    "AccountPosition",
    "AccountRefused",
    "Ack",
    "CancelPending",
    "ClockRefused",
    "CredentialsRefused",
    "FundingOutsideRun",
    "FundingUnattributed",
    "LiveVenue",
    "NoAnswer",
    "OcoPair",
    "OrderBusy",
    "RateLimited",
    "ReplacementRejected",
    "TradingApi",
    "VenueRejected",
    "cancel_one",
    "lots_to_send",
    "refusal_to_send",
    "send_late",
    "send_within",
    "send_unless",
    "sent_late",
    "time_left_to_send",
]


_T = TypeVar("_T")
_UNACKNOWLEDGED = frozenset({OrderStatus.SUBMITTED, OrderStatus.UNKNOWN})
_CLOSED_UNFILLED = frozenset({OrderStatus.CANCELED, OrderStatus.EXPIRED})
_WORKING = frozenset({OrderStatus.ACCEPTED, OrderStatus.TRIGGERED, OrderStatus.PARTIALLY_FILLED})
# Submits remembered before the first sweep of those of closed orders (LiveVenue._forget_closed_submits).
_SUBMITS_SWEEP = 256
#: How far the venue's clock (an order's ``ts_last``) may be ahead of this one when an order's age is
#: judged against :attr:`TradingApi.forgets_unfilled_closed_ns`.
CLOCK_MARGIN_NS = 60_000_000_000
#: Seconds :class:`LiveVenue` waits before each re-send of a cancel or amend the venue answered :class:`OrderBusy`
#: (then the refusal is final): a venue busy with an order is so for the round trip of one request on it.
BUSY_RETRY_DELAYS: tuple[float, ...] = (0.1, 0.2, 0.4)
#: Seconds at most between two queries :class:`LiveVenue` makes of an order after an unanswered amend's window while
#: none is answered: the first waits the engine's ``retry_ns`` (:meth:`LiveVenue.set_query_retry`), each next twice
#: as long.
QUERY_RETRY_CAP_S = 60.0
# Seconds left to send the requests of the running task (set by send_within); None: no limit.
_TIME_LEFT: ContextVar[Callable[[], float] | None] = ContextVar("tradebus_time_left_to_send", default=None)
#: What follows a query :class:`LiveVenue` made of its own (a refusal's, a stream's news') that got no answer: the
#: engine's queries (its cancel timeout, its check of silent orders, a stream's reconnect) ask again.
_ASKED_ONCE = ("asked once: the engine's own queries of it ask again (a cancel's timeout, the check of orders silent "
               "for its check interval, a stream's reconnect)")
#: What follows a query that got no answer while the daemon stops: its timers have stopped, nothing here asks again.
_STOPPING = ("the daemon is stopping: the stop's deadline queries it if still open (live.cancel_on_stop), else a restart "
             "on the journal does")
#: What follows a query that got no answer once the stop's deadline has queried the orders still open (last_queries).
_LAST_QUERIES = "the daemon is stopping and made its last queries: a restart on the journal queries it if still open"
# What the requests of the running task restore, sent however late (set by send_late); None: nothing.
_RESTORES: ContextVar[str | None] = ContextVar("tradebus_sent_late", default=None)
# Why the requests of the running task must not leave after a wait (set by send_unless); None: no check.
_REFUSAL: ContextVar[Callable[[], str | None] | None] = ContextVar("tradebus_send_unless", default=None)


@contextmanager
def send_within(time_left: Callable[[], float]) -> Iterator[None]:
    """Withdraw, rather than hold, the requests this task makes in the block that could not leave in time.

    A request the account's rate limit would hold longer than ``time_left()`` seconds (asked at
    each decision) raises :class:`RateLimited` and is never sent (the rate budget's
    :meth:`~tradebus.adapters.common.ratelimit.WeightBudget.acquire` decides); one that would wait
    less waits. Only the running task's requests are concerned: the live venue sends each submit
    in its own task, within its submit timeout.
    """
    token = _TIME_LEFT.set(time_left)
    try:
        yield
    finally:
        _TIME_LEFT.reset(token)


def time_left_to_send() -> Callable[[], float] | None:
    """The ``time_left`` of the :func:`send_within` block the running task is in (``None``: none, no limit)."""
    return _TIME_LEFT.get()


@contextmanager
def send_late(restores: str) -> Iterator[None]:
    """Send the requests this task makes in the block however long the rate limit holds them, even inside
    :func:`send_within`: never withdrawn, they wait a pause out as a cancel does.

    For a submit that restores an order the venue has already canceled (``restores`` names it, in the
    WARNING the rate budget logs its wait at): the replacement of a cancel-replace sent after its
    cancel, or the order placed again as it was. Withdrawn, it would leave the order absent (a
    position without its stop) for the whole pause; late, it is only late.
    """
    tokens = _TIME_LEFT.set(None), _RESTORES.set(restores)
    try:
        yield
    finally:
        _RESTORES.reset(tokens[1])
        _TIME_LEFT.reset(tokens[0])


def sent_late() -> str | None:
    """What the :func:`send_late` block the running task is in restores (``None``: none)."""
    return _RESTORES.get()


@contextmanager
def send_unless(refusal: Callable[[], str | None] | None) -> Iterator[None]:
    """Withdraw the requests this task makes in the block when, after a wait of the rate limit, ``refusal()``
    gives a reason (``None``: no check): the account's rate budget asks it in the step of the event loop that
    would let the request go (:meth:`~tradebus.adapters.common.ratelimit.WeightBudget.acquire`) and raises
    :class:`VenueRejected` ``"withdrawn, never sent: <why>"``. The live venue's submits: a request held by a
    pause must not leave once the daemon's trading state forbids new orders."""
    token = _REFUSAL.set(refusal)
    try:
        yield
    finally:
        _REFUSAL.reset(token)


def refusal_to_send() -> Callable[[], str | None] | None:
    """The ``refusal`` of the :func:`send_unless` block the running task is in (``None``: none)."""
    return _REFUSAL.get()


class NoAnswer(VenueError):
    """A request whose outcome is unknown: it may or may not have reached the venue."""


class VenueRejected(VenueError):
    """A definitive refusal by the venue (the request was processed and refused)."""


class CredentialsRefused(VenueRejected):
    """A request the venue refused for the account's credentials (a key it does not know, a signature of another
    secret, a wrong passphrase, a key of another environment or IP): a configuration problem for the user to fix
    (the key variables named by ``live.api_key_env``, ``api_secret_env``, ``api_passphrase_env``).
    ``tradebus live`` and ``live-kill`` exit 2 on it, as on a :class:`~tradebus.errors.ConfigError`."""

    #: What the venue refused, as a stop names it ("the venue refused <what>").
    what: ClassVar[str] = "the account's credentials"


class ClockRefused(CredentialsRefused):
    """A signed request or stream login the venue refused for its timestamp after this process measured its clock
    against the venue's again (:class:`~tradebus.adapters.common.venue_clock.VenueClock`), or a clock further off the
    venue's than it trades on: this machine's clock, not the key, is to fix (NTP). Every later request would be refused
    too, so it stops the daemon as refused credentials do (``tradebus live``: exit 2)."""

    what: ClassVar[str] = "this machine's clock"


class AccountRefused(CredentialsRefused):
    """A request the venue refused for the account itself, whatever the request (OKX: a user blocked, an account
    restricted from trading or by its risk control): the key and its secret are not at fault, the account's state at
    the venue is; every later request would be refused too, so it stops the daemon as refused credentials do
    (``tradebus live``: exit 2), with the venue's advice."""

    what: ClassVar[str] = "the account"


class RateLimited(VenueRejected):
    """A request the venue refused for its rate limit (HTTP 429, Binance's 418 ban, OKX ``50011``, Bybit
    ``10006``): refused unprocessed, so nothing was done (Binance: a 4XX is "on the sender's side", only a
    5XX leaves the outcome unknown). The client pauses every request for as long as the answer says."""


class OrderBusy(VenueRejected):
    """A cancel or amend the venue refused unprocessed because it is still processing an earlier request on
    the order (Bybit ``110079``: "the order is processing and can not be operated, please try again later"):
    the same request may be done later. :class:`LiveVenue` sends it again (:data:`BUSY_RETRY_DELAYS`)."""


class CancelPending(VenueRejected):
    """A cancel the venue refused because it is already canceling the order (OKX ``51410``: "cancellation failed as
    the order is already under cancelling status"): an earlier cancel of it is being done, so this one is no refusal
    to cancel. :class:`LiveVenue` tells nothing and queries nothing: the earlier cancel's outcome comes from the
    stream, or from the query of the engine's cancel timeout, which keeps running."""


class ReplacementRejected(VenueRejected):
    """A cancel-replace whose cancel was done and whose new order was refused: neither works at the venue.

    Parameters
    ----------
    message
        The venue's refusal.
    canceled_filled_qty
        The canceled order's filled quantity the venue's answer told (NaN: not told), as
        :attr:`Ack.canceled_filled_qty` of a cancel-replace that succeeded.
    """

    def __init__(self, message: str, canceled_filled_qty: float = math.nan) -> None:
        super().__init__(message)
        self.canceled_filled_qty = canceled_filled_qty


def lots_to_send(order: Order, instrument: Instrument) -> float:
    """What is left of ``order`` rounded down to whole lots of ``instrument``: the size a venue mapping sends.

    Raises
    ------
    VenueRejected
        Nothing is left once rounded (refused here, never sent).
    """
    qty = instrument.round_quantity(order.quantity - order.filled_qty)
    if not qty > 0.0:
        raise VenueRejected(f"quantity {order.quantity} rounds to 0 lots of {instrument.lot_size}")
    return qty


async def cancel_one(client_order_id: str, send: Callable[[], Awaitable[Any]]) -> bool:
    """Send one cancel request of a cancel-all; ``False`` (logged, not raised) when refused, pending or unanswered.

    A cancel the venue refuses as busy with the order (:class:`OrderBusy`) is sent again after each of
    :data:`BUSY_RETRY_DELAYS`, as :class:`LiveVenue` does. A cancel-all goes on with the next order: the
    order may have closed meanwhile (refused), be being canceled by an earlier cancel (:class:`CancelPending`),
    or be canceled or not (no answer); the caller lists the open orders again to know.
    """
    delays = iter(BUSY_RETRY_DELAYS)
    while True:
        try:
            await send()
        except CancelPending as exc:
            logger.info("cancel of {} pending: {}; an earlier cancel of it is being done", client_order_id, exc)
            return False
        except (NoAnswer, VenueRejected) as exc:
            delay = next(delays, None) if isinstance(exc, OrderBusy) else None
            if delay is None:
                logger.warning("cancel of {} failed: {}", client_order_id, exc)
                return False
            logger.info("cancel of {}: {}; sent again in {:g} s", client_order_id, exc, delay)
        else:
            return True
        await asyncio.sleep(delay)


class Ack(msgspec.Struct, frozen=True):
    """The venue's acknowledgement of a new order.

    ``canceled_filled_qty``: of a cancel-replace's replacement (:meth:`TradingApi.replace`), the
    canceled order's cumulative filled quantity as the answer reports it (NaN: it does not).
    """

    client_order_id: str
    venue_order_id: str
    ts_event: int
    canceled_filled_qty: float = math.nan


class AccountBalance(msgspec.Struct, frozen=True):
    """The venue's balance of one asset (``free`` + ``locked`` is the total)."""

    asset: str
    free: float
    locked: float
    ts_event: int


class AccountPosition(msgspec.Struct, frozen=True):
    """The venue's position of one perpetual, in order units (base units, or contracts where the venue counts them; signed: short < 0; one-way mode).

    ``one_way`` is false for one side of a hedge-mode account (long and short positions apart),
    which the orders here (one-way) cannot trade: the account switched mode.
    """

    instrument_id: str
    quantity: float
    entry_price: float
    ts_event: int
    one_way: bool = True


class FundingUnattributed(msgspec.Struct, frozen=True):
    """A funding payment the user stream told without naming its instrument.

    Binance USD-M pushes a cross position's payment with no position row, so it cannot be booked
    as heard: it may be any perpetual of the run settled in ``asset``, or a position the account
    holds outside the run. The venue's list of its payments (:meth:`TradingApi.funding_since`)
    names the instrument. ``payment`` is positive when paid, ``ts_event`` the venue's time of it.
    """

    asset: str
    payment: float
    ts_event: int


class FundingOutsideRun(msgspec.Struct, frozen=True):
    """A funding payment the venue lists on a symbol the run does not trade: the account's, never booked.

    Listed by :meth:`TradingApi.funding_since` beside the run's ``FundingPaid`` so that a
    :class:`FundingUnattributed` payment of such a position is known as listed. ``payment`` is
    positive when paid, ``ts_event`` the venue's time of it.
    """

    symbol: str
    asset: str
    payment: float
    ts_event: int


class AccountMargin(msgspec.Struct, frozen=True):
    """How the venue margins one perpetual of the account, as it reports it.

    ``leverage`` and ``margin_mode`` (``cross`` or ``isolated``) are the account's settings
    for the instrument; ``one_way`` is false when the account holds long and short positions
    apart (hedge mode), which the orders here (one-way) cannot trade. ``contract_size`` is what
    one contract of an order's size is worth in the base asset at the venue (OKX ``ctVal``; 0:
    the venue does not say, or counts sizes in the base asset).
    """

    instrument_id: str
    leverage: float
    margin_mode: str
    one_way: bool = True
    contract_size: float = 0.0


class TradingApi(ABC):
    """One venue account's REST calls, as a venue package implements them.

    Every method raises :class:`NoAnswer` when the outcome is unknown and
    :class:`VenueRejected` when the venue refused; anything else is a bug.
    """

    #: Whether the venue's funding payments (``FundingPaid``) are booked: the user stream's and :meth:`funding_since`'s.
    reports_funding = False
    #: Whether the user stream pushes each payment as it is settled; else the reconciliation rounds read :meth:`funding_since`.
    streams_funding = True
    #: How far back, in ns, the venue lists an order's fills to :meth:`query` (its trade history's window for the
    #: request used); ``None``: no window documented. An order older than that is not asked for fills it lacks.
    fills_history_ns: int | None = None
    #: How long, in ns after its last update, the venue still answers a query of a CANCELED or EXPIRED order
    #: that had no fills, as its documentation says it then forgets such orders only (and keeps those with
    #: fills longer); ``None``: no such rule documented. "No such order" for an order closed longer ago than
    #: that proves it filled nothing (:meth:`LiveVenue.query_order`).
    forgets_unfilled_closed_ns: int | None = None
    #: Told of every :class:`CredentialsRefused` a request meets (``None``: nobody): the live daemon, once running,
    #: stops on it, as a key revoked while it runs refuses every later request.
    on_credentials_refused: Callable[[CredentialsRefused], None] | None = None

    def refused(self, error: VenueError) -> VenueError:
        """``error``, the venue's refusal of a request, after telling :attr:`on_credentials_refused` of it if it is
        the credentials'."""
        if isinstance(error, CredentialsRefused) and self.on_credentials_refused is not None:
            self.on_credentials_refused(error)
        return error

    @abstractmethod
    async def place(self, order: Order) -> Ack:
        """Send a new order (client order id, flags, tick/lot rounding are the venue's mapping)."""

    @abstractmethod
    async def cancel(self, order: Order) -> None:
        """Cancel a working order by client order id."""

    @abstractmethod
    async def query(self, order: Order) -> OrderStatusReport | None:
        """The venue's state and fills of one order by client order id (``None``: it has no such order)."""

    @abstractmethod
    async def open_orders(self) -> list[OrderStatusReport]:
        """Every order the venue has open on the account's instruments."""

    @abstractmethod
    async def cancel_all(self) -> list[str]:
        """Cancel every open order of the account's instruments (the kill switch); the client ids canceled.

        A cancel refused or unanswered is skipped (:func:`cancel_one`; one refused as busy after its
        re-sends), the others are still sent; only a listing of the open orders that fails raises.
        """

    @abstractmethod
    async def balances(self) -> list[AccountBalance]:
        """The account's balances."""

    @abstractmethod
    async def close(self) -> None:
        """Release the HTTP session."""

    async def positions(self) -> list[AccountPosition]:
        """The account's open positions of its perpetuals (spot accounts have none)."""
        return []

    async def margin_settings(self) -> list[AccountMargin] | None:
        """The venue's leverage, margin mode and position mode of each traded perpetual (``None``: not read from this venue)."""
        return None

    async def listed_symbols(self) -> set[str] | None:
        """The symbols the account's market lists, read at start-up to refuse a symbol it does not (misspelt or
        delisted) before anything is sent (``None``: not read from this venue)."""
        return None

    async def fills_since(self, instrument_id: str, orders: Mapping[str, Order], since_ns: int) -> list[OrderFilled] | None:
        """The account's own trades on one instrument since ``since_ns``, as fills of ``orders``, oldest first.

        The venue's trade history is read page by page (a few requests for thousands of
        trades, each through the rate budget); trades of orders not in ``orders`` (keyed by
        venue order id) are skipped. ``None``: this venue does not page its trade history here
        (the reconciliation then queries each order by client id).
        """
        return None

    async def funding_since(self, since_ns: int) -> Sequence[FundingPaid | FundingOutsideRun] | None:
        """The venue's funding payments on the account's perpetuals since ``since_ns`` (inclusive), oldest first.

        Read from the venue's income history page by page; each payment's ``payment`` is the
        venue's (positive: paid), quantity, mark and rate NaN (the kernel books it as a payment
        of the user stream, :meth:`~tradebus.engine.perpetuals.Perpetuals.on_venue_funding`).
        A venue whose user stream may tell a payment without its instrument
        (:class:`FundingUnattributed`) also lists those of symbols the run does not trade, as
        :class:`FundingOutsideRun`. ``None``: this venue does not list its funding payments here.
        """
        return None

    #: Whether :meth:`amend` changes a working order in place at this venue.
    supports_amend: bool = False
    #: Whether :meth:`replace` cancels an order and places its replacement in one request at this venue.
    supports_replace: bool = False
    #: Whether an amend a user makes at the venue may give an order a new client order id (Binance spot's amend keeping
    #: priority): the venue's open orders are then the orders here by their venue order id too
    #: (:meth:`~tradebus.node.reconcile.Reconciler.as_ours`); elsewhere an unknown client id is another order's.
    renames_on_amend: bool = False

    def amend_expiry_s(self, order: Order) -> float | None:
        """Seconds after an amend's request of ``order`` ended unanswered past which the venue no longer applies it: the request's
        validity window, from its signed timestamp (no later than that end), with the clock skew the venue tolerates.
        The live venue sends no other amend of the order before then (the venue could apply the two in either order).
        ``None`` (default): the venue bounds no request's age; the next amend leaves at once."""
        return None

    def can_replace(self, order: Order) -> bool:
        """Whether :meth:`replace` takes this order (default: :attr:`supports_replace`, for every order)."""
        return self.supports_replace

    #: Whether :meth:`place_oco` places an OCO pair in one request at this venue.
    supports_oco: bool = False

    def has_room_to_place(self) -> bool:
        """Whether a new order may leave before the answer of a request in flight tells the account's rate budget
        (a two-request cancel-replace's replacement on the stream's cancel frame, before the cancel's answer):
        ``False`` when the budget, as the venue's last answer told it, is near its limit, so that the answer on its
        way may show it used up. Default: ``True`` (no budget told by answers)."""
        return True

    def seconds_to_room(self) -> float:
        """How long until :meth:`has_room_to_place` may say yes with no new answer (the rate budget's window turns, its
        pause ends), seconds; ``0.0`` when it does now, ``inf`` when it cannot tell (default)."""
        return math.inf

    def trails_in_oco(self, percent: float) -> bool:
        """Whether :meth:`place_oco` can make its stop leg a venue trailing stop ``percent`` % from the
        best price since it was placed (the venue moves its trigger; no modify is sent)."""
        return False

    async def place_oco(self, first: Order, second: Order, trail_percent: float | None = None) -> tuple[Ack, Ack]:
        """Place two exits of one position as one OCO order list (a limit and a stop of one side and
        quantity): the venue locks the balance once for both and cancels one when the other fills
        or triggers. Their acknowledgements, in the order given.

        With ``trail_percent`` (where :meth:`trails_in_oco` allows it) the stop leg trails at the
        venue: it triggers once the price has moved ``trail_percent`` % against the position from
        the best price since placement, and its ``trigger_price`` is not sent.

        Raises
        ------
        VenueRejected
            Neither order was placed.
        NoAnswer
            The outcome is not known.
        """
        raise VenueRejected(f"orders {first.client_order_id}, {second.client_order_id}: {type(self).__name__} has no OCO order list")

    async def replace(self, order: Order, replacement: Order) -> Ack:
        """Cancel ``order`` and place ``replacement`` in one request (the venue's cancel-replace); its acknowledgement.

        An adapter that sends it as two requests sends the second, once the cancel is done, inside
        :func:`send_late` (the live venue sends the whole inside :func:`send_within`).

        Raises
        ------
        VenueRejected
            Nothing was done (the cancel failed: ``order`` no longer works; or the request was refused).
        ReplacementRejected
            ``order`` was canceled but ``replacement`` refused.
        NoAnswer
            Neither outcome is known.
        """
        raise VenueRejected(f"order {order.client_order_id}: {type(self).__name__} has no cancel-replace")

    async def amend(self, order: Order, quantity: float, price: float, trigger_price: float = math.nan) -> None:
        """Change a working order's total quantity, price and/or trigger price (NaN: unchanged) in place.

        Venues without amend keep this answer: a refusal (the live venue cancel-replaces instead).
        """
        raise VenueRejected(f"order {order.client_order_id}: {type(self).__name__} cannot amend in place")


def _report_failure(task: asyncio.Task[None]) -> None:
    """Hand the exception a request's task ended with to the loop's exception handler as soon as it ends.

    The venue's own errors are handled inside the request; what escapes is an exception of the
    code its events ran (a strategy's hook: the daemon's handler stops on it). asyncio itself
    reports it only when the task is freed, which something still holding the task defers.
    """
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        task.get_loop().call_exception_handler(
            {"message": f"request {task.get_name()} failed", "exception": exc, "task": task}
        )


@dataclass
class OcoPair:
    """What :meth:`LiveVenue.oco_pair` did: ``sent`` when its two orders went as one OCO order list
    (its stop leg trailing ``trail_percent`` % at the venue when not ``None``)."""

    sent: bool = False
    trail_percent: float | None = None


_STOPS = frozenset({OrderType.STOP_MARKET, OrderType.STOP_LIMIT})


def _merged(older: ModifyOrder, newer: ModifyOrder) -> ModifyOrder:
    """``newer`` with each term it leaves as it is (NaN) taken from ``older``."""
    return msgspec.structs.replace(
        newer,
        quantity=older.quantity if math.isnan(newer.quantity) else newer.quantity,
        price=older.price if math.isnan(newer.price) else newer.price,
        trigger_price=older.trigger_price if math.isnan(newer.trigger_price) else newer.trigger_price,
    )


def _covers(newer: ModifyOrder, older: ModifyOrder) -> bool:
    """Whether ``newer`` sets every term ``older`` sets (NaN: a term left as it is)."""
    return all(
        not math.isnan(new) or math.isnan(old)
        for new, old in ((newer.quantity, older.quantity), (newer.price, older.price), (newer.trigger_price, older.trigger_price))
    )


def _applied(order: Order, cmd: ModifyOrder) -> bool:
    """Whether ``order`` has every term ``cmd`` sets (NaN: a term left as it is)."""
    return all(
        math.isnan(new) or math.isclose(now, new, rel_tol=1e-9)
        for now, new in ((order.quantity, cmd.quantity), (order.price, cmd.price), (order.trigger_price, cmd.trigger_price))
    )


def _raced(sized_on: float, venue_filled: float) -> bool:
    """Whether a cancel-replaced order filled ``venue_filled`` at the venue, more than the ``sized_on`` its replacement
    was sized on (a fill raced the request; NaN: the venue did not tell, nothing raced)."""
    return venue_filled > sized_on * (1.0 + 1e-9)


def _is_oco(first: Order, second: Order) -> bool:
    """Whether two orders can be one OCO order list: one limit and one stop, of one instrument, side and quantity."""
    kinds = {first.order_type, second.order_type}
    return (
        first.instrument_id == second.instrument_id and first.side is second.side and first.quantity == second.quantity
        and OrderType.LIMIT in kinds and bool(kinds & _STOPS)
    )


class LiveVenue(Venue):
    """The exchange behind the :class:`Venue` interface (see the module docstring).

    Parameters
    ----------
    api
        The venue account's REST calls.
    clock
        The run's clock (event timestamps).
    emit
        Event handler (usually bound later by the execution engine).
    dry_run
        Send nothing: a submit is answered locally with ``OrderRejected`` ("dry run"), a cancel
        is logged; queries still go to the venue.
    """

    def __init__(self, api: TradingApi, clock: Clock, emit: EventHandler | None = None, *, dry_run: bool = False) -> None:
        super().__init__(emit)
        self.api = api
        self.clock = clock
        self.dry_run = dry_run
        self._orders: dict[str, Order] = {}
        # Client order id -> when its submit request ended (clock ns); None while on its way. Those of closed
        # orders are dropped once it holds more than _submits_swept (_forget_closed_submits).
        self._submits: dict[str, int | None] = {}
        self._submits_swept = _SUBMITS_SWEEP
        # The engine's submit timeout (set_submit_timeout), and by when (clock ns) each submit not yet sent must leave.
        self._submit_timeout_ns: int | None = None
        # Seconds before the first query again of an order whose query after an unanswered amend's window got no answer
        # (set_query_retry: the engine's retry_ns; OrderTimeouts' default until it is told).
        self._query_retry_s = 5.0
        # Whether the engine queries again, every retry_ns, an order whose query it made got no answer (set_query_retry).
        self._engine_retries = False
        self._send_by: dict[str, int] = {}
        # The canceled order the next submit restores (_restore), and each such submit not yet sent -> what it restores.
        self._restoring: str | None = None
        self._restores: dict[str, str] = {}
        self._answers: dict[str, OrderStatusReport | None] = {}
        self._querying: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        # The tasks asleep with no request out (an unanswered amend's query backing off, _rest): not waited by drain,
        # whose futures here each learn that one went to sleep.
        self._resting: set[asyncio.Task[Any]] = set()
        self._rest_watchers: set[asyncio.Future[None]] = set()
        self._closed = False
        # Whether the stop's deadline has queried the orders still open here (last_queries): nothing asks again.
        self._last_queries = False
        #: Called with a client order id when a query's answer arrived, or to query an order until answered
        #: (the engine's ``reconcile_order``: it asks again every ``retry_ns`` while no answer comes).
        self.on_answer: Callable[[str], Any] | None = None
        #: Requests sent, by kind (``place``, ``cancel``, ``query``, ``amend``, ``replace``): what a test counts.
        self.requests: dict[str, int] = {"place": 0, "cancel": 0, "query": 0, "amend": 0, "replace": 0}
        #: Submits the replacement of a cancel-replaced order (the engine's ``submit``; ``replaces=``
        #: the replaced order's id when it still works, in a one-request cancel-replace).
        self.on_replace: Callable[..., Any] | None = None
        #: Cancels a replacement placed by a cancel-replace whose order was canceled meanwhile (the engine's
        #: ``cancel``: its cancel timeout queries the replacement if neither the answer nor the stream tells).
        self.on_cancel: Callable[[CancelOrder], Any] | None = None
        self._replacing: dict[str, ModifyOrder] = {}
        # Two-request cancel-replaces whose cancel request has not ended (sent or about to be), and the stream's cancel of
        # each, held until it ends when the rate budget had no room for the replacement (_hold_for_answer).
        self._canceling: set[str] = set()
        self._before_answer: dict[str, list[OrderCanceled]] = {}
        #: Journals and publishes a two-request cancel-replace's intent before its cancel is sent (the engine's ``replacing``).
        self.on_replacing: Callable[[ContingentLinked], Any] | None = None
        # Two-request cancel-replaces a previous process left in flight (resume_replaces): replaced id -> modification.
        self._resumed: dict[str, ModifyOrder] = {}
        # Replacements of one-request cancel-replaces working when the previous process stopped (resume_swaps):
        # (replaced order, replacement, the replaced order's filled quantity the replacement was sized on).
        self._resumed_swaps: list[tuple[Order, Order, float]] = []
        # Those of them whose cancel's request is over: only a query sent after that judges whether it worked.
        self._cancel_answered: set[str] = set()
        # One-request cancel-replaces in flight: replaced id -> replacement; and their held cancels (a repeated
        # frame too: passed on after the first, the order manager reports it as a duplicate).
        self._swapping: Order | None = None
        self._swaps: dict[str, Order] = {}
        self._held: dict[str, list[Any]] = {}
        # Replacements being cut after a fill raced their cancel-replace (_trim_replacement) -> why: one whose cut fails is canceled.
        self._trims: dict[str, str] = {}
        # Replacements a fill raced, while their cancel-replace's OrderReplaced (and the replaced order's cancel) are
        # handed on, before their cut leaves -> why: a modify of one meanwhile is refused (modify).
        self._cutting: dict[str, str] = {}
        # Those of them canceled meanwhile: the cancel wins, their replacement is not kept.
        self._swaps_canceled: set[str] = set()
        #: The venue's open orders resting in an order list when the live daemon read them at start-up: client order id
        #: -> the list's id (:attr:`~tradebus.execution.venue.OrderStatusReport.list_id`); the contingent orders take
        #: them at their restore (:meth:`~tradebus.execution.contingent.ContingentOrders.take_venue_lists`).
        self.order_lists: dict[str, str] = {}
        # Says that a cancel emitted from a cancel-replace's answer will be repeated by the stream (bind_repeat_expected).
        self._expect_repeat: Callable[[str], None] | None = None
        self._queued = False
        #: Seconds waited before each re-send of a cancel or amend the venue answered :class:`OrderBusy`.
        self.busy_delays: tuple[float, ...] = BUSY_RETRY_DELAYS
        #: Why the submit of these orders, replacing the working orders of these client ids (a cancel-replace; else
        #: none), may not leave now (``None``: it may), asked as each leaves (:meth:`_submitting`); the live daemon's:
        #: its trading state set since the risk gate passed them, or the one another process (``live-kill``) stored
        #: in the journal.
        self.refusal: Callable[[Sequence[Order], tuple[str, ...]], str | None] | None = None
        #: Called before a submit the venue or this process refused (:class:`VenueRejected`) is reported; the live
        #: daemon's writes the decision lines still waiting (:attr:`NodeRouter.log_later
        #: <tradebus.node.router.NodeRouter.log_later>`), so a decision is logged before its refusal even when the
        #: request was withdrawn in the step that started it.
        self.before_refusal: Callable[[], None] | None = None
        # Orders whose amend to a lower total the venue refused -> that total, until a query sent after it says whether
        # fills reached it (then the rest is canceled: the venue refuses an amend to a total at or below the filled quantity).
        self._amend_floor: dict[str, float] = {}
        # The client id the venue gave an order since (Binance spot's keepPriority amend) -> the order's own.
        self._renamed: dict[str, str] = {}
        # Client id -> (its amends on their way, how many were sent or answered): a query's answer about an order amended
        # meanwhile may tell the terms before the amend (its terms are not taken, see _query).
        self._amending: dict[str, tuple[int, int]] = {}
        # Client id -> the modification due while an amend of the order was on its way, sent once that is answered.
        self._withheld: dict[str, ModifyOrder] = {}
        # Orders whose amend task runs (_amend): an amend on its way, an unanswered one's window, or the query after it.
        self._amend_tasks: set[str] = set()
        # Client id -> why each amend of it the venue refused (or never applied) was not told: the modification kept
        # meanwhile sets all its terms again. Told after that one's answer unless the venue applies that one.
        self._superseded: dict[str, list[str]] = {}
        # Checks a kept modification again as it leaves (the engine's risk gate, bind_modify_check).
        self._modify_check: Callable[[Order, ModifyOrder], bool] | None = None
        # Orders whose cancel the venue refused -> its refusal, until a query sent after it says whether they work.
        self._cancel_refused: dict[str, str] = {}
        # Orders whose cancel the venue answered busy -> when it was, or will be, sent again (clock ns).
        self._cancels_resent: dict[str, int] = {}
        # The orders submitted inside :meth:`oco_pair`, held to be sent as one order list.
        self._pairing: list[Order] | None = None

    @property
    def in_flight(self) -> int:
        """Requests whose task has not ended: their answer (or its absence) not handled yet."""
        return len(self._tasks)

    def requests_queued(self) -> bool:
        """Whether a request was queued since the last call (a feed then yields to the loop so that it leaves)."""
        queued, self._queued = self._queued, False
        return queued

    # ------------------------------------------------------------------ Venue

    def submit(self, order: Order) -> None:
        """Send ``order`` in the background (the answer comes back as events)."""
        self._orders[order.client_order_id] = order
        if self.dry_run:
            now = self.clock.now_ns()
            logger.info("dry run: order {} not sent", order.client_order_id)
            self.emit(OrderRejected(order.strategy_id, order.instrument_id, order.client_order_id, "dry run: not sent", now, now))
            return
        self._submits[order.client_order_id] = None
        if len(self._submits) > self._submits_swept:
            self._forget_closed_submits()
        restores, self._restoring = self._restoring, None
        if restores is not None:
            self._restores[order.client_order_id] = restores
        elif self._submit_timeout_ns is not None:
            self._send_by[order.client_order_id] = self.clock.now_ns() + self._submit_timeout_ns
        if self._pairing is not None:
            self._pairing.append(order)
            return
        replaced, self._swapping = self._swapping, None
        if replaced is not None:
            rid = replaced.client_order_id
            self._swaps[rid] = order
            # Sized on replaced.filled_qty in this step (_swap).
            self._spawn(self._cancel_replace(replaced, order, replaced.filled_qty, self._trims.pop(rid, None)), f"replace:{rid}")
            return
        self._spawn(self._place(order), f"place:{order.client_order_id}")

    def replaced_in_flight(self) -> tuple[str, ...]:
        """Client ids of the working orders whose one-request cancel-replace is in flight (its replacement works
        too, submitted, until the answer or the stream closes one of them)."""
        return tuple(self._swaps)

    @property
    def arms_at_fill(self) -> bool:
        """Always: a bracket's exits go as soon as its entry's fill is known (:attr:`Venue.arms_at_fill`)."""
        return True

    @property
    def lists_oco(self) -> bool:
        """Whether :meth:`oco_pair` sends a limit and a stop as one OCO order list here
        (:attr:`TradingApi.supports_oco`, and not a dry run)."""
        return self.api.supports_oco and not self.dry_run

    def trails_in_oco(self, percent: float) -> bool:
        """Whether :meth:`oco_pair` can send its stop leg as a venue trailing stop ``percent`` % away
        (:meth:`TradingApi.trails_in_oco`)."""
        return self.lists_oco and self.api.trails_in_oco(percent)

    @contextmanager
    def oco_pair(self, trail_percent: float | None = None) -> Iterator[OcoPair]:
        """Send the two orders submitted inside as one OCO order list where the venue has one.

        On a venue whose :class:`TradingApi` ``supports_oco``, the orders submitted in the block
        are held; at its end two of them (a limit and a stop of one side and quantity) go in one
        request, which the yielded :class:`OcoPair` records as ``sent``: the venue then cancels
        one when the other fills. With ``trail_percent`` (only where :meth:`trails_in_oco`) the
        stop leg trails at the venue. Otherwise (another venue, a dry run, an order denied before
        it was sent, a pair that is no OCO) each order is placed on its own as submitted.
        """
        pair = OcoPair(trail_percent=trail_percent)
        if not self.lists_oco or self._pairing is not None:
            yield pair
            return
        held: list[Order] = []
        self._pairing = held
        try:
            yield pair
        finally:
            self._pairing = None
            if len(held) == 2 and _is_oco(*held):
                pair.sent = True
                self._spawn(self._place_oco(*held, trail_percent), f"oco:{held[0].client_order_id}")
            else:
                for order in held:
                    self._spawn(self._place(order), f"place:{order.client_order_id}")

    def cancel(self, order: Order) -> None:
        """Ask the venue to cancel ``order`` in the background; the cancel wins over a cancel-replace of it in
        flight (``OrderModifyRejected``): a two-request one that waits for its cancel places nothing, a
        one-request one done meanwhile has its replacement canceled at once, and no ``OrderReplaced``."""
        coid = order.client_order_id
        if self.dry_run:
            logger.info("dry run: cancel of {} not sent", coid)
            return
        if self._end_replacing(coid) is not None:
            logger.info("order {}: canceled during its cancel-replace; nothing will replace it", coid)
            self._modify_rejected(order, "canceled before its replacement")
        if coid in self._swaps:
            logger.info("order {}: canceled during its cancel-replace; its replacement will not be kept", coid)
            self._swaps_canceled.add(coid)
        if self._withheld.pop(coid, None) is not None:
            logger.info("order {}: canceled while a modification waited for its amend's answer; not sent", coid)
            self._modify_rejected(order, "canceled before it was sent (it waited for the answer to an earlier amend)")
        self._cancels_resent.pop(coid, None)  # the engine times this cancel from now
        self._spawn(self._cancel(order), f"cancel:{coid}")

    def modify(self, order: Order, cmd: ModifyOrder) -> None:
        """Amend ``order`` at the venue, or cancel-replace it where the venue cannot amend (module docstring)."""
        coid = order.client_order_id
        if self.dry_run:
            logger.info("dry run: modify of {} not sent", coid)
            return
        cutting = self._cutting.get(coid)
        if cutting is not None:
            reason = (f"{cutting}: it is being cut to what is left of the modified total; modify the order that "
                      "replaces it (its OrderReplaced follows), or this one if it is left")
            logger.warning("order {}: modify refused: {}", coid, reason)
            self._modify_rejected(order, reason)
            return
        if self.api.supports_amend:
            if coid in self._amend_tasks:
                self._withhold(cmd)
                return
            self._spawn(self._amend(order, cmd), f"amend:{coid}")
            return
        if self.api.can_replace(order) and self.on_replace is not None:
            self._swap(order, cmd)
            return
        if not math.isnan(cmd.trigger_price):
            # Its replacement would come after the cancel: a stop's position unprotected meanwhile.
            reason = "the venue can neither amend nor cancel-replace in one request: a trigger price is not modified"
            logger.warning("order {}: {}", coid, reason)
            self._modify_rejected(order, reason)
            return
        pending = self._replacing.get(coid)
        if pending is not None:  # its cancel is on its way: the one replacement takes both modifications
            merged = _merged(pending, cmd)
            self._replacing[coid] = merged
            self._journal_intent(merged)
            logger.info("order {}: modified again before its cancel-replace's cancel was confirmed; merged", coid)
            return
        logger.info("order {}: the venue cannot amend; canceling it, its replacement follows the cancel", coid)
        self._replacing[coid] = cmd
        self._cancel_answered.discard(coid)
        self._journal_intent(cmd)
        self._canceling.add(coid)
        self._spawn(self._cancel(order), f"cancel:{coid}")

    def _withhold(self, cmd: ModifyOrder) -> None:
        """Keep ``cmd`` for its order until the amend of it on its way is answered (two amends in flight may be
        applied in either order): merged into one kept before, its terms win."""
        coid = cmd.client_order_id
        kept = self._withheld.get(coid)
        self._withheld[coid] = cmd if kept is None else _merged(kept, cmd)
        logger.info("order {}: modified while its amend is on its way; sent once that is answered", coid)

    def _journal_intent(self, cmd: ModifyOrder) -> None:
        """Journal (:attr:`on_replacing`) the two-request cancel-replace of ``cmd``'s order before its cancel is sent."""
        if self.on_replacing is not None:
            now = self.clock.now_ns()
            coid = cmd.client_order_id
            params = {"quantity": cmd.quantity, "price": cmd.price}
            self.on_replacing(ContingentLinked(cmd.strategy_id, cmd.instrument_id, coid, "replace", (coid, ""), params, now, now))

    def resume_swaps(self, intents: Iterable[ContingentLinked], orders: Callable[[str], Order | None]) -> None:
        """Take over the replacements of one-request cancel-replaces a previous process left working.

        ``intents``: their journaled ``ContingentLinked`` ``"replace"`` telling what the replacement was sized
        on (:attr:`~tradebus.engine.kernel.Kernel.journaled_swaps`); ``orders``: the order of a client id (the
        order manager's ``get``). Those whose replacement the journal leaves open are checked by
        :meth:`replace_resumed`: a fill that raced the cancel-replace may have been told (or queried) only now.
        """
        for link in intents:
            old, new = (orders(coid) for coid in link.order_ids)
            if old is not None and new is not None and new.is_open:
                self._resumed_swaps.append((old, new, link.params["sized_on"]))

    def resume_replaces(self, intents: Iterable[ContingentLinked]) -> None:
        """Take over the two-request cancel-replaces a previous process left in flight.

        ``intents``: their journaled ``ContingentLinked`` ``"replace"`` with no replacement id
        (:attr:`~tradebus.engine.kernel.Kernel.journaled_replaces`), taken while the journal leaves
        the order open (tracked here). :meth:`replace_resumed` acts on them.
        """
        for link in intents:
            coid = link.order_ids[0]
            order = self._orders.get(coid)
            if order is None or not order.is_open:
                continue
            params = link.params
            logger.warning("order {}: its cancel-replace was in flight when the previous process stopped; resumed "
                           "once the venue is reconciled", coid)
            self._resumed[coid] = ModifyOrder(
                link.strategy_id, link.instrument_id, coid, link.ts_event, link.ts_init,
                params.get("quantity", math.nan), params.get("price", math.nan),
            )

    def replace_resumed(self) -> None:
        """Finish the cancel-replaces :meth:`resume_replaces` took over, the venue's state of their orders now known.

        Canceled (not filled) at the venue: the replacement is submitted (the risk gate and the
        journal as any order), then ``OrderReplaced``; still working there (the cancel never left):
        cancel-replaced again; filled, or not settled: ``OrderModifyRejected``. A replacement of a one-request
        cancel-replace (:meth:`resume_swaps`) still working whose replaced order filled more at the venue than
        it was sized on (a fill raced the request, and the process stopped before it cut the replacement or
        before the answer) is cut to what is left of the modified total, or canceled (:meth:`_trim_replacement`).
        """
        swaps, self._resumed_swaps = self._resumed_swaps, []
        for old, new, sized_on in swaps:
            venue_filled = old.filled_qty if math.isnan(old.venue_filled_qty) else max(old.filled_qty, old.venue_filled_qty)
            if new.is_open and not old.is_open:
                self._trim_replacement(old, new, sized_on, venue_filled)
        resumed, self._resumed = self._resumed, {}
        for coid, cmd in resumed.items():
            order = self._orders[coid]
            if order.status in (OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED, OrderStatus.TRIGGERED):
                self.modify(order, cmd)
                continue
            qty = (order.quantity if math.isnan(cmd.quantity) else cmd.quantity) - order.filled_qty
            if order.status is not OrderStatus.CANCELED or qty <= 0.0 or self.on_replace is None:
                logger.info("order {} is {} after the restart; its cancel-replace is dropped", coid, order.status.name)
                self._modify_rejected(order, f"{order.status.name} after the restart, before its replacement")
                continue
            self._submit_replacement(order, cmd, qty, None)

    @property
    def reports_funding(self) -> bool:
        """Whether the account's user stream reports the venue's funding payments (:attr:`TradingApi.reports_funding`)."""
        return self.api.reports_funding

    def emit(self, event: Any) -> None:
        """Hand ``event`` to the engine; a cancel-replaced order's cancel comes after its replacement.

        The ``OrderCanceled`` of an order whose one-request cancel-replace is in flight waits for
        the request's answer (it then follows the ``OrderReplaced``), and so does a repeat of it the
        stream sends meanwhile (passed on after it: the order manager reports it, a ``DUPLICATE_EVENT``). That of an order canceled
        for a two-request cancel-replace first submits the replacement, and ``OrderReplaced``.
        """
        if type(event) is OrderTermsReported and not self._terms_news(event):
            return
        if type(event) is OrderCanceled:
            coid = event.client_order_id
            if coid in self._swaps:
                self._held.setdefault(coid, []).append(event)
                return
            if coid in self._replacing:
                if self._hold_for_answer(event):
                    return
                self._replace(coid, event.filled_qty)
        super().emit(event)
        if self._replacing:
            self._replace_if_closed(getattr(event, "client_order_id", ""))

    def _terms_news(self, event: OrderTermsReported) -> bool:
        """Whether the stream's terms of an order go to the engine as an amend made elsewhere: not while an amend of this
        process is on its way (its answer tells them); after one, terms other than the order's may be a frame sent
        before it (the venue's push and its REST answer race), so the order is queried instead, whose answer is judged
        as every query's (:meth:`amended_since`)."""
        amending = self._amending.get(event.client_order_id)
        if amending is None:
            return True
        order = self._orders.get(event.client_order_id)
        if amending[0] == 0 and order is not None and order.is_open:
            terms = OrderStatusReport(event.client_order_id, "", order.status, math.nan, event.ts_event,
                                      quantity=event.quantity, price=event.price, trigger_price=event.trigger_price)
            if venue_terms(order, terms) is not None:
                logger.info("order {}: the venue's stream tells other terms after an amend of ours; querying it", order.client_order_id)
                self._query_soon(order)
        return False

    def _hold_for_answer(self, event: OrderCanceled) -> bool:
        """Hold the stream's cancel of a two-request cancel-replace told before its cancel's request ended, when the
        rate budget has no room to place the replacement before that answer (:meth:`TradingApi.has_room_to_place`):
        the answer's headers may show the minute used up, which the replacement sent now would meet as a refusal
        (a 429). :meth:`_cancel` hands it on once the request ends, or :meth:`_room_made` once the budget's window
        turned with room (an answer lost waits a request timeout; one of the window before says nothing of the next).
        With room, the replacement leaves now."""
        coid = event.client_order_id
        held = self._before_answer.get(coid)
        if held is None:
            if coid not in self._canceling or self.api.has_room_to_place():
                return False
            logger.info("order {}: canceled; its replacement waits for the cancel's answer (the rate budget is near "
                        "its limit)", coid)
            held = self._before_answer[coid] = []
            self._watch_room(coid)
        held.append(event)
        return True

    def _watch_room(self, coid: str) -> None:
        """Call :meth:`_room_made` for ``coid`` when the rate budget may have room again by itself
        (:meth:`TradingApi.seconds_to_room`; never, when it cannot say)."""
        delay = self.api.seconds_to_room()
        if math.isfinite(delay):  # never at once: no room was found just now, so no call loops on the loop
            asyncio.get_running_loop().call_later(max(delay, 0.01), self._room_made, coid)

    def _room_made(self, coid: str) -> None:
        """The stream's cancel of ``coid`` still waits for its request's answer: with room in the rate budget now (its
        window turned), it is handed on and the replacement leaves; else it waits for the answer or the next window."""
        held = self._before_answer.get(coid)
        if held is None:
            return
        if not self.api.has_room_to_place():
            self._watch_room(coid)
            return
        logger.info("order {}: the rate budget has room again before the cancel's answer; its replacement leaves", coid)
        del self._before_answer[coid]
        for event in held:
            self.emit(event)

    def _replace_if_closed(self, coid: str) -> None:
        """Refuse the modification of an order that closed otherwise than by its cancel-replace's cancel."""
        order = self._orders.get(coid)
        if coid in self._replacing and order is not None and not order.is_open:
            self._end_replacing(coid)
            logger.info("order {} closed {} before its replacement; nothing replaced", coid, order.status.name)
            self._modify_rejected(order, f"closed {order.status.name} before its replacement")

    def _replace(self, coid: str, venue_filled: float) -> None:
        """Submit the replacement of ``coid``, whose cancel the venue confirmed with ``venue_filled`` filled
        (NaN: not said), then emit ``OrderReplaced``, before the cancel reaches the engine: what follows
        the order (OCO group, bracket) follows its replacement, as in a one-request cancel-replace."""
        order = self._orders.get(coid)
        cmd = self._end_replacing(coid)
        if order is None or cmd is None:
            return
        filled = order.filled_qty if math.isnan(venue_filled) else max(order.filled_qty, venue_filled)
        qty = (order.quantity if math.isnan(cmd.quantity) else cmd.quantity) - filled
        if not order.is_open or qty <= 0.0 or self.on_replace is None:
            logger.info("order {} closed {} before its replacement; nothing replaced", coid, order.status.name)
            self._modify_rejected(order, f"closed {order.status.name} before its replacement")
            return
        # Still open here: the risk gate checks the replacement as a modification of it.
        self._submit_replacement(order, cmd, qty, coid)

    def _submit_replacement(self, order: Order, cmd: ModifyOrder, qty: float, replaces: str | None) -> None:
        """Submit ``order``'s replacement for ``qty`` (:attr:`on_replace`; ``replaces``: the id the risk gate
        checks it as a modification of, ``None``: a new order), then emit ``OrderReplaced``; refused:
        ``OrderModifyRejected``. The venue canceled ``order``: the replacement is never withdrawn (:meth:`_restore`)."""
        sub = self._replacement(order, cmd, qty)
        replacement = self._restore(order.client_order_id, sub, replaces)
        if replacement.status in (OrderStatus.DENIED, OrderStatus.REJECTED):
            self._modify_rejected(order, f"replacement {replacement.status.name}")
            return
        now = self.clock.now_ns()
        coid = order.client_order_id
        self.emit(OrderReplaced(order.strategy_id, order.instrument_id, coid, replacement.client_order_id, now, now))
        logger.info("order {} replaced by {} ({} @ {})", coid, replacement.client_order_id, qty, sub.price)

    def _restore(self, coid: str, sub: SubmitOrder, replaces: str | None, sized_on: float = math.nan) -> Any:
        """Submit ``sub`` (:attr:`on_replace`, ``replaces=`` unless ``None``, ``sized_on=``: ``coid``'s filled quantity
        ``sub`` was sized on, unless NaN), which takes the place of ``coid``, an order the venue has canceled: sent
        however long the rate limit holds it, never withdrawn (:func:`send_late`)."""
        assert self.on_replace is not None
        self._restoring = f"the order restoring {coid} (canceled at the venue)"
        try:
            if replaces is None:
                return self.on_replace(sub)
            if math.isnan(sized_on):
                return self.on_replace(sub, replaces=replaces)
            return self.on_replace(sub, replaces=replaces, sized_on=sized_on)
        finally:
            self._restoring = None

    def _end_replacing(self, coid: str) -> ModifyOrder | None:
        """Forget the two-request cancel-replace of ``coid``; its modification, if one was pending."""
        self._cancel_answered.discard(coid)
        return self._replacing.pop(coid, None)

    def _replacement(self, order: Order, cmd: ModifyOrder, qty: float) -> SubmitOrder:
        """The new order of a cancel-replace: ``order`` for ``qty`` with the modified price and trigger."""
        now = self.clock.now_ns()
        price = order.price if math.isnan(cmd.price) else cmd.price
        trigger = order.trigger_price if math.isnan(cmd.trigger_price) else cmd.trigger_price
        return SubmitOrder(
            order.strategy_id, order.instrument_id, "", order.side, qty, now, now, order.order_type, price,
            trigger, order.tif, order.post_only, order.reduce_only,
        )

    def _swap(self, order: Order, cmd: ModifyOrder) -> None:
        """Cancel-replace ``order`` in one request: the replacement is submitted through the engine now and
        sent with the cancel (:meth:`submit` sees :attr:`_swapping`)."""
        coid = order.client_order_id
        qty = (order.quantity if math.isnan(cmd.quantity) else cmd.quantity) - order.filled_qty
        if qty <= 0.0 or coid in self._swaps:
            why = "a cancel-replace of it is in flight" if coid in self._swaps else "nothing left to replace"
            self._modify_rejected(order, why)
            return
        assert self.on_replace is not None
        self._swapping = order
        try:
            replacement = self.on_replace(self._replacement(order, cmd, qty), replaces=coid, sized_on=order.filled_qty)
        finally:
            self._swapping = None
        if coid not in self._swaps:  # the replacement was denied before it was sent
            self._modify_rejected(order, f"replacement {getattr(replacement, 'status', '?')}")

    def bind_modify_check(self, check: Callable[[Order, ModifyOrder], bool]) -> None:
        """The risk gate's check of a modification (the execution engine's), asked again of one kept while an amend of
        its order was on its way, as it leaves: the last price, the positions, the working orders or the trading state
        may have moved since it was made (see :meth:`Venue.bind_modify_check`)."""
        self._modify_check = check

    def bind_repeat_expected(self, expect: Callable[[str], None]) -> None:
        """Told each order whose cancel was emitted from its cancel-replace's answer: the user stream's repeat
        of it follows (the execution engine's order manager; see :meth:`Venue.bind_repeat_expected`)."""
        self._expect_repeat = expect

    def submit_ended_ns(self, client_order_id: str) -> int | None:
        """When the submit request of this order ended, clock ns; ``None`` while it is on its way (it may
        still wait behind a rate-limit pause, which a later query can pass first); ``0`` for an order not
        sent by this process, or closed (its submit's end may have been forgotten)."""
        return self._submits.get(client_order_id, 0)

    def forget(self, client_order_id: str) -> bool:
        """Drop this closed order (the order manager forgets it, :meth:`~tradebus.execution.orders.OrderManager.release`):
        the stream parser no longer finds it (a late fill is an unknown order's) and a query is no longer sent;
        ``False`` (kept) while a query, an amend or a cancel-replace of it is on its way: an amend's task drops the
        modification kept behind it with ``OrderModifyRejected`` once it ends, which it cannot do of an order forgotten."""
        if (
            client_order_id in self._querying or client_order_id in self._replacing or client_order_id in self._swaps
            or client_order_id in self._held or client_order_id in self._amend_tasks or client_order_id in self._withheld
        ):
            return False
        self._orders.pop(client_order_id, None)
        if self._renamed:
            for alias in [a for a, coid in self._renamed.items() if coid == client_order_id]:
                del self._renamed[alias]
        self._submits.pop(client_order_id, None)
        self._answers.pop(client_order_id, None)
        self._cancel_refused.pop(client_order_id, None)
        self._amend_floor.pop(client_order_id, None)
        self._cancels_resent.pop(client_order_id, None)
        self._amending.pop(client_order_id, None)
        self._withheld.pop(client_order_id, None)
        return True

    def cancel_resent_ns(self, client_order_id: str) -> int | None:
        """When the latest cancel of this order, refused as busy (:class:`OrderBusy`), was last sent again or will be
        after its wait (:attr:`busy_delays`), clock ns; ``None``: not sent again."""
        return self._cancels_resent.get(client_order_id)

    def _forget_closed_submits(self) -> None:
        """Drop the ended submits of closed orders (the engine asks :meth:`submit_ended_ns` only of a SUBMITTED or
        UNKNOWN one; a closed one answers 0); the next sweep waits until as many submits again were added."""
        orders = self._orders
        self._submits = {
            coid: ended for coid, ended in self._submits.items()
            if ended is None or ((order := orders.get(coid)) is not None and order.is_open)
        }
        self._submits_swept = max(_SUBMITS_SWEEP, 2 * len(self._submits))

    def set_submit_timeout(self, timeout_ns: int | None) -> None:
        """Send each submit within ``timeout_ns`` of :meth:`submit` or not at all (:func:`send_within`; ``None``: no limit;
        the execution engine sets its :class:`~tradebus.execution.engine.OrderTimeouts` ``submit_ns``), except one
        restoring an order the venue has canceled (:func:`send_late`: late rather than absent)."""
        self._submit_timeout_ns = timeout_ns

    def set_query_retry(self, retry_ns: int | None) -> None:
        """Query an order whose query after an unanswered amend's window got no answer again ``retry_ns`` later, then
        twice as long each time up to :data:`QUERY_RETRY_CAP_S` (the execution engine sets its
        :class:`~tradebus.execution.engine.OrderTimeouts` ``retry_ns``; ``None`` keeps 5 s, and says the engine does
        not query again an order whose query it made got no answer)."""
        self._engine_retries = retry_ns is not None
        if retry_ns is not None:
            self._query_retry_s = retry_ns / 1e9

    async def _submitting(self, request: Coroutine[Any, Any, _T], *orders: Order, replaces: str = "") -> _T:
        """``request``'s answer, the submit of ``orders``: when it ends is :meth:`submit_ended_ns`; withdrawn
        (:class:`RateLimited`) if the rate limit would hold it past the first of their submit timeouts, unless it
        restores an order the venue has canceled (:meth:`_restore`: it waits, :func:`send_late`). ``replaces``: the
        working order a cancel-replace of ``orders`` replaces (``""``: none).

        Withdrawn too (:class:`VenueRejected` ``"withdrawn, never sent: <why>"``) while :attr:`refusal` gives a
        reason: asked in the step of the event loop that starts the request, and again by the rate budget
        after a wait (:func:`send_unless`), so a request that leaves was allowed when it left."""
        send_by = [self._send_by.pop(order.client_order_id) for order in orders if order.client_order_id in self._send_by]
        restores = [self._restores.pop(order.client_order_id) for order in orders if order.client_order_id in self._restores]
        try:
            refusal = None if self.refusal is None else partial(self.refusal, orders, (replaces,) if replaces else ())
            if refusal is not None:
                why = refusal()
                if why is not None:
                    request.close()
                    raise VenueRejected(f"withdrawn, never sent: {why}")
            with send_unless(refusal):
                if restores:
                    with send_late(restores[0]):
                        return await request
                if not send_by:
                    return await request
                deadline = min(send_by)
                with send_within(lambda: (deadline - self.clock.now_ns()) / 1e9):
                    return await request
        except VenueRejected:
            if self.before_refusal is not None:
                self.before_refusal()
            raise
        finally:
            now = self.clock.now_ns()
            for order in orders:
                self._submits[order.client_order_id] = now

    def query_order(self, client_order_id: str) -> OrderStatusReport | None:
        """The latest answer of the venue about this order, or start asking (raises until it arrives)."""
        if client_order_id in self._answers:
            return self._answers.pop(client_order_id)
        order = self._orders.get(client_order_id)
        if order is None:
            raise VenueError(f"order {client_order_id}: not sent by this venue; nothing to query")
        if client_order_id not in self._querying:
            self._querying.add(client_order_id)
            self._spawn(self._query(order, self._engine_asks_again), f"query:{client_order_id}")
        raise NoAnswer(f"order {client_order_id}: query sent, answer pending")

    def answer_held(self, client_order_id: str) -> OrderStatusReport | None:
        """The venue's answer about this order not yet taken by :meth:`query_order` (``None``: none, or "no such order")."""
        return self._answers.get(client_order_id)

    def answer(self, report: OrderStatusReport) -> None:
        """Take ``report`` (from a list the venue gave, e.g. its open orders) as the answer to the next query of its order."""
        self._answers[report.client_order_id] = report

    def amend_marks(self) -> dict[str, tuple[int, int]]:
        """Each order's amends of this process now: ``(on their way, sent or answered)``, for :meth:`amended_since`."""
        return dict(self._amending)

    def amended_since(self, marks: dict[str, tuple[int, int]], client_order_id: str) -> bool:
        """Whether an amend of this process of the order was on its way at ``marks`` (:meth:`amend_marks`) or since:
        a venue's answer read in between may tell the terms before the amend, not an amend unheard here."""
        before = marks.get(client_order_id, (0, 0))
        return bool(before[0]) or self._amending.get(client_order_id, (0, 0)) != before

    def track(self, order: Order) -> None:
        """Know ``order`` (journaled by a previous process) so that it can be queried and its events parsed."""
        self._orders[order.client_order_id] = order

    def resume(
        self, positions: dict[str, float], previous_orders: Iterable[Order], journaled: Iterable[Order] = ()
    ) -> None:
        """Track the orders a previous process left UNKNOWN (the venue keeps its own positions and ids)."""
        for order in previous_orders:
            self.track(order)

    def close(self) -> None:
        """Nothing to release synchronously; :meth:`aclose` closes the session."""

    def order(self, client_order_id: str) -> Order | None:
        """The order with this client id sent (or tracked) by this venue and not forgotten since (:meth:`forget`), if any;
        also by the client id the venue gave it since (:meth:`renamed`)."""
        order = self._orders.get(client_order_id)
        if order is None and client_order_id in self._renamed:
            order = self._orders.get(self._renamed[client_order_id])
        return order

    def renamed(self, venue_client_id: str, order: Order) -> None:
        """The venue calls ``order`` ``venue_client_id`` now (Binance spot's amend that keeps priority gives the order
        a new client order id unless the user sends its own): the stream's frames under that id are the order's."""
        if self._renamed.get(venue_client_id) != order.client_order_id:
            self._renamed[venue_client_id] = order.client_order_id
            logger.warning("order {} ({}): the venue calls it {} now (renamed by an amend made at the venue); its events "
                           "under that id are the order's", order.client_order_id, order.instrument_id, venue_client_id)

    # ------------------------------------------------------------------ tasks

    def _spawn(self, coro: Coroutine[Any, Any, object], name: str) -> None:
        if self._closed:
            coro.close()
            logger.debug("{}: venue closed, request not sent", name)
            return
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._queued = True
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_report_failure)

    async def _place(self, order: Order) -> None:
        coid = order.client_order_id
        self.requests["place"] += 1
        try:
            ack = await self._submitting(self.api.place(order), order)
        except VenueRejected as exc:
            now = self.clock.now_ns()
            logger.info("order {} rejected by the venue: {}", coid, exc)
            self.emit(OrderRejected(order.strategy_id, order.instrument_id, coid, str(exc), now, now))
            return
        except NoAnswer as exc:
            logger.warning("order {}: no answer to the submit ({}); the query will settle it", coid, exc)
            return
        if order.status in _UNACKNOWLEDGED:  # else the user stream told it first
            now = self.clock.now_ns()
            self.emit(OrderAccepted(order.strategy_id, order.instrument_id, coid, ack.venue_order_id, ack.ts_event, now))

    async def _place_oco(self, first: Order, second: Order, trail_percent: float | None = None) -> None:
        self.requests["place"] += 1
        ids = f"{first.client_order_id}, {second.client_order_id}"
        try:
            acks = await self._submitting(self.api.place_oco(first, second, trail_percent), first, second)
        except VenueRejected as exc:
            now = self.clock.now_ns()
            logger.info("OCO order list {} rejected by the venue: {}", ids, exc)
            for order in (first, second):
                self.emit(OrderRejected(order.strategy_id, order.instrument_id, order.client_order_id, str(exc), now, now))
            return
        except NoAnswer as exc:
            logger.warning("OCO order list {}: no answer to the submit ({}); the queries will settle it", ids, exc)
            return
        for order, ack in zip((first, second), acks):
            if order.status in _UNACKNOWLEDGED:  # else the user stream told it first
                now = self.clock.now_ns()
                self.emit(OrderAccepted(order.strategy_id, order.instrument_id, order.client_order_id, ack.venue_order_id, ack.ts_event, now))

    async def _amend(self, order: Order, cmd: ModifyOrder | None) -> None:
        """Amend ``order`` by ``cmd``, then by each modification kept meanwhile (:meth:`_withhold`), one at a time."""
        coid = order.client_order_id
        self._amend_tasks.add(coid)
        try:
            await self._amend_each(order, cmd)
        finally:
            self._amend_tasks.discard(coid)
            self._superseded.pop(coid, None)  # left only by a task canceled at the daemon's stop

    async def _amend_each(self, order: Order, cmd: ModifyOrder | None) -> None:
        coid = order.client_order_id
        amending = self._amending
        while cmd is not None:
            out, steps = amending.get(coid, (0, 0))
            amending[coid] = (out + 1, steps + 1)
            unanswered = False
            try:
                unanswered = await self._send_amend(order, cmd)
            finally:
                now_out = amending.get(coid)  # gone: the order was forgotten meanwhile
                if now_out is not None:
                    amending[coid] = (now_out[0] - 1, now_out[1] + 1)
            known = not unanswered or await self._judge_unanswered(order, cmd)
            cmd = self._withheld.pop(coid, None)
            if cmd is not None and not order.is_open:
                logger.info("order {}: {} while a modification waited for its amend's answer; not sent", coid, order.status)
                self._modify_rejected(order, f"order is {order.status} (closed before it was sent)")
                self._tell_superseded(order)
                return
            if cmd is not None and known and _applied(order, cmd):
                # The amend before set these terms (a trailing stop's move made again after a refusal of another term
                # was told): the venue holds them; answered without a request.
                logger.info("order {}: the modification kept has the terms the venue holds now; not sent", coid)
                self._modified(order, cmd)
                return
            if cmd is not None and self._modify_check is not None and not self._modify_check(order, cmd):
                # The risk gate passed it when it was made; what it checks moved since (OrderDenied told).
                self._tell_superseded(order)
                return

    async def _judge_unanswered(self, order: Order, cmd: ModifyOrder) -> bool:
        """Tell whether the venue applied ``cmd``, an amend of ``order`` left unanswered, once its window is over: the
        venue has applied it or never will, so a query's terms are final until the next amend (which leaves once they
        are known). Applied, the query's terms told it (``OrderModified``); not, it is refused as any amend. A query
        that gets no answer is made again (:meth:`set_query_retry`) until one is answered, the order closes or the
        daemon stops (the order is not forgotten meanwhile: :meth:`forget` keeps it while its amend's task runs).
        Whether the order's terms here are the venue's now (``False``: the daemon stopped before any query was
        answered; the amend is not answered, a restart takes the venue's terms)."""
        coid = order.client_order_id

        def then(delay: float) -> str:
            if self._stopping:
                return "the daemon is stopping: its unanswered amend is left so (a restart takes the venue's terms)"
            if not order.is_open:
                return f"the order is {order.status}: its unanswered amend is refused (closed before the venue answered)"
            return f"its unanswered amend's answer waits for it: queried again in {delay:g} s"

        if await self._query_backing_off(order, then):
            if _applied(order, cmd):
                self._superseded.pop(coid, None)  # its terms answer the amends it set again
                return True
        elif self._stopping:
            return False
        if not order.is_open:
            reason = f"order is {order.status} (closed before the venue answered)"
        else:
            reason = f"no answer, and not applied within the venue's window ({self.api.amend_expiry_s(order):g} s)"
        self._refuse_amend(order, cmd, reason)
        return True

    def _floor_waits(self, order: Order, delay: float) -> str:
        """What follows a query left unanswered after the venue refused an amend of ``order`` to a lower total, for its
        log line (:meth:`_judge_amend_refusal` judges the first answer)."""
        if self._stopping:
            return ("the daemon is stopping: whether fills reached its refused amend's total is not known (its rest is "
                    "not canceled)")
        if not order.is_open:
            return f"the order is {order.status}: nothing of it works on"
        return (f"whether fills reached its refused amend's total waits for it (its rest is canceled if so): queried "
                f"again in {delay:g} s")

    async def _query_backing_off(self, order: Order, then: Callable[[float], str]) -> bool:
        """Query ``order`` until the venue answers one query, the order closes or the daemon stops; whether one was
        answered. The first query left unanswered is made again after the engine's ``retry_ns``
        (:meth:`set_query_retry`), each next after twice as long, up to :data:`QUERY_RETRY_CAP_S`. ``then(delay)``:
        what follows a query left unanswered, for its log line."""
        delay = self._query_retry_s
        while order.is_open:
            self._querying.add(order.client_order_id)
            if await self._query(order, partial(then, delay)):
                return True
            if self._stopping or not order.is_open:
                break
            await self._rest(delay)
            delay = min(2.0 * delay, max(self._query_retry_s, QUERY_RETRY_CAP_S))
        return False

    def _refuse_amend(self, order: Order, cmd: ModifyOrder, reason: str) -> bool:
        """Tell the strategy the venue did not apply ``cmd`` (``OrderModifyRejected``, then the refusals it superseded),
        or keep that to tell later when the modification kept meanwhile sets every term ``cmd`` did (its answer is the
        strategy's unless the venue does not apply it either); whether it was told."""
        coid = order.client_order_id
        kept = self._withheld.get(coid)
        if kept is not None and order.is_open and _covers(kept, cmd):
            self._superseded.setdefault(coid, []).append(reason)
            return False
        self._modify_rejected(order, reason)
        self._tell_superseded(order)
        return True

    def _tell_superseded(self, order: Order) -> None:
        """Refuse (``OrderModifyRejected``) the amends of ``order`` whose refusal waited for the modification kept behind
        them: that one was not applied either."""
        for reason in self._superseded.pop(order.client_order_id, ()):
            self._modify_rejected(order, reason)

    async def _send_amend(self, order: Order, cmd: ModifyOrder) -> bool:
        """Send one amend of ``order``; ``True`` when it got no answer and its window (:meth:`TradingApi.amend_expiry_s`)
        has passed since, the venue's terms of the order now final until the next amend."""
        coid = order.client_order_id
        try:
            amend = partial(self.api.amend, order, cmd.quantity, cmd.price, cmd.trigger_price)
            if not await self._send_unless_busy(order, "amend", amend):
                self._modify_rejected(order, f"order is {order.status} (closed while the venue was busy with it)")
                self._tell_superseded(order)
                return False
        except VenueRejected as exc:
            if not self._refuse_amend(order, cmd, str(exc)):
                logger.info("amend of {} refused: {}; the modification made since is sent", coid, exc)
                return False
            logger.info("amend of {} refused: {}; querying", coid, exc)
            if cmd.quantity < order.quantity:
                # Until a query tells whether fills reached the lower total, the rest works on: asked again with backoff.
                # Refused, the amend is not on its way meanwhile: the venue's terms (its queries', its stream's) stand.
                self._amend_floor[coid] = cmd.quantity
                marks = self._amending.get(coid)
                if marks is not None:
                    self._amending[coid] = (marks[0] - 1, marks[1] + 1)
                try:
                    await self._query_backing_off(order, partial(self._floor_waits, order))
                finally:
                    now_out = self._amending.get(coid)  # gone: the order was forgotten meanwhile
                    if marks is not None and now_out is not None:
                        self._amending[coid] = (now_out[0] + 1, now_out[1])  # _amend_each's count of it, ended there
            else:
                self._query_soon(order)
            return False
        except NoAnswer as exc:
            expiry = self.api.amend_expiry_s(order)
            if expiry is None:
                logger.warning("amend of {}: no answer ({}); querying (the order may or may not be amended)", coid, exc)
                self._query_soon(order)
                return False
            # Another amend now could reach the venue first and be undone by this one, applied after it.
            logger.warning("amend of {}: no answer ({}); the venue may apply it for {:g} s more (its window): the order is "
                           "queried then, and amended again only after that", coid, exc, expiry)
            await asyncio.sleep(expiry)
            return True
        self._amend_floor.pop(coid, None)
        self._modified(order, cmd)
        return False

    def _modified(self, order: Order, cmd: ModifyOrder) -> None:
        """``OrderModified``: the venue holds ``cmd``'s terms (and so answers the amends it set again)."""
        coid = order.client_order_id
        self._superseded.pop(coid, None)
        now = self.clock.now_ns()
        qty = order.quantity if math.isnan(cmd.quantity) else cmd.quantity
        price = order.price if math.isnan(cmd.price) else cmd.price
        trigger = order.trigger_price if math.isnan(cmd.trigger_price) else cmd.trigger_price
        self.emit(OrderModified(order.strategy_id, order.instrument_id, coid, qty, price, trigger, now, now))

    async def _cancel_replace(self, order: Order, replacement: Order, sized_on: float, trim: str | None) -> None:
        """Cancel-replace ``order`` by ``replacement`` in one request; ``sized_on``: ``order``'s filled quantity the
        replacement was sized on (the venue may have filled more: :meth:`_trim_replacement`); ``trim``: why it is a cut
        of a replacement a fill raced (``None``: it is not), which its failure cancels."""
        coid, new = order.client_order_id, replacement.client_order_id
        self.requests["replace"] += 1
        try:
            ack = await self._submitting(self.api.replace(order, replacement), replacement, replaces=coid)
        except VenueRejected as exc:
            self._swaps.pop(coid, None)
            canceled = self._take_swap_canceled(coid)
            now = self.clock.now_ns()
            self.emit(OrderRejected(replacement.strategy_id, replacement.instrument_id, new, str(exc), now, now))
            venue_filled = exc.canceled_filled_qty if isinstance(exc, ReplacementRejected) else math.nan
            if isinstance(exc, ReplacementRejected) and canceled:
                logger.info("cancel-replace of {}: canceled, replacement {} refused ({}); the order stays canceled", coid, new, exc)
                self._modify_rejected(order, "canceled during its cancel-replace")
                self._pass_cancel(order, now, "canceled", venue_filled)
                return
            if isinstance(exc, ReplacementRejected) and self.on_replace is not None:
                # Canceled, the new order refused: the order is placed again as it was, alone (the
                # venue was without it for this round trip), for what the venue left of it; what
                # followed it follows the new one.
                filled = order.filled_qty if math.isnan(venue_filled) else max(order.filled_qty, venue_filled)
                # A cut's order is placed again for what is left of the cut's total, not of its own.
                left = order.quantity - filled if trim is None else replacement.quantity - (filled - sized_on)
                if trim is not None and not left > 1e-9 * replacement.quantity:
                    logger.warning("order {}: canceled, its cut {} refused ({}); nothing left to trade ({} filled)", coid, new, exc, filled)
                    self._modify_rejected(order, str(exc))
                    self._pass_cancel(order, now, "canceled", venue_filled)
                    return
                logger.error("cancel-replace of {}: canceled, replacement {} refused ({}); placing it again for {}", coid, new, exc, left)
                nan = math.nan
                keep = ModifyOrder(order.strategy_id, order.instrument_id, coid, now, now, nan, nan, nan)
                again = self._restore(coid, self._replacement(order, keep, left), coid, filled)
                self.emit(OrderReplaced(order.strategy_id, order.instrument_id, coid, again.client_order_id, now, now))
                self._pass_cancel(order, now, filled_qty=venue_filled)
                return
            logger.info("cancel-replace of {} refused: {}; querying", coid, exc)
            self._modify_rejected(order, str(exc))
            self._release_held(coid)
            if trim is not None and order.is_open:
                # Still working for more than is left to trade (withdrawn unsent, e.g. by the trading state): a cancel goes.
                logger.warning("order {}: its cut refused ({}); canceling it", coid, exc)
                self._cancel_replacement(order, trim)
            self._query_soon(order)
            return
        except NoAnswer as exc:
            # Either may have happened: both are queried (the replacement by its submit timeout).
            logger.warning("cancel-replace of {}: no answer ({}); querying", coid, exc)
            self._swaps.pop(coid, None)
            if self._take_swap_canceled(coid):
                self._cancel_replacement(replacement)  # it may have been placed
            self._release_held(coid)
            if trim is not None and order.is_open:
                # A cut that may never have arrived: the order may still work for more than is left to trade. Its
                # cancel is right either way (STOP_ON_FAILURE: the cut's replacement exists only if it was canceled).
                logger.warning("order {}: its cut got no answer; canceling it", coid)
                self._cancel_replacement(order, trim)
            self._query_soon(order)
            return
        self._swaps.pop(coid, None)
        now = self.clock.now_ns()
        if replacement.status in _UNACKNOWLEDGED:
            self.emit(OrderAccepted(replacement.strategy_id, replacement.instrument_id, new, ack.venue_order_id, ack.ts_event, now))
        if self._take_swap_canceled(coid):
            logger.info("order {}: canceled during its cancel-replace; canceling its replacement {}", coid, new)
            self._cancel_replacement(replacement)
            self._modify_rejected(order, "canceled during its cancel-replace")
            self._pass_cancel(order, ack.ts_event, "canceled", ack.canceled_filled_qty)
            return
        if _raced(sized_on, ack.canceled_filled_qty):
            # Its cut leaves once the events are handed on: a modify from their handlers would race it.
            self._cutting[new] = self._raced_why(coid, ack.canceled_filled_qty, sized_on)
        try:
            self.emit(OrderReplaced(order.strategy_id, order.instrument_id, coid, new, ack.ts_event, now))
            self._pass_cancel(order, ack.ts_event, filled_qty=ack.canceled_filled_qty)
        finally:
            self._cutting.pop(new, None)
        logger.info("order {} replaced by {} in one request", coid, new)
        self._trim_replacement(order, replacement, sized_on, ack.canceled_filled_qty)

    def _trim_replacement(self, order: Order, replacement: Order, sized_on: float, venue_filled: float) -> None:
        """Take out of ``replacement`` what ``order`` filled at the venue before its cancel beyond the ``sized_on``
        the replacement was sized on (``venue_filled``: the cancel-replace's answer's, NaN: not told), a fill that
        raced the request, so that the two never fill more than the modification asked: the replacement is
        cancel-replaced for what is left (:meth:`_swap`, the same check on its answer), or canceled when nothing is
        left or that cannot be sent (its own cancel-replace in flight, or its replacement refused before it left)."""
        if not _raced(sized_on, venue_filled):
            return
        coid, new = order.client_order_id, replacement.client_order_id
        total = replacement.quantity - (venue_filled - sized_on)
        logger.warning(
            "order {}: {} filled at the venue before its cancel-replace canceled it, {} known when replacement {} was "
            "sized for {}; reducing {} to {} in all", coid, venue_filled, sized_on, new, replacement.quantity, new, total,
        )
        if not replacement.is_open:
            return
        why = self._raced_why(coid, venue_filled, sized_on)
        if total > replacement.filled_qty * (1.0 + 1e-9) and new not in self._swaps and self.api.can_replace(replacement):
            now = self.clock.now_ns()
            nan = math.nan
            self._trims[new] = why
            self._swap(replacement, ModifyOrder(replacement.strategy_id, replacement.instrument_id, new, now, now, total, nan, nan))
            if new in self._swaps:
                return
            self._trims.pop(new, None)
        logger.warning("order {}: replacement {} canceled instead of reduced to {} ({} filled)", coid, new, total, replacement.filled_qty)
        self._cancel_replacement(replacement, why)

    @staticmethod
    def _raced_why(coid: str, venue_filled: float, sized_on: float) -> str:
        """Why the replacement of ``coid`` is cut: ``coid`` filled ``venue_filled`` before the cancel, beyond the ``sized_on`` it was sized on."""
        return f"its order {coid} filled {venue_filled} before its cancel-replace's cancel, {sized_on} known when it was sized"

    def _cancel_replacement(self, replacement: Order, reason: str = "its order was canceled during the cancel-replace") -> None:
        """Cancel the replacement of a cancel-replace (its order canceled meanwhile, or a fill that raced it:
        ``reason``; or an order whose amend a fill raced), through :attr:`on_cancel` when set (the engine then times the cancel out and queries the
        replacement), else directly."""
        if self.on_cancel is None:
            self.cancel(replacement)
            return
        now = self.clock.now_ns()
        self.on_cancel(CancelOrder(replacement.strategy_id, replacement.instrument_id, replacement.client_order_id, now, now, reason))

    def _take_swap_canceled(self, coid: str) -> bool:
        """Whether ``coid`` was canceled while its one-request cancel-replace was in flight (forgotten now)."""
        canceled = coid in self._swaps_canceled
        self._swaps_canceled.discard(coid)
        return canceled

    def _pass_cancel(self, order: Order, ts_event: int, reason: str = "replaced", filled_qty: float = math.nan) -> None:
        """Emit the cancel of a cancel-replaced order: the user stream's, held, else one from the answer
        (``filled_qty``: the order's filled quantity the answer reported, NaN: none), whose repeat by the
        stream is then expected (:meth:`bind_repeat_expected`)."""
        held = self._held.pop(order.client_order_id, None)
        if held is not None:
            for event in held:
                self.emit(event)
            return
        now = self.clock.now_ns()
        self.emit(OrderCanceled(order.strategy_id, order.instrument_id, order.client_order_id, reason, ts_event, now, filled_qty))
        if self._expect_repeat is not None and order.status is OrderStatus.CANCELED:
            self._expect_repeat(order.client_order_id)

    def _release_held(self, coid: str) -> None:
        for event in self._held.pop(coid, ()):
            self.emit(event)

    async def _send_unless_busy(self, order: Order, kind: str, send: Callable[[], Awaitable[None]]) -> bool:
        """Send a cancel or amend (``kind``) of ``order``, again after each of :attr:`busy_delays` while the
        venue answers :class:`OrderBusy` (each through the rate budget, as any request); ``False`` when the
        order closed during a wait (nothing more sent). The last refusal, busy or not, is raised. A cancel's
        re-sends are told to the engine's cancel timeout (:meth:`cancel_resent_ns`).
        """
        coid = order.client_order_id
        for delay in self.busy_delays:
            self.requests[kind] += 1
            try:
                await send()
                return True
            except OrderBusy as exc:
                logger.info("{} of {}: {}; sent again in {:g} s", kind, coid, exc, delay)
            if kind == "cancel":
                self._cancels_resent[coid] = self.clock.now_ns() + round(delay * 1e9)
            await asyncio.sleep(delay)
            if kind == "cancel":
                self._cancels_resent[coid] = self.clock.now_ns()
            if not order.is_open:
                logger.info("{} of {}: the order is {} now; not sent again", kind, order.client_order_id, order.status)
                return False
        self.requests[kind] += 1
        await send()
        return True

    async def _cancel(self, order: Order) -> None:
        coid = order.client_order_id
        if not order.is_open:  # closed before its cancel left (a submit withdrawn unsent: :meth:`_submitting`)
            logger.info("cancel of {}: the order is {}; not sent", coid, order.status)
            self._canceling.discard(coid)
            return
        try:
            await self._send_unless_busy(order, "cancel", lambda: self.api.cancel(order))
        except CancelPending as exc:
            logger.info("cancel of {}: {}; an earlier cancel is being done", coid, exc)
        except VenueRejected as exc:
            # Closed at the venue (filled, canceled), or refused while it works: the query tells which.
            logger.info("cancel of {} refused: {}; querying", coid, exc)
            if coid not in self._replacing:
                self._cancel_refused[coid] = str(exc)
                self._query_soon(order)
        except NoAnswer as exc:
            if self.clock.stopped:  # a daemon's stop: its timers, the cancel timeouts among them, have stopped
                logger.warning("cancel of {}: no answer ({}); {}", coid, exc, _STOPPING)
            else:
                logger.warning("cancel of {}: no answer ({}); the cancel timeout will query", coid, exc)
        finally:
            self._canceling.discard(coid)
        for event in self._before_answer.pop(coid, ()):  # the stream told the cancel before its answer: handed on now
            self.emit(event)
        if coid in self._replacing:
            # The replacement waits for the cancel, confirmed by the stream or a query sent from now on
            # (a cancel-replace has no engine timeout of its own).
            self._cancel_answered.add(coid)
            self._query_until_answered(order)

    def _modify_rejected(self, order: Order, reason: str) -> None:
        now = self.clock.now_ns()
        self.emit(OrderModifyRejected(order.strategy_id, order.instrument_id, order.client_order_id, reason, now, now))

    def _query_until_answered(self, order: Order) -> None:
        """Query ``order`` through the engine (:attr:`on_answer`), which asks again until the venue answers;
        a query of the venue's own is asked once."""
        if self.on_answer is None:
            self._query_soon(order)
            return
        self.on_answer(order.client_order_id)

    def _query_soon(self, order: Order) -> None:
        if order.client_order_id not in self._orders:
            logger.info("order {}: closed and forgotten; not queried", order.client_order_id)
            return
        if order.client_order_id not in self._querying:
            self._querying.add(order.client_order_id)
            self._spawn(self._query(order, self._asked_once), f"query:{order.client_order_id}")

    @property
    def _stopping(self) -> bool:
        """Whether the daemon is stopping (its clock's timers stopped) or this venue closed: nothing queries again."""
        return self._closed or self.clock.stopped

    def last_queries(self) -> None:
        """The daemon's stop queries, once, each order still open here now (``live.cancel_on_stop``'s deadline): a query
        left unanswered from now on is asked again only by a restart on the journal, as its warning says."""
        self._last_queries = True

    def _stop_asks(self) -> str:
        """What follows a query that got no answer while the daemon stops, for its log line."""
        return _LAST_QUERIES if self._last_queries else _STOPPING

    def _engine_asks_again(self) -> str:
        """What follows a query the engine made (:meth:`query_order`) that got no answer, for its log line."""
        if self._stopping:
            return self._stop_asks()
        if self._engine_retries:
            return f"the engine asks again within {self._query_retry_s:g} s (its retry interval)"
        return "the engine asks again only at its next query of the order"

    def _asked_once(self) -> str:
        """What follows a query of this venue's own (:meth:`_query_soon`) that got no answer, for its log line."""
        return self._stop_asks() if self._stopping else _ASKED_ONCE

    async def _query(self, order: Order, then: Callable[[], str]) -> bool:
        """Query ``order`` and hand the answer on (:attr:`on_answer`); whether the venue answered. ``then()``: what
        follows no answer (what asks again), for the log line."""
        coid = order.client_order_id
        # A query sent before a cancel-replace's cancel was answered may have been processed before the cancel.
        judges_replace = coid in self._cancel_answered
        # Only a query sent after a cancel's refusal tells whether the order worked on after it.
        judges_cancel = coid in self._cancel_refused
        judges_amend = coid in self._amend_floor
        marks = {coid: self._amending[coid]} if coid in self._amending else {}
        self.requests["query"] += 1
        try:
            report = await self.api.query(order)
        except (NoAnswer, VenueRejected) as exc:
            logger.warning("query of {}: no answer ({}); {}", coid, exc, then())
            return False
        finally:
            self._querying.discard(coid)
        if report is not None and report.client_order_id != coid:
            if report.client_order_id and report.venue_order_id == order.venue_order_id:
                self.renamed(report.client_order_id, order)  # asked by its venue order id, the venue names it anew
            report = msgspec.structs.replace(report, client_order_id=coid)
        if report is None:
            report = self._forgotten(order)
        elif self.amended_since(marks, coid):
            report = msgspec.structs.replace(report, quantity=math.nan, price=math.nan, trigger_price=math.nan)
        self._answers[coid] = report
        if coid in self._replacing and report is not None and report.status is OrderStatus.CANCELED:
            self._replace(coid, report.filled_qty)  # the cancel of a cancel-replace confirmed by a query, not the stream
        if self.on_answer is not None:
            self.on_answer(coid)
        if coid in self._cancel_refused:
            self._judge_cancel_refusal(order, report, judges_cancel)
        if coid in self._amend_floor:
            self._judge_amend_refusal(order, report, judges_amend)
        if coid in self._replacing:
            self._replace_if_closed(coid)
            if coid not in self._replacing:
                return True
            if judges_replace:
                self._end_replacing(coid)
                logger.warning("order {}: still working after its cancel-replace's cancel; modification abandoned", coid)
                self._modify_rejected(order, "still working after its cancel-replace's cancel")
            elif coid in self._cancel_answered:
                self._query_until_answered(order)  # the cancel was answered while this query was out: ask again
        return True

    def _judge_cancel_refusal(self, order: Order, report: OrderStatusReport | None, judges: bool) -> None:
        """Tell the strategy (``OrderCancelRejected``) that the venue refused the cancel of ``order`` if the answer
        to a query sent after the refusal says it still works; one that says it closed told what happened."""
        coid = order.client_order_id
        if not judges:
            self._query_soon(order)  # the refusal came while this query was out: ask again
            return
        reason = self._cancel_refused.pop(coid)
        if report is None or report.status not in _WORKING or not order.is_open:
            return
        logger.warning("order {}: the venue refused its cancel ({}) and still works it", coid, reason)
        now = self.clock.now_ns()
        self.emit(OrderCancelRejected(order.strategy_id, order.instrument_id, coid, reason, now, now))

    def _judge_amend_refusal(self, order: Order, report: OrderStatusReport | None, judges: bool) -> None:
        """Cancel ``order`` if the answer to a query sent after the venue refused its amend to a lower total says it
        still works with at least that total filled (a fill raced the amend: the strategy wants no more)."""
        coid = order.client_order_id
        if not judges:
            self._query_soon(order)  # the refusal came while this query was out: ask again
            return
        floor = self._amend_floor.pop(coid)
        if report is None or report.status not in _WORKING or not order.is_open or report.filled_qty < floor * (1.0 - 1e-9):
            return
        logger.warning("order {}: its amend to {} in all was refused with {} filled; canceling the rest", coid, floor, report.filled_qty)
        self._cancel_replacement(order, f"amended to {floor} in all, {report.filled_qty} filled before the amend")

    def _forgotten(self, order: Order) -> OrderStatusReport | None:
        """The answer "no such order" means for ``order``: filled nothing, if it closed CANCELED or EXPIRED longer ago
        than the venue keeps such orders without fills (:attr:`TradingApi.forgets_unfilled_closed_ns`); else ``None``."""
        kept = self.api.forgets_unfilled_closed_ns
        now = self.clock.now_ns()
        if kept is None or order.status not in _CLOSED_UNFILLED or now - order.ts_last <= kept + CLOCK_MARGIN_NS:
            return None
        reason = f"the venue no longer knows it, closed {(now - order.ts_last) / 3.6e12:.1f} h ago: it forgets only orders without fills"
        logger.info("order {} ({}): {}; none filled", order.client_order_id, order.status, reason)
        return OrderStatusReport(order.client_order_id, order.venue_order_id, order.status, 0.0, now, (), reason)

    async def _rest(self, seconds: float) -> None:
        """Sleep ``seconds``, no request of this task out meanwhile: :meth:`drain` does not wait for it (a daemon's stop
        would wait its whole timeout for a query backing off up to :data:`QUERY_RETRY_CAP_S`, and name it unanswered)."""
        task = asyncio.current_task()
        assert task is not None
        self._resting.add(task)
        for watcher in self._rest_watchers:
            if not watcher.done():
                watcher.set_result(None)
        try:
            await asyncio.sleep(seconds)
        finally:
            self._resting.discard(task)

    async def drain(self, timeout: float = 5.0, waiting: str = "") -> list[str]:
        """Wait (up to ``timeout`` s) for the requests in flight; those still in flight then are logged at WARNING.
        A task asleep with no request out (an unanswered amend's query backing off) is not waited for while it sleeps.

        Parameters
        ----------
        timeout
            Seconds to wait at most.
        waiting
            What waits, for the log (``"stopping"``, ``"reconciliation round"``).

        Returns
        -------
        list of str
            The requests still in flight at the timeout, by task name (``"place:<client order id>"``,
            ``"cancel:..."``, ``"query:..."``), sorted; empty when every one ended.
        """
        tasks = set(self._tasks)
        resting = self._resting
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (busy := [t for t in tasks if not t.done() and t not in resting]) and (wait := deadline - loop.time()) > 0:
            rested: asyncio.Future[None] = loop.create_future()
            self._rest_watchers.add(rested)
            try:
                await asyncio.wait([*busy, rested], timeout=wait, return_when=asyncio.FIRST_COMPLETED)
            finally:
                self._rest_watchers.discard(rested)
                rested.cancel()
        left = sorted(t.get_name() for t in tasks if not t.done() and t not in resting)
        if left:
            logger.warning(
                "{}{} request(s) to the venue still unanswered after {:g} s: {}",
                f"{waiting}: " if waiting else "", len(left), timeout, ", ".join(left),
            )
        return left

    async def aclose(self) -> None:
        """Cancel what is still in flight and close the API session (later requests are not sent)."""
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.api.close()
