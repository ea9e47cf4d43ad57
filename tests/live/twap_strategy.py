"""A paper-daemon strategy for the restart tests: one TWAP buy started in ``on_start``.

At a restart it is told of the TWAP the stopped process left unfinished
(:meth:`~tradebus.strategies.base.Strategy.on_algo_interrupted`, before ``on_start``) and
starts a TWAP of what that one did not fill instead of the whole parent again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tradebus.config.base import StrictModel
from tradebus.engine.messages import OrderSide
from tradebus.strategies.algos import Twap
from tradebus.strategies.base import Strategy


class TwapParams(StrictModel):
    """``quantity`` of the parent buy, worked in ``slices`` over ``duration``."""

    quantity: float = 0.04
    duration: str = "4s"
    slices: int = 4


class TwapBuy(Strategy):
    """Starts one TWAP buy in ``on_start`` (see :class:`TwapParams`)."""

    Params = TwapParams

    def __init__(self, instrument_ids: str | Sequence[str], *, quantity: float = 0.04, duration: str = "4s",
                 slices: int = 4, strategy_id: str | None = None) -> None:
        super().__init__(instrument_ids, strategy_id=strategy_id)
        self.quantity, self.duration, self.slices = quantity, duration, slices
        self.interrupted: list[Any] = []
        self.algo: Twap | None = None

    def on_algo_interrupted(self, event: Any) -> None:
        self.interrupted.append(event)

    def on_start(self) -> None:
        left = self.quantity - sum(e.filled for e in self.interrupted)
        if left > 0:
            self.algo = Twap(self, self.instrument_id, OrderSide.BUY, left, duration=self.duration, slices=self.slices)
            self.algo.start()
