"""Reconciliation of the live daemon with the venue: at start-up and every ``live.reconcile_interval`` seconds.

:class:`Reconciler` compares what the journal believes with what the venue says, and
resolves each difference by the issue's rules -- never inventing an order, never silently
overwriting a position:

missed fills (start-up)
    Every fill the venue booked while the daemon was down is read from the venue's trade
    history, **per instrument and page by page** (:meth:`~tradebus.execution.live.TradingApi.fills_since`:
    Binance ``myTrades``/``userTrades`` 1,000 a page by ``fromId``; OKX ``trade/fills`` 100 a page
    by ``after``; Bybit ``execution/list`` 100 a page by ``cursor`` in 7-day windows), since the creation of the
    oldest order the journal left open there (less :data:`CLOCK_SKEW_NS`) -- a few requests
    for thousands of fills instead of one trade-list request per order -- and booked once
    each by its trade id (one the user stream or a query booked already is skipped). Only
    then are the orders compared; a venue that does not page its history gets one query per
    journaled open order instead.
open orders
    An order open here that the venue no longer lists as open, lists with more filled, or lists
    with another quantity, price or trigger (amended at the venue unheard:
    :func:`~tradebus.execution.venue.venue_terms`), missed something on the user stream (a dropped fill, a cancel, an
    amend): it is queried by client
    id, and the engine books the missing fills from the venue's trade history (once, by
    trade id) and closes it. Orders still in flight (SUBMITTED, UNKNOWN) are the engine's
    timeouts' business and are left to them.
missed funding (start-up, after every reconnect of the user stream, every round on OKX swaps, and a payment heard without its instrument)
    On a venue whose funding payments are booked (``reports_funding``: Binance USD-M, Bybit
    linear, OKX swaps), a payment settled while the daemon was down or the stream disconnected was never
    heard; on one whose user stream pushes none (``streams_funding`` false: OKX, whose bills list
    them) no payment is heard at all, and the read below is made before every round too. The venue's payments since the latest one booked (none booked: since the run's first
    fill of a perpetual, as the venue stamped both) are read from its income history
    (:meth:`~tradebus.execution.live.TradingApi.funding_since`) and each one not booked yet is
    booked as the stream's would be (once: :meth:`~tradebus.engine.perpetuals.Perpetuals.is_booked`
    against the stream's and the journal's). A payment the stream tells without its instrument
    (Binance USD-M cross margin: :class:`~tradebus.execution.live.FundingUnattributed`) is read
    there at once, again until listed; one the venue lists on a symbol the run does not trade
    (:class:`~tradebus.execution.live.FundingOutsideRun`, a position the account holds beside
    the run) is the account's, not the run's: logged once, never booked.
    It runs beside the rest (:meth:`Reconciler.catch_up_funding`), at start-up once the fills missed
    while down are booked (each payment is booked on the position of its time, :class:`LiveNode`'s
    ``_funding_after_startup``; one the stream tells before the journal's replay is read after it):
    a read that fails is logged and asked again later, and holds up neither orders nor the
    comparisons below.
fills the venue no longer lists
    A query whose answer says the order filled more than the fills the venue lists (its trade
    history keeps a window: OKX 3 days, Bybit 7 days) publishes an ``OrderAnomaly``
    ``MISSING_FILLS`` (:meth:`~tradebus.execution.orders.OrderManager.note_missing_fills`); the
    difference is not booked, and the instrument is held at once (no new orders), with the
    order, the venue's and the booked quantity as the reason. The execution engine queries the
    order again, ``retry_interval`` later and then twice as long each time
    (:data:`~tradebus.execution.engine.MISSING_FILLS_READS` reads: Binance and Bybit list a fill
    seconds after its order counts it), booking each fill listed since once (by trade id); a
    restart queries again each order the journal holds FILLED with less booked than its
    quantity, or CANCELED or EXPIRED with less booked than the venue's filled quantity its
    closing event or query answer reported (``Order.venue_filled_qty``), or with none reported
    (a close that did not tell it: a fill's frame lost before it could not be told from none;
    the answer's is journaled, so a later restart does not ask again; "no such order" for one
    closed longer ago than the venue keeps such orders without fills is that it filled nothing:
    :attr:`~tradebus.execution.live.TradingApi.forgets_unfilled_closed_ns`),
    whose last event is younger than the venue lists an order's fills
    (:attr:`~tradebus.execution.live.TradingApi.fills_history_ns`: Binance USD-M and Bybit 7
    days, OKX 3; Binance spot has no window). Once the reads have booked the fills of every
    order on the instrument that lacked them, its holding is compared with the venue's at once
    (:meth:`Reconciler.check_instrument`) and the instrument resumed if they are equal, without
    waiting for the next round. Otherwise, as any hold here, it is lifted by a round that finds
    the holding equal to the venue's (config ``balances`` set to what the account holds and a
    restart); until then the rounds find the difference and keep it held.
external orders
    An order open at the venue that the journal does not know was placed outside tradebus:
    reported once (a log line and an :class:`ExternalOrder` event) and left alone.
margin settings (start-up, before anything is sent)
    Each perpetual's leverage and margin mode in the config are what the margin account here
    computes with (initial margin, buying power); the venue margins the position with its
    own. :func:`margin_differences` lists where the venue's
    (:meth:`~tradebus.execution.live.TradingApi.margin_settings`) differ, or its account holds
    positions per side (hedge mode), or one contract is worth another amount of the base asset
    there (OKX ``ctVal``: sizes agree in contracts while PnL and notional here would be off by
    their ratio), and the live daemon refuses to start on any.
balances and positions
    After the queries above are answered, each spot instrument's base-asset holding here
    (config ``balances`` plus booked fills) is compared with the venue's balance, and each
    perpetual's position here (booked fills) with the venue's position
    (:meth:`~tradebus.execution.live.TradingApi.positions`, in order units: contracts on OKX
    swaps; none listed is flat). A difference of
    more than half a lot is a mismatch -- at start-up at once; while running only when the
    same difference is seen in two consecutive rounds (a fill in flight between the venue and
    the stream is not a difference). While running, a difference no larger than what the
    instrument's orders in flight could have filled unseen (the unfilled quantity of its
    market orders and of its orders not yet answered, open when the venue was asked or since,
    and of every order that booked a fill meanwhile) is not counted either: a market order
    fills at the venue before the user stream brings the fill here, and a strategy that keeps
    one in flight would otherwise show the same difference round after round. Resting limit
    and stop orders do not count (the round's order comparison has just queried any the
    venue filled), so a market maker's mismatch is still found; a difference the size of an
    order in flight is counted in the rounds where none is.

    A mismatch goes to ``on_mismatch`` (the live daemon: ``live.on_mismatch``; ``hold``
    stops new orders on the instrument, ``reducing`` lets only orders through that reduce
    the holding both here and at the venue), published as an :class:`InstrumentHeld` with
    the reason and the state. It is lifted by a round that finds them equal.
fee assets
    In the same rounds, the balance here of each asset the venue charges fees in that no
    instrument trades (``fee_assets``: Binance's ``BNB``; config ``balances`` less the fees
    booked in it) is compared with the venue's. A difference of more than
    :data:`ASSET_TOLERANCE` is a mismatch by the same rule (at start-up at once, while running
    when seen in two rounds): logged as an error and kept in :attr:`Reconciler.asset_mismatches`
    until a round finds them equal. It holds no instrument (no holding is wrong, only the
    fees' asset); the venue's balance is never copied here.
hedge mode while running
    A perpetual the venue lists per side (``AccountPosition.one_way`` false: the account was
    switched to hedge mode after the start, where one-way orders are refused and its one-way
    position reads as flat) is held (HALTED) with the reason :func:`hedge_mode` gives, as at
    start-up, until a round finds it one-way again. The live daemon holds it as soon as the
    user stream reports such a position.

Every request goes through the venue's :class:`~tradebus.execution.live.TradingApi` and so
through the account's shared rate budget.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Iterable, Mapping, Sequence

import msgspec
from loguru import logger

from tradebus.account import asset_names
from tradebus.engine.clock import iso_ns
from tradebus.engine.instrument import Instrument, InstrumentKind
from tradebus.engine.kernel import Kernel
from tradebus.engine.messages import AnomalyKind, FundingPaid, OrderAnomaly, OrderFilled, OrderStatus, OrderType, TradingState
from tradebus.engine.perpetuals import VENUE_FUNDING_MATCH_NS
from tradebus.execution.live import AccountMargin, FundingOutsideRun, FundingUnattributed, LiveVenue, NoAnswer, VenueRejected
from tradebus.execution.orders import Order
from tradebus.execution.venue import OrderStatusReport, terms_text, venue_terms
from tradebus.strategies.failure import strategy_failure

__all__ = ["ExternalOrder", "InstrumentHeld", "Reconciler", "hedge_mode", "margin_differences"]

_IN_FLIGHT = frozenset({OrderStatus.INITIALIZED, OrderStatus.SUBMITTED, OrderStatus.UNKNOWN})


def _in_flight(order: Order) -> bool:
    """Whether the venue may have filled ``order`` without the fill here yet: a market order, or one not yet answered."""
    return order.order_type is OrderType.MARKET or order.status in _IN_FLIGHT


#: Closes that end an order short of its quantity; the venue may tell its filled quantity then (``Order.venue_filled_qty``) or not.
_CLOSED_UNFILLED = frozenset({OrderStatus.CANCELED, OrderStatus.EXPIRED})


def _described(order: Order) -> str:
    """``instrument side type quantity @ price, filled booked``, for the log (``market`` for no price)."""
    price = "market" if math.isnan(order.price) else f"{order.price:g}"
    return (f"{order.instrument_id} {order.side.name.lower()} {order.order_type.name.lower()} {order.quantity:g} @ {price}, "
            f"{order.filled_qty:g} filled")


def _venue_filled(order: Order) -> float:
    """How much of a closed ``order`` the venue filled, as far as the journal knows (NaN: open, or not known)."""
    status = order.status
    if status is OrderStatus.FILLED:
        return order.quantity
    if status in _CLOSED_UNFILLED:
        return order.venue_filled_qty
    return math.nan


def margin_differences(instruments: Mapping[str, Instrument], settings: list[AccountMargin]) -> list[str]:
    """Where the venue's margin settings of the perpetuals in ``instruments`` differ from the config.

    Parameters
    ----------
    instruments
        ``instrument_id -> Instrument`` of the run (spot instruments are not checked).
    settings
        What the venue reports (:meth:`~tradebus.execution.live.TradingApi.margin_settings`).

    Returns
    -------
    list of str
        One line per difference, naming the instrument, the config's value and the venue's
        (empty: they agree).
    """
    reported = {s.instrument_id: s for s in settings}
    out = []
    for iid, inst in instruments.items():
        if inst.kind is not InstrumentKind.PERPETUAL:
            continue
        venue = reported.get(iid)
        if venue is None:
            out.append(
                f"{iid}: the venue reports no leverage or margin mode for symbol {inst.symbol!r}: "
                "check that the account's market lists it (a misspelt or delisted symbol)"
            )
            continue
        if not venue.one_way:
            out.append(hedge_mode(iid))
        if math.fabs(venue.leverage - inst.leverage) > 1e-9:
            out.append(f"{iid}: leverage {inst.leverage:g} in the config, {venue.leverage:g} at the venue")
        if venue.margin_mode != str(inst.margin_mode):
            out.append(f"{iid}: margin_mode {inst.margin_mode} in the config, {venue.margin_mode} at the venue")
        if venue.contract_size > 0.0 and not math.isclose(venue.contract_size, inst.contract_size, rel_tol=1e-9):
            out.append(f"{iid}: contract_size {inst.contract_size:g} in the config, {venue.contract_size:g} at the venue "
                       "(the base asset one contract of an order's size is worth)")
    return out


#: Largest difference of a fee asset's balance that is no mismatch: the venues give balances to 8 decimals.
ASSET_TOLERANCE = 1e-8


def hedge_mode(instrument_id: str) -> str:
    """What is wrong with a perpetual the account holds per side (hedge mode), at start-up and while running."""
    return f"{instrument_id}: the account is in hedge mode (positions per side); orders here are one-way"


#: How far before an order's local creation time its venue trades are looked for (clocks differ).
CLOCK_SKEW_NS = 60_000_000_000
#: Longest wait, seconds, between two failed reads of the venue's funding payments.
FUNDING_RETRY_CAP_S = 60.0
#: Reads made for a payment the user stream told without its instrument before it is left to the next
#: reconnect's read (the venue's list may show it a moment after the stream told it; not documented).
FUNDING_UNLISTED_READS = 5


class InstrumentHeld(msgspec.Struct, frozen=True):
    """Orders on an instrument stop (``reason``) or resume (``reason == ""``) after a reconciliation.

    ``state``: HALTED (no new order), REDUCING (only orders reducing the holding) or ACTIVE (resumed).
    """

    instrument_id: str
    reason: str
    ts_event: int
    ts_init: int
    state: TradingState = TradingState.HALTED


class ExternalOrder(msgspec.Struct, frozen=True):
    """An order open at the venue that this journal did not place (reported, left alone)."""

    client_order_id: str
    venue_order_id: str
    status: OrderStatus
    filled_qty: float
    ts_event: int
    ts_init: int


class Reconciler:
    """Compares the kernel's orders and holdings with the venue's (see the module docstring).

    Parameters
    ----------
    kernel
        The daemon's kernel (orders, portfolio, bus, execution engine).
    venue
        The live venue (its ``api`` asks the exchange; its queries settle orders).
    hold
        ``(instrument_id, reason)``: stop new orders on the instrument (``""``: resume).
    settle_timeout
        Seconds to wait for the queries of a round before comparing balances.
    on_mismatch
        ``(instrument_id, reason, difference)`` of a persisting holding mismatch
        (``difference``: here minus at the venue, see :meth:`holding`); default ``hold``.
    fee_assets
        Assets no instrument trades that the venue charges fees in, compared with the venue's
        balances (the module docstring).
    """

    def __init__(
        self,
        kernel: Kernel,
        venue: LiveVenue,
        hold: Callable[[str, str], None],
        settle_timeout: float,
        on_mismatch: Callable[[str, str, float], None] | None = None,
        fee_assets: Iterable[str] = (),
    ) -> None:
        self.kernel = kernel
        self.venue = venue
        self.hold = hold
        self.on_mismatch = on_mismatch if on_mismatch is not None else lambda iid, reason, _diff: hold(iid, reason)
        self.settle_timeout = settle_timeout
        #: Every external order reported so far.
        self.external: list[OrderStatusReport] = []
        #: Differences resolved (orders queried) over all rounds.
        self.differences = 0
        #: Periodic rounds ended so far, counted as each ends (one that raised too): a round
        #: begun after a change has compared it once this count has grown by two.
        self.rounds = 0
        #: Fills booked from the venue's paged trade history at start-up.
        self.fills_caught_up = 0
        #: Funding payments booked from the venue's income history (not heard on the user stream).
        self.funding_caught_up = 0
        # The earliest time a funding catch-up still has to read from, and how many were asked for.
        self._funding_from: int | None = None
        self._funding_asked = 0
        # Payments the user stream told without their instrument, not yet seen in the venue's list.
        self._funding_unattributed: list[FundingUnattributed] = []
        # The venue's payments on symbols outside the run already logged (symbol, time).
        self._funding_outside: set[tuple[str, int]] = set()
        self._suspect: dict[str, float] = {}
        traded = {asset for inst in kernel.instruments.values() for asset in asset_names(inst)}
        self.fee_assets = tuple(sorted(set(fee_assets) - traded))
        #: ``asset -> (balance here, balance at the venue)`` of each fee asset found to differ.
        self.asset_mismatches: dict[str, tuple[float, float]] = {}
        self._asset_suspect: dict[str, float] = {}
        # Per comparison waiting for the venue, the client order ids of the fills booked meanwhile.
        self._waiting: list[set[str]] = []
        #: Checks of one instrument ended so far (:meth:`check_instrument`: the fills its orders lacked are booked).
        self.checks = 0
        # Per instrument, its orders whose venue says they filled more than it lists (MISSING_FILLS), not listed since.
        self._fills_missing: dict[str, set[str]] = {}
        self._checking: set[asyncio.Task[None]] = set()
        self._starting = False
        kernel.execution.on_fills_listed = self._fills_listed
        kernel.bus.subscribe(OrderFilled, self._note_fill)
        kernel.bus.subscribe(OrderAnomaly, self._on_anomaly)

    def _on_anomaly(self, anomaly: OrderAnomaly) -> None:
        """Hold the instrument of an order the venue says filled more than the fills it lists."""
        if anomaly.kind is AnomalyKind.MISSING_FILLS:
            self._fills_missing.setdefault(anomaly.instrument_id, set()).add(anomaly.client_order_id)
            self.hold(anomaly.instrument_id, f"order {anomaly.client_order_id}: {anomaly.detail}; orders on it stay "
                      "stopped until the holding here equals the venue's")

    def _fills_listed(self, order: Order) -> None:
        """The fills ``order`` lacked are booked: check its instrument at once unless another order on it still lacks fills."""
        iid = order.instrument_id
        missing = self._fills_missing.get(iid, set())
        missing.discard(order.client_order_id)
        if missing or self._starting:  # the start-up's comparison follows
            return
        self._fills_missing.pop(iid, None)
        task = asyncio.get_running_loop().create_task(self.check_instrument(iid), name=f"reconcile:check-{iid}")
        self._checking.add(task)
        task.add_done_callback(self._checking.discard)

    async def check_instrument(self, instrument_id: str) -> None:
        """Compare the holding of one instrument with the venue's now and resume it if they are equal.

        Asked as soon as the fills its orders lacked (``MISSING_FILLS``) are booked, so that its
        hold does not wait for the next round. As a round, it resumes the instrument whatever held
        it when the holdings are equal; a difference, a position held per side or no answer
        leaves the hold to the rounds (nothing is counted towards a mismatch here).
        :attr:`checks` counts it as it ends.
        """
        inst = self.kernel.instruments[instrument_id]
        api = self.venue.api
        try:
            balances: dict[str, float] = {}
            positions: dict[str, float] = {}
            if inst.kind is InstrumentKind.PERPETUAL:
                listed = [p for p in await api.positions() if p.instrument_id == instrument_id]
                if not all(p.one_way for p in listed):
                    return
                positions = {p.instrument_id: p.quantity for p in listed}
            else:
                balances = {b.asset: b.free + b.locked for b in await api.balances()}
        except Exception as exc:  # noqa: BLE001 - no answer: the rounds compare it
            logger.warning("reconciliation: {}: balances or positions unavailable ({}: {}); it stays held until a round "
                           "finds its holding equal to the venue's", instrument_id, type(exc).__name__, exc)
            return
        finally:
            self.checks += 1
        unit, there = _venue_holding(inst, balances, positions)
        here = self.holding(instrument_id)
        if math.fabs(here - there) > inst.lot_size / 2:
            logger.info("reconciliation: {}: {} {} here, {} at the venue with the missing fills booked; it stays held "
                        "until a round finds them equal", instrument_id, here, unit, there)
            return
        logger.info("reconciled {}: the missing fills booked, {} {} held, as at the venue", instrument_id, here, unit)
        self._suspect.pop(instrument_id, None)
        self.hold(instrument_id, "")

    async def aclose(self) -> None:
        """Cancel the checks of :meth:`check_instrument` still running."""
        for task in list(self._checking):
            task.cancel()
        await asyncio.gather(*self._checking, return_exceptions=True)

    async def catch_up_fills(self) -> bool:
        """Book the fills of the journal's open orders missed while down, from each instrument's paged trade history.

        Returns ``False`` (nothing asked) when the venue does not page its trade history.
        Raises what the venue's requests raise (:class:`~tradebus.execution.live.NoAnswer` ...).
        """
        by_instrument: dict[str, dict[str, Order]] = {}
        for order in self.kernel.orders.open_orders():
            if order.venue_order_id:
                by_instrument.setdefault(order.instrument_id, {})[order.venue_order_id] = order
        execution = self.kernel.execution
        for iid, orders in by_instrument.items():
            since = min(o.ts_created for o in orders.values()) - CLOCK_SKEW_NS
            fills = await self.venue.api.fills_since(iid, orders, since)
            if fills is None:
                return False
            booked = 0
            for fill in fills:
                if fill.trade_id not in orders[fill.venue_order_id].trade_ids:
                    execution.on_venue_event(fill)
                    booked += 1
            self.fills_caught_up += booked
            logger.info("reconciliation: {}: {} fill(s) in the venue's trade history of {} open order(s), {} missed and booked",
                        iid, len(fills), len(orders), booked)
        return True

    def funding_missed(self, heard: FundingUnattributed | None = None) -> bool:
        """Note that the venue may have paid funding unheard (a restart, a stream reconnect); whether a catch-up is due.

        It reads from the latest payment booked (the journal's too), else from the run's first
        fill of a perpetual (none: no position of this run, nothing paid to it), or from an
        earlier time still pending: times the venue stamped, never this machine's clock.
        ``heard``: a payment the user stream told without its instrument; the read reaches back
        to it and is made again until the venue lists a payment in its asset at its time.
        """
        kernel = self.kernel
        perpetuals = kernel.perpetuals
        if perpetuals is None or not self.venue.reports_funding:
            return False
        since = perpetuals.last_funding_ns()
        if since is None:
            since = perpetuals.first_fill_ns
        if heard is not None:
            self._funding_unattributed.append(heard)
            earliest = heard.ts_event - VENUE_FUNDING_MATCH_NS
            since = earliest if since is None else min(since, earliest)
        if since is None:
            return False
        self._funding_from = since if self._funding_from is None else min(self._funding_from, since)
        self._funding_asked += 1
        return True

    @property
    def funding_pending(self) -> bool:
        """Whether a funding catch-up :meth:`funding_missed` noted has not yet booked what the venue answered."""
        return self._funding_from is not None

    async def catch_up_funding(self, retry: float) -> None:
        """Book the venue's funding payments not booked yet, read from the time :meth:`funding_missed` noted.

        A read that fails (:class:`~tradebus.execution.live.NoAnswer`,
        :class:`~tradebus.execution.live.VenueRejected`) is logged and made again ``retry``
        seconds later (doubled each time, up to :data:`FUNDING_RETRY_CAP_S`); one asked for
        while a read is out is made after it. So is one that does not list a payment the user
        stream told without its instrument (:meth:`funding_missed` ``heard``), up to
        :data:`FUNDING_UNLISTED_READS` reads in all. A read that booked a payment is logged at INFO, one that
        booked none at DEBUG (a venue whose stream does not push its payments is read every round).
        """
        perpetuals = self.kernel.perpetuals
        assert perpetuals is not None
        delay = retry
        unlisted_reads = 0
        while self._funding_from is not None:
            since, asked = self._funding_from, self._funding_asked
            try:
                paid = await self.venue.api.funding_since(since)
            except (NoAnswer, VenueRejected) as exc:
                logger.warning("reconciliation: the venue's funding payments unavailable ({}: {}); asking again in {:g} s",
                               type(exc).__name__, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2.0, FUNDING_RETRY_CAP_S)
                continue
            if self._funding_asked == asked:
                self._funding_from = None
            if paid is None:
                self._funding_unattributed.clear()
                return
            booked = 0
            for payment in paid:
                if type(payment) is FundingOutsideRun:
                    self._outside_run(payment)
                elif not perpetuals.is_booked(payment):
                    self.kernel.execution.on_venue_event(payment)
                    booked += 1
            self.funding_caught_up += booked
            # a venue read every round (OKX) lists what is booked already: only a booking is news
            logger.log("INFO" if booked else "DEBUG",
                       "reconciliation: {} funding payment(s) at the venue since {}, {} missed and booked",
                       len(paid), iso_ns(since), booked)
            self._funding_unattributed = self._unlisted(paid)
            if self._funding_unattributed and self._funding_from is None:
                unlisted_reads += 1
                unlisted = ", ".join(f"{h.payment} {h.asset} at {iso_ns(h.ts_event)}" for h in self._funding_unattributed)
                if unlisted_reads >= FUNDING_UNLISTED_READS:
                    logger.error("reconciliation: funding payment(s) {} told by the user stream without their instrument are "
                                 "not listed by the venue after {} reads: not booked until the next reconnect reads again",
                                 unlisted, unlisted_reads)
                    self._funding_unattributed.clear()
                    return
                logger.warning("reconciliation: funding payment(s) {} told by the user stream without their instrument not "
                               "listed by the venue yet; reading again in {:g} s", unlisted, delay)
                self._funding_from = since
                await asyncio.sleep(delay)
                delay = min(delay * 2.0, FUNDING_RETRY_CAP_S)

    def _outside_run(self, payment: FundingOutsideRun) -> None:
        """Log once a payment the venue lists on a symbol the run does not trade (the account's, never booked)."""
        key = (payment.symbol, payment.ts_event)
        if key not in self._funding_outside:
            self._funding_outside.add(key)
            logger.info("reconciliation: a funding payment of {} {} on {} at {} not booked: not a symbol of this run",
                        payment.payment, payment.asset, payment.symbol, iso_ns(payment.ts_event))

    def _unlisted(self, paid: Sequence[FundingPaid | FundingOutsideRun]) -> list[FundingUnattributed]:
        """The payments told without their instrument that ``paid`` does not list.

        Each listed payment in the asset at the time (:data:`VENUE_FUNDING_MATCH_NS`), the run's
        or not, accounts for one told: several settled at one time are each read until listed.
        """
        instruments = self.kernel.instruments
        listed = [
            (p.asset if type(p) is FundingOutsideRun else instruments[p.instrument_id].quote, p.ts_event)
            for p in paid
            if type(p) is FundingOutsideRun or p.instrument_id in instruments
        ]
        unlisted = []
        for heard in self._funding_unattributed:
            match = next((k for k, (asset, ts) in enumerate(listed)
                          if asset == heard.asset and abs(ts - heard.ts_event) <= VENUE_FUNDING_MATCH_NS), None)
            if match is None:
                unlisted.append(heard)
            else:
                del listed[match]
        return unlisted

    async def startup(self, unknown: list[Order], venue_open: list[OrderStatusReport]) -> None:
        """Start-up: the missed fills from the trade history, then each order the journal left open resolved, external ones reported.

        ``unknown`` are the orders the journal replay left UNKNOWN (every order open when the
        previous process stopped); ``venue_open`` the venue's open orders read at connection.
        After the fills are booked, the venue's open orders are read again: an UNKNOWN order
        it lists, with no more filled than booked here, is resolved from that list (no
        request); any other is queried by client id. A venue that does not page its trade
        history gets a query of each. An order the journal holds closed with less booked than
        the venue filled (FILLED: its quantity; CANCELED or EXPIRED: the venue's filled quantity
        its closing event or query answer reported; a query found the venue's trade history
        lacking fills: ``MISSING_FILLS``), or CANCELED or EXPIRED by a close that did not tell
        the venue's filled quantity (once: the answer's is journaled), is queried again, its fills listed since booked, unless its last
        event is older than the venue lists an order's fills
        (:attr:`~tradebus.execution.live.TradingApi.fills_history_ns`).
        """
        kernel = self.kernel
        execution = kernel.execution
        self._starting = True  # until compare_balances(startup=True)
        try:
            paged = await self.catch_up_fills()
            if paged and unknown:
                venue_open = await self.venue.api.open_orders()
        except (NoAnswer, VenueRejected) as exc:
            logger.warning("reconciliation: trade history unavailable ({}: {}); querying every open order", type(exc).__name__, exc)
            paged = False
        venue_open = self.as_ours(venue_open)
        there = {r.client_order_id: r for r in venue_open} if paged else {}
        listed = 0
        for order in unknown:
            if order.status is not OrderStatus.UNKNOWN:
                continue  # closed or moved by the fills just booked; compared below
            report = there.get(order.client_order_id)
            if report is not None and report.filled_qty <= order.filled_qty + 1e-12:
                self.venue.answer(report)
                listed += 1
                how = "the venue lists it open with no more filled: taken from that list"
            else:
                how = "asking the venue about it (a query by its client order id)"
            logger.info("reconciliation: order {} ({}) was open when the daemon last stopped; its state at the venue is "
                        "unknown here (UNKNOWN) until the venue tells it: {}; the start-up reconciliation holds its "
                        "instrument (no new order) until it ends", order.client_order_id, _described(order), how)
            execution.resolve_unknown(order.client_order_id)
        if unknown:
            logger.info("reconciliation: {} order(s) recovered open; {} resolved from the venue's open orders, {} queried",
                        len(unknown), listed, sum(1 for o in unknown if o.status is OrderStatus.UNKNOWN))
        window = self.venue.api.fills_history_ns
        oldest = None if window is None else kernel.clock.now_ns() - window
        asked: list[Order] = []
        for order in self.kernel.orders.orders():
            venue_filled = _venue_filled(order)
            untold = venue_filled != venue_filled and order.status in _CLOSED_UNFILLED
            if untold or venue_filled > order.filled_qty * (1.0 + 1e-9):
                of = "of a quantity its close did not tell" if untold else f"of {venue_filled:g}"
                if oldest is not None and order.ts_last < oldest:
                    logger.info("reconciliation: order {} ({}) journaled {} with {:g} booked {} the venue filled, last heard "
                                "of {:.1f} h ago: beyond the {:g} h the venue lists an order's fills, not queried",
                                order.client_order_id, order.instrument_id, order.status, order.filled_qty, of,
                                (oldest + window - order.ts_last) / 3.6e12, window / 3.6e12)  # fmt: skip
                    continue
                logger.warning("reconciliation: order {} ({}) journaled {} with {:g} booked {} the venue filled; querying "
                               "its fills", order.client_order_id, order.instrument_id, order.status, order.filled_qty, of)  # fmt: skip
                asked.append(order)
        if asked:
            logger.info("reconciliation: {} closed order(s) journaled with fewer fills booked than the venue may have filled, "
                        "last heard of within the venue's fills window: querying them (through the account's rate budget)",
                        len(asked))  # fmt: skip
        for order in asked:
            self.venue.track(order)
            execution.reconcile_order(order.client_order_id)
        if paged:
            self.compare_orders(venue_open, {})  # read before any amend of this process
        self.report_external(venue_open)

    def as_ours(self, venue_open: list[OrderStatusReport]) -> list[OrderStatusReport]:
        """The venue's open orders, each under the client id of the order here it is: its own, or, for one the venue
        renamed (Binance spot's amend keeping priority gives the order a new client id unless the user sends one), the
        id of the open order here of its instrument and venue order id (Binance spot numbers orders per symbol: an
        order of another symbol may carry the same id; a report naming no instrument matches none) (the venue then
        :meth:`~tradebus.execution.live.LiveVenue.renamed`), on a venue that renames
        (:attr:`~tradebus.execution.live.TradingApi.renames_on_amend`): elsewhere an unknown client id is another
        order's, whatever its venue order id (another id space: an OKX algo order's ``algoId``, a USD-M ``algoId``)."""
        orders = self.kernel.orders
        renames = self.venue.api.renames_on_amend
        by_venue_id: dict[tuple[str, str], Order] | None = None
        out = []
        for report in venue_open:
            coid = report.client_order_id
            if orders.get(coid) is None:
                order = self.venue.order(coid)
                if order is None and renames:
                    if by_venue_id is None:
                        by_venue_id = self._open_by_venue_id()
                    order = by_venue_id.get((report.instrument_id, report.venue_order_id)) if report.venue_order_id else None
                    if order is not None:
                        self.venue.renamed(coid, order)
                if order is not None:
                    report = msgspec.structs.replace(report, client_order_id=order.client_order_id)
            out.append(report)
        return out

    def _open_by_venue_id(self) -> dict[tuple[str, str], Order]:
        """The open orders here the venue numbered, by instrument id and venue order id (Binance spot numbers orders
        per symbol: an order of another symbol may carry the same id)."""
        return {(o.instrument_id, o.venue_order_id): o for o in self.kernel.orders.open_orders() if o.venue_order_id}

    def open_order_at_venue(self, instrument_id: str, venue_order_id: str) -> Order | None:
        """The open order here of ``instrument_id`` the venue numbers ``venue_order_id``, as :meth:`as_ours` finds an
        order the venue renamed (``None``: none, or no id given): the user stream's frame of an amend that renamed it
        (Binance spot's ``x=REPLACED``, under the new client id) finds it so."""
        return self._open_by_venue_id().get((instrument_id, venue_order_id)) if venue_order_id else None

    def report_external(self, venue_open: list[OrderStatusReport]) -> None:
        """Report, once each, the venue's open orders the journal does not know (by client id or venue order id: :meth:`as_ours`)."""
        known = {r.client_order_id for r in self.external}
        for report in self.as_ours(venue_open):
            coid = report.client_order_id
            if self.kernel.orders.get(coid) is not None or coid in known:
                continue
            self.external.append(report)
            known.add(coid)
            logger.warning(
                "external order {} (venue id {}) open at the venue, not placed by this journal: left alone",
                coid,
                report.venue_order_id,
            )
            now = self.kernel.clock.now_ns()
            self.kernel.bus.publish(ExternalOrder(coid, report.venue_order_id, report.status, report.filled_qty, now, now))

    def compare_orders(self, venue_open: list[OrderStatusReport], marks: dict[str, tuple[int, int]]) -> int:
        """Query every order whose venue state differs from ours (see the module docstring); how many.

        ``marks``: the venue's :meth:`~tradebus.execution.live.LiveVenue.amend_marks` before ``venue_open`` was read;
        an order amended by this process meanwhile is compared by its fills alone (the list may tell either terms).
        """
        there = {r.client_order_id: r for r in self.as_ours(venue_open)}
        differences = 0
        for order in self.kernel.orders.open_orders():
            if order.status in _IN_FLIGHT:
                continue
            report = there.get(order.client_order_id)
            coid = order.client_order_id
            terms = None if report is None or self.venue.amended_since(marks, coid) else venue_terms(order, report)
            if report is not None and report.filled_qty <= order.filled_qty + 1e-12 and terms is None:
                continue
            differences += 1
            if report is None:
                venue_side = "not open"
            elif terms is None:
                venue_side = f"filled {report.filled_qty}"
            else:
                venue_side = f"filled {report.filled_qty}, {terms_text(*terms)}"
            # A market order's fill is usually just on its way; a resting order's is a lost event.
            logger.log(
                "INFO" if order.order_type is OrderType.MARKET else "WARNING",
                "reconciliation: order {} is {} (filled {}) here but {} at the venue; querying it",
                order.client_order_id,
                order.status.name,
                order.filled_qty,
                venue_side,
            )
            self.venue.track(order)
            self.kernel.execution.reconcile_order(order.client_order_id)
        self.differences += differences
        return differences

    async def compare_balances(self, *, startup: bool) -> None:
        """Compare each spot holding with the venue's balance and each perpetual position with the venue's; hold or release."""
        instruments = self.kernel.instruments
        perpetual = {iid for iid, inst in instruments.items() if inst.kind is InstrumentKind.PERPETUAL}
        api = self.venue.api
        working = {o.client_order_id: o.quantity - o.filled_qty for o in self.kernel.orders.open_orders() if _in_flight(o)}
        booked: set[str] = set()
        self._waiting.append(booked)
        try:
            read_balances = len(perpetual) < len(instruments) or bool(self.fee_assets)
            balances = {b.asset: b.free + b.locked for b in await api.balances()} if read_balances else {}
            listed = await api.positions() if perpetual else []
        except Exception as exc:  # noqa: BLE001 - no answer: at start-up every instrument stays held
            logger.warning("reconciliation: balances or positions unavailable ({}: {})", type(exc).__name__, exc)
            if startup:
                for iid in instruments:
                    self.hold(iid, f"live start-up: balances unavailable ({type(exc).__name__}: {exc})")
            return
        finally:
            self._waiting.remove(booked)
            if startup:
                self._starting = False
        positions = {p.instrument_id: p.quantity for p in listed if p.one_way}
        hedged = {p.instrument_id for p in listed if not p.one_way}
        explained = {} if startup else self._fillable(working, booked)
        for iid, inst in instruments.items():
            if iid in hedged:  # switched while running: one-way orders are refused, its positions are per side
                reason = f"reconciliation: {hedge_mode(iid)}; orders on it stay stopped (switch it back to one-way mode)"
                logger.error(reason)
                self.hold(iid, reason)
                continue
            here = self.holding(iid)
            unit, there = _venue_holding(inst, balances, positions)
            diff = here - there
            if math.fabs(diff) <= inst.lot_size / 2:
                self._suspect.pop(iid, None)
                self._fills_missing.pop(iid, None)
                self.hold(iid, "")
                if startup:
                    logger.info("reconciled {}: {} {} held, as at the venue", iid, here, unit)
                continue
            fillable = explained.get(iid, 0.0)
            if math.fabs(diff) <= fillable + inst.lot_size / 2:
                logger.debug("reconciliation: {}: {} {} here, {} at the venue; orders in flight for {}, not counted",
                             iid, here, unit, there, fillable)
                continue
            previous = self._suspect.get(iid)
            self._suspect[iid] = diff
            if not startup and (previous is None or math.fabs(previous - diff) > inst.lot_size / 2):
                logger.warning("reconciliation: {}: {} {} here, {} at the venue; checking again next round", iid, here, unit, there)
                continue
            reason = f"reconciliation: {iid}: {here} {unit} held here but {there} at the venue; orders on it stay stopped ({_remedy(inst)})"
            logger.error(reason)
            self.on_mismatch(iid, reason, diff)
        if read_balances:
            self.compare_fee_assets(balances, startup=startup)

    def compare_fee_assets(self, balances: Mapping[str, float], *, startup: bool) -> None:
        """Compare each fee asset's balance here with the venue's ``balances`` (``asset -> total``); report a mismatch."""
        account = self.kernel.portfolio.account
        for asset in self.fee_assets:
            here, there = account.balance(asset), balances.get(asset, 0.0)
            diff = here - there
            if math.fabs(diff) <= ASSET_TOLERANCE:
                self._asset_suspect.pop(asset, None)
                if self.asset_mismatches.pop(asset, None) is not None or startup:
                    logger.info("reconciled {}: {} held, as at the venue (fee asset)", asset, here)
                continue
            previous = self._asset_suspect.get(asset)
            self._asset_suspect[asset] = diff
            if not startup and (previous is None or math.fabs(previous - diff) > ASSET_TOLERANCE):
                logger.warning("reconciliation: {}: {} here, {} at the venue; checking again next round", asset, here, there)
                continue
            if self.asset_mismatches.get(asset) != (here, there):
                logger.error(
                    "reconciliation: {}: {} held here but {} at the venue (an asset the venue charges fees in: "
                    "config balances.{} less the fees booked in it); set balances.{} in the config, or check the account",
                    asset, here, there, asset, asset,
                )
            self.asset_mismatches[asset] = (here, there)

    def _note_fill(self, fill: OrderFilled) -> None:
        for booked in self._waiting:
            booked.add(fill.client_order_id)

    def _fillable(self, working: dict[str, float], booked: set[str]) -> dict[str, float]:
        """Per instrument, what its orders could have filled unseen while the venue was asked.

        ``working``: the unfilled quantity of each order in flight when the request went out;
        ``booked``: the orders that booked a fill since.
        """
        orders = self.kernel.orders
        out: dict[str, float] = {}
        for coid in working.keys() | booked | {o.client_order_id for o in orders.open_orders() if _in_flight(o)}:
            order = orders.get(coid)
            if order is not None:
                iid = order.instrument_id
                out[iid] = out.get(iid, 0.0) + working.get(coid, order.quantity)
        return out

    def holding(self, instrument_id: str) -> float:
        """What is compared with the venue: a perpetual's position, a spot instrument's base-asset balance."""
        portfolio = self.kernel.portfolio
        inst = self.kernel.instruments[instrument_id]
        if inst.kind is InstrumentKind.PERPETUAL:
            return portfolio.position(instrument_id)
        return portfolio.account.balance(inst.base)

    async def round(self) -> None:
        """One periodic round: open orders, external orders, then (queries answered) balances; :attr:`rounds` counts it as it ends."""
        try:
            marks = self.venue.amend_marks()
            venue_open = await self.venue.api.open_orders()
            self.compare_orders(venue_open, marks)
            self.report_external(venue_open)
            await self.venue.drain(self.settle_timeout, "reconciliation round")
            await self.compare_balances(startup=False)
        finally:
            self.rounds += 1

    async def run(self, interval: float, each_round: Callable[[], None] | None = None) -> None:
        """A round every ``interval`` seconds until cancelled (a round without answers is logged and skipped).

        ``each_round()``, when given, is called before each round (the live daemon: a read of the
        funding paid, on a venue whose user stream does not push it). An exception from a
        strategy's hook (on an event the round booked) ends the rounds with it.
        """
        while True:
            await asyncio.sleep(interval)
            if each_round is not None:
                each_round()
            try:
                await self.round()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - NoAnswer / VenueRejected: the next round asks again
                if strategy_failure(exc, None) is not None:
                    raise  # a strategy's hook raised on an event the round booked: the daemon stops on it
                logger.warning("reconciliation round {} failed: {}: {}", self.rounds, type(exc).__name__, exc)


def _remedy(inst: Instrument) -> str:
    """What an operator can do about a holding of ``inst`` that differs from the venue's."""
    if inst.kind is InstrumentKind.PERPETUAL:
        # A journal's position comes from its fills only: no config setting starts it at the venue's.
        return "close the position at the venue to start flat, or check the account"
    return "set balances in the config, or check the account"


def _venue_holding(inst: Instrument, balances: Mapping[str, float], positions: Mapping[str, float]) -> tuple[str, float]:
    """What the venue holds of ``inst`` (its one-way position, or its base asset's balance) and the unit it is in."""
    if inst.kind is InstrumentKind.PERPETUAL:
        held = f"{inst.base} position" if inst.contract_size == 1.0 else f"contracts of {inst.contract_size:g} {inst.base}"
        return held, positions.get(inst.instrument_id, 0.0)
    return inst.base, balances.get(inst.base, 0.0)
