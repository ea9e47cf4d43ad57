"""Metrics against an outside reference: empyrical-reloaded on the same daily returns.

tradebus annualises with 365 periods a year (crypto trades every day) and measures a year
as 365 days of venue time, so a run whose equity is sampled once a day at the close must
give exactly empyrical's figures with ``annualization=365``.
"""

from __future__ import annotations

import empyrical
import numpy as np
import pandas as pd
import pytest

from tradebus.engine.kernel import EquitySample, RunResult
from tradebus.reports.metrics import compute_metrics, daily_returns

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
