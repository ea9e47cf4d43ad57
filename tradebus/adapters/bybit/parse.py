"""Bybit v5 public WebSocket frames -> core messages.

Entry point: :meth:`BybitParser.parse_frame` (``raw`` frame as received, local
receive time in ns) returns a list of core messages. One parser per connection:
Bybit's spot and linear streams use the same symbols (``BTCUSDT``) on different
URLs, so the parser is built for one ``category`` and names instruments
``BTCUSDT.BYBIT`` (spot) or ``BTCUSDT-LINEAR.BYBIT`` (linear) -- see
:func:`instrument_symbol`. Times: ``ts_event`` is Bybit's ms time converted to
ns (trade ``T``, book/ticker ``ts``, kline close), ``ts_init`` the receive time.

Frames decode in two steps: the envelope (:class:`BybitFrame`, ``data`` kept raw),
then ``data`` with the typed decoder of the topic, found through a per-topic
cache built on first sight. Unknown topics are skipped with a logged reason;
undecodable frames raise :class:`~tradebus.errors.ParseError`.

Order books follow :mod:`tradebus.adapters.bybit.sync`; on a failure the book
drops deltas until a fresh snapshot, and a resync is requested
(:attr:`BybitParser.resync_requests`, ``on_resync``): the client resubscribes
the topic, Bybit answers with a snapshot, and :class:`BookResynced` follows it.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Callable
from typing import Any

import msgspec
import numpy as np
from loguru import logger

from tradebus.adapters.bybit.schemas import BybitBook, BybitFrame, BybitKline, BybitTrade, TickerFields
from tradebus.adapters.bybit.sync import BybitBookSync, Level
from tradebus.engine.messages import (
    Bar,
    BookDelta,
    BookResynced,
    BookSnapshot,
    FundingRate,
    MarkPrice,
    Quote,
    Trade,
)
from tradebus.errors import BookError, ConfigError, ParseError

__all__ = ["CATEGORIES", "BybitParser", "describe_frame", "instrument_symbol"]

MS = 1_000_000
"""Nanoseconds per millisecond."""

CATEGORIES = {"spot": "", "linear": "-LINEAR"}
"""Supported categories and the suffix they add to the symbol in instrument ids."""

_QUOTE_FIELDS = frozenset({"bid1Price", "bid1Size", "ask1Price", "ask1Size"})
_MARK_FIELDS = frozenset({"markPrice", "indexPrice"})
_FUNDING_FIELDS = frozenset({"fundingRate", "nextFundingTime"})
_NUMERIC = _QUOTE_FIELDS | _MARK_FIELDS | _FUNDING_FIELDS
_EMPTY = np.empty((0, 2), dtype=np.float64)
_EMPTY.setflags(write=False)
_DEDUP_WINDOW = 4096
_MAX = 1.7976931348623157e308

Handler = Callable[[str, str, BybitFrame, int], list]


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


def describe_frame(raw: bytes | str, limit: int = 160) -> str:
    """A short printable excerpt of a frame for error messages."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes | bytearray | memoryview) else str(raw)
    return repr(text if len(text) <= limit else text[:limit] + f"...(+{len(text) - limit} chars)")


class _RecentIds:
    """The last ``capacity`` trade ids of one instrument (bounded memory dedup)."""

    __slots__ = ("_ids", "_capacity")

    def __init__(self, capacity: int) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._capacity = capacity

    def seen(self, trade_id: str) -> bool:
        """Return True if ``trade_id`` was seen recently, else remember it and return False."""
        ids = self._ids
        if trade_id in ids:
            return True
        ids[trade_id] = None
        if len(ids) > self._capacity:
            ids.popitem(last=False)
        return False


class _Book:
    __slots__ = ("sync", "resync_reason", "dropped")

    def __init__(self, sync: BybitBookSync) -> None:
        self.sync = sync
        self.resync_reason = ""
        self.dropped = 0


class BybitParser:
    """Stateful parser of one Bybit v5 public connection (books, merged tickers, trade dedup).

    Parameters
    ----------
    category
        ``"spot"`` or ``"linear"`` (the URL the connection uses).
    venue
        Venue name in instrument ids.
    on_resync
        Called with ``(topic, symbol, reason)`` when a book needs a fresh snapshot.

    Attributes
    ----------
    resync_requests
        ``(topic, symbol, reason)`` of every resync requested, in order.
    skipped
        Counts of skipped frames/items by reason.
    """

    def __init__(
        self,
        category: str = "linear",
        venue: str = "BYBIT",
        *,
        on_resync: Callable[[str, str, str], None] | None = None,
    ) -> None:
        instrument_symbol("", category)
        self.category = category
        self.venue = venue
        self.on_resync = on_resync
        self.resync_requests: list[tuple[str, str, str]] = []
        self.skipped: Counter[str] = Counter()
        self._suffix = CATEGORIES[category]
        self._routes: dict[str, tuple[Handler, str, str] | None] = {}
        self._books: dict[str, _Book] = {}
        self._tickers: dict[str, dict[str, Any]] = {}
        self._trade_ids: dict[str, _RecentIds] = {}
        self._frame = msgspec.json.Decoder(BybitFrame)
        self._trades = msgspec.json.Decoder(list[BybitTrade], strict=False)
        self._klines = msgspec.json.Decoder(list[BybitKline], strict=False)
        self._book = msgspec.json.Decoder(BybitBook, strict=False)
        self._ticker = msgspec.json.Decoder(TickerFields)
        self._prefixes: dict[str, Handler] = {
            "publicTrade": self._on_trades,
            "kline": self._on_klines,
            "tickers": self._on_tickers,
            "orderbook": self._on_book,
        }

    # ------------------------------------------------------------------ public

    def instrument_id(self, symbol: str) -> str:
        """``"{symbol}{suffix}.{venue}"`` for this parser's category."""
        return f"{symbol}{self._suffix}.{self.venue}"

    def book(self, topic: str) -> BybitBookSync | None:
        """The book kept for ``topic`` (``"orderbook.200.BTCUSDT"``), ``None`` before its first message."""
        state = self._books.get(topic)
        return state.sync if state is not None else None

    def book_in_sync(self, topic: str) -> bool:
        """True if the book of ``topic`` has a snapshot and is not waiting for a resync."""
        state = self._books.get(topic)
        return state is not None and state.sync.has_snapshot and not state.resync_reason

    def ticker(self, symbol: str) -> dict[str, Any]:
        """The merged ticker fields of ``symbol`` (snapshot + every delta since), a copy."""
        return dict(self._tickers.get(symbol, {}))

    def invalidate_books(self, reason: str) -> None:
        """Mark every book as out of sync (e.g. the connection dropped) without requesting a resync.

        Updates are dropped until each book's next snapshot, which the venue sends
        after the (re)subscription; that snapshot is followed by a
        :class:`BookResynced` carrying ``reason``.
        """
        for state in self._books.values():
            if state.sync.has_snapshot and not state.resync_reason:
                state.resync_reason = reason

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
        """
        try:
            frame = self._frame.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ParseError(f"Bybit frame {describe_frame(raw)}: {exc}") from None
        topic = frame.topic
        if not topic:
            if frame.op:
                self._on_control(frame, raw)
                return []
            raise ParseError(f"Bybit frame {describe_frame(raw)}: expected a 'topic' push or an 'op' reply")
        route = self._routes.get(topic, False)
        if route is False:
            route = self._routes[topic] = self._route(topic)
        if route is None:
            key = f"unknown_topic:{topic.split('.', 1)[0]}"
            if not self.skipped[key]:
                logger.warning("Bybit {}: skipping topic {!r} (no parser for it)", self.category, topic)
            self.skipped[key] += 1
            return []
        handler, symbol, iid = route
        if not frame.data:
            raise ParseError(f"Bybit {topic} frame {describe_frame(raw)}: missing 'data'")
        try:
            return handler(topic, iid, frame, recv_ns)
        except (msgspec.DecodeError, msgspec.ValidationError, ParseError) as exc:
            raise ParseError(f"Bybit {topic} frame {describe_frame(raw)}: {exc}") from None

    # --------------------------------------------------------------- internals

    def _route(self, topic: str) -> tuple[Handler, str, str] | None:
        parts = topic.split(".")
        handler = self._prefixes.get(parts[0])
        if handler is None or len(parts) < 2 or not parts[-1]:
            return None
        if parts[0] in ("kline", "orderbook") and len(parts) != 3:
            return None
        symbol = parts[-1]
        return handler, symbol, self.instrument_id(symbol)

    def _on_control(self, frame: BybitFrame, raw: bytes | str) -> None:
        if frame.success is False:
            logger.error("Bybit {}: {} failed: {!r} (frame {})", self.category, frame.op, frame.ret_msg, describe_frame(raw))
        else:
            logger.debug("Bybit {}: {} ok {}", self.category, frame.op, frame.ret_msg)

    def _on_trades(self, topic: str, iid: str, frame: BybitFrame, recv_ns: int) -> list:
        """``publicTrade.{symbol}``: one Trade per element, deduplicated by trade id ``i``.

        Payload::

            {"topic": "publicTrade.BTCUSDT", "type": "snapshot", "ts": 1786310819681,
             "data": [{"T": 1786310819680, "s": "BTCUSDT", "S": "Sell", "v": "0.004", "p": "65114.20",
                       "L": "MinusTick", "i": "a9188a0a-82bc-50de-be60-03eedbe3cdd7", "BT": false,
                       "RPI": false, "seq": 753843954913}]}
        """
        out = []
        recent = self._trade_ids.get(iid)
        if recent is None:
            recent = self._trade_ids[iid] = _RecentIds(_DEDUP_WINDOW)
        for t in self._trades.decode(frame.data):
            if recent.seen(t.i):
                self.skipped["duplicate_trade"] += 1
                logger.debug("Bybit: duplicate trade {} {} dropped", iid, t.i)
                continue
            out.append(Trade(iid, t.T * MS, recv_ns, t.p, t.v, 1 if t.S == "Buy" else -1, t.i))
        return out

    def _on_klines(self, topic: str, iid: str, frame: BybitFrame, recv_ns: int) -> list:
        """``kline.{interval}.{symbol}``: a Bar per *confirmed* kline (``confirm: true``).

        ``ts_event`` is the close time ``end + 1 ms`` (= start + interval; Bybit's
        ``end`` is the last millisecond inside the bar).

        Payload::

            {"topic": "kline.1.BTCUSDT", "type": "snapshot", "ts": 1786310818440,
             "data": [{"start": 1786310760000, "end": 1786310819999, "interval": "1", "open": "65119.9",
                       "close": "65114.3", "high": "65119.9", "low": "65114.2", "volume": "1.576",
                       "turnover": "102627.995", "confirm": false, "timestamp": 1786310818440}]}
        """
        out = []
        for k in self._klines.decode(frame.data):
            if not k.confirm:
                self.skipped["unconfirmed_kline"] += 1
                continue
            if not (k.low <= min(k.open, k.close) and max(k.open, k.close) <= k.high and k.end >= k.start):
                raise ParseError(f"kline start={k.start}: expected low <= open,close <= high and end >= start")
            out.append(Bar(iid, (k.end + 1) * MS, recv_ns, k.open, k.high, k.low, k.close, k.volume))
        return out

    def _on_tickers(self, topic: str, iid: str, frame: BybitFrame, recv_ns: int) -> list:
        """``tickers.{symbol}``: merged per symbol; Quote, MarkPrice, FundingRate when their fields change.

        Linear sends a ``snapshot`` then ``delta`` frames carrying only the
        changed fields; the parser keeps the merged ticker and builds each
        message from it when the frame touched one of its fields: Quote from
        ``bid1Price/bid1Size/ask1Price/ask1Size``, MarkPrice from
        ``markPrice``/``indexPrice``, FundingRate from ``fundingRate`` with
        ``nextFundingTime``. Spot tickers carry no best bid/ask nor mark and
        yield nothing. ``ts_event`` is the frame's ``ts``.

        Payload (linear delta)::

            {"topic": "tickers.BTCUSDT", "type": "delta",
             "data": {"symbol": "BTCUSDT", "bid1Price": "65114.20", "bid1Size": "6.054",
                      "ask1Price": "65114.30", "ask1Size": "10.486"},
             "cs": 753843907770, "ts": 1786310817883}
        """
        data = self._ticker.decode(frame.data)
        symbol = topic[8:]
        for name in _NUMERIC.intersection(data):
            value = data[name]
            if value == "":
                continue
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise ParseError(f"ticker field {name}={value!r}: expected a decimal string") from None
            if not (-_MAX <= number <= _MAX):
                raise ParseError(f"ticker field {name}={value!r}: expected a finite number")
        state = self._tickers.get(symbol)
        if frame.type == "snapshot" or state is None:
            if state is None and frame.type != "snapshot":
                self.skipped["ticker_delta_before_snapshot"] += 1
            state = self._tickers[symbol] = {}
        state.update(data)
        touched = data.keys()
        ts_event = frame.ts * MS
        out: list = []
        if not _QUOTE_FIELDS.isdisjoint(touched):
            bp, bs, ap, as_ = (state.get(f, "") for f in ("bid1Price", "bid1Size", "ask1Price", "ask1Size"))
            if bp and bs and ap and as_:
                bid, ask = float(bp), float(ap)
                bid_sz, ask_sz = float(bs), float(as_)
                if bid > 0.0 and ask > 0.0 and bid_sz >= 0.0 and ask_sz >= 0.0:
                    out.append(Quote(iid, ts_event, recv_ns, bid, bid_sz, ask, ask_sz))
                else:
                    self.skipped["ticker_bad_bbo"] += 1
            else:
                self.skipped["ticker_incomplete_bbo"] += 1
        if not _MARK_FIELDS.isdisjoint(touched):
            mark = state.get("markPrice", "")
            if mark and float(mark) > 0.0:
                index = state.get("indexPrice", "")
                out.append(MarkPrice(iid, ts_event, recv_ns, float(mark), float(index) if index else float("nan")))
        if not _FUNDING_FIELDS.isdisjoint(touched):
            rate, next_time = state.get("fundingRate", ""), state.get("nextFundingTime", "")
            if rate and next_time:
                out.append(FundingRate(iid, ts_event, recv_ns, float(rate), int(float(next_time)) * MS))
        return out

    def _on_book(self, topic: str, iid: str, frame: BybitFrame, recv_ns: int) -> list:
        """``orderbook.{depth}.{symbol}``: BookSnapshot / BookDelta under the update-id rules.

        ``type`` ``snapshot`` (or ``u == 1``) replaces the book; ``delta`` must
        continue ``u`` by one. ``first_seq``/``last_seq`` carry ``u``, ``prev_seq`` ``u - 1``.

        Payload::

            {"topic": "orderbook.200.BTCUSDT", "type": "delta", "ts": 1786310818130,
             "data": {"s": "BTCUSDT", "b": [["65095.30", "0.005"], ["65093.10", "0"]],
                      "a": [["65116.60", "0"]], "u": 15076953, "seq": 753843911421},
             "cts": 1786310818027}
        """
        state = self._books.get(topic)
        if state is None:
            state = self._books[topic] = _Book(BybitBookSync(f"BYBIT {self.category} {topic}"))
        symbol = topic.rsplit(".", 1)[1]
        try:
            msg = self._book.decode(frame.data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            self._request_resync(topic, symbol, state, "undecodable book message")
            raise
        ts_event = frame.ts * MS
        if frame.type not in ("snapshot", "delta"):
            self._request_resync(topic, symbol, state, f"unknown type {frame.type!r}")
            raise ParseError(f"book type {frame.type!r}: expected 'snapshot' or 'delta'")
        if frame.type == "snapshot" or msg.u == 1:
            try:
                bids, asks = state.sync.apply_snapshot(msg)
            except BookError as exc:
                self._request_resync(topic, symbol, state, str(exc))
                return []
            except ParseError:
                self._request_resync(topic, symbol, state, "malformed snapshot")
                raise
            out: list = [BookSnapshot(iid, ts_event, recv_ns, _array(bids), _array(asks), msg.u)]
            if state.resync_reason:
                out.append(BookResynced(iid, state.resync_reason, ts_event, recv_ns))
                logger.info("Bybit {} {}: book resynced after: {}", self.category, topic, state.resync_reason)
                state.resync_reason = ""
            return out
        if state.resync_reason:
            state.dropped += 1
            self.skipped["book_dropped"] += 1
            return []
        try:
            bids, asks = state.sync.apply_delta(msg)
        except BookError as exc:
            self._request_resync(topic, symbol, state, str(exc))
            return []
        except ParseError:
            self._request_resync(topic, symbol, state, "malformed delta")
            raise
        return [BookDelta(iid, ts_event, recv_ns, _array(bids), _array(asks), msg.u, msg.u, msg.u - 1)]

    def _request_resync(self, topic: str, symbol: str, state: _Book, reason: str) -> None:
        if state.resync_reason:
            return
        state.resync_reason = reason
        logger.warning("Bybit {} {}: book out of sync ({}); requesting a fresh snapshot", self.category, topic, reason)
        self.resync_requests.append((topic, symbol, reason))
        if self.on_resync is not None:
            self.on_resync(topic, symbol, reason)


def _array(levels: list[Level]) -> np.ndarray:
    if not levels:
        return _EMPTY
    return np.array(levels, dtype=np.float64)
