"""Bybit instruments from the real REST instruments-info responses."""

from __future__ import annotations

import json
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


# ----------------------------------------------------------------------------- risk limits

RISK_BTC = FIX / "market_risk-limit_linear_BTCUSDT.json"


def test_risk_limits_become_tiers_by_value_whose_deductions_are_bybits() -> None:
    """Bybit BTCUSDT: up to 2,000,000 USDT 0.5 % (100x), up to 2,600,000 0.56 % (90x), mmDeduction 1,200
    (= 2,000,000 * (0.56 % - 0.5 %)). A position of 2,300,000 USDT needs 2,300,000 * 0.56 % - 1,200 =
    11,680 USDT: 0.5 % of the first 2,000,000 plus 0.56 % of the 300,000 above."""
    from tradebus.adapters.bybit.instruments import load_margin_tiers
    from tradebus.engine.instrument import MarginTier

    tiers = load_margin_tiers(RISK_BTC)
    assert tiers == {"BTCUSDT-LINEAR": (MarginTier(2_000_000.0, 0.005, 100.0), MarginTier(2_600_000.0, 0.0056, 90.0))}
    inst = Instrument("BYBIT", "BTCUSDT-LINEAR", kind=InstrumentKind.PERPETUAL, margin_tiers=tiers["BTCUSDT-LINEAR"])
    assert inst.maintenance_bracket(2_600_000.0) == (0.0056, pytest.approx(1_200.0))
    assert inst.maintenance_margin(2_300_000.0, 0.0) == pytest.approx(11_680.0, rel=1e-12)
    assert inst.maintenance_margin(2_000_000.0) == pytest.approx(10_000.0, rel=1e-12)


def test_bybits_documented_tier_example_maintenance_margin() -> None:
    """Bybit's help centre (Maintenance Margin, USDT contract): XYZUSDT tiers to 1,000 / 2,000 / 3,000 /
    4,000 / 5,000 USDT at 2 / 2.5 / 3 / 3.5 / 4 %; 100 contracts at 35 USDT (3,500 USDT, tier 4) need
    1,000 * 2 % + 1,000 * 2.5 % + 1,000 * 3 % + 500 * 3.5 % = 92.5 USDT, = 3,500 * 3.5 % - 30."""
    from tradebus.adapters.bybit.instruments import margin_tiers_from_risk_limits

    rows = [
        {"id": i + 1, "symbol": "XYZUSDT", "riskLimitValue": str(1_000 * (i + 1)), "maintenanceMargin": mmr,
         "initialMargin": "0.1", "isLowestRisk": int(i == 0), "maxLeverage": "10", "mmDeduction": ded}
        for i, (mmr, ded) in enumerate([("0.02", ""), ("0.025", "5"), ("0.03", "15"), ("0.035", "30"), ("0.04", "50")])
    ]  # fmt: skip
    body = json.dumps({"retCode": 0, "retMsg": "OK", "result": {"category": "linear", "list": rows}})
    tiers = margin_tiers_from_risk_limits(body)["XYZUSDT-LINEAR"]
    inst = Instrument("BYBIT", "XYZUSDT-LINEAR", kind=InstrumentKind.PERPETUAL, margin_tiers=tiers)
    assert inst.maintenance_margin(100 * 35.0, 100.0) == pytest.approx(92.5, rel=1e-12)


def test_a_published_deduction_that_disagrees_is_refused_naming_the_file(tmp_path: Path) -> None:
    from tradebus.adapters.bybit.instruments import load_margin_tiers

    path = tmp_path / "risk.json"
    path.write_text(RISK_BTC.read_text().replace('"mmDeduction": "1200"', '"mmDeduction": "1300"'))
    with pytest.raises(DataError, match=r"risk.json: Bybit risk limits BTCUSDT: mmDeduction 1300 .* derived 1200"):
        load_margin_tiers(path)


def test_a_risk_limit_page_with_more_pages_after_it_is_refused_not_loaded_with_a_cut_table(tmp_path: Path) -> None:
    """Bybit pages ``GET /v5/market/risk-limit?category=linear`` (``nextPageCursor``). A first page that ends
    after BTCUSDT's first tier loaded BTCUSDT with that tier alone (up to 2,000,000 USDT, and every larger
    position priced in it), with only a warning logged."""
    from tradebus.adapters.bybit.instruments import load_margin_tiers

    body = json.loads(RISK_BTC.read_text())
    body["result"]["list"] = body["result"]["list"][:1]
    body["result"]["nextPageCursor"] = "2%3A0"
    path = tmp_path / "risk.json"
    path.write_text(json.dumps(body))
    with pytest.raises(DataError, match=r"risk.json: Bybit risk-limit response is one page of several \(nextPageCursor '2%3A0'\)"):
        load_margin_tiers(path)
