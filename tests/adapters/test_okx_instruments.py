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


def test_okx_swap_pnl_counts_contracts_of_ct_val() -> None:
    """3 BTC-USDT-SWAP contracts of ctVal 0.01 BTC bought at 30000 and sold at 31000 make
    3 * 0.01 * 1000 = 30 USDT, not 3 * 1000 (quantity * price treated contracts as coins)."""
    from tradebus.engine.messages import Liquidity, OrderFilled, OrderSide
    from tradebus.engine.portfolio import Portfolio

    insts = load_instruments(FIX / "public_instruments_SWAP_2022-05-13_cut.json")
    btc = insts["BTC-USDT-SWAP.OKX"]
    assert btc.contract_size == 0.01
    assert insts["ETH-USDT-SWAP.OKX"].contract_size == 0.1
    portfolio = Portfolio(insts, 10_000.0)
    iid = btc.instrument_id

    def fill(side: OrderSide, px: float, n: int) -> OrderFilled:
        return OrderFilled("s", iid, f"c{n}", f"v{n}", f"t{n}", side, 3.0, px, 0.0, Liquidity.TAKER, n, n)

    portfolio.apply_fill(fill(OrderSide.BUY, 30_000.0, 1))
    portfolio.mark(iid, 30_500.0)
    assert portfolio.unrealized_pnl() == pytest.approx(15.0)
    assert portfolio.equity() == pytest.approx(10_015.0)
    portfolio.apply_fill(fill(OrderSide.SELL, 31_000.0, 2))
    assert portfolio.realized_pnl == pytest.approx(30.0)
    assert portfolio.equity() == pytest.approx(10_030.0)
    assert portfolio.account.balance("USDT") == pytest.approx(10_030.0)
