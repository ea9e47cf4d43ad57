"""Portfolio: netting positions, cash, fees, realised and unrealised PnL, equity.

Accounting (all amounts in the quote currency):

- ``cash`` starts at ``initial_cash``; a fill of signed quantity ``q = side * last_qty`` at
  ``px`` moves it by ``-q * c * px - fee`` (a buy pays its notional, a sell receives it), where
  ``c`` is the instrument's ``contract_size`` (1 but for contracts such as OKX swaps); every
  notional and PnL below is multiplied by ``c``.
- A fee charged in another asset than the quote (``OrderFilled.fee_asset``) counts in
  ``fees_paid`` at its value in the quote currency when the fill is booked
  (:meth:`Portfolio.fee_value`: the base asset at the fill price, a third asset such as BNB at
  the last price of the run's instrument trading it against the same quote); a third-asset
  fee no instrument prices is left out of cash and ``fees_paid`` and counted in
  :attr:`Portfolio.fees_unvalued`, in its own asset.
- A fee charged in the base asset of an instrument of the run other than the fill's own
  spot base (BNB on a ``BTCUSDT`` fill beside ``BNBUSDT``) is that asset leaving the account:
  the holding of it (:meth:`Portfolio.holding`) falls by the fee, as the account's balance
  does, and cash moves by the notional alone. Equity then values the fee's coins at the
  asset's current price, as it values the rest of the holding.
- A spot fill whose fee ``f`` was charged in its base asset (a Binance buy receiving
  ``q - f`` coins) moves the position as the venue moves the base-asset balance, by
  ``q - f`` (a sell: by ``-(q + f)``), at ``px``, and cash by the notional ``-q * px``
  alone: the fee counts once, in ``fees_paid`` at ``f * px``, and the identities below hold.
- A funding settlement (:meth:`Portfolio.apply_funding`) moves cash by ``-q * c * mark * rate``.
- A charge of borrowing interest (:meth:`Portfolio.charge_interest`, margin spot loans, see
  :mod:`tradebus.engine.interest`) moves cash by ``-interest``.
- One netting position per instrument: quantity (signed) and average entry price. A fill on
  the position's side (or from flat) re-averages the entry; a fill against it realises
  ``closed * (px - avg) * sign(position)``; a fill larger than the position closes it
  (realising) and opens the rest on the other side at ``px`` (a flip).
- ``equity = cash + sum(position * c * last price)``; ``unrealized_pnl = sum(position * c * (last - avg))``.
  Hence ``equity - initial_cash == realized_pnl + unrealized_pnl - fees_paid - funding_paid -
  interest_paid`` exactly, up to float rounding.

The last price of an instrument is the latest :meth:`Portfolio.mark`; before the first mark
a fill's price stands in for it. Once an instrument gets a venue mark price
(:meth:`Portfolio.mark_price`, from ``MarkPrice`` messages) only mark prices value it. Equity-curve sampling is the kernel's job.

Balances per asset and buying power are the account's (:attr:`Portfolio.account`, a
:class:`~tradebus.account.SpotCashAccount`, or a :class:`~tradebus.account.MarginAccount`
when any instrument is a perpetual or margin spot); every fill booked here is booked there too.
Equity is in the *reporting currency*, the quote asset of the first instrument:

- ``cash`` is the sum of the quote-asset balances (every asset that is a quote asset and no
  instrument's base), each counted at par with the reporting currency (USDT and USDC as USD:
  no conversion rate is applied; the account keeps each one's balance separately); an
  instrument quoted in another instrument's base (ETH-BTC beside BTC-USD) is refused, as no
  rate would turn its amounts into the reporting currency, and so is one quoted in an asset
  not at par with the reporting currency (ETH-BTC beside ETH-USDT, BTC-EUR beside BTC-USD:
  only the assets of :data:`USD_AT_PAR` are at par with one another);
- an initial balance of an asset the venue charges fees in that no instrument trades
  (``fee_assets``, ``balances: {BNB: 1}`` on a live Binance account) is the account's alone,
  in neither cash nor equity;
- an initial balance of any other asset (``balances: {BTC: 0.5}``) is a *holding*, valued at
  the last price of an instrument whose base it is (quoted in the reporting currency if one
  is, else the first in instrument order), and 0 until that instrument is priced
  (:meth:`Portfolio.unpriced_holdings`; the kernel's first equity sample waits for them). Positions
  count only what the run traded, so with holdings
  ``equity - initial_cash - holdings_value == realized_pnl + unrealized_pnl - fees_paid``,
  where ``fees_paid`` leaves out the fees paid out of a holding (the item above: the
  holding, and so ``holdings_value``, fell by them instead).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from loguru import logger

from tradebus.account import Account, MarginAccount, SpotCashAccount, asset_names
from tradebus.account.spot import settle
from tradebus.engine.instrument import Instrument
from tradebus.engine.messages import OrderFilled, PositionChanged
from tradebus.errors import ConfigError, OrderError

__all__ = ["USD_AT_PAR", "Portfolio", "Position"]

_INF = math.inf

#: Quote assets the ledger counts at par with one another: the US dollar and its stablecoins.
USD_AT_PAR = frozenset({"USD", "USDT", "USDC", "BUSD", "FDUSD", "TUSD", "USDP", "DAI", "USDE"})


class Position:
    """Net position of one instrument (mutated only by :class:`Portfolio`)."""

    __slots__ = (
        "avg_price",
        "contract_size",
        "flat_eps",
        "funding",
        "has_mark",
        "instrument_id",
        "last_price",
        "quantity",
        "realized_pnl",
    )

    def __init__(self, instrument_id: str, flat_eps: float, contract_size: float = 1.0) -> None:
        self.instrument_id = instrument_id
        self.quantity = 0.0
        self.avg_price = 0.0
        self.realized_pnl = 0.0
        self.last_price = math.nan
        self.flat_eps = flat_eps
        self.contract_size = contract_size
        self.funding = 0.0  # funding paid on this instrument (negative: received)
        self.has_mark = False  # valued at MarkPrice messages, no longer at trades and bars

    @property
    def unrealized_pnl(self) -> float:
        """``quantity * contract_size * (last_price - avg_price)`` (0 when flat or never priced)."""
        if self.quantity == 0.0 or self.last_price != self.last_price:
            return 0.0
        return self.quantity * self.contract_size * (self.last_price - self.avg_price)

    @property
    def value(self) -> float:
        """``quantity * contract_size * last_price`` (NaN if never priced)."""
        return self.quantity * self.contract_size * self.last_price


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
    fee_assets
        Assets no instrument trades that the venue charges fees in (``BNB``): their balances
        are the account's, in their own asset, and count in neither cash nor equity (as the
        fees charged in them, :attr:`fees_unvalued`).
    """

    __slots__ = (
        "_fee_pricing",
        "_fees",
        "_fees_unvalued",
        "_funding",
        "_held",
        "_holding_pricing",
        "_holdings",
        "_initial_holdings",
        "_interest",
        "_positions",
        "_realized",
        "_spot_positions",
        "account",
        "cash",
        "initial_cash",
        "instruments",
        "max_equity",
        "reporting_currency",
    )

    def __init__(
        self,
        instruments: dict[str, Instrument],
        initial_cash: float,
        balances: Mapping[str, float] | None = None,
        fee_assets: Iterable[str] = (),
    ) -> None:
        if not math.isfinite(initial_cash):
            raise OrderError(f"portfolio: initial_cash must be finite, got {initial_cash!r}")
        if not instruments:
            raise ConfigError("portfolio: at least one instrument is required")
        for iid, inst in instruments.items():
            if inst.inverse:
                raise ConfigError(
                    f"portfolio: {iid} is an inverse (coin-margined) contract; the margin account books "
                    "those, but the portfolio ledger, the simulated venue's fees and the reports are "
                    "linear only: a run cannot trade it yet"
                )
        self.instruments = instruments
        names = [asset_names(inst) for inst in instruments.values()]
        self.reporting_currency = names[0][1]
        priced = {base: iid for iid, (base, _) in zip(instruments, names, strict=True)}
        for iid, (_, quote) in zip(instruments, names, strict=True):
            if quote in priced:
                raise ConfigError(
                    f"portfolio: {iid} is quoted in {quote}, the base asset of {priced[quote]}; the ledger counts "
                    f"every quote amount at par with the reporting currency {self.reporting_currency} (no "
                    f"conversion), so its PnL, fees and cash would be {quote} amounts added as "
                    f"{self.reporting_currency}: a run cannot trade it beside {priced[quote]} yet"
                )
        reporting = self.reporting_currency
        first = next(iter(instruments))
        for iid, inst in instruments.items():
            quote = inst.quote
            # an instrument naming no quote asset has the placeholder: the ledger cannot tell, as before
            if quote and instruments[first].quote and not _at_par(quote, reporting):
                raise ConfigError(
                    f"portfolio: {iid} is quoted in {quote}, and no instrument of the run prices {quote} in the "
                    f"reporting currency {reporting} (the quote asset of the first instrument, {first}); the ledger "
                    f"counts quote amounts at par (only the US dollar and its stablecoins are at par with one "
                    f"another), so its cash, PnL and fees would be {quote} amounts added as {reporting}: a run "
                    f"cannot trade it beside {first} yet"
                )
        start = {self.reporting_currency: float(initial_cash)} if balances is None else dict(balances)
        # A residual below a thousandth of a lot after a reduction is float noise: snap to flat.
        self._positions: dict[str, Position] = {
            iid: Position(iid, inst.lot_size * 1e-3, inst.contract_size) for iid, inst in instruments.items()
        }
        fee_assets = frozenset(fee_assets)
        self.account: Account = (
            MarginAccount(instruments, start, self._positions, fee_assets)
            if not all(inst.cash_only for inst in instruments.values())
            else SpotCashAccount(instruments, start, fee_assets=fee_assets)
        )
        quotes = {quote for _, quote in names}
        # base asset -> the position whose last price values a holding of it
        self._holding_pricing: dict[str, Position] = {}
        for base in dict.fromkeys(base for base, _ in names):
            pricing = [iid for iid, (b, _) in zip(instruments, names, strict=True) if b == base]
            reported = [iid for iid in pricing if asset_names(instruments[iid])[1] == self.reporting_currency]
            self._holding_pricing[base] = self._positions[(reported or pricing)[0]]
        cash = 0.0
        # asset -> [position valuing it, amount held now]: the initial holdings less the fees paid out of them
        self._held: dict[str, list] = {}
        for asset, amount in start.items():
            if asset in fee_assets and asset not in self._holding_pricing and asset not in quotes:
                continue  # no instrument prices it: the account's alone
            if asset not in self._holding_pricing:
                cash += amount
            elif amount:
                self._held[asset] = [self._holding_pricing[asset], float(amount)]
        self._holdings: list[list] = list(self._held.values())
        # base asset -> the positions of the cash-only instruments trading it
        self._spot_positions: dict[str, tuple[Position, ...]] = {}
        for iid, (base, _) in zip(instruments, names, strict=True):
            if instruments[iid].cash_only:
                self._spot_positions[base] = (*self._spot_positions.get(base, ()), self._positions[iid])
        self._initial_holdings: dict[str, float] = {}
        for pos, amount in self._holdings:
            self._initial_holdings[pos.instrument_id] = self._initial_holdings.get(pos.instrument_id, 0.0) + amount
        self.initial_cash = cash
        self.cash = cash
        self.max_equity = cash
        self._fees = 0.0
        self._funding = 0.0
        self._interest = 0.0
        self._realized = 0.0
        # (fee asset, quote asset) -> the position whose last price values that asset (None: none)
        self._fee_pricing: dict[tuple[str, str], Position | None] = {}
        self._fees_unvalued: dict[str, float] = {}

    # ------------------------------------------------------------------ updates

    def apply_fill(self, fill: OrderFilled) -> PositionChanged:
        """Book a fill; return the instrument's new position.

        Raises
        ------
        OrderError
            Unknown instrument, or a non-positive / non-finite quantity or price, or a
            non-finite fee (nothing is booked then).
        """
        pos = self.book_fill(fill)
        return PositionChanged(
            fill.instrument_id, pos.quantity, pos.avg_price, pos.realized_pnl, fill.ts_event, fill.ts_init
        )

    def book_fill(self, fill: OrderFilled) -> Position:
        """Book a fill like :meth:`apply_fill`; return the live :class:`Position` instead of an event.

        For a caller that builds ``PositionChanged`` only when something receives it.

        Raises
        ------
        OrderError
            As :meth:`apply_fill`.
        """
        pos = self._positions.get(fill.instrument_id)
        qty = fill.last_qty
        px = fill.last_px
        fee = fill.fee
        if pos is None or not (qty > 0.0 and qty < _INF and px > 0.0 and px < _INF and -_INF < fee < _INF):
            raise _bad_fill(fill, pos is None)
        signed = qty if fill.side > 0 else -qty
        cs = pos.contract_size
        # settle: a fill of exactly the cash left leaves 0.0, as the account's balance of it
        if not fill.fee_asset:
            self.cash = settle(self.cash, -(signed * cs * px + fee))
        else:
            fee = self._book_fee(fill)
            in_kind = self.fee_in_kind(fill)
            if in_kind:
                # paid out of the coins bought (or with more coins sold): cash moves by the notional
                # alone, the position by what the base-asset balance moves
                self.cash = settle(self.cash, -(signed * cs * px))
                signed -= in_kind
            elif fill.fee_asset in self._holding_pricing:
                # coins of an asset the run prices (BNB beside BNBUSDT) leave the holding; cash pays the notional
                self.cash = settle(self.cash, -(signed * cs * px))
                self._pay_from_holding(fill.fee_asset, fill.fee)
            else:
                self.cash = settle(self.cash, -(signed * cs * px + fee))
        self.account.apply_fill(fill)
        self._fees += fee
        old = pos.quantity
        if old == 0.0 or (old > 0.0) == (signed > 0.0):
            new = old + signed
            pos.avg_price = (old * pos.avg_price + signed * px) / new
            pos.quantity = new
        else:
            # min(abs(signed), abs(old)) without the builtin calls (neither is 0 or NaN here)
            closed = signed if signed > 0.0 else -signed
            if (old if old > 0.0 else -old) < closed:
                closed = old if old > 0.0 else -old
            pnl = cs * (closed * (px - pos.avg_price) if old > 0.0 else closed * (pos.avg_price - px))
            pos.realized_pnl += pnl
            self._realized += pnl
            new = old + signed
            if -pos.flat_eps <= new <= pos.flat_eps:
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
                equity += q * p.contract_size * p.last_price
        if self._holdings:
            equity += self.holdings_value()
        if equity > self.max_equity:
            self.max_equity = equity
        return pos

    def fee_value(self, fill: OrderFilled) -> float:
        """A fill's fee in its instrument's quote currency at the time of the fill: what ``fees_paid`` and the reports count.

        A fee in the quote asset (``fee_asset`` empty) is itself; one in the base asset is
        valued at the fill price; one in a third asset (BNB) at the last price of an instrument
        of the run that trades it against the same quote asset (``BNBUSDT`` for a ``BTCUSDT``
        fill), and at 0 when the run has none or it has no price yet: such a fee is counted
        in :attr:`fees_unvalued`, in its own asset, instead of being mixed into the quote
        currency's sums.
        """
        asset = fill.fee_asset
        inst = self.instruments.get(fill.instrument_id)
        if not asset or inst is None:
            return fill.fee
        base, quote = asset_names(inst)
        if asset == quote:
            return fill.fee
        if asset == base:
            return fill.fee * fill.last_px
        pricing = self._pricing(asset, quote)
        if pricing is None or pricing.last_price != pricing.last_price:
            return 0.0
        return fill.fee * pricing.last_price

    @property
    def fees_unvalued(self) -> dict[str, float]:
        """``asset -> fees`` charged in an asset no instrument of the run priced when they were booked (not in :attr:`fees_paid`)."""
        return dict(self._fees_unvalued)

    def _pricing(self, asset: str, quote: str) -> Position | None:
        key = (asset, quote)
        if key not in self._fee_pricing:
            self._fee_pricing[key] = next(
                (self._positions[iid] for iid, inst in self.instruments.items() if asset_names(inst) == key), None
            )
        return self._fee_pricing[key]

    def fee_in_kind(self, fill: OrderFilled) -> float:
        """The fee a spot fill paid in its base asset (0 when charged in any other asset).

        The position moves by the fill's signed quantity less this amount, as the venue's
        base-asset balance does (a Binance buy of 0.01 BTC paying 0.00001 BTC holds 0.00999).
        A perpetual's fee in its base asset, were a venue to charge one, changes no position.
        """
        asset = fill.fee_asset
        if not asset:
            return 0.0
        inst = self.instruments.get(fill.instrument_id)
        if inst is None or inst.is_perpetual or asset != asset_names(inst)[0]:
            return 0.0
        return fill.fee

    def _book_fee(self, fill: OrderFilled) -> float:
        """:meth:`fee_value` of a fill charged in ``fill.fee_asset``; a fee it cannot value goes to :attr:`fees_unvalued`."""
        value = self.fee_value(fill)
        asset = fill.fee_asset
        if value == 0.0 and fill.fee != 0.0 and asset not in asset_names(self.instruments[fill.instrument_id]):
            if asset not in self._fees_unvalued:
                logger.warning(
                    "portfolio: fill {} of {} paid its fee in {}, which no instrument of the run prices in {}: "
                    "the fee is counted in {} (fees_unvalued), not in fees_paid",
                    fill.trade_id, fill.instrument_id, asset, asset_names(self.instruments[fill.instrument_id])[1], asset,
                )
            self._fees_unvalued[asset] = self._fees_unvalued.get(asset, 0.0) + fill.fee
        return value

    def _pay_from_holding(self, asset: str, amount: float) -> None:
        """Lower the holding of ``asset`` by ``amount`` (a fee paid in it), as the account lowers its balance."""
        held = self._held.get(asset)
        if held is None:
            held = self._held[asset] = [self._holding_pricing[asset], 0.0]
            self._holdings.append(held)
        held[1] -= amount

    def mark(self, instrument_id: str, price: float) -> None:
        """Set the last price of an instrument and update the equity peak.

        Non-finite or non-positive prices are ignored (a bad tick must not poison equity).
        """
        pos = self._positions.get(instrument_id)
        if pos is None or not (price > 0.0 and price < math.inf) or pos.has_mark:
            return
        self._set_price(pos, price)

    def mark_moved(self, prices: Mapping[str, float]) -> list[tuple[str, float]]:
        """Set the last prices that moved, then update the equity peak once; return the moved ones.

        :meth:`mark` for every price of ``prices`` (each instrument's latest price, keyed by
        instruments of this portfolio) that differs from its position's last price, except
        that the peak is taken only at the final prices (a mix of new and old prices part-way
        through is no state the market was in). Each returned pair differs from its position's
        last price, even where the price is not taken (non-finite or non-positive); a position
        valued at mark prices returns its price every time (its last price is the mark, so a
        price equal to the mark says nothing of whether the caller has heard that price).
        """
        moved: list[tuple[str, float]] = []
        held = False
        positions = self._positions
        for instrument_id, price in prices.items():
            pos = positions[instrument_id]
            if pos.last_price != price or pos.has_mark:
                moved.append((instrument_id, price))
                if price > 0.0 and price < math.inf and not pos.has_mark:
                    pos.last_price = price
                    if pos.quantity != 0.0:
                        held = True
        if moved and (held or self._holdings):
            equity = self.equity()
            if equity > self.max_equity:
                self.max_equity = equity
        return moved

    def mark_price(self, instrument_id: str, price: float) -> None:
        """Value an instrument at a venue mark price from now on (trades and bars no longer mark it).

        Non-finite or non-positive prices are ignored.
        """
        pos = self._positions.get(instrument_id)
        if pos is None or not (price > 0.0 and price < math.inf):
            return
        pos.has_mark = True
        self._set_price(pos, price)

    def apply_funding(self, instrument_id: str, rate: float, mark: float | None = None) -> float:
        """Settle one funding of ``rate`` on the position at ``mark`` (``None``: its mark now); return the payment.

        The payment is ``quantity * contract_size * mark * rate``: a long pays a positive rate
        and a short receives it. It is debited from cash (and the account's wallet) and added to
        :attr:`funding_paid`. 0 when flat, never priced, or ``rate`` is not finite.
        """
        pos = self._positions.get(instrument_id)
        if mark is None:
            mark = math.nan if pos is None else pos.last_price
        if pos is None or pos.quantity == 0.0 or mark != mark or not math.isfinite(rate):
            return 0.0
        payment = pos.quantity * pos.contract_size * mark * rate
        self.pay_funding(instrument_id, payment)
        return payment

    def pay_funding(self, instrument_id: str, payment: float) -> None:
        """Debit a funding ``payment`` (negative: received) of an instrument from cash and the account's wallet.

        Added to :attr:`funding_paid` (a journaled payment replayed; :meth:`apply_funding` computes one).
        """
        self.cash -= payment
        self._funding += payment
        pos = self._positions.get(instrument_id)
        if pos is not None:
            pos.funding += payment
        self.account.apply_funding(instrument_id, payment)

    def charge_interest(self, asset: str, amount: float) -> None:
        """Debit borrowing interest ``amount`` of quote asset ``asset`` from cash and the account's wallet.

        Added to :attr:`interest_paid`; the account must be a
        :class:`~tradebus.account.MarginAccount` (only margin spot instruments borrow).
        """
        account = self.account
        assert isinstance(account, MarginAccount)
        self.cash -= amount
        self._interest += amount
        account.charge_interest(asset, amount)

    def _set_price(self, pos: Position, price: float) -> None:
        pos.last_price = price
        if pos.quantity != 0.0 or self._holdings:  # a flat instrument's price does not move equity
            equity = self.cash  # self.equity(), inlined: this runs on every mark
            for p in self._positions.values():
                q = p.quantity
                if q != 0.0:
                    equity += q * p.contract_size * p.last_price
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
    def funding_paid(self) -> float:
        """Total funding paid (negative if more was received than paid)."""
        return self._funding

    @property
    def interest_paid(self) -> float:
        """Total borrowing interest charged (margin spot loans)."""
        return self._interest

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

    def valuation(self) -> tuple[float, float, float, float, float, float, float, float]:
        """The portfolio's figures at its last prices, in one pass over the positions.

        ``(equity(), cash, value of the positions and holdings, realized_pnl, unrealized_pnl(),
        fees_paid, funding_paid, interest_paid)``: the fields of an equity sample, in its order.
        """
        equity = cash = self.cash
        value = 0.0
        unrealized = 0.0
        for pos in self._positions.values():
            q = pos.quantity
            if q != 0.0:
                last = pos.last_price
                held = q * pos.contract_size * last
                equity += held
                value += held
                if last == last:
                    unrealized += q * pos.contract_size * (last - pos.avg_price)
        if self._holdings:
            holdings = self.holdings_value()
            equity += holdings
            value += holdings
        return equity, cash, value, self._realized, unrealized, self._fees, self._funding, self._interest

    def holdings_value(self) -> float:
        """Value of the holdings of non-cash assets (:meth:`holding`) at their last prices (0 while unpriced)."""
        total = 0.0
        for pos, amount in self._holdings:
            if pos.last_price == pos.last_price:
                total += amount * pos.last_price
        return total

    def holding_values(self) -> dict[str, float]:
        """``asset -> value`` of each holding of a non-cash asset (:meth:`holding`) at its last price (0 while unpriced)."""
        return {
            asset: amount * pos.last_price if pos.last_price == pos.last_price else 0.0
            for asset, (pos, amount) in self._held.items()
        }

    def holding(self, asset: str) -> float:
        """Amount of a base asset held outside the positions: its initial balance less the fees paid in it.

        The account's balance of ``asset`` is this plus the positions of the spot instruments
        trading it (0 for an asset no instrument has as its base).
        """
        held = self._held.get(asset)
        return 0.0 if held is None else held[1]

    def spot_holding(self, asset: str) -> float:
        """Amount of base asset ``asset`` the account holds for its cash-only instruments to sell.

        :meth:`holding` (the initial balance less the fees paid in it) plus the positions of the
        cash-only instruments trading ``asset`` (several share it: ``BTC-USDT`` and ``BTC-USD``):
        the account's balance of ``asset`` when no margin spot instrument trades it too. A
        position of one of them below zero is coins of the holding (or of another's position) sold.
        """
        held = self._held.get(asset)
        total = 0.0 if held is None else held[1]
        for pos in self._spot_positions.get(asset, ()):
            total += pos.quantity
        return total

    def unpriced_holdings(self) -> dict[str, str]:
        """``asset -> instrument_id`` of each holding whose valuing instrument has no price yet (valued 0)."""
        return {
            asset: pos.instrument_id
            for asset, (pos, amount) in self._held.items()
            if amount and pos.last_price != pos.last_price
        }

    @property
    def holdings(self) -> dict[str, float]:
        """``instrument_id -> amount`` of the initial holdings, each under the instrument that values it."""
        return dict(self._initial_holdings)

    @property
    def has_holdings(self) -> bool:
        """Whether the portfolio started with a balance of a non-cash asset."""
        return bool(self._initial_holdings)

    def equity(self) -> float:
        """``cash + sum(position * contract_size * last price) + holdings_value()``."""
        total = self.cash
        for pos in self._positions.values():
            q = pos.quantity
            if q != 0.0:
                total += q * pos.contract_size * pos.last_price
        if self._holdings:
            total += self.holdings_value()
        return total

    def equity_band(self, floor: float, ceiling: float) -> tuple[str | None, float, float] | None:
        """The one instrument whose price moves equity, and its prices that keep equity in ``(floor, ceiling]``.

        Returns ``(instrument_id, lo, hi)``: while nothing but that instrument's last price
        changes, any price strictly between ``lo`` and ``hi`` gives an :meth:`equity` above
        ``floor`` and at most ``ceiling``. ``(None, -inf, inf)`` when no price moves equity (flat,
        no holdings) and it is in the band; ``None`` when it is not, when several instruments'
        prices move it, or when the instrument's current price is outside the range.

        Equity is monotone in one price whose every term (the position's and the holdings' it
        values) has one sign, rounding included; each bound is checked by :meth:`equity` itself
        at the price next to it, so the range never holds a price whose equity is out of band.
        """
        mover = None
        slope = 0.0  # d equity / d price
        for pos in self._positions.values():
            if pos.quantity != 0.0:
                if mover is not None:
                    return None
                mover = pos
                slope = pos.quantity * pos.contract_size
        for held, amount in self._holdings:
            if amount:
                if mover is None:
                    mover = held
                elif held is not mover or (amount > 0.0) is not (slope > 0.0):
                    return None  # another price, or terms of both signs (not monotone)
                slope += amount
        equity = self.equity()
        if not floor < equity <= ceiling:
            return None
        if mover is None:
            return None, -math.inf, math.inf
        price = mover.last_price
        if not 0.0 < price < math.inf:
            return None
        rising = slope > 0.0
        lo = hi = 0.0
        for level, below, toward in ((ceiling, True, -1.0), (floor, False, 1.0)):
            if not rising:
                toward = -toward
            if abs(level) == math.inf:
                bound = -toward * math.inf
            else:
                # From the level's price, step toward the current one until the next price in
                # is inside: every price beyond it is (equity is monotone in the price).
                bound = price + (level - equity) / slope
                step = ((abs(level) + abs(equity)) / abs(slope) + abs(bound)) * 2.0**-50
                for _ in range(64):
                    if not math.isfinite(bound):
                        return None
                    mover.last_price = math.nextafter(bound, toward * math.inf)
                    inside = self.equity()
                    mover.last_price = price
                    if inside <= ceiling if below else inside > floor:
                        break
                    bound += toward * step
                    step *= 2.0
                else:
                    return None
            if toward > 0.0:
                lo = bound
            else:
                hi = bound
        return (mover.instrument_id, lo, hi) if lo < price < hi else None

    def drawdown(self) -> float:
        """Drawdown of equity from its peak, as a fraction (0.25 = 25 %); 0 at a new peak."""
        peak = self.max_equity
        if peak <= 0.0:
            return 0.0
        dd = (peak - self.equity()) / peak
        return dd if dd > 0.0 else 0.0


def _at_par(asset: str, reporting: str) -> bool:
    """Whether the ledger may add amounts of ``asset`` to the reporting currency's one for one."""
    return asset == reporting or (asset.upper() in USD_AT_PAR and reporting.upper() in USD_AT_PAR)


def _bad_fill(fill: OrderFilled, unknown: bool) -> OrderError:
    """The error of a fill :meth:`Portfolio.apply_fill` refuses."""
    where = f"portfolio: fill {fill.trade_id!r} of order {fill.client_order_id}"
    if unknown:
        return OrderError(f"{where} is for unknown instrument {fill.instrument_id!r}")
    return OrderError(f"{where} has invalid qty={fill.last_qty!r} px={fill.last_px!r} fee={fill.fee!r}")
