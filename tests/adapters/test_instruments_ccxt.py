"""Each venue's instrument loader agrees with ccxt's parsing of the same recorded REST response.

ccxt (an independent implementation) parses the saved ``exchangeInfo`` / ``public/instruments``
payloads with ``parse_markets`` (no network); every instrument our loaders build must have
ccxt's tick size, lot size, minimum quantity and (Binance) minimum notional.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import ccxt
import pytest

from tradebus.adapters.registry import VENUES

FIX = Path(__file__).parent.parent / "fixtures"


def _binance_markets(path: Path) -> list[dict[str, Any]]:
    exchange = ccxt.binance()
    exchange.options["crossMarginPairsData"] = []  # parse_market reads these lists, fetched by load_markets
    exchange.options["isolatedMarginPairsData"] = []
    return exchange.parse_markets(json.loads(gzip.decompress(path.read_bytes()))["symbols"])


def _okx_markets(path: Path) -> list[dict[str, Any]]:
    return ccxt.okx().parse_markets(json.loads(path.read_text())["data"])


CASES = {
    "binance-spot": ("binance", "spot", FIX / "binance" / "exchangeInfo_spot_2021-10-12.json.gz", _binance_markets),
    "binance-usdm": ("binance", "usdm", FIX / "binance" / "exchangeInfo_usdm_2021-07-22.json.gz", _binance_markets),
    "okx-spot": ("okx", "spot", FIX / "okx" / "public_instruments_SPOT_2022-05-13_cut.json", _okx_markets),
    "okx-swap": ("okx", "swap", FIX / "okx" / "public_instruments_SWAP_2022-05-13_cut.json", _okx_markets),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_loader_matches_ccxt_parse_markets_of_the_recorded_response(case: str) -> None:
    venue, market, path, parse = CASES[case]
    ours = VENUES[venue].load_instruments(path, market)
    theirs = {m["id"]: m for m in parse(path)}
    assert len(ours) >= 2
    for inst in ours.values():
        m = theirs[inst.symbol]
        got = (inst.tick_size, inst.lot_size, inst.min_quantity)
        assert got == (m["precision"]["price"], m["precision"]["amount"], m["limits"]["amount"]["min"]), inst.symbol
        if venue == "binance":
            assert inst.min_notional == m["limits"]["cost"]["min"], inst.symbol
