"""Instruments: what can be traded, with the venue's increments and fees."""

from __future__ import annotations

import functools
import math
from enum import StrEnum

import msgspec

from tradebus.errors import OrderError

__all__ = [
    "DECIMAL_RTOL", "EXACT_GRID", "LOTS_RTOL", "ROUNDING_RTOL", "TICKS_RTOL", "CloseFee", "FeeTier", "Instrument", "InstrumentKind", "MarginMode", "MarginTier", "exact_decimal",
]

#: Float noise of a count of lots, relative to the count: ``quantity / lot`` of a quantity on the
#: lot grid misses its whole number by a few units in the last place (about 2e-16 of the count),
#: beyond an absolute 1e-9 once the count passes ~1e7 (0.1 of a coin at a lot of 1e-8).
LOTS_RTOL = 1e-14

#: The float noise of a count of lots alone: beyond 1e11 lots :meth:`Instrument.round_quantity` forgives
#: ``LOTS_RTOL`` of the count only up to 1e-3 of a lot or this, whichever is more. A decimal on the grid
#: is its nearest float (off by up to 2 ** -53 of it) and ``value * scale / m`` rounds twice more: the
#: count misses its whole number by at most 3 * 2 ** -53 of it, which this covers (2 to 4 units in the
#: last place of the count) and no more. ``LOTS_RTOL`` alone reached a whole lot past 1e14 lots
#: (2,000,000.00000001 at a lot of 1e-8 was rounded *up* to 2,000,000.00000003), and 2 ** -50 of the
#: count 0.009 of a tick at 1e13 ticks: 9,999,999.99999999, 0.01 of a 1e-6 tick below 10,000,000, was
#: rounded down to 10,000,000.0. Past 2 ** 51 / 100 steps (2.25e13) even this is a hundredth of a step,
#: where the floats themselves are that far apart (a unit in the last place of 500,000 is 0.006 of a 1e-8 tick).
ROUNDING_RTOL = 2.0**-51

#: A count ``n`` of lots (ticks) with ``n * m`` at or above this, ``m`` the grid's integer
#: (``increment = m / 10 ** digits``, :func:`grid_of`), is refused (:meth:`Instrument.validate_order`,
#: the risk gate, the accelerated tier): ``round(n * increment, digits)`` is the decimal
#: ``n * m / 10 ** digits`` only while the float noise of ``n * increment`` (up to 2 ** -52 of it)
#: stays below half its last digit (``n * m < 2 ** 51``), and beyond ``2 ** 46`` lots the slack a
#: quantity off the grid is told from (``ROUNDING_RTOL`` of the count) passes 1/32 of a lot
#: (703,687.44 coins in lots of 1e-8 or 70,368,744 in lots of 1e-6, m = 1).
EXACT_GRID = 2.0**46

#: The same float noise for a count of ticks, ``price / tick`` of a price on the tick grid
#: (750.66163 / 1e-5 is 75066162.99999999 ticks).
TICKS_RTOL = 1e-14


class InstrumentKind(StrEnum):
    """Spot pair or perpetual swap."""

    SPOT = "spot"
    PERPETUAL = "perpetual"


class MarginMode(StrEnum):
    """How a perpetual position is margined: the whole wallet backs it, or only its own margin."""

    CROSS = "cross"
    ISOLATED = "isolated"


class CloseFee(StrEnum):
    """The fee to close a perpetual position that its maintenance margin counts besides ``rate * N - amount``.

    ``NONE``: none (Binance USD-M); a liquidation closes at the mark charging ``liquidation_fee``.
    ``BANKRUPTCY``: the taker fee on the position's value at its bankruptcy price ``entry * (1 -
    1 / leverage)`` (a short: ``1 + 1 / leverage``), fixed while the position is (Bybit); a
    liquidation settles at the bankruptcy price charging that fee, the margin lost. ``MARK``: the
    taker fee on the notional at the mark (OKX's liquidation fee in its margin ratio); a
    liquidation closes at the mark charging that fee
    (:meth:`~tradebus.account.margin.MarginAccount.liquidation_closes`).
    """

    NONE = "none"
    BANKRUPTCY = "bankruptcy"
    MARK = "mark"


class MarginTier(msgspec.Struct, frozen=True):
    """One maintenance-margin bracket of a perpetual, by its venue's rule.

    The venues choose a position's tier and price its maintenance margin in two ways, and a tier
    says which by the cap it has (an instrument's tiers all have the same kind of cap):

    * ``max_notional`` (Binance ``leverageBracket``, Bybit risk limits): a position whose notional
      (at mark) is at most ``max_notional`` (and above the previous tier's) needs
      ``maintenance_rate * notional - maintenance_amount`` of maintenance margin.
      ``maintenance_amount`` (Binance ``cum``, Bybit ``mmDeduction``) is derived from the tiers
      below it, so the maintenance margin is continuous in the notional.
    * ``max_size`` (OKX position tiers, ``maxSz``), ``max_notional`` left infinite: a position of
      at most ``max_size`` contracts (its absolute quantity; above the previous tier's) needs
      ``maintenance_rate * notional``, the tier's rate on the whole position and no deduction: the
      maintenance margin jumps where the size crosses a tier, and a position's tier does not move
      with the price.

    Either way the position may use at most ``max_leverage``.
    """

    max_notional: float
    maintenance_rate: float
    max_leverage: float = 125.0
    max_size: float = math.inf


class FeeTier(msgspec.Struct, frozen=True):
    """Fee rates from a traded notional on (see :mod:`tradebus.execution.costs`); negative maker = rebate."""

    min_volume: float
    maker_fee: float
    taker_fee: float


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
        Price and quantity increments: decimals of at most nine significant digits (0.01, 0.5,
        1e-08; :func:`exact_decimal`), as every venue's are; 1/3 is refused.
    min_notional
        Smallest ``price * quantity`` an order may have (0 = none).
    maker_fee, taker_fee
        Fee rates as fractions of notional (0.001 = 10 bps); negative = rebate.
    min_quantity
        Smallest order quantity (defaults to one lot).
    margin
        The account trades this instrument on margin: it may be sold short and bought beyond
        the cash held (spot margin), within the initial margin ``notional / leverage`` of
        :class:`~tradebus.account.margin.MarginAccount`. Perpetuals are always margin-traded. A
        spot instrument without it is cash-only: buys need the quote asset, sells need the base
        asset held.
    contract_size
        Base units per unit of quantity of a perpetual (OKX ``ctVal``: BTC-USDT-SWAP trades
        contracts of 0.01 BTC; 1 for Binance/Bybit linear perpetuals, which trade in coins).
        Notional and PnL are ``quantity * contract_size * price``. Spot has no contracts (every
        venue lists spot in base units): a spot instrument must keep 1.
    leverage
        Leverage the account uses for this perpetual or margin spot instrument: initial margin
        is ``notional / leverage``. A cash-only instrument has none (1). ``1 / leverage`` may not be
        below the maintenance rate (of the first tier), or a position is liquidated as it opens.
    margin_mode
        :class:`MarginMode` of a perpetual's position (cross: the wallet backs every position;
        isolated: only the margin set aside when it opened). Margin spot is cross.
    maintenance_rate
        Maintenance margin rate of a perpetual without ``margin_tiers`` (0.005 = 0.5 %).
    margin_tiers
        Maintenance brackets, ascending (:class:`MarginTier`): all by notional (Binance, Bybit)
        or all by size in contracts (OKX, :attr:`tiered_by_size`); empty = one bracket at
        ``maintenance_rate``.
    liquidation_fee
        Fee rate charged on the notional of a liquidated position (the venue's clearance fee).
    maintenance_close_fee
        :class:`CloseFee` a perpetual's maintenance margin counts (its venue's rule; a backtest
        config takes the venue's, :mod:`tradebus.config.instruments`).
    fee_tiers
        Maker/taker rates by the trailing 30-day notional the run traded (:class:`FeeTier`,
        ascending ``min_volume``); below the first tier, ``maker_fee``/``taker_fee``.
    inverse
        A coin-margined (inverse) perpetual: a contract is worth ``contract_size`` units of
        ``quote`` (Binance COIN-M BTCUSD_PERP 100 USD, Bybit BTCUSD 1 USD), margin, PnL and fees
        are in ``base``, the notional is ``quantity * contract_size / price`` and PnL
        ``quantity * contract_size * (1 / entry - 1 / exit)``. Booked by
        :class:`~tradebus.account.margin.MarginAccount`; the portfolio ledger does not take it
        yet (:class:`~tradebus.engine.portfolio.Portfolio` refuses it).
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
    contract_size: float = 1.0
    leverage: float = 1.0
    margin_mode: MarginMode = MarginMode.CROSS
    maintenance_rate: float = 0.005
    margin_tiers: tuple[MarginTier, ...] = ()
    liquidation_fee: float = 0.005
    maintenance_close_fee: CloseFee = CloseFee.NONE
    fee_tiers: tuple[FeeTier, ...] = ()
    inverse: bool = False

    def __post_init__(self) -> None:
        for name in ("tick_size", "lot_size"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise OrderError(f"instrument {self.symbol}.{self.venue}: {name} must be > 0, got {value!r}")
            if not exact_decimal(value):
                raise OrderError(
                    f"instrument {self.symbol}.{self.venue}: {name} {value!r} is no decimal of at most "
                    f"{_DECIMAL_DIGITS} significant digits, as a venue's increments are (0.01, 0.5, 1e-08): orders "
                    "cannot be rounded onto its grid exactly"
                )
        if self.min_notional < 0 or self.min_quantity < 0:
            raise OrderError(f"instrument {self.symbol}.{self.venue}: min_notional/min_quantity must be >= 0")
        where = f"instrument {self.symbol}.{self.venue}"
        if not (self.contract_size > 0 and math.isfinite(self.contract_size)):
            raise OrderError(f"{where}: contract_size must be > 0, got {self.contract_size!r}")
        if not (self.leverage >= 1.0 and math.isfinite(self.leverage)):
            raise OrderError(f"{where}: leverage must be >= 1, got {self.leverage!r}")
        if not (0.0 <= self.maintenance_rate < 1.0 and 0.0 <= self.liquidation_fee < 1.0):
            raise OrderError(f"{where}: maintenance_rate and liquidation_fee must be fractions in [0, 1)")
        self._check_tiers(where)
        if self.inverse and self.kind != InstrumentKind.PERPETUAL:
            raise OrderError(f"{where}: inverse applies to perpetuals, not {self.kind}")
        if self.contract_size != 1.0 and self.kind == InstrumentKind.SPOT:
            raise OrderError(
                f"{where}: contract_size {self.contract_size:g} applies to perpetuals; a spot instrument trades "
                "base units (contract_size 1; set kind: perpetual for a swap traded in contracts)"
            )
        if self.maintenance_close_fee != CloseFee.NONE and self.kind != InstrumentKind.PERPETUAL:
            raise OrderError(f"{where}: maintenance_close_fee {self.maintenance_close_fee} applies to perpetuals")
        if self.margin_mode != MarginMode.CROSS and self.kind != InstrumentKind.PERPETUAL:
            raise OrderError(f"{where}: margin_mode {self.margin_mode} applies to perpetuals; margin spot is cross")
        if self.leverage != 1.0 and self.cash_only:
            raise OrderError(
                f"{where}: leverage {self.leverage:g} applies to perpetuals and margin spot; this spot instrument "
                "is cash-only (set margin: true to trade it on margin)"
            )
        if self.margin_tiers and self.leverage > self.margin_tiers[0].max_leverage:
            raise OrderError(
                f"{where}: leverage {self.leverage} exceeds the first margin tier's max_leverage "
                f"{self.margin_tiers[0].max_leverage}"
            )
        first_rate = self.margin_tiers[0].maintenance_rate if self.margin_tiers else self.maintenance_rate
        if not self.cash_only and 1.0 / self.leverage < first_rate:
            raise OrderError(
                f"{where}: leverage {self.leverage:g} holds an initial margin of {1.0 / self.leverage:.4%} of the "
                f"notional, below its maintenance rate {first_rate:.4%}: every position would be liquidated "
                f"as it opens (the largest leverage it allows is {1.0 / first_rate:g})"
            )

    @property
    def is_perpetual(self) -> bool:
        """True for a perpetual swap (margined, marked, funded)."""
        return self.kind == InstrumentKind.PERPETUAL

    def notional(self, quantity: float, price: float) -> float:
        """``quantity * contract_size * price`` (signed as ``quantity``)."""
        return quantity * self.contract_size * price

    def _check_tiers(self, where: str) -> None:
        """Refuse margin tiers of mixed caps, not ascending or of a rate out of [0, 1), and fee tiers not ascending,
        naming the tier (``margin_tiers.2``, as a config's path) and its values."""
        by_size = self.tiered_by_size
        cap = "max_size" if by_size else "max_notional"
        for n, tier in enumerate(self.margin_tiers):
            if (tier.max_size != math.inf) != by_size or (tier.max_notional != math.inf) == by_size:
                raise OrderError(
                    f"{where}: margin_tiers must each have a max_notional (tiers by notional) or each a max_size "
                    f"(tiers by contracts), not both: margin_tiers.0 has {_caps(self.margin_tiers[0])}, "
                    f"margin_tiers.{n} {_caps(tier)}"
                )
            if not 0.0 <= tier.maintenance_rate < 1.0:
                raise OrderError(
                    f"{where}: margin_tiers.{n}: maintenance_rate {tier.maintenance_rate!r} is not a fraction in [0, 1)"
                )
        for n, (lower, upper) in enumerate(zip(self.margin_tiers, self.margin_tiers[1:]), 1):
            if not getattr(upper, cap) > getattr(lower, cap):
                raise OrderError(
                    f"{where}: margin_tiers.{n}: {cap} {getattr(upper, cap):,.12g} is not above the "
                    f"{getattr(lower, cap):,.12g} of margin_tiers.{n - 1}: the tiers must have strictly ascending {cap}"
                )
        for n, (low, high) in enumerate(zip(self.fee_tiers, self.fee_tiers[1:]), 1):
            if not high.min_volume > low.min_volume:
                raise OrderError(
                    f"{where}: fee_tiers.{n}: min_volume {high.min_volume:,.12g} is not above the "
                    f"{low.min_volume:,.12g} of fee_tiers.{n - 1}: the tiers must have strictly ascending min_volume"
                )

    @property
    def tiered_by_size(self) -> bool:
        """Whether :attr:`margin_tiers` are by position size in contracts (OKX's rule, :class:`MarginTier`)."""
        return bool(self.margin_tiers) and self.margin_tiers[0].max_size != math.inf

    def maintenance_margin(self, notional: float, quantity: float = math.nan) -> float:
        """Maintenance margin of a position of absolute ``notional`` and ``quantity`` (tiered; see :class:`MarginTier`)."""
        rate, amount = self.maintenance_bracket(notional, quantity)
        return abs(notional) * rate - amount

    def maintenance_bracket(self, notional: float, quantity: float = math.nan) -> tuple[float, float]:
        """``(rate, amount)`` of the maintenance tier of a position of ``notional`` and ``quantity`` (amount 0 untiered).

        ``quantity`` (contracts, either sign) chooses the tier of tiers by size and is needed
        for them; tiers by notional use ``notional``. Beyond the last tier: the last tier's.

        Raises
        ------
        ValueError
            The tiers are by size and ``quantity`` is NaN.
        """
        notional = abs(notional)
        if not self.margin_tiers:
            return self.maintenance_rate, 0.0
        if self.tiered_by_size:
            if quantity != quantity:
                raise ValueError(f"instrument {self.instrument_id}: its margin tiers are by size; the quantity is needed")
            return self.margin_tier(notional, quantity).maintenance_rate, 0.0
        amount, floor, prev_rate = 0.0, 0.0, 0.0
        for tier in self.margin_tiers:
            amount += floor * (tier.maintenance_rate - prev_rate)
            if notional <= tier.max_notional:
                return tier.maintenance_rate, amount
            floor, prev_rate = tier.max_notional, tier.maintenance_rate
        return prev_rate, amount

    def margin_tier(self, notional: float, quantity: float) -> MarginTier:
        """The tier of a position of absolute ``notional`` and ``quantity`` contracts (beyond the last: the last).

        Tiers by notional compare ``notional`` with ``max_notional``; tiers by size ``|quantity|``
        with ``max_size``. The instrument must have tiers.
        """
        by_size = self.tiered_by_size
        measure = abs(quantity) if by_size else abs(notional)
        for tier in self.margin_tiers:
            if measure <= (tier.max_size if by_size else tier.max_notional):
                return tier
        return self.margin_tiers[-1]

    def within_tiers(self, notional: float, quantity: float) -> bool:
        """Whether a position of ``notional`` and ``quantity`` is within the last tier's cap (true untiered)."""
        if not self.margin_tiers:
            return True
        last = self.margin_tiers[-1]
        return abs(quantity) <= last.max_size if self.tiered_by_size else abs(notional) <= last.max_notional

    @property
    def cash_only(self) -> bool:
        """True for a spot instrument without margin: the account must hold what it trades."""
        return self.kind == InstrumentKind.SPOT and not self.margin

    @property
    def instrument_id(self) -> str:
        """``"{symbol}.{venue}"``, the key used on every message."""
        return f"{self.symbol}.{self.venue}"

    def round_price(self, price: float) -> float:
        """Round a price to the nearest tick, the ticks counted on the decimal grid (:func:`grid_of`)."""
        tick = self.tick_size
        m, scale = grid_of(tick)
        return round(round(price * scale / m) * tick, _digits(tick))

    def round_price_up(self, price: float) -> float:
        """Round a price *up* to the tick grid (a buyer's price, rounded against the buyer).

        A price already on the grid up to float noise (``66506.000000001`` ticks) stays where it is,
        however many ticks it counts; the noise forgiven is that of :meth:`round_quantity`
        (``TICKS_RTOL`` of the count, at most 1e-3 of a tick or ``ROUNDING_RTOL`` of the count):
        100,000,000,000.001 at a tick of 0.01, 0.1 of a tick above a line, is 100,000,000,000.01.
        The ticks are counted on the decimal the rounding puts the price on (:func:`grid_of`).
        """
        tick = self.tick_size
        m, scale = grid_of(tick)
        ticks = price * scale / m
        return round(math.ceil(ticks - _noise(abs(ticks), TICKS_RTOL)) * tick, _digits(tick))

    def round_price_down(self, price: float) -> float:
        """Round a price *down* to the tick grid (a seller's price, rounded against the seller).

        A price already on the grid up to float noise stays where it is, however many ticks it
        counts (750.66163 / 1e-5 is 75066162.99999999 ticks: 750.66163, not 750.66162); the noise
        forgiven is :meth:`round_price_up`'s.
        """
        tick = self.tick_size
        m, scale = grid_of(tick)
        ticks = price * scale / m
        return round(math.floor(ticks + _noise(abs(ticks), TICKS_RTOL)) * tick, _digits(tick))

    def round_quantity(self, quantity: float) -> float:
        """Round a quantity *down* to a whole number of lots (never trade more than asked).

        A quantity already on the grid up to float noise stays where it is, however many lots
        it counts (0.29 / 1e-8 is 28999999.999999996 lots: 0.29, not 0.28999999; 6.3 - 6.17256286
        is 0.12743713999999962: 0.12743714). The noise forgiven is ``LOTS_RTOL`` of the count (at
        least 1e-9 of a lot) but at most 1e-3 of a lot, or ``ROUNDING_RTOL`` of the count where that
        is more: the result is above the quantity by no more than that. The lots are counted on the
        decimal the rounding puts the quantity on (:func:`grid_of`), as :meth:`validate_order` counts them.
        """
        lot = self.lot_size
        m, scale = grid_of(lot)
        lots = quantity * scale / m
        return round(math.floor(lots + _noise(lots, LOTS_RTOL)) * lot, _digits(lot))

    def round_quantity_nearest(self, quantity: float) -> float:
        """Round a quantity to the *nearest* whole number of lots, counted on the decimal grid (:func:`grid_of`).

        A half lot rounds away from zero (0.25 at a lot of 0.1 is 0.3, 0.35 is 0.4), as hftbacktest's
        queue fill (Rust's ``f64::round``), not to the even count (Python's ``round``: 0.2 and 0.4). The
        result is the lot grid's decimal (0.3 at a lot of 0.1, not ``3 * 0.1``, 0.30000000000000004),
        where :meth:`round_quantity` rounds down.
        """
        lot = self.lot_size
        m, scale = grid_of(lot)
        lots = abs(quantity * scale / m)
        whole = math.floor(lots)
        if lots - whole >= 0.5:  # the fraction is exact in floats: a tie is seen as one
            whole += 1
        return round((whole if quantity >= 0.0 else -whole) * lot, _digits(lot))

    def exact_price_reason(self, price: float) -> str | None:
        """Why ``price`` cannot be rounded onto the tick grid exactly, or ``None`` if it can.

        Its count of ticks (either sign) times the grid's integer must stay below ``EXACT_GRID``;
        a NaN never does. The simulated venue refuses a slipped fill price that does not
        (:mod:`tradebus.execution.simulated`, "Prices"), as :meth:`validate_order` refuses such a limit price.
        """
        return _beyond_grid("price", price, "tick", self.tick_size)

    def price_grid_reason(self, price: float) -> str | None:
        """Why ``price`` is not on the tick grid (a multiple of ``tick_size`` up to float noise), or ``None``."""
        return _off_grid("price", price, "tick", self.tick_size, TICKS_RTOL)

    def validate_order(self, quantity: float, price: float) -> str | None:
        """Return why an order of ``quantity`` at ``price`` is invalid, or ``None`` if it is valid.

        ``price`` may be NaN for market orders (min notional is then not checked).
        """
        if not (quantity > 0.0 and quantity < math.inf):
            return f"quantity {quantity!r} must be a positive finite number"
        lot = self.lot_size
        minimum = max(self.min_quantity, lot)
        if quantity < minimum - max(1e-12, minimum * DECIMAL_RTOL):  # one lot of 10000.000000000004 is 10000.0
            return f"quantity {quantity} is below the minimum {minimum}"
        why = _off_grid("quantity", quantity, "lot", lot, LOTS_RTOL)
        if why is not None:
            return why
        if price == price:
            if not (price > 0.0 and price < math.inf):
                return f"price {price!r} must be a positive finite number"
            why = _off_grid("price", price, "tick", self.tick_size, TICKS_RTOL)
            if why is not None:
                return why
            notional = price * quantity * self.contract_size
            if notional < self.min_notional - 1e-12:
                return f"notional {notional} is below the minimum {self.min_notional}"
        return None


def _noise(count: float, rtol: float) -> float:
    """The float noise forgiven a ``count`` of lots (ticks) rounded onto its grid: ``rtol`` of it, at least
    1e-9, but at most 1e-3 or ``ROUNDING_RTOL`` of it, whichever is more (never a tenth of a step)."""
    return min(max(1e-9, count * rtol), max(1e-3, count * ROUNDING_RTOL))


def _off_grid(name: str, value: float, unit: str, increment: float, rtol: float) -> str | None:
    """Why ``value`` (a quantity in lots, a price in ticks) is off the grid of ``increment``, or ``None``.

    A count the grid cannot hold exactly (``EXACT_GRID``) is refused; otherwise the noise
    forgiven is ``rtol`` of the count (at least 1e-6 of a step), at most 1e-3 of a step or
    ``ROUNDING_RTOL`` of the count where that is more. The count is of the decimal ``m / scale``
    (:func:`grid_of`) the rounding puts values on, not of ``increment``: an increment a few units
    in its last place off its decimal (``0.1 ** 11``, 6 off 1e-11) drifts 0.05 of a step from it
    at ``2 ** 46`` steps.
    """
    why = _beyond_grid(name, value, unit, increment)
    if why is not None:
        return why
    m, scale = grid_of(increment)
    count = value * scale / m
    if abs(count - round(count)) > min(max(1e-6, count * rtol), max(1e-3, count * ROUNDING_RTOL)):
        return f"{name} {value} is not a multiple of the {unit} size {increment}"
    return None


def _beyond_grid(name: str, value: float, unit: str, increment: float) -> str | None:
    """Why ``value`` counts too many steps of ``increment`` (either sign, NaN too) to be rounded exactly, or ``None``."""
    count = value / increment
    m = grid_of(increment)[0]
    if not abs(count) * m < EXACT_GRID:
        return (
            f"{name} {value} is {count:.0f} {unit}s of {increment}, more than floats hold exactly on that grid "
            f"(below {EXACT_GRID / m:.0f} {unit}s: 2 ** 46 over the grid's integer {m:.0f})"
        )
    return None


@functools.lru_cache(maxsize=256)
def grid_of(increment: float) -> tuple[float, float]:
    """``(m, scale)`` with ``increment`` the decimal ``m / scale``, ``scale = 10 ** digits`` (:func:`_digits`).

    ``m`` is the nearest whole number to ``increment * scale``; whether that is exact is the
    caller's to check (an :class:`Instrument` and the accelerated tier refuse a grid where it is not).
    """
    scale = 10.0 ** _digits(increment)
    return float(round(increment * scale)), scale


#: How far (relative) ``increment * 10 ** digits`` may miss its whole number ``m`` for ``increment``
#: to be taken as the decimal ``m / 10 ** digits``: float noise only (``0.1 ** 5`` is
#: 1.0000000000000002e-05, 2e-16 of it off 1e-05). A tick of 0.10000004 (4e-7 off 0.1) is the decimal
#: of 8 digits it is, not 0.1.
DECIMAL_RTOL = 1e-12

#: Significant digits of the longest decimal :func:`_digits` looks for (``m`` below ``10 ** 9``):
#: within ``DECIMAL_RTOL`` of a decimal of more, every float is (1/3 is 0.3333333333333 to 1e-13).
_DECIMAL_DIGITS = 9


@functools.lru_cache(maxsize=256)
def _digits(increment: float) -> int:
    """Decimal digits that hold every multiple of ``increment`` without float noise.

    The increment's own: the fewest ``digits`` with ``increment * 10 ** digits`` a whole number
    of at most nine digits up to float noise (``DECIMAL_RTOL``; 0.01 -> 2, 0.25 -> 2, 5.0 -> 0,
    0.1000004 -> 7), so that ``round(n * increment, _digits(increment))`` strips the noise of the
    multiplication (0.1 * 3 -> 0.30000000000000004 -> 0.3) and nothing else. An increment that is
    no such decimal keeps two digits beyond its magnitude (1/3 -> 4; no grid is exact for it:
    :func:`exact_decimal` is false, an :class:`Instrument` refuses it). No digit more than its own: the
    noise of ``n * increment`` is stripped only below half the last digit kept, so each extra digit
    divides by ten the count of lots rounded exactly (1,125,899.9 coins of 1e-6 with three). Cached:
    every rounding asks.
    """
    for digits in range(0, 31):
        scaled = increment * 10.0**digits
        m = round(scaled)
        if m >= 10**_DECIMAL_DIGITS:
            break
        if m > 0 and abs(m - scaled) <= DECIMAL_RTOL * m:
            return digits
    return (max(0, -math.floor(math.log10(increment)) + 1) if increment < 1 else 0) + 2


def exact_decimal(increment: float) -> bool:
    """Whether ``increment`` is the decimal ``m / scale`` of :func:`grid_of` up to float noise (``DECIMAL_RTOL``).

    ``m`` has at most ``_DECIMAL_DIGITS`` digits, as :func:`_digits` looks for (an increment of 1e9
    and more is none).
    """
    m, scale = grid_of(increment)
    return scale <= 1e22 and 0 < m < 10**_DECIMAL_DIGITS and abs(m - increment * scale) <= DECIMAL_RTOL * m


def _caps(tier: MarginTier) -> str:
    """The caps ``tier`` has, as a config writes them (``max_notional 10,000``, ``no cap``)."""
    caps = [
        f"{name} {getattr(tier, name):,.12g}" for name in ("max_notional", "max_size") if getattr(tier, name) != math.inf
    ]
    return " and ".join(caps) or "no cap"
