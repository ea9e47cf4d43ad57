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


def test_a_swap_contract_is_worth_ct_val_times_ct_mult() -> None:
    """OKX's face value of a contract is ``ctVal * ctMult`` (its BTC options: ctVal 1 BTC, ctMult 0.1, so 0.1 BTC
    a contract, in the real OPTION response); the real BTC-USDT-SWAP row with its multiplier raised from 1 to 10,
    as OKX adjusts one (its options' 0.1 to 0.01 in 2022), is 0.1 BTC a contract. Taking ``ctVal`` alone valued
    every notional, PnL and fee of such a swap at a tenth."""
    import json

    body = json.loads((FIX / "public_instruments_SWAP_2022-05-13_cut.json").read_text())
    row = next(r for r in body["data"] if r["instId"] == "BTC-USDT-SWAP")
    assert (row["ctVal"], row["ctMult"]) == ("0.01", "1")
    assert parse_instruments(json.dumps(body))["BTC-USDT-SWAP.OKX"].contract_size == 0.01
    row["ctMult"] = "10"
    assert parse_instruments(json.dumps(body))["BTC-USDT-SWAP.OKX"].contract_size == pytest.approx(0.1, rel=1e-15)
    row["ctMult"] = "x"
    with pytest.raises(DataError, match=r"BTC-USDT-SWAP: ctVal='0.01' ctMult='x'"):
        parse_instruments(json.dumps(body))
