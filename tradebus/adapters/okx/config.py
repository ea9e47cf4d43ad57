"""Configuration of the OKX v5 public market-data adapter (pydantic, ``extra="forbid"``)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from pydantic import Field

from tradebus.adapters.common.feed import FeedOptions
from tradebus.adapters.common.venue import RestKlines
from tradebus.config.base import HttpUrl, StrictModel
from tradebus.engine.instrument import CloseFee
from tradebus.execution.client_ids import ClientIdRule


if TYPE_CHECKING:
    from tradebus.adapters.common.feed import FeedConfig

__all__ = [
    "CLIENT_ID_RULE",
    "INSTRUMENT_VENUES",
    "BOOK_CHANNELS",
    "BUSINESS_CHANNELS",
    "CANDLE_BARS",
    "CANDLE_CHANNELS",
    "CANDLE_UNIT_MS",
    "CHANNEL_FORMS",
    "FEED_CHANNELS",
    "FEED_MARKETS",
    "FEED_OPTIONS",
    "FILL_CHANNELS",
    "UTC_CANDLE_BARS",
    "OkxConfig",
    "OkxFeedOptions",
    "check_feed",
    "known_channel",
    "stream_symbol",
    "rest_klines",
    "bar_interval",
]


class OkxConfig(StrictModel):
    """OKX endpoints and stream behaviour.

    Attributes
    ----------
    public_url
        WebSocket URL of the public channels (trades, tickers, books, bbo-tbt,
        funding-rate, mark-price).
    venue
        Venue name used in instrument ids (``"BTC-USDT.OKX"``).
    ping_after_s
        Send the text ``"ping"`` when nothing was received for this long; OKX
        closes a connection silent for 30 s and answers ``"pong"``.
    pong_timeout_s
        Consider the connection dead if no ``"pong"`` (or any frame) arrives this long after a
        ping (the answer proves the connection, not the data).
    stale_after_s
        Declare the feed stale when no market data (a push of a subscribed channel; ``"pong"``
        and events do not count) arrived for this long. OKX pushes a channel only when it
        changes, and a ``books`` channel without change sends a heartbeat update about every
        60 s: the default leaves that heartbeat 90 s.
    verify_checksum
        Verify the books CRC32 (OKX deprecates it in 2026: it will be sent as 0 and skipped).
    rest_url
        REST base of the trade history that fills a gap in trade ids
        (``GET /api/v5/market/history-trades``).
    demo
        The public URL is OKX's demo trading one (``wspap.okx.com``): REST requests carry
        ``x-simulated-trading: 1``, so the history is the demo's, whose trade ids the stream has.
    """

    public_url: str = "wss://ws.okx.com:8443/ws/v5/public"
    venue: str = Field(default="OKX", min_length=1)
    ping_after_s: float = Field(default=25.0, gt=0.0, lt=30.0)
    pong_timeout_s: float = Field(default=5.0, gt=0.0)
    stale_after_s: float = Field(default=90.0, gt=0.0)
    verify_checksum: bool = True
    rest_url: str = "https://www.okx.com"

    @property
    def demo(self) -> bool:
        return "wspap.okx.com" in self.public_url


# ----------------------------------------------------------------------------- paper feed rules

#: Markets of a paper feed.
#: OKX's form of a client order id (``clOrdId``, ``algoClOrdId``): "1-32 case-sensitive alphanumeric
#: characters" (https://www.okx.com/docs-v5/en/#order-book-trading-trade-post-place-order).
CLIENT_ID_RULE = ClientIdRule(re.compile(r"[A-Za-z0-9]{1,32}"), "OKX clOrdId: 1-32 letters and digits")
#: The venue names of this venue's instrument ids (what its instrument loaders write).
INSTRUMENT_VENUES: tuple[str, ...] = ("OKX",)
#: A swap is liquidated when its margin ratio, equity / (maintenance margin + liquidation fee), is at
#: most 100 %; the liquidation fee is the taker fee on the notional at the mark (OKX help "Tiered
#: maintenance margin ratio rules": isolated USDT swaps, ``face value * |contracts| * mark *
#: (tiered MMR + fee rate)``), and is what the liquidation charges: the position is closed with
#: that clearance fee going to the insurance fund (OKX learn "When would my order be liquidated?"),
#: the rest of the margin staying the trader's.
MAINTENANCE_CLOSE_FEE = CloseFee.MARK
FEED_MARKETS: tuple[str, ...] = ("spot", "swap", "futures")
#: Channels of a paper feed (plus ``candle<bar>``); which URL serves which: :data:`BUSINESS_CHANNELS`.
FEED_CHANNELS = frozenset(
    {
        "trades",
        "trades-all",
        "tickers",
        "bbo-tbt",
        "books",
        "books5",
        "books-l2-tbt",
        "books50-l2-tbt",
        "funding-rate",
        "mark-price",
    }
)
#: The channels as a config writes them, for the error naming one that is none of them.
CHANNEL_FORMS: tuple[str, ...] = (*sorted(FEED_CHANNELS), "candle<bar>")
#: Channels that maintain an L2 book.
BOOK_CHANNELS: tuple[str, ...] = ("books", "books5", "books-l2-tbt", "books50-l2-tbt")
#: Channels delivering each kind of data a fill model needs.
FILL_CHANNELS: dict[str, tuple[str, ...]] = {
    "trades": ("trades", "trades-all"),
    "quotes": ("tickers", "bbo-tbt", "books", "books5", "books-l2-tbt", "books50-l2-tbt"),
    "bars": ("candle",),
}
#: Bar sizes of the ``candle<bar>`` channels (OKX v5 WebSocket, Candlesticks channel; aligned to Hong Kong time).
CANDLE_BARS: tuple[str, ...] = (
    "1s", "1m", "3m", "5m", "15m", "30m", "1H", "2H", "4H", "6H", "12H", "1D", "2D", "3D", "5D", "1W", "1M", "3M", "6M", "1Y"
)
#: Bar sizes that also have a UTC-aligned ``candle<bar>utc`` channel.
UTC_CANDLE_BARS: tuple[str, ...] = ("6H", "12H", "1D", "2D", "3D", "5D", "1W", "1M", "3M", "1Y")
#: Milliseconds of the fixed-length candle units (``M`` months and ``Y`` years are calendar lengths).
CANDLE_UNIT_MS = {"s": 1_000, "m": 60_000, "H": 3_600_000, "D": 86_400_000, "W": 604_800_000}
#: Every candle channel OKX offers.
CANDLE_CHANNELS: tuple[str, ...] = (
    *(f"candle{bar}" for bar in CANDLE_BARS),
    *(f"candle{bar}utc" for bar in UTC_CANDLE_BARS),
)

#: Channels OKX serves only on its business URL (``/ws/v5/business``; OKX v5 WebSocket docs, "URL Path"
#: of the all-trades and candlesticks channels); every other feed channel only on ``/ws/v5/public``.
BUSINESS_CHANNELS: tuple[str, ...] = ("trades-all", *CANDLE_CHANNELS)
_URL_PATHS = {"/ws/v5/public": "public", "/ws/v5/business": "business"}


class OkxFeedOptions(FeedOptions):
    """The keys of an OKX paper feed beyond the common ones.

    Parameters
    ----------
    rest_url
        The REST base the trade history comes from (a gap in trade ids is filled from
        ``GET /api/v5/market/history-trades``); ``None``: ``https://www.okx.com``.
    """

    rest_url: HttpUrl | None = None


FEED_OPTIONS = OkxFeedOptions
"""The keys an OKX feed takes beyond the common ones."""


def known_channel(channel: str) -> bool:
    """Whether ``channel`` is an OKX paper-feed channel (a ``candle<bar>`` of any bar size: :func:`check_feed` checks it)."""
    return channel in FEED_CHANNELS or channel.startswith("candle")


def check_feed(feed: FeedConfig) -> None:
    """OKX rules of a paper feed.

    * a candle channel must be one of :data:`CANDLE_CHANNELS`;
    * ``trades`` and ``trades-all`` of one instrument are refused together: a ``trades`` push
      aggregates fills that ``trades-all`` also delivers one by one, under other trade ids,
      so de-duplication cannot tell them apart and the volume would be counted twice;
    * an OKX URL serves either the business channels (:data:`BUSINESS_CHANNELS`, on
      ``/ws/v5/business``) or the others (``/ws/v5/public``, the default); a feed's channels
      must all be served by its ``ws_url``. A URL with another path (a local emulator) takes any.

    Raises
    ------
    ValueError
        Naming the subscription, the channel and what to use instead (OKX refuses the
        subscription, which would stop the daemon only once started).
    """
    url = feed.ws_url or OkxConfig.model_fields["public_url"].default
    served = _URL_PATHS.get(urlsplit(url).path.rstrip("/"))
    for iid, channels in feed.subscriptions.items():
        for channel in channels:
            if channel.startswith("candle") and channel not in CANDLE_CHANNELS:
                raise ValueError(
                    f"subscriptions.{iid}: {channel!r} is not an OKX candle channel; "
                    f"use one of {', '.join(CANDLE_CHANNELS)}"
                )
        if "trades" in channels and "trades-all" in channels:
            raise ValueError(
                f"subscriptions.{iid}: 'trades' and 'trades-all' both deliver every trade ('trades' aggregated, "
                "'trades-all' one by one, under different trade ids), so each trade would be counted twice; "
                "subscribe one of them"
            )
        if served is None:
            continue
        for channel in channels:
            needs = "business" if channel in BUSINESS_CHANNELS else "public"
            if needs != served:
                raise ValueError(
                    f"subscriptions.{iid}: OKX serves {channel!r} only on its {needs} URL (/ws/v5/{needs}), "
                    f"not on ws_url {url!r}; give it a feed with ws_url "
                    f"{url[: url.rindex('/ws/v5/')]}/ws/v5/{needs}"
                )


def stream_symbol(market: str, symbol: str, instrument_id: str) -> str:
    """The stream symbol of an instrument: its ``instId``."""
    return symbol


def bar_interval(channel: str) -> int | None:
    """The interval (ns) of a ``candle<bar>`` channel's bars (``candle1H`` -> 3,600 s); ``None`` for another
    channel or a bar of months or years (calendar lengths)."""
    if channel not in CANDLE_CHANNELS:
        return None
    core = channel[len("candle"):].removesuffix("utc")
    unit_ms = CANDLE_UNIT_MS.get(core[-1:])
    return None if unit_ms is None else int(core[:-1]) * unit_ms * 1_000_000


def rest_klines(feed: FeedConfig) -> RestKlines:
    """ccxt ``okx`` on the feed's ``rest_url``, loading the feed's market only."""
    market = "future" if feed.market == "futures" else feed.market
    return RestKlines("okx", OkxFeedOptions.of(feed).rest_url, {"fetchMarkets": {"types": [market]}})
