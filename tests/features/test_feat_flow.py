"""Trade-flow kernels (tradebus.features.kernels.flow) against their references."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from tradebus.errors import FeatureError
from tradebus.features.flow import Amihud, KyleLambda, SignedVolume, TradeImbalance, Vpin
from tradebus.features.kernels import flow as F
from tradebus.features.registry import FeatureKind, get_kind
from tradebus.features.stepper import Stepper

RTOL = 1e-9
FIXTURE = Path(__file__).parent.parent / "fixtures" / "features_flow" / "binance_usdm_btcusdt_trades_20240808_4k.csv"


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


def synthetic_trades(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    side = rng.choice([-1.0, 0.0, 1.0], size=n, p=[0.45, 0.1, 0.45])
    size = rng.exponential(scale=0.5, size=n).round(3)
    price = np.round(30_000.0 + (side * size * 2.0 + rng.normal(scale=1.0, size=n)).cumsum(), 1)
    return price, size, side


def real_trades() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    df = pd.read_csv(FIXTURE)
    side = np.where(df["is_buyer_maker"].astype(bool), -1.0, 1.0)
    return df["price"].to_numpy(float), df["qty"].to_numpy(float), side


def vpin_reference(size: np.ndarray, side: np.ndarray, bucket: float, n: int) -> np.ndarray:
    buckets: list[float] = []
    buy = sell = fill = 0.0
    last = np.nan
    res = []
    for q, s in zip(size, side, strict=True):
        rem = q
        closed = False
        while rem > 0:
            room = bucket - fill
            take = min(rem, room)
            if s > 0:
                buy += take
            elif s < 0:
                sell += take
            rem -= take
            if take < room:
                fill += take
                break
            buckets.append(abs(buy - sell))
            buy = sell = fill = 0.0
            closed = True
        if closed and len(buckets) >= n:
            last = sum(buckets[-n:]) / (n * bucket)
        res.append(last)
    return np.array(res)


def assert_rolling_sum_close(got: np.ndarray, ref: np.ndarray, scale: np.ndarray) -> None:
    """|got - ref| <= 1e-9 * (|ref| + window sum of |values|): cancellation-aware relative tolerance."""
    ok = np.isnan(got) == np.isnan(ref)
    assert ok.all()
    m = ~np.isnan(ref)
    assert (np.abs(got[m] - ref[m]) <= RTOL * (np.abs(ref[m]) + scale[m])).all()


def test_kinds_are_registered_with_their_ids() -> None:
    assert [k.kind_id for k in F.KINDS] == [400, 401, 402, 403, 404]
    for kind in F.KINDS:
        assert get_kind(kind.name) is kind


@pytest.mark.parametrize("source", ["synthetic", "real"])
def test_signed_volume_matches_pandas_rolling_sum(source: str) -> None:
    _, size, side = synthetic_trades(3000, seed=1) if source == "synthetic" else real_trades()
    w = 37
    res, _ = run_kind(F.SIGNED_VOLUME, {"window": w}, np.c_[size, side])
    ref = pd.Series(side * size).rolling(w).sum().to_numpy()
    assert_rolling_sum_close(res[:, 0], ref, pd.Series(size).rolling(w).sum().to_numpy())


def test_signed_volume_does_not_drift_over_a_long_stream() -> None:
    _, size, side = synthetic_trades(20_000, seed=2)
    w = 50
    res, _ = run_kind(F.SIGNED_VOLUME, {"window": w}, np.c_[size * 1e3 + 1e-3, side])
    v = side * (size * 1e3 + 1e-3)
    exact = np.array([v[t - w + 1 : t + 1].sum() for t in range(w - 1, len(v))])
    np.testing.assert_allclose(res[w - 1 :, 0], exact, rtol=0, atol=1e-9 * np.abs(v).max() * w)


def test_signed_volume_of_window_of_unknown_side_is_exact_zero() -> None:
    rows = np.c_[[0.1, 0.2, 0.7, 0.3, 0.3, 0.3], [1.0, -1.0, 1.0, 0.0, 0.0, 0.0]]
    res, _ = run_kind(F.SIGNED_VOLUME, {"window": 3}, rows)
    assert res[5, 0] == 0.0


@pytest.mark.parametrize("source", ["synthetic", "real"])
def test_trade_imbalance_matches_pandas(source: str) -> None:
    _, size, side = synthetic_trades(3000, seed=3) if source == "synthetic" else real_trades()
    w = 40
    res, _ = run_kind(F.TRADE_IMBALANCE, {"window": w}, np.c_[size, side])
    b = pd.Series(size * (side > 0)).rolling(w).sum()
    s = pd.Series(size * (side < 0)).rolling(w).sum()
    ref = ((b - s) / (b + s)).to_numpy()
    np.testing.assert_allclose(res[:, 0], ref, rtol=RTOL, atol=1e-12, equal_nan=True)
    assert np.nanmax(np.abs(res[:, 0])) <= 1.0


def test_trade_imbalance_without_classified_volume_is_nan() -> None:
    rows = np.c_[[1.0, 2.0, 3.0, 3.0], [1.0, 0.0, 0.0, 0.0]]
    res, _ = run_kind(F.TRADE_IMBALANCE, {"window": 2}, rows)
    assert res[1, 0] == 1.0
    assert np.isnan(res[2:, 0]).all()


@pytest.mark.parametrize("source", ["synthetic", "real"])
def test_amihud_matches_pandas(source: str) -> None:
    price, size, _ = synthetic_trades(2000, seed=4) if source == "synthetic" else real_trades()
    size = np.where(size > 0, size, 0.001)
    w = 30
    res, _ = run_kind(F.AMIHUD, {"window": w, "scale": 1e6}, np.c_[price, size])
    ratio = (np.abs(np.log(pd.Series(price)).diff()) / (price * size)).to_numpy()
    ref = pd.Series(ratio).rolling(w).mean().to_numpy() * 1e6
    np.testing.assert_allclose(res[:, 0], ref, rtol=RTOL, equal_nan=True)
    exact = np.array([ratio[t - w + 1 : t + 1].mean() * 1e6 for t in range(w, len(ratio))])
    np.testing.assert_allclose(res[w:, 0], exact, rtol=RTOL)


def test_amihud_skips_zero_size_and_constant_price_gives_zero() -> None:
    rows = np.c_[[100.0, 101.0, 101.0, 101.0, 101.0], [1.0, 0.0, 2.0, 2.0, 2.0]]
    res, _ = run_kind(F.AMIHUD, {"window": 2, "scale": 1.0}, rows)
    assert np.isnan(res[:3, 0]).all()
    assert res[3, 0] == pytest.approx(np.log(1.01) / 202.0 / 2.0, rel=1e-12)
    # the zero-size trade at 101 was skipped: the first return is 100 -> 101 at row 2
    res2, _ = run_kind(F.AMIHUD, {"window": 1, "scale": 1.0}, rows)
    assert res2[2, 0] == pytest.approx(np.log(1.01) / 202.0, rel=1e-12)
    assert res2[4, 0] == 0.0


@pytest.mark.parametrize("source", ["synthetic", "real"])
def test_kyle_lambda_matches_least_squares_slope(source: str) -> None:
    price, size, side = synthetic_trades(1500, seed=5) if source == "synthetic" else real_trades()
    w = 60
    res, _ = run_kind(F.KYLE_LAMBDA, {"window": w}, np.c_[price, size, side])
    dp = np.diff(price)
    v = (side * size)[1:]
    assert np.isnan(res[:w]).all()
    for t in range(w, len(price), 11):
        vw, dw = v[t - w : t], dp[t - w : t]
        design = np.c_[vw - vw.mean(), np.ones(w)]
        (slope, _), *_ = np.linalg.lstsq(design, dw, rcond=None)
        np.testing.assert_allclose(res[t, 0], slope, rtol=1e-8, atol=1e-15)
    if source == "synthetic":
        assert np.nanmedian(res[:, 0]) == pytest.approx(2.0, rel=0.1)


def test_kyle_lambda_with_constant_signed_volume_is_nan() -> None:
    rows = np.c_[np.linspace(100.0, 101.0, 10), np.ones(10), np.ones(10)]
    res, _ = run_kind(F.KYLE_LAMBDA, {"window": 4}, rows)
    assert np.isnan(res).all()


def test_vpin_splits_a_large_trade_across_buckets() -> None:
    # V = 10, n = 2: a 25 buy fills two pure-buy buckets and leaves 5 in the third;
    # a 5 sell completes the third with imbalance 0.
    res, st = run_kind(F.VPIN, {"bucket_volume": 10.0, "n_buckets": 2}, np.c_[[25.0, 5.0, 4.0], [1.0, -1.0, 1.0]])
    assert res[0, 0] == 1.0
    assert res[1, 0] == 0.5
    assert res[2, 0] == 0.5  # bucket not complete: held
    assert st[4] == 4.0 and st[6] == 4.0


def test_vpin_trade_spanning_more_buckets_than_the_window() -> None:
    # the 1e9 buy closes the half-sold bucket, fills ~1e9 pure-buy buckets (only the last 3
    # are kept) and leaves 0.5 bought in an open bucket that the unknown-side 0.7 then closes
    res, st = run_kind(F.VPIN, {"bucket_volume": 1.0, "n_buckets": 3}, np.c_[[0.5, 1e9, 0.7], [-1.0, 1.0, 0.0]])
    assert res[1, 0] == 1.0
    assert res[2, 0] == pytest.approx((1.0 + 1.0 + 0.5) / 3.0, rel=1e-15)
    assert st[6] == pytest.approx(0.2)


def test_vpin_huge_trade_completes_quickly_with_pure_buckets() -> None:
    # 1e150 / V buckets do not fit an int64: the split must not count them one by one
    res, _ = run_kind(F.VPIN, {"bucket_volume": 1.0, "n_buckets": 3}, np.c_[[0.4, 1e150], [-1.0, 1.0]])
    assert res[1, 0] == 1.0


@pytest.mark.parametrize("source", ["synthetic", "real"])
def test_vpin_matches_reference_bucketing(source: str) -> None:
    _, size, side = synthetic_trades(4000, seed=6) if source == "synthetic" else real_trades()
    bucket = float(np.sum(size) / 200.0)
    res, _ = run_kind(F.VPIN, {"bucket_volume": bucket, "n_buckets": 20}, np.c_[size, side])
    ref = vpin_reference(size, side, bucket, 20)
    np.testing.assert_allclose(res[:, 0], ref, rtol=1e-12, equal_nan=True)
    assert np.isfinite(res[-1, 0])
    assert 0.0 <= np.nanmin(res) and np.nanmax(res) <= 1.0


def test_vpin_rejects_non_positive_bucket_volume() -> None:
    with pytest.raises(FeatureError, match="bucket_volume"):
        F.VPIN.pack({"bucket_volume": 0.0})


CASES = [
    (F.SIGNED_VOLUME, {"window": 9}, (1, 2)),
    (F.TRADE_IMBALANCE, {"window": 9}, (1, 2)),
    (F.AMIHUD, {"window": 9}, (0, 1)),
    (F.KYLE_LAMBDA, {"window": 9}, (0, 1, 2)),
    (F.VPIN, {"bucket_volume": 2.0, "n_buckets": 4}, (1, 2)),
]
IDS = [k.name for k, _, _ in CASES]


def trade_rows(n: int, seed: int, cols: tuple[int, ...]) -> np.ndarray:
    price, size, side = synthetic_trades(n, seed)
    return np.c_[price, size + 0.01, side][:, list(cols)]


@pytest.mark.parametrize(("kind", "kw", "cols"), CASES, ids=IDS)
def test_invalid_trades_are_skipped_and_outputs_held(kind: FeatureKind, kw: dict, cols: tuple[int, ...]) -> None:
    clean = trade_rows(150, seed=7, cols=cols)
    holes = np.array([30, 31, 70, 120])
    dirty = clean.copy()
    dirty[30, 0] = np.nan
    dirty[31, -1] = np.inf
    dirty[70, -1] = np.nan
    dirty[120, list(cols).index(1)] = -1.0  # negative size
    got, _ = run_kind(kind, kw, dirty)
    keep = np.setdiff1d(np.arange(len(clean)), holes)
    ref, _ = run_kind(kind, kw, clean[keep])
    assert np.array_equal(got[keep], ref, equal_nan=True)
    for h in holes:
        assert np.array_equal(got[h], got[h - 1], equal_nan=True)


@pytest.mark.parametrize(("kind", "kw", "cols"), CASES, ids=IDS)
def test_outputs_before_t_do_not_depend_on_trades_after_t(kind: FeatureKind, kw: dict, cols: tuple[int, ...]) -> None:
    rows = trade_rows(200, seed=8, cols=cols)
    base, _ = run_kind(kind, kw, rows)
    t = 120
    other = trade_rows(200, seed=9, cols=cols)
    bumped = np.r_[rows[: t + 1], other[t + 1 :]]
    moved, _ = run_kind(kind, kw, bumped)
    assert np.array_equal(base[: t + 1], moved[: t + 1], equal_nan=True)
    assert not np.array_equal(base[t + 1 :], moved[t + 1 :], equal_nan=True)


@pytest.mark.parametrize(("kind", "kw", "cols"), CASES, ids=IDS)
def test_restored_state_continues_bit_for_bit(kind: FeatureKind, kw: dict, cols: tuple[int, ...]) -> None:
    rows = trade_rows(300, seed=10, cols=cols)
    full, _ = run_kind(kind, kw, rows)
    _, snap = run_kind(kind, kw, rows[:133])
    rest, _ = run_kind(kind, kw, rows[133:], state=snap.copy())
    assert np.array_equal(full[133:], rest, equal_nan=True)


# --------------------------------------------------------------------------- typed facades

FACADES = [
    (SignedVolume, {"window": 9}, (1, 2)),
    (TradeImbalance, {"window": 9}, (1, 2)),
    (Amihud, {"window": 9, "scale": 1e6}, (0, 1)),
    (KyleLambda, {"window": 9}, (0, 1, 2)),
    (Vpin, {"bucket_volume": 2.0, "n_buckets": 4}, (1, 2)),
]
FACADE_IDS = [c.__name__ for c, _, _ in FACADES]


def dirty_trades(cols: tuple[int, ...]) -> np.ndarray:
    rows = trade_rows(200, seed=11, cols=cols)
    rows[[15, 60], 0] = np.nan
    rows[100, -1] = np.inf
    rows[120:135] = rows[120]  # a constant run
    return rows


@pytest.mark.parametrize(("cls", "kw", "cols"), FACADES, ids=FACADE_IDS)
def test_facade_live_updates_equal_batch_run_bit_for_bit(cls: type[Stepper], kw: dict, cols: tuple[int, ...]) -> None:
    rows = dirty_trades(cols)
    live = cls(**kw)
    updates = np.array([live.update(*row) for row in rows])
    batch = cls(**kw).run(*rows.T)
    direct, _ = run_kind(live.kind, kw, rows)
    assert np.array_equal(updates, batch, equal_nan=True)
    assert np.array_equal(batch, direct[:, 0], equal_nan=True)
    assert live.ready


@pytest.mark.parametrize(("cls", "kw", "cols"), FACADES, ids=FACADE_IDS)
def test_facade_from_state_continues_bit_for_bit(cls: type[Stepper], kw: dict, cols: tuple[int, ...]) -> None:
    rows = dirty_trades(cols)
    full = cls(**kw).run(rows)
    first = cls(**kw)
    first.run(rows[:77])
    resumed = cls.from_state(first.state, **kw)
    assert np.array_equal(resumed.run(rows[77:]), full[77:], equal_nan=True)


def test_real_trades_flow_features_stay_in_their_ranges() -> None:
    price, size, side = real_trades()
    imb = TradeImbalance(window=200).run(size, side)
    vpin = Vpin(bucket_volume=float(size.sum() / 100), n_buckets=10).run(size, side)
    amihud = Amihud(window=200).run(price, size)
    assert np.nanmin(imb) >= -1.0 and np.nanmax(imb) <= 1.0
    assert np.isfinite(vpin[-1]) and 0.0 < vpin[-1] < 1.0
    assert np.nanmin(amihud) >= 0.0 and np.isfinite(amihud[-1])


@pytest.mark.parametrize(("kind", "kw", "cols"), [c for c in CASES if c[0] is not F.VPIN], ids=IDS[:-1])
def test_ready_flag_rises_exactly_after_declared_warmup(kind: FeatureKind, kw: dict, cols: tuple[int, ...]) -> None:
    rows = trade_rows(40, seed=12, cols=cols)
    need = kind.warmup(kind.pack(kw))
    _, before = run_kind(kind, kw, rows[: need - 1])
    _, after = run_kind(kind, kw, rows[:need])
    assert before[0] == 0.0 and after[0] == 1.0


def test_vpin_declares_no_fixed_warmup() -> None:
    assert F.VPIN.warmup is None


WILD_CASES = [(k, kw) for k, kw, _ in CASES]
COLS = {k.name: cols for k, _, cols in CASES}
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
        after, _ = run_kind(kind, kw, trade_rows(80, seed=5, cols=COLS[kind.name]), state=state)
        assert np.isfinite(after[-1, 0]), kind.name
