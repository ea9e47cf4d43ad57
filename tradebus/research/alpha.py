"""Alpha and robustness reports: IC, ICIR, IC decay, turnover, quantile returns, PSR/DSR, Monte Carlo, cost stress.

Information coefficient
-----------------------
The IC is the Spearman rank correlation between a factor and the forward return. With
several instruments it is computed across instruments at each timestamp (``by`` =
the time column); with one instrument, over consecutive blocks of ``period`` rows. The
ICIR is ``mean(IC) / std(IC)``; the IC decay is the mean IC per horizon.

A cross-section holds one row per instrument. Of an instrument's bars sharing a time
(threshold bars), it takes the last in file order: the instrument's state once that time
has passed, with the forward return from its close (the others would weigh one instrument
several times in one rank correlation).

Sharpe ratios (Bailey and López de Prado)
-----------------------------------------
* Probabilistic Sharpe ratio: ``PSR(SR*) = Φ((SR - SR*) sqrt(n - 1) / sqrt(1 - γ3 SR + (γ4 - 1) / 4 SR²))``
  with the per-period SR, skewness γ3 and (non-excess) kurtosis γ4 of ``n`` returns.
* Deflated Sharpe ratio: the PSR against ``SR0 = sqrt(V[SR]) ((1 - γ) Φ⁻¹(1 - 1/N) + γ Φ⁻¹(1 - 1/(N e)))``,
  the expected maximum SR of ``N`` unskilled trials whose SRs have variance ``V[SR]``
  (γ: Euler-Mascheroni constant).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from loguru import logger
from scipy.stats import kurtosis, norm, skew, spearmanr

from tradebus.errors import ConfigError, DataError

__all__ = [
    "bootstrap_ci",
    "cost_stress",
    "deflated_sharpe_ratio",
    "expected_max_sharpe",
    "factor_turnover",
    "ic_series",
    "ic_summary",
    "probabilistic_sharpe_ratio",
    "psr_from_moments",
    "quantile_returns",
    "trade_shuffle",
]

_EULER_GAMMA = 0.5772156649015329


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ok = ~(np.isnan(a) | np.isnan(b))
    if ok.sum() < 3 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
        return float("nan")
    return float(spearmanr(a[ok], b[ok]).statistic)


def _last_per_instrument(by: pd.Series, instrument: pd.Series | None) -> np.ndarray:
    """Mask of the rows a cross-section takes: the last row of each ``(by, instrument)``, in row order."""
    if instrument is None:
        return np.ones(len(by), dtype=bool)
    keys = pd.DataFrame({"t": by.to_numpy(), "i": instrument.to_numpy()})
    return ~keys.duplicated(keep="last").to_numpy()


def ic_series(factor: pd.Series, forward: pd.Series, by: pd.Series | None = None, period: int = 100,
              instrument: pd.Series | None = None) -> pd.Series:
    """Spearman IC per timestamp (``by``: cross-section) or per block of ``period`` rows (one instrument).

    With ``by``, ``instrument`` names each row's instrument: of the rows of one instrument at
    one time, the cross-section takes the last (without it, every row counts as an instrument).

    Raises
    ------
    DataError
        ``by`` is given but no timestamp has 3 rows (a rank correlation of fewer is undefined).
    ConfigError
        No ``by`` and fewer rows than ``period`` (no block to correlate over).
    """
    f = factor.to_numpy(dtype=np.float64)
    r = forward.to_numpy(dtype=np.float64)
    if f.shape != r.shape:
        raise DataError(f"alpha: factor and forward returns differ in length ({f.shape[0]} != {r.shape[0]})")
    if by is not None:
        last = _last_per_instrument(by, instrument)
        keys, f, r = by.to_numpy()[last], f[last], r[last]
        order = np.argsort(keys, kind="stable")
        uniq, first = np.unique(keys[order], return_index=True)
        bounds = [*first.tolist(), len(keys)]
        widest = int(np.diff(bounds).max()) if len(uniq) else 0
        if widest < 3:
            raise DataError(f"alpha: a cross-sectional IC needs at least 3 instruments at one time, but no timestamp "
                            f"has more than {widest} rows (with fewer instruments, report each one alone)")
        values = [_spearman(f[order[a:b]], r[order[a:b]]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        return pd.Series(values, index=uniq, name="ic")
    if period < 3:
        raise DataError(f"alpha: period must be >= 3 rows, got {period}")
    if period > len(f):
        raise ConfigError(f"alpha.period: an IC block of {period} rows is longer than the factor's {len(f)} rows (no "
                          f"IC); give at most {len(f)}")
    starts = range(0, len(f) - period + 1, period)
    return pd.Series([_spearman(f[s : s + period], r[s : s + period]) for s in starts],
                     index=list(starts), name="ic")


def ic_summary(
    factor: pd.Series, forwards: Mapping[int, pd.Series], by: pd.Series | None = None, period: int = 100,
    instrument: pd.Series | None = None,
) -> pd.DataFrame:
    """Mean IC, its standard deviation, ICIR, t-statistic and count per horizon (the IC decay).

    ``by``, ``period`` and ``instrument`` are those of :func:`ic_series`.
    """
    rows = []
    for horizon, forward in forwards.items():
        ic = ic_series(factor, forward, by, period, instrument).dropna()
        mean, std = float(ic.mean()) if len(ic) else float("nan"), float(ic.std(ddof=1)) if len(ic) > 1 else float("nan")
        icir = mean / std if std and std == std else float("nan")
        rows.append({"horizon": horizon, "ic_mean": mean, "ic_std": std, "icir": icir,
                     "t_stat": icir * math.sqrt(len(ic)) if icir == icir else float("nan"), "n": len(ic)})
    return pd.DataFrame(rows)


def factor_turnover(factor: pd.Series, lag: int = 1, by: pd.Series | None = None,
                    instrument: pd.Series | None = None) -> float:
    """``1 -`` the rank autocorrelation of the factor at ``lag``.

    One instrument: the Spearman correlation of the series with itself ``lag`` rows
    earlier. Cross-section (``by`` times, ``instrument`` ids): the mean Spearman
    correlation between cross-sections ``lag`` times apart, each over the instruments both
    have a factor value for (of the rows of one instrument at one time, the last); a pair
    sharing fewer than 3 such instruments, or with a factor constant across them, has no
    correlation and is left out.

    Raises
    ------
    DataError
        No pair has a correlation (e.g. an instrument with bars only every other time leaves
        two consecutive cross-sections sharing fewer than 3 instruments).
    """
    if by is None:
        f = factor.to_numpy(dtype=np.float64)
        pairs = [(f[lag:], f[:-lag])]
    else:
        last = _last_per_instrument(by, instrument)
        wide = pd.DataFrame({"t": by.to_numpy()[last],
                             "i": instrument.to_numpy()[last] if instrument is not None else None,
                             "f": factor.to_numpy()[last]}).pivot(index="t", columns="i", values="f")
        values = wide.to_numpy(dtype=np.float64)
        pairs = [(values[k], values[k - lag]) for k in range(lag, len(values))]
    corr = np.array([_spearman(a, b) for a, b in pairs])
    if np.isnan(corr).all():
        shared = max((int((~np.isnan(a) & ~np.isnan(b)).sum()) for a, b in pairs), default=0)
        if shared >= 3:
            raise DataError(f"alpha: turnover is undefined: the factor is constant in every pair of rows "
                            f"(cross-sections) {lag} apart with 3 or more values")
        where = (f"the factor has {shared} value(s) with a value {lag} row(s) earlier" if by is None else
                 f"no two cross-sections {lag} time(s) apart (of {len(wide)} times) share more than "
                 f"{shared} instrument(s) with a factor value")
        raise DataError(f"alpha: turnover needs a rank correlation of at least 3 factor values, but {where}")
    return 1.0 - float(np.nanmean(corr))


def quantile_returns(factor: pd.Series, forward: pd.Series, quantiles: int = 5) -> pd.DataFrame:
    """Mean and count of forward returns per factor quantile (1 = lowest factor values).

    The buckets are ``pd.qcut(factor, quantiles, labels=False, duplicates="drop") + 1`` of the rows
    with both a factor value and a forward return: quantile ``j`` holds the values in
    ``(e_{j-1}, e_j]`` (the lowest value in quantile 1), the edges ``e_j`` being pandas' ``j / quantiles``
    quantiles of the values, so equal values always share a quantile. Where edges coincide (a factor
    with few distinct values) pandas drops the repeated ones: fewer than ``quantiles`` buckets come out,
    numbered 1, 2, ... from the lowest (a -1/0/1 factor split 30/40/30 % in 5 quantiles has the edges
    -1, -1, 0, 0, 1, 1, so buckets ``[-1, 0]`` = 1 and ``(0, 1]`` = 2); a factor of one value is one
    bucket, 1, of every row (pd.qcut leaves it none).

    Raises
    ------
    ConfigError
        More quantiles than rows with both a factor value and a forward return (buckets would be
        single rows, not quantiles).
    DataError
        An infinite factor value (no bucket holds it).
    """
    frame = pd.DataFrame({"f": factor.to_numpy(), "r": forward.to_numpy()}).dropna()
    if quantiles > len(frame):
        raise ConfigError(f"alpha.quantiles: {quantiles} quantiles of {len(frame)} rows with a factor value and a "
                          f"forward return; give at most {len(frame)}")
    f = frame["f"].astype(np.float64)
    infinite = np.isinf(f.to_numpy())
    if infinite.any():
        signs = sorted({"-inf" if v < 0.0 else "inf" for v in f[infinite]})
        raise DataError(f"quantile_returns: {int(infinite.sum())} of {len(f)} factor values are not finite "
                        f"({', '.join(signs)}), which no quantile bucket holds; make the factor finite")
    if f.nunique() == 1:  # pd.qcut leaves no bucket of one value: its edges all coincide
        frame["q"] = 1
    else:
        frame["q"] = pd.qcut(f, quantiles, labels=False, duplicates="drop") + 1
    out = frame.groupby("q")["r"].agg(["mean", "count"]).reset_index()
    out.columns = ["quantile", "mean_return", "count"]
    return out


# ---------------------------------------------------------------------------- Sharpe ratios


def psr_from_moments(sr: float, n: int, skewness: float, kurt: float, sr_benchmark: float = 0.0) -> float:
    """PSR from the per-period Sharpe ratio, the number of returns, skewness and (non-excess) kurtosis."""
    denom = 1.0 - skewness * sr + (kurt - 1.0) / 4.0 * sr * sr
    if n < 2 or denom <= 0:
        return float("nan")
    return float(norm.cdf((sr - sr_benchmark) * math.sqrt(n - 1) / math.sqrt(denom)))


def _moments(returns: np.ndarray) -> tuple[float, int, float, float]:
    r = np.asarray(returns, dtype=np.float64)
    r = r[np.isfinite(r)]
    if r.size < 3 or r.std(ddof=1) == 0:
        raise DataError("alpha: need at least 3 finite, non-constant returns for a Sharpe ratio")
    return float(r.mean() / r.std(ddof=1)), int(r.size), float(skew(r)), float(kurtosis(r, fisher=False))


def probabilistic_sharpe_ratio(returns: np.ndarray, sr_benchmark: float = 0.0) -> float:
    """Probability that the true per-period Sharpe ratio exceeds ``sr_benchmark``."""
    sr, n, g3, g4 = _moments(returns)
    return psr_from_moments(sr, n, g3, g4, sr_benchmark)


def expected_max_sharpe(n_trials: int, sr_variance: float) -> float:
    """``SR0``: the expected maximum per-period SR of ``n_trials`` unskilled trials."""
    if n_trials < 2:
        return 0.0
    return math.sqrt(sr_variance) * (
        (1.0 - _EULER_GAMMA) * norm.ppf(1.0 - 1.0 / n_trials)
        + _EULER_GAMMA * norm.ppf(1.0 - 1.0 / (n_trials * math.e))
    )


def deflated_sharpe_ratio(returns: np.ndarray, trial_sharpes: Sequence[float] | None = None, *,
                          n_trials: int | None = None, sr_variance: float | None = None) -> float:
    """DSR of ``returns`` given the per-period SRs of every trial tried (or their count and variance)."""
    if trial_sharpes is not None:
        trials = np.asarray(trial_sharpes, dtype=np.float64)
        n_trials, sr_variance = trials.size, float(trials.var(ddof=1))
    if n_trials is None or sr_variance is None:
        raise DataError("alpha: give trial_sharpes, or n_trials and sr_variance")
    sr, n, g3, g4 = _moments(returns)
    return psr_from_moments(sr, n, g3, g4, expected_max_sharpe(n_trials, sr_variance))


# ---------------------------------------------------------------------------- Monte Carlo


def _max_drawdown(pnl_path: np.ndarray, initial: float) -> np.ndarray:
    equity = initial + np.cumsum(pnl_path, axis=-1)
    peak = np.maximum.accumulate(np.maximum(equity, initial), axis=-1)
    return ((peak - equity) / peak).max(axis=-1)


def trade_shuffle(trade_pnl: np.ndarray, initial: float, n_sims: int = 1000, seed: int = 0,
                  level: float = 0.95) -> dict[str, float]:
    """Max-drawdown distribution over random orders of the same trades (the final PnL does not change)."""
    pnl = np.asarray(trade_pnl, dtype=np.float64)
    rng = np.random.default_rng(seed)
    paths = np.stack([rng.permutation(pnl) for _ in range(n_sims)]) if pnl.size else np.zeros((n_sims, 0))
    dd = _max_drawdown(paths, initial) if pnl.size else np.zeros(n_sims)
    lo, hi = np.quantile(dd, [(1 - level) / 2, (1 + level) / 2])
    return {"observed_max_drawdown": float(_max_drawdown(pnl, initial)) if pnl.size else 0.0,
            "median_max_drawdown": float(np.median(dd)), "ci_low": float(lo), "ci_high": float(hi),
            "p95_max_drawdown": float(np.quantile(dd, 0.95))}


def bootstrap_ci(returns: np.ndarray, n_sims: int = 1000, seed: int = 0, level: float = 0.95,
                 periods_per_year: float = 1.0) -> dict[str, dict[str, float]]:
    """Percentile bootstrap CIs of the Sharpe ratio (annualised by ``periods_per_year``) and total return."""
    r = np.asarray(returns, dtype=np.float64)
    r = r[np.isfinite(r)]
    if r.size < 3:
        raise DataError("alpha: need at least 3 returns to bootstrap")
    rng = np.random.default_rng(seed)
    samples = r[rng.integers(0, r.size, (n_sims, r.size))]
    std = samples.std(axis=1, ddof=1)
    sharpe = np.where(std > 0, samples.mean(axis=1) / np.where(std > 0, std, 1.0), np.nan) * math.sqrt(periods_per_year)
    total = np.prod(1.0 + samples, axis=1) - 1.0
    q = [(1 - level) / 2, (1 + level) / 2]
    out = {}
    for name, point, dist in (("sharpe", r.mean() / r.std(ddof=1) * math.sqrt(periods_per_year), sharpe),
                              ("total_return", np.prod(1.0 + r) - 1.0, total)):
        lo, hi = np.nanquantile(dist, q)
        out[name] = {"estimate": float(point), "ci_low": float(lo), "ci_high": float(hi)}
    return out


# ---------------------------------------------------------------------------- cost stress


def cost_stress(config_path: str | Path, multipliers: Sequence[float] = (1.0, 2.0, 5.0)) -> pd.DataFrame:
    """Re-run a backtest config with every fee and the slippage multiplied; one row of metrics per multiplier.

    A multiplier whose config the config's own rules refuse (a taker fee of 0.02 times 5 is 0.1, not
    below 0.1) is left out, with a warning naming it and the field, validated as a sweep's stress
    variant is (:meth:`tradebus.sweep.stress.StressVariant.apply_config`).

    The re-runs' records carry ``extra[RERUN]`` (:data:`tradebus.ops.logs.RERUN`, naming the
    multiplier), so the command line does not show them (orders denied for buying power at x5 costs
    read as the backtest's own); one INFO line counts their warnings.
    """
    from tradebus.cli import build_kernel, build_replay
    from tradebus.config import load_config
    from tradebus.ops.logs import RERUN
    from tradebus.reports.metrics import compute_metrics
    from tradebus.sweep.stress import StressVariant

    config = load_config(Path(config_path))
    rows = []
    warned: list[str] = []
    counter = logger.add(lambda m: warned.append(m.record["message"]), level="WARNING",
                         filter=lambda r: RERUN in r["extra"])
    try:
        for m in multipliers:
            try:
                stressed = StressVariant(name=f"costs_x{m:g}", costs=m).apply_config(config)
            except ConfigError as exc:
                logger.warning("cost stress: costs x{:g} is left out: {}", m, exc)
                continue
            with logger.contextualize(**{RERUN: f"cost stress x{m:g}"}):
                result = build_kernel(stressed).run(build_replay(stressed))
            metrics: dict[str, Any] = compute_metrics(result)
            rows.append({"multiplier": m,
                         "final_equity": result.equity[-1].equity if result.equity else config.initial_cash,
                         "fees": sum(f.fee for f in result.fills), "fills": len(result.fills),
                         **{k: metrics.get(k) for k in ("total_return", "sharpe", "max_drawdown")}})
    finally:
        logger.remove(counter)
    if warned:
        logger.info("cost stress: the {} re-runs with costs x{} logged {} warnings, not shown; the first: {}",
                    len(rows), ", x".join(f"{row['multiplier']:g}" for row in rows), len(warned), warned[0])
    return pd.DataFrame(rows)
