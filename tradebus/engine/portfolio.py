"""Portfolio: netting positions, cash, fees, realised and unrealised PnL, equity.

Accounting (all amounts in the quote currency):

- ``cash`` starts at ``initial_cash``; a fill of signed quantity ``q = side * last_qty`` at
  ``px`` moves it by ``-q * px - fee`` (a buy pays its notional, a sell receives it).
- One netting position per instrument: quantity (signed) and average entry price. A fill on
  the position's side (or from flat) re-averages the entry; a fill against it realises
  ``closed * (px - avg) * sign(position)``; a fill larger than the position closes it
  (realising) and opens the rest on the other side at ``px`` (a flip).
- ``equity = cash + sum(position * last price)``; ``unrealized_pnl = sum(position * (last - avg))``.
  Hence ``equity - initial_cash == realized_pnl + unrealized_pnl - fees_paid`` exactly, up to
  float rounding.

The last price of an instrument is the latest :meth:`Portfolio.mark`; before the first mark
a fill's price stands in for it. Equity-curve sampling is the kernel's job.

Balances per asset and buying power are the account's (:attr:`Portfolio.account`, a
:class:`~tradebus.account.SpotCashAccount`); every fill booked here is booked there too.
Equity is in the *reporting currency*, the quote asset of the first instrument:

- ``cash`` is the sum of the quote-asset balances (every asset that is a quote asset and no
  instrument's base), each counted at par with the reporting currency (USDT and USDC as USD:
  no conversion rate is applied; the account keeps each one's balance separately);
- an initial balance of any other asset (``balances: {BTC: 0.5}``) is a *holding*, valued at
  the last price of an instrument whose base it is (quoted in the reporting currency if one
  is, else the first in instrument order), and 0 until that instrument is priced. Positions
  count only what the run traded, so with holdings
  ``equity - initial_cash - holdings_value == realized_pnl + unrealized_pnl - fees_paid``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from tradebus.account import Account, SpotCashAccount, asset_names
from tradebus.engine.instrument import Instrument
from tradebus.engine.messages import OrderFilled, PositionChanged
from tradebus.errors import ConfigError, OrderError

__all__ = ["Portfolio", "Position"]

_INF = math.inf


class Position:
    """Net position of one instrument (mutated only by :class:`Portfolio`)."""

    __slots__ = ("avg_price", "flat_eps", "instrument_id", "last_price", "quantity", "realized_pnl")

    def __init__(self, instrument_id: str, flat_eps: float) -> None:
        self.instrument_id = instrument_id
        self.quantity = 0.0
        self.avg_price = 0.0
        self.realized_pnl = 0.0
        self.last_price = math.nan
        self.flat_eps = flat_eps

    @property
    def unrealized_pnl(self) -> float:
        """``quantity * (last_price - avg_price)`` (0 when flat or never priced)."""
        if self.quantity == 0.0 or self.last_price != self.last_price:
            return 0.0
        return self.quantity * (self.last_price - self.avg_price)


class Portfolio:
    """Books fills and marks into positions, cash and equity.

    Parameters
    ----------
    instruments
        ``instrument_id -> Instrument`` of every tradable instrument.
    initial_cash
        Starting balance of the reporting currency (the first instrument's quote asset);
        ignored when ``balances`` is given.
    balances
        Starting ``asset -> amount`` of every asset (``{"USDT": 10000, "BTC": 0.5}``).
    """

    __slots__ = (
        "_fees",
        "_holdings",
        "_positions",
        "_realized",
        "account",
        "cash",
        "initial_cash",
        "instruments",
        "max_equity",
        "reporting_currency",
    )

    def __init__(
        self, instruments: dict[str, Instrument], initial_cash: float, balances: Mapping[str, float] | None = None
    ) -> None:
        if not math.isfinite(initial_cash):
            raise OrderError(f"portfolio: initial_cash must be finite, got {initial_cash!r}")
        if not instruments:
            raise ConfigError("portfolio: at least one instrument is required")
        self.instruments = instruments
        names = [asset_names(inst) for inst in instruments.values()]
        self.reporting_currency = names[0][1]
        start = {self.reporting_currency: float(initial_cash)} if balances is None else dict(balances)
        self.account: Account = SpotCashAccount(instruments, start)
        # A residual below a thousandth of a lot after a reduction is float noise: snap to flat.
        self._positions: dict[str, Position] = {
            iid: Position(iid, inst.lot_size * 1e-3) for iid, inst in instruments.items()
        }
        bases = {base for base, _ in names}
        cash = 0.0
        holdings: list[tuple[Position, float]] = []
        for asset, amount in start.items():
            if asset not in bases:
                cash += amount
            elif amount:
                pricing = [iid for iid, (base, _) in zip(instruments, names, strict=True) if base == asset]
                reported = [iid for iid in pricing if asset_names(instruments[iid])[1] == self.reporting_currency]
                holdings.append((self._positions[(reported or pricing)[0]], float(amount)))
        self._holdings = tuple(holdings)
        self.initial_cash = cash
        self.cash = cash
        self.max_equity = cash
        self._fees = 0.0
        self._realized = 0.0

    # ------------------------------------------------------------------ updates

    def apply_fill(self, fill: OrderFilled) -> PositionChanged:
        """Book a fill; return the instrument's new position.

        Raises
        ------
        OrderError
            Unknown instrument, or a non-positive / non-finite quantity or price, or a
            non-finite fee (nothing is booked then).
        """
        pos = self._positions.get(fill.instrument_id)
        qty = fill.last_qty
        px = fill.last_px
        fee = fill.fee
        if pos is None or not (qty > 0.0 and qty < _INF and px > 0.0 and px < _INF and abs(fee) < _INF):
            raise _bad_fill(fill, pos is None)
        signed = qty if fill.side > 0 else -qty
        self.cash -= signed * px + fee
        self.account.apply_fill(fill)
        self._fees += fee
        old = pos.quantity
        if old == 0.0 or (old > 0.0) == (signed > 0.0):
            new = old + signed
            pos.avg_price = (old * pos.avg_price + signed * px) / new
            pos.quantity = new
        else:
            closed = min(abs(signed), abs(old))
            pnl = closed * (px - pos.avg_price) if old > 0.0 else closed * (pos.avg_price - px)
            pos.realized_pnl += pnl
            self._realized += pnl
            new = old + signed
            if abs(new) <= pos.flat_eps:
                pos.quantity = 0.0
                pos.avg_price = 0.0
            else:
                if (new > 0.0) != (old > 0.0):
                    pos.avg_price = px  # flipped: the remainder opened at this fill
                pos.quantity = new
        if pos.last_price != pos.last_price:
            pos.last_price = px
        equity = self.cash  # self.equity(), inlined: this runs on every fill
        for p in self._positions.values():
            q = p.quantity
            if q != 0.0:
                equity += q * p.last_price
        if self._holdings:
            equity += self.holdings_value()
        if equity > self.max_equity:
            self.max_equity = equity
        return PositionChanged(
            fill.instrument_id, pos.quantity, pos.avg_price, pos.realized_pnl, fill.ts_event, fill.ts_init
        )

    def mark(self, instrument_id: str, price: float) -> None:
        """Set the last price of an instrument and update the equity peak.

        Non-finite or non-positive prices are ignored (a bad tick must not poison equity).
        """
        pos = self._positions.get(instrument_id)
        if pos is None or not (price > 0.0 and price < math.inf):
            return
        pos.last_price = price
        if pos.quantity != 0.0 or self._holdings:  # a flat instrument's price does not move equity
            equity = self.cash  # self.equity(), inlined: this runs on every mark
            for p in self._positions.values():
                q = p.quantity
                if q != 0.0:
                    equity += q * p.last_price
            if self._holdings:
                equity += self.holdings_value()
            if equity > self.max_equity:
                self.max_equity = equity

    # ------------------------------------------------------------------ queries

    def position(self, instrument_id: str) -> float:
        """Signed net quantity (0.0 for an unknown or flat instrument)."""
        pos = self._positions.get(instrument_id)
        return 0.0 if pos is None else pos.quantity

    def avg_price(self, instrument_id: str) -> float:
        """Average entry price of the open position (0.0 when flat)."""
        pos = self._positions.get(instrument_id)
        return 0.0 if pos is None else pos.avg_price

    def last_price(self, instrument_id: str) -> float:
        """Last mark (or fill price before any mark); NaN if never priced."""
        pos = self._positions.get(instrument_id)
        return math.nan if pos is None else pos.last_price

    def position_state(self, instrument_id: str) -> Position:
        """The live :class:`Position` record of an instrument (read it, don't change it).

        Raises
        ------
        OrderError
            If the instrument is unknown.
        """
        pos = self._positions.get(instrument_id)
        if pos is None:
            raise OrderError(f"portfolio: unknown instrument {instrument_id!r}")
        return pos

    def positions(self) -> dict[str, float]:
        """``instrument_id -> signed quantity`` of every non-flat position."""
        return {iid: p.quantity for iid, p in self._positions.items() if p.quantity != 0.0}

    @property
    def realized_pnl(self) -> float:
        """Realised PnL of all instruments, before fees."""
        return self._realized

    @property
    def fees_paid(self) -> float:
        """Total fees paid (negative if rebates exceeded fees)."""
        return self._fees

    def unrealized_pnl(self) -> float:
        """Sum of the open positions' ``quantity * (last - avg)``."""
        total = 0.0
        for pos in self._positions.values():
            if pos.quantity != 0.0:
                total += pos.unrealized_pnl
        return total

    def holdings_value(self) -> float:
        """Value of the initial holdings of non-cash assets at their last prices (0 while unpriced)."""
        total = 0.0
        for pos, amount in self._holdings:
            if pos.last_price == pos.last_price:
                total += amount * pos.last_price
        return total

    @property
    def has_holdings(self) -> bool:
        """Whether the portfolio started with a balance of a non-cash asset."""
        return bool(self._holdings)

    def equity(self) -> float:
        """``cash + sum(position * last price) + holdings_value()``."""
        total = self.cash
        for pos in self._positions.values():
            q = pos.quantity
            if q != 0.0:
                total += q * pos.last_price
        if self._holdings:
            total += self.holdings_value()
        return total

    def drawdown(self) -> float:
        """Drawdown of equity from its peak, as a fraction (0.25 = 25 %); 0 at a new peak."""
        peak = self.max_equity
        if peak <= 0.0:
            return 0.0
        dd = (peak - self.equity()) / peak
        return dd if dd > 0.0 else 0.0


def _bad_fill(fill: OrderFilled, unknown: bool) -> OrderError:
    """The error of a fill :meth:`Portfolio.apply_fill` refuses."""
    where = f"portfolio: fill {fill.trade_id!r} of order {fill.client_order_id}"
    if unknown:
        return OrderError(f"{where} is for unknown instrument {fill.instrument_id!r}")
    return OrderError(f"{where} has invalid qty={fill.last_qty!r} px={fill.last_px!r} fee={fill.fee!r}")
