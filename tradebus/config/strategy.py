"""Strategy entries of a run config (``strategy:`` or ``strategies:``) and their cross-checks."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

from tradebus.config.base import StrictModel
from tradebus.execution.orders import ACCOUNT_CLOSES

if TYPE_CHECKING:
    from tradebus.config.run import RunBase

__all__ = ["StrategyConfig", "check_strategy_choice", "strategy_entries"]


class StrategyConfig(StrictModel):
    """The strategy to run: a built-in name (``ema_cross``) or ``"package.module:Class"``.

    ``params`` are validated by the strategy class's ``Params`` model. ``module_dir`` is the
    directory ``package`` is imported from when ``sys.path`` does not have it (relative: to the
    config's directory; default: the config's directory). A run's ``config.yaml`` records it,
    absolute, for a strategy imported from there, so the copy runs from any directory.
    """

    name: str = Field(min_length=1)
    id: str | None = Field(default=None, min_length=1)
    instruments: list[str] = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)
    module_dir: Path | None = None


def strategy_entries(config: RunBase) -> list[tuple[str, StrategyConfig]]:
    """``(field path, entry)`` of every strategy of a config: ``strategy`` or ``strategies.<n>``."""
    if config.strategy is not None:
        return [("strategy", config.strategy)]
    return [(f"strategies.{n}", entry) for n, entry in enumerate(config.strategies)]


def check_strategy_choice(config: RunBase, instrument_ids: Sequence[str]) -> None:
    """Exactly one of ``strategy``/``strategies``, unique ids none of :data:`ACCOUNT_CLOSES`, only known instruments.

    Raises
    ------
    ValueError
        Naming the field path of the problem.
    """
    if config.strategy is None and not config.strategies:
        raise ValueError("strategy: required field is missing (or give 'strategies', a list of them)")
    if config.strategy is not None and config.strategies:
        raise ValueError("strategies: give either 'strategy' (one) or 'strategies' (a list), not both")
    ids: dict[str, str] = {}
    for path, entry in strategy_entries(config):
        for n, iid in enumerate(entry.instruments):
            if iid not in instrument_ids:
                raise ValueError(f"{path}.instruments.{n}: {iid!r} is not one of the instruments {list(instrument_ids)}")
        if entry.id in ACCOUNT_CLOSES:
            raise ValueError(
                f"{path}.id: {entry.id!r} is the id of the fills no strategy sends, which close every strategy's "
                f"position (a liquidation's, an operator's /flatten's, live-kill --flatten's: {sorted(ACCOUNT_CLOSES)})"
            )
        if len(config.strategies) > 1:
            if entry.id is None:
                raise ValueError(f"{path}.id: required when several strategies run (ids name them in the outputs)")
            if entry.id in ids:
                raise ValueError(f"{path}.id: {entry.id!r} is already the id of {ids[entry.id]}")
            ids[entry.id] = path
