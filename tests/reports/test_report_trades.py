"""Round trips (trades.csv): FIFO matching per instrument, hand-derived cases."""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd
import pytest

from tradebus.engine.kernel import EquitySample, FillRecord, RunResult
from tradebus.reports.rundata import load_run
from tradebus.reports.trades import TRADE_COLUMNS, match_trades
from tradebus.reports.writers import RunDirectory, write_run

S = 1_000_000_000


def fill(t: int, side: str, qty: float, px: float, fee: float = 0.0, iid: str = "X.SIM", why: str = "") -> FillRecord:
    return FillRecord(t * S, iid, side, qty, px, fee, "TAKER", f"o{t}", "s", f"t{t}", why)


def rows(trades: list) -> list[tuple]:
    return [(t.instrument_id, t.side, t.quantity, t.entry_price, t.exit_price, t.pnl, t.fees, t.holding_s)
            for t in trades]


def test_one_long_round_trip_with_fees_and_reasons() -> None:
    trades = match_trades([fill(0, "BUY", 2.0, 100.0, 0.4, why="cross up"),
                           fill(60, "SELL", 2.0, 110.0, 0.44, why="cross down")])
    assert rows(trades) == [("X.SIM", "LONG", 2.0, 100.0, 110.0, 20.0, pytest.approx(0.84), 60.0)]
    assert trades[0].net_pnl == pytest.approx(19.16)
    assert (trades[0].entry_reason, trades[0].exit_reason) == ("cross up", "cross down")


def test_partial_closes_match_the_oldest_lot_first() -> None:
    # Lots: 1 @ 100 (t=0), 1 @ 120 (t=10). Sell 1.5 @ 130 (t=20) closes lot 1 and half of lot 2;
    # sell 0.5 @ 90 (t=30) closes the rest of lot 2.
    trades = match_trades([
        fill(0, "BUY", 1.0, 100.0, 1.0),
        fill(10, "BUY", 1.0, 120.0, 2.0),
        fill(20, "SELL", 1.5, 130.0, 3.0),
        fill(30, "SELL", 0.5, 90.0, 0.5),
    ])
    # fees: lot fee per unit 1.0 and 2.0; sell fee per unit 2.0 then 1.0.
    assert rows(trades) == [
        ("X.SIM", "LONG", 1.0, 100.0, 130.0, 30.0, 3.0, 20.0),
        ("X.SIM", "LONG", 0.5, 120.0, 130.0, 5.0, 2.0, 10.0),
        ("X.SIM", "LONG", 0.5, 120.0, 90.0, -15.0, 1.5, 20.0),
    ]


def test_a_flip_closes_the_long_and_opens_a_short_with_the_rest() -> None:
    # Buy 1 @ 100, sell 3 @ 105 (fee 3: 1 per unit), buy 2 @ 95.
    trades = match_trades([fill(0, "BUY", 1.0, 100.0), fill(5, "SELL", 3.0, 105.0, 3.0), fill(9, "BUY", 2.0, 95.0)])
    assert rows(trades) == [
        ("X.SIM", "LONG", 1.0, 100.0, 105.0, 5.0, 1.0, 5.0),
        ("X.SIM", "SHORT", 2.0, 105.0, 95.0, 20.0, 2.0, 4.0),
    ]


def test_instruments_are_matched_separately_and_open_lots_are_not_trades() -> None:
    trades = match_trades([
        fill(0, "BUY", 1.0, 10.0, iid="A.SIM"),
        fill(1, "SELL", 2.0, 50.0, iid="B.SIM"),
        fill(2, "SELL", 1.0, 12.0, iid="A.SIM"),
        fill(3, "BUY", 1.0, 40.0, iid="B.SIM"),
    ])
    assert rows(trades) == [
        ("A.SIM", "LONG", 1.0, 10.0, 12.0, 2.0, 0.0, 2.0),
        ("B.SIM", "SHORT", 1.0, 50.0, 40.0, 10.0, 0.0, 2.0),
    ]


def test_float_residue_below_a_thousandth_of_a_lot_closes_the_lot() -> None:
    # 0.1 + 0.2 bought, 0.3 sold: 0.30000000000000004 - 0.3 is left, far below a lot of 1e-8.
    trades = match_trades([fill(0, "BUY", 0.1, 10.0), fill(1, "BUY", 0.2, 10.0), fill(2, "SELL", 0.3, 11.0),
                           fill(3, "SELL", 0.1, 12.0)], {"X.SIM": 1e-8})
    assert [t.quantity for t in trades][:2] == [0.1, pytest.approx(0.2)]
    assert len(trades) == 2  # no dust lot left for the last sell to close: it opens a short


def test_pnl_counts_the_contract_size() -> None:
    """200 contracts of 0.01 bought at 100 and sold at 110 make 20 (as the portfolio books them), not 2,000."""
    trades = match_trades([fill(0, "BUY", 200.0, 100.0, 0.4), fill(60, "SELL", 200.0, 110.0, 0.44)],
                          contract_sizes={"X.SIM": 0.01})  # fmt: skip
    assert rows(trades) == [("X.SIM", "LONG", 200.0, 100.0, 110.0, pytest.approx(20.0), pytest.approx(0.84), 60.0)]


def test_trades_csv_is_written_with_every_run(tmp_path: Path) -> None:
    result = RunResult(("X.SIM",), 1e5, 0, 60 * S, fills=[fill(0, "BUY", 2.0, 100.0, 0.4, why="in"),
                                                         fill(60, "SELL", 2.0, 110.0, 0.44, why="out")],
                       equity=[EquitySample(0, 1e5, 1e5, 0.0, 0.0, 0.0, 0.0, marks=(100.0,))])
    run_dir = RunDirectory(tmp_path / "run", "backtest")
    with run_dir:
        write_run(run_dir, result, {}, "")
    with (tmp_path / "run" / "trades.csv").open() as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames or ()) == TRADE_COLUMNS
        (row,) = list(reader)
    assert row["side"] == "LONG" and row["entry_time"] == "1970-01-01T00:00:00Z" and row["exit_ts"] == str(60 * S)
    assert float(row["net_pnl"]) == pytest.approx(19.16) and row["holding_s"] == "60.0"
    assert (row["entry_reason"], row["exit_reason"]) == ("in", "out")
    with (tmp_path / "run" / "prices.csv").open() as handle:
        assert list(csv.DictReader(handle)) == [{"ts": "0", "time": "1970-01-01T00:00:00Z", "instrument": "X.SIM",
                                                 "price": "100.0"}]
    result.contract_sizes = {"X.SIM": 0.5}
    with RunDirectory(tmp_path / "half", "backtest") as run_dir:
        write_run(run_dir, result, {}, "")
    with (tmp_path / "half" / "trades.csv").open() as handle:
        (row,) = list(csv.DictReader(handle))
    assert float(row["pnl"]) == pytest.approx(10.0) and float(row["net_pnl"]) == pytest.approx(9.16)


def test_a_run_directory_without_trades_csv_rebuilds_the_runs_trades_with_the_lot_sizes_of_its_config(
    tmp_path: Path,
) -> None:
    """12,345.6 and 23,456.7 bought, 35,802.3 sold, then 5 sold and bought back, lot size 0.1. The floats of
    the first close leave 3.6e-12 of the second lot (12,345.6 + 23,456.7 is not 35,802.3 in binary), far below
    a thousandth of a lot: the run's trades.csv has 3 trades, the last of 5. Before, ``tradebus report``
    rebuilding trades.csv matched the fills with no lot sizes (residue 1e-12): it kept the 3.6e-12 open and
    listed 4 trades, one of 3.6e-12 and one of 4.999999999996362."""
    fills = [fill(0, "BUY", 12_345.6, 0.1), fill(1, "BUY", 23_456.7, 0.1), fill(2, "SELL", 35_802.3, 0.11),
             fill(3, "SELL", 5.0, 0.12), fill(4, "BUY", 5.0, 0.1)]  # fmt: skip
    result = RunResult(("X.SIM",), 1e5, 0, 4 * S, fills=fills,
                       equity=[EquitySample(0, 1e5, 1e5, 0.0, 0.0, 0.0, 0.0, marks=(0.1,))])  # fmt: skip
    config = "instruments:\n- {venue: SIM, symbol: X, kind: spot, base: X, quote: USD, lot_size: 0.1}\n"
    run_dir = RunDirectory(tmp_path / "run", "backtest")
    with run_dir:
        write_run(run_dir, result, {}, config, lot_sizes={"X.SIM": 0.1})
    run = tmp_path / "run"
    written = load_run(run).trades
    assert written["quantity"].tolist() == [12_345.6, 23_456.7, 5.0]
    (run / "trades.csv").unlink()
    rebuilt = load_run(run).trades
    columns = [c for c in TRADE_COLUMNS if not c.endswith("_time")]
    pd.testing.assert_frame_equal(rebuilt[columns], written[columns], check_dtype=False, check_exact=True)


def _of(t: int, strategy: str, side: str, qty: float, px: float, fee: float = 0.0, why: str = "") -> FillRecord:
    return FillRecord(t * S, "X.SIM", side, qty, px, fee, "TAKER", f"{strategy}{t}", strategy, f"t{t}", why)


def test_one_strategys_fill_never_closes_anothers_lot() -> None:
    """a buys 1 @ 100 and sells it @ 120; b sells 1 @ 110 (its short) and buys it back @ 90. Matched per
    instrument, b's short sale closed a's long (100 -> 110, "a in" -> "b in") and b's cover closed a short opened
    by a's sale (120 -> 90, "a out" -> "b out"): trades no strategy made, while attribution.csv keeps the two
    apart. Each strategy's trade is its own: a's long 100 -> 120 (+20), b's short 110 -> 90 (+20)."""
    trades = match_trades([_of(0, "a", "BUY", 1.0, 100.0, 0.1, "a in"), _of(1, "b", "SELL", 1.0, 110.0, 0.2, "b in"),
                           _of(2, "a", "SELL", 1.0, 120.0, 0.3, "a out"), _of(3, "b", "BUY", 1.0, 90.0, 0.4, "b out")])
    assert rows(trades) == [("X.SIM", "LONG", 1.0, 100.0, 120.0, 20.0, pytest.approx(0.4), 2.0),
                            ("X.SIM", "SHORT", 1.0, 110.0, 90.0, 20.0, pytest.approx(0.6), 2.0)]
    assert [(t.entry_reason, t.exit_reason) for t in trades] == [("a in", "a out"), ("b in", "b out")]


def test_a_liquidation_closes_the_same_fraction_of_every_strategys_position() -> None:
    """a long 3 @ 100, b long 1 @ 100 and c short 2 @ 100: net long 2. A liquidation selling 1 @ 80 (fee 0.6)
    closes half of the net position, so half of each strategy's: a sells 1.5, b 0.5, c buys 1 back, each at 80,
    the fee shared by the 3 units closed (0.2 a unit), as attribution.csv books them."""
    from tradebus.engine.perpetuals import LIQUIDATION_STRATEGY
    from tradebus.reports.attribution import attribute

    fills = [_of(0, "a", "BUY", 3.0, 100.0), _of(1, "b", "BUY", 1.0, 100.0), _of(2, "c", "SELL", 2.0, 100.0),
             _of(3, LIQUIDATION_STRATEGY, "SELL", 1.0, 80.0, 0.6, "liquidation")]
    trades = match_trades(fills)
    assert rows(trades) == [("X.SIM", "LONG", 1.5, 100.0, 80.0, -30.0, pytest.approx(0.3), 3.0),
                            ("X.SIM", "LONG", 0.5, 100.0, 80.0, -10.0, pytest.approx(0.1), 2.0),
                            ("X.SIM", "SHORT", 1.0, 100.0, 80.0, 20.0, pytest.approx(0.2), 1.0)]
    booked = {a.strategy_id: a for a in attribute(fills, {"X.SIM": 80.0}) if a.instrument == "X.SIM"}
    for trade, strategy in zip(trades, "abc", strict=True):
        assert trade.pnl == pytest.approx(booked[strategy].realized_pnl)
        assert trade.fees == pytest.approx(booked[strategy].fees)
    # what is left open: a long 1.5, b long 0.5, c short 1; a's sale of 1.5 closes its own long only
    more = match_trades([*fills, _of(4, "a", "SELL", 1.5, 90.0, why="a out")])
    assert rows(more[3:]) == [("X.SIM", "LONG", 1.5, 100.0, 90.0, -15.0, 0.0, 4.0)]


@pytest.mark.parametrize("closer", ["ops", "killswitch"])
def test_a_flatten_closes_the_strategies_positions_as_a_liquidation_does(closer: str) -> None:
    """An operator's /flatten ("ops") or live-kill --flatten ("killswitch") sells the account's 3 @ 90 (fee 0.3) where a
    holds 2 and b 1 (both bought @ 100): each strategy's long is closed at 90 with its share of the fee, a trade with
    the flatten's reason, and attribution.csv has each strategy flat with that PnL and no row of the flatten's own
    holding a short. Matched per strategy without it, the flatten was an open short of its own: no trade at all."""
    from tradebus.execution.orders import FLATTEN_STRATEGY, KILL_STRATEGY
    from tradebus.reports.attribution import attribute

    assert closer in (FLATTEN_STRATEGY, KILL_STRATEGY)
    fills = [_of(0, "a", "BUY", 2.0, 100.0), _of(1, "b", "BUY", 1.0, 100.0),
             _of(2, closer, "SELL", 3.0, 90.0, 0.3, "operator /flatten")]
    trades = match_trades(fills)
    assert rows(trades) == [("X.SIM", "LONG", 2.0, 100.0, 90.0, -20.0, pytest.approx(0.2), 2.0),
                            ("X.SIM", "LONG", 1.0, 100.0, 90.0, -10.0, pytest.approx(0.1), 1.0)]
    assert {t.exit_reason for t in trades} == {"operator /flatten"}
    booked = {a.strategy_id: a for a in attribute(fills, {"X.SIM": 90.0}) if a.instrument == "X.SIM"}
    assert booked["a"].position == 0.0 and booked["a"].realized_pnl == pytest.approx(-20.0)
    assert booked["b"].position == 0.0 and booked["b"].realized_pnl == pytest.approx(-10.0)
    assert closer not in booked or booked[closer].position == 0.0


def test_trades_csv_names_the_strategy_of_each_trade_and_the_tearsheet_lists_it(tmp_path: Path) -> None:
    """Lots are matched per strategy, but trades.csv had no strategy column: two strategies trading one instrument
    gave rows nobody could tell apart. a long 3 @ 100, b long 1 @ 100, c short 2 @ 100, a liquidation selling 1 @ 80
    (half of the net long 2: half of each strategy's position), then a sells its 1.5 left @ 90: each row is the
    strategy whose lot it closed, the liquidation's rows too."""
    from tradebus.engine.perpetuals import LIQUIDATION_STRATEGY
    from tradebus.reports.tearsheet import render_tearsheet

    fills = [_of(0, "a", "BUY", 3.0, 100.0), _of(1, "b", "BUY", 1.0, 100.0), _of(2, "c", "SELL", 2.0, 100.0),
             _of(3, LIQUIDATION_STRATEGY, "SELL", 1.0, 80.0, 0.6, "liquidation"), _of(4, "a", "SELL", 1.5, 90.0)]
    result = RunResult(("X.SIM",), 1e5, 0, 4 * S, fills=fills,
                       equity=[EquitySample(4 * S, 1e5, 1e5, 0.0, 0.0, 0.0, 0.0, marks=(90.0,))])
    with RunDirectory(tmp_path / "run", "backtest") as run_dir:
        write_run(run_dir, result, {}, "")
    with (tmp_path / "run" / "trades.csv").open(newline="") as handle:
        written = [(r["strategy_id"], r["side"], float(r["quantity"]), r["exit_reason"]) for r in csv.DictReader(handle)]
    assert written == [("a", "LONG", 1.5, "liquidation"), ("b", "LONG", 0.5, "liquidation"),
                       ("c", "SHORT", 1.0, "liquidation"), ("a", "LONG", 1.5, "")]
    assert load_run(tmp_path / "run").trades["strategy_id"].tolist() == ["a", "b", "c", "a"]
    page = render_tearsheet(load_run(tmp_path / "run"))
    assert "<th>strategy</th><th>instrument</th>" in page
    assert page.count("<tr><td>a</td><td>X.SIM</td>") == 2 and page.count("<tr><td>c</td><td>X.SIM</td>") == 1


def test_a_trades_csv_written_before_the_strategy_column_still_loads(tmp_path: Path) -> None:
    result = RunResult(("X.SIM",), 1e5, 0, 60 * S, fills=[fill(0, "BUY", 2.0, 100.0), fill(60, "SELL", 2.0, 110.0)],
                       equity=[EquitySample(0, 1e5, 1e5, 0.0, 0.0, 0.0, 0.0, marks=(100.0,))])
    with RunDirectory(tmp_path / "run", "backtest") as run_dir:
        write_run(run_dir, result, {}, "")
    path = tmp_path / "run" / "trades.csv"
    pd.read_csv(path).drop(columns="strategy_id").to_csv(path, index=False)
    trades = load_run(tmp_path / "run").trades
    assert trades["strategy_id"].tolist() == [""] and trades["net_pnl"].tolist() == [20.0]


def test_a_numeric_strategy_id_reads_back_as_text(tmp_path: Path) -> None:
    result = RunResult(("X.SIM",), 1e5, 0, 60 * S, fills=[_of(0, "007", "BUY", 1.0, 100.0), _of(1, "007", "SELL", 1.0, 110.0)],
                       equity=[EquitySample(0, 1e5, 1e5, 0.0, 0.0, 0.0, 0.0, marks=(100.0,))])
    with RunDirectory(tmp_path / "run", "backtest") as run_dir:
        write_run(run_dir, result, {}, "")
    assert load_run(tmp_path / "run").trades["strategy_id"].tolist() == ["007"]
