"""Typed facades of the trade-flow features (kernels in :mod:`tradebus.features.kernels.flow`).

Inputs come from trades: ``size`` and ``side`` (+1 buy aggressor, -1 sell, 0 unknown),
plus ``price`` where the feature needs it; windows count trades.

Examples
--------
>>> vpin = Vpin(bucket_volume=10.0, n_buckets=2)
>>> vpin.run([25.0, 5.0], [1.0, -1.0]).tolist()
[1.0, 0.5]
"""

from __future__ import annotations

from tradebus.features.stepper import Stepper

__all__ = ["Amihud", "KyleLambda", "SignedVolume", "TradeImbalance", "Vpin"]


class SignedVolume(Stepper):
    """Rolling sum of ``sign(side) * size`` over the last ``window`` trades; ``update(size, side)``."""

    KIND = "signed_volume"
    __slots__ = ()

    def __init__(self, *, window: int = 100) -> None:
        super().__init__(window=window)


class TradeImbalance(Stepper):
    """Rolling ``(buy - sell) / (buy + sell)`` volume over the last ``window`` trades; ``update(size, side)``."""

    KIND = "trade_imbalance"
    __slots__ = ()

    def __init__(self, *, window: int = 100) -> None:
        super().__init__(window=window)


class Amihud(Stepper):
    """Rolling mean of ``|log return| / (price * size)`` times ``scale``; ``update(price, size)``.

    Per trade when fed trades, per bar when fed ``(close, volume)``.
    """

    KIND = "amihud"
    __slots__ = ()

    def __init__(self, *, window: int = 100, scale: float = 1e6) -> None:
        super().__init__(window=window, scale=scale)


class KyleLambda(Stepper):
    """Rolling OLS slope of the price change on signed volume; ``update(price, size, side)``."""

    KIND = "kyle_lambda"
    __slots__ = ()

    def __init__(self, *, window: int = 100) -> None:
        super().__init__(window=window)


class Vpin(Stepper):
    """VPIN over ``n_buckets`` volume buckets of ``bucket_volume``; ``update(size, side)``.

    Large trades spill into the following buckets; the value changes only when a
    bucket completes.
    """

    KIND = "vpin"
    __slots__ = ()

    def __init__(self, *, bucket_volume: float, n_buckets: int = 50) -> None:
        super().__init__(bucket_volume=bucket_volume, n_buckets=n_buckets)
