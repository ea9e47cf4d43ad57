"""Configuration of the OKX v5 public market-data adapter (pydantic, ``extra="forbid"``)."""

from __future__ import annotations

import re

from typing import TYPE_CHECKING

from pydantic import Field

from tradebus.config.base import StrictModel


if TYPE_CHECKING:
    from tradebus.adapters.common.feed import FeedConfig

__all__ = [
    "BOOK_CHANNELS",
    "FEED_CHANNELS",
    "FEED_MARKETS",
    "FEED_OPTIONS",
    "FILL_CHANNELS",
    "OkxConfig",
    "check_feed",
    "known_channel",
    "stream_symbol",
]


class OkxConfig(StrictModel):
    """OKX endpoints and stream behaviour.

    Attributes
    ----------
    public_url
        WebSocket URL of the public channels (trades, tickers, books, bbo-tbt,
        funding-rate, mark-price).
    business_url
        WebSocket URL of the business channels (``candle*`` moved there in 2023).
    rest_url
        REST base URL (instruments).
    venue
        Venue name used in instrument ids (``"BTC-USDT.OKX"``).
    ping_after_s
        Send the text ``"ping"`` when nothing was received for this long; OKX
        closes a connection silent for 30 s and answers ``"pong"``.
    pong_timeout_s
        Consider the connection dead if no ``"pong"`` (or any frame) arrives this long after a ping.
    verify_checksum
        Verify the books CRC32 (OKX deprecates it in 2026: it will be sent as 0 and skipped).
    """

    public_url: str = "wss://ws.okx.com:8443/ws/v5/public"
    business_url: str = "wss://ws.okx.com:8443/ws/v5/business"
    rest_url: str = "https://www.okx.com"
    venue: str = Field(default="OKX", min_length=1)
    ping_after_s: float = Field(default=25.0, gt=0.0, lt=30.0)
    pong_timeout_s: float = Field(default=5.0, gt=0.0)
    verify_checksum: bool = True


# ----------------------------------------------------------------------------- paper feed rules

#: Markets of a paper feed.
FEED_MARKETS: tuple[str, ...] = ("spot", "swap", "futures")
#: Channels of a paper feed (plus ``candle<bar>``, on OKX's business URL).
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
#: Channels that maintain an L2 book.
BOOK_CHANNELS: tuple[str, ...] = ("books", "books5", "books-l2-tbt", "books50-l2-tbt")
#: Channels delivering each kind of data a fill model needs.
FILL_CHANNELS: dict[str, tuple[str, ...]] = {
    "trades": ("trades", "trades-all"),
    "quotes": ("tickers", "bbo-tbt", "books", "books5", "books-l2-tbt", "books50-l2-tbt"),
    "bars": ("candle",),
}
_CANDLE = re.compile(r"^candle\d+[smHDWM](utc)?$")


FEED_OPTIONS = None
"""A feed takes only the common keys (no venue options)."""


def known_channel(channel: str) -> bool:
    """Whether ``channel`` is an OKX paper-feed channel."""
    return channel in FEED_CHANNELS or _CANDLE.match(channel) is not None


def check_feed(feed: FeedConfig) -> None:
    """OKX rules of a paper feed: none beyond the common ones."""


def stream_symbol(market: str, symbol: str, instrument_id: str) -> str:
    """The stream symbol of an instrument: its ``instId``."""
    return symbol
