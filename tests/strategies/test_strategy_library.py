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
from tradebus.strategies.bollinger import BollingerReversion, bollinger_signal
from tradebus.strategies.donchian import DonchianBreakout
from tradebus.strategies.macd import MacdCross
from tradebus.strategies.rsi import RsiReversion
from tradebus.strategies.signal import BarSignal

from strat_helpers import BTC_4H, H4_NS, bars_4h, run

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
        # a close outside a band arms that side only; a close inside the bands takes the armed entry
        if close[i] < lower[i]:
            armed["long"], armed["short"] = True, False
        elif close[i] > upper[i]:
            armed["long"], armed["short"] = False, True
        elif armed["long"] or armed["short"]:
            entry = 1.0 if armed["long"] else -1.0
            armed["long"] = armed["short"] = False
            return entry
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


def _closes_frame(closes: list[float]) -> pd.DataFrame:
    """Bars of ``closes`` (open = high = low = close), 4 h apart, stamped at their close."""
    ts = pd.Series(np.arange(1, len(closes) + 1, dtype=np.int64) * H4_NS)
    close = np.asarray(closes, dtype=float)
    return pd.DataFrame({"ts_event": ts, "ts_init": ts, "open": close, "high": close, "low": close, "close": close,
                         "volume": np.ones(len(close))})  # fmt: skip


# 20 quiet bars, a close below the lower band (arms a long), then one far above the upper band,
# then closes back inside the bands: the long set-up was never taken, the excursion above is faded.
THROUGH_THE_BAND = [100.0, 101.0] * 10 + [90.0, 115.0, 104.0, 103.0, 102.0, 101.0, 100.0, 99.0]


@pytest.mark.parametrize("mode", ["long_short", "long_only"])
def test_bollinger_never_enters_on_a_close_outside_the_bands(mode: str) -> None:
    frame = _closes_frame(THROUGH_THE_BAND)
    close = frame["close"].to_numpy()
    upper, mid, lower = talib.BBANDS(close, 20, 2.0, 2.0, 0)
    assert close[20] < lower[20] and close[21] > upper[21] and lower[22] <= close[22] <= upper[22]
    strategy = BollingerReversion(BTC_4H, quantity=0.5, mode=mode)
    run([strategy], {BTC_4H: frame})
    ts = frame["ts_event"].to_numpy()
    got = [(t, target) for t, target, _ in strategy.decisions]
    # the close above the upper band arms a short (and drops the armed long); the next close,
    # back inside, enters it; the close at the middle band ends it
    assert got == ([(ts[22], -1.0), (ts[25], 0.0)] if mode == "long_short" else [])
    assert got == bollinger_reference(frame, 20, 2.0, mode == "long_only")


def test_bollinger_signal_kernel_never_enters_on_a_close_outside_the_bands() -> None:
    close = np.asarray(THROUGH_THE_BAND)
    upper, mid, lower = talib.BBANDS(close, 20, 2.0, 2.0, 0)
    params = np.array([0.0, 1.0, 2.0])
    state = np.zeros(2)
    target, got = 0.0, []
    for i, c in enumerate(close):
        raw = bollinger_signal(np.array([lower[i], mid[i], upper[i]]), c, c, c, c, 1.0, target, params, state)
        if raw == raw and raw != target:
            target = raw
            got.append((i, raw))
    assert got == [(22, -1.0), (25, 0.0)]
