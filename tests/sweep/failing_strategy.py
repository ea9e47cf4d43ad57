"""Strategies that fail at a given bar, for the sweep tests (copied beside a config, which names the file)."""

from __future__ import annotations

import os
from collections.abc import Sequence

from tradebus.config.base import StrictModel
from tradebus.engine.messages import Bar
from tradebus.strategies.base import Strategy


class AtBar(StrictModel):
    """The bar (1-based) at which the strategy fails."""

    at: int


class RaisesAt(Strategy):
    """Raises ``ZeroDivisionError`` on bar ``at`` (a bug that shows only at some parameters)."""

    Params = AtBar

    def __init__(self, instrument_ids: str | Sequence[str], *, at: int, strategy_id: str | None = None) -> None:
        super().__init__(instrument_ids, strategy_id=strategy_id)
        self.at, self.bars = at, 0

    def on_bar(self, bar: Bar) -> None:
        self.bars += 1
        if self.bars == self.at:
            raise ZeroDivisionError(f"division by zero at bar {self.bars}")


class ExitsAt(RaisesAt):
    """Ends its process on bar ``at`` (a worker that dies: a crash in compiled code, out of memory)."""

    def on_bar(self, bar: Bar) -> None:
        self.bars += 1
        if self.bars == self.at:
            os._exit(3)
