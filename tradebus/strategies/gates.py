"""Entry gates on an edge stream: each switchable, each saying why it blocked.

An *edge* is a per-bar expected return in bps (a model's output, or anything else). Its
sign is the wanted direction; :class:`EdgeGates` lets it through only when every enabled
gate agrees, checked in this order:

``warmup``
    At least ``bars`` edges seen (finite or not) and the per-bar volatility (bps) at or
    above ``vol_floor_bps``.
``cost``
    ``|edge| > round_trip_bps`` (fees plus slippage of entry and exit).
``zscore``
    ``z = (edge - mean) / std`` beyond ``threshold`` in the edge's direction, over the previous ``window`` finite edges (sample
    std); blocked until the window is full or when its std is 0.
``quantile``
    The edge beyond the ``1 - q`` quantile (long) or below the ``q`` quantile (short) of
    the previous ``window`` finite edges.
``persistence``
    A vote buffer: at least ``votes`` of the last ``k`` bars' edge signs (this bar
    included) equal this bar's sign.

Every gate's history is updated on every bar, whether or not an earlier gate blocked, so
switching one gate off never changes what the others see. Only past and current values
are used (no lookahead).
"""

from __future__ import annotations

import bisect
import math
from collections import deque

import numpy as np
from pydantic import Field, model_validator

from tradebus.config.base import StrictModel

__all__ = ["CostGate", "EdgeGates", "GatesConfig", "PersistenceGate", "QuantileGate", "WarmupGate", "ZScoreGate"]


class _Gate(StrictModel):
    enabled: bool = True


class WarmupGate(_Gate):
    """Bars to wait and the per-bar volatility floor (bps)."""

    bars: int = Field(default=0, ge=0)
    vol_floor_bps: float = Field(default=0.0, ge=0)


class CostGate(_Gate):
    """The round-trip cost the edge must exceed (bps)."""

    round_trip_bps: float = Field(default=7.0, ge=0)


class ZScoreGate(_Gate):
    """The z-score of the edge against its recent history."""

    window: int = Field(default=288, ge=2)
    threshold: float = Field(default=1.5, ge=0)


class QuantileGate(_Gate):
    """The edge in an extreme quantile of its recent history."""

    window: int = Field(default=288, ge=2)
    q: float = Field(default=0.1, gt=0, lt=0.5)


class PersistenceGate(_Gate):
    """The direction held by ``votes`` of the last ``k`` bars."""

    k: int = Field(default=3, ge=1)
    votes: int | None = Field(default=None, ge=1, description="default: k (every bar)")

    @model_validator(mode="after")
    def _votes_le_k(self) -> PersistenceGate:
        if self.votes is not None and self.votes > self.k:
            raise ValueError(f"votes ({self.votes}) must be <= k ({self.k})")
        return self


class GatesConfig(StrictModel):
    """Every gate (each with ``enabled``)."""

    warmup: WarmupGate = Field(default_factory=WarmupGate)
    cost: CostGate = Field(default_factory=CostGate)
    zscore: ZScoreGate = Field(default_factory=ZScoreGate)
    quantile: QuantileGate = Field(default_factory=lambda: QuantileGate(enabled=False))
    persistence: PersistenceGate = Field(default_factory=PersistenceGate)


class EdgeGates:
    """The online gate state of one edge stream (module docstring).

    Parameters
    ----------
    config
        Which gates and their parameters.
    """

    def __init__(self, config: GatesConfig) -> None:
        self.config = config
        self.seen = 0
        self._size = max(config.zscore.window, config.quantile.window)
        # the finite edges, the last ``_size`` of them ending at ``_end``: a window is a
        # contiguous view, copied back to the start only once every ``_size`` edges
        self._history = np.empty(2 * self._size, dtype=np.float64)
        self._end = 0
        self._count = 0
        self._deviations = np.empty(config.zscore.window, dtype=np.float64)
        # the quantile window's edges in order (kept only while the gate is on): a bar inserts
        # one and drops the one leaving, where np.quantile partitioned a copy every bar; rebuilt
        # from the history when the gate was off for an edge or its window changed (a config swapped mid-run)
        self._sorted: list[float] = []
        self._sorted_for: int | None = None
        self._signs: deque[int] = deque(maxlen=config.persistence.k)
        #: The z-score of the last edge (NaN when undefined).
        self.z = math.nan

    def _append(self, edge: float) -> None:
        if self.config.quantile.enabled:
            w = self.config.quantile.window
            values = self._sorted_window()
            if len(values) == w:
                del values[bisect.bisect_left(values, float(self._history[self._end - w]))]
            bisect.insort(values, edge)
        else:
            self._sorted_for = None
        if self._end == len(self._history):
            keep = self._size - 1
            self._history[:keep] = self._history[self._end - keep:self._end]
            self._end = keep
        self._history[self._end] = edge
        self._end += 1
        self._count = min(self._count + 1, self._size)

    def _zscore(self, edge: float) -> float:
        # numpy's mean and std(ddof=1) step by step, with the same reductions, without
        # their per-call overhead and allocations: the same floats, bit for bit
        w = self.config.zscore.window
        if self._count < w:
            return math.nan
        past = self._history[self._end - w:self._end]
        mean = float(np.add.reduce(past)) / w
        deviations = self._deviations
        np.subtract(past, mean, out=deviations)
        np.multiply(deviations, deviations, out=deviations)
        std = math.sqrt(float(np.add.reduce(deviations)) / (w - 1))
        return (edge - mean) / std if std > 0 else math.nan

    def _sorted_window(self) -> list[float]:
        window = self.config.quantile.window
        if self._sorted_for != window:
            w = min(self._count, window)
            self._sorted = sorted(self._history[self._end - w:self._end].tolist())
            self._sorted_for = window
        return self._sorted

    def _quantile_ok(self, edge: float, direction: int) -> bool:
        if len(self._sorted_window()) < self.config.quantile.window:
            return False
        q = self.config.quantile.q
        return edge >= self._quantile(1.0 - q) if direction > 0 else edge <= self._quantile(q)

    def _quantile(self, q: float) -> float:
        # np.quantile's default (linear) method on the sorted window, its floats step by step:
        # index (n - 1) q, and the lerp taken from the upper value when the weight is >= 0.5
        values = self._sorted
        index = (len(values) - 1) * q
        below = math.floor(index)
        weight = index - below
        a, b = values[below], values[min(below + 1, len(values) - 1)]
        step = b - a
        return b - step * (1 - weight) if weight >= 0.5 else a + step * weight

    def update(self, edge: float, vol_bps: float) -> tuple[int, str, str]:
        """Feed this bar's edge and volatility; return ``(direction, gate, reason)``.

        ``direction`` is ``+1``/``-1`` when every enabled gate passes (``gate`` is
        ``"pass"``), else ``0`` with the first blocking gate's name (``"edge"`` for a NaN
        or zero edge, ``"warmup"``, ``"vol"``, ``"cost"``, ``"zscore"``, ``"quantile"``,
        ``"persistence"``) and why.
        """
        cfg = self.config
        self.seen += 1
        finite = math.isfinite(edge)
        direction = (1 if edge > 0 else -1 if edge < 0 else 0) if finite else 0
        self._signs.append(direction)
        self.z = self._zscore(edge) if finite else math.nan
        quantile_ok = cfg.quantile.enabled and finite and direction != 0 and self._quantile_ok(edge, direction)
        if finite:
            self._append(edge)
        if direction == 0:
            return 0, "edge", "no edge" if finite else "edge not ready"
        if cfg.warmup.enabled:
            if self.seen <= cfg.warmup.bars:
                return 0, "warmup", f"warm-up ({self.seen}/{cfg.warmup.bars} bars)"
            if not (vol_bps >= cfg.warmup.vol_floor_bps):
                return 0, "vol", f"volatility {vol_bps:.2f} bps < floor {cfg.warmup.vol_floor_bps}"
        if cfg.cost.enabled and not abs(edge) > cfg.cost.round_trip_bps:
            return 0, "cost", f"|edge| {abs(edge):.2f} bps <= cost {cfg.cost.round_trip_bps}"
        if cfg.zscore.enabled and not direction * self.z > cfg.zscore.threshold:
            return 0, "zscore", f"z {self.z:.2f} not beyond {direction * cfg.zscore.threshold:g}"
        if cfg.quantile.enabled and not quantile_ok:
            return 0, "quantile", f"edge not in the {cfg.quantile.q:g} tail of {cfg.quantile.window} bars"
        if cfg.persistence.enabled:
            need = cfg.persistence.votes or cfg.persistence.k
            votes = sum(1 for s in self._signs if s == direction)
            if votes < need:
                return 0, "persistence", f"direction held {votes}/{need} of {cfg.persistence.k} bars"
        return direction, "pass", f"edge {edge:.2f} bps, z {self.z:.2f}"
