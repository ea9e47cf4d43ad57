"""RsiReversion: buy oversold, sell overbought, on Wilder's RSI of the close.

RSI: feature kind ``rsi`` of the close (TA-Lib ``RSI(window)``). Rules, at each bar close
once the RSI is ready:

* RSI below ``oversold``: go long ``quantity`` (from flat or short);
* RSI above ``overbought``: go short ``quantity`` (``long_short``; in ``long_only``, flat);
* a long is closed when the RSI rises above ``exit_long``, a short when it falls below
  ``exit_short`` (both default 50).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numba import njit
from pydantic import Field, model_validator

from tradebus.engine.messages import Bar
from tradebus.features.spec import FeatureSpec
from tradebus.strategies.signal import BarSignal, SignalParams
from tradebus.strategies.signal_kernel import SignalKernel

__all__ = ["RsiReversion", "RsiReversionParams", "rsi_signal"]


@njit(cache=True)
def rsi_signal(
    values: np.ndarray, o: float, h: float, lo: float, c: float, v: float, target: float, params: tuple[float, ...],
    state: np.ndarray,
) -> float:
    """Signal kernel of :class:`RsiReversion` (``params``: RSI column, oversold, overbought, exit_long, exit_short)."""
    rsi = values[int(params[0])]
    if rsi < params[1]:
        return 1.0
    if rsi > params[2]:
        return -1.0
    if target > 0.0 and rsi > params[3]:
        return 0.0
    if target < 0.0 and rsi < params[4]:
        return 0.0
    return np.nan


class RsiReversionParams(SignalParams):
    """Parameters of :class:`RsiReversion` (levels in RSI points, 0-100)."""

    window: int = Field(default=14, ge=2)
    oversold: float = Field(default=30.0, gt=0, lt=100)
    overbought: float = Field(default=70.0, gt=0, lt=100)
    exit_long: float = Field(default=50.0, gt=0, lt=100)
    exit_short: float = Field(default=50.0, gt=0, lt=100)

    @model_validator(mode="after")
    def _ordered(self) -> RsiReversionParams:
        if not self.oversold < self.exit_long <= self.overbought:
            raise ValueError(f"need oversold < exit_long <= overbought, got {self.oversold}, {self.exit_long}, "
                             f"{self.overbought}")  # fmt: skip
        if not self.oversold <= self.exit_short < self.overbought:
            raise ValueError(f"need oversold <= exit_short < overbought, got {self.oversold}, {self.exit_short}, "
                             f"{self.overbought}")  # fmt: skip
        return self


class RsiReversion(BarSignal):
    """Mean reversion on RSI extremes; see the module docstring."""

    Params = RsiReversionParams

    def specs(self) -> Sequence[FeatureSpec]:
        """``rsi`` of the close."""
        return (FeatureSpec(name="rsi", kind="rsi", params={"window": self.params.window}, input="close"),)

    def signal_kernel(self) -> SignalKernel:
        """:func:`rsi_signal` with this strategy's levels."""
        p = self.params
        params = (float(self._cols["rsi"]), p.oversold, p.overbought, p.exit_long, p.exit_short)
        return self.kernel_of(rsi_signal, params, 0, ("rsi below oversold", "rsi at exit level", "rsi above overbought"))

    def decide(self, bar: Bar, value: dict[str, float]) -> tuple[float, str] | None:
        """Enter at the extremes, exit at the exit levels."""
        rsi = value["rsi"]
        p = self.params
        if rsi < p.oversold:
            return 1.0, f"rsi {rsi:.1f} below {p.oversold:g}"
        if rsi > p.overbought:
            return -1.0, f"rsi {rsi:.1f} above {p.overbought:g}"
        if self.target > 0 and rsi > p.exit_long:
            return 0.0, f"rsi {rsi:.1f} above {p.exit_long:g}"
        if self.target < 0 and rsi < p.exit_short:
            return 0.0, f"rsi {rsi:.1f} below {p.exit_short:g}"
        return None
