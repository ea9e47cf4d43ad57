"""Typed TA facades: defaults, live update == batch run, named outputs, snapshot/restore,
and the same kernels driven by a feature bank from specs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import talib

from tradebus.errors import FeatureError
from tradebus.features import ta
from tradebus.features.batch import compute_features
from tradebus.features.kernels import ta as kernels
from tradebus.features.stepper import Stepper

BARS_CSV = Path(__file__).resolve().parents[1] / "fixtures" / "bars" / "coinbase_btc_usd_4h_sample.csv"
BAR_NS = 4 * 3600 * 10**9


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    """Real 4h bars with tradebus timestamps: ``ts_event`` = bar close, int64 ns."""
    raw = pd.read_csv(BARS_CSV)
    raw["ts_event"] = raw["ts"].astype(np.int64) * 10**6 + BAR_NS
    return raw.drop(columns="ts")


def make(cls: type[Stepper]) -> Stepper:
    return cls()


def columns_for(stepper: Stepper, df: pd.DataFrame) -> list[np.ndarray]:
    source = {"x": "close", "time": "time"}
    time_s = df["ts_event"].to_numpy(np.float64) / 1e9
    cols = []
    for name in stepper.kind.inputs:
        field = source.get(name, name)
        cols.append(time_s if field == "time" else np.array(df[field], dtype=np.float64))
    return cols


FACADES = [ta.Rsi, ta.Macd, ta.Atr, ta.Bollinger, ta.Stochastic, ta.Vwap, ta.SessionVwap, ta.Obv, ta.RealizedVol]


def test_public_names_are_pinned() -> None:
    assert sorted(ta.__all__) == sorted(cls.__name__ for cls in FACADES)


@pytest.mark.parametrize("cls", FACADES, ids=lambda c: c.__name__)
def test_facade_defaults_are_the_kind_defaults(cls: type[Stepper]) -> None:
    stepper = make(cls)
    kind = next(k for k in kernels.KINDS if k.name == cls.KIND)
    assert stepper.kind is kind
    assert stepper.params == {p.name: p.default for p in kind.params}


@pytest.mark.parametrize("cls", FACADES, ids=lambda c: c.__name__)
def test_update_per_bar_equals_run_bit_for_bit(cls: type[Stepper], bars: pd.DataFrame) -> None:
    cols = columns_for(make(cls), bars.iloc[:600])
    cols[0][[100, 101, 350]] = np.nan  # skipped events must behave the same both ways
    live = make(cls)
    rows = [live.update(*row) for row in zip(*cols, strict=True)]
    batch = make(cls).run(*cols)
    assert np.array_equal(np.asarray(rows, dtype=np.float64), batch, equal_nan=True)
    assert live.ready


def test_named_outputs_follow_the_last_update(bars: pd.DataFrame) -> None:
    close = bars["close"].to_numpy()
    macd, bb = ta.Macd(), ta.Bollinger(window=10, k=1.5)
    for v in close[:200]:
        m, b = macd.update(v), bb.update(v)
    assert (macd.macd, macd.signal, macd.hist) == m
    assert (bb.mid, bb.upper, bb.lower, bb.pctb, bb.bandwidth) == b
    stoch = ta.Stochastic()
    k, d = stoch.run(bars[["high", "low", "close"]].to_numpy())[-1]
    assert (stoch.k, stoch.d) == (k, d)


def test_atr_facade_matches_talib_on_real_bars(bars: pd.DataFrame) -> None:
    h, lo, c = (bars[f].to_numpy() for f in ("high", "low", "close"))
    atr = ta.Atr(window=14)
    got = np.array([atr.update(*row) for row in zip(h, lo, c, strict=True)])
    np.testing.assert_allclose(got, talib.ATR(h, lo, c, timeperiod=14), rtol=1e-9)


@pytest.mark.parametrize("cls", [ta.Stochastic, ta.SessionVwap, ta.Bollinger], ids=lambda c: c.__name__)
def test_restored_stepper_continues_exactly_like_the_original(cls: type[Stepper], bars: pd.DataFrame) -> None:
    cols = columns_for(make(cls), bars)
    split = 1234
    original = make(cls)
    original.run(*(c[:split] for c in cols))
    restored = type(original).from_state(original.state, **original.params)
    assert not restored.ready or np.isnan(restored.value)  # outputs recomputed on next update
    tail = [c[split:] for c in cols]
    assert np.array_equal(restored.run(*tail), original.run(*tail), equal_nan=True)


def test_from_state_rejects_a_state_of_another_window() -> None:
    state = ta.Bollinger(window=20).state
    with pytest.raises(FeatureError, match="state has shape"):
        ta.Bollinger.from_state(state, window=21)


def test_reset_forgets_the_history(bars: pd.DataFrame) -> None:
    rsi = ta.Rsi()
    first = rsi.run(bars["close"].to_numpy())
    rsi.reset()
    assert not rsi.ready
    assert np.array_equal(rsi.run(bars["close"].to_numpy()), first, equal_nan=True)


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: ta.Macd(fast=30), "'fast'.*smaller than 'slow'"),
        (lambda: ta.Rsi(window=1), "'window' must be >= 2"),
        (lambda: ta.Stochastic(smooth=0), "'smooth' must be >= 1"),
        (lambda: ta.RealizedVol(periods_per_year=-1.0), "'periods_per_year' must be >= 0"),
    ],
)
def test_bad_facade_parameters_raise_feature_error(build: object, match: str) -> None:
    with pytest.raises(FeatureError, match=match):
        build()  # type: ignore[operator]


def test_session_vwap_facade_takes_right_closed_as_bool() -> None:
    assert ta.SessionVwap(right_closed=False).params["right_closed"] == 0.0
    assert ta.SessionVwap().params["right_closed"] == 1.0


BANK_SPECS = [
    {"name": "rsi14", "kind": "rsi", "input": "close"},
    {"name": "macd", "kind": "macd", "input": "close"},
    {"name": "atr14", "kind": "atr"},
    {"name": "bb", "kind": "bollinger", "params": {"window": 20, "k": 2.0}, "input": "close"},
    {"name": "stoch", "kind": "stoch"},
    {"name": "vwap", "kind": "vwap", "params": {"window": 30}},
    {"name": "svwap", "kind": "session_vwap"},
    {"name": "obv", "kind": "obv"},
    {"name": "rv", "kind": "realized_vol", "params": {"window": 42, "periods_per_year": 2190}, "input": "close"},
]


def test_bank_from_specs_with_default_inputs_equals_the_facades(bars: pd.DataFrame) -> None:
    frame = compute_features(bars, BANK_SPECS)
    facades = {
        "rsi14": ta.Rsi(), "macd": ta.Macd(), "atr14": ta.Atr(), "bb": ta.Bollinger(), "stoch": ta.Stochastic(),
        "vwap": ta.Vwap(window=30), "svwap": ta.SessionVwap(), "obv": ta.Obv(),
        "rv": ta.RealizedVol(window=42, periods_per_year=2190),
    }
    for name, stepper in facades.items():
        got = stepper.run(*columns_for(stepper, bars))
        outputs = stepper.kind.outputs
        cols = [name] if len(outputs) == 1 else [f"{name}.{o}" for o in outputs]
        assert np.array_equal(frame[cols].to_numpy().reshape(got.shape), got, equal_nan=True), name
