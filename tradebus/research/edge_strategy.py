"""EdgeGated: trade a per-bar expected return ("edge", bps) through gates, with ATR brackets.

On every bar of its instrument the strategy reads the edge from its *edge source*, feeds
it with the per-bar volatility to :class:`~tradebus.strategies.gates.EdgeGates`, and,
when the gates pass, no position or order of its own is open and no cooldown runs,
enters in the edge's direction with a bracket (:mod:`tradebus.execution.contingent`):

* stop-loss at ``close - stop_atr * ATR`` and take-profit at ``close + take_atr * ATR``
  (mirrored for a short; rounded to whole ticks away from the price), an OCO pair armed ``arm_after_bars`` bars after the bar the entry
  filled in (0: they work from the bar after the fill bar);
* a timed exit after ``max_hold_bars`` bars, then a cooldown of ``cooldown_bars`` bars;
* the size ``weight = min(max_weight, base_weight * |edge| / edge_scale_bps *
  vol_target_bps / vol_bps)`` of equity (the volatility factor only with
  ``vol_target_bps``), skipped below ``min_notional``.

Edge sources
------------
:class:`ModelEdges` predicts live from the bank's feature row with fitted
:class:`~tradebus.research.model.ModelStep` objects (one per walk-forward segment, switched
at the segment starts); :class:`PrecomputedEdges` looks the edge up by bar time (fast
sweeps over predictions made in batch). For tree models the two give the same floats, so
the same decisions (``tests/research/test_ml_gated.py`` checks it).

Records: :attr:`EdgeGated.outputs` ``(ts_init, edge)`` of every bar (read by the lookahead
detector), :attr:`EdgeGated.entries` of every entry, :attr:`EdgeGated.gate_counts`
(how often each gate blocked) and :attr:`EdgeGated.fill_bars` (the bar each fill came on, by
position: the trade log's ``hold_bars``, exact when bars share a time).

Config use (``strategy: {name: "tradebus.research.edge_strategy:EdgeGated", params: {...}}``)
needs ``model``: the path of a saved model step (:func:`~tradebus.research.model.load_model`).
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

import numpy as np
from pydantic import BaseModel, Field, ValidationError

from tradebus.config.base import StrictModel
from tradebus.engine.cache import FeatureView
from tradebus.engine.messages import Bar, OrderFilled, OrderSide
from tradebus.errors import ConfigError
from tradebus.features.bank import FeatureBank
from tradebus.features.spec import FeatureSpec, load_specs
from tradebus.research.model import load_model
from tradebus.strategies.base import Strategy
from tradebus.strategies.gates import EdgeGates, GatesConfig
from tradebus.strategies.signal import invalid_params

__all__ = ["EdgeGated", "EdgeGatedParams", "EdgeSource", "ExitParams", "ModelEdges", "PrecomputedEdges",
           "SizingParams"]


_Model = StrictModel


class ExitParams(_Model):
    """ATR-scaled bracket, timed exit and cooldown."""

    stop_atr: float = Field(default=1.5, gt=0)
    take_atr: float = Field(default=2.0, gt=0)
    arm_after_bars: int = Field(default=0, ge=0)
    max_hold_bars: int = Field(default=12, ge=1)
    cooldown_bars: int = Field(default=3, ge=0)


class SizingParams(_Model):
    """Weight of equity from the edge and the volatility, capped, with a minimum notional."""

    base_weight: float = Field(default=0.2, gt=0)
    edge_scale_bps: float = Field(default=10.0, gt=0)
    vol_target_bps: float | None = Field(default=None, gt=0)
    max_weight: float = Field(default=0.5, gt=0)
    min_notional: float = Field(default=0.0, ge=0)


class EdgeGatedParams(_Model):
    """Parameters of :class:`EdgeGated`."""

    features: list[dict[str, Any]] = Field(min_length=1)
    atr_feature: str = "atr"
    vol_feature: str = Field(default="vol", description="per-bar volatility as a return fraction (x 1e4 = bps)")
    mode: Literal["long_only", "long_short"] = "long_short"
    gates: GatesConfig = Field(default_factory=GatesConfig)
    exits: ExitParams = Field(default_factory=ExitParams)
    sizing: SizingParams = Field(default_factory=SizingParams)
    model: Path | None = Field(default=None, description="saved model step (config use)")


class EdgeSource(Protocol):
    """Where the edge of a bar comes from."""

    def bind(self, bank: FeatureBank) -> None:
        """Resolve columns in the instrument's bank (at start)."""

    def edge(self, ts: int, row: Sequence[float]) -> float:
        """The edge (bps) after the bar closing at ``ts`` whose feature row is ``row``; NaN if none."""


class ModelEdges:
    """Live predictions: ``steps[k]`` for bars with ``ts_event >= starts[k]`` (NaN before the first)."""

    def __init__(self, starts: Sequence[int], steps: Sequence[Any]) -> None:
        if len(starts) != len(steps) or not steps:
            raise ConfigError("model edges: one start time per model step, at least one")
        self.starts = [int(s) for s in starts]
        self.steps = list(steps)

    def bind(self, bank: FeatureBank) -> None:
        """Bind every step to the bank."""
        for step in self.steps:
            step.bind(bank)

    def edge(self, ts: int, row: Sequence[float]) -> float:
        """The scheduled step's prediction on ``row``."""
        k = bisect.bisect_right(self.starts, ts) - 1
        return math.nan if k < 0 else self.steps[k].predict_row(row)


class PrecomputedEdges:
    """Edges computed beforehand, looked up by bar ``ts_event`` (NaN for an unknown time).

    Bars sharing a time (threshold bars) are told apart by their order: the ``k``-th bar of a
    time replayed gets the ``k``-th edge given for it, in the order given.
    """

    def __init__(self, ts: Sequence[int] | np.ndarray, values: Sequence[float] | np.ndarray) -> None:
        self._by_ts: dict[int, list[float]] = {}
        for t, value in zip(np.asarray(ts, dtype=np.int64).tolist(), np.asarray(values, dtype=np.float64).tolist(),
                            strict=True):
            self._by_ts.setdefault(t, []).append(value)
        self._last_ts: int | None = None
        self._nth = 0

    def bind(self, bank: FeatureBank) -> None:
        """Start a run: the next bar is the first of its time."""
        self._last_ts = None

    def edge(self, ts: int, row: Sequence[float]) -> float:
        """The stored edge of the bar closing at ``ts`` (call once per bar, in time order)."""
        ts = int(ts)
        self._nth = self._nth + 1 if ts == self._last_ts else 0
        self._last_ts = ts
        values = self._by_ts.get(ts, ())
        return values[self._nth] if self._nth < len(values) else math.nan


class EdgeGated(Strategy):
    """Gated entries on an edge stream with ATR brackets, timed exits and cooldowns (module docstring).

    Parameters
    ----------
    instrument_ids
        The traded instrument.
    strategy_id
        Defaults to the class name.
    source
        The edge source; from ``params.model`` when omitted.
    **params
        :class:`EdgeGatedParams` fields.
    """

    Params: ClassVar[type[BaseModel]] = EdgeGatedParams
    contingent: ClassVar[bool] = True

    def __init__(self, instrument_ids: str | Sequence[str], *, strategy_id: str | None = None,
                 source: EdgeSource | None = None, **params: Any) -> None:
        super().__init__(instrument_ids, strategy_id=strategy_id)
        try:
            self.params = EdgeGatedParams(**params)
        except ValidationError as exc:
            raise invalid_params(self.strategy_id, exc) from None
        self._specs = tuple(load_specs(self.params.features))
        if source is None:
            if self.params.model is None:
                raise ConfigError(f"{self.strategy_id}: give an edge source or params.model (a saved model step)")
            source = ModelEdges([-(2**62)], [load_model(self.params.model, self._specs)])
        self.source = source
        self.gates = EdgeGates(self.params.gates)
        self._view = FeatureView(())
        self._atr = self._vol = -1
        #: ``(bar ts_event, edge)`` of every bar.
        self.outputs: list[tuple[int, float]] = []
        #: ``(bar ts_event, direction, quantity, reason)`` of every bracket submitted.
        self.entries: list[tuple[int, int, float, str]] = []
        #: How often each gate blocked (``"pass"``: all passed).
        self.gate_counts: Counter[str] = Counter()
        #: ``trade_id -> position`` (0-based, in replay order) of the bar each fill of the instrument came on.
        self.fill_bars: dict[str, int] = {}

    def feature_specs(self, instrument_id: str) -> Sequence[FeatureSpec]:
        """The configured features on the traded instrument."""
        return self._specs if instrument_id == self.instrument_id else ()

    def on_start(self) -> None:
        """Resolve the ATR and volatility columns and bind the edge source."""
        bank = self.ctx.banks[self.instrument_id]
        self.source.bind(bank)
        self._view = self.features()
        names = list(self._view.names)
        for attr, name in (("_atr", self.params.atr_feature), ("_vol", self.params.vol_feature)):
            if name not in names:
                raise ConfigError(f"{self.strategy_id}: no feature column {name!r} (have {names})")
            setattr(self, attr, names.index(name))

    def _busy(self) -> bool:
        if self.position() != 0.0:
            return True
        return any(o.strategy_id == self.strategy_id for o in self.ctx.orders.open_orders(self.instrument_id))

    def on_order_filled(self, event: OrderFilled) -> None:
        """Note the position of the bar the fill came on (:attr:`fill_bars`)."""
        if event.instrument_id == self.instrument_id:
            # a bar fills orders when the venue is shown it, before the strategies get it
            self.fill_bars[event.trade_id] = len(self.outputs)

    def on_bar(self, bar: Bar) -> None:
        """Gate this bar's edge and enter with a bracket when it passes."""
        if bar.instrument_id != self.instrument_id:
            return
        row = self._view.row
        edge = float(self.source.edge(bar.ts_event, row))
        self.outputs.append((bar.ts_init, edge))
        vol_bps = float(row[self._vol]) * 1e4
        direction, gate, reason = self.gates.update(edge, vol_bps)
        if direction < 0 and self.params.mode == "long_only":
            gate = "long_only"
        if gate != "pass":
            self.gate_counts[gate] += 1
            return
        self.gate_counts["pass"] += 1
        if self._busy() or self._contingent().in_cooldown(self.strategy_id, self.instrument_id):
            return
        atr = float(row[self._atr])
        if not (atr > 0 and vol_bps > 0):  # NaN while not ready
            return
        exits, sizing = self.params.exits, self.params.sizing
        instrument = self.instrument()
        # whole ticks, never closer to the price than asked
        if direction > 0:
            stop = instrument.round_price_down(bar.close - exits.stop_atr * atr)
            take = instrument.round_price_up(bar.close + exits.take_atr * atr)
        else:
            stop = instrument.round_price_up(bar.close + exits.stop_atr * atr)
            take = instrument.round_price_down(bar.close - exits.take_atr * atr)
        if not (stop > 0 and take > 0):
            return
        weight = sizing.base_weight * abs(edge) / sizing.edge_scale_bps
        if sizing.vol_target_bps is not None:
            weight *= sizing.vol_target_bps / vol_bps
        weight = min(weight, sizing.max_weight)
        quantity = self.quantity_for_weight(self.instrument_id, weight, price=bar.close)
        if quantity <= 0.0 or instrument.notional(quantity, bar.close) < sizing.min_notional:
            return
        side = OrderSide.BUY if direction > 0 else OrderSide.SELL
        entry = self.submit_bracket(self.instrument_id, side, quantity, stop_loss=stop, take_profit=take,
                                    arm_after_bars=exits.arm_after_bars, exit_after_bars=exits.max_hold_bars,
                                    cooldown_bars=exits.cooldown_bars, reason=reason)
        if entry is not None:
            self.entries.append((bar.ts_event, direction, quantity, reason))
