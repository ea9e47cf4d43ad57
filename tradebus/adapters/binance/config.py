"""Configuration of the Binance market-data adapter (pydantic, ``extra="forbid"``).

Endpoints come from the config so tests (and testnets) point the adapter at a local
server. Defaults are Binance's production endpoints.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from tradebus.adapters.common.feed import FeedConfig, FeedOptions
from tradebus.adapters.common.venue import RestKlines
from tradebus.config.base import HttpUrl, StrictModel
from tradebus.config.units import parse_duration
from tradebus.engine.instrument import CloseFee
from tradebus.errors import ConfigError
from tradebus.execution.client_ids import ClientIdRule

__all__ = [
    "CLIENT_ID_RULE",
    "INSTRUMENT_VENUES",
    "MAINTENANCE_CLOSE_FEE",
    "BOOK_CHANNELS",
    "DEPTH_SPEEDS",
    "CHANNEL_FORMS",
    "FEED_CHANNELS",
    "FEED_MARKETS",
    "FILL_CHANNELS",
    "FEED_OPTIONS",
    "KLINE_INTERVALS",
    "BinanceConfig",
    "BinanceFeedOptions",
    "BinanceMarket",
    "Channel",
    "check_feed",
    "depth_stream_suffix",
    "bar_interval",
    "kline_interval",
    "known_channel",
    "stream_symbol",
    "rest_klines",
]


class BinanceMarket(StrEnum):
    """Which Binance market: spot or USD-M futures (perpetuals)."""

    SPOT = "spot"
    USDM = "usdm"


Channel = Literal["trade", "aggTrade", "kline", "bookTicker", "depth", "markPrice"]

_DEFAULTS: dict[BinanceMarket, tuple[str, str, str]] = {
    # ws base, rest base, instrument venue name
    BinanceMarket.SPOT: ("wss://stream.binance.com:9443", "https://api.binance.com", "BINANCE"),
    BinanceMarket.USDM: ("wss://fstream.binance.com", "https://fapi.binance.com", "BINANCE_USDM"),
}

DEPTH_SPEEDS: dict[BinanceMarket, tuple[str, ...]] = {
    BinanceMarket.SPOT: ("100ms", "1000ms"),
    BinanceMarket.USDM: ("0ms", "100ms", "250ms", "500ms"),
}
"""Diff-depth update speeds per market. Spot documents ``@depth`` (1000 ms) and
``@depth@100ms``; USD-M documents ``@depth`` (250 ms), ``@depth@500ms`` and
``@depth@100ms``, and serves ``@depth@0ms`` (every update, as recorded in real captures
such as the hftbacktest USD-M one in ``tests/fixtures/binance``)."""

_MINUTE_TO_MONTH = ("1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w", "1M")
KLINE_INTERVALS: dict[BinanceMarket, tuple[str, ...]] = {
    BinanceMarket.SPOT: ("1s", *_MINUTE_TO_MONTH),
    BinanceMarket.USDM: _MINUTE_TO_MONTH,
}
"""Kline intervals per market (``<symbol>@kline_<interval>``): USD-M has no ``1s``."""

_BARE_DEPTH_SPEED: dict[BinanceMarket, str] = {BinanceMarket.SPOT: "1000ms", BinanceMarket.USDM: "250ms"}
"""The speed of the stream named plain ``<symbol>@depth`` on each market."""


TRADE_AND_AGG_TRADE = (
    "channels: 'trade' and 'aggTrade' both deliver every trade of the symbol, so subscribing both "
    "would count each trade twice; subscribe one of them"
)


def depth_stream_suffix(market: BinanceMarket, speed: str) -> str:
    """What follows ``<symbol>@depth`` in the stream name of ``speed`` (``""`` for the market's plain stream)."""
    return "" if speed == _BARE_DEPTH_SPEED[market] else f"@{speed}"


class BinanceConfig(StrictModel):
    """Settings of one Binance market-data connection.

    Parameters
    ----------
    market
        ``spot`` or ``usdm``.
    symbols
        Venue symbols (``BTCUSDT``), upper case.
    channels
        Streams per symbol. ``markPrice`` (mark price + funding) is USD-M only.
        ``trade`` and ``aggTrade`` both produce Trades; subscribing both is refused.
    ws_url, rest_url
        Base URLs (``None``: production for the market). Streams are opened on
        ``{ws_url}/stream?streams=...``; the depth snapshot is fetched from
        ``{rest_url}/api/v3/depth`` (spot) or ``{rest_url}/fapi/v1/depth`` (USD-M).
    venue
        Venue name on instruments (``instrument_id = "{symbol}.{venue}"``); ``None``:
        ``BINANCE`` for spot, ``BINANCE_USDM`` for USD-M.
    kline_interval, depth_speed, depth_limit, mark_price_speed
        Stream parameters. ``kline_interval`` per market (:data:`KLINE_INTERVALS`).
        ``depth_speed`` per market (:data:`DEPTH_SPEEDS`): spot
        ``100ms`` (``<symbol>@depth@100ms``) or ``1000ms`` (``<symbol>@depth``); USD-M
        ``0ms``, ``100ms``, ``250ms`` (``<symbol>@depth``) or ``500ms``.
    snapshot_fetcher
        ``ccxt`` (ccxt.async_support with its URLs pointed at ``rest_url``) or ``http``
        (a plain aiohttp GET).
    stale_after
        Seconds of silence before FeedStale and a reconnect.
    dedup_capacity
        Trade ids remembered per client to drop repeats after a reconnect.
    record_path
        Record every raw frame (and REST snapshot) here (gzip JSONL), or ``None``.
    """

    market: BinanceMarket = BinanceMarket.SPOT
    symbols: list[str] = Field(min_length=1)
    channels: list[Channel] = Field(default_factory=lambda: ["trade", "bookTicker", "depth"], min_length=1)
    ws_url: str | None = None
    rest_url: str | None = None
    venue: str | None = None
    kline_interval: str = "1m"
    depth_speed: str = "100ms"
    depth_limit: Literal[5, 10, 20, 50, 100, 500, 1000] = 1000
    mark_price_speed: Literal["1s", "3s"] = "1s"
    snapshot_fetcher: Literal["ccxt", "http"] = "ccxt"
    stale_after: float = Field(default=30.0, gt=0)
    dedup_capacity: int = Field(default=100_000, ge=1)
    record_path: str | None = None

    @field_validator("symbols")
    @classmethod
    def _upper(cls, symbols: list[str]) -> list[str]:
        for s in symbols:
            if not s or not s.isalnum() or s != s.upper():
                raise ValueError(f"symbol {s!r} must be upper-case alphanumeric like 'BTCUSDT'")
        if len(set(symbols)) != len(symbols):
            raise ValueError("symbols must be unique")
        return symbols

    @model_validator(mode="after")
    def _market_rules(self) -> BinanceConfig:
        if "markPrice" in self.channels and self.market is not BinanceMarket.USDM:
            raise ValueError("channels: 'markPrice' exists only for market 'usdm'")
        if self.depth_speed not in DEPTH_SPEEDS[self.market]:
            raise ValueError(
                f"depth_speed: {self.depth_speed!r} is not offered on {self.market.value}; "
                f"use one of {DEPTH_SPEEDS[self.market]}"
            )
        if self.kline_interval not in KLINE_INTERVALS[self.market]:
            raise ValueError(
                f"kline_interval: {self.kline_interval!r} is not offered on {self.market.value}; "
                f"use one of {KLINE_INTERVALS[self.market]}"
            )
        if len(set(self.channels)) != len(self.channels):
            raise ValueError("channels must be unique")
        if "trade" in self.channels and "aggTrade" in self.channels:
            raise ValueError(TRADE_AND_AGG_TRADE)
        return self

    @property
    def ws_base(self) -> str:
        """WebSocket base URL (configured or production)."""
        return (self.ws_url or _DEFAULTS[self.market][0]).rstrip("/")

    @property
    def rest_base(self) -> str:
        """REST base URL (configured or production)."""
        return (self.rest_url or _DEFAULTS[self.market][1]).rstrip("/")

    @property
    def venue_name(self) -> str:
        """Venue name used in instrument ids."""
        return self.venue or _DEFAULTS[self.market][2]

    @property
    def depth_path(self) -> str:
        """REST path of the depth snapshot."""
        return "/api/v3/depth" if self.market is BinanceMarket.SPOT else "/fapi/v1/depth"

    def streams(self) -> list[str]:
        """Stream names to subscribe, in a stable order (symbol-major)."""
        out: list[str] = []
        for symbol in self.symbols:
            s = symbol.lower()
            for ch in self.channels:
                if ch == "kline":
                    out.append(f"{s}@kline_{self.kline_interval}")
                elif ch == "depth":
                    out.append(f"{s}@depth{depth_stream_suffix(self.market, self.depth_speed)}")
                elif ch == "markPrice":
                    out.append(f"{s}@markPrice@{self.mark_price_speed}")
                else:
                    out.append(f"{s}@{ch}")
        return out

    def instrument_id(self, symbol: str) -> str:
        """``"{SYMBOL}.{venue}"``."""
        return f"{symbol.upper()}.{self.venue_name}"


# ----------------------------------------------------------------------------- paper feed rules

#: Markets of a paper feed.
#: Binance's form of a client order id (spot ``newClientOrderId``, USD-M likewise):
#: ``^[\.A-Z\:/a-z0-9_-]{1,36}$`` (https://developers.binance.com/docs/binance-spot-api-docs/errors, ``-1100``).
CLIENT_ID_RULE = ClientIdRule(re.compile(r"[.A-Z:/a-z0-9_-]{1,36}"), "Binance newClientOrderId: 1-36 letters, digits and . : / _ -")
#: The venue names of this venue's instrument ids (what its instrument loaders write).
INSTRUMENT_VENUES: tuple[str, ...] = ("BINANCE", "BINANCE_USDM")
#: USD-M's maintenance margin is ``notional * rate - maintenance amount`` alone: no fee to close.
MAINTENANCE_CLOSE_FEE = CloseFee.NONE
FEED_MARKETS: tuple[str, ...] = tuple(m.value for m in DEPTH_SPEEDS)
#: Channels of a paper feed (every instrument of one feed has the same: one combined-stream connection),
#: plus ``kline_<interval>`` (:data:`KLINE_INTERVALS`; plain ``kline`` is ``kline_1m``).
FEED_CHANNELS = frozenset({"trade", "aggTrade", "bookTicker", "depth", "kline", "markPrice"})
#: The channels as a config writes them, for the error naming one that is none of them.
CHANNEL_FORMS: tuple[str, ...] = (*sorted(FEED_CHANNELS), "kline_<interval>")
#: Channels that maintain an L2 book.
BOOK_CHANNELS: tuple[str, ...] = ("depth",)
#: Channels delivering each kind of data a fill model needs.
FILL_CHANNELS: dict[str, tuple[str, ...]] = {
    "trades": ("trade", "aggTrade"),
    "quotes": ("bookTicker", "depth"),
    "bars": ("kline",),
}
_SYMBOL = re.compile(r"^[A-Z0-9]+$")


def known_channel(channel: str) -> bool:
    """Whether ``channel`` is a Binance paper-feed channel (a ``kline_<interval>`` of any market)."""
    return channel in FEED_CHANNELS or channel.startswith("kline_")


def kline_interval(channel: str) -> str | None:
    """The interval of a kline channel (``kline_1h`` -> ``1h``, ``kline`` -> ``1m``), ``None`` for another channel."""
    if channel == "kline":
        return "1m"
    return channel[6:] if channel.startswith("kline_") else None


def bar_interval(channel: str) -> int | None:
    """The interval (ns) of a kline channel's bars (``kline_1h`` -> 3,600 s); ``None`` for another channel or ``1M``."""
    interval = kline_interval(channel)
    if interval is None:
        return None
    try:
        return parse_duration(interval)
    except ValueError:  # 1M: calendar months, no fixed length
        return None


class BinanceFeedOptions(FeedOptions):
    """The keys of a Binance paper feed beyond the common ones.

    Parameters
    ----------
    depth_speed
        Update speed of the ``depth`` stream (spot ``100ms`` or ``1000ms``; usdm ``0ms``,
        ``100ms``, ``250ms`` or ``500ms``); ``None``: ``100ms``. A recording replays only
        with the speed it was recorded with.
    snapshot_fetcher
        REST depth snapshots through ``ccxt`` or a plain ``http`` GET.
    rest_url
        The REST base the depth snapshots come from; ``None``: the market's production endpoint.
    """

    depth_speed: str | None = None
    snapshot_fetcher: Literal["ccxt", "http"] = "ccxt"
    rest_url: HttpUrl | None = None

    key_hints: ClassVar[dict[str, str]] = {
        "kline_interval": "the interval is part of the channel: subscribe kline_<interval>, e.g. kline_1h"
    }


FEED_OPTIONS = BinanceFeedOptions
"""The keys a Binance feed takes beyond the common ones."""


def check_feed(feed: FeedConfig) -> None:
    """Binance rules of a paper feed: depth speed, ``markPrice`` on USD-M, one channel set per connection."""
    depth_speed = BinanceFeedOptions.of(feed).depth_speed
    if depth_speed is not None:
        speeds = DEPTH_SPEEDS[BinanceMarket(feed.market)]
        if depth_speed not in speeds:
            raise ValueError(
                f"depth_speed: {depth_speed!r} is not offered on binance {feed.market}; use one of {list(speeds)}"
            )
    market = BinanceMarket(feed.market)
    for iid, channels in feed.subscriptions.items():
        for ch in (ch for ch in channels if kline_interval(ch) is not None):
            if kline_interval(ch) not in KLINE_INTERVALS[market]:
                raise ValueError(
                    f"subscriptions.{iid}: {ch!r} is not offered on binance {feed.market}; use kline_<interval> "
                    f"with one of {list(KLINE_INTERVALS[market])}"
                )
        if "markPrice" in channels and feed.market != "usdm":
            raise ValueError(f"subscriptions.{iid}: 'markPrice' exists only for market 'usdm'")
        if "trade" in channels and "aggTrade" in channels:
            raise ValueError(
                f"subscriptions.{iid}: 'trade' and 'aggTrade' both deliver every trade, so each trade "
                "would be counted twice; subscribe one of them"
            )
    sets = {tuple(ch) for ch in feed.subscriptions.values()}
    if len(sets) > 1:
        raise ValueError(
            "subscriptions: every instrument of one binance feed needs the same channels "
            f"(they share one connection); got {sorted(sets)} - use one feed per channel set"
        )


def stream_symbol(market: str, symbol: str, instrument_id: str) -> str:
    """The stream symbol of an instrument: its symbol, upper-case alphanumeric."""
    if not _SYMBOL.match(symbol):
        raise ConfigError(
            f"feed binance: instrument {instrument_id}: symbol must be upper-case alphanumeric like 'BTCUSDT'"
        )
    return symbol


def rest_klines(feed: FeedConfig) -> RestKlines:
    """ccxt ``binance`` (spot) or ``binanceusdm`` on the feed's ``rest_url``, loading that market only."""
    spot = feed.market == BinanceMarket.SPOT.value
    return RestKlines(
        "binance" if spot else "binanceusdm",
        BinanceFeedOptions.of(feed).rest_url,
        {"fetchMarkets": {"types": ["spot" if spot else "linear"]}},
    )
