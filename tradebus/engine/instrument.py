"""Instruments: what can be traded, with the venue's increments and fees."""

from __future__ import annotations

import functools
import math
from enum import StrEnum

import msgspec

from tradebus.errors import OrderError

__all__ = ["Instrument", "InstrumentKind"]


class InstrumentKind(StrEnum):
    """Spot pair or perpetual swap."""

    SPOT = "spot"
    PERPETUAL = "perpetual"


class Instrument(msgspec.Struct, frozen=True, cache_hash=True):
    """A tradable instrument.

    Parameters
    ----------
    venue, symbol
        Venue name (``"BINANCE"``) and the venue's symbol (``"BTCUSDT"``).
        ``instrument_id`` is ``"{symbol}.{venue}"``.
    kind
        :class:`InstrumentKind`.
    base, quote
        Currencies; PnL and fees are in ``quote``.
    tick_size, lot_size
        Price and quantity increments (> 0).
    min_notional
        Smallest ``price * quantity`` an order may have (0 = none).
    maker_fee, taker_fee
        Fee rates as fractions of notional (0.001 = 10 bps); negative = rebate.
    min_quantity
        Smallest order quantity (defaults to one lot).
    margin
        The account trades this instrument on margin: it may be sold short and bought beyond
        the cash held (spot margin). Perpetuals are always margin-traded. A spot instrument
        without it is cash-only: buys need the quote asset, sells need the base asset held.
    """

    venue: str
    symbol: str
    kind: InstrumentKind = InstrumentKind.SPOT
    base: str = ""
    quote: str = ""
    tick_size: float = 0.01
    lot_size: float = 1e-8
    min_notional: float = 0.0
    maker_fee: float = 0.0
    taker_fee: float = 0.0
    min_quantity: float = 0.0
    margin: bool = False

    def __post_init__(self) -> None:
        for name in ("tick_size", "lot_size"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise OrderError(f"instrument {self.symbol}.{self.venue}: {name} must be > 0, got {value!r}")
        if self.min_notional < 0 or self.min_quantity < 0:
            raise OrderError(f"instrument {self.symbol}.{self.venue}: min_notional/min_quantity must be >= 0")

    @property
    def cash_only(self) -> bool:
        """True for a spot instrument without margin: the account must hold what it trades."""
        return self.kind == InstrumentKind.SPOT and not self.margin

    @property
    def instrument_id(self) -> str:
        """``"{symbol}.{venue}"``, the key used on every message."""
        return f"{self.symbol}.{self.venue}"

    def round_price(self, price: float) -> float:
        """Round a price to the nearest tick."""
        tick = self.tick_size
        return round(round(price / tick) * tick, _digits(tick))

    def round_price_up(self, price: float) -> float:
        """Round a price *up* to the tick grid (a buyer's price, rounded against the buyer).

        A price already on the grid up to float noise (``66506.000000001`` ticks) stays where it is.
        """
        tick = self.tick_size
        return round(math.ceil(price / tick - 1e-9) * tick, _digits(tick))

    def round_price_down(self, price: float) -> float:
        """Round a price *down* to the tick grid (a seller's price, rounded against the seller)."""
        tick = self.tick_size
        return round(math.floor(price / tick + 1e-9) * tick, _digits(tick))

    def round_quantity(self, quantity: float) -> float:
        """Round a quantity *down* to a whole number of lots (never trade more than asked)."""
        lot = self.lot_size
        return round(math.floor(quantity / lot + 1e-9) * lot, _digits(lot))

    def validate_order(self, quantity: float, price: float) -> str | None:
        """Return why an order of ``quantity`` at ``price`` is invalid, or ``None`` if it is valid.

        ``price`` may be NaN for market orders (min notional is then not checked).
        """
        if not (quantity > 0.0 and quantity < math.inf):
            return f"quantity {quantity!r} must be a positive finite number"
        lot = self.lot_size
        if quantity < max(self.min_quantity, lot) - 1e-12:
            return f"quantity {quantity} is below the minimum {max(self.min_quantity, lot)}"
        lots = quantity / lot
        if abs(lots - round(lots)) > 1e-6:
            return f"quantity {quantity} is not a multiple of the lot size {lot}"
        if price == price:
            if not (price > 0.0 and price < math.inf):
                return f"price {price!r} must be a positive finite number"
            ticks = price / self.tick_size
            if abs(ticks - round(ticks)) > 1e-6:
                return f"price {price} is not a multiple of the tick size {self.tick_size}"
            if price * quantity < self.min_notional - 1e-12:
                return f"notional {price * quantity} is below the minimum {self.min_notional}"
        return None


@functools.lru_cache(maxsize=256)
def _digits(increment: float) -> int:
    """Decimal digits that hold every multiple of ``increment`` without float noise.

    A few digits beyond the increment's own (0.01 -> 5, 0.25 -> 4, 5.0 -> 2), so that
    ``round(n * increment, _digits(increment))`` strips the noise of the multiplication
    (0.1 * 3 -> 0.30000000000000004 -> 0.3) and nothing else. Cached: every rounding asks.
    """
    decimals = max(0, -math.floor(math.log10(increment)) + 1) if increment < 1 else 0
    return decimals + 2
