"""Typed single-feature facades over the technical-analysis kernels.

Each class fixes one kind of :mod:`tradebus.features.kernels.ta` and takes its
parameters as keywords with the usual defaults; everything else (``update``,
``run``, ``ready``, ``reset``, ``state``/``from_state``) is
:class:`~tradebus.features.stepper.Stepper`'s, so a live ``update`` per event and a
batch ``run`` are bit-identical. Formulas, TA-Lib/pandas equivalents, warm-up and
NaN policy are documented on the step kernels.

Examples
--------
>>> rsi = Rsi(window=2)
>>> [round(rsi.update(v), 6) for v in (1.0, 2.0, 1.5, 3.0)]
[nan, nan, 66.666667, 88.888889]
>>> macd = Macd(fast=2, slow=3, signal=1)  # TA-Lib seeding: mean(2, 4) - mean(1, 2, 4)
>>> macd.run([1.0, 2.0, 4.0]).round(6).tolist()
[[nan, nan, nan], [nan, nan, nan], [0.666667, 0.666667, 0.0]]
>>> macd.hist
0.0
"""

from __future__ import annotations

from tradebus.features.kernels import ta as _kernels
from tradebus.features.stepper import Stepper

__all__ = ["Atr", "Bollinger", "Macd", "Obv", "RealizedVol", "Rsi", "SessionVwap", "Stochastic", "Vwap"]


class Rsi(Stepper):
    """Wilder RSI of one input, ``talib.RSI``; ``update(x) -> float``.

    Parameters
    ----------
    window
        Smoothing period (>= 2); ready after ``window + 1`` valid values.
    """

    KIND = _kernels.RSI.name
    __slots__ = ()

    def __init__(self, *, window: int = 14) -> None:
        super().__init__(window=window)


class Macd(Stepper):
    """MACD with TA-Lib seeding, ``talib.MACD``; ``update(x) -> (macd, signal, hist)``.

    Parameters
    ----------
    fast, slow
        EMA periods, ``fast < slow``.
    signal
        EMA period of the signal line; all outputs start after ``slow + signal - 1``
        valid values.
    """

    KIND = _kernels.MACD.name
    __slots__ = ()

    def __init__(self, *, fast: int = 12, slow: int = 26, signal: int = 9) -> None:
        super().__init__(fast=fast, slow=slow, signal=signal)

    @property
    def macd(self) -> float:
        """Fast EMA minus slow EMA after the last update."""
        return float(self._out[0])

    @property
    def signal(self) -> float:
        """Signal line (EMA of ``macd``) after the last update."""
        return float(self._out[1])

    @property
    def hist(self) -> float:
        """``macd - signal`` after the last update."""
        return float(self._out[2])


class Atr(Stepper):
    """Wilder average true range, ``talib.ATR``; ``update(high, low, close) -> float``.

    Parameters
    ----------
    window
        Smoothing period; ready after ``window + 1`` valid bars.
    """

    KIND = _kernels.ATR.name
    __slots__ = ()

    def __init__(self, *, window: int = 14) -> None:
        super().__init__(window=window)


class Bollinger(Stepper):
    """Bollinger bands on an SMA with population std, ``talib.BBANDS``.

    ``update(x) -> (mid, upper, lower, pctb, bandwidth)``.

    Parameters
    ----------
    window
        Number of values in the moving window.
    k
        Band half-width in standard deviations (``nbdevup = nbdevdn = k``).
    """

    KIND = _kernels.BOLLINGER.name
    __slots__ = ()

    def __init__(self, *, window: int = 20, k: float = 2.0) -> None:
        super().__init__(window=window, k=k)

    @property
    def mid(self) -> float:
        """Simple moving average after the last update."""
        return float(self._out[0])

    @property
    def upper(self) -> float:
        """``mid + k * std`` after the last update."""
        return float(self._out[1])

    @property
    def lower(self) -> float:
        """``mid - k * std`` after the last update."""
        return float(self._out[2])

    @property
    def pctb(self) -> float:
        """Position of the last value in the band, 0 at ``lower``, 1 at ``upper``."""
        return float(self._out[3])

    @property
    def bandwidth(self) -> float:
        """``(upper - lower) / mid`` after the last update."""
        return float(self._out[4])


class Stochastic(Stepper):
    """Slow stochastic %K/%D with simple averages, ``talib.STOCH`` (``STOCHF`` with ``smooth=1``).

    ``update(high, low, close) -> (k, d)``.

    Parameters
    ----------
    k_window
        Bars in the highest-high / lowest-low window.
    smooth
        SMA length applied to the raw %K (``slowk_period``).
    d_window
        SMA length of %D over the smoothed %K (``slowd_period``).
    """

    KIND = _kernels.STOCH.name
    __slots__ = ()

    def __init__(self, *, k_window: int = 14, smooth: int = 3, d_window: int = 3) -> None:
        super().__init__(k_window=k_window, smooth=smooth, d_window=d_window)

    @property
    def k(self) -> float:
        """Smoothed %K after the last update."""
        return float(self._out[0])

    @property
    def d(self) -> float:
        """%D after the last update."""
        return float(self._out[1])


class Vwap(Stepper):
    """Rolling volume-weighted average price; ``update(price, volume) -> float``.

    Parameters
    ----------
    window
        Number of events in the window; NaN while the window has no volume.
    """

    KIND = _kernels.VWAP.name
    __slots__ = ()

    def __init__(self, *, window: int = 20) -> None:
        super().__init__(window=window)


class SessionVwap(Stepper):
    """VWAP anchored at each session start; ``update(price, volume, time_seconds) -> float``.

    Parameters
    ----------
    session_seconds
        Session length (86400: UTC days).
    offset_seconds
        Session start relative to the epoch grid (e.g. 3600 * 13.5 for 13:30 UTC).
    right_closed
        True (default): sessions are ``(start, end]``, right for bars stamped at
        their close; False: ``[start, end)``.
    """

    KIND = _kernels.SESSION_VWAP.name
    __slots__ = ()

    def __init__(
        self, *, session_seconds: float = 86400.0, offset_seconds: float = 0.0, right_closed: bool = True
    ) -> None:
        super().__init__(session_seconds=session_seconds, offset_seconds=offset_seconds, right_closed=int(right_closed))


class Obv(Stepper):
    """On-balance volume, ``talib.OBV``; ``update(close, volume) -> float``."""

    KIND = _kernels.OBV.name
    __slots__ = ()

    def __init__(self) -> None:
        super().__init__()


class RealizedVol(Stepper):
    """Rolling realised volatility of log returns; ``update(price) -> float``.

    Parameters
    ----------
    window
        Number of returns summed; ready after ``window + 1`` valid prices.
    periods_per_year
        0 (default): ``sqrt(sum r**2)``; otherwise annualised as
        ``sqrt(sum r**2 * periods_per_year / window)``.
    """

    KIND = _kernels.REALIZED_VOL.name
    __slots__ = ()

    def __init__(self, *, window: int = 20, periods_per_year: float = 0.0) -> None:
        super().__init__(window=window, periods_per_year=periods_per_year)
