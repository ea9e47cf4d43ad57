"""Contract properties of the TA step kernels: registry, live == batch, no lookahead,
NaN skipping, degenerate inputs, session resets, snapshot/continue, parameter checks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from numba import njit

from tradebus.errors import FeatureError
from tradebus.features import registry
from tradebus.features.kernels import ta
from tradebus.features.registry import FeatureKind

KIND_NAMES = [k.name for k in ta.KINDS]
SMALL = {"rsi": {"window": 5}, "macd": {"fast": 3, "slow": 6, "signal": 4}, "atr": {"window": 5},
         "bollinger": {"window": 5}, "stoch": {"k_window": 5, "smooth": 2, "d_window": 3}, "vwap": {"window": 5},
         "session_vwap": {"session_seconds": 3600.0}, "obv": {}, "realized_vol": {"window": 5}}


def kind_of(name: str) -> FeatureKind:
    return registry.get_kind(name)


@njit
def _batch(kind_id: int, state: np.ndarray, params: np.ndarray, xs: np.ndarray, n_out: int) -> np.ndarray:
    out = np.empty((xs.shape[0], n_out))
    for t in range(xs.shape[0]):
        ta.dispatch(kind_id, state, params, xs[t], out[t])
    return out


def batch(kind: FeatureKind, xs: np.ndarray, state: np.ndarray | None = None, **params: float) -> np.ndarray:
    packed = kind.pack(params)
    if state is None:
        state = np.zeros(kind.state_size(packed))
    return _batch(kind.kind_id, state, packed, np.ascontiguousarray(xs, dtype=np.float64), len(kind.outputs))


def live(kind: FeatureKind, xs: np.ndarray, **params: float) -> np.ndarray:
    """One Python call of the kind's own step kernel per event, as a live stepper does."""
    packed = kind.pack(params)
    state = np.zeros(kind.state_size(packed))
    out = np.empty((len(xs), len(kind.outputs)))
    row = np.empty(len(kind.inputs))
    for t in range(len(xs)):
        row[:] = xs[t]
        kind.step(state, packed, row, out[t])
    return out


def market_inputs(kind: FeatureKind, n: int, seed: int) -> np.ndarray:
    """Plausible bar inputs (random walk OHLCV, close times 15 min apart) in the kind's input order."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    cols = {
        "x": close, "close": close, "price": close,
        "high": close * np.exp(np.abs(rng.normal(0.0, 0.005, n))),
        "low": close * np.exp(-np.abs(rng.normal(0.0, 0.005, n))),
        "volume": rng.lognormal(2.0, 1.0, n),
        "time": 1_700_000_000.0 + 900.0 * np.arange(1, n + 1),
    }
    return np.column_stack([cols[name] for name in kind.inputs])


def same(a: np.ndarray, b: np.ndarray) -> bool:
    return np.array_equal(a, b, equal_nan=True)


def test_every_ta_kind_is_registered_with_an_id_in_100_to_199() -> None:
    ids = [k.kind_id for k in ta.KINDS]
    assert len(set(ids)) == len(ids) and all(100 <= i <= 199 for i in ids)
    for kind in ta.KINDS:
        assert registry.get_kind(kind.name) is kind


@pytest.mark.parametrize("name", KIND_NAMES)
def test_live_step_calls_equal_batch_dispatch_bit_for_bit(name: str) -> None:
    kind = kind_of(name)
    xs = market_inputs(kind, 400, seed=11)
    xs[[50, 51, 200], 0] = np.nan
    xs[120, -1] = np.inf
    assert same(live(kind, xs, **SMALL[name]), batch(kind, xs, **SMALL[name]))


@pytest.mark.parametrize("name", KIND_NAMES)
def test_output_at_t_does_not_change_when_inputs_after_t_change(name: str) -> None:
    kind = kind_of(name)
    xs = market_inputs(kind, 300, seed=12)
    t = 150
    perturbed = xs.copy()
    perturbed[t + 1 :, : len(kind.inputs) - (name == "session_vwap")] *= 1.37
    a = batch(kind, xs, **SMALL[name])
    b = batch(kind, perturbed, **SMALL[name])
    assert same(a[: t + 1], b[: t + 1])
    assert not same(a[t + 1 :], b[t + 1 :])


@pytest.mark.parametrize("name", KIND_NAMES)
def test_non_finite_events_are_skipped_and_repeat_the_last_outputs(name: str) -> None:
    kind = kind_of(name)
    clean = market_inputs(kind, 200, seed=13)
    bad_rows = [3, 40, 41, 42, 100, 199]
    dirty = np.insert(clean, bad_rows, clean[0], axis=0)
    positions = [r + i for i, r in enumerate(bad_rows)]
    for j, pos in enumerate(positions):
        dirty[pos, j % len(kind.inputs)] = (np.nan, np.inf, -np.inf)[j % 3]
    got = batch(kind, dirty, **SMALL[name])
    keep = np.setdiff1d(np.arange(len(dirty)), positions)
    assert same(got[keep], batch(kind, clean, **SMALL[name]))
    for pos in positions:
        assert same(got[pos], got[pos - 1])


@pytest.mark.parametrize("name", KIND_NAMES)
def test_ready_flag_is_set_exactly_when_outputs_become_defined(name: str) -> None:
    kind = kind_of(name)
    packed = kind.pack(SMALL[name])
    state = np.zeros(kind.state_size(packed))
    out = np.empty(len(kind.outputs))
    for row in market_inputs(kind, 60, seed=14):
        kind.step(state, packed, row, out)
        assert (state[0] == 1.0) == bool(np.all(np.isfinite(out)))
    assert state[0] == 1.0


@pytest.mark.parametrize(
    ("name", "params", "first_ready"),
    [
        ("rsi", {"window": 14}, 14),
        ("macd", {"fast": 12, "slow": 26, "signal": 9}, 33),
        ("atr", {"window": 14}, 14),
        ("bollinger", {"window": 20}, 19),
        ("stoch", {"k_window": 14, "smooth": 3, "d_window": 3}, 17),
        ("vwap", {"window": 20}, 19),
        ("session_vwap", {}, 0),
        ("obv", {}, 0),
        ("realized_vol", {"window": 20}, 20),
    ],
)
def test_first_defined_output_is_at_the_documented_index(name: str, params: dict[str, float], first_ready: int) -> None:
    kind = kind_of(name)
    got = batch(kind, market_inputs(kind, 100, seed=15), **params)
    assert int(np.argmax(np.isfinite(got[:, 0]))) == first_ready
    assert kind.warmup is not None and kind.warmup(kind.pack(params)) == first_ready + 1


CONSTANT_EXPECTED = {
    "rsi": [50.0],
    "macd": [0.0, 0.0, 0.0],
    "atr": [0.0],
    "bollinger": [7.5, 7.5, 7.5, 0.5, 0.0],
    "stoch": [50.0, 50.0],
    "vwap": [7.5],
    "session_vwap": [7.5],
    "obv": [7.5],
    "realized_vol": [0.0],
}


@pytest.mark.parametrize("name", KIND_NAMES)
def test_constant_input_gives_the_documented_finite_values(name: str) -> None:
    kind = kind_of(name)
    xs = np.full((80, len(kind.inputs)), 7.5)
    if "time" in kind.inputs:
        xs[:, kind.inputs.index("time")] = 1_700_000_000.0 + np.arange(80.0)
    got = batch(kind, xs, **SMALL[name])
    assert np.array_equal(got[-1], CONSTANT_EXPECTED[name])


def test_bollinger_flat_window_after_movement_has_exactly_zero_width() -> None:
    x = np.concatenate((100.0 + np.sin(np.arange(37.0)), np.full(20, 0.1)))
    got = batch(ta.BOLLINGER, x[:, None], window=20, k=2.0)
    assert got[-1].tolist() == [0.1, 0.1, 0.1, 0.5, 0.0]
    assert got[-2, 1] > got[-2, 2]


def test_realized_vol_is_exactly_zero_once_the_window_is_flat() -> None:
    x = np.concatenate((100.0 * np.exp(0.03 * np.sin(np.arange(33.0))), np.full(11, 97.0)))
    got = batch(ta.REALIZED_VOL, x[:, None], window=10)[:, 0]
    assert got[-2] > 0.0 and got[-1] == 0.0


def test_vwap_of_an_all_zero_volume_window_is_nan_then_recovers() -> None:
    pv = np.array([[10.0, 1.0], [11.0, 0.0], [12.0, 0.0], [13.0, 0.0], [14.0, 2.0]])
    got = batch(ta.VWAP, pv, window=3)[:, 0]
    assert np.isnan(got[:2]).all()
    assert got[2] == 10.0 and np.isnan(got[3]) and got[4] == 14.0


def test_negative_volume_is_skipped_by_volume_kinds() -> None:
    rows = np.array([[10.0, 1.0], [11.0, -5.0], [12.0, 1.0]])
    assert batch(ta.OBV, rows)[:, 0].tolist() == [1.0, 1.0, 2.0]
    vwap = batch(ta.VWAP, rows, window=2)[:, 0]
    assert np.isnan(vwap[1]) and vwap[2] == 11.0


DAY = 86400.0


def session_rows(*events: tuple[float, float, float]) -> np.ndarray:
    return np.array(events, dtype=np.float64)


def test_session_vwap_left_closed_sessions_reset_on_an_event_at_midnight() -> None:
    rows = session_rows((100.0, 1.0, DAY - 10), (110.0, 1.0, DAY - 5), (200.0, 2.0, DAY), (210.0, 2.0, DAY + 5))
    assert batch(ta.SESSION_VWAP, rows, right_closed=0)[:, 0].tolist() == [100.0, 105.0, 200.0, 205.0]


def test_session_vwap_by_default_keeps_the_bar_closing_at_midnight_in_its_day() -> None:
    rows = session_rows((100.0, 1.0, DAY - 10), (110.0, 1.0, DAY - 5), (200.0, 2.0, DAY), (210.0, 2.0, DAY + 5))
    got = batch(ta.SESSION_VWAP, rows)[:, 0]
    assert got.tolist() == [100.0, 105.0, (100.0 + 110.0 + 400.0) / 4.0, 210.0]


def test_session_vwap_offset_moves_the_boundary() -> None:
    rows = session_rows((100.0, 1.0, DAY + 3600), (120.0, 1.0, DAY + 3601))
    assert batch(ta.SESSION_VWAP, rows, offset_seconds=3600.0)[:, 0].tolist() == [100.0, 120.0]
    assert batch(ta.SESSION_VWAP, rows)[:, 0].tolist() == [100.0, 110.0]


def test_session_vwap_skips_late_events_from_an_earlier_session_and_survives_gaps() -> None:
    rows = session_rows(
        (100.0, 1.0, DAY + 1), (50.0, 9.0, DAY - 1), (120.0, 1.0, DAY + 2), (300.0, 1.0, 10 * DAY), (0.0, 0.0, 10 * DAY)
    )
    assert batch(ta.SESSION_VWAP, rows)[:, 0].tolist() == [100.0, 100.0, 110.0, 300.0, 300.0]


def test_session_vwap_is_nan_while_the_session_has_no_volume() -> None:
    rows = session_rows((100.0, 3.0, 10.0), (101.0, 0.0, DAY + 1), (102.0, 1.0, DAY + 2))
    got = batch(ta.SESSION_VWAP, rows)[:, 0]
    assert got[0] == 100.0 and np.isnan(got[1]) and got[2] == 102.0


@pytest.mark.parametrize("name", ["stoch", "bollinger", "macd", "realized_vol"])
def test_copied_state_continues_exactly_like_an_uninterrupted_run(name: str) -> None:
    kind = kind_of(name)
    xs = market_inputs(kind, 500, seed=16)
    full = batch(kind, xs, **SMALL[name])
    packed = kind.pack(SMALL[name])
    state = np.zeros(kind.state_size(packed))
    head = batch(kind, xs[:237], state=state, **SMALL[name])
    snapshot = state.copy()
    batch(kind, xs[237:300], state=state, **SMALL[name])  # the original keeps running
    tail = batch(kind, xs[237:], state=snapshot, **SMALL[name])
    assert same(np.vstack((head, tail)), full)


@pytest.mark.parametrize(
    ("name", "params", "match"),
    [
        ("macd", {"fast": 26, "slow": 12}, "'fast'.*smaller than 'slow'"),
        ("macd", {"fast": 26}, "'fast'.*smaller than 'slow'"),
        ("rsi", {"window": 1}, "'window' must be >= 2"),
        ("bollinger", {"window": 20.5}, "'window' must be a whole number"),
        ("bollinger", {"k": -1.0}, "'k' must be >= 0"),
        ("stoch", {"d_window": 0}, "'d_window' must be >= 1"),
        ("session_vwap", {"right_closed": 2}, "'right_closed' must be <= 1"),
        ("realized_vol", {"periods_per_year": float("nan")}, "'periods_per_year' must be finite"),
        ("vwap", {"span": 3}, "unknown parameter"),
    ],
)
def test_bad_parameters_raise_feature_error_naming_the_parameter(
    name: str, params: dict[str, float], match: str
) -> None:
    with pytest.raises(FeatureError, match=match):
        kind_of(name).pack(params)


_VALUES = st.one_of(
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
    st.sampled_from([np.nan, np.inf, -np.inf, 0.0, 1.0]),
)


@pytest.mark.parametrize("name", KIND_NAMES)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_arbitrary_inputs_never_raise_and_live_equals_batch(name: str, data: st.DataObject) -> None:
    kind = kind_of(name)
    xs = data.draw(arrays(np.float64, st.tuples(st.integers(1, 60), st.just(len(kind.inputs))), elements=_VALUES))
    got = batch(kind, xs, **SMALL[name])
    assert same(got, live(kind, xs, **SMALL[name]))
    if name not in ("stoch", "bollinger", "vwap", "session_vwap"):
        # Kinds without an input product or a ratio of ranges stay finite on bounded inputs.
        assert not np.isinf(got).any()
