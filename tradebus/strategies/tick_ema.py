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

from pydantic import BaseModel

from tradebus.engine.messages import Quote, Trade
from tradebus.strategies.base import Strategy
from tradebus.strategies.ema_cross import EmaCross, EmaCrossParams

__all__ = ["TickEmaCross", "TickEmaCrossParams"]


class TickEmaCrossParams(EmaCrossParams):
    """Parameters of :class:`TickEmaCross`: those of :class:`EmaCross` (spans in events) plus ``source``."""

    source: Literal["trades", "quotes"] = "trades"
    mode: Literal["long_only", "long_short"] = "long_short"


class TickEmaCross(EmaCross):
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
    label = "tick_ema"
    on_bar = Strategy.on_bar  # bars are not this strategy's source

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
        Strategy.__init__(self, instrument_ids, strategy_id=strategy_id)
        self._setup(fast=fast, slow=slow, source=source, mode=mode, quantity=quantity)

    def _setup(self, **values: object) -> None:
        """Validate and reset (see :class:`EmaCross`); resolve which events decide."""
        super()._setup(**values)
        # Read on every event: plain attributes, not the parameter model's.
        self._on_trades = self.params.source == "trades"  # type: ignore[attr-defined]
        if self._on_trades and len(self.instrument_ids) == 1 and type(self).on_trade is TickEmaCross.on_trade:
            # The bus delivers only this instrument's trades: the decision itself is the
            # handler (one call less per trade; bound before the kernel subscribes it).
            self.on_trade = self._decide  # type: ignore[method-assign]
        else:
            self.__dict__.pop("on_trade", None)

    @classmethod
    def data_kinds(cls, params: BaseModel) -> frozenset[str]:
        """Trades or quotes, as ``params.source`` says."""
        return frozenset({params.source})  # type: ignore[attr-defined]

    def ema_input(self) -> tuple[str, str | None]:
        """The trade ``price`` on trades, or the quote ``mid`` on quotes."""
        return ("price", "trade") if self.params.source == "trades" else ("mid", "quote")  # type: ignore[attr-defined]

    def on_trade(self, trade: Trade) -> None:
        """Act on a crossing of the EMAs of trade prices (``source="trades"``)."""
        if self._on_trades and trade.instrument_id == self.instrument_id:
            self._decide()

    def on_quote(self, quote: Quote) -> None:
        """Act on a crossing of the EMAs of quote mids (``source="quotes"``)."""
        if not self._on_trades and quote.instrument_id == self.instrument_id:
            self._decide()
