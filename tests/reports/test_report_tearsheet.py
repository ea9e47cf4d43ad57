"""The tearsheet and the comparison page, opened in headless Chromium (Debian's, over DevTools).

Chromium is required: without it these tests fail with the install command (``.ci/run``
installs it). Each page must load with no console error, no page exception and no
request beyond its own file; its screenshot must not be blank; the metrics it shows
must equal ``metrics.json`` to the digits shown.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import empyrical
import pandas as pd
import pytest
import yaml
from PIL import Image

from tradebus.cli import run_backtest
from tradebus.reports.browser import find_chromium, render
from tradebus.reports.compare import write_compare
from tradebus.reports.tearsheet import write_tearsheet

REPO = Path(__file__).resolve().parents[2]
BARS = REPO / "tests" / "fixtures" / "kernel" / "coinbase_btc_usd_4h_2022_1200.csv"
STRESS = [
    {"variant": "base", "total_return": 0.0123, "sharpe": 0.81, "max_drawdown": 0.054, "fills": 40},
    {"variant": "fees x5", "total_return": -0.0456, "sharpe": -1.25, "max_drawdown": 0.102, "fills": 38},
    {"variant": "latency x5", "total_return": 0.0123, "sharpe": 0.81, "max_drawdown": 0.054, "fills": 40,
     "note": "latency x5 changes nothing: the venue's latency is zero (set venue.latency_ns)"},
    {"variant": "costs_x5", "total_return": None, "sharpe": None, "max_drawdown": None, "fills": None,
     "note": "left out: costs x5 makes an invalid config: instruments.0.taker_fee: Input should be less than 0.1"},
]
METRICS_JS = "Object.fromEntries([...document.querySelectorAll('[data-metric]')].map(e => [e.dataset.metric, e.textContent]))"


def _config(tmp: Path, fast: int) -> Path:
    config = {
        "data": {"sources": [{"instrument": "BTC-USD.COINBASE", "file": str(tmp / "bars.csv")}]},
        "instruments": [{"venue": "COINBASE", "symbol": "BTC-USD", "base": "BTC", "quote": "USD", "tick_size": 0.01,
                         "lot_size": 1.0e-8, "min_notional": 1.0, "maker_fee": 0.004, "taker_fee": 0.006,
                         "margin": True}],
        "strategy": {"name": "ema_cross", "instruments": ["BTC-USD.COINBASE"],
                     "params": {"fast": fast, "slow": 30, "mode": "long_short", "quantity": 0.5}},
        "initial_cash": 100_000.0,
        "report": {"equity_interval": "4h"},
    }
    path = tmp / f"fast{fast}.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("tearsheet")
    shutil.copy(BARS, tmp / "bars.csv")
    out = []
    for fast in (10, 12):
        _, _, run_dir = run_backtest(_config(tmp, fast), tmp / f"run{fast}")
        out.append(run_dir)
    (out[0] / "stress.json").write_text(json.dumps(STRESS), encoding="utf-8")
    return out[0], out[1]


def _check_page(rendering: Any, page: Path) -> None:
    assert rendering.errors == [], f"{page}: {rendering.errors}"
    outside = [u for u in rendering.requests if u != page.resolve().as_uri() and not u.startswith(("data:", "blob:"))]
    assert outside == [], f"the page requested {outside}"
    image = Image.open(io.BytesIO(rendering.png)).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 20) or []
    assert len(colours) > 100, "the screenshot is (nearly) blank"
    white = sum(n for n, rgb in colours if min(rgb) >= 245)
    assert white < 0.9 * image.width * image.height, "the screenshot is mostly white"


def _shown_equals(key: str, text: str, value: Any) -> None:
    if value is None:
        assert text.startswith("-"), (key, text)
        return
    if isinstance(value, str | list):
        assert text == (", ".join(value) if isinstance(value, list) else value), (key, text)
        return
    units = {" days": 1.0, " h": 1 / 24, " min": 1 / 1440, " s": 1 / 86_400}  # a span (format_duration), in days
    unit = next((u for u in units if key == "longest_drawdown_days" and text.endswith(u)), "")
    number = text.replace(",", "").replace(" %", "").removesuffix(unit)
    shown = float(number) * units.get(unit, 1.0)
    decimals = len(number.split(".")[1]) if "." in number else 0
    expected = value * 100.0 if text.endswith("%") else value
    assert math.isclose(shown, expected, abs_tol=0.5 * 10.0**-decimals * units.get(unit, 1.0) + 1e-9), (key, text, value)


def test_chromium_is_installed() -> None:
    assert Path(find_chromium()).is_file()


def test_the_tearsheet_renders_and_shows_the_numbers_of_metrics_json(runs: tuple[Path, Path]) -> None:
    run_dir = runs[0]
    page = write_tearsheet(run_dir)
    assert page == run_dir / "tearsheet.html"
    expression = (
        "({metrics: " + METRICS_JS + ", plots: document.querySelectorAll('.js-plotly-plot .main-svg').length > 0"
        " ? [...document.querySelectorAll('.js-plotly-plot')].map(d => d.id) : [],"
        " derived: Object.fromEntries([...document.querySelectorAll('[data-derived]')]"
        ".map(e => [e.dataset.derived, e.textContent])),"
        " sections: [...document.querySelectorAll('h2')].map(h => h.textContent),"
        " monthly: (d => ({z: d.z, y: d.y}))(document.getElementById('fig-monthly').data[0]),"
        " prices: document.getElementById('fig-prices').data.map(t => [t.name, t.x.length]),"
        " stress: [...document.querySelectorAll('#stress tbody tr')].map(r => [...r.cells].map(c => c.textContent)),"
        " annualisation: document.getElementById('annualisation').textContent})"
    )
    rendering = render(page, expression=expression, full_page=True)
    _check_page(rendering, page)
    shown = rendering.value
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(shown["metrics"]) == set(metrics) - {"null_reasons", "round_trips"}
    for key, text in shown["metrics"].items():
        _shown_equals(key, text, metrics[key])
    assert metrics["sharpe"] is not None and metrics["round_trips"] > 3
    assert set(shown["plots"]) >= {"fig-equity", "fig-underwater", "fig-monthly", "fig-rolling", "fig-returns",
                                   "fig-prices", "fig-exposure", "fig-costs"}
    assert "365" in shown["annualisation"]
    for title in ("Metrics", "Equity and drawdown", "Underwater", "Monthly returns (%)", "Return distribution",
                  "Net exposure (position value / equity)", "Fees over time", "Instruments", "Stress"):
        assert title in shown["sections"]
    # One entry marker and one exit marker per round trip of trades.csv.
    with (run_dir / "trades.csv").open() as handle:
        trades = list(csv.DictReader(handle))
    markers = dict(shown["prices"])
    entries = markers.get("long entry", 0) + markers.get("short entry", 0)
    assert entries == markers["exit"] == len(trades) > 3
    assert shown["derived"]["trades"] == str(len(trades))
    with BARS.open() as handle:
        closes = [float(r["close"]) for r in csv.DictReader(handle)]
    assert shown["derived"]["buy & hold"] == f"{(closes[-1] / closes[0] - 1.0) * 100:,.2f} %"
    assert {t["side"] for t in trades} == {"LONG", "SHORT"}
    # Monthly returns: empyrical compounds the daily returns of equity.csv's daily closes.
    equity = pd.read_csv(run_dir / "equity.csv")
    closes = equity.set_index(pd.to_datetime(equity["ts"], unit="ns"))["equity"].resample("1D").last().dropna()
    daily = closes / closes.shift(1).fillna(metrics["initial_cash"]) - 1.0
    monthly = empyrical.aggregate_returns(daily, "monthly") * 100.0
    heat = shown["monthly"]
    assert heat["y"] == ["2022"]
    shown_months = [v for v in heat["z"][0] if v is not None]
    assert shown_months == pytest.approx(list(monthly.values), abs=1e-4) and len(shown_months) >= 6
    assert shown["stress"] == [["base", "1.23 %", "0.810", "5.40 %", "40", ""],
                               ["fees x5", "-4.56 %", "-1.250", "10.20 %", "38", ""],
                               ["latency x5", "1.23 %", "0.810", "5.40 %", "40", STRESS[2]["note"]],
                               ["costs_x5", "-", "-", "-", "-", STRESS[3]["note"]]]


def test_the_tearsheet_is_byte_identical_and_self_contained(runs: tuple[Path, Path], tmp_path: Path) -> None:
    first = write_tearsheet(runs[1], tmp_path / "a.html").read_bytes()
    second = write_tearsheet(runs[1], tmp_path / "b.html").read_bytes()
    assert first == second
    assert not re.search(rb"<script[^>]+src=|<link[^>]+href=", first)


def test_compare_lists_exactly_the_fills_one_run_has(runs: tuple[Path, Path], tmp_path: Path) -> None:
    page = write_compare(runs[0], runs[1], tmp_path / "compare.html")
    expression = (
        "[...document.querySelectorAll('table.differing-fills tbody tr')]"
        ".map(r => [...r.cells].map(c => c.textContent))"
    )
    rendering = render(page, expression=expression)
    _check_page(rendering, page)

    def fills(run: Path) -> Counter[tuple[str, ...]]:
        with (run / "fills.csv").open() as handle:
            return Counter((r["time"], r["side"], str(float(r["quantity"])), str(float(r["price"])))
                           for r in csv.DictReader(handle))

    a, b = fills(runs[0]), fills(runs[1])
    expected = sorted([("A", *k) for k in (a - b).elements()] + [("B", *k) for k in (b - a).elements()])
    shown = sorted((run, time, side, str(float(qty)), str(float(px))) for run, time, _, side, qty, px in rendering.value)
    assert shown == expected and len(expected) > 0


@pytest.mark.parametrize("with_fills", [True, False])
def test_a_short_run_renders_without_errors(tmp_path: Path, with_fills: bool) -> None:
    from tradebus.engine.kernel import EquitySample, FillRecord, RunResult
    from tradebus.reports.metrics import compute_metrics
    from tradebus.reports.writers import RunDirectory, write_run

    s = 1_000_000_000
    fills = [FillRecord(0, "X.SIM", "SELL", 1.0, 100.0, 0.1, "TAKER", "a", "s", "1", "in"),
             FillRecord(90 * s, "X.SIM", "BUY", 1.0, 99.0, 0.1, "TAKER", "b", "s", "2", "out")] if with_fills else []
    equity = [EquitySample(n * 30 * s, 1000.0 + n, 1000.0, 0.0, 0.0, 0.0, 0.0, marks=(100.0 - n / 3,))
              for n in range(4)]
    result = RunResult(("X.SIM",), 1000.0, 0, 90 * s, 0, 90 * s, fills=fills, equity=equity)
    with RunDirectory(tmp_path / "run", "paper") as run_dir:
        write_run(run_dir, result, compute_metrics(result), "instruments: [{tick_size: 0.01}]\n", {"node.json": "{}"})
    if with_fills:  # a perpetual run that paid funding (spot runs have a column of zeros)
        equity_csv = tmp_path / "run" / "equity.csv"
        frame = pd.read_csv(equity_csv)
        assert (frame["funding_paid"] == 0.0).all()
        frame["funding_paid"] = [0.0, -0.5, -0.5, -1.25]
        frame.to_csv(equity_csv, index=False)
    page = write_tearsheet(tmp_path / "run")
    expression = ("({metrics: " + METRICS_JS + ", sections: [...document.querySelectorAll('h2')].map(h => h.textContent),"
                  " costs: document.getElementById('fig-costs')._fullData.map(t => [t.name, t.y.length])})")
    rendering = render(page, expression=expression)
    _check_page(rendering, page)
    assert rendering.value["metrics"]["sharpe"].startswith("- (the run spans 1.5 min")
    if with_fills:
        assert "Fees and funding over time" in rendering.value["sections"]
        assert ["funding paid (cumulative)", 4] in rendering.value["costs"]
    else:
        assert [name for name, _ in rendering.value["costs"]] == ["fees paid (cumulative)"]


def test_a_paper_runs_nanosecond_times_render_without_a_warning(tmp_path: Path) -> None:
    # A paper run samples its equity on the wall clock (2024-08-08T23:54:14.087891268Z): the
    # tearsheet and the compare page printed plotly's "UserWarning: Discarding nonzero nanoseconds
    # in conversion" (an error under -W error, as in this suite).
    from tradebus.engine.kernel import EquitySample, FillRecord, RunResult
    from tradebus.reports.metrics import compute_metrics
    from tradebus.reports.writers import RunDirectory, write_run

    t0 = 1_723_161_254_087_891_268
    fills = [FillRecord(t0 + 5_025_108_732, "X.SIM", "BUY", 1.0, 100.0, 0.1, "TAKER", "a", "s", "1", "in"),
             FillRecord(t0 + 9_641_108_732, "X.SIM", "SELL", 1.0, 101.0, 0.1, "TAKER", "b", "s", "2", "out")]
    equity = [EquitySample(t0 + n * 3_000_000_017, 1000.0 + n, 1000.0, 0.0, 0.0, 0.0, 0.0, marks=(100.0 + n / 3,))
              for n in range(5)]
    result = RunResult(("X.SIM",), 1000.0, 0, t0 + 12_000_000_068, 0, t0 + 12_000_000_068, fills=fills, equity=equity)
    with RunDirectory(tmp_path / "run", "paper") as run_dir:
        write_run(run_dir, result, compute_metrics(result), "instruments: [{tick_size: 0.01}]\n", {"node.json": "{}"})
    text = write_tearsheet(tmp_path / "run").read_text(encoding="utf-8")
    assert "2024-08-08T23:54:14.087891" in text
    write_compare(tmp_path / "run", tmp_path / "run", tmp_path / "compare.html")


def test_a_run_that_saw_no_data_renders_without_errors(tmp_path: Path) -> None:
    from tradebus.engine.kernel import RunResult
    from tradebus.reports.metrics import compute_metrics
    from tradebus.reports.writers import RunDirectory, write_run

    result = RunResult(("X.SIM",), 1000.0)
    with RunDirectory(tmp_path / "run", "paper") as run_dir:
        write_run(run_dir, result, compute_metrics(result), "", {"node.json": "{}"})
    page = write_tearsheet(tmp_path / "run")
    rendering = render(page, expression=METRICS_JS)
    _check_page(rendering, page)
    assert rendering.value["final_equity"] == "1,000.00" and rendering.value["fills"] == "0"


def test_the_profile_is_removed_while_a_straggler_still_writes_to_it(tmp_path: Path) -> None:
    import threading
    import time

    from tradebus.reports.browser import _remove_profile

    profile = tmp_path / "tradebus-chromium-x"
    (profile / "Default").mkdir(parents=True)
    stop = time.monotonic() + 0.4

    def straggler() -> None:  # as a Chromium helper that outlives the main process a moment
        i = 0
        while time.monotonic() < stop:
            try:
                (profile / "Default" / f"f{i}").write_bytes(b"x")
            except OSError:
                pass
            i += 1

    writer = threading.Thread(target=straggler)
    writer.start()
    time.sleep(0.05)
    _remove_profile(profile)
    writer.join()
    assert not profile.exists()


def test_render_leaves_no_profile_and_no_chromium_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The profile goes into a temporary directory of this test's own: other pytest workers' renders make and remove
    theirs in the shared one meanwhile."""
    import tempfile

    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    page = tmp_path / "p.html"
    page.write_text("<html><body>ok</body></html>")
    assert render(page, expression="document.body.textContent").value == "ok"
    assert list(temp.iterdir()) == []


def test_a_tearsheet_whose_disk_fills_exits_2_naming_it_and_leaves_the_previous_page_whole(
    runs: tuple[Path, Path], tmp_path: Path
) -> None:
    """``tradebus report`` under a 4 kB file size limit (EFBIG, as a full disk): the page, written to a
    temporary of its own that was never fsynced, failed with 'cannot write the page (File too large)',
    naming no errno and unlike every other output (``reports.writers.write_file``: fsync, rename, its error)."""
    from tests.file_size_limit import cli_under_file_size_limit

    run_dir = tmp_path / "run"
    shutil.copytree(runs[1], run_dir)
    page = write_tearsheet(run_dir)
    before = page.read_bytes()
    assert len(before) > 4096
    code, output = cli_under_file_size_limit(4096, ["report", str(run_dir)])
    assert code == 2, output
    assert f"error: output {page}: cannot write it (EFBIG: File too large)" in output
    assert page.read_bytes() == before
    assert sorted(p.name for p in run_dir.iterdir()) == sorted([*(p.name for p in runs[1].iterdir()), page.name])


def test_the_tearsheets_daily_returns_are_the_metrics_with_none_after_an_equity_at_or_below_0(tmp_path: Path) -> None:
    """After a close of -30 the tearsheet plotted -10 / -30 - 1 = -66.7 % and 20 / -10 - 1 = -300 % as daily
    returns, where the metrics have none (NaN, left out of Sharpe and volatility)."""
    from tradebus.engine.kernel import EquitySample, RunResult
    from tradebus.reports.metrics import compute_metrics, daily_returns
    from tradebus.reports.rundata import load_run
    from tradebus.reports.tearsheet import daily_return_series
    from tradebus.reports.writers import RunDirectory, write_run

    day = 86_400_000_000_000
    closes = [120.0, 60.0, -30.0, -10.0, 20.0, 25.0, 0.0, 10.0, 30.0]
    equity = [EquitySample((d + 1) * day - 1, v, v, 0.0, 0.0, 0.0, 0.0) for d, v in enumerate(closes)]
    result = RunResult(("X.SIM",), 100.0, 0, len(closes) * day - 1, 0, len(closes) * day - 1, equity=equity)
    with RunDirectory(tmp_path / "run", "backtest") as run_dir:
        write_run(run_dir, result, compute_metrics(result), "", {})
    got = daily_return_series(load_run(tmp_path / "run"))
    # by hand: a return only where the previous close (100 at the start) is above 0
    want = {0: 0.2, 1: -0.5, 2: -1.5, 5: 0.25, 6: -1.0, 8: 2.0}
    assert [ts.value // day for ts in got.index] == list(want)
    assert got.tolist() == pytest.approx(list(want.values()), rel=1e-12)
    metrics = [r for r in daily_returns(equity, 100.0) if math.isfinite(r)]
    assert got.tolist() == metrics
