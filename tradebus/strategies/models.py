"""Calibrated classifiers as plain numbers: a strategy loads and runs them with numpy alone.

:class:`CalibratedLogit` is a standardised logistic regression whose raw probability goes
through a calibration map (knots, linear in between); :class:`ModelSchedule` holds models with
the time from which each is used. Both serialise to small JSON-ready structures. They are
fitted in research (:mod:`tradebus.research.calibration`), without lookahead, and used by
strategies (:mod:`tradebus.strategies.regime_hazard`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["CalibratedLogit", "ModelSchedule"]


@dataclass(frozen=True)
class CalibratedLogit:
    """Logistic regression on standardised features with a calibration map.

    Attributes
    ----------
    columns
        Feature names, in the order of the rows given to :meth:`predict`.
    mean, scale
        Standardisation of each feature.
    coef, intercept
        Logistic coefficients on the standardised features.
    knots_x, knots_y
        Calibration: raw probability -> calibrated probability (linear between knots).
    n_train, base_rate
        Training samples and their positive share.

    Built by :func:`tradebus.research.calibration.fit_calibrated_logit`.
    """

    columns: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float
    knots_x: tuple[float, ...]
    knots_y: tuple[float, ...]
    n_train: int
    base_rate: float

    def raw(self, row: Sequence[float]) -> float:
        """Uncalibrated logistic probability of one row."""
        z = (np.asarray(row, dtype=np.float64) - np.asarray(self.mean)) / np.asarray(self.scale)
        return float(1.0 / (1.0 + np.exp(-(float(z @ np.asarray(self.coef)) + self.intercept))))

    def predict(self, row: Sequence[float]) -> float:
        """Calibrated probability of one row (NaN in the row gives NaN)."""
        if not np.isfinite(np.asarray(row, dtype=np.float64)).all():
            return float("nan")
        return float(np.interp(self.raw(row), self.knots_x, self.knots_y))

    def contributions(self, row: Sequence[float]) -> dict[str, float]:
        """Each feature's term ``coef * z`` in the logit (what pushed the probability)."""
        z = (np.asarray(row, dtype=np.float64) - np.asarray(self.mean)) / np.asarray(self.scale)
        return {c: float(v) for c, v in zip(self.columns, z * np.asarray(self.coef), strict=True)}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (see :meth:`from_dict`)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CalibratedLogit:
        """Inverse of :meth:`to_dict`."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


@dataclass(frozen=True)
class ModelSchedule:
    """Models with the time from which each is used: ``entries[k] = (valid_from_ns, model)``, sorted."""

    entries: tuple[tuple[int, CalibratedLogit], ...] = ()

    def at(self, ts: int) -> CalibratedLogit | None:
        """The latest model valid at ``ts`` (``None`` before the first)."""
        found = None
        for start, model in self.entries:
            if start > ts:
                break
            found = model
        return found

    def to_list(self) -> list[dict[str, Any]]:
        """JSON-ready form."""
        return [{"valid_from": start, "model": model.to_dict()} for start, model in self.entries]

    @classmethod
    def from_list(cls, data: Sequence[dict[str, Any]]) -> ModelSchedule:
        """Inverse of :meth:`to_list`."""
        return cls(tuple((int(e["valid_from"]), CalibratedLogit.from_dict(e["model"])) for e in data))
