"""OKX v5 public market data: config, schemas, parser (``OkxParser.parse_frame``), book rules, client, instruments, emulator."""

from __future__ import annotations

from tradebus.adapters.okx import config
from tradebus.adapters.okx.client import OkxFeedHandle
from tradebus.adapters.okx.emulator import emulator
from tradebus.adapters.okx.instruments import load_instruments
from tradebus.adapters.common.venue import VenueAdapter

__all__ = ["ADAPTER"]

#: What the registry (:mod:`tradebus.adapters.registry`) knows of OKX.
ADAPTER = VenueAdapter(
    name="okx",
    markets=config.FEED_MARKETS,
    book_channels=config.BOOK_CHANNELS,
    fill_channels=config.FILL_CHANNELS,
    known_channel=config.known_channel,
    check_feed=config.check_feed,
    stream_symbol=config.stream_symbol,
    feed=OkxFeedHandle,
    load_instruments=lambda path, market: load_instruments(path, "OKX"),
    emulator=emulator,
)
