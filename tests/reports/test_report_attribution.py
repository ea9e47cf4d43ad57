"""attribution.csv shares funding and borrowing interest out to the strategies, hand-derived.

Before, its net PnL left out both: with ``annual_borrow_rates`` the strategies' net PnL missed
the run's equity change by the interest paid, with no column saying so.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pandas as pd
import pytest

from tradebus.cli import run_backtest
from tradebus.data.replay import Replay
from tradebus.engine.kernel import FillRecord, Kernel, RunResult
from tradebus.engine.messages import Bar, FundingPaid, FundingRate, InterestCharged, OrderSide
from tradebus.execution.config import VenueConfig
from tradebus.errors import ConfigError
from tradebus.execution.journal import Journal
from tradebus.reports.attribution import ATTRIBUTION_COLUMNS, attribute
from tradebus.reports.outputs import write_outputs
from tradebus.reports.rundata import load_run
from tradebus.reports.stream import OutputStream
from tradebus.reports.writers import RunDirectory, write_run
from tradebus.strategies.base import Strategy

from tests.account.test_margin_account import H, T0, BuyOnce, hourly_bars, perp
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


def test_a_report_of_a_run_directory_without_attribution_csv_takes_the_interest_of_its_interest_csv(
    tmp_path: Path,
) -> None:
    """A directory written before attribution.csv existed: the attribution rebuilt from its files left
    interest.csv out: interest 0 and a net PnL of -4330.31 where the run lost 15574.19 (11243.88 of interest)."""
    out = tmp_path / "out"
    _, metrics, _ = run_backtest(write_config(tmp_path, {"annual_borrow_rates": {"BTC": 0.2, "USD": 0.1}}), out)
    with (out / "attribution.csv").open(newline="") as handle:
        written = {r["instrument"]: r for r in csv.DictReader(handle)}
    (out / "attribution.csv").unlink()
    rebuilt = {r["instrument"]: r for r in load_run(out).attribution.to_dict("records")}
    assert metrics["interest_paid"] > 0.0 and set(rebuilt) == set(written) == {"BTC-USD.COINBASE", "ALL"}
    for iid, row in written.items():
        assert rebuilt[iid]["interest"] == pytest.approx(float(row["interest"]), rel=1e-12), iid
        assert rebuilt[iid]["net_pnl"] == pytest.approx(float(row["net_pnl"]), rel=1e-12), iid
    assert rebuilt["ALL"]["interest"] == pytest.approx(metrics["interest_paid"], rel=1e-12)
    assert rebuilt["ALL"]["net_pnl"] == pytest.approx(metrics["final_equity"] - metrics["initial_cash"], rel=1e-9)


def test_a_position_closed_to_float_noise_is_flat_as_the_portfolio_snaps_it() -> None:
    # 0.3 - 0.1 leaves 0.19999999999999998: selling 0.2 used to "flip" to a short of -2.8e-17 at
    # 101; 1000000.3 - 1000000.1 leaves 0.2 - 4.7e-11, beyond 1e-12 of the position but within a
    # thousandth of the 0.1 lot, where the portfolio calls it flat.
    fills = [
        FillRecord(1, SPOT, "BUY", 0.3, 100.0, 0.0, "TAKER", "c", "a", "t", ""),
        FillRecord(2, SPOT, "SELL", 0.1, 102.0, 0.0, "TAKER", "c", "a", "t", ""),
        FillRecord(3, SPOT, "SELL", 0.2, 101.0, 0.0, "TAKER", "c", "a", "t", ""),
        FillRecord(4, PERP, "BUY", 1_000_000.3, 10.0, 0.0, "TAKER", "c", "a", "t", ""),
        FillRecord(5, PERP, "SELL", 1_000_000.1, 10.0, 0.0, "TAKER", "c", "a", "t", ""),
        FillRecord(6, PERP, "SELL", 0.2, 11.0, 0.0, "TAKER", "c", "a", "t", ""),
    ]
    rows = attribute(fills, {SPOT: 90.0, PERP: 12.0}, lot_sizes={SPOT: 1e-8, PERP: 0.1})
    got = {r.instrument: r for r in rows}
    for iid, realized in ((SPOT, 0.1 * 2.0 + 0.2 * 1.0), (PERP, 0.2 * 1.0)):
        row = got[iid]
        assert row.position == 0.0 and math.isnan(row.avg_price), (iid, row.position, row.avg_price)
        assert row.unrealized_pnl == 0.0 and row.realized_pnl == pytest.approx(realized, abs=1e-6)


def test_attribution_csv_shows_a_position_closed_to_float_noise_as_zero(tmp_path: Path) -> None:
    fills = [
        FillRecord(1, SPOT, "BUY", 1_000_000.3, 10.0, 0.0, "TAKER", "c", "a", "t", ""),
        FillRecord(2, SPOT, "SELL", 1_000_000.1, 10.0, 0.0, "TAKER", "c", "a", "t", ""),
        FillRecord(3, SPOT, "SELL", 0.2, 11.0, 0.0, "TAKER", "c", "a", "t", ""),
    ]
    result = RunResult((SPOT,), 1e5, fills=fills, last_prices={SPOT: 12.0})
    with RunDirectory(tmp_path / "run", "backtest") as run_dir:
        write_run(run_dir, result, {}, "", lot_sizes={SPOT: 0.1})
    with (tmp_path / "run" / "attribution.csv").open(newline="") as handle:
        (row, _) = list(csv.DictReader(handle))
    assert (row["position"], row["avg_price"], row["unrealized_pnl"]) == ("0.0", "", "0.0")


def test_attribution_csv_writes_quantities_without_the_float_noise_of_their_sums(tmp_path: Path) -> None:
    """Buys of 0.1 and 0.2 wrote bought 0.30000000000000004 and position 0.20000000000000004 (float sums of the
    fills); they are rounded to a thousandth of the 0.001 lot: 0.3 and 0.2. A live buy whose fee the venue took
    out of the coins bought (0.00999 of lots of 0.001: off the lot grid) keeps its 0.00999."""
    fills = [
        FillRecord(1, SPOT, "BUY", 0.1, 100.0, 0.0, "TAKER", "c", "a", "t", ""),
        FillRecord(2, SPOT, "BUY", 0.2, 100.0, 0.0, "TAKER", "c", "a", "t", ""),
        FillRecord(3, SPOT, "SELL", 0.1, 100.0, 0.0, "TAKER", "c", "a", "t", ""),
        FillRecord(4, PERP, "BUY", 0.00999, 100.0, 0.0, "TAKER", "c", "a", "t", ""),
    ]
    assert 0.1 + 0.2 == 0.30000000000000004 and 0.1 + 0.2 - 0.1 == 0.20000000000000004
    result = RunResult((SPOT, PERP), 1e5, fills=fills, last_prices={SPOT: 100.0, PERP: 100.0})
    with RunDirectory(tmp_path / "run", "backtest") as run_dir:
        write_run(run_dir, result, {}, "", lot_sizes={SPOT: 0.001, PERP: 0.001})
    with (tmp_path / "run" / "attribution.csv").open(newline="") as handle:
        rows = {r["instrument"]: r for r in csv.DictReader(handle)}
    assert (rows[SPOT]["bought"], rows[SPOT]["sold"], rows[SPOT]["position"]) == ("0.3", "0.1", "0.2")
    assert (rows[PERP]["bought"], rows[PERP]["sold"], rows[PERP]["position"]) == ("0.00999", "0.0", "0.00999")
    assert (rows["ALL"]["bought"], rows["ALL"]["position"]) == ("", "")


def test_a_rebuilt_attribution_shows_a_position_closed_to_float_noise_as_zero_as_attribution_csv_does(
    tmp_path: Path,
) -> None:
    """A directory without attribution.csv: the attribution rebuilt from its files took no lot size from its
    config.yaml and showed the 0.1-lot position closed to float noise as open (position 7e-11, avg_price 11)."""
    fills = [
        FillRecord(1, SPOT, "BUY", 1_000_000.3, 10.0, 0.0, "TAKER", "c", "a", "t", ""),
        FillRecord(2, SPOT, "SELL", 1_000_000.1, 10.0, 0.0, "TAKER", "c", "a", "t", ""),
        FillRecord(3, SPOT, "SELL", 0.2, 11.0, 0.0, "TAKER", "c", "a", "t", ""),
    ]
    config = "instruments:\n  - {venue: SIM, symbol: BTC-USD, base: BTC, quote: USD, tick_size: 0.01, lot_size: 0.1}\n"
    result = RunResult((SPOT,), 1e5, fills=fills, last_prices={SPOT: 12.0})
    with RunDirectory(tmp_path / "run", "backtest") as run_dir:
        write_run(run_dir, result, {}, config, lot_sizes={SPOT: 0.1})
    (tmp_path / "run" / "attribution.csv").unlink()
    (row, _) = load_run(tmp_path / "run").attribution.to_dict("records")
    assert (row["position"], math.isnan(row["avg_price"]), row["unrealized_pnl"]) == (0.0, True, 0.0)
    assert row["realized_pnl"] == pytest.approx(0.2, abs=1e-6)


def test_a_funding_paid_after_the_fills_of_its_time_is_shared_by_the_positions_they_left() -> None:
    """A bar stamped at the funding time fills before it is settled: a buys 3 and b sells 1 then, and the
    funding is paid on the net 2 they leave (a pays 3/2 of 4, b receives 1/2). Before, the funding was
    taken before the fills of its time: no strategy held the perpetual, and no row took the payment."""
    fills = [fill(5, "a", PERP, "BUY", 3.0), fill(5, "b", PERP, "SELL", 1.0)]
    funding = [FundingPaid(PERP, 2.0, 100.0, 0.02, 4.0, 5, 5)]
    rows = attribute(fills, {PERP: 100.0}, funding=funding, lot_sizes={PERP: 0.001})
    got = {(r.strategy_id, r.instrument): r.funding for r in rows}
    assert got == {("a", PERP): 6.0, ("a", "ALL"): 6.0, ("b", PERP): -2.0, ("b", "ALL"): -2.0}
    # paid on the position before the fills of its time (a trade's): a long 1 from before pays it all
    fills = [fill(1, "a", PERP, "BUY", 1.0), *fills]
    funding = [FundingPaid(PERP, 1.0, 100.0, 0.02, 2.0, 5, 5)]
    rows = attribute(fills, {PERP: 100.0}, funding=funding, lot_sizes={PERP: 0.001})
    assert {(r.strategy_id, r.instrument): r.funding for r in rows if r.instrument == PERP} == {
        ("a", PERP): 2.0, ("b", PERP): 0.0
    }


def test_attribution_of_a_run_paying_funding_on_a_bar_stamped_at_its_time_sums_to_its_pnl(tmp_path: Path) -> None:
    """Hourly bars closing at T0 + k h, a funding row of 0.1 % at T0 + 2h: the buy of 0.1 BTC decided on
    bar 1 fills in bar 2, stamped T0 + 2h, and pays 0.1 * 20,020 * 0.001 = 2.002 then. attribution.csv
    left it out (net PnL 2.002 above the run's)."""
    inst = perp(taker_fee=0.0)
    iid = inst.instrument_id
    closes = [20_000.0 + 10.0 * k for k in range(1, 11)]
    kernel = Kernel([inst], venue_config=VenueConfig(fill_on="bars"), initial_cash=10_000.0)
    kernel.add_strategy(BuyOnce(iid, 0.1))
    kernel.feed_perpetual_data([FundingRate(iid, T0 + 2 * H, T0 + 2 * H, 0.001, T0 + 2 * H)])
    kernel.run(Replay([hourly_bars(tmp_path, iid, closes)]))
    result = kernel.result
    [paid] = result.funding
    assert (paid.ts_event, paid.quantity, paid.payment) == (T0 + 2 * H, 0.1, pytest.approx(2.002))
    assert [f.ts_event for f in result.fills] == [T0 + 2 * H]
    rows = attribute(result.fills, result.last_prices, result.contract_sizes, funding=result.funding,
                     lot_sizes={iid: inst.lot_size})  # fmt: skip
    (total,) = [r for r in rows if r.instrument == "ALL"]
    assert total.funding == pytest.approx(2.002)
    assert total.net_pnl == pytest.approx(kernel.portfolio.equity() - 10_000.0, rel=1e-12)


class MarketOnFirstBar(Strategy):
    """Sends a market order of 0.1 per side in ``sides`` on its first bar (they fill in the next, in that order)."""

    def __init__(self, iid: str, strategy_id: str, sides: list[OrderSide]) -> None:
        super().__init__(iid, strategy_id=strategy_id)
        self.sides = sides
        self.done = False

    def on_bar(self, bar: Bar) -> None:
        if not self.done:
            self.done = True
            for side in self.sides:
                self.submit_market(bar.instrument_id, side, 0.1, reason="entry")


def test_a_funding_paid_after_a_bar_whose_fills_pass_through_its_quantity_goes_to_who_holds_it_then(
    tmp_path: Path,
) -> None:
    """Funding of 0.1 % at T0 + 2h; in the bar stamped then, a buys 0.1 and sells it (net 0.1, then 0) and b
    buys 0.1 (net 0.1): the kernel settles after the bar, b alone holds 0.1 and pays 0.1 * 20,020 * 0.001 =
    2.002. Before, the payment went after the first fill that reached 0.1 (a's buy): a, flat at the funding,
    was charged all of it and b none."""
    inst = perp(taker_fee=0.0)
    iid = inst.instrument_id
    closes = [20_000.0 + 10.0 * k for k in range(1, 11)]
    kernel = Kernel([inst], venue_config=VenueConfig(fill_on="bars"), initial_cash=10_000.0)
    kernel.add_strategy(MarketOnFirstBar(iid, "a", [OrderSide.BUY, OrderSide.SELL]))
    kernel.add_strategy(MarketOnFirstBar(iid, "b", [OrderSide.BUY]))
    kernel.feed_perpetual_data([FundingRate(iid, T0 + 2 * H, T0 + 2 * H, 0.001, T0 + 2 * H)])
    kernel.run(Replay([hourly_bars(tmp_path, iid, closes)]))
    result = kernel.result
    [paid] = result.funding
    assert (paid.ts_event, paid.quantity, paid.payment) == (T0 + 2 * H, 0.1, pytest.approx(2.002))
    assert [(f.ts_event, f.strategy_id, f.side) for f in result.fills] == [
        (T0 + 2 * H, "a", "BUY"), (T0 + 2 * H, "a", "SELL"), (T0 + 2 * H, "b", "BUY")
    ]
    rows = attribute(result.fills, result.last_prices, result.contract_sizes, funding=result.funding,
                     lot_sizes={iid: inst.lot_size})  # fmt: skip
    got = {r.strategy_id: r.funding for r in rows if r.instrument == iid}
    assert got == {"a": 0.0, "b": pytest.approx(2.002)}


class MarketOn(Strategy):
    """Sends a market order of 0.1 per side in ``plan[n]`` on its ``n``-th bar (each fills in the next bar)."""

    def __init__(self, iid: str, strategy_id: str, plan: dict[int, list[OrderSide]]) -> None:
        super().__init__(iid, strategy_id=strategy_id)
        self.plan = plan
        self.bars = 0

    def on_bar(self, bar: Bar) -> None:
        self.bars += 1
        for side in self.plan.get(self.bars, ()):
            self.submit_market(bar.instrument_id, side, 0.1, reason="entry")


def swap_kernel(journal: Journal | None = None) -> Kernel:
    """a buys 0.1 on bar 1 (filled at T0 + 2h), sells it on bar 2 as b buys 0.1 (both filled at T0 + 3h)."""
    inst = perp(taker_fee=0.0)
    iid = inst.instrument_id
    kernel = Kernel([inst], venue_config=VenueConfig(fill_on="bars"), initial_cash=10_000.0, journal=journal)
    kernel.add_strategy(MarketOn(iid, "a", {1: [OrderSide.BUY], 2: [OrderSide.SELL]}))
    kernel.add_strategy(MarketOn(iid, "b", {2: [OrderSide.BUY]}))
    return kernel


def swap_run(tmp_path: Path, how: str) -> Kernel:
    """Run :func:`swap_kernel` (funding 0.001 at T0 + 3h) and write its outputs to ``tmp_path / "run"``:
    as a backtest, as a daemon streaming them, or as a process restarted on the run's journal."""
    iid = perp().instrument_id
    closes = [20_000.0 + 10.0 * k for k in range(1, 11)]
    journal = Journal(tmp_path / "journal.sqlite") if how == "restarted-on-journal" else None
    kernel = swap_kernel(journal)
    kernel.feed_perpetual_data([FundingRate(iid, T0 + 3 * H, T0 + 3 * H, 0.001, T0 + 3 * H)])
    run_dir = RunDirectory(tmp_path / "run", "paper")
    stream = OutputStream(run_dir, kernel) if how == "streamed" else None
    if stream is not None:
        stream.start()
    kernel.run(Replay([hourly_bars(tmp_path, iid, closes)]))
    if journal is not None:
        journal.close()
        journal = Journal(tmp_path / "journal.sqlite")
        kernel = swap_kernel(journal)
        journal.replay(kernel.orders, kernel.portfolio, T0 + 11 * H, on_message=kernel.record_journaled)
        journal.close()
    write_outputs(run_dir, kernel.result, kernel.instruments, "config: 1\n", {"node.json": "{}"}, stream)
    return kernel


@pytest.mark.parametrize("how", ["backtest", "streamed", "restarted-on-journal"])
def test_a_funding_paid_after_a_bar_where_one_strategy_hands_its_position_to_another_goes_to_the_new_holder(
    tmp_path: Path, how: str
) -> None:
    """a buys 0.1 in the bar at T0 + 2h; in the bar stamped T0 + 3h, the funding time, a sells it and b buys
    0.1. The kernel settles after that bar: b alone holds 0.1 and pays 0.1 * 20,030 * 0.001 = 2.003. The
    net position is 0.1 before and after the bar's fills, so it cannot tell where the payment fell: before,
    attribution.csv took it before them and charged a, flat then, all of it and b none. So does a daemon's
    (its fills streamed to fills.csv and read back), and a process restarted on the run's journal."""
    iid = perp().instrument_id
    kernel = swap_run(tmp_path, how)
    result = kernel.result
    [paid] = result.funding
    assert (paid.ts_event, paid.quantity, paid.payment) == (T0 + 3 * H, 0.1, pytest.approx(2.003))
    assert [(f.ts_event, f.strategy_id, f.side) for f in result.fills] == [
        (T0 + 2 * H, "a", "BUY"), (T0 + 3 * H, "a", "SELL"), (T0 + 3 * H, "b", "BUY")
    ]
    assert kernel.strategy_positions == {"a": {iid: 0.0}, "b": {iid: 0.1}}
    with (tmp_path / "run" / "attribution.csv").open(newline="") as handle:
        got = {r["strategy_id"]: float(r["funding"]) for r in csv.DictReader(handle) if r["instrument"] == iid}
    assert got == {"a": 0.0, "b": pytest.approx(2.003)}


@pytest.mark.parametrize("how", ["backtest", "streamed", "restarted-on-journal"])
def test_a_run_directory_without_attribution_csv_rebuilds_the_runs_attribution_of_a_handed_over_position(
    tmp_path: Path, how: str
) -> None:
    """The run of the test above, its attribution.csv removed: ``tradebus report`` rebuilds it from fills.csv,
    funding.csv and prices.csv. funding.csv's ``fills_before`` (3: the fills booked before the payment) places it
    after a's sale and b's buy, as the run did: b pays the 2.003. Before, funding.csv held no fill count and
    the rebuild placed the payment by its quantity, before the bar's fills: a paid it all (a's net PnL
    -1.003 rebuilt against the run's 1.0, b's 7.0 against 4.997)."""
    swap_run(tmp_path, how)
    run = tmp_path / "run"
    funding = pd.read_csv(run / "funding.csv")
    assert funding["fills_before"].tolist() == [3]
    written = pd.read_csv(run / "attribution.csv", keep_default_na=False, na_values=[""])
    (run / "attribution.csv").unlink()
    rebuilt = load_run(run).attribution
    pd.testing.assert_frame_equal(rebuilt, written, check_dtype=False, check_exact=True)
    assert dict(zip(rebuilt["strategy_id"] + " " + rebuilt["instrument"], rebuilt["funding"], strict=True)) == {
        f"a {perp().instrument_id}": 0.0, "a ALL": 0.0,
        f"b {perp().instrument_id}": pytest.approx(2.003), "b ALL": pytest.approx(2.003),
    }


def test_a_run_directory_whose_funding_csv_has_no_fill_counts_rebuilds_as_before(tmp_path: Path) -> None:
    """An older run directory (funding.csv without ``fills_before``) still loads: its payment is placed by
    the quantity it was paid on (before the bar's fills here, the net position passing through 0.1: a pays it)."""
    swap_run(tmp_path, "backtest")
    run = tmp_path / "run"
    funding = pd.read_csv(run / "funding.csv").drop(columns="fills_before")
    funding.to_csv(run / "funding.csv", index=False)
    (run / "attribution.csv").unlink()
    rebuilt = load_run(run).attribution
    got = {r.strategy_id: r.funding for r in rebuilt.itertuples() if r.instrument == perp().instrument_id}
    assert got == {"a": pytest.approx(2.003), "b": 0.0}


def test_attribution_refuses_fill_counts_that_are_not_one_per_funding_payment() -> None:
    fills = [fill(5, "a", PERP, "BUY", 1.0)]
    funding = [FundingPaid(PERP, 1.0, 100.0, 0.02, 2.0, 5, 5)]
    with pytest.raises(ValueError, match="2 fill counts for 1 funding payments"):
        attribute(fills, {PERP: 100.0}, funding=funding, funding_fills=[1, 1])


@pytest.mark.parametrize(("cell", "shown"), [("4", "'4'"), ("1.5", "'1.5'"), ("", "''")])
def test_a_funding_csv_fill_count_that_is_no_count_of_the_fills_is_refused_naming_the_line(
    tmp_path: Path, cell: str, shown: str
) -> None:
    swap_run(tmp_path, "backtest")
    run = tmp_path / "run"
    text = (run / "funding.csv").read_text(encoding="utf-8")
    (run / "funding.csv").write_text(text.rstrip("\n").rsplit(",", 1)[0] + f",{cell}\n", encoding="utf-8")
    (run / "attribution.csv").unlink()
    with pytest.raises(ConfigError, match=rf"funding.csv: line 2: fills_before {shown} is not a count of the 3 fills"):
        load_run(run)
