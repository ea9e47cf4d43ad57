"""Bybit v5 public market data (config, schemas, parser, book rules, client, instruments, emulator); spot and linear-perpetual live trading (trading, user_stream, private_emulator)."""

from __future__ import annotations

from pathlib import Path

from tradebus.adapters.bybit import config
from tradebus.adapters.bybit.client import BybitFeedHandle
from tradebus.adapters.bybit.emulator import emulator
from tradebus.adapters.bybit.instruments import load_instruments, load_margin_tiers
from tradebus.adapters.bybit.user_stream import LIVE_ACCOUNT, LIVE_PERPETUAL
from tradebus.adapters.common.venue import VenueAdapter
from tradebus.engine.instrument import Instrument

__all__ = ["ADAPTER"]


def _load_instruments(path: str | Path, market: str) -> dict[str, Instrument]:
    """Every market's instruments of a saved instruments response (the response names its category)."""
    return load_instruments(path, "BYBIT")


#: What the registry (:mod:`tradebus.adapters.registry`) knows of this venue.
ADAPTER = VenueAdapter.from_config(
    "bybit", config, BybitFeedHandle, _load_instruments, emulator, live=LIVE_ACCOUNT, live_perpetual=LIVE_PERPETUAL,
    load_margin_tiers=load_margin_tiers,
)
