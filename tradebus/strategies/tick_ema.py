"""TickEmaCross: trade the crossings of a fast and a slow EMA of trade prices or quote mids.

The tick-level sibling of :class:`~tradebus.strategies.ema_cross.EmaCross`, meant for
paper trading on live streams, where bars are rare and trades or quotes arrive many
times a second. The EMAs are computed by the instrument's feature bank (kind ``ema``
on the trade ``price`` or the quote ``mid``); spans are counted in events.

On every event of its source, once both EMAs are ready, the strategy compares them;
the first comparison only records which one is above, and an order is sent when the
relation flips (a tie keeps the previous relation):

* fast crosses above slow: go long ``quantity``;
* fast crosses below slow: go flat (``long_only``) or short ``quantity`` (``long_short``).

Orders are market orders sent through :meth:`Strategy.target_position`, so a signal
while an order is still working does not stack orders. Decisions depend only on the
venue's prices and times, never on the clock, so a recording replayed as a backtest
and the same stream received live give the same orders.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tradebus.engine.cache import FeatureView
from tradebus.engine.instrument import Instrument
from tradebus.engine.messages import OrderDenied, Quote, Trade
from tradebus.errors import ConfigError
from tradebus.features.spec import FeatureSpec
from tradebus.strategies.base import Strategy

__all__ = ["TickEmaCross", "TickEmaCrossParams"]


class TickEmaCrossParams(BaseModel):
    """Parameters of :class:`TickEmaCross` (``fast < slow``, spans in events)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fast: int = Field(gt=0)
    slow: int = Field(gt=1)
    source: Literal["trades", "quotes"] = "trades"
    mode: Literal["long_only", "long_short"] = "long_short"
    quantity: float = Field(gt=0)

    @model_validator(mode="after")
    def _fast_below_slow(self) -> TickEmaCrossParams:
        if self.fast >= self.slow:
            raise ValueError(f"fast ({self.fast}) must be smaller than slow ({self.slow})")
        return self


class TickEmaCross(Strategy):
    """Long/short (or long/flat) on EMA crossovers of trade prices or quote mids.

    Parameters
    ----------
    instrument_ids
        The traded instrument (first id if several are given).
    fast, slow
        EMA spans in events, ``fast < slow``.
    source
        ``"trades"`` (EMAs of trade prices, decisions on trades) or ``"quotes"``
        (EMAs of the mid price, decisions on quotes).
    mode
        ``"long_short"`` (short on a down-cross) or ``"long_only"`` (flat on a down-cross).
    quantity
        Position size in base units (a whole number of lots).
    strategy_id
        Defaults to ``"TickEmaCross"``.
    """

    Params = TickEmaCrossParams

    def __init__(
        self,
        instrument_ids: str | Sequence[str],
        *,
        fast: int,
        slow: int,
        source: Literal["trades", "quotes"] = "trades",
        mode: Literal["long_only", "long_short"] = "long_short",
        quantity: float,
        strategy_id: str | None = None,
    ) -> None:
        super().__init__(instrument_ids, strategy_id=strategy_id)
        params = TickEmaCrossParams(fast=fast, slow=slow, source=source, mode=mode, quantity=quantity)
        self.params = params
        self.fast_name = f"tick_ema_{params.fast}"
        self.slow_name = f"tick_ema_{params.slow}"
        self._low = -params.quantity if params.mode == "long_short" else 0.0
        self._above: bool | None = None
        self._fast_col = 0
        self._slow_col = 0
        self._view = FeatureView(())
        #: Crossings acted upon (each one calls ``target_position``).
        self.decisions = 0

    @classmethod
    def check_params(cls, params: TickEmaCrossParams, instruments: Sequence[Instrument]) -> None:  # type: ignore[override]
        """The quantity must be a valid order size of the traded instrument."""
        instrument = instruments[0]
        problem = instrument.validate_order(params.quantity, float("nan"))
        if problem is not None:
            raise ConfigError(f"quantity: {problem} for {instrument.instrument_id}")

    def feature_specs(self, instrument_id: str) -> Sequence[FeatureSpec]:
        """The two EMAs of the trade price (or quote mid) on the traded instrument."""
        if instrument_id != self.instrument_id:
            return ()
        field, event = ("price", "trade") if self.params.source == "trades" else ("mid", "quote")
        return (
            FeatureSpec(name=self.fast_name, kind="ema", params={"span": self.params.fast}, input=field, on=event),
            FeatureSpec(name=self.slow_name, kind="ema", params={"span": self.params.slow}, input=field, on=event),
        )

    def on_start(self) -> None:
        """Resolve the feature columns once."""
        view = self.features()
        self._fast_col = view.index(self.fast_name)
        self._slow_col = view.index(self.slow_name)
        self._view = view

    def on_trade(self, trade: Trade) -> None:
        """Act on a crossing of the EMAs of trade prices (``source="trades"``)."""
        if self.params.source == "trades" and trade.instrument_id == self.instrument_id:
            self._decide()

    def on_quote(self, quote: Quote) -> None:
        """Act on a crossing of the EMAs of quote mids (``source="quotes"``)."""
        if self.params.source == "quotes" and quote.instrument_id == self.instrument_id:
            self._decide()

    def _decide(self) -> None:
        row = self._view.row
        fast = row[self._fast_col]
        slow = row[self._slow_col]
        if fast > slow:
            above = True
        elif fast < slow:
            above = False
        else:  # tie, or an EMA not ready yet (NaN compares false)
            return
        previous = self._above
        if above is previous:
            return
        self._above = above
        if previous is None:
            return
        self.decisions += 1
        if above:
            self.target_position(self.instrument_id, self.params.quantity, reason="tick ema fast crossed above slow")
        else:
            self.target_position(self.instrument_id, self._low, reason="tick ema fast crossed below slow")

    def on_order_denied(self, event: OrderDenied) -> None:
        """Log a denial; the next crossing tries again."""
        self.log.warning("order {} denied: {}", event.client_order_id, event.reason)
