"""Binance spot and USD-M public market data (config, schemas, parser, sequence rules, client, instruments, emulator); spot and USD-M perpetual live trading (trading, user_stream, private_emulator)."""

from __future__ import annotations

from tradebus.adapters.binance import config, sync
from tradebus.adapters.binance.client import BinanceFeedHandle
from tradebus.adapters.binance.emulator import emulator, is_snapshot_line
from tradebus.adapters.binance.instruments import load_instruments, load_margin_tiers
from tradebus.adapters.binance.user_stream import LIVE_PERPETUAL
from tradebus.adapters.binance.user_stream import LIVE_ACCOUNT
from tradebus.adapters.common.venue import VenueAdapter

__all__ = ["ADAPTER"]

#: What the registry (:mod:`tradebus.adapters.registry`) knows of Binance.
ADAPTER = VenueAdapter.from_config(
    "binance", config, BinanceFeedHandle, load_instruments, emulator, is_snapshot_line=is_snapshot_line, live=LIVE_ACCOUNT,
    live_perpetual=LIVE_PERPETUAL, load_margin_tiers=load_margin_tiers, warm_up=sync.warm_up,
)
