"""Regime kernels (tradebus.features.kernels.regime) against their references."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.stats import norm

from tradebus.errors import FeatureError
from tradebus.features.kernels import regime as R
from tradebus.features.regimes import Cusum, Garch, Hmm, Hurst
from tradebus.features.registry import FeatureKind, get_kind
from tradebus.features.stepper import Stepper

RTOL = 1e-9


def run_kind(kind: FeatureKind, kw: dict, rows: np.ndarray, state: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Drive ``kind.step`` over ``rows`` (one event per row); return (outputs, final state)."""
    params = kind.pack(kw)
    st = np.zeros(kind.state_size(params)) if state is None else state
    rows = np.ascontiguousarray(np.asarray(rows, dtype=np.float64).reshape(len(rows), -1))
    res = np.empty((rows.shape[0], len(kind.outputs)))
    out = np.empty(len(kind.outputs))
    for t in range(rows.shape[0]):
        kind.step(st, params, rows[t], out)
        res[t] = out
    return res, st


def ar1(n: int, phi: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=n)
    e = np.zeros(n)
    for t in range(1, n):
        e[t] = phi * e[t - 1] + z[t]
    return e


def cusum_reference(increments: list[float], h: float) -> list[tuple[float, float, float]]:
    s_pos = s_neg = 0.0
    res = []
    for d in increments:
        s_pos, s_neg = max(0.0, s_pos + d), min(0.0, s_neg + d)
        ev = 0.0
        if s_neg < -h:
            s_neg, ev = 0.0, -1.0
        elif s_pos > h:
            s_pos, ev = 0.0, 1.0
        res.append((ev, s_pos, s_neg))
    return res


def hurst_reference(window: np.ndarray, max_lag: int) -> float:
    lags = np.arange(1, max_lag + 1)
    variances = np.array([np.var(window[k:] - window[:-k]) for k in lags])
    slope = np.polyfit(np.log(lags), np.log(variances), 1)[0]
    return 0.5 * slope


def garch_reference(r: np.ndarray, omega: float, alpha: float, beta: float, h1: float) -> np.ndarray:
    h = np.empty(len(r) + 1)
    h[0] = h1
    for t in range(len(r)):
        h[t + 1] = omega + alpha * r[t] ** 2 + beta * h[t]
    return np.c_[h[1:], np.sqrt(h[1:]), r / np.sqrt(h[:-1])]


def hmm_forward_reference(x: np.ndarray, A: np.ndarray, mu: np.ndarray, sd: np.ndarray, pi: np.ndarray) -> np.ndarray:
    alpha = pi * norm.pdf(x[0], mu, sd)
    alpha /= alpha.sum()
    res = [alpha]
    for t in range(1, len(x)):
        alpha = (alpha @ A) * norm.pdf(x[t], mu, sd)
        alpha /= alpha.sum()
        res.append(alpha)
    return np.array(res)


def test_kinds_are_registered_with_their_ids() -> None:
    assert [k.kind_id for k in R.KINDS] == [300, 301, 302, 303]
    for kind in R.KINDS:
        assert get_kind(kind.name) is kind


def test_cusum_on_levels_matches_the_reference_filter() -> None:
    prices = 100.0 + np.random.default_rng(3).normal(size=500).cumsum()
    res, _ = run_kind(R.CUSUM, {"threshold": 2.5}, prices)
    assert np.isnan(res[0]).all()
    expected = cusum_reference(list(np.diff(prices)), 2.5)
    assert np.array_equal(res[1:], np.array(expected))
    assert 10 < np.count_nonzero(res[1:, 0]) < 200


def test_cusum_on_returns_uses_the_input_as_increment() -> None:
    r = np.random.default_rng(4).normal(scale=0.01, size=300)
    res, _ = run_kind(R.CUSUM, {"threshold": 0.02, "input_is_return": 1}, r)
    assert np.array_equal(res, np.array(cusum_reference(list(r), 0.02)))


def test_cusum_fires_once_then_resets_on_a_steady_rise() -> None:
    res, _ = run_kind(R.CUSUM, {"threshold": 2.5}, np.arange(8.0))
    # increments of 1: s_pos 1, 2, 3 -> event, reset; 1, 2, 3 -> event
    assert res[1:, 0].tolist() == [0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0]
    assert res[1:, 1].tolist() == [1.0, 2.0, 0.0, 1.0, 2.0, 0.0, 1.0]
    assert (res[1:, 2] == 0.0).all()


def test_cusum_skipped_step_has_no_event_and_next_increment_spans_the_gap() -> None:
    res, _ = run_kind(R.CUSUM, {"threshold": 2.5}, [0.0, 1.0, np.nan, 4.0])
    assert res[2].tolist() == [0.0, 1.0, 0.0]
    assert res[3].tolist() == [1.0, 0.0, 0.0]


@pytest.mark.parametrize("max_lag", [2, 10, 32])
def test_hurst_matches_numpy_lag_variance_reference(max_lag: int) -> None:
    x = np.random.default_rng(5).normal(size=400).cumsum() + 1000.0
    w = 128
    res, _ = run_kind(R.HURST, {"window": w, "max_lag": max_lag}, x)
    assert np.isnan(res[: w - 1]).all()
    for t in range(w - 1, len(x), 5):
        np.testing.assert_allclose(res[t, 0], hurst_reference(x[t - w + 1 : t + 1], max_lag), rtol=RTOL)


def test_hurst_separates_random_walk_trending_and_mean_reverting_series() -> None:
    kw = {"window": 256, "max_lag": 16}
    walk, _ = run_kind(R.HURST, kw, np.random.default_rng(6).normal(size=3000).cumsum())
    trending, _ = run_kind(R.HURST, kw, ar1(3000, 0.7, seed=7).cumsum())
    reverting, _ = run_kind(R.HURST, kw, ar1(3000, 0.5, seed=8))
    assert abs(np.nanmean(walk) - 0.5) < 0.06
    assert np.nanmean(trending) > 0.65
    assert np.nanmean(reverting) < 0.3


def test_hurst_of_constant_series_is_nan() -> None:
    res, st = run_kind(R.HURST, {"window": 16, "max_lag": 4}, np.full(40, 7.0))
    assert np.isnan(res).all()
    assert st[0] == 1.0


def test_hurst_rejects_max_lag_above_half_window() -> None:
    with pytest.raises(FeatureError, match="max_lag"):
        R.HURST.pack({"window": 20, "max_lag": 11})


@pytest.mark.parametrize("init_var", [0.0, 4e-4])
def test_garch_matches_numpy_recursion(init_var: float) -> None:
    r = np.random.default_rng(9).standard_t(5, size=800) * 0.01
    omega, alpha, beta = 2e-6, 0.08, 0.9
    res, _ = run_kind(R.GARCH, {"omega": omega, "alpha": alpha, "beta": beta, "init_var": init_var}, r)
    h1 = init_var if init_var > 0 else omega / (1 - alpha - beta)
    np.testing.assert_allclose(res, garch_reference(r, omega, alpha, beta, h1), rtol=RTOL)


def test_garch_without_stationarity_needs_an_initial_variance() -> None:
    with pytest.raises(FeatureError, match="init_var"):
        R.GARCH.pack({"omega": 1e-6, "alpha": 0.2, "beta": 0.8})
    R.GARCH.pack({"omega": 1e-6, "alpha": 0.2, "beta": 0.8, "init_var": 1e-4})


HMM_MODELS = {
    2: (np.array([[0.97, 0.03], [0.05, 0.95]]), np.array([0.001, -0.002]), np.array([0.01, 0.03]), None),
    3: (
        np.array([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]]),
        np.array([-1.0, 0.0, 1.5]),
        np.array([0.5, 1.0, 2.0]),
        np.array([0.2, 0.5, 0.3]),
    ),
    4: (
        np.full((4, 4), 0.1) + np.eye(4) * 0.6,
        np.array([-2.0, -0.5, 0.5, 2.0]),
        np.array([1.0, 0.3, 0.3, 1.0]),
        np.array([0.1, 0.4, 0.4, 0.1]),
    ),
}


@pytest.mark.parametrize("k", [2, 3, 4])
def test_hmm_filter_matches_numpy_forward_algorithm(k: int) -> None:
    A, mu, sd, pi = HMM_MODELS[k]
    rng = np.random.default_rng(k)
    x = rng.normal(loc=rng.choice(mu, size=600), scale=sd.max())
    kw: dict = {"transition": A.tolist(), "means": mu, "stds": list(sd)}
    if pi is not None:
        kw["init"] = pi.tolist()
    res, _ = run_kind(R.HMM, kw, x)
    ref = hmm_forward_reference(x, A, mu, sd, pi if pi is not None else np.full(k, 1.0 / k))
    np.testing.assert_allclose(res[:, :k], ref, rtol=RTOL, atol=1e-14)
    assert np.isnan(res[:, k:]).all()
    np.testing.assert_allclose(res[:, :k].sum(axis=1), 1.0, rtol=1e-12)


def test_hmm_accepts_flat_parameters_equal_to_matrix_form() -> None:
    A, mu, sd, _ = HMM_MODELS[2]
    flat = {"n_states": 2, "mean0": mu[0], "mean1": mu[1], "std0": sd[0], "std1": sd[1]}
    flat.update({f"a{i}{j}": A[i, j] for i in range(2) for j in range(2)})
    nested = {"transition": A.tolist(), "means": mu.tolist(), "stds": sd.tolist()}
    assert np.array_equal(R.HMM.pack(flat), R.HMM.pack(nested))


def test_hmm_outlier_far_from_every_state_keeps_probabilities_finite() -> None:
    A, mu, sd, _ = HMM_MODELS[2]
    kw = {"transition": A.tolist(), "means": mu.tolist(), "stds": sd.tolist()}
    res, _ = run_kind(R.HMM, kw, [0.0, 1e6, 1e200, 0.0])
    assert np.isfinite(res[:, :2]).all()
    np.testing.assert_allclose(res[:, :2].sum(axis=1), 1.0)
    assert res[1, 1] == pytest.approx(1.0)  # the wider state explains a huge jump


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"transition": [[0.5, 0.4], [0.5, 0.5]], "means": [0, 1], "stds": [1, 1]}, "row 0"),
        ({"transition": [[1, 0], [0, 1]], "means": [0, 1], "stds": [1, 0]}, r"stds\[1\]"),
        ({"transition": [[1, 0], [0, 1]], "means": [0, 1], "stds": [1, 1], "init": [0.7, 0.7]}, "init"),
        ({"transition": [[1, 0], [0, 1]], "means": [0, 1, 2], "stds": [1, 1, 1]}, "3x3"),
        ({"transition": [[1.0]], "means": [0], "stds": [1]}, "n_states"),
        ({"means": [0, 1], "stds": [1, 1]}, "transition missing"),
        ({"transition": [[1, 0], [0, 1]], "stds": [1, 1], "n_states": 2}, "means missing"),
    ],
)
def test_hmm_rejects_invalid_model(kw: dict, match: str) -> None:
    with pytest.raises(FeatureError, match=match):
        R.HMM.pack(kw)


CASES = [
    (R.CUSUM, {"threshold": 1.0}),
    (R.HURST, {"window": 20, "max_lag": 5}),
    (R.GARCH, {"omega": 0.05, "alpha": 0.1, "beta": 0.85}),
    (R.HMM, {"transition": HMM_MODELS[3][0].tolist(), "means": [-1.0, 0.0, 1.5], "stds": [0.5, 1.0, 2.0]}),
]


def series(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=n).cumsum() * 0.3


@pytest.mark.parametrize(("kind", "kw"), CASES, ids=[k.name for k, _ in CASES])
def test_nan_inputs_are_skipped(kind: FeatureKind, kw: dict) -> None:
    clean = series(120, seed=1)
    holes = np.array([25, 26, 60, 90])
    dirty = clean.copy()
    dirty[holes] = [np.nan, np.inf, -np.inf, np.nan]
    got, _ = run_kind(kind, kw, dirty)
    keep = np.setdiff1d(np.arange(len(clean)), holes)
    ref, _ = run_kind(kind, kw, clean[keep])
    assert np.array_equal(got[keep], ref, equal_nan=True)
    for h in holes:
        expected = got[h - 1].copy()
        if kind is R.CUSUM:
            expected[0] = 0.0
        assert np.array_equal(got[h], expected, equal_nan=True)


@pytest.mark.parametrize(("kind", "kw"), CASES, ids=[k.name for k, _ in CASES])
def test_outputs_before_t_do_not_depend_on_data_after_t(kind: FeatureKind, kw: dict) -> None:
    x = series(100, seed=2)
    base, _ = run_kind(kind, kw, x)
    t = 70
    bumped = x.copy()
    bumped[t + 1 :] += 3.0 * np.sign(np.sin(np.arange(len(x) - t - 1)))
    moved, _ = run_kind(kind, kw, bumped)
    assert np.array_equal(base[: t + 1], moved[: t + 1], equal_nan=True)
    assert not np.array_equal(base[t + 1 :], moved[t + 1 :], equal_nan=True)


@pytest.mark.parametrize(("kind", "kw"), CASES, ids=[k.name for k, _ in CASES])
def test_restored_state_continues_bit_for_bit(kind: FeatureKind, kw: dict) -> None:
    x = series(90, seed=3)
    full, _ = run_kind(kind, kw, x)
    _, snap = run_kind(kind, kw, x[:41])
    rest, _ = run_kind(kind, kw, x[41:], state=snap.copy())
    assert np.array_equal(full[41:], rest, equal_nan=True)


# --------------------------------------------------------------------------- typed facades

HMM3 = {"transition": HMM_MODELS[3][0].tolist(), "means": [-1.0, 0.0, 1.5], "stds": [0.5, 1.0, 2.0]}
FACADES = [
    (Cusum, {"threshold": 1.0}),
    (Cusum, {"threshold": 0.5, "input_is_return": True}),
    (Hurst, {"window": 20, "max_lag": 5}),
    (Garch, {"omega": 0.05, "alpha": 0.1, "beta": 0.85}),
    (Hmm, HMM3),
]
FACADE_IDS = ["Cusum", "Cusum-returns", "Hurst", "Garch", "Hmm"]


def dirty_series(n: int = 150) -> np.ndarray:
    x = series(n, seed=14)
    x[[20, 55]] = np.nan
    x[90] = np.inf
    x[100:110] = x[100]  # a constant run
    return x


@pytest.mark.parametrize(("cls", "kw"), FACADES, ids=FACADE_IDS)
def test_facade_live_updates_equal_batch_run_bit_for_bit(cls: type[Stepper], kw: dict) -> None:
    x = dirty_series()
    live = cls(**kw)
    updates = np.array([np.atleast_1d(live.update(v)) for v in x])
    batch = cls(**kw).run(x).reshape(len(x), -1)
    direct, _ = run_kind(live.kind, kw, x)
    assert np.array_equal(updates, batch, equal_nan=True)
    assert np.array_equal(batch, direct, equal_nan=True)
    assert live.ready


@pytest.mark.parametrize(("cls", "kw"), FACADES, ids=FACADE_IDS)
def test_facade_from_state_continues_bit_for_bit(cls: type[Stepper], kw: dict) -> None:
    x = dirty_series()
    full = cls(**kw).run(x)
    first = cls(**kw)
    first.run(x[:64])
    resumed = cls.from_state(first.state, **kw)
    assert np.array_equal(resumed.run(x[64:]), full[64:], equal_nan=True)


def test_hmm_facade_exposes_used_state_probabilities() -> None:
    hmm = Hmm(**HMM3)
    hmm.run(series(30, seed=15))
    assert hmm.n_states == 3
    assert hmm.probabilities == hmm.values[:3]
    assert sum(hmm.probabilities) == pytest.approx(1.0)


def test_cusum_facade_event_property() -> None:
    cusum = Cusum(threshold=2.5)
    cusum.run(np.arange(4.0))
    assert cusum.event == 1.0


@pytest.mark.parametrize(("kind", "kw"), [*CASES, (R.CUSUM, {"threshold": 1.0, "input_is_return": 1})])
def test_ready_flag_rises_exactly_after_declared_warmup(kind: FeatureKind, kw: dict) -> None:
    x = series(40, seed=16)
    need = kind.warmup(kind.pack(kw))
    _, before = run_kind(kind, kw, x[: need - 1]) if need > 1 else (None, np.zeros(1))
    _, after = run_kind(kind, kw, x[:need])
    assert before[0] == 0.0 and after[0] == 1.0


WILD_CASES = [*CASES, (R.CUSUM, {"threshold": 0.5, "input_is_return": 1})]
_WILD = [np.nan, np.inf, -np.inf, 0.0, 1.0, -1.0, 1e300, -1e300, 1e-300, 5e-324, 1e150, 3.0]


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_wild_inputs_never_raise_nor_emit_inf(data: st.DataObject) -> None:
    for kind, kw in WILD_CASES:
        n_in = len(kind.inputs)
        rows = data.draw(
            arrays(np.float64, (40, n_in), elements=st.one_of(st.sampled_from(_WILD), st.floats(-1e9, 1e9)))
        )
        if data.draw(st.booleans()):
            rows[5:25] = rows[5]  # a constant run
        res, state = run_kind(kind, kw, rows)
        assert not np.isinf(res).any(), kind.name
        # the state recovers: plain data afterwards gives finite values again
        after, _ = run_kind(kind, kw, series(80, seed=5), state=state)
        assert np.isfinite(after[-1, 0]), kind.name
