"""Strategies with a planted lookahead, loadable from a run config as ``research_leaky:BatchEndReader`` etc."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from tradebus.config.base import StrictModel
from tradebus.engine.messages import Bar, FundingRate, MarkPrice
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


class CrossBatchEndReader(Strategy):
    """Trades its first instrument on the second's ``ema_fast`` read from that bank's raw values vector.

    In a backtest of several bar sources (``Replay.mixed_batches``) that vector already holds the second
    instrument's value at the batch's last row: a lookahead across instruments.
    """

    def __init__(self, instrument_ids: str | Sequence[str], strategy_id: str | None = None) -> None:
        super().__init__(instrument_ids, strategy_id=strategy_id)
        self.outputs: list[tuple[int, float]] = []

    def feature_specs(self, instrument_id: str) -> list[FeatureSpec]:
        return [FeatureSpec(name="ema_fast", kind="ema", params={"span": 10}, input="close")]

    def on_bar(self, bar: Bar) -> None:
        traded, read = self.instrument_ids
        if bar.instrument_id != traded:
            return
        bank = self.kernel.banks[read]
        value = float(bank.values[bank.slot("ema_fast")])
        self.outputs.append((bar.ts_event, value))
        if value == value:
            self.target_position(traded, 0.1 if bar.close < value else 0.0)


class NextPerpetualReader(Strategy):
    """Goes long 1000 before the next mark price is above the bar's close (``read: mark``), or long 1000 per bp
    of the next funding rate (``read: funding``), read from the kernel's pending perpetual feed.

    The marks and funding rates of a run config's ``data.marks``/``funding`` reach the kernel through that feed,
    not the replay. The strategy reaches the kernel behind its context (planted: any code holding the whole
    mark or funding history leaks the same way).
    """

    class Params(StrictModel):
        read: Literal["mark", "funding"] = "mark"

    def __init__(self, instrument_ids: str | Sequence[str], strategy_id: str | None = None,
                 read: str = "mark") -> None:
        super().__init__(instrument_ids, strategy_id=strategy_id)
        self.read = read

    def on_bar(self, bar: Bar) -> None:
        perps = self.ctx.submit.__self__.perpetuals  # type: ignore[attr-defined]
        kind = MarkPrice if self.read == "mark" else FundingRate
        upcoming = next((m for m in perps._feed[perps._feed_at:] if type(m) is kind), None)
        if upcoming is None:
            return
        if self.read == "mark":
            self.target_position(self.instrument_id, 1000.0 if upcoming.mark_price > bar.close else 0.0)
        else:
            self.target_position(self.instrument_id, round(1e7 * upcoming.rate, 1))


class BareOutputs(Strategy):
    """Causal, but publishes bare values in ``outputs`` rather than ``(ts, value)`` pairs."""

    def __init__(self, instrument_ids: str | Sequence[str], strategy_id: str | None = None) -> None:
        super().__init__(instrument_ids, strategy_id=strategy_id)
        self.outputs: list[float] = []

    def on_bar(self, bar: Bar) -> None:
        self.outputs.append(bar.close)
