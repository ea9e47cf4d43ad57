"""Reusable sizers against pandas on real closes, and used from a strategy's history window."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tradebus.engine.messages import Bar
from tradebus.errors import ConfigError
from tradebus.strategies.base import Strategy
from tradebus.strategies.sizing import FractionalKellySizer, VolatilityTargetSizer

from strat_helpers import BTC_4H, bars_4h, run

PPY = 365 * 6  # 4h bars


def test_volatility_target_weight_equals_pandas_rolling_volatility() -> None:
    close = bars_4h()["close"]
    sizer = VolatilityTargetSizer(target_vol=0.3, periods_per_year=PPY, lookback=30, max_leverage=5.0)
    vol = close.pct_change().rolling(30).std() * math.sqrt(PPY)
    for t in (40, 300, 777, 1199):
        assert sizer.weight(close.iloc[: t + 1].to_numpy()) == pytest.approx(min(5.0, 0.3 / vol.iloc[t]), rel=1e-10)
    assert sizer.weight(close.iloc[:30].to_numpy()) == 0.0  # 29 returns: not enough
    capped = VolatilityTargetSizer(target_vol=10.0, periods_per_year=PPY, lookback=30, max_leverage=2.0)
    assert capped.weight(close.to_numpy()) == 2.0


def test_fractional_kelly_weight_equals_pandas_mean_over_variance() -> None:
    close = bars_4h()["close"]
    returns = close.pct_change()
    sizer = FractionalKellySizer(fraction=0.25, lookback=60, max_leverage=100.0)
    weights = []
    for t in (100, 400, 900, 1199):
        window = returns.iloc[t - 59 : t + 1]
        expected = 0.25 * window.mean() / window.var()
        weights.append(sizer.weight(close.iloc[: t + 1].to_numpy()))
        assert weights[-1] == pytest.approx(expected, rel=1e-10)
    assert min(weights) < 0 < max(weights)  # 2022 had both runs
    clipped = FractionalKellySizer(fraction=1.0, lookback=60, max_leverage=0.5)
    assert abs(clipped.weight(close.iloc[:401].to_numpy())) <= 0.5


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: VolatilityTargetSizer(0.0, PPY), "target_vol"),
        (lambda: FractionalKellySizer(fraction=1.5), "fraction"),
        (lambda: FractionalKellySizer(lookback=1), "lookback"),
        (lambda: VolatilityTargetSizer(0.2, PPY, max_leverage=0.0), "max_leverage"),
    ],
)
def test_bad_sizer_settings_are_config_errors(make, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=message):
        make()


class VolTargeted(Strategy):
    """Always long, sized to a volatility target from its own history window."""

    sizer = VolatilityTargetSizer(target_vol=0.5, periods_per_year=PPY, lookback=20)

    def history_sizes(self, instrument_id: str) -> dict[str, int]:
        return {"bars": 21}

    def on_bar(self, bar: Bar) -> None:
        weight = self.sizer.weight(self.bars().close)
        if weight > 0:
            self.target_weight(self.instrument_id, weight)


def test_a_strategy_sizes_from_its_history_window() -> None:
    frame = bars_4h().iloc[:60]
    strategy = VolTargeted(BTC_4H)
    kernel = run([strategy], {BTC_4H: frame}, cash=100_000.0)
    first = kernel.result.fills[0]
    # the first order is decided at bar 20 (21 closes), sized at that bar's close
    vol = frame["close"].pct_change().iloc[1:21].std() * math.sqrt(PPY)
    expected = np.floor(min(1.0, 0.5 / vol) * 100_000.0 / frame["close"].iloc[20] / 1e-5) * 1e-5
    assert first.ts_event == frame["ts_event"].iloc[21]
    assert first.quantity == pytest.approx(expected, abs=1e-5)
