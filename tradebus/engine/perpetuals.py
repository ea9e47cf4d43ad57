"""Mark prices, funding settlements and liquidations of perpetual and margin spot positions.

The kernel owns one :class:`Perpetuals` when any instrument is margined (a perpetual or a
margin spot instrument) and subscribes it
to ``MarkPrice`` and ``FundingRate`` on the bus: the paper and live node publishes the ones
its feeds parse, :meth:`Kernel.process` publishes the ones it is given, and a backtest gives
them as a side feed (:meth:`Kernel.feed_perpetual_data`, delivered through the simulated
clock).

Mark price
    A ``MarkPrice`` values its instrument from then on (:meth:`Portfolio.mark_price`):
    unrealised PnL, margin and liquidation are at mark. An instrument that never gets one is
    valued at its last trade, bar close or quote mid (the documented fallback).

Funding
    A ``FundingRate`` announces ``rate`` for the funding at ``next_funding_ns`` (a later one for
    the same time replaces it). That time is the venue's; the kernel's clock is the receive time
    (``ts_init``), ahead of the venue's by the announcement's receive delay (``ts_init - ts_event``:
    milliseconds live, none in a backtest's files, years for a recording a paper daemon is served
    today), so the funding is due on the kernel's clock at its time plus that delay. It is settled
    by the first mark, funding or market-data message at or after then, on the position held then: before a trade's or quote's fills
    and before a bar stamped after it (whose fills come after it); after a bar stamped at it (whose
    fills happen within it, before its close stamp) or a mark (which values the position at that
    time first; a mark of the backtest feed stamped after it settles it before). An announcement
    stamped at or after its time, as historical funding rows are, settles it at once; from the
    backtest feed, which delivers it before the market-data message of its time, one stamped at
    its time leaves it to that message. An announcement of the next funding time settles the due
    one before it is recorded. On a venue filling on bars, a funding that falls due while an
    order of its instrument waits at the venue and the instrument's next bar opens before it
    (a funding inside a 4h or 1d bar, or a Binance row stamped 00:00:00.017 inside the bar opening
    at 00:00) is held, at the mark of then, until that bar is matched: its fills, at its open or
    along its path, are the position held at the funding time (the venue charges whoever holds
    the position then); one a bar opens at is not (a fill at the funding time itself comes after
    it). A time bar after a gap in the data opens one bar length (the shortest spacing of its
    instrument's bars' closes, ``ts_event``, up to it, or from the first bar the interval their source
    gives, :meth:`bar_intervals`; :meth:`bar_open`) before its close, not at the previous close: a
    funding in the gap is paid before that bar's fills (held ones too, once the bar shows it), and
    without marks priced at that bar's open, the first price after its time. Bars of no fixed time interval
    (volume, dollar, tick bars, :meth:`bar_intervals`) have no gap: each opens at the previous close. The
    run's end pays a funding still held on the position held then, before the strategies'
    ``on_stop`` and in the run's last equity sample.
    Each is settled only once (an announcement for a time already
    settled is ignored; after a restart, the journaled payments count as settled,
    :meth:`restore`). A daemon's journal keeps the fundings announced or held and not paid yet
    (:attr:`Perpetuals.on_due`, :class:`FundingDue`; rewritten when which they are changes, and a moving
    announced rate at most once a minute, :data:`FUNDING_DUE_REFRESH_NS`): a daemon restarted on it (even after a
    SIGKILL) settles a pending one as before the stop, and pays a held one at its start, on the
    position restored (the order it waited for stopped with the previous process's venue, so that
    position is the one held at its time) at the mark it was held at (:meth:`restore_due`): the position then pays
    ``quantity * contract_size * mark * rate`` (a long pays a positive rate, a short
    receives it) at the latest mark. :meth:`Kernel.process` asks at each message, and
    the backtest's bar loops before and after each bar (:attr:`next_funding_ns`). Each settlement
    is a :class:`FundingPaid` event, published and kept in :attr:`RunResult.funding`.

Borrowing interest (margin spot loans, when the run sets borrow rates)
    Charged by :class:`~tradebus.engine.interest.BorrowInterest` on its own clock alerts; after
    each charge it calls :meth:`Perpetuals.wallet_changed` (bounds recomputed, positions checked).

Live venues
    A live venue settles funding and liquidates on its own. One that reports its funding
    payments (``Venue.reports_funding``) is the only source of funding: ``FundingRate``
    announcements are then not settled here, and the payments it reports are booked as they
    are (:meth:`Perpetuals.on_venue_funding`), each once: the user stream's report and the
    venue's income history (read after a restart or a reconnect) may both carry one payment.
    The fills of its liquidation orders are booked
    as liquidations (:meth:`Perpetuals.on_venue_liquidation`).

Liquidation (simulated venues only: a live venue liquidates on its own and reports fills)
    After every mark of a margined instrument with a position open (a margin spot instrument
    has no mark price: its trades, bar closes or mids mark it), the margin account is asked which
    positions are below maintenance margin (:meth:`MarginAccount.liquidations`). Each is
    closed whole at its current mark (the first mark seen beyond the liquidation price, so a
    gap is booked at the gapped price) with a fee of ``Instrument.liquidation_fee`` (``taker_fee``
    for a ``CloseFee.MARK`` perpetual: OKX) times the notional, taken from what is left of its margin and no more; a mark gapped beyond the
    bankruptcy price closes it at that price instead, the insurance fund absorbing the rest
    (:meth:`MarginAccount.liquidation_closes`: the loss never exceeds the margin). Its working
    orders are canceled; a :class:`PositionLiquidated` event is published and the fill is
    recorded with reason ``"liquidation"``. With bars as the only price, breaches are seen at
    bar closes (an intra-bar excursion that recovers is missed).
"""

from __future__ import annotations

import collections
import itertools
import math
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import msgspec
import numpy as np
from loguru import logger

from tradebus.account import MarginAccount
from tradebus.engine.clock import SimulatedClock, iso_ns
from tradebus.engine.messages import (
    CancelOrder,
    FundingPaid,
    FundingRate,
    Liquidity,
    MarkPrice,
    OrderFilled,
    OrderSide,
    PositionLiquidated,
    TimeEvent,
)
from tradebus.errors import DataError

if TYPE_CHECKING:
    from tradebus.engine.bus import MessageBus
    from tradebus.engine.clock import Clock
    from tradebus.engine.instrument import Instrument
    from tradebus.engine.portfolio import Portfolio
    from tradebus.execution.engine import ExecutionEngine
    from tradebus.execution.orders import OrderManager
    from tradebus.execution.simulated import SimulatedVenue

__all__ = [
    "LIQUIDATION_ID_PREFIX", "LIQUIDATION_STRATEGY", "MAX_FUNDING_RATE", "FundingDue", "Perpetuals", "funding_rate_problem",
]  # fmt: skip

#: The largest funding rate (a fraction of the position's notional per funding interval, either sign) a rate
#: may have wherever it enters: a history file, a recording or catalog replayed, a venue's feed. The venues
#: cap their rates well below it (Binance's ``fundingInfo`` ``adjustedFundingRateCap``: 0.3 % for BTCUSDT,
#: 2 % and 3 % for smaller contracts; OKX sends its cap as ``maxFundingRate``), so a rate beyond it is a
#: corrupt value or one in percent read as a fraction (0.5 for 0.5 %), which would pay half the position's
#: notional at each funding.
MAX_FUNDING_RATE = 0.05

#: ``strategy_id`` of liquidation fills (no strategy submitted them).
LIQUIDATION_STRATEGY = "liquidation"
#: The simulated liquidation's fills are ``liquidation-<n>``: client order, venue order and trade id.
LIQUIDATION_ID_PREFIX = "liquidation-"
_FEED_ALERT = "perpetuals feed"
#: Two venue payments of one instrument and amount this close in time are one payment, told twice (the
#: user stream's event time and the income history's row time of a payment are not documented as equal;
#: a venue settles an instrument's funding at most once an hour).
VENUE_FUNDING_MATCH_NS = 60_000_000_000

#: How often at most (kernel clock, ns) a changed rate of the same unpaid fundings is handed to
#: :attr:`Perpetuals.on_due` (a restart after a crash settles with a rate at most this old).
FUNDING_DUE_REFRESH_NS = 60_000_000_000


def funding_rate_problem(rate: float) -> str | None:
    """Why ``rate`` is no funding rate (not finite, or beyond :data:`MAX_FUNDING_RATE`), or ``None``.

    The reason follows the rate: ``f"funding rate {rate} {reason}"``.
    """
    if not math.isfinite(rate):
        return "is not a finite number"
    if abs(rate) > MAX_FUNDING_RATE:
        return (
            f"is not a plausible funding rate: beyond ±{MAX_FUNDING_RATE:g} per funding interval (MAX_FUNDING_RATE, "
            "above every venue's cap); a corrupt value, or a rate in percent where a fraction is expected "
            "(0.0001 = 0.01 %)"
        )
    return None


class FundingDue(msgspec.Struct, frozen=True):
    """A funding announced and not paid yet, as a daemon's journal keeps it (:attr:`Perpetuals.on_due`).

    Parameters
    ----------
    instrument_id
        The perpetual.
    due
        When it falls due on the kernel's clock (its venue time plus its announcement's receive delay).
    at
        The funding time (venue time, ns).
    rate
        The announced rate.
    mark
        ``None``: pending (not due yet, or due and not settled yet); else held for the bar it falls in, at
        this mark (NaN: no price known then).
    """

    instrument_id: str
    due: int
    at: int
    rate: float
    mark: float | None = None


class Perpetuals:
    """Marks, funding and liquidation of a run's margined instruments (see the module docstring).

    Parameters
    ----------
    instruments
        Every instrument of the run (perpetuals and margin spot instruments are handled; funding
        is settled for perpetuals only).
    portfolio, execution, orders, bus, clock
        The kernel's parts.
    liquidate
        Whether the kernel closes positions below maintenance margin (simulated venues; a live
        venue liquidates and reports its fills, :meth:`on_venue_liquidation`).
    settle_funding
        Whether the kernel settles funding from ``FundingRate`` announcements (``False``: the
        venue reports its own payments, :meth:`on_venue_funding`, and only those are booked).
    on_liquidation_fill
        Called with each liquidation fill before it is booked (the kernel records its reason).
    bar_venue
        The simulated venue when it fills on bars: a funding inside the next bar of an
        instrument with an order there is paid after that bar's fills (the module docstring).
    """

    def __init__(
        self,
        instruments: dict[str, Instrument],
        portfolio: Portfolio,
        execution: ExecutionEngine,
        orders: OrderManager,
        bus: MessageBus,
        clock: Clock,
        *,
        liquidate: bool,
        settle_funding: bool = True,
        on_liquidation_fill: Callable[[OrderFilled], None],
        bar_venue: SimulatedVenue | None = None,
    ) -> None:
        self.instruments = {iid: inst for iid, inst in instruments.items() if not inst.cash_only}
        #: Whether any instrument is a perpetual (funding; margin spot alone pays none).
        self.funded = any(inst.is_perpetual for inst in self.instruments.values())
        self._portfolio = portfolio
        self._execution = execution
        self._orders = orders
        self._bus = bus
        self._clock = clock
        self._liquidate = liquidate
        self._settle_funding = settle_funding
        self._on_liquidation_fill = on_liquidation_fill
        account = portfolio.account
        self.account: MarginAccount | None = account if isinstance(account, MarginAccount) else None
        # instrument_id -> (due on the kernel's clock, funding time, rate) announced and not settled yet
        self._pending: dict[str, tuple[int, int, float]] = {}
        # instrument_id -> the latest funding time settled
        self._settled: dict[str, int] = {}
        self._bar_venue = bar_venue
        # Fundings due inside a bar not matched yet, paid after it: (instrument_id, due on the kernel's
        # clock, funding time, rate, mark then).
        self._held: list[tuple[str, int, int, float, float]] = []
        # On a venue filling on bars: instrument_id -> (the shortest spacing of its bars seen, its latest bar's
        # close) noted so far, and the bar times of a bar loop's batch not folded into it yet (with the running
        # minimum of their spacings, computed when first asked): where a bar after a gap opens (:meth:`note_bars`).
        self._bar_steps: dict[str, tuple[int, int]] = {}
        self._bar_batches: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
        # The instruments whose bars have no fixed time interval (:meth:`bar_intervals`): no gap of theirs.
        self._untimed: set[str] = set()
        #: Called with every funding announced or held and not paid yet (:meth:`due`) whenever they change
        #: (a daemon's journal keeps them for a restart, :meth:`restore_due`); ``None``: not kept.
        self.on_due: Callable[[list[FundingDue]], None] | None = None
        #: Called with an instrument's first mark that values it (the kernel records it as the instrument's first
        #: price if nothing priced it before); ``None``: not called.
        self.on_first_mark: Callable[[MarkPrice], None] | None = None
        self._due_kept: list[FundingDue] = []
        self._due_written = -(2**63)
        #: When the earliest announced (or held) funding not settled yet is due on the kernel's clock
        #: (its venue time plus its announcement's receive delay; ``2**63 - 1``: none).
        self.next_funding_ns = 2**63 - 1
        #: The time of the run's earliest fill of one of :attr:`instruments` (the journal's too; ``None``: none),
        #: kept here as a daemon streaming its outputs keeps no fills (the kernel sets it).
        self.first_fill_ns: int | None = None
        # Per instrument, (venue time, signed quantity) of the fills since its latest payment booked (less
        # VENUE_FUNDING_MATCH_NS): a venue payment read after them is booked on the position before them.
        self._recent_fills: dict[str, collections.deque[tuple[int, float]]] = {}
        self._feed: list[Any] = []
        self._feed_at = 0
        # Whether the backtest feed is delivering: the market-data message that moved the clock is
        # handled next, and settles a funding stamped at its own time (Kernel.process).
        self._feeding = False
        self._deliver: Callable[[Any], None] = bus.publish
        self._liquidations = itertools.count(1)
        self._venue_liquidations: set[tuple[str, str]] = set()
        self.funding: list[FundingPaid] = []
        self.liquidations: list[PositionLiquidated] = []
        #: Whether a margined position is open that no mark price values yet: the kernel marks
        #: it at every trade, bar close or mid and checks liquidation then. Positions valued at
        #: marks are checked at each mark (``open``).
        self.watching = False
        self.open = False
        self._positions = {iid: portfolio.position_state(iid) for iid in self.instruments}
        alone = len(self.instruments) == 1 and self.account is not None and len(self.account.margined) == 1
        self._single = next(iter(self.instruments)) if alone else None
        #: Whether :attr:`lo` and :attr:`hi` bound the liquidation of the run's positions: one
        #: margin spot instrument without margin tiers, whose liquidation price moves only with a
        #: fill or a charge of borrowing interest (no funding, no other position, one maintenance
        #: rate; both recompute the bounds). The batch loop then runs trades in batches and checks
        #: a trade only outside the bounds.
        self.bounded = (
            liquidate and not self.funded and self._single is not None
            and not self.instruments[self._single].margin_tiers
        )  # fmt: skip
        #: The batch loops call :meth:`on_price` at a price ``<= lo`` or ``>= hi``; strictly
        #: between them no position can be liquidated. ``(-inf, inf)`` while nothing is watched,
        #: ``(inf, -inf)`` (every price) while a watched position is not :attr:`bounded`.
        self.lo = -math.inf
        self.hi = math.inf

    # ------------------------------------------------------------------ messages

    def on_mark(self, msg: MarkPrice) -> None:
        """Value the instrument at ``msg.mark_price``, settle due funding, check liquidation."""
        if msg.instrument_id not in self.instruments:
            return
        # At the mark of its time, not this later one; a daemon's first mark (of a position its journal priced
        # before a stop) values the position it pays on.
        if msg.ts_init > self.next_funding_ns and (self._feeding or self._positions[msg.instrument_id].has_mark):
            self.settle_due(msg.ts_init, before=True)
        position = self._positions[msg.instrument_id]
        first = not position.has_mark
        self._portfolio.mark_price(msg.instrument_id, msg.mark_price)
        if first and position.has_mark and self.on_first_mark is not None:
            self.on_first_mark(msg)
        if not self._feeding and msg.ts_init >= self.next_funding_ns:
            self.settle_due(msg.ts_init)
        if self.open:
            self.check(msg.ts_init)
            if self.watching:
                self.note_positions()  # this position is valued at marks from now on

    def on_funding(self, msg: FundingRate) -> None:
        """Remember the announced rate for its funding time; settle it if that time has come.

        Raises
        ------
        DataError
            A rate beyond :data:`MAX_FUNDING_RATE`, naming the instrument, the message's time and the rate.
        """
        inst = self.instruments.get(msg.instrument_id)
        if not self._settle_funding or inst is None or not inst.is_perpetual or not math.isfinite(msg.rate):
            return  # a venue that reports its payments settles funding itself
        iid = msg.instrument_id
        problem = funding_rate_problem(msg.rate)
        if problem is not None:
            raise DataError(
                f"{iid}: the FundingRate at ts_init {msg.ts_init} ({iso_ns(msg.ts_init)}) for the funding at "
                f"{iso_ns(msg.next_funding_ns if msg.next_funding_ns > 0 else msg.ts_event)}: funding rate {msg.rate} {problem}"
            )
        at = msg.next_funding_ns if msg.next_funding_ns > 0 else msg.ts_event
        if at <= self._settled.get(iid, -1):
            return  # a late repeat of a funding already settled
        pending = self._pending.get(iid)
        if pending is not None and pending[1] != at and msg.ts_init >= pending[0]:
            # the next funding's announcement is the first message at or after this one's time
            self.settle_due(msg.ts_init)
        # ``at`` is venue time; the kernel's clock is the receive time, ahead of the venue's by
        # the announcement's receive delay (years for a recording served today)
        self._pending[iid] = (at + msg.ts_init - msg.ts_event, at, msg.rate)
        self._next_due()
        if msg.ts_init >= self.next_funding_ns:
            self.settle_due(msg.ts_init, before=self._feeding)
        if self.on_due is not None:
            self._keep_due(msg.ts_init)

    def settle_due(
        self, now: int, *, before: bool = False, bar: str | None = None, opening: float = math.nan,
        closing: int | None = None,
    ) -> None:
        """Settle every announced funding whose time is at or before ``now`` (``before``: strictly before it).

        A funding inside the next bar of an instrument with an order at a bar-filled venue is held
        and paid once that bar is matched, at the mark when it fell due; ``before`` pays no held funding (the
        call before a bar's handlers) but one of ``bar``'s.

        ``bar`` (with ``before``): the instrument whose bar stamped ``now`` comes next, opening at price
        ``opening`` and closing at ``closing`` (its ``ts_event``, venue time; ``None``: ``now``). A funding of it
        whose time is at or before that bar's open (:meth:`bar_open`: in a gap of its bars) is paid now, before the
        bar's fills, pending or held, at its mark or, with no mark price, at ``opening``: the first price after the
        funding time.
        """
        if now < self.next_funding_ns or (before and now == self.next_funding_ns):
            return
        portfolio = self._portfolio
        venue = self._bar_venue
        opens = None if bar is None or venue is None else self.bar_open(bar, now if closing is None else closing)
        for iid, (due, at, rate) in list(self._pending.items()):
            if due > now or (before and due == now):
                continue
            del self._pending[iid]
            self._settled[iid] = at
            if iid == bar and opens is not None and opens >= at:  # before the bar: in a gap of its bars
                self._pay(iid, at, rate, self._price_before(iid, opening), now)
                continue
            if venue is not None:
                previous = venue.next_bar_open(iid)
                if previous is not None and previous < due:  # its fills at the open may come before the funding
                    self._held.append((iid, due, at, rate, portfolio.last_price(iid)))
                    continue
            self._pay(iid, at, rate, portfolio.last_price(iid), now)
        if self._held:
            if not before:
                self._pay_held(now, final=False)
            elif opens is not None:
                self._pay_held_before(bar, opens, opening, now)  # type: ignore[arg-type]
        self._next_due()
        if self.on_due is not None:
            self._keep_due(now)
        if self.open:
            self.check(now)  # a payment may take a position below maintenance margin

    def bar_intervals(self, intervals: Mapping[str, int | None]) -> None:
        """Say how long the bars of each instrument of ``intervals`` last, as their source knows it.

        An int: time bars of that fixed interval (ns), the bar length of :meth:`bar_open` from the first bar
        on (so the first gap is recognised too, not only one after two adjacent bars were seen). ``None``: bars
        of no fixed time interval (volume, dollar, tick bars ...): back to back, of any length, each opening
        right after the previous one's close, so no funding falls in a gap of them (:meth:`bar_open` is
        ``None``), and one inside a bar with an order waiting is held until that bar is matched. Bars not
        told of are time bars whose length is learnt from their spacing. :meth:`Kernel.run` tells it from its
        replay's sources (:meth:`~tradebus.data.replay.ReplaySource.bar_interval_ns`), a paper daemon from its
        bar streams (:meth:`Kernel.bar_intervals`).
        """
        for iid, interval in intervals.items():
            if interval is None:
                self._untimed.add(iid)
                self._bar_steps.pop(iid, None)
                self._bar_batches.pop(iid, None)
            else:
                self._untimed.discard(iid)
                self._fold_bars(iid)
                step, last = self._bar_steps.get(iid, (2**63 - 1, -1))
                self._bar_steps[iid] = (min(step, int(interval)), last)

    def note_bars(self, instrument_id: str, times: np.ndarray) -> None:
        """Note the close times (sorted ``ts_event``, venue time) of a bar loop's batch of the instrument's bars.

        Nothing is read from them before the loop reaches them: :meth:`bar_open` of a bar looks at the
        bars up to it. Only the perpetuals of a venue filling on bars need them (a no-op otherwise).
        """
        inst = self.instruments.get(instrument_id)
        if (self._bar_venue is None or inst is None or not inst.is_perpetual or not len(times)
                or instrument_id in self._untimed):
            return
        self._fold_bars(instrument_id)
        self._bar_batches[instrument_id] = (times, None)

    def note_bar(self, instrument_id: str, ts: int) -> None:
        """Note one bar of the instrument closing at ``ts`` (its ``ts_event``), after its handlers (:meth:`Kernel.process`).

        The venue's close times, not the receive times (``ts_init``): a daemon's klines arrive with delays of
        their own, two of them a fraction of a second apart after a late one, no bar length.
        """
        inst = self.instruments.get(instrument_id)
        if self._bar_venue is None or inst is None or not inst.is_perpetual or instrument_id in self._untimed:
            return
        self._fold_bars(instrument_id)
        step, last = self._bar_steps.get(instrument_id, (2**63 - 1, -1))
        if ts > last:
            self._bar_steps[instrument_id] = (step if last < 0 else min(step, ts - last), ts)

    def bar_open(self, instrument_id: str, close: int) -> int | None:
        """Where the instrument's bar closing at ``close`` (``ts_event``) opens (``None``: no earlier bar of it known).

        A bar lasts the interval its source gives (:meth:`bar_intervals`), else the shortest spacing of the
        instrument's bars up to it (time bars: their interval, once two adjacent bars have been seen), so a bar
        after a gap opens that long before its close, not at the previous bar's close; never before that close
        (the simulated venue's open of a bar, ``SimulatedVenue``, and, with no interval given, the first
        spacings of a run, until an adjacent pair is seen). Always ``None``
        for bars of no fixed time interval (:meth:`bar_intervals`): they have no gap.
        """
        step, last = self._bar_steps.get(instrument_id, (2**63 - 1, -1))
        batch = self._bar_batches.get(instrument_id)
        if batch is not None:
            times, mins = batch
            k = int(np.searchsorted(times, close))  # the bars of the batch before this one
            if k:
                if last >= 0 and times[0] > last:
                    step = min(step, int(times[0]) - last)
                if k >= 2:
                    if mins is None:
                        spacing = np.diff(times)
                        mins = np.minimum.accumulate(np.where(spacing > 0, spacing, 2**63 - 1))
                        self._bar_batches[instrument_id] = (times, mins)
                    step = min(step, int(mins[k - 2]))
                last = int(times[k - 1])
        if last < 0 or close <= last:
            return None if last < 0 else last
        return max(last, close - min(step, close - last))

    def _fold_bars(self, instrument_id: str) -> None:
        batch = self._bar_batches.pop(instrument_id, None)
        if batch is None:
            return
        times = batch[0]
        step, last = self._bar_steps.get(instrument_id, (2**63 - 1, -1))
        spacing = np.diff(times)
        spacing = spacing[spacing > 0]
        if spacing.size:
            step = min(step, int(spacing.min()))
        if last >= 0 and times[0] > last:
            step = min(step, int(times[0]) - last)
        self._bar_steps[instrument_id] = (step, max(last, int(times[-1])))

    def _price_before(self, iid: str, opening: float) -> float:
        """The price of a funding paid before a bar of ``iid`` opening at ``opening``, after its time."""
        if self._positions[iid].has_mark or opening != opening:
            return self._portfolio.last_price(iid)
        return opening

    def settle_held(self, now: int) -> None:
        """Pay every held funding on the position held now (the run ends before the bar it waits for)."""
        if self._held:
            self._pay_held(now, final=True)
            self._next_due()
            if self.on_due is not None:
                self._keep_due(now)
            if self.open:
                self.check(now)

    def due(self) -> list[FundingDue]:
        """Every funding announced (pending) or held and not paid yet, pending ones first, by instrument."""
        pending = [FundingDue(iid, due, at, rate) for iid, (due, at, rate) in sorted(self._pending.items())]
        return pending + [FundingDue(iid, due, at, rate, mark) for iid, due, at, rate, mark in self._held]

    def _keep_due(self, now: int) -> None:
        """Hand :attr:`on_due` the fundings not paid yet when which they are changes, or their rates every
        :data:`FUNDING_DUE_REFRESH_NS` of the kernel's clock (an announced rate is an estimate that moves with
        every mark frame, and its receive delay with it: one journal commit a second per perpetual otherwise)."""
        assert self.on_due is not None
        due = self.due()
        kept = self._due_kept
        if [(d.instrument_id, d.at, d.mark is None) for d in due] == [
            (d.instrument_id, d.at, d.mark is None) for d in kept
        ] and (now < self._due_written + FUNDING_DUE_REFRESH_NS or [d.rate for d in due] == [d.rate for d in kept]):
            return
        self.on_due(due)
        self._due_kept = due
        self._due_written = now

    def restore_due(self, due: Iterable[FundingDue], now: int) -> None:
        """Take back the fundings a previous process left announced or held (journal replay, after :meth:`restore`).

        One whose time is settled already (its payment journaled) is skipped. A pending one is pending
        here as it was there; a held one is paid now, on the position restored, at the mark it was held
        at (the order whose fills it waited for stopped with that process's venue). Each payment is
        published (journaled) as any other.
        """
        due = list(due)
        self._due_kept = due  # what the journal holds: replaced by what is left of it
        for entry in due:
            iid = entry.instrument_id
            inst = self.instruments.get(iid)
            if inst is None or not inst.is_perpetual:
                logger.warning("perpetuals: the journal's funding of {} at {} ignored (not a perpetual of this run)",
                               iid, entry.at)
                continue
            if entry.at <= self._settled.get(iid, -1):
                continue  # paid before the stop (its payment is journaled)
            if entry.mark is None:
                if iid not in self._pending or self._pending[iid][1] < entry.at:
                    self._pending[iid] = (entry.due, entry.at, entry.rate)
                continue
            logger.info("perpetuals: paying the funding of {} at {} held by the stopped process", iid, entry.at)
            self._settled[iid] = max(self._settled.get(iid, -1), entry.at)
            self._pay(iid, entry.at, entry.rate, entry.mark, now)
        self._next_due()
        if self.on_due is not None:
            self._keep_due(now)

    def _next_due(self) -> None:
        # A held funding keeps the loops calling settle_due after each bar until it is paid.
        self.next_funding_ns = min(
            min((due for due, _, _ in self._pending.values()), default=2**63 - 1),
            min((due for _, due, _, _, _ in self._held), default=2**63 - 1),
        )

    def _pay_held(self, now: int, *, final: bool) -> None:
        venue = self._bar_venue
        assert venue is not None
        kept = []
        for held in self._held:
            iid, due, at, rate, mark = held
            if final or venue.bar_closed(iid) >= due:  # the bar it falls in is matched
                self._pay(iid, at, rate, mark, now)
            else:
                kept.append(held)
        self._held = kept

    def _pay_held_before(self, bar: str, opens: int, opening: float, now: int) -> None:
        """Pay the held fundings of ``bar`` timed at or before its next bar's open ``opens`` (before its fills)."""
        kept = []
        for held in self._held:
            iid, due, at, rate, mark = held
            if iid == bar and at <= opens:
                if not self._positions[iid].has_mark and opening == opening:
                    mark = opening
                self._pay(iid, at, rate, mark, now)
            else:
                kept.append(held)
        self._held = kept

    def _pay(self, iid: str, at: int, rate: float, mark: float, now: int) -> None:
        """Pay the funding of ``at`` at ``rate`` on the position held now, at ``mark`` (the latest mark when it fell due)."""
        portfolio = self._portfolio
        if mark != mark:  # not priced when it fell due: its fill price
            mark = portfolio.last_price(iid)
        qty = portfolio.position(iid)
        payment = portfolio.apply_funding(iid, rate, mark)
        if qty != 0.0 and payment == payment:
            event = FundingPaid(iid, qty, mark, rate, payment, at, now)
            self.funding.append(event)
            self._bus.publish(event)

    def on_venue_funding(self, paid: FundingPaid) -> None:
        """Book a funding payment the venue made (live): its ``payment`` on the position held at its time.

        The payment is the venue's, and so are the mark price and the rate when its record gives them
        (Bybit's execution and transaction log: both; OKX's bill: the mark; Binance's income: neither),
        NaN (an empty ``funding.csv`` field) when it does not: none is made up from another price.
        The quantity is this portfolio's position at the payment's time (venue time): the fills booked since
        with a later venue time (a payment read from the income history after them) taken back. It is published (journaled) and kept in :attr:`funding` as a settled payment. A payment already
        booked (:meth:`is_booked`: told by the stream and by the income history, or journaled by a
        previous process) is not booked again.
        """
        iid = paid.instrument_id
        if iid not in self.instruments or not math.isfinite(paid.payment):
            logger.error("perpetuals: a venue funding payment of {} on {} not booked (not an instrument of this run)",
                         paid.payment, iid)
            return
        if self.is_booked(paid):
            logger.debug("perpetuals: venue funding payment of {} on {} at {} already booked", paid.payment, iid, paid.ts_event)
            return
        portfolio = self._portfolio
        qty = portfolio.position(iid) - sum(moved for ts, moved in self._recent_fills.get(iid, ()) if ts > paid.ts_event)
        event = FundingPaid(iid, qty, paid.mark_price, paid.rate, paid.payment, paid.ts_event, paid.ts_init)
        portfolio.pay_funding(iid, paid.payment)
        self._settled[iid] = max(self._settled.get(iid, -1), paid.ts_event)
        self.funding.append(event)
        self._bus.publish(event)
        self.note_positions()

    def note_fill(self, instrument_id: str, ts_event: int, moved: float) -> None:
        """Keep a fill of ``moved`` (signed) at ``ts_event`` (venue time) of a perpetual for :meth:`on_venue_funding` (the
        kernel tells); a margin spot instrument's is not kept: no funding is paid on it, which would drop it."""
        if not self.funded or not self.instruments[instrument_id].is_perpetual:
            return
        fills = self._recent_fills.get(instrument_id)
        if fills is None:
            fills = self._recent_fills[instrument_id] = collections.deque()
        fills.append((ts_event, moved))
        oldest = self._settled.get(instrument_id, -1) - VENUE_FUNDING_MATCH_NS
        while fills and fills[0][0] < oldest:
            fills.popleft()

    def is_booked(self, paid: FundingPaid) -> bool:
        """Whether a payment of ``paid``'s instrument and amount within :data:`VENUE_FUNDING_MATCH_NS` of its time is booked."""
        iid, at, payment = paid.instrument_id, paid.ts_event, paid.payment
        return any(
            f.instrument_id == iid and abs(f.ts_event - at) <= VENUE_FUNDING_MATCH_NS
            and math.isclose(f.payment, payment, rel_tol=1e-9, abs_tol=1e-12)
            for f in reversed(self.funding)
        )

    def last_funding_ns(self) -> int | None:
        """The time of the latest funding payment booked (this process or the journal's), ``None``: none."""
        return max((f.ts_event for f in self.funding), default=None)

    def on_venue_liquidation(self, fill: OrderFilled) -> None:
        """Book the fill of a venue's liquidation order (live) as the kernel books its own liquidations.

        Each fill (once per trade id) reduces the position at the venue's price and fee, and is
        published as :class:`PositionLiquidated` (``quantity`` the signed part it closed,
        ``liquidation_price`` the account's, no insurance fund cover known). A partial
        liquidation shrinks every strategy's share of the position pro rata
        (:attr:`Kernel.strategy_positions <tradebus.engine.kernel.Kernel.strategy_positions>`).
        """
        key = (fill.client_order_id, fill.trade_id)
        if key in self._venue_liquidations or fill.instrument_id not in self.instruments:
            logger.warning("perpetuals: venue liquidation fill {} of {} ignored ({})", fill.trade_id, fill.instrument_id,
                           "a repeat" if key in self._venue_liquidations else "not an instrument of this run")
            return
        self._venue_liquidations.add(key)
        iid = fill.instrument_id
        portfolio = self._portfolio
        mark = portfolio.last_price(iid)
        liq_price = self.account.liquidation_price(iid) if self.account is not None else math.nan
        closed = -fill.last_qty if fill.side > 0 else fill.last_qty
        logger.warning("{}: liquidated by the venue: {} @ {} (fee {})", iid, -closed, fill.last_px, fill.fee)
        self._on_liquidation_fill(fill)
        self._execution.book_liquidation(fill)
        event = PositionLiquidated(iid, closed, fill.last_px, liq_price, fill.fee, mark, 0.0, fill.ts_event, fill.ts_init)
        self.liquidations.append(event)
        self._bus.publish(event)

    def restore(self, paid: FundingPaid) -> None:
        """Take a funding payment of a previous process (journal replay) as settled here.

        It joins :attr:`funding`, and a later announcement of its time is a late repeat, ignored.
        """
        self.funding.append(paid)
        iid = paid.instrument_id
        self._settled[iid] = max(self._settled.get(iid, -1), paid.ts_event)

    def wallet_changed(self, now: int | None) -> None:
        """The wallet moved outside a fill or funding (borrowing interest): recompute the bounds, check at ``now``.

        ``None``: recompute only (a charge at a fill, after which the kernel checks as after any fill).
        """
        self.note_positions()
        if now is not None and self.open:
            self.check(now)

    # ------------------------------------------------------------------ liquidation

    def note_positions(self) -> None:
        """Recompute :attr:`open`, :attr:`watching` and the bounds :attr:`lo`, :attr:`hi` (after a fill)."""
        held = watching = False
        for pos in self._positions.values():  # one pass, no generators: this runs after every fill
            if pos.quantity != 0.0:
                held = True
                if not pos.has_mark:
                    watching = True
                    break
        self.open, self.watching = held, watching
        if not self.watching or not self._liquidate:
            self.lo, self.hi = -math.inf, math.inf
        elif not self.bounded:
            self.lo, self.hi = math.inf, -math.inf
        else:
            assert self.account is not None and self._single is not None
            price = self.account.liquidation_price(self._single)
            long = self._positions[self._single].quantity > 0.0
            # A relative margin of 1e-9 around the formula's price: the account's own test
            # (MarginAccount.breached) decides at the prices near it. No positive price: a long
            # is never liquidated, a short at any price.
            if price != price:
                self.lo, self.hi = (-math.inf, math.inf) if long else (math.inf, -math.inf)
            elif long:
                self.lo, self.hi = price * (1.0 + 1e-9), math.inf
            else:
                self.lo, self.hi = 0.0, price * (1.0 - 1e-9)

    def on_price(self, instrument_id: str, price: float, now: int) -> None:
        """Mark the portfolio and the risk gate at a trade, bar close or mid and check liquidation.

        The portfolio ignores the price once marks come; the risk gate is marked as the
        execution engine marks it at a message, so the two agree when the batch loop calls this
        for a message it did not show the execution engine.
        """
        self._execution.mark(instrument_id, price)
        self.check(now)

    def check(self, now: int) -> None:
        """Liquidate every position below maintenance margin (see the module docstring)."""
        account = self.account
        if not self._liquidate or account is None:
            return
        single = self._single
        if single is not None:
            if not account.breached(single):  # one margined instrument: the cheap test of the same condition
                return
            liquidated = [single]
        else:
            liquidated = account.liquidations()
            if not liquidated:
                return
        # The terms of every position first: the cross ones share one margin, read before any close.
        for iid, price, fee, cover in account.liquidation_closes(liquidated):
            self._close(iid, price, fee, cover, now)
        self.note_positions()

    def _close(self, iid: str, price: float, fee: float, cover: float, now: int) -> None:
        account = self.account
        assert account is not None
        portfolio = self._portfolio
        qty = portfolio.position(iid)
        mark = portfolio.last_price(iid)
        liq_price = account.liquidation_price(iid)
        for order in self._orders.open_orders(iid):
            self._execution.cancel(
                CancelOrder(order.strategy_id, iid, order.client_order_id, now, now, reason="liquidation")
            )
        n = next(self._liquidations)
        fill = OrderFilled(
            LIQUIDATION_STRATEGY,
            iid,
            f"{LIQUIDATION_ID_PREFIX}{n}",
            f"{LIQUIDATION_ID_PREFIX}{n}",
            f"{LIQUIDATION_ID_PREFIX}{n}",
            OrderSide.SELL if qty > 0.0 else OrderSide.BUY,
            abs(qty),
            price,
            fee,
            Liquidity.TAKER,
            now,
            now,
        )
        self._on_liquidation_fill(fill)
        self._execution.book_liquidation(fill)
        event = PositionLiquidated(iid, qty, price, liq_price, fee, mark, cover, now, now)
        self.liquidations.append(event)
        self._bus.publish(event)

    # ------------------------------------------------------------------ backtest feed

    def feed(self, messages: Iterable[MarkPrice | FundingRate], deliver: Callable[[Any], None]) -> None:
        """Deliver ``messages`` (sorted by ``ts_init``) at their times through the simulated clock.

        Each message reaches ``deliver`` when the clock reaches its ``ts_init``, before the
        market-data message that moved the clock there; ties keep the given order.
        """
        if not isinstance(self._clock, SimulatedClock):
            raise TypeError("perpetuals: a feed needs a SimulatedClock")
        self._feed = sorted(messages, key=lambda m: m.ts_init)
        self._feed_at = 0
        self._deliver = deliver
        if self._feed:
            self._clock.set_alert(_FEED_ALERT, self._feed[0].ts_init, self._on_feed)

    def _on_feed(self, event: TimeEvent) -> None:
        feed = self._feed
        i = self._feed_at
        self._feeding = True
        try:
            while i < len(feed) and feed[i].ts_init <= event.ts_event:
                self._deliver(feed[i])
                i += 1
        finally:
            self._feeding = False
        self._feed_at = i
        if i < len(feed):
            self._clock.set_alert(_FEED_ALERT, feed[i].ts_init, self._on_feed)
