"""Metrics against an outside reference: empyrical-reloaded on the same daily returns.

tradebus annualises with 365 periods a year (crypto trades every day) and measures a year
as 365 days of venue time, so a run whose equity is sampled once a day at the close must
give exactly empyrical's figures with ``annualization=365``.
"""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path

import empyrical
import numpy as np
import pandas as pd
import pytest

from tradebus.engine.kernel import EquitySample, RunResult
from tradebus.reports.metrics import compute_metrics, daily_returns
from tradebus.reports.rundata import load_run
from tradebus.reports.tearsheet import render_tearsheet
from tradebus.reports.writers import RunDirectory, write_run

DAY = 86_400_000_000_000
T0 = 1_704_067_200_000_000_000  # 2024-01-01T00:00:00Z
ANNUAL = 365


def _run(seed: int, days: int, drift: float) -> RunResult:
    rng = np.random.default_rng(seed)
    returns = rng.normal(drift, 0.03, days)
    equity = 100_000.0 * np.cumprod(1.0 + returns)
    # One sample per day, at the last nanosecond of that UTC day (the daily close);
    # the run's venue-time span is exactly ``days`` days.
    samples = [EquitySample(T0 + (d + 1) * DAY - 1, float(e), float(e), 0.0, 0.0, 0.0, 0.0)
               for d, e in enumerate(equity)]
    return RunResult(("X.SIM",), 100_000.0, T0, T0 + days * DAY, T0, T0 + days * DAY, equity=samples)


@pytest.mark.parametrize(("seed", "days", "drift"), [(1, 90, 0.002), (2, 400, -0.001), (3, 45, 0.0)])
def test_metrics_equal_empyrical_on_the_same_daily_returns(seed: int, days: int, drift: float) -> None:
    result = _run(seed, days, drift)
    metrics = compute_metrics(result)
    returns = pd.Series(daily_returns(result.equity, result.initial_cash),
                        index=pd.date_range("2024-01-01", periods=days, freq="D"))
    assert len(returns) == days
    expected = {
        "annualised_volatility": empyrical.annual_volatility(returns, annualization=ANNUAL),
        "sharpe": empyrical.sharpe_ratio(returns, annualization=ANNUAL),
        "sortino": empyrical.sortino_ratio(returns, annualization=ANNUAL),
        "max_drawdown": -empyrical.max_drawdown(returns),
        "cagr": empyrical.annual_return(returns, annualization=ANNUAL),
        "calmar": empyrical.calmar_ratio(returns, annualization=ANNUAL),
        "total_return": empyrical.cum_returns_final(returns),
    }
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(float(value), rel=1e-9), key


@pytest.mark.parametrize("every_days", [2, 7])
def test_equity_sampled_every_few_days_is_annualised_by_its_own_periods(every_days: int) -> None:
    """``equity_interval: 7d`` gives one return a week: 365 / 7 periods a year, not 365 (Sharpe × √7)."""
    rng = np.random.default_rng(every_days)
    periods = 60
    equity = 100_000.0 * np.cumprod(1.0 + rng.normal(0.004, 0.05, periods))
    samples = [EquitySample(T0 + (k * every_days + 1) * DAY - 1, float(e), float(e), 0.0, 0.0, 0.0, 0.0)
               for k, e in enumerate(equity)]
    span = periods * every_days * DAY
    metrics = compute_metrics(RunResult(("X.SIM",), 100_000.0, T0, T0 + span, T0, T0 + span, equity=samples))
    returns = pd.Series(daily_returns(samples, 100_000.0),
                        index=pd.date_range("2024-01-01", periods=periods, freq=f"{every_days}D"))
    annual = ANNUAL / every_days
    assert metrics["annualised_volatility"] == pytest.approx(
        float(empyrical.annual_volatility(returns, annualization=annual)), rel=1e-9)
    assert metrics["sharpe"] == pytest.approx(float(empyrical.sharpe_ratio(returns, annualization=annual)), rel=1e-9)
    assert metrics["sortino"] == pytest.approx(float(empyrical.sortino_ratio(returns, annualization=annual)), rel=1e-9)


def _figure_traces(page: str, div_id: str) -> list[dict[str, object]]:
    """The traces of one plotly figure of a page, typed arrays decoded."""
    call = re.search(rf'Plotly\.newPlot\(\s*"{div_id}",\s*', page)
    assert call is not None, div_id
    traces, _ = json.JSONDecoder().raw_decode(page, call.end())
    for trace in traces:
        for key, value in trace.items():
            if isinstance(value, dict) and "bdata" in value:
                trace[key] = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
    return traces  # type: ignore[no-any-return]


def test_the_tearsheets_rolling_sharpe_of_weekly_equity_is_annualised_by_weeks(tmp_path: Path) -> None:
    weeks = 80
    rng = np.random.default_rng(5)
    equity = 100_000.0 * np.cumprod(1.0 + rng.normal(0.004, 0.05, weeks))
    samples = [EquitySample(T0 + (7 * k + 1) * DAY - 1, float(e), float(e), 0.0, 0.0, 0.0, 0.0)
               for k, e in enumerate(equity)]
    span = 7 * weeks * DAY
    result = RunResult(("X.SIM",), 100_000.0, T0, T0 + span, T0, T0 + span, equity=samples)
    with RunDirectory(tmp_path / "run", "backtest") as run_dir:
        write_run(run_dir, result, compute_metrics(result), "")
    traces = _figure_traces(render_tearsheet(load_run(tmp_path / "run")), "fig-rolling")
    sharpe, vol = traces[0], traces[1]
    assert (sharpe["name"], vol["name"]) == ("210-day Sharpe", "210-day volatility %")
    returns = pd.Series(daily_returns(samples, 100_000.0))
    last = returns.iloc[-30:]
    assert float(sharpe["y"][-1]) == pytest.approx(float(empyrical.sharpe_ratio(last, annualization=ANNUAL / 7)))
    assert float(vol["y"][-1]) == pytest.approx(100.0 * float(empyrical.annual_volatility(last, annualization=ANNUAL / 7)))


@pytest.mark.parametrize(("every_days", "label"), [(1, "daily returns (%)"), (7, "7-day returns (%)")])
def test_the_tearsheets_return_distribution_names_the_period_of_its_returns(tmp_path: Path, every_days: int,
                                                                             label: str) -> None:
    """Equity sampled every 7 days (``equity_interval: 7d``) gives weekly returns: the histogram called them
    "daily returns (%)"."""
    rng = np.random.default_rng(6)
    equity = 100_000.0 * np.cumprod(1.0 + rng.normal(0.004, 0.05, 40))
    samples = [EquitySample(T0 + (every_days * k + 1) * DAY - 1, float(e), float(e), 0.0, 0.0, 0.0, 0.0)
               for k, e in enumerate(equity)]
    span = every_days * len(equity) * DAY
    result = RunResult(("X.SIM",), 100_000.0, T0, T0 + span, T0, T0 + span, equity=samples)
    with RunDirectory(tmp_path / "run", "backtest") as run_dir:
        write_run(run_dir, result, compute_metrics(result), "")
    (histogram,) = _figure_traces(render_tearsheet(load_run(tmp_path / "run")), "fig-returns")
    assert histogram["name"] == label
    # by pandas: each sample against the one before (the first against the initial 100,000)
    expected = pd.Series([100_000.0, *equity]).pct_change().dropna() * 100.0
    assert np.asarray(histogram["x"], dtype=float) == pytest.approx(expected.to_numpy(), rel=1e-9)


@pytest.mark.parametrize("flat_return", [0.0, 1.0])
def test_the_tearsheets_rolling_sharpe_has_a_gap_where_a_window_of_returns_is_flat(tmp_path: Path,
                                                                                  flat_return: float) -> None:
    """30 equal daily returns: pandas' rolling std left ~1e-9 after varied returns (a Sharpe of 0.0 and a
    volatility of ~1e-7 % over flat equity), or was 0 beside a mean of 1 (a Sharpe of inf over equity doubling
    every day); the Sharpe of such a window is undefined (a gap) and its volatility is 0."""
    rng = np.random.default_rng(8)
    returns = rng.normal(0.0, 0.01, 125)
    returns[45:85] = flat_return  # 40 days: the windows ending on days 74..84 hold only this return
    equity = 100_000.0 * np.cumprod(1.0 + returns)
    samples = [EquitySample(T0 + (d + 1) * DAY - 1, float(e), float(e), 0.0, 0.0, 0.0, 0.0)
               for d, e in enumerate(equity)]
    span = len(returns) * DAY
    result = RunResult(("X.SIM",), 100_000.0, T0, T0 + span, T0, T0 + span, equity=samples)
    with RunDirectory(tmp_path / "run", "backtest") as run_dir:
        write_run(run_dir, result, compute_metrics(result), "")
    sharpe, vol = _figure_traces(render_tearsheet(load_run(tmp_path / "run")), "fig-rolling")
    daily = pd.Series(daily_returns(samples, 100_000.0))
    assert (daily[45:85] == flat_return).all()
    mean, std = daily.rolling(30).mean(), daily.rolling(30).std(ddof=1)
    flat = np.zeros(len(daily), dtype=bool)
    flat[74:85] = True
    assert not np.isnan(mean[flat] / std[flat]).any(), "pandas gives no number there: the case of this test is gone"
    shown_sharpe, shown_vol = np.asarray(sharpe["y"], dtype=float), np.asarray(vol["y"], dtype=float)
    assert list(np.flatnonzero(np.isnan(shown_sharpe))) == list(range(29)) + list(range(74, 85))
    assert (shown_vol[flat] == 0.0).all()
    varied = ~flat & (np.arange(len(daily)) >= 29)
    expected_sharpe = (mean / std * np.sqrt(ANNUAL)).to_numpy()
    assert shown_sharpe[varied] == pytest.approx(expected_sharpe[varied], rel=1e-9)
    assert shown_vol[varied] == pytest.approx((std * np.sqrt(ANNUAL) * 100.0).to_numpy()[varied], rel=1e-9)


def test_the_tearsheets_rolling_sharpe_has_a_gap_where_returns_are_equal_but_for_rounding(tmp_path: Path) -> None:
    """40 days of equity falling 0.1 % a day gives returns 1 ulp apart: the 30-day Sharpe showed -7.6e7 and
    the volatility 4.8e-7 % there (pandas' running std of rounding); as the run's metrics, such returns are flat."""
    rng = np.random.default_rng(8)
    varied = 100_000.0 * np.cumprod(1.0 + rng.normal(0.0, 0.01, 125))
    closes = list(varied[:45])
    for _ in range(40):
        closes.append(closes[-1] * 0.999)
    closes += list(closes[-1] * varied[85:] / varied[84])
    samples = [EquitySample(T0 + (d + 1) * DAY - 1, float(e), float(e), 0.0, 0.0, 0.0, 0.0)
               for d, e in enumerate(closes)]
    span = len(closes) * DAY
    result = RunResult(("X.SIM",), 100_000.0, T0, T0 + span, T0, T0 + span, equity=samples)
    with RunDirectory(tmp_path / "run", "backtest") as run_dir:
        write_run(run_dir, result, compute_metrics(result), "")
    sharpe, vol = _figure_traces(render_tearsheet(load_run(tmp_path / "run")), "fig-rolling")
    daily = np.array(daily_returns(samples, 100_000.0))
    assert len(set(daily[45:85])) > 1 and np.ptp(daily[45:85]) < 1e-15  # not equal: equal but for rounding
    shown_sharpe, shown_vol = np.asarray(sharpe["y"], dtype=float), np.asarray(vol["y"], dtype=float)
    assert list(np.flatnonzero(np.isnan(shown_sharpe))) == list(range(29)) + list(range(74, 85))
    assert (shown_vol[74:85] == 0.0).all()
    assert compute_metrics(result)["sharpe"] is not None  # the whole run varies
    assert shown_vol[85] == pytest.approx(100.0 * float(empyrical.annual_volatility(pd.Series(daily[56:86]),
                                                                                   annualization=ANNUAL)), rel=1e-6)


@pytest.mark.parametrize(
    ("every_days", "closes", "title", "note"),
    [
        (7, 80, "Rolling Sharpe and volatility (annualised: 52.14 7-day returns a year)", None),
        (7, 5, "Rolling Sharpe and volatility (annualised: 52.14 7-day returns a year)",
         "5 7-day returns: too few for rolling figures"),
        (1, 90, "Rolling Sharpe and volatility (annualised: 365 daily returns a year)", None),
        (1, 5, "Rolling Sharpe and volatility (annualised: 365 daily returns a year)",
         "5 daily returns: too few for rolling figures"),
    ],
)
def test_the_tearsheets_rolling_section_names_the_period_of_its_returns(
    tmp_path: Path, every_days: int, closes: int, title: str, note: str | None
) -> None:
    """Equity sampled every 7 days: the rolling figures' section said "(annualised, 365 days)" over a Sharpe annualised
    by √(365 / 7), and 5 weekly closes read "5 daily returns: too few for rolling figures"."""
    rng = np.random.default_rng(7)
    equity = 100_000.0 * np.cumprod(1.0 + rng.normal(0.004, 0.05, closes))
    samples = [EquitySample(T0 + (every_days * k + 1) * DAY - 1, float(e), float(e), 0.0, 0.0, 0.0, 0.0)
               for k, e in enumerate(equity)]
    span = every_days * closes * DAY
    result = RunResult(("X.SIM",), 100_000.0, T0, T0 + span, T0, T0 + span, equity=samples)
    with RunDirectory(tmp_path / "run", "backtest") as run_dir:
        write_run(run_dir, result, compute_metrics(result), "")
    page = render_tearsheet(load_run(tmp_path / "run"))
    assert f"<h2>{title}</h2>" in page
    assert 365 / every_days == pytest.approx(float(title.split(": ")[1].split()[0]), abs=0.005)
    notes = re.findall(r'<p class="note">([^<]*too few[^<]*)</p>', page)
    assert notes == ([note] if note else [])


HOUR = 3_600_000_000_000


def _random_run(path: Path, times: list[int]) -> tuple[list[EquitySample], RunResult]:
    """A run directory at ``path`` of a seeded random equity sampled at ``T0 + times``: its samples and result."""
    rng = np.random.default_rng(8)
    equity = 100_000.0 * np.cumprod(1.0 + rng.normal(0.004, 0.05, len(times)))
    samples = [EquitySample(T0 + t, float(e), float(e), 0.0, 0.0, 0.0, 0.0) for t, e in zip(times, equity, strict=True)]
    span = times[-1] + 1
    result = RunResult(("X.SIM",), 100_000.0, T0, T0 + span, T0, T0 + span, equity=samples)
    with RunDirectory(path, "backtest") as run_dir:
        write_run(run_dir, result, compute_metrics(result), "")
    return samples, result


@pytest.mark.parametrize(
    ("times", "title", "label"),
    [
        # equity_interval: 36h from midnight, the run starting at 08:00: the closes' dates are 1 and 2 days apart,
        # 178 days over 119 gaps (the first return spans 28 hours)
        ([8 * HOUR, *(k * 36 * HOUR for k in range(1, 120))],
         "Rolling Sharpe and volatility of 36-hour returns (annualised: 244 a year, 365 / the 1.496 days between "
         "their closes' dates on average)", "36-hour returns (%)"),
        # equity_interval: 7d over 200 days: 28 weeks, then the run's stop 3 days after the last weekly sample
        ([(7 * k + 1) * DAY - 1 for k in range(29)] + [200 * DAY - 1],
         "Rolling Sharpe and volatility of 7-day returns (annualised: 53.19 a year, 365 / the 6.862 days between "
         "their closes' dates on average)", "7-day returns (%)"),
        # a close every day but for 10 days without data: one return spans 11 days
        ([(d + 1) * DAY - 1 for d in range(100) if not 40 <= d < 50],
         "Rolling Sharpe and volatility of daily returns (annualised: 328.1 a year, 365 / the "
         "1.112 days between their closes' dates on average)", "daily returns (%)"),
        # closes 1, 2 and 3 days apart in turn: no spacing most of them have
        ([(d + 1) * DAY - 1 for d in np.cumsum([0, *([1, 2, 3] * 20)])],
         "Rolling Sharpe and volatility of returns between daily closes (annualised: 182.5 a year, 365 / the "
         "2 days between their closes' dates on average)", "returns between daily closes (%)"),
    ],
    ids=["36h", "7d-short-last", "days-missing", "uneven"],
)
def test_the_tearsheets_rolling_section_says_how_it_counts_returns_that_are_not_whole_days_apart(
    tmp_path: Path, times: list[int], title: str, label: str
) -> None:
    """``equity_interval: 36h`` read "annualised: 244 daily returns a year" (the closes' mean spacing, 1.496 days,
    rounded to one): the returns are 36 hours apart, and 244 is not how many a year holds (243.3) but 365 over the
    mean number of days between their closes' dates, as the metrics annualise. 7-day samples over 200 days read
    "53.19 7-day returns a year": the run's last return spans 3 days, averaged in."""
    samples, result = _random_run(tmp_path / "run", times)
    page = render_tearsheet(load_run(tmp_path / "run"))
    assert f"<h2>{html.escape(title)}</h2>" in page
    # the count is the metrics' factor: their Sharpe is the mean / std of the returns x its square root
    dates = pd.to_datetime([T0 + t for t in times]).normalize().unique()
    mean_days = (dates[-1] - dates[0]).days / (len(dates) - 1)
    count = float(title.split("annualised: ")[1].split()[0])
    assert count == pytest.approx(365 / mean_days, abs=0.05)
    returns = pd.Series(daily_returns(samples, 100_000.0))
    assert compute_metrics(result)["sharpe"] == pytest.approx(
        float(empyrical.sharpe_ratio(returns, annualization=365 / mean_days)), rel=1e-9)
    (histogram,) = _figure_traces(page, "fig-returns")
    assert histogram["name"] == label



@pytest.mark.parametrize(
    ("times", "window", "label"),
    [
        # a close every day: 90 returns, a window of 30 spans 30 days
        ([(d + 1) * DAY - 1 for d in range(90)], 30, "30-day"),
        # a close every 7 days: 80 returns, 30 of them span 210 days
        ([(7 * k + 1) * DAY - 1 for k in range(80)], 30, "210-day"),
        # equity_interval: 36h from midnight, the run starting at 08:00: 120 returns, their closes' dates 1 or 2 days
        # apart, 178 days over 119 gaps: 30 returns span 44.87 days on average
        ([8 * HOUR, *(k * 36 * HOUR for k in range(1, 120))], 30, "30-return (about 45-day)"),
        # the same over 30 samples: 30 returns, a window of 30 // 3 = 10 spanning 10 x 43 / 29 = 14.83 days on average
        ([8 * HOUR, *(k * 36 * HOUR for k in range(1, 30))], 10, "10-return (about 15-day)"),
        # a close every day but for 10 days without data: 90 returns, 30 span 30 or 40 days, 30 x 99 / 89 = 33.4 on
        # average
        ([(d + 1) * DAY - 1 for d in range(100) if not 40 <= d < 50], 30, "30-return (about 33-day)"),
    ],
    ids=["daily", "7d", "36h", "36h-short", "days-missing"],
)
def test_the_tearsheets_rolling_window_is_named_by_its_days_only_when_its_returns_are_whole_days_apart(
    tmp_path: Path, times: list[int], window: int, label: str
) -> None:
    """``equity_interval: 36h``: windows of 30 returns whose closes' dates are 1.496 days apart on average were
    labelled "45-day Sharpe" (30 x 1.496 rounded), and a daily run with 10 days without data "33-day" where each window
    spans 30 or 40 days. Returns whole days apart keep their window's span ("210-day" for 30 weekly returns); others
    are named by how many returns the window holds, and the days they span on average."""
    _random_run(tmp_path / "run", times)
    sharpe, vol = _figure_traces(render_tearsheet(load_run(tmp_path / "run")), "fig-rolling")
    assert (sharpe["name"], vol["name"]) == (f"{label} Sharpe", f"{label} volatility %")
    shown = np.asarray(sharpe["y"], dtype=float)
    assert np.isnan(shown[: window - 1]).all() and not np.isnan(shown[window - 1])  # the window the label counts
    dates = pd.to_datetime([T0 + t for t in times]).normalize().unique()
    gaps = np.diff(dates) // pd.Timedelta(days=1)
    if len(set(gaps)) == 1:
        assert label == f"{window * gaps[0]}-day"
    else:
        assert label == f"{window}-return (about {window * gaps.mean():.0f}-day)"
