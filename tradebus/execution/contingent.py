"""Contingent orders: bracket, OCO, trailing stop, good-till-date, timed exit and cooldown.

:class:`ContingentOrders` builds these from plain orders, in the process, on every venue: the
same code runs in backtests, paper and live (the simulated venue, and any live venue, sees
only market, limit and stop orders, modifies and cancels). A strategy enables it with the
class attribute ``contingent = True`` and uses the ``submit_bracket`` / ``submit_oco`` /
``submit_trailing_stop`` / ``submit_gtd`` helpers of :class:`~tradebus.strategies.base.Strategy`.

Bracket
    An entry order (market or limit) with a stop-loss (stop-market, reduce-only) and a
    take-profit (limit, reduce-only) that form an OCO pair. On a cash-only spot instrument the
    children (and a timed exit) are plain orders, as spot venues have no reduce-only orders: the
    cash account never lets them sell more than the balance holds, and holds the bought quantity
    once for the pair (:meth:`SpotCashAccount.link_oco <tradebus.account.spot.SpotCashAccount.link_oco>`).
    When both are reached in one bar, the one the venue's bar path reaches first fills and the
    account refuses the other (an OCO group fills no more than its largest member), even when it
    holds more of the base asset than the bracket bought. The children are submitted
    (*armed*) once the entry has filled completely (or closed with a partial fill: the
    children cover what filled, including fills that reach the process after the close, as
    much as the closing event says the venue filled), on the first bar (or trade/quote) of the instrument
    processed after the fill; ``arm_after_bars = n`` waits ``n`` more bars. A simulated venue (backtest,
    paper) fills while it matches a market event, which is published after the matching: that event,
    the one that filled the entry, arms the children, once the venue is done with it (sent from inside
    the matching, a child could fill on the trade that filled the entry). A live venue's fills come from
    its private stream, apart from the market data: with ``arm_after_bars = 0`` the children are sent
    as the entry's fill (or its close) is handled, before the strategies hear of it (:attr:`Venue.arms_at_fill
    <tradebus.execution.venue.Venue.arms_at_fill>`), not at the instrument's next trade, which may be
    seconds away in a quiet market and longer with its stream down; children the risk gate denies there,
    all of them (a daemon's hold at start-up, a stale feed, the order rate), are sent again at the
    instrument's next market event, as on a simulated venue, and so are some denied beside one sent
    (the order rate, which counts the entry sent a moment before), for what the working exit has left, in
    one OCO group with it (not on a venue of OCO order lists for a cash-only instrument: its balance lock
    refuses an exit alone beside one resting); denied there again by a check that passes with time (the
    trading state, open orders, the order rate), at the next one again. Before each such try the risk gate is
    asked whether those checks would pass (:meth:`RiskGate.waiting_reason
    <tradebus.risk.gate.RiskGate.waiting_reason>`, which counts nothing): while they would not, the event
    creates, denies and journals no order, so a halt over thousands of trades costs the denials at the fill
    alone, and the exits go at the first event where they pass. A live bracket's resting entry (a limit) filled in
    part does not wait for the rest: its exits (reduce-only: a derivative; ``arm_after_bars = 0``) go at its first fill,
    for what it filled, and grow (a modify of their quantity: an amend, or the venue's cancel-replace, journaled as
    any) to what it filled, less what they filled, at each next fill and at its close, as NautilusTrader's OTO
    children do (its ``OrderManager`` modifies them to the parent's filled quantity at each fill); a growth the risk
    gate denied by a check that passes with time (the order rate, open orders, the trading state, a daemon's guard)
    is sent again at the next market event where those checks pass, one refused otherwise is logged (WARNING). An exit that fills while the entry rests ends the bracket's trade:
    the entry's rest is canceled (bought on, it would open a position the bracket no longer covers); its fills that
    raced the cancel are covered by the working exits grown, or, none working, by exits armed for them. An entry
    canceled with nothing filled had none. On a cash-only (spot) instrument the exits still wait for the entry to
    close: a spot balance locked per order (Binance's OCO order list, amended in place only downwards,
    ``order.amend.keepPriority``) cannot grow them without a window unprotected. On bars an
    action decided at a bar's close reaches the venue at the next bar's open, so with
    ``arm_after_bars = 0`` the children work from the bar after the entry's fill bar, and a
    stop-loss can never fill in the bar the entry filled in (no same-bar stop-out).
    On a live venue with OCO order lists (:attr:`TradingApi.supports_oco
    <tradebus.execution.live.TradingApi.supports_oco>`: Binance spot) a fixed stop-loss and the
    take-profit go in one request as one order list (:meth:`LiveVenue.oco_pair
    <tradebus.execution.live.LiveVenue.oco_pair>`): the venue locks the balance once for both
    (sent as two orders, the second would be refused for the balance the first locks) and
    cancels one when the other fills or triggers. A stop-loss trailing by ``trail_percent`` goes in
    the list as the venue's trailing stop where it has one (:meth:`LiveVenue.trails_in_oco
    <tradebus.execution.live.LiveVenue.trails_in_oco>`) and the floor ``stop_loss`` is below the
    trailed trigger when armed (above, for a buy stop): the venue trails it, from the first trade
    after it is placed, and no modify is sent (a cancel-replace would end the list); it is not
    journaled as trailing, so a restart keeps it as a plain member of the OCO group. On such a
    venue a bracket with a take-profit whose stop-loss trails by ``trail_offset`` (no venue form),
    by a percent the venue does not take, or with a floor above the trigger trailed from the entry
    price (a limit entry's, else the last price) is refused at submit (``OrderError``): sent as two
    orders, the take-profit would be refused for the balance the stop locks. A floor that binds
    only at arming (the price fell meanwhile) still gets two orders (logged). Other venues get two
    orders.
    Bars are the instrument's bars, replayed, received or built from its trades. A bracket that
    counts bars (``arm_after_bars >= 1``, ``exit_after_bars``, ``cooldown_bars``) on an
    instrument the run has no bars of (trades or quotes only) would wait forever: it is refused
    (``OrderError``) when the run knows its data (a backtest from its replay, a paper or live
    daemon from its feeds; :attr:`Kernel.bar_instruments <tradebus.engine.kernel.Kernel.bar_instruments>`),
    and its entry's fill logs a warning when it does not and no bar of the instrument came yet.
OCO
    Members are working orders or :class:`OrderSpec` orders submitted after the group is linked
    (in the account, as a bracket's children are), so each is checked with the group counted once.
    A member the risk gate denied or the venue rejected at its submit never worked: it is left
    out (a warning names it and why), the others are linked if two or more work, a lone one
    stays a plain order. An id of an order that worked and no longer does, or that is in a group
    already, is refused (``OrderError``).
    When a member fills, every other member of the group is reduced to the member's
    unfilled quantity (on a cash-only instrument to what the group may still fill, when less:
    a member the venue capped), canceled when that is none. The cancel is an action like any
    other: the others work until it reaches the venue (on bars: the next bar). Two reduce-only
    members that are both reached in the same bar (a bracket's children) are decided by the
    simulated venue's bar path (open -> low -> high -> close on a bar that closes at or above
    its open, open -> high -> low -> close otherwise): the one the path reaches first fills;
    the other finds no position left and is canceled by the venue, before the OCO cancel
    arrives. On a cash-only spot instrument the account lets the group fill no more than its
    largest member, so the other is canceled too. Members that are not reduce-only on other
    instruments may all fill before it (linking them logs a warning); ``contingent: native``
    cancels the siblings at the fill, in the same bar.
    An OCO group has one size: a strategy's modify that raises a member's unfilled quantity above
    its own (while a sibling's reduction of it is on its way, what the reduction leaves it: the venue
    applies the modify after it) and above what its group leaves it (its largest working sibling's unfilled quantity, and
    on a cash-only instrument the room the group's fills left it) is denied before it reaches the
    venue (``OrderDenied``, reason ``"modify: OCO: ..."``, :meth:`ContingentOrders.refused_raise`),
    in backtests and live alike. Raised alone it would not hold: a sibling's fill reduces it back to
    the sibling's unfilled quantity, and once it filled its sibling works on for what the raise
    added (on spot, a sale of coins the group did not buy). A lowering passes; a size the group
    should grow to is a new order or group.
Cancels the venue refuses
    A cancel sent here (an OCO sibling's, a bracket's children at a timed exit, a GTD expiry)
    that a live venue refuses while the order works on (``OrderCancelRejected``) is sent again
    at the next bar, trade or quote of the instrument (logged at WARNING), one at a time, until
    the order closes.
Reductions the venue refuses
    A sibling's reduction (a modify of its quantity) that a live venue refuses while the sibling
    works on at its larger quantity (``OrderModifyRejected``, or ``OrderDenied`` by the risk gate)
    is sent again at the next bar, trade or quote of the instrument (logged at WARNING), one at a
    time, until the sibling is at the reduced quantity or closes; one whose fills reached it is
    canceled. A denial by a check that passes with time (``max_order_rate``, ``max_open_orders``,
    ``trading_state``, and a daemon's ``feed stale`` and ``book unsynced``) is not a refusal: the reduction is sent again, uncounted, however
    often (the gate answers it without a request; a halt cancels the sibling anyway); one by the
    order's own terms (``instrument``: a reduced quantity under the venue's minimum, ``buying_power``,
    ``price_band``: its price away from the last, which the market may never come back to) counts, as a
    venue's. After :data:`REDUCE_TRIES` refusals the venue is taken not to modify the order: a
    sibling that is not reduce-only is canceled (WARNING: left working, the group could fill more
    than its largest member -- on spot a sale of coins already sold), a reduce-only one is left as
    it is (WARNING: the venue fills it no further than the position; canceled, the position would
    lose that exit). A replacement is not placed here: the live venue cancel-replaces where a
    venue cannot amend. A sibling cancel-replaced before its reduction was applied (``OrderReplaced``)
    hands it to its replacement, for what it had left to fill; one placed again as it was after the
    reduction's own replacement was refused counts that as a refusal. On a cash-only instrument the
    replacement also takes the room the group's fills left the member it replaces
    (:meth:`SpotCashAccount.oco_room <tradebus.account.spot.SpotCashAccount.oco_room>`): the account
    holds for it no more than the group may still buy.
Trailing stop
    A stop-market order whose trigger follows the best price since it was placed by a fixed
    ``offset`` or a ``percent``: for a sell stop ``trigger = best high - offset`` (or
    ``best high * (1 - percent / 100)``), rounded down to the tick; mirrored for a buy stop.
    After each bar (using its high or low) or trade, a better trigger is sent as a modify; it
    reaches the venue like any action (on bars: from the next bar on), so a trigger never
    uses a price the venue has not seen yet. A modify that is not applied (``OrderModifyRejected``,
    or ``OrderDenied`` by the risk gate) leaves the stop at the trigger the venue holds (the
    order's); the best price is kept, so the next price sends its trigger again. A trigger applied
    (``OrderModified``) better than the one it counts on is the one it counts on: a refusal of a modify
    of another term (its quantity) told while its move was still on its way set it back, and its next
    price would send that move again. A venue that
    cannot amend a stop cancel-replaces it (``OrderReplaced``): the trailing, its OCO group and
    its bracket follow the new order, journaled (so does a GTD expiry). A better trigger that comes
    while that cancel-replace is unanswered moves nothing (the order being replaced takes no modify,
    and two cancel-replaces of one stop would race): once the replacement works and the replaced
    order's cancel is handled, one more cancel-replace sends it the trigger of the best price since
    (one settled from the orders' states after no answer, not yet acknowledged: the next price
    does; the cancel-replace refused: as a modify not applied). A bracket's stop-loss trails when the bracket
    has ``trail_offset`` or ``trail_percent``. An instrument with quotes only trails on them: a
    sell stop follows the best bid, a buy stop the best ask (where the stop would execute). Its
    quotes are ignored for trailing once a bar or trade of it came, and from the start when the
    run delivers bars of it (:attr:`Kernel.bar_instruments
    <tradebus.engine.kernel.Kernel.bar_instruments>`), so a run with bars or trades trails as
    without quotes. On bars a stop trails from the bars that open
    after it was placed: of the bar it was placed in (a bracket armed at its close, a stop placed
    when a fill of that bar is reported, or by a timer inside it) only the close counts, never a
    high or low from before the stop existed. A stop placed when a fill is reported starts from
    the fill's price: a simulated venue fills while it matches a bar, trade or quote whose price
    is not in the cache yet (the cache still holds the one before).
Good-till-date
    A limit or stop order that ends (reason ``"GTD: expired"``) at its ``expire_ns``, if still
    working then. A simulated venue (backtest, paper) expires it at that time on its own clock
    (:meth:`SimulatedVenue.expire_at <tradebus.execution.simulated.SimulatedVenue.expire_at>`,
    ``OrderExpired``), so the latency never lets it fill after its expiry; on another venue it
    is canceled when the clock reaches ``expire_ns`` (the cancel travels like any action). A
    modify the venue does as a cancel-replace (``OrderReplaced``) gives the replacement the
    replaced order's ``expire_ns`` (its timer, journaled ``"gtd"`` link and :attr:`Order.expire_ns
    <tradebus.execution.orders.Order.expire_ns>`), so the order still ends at its date.
Timed exit
    A bracket with ``exit_after_bars`` (bars of the instrument after the entry's fill bar) or
    ``exit_after_ns`` (clock time after the fill) cancels its children and closes what is
    left of its position with a reduce-only market order. On a cash-only spot instrument the
    children hold the coins the exit sells until their cancels are confirmed: the exit (a plain
    market order) is sent once none of them works any more, for what their fills left (on bars:
    the cancels reach the venue at the next bar's open, the exit one bar later). A cancel the
    venue refuses is sent again (below) and the exit waits for it.
Cooldown
    A bracket with ``cooldown_bars = n`` refuses new brackets of its strategy on its
    instrument for ``n`` bars, counting the bar it closed in (stop-loss, take-profit or timed
    exit): ``submit_bracket`` returns ``None`` and logs why.

Native (``contingent: native`` in the venue config; the simulated venue with bars, trades or quotes)
    The venue holds a bracket's children and the OCO groups, as an exchange does: with
    ``arm_after_bars = 0`` the children are sent the moment the entry has filled, inside
    :meth:`SimulatedVenue.children_of <tradebus.execution.simulated.SimulatedVenue.children_of>`,
    and go live at the fill's point of the bar path (a stop-loss or take-profit can fill in
    the entry's bar when the rest of the bar reaches it); an OCO group is linked at the venue,
    which cancels the siblings of a filled member in the same bar. ``arm_after_bars = n >= 1``
    still waits ``n`` bars (no same-bar stop-out), then the children arrive as plain orders.
    A trailing stop-loss placed so trails from the entry's fill (the price at that point of the
    bar path, or the filling trade), and after the entry's bar from the part of it after the fill.

Restarts
    Every link is journaled (:class:`~tradebus.engine.messages.ContingentLinked`, committed
    before the orders it names are sent): a bracket's parameters, its children's and timed
    exit's ids, OCO groups, trailing stops and GTD times. A paper or live daemon restarted from
    its journal hands them to :meth:`ContingentOrders.restore` at start, after the journal's
    orders were settled with the venue:

    * a bracket whose entry is still working waits for it as before; one whose exits worked for its part filled
      (its ``"children"`` link, an exit working or filled) keeps them as its own: they grow at the first market
      event if the entry filled on meanwhile, and an exit filled meanwhile cancels the entry's rest there;
    * a bracket whose children still work (a live venue keeps them) is linked again: when one
      fills, the other is canceled (OCO), and a trailing stop keeps trailing (from the best
      price its trigger implies); exits resting as one OCO order list (journaled with their ``"oco"``
      link) are known as one: the venue cancels the other, no reduction is sent to them, and a modify of
      one is denied (:meth:`ContingentOrders.refused_in_list`); on a live venue an exit the risk gate denied at
      the fill beside the working one (the journal's ``"children"`` link names it, its order ``DENIED``, or no
      order of it journaled: a resend killed between its link's commit and its order's) and not sent again before
      the restart is sent at the first market event after it, as it would have been;
    * a bracket whose entry filled but whose children no longer work -- a paper venue's working
      orders end with its process, so the restart canceled them -- is armed again for the
      quantity left (entry fills, less a fee the venue took out of the coins bought, minus
      children and exit fills), with the same stop-loss and take-profit, at the first bar (after ``arm_after_bars``) or trade after the restart;
      never for more than its strategy still holds of the instrument on its side, less what the brackets restored
      before it exit (a ``live-kill --flatten``, an operator's ``/flatten`` or a liquidation closed it meanwhile):
      a bracket left nothing to exit sends no order, its children still working are canceled, and a log line says
      so;
      one whose entry's fill is booked after the restart (the venue filled it while the daemon was down, and a
      query or the start-up reconciliation books it) is armed at that fill on a live venue, as above; children
      journaled (``"children"``) and working at the venue are never sent again;
    * a cancel-replace in flight when the previous process stopped (its ``"replace"`` intent is
      journaled before the request is sent): once the venue shows the replacement placed
      (accepted or filled, or still open while the replaced order ended unfilled), the replaced
      order's trailing, OCO group, bracket and GTD links move to it, as ``OrderReplaced`` would have
      moved them; the replacement refused, or the replaced order filled, they stay. The same rule
      settles a cancel-replace whose request got no answer. A two-request cancel-replace (its
      intent journaled with no replacement id, before its cancel) keeps the links of its order
      canceled at the venue until the replacement is submitted (``OrderReplaced`` moves them) or the
      modification refused (``OrderModifyRejected``: the order's close is acted on then);
    * a bracket's children all denied by the risk guard for what holds every order on the instrument a while
      (a live start-up's reconciliation, an instrument held, a stale feed, an unsynced book: the guard's
      ``block_reason``) are armed again, once, at the first bar, trade or quote after the guard lets orders on it
      pass (a restart's first trade inside the start-up's hold re-arms the bracket then) and the risk gate's checks
      that pass with time would too (a hold that ends into a HALT: at the first one after it, none created, denied
      or journaled before), for what its strategy still holds; a WARNING says they were held back, an INFO line
      when they go;
    * an OCO group with a filled member has its members still working canceled at the first bar,
      trade or quote of the instrument (their cancel was refused, or never sent), and so have the
      children still working of a bracket whose timed exit was sent or decided; a spot exit decided
      and not sent yet goes once they closed (at the first market event, if none works);
    * an OCO group with a partly filled member has its other working members reduced to what the
      group rules leave them (their fills plus the filler's unfilled quantity) at the first bar,
      trade or quote of the instrument, when above it (their reduction was refused, or never sent);
      on a cash-only instrument the account is given the room the group's fills left each working member
      (the group fills no more than its size, journaled with its ``"oco"`` link as its reductions lower its
      members' quantities -- a link without it: its largest member's quantity now --, no member more than a
      partly filled one's unfilled quantity; a member's fills count those of the orders it replaced by cancel-replaces),
      so it holds no more than that before the reduction is applied; the refusals of a reduction are journaled (``ContingentLinked`` kind ``"reduce"``), so the
      restart counts on from them: one refused :data:`REDUCE_TRIES` times before is not sent again
      (the sibling is canceled, a reduce-only one left as it is);
    * GTD cancels and a duration-based timed exit are set again (the exit counted from the
      entry's last event); a bar-based timed exit counts bars again from the restart, and a
      cooldown is not restored.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec
from loguru import logger

from tradebus.engine.messages import (
    Bar,
    CancelOrder,
    ContingentLinked,
    ModifyOrder,
    OrderCanceled,
    OrderCancelRejected,
    OrderDenied,
    OrderExpired,
    OrderFilled,
    OrderModified,
    OrderModifyRejected,
    OrderRejected,
    OrderReplaced,
    OrderSide,
    OrderStatus,
    OrderType,
    Quote,
    SubmitOrder,
    TimeEvent,
    TimeInForce,
    Trade,
)
from tradebus.errors import OrderError
from tradebus.execution.orders import Order, OrderResolved, closing_event
from tradebus.risk.gate import PASSING_CHECKS
from tradebus.risk.guard import GUARD_CHECKS

if TYPE_CHECKING:
    from tradebus.engine.kernel import Kernel

__all__ = ["REDUCE_TRIES", "Bracket", "ContingentOrders", "OrderSpec", "TrailingStop"]

#: Refusals of an OCO sibling's reduction after which the venue is taken not to modify it (module docstring).
REDUCE_TRIES = 3
#: The risk gate's denials of a reduction that pass with time, whatever the order (the order rate, the count of open
#: orders, the trading state; a daemon's market guard: a stale feed, an unsynced book): sent again, never counted
#: among its REDUCE_TRIES.
_PASSING_DENIALS = tuple(f"modify: {check}:" for check in PASSING_CHECKS + GUARD_CHECKS)
#: The risk gate's own such denials of a submit: a live bracket's exits denied so are sent again at each next market
#: event until they pass (:meth:`ContingentOrders._arm_at_fill`; the guard's wait for it,
#: :meth:`ContingentOrders._arm_held`).
_PASSING_SUBMITS = tuple(f"{check}:" for check in PASSING_CHECKS)

_NAN = math.nan
#: States of a bracket whose entry works (module docstring, Bracket).
_ENTERING = ("entry", "partial")
#: Statuses of an order refused at its submit (by the risk gate, or by the venue): it never worked.
_REFUSED = frozenset({OrderStatus.DENIED, OrderStatus.REJECTED})
#: Statuses of an order the venue has: a replacement in one of them means its cancel-replace was done.
_AT_VENUE = frozenset({OrderStatus.ACCEPTED, OrderStatus.TRIGGERED, OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED})


def _bar_counts(arm_after_bars: int, exit_after_bars: int | None, cooldown_bars: int) -> str:
    """The bracket options that count bars (``""``: none), as ``"arm_after_bars=2, ..."``."""
    counts = {"arm_after_bars": arm_after_bars, "exit_after_bars": exit_after_bars, "cooldown_bars": cooldown_bars}
    return ", ".join(f"{name}={n}" for name, n in counts.items() if n)


def _opt(value: float) -> float | None:
    return None if value != value else value


def _opt_int(value: float) -> int | None:
    return None if value != value else int(value)


@dataclass(frozen=True, slots=True)
class OrderSpec:
    """An order to submit as a member of an OCO group (:meth:`ContingentOrders.oco`).

    A limit at ``price``, a stop-market at ``trigger_price``, a stop-limit with both.
    """

    instrument_id: str
    side: OrderSide
    quantity: float
    price: float | None = None
    trigger_price: float | None = None
    reduce_only: bool = False
    post_only: bool = False
    time_in_force: TimeInForce = TimeInForce.GTC
    #: Its submit reason (orders.csv, fills.csv); ``""``: ``"oco"``.
    reason: str = ""


@dataclass(slots=True)
class TrailingStop:
    """A working trailing stop (see the module docstring)."""

    client_order_id: str
    instrument_id: str
    sell: bool
    offset: float | None
    percent: float | None
    best: float
    trigger: float
    #: Highest and lowest price of the rest of the bar it was placed in (a native child placed
    #: at its entry's fill inside a bar): the next bar update reads them, not the whole bar.
    rest_of_bar: tuple[float, float] | None = None
    #: Clock time it was placed at: of a bar that opened before, only the close comes after it
    #: (-1: every bar counts; a native child, or a stop restored after a restart).
    placed_ns: int = -1
    #: A better trigger came while its cancel-replace was unanswered: sent to the replacement (:meth:`ContingentOrders._move`).
    withheld: bool = False

    def trigger_for(self, best: float) -> float:
        """The trigger ``offset`` or ``percent`` away from ``best``."""
        if self.offset is not None:
            return best - self.offset if self.sell else best + self.offset
        pct = (self.percent or 0.0) / 100.0
        return best * (1.0 - pct) if self.sell else best * (1.0 + pct)

    def best_for(self, trigger: float) -> float:
        """The best price ``trigger`` trails (the inverse of :meth:`trigger_for`, before rounding)."""
        if self.offset is not None:
            return trigger + self.offset if self.sell else trigger - self.offset
        pct = (self.percent or 0.0) / 100.0
        return trigger / (1.0 - pct) if self.sell else trigger / (1.0 + pct)


@dataclass(slots=True)
class _Reduction:
    """An OCO sibling's reduction sent and not applied yet."""

    #: The total quantity sent (its filled quantity then, plus what it may still fill).
    quantity: float
    refusals: int = 0
    #: Refused: sent again at the next market event of its instrument.
    again: bool = False
    #: The quantity of the order's growth (:meth:`ContingentOrders._grow`) on its way when the reduction was sent.
    growth: float = 0.0


@dataclass(slots=True)
class Bracket:
    """One bracket's state (see the module docstring)."""

    strategy_id: str
    instrument_id: str
    entry_id: str
    side: OrderSide
    stop_loss: float | None
    take_profit: float | None
    trail_offset: float | None
    trail_percent: float | None
    arm_after_bars: int
    exit_after_bars: int | None
    exit_after_ns: int | None
    cooldown_bars: int
    filled: float = 0.0
    # entry (-> partial: a live entry resting partly filled, its exits working for the part) -> filled -> armed
    # (-> exiting: a spot timed exit waits for its children) -> closed
    state: str = "entry"
    bars_since_fill: int = -1
    children: list[str] = field(default_factory=list)
    exit_id: str | None = None
    fill_px: float = _NAN  # the entry's last fill price
    #: The venue's filled quantity of an entry that closed before its fills came (0: none pending).
    venue_filled: float = 0.0
    #: Restored from the journal: its timed exit was decided, to be sent once its children closed.
    exit_due: bool = False
    #: Some of its exits were denied at its entry's fill, beside one sent: sent again at the next market event.
    resend: bool = False
    #: The risk-gate check its denied exits wait for, as last told (``""``: none).
    waiting: str = ""
    #: A growth of its exits to what its entry filled was not applied: sent again at the next market event.
    regrow: bool = False


class ContingentOrders:
    """Builds brackets, OCO groups, trailing stops, GTD orders and timed exits (module docstring).

    Parameters
    ----------
    kernel
        The kernel whose bus, clock, orders and submit path it uses. It subscribes to order
        events and to the bars and trades of every instrument.
    """

    def __init__(self, kernel: Kernel) -> None:
        self._kernel = kernel
        self._brackets: dict[str, Bracket] = {}  # entry id -> bracket
        self._child_of: dict[str, Bracket] = {}  # child or exit id -> bracket
        self._oco: dict[str, list[str]] = {}  # member id -> its group (shared list)
        # member id -> its group's size: its largest member's quantity when linked (journaled: a restart's room).
        self._oco_size: dict[str, float] = {}
        self._trailing: dict[str, TrailingStop] = {}
        # Cancel-replaces in flight (ContingentLinked "replace"): replaced id -> replacement id.
        self._replacing: dict[str, str] = {}
        self._replaced_by: dict[str, str] = {}  # replacement id -> replaced id
        # Replaced id -> its replacement, a trailing stop whose withheld trigger is sent once the replaced order's close is handled.
        self._withheld_after: dict[str, str] = {}
        self._gtd = 0
        # Where each instrument's latest bar closed (the open of its next bar).
        self._bar_close: dict[str, int] = {}
        # (strategy id, instrument id) -> bars left in the cooldown
        self._cooldown: dict[tuple[str, str], int] = {}
        venue = kernel.venue
        #: The venue holds children and OCO groups itself (see the module docstring).
        self.native = bool(getattr(venue, "native_contingent", False))
        #: A bracket's exits go at its entry's fill (:attr:`Venue.arms_at_fill <tradebus.execution.venue.Venue.arms_at_fill>`).
        self.at_fill = bool(getattr(venue, "arms_at_fill", False))
        self._venue = venue
        # Members of OCO groups the venue keeps (it cancels their siblings itself).
        self._venue_oco: set[str] = set()
        # Of those, the exits resting as one OCO order list at a live venue (which takes no modify of them).
        self._listed: set[str] = set()
        # The cancels sent of orders not closed yet: id -> (strategy id, instrument id, reason).
        self._canceling: dict[str, tuple[str, str, str]] = {}
        # Those the venue refused (OrderCancelRejected): sent again at the next bar, trade or quote of the instrument.
        self._cancel_again: set[str] = set()
        # OCO siblings' reductions sent and not applied yet (some refused: sent again at the next market event).
        self._reducing: dict[str, _Reduction] = {}
        #: A partly filled entry's exits whose growth (:meth:`_grow`) is on its way: the quantity sent.
        self._growing: dict[str, float] = {}
        # The OCO member whose raise refused_raise is denying (its OrderDenied is no refusal of a reduction).
        self._raise_refused: str | None = None
        bus = kernel.bus
        bus.subscribe(OrderFilled, self._on_fill)
        for cls in (OrderCanceled, OrderExpired, OrderRejected, OrderDenied):
            bus.subscribe(cls, self._on_closed)
        bus.subscribe(OrderModifyRejected, self._on_modify_refused)
        bus.subscribe(OrderCancelRejected, self._on_cancel_refused)
        bus.subscribe(OrderModified, self._on_modified)
        bus.subscribe(OrderReplaced, self._on_replaced)
        bus.subscribe(ContingentLinked, self._on_replacing)
        bus.subscribe(OrderResolved, self._on_resolved)
        for iid in kernel.instruments:
            bus.subscribe(Bar, self._on_bar, iid)
            bus.subscribe(Trade, self._on_trade, iid)
            bus.subscribe(Quote, self._on_quote, iid)
        # instrument id -> price of its latest fill, while no bar, trade or quote of it came after
        # that fill: a simulated venue fills while it matches one, before the cache holds its price.
        self._fill_px: dict[str, float] = {}
        # Instruments a bar or trade of came: their quotes no longer trail stops.
        self._printed: set[str] = set()
        # Instruments whose brackets counting bars were warned about (no bar of them seen yet).
        self._warned_no_bars: set[str] = set()
        # Entry id -> why the risk guard held back all its bracket's exits (a hold, a stale feed): armed again once
        # the guard lets orders on its instrument pass.
        self._arm_again: dict[str, str] = {}

    # ------------------------------------------------------------------ strategy API

    def bracket(
        self,
        strategy_id: str,
        instrument_id: str,
        side: OrderSide,
        quantity: float,
        *,
        entry_price: float | None = None,
        stop_loss: float | None = None,
        take_profit: float | None = None,
        trail_offset: float | None = None,
        trail_percent: float | None = None,
        arm_after_bars: int = 0,
        exit_after_bars: int | None = None,
        exit_after_ns: int | None = None,
        cooldown_bars: int = 0,
        reason: str = "",
    ) -> str | None:
        """Submit a bracket's entry (limit at ``entry_price``, else market); return its id (``None`` in cooldown).

        Its submit reason is ``reason``, or ``"bracket entry"`` when none is given.

        Raises
        ------
        OrderError
            A stop-loss or take-profit on the wrong side of ``entry_price`` (of a market entry:
            of the last price, where it would fill or trigger at once; a stop-loss of a marketable
            limit entry, a buy at or above the last price, also of that price), both trailing
            parameters, a trailing parameter without ``stop_loss`` (the stop-loss it trails), a
            negative bar count, a bar count on an instrument the run has no bars of, or, on a
            live venue with OCO order lists, a trailing stop-loss and a take-profit that cannot
            rest in one list (module docstring).
        """
        if arm_after_bars < 0 or cooldown_bars < 0 or (exit_after_bars is not None and exit_after_bars < 1):
            raise OrderError("bracket: arm_after_bars and cooldown_bars must be >= 0, exit_after_bars >= 1")
        if trail_offset is not None and trail_percent is not None:
            raise OrderError("bracket: give trail_offset or trail_percent, not both")
        if stop_loss is None and (trail_offset is not None or trail_percent is not None):
            name = "trail_offset" if trail_offset is not None else "trail_percent"
            raise OrderError(
                f"bracket: {name} trails the stop-loss, but no stop_loss was given (the bracket would have no "
                f"stop-loss at all): give stop_loss, the trigger's floor, or place submit_trailing_stop once the "
                f"entry fills"
            )
        buy = side == OrderSide.BUY
        # a child the venue could not take would leave the filled entry unprotected: refused before the entry
        for name, value in (("entry_price", entry_price), ("stop_loss", stop_loss), ("take_profit", take_profit),
                            ("trail_offset", trail_offset), ("trail_percent", trail_percent)):
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise OrderError(f"bracket: {name} must be a positive finite number, got {value!r}")
        if stop_loss is not None and take_profit is not None and (stop_loss >= take_profit) == buy:
            where = "below" if buy else "above"
            raise OrderError(f"bracket: stop_loss {stop_loss} must be {where} take_profit {take_profit} of a {side.name}")
        self._check_exits_apart(instrument_id, side, entry_price, stop_loss, take_profit)
        counting = _bar_counts(arm_after_bars, exit_after_bars, cooldown_bars)
        bars_of = self._kernel.bar_instruments
        if counting and bars_of is not None and instrument_id not in bars_of:
            raise OrderError(
                f"bracket: {counting} count(s) bars of {instrument_id}, but the run has no bars of it "
                f"(it has only its trades or quotes): the bracket would wait for bars forever; build bars "
                f"from its trades (bars: in the data source) or use exit_after_ns"
            )
        why = self._apart_at_venue(instrument_id, side, entry_price, stop_loss, take_profit, trail_offset, trail_percent)
        if why:
            raise OrderError(
                f"bracket on {instrument_id}: this venue locks the balance of each open order, so the stop-loss and "
                f"take-profit must rest as one OCO order list (sent apart, the take-profit is refused for what the "
                f"stop locks), but {why}; trail by trail_percent (whole basis points) with a stop_loss the trailed "
                f"trigger starts beyond, or give no take_profit"
            )
        left = self._cooldown.get((strategy_id, instrument_id), 0)
        if left > 0:
            logger.info("bracket of {} on {} refused: cooldown, {} bar(s) left", strategy_id, instrument_id, left)
            return None
        # Known before the submit: a denial is published while it runs.
        entry_id = self._kernel.orders.next_client_order_id(strategy_id)
        self._brackets[entry_id] = Bracket(
            strategy_id, instrument_id, entry_id, side, stop_loss, take_profit, trail_offset, trail_percent,
            arm_after_bars, exit_after_bars, exit_after_ns, cooldown_bars,
        )
        self._link(
            "bracket", strategy_id, instrument_id, entry_id, (), side=int(side), stop_loss=stop_loss,
            take_profit=take_profit, trail_offset=trail_offset, trail_percent=trail_percent,
            arm_after_bars=arm_after_bars, exit_after_bars=exit_after_bars, exit_after_ns=exit_after_ns,
            cooldown_bars=cooldown_bars,
        )
        reason = reason or "bracket entry"
        if entry_price is None:
            self._submit(strategy_id, instrument_id, side, quantity, OrderType.MARKET, reason=reason, coid=entry_id)
        else:
            self._submit(strategy_id, instrument_id, side, quantity, OrderType.LIMIT, price=entry_price,
                         reason=reason, coid=entry_id)
        return entry_id

    def oco(self, members: Sequence[str | OrderSpec], strategy_id: str | None = None) -> list[str]:
        """Make ``members`` one OCO group (module docstring); return their client order ids.

        A ``str`` is the id of a working order; an :class:`OrderSpec` is submitted for
        ``strategy_id`` after the group is linked, so the risk gate and the cash account check it
        with the group counted once (a stop and a limit that sell the same position both pass).

        A member that never worked -- denied by the risk gate or rejected by the venue at its
        submit (a start-up reconciliation, a tripped breaker, a limit: nothing a strategy can
        foresee) -- is left out of the group with a warning naming it and the reason; the members
        that work are linked if two or more do, a lone one stays a plain order. The ids returned
        include the members left out.

        Raises
        ------
        OrderError
            Fewer than two members, members of more than one instrument, an order spec without
            ``strategy_id``, of an unknown instrument, or with neither a price nor a trigger; an id
            given twice, of no order, of an order that worked and no longer does (filled,
            canceled, expired), of one already in an OCO group (a bracket's exits are one), or of
            another strategy's order than ``strategy_id``'s.
        """
        if len(members) < 2:
            raise OrderError("oco: a group needs at least two orders")
        orders = self._kernel.orders
        ids = [m for m in members if isinstance(m, str)]
        for coid in ids:
            self._check_member(coid, strategy_id, ids.count(coid))
        specs: dict[str, OrderSpec] = {}
        group: list[str] = []
        for member in members:
            if isinstance(member, str):
                group.append(member)
                continue
            if strategy_id is None:
                raise OrderError("oco: an order spec needs the strategy id to submit it for")
            self._check_spec(member)
            coid = orders.next_client_order_id(strategy_id)
            specs[coid] = member
            group.append(coid)
        iids = {specs[c].instrument_id if c in specs else orders.order(c).instrument_id for c in group}
        if len(iids) != 1:
            raise OrderError(f"oco: every order must be of one instrument, got {sorted(iids)}")
        linked = [c for c in group if c in specs or self._is_open(c)]  # not the orders refused at submit
        plain = [c for c in linked if not (specs[c].reduce_only if c in specs else orders.order(c).reduce_only)]
        cash_only = self._kernel.instruments[next(iter(iids))].cash_only  # the account caps the group's fills
        if len(linked) > 1 and plain and not cash_only and not self.native and not set(linked) <= self._venue_oco:
            logger.warning(
                "oco {}: {} not reduce-only; the cancel reaches the venue one action after a fill (on bars "
                "the next bar), so several members may fill; venue.contingent: native cancels at the fill",
                linked, plain,
            )  # fmt: skip
        if not specs:
            if len(linked) > 1:
                self._group(linked)
            self._left_out(group, linked)
            return group
        (iid,) = iids
        sid = strategy_id if linked[0] in specs else orders.order(linked[0]).strategy_id
        size = max(specs[c].quantity if c in specs else orders.order(c).quantity for c in linked)
        # As a bracket's children: linked (and journaled) before they are sent, so each is checked
        # against the group counted once.
        self._kernel.portfolio.account.link_oco(linked)
        self._link("oco", sid, iid, linked[0], linked, size=size)
        for coid, spec in specs.items():
            order_type = (
                OrderType.LIMIT if spec.trigger_price is None
                else OrderType.STOP_MARKET if spec.price is None else OrderType.STOP_LIMIT
            )  # fmt: skip
            self._submit(
                strategy_id, iid, spec.side, spec.quantity, order_type,  # type: ignore[arg-type]
                price=_NAN if spec.price is None else spec.price,
                trigger=_NAN if spec.trigger_price is None else spec.trigger_price,
                time_in_force=spec.time_in_force, post_only=spec.post_only, reduce_only=spec.reduce_only,
                reason=spec.reason or "oco", coid=coid,
            )  # fmt: skip
        live = [c for c in linked if self._is_open(c)]
        if len(live) > 1:
            self._group(live, journal=False, size=size)
        else:
            for coid in live:
                self._kernel.portfolio.account.unlink_oco(coid)
        self._left_out(group, live)
        return group

    def _left_out(self, group: list[str], live: list[str]) -> None:
        """Warn of the members of ``group`` refused at their submit (denied or rejected), left out of it."""
        orders = self._kernel.orders
        refused = [orders.order(c) for c in group if orders.order(c).status in _REFUSED]
        if not refused:
            return
        rest = (
            f"{live} linked" if len(live) > 1
            else f"{live[0]} stays a plain order, with no group" if live
            else "no group"
        )  # fmt: skip
        logger.warning(
            "oco {}: left out, refused at submit: {}; {}",
            group, "; ".join(f"{o.client_order_id} {o.status} ({o.reason})" for o in refused), rest,
        )  # fmt: skip

    def _check_member(self, coid: str, strategy_id: str | None, times: int) -> None:
        """Refuse an order id as a new OCO member: given ``times`` > 1, unknown, no longer working (one refused at
        its submit never worked: :meth:`oco` leaves it out), already grouped, or not ``strategy_id``'s (``None``:
        any strategy's)."""
        order = self._kernel.orders.get(coid)
        grouped = [c for c in self._oco.get(coid, ()) if c != coid]  # a group's closed members have left it
        why = (
            f"given {times} times" if times > 1
            else "no such order" if order is None
            else f"is {order.status}, not working" if not order.is_open and order.status not in _REFUSED
            else f"is already in an OCO group with {grouped}" if grouped
            else f"is an order of strategy {order.strategy_id!r}" if strategy_id not in (None, order.strategy_id)
            else ""
        )  # fmt: skip
        if why:
            raise OrderError(f"oco: order {coid!r} {why}; an OCO group links working orders of one strategy, each once")

    def _check_spec(self, spec: OrderSpec) -> None:
        if spec.instrument_id not in self._kernel.instruments:
            raise OrderError(f"oco: unknown instrument {spec.instrument_id!r}")
        if spec.price is None and spec.trigger_price is None:
            raise OrderError("oco: an order spec needs a price (limit), a trigger_price (stop) or both (stop-limit)")
        for name in ("price", "trigger_price"):
            value = getattr(spec, name)
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise OrderError(f"oco: {name} must be a positive finite number, got {value!r}")

    def _check_exits_apart(
        self, instrument_id: str, side: OrderSide, entry_price: float | None, stop_loss: float | None,
        take_profit: float | None,
    ) -> None:
        """Raise an :class:`OrderError` for a bracket exit that would fill or trigger as soon as the entry fills.

        A limit entry fills at its price or better: its take-profit must lie beyond that price, its stop-loss
        below a buy's price (above a sell's) and, when the entry is marketable (a buy limit at or above the
        last price), below the last price too, where it fills at once. A market entry fills near the last price.
        """
        buy = side == OrderSide.BUY
        last = self._last_price(instrument_id)
        for name, px, below, at_once in (("stop_loss", stop_loss, buy, "trigger"), ("take_profit", take_profit, not buy, "fill")):
            if px is None:
                continue
            where = "below" if below else "above"
            if entry_price is not None and (px >= entry_price if below else px <= entry_price):
                raise OrderError(f"bracket: {name} {px} must be {where} the entry {entry_price} of a {side.name}")
            if last == last and (entry_price is None or name == "stop_loss") and (px >= last if below else px <= last):
                if entry_price is None:
                    raise OrderError(f"bracket: {name} {px} must be {where} the last price {last} of a market "
                                     f"{side.name} entry (it would {at_once} at once)")
                raise OrderError(f"bracket: {name} {px} must be {where} the last price {last}, where the marketable "
                                 f"limit {side.name} entry at {entry_price} fills (it would {at_once} at once)")

    def _last_price(self, instrument_id: str) -> float:
        """The instrument's latest price (NaN before any): a fill reported while a bar, trade or quote is
        matched is the venue's latest, which the cache does not hold yet."""
        last = self._fill_px.get(instrument_id)
        return self._kernel.cache.prices.get(instrument_id, _NAN) if last is None else last

    def _apart_at_venue(
        self, instrument_id: str, side: OrderSide, entry_price: float | None, stop_loss: float | None,
        take_profit: float | None, trail_offset: float | None, trail_percent: float | None,
    ) -> str:
        """Why a bracket's trailing stop-loss and take-profit could not rest as one OCO order list at a live
        venue with lists (``""``: they can, or the venue has none): a fixed offset, a percent the venue does
        not take, or a floor ``stop_loss`` beyond the trigger trailed from the entry price (a limit entry's,
        else the last price), which the venue's trailing stop (no floor) cannot keep."""
        trailing = trail_offset is not None or trail_percent is not None
        if stop_loss is None or take_profit is None or not trailing or not getattr(self._venue, "lists_oco", False):
            return ""
        if trail_percent is None:
            return f"its stop-loss trails by trail_offset {trail_offset}, and the venue's trailing stop trails in percent only"
        if not self._venue.trails_in_oco(trail_percent):  # type: ignore[attr-defined]
            return f"trail_percent {trail_percent} is no trailing delta the venue takes (whole basis points)"
        start = entry_price if entry_price is not None else self._kernel.cache.prices.get(instrument_id, _NAN)
        if start != start:
            return ""  # no price yet: decided when armed (_venue_trails)
        sell = side == OrderSide.BUY
        trail = TrailingStop("", instrument_id, sell, None, trail_percent, start, _NAN)
        trigger = self._round(instrument_id, trail.trigger_for(start), sell)
        if trigger < stop_loss if sell else trigger > stop_loss:
            return (
                f"its floor stop_loss {stop_loss} is {'above' if sell else 'below'} the trigger {trigger} trailed "
                f"{trail_percent} % from {start}, and the venue's trailing stop has no floor"
            )
        return ""

    def _group(self, group: list[str], journal: bool = True, size: float | None = None) -> None:
        """Link working orders into one OCO group (journaled unless it was before they were sent) of ``size``
        (``None``: its largest member's quantity)."""
        orders = self._kernel.orders
        if size is None:
            size = max(orders.order(c).quantity for c in group)
        for coid in group:
            self._oco[coid] = group
            self._oco_size[coid] = size
        self._kernel.portfolio.account.link_oco(group)
        if journal:
            first = orders.order(group[0])
            listed = {"listed": 1.0} if self._listed.issuperset(group) else {}  # a restart takes no modify of them
            self._link("oco", first.strategy_id, first.instrument_id, group[0], group, size=size, **listed)
        if self.native:
            self._venue.link_oco(group)  # type: ignore[attr-defined]
            self._venue_oco.update(group)

    def trailing_stop(
        self,
        strategy_id: str,
        instrument_id: str,
        side: OrderSide,
        quantity: float,
        *,
        offset: float | None = None,
        percent: float | None = None,
        reduce_only: bool | None = None,
        reason: str = "",
    ) -> str:
        """Submit a trailing stop from the instrument's last price (its latest fill's, when no
        market data of it came since); return its id.

        ``reduce_only=None``: as a bracket's exits (reduce-only, except on a cash-only spot instrument).
        Its submit reason is ``reason``, or ``"trailing stop"`` when none is given.

        Raises
        ------
        OrderError
            Neither or both of ``offset`` and ``percent``, a non-positive distance, or no
            last price yet.
        """
        if (offset is None) == (percent is None):
            raise OrderError("trailing stop: give exactly one of offset or percent")
        distance = offset if offset is not None else percent
        if not (distance is not None and distance > 0.0 and math.isfinite(distance)):
            raise OrderError(f"trailing stop: the distance must be a positive number, got {distance!r}")
        last = self._last_price(instrument_id)
        if last != last:
            raise OrderError(f"trailing stop: no last price of {instrument_id} to trail from")
        if reduce_only is None:
            reduce_only = self._reduce_only(instrument_id)
        return self._trail(strategy_id, instrument_id, side, quantity, offset, percent, last, reduce_only,
                           reason or "trailing stop")

    def gtd(self, client_order_id: str, expire_ns: int) -> None:
        """End a working order at ``expire_ns`` (module docstring)."""
        orders = self._kernel.orders
        order = orders.order(client_order_id)
        expire_ns = int(expire_ns)
        self._link("gtd", order.strategy_id, order.instrument_id, client_order_id, (), expire_ns=expire_ns)
        orders.set_expiry(client_order_id, expire_ns)
        self._set_gtd(client_order_id, expire_ns)

    def _set_gtd(self, client_order_id: str, expire_ns: int) -> None:
        expire_at = getattr(self._venue, "expire_at", None)
        if expire_at is not None:
            expire_at(client_order_id, expire_ns)
            return
        self._gtd += 1
        name = f"gtd {self._gtd} {client_order_id}"
        self._kernel.clock.set_alert(name, expire_ns, lambda event: self._expire(client_order_id, event))

    def in_cooldown(self, strategy_id: str, instrument_id: str) -> int:
        """Bars left in the cooldown of ``strategy_id`` on ``instrument_id`` (0: none)."""
        return self._cooldown.get((strategy_id, instrument_id), 0)

    def refused_raise(self, cmd: ModifyOrder) -> bool:
        """Deny (``OrderDenied``, reason ``"modify: OCO: ..."``) a modify that raises an OCO member's unfilled
        quantity above both its own and what its group leaves it (module docstring, OCO); whether it did.

        Its own is that of the sibling's reduction on its way (:attr:`_reducing`) while there is one: the
        venue applies the modify after it, so one below the quantity the order still shows can raise it.
        """
        coid = cmd.client_order_id
        group = self._oco.get(coid)
        order = self._kernel.orders.get(coid)
        if group is None or order is None or not order.is_open or cmd.quantity != cmd.quantity:
            return False
        wanted = cmd.quantity - order.filled_qty
        own = order.leaves_qty
        reduction = self._reducing.get(coid)
        if reduction is not None:
            own = min(own, reduction.quantity - order.filled_qty)
        if wanted - own <= self._lot_error(order):
            return False  # not a raise
        others = [o for c in group if c != coid and (o := self._kernel.orders.get(c)) is not None and o.is_open]
        if not others:
            return False
        allowed = min(max(o.leaves_qty for o in others), self._kernel.portfolio.account.oco_room(coid))
        if wanted - allowed <= self._lot_error(order):
            return False
        reason = (
            f"modify: OCO: {coid} to {cmd.quantity} would leave it {wanted:g} to fill, above the {allowed:g} its group "
            f"{[o.client_order_id for o in others]} leaves it (an OCO group has one size: raised alone, a member is "
            f"reduced back to its sibling's unfilled quantity when the sibling fills, or the sibling works on after it "
            f"filled); lower it, or cover the added quantity with a new order or group"
        )
        self._deny_modify(cmd, order.instrument_id, reason)
        return True

    def refused_in_list(self, cmd: ModifyOrder) -> bool:
        """Deny (``OrderDenied``, reason ``"modify: OCO: ..."``) a modify of an exit resting in one OCO order list
        at the venue (a bracket's exits on Binance spot); whether it did.

        The venue cannot amend it in place: a cancel-replace's cancel ends the list, and the new order would be
        refused for the balance the other leg locks (or, the whole list canceled, leave the position without
        its stop). Cancel the exits and submit new ones instead.
        """
        coid = cmd.client_order_id
        if coid not in self._listed or not self._is_open(coid):
            return False
        order = self._kernel.orders.order(coid)
        others = [c for c in self._oco.get(coid, ()) if c != coid and self._is_open(c)]
        reason = (
            f"modify: OCO: {coid} rests in one OCO order list with {others} at the venue, which cannot amend it: a "
            f"cancel-replace would end the list; cancel the exits and submit new ones"
        )
        self._deny_modify(cmd, order.instrument_id, reason)
        return True

    def take_venue_lists(self, lists: Mapping[str, str]) -> list[str]:
        """Take the working members of each OCO group the venue lists in one order list as resting in one there, as
        the ``"listed"`` flag of the group's ``"oco"`` link would (:meth:`refused_in_list`); the ids taken so.

        ``lists``: client order id -> the id of the venue's order list the order rests in
        (:attr:`~tradebus.execution.venue.OrderStatusReport.list_id`; a live venue's
        :attr:`~tradebus.execution.live.LiveVenue.order_lists`, read at a restart, taken by :meth:`restore`). A journal
        written before that flag (by an older version) lacks it: the restart took a bracket's exits resting as one
        Binance OCO order list for two orders, and a modify of one went as a cancel-replace, which ends the whole list.
        """
        taken: list[str] = []
        for coid, list_id in lists.items():
            group = self._oco.get(coid)
            if group is None or coid in self._listed:
                continue
            live = [c for c in group if self._is_open(c)]
            if len(live) > 1 and all(lists.get(c) == list_id for c in live):
                self._venue_oco.update(live)
                self._listed.update(live)
                taken += live
                logger.info("OCO group {}: its orders rest in one order list at the venue ({}), which takes no modify of "
                            "them (the journal did not say so)", live, list_id)
        return taken

    def _deny_modify(self, cmd: ModifyOrder, instrument_id: str, reason: str) -> None:
        """Publish the ``OrderDenied`` of ``cmd`` for ``reason`` (its order's modify refused here)."""
        coid = cmd.client_order_id
        logger.info("modify of {} denied: {}", coid, reason)
        now = self._kernel.clock.now_ns()
        self._raise_refused = coid
        try:
            self._kernel.bus.publish(OrderDenied(cmd.strategy_id, instrument_id, coid, reason, now, now))
        finally:
            self._raise_refused = None

    # ------------------------------------------------------------------ events

    def _on_fill(self, fill: OrderFilled) -> None:
        self._fill_px[fill.instrument_id] = fill.last_px
        coid = fill.client_order_id
        if coid in self._canceling and not self._is_open(coid):
            self._forget_cancel(coid)
        if coid in self._reducing and not self._is_open(coid):
            del self._reducing[coid]
        if self._replacing:
            self._settle_replace(coid)
        bracket = self._brackets.get(coid)
        if bracket is not None and bracket.state in _ENTERING:
            bracket.filled += fill.last_qty
            if fill.fee_asset:  # a fee paid out of the coins bought leaves less to exit
                bracket.filled -= self._kernel.portfolio.fee_in_kind(fill)
            order = self._kernel.orders.get(coid)
            if order is None or not order.is_open:
                if order is not None and order.filled_qty < bracket.venue_filled * (1.0 - 1e-9):
                    return  # closed before its fills came: armed once all the venue reported are booked
                self._filled(bracket, fill.ts_init, fill.last_px)
            elif self._protects_part(bracket):
                self._protect_part(bracket)
            return
        self._filled_some(coid)

    def _on_modified(self, event: OrderModified) -> None:
        """An amend answered after the fills that reached its quantity (the order manager made the
        order FILLED): what follows the order acts as on its last fill. A sibling's reduction applied is done.
        A trailing stop's trigger applied better than the one it counts on (set back by the refusal of a modify of
        another term while its move was still to be sent) is the one it counts on: its next price sends it no more."""
        trail = self._trailing.get(event.client_order_id)
        if trail is not None and (event.trigger_price > trail.trigger if trail.sell else event.trigger_price < trail.trigger):
            trail.trigger = event.trigger_price
        order = self._kernel.orders.get(event.client_order_id)
        growth = self._growing.get(event.client_order_id)
        if growth is not None and order is not None and not growth - order.quantity > self._lot_error(order):
            del self._growing[event.client_order_id]
        reduction = self._reducing.get(event.client_order_id)
        if reduction is not None and order is not None and not self._above(order, reduction.quantity):
            del self._reducing[event.client_order_id]
        if order is None or order.status is not OrderStatus.FILLED:
            return
        bracket = self._brackets.get(order.client_order_id)
        if bracket is not None and bracket.state in _ENTERING:
            self._filled(bracket, event.ts_init)
        else:
            self._filled_some(order.client_order_id)

    def _filled_some(self, coid: str) -> None:
        """An OCO member or bracket exit ``coid`` filled (some or all): reduce its siblings, close its bracket."""
        group = self._oco.get(coid)
        if group is not None:
            order = self._kernel.orders.get(coid)
            leaves = 0.0 if order is None or not order.is_open else order.leaves_qty
            if order is not None and order.is_open and coid in self._growing:  # its growth on its way counts
                leaves = max(leaves, self._growing[coid] - order.filled_qty)
            if coid not in self._venue_oco:
                # A cash account may leave a sibling less than the filler's unfilled quantity (the
                # venue capped the filler at its group's room and cancels the rest).
                room = self._kernel.portfolio.account.oco_room
                for other in group:
                    if other != coid:
                        self._reduce(other, min(leaves, room(other)), "OCO: sibling filled")
            if leaves <= 0.0:
                self._unlink(coid)
        parent = self._child_of.get(coid)
        if parent is not None and parent.state == "partial":
            self._end_entry(parent, coid)
        elif parent is not None:
            order = self._kernel.orders.get(coid)
            if order is None or not order.is_open:
                self._close_bracket(parent)

    def _on_closed(self, event: Any) -> None:
        coid = event.client_order_id
        if not self._is_open(coid):
            self._growing.pop(coid, None)
        if coid in self._canceling and not self._is_open(coid):
            self._forget_cancel(coid)
        if coid in self._reducing and not self._is_open(coid):
            del self._reducing[coid]
        if self._replacing:
            self._settle_replace(coid)
            if self._replacing.get(coid) == "" and not self._is_open(coid):
                return  # canceled for its two-request cancel-replace: the links wait for the replacement
        if type(event) is OrderDenied and self._is_open(coid):
            if coid != self._raise_refused:  # a user's raise refused here: no reduction's refusal
                self._on_modify_refused(event)  # the risk gate refused a modify: the order works on
            return
        bracket = self._brackets.get(coid)
        if bracket is not None and bracket.state in _ENTERING:
            order = self._kernel.orders.get(coid)
            venue_filled = getattr(event, "filled_qty", _NAN)
            if order is not None and venue_filled > order.filled_qty * (1.0 + 1e-9):
                # The venue filled more than came yet (its fill events are late; the engine asks it):
                # the bracket waits for them.
                bracket.venue_filled = venue_filled
            elif bracket.filled > 0.0:
                self._filled(bracket, event.ts_init)
            else:
                bracket.state = "closed"
                del self._brackets[coid]
        if coid in self._oco and type(event) is not OrderDenied:
            self._unlink(coid)
        self._kernel.portfolio.account.unlink_oco(coid)
        self._venue_oco.discard(coid)
        self._listed.discard(coid)
        self._trailing.pop(coid, None)
        parent = self._child_of.get(coid)
        if parent is not None:
            if type(event) in (OrderRejected, OrderDenied) and parent.state == "armed" and coid in parent.children:
                self._child_refused(parent, coid, event.reason)
            self._exit_when_free(parent)
        if self._withheld_after and not self._is_open(coid):
            replacement = self._withheld_after.pop(coid, None)
            if replacement is not None:
                self._send_withheld(replacement)

    def _child_refused(self, bracket: Bracket, coid: str, reason: str) -> None:
        """Warn that the armed ``bracket``'s exit ``coid`` was denied or rejected: its position works on without it.

        Denied by the risk guard for what blocks every order on its instrument for a while (a live start-up's
        reconciliation, an instrument held, a stale feed, an unsynced book) with none of its exits working or
        filled: the bracket is armed again once the guard lets orders on the instrument pass (:meth:`_arm_held`).
        """
        what = "stop-loss" if coid == bracket.children[0] and bracket.stop_loss is not None else "take-profit"
        entry_id, iid = bracket.entry_id, bracket.instrument_id
        if entry_id in self._arm_again:
            return  # its sibling's denial said so
        guard = getattr(self._kernel.risk, "guard", None)
        orders = self._kernel.orders
        if (
            guard is not None and guard.block_reason(iid) == reason
            and not any(self._is_open(c) or ((o := orders.get(c)) is not None and o.filled_qty > 0.0)
                        for c in bracket.children)
        ):  # fmt: skip
            self._arm_again[entry_id] = reason
            logger.warning("bracket {}: its exits {} were held back ({}); armed again for {} {} once orders on it pass",
                           entry_id, bracket.children, reason, bracket.filled, iid)  # fmt: skip
            return
        logger.warning("bracket {}: its {} {} was refused ({}); the position it entered ({} {}) has no {}",
                       entry_id, what, coid, reason, bracket.filled, iid, what)

    def _arm_held(self, instrument_id: str) -> None:
        """Arm again the brackets of ``instrument_id`` whose exits the risk guard held back, once it no longer blocks
        orders on it (:meth:`_child_refused`) and the risk gate's checks that pass with time would pass
        (:meth:`_denial_waits`: a hold that ends into a HALT arms at the first event after it), for what the strategy
        still holds (:meth:`_still_held`)."""
        guard = getattr(self._kernel.risk, "guard", None)
        for entry_id, why in list(self._arm_again.items()):
            bracket = self._brackets.get(entry_id)
            if (
                bracket is None or bracket.state != "armed" or bracket.exit_id is not None
                or any(self._is_open(c) for c in bracket.children)
            ):  # fmt: skip
                del self._arm_again[entry_id]  # closed, exited or re-armed meanwhile
                continue
            if bracket.instrument_id != instrument_id or (guard is not None and guard.block_reason(instrument_id)):
                continue
            if self._denial_waits():
                return
            del self._arm_again[entry_id]
            left = self._still_held(bracket, bracket.filled)
            if left <= self._kernel.instruments[instrument_id].lot_size * 1e-3:
                self._close_bracket(bracket)
                continue
            logger.info("bracket {}: orders on {} pass again (its exits were held back: {}); arming again for {}",
                        entry_id, instrument_id, why, left)  # fmt: skip
            bracket.filled = left
            self._arm(bracket)

    def _still_held(self, bracket: Bracket, left: float, claimed: float = 0.0) -> float:
        """The most of ``left`` the bracket may exit: what its strategy still holds of its instrument on its side
        (a flatten, a liquidation closed its position: less, or nothing), less what other brackets' exits
        ``claimed`` of it, logged when less."""
        position = self._kernel.strategy_position(bracket.strategy_id, bracket.instrument_id)
        held = max((position if bracket.side == OrderSide.BUY else -position) - claimed, 0.0)
        if held >= left:
            return left
        logger.info("bracket {}: its entry left {} {}, and its strategy {} holds {} of it now (flattened or closed "
                    "meanwhile): {}", bracket.entry_id, left, bracket.instrument_id, bracket.strategy_id, position,
                    f"exits for {held} only" if held > 0.0 else "no exit sent")  # fmt: skip
        return held

    def _on_modify_refused(self, event: OrderModifyRejected | OrderDenied) -> None:
        """A trailing stop's trigger goes back to the one the venue holds (the next price sends a better one); a
        sibling's reduction is sent again at the next market event (module docstring).

        A two-request cancel-replace refused ends: its order, canceled meanwhile, is closed for good.
        """
        if type(event) is OrderModifyRejected and self._replacing.get(event.client_order_id) == "":
            del self._replacing[event.client_order_id]
            if not self._is_open(event.client_order_id):
                self._on_closed(event)
                return
        trail = self._trailing.get(event.client_order_id)
        order = self._kernel.orders.get(event.client_order_id)
        if trail is not None and order is not None and order.is_open:
            trail.trigger = order.trigger_price
            trail.withheld = False  # the next price sends its trigger again
        reduction = self._reducing.get(event.client_order_id)
        if reduction is not None and order is not None and order.is_open and not reduction.again:
            passing = type(event) is OrderDenied and event.reason.startswith(_PASSING_DENIALS)
            self._reduction_refused(order, reduction, event.reason, counts=not passing)
        self._growing.pop(event.client_order_id, None)
        parent = self._child_of.get(event.client_order_id)
        if (
            parent is not None and parent.state in ("partial", "armed") and self._protects_part(parent)
            and order is not None and order.is_open and self._unexited(parent) - order.leaves_qty > self._lot_error(order)
        ):  # fmt: skip
            self._growth_refused(parent, order, event)

    def _growth_refused(self, bracket: Bracket, order: Order, event: OrderModifyRejected | OrderDenied) -> None:
        """A growth of ``bracket``'s exit ``order`` (:meth:`_grow`) was not applied: sent again at the next market
        event when denied by a check that passes with time (:data:`_PASSING_DENIALS`); else the position beyond
        what the exit covers has none of its kind (WARNING)."""
        target = order.filled_qty + self._unexited(bracket)
        if type(event) is OrderDenied and event.reason.startswith(_PASSING_DENIALS):
            bracket.regrow = True
            logger.warning("bracket {}: exit {} was not grown to {} ({}); sent again at the next market event of {}",
                           bracket.entry_id, order.client_order_id, target, event.reason, bracket.instrument_id)  # fmt: skip
            return
        logger.warning("bracket {}: exit {} was not grown to {} ({}); it covers {} of the position its entry filled",
                       bracket.entry_id, order.client_order_id, target, event.reason, order.leaves_qty)  # fmt: skip

    def _on_replaced(self, event: OrderReplaced) -> None:
        """A cancel-replaced order's links (trailing, OCO, bracket child) move to its replacement, journaled."""
        old, new = event.client_order_id, event.replacement_id
        if self._replacing.get(old) in (new, ""):
            del self._replacing[old]
            self._replaced_by.pop(new, None)
        self._move(old, new)

    def _on_replacing(self, link: ContingentLinked) -> None:
        """A cancel-replace is about to be sent: its outcome may come only from the orders' states (no
        answer, or a restart), see :meth:`_settle_replace`."""
        if link.kind == "replace":
            old, new = link.order_ids
            self._replaced_by.pop(self._replacing.get(old, ""), None)
            self._replacing[old] = new
            if new:  # else a two-request cancel-replace: the replacement comes once the cancel is confirmed
                self._replaced_by[new] = old

    def _on_resolved(self, event: OrderResolved) -> None:
        """A query's answer: one that closed the order unfilled acts as the venue event it stands for
        (its stream event, lost or late, is dropped as a repeat when it comes)."""
        closed = closing_event(event)
        if closed is not None:
            self._on_closed(closed)
        elif self._replacing:
            self._settle_replace(event.client_order_id)

    def _settle_replace(self, coid: str) -> None:
        """Decide a cancel-replace in flight of which ``coid`` is one order, from what the venue says of both.

        See :meth:`_replace_outcome`: done, the links move to the replacement; not done, they stay;
        not known yet, it waits for the next event of either order.
        """
        old = coid if coid in self._replacing else self._replaced_by.get(coid)
        if old is None:
            return
        new = self._replacing[old]
        outcome = self._replace_outcome(old, new)
        if outcome is None:
            return
        del self._replacing[old]
        self._replaced_by.pop(new, None)
        if outcome:
            logger.info("order {}: its cancel-replace placed {} at the venue; the links follow it", old, new)
            self._move(old, new)
        elif (trail := self._trailing.get(old)) is not None:
            trail.withheld = False  # a modify not applied: the next price sends its trigger again

    def _replace_outcome(self, old: str, new: str) -> bool | None:
        """Whether the cancel-replace of ``old`` by ``new`` was done (``None``: not known yet; module docstring)."""
        orders = self._kernel.orders
        before, after = orders.get(old), orders.get(new)
        if not new:  # two-request, not submitted yet: OrderReplaced or OrderModifyRejected tells
            return False if before is None or before.status is OrderStatus.FILLED else None
        if after is None:
            return False
        if after.filled_qty > 0.0 or after.status in _AT_VENUE:
            return True
        if not after.is_open:
            return False  # refused, or never placed
        if before is None or before.is_open:
            return None
        return before.status is not OrderStatus.FILLED

    def _move(self, old: str, new: str) -> None:
        """Move the links of ``old`` (trailing, OCO, bracket child, GTD expiry) to ``new``, journaled; a reduction of ``old``
        not applied goes to ``new``, for what ``old`` had left to fill (one in flight: refused, as ``new`` is above it)."""
        order = self._kernel.orders.get(new)
        if order is None:
            return
        sid, iid = order.strategy_id, order.instrument_id
        reduction = self._reducing.pop(old, None)
        replaced = self._kernel.orders.get(old)
        if reduction is not None and replaced is not None and order.is_open:
            target = order.filled_qty + max(reduction.quantity - replaced.filled_qty, 0.0)
            if self._above(order, target):
                carried = self._reducing[new] = _Reduction(target, reduction.refusals, reduction.again)
                if reduction.again:
                    self._link("reduce", sid, iid, new, (), quantity=target, refusals=reduction.refusals)
                    logger.warning("order {}: replaces {} for {}, above its reduction to {} (OCO: sibling filled); "
                                   "sent again at the next market event of {}", new, old, order.quantity, target, iid)  # fmt: skip
                else:  # the reduction was this cancel-replace, placed again as it was (its replacement refused)
                    self._reduction_refused(order, carried, f"{old} placed again as {new} for {order.quantity}")
        trail = self._trailing.pop(old, None)
        if trail is not None:
            trail.client_order_id, trail.trigger = new, order.trigger_price
            self._link("trailing", sid, iid, new, (), sell=float(trail.sell), offset=trail.offset, percent=trail.percent)
            self._trailing[new] = trail
        group = self._oco.pop(old, None)
        size = self._oco_size.pop(old, None)
        if group is not None and old in group:
            group[group.index(old)] = new
            self._oco[new] = group
            if size is not None:
                self._oco_size[new] = size
            account = self._kernel.portfolio.account
            room = account.oco_room(old)  # what the group's fills left it: the replacement may fill no more
            account.unlink_oco(old)
            account.link_oco(group, {new: room} if room < math.inf else None)
            self._link("oco", sid, iid, group[0], group, size=size)
        bracket = self._child_of.pop(old, None)
        if bracket is not None:
            self._child_of[new] = bracket
            bracket.children = [new if c == old else c for c in bracket.children]
            self._link("children", sid, iid, bracket.entry_id, bracket.children)
        expire_ns = replaced.expire_ns if replaced is not None else 0
        if expire_ns:  # the timer names the replaced order: without its own, the replacement outlives the date
            self._link("gtd", sid, iid, new, (), expire_ns=expire_ns)
            self._kernel.orders.set_expiry(new, expire_ns)
            if order.is_open:
                self._set_gtd(new, expire_ns)
        if trail is not None and trail.withheld:
            if replaced is not None and replaced.is_open:  # its cancel follows (OrderReplaced comes first)
                self._withheld_after[old] = new
            else:
                self._send_withheld(new)

    def _send_withheld(self, coid: str) -> None:
        """Send the trailing stop ``coid`` (a replacement) the trigger withheld while its cancel-replace was unanswered."""
        trail = self._trailing.get(coid)
        order = self._kernel.orders.get(coid)
        # Not acknowledged yet (its cancel-replace unanswered, settled by the orders' states): the next price sends it.
        if trail is not None and trail.withheld and order is not None and order.status is OrderStatus.ACCEPTED:
            self._move_trigger(trail, order)

    def _on_bar(self, bar: Bar) -> None:
        self._printed.add(bar.instrument_id)
        if self._cancel_again:
            self._send_cancels_again(bar.instrument_id)
        if self._reducing:
            self._send_reductions_again(bar.instrument_id)
        if self._fill_px:
            self._fill_px.pop(bar.instrument_id, None)
        if self._cooldown:
            self._tick_cooldown(bar.instrument_id)
        if self._arm_again:
            self._arm_held(bar.instrument_id)
        if self._brackets:
            for bracket in list(self._brackets.values()):
                if bracket.instrument_id == bar.instrument_id and bracket.regrow and not self._denial_waits():
                    self._grow(bracket)
                if bracket.instrument_id == bar.instrument_id and bracket.state in ("filled", "armed"):
                    if bracket.resend and not self._denial_waits(bracket):
                        self._send_denied_again(bracket)
                    self._bar_passed(bracket)
                elif bracket.instrument_id == bar.instrument_id and bracket.state == "exiting":
                    self._exit_when_free(bracket)
        opened = self._bar_close.get(bar.instrument_id, -1)
        self._bar_close[bar.instrument_id] = bar.ts_init
        if self._trailing:
            self._follow(bar.instrument_id, bar.high, bar.low, opened, bar.close)

    def _on_trade(self, trade: Trade) -> None:
        self._printed.add(trade.instrument_id)
        if self._cancel_again:
            self._send_cancels_again(trade.instrument_id)
        if self._reducing:
            self._send_reductions_again(trade.instrument_id)
        if self._fill_px:
            self._fill_px.pop(trade.instrument_id, None)
        if self._arm_again:
            self._arm_held(trade.instrument_id)
        if self._brackets:
            self._arm_on_tick(trade.instrument_id)
        if self._trailing:
            self._follow(trade.instrument_id, trade.price, trade.price)

    def _on_quote(self, quote: Quote) -> None:
        iid = quote.instrument_id
        if self._cancel_again:
            self._send_cancels_again(iid)
        if self._reducing:
            self._send_reductions_again(iid)
        if self._fill_px:
            self._fill_px.pop(iid, None)
        if self._arm_again:
            self._arm_held(iid)
        if self._brackets:
            self._arm_on_tick(iid)
        if self._trailing and iid not in self._printed:
            bars_of = self._kernel.bar_instruments
            if bars_of is None or iid not in bars_of:
                self._follow(iid, quote.bid_price, quote.ask_price)  # a sell stop trails the bid, a buy stop the ask

    def _arm_on_tick(self, instrument_id: str) -> None:
        """Arm the filled brackets of ``instrument_id`` that wait for no bar (a trade or quote came), and send the
        timed exits waiting for no child."""
        for bracket in list(self._brackets.values()):
            if bracket.instrument_id == instrument_id and bracket.state == "filled" and bracket.arm_after_bars == 0:
                if not self.at_fill:
                    self._arm(bracket)
                elif not self._denial_waits(bracket):
                    self._arm_at_fill(bracket, again=True)
            elif bracket.instrument_id == instrument_id and bracket.state == "exiting":
                self._exit_when_free(bracket)
            elif bracket.instrument_id == instrument_id and bracket.resend and not self._denial_waits(bracket):
                self._send_denied_again(bracket)
            if bracket.instrument_id == instrument_id and bracket.regrow and not self._denial_waits():
                self._grow(bracket)

    def _denial_waits(self, bracket: Bracket | None = None) -> bool:
        """Whether the risk gate would deny an exit sent now by a check that passes with time
        (:meth:`RiskGate.waiting_reason <tradebus.risk.gate.RiskGate.waiting_reason>`): a live bracket's exits denied
        so are then left for a later market event, no order created (a halt of an hour on a busy instrument would
        otherwise create, deny and journal exits at each of its trades). Given the ``bracket`` whose exits were denied
        at its entry's fill, a WARNING says so once per check waited for: the exits may wait as long as it fails (a
        ``max_open_orders`` its working exit keeps reached: forever)."""
        kernel = self._kernel
        why = kernel.risk.waiting_reason(kernel.orders.count_open())
        if bracket is None:
            return why is not None
        if why is None:
            bracket.waiting = ""
            return False
        check = why.split(":", 1)[0]
        if bracket.waiting != check:
            bracket.waiting = check
            logger.warning("bracket {}: its exits denied at the entry's fill stay unsent while the risk gate would deny "
                           "them ({}); sent at the first market event of {} it passes them", bracket.entry_id, why,
                           bracket.instrument_id)  # fmt: skip
        return True

    # ------------------------------------------------------------------ brackets

    def _filled(self, bracket: Bracket, ts: int, fill_px: float = _NAN) -> None:
        partial = bracket.state == "partial"
        bracket.state = "filled"
        iid = bracket.instrument_id
        counting = _bar_counts(bracket.arm_after_bars, bracket.exit_after_bars, bracket.cooldown_bars)
        kernel = self._kernel
        known = kernel.bar_instruments is not None or iid in kernel.trade_bars
        if counting and not known and iid not in self._bar_close and iid not in self._warned_no_bars:
            self._warned_no_bars.add(iid)
            logger.warning(
                "bracket {}: {} count(s) bars of {}, and no bar of it has come yet: if the run has none "
                "(trades or quotes only), its children, timed exit or cooldown never come",
                bracket.entry_id, counting, iid,
            )  # fmt: skip
        bracket.fill_px = fill_px
        bracket.bars_since_fill = -1  # the fill's own bar makes it 0
        if bracket.exit_after_ns is not None:
            self._kernel.clock.set_alert(
                f"timed exit {bracket.entry_id}", ts + bracket.exit_after_ns, lambda event: self._exit(bracket)
            )
        if partial:
            self._part_done(bracket)
        elif bracket.arm_after_bars == 0 and self.native:
            self._arm(bracket, parent=bracket.entry_id)
        elif bracket.arm_after_bars == 0 and self.at_fill:
            self._arm_at_fill(bracket)

    def _protects_part(self, bracket: Bracket) -> bool:
        """Whether ``bracket``'s exits go at its resting entry's first fill and grow with its next ones (module
        docstring, Partly filled entries): on a live venue, with ``arm_after_bars = 0``, and reduce-only exits."""
        return self.at_fill and not self.native and bracket.arm_after_bars == 0 and self._reduce_only(bracket.instrument_id)

    def _protect_part(self, bracket: Bracket) -> None:
        """The resting entry of ``bracket`` filled (some more): its exits are sent for what it filled, or grow to it."""
        if bracket.state == "partial":
            self._grow(bracket)
            return
        if bracket.filled <= self._kernel.instruments[bracket.instrument_id].lot_size * 1e-3:
            return
        self._arm(bracket)
        if any(self._is_open(c) for c in bracket.children):
            bracket.state = "partial"
            logger.info("bracket {}: its entry rests with {} {} filled: exits {} sent for that; they grow as it fills",
                        bracket.entry_id, bracket.filled, bracket.instrument_id, bracket.children)  # fmt: skip
            return
        # All refused: the entry's next fill, or its close, arms the bracket again.
        for coid in bracket.children:
            self._child_of.pop(coid, None)
        self._arm_again.pop(bracket.entry_id, None)
        bracket.state, bracket.children = "entry", []
        self._link("children", bracket.strategy_id, bracket.instrument_id, bracket.entry_id, ())

    def _unexited(self, bracket: Bracket) -> float:
        """What ``bracket``'s entry filled less what its exits filled: the position its exits cover."""
        orders = self._kernel.orders
        return bracket.filled - sum(o.filled_qty for c in bracket.children if (o := orders.get(c)) is not None)

    def _grow(self, bracket: Bracket) -> None:
        """Grow the working exits of ``bracket`` to cover :meth:`_unexited` (a modify of their quantity, journaled as
        any; an amend, or the venue's cancel-replace). The group grows as one: the OCO raise check
        (:meth:`refused_raise`, for a strategy's modify) does not apply. One the risk gate's checks that pass with time
        would deny (:meth:`_denial_waits`) is not sent: it goes at the next market event where they pass, as does
        one they denied (:meth:`_growth_refused`)."""
        held, bracket.regrow = bracket.regrow, False
        left = self._unexited(bracket)
        now = self._kernel.clock.now_ns()
        for coid in bracket.children:
            order = self._kernel.orders.get(coid)
            if order is None or not order.is_open:
                continue
            target = order.filled_qty + left
            if target - order.quantity <= self._lot_error(order):
                continue
            if self._denial_waits():
                bracket.regrow = True
                if not held:
                    logger.warning("bracket {}: exit {} is not grown to {} yet ({}); sent at the next market event of "
                                   "{} where it would pass", bracket.entry_id, coid, target,
                                   self._kernel.risk.waiting_reason(self._kernel.orders.count_open()),
                                   bracket.instrument_id)  # fmt: skip
                return
            self._reducing.pop(coid, None)  # a sibling's reduction on its way: this modify follows it
            if coid in self._oco_size:
                self._oco_size[coid] = max(self._oco_size[coid], target)
            logger.info("bracket {}: its entry filled {}: exit {} grows from {} to {}", bracket.entry_id, bracket.filled,
                        coid, order.quantity, target)  # fmt: skip
            self._growing[coid] = target
            self._kernel.execution.modify(
                ModifyOrder(order.strategy_id, order.instrument_id, coid, now, now, quantity=target)
            )

    def _part_done(self, bracket: Bracket) -> None:
        """The entry of a bracket protected in part (:meth:`_protect_part`) closed: its working exits grow to what it
        filled; none working (they filled while it rested) and some of it left unexited, exits for that are armed.
        Exits all canceled unfilled (the strategy's ``cancel_all``, a kill switch) are not armed again: the position
        is the strategy's, as after it cancels an armed bracket's exits."""
        left = self._unexited(bracket)
        if left <= self._kernel.instruments[bracket.instrument_id].lot_size * 1e-3:
            self._close_bracket(bracket)
            return
        if any(self._is_open(c) for c in bracket.children):
            bracket.state = "armed"
            self._grow(bracket)
            return
        orders = self._kernel.orders
        exits = [o for c in bracket.children if (o := orders.get(c)) is not None]
        if exits and all(o.status is OrderStatus.CANCELED and o.filled_qty <= 0.0 for o in exits):
            logger.warning("bracket {}: its entry closed with {} {} held and its exits {} canceled unfilled: none is "
                           "armed again", bracket.entry_id, left, bracket.instrument_id, bracket.children)  # fmt: skip
            self._close_bracket(bracket)
            return
        for coid in bracket.children:
            self._child_of.pop(coid, None)
        bracket.children, bracket.filled = [], left
        self._arm_at_fill(bracket)

    def _end_entry(self, bracket: Bracket, coid: str) -> None:
        """An exit ``coid`` of a bracket protected in part filled while its entry rests: the entry's rest is canceled
        (the bracket's trade is over; bought on, its next fills would open a position it no longer wants)."""
        entry_id = bracket.entry_id
        if entry_id in self._canceling or not self._is_open(entry_id):
            return
        logger.warning("bracket {}: its exit {} filled while its entry rested with {} filled; the entry's rest is "
                       "canceled", entry_id, coid, bracket.filled)  # fmt: skip
        self._cancel(bracket.strategy_id, bracket.instrument_id, entry_id, "bracket: its exit filled while it rested")

    def _arm_at_fill(self, bracket: Bracket, again: bool = False) -> None:
        """Arm ``bracket`` as its entry's fill is known; if the risk gate denied every child (a daemon's hold, a stale
        feed, the order rate), it arms again at the instrument's next market event, as on a simulated venue; if it
        denied some beside one sent (the order rate, open orders), those are sent at that event
        (:meth:`_send_denied_again`). ``again``: armed at that event; denied there, only by a check that passes with
        time (:data:`_PASSING_SUBMITS`), they wait for the next one again."""
        self._arm(bracket)
        children, orders = bracket.children, self._kernel.orders
        denied = [c for c in children if (o := orders.get(c)) is not None and o.status is OrderStatus.DENIED]
        if not denied or again and not all(orders.order(c).reason.startswith(_PASSING_SUBMITS) for c in denied):
            return
        if len(denied) < len(children):
            if self._sends_alone(bracket):
                bracket.resend = True
                logger.warning("bracket {}: {} denied at its entry's fill, sent again at the next market event of {}",
                               bracket.entry_id, denied, bracket.instrument_id)  # fmt: skip
            return
        for coid in children:
            self._child_of.pop(coid, None)
        bracket.state, bracket.children = "filled", []
        self._link("children", bracket.strategy_id, bracket.instrument_id, bracket.entry_id, ())
        logger.warning("bracket {}: its exits, all denied, are sent again at the next market event of {}",
                       bracket.entry_id, bracket.instrument_id)  # fmt: skip

    def _sends_alone(self, bracket: Bracket) -> bool:
        """Whether an exit of ``bracket`` denied beside one working may be sent alone: not on a venue of OCO order
        lists for a cash-only instrument, whose balance lock refuses an exit alone beside one resting."""
        return not (self._kernel.instruments[bracket.instrument_id].cash_only and getattr(self._venue, "lists_oco", False))

    def _send_denied_again(self, bracket: Bracket) -> None:
        """Send the exits of ``bracket`` denied at its entry's fill beside one sent (:meth:`_arm_at_fill`): for what the
        working exit has left to fill, linked with it in one OCO group, the ``"children"`` link journaled first;
        denied again by a check that passes with time, at the next market event again. Nothing once that exit closed
        or a timed exit was decided."""
        bracket.resend = False
        orders = self._kernel.orders
        working = [c for c in bracket.children if self._is_open(c)]
        if bracket.state != "armed" or bracket.exit_id is not None or len(working) != 1:
            return
        sid, iid = bracket.strategy_id, bracket.instrument_id
        stop_id = target_id = None
        children = list(bracket.children)
        for n, coid in enumerate(children):
            if (order := orders.get(coid)) is not None and order.status is not OrderStatus.DENIED:
                continue  # (None: named by the link of a resend the previous process was killed in, never journaled)
            children[n] = new = orders.next_client_order_id(sid)
            self._child_of.pop(coid, None)
            if n == 0 and bracket.stop_loss is not None:
                stop_id = new
            else:
                target_id = new
        self._link("children", sid, iid, bracket.entry_id, children)
        bracket.children = children
        self._kernel.portfolio.account.link_oco(children)
        exit_side = OrderSide.SELL if bracket.side == OrderSide.BUY else OrderSide.BUY
        self._arm_children(bracket, None, exit_side, orders.order(working[0]).leaves_qty, stop_id, target_id,
                           self._reduce_only(iid))
        for coid in children:
            self._child_of[coid] = bracket
            order = orders.get(coid)
            if coid not in working and order is not None and order.status in _REFUSED:
                self._child_refused(bracket, coid, order.reason)
                if order.status is OrderStatus.DENIED and order.reason.startswith(_PASSING_SUBMITS):
                    bracket.resend = True
                    logger.warning("bracket {}: {} sent again at the next market event of {}", bracket.entry_id, coid,
                                   iid)  # fmt: skip
        live = [c for c in children if self._is_open(c)]
        if len(live) > 1:
            self.oco(live)

    def _bar_passed(self, bracket: Bracket) -> None:
        bracket.bars_since_fill += 1
        if bracket.state == "filled" and bracket.bars_since_fill >= bracket.arm_after_bars:
            if not (self.at_fill and bracket.arm_after_bars == 0):
                self._arm(bracket)
            elif not self._denial_waits(bracket):
                self._arm_at_fill(bracket, again=True)
        if bracket.exit_after_bars is not None and bracket.bars_since_fill >= bracket.exit_after_bars:
            self._exit(bracket)

    def _arm(self, bracket: Bracket, parent: str | None = None) -> None:
        """Submit the bracket's children (held by the venue for ``parent`` when native)."""
        bracket.state = "armed"
        exit_side = OrderSide.SELL if bracket.side == OrderSide.BUY else OrderSide.BUY
        sid, iid, qty = bracket.strategy_id, bracket.instrument_id, bracket.filled
        next_id = self._kernel.orders.next_client_order_id
        stop_id = None if bracket.stop_loss is None else next_id(sid)
        target_id = None if bracket.take_profit is None else next_id(sid)
        children = [coid for coid in (stop_id, target_id) if coid is not None]
        # Journaled before they are sent: a restart never arms a bracket twice.
        self._link("children", sid, iid, bracket.entry_id, children)
        bracket.children = children
        if len(children) > 1:
            self._kernel.portfolio.account.link_oco(children)  # the take-profit's check counts the stop once
        reduce_only = self._reduce_only(iid)
        trailing = bracket.trail_offset is not None or bracket.trail_percent is not None
        pairing = getattr(self._venue, "oco_pair", None)
        # A live venue with OCO order lists takes a fixed stop and the take-profit in one request
        # (a spot venue locks the position's balance for each order: the second would be refused).
        one_list = pairing is not None and parent is None and len(children) > 1
        venue_trail = one_list and trailing and self._venue_trails(bracket)
        if trailing and one_list and not venue_trail and getattr(self._venue, "lists_oco", False):
            why = self._apart_at_venue(iid, bracket.side, None, bracket.stop_loss, bracket.take_profit,
                                       bracket.trail_offset, bracket.trail_percent)
            logger.warning(
                "bracket {}: its stop-loss and take-profit go as two orders, not one OCO order list: {}; a venue "
                "that locks the balance per order refuses the second",
                bracket.entry_id, why or "the venue's trailing stop cannot hold its trailing stop-loss",
            )  # fmt: skip
        one_list = one_list and (not trailing or venue_trail)
        trail_percent = bracket.trail_percent if venue_trail else None
        with pairing(trail_percent) if one_list else nullcontext() as pair:  # type: ignore[misc]
            self._arm_children(bracket, parent, exit_side, qty, stop_id, target_id, reduce_only, venue_trail)
        for coid in children:
            self._child_of[coid] = bracket
            order = self._kernel.orders.get(coid)
            if order is not None and order.status in (OrderStatus.DENIED, OrderStatus.REJECTED):  # refused as sent
                self._child_refused(bracket, coid, order.reason)
        if venue_trail and stop_id is not None and not pair.sent and self._is_open(stop_id):
            # Placed alone after all (its sibling denied): the stop trails here, by modifies.
            self._keep_trailing(bracket, stop_id, exit_side)
        live = [c for c in children if self._is_open(c)]
        if len(live) > 1:
            if pair is not None and pair.sent:
                self._venue_oco.update(live)  # one order list: the venue cancels the other exit itself
                self._listed.update(live)
            self.oco(live)

    def _trail_start(self, bracket: Bracket, parent: str | None) -> tuple[float, tuple[float, float, float] | None]:
        """The best price a bracket's trailing stop-loss starts from, and the rest of the bar (native children)."""
        iid = bracket.instrument_id
        best = self._kernel.cache.prices.get(iid, bracket.stop_loss)
        rest = None
        if parent is not None:
            # Placed at the entry's fill: trail from there (the cache still holds the price
            # before the fill), and after this bar only from what the bar did after the fill.
            rest = self._venue.rest_of_bar(iid)  # type: ignore[attr-defined]
            if rest is not None:
                best = rest[0]
            elif bracket.fill_px == bracket.fill_px:
                best = bracket.fill_px
        return best, rest

    def _venue_trails(self, bracket: Bracket) -> bool:
        """Whether the venue can trail the bracket's stop-loss as the kernel would, inside its OCO order list.

        Only a ``trail_percent`` has a venue form (a fixed offset has none), and only while its
        floor (``stop_loss``) is below the trailed trigger (above, for a buy stop): the venue's
        trailing stop has no floor, and its trigger only moves toward the price.
        """
        percent = bracket.trail_percent
        trails_in_oco = getattr(self._venue, "trails_in_oco", None)
        if percent is None or bracket.stop_loss is None or trails_in_oco is None or not trails_in_oco(percent):
            return False
        sell = bracket.side == OrderSide.BUY
        trigger = self._venue_trail_trigger(bracket, self._trail_start(bracket, None)[0])
        return trigger >= bracket.stop_loss if sell else trigger <= bracket.stop_loss

    def _venue_trail_trigger(self, bracket: Bracket, best: float) -> float:
        """The trigger ``trail_percent`` from ``best`` of the bracket's stop-loss, rounded away from the price."""
        sell = bracket.side == OrderSide.BUY
        trail = TrailingStop("", bracket.instrument_id, sell, None, bracket.trail_percent, best, _NAN)
        return self._round(bracket.instrument_id, trail.trigger_for(best), sell)

    def _keep_trailing(self, bracket: Bracket, coid: str, exit_side: OrderSide) -> None:
        """Trail the working stop ``coid`` of ``bracket`` here (journaled), from the best price its trigger implies."""
        order = self._kernel.orders.order(coid)
        sell = exit_side == OrderSide.SELL
        trail = TrailingStop(coid, bracket.instrument_id, sell, bracket.trail_offset, bracket.trail_percent, _NAN,
                             order.trigger_price, placed_ns=self._kernel.clock.now_ns())
        trail.best = trail.best_for(order.trigger_price)
        self._link("trailing", bracket.strategy_id, bracket.instrument_id, coid, (), sell=float(sell),
                   offset=bracket.trail_offset, percent=bracket.trail_percent)
        self._trailing[coid] = trail

    def _arm_children(
        self, bracket: Bracket, parent: str | None, exit_side: OrderSide, qty: float, stop_id: str | None,
        target_id: str | None, reduce_only: bool, venue_trail: bool = False,
    ) -> None:
        """Submit the bracket's stop-loss (fixed or trailing; ``venue_trail``: trailed by the venue) and take-profit."""
        sid, iid = bracket.strategy_id, bracket.instrument_id
        if stop_id is not None:
            if venue_trail:
                trigger = self._venue_trail_trigger(bracket, self._trail_start(bracket, parent)[0])
                self._submit(sid, iid, exit_side, qty, OrderType.STOP_MARKET, trigger=trigger, reduce_only=reduce_only,
                             reason="bracket trailing stop-loss (trailed by the venue)", coid=stop_id)
            elif bracket.trail_offset is not None or bracket.trail_percent is not None:
                best, rest = self._trail_start(bracket, parent)
                self._trail(sid, iid, exit_side, qty, bracket.trail_offset, bracket.trail_percent, best,
                            reduce_only, "bracket trailing stop-loss", floor=bracket.stop_loss, parent=parent, coid=stop_id,
                            rest_of_bar=None if rest is None else rest[1:])
            else:
                self._submit(sid, iid, exit_side, qty, OrderType.STOP_MARKET, trigger=bracket.stop_loss,
                             reduce_only=reduce_only, reason="bracket stop-loss", parent=parent, coid=stop_id)
        if target_id is not None:
            self._submit(sid, iid, exit_side, qty, OrderType.LIMIT, price=bracket.take_profit, reduce_only=reduce_only,
                         reason="bracket take-profit", parent=parent, coid=target_id)

    def _exit(self, bracket: Bracket) -> None:
        if bracket.state not in ("filled", "armed") or bracket.exit_id is not None:
            return
        working = []
        for coid in bracket.children:
            order = self._kernel.orders.get(coid)
            if order is not None and order.is_open:
                working.append(coid)
                self._cancel(order.strategy_id, order.instrument_id, coid, "timed exit")
        if working and not self._reduce_only(bracket.instrument_id):
            # Cash-only spot: the children hold the coins the exit sells until their cancels are confirmed.
            bracket.state = "exiting"
            self._link("exit", bracket.strategy_id, bracket.instrument_id, bracket.entry_id, ())
            logger.info("bracket {}: timed exit; it sells once the cancels of {} are confirmed (they hold the coins)",
                        bracket.entry_id, working)  # fmt: skip
            return
        self._send_exit(bracket)

    def _exit_when_free(self, bracket: Bracket) -> None:
        """Send the timed exit of an ``"exiting"`` bracket once none of its children works any more."""
        if bracket.state == "exiting" and not any(self._is_open(coid) for coid in bracket.children):
            self._send_exit(bracket)

    def _send_exit(self, bracket: Bracket) -> None:
        """Close what is left of the bracket's position with a market order (its children's fills taken out)."""
        left = bracket.filled
        for coid in bracket.children:
            order = self._kernel.orders.get(coid)
            if order is not None:
                left -= order.filled_qty
        bracket.state = "armed"
        lot = self._kernel.instruments[bracket.instrument_id].lot_size
        if left <= lot * 1e-3:
            self._close_bracket(bracket)
            return
        side = OrderSide.SELL if bracket.side == OrderSide.BUY else OrderSide.BUY
        sid, iid = bracket.strategy_id, bracket.instrument_id
        exit_id = bracket.exit_id = self._kernel.orders.next_client_order_id(sid)
        self._child_of[exit_id] = bracket
        self._link("exit", sid, iid, bracket.entry_id, (exit_id,))
        self._submit(sid, iid, side, left, OrderType.MARKET, reduce_only=self._reduce_only(iid), reason="timed exit",
                     coid=exit_id)

    def _close_bracket(self, bracket: Bracket) -> None:
        if bracket.state == "closed":
            return
        bracket.state = "closed"
        self._brackets.pop(bracket.entry_id, None)
        if bracket.cooldown_bars:
            self._cooldown[(bracket.strategy_id, bracket.instrument_id)] = bracket.cooldown_bars + 1

    def _tick_cooldown(self, instrument_id: str) -> None:
        for key, left in list(self._cooldown.items()):
            if key[1] == instrument_id:
                if left <= 1:
                    del self._cooldown[key]
                else:
                    self._cooldown[key] = left - 1

    # ------------------------------------------------------------------ trailing stops and GTD

    def _trail(
        self,
        strategy_id: str,
        instrument_id: str,
        side: OrderSide,
        quantity: float,
        offset: float | None,
        percent: float | None,
        best: float,
        reduce_only: bool,
        reason: str,
        floor: float | None = None,
        parent: str | None = None,
        coid: str | None = None,
        rest_of_bar: tuple[float, float] | None = None,
    ) -> str:
        sell = side == OrderSide.SELL
        # A native child (``parent``) reads the rest of its bar; any other stop trails from the
        # next bar that opens after it was placed (of the bar being handled: its close).
        placed = -1 if parent is not None else self._kernel.clock.now_ns()
        trail = TrailingStop("", instrument_id, sell, offset, percent, best, _NAN, rest_of_bar, placed)
        trigger = self._round(instrument_id, trail.trigger_for(best), sell)
        if floor is not None:
            trigger = max(trigger, floor) if sell else min(trigger, floor)
        trail.trigger = trigger
        if coid is None:
            coid = self._kernel.orders.next_client_order_id(strategy_id)
        self._link("trailing", strategy_id, instrument_id, coid, (), sell=float(sell), offset=offset, percent=percent)
        trail.client_order_id = self._submit(strategy_id, instrument_id, side, quantity, OrderType.STOP_MARKET,
                                             trigger=trigger, reduce_only=reduce_only, reason=reason, parent=parent,
                                             coid=coid)
        if self._is_open(trail.client_order_id):
            self._trailing[trail.client_order_id] = trail
        return trail.client_order_id

    def _follow(
        self, instrument_id: str, high: float, low: float, bar_open: int | None = None, close: float = _NAN
    ) -> None:
        """Trail the stops of ``instrument_id`` with a trade's price, or a bar's ``high``, ``low``,
        open time and ``close``."""
        orders = self._kernel.orders
        for coid, trail in list(self._trailing.items()):
            if trail.instrument_id != instrument_id:
                continue
            order = orders.get(coid)
            if order is None or not order.is_open:
                del self._trailing[coid]
                continue
            hi, lo = high, low
            if trail.rest_of_bar is not None:
                hi, lo = trail.rest_of_bar  # the bar it was placed in: only the part after that
                trail.rest_of_bar = None
            elif bar_open is not None and bar_open < trail.placed_ns:
                hi = lo = close  # placed inside or at the close of this bar: its high/low came before
            trail.best = max(trail.best, hi) if trail.sell else min(trail.best, lo)
            self._move_trigger(trail, order)

    def _move_trigger(self, trail: TrailingStop, order: Order) -> None:
        """Send ``trail``'s order ``order`` the trigger its best price makes, if better than the one it holds; while
        a cancel-replace of it is unanswered, keep it for the replacement (``withheld``: two would race)."""
        trigger = self._round(order.instrument_id, trail.trigger_for(trail.best), trail.sell)
        if not (trigger > trail.trigger if trail.sell else trigger < trail.trigger):
            return
        coid = order.client_order_id
        if coid in self._canceling:
            return  # an OCO sibling filled, a timed exit or a GTD expiry: the venue would refuse the move after it
        if coid in self._replacing:
            trail.withheld = True
            return
        trail.trigger = trigger
        trail.withheld = False
        now = self._kernel.clock.now_ns()
        self._kernel.modify(ModifyOrder(order.strategy_id, order.instrument_id, coid, now, now, trigger_price=trigger))

    def _expire(self, client_order_id: str, event: TimeEvent) -> None:
        order = self._kernel.orders.get(client_order_id)
        if order is not None and order.is_open:
            self._cancel(order.strategy_id, order.instrument_id, client_order_id, "GTD: expired")

    # ------------------------------------------------------------------ restarts

    def restore(self, links: list[ContingentLinked]) -> None:
        """Take over the journaled links of a previous process (module docstring, Restarts).

        Call it once, before any event, with the journal's ``ContingentLinked`` entries in
        order; the journal's orders must be settled with the venue already.
        """
        orders = self._kernel.orders
        moved = self._restore_replaces(links)
        # An OCO member -> the orders it replaced (canceled at the venue): their fills are the group's too.
        replaced: dict[str, list[str]] = {}
        for old, new in moved.items():
            replaced.setdefault(new, []).append(old)
        brackets: dict[str, Bracket] = {}
        # An OCO sibling -> the refusals of its reduction (journaled as they came, after its group's link).
        refused = {moved.get(k.client_order_id, k.client_order_id): int(k.params["refusals"])
                   for k in links if k.kind == "reduce"}
        expiring: dict[str, int] = {}  # open GTD order -> its expiry
        for link in links:
            if moved and link.kind != "replace":
                link = msgspec.structs.replace(
                    link, client_order_id=moved.get(link.client_order_id, link.client_order_id),
                    order_ids=tuple(moved.get(c, c) for c in link.order_ids),
                )
            p, coid = link.params, link.client_order_id
            if link.kind == "bracket":
                brackets[coid] = Bracket(
                    link.strategy_id, link.instrument_id, coid, OrderSide(int(p["side"])), _opt(p["stop_loss"]),
                    _opt(p["take_profit"]), _opt(p["trail_offset"]), _opt(p["trail_percent"]),
                    int(p["arm_after_bars"]), _opt_int(p["exit_after_bars"]), _opt_int(p["exit_after_ns"]),
                    int(p["cooldown_bars"]),
                )
            elif link.kind in ("children", "exit") and coid in brackets:
                if link.kind == "children":
                    brackets[coid].children = list(link.order_ids)
                    brackets[coid].state = "armed"
                elif link.order_ids:
                    brackets[coid].exit_id = link.order_ids[0]
                else:  # decided; sent once the children's cancels are confirmed
                    brackets[coid].exit_due = True
            elif link.kind == "oco":
                live = [c for c in link.order_ids if self._is_open(c)]
                if any((o := orders.get(c)) is not None and o.status is OrderStatus.FILLED for c in link.order_ids):
                    for member in live:  # its cancel was refused, or never sent
                        self._cancel_soon(member, "OCO: sibling filled")
                else:
                    group = [*link.order_ids, *(old for c in link.order_ids for old in replaced.get(c, ()))]
                    listed = p.get("listed", 0.0) > 0.0 and len(live) > 1
                    if listed:
                        # One OCO order list at the venue: it cancels the other leg itself, and takes no modify
                        # of a leg (a cancel-replace, a reduction's too, would end the list).
                        self._venue_oco.update(live)
                        self._listed.update(live)
                    if len(live) > 1:
                        members = [o for c in group if (o := orders.get(c)) is not None]
                        # Journaled without its size (by an older version): its largest member's quantity now.
                        size = p.get("size", _NAN)
                        if size != size:
                            size = max(o.quantity for o in members)
                        for member in live:
                            self._oco[member] = live
                            self._oco_size[member] = size
                        room = self._room_left(members, live, size)
                        self._kernel.portfolio.account.link_oco(live, room)
                    if not listed:
                        self._reduce_soon(group, refused)
            elif link.kind == "trailing":
                order = orders.get(coid)
                if order is not None and order.is_open:
                    trail = TrailingStop(coid, link.instrument_id, p["sell"] > 0.0, _opt(p["offset"]),
                                         _opt(p["percent"]), _NAN, order.trigger_price)
                    trail.best = trail.best_for(order.trigger_price)
                    self._trailing[coid] = trail
            elif link.kind == "gtd":
                if orders.get(coid) is not None:
                    orders.set_expiry(coid, int(p["expire_ns"]))
                if self._is_open(coid):
                    expiring[coid] = int(p["expire_ns"])
        # The order lists the venue holds (a live restart reads them): a journal before the "listed" flag lacks it.
        self.take_venue_lists(getattr(self._venue, "order_lists", {}))
        for coid, expire_ns in expiring.items():  # once: a cancel-replaced order's link moved onto its replacement's
            self._set_gtd(coid, expire_ns)
        claimed: dict[tuple[str, str], float] = {}  # (strategy, instrument) -> what its resumed brackets exit
        for bracket in brackets.values():
            self._resume(bracket, claimed)

    def _room_left(self, members: Sequence[Order], live: Sequence[str], size: float) -> dict[str, float] | None:
        """The most each of a restored cash-only OCO group's working members ``live`` may still fill, as the fills
        of its ``members`` (all it had) left it (:meth:`SpotCashAccount.oco_room
        <tradebus.account.spot.SpotCashAccount.oco_room>`; ``None``: no member filled, or not cash-only): the group
        fills no more than its ``size`` (journaled: its reductions lowered its members' quantities), and no member
        more than a partly filled one's unfilled quantity. ``members`` holds the orders its members replaced
        (cancel-replaces): their fills are the group's."""
        fillers = [o for o in members if o.filled_qty > 0.0]
        if not fillers or not self._kernel.instruments[members[0].instrument_id].cash_only:
            return None
        orders = self._kernel.orders
        left = size - sum(o.filled_qty for o in members)
        room: dict[str, float] = {}
        for coid in live:
            order = orders.order(coid)
            unfilled = [f.quantity - f.filled_qty for f in fillers if f is not order]
            room[coid] = max(min(order.leaves_qty, left, *unfilled), 0.0)
        return room

    def _reduce_soon(self, group: Sequence[str], refused: dict[str, int]) -> None:
        """Reduce the working members of a restored OCO group to what its partly filled members leave (each other
        member's fills plus a filler's unfilled quantity, as :meth:`_filled_some`), at the next market event of
        the instrument: the previous process may have stopped before the reduction was sent or applied.

        ``refused`` holds the refusals the previous processes counted (journaled ``"reduce"`` links): a reduction
        goes on from them, and one refused :data:`REDUCE_TRIES` times already is not sent again (the sibling is
        canceled, a reduce-only one left as it is, as :meth:`_reduction_refused` decided).
        """
        orders = self._kernel.orders
        members = [o for c in group if (o := orders.get(c)) is not None]
        for filler in members:
            if filler.filled_qty <= 0.0:
                continue
            unfilled = max(filler.quantity - filler.filled_qty, 0.0)
            for order in members:
                target = order.filled_qty + unfilled
                if order is filler or not order.is_open or not self._above(order, target):
                    continue
                coid = order.client_order_id
                refusals = refused.get(coid, 0)
                if refusals >= REDUCE_TRIES:
                    if order.reduce_only:
                        logger.warning("order {}: its reduction to {} (OCO: sibling filled) was refused {} times before "
                                       "the restart; left at {}, reduce-only", coid, target, refusals, order.quantity)  # fmt: skip
                    elif coid not in self._canceling:
                        self._cancel_soon(coid, f"OCO: sibling filled, its reduction refused {refusals} times")
                    continue
                reduction = self._reducing.get(coid)
                if reduction is None or target < reduction.quantity:
                    self._reducing[coid] = _Reduction(target, refusals, again=True)
                    logger.info("order {}: {} of its OCO sibling {} filled; reduced from {} to {} at the next market "
                                "event of {}", order.client_order_id, filler.filled_qty, filler.client_order_id,
                                order.quantity, target, order.instrument_id)  # fmt: skip

    def _restore_replaces(self, links: list[ContingentLinked]) -> dict[str, str]:
        """The cancel-replaces journaled in flight: replaced id -> the id its links belong to, for each whose
        replacement the settled orders show placed; those still undecided wait for their orders' events."""
        moved: dict[str, str] = {}
        for link in links:
            if link.kind != "replace":
                continue
            old, new = link.order_ids
            if not new and not self._is_open(old):
                continue  # a two-request cancel-replace the previous process ended
            if new and self._replacing.get(old) == "":
                del self._replacing[old]  # its replacement was submitted
            outcome = self._replace_outcome(old, new)
            if outcome is None:
                self._on_replacing(link)
            elif outcome:
                moved[old] = new
        for old, new in moved.items():
            while new in moved:  # replaced again
                new = moved[new]
            moved[old] = new
        return moved

    def _resume(self, bracket: Bracket, claimed: dict[tuple[str, str], float]) -> None:
        """Pick up a journaled bracket where the venue left it (module docstring, Restarts), for no more than its
        strategy still holds of its instrument beyond what the brackets resumed before it exit (``claimed``)."""
        orders = self._kernel.orders
        entry = orders.get(bracket.entry_id)
        if entry is None:
            return
        bracket.filled = entry.filled_qty - entry.fee_in_kind  # what the entry left, as _on_fill counts it
        if entry.is_open:
            self._brackets[bracket.entry_id] = bracket
            children = [o for c in bracket.children if (o := orders.get(c)) is not None]
            if any(o.is_open or o.filled_qty > 0.0 for o in children):
                # Protected in part: its exits grow at the next market event if the entry filled on meanwhile.
                bracket.state, bracket.regrow = "partial", True
                for order in children:
                    self._child_of[order.client_order_id] = bracket
                if any(o.filled_qty > 0.0 for o in children):
                    self._cancel_soon(bracket.entry_id, "its bracket's exit filled while it rested")
                return
            bracket.state, bracket.children, bracket.exit_id = "entry", [], None
            return
        if bracket.filled <= 0.0:
            return
        if bracket.exit_due or bracket.exit_id is not None:
            # The timed exit was decided (or sent): the children's cancels were refused, or not sent.
            for coid in bracket.children:
                if self._is_open(coid):
                    self._cancel_soon(coid, "timed exit")
        left = bracket.filled
        for coid in [*bracket.children, *([bracket.exit_id] if bracket.exit_id else [])]:
            order = orders.get(coid)
            if order is not None:
                left -= order.filled_qty
        lot = self._kernel.instruments[bracket.instrument_id].lot_size
        if left <= lot * 1e-3:
            return
        key = (bracket.strategy_id, bracket.instrument_id)
        held = self._still_held(bracket, left, claimed.get(key, 0.0))
        if held <= lot * 1e-3:
            for coid in bracket.children:
                if self._is_open(coid):
                    self._cancel_soon(coid, "its bracket's position is closed")
            return
        claimed[key] = claimed.get(key, 0.0) + held
        bracket.filled -= left - held  # the timed exit sends filled less its children's fills
        left = held
        self._brackets[bracket.entry_id] = bracket
        if bracket.exit_due and bracket.exit_id is None:
            # Sent once the children closed (on their last close, or at the next market event if none works).
            bracket.state = "exiting"
            for coid in bracket.children:
                self._child_of[coid] = bracket
            logger.info("bracket {}: its timed exit waits for the cancels of {}, then sells {}",
                        bracket.entry_id, [c for c in bracket.children if self._is_open(c)], left)  # fmt: skip
            return
        if bracket.exit_after_ns is not None:
            self._kernel.clock.set_alert(f"timed exit {bracket.entry_id}", entry.ts_last + bracket.exit_after_ns,
                                         lambda event: self._exit(bracket))
        working = [coid for coid in bracket.children if self._is_open(coid)]
        if bracket.exit_id is not None and self._is_open(bracket.exit_id):
            working.append(bracket.exit_id)
        bracket.bars_since_fill = 0
        if working:
            bracket.state = "armed"
            for coid in [*bracket.children, *([bracket.exit_id] if bracket.exit_id else [])]:
                self._child_of[coid] = bracket
            # Denied at the fill beside the working exit, not sent again before the restart (_arm_at_fill), or named by
            # the "children" link of a resend killed before its order was journaled (the replay knows every other).
            denied = [c for c in bracket.children if (o := orders.get(c)) is None or o.status is OrderStatus.DENIED]
            if self.at_fill and denied and len(working) == 1 and bracket.exit_id is None and self._sends_alone(bracket):
                bracket.resend = True
                logger.warning("bracket {}: {} denied or unsent before the restart, sent again at the next market event of {}",
                               bracket.entry_id, denied, bracket.instrument_id)  # fmt: skip
            return
        # The children no longer work (a paper venue's orders end with its process): arm again.
        logger.info("bracket {}: children gone with the previous process, arming again for {}", bracket.entry_id, left)
        bracket.filled, bracket.children, bracket.exit_id = left, [], None
        bracket.state = "filled"
        bracket.bars_since_fill = bracket.arm_after_bars - 1

    def _link(
        self, kind: str, strategy_id: str, instrument_id: str, coid: str, order_ids: Any, **params: float | int | None
    ) -> None:
        """Journal a link (:class:`~tradebus.engine.messages.ContingentLinked`; NaN for ``None``; a time in ns,
        ``*_ns``, kept an ``int``: a float holds one only to 256 ns)."""
        now = self._kernel.clock.now_ns()
        values = {name: _NAN if value is None else int(value) if name.endswith("_ns") else float(value)
                  for name, value in params.items()}
        self._kernel.execution.journal_links(
            ContingentLinked(strategy_id, instrument_id, coid, kind, tuple(order_ids), values, now, now)
        )

    # ------------------------------------------------------------------ helpers

    def _round(self, instrument_id: str, price: float, sell: bool) -> float:
        inst = self._kernel.instruments[instrument_id]
        return inst.round_price_down(price) if sell else inst.round_price_up(price)

    def _reduce(self, coid: str, quantity: float, reason: str) -> None:
        order = self._kernel.orders.get(coid)
        if order is None or not order.is_open:
            return
        if quantity <= 0.0:
            self._reducing.pop(coid, None)
            self._cancel(order.strategy_id, order.instrument_id, coid, reason)
        elif quantity + order.filled_qty < max(order.quantity, growth := self._growing.pop(coid, 0.0)):
            target = order.filled_qty + quantity
            reduction = self._reducing.setdefault(coid, _Reduction(target))
            reduction.quantity, reduction.again, reduction.growth = target, False, max(reduction.growth, growth)
            now = self._kernel.clock.now_ns()
            self._kernel.modify(ModifyOrder(order.strategy_id, order.instrument_id, coid, now, now, quantity=target))

    def _above(self, order: Order, quantity: float) -> bool:
        """Whether ``order``'s quantity is above ``quantity`` (by more than a rounding error of a lot)."""
        return order.quantity - quantity > self._lot_error(order)

    def _lot_error(self, order: Order) -> float:
        """A quantity of ``order``'s instrument below which a difference is a rounding error."""
        return self._kernel.instruments[order.instrument_id].lot_size * 1e-3

    def _reduction_refused(self, order: Order, reduction: _Reduction, why: str, counts: bool = True) -> None:
        """A sibling's reduction was not applied: sent again at the next market event, or, refused
        :data:`REDUCE_TRIES` times, the sibling canceled (reduce-only: left as it is). Not ``counts``: a
        denial that passes with time (:data:`_PASSING_DENIALS`), sent again without counting."""
        coid = order.client_order_id
        growing = reduction.growth - reduction.quantity > self._lot_error(order)  # in flight: it ends above
        if not self._above(order, reduction.quantity) and not growing:
            del self._reducing[coid]
            return
        if reduction.quantity - order.filled_qty <= self._lot_error(order):
            del self._reducing[coid]  # its fills reached the reduction on its way (a venue refuses a quantity filled)
            self._cancel(order.strategy_id, order.instrument_id, coid, "OCO: sibling filled")
            return
        if not counts:
            reduction.again = True
            logger.warning("order {}: its reduction to {} (OCO: sibling filled) was held back ({}); it works for {}; "
                           "sent again at the next market event of {}", coid, reduction.quantity, why, order.quantity,
                           order.instrument_id)  # fmt: skip
            return
        reduction.refusals += 1
        # Journaled: a restart counts on from here (restore), and never sends it more than REDUCE_TRIES times.
        self._link("reduce", order.strategy_id, order.instrument_id, coid, (), quantity=reduction.quantity,
                   refusals=reduction.refusals)
        if reduction.refusals < REDUCE_TRIES:
            reduction.again = True
            logger.warning("order {}: its reduction to {} (OCO: sibling filled) was not applied ({}); it works for {}; "
                           "sent again at the next market event of {}", coid, reduction.quantity, why, order.quantity,
                           order.instrument_id)  # fmt: skip
            return
        del self._reducing[coid]
        if order.reduce_only:
            logger.warning("order {}: its reduction to {} (OCO: sibling filled) was refused {} times ({}); left at {}, "
                           "reduce-only: the venue fills it no further than the position", coid, reduction.quantity,
                           reduction.refusals, why, order.quantity)  # fmt: skip
            return
        logger.warning("order {}: its reduction to {} (OCO: sibling filled) was refused {} times ({}); canceled, as "
                       "at {} the group could fill more than its largest member", coid, reduction.quantity,
                       reduction.refusals, why, order.quantity)  # fmt: skip
        self._cancel(order.strategy_id, order.instrument_id, coid, "OCO: sibling filled, its reduction refused")

    def _send_reductions_again(self, instrument_id: str) -> None:
        """Send again the refused reductions of ``instrument_id``'s siblings still above them (one at a time each);
        a sibling whose fills reached its reduction is canceled."""
        for coid, reduction in list(self._reducing.items()):
            order = self._kernel.orders.get(coid)
            if not reduction.again or order is None or order.instrument_id != instrument_id:
                continue
            if not order.is_open or not self._above(order, reduction.quantity):
                del self._reducing[coid]
            else:
                left = reduction.quantity - order.filled_qty
                self._reduce(coid, left if left > self._lot_error(order) else 0.0, "OCO: sibling filled")

    def _unlink(self, coid: str) -> None:
        group = self._oco.pop(coid, None)
        self._oco_size.pop(coid, None)
        if group is not None and coid in group:
            group.remove(coid)
        self._kernel.portfolio.account.unlink_oco(coid)

    def _reduce_only(self, instrument_id: str) -> bool:
        """Whether a bracket's exits are sent reduce-only: not on a cash-only spot instrument (spot venues
        have no reduce-only orders; the cash account never sells more than the balance holds)."""
        return not self._kernel.instruments[instrument_id].cash_only

    def _is_open(self, coid: str) -> bool:
        order = self._kernel.orders.get(coid)
        return order is not None and order.is_open

    def _cancel(self, strategy_id: str, instrument_id: str, coid: str, reason: str) -> None:
        """Send the cancel of ``coid``, again at the next market event of ``instrument_id`` if the venue refuses it."""
        self._canceling[coid] = (strategy_id, instrument_id, reason)
        self._cancel_again.discard(coid)
        now = self._kernel.clock.now_ns()
        self._kernel.cancel(CancelOrder(strategy_id, instrument_id, coid, now, now, reason))

    def _cancel_soon(self, coid: str, reason: str) -> None:
        """Send the cancel of the working order ``coid`` at the next market event of its instrument (a restart)."""
        order = self._kernel.orders.order(coid)
        logger.info("order {}: {}; canceled at the next market event of {}", coid, reason, order.instrument_id)
        self._canceling[coid] = (order.strategy_id, order.instrument_id, reason)
        self._cancel_again.add(coid)

    def _on_cancel_refused(self, event: OrderCancelRejected) -> None:
        """The venue refused a cancel this sent and works the order on: it is sent again at the next market event."""
        coid = event.client_order_id
        sent = self._canceling.get(coid)
        if sent is None or coid in self._cancel_again or not self._is_open(coid):
            return
        self._cancel_again.add(coid)
        logger.warning("order {}: the venue refused its cancel ({}: {}) and works it on; sent again at the next "
                       "market event of {}", coid, sent[2], event.reason, sent[1])  # fmt: skip

    def _send_cancels_again(self, instrument_id: str) -> None:
        """Send again the refused cancels of ``instrument_id``'s orders that still work (one at a time each)."""
        for coid in [c for c in self._cancel_again if self._canceling[c][1] == instrument_id]:
            if self._is_open(coid):
                strategy_id, _, reason = self._canceling[coid]
                self._cancel(strategy_id, instrument_id, coid, reason)
            else:
                self._forget_cancel(coid)

    def _forget_cancel(self, coid: str) -> None:
        self._canceling.pop(coid, None)
        self._cancel_again.discard(coid)

    def _submit(
        self,
        strategy_id: str,
        instrument_id: str,
        side: OrderSide,
        quantity: float,
        order_type: OrderType,
        *,
        price: float = _NAN,
        trigger: float = _NAN,
        reduce_only: bool = False,
        reason: str = "",
        coid: str | None = None,
        parent: str | None = None,
        time_in_force: TimeInForce = TimeInForce.GTC,
        post_only: bool = False,
    ) -> str:
        kernel = self._kernel
        now = kernel.clock.now_ns()
        if coid is None:
            coid = kernel.orders.next_client_order_id(strategy_id)
        cmd = SubmitOrder(strategy_id, instrument_id, coid, side, quantity, now, now, order_type, price, trigger,
                          time_in_force, post_only, reduce_only, reason)
        if parent is None:
            kernel.submit(cmd)
        else:
            with self._venue.children_of(parent):  # type: ignore[attr-defined]
                kernel.submit(cmd)
        return coid
