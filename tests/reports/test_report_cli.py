"""`tradebus report`: the tearsheet of a run directory, a comparison, and clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tradebus.cli import app
from tradebus.engine.kernel import EquitySample, FillRecord, RunResult
from tradebus.errors import ConfigError
from tradebus.reports.compare import write_compare
from tradebus.reports.metrics import compute_metrics
from tradebus.reports.rundata import load_run
from tradebus.reports.tearsheet import write_tearsheet
from tradebus.reports.writers import INCOMPLETE_MARKER, RunDirectory, write_run

S = 1_000_000_000


def _run_dir(path: Path, exit_price: float, interest: float = 0.0) -> Path:
    fills = [FillRecord(0, "X.SIM", "BUY", 1.0, 100.0, 0.1, "TAKER", "a", "s", "1", "in"),
             FillRecord(60 * S, "X.SIM", "SELL", 1.0, exit_price, 0.1, "TAKER", "b", "s", "2", "out")]
    end = 1000.0 + exit_price - 100.2 - interest
    equity = [EquitySample(0, 1000.0, 900.0, 100.0, 0.0, 0.0, 0.1, marks=(100.0,)),
              EquitySample(60 * S, end, end, 0.0, exit_price - 100.0, 0.0, 0.2, interest_paid=interest,
                           marks=(exit_price,))]
    result = RunResult(("X.SIM",), 1000.0, 0, 60 * S, 0, 60 * S, fills=fills, equity=equity)
    with RunDirectory(path, "backtest") as run_dir:
        write_run(run_dir, result, compute_metrics(result), "instruments: [{tick_size: 0.01}]\n")
    return path


def invoke(*args: str) -> object:
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def test_report_writes_the_tearsheet_and_compare_writes_its_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = _run_dir(tmp_path / "a", 110.0), _run_dir(tmp_path / "b", 105.0)
    result = invoke("report", str(a))
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    assert 'data-metric="total_return"' in (a / "tearsheet.html").read_text()
    monkeypatch.chdir(tmp_path)
    result = invoke("report", "compare", str(a), str(b))
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    page = (tmp_path / "compare-a-vs-b.html").read_text()
    assert "1 only in A, 1 only in B" in page and "110.0" in page and "105.0" in page
    again = invoke("report", "compare", str(a), str(b))
    assert again.exit_code == 2 and "exists" in again.output  # type: ignore[attr-defined]


def test_a_run_written_before_trades_csv_still_reports(tmp_path: Path) -> None:
    a = _run_dir(tmp_path / "a", 110.0)
    (a / "trades.csv").unlink()
    (a / "prices.csv").unlink()
    assert invoke("report", str(a)).exit_code == 0  # type: ignore[attr-defined]
    assert "<td>LONG</td><td>1</td>" in (a / "tearsheet.html").read_text()  # the trade matched from fills.csv


def test_the_costs_chart_shows_the_interest_paid(tmp_path: Path) -> None:
    a = _run_dir(tmp_path / "a", 110.0, interest=0.75)
    assert invoke("report", str(a)).exit_code == 0  # type: ignore[attr-defined]
    page = (a / "tearsheet.html").read_text()
    assert "Fees and interest over time" in page and "interest paid (cumulative)" in page
    assert "funding paid" not in page  # a column of zeros is not drawn


def test_a_run_written_before_equity_csv_had_interest_paid_still_reports(tmp_path: Path) -> None:
    a = _run_dir(tmp_path / "a", 110.0)
    lines = (a / "equity.csv").read_text().splitlines()
    assert lines[0].endswith(",drawdown,interest_paid")
    (a / "equity.csv").write_text("".join(line.rsplit(",", 1)[0] + "\n" for line in lines))
    result = invoke("report", str(a))
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    page = (a / "tearsheet.html").read_text()
    assert "Fees over time" in page and "interest paid" not in page


def test_trades_matched_from_fills_count_the_config_instruments_contract_size(tmp_path: Path) -> None:
    a = _run_dir(tmp_path / "a", 110.0)
    (a / "trades.csv").unlink()
    (a / "config.yaml").write_text("instruments: [{venue: SIM, symbol: X, kind: perpetual, contract_size: 0.01}]\n")
    (trade,) = load_run(a).trades.itertuples()
    assert trade.pnl == pytest.approx(0.1)  # 1 contract of 0.01 from 100 to 110


@pytest.mark.parametrize("rebuilt", ["trades.csv", "attribution.csv"])
def test_a_config_yaml_instrument_with_a_bad_value_is_a_clear_error_when_the_report_rebuilds_from_fills(
    tmp_path: Path, rebuilt: str
) -> None:
    """Rebuilding trades.csv from fills.csv read contract_size with float(): 'ten' was a ValueError traceback."""
    a = _run_dir(tmp_path / "a", 110.0)
    (a / rebuilt).unlink()
    (a / "config.yaml").write_text("instruments: [{venue: SIM, symbol: X, kind: perpetual, contract_size: ten}]\n")
    result = invoke("report", str(a))
    assert result.exit_code == 2, result.output  # type: ignore[attr-defined]
    assert f"{a / 'config.yaml'}: instruments.0: Expected `float`, got `str` - at `$.contract_size`" in result.output  # type: ignore[attr-defined]
    assert not (a / "tearsheet.html").exists()


@pytest.mark.parametrize(
    ("stress", "message"),
    [
        ('{"variant": "x"}', "expected a list"),
        ('[{"variant": "x", "total_return": 0.1}]', "item 0 needs the keys"),
        ('[{"variant": "x", "total_return": "high", "sharpe": 1.0, "max_drawdown": 0.1, "fills": 3}]',
         "total_return must be a float"),
        ('[{"variant": "x", "total_return": 0.1, "sharpe": 1.0, "max_drawdown": 0.1, "fills": 3, "note": 7}]',
         "item 0: note must be a str"),
        ("[oops", "not valid JSON"),
    ],
)
def test_a_malformed_stress_json_is_refused_naming_the_file(tmp_path: Path, stress: str, message: str) -> None:
    a = _run_dir(tmp_path / "a", 110.0)
    (a / "stress.json").write_text(stress)
    result = invoke("report", str(a))
    assert result.exit_code == 2 and message in result.output and "stress.json" in result.output  # type: ignore[attr-defined]
    assert not (a / "tearsheet.html").exists()


def test_not_a_run_directory_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = invoke("report", str(tmp_path / "empty"))
    assert result.exit_code == 2 and "not a run directory (no metrics.json)" in result.output  # type: ignore[attr-defined]
    result = invoke("report", "a", "b")
    assert result.exit_code == 2 and "compare RUN_A RUN_B" in result.output  # type: ignore[attr-defined]


def test_report_out_refuses_an_existing_file_unless_force(tmp_path: Path) -> None:
    a = _run_dir(tmp_path / "a", 110.0)
    notes = tmp_path / "notes.html"
    notes.write_text("my notes")
    result = invoke("report", str(a), "--out", str(notes))
    assert result.exit_code == 2 and f"{notes} exists" in result.output  # type: ignore[attr-defined]
    assert notes.read_text() == "my notes"
    assert invoke("report", str(a), "--out", str(notes), "--force").exit_code == 0  # type: ignore[attr-defined]
    assert 'data-metric="total_return"' in notes.read_text()
    # the run's own tearsheet is rewritten without --force, named by --out or not
    for args in ([], ["--out", str(a / "tearsheet.html")], []):
        assert invoke("report", str(a), *args).exit_code == 0  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", ["metrics.json", "fills.csv", "config.yaml", "node.json", "stress.json"])
@pytest.mark.parametrize("force", [[], ["--force"]])
def test_report_out_refuses_a_file_of_the_run_reported_or_compared(tmp_path: Path, name: str,
                                                                   force: list[str]) -> None:
    """`report RUN --out RUN/metrics.json --force` replaced the run's metrics.json with the page."""
    a, b = _run_dir(tmp_path / "a", 110.0), _run_dir(tmp_path / "b", 105.0)
    before = {p: p.read_bytes() for run in (a, b) for p in run.iterdir()}
    calls = [("report", str(a), "--out", str(a / name)),
             ("report", str(a), "--out", str(tmp_path / "b" / ".." / "a" / name)),
             ("report", "compare", str(a), str(b), "--out", str(b / name)),
             ("report", "compare", str(a), str(b), "--out", str(a / "tearsheet.html"))]
    for call in calls:
        result = invoke(*call, *force)
        out = Path(call[-1])
        assert result.exit_code == 2, result.output  # type: ignore[attr-defined]
        assert f"{out}: is the {out.name} of the run directory" in result.output  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="is the metrics.json of the run directory"):
        write_tearsheet(a, a / "metrics.json")
    with pytest.raises(ConfigError, match="is the tearsheet.html of the run directory"):
        write_compare(a, b, b / "tearsheet.html")
    assert {p: p.read_bytes() for run in (a, b) for p in run.iterdir()} == before


@pytest.mark.parametrize("where", ["missing_dir", "a_directory"])
def test_screenshot_path_that_cannot_be_written_exits_2_before_any_page_is_written(tmp_path: Path, where: str) -> None:
    a = _run_dir(tmp_path / "a", 110.0)
    png = tmp_path / "no-such-dir" / "page.png" if where == "missing_dir" else tmp_path
    result = invoke("report", str(a), "--screenshot", str(png))
    assert result.exit_code == 2, result.output  # type: ignore[attr-defined]
    assert f"--screenshot {png}" in " ".join(result.output.split())  # type: ignore[attr-defined]
    assert not (a / "tearsheet.html").exists()


def test_a_run_directory_with_the_incomplete_marker_is_refused_not_reported_with_stale_metrics(tmp_path: Path) -> None:
    # a restarted paper daemon killed while running: metrics.json is from its earlier stop, fills.csv from now
    a = _run_dir(tmp_path / "a", 110.0)
    (a / INCOMPLETE_MARKER).write_text("a tradebus daemon is writing its outputs here\n")
    b = _run_dir(tmp_path / "b", 105.0)
    result = invoke("report", str(a))
    assert result.exit_code == 2, result.output  # type: ignore[attr-defined]
    assert "incomplete" in result.output and INCOMPLETE_MARKER in result.output  # type: ignore[attr-defined]
    assert not (a / "tearsheet.html").exists()
    compared = invoke("report", "compare", str(b), str(a), "--out", str(tmp_path / "c.html"))
    assert compared.exit_code == 2 and not (tmp_path / "c.html").exists()  # type: ignore[attr-defined]


def _garble(run: Path, name: str, edit: str) -> None:
    path = run / name
    rows = [line.split(",") for line in path.read_text().splitlines()]
    if edit == "drop_column":  # equity.csv keeps ts, time and equity; the others lose their first column (trades.csv
        # its first two: a file without its first, strategy_id, is one written before that column, read as such)
        rows = [row[:3] if name == "equity.csv" else row[2:] if name == "trades.csv" else row[1:] for row in rows]
    elif edit == "text_in_drawdown":
        rows[1][rows[0].index("drawdown")] = "deep"
    else:  # text in the first (time) column of the first row
        rows[1][0] = "abc"
    path.write_text("".join(",".join(row) + "\n" for row in rows))


@pytest.mark.parametrize(
    ("name", "edit", "message"),
    [
        ("equity.csv", "text_in_number", "equity.csv: line 2: ts 'abc' is not an integer"),
        ("equity.csv", "drop_column", "equity.csv: missing column(s) position_value, fees_paid"),
        ("equity.csv", "text_in_drawdown", "equity.csv: line 2: drawdown 'deep' is not a number"),
        ("fills.csv", "text_in_number", "fills.csv: line 2: ts_event 'abc' is not an integer"),
        ("fills.csv", "drop_column", "fills.csv: missing column(s) ts_event"),
        ("trades.csv", "drop_column", "trades.csv: missing column(s) instrument"),
        ("prices.csv", "text_in_number", "prices.csv: line 2: ts 'abc' is not an integer"),
    ],
)
def test_a_garbled_run_file_is_a_clear_error_naming_file_line_and_column(
    tmp_path: Path, name: str, edit: str, message: str
) -> None:
    a = _run_dir(tmp_path / "a", 110.0)
    _garble(a, name, edit)
    result = invoke("report", str(a))
    assert result.exit_code == 2, result.output  # type: ignore[attr-defined]
    assert f"{a / name}" in result.output and message in result.output  # type: ignore[attr-defined]
    assert not (a / "tearsheet.html").exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [("[1, 2]", "metrics.json: expected a JSON object, not a list"),
     ('{"initial_cash": "x"}', "metrics.json: initial_cash must be a number, not 'x'"),
     ('{"instruments": "X.SIM"}', "metrics.json: instruments must be a list of names, not 'X.SIM'"),
     ('{"null_reasons": [1]}', "metrics.json: null_reasons must be an object, not [1]")],
)
def test_a_malformed_metrics_json_is_a_clear_error(tmp_path: Path, text: str, message: str) -> None:
    a = _run_dir(tmp_path / "a", 110.0)
    (a / "metrics.json").write_text(text)
    result = invoke("report", str(a))
    assert result.exit_code == 2 and message in result.output, result.output  # type: ignore[attr-defined]


def test_replay_report_writes_the_tearsheet_of_the_replay(tmp_path: Path) -> None:
    # The README lists `tearsheet.html with --report` among what backtest, paper and replay write;
    # `tradebus replay ... --report` was refused: "No such option: --report" (exit 2).
    repo = Path(__file__).resolve().parents[2]
    out = tmp_path / "replay"
    recording = repo / "tests" / "fixtures" / "binance" / "spot_btcusdt_20240808_head4000.gz"
    args = ["replay", str(recording), "--config", str(repo / "configs" / "paper_local.yaml"), "--out", str(out), "--report"]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    page = (out / "tearsheet.html").read_text(encoding="utf-8")
    assert metrics["fills"] > 0 and f'data-metric="fills">{metrics["fills"]:,}<' in page


@pytest.mark.parametrize("trades_csv", [True, False])
def test_a_run_whose_fills_have_no_reason_reports_them_as_text(tmp_path: Path, trades_csv: bool) -> None:
    """Fills recovered from a journal carry no reason: pandas read the empty column as float NaN and
    filling it with '' warned (Pandas4Warning: it will raise) in `paper`'s summary and `tradebus report`."""
    fills = [FillRecord(0, "X.SIM", "BUY", 1.0, 100.0, 0.1, "TAKER", "a", "s", "1", ""),
             FillRecord(60 * S, "X.SIM", "SELL", 1.0, 110.0, 0.1, "TAKER", "b", "s", "2", "")]
    equity = [EquitySample(0, 1000.0, 900.0, 100.0, 0.0, 0.0, 0.1, marks=(100.0,)),
              EquitySample(60 * S, 1009.8, 1009.8, 0.0, 10.0, 0.0, 0.2, marks=(110.0,))]
    result = RunResult(("X.SIM",), 1000.0, 0, 60 * S, 0, 60 * S, fills=fills, equity=equity)
    with RunDirectory(tmp_path / "run", "backtest") as run_dir:
        write_run(run_dir, result, compute_metrics(result), "instruments: [{tick_size: 0.01}]\n")
    run_dir.close()  # the run is over: it releases its directory (as the commands do) for the report
    if not trades_csv:
        (tmp_path / "run" / "trades.csv").unlink()
    run = load_run(tmp_path / "run")  # filterwarnings = error
    assert run.fills["reason"].tolist() == ["", ""]
    assert run.trades["entry_reason"].tolist() == [""] and run.trades["exit_reason"].tolist() == [""]
    assert invoke("report", str(tmp_path / "run")).exit_code == 0  # type: ignore[attr-defined]


def test_a_run_whose_config_yaml_is_binary_is_a_clear_error(tmp_path: Path) -> None:
    a = _run_dir(tmp_path / "a", 110.0)
    (a / "config.yaml").write_bytes(b"\x00\xf6\xff" * 8)
    result = invoke("report", str(a))
    assert result.exit_code == 2  # type: ignore[attr-defined]
    assert f"{a / 'config.yaml'}: cannot read run config: not UTF-8 text" in result.output  # type: ignore[attr-defined]
    assert not (a / "tearsheet.html").exists()


@pytest.mark.skipif(not Path("/proc/locks").exists(), reason="the holder is read from Linux's /proc/locks")
def test_a_run_directory_a_running_backtest_holds_is_refused_and_its_page_left_to_that_run(tmp_path: Path) -> None:
    out = _run_dir(tmp_path / "run", 110.0)
    rerun = RunDirectory(out, "backtest")  # a backtest rerun into the directory: held until it has written its outputs
    result = invoke("report", str(out))
    assert result.exit_code == 2, result.output  # type: ignore[attr-defined]
    assert f"output directory {out} is in use by another running tradebus run" in " ".join(result.output.split())  # type: ignore[attr-defined]
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".") or p.name == "tearsheet.html") == []
    rerun.close()
    assert invoke("report", str(out)).exit_code == 0  # type: ignore[attr-defined]
    assert 'data-metric="total_return"' in (out / "tearsheet.html").read_text()


@pytest.mark.skipif(not Path("/proc/locks").exists(), reason="the holder is read from Linux's /proc/locks")
@pytest.mark.parametrize("command", ["report", "compare"])
def test_a_page_written_into_a_directory_a_running_backtest_holds_is_refused(tmp_path: Path, command: str) -> None:
    a, b = _run_dir(tmp_path / "a", 110.0), _run_dir(tmp_path / "b", 105.0)
    busy = _run_dir(tmp_path / "busy", 120.0)
    page = busy / "page.html"
    rerun = RunDirectory(busy, "backtest", force=True)  # a backtest rerun into it: held until it has written its outputs
    args = ["report", str(a)] if command == "report" else ["report", "compare", str(a), str(b)]
    result = invoke(*args, "--out", str(page))
    assert result.exit_code == 2, result.output  # type: ignore[attr-defined]
    assert f"output directory {busy} is in use by another running tradebus run" in " ".join(result.output.split())  # type: ignore[attr-defined]
    assert sorted(p.name for p in busy.iterdir() if p.name.startswith(".") or p.suffix == ".html") == []
    rerun.close()
    assert invoke(*args, "--out", str(page)).exit_code == 0  # type: ignore[attr-defined]
    assert page.is_file()


@pytest.mark.skipif(not Path("/proc/locks").exists(), reason="the holder is read from Linux's /proc/locks")
def test_compare_refuses_a_run_a_running_backtest_is_rewriting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = _run_dir(tmp_path / "a", 110.0), _run_dir(tmp_path / "b", 105.0)
    monkeypatch.chdir(tmp_path)
    rerun = RunDirectory(b, "backtest")  # its files are about to be replaced: a page would mix the old and new run
    result = invoke("report", "compare", str(a), str(b))
    assert result.exit_code == 2, result.output  # type: ignore[attr-defined]
    assert f"output directory {b} is in use by another running tradebus run" in " ".join(result.output.split())  # type: ignore[attr-defined]
    assert not (tmp_path / "compare-a-vs-b.html").exists()
    rerun.close()


def test_a_page_written_into_a_directory_the_report_reads_is_held_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a = _run_dir(tmp_path / "a", 110.0)
    assert invoke("report", str(a), "--out", str(a / "copy.html")).exit_code == 0  # type: ignore[attr-defined]
    monkeypatch.chdir(a)
    result = invoke("report", "compare", ".", str(a))  # one directory under two names, and the page's too
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    assert (a / "copy.html").is_file() and len(list(a.glob("compare-*-vs-a.html"))) == 1


@pytest.mark.skipif(not Path("/proc/locks").exists(), reason="the holder is read from Linux's /proc/locks")
@pytest.mark.parametrize("command", ["report", "compare"])
def test_a_screenshot_saved_into_a_directory_a_running_backtest_holds_is_refused(tmp_path: Path, command: str) -> None:
    """--screenshot busy/page.png was written straight into a directory a backtest rerun held (the page's own
    directory was held, the PNG's not): the run could remove or replace it mid-write. Now refused, exit 2, nothing
    written there; once the run is done the PNG is written through a temporary that does not stay."""
    a, b = _run_dir(tmp_path / "a", 110.0), _run_dir(tmp_path / "b", 105.0)
    busy = _run_dir(tmp_path / "busy", 120.0)
    png = busy / "page.png"
    rerun = RunDirectory(busy, "backtest", force=True)  # a backtest rerun into it: held until it has written its outputs
    args = ["report", str(a)] if command == "report" else ["report", "compare", str(a), str(b), "--out",
                                                            str(tmp_path / "page.html")]
    result = invoke(*args, "--screenshot", str(png))
    assert result.exit_code == 2, result.output  # type: ignore[attr-defined]
    said = " ".join(result.output.split())  # type: ignore[attr-defined]
    assert f"output directory {busy} is in use by another running tradebus run" in said
    assert "choose another --screenshot" in said
    assert sorted(p.name for p in busy.iterdir() if p.name.startswith(".") or p.suffix == ".png") == []
    rerun.close()
    result = invoke(*args, "--screenshot", str(png))
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in busy.iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize("command", ["report", "compare"])
def test_a_screenshot_over_one_of_the_run_files_is_refused_before_anything_is_written(tmp_path: Path,
                                                                                      command: str) -> None:
    """report a --screenshot a/metrics.json replaced the run's metrics with the PNG (--out was refused there,
    --screenshot not): now exit 2 naming it, every file of the runs as it was, no page written."""
    a, b = _run_dir(tmp_path / "a", 110.0), _run_dir(tmp_path / "b", 105.0)
    before = {p: p.read_bytes() for run in (a, b) for p in run.iterdir()}
    args = ["report", str(a)] if command == "report" else ["report", "compare", str(a), str(b), "--out",
                                                            str(tmp_path / "page.html")]
    for png in (a / "metrics.json", b / "fills.csv", a / "tearsheet.html"):
        if command == "report" and png.parent == b:
            continue
        result = invoke(*args, "--screenshot", str(png))
        assert result.exit_code == 2, result.output  # type: ignore[attr-defined]
        said = " ".join(result.output.split())  # type: ignore[attr-defined]
        assert f"--screenshot {png}: is the {png.name} of the run directory" in said
    assert {p: p.read_bytes() for run in (a, b) for p in run.iterdir()} == before
    assert not (tmp_path / "page.html").exists()


@pytest.mark.parametrize("command", ["report", "compare", "compare-default"])
def test_a_screenshot_over_the_page_itself_is_refused_before_anything_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    """report a --out page.html --screenshot page.html wrote the page, then the PNG over it, exit 0: the page the
    user asked for was gone (and the compare's default page the same). Now exit 2 naming both, nothing written."""
    a, b = _run_dir(tmp_path / "a", 110.0), _run_dir(tmp_path / "b", 105.0)
    monkeypatch.chdir(tmp_path)
    page = tmp_path / "page.html"
    if command == "report":
        args, png = ["report", str(a), "--out", str(page)], page
    elif command == "compare":
        args, png = ["report", "compare", str(a), str(b), "--out", "page.html"], Path("sub/../page.html")
        (tmp_path / "sub").mkdir()
    else:
        args, png = ["report", "compare", str(a), str(b)], tmp_path / "compare-a-vs-b.html"
    result = invoke(*args, "--screenshot", str(png))
    assert result.exit_code == 2, result.output  # type: ignore[attr-defined]
    said = " ".join(result.output.split())  # type: ignore[attr-defined]
    assert f"--screenshot {png}: is the page itself" in said
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"] + (["sub"] if command == "compare" else [])


_ANOTHER_REPORT = """
import sys
from pathlib import Path

from tradebus.reports.cli import _holding

with _holding([Path(sys.argv[1]), Path(sys.argv[2])], Path(sys.argv[3])):
    print("holding", flush=True)
    sys.stdin.readline()
"""


def test_reports_of_the_same_runs_at_the_same_time_are_not_refused_a_backtest_still_is(tmp_path: Path) -> None:
    """tradebus report compare base v1 and report compare base v2 run at once (a loop of compares against one
    baseline, in parallel): the second was refused, exit 2, "output directory base is in use by another running
    tradebus run (pid ...: ... report compare ...)", as each report held what it read exclusively. A report holds
    them shared now: another report reads and writes beside it, a backtest rerun is still refused."""
    base, v1, v2 = (_run_dir(tmp_path / name, px) for name, px in (("base", 110.0), ("v1", 105.0), ("v2", 120.0)))
    other = subprocess.Popen(  # another report, stopped while it holds base and v1 and the page's folder
        [sys.executable, "-c", _ANOTHER_REPORT, str(base), str(v1), str(tmp_path / "v1-vs-base.html")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        assert other.stdout is not None and other.stdout.readline() == "holding\n"
        result = invoke("report", "compare", str(base), str(v2), "--out", str(tmp_path / "v2-vs-base.html"))
        assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
        assert "1 only in A, 1 only in B" in (tmp_path / "v2-vs-base.html").read_text()
        assert invoke("report", str(v1)).exit_code == 0  # type: ignore[attr-defined]
        with pytest.raises(ConfigError, match=f"output directory {base} is in use by a running tradebus report"):
            RunDirectory(base, "backtest", force=True)
    finally:
        assert other.stdin is not None
        other.communicate("\n", timeout=60)
    assert other.returncode == 0


@pytest.mark.parametrize("command", ["report", "compare"])
def test_a_screenshot_over_an_existing_file_is_refused_unless_force(tmp_path: Path, command: str) -> None:
    """report a --screenshot shot.png replaced an existing shot.png without --force, exit 0, where --out over an
    existing page is refused: now exit 2 naming it, nothing written (no page either); --force replaces it."""
    a, b = _run_dir(tmp_path / "a", 110.0), _run_dir(tmp_path / "b", 105.0)
    page = tmp_path / "page.html"
    png = tmp_path / "shot.png"
    png.write_bytes(b"my picture")
    args = ["report", str(a), "--out", str(page)] if command == "report" else [
        "report", "compare", str(a), str(b), "--out", str(page)]
    result = invoke(*args, "--screenshot", str(png))
    assert result.exit_code == 2, result.output  # type: ignore[attr-defined]
    said = " ".join(result.output.split())  # type: ignore[attr-defined]
    assert f"--screenshot {png}: exists; choose another --screenshot or pass --force to replace it" in said
    assert png.read_bytes() == b"my picture" and not page.exists()
    result = invoke(*args, "--screenshot", str(png), "--force")
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and page.is_file()


@pytest.mark.skipif(not Path("/proc/locks").exists(), reason="the holder is read from Linux's /proc/locks")
def test_a_run_refused_by_a_report_is_told_the_report_reads_there_not_that_it_writes_its_outputs(
    tmp_path: Path,
) -> None:
    """A backtest rerun into base while report compare base v1 read it was refused as 'in use by another running
    tradebus run (pid N: ... report ...): it writes its outputs there', though the report only read it. It is now
    told a report reads there (naming its pid); a run holding the directory is still said to write there."""
    base, v1 = _run_dir(tmp_path / "base", 110.0), _run_dir(tmp_path / "v1", 105.0)
    other = subprocess.Popen(  # a report, stopped while it holds base and v1 and the page's folder
        [sys.executable, "-c", _ANOTHER_REPORT, str(base), str(v1), str(tmp_path / "v1-vs-base.html")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        assert other.stdout is not None and other.stdout.readline() == "holding\n"
        with pytest.raises(ConfigError) as refused:
            RunDirectory(base, "backtest", force=True)
        said = str(refused.value)
        assert f"output directory {base} is in use by a running tradebus report (pid {other.pid} on " in said
        assert "it reads the files there, or writes its page there" in said and "writes its outputs" not in said
    finally:
        assert other.stdin is not None
        other.communicate("\n", timeout=60)
    assert other.returncode == 0
    rerun = RunDirectory(base, "backtest", force=True)
    try:
        with pytest.raises(ConfigError, match=f"output directory {base} is in use by another running tradebus run "
                                              rf"\(pid {os.getpid()} on .*\): it writes its outputs there"):
            RunDirectory(base, "backtest", force=True)
    finally:
        rerun.close()


@pytest.mark.parametrize("name", ["fills.csv", "equity.csv", "trades.csv", "prices.csv"])
@pytest.mark.parametrize("command", ["report", "compare"])
def test_a_run_file_cut_short_is_refused_naming_it_and_nothing_is_written(tmp_path: Path, name: str,
                                                                         command: str) -> None:
    """A run's fills.csv cut mid-row (a copy or a crash stopped while writing it: its last fill '60000000000,
    ...,X.SIM,SE') was reported and compared, exit 0, its last row read with no quantity or price. Every row a
    run writes ends with a newline: a file that does not is now refused, exit 2 naming it, no page written."""
    a, b = _run_dir(tmp_path / "a", 110.0), _run_dir(tmp_path / "b", 105.0)
    cut = a / name
    text = cut.read_bytes()
    cut.write_bytes(text[: text.rindex(b"\n", 0, len(text) - 1) + 12])  # the last row's first 11 characters
    page = tmp_path / "page.html"
    args = ["report", str(a)] if command == "report" else ["report", "compare", str(b), str(a)]
    result = invoke(*args, "--out", str(page))
    assert result.exit_code == 2, result.output  # type: ignore[attr-defined]
    said = " ".join(result.output.split())  # type: ignore[attr-defined]
    assert f"{cut}: ends in the middle of a row (the file was cut short" in said
    assert not page.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]


_A_RUN_HOLDING = """
import sys

from tradebus.reports.writers import RunDirectory

held = RunDirectory(sys.argv[1], "backtest", force=True)
print("holding", flush=True)
sys.stdin.readline()
"""


def test_a_run_whose_holder_ends_while_it_is_told_apart_from_a_report_takes_the_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backtest refused by another backtest holding runs/base, the holder ending right then (between the refused
    lock and the try of a shared one that tells a report from a run), was refused as 'in use by a running tradebus
    report (pid N ...: ... RunDirectory ...): it reads the files there', though no report ran and the directory was
    free by then. It now takes the directory."""
    import tradebus.reports.writers as writers

    base = _run_dir(tmp_path / "base", 110.0)
    other = subprocess.Popen(  # another run holding base until told to end
        [sys.executable, "-c", _A_RUN_HOLDING, str(base)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    tried = []

    def holder_ends_first(fd: int) -> bool:
        if not tried:
            other.communicate("\n", timeout=60)
        tried.append(fd)
        return writers_held_shared(fd)

    from tradebus.locks import held_shared as writers_held_shared

    monkeypatch.setattr(writers, "held_shared", holder_ends_first)
    try:
        assert other.stdout is not None and other.stdout.readline() == "holding\n"
        rerun = RunDirectory(base, "backtest", force=True)
    finally:
        if other.poll() is None:
            other.communicate("\n", timeout=60)
    assert other.returncode == 0 and len(tried) == 1  # it was refused first, its holder ending then
    try:
        with pytest.raises(ConfigError, match=f"output directory {base} is in use by another running tradebus run "
                                              rf"\(pid {os.getpid()} on .*\): it writes its outputs there"):
            RunDirectory(base, "backtest", force=True)  # held by the rerun
    finally:
        rerun.close()


def test_report_of_the_current_directory_titles_the_page_with_its_name(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """`tradebus report .` titled the page 'tradebus tearsheet: ' (the name of '.' is empty), and compare 'A: '."""
    a, b = _run_dir(tmp_path / "run-a", 110.0), _run_dir(tmp_path / "b", 105.0)
    monkeypatch.chdir(a)
    assert invoke("report", ".").exit_code == 0  # type: ignore[attr-defined]
    assert "<title>tradebus tearsheet: run-a</title>" in (a / "tearsheet.html").read_text()
    assert invoke("report", "compare", ".", str(b), "--out", str(tmp_path / "c.html")).exit_code == 0  # type: ignore[attr-defined]
    assert "<title>tradebus compare: run-a vs b</title>" in (tmp_path / "c.html").read_text()


def test_a_run_whose_config_yaml_was_cut_short_is_refused_naming_it(tmp_path: Path) -> None:
    """A config.yaml cut after its risk section (a copy stopped mid-way) still gave a page, as if whole."""
    from tradebus.config.load import dump_config, load_config

    text = dump_config(load_config(Path(__file__).resolve().parents[2] / "configs" / "quickstart.yaml"))
    a = _run_dir(tmp_path / "a", 110.0)
    (a / "config.yaml").write_text(text)
    assert invoke("report", str(a)).exit_code == 0  # type: ignore[attr-defined]
    lines = text.splitlines(keepends=True)
    risk = next(n for n, line in enumerate(lines) if line.startswith("risk:"))
    cuts = {"ends before the run config's data (backtest) or feeds (daemon)": "".join(lines[:risk + 3]),
            "does not end in a newline": text[:text.index("initial_cash: ") + len("initial_cash: 10")] + "\n" + "data:",
            "is no mapping of the run config's keys": "- instruments\n"}
    for what, cut in cuts.items():
        (a / "tearsheet.html").unlink(missing_ok=True)
        (a / "config.yaml").write_text(cut)
        result = invoke("report", str(a))
        assert result.exit_code == 2, (what, result.output)  # type: ignore[attr-defined]
        message = " ".join(result.output.split())  # type: ignore[attr-defined]
        assert f"{a / 'config.yaml'}: the run config {what}: the file was cut short" in message, message
        assert not (a / "tearsheet.html").exists()


def _written_config(kind: str) -> str:
    """The resolved config a run of ``kind`` dumps: the quickstart backtest's, or a paper daemon's (feeds, ops)."""
    import yaml

    from tradebus.config.load import dump_config, load_config
    from tradebus.node.config import dump_paper_config, parse_paper_config

    configs = Path(__file__).resolve().parents[2] / "configs"
    if kind == "backtest":
        return dump_config(load_config(configs / "quickstart.yaml"))
    data = {**yaml.safe_load((configs / "paper_binance.yaml").read_text()), "ops": {"port": 0}}
    return dump_paper_config(parse_paper_config(data, "<report test>", configs))


@pytest.mark.parametrize("kind", ["backtest", "paper"])
def test_a_config_yaml_cut_at_any_line_or_empty_is_refused_naming_it(tmp_path: Path, kind: str) -> None:
    """A config.yaml cut at a line boundary inside its last section (a backtest's data, a daemon's ops), or empty
    (a copy that created the file and stopped), still gave a page, as if whole (an empty file was read as no
    config); each such cut of a file a run wrote is refused now, exit 2, naming the file."""
    a = tmp_path / "a"
    result = RunResult(("X.SIM",), 1000.0, 0, 60 * S, 0, 60 * S, fills=[], equity=[EquitySample(0, 1000.0, 1000.0,
                       0.0, 0.0, 0.0, 0.0, marks=(100.0,))])  # fmt: skip
    with RunDirectory(a, "backtest") as run_dir:
        write_run(run_dir, result, compute_metrics(result), _written_config(kind))
    run_dir.close()
    whole = (a / "config.yaml").read_text()
    assert load_run(a).config["instruments"]  # the whole file reads
    lines = whole.splitlines(keepends=True)
    last = next(n for n, line in reversed(list(enumerate(lines))) if not line.startswith(("  ", "- ")))
    assert lines[last].startswith("#") and lines[last - 1].startswith(" ")  # the end line, after the last section's
    section = next(n for n in range(last - 1, 0, -1) if not lines[n].startswith((" ", "-")))
    assert lines[section].rstrip() in ("data:", "ops:")
    for end in range(1, last):  # every cut at a line: in the last section, and before it
        (a / "config.yaml").write_text("".join(lines[:end]))
        with pytest.raises(ConfigError, match="the file was cut short"):
            load_run(a)
    for cut in ("".join(lines[: section + 2]), "", "\n"):  # inside the last section, and empty
        (a / "config.yaml").write_text(cut)
        said = invoke("report", str(a))
        assert said.exit_code == 2, (cut, said.output)  # type: ignore[attr-defined]
        message = " ".join(said.output.split())  # type: ignore[attr-defined]
        what = "is empty" if not cut.strip() else "does not end with its last line, '# end of the run config'"
        assert f"{a / 'config.yaml'}: the run config {what}: the file was cut short" in message, message
        assert not (a / "tearsheet.html").exists()


@pytest.mark.parametrize("after", ["\n", "\n\n", " \n", "\t\r\n"], ids=["as-written", "blank-line", "space", "tab-crlf"])
def test_a_whole_config_yaml_with_blank_lines_or_spaces_after_its_last_line_is_read(tmp_path: Path, after: str) -> None:
    """A run's config.yaml a user opened in an editor that left a blank line, or spaces, after its last line
    ('# end of the run config') is whole: it was refused as cut short (exit 2), and is read as written."""
    a = tmp_path / "a"
    result = RunResult(("X.SIM",), 1000.0, 0, 60 * S, 0, 60 * S, fills=[], equity=[EquitySample(0, 1000.0, 1000.0,
                       0.0, 0.0, 0.0, 0.0, marks=(100.0,))])  # fmt: skip
    with RunDirectory(a, "backtest") as run_dir:
        write_run(run_dir, result, compute_metrics(result), _written_config("backtest"))
    run_dir.close()
    whole = (a / "config.yaml").read_text()
    assert whole.endswith("\n# end of the run config\n")
    expected = load_run(a).config
    (a / "config.yaml").write_bytes((whole[:-1] + after).encode())
    assert load_run(a).config == expected
    said = invoke("report", str(a))
    assert said.exit_code == 0, said.output  # type: ignore[attr-defined]


_INTERRUPTED_REPORT = """
import os
import signal
import sys

from tradebus.cli import main


def interrupt(event, args):
    if event == "open" and os.environ["INTERRUPT_AT"] in str(args[0]):
        os.kill(os.getpid(), signal.SIGINT)


sys.addaudithook(interrupt)
main(sys.argv[1:])
"""


@pytest.mark.parametrize("command", ["report", "compare"])
def test_ctrl_c_of_a_report_while_it_writes_the_page_says_no_page_was_written(tmp_path: Path, command: str) -> None:
    """Ctrl-C while the page was written: exit 130 and nothing on stderr. The page an earlier report wrote is left
    whole (the new one goes through a temporary, removed), and the one line says so."""
    a, b = _run_dir(tmp_path / "a", 110.0), _run_dir(tmp_path / "b", 120.0)
    page = a / "tearsheet.html" if command == "report" else tmp_path / "ab.html"
    args = ["report", str(a)] if command == "report" else ["report", "compare", str(a), str(b), "--out", str(page)]
    page.write_text("the earlier page\n")
    proc = subprocess.run(
        [sys.executable, "-c", _INTERRUPTED_REPORT, *args, *(["--force"] if command == "compare" else [])],
        capture_output=True, text=True, check=False, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "INTERRUPT_AT": f".{page.name}.tmp-", "COLUMNS": "1000"},
    )
    assert proc.returncode == 130, proc.stdout + proc.stderr
    assert proc.stderr.splitlines() == [f"report interrupted (Ctrl-C): no page was written ({page} is as it was)"]
    assert page.read_text() == "the earlier page\n"
    assert not [p.name for p in (*a.iterdir(), *tmp_path.iterdir()) if ".tmp-" in p.name]
