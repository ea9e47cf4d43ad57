"""Bybit instruments from the real REST instruments-info responses."""

from __future__ import annotations

from pathlib import Path

import pytest

from tradebus.adapters.bybit.instruments import load_instruments, parse_instruments
from tradebus.engine.instrument import CloseFee, Instrument, InstrumentKind
from tradebus.errors import DataError

FIX = Path(__file__).parent.parent / "fixtures" / "bybit"


def test_linear_perpetuals_with_qty_step_and_min_notional() -> None:
    insts = load_instruments(FIX / "market_instruments-info_linear_2026-08-09_cut.json")
    assert sorted(insts) == [
        "BTCUSDT-LINEAR.BYBIT", "DOGEUSDT-LINEAR.BYBIT", "ETHUSDT-LINEAR.BYBIT", "SOLUSDT-LINEAR.BYBIT",
    ]  # the dated LinearFutures item is skipped
    assert insts["BTCUSDT-LINEAR.BYBIT"] == Instrument(
        venue="BYBIT", symbol="BTCUSDT-LINEAR", kind=InstrumentKind.PERPETUAL, base="BTC", quote="USDT",
        tick_size=0.1, lot_size=0.001, min_notional=5.0, min_quantity=0.001,
        maintenance_close_fee=CloseFee.BANKRUPTCY,  # Bybit's maintenance margin counts the fee to close
    )


def test_spot_instruments_with_base_precision_and_min_order_amount() -> None:
    insts = load_instruments(FIX / "market_instruments-info_spot_2026-08-09_cut.json")
    assert sorted(insts) == ["BTCUSDT.BYBIT", "ETHUSDT.BYBIT"]
    assert insts["BTCUSDT.BYBIT"] == Instrument(
        venue="BYBIT", symbol="BTCUSDT", kind=InstrumentKind.SPOT, base="BTC", quote="USDT",
        tick_size=0.1, lot_size=1e-6, min_notional=5.0, min_quantity=1e-6,
    )


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ('{"retCode":10006,"retMsg":"Too many visits!","result":{"category":"spot","list":[]}}', "10006"),
        ('{"retCode":0,"retMsg":"OK","result":{"category":"option","list":[]}}', "option"),
        ("[]", "Bybit"),
    ],
)
def test_invalid_response_raises_data_error(body: str, match: str) -> None:
    with pytest.raises(DataError, match=match):
        parse_instruments(body)
