"""Binance market data -> core messages.

Every parser takes one raw combined-stream frame (``{"stream": ..., "data": ...}``, as
``str`` or ``bytes``), its local receive time ``recv_ns`` and the ``instrument_id``, and
returns core messages with ``ts_event`` = the venue's time (ms -> ns) and ``ts_init`` =
``recv_ns``. A frame that does not decode, or carries a non-positive/non-finite price or
size, raises :class:`~tradebus.adapters.common.parsing.FrameError` naming the stream
and the field (the message shape is the same for every venue). Book levels (depth diffs and REST snapshots) are validated here, as OKX's and Bybit's
are (:func:`~tradebus.adapters.common.parsing.pair_levels`): a negative, zero, NaN or
infinite price, a negative or non-finite size, or a string that is not a number rejects
the whole frame with an error naming the stream and the level (``data.b[3]``); the client then
resyncs that book.
"""

from __future__ import annotations

import math
import re
from enum import StrEnum

import msgspec

from tradebus.adapters.binance.schemas import (
    AggTradeEvent,
    BookTickerEvent,
    DepthSnapshot,
    DepthUpdateEvent,
    Level,
    KlineEvent,
    MarkPriceEvent,
    RestAggTrade,
    RestTrade,
    TradeEvent,
    decoder,
)
from tradebus.adapters.common.parsing import MS as _MS
from tradebus.adapters.common.parsing import FieldError, FrameError, frame_error, pair_levels
from tradebus.adapters.common.raw_levels import raw_pair_levels
from tradebus.engine.messages import Bar, BookDelta, BookSnapshot, FundingRate, MarkPrice, Quote, Trade


__all__ = [
    "StreamKind",
    "parse_agg_trade",
    "parse_book_ticker",
    "parse_depth_snapshot",
    "parse_depth_update",
    "parse_kline",
    "parse_mark_price",
    "parse_rest_trades",
    "parse_trade",
    "parse_trade_id",
    "split_stream",
    "stream_kind",
    "variant_key",
]

_STREAM = re.compile(r'"stream"\s*:\s*"([^"]+)"')
_INF = math.inf

_trade = decoder(TradeEvent)
_agg = decoder(AggTradeEvent)
_kline = decoder(KlineEvent)
_ticker = decoder(BookTickerEvent)
_depth = decoder(DepthUpdateEvent[list[Level]])
_depth_raw = decoder(DepthUpdateEvent[msgspec.Raw])
_mark = decoder(MarkPriceEvent)
_snapshot = decoder(DepthSnapshot, envelope=False)
_rest_trades = decoder(list[RestTrade], envelope=False)
_rest_agg = decoder(list[RestAggTrade], envelope=False)


class StreamKind(StrEnum):
    """Kind of a Binance market-data stream, from its name."""

    TRADE = "trade"
    AGG_TRADE = "aggTrade"
    KLINE = "kline"
    BOOK_TICKER = "bookTicker"
    DEPTH = "depth"
    MARK_PRICE = "markPrice"


def stream_kind(stream: str) -> StreamKind | None:
    """Kind of ``stream`` (``"btcusdt@depth@100ms"`` -> DEPTH), or ``None`` if not a supported stream."""
    _, _, rest = stream.partition("@")
    name = rest.partition("@")[0]
    if name.startswith("kline_"):
        return StreamKind.KLINE
    try:
        return StreamKind(name)
    except ValueError:
        return None


def variant_key(stream: str) -> tuple[str, StreamKind] | None:
    """What ``stream`` carries whatever its parameters or form (``"btcusdt@depth@0ms"`` -> ``("BTCUSDT", DEPTH)``, as
    for every depth speed of that book; ``("BTCUSDT", TRADE)`` for ``btcusdt@trade`` and ``btcusdt@aggTrade``, every
    trade one by one or aggregated per taker order and price under other ids: neither replays as the other),
    ``None`` if not a supported stream."""
    kind = stream_kind(stream)
    if kind is StreamKind.AGG_TRADE:
        kind = StreamKind.TRADE
    return None if kind is None else (stream.partition("@")[0].upper(), kind)


def split_stream(raw: str | bytes) -> str | None:
    """The ``stream`` name of a combined-stream frame without decoding it (``None`` if not one)."""
    if isinstance(raw, bytes):
        if raw.startswith(b'{"stream":"'):
            end = raw.find(b'"', 11)
            return raw[11:end].decode() if end > 0 else None
        return None
    if raw.startswith('{"stream":"'):
        end = raw.find('"', 11)
        return raw[11:end] if end > 0 else None
    return None


def _fail(kind: str, raw: str | bytes, exc: Exception, prefix: str = "") -> FrameError:
    """The venue-wide :class:`FrameError` for a rejected frame, naming its stream (else ``kind``)."""
    found = _STREAM.search(raw[:120] if isinstance(raw, str) else raw[:120].decode("utf-8", "replace"))
    return frame_error("Binance", found.group(1) if found else kind, raw, exc, prefix)


def _positive(price: float, quantity: float) -> FieldError:
    field, value = ("data.p", price) if not 0.0 < price < _INF else ("data.q", quantity)
    return FieldError(field, f"{value}: expected > 0, finite")


def parse_trade(raw: str | bytes, recv_ns: int, instrument_id: str) -> Trade | None:
    """``<symbol>@trade`` -> :class:`Trade` (``ts_event`` = trade time ``T``), ``None`` for a USD-M trade
    that is not a market trade (``X`` ``INSURANCE_FUND`` or ``ADL``: off the book, e.g. 2 % away from it;
    the ``aggTrade`` stream leaves them out too).

    ``aggressor`` is -1 when the buyer was the maker (a sell hit the bid), else +1.
    Payload::

        {"stream":"btcusdt@trade","data":{"e":"trade","E":1723161255343,"s":"BTCUSDT",
         "t":3735683259,"p":"61837.63000000","q":"0.02000000","T":1723161255342,"m":true,"M":true}}
    """
    try:
        d = _trade.decode(raw).data
    except msgspec.MsgspecError as exc:
        raise _fail("trade", raw, exc) from None
    if not (0.0 < d.price < _INF and 0.0 < d.quantity < _INF):
        raise _fail("trade", raw, _positive(d.price, d.quantity))
    if d.trade_type != "MARKET":
        return None
    return Trade(
        instrument_id, d.trade_time * _MS, recv_ns, d.price, d.quantity, -1 if d.buyer_is_maker else 1, str(d.trade_id)
    )


def parse_trade_id(raw: str | bytes) -> int:
    """The trade id ``t`` of a ``<symbol>@trade`` frame (for a trade :func:`parse_trade` leaves out)."""
    try:
        return _trade.decode(raw).data.trade_id
    except msgspec.MsgspecError as exc:
        raise _fail("trade", raw, exc) from None


def parse_rest_trades(raw: str | bytes, recv_ns: int, instrument_id: str, aggregated: bool) -> list[Trade]:
    """A REST trade-history body -> :class:`Trade` list, as the trade (or aggTrade) stream makes them.

    ``aggregated``: a ``GET /api/v3/aggTrades`` body (``trade_id`` = ``a``), else a
    ``GET /api/v3/historicalTrades`` one (``trade_id`` = ``id``); USD-M's ``/fapi/v1/`` twins
    are the same. ``ts_init`` of every trade is ``recv_ns``, the receive time of the answer.
    Payload (historicalTrades)::

        [{"id":3735683259,"price":"61837.63000000","qty":"0.02000000","quoteQty":"1236.7526",
          "time":1723161255342,"isBuyerMaker":true,"isBestMatch":true}]
    """
    channel = "aggTrades" if aggregated else "historicalTrades"
    try:
        rows = (_rest_agg if aggregated else _rest_trades).decode(raw)
    except msgspec.MsgspecError as exc:
        raise frame_error("Binance", channel, raw, exc) from None
    out: list[Trade] = []
    for i, d in enumerate(rows):
        if not (0.0 < d.price < _INF and 0.0 < d.quantity < _INF):
            bad = ("price", d.price) if not 0.0 < d.price < _INF else ("qty", d.quantity)
            raise frame_error("Binance", channel, raw, FieldError(f"[{i}].{bad[0]}", f"{bad[1]}: expected > 0, finite"))
        tid = d.agg_id if aggregated else d.trade_id  # type: ignore[union-attr]
        out.append(Trade(instrument_id, d.trade_time * _MS, recv_ns, d.price, d.quantity, -1 if d.buyer_is_maker else 1, str(tid)))
    return out


def parse_agg_trade(raw: str | bytes, recv_ns: int, instrument_id: str) -> Trade:
    """``<symbol>@aggTrade`` -> :class:`Trade` (``trade_id`` = aggregate id ``a``).

    Payload::

        {"stream":"nknusdt@aggTrade","data":{"e":"aggTrade","E":1633998523963,"s":"NKNUSDT",
         "a":15683430,"p":"0.35280000","q":"58.00000000","f":19862790,"l":19862790,
         "T":1633998523963,"m":false,"M":true}}
    """
    try:
        d = _agg.decode(raw).data
    except msgspec.MsgspecError as exc:
        raise _fail("aggTrade", raw, exc) from None
    if not (0.0 < d.price < _INF and 0.0 < d.quantity < _INF):
        raise _fail("aggTrade", raw, _positive(d.price, d.quantity))
    return Trade(
        instrument_id, d.trade_time * _MS, recv_ns, d.price, d.quantity, -1 if d.buyer_is_maker else 1, str(d.agg_id)
    )


def parse_kline(raw: str | bytes, recv_ns: int, instrument_id: str) -> Bar | None:
    """``<symbol>@kline_<interval>`` -> :class:`Bar` for a *closed* kline (``x: true``), else ``None``.

    ``ts_event`` is the bar's close time: Binance's ``T`` is the last millisecond inside
    the bar (start + interval - 1 ms), so ``ts_event = (T + 1) ms`` — the exact interval
    boundary, the same stamp a catalog bar of that interval gets.
    Payload::

        {"stream":"sushiusdt@kline_1m","data":{"e":"kline","E":1626992760203,"s":"SUSHIUSDT",
         "k":{"t":1626992700000,"T":1626992759999,"s":"SUSHIUSDT","i":"1m","f":126902874,
         "L":126902986,"o":"7.6080","c":"7.6170","h":"7.6180","l":"7.6070","v":"3005","n":113,
         "x":true,"q":"22875.8590","V":"1900","Q":"14464.6960","B":"0"}}}
    """
    try:
        k = _kline.decode(raw).data.kline
    except msgspec.MsgspecError as exc:
        raise _fail("kline", raw, exc) from None
    if not k.closed:
        return None
    if not (0.0 < k.low <= min(k.open, k.close) and max(k.open, k.close) <= k.high < _INF and 0.0 <= k.volume < _INF):
        raise _fail(
            "kline",
            raw,
            FieldError(
                "data.k",
                f"o={k.open} h={k.high} l={k.low} c={k.close} v={k.volume}: "
                "expected 0 < low <= open, close <= high and volume >= 0",
            ),
        )
    return Bar(instrument_id, (k.close_time + 1) * _MS, recv_ns, k.open, k.high, k.low, k.close, k.volume)


def parse_book_ticker(raw: str | bytes, recv_ns: int, instrument_id: str) -> Quote:
    """``<symbol>@bookTicker`` -> :class:`Quote`.

    ``ts_event``: futures' transaction time ``T`` (else event time ``E``); spot frames carry
    no time, so ``ts_event = recv_ns`` there. Payload (spot)::

        {"stream":"btcusdt@bookTicker","data":{"u":50093239212,"s":"BTCUSDT",
         "b":"61837.63000000","B":"3.78826000","a":"61837.64000000","A":"1.54698000"}}
    """
    try:
        d = _ticker.decode(raw).data
    except msgspec.MsgspecError as exc:
        raise _fail("bookTicker", raw, exc) from None
    if not (
        0.0 < d.bid_price < _INF and 0.0 < d.ask_price < _INF and 0.0 <= d.bid_qty < _INF and 0.0 <= d.ask_qty < _INF
    ):
        raise _fail(
            "bookTicker",
            raw,
            FieldError("data", f"bid {d.bid_price} x {d.bid_qty} / ask {d.ask_price} x {d.ask_qty}: "
                       "expected prices > 0 and sizes >= 0, all finite"),
        )
    ts = d.transaction_time or d.event_time
    return Quote(
        instrument_id, ts * _MS if ts else recv_ns, recv_ns, d.bid_price, d.bid_qty, d.ask_price, d.ask_qty
    )


def parse_depth_update(raw: str | bytes, recv_ns: int, instrument_id: str) -> BookDelta:
    """``<symbol>@depth[@speed]`` -> :class:`BookDelta` (``first_seq=U``, ``last_seq=u``, ``prev_seq=pu`` or -1).

    ``ts_event``: futures' transaction time ``T``, else the event time ``E``. Payload (USD-M)::

        {"stream":"btcusdt@depth@0ms","data":{"e":"depthUpdate","E":1680652700594,
         "T":1680652700586,"s":"BTCUSDT","U":2710246765373,"u":2710246765597,"pu":2710246765326,
         "b":[["5000.00","14.368"],["28018.90","0.000"]],"a":[["28145.20","6.961"]]}}
    """
    try:
        d = _depth_raw.decode(raw).data
    except msgspec.MsgspecError as exc:
        raise _fail("depthUpdate", raw, exc) from None
    if d.first_update_id > d.final_update_id:
        raise _fail("depthUpdate", raw, FieldError("data.U", f"{d.first_update_id}: expected <= u={d.final_update_id}"))
    levels = raw_pair_levels(d.bids, d.asks)
    if levels is None:  # not the plain form: the typed decoder gives the numbers or names the bad level
        try:
            typed = _depth.decode(raw).data
        except msgspec.MsgspecError as exc:
            raise _fail("depthUpdate", raw, exc) from None
        try:
            levels = pair_levels(typed.bids, typed.asks, ("b", "a"))
        except FieldError as exc:
            raise _fail("depthUpdate", raw, exc, "data") from None
    bids, asks = levels
    return BookDelta(
        instrument_id,
        (d.transaction_time or d.event_time) * _MS,
        recv_ns,
        bids,
        asks,
        d.first_update_id,
        d.final_update_id,
        d.prev_final_update_id,
    )


def parse_mark_price(raw: str | bytes, recv_ns: int, instrument_id: str) -> tuple[MarkPrice, FundingRate | None]:
    """``<symbol>@markPrice[@1s]`` (USD-M) -> (:class:`MarkPrice`, :class:`FundingRate` or None).

    The funding rate is None when Binance sends an empty ``r`` (delivery contracts); it is not checked
    against :data:`~tradebus.engine.perpetuals.MAX_FUNDING_RATE` here: the feed refuses an implausible
    rate and keeps the mark price (:class:`~tradebus.adapters.common.parsing.FundingRateCheck`).
    Payload::

        {"stream":"btcusdt@markPrice@1s","data":{"e":"markPriceUpdate","E":1680652701000,
         "s":"BTCUSDT","p":"28147.27373413","P":"28142.15563565","i":"28159.75642857",
         "r":"0.00002754","T":1680652800000}}
    """
    try:
        d = _mark.decode(raw).data
    except msgspec.MsgspecError as exc:
        raise _fail("markPriceUpdate", raw, exc) from None
    if not (0.0 < d.mark_price < _INF):
        raise _fail("markPriceUpdate", raw, FieldError("data.p", f"{d.mark_price}: expected a mark price > 0, finite"))
    ts = d.event_time * _MS
    index = d.index_price if 0.0 < d.index_price < _INF else math.nan
    mark = MarkPrice(instrument_id, ts, recv_ns, d.mark_price, index)
    if not d.funding_rate:
        return mark, None
    try:
        rate = float(d.funding_rate)
    except ValueError:
        raise _fail("markPriceUpdate", raw, FieldError("data.r", f"{d.funding_rate!r}: expected a number")) from None
    return mark, FundingRate(instrument_id, ts, recv_ns, rate, d.next_funding_time * _MS)


def parse_depth_snapshot(raw: str | bytes, recv_ns: int, instrument_id: str) -> BookSnapshot:
    """REST depth response -> :class:`BookSnapshot` (``last_seq`` = ``lastUpdateId``).

    ``ts_event``: futures' ``T`` (else ``E``); spot responses carry no time, so ``recv_ns``.
    Payload (spot, truncated)::

        {"lastUpdateId":50093239218,"bids":[["61837.63000000","3.78826000"],...],
         "asks":[["61837.64000000","1.54698000"],...]}
    """
    try:
        d = _snapshot.decode(raw)
    except msgspec.MsgspecError as exc:
        raise _fail("depth snapshot", raw, exc) from None
    ts = d.transaction_time or d.event_time
    try:
        bids, asks = pair_levels(d.bids, d.asks, ("bids", "asks"))
    except FieldError as exc:
        raise _fail(f"depth snapshot of {instrument_id}", raw, exc) from None
    return BookSnapshot(instrument_id, ts * _MS if ts else recv_ns, recv_ns, bids, asks, d.last_update_id)
