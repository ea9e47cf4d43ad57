"""msgspec Structs mirroring the OKX v5 public WebSocket and REST JSON.

Field names are OKX's own (camelCase) so a frame decodes without renaming.
Numeric fields that OKX sends as strings are typed ``float``/``int`` and decoded
with ``strict=False`` (msgspec converts ``"30218.8"`` to ``30218.8`` in C);
their constraints reject NaN, infinities, non-positive prices, and times
(:data:`~tradebus.adapters.common.parsing.Millis`) or sequence ids
(:data:`~tradebus.adapters.common.parsing.SequenceId`) out of range. Book levels are
decoded twice: as numbers for the book and, when the checksum is verified, as the
exact strings OKX sent (the CRC32 is computed over them).

Unknown fields are ignored (OKX adds fields without notice); missing required
fields or wrong types raise ``msgspec.ValidationError``, which the parser turns
into :class:`tradebus.errors.ParseError`.
"""

from __future__ import annotations

import sys
from typing import Annotated, Literal

import msgspec

from tradebus.adapters.common.parsing import Millis, SequenceId

__all__ = [
    "OkxArg",
    "OkxBbo",
    "OkxBook",
    "OkxBookStrings",
    "OkxFrame",
    "OkxFundingRate",
    "OkxInstrument",
    "OkxInstrumentsResponse",
    "OkxLevel",
    "OkxMarkPrice",
    "OkxPositionTier",
    "OkxPositionTiersResponse",
    "OkxRestResponse",
    "OkxTicker",
    "OkxTrade",
]

_MAX = sys.float_info.max
PositiveFloat = Annotated[float, msgspec.Meta(gt=0.0, le=_MAX)]
NonNegativeFloat = Annotated[float, msgspec.Meta(ge=0.0, le=_MAX)]
FiniteFloat = Annotated[float, msgspec.Meta(ge=-_MAX, le=_MAX)]


class OkxArg(msgspec.Struct, frozen=True):
    """The ``arg`` object naming a subscription: ``{"channel": "trades", "instId": "BTC-USDT"}``."""

    channel: str
    instId: str = ""
    instType: str = ""
    instFamily: str = ""


class OkxFrame(msgspec.Struct):
    """Outer envelope of every OKX frame; ``data`` is kept raw and decoded per channel.

    Push: ``{"arg": {...}, "action": "snapshot"|"update", "data": [...]}``
    (``action`` only on order-book channels). Event:
    ``{"event": "subscribe"|"unsubscribe"|"error", "arg": {...}, "code": "...", "msg": "..."}``.
    """

    arg: OkxArg | None = None
    data: msgspec.Raw = msgspec.Raw()
    action: str = ""
    event: str = ""
    code: str = ""
    msg: str = ""
    connId: str = ""


class OkxTrade(msgspec.Struct, frozen=True):
    """One element of a ``trades`` / ``trades-all`` push, or of ``GET /api/v5/market/history-trades``.

    A ``trades`` push aggregates the fills of one taker order at one price: ``count`` of
    them, whose ids end at ``tradeId`` (``tradeId`` 123 with ``count`` 3 stands for 121, 122
    and 123). ``trades-all`` and the REST history have one trade per element and no ``count``.
    """

    instId: str
    tradeId: str
    px: PositiveFloat
    sz: PositiveFloat
    side: Literal["buy", "sell"]
    ts: Millis
    count: str = ""


class OkxTicker(msgspec.Struct, frozen=True):
    """One element of a ``tickers`` push; prices stay strings because OKX sends ``""`` for an empty side."""

    instId: str
    ts: Millis
    bidPx: str = ""
    bidSz: str = ""
    askPx: str = ""
    askSz: str = ""
    last: str = ""
    lastSz: str = ""
    instType: str = ""


class OkxTickerBbo(msgspec.Struct, frozen=True):
    """The best bid/ask of one ``tickers`` element as numbers (the parser's fast path).

    Decoded in lax mode, so the numeric strings become floats in C. An element with an
    empty side (``""``), a missing one or a non-numeric one fails this decode; the parser then
    reads the frame again as :class:`OkxTicker`, which keeps every such case apart.
    """

    instId: str
    ts: Millis
    bidPx: float
    bidSz: float
    askPx: float
    askSz: float


class OkxBook(msgspec.Struct, frozen=True):
    """One element of a ``books``/``books5``/``books50-l2-tbt``/``books-l2-tbt`` push.

    Levels are ``[price, size, "0", orders]`` strings, decoded here as numbers
    (``strict=False``); :class:`OkxBookStrings` decodes the same levels as strings for
    the checksum. ``checksum`` is the signed CRC32 of the top 25 levels;
    ``seqId``/``prevSeqId`` chain the messages (absent in captures older than 2022-06,
    hence optional).
    """

    asks: list[list[float]]
    bids: list[list[float]]
    ts: Millis
    checksum: int | None = None
    seqId: SequenceId | None = None
    prevSeqId: SequenceId | None = None


class OkxLevel(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """One book level as OKX's strings: ``["30249.4", "2", "0", "1"]`` (not tracked by the GC)."""

    px: str
    sz: str
    liquidated: str = "0"
    orders: str = "0"


class OkxBookStrings(msgspec.Struct, frozen=True):
    """The levels of one book push element as OKX's strings (the CRC32 covers the exact text)."""

    asks: list[OkxLevel]
    bids: list[OkxLevel]


class OkxBbo(msgspec.Struct, frozen=True):
    """One element of a ``bbo-tbt`` push: one level per side."""

    asks: list[list[str]]
    bids: list[list[str]]
    ts: Millis
    seqId: SequenceId | None = None


class OkxBboNumbers(msgspec.Struct, frozen=True):
    """:class:`OkxBbo` with its levels as numbers (the parser's fast path, lax msgspec).

    A non-numeric level fails this decode; the parser then reads the element as
    :class:`OkxBbo`, which names the bad value.
    """

    asks: list[list[float]]
    bids: list[list[float]]
    ts: Millis


class OkxFundingRate(msgspec.Struct, frozen=True):
    """One element of a ``funding-rate`` push.

    ``fundingTime`` is the settlement time at which ``fundingRate`` is paid;
    ``ts`` (the push time) is absent in older messages.
    """

    instId: str
    fundingRate: FiniteFloat
    fundingTime: Millis
    nextFundingTime: str = ""
    nextFundingRate: str = ""
    ts: Millis = 0
    instType: str = ""


class OkxMarkPrice(msgspec.Struct, frozen=True):
    """One element of a ``mark-price`` push."""

    instId: str
    markPx: PositiveFloat
    ts: Millis
    instType: str = ""


class OkxInstrument(msgspec.Struct, frozen=True):
    """One element of ``GET /api/v5/public/instruments`` (fields we use; all strings as OKX sends them)."""

    instId: str
    instType: str
    tickSz: str
    lotSz: str
    minSz: str
    state: str = ""
    baseCcy: str = ""
    quoteCcy: str = ""
    settleCcy: str = ""
    ctVal: str = ""
    ctMult: str = ""
    ctValCcy: str = ""
    ctType: str = ""
    uly: str = ""
    instFamily: str = ""


class OkxRestResponse(msgspec.Struct, frozen=True):
    """Envelope of a public REST answer, ``data`` kept raw: ``{"code": "0", "msg": "", "data": [...]}``."""

    code: str
    data: msgspec.Raw = msgspec.Raw(b"[]")
    msg: str = ""


class OkxInstrumentsResponse(msgspec.Struct, frozen=True):
    """REST envelope ``{"code": "0", "msg": "", "data": [...]}``."""

    code: str
    data: list[OkxInstrument]
    msg: str = ""


class OkxPositionTier(msgspec.Struct, frozen=True):
    """One row of ``GET /api/v5/public/position-tiers`` (fields we use; strings as OKX sends them).

    A swap's row (``instType=SWAP``, asked by ``instFamily``): ``{"tier": "2", "minSz": "1001",
    "maxSz": "2500", "mmr": "0.015", "imr": "0.02", "maxLever": "50", "uly": "1INCH-USDT",
    "instFamily": "1INCH-USDT", "instId": "", "baseMaxLoan": "", "quoteMaxLoan": "", ...}``:
    sizes in contracts. A margin row names a spot pair in ``instId`` and its tiers are loans
    (``baseMaxLoan``/``quoteMaxLoan``).
    """

    tier: str
    minSz: str
    maxSz: str
    mmr: str
    maxLever: str
    imr: str = ""
    instId: str = ""
    instFamily: str = ""
    uly: str = ""
    baseMaxLoan: str = ""
    quoteMaxLoan: str = ""


class OkxPositionTiersResponse(msgspec.Struct, frozen=True):
    """REST envelope ``{"code": "0", "msg": "", "data": [...]}`` of position tiers."""

    code: str
    data: list[OkxPositionTier]
    msg: str = ""
