"""Borrowing interest of margin spot loans in simulated runs (backtests and paper runs).

A run opts in with annual rates per asset (the config's ``annual_borrow_rates``,
``{USDT: 0.08, BTC: 0.10}``; :class:`~tradebus.engine.kernel.Kernel` ``borrow_rates``). Without
them nothing here runs and nothing is charged. A live venue charges its own interest (and live
spot orders do not borrow: margin spot is simulated only).

Loans
    A wallet balance below zero of a base or quote asset of a margin spot instrument is a loan
    of that asset (:meth:`MarginAccount.borrowed <tradebus.account.MarginAccount.borrowed>`): a
    short owes its base asset, a long beyond the cash owes the quote asset. A cash-only
    instrument never borrows. Owed amounts below a thousandth of the smallest lot of an
    instrument with that base (of ``1e-9`` for a quote asset) are float residue, not loans.

When (Binance cross margin's rule: hourly interest, the first charge at borrowing)
    * at each fill that takes a balance further below zero, on the amount it borrowed
      (:meth:`MarginAccount.new_borrowing <tradebus.account.MarginAccount.new_borrowing>`), at
      the fill's price (``kind`` ``"borrow"``);
    * at every whole UTC hour (``ts`` a multiple of 3,600 s) while something is owed, on the
      amount owed then (``kind`` ``"hour"``): a clock alert, so it fires as the clock crosses the
      hour, before the first message at or after it is handled, with the prices of the messages
      before it. A loan taken at 10:20 and repaid at 12:10 is charged at 10:20, 11:00 and
      12:00; one taken and repaid within the same hour once. The batch loops and
      :meth:`Kernel.process <tradebus.engine.kernel.Kernel.process>` fire the same alerts at the
      same points, so they charge the same.
    * after a restart of a paper daemon (the journal replays the charges of the stopped process,
      :meth:`BorrowInterest.restore`), from the first whole hour after the last journaled charge
      on the process clock (a ``"borrow"`` charge's ``ts_init``, not the fill's venue time: a
      daemon fed old capture frames fills at the capture's date; :meth:`BorrowInterest.resume`):
      no hour is charged twice, and an hour that passed while the
      process was down is charged before its first message. The process saw no price before
      it, and the journal holds the prices of its fills only: the daemon asks the venue for
      the price of each such hour before it starts (:meth:`BorrowInterest.missed_hours`,
      :meth:`BorrowInterest.price_missed`), the close of the instrument's 1-minute kline ending
      at the hour, which is the last trade before the hour that a running daemon fed by the
      instrument's trades charges at: ``kind`` ``"hour_kline"`` (``interest.csv``). An hour whose
      kline could not be had (network, venue error, no candle for that minute) is charged at the
      journal's last fill price of the instrument valuing the asset, as ``kind``
      ``"hour_last_fill"``, with a warning naming the hour, the price and why. A quote-asset
      loan (``price`` 1) needs no price and stays ``"hour"``.

How much
    ``interest = owed * price * annual_rate / 8760`` (365 days of 24 hours: Binance's daily rate
    divided by 24 is its hourly rate, and ``annual = daily * 365``). A base asset is valued at
    the latest price (trade, bar close or mid) of the first margin spot instrument, in config
    order, whose base it is (at a ``"borrow"`` charge: the fill's price) and the interest is
    debited from that instrument's quote asset; a quote asset is charged in itself (``price``
    1). Unlike Binance, which adds a base asset's interest to the base liability, the interest
    is paid in the quote asset at once: equity falls by exactly ``interest`` at the charge, and
    later price moves do not change it.

What it moves
    Each charge is debited from the portfolio's cash and the account's wallet
    (:meth:`Portfolio.charge_interest <tradebus.engine.portfolio.Portfolio.charge_interest>`),
    is published as an :class:`~tradebus.engine.messages.InterestCharged` event and kept in
    :attr:`RunResult.interest <tradebus.engine.kernel.RunResult.interest>` (``interest.csv``,
    the ``interest_paid`` metric). The lower wallet lowers the cross balance that backs the
    positions: after an hourly charge the liquidation bounds are recomputed and the positions
    checked (:meth:`Perpetuals.wallet_changed <tradebus.engine.perpetuals.Perpetuals.wallet_changed>`).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from loguru import logger

from tradebus.account import MarginAccount, asset_names
from tradebus.engine.messages import InterestCharged, OrderFilled, TimeEvent
from tradebus.errors import ConfigError

if TYPE_CHECKING:
    from tradebus.engine.bus import MessageBus
    from tradebus.engine.clock import Clock
    from tradebus.engine.instrument import Instrument
    from tradebus.engine.portfolio import Portfolio

__all__ = ["HOUR_NS", "HOURS_PER_YEAR", "BorrowInterest"]

#: Interest is charged at every multiple of this (a whole UTC hour).
HOUR_NS = 3_600_000_000_000
#: Hourly rate = annual rate / ``HOURS_PER_YEAR`` (365 days).
HOURS_PER_YEAR = 365 * 24
_ALERT = "borrow interest"
_QUOTE_RESIDUE = 1e-9


class BorrowInterest:
    """Charges borrowing interest on a run's margin spot loans (see the module docstring).

    Parameters
    ----------
    rates
        ``asset -> annual rate`` (0.08 = 8 % a year); assets without a rate are charged nothing.
    instruments
        Every instrument of the run, in config order.
    portfolio, clock, bus
        The kernel's parts (the portfolio's account must be a :class:`MarginAccount`).
    sync
        Marks the portfolio at every instrument's latest price (the kernel's ``sync_marks``):
        called before an hourly charge reads the prices.
    wallet_changed
        Called with the time after the charges of a fill (``None``) or of an hour (its time):
        recompute the liquidation bounds, and after an hour check the positions.
    priced
        Whether this process has seen a price of an instrument (the kernel's cache); one it
        has not is priced by the journal's replayed fills only (default: every one has).

    Raises
    ------
    ConfigError
        A rate is negative or not finite, or names an asset no margin spot instrument trades.
    """

    def __init__(
        self,
        rates: Mapping[str, float],
        instruments: Mapping[str, Instrument],
        portfolio: Portfolio,
        clock: Clock,
        bus: MessageBus,
        *,
        sync: Callable[[], None],
        wallet_changed: Callable[[int | None], None],
        priced: Callable[[str], bool] = lambda _iid: True,
    ) -> None:
        account = portfolio.account
        borrowable = account.borrowable if isinstance(account, MarginAccount) else frozenset()
        for asset, rate in rates.items():
            if asset not in borrowable:
                raise ConfigError(
                    f"borrow rates: {asset!r} is no base or quote asset of a margin spot instrument "
                    f"(those borrow: {sorted(borrowable)})"
                )
            if not (isinstance(rate, int | float) and math.isfinite(rate) and rate >= 0.0):
                raise ConfigError(f"borrow rates: {asset}: the annual rate must be a finite number >= 0, got {rate!r}")
        assert isinstance(account, MarginAccount)
        self.account = account
        self.rates = {asset: float(rate) for asset, rate in rates.items()}
        self._portfolio = portfolio
        self._clock = clock
        self._bus = bus
        self._sync = sync
        self._wallet_changed = wallet_changed
        self._priced = priced
        spot = {iid: inst for iid, inst in instruments.items() if not inst.cash_only and not inst.is_perpetual}
        #: ``asset -> instrument ids`` valuing a base asset (config order); a quote asset has none.
        self._pricing: dict[str, list[str]] = {}
        self._residue: dict[str, float] = dict.fromkeys(self.rates, _QUOTE_RESIDUE)
        for iid, inst in spot.items():
            base = asset_names(inst)[0]
            if base in self.rates:
                first = base not in self._pricing
                self._pricing.setdefault(base, []).append(iid)
                residue = inst.lot_size * 1e-3
                self._residue[base] = residue if first else min(self._residue[base], residue)
        self._quote = {iid: asset_names(inst)[1] for iid, inst in spot.items()}
        #: Every charge of the run, in order.
        self.charges: list[InterestCharged] = []
        self._scheduled = False
        # Process-clock time of the latest charge of a previous process (journal replay, restore): its hours are paid.
        self._restored_until: int | None = None
        # (instrument id, hour) -> that hour's price fetched from the venue, or why it could not be
        self._missed_prices: dict[tuple[str, int], float] = {}
        self._missed_failures: dict[tuple[str, int], str] = {}

    def owed(self, asset: str) -> float:
        """How much of ``asset`` is owed (0 below the float residue; see the module docstring)."""
        owed = self.account.borrowed(asset)
        return owed if owed > self._residue[asset] else 0.0

    def on_fill(self, fill: OrderFilled) -> None:
        """Charge the first hour of what a fill borrowed; start the hourly charges (bus subscriber of fills)."""
        charged = False
        for asset, amount in self.account.new_borrowing(fill):
            rate = self.rates.get(asset)
            if rate is None or amount <= self._residue[asset]:
                continue
            if asset in self._pricing:
                price, quote = fill.last_px, self._quote[fill.instrument_id]
            else:
                price, quote = 1.0, asset
            charged |= self._charge(asset, "borrow", amount, price, quote, rate, fill.ts_event, fill.ts_init)
        if charged:
            self._wallet_changed(None)
        self.schedule(self._clock.now_ns())

    def restore(self, charge: InterestCharged) -> None:
        """Take a charge of a previous process (journal replay; the replay debited it): kept in :attr:`charges`.

        The hours are paid up to the time on the process clock that charge left the previous
        process at, as if it ran on: an hourly charge's hour (``ts_event``), a ``"borrow"``
        charge's ``ts_init`` (its ``ts_event`` is the fill's venue time: a paper daemon fed old
        capture frames fills at the capture's date).
        """
        self.charges.append(charge)
        paid = charge.ts_init if charge.kind == "borrow" else charge.ts_event
        if self._restored_until is None or paid > self._restored_until:
            self._restored_until = paid

    def resume(self, now: int) -> None:
        """Start the hourly charges at the start of a run: after the last restored charge, or after ``now``.

        A restarted process charges the first whole hour after the last journaled charge, so no
        hour is charged twice and none the loan was owed through while the process was down is
        skipped: an hour already past fires before the next message, at the latest prices known
        (the journal's last fill price of an instrument before any new price: such a charge is
        ``"hour_last_fill"``, with a warning).
        """
        self.schedule(now if self._restored_until is None else self._restored_until)

    def missed_hours(self, now: int) -> dict[str, list[int]]:
        """The whole hours up to ``now`` a restarted process will charge with no price of its own.

        Call after the journal replay (:meth:`restore`) and before :meth:`resume`: the hours
        after the last restored charge up to ``now``, per instrument valuing a base asset owed
        (the one :meth:`resume`'s charges will value it with). Empty after no restored charge.

        Returns
        -------
        dict[str, list[int]]
            ``instrument id -> hours`` (ns, ascending) whose price :meth:`price_missed` can give.
        """
        if self._restored_until is None:
            return {}
        hours = list(range((self._restored_until // HOUR_NS + 1) * HOUR_NS, now // HOUR_NS * HOUR_NS + 1, HOUR_NS))
        missed: dict[str, list[int]] = {}
        for asset in self.rates:
            valued = self._valued_by(asset) if hours and self.owed(asset) else None
            if valued is not None:
                missed.setdefault(valued[0], hours)
        return missed

    def price_missed(self, prices: Mapping[tuple[str, int], float], failures: Mapping[tuple[str, int], str]) -> None:
        """Give the prices of :meth:`missed_hours` fetched from the venue (``(instrument id, hour) -> price``).

        ``failures`` holds why the others could not be fetched; those hours are charged at the
        journal's last fill price (``"hour_last_fill"``), the reason in the warning.
        """
        self._missed_prices.update(prices)
        self._missed_failures.update(failures)

    def schedule(self, now: int) -> None:
        """Set the alert of the next whole hour after ``now`` if something is owed and none is set."""
        if not self._scheduled and any(self.owed(asset) for asset in self.rates):
            self._scheduled = True
            self._clock.set_alert(_ALERT, (now // HOUR_NS + 1) * HOUR_NS, self._on_hour)

    def _on_hour(self, event: TimeEvent) -> None:
        self._scheduled = False
        hour, now = event.ts_event, event.ts_init
        self._sync()
        charged = False
        for asset, rate in self.rates.items():
            owed = self.owed(asset)
            if not owed:
                continue
            kind = "hour"
            if asset not in self._pricing:
                price, quote = 1.0, asset
            else:
                valued = self._valued_by(asset)
                if valued is None:
                    continue  # never priced: nothing to value the loan at (no fill borrowed it)
                iid, price, quote = valued
                if not self._priced(iid):
                    kind, price = self._missed_price(iid, hour, owed, asset, price, quote)
            charged |= self._charge(asset, kind, owed, price, quote, rate, hour, now)
        if charged:
            self._wallet_changed(now)
        self.schedule(hour)

    def _valued_by(self, asset: str) -> tuple[str, float, str] | None:
        """``(instrument id, latest price, quote)`` valuing base ``asset``: the first priced one, in config order."""
        for iid in self._pricing[asset]:
            price = self._portfolio.last_price(iid)
            if price == price:
                return iid, price, self._quote[iid]
        return None

    def _missed_price(self, iid: str, hour: int, owed: float, asset: str, last_fill: float, quote: str) -> tuple[str, float]:
        """``(kind, price)`` of an hour this process saw no price of ``iid`` before: the venue's, else the journal's."""
        fetched = self._missed_prices.get((iid, hour))
        if fetched is not None:
            return "hour_kline", fetched
        why = self._missed_failures.get((iid, hour), "no kline was fetched for it")
        kind = "hour_last_fill"
        logger.warning(
            "interest: the {} charge on {} {} owed is valued at {} {}, the last fill price of {} in the journal: "
            "the price at that hour is unknown (it passed while the daemon was down, or before this process saw "
            "a price of {}; the venue's kline: {}); interest.csv marks it {}",
            _utc(hour), owed, asset, last_fill, quote, iid, iid, why, kind,
        )  # fmt: skip
        return kind, last_fill

    def _charge(
        self, asset: str, kind: str, owed: float, price: float, quote: str, rate: float, ts_event: int, ts_init: int
    ) -> bool:
        interest = owed * price * rate / HOURS_PER_YEAR
        if interest == 0.0:
            return False
        self._portfolio.charge_interest(quote, interest)
        event = InterestCharged(asset, kind, owed, price, rate, interest, quote, ts_event, ts_init)
        self.charges.append(event)
        self._bus.publish(event)
        return True


def _utc(ts_ns: int) -> str:
    """``2024-08-08 11:00 UTC`` of a time in ns."""
    return datetime.fromtimestamp(ts_ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M UTC")
