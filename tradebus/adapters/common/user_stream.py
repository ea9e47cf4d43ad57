"""What every venue's private-stream parser shares: the account's instruments and the orders it knows.

A venue's ``user_stream.py`` subclasses :class:`PrivateStreamParser` and implements
:meth:`PrivateStreamParser.parse` (one raw frame -> core order events and
:class:`~tradebus.execution.live.AccountBalance` rows).
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from tradebus.engine.instrument import Instrument
from tradebus.errors import ParseError
from tradebus.execution.orders import Order

__all__ = ["OrderContext", "PrivateStreamParser"]

OrderContext = tuple[Order | None, str, str, Instrument | None]
"""``(order or None, strategy id, instrument id, instrument or None)`` of one event."""


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
