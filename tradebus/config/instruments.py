"""Instrument sections of a run config: tick, lot, fees, margin and contract terms."""

from __future__ import annotations

import math

from pydantic import Field, PositiveFloat, model_validator

from tradebus.config.base import StrictModel
from tradebus.engine.instrument import CloseFee, FeeTier, Instrument, InstrumentKind, MarginMode, MarginTier
from tradebus.errors import OrderError
from tradebus.execution.costs import MAX_FEE_RATE

__all__ = ["FeeTierConfig", "InstrumentConfig", "MarginTierConfig"]


class MarginTierConfig(StrictModel):
    """One maintenance bracket of a perpetual (see :class:`~tradebus.engine.instrument.MarginTier`).

    Exactly one cap: ``max_notional`` (Binance, Bybit: ``rate * notional - deduction``) or
    ``max_size`` in contracts (OKX: the tier's rate on the whole position).
    """

    max_notional: PositiveFloat | None = Field(default=None, allow_inf_nan=False)
    max_size: PositiveFloat | None = Field(default=None, allow_inf_nan=False)
    maintenance_rate: float = Field(ge=0.0, lt=1.0)
    max_leverage: float = Field(default=125.0, ge=1.0)

    @model_validator(mode="after")
    def _one_cap(self) -> MarginTierConfig:
        if (self.max_notional is None) == (self.max_size is None):
            raise ValueError("a margin tier has one cap: max_notional (by notional) or max_size (by contracts, OKX)")
        return self

    def to_tier(self) -> MarginTier:
        """The :class:`MarginTier` this config describes (the cap not given is infinite)."""
        return MarginTier(
            max_notional=math.inf if self.max_notional is None else self.max_notional,
            maintenance_rate=self.maintenance_rate,
            max_leverage=self.max_leverage,
            max_size=math.inf if self.max_size is None else self.max_size,
        )


class FeeTierConfig(StrictModel):
    """Fee rates from a trailing 30-day traded notional on (see :mod:`tradebus.execution.costs`)."""

    min_volume: float = Field(ge=0.0)
    maker_fee: float = Field(gt=-0.01, lt=MAX_FEE_RATE)
    taker_fee: float = Field(gt=-0.01, lt=MAX_FEE_RATE)


class InstrumentConfig(StrictModel):
    """One tradable instrument; becomes a :class:`~tradebus.engine.instrument.Instrument`.

    Fees are fractions of notional (0.001 = 10 bps), negative for a rebate. ``margin: true``
    marks a spot instrument as margin-enabled (it may be sold short and bought on credit);
    without it a spot instrument is cash-only (see :mod:`tradebus.account`). ``margin_tiers`` set
    every maintenance rate: a ``maintenance_rate`` other than its default beside them is refused.
    ``maintenance_close_fee`` unset: a perpetual takes its venue's rule
    (:func:`tradebus.adapters.registry.maintenance_close_fee`: Bybit's maintenance margin counts the
    fee to close at the bankruptcy price, OKX's the liquidation fee at the mark, Binance's none).
    ``liquidation_fee`` is charged only under the rule ``none``; set to another value than its default
    with another rule, it is refused.
    """

    venue: str = Field(min_length=1)
    symbol: str = Field(min_length=1)
    kind: InstrumentKind = InstrumentKind.SPOT
    base: str = ""
    quote: str = ""
    tick_size: float = Field(gt=0.0, allow_inf_nan=False)
    lot_size: float = Field(gt=0.0, allow_inf_nan=False)
    min_notional: float = Field(default=0.0, ge=0.0, allow_inf_nan=False)
    min_quantity: float = Field(default=0.0, ge=0.0, allow_inf_nan=False)
    maker_fee: float = Field(default=0.0, gt=-0.01, lt=MAX_FEE_RATE)
    taker_fee: float = Field(default=0.0, gt=-0.01, lt=MAX_FEE_RATE)
    margin: bool = False
    contract_size: float = Field(default=1.0, gt=0.0, allow_inf_nan=False)
    leverage: float = Field(default=1.0, ge=1.0, le=200.0)
    margin_mode: MarginMode = MarginMode.CROSS
    maintenance_rate: float = Field(default=0.005, ge=0.0, lt=1.0)
    margin_tiers: list[MarginTierConfig] = Field(default_factory=list)
    liquidation_fee: float = Field(default=0.005, ge=0.0, lt=1.0)
    maintenance_close_fee: CloseFee | None = None
    fee_tiers: list[FeeTierConfig] = Field(default_factory=list)

    @property
    def instrument_id(self) -> str:
        """``"{symbol}.{venue}"``."""
        return f"{self.symbol}.{self.venue}"

    def to_instrument(self) -> Instrument:
        """The :class:`Instrument` this config describes."""
        fields = self.model_dump(exclude={"margin_tiers", "fee_tiers"})
        if self.maintenance_close_fee is None:
            fields["maintenance_close_fee"] = CloseFee.NONE
            if self.kind == InstrumentKind.PERPETUAL:
                from tradebus.adapters.registry import maintenance_close_fee  # the venues import the config

                fields["maintenance_close_fee"] = maintenance_close_fee(self.venue)
        tiers = tuple(tier.to_tier() for tier in self.margin_tiers)
        fee_tiers = tuple(FeeTier(**tier.model_dump()) for tier in self.fee_tiers)
        return Instrument(**fields, margin_tiers=tiers, fee_tiers=fee_tiers)

    @model_validator(mode="after")
    def _valid_instrument(self) -> InstrumentConfig:
        try:
            rule = self.to_instrument().maintenance_close_fee
        except OrderError as exc:
            raise ValueError(str(exc)) from None
        # A written config (a run's config.yaml, serve --write-config) holds every field: the default is no choice.
        rate_default = type(self).model_fields["maintenance_rate"].default
        if self.margin_tiers and "maintenance_rate" in self.model_fields_set and self.maintenance_rate != rate_default:
            raise ValueError(
                f"instrument {self.instrument_id}: maintenance_rate {self.maintenance_rate:g} is not used: its "
                "margin_tiers set the maintenance rate of every position; remove maintenance_rate, or the tiers "
                "for one flat rate"
            )
        default = type(self).model_fields["liquidation_fee"].default
        if rule != CloseFee.NONE and "liquidation_fee" in self.model_fields_set and self.liquidation_fee != default:
            raise ValueError(
                f"instrument {self.instrument_id}: liquidation_fee {self.liquidation_fee:g} is not charged: its "
                f"maintenance_close_fee rule '{rule}' sets the liquidation's fee (mark: the taker fee on the "
                "notional at the mark, OKX; bankruptcy: the taker fee at the bankruptcy price, Bybit); remove "
                "liquidation_fee, or set maintenance_close_fee: none to charge it"
            )
        return self
