"""Order-book replenishment after a depletion: how much resting depth comes back, and how fast.

Feed a depth series (e.g. the summed size of the top ``k`` bid levels after each book
update). A *depletion* starts when the depth falls to ``drop`` times (or below) the median of
the ``window`` values before it; it is measured once ``horizon_ns`` have passed, at the first
update at or after ``start + horizon_ns`` (so the measurement is stamped when it is known):

* ``ratio``: depth then / depth before (the median): 1 = fully replenished;
* ``recovered``: the share of the lost depth that came back, ``(after - low) / (before - low)``;
* ``low``: the lowest depth seen during the event.

A thin book that does not refill after being hit (low ``ratio``) is a classic sign of
withdrawing liquidity. One event at a time per instance; use one instance per side.

Examples
--------
>>> r = Replenishment(window=3, drop=0.5, horizon_ns=10)
>>> [r.update(t, d) for t, d in [(0, 10.0), (1, 10.0), (2, 10.0), (3, 4.0), (8, 2.0)]]
[None, None, None, None, None]
>>> e = r.update(13, 8.0)
>>> e.ratio, e.recovered, e.low
(0.8, 0.75, 2.0)
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import pandas as pd

from tradebus.errors import FeatureError
from tradebus.features.spec_base import whole_setting

__all__ = ["Depletion", "Replenishment", "replenishment_events"]


@dataclass(frozen=True)
class Depletion:
    """One measured depletion: start, measurement time, depths before / lowest / after, and the ratios."""

    ts_start: int
    ts_known: int
    before: float
    low: float
    after: float
    ratio: float
    recovered: float


class Replenishment:
    """Streaming detector of depletions and their replenishment; see the module docstring.

    Parameters
    ----------
    window
        Depth values before an update whose median is the reference depth.
    drop
        A depletion starts at ``depth <= drop * median`` (0 < drop < 1).
    horizon_ns
        Time after the start at which the replenishment is measured.
    """

    def __init__(self, *, window: int = 50, drop: float = 0.5, horizon_ns: int) -> None:
        if not 0.0 < drop < 1.0:
            raise FeatureError(f"replenishment: drop must be in (0, 1), got {drop!r}")
        self.drop = drop
        self.horizon_ns = whole_setting("replenishment", "horizon_ns (nanoseconds)", horizon_ns, 1)
        self._hist: deque[float] = deque(maxlen=whole_setting("replenishment", "window", window, 1))
        self._start = 0  # ns timestamps do not fit a float64 exactly: kept apart from the floats
        self._event: list[float] | None = None  # [before, low]

    def update(self, ts: int, depth: float) -> Depletion | None:
        """Feed one depth value; return the depletion measured at this update, if any."""
        if not depth >= 0.0:
            raise FeatureError(f"replenishment: depth must be >= 0, got {depth!r} at {ts}")
        out = None
        ev = self._event
        if ev is not None:
            if ts >= self._start + self.horizon_ns:
                before, low = ev
                lost = before - low
                out = Depletion(self._start, int(ts), before, low, depth, depth / before,
                                (depth - low) / lost if lost > 0 else 1.0)
                self._event = None
            else:
                ev[1] = min(ev[1], depth)
        elif len(self._hist) == self._hist.maxlen:
            median = float(np.median(self._hist))
            if median > 0 and depth <= self.drop * median:
                self._start, self._event = int(ts), [median, depth]
        self._hist.append(depth)
        return out


def replenishment_events(ts: np.ndarray, depth: np.ndarray, *, window: int = 50, drop: float = 0.5,
                         horizon_ns: int) -> pd.DataFrame:
    """Every depletion of a depth series (the streaming detector over the whole series), one row each."""
    detector = Replenishment(window=window, drop=drop, horizon_ns=horizon_ns)
    rows = [e for t, d in zip(np.asarray(ts, dtype=np.int64), np.asarray(depth, dtype=np.float64), strict=True)
            if (e := detector.update(int(t), float(d))) is not None]
    return pd.DataFrame([e.__dict__ for e in rows],
                        columns=["ts_start", "ts_known", "before", "low", "after", "ratio", "recovered"])
