"""Cross-sectional rank and z-score (tradebus.features.cross_section)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import rankdata

from tradebus.errors import DataError, FeatureError
from tradebus.features.cross_section import CrossSection, cross_section

UNIVERSE = ["BTCUSDT.BINANCE", "ETHUSDT.BINANCE", "SOLUSDT.BINANCE", "XRPUSDT.BINANCE"]
SEC = 1_000_000_000


def wide_frame(n_rows: int, seed: int, missing: float = 0.3, ties: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    vals = rng.normal(size=(n_rows, len(UNIVERSE)))
    if ties:
        vals = np.round(vals)
    vals[rng.random(vals.shape) < missing] = np.nan
    ts = np.cumsum(rng.integers(0, 3, size=n_rows)) * SEC  # repeated timestamps included
    return pd.DataFrame(vals, index=pd.Index(ts.astype(np.int64)), columns=UNIVERSE)


def replay(df: pd.DataFrame, max_age_ns: int, **kw: int) -> tuple[np.ndarray, np.ndarray]:
    xs = CrossSection(list(df.columns), max_age_ns, **kw)
    ranks, zs = [], []
    for ts, row in zip(df.index, df.to_numpy(), strict=True):
        for inst, v in zip(df.columns, row, strict=True):
            xs.update(inst, int(ts), v)
        res = xs.query(int(ts))
        ranks.append(res.rank)
        zs.append(res.zscore)
    return np.array(ranks), np.array(zs)


def test_fresh_cross_section_matches_rankdata_and_numpy_zscore() -> None:
    values = np.array([0.3, -1.2, 0.3, 2.0])
    xs = CrossSection(UNIVERSE, max_age_ns=SEC)
    for inst, v in zip(UNIVERSE, values, strict=True):
        xs.update(inst, 5 * SEC, v)
    res = xs.query(5 * SEC)
    assert np.array_equal(res.rank, rankdata(values, method="average"))
    np.testing.assert_allclose(res.zscore, (values - values.mean()) / values.std(ddof=0), rtol=1e-12)
    assert res.count == 4
    assert res.rank_of("ETHUSDT.BINANCE") == 1.0
    assert res.rank_of("BTCUSDT.BINANCE") == res.rank_of("SOLUSDT.BINANCE") == 2.5


def test_stale_instrument_is_excluded_and_gets_nan() -> None:
    xs = CrossSection(UNIVERSE, max_age_ns=10 * SEC)
    xs.update("BTCUSDT.BINANCE", 0, 1.0)
    xs.update("ETHUSDT.BINANCE", 5 * SEC, 2.0)
    xs.update("SOLUSDT.BINANCE", 8 * SEC, 3.0)
    at_10 = xs.query(10 * SEC)  # BTC is exactly max_age old: still fresh
    assert at_10.rank.tolist()[:3] == [1.0, 2.0, 3.0]
    assert np.isnan(at_10.rank[3]) and np.isnan(at_10.zscore[3])
    at_11 = xs.query(11 * SEC)  # BTC now stale
    assert np.isnan(at_11.rank[0]) and np.isnan(at_11.zscore[0])
    assert at_11.rank.tolist()[1:3] == [1.0, 2.0]
    np.testing.assert_allclose(at_11.zscore[1:3], [-1.0, 1.0], rtol=1e-15)


def test_fewer_fresh_instruments_than_min_count_gives_all_nan() -> None:
    xs = CrossSection(UNIVERSE, max_age_ns=SEC, min_count=3)
    xs.update("BTCUSDT.BINANCE", 0, 1.0)
    xs.update("ETHUSDT.BINANCE", 0, 2.0)
    res = xs.query(0)
    assert np.isnan(res.rank).all() and np.isnan(res.zscore).all()
    assert res.count == 2


def test_constant_cross_section_has_average_rank_and_nan_zscore() -> None:
    xs = CrossSection(UNIVERSE, max_age_ns=SEC)
    for inst in UNIVERSE:
        xs.update(inst, 0, 0.7)
    res = xs.query(0)
    assert res.rank.tolist() == [2.5] * 4
    assert np.isnan(res.zscore).all()


@pytest.mark.parametrize(("value", "n"), [(0.1, 3), (0.7, 3), (0.0001, 7)])
def test_constant_cross_section_whose_mean_rounds_off_has_nan_zscore(value: float, n: int) -> None:
    # three 0.1 sum to 0.30000000000000004: the mean is off by one ulp, std 1.4e-17 > 0
    universe = [f"I{i}" for i in range(n)]
    xs = CrossSection(universe, max_age_ns=SEC)
    for inst in universe:
        xs.update(inst, 0, value)
    res = xs.query(0)
    assert np.isnan(res.zscore).all()
    _, z = cross_section(pd.DataFrame([[value] * n], index=pd.Index([0]), columns=universe), max_age_ns=0)
    assert np.isnan(z.to_numpy()).all()


def test_nan_update_is_ignored_and_previous_value_kept() -> None:
    xs = CrossSection(UNIVERSE[:2], max_age_ns=10 * SEC)
    xs.update(UNIVERSE[0], 0, 5.0)
    xs.update(UNIVERSE[1], 0, 1.0)
    xs.update(UNIVERSE[0], 2 * SEC, float("nan"))
    res = xs.query(3 * SEC)
    assert res.rank.tolist() == [2.0, 1.0]


def test_sample_std_with_ddof_one() -> None:
    xs = CrossSection(UNIVERSE[:3], max_age_ns=SEC, ddof=1)
    for inst, v in zip(UNIVERSE[:3], [1.0, 2.0, 4.0], strict=True):
        xs.update(inst, 0, v)
    v = np.array([1.0, 2.0, 4.0])
    np.testing.assert_allclose(xs.query(0).zscore, (v - v.mean()) / v.std(ddof=1), rtol=1e-12)


@pytest.mark.parametrize("ties", [False, True])
def test_batch_on_fully_fresh_frame_matches_pandas_rank_and_zscore(ties: bool) -> None:
    df = wide_frame(200, seed=1, missing=0.0, ties=ties)
    rank, z = cross_section(df, max_age_ns=0)
    assert np.array_equal(rank.to_numpy(), df.rank(axis=1, method="average").to_numpy())
    mean = df.mean(axis=1).to_numpy()[:, None]
    std = df.std(axis=1, ddof=0).to_numpy()[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        ref = np.where(std > 0, (df.to_numpy() - mean) / std, np.nan)
    np.testing.assert_allclose(z.to_numpy(), ref, rtol=1e-12, atol=1e-14, equal_nan=True)


@pytest.mark.parametrize(("max_age", "ddof", "min_count"), [(0, 0, 2), (2 * SEC, 0, 2), (5 * SEC, 1, 3)])
def test_live_replay_equals_batch_bit_for_bit(max_age: int, ddof: int, min_count: int) -> None:
    df = wide_frame(300, seed=2, missing=0.6, ties=True)
    rank_b, z_b = cross_section(df, max_age, ddof=ddof, min_count=min_count)
    rank_l, z_l = replay(df, max_age, ddof=ddof, min_count=min_count)
    assert np.array_equal(rank_b.to_numpy(), rank_l, equal_nan=True)
    assert np.array_equal(z_b.to_numpy(), z_l, equal_nan=True)
    assert np.isnan(rank_l).any() and not np.isnan(rank_l).all()


@settings(max_examples=40, deadline=None)
@given(
    cells=st.lists(
        st.lists(st.one_of(st.none(), st.floats(-1e6, 1e6), st.sampled_from([0.0, 1.0, -1.0])), min_size=3, max_size=3),
        min_size=1,
        max_size=25,
    ),
    steps=st.lists(st.integers(0, 3), min_size=25, max_size=25),
    max_age=st.integers(0, 4),
)
def test_batch_row_equals_recomputation_from_fresh_values(cells: list, steps: list, max_age: int) -> None:
    vals = np.array([[np.nan if c is None else c for c in row] for row in cells], dtype=float)
    ts = np.cumsum(steps[: len(cells)]).astype(np.int64)
    df = pd.DataFrame(vals, index=pd.Index(ts), columns=["a", "b", "c"])
    rank, z = cross_section(df, max_age)
    for r in range(len(df)):
        fresh = {}
        for col in range(3):
            hist = [(ts[i], vals[i, col]) for i in range(r + 1) if not np.isnan(vals[i, col])]
            if hist and ts[r] - hist[-1][0] <= max_age:
                fresh[col] = hist[-1][1]
        exp_rank = np.full(3, np.nan)
        exp_z = np.full(3, np.nan)
        if len(fresh) >= 2:
            cols = sorted(fresh)
            v = np.array([fresh[c] for c in cols])
            exp_rank[cols] = rankdata(v, method="average")
            if v.max() > v.min() and v.std() > 0:  # a constant cross-section has no z-score
                exp_z[cols] = (v - v.mean()) / v.std()
        assert np.array_equal(rank.to_numpy()[r], exp_rank, equal_nan=True)
        np.testing.assert_allclose(z.to_numpy()[r], exp_z, rtol=1e-9, atol=1e-12, equal_nan=True)


def test_batch_on_datetime_index_uses_nanoseconds() -> None:
    idx = pd.to_datetime(["2024-01-01 00:00:00", "2024-01-01 00:00:01", "2024-01-01 00:00:03"]).as_unit("s")
    df = pd.DataFrame({"a": [1.0, np.nan, np.nan], "b": [2.0, 3.0, 0.0]}, index=idx)
    rank, _ = cross_section(df, max_age_ns=2 * SEC)
    assert rank.to_numpy().tolist()[:2] == [[1.0, 2.0], [1.0, 2.0]]
    assert np.isnan(rank.to_numpy()[2]).all()  # 'a' is 3 s old at the last row


def test_update_going_back_in_time_is_rejected() -> None:
    xs = CrossSection(UNIVERSE, max_age_ns=SEC)
    xs.update(UNIVERSE[0], 10, 1.0)
    with pytest.raises(DataError, match="older than its previous update"):
        xs.update(UNIVERSE[0], 9, 1.0)


def test_query_before_latest_update_is_rejected() -> None:
    xs = CrossSection(UNIVERSE, max_age_ns=SEC)
    xs.update(UNIVERSE[0], 10, 1.0)
    with pytest.raises(DataError, match="older than the latest update"):
        xs.query(9)


def test_unknown_instrument_is_rejected() -> None:
    xs = CrossSection(UNIVERSE, max_age_ns=SEC)
    with pytest.raises(FeatureError, match="DOGE"):
        xs.update("DOGEUSDT.BINANCE", 0, 1.0)
    with pytest.raises(FeatureError, match="DOGE"):
        xs.query(0).rank_of("DOGEUSDT.BINANCE")


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"max_age_ns": -1}, "max_age_ns"),
        ({"max_age_ns": 1, "ddof": 2}, "ddof"),
        ({"max_age_ns": 1, "ddof": 1, "min_count": 1}, "min_count"),
    ],
)
def test_bad_settings_are_rejected(kw: dict, match: str) -> None:
    with pytest.raises(FeatureError, match=match):
        CrossSection(UNIVERSE, **kw)


@pytest.mark.parametrize(
    ("kw", "shown"),
    [
        ({"max_age_ns": math.inf}, "max_age_ns (nanoseconds) must be a whole number in [0, 9223372036854775807], got inf"),
        ({"max_age_ns": 2**63}, f"max_age_ns (nanoseconds) must be a whole number in [0, 9223372036854775807], got {2**63}"),
        ({"max_age_ns": 1.5}, "max_age_ns (nanoseconds) must be a whole number in [0, 9223372036854775807], got 1.5"),
        ({"max_age_ns": 1, "min_count": math.nan}, "min_count must be a whole number in [1, 9223372036854775807], got nan"),
        ({"max_age_ns": 1, "min_count": math.inf}, "min_count must be a whole number in [1, 9223372036854775807], got inf"),
        ({"max_age_ns": 1, "min_count": 2**64}, f"min_count must be a whole number in [1, 9223372036854775807], got {2**64}"),
    ],
)
def test_non_finite_fractional_or_out_of_int64_settings_are_refused_naming_them(kw: dict, shown: str) -> None:
    with pytest.raises(FeatureError) as live:
        CrossSection(UNIVERSE, **kw)
    assert str(live.value) == f"cross-section: {shown}"
    df = pd.DataFrame({"a": [1.0], "b": [2.0]}, index=pd.Index([0], dtype=np.int64))
    with pytest.raises(FeatureError) as batch:
        cross_section(df, **kw)
    assert str(batch.value) == str(live.value)


def test_whole_float_and_numpy_settings_are_accepted() -> None:
    xs = CrossSection(UNIVERSE, max_age_ns=np.int64(5), min_count=2.0)
    ref = CrossSection(UNIVERSE, max_age_ns=5, min_count=2)
    for x in (xs, ref):
        x.update(UNIVERSE[0], 0, 1.0)
        x.update(UNIVERSE[1], 0, 2.0)
    np.testing.assert_array_equal(xs.query(5).rank, ref.query(5).rank)
    np.testing.assert_array_equal(xs.query(6).rank, ref.query(6).rank)


def test_duplicate_instruments_are_rejected() -> None:
    with pytest.raises(FeatureError, match="duplicate"):
        CrossSection(["a", "b", "a"], max_age_ns=1)


def test_batch_rejects_decreasing_index_naming_the_row() -> None:
    df = pd.DataFrame({"a": [1.0, 2.0, 3.0]}, index=pd.Index([0, 5, 4], dtype=np.int64))
    with pytest.raises(DataError, match="row 2"):
        cross_section(df, 1)


def test_batch_rejects_non_time_index() -> None:
    df = pd.DataFrame({"a": [1.0]}, index=pd.Index(["x"]))
    with pytest.raises(DataError, match="index"):
        cross_section(df, 1)
