"""Pre-trade risk gate: order limits, trading state and circuit breakers.

:meth:`RiskGate.check` returns ``None`` for an order that may go to the venue, or the reason
it is denied, always in the form ``"<check>: <what> <op> <limit>"`` (for example
``"max_order_notional: 12500.0 > 10000.0"``). Checks, in order:

1. ``trading_state``: HALTED denies everything; REDUCING allows only an order that reduces the
   absolute position, net of the working orders on the order's side, without flipping it. The
   position of a cash-only (spot) instrument is the base asset held
   (:meth:`Portfolio.spot_holding <tradebus.engine.portfolio.Portfolio.spot_holding>`: the starting
   ``balances`` of it, less the fees paid in it, plus the positions of every cash-only instrument
   trading it): a sell reduces it up to that, less the working sells of the asset on all those
   instruments (``BTC-USDT`` and ``BTC-USD`` share ``BTC``); a buy never does.
2. ``instrument``: unknown instrument; quantity/price against the instrument's lot size, tick
   size, minimum quantity and minimum notional (:meth:`Instrument.validate_order`; market orders
   are valued at the last price for the minimum notional).
   Then ``buying_power``: the account's :meth:`~tradebus.account.Account.check_order` (the
   free balance of the asset the order spends, counting working orders).
3. ``max_order_quantity``, ``max_order_notional`` (price: limit, else trigger, else last price):
   the order's whole quantity, of a modification of a partly filled order the new quantity, its
   filled part included (every other check counts what can still fill).
4. ``max_position``: absolute position after the order *and every working order on its side*
   would fill completely; of a cash-only instrument, the base asset held after the order and every
   working order on its side on the instruments trading that asset (as in step 1).
5. ``price_band``: limit and trigger prices within ``price_band_pct`` of the last price.
6. ``max_gross_exposure``: the worst-case gross notional (each instrument's position with all
   its working buys or all its working sells filled, whichever is larger, at the last price;
   an instrument not priced yet at the highest limit or trigger of its working orders)
   over equity, after the order; an order that does not raise it always passes. The cash-only
   instruments trading one base asset and the holding of that asset count as one position, the
   base asset held, as in step 1 (:meth:`Breakers.gross_notional
   <tradebus.risk.breakers.Breakers.gross_notional>`).
7. ``max_open_orders``, then ``max_order_rate`` (sliding window on the injected clock; only
   orders that pass every check count).

A reduce-only order against the position counts, in steps 1, 4 and 6, as at most the position it
closes: the venue never fills more of it. So in step 1 a reduce-only order passes beside working orders
on its side that are all reduce-only too (a stop-loss beside a reduce-only take-profit of the whole
position: whichever fills first, the venue fills the other only down to flat); beside an order that is not
reduce-only it counts with them (that one could flip the position once the reduce-only one closed it). Working orders are the open orders of the order manager
bound by :meth:`RiskGate.bind_orders` (the execution engine binds its own); the order being
modified does not count against itself.
The members of an OCO group (:meth:`Account.link_oco <tradebus.account.Account.link_oco>`: a
bracket's stop-loss and take-profit) fill no more than the largest of them, so a group counts once
on each side, as its largest member, and an order is checked against the working orders outside its
own group (a take-profit is not denied for the stop-loss that sells the same position).
:meth:`RiskGate.check_owner` denies a cancel or modify of another strategy's order (the kernel
asks it on the strategies' cancel/modify path).

Trading state
-------------
The state is the most severe of the *manual* state (:meth:`RiskGate.set_state`, an operator's
decision) and the state of every tripped breaker (:mod:`tradebus.risk.breakers`, evaluated by
:meth:`RiskGate.on_price` on every mark and on every position change). Every change publishes
``TradingStateChanged`` with its reason. The kernel defers the mark-driven breakers
(:meth:`RiskGate.defer_marks`) until every price of a time is in; an order check always
evaluates them first. How each breaker trips and re-arms:

================  ===========================================  =================================
breaker           trips when                                   re-arms
================  ===========================================  =================================
max_drawdown      equity falls ``max_drawdown_pct`` below its  manually (``set_state``); the
                  peak                                         peak restarts at current equity
daily_loss        equity falls ``max_daily_loss_pct`` below    automatically at the next UTC day
                  the UTC day's start-of-day equity            roll (or manually)
loss_streak       ``max_consecutive_losses`` losing round      manually; the count restarts
                  trips in a row
gross_exposure    gross notional / equity above                automatically once back within
                  ``max_gross_exposure`` (moves to REDUCING)   the limit
================  ===========================================  =================================

A move to a more severe state cancels the working orders it no longer allows
(:meth:`RiskGate.disallowed_orders`) through the ``cancel`` the execution engine binds
(:meth:`RiskGate.bind_orders`), before ``TradingStateChanged`` is published. A state restored from the
journal cancels nothing by itself (its orders are not yet checked against the venue): the daemon calls
:meth:`RiskGate.cancel_disallowed` once it has settled them.

``set_state(state)`` re-arms every tripped breaker more severe than ``state`` (so
``set_state(ACTIVE)`` re-arms them all) and sets the manual state. Once
:meth:`RiskGate.restore` gave the gate a store (the journal), the manual state and the
breakers' memory are stored on every change, and a restarted process resumes them: a restart
never re-arms trading by itself (it drops, with a WARNING, the trip of a breaker the config no longer
has, and holds a trip whose action the config changed in the configured action's state, with a WARNING:
:meth:`Breakers.restore <tradebus.risk.breakers.Breakers.restore>`), nor trips a breaker on the journal's prices (the mark-driven breakers
wait for a price of every instrument the restored book holds, :meth:`RiskGate.restore`).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Collection, Iterable
from typing import TYPE_CHECKING, Any

from loguru import logger

from tradebus.account import asset_names
from tradebus.engine.bus import MessageBus
from tradebus.engine.clock import Clock
from tradebus.engine.instrument import EXACT_GRID, LOTS_RTOL, ROUNDING_RTOL, grid_of
from tradebus.engine.messages import (
    OrderType,
    PositionChanged,
    SubmitOrder,
    TradingState,
    TradingStateChanged,
)
from tradebus.engine.portfolio import Portfolio
from tradebus.risk.breakers import BreakerState, Breakers
from tradebus.risk.config import LIMIT_RTOL, RiskConfig, notional_slack, quantity_slack
from tradebus.risk.shown import shown

if TYPE_CHECKING:
    from tradebus.execution.orders import Order, OrderManager

__all__ = [
    "HALTED_REASON", "PASSING_CHECKS", "RiskGate", "gross_equity_reason", "gross_exposure_reason", "max_notional_reason",
    "max_position_reason", "max_quantity_reason", "min_notional_reason", "order_rate_reason", "reducing_reason",
]  # fmt: skip

_SEVERITY = {TradingState.ACTIVE: 0, TradingState.REDUCING: 1, TradingState.HALTED: 2}
# Enum members read through their class cost ~60 ns each (EnumType attribute lookup).
_ACTIVE = TradingState.ACTIVE
_HALTED = TradingState.HALTED
_MARKET = OrderType.MARKET
_LIMIT = OrderType.LIMIT
_STOP_MARKET = OrderType.STOP_MARKET
_STOP_LIMIT = OrderType.STOP_LIMIT
_NAN = math.nan
_INF = math.inf
#: How long (clock time) after :meth:`RiskGate.restore` the mark-driven breakers wait for a price of each instrument
#: the restored book holds before they evaluate anyway, at the journal's prices of those still unpriced.
RESTORE_PRICE_WAIT_NS = 60_000_000_000
#: Why a breaker re-armed by itself.
_AUTO_REARM = {"daily_loss": "the UTC day rolled over", "gross_exposure": "gross exposure is back within the limit"}


#: The denial of every order while trading is HALTED.
HALTED_REASON = "trading_state: HALTED denies every order"
#: Checks whose denial can pass with time whatever the order (the trading state, the count of open orders, the order
#: rate; not ``price_band``, which the order's own price fails until the market comes back to it, if ever); a
#: denial's reason starts with its check's name and a colon.
PASSING_CHECKS = ("trading_state", "max_open_orders", "max_order_rate")


def reducing_reason(position: float, working: float, signed: float) -> str:
    """The denial of an order that would not reduce ``position + working`` while trading is REDUCING.

    For a cash-only instrument ``position`` is the base asset held and ``working`` the working sells
    of that asset (of a buy: the instrument's working buys); see the module docstring.
    """
    return (
        f"trading_state: REDUCING allows only reducing orders; position {shown(position)}, "
        f"working on the order's side {shown(working)}, order {shown(signed)}"
    )


def gross_exposure_reason(ratio: float, limit: float, notional: float, equity: float) -> str:
    """The denial of an order that takes the worst-case gross exposure (``notional / equity``) over the limit."""
    return (
        f"max_gross_exposure: {ratio:.6g} > {shown(limit)} (gross notional {shown(notional)} with working orders, "
        f"equity {shown(equity)})"
    )


def gross_equity_reason(equity: float) -> str:
    """The denial of an order that raises gross exposure while equity is not positive."""
    return f"max_gross_exposure: equity {shown(equity)} <= 0"


def order_rate_reason(count: int, window_ns: int, limit: int) -> str:
    """The denial of an order when ``count`` orders passed in the last ``window_ns``."""
    return f"max_order_rate: {count} orders in {window_ns} ns >= {limit}"


def min_notional_reason(notional: float, minimum: float) -> str:
    """The denial of a market order worth ``notional`` at the last price, under the instrument's minimum."""
    return f"instrument: notional {shown(notional)} at last price is below the minimum {shown(minimum)}"


def max_quantity_reason(quantity: float, limit: float) -> str:
    """The denial of an order above ``max_order_quantity``."""
    return f"max_order_quantity: {shown(quantity)} > {shown(limit)}"


def max_notional_reason(instrument_id: str, notional: float, limit: float) -> str:
    """The denial of an order above ``max_order_notional`` (``notional`` NaN: no price to value it)."""
    if notional != notional:
        return f"max_order_notional: no price to value the order (no last price for {instrument_id})"
    return f"max_order_notional: {shown(notional)} > {shown(limit)}"


def max_position_reason(position: float, working: float, signed: float, projected: float, limit: float) -> str:
    """The denial of an order that takes ``|position + working + signed|`` beyond ``max_position``."""
    if working == 0.0:
        return f"max_position: |{shown(position)} + {shown(signed)}| = {shown(projected)} > {shown(limit)}"
    return (
        f"max_position: |{shown(position)} + working {shown(working)} + {shown(signed)}| = {shown(projected)} "
        f"> {shown(limit)}"
    )


class RiskGate:
    """Checks every order before it leaves the process and owns the trading state.

    Parameters
    ----------
    config
        :class:`RiskConfig` limits (frozen; read once here).
    portfolio
        Source of positions, equity and the instruments.
    clock
        Injected clock (order-rate window, UTC day of the daily loss, event timestamps).
    bus
        Where ``TradingStateChanged`` is published (and ``PositionChanged`` read, for the
        loss streak).
    """

    __slots__ = (
        "_band",
        "_breakers",
        "_bus",
        "_cancel",
        "_clock",
        "_config",
        "_last",
        "_limited",
        "_manual",
        "_manual_reason",
        "_marks",
        "_marks_deferred",
        "_marks_pending",
        "_max_gross",
        "_max_notional",
        "_max_open",
        "_max_position",
        "_max_quantity",
        "_max_rate",
        "_orders",
        "_portfolio",
        "_rate",
        "_rate_window",
        "_reason",
        "_replaced",
        "_sizes",
        "_specs",
        "_spot",
        "_store",
        "_unpriced",
        "_unpriced_until",
        "instruments",
        "state",
    )

    def __init__(self, config: RiskConfig, portfolio: Portfolio, clock: Clock, bus: MessageBus) -> None:
        self._config = config
        self._portfolio = portfolio
        self._clock = clock
        self._bus = bus
        self.instruments = portfolio.instruments
        # Contract size per instrument: notionals are quantity * contract_size * price.
        self._sizes = {iid: inst.contract_size for iid, inst in portfolio.instruments.items()}
        # cash-only instrument -> (its base asset, the cash-only instruments trading that asset)
        bases = {iid: asset_names(inst)[0] for iid, inst in portfolio.instruments.items() if inst.cash_only}
        self._spot: dict[str, tuple[str, frozenset[str]]] = {
            iid: (base, frozenset(other for other, asset in bases.items() if asset == base)) for iid, base in bases.items()
        }
        self.state = TradingState.ACTIVE
        self._reason = ""  # why the trading state is what it is (as published)
        self._manual = TradingState.ACTIVE
        self._manual_reason = ""
        self._last: dict[str, float] = {}
        self._rate: deque[int] = deque()
        # instrument_id -> [instrument, its live position record, lot size, minimum quantity, lot grid integer m,
        # the last quantity a market order passed the instrument's quantity checks with (NaN: none yet), lot grid scale]
        self._specs: dict[str, list[Any]] = {}
        self._orders: OrderManager | None = None
        self._cancel: Callable[[Order, str], None] | None = None
        self._replaced: Callable[[], Collection[str]] | None = None
        self._store: Callable[[BreakerState], None] | None = None
        # Instruments a restored book holds and no price has come for since (restore): the mark-driven breakers wait.
        self._unpriced: set[str] = set()
        self._unpriced_until = 0
        self._max_quantity = config.max_order_quantity
        self._max_notional = config.max_order_notional
        self._max_position = config.max_position
        self._band = config.price_band_pct
        self._max_gross = config.max_gross_exposure
        self._max_open = config.max_open_orders
        self._max_rate = config.max_orders_per_window
        self._rate_window = config.order_rate_window_ns
        self._limited = any(
            limit is not None
            for limit in (
                self._max_quantity,
                self._max_notional,
                self._max_position,
                self._band,
                self._max_gross,
                self._max_open,
                self._max_rate,
            )
        )
        self._breakers = Breakers(config, portfolio)
        self._marks = config.breakers_on_marks
        self._marks_deferred = False
        self._marks_pending = False
        if config.max_consecutive_losses is not None:
            bus.subscribe(PositionChanged, self._on_position)

    @property
    def config(self) -> RiskConfig:
        """The limits (read-only: the gate keeps its own copy of each)."""
        return self._config

    def bind_orders(
        self,
        orders: OrderManager,
        cancel: Callable[[Order, str], None] | None = None,
        replaced: Callable[[], Collection[str]] | None = None,
    ) -> None:
        """Count the working orders of ``orders`` in the position, REDUCING and exposure checks.

        ``cancel(order, reason)`` sends a cancel through the venue path: the gate calls it for each
        working order a move to a more severe trading state no longer allows
        (:meth:`disallowed_orders`). ``replaced()``: the client ids of working orders a cancel-replace
        in flight replaces (:meth:`Venue.replaced_in_flight
        <tradebus.execution.venue.Venue.replaced_in_flight>`), which that move counts once, as their
        replacements.
        """
        self._orders = orders
        self._cancel = cancel
        self._replaced = replaced

    # -------------------------------------------------------------------- checks

    def check(
        self, cmd: SubmitOrder, open_orders: int = 0, *, order_quantity: float | None = None, rated: bool = False,
    ) -> str | None:
        """Why ``cmd`` must be denied, or ``None`` if it may be sent.

        Parameters
        ----------
        cmd
            The order to check.
        open_orders
            Number of orders currently open (for ``max_open_orders``).
        order_quantity
            The order's whole quantity when ``cmd`` is a modification of a partly filled order
            whose ``quantity`` is what can still fill: ``max_order_quantity`` and
            ``max_order_notional`` limit the order's size, every other check what can still fill.
            ``None``: ``cmd.quantity``.
        rated
            ``cmd`` passed once already and counts in the order rate (a modification checked again as it leaves,
            :meth:`~tradebus.execution.venue.Venue.bind_modify_check`): ``max_orders_per_window`` is not checked again.
        """
        if self._marks_deferred:
            self._evaluate()
        iid = cmd.instrument_id
        qty = cmd.quantity
        spec = self._specs.get(iid)
        if spec is None:
            spec = self._spec(iid)
        state = self.state
        limited = self._limited
        # The signed quantity and the position: only a reduce-only order, a trading state other than ACTIVE and
        # the configured limits read them.
        if cmd.reduce_only or state is not _ACTIVE or limited:
            signed = qty if cmd.side > 0 else -qty
            pos = self._portfolio.position(iid) if spec is None else spec[1].quantity
            if cmd.reduce_only and signed * pos < 0.0 and abs(signed) > abs(pos):
                signed = -pos  # the venue fills no more of it than the position (it never flips it)
        if state is not _ACTIVE:
            if state is _HALTED:
                return HALTED_REASON
            spot = self._spot.get(iid)
            if spot is None:
                held = pos
                working = self._working(iid, signed > 0.0, cmd.client_order_id)
                if working and cmd.reduce_only and not self._working(iid, signed > 0.0, cmd.client_order_id, True):
                    working = 0.0  # reduce-only orders alone on its side: the venue fills them only down to flat
            else:  # a cash-only instrument: its position is the base asset held, which only a sell reduces
                held = self._portfolio.spot_holding(spot[0])
                working = self._working(iid if signed > 0.0 else spot[1], signed > 0.0, cmd.client_order_id)
                if signed > 0.0:
                    return reducing_reason(held, working, signed)
            base = held + working
            if (
                base == 0.0
                or (base > 0.0) == (signed > 0.0)
                or abs(signed) > abs(base) + quantity_slack(base, _INF if spec is None else spec[2])
            ):
                return reducing_reason(held, working, signed)
        if spec is None:
            return f"instrument: unknown instrument {iid!r}"
        inst = spec[0]
        typ = cmd.order_type
        last = self._last.get(iid, _NAN)
        if typ == _MARKET:
            # Instrument.validate_order(qty, nan) inline; it is asked for the reason when a check fails. Its
            # verdict depends on the quantity alone: the quantity that passed last passes again.
            if qty != spec[5]:
                _, _, lot, minimum, lot_m, _, lot_scale = spec
                lots = qty * lot_scale / lot_m
                if (
                    not (qty > 0.0 and qty < _INF and qty >= minimum - 1e-12 and qty / lot * lot_m < EXACT_GRID)
                    or abs(lots - round(lots)) > min(max(1e-6, lots * LOTS_RTOL), max(1e-3, lots * ROUNDING_RTOL))
                ):
                    why = inst.validate_order(qty, _NAN)
                    if why is not None:
                        return f"instrument: {why}"
                spec[5] = qty
            px = _NAN
        else:
            if typ == _LIMIT or typ == _STOP_LIMIT:
                px = cmd.price
                if px != px:
                    return f"instrument: {typ} order needs a limit price"
            elif typ == _STOP_MARKET:
                px = cmd.trigger_price
            else:
                px = _NAN
            if typ == _STOP_MARKET or typ == _STOP_LIMIT:
                trg = cmd.trigger_price
                if trg != trg:
                    return f"instrument: {typ} order needs a trigger price"
                why = inst.validate_order(qty, trg)
                if why is not None:
                    return f"instrument: trigger: {why}"
            why = inst.validate_order(qty, px)
            if why is not None:
                return f"instrument: {why}"
        if px != px:
            min_notional = inst.min_notional
            if min_notional > 0.0 and last == last and qty * inst.contract_size * last < min_notional - 1e-12:
                return min_notional_reason(qty * inst.contract_size * last, min_notional)
        why = self._portfolio.account.check_order(cmd, last)
        if why is not None:
            return why
        if limited:
            size = qty if order_quantity is None else order_quantity
            return self._check_limits(cmd, size, signed, pos, px, last, open_orders, spec[2], rated)
        return None

    def _check_limits(
        self,
        cmd: SubmitOrder,
        size: float,
        signed: float,
        pos: float,
        px: float,
        last: float,
        open_orders: int,
        lot: float,
        rated: bool = False,
    ) -> str | None:
        """The configured limits of :meth:`check` (steps 3 to 7), for an order that passed 1 and 2.

        ``size`` is the order's whole quantity (of a modification, filled part included), ``signed``
        what can still fill, signed.
        """
        limit = self._max_quantity
        if limit is not None and size > limit + quantity_slack(limit, lot):
            return max_quantity_reason(size, limit)
        limit = self._max_notional
        if limit is not None:
            unit = self._sizes.get(cmd.instrument_id, 1.0)
            price = px if px == px else last
            notional = size * unit * price
            if not notional <= limit + notional_slack(limit, lot, unit * price):  # NaN: no price to value it
                return max_notional_reason(cmd.instrument_id, notional, limit)
        limit = self._max_position
        if limit is not None:
            spot = self._spot.get(cmd.instrument_id)
            if spot is None:
                working = self._working(cmd.instrument_id, signed > 0.0, cmd.client_order_id)
            else:  # a cash-only instrument: its position is the base asset held (step 1)
                pos = self._portfolio.spot_holding(spot[0])
                working = self._working(spot[1], signed > 0.0, cmd.client_order_id)
            base = pos + working
            projected = abs(base + signed)
            if projected > limit + quantity_slack(limit, lot) and projected > abs(base):
                return max_position_reason(pos, working, signed, projected, limit)
        band = self._band
        if band is not None and cmd.order_type != _MARKET:
            if last != last:
                return f"price_band: no last price for {cmd.instrument_id}"
            for name, value in (("price", cmd.price), ("trigger_price", cmd.trigger_price)):
                if value == value:
                    dist = abs(value / last - 1.0) * 100.0
                    if dist > band * (1.0 + LIMIT_RTOL):
                        return f"price_band: {name} {shown(value)} is {dist:.4g}% from last {shown(last)} > {shown(band)}%"
        limit = self._max_gross
        if limit is not None:
            why = self._check_gross(cmd, signed, px, limit, lot)
            if why is not None:
                return why
        why = self._open_or_rate_reason(open_orders, rated)
        if why is None and self._max_rate is not None and not rated:
            self._rate.append(self._clock.now_ns())
        return why

    def _open_or_rate_reason(self, open_orders: int, rated: bool = False) -> str | None:
        """The denial by ``max_open_orders``, then ``max_order_rate`` (not checked when ``rated``), or ``None``; counts
        nothing (:meth:`check` records an order that passed, :meth:`waiting_reason` only asks)."""
        max_open = self._max_open
        if max_open is not None and open_orders >= max_open:
            return f"max_open_orders: {open_orders} open >= {max_open}"
        max_rate = self._max_rate
        if max_rate is not None and not rated:
            rate = self._rate
            horizon = self._clock.now_ns() - self._rate_window
            while rate and rate[0] <= horizon:
                rate.popleft()
            if len(rate) >= max_rate:
                return order_rate_reason(len(rate), self._rate_window, max_rate)
        return None

    def _working(self, instruments: str | frozenset[str], buy: bool, exclude: str, plain: bool = False) -> float:
        """Signed remaining quantity of the working orders on one side of an instrument (or of a set of
        instruments), except order ``exclude`` and its OCO group; an OCO group counts once, as its largest member.
        ``plain``: only the orders that are not reduce-only."""
        orders = self._orders
        if orders is None or not orders.open_count:
            return 0.0
        if isinstance(instruments, str):
            instruments = (instruments,)
        return orders.leaves.total(instruments, self._portfolio.account.oco_groups(), buy, exclude, plain=plain)

    def _working_holding(self, instrument_id: str, buy: bool, exclude: str) -> float:
        """:meth:`_working` on what ``instrument_id`` holds: of a cash-only instrument, its base asset, which
        every cash-only instrument trading that asset buys and sells (``BTC-USDT`` and ``BTC-USD`` share ``BTC``)."""
        spot = self._spot.get(instrument_id)
        return self._working(instrument_id if spot is None else spot[1], buy, exclude)

    def _check_gross(self, cmd: SubmitOrder, signed: float, px: float, limit: float, lot: float) -> str | None:
        """Step 6 of :meth:`check`: the worst-case gross exposure after the order."""
        pf = self._portfolio
        # instrument -> [position, working buys, working sells]
        book: dict[str, list[float]] = {iid: [qty, 0.0, 0.0] for iid, qty in pf.positions().items()}
        book.setdefault(cmd.instrument_id, [pf.position(cmd.instrument_id), 0.0, 0.0])
        orders = self._orders
        skip: tuple[str, ...] = ()
        if orders is not None and orders.open_count:
            oco = pf.account.oco_groups()
            exclude = cmd.client_order_id
            skip = oco.get(exclude, (exclude,)) if oco else (exclude,)
            leaves = orders.leaves
            # The instruments with working orders (but the order's group) in the order their first such order came.
            firsts = ((leaves.first_working(iid, skip), iid) for iid in leaves.instruments())
            # (OCO group, side) -> its largest member (leaves, ..., instrument, ...): a group counts once per side
            groups: dict[tuple[tuple[str, ...], bool], tuple[float, int, str, int]] = {}
            for _, iid in sorted(first for first in firsts if first[0]):
                row = book.setdefault(iid, [pf.position(iid), 0.0, 0.0])
                row[1] += leaves.total((iid,), oco, True, exclude, groups=groups)
                row[2] -= leaves.total((iid,), oco, False, exclude, groups=groups)
            for (_, buy), (largest, _, iid, _) in sorted(groups.items(), key=lambda item: item[1][3]):
                book[iid][1 if buy else 2] += largest

        sizes = self._sizes

        def price(iid: str) -> float:  # the value of one unit of quantity (contract size included)
            last = self._last.get(iid, _NAN)
            if last != last:
                last = pf.last_price(iid)
                if last != last and orders is not None:
                    # not priced yet: the highest limit or trigger of its working orders
                    quoted = orders.leaves.highest_quote(iid, skip)
                    if quoted > -_INF:
                        last = quoted
            return last * sizes.get(iid, 1.0)

        def worst(row: list[float]) -> float:
            return max(abs(row[0] + row[1]), abs(row[0] - row[2]))

        own = cmd.instrument_id
        marks: dict[str, float] = {}
        for iid in book:
            if iid != own:
                mark = marks[iid] = price(iid)
                if mark != mark:  # a NaN sum would pass every order
                    return f"max_gross_exposure: no price for {iid} (it has working orders)"
        mark = price(own)
        if mark != mark:
            mark = px * sizes.get(own, 1.0)
        if mark != mark:
            return f"max_gross_exposure: no price for {own}"
        marks[own] = mark
        # The cash-only instruments trading one base asset and its holding count as one position (the
        # breakers' gross_notional): base asset -> (their row, in units of the first of them, the order's
        # own first; that one's mark).
        spot = self._spot
        own_asset = spot[own][0] if own in spot else None
        assets: dict[str, tuple[list[float], float]] = {} if own_asset is None else {own_asset: (book[own], mark)}
        gross = 0.0
        for iid, row in book.items():
            asset = spot[iid][0] if iid in spot else None
            if asset is None:
                if iid != own:
                    gross += worst(row) * marks[iid]
            elif iid != own:
                shared = assets.get(asset)
                if shared is None:
                    assets[asset] = (row, marks[iid])
                else:
                    units = marks[iid] / shared[1]
                    for k in range(3):
                        shared[0][k] += row[k] * units
        for asset, value in pf.holding_values().items():
            shared = assets.get(asset)
            if shared is None:
                gross += abs(value)
            else:
                shared[0][0] += value / shared[1]
        for asset, (shared_row, shared_mark) in assets.items():
            if asset != own_asset:
                gross += worst(shared_row) * shared_mark
        row = book[own]
        before = gross + worst(row) * mark
        row[1 if signed > 0.0 else 2] += abs(signed)
        after = gross + worst(row) * mark
        if after <= before:
            return None
        equity = pf.equity()
        if equity <= 0.0:
            return gross_equity_reason(equity)
        ratio = after / equity
        if ratio > limit + notional_slack(limit, lot, mark / equity):
            return gross_exposure_reason(ratio, limit, after, equity)
        return None

    def check_owner(self, strategy_id: str, client_order_id: str, owner: str) -> str | None:
        """Why ``strategy_id`` may not cancel or modify order ``client_order_id`` of ``owner``, or ``None``."""
        if strategy_id == owner:
            return None
        return f"ownership: order {client_order_id} belongs to strategy {owner!r}, not {strategy_id!r}"

    def _spec(self, iid: str) -> list[Any] | None:
        """The per-instrument record of :meth:`check` (``None`` for an unknown instrument)."""
        inst = self.instruments.get(iid)
        if inst is None:
            return None
        lot = inst.lot_size
        lot_m, lot_scale = grid_of(lot)
        spec = [inst, self._portfolio.position_state(iid), lot, max(inst.min_quantity, lot), lot_m, _NAN, lot_scale]
        self._specs[iid] = spec
        return spec

    # ------------------------------------------------------------ trading state

    @property
    def reason(self) -> str:
        """Why the trading state is what it is (the reason ``TradingStateChanged`` published)."""
        return self._reason

    @property
    def manual(self) -> tuple[TradingState, str]:
        """The manual state (:meth:`set_state`) and its reason."""
        return self._manual, self._manual_reason

    def set_state(self, state: TradingState, reason: str) -> None:
        """Set the manual state (an operator's decision), re-arming the breakers more severe than it.

        Publishes ``TradingStateChanged`` when the resulting state differs; see the module
        docstring for what each re-arm resets.
        """
        severity = _SEVERITY[state]
        breakers = self._breakers
        rearm = [name for name, trip in breakers.tripped.items() if _SEVERITY[trip.state] > severity]
        if rearm:
            logger.warning("risk: breaker(s) {} re-armed manually: {}", ", ".join(rearm), reason)
            breakers.rearm(rearm)
        self._manual = state
        self._manual_reason = reason
        self._apply(reason)

    def on_price(self, instrument_id: str, price: float) -> None:
        """Record the last price of an instrument and evaluate the breakers.

        The portfolio must already be marked at ``price`` (the execution engine does both).
        After :meth:`defer_marks` the breakers only note that a price came (:meth:`evaluate_marks`).
        """
        if price > 0.0 and price < _INF:
            self._last[instrument_id] = price
            if self._unpriced:
                self._priced((instrument_id,))
        if self._marks:
            if self._marks_deferred:
                self._marks_pending = True
            else:
                self._evaluate()

    def defer_marks(self) -> None:
        """Evaluate the mark-driven breakers only when told to and before every order check.

        The kernel defers them so that they see the portfolio once every price of a time is in
        (several instruments' bars at one time are marked one after another; an equity with
        one leg of a hedge marked and the other not is no state the book was ever in): it calls
        :meth:`end_time` when a time is complete, and the node's router
        :meth:`evaluate_marks` after every message. :meth:`check` evaluates them first, at its
        own clock (the UTC day may have rolled since the last price), so what an order is
        checked against does not depend on which earlier messages marked a price.
        """
        self._marks_deferred = True

    def reducing_room(self, instrument_id: str, buy: bool) -> float:
        """The largest quantity a new order on one side (``buy``) that is not reduce-only passes REDUCING with.

        The absolute net position (every strategy's) net of the working orders on that side when the order
        would reduce it (step 1 of :meth:`check`; of a cash-only instrument the base asset held, which no buy
        reduces), else 0.
        """
        spot = self._spot.get(instrument_id)
        if spot is None:
            base = self._portfolio.position(instrument_id) + self._working(instrument_id, buy, "")
        elif buy:
            return 0.0
        else:
            base = self._portfolio.spot_holding(spot[0]) + self._working(spot[1], buy, "")
        return abs(base) if base != 0.0 and (base > 0.0) != buy else 0.0

    def current_state(self) -> TradingState:
        """The trading state an order checked now meets (the breakers evaluated first, as :meth:`check` does)."""
        if self._marks_deferred:
            self._evaluate()
        return self.state

    def waiting_reason(self, open_orders: int) -> str | None:
        """Why a submit reducing the position would be denied now by a check that passes with time, or ``None``.

        The checks of :data:`PASSING_CHECKS` alone (``HALTED``, ``max_open_orders``, ``max_order_rate``), without
        counting anything: a caller that sends again an order those denied asks first, and sends nothing while the
        answer is a reason (no order created, denied and logged per market event of a long halt).

        Parameters
        ----------
        open_orders
            Number of orders currently open, as :meth:`check` takes it.

        Returns
        -------
        str or None
            The denial :meth:`check` would give for the first of these checks that fails, ``None`` when all pass.
        """
        if self.current_state() is _HALTED:
            return HALTED_REASON
        return self._open_or_rate_reason(open_orders)

    def evaluate_marks(self) -> None:
        """Evaluate the mark-driven breakers if a price was recorded since they last were."""
        if self._marks_pending:
            self._evaluate()

    def end_time(self) -> None:
        """A time is complete: evaluate the mark-driven breakers (see :meth:`defer_marks`; not while :meth:`restore`
        waits for prices)."""
        self._marks_pending = False
        if self._unpriced and not self._waited_for_prices():
            return
        breakers = self._breakers
        if breakers.on_mark(self._clock.now_ns()):
            rearmed = breakers.rearmed
            why = "; ".join(f"{name} re-armed: {_AUTO_REARM[name]}" for name in rearmed)
            rearmed.clear()
            self._apply(why or None)

    _evaluate = end_time

    def quiet_band(self) -> tuple[int, float, float]:
        """``(until_ns, floor, ceiling)``: an evaluation of the mark-driven breakers at a clock
        before ``until_ns`` and an equity in ``(floor, ceiling]`` changes nothing
        (:meth:`Breakers.quiet_band <tradebus.risk.breakers.Breakers.quiet_band>`)."""
        return self._breakers.quiet_band()

    def on_prices(self, prices: Iterable[tuple[str, float]]) -> None:
        """:meth:`on_price` of several instruments' prices at one time (the portfolio marked at all of them)."""
        last = self._last
        for instrument_id, price in prices:
            if price > 0.0 and price < _INF:
                last[instrument_id] = price
        if self._unpriced:
            self._priced(last)
        if self._marks:
            if self._marks_deferred:
                self._marks_pending = True
            else:
                self._evaluate()

    def _waited_for_prices(self) -> bool:
        """Whether :meth:`restore`'s wait for prices is over (:data:`RESTORE_PRICE_WAIT_NS`); ends it if so."""
        if self._clock.now_ns() < self._unpriced_until:
            return False
        logger.warning(
            "risk: no price of {} within {:g} s of the restart (no trade, quote, bar or book of it subscribed?): the breakers "
            "evaluate marks again, valuing it at the journal's prices",
            ", ".join(sorted(self._unpriced)),
            RESTORE_PRICE_WAIT_NS / 1e9,
        )
        self._unpriced.clear()
        return True

    def _priced(self, instrument_ids: Iterable[str]) -> None:
        """Instruments priced since :meth:`restore`: once every one it waits for is, the breakers evaluate marks."""
        unpriced = self._unpriced
        unpriced.difference_update(instrument_ids)
        if not unpriced:
            logger.info("risk: every instrument held is priced again: the breakers evaluate marks")

    def _on_position(self, change: PositionChanged) -> None:
        if self._breakers.on_position(change):
            self._apply(None)

    def _apply(self, why: str | None, restored: bool = False) -> None:
        """Move to the most severe of the manual state and the tripped breakers; store the state."""
        state, reason = self._manual, self._manual_reason
        for trip in self._breakers.tripped.values():
            if _SEVERITY[trip.state] > _SEVERITY[state]:
                state, reason = trip.state, trip.reason
        if state is self._manual and why is not None:
            reason = why
        now = self._clock.now_ns()
        if state is not self.state:
            if restored:
                reason = f"restored from the journal: {reason}"
            logger.warning("risk: trading state {} -> {}: {}", self.state, state, reason)
            stricter = _SEVERITY[state] > _SEVERITY[self.state]
            self.state = state
            self._reason = reason
            # A restored state meets orders the venue has not confirmed yet: the reconciliation settles them.
            if stricter and not restored:
                self.cancel_disallowed()
            self._bus.publish(TradingStateChanged(state, reason, now, now))
        store = self._store
        if store is not None:
            store(self._breakers.snapshot(now, self._manual, self._manual_reason))

    def cancel_disallowed(self) -> list[Order]:
        """Cancel the working orders the trading state no longer allows (:meth:`disallowed_orders`).

        Each through the ``cancel`` :meth:`bind_orders` bound (nothing without one), with the reason
        ``"trading state <state>: <why>"``. A move to a stricter state calls it; a daemon calls it
        once its start-up has settled the orders a restored state met (the reason then reads
        ``"restored from the journal: ..."``).

        Returns
        -------
        list[Order]
            The orders whose cancel was sent.
        """
        cancel = self._cancel
        if cancel is None:
            return []
        why = f"trading state {self.state}: {self._reason}"
        replaced = self._replaced
        orders = self.disallowed_orders(() if replaced is None else replaced())
        for order in orders:
            logger.warning("risk: canceling order {} ({})", order.client_order_id, why)
            cancel(order, why)
        return orders

    def disallowed_orders(self, replaced: Collection[str] = ()) -> list[Order]:
        """The working orders the trading state no longer allows, in creation order.

        HALTED: every working order. REDUCING: every order that may grow an instrument's absolute
        position; a reduce-only order never does. That is every order on the side that adds to the
        position (either side when flat), and on the side that reduces it the orders beyond the
        position, the working orders of that side counted in creation order as :meth:`check`
        counts them (an OCO group once, as its largest member). On cash-only instruments the
        position is the base asset held (module docstring): every buy (reduce-only or not), and the
        sells beyond the holding, counted across the instruments sharing the asset. ACTIVE: none.
        ``replaced``: client ids of working orders a cancel-replace in flight replaces: their quantity
        is not counted (their replacements, working orders too, stand for them), though one that
        grows the position, or any under HALTED, is still disallowed.
        """
        orders = self._orders
        state = self.state
        if orders is None or state is _ACTIVE:
            return []
        working = orders.open_orders()
        if state is _HALTED:
            return working
        pf = self._portfolio
        oco = pf.account.oco_groups()
        # (instrument, or base asset of cash-only instruments) -> working quantity counted on its reducing side
        counted: dict[tuple[bool, str], float] = {}
        largest: dict[tuple[str, ...], float] = {}  # OCO group -> its largest member counted
        disallowed: list[Order] = []
        for order in working:
            iid = order.instrument_id
            spot = self._spot.get(iid)
            if spot is None:
                key = (False, iid)
                pos = pf.position(iid)
                grows = pos == 0.0 or (order.side > 0) == (pos > 0.0)
                if grows and not order.reduce_only:
                    disallowed.append(order)
            else:
                key = (True, spot[0])
                pos = pf.spot_holding(spot[0])
                grows = order.side > 0 or pos <= 0.0
                if order.side > 0 or (grows and not order.reduce_only):
                    disallowed.append(order)
            if grows or (replaced and order.client_order_id in replaced):
                continue
            leaves = order.leaves_qty
            group = oco.get(order.client_order_id) if oco else None
            added = leaves if group is None else max(leaves - largest.get(group, 0.0), 0.0)
            used = counted.get(key, 0.0)
            inst = self.instruments.get(iid)
            if not order.reduce_only and used + added > abs(pos) + quantity_slack(pos, _INF if inst is None else inst.lot_size):
                disallowed.append(order)
                continue
            counted[key] = used + added
            if group is not None and leaves > largest.get(group, 0.0):
                largest[group] = leaves
        return disallowed

    def snapshot(self) -> BreakerState:
        """The manual state and the breakers' memory (what :meth:`restore` takes back)."""
        return self._breakers.snapshot(self._clock.now_ns(), self._manual, self._manual_reason)

    def restore(self, state: BreakerState | None, store: Callable[[BreakerState], Any] | None = None) -> None:
        """Resume a stored state (``None``: nothing stored yet) and store every later change.

        A restored HALTED or REDUCING state is published as ``TradingStateChanged`` with the
        reason ``"restored from the journal: ..."``.

        The portfolio rebuilt from the journal values its positions and holdings at the journal's
        fill prices, not at the market's: the mark-driven breakers (drawdown, daily loss, gross
        exposure) evaluate nothing until a price (:meth:`on_price`) has come for every instrument
        it holds, or that values a holding, or :data:`RESTORE_PRICE_WAIT_NS` has passed (a WARNING
        names those still unpriced); their
        restored trips hold meanwhile.
        """
        self._store = store
        if state is not None:
            self._manual = state.manual_state
            self._manual_reason = state.manual_reason
            self._breakers.restore(state)
        pf = self._portfolio
        if self._marks:
            self._unpriced = (set(pf.positions()) | set(pf.holdings)) - self._last.keys()
            self._unpriced_until = self._clock.now_ns() + RESTORE_PRICE_WAIT_NS
            if self._unpriced:
                logger.info(
                    "risk: the breakers evaluate marks once {} are priced (held; valued at the journal's prices until then)",
                    ", ".join(sorted(self._unpriced)),
                )
        self._apply(None, restored=True)

    def last_price(self, instrument_id: str) -> float:
        """Last price seen by the gate (NaN if none)."""
        return self._last.get(instrument_id, math.nan)
