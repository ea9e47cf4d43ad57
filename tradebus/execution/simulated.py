"""Simulated venue v1: a matching engine over bars, trades or quotes.

Used unchanged by backtests (replayed data, simulated clock) and paper trading (live data,
wall clock): it reads time only from the injected clock and the market data it is given.

Arrival and latency
    Every action (submit, cancel, modify) arrives at ``clock.now_ns() + latency_ns``. On trades
    and quotes it is handled by the first market event of its instrument whose ``ts_init`` is
    strictly after the arrival, before that event is matched. On bars it is handled by the
    first bar of its instrument that *opens* at or after the arrival (see Bars). Nothing fills
    at a price the venue saw before the arrival.
    With a wall clock (paper trading, ``arrival_alerts``; also the paper venue on a replay's simulated
    clock, :class:`~tradebus.execution.paper.PaperVenue`), each action also sets a clock alert
    at its arrival time, so it is accepted, canceled or modified when it is due even if no
    market event of its instrument comes first (trades and quotes only: a bar-filled order
    arrives at the next bar's open by definition). Either way it is handled once, at the
    earlier of the two, with the last trade/quote known at that moment as reference price.
    An order accepted there matches no trade or quote whose ``ts_init`` is before its
    arrival, whenever it is delivered (one received at the arrival's very time may fill it, as on an
    account emulator whose clock is the last trade's time): trades a feed held back behind a gap in its trade
    ids are released after the recovery with their own, earlier, receive times, and the venue
    had seen them before the order arrived (a replay on a simulated clock never shows the
    order those trades either).

Cancels and modifies of an order the venue no longer works
    A cancel that arrives after the order closed (it filled during the cancel's latency; an OCO
    sibling's fill, a GTD expiry or a rejection at its arrival closed it) changes nothing and gets no
    answer of its own (logged at INFO): the strategy has heard what closed the order. So does a live
    venue as tradebus reports it: the venue refuses the cancel (Binance ``-2011`` "Unknown order
    sent."), :class:`~tradebus.execution.live.LiveVenue` queries the order and, finding it closed,
    emits nothing more. ``OrderCancelRejected`` means "refused, and the order works on", which the
    contingent orders and the execution algorithms answer by sending the cancel again; this venue
    never refuses the cancel of an order it works. A modify that arrives after the order closed is
    refused (``OrderModifyRejected``, reason ``"not working"``, stamped at its arrival), as a live
    venue refuses such an amend.

Bars (``fill_on="bars"``)
    A bar is stamped at its close; it opens where the previous bar of its instrument closed
    (its ``ts_init``). An action is handled by the first bar whose open is at or after its
    arrival, and is taken to arrive at that bar's open. An action that arrives inside a bar
    (decided on another instrument's bar, by a timer, or with a latency that is not a whole
    number of bars) waits for the next bar: the bar it arrived in had already traded past its
    open, and the venue does not know the path after the arrival. An order decided at bar t's
    close with no latency arrives at bar t+1's open and is matched from bar t+1 on. The first
    bar of an instrument has no known open: actions waiting for it are handled by the second.
    When bars are skipped (no order working), ``SimulatedVenue.bar_close_of`` must say where
    an instrument's latest bar closed: the venue asks it when it queues an action (the
    kernel's backtest loop answers).
    Open times taken from the previous bar are never later than the true open, so a gap in the
    data can only delay an action, never let it fill earlier.

    The bar is walked along a path (``bar_path``): by default open -> low -> high -> close
    when ``close >= open`` ("up bar"), open -> high -> low -> close otherwise
    (``"close_direction"``); ``"high_first"`` / ``"low_first"`` fix one path for every bar.
    The position along that path decides which of several orders and triggers happen first
    (ties keep arrival order; a trigger precedes the fill it causes). ``"stop_first"`` walks
    the default path but, when a bar reaches both a stop and a limit order of the same side
    (a bracket's stop-loss and take-profit), takes the limit's fill just after the stop's:
    the conservative assumption that the stop was hit first. A limit the bar *opens* at or
    through fills first all the same (the open is the bar's first price, so no stop inside
    the bar came before it), unless the stop is crossed at the open too.

    * market: fills at the open (taker).
    * limit: marketable at the open -> fills at the open (taker; a buy limit at or above the
      open pays the open, not its limit). Resting -> fills at the limit price (maker) when the
      path reaches it, or at the open if the bar *gaps* through it (a better price for the
      trader: the book moved past the order before the bar traded).
    * stop-market: triggers when the path reaches the trigger, at the trigger price, or at the
      open on a gap; fills at that price (taker).
    * stop-limit: triggers like a stop, then works as a limit from that point of the path:
      marketable at the trigger price -> fills there (taker), else rests at its limit.

Trades / quotes (``fill_on="trades" | "quotes"``)
    An order fills at the first event strictly after its arrival that crosses it: a buy
    crosses a trade price (or the ask) at or below its limit, a sell one at or above it (with
    ``limit_fill="through"`` a resting limit needs a strictly better print). An order that was
    marketable on arrival (against the last trade, or the ask/bid when quotes are known) fills
    at the crossing event's price (taker); a resting limit fills at its limit price (maker).
    Stops trigger on the first print at or beyond the trigger and fill at that print.

Native contingent orders (``contingent="native"``, bars, trades and quotes)
    :meth:`SimulatedVenue.children_of` marks the orders submitted inside it as children held
    by the venue for a parent order that has filled (a bracket's stop-loss and take-profit,
    an OTO's follower). Such a child does not wait for the latency or the next bar: it is
    accepted at the parent's fill, judged against the price there. On bars it is planned from
    the parent's fill position on the bar path, so it can trigger or fill later in the same
    bar: a buy entry filled at its limit 100 on the way down to a low of 94 is stopped out at
    its stop-loss 95 in that bar (path open -> low -> high -> close), and one filled on the
    way up is taken profit at 110 if the rest of the path reaches it. A child already
    crossed at the fill (a stop above a long's fill price) fills at the fill point's price,
    as a taker. On trades and quotes a child is live from the parent's fill event and fills
    from the next event on. :meth:`SimulatedVenue.link_oco` makes orders one OCO group: when
    a member fills completely its siblings are canceled at once (``"OCO: sibling filled"``),
    a partial fill reduces them to the member's unfilled quantity, in the same bar.

Time in force
    GTC rests until filled or canceled. IOC/FOK limits that are not marketable on arrival
    expire on arrival; otherwise they fill what the first matching event allows and expire
    the rest (FOK: all or nothing). For stops, IOC/FOK applies when they trigger.
    Good-till-date (:meth:`SimulatedVenue.expire_at`): the venue expires the order
    (``"GTD: expired"``) at its expiry time on its own clock, whatever the latency, as if a
    cancel arrived then: on trades and quotes nothing after that time fills it, on bars no bar
    that opens at or after it.

Balances
    Before each fill the venue asks ``funds_check`` (the account's ``check_fill``) whether the
    free balance covers it, as an exchange does at match time; a fill it refuses cancels the
    order with the reason (a market buy that gapped above its estimate, a sell of coins that
    are no longer held).

Post-only and reduce-only
    A post-only order (limit or stop-limit) never fills as a taker: one that would take
    liquidity on arrival is rejected (one arriving before any price rests); a modify that would
    make it take is rejected (``OrderModifyRejected``; the order keeps its price, as an exchange
    rejects such an amend), as is one of an order no longer working, of a quantity not above
    what has filled, or of a bad price;
    a post-only stop-limit that would take at its trigger expires there.
    A reduce-only order that would not reduce the venue-side position (flat, or same side) is
    rejected on arrival; at fill time one larger than the position is capped to the position
    (rest canceled) or canceled (``reduce_only_mode``); it never flips a position. The position
    it is held to is in whole lots, up to float noise (:meth:`Instrument.round_quantity`): the
    0.009999999999999997 that fills of 0.03, -0.01 and -0.01 sum to lets 0.01 through, not an
    off-lot 0.009999999999999997, and the -3e-18 left after it is flat.

Prices
    Taker fills pay the slippage of the configured model (``slippage_bps``, or ``slippage``:
    fixed, volume participation or volatility-scaled; see :mod:`tradebus.execution.costs`)
    against the trader, rounded to the tick against the trader (an exact decimal multiple of
    the tick, free of float noise), then clamped to the order's limit and, on bars, to what
    the bar traded (its ``[low, high]``). On trades and quotes the models read the filling
    event (its size and spread, or the move from the previous trade); maker fills at a
    resting limit never slip.
    A slipped price the venue cannot round exactly is refused: one of so many ticks that
    ``|price / tick|`` times the grid's integer reaches ``EXACT_GRID`` (2 ** 46: 703,687.44 on a
    1e-8 tick; a NaN too), where ``Instrument.round_price_*`` would round by a tick in the trader's
    favour, or one not positive once rounded and clamped (a sell slipped by 10,000 bps or more on
    a trade or quote; on a bar the clamp to its low keeps it positive). The venue cancels the order
    with the reason (:func:`slipped_price_reason`: ``slipped price 1253633.47656 is 125363347656000
    ticks of 1e-08, more than floats hold exactly ...``), as the risk gate denies a limit price
    beyond that grid; the accelerated tier cancels it alike. An unslipped fill keeps the price the
    data show.
    Fees are ``quantity * contract_size * price * rate`` with the maker or taker rate of the
    instrument, of its fee tier by trailing traded notional (:class:`~tradebus.execution.costs.FeeSchedule`),
    or the config's override.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ClassVar

import msgspec
from loguru import logger

from tradebus.engine.clock import Clock, SimulatedClock
from tradebus.engine.instrument import Instrument
from tradebus.engine.messages import (
    Bar,
    Liquidity,
    ModifyOrder,
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderModified,
    OrderModifyRejected,
    OrderRejected,
    OrderSide,
    OrderStatus,
    OrderTriggered,
    OrderType,
    Quote,
    TimeEvent,
    TimeInForce,
    Trade,
)
from tradebus.execution.config import VenueConfig
from tradebus.execution.costs import FeeSchedule, slippage_bps, tick_slippage_bps
from tradebus.execution.orders import Order
from tradebus.execution.venue import EventHandler, OrderStatusReport, Venue

__all__ = ["TRADE_ID_PREFIX", "VENUE_ORDER_ID_PREFIX", "SimulatedVenue", "simulated_id_number", "slipped_price_reason"]

#: The simulated venue's order ids are ``SIM-<n>``, its trade ids ``SIM-T<n>`` (``n`` counts from 1).
VENUE_ORDER_ID_PREFIX = "SIM-"
TRADE_ID_PREFIX = "SIM-T"


def slipped_price_reason(instrument: Instrument, moved: float, price: float) -> str:
    """Why the venue refuses a taker fill whose slippage moved its price to ``moved`` (module docstring, "Prices").

    ``price`` is ``moved`` rounded onto the tick grid and clamped (NaN where ``moved`` counts too many ticks
    to be rounded, :meth:`~tradebus.engine.instrument.Instrument.exact_price_reason`).
    """
    why = instrument.exact_price_reason(moved)
    if why is not None:
        return f"slipped {why}"
    return f"slipped price {moved!r} (on the tick grid and within the bar or limit: {price!r}) is not a positive price"


def simulated_id_number(venue_id: str | None, prefix: str) -> int:
    """``n`` of an id ``<prefix><n>`` the simulated venue gives (0 for an id of another form).

    ``prefix`` is :data:`VENUE_ORDER_ID_PREFIX` (order ids) or :data:`TRADE_ID_PREFIX` (trade ids).
    """
    if venue_id is None or not venue_id.startswith(prefix) or not venue_id[len(prefix):].isdigit():
        return 0
    return int(venue_id[len(prefix):])

_SUBMIT, _CANCEL, _MODIFY = 0, 1, 2
_MAKER = Liquidity.MAKER
_TAKER = Liquidity.TAKER
# What a planned bar event does; at the same point of the bar path a trigger comes before a fill,
# a fill before an expiry.
_PLAN_TRIGGER, _PLAN_FILL, _PLAN_EXPIRE = 0, 1, 2
_STOPS = frozenset({OrderType.STOP_MARKET, OrderType.STOP_LIMIT})
_LIMITS = frozenset({OrderType.LIMIT, OrderType.STOP_LIMIT})
_WORKING = frozenset({OrderStatus.ACCEPTED, OrderStatus.TRIGGERED, OrderStatus.PARTIALLY_FILLED})
_NAN = math.nan
_INF = math.inf
_CLOSE_DIRECTION, _HIGH_FIRST, _LOW_FIRST = 0, 1, 2
_PATH_MODES = {"close_direction": 0, "high_first": 1, "low_first": 2, "stop_first": 0}
# Enum members read through their class cost ~60 ns each (EnumType attribute lookup).
_MARKET = OrderType.MARKET
_LIMIT = OrderType.LIMIT
_STOP_MARKET = OrderType.STOP_MARKET
_GTC = TimeInForce.GTC
_FOK = TimeInForce.FOK
_SUBMITTED = OrderStatus.SUBMITTED
_ACCEPTED = OrderStatus.ACCEPTED
_TRIGGERED = OrderStatus.TRIGGERED
_PARTIALLY_FILLED = OrderStatus.PARTIALLY_FILLED
_FILLED = OrderStatus.FILLED
_CANCELED = OrderStatus.CANCELED
_EXPIRED = OrderStatus.EXPIRED
_REJECTED = OrderStatus.REJECTED


class _SimOrder(msgspec.Struct, gc=False, eq=False):
    """The venue's own state of an order; identity fields are read from the submitted order.

    Untracked by the cyclic garbage collector, as :class:`Order` (no reference cycle). Build
    it with :func:`_sim_order`.
    """

    order: Order
    seq: int
    venue_order_id: str
    # Copies of the order's fixed fields, read on every event.
    coid: str
    strategy_id: str
    type: OrderType
    tif: TimeInForce
    side: OrderSide
    reduce_only: bool
    buy: bool
    quantity: float
    limit: float
    trigger: float
    status: OrderStatus = _SUBMITTED
    filled: float = 0.0
    triggered: bool = False
    aggressive: bool = False
    # When a submitted order reached the venue (0: a native child, live from its parent's fill).
    arrived: int = 0
    # The latest fill, and every fill from the second on (a list per order would be one more
    # object for the collector to walk).
    last_fill: OrderFilled | None = None
    fills: list[OrderFilled] | None = None
    ts_event: int = 0

    @property
    def leaves(self) -> float:
        return self.quantity - self.filled

    def all_fills(self) -> tuple[OrderFilled, ...]:
        """Every fill of the order, in order."""
        if self.fills is not None:
            return tuple(self.fills)
        return () if self.last_fill is None else (self.last_fill,)


def _sim_order(order: Order, seq: int) -> _SimOrder:
    """The venue's state of ``order``, its ``seq``-th, as it arrives.

    A module function, not a classmethod: looking a classmethod up on its class builds a bound
    method object on every order.
    """
    side = order.side
    return _SimOrder(
        order, seq, f"{VENUE_ORDER_ID_PREFIX}{seq}", order.client_order_id, order.strategy_id, order.order_type, order.tif, side,
        order.reduce_only, side > 0, order.quantity, order.price, order.trigger_price,
    )  # fmt: skip

class SimulatedVenue(Venue):
    """Matching engine for backtests and paper trading (see the module docstring).

    Parameters
    ----------
    clock
        The run's clock; actions arrive at ``clock.now_ns() + config.latency_ns``.
    instruments
        ``instrument_id -> Instrument`` (tick size, fees).
    config
        :class:`VenueConfig`.
    emit
        Event handler (usually bound later by the execution engine).
    arrival_alerts
        Set a clock alert at each action's arrival (see the module docstring); ``None``:
        on unless the clock is a :class:`SimulatedClock` (a backtest is unchanged).
    keep_closed
        How many closed (filled, canceled, rejected, expired) orders :meth:`query_order`
        still answers for, the latest ones; older ones are forgotten so that a long run's
        memory stays flat. ``None`` (default): every order is kept.
    """

    #: Match a lone working market order inline (what the general matching gives it, in fewer
    #: steps) on bars, trades and quotes. ``False``: every order goes through the general
    #: matching loops; tests run both ways and compare the fills.
    fast_path: ClassVar[bool] = True

    def __init__(
        self,
        clock: Clock,
        instruments: dict[str, Instrument],
        config: VenueConfig | None = None,
        emit: EventHandler | None = None,
        arrival_alerts: bool | None = None,
        keep_closed: int | None = None,
    ) -> None:
        super().__init__(emit)
        self.clock = clock
        self.instruments = instruments
        self.config = config or VenueConfig()
        cfg = self.config
        self._latency = cfg.latency_ns
        self._slippage = cfg.slippage_model
        # Whether taker fills on bars slip at all.
        self._slip = self._slippage.model != "fixed" or self._slippage.bps > 0.0
        self._through = cfg.limit_fill == "through"
        self._fill_on = cfg.fill_on
        self._on_bars = cfg.fill_on == "bars"
        self._path_mode = _PATH_MODES[cfg.bar_path]
        self._stop_first = cfg.bar_path == "stop_first"
        #: Whether brackets and OCO groups are held by this venue (``contingent="native"``).
        self.native_contingent = cfg.contingent == "native"
        # The parent whose children the next submits are (see children_of).
        self._holding_for: str | None = None
        # OCO member -> its group (shared list), for groups linked at the venue.
        self._oco: dict[str, list[str]] = {}
        # The bar being matched while a native child may be activated inside it.
        self._bar_match: _BarMatch | None = None
        self._fees: dict[str, FeeSchedule] = {
            iid: FeeSchedule(inst, cfg.maker_fee, cfg.taker_fee) for iid, inst in instruments.items()
        }
        # Fees are on notional, quantity * contract_size * price.
        self._contract_sizes: dict[str, float] = {iid: inst.contract_size for iid, inst in instruments.items()}
        self._pending: dict[str, deque[tuple[int, int, _SimOrder | Order, ModifyOrder | None]]] = {
            iid: deque() for iid in instruments
        }
        self._working: dict[str, list[_SimOrder]] = {iid: [] for iid in instruments}
        # Good-till-date orders per instrument (only those with one): (expire_ns, seq, order) heaps.
        self._expiries: dict[str, list[tuple[int, int, _SimOrder]]] = {}
        self._orders: dict[str, _SimOrder] = {}
        # Closed orders still answered by query_order, oldest first (None: all of them).
        self._keep_closed = keep_closed
        self._closed: deque[str] = deque()
        self._positions: dict[str, float] = dict.fromkeys(instruments, 0.0)
        self._last: dict[str, float] = dict.fromkeys(instruments, _NAN)
        # The latest arrival of an order accepted per instrument: an event received before it
        # (held back by its feed) is matched only against the orders that had arrived before it.
        self._arrived: dict[str, int] = dict.fromkeys(instruments, -1)
        # ts_init of the latest bar of each instrument: the open time of its next bar.
        self._bar_close: dict[str, int] = {}
        #: Where an instrument's latest bar closed (``ts_init``; ``None``: no bar yet), asked when an
        #: action for it is queued; set by the kernel's backtest loop, which does not show the venue
        #: the bars it skips while nothing works. ``None``: the venue is shown every bar.
        self.bar_close_of: Callable[[str], int | None] | None = None
        self._bid: dict[str, float] = dict.fromkeys(instruments, _NAN)
        self._ask: dict[str, float] = dict.fromkeys(instruments, _NAN)
        self._venue_ids = 0
        self._trade_ids = 0
        # Instruments where a working order closed; their working list is pruned after matching.
        self._dirty: set[str] = set()
        if arrival_alerts is None:
            arrival_alerts = not isinstance(clock, SimulatedClock)
        self._alerts = arrival_alerts and cfg.fill_on != "bars"
        self._alert_seq = 0
        self._alert_names: set[str] = set()
        #: The exchange's balance check at match time, ``(order, qty, price, fee) -> reason | None``
        #: (the kernel binds the account's ``check_fill``); a fill it refuses cancels the order.
        self.funds_check: Callable[[Order, float, float, float], str | None] | None = None
        #: How much more an order may fill, ``client_order_id -> quantity`` (the kernel binds the
        #: account's ``oco_room``: a cash-only OCO member after a sibling filled); beyond it the
        #: fill is capped and the rest canceled.
        self.fill_room: Callable[[str], float] | None = None
        # Takes an acknowledgement without its event when nothing would read it (bind_accepted).
        self._accepted: Callable[[Order, str, int], bool] | None = None
        # What the bus delivers (bind_accepted): without OrderAccepted in it, an order filled in its
        # acceptance's step is moved by its fill alone.
        self._wanted: set[type] | None = None
        # The order accepted in this step whose acknowledgement its fill carries (None: none).
        self._unacked: _SimOrder | None = None
        self._inline = self.fast_path

    def bind_accepted(self, accepted: Callable[[Order, str, int], bool], wanted: set[type] | None = None) -> None:
        """Hand every acknowledgement to ``accepted(order, venue_order_id, ts_event)`` first.

        When it returns ``True`` it has moved the order to ACCEPTED itself (the execution engine
        does so when nothing journals or receives ``OrderAccepted``) and no event is built;
        otherwise ``OrderAccepted`` is emitted as usual.

        ``wanted``: the message types something receives (the bus's live
        :attr:`~tradebus.engine.bus.MessageBus.wanted`). While ``OrderAccepted`` is not among them,
        an order this venue accepts and fills in one step (a lone market order on a bar) is not
        acknowledged at all: its fill moves it from SUBMITTED (the table's fill before an
        acknowledgement; the venue order id comes with the fill), the order ends as it would have
        after the acknowledgement. If the venue closes it unfilled instead (a refused fill), the
        acknowledgement is handed over first, as above.
        """
        self._accepted = accepted
        self._wanted = wanted

    # ------------------------------------------------------------------ commands

    def submit(self, order: Order) -> None:
        """Queue a new order; it arrives after the latency and is accepted or rejected then.

        Inside :meth:`children_of` a child of a parent that has filled is accepted at once
        (native contingent orders; see the module docstring).
        """
        self._venue_ids += 1
        sim = _sim_order(order, self._venue_ids)
        self._orders[sim.coid] = sim
        parent_id = self._holding_for
        if parent_id is not None:
            self._holding_for = None
            parent = self._orders.get(parent_id)
            if (
                parent is not None
                and parent.filled > 0.0
                and parent.status not in _WORKING
                and parent.order.instrument_id == order.instrument_id
            ):
                self._activate(order.instrument_id, sim, parent)
                return
        pending = self._pending.get(order.instrument_id)
        if pending is not None and not self._alerts:
            if self.bar_close_of is not None:
                self._learn_bar_close(order.instrument_id)
            pending.append((self.clock.now_ns() + self._latency, _SUBMIT, sim, None))  # _queue, inlined
        else:
            self._queue(order.instrument_id, _SUBMIT, sim, None)

    def cancel(self, order: Order) -> None:
        """Queue a cancel; on arrival a working order is canceled.

        One that closed before the cancel arrived (filled meanwhile) is left alone and nothing is
        emitted, as live once the venue's refusal is found to be of a closed order (module docstring).
        """
        self._queue(order.instrument_id, _CANCEL, order, None)

    def modify(self, order: Order, cmd: ModifyOrder) -> None:
        """Queue a modification (NaN fields unchanged), applied on arrival if still working
        (otherwise ``OrderModifyRejected``, reason ``"not working"``)."""
        self._queue(order.instrument_id, _MODIFY, order, cmd)

    def expire_at(self, client_order_id: str, expire_ns: int) -> None:
        """Make a submitted order good till ``expire_ns``, on the venue's clock (module docstring).

        At that time the venue expires the order if it still works (``OrderExpired``, reason
        ``"GTD: expired"``, stamped ``expire_ns``): the expiry does not travel with the latency.
        An order the venue does not know, or no longer works, is left alone.
        """
        sim = self._orders.get(client_order_id)
        if sim is None or not (sim.status in _WORKING or sim.status is _SUBMITTED):
            return
        iid = sim.order.instrument_id
        if iid not in self._pending:
            return
        heapq.heappush(self._expiries.setdefault(iid, []), (expire_ns, sim.seq, sim))
        if self._alerts:
            self._alert_seq += 1
            name = f"venue-expiry-{self._alert_seq}"
            self._alert_names.add(name)
            self.clock.set_alert(name, expire_ns, lambda event: self._on_due(iid, event))

    @contextmanager
    def children_of(self, parent_id: str) -> Iterator[None]:
        """Hold the orders submitted inside the block for ``parent_id`` (native contingent orders).

        A child goes live at once if the parent has filled (completely, or partly and then
        closed); otherwise it is submitted as any order. Only the first submit inside the
        block is taken as a child (a strategy reacting to its acceptance submits plain orders).
        """
        self._holding_for = parent_id
        try:
            yield
        finally:
            self._holding_for = None

    def link_oco(self, client_order_ids: list[str]) -> None:
        """Make the orders one OCO group held by the venue (see the module docstring)."""
        group = list(client_order_ids)
        for coid in group:
            self._oco[coid] = group

    def rest_of_bar(self, instrument_id: str) -> tuple[float, float, float] | None:
        """While a bar of ``instrument_id`` is matched and a native child is activated in it: the
        price at that point of the bar path, and the highest and lowest price of the path from
        there to the close (``None`` otherwise). A trailing child reads what it may trail from.
        """
        match = self._bar_match
        if match is None or match.iid != instrument_id:
            return None
        here = _price_at(match.path, match.pos)
        rest = (here, *match.path[int(match.pos) + 1 :])
        return here, max(rest), min(rest)

    def query_order(self, client_order_id: str) -> OrderStatusReport | None:
        """The venue's view of an order (``None`` if it never reached the venue)."""
        sim = self._orders.get(client_order_id)
        if sim is None:
            return None
        return OrderStatusReport(
            sim.coid, sim.venue_order_id, sim.status, sim.filled, sim.ts_event, sim.all_fills()
        )

    def position(self, instrument_id: str) -> float:
        """The venue's net position of an instrument (from its own fills)."""
        return self._positions.get(instrument_id, 0.0)

    def next_bar_open(self, instrument_id: str) -> int | None:
        """Where the instrument's next bar opens when an order of it may fill in that bar; else ``None``.

        On bars, an order that works, or a submission waiting to arrive, may fill in the next bar,
        which opens where its latest bar closed (``ts_init``). ``None``: no such order of the
        instrument is at this venue (a cancel of an order closed meanwhile fills nothing), no bar
        of it came yet, or the venue does not fill on bars. A venue with an order of the instrument
        learned its latest bar when the order was queued and is shown each of its bars from then
        on (the kernel's loops skip it only while nothing works), so the close it knows is the latest.
        """
        if not self._on_bars:
            return None
        if not self._working.get(instrument_id):
            pending = self._pending.get(instrument_id)
            if not pending or all(action != _SUBMIT for _, action, _, _ in pending):
                return None
        return self._bar_close.get(instrument_id)

    def bar_closed(self, instrument_id: str) -> int:
        """Where the latest bar of the instrument this venue was shown closed (``ts_init``; -1: none)."""
        return self._bar_close.get(instrument_id, -1)

    def _queue(self, iid: str, action: int, target: _SimOrder | Order, cmd: ModifyOrder | None) -> None:
        pending = self._pending.get(iid)
        if pending is None:
            # Unknown instrument: answered at once; there is no data stream to wait for.
            if action == _SUBMIT:
                assert isinstance(target, _SimOrder)
                now = self.clock.now_ns()
                self._reject(target, f"unknown instrument {iid!r}", now)
            else:
                logger.warning("venue: {} for unknown instrument {!r} ignored", "cancel/modify", iid)
            return
        if self.bar_close_of is not None:
            self._learn_bar_close(iid)
        arrival = self.clock.now_ns() + self._latency
        pending.append((arrival, action, target, cmd))
        if self._alerts:
            self._alert_seq += 1
            name = f"venue-arrival-{self._alert_seq}"
            self._alert_names.add(name)
            self.clock.set_alert(name, arrival, lambda event: self._on_due(iid, event))

    def close(self) -> None:
        """Cancel the pending arrival alerts (end of a live run): nothing is emitted afterwards."""
        for name in self._alert_names:
            self.clock.cancel(name)
        self._alert_names.clear()

    def _on_due(self, iid: str, event: TimeEvent) -> None:
        """Alert at an action's arrival: handle every action of ``iid`` due by now (if still queued)."""
        self._alert_names.discard(event.name)
        pending = self._pending[iid]
        if not pending and iid not in self._expiries:
            return
        due = max(event.ts_event, self.clock.now_ns())
        if self._fill_on == "quotes":
            ref_buy, ref_sell = self._ask[iid], self._bid[iid]
        else:
            ref_buy = self._ask[iid] if self._ask[iid] == self._ask[iid] else self._last[iid]
            ref_sell = self._bid[iid] if self._bid[iid] == self._bid[iid] else self._last[iid]
        if iid in self._expiries:
            self._expire_due(iid, due + 1, ref_buy, ref_sell)
        self._arrive(iid, pending, due + 1, ref_buy, ref_sell)
        self._prune(iid)

    # --------------------------------------------------------------- market data

    def on_bar(self, bar: Bar) -> None:
        """Handle arrivals, then match working orders along the bar's path."""
        if not self._on_bars:
            return
        iid = bar.instrument_id
        pending = self._pending.get(iid)
        if pending is None:
            return
        bar_close = self._bar_close
        opened = bar_close.get(iid)
        bar_close[iid] = bar.ts_init
        if self._expiries and opened is not None and iid in self._expiries:
            self._expire_due(iid, opened + 1, bar.open, bar.open)
        working = self._working[iid]
        if pending and opened is not None and pending[0][0] <= opened:
            if len(pending) == 1 and not working and self._inline and not self.native_contingent:
                arrival, action, sim, _ = pending[0]
                if action == _SUBMIT and sim.type == _MARKET and sim.status is _SUBMITTED:  # type: ignore[union-attr]
                    # The common case, fused: a lone market order arrives at this bar's open with nothing
                    # working; _arrive's and _match_bar's steps for it, without their loops and plans.
                    pending.popleft()
                    sim.arrived = arrival  # type: ignore[union-attr]
                    if arrival > self._arrived[iid]:
                        self._arrived[iid] = arrival
                    wanted = self._wanted
                    # Nothing reads the acknowledgement: the fill below tells it (bind_accepted).
                    # Listed among the working orders only if the fill leaves it working (none to prune then).
                    if self._accept(iid, sim, arrival, bar.open, wanted is not None and OrderAccepted not in wanted, False):  # type: ignore[arg-type]
                        px = bar.open
                        if self._slip:
                            px = self._slipped(iid, sim, px, bar)  # type: ignore[arg-type]
                        if px == px:  # NaN: the venue refused the slipped price and canceled the order
                            self._fill(iid, sim, sim.quantity, px, _TAKER, bar.ts_event)  # type: ignore[arg-type, union-attr]
                        if sim.status in _WORKING:  # type: ignore[union-attr]
                            working.append(sim)  # type: ignore[arg-type]
                    self._unacked = None
                    self._dirty.discard(iid)
                    self._last[iid] = bar.close
                    return
            self._arrive(iid, pending, opened + 1, bar.open, bar.open)
            if self._dirty:
                self._prune(iid)
        if working:
            self._match_bar(iid, bar, working)
        self._last[iid] = bar.close

    def _learn_bar_close(self, instrument_id: str) -> None:
        """Take where the instrument's latest bar closed (the next bar's open) from ``bar_close_of``.

        The kernel's backtest loop skips :meth:`on_bar` while no order is working; an action
        queued then waits for a bar whose open the venue would not know. The later of the two
        closes is kept: a bar this venue was shown may be newer than the one the loop reports
        while that bar is being matched.
        """
        close = self.bar_close_of(instrument_id)  # type: ignore[misc]
        if close is not None and close > self._bar_close.get(instrument_id, -1):
            self._bar_close[instrument_id] = close

    def on_trade(self, trade: Trade) -> None:
        """Handle arrivals, then match working orders against the trade's price."""
        iid = trade.instrument_id
        if iid not in self._last:
            return
        if self._fill_on == "trades":
            pending = self._pending[iid]
            expiring = self._expiries and iid in self._expiries
            if expiring or (pending and pending[0][0] < trade.ts_init):
                ref_buy = self._ask[iid] if self._ask[iid] == self._ask[iid] else self._last[iid]
                ref_sell = self._bid[iid] if self._bid[iid] == self._bid[iid] else self._last[iid]
                if expiring:
                    self._expire_due(iid, trade.ts_init, ref_buy, ref_sell)
                self._arrive(iid, pending, trade.ts_init, ref_buy, ref_sell)
                self._prune(iid)
            working = self._working[iid]
            if working and trade.ts_init < self._arrived[iid]:
                working = self._arrived_before(working, trade.ts_init)
            if working:
                px, size = trade.price, trade.size
                self._match_tick(iid, working, px, size, px, size, trade.ts_event)
        self._last[iid] = trade.price

    def on_quote(self, quote: Quote) -> None:
        """Record best bid/ask; in quote mode handle arrivals and match against them.

        A locked or crossed quote (bid >= ask) is no market to trade at, as the kernel marks nothing at
        it: actions due before it still arrive (against the last sane quote), but it matches no order
        and the venue keeps the last sane bid and ask as its reference.
        """
        iid = quote.instrument_id
        if iid not in self._last:
            return
        crossed = quote.bid_price >= quote.ask_price
        if self._fill_on == "quotes":
            pending = self._pending[iid]
            if self._expiries and iid in self._expiries:
                self._expire_due(iid, quote.ts_init, self._ask[iid], self._bid[iid])
            if pending and pending[0][0] < quote.ts_init:
                self._arrive(iid, pending, quote.ts_init, self._ask[iid], self._bid[iid])
                self._prune(iid)
            working = self._working[iid]
            if working and quote.ts_init < self._arrived[iid]:
                working = self._arrived_before(working, quote.ts_init)
            if working and not crossed:
                self._match_tick(
                    iid, working, quote.ask_price, quote.ask_size, quote.bid_price, quote.bid_size, quote.ts_event
                )
        if not crossed:
            self._bid[iid] = quote.bid_price
            self._ask[iid] = quote.ask_price

    @staticmethod
    def _arrived_before(working: list[_SimOrder], ts_init: int) -> list[_SimOrder]:
        """The orders of ``working`` that reached the venue by the time an event received at ``ts_init`` was."""
        return [sim for sim in working if sim.arrived <= ts_init]

    # ------------------------------------------------------------------ arrivals

    def _arrive(
        self,
        iid: str,
        pending: deque[tuple[int, int, _SimOrder | Order, ModifyOrder | None]],
        ts: int,
        ref_buy: float,
        ref_sell: float,
    ) -> None:
        """Handle every queued action that arrived before ``ts`` (in arrival order)."""
        while pending and pending[0][0] < ts:
            arrival, action, target, cmd = pending.popleft()
            if action == _SUBMIT:
                assert isinstance(target, _SimOrder)
                if target.status is not _SUBMITTED:
                    continue  # canceled before it arrived (an OCO sibling filled)
                target.arrived = arrival
                if arrival > self._arrived[iid]:
                    self._arrived[iid] = arrival
                self._accept(iid, target, arrival, ref_buy if target.buy else ref_sell)
            elif action == _CANCEL:
                sim = self._orders.get(target.client_order_id)
                if sim is None or sim.status not in _WORKING:
                    logger.info("venue: cancel of {} ignored: not working", target.client_order_id)
                    continue
                self._close(sim, _CANCELED, "canceled", arrival)
            else:
                assert cmd is not None
                self._apply_modify(target.client_order_id, cmd, arrival, ref_buy, ref_sell)

    def _expire_due(self, iid: str, ts: int, ref_buy: float, ref_sell: float) -> None:
        """Expire the good-till-date orders of ``iid`` due before ``ts``, each after the actions
        that reached the venue by its expiry time (a cancel that arrived first cancels it)."""
        heap = self._expiries[iid]
        pending = self._pending[iid]
        while heap and heap[0][0] < ts:
            expire_ns, _, sim = heapq.heappop(heap)
            if pending and pending[0][0] <= expire_ns:
                self._arrive(iid, pending, expire_ns + 1, ref_buy, ref_sell)
            if sim.status in _WORKING or sim.status is _SUBMITTED:
                self._expire(iid, sim, expire_ns)
        if not heap:
            del self._expiries[iid]
        self._prune(iid)

    def _expire(self, iid: str, sim: _SimOrder, ts: int) -> None:
        """Close a good-till-date order at its expiry time ``ts``."""
        self._close(sim, _EXPIRED, "GTD: expired", ts)

    def _accept(self, iid: str, sim: _SimOrder, arrival: int, ref: float, filling: bool = False, listed: bool = True) -> bool:
        """Accept ``sim`` at ``arrival`` (or reject it); ``filling``: the caller fills it at once, its
        acknowledgement is handed over only if it closes unfilled (:meth:`bind_accepted`); ``listed``: put it
        among the working orders (else the caller's to do). Whether it was accepted and works."""
        typ = sim.type
        # A plain market order of a valid quantity passes every arrival check: skip the call.
        if typ != _MARKET or sim.reduce_only or sim.order.post_only or not (0.0 < sim.quantity < _INF):
            reason = self._arrival_check(iid, sim, ref)
            if reason:
                self._reject(sim, reason, arrival)
                return False
        sim.status = _ACCEPTED
        sim.ts_event = arrival
        if filling:
            self._unacked = sim
        else:
            self._acknowledge(iid, sim, arrival)
        if typ == _MARKET:
            sim.aggressive = True
        elif typ == _LIMIT:
            # With no reference price the order is treated as marketable (fills at the next print),
            # unless it is post-only: then it rests.
            sim.aggressive = (ref != ref and not sim.order.post_only) or (
                ref <= sim.limit if sim.buy else ref >= sim.limit
            )
            if sim.tif != _GTC and not sim.aggressive:
                self._close(sim, _EXPIRED, f"{sim.tif}: not marketable on arrival", arrival)
                return False
        if listed:
            self._working[iid].append(sim)
        return True

    def _acknowledge(self, iid: str, sim: _SimOrder, arrival: int) -> None:
        """Tell that ``sim`` was accepted at ``arrival``: to the bound acceptor, else as ``OrderAccepted``."""
        accepted = self._accepted
        if accepted is None or not accepted(sim.order, sim.venue_order_id, arrival):
            self._emit(OrderAccepted(sim.strategy_id, iid, sim.coid, sim.venue_order_id, arrival, self.clock.now_ns()))

    def _activate(self, iid: str, sim: _SimOrder, parent: _SimOrder) -> None:
        """Accept a native child at its parent's fill (inside the bar being matched, if any)."""
        match = self._bar_match
        if match is not None and match.iid == iid:
            ref = _price_at(match.path, match.pos)
            self._accept(iid, sim, match.ts, ref)
            if sim.status in _WORKING:
                plans = match.plans
                rest = plans[match.next :] + self._plan_bar(sim, match.path, match.pos)
                plans[match.next :] = _stop_first(rest) if self._stop_first else sorted(rest, key=_plan_key)
            return
        ref = parent.last_fill.last_px if parent.last_fill is not None else _NAN
        self._accept(iid, sim, parent.ts_event, ref)

    def _arrival_check(self, iid: str, sim: _SimOrder, ref: float) -> str:
        typ = sim.type
        if typ != _MARKET:
            if typ in _LIMITS and not (sim.limit > 0.0 and sim.limit < _INF):
                return f"{typ} needs a positive limit price, got {sim.limit!r}"
            if typ in _STOPS and not (sim.trigger > 0.0 and sim.trigger < _INF):
                return f"{typ} needs a positive trigger price, got {sim.trigger!r}"
        if not (sim.quantity > 0.0 and sim.quantity < _INF):
            return f"quantity {sim.quantity!r} must be > 0"
        if sim.order.post_only:
            if typ not in _LIMITS:
                return f"post_only: not allowed on {typ} orders"
            if typ == _LIMIT and ref == ref and (ref <= sim.limit if sim.buy else ref >= sim.limit):
                return f"post_only: limit {sim.limit} would take liquidity at {ref}"
        if sim.reduce_only:
            pos = self._positions[iid]
            if pos == 0.0 or (pos > 0.0) == sim.buy:
                return f"reduce_only: {sim.order.side.name} would not reduce position {pos}"
        return ""

    def _apply_modify(self, coid: str, cmd: ModifyOrder, arrival: int, ref_buy: float, ref_sell: float) -> None:
        sim = self._orders.get(coid)
        if sim is None or sim.status not in _WORKING:
            self._modify_rejected(cmd, "not working", arrival)
            return
        qty = sim.quantity if cmd.quantity != cmd.quantity else cmd.quantity
        limit = sim.limit if cmd.price != cmd.price else cmd.price
        trigger = sim.trigger if cmd.trigger_price != cmd.trigger_price else cmd.trigger_price
        problem = self._modify_problem(sim, qty, limit, trigger)
        if problem is not None:
            self._modify_rejected(cmd, problem, arrival)
            return
        if sim.order.post_only and (sim.type == _LIMIT or sim.triggered):
            ref = ref_buy if sim.buy else ref_sell
            if ref == ref and (ref <= limit if sim.buy else ref >= limit):
                self._modify_rejected(cmd, f"post_only: limit {limit} would take liquidity at {ref}", arrival)
                return
        sim.quantity, sim.limit, sim.trigger = qty, limit, trigger
        if sim.type == _LIMIT or sim.triggered:
            ref = ref_buy if sim.buy else ref_sell
            sim.aggressive = ref == ref and (ref <= limit if sim.buy else ref >= limit)
        sim.ts_event = arrival
        self._emit(
            OrderModified(
                sim.strategy_id,
                sim.order.instrument_id,
                coid,
                qty,
                sim.limit,
                sim.trigger,
                arrival,
                self.clock.now_ns(),
            )
        )

    @staticmethod
    def _modify_problem(sim: _SimOrder, qty: float, limit: float, trigger: float) -> str | None:
        """Why the venue refuses an order's new quantity, limit or trigger (``None``: it takes them)."""
        if qty <= sim.filled:
            return f"quantity {qty} is not above the filled {sim.filled}"
        if sim.type in _LIMITS and not (limit > 0.0 and math.isfinite(limit)):
            return f"bad limit price {limit!r}"
        if sim.type in _STOPS and not (trigger > 0.0 and math.isfinite(trigger)):
            return f"bad trigger price {trigger!r}"
        return None

    def _modify_rejected(self, cmd: ModifyOrder, reason: str, arrival: int) -> None:
        """Answer a modification the venue does not apply (the order works on unchanged)."""
        logger.info("venue: modify of {} rejected: {}", cmd.client_order_id, reason)
        self._emit(
            OrderModifyRejected(
                cmd.strategy_id, cmd.instrument_id, cmd.client_order_id, reason, arrival, self.clock.now_ns()
            )
        )

    # ------------------------------------------------------------------ matching

    def _match_bar(self, iid: str, bar: Bar, working: list[_SimOrder]) -> None:
        ts = bar.ts_event
        if len(working) == 1 and working[0].type == _MARKET and not self.native_contingent and self._inline:
            # The common case, planned inline: one market order fills at the open.
            sim = working[0]
            if sim.status in _WORKING:
                px = bar.open
                if self._slip:
                    px = self._slipped(iid, sim, px, bar)
                if px == px:
                    self._fill(iid, sim, sim.quantity - sim.filled, px, _TAKER, ts)
            if self._dirty:
                self._prune(iid)
            return
        o, h, lo, c = bar.open, bar.high, bar.low, bar.close
        mode = self._path_mode
        if mode == _CLOSE_DIRECTION:
            path = (o, lo, h, c) if c >= o else (o, h, lo, c)
        else:
            path = (o, h, lo, c) if mode == _HIGH_FIRST else (o, lo, h, c)
        if len(working) == 1:
            plans = self._plan_bar(working[0], path)
        else:
            plans = []
            for sim in working:
                plans.extend(self._plan_bar(sim, path))
            plans.sort(key=_plan_key)
        if self._stop_first and len(plans) > 1:
            plans = _stop_first(plans)
        match = None
        if self.native_contingent:
            # Children activated by a fill below are planned into ``plans`` from its position.
            match = self._bar_match = _BarMatch(iid, path, plans, ts)
        try:
            self._walk_bar(iid, bar, plans, match, ts)
        finally:
            self._bar_match = None
        for sim in working:
            if sim.type == _LIMIT or sim.triggered:
                sim.aggressive = False
        self._prune(iid)

    def _walk_bar(
        self,
        iid: str,
        bar: Bar,
        plans: list[tuple[float, int, int, _SimOrder, float, Liquidity | None]],
        match: _BarMatch | None,
        ts: int,
    ) -> None:
        """Carry out the planned triggers and fills in path order (``plans`` may grow as it goes)."""
        i = 0
        while i < len(plans):
            pos, seq, kind, sim, px, liq = plans[i]
            i += 1
            if sim.status not in _WORKING:
                continue
            if match is not None:
                match.pos = pos
                match.next = i
            if kind == _PLAN_TRIGGER:
                sim.triggered = True
                sim.status = _TRIGGERED
                sim.ts_event = ts
                self._emit(OrderTriggered(sim.strategy_id, iid, sim.coid, ts, self.clock.now_ns()))
            elif kind == _PLAN_FILL:
                if liq is _TAKER and self._slip:
                    px = self._slipped(iid, sim, px, bar)
                    if px != px:
                        continue
                self._fill(iid, sim, sim.leaves, px, liq, ts)
            elif sim.order.post_only and (px <= sim.limit if sim.buy else px >= sim.limit):
                self._close(sim, _EXPIRED, _post_only_taker(sim, px), ts)
            else:
                self._close(sim, _EXPIRED, f"{sim.tif}: not marketable when triggered", ts)

    def _plan_bar(
        self, sim: _SimOrder, path: tuple[float, float, float, float], start: float = 0.0
    ) -> list[tuple[float, int, int, _SimOrder, float, Liquidity | None]]:
        """Events of one order along the bar path from ``start`` (0: the open; later: a native
        child activated at its parent's fill): (position, 0 trigger | 1 fill | 2 expire, price).
        """
        buy = sim.buy
        seq = sim.seq
        typ = sim.type
        first = path[0] if start == 0.0 else _price_at(path, start)
        if typ == _MARKET:
            return [(start, seq, _PLAN_FILL, sim, first, _TAKER)]
        plans: list[tuple[float, int, int, _SimOrder, float, Liquidity | None]] = []
        aggressive = sim.aggressive
        if typ in _STOPS and not sim.triggered:
            r = _reach(path, start, sim.trigger, buy, False)
            if r is None:
                return plans
            px = first if r == start else sim.trigger
            plans.append((r, seq, _PLAN_TRIGGER, sim, px, None))
            if typ == _STOP_MARKET:
                plans.append((r, seq, _PLAN_FILL, sim, px, _TAKER))
                return plans
            if (px <= sim.limit) if buy else (px >= sim.limit):
                plans.append((r, seq, _PLAN_EXPIRE if sim.order.post_only else _PLAN_FILL, sim, px, _TAKER))
                return plans
            if sim.tif != _GTC:
                plans.append((r, seq, _PLAN_EXPIRE, sim, px, None))
                return plans
            start = r
            aggressive = False
        if aggressive:
            plans.append((start, seq, _PLAN_FILL, sim, first, _TAKER))
            return plans
        r = _reach(path, start, sim.limit, not buy, self._through)
        if r is not None:
            plans.append((r, seq, _PLAN_FILL, sim, path[0] if r == 0.0 else sim.limit, _MAKER))
        return plans

    def _match_tick(
        self,
        iid: str,
        working: list[_SimOrder],
        buy_px: float,
        buy_size: float,
        sell_px: float,
        sell_size: float,
        ts: int,
    ) -> None:
        limit_size = self.config.trade_size_limit
        if len(working) == 1 and not limit_size and self._inline:
            sim = working[0]
            if sim.type == _MARKET and sim.tif == _GTC:
                # The common case, inline: one market order takes the whole quantity at this event
                # (what the loop below does for it).
                if sim.status in _WORKING:
                    buy = sim.buy
                    px = buy_px if buy else sell_px
                    qty = sim.leaves
                    if px > 0.0 and qty > 0.0:
                        if self._slip:
                            px = self._slipped_tick(
                                iid, sim, px, qty, buy_px, sell_px, buy_size if buy else sell_size, ts
                            )
                        if px == px:
                            self._fill(iid, sim, qty, px, _TAKER, ts)
                self._prune(iid)
                return
        avail_buy = buy_size if limit_size else math.inf
        avail_sell = sell_size if limit_size else math.inf
        through = self._through
        for sim in list(working):
            if sim.status not in _WORKING:
                continue
            buy = sim.buy
            px = buy_px if buy else sell_px
            if not (px > 0.0):
                continue
            typ = sim.type
            if typ in _STOPS and not sim.triggered:
                if not (px >= sim.trigger if buy else px <= sim.trigger):
                    continue
                sim.triggered = True
                sim.aggressive = True
                sim.status = _TRIGGERED
                sim.ts_event = ts
                self._emit(OrderTriggered(sim.strategy_id, iid, sim.coid, ts, self.clock.now_ns()))
            if typ == _MARKET or typ == _STOP_MARKET:
                liq, fill_px = _TAKER, px
            elif sim.aggressive:
                if px <= sim.limit if buy else px >= sim.limit:
                    if sim.order.post_only:
                        self._close(sim, _EXPIRED, _post_only_taker(sim, px), ts)
                        continue
                    liq, fill_px = _TAKER, px
                elif sim.tif != _GTC:
                    self._close(sim, _EXPIRED, f"{sim.tif}: not marketable", ts)
                    continue
                else:
                    sim.aggressive = False
                    continue
            elif (
                (px < sim.limit if through else px <= sim.limit)
                if buy
                else (px > sim.limit if through else px >= sim.limit)
            ):
                liq, fill_px = _MAKER, sim.limit
            else:
                continue
            avail = avail_buy if buy else avail_sell
            qty = min(sim.leaves, avail)
            if sim.tif == _FOK and qty < sim.leaves:
                self._close(sim, _EXPIRED, f"FOK: only {avail} available of {sim.leaves}", ts)
                continue
            if qty <= 0.0:
                continue
            if liq is _TAKER and self._slip:
                fill_px = self._slipped_tick(iid, sim, fill_px, qty, buy_px, sell_px, buy_size if buy else sell_size, ts)
                if fill_px != fill_px:
                    continue
            filled = self._fill(iid, sim, qty, fill_px, liq, ts)
            if buy:
                avail_buy -= filled
            else:
                avail_sell -= filled
            if sim.status in _WORKING:
                if sim.tif != _GTC:
                    self._close(sim, _EXPIRED, f"{sim.tif}: remainder {sim.leaves} expired", ts)
                elif liq is _TAKER and typ != _MARKET and typ != _STOP_MARKET:
                    sim.aggressive = False
        self._prune(iid)

    # ------------------------------------------------------------------- helpers

    def _slipped(self, iid: str, sim: _SimOrder, px: float, bar: Bar) -> float:
        """``px`` moved by the slippage model against the trader onto the tick grid, within the bar and limit.

        NaN when the venue refuses the slipped price (:func:`slipped_price_reason`): it has canceled the order.
        """
        instrument = self.instruments[iid]
        low, high = bar.low, bar.high
        # bar volume is in base units (tradebus.data.catalog); an order in contracts of contract_size
        slip = slippage_bps(self._slippage, sim.leaves * instrument.contract_size, bar.open, high, low, bar.volume) * 1e-4
        moved = px * (1.0 + slip) if sim.buy else px * (1.0 - slip)
        if instrument.exact_price_reason(moved) is not None:
            return self._refuse_slipped(instrument, sim, moved, math.nan, bar.ts_event)
        if sim.buy:
            px = min(instrument.round_price_up(moved), high)
            if sim.type in _LIMITS:
                px = min(px, sim.limit)
        else:
            px = max(instrument.round_price_down(moved), low)
            if sim.type in _LIMITS:
                px = max(px, sim.limit)
        if not px > 0.0:
            return self._refuse_slipped(instrument, sim, moved, px, bar.ts_event)
        return px

    def _slipped_tick(
        self, iid: str, sim: _SimOrder, px: float, qty: float, buy_px: float, sell_px: float, size: float, ts: int
    ) -> float:
        """``px`` of a taker fill on a trade or quote (``buy_px`` / ``sell_px``: what a buy and a sell
        take; ``size``: the size the order takes from) moved by the slippage model against the trader,
        within the limit; NaN when the venue refuses it (as :meth:`_slipped`)."""
        if buy_px != sell_px:  # a quote: its spread
            spread = buy_px - sell_px
        else:  # a trade: its move from the previous one (not updated yet)
            last = self._last[iid]
            spread = abs(px - last) if last == last else 0.0
        instrument = self.instruments[iid]
        slip = tick_slippage_bps(self._slippage, qty, px, size, spread) * 1e-4
        moved = px * (1.0 + slip) if sim.buy else px * (1.0 - slip)
        if instrument.exact_price_reason(moved) is not None:
            return self._refuse_slipped(instrument, sim, moved, math.nan, ts)
        if sim.buy:
            px = instrument.round_price_up(moved)
            if sim.type in _LIMITS:
                px = min(px, sim.limit)
        else:
            px = instrument.round_price_down(moved)
            if sim.type in _LIMITS:
                px = max(px, sim.limit)
        if not px > 0.0:
            return self._refuse_slipped(instrument, sim, moved, px, ts)
        return px

    def _refuse_slipped(self, instrument: Instrument, sim: _SimOrder, moved: float, price: float, ts: int) -> float:
        """Cancel ``sim``, whose taker fill slipped to ``moved`` (``price`` rounded and clamped), with the reason; NaN."""
        self._close(sim, _CANCELED, slipped_price_reason(instrument, moved, price), ts)  # type: ignore[arg-type]
        return math.nan

    def _fill(self, iid: str, sim: _SimOrder, qty: float, px: float, liq: Liquidity, ts: int) -> float:
        """Fill up to ``qty`` (reduce-only capped); return the quantity filled."""
        pos = self._positions[iid]
        if sim.reduce_only:
            # whole lots: sums of fills drift (0.03 - 0.01 - 0.01 is 0.009999999999999997, -0.01 then -3e-18)
            room = self.instruments[iid].round_quantity(abs(pos)) if (pos > 0.0) != sim.buy and pos != 0.0 else 0.0
            if room <= 0.0 or (qty > room and self.config.reduce_only_mode == "reject"):
                self._close(sim, _CANCELED, f"reduce_only: position {pos} leaves no room", ts)
                return 0.0
            if qty > room:
                if sim.tif == _FOK:
                    self._close(sim, _EXPIRED, f"FOK reduce_only: position {pos} < {qty}", ts)
                    return 0.0
                qty = room
        capped = False
        fill_room = self.fill_room
        if fill_room is not None:
            room = fill_room(sim.coid)
            if qty > room:
                if room <= 0.0 or sim.tif == _FOK:
                    self._close(sim, _CANCELED, "OCO: sibling filled", ts)
                    return 0.0
                qty, capped = room, True
        schedule = self._fees[iid]
        tiered = schedule.tiers  # flat rates (no tiers) are read without the two calls
        notional = qty * self._contract_sizes[iid] * px
        if tiered:
            maker, taker = schedule.rates(ts)
            fee = notional * (maker if liq is _MAKER else taker)
        else:
            fee = notional * (schedule.maker if liq is _MAKER else schedule.taker)
        funds_check = self.funds_check
        if funds_check is not None:
            why = funds_check(sim.order, qty, px, fee)
            if why is not None:
                self._close(sim, _CANCELED, why, ts)
                return 0.0
        self._trade_ids += 1
        sim.filled += qty
        self._positions[iid] = pos + qty if sim.buy else pos - qty
        if tiered:
            schedule.record(ts, notional)
        fill = OrderFilled(
            sim.strategy_id,
            iid,
            sim.coid,
            sim.venue_order_id,
            f"{TRADE_ID_PREFIX}{self._trade_ids}",
            sim.side,
            qty,
            px,
            fee,
            liq,
            ts,
            self.clock.now_ns(),
        )
        last = sim.last_fill  # kept as the latest of the order's fills (the list from the second on)
        if last is not None:
            if sim.fills is None:
                sim.fills = [last]
            sim.fills.append(fill)  # type: ignore[union-attr]
        sim.last_fill = fill
        sim.ts_event = ts
        done = sim.filled >= sim.quantity * (1.0 - 1e-9)
        if done:
            sim.status = _FILLED
            self._dirty.add(iid)
            if self._keep_closed is not None:
                self._retire(sim)
        else:
            sim.status = _PARTIALLY_FILLED
        self._emit(fill)
        if not done and sim.reduce_only and abs(self._positions[iid]) <= 1e-12:
            self._close(sim, _CANCELED, "reduce_only: capped at the position size", ts)
        elif capped and not done:
            self._close(sim, _CANCELED, "OCO: capped at what its group may still fill", ts)
        if self._oco and sim.coid in self._oco:
            self._oco_filled(sim, ts)
        return qty

    def _oco_filled(self, sim: _SimOrder, ts: int) -> None:
        """Cancel (or reduce to ``sim``'s unfilled quantity) the other members of ``sim``'s OCO group."""
        group = self._oco[sim.coid]
        leaves = sim.leaves if sim.status in _WORKING else 0.0
        for coid in list(group):
            other = self._orders.get(coid)
            if coid == sim.coid or other is None:
                continue
            if leaves <= 0.0:
                if other.status in _WORKING or other.status is _SUBMITTED:
                    self._close(other, _CANCELED, "OCO: sibling filled", ts)
            elif other.status in _WORKING and other.filled + leaves < other.quantity:
                other.quantity = other.filled + leaves
                other.ts_event = ts
                self._emit(
                    OrderModified(
                        other.strategy_id,
                        other.order.instrument_id,
                        coid,
                        other.quantity,
                        other.limit,
                        other.trigger,
                        ts,
                        self.clock.now_ns(),
                    )
                )
        if leaves <= 0.0:
            for coid in group:
                self._oco.pop(coid, None)

    def _close(self, sim: _SimOrder, status: OrderStatus, reason: str, ts: int) -> None:
        if sim is self._unacked:  # accepted in this step, closed without the fill that would have told it
            self._unacked = None
            if not sim.filled:
                self._acknowledge(sim.order.instrument_id, sim, sim.arrived)
        self._dirty.add(sim.order.instrument_id)
        if self._oco:
            self._unlink_oco(sim.coid)
        sim.status = status
        sim.ts_event = ts
        if self._keep_closed is not None:
            self._retire(sim)
        now = self.clock.now_ns()
        if status == _CANCELED:
            self._emit(OrderCanceled(sim.strategy_id, sim.order.instrument_id, sim.coid, reason, ts, now))
        else:
            self._emit(OrderExpired(sim.strategy_id, sim.order.instrument_id, sim.coid, reason, ts, now))

    def _reject(self, sim: _SimOrder, reason: str, ts: int) -> None:
        if self._oco:
            self._unlink_oco(sim.coid)
        sim.status = _REJECTED
        sim.ts_event = ts
        if self._keep_closed is not None:
            self._retire(sim)
        logger.info("venue: order {} rejected: {}", sim.coid, reason)
        self._emit(
            OrderRejected(sim.strategy_id, sim.order.instrument_id, sim.coid, reason, ts, self.clock.now_ns())
        )

    def _unlink_oco(self, coid: str) -> None:
        group = self._oco.pop(coid, None)
        if group is not None and coid in group:
            group.remove(coid)
            if len(group) == 1:
                self._oco.pop(group[0], None)

    def _retire(self, sim: _SimOrder) -> None:
        """Note ``sim`` closed; forget the oldest closed order beyond ``keep_closed``."""
        closed = self._closed
        closed.append(sim.coid)
        if len(closed) > self._keep_closed:  # type: ignore[operator]
            self._orders.pop(closed.popleft(), None)

    def _prune(self, iid: str) -> None:
        """Drop the closed orders from ``iid``'s working list (in place; no one iterates it now)."""
        dirty = self._dirty
        if iid in dirty:
            dirty.discard(iid)
            working = self._working[iid]
            if len(working) == 1:
                if working[0].status not in _WORKING:
                    working.clear()
            else:
                working[:] = [sim for sim in working if sim.status in _WORKING]


class _BarMatch:
    """The bar being matched, where a native child activated by a fill is planned in."""

    __slots__ = ("iid", "next", "path", "plans", "pos", "ts")

    def __init__(
        self,
        iid: str,
        path: tuple[float, float, float, float],
        plans: list[tuple[float, int, int, _SimOrder, float, Liquidity | None]],
        ts: int,
    ) -> None:
        self.iid = iid
        self.path = path
        self.plans = plans
        self.ts = ts
        self.pos = 0.0  # position on the path of the plan being carried out
        self.next = 0  # index of the first plan not carried out yet


def _plan_key(plan: tuple[float, int, int, _SimOrder, float, Liquidity | None]) -> tuple[float, int, int]:
    return plan[0], plan[1], plan[2]


def _stop_first(
    plans: list[tuple[float, int, int, _SimOrder, float, Liquidity | None]],
) -> list[tuple[float, int, int, _SimOrder, float, Liquidity | None]]:
    """``plans`` in path order, with every limit fill taken just after the last stop fill of its side
    (a limit filled at the open stays first unless that stop fills at the open too)."""
    last_stop = {True: -1.0, False: -1.0}
    for pos, _seq, kind, sim, _px, _liq in plans:
        if kind == _PLAN_FILL and sim.type in _STOPS and pos > last_stop[sim.buy]:
            last_stop[sim.buy] = pos
    moved = []
    for plan in plans:
        pos, seq, kind, sim, px, liq = plan
        stop = last_stop[sim.buy]
        at_open_first = pos == 0.0 < stop
        if kind == _PLAN_FILL and sim.type == _LIMIT and 0.0 <= stop and pos <= stop and not at_open_first:
            plan = (math.nextafter(stop, _INF), seq, kind, sim, px, liq)
        moved.append(plan)
    moved.sort(key=_plan_key)
    return moved


def _post_only_taker(sim: _SimOrder, px: float) -> str:
    """The reason a triggered post-only stop-limit expires instead of taking at ``px``."""
    return f"post_only: limit {sim.limit} would take liquidity at {px} when triggered"


def _price_at(path: tuple[float, float, float, float], pos: float) -> float:
    k = min(int(pos), 2)
    return path[k] + (pos - k) * (path[k + 1] - path[k])


def _reach(path: tuple[float, float, float, float], start: float, level: float, up: bool, strict: bool) -> float | None:
    """First position >= ``start`` on the bar path where the price is at/above (``up``) or
    at/below ``level`` (beyond it when ``strict``); ``None`` if the rest of the path never gets there.
    Positions run from 0 (open) to 3 (close), one unit per leg.
    """
    x = _price_at(path, start)
    if (x > level if strict else x >= level) if up else (x < level if strict else x <= level):
        return start
    for k in range(min(int(start), 3), 3):
        a = start if start > k else float(k)
        xa = _price_at(path, a)
        y = path[k + 1]
        if (y > level if strict else y >= level) if up else (y < level if strict else y <= level):
            frac = (level - xa) / (y - xa) if y != xa else 1.0
            frac = 0.0 if frac < 0.0 else 1.0 if frac > 1.0 else frac
            return a + frac * (k + 1 - a)
    return None
