"""The Strategy API: event handlers in, order commands out.

A strategy subclasses :class:`Strategy`, overrides the ``on_*`` handlers it
needs, and trades through the helpers (:meth:`Strategy.submit_market`,
:meth:`Strategy.submit_limit`, :meth:`Strategy.submit_stop`,
:meth:`Strategy.cancel`, :meth:`Strategy.target_position`). It reads time from
:attr:`Strategy.clock`, positions from :meth:`Strategy.position` and its
instrument's features from :meth:`Strategy.features`. The kernel gives it the
same objects in backtest, paper and live runs, so a strategy cannot tell which
mode it runs in.

Lifecycle: the kernel calls :meth:`Strategy.feature_specs` while building the
feature banks, then ``on_start`` once, then the data and order handlers, then
``on_stop`` once (after the callbacks registered with :meth:`Strategy.at_stop`, such as
the execution algorithms' end-of-run report). Handlers a subclass does not override are
never subscribed, so they cost nothing.

Parameters coming from a run config are validated by the class attribute
``Params`` (a pydantic model, unknown keys rejected) and by
:meth:`Strategy.check_params` against the instruments.

The run as the strategy sees it is a narrow :class:`~tradebus.strategies.context.StrategyContext`
(:attr:`Strategy.ctx`), never the kernel. On top of it the base class offers:

* history windows: :meth:`Strategy.history_sizes` says how many bars/trades to keep per
  instrument; :meth:`Strategy.bars` / :meth:`Strategy.trades` return them as numpy arrays
  ending at the event being handled;
* :meth:`Strategy.modify` (price, quantity or trigger of a working order);
* timers: :meth:`Strategy.set_timer` (every N, from an optional start) and
  :meth:`Strategy.set_alert` (once, at a time) call :meth:`Strategy.on_timer`; they run on
  the run's clock, so a backtest fires them at simulated times, deterministically, before
  the first event at or after them, and paper/live runs fire them on the wall clock (a paper run
  calls them with its clock at their due time, as its replay does);
* sizing: :meth:`Strategy.quantity_for_notional`, :meth:`Strategy.quantity_for_weight`,
  :meth:`Strategy.quantity_for_risk` and :meth:`Strategy.target_weight` (reusable sizers
  live in :mod:`tradebus.strategies.sizing`).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib
import inspect
import math
import numbers
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from loguru import logger
from pydantic import BaseModel

from tradebus.config.base import StrictModel
from tradebus.config.units import parse_duration
from tradebus.engine.instrument import Instrument
from tradebus.engine.messages import (
    AlgoEnded,
    Bar,
    CancelOrder,
    ModifyOrder,
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
    OrderSide,
    OrderSubmitted,
    OrderTriggered,
    OrderType,
    PositionChanged,
    Quote,
    SubmitOrder,
    TimeEvent,
    TimeInForce,
    Trade,
    TradingState,
)
from tradebus.errors import ConfigError, OrderError

if TYPE_CHECKING:
    import numpy as np

    from tradebus.engine.cache import BookView, Cache, FeatureView
    from tradebus.engine.clock import Clock
    from tradebus.engine.history import BarWindow, History, TradeWindow
    from tradebus.execution.contingent import ContingentOrders, OrderSpec
    from tradebus.features.spec import FeatureSpec
    from tradebus.strategies.context import StrategyContext
    from tradebus.strategies.signal_kernel import SignalKernel

__all__ = [
    "BUILTIN_STRATEGIES",
    "DATA_HANDLERS",
    "NoParams",
    "Strategy",
    "StrategyEntry",
    "build_strategies",
    "duration_ns",
    "resolve_strategy",
    "strategy_module_dir",
    "strategy_source_files",
]

#: Built-in strategies by config name -> ``"module:Class"``.
BUILTIN_STRATEGIES: dict[str, str] = {
    "ema_cross": "tradebus.strategies.ema_cross:EmaCross",
    "tick_ema_cross": "tradebus.strategies.tick_ema:TickEmaCross",
    "macd_cross": "tradebus.strategies.macd:MacdCross",
    "bollinger_reversion": "tradebus.strategies.bollinger:BollingerReversion",
    "rsi_reversion": "tradebus.strategies.rsi:RsiReversion",
    "donchian_breakout": "tradebus.strategies.donchian:DonchianBreakout",
    "pairs": "tradebus.strategies.pairs:PairsTrading",
    "xs_momentum": "tradebus.strategies.momentum:CrossSectionalMomentum",
}

#: Market-data kind -> the handler a strategy overrides to act on it.
DATA_HANDLERS: dict[str, str] = {"bars": "on_bar", "trades": "on_trade", "quotes": "on_quote"}

_NAN = float("nan")
_INF = float("inf")
# Enum members read through their class cost ~60 ns each (EnumType attribute lookup); orders read them.
_BUY = OrderSide.BUY
_SELL = OrderSide.SELL
_MARKET = OrderType.MARKET
_REDUCING = TradingState.REDUCING
_GTC = TimeInForce.GTC


class NoParams(StrictModel):
    """Parameters of a strategy that takes none (any key is an error)."""


@functools.cache
def _forbidding_extra(model: type[BaseModel]) -> type[BaseModel]:
    """``model`` with unknown keys refused (``extra="forbid"``), for checking only."""
    config = {**model.model_config, "extra": "forbid"}
    return type(model.__name__, (model,), {"model_config": config, "__module__": model.__module__})


class Strategy:
    """Base class of every strategy.

    Parameters
    ----------
    instrument_ids
        The instruments the strategy receives data for and trades (one id or a
        sequence). The first one is its *primary* instrument.
    strategy_id
        Unique id used in client order ids; defaults to the class name. The
        kernel rejects two strategies with the same id.
    """

    #: Validates the ``params`` mapping of a run config (subclasses override).
    Params: ClassVar[type[BaseModel]] = NoParams
    #: Whether the kernel builds contingent orders (brackets, OCO, trailing, GTD) for this strategy.
    contingent: ClassVar[bool] = False

    def __init__(self, instrument_ids: str | Sequence[str], *, strategy_id: str | None = None) -> None:
        ids = (instrument_ids,) if isinstance(instrument_ids, str) else tuple(instrument_ids)
        if not ids:
            raise ConfigError(f"{type(self).__name__}: at least one instrument id is required")
        self.instrument_ids: tuple[str, ...] = ids
        self.instrument_id: str = ids[0]
        self.strategy_id: str = strategy_id or type(self).__name__
        self.log = logger.bind(strategy=self.strategy_id)
        self._kernel: StrategyContext | None = None
        self._stop_callbacks: list[Callable[[], None]] = []

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_params(
        cls, instrument_ids: Sequence[str], params: BaseModel, strategy_id: str | None = None
    ) -> Strategy:
        """Build the strategy from validated config ``params`` (keyword arguments of ``__init__``)."""
        return cls(instrument_ids, strategy_id=strategy_id, **params.model_dump())

    @classmethod
    def validate_params(cls, params: Mapping[str, Any]) -> BaseModel:
        """The config's ``params`` validated by :attr:`Params`, an unknown key refused.

        A ``Params`` written as a plain pydantic ``BaseModel`` ignores unknown keys, so a
        misspelt parameter (``windw: 5``) would run with the default; it is refused as it is by
        a :class:`~tradebus.config.base.StrictModel`, unless the model sets ``extra`` itself.

        Raises
        ------
        pydantic.ValidationError
            Naming each bad or unknown key.
        """
        if cls.Params.model_config.get("extra") is None:
            _forbidding_extra(cls.Params).model_validate(params)
        return cls.Params.model_validate(params)

    @classmethod
    def check_params(cls, params: BaseModel, instruments: Sequence[Instrument]) -> None:
        """Check validated ``params`` against the strategy's instruments (first = primary).

        Raises
        ------
        ConfigError
            Whose message starts with the offending parameter name
            (``"quantity: 1e-09 is below the lot size ..."``), or with ``"instruments:"`` when
            the strategy's instruments are the problem.
        """

    @classmethod
    def data_kinds(cls, params: BaseModel) -> frozenset[str]:
        """Market-data kinds (``"bars"``, ``"trades"``, ``"quotes"``) the strategy acts on.

        By default the kinds whose handler (:data:`DATA_HANDLERS`) the class overrides. A run
        config whose data offers none of them is refused, because the strategy would never
        trade. A strategy that acts on its data only for some parameter values overrides this.
        """
        return frozenset(
            kind for kind, handler in DATA_HANDLERS.items() if getattr(cls, handler) is not getattr(Strategy, handler)
        )

    def feature_specs(self, instrument_id: str) -> Sequence[FeatureSpec]:
        """Features this strategy needs on ``instrument_id`` (added to its feature bank)."""
        return ()

    def history_sizes(self, instrument_id: str) -> Mapping[str, int]:
        """How many ``"bars"`` and ``"trades"`` of ``instrument_id`` to keep for :meth:`bars`/:meth:`trades`.

        Default: none. The kernel keeps, per instrument, the largest size any strategy asks for.
        """
        return {}

    def bind(self, context: StrategyContext) -> None:
        """Attach to the run's context (called by the kernel's ``add_strategy``)."""
        if self._kernel is not None and self._kernel is not context:
            raise ConfigError(f"strategy {self.strategy_id!r} is already attached to another run")
        self._kernel = context

    @property
    def ctx(self) -> StrategyContext:
        """The run as this strategy sees it (clock, orders, portfolio, features, book, history)."""
        if self._kernel is None:
            raise ConfigError(f"strategy {self.strategy_id!r} is not attached to a kernel")
        return self._kernel

    @property
    def kernel(self) -> StrategyContext:
        """The same as :attr:`ctx` (the name strategies used before the context existed)."""
        return self.ctx

    # ------------------------------------------------------------------ handlers

    def signal_kernel(self) -> SignalKernel | None:
        """This strategy's decision as a compiled kernel for the accelerated tier, or ``None``.

        Called after :meth:`on_start`; see :mod:`tradebus.strategies.signal_kernel`.
        """
        return None

    def on_start(self) -> None:
        """Called once before the first event.

        The clock reads the first message's time in a backtest or replay and the wall clock in
        paper/live runs, so a timer set here without ``start_ns`` counts from the run's start.
        """

    def on_stop(self) -> None:
        """Called once after the last event."""

    def at_stop(self, callback: Callable[[], None]) -> None:
        """Have ``callback`` called once when the run ends, in every mode, just before :meth:`on_stop`.

        Callbacks run in the order they were registered.
        """
        self._stop_callbacks.append(callback)

    def end_run(self) -> None:
        """End the strategy's run: the :meth:`at_stop` callbacks, then :meth:`on_stop` (called by the kernel)."""
        for callback in self._stop_callbacks:
            callback()
        self.on_stop()

    def on_bar(self, bar: Bar) -> None:
        """A bar of one of the strategy's instruments closed (features already include it)."""

    def on_trade(self, trade: Trade) -> None:
        """A public trade of one of the strategy's instruments."""

    def on_quote(self, quote: Quote) -> None:
        """A best bid/ask update of one of the strategy's instruments."""

    def on_order_submitted(self, event: OrderSubmitted) -> None:
        """An order passed the risk gate and went to the venue."""

    def on_order_accepted(self, event: OrderAccepted) -> None:
        """The venue is working an order."""

    def on_order_rejected(self, event: OrderRejected) -> None:
        """The venue refused an order (or, live, a query found the venue never had it)."""

    def on_order_denied(self, event: OrderDenied) -> None:
        """The risk gate refused an order (``event.reason`` says why)."""

    def on_order_triggered(self, event: OrderTriggered) -> None:
        """A stop order's trigger price was reached."""

    def on_order_modified(self, event: OrderModified) -> None:
        """A modification was applied."""

    def on_order_modify_rejected(self, event: OrderModifyRejected) -> None:
        """A modification was not applied (``event.reason`` says why); the order works on unchanged."""

    def on_order_cancel_rejected(self, event: OrderCancelRejected) -> None:
        """A cancel was not done: the venue refused it (``event.reason``) and the order still works there (live only)."""

    def on_order_replaced(self, event: OrderReplaced) -> None:
        """A modification was applied by a cancel-replace: the order works on as ``event.replacement_id``."""

    def on_order_filled(self, event: OrderFilled) -> None:
        """An order (partially) filled."""

    def on_order_canceled(self, event: OrderCanceled) -> None:
        """An order was canceled.

        Live, also when only a query of the venue found it canceled (its stream event lost or
        late: :func:`~tradebus.execution.orders.closing_event`); called once either way.
        """

    def on_order_expired(self, event: OrderExpired) -> None:
        """An IOC/FOK order ended unfilled or partially filled, or a GTD order (:meth:`submit_gtd`) reached its
        expiry (live, also when only a query found it expired)."""

    def on_position_changed(self, event: PositionChanged) -> None:
        """The net position of one of the strategy's instruments changed."""

    def on_timer(self, event: TimeEvent) -> None:
        """A timer or alert of this strategy fired (``event.name`` as given to :meth:`set_timer`)."""

    def on_algo_interrupted(self, event: AlgoEnded) -> None:
        """An execution algorithm of this strategy was still working when the daemon stopped.

        Called at a restart on the journal, before :meth:`on_start` (live: once the start-up has
        settled the orders with the venue): the restart canceled the algorithm's working children
        and sends nothing more of it; ``event.filled`` is what its children filled (a child filled
        while the daemon was down included) and ``event.remaining`` what is left of its parent (see
        :mod:`tradebus.strategies.algo_recovery`). Start a new algorithm of the remainder here
        or in ``on_start`` to finish the parent, rather than the whole parent again. Default:
        nothing (the restart's warning names it).
        """

    # ------------------------------------------------------------------ context

    @property
    def clock(self) -> Clock:
        """The run's clock (simulated in a backtest, wall clock in paper/live)."""
        return self.kernel.clock

    @property
    def cache(self) -> Cache:
        """Last bar/trade/quote per instrument, orders and positions."""
        return self.kernel.cache

    def instrument(self, instrument_id: str | None = None) -> Instrument:
        """The :class:`Instrument` (default: the primary one)."""
        return self.kernel.instruments[instrument_id or self.instrument_id]

    def position(self, instrument_id: str | None = None) -> float:
        """This strategy's signed position (default: primary instrument).

        The portfolio's net position when no other strategy trades the instrument; the net of
        this strategy's own fills when several do (so each one sizes against its own book).
        """
        return self.ctx.position(self.strategy_id, instrument_id or self.instrument_id)

    def equity(self) -> float:
        """Portfolio equity (cash plus positions at their latest prices)."""
        return self.kernel.equity()

    def features(self, instrument_id: str | None = None) -> FeatureView:
        """The instrument's current feature values (as of the last event, never later)."""
        return self.kernel.cache.features(instrument_id or self.instrument_id)

    def book(self, instrument_id: str | None = None) -> BookView | None:
        """The instrument's L2 book (best levels first), or ``None`` where the run keeps none."""
        return self.ctx.book(instrument_id or self.instrument_id)

    def history(self, instrument_id: str | None = None) -> History:
        """The instrument's :class:`~tradebus.engine.history.History` (see :meth:`history_sizes`)."""
        return self.ctx.history(instrument_id or self.instrument_id)

    def bars(self, n: int | None = None, instrument_id: str | None = None) -> BarWindow:
        """The last ``n`` bars of the instrument (default: all kept), oldest first, as numpy arrays.

        The window ends at the event being handled: it never holds a later bar.
        """
        return self.history(instrument_id).bars(n)

    def trades(self, n: int | None = None, instrument_id: str | None = None) -> TradeWindow:
        """The last ``n`` trades of the instrument (default: all kept), oldest first, as numpy arrays."""
        return self.history(instrument_id).trades(n)

    # ------------------------------------------------------------------ timers

    def _timer_name(self, name: str) -> str:
        return f"{self.strategy_id}/{name}"

    def _fire(self, event: TimeEvent) -> None:
        name = event.name.partition("/")[2]
        self.on_timer(TimeEvent(name, event.ts_event, event.ts_init))

    def set_timer(
        self, name: str, interval: str | int, *, start_ns: int | None = None, stop_ns: int | None = None
    ) -> None:
        """Call :meth:`on_timer` every ``interval`` (``"15m"``, ``"1h"`` or int ns).

        The first firing is at ``start_ns + interval`` (default: now + interval), the last at or
        before ``stop_ns``. Names are per strategy (two strategies may both use ``"rebalance"``).

        Raises
        ------
        ConfigError
            If the interval is not a positive duration or the name is taken.
        """
        self.ctx.clock.set_timer(self._timer_name(name), duration_ns(interval, "timer interval"), self._fire, start_ns, stop_ns)

    def set_alert(self, name: str, at_ns: int) -> None:
        """Call :meth:`on_timer` once at ``at_ns`` (ns since the epoch)."""
        self.ctx.clock.set_alert(self._timer_name(name), at_ns, self._fire)

    def cancel_timer(self, name: str) -> None:
        """Cancel a timer or alert of this strategy (no error if unknown)."""
        self.ctx.clock.cancel(self._timer_name(name))

    # ------------------------------------------------------------------ sizing

    def _price(self, instrument_id: str, price: float | None) -> float:
        px = self.ctx.cache.price(instrument_id) if price is None else price
        if not (px > 0 and math.isfinite(px)):
            raise OrderError(f"{self.strategy_id}: no usable price for {instrument_id} to size an order (got {px!r})")
        return px

    def quantity_for_notional(self, instrument_id: str, notional: float, price: float | None = None) -> float:
        """Order quantity worth ``notional`` (quote currency) at ``price`` (default: latest), whole lots down.

        In the instrument's order units: base units, or contracts for a contract instrument, whose
        unit is worth ``price * contract_size``.
        """
        self._check_finite("notional", notional)
        instrument = self.ctx.instruments[instrument_id]
        unit = self._price(instrument_id, price) * instrument.contract_size
        return _round_lots(instrument, abs(notional) / unit)

    def quantity_for_weight(self, instrument_id: str, weight: float, price: float | None = None) -> float:
        """Order quantity (units as :meth:`quantity_for_notional`) worth ``|weight|`` of the equity (``0.5``: half)."""
        self._check_finite("weight", weight)
        return self.quantity_for_notional(instrument_id, abs(weight) * self.ctx.equity(), price)

    def quantity_for_risk(
        self,
        instrument_id: str,
        entry: float,
        stop: float,
        *,
        risk: float | None = None,
        risk_fraction: float | None = None,
    ) -> float:
        """Order quantity (units as :meth:`quantity_for_notional`) losing ``risk`` (quote) or ``risk_fraction`` of equity at the stop.

        ``quantity = risk / |entry - stop|`` (per contract: times the contract size), whole lots down.

        Raises
        ------
        OrderError
            If not exactly one of ``risk`` and ``risk_fraction`` is given, or entry equals stop.
        """
        if (risk is None) == (risk_fraction is None):
            raise OrderError(f"{self.strategy_id}: give exactly one of risk and risk_fraction")
        distance = abs(entry - stop)
        if not (distance > 0 and math.isfinite(distance)):
            raise OrderError(f"{self.strategy_id}: entry {entry!r} and stop {stop!r} must differ")
        amount = risk if risk is not None else risk_fraction * self.ctx.equity()  # type: ignore[operator]
        self._check_finite("risk" if risk is not None else "risk_fraction * equity", amount)
        instrument = self.ctx.instruments[instrument_id]
        return _round_lots(instrument, abs(amount) / (distance * instrument.contract_size))

    def target_weight(self, instrument_id: str, weight: float, *, reason: str = "") -> str | None:
        """Move the position to ``weight`` of equity (signed) with :meth:`target_position`."""
        quantity = self.quantity_for_weight(instrument_id, weight)
        return self.target_position(instrument_id, math.copysign(quantity, weight), reason=reason)

    # ------------------------------------------------------------------ orders

    def submit_market(
        self,
        instrument_id: str,
        side: OrderSide,
        quantity: float,
        *,
        reduce_only: bool = False,
        time_in_force: TimeInForce = TimeInForce.GTC,
        reason: str = "",
        parent: str = "",
    ) -> str:
        """Submit a market order; returns its client order id.

        The outcome arrives as events: ``on_order_denied`` if the risk gate
        refuses it, otherwise ``on_order_submitted`` / ``on_order_accepted`` /
        ``on_order_filled`` (or ``on_order_rejected``); a side that is no ``OrderSide`` (``"BUY"``,
        ``1``) or a quantity that is not a positive finite number (``-0.01``, ``0``, NaN) raises an
        ``OrderError``, as a limit or trigger price that is not does, and a ``time_in_force`` that is no
        ``TimeInForce`` or its value (``"gtc"``, ``"GTD"``) (a quantity off the lot grid is the
        instrument's to deny). ``parent``: the name of the
        execution algorithm sending it as its child (:mod:`tradebus.strategies.algos` sets it;
        a restart ends the algorithm's children with it, :mod:`tradebus.strategies.algo_recovery`).
        """
        return self._submit(
            instrument_id, side, quantity, _MARKET, _NAN, _NAN, time_in_force, False, reduce_only, reason, parent
        )

    def submit_limit(
        self,
        instrument_id: str,
        side: OrderSide,
        quantity: float,
        price: float,
        *,
        post_only: bool = False,
        reduce_only: bool = False,
        time_in_force: TimeInForce = TimeInForce.GTC,
        reason: str = "",
        parent: str = "",
    ) -> str:
        """Submit a limit order at ``price``; returns its client order id (``parent``: see :meth:`submit_market`)."""
        if not (price > 0 and math.isfinite(price)):
            raise OrderError(f"{self.strategy_id}: limit price must be a positive finite number, got {price!r}")
        return self._submit(
            instrument_id, side, quantity, OrderType.LIMIT, price, _NAN, time_in_force, post_only, reduce_only, reason,
            parent,
        )

    def submit_stop(
        self,
        instrument_id: str,
        side: OrderSide,
        quantity: float,
        trigger_price: float,
        *,
        limit_price: float | None = None,
        post_only: bool = False,
        reduce_only: bool = False,
        time_in_force: TimeInForce = TimeInForce.GTC,
        reason: str = "",
    ) -> str:
        """Submit a stop-market order (or stop-limit if ``limit_price`` is given); returns its id.

        ``post_only`` (a stop-limit only): its limit never takes liquidity; the simulated venue expires it
        at its trigger if it would (:mod:`tradebus.execution.simulated`). Of the live venues Bybit takes
        it (``timeInForce=PostOnly``); the Binance and OKX adapters reject it (``VenueRejected``) before sending. A post-only stop without
        ``limit_price`` raises an ``OrderError`` (a stop-market always takes).
        """
        if not (trigger_price > 0 and math.isfinite(trigger_price)):
            raise OrderError(
                f"{self.strategy_id}: trigger price must be a positive finite number, got {trigger_price!r}"
            )
        if post_only and limit_price is None:
            raise OrderError(f"{self.strategy_id}: post_only needs a limit_price (a stop-market order always takes)")
        order_type = OrderType.STOP_MARKET if limit_price is None else OrderType.STOP_LIMIT
        price = _NAN if limit_price is None else limit_price
        return self._submit(
            instrument_id, side, quantity, order_type, price, trigger_price, time_in_force, post_only, reduce_only,
            reason,
        )

    # Contingent orders (:mod:`tradebus.execution.contingent`): set ``contingent = True`` on the class.

    def _contingent(self) -> ContingentOrders:
        contingent = self.kernel.contingent
        if contingent is None:
            raise OrderError(
                f"{self.strategy_id}: brackets, OCO, trailing stops and GTD orders need `contingent = True` "
                f"on the strategy class {type(self).__name__}"
            )
        return contingent

    def submit_bracket(self, instrument_id: str, side: OrderSide, quantity: float, **options: Any) -> str | None:
        """Submit a bracket: entry (market, or limit at ``entry_price``) with ``stop_loss`` and ``take_profit``.

        Options (:meth:`ContingentOrders.bracket`): ``entry_price``, ``stop_loss``,
        ``take_profit``, ``trail_offset`` / ``trail_percent``, ``arm_after_bars``,
        ``exit_after_bars`` / ``exit_after_ns``, ``cooldown_bars``, ``reason`` (the entry's; ``""``:
        ``"bracket entry"``). Returns the entry's id, or ``None`` while a cooldown refuses new brackets.
        """
        from tradebus.execution.contingent import ContingentOrders

        self._check_order(side, quantity)
        # raised here, not as Python's TypeError at the call below: the error names the user's line
        takes = _keywords(ContingentOrders.bracket)
        unknown = [name for name in options if name not in takes]
        if unknown:
            close = difflib.get_close_matches(unknown[0], takes, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise OrderError(f"{self.strategy_id}: submit_bracket takes no keyword {unknown[0]!r}{hint}; "
                             f"it takes {', '.join(takes)}")
        return self._contingent().bracket(self.strategy_id, instrument_id, side, quantity, **options)

    def submit_oco(self, orders: Sequence[str | OrderSpec]) -> list[str]:
        """Make orders of this strategy one-cancels-the-other; returns their client order ids.

        Each member is the id of a working order or an :class:`~tradebus.execution.contingent.OrderSpec`
        to submit. Specs are submitted after the group is linked, so the risk gate and the cash
        account check each against the group counted once (its largest member): a stop and a limit
        that both sell the whole position pass in REDUCING and on a cash-only spot instrument,
        where orders submitted first and linked after are checked as if both could fill.

        A member denied by the risk gate or rejected by the venue at its submit (a start-up
        reconciliation, a tripped breaker, a limit) is left out with a warning; the others are
        linked if two or more work, a lone one stays a plain order. The ids returned include it.

        Raises
        ------
        OrderError
            An id given twice, of no order, of an order that worked and no longer does (filled,
            canceled, expired), of one already in an OCO group (a bracket's exits are one) or of
            another strategy (and the refusals of
            :meth:`ContingentOrders.oco <tradebus.execution.contingent.ContingentOrders.oco>`), or a
            spec's side that is no ``OrderSide``, quantity that is not a positive finite number or
            ``time_in_force`` that is no ``TimeInForce`` (as at :meth:`submit_limit`; nothing is sent).
        """
        members: list[str | OrderSpec] = []
        for spec in orders:
            if not isinstance(spec, str):
                self._check_order(spec.side, spec.quantity)
                if spec.time_in_force is not _GTC:  # sent as the member, as _submit sends it
                    spec = dataclasses.replace(spec, time_in_force=self._time_in_force(spec.time_in_force))
            members.append(spec)
        return self._contingent().oco(members, self.strategy_id)

    def submit_trailing_stop(
        self,
        instrument_id: str,
        side: OrderSide,
        quantity: float,
        *,
        offset: float | None = None,
        percent: float | None = None,
        reduce_only: bool | None = None,
        reason: str = "",
    ) -> str:
        """Submit a stop-market whose trigger trails the best price by ``offset`` or ``percent``.

        ``reduce_only`` defaults to reduce-only except on a cash-only spot instrument (spot venues
        have no reduce-only orders and refuse them; the cash account never sells more than it holds),
        as for a bracket's exits. ``reason``: its submit reason (``""``: ``"trailing stop"``).
        """
        self._check_order(side, quantity)
        return self._contingent().trailing_stop(
            self.strategy_id, instrument_id, side, quantity, offset=offset, percent=percent,
            reduce_only=reduce_only, reason=reason,
        )

    def submit_gtd(self, client_order_id: str, expire_ns: int) -> None:
        """Make a working order good-till-date: it ends at ``expire_ns`` (a simulated venue expires it
        then on its own clock, whatever the latency; see :mod:`tradebus.execution.contingent`)."""
        self._contingent().gtd(client_order_id, expire_ns)

    def cancel(self, client_order_id: str, reason: str = "") -> None:
        """Ask the venue to cancel one of this strategy's working orders."""
        kernel = self.kernel
        order = kernel.orders.order(client_order_id)
        now = kernel.clock.now_ns()
        kernel.cancel(CancelOrder(self.strategy_id, order.instrument_id, client_order_id, now, now, reason))

    def modify(
        self,
        client_order_id: str,
        *,
        quantity: float | None = None,
        price: float | None = None,
        trigger_price: float | None = None,
    ) -> None:
        """Ask the venue to change a working order's quantity, limit price or trigger (``None``: unchanged).

        The outcome arrives as ``on_order_modified``, or ``on_order_modify_rejected`` when the
        venue does not apply it (the order no longer works, the new quantity is not above what
        has filled, a bad price, a post-only price that would take) and ``on_order_denied`` when
        the risk gate refuses it (reason ``"modify: ..."``), the order is another strategy's, or it
        raises an OCO member above its group (reason ``"modify: OCO: ..."``,
        :meth:`ContingentOrders.refused_raise <tradebus.execution.contingent.ContingentOrders.refused_raise>`).
        A refused modification leaves the order working as it was. A quantity, price or trigger given
        that is not a positive finite number raises an ``OrderError``, as at :meth:`submit_limit`.
        """
        for name, value in (("quantity", quantity), ("price", price), ("trigger_price", trigger_price)):
            if value is not None and not 0.0 < value < _INF:
                raise OrderError(f"{self.strategy_id}: modify {name} must be a positive finite number, got {value!r}")
        ctx = self.ctx
        order = ctx.orders.order(client_order_id)
        now = ctx.clock.now_ns()
        ctx.modify(
            ModifyOrder(
                self.strategy_id,
                order.instrument_id,
                client_order_id,
                now,
                now,
                _NAN if quantity is None else quantity,
                _NAN if price is None else price,
                _NAN if trigger_price is None else trigger_price,
            )
        )

    def cancel_all(self, instrument_id: str | None = None, reason: str = "") -> int:
        """Cancel every working order of this strategy (on one instrument if given); returns the count."""
        orders = [o for o in self.kernel.orders.open_orders(instrument_id) if o.strategy_id == self.strategy_id]
        for order in orders:
            self.cancel(order.client_order_id, reason)
        return len(orders)

    def pending_quantity(self, instrument_id: str | None = None) -> float:
        """Signed unfilled quantity of this strategy's working market orders on the instrument.

        Limit and stop orders are not counted: they may never fill.
        """
        orders = (self._kernel or self.kernel).orders
        if not orders.count_open():
            return 0.0
        pending = 0.0
        for order in orders.open_orders(instrument_id or self.instrument_id):
            if order.strategy_id == self.strategy_id and order.order_type is _MARKET:
                pending += int(order.side) * (order.quantity - order.filled_qty)
        return pending

    def target_position(self, instrument_id: str, target: float, *, reason: str = "") -> str | None:
        """Submit the market order that moves the position to ``target`` (signed).

        The position is this strategy's own (see :meth:`position`). Working market orders
        of this strategy count as if filled, so calling this
        again before they fill does not double the order. The difference is
        rounded down to whole lots; returns the client order id, or ``None`` when
        no order is needed. While the risk gate is REDUCING, the order is cut to what the gate
        lets through (:meth:`RiskGate.reducing_room <tradebus.risk.gate.RiskGate.reducing_room>`):
        the part that reduces the instrument's net position, every strategy's, without flipping
        it. Alone on the instrument a reversal is sent as its close: the position goes flat, not
        to the other side; beside another strategy's long a reversal of a long may pass whole.
        An order nothing of which would pass is sent whole, for the gate to deny with its reason.
        A ``target`` that is not a finite number (NaN, inf) raises an ``OrderError``, as do a ``notional``,
        ``weight`` or risk amount that is not one in the ``quantity_for_*`` sizers.
        """
        kernel = self._kernel or self.kernel
        instrument = kernel.instruments.get(instrument_id)
        if instrument is None:
            raise OrderError(f"{self.strategy_id}: unknown instrument {instrument_id!r}")
        self._check_finite("target", target)
        delta = target - kernel.position(self.strategy_id, instrument_id)
        if kernel.orders.count_open():
            delta -= self.pending_quantity(instrument_id)
        quantity = _round_lots(instrument, abs(delta))
        if quantity <= 0.0:
            return None
        if kernel.trading_state() is _REDUCING:
            room = kernel.reducing_room(instrument_id, delta > 0.0)
            if 0.0 < room < abs(delta):  # only what reduces the net position may pass the gate
                quantity = _round_lots(instrument, room)
                if quantity <= 0.0:
                    return None
        side = _BUY if delta > 0 else _SELL
        return self._submit(
            instrument_id, side, quantity, _MARKET, _NAN, _NAN, _GTC, False, False, reason
        )

    def _check_finite(self, what: str, value: float) -> None:
        """Raise the ``OrderError`` of a size input that is not a finite number (NaN, inf, a str)."""
        kind = type(value)
        if (kind is float or kind is int) and value - value == 0.0:  # the common cases, without the ABC check (~0.6 us)
            return
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            raise OrderError(f"{self.strategy_id}: {what} must be a finite number, got {value!r}")

    def _check_order(self, side: OrderSide, quantity: float) -> None:
        """Raise the ``OrderError`` of a side that is no ``OrderSide`` or a quantity that is not a positive
        finite number (a caller's slip)."""
        if side is not _BUY and side is not _SELL:
            raise OrderError(f"{self.strategy_id}: side must be OrderSide.BUY or OrderSide.SELL, got {side!r}")
        if not 0.0 < quantity < _INF:
            raise OrderError(f"{self.strategy_id}: quantity must be a positive finite number, got {quantity!r}")

    def _time_in_force(self, value: object) -> TimeInForce:
        """``value`` as a ``TimeInForce`` (a member, or its value as a str: ``"IOC"``); an ``OrderError``
        otherwise (``"gtc"``, ``"GTD"``: the simulated venue took any value but GTC as IOC)."""
        try:
            return TimeInForce(value)
        except ValueError:
            raise OrderError(
                f"{self.strategy_id}: time_in_force must be TimeInForce.GTC, IOC or FOK (good-till-date: "
                f"submit_gtd), got {value!r}"
            ) from None

    def _submit(
        self,
        instrument_id: str,
        side: OrderSide,
        quantity: float,
        order_type: OrderType,
        price: float,
        trigger_price: float,
        time_in_force: TimeInForce,
        post_only: bool,
        reduce_only: bool,
        reason: str,
        parent: str = "",
    ) -> str:
        kernel = self._kernel or self.kernel  # the property raises when not attached
        if instrument_id not in kernel.instruments:
            raise OrderError(f"{self.strategy_id}: unknown instrument {instrument_id!r}")
        if (side is not _BUY and side is not _SELL) or not 0.0 < quantity < _INF:
            self._check_order(side, quantity)
        if time_in_force is not _GTC:
            time_in_force = self._time_in_force(time_in_force)
        now = kernel.clock.now_ns()
        client_order_id = kernel.orders.client_ids.next(self.strategy_id)
        kernel.submit(
            SubmitOrder(
                self.strategy_id,
                instrument_id,
                client_order_id,
                side,
                quantity,
                now,
                now,
                order_type,
                price,
                trigger_price,
                time_in_force,
                post_only,
                reduce_only,
                reason,
                parent,
            )
        )
        return client_order_id


#: Attribute set on a data handler by :func:`feature_only`.
FEATURE_ONLY = "_tradebus_feature_only"


def feature_only(handler: Any) -> Any:
    """Declare a data handler that reads neither its message nor the cache's latest bar or trade.

    Such a handler decides from features, the clock, positions and orders only (EmaCross
    decides from two EMA columns). The backtest loop may then call it with ``None`` and build
    a bar or trade object only when something needs one (the simulated venue while an order
    works, an order's catch-up, a timer, the end of a batch). The declaration belongs to the
    function: a subclass that overrides the handler without redeclaring it gets every message.

    On an order-event handler (``on_order_denied`` ...) it declares that the handler reads no
    cached bar or trade (its event it does read): the several-instrument loop then need not put
    every instrument's latest bar in the cache before such an event.
    """
    setattr(handler, FEATURE_ONLY, True)
    return handler


def is_feature_only(handler: Any) -> bool:
    """Whether ``handler`` (a function or bound method) was declared with :func:`feature_only`."""
    return bool(getattr(getattr(handler, "__func__", handler), FEATURE_ONLY, False))


#: Attribute set on a feature-only data handler by :func:`wakes_at`.
WAKE_ROWS = "_tradebus_wake_rows"

def wakes_at(rows: Callable[[Any, str, np.ndarray], np.ndarray | None]) -> Callable[[Any], Any]:
    """Declare the rows of a batch at which a :func:`feature_only` data handler may act.

    ``rows(strategy, instrument_id, features)`` receives the feature rows of a run of the
    instrument's messages that the backtest loop is about to deliver (one row per message, the
    columns of the instrument's feature view) and returns the indices, ascending, of the rows
    at which the handler may do anything (``None``: any row). At every other row the handler
    must return at once, changing nothing. The loop asks once per run of messages, so the
    answer may depend on the strategy's state only where that state changes in the handler
    itself. The lean trade and bar loops then neither call the handler at the other rows nor
    visit them while nothing else is due there (:meth:`EmaCross.on_bar
    <tradebus.strategies.ema_cross.EmaCross.on_bar>` acts only where the relation of its EMAs
    is set or flips). Like :func:`feature_only`, the declaration belongs to the function.
    """

    def declare(handler: Any) -> Any:
        setattr(handler, WAKE_ROWS, rows)
        return handler

    return declare


def wake_rows(handler: Any, instrument_id: str, features: np.ndarray) -> np.ndarray | None:
    """The rows of ``features`` at which the bound feature-only ``handler`` may act (see :func:`wakes_at`).

    ``None``: any row (no declaration, or the handler's own answer).
    """
    rows = getattr(getattr(handler, "__func__", handler), WAKE_ROWS, None)
    owner = getattr(handler, "__self__", None)
    if rows is None or owner is None or not is_feature_only(handler):
        return None
    return rows(owner, instrument_id, features)  # type: ignore[no-any-return]


@functools.cache
def _keywords(method: Callable[..., Any]) -> tuple[str, ...]:
    """The keyword-only parameters of ``method``, in order."""
    return tuple(name for name, p in inspect.signature(method).parameters.items() if p.kind is p.KEYWORD_ONLY)


def duration_ns(value: str | int, what: str = "duration") -> int:
    """``"15m"``, ``"1h"``, ``"1d"`` or int ns as int ns.

    Raises
    ------
    ConfigError
        ``"<what>: ..."`` if the value is not a positive duration.
    """
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise ConfigError(f"{what}: {exc}") from None


@functools.lru_cache(maxsize=4096)
def _round_lots(instrument: Instrument, quantity: float) -> float:
    """``instrument.round_quantity`` memoised: strategies keep asking for the same sizes."""
    return instrument.round_quantity(quantity)


class StrategyEntry(Protocol):
    """One strategy of a run config (``strategy:`` or an item of ``strategies:``)."""

    name: str
    id: str | None
    instruments: list[str]
    params: dict[str, Any]


def build_strategies(entries: Sequence[StrategyEntry], base: Path | None = None) -> list[Strategy]:
    """The strategies of a validated run config, built from their entries in order."""
    strategies = []
    for entry in entries:
        cls = resolve_strategy(entry.name, base)
        params = cls.validate_params(entry.params)
        strategies.append(cls.from_params(entry.instruments, params, entry.id))
    return strategies


def resolve_strategy(name: str, base: Path | None = None) -> type[Strategy]:
    """The strategy class for a built-in name (``"ema_cross"``) or ``"package.module:Class"``.

    A module that is not importable from ``sys.path`` is looked up relative to ``base``
    (the directory of the run config), so ``mystrats.trend:Breakout`` next to a config
    works without setting ``PYTHONPATH``: ``base`` is appended to ``sys.path`` for that.

    Raises
    ------
    ConfigError
        If the name is unknown, the module cannot be imported (not found, or its own code
        raised: a syntax error, named with its file and line) or the object is not a
        :class:`Strategy` subclass.
    """
    target = BUILTIN_STRATEGIES.get(name, name)
    if ":" not in target:
        known = ", ".join(sorted(BUILTIN_STRATEGIES))
        raise ConfigError(f"unknown strategy {name!r}; built-in: {known}, or give 'package.module:Class'")
    module_name, _, attr = target.partition(":")
    try:
        module = _import_strategy_module(module_name, base)
    except ImportError as exc:
        where = f" (looked in sys.path and {base})" if base is not None else ""
        raise ConfigError(f"strategy {name!r}: cannot import module {module_name!r}{where} ({exc})") from None
    except Exception as exc:  # the module's own code: a syntax error, a name error at import time
        raise ConfigError(
            f"strategy {name!r}: importing module {module_name!r} raised {type(exc).__name__}: {_import_failure(exc)}"
        ) from exc
    cls: Any = getattr(module, attr, None)
    if cls is None:
        found = sorted(
            key for key, value in vars(module).items()
            if isinstance(value, type) and issubclass(value, Strategy) and value.__module__ == module.__name__
        )
        close = difflib.get_close_matches(attr, found, n=1) or difflib.get_close_matches(attr.lower(), found, n=1, cutoff=0.0)
        hint = f"; did you mean {module_name}:{close[0]}?" if close else ""
        listed = ", ".join(found) if found else "none"
        raise ConfigError(
            f"strategy {name!r}: module {module_name!r} has no {attr!r} (its strategies: {listed}){hint}"
        )
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise ConfigError(f"strategy {name!r}: {target!r} is not a Strategy subclass")
    return cls


def _import_failure(exc: Exception) -> str:
    """An exception a strategy module raised on import, with the line: a syntax error's, else the innermost frame's."""
    if isinstance(exc, SyntaxError):
        return f"{exc.msg} (at {exc.filename}:{exc.lineno})"
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    where = "" if tb is None else f" (at {tb.tb_frame.f_code.co_filename}:{tb.tb_lineno})"
    return f"{exc}{where}"


def strategy_module_dir(name: str) -> Path | None:
    """The directory a ``"package.module:Class"`` strategy's top-level package or module was imported from.

    ``None`` for a built-in name, or a module not imported yet (:func:`resolve_strategy` imports it).
    """
    spec = _top_spec(name)
    if spec is None:
        return None
    if spec.submodule_search_locations:  # a package (a namespace package has no __init__.py)
        return Path(next(iter(spec.submodule_search_locations))).resolve().parent
    return Path(spec.origin).resolve().parent if spec.origin is not None and spec.has_location else None


def strategy_source_files(name: str) -> list[Path]:
    """The Python files of a ``"package.module:Class"`` strategy's top-level package, or its module's file.

    Sorted; empty for a built-in name or a module not imported yet (:func:`resolve_strategy` imports it).
    """
    spec = _top_spec(name)
    if spec is None:
        return []
    if spec.submodule_search_locations:
        return sorted({p.resolve() for folder in spec.submodule_search_locations for p in Path(folder).rglob("*.py")})
    return [Path(spec.origin).resolve()] if spec.origin is not None and spec.has_location else []


def _top_spec(name: str) -> Any:
    """The module spec of a ``"package.module:Class"`` strategy's top-level package or module, if imported."""
    target = BUILTIN_STRATEGIES.get(name, name)
    if name in BUILTIN_STRATEGIES or ":" not in target:
        return None
    top = sys.modules.get(target.partition(":")[0].partition(".")[0])
    return None if top is None else top.__spec__


def _import_strategy_module(module_name: str, base: Path | None) -> ModuleType:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        top = module_name.partition(".")[0]
        if base is None or exc.name is None or exc.name.partition(".")[0] != top:
            raise
        if not ((base / top).is_dir() or (base / f"{top}.py").is_file()):
            raise
        folder = str(base.resolve())
        if folder not in sys.path:
            sys.path.append(folder)
        importlib.invalidate_caches()
        return importlib.import_module(module_name)
