"""EmaCross: trade the crossings of a fast and a slow exponential moving average of the close.

Decisions are taken at bar close, once both EMAs are ready (their warm-up is
complete), with market orders. The EMAs come from the instrument's feature bank
(feature kind ``ema``); the strategy does no arithmetic of its own on prices.

The first bar on which both EMAs are ready only records which one is above; an
order is sent when that relation flips (a tie keeps the previous relation):

* fast crosses above slow: go long ``quantity``;
* fast crosses below slow: go flat (``long_only``) or short ``quantity``
  (``long_short``).

Orders go through :meth:`Strategy.target_position`, so a signal while an order
is still working does not stack orders.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from numba import njit
from pydantic import BaseModel, Field, ValidationError, model_validator

from tradebus.config.base import StrictModel, describe_errors
from tradebus.engine.cache import FeatureView
from tradebus.engine.instrument import Instrument
from tradebus.engine.messages import Bar
from tradebus.errors import ConfigError
from tradebus.features.spec import FeatureSpec
from tradebus.strategies.base import Strategy, feature_only, wakes_at
from tradebus.strategies.signal_kernel import SignalKernel

__all__ = ["EmaCross", "EmaCrossParams", "cross_signal"]


@njit(cache=True)
def cross_signal(
    values: np.ndarray, o: float, h: float, lo: float, c: float, v: float, target: float, params: tuple[float, ...],
    state: np.ndarray,
) -> float:
    """Signal kernel of a crossing of ``values[params[0]]`` over ``values[params[1]]`` (EmaCross, MacdCross).

    ``state[0]``: the last relation (1 above, -1 below, 0 none yet); a tie or a NaN keeps it.
    Returns +1 on a cross above, -1 on a cross below, NaN otherwise (and on the first relation).
    """
    fast = values[int(params[0])]
    slow = values[int(params[1])]
    if fast > slow:
        above = 1.0
    elif fast < slow:
        above = -1.0
    else:
        return np.nan
    previous = state[0]
    if above == previous:
        return np.nan
    state[0] = above
    if previous == 0.0:
        return np.nan
    return above


class EmaCrossParams(StrictModel):
    """Parameters of :class:`EmaCross` (``fast < slow``, spans in bars)."""

    fast: int = Field(gt=0)
    slow: int = Field(gt=1)
    mode: Literal["long_only", "long_short"] = "long_only"
    quantity: float = Field(gt=0)

    @model_validator(mode="after")
    def _fast_below_slow(self) -> EmaCrossParams:
        if self.fast >= self.slow:
            raise ValueError(f"fast ({self.fast}) must be smaller than slow ({self.slow})")
        return self


class EmaCross(Strategy):
    """Long (or long/short) on EMA crossovers of the primary instrument's closes.

    Parameters
    ----------
    instrument_ids
        The traded instrument (first id if several are given).
    fast, slow
        EMA spans in bars, ``fast < slow``.
    mode
        ``"long_only"`` (flat on a down-cross) or ``"long_short"`` (short on a down-cross).
    quantity
        Position size in base units (a whole number of lots).
    strategy_id
        Defaults to ``"EmaCross"``.
    """

    Params: type[BaseModel] = EmaCrossParams
    #: Prefix of the feature names and of the decision reasons.
    label = "ema"

    def __init__(
        self,
        instrument_ids: str | Sequence[str],
        *,
        fast: int,
        slow: int,
        mode: Literal["long_only", "long_short"] = "long_only",
        quantity: float,
        strategy_id: str | None = None,
    ) -> None:
        super().__init__(instrument_ids, strategy_id=strategy_id)
        self._setup(fast=fast, slow=slow, mode=mode, quantity=quantity)

    def _setup(self, **values: object) -> None:
        """Validate the parameters (``ConfigError`` naming each bad one) and reset the state."""
        try:
            params = self.Params(**values)
        except ValidationError as exc:
            raise ConfigError(f"{self.strategy_id}: invalid parameters: {'; '.join(describe_errors(exc))}") from None
        self.params = params
        self.fast_name = f"{self.label}_{params.fast}"  # type: ignore[attr-defined]
        self.slow_name = f"{self.label}_{params.slow}"  # type: ignore[attr-defined]
        self._low = -params.quantity if params.mode == "long_short" else 0.0  # type: ignore[attr-defined]
        self._above: bool | None = None
        self._fast_col = 0
        self._slow_col = 0
        self._view = FeatureView(())
        #: Crossings acted upon (each one calls ``target_position``).
        self.decisions = 0

    @classmethod
    def check_params(cls, params: BaseModel, instruments: Sequence[Instrument]) -> None:  # type: ignore[override]
        """The quantity must be a valid order size of the traded instrument."""
        instrument = instruments[0]
        problem = instrument.validate_order(params.quantity, float("nan"))  # type: ignore[attr-defined]
        if problem is not None:
            raise ConfigError(f"quantity: {problem} for {instrument.instrument_id}")

    def ema_input(self) -> tuple[str, str | None]:
        """The field the EMAs read and the event that drives them (``None``: inferred, bars)."""
        return "close", None

    def feature_specs(self, instrument_id: str) -> Sequence[FeatureSpec]:
        """The two EMAs (of the close here) on the traded instrument."""
        if instrument_id != self.instrument_id:
            return ()
        field, event = self.ema_input()
        spans = (self.params.fast, self.params.slow)  # type: ignore[attr-defined]
        return tuple(
            FeatureSpec(name=name, kind="ema", params={"span": span}, input=field, on=event)
            for name, span in zip((self.fast_name, self.slow_name), spans, strict=True)
        )

    def on_start(self) -> None:
        """Resolve the feature columns once."""
        view = self.features()
        self._fast_col = view.index(self.fast_name)
        self._slow_col = view.index(self.slow_name)
        self._view = view
        self._reasons = (f"{self.label} fast crossed above slow", f"{self.label} fast crossed below slow")

    def signal_kernel(self) -> SignalKernel | None:
        """:func:`cross_signal` of the fast over the slow EMA (on bars only)."""
        if self.ema_input()[1] not in (None, "bar"):
            return None
        p = self.params
        return SignalKernel(
            cross_signal, (float(self._fast_col), float(self._slow_col)), 1, p.quantity,  # type: ignore[attr-defined]
            p.mode == "long_only", False,  # type: ignore[attr-defined]
            (f"{self.label} fast crossed above slow", f"{self.label} fast crossed below slow",
             f"{self.label} fast crossed below slow"),
        )  # fmt: skip

    def _relation_changes(self, instrument_id: str, features: np.ndarray) -> np.ndarray | None:
        """The rows of ``features`` at which :meth:`on_bar` acts: the EMAs' relation set or flipped.

        A row's relation is +1 (fast above slow), -1 (below) or none (a tie or a NaN, which keep
        the previous one); it changes at the rows whose relation differs from the last one
        before them, starting from the current ``_above``.
        """
        if instrument_id != self.instrument_id:
            return None
        fast, slow = features[:, self._fast_col], features[:, self._slow_col]
        relation = (fast > slow).astype(np.int8) - (fast < slow)
        related = np.flatnonzero(relation)
        now = relation[related]
        before = np.empty_like(now)
        before[:1] = 0 if self._above is None else (1 if self._above else -1)
        before[1:] = now[:-1]
        return related[now != before]

    @wakes_at(_relation_changes)
    @feature_only
    def on_bar(self, bar: Bar | None = None) -> None:
        """Act on a crossing of the two EMAs at this bar's close (``bar`` itself is not read)."""
        row = self._view.row
        fast = row[self._fast_col]
        slow = row[self._slow_col]
        previous = self._above
        # The relation is compared with the previous one at once: most bars leave it unchanged.
        if fast > slow:
            if previous is True:
                return
            above = True
        elif fast < slow:
            if previous is False:
                return
            above = False
        else:  # tie, or an EMA not ready yet (NaN compares false)
            return
        self._above = above
        if previous is None:
            return
        self.decisions += 1
        if above:
            self.target_position(self.instrument_id, self.params.quantity, reason=self._reasons[0])  # type: ignore[attr-defined]
        else:
            self.target_position(self.instrument_id, self._low, reason=self._reasons[1])

    # The decision of every data handler (TickEmaCross calls it on trades or quotes); the bar
    # handler is the decision itself: one call less per bar.
    _decide = on_bar
