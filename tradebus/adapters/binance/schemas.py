"""msgspec Structs mirroring Binance market-data JSON (spot and USD-M futures).

Field names are readable; ``msgspec.field(name=...)`` maps them to Binance's one-letter
keys. Decoders are built with ``strict=False`` so Binance's decimal strings
(``"61837.63000000"``) decode straight into ``float`` (correctly rounded, so one price
string always gives one float64). Unknown keys are ignored (Binance adds fields). Times are
:data:`~tradebus.adapters.common.parsing.Millis` and update ids
:data:`~tradebus.adapters.common.parsing.SequenceId`: a value out of their range is refused.

Combined-stream frames are ``{"stream": "<name>", "data": <payload>}``: decode them with
``Envelope[Payload]``.
"""

from __future__ import annotations

from typing import Generic, TypeVar

import msgspec

from tradebus.adapters.common.parsing import Millis, SequenceId

__all__ = [
    "AggTradeEvent",
    "BookTickerEvent",
    "DepthSnapshot",
    "DepthUpdateEvent",
    "Envelope",
    "Kline",
    "KlineEvent",
    "MarkPriceEvent",
    "RestAggTrade",
    "RestTrade",
    "TradeEvent",
    "decoder",
]

T = TypeVar("T")

Level = tuple[float, float]

Levels = TypeVar("Levels", list[Level], msgspec.Raw)
"""The book levels of :class:`DepthUpdateEvent`: decoded pairs or their raw text."""


class Envelope(msgspec.Struct, Generic[T]):
    """Combined-stream wrapper: ``{"stream": "btcusdt@trade", "data": {...}}``."""

    stream: str
    data: T


class TradeEvent(msgspec.Struct):
    """``<symbol>@trade``: one trade.

    ``{"e":"trade","E":1723161255343,"s":"BTCUSDT","t":3735683259,"p":"61837.63000000",
    "q":"0.02000000","T":1723161255342,"m":true,"M":true}``
    """

    event_type: str = msgspec.field(name="e")
    event_time: Millis = msgspec.field(name="E")
    symbol: str = msgspec.field(name="s")
    trade_id: int = msgspec.field(name="t")
    price: float = msgspec.field(name="p")
    quantity: float = msgspec.field(name="q")
    trade_time: Millis = msgspec.field(name="T")
    buyer_is_maker: bool = msgspec.field(name="m")
    #: USD-M only: ``MARKET``, or a trade of the insurance fund (``INSURANCE_FUND``) or an
    #: auto-deleveraging (``ADL``), which no order book saw; spot sends none.
    trade_type: str = msgspec.field(name="X", default="MARKET")


class AggTradeEvent(msgspec.Struct):
    """``<symbol>@aggTrade``: trades of one taker order at one price, aggregated.

    ``{"e":"aggTrade","E":1633998523963,"s":"NKNUSDT","a":15683430,"p":"0.35280000",
    "q":"58.00000000","f":19862790,"l":19862790,"T":1633998523963,"m":false,"M":true}``
    """

    event_type: str = msgspec.field(name="e")
    event_time: Millis = msgspec.field(name="E")
    symbol: str = msgspec.field(name="s")
    agg_id: int = msgspec.field(name="a")
    price: float = msgspec.field(name="p")
    quantity: float = msgspec.field(name="q")
    first_trade_id: int = msgspec.field(name="f")
    last_trade_id: int = msgspec.field(name="l")
    trade_time: Millis = msgspec.field(name="T")
    buyer_is_maker: bool = msgspec.field(name="m")


class RestTrade(msgspec.Struct):
    """One element of ``GET /api/v3/historicalTrades`` / ``/fapi/v1/historicalTrades``.

    ``{"id":3735683259,"price":"61837.63000000","qty":"0.02000000","quoteQty":"1236.75",
    "time":1723161255342,"isBuyerMaker":true,"isBestMatch":true}``
    """

    trade_id: int = msgspec.field(name="id")
    price: float = msgspec.field(name="price")
    quantity: float = msgspec.field(name="qty")
    trade_time: Millis = msgspec.field(name="time")
    buyer_is_maker: bool = msgspec.field(name="isBuyerMaker")


class RestAggTrade(msgspec.Struct):
    """One element of ``GET /api/v3/aggTrades`` / ``/fapi/v1/aggTrades`` (the aggTrade stream's keys).

    ``{"a":15683430,"p":"0.35280000","q":"58.00000000","f":19862790,"l":19862790,
    "T":1633998523963,"m":false,"M":true}``
    """

    agg_id: int = msgspec.field(name="a")
    price: float = msgspec.field(name="p")
    quantity: float = msgspec.field(name="q")
    trade_time: Millis = msgspec.field(name="T")
    buyer_is_maker: bool = msgspec.field(name="m")


class Kline(msgspec.Struct):
    """The ``k`` object of a kline event (times in ms; ``close_time`` = start + interval - 1 ms)."""

    start_time: Millis = msgspec.field(name="t")
    close_time: Millis = msgspec.field(name="T")
    symbol: str = msgspec.field(name="s")
    interval: str = msgspec.field(name="i")
    open: float = msgspec.field(name="o")
    close: float = msgspec.field(name="c")
    high: float = msgspec.field(name="h")
    low: float = msgspec.field(name="l")
    volume: float = msgspec.field(name="v")
    trades: int = msgspec.field(name="n")
    closed: bool = msgspec.field(name="x")


class KlineEvent(msgspec.Struct):
    """``<symbol>@kline_<interval>``: the current candle, pushed on every change.

    ``{"e":"kline","E":1626992760203,"s":"SUSHIUSDT","k":{"t":1626992700000,"T":1626992759999,
    "s":"SUSHIUSDT","i":"1m","f":126902874,"L":126902986,"o":"7.6080","c":"7.6170","h":"7.6180",
    "l":"7.6070","v":"3005","n":113,"x":true,"q":"22875.8590","V":"1900","Q":"14464.6960","B":"0"}}``
    """

    event_type: str = msgspec.field(name="e")
    event_time: Millis = msgspec.field(name="E")
    symbol: str = msgspec.field(name="s")
    kline: Kline = msgspec.field(name="k")


class BookTickerEvent(msgspec.Struct):
    """``<symbol>@bookTicker``: best bid/ask. Spot sends no event time; futures add ``e``, ``E``, ``T``.

    spot: ``{"u":50093239212,"s":"BTCUSDT","b":"61837.63000000","B":"3.78826000",
    "a":"61837.64000000","A":"1.54698000"}``
    """

    update_id: int = msgspec.field(name="u")
    symbol: str = msgspec.field(name="s")
    bid_price: float = msgspec.field(name="b")
    bid_qty: float = msgspec.field(name="B")
    ask_price: float = msgspec.field(name="a")
    ask_qty: float = msgspec.field(name="A")
    event_time: Millis = msgspec.field(name="E", default=0)
    transaction_time: Millis = msgspec.field(name="T", default=0)


class DepthUpdateEvent(msgspec.Struct, Generic[Levels]):
    """``<symbol>@depth@<speed>``: diff depth. Futures add ``T`` and ``pu`` (previous final id).

    ``{"e":"depthUpdate","E":1680652700594,"T":1680652700586,"s":"BTCUSDT","U":2710246765373,
    "u":2710246765597,"pu":2710246765326,"b":[["5000.00","14.368"]],"a":[["28145.20","6.961"]]}``

    ``Levels`` is ``list[Level]`` for decoded levels or ``msgspec.Raw`` for their text
    (parsed by :func:`tradebus.adapters.common.raw_levels.raw_pair_levels`).
    """

    event_type: str = msgspec.field(name="e")
    event_time: Millis = msgspec.field(name="E")
    symbol: str = msgspec.field(name="s")
    first_update_id: SequenceId = msgspec.field(name="U")
    final_update_id: SequenceId = msgspec.field(name="u")
    bids: Levels = msgspec.field(name="b")
    asks: Levels = msgspec.field(name="a")
    prev_final_update_id: SequenceId = msgspec.field(name="pu", default=-1)
    transaction_time: Millis = msgspec.field(name="T", default=0)


class MarkPriceEvent(msgspec.Struct):
    """``<symbol>@markPrice[@1s]`` (USD-M): mark/index price, funding rate, next funding time.

    ``{"e":"markPriceUpdate","E":1680652701000,"s":"BTCUSDT","p":"28147.27373413",
    "P":"28142.15563565","i":"28159.75642857","r":"0.00002754","T":1680652800000}``
    """

    event_type: str = msgspec.field(name="e")
    event_time: Millis = msgspec.field(name="E")
    symbol: str = msgspec.field(name="s")
    mark_price: float = msgspec.field(name="p")
    index_price: float = msgspec.field(name="i")
    funding_rate: str = msgspec.field(name="r")
    next_funding_time: Millis = msgspec.field(name="T")


class DepthSnapshot(msgspec.Struct):
    """REST ``GET /api/v3/depth`` (spot) or ``/fapi/v1/depth`` (futures adds ``E``, ``T``).

    ``{"lastUpdateId":50093239218,"bids":[["61837.63000000","3.78826000"],...],"asks":[...]}``
    """

    last_update_id: SequenceId = msgspec.field(name="lastUpdateId")
    bids: list[Level]
    asks: list[Level]
    event_time: Millis = msgspec.field(name="E", default=0)
    transaction_time: Millis = msgspec.field(name="T", default=0)


def decoder(payload: type[T], envelope: bool = True) -> msgspec.json.Decoder:
    """A lenient-number JSON decoder for ``payload``, wrapped in :class:`Envelope` unless ``envelope`` is False."""
    target = Envelope[payload] if envelope else payload  # type: ignore[valid-type]
    return msgspec.json.Decoder(target, strict=False)
