"""MacdCross: trade the crossings of the MACD line and its signal line.

Rules, at each bar close of the traded instrument, once the MACD (feature kind ``macd``
of the close: TA-Lib's ``MACD(fast, slow, signal)``) is ready:

* the first ready bar only records whether the MACD line is above its signal line;
* MACD crosses above the signal line: go long ``quantity``;
* MACD crosses below: go flat (``long_only``) or short ``quantity`` (``long_short``);
* a tie keeps the previous relation.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field, model_validator

from tradebus.engine.messages import Bar
from tradebus.features.spec import FeatureSpec
from tradebus.strategies.ema_cross import cross_signal
from tradebus.strategies.signal import BarSignal, SignalParams
from tradebus.strategies.signal_kernel import SignalKernel

__all__ = ["MacdCross", "MacdCrossParams"]


class MacdCrossParams(SignalParams):
    """Parameters of :class:`MacdCross` (EMA periods in bars, ``fast < slow``)."""

    fast: int = Field(default=12, ge=2)
    slow: int = Field(default=26, ge=3)
    signal: int = Field(default=9, ge=1)

    @model_validator(mode="after")
    def _fast_below_slow(self) -> MacdCrossParams:
        if self.fast >= self.slow:
            raise ValueError(f"fast ({self.fast}) must be smaller than slow ({self.slow})")
        return self


class MacdCross(BarSignal):
    """Long (or long/short) on MACD/signal-line crossings; see the module docstring."""

    Params = MacdCrossParams

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._above: bool | None = None

    def specs(self) -> Sequence[FeatureSpec]:
        """``macd`` of the close."""
        p = self.params
        return (FeatureSpec(name="macd", kind="macd", params={"fast": p.fast, "slow": p.slow, "signal": p.signal},
                            input="close"),)  # fmt: skip

    def signal_kernel(self) -> SignalKernel:
        """:func:`~tradebus.strategies.ema_cross.cross_signal` of the MACD line over its signal line."""
        cols = (float(self._cols["macd.macd"]), float(self._cols["macd.signal"]))
        return self.kernel_of(cross_signal, cols, 1, ("macd crossed above signal", "", "macd crossed below signal"))

    def decide(self, bar: Bar, value: dict[str, float]) -> tuple[float, str] | None:
        """Long on a cross above the signal line, short/flat on a cross below."""
        macd, signal = value["macd.macd"], value["macd.signal"]
        if macd > signal:
            above = True
        elif macd < signal:
            above = False
        else:  # a tie, or not ready (NaN)
            return None
        previous, self._above = self._above, above
        if previous is None or previous is above:
            return None
        return (1.0, "macd crossed above signal") if above else (-1.0, "macd crossed below signal")
