"""Pre-trade risk gate v1: order limits, trading state and a drawdown breaker.

:meth:`RiskGate.check` returns ``None`` for an order that may go to the venue, or the reason
it is denied, always in the form ``"<check>: <what> <op> <limit>"`` (for example
``"max_order_notional: 12500.0 > 10000.0"``). Checks, in order:

1. ``trading_state``: HALTED denies everything; REDUCING allows only an order that reduces the
   absolute position without flipping it.
2. ``instrument``: unknown instrument; quantity/price against the instrument's lot size, tick
   size, minimum quantity and minimum notional (:meth:`Instrument.validate_order`; market orders
   are valued at the last price for the minimum notional).
   Then ``buying_power``: the account's :meth:`~tradebus.account.Account.check_order` (the
   free balance of the asset the order spends, counting working orders).
3. ``max_order_quantity``, ``max_order_notional`` (price: limit, else trigger, else last price).
4. ``max_position``: absolute position after the order would fill completely.
5. ``price_band``: limit and trigger prices within ``price_band_pct`` of the last price.
6. ``max_open_orders``, then ``max_order_rate`` (sliding window on the injected clock; only
   orders that pass every check count).

The trading state changes through :meth:`RiskGate.set_state` (manual) or the drawdown breaker
(evaluated by :meth:`RiskGate.on_price` on every mark); each change publishes
``TradingStateChanged`` with its reason. The breaker only tightens the state; going back to
ACTIVE is a deliberate ``set_state`` call.
"""

from __future__ import annotations

import math
from collections import deque

from loguru import logger

from tradebus.engine.bus import MessageBus
from tradebus.engine.clock import Clock
from tradebus.engine.messages import OrderType, SubmitOrder, TradingState, TradingStateChanged
from tradebus.engine.instrument import Instrument
from tradebus.engine.portfolio import Portfolio, Position
from tradebus.risk.config import RiskConfig

__all__ = ["RiskGate"]

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


class RiskGate:
    """Checks every order before it leaves the process and owns the trading state.

    Parameters
    ----------
    config
        :class:`RiskConfig` limits (frozen; read once here).
    portfolio
        Source of positions, equity and the instruments.
    clock
        Injected clock (order-rate window, event timestamps).
    bus
        Where ``TradingStateChanged`` is published.
    """

    __slots__ = (
        "_band",
        "_bus",
        "_clock",
        "_config",
        "_dd_limit",
        "_dd_state",
        "_last",
        "_limited",
        "_max_notional",
        "_max_open",
        "_max_position",
        "_max_quantity",
        "_max_rate",
        "_portfolio",
        "_rate",
        "_rate_window",
        "_specs",
        "instruments",
        "state",
    )

    def __init__(self, config: RiskConfig, portfolio: Portfolio, clock: Clock, bus: MessageBus) -> None:
        self._config = config
        self._portfolio = portfolio
        self._clock = clock
        self._bus = bus
        self.instruments = portfolio.instruments
        self.state = TradingState.ACTIVE
        self._last: dict[str, float] = {}
        self._rate: deque[int] = deque()
        # instrument_id -> (instrument, its live position record, lot size, minimum quantity)
        self._specs: dict[str, tuple[Instrument, Position, float, float]] = {}
        self._max_quantity = config.max_order_quantity
        self._max_notional = config.max_order_notional
        self._max_position = config.max_position
        self._band = config.price_band_pct
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
                self._max_open,
                self._max_rate,
            )
        )
        self._dd_limit = None if config.max_drawdown_pct is None else config.max_drawdown_pct / 100.0
        self._dd_state = TradingState.HALTED if config.drawdown_action == "halt" else TradingState.REDUCING

    @property
    def config(self) -> RiskConfig:
        """The limits (read-only: the gate keeps its own copy of each)."""
        return self._config

    # -------------------------------------------------------------------- checks

    def check(self, cmd: SubmitOrder, open_orders: int = 0) -> str | None:
        """Why ``cmd`` must be denied, or ``None`` if it may be sent.

        Parameters
        ----------
        cmd
            The order to check.
        open_orders
            Number of orders currently open (for ``max_open_orders``).
        """
        iid = cmd.instrument_id
        qty = cmd.quantity
        signed = qty if cmd.side > 0 else -qty
        spec = self._specs.get(iid)
        if spec is None:
            spec = self._spec(iid)
        pos = self._portfolio.position(iid) if spec is None else spec[1].quantity
        state = self.state
        if state is not _ACTIVE:
            if state is _HALTED:
                return "trading_state: HALTED denies every order"
            if pos == 0.0 or (pos > 0.0) == (signed > 0.0) or abs(signed) > abs(pos) * (1.0 + 1e-9):
                return f"trading_state: REDUCING allows only reducing orders; position {pos}, order {signed}"
        if spec is None:
            return f"instrument: unknown instrument {iid!r}"
        inst, _, lot, minimum = spec
        typ = cmd.order_type
        last = self._last.get(iid, _NAN)
        if typ == _MARKET:
            # Instrument.validate_order(qty, nan) inline; it is asked for the reason when a check fails.
            if not (qty > 0.0 and qty < _INF and qty >= minimum - 1e-12) or abs(qty / lot - round(qty / lot)) > 1e-6:
                why = inst.validate_order(qty, _NAN)
                if why is not None:
                    return f"instrument: {why}"
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
            if min_notional > 0.0 and last == last and qty * last < min_notional - 1e-12:
                return f"instrument: notional {qty * last} at last price is below the minimum {min_notional}"
        why = self._portfolio.account.check_order(cmd, last)
        if why is not None:
            return why
        if self._limited:
            return self._check_limits(cmd, qty, signed, pos, px, last, open_orders)
        return None

    def _check_limits(
        self, cmd: SubmitOrder, qty: float, signed: float, pos: float, px: float, last: float, open_orders: int
    ) -> str | None:
        """The configured limits of :meth:`check` (steps 3 to 6), for an order that passed 1 and 2."""
        limit = self._max_quantity
        if limit is not None and qty > limit:
            return f"max_order_quantity: {qty} > {limit}"
        limit = self._max_notional
        if limit is not None:
            value_px = px if px == px else last
            if value_px != value_px:
                return f"max_order_notional: no price to value the order (no last price for {cmd.instrument_id})"
            notional = qty * value_px
            if notional > limit:
                return f"max_order_notional: {notional} > {limit}"
        limit = self._max_position
        if limit is not None:
            projected = abs(pos + signed)
            if projected > limit * (1.0 + 1e-9) and projected > abs(pos):
                return f"max_position: |{pos} + {signed}| = {projected} > {limit}"
        band = self._band
        if band is not None and cmd.order_type != _MARKET:
            if last != last:
                return f"price_band: no last price for {cmd.instrument_id}"
            for name, value in (("price", cmd.price), ("trigger_price", cmd.trigger_price)):
                if value == value:
                    dist = abs(value / last - 1.0) * 100.0
                    if dist > band:
                        return f"price_band: {name} {value} is {dist:.4g}% from last {last} > {band}%"
        max_open = self._max_open
        if max_open is not None and open_orders >= max_open:
            return f"max_open_orders: {open_orders} open >= {max_open}"
        max_rate = self._max_rate
        if max_rate is not None:
            now = self._clock.now_ns()
            rate = self._rate
            horizon = now - self._rate_window
            while rate and rate[0] <= horizon:
                rate.popleft()
            if len(rate) >= max_rate:
                return f"max_order_rate: {len(rate)} orders in {self._rate_window} ns >= {max_rate}"
            rate.append(now)
        return None

    def _spec(self, iid: str) -> tuple[Instrument, Position, float, float] | None:
        """The per-instrument constants of :meth:`check` (``None`` for an unknown instrument)."""
        inst = self.instruments.get(iid)
        if inst is None:
            return None
        spec = (inst, self._portfolio.position_state(iid), inst.lot_size, max(inst.min_quantity, inst.lot_size))
        self._specs[iid] = spec
        return spec

    # ------------------------------------------------------------ trading state

    def set_state(self, state: TradingState, reason: str) -> None:
        """Move to ``state`` (publishing ``TradingStateChanged``); no-op if already there."""
        if state is self.state:
            return
        logger.warning("risk: trading state {} -> {}: {}", self.state, state, reason)
        self.state = state
        now = self._clock.now_ns()
        self._bus.publish(TradingStateChanged(state, reason, now, now))

    def on_price(self, instrument_id: str, price: float) -> None:
        """Record the last price of an instrument and evaluate the breakers.

        The portfolio must already be marked at ``price`` (the execution engine does both).
        """
        if price > 0.0 and price < _INF:
            self._last[instrument_id] = price
        limit = self._dd_limit
        if limit is not None and _SEVERITY[self.state] < _SEVERITY[self._dd_state]:
            dd = self._portfolio.drawdown()
            if dd >= limit:
                self.set_state(
                    self._dd_state,
                    f"max_drawdown: {dd * 100.0:.4g}% >= {self._config.max_drawdown_pct}% "
                    f"(equity {self._portfolio.equity()}, peak {self._portfolio.max_equity})",
                )

    def last_price(self, instrument_id: str) -> float:
        """Last price seen by the gate (NaN if none)."""
        return self._last.get(instrument_id, math.nan)
