"""What every venue's private-stream parser shares: the account's instruments and the orders it knows.

A venue's ``user_stream.py`` subclasses :class:`PrivateStreamParser` and implements
:meth:`PrivateStreamParser.parse` (one raw frame -> core order events and
:class:`~tradebus.execution.live.AccountBalance` rows). A venue's private-stream client is a
:class:`UserStream`; venues whose private stream logs in with a frame and then subscribes run
it on a :class:`PrivateStream`.

A connection whose subscription the venue leaves unconfirmed (its login or subscribe request unanswered) for
``policy.confirm_timeout`` is recycled with a WARNING (:meth:`UserStream.on_connected`), never waited on for good.

A reconnected stream calls ``on_reconnect`` (the daemon queries its open orders) only once the
venue **confirmed** the new subscription (:meth:`UserStream.confirmed`): an order state read
before that could miss a fill made after the read but before the subscription was active,
which no stream would bring until the next reconciliation round. A first confirmation the
daemon stopped waiting for (:meth:`UserStream.confirmation_late`: it went on and read the
venue's state without it) calls ``on_reconnect`` too, for the same reason.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from typing import Any

from loguru import logger

from tradebus.adapters.common.client import Sink, WsClient
from tradebus.adapters.common.recorder import FrameWriter
from tradebus.adapters.common.policy import ConnectionPolicy
from tradebus.adapters.common.venue_clock import RESYNCS, SYNC_ADVICE, TimestampRefused, VenueClock
from tradebus.engine.instrument import Instrument
from tradebus.engine.messages import OrderStatus, OrderTermsReported
from tradebus.errors import ParseError
from tradebus.execution.live import AccountBalance, AccountPosition, ClockRefused, FundingUnattributed
from tradebus.execution.orders import Order
from tradebus.execution.venue import OrderStatusReport, venue_terms

__all__ = [
    "UNACKNOWLEDGED",
    "OrderContext",
    "PrivateStream",
    "PrivateStreamParser",
    "UserStream",
    "deliver",
    "venue_fee",
    "venue_number",
]

#: Statuses in which a venue's "new order" push is news (else the REST answer told it first).
UNACKNOWLEDGED = frozenset({OrderStatus.INITIALIZED, OrderStatus.SUBMITTED, OrderStatus.UNKNOWN})

OrderContext = tuple[Order | None, str, str, Instrument | None]
"""``(order or None, strategy id, instrument id, instrument or None)`` of one event."""


def venue_fee(fee: float, fee_asset: str | None, inst: Instrument | None) -> tuple[float, str]:
    """A fill's fee as the venue charged it: ``(fee, fee_asset)`` of an :class:`~tradebus.engine.messages.OrderFilled`.

    ``fee_asset`` is ``""`` when the venue charged the instrument's quote asset (or named no
    asset), else the asset it named: the base asset (a spot buy's fee taken out of what it
    bought) or a third one (BNB): the account debits that asset, and the portfolio values
    the fee in the quote currency. Used for the fills of a venue's private stream and of its
    REST fill queries alike.
    """
    if not fee_asset or (inst is not None and fee_asset == inst.quote):
        return fee, ""
    return fee, fee_asset


def venue_number(text: Any) -> float:
    """A price or quantity of a venue's order row (decimal text), NaN where the row tells none: absent, empty, or not
    positive (Binance's ``"0.00000000"`` price of a market order, OKX's ``"-1"`` order price of a market stop)."""
    if text is None or text == "":
        return math.nan
    value = float(text)
    return value if value > 0.0 else math.nan


def deliver(events: Iterable[Any], sink: Sink, on_balance: Callable[[Any], Any] | None) -> None:
    """Parsed private-stream events: account updates to ``on_balance`` (dropped without one), the rest to ``sink``.

    Account updates: :class:`~tradebus.execution.live.AccountBalance`,
    :class:`~tradebus.execution.live.AccountPosition` and
    :class:`~tradebus.execution.live.FundingUnattributed`.
    """
    for event in events:
        if isinstance(event, (AccountBalance, AccountPosition, FundingUnattributed)):
            if on_balance is not None:
                on_balance(event)
        else:
            sink(event)


class PrivateStreamParser(ABC):
    """Base of the venues' private-stream parsers.

    Parameters
    ----------
    instruments
        ``instrument_id -> Instrument`` of the account.
    lookup
        ``client_order_id -> Order`` of the orders this process sent (``None``: not ours).
    clock_ns
        Receive time source (``ts_init``).
    symbol_of
        The venue's symbol of an instrument (default: its ``symbol``).
    venue
        Venue name used for the instrument id of an unknown symbol.
    """

    def __init__(
        self,
        instruments: dict[str, Instrument],
        lookup: Callable[[str], Order | None],
        clock_ns: Callable[[], int] = time.time_ns,
        symbol_of: Callable[[Instrument], str] = lambda inst: inst.symbol,
        venue: str = "",
    ) -> None:
        self.by_symbol = {symbol_of(inst): inst for inst in instruments.values()}
        self.lookup = lookup
        self.clock_ns = clock_ns
        self.venue = venue

    @abstractmethod
    def parse(self, raw: str | bytes) -> list[Any]:
        """The events of one frame (raises ``ParseError`` for a malformed one)."""

    def decode(self, raw: str | bytes, name: str) -> dict[str, Any]:
        """The frame as a JSON object (``ParseError`` naming the venue otherwise)."""
        try:
            msg = json.loads(raw)
        except ValueError as exc:
            raise ParseError(f"{name} user stream: not JSON: {exc}: {str(raw)[:120]!r}") from None
        if not isinstance(msg, dict):
            raise ParseError(f"{name} user stream: expected an object, got {str(raw)[:120]!r}")
        return msg

    def terms(self, order: Order | None, frame: OrderContext, quantity: float, price: float, trigger_price: float,
              ts_event: int) -> list[OrderTermsReported]:
        """An :class:`~tradebus.engine.messages.OrderTermsReported` of the open ``order`` (``frame``: its context) whose
        terms a frame tells other than its own (NaN: not told; :func:`~tradebus.execution.venue.venue_terms`), else none."""
        if order is None or not order.is_open:
            return []
        told = OrderStatusReport(order.client_order_id, "", order.status, math.nan, ts_event,
                                 quantity=quantity, price=price, trigger_price=trigger_price)
        if venue_terms(order, told) is None:
            return []
        return [OrderTermsReported(frame[1], frame[2], order.client_order_id, quantity, price, trigger_price, ts_event,
                                   self.clock_ns())]

    def context(self, client_order_id: str, symbol: str) -> OrderContext:
        """The order, strategy id, instrument id and instrument of an event."""
        order = self.lookup(client_order_id)
        inst = self.by_symbol.get(symbol)
        iid = inst.instrument_id if inst is not None else f"{symbol}.{self.venue}"
        return order, (order.strategy_id if order is not None else ""), iid, inst


class UserStream(WsClient):
    """A venue's private-stream client: :attr:`subscribed` once the venue confirmed the subscription.

    Parameters
    ----------
    name, sink, policy, recorder
        As :class:`~tradebus.adapters.common.client.WsClient`.
    on_balance
        Receives the :class:`~tradebus.execution.live.AccountBalance` and
        :class:`~tradebus.execution.live.AccountPosition` events.
    on_reconnect
        Called after a reconnect (events may have been missed), once the venue confirmed the
        new connection's subscription; and at a confirmation that came late
        (:meth:`confirmation_late`).
    venue_clock
        The account's clock as the venue takes it (the trading API's), which the login or subscription is stamped on:
        one the venue refused for its timestamp (the parser's
        :class:`~tradebus.adapters.common.venue_clock.TimestampRefused`) has the stream measure it before it reconnects
        and logs in again, at most :data:`~tradebus.adapters.common.venue_clock.RESYNCS` times in a row, then stop with
        :class:`~tradebus.execution.live.ClockRefused` (``None``: none, such a refusal stops the stream).

    Attributes
    ----------
    subscribed
        Set while the current connection's subscription is confirmed (cleared when it ends).
    """

    def __init__(
        self,
        name: str,
        sink: Sink,
        policy: ConnectionPolicy,
        on_balance: Callable[[Any], Any] | None = None,
        on_reconnect: Callable[[], Any] | None = None,
        recorder: FrameWriter | None = None,
        venue_clock: VenueClock | None = None,
    ) -> None:
        super().__init__(name, sink, policy, recorder)
        self.venue_clock = venue_clock
        # Logins refused for their timestamp since the last one taken, and whether the next connection first measures
        # the venue's clock.
        self._clock_refusals = 0
        self._resync_due = False
        self.on_balance = on_balance
        self.on_reconnect = on_reconnect
        self.subscribed = asyncio.Event()
        self._late = False
        self._closing: set[asyncio.Task[None]] = set()
        # Recycles the current connection if its subscription is not confirmed in time (_watch_confirmation).
        self._unconfirmed: asyncio.TimerHandle | None = None

    def translate_error(self, exc: Exception) -> Exception:
        """A login or subscription refused for its timestamp: the next connection measures the venue's clock first;
        refused so after :data:`~tradebus.adapters.common.venue_clock.RESYNCS` measures (or without a clock to measure),
        :class:`~tradebus.execution.live.ClockRefused`."""
        if not isinstance(exc, TimestampRefused):
            return exc
        self._clock_refusals += 1
        if self.venue_clock is None:
            return ClockRefused(f"{exc}; {SYNC_ADVICE}")
        if self._clock_refusals > RESYNCS:
            return self.venue_clock.refused(str(exc))
        self._resync_due = True
        return exc

    async def _connect_and_receive(self) -> None:
        if self._resync_due and self.venue_clock is not None:
            self._resync_due = False
            await self.venue_clock.resync(f"{self.name}: login or subscription refused for its timestamp")
        await super()._connect_and_receive()

    def confirmed(self) -> None:
        """The venue confirmed this connection's subscription: events flow from now on; after a reconnect, ``on_reconnect``."""
        if self.subscribed.is_set():
            return
        self._clock_refusals = 0
        self.subscribed.set()
        self._stop_watching()
        late, self._late = self._late, False
        logger.info("{}: subscription confirmed ({}{})", self.name, self.conn_id, ", late" if late else "")
        if (self.connections > 1 or late) and self.on_reconnect is not None:
            self.on_reconnect()

    def confirmation_late(self) -> None:
        """The daemon stopped waiting for the confirmation and read the venue's state without it.

        Events from that read until the confirmation may be missed: the confirmation, when it
        comes, calls ``on_reconnect`` as after a reconnect (a no-op if it has come already).
        """
        if not self.subscribed.is_set():
            self._late = True

    def drop_connection(self, why: str) -> None:
        """The venue ended the subscription (``why``): close the connection; the loop reconnects and subscribes again."""
        logger.warning("{}: {}; reconnecting to subscribe again", self.name, why)
        self.subscribed.clear()
        ws = self._ws
        if ws is not None:
            task = asyncio.get_running_loop().create_task(ws.close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def on_connected(self) -> None:
        """Watch for the venue's confirmation of this connection's subscription (:meth:`_watch_confirmation`)."""
        self._watch_confirmation()

    def _watch_confirmation(self) -> None:
        """Recycle this connection if the venue has not confirmed its subscription (a login or subscribe request it left
        unanswered) within ``policy.confirm_timeout``: a WARNING names what was waited for, and the stream reconnects
        (with backoff) and asks again, rather than wait for good without the account's events."""
        self._stop_watching()
        if self.subscribed.is_set():
            return
        conn, timeout = self.conn_id, self.policy.confirm_timeout
        self._unconfirmed = asyncio.get_running_loop().call_later(timeout, self._not_confirmed, conn, timeout)

    def _not_confirmed(self, conn: str, timeout: float) -> None:
        self._unconfirmed = None
        if conn == self.conn_id and not self.subscribed.is_set() and not self._stopping:
            self.drop_connection(f"the venue did not confirm the subscription of connection {conn} within {timeout:g} s "
                                 "(its login or subscribe request unanswered)")

    def _stop_watching(self) -> None:
        if self._unconfirmed is not None:
            self._unconfirmed.cancel()
            self._unconfirmed = None

    def on_disconnected(self, reason: str) -> None:
        self.subscribed.clear()
        self._stop_watching()


class PrivateStream(UserStream):
    """A venue's private WebSocket that logs in, then subscribes (OKX, Bybit), reconnecting per policy.

    On connecting it sends ``login()`` (a fresh signed frame each time); when the venue's
    answer satisfies ``is_login_ack`` it sends ``subscribe``, and once ``subscribe_acks``
    answers satisfied ``is_subscribe_ack`` the subscription is confirmed
    (:meth:`~UserStream.confirmed`). Every parsed order event goes to ``sink``, every
    :class:`~tradebus.execution.live.AccountBalance` and
    :class:`~tradebus.execution.live.AccountPosition` to ``on_balance``; after a
    reconnect (events may have been missed) ``on_reconnect`` is called once the subscription
    is confirmed. A refused login is the parser's
    :class:`~tradebus.adapters.common.policy.FatalVenueError`; one refused for its timestamp, the parser's
    :class:`~tradebus.adapters.common.venue_clock.TimestampRefused`: the stream measures the venue's clock
    (``venue_clock``, whose :meth:`~tradebus.adapters.common.venue_clock.VenueClock.now` ``login`` signs with) before it
    reconnects and logs in again, at most :data:`~tradebus.adapters.common.venue_clock.RESYNCS` times in a row, then stops
    with :class:`~tradebus.execution.live.ClockRefused`.

    Parameters
    ----------
    name
        Stream name (logs, recorder).
    url
        The private WebSocket URL.
    policy
        Reconnect and keep-alive policy.
    parser
        The venue's frame parser.
    login
        Builds the login frame (the signature only; the secret never goes on the wire or in a log).
    is_login_ack
        Whether a decoded frame is the venue's successful login answer.
    subscribe
        The subscription frame sent once logged in.
    is_subscribe_ack
        Whether a decoded frame is the venue's answer confirming (part of) the subscription.
    subscribe_acks
        How many such answers confirm all of it (OKX answers once per channel).
    sink, on_balance, on_reconnect
        Where events go.
    venue_clock
        The account's clock as the venue takes it (the trading API's), measured again after a login refused for its
        timestamp (``None``: none, such a refusal stops the stream).
    """

    def __init__(
        self,
        name: str,
        url: str,
        policy: ConnectionPolicy,
        parser: PrivateStreamParser,
        login: Callable[[], str],
        is_login_ack: Callable[[dict[str, Any]], bool],
        subscribe: str,
        is_subscribe_ack: Callable[[dict[str, Any]], bool],
        sink: Sink,
        on_balance: Callable[[Any], Any] | None = None,
        on_reconnect: Callable[[], Any] | None = None,
        subscribe_acks: int = 1,
        venue_clock: VenueClock | None = None,
    ) -> None:
        super().__init__(name, sink, policy, on_balance, on_reconnect, venue_clock=venue_clock)
        self.url = url
        self.parser = parser
        self._login = login
        self._is_login_ack = is_login_ack
        self._subscribe = subscribe
        self._is_subscribe_ack = is_subscribe_ack
        self._acks_wanted = subscribe_acks
        self._acks = 0
        self._tasks: set[asyncio.Task[None]] = set()

    def connect_url(self) -> str:
        return self.url

    def subscribe_frames(self) -> list[str]:
        self._acks = 0
        return [self._login()]

    def on_frame(self, raw: str | bytes, recv_ns: int) -> None:
        if raw in ("pong", b"pong"):
            return
        events = self.parser.parse(raw)
        if not events and not self.subscribed.is_set():
            msg = self.parser.decode(raw, self.name)
            if self._is_login_ack(msg):
                self._clock_refusals = 0
                task = asyncio.get_running_loop().create_task(self.send(self._subscribe))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            elif self._is_subscribe_ack(msg):
                self._acks += 1
                if self._acks >= self._acks_wanted:
                    self.confirmed()
            return
        deliver(events, self.sink, self.on_balance)
