"""CrossSectionalMomentum: rank a universe by past return, long the top, short the bottom, rebalance on a timer.

Rules:

* **Momentum** of an instrument: its return over the last ``lookback`` bars (feature kind
  ``ret`` of the close with ``lag = lookback``: ``close_t / close_{t-lookback} - 1``).
* **Rebalance** every ``rebalance`` (a duration, e.g. ``"1d"``), on a timer of the run's
  clock aligned to multiples of the interval since the epoch (the first one after the first
  bar). A timer fires before any bar stamped at the same time, so the ranking uses the bars
  stamped *before* the rebalance time: the cross-section as it stood then.
* **Instruments that have not updated.** An instrument is left out of the ranking, and its
  position is closed, when its latest bar is older than ``max_staleness`` at the rebalance
  time (default: one ``rebalance`` interval) or when its momentum is not ready (fewer than
  ``lookback + 1`` bars). A stale price is never ranked as if it were current.
* **Ranking.** Eligible instruments are sorted by momentum, highest first. The first ``top``
  ranks are long slots, the last ``bottom`` of the rest short slots (``long_short``; none in
  ``long_only``); everything else flat. Each slot is worth ``gross / (number of slots)`` of
  equity, set through :meth:`~tradebus.strategies.base.Strategy.target_weight`.
* **Ties.** Instruments of exactly equal momentum are never told apart by their config order:
  a tied group shares the slots its ranks cover equally. Each member gets
  ``(long slots covered - short slots covered) / (members)`` of a slot, so a tie across the
  long/short cut nets to flat (two identical series give an empty book, not a long/short
  pair), and two leaders tied for one long slot are each long half a slot.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import groupby
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from tradebus.config.base import StrictModel
from tradebus.engine.instrument import Instrument
from tradebus.engine.messages import Bar, TimeEvent
from tradebus.errors import ConfigError
from tradebus.features.spec import FeatureSpec
from tradebus.strategies.base import Strategy, duration_ns
from tradebus.strategies.signal import invalid_params

__all__ = ["CrossSectionalMomentum", "CrossSectionalMomentumParams"]


class CrossSectionalMomentumParams(StrictModel):
    """Parameters of :class:`CrossSectionalMomentum`."""

    lookback: int = Field(default=20, ge=1)
    rebalance: str | int = "1d"
    top: int = Field(default=1, ge=0)
    bottom: int = Field(default=1, ge=0)
    gross: float = Field(default=1.0, gt=0)
    max_staleness: str | int | None = None
    mode: Literal["long_only", "long_short"] = "long_short"

    @field_validator("rebalance", "max_staleness")
    @classmethod
    def _is_duration(cls, value: str | int | None) -> str | int | None:
        if value is not None:
            try:
                duration_ns(value)
            except ConfigError as exc:
                raise ValueError(str(exc).removeprefix("duration: ")) from None
        return value

    @model_validator(mode="after")
    def _holds_something(self) -> CrossSectionalMomentumParams:
        if self.mode == "long_only" and self.top < 1:
            raise ValueError("top must be >= 1 in long_only mode (the book would never hold anything)")
        if self.top + self.bottom < 1:
            raise ValueError("top and bottom are both 0 (the book would never hold anything)")
        return self


class CrossSectionalMomentum(Strategy):
    """Cross-sectional momentum over the strategy's instruments; see the module docstring.

    Parameters
    ----------
    instrument_ids
        The universe (two or more instruments).
    strategy_id
        Defaults to ``"CrossSectionalMomentum"``.
    **params
        The fields of :class:`CrossSectionalMomentumParams`.
    """

    Params: ClassVar[type[BaseModel]] = CrossSectionalMomentumParams

    def __init__(self, instrument_ids: str | Sequence[str], *, strategy_id: str | None = None, **params: Any) -> None:
        super().__init__(instrument_ids, strategy_id=strategy_id)
        if len(self.instrument_ids) < 2:
            raise ConfigError(f"{self.strategy_id}: cross-sectional momentum needs at least two instruments")
        try:
            self.params: Any = CrossSectionalMomentumParams(**params)
        except ValidationError as exc:
            raise invalid_params(self.strategy_id, exc) from None
        self.interval_ns = duration_ns(self.params.rebalance)
        stale = self.params.max_staleness
        self.max_staleness_ns = self.interval_ns if stale is None else duration_ns(stale)
        self._scheduled = False
        self._cols: dict[str, int] = {}
        #: ``(rebalance ts, {instrument: momentum}, {instrument: target weight})`` of every rebalance.
        self.rebalances: list[tuple[int, dict[str, float], dict[str, float]]] = []

    @classmethod
    def check_params(cls, params: BaseModel, instruments: Sequence[Instrument]) -> None:
        """The universe must hold at least two instruments."""
        if len(instruments) < 2:
            raise ConfigError(f"instruments: cross-sectional momentum needs at least two instruments, got {len(instruments)}")

    def feature_specs(self, instrument_id: str) -> Sequence[FeatureSpec]:
        """The ``lookback``-bar return of the close, on every instrument of the universe."""
        return (FeatureSpec(name="momentum", kind="ret", params={"lag": self.params.lookback}, input="close"),)

    def on_start(self) -> None:
        """Resolve the momentum column of each instrument."""
        self._cols = {iid: self.features(iid).index("momentum") for iid in self.instrument_ids}

    def on_bar(self, bar: Bar) -> None:
        """Schedule the rebalance timer at the first bar (aligned to the interval)."""
        if not self._scheduled:
            self._scheduled = True
            start = bar.ts_event - bar.ts_event % self.interval_ns
            self.set_timer("rebalance", self.interval_ns, start_ns=start)

    def on_timer(self, event: TimeEvent) -> None:
        """Rank the eligible instruments and move every position to its new weight."""
        now = event.ts_event
        cache = self.ctx.cache
        momentum: dict[str, float] = {}
        for iid in self.instrument_ids:
            last = cache.bar(iid)
            value = float(self.features(iid).row[self._cols[iid]])
            if last is None or now - last.ts_event > self.max_staleness_ns or value != value:
                continue
            momentum[iid] = value
        weights = {iid: 0.0 for iid in self.instrument_ids}
        weights.update(self._weights(momentum))
        self.rebalances.append((now, momentum, weights))
        for iid, weight in weights.items():
            if weight == 0.0:
                self.target_position(iid, 0.0, reason="momentum rebalance: out")
            else:
                self.target_weight(iid, weight, reason=f"momentum rebalance: {weight:+.3f} of equity")

    def _weights(self, momentum: dict[str, float]) -> dict[str, float]:
        """Target weight of each ranked instrument: its share of the long and short slots its rank covers."""
        p = self.params
        n = len(momentum)
        long_end = min(p.top, n)
        short_start = n - (min(p.bottom, n - long_end) if p.mode == "long_short" else 0)
        slots = long_end + n - short_start
        weights: dict[str, float] = {}
        first = 0
        for _, group in groupby(sorted(momentum, key=lambda iid: -momentum[iid]), key=momentum.__getitem__):
            members = list(group)
            end = first + len(members)
            longs = max(0, min(end, long_end) - first)
            shorts = max(0, end - max(first, short_start))
            for iid in members:
                weights[iid] = (longs - shorts) / len(members) * (p.gross / slots)
            first = end
        return weights
