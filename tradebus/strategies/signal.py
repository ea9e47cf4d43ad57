"""BarSignal: the shared frame of the single-instrument bar strategies of the library.

A subclass names its features (:meth:`BarSignal.specs`) and turns each bar's feature row
into a target exposure (:meth:`BarSignal.decide`: ``+1`` long, ``-1`` short, ``0`` flat, or
``None`` to keep the current one). The frame does the rest the same way for every
strategy: a ``-1`` becomes ``0`` in ``long_only`` mode, a change of target is recorded in
:attr:`BarSignal.decisions` and sent with :meth:`~tradebus.strategies.base.Strategy.target_position`
(``quantity`` base units per unit of exposure), so a signal while an order is still
working does not stack orders.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field, ValidationError

from tradebus.config.base import StrictModel, describe_errors
from tradebus.engine.cache import FeatureView
from tradebus.engine.instrument import Instrument
from tradebus.engine.messages import Bar
from tradebus.errors import ConfigError
from tradebus.features.spec import FeatureSpec
from tradebus.strategies.base import Strategy
from tradebus.strategies.signal_kernel import SignalKernel

__all__ = ["BarSignal", "SignalParams", "invalid_params"]


class SignalParams(StrictModel):
    """Parameters every :class:`BarSignal` takes: the size and whether it may go short."""

    quantity: float = Field(gt=0)
    mode: Literal["long_only", "long_short"] = "long_only"


def invalid_params(strategy_id: str, exc: ValidationError) -> ConfigError:
    """A :class:`ConfigError` naming each bad parameter of ``exc``."""
    return ConfigError(f"{strategy_id}: invalid parameters: {'; '.join(describe_errors(exc))}")


class BarSignal(Strategy, ABC):
    """A strategy that maps each bar's features of its primary instrument to a target exposure.

    Parameters
    ----------
    instrument_ids
        The traded instrument (the first id).
    strategy_id
        Defaults to the class name.
    **params
        Validated by the class's ``Params`` model.
    """

    Params: ClassVar[type[BaseModel]] = SignalParams

    def __init__(self, instrument_ids: str | Sequence[str], *, strategy_id: str | None = None, **params: Any) -> None:
        super().__init__(instrument_ids, strategy_id=strategy_id)
        try:
            self.params: Any = self.Params(**params)
        except ValidationError as exc:
            raise invalid_params(self.strategy_id, exc) from None
        self.target = 0.0
        self._view = FeatureView(())
        self._cols: dict[str, int] = {}
        #: ``(bar ts_event, new target exposure, reason)`` of every change of target.
        self.decisions: list[tuple[int, float, str]] = []

    @classmethod
    def check_params(cls, params: BaseModel, instruments: Sequence[Instrument]) -> None:
        """The quantity must be a valid order size of the traded instrument."""
        instrument = instruments[0]
        problem = instrument.validate_order(params.quantity, float("nan"))  # type: ignore[attr-defined]
        if problem is not None:
            raise ConfigError(f"quantity: {problem} for {instrument.instrument_id}")

    @abstractmethod
    def specs(self) -> Sequence[FeatureSpec]:
        """The features :meth:`decide` reads (on the traded instrument)."""

    @abstractmethod
    def decide(self, bar: Bar, value: dict[str, float]) -> tuple[float, str] | None:
        """The target exposure after ``bar`` and its reason, or ``None`` to keep the current one.

        ``value`` maps every output name of :meth:`specs` to its value at this bar (NaN: not ready).
        """

    def kernel_of(
        self, fn: Any, params: Sequence[float], state_size: int, reasons: tuple[str, str, str]
    ) -> SignalKernel:
        """A :class:`SignalKernel` of ``fn`` with this frame's size, mode and change-only rule.

        ``reasons``: the submit reasons of a long, flat and short result of ``fn``.
        """
        p = self.params
        return SignalKernel(fn, tuple(params), state_size, p.quantity, p.mode == "long_only", True, reasons)

    def feature_specs(self, instrument_id: str) -> Sequence[FeatureSpec]:
        """:meth:`specs` on the traded instrument."""
        return self.specs() if instrument_id == self.instrument_id else ()

    def on_start(self) -> None:
        """Resolve the feature columns once."""
        self._view = self.features()
        self._cols = {name: col for col, name in enumerate(self._view.names)}

    def on_bar(self, bar: Bar) -> None:
        """Ask :meth:`decide` for the target and trade towards it."""
        if bar.instrument_id != self.instrument_id:
            return
        row = self._view.row
        decision = self.decide(bar, {name: float(row[col]) for name, col in self._cols.items()})
        if decision is None:
            return
        target, reason = decision
        if self.params.mode == "long_only" and target < 0:
            target = 0.0
        if target == self.target:
            return
        self.target = target
        self.decisions.append((bar.ts_event, target, reason))
        self.target_position(self.instrument_id, target * self.params.quantity, reason=reason)
