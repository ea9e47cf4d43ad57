"""The feature-kind registry: what every step kernel declares about itself.

The kernel contract
-------------------
Every feature kind has one ``@njit(cache=True)`` step kernel::

    def step(state: float64[::1], params: float64[::1], x: float64[::1], out: float64[::1]) -> None

* ``state``: the kind's state row, ``state_size(params)`` float64 values. A fresh
  state is **all zeros** (kernels are written so that zero is the initial state).
  ``state[0]`` is the ready flag: the kernel sets it to 1.0 once its window is
  filled and the outputs are meaningful.
* ``params``: the kind's parameters packed as float64 in the order of ``params``
  (integers such as windows are stored as floats).
* ``x``: this event's inputs, one value per name in ``inputs`` (NaN allowed;
  each kind documents whether NaN is skipped or propagated).
* ``out``: one slot per name in ``outputs``; the kernel writes every slot on every
  call (NaN while not ready).

Each kernel module exposes a tuple ``KINDS`` of :class:`FeatureKind` and one
``@njit(cache=True)`` ``dispatch(kind_id, state, params, x, out)`` that calls the
step kernel of ``kind_id`` (an ``if`` chain). Kind ids are unique; each module owns
one range (``core`` 1-99, ``ta`` 100-199, ``stats`` 200-299, ``regime`` 300-399,
``flow`` 400-499, ``book`` 500-599).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from tradebus.errors import FeatureError

__all__ = ["Coefficient", "FeatureKind", "Param", "all_kinds", "get_kind", "register"]


@dataclass(frozen=True)
class Param:
    """One parameter of a feature kind.

    Parameters
    ----------
    name
        Keyword used in specs (``span``, ``window``, ...).
    default
        Value used when the spec omits it; ``None`` makes it required.
    low, high
        Inclusive bounds; ``None`` means unbounded.
    integer
        Whether the value must be a whole number (stored as float64).
    """

    name: str
    default: float | None = None
    low: float | None = None
    high: float | None = None
    integer: bool = False

    def check(self, kind: str, value: float) -> float:
        """Return ``value`` as float after validating it, or raise :class:`FeatureError`."""
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise FeatureError(f"feature {kind!r}: parameter {self.name!r} must be a number, got {value!r}") from None
        if not np.isfinite(v):
            raise FeatureError(f"feature {kind!r}: parameter {self.name!r} must be finite, got {value!r}")
        if self.integer and v != int(v):
            raise FeatureError(f"feature {kind!r}: parameter {self.name!r} must be a whole number, got {value!r}")
        if self.low is not None and v < self.low:
            raise FeatureError(f"feature {kind!r}: parameter {self.name!r} must be >= {self.low}, got {value!r}")
        if self.high is not None and v > self.high:
            raise FeatureError(f"feature {kind!r}: parameter {self.name!r} must be <= {self.high}, got {value!r}")
        return v


@dataclass(frozen=True)
class Coefficient:
    """A value a kernel derives from one parameter alone and keeps in its state row.

    A state row saved under one value of the parameter carries the coefficient of that
    value; :meth:`FeatureKind.check_state` refuses it under another.

    Parameters
    ----------
    name
        What the kernel calls it (``"k"``, ``"factor"``).
    slot
        Its index in the state row.
    param
        The parameter it derives from.
    of_param
        The parameter value to the coefficient, by the kernel's own float64 operations.
    param_of
        The inverse, to name the parameter a stored coefficient came from.
    stored_flag
        Index of a state slot that is non-zero once the coefficient is stored; ``None``
        when the coefficient itself is (it is never 0 once stored).
    seeded
        Index of a state slot counting the values seen while the coefficient is not stored
        yet (an EMA's seed, stored once ``param`` values are in); ``None`` when there is none.
        A state not stored yet that has seen ``param`` values or more was saved under a larger
        ``param``: :meth:`FeatureKind.check_state` refuses it.
    seeded_after
        A parameter ``p`` whose first ``p - 1`` values that count precedes the seed (the
        signal EMA of ``macd`` seeds on the macd values after ``slow - 1`` prices).
    """

    name: str
    slot: int
    param: str
    of_param: Callable[[float], float]
    param_of: Callable[[float], float]
    stored_flag: int | None = None
    seeded: int | None = None
    seeded_after: str | None = None


@dataclass(frozen=True)
class FeatureKind:
    """Everything the bank needs to know about one kind of feature.

    Parameters
    ----------
    name
        Spec name (``"ema"``).
    kind_id
        Unique dispatch id (see the module docstring for the ranges).
    inputs
        Names of the input slots (``("x",)``, ``("high", "low", "close")``).
    outputs
        Names of the output slots (``("value",)``, ``("macd", "signal", "hist")``).
    params
        Parameters in packing order.
    state_size
        Number of state floats for packed ``params`` (includes ``state[0]``).
    step
        The ``@njit`` step kernel (used by the single-feature facade and tests).
    normalize
        Optional hook mapping user keywords to the declared ones before validation
        (e.g. EWM ``halflife``/``alpha`` → ``span``); returns the keyword dict.
    warmup
        Optional: for packed ``params``, the number of clean (non-NaN) events after
        which the kernel sets its ready flag. Tests use it to check warm-up exactly.
    batch
        Optional ``@njit`` loop ``batch(state, params, inputs, result)`` over a whole
        column of a one-input, one-output kind, which :meth:`Stepper.run
        <tradebus.features.stepper.Stepper.run>` takes instead of the step kernel
        (e.g. to keep a header in registers). It must leave the outputs and the
        state row the step kernel would, bit for bit. Like ``step``, a module-level
        name of its module (the generated batch loop imports it by name).
    usage
        Optional: the parameters a spec gives, in words, when ``normalize`` takes other
        keywords than ``params`` (``tradebus features list`` shows it instead of ``params``).
    coefficients
        The values the kernel derives from parameters alone and keeps in its state
        (:class:`Coefficient`), checked by :meth:`check_state`.
    state_check
        Optional ``state_check(params, state)``, called by :meth:`check_state` after the
        coefficients: raises :class:`~tradebus.errors.FeatureError` for a state row that
        other parameters left in a way no coefficient tells (``macd``'s fast seed).
    """

    name: str
    kind_id: int
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    params: tuple[Param, ...]
    state_size: Callable[[np.ndarray], int]
    step: Callable[..., None]
    normalize: Callable[[dict[str, float]], dict[str, float]] | None = field(default=None)
    warmup: Callable[[np.ndarray], int] | None = field(default=None)
    batch: Callable[..., None] | None = field(default=None)
    usage: str | None = field(default=None)
    coefficients: tuple[Coefficient, ...] = field(default=())
    state_check: Callable[[np.ndarray, np.ndarray], None] | None = field(default=None)

    def parameters_doc(self) -> str:
        """The parameters a spec gives, with their defaults (``-`` for none)."""
        if self.usage is not None:
            return self.usage
        text = ", ".join(f"{p.name}={'required' if p.default is None else _number(p.default)}" for p in self.params)
        return text or "-"

    def pack(self, kwargs: dict[str, float]) -> np.ndarray:
        """Validate keyword parameters and pack them as a float64 array in declared order."""
        given = dict(self.normalize(dict(kwargs)) if self.normalize else kwargs)
        unknown = set(given) - {p.name for p in self.params}
        if unknown:
            known = ", ".join(p.name for p in self.params) or "none"
            raise FeatureError(f"feature {self.name!r}: unknown parameter(s) {sorted(unknown)}; known: {known}")
        packed = []
        for p in self.params:
            if p.name in given:
                packed.append(p.check(self.name, given[p.name]))
            elif p.default is None:
                raise FeatureError(f"feature {self.name!r}: parameter {p.name!r} is required")
            else:
                packed.append(float(p.default))
        return np.asarray(packed, dtype=np.float64)

    def check_state(self, params: np.ndarray, state: np.ndarray) -> None:
        """Refuse a state row that carries a coefficient other parameters gave.

        Parameters
        ----------
        params
            Packed parameters the state is to continue under.
        state
            The state row, of the size ``state_size(params)``.

        Raises
        ------
        FeatureError
            A stored coefficient is not the one ``params`` give, or a coefficient not stored
            yet has seen as many values as ``params`` give it to seed on (its seed would have
            completed: the state was saved under a larger parameter); names the feature, the
            parameter, the value (or the bound) the state was saved with and the one given.
        """
        names = [p.name for p in self.params]
        for c in self.coefficients:
            value = float(params[names.index(c.param)])
            if state[c.slot if c.stored_flag is None else c.stored_flag] == 0.0:
                if c.seeded is None:
                    continue
                seen = float(state[c.seeded])
                if c.seeded_after is not None:
                    seen -= float(params[names.index(c.seeded_after)]) - 1.0
                if seen >= value:
                    raise FeatureError(
                        f"feature {self.name!r}: the state was saved with {c.param} above {_number(seen)} "
                        f"({_number(seen)} values seeded, {c.name} not stored yet), not {c.param}={_number(value)} "
                        f"(whose seed completes at {_number(value)}); restore it with the parameters it was saved with"
                    )
                continue
            expected = c.of_param(value)
            stored = float(state[c.slot])
            if stored != expected:
                raise FeatureError(
                    f"feature {self.name!r}: the state was saved with {c.param}={_saved(c.param_of, stored)} "
                    f"({c.name}={stored!r}), not {c.param}={_number(value)} ({c.name}={expected!r}); "
                    f"restore it with the parameters it was saved with"
                )
        if self.state_check is not None:
            self.state_check(params, state)


def _saved(param_of: Callable[[float], float], coefficient: float) -> str:
    try:
        return f"{param_of(coefficient):.10g}"
    except (ZeroDivisionError, OverflowError, ValueError):
        return "?"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


_REGISTRY: dict[str, FeatureKind] = {}
_IDS: dict[int, str] = {}


def register(*kinds: FeatureKind) -> None:
    """Add kinds to the registry; names and ids must be unique."""
    for kind in kinds:
        if _REGISTRY.get(kind.name, kind) is not kind or _IDS.get(kind.kind_id, kind.name) != kind.name:
            raise FeatureError(f"feature kind {kind.name!r} (id {kind.kind_id}) clashes with a registered kind")
        _REGISTRY[kind.name] = kind
        _IDS[kind.kind_id] = kind.name


def _load_kernels() -> None:
    """Import every kernel module so that their kinds are registered."""
    import tradebus.features.kernels  # noqa: F401  (registers KINDS of every group on import)


def get_kind(name: str) -> FeatureKind:
    """Look up a registered kind by name, or raise :class:`FeatureError` listing the known ones."""
    _load_kernels()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise FeatureError(f"unknown feature kind {name!r}; known: {', '.join(sorted(_REGISTRY))}") from None


def all_kinds() -> tuple[FeatureKind, ...]:
    """Every registered kind, ordered by id."""
    _load_kernels()
    return tuple(sorted(_REGISTRY.values(), key=lambda k: k.kind_id))
