"""Configuration of the Bybit v5 public market-data adapter (pydantic, ``extra="forbid"``)."""

from __future__ import annotations

import re

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from tradebus.adapters.common.venue import RestKlines
from tradebus.config.base import StrictModel
from tradebus.engine.instrument import CloseFee
from tradebus.errors import ConfigError
from tradebus.execution.client_ids import ClientIdRule

if TYPE_CHECKING:
    from tradebus.adapters.common.feed import FeedConfig

__all__ = [
    "CLIENT_ID_RULE",
    "INSTRUMENT_VENUES",
    "BOOK_CHANNELS",
    "CHANNEL_FORMS",
    "FEED_MARKETS",
    "FEED_OPTIONS",
    "FILL_CHANNELS",
    "BybitConfig",
    "check_feed",
    "known_channel",
    "stream_symbol",
    "rest_klines",
    "bar_interval",
]


class BybitConfig(StrictModel):
    """Bybit endpoints and stream behaviour.

    Attributes
    ----------
    category
        ``"spot"`` or ``"linear"``: one connection per category.
    spot_url, linear_url
        WebSocket URLs of the public streams.
    venue
        Venue name used in instrument ids (``"BTCUSDT-LINEAR.BYBIT"``).
    ping_interval_s
        Send ``{"op": "ping"}`` this often (Bybit recommends every 20 s).
    pong_timeout_s
        Consider the connection dead if nothing arrives this long after a ping (the answer
        proves the connection, not the data).
    stale_after_s
        Declare the feed stale when no market data (a push of a subscribed topic; pongs and
        acknowledgements do not count) arrived for this long. Bybit pushes a topic only when
        it changes (``orderbook.1`` re-sends its snapshot after 3 s without change), so the
        default leaves a quiet market 90 s.
    """

    category: Literal["spot", "linear"] = "linear"
    spot_url: str = "wss://stream.bybit.com/v5/public/spot"
    linear_url: str = "wss://stream.bybit.com/v5/public/linear"
    venue: str = Field(default="BYBIT", min_length=1)
    ping_interval_s: float = Field(default=20.0, gt=0.0)
    pong_timeout_s: float = Field(default=10.0, gt=0.0)
    stale_after_s: float = Field(default=90.0, gt=0.0)

    @property
    def ws_url(self) -> str:
        """The WebSocket URL of this config's category."""
        return self.spot_url if self.category == "spot" else self.linear_url


# ----------------------------------------------------------------------------- paper feed rules

#: Markets of a paper feed (a category).
#: Bybit's form of a client order id (``orderLinkId``): at most 36 "numbers, letters (upper and lower
#: cases), dashes, and underscores" (https://bybit-exchange.github.io/docs/v5/order/create-order).
CLIENT_ID_RULE = ClientIdRule(re.compile(r"[A-Za-z0-9_-]{1,36}"), "Bybit orderLinkId: 1-36 letters, digits, - and _")
#: The venue names of this venue's instrument ids (what its instrument loaders write).
INSTRUMENT_VENUES: tuple[str, ...] = ("BYBIT",)
#: A linear perpetual's maintenance margin is ``position value * MMR - MM deduction + estimated fee to
#: close``, the fee being ``quantity * bankruptcy price * taker fee rate`` with the bankruptcy price
#: ``entry * (1 -/+ 1 / leverage)`` (Bybit help "Liquidation Price Calculation under Isolated Mode
#: (Unified Trading Account)", "Order Cost (USDT Contract)"). A liquidated position is settled at
#: its bankruptcy price, its margin lost (help "Liquidation Process (USDT Contract)").
MAINTENANCE_CLOSE_FEE = CloseFee.BANKRUPTCY
FEED_MARKETS: tuple[str, ...] = ("spot", "linear")
#: The channels as a config writes them (:data:`_CHANNEL`), for the error naming one that is none of them.
CHANNEL_FORMS: tuple[str, ...] = (
    "kline.<1|3|5|15|30|60|120|240|360|720|D|W|M>", "orderbook.<1|50|200|500|1000>", "publicTrade", "tickers",
)
#: Channels that maintain an L2 book (``orderbook.<depth>``).
BOOK_CHANNELS: tuple[str, ...] = ("orderbook",)
#: Channels delivering each kind of data a fill model needs.
FILL_CHANNELS: dict[str, tuple[str, ...]] = {"trades": ("publicTrade",), "quotes": ("tickers", "orderbook"), "bars": ("kline",)}
_CHANNEL = re.compile(
    r"^(publicTrade|tickers|orderbook\.(1|50|200|500|1000)|kline\.(1|3|5|15|30|60|120|240|360|720|D|W|M))$"
)


FEED_OPTIONS = None
"""A feed takes only the common keys (no venue options)."""


def known_channel(channel: str) -> bool:
    """Whether ``channel`` is a Bybit paper-feed channel (topic without the symbol)."""
    return _CHANNEL.match(channel) is not None


def bar_interval(channel: str) -> int | None:
    """The interval (ns) of a ``kline.<interval>`` channel's bars (minutes, ``D``, ``W``); ``None`` for another
    channel or ``M`` (calendar months, no fixed length)."""
    if not channel.startswith("kline.") or not known_channel(channel):
        return None
    interval = channel[len("kline."):]
    if interval.isdigit():
        return int(interval) * 60_000_000_000
    return {"D": 86_400_000_000_000, "W": 604_800_000_000_000}.get(interval)


def check_feed(feed: FeedConfig) -> None:
    """Bybit rules of a paper feed: none beyond the common ones."""


def stream_symbol(market: str, symbol: str, instrument_id: str) -> str:
    """The stream symbol of an instrument (a linear instrument's symbol ends with ``-LINEAR``, dropped)."""
    if market == "linear":
        if not symbol.endswith("-LINEAR"):
            raise ConfigError(
                f"feed bybit linear: instrument {instrument_id}: symbol must end with '-LINEAR' (e.g. BTCUSDT-LINEAR)"
            )
        return symbol[: -len("-LINEAR")]
    return symbol


def rest_klines(feed: FeedConfig) -> RestKlines:
    """ccxt ``bybit`` on its own endpoint (a Bybit feed has no REST URL), loading the feed's market only."""
    return RestKlines("bybit", None, {"fetchMarkets": {"types": [feed.market]}})
