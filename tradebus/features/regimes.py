"""Typed facades of the regime features (kernels in :mod:`tradebus.features.kernels.regime`).

Examples
--------
>>> cusum = Cusum(threshold=2.5)
>>> cusum.run([0.0, 1.0, 2.0, 3.0])[:, 0].tolist()
[nan, 0.0, 0.0, 1.0]
"""

from __future__ import annotations

from collections.abc import Sequence

from tradebus.features.stepper import Stepper

__all__ = ["Cusum", "Garch", "Hmm", "Hurst"]


class Cusum(Stepper):
    """Symmetric CUSUM filter; ``update(x)`` -> ``(event, s_pos, s_neg)``.

    ``x`` is a level (price, log price) unless ``input_is_return`` is true, in which
    case it is already the increment. ``event`` is +1/-1 on the step a side crosses
    ``threshold`` (that side then resets) and 0 otherwise.
    """

    KIND = "cusum"
    __slots__ = ()

    def __init__(self, *, threshold: float, input_is_return: bool = False) -> None:
        super().__init__(threshold=threshold, input_is_return=int(input_is_return))

    @property
    def event(self) -> float:
        """+1, -1 or 0 for the last update (NaN before ready)."""
        return float(self._out[0])


class Hurst(Stepper):
    """Rolling Hurst exponent by the lag-variance method on a level series; ``update(x)`` -> ``hurst``."""

    KIND = "hurst"
    __slots__ = ()

    def __init__(self, *, window: int = 100, max_lag: int = 10) -> None:
        super().__init__(window=window, max_lag=max_lag)


class Garch(Stepper):
    """GARCH(1,1) filter with given parameters; ``update(r)`` -> ``(variance, vol, zscore)``.

    ``variance`` is the forecast for the next return; ``init_var = 0`` starts from the
    unconditional variance ``omega / (1 - alpha - beta)``.
    """

    KIND = "garch"
    __slots__ = ()

    def __init__(self, *, omega: float, alpha: float, beta: float, init_var: float = 0.0) -> None:
        super().__init__(omega=omega, alpha=alpha, beta=beta, init_var=init_var)


class Hmm(Stepper):
    """Gaussian HMM forward filter (2-4 states); ``update(x)`` -> ``(p0, p1, p2, p3)``, NaN for unused states.

    Parameters
    ----------
    transition
        K x K row-stochastic matrix, ``transition[i][j] = P(next = j | now = i)``.
    means, stds
        Emission mean and standard deviation per state.
    init
        Initial state probabilities (default uniform).
    """

    KIND = "hmm"
    __slots__ = ()

    def __init__(
        self,
        *,
        transition: Sequence[Sequence[float]],
        means: Sequence[float],
        stds: Sequence[float],
        init: Sequence[float] | None = None,
    ) -> None:
        kw: dict = {"transition": transition, "means": means, "stds": stds}
        if init is not None:
            kw["init"] = init
        super().__init__(**kw)

    @property
    def n_states(self) -> int:
        """Number of hidden states."""
        return int(self._params[0])

    @property
    def probabilities(self) -> tuple[float, ...]:
        """Filtered state probabilities of the used states after the last update."""
        return tuple(self._out[: self.n_states].tolist())
