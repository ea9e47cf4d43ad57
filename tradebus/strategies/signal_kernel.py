"""Signal kernels: how a strategy declares that the accelerated tier may run it.

A strategy whose every decision is "at a bar's close, move the position of its one
instrument to a target read from its features" can declare the decision as a compiled
*signal kernel*. :mod:`tradebus.engine.accelerated` then runs it in one compiled loop (the
same feature steppers, the same fill, fee and slippage rules as the event tier) instead of
the event loop; the fills are the same.

The kernel is a module-level ``@njit(cache=True)`` function::

    signal(values, open, high, low, close, volume, target, params, state) -> float

``values`` is the bar's row of feature outputs (the instrument's bank columns, in
``FeatureView`` order: NaN while not ready), ``target`` the current target exposure,
``params`` a tuple of floats (index it; the loop reads the parameters once, before its first
bar, so the compiler keeps them in registers instead of reloading them after every write to the
feature workspace, which an array of them might alias) and ``state`` a float64 array (the
kernel's own, zeroed at the start and kept from bar to bar). It returns the new target exposure (``+1`` long ``quantity``,
``-1`` short, ``0`` flat) or NaN for "no order now". The simulator then does what
:meth:`~tradebus.strategies.base.Strategy.target_position` does: ``-1`` becomes ``0`` in
``long_only`` mode, and with ``on_change`` a target equal to the current one sends nothing.

A strategy declares its kernel by overriding :meth:`Strategy.signal_kernel` (called after
``on_start``, when its feature columns are known) to return a :class:`SignalKernel`. The
declaration holds only for the class that makes it: a subclass that defines anything of its own
(a handler, a decision method, parameters) runs in the event tier (:func:`declared_kernel`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from tradebus.strategies.base import Strategy

__all__ = ["SignalKernel", "declared_kernel"]

#: What every class defines (a subclass that defines nothing else behaves as its parent).
_ANY_CLASS = frozenset({"__module__", "__qualname__", "__doc__", "__dict__", "__weakref__", "__firstlineno__",
                        "__static_attributes__", "__annotations__", "__parameters__", "__orig_bases__"})  # fmt: skip


@dataclass(frozen=True)
class SignalKernel:
    """A strategy's decision as a compiled kernel (see the module docstring).

    Attributes
    ----------
    fn
        The ``@njit(cache=True)`` module-level signal function.
    params
        Its parameters (float64; column indices are passed as floats).
    state_size
        Length of its state vector (zeroed at the start).
    quantity
        Base units per unit of target exposure.
    long_only
        A target of ``-1`` means flat.
    on_change
        Send an order only when the (clamped) target differs from the current one
        (:class:`~tradebus.strategies.signal.BarSignal`); otherwise every non-NaN result is acted on.
    reasons
        Submit reasons of a long, a flat and a short target (the event tier's may carry values).
    """

    fn: Any
    params: tuple[float, ...]
    state_size: int
    quantity: float
    long_only: bool
    on_change: bool
    reasons: tuple[str, str, str]

    def params_array(self) -> np.ndarray:
        """``params`` as a float64 array."""
        return np.asarray(self.params if self.params else (math.nan,), dtype=np.float64)

    def reason(self, exposure: float) -> str:
        """The submit reason of a target exposure."""
        long, flat, short = self.reasons
        return long if exposure > 0.0 else short if exposure < 0.0 else flat


def declared_kernel(strategy: Strategy) -> SignalKernel | None:
    """The strategy's signal kernel, or ``None`` when it has none or a subclass voids it.

    A kernel is declared by the class that defines ``signal_kernel``; if a class between the
    strategy's class and that one defines anything of its own (a handler, a decision method,
    parameters, a label), the kernel may no longer describe what the strategy does and ``None``
    is returned.
    """
    cls = type(strategy)
    owner = next((k for k in cls.__mro__ if "signal_kernel" in vars(k)), None)
    if owner is None:
        return None
    for klass in cls.__mro__:
        if klass is owner:
            break
        if set(vars(klass)) - _ANY_CLASS:
            return None
    return strategy.signal_kernel()
