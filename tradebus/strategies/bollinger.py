"""BollingerReversion: fade moves outside the Bollinger bands once price re-enters them.

Bands: feature kind ``bollinger`` of the close (TA-Lib ``BBANDS``: SMA ``window`` ± ``k``
population standard deviations). Rules, at each bar close once the bands are ready:

* a close below the lower band *arms* a long; the first later close back inside the bands
  (``lower <= close <= upper``: the re-entry) goes long ``quantity`` and disarms it;
* a close above the upper band arms a short; the first later close back inside the bands
  goes short (``long_short``; in ``long_only`` it only closes a long);
* arming one side disarms the other (a close from below the lower band straight above the
  upper one fades the latest excursion: a short), and only a close inside the bands enters,
  so one bar never both arms and enters;
* a long is closed when a close reaches the middle band (``close >= mid``), a short when
  a close falls to it (``close <= mid``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numba import njit
from pydantic import Field

from tradebus.engine.messages import Bar
from tradebus.features.spec import FeatureSpec
from tradebus.strategies.signal import BarSignal, SignalParams
from tradebus.strategies.signal_kernel import SignalKernel

__all__ = ["BollingerReversion", "BollingerReversionParams", "bollinger_signal"]


@njit(cache=True)
def bollinger_signal(
    values: np.ndarray, o: float, h: float, lo: float, c: float, v: float, target: float, params: tuple[float, ...],
    state: np.ndarray,
) -> float:
    """Signal kernel of :class:`BollingerReversion` (``params``: lower, mid, upper columns; ``state``: armed long, short)."""
    lower = values[int(params[0])]
    mid = values[int(params[1])]
    upper = values[int(params[2])]
    if not (lower == lower and upper == upper):
        return np.nan
    if c < lower:
        state[0] = 1.0
        state[1] = 0.0
    elif c > upper:
        state[0] = 0.0
        state[1] = 1.0
    elif state[0] != 0.0:
        state[0] = 0.0
        return 1.0
    elif state[1] != 0.0:
        state[1] = 0.0
        return -1.0
    if target > 0.0 and c >= mid:
        return 0.0
    if target < 0.0 and c <= mid:
        return 0.0
    return np.nan


class BollingerReversionParams(SignalParams):
    """Parameters of :class:`BollingerReversion`."""

    window: int = Field(default=20, ge=2)
    k: float = Field(default=2.0, gt=0)


class BollingerReversion(BarSignal):
    """Mean reversion on Bollinger band touch and re-entry; see the module docstring."""

    Params = BollingerReversionParams

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._armed_long = False
        self._armed_short = False

    def specs(self) -> Sequence[FeatureSpec]:
        """``bb`` (Bollinger bands) of the close."""
        return (FeatureSpec(name="bb", kind="bollinger", params={"window": self.params.window, "k": self.params.k},
                            input="close"),)  # fmt: skip

    def signal_kernel(self) -> SignalKernel:
        """:func:`bollinger_signal` on the band columns."""
        cols = tuple(float(self._cols[f"bb.{band}"]) for band in ("lower", "mid", "upper"))
        return self.kernel_of(bollinger_signal, cols, 2, (
            "close re-entered above the lower band", "close reached the middle band",
            "close re-entered below the upper band"))  # fmt: skip

    def decide(self, bar: Bar, value: dict[str, float]) -> tuple[float, str] | None:
        """Arm on a close outside a band, enter on the close back inside, exit at the middle band."""
        lower, mid, upper = value["bb.lower"], value["bb.mid"], value["bb.upper"]
        close = bar.close
        if not (lower == lower and upper == upper):
            return None
        if close < lower:
            self._armed_long, self._armed_short = True, False
        elif close > upper:
            self._armed_long, self._armed_short = False, True
        elif self._armed_long:
            self._armed_long = False
            return 1.0, "close re-entered above the lower band"
        elif self._armed_short:
            self._armed_short = False
            return -1.0, "close re-entered below the upper band"
        if self.target > 0 and close >= mid:
            return 0.0, "close reached the middle band"
        if self.target < 0 and close <= mid:
            return 0.0, "close fell to the middle band"
        return None
