"""How a denial's quantities, prices and notionals read: without float noise, still telling a value from its limit."""

from __future__ import annotations

__all__ = ["shown"]


def shown(value: float) -> str:
    """A quantity, price or notional of a denial as a user reads it: the shortest repr of it rounded to 12
    significant digits (``0.019999999999999997`` reads ``0.02``, ``12500.0`` stays ``12500.0``).

    A value the gate denies is over its limit by more than :data:`~tradebus.risk.config.LIMIT_RTOL` (1e-9) of it,
    which 12 digits still show (``20.000000009999997`` reads ``20.00000001``, over ``20.0``).
    """
    return repr(float(f"{value:.12g}"))
