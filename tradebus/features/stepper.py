"""Typed single-feature facade over the step kernels.

A :class:`Stepper` owns one state row, its packed parameters and preallocated
input/output buffers. :meth:`Stepper.update` feeds one event through
:func:`tradebus.features.kernels.step` (a dispatch on the kind id) and
:meth:`Stepper.run` a whole history through the kind's own batch loop
(:func:`tradebus.features.kernels.runner`); both run the same compiled step
kernel (or a ``FeatureKind.batch`` loop equal to it), so ``update`` row by row
and ``run`` give bit-identical results.

Examples
--------
>>> ema = Ema(span=3)
>>> [ema.update(v) for v in (1.0, 2.0, 3.0, 4.0)]
[nan, nan, 2.0, 3.0]
>>> ema.ready
True
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

import numpy as np

from tradebus.errors import FeatureError
from tradebus.features import kernels as _kernels
from tradebus.features.registry import FeatureKind, get_kind

__all__ = [
    "Ema",
    "EwmKurt",
    "EwmMean",
    "EwmSkew",
    "EwmStd",
    "EwmVar",
    "EwmZscore",
    "LogReturn",
    "Return",
    "RollingMax",
    "RollingMean",
    "RollingMin",
    "RollingRank",
    "RollingStd",
    "RollingSum",
    "RollingVar",
    "RollingZscore",
    "Sma",
    "Stepper",
    "Wma",
]

_step = _kernels.step
_step1 = _kernels.step1


class Stepper:
    """One incremental feature: a kernel, its parameters and its state.

    Parameters
    ----------
    kind
        Kind name or :class:`FeatureKind`; typed subclasses fix it through ``KIND``
        and take only keyword parameters.
    **params
        Parameters of the kind (validated by :meth:`FeatureKind.pack`).

    Raises
    ------
    FeatureError
        Unknown kind, unknown/missing/out-of-range parameter.
    """

    KIND: ClassVar[str | None] = None

    __slots__ = ("_kind", "_kid", "_n_in", "_n_out", "_out", "_params", "_state", "_x")

    def __init__(self, kind: str | FeatureKind | None = None, /, **params: float) -> None:
        if kind is None:
            kind = type(self).KIND
        if kind is None:
            raise FeatureError(f"{type(self).__name__}: no feature kind given")
        self._kind = kind if isinstance(kind, FeatureKind) else get_kind(kind)
        self._params = self._kind.pack(params)
        self._kid = self._kind.kind_id
        self._n_in = len(self._kind.inputs)
        self._n_out = len(self._kind.outputs)
        self._state = np.zeros(self._kind.state_size(self._params), dtype=np.float64)
        self._x = np.zeros(max(self._n_in, 1), dtype=np.float64)
        self._out = np.full(self._n_out, np.nan, dtype=np.float64)

    # ------------------------------------------------------------------ description
    @property
    def kind(self) -> FeatureKind:
        """The feature kind."""
        return self._kind

    @property
    def params(self) -> dict[str, float]:
        """Packed parameter values by name (after normalisation and defaults)."""
        return {p.name: float(v) for p, v in zip(self._kind.params, self._params, strict=True)}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v:g}" for k, v in self.params.items())
        return f"{type(self).__name__}({self._kind.name!r}, {args})" if type(self) is Stepper else (
            f"{type(self).__name__}({args})"
        )

    # ------------------------------------------------------------------ live
    def update(self, *x: float) -> float | tuple[float, ...]:
        """Feed one event (one value per input); return the first output or all of them.

        Returns
        -------
        float or tuple of float
            A float for single-output kinds, else a tuple in ``kind.outputs`` order.
        """
        if self._n_in == 1 and len(x) == 1:
            first = _step1(self._kid, self._state, self._params, self._x, self._out, float(x[0]))
            return first if self._n_out == 1 else tuple(self._out.tolist())
        if len(x) != self._n_in:
            raise FeatureError(
                f"feature {self._kind.name!r}: update() takes {self._n_in} input(s) "
                f"{self._kind.inputs}, got {len(x)}"
            )
        self._x[:] = x
        _step(self._kid, self._state, self._params, self._x, self._out)
        return float(self._out[0]) if self._n_out == 1 else tuple(self._out.tolist())

    @property
    def value(self) -> float:
        """First output after the last update (NaN before any)."""
        return float(self._out[0])

    @property
    def values(self) -> tuple[float, ...]:
        """All outputs after the last update, in ``kind.outputs`` order."""
        return tuple(self._out.tolist())

    @property
    def ready(self) -> bool:
        """Whether the warm-up is over (the kernel's ready flag)."""
        return bool(self._state[0] != 0.0)

    # ------------------------------------------------------------------ batch
    def run(self, *columns: Any) -> np.ndarray:
        """Feed a whole history, continuing from the current state.

        Parameters
        ----------
        *columns
            One 1-D array per input, or a single 2-D array of shape (n, n_inputs).

        Returns
        -------
        numpy.ndarray
            Shape (n,) for single-output kinds, else (n, n_outputs). Identical to
            calling :meth:`update` on every row.
        """
        inputs = self._stack(columns)
        n = inputs.shape[0]
        result = np.empty((n, self._n_out), dtype=np.float64)
        if n:
            run = _kernels.runner(self._kid)
            run(self._state, self._params, inputs.reshape(-1), self._n_in, result.reshape(-1), self._n_out)
            self._out[:] = result[n - 1]
        return result.reshape(n) if self._n_out == 1 else result

    def _stack(self, columns: tuple[Any, ...]) -> np.ndarray:
        name = self._kind.name
        if len(columns) == 1 and np.ndim(columns[0]) == 2:
            arr = np.asarray(columns[0], dtype=np.float64)
            if arr.shape[1] != self._n_in:
                raise FeatureError(f"feature {name!r}: run() needs {self._n_in} column(s), got {arr.shape[1]}")
            return np.ascontiguousarray(arr)
        if len(columns) != self._n_in:
            raise FeatureError(
                f"feature {name!r}: run() takes {self._n_in} column(s) {self._kind.inputs}, got {len(columns)}"
            )
        cols = [np.asarray(c, dtype=np.float64) for c in columns]
        if any(c.ndim != 1 for c in cols) or len({c.shape[0] for c in cols}) > 1:
            raise FeatureError(f"feature {name!r}: run() columns must be 1-D and of equal length")
        if len(cols) == 1:
            return np.ascontiguousarray(cols[0]).reshape(cols[0].shape[0], 1)
        return np.ascontiguousarray(np.column_stack(cols))

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Forget every event: back to the all-zero initial state."""
        self._state[:] = 0.0
        self._out[:] = np.nan

    @property
    def state(self) -> np.ndarray:
        """A copy of the state row (restore it with :meth:`from_state`)."""
        return self._state.copy()

    @classmethod
    def from_state(cls, state: np.ndarray, kind: str | FeatureKind | None = None, /, **params: float) -> Self:
        """Build a stepper with ``params`` that continues from a saved ``state`` row.

        The outputs are recomputed on the next update; :attr:`value` is NaN until then.

        Raises
        ------
        FeatureError
            ``state`` does not have the size the kind needs for these parameters, or
            holds a coefficient other parameters gave (an ``ema`` saved with another
            ``span``: :meth:`FeatureKind.check_state <tradebus.features.registry.FeatureKind.check_state>`).
        """
        obj = cls(kind, **params) if kind is not None else cls(**params)
        arr = np.asarray(state, dtype=np.float64)
        if arr.shape != obj._state.shape:
            raise FeatureError(
                f"feature {obj._kind.name!r}: state has shape {arr.shape}, expected {obj._state.shape} for {params}"
            )
        obj._kind.check_state(obj._params, arr)
        obj._state[:] = arr
        return obj


class Return(Stepper):
    """Simple return ``x[t] / x[t-lag] - 1`` (pandas ``pct_change``)."""

    KIND = "ret"

    def __init__(self, *, lag: int = 1) -> None:
        super().__init__(lag=lag)


class LogReturn(Stepper):
    """Log return ``log(x[t] / x[t-lag])``."""

    KIND = "log_ret"

    def __init__(self, *, lag: int = 1) -> None:
        super().__init__(lag=lag)


class _Ewm(Stepper):
    def __init__(
        self,
        *,
        span: float | None = None,
        halflife: float | None = None,
        alpha: float | None = None,
        com: float | None = None,
        min_periods: int | None = None,
    ) -> None:
        given = {"span": span, "halflife": halflife, "alpha": alpha, "com": com, "min_periods": min_periods}
        super().__init__(**{k: v for k, v in given.items() if v is not None})


class EwmMean(_Ewm):
    """pandas ``ewm(adjust=True).mean()``; give one of span, halflife, alpha, com."""

    KIND = "ewm_mean"


class EwmVar(_Ewm):
    """pandas ``ewm(adjust=True).var()`` (bias corrected)."""

    KIND = "ewm_var"


class EwmStd(_Ewm):
    """pandas ``ewm(adjust=True).std()``."""

    KIND = "ewm_std"


class EwmZscore(_Ewm):
    """``(x - ewm_mean) / ewm_std``."""

    KIND = "ewm_zscore"


class EwmSkew(_Ewm):
    """Exponentially weighted skewness (population form)."""

    KIND = "ewm_skew"


class EwmKurt(_Ewm):
    """Exponentially weighted excess kurtosis (population form)."""

    KIND = "ewm_kurt"


class _Rolling(Stepper):
    def __init__(self, *, window: int, min_periods: int = 0) -> None:
        super().__init__(window=window, min_periods=min_periods)


class RollingSum(_Rolling):
    """pandas ``rolling(window, min_periods).sum()``."""

    KIND = "rolling_sum"


class RollingMean(_Rolling):
    """pandas ``rolling(window, min_periods).mean()``."""

    KIND = "rolling_mean"


class RollingVar(_Rolling):
    """pandas ``rolling(window, min_periods).var()`` (ddof=1)."""

    KIND = "rolling_var"


class RollingStd(_Rolling):
    """pandas ``rolling(window, min_periods).std()`` (ddof=1)."""

    KIND = "rolling_std"


class RollingMin(_Rolling):
    """pandas ``rolling(window, min_periods).min()``."""

    KIND = "rolling_min"


class RollingMax(_Rolling):
    """pandas ``rolling(window, min_periods).max()``."""

    KIND = "rolling_max"


class RollingZscore(_Rolling):
    """``(x - rolling mean) / rolling std`` of the last value in its window."""

    KIND = "rolling_zscore"


class RollingRank(_Rolling):
    """pandas ``rolling(window, min_periods).rank(pct=True)``."""

    KIND = "rolling_rank"


class Sma(Stepper):
    """Simple moving average (TA-Lib ``SMA``)."""

    KIND = "sma"

    def __init__(self, *, window: int) -> None:
        super().__init__(window=window)


class Ema(Stepper):
    """TA-Lib ``EMA`` (SMA-seeded); for pandas ``ewm(span).mean()`` use :class:`EwmMean`."""

    KIND = "ema"

    def __init__(self, *, span: int) -> None:
        super().__init__(span=span)


class Wma(Stepper):
    """Linearly weighted moving average (TA-Lib ``WMA``)."""

    KIND = "wma"

    def __init__(self, *, window: int) -> None:
        super().__init__(window=window)

