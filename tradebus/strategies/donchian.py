"""DonchianBreakout: trade breakouts of the highest high / lowest low of the previous bars.

Channels: feature kinds ``rolling_max`` of the high and ``rolling_min`` of the low over
``entry`` and ``exit`` bars. A bar is compared with the channel of the bars *before* it
(the values the strategy read at the previous bar), so a bar never breaks out of a
channel that contains itself. Rules, at each bar close once the channels are ready:

* close above the highest high of the previous ``entry`` bars: go long ``quantity``;
* close below the lowest low of the previous ``entry`` bars: go short (``long_short``;
  in ``long_only``, flat);
* a long is closed on a close below the lowest low of the previous ``exit`` bars, a
  short on a close above the highest high of the previous ``exit`` bars.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field, model_validator

from tradebus.engine.messages import Bar
from tradebus.features.spec import FeatureSpec
from tradebus.strategies.signal import BarSignal, SignalParams

__all__ = ["DonchianBreakout", "DonchianBreakoutParams"]

_NAN = float("nan")


class DonchianBreakoutParams(SignalParams):
    """Parameters of :class:`DonchianBreakout` (channel lengths in bars)."""

    entry: int = Field(default=20, ge=2)
    exit: int = Field(default=10, ge=1)

    @model_validator(mode="after")
    def _exit_not_longer(self) -> DonchianBreakoutParams:
        if self.exit > self.entry:
            raise ValueError(f"exit ({self.exit}) must not be longer than entry ({self.entry})")
        return self


class DonchianBreakout(BarSignal):
    """Channel breakout with a shorter exit channel; see the module docstring."""

    Params = DonchianBreakoutParams

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._previous = {"hi": _NAN, "lo": _NAN, "xhi": _NAN, "xlo": _NAN}

    def specs(self) -> Sequence[FeatureSpec]:
        """Highest high and lowest low over the entry and exit channels."""
        e, x = self.params.entry, self.params.exit
        return (
            FeatureSpec(name="hi", kind="rolling_max", params={"window": e, "min_periods": e}, input="high"),
            FeatureSpec(name="lo", kind="rolling_min", params={"window": e, "min_periods": e}, input="low"),
            FeatureSpec(name="xhi", kind="rolling_max", params={"window": x, "min_periods": x}, input="high"),
            FeatureSpec(name="xlo", kind="rolling_min", params={"window": x, "min_periods": x}, input="low"),
        )

    def decide(self, bar: Bar, value: dict[str, float]) -> tuple[float, str] | None:
        """Compare the close with the channels of the previous bars, then remember this bar's."""
        prev, self._previous = self._previous, {k: value[k] for k in ("hi", "lo", "xhi", "xlo")}
        close = bar.close
        if close > prev["hi"]:
            return 1.0, f"close broke above the {self.params.entry}-bar high"
        if close < prev["lo"]:
            return -1.0, f"close broke below the {self.params.entry}-bar low"
        if self.target > 0 and close < prev["xlo"]:
            return 0.0, f"close fell below the {self.params.exit}-bar low"
        if self.target < 0 and close > prev["xhi"]:
            return 0.0, f"close rose above the {self.params.exit}-bar high"
        return None
