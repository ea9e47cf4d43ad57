"""Walk-forward optimisation windows and the stitching of their out-of-sample results.

``walk_forward: {train: 365d, test: 90d}`` in a space file splits the data span (the
config's ``data.start``/``data.end``, else the catalog datasets' first and last rows,
or ``start``/``end`` given here) into folds::

    fold k: train [s + k*test, s + k*test + train)   test [train end, train end + test)

while a whole test window fits before the end. Each fold runs the space's optimisation
(grid or TPE) on its train window, takes the best trial by the first objective and runs
it once on the test window. Test windows do not overlap, and each starts flat with the
config's starting cash (its strategy warms up inside the window, as a fresh deployment
would). The stitched out-of-sample equity chains the test windows' returns: fold k's
curve is scaled so that it starts where fold k-1's ended.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import field_validator

from tradebus.config import RunConfig, parse_duration, to_ns
from tradebus.config.base import StrictModel
from tradebus.config.units import Moment
from tradebus.data.catalog import Catalog
from tradebus.errors import ConfigError, DataError
from tradebus.reports.metrics import (
    MIN_ANNUALISED_DAYS,
    EquityCurve,
    daily_returns,
    format_ns,
    max_drawdown,
    periods_per_year,
    returns_flat,
)

__all__ = ["Fold", "WalkForwardSpec", "data_span", "fold_count", "folds", "stitch"]

_DAY_NS = 86_400_000_000_000


class WalkForwardSpec(StrictModel):
    """Train and test window lengths (durations), optional span limits."""

    train: str
    test: str
    start: Moment | None = None
    end: Moment | None = None

    @field_validator("train", "test")
    @classmethod
    def _is_duration(cls, value: str) -> str:
        parse_duration(value)
        return value


@dataclass(frozen=True, slots=True)
class Fold:
    """One walk-forward fold: ``[train_start, train_end)`` then ``[train_end, test_end)`` (ns)."""

    index: int
    train_start: int
    train_end: int
    test_end: int

    def window(self, part: str) -> tuple[int, int]:
        """``(start, end)`` of ``"train"`` or ``"test"``."""
        return (self.train_start, self.train_end) if part == "train" else (self.train_end, self.test_end)


def data_span(config: RunConfig) -> tuple[int, int] | None:
    """``(start, end)`` ns of the config's data: its ``data.start``/``end``, else the catalog manifests.

    ``None`` when a bound is unknown (a file source without ``data.start``/``end``).
    The end is exclusive (one past the last row); a start from the manifests is their first row's, to the nanosecond
    (each trial's ``data.start``/``end`` holds it: :data:`~tradebus.config.units.Moment`).
    """
    start, end = config.data.start_ns, config.data.end_ns
    if start is not None and end is not None:
        return start, end
    firsts, lasts = [], []
    for source in config.data.sources:
        if source.dataset is None or config.data.catalog is None:
            return None
        try:
            manifest = Catalog(config.data.catalog).manifest(*source.catalog_key)
        except DataError:
            return None
        firsts.append(manifest.start_ns)
        lasts.append(manifest.end_ns + 1)
    return (start if start is not None else min(firsts)), (end if end is not None else max(lasts))


def fold_count(spec: WalkForwardSpec, span: tuple[int, int] | None) -> int:
    """How many folds :func:`folds` makes of ``spec`` over ``span`` (without making them).

    Raises
    ------
    ConfigError
        The span is unknown or too short for one fold.
    """
    start, end, train, test = _bounds(spec, span)
    if start + train + test > end:
        raise ConfigError(
            f"walk_forward: train {spec.train} + test {spec.test} does not fit in the data span "
            f"{format_ns(start)} .. {format_ns(end)}"
        )
    return (end - start - train - test) // test + 1


def folds(spec: WalkForwardSpec, span: tuple[int, int] | None) -> list[Fold]:
    """The folds of ``spec`` over ``span`` (overridden by the spec's own start/end).

    Raises
    ------
    ConfigError
        The span is unknown or too short for one fold.
    """
    count = fold_count(spec, span)
    start, _, train, test = _bounds(spec, span)
    return [Fold(k, start + k * test, start + k * test + train, start + k * test + train + test) for k in range(count)]


def _bounds(spec: WalkForwardSpec, span: tuple[int, int] | None) -> tuple[int, int, int, int]:
    """``(start, end, train, test)`` ns of ``spec`` over ``span``."""
    start = to_ns(spec.start) if spec.start is not None else (span[0] if span else None)
    end = to_ns(spec.end) if spec.end is not None else (span[1] if span else None)
    if start is None or end is None:
        raise ConfigError("walk_forward: the data span is unknown; give data.start and data.end in the config")
    return start, end, parse_duration(spec.train), parse_duration(spec.test)


def stitch(
    curves: Sequence[Sequence[tuple[int, float]]], initial_cash: float, run_cash: Sequence[float] | None = None
) -> tuple[list[tuple[int, int, float]], dict[str, Any]]:
    """Chain out-of-sample equity curves; return ``[(fold, ts, equity)]`` and their metrics.

    Each curve is ``[(ts, equity)]`` of a run that started with ``run_cash[k]`` (default
    ``initial_cash``: it differs when ``initial_cash`` is a swept parameter); the stitched
    equity starts at ``initial_cash`` and fold k's equity is multiplied by (stitched equity
    at the end of fold k-1) / ``run_cash[k]``.
    Metrics: ``total_return``, ``max_drawdown`` (from ``initial_cash``), ``sharpe``
    (daily returns annualised by :func:`~tradebus.reports.metrics.periods_per_year`, as in
    ``metrics.json``; ``None`` when the stitched samples span less than
    :data:`~tradebus.reports.metrics.MIN_ANNUALISED_DAYS` days, as ``metrics.json``'s is for
    such a run, with fewer than two days or returns that differ by no more than rounding), and ``untested_folds``: the folds whose
    curve is empty (no trial of their train window had a value of every objective, or the test run
    of the best one failed), left out of
    the stitched equity and of every figure here.
    """
    stitched: list[tuple[int, int, float]] = []
    level = initial_cash
    for k, curve in enumerate(curves):
        scale = level / (initial_cash if run_cash is None else run_cash[k])
        stitched.extend((k, ts, equity * scale) for ts, equity in curve)
        if curve:
            level = curve[-1][1] * scale
    chained = EquityCurve(
        np.array([ts for _, ts, _ in stitched], dtype=np.int64), np.array([e for _, _, e in stitched], dtype=np.float64)
    )
    returns = [r for r in daily_returns(chained, initial_cash) if math.isfinite(r)]
    span = int(chained.ts[-1] - chained.ts[0]) if len(chained.ts) else 0
    sharpe = None
    if span >= MIN_ANNUALISED_DAYS * _DAY_NS and len(returns) >= 2:
        mean = sum(returns) / len(returns)
        std = math.sqrt(sum((r - mean) ** 2 for r in returns) / (len(returns) - 1))
        flat = returns_flat(min(returns), max(returns))
        sharpe = mean / std * math.sqrt(periods_per_year(chained)) if std > 0.0 and not flat else None
    metrics = {
        "folds": len(curves),
        "initial_cash": initial_cash,
        "final_equity": level,
        "total_return": level / initial_cash - 1.0,
        "max_drawdown": max_drawdown(np.concatenate(([initial_cash], chained.equity))),
        "sharpe": sharpe,
        "untested_folds": [k for k, curve in enumerate(curves) if not curve],
    }
    return stitched, metrics
