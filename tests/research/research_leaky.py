"""A strategy with a planted lookahead, loadable from a run config as ``research_leaky:BatchEndReader``."""

from __future__ import annotations

from collections.abc import Sequence

from tradebus.engine.messages import Bar
from tradebus.features.spec import FeatureSpec
from tradebus.strategies.base import Strategy


class BatchEndReader(Strategy):
    """Reads the bank's raw values vector, which in a batch backtest already holds the batch's last row.

    It trades on that value, so its decisions depend on later bars: a lookahead.
    """

    def __init__(self, instrument_ids: str | Sequence[str], strategy_id: str | None = None) -> None:
        super().__init__(instrument_ids, strategy_id=strategy_id)
        self.outputs: list[tuple[int, float]] = []

    def feature_specs(self, instrument_id: str) -> list[FeatureSpec]:
        return [FeatureSpec(name="ema_fast", kind="ema", params={"span": 10}, input="close")]

    def on_bar(self, bar: Bar) -> None:
        bank = self.kernel.banks[self.instrument_id]
        value = float(bank.values[bank.slot("ema_fast")])
        self.outputs.append((bar.ts_event, value))
        if value == value:
            self.target_position(self.instrument_id, 0.1 if bar.close < value else 0.0)
