"""attribution.csv shares funding and borrowing interest out to the strategies, hand-derived.

Before, its net PnL left out both: with ``annual_borrow_rates`` the strategies' net PnL missed
the run's equity change by the interest paid, with no column saying so.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from tradebus.cli import run_backtest
from tradebus.engine.kernel import FillRecord
from tradebus.engine.messages import FundingPaid, InterestCharged
from tradebus.reports.attribution import ATTRIBUTION_COLUMNS, attribute

from tests.engine.test_interest import write_config

SPOT = "BTC-USD.SIM"
PERP = "BTCUSDT-PERP.SIM"


def fill(ts: int, sid: str, iid: str, side: str, qty: float) -> FillRecord:
    return FillRecord(ts, iid, side, qty, 100.0, 0.0, "TAKER", "c", sid, "t", "")


def charge(ts: int, asset: str, kind: str, interest: float) -> InterestCharged:
    return InterestCharged(asset, kind, 1.0, 1.0, 0.1, interest, "USD", ts, ts)


def test_funding_and_interest_are_shared_by_what_each_strategy_holds_and_borrows_then() -> None:
    fills = [
        fill(5, "a", PERP, "BUY", 3.0),
        fill(5, "b", PERP, "SELL", 1.0),  # net long 2: a pays 3/2 of the funding, b receives 1/2
        fill(10, "a", SPOT, "SELL", 2.0),
        fill(10, "b", SPOT, "SELL", 1.0),  # BTC borrowed: 2 by a, 1 by b
        fill(30, "b", SPOT, "BUY", 3.0),  # b long 2 at 100: borrows USD (cost 200); a still short 2
    ]
    interest = [
        charge(20, "BTC", "hour", 3.0),  # a 2.0, b 1.0
        charge(30, "BTC", "hour", 0.3),  # the hour comes before b's buy at 30: a 0.2, b 0.1
        charge(30, "USD", "borrow", 0.25),  # the buy's borrowing, after it: b (the only long)
        charge(40, "USD", "hour", 1.0),  # b
        charge(40, "BTC", "hour", 0.5),  # a (the only short)
    ]
    funding = [FundingPaid(PERP, 2.0, 100.0, 0.02, 4.0, 50, 50)]
    rows = attribute(fills, {SPOT: 100.0, PERP: 100.0}, funding=funding, interest=interest,
                     borrow_assets={SPOT: ("BTC", "USD")})  # fmt: skip
    got = {(r.strategy_id, r.instrument): (r.funding, r.interest, r.net_pnl) for r in rows}
    assert got == {
        ("a", PERP): (pytest.approx(6.0), 0.0, pytest.approx(-6.0)),
        ("a", SPOT): (0.0, pytest.approx(2.7), pytest.approx(-2.7)),
        ("a", "ALL"): (pytest.approx(6.0), pytest.approx(2.7), pytest.approx(-8.7)),
        ("b", PERP): (pytest.approx(-2.0), 0.0, pytest.approx(2.0)),
        ("b", SPOT): (0.0, pytest.approx(2.35), pytest.approx(-2.35)),
        ("b", "ALL"): (pytest.approx(-2.0), pytest.approx(2.35), pytest.approx(-0.35)),
    }


def test_attribution_csv_sums_to_the_equity_change_of_a_run_that_pays_interest(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _, metrics, _ = run_backtest(write_config(tmp_path, {"annual_borrow_rates": {"BTC": 0.2, "USD": 0.1}}), out)
    assert metrics["interest_paid"] > 0.0
    with (out / "attribution.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == ATTRIBUTION_COLUMNS
    (total,) = [r for r in rows if r["instrument"] == "ALL"]
    assert float(total["interest"]) == pytest.approx(metrics["interest_paid"], rel=1e-12)
    assert float(total["net_pnl"]) == pytest.approx(metrics["final_equity"] - metrics["initial_cash"], rel=1e-9)
