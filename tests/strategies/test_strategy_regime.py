"""Regime hysteresis: Schmitt thresholds and the confirmation count, by hand and on real 4h bars."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tradebus.errors import ConfigError
from tradebus.strategies.regime import RegimeMachine, schmitt
from tradebus.strategies.regime_hazard import RegimeHazardParams, RegimeHazardSystem

BARS_4H = Path(__file__).resolve().parents[1] / "fixtures" / "kernel" / "coinbase_btc_usd_4h_2022_1200.csv"


def test_schmitt_enters_above_enter_and_stays_down_to_exit() -> None:
    values = [0.2, 0.4, 0.5, 0.35, 0.31, 0.29, 0.4, 0.46]
    active, out = False, []
    for v in values:
        active = schmitt(v, active=active, enter=0.45, exit=0.30)
        out.append(active)
    assert out == [False, False, True, True, True, False, False, True]
    assert schmitt(float("nan"), active=True, enter=0.45, exit=0.30) is False
    with pytest.raises(ConfigError, match="exit"):
        schmitt(0.1, active=False, enter=0.3, exit=0.4)


def test_machine_switches_only_after_confirm_consecutive_proposals() -> None:
    m = RegimeMachine("RANGE", confirm=3)
    seq = ["TREND", "TREND", "RANGE", "TREND", "TREND", "HAZARD", "TREND", "TREND", "TREND", "RANGE"]
    states = [m.update(s) for s in seq]
    assert states == ["RANGE"] * 8 + ["TREND", "TREND"]
    assert m.switches == 1
    with pytest.raises(ConfigError):
        RegimeMachine("RANGE", confirm=0)


def _regimes(params: RegimeHazardParams) -> list[str]:
    bars = pd.read_csv(BARS_4H)
    system = RegimeHazardSystem(params)
    ts = bars["ts"].to_numpy(dtype=np.int64) * 1_000_000
    for t, row in zip(ts, bars[["open", "high", "low", "close", "volume"]].to_numpy(), strict=True):
        system.on_regime_bar(int(t), int(t), row.tolist())
    return [r[2] for r in system.regimes]


def test_hysteresis_cuts_flapping_on_real_4h_bars() -> None:
    """Coinbase BTC-USD 4h, 1,200 bars of 2022: thresholds apart and a 2-bar confirmation flip far less."""
    flat = RegimeHazardParams(trend_enter=0.4, trend_exit=0.4, hazard_enter=1.5, hazard_exit=1.5, confirm=1)
    hyst = RegimeHazardParams(trend_enter=0.4, trend_exit=0.25, hazard_enter=1.5, hazard_exit=1.2, confirm=2)
    a, b = _regimes(flat), _regimes(hyst)
    flips = [sum(x != y for x, y in zip(s[:-1], s[1:], strict=True)) for s in (a, b)]
    assert flips[0] > 100  # a single threshold flaps
    assert flips[1] < flips[0] / 2
    # with confirm=2 a state is left only after two proposals of another: every inner run lasts >= 2 bars
    runs = np.diff(np.flatnonzero(np.r_[True, np.array(b[1:]) != np.array(b[:-1]), True]))
    assert runs[1:-1].min() >= 2 and set(b) == {"TREND", "RANGE", "HAZARD"}
    assert np.diff(np.flatnonzero(np.r_[True, np.array(a[1:]) != np.array(a[:-1]), True]))[1:-1].min() == 1
