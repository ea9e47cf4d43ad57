"""Bybit v5 public WebSocket frames -> core messages.

Entry point: :meth:`BybitParser.parse_frame` (``raw`` frame as received, local
receive time in ns) returns a list of core messages. One parser per connection:
Bybit's spot and linear streams use the same symbols (``BTCUSDT``) on different
URLs, so the parser is built for one ``category`` and names instruments
``BTCUSDT.BYBIT`` (spot) or ``BTCUSDT-LINEAR.BYBIT`` (linear) -- see
:func:`instrument_symbol`. Times: ``ts_event`` is Bybit's ms time converted to
ns (trade ``T``, book/ticker ``ts``, kline close), ``ts_init`` the receive time.

Decoding: the topic is found with a string search for ``"topic":"`` and looked up in
the routes built so far; a known topic's frame is decoded in one pass with the typed
``*Frame`` struct of its kind (the decoded ``topic`` must match, else the frame takes
the general path); a ticker push keeps ``data`` raw and decodes it to the typed numbers
(:class:`~tradebus.adapters.bybit.schemas.BybitTickerPush`); the raw ``data`` is kept
and merged into the ticker's fields dict when :meth:`BybitParser.ticker` reads it (or
every :data:`_MERGE_EVERY` pushes), not per push.
Otherwise (first frame of a topic, control frames, unknown topics) the envelope
(:class:`BybitFrame`, ``data`` kept raw) is decoded first and the topic routed.
Unknown topics are skipped with a logged reason; undecodable frames raise
:class:`~tradebus.adapters.common.parsing.FrameError` naming the topic and the field
(``data.b[3]``), with the message shape shared by all venues.

Order books: one :class:`~tradebus.adapters.common.sync.BookSync` (Numba book) per
topic with :class:`~tradebus.adapters.bybit.sync.BybitRule`, kept by
:class:`~tradebus.adapters.common.stream_books.StreamBooks`; a failed book emits
nothing until a fresh snapshot, which the books obtain by resubscribing the topic
(the client's ``resubscribe``); :class:`BookResynced` follows that snapshot.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import msgspec
from loguru import logger
from msgspec import UNSET
from msgspec.structs import astuple

from tradebus.adapters.bybit.schemas import (
    BybitBookFrame,
    BybitFrame,
    BybitKlineFrame,
    BybitTickerFrame,
    BybitTickerPush,
    BybitTradeFrame,
    TickerFields,
    TickerNumbers,
)
from tradebus.adapters.bybit.sync import BybitRule, is_snapshot
from tradebus.dedup import TradeDeduper
from tradebus.adapters.common.parsing import (
    MAX_MILLIS, MS, WHOLE_FRAME, FieldError, FrameError, FundingRateCheck, describe_frame, frame_error, pair_levels,
)
from tradebus.adapters.common.policy import SubscriptionRejected
from tradebus.adapters.common.stream_books import Resubscribe, StreamBooks, StreamBooksParser
from tradebus.adapters.common.sync import BookSync
from tradebus.engine.messages import Bar, BookDelta, BookSnapshot, FundingRate, MarkPrice, Quote, Trade
from tradebus.errors import ConfigError, ParseError

__all__ = ["CATEGORIES", "BybitParser", "describe_frame", "frame_stream", "instrument_symbol", "variant_key"]

CATEGORIES = {"spot": "", "linear": "-LINEAR"}
"""Supported categories and the suffix they add to the symbol in instrument ids."""

_NUMERIC = frozenset(TickerNumbers.__struct_fields__)
_DEDUP_WINDOW = 4096
_MAX = 1.7976931348623157e308
_TOPIC = '"topic":"'
_TOPIC_B = b'"topic":"'
_envelope = msgspec.json.Decoder(BybitFrame)

Handler = Callable[[Any, str, str, Any, int], list]
"""``handler(raw, topic, instrument_id, state, recv_ns)``; ``state`` is the topic's own (dedup, ticker, book)."""
Route = tuple[Handler, str, Any]


def instrument_symbol(symbol: str, category: str) -> str:
    """The tradebus symbol of a Bybit symbol: ``BTCUSDT`` (spot), ``BTCUSDT-LINEAR`` (linear).

    Raises
    ------
    ConfigError
        ``category`` is not ``"spot"`` or ``"linear"``.
    """
    suffix = CATEGORIES.get(category)
    if suffix is None:
        raise ConfigError(f"Bybit category {category!r}: expected one of {sorted(CATEGORIES)}")
    return symbol + suffix


def _scan_topic(raw: str | bytes) -> str | None:
    """The value of the first ``"topic":"...`` in ``raw`` (a hint, checked against the decoded frame)."""
    if isinstance(raw, str):
        i = raw.find(_TOPIC)
        if i < 0:
            return None
        i += 9
        return raw[i : raw.find('"', i)]
    if not isinstance(raw, bytes):
        return None
    i = raw.find(_TOPIC_B)
    if i < 0:
        return None
    i += 9
    return raw[i : raw.find(b'"', i)].decode("utf-8", "replace")


def variant_key(topic: str) -> tuple[str, str] | None:
    """What a topic carries whatever its depth or interval: ``("orderbook", symbol)`` for every
    ``orderbook.<depth>.<symbol>``, ``("kline", symbol)`` for every ``kline.<interval>.<symbol>``, ``None`` for
    another topic."""
    channel, _, rest = topic.partition(".")
    if channel not in ("orderbook", "kline"):
        return None
    return channel, rest.partition(".")[2]


def frame_stream(raw: str | bytes) -> str | None:
    """The topic of a pushed frame (``"orderbook.50.BTCUSDT"``).

    ``None`` for an ``op`` reply or a frame that does not decode (the parser says what is
    wrong with it).
    """
    try:
        return _envelope.decode(raw).topic or None
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def _ticker_numbers(data: dict[str, Any]) -> TickerNumbers:
    """The numeric fields of a ticker push one by one: ``""`` is ``None``; a bad value raises :class:`FieldError`."""
    numbers: dict[str, float | None] = {}
    for name in _NUMERIC.intersection(data):
        value = data[name]
        if value == "":
            numbers[name] = None
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise FieldError(f"data.{name}", f"{value!r}: expected a decimal string") from None
        if not -_MAX <= number <= _MAX:
            raise FieldError(f"data.{name}", f"{value!r}: expected a finite number")
        if name == "nextFundingTime" and not 0 <= number < MAX_MILLIS:
            raise FieldError(f"data.{name}", f"{value!r}: expected a time in ms, 0 to 2100")
        numbers[name] = number
    return TickerNumbers(**numbers)  # type: ignore[arg-type]  # None: sent empty


#: Raw ticker pushes kept before they are merged into the fields dict (bounds their memory).
_MERGE_EVERY = 64


class _Ticker:
    """Merged ticker of one symbol: every field as sent, and the numeric ones as floats (``None``: unknown or empty).

    ``fields`` lags by the raw ``data`` objects in ``pending``, merged in order by :meth:`merge`.
    """

    __slots__ = ("fields", "pending", "started", *sorted(_NUMERIC))

    def __init__(self) -> None:
        self.fields: dict[str, Any] = {}
        self.pending: list[msgspec.Raw] = []
        self.started = False
        self.clear_numbers()

    def merge(self, decode: Callable[[msgspec.Raw], dict[str, Any]]) -> dict[str, Any]:
        """Merge the pending pushes into ``fields`` and return it."""
        fields = self.fields
        for data in self.pending:
            fields.update(decode(data))
        self.pending.clear()
        return fields

    def clear_numbers(self) -> None:
        """Forget every numeric field (a snapshot replaces the ticker)."""
        self.bid1Price = self.bid1Size = self.ask1Price = self.ask1Size = None
        self.markPrice = self.indexPrice = self.fundingRate = self.nextFundingTime = None


class BybitParser(StreamBooksParser):
    """Stateful parser of one Bybit v5 public connection (books, merged tickers, trade dedup).

    Parameters
    ----------
    category
        ``"spot"`` or ``"linear"`` (the URL the connection uses).
    venue
        Venue name in instrument ids.
    resubscribe
        Async ``resubscribe(topic)`` of the client: how a failed book gets a fresh
        snapshot. ``None``: the caller feeds snapshots (playback, tests).

    Attributes
    ----------
    books
        The order books (``topic`` -> BookSync).
    skipped
        Counts of skipped frames/items by reason.
    funding_rates
        Refuses a ticker's implausible funding rate (its quote and mark price are used; no FundingRate
        until a plausible rate comes).
    """

    def __init__(
        self,
        category: str = "linear",
        venue: str = "BYBIT",
        *,
        resubscribe: Resubscribe | None = None,
    ) -> None:
        instrument_symbol("", category)
        self.category = category
        self.venue = venue
        self.skipped: Counter[str] = Counter()
        self.funding_rates = FundingRateCheck(f"bybit {category}")
        self._suffix = CATEGORIES[category]
        self.books = StreamBooks(self._rule, resubscribe)
        self._routes: dict[str, Route | None] = {}
        self._tickers: dict[str, _Ticker] = {}
        self._frame = msgspec.json.Decoder(BybitFrame)
        self._trade_frame = msgspec.json.Decoder(BybitTradeFrame, strict=False)
        self._kline_frame = msgspec.json.Decoder(BybitKlineFrame, strict=False)
        self._ticker_frame = msgspec.json.Decoder(BybitTickerFrame)
        self._decode_ticker_push = msgspec.json.Decoder(BybitTickerPush).decode
        self._decode_ticker_fields = msgspec.json.Decoder(TickerFields).decode
        self._decode_ticker_numbers = msgspec.json.Decoder(TickerNumbers, strict=False).decode
        self._book_frame = msgspec.json.Decoder(BybitBookFrame, strict=False)
        self._prefixes: dict[str, Callable[[str, str], Route]] = {
            "publicTrade": lambda topic, iid: (self._on_trades, iid, TradeDeduper(_DEDUP_WINDOW)),
            "kline": lambda topic, iid: (self._on_klines, iid, None),
            "tickers": lambda topic, iid: (self._on_tickers, iid, self._ticker_state(topic[8:])),
            "orderbook": lambda topic, iid: (self._on_book, iid, self.books.open(topic, iid)),
        }

    # ------------------------------------------------------------------ public

    def instrument_id(self, symbol: str) -> str:
        """``"{symbol}{suffix}.{venue}"`` for this parser's category."""
        return f"{symbol}{self._suffix}.{self.venue}"

    def book(self, topic: str) -> BookSync | None:
        """The book kept for ``topic`` (``"orderbook.200.BTCUSDT"``), ``None`` before its first message.

        ``.book`` is the Numba order book, ``.synced`` whether it may be read.
        """
        return self.books.syncs.get(topic)

    def book_in_sync(self, topic: str) -> bool:
        """True if the book of ``topic`` has a snapshot and is not waiting for a resync."""
        return self.books.in_sync(topic)

    def ticker(self, symbol: str) -> dict[str, Any]:
        """The merged ticker fields of ``symbol`` (snapshot + every delta since), a copy."""
        state = self._tickers.get(symbol)
        return dict(state.merge(self._decode_ticker_fields)) if state is not None else {}

    def parse_frame(self, raw: bytes | str, recv_ns: int) -> list:
        """Parse one frame into core messages.

        Parameters
        ----------
        raw
            The frame as received.
        recv_ns
            Local receive time, ns since the epoch (``ts_init``).

        Returns
        -------
        list
            Core messages (empty for control frames and skipped topics).

        Raises
        ------
        ParseError
            Not valid JSON, not a Bybit frame, or a known topic with a field of
            the wrong type or an impossible value. Nothing was applied.
        SubscriptionRejected
            A ``success: false`` reply to a subscribe or unsubscribe request.
        """
        if isinstance(raw, str):  # _scan_topic inlined: this is the hot path
            i = raw.find(_TOPIC) + 9
            topic: str | None = raw[i : raw.find('"', i)] if i > 8 else None
        else:
            topic = _scan_topic(raw)
        route = self._routes.get(topic) if topic is not None else None
        if route is None:
            return self._parse_routed(raw, recv_ns)
        self.data_ns = recv_ns
        handler, iid, state = route
        try:
            return handler(raw, topic, iid, state, recv_ns)
        except (msgspec.DecodeError, msgspec.ValidationError, ParseError) as exc:
            raise frame_error("Bybit", topic, raw, exc) from None

    # --------------------------------------------------------------- internals

    def _parse_routed(self, raw: bytes | str, recv_ns: int) -> list:
        """The general path: decode the envelope, then route by its topic."""
        try:
            frame = self._frame.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise frame_error("Bybit", "", raw, exc) from None
        topic = frame.topic
        if not topic:
            if frame.op:
                self._on_control(frame, raw)
                return []
            raise FrameError("Bybit", "", WHOLE_FRAME, "expected a 'topic' push or an 'op' reply", raw)
        self.data_ns = recv_ns
        route = self._routes.get(topic, False)
        if route is False:
            route = self._routes[topic] = self._route(topic)
        if route is None:
            key = f"unknown_topic:{topic.split('.', 1)[0]}"
            if not self.skipped[key]:
                logger.warning("Bybit {}: skipping topic {!r} (no parser for it)", self.category, topic)
            self.skipped[key] += 1
            return []
        if not frame.data:
            raise FrameError("Bybit", topic, "data", "missing", raw)
        return self._call(route, raw, topic, recv_ns)

    def _call(self, route: Route, raw: bytes | str, topic: str, recv_ns: int) -> list:
        handler, iid, state = route
        try:
            return handler(raw, topic, iid, state, recv_ns)
        except (msgspec.DecodeError, msgspec.ValidationError, ParseError) as exc:
            raise frame_error("Bybit", topic, raw, exc) from None

    def _route(self, topic: str) -> Route | None:
        parts = topic.split(".")
        make = self._prefixes.get(parts[0])
        if make is None or len(parts) < 2 or not parts[-1]:
            return None
        if parts[0] in ("kline", "orderbook") and len(parts) != 3:
            return None
        return make(topic, self.instrument_id(parts[-1]))

    def _rule(self, topic: str) -> BybitRule:
        return BybitRule(f"BYBIT {self.category} {topic}")

    def _ticker_state(self, symbol: str) -> _Ticker:
        state = self._tickers.get(symbol)
        if state is None:
            state = self._tickers[symbol] = _Ticker()
        return state

    def _on_control(self, frame: BybitFrame, raw: bytes | str) -> None:
        if frame.success is False and frame.op in ("subscribe", "unsubscribe"):
            raise SubscriptionRejected(f"Bybit {self.category} rejected a {frame.op}: {frame.ret_msg!r}")
        if frame.success is False:
            logger.error("Bybit {}: {} failed: {!r} (frame {})", self.category, frame.op, frame.ret_msg, describe_frame(raw))
        else:
            logger.debug("Bybit {}: {} ok {}", self.category, frame.op, frame.ret_msg)

    def _on_trades(self, raw: bytes | str, topic: str, iid: str, recent: TradeDeduper, recv_ns: int) -> list:
        """``publicTrade.{symbol}``: one Trade per element, deduplicated by trade id ``i``.

        Payload::

            {"topic": "publicTrade.BTCUSDT", "type": "snapshot", "ts": 1786310819681,
             "data": [{"T": 1786310819680, "s": "BTCUSDT", "S": "Sell", "v": "0.004", "p": "65114.20",
                       "L": "MinusTick", "i": "a9188a0a-82bc-50de-be60-03eedbe3cdd7", "BT": false,
                       "RPI": false, "seq": 753843954913}]}
        """
        frame = self._trade_frame.decode(raw)
        if frame.topic != topic:
            return self._parse_routed(raw, recv_ns)
        trades = frame.data
        if len(trades) == 1:
            t = trades[0]
            if not recent.seen(t.i):
                return [Trade(iid, t.T * MS, recv_ns, t.p, t.v, 1 if t.S == "Buy" else -1, t.i)]
            new: list[bool] | None = [False]
        else:
            new = recent.first_seen([t.i for t in trades])
            if new is None:  # no duplicate: the usual case
                return [Trade(iid, t.T * MS, recv_ns, t.p, t.v, 1 if t.S == "Buy" else -1, t.i) for t in trades]
        out = []
        for t, fresh in zip(trades, new, strict=True):
            if not fresh:
                self.skipped["duplicate_trade"] += 1
                logger.debug("Bybit: duplicate trade {} {} dropped", iid, t.i)
                continue
            out.append(Trade(iid, t.T * MS, recv_ns, t.p, t.v, 1 if t.S == "Buy" else -1, t.i))
        return out

    def _on_klines(self, raw: bytes | str, topic: str, iid: str, state: None, recv_ns: int) -> list:
        """``kline.{interval}.{symbol}``: a Bar per *confirmed* kline (``confirm: true``).

        ``ts_event`` is the close time ``end + 1 ms`` (= start + interval; Bybit's
        ``end`` is the last millisecond inside the bar).

        Payload::

            {"topic": "kline.1.BTCUSDT", "type": "snapshot", "ts": 1786310818440,
             "data": [{"start": 1786310760000, "end": 1786310819999, "interval": "1", "open": "65119.9",
                       "close": "65114.3", "high": "65119.9", "low": "65114.2", "volume": "1.576",
                       "turnover": "102627.995", "confirm": false, "timestamp": 1786310818440}]}
        """
        frame = self._kline_frame.decode(raw)
        if frame.topic != topic:
            return self._parse_routed(raw, recv_ns)
        out = []
        for i, k in enumerate(frame.data):
            if not k.confirm:
                self.skipped["unconfirmed_kline"] += 1
                continue
            if not (k.low <= min(k.open, k.close) and max(k.open, k.close) <= k.high and k.end >= k.start):
                raise FieldError(
                    f"data[{i}]",
                    f"start={k.start} o={k.open} h={k.high} l={k.low} c={k.close}: "
                    "expected low <= open,close <= high and end >= start",
                )
            out.append(Bar(iid, (k.end + 1) * MS, recv_ns, k.open, k.high, k.low, k.close, k.volume))
        return out

    def _on_tickers(self, raw: bytes | str, topic: str, iid: str, state: _Ticker, recv_ns: int) -> list:
        """``tickers.{symbol}``: merged per symbol; Quote, MarkPrice, FundingRate when their fields change.

        Linear sends a ``snapshot`` then ``delta`` frames carrying only the
        changed fields; the parser keeps the merged ticker and builds each
        message from it when the frame touched one of its fields: Quote from
        ``bid1Price/bid1Size/ask1Price/ask1Size``, MarkPrice from
        ``markPrice``/``indexPrice``, FundingRate from ``fundingRate`` with
        ``nextFundingTime``. Spot tickers carry no best bid/ask nor mark and
        yield nothing. ``ts_event`` is the frame's ``ts``. A frame with a bad
        numeric field is rejected before anything is merged; an implausible
        ``fundingRate`` (:attr:`funding_rates`) is the one field dropped, the
        rest of the frame is used, and no FundingRate follows until a plausible rate.

        Payload (linear delta)::

            {"topic": "tickers.BTCUSDT", "type": "delta",
             "data": {"symbol": "BTCUSDT", "bid1Price": "65114.20", "bid1Size": "6.054",
                      "ask1Price": "65114.30", "ask1Size": "10.486"},
             "cs": 753843907770, "ts": 1786310817883}
        """
        try:
            frame = self._decode_ticker_push(raw)
        except (msgspec.DecodeError, msgspec.ValidationError):
            self._ticker_frame.decode(raw)  # raises the error with its path in the whole push
            raise
        if frame.topic != topic:
            return self._parse_routed(raw, recv_ns)
        data = frame.data
        try:  # every numeric field in one C pass (the usual case: no empty or bad value)
            n = self._decode_ticker_numbers(data)
        except msgspec.ValidationError:
            try:
                n = _ticker_numbers(self._decode_ticker_fields(data))
            except msgspec.ValidationError:
                self._ticker_frame.decode(raw)
                raise
        snapshot = frame.type == "snapshot"
        pending = state.pending
        if snapshot or not state.started:
            if not (snapshot or state.started):
                self.skipped["ticker_delta_before_snapshot"] += 1
            state.fields.clear()
            pending.clear()
            state.clear_numbers()
            state.started = True
        pending.append(data)
        if len(pending) >= _MERGE_EVERY:
            state.merge(self._decode_ticker_fields)
        # merge what the push carries (UNSET: not in it), noting which messages it touches
        bid1, bid1_sz, ask1, ask1_sz, mark_px, index_px, funding_rate, next_funding = astuple(n)
        quote = mark = funding = False
        if bid1 is not UNSET:
            state.bid1Price, quote = bid1, True
        if bid1_sz is not UNSET:
            state.bid1Size, quote = bid1_sz, True
        if ask1 is not UNSET:
            state.ask1Price, quote = ask1, True
        if ask1_sz is not UNSET:
            state.ask1Size, quote = ask1_sz, True
        if mark_px is not UNSET:
            state.markPrice, mark = mark_px, True
        if index_px is not UNSET:
            state.indexPrice, mark = index_px, True
        if funding_rate is not UNSET:
            if funding_rate is None or self.funding_rates.accept(iid, funding_rate):
                state.fundingRate, funding = funding_rate, True
            else:  # unknown until a plausible rate comes: the last one is not the next funding's
                state.fundingRate = None
        if next_funding is not UNSET:
            state.nextFundingTime, funding = next_funding, True
        out: list = []
        ts_event = frame.ts * MS
        if quote:
            bid, bid_sz, ask, ask_sz = state.bid1Price, state.bid1Size, state.ask1Price, state.ask1Size
            if bid is None or bid_sz is None or ask is None or ask_sz is None:
                self.skipped["ticker_incomplete_bbo"] += 1
            elif bid > 0.0 and ask > 0.0 and bid_sz >= 0.0 and ask_sz >= 0.0:
                out.append(Quote(iid, ts_event, recv_ns, bid, bid_sz, ask, ask_sz))
            else:
                self.skipped["ticker_bad_bbo"] += 1
        if mark:
            price = state.markPrice
            if price is not None and price > 0.0:
                index = state.indexPrice
                out.append(MarkPrice(iid, ts_event, recv_ns, price, float("nan") if index is None else index))
        if funding:
            rate, next_time = state.fundingRate, state.nextFundingTime
            if rate is not None and next_time is not None:
                out.append(FundingRate(iid, ts_event, recv_ns, rate, int(next_time) * MS))
        return out

    def _on_book(self, raw: bytes | str, topic: str, iid: str, sync: BookSync, recv_ns: int) -> list:
        """``orderbook.{depth}.{symbol}``: BookSnapshot / BookDelta under the update-id rule.

        ``type`` ``snapshot`` (or ``u == 1``) replaces the book; ``delta`` must
        continue ``u`` by one. ``first_seq``/``last_seq`` carry ``u``, ``prev_seq`` ``u - 1``.

        Payload::

            {"topic": "orderbook.200.BTCUSDT", "type": "delta", "ts": 1786310818130,
             "data": {"s": "BTCUSDT", "b": [["65095.30", "0.005"], ["65093.10", "0"]],
                      "a": [["65116.60", "0"]], "u": 15076953, "seq": 753843911421},
             "cts": 1786310818027}
        """
        books = self.books
        try:
            frame = self._book_frame.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError):
            books.lost(topic, "undecodable book message")
            raise
        if frame.topic != topic:
            return self._parse_routed(raw, recv_ns)
        if frame.type not in ("snapshot", "delta"):
            books.lost(topic, f"unknown type {frame.type!r}")
            raise FieldError("type", f"{frame.type!r}: expected 'snapshot' or 'delta'")
        msg = frame.data
        try:
            bids, asks = pair_levels(msg.b, msg.a, ("b", "a"))
        except FieldError as exc:
            books.lost(topic, "malformed book level")
            raise FieldError(f"data.{exc.field}", exc.problem) from None
        ts_event = frame.ts * MS
        u = msg.u
        if is_snapshot(frame.type, u):
            return books.on_snapshot(topic, sync, BookSnapshot(iid, ts_event, recv_ns, bids, asks, u))
        return books.on_delta(topic, sync, BookDelta(iid, ts_event, recv_ns, bids, asks, u, u, u - 1))
