"""The comparison page's metrics table (``tradebus report compare``), read from its HTML."""

from __future__ import annotations

import csv
import json
import math
import shutil
from html.parser import HTMLParser
from pathlib import Path

import yaml

from tradebus.cli import run_backtest
from tradebus.reports.compare import render_compare
from tradebus.reports.rundata import load_run

REPO = Path(__file__).resolve().parents[2]
BARS = REPO / "tests" / "fixtures" / "kernel" / "coinbase_btc_usd_4h_2022_1200.csv"


class _MetricsTable(HTMLParser):
    """The rows of the table in ``<section id="metrics">``, as lists of cell texts."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._in_section = self._in_cell = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "section":
            self._in_section = ("id", "metrics") in attrs
        elif self._in_section and tag == "tr":
            self.rows.append([])
        elif self._in_section and tag in ("td", "th"):
            self._in_cell = True
            self.rows[-1].append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "section":
            self._in_section = False
        elif tag in ("td", "th"):
            self._in_cell = False

    def handle_data(self, data: str) -> None:
        if self._in_section and self._in_cell:
            self.rows[-1][-1] += data


def _run(tmp: Path, fast: int) -> Path:
    config = {
        "data": {"sources": [{"instrument": "BTC-USD.COINBASE", "file": str(tmp / "bars.csv")}]},
        "instruments": [{"venue": "COINBASE", "symbol": "BTC-USD", "base": "BTC", "quote": "USD", "tick_size": 0.01,
                         "lot_size": 1.0e-8, "min_notional": 1.0, "maker_fee": 0.004, "taker_fee": 0.006}],
        "strategy": {"name": "ema_cross", "instruments": ["BTC-USD.COINBASE"],
                     "params": {"fast": fast, "slow": 30, "mode": "long_only", "quantity": 0.5}},
        "initial_cash": 100_000.0,
        "report": {"equity_interval": "4h"},
    }
    path = tmp / f"fast{fast}.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    _, _, run_dir = run_backtest(path, tmp / f"run{fast}")
    return run_dir


def test_compare_labels_market_trades_and_round_trips_as_the_summary_does(tmp_path: Path) -> None:
    # Two bar runs: metrics.json "trades" counts the market trades the run saw (0 on bars), the
    # page's own row the round trips of trades.csv. Both rows were labelled "trades", the first
    # showing 0 beside runs of dozens of fills.
    shutil.copy(BARS, tmp_path / "bars.csv")
    a, b = _run(tmp_path, 10), _run(tmp_path, 12)
    parser = _MetricsTable()
    parser.feed(render_compare(load_run(a), load_run(b)))
    rows = {row[0]: row[1:3] for row in parser.rows[1:]}
    assert len(rows) == len(parser.rows) - 1, [row[0] for row in parser.rows]  # no label twice

    def count(run: Path, name: str) -> str:
        with (run / name).open() as handle:
            return f"{sum(1 for _ in csv.DictReader(handle)):,}"

    assert rows["trades"] == [count(a, "trades.csv"), count(b, "trades.csv")]
    assert int(rows["trades"][0]) > 3
    market = [json.loads((run / "metrics.json").read_text())["trades"] for run in (a, b)]
    assert rows["market trades"] == [f"{n:,}" for n in market] == ["0", "0"]


def _edited_copy(run: Path, to: Path, **metrics: float) -> Path:
    shutil.copytree(run, to)
    data = json.loads((to / "metrics.json").read_text())
    data.update(metrics)
    (to / "metrics.json").write_text(json.dumps(data, indent=2), encoding="utf-8")
    return to


def test_compare_marks_only_the_differences_shown(tmp_path: Path) -> None:
    """A metric differing in its last bit was marked ≠ beside two equal texts."""
    shutil.copy(BARS, tmp_path / "bars.csv")
    a = _run(tmp_path, 10)
    metrics = json.loads((a / "metrics.json").read_text())
    fees, sharpe, exposure = metrics["fees_paid"], metrics["sharpe"], metrics["exposure"]
    assert isinstance(sharpe, float) and fees > 0.0
    edge = math.nextafter(0.12345, 0.0)  # 12.34 %, and one bit above it 12.35 %
    a = _edited_copy(a, tmp_path / "a", total_return=edge)
    b = _edited_copy(a, tmp_path / "b", fees_paid=math.nextafter(fees, math.inf),
                     sharpe=math.nextafter(sharpe, -math.inf), total_return=math.nextafter(edge, 1.0),
                     exposure=exposure + 0.0002, final_equity=metrics["final_equity"] + 0.01)
    parser = _MetricsTable()
    parser.feed(render_compare(load_run(a), load_run(b)))
    rows = {row[0]: row[1:] for row in parser.rows[1:]}
    for key in ("fees_paid", "sharpe"):  # 1 ulp apart, shown the same
        assert rows[key][0] == rows[key][1] and rows[key][2] == "", (key, rows[key])
    assert rows["total_return"][0] != rows["total_return"][1] and rows["total_return"][2] == "", rows["total_return"]
    for key in ("exposure (time in market)", "final_equity"):  # a displayed digit apart
        assert rows[key][0] != rows[key][1] and rows[key][2] == "≠", (key, rows[key])
    assert [key for key, row in rows.items() if row[2]] == ["final_equity", "exposure (time in market)"]


def test_compare_lists_the_metrics_in_the_order_of_the_summary_and_the_tearsheet(tmp_path: Path) -> None:
    """The page put trades and buy & hold last, after liquidations, where the summary and the tearsheet show
    them after fills and total_return; it shows round_trips after trades always (the summary only when it is not
    the number of trades)."""
    from tradebus.reports.summary import summary_rows

    shutil.copy(BARS, tmp_path / "bars.csv")
    a, b = _run(tmp_path, 10), _run(tmp_path, 12)
    parser = _MetricsTable()
    parser.feed(render_compare(load_run(a), load_run(b)))
    labels = [row[0] for row in parser.rows[1:]]
    shown = [label for _, label, _ in summary_rows(load_run(a))]
    if "round_trips" not in shown:
        shown.insert(shown.index("trades") + 1, "round_trips")
    assert labels == shown
    assert labels[labels.index("fills"):labels.index("fills") + 3] == ["fills", "trades", "round_trips"]
    assert labels[labels.index("total_return") + 1] == "buy & hold"
