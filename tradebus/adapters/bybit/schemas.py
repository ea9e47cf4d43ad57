"""msgspec Structs mirroring the Bybit v5 public WebSocket and REST JSON.

Field names are Bybit's own. Numeric strings are typed ``float``/``int`` and
decoded with ``strict=False`` (``"65114.20"`` -> ``65114.2`` in C); constraints
reject NaN, infinities and non-positive prices, and times
(:data:`~tradebus.adapters.common.parsing.Millis`) or update ids
(:data:`~tradebus.adapters.common.parsing.SequenceId`) out of range. :class:`BybitFrame`
is the envelope (``data`` kept raw); the ``*Frame`` structs decode a whole push of a known topic in
one pass (the parser's fast path). Unknown fields are ignored;
missing required fields or wrong types raise ``msgspec.ValidationError``.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any, Literal

import msgspec

from tradebus.adapters.common.parsing import MAX_MILLIS, Millis, SequenceId

__all__ = [
    "BybitBook",
    "BybitBookFrame",
    "BybitFrame",
    "BybitInstrument",
    "BybitInstrumentsResponse",
    "BybitKline",
    "BybitKlineFrame",
    "BybitLotSizeFilter",
    "BybitPriceFilter",
    "BybitRiskLimit",
    "BybitRiskLimitResponse",
    "BybitTickerFrame",
    "BybitTickerPush",
    "BybitTrade",
    "BybitTradeFrame",
    "TickerFields",
    "TickerNumbers",
]

_MAX = sys.float_info.max
PositiveFloat = Annotated[float, msgspec.Meta(gt=0.0, le=_MAX)]
NonNegativeFloat = Annotated[float, msgspec.Meta(ge=0.0, le=_MAX)]
FiniteFloat = Annotated[float, msgspec.Meta(ge=-_MAX, le=_MAX)]
FundingTime = Annotated[float, msgspec.Meta(ge=0.0, lt=MAX_MILLIS)]


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


class BybitTrade(msgspec.Struct, frozen=True, gc=False):
    """One element of a ``publicTrade.{symbol}`` push; ``S`` is the taker side, ``i`` the trade id.

    Only the fields the parser uses are decoded (``s``, ``L``, ``BT``, ``RPI``, ``seq`` are
    skipped: fewer objects per trade on the hot path).
    """

    T: Millis
    S: Literal["Buy", "Sell"]
    v: PositiveFloat
    p: PositiveFloat
    i: str


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
    """``data`` of an ``orderbook.{depth}.{symbol}`` push: levels ``[price, size]``, strings decoded as numbers."""

    s: str
    b: list[tuple[PositiveFloat, NonNegativeFloat]]
    a: list[tuple[PositiveFloat, NonNegativeFloat]]
    u: SequenceId
    seq: int = -1


TickerFields = dict[str, Any]
"""``data`` of a ``tickers.{symbol}`` push: a flat object, every value a string except ``symbol``."""


class TickerNumbers(msgspec.Struct, frozen=True, gc=False):
    """The numeric ticker fields the parser uses, decoded from a push's ``data`` with ``strict=False``.

    A field the push does not carry stays ``UNSET``; the parser unpacks the fields in this
    order (``msgspec.structs.astuple``). Conversion fails on an empty string
    (Bybit's "no value") as on a bad one: the parser then converts the fields one by one,
    which gives ``None`` for ``""`` and names a bad field.
    """

    bid1Price: FiniteFloat | msgspec.UnsetType = msgspec.UNSET
    bid1Size: FiniteFloat | msgspec.UnsetType = msgspec.UNSET
    ask1Price: FiniteFloat | msgspec.UnsetType = msgspec.UNSET
    ask1Size: FiniteFloat | msgspec.UnsetType = msgspec.UNSET
    markPrice: FiniteFloat | msgspec.UnsetType = msgspec.UNSET
    indexPrice: FiniteFloat | msgspec.UnsetType = msgspec.UNSET
    fundingRate: FiniteFloat | msgspec.UnsetType = msgspec.UNSET
    nextFundingTime: FundingTime | msgspec.UnsetType = msgspec.UNSET


class BybitTradeFrame(msgspec.Struct, frozen=True, gc=False):
    """A whole ``publicTrade.{symbol}`` push, decoded in one pass (``type``, ``ts`` unused: skipped).

    ``gc=False`` on the ``*Frame`` structs: short-lived, they hold no reference cycle.
    """

    topic: str
    data: list[BybitTrade]


class BybitKlineFrame(msgspec.Struct, frozen=True, gc=False):
    """A whole ``kline.{interval}.{symbol}`` push (``ts`` unused: a bar is stamped by its own ``end``)."""

    topic: str
    data: list[BybitKline]
    type: str = ""


class BybitTickerFrame(msgspec.Struct, frozen=True, gc=False):
    """A whole ``tickers.{symbol}`` push.

    ``ts`` (ms, when Bybit's system made the data: help "Ticker", "Orderbook") stamps the quote, mark
    and funding rate, and a book push's its snapshot or delta: every push of these topics carries it,
    and a push without it is refused (a ``FrameError`` naming ``ts``) rather than stamped at the epoch.
    """

    topic: str
    data: TickerFields
    ts: Millis
    type: str = ""


class BybitTickerPush(msgspec.Struct, frozen=True, gc=False):
    """A ``tickers.{symbol}`` push with ``data`` kept raw (the parser's fast path).

    ``data`` is then decoded twice in C, to :data:`TickerFields` and to
    :class:`TickerNumbers`, which is cheaper than converting the decoded fields.
    A push this or those decodes reject is decoded again with :class:`BybitTickerFrame`
    for the error message.
    """

    topic: str
    data: msgspec.Raw
    ts: Millis
    type: str = ""


class BybitBookFrame(msgspec.Struct, frozen=True, gc=False):
    """A whole ``orderbook.{depth}.{symbol}`` push (``ts`` required: see :class:`BybitTickerFrame`)."""

    topic: str
    data: BybitBook
    ts: Millis
    type: str = ""


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


class BybitRiskLimit(msgspec.Struct, frozen=True):
    """One tier of ``GET /v5/market/risk-limit`` (fields we use).

    ``{"id": 2, "symbol": "BTCUSDT", "riskLimitValue": "2600000", "maintenanceMargin": "0.0056",
    "initialMargin": "0.0111", "isLowestRisk": 0, "maxLeverage": "90.00", "mmDeduction": "1200"}``:
    the tier holds positions of value up to ``riskLimitValue``; the documentation types the
    rates as numbers, the venue sends strings (both are taken).
    """

    symbol: str
    riskLimitValue: str
    maintenanceMargin: str | float
    maxLeverage: str
    mmDeduction: str = ""
    initialMargin: str | float = ""
    id: int = 0


class _RiskLimitResult(msgspec.Struct, frozen=True, rename={"items": "list"}):
    items: list[BybitRiskLimit]
    category: str = ""
    nextPageCursor: str = ""


class BybitRiskLimitResponse(msgspec.Struct, frozen=True):
    """REST envelope ``{"retCode": 0, "retMsg": "OK", "result": {"category": "linear", "list": [...]}}``."""

    retCode: int
    result: _RiskLimitResult
    retMsg: str = ""
