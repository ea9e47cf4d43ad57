"""msgspec Structs mirroring the Bybit v5 public WebSocket and REST JSON.

Field names are Bybit's own. Numeric strings are typed ``float``/``int`` and
decoded with ``strict=False`` (``"65114.20"`` -> ``65114.2`` in C); constraints
reject NaN, infinities and non-positive prices. Unknown fields are ignored;
missing required fields or wrong types raise ``msgspec.ValidationError``.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any, Literal

import msgspec

__all__ = [
    "BybitBook",
    "BybitFrame",
    "BybitInstrument",
    "BybitInstrumentsResponse",
    "BybitKline",
    "BybitLotSizeFilter",
    "BybitPriceFilter",
    "BybitTrade",
]

_MAX = sys.float_info.max
PositiveFloat = Annotated[float, msgspec.Meta(gt=0.0, le=_MAX)]
NonNegativeFloat = Annotated[float, msgspec.Meta(ge=0.0, le=_MAX)]
Millis = Annotated[int, msgspec.Meta(ge=0)]


class BybitFrame(msgspec.Struct):
    """Outer envelope of every Bybit v5 public frame; ``data`` is kept raw and decoded per topic.

    Push: ``{"topic": "publicTrade.BTCUSDT", "type": "snapshot"|"delta", "ts": ms, "data": ..., "cts": ms}``.
    Control: ``{"success": true, "ret_msg": "", "conn_id": "...", "req_id": "", "op": "subscribe"|"ping"}``
    (linear pong) or ``{"op": "pong", "args": ["<ms>"], "conn_id": "..."}`` (spot pong).
    """

    topic: str = ""
    type: str = ""
    ts: Millis = 0
    data: msgspec.Raw = msgspec.Raw()
    cts: Millis = 0
    op: str = ""
    success: bool | None = None
    ret_msg: str = ""
    conn_id: str = ""
    req_id: str = ""


class BybitTrade(msgspec.Struct, frozen=True):
    """One element of a ``publicTrade.{symbol}`` push; ``S`` is the taker side, ``i`` the trade id."""

    T: Millis
    s: str
    S: Literal["Buy", "Sell"]
    v: PositiveFloat
    p: PositiveFloat
    i: str
    BT: bool = False
    seq: int = -1


class BybitKline(msgspec.Struct, frozen=True):
    """One element of a ``kline.{interval}.{symbol}`` push; ``end`` = start + interval - 1 ms."""

    start: Millis
    end: Millis
    interval: str
    open: PositiveFloat
    close: PositiveFloat
    high: PositiveFloat
    low: PositiveFloat
    volume: NonNegativeFloat
    confirm: bool
    timestamp: Millis = 0
    turnover: str = ""


class BybitBook(msgspec.Struct, frozen=True):
    """``data`` of an ``orderbook.{depth}.{symbol}`` push: levels ``[price, size]`` as strings."""

    s: str
    b: list[list[str]]
    a: list[list[str]]
    u: int
    seq: int = -1


TickerFields = dict[str, Any]
"""``data`` of a ``tickers.{symbol}`` push: a flat object, every value a string except ``symbol``."""


class BybitPriceFilter(msgspec.Struct, frozen=True):
    """``priceFilter`` of an instrument."""

    tickSize: str
    minPrice: str = ""
    maxPrice: str = ""


class BybitLotSizeFilter(msgspec.Struct, frozen=True):
    """``lotSizeFilter``: spot has ``basePrecision``/``minOrderAmt``; linear ``qtyStep``/``minNotionalValue``."""

    minOrderQty: str = ""
    maxOrderQty: str = ""
    qtyStep: str = ""
    basePrecision: str = ""
    minOrderAmt: str = ""
    minNotionalValue: str = ""


class BybitInstrument(msgspec.Struct, frozen=True):
    """One element of ``GET /v5/market/instruments-info`` (fields we use)."""

    symbol: str
    baseCoin: str
    quoteCoin: str
    priceFilter: BybitPriceFilter
    lotSizeFilter: BybitLotSizeFilter
    status: str = ""
    contractType: str = ""
    settleCoin: str = ""


class _InstrumentsResult(msgspec.Struct, frozen=True, rename={"items": "list"}):
    items: list[BybitInstrument]
    category: str = ""
    nextPageCursor: str = ""


class BybitInstrumentsResponse(msgspec.Struct, frozen=True):
    """REST envelope ``{"retCode": 0, "retMsg": "OK", "result": {"category": ..., "list": [...]}}``."""

    retCode: int
    result: _InstrumentsResult
    retMsg: str = ""
