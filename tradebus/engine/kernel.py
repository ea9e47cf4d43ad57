"""The kernel: wires the bus, clock, features, strategies, risk, orders, venue and portfolio.

One :class:`Kernel` serves every mode. Each market-data message goes through the
same steps, in this order:

1. the clock moves to the message's ``ts_init`` (a simulated clock first fires
   every timer due at or before it);
2. the execution engine sees it (the venue matches working orders, the
   portfolio marks, the risk gate updates prices and breakers; a book update
   marks both at the book's mid), so an order
   decided on an earlier event can fill on this one but never on the event it
   was decided on (on bars: only on a bar that opened at or after the order
   arrived, whichever instrument or timer it was decided on);
3. the cache stores it and the instrument's feature bank is updated;
4. it is published on the bus to the strategies (and any other subscriber);
5. the equity curve is sampled when the message crosses a sampling boundary.

Two entry points run these steps:

* :meth:`Kernel.process` takes one message (paper and live daemons hand it what
  their asyncio adapters receive; a backtest can too).
* :meth:`Kernel.run` is the backtest loop over ``Replay.batches()``. It produces
  exactly the orders, fills and equity samples of :meth:`process` on the same
  data, faster: the optimised loop lives in :mod:`tradebus.engine.batch`
  (:class:`~tradebus.engine.batch.BatchLoop`), which drives this kernel's parts and
  skips the execution engine while nothing is working; :meth:`Kernel.submit` asks it
  to catch up before each order.

The kernel does no I/O: results are collected in memory (:class:`RunResult`)
and written by :mod:`tradebus.reports.writers`.
"""

from __future__ import annotations

import itertools
import math
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import msgspec
import numpy as np
from loguru import logger

from tradebus.account import MarginAccount, borrow_assets
from tradebus.engine.batch import BatchLoop
from tradebus.engine.bus import MessageBus
from tradebus.engine.cache import Cache, FeatureView
from tradebus.engine.clock import Clock, SimulatedClock, iso_ns
from tradebus.engine.history import History
from tradebus.engine.instrument import Instrument
from tradebus.engine.interest import BorrowInterest
from tradebus.engine.messages import (
    AlgoEnded,
    AlgoStarted,
    Bar,
    BookDelta,
    BookDepth,
    BookSnapshot,
    CancelOrder,
    ContingentLinked,
    FundingPaid,
    FundingRate,
    InterestCharged,
    Liquidity,
    MarkPrice,
    ModifyOrder,
    OpenInterest,
    OrderAccepted,
    OrderCancelRejected,
    OrderCanceled,
    OrderDenied,
    OrderExpired,
    OrderFilled,
    OrderModified,
    OrderModifyRejected,
    OrderReplaced,
    OrderRejected,
    OrderSubmitted,
    OrderTriggered,
    PositionChanged,
    PositionLiquidated,
    Quote,
    SubmitOrder,
    Trade,
    TradesMissed,
    TradingState,
)
from tradebus.engine.perpetuals import Perpetuals
from tradebus.engine.portfolio import Portfolio
from tradebus.engine.replay_book import ReplayBook
from tradebus.errors import ConfigError, DataError, FeatureError
from tradebus.execution.config import VenueConfig
from tradebus.execution.contingent import ContingentOrders
from tradebus.execution.costs import charged_fees
from tradebus.execution.engine import ExecutionEngine, OrderTimeouts
from tradebus.execution.orders import ACCOUNT_CLOSES, Order, OrderManager, OrderResolved, closing_event
from tradebus.execution.book_matching import simulated_venue
from tradebus.execution.client_ids import ClientIdRule
from tradebus.execution.simulated import SimulatedVenue
from tradebus.execution.venue import Venue
from tradebus.features.bank import FeatureBank
from tradebus.features.bars import BarBuilder
from tradebus.features.spec import FeatureSpec
from tradebus.risk.config import RiskConfig
from tradebus.risk.gate import RiskGate
from tradebus.strategies.algo_recovery import AlgoRecovery
from tradebus.strategies.algos import number_after
from tradebus.strategies.base import Strategy, feature_only, is_feature_only
from tradebus.strategies.context import KernelContext
from tradebus.strategies.failure import raise_strategy_failure

if TYPE_CHECKING:
    from tradebus.execution.journal import Journal

__all__ = ["EquitySample", "FillRecord", "JournaledSample", "Kernel", "RiskFactory", "RunResult"]

#: Builds a risk gate from ``(risk_config, portfolio, clock, bus)``.
RiskFactory = Callable[[RiskConfig, Portfolio, Clock, MessageBus], RiskGate]

#: Strategy handler name per order/position event type.
_EVENT_HANDLERS: dict[type, str] = {
    OrderSubmitted: "on_order_submitted",
    OrderAccepted: "on_order_accepted",
    OrderRejected: "on_order_rejected",
    OrderDenied: "on_order_denied",
    OrderTriggered: "on_order_triggered",
    OrderModified: "on_order_modified",
    OrderModifyRejected: "on_order_modify_rejected",
    OrderCancelRejected: "on_order_cancel_rejected",
    OrderReplaced: "on_order_replaced",
    OrderFilled: "on_order_filled",
    OrderCanceled: "on_order_canceled",
    OrderExpired: "on_order_expired",
}
#: Events an ``OrderResolved`` may stand for (:func:`~tradebus.execution.orders.closing_event`).
_CLOSING_EVENTS = (OrderCanceled, OrderExpired, OrderRejected)
_DATA_HANDLERS: dict[type, str] = {Bar: "on_bar", Trade: "on_trade", Quote: "on_quote"}
#: Messages stamped at a funding time after whose handling it is settled: a bar's fills happen within
#: it, before the close it is stamped at; a mark first values the position at that time. Any other
#: message, and a bar or mark stamped after the funding time, settles it before its handlers, so a
#: trade or quote at or after a funding time, or a bar opening at or after it, fills after the payment
#: (a funding inside a bar whose open may fill an order is held until that bar is matched, Perpetuals).
_SETTLED_AFTER = (Bar, MarkPrice)
#: The last price of a position (an equity sample's marks).
_LAST_PRICE = operator.attrgetter("last_price")
#: ``Liquidity -> its value`` (``Enum.value`` is a slow descriptor; fills are recorded in the hot path).
_LIQUIDITY_NAMES: dict[str, str] = {member: member.value for member in Liquidity}


class ReplayLike(Protocol):
    """What :meth:`Kernel.run` needs of a replay: merged-order batches.

    A replay that also has ``mixed_batches()`` (:meth:`tradebus.data.replay.Replay.mixed_batches`)
    is read through it: batches of kind ``"mixed_bars"`` hold rows of several instruments.
    """

    def batches(self) -> Iterable[Any]:
        """Runs of consecutive rows of one source, in merged order."""


class FillRecord(msgspec.Struct, frozen=True, gc=False):
    """One fill as written to ``fills.csv``; ``reason`` is the reason the order was submitted.

    ``fee`` is in the quote currency (:meth:`~tradebus.engine.portfolio.Portfolio.fee_value`).
    ``fee_in_kind`` is the part of it a venue took in the base asset, out of the coins bought
    (:meth:`~tradebus.engine.portfolio.Portfolio.fee_in_kind`; 0 for a fee in any other asset):
    the position moved by :attr:`position_change`, not by the quantity.
    """

    ts_event: int
    instrument_id: str
    side: str
    quantity: float
    price: float
    fee: float
    liquidity: str
    client_order_id: str
    strategy_id: str
    trade_id: str
    reason: str
    fee_in_kind: float = 0.0

    @property
    def position_change(self) -> float:
        """What the fill moved its instrument's position by: the signed quantity less :attr:`fee_in_kind`."""
        return (self.quantity if self.side == "BUY" else -self.quantity) - self.fee_in_kind


class EquitySample(msgspec.Struct, frozen=True, gc=False):
    """The portfolio at one sampling time (after the event at ``ts`` was processed)."""

    ts: int
    equity: float
    cash: float
    position_value: float
    realized_pnl: float
    unrealized_pnl: float
    fees_paid: float
    funding_paid: float = 0.0
    margin: float = 0.0
    maintenance_margin: float = 0.0
    #: Borrowing interest charged so far (margin spot loans, :mod:`tradebus.engine.interest`).
    interest_paid: float = 0.0
    #: Last price of each instrument (in ``RunResult.instruments`` order; NaN before its first price).
    marks: tuple[float, ...] = ()
    #: ``(ts, instrument_id, price)`` of the first price of each instrument this sample is the first
    #: to price, where that price came before ``ts``, or at ``ts`` and later prices of that time moved
    #: it (in time order): buy & hold starts there.
    first_prices: tuple[tuple[int, str, float], ...] = ()


class JournaledSample(msgspec.Struct, frozen=True):
    """An equity sample as a daemon journals it (:meth:`Journal.record_sample`), with the run so far.

    A daemon restarted on its journal takes the samples back (:meth:`Kernel.restore_samples`):
    its ``equity.csv`` and metrics then cover every session on the journal. The latest sample's
    span and counts are the run's up to it (every session's, as each restart restores them).
    """

    sample: EquitySample
    #: The instruments of ``sample.marks``, in their order.
    instruments: tuple[str, ...]
    #: :attr:`RunResult.initial_cash` (the first sample's valuation of the starting balances).
    initial_cash: float
    start_ns: int | None
    end_ns: int | None
    #: The venue-time span of the trades and bars (``None``: none yet), and of the quotes.
    first_event_ns: int | None
    last_event_ns: int | None
    quote_first_ns: int | None
    quote_last_ns: int | None
    bars: int
    trades: int
    quotes: int


@dataclass(slots=True)
class RunResult:
    """Everything a run produced, in memory (the writers turn it into files).

    ``start_ns``/``end_ns`` are the ``ts_init`` (receive time, the kernel's clock) of the first
    and last market-data message (book messages included: a run on a book source or book stream
    alone has its span and final sample); ``first_event_ns``/``last_event_ns`` the earliest and
    latest ``ts_event`` (venue time) of the trades and bars, or of the quotes and book messages in
    a run with neither (some venues' quotes carry no venue time: Binance spot
    ``bookTicker`` quotes are stamped with their receive time).
    """

    instruments: tuple[str, ...]
    initial_cash: float
    start_ns: int | None = None
    end_ns: int | None = None
    first_event_ns: int | None = None
    last_event_ns: int | None = None
    bars: int = 0
    trades: int = 0
    quotes: int = 0
    #: Book messages (snapshots and deltas) processed, a backtest's or a daemon's feeds' (its router's
    #: summary counts them by type too).
    book: int = 0
    fills: list[FillRecord] = field(default_factory=list)
    orders: list[Order] = field(default_factory=list)
    submit_reasons: dict[str, str] = field(default_factory=dict)
    denials: list[OrderDenied] = field(default_factory=list)
    equity: list[EquitySample] = field(default_factory=list)
    #: ``instrument_id -> price`` the portfolio values it at when the run ends (a perpetual's mark
    #: price once it has one, else its latest trade, close or mid, else the fill price of a position
    #: never marked, as a daemon's restart on its journal holds one; marks the positions in attribution).
    last_prices: dict[str, float] = field(default_factory=dict)
    funding: list[FundingPaid] = field(default_factory=list)
    #: For each payment of :attr:`funding`, in order, how many of :attr:`fills` were booked before it:
    #: where it fell among the fills of its time (attribution shares it by the positions they left).
    funding_fills: list[int] = field(default_factory=list)
    #: Charges of borrowing interest (``None``: the run sets no borrow rates; see :mod:`tradebus.engine.interest`).
    interest: list[InterestCharged] | None = None
    contract_sizes: dict[str, float] = field(default_factory=dict)
    #: ``instrument_id -> amount`` of the initial holdings of non-cash assets (``balances: {BTC: 1}``),
    #: each under the instrument that values it (see :class:`~tradebus.engine.portfolio.Portfolio`).
    holdings: dict[str, float] = field(default_factory=dict)
    #: ``instrument_id -> (base, quote)`` of each margin spot instrument (those that borrow).
    borrow_assets: dict[str, tuple[str, str]] = field(default_factory=dict)
    liquidations: list[PositionLiquidated] = field(default_factory=list)
    #: ``asset -> fees`` charged in an asset no instrument of the run priced, not in the fills' fees
    #: (:attr:`~tradebus.engine.portfolio.Portfolio.fees_unvalued`, taken when the run stops).
    fees_unvalued: dict[str, float] = field(default_factory=dict)
    #: The portfolio's equity when the run stopped (positions at their last price: the fill price
    #: of one never marked); the final equity of a run that took no equity sample (no market data).
    equity_at_stop: float | None = None

    @property
    def events(self) -> int:
        """Market-data messages processed: bars, trades, quotes and book messages."""
        return self.bars + self.trades + self.quotes + self.book


class Kernel:
    """Runs strategies against a stream of market data.

    Parameters
    ----------
    instruments
        Every instrument of the run.
    clock
        Time source; a fresh :class:`SimulatedClock` when omitted (backtest).
    venue
        Where orders go; a :class:`SimulatedVenue` built from ``venue_config``
        when omitted.
    venue_config, risk_config
        Simulated venue and risk gate settings (defaults: no fees override, no limits).
    risk_factory
        Builds the risk gate from ``(risk_config, portfolio, clock, bus)`` (the kernel's own
        portfolio and bus); :class:`RiskGate` when omitted. Daemons pass a gate with extra
        checks (a :class:`RiskGate` subclass, or a ``functools.partial`` binding its extras).
    journal
        Journal of every order command and event (paper and live daemons), and of every equity
        sample (:class:`JournaledSample`); none in a backtest.
    initial_cash
        Starting balance of the reporting currency (the first instrument's quote asset).
    balances
        Starting balance of every asset (``{"USDT": 10_000, "BTC": 0.5}``), instead of
        ``initial_cash``; see :class:`~tradebus.engine.portfolio.Portfolio` for how equity values them.
        The equity samples start once every coin held has a price (:meth:`sample_equity`).
    fee_assets
        Assets no instrument trades that the venue charges fees in (a live Binance account's
        ``BNB``): ``balances`` may name them (:class:`~tradebus.engine.portfolio.Portfolio`).
    features
        Extra feature specs computed on every instrument (strategies add their own).
    equity_interval_ns
        Spacing of the equity-curve samples (a sample is taken at the first event at
        or after each multiple of the interval).
    timeouts
        Timeouts of venue requests (a live venue, whose answers can be lost); ``None``: none
        (see :class:`~tradebus.execution.engine.OrderTimeouts`).
    trade_bars
        ``instrument_id -> BarBuilder``: bars built in the run from that instrument's trades.
        The trade that completes a bar is processed first; then the bar (``ts_event`` its
        stamp, ``ts_init`` the trade's) goes to the cache, the feature bank (bar features),
        the history window and the ``on_bar`` subscribers. It is not fed to the execution
        engine: orders on the instrument fill on its trades. Each builder's ``contract_size``
        must be its instrument's (bars count base units, not contracts; refused otherwise).
    borrow_rates
        ``asset -> annual rate`` of borrowing interest on margin spot loans (simulated venues
        only; ``None``: none charged, see :mod:`tradebus.engine.interest`).
    bar_instruments
        The instruments the run delivers bars of (received or replayed; the ``trade_bars`` ones
        are added). ``None``: not known, until :meth:`run` reads them from its replay's sources.
        A bracket that counts bars on an instrument with none is refused
        (:mod:`tradebus.execution.contingent`).
    joins_mid_stream
        The run joins markets already trading (a paper or live daemon, and its playback): the
        first trades it sees come inside a bar whose earlier trades it never saw. Strategies
        read it (``context.joins_mid_stream``) to drop the partial first bar of the bars they
        build themselves, as ``trade_bars`` builders made with ``whole_only`` do.
    client_id_rules
        ``instrument_id -> the form of client order id its venue takes``
        (:func:`tradebus.adapters.registry.client_id_rules`), or a function returning it, called at
        the first id a strategy gives itself: an order whose id breaks it is denied before it is
        sent, in a backtest as live (none: any id is sent).
    """

    def __init__(
        self,
        instruments: Iterable[Instrument],
        *,
        clock: Clock | None = None,
        venue: Venue | None = None,
        venue_config: VenueConfig | None = None,
        risk_config: RiskConfig | None = None,
        risk_factory: RiskFactory = RiskGate,
        journal: Journal | None = None,
        initial_cash: float = 100_000.0,
        balances: Mapping[str, float] | None = None,
        fee_assets: Iterable[str] = (),
        features: Sequence[FeatureSpec] = (),
        equity_interval_ns: int = 3_600_000_000_000,
        timeouts: OrderTimeouts | None = None,
        trade_bars: Mapping[str, BarBuilder] | None = None,
        borrow_rates: Mapping[str, float] | None = None,
        bar_instruments: Iterable[str] | None = None,
        joins_mid_stream: bool = False,
        client_id_rules: Mapping[str, ClientIdRule] | Callable[[], Mapping[str, ClientIdRule]] | None = None,
    ) -> None:
        self.instruments: dict[str, Instrument] = {}
        fees = (None, None) if venue_config is None else (venue_config.maker_fee, venue_config.taker_fee)
        for instrument in instruments:
            # the venue's fee overrides are the rates every account check counts, as its fills charge them
            instrument = charged_fees(instrument, *fees)
            if instrument.instrument_id in self.instruments:
                raise ConfigError(f"kernel: duplicate instrument {instrument.instrument_id!r}")
            self.instruments[instrument.instrument_id] = instrument
        if not self.instruments:
            raise ConfigError("kernel: at least one instrument is required")
        if equity_interval_ns <= 0:
            raise ConfigError(f"kernel: equity_interval_ns must be > 0, got {equity_interval_ns}")
        self.clock: Clock = clock if clock is not None else SimulatedClock()
        self.bus = MessageBus()
        self.portfolio = Portfolio(self.instruments, initial_cash, balances, fee_assets)
        self._positions = {iid: self.portfolio.position_state(iid) for iid in self.instruments}
        self.orders = OrderManager(
            self.bus, self.clock, fee_value=self.portfolio.fee_value, fee_in_kind=self.portfolio.fee_in_kind
        )
        self.risk_config = risk_config or RiskConfig()
        self.risk = risk_factory(self.risk_config, self.portfolio, self.clock, self.bus)
        self._marks_deferred = self.risk_config.breakers_on_marks
        if self._marks_deferred:
            self.risk.defer_marks()  # evaluated in before_time, once every price of a time is in
        self.venue: Venue = (
            venue if venue is not None else simulated_venue(self.clock, self.instruments, venue_config or VenueConfig())
        )
        orders = self.orders
        self.portfolio.account.bind(orders.open_orders, self.portfolio.last_price, orders.count_open)
        self.portfolio.account.track(orders)
        if isinstance(self.venue, SimulatedVenue):
            self.venue.funds_check = self.portfolio.account.check_fill
            self.venue.fill_room = self.portfolio.account.oco_room
        self.execution = ExecutionEngine(
            self.bus, self.clock, self.instruments, self.risk, self.orders, self.venue, self.portfolio, journal, timeouts,
            client_id_rules,
        )
        self.cache = Cache(self.portfolio, self.orders)
        self.strategies: list[Strategy] = []
        self.banks: dict[str, FeatureBank] = {}
        #: ``instrument_id -> History`` of the instruments whose history a strategy asked for.
        self.histories: dict[str, History] = {}
        #: ``strategy_id -> instrument_id -> signed quantity`` of each strategy's own fills in the
        #: instruments several strategies trade, where :meth:`strategy_position` reads it (a strategy
        #: alone on its instrument holds the net position; its fills are not summed here). A
        #: liquidation fill scales every strategy's position in the instrument by the fraction of
        #: the net position it left: zero after a whole liquidation, pro rata after a partial one; so
        #: does a flatten's (:data:`~tradebus.execution.orders.ACCOUNT_CLOSES`).
        self.strategy_positions: dict[str, dict[str, float]] = {}
        # Instruments traded by more than one strategy (their net position is shared), as the
        # strategies are added: a journal replayed before the start books their fills.
        self._shared: frozenset[str] = frozenset()
        #: What the strategies see of this kernel (their narrow view of the run).
        self.context = KernelContext(
            self.clock, self.instruments, self.portfolio, self.orders, self.cache, self.banks, self.bus,
            self.submit, self.cancel, self.modify, self.equity, self.strategy_position, self.trading_state,
            self.risk.reducing_room, self.histories, lambda: self.contingent, joins_mid_stream,
        )  # fmt: skip
        self.result = RunResult(tuple(self.instruments), self.portfolio.initial_cash)
        self.result.contract_sizes = {iid: inst.contract_size for iid, inst in self.instruments.items()}
        self.result.holdings = self.portfolio.holdings
        self.result.borrow_assets = borrow_assets(self.instruments)
        self._extra_features = tuple(features)
        unknown_bars = sorted(set(trade_bars or {}) - set(self.instruments))
        if unknown_bars:
            raise ConfigError(f"kernel: trade_bars for unknown instrument(s) {unknown_bars}")
        for iid, builder in sorted((trade_bars or {}).items()):
            if builder.contract_size != self.instruments[iid].contract_size:
                raise ConfigError(
                    f"kernel: trade_bars of {iid} are built with contract_size {builder.contract_size:g}, the "
                    f"instrument's is {self.instruments[iid].contract_size:g}: its bars would not count base units"
                )
        #: ``instrument_id -> BarBuilder``: bars built in the run from the instrument's trades.
        self.trade_bars: dict[str, BarBuilder] = dict(trade_bars or {})
        #: The instruments the run delivers bars of (``None``: not known; see ``bar_instruments``).
        self.bar_instruments: frozenset[str] | None = (
            None if bar_instruments is None else frozenset(bar_instruments) | frozenset(self.trade_bars)
        )
        self._equity_interval = equity_interval_ns
        self._journal = journal
        #: ``ts_init`` at or after which the next equity sample is due.
        self.next_sample_ns = -(2**63)
        #: A message at or after this ``ts_init`` calls :meth:`before_time` first.
        self.watch_ns = -(2**63)
        #: ``(instrument_id, lo, hi)`` of the latest :meth:`before_time`: until the time it returned,
        #: the batch loops call it again only at the time after a price of ``instrument_id`` at or
        #: beyond ``lo`` or ``hi`` (a band of an instrument that is ``None`` holds every price), or after
        #: a fill, a funding, a liquidation check or a timer.
        self.mark_band: tuple[str | None, float, float] = (None, -math.inf, math.inf)
        self._sample_due: int | None = None  # the time of a due sample not taken yet
        # instrument -> (ts_init, price) of its first price, until a sample shows it (note_first_price).
        self._first_prices: dict[str, tuple[int, float]] = {}
        # The instruments the restored samples of a previous process priced (restore_samples).
        self._restored_priced: set[str] = set()
        # The starting holdings the first sample waited for a price of (asset -> valuing instrument;
        # None: it did not wait), and the time each got one.
        self._holdings_wait: dict[str, str] | None = None
        self._holdings_priced_at: dict[str, int] = {}
        # run() refuses a backtest whose starting holdings are not all priced from its start.
        self._refuse_unpriced_holdings = False
        # Venue-time span of the quotes and book messages: the run's span only when it has no
        # trades or bars.
        self._quote_first_ns: int | None = None
        self._quote_last_ns: int | None = None
        # Whether start() was called (once: a start that raised is not tried again), and the strategies whose
        # on_start returned, in order: only they are ended (at_stop, on_stop).
        self._started = False
        self._running: list[Strategy] = []
        self._prepared = False
        self._stopped = False
        self._strategies_ended = False
        # The backtest loop of run(), and what it skipped while nothing was working.
        self._loop = BatchLoop(self)
        self._dispatch: dict[type, Callable[[Any], None]] = {
            Bar: self._process_bar,
            Trade: self._process_trade,
            Quote: self._process_quote,
            BookSnapshot: self._process_book,
            BookDelta: self._process_book,
            MarkPrice: self.bus.publish,
            FundingRate: self.bus.publish,
            OpenInterest: self.bus.publish,
            BookDepth: self.bus.publish,
        }
        #: The kernel's own subscribers of order events (the run's record; they read no cached bar).
        self.bookkeeping: tuple[Callable[[Any], None], ...] = (self._record_fill, self.result.denials.append)
        self.bus.subscribe(OrderFilled, self._record_fill)
        self.bus.subscribe(OrderDenied, self.result.denials.append)
        on_book = getattr(self.venue, "on_book", None)
        if on_book is not None:  # a fill_on: book venue sees each book update before the strategies
            self.bus.subscribe(BookSnapshot, on_book)
            self.bus.subscribe(BookDelta, on_book)
        # The books of the book messages this kernel processes (a backtest's), for the strategies'
        # cache.book where no feed adapter keeps one (see _process_book).
        self._replay_books: dict[str, ReplayBook | None] = {}
        # Instruments whose top of book is locked or crossed now -> [since (ns), messages so far] (_crossed_top).
        self._crossed: dict[str, list[int]] = {}
        # The venue's book, for the books no feed adapter keeps (a backtest's; see _mark_book).
        self._venue_touch: Callable[[str], tuple[float, float]] | None = getattr(self.venue, "touch", None)
        # Through the bus, after the venue: _process_book publishes each book message there (a daemon's too).
        self.bus.subscribe(BookSnapshot, self._mark_book)
        self.bus.subscribe(BookDelta, self._mark_book)
        #: Brackets, OCO, trailing stops, GTD and timed exits; built at start when a strategy
        #: declares ``contingent = True`` (see :mod:`tradebus.execution.contingent`).
        self.contingent: ContingentOrders | None = None
        # Contingent links of a previous process (journal replay), restored at start.
        self._journaled_links: list[ContingentLinked] = []
        #: Of those, the two-request cancel-replace intents the previous process left in flight
        #: (no replacement submitted, no cancel, no refusal after them): ``replaced id -> link``.
        self.journaled_replaces: dict[str, ContingentLinked] = {}
        #: The one-request cancel-replace intents that tell what their replacement was sized on
        #: (``params["sized_on"]``): ``replacement id -> link``.
        self.journaled_swaps: dict[str, ContingentLinked] = {}
        # Marks, funding and liquidation of perpetuals and margin spot instruments (None without any).
        self.perpetuals: Perpetuals | None = None
        if any(not inst.cash_only for inst in self.instruments.values()):
            self.perpetuals = Perpetuals(
                self.instruments,
                self.portfolio,
                self.execution,
                self.orders,
                self.bus,
                self.clock,
                liquidate=isinstance(self.venue, SimulatedVenue),
                settle_funding=not self.venue.reports_funding,
                on_liquidation_fill=self._note_liquidation,
                bar_venue=self.venue if isinstance(self.venue, SimulatedVenue) and self.venue.config.fill_on == "bars"
                else None,
            )
            self.execution.on_venue_funding = self.perpetuals.on_venue_funding
            self.execution.on_venue_liquidation = self.perpetuals.on_venue_liquidation
            self.result.funding = self.perpetuals.funding
            self.result.liquidations = self.perpetuals.liquidations
            # Through the bus: the kernel's handlers first, then any strategy's. A daemon that
            # publishes the mark and funding messages of its feeds reaches the account this way.
            self.perpetuals.on_first_mark = self._note_first_mark
            self.bus.subscribe(MarkPrice, self.perpetuals.on_mark)
            self.bus.subscribe(FundingRate, self.perpetuals.on_funding)
            self.bus.subscribe(FundingPaid, self._record_funding)
            self._dispatch[MarkPrice] = self.bus.publish
            self._dispatch[FundingRate] = self.bus.publish
        #: Borrowing interest of margin spot loans (``None`` unless ``borrow_rates`` are given).
        self.interest: BorrowInterest | None = None
        if borrow_rates is not None:
            if self.perpetuals is None or not isinstance(self.venue, SimulatedVenue):
                raise ConfigError(
                    "kernel: borrow rates need a margin spot instrument and a simulated venue (a live venue "
                    "charges its own interest)"
                )
            self.interest = BorrowInterest(
                borrow_rates, self.instruments, self.portfolio, self.clock, self.bus,
                sync=self.sync_marks, wallet_changed=self.perpetuals.wallet_changed,
                priced=self.cache.prices.__contains__,
            )  # fmt: skip
            self.result.interest = self.interest.charges
            self.bus.subscribe(OrderFilled, self.interest.on_fill)  # after _record_fill: the bounds are then current
            self.bookkeeping += (self.interest.on_fill,)
        if journal is not None:
            # Wallet movements outside fills, journaled as they happen: a restart books them again.
            self.bus.subscribe(InterestCharged, journal.record_wallet)
            self.bus.subscribe(FundingPaid, journal.record_wallet)
            if self.perpetuals is not None:  # fundings announced or held and not paid yet: a restart settles them
                self.perpetuals.on_due = journal.save_funding_due
            # Execution algorithms' starts and ends: a restart ends the ones left working (AlgoRecovery).
            self.bus.subscribe(AlgoStarted, lambda msg: journal.record_command(msg, ""))
            self.bus.subscribe(AlgoEnded, lambda msg: journal.record_command(msg, ""))
        #: The execution algorithms a journal replay found working (ended before the strategies start).
        self.algo_recovery = AlgoRecovery()

    # ------------------------------------------------------------------ set-up

    def add_strategy(self, strategy: Strategy) -> None:
        """Register a strategy (before :meth:`start`).

        Raises
        ------
        ConfigError
            If the kernel already started, the strategy id is taken or is one of the fills no
            strategy sends (:data:`~tradebus.execution.orders.ACCOUNT_CLOSES`), or the strategy
            names an unknown instrument.
        """
        if self._prepared:
            raise ConfigError(f"kernel: cannot add strategy {strategy.strategy_id!r} after start")
        if strategy.strategy_id in ACCOUNT_CLOSES:
            raise ConfigError(
                f"kernel: strategy id {strategy.strategy_id!r} is the id of the fills no strategy sends, which close "
                f"every strategy's position (a liquidation's, a flatten's: {sorted(ACCOUNT_CLOSES)})"
            )
        if any(s.strategy_id == strategy.strategy_id for s in self.strategies):
            raise ConfigError(f"kernel: strategy id {strategy.strategy_id!r} is already used")
        unknown = [iid for iid in strategy.instrument_ids if iid not in self.instruments]
        if unknown:
            raise ConfigError(f"strategy {strategy.strategy_id!r}: unknown instrument(s) {unknown}")
        strategy.bind(self.context)
        self.strategies.append(strategy)
        traded = [iid for added in self.strategies for iid in added.instrument_ids]
        self._shared = frozenset(iid for iid in traded if traded.count(iid) > 1)

    def start(self) -> None:
        """Build the feature banks, subscribe the strategies and call their ``on_start``.

        Called once: a start that raised is not tried again, and only the strategies whose ``on_start``
        returned are ended (:meth:`end_strategies`).

        Raises
        ------
        StrategyError
            An ``on_start`` raised (names the strategy; the original exception is chained).
        FeatureError
            As :meth:`prepare`.
        """
        if self._started:
            return
        self._started = True
        self.prepare()
        if self.interest is not None:
            self.interest.resume(self.clock.now_ns())  # loans a journal replay restored
        try:
            self._interrupt_journaled_algos()
            for strategy in self.strategies:
                strategy.on_start()
                self._running.append(strategy)
        except Exception as exc:
            raise_strategy_failure(exc, self.clock.now_ns())

    def _interrupt_journaled_algos(self) -> None:
        """End the execution algorithms a previous process left working (see :mod:`tradebus.strategies.algo_recovery`)."""
        recovery = self.algo_recovery
        if not recovery.pending:
            return
        recovery.interrupt(self.strategies, self.orders, self.cancel, self.bus.publish, self.clock.now_ns())
        if recovery.pending:  # children the live start-up has not settled with the venue yet
            orders, cancel = self.orders, self.cancel
            self.bus.subscribe(OrderResolved, lambda event: recovery.on_resolved(event, orders, cancel))

    def feature_specs(self) -> dict[str, list[FeatureSpec]]:
        """The specs of each instrument's feature bank (those with any): the kernel's own, then its strategies'.

        Raises
        ------
        StrategyError
            A strategy's ``feature_specs`` raised (names the strategy; the original exception is chained).
        """
        banks: dict[str, list[FeatureSpec]] = {}
        for iid in self.instruments:
            specs = list(self._extra_features)
            try:
                for strategy in self.strategies:
                    if iid in strategy.instrument_ids:
                        specs.extend(strategy.feature_specs(iid))
            except Exception as exc:
                raise_strategy_failure(exc, None)  # before any message: no event's time
            if specs:
                banks[iid] = _dedupe(specs)
        return banks

    def check_features(self) -> dict[str, list[FeatureSpec]]:
        """:meth:`feature_specs`, each bank's checked as :meth:`prepare` checks it, nothing compiled.

        A daemon calls it as it is built: a bad spec is refused before its warm-up compiles the banks (a minute or
        more on a cold cache) and before it opens a socket.

        Raises
        ------
        FeatureError
            A feature spec cannot be built (names the feature), or a feature is driven by book events, which the
            kernel does not feed to feature banks.
        """
        banks = self.feature_specs()
        for iid, specs in banks.items():
            _refuse_book_features(FeatureBank.driving_events(specs), iid)
        return banks

    def compile_features(self) -> None:
        """Compile (or load from the disk cache) the drivers of the feature banks :meth:`prepare` builds.

        A daemon calls it in its warm-up thread: the banks :meth:`prepare` then builds on the event
        loop find their drivers compiled (they are kept per process, by their generated source).

        Raises
        ------
        FeatureError
            As :meth:`check_features`.
        """
        for specs in self.check_features().values():
            FeatureBank(specs)

    def prepare(self) -> None:
        """Build the feature banks, histories and contingent orders and subscribe the strategies.

        The part of :meth:`start` before ``on_start``: a backtest calls it before reading its
        data, so that a bad feature spec fails first, and :meth:`run` then calls ``on_start``
        at the first message's time. Idempotent; strategies can no longer be added.

        Raises
        ------
        FeatureError
            A feature spec cannot be built, or a feature is driven by book events, which the
            kernel does not feed to feature banks.
        StrategyError
            A strategy's ``history_sizes`` raised (names the strategy; the original exception is chained).
        """
        if self._prepared:
            return
        self._prepared = True
        banks = self.check_features()
        for iid in self.instruments:
            specs = banks.get(iid)
            if specs:
                bank = FeatureBank(specs)
                self.banks[iid] = bank
                view = FeatureView(bank.columns)
                view.row = self._live_outputs(bank)
                self.cache.feature_views[iid] = view
            try:
                sizes = [s.history_sizes(iid) for s in self.strategies if iid in s.instrument_ids]
            except Exception as exc:
                raise_strategy_failure(exc, None)  # before any message: no event's time
            bars = max((size.get("bars", 0) for size in sizes), default=0)
            trades = max((size.get("trades", 0) for size in sizes), default=0)
            if bars or trades:
                self.histories[iid] = History(bars, trades)
        if any(getattr(strategy, "contingent", False) for strategy in self.strategies):
            # Before the strategies subscribe: it sees each bar and fill first.
            self.contingent = ContingentOrders(self)
            # A two-request cancel-replace's intent ended by the previous process is left out.
            alive = {id(link) for link in self.journaled_replaces.values()}
            self.contingent.restore([
                link for link in self._journaled_links
                if link.kind != "replace" or link.order_ids[1] or id(link) in alive
            ])
        for strategy in self.strategies:
            self._subscribe(strategy)

    def _subscribe(self, strategy: Strategy) -> None:
        cls = type(strategy)
        for msg_type, name in _DATA_HANDLERS.items():
            if getattr(cls, name) is not getattr(Strategy, name):
                for iid in strategy.instrument_ids:
                    self.bus.subscribe(msg_type, getattr(strategy, name), iid)
        if cls.on_position_changed is not Strategy.on_position_changed:
            for iid in strategy.instrument_ids:
                self.bus.subscribe(PositionChanged, strategy.on_position_changed, iid)
        for event_type, name in _EVENT_HANDLERS.items():
            if getattr(cls, name) is not getattr(Strategy, name):
                self.bus.subscribe(event_type, _only_for(strategy.strategy_id, getattr(strategy, name)))
        if any(getattr(cls, _EVENT_HANDLERS[t]) is not getattr(Strategy, _EVENT_HANDLERS[t]) for t in _CLOSING_EVENTS):
            self.bus.subscribe(OrderResolved, _only_for(strategy.strategy_id, self._resolved_hook(strategy)))

    def _resolved_hook(self, strategy: Strategy) -> Callable[[OrderResolved], None]:
        """Call the strategy's hook of the event a query's answer stands for (:func:`closing_event`)."""
        orders = self.orders

        def on_resolved(event: OrderResolved) -> None:
            order = orders.get(event.client_order_id)
            closed = closing_event(event, order.filled_qty if order is not None else math.nan)
            if closed is not None:
                getattr(strategy, _EVENT_HANDLERS[type(closed)])(closed)

        return on_resolved

    # ------------------------------------------------------------------ commands

    def submit(self, cmd: SubmitOrder) -> None:
        """Send an order command through the risk gate to the venue (strategies call this).

        The portfolio and the risk gate are brought up to the latest prices first (the
        backtest loop skips marking while nothing is working; see :meth:`sync_marks`).
        """
        self.result.submit_reasons[cmd.client_order_id] = cmd.reason
        loop = self._loop
        if not loop.needs_execution or loop.lagging:
            loop.catch_up()
        self.execution.submit(cmd)

    def trading_state(self) -> TradingState:
        """The risk gate's trading state as an order submitted now would meet it (marks caught up first)."""
        loop = self._loop
        if not loop.needs_execution or loop.lagging:
            loop.catch_up()
        return self.risk.current_state()

    def sync_marks(self) -> None:
        """Mark the portfolio and the risk gate at every instrument's latest price.

        Idempotent: it repeats the marks the execution engine made for the latest
        message of each instrument, or makes the ones :meth:`run` skipped while no
        order was working (no breaker evaluates marks then, so skipping a
        mark changes nothing but the cached prices).
        """
        moved = self.portfolio.mark_moved(self.cache.prices)
        if moved:
            self.risk.on_prices(moved)

    def equity(self) -> float:
        """Portfolio equity at the latest prices."""
        self.sync_marks()
        return self.portfolio.equity()

    def strategy_position(self, strategy_id: str, instrument_id: str) -> float:
        """The position a strategy holds in an instrument.

        The portfolio's net position when the strategy is the only one trading the instrument
        (what the run traded: an initial holding, ``balances: {BTC: 0.5}``, is no position); the
        net of the strategy's own fills when several do.
        """
        if instrument_id in self._shared:
            return self.strategy_positions.get(strategy_id, {}).get(instrument_id, 0.0)
        pos = self._positions.get(instrument_id)  # Portfolio.position, inlined: asked on every order
        return 0.0 if pos is None else pos.quantity

    def cancel(self, cmd: CancelOrder) -> None:
        """Forward a cancel command to the execution engine (a strategy may cancel only its own orders)."""
        if not self._foreign(cmd, "cancel"):
            self.execution.cancel(cmd)

    def modify(self, cmd: ModifyOrder) -> None:
        """Forward a modify command to the execution engine (a strategy may modify only its own orders, and
        may not raise an OCO member above its group, nor modify an exit resting in a venue's OCO order list:
        :meth:`ContingentOrders.refused_raise <tradebus.execution.contingent.ContingentOrders.refused_raise>`,
        :meth:`~tradebus.execution.contingent.ContingentOrders.refused_in_list`)."""
        if self._foreign(cmd, "modify"):
            return
        contingent = self.contingent
        if contingent is not None and (contingent.refused_raise(cmd) or contingent.refused_in_list(cmd)):
            return
        self.execution.modify(cmd)

    def _foreign(self, cmd: CancelOrder | ModifyOrder, what: str) -> bool:
        """Deny (``OrderDenied`` to the asking strategy) a command on another strategy's order."""
        order = self.orders.get(cmd.client_order_id)
        if order is None:
            return False
        reason = self.risk.check_owner(cmd.strategy_id, cmd.client_order_id, order.strategy_id)
        if reason is None:
            return False
        logger.info("{} of {} denied: {}", what, cmd.client_order_id, reason)
        now = self.clock.now_ns()
        denied = OrderDenied(cmd.strategy_id, order.instrument_id, cmd.client_order_id, f"{what}: {reason}", now, now)
        self.bus.publish(denied)
        return True

    def record_journaled(self, msg: Any) -> None:
        """Add a message of a previous process (journal replay) to this run's results.

        Pass it as ``on_message`` to :meth:`Journal.replay`: journaled submit reasons, fills,
        denials, interest charges and funding payments reach the results as if this run had made
        them, so the outputs after a restart hold the whole history of the journal (the replay
        books the charges and payments on the portfolio). An algorithm's start has the strategy
        name its next algorithms after it (:func:`~tradebus.strategies.algos.number_after`).
        """
        cls = type(msg)
        if cls is SubmitOrder or cls is AlgoStarted or cls is AlgoEnded:
            self.algo_recovery.note(msg)
        if cls is AlgoStarted:
            for strategy in self.strategies:
                if strategy.strategy_id == msg.strategy_id:
                    number_after(strategy, msg.name)
        if cls is SubmitOrder:
            self.result.submit_reasons[msg.client_order_id] = msg.reason
        elif cls is OrderFilled:
            self._record_fill(msg)
        elif cls is OrderDenied:
            self.result.denials.append(msg)
        elif cls is ContingentLinked:
            self._journaled_links.append(msg)
            if msg.kind == "replace":
                old, new = msg.order_ids
                self.journaled_replaces.pop(old, None)
                if not new:
                    self.journaled_replaces[old] = msg
                elif "sized_on" in msg.params:
                    self.journaled_swaps[new] = msg
        elif cls is CancelOrder or cls is OrderModifyRejected:
            self.journaled_replaces.pop(msg.client_order_id, None)  # a two-request cancel-replace it ended
        elif cls is InterestCharged:
            if self.interest is not None:
                self.interest.restore(msg)
            else:  # the config no longer sets borrow rates: the charges were paid all the same
                if self.result.interest is None:
                    self.result.interest = []
                self.result.interest.append(msg)
        elif cls is FundingPaid:
            self._record_funding(msg)
            if self.perpetuals is not None:
                self.perpetuals.restore(msg)
            else:  # the config no longer trades the perpetual: the payment was made all the same
                self.result.funding.append(msg)

    # ------------------------------------------------------------------ generic path

    def process(self, msg: Any) -> None:
        """Run one market-data message through the kernel (see the module docstring).

        Raises
        ------
        DataError
            If the message is of an unsupported type or names an unknown instrument.
        """
        if not self._started:
            if isinstance(self.clock, SimulatedClock):
                # on_start at the first message's time, as in run(): a timer it sets counts from there
                self.clock.set_time(msg.ts_init)
            self.start()
        handler = self._dispatch.get(type(msg))
        if handler is None:
            raise DataError(f"kernel: cannot process a {type(msg).__name__} message")
        if msg.instrument_id not in self.instruments:
            raise DataError(f"kernel: {type(msg).__name__} for unknown instrument {msg.instrument_id!r}")
        if msg.ts_init >= self.watch_ns:
            self.before_time(msg.ts_init)
        clock = self.clock
        if isinstance(clock, SimulatedClock):
            clock.advance_to(msg.ts_init)
        perps = self.perpetuals
        if perps is not None and msg.ts_init >= perps.next_funding_ns:
            # the position held at the funding time pays, not this message's fills (a bar or mark at
            # that time settles it after them)
            if type(msg) is Bar:
                perps.settle_due(
                    msg.ts_init, before=True, bar=msg.instrument_id, opening=msg.open, closing=msg.ts_event
                )
            else:
                perps.settle_due(msg.ts_init, before=type(msg) in _SETTLED_AFTER)
        handler(msg)
        if perps is not None:
            if type(msg) is Bar:
                perps.note_bar(msg.instrument_id, msg.ts_event)
            perps.settle_due(msg.ts_init)
            if perps.watching and type(msg) is not MarkPrice:
                perps.check(msg.ts_init)

    def feed_perpetual_data(self, messages: Iterable[MarkPrice | FundingRate]) -> None:
        """Deliver mark prices and funding rates at their ``ts_init`` during :meth:`run` (backtests).

        Raises
        ------
        ConfigError
            If no instrument is a perpetual or the clock is not simulated.
        """
        perps = self.perpetuals
        if perps is None or not perps.funded or not isinstance(self.clock, SimulatedClock):
            raise ConfigError("kernel: mark and funding data need a perpetual instrument and a simulated clock")
        dispatch = self._dispatch

        def deliver(msg: MarkPrice | FundingRate) -> None:
            if msg.instrument_id not in self.instruments:
                raise DataError(f"kernel: {type(msg).__name__} for unknown instrument {msg.instrument_id!r}")
            dispatch[type(msg)](msg)

        perps.feed(messages, deliver)

    def _note_first_mark(self, mark: MarkPrice) -> None:
        """An instrument's first mark price (it values the instrument from now on): its first price if no trade,
        bar or quote priced it before (buy & hold then starts at this mark, as the portfolio values it).

        A price noted at the mark's time or later is replaced: :meth:`process` delivers the marks up to a message's
        time before it, while a batch loop notes its batch's first price before its clock delivers them.
        """
        iid = mark.instrument_id
        noted = self._first_prices.get(iid)
        if (noted is None and iid not in self.cache.prices) or (noted is not None and mark.ts_init <= noted[0]):
            self._first_prices[iid] = (mark.ts_init, mark.mark_price)

    def _note_liquidation(self, fill: OrderFilled) -> None:
        self.result.submit_reasons[fill.client_order_id] = "liquidation"

    def _process_bar(self, bar: Bar) -> None:
        self.execution.on_bar(bar)
        iid = bar.instrument_id
        self.cache.bars[iid] = bar
        prices = self.cache.prices
        if iid not in prices:
            self.note_first_price(iid, bar.ts_init, bar.close)
        prices[iid] = bar.close
        bank = self.banks.get(iid)
        if bank is not None:
            bank.update_bar(bar.ts_event, bar.open, bar.high, bar.low, bar.close, bar.volume)
        history = self.histories.get(iid)
        if history is not None:
            history.append_bar(bar.ts_event, bar.open, bar.high, bar.low, bar.close, bar.volume)
        self._count_bar(bar.ts_init, bar.ts_event)
        self.bus.publish(bar)

    def _process_trade(self, trade: Trade) -> None:
        self.execution.on_trade(trade)
        iid = trade.instrument_id
        self.cache.trades[iid] = trade
        prices = self.cache.prices
        if iid not in prices:
            self.note_first_price(iid, trade.ts_init, trade.price)
        prices[iid] = trade.price
        bank = self.banks.get(iid)
        if bank is not None:
            bank.update_trade(trade.ts_event, trade.price, trade.size, float(trade.aggressor))
        history = self.histories.get(iid)
        if history is not None:
            history.append_trade(trade.ts_event, trade.price, trade.size, float(trade.aggressor))
        self._count_trade(trade.ts_init, trade.ts_event)
        self.bus.publish(trade)
        builder = self.trade_bars.get(iid)
        if builder is not None:
            built = builder.update(trade.ts_event, trade.price, trade.size, int(trade.aggressor))
            if built is not None:
                self._deliver_built_bar(iid, built[0], trade.ts_init, built[1])

    def on_trades_missed(self, msg: TradesMissed) -> None:
        """A feed's trades of ``msg.instrument_id`` were missed: its trade bars build no bar over lost ones.

        Called before the recovered trades are processed (the feed sends the message first). When
        some were lost for good, the instrument's :class:`~tradebus.features.bars.BarBuilder`
        is told (:meth:`~tradebus.features.bars.BarBuilder.lose`, up to the trade that revealed
        the gap); a gap fully recovered changes nothing.
        """
        builder = self.trade_bars.get(msg.instrument_id)
        if builder is not None and msg.lost > 0:
            builder.lose(msg.revealed_ns)

    def _deliver_built_bar(self, iid: str, ts_event: int, ts_init: int, values: np.ndarray) -> None:
        """Publish a bar built from trades: cache, feature bank, history and subscribers.

        Not fed to the execution engine (orders on the instrument fill on its trades) and not
        counted in :attr:`RunResult.bars` (the replayed or received bars).
        """
        o, h, lo, c, v = values[:5].tolist()
        bar = Bar(iid, ts_event, ts_init, o, h, lo, c, v)
        self.cache.bars[iid] = bar
        bank = self.banks.get(iid)
        if bank is not None:
            bank.update_bar(ts_event, o, h, lo, c, v)
        history = self.histories.get(iid)
        if history is not None:
            history.append_bar(ts_event, o, h, lo, c, v)
        self.bus.publish(bar)

    def _process_quote(self, quote: Quote) -> None:
        self.execution.on_quote(quote)
        iid = quote.instrument_id
        self.cache.quotes[iid] = quote
        bid, ask = quote.bid_price, quote.ask_price
        crossed = bid >= ask
        if bid < ask:
            mid = 0.5 * (bid + ask)
            prices = self.cache.prices
            if iid not in prices:
                self.note_first_price(iid, quote.ts_init, mid)
            prices[iid] = mid
            if iid in self._crossed:
                self._uncrossed(iid, quote.ts_init)
        elif crossed:
            self._crossed_top(iid, bid, ask, quote.ts_init, "quote")
        bank = self.banks.get(iid)
        # a locked or crossed quote updates no feature either (its mid or spread is no market's; batch: features.batch)
        if bank is not None and not crossed:
            bank.update_quote(quote.ts_event, quote.bid_price, quote.ask_price, quote.bid_size, quote.ask_size)
        self._count_quote(quote.ts_init, quote.ts_event)
        self.bus.publish(quote)

    def _process_book(self, msg: BookSnapshot | BookDelta) -> None:
        """Apply a replayed book message to the instrument's :class:`ReplayBook`, count it, then publish it.

        A daemon's feed keeps its own book, which the cache reads (no :class:`ReplayBook`: the message is
        counted and published); a backtest's strategies read this one through ``cache.book``.
        """
        iid = msg.instrument_id
        books = self._replay_books
        if iid not in books:
            book = books[iid] = None if self.cache.keeps_book(iid) else ReplayBook()
            if book is not None:
                self.cache.register_book(iid, lambda: book)
        book = books[iid]
        if book is not None:
            book.apply(msg)
        self._count_book(msg.ts_init, msg.ts_event)  # the span, as a quote's (not in RunResult.quotes)
        self.result.book += 1
        self.bus.publish(msg)

    def _mark_book(self, msg: BookSnapshot | BookDelta) -> None:
        """Mark the portfolio and the risk gate at the mid of the book a book message leaves, as a quote's.

        The book is the ``fill_on: book`` venue's (a backtest's), else ``cache.book``: the feed
        adapter's in a daemon, the :class:`ReplayBook` of a backtest filling on trades, quotes or bars
        (so it is marked as a paper daemon on the same data is); with none, or one side empty,
        nothing is marked.
        """
        iid = msg.instrument_id
        if self._venue_touch is not None:
            bid, ask = self._venue_touch(iid)
        else:
            book = self.cache.book(iid)
            if book is None:
                return
            bid, ask = book.best_bid()[0], book.best_ask()[0]
        if bid < ask:  # False with a side empty (NaN)
            mid = 0.5 * (bid + ask)
            prices = self.cache.prices
            if iid not in prices:
                self.note_first_price(iid, msg.ts_init, mid)
            prices[iid] = mid
            self.execution.mark(iid, mid)
            if iid in self._crossed:
                self._uncrossed(iid, msg.ts_init)
        elif bid >= ask:
            self._crossed_top(iid, bid, ask, msg.ts_init, "book")

    def _crossed_top(self, iid: str, bid: float, ask: float, ts: int, what: str) -> None:
        """Note a locked or crossed top of book (best bid >= best ask), which marks nothing: its mid is no price
        the market could trade at, so the instrument keeps its last price; the first of a stretch is logged."""
        seen = self._crossed.get(iid)
        if seen is None:
            last = self.cache.prices.get(iid)
            logger.warning("{}: {} {} at {}: bid {!r} >= ask {!r}; not marked at its mid, {}", iid, what,
                           "locked" if bid == ask else "crossed", iso_ns(ts), bid, ask,
                           "no price yet" if last is None else f"kept at the last price {last!r}")
            seen = [ts, 0]
            self._crossed[iid] = seen
        seen[1] += 1

    def _uncrossed(self, iid: str, ts: int) -> None:
        """Log the end of a stretch of locked or crossed tops (:meth:`_crossed_top`): the instrument is marked again."""
        since, count = self._crossed.pop(iid)
        logger.info("{}: top of book sane again at {} after {} locked or crossed message(s) since {}; marked at its mid",
                    iid, iso_ns(ts), count, iso_ns(since))

    def _count_bar(self, ts: int, ts_event: int) -> None:
        self.extend_span(ts, ts_event, ts_event)
        self.result.bars += 1

    def _count_trade(self, ts: int, ts_event: int) -> None:
        self.extend_span(ts, ts_event, ts_event)
        self.result.trades += 1

    def _count_quote(self, ts: int, ts_event: int) -> None:
        self._count_book(ts, ts_event)
        self.result.quotes += 1

    def _count_book(self, ts: int, ts_event: int) -> None:
        """Extend the receive-time span and the quotes' venue-time span (not counted in :attr:`RunResult.quotes`)."""
        result = self.result
        if result.start_ns is None:
            result.start_ns = ts
        result.end_ns = ts
        first = self._quote_first_ns
        if first is None or ts_event < first:
            self._quote_first_ns = ts_event
        last = self._quote_last_ns
        if last is None or ts_event > last:
            self._quote_last_ns = ts_event

    def extend_span(self, ts_init: int, first_event: int, last_event: int) -> None:
        """Extend the run's receive-time and venue-time spans (see :class:`RunResult`)."""
        result = self.result
        if result.start_ns is None:
            result.start_ns = ts_init
        if result.first_event_ns is None or result.last_event_ns is None:
            if result.first_event_ns is None:
                self._journal_first_event(first_event)
            result.first_event_ns = first_event
            result.last_event_ns = last_event
        else:
            if first_event < result.first_event_ns:
                self._journal_first_event(first_event)
                result.first_event_ns = first_event
            if last_event > result.last_event_ns:
                result.last_event_ns = last_event
        result.end_ns = ts_init

    def _journal_first_event(self, ts_event: int) -> None:
        """Journal the run's new earliest venue time (a killed daemon's restart starts its span there: the equity
        samples journal the span only as they are taken)."""
        journal = self._journal
        if journal is not None and journal.failure is None:  # a failed journal stopped the daemon already
            journal.save_first_event(ts_event)

    # ------------------------------------------------------------------ backtest loop

    def bar_intervals(self, intervals: Mapping[str, int | None]) -> None:
        """Say how long the bars of each instrument given last, as their source knows it (before its first bar).

        ``instrument_id -> interval`` (ns) of time bars, ``None`` for bars of no fixed time interval (volume,
        dollar, tick bars ...). A perpetual's funding in a gap of its bars is told from it
        (:meth:`Perpetuals.bar_intervals <tradebus.engine.perpetuals.Perpetuals.bar_intervals>`); bars not
        given learn their length from their spacing. :meth:`run` tells it from its replay's sources, a paper
        daemon from its bar streams.
        """
        if self.perpetuals is not None:
            self.perpetuals.bar_intervals(intervals)

    def run(self, replay: ReplayLike, on_batch: Callable[[int], None] | None = None) -> RunResult:
        """Run a whole backtest over ``replay.batches()`` and stop; return the result.

        Parameters
        ----------
        replay
            A :class:`tradebus.data.replay.Replay` (or anything with the same ``batches()``).
        on_batch
            Called with the number of rows after each batch (progress reporting).

        Raises
        ------
        ConfigError
            If the clock is not a :class:`SimulatedClock`.
        DataError
            If a batch names an unknown instrument or an unsupported kind.
        StrategyError
            A strategy's hook raised (names the strategy, the hook and the event time; the
            original exception is chained).
        """
        if not isinstance(self.clock, SimulatedClock):
            raise ConfigError("kernel: run() replays history and needs a SimulatedClock")
        sources = getattr(replay, "sources", None)
        if self.bar_instruments is None and sources is not None:
            replayed = frozenset(source.instrument_id for source in sources if source.kind == "bars")
            self.bar_instruments = replayed | frozenset(self.trade_bars)
        if sources is not None:
            intervals: dict[str, int | None] = {}
            for source in sources:
                if source.kind != "bars":
                    continue
                iid = source.instrument_id
                interval = source.bar_interval_ns() if source.timed_bars() else None
                if interval is None and source.timed_bars():
                    continue  # an interval found as the bars are read: learnt from their spacing
                # bars of one instrument with no fixed interval from one source have none at all
                known = intervals.get(iid, interval)
                intervals[iid] = None if known is None or interval is None else min(known, interval)
            self.bar_intervals(intervals)
        batches = self._loop.batches(replay)
        head: list[Any] = []
        for batch in batches:
            head.append(batch)
            if len(batch.ts_init):
                if not self._started:
                    # on_start runs at the time of the first message, as a paper run's at the
                    # wall clock just before its first message: a timer it sets counts from there.
                    self.clock.set_time(int(batch.ts_init[0]))
                break
        self.start()
        self._refuse_unpriced_holdings = True
        try:
            self._loop.run(itertools.chain(head, batches), on_batch)
        except Exception as exc:  # once, around the loop: no cost per event
            raise_strategy_failure(exc, self.clock.now_ns())
        self.stop()
        return self.result
    @staticmethod
    def _live_outputs(bank: FeatureBank) -> np.ndarray:
        """The live view of a bank's feature outputs, in ``bank.columns`` order."""
        columns = bank.columns
        if not columns:
            return bank.values[:0]
        first = bank.slot(columns[0])
        return bank.values[first : first + len(columns)]

    def instrument_key(self, instrument_id: str) -> str:
        # The instrument dict's own key object: identity-equal ids make dict lookups cheapest.
        for key in self.instruments:
            if key == instrument_id:
                return key
        raise DataError(f"kernel: unknown instrument {instrument_id!r}")

    # ------------------------------------------------------------------ outputs

    def _record_fill(self, fill: OrderFilled) -> None:
        iid = fill.instrument_id
        in_kind = self.portfolio.fee_in_kind(fill) if fill.fee_asset else 0.0
        if fill.strategy_id in ACCOUNT_CLOSES:
            # A liquidation's or a flatten's, booked before this handler: the position left is the portfolio's.
            # Every strategy's share shrinks by what is left of the net position (none when it closed it whole).
            left = self.portfolio.position(iid)
            moved = fill.last_qty if fill.side > 0 else -fill.last_qty
            before = left - moved
            kept = max(left / before, 0.0) if left != 0.0 and before != 0.0 else 0.0
            for own in self.strategy_positions.values():
                if iid in own:
                    own[iid] *= kept
        elif iid in self._shared:
            own = self.strategy_positions.get(fill.strategy_id)
            if own is None:
                own = self.strategy_positions[fill.strategy_id] = {}
            moved = fill.last_qty if fill.side > 0 else -fill.last_qty
            own[iid] = own.get(iid, 0.0) + (moved - in_kind)
        perps = self.perpetuals
        if perps is not None:
            perps.note_positions()
            if iid in perps.instruments:
                perps.note_fill(iid, fill.ts_event, fill.last_qty if fill.side > 0 else -fill.last_qty)
                if perps.first_fill_ns is None or fill.ts_event < perps.first_fill_ns:
                    perps.first_fill_ns = fill.ts_event
        self.result.fills.append(
            FillRecord(
                fill.ts_event,
                fill.instrument_id,
                "BUY" if fill.side > 0 else "SELL",
                fill.last_qty,
                fill.last_px,
                self.portfolio.fee_value(fill) if fill.fee_asset else fill.fee,
                _LIQUIDITY_NAMES[fill.liquidity],
                fill.client_order_id,
                fill.strategy_id,
                fill.trade_id,
                self.result.submit_reasons.get(fill.client_order_id, ""),
                in_kind,
            )
        )

    def _record_funding(self, paid: FundingPaid) -> None:
        self.result.funding_fills.append(len(self.result.fills))

    def before_time(self, ts: int) -> int:
        """Complete the times before a message at ``ts``; return the new :attr:`watch_ns`.

        What waits for every message of a time to be processed is done before the first later
        message (and its timers), or at :meth:`stop`:

        - the portfolio is marked at the cached prices (the batch loops skip the marks while
          nothing works) and the mark-driven breakers (``RiskConfig.breakers_on_marks``) are
          evaluated (:meth:`RiskGate.end_time`; every order check evaluates them too);
        - a due equity sample is taken. A sample falls due at the time of the first message at
          or after an interval boundary.

        Bars of several instruments that share a time are thus all in the breakers' equity and
        in the sample. :meth:`process` calls this for a message whose ``ts_init`` is at or after
        :attr:`watch_ns`, before anything else: every new time when breakers evaluate marks, else
        the times a sample falls or is due. The batch loops call it at or after the time it
        returns, which with breakers is later while an evaluation could change nothing: until
        the breakers' UTC day ends (:meth:`RiskGate.quiet_band`) and while the one instrument
        whose price moves equity stays between the prices of :attr:`mark_band`
        (:meth:`Portfolio.equity_band`); they come back at the next time after a price beyond
        them, a fill, a funding, a liquidation check or a timer (which may charge interest).
        """
        if self._marks_deferred:
            self.sync_marks()  # the batch loops skip the marks while nothing works
            self.risk.end_time()
        due = self._sample_due
        if due is not None and ts > due:
            self._take_due_sample()
            due = None
        if due is None and ts >= self.next_sample_ns:
            self._sample_due = due = ts
        watch = self.next_sample_ns if due is None else due + 1
        if not self._marks_deferred:
            self.watch_ns = watch
            return watch
        self.watch_ns = ts + 1
        until, floor, ceiling = self.risk.quiet_band()
        band = self.portfolio.equity_band(floor, ceiling)
        if band is None:
            self.mark_band = (None, -math.inf, math.inf)
            return ts + 1
        self.mark_band = band
        # A later time's evaluation runs at the clock of the time before it: before until_ns up to
        # a message at until_ns.
        return max(ts + 1, min(until + 1, watch))

    def price_band(self, instrument_id: str) -> tuple[float, float]:
        """The prices of ``instrument_id`` between which the breakers need no evaluation (see :attr:`mark_band`)."""
        band_iid, lo, hi = self.mark_band
        return (lo, hi) if band_iid == instrument_id else (-math.inf, math.inf)

    def _take_due_sample(self) -> None:
        due = self._sample_due
        if due is not None:
            self._sample_due = None
            self.sample_equity(due)

    def sample_equity(self, ts: int, *, final: bool = False) -> None:
        """Mark every instrument at its latest price and append an equity sample.

        The first sample (and ``RunResult.initial_cash``, the value of the starting balances it
        holds) waits until every starting holding (``balances: {ETH: 40}``) has a price: a
        holding without one would count 0 and every return would be measured from too low a
        start. A daemon waits (logged); :meth:`run` refuses such a backtest.

        Parameters
        ----------
        ts
            The sample's time (``ts_init``).
        final
            The run's last sample (:meth:`stop`): taken even if a holding still has no price
            (a daemon's, valued 0, with a warning).

        Raises
        ------
        ConfigError
            In :meth:`run`, a starting holding whose instrument has no price at the run's first
            market data (named, with its first price time or that it got none).
        """
        portfolio = self.portfolio
        self.sync_marks()
        samples = self.result.equity
        if not samples and portfolio.has_holdings:
            if not self._holdings_priced(ts, final):
                return
            # Returns are measured from the first valuation of the initial holdings.
            self.result.initial_cash = portfolio.initial_cash + portfolio.holdings_value()
        equity, cash, value, realized, unrealized, fees, funding, interest = portfolio.valuation()
        account = portfolio.account
        if isinstance(account, MarginAccount):  # a perpetual or a margin spot instrument
            margin, maintenance = account.initial_margin(), account.maintenance_margin()
        else:
            margin = maintenance = 0.0
        marks = tuple(map(_LAST_PRICE, self._positions.values()))
        sample = EquitySample(
            ts,
            equity,
            cash,
            value,
            realized,
            unrealized,
            fees,
            funding,
            margin,
            maintenance,
            interest,
            marks,
            self.shown_first_prices(ts, marks, samples[-1].marks if samples else ()) if self._first_prices else (),
        )
        journal = self._journal
        if journal is not None and journal.failure is None:  # a failed journal stopped the daemon already
            # committed before the sample is appended (a daemon writes its equity.csv row then)
            journal.record_sample(ts, self._journaled(sample))
        samples.append(sample)
        interval = self._equity_interval
        self.next_sample_ns = (ts // interval + 1) * interval

    def note_first_price(self, instrument_id: str, ts: int, price: float) -> None:
        """Record the instrument's first price, at ``ts``: call it before ``cache.prices`` holds one.

        The sample that first prices the instrument carries it (:attr:`EquitySample.first_prices`)
        when it came before the sample's time, or at that time and later prices of that time moved
        it; the earliest ``ts`` noted for the instrument wins, the earlier call at one time (a batch loop
        notes a batch's first price before the marks its clock then delivers, which may be earlier).
        """
        noted = self._first_prices.get(instrument_id)
        if noted is None or ts < noted[0]:
            self._first_prices[instrument_id] = (ts, price)

    def shown_first_prices(
        self, ts: int, marks: tuple[float, ...], before: tuple[float, ...]
    ) -> tuple[tuple[int, str, float], ...]:
        """The :attr:`EquitySample.first_prices` of a sample at ``ts`` with ``marks`` (no longer noted once shown).

        Parameters
        ----------
        ts
            The sample's time.
        marks
            The sample's :attr:`EquitySample.marks`.
        before
            The previous sample's marks (``()`` for the first sample): an instrument it priced was shown by it.

        Returns
        -------
        tuple
            ``(ts, instrument_id, price)`` in time order (see :meth:`note_first_price`).
        """
        instruments = self.result.instruments
        shown = []
        for iid in list(self._first_prices):
            n = instruments.index(iid)
            if marks[n] != marks[n]:
                continue  # not marked yet (no valid price): a later sample shows it
            at, price = self._first_prices.pop(iid)
            # an instrument an earlier sample priced was shown by it
            unshown = iid not in self._restored_priced and (n >= len(before) or before[n] != before[n])
            # at the sample's time, only where later prices of that time moved its mark (the sample's row shows it)
            before_sample = at < ts or (at == ts and price != marks[n])
            if before_sample and unshown and 0.0 < price < math.inf:
                shown.append((at, iid, price))
        return tuple(sorted(shown))

    def _sample_if_changed(self) -> None:
        """Take a sample at the clock's time if it is past the last sample and the portfolio changed since."""
        samples = self.result.equity
        now = self.clock.now_ns()
        if not samples or now <= samples[-1].ts:
            return
        last = samples[-1]
        self.sync_marks()
        equity, cash, value, realized, unrealized, fees, funding, interest = self.portfolio.valuation()
        if (equity, cash, value, realized, unrealized, fees, funding, interest) != (
            last.equity, last.cash, last.position_value, last.realized_pnl, last.unrealized_pnl, last.fees_paid,
            last.funding_paid, last.interest_paid,
        ):
            self.sample_equity(now, final=True)

    def _journaled(self, sample: EquitySample) -> JournaledSample:
        result = self.result
        return JournaledSample(
            sample, result.instruments, result.initial_cash, result.start_ns, result.end_ns, result.first_event_ns,
            result.last_event_ns, self._quote_first_ns, self._quote_last_ns, result.bars, result.trades, result.quotes,
        )  # fmt: skip

    def restore_samples(self, journaled: Sequence[JournaledSample], first_event_ns: int | None = None) -> None:
        """Take back the equity samples and the run's span and counts of a previous process (journal replay).

        Call it after :meth:`Journal.replay` and before :meth:`start`. The samples come first in
        :attr:`RunResult.equity`, each with its marks of this run's instruments (NaN for one the
        journal's samples did not price); the next sample falls due as if the run had gone on
        (:meth:`sample_equity`): the time the process was down has no sample, and nothing is
        interpolated over it. ``start``, the venue-time span's beginning and the counts of bars,
        trades and quotes go on from the latest journaled sample's (what came after it in the
        stopped process, killed before its next sample, is not counted), the span beginning no
        later than ``first_event_ns`` (:meth:`Journal.first_event`: a process killed after its
        first trade and before the sample that would have journaled it).
        """
        if not journaled:
            return
        result = self.result
        samples = []
        for record in journaled:
            sample = record.sample
            if record.instruments != result.instruments:
                marks = dict(zip(record.instruments, sample.marks, strict=False))
                sample = msgspec.structs.replace(
                    sample,
                    marks=tuple(marks.get(iid, math.nan) for iid in result.instruments),
                    first_prices=tuple(first for first in sample.first_prices if first[1] in result.instruments),
                )
            samples.append(sample)
            priced = zip(result.instruments, sample.marks, strict=False)
            self._restored_priced.update(iid for iid, mark in priced if mark == mark)
        result.equity[:0] = samples
        last = journaled[-1]
        result.initial_cash = last.initial_cash
        result.start_ns, result.end_ns = last.start_ns, last.end_ns
        result.first_event_ns, result.last_event_ns = last.first_event_ns, last.last_event_ns
        if first_event_ns is not None and (result.first_event_ns is None or first_event_ns < result.first_event_ns):
            result.first_event_ns = first_event_ns
            if result.last_event_ns is None:
                result.last_event_ns = first_event_ns
        self._quote_first_ns, self._quote_last_ns = last.quote_first_ns, last.quote_last_ns
        result.bars, result.trades, result.quotes = last.bars, last.trades, last.quotes
        interval = self._equity_interval
        self.next_sample_ns = (last.sample.ts // interval + 1) * interval

    def _holdings_priced(self, ts: int, final: bool) -> bool:
        """Whether the first equity sample, at ``ts``, can be taken (see :meth:`sample_equity`)."""
        unpriced = self.portfolio.unpriced_holdings()
        waited = self._holdings_wait
        if waited is None:
            if not unpriced:
                return True
            self._holdings_wait = waited = dict(unpriced)
            if not self._refuse_unpriced_holdings:
                logger.info(
                    "equity samples wait for a price of every starting balance: {} has none yet; initial_cash and "
                    "the returns are measured from the first time all have one",
                    _holdings_text(unpriced),
                )
        for asset in waited:
            if asset not in unpriced:
                self._holdings_priced_at.setdefault(asset, ts)
        if not unpriced:
            start = self.result.start_ns if self.result.start_ns is not None else ts
            late = {asset: at for asset, at in self._holdings_priced_at.items() if at > start}
            if self._refuse_unpriced_holdings and late:
                named = "; ".join(
                    f"balances.{asset}: {asset} is valued by {waited[asset]}, whose first price comes at {iso_ns(at)}"
                    for asset, at in late.items()
                )
                raise ConfigError(
                    f"{named}, after the run's start {iso_ns(start)}: until then equity counts it 0, so initial_cash "
                    f"and every return would leave it out; set data.start to {iso_ns(max(late.values()))} or later "
                    "(or leave it out of balances)"
                )
            logger.info("equity samples start at {}: every starting balance has a price from then", iso_ns(ts))
            return True
        if not final:
            return False
        if self._refuse_unpriced_holdings:
            asset, iid = next(iter(unpriced.items()))
            start = self.result.start_ns if self.result.start_ns is not None else ts
            raise ConfigError(
                f"balances.{asset}: {asset} is valued by {iid}, which got no price in the run ({iso_ns(start)} to "
                f"{iso_ns(ts)}): equity would count it 0; give {iid} data in data.sources or leave {asset} out of "
                "balances"
            )
        logger.warning("the run stops before {} got a price: its equity counts it 0", _holdings_text(unpriced))
        return True

    def stop(self, *, start: bool = True, closing: bool = True, late_sample: bool = False) -> None:
        """End every strategy's run, take the final equity sample and collect the orders.

        Each strategy's :meth:`~tradebus.strategies.base.Strategy.end_run` calls its ``at_stop``
        callbacks, then its ``on_stop``. Strategies not started yet are started first, unless
        ``start`` is false (a daemon stopped before it started them): then neither is called.
        Then the venue delivers the answers still on their way (:meth:`Venue.flush
        <tradebus.execution.venue.Venue.flush>`: a ``fill_on: book`` venue's, due after the last
        message by its acknowledgement latency), so the orders, fills and final sample say what the
        venue did; the clock stays at the last message, and timers due after it do not fire.
        ``closing`` false (the replay of a daemon's session that ended without a stop, killed): neither the
        strategies' end nor the final sample, which that daemon never came to; the results are collected as they stand.
        ``late_sample`` (a live daemon, whose venue books fills and funding between market messages): the portfolio
        changed since the last sample, which was at the last market message (or is a journal's, the restart having
        seen none), gets a final sample at the clock's time.

        Raises
        ------
        StrategyError
            An ``on_stop`` or ``at_stop`` callback raised: raised once the others ran and the results
            are collected.
        """
        if self._stopped:
            return
        self._stopped = True
        failed: Exception | None = None
        for end_step in (lambda: self.end_strategies(start=start), self.venue.flush) if closing else ():
            try:
                end_step()
            except Exception as exc:  # noqa: BLE001 - raised once the results are collected
                failed = failed or exc
        end = self.result.end_ns
        # a live daemon's journal may end on a late sample, taken after its last market message (``end``)
        if closing and end is not None and (not self.result.equity or self.result.equity[-1].ts < end):
            self.sample_equity(end, final=True)
        if closing and late_sample:
            self._sample_if_changed()
        if self.result.first_event_ns is None:  # after the sample: a journaled one keeps the spans apart
            self.result.first_event_ns, self.result.last_event_ns = self._quote_first_ns, self._quote_last_ns
        self.result.orders = self.orders.orders()
        last_prices = {iid: self.portfolio.last_price(iid) for iid in self.cache.prices}
        for iid in self.instruments:
            price = self.portfolio.last_price(iid)  # filled but never marked (a journal's fill): its fill price
            if iid not in last_prices and not math.isnan(price):
                last_prices[iid] = price
        self.result.last_prices = last_prices
        self.result.fees_unvalued = self.portfolio.fees_unvalued
        self.result.equity_at_stop = self.portfolio.equity()
        if end is not None:
            self._warn_never_ready()
        logger.debug(
            "kernel stopped: {} bars, {} trades, {} fills, equity {}",
            self.result.bars,
            self.result.trades,
            len(self.result.fills),
            self.portfolio.equity(),
        )
        if failed is not None:
            raise failed

    def _warn_never_ready(self) -> None:
        """Warn of each feature not ready at the end of the run.

        A warm-up longer than the instrument's data leaves it NaN throughout: a strategy waiting
        for it traded nothing, with exit 0.
        """
        for iid, bank in self.banks.items():
            for spec in bank.specs:
                if not bank.ready(spec.name):
                    logger.warning(
                        "feature {!r} ({} {}) on {} is not ready at the end of the run: a warm-up longer than "
                        "the instrument's data (or inputs that never came) leaves it not ready (NaN) throughout",
                        spec.name, spec.kind, dict(spec.params), iid,
                    )

    def end_strategies(self, *, start: bool = True) -> None:
        """End every strategy's run (once): its ``at_stop`` callbacks, then its ``on_stop``.

        :meth:`stop` calls it first; a live daemon calls it earlier, to cancel what the strategies
        leave working before the results are collected. Strategies not started yet are started
        first, unless ``start`` is false (then neither is called). A strategy whose ``on_start`` did not
        return (it raised, or an earlier strategy's did, or the start failed before) is not ended.

        Raises
        ------
        StrategyError
            An ``on_stop`` or ``at_stop`` callback raised: raised once the others ran.
        DataError
            The journal could not be written (a funding held for a bar that never came, the equity sample
            due, an order an ``on_stop`` sent: not sent).
        """
        if self._strategies_ended:
            return
        self._strategies_ended = True
        if not self._started and start:
            self.start()
        if self._marks_deferred:
            self.sync_marks()
            self.risk.end_time()
        failed: Exception | None = None
        try:
            if self.perpetuals is not None:  # a funding held for a bar that never came: in the sample
                self.perpetuals.settle_held(self.clock.now_ns())
            self._take_due_sample()  # the state after the last messages, before any on_stop acts
        except DataError as exc:  # the journal failed: the strategies still end
            failed = exc
        for strategy in self._running:
            try:
                strategy.end_run()
            except Exception as exc:  # the others still stop
                failed = failed or exc
        if failed is not None:
            raise_strategy_failure(failed, self.clock.now_ns())


def _holdings_text(unpriced: Mapping[str, str]) -> str:
    """``ETH (valued by ETH-USD.COINBASE)``, for each ``asset -> instrument_id``."""
    return ", ".join(f"{asset} (valued by {iid})" for asset, iid in unpriced.items())


def _only_for(strategy_id: str, handler: Callable[[Any], None]) -> Callable[[Any], None]:
    """Wrap an order-event handler so it sees only the events of its own strategy's orders."""

    def route(event: Any) -> None:
        if event.strategy_id == strategy_id:
            handler(event)

    if is_feature_only(handler):
        feature_only(route)
    return route


def _dedupe(specs: list[FeatureSpec]) -> list[FeatureSpec]:
    """Drop repeated specs (equal specs asked for by several strategies), keeping first order."""
    out: list[FeatureSpec] = []
    for spec in specs:
        if spec not in out:
            out.append(spec)
    return out


def _refuse_book_features(events: Mapping[str, str], instrument_id: str) -> None:
    """Raise :class:`FeatureError` for a feature of a bank driven by book events (``events``: each feature's, in
    update order, :meth:`FeatureBank.driving_events`).

    The kernel feeds its banks bars, trades and quotes only: such a feature would stay NaN
    for the whole run.
    """
    for name, event in events.items():
        if event == "book":
            raise FeatureError(
                f"feature {name!r} of {instrument_id} is driven by book events, which a run does not feed "
                "to feature banks (it would stay NaN for the whole run): drive it by quotes (microprice "
                "with on: quote), or compute it in the strategy with tradebus.features.book (Ofi, "
                "BookImbalance) from the BookSnapshot/BookDelta messages it subscribes to"
            )
