"""OKX v5 public WebSocket frames -> core messages.

Entry point: :meth:`OkxParser.parse_frame` (``raw`` frame as received, local
receive time in ns) returns a list of core messages. Times: ``ts_event`` is
OKX's ``ts`` (ms) converted to ns; ``ts_init`` is the receive time.

A frame is decoded in two steps: the envelope (:class:`OkxFrame`, with ``data``
kept as raw bytes), then ``data`` with the typed decoder of its channel, found
in a dict built once. Unknown channels are skipped with a logged reason;
undecodable frames raise :class:`~tradebus.adapters.common.parsing.FrameError` naming the
channel and the field (``data[0].px``), with the message shape shared by all venues.

Order books: one :class:`~tradebus.adapters.common.sync.BookSync` (Numba book) per
``channel:instId`` with :class:`~tradebus.adapters.okx.sync.OkxRule` (seqId chain,
CRC32 of the top 25 levels), kept by
:class:`~tradebus.adapters.common.stream_books.StreamBooks`. When a book fails
(sequence gap, checksum mismatch, crossed book, malformed level) nothing of it is
emitted until a fresh snapshot arrives; the books resubscribe the stream (the
``resubscribe`` callable, given by the client), which makes OKX send that snapshot,
and record the request (:attr:`OkxParser.resync_requests`). The snapshot that ends a
resync is followed by a :class:`BookResynced` message.

Trades: de-duplicated by ``tradeId`` per instrument, and checked for gaps in the ids
(:class:`~tradebus.adapters.common.trade_gaps.TradeGaps`, :attr:`OkxParser.gaps`). A
``trades`` push stands for ``count`` fills ending at ``tradeId`` (so the next one starts
at ``tradeId + 1``); ``trades-all`` has one fill per element. Trades after a gap are held
back until the missing ids were fetched (``fetch_trades``, live: the recovered trades and
later ones reach ``sink``) or their recorded answer was fed with
:meth:`OkxParser.on_trades_answer` (playback: the messages are returned, as those of a frame).
"""

from __future__ import annotations

import re
import time
from calendar import monthrange
from collections import Counter
from collections.abc import Callable, Hashable
from datetime import UTC, datetime, timedelta, timezone

import msgspec
import numpy as np
from loguru import logger

from tradebus.dedup import TradeDeduper
from tradebus.adapters.common.parsing import (
    MAX_MILLIS, MS, WHOLE_FRAME, FieldError, FrameError, FundingRateCheck, describe_frame, frame_error, level_array,
)
from tradebus.adapters.common.policy import SubscriptionRejected
from tradebus.adapters.common.stream_books import Resubscribe, StreamBooks, StreamBooksParser
from tradebus.adapters.common.sync import BookSync
from tradebus.adapters.common.trade_gaps import TradeFetch, TradeGaps
from tradebus.adapters.okx.config import BOOK_CHANNELS as _BOOK_CHANNELS
from tradebus.adapters.okx.config import CANDLE_UNIT_MS, FILL_CHANNELS
from tradebus.adapters.okx.schemas import (
    OkxBbo,
    OkxBboNumbers,
    OkxBook,
    OkxBookStrings,
    OkxFrame,
    OkxFundingRate,
    OkxMarkPrice,
    OkxTicker,
    OkxTickerBbo,
    OkxTrade,
)
from tradebus.adapters.okx.sync import OkxLevels, OkxRule
from tradebus.engine.messages import Bar, BookDelta, BookSnapshot, FundingRate, MarkPrice, Quote, Trade
from tradebus.errors import ConfigError, ParseError

__all__ = [
    "BOOK_CHANNELS",
    "OkxParser",
    "book_key",
    "candle_close_ms",
    "describe_frame",
    "frame_stream",
    "parse_rest_trades",
    "variant_key",
]

BOOK_CHANNELS = frozenset(_BOOK_CHANNELS)
"""Channels carrying an L2 book (``books5`` sends a full 5-level snapshot every time)."""

_TRADE_CHANNELS = frozenset(FILL_CHANNELS["trades"])

_SEQUENCED = frozenset({"books", "books-l2-tbt", "books50-l2-tbt"})

_UNIT_MS = CANDLE_UNIT_MS
_MONTHS = {"M": 1, "Y": 12}
_HK = timezone(timedelta(hours=8))
_DEDUP_WINDOW = 4096
_INF = float("inf")
_CHANNEL = re.compile(r'"channel"\s*:\s*"([^"]+)"')
_rest_trades = msgspec.json.Decoder(list[OkxTrade], strict=False)
_envelope = msgspec.json.Decoder(OkxFrame)


def book_key(channel: str, inst_id: str) -> str:
    """The key of a book stream: its subscription ``"channel:instId"`` (``"books:BTC-USDT"``)."""
    return f"{channel}:{inst_id}"


def variant_key(stream: str) -> tuple[str, str] | None:
    """What a stream ``"channel:instId"`` carries whatever its depth, bar size or form: ``("books", instId)`` for
    every book channel, ``("candle", instId)`` for every candle one, ``("trades", instId)`` for ``trades`` and
    ``trades-all`` (every trade of the instrument, aggregated per taker order and price or one by one, under other
    trade ids: a replay of one cannot stand for the other), ``None`` for another channel."""
    channel, _, inst_id = stream.partition(":")
    if channel in BOOK_CHANNELS:
        return "books", inst_id
    if channel in _TRADE_CHANNELS:
        return "trades", inst_id
    if channel.startswith("candle"):
        return "candle", inst_id
    return None


def frame_stream(raw: str | bytes) -> str | None:
    """The subscription ``"channel:instId"`` a pushed frame belongs to.

    ``None`` for an event, a pong, a push without an ``instId`` or a frame that does not
    decode (the parser says what is wrong with it).
    """
    if raw == "pong" or raw == b"pong":
        return None
    try:
        frame = _envelope.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    arg = frame.arg
    if frame.event or arg is None or not arg.instId:
        return None
    return book_key(arg.channel, arg.instId)


def candle_close_ms(start_ms: int, bar: str) -> int:
    """Close time (ms) of an OKX candle that opens at ``start_ms``.

    ``bar`` is the channel suffix: ``1s``, ``1m``, ``3m`` ... ``1H`` ... ``1D``,
    ``1W``, ``1M``, ``3M``, ``6M``, ``1Y``, optionally with ``utc``. Fixed-length bars close at
    ``start + n * unit``. Month (and year) bars close at the same time of day ``n``
    calendar months (``12 n``) later, counted in Hong Kong time (UTC+8) as OKX aligns
    them, or in UTC for the ``utc`` variants.

    Raises
    ------
    ParseError
        ``bar`` is not an OKX bar size.
    """
    utc = bar.endswith("utc")
    core = bar[:-3] if utc else bar
    count_s, unit = core[:-1], core[-1:]
    if not count_s.isdigit() or (unit not in _UNIT_MS and unit not in _MONTHS):
        raise ParseError(f"unknown OKX candle bar size {bar!r}: expected e.g. 1m, 1H, 1D, 1Dutc, 1M, 1Y")
    count = int(count_s)
    if unit in _UNIT_MS:
        return start_ms + count * _UNIT_MS[unit]
    start = datetime.fromtimestamp(start_ms / 1000, tz=UTC if utc else _HK)
    month0 = start.month - 1 + count * _MONTHS[unit]
    year = start.year + month0 // 12
    month = month0 % 12 + 1
    close = start.replace(year=year, month=month, day=min(start.day, monthrange(year, month)[1]))
    return round(close.timestamp() * 1000)


class OkxParser(StreamBooksParser):
    """Stateful parser of the OKX v5 public stream (books, trade dedup).

    Parameters
    ----------
    venue
        Venue name in instrument ids (``"BTC-USDT.OKX"``).
    verify_checksum
        Verify the order-book CRC32 (see :mod:`tradebus.adapters.okx.sync`).
    resubscribe
        Async ``resubscribe("channel:instId")`` of the client: how a failed book gets a
        fresh snapshot. ``None``: the caller feeds snapshots (playback, tests).
    fetch_trades
        Async fetch of the trades a gap in trade ids skipped (live, with ``sink``); ``None``:
        the recorded answers are fed with :meth:`on_trades_answer` (playback, tests).
    sink
        Receives what a fetch recovers, and the trades held behind the gap, when the fetch ends.
    clock_ns
        Receive-time source of a failed fetch's TradesMissed.

    Attributes
    ----------
    books
        The order books (``"channel:instId"`` -> BookSync).
    gaps
        Trade-id continuity per instrument.
    skipped
        Counts of frames or items skipped, by reason (``"unknown_channel:xyz"``,
        ``"unconfirmed_candle"``, ``"duplicate_trade"`` ...).
    funding_rates
        Refuses an implausible ``funding-rate`` (the frame's other entries are used).
    """

    def __init__(
        self,
        venue: str = "OKX",
        *,
        verify_checksum: bool = True,
        resubscribe: Resubscribe | None = None,
        fetch_trades: TradeFetch | None = None,
        sink: Callable[[object], None] | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        if fetch_trades is not None and sink is None:
            raise ConfigError("OkxParser: fetch_trades needs a sink for the trades it recovers")
        self.venue = venue
        self.verify_checksum = verify_checksum
        self.books = StreamBooks(_okx_rule, resubscribe)
        self.skipped: Counter[str] = Counter()
        self.funding_rates = FundingRateCheck("okx")
        self._iids: dict[str, str] = {}
        self._trade_ids: dict[str, TradeDeduper] = {}
        self._sink = sink
        self._frame_out: list | None = None  # where TradeGaps delivers while a frame is parsed
        self._replayed_gaps = fetch_trades is None
        self.gaps = TradeGaps(
            venue,
            self._emit,
            self._seen_trade,
            recover="recorded" if fetch_trades is None else "fetch",
            fetch=fetch_trades,
            clock_ns=clock_ns,
        )
        self._frame = msgspec.json.Decoder(OkxFrame)
        self._trades = msgspec.json.Decoder(list[OkxTrade], strict=False)
        self._tickers = msgspec.json.Decoder(list[OkxTicker], strict=False)
        self._ticker_bbos = msgspec.json.Decoder(list[OkxTickerBbo], strict=False)
        self._book = msgspec.json.Decoder(list[OkxBook], strict=False)
        self._book_strings = msgspec.json.Decoder(list[OkxBookStrings])
        self._bbo = msgspec.json.Decoder(list[OkxBbo], strict=False)
        self._bbo_numbers = msgspec.json.Decoder(list[OkxBboNumbers], strict=False)
        self._funding = msgspec.json.Decoder(list[OkxFundingRate], strict=False)
        self._mark = msgspec.json.Decoder(list[OkxMarkPrice], strict=False)
        self._candles = msgspec.json.Decoder(list[list[str]])
        self._handlers: dict[str, Callable[[str, str, OkxFrame, int], list]] = {
            "trades": self._on_trades,
            "trades-all": self._on_trades,
            "tickers": self._on_tickers,
            "bbo-tbt": self._on_bbo,
            "funding-rate": self._on_funding,
            "mark-price": self._on_mark,
        }
        for channel in BOOK_CHANNELS:
            self._handlers[channel] = self._on_books

    # ------------------------------------------------------------------ public

    def instrument_id(self, inst_id: str) -> str:
        """``"{instId}.{venue}"``, cached."""
        iid = self._iids.get(inst_id)
        if iid is None:
            iid = self._iids[inst_id] = f"{inst_id}.{self.venue}"
        return iid

    def book(self, inst_id: str, channel: str = "books") -> BookSync | None:
        """The book kept for ``instId`` on ``channel`` (``None`` before its first message).

        ``.book`` is the Numba order book, ``.rule`` the :class:`OkxRule` (raw strings,
        checksums verified), ``.synced`` whether it may be read.
        """
        return self.books.syncs.get(book_key(channel, inst_id))

    def book_in_sync(self, inst_id: str, channel: str = "books") -> bool:
        """True if the book has a snapshot and is not waiting for a resync."""
        return self.books.in_sync(book_key(channel, inst_id))

    def parse_frame(self, raw: bytes | str, recv_ns: int) -> list:
        """Parse one frame into core messages.

        In a playback, trades held behind a gap whose recorded answer did not come in time
        are released first (see :meth:`TradeGaps.expire`).

        Parameters
        ----------
        raw
            The frame as received (text or bytes).
        recv_ns
            Local receive time, ns since the epoch (becomes ``ts_init``).

        Returns
        -------
        list
            Core messages (possibly empty: events, pongs, skipped channels).

        Raises
        ------
        ParseError
            The frame is not valid JSON, not an OKX frame, or a field of a
            known channel has the wrong type or an impossible value. Nothing
            was applied to any book.
        SubscriptionRejected
            An ``error`` event: OKX refused a subscription request.
        """
        if self.gaps.recovering and self._replayed_gaps:
            return self._collect(self.gaps.expire, recv_ns) + self._parse(raw, recv_ns)
        return self._parse(raw, recv_ns)

    def on_trades_answer(self, raw: bytes | str, recv_ns: int, inst_id: str) -> list:
        """A recorded history-trades answer (``"rest-trades:<instId>"``): the messages recovering ``inst_id``'s gap.

        Raises
        ------
        ParseError
            The answer is not a list of OKX trades.
        """
        iid = self.instrument_id(inst_id)
        trades = parse_rest_trades(raw, recv_ns, iid)
        return self._collect(self.gaps.on_recorded, iid, trades, recv_ns)

    def end_run(self, recv_ns: int) -> list:
        """The run ended at ``recv_ns`` (a daemon's stop, a played recording's last line); the messages of the
        recoveries it cut short (:meth:`TradeGaps.end`: the trades held behind them)."""
        return self._collect(self.gaps.end, recv_ns)

    def _parse(self, raw: bytes | str, recv_ns: int) -> list:
        if raw == "pong" or raw == b"pong":
            return []
        try:
            frame = self._frame.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise frame_error("OKX", _scan_channel(raw), raw, exc) from None
        arg = frame.arg
        if frame.event:
            self._on_event(frame, raw)
            return []
        if arg is None or not frame.data:
            raise FrameError("OKX", "", WHOLE_FRAME, "expected an 'event' or 'arg' + 'data'", raw)
        self.data_ns = recv_ns
        channel = arg.channel
        handler = self._handlers.get(channel)
        if handler is None:
            handler = self._handler_for(channel)
            if handler is None:
                key = f"unknown_channel:{channel}"
                if not self.skipped[key]:
                    logger.warning("OKX: skipping channel {!r} (no parser for it)", channel)
                self.skipped[key] += 1
                return []
        try:
            return handler(channel, arg.instId, frame, recv_ns)
        except (msgspec.DecodeError, msgspec.ValidationError, ParseError) as exc:
            raise frame_error("OKX", channel, raw, exc, "data") from None

    # ---------------------------------------------------------------- channels

    def _handler_for(self, channel: str) -> Callable[[str, str, OkxFrame, int], list] | None:
        if channel.startswith("candle"):
            bar = channel[6:]
            try:
                candle_close_ms(0, bar)
            except ParseError:
                return None

            def on_candles(channel: str, inst_id: str, frame: OkxFrame, recv_ns: int) -> list:
                return self._on_candles(bar, inst_id, frame, recv_ns)

            self._handlers[channel] = on_candles
            return on_candles
        return None

    def _on_event(self, frame: OkxFrame, raw: bytes | str) -> None:
        if frame.event == "error":
            # on the public stream an error event answers one of our (un)subscribe requests
            raise SubscriptionRejected(f"OKX rejected a subscription: code {frame.code} {frame.msg!r}")
        else:
            logger.debug("OKX event {} {}", frame.event, frame.arg)

    def _on_trades(self, channel: str, inst_id: str, frame: OkxFrame, recv_ns: int) -> list:
        """``trades`` / ``trades-all``: one Trade per element; ``side`` is the taker side.

        A ``trades`` element stands for ``count`` fills whose ids end at ``tradeId``; a trade
        whose first id is beyond the instrument's next one reveals a gap (see the module docstring).

        Payload::

            {"arg": {"channel": "trades", "instId": "BTC-USDT"},
             "data": [{"instId": "BTC-USDT", "tradeId": "130639474", "px": "42219.9",
                       "sz": "0.12060306", "side": "buy", "ts": "1630048897897", "count": "3"}]}
        """
        items = self._trades.decode(frame.data)
        if len(items) > 1:
            for i, t in enumerate(items):  # every element's ids are checked before any state changes
                if t.count or not t.tradeId.isdigit():
                    _trade_ids(i, t)
        lines = self.gaps.lines
        out: list = []
        for t in items:
            tid = t.tradeId
            if t.count or not tid.isdigit():
                last, count = _trade_ids(0, t)  # a single element is checked here, before any state changes
            else:
                last, count = int(tid), 1
            iid = self.instrument_id(t.instId)
            if self._deduper(iid).seen(tid):
                self.skipped["duplicate_trade"] += 1
                logger.debug("OKX: duplicate trade {} {} dropped", iid, tid)
                continue
            trade = Trade(iid, t.ts * MS, recv_ns, t.px, t.sz, 1 if t.side == "buy" else -1, tid)
            line = lines.get(iid)
            if line is not None and last - count + 1 == line.next_id:
                line.next_id = last + 1
                out.append(trade)
            else:
                self._off_sequence(iid, trade, last, count, out)
        return out

    def _off_sequence(self, iid: str, trade: Trade, last: int, count: int, out: list) -> None:
        """A trade off the expected id (the first, a gap, or one held behind a gap): :attr:`gaps` decides,
        delivering into ``out`` (the frame's messages)."""
        gaps = self.gaps
        self._frame_out = out
        try:
            gaps.off_sequence(gaps.line(iid), trade, last, count)
        finally:
            self._frame_out = None

    def _deduper(self, iid: str) -> TradeDeduper:
        recent = self._trade_ids.get(iid)
        if recent is None:
            recent = self._trade_ids[iid] = TradeDeduper(_DEDUP_WINDOW)
        return recent

    def _seen_trade(self, key: Hashable) -> bool:
        iid, trade_id = key  # type: ignore[misc]
        return self._deduper(iid).seen(trade_id)

    def _emit(self, msg: object) -> None:
        """Where :attr:`gaps` delivers: the messages of the frame being parsed, else the sink (a fetch ended)."""
        out = self._frame_out
        if out is not None:
            out.append(msg)
        elif self._sink is not None:
            self._sink(msg)

    def _collect(self, call: Callable[..., None], *args: object) -> list:
        """The messages :attr:`gaps` delivers during ``call(*args)``."""
        out: list = []
        self._frame_out = out
        try:
            call(*args)
        finally:
            self._frame_out = None
        return out

    def _on_tickers(self, channel: str, inst_id: str, frame: OkxFrame, recv_ns: int) -> list:
        """``tickers``: a Quote from best bid/ask (skipped when a side is empty).

        Payload::

            {"arg": {"channel": "tickers", "instId": "BTC-USDT"},
             "data": [{"instType": "SPOT", "instId": "BTC-USDT", "last": "30236", "lastSz": "0.0002",
                       "askPx": "30228.7", "askSz": "1.55896972", "bidPx": "30228.6", "bidSz": "0.23393",
                       "open24h": "29700.4", ..., "ts": "1652459223003"}]}
        """
        try:
            bbos = self._ticker_bbos.decode(frame.data)
        except msgspec.ValidationError:
            bbos = None  # an empty, missing or non-numeric side: the text path tells which
        if bbos is not None:
            return [
                _checked_quote(i, self.instrument_id(t.instId), t.ts * MS, recv_ns, t.bidPx, t.bidSz, t.askPx, t.askSz)
                for i, t in enumerate(bbos)
            ]
        out = []
        for i, t in enumerate(self._tickers.decode(frame.data)):
            if not (t.bidPx and t.askPx and t.bidSz and t.askSz):
                self.skipped["ticker_without_bbo"] += 1
                continue
            iid = self.instrument_id(t.instId)
            out.append(_quote(i, iid, t.ts * MS, recv_ns, t.bidPx, t.bidSz, t.askPx, t.askSz))
        return out

    def _on_bbo(self, channel: str, inst_id: str, frame: OkxFrame, recv_ns: int) -> list:
        """``bbo-tbt``: a Quote from the single level per side.

        Payload::

            {"arg": {"channel": "bbo-tbt", "instId": "BTC-USDT"},
             "data": [{"asks": [["8476.98", "415", "0", "13"]], "bids": [["8476.97", "256", "0", "12"]],
                       "ts": "1597026383085", "seqId": 123456}]}
        """
        out = []
        iid = self.instrument_id(inst_id)
        bbos: list[OkxBboNumbers] | list[OkxBbo]
        quote: Callable[..., Quote]
        try:
            bbos = self._bbo_numbers.decode(frame.data)
            quote = _checked_quote
        except msgspec.ValidationError:  # a non-numeric level: the text path names it
            bbos = self._bbo.decode(frame.data)
            quote = _quote
        for i, b in enumerate(bbos):
            if not b.bids or not b.asks or len(b.bids[0]) < 2 or len(b.asks[0]) < 2:
                self.skipped["bbo_empty_side"] += 1
                continue
            out.append(quote(i, iid, b.ts * MS, recv_ns, b.bids[0][0], b.bids[0][1], b.asks[0][0], b.asks[0][1]))
        return out

    def _on_candles(self, bar: str, inst_id: str, frame: OkxFrame, recv_ns: int) -> list:
        """``candle<bar>``: a Bar per *confirmed* candle (``confirm == "1"``).

        ``ts_event`` is the candle's close time, start + bar length (see
        :func:`candle_close_ms`): a bar is only known once closed. ``volume`` is in the base
        currency, as the catalog stores it (:mod:`tradebus.data.okx_candles`): ``vol`` for spot
        (``BASE-QUOTE``), ``volCcy`` for a derivative (``BTC-USDT-SWAP``), whose ``vol`` counts
        contracts.

        Payload::

            {"arg": {"channel": "candle1D", "instId": "BTC-USDT"},
             "data": [["1597026383085", "8533.02", "8553.74", "8527.17", "8548.26",
                       "45247", "529.5858061", "5529.5858061", "1"]]}
        """
        out = []
        iid = self.instrument_id(inst_id)
        volume_field = 5 if inst_id.count("-") == 1 else 6
        for i, row in enumerate(self._candles.decode(frame.data)):
            if len(row) < 9:
                raise FieldError(f"[{i}]", f"{row!r}: expected 9 fields [ts,o,h,l,c,vol,volCcy,volCcyQuote,confirm]")
            if row[8] != "1":
                self.skipped["unconfirmed_candle"] += 1
                continue
            try:
                start = int(row[0])
                o, h, lo, c, v = float(row[1]), float(row[2]), float(row[3]), float(row[4]), float(row[volume_field])
            except ValueError:
                raise FieldError(f"[{i}]", f"{row!r}: expected numbers in fields 0-4 and {volume_field}") from None
            if not (0.0 < lo <= min(o, c) and max(o, c) <= h < np.inf and 0.0 <= v < np.inf and 0 <= start < MAX_MILLIS):
                raise FieldError(
                    f"[{i}]", f"{row!r}: expected 0 < low <= open,close <= high, volume >= 0, ts in ms before 2100"
                )
            out.append(Bar(iid, candle_close_ms(start, bar) * MS, recv_ns, o, h, lo, c, v))
        return out

    def _on_funding(self, channel: str, inst_id: str, frame: OkxFrame, recv_ns: int) -> list:
        """``funding-rate``: FundingRate; ``next_funding_ns`` is ``fundingTime``, when this rate is settled.

        ``ts_event`` is ``ts``; messages without ``ts`` (older OKX) use the receive time. An implausible
        rate is refused (:attr:`funding_rates`), the frame's other entries used.

        Payload::

            {"arg": {"channel": "funding-rate", "instId": "BTC-USDT-SWAP"},
             "data": [{"instId": "BTC-USDT-SWAP", "fundingRate": "0.0001", "nextFundingRate": "0.0002",
                       "fundingTime": "1744590349506", "nextFundingTime": "1744619149506",
                       "ts": "1744590349506"}]}
        """
        out = []
        accept = self.funding_rates.accept
        for f in self._funding.decode(frame.data):
            iid = self.instrument_id(f.instId)
            if accept(iid, f.fundingRate):
                out.append(FundingRate(iid, f.ts * MS if f.ts else recv_ns, recv_ns, f.fundingRate, f.fundingTime * MS))
        return out

    def _on_mark(self, channel: str, inst_id: str, frame: OkxFrame, recv_ns: int) -> list:
        """``mark-price``: MarkPrice (index price unknown: NaN).

        Payload::

            {"arg": {"channel": "mark-price", "instId": "BTC-USDT-SWAP"},
             "data": [{"instType": "SWAP", "instId": "BTC-USDT-SWAP", "markPx": "84660.1",
                       "ts": "1744590349506"}]}
        """
        return [
            MarkPrice(self.instrument_id(m.instId), m.ts * MS, recv_ns, m.markPx, float("nan"))
            for m in self._mark.decode(frame.data)
        ]

    def _on_books(self, channel: str, inst_id: str, frame: OkxFrame, recv_ns: int) -> list:
        """``books`` (400 levels), ``books50-l2-tbt``, ``books-l2-tbt``, ``books5``.

        ``action`` ``snapshot`` -> BookSnapshot, ``update`` -> BookDelta (size 0
        removes a level); ``books5`` has no ``action`` and is a snapshot each time.

        Payload (update)::

            {"arg": {"channel": "books", "instId": "BTC-USD-220527"}, "action": "update",
             "data": [{"asks": [["30249.4", "0", "0", "0"], ["30261", "4", "0", "1"]],
                       "bids": [["30182.6", "452", "0", "1"]], "ts": "1652459225464",
                       "checksum": -914047754, "seqId": 123457, "prevSeqId": 123456}]}
        """
        key = book_key(channel, inst_id)
        books = self.books
        sync = books.syncs.get(key)
        if sync is None:
            sync = books.open(key, self.instrument_id(inst_id))
        try:
            items = self._book.decode(frame.data)
            raws = self._book_strings.decode(frame.data) if self.verify_checksum else None
        except (msgspec.DecodeError, msgspec.ValidationError):
            books.lost(key, "undecodable book message")
            raise
        snapshot = frame.action == "snapshot" or (not frame.action and channel not in _SEQUENCED)
        if not snapshot and frame.action != "update":
            books.lost(key, f"unknown action {frame.action!r}")
            raise FieldError("action", f"{frame.action!r}: expected 'snapshot' or 'update'")
        iid = sync.instrument_id
        where = sync.rule.where  # type: ignore[attr-defined]
        out: list = []
        for i, item in enumerate(items):
            try:
                bids = level_array(item.bids, "bids")
                asks = level_array(item.asks, "asks")
                if snapshot:
                    if item.prevSeqId is not None and item.prevSeqId != -1:
                        raise FieldError("prevSeqId", f"{item.prevSeqId}: expected -1 in a snapshot")
                elif sync.synced:
                    _check_fields(sync.rule, item, where)  # type: ignore[arg-type]
            except FieldError as exc:
                books.lost(key, f"malformed {'snapshot' if snapshot else 'update'}")
                raise FieldError(f"[{i}].{exc.field}", exc.problem) from None
            extra = OkxLevels(item.checksum) if raws is None else OkxLevels(item.checksum, raws[i].bids, raws[i].asks)
            seq = item.seqId if item.seqId is not None else -1
            ts_event = item.ts * MS
            if snapshot:
                out += books.on_snapshot(key, sync, BookSnapshot(iid, ts_event, recv_ns, bids, asks, seq), extra)
            else:
                prev = item.prevSeqId if item.prevSeqId is not None else -1
                delta = BookDelta(iid, ts_event, recv_ns, bids, asks, -1, seq, prev)
                out += books.on_delta(key, sync, delta, extra)
        return out


def parse_rest_trades(raw: bytes | str, recv_ns: int, instrument_id: str) -> list[Trade]:
    """The ``data`` list of ``GET /api/v5/market/history-trades`` -> :class:`Trade` list (``ts_init`` = ``recv_ns``).

    Payload (newest first, one fill per element)::

        [{"instId": "BTC-USDT", "side": "sell", "sz": "0.00001", "source": "0", "px": "29963.2",
          "tradeId": "242720720", "ts": "1654161646974"}]

    Raises
    ------
    ParseError
        Not a list of trades, or a field has a wrong type or an impossible value.
    """
    try:
        items = _rest_trades.decode(raw)
        for i, t in enumerate(items):
            _trade_ids(i, t)
    except (msgspec.DecodeError, msgspec.ValidationError, FieldError) as exc:
        raise frame_error("OKX", "history-trades", raw, exc) from None
    return [Trade(instrument_id, t.ts * MS, recv_ns, t.px, t.sz, 1 if t.side == "buy" else -1, t.tradeId) for t in items]


def _trade_ids(index: int, t: OkxTrade) -> tuple[int, int]:
    """``(last id, count)`` of a trade element: its ``tradeId`` and how many fills it stands for."""
    if not t.tradeId.isdigit():
        raise FieldError(f"[{index}].tradeId", f"{t.tradeId!r}: expected a decimal integer")
    if not t.count:
        return int(t.tradeId), 1
    if not t.count.isdigit() or int(t.count) < 1:
        raise FieldError(f"[{index}].count", f"{t.count!r}: expected an integer >= 1")
    return int(t.tradeId), int(t.count)


def _scan_channel(raw: bytes | str) -> str:
    """The channel named in a frame that did not decode (``""`` if none can be read)."""
    text = raw if isinstance(raw, str) else bytes(raw).decode("utf-8", "replace")
    found = _CHANNEL.search(text)
    return found.group(1) if found else ""


def _okx_rule(key: str) -> OkxRule:
    channel, _, inst_id = key.partition(":")
    return OkxRule(f"OKX {inst_id} {channel}")


def _check_fields(rule: OkxRule, item: OkxBook, where: str) -> None:
    """An update must carry the ``checksum``/``seqId`` fields its snapshot had."""
    if rule.expects_checksum and item.checksum is None:
        raise FieldError("checksum", f"missing in an update of {where} although its snapshot had one")
    if rule.expects_seq and (item.seqId is None or item.prevSeqId is None):
        raise FieldError("seqId", f"seqId/prevSeqId missing in an update of {where} although its snapshot had them")


def _quote(index: int, iid: str, ts_event: int, recv_ns: int, bp: str, bs: str, ap: str, as_: str) -> Quote:
    """The quote of element ``index`` of a push from its price and size strings."""
    try:
        bid, bid_sz, ask, ask_sz = float(bp), float(bs), float(ap), float(as_)
    except ValueError:
        raise FieldError(f"[{index}]", f"best bid/ask {bp!r}x{bs!r} / {ap!r}x{as_!r}: non-numeric") from None
    return _checked_quote(index, iid, ts_event, recv_ns, bid, bid_sz, ask, ask_sz)


def _checked_quote(
    index: int, iid: str, ts_event: int, recv_ns: int, bid: float, bid_sz: float, ask: float, ask_sz: float
) -> Quote:
    """The quote of element ``index`` of a push; a :class:`FieldError` unless prices are positive and finite, sizes >= 0."""
    if not (0.0 < bid < _INF and 0.0 < ask < _INF and 0.0 <= bid_sz < _INF and 0.0 <= ask_sz < _INF):
        raise FieldError(
            f"[{index}]",
            f"best bid/ask {bid!r}x{bid_sz!r} / {ask!r}x{ask_sz!r}: expected positive finite prices, sizes >= 0",
        )
    return Quote(iid, ts_event, recv_ns, bid, bid_sz, ask, ask_sz)
