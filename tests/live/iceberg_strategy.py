"""A daemon strategy for the live restart tests: one iceberg buy started in ``on_start``.

At a restart it is told of the iceberg the stopped process left unfinished
(:meth:`~tradebus.strategies.base.Strategy.on_algo_interrupted`, before ``on_start``) and starts
an iceberg of what that one did not fill instead of the whole parent again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tradebus.config.base import StrictModel
from tradebus.engine.messages import OrderSide
from tradebus.strategies.algos import Iceberg
from tradebus.strategies.base import Strategy


class IcebergParams(StrictModel):
    """``quantity`` of the parent buy at ``price``, shown ``display`` at a time, checked every ``poll``."""

    quantity: float = 0.04
    price: float = 20_000.0
    display: float = 0.01
    poll: str = "200ms"


class IcebergBuy(Strategy):
    """Starts one iceberg buy in ``on_start`` (see :class:`IcebergParams`)."""

    Params = IcebergParams

    def __init__(self, instrument_ids: str | Sequence[str], *, quantity: float = 0.04, price: float = 20_000.0,
                 display: float = 0.01, poll: str = "200ms", strategy_id: str | None = None) -> None:
        super().__init__(instrument_ids, strategy_id=strategy_id)
        self.quantity, self.price, self.display, self.poll = quantity, price, display, poll
        self.interrupted: list[Any] = []
        self.algo: Iceberg | None = None

    def on_algo_interrupted(self, event: Any) -> None:
        self.interrupted.append(event)

    def on_start(self) -> None:
        left = self.quantity - sum(e.filled for e in self.interrupted)
        if left > 0:
            self.algo = Iceberg(self, self.instrument_id, OrderSide.BUY, left, price=self.price, display=self.display,
                                poll=self.poll)  # fmt: skip
            self.algo.start()
