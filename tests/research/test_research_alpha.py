"""Alpha reports: IC against scipy, PSR/DSR against the published example, Monte Carlo, cost stress."""

from __future__ import annotations

from pathlib import Path

import math

import numpy as np
import pandas as pd
import pytest
import yaml
from research_helpers import REPO, warned_quickstart
from scipy.stats import norm, spearmanr

from tradebus.errors import DataError
from tradebus.research.alpha import (
    bootstrap_ci,
    cost_stress,
    deflated_sharpe_ratio,
    expected_max_sharpe,
    factor_turnover,
    ic_series,
    ic_summary,
    probabilistic_sharpe_ratio,
    psr_from_moments,
    quantile_returns,
    trade_shuffle,
)


def test_ic_per_block_and_per_timestamp_equal_scipy() -> None:
    rng = np.random.default_rng(0)
    f = pd.Series(rng.normal(size=1000))
    r = pd.Series(0.1 * f + rng.normal(size=1000))
    ic = ic_series(f, r, period=250)
    assert ic.tolist() == pytest.approx([spearmanr(f[s : s + 250], r[s : s + 250]).statistic for s in range(0, 1000, 250)])
    by = pd.Series(np.repeat(np.arange(100), 10))
    cross = ic_series(f, r, by=by)
    assert cross.iat[7] == pytest.approx(spearmanr(f[70:80], r[70:80]).statistic)
    table = ic_summary(f, {1: r, 5: pd.Series(rng.normal(size=1000))}, period=100)
    ic1 = ic_series(f, r, period=100)
    assert table["ic_mean"].iat[0] == pytest.approx(ic1.mean())
    assert table["icir"].iat[0] == pytest.approx(ic1.mean() / ic1.std(ddof=1))
    assert table["ic_mean"].iat[0] > table["ic_mean"].iat[1]  # decay: the unrelated horizon has no IC


def test_a_cross_section_takes_one_row_per_instrument_the_last_of_its_time() -> None:
    """Instrument a has two rows at time 0: both entered the rank correlation, as if a fourth instrument."""
    by = pd.Series([0, 0, 0, 0, 1, 1, 1])
    inst = pd.Series(["a", "a", "b", "c", "a", "b", "c"])
    f = pd.Series([9.0, 1.0, 2.0, 3.0, 1.0, 2.0, 3.0])
    r = pd.Series([-1.0, 0.1, 0.2, 0.3, 0.3, 0.2, 0.1])
    assert ic_series(f, r, by=by, instrument=inst).tolist() == pytest.approx([1.0, -1.0])
    assert ic_summary(f, {1: r}, by=by, instrument=inst)["ic_mean"].iat[0] == pytest.approx(0.0)
    assert factor_turnover(f, by=by, instrument=inst) == pytest.approx(0.0)
    # two instruments, one with two rows at a time, are no cross-section of three
    with pytest.raises(DataError, match="no timestamp has more than 2 rows"):
        ic_series(f[:3], r[:3], by=by[:3], instrument=inst[:3])


def test_turnover_and_quantile_returns() -> None:
    f = pd.Series(np.arange(100, dtype=float))
    assert factor_turnover(f) == pytest.approx(0.0)
    noise = pd.Series(np.random.default_rng(1).normal(size=2000))
    assert 0.9 < factor_turnover(noise) < 1.1
    r = pd.Series(np.arange(100, dtype=float) / 100)
    q = quantile_returns(f, r, 4)
    assert q["mean_return"].tolist() == pytest.approx([0.12, 0.37, 0.62, 0.87])
    assert q["count"].tolist() == [25] * 4
    t = pd.Series(np.repeat([0, 1, 2], 3))
    inst = pd.Series(["a", "b", "c"] * 3)
    same = pd.Series([1.0, 2, 3, 1, 2, 3, 3, 2, 1])
    assert factor_turnover(same, by=t, instrument=inst) == pytest.approx(1.0 - (1.0 + -1.0) / 2)



def test_turnover_is_over_the_instruments_two_cross_sections_share_and_an_error_when_none_share_3() -> None:
    """c has rows only every other time: no two consecutive cross-sections share 3 instruments, and the
    turnover was NaN with a 'Mean of empty slice' RuntimeWarning on stderr."""
    t = pd.Series([0, 0, 0, 1, 1, 2, 2, 2, 3, 3])
    inst = pd.Series(["a", "b", "c", "a", "b"] * 2)
    f = pd.Series(np.arange(10.0))
    with pytest.raises(DataError, match="no two cross-sections 1 time.s. apart .of 4 times. share more than 2 "
                                        "instrument.s. with a factor value"):
        factor_turnover(f, by=t, instrument=inst)
    with pytest.raises(DataError, match="the factor has 2 value.s. with a value 1 row.s. earlier"):
        factor_turnover(f[:3])
    with pytest.raises(DataError, match="constant"):
        factor_turnover(pd.Series(np.ones(10)))
    # times 0 -> 1 share a, b, c (d left out); 1 -> 2 share a, b only: no correlation, left out
    t = pd.Series([0, 0, 0, 0, 1, 1, 1, 2, 2])
    inst = pd.Series(["a", "b", "c", "d", "a", "b", "c", "a", "b"])
    f = pd.Series([1.0, 2.0, 3.0, 0.0, 1.0, 3.0, 2.0, 5.0, 4.0])
    expected = 1.0 - spearmanr([1.0, 3.0, 2.0], [1.0, 2.0, 3.0]).statistic
    assert factor_turnover(f, by=t, instrument=inst) == pytest.approx(expected, rel=1e-12)

def test_psr_and_dsr_reproduce_bailey_lopez_de_prado_example() -> None:
    # "The Deflated Sharpe Ratio" (2014), section 5: 100 trials, V[SR] = 0.5 annualised (250 days),
    # T = 1250, skew -3, kurtosis 10, annualised SR 2.5  ->  SR0 = 0.1132, DSR = 0.9004
    sr0 = expected_max_sharpe(100, 0.5 / 250)
    assert sr0 == pytest.approx(0.1132, abs=5e-5)
    dsr = psr_from_moments(2.5 / math.sqrt(250), 1250, -3.0, 10.0, sr0)
    assert dsr == pytest.approx(0.9004, abs=5e-4)
    # direct formula by hand for a normal sample
    rng = np.random.default_rng(2)
    r = rng.normal(0.001, 0.01, 500)
    from scipy.stats import kurtosis, skew

    sr = r.mean() / r.std(ddof=1)
    z = sr * math.sqrt(499) / math.sqrt(1 - skew(r) * sr + (kurtosis(r, fisher=False) - 1) / 4 * sr**2)
    assert probabilistic_sharpe_ratio(r) == pytest.approx(norm.cdf(z))
    trials = rng.normal(0, 0.05, 50)
    assert deflated_sharpe_ratio(r, trials) == pytest.approx(
        psr_from_moments(sr, 500, skew(r), kurtosis(r, fisher=False), expected_max_sharpe(50, trials.var(ddof=1))))
    assert deflated_sharpe_ratio(r, trials) < probabilistic_sharpe_ratio(r)
    with pytest.raises(DataError):
        probabilistic_sharpe_ratio(np.ones(10))


def test_monte_carlo_trade_shuffle_and_bootstrap() -> None:
    pnl = np.array([100.0, -50.0, -50.0, 200.0])
    out = trade_shuffle(pnl, 1000.0, n_sims=500, seed=1)
    # observed: 1000 -> 1100 -> 1050 -> 1000 -> 1200: drawdown 100/1100
    assert out["observed_max_drawdown"] == pytest.approx(100 / 1100)
    # worst order: -50, -50 first: 100/1000; best: no drawdown
    assert 0.0 <= out["ci_low"] <= out["ci_high"] <= 0.1 + 1e-12
    rng = np.random.default_rng(3)
    r = rng.normal(0.001, 0.01, 1000)
    ci = bootstrap_ci(r, n_sims=2000, seed=0)
    se = 1 / math.sqrt(1000)  # standard error of a per-period SR near 0
    assert ci["sharpe"]["ci_low"] < ci["sharpe"]["estimate"] < ci["sharpe"]["ci_high"]
    assert ci["sharpe"]["ci_high"] - ci["sharpe"]["ci_low"] == pytest.approx(2 * 1.96 * se, rel=0.15)
    assert bootstrap_ci(r, seed=0) == bootstrap_ci(r, seed=0)


def test_cost_stress_scales_fees_and_lowers_equity(tmp_path: Path) -> None:
    # A position small enough that x5 costs never leave too little cash for a buy (the spot
    # account would deny it, and the runs would no longer make the same trades).
    config = yaml.safe_load((REPO / "configs" / "quickstart.yaml").read_text())
    config["data"]["catalog"] = str(REPO / "data" / "catalog")
    config["strategy"]["params"]["quantity"] = 0.05
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(config))
    table = cost_stress(path, (1.0, 2.0, 5.0))
    assert table["fills"].nunique() == 1  # the same trades
    fees = table["fees"].to_numpy()
    assert fees[1] / fees[0] == pytest.approx(2.0, rel=0.01) and fees[2] / fees[0] == pytest.approx(5.0, rel=0.01)
    assert (np.diff(table["final_equity"].to_numpy()) < 0).all()


def test_cost_stress_leaves_out_a_multiplier_that_makes_the_config_invalid(tmp_path: Path) -> None:
    """research alpha's cost stress ran a taker fee of 0.02 x5 as 0.1, a fee the config itself refuses
    (below 0.1), where a sweep's stress variant is validated (StressVariant.apply_config)."""
    from loguru import logger

    config = yaml.safe_load((REPO / "configs" / "quickstart.yaml").read_text())
    config["data"]["catalog"] = str(REPO / "data" / "catalog")
    config["instruments"][0]["taker_fee"] = 0.02
    config["strategy"]["params"]["quantity"] = 0.05
    path = tmp_path / "fees.yaml"
    path.write_text(yaml.safe_dump(config))
    warnings: list[str] = []
    sink = logger.add(lambda m: warnings.append(m.record["message"]), level="WARNING")
    try:
        table = cost_stress(path, (1.0, 2.0, 5.0))
    finally:
        logger.remove(sink)
    assert table["multiplier"].tolist() == [1.0, 2.0]
    assert warnings == ["cost stress: costs x5 is left out: costs x5 makes an invalid config:\n"
                        "  instruments.0.taker_fee: Input should be less than 0.1 (got 0.1)"]


def test_quantile_returns_put_equal_factor_values_in_one_quantile() -> None:
    # sorted factor: -1 x3, 0 x4, 1 x3; its 0/20/40/60/80/100 % quantiles are -1, -1, 0, 0, 1, 1: pandas drops
    # the repeated edges, leaving [-1, 0] and (0, 1]; it numbered them by their place among 5 (1, 2 and 4, -1
    # alone in quantile 1), which pd.qcut, the docstring's reference, does not
    f = pd.Series([0.0, 1, -1, 0, 1, -1, 0, 0, -1, 1])
    r = pd.Series([1.0, 5, -3, 3, 7, -1, 2, 6, -2, 9])
    q = quantile_returns(f, r, 5)
    assert q["quantile"].tolist() == [1, 2]
    assert q["mean_return"].tolist() == pytest.approx([6 / 7, 7.0])  # (-3-1-2+1+3+2+6)/7, (5+7+9)/3
    assert q["count"].tolist() == [7, 3]
    # 0..7 in 7 quantiles: the edges are 0, 1, ..., 7, so quantile 1 is [0, 1] and quantile j > 1 is {j}; np.quantile
    # put the 5/7 edge at 4.999999999999999 and 5 in quantile 6 with 6 (quantile 5 empty, as pd.qcut does not)
    f = pd.Series(np.arange(8, dtype=float))
    q = quantile_returns(f, f * 10, 7)
    assert q["quantile"].tolist() == [1, 2, 3, 4, 5, 6, 7] and q["count"].tolist() == [2, 1, 1, 1, 1, 1, 1]
    assert q["mean_return"].tolist() == pytest.approx([5.0, 20, 30, 40, 50, 60, 70])


def test_quantile_returns_bucket_as_pandas_qcut_on_factors_with_ties() -> None:
    # integer-valued factors (many values on the edges) in 2..10 quantiles, edges repeated or not
    rng = np.random.default_rng(7)
    for _ in range(300):
        n, q = int(rng.integers(10, 200)), int(rng.integers(2, 11))
        f = pd.Series(rng.integers(0, int(rng.integers(2, 30)), size=n) * float(rng.choice([1.0, 0.1, 0.3, 7.0])))
        r = pd.Series(rng.normal(size=n))
        want = r.groupby(pd.qcut(f, q, labels=False, duplicates="drop") + 1).agg(["mean", "count"])
        got = quantile_returns(f, r, q)
        assert got["quantile"].tolist() == want.index.tolist() and got["count"].tolist() == want["count"].tolist()
        assert got["mean_return"].tolist() == pytest.approx(want["mean"].tolist(), rel=1e-12)
    # distinct values: the same buckets as pandas' qcut of the values
    f, r = pd.Series(rng.normal(size=103)), pd.Series(rng.normal(size=103))
    means = r.groupby(pd.qcut(f, 5, labels=False) + 1).mean()
    assert quantile_returns(f, r, 5)["mean_return"].tolist() == pytest.approx(means.tolist(), rel=1e-12)


def test_quantile_returns_keep_every_row_of_a_constant_or_infinite_factor() -> None:
    # a factor of one value over the window (a flag that never changed): pd.qcut's edges are all that value, and
    # with the repeats dropped no bucket is left, so every row came out without a quantile and the table was empty
    f, r = pd.Series([1.0] * 10), pd.Series(np.arange(10.0))
    q = quantile_returns(f, r, 3)
    assert q["quantile"].tolist() == [1] and q["count"].tolist() == [10]
    assert q["mean_return"].tolist() == pytest.approx([4.5])
    # an infinite factor value has no pd.qcut bucket: it was dropped without a word and the buckets numbered 2, 3
    with pytest.raises(DataError, match=r"1 of 6 factor values are not finite \(-inf\)"):
        quantile_returns(pd.Series([-np.inf, 1, 2, 3, 4, 5]), pd.Series(np.arange(6.0)), 3)


def test_cost_stress_reruns_log_as_reruns_not_as_the_backtest(tmp_path: Path) -> None:
    """research alpha --backtest configs/quickstart.yaml printed 26 'order ... denied: buying_power'
    warnings of its x2/x5 cost re-runs on the command line, where the backtest itself denies nothing (the built-in
    strategies no longer warn of a denial: a user's strategy that does)."""
    from loguru import logger

    from tradebus.ops.logs import RERUN

    records: list[dict] = []
    sink = logger.add(lambda m: records.append(m.record), level="INFO")
    try:
        table = cost_stress(warned_quickstart(tmp_path), (1.0, 5.0))
    finally:
        logger.remove(sink)
    warnings = [r for r in records if r["level"].name == "WARNING"]
    assert len(warnings) > 10 and all("denied: buying_power" in r["message"] for r in warnings)
    assert {r["extra"].get(RERUN) for r in warnings} == {"cost stress x5"}  # x1 is the backtest, denying nothing
    counted = [r["message"] for r in records if r["message"].startswith("cost stress: the 2 re-runs")]
    assert counted == [f"cost stress: the 2 re-runs with costs x1, x5 logged {len(warnings)} warnings, not shown; "
                       f"the first: {warnings[0]['message']}"]
    assert table["multiplier"].tolist() == [1.0, 5.0] and table["fills"].iat[1] < table["fills"].iat[0]
