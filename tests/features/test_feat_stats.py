"""Two-input statistics kernels (tradebus.features.kernels.stats) against their references."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
import statsmodels.api as sm

from tradebus.errors import FeatureError
from tradebus.features.kernels import stats as S
from tradebus.features.pairs import DistanceCorr, KalmanHedge, RollingCorr, RollingCov, RollingOls
from tradebus.features.registry import FeatureKind, get_kind
from tradebus.features.stepper import Stepper

RTOL = 1e-9


def run_kind(kind: FeatureKind, kw: dict, rows: np.ndarray, state: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Drive ``kind.step`` over ``rows`` (one event per row); return (outputs, final state)."""
    params = kind.pack(kw)
    st = np.zeros(kind.state_size(params)) if state is None else state
    rows = np.ascontiguousarray(rows, dtype=np.float64)
    res = np.empty((rows.shape[0], len(kind.outputs)))
    out = np.empty(len(kind.outputs))
    for t in range(rows.shape[0]):
        kind.step(st, params, rows[t], out)
        res[t] = out
    return res, st


def pair_series(n: int = 400, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = 50.0 + rng.normal(size=n).cumsum()
    y = 1.5 * x + 3.0 + rng.normal(scale=2.0, size=n)
    return x, y


def dcor_reference(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    a = np.abs(x[:, None] - x[None, :])
    b = np.abs(y[:, None] - y[None, :])
    A = a - a.mean(axis=0)[None, :] - a.mean(axis=1)[:, None] + a.mean()
    B = b - b.mean(axis=0)[None, :] - b.mean(axis=1)[:, None] + b.mean()
    dcov2 = (A * B).mean()
    dvar = (A * A).mean() * (B * B).mean()
    return float(np.sqrt(dcov2 / np.sqrt(dvar))), float(np.sqrt(dcov2))


def kalman_reference(y: np.ndarray, x: np.ndarray, delta: float, ve: float, prior: float) -> np.ndarray:
    theta = np.zeros(2)
    P = prior * np.eye(2)
    vw = delta / (1 - delta) * np.eye(2)
    res = np.empty((len(y), 4))
    for t in range(len(y)):
        h = np.array([x[t], 1.0])
        R = P + vw
        e = y[t] - h @ theta
        Q = h @ R @ h + ve
        K = R @ h / Q
        theta = theta + K * e
        P = R - np.outer(K, h) @ R
        res[t] = theta[0], theta[1], e, e / np.sqrt(Q)
    return res


def test_kinds_are_registered_with_their_ids() -> None:
    assert [k.kind_id for k in S.KINDS] == [200, 201, 202, 203, 204, 205]
    for kind in S.KINDS:
        assert get_kind(kind.name) is kind


def test_rolling_ols_matches_statsmodels_on_every_window() -> None:
    x, y = pair_series()
    w = 25
    res, _ = run_kind(S.ROLLING_OLS, {"window": w}, np.c_[y, x])
    assert np.isnan(res[: w - 1]).all()
    for t in range(w - 1, len(x)):
        fit = sm.OLS(y[t - w + 1 : t + 1], sm.add_constant(x[t - w + 1 : t + 1])).fit()
        expected = [fit.params[1], fit.params[0], fit.rsquared, fit.resid[-1]]
        np.testing.assert_allclose(res[t], expected, rtol=RTOL, atol=1e-12)


def test_rolling_ols_matches_lstsq_with_large_price_level() -> None:
    x, y = pair_series(300, seed=3)
    x, y = x + 60_000.0, y + 90_000.0
    w = 40
    res, _ = run_kind(S.ROLLING_OLS, {"window": w}, np.c_[y, x])
    for t in range(w - 1, len(x), 7):
        xw, yw = x[t - w + 1 : t + 1], y[t - w + 1 : t + 1]
        xc = xw - xw.mean()
        (beta,), *_ = np.linalg.lstsq(xc[:, None], yw - yw.mean(), rcond=None)
        np.testing.assert_allclose(res[t, 0], beta, rtol=RTOL)
        np.testing.assert_allclose(res[t, 1], yw.mean() - beta * xw.mean(), rtol=RTOL)


def test_rolling_ols_with_constant_x_gives_nan_and_constant_y_gives_zero_beta() -> None:
    n, w = 30, 10
    const_x, _ = run_kind(S.ROLLING_OLS, {"window": w}, np.c_[np.arange(n, dtype=float), np.full(n, 0.1)])
    assert np.isnan(const_x[w - 1 :]).all()
    const_y, _ = run_kind(S.ROLLING_OLS, {"window": w}, np.c_[np.full(n, 0.1), np.arange(n, dtype=float)])
    assert (const_y[w - 1 :, 0] == 0.0).all()
    assert (const_y[w - 1 :, 1] == 0.1).all()
    assert np.isnan(const_y[w - 1 :, 2]).all()
    assert (const_y[w - 1 :, 3] == 0.0).all()


def test_rolling_corr_and_cov_match_pandas() -> None:
    x, y = pair_series(500, seed=11)
    w = 30
    corr, _ = run_kind(S.ROLLING_CORR, {"window": w}, np.c_[x, y])
    cov, _ = run_kind(S.ROLLING_COV, {"window": w}, np.c_[x, y])
    sx, sy = pd.Series(x), pd.Series(y)
    np.testing.assert_allclose(corr[:, 0], sx.rolling(w).corr(sy).to_numpy(), rtol=RTOL, equal_nan=True)
    np.testing.assert_allclose(cov[:, 0], sx.rolling(w).cov(sy).to_numpy(), rtol=RTOL, equal_nan=True)


def test_rolling_cov_matches_numpy_two_pass_at_large_price_level() -> None:
    # pandas' E[xy] - E[x]E[y] loses digits here; np.cov per window is the exact reference
    x, y = pair_series(200, seed=5)
    x, y = x + 30_000.0, y + 45_000.0
    w = 50
    cov, _ = run_kind(S.ROLLING_COV, {"window": w}, np.c_[x, y])
    corr, _ = run_kind(S.ROLLING_CORR, {"window": w}, np.c_[x, y])
    for t in range(w - 1, len(x)):
        c = np.cov(x[t - w + 1 : t + 1], y[t - w + 1 : t + 1], ddof=1)
        np.testing.assert_allclose(cov[t, 0], c[0, 1], rtol=RTOL)
        np.testing.assert_allclose(corr[t, 0], c[0, 1] / np.sqrt(c[0, 0] * c[1, 1]), rtol=RTOL)


def test_rolling_corr_of_constant_input_is_nan_and_cov_is_exact_zero() -> None:
    n, w = 40, 8
    rows = np.c_[np.full(n, 0.3), np.linspace(0.0, 1.0, n)]
    corr, _ = run_kind(S.ROLLING_CORR, {"window": w}, rows)
    cov, _ = run_kind(S.ROLLING_COV, {"window": w}, rows)
    assert np.isnan(corr).all()
    assert (cov[w - 1 :, 0] == 0.0).all()


def test_dcor_matches_direct_numpy_distance_correlation() -> None:
    x, y = pair_series(160, seed=2)
    w = 32
    res, _ = run_kind(S.DCOR, {"window": w}, np.c_[x, y])
    assert np.isnan(res[: w - 1]).all()
    for t in range(w - 1, len(x), 3):
        np.testing.assert_allclose(res[t], dcor_reference(x[t - w + 1 : t + 1], y[t - w + 1 : t + 1]), rtol=RTOL)


def test_dcor_detects_nonlinear_dependence_that_pearson_misses() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=256)
    y = x**2
    w = 128
    dc, _ = run_kind(S.DCOR, {"window": w}, np.c_[x, y])
    corr, _ = run_kind(S.ROLLING_CORR, {"window": w}, np.c_[x, y])
    indep, _ = run_kind(S.DCOR, {"window": w}, np.c_[x, rng.normal(size=256)])
    assert np.nanmin(dc[:, 0]) > 0.4
    assert np.nanmax(np.abs(corr[:, 0])) < 0.35
    assert np.nanmax(indep[:, 0]) < dc[-1, 0]


def test_dcor_of_constant_input_is_nan_with_zero_dcov() -> None:
    res, _ = run_kind(S.DCOR, {"window": 5}, np.c_[np.full(12, 2.0), np.arange(12.0)])
    assert np.isnan(res[4:, 0]).all()
    assert (res[4:, 1] == 0.0).all()


def test_dcor_window_above_cap_is_rejected() -> None:
    with pytest.raises(FeatureError, match="window"):
        S.DCOR.pack({"window": S.DCOR_MAX_WINDOW + 1})


@pytest.mark.parametrize("prior", [0.0, 1.0])
def test_kalman_hedge_matches_numpy_filter(prior: float) -> None:
    x, y = pair_series(400, seed=9)
    kw = {"delta": 1e-4, "obs_var": 1e-3, "prior_var": prior}
    res, _ = run_kind(S.KALMAN_HEDGE, kw, np.c_[y, x])
    np.testing.assert_allclose(res, kalman_reference(y, x, 1e-4, 1e-3, prior), rtol=RTOL, atol=1e-12)


def test_kalman_hedge_converges_to_true_hedge_ratio() -> None:
    x, y = pair_series(3000, seed=4)
    res, _ = run_kind(S.KALMAN_HEDGE, {"delta": 1e-5, "obs_var": 4.0, "prior_var": 10.0}, np.c_[y, x])
    assert abs(res[-1, 0] - 1.5) < 0.05
    assert abs(np.std(res[1000:, 3]) - 1.0) < 0.2


def test_kalman_hedge_is_not_ready_before_warmup() -> None:
    x, y = pair_series(20)
    res, st = run_kind(S.KALMAN_HEDGE, {"warmup": 5}, np.c_[y, x])
    assert np.isnan(res[:4]).all()
    assert np.isfinite(res[4:]).all()
    assert st[0] == 1.0


def test_kalman_hedge_rejects_zero_observation_variance() -> None:
    with pytest.raises(FeatureError, match="obs_var"):
        S.KALMAN_HEDGE.pack({"obs_var": 0.0})


def test_kalman_hedge_refuses_a_filter_without_state_uncertainty() -> None:
    # delta = 0 and prior_var = 0: R = P + V_w = 0, so K = 0 and beta stays 0 on every update
    with pytest.raises(FeatureError, match="delta = 0 with prior_var = 0"):
        S.KALMAN_HEDGE.pack({"delta": 0.0})
    rng = np.random.default_rng(5)
    x = 100.0 + np.cumsum(rng.normal(size=300))
    y = 1.5 * x + 3.0 + rng.normal(0.0, 0.1, size=300)
    static = KalmanHedge(delta=0.0, prior_var=1.0).run(y, x)  # recursive least squares: still allowed
    np.testing.assert_allclose(static[-1, :2], np.polyfit(x, y, 1), rtol=1e-2)


CASES = [
    (S.ROLLING_OLS, {"window": 12}),
    (S.ROLLING_CORR, {"window": 12}),
    (S.ROLLING_COV, {"window": 12}),
    (S.DCOR, {"window": 12}),
    (S.KALMAN_HEDGE, {"warmup": 3}),
]


@pytest.mark.parametrize(("kind", "kw"), CASES, ids=[k.name for k, _ in CASES])
def test_nan_rows_are_skipped_and_outputs_held(kind: FeatureKind, kw: dict) -> None:
    x, y = pair_series(120, seed=1)
    clean = np.c_[y, x]
    holes = np.array([15, 16, 40, 41, 42, 77])
    dirty = clean.copy()
    dirty[holes[::2], 0] = np.nan
    dirty[holes[1::2], 1] = np.inf
    got, _ = run_kind(kind, kw, dirty)
    keep = np.setdiff1d(np.arange(len(clean)), holes)
    ref, _ = run_kind(kind, kw, clean[keep])
    assert np.array_equal(got[keep], ref, equal_nan=True)
    for h in holes:
        assert np.array_equal(got[h], got[h - 1], equal_nan=True)


@pytest.mark.parametrize(("kind", "kw"), CASES, ids=[k.name for k, _ in CASES])
def test_outputs_before_t_do_not_depend_on_data_after_t(kind: FeatureKind, kw: dict) -> None:
    x, y = pair_series(100, seed=8)
    rows = np.c_[y, x]
    base, _ = run_kind(kind, kw, rows)
    t = 60
    bumped = rows.copy()
    bumped[t + 1 :] += np.random.default_rng(0).normal(scale=5.0, size=bumped[t + 1 :].shape)
    moved, _ = run_kind(kind, kw, bumped)
    assert np.array_equal(base[: t + 1], moved[: t + 1], equal_nan=True)
    assert not np.array_equal(base[t + 1 :], moved[t + 1 :], equal_nan=True)


@pytest.mark.parametrize(("kind", "kw"), CASES, ids=[k.name for k, _ in CASES])
def test_restored_state_continues_bit_for_bit(kind: FeatureKind, kw: dict) -> None:
    x, y = pair_series(90, seed=6)
    rows = np.c_[y, x]
    full, _ = run_kind(kind, kw, rows)
    _, snap = run_kind(kind, kw, rows[:37])
    rest, _ = run_kind(kind, kw, rows[37:], state=snap.copy())
    assert np.array_equal(full[37:], rest, equal_nan=True)


# --------------------------------------------------------------------------- typed facades

FACADES = [
    (RollingOls, {"window": 12}),
    (RollingCorr, {"window": 12}),
    (RollingCov, {"window": 12}),
    (DistanceCorr, {"window": 12}),
    (KalmanHedge, {"delta": 1e-3, "obs_var": 0.5, "warmup": 3}),
]


def dirty_pairs(n: int = 150) -> np.ndarray:
    x, y = pair_series(n, seed=12)
    rows = np.c_[y, x]
    rows[[20, 55], 0] = np.nan
    rows[[56, 90], 1] = np.inf
    rows[100:110] = rows[100]  # a constant run
    return rows


@pytest.mark.parametrize(("cls", "kw"), FACADES, ids=[c.__name__ for c, _ in FACADES])
def test_facade_live_updates_equal_batch_run_bit_for_bit(cls: type[Stepper], kw: dict) -> None:
    rows = dirty_pairs()
    live = cls(**kw)
    updates = np.array([np.atleast_1d(live.update(*row)) for row in rows])
    batch = cls(**kw).run(rows[:, 0], rows[:, 1]).reshape(len(rows), -1)
    direct, _ = run_kind(live.kind, kw, rows)
    assert np.array_equal(updates, batch, equal_nan=True)
    assert np.array_equal(batch, direct, equal_nan=True)
    assert live.ready


@pytest.mark.parametrize(("cls", "kw"), FACADES, ids=[c.__name__ for c, _ in FACADES])
def test_facade_from_state_continues_bit_for_bit(cls: type[Stepper], kw: dict) -> None:
    rows = dirty_pairs()
    full = cls(**kw).run(rows)
    first = cls(**kw)
    first.run(rows[:70])
    resumed = cls.from_state(first.state, **kw)
    assert np.array_equal(resumed.run(rows[70:]), full[70:], equal_nan=True)


def test_facade_named_outputs_follow_the_kind_outputs() -> None:
    x, y = pair_series(60, seed=13)
    ols = RollingOls(window=20)
    ols.run(y, x)
    assert (ols.beta, ols.alpha, ols.r2, ols.resid) == ols.values
    kf = KalmanHedge()
    kf.run(y, x)
    assert (kf.beta, kf.zscore) == (kf.values[0], kf.values[3])
    dc = DistanceCorr(window=10)
    dc.run(x, y)
    assert dc.dcor == dc.value


@pytest.mark.parametrize(("kind", "kw"), CASES, ids=[k.name for k, _ in CASES])
def test_ready_flag_rises_exactly_after_declared_warmup(kind: FeatureKind, kw: dict) -> None:
    x, y = pair_series(40, seed=14)
    params = kind.pack(kw)
    need = kind.warmup(params)
    _, before = run_kind(kind, kw, np.c_[y, x][: need - 1])
    _, after = run_kind(kind, kw, np.c_[y, x][:need])
    assert before[0] == 0.0 and after[0] == 1.0


WILD_CASES = [(k, kw) for k, kw in CASES]
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
        after, _ = run_kind(kind, kw, np.column_stack(pair_series(80, seed=5)[::-1]), state=state)
        assert np.isfinite(after[-1, 0]), kind.name


def test_rel_diff_is_x_over_y_minus_one_with_nan_for_zero_and_nan() -> None:
    x, y = pair_series(200, seed=5)
    y = y.copy()
    y[[3, 50]] = 0.0
    x[7] = np.nan
    out, _ = run_kind(S.REL_DIFF, {}, np.c_[x, y])
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = pd.Series(x).div(pd.Series(y)).sub(1.0).replace([np.inf, -np.inf], np.nan).to_numpy()
    np.testing.assert_array_equal(out[:, 0], expected)
    assert np.isnan(out[[3, 7, 50], 0]).all()
