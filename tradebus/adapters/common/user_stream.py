"""What every venue's private-stream parser shares: the account's instruments and the orders it knows.

A venue's ``user_stream.py`` subclasses :class:`PrivateStreamParser` and implements
:meth:`PrivateStreamParser.parse` (one raw frame -> core order events and
:class:`~tradebus.execution.live.AccountBalance` rows). Venues whose private stream logs in
with a frame and then subscribes run it on a :class:`PrivateStream`.
"""

from __future__ import annotations

import asyncio
import json
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from typing import Any

from tradebus.adapters.common.client import Sink, WsClient
from tradebus.adapters.common.policy import ConnectionPolicy
from tradebus.engine.instrument import Instrument
from tradebus.engine.messages import OrderStatus
from tradebus.errors import ParseError
from tradebus.execution.live import AccountBalance, AccountPosition
from tradebus.execution.orders import Order

__all__ = ["UNACKNOWLEDGED", "OrderContext", "PrivateStream", "PrivateStreamParser", "deliver"]

#: Statuses in which a venue's "new order" push is news (else the REST answer told it first).
UNACKNOWLEDGED = frozenset({OrderStatus.INITIALIZED, OrderStatus.SUBMITTED, OrderStatus.UNKNOWN})

OrderContext = tuple[Order | None, str, str, Instrument | None]
"""``(order or None, strategy id, instrument id, instrument or None)`` of one event."""


def deliver(events: Iterable[Any], sink: Sink, on_balance: Callable[[Any], Any] | None) -> None:
    """Parsed private-stream events: balance and position updates to ``on_balance`` (dropped without one), the rest to ``sink``."""
    for event in events:
        if isinstance(event, (AccountBalance, AccountPosition)):
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

    def context(self, client_order_id: str, symbol: str) -> OrderContext:
        """The order, strategy id, instrument id and instrument of an event."""
        order = self.lookup(client_order_id)
        inst = self.by_symbol.get(symbol)
        iid = inst.instrument_id if inst is not None else f"{symbol}.{self.venue}"
        return order, (order.strategy_id if order is not None else ""), iid, inst

    @staticmethod
    def quote_fee(fee: float, fee_asset: str, price: float, inst: Instrument | None) -> float:
        """A fee in the quote asset (a fee charged in the base asset is valued at the fill price)."""
        if inst is not None and fee_asset == inst.base:
            return fee * price
        return fee


class PrivateStream(WsClient):
    """A venue's private WebSocket that logs in, then subscribes (OKX, Bybit), reconnecting per policy.

    On connecting it sends ``login()`` (a fresh signed frame each time); when the venue's
    answer satisfies ``is_login_ack`` it sends ``subscribe``. Every parsed order event goes to
    ``sink``, every :class:`~tradebus.execution.live.AccountBalance` and
    :class:`~tradebus.execution.live.AccountPosition` to ``on_balance``; after a
    reconnect (events may have been missed) ``on_reconnect`` is called. A refused login is
    the parser's :class:`~tradebus.adapters.common.policy.FatalVenueError`.

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
    sink, on_balance, on_reconnect
        Where events go.
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
        sink: Sink,
        on_balance: Callable[[AccountBalance], Any] | None = None,
        on_reconnect: Callable[[], Any] | None = None,
    ) -> None:
        super().__init__(name, sink, policy)
        self.url = url
        self.parser = parser
        self._login = login
        self._is_login_ack = is_login_ack
        self._subscribe = subscribe
        self.on_balance = on_balance
        self.on_reconnect = on_reconnect
        self._tasks: set[asyncio.Task[None]] = set()

    def connect_url(self) -> str:
        return self.url

    def subscribe_frames(self) -> list[str]:
        return [self._login()]

    def on_frame(self, raw: str | bytes, recv_ns: int) -> None:
        if raw in ("pong", b"pong"):
            return
        events = self.parser.parse(raw)
        if not events and self._is_login_ack(self.parser.decode(raw, self.name)):
            task = asyncio.get_running_loop().create_task(self.send(self._subscribe))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        deliver(events, self.sink, self.on_balance)

    async def on_connected(self) -> None:
        if self.connections > 1 and self.on_reconnect is not None:
            self.on_reconnect()
