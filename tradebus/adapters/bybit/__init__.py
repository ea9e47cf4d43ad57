"""Bybit v5 public market data: config, schemas, parser (``BybitParser.parse_frame``), book rules, client, instruments, emulator."""

from __future__ import annotations

from tradebus.adapters.bybit import config
from tradebus.adapters.bybit.client import BybitFeedHandle
from tradebus.adapters.bybit.emulator import emulator
from tradebus.adapters.bybit.instruments import load_instruments
from tradebus.adapters.common.venue import VenueAdapter

__all__ = ["ADAPTER"]

#: What the registry (:mod:`tradebus.adapters.registry`) knows of Bybit.
ADAPTER = VenueAdapter(
    name="bybit",
    markets=config.FEED_MARKETS,
    book_channels=config.BOOK_CHANNELS,
    fill_channels=config.FILL_CHANNELS,
    known_channel=config.known_channel,
    check_feed=config.check_feed,
    stream_symbol=config.stream_symbol,
    feed=BybitFeedHandle,
    load_instruments=lambda path, market: load_instruments(path, "BYBIT"),
    emulator=emulator,
)
