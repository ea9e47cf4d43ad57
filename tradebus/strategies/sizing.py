"""Reusable position sizers: volatility targeting and fractional Kelly.

A sizer turns a history of closes into a *weight* (a signed fraction of equity) that any
strategy applies with :meth:`~tradebus.strategies.base.Strategy.target_weight`, e.g.::

    sizer = VolatilityTargetSizer(target_vol=0.4, periods_per_year=365 * 6)   # 4h bars

    def history_sizes(self, instrument_id):
        return {"bars": sizer.lookback + 1}

    def on_bar(self, bar):
        weight = sizer.weight(self.bars().close)
        self.target_weight(self.instrument_id, signal * weight)

Returns are simple returns of consecutive closes (``close_t / close_{t-1} - 1``) over the
last ``lookback`` of them. Annualisation uses ``periods_per_year`` (crypto trades every
day: 365 daily bars, 2,190 four-hour bars a year).
"""

from __future__ import annotations

import math

import numpy as np

from tradebus.errors import ConfigError

__all__ = ["FractionalKellySizer", "VolatilityTargetSizer", "simple_returns"]


def simple_returns(closes: np.ndarray) -> np.ndarray:
    """``close_t / close_{t-1} - 1`` of consecutive closes."""
    closes = np.asarray(closes, dtype=np.float64)
    return closes[1:] / closes[:-1] - 1.0


class _Sizer:
    def __init__(self, lookback: int, max_leverage: float) -> None:
        if lookback < 2:
            raise ConfigError(f"{type(self).__name__}: lookback must be >= 2 returns, got {lookback}")
        if not max_leverage > 0:
            raise ConfigError(f"{type(self).__name__}: max_leverage must be > 0, got {max_leverage}")
        self.lookback = lookback
        self.max_leverage = max_leverage

    def _returns(self, closes: np.ndarray) -> np.ndarray | None:
        returns = simple_returns(closes)[-self.lookback :]
        if len(returns) < self.lookback or not np.isfinite(returns).all():
            return None
        return returns

    def _clip(self, weight: float) -> float:
        return max(-self.max_leverage, min(self.max_leverage, weight))


class VolatilityTargetSizer(_Sizer):
    """Weight that makes the position's annualised volatility ``target_vol``.

    ``weight = target_vol / (std(returns, ddof=1) * sqrt(periods_per_year))``, capped at
    ``max_leverage``; 0 while fewer than ``lookback`` returns exist (or their std is 0).

    Parameters
    ----------
    target_vol
        Annualised volatility target (``0.2`` = 20 %).
    periods_per_year
        Bars per year of the closes.
    lookback
        Returns in the volatility estimate.
    max_leverage
        Largest absolute weight.
    """

    def __init__(
        self, target_vol: float, periods_per_year: float, lookback: int = 30, max_leverage: float = 1.0
    ) -> None:
        super().__init__(lookback, max_leverage)
        if not (target_vol > 0 and periods_per_year > 0):
            raise ConfigError("VolatilityTargetSizer: target_vol and periods_per_year must be > 0")
        self.target_vol = target_vol
        self.periods_per_year = periods_per_year

    def weight(self, closes: np.ndarray) -> float:
        """The (non-negative) weight for the latest ``lookback + 1`` closes."""
        returns = self._returns(closes)
        if returns is None:
            return 0.0
        vol = float(np.std(returns, ddof=1)) * math.sqrt(self.periods_per_year)
        return self._clip(self.target_vol / vol) if vol > 0 else 0.0


class FractionalKellySizer(_Sizer):
    """A fraction of the Kelly weight ``mean / variance`` of the returns.

    ``weight = fraction * mean(returns) / var(returns, ddof=1)``, clipped to
    ``[-max_leverage, max_leverage]`` (negative: the history favours a short); 0 while fewer
    than ``lookback`` returns exist (or their variance is 0).

    Parameters
    ----------
    fraction
        Share of the full Kelly weight (``0.5``: half Kelly).
    lookback
        Returns in the mean and variance estimates.
    max_leverage
        Largest absolute weight.
    """

    def __init__(self, fraction: float = 0.5, lookback: int = 60, max_leverage: float = 1.0) -> None:
        super().__init__(lookback, max_leverage)
        if not 0 < fraction <= 1:
            raise ConfigError(f"FractionalKellySizer: fraction must be in (0, 1], got {fraction}")
        self.fraction = fraction

    def weight(self, closes: np.ndarray) -> float:
        """The signed weight for the latest ``lookback + 1`` closes."""
        returns = self._returns(closes)
        if returns is None:
            return 0.0
        var = float(np.var(returns, ddof=1))
        return self._clip(self.fraction * float(np.mean(returns)) / var) if var > 0 else 0.0
