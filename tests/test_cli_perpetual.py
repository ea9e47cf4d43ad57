"""The shipped perpetual backtest (configs/perp_xrp_funding.yaml): funding, marks and margin in its outputs."""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd
import pytest
import yaml
from loguru import logger

from tradebus.cli import run_backtest
from tradebus.errors import ConfigError
from tradebus.reports.rundata import buy_and_hold, load_run
from tradebus.reports.writers import FUNDING_COLUMNS

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "configs" / "perp_xrp_funding.yaml"


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_shipped_perpetual_config_shows_funding_marks_and_margin(tmp_path: Path) -> None:
    _, metrics, out = run_backtest(CONFIG, tmp_path / "a")
    funding = _rows(out / "funding.csv")
    assert tuple(funding[0]) == FUNDING_COLUMNS
    assert len(funding) == metrics["funding_settlements"] == 5
    # each row is quantity * mark * rate, and the total is the metric and the equity column
    for row in funding:
        assert float(row["payment"]) == pytest.approx(float(row["quantity"]) * float(row["mark_price"]) * float(row["rate"]))
    total = sum(float(r["payment"]) for r in funding)
    assert metrics["funding_paid"] == pytest.approx(total)
    equity = _rows(out / "equity.csv")
    assert float(equity[-1]["funding_paid"]) == pytest.approx(total)
    held = [r for r in equity if float(r["position_value"]) != 0.0]
    assert held
    for row in held:
        value = abs(float(row["position_value"]))
        # 5x leverage: initial margin is a fifth of the notional at mark; first tier 0.5 % maintenance
        assert float(row["margin"]) == pytest.approx(value / 5.0)
        assert float(row["maintenance_margin"]) > 0.0
    for row in equity:
        assert float(row["equity"]) == pytest.approx(
            10_000.0 + float(row["realized_pnl"]) + float(row["unrealized_pnl"]) - float(row["fees_paid"])
            - float(row["funding_paid"]),
            rel=1e-12,
        )
    # The attribution values the open position at the mark, as the equity does, and takes the
    # funding: its net PnL is the run's PnL.
    (total_row,) = [r for r in _rows(out / "attribution.csv") if r["instrument"] == "ALL"]
    assert float(total_row["unrealized_pnl"]) == pytest.approx(float(equity[-1]["unrealized_pnl"]), rel=1e-12)
    assert float(total_row["funding"]) == pytest.approx(total, rel=1e-12)
    assert float(total_row["net_pnl"]) == pytest.approx(metrics["final_equity"] - 10_000.0, rel=1e-9)
    # deterministic: a second run writes byte-identical files
    _, _, again = run_backtest(CONFIG, tmp_path / "b")
    for name in ("fills.csv", "equity.csv", "funding.csv", "metrics.json"):
        assert (out / name).read_bytes() == (again / name).read_bytes(), name


def test_marks_for_a_spot_instrument_are_a_config_error(tmp_path: Path) -> None:
    config = yaml.safe_load(CONFIG.read_text())
    config["instruments"][0]["kind"] = "spot"
    config["instruments"][0]["margin"] = True
    for key in ("marks", "funding"):
        for entry in config["data"][key]:
            entry["file"] = str((CONFIG.parent / entry["file"]).resolve())
    config["data"]["sources"][0]["file"] = str((CONFIG.parent / config["data"]["sources"][0]["file"]).resolve())
    path = tmp_path / "spot.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError, match=r"data.marks.0.instrument: 'XRPUSDT.BINANCE' is not a perpetual"):
        run_backtest(path, tmp_path / "out")


def test_a_run_longer_than_its_funding_file_warns_of_the_stretch_without_funding(tmp_path: Path) -> None:
    """The shipped run starts 2021-11-15 06:00, its funding file on 2021-11-18: nine 8-hourly fundings
    of the positions it held from 11-15 10:10 are not in the file, and the run says so once."""
    lines: list[str] = []
    sink = logger.add(lines.append, level="WARNING", format="{message}")
    try:
        run_backtest(CONFIG, tmp_path / "a")
    finally:
        logger.remove(sink)
    gaps = [line for line in lines if "no funding row" in line]
    assert gaps == [
        "data.funding.0 (XRP_USDT_USDT-8h-funding_rate.feather, a funding every 8 h): no funding row from "
        "2021-11-15T06:00:00Z to 2021-11-18T00:00:00.017Z; a position in XRPUSDT.BINANCE held then paid no "
        "funding for that time\n"
    ]


def test_a_run_longer_than_its_mark_file_warns_of_the_stretch_valued_at_a_stale_mark(tmp_path: Path) -> None:
    """The mark file ends at 2021-11-19 09:00; run to 11-21 12:00, the position held from then on was valued
    at that mark (1.05721) for two days, its PnL and margin standing still, and nothing said so. The
    shipped run, which ends an hour after the last mark, warns of none."""
    lines: list[str] = []
    sink = logger.add(lines.append, level="WARNING", format="{message}")
    try:
        run_backtest(CONFIG, tmp_path / "a")
        assert [line for line in lines if "no mark price" in line] == []
        result, _, _ = run_backtest(CONFIG, tmp_path / "b", overrides=["data.end=2021-11-21T12:00:00"])
    finally:
        logger.remove(sink)
    assert [line for line in lines if "no mark price" in line] == [
        "data.marks.0 (XRP_USDT_USDT-1h-mark.feather, a mark every 60 min): no mark price from "
        "2021-11-19T09:00:00Z to 2021-11-21T12:00:00Z; a position in XRPUSDT.BINANCE held then was valued at "
        "the mark before it, which stood still (or, before the first mark, at its last trade, bar close or mid)\n"
    ]
    assert result.equity[-1].marks == (1.05721,)  # the last mark of the file, two days later


def test_a_run_starting_between_marks_is_valued_at_the_mark_in_force_from_its_start(tmp_path: Path) -> None:
    """Started at 08:30 over hourly marks, the run was valued at the 08:30 bar's close (1.2038) until the
    09:00 mark, though the file's 08:00 mark (1.20902, the open of its 08:00 mark bar) was in force; the
    09:00 mark (1.20968), in the future at 08:30, is not used."""
    result, _, _ = run_backtest(CONFIG, tmp_path / "a", overrides=["data.start=2021-11-15T08:30:00"])
    assert [(e.ts, e.marks) for e in result.equity[:2]] == [
        (1_636_965_000_000_000_000, (1.20902,)),  # 2021-11-15T08:30Z
        (1_636_966_800_000_000_000, (1.20968,)),  # 09:00
    ]


def test_a_mark_file_a_second_apart_warns_of_a_stretch_without_marks(tmp_path: Path) -> None:
    """A 1 s mark file (as a recorded mark-price stream gives) missing 06:05:00 to 06:05:29 was never
    checked (its interval rounded to the minute was 0): the run said nothing."""
    start = 1_636_956_000_000_000_000  # 2021-11-15T06:00:00Z
    seconds = [i for i in range(600) if not 300 <= i < 330]
    marks = tmp_path / "marks-1s.parquet"
    pd.DataFrame({"ts_event": [start + i * 1_000_000_000 for i in seconds], "mark_price": 1.21}).to_parquet(marks)
    lines: list[str] = []
    sink = logger.add(lines.append, level="WARNING", format="{message}")
    try:
        run_backtest(CONFIG, tmp_path / "a", overrides=[f"data.marks.0.file={marks}", "data.end=2021-11-15T06:10:00"])
    finally:
        logger.remove(sink)
    assert [line for line in lines if "no mark price" in line] == [
        "data.marks.0 (marks-1s.parquet, a mark every 1s): no mark price from 2021-11-15T06:04:59Z to "
        "2021-11-15T06:05:30Z; a position in XRPUSDT.BINANCE held then was valued at the mark before it, which "
        "stood still (or, before the first mark, at its last trade, bar close or mid)\n"
    ]


def test_a_run_starting_in_a_stretch_of_its_mark_file_without_rows_warns_of_it(tmp_path: Path) -> None:
    """The mark file without its 07:00 and 08:00 rows, a run from 08:30: valued at the 06:00 mark until the
    09:00 one, and nothing said (08:30 to the 09:00 mark is shorter than the file's interval)."""
    table = pd.read_feather(REPO / "tests" / "fixtures" / "perpetual" / "XRP_USDT_USDT-1h-mark.feather")
    marks = tmp_path / "marks.feather"
    table[~table["date"].dt.hour.isin([7, 8]) | (table["date"].dt.day != 15)].reset_index(drop=True).to_feather(marks)
    lines: list[str] = []
    sink = logger.add(lines.append, level="WARNING", format="{message}")
    try:
        result, _, _ = run_backtest(
            CONFIG, tmp_path / "a", overrides=[f"data.marks.0.file={marks}", "data.start=2021-11-15T08:30:00"]
        )
    finally:
        logger.remove(sink)
    assert result.equity[0].marks == (1.20932,)  # the 06:00 mark, in force at 08:30
    assert [line for line in lines if "no mark price" in line] == [
        "data.marks.0 (marks.feather, a mark every 60 min): no mark price from 2021-11-15T08:30:00Z to "
        "2021-11-15T09:00:00Z; a position in XRPUSDT.BINANCE held then was valued at the mark before it, which "
        "stood still (or, before the first mark, at its last trade, bar close or mid)\n"
    ]


def test_volume_slippage_counts_an_order_in_contracts_at_its_contract_size(tmp_path: Path) -> None:
    """2,000 contracts of 10 XRP are 20,000 XRP: the same share of a bar's volume (in XRP), the same fills.

    The participation was 2,000 / volume, so the contract run paid less slippage (BUY 4,000 at
    1.1296 where the coin run bought 40,000 at 1.1298).
    """
    coins, _, _ = run_backtest(CONFIG, tmp_path / "coins")
    contracts, _, _ = run_backtest(CONFIG, tmp_path / "contracts", overrides=[
        "instruments.0.contract_size=10", "instruments.0.lot_size=0.01", "strategy.params.quantity=2000"])  # fmt: skip
    assert len(coins.fills) == len(contracts.fills) > 2
    for coin, contract in zip(coins.fills, contracts.fills, strict=True):
        assert (contract.side, contract.price) == (coin.side, coin.price)
        assert (contract.quantity * 10.0, contract.fee) == (pytest.approx(coin.quantity), pytest.approx(coin.fee))


def test_a_report_of_a_run_directory_without_attribution_csv_takes_the_funding_of_its_funding_csv(
    tmp_path: Path,
) -> None:
    """A directory written before attribution.csv existed: the report rebuilds the attribution from its
    fills and prices. It left funding.csv out: the strategy's net PnL was -160.56, the run's -154.04 (the
    5 payments, 6.51 received, in no row)."""
    _, metrics, out = run_backtest(CONFIG, tmp_path / "a")
    (written,) = [r for r in _rows(out / "attribution.csv") if r["instrument"] == "ALL"]
    (out / "attribution.csv").unlink()
    rebuilt = load_run(out).attribution
    (total,) = rebuilt[rebuilt["instrument"] == "ALL"].to_dict("records")
    assert total["funding"] == pytest.approx(metrics["funding_paid"], rel=1e-12) and metrics["funding_paid"] != 0.0
    assert total["funding"] == pytest.approx(float(written["funding"]), rel=1e-12)
    assert total["net_pnl"] == pytest.approx(metrics["final_equity"] - metrics["initial_cash"], rel=1e-9)


def test_a_strategy_refusing_its_params_is_refused_before_the_mark_and_funding_files_are_read(tmp_path: Path) -> None:
    """A backtest read its ``data.marks`` and ``data.funding`` files whole before it built the strategy, so what a
    strategy refuses when it is built (EdgeGated without a model: 'give an edge source or params.model') came only
    after them: here a damaged mark file was reported instead (exit 3). The strategy is now built first."""
    from tradebus.data.perpetual import read_mark_prices
    from tradebus.errors import DataError

    config = yaml.safe_load(CONFIG.read_text())
    marks = pd.read_feather(REPO / "tests" / "fixtures" / "perpetual" / "XRP_USDT_USDT-1h-mark.feather")
    marks.loc[5, "open"] = -1.0  # a mark price below zero: bad data, named when the file is read
    damaged = tmp_path / "marks.feather"
    marks.to_feather(damaged)
    with pytest.raises(DataError, match="must be > 0"):
        read_mark_prices(damaged, "XRPUSDT.BINANCE")
    for entry in ("sources", "funding"):
        for item in config["data"][entry]:
            item["file"] = str((CONFIG.parent / item["file"]).resolve())
    config["data"]["marks"][0]["file"] = str(damaged)
    config["strategy"] = {
        "name": "tradebus.research.edge_strategy:EdgeGated", "instruments": ["XRPUSDT.BINANCE"],
        "params": {"features": [{"name": "atr", "kind": "atr", "params": {"window": 14}},
                                {"name": "r1", "kind": "log_ret", "input": "close"},
                                {"name": "vol", "kind": "ewm_std", "params": {"span": 48}, "input": "r1"}]},
    }
    path = tmp_path / "edge.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError, match=r"give an edge source or params\.model"):
        run_backtest(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_buy_and_hold_of_a_perpetual_priced_first_by_a_mark_starts_at_that_mark(tmp_path: Path) -> None:
    """The shipped run on its bars from 07:00 on (a copy of the file cut there): the 06:00 mark (the open of the
    file's 06:00 mark bar, 1.20932) values XRPUSDT an hour before its first bar, but no first price was recorded for
    a mark, so prices.csv (and buy & hold) began at the first equity sample's mark, the 07:00 one (1.21431). Now they
    begin at the first mark, read from the mark file with pandas."""
    fixtures = REPO / "tests" / "fixtures" / "perpetual"
    bars = pd.read_parquet(fixtures / "XRP_USDT_USDT-5m-futures.parquet")
    later = tmp_path / "XRP_USDT_USDT-5m-futures.parquet"
    bars.loc[bars["date"] >= pd.Timestamp("2021-11-15T07:00:00Z")].reset_index(drop=True).to_parquet(later)
    _, _, out = run_backtest(CONFIG, tmp_path / "a", overrides=[f"data.sources.0.file={later}"])
    marks = pd.read_feather(fixtures / "XRP_USDT_USDT-1h-mark.feather")
    first_mark = marks.iloc[0]
    assert first_mark["date"] == pd.Timestamp("2021-11-15T06:00:00Z")  # the run's start, an hour before its bars
    prices = pd.read_csv(out / "prices.csv")
    xrp = prices.loc[prices["instrument"] == "XRPUSDT.BINANCE"]
    assert (xrp["ts"].iloc[0], xrp["price"].iloc[0]) == (first_mark["date"].value, first_mark["open"])
    _, each = buy_and_hold(load_run(out))
    assert each["XRPUSDT.BINANCE"] == pytest.approx(xrp["price"].iloc[-1] / first_mark["open"] - 1.0, rel=1e-12)
