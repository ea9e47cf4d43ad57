"""Core kernels against pandas, TA-Lib and exact references.

Tolerances (after warm-up; NaN positions must match exactly):

==========================  =====================================  ==========================
kind                        reference                              tolerance
==========================  =====================================  ==========================
ret, rolling_min/max/rank   pandas                                 exact
ewm_mean/var/std/zscore     pandas ewm(adjust=True)                exact (same recurrence)
log_ret                     np.log(s / s.shift(lag))               rtol 1e-14
rolling_sum/mean            pandas rolling                         rtol 1e-12
rolling_var/std            pandas rolling                         rtol 1e-8 (*)
rolling_zscore              pandas (mean, std)                     rtol 1e-7, atol 1e-7
rolling_var                 exact two-pass np.var(ddof=1)          rtol 1e-9 (real), 1e-11 (drift)
==========================  =====================================  ==========================

(*) pandas' add/remove Welford update never resets, so on the real BTC closes it
drifts ~1e-9 relative from the exact two-pass variance (e.g. a 2-bar window whose
exact variance is 10.9512: pandas 10.951200012, tradebus 10.951200000036); the
exact reference is the tighter check (worst case here 2.3e-10, a 2-bar window).

==========================  =====================================  ==========================
kind                        reference                              tolerance
==========================  =====================================  ==========================
ewm_skew/kurt               numpy weighted moments                 rtol 1e-9
sma, wma                    talib                                  rtol 1e-12
ema                         talib.EMA / its recurrence in Python   rtol 1e-14 / exact
==========================  =====================================  ==========================
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import talib
from feat_helpers import messy_series, real_bars
from numpy.lib.stride_tricks import sliding_window_view

from tradebus.errors import FeatureError
from tradebus.features.registry import get_kind
from tradebus.features.stepper import Stepper

CLOSE = real_bars()["close"]


def run(kind: str, x: np.ndarray, **params: float) -> np.ndarray:
    return Stepper(kind, **params).run(x)


def assert_close(actual: np.ndarray, expected: np.ndarray, rtol: float, atol: float = 0.0) -> None:
    assert np.array_equal(np.isnan(actual), np.isnan(expected))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


def noisy() -> np.ndarray:
    return messy_series(11, 4000, 0.03, True, level=30_000.0)


@pytest.mark.parametrize("lag", [1, 3])
def test_ret_equals_pandas_pct_change(lag: int) -> None:
    s = pd.Series(noisy())
    expected = s.pct_change(lag, fill_method=None).to_numpy()
    assert np.array_equal(run("ret", s.to_numpy(), lag=lag), expected, equal_nan=True)


def test_log_ret_equals_log_of_ratio() -> None:
    s = pd.Series(noisy())
    expected = np.log(s / s.shift(2)).to_numpy()
    assert_close(run("log_ret", s.to_numpy(), lag=2), expected, rtol=1e-14)  # libm vs numpy log: 1 ulp


@pytest.mark.parametrize(
    ("given", "pandas_kw"),
    [({"span": 10}, {"span": 10}), ({"halflife": 7.5}, {"halflife": 7.5}), ({"alpha": 0.07}, {"alpha": 0.07}),
     ({"com": 3}, {"com": 3})],
)
@pytest.mark.parametrize("series", ["real", "noisy"])
def test_ewm_kinds_equal_pandas_ewm_adjust_true(given: dict, pandas_kw: dict, series: str) -> None:
    x = CLOSE if series == "real" else noisy()
    kind = get_kind("ewm_mean")
    mp = int(kind.pack(given)[1])
    e = pd.Series(x).ewm(**pandas_kw, min_periods=mp, adjust=True)
    mean, var, std = e.mean().to_numpy(), e.var().to_numpy(), e.std().to_numpy()
    assert np.array_equal(run("ewm_mean", x, **given), mean, equal_nan=True)
    assert np.array_equal(run("ewm_var", x, **given), var, equal_nan=True)
    assert np.array_equal(run("ewm_std", x, **given), std, equal_nan=True)
    z = (x - mean) / std
    assert np.array_equal(run("ewm_zscore", x, **given), z, equal_nan=True)


def test_ewm_min_periods_defaults_to_span_rounded_up() -> None:
    assert get_kind("ewm_mean").pack({"span": 9.5})[1] == 10.0
    assert get_kind("ewm_mean").pack({"span": 20, "min_periods": 3})[1] == 3.0


def test_ewm_needs_exactly_one_decay_parameter() -> None:
    with pytest.raises(FeatureError, match="exactly one of"):
        Stepper("ewm_mean", span=3, alpha=0.5)
    with pytest.raises(FeatureError, match="exactly one of"):
        Stepper("ewm_std")


def _weighted_moments(x: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    skew = np.full(x.shape[0], np.nan)
    kurt = np.full(x.shape[0], np.nan)
    for t in range(x.shape[0]):
        w = (1.0 - alpha) ** np.arange(t, -1, -1.0)
        obs = ~np.isnan(x[: t + 1])
        w, v = w[obs], x[: t + 1][obs]
        mu = np.average(v, weights=w)
        m2 = np.average((v - mu) ** 2, weights=w)
        if m2 > 0:
            skew[t] = np.average((v - mu) ** 3, weights=w) / m2**1.5
            kurt[t] = np.average((v - mu) ** 4, weights=w) / m2**2 - 3.0
    return skew, kurt


def test_ewm_skew_and_kurt_equal_weighted_moments() -> None:
    x = np.diff(np.log(CLOSE[:700]))
    x[[50, 51, 300]] = np.nan
    skew, kurt = _weighted_moments(x, 0.1)
    got_skew = run("ewm_skew", x, alpha=0.1, min_periods=19)
    got_kurt = run("ewm_kurt", x, alpha=0.1, min_periods=19)
    ready = np.arange(x.shape[0]) >= 21  # 19 observations + the 2 NaNs before index 50 do not count
    np.testing.assert_allclose(got_skew[ready], skew[ready], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(got_kurt[ready], kurt[ready], rtol=1e-9, atol=1e-12)
    assert np.all(np.isnan(got_skew[:18]))


@pytest.mark.parametrize("window", [2, 20, 100])
@pytest.mark.parametrize("min_periods", [0, 1])
def test_rolling_kinds_equal_pandas_rolling(window: int, min_periods: int) -> None:
    for x, rtol in ((CLOSE, 1e-8), (noisy(), 1e-8)):
        mp = min_periods or window
        r = pd.Series(x).rolling(window, min_periods=mp)
        kw = {"window": window, "min_periods": min_periods}
        assert_close(run("rolling_sum", x, **kw), r.sum().to_numpy(), 1e-12)
        assert_close(run("rolling_mean", x, **kw), r.mean().to_numpy(), 1e-12)
        assert np.array_equal(run("rolling_min", x, **kw), r.min().to_numpy(), equal_nan=True)
        assert np.array_equal(run("rolling_max", x, **kw), r.max().to_numpy(), equal_nan=True)
        assert np.array_equal(run("rolling_rank", x, **kw), r.rank(pct=True).to_numpy(), equal_nan=True)
        assert_close(run("rolling_var", x, **kw), r.var().to_numpy(), rtol, atol=1e-9)
        assert_close(run("rolling_std", x, **kw), r.std().to_numpy(), rtol, atol=1e-9)
        if min_periods == 0 and x is CLOSE:
            exact = np.var(sliding_window_view(x, window), axis=1, ddof=1)
            np.testing.assert_allclose(run("rolling_var", x, **kw)[window - 1 :], exact, rtol=1e-9)
        z = ((pd.Series(x) - r.mean()) / r.std()).to_numpy().copy()
        z[~np.isfinite(z)] = np.nan
        assert_close(run("rolling_zscore", x, **kw), z, 1e-7, atol=1e-7)


def test_rolling_var_matches_exact_two_pass_on_a_drifting_level() -> None:
    x = 30_000.0 + np.cumsum(np.random.default_rng(5).normal(0.0, 0.5, 50_000))
    exact = np.var(sliding_window_view(x, 20), axis=1, ddof=1)
    got = run("rolling_var", x, window=20)[19:]
    np.testing.assert_allclose(got, exact, rtol=1e-11)


def test_rolling_var_of_a_constant_window_is_exactly_zero() -> None:
    x = np.concatenate([np.linspace(1.0, 2.0, 30), np.full(30, 1.2345678)])
    got = run("rolling_var", x, window=10)
    assert np.all(got[39:] == 0.0)
    assert np.all(run("rolling_std", x, window=10)[39:] == 0.0)
    assert np.all(np.isnan(run("rolling_zscore", x, window=10)[39:]))


def test_rolling_min_period_larger_than_window_is_rejected() -> None:
    with pytest.raises(FeatureError, match="min_periods"):
        Stepper("rolling_mean", window=5, min_periods=6)


@pytest.mark.parametrize("window", [1, 5, 30])
def test_sma_and_wma_equal_talib(window: int) -> None:
    np.testing.assert_allclose(run("sma", CLOSE, window=window), talib.SMA(CLOSE, window), rtol=1e-12)
    np.testing.assert_allclose(run("wma", CLOSE, window=window), talib.WMA(CLOSE, window), rtol=1e-12)
    assert np.array_equal(np.isnan(run("wma", CLOSE, window=window)), np.isnan(talib.WMA(CLOSE, window)))


@pytest.mark.parametrize("span", [1, 10, 50])
def test_ema_equals_talib_ema(span: int) -> None:
    got = run("ema", CLOSE, span=span)
    assert_close(got, talib.EMA(CLOSE, span), rtol=1e-14)  # TA-Lib's build may fuse multiply-add: 1 ulp
    k = 2.0 / (span + 1.0)
    ref = [np.nan] * (span - 1) + [sum(CLOSE[:span].tolist()) / span]
    for v in CLOSE[span:].tolist():
        ref.append((v - ref[-1]) * k + ref[-1])
    assert np.array_equal(got, np.asarray(ref), equal_nan=True)


def test_ema_skips_nan_and_repeats_the_last_value() -> None:
    got = run("ema", np.array([1.0, 2.0, np.nan, 3.0]), span=2)
    assert np.array_equal(got, np.array([np.nan, 1.5, 1.5, 1.5 + (3.0 - 1.5) * 2.0 / 3.0]), equal_nan=True)


def test_wma_recomputation_keeps_long_runs_exact() -> None:
    x = 50_000.0 + np.cumsum(np.random.default_rng(9).normal(0, 3.0, 200_000))
    np.testing.assert_allclose(run("wma", x, window=7)[-1000:], talib.WMA(x, 7)[-1000:], rtol=1e-13)


def test_wma_with_nan_in_window_is_nan_then_recovers() -> None:
    x = np.arange(1.0, 21.0)
    x[5] = np.nan
    got = run("wma", x, window=3)
    assert np.all(np.isnan(got[5:8]))
    assert got[8] == pytest.approx((7 * 1 + 8 * 2 + 9 * 3) / 6.0, rel=1e-15)


INF_KINDS = ("ewm_mean", "ewm_var", "ewm_std", "ewm_zscore", "ewm_skew", "ewm_kurt", "rolling_sum", "rolling_mean",
             "rolling_var", "rolling_std", "rolling_min", "rolling_max", "rolling_zscore", "rolling_rank", "sma", "ema",
             "wma")  # fmt: skip


@pytest.mark.parametrize("kind", INF_KINDS)
@pytest.mark.parametrize("min_periods", [0, 3])
def test_an_infinite_input_is_missing_as_nan_and_does_not_poison_the_run(kind: str, min_periods: int) -> None:
    x = noisy()[:300]
    with_inf, with_nan = x.copy(), x.copy()
    with_inf[[40, 41, 150]] = [np.inf, -np.inf, np.inf]
    with_nan[[40, 41, 150]] = np.nan
    window = {"span": 6} if kind.startswith("ewm") or kind == "ema" else {"window": 6}
    if min_periods and kind not in ("sma", "ema", "wma"):
        window["min_periods"] = min_periods
    got = Stepper(kind, **window).run(with_inf)
    assert np.array_equal(got, Stepper(kind, **window).run(with_nan), equal_nan=True)
    assert np.isfinite(got[200:]).sum() > 50  # the run goes on after the infinities


def test_rolling_and_ewm_kinds_leave_inf_out_as_pandas() -> None:
    x = noisy()[:300]
    x[[40, 41, 150]] = [np.inf, -np.inf, np.inf]
    r = pd.Series(x).rolling(6, min_periods=3)
    kw = {"window": 6, "min_periods": 3}
    assert_close(run("rolling_sum", x, **kw), r.sum().to_numpy(), 1e-12)
    assert_close(run("rolling_mean", x, **kw), r.mean().to_numpy(), 1e-12)
    assert_close(run("rolling_std", x, **kw), r.std().to_numpy(), 1e-8, atol=1e-9)
    assert np.array_equal(run("rolling_max", x, **kw), r.max().to_numpy(), equal_nan=True)
    e = pd.Series(x).ewm(span=6, min_periods=6)
    assert np.array_equal(run("ewm_mean", x, span=6), e.mean().to_numpy(), equal_nan=True)
    assert np.array_equal(run("ewm_std", x, span=6), e.std().to_numpy(), equal_nan=True)
