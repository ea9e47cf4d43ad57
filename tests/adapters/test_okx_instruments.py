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


# ----------------------------------------------------------------------------- position tiers

TIERS_1INCH = FIX / "public_position-tiers_SWAP_1INCH-USDT_2022-06-09.json"


def test_swap_position_tiers_become_tiers_by_size_in_contracts() -> None:
    """OKX's 1INCHUSDT swap tiers of 9 June 2022: 0-1,000 contracts 1 % (75x), 1,001-2,500 1.5 % (50x),
    2,501-65,000 2 % (20x), 65,001-130,000 2.5 % (18.18x)."""
    from tradebus.adapters.okx.instruments import load_margin_tiers
    from tradebus.engine.instrument import MarginTier

    inf = float("inf")
    assert load_margin_tiers(TIERS_1INCH) == {
        "1INCH-USDT-SWAP": (
            MarginTier(inf, 0.01, 75.0, max_size=1_000.0), MarginTier(inf, 0.015, 50.0, max_size=2_500.0),
            MarginTier(inf, 0.02, 20.0, max_size=65_000.0), MarginTier(inf, 0.025, 18.18, max_size=130_000.0),
        )
    }  # fmt: skip


def test_a_swap_position_crossing_a_tier_pays_the_new_rate_on_all_of_it() -> None:
    """OKX: 1,000 contracts of 1 1INCH at 1.0 USDT are tier 1, 1 % of 1,000 = 10 USDT; 1,001 are tier 2,
    1.5 % of the whole 1,001 = 15.015 USDT (no deduction: the maintenance margin jumps by 5)."""
    from tradebus.adapters.okx.instruments import load_margin_tiers

    tiers = load_margin_tiers(TIERS_1INCH)["1INCH-USDT-SWAP"]
    inst = Instrument("OKX", "1INCH-USDT-SWAP", kind=InstrumentKind.PERPETUAL, margin_tiers=tiers, leverage=20.0)
    assert inst.tiered_by_size
    assert inst.maintenance_margin(1_000.0, 1_000.0) == pytest.approx(10.0, rel=1e-12)
    assert inst.maintenance_margin(1_001.0, -1_001.0) == pytest.approx(15.015, rel=1e-12)
    # the size chooses the tier, not the notional: 1,000 contracts at 3.0 are still tier 1
    assert inst.maintenance_margin(3_000.0, 1_000.0) == pytest.approx(30.0, rel=1e-12)


def test_margin_pair_tiers_are_refused_naming_the_row() -> None:
    """The position-tiers response of a margin pair (instType MARGIN: borrowing tiers) is not a swap's."""
    from tradebus.adapters.okx.instruments import load_margin_tiers

    with pytest.raises(DataError, match=r"http_get_position_tiers_margin.json: .*tier 1 of BTC-USDT is not a swap's"):
        load_margin_tiers(FIX / "http_get_position_tiers_margin.json")


def test_position_tiers_with_a_gap_are_refused() -> None:
    from tradebus.adapters.okx.instruments import margin_tiers_from_position_tiers

    body = TIERS_1INCH.read_text().replace('"minSz": "2501"', '"minSz": "3000"')
    with pytest.raises(DataError, match=r"1INCH-USDT-SWAP: the tier up to 65000 contracts starts at 3000"):
        margin_tiers_from_position_tiers(body)
