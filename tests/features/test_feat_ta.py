"""Parity of the TA step kernels with TA-Lib and pandas on real bars and random walks.

Tolerances (compared after warm-up; the NaN pattern must match exactly):

=================  =======================================  ====================================
feature            reference                                tolerance
=================  =======================================  ====================================
rsi                talib.RSI                                rtol 1e-9, atol 1e-9 (0-100 scale)
macd               talib.MACD (macd, signal, hist)          rtol 1e-9, atol 1e-12 x price level
atr                talib.ATR                                rtol 1e-9
bollinger          talib.BBANDS matype=0 (mid, up, low)     rtol 1e-9
bollinger pctb/bw  from talib.BBANDS bands                  rtol 1e-9, atol 1e-9
stoch              talib.STOCH (SMA slowk/slowd)            rtol 1e-9, atol 1e-9 (0-100 scale)
stoch smooth=1     talib.STOCHF (fastk/fastd)               rtol 1e-9, atol 1e-9 (0-100 scale)
obv                talib.OBV                                exact (rtol 0)
vwap               pandas rolling sum(p*v)/sum(v)           rtol 1e-12
session_vwap       pandas groupby(session).cumsum           rtol 1e-12
realized_vol       pandas sqrt(rolling sum(log diff**2))    rtol 1e-9
=================  =======================================  ====================================
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import talib
from numba import njit
from numpy.lib.stride_tricks import sliding_window_view

from tradebus.features.kernels import ta
from tradebus.features.registry import FeatureKind

BARS_CSV = Path(__file__).resolve().parents[1] / "fixtures" / "bars" / "coinbase_btc_usd_4h_sample.csv"
BAR_SECONDS = 4 * 3600


@njit
def _batch(kind_id: int, params: np.ndarray, xs: np.ndarray, n_state: int, n_out: int) -> np.ndarray:
    state = np.zeros(n_state)
    out = np.empty((xs.shape[0], n_out))
    for t in range(xs.shape[0]):
        ta.dispatch(kind_id, state, params, xs[t], out[t])
    return out


def run_kind(kind: FeatureKind, columns: list[np.ndarray], **params: float) -> np.ndarray:
    """Run ``kind`` over aligned input columns; returns one row of outputs per event."""
    packed = kind.pack(params)
    xs = np.ascontiguousarray(np.column_stack(columns), dtype=np.float64)
    return _batch(kind.kind_id, packed, xs, kind.state_size(packed), len(kind.outputs))


def _ohlcv_from_csv() -> dict[str, np.ndarray]:
    raw = np.loadtxt(BARS_CSV, delimiter=",", skiprows=1)
    names = ("ts", "open", "high", "low", "close", "volume")
    return {name: np.ascontiguousarray(raw[:, i]) for i, name in enumerate(names)}


def _random_walk(seed: int, n: int = 3000, level: float = 100.0) -> dict[str, np.ndarray]:
    """Geometric random walk with consistent OHLC bars and lognormal volumes."""
    rng = np.random.default_rng(seed)
    close = level * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    open_ = np.concatenate(([level], close[:-1]))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, 0.004, n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, 0.004, n)))
    volume = rng.lognormal(3.0, 1.0, n)
    ts = 1_700_006_400_000.0 + BAR_SECONDS * 1000.0 * np.arange(n)  # from a UTC midnight: bars align with days
    return {"ts": ts, "open": open_, "high": high, "low": low, "close": close, "volume": volume}


SERIES = {
    "coinbase_btc_4h": _ohlcv_from_csv,
    "random_walk_a": lambda: _random_walk(1),
    "random_walk_b": lambda: _random_walk(2, level=0.05),
}


@pytest.fixture(params=sorted(SERIES), scope="module")
def bars(request: pytest.FixtureRequest) -> dict[str, np.ndarray]:
    return SERIES[request.param]()


def assert_matches(got: np.ndarray, ref: np.ndarray, *, rtol: float, atol: float = 0.0) -> None:
    """Same NaN positions (warm-up alignment) and values within tolerance after warm-up."""
    assert np.array_equal(np.isnan(got), np.isnan(ref)), (
        f"warm-up differs: first value at {np.argmax(~np.isnan(got))}, reference at {np.argmax(~np.isnan(ref))}"
    )
    assert np.isfinite(ref).sum() > len(ref) // 2
    np.testing.assert_allclose(got, ref, rtol=rtol, atol=atol)


def test_fixture_bars_are_real_ascending_4h_candles() -> None:
    b = _ohlcv_from_csv()
    assert len(b["close"]) == 3000
    steps = np.diff(b["ts"])
    assert np.all(steps > 0) and np.all(steps % (BAR_SECONDS * 1000) == 0)
    assert np.all(b["high"] >= np.maximum(b["open"], b["close"]))
    assert np.all(b["low"] <= np.minimum(b["open"], b["close"]))


@pytest.mark.parametrize("window", [14, 2, 50])
def test_rsi_matches_talib(bars: dict[str, np.ndarray], window: int) -> None:
    got = run_kind(ta.RSI, [bars["close"]], window=window)[:, 0]
    assert_matches(got, talib.RSI(bars["close"], timeperiod=window), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(("fast", "slow", "signal"), [(12, 26, 9), (5, 35, 5), (2, 3, 1)])
def test_macd_matches_talib(bars: dict[str, np.ndarray], fast: int, slow: int, signal: int) -> None:
    close = bars["close"]
    got = run_kind(ta.MACD, [close], fast=fast, slow=slow, signal=signal)
    ref = talib.MACD(close, fastperiod=fast, slowperiod=slow, signalperiod=signal)
    atol = 1e-12 * float(np.max(close))
    for i in range(len(ta.MACD.outputs)):
        assert_matches(got[:, i], ref[i], rtol=1e-9, atol=atol)


def test_macd_all_outputs_start_at_index_slow_plus_signal_minus_2(bars: dict[str, np.ndarray]) -> None:
    got = run_kind(ta.MACD, [bars["close"]], fast=12, slow=26, signal=9)
    first = np.argmax(~np.isnan(got), axis=0)
    assert first.tolist() == [33, 33, 33]


@pytest.mark.parametrize("window", [14, 1, 30])
def test_atr_matches_talib(bars: dict[str, np.ndarray], window: int) -> None:
    got = run_kind(ta.ATR, [bars["high"], bars["low"], bars["close"]], window=window)[:, 0]
    ref = talib.ATR(bars["high"], bars["low"], bars["close"], timeperiod=window)
    assert_matches(got, ref, rtol=1e-9)


@pytest.mark.parametrize(("window", "k"), [(20, 2.0), (5, 1.5), (50, 1.0)])
def test_bollinger_matches_talib_bbands(bars: dict[str, np.ndarray], window: int, k: float) -> None:
    close = bars["close"]
    got = run_kind(ta.BOLLINGER, [close], window=window, k=k)
    upper, mid, lower = talib.BBANDS(close, timeperiod=window, nbdevup=k, nbdevdn=k, matype=0)
    assert_matches(got[:, 0], mid, rtol=1e-9)
    assert_matches(got[:, 1], upper, rtol=1e-9)
    assert_matches(got[:, 2], lower, rtol=1e-9)
    assert_matches(got[:, 3], (close - lower) / (upper - lower), rtol=1e-9, atol=1e-9)
    assert_matches(got[:, 4], (upper - lower) / mid, rtol=1e-9, atol=1e-9)


def _rolling_pstd(x: np.ndarray, window: int) -> np.ndarray:
    """Two-pass population standard deviation of every full window (NaN before)."""
    ref = np.full(len(x), np.nan)
    ref[window - 1 :] = sliding_window_view(x, window).std(axis=1)
    return ref


def test_bollinger_deviation_is_population_std(bars: dict[str, np.ndarray]) -> None:
    close = bars["close"]
    got = run_kind(ta.BOLLINGER, [close], window=20, k=2.0)
    assert_matches((got[:, 1] - got[:, 2]) / 4.0, _rolling_pstd(close, 20), rtol=1e-9)


def test_bollinger_sd_does_not_drift_after_a_large_regime() -> None:
    # 2,000 values around 1e6 then 1,000 around 1 with sd 1e-3: running sums that only
    # add and subtract would keep ~1e-4 of residue from the first regime.
    rng = np.random.default_rng(3)
    x = np.concatenate((1e6 + 1e4 * rng.normal(size=2000), 1.0 + 1e-3 * rng.normal(size=1000)))
    got = run_kind(ta.BOLLINGER, [x], window=50, k=1.0)
    ref = _rolling_pstd(x, 50)
    np.testing.assert_allclose((got[2100:, 1] - got[2100:, 2]) / 2.0, ref[2100:], rtol=1e-9)


@pytest.mark.parametrize(("k_window", "smooth", "d_window"), [(14, 3, 3), (5, 3, 3), (9, 2, 4)])
def test_stoch_matches_talib_stoch(bars: dict[str, np.ndarray], k_window: int, smooth: int, d_window: int) -> None:
    h, lo, c = bars["high"], bars["low"], bars["close"]
    got = run_kind(ta.STOCH, [h, lo, c], k_window=k_window, smooth=smooth, d_window=d_window)
    slowk, slowd = talib.STOCH(
        h, lo, c, fastk_period=k_window, slowk_period=smooth, slowk_matype=0, slowd_period=d_window, slowd_matype=0
    )
    assert_matches(got[:, 0], slowk, rtol=1e-9, atol=1e-9)
    assert_matches(got[:, 1], slowd, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(("k_window", "d_window"), [(14, 3), (5, 1)])
def test_stoch_with_smooth_1_matches_talib_stochf(bars: dict[str, np.ndarray], k_window: int, d_window: int) -> None:
    h, lo, c = bars["high"], bars["low"], bars["close"]
    got = run_kind(ta.STOCH, [h, lo, c], k_window=k_window, smooth=1, d_window=d_window)
    fastk, fastd = talib.STOCHF(h, lo, c, fastk_period=k_window, fastd_period=d_window, fastd_matype=0)
    assert_matches(got[:, 0], fastk, rtol=1e-9, atol=1e-9)
    assert_matches(got[:, 1], fastd, rtol=1e-9, atol=1e-9)


def test_obv_matches_talib_exactly(bars: dict[str, np.ndarray]) -> None:
    got = run_kind(ta.OBV, [bars["close"], bars["volume"]])[:, 0]
    assert np.array_equal(got, talib.OBV(bars["close"], bars["volume"]))


@pytest.mark.parametrize("window", [20, 1, 96])
def test_vwap_matches_pandas_rolling_sums(bars: dict[str, np.ndarray], window: int) -> None:
    p, v = pd.Series(bars["close"]), pd.Series(bars["volume"])
    ref = ((p * v).rolling(window).sum() / v.rolling(window).sum()).to_numpy()
    got = run_kind(ta.VWAP, [bars["close"], bars["volume"]], window=window)[:, 0]
    assert_matches(got, ref, rtol=1e-12)


@pytest.mark.parametrize(("session", "offset"), [(86400.0, 0.0), (86400.0, 3600.0 * 20), (7 * 86400.0, 4 * 86400.0)])
@pytest.mark.parametrize("stamp", ["close_time_right_closed", "open_time_left_closed"])
def test_session_vwap_matches_pandas_groupby_cumsum(
    bars: dict[str, np.ndarray], session: float, offset: float, stamp: str
) -> None:
    t_open = bars["ts"] / 1000.0
    sid = np.floor((t_open - offset) / session)
    p, v = pd.Series(bars["close"]), pd.Series(bars["volume"])
    ref = ((p * v).groupby(sid).cumsum() / v.groupby(sid).cumsum()).to_numpy()
    # A bar covers [open, open + 4h): stamped at its close (Bar.ts_event) it needs
    # right-closed sessions, stamped at its open left-closed ones.
    right_closed = stamp == "close_time_right_closed"
    t = t_open + BAR_SECONDS if right_closed else t_open
    got = run_kind(
        ta.SESSION_VWAP, [bars["close"], bars["volume"], t],
        session_seconds=session, offset_seconds=offset, right_closed=int(right_closed),
    )[:, 0]
    assert_matches(got, ref, rtol=1e-12)


@pytest.mark.parametrize(("window", "ppy"), [(20, 0.0), (2, 0.0), (30, 6 * 365.0)])
def test_realized_vol_matches_pandas(bars: dict[str, np.ndarray], window: int, ppy: float) -> None:
    close = pd.Series(bars["close"])
    ref = np.sqrt((np.log(close).diff() ** 2).rolling(window).sum()).to_numpy()
    if ppy:
        ref = ref * np.sqrt(ppy / window)
    got = run_kind(ta.REALIZED_VOL, [bars["close"]], window=window, periods_per_year=ppy)[:, 0]
    assert_matches(got, ref, rtol=1e-9)


def _kind_inputs(kind: FeatureKind, b: dict[str, np.ndarray]) -> list[np.ndarray]:
    source = {"x": "close", "price": "close", "time": "ts"}
    return [b[source.get(name, name)] / (1000.0 if name == "time" else 1.0) for name in kind.inputs]


TALIB_EQUIVALENTS: dict[str, Callable[[dict[str, np.ndarray]], list[np.ndarray]]] = {
    "rsi": lambda b: [talib.RSI(b["close"], 14)],
    "macd": lambda b: list(talib.MACD(b["close"], 12, 26, 9)),
    "atr": lambda b: [talib.ATR(b["high"], b["low"], b["close"], 14)],
    "stoch": lambda b: list(talib.STOCH(b["high"], b["low"], b["close"], 14, 3, 0, 3, 0)),
    "obv": lambda b: [talib.OBV(b["close"], b["volume"])],
}


@pytest.mark.parametrize("name", sorted(TALIB_EQUIVALENTS))
def test_default_parameters_are_the_common_talib_settings(name: str) -> None:
    kind = next(k for k in ta.KINDS if k.name == name)
    b = _random_walk(7, n=400)
    got = run_kind(kind, _kind_inputs(kind, b))
    for i, ref in enumerate(TALIB_EQUIVALENTS[name](b)):
        assert_matches(got[:, i], ref, rtol=1e-9, atol=1e-9)
