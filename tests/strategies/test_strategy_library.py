"""The bar strategies of the library: decisions on real bars against TA-Lib/pandas references.

Each reference applies the strategy's documented rules to indicators computed by TA-Lib or
pandas (never by the feature code), and the strategy's recorded decisions must equal it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
import talib

from tradebus.errors import ConfigError
from tradebus.strategies.base import BUILTIN_STRATEGIES, resolve_strategy
from tradebus.strategies.bollinger import BollingerReversion
from tradebus.strategies.donchian import DonchianBreakout
from tradebus.strategies.macd import MacdCross
from tradebus.strategies.rsi import RsiReversion
from tradebus.strategies.signal import BarSignal

from strat_helpers import BTC_4H, bars_4h, run

Decisions = list[tuple[int, float]]


def apply(frame: pd.DataFrame, rule: Callable[[int, float], float | None], long_only: bool) -> Decisions:
    """Replay ``rule(i, target) -> new target | None`` over the bars; keep the changes."""
    target = 0.0
    out: Decisions = []
    for i in range(len(frame)):
        new = rule(i, target)
        if new is None:
            continue
        if long_only and new < 0:
            new = 0.0
        if new != target:
            target = new
            out.append((int(frame["ts_event"].iloc[i]), new))
    return out


def macd_reference(frame: pd.DataFrame, fast: int, slow: int, signal: int, long_only: bool) -> Decisions:
    macd, sig, _ = talib.MACD(frame["close"].to_numpy(), fast, slow, signal)
    state: dict[str, bool | None] = {"above": None}

    def rule(i: int, target: float) -> float | None:
        if not (macd[i] > sig[i] or macd[i] < sig[i]):
            return None
        above = bool(macd[i] > sig[i])
        previous, state["above"] = state["above"], above
        if previous is None or previous is above:
            return None
        return 1.0 if above else -1.0

    return apply(frame, rule, long_only)


def bollinger_reference(frame: pd.DataFrame, window: int, k: float, long_only: bool) -> Decisions:
    close = frame["close"].to_numpy()
    upper, mid, lower = talib.BBANDS(close, window, k, k, 0)
    armed = {"long": False, "short": False}

    def rule(i: int, target: float) -> float | None:
        if math.isnan(lower[i]):
            return None
        if close[i] < lower[i]:
            armed["long"] = True
        elif armed["long"]:
            armed["long"] = False
            return 1.0
        if close[i] > upper[i]:
            armed["short"] = True
        elif armed["short"]:
            armed["short"] = False
            return -1.0
        if target > 0 and close[i] >= mid[i]:
            return 0.0
        if target < 0 and close[i] <= mid[i]:
            return 0.0
        return None

    return apply(frame, rule, long_only)


def rsi_reference(frame: pd.DataFrame, window: int, lo: float, hi: float, long_only: bool) -> Decisions:
    rsi = talib.RSI(frame["close"].to_numpy(), window)

    def rule(i: int, target: float) -> float | None:
        if rsi[i] < lo:
            return 1.0
        if rsi[i] > hi:
            return -1.0
        if target > 0 and rsi[i] > 50.0:
            return 0.0
        if target < 0 and rsi[i] < 50.0:
            return 0.0
        return None

    return apply(frame, rule, long_only)


def donchian_reference(frame: pd.DataFrame, entry: int, exit_: int, long_only: bool) -> Decisions:
    high, low, close = frame["high"], frame["low"], frame["close"].to_numpy()
    hi = high.rolling(entry).max().shift(1).to_numpy()
    lo = low.rolling(entry).min().shift(1).to_numpy()
    xhi = high.rolling(exit_).max().shift(1).to_numpy()
    xlo = low.rolling(exit_).min().shift(1).to_numpy()

    def rule(i: int, target: float) -> float | None:
        if close[i] > hi[i]:
            return 1.0
        if close[i] < lo[i]:
            return -1.0
        if target > 0 and close[i] < xlo[i]:
            return 0.0
        if target < 0 and close[i] > xhi[i]:
            return 0.0
        return None

    return apply(frame, rule, long_only)


CASES: list[tuple[str, type[BarSignal], dict[str, float], Callable[[pd.DataFrame, bool], Decisions]]] = [
    ("macd", MacdCross, {"fast": 12, "slow": 26, "signal": 9}, lambda f, lo: macd_reference(f, 12, 26, 9, lo)),
    ("macd_short", MacdCross, {"fast": 8, "slow": 21, "signal": 5}, lambda f, lo: macd_reference(f, 8, 21, 5, lo)),
    ("bollinger", BollingerReversion, {"window": 20, "k": 2.0}, lambda f, lo: bollinger_reference(f, 20, 2.0, lo)),
    ("bollinger_narrow", BollingerReversion, {"window": 30, "k": 1.5},
     lambda f, lo: bollinger_reference(f, 30, 1.5, lo)),
    ("rsi", RsiReversion, {"window": 14}, lambda f, lo: rsi_reference(f, 14, 30.0, 70.0, lo)),
    ("rsi_tight", RsiReversion, {"window": 10, "oversold": 35.0, "overbought": 65.0},
     lambda f, lo: rsi_reference(f, 10, 35.0, 65.0, lo)),
    ("donchian", DonchianBreakout, {"entry": 20, "exit": 10}, lambda f, lo: donchian_reference(f, 20, 10, lo)),
    ("donchian_fast", DonchianBreakout, {"entry": 10, "exit": 5}, lambda f, lo: donchian_reference(f, 10, 5, lo)),
]


@pytest.mark.parametrize("mode", ["long_short", "long_only"])
@pytest.mark.parametrize(("name", "cls", "params", "reference"), CASES, ids=[c[0] for c in CASES])
def test_decisions_equal_the_reference_on_real_bars(
    name: str, cls: type[BarSignal], params: dict[str, float], reference: Callable[[pd.DataFrame, bool], Decisions],
    mode: str,
) -> None:
    frame = bars_4h()
    strategy = cls(BTC_4H, quantity=0.5, mode=mode, **params)
    kernel = run([strategy], {BTC_4H: frame})
    got = [(ts, target) for ts, target, _ in strategy.decisions]
    expected = reference(frame, mode == "long_only")
    assert len(expected) >= 6, "the fixture must exercise the rules"
    assert got == expected
    # every decision became an order that filled, and the final position is the final target
    assert len(kernel.result.fills) >= len(got) - 1
    assert kernel.portfolio.position(BTC_4H) == pytest.approx(0.5 * got[-1][1], abs=1e-9)


def test_a_decision_never_depends_on_later_bars() -> None:
    frame = bars_4h()
    cut = 700
    changed = frame.copy()
    changed.loc[cut:, ["open", "high", "low", "close"]] *= np.linspace(0.5, 1.5, len(frame) - cut)[:, None]
    for cls, params in ((MacdCross, {}), (BollingerReversion, {}), (RsiReversion, {}), (DonchianBreakout, {})):
        a = cls(BTC_4H, quantity=0.5, mode="long_short", **params)
        b = cls(BTC_4H, quantity=0.5, mode="long_short", **params)
        run([a], {BTC_4H: frame})
        run([b], {BTC_4H: changed})
        t_cut = int(frame["ts_event"].iloc[cut])
        before_a = [d for d in a.decisions if d[0] < t_cut]
        assert before_a == [d for d in b.decisions if d[0] < t_cut] and before_a
        assert a.decisions != b.decisions


@pytest.mark.parametrize(
    ("cls", "params", "message"),
    [
        (MacdCross, {"fast": 26, "slow": 12}, "fast \\(26\\) must be smaller"),
        (RsiReversion, {"oversold": 60.0}, "oversold < exit_long"),
        (DonchianBreakout, {"entry": 5, "exit": 10}, "exit \\(10\\) must not be longer"),
        (BollingerReversion, {"k": -1.0}, "k: Input should be greater than 0"),
        (BollingerReversion, {"size": 1.0}, "size: unknown key \\(not allowed here\\)"),
    ],
)
def test_bad_parameters_are_config_errors_naming_them(cls: type[BarSignal], params: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        cls(BTC_4H, quantity=0.5, **params)


def test_every_library_strategy_is_a_registered_builtin_with_a_docstring_of_its_rules() -> None:
    for name in ("macd_cross", "bollinger_reversion", "rsi_reversion", "donchian_breakout", "pairs", "xs_momentum"):
        cls = resolve_strategy(name)
        module = __import__(cls.__module__, fromlist=["_"])
        assert module.__doc__ and "Rules" in module.__doc__ or "rule" in (module.__doc__ or ""), name
    assert len(BUILTIN_STRATEGIES) >= 8
