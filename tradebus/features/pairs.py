"""Typed facades of the two-input statistics (kernels in :mod:`tradebus.features.kernels.stats`).

Every class is a :class:`~tradebus.features.stepper.Stepper`: ``update(a, b)`` feeds
one pair in the order of ``kind.inputs`` and ``run(a_col, b_col)`` a whole history,
bit-identical to updating row by row.

Examples
--------
>>> ols = RollingOls(window=3)
>>> ols.run([2.0, 4.0, 6.1, 8.0], [1.0, 2.0, 3.0, 4.0])[:, 0].round(3).tolist()
[nan, nan, 2.05, 2.0]
"""

from __future__ import annotations

from tradebus.features.stepper import Stepper

__all__ = ["DistanceCorr", "KalmanHedge", "RollingCorr", "RollingCov", "RollingOls"]


class RollingOls(Stepper):
    """Rolling OLS of ``y`` on ``x`` with intercept; ``update(y, x)`` -> ``(beta, alpha, r2, resid)``.

    Reference: statsmodels ``OLS`` on each window; see ``rolling_ols_step``.
    """

    KIND = "rolling_ols"
    __slots__ = ()

    def __init__(self, *, window: int = 20) -> None:
        super().__init__(window=window)

    @property
    def beta(self) -> float:
        """Slope after the last update."""
        return float(self._out[0])

    @property
    def alpha(self) -> float:
        """Intercept after the last update."""
        return float(self._out[1])

    @property
    def r2(self) -> float:
        """Coefficient of determination after the last update."""
        return float(self._out[2])

    @property
    def resid(self) -> float:
        """In-sample residual of the latest point."""
        return float(self._out[3])


class RollingCorr(Stepper):
    """Rolling Pearson correlation; ``update(x, y)`` -> ``corr`` (pandas ``rolling().corr()``)."""

    KIND = "rolling_corr"
    __slots__ = ()

    def __init__(self, *, window: int = 20) -> None:
        super().__init__(window=window)


class RollingCov(Stepper):
    """Rolling sample covariance (ddof=1); ``update(x, y)`` -> ``cov`` (pandas ``rolling().cov()``)."""

    KIND = "rolling_cov"
    __slots__ = ()

    def __init__(self, *, window: int = 20) -> None:
        super().__init__(window=window)


class DistanceCorr(Stepper):
    """Rolling distance correlation (Székely); ``update(x, y)`` -> ``(dcor, dcov)``; O(window^2), window <= 256."""

    KIND = "dcor"
    __slots__ = ()

    def __init__(self, *, window: int = 32) -> None:
        super().__init__(window=window)

    @property
    def dcor(self) -> float:
        """Distance correlation after the last update."""
        return float(self._out[0])


class KalmanHedge(Stepper):
    """Kalman-filter hedge ratio; ``update(y, x)`` -> ``(beta, alpha, spread, zscore)``.

    ``spread`` is the one-step-ahead innovation and ``zscore`` the innovation over its
    standard deviation; see ``kalman_hedge_step`` for the equations.
    """

    KIND = "kalman_hedge"
    __slots__ = ()

    def __init__(self, *, delta: float = 1e-4, obs_var: float = 1e-3, prior_var: float = 0.0, warmup: int = 1) -> None:
        super().__init__(delta=delta, obs_var=obs_var, prior_var=prior_var, warmup=warmup)

    @property
    def beta(self) -> float:
        """Hedge ratio after the last update."""
        return float(self._out[0])

    @property
    def zscore(self) -> float:
        """Innovation z-score of the last update."""
        return float(self._out[3])
