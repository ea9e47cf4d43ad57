"""Slippage models and fee tiers of the simulated venue.

Slippage (``venue.slippage``; bars, trades and quotes)
    A taker fill is moved against the trader by a fraction of its price, rounded onto the
    tick grid against the trader and clamped to the order's limit; on a bar also to the
    bar's ``[low, high]``. The fraction, in basis points, comes from one model:

    ``fixed``
        ``bps``.
    ``volume`` (volume participation; impact grows with the order's share of the bar)
        ``bps + impact_bps * (quantity / bar volume) ** exponent``, at most ``max_bps``
        (``exponent`` 0.5 is the square-root law; 1 linear). A bar without volume costs
        ``max_bps``. A bar's volume is in base units, so an order in contracts counts
        ``quantity * contract_size``.
    ``volatility`` (volatility-scaled)
        ``bps + k * (high - low) / open * 10_000``, at most ``max_bps``: a fraction ``k`` of
        the bar's range.

    Both ``volume`` and ``volatility`` read the bar the order fills in (its volume and
    range), as zipline's volume-share model does: the cost of executing in that bar. No
    decision sees it, and the price stays within what the bar traded.

    On trades and quotes (:func:`tick_slippage_bps`) the same formulas read the event that
    fills the order: its *size* stands for the bar's volume (the trade's size; the quote's
    ask size for a buy, bid size for a sell), and its *range* for ``high - low`` (a quote's
    spread ``ask - bid``; for a trade, the move from the previous trade's price, 0 for the
    first), over the printed price. The printed price is the only price the event shows, so
    the slipped price is bounded by the order's limit only (a fixed 10 bps moves a market
    buy on a 100.00 print to 100.10).

Fee tiers (``Instrument.fee_tiers``)
    Maker and taker rates by the notional the run traded in the instrument over the
    trailing :data:`FEE_WINDOW_NS` (30 days) before the fill: the last tier whose
    ``min_volume`` that notional reaches applies (below the first: the instrument's own
    ``maker_fee``/``taker_fee``). A negative maker rate is a rebate (the fee is negative,
    it is paid to the trader). ``venue.maker_fee``/``taker_fee`` override every instrument
    and its tiers.
"""

from __future__ import annotations

from collections import deque
from typing import Literal

import msgspec
from pydantic import Field, model_validator

from tradebus.config.base import StrictModel
from tradebus.engine.instrument import Instrument

__all__ = ["FEE_WINDOW_NS", "MAX_FEE_RATE", "MAX_SLIPPAGE_BPS", "FeeSchedule", "SlippageConfig", "charged_fees", "slippage_bps", "tick_slippage_bps"]

#: Every slippage setting (``venue.slippage_bps``, a model's ``bps`` and ``max_bps``) is below this:
#: a sell slipped by 10,000 bps (100 %) or more has a price of 0 or less, which no fill can have.
MAX_SLIPPAGE_BPS = 10_000.0

#: Every fee rate (an instrument's and its tiers' ``maker_fee`` and ``taker_fee``, the venue's overrides, the
#: research costs' ``fee_bps`` / 10,000) is below this: 10 % of the notional, far above any venue's schedule.
MAX_FEE_RATE = 0.1

#: Trailing window of traded notional that selects a fee tier.
FEE_WINDOW_NS = 30 * 86_400_000_000_000


class SlippageConfig(StrictModel):
    """One slippage model (see the module docstring); amounts in basis points.

    ``bps`` and ``max_bps`` are below :data:`MAX_SLIPPAGE_BPS` (10,000), so a model's slippage
    (``bps`` for ``fixed``, at most ``max_bps`` for the others) leaves a sell a positive price.
    """

    model: Literal["fixed", "volume", "volatility"] = "fixed"
    bps: float = Field(default=0.0, ge=0.0, lt=MAX_SLIPPAGE_BPS, allow_inf_nan=False)
    impact_bps: float = Field(default=0.0, ge=0.0, allow_inf_nan=False)
    exponent: float = Field(default=0.5, gt=0.0, le=2.0)
    k: float = Field(default=0.0, ge=0.0, allow_inf_nan=False)
    max_bps: float = Field(default=500.0, gt=0.0, lt=MAX_SLIPPAGE_BPS, allow_inf_nan=False)

    @model_validator(mode="after")
    def _fields_of_its_model(self) -> SlippageConfig:
        if self.model != "volume" and self.impact_bps:
            raise ValueError(f"impact_bps belongs to the 'volume' model, not {self.model!r}")
        if self.model != "volatility" and self.k:
            raise ValueError(f"k belongs to the 'volatility' model, not {self.model!r}")
        return self


def slippage_bps(
    config: SlippageConfig, quantity: float, open_: float, high: float, low: float, volume: float
) -> float:
    """Slippage in basis points of a taker fill of ``quantity`` in a bar (module docstring)."""
    model = config.model
    if model == "fixed":
        return config.bps
    if model == "volume":
        if not volume > 0.0:
            return config.max_bps
        bps = config.bps + config.impact_bps * (quantity / volume) ** config.exponent
    else:
        bps = config.bps + config.k * (high - low) / open_ * 10_000.0 if open_ > 0.0 else config.max_bps
    return min(bps, config.max_bps)


def tick_slippage_bps(config: SlippageConfig, quantity: float, price: float, size: float, range_: float) -> float:
    """Slippage in basis points of a taker fill of ``quantity`` on a trade or quote (module docstring).

    ``size``: the event's size at the price the order takes; ``range_``: the quote's spread or
    the trade's move from the previous trade.
    """
    return slippage_bps(config, quantity, price, price + range_, price, size)


def charged_fees(instrument: Instrument, maker: float | None, taker: float | None) -> Instrument:
    """``instrument`` with the rates :class:`FeeSchedule` charges under the overrides ``maker`` and ``taker``
    (``venue.maker_fee``/``taker_fee``; ``None``: none): what the account's fee reserves, maintenance margin
    (its fee to close) and liquidation fee then count. Either override drops the tiers, as it does there."""
    if maker is None and taker is None:
        return instrument
    return msgspec.structs.replace(
        instrument,
        maker_fee=instrument.maker_fee if maker is None else maker,
        taker_fee=instrument.taker_fee if taker is None else taker,
        fee_tiers=(),
    )


class FeeSchedule:
    """Maker and taker rates of one instrument, by its trailing traded notional (module docstring).

    Parameters
    ----------
    instrument
        The instrument (its rates and ``fee_tiers``).
    maker, taker
        Overrides of every rate (``venue.maker_fee``/``taker_fee``), or ``None``.
    """

    __slots__ = ("_traded", "_volume", "maker", "taker", "tiers")

    def __init__(self, instrument: Instrument, maker: float | None, taker: float | None) -> None:
        self.maker = instrument.maker_fee if maker is None else maker
        self.taker = instrument.taker_fee if taker is None else taker
        self.tiers = () if maker is not None or taker is not None else instrument.fee_tiers
        self._traded: deque[tuple[int, float]] = deque()
        self._volume = 0.0

    def rates(self, ts: int) -> tuple[float, float]:
        """``(maker, taker)`` for a fill at ``ts``."""
        if not self.tiers:
            return self.maker, self.taker
        traded = self._traded
        horizon = ts - FEE_WINDOW_NS
        while traded and traded[0][0] <= horizon:
            self._volume -= traded.popleft()[1]
        maker, taker = self.maker, self.taker
        for tier in self.tiers:
            if self._volume >= tier.min_volume:
                maker, taker = tier.maker_fee, tier.taker_fee
        return maker, taker

    def record(self, ts: int, notional: float) -> None:
        """Count a fill's notional towards the tiers."""
        if self.tiers:
            self._traded.append((ts, notional))
            self._volume += notional
