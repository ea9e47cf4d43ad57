"""OKX v5 public market data (config, schemas, parser, book rules, client, instruments, emulator); spot and swap (linear USDT perpetual) live trading (trading, user_stream, private_emulator)."""

from __future__ import annotations

from pathlib import Path

from tradebus.adapters.okx import config
from tradebus.adapters.okx.client import OkxFeedHandle
from tradebus.adapters.okx.emulator import emulator
from tradebus.adapters.okx.instruments import load_instruments, load_margin_tiers
from tradebus.adapters.okx.user_stream import LIVE_ACCOUNT, LIVE_PERPETUAL
from tradebus.adapters.common.venue import VenueAdapter
from tradebus.engine.instrument import Instrument

__all__ = ["ADAPTER"]


def _load_instruments(path: str | Path, market: str) -> dict[str, Instrument]:
    """Every market's instruments of a saved instruments response (the response names its category)."""
    return load_instruments(path, "OKX")


#: What the registry (:mod:`tradebus.adapters.registry`) knows of this venue.
ADAPTER = VenueAdapter.from_config(
    "okx", config, OkxFeedHandle, _load_instruments, emulator, live=LIVE_ACCOUNT, live_perpetual=LIVE_PERPETUAL,
    load_margin_tiers=load_margin_tiers,
)
