"""OKX instruments from the real REST instruments responses."""

from __future__ import annotations

from pathlib import Path

import pytest

from tradebus.adapters.okx.instruments import load_instruments, parse_instruments
from tradebus.engine.instrument import Instrument, InstrumentKind
from tradebus.errors import DataError

FIX = Path(__file__).parent.parent / "fixtures" / "okx"


def test_spot_instruments_carry_tick_lot_and_min_size() -> None:
    insts = load_instruments(FIX / "public_instruments_SPOT_2022-05-13_cut.json")
    assert sorted(insts) == ["BTC-USDC.OKX", "BTC-USDT.OKX", "ETH-USDT.OKX", "UNI-USDT.OKX"]
    assert insts["BTC-USDT.OKX"] == Instrument(
        venue="OKX", symbol="BTC-USDT", kind=InstrumentKind.SPOT, base="BTC", quote="USDT",
        tick_size=0.1, lot_size=1e-8, min_quantity=1e-5,
    )


def test_linear_swaps_are_perpetuals_in_contracts_and_inverse_swaps_are_skipped() -> None:
    insts = load_instruments(FIX / "public_instruments_SWAP_2022-05-13_cut.json")
    assert sorted(insts) == ["BTC-USDT-SWAP.OKX", "ETH-USDT-SWAP.OKX"]
    btc = insts["BTC-USDT-SWAP.OKX"]
    assert (btc.kind, btc.base, btc.quote, btc.tick_size, btc.lot_size, btc.min_quantity) == (
        InstrumentKind.PERPETUAL, "BTC", "USDT", 0.1, 1.0, 1.0,
    )


def test_error_response_raises_data_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"code":"50011","msg":"Too Many Requests","data":[]}')
    with pytest.raises(DataError, match=r"bad.json.*50011"):
        load_instruments(path)


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        '{"code":"0","msg":"","data":[{"instId":"X-Y","instType":"SPOT","tickSz":"abc","lotSz":"1","minSz":"1"}]}',
        '{"code":"0","msg":"","data":[{"instId":"X-Y","instType":"SPOT","tickSz":"0","lotSz":"1","minSz":"1"}]}',
    ],
)
def test_invalid_response_raises_data_error(body: str) -> None:
    with pytest.raises(DataError, match="OKX"):
        parse_instruments(body)
