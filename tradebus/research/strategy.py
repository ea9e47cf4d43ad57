"""ModelSignal: a strategy that trades a :class:`~tradebus.research.model.ModelStep`'s output.

On every bar of its instrument it feeds the bank's values to the model step (the
same columns as in research) and records the output in :attr:`ModelSignal.outputs`
(``(ts_init, value)``, at the bar's receive time), the model's feature for that event.
While the output is NaN (a feature not ready) it does nothing. Otherwise it targets ``+quantity`` when
the output is above ``upper``, ``low`` (0, or ``-quantity`` with ``long_short``) when
below ``lower``, and keeps its position in between (``upper < lower`` is refused).

The model can change during a run (:meth:`ModelSignal.schedule`): walk-forward
backtests give it one model per out-of-sample segment, each trained before its
segment starts. Use it in a run config as
``strategy: {name: "tradebus.research.strategy:ModelSignal", params: {model: path, ...}}``.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from tradebus.config.base import StrictModel
from tradebus.engine.messages import Bar
from tradebus.errors import ConfigError
from tradebus.features.spec import FeatureSpec
from tradebus.research.model import ModelStep, load_model
from tradebus.strategies.base import Strategy

__all__ = ["ModelSignal", "ModelSignalParams", "threshold_problem"]


def threshold_problem(upper: float, lower: float) -> str | None:
    """Why ``upper``/``lower`` are not :class:`ModelSignal` thresholds (``None``: they are).

    With ``upper < lower`` an output between them is both above ``upper`` and below ``lower``:
    the band in which the position is kept would not exist.
    """
    if upper < lower:
        return (f"upper ({upper}) is below lower ({lower}): the position goes long above upper, down below lower "
                "and is kept in between; give upper >= lower")
    return None


class ModelSignalParams(StrictModel):
    """Parameters of :class:`ModelSignal`."""

    model: Path
    quantity: float = Field(gt=0)
    upper: float = 0.55
    lower: float = 0.45
    mode: Literal["long_only", "long_short"] = "long_only"

    @model_validator(mode="after")
    def _band(self) -> ModelSignalParams:
        problem = threshold_problem(self.upper, self.lower)
        if problem is not None:
            raise ValueError(problem)
        return self


class ModelSignal(Strategy):
    """Trade a model step's per-bar output against two thresholds.

    Parameters
    ----------
    instrument_ids
        The traded instrument.
    model
        A :class:`ModelStep` or the path of a saved one.
    quantity, upper, lower, mode
        Position size and the thresholds on the output (see the module docstring).

    Raises
    ------
    ConfigError
        ``upper < lower``.
    """

    Params: type[BaseModel] = ModelSignalParams

    def __init__(
        self,
        instrument_ids: str | Sequence[str],
        *,
        model: ModelStep | Path | str,
        quantity: float,
        upper: float = 0.55,
        lower: float = 0.45,
        mode: Literal["long_only", "long_short"] = "long_only",
        strategy_id: str | None = None,
    ) -> None:
        super().__init__(instrument_ids, strategy_id=strategy_id)
        problem = threshold_problem(upper, lower)
        if problem is not None:
            raise ConfigError(f"ModelSignal: {problem}")
        self.step = model if isinstance(model, ModelStep) else load_model(model)
        self.quantity = quantity
        self.upper = upper
        self.lower = lower
        self._low = -quantity if mode == "long_short" else 0.0
        self.outputs: list[tuple[int, float]] = []
        self._starts: list[int] = []
        self._steps: list[ModelStep] = []

    def schedule(self, starts: Sequence[int], steps: Sequence[ModelStep]) -> None:
        """Use ``steps[k]`` for bars with ``ts_event >= starts[k]`` (sorted); no output before ``starts[0]``."""
        self._starts = list(starts)
        self._steps = list(steps)

    def feature_specs(self, instrument_id: str) -> Sequence[FeatureSpec]:
        """The model's features on the traded instrument."""
        return self.step.specs if instrument_id == self.instrument_id else ()

    def on_start(self) -> None:
        """Resolve the model's columns in the instrument's bank."""
        bank = self.kernel.banks[self.instrument_id]
        for step in (self.step, *self._steps):
            step.bind(bank)
        self._view = self.features()

    def on_bar(self, bar: Bar) -> None:
        """Predict on this bar's features and move the position."""
        step = self.step
        if self._starts:
            k = bisect.bisect_right(self._starts, bar.ts_event) - 1
            if k < 0:  # before the first scheduled model: no model has been trained yet
                self.outputs.append((bar.ts_init, float("nan")))
                return
            step = self._steps[k]
        value = step.predict_row(self._view.row)
        self.outputs.append((bar.ts_init, value))
        if value != value:
            return
        if value > self.upper:
            self.target_position(self.instrument_id, self.quantity, reason=f"model {value:.4f} > {self.upper}")
        elif value < self.lower:
            self.target_position(self.instrument_id, self._low, reason=f"model {value:.4f} < {self.lower}")
