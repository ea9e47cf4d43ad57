"""Regime state with hysteresis: Schmitt-trigger thresholds and a confirmation count.

A regime read from noisy features flaps when a feature hovers around one threshold.
Two devices stop it, used together by :class:`RegimeMachine`:

* :func:`schmitt`: a state is *entered* when a feature crosses ``enter`` and *kept*
  until it falls back past ``exit`` (``exit`` below ``enter`` for a rising feature);
* a new candidate state must be proposed ``confirm`` bars in a row before the machine
  switches to it (a debounce).

Examples
--------
>>> m = RegimeMachine(initial="RANGE", confirm=2)
>>> [m.update(s) for s in ["TREND", "RANGE", "TREND", "TREND", "RANGE"]]
['RANGE', 'RANGE', 'RANGE', 'TREND', 'TREND']
>>> schmitt(0.35, active=True, enter=0.45, exit=0.30), schmitt(0.35, active=False, enter=0.45, exit=0.30)
(True, False)
"""

from __future__ import annotations

from tradebus.errors import ConfigError

__all__ = ["RegimeMachine", "schmitt"]


def schmitt(value: float, *, active: bool, enter: float, exit: float) -> bool:
    """Whether a rising-feature condition holds: above ``enter`` to start, above ``exit`` to stay.

    NaN keeps nothing active.
    """
    if exit > enter:
        raise ConfigError(f"hysteresis: exit ({exit}) must not be above enter ({enter})")
    if value != value:  # NaN
        return False
    return value >= (exit if active else enter)


class RegimeMachine:
    """The current regime, switching only after ``confirm`` consecutive proposals of a new one.

    Parameters
    ----------
    initial
        State before any switch.
    confirm
        Consecutive bars a different candidate must be proposed (1 = switch at once).
    """

    def __init__(self, initial: str, confirm: int = 1) -> None:
        if confirm < 1:
            raise ConfigError(f"regime machine: confirm must be >= 1, got {confirm}")
        self.state = initial
        self.confirm = confirm
        self._candidate = initial
        self._count = 0
        #: Number of switches so far.
        self.switches = 0

    def update(self, candidate: str) -> str:
        """Propose ``candidate`` for this bar; return the (possibly switched) state."""
        if candidate == self.state:
            self._candidate, self._count = candidate, 0
            return self.state
        if candidate == self._candidate:
            self._count += 1
        else:
            self._candidate, self._count = candidate, 1
        if self._count >= self.confirm:
            self.state, self._count = candidate, 0
            self.switches += 1
        return self.state
