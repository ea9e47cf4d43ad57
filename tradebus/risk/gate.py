"""Pre-trade risk gate v1: order limits, trading state and a drawdown breaker.

:meth:`RiskGate.check` returns ``None`` for an order that may go to the venue, or the reason
it is denied, always in the form ``"<check>: <what> <op> <limit>"`` (for example
``"max_order_notional: 12500.0 > 10000.0"``). Checks, in order:

1. ``trading_state``: HALTED denies everything; REDUCING allows only an order that reduces the
   absolute position without flipping it.
2. ``instrument``: unknown instrument; quantity/price against the instrument's lot size, tick
   size, minimum quantity and minimum notional (:meth:`Instrument.validate_order`; market orders
   are valued at the last price for the minimum notional).
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
from tradebus.engine.portfolio import Portfolio
from tradebus.risk.config import RiskConfig

__all__ = ["RiskGate"]

_SEVERITY = {TradingState.ACTIVE: 0, TradingState.REDUCING: 1, TradingState.HALTED: 2}


class RiskGate:
    """Checks every order before it leaves the process and owns the trading state.

    Parameters
    ----------
    config
        :class:`RiskConfig` limits.
    portfolio
        Source of positions, equity and the instruments.
    clock
        Injected clock (order-rate window, event timestamps).
    bus
        Where ``TradingStateChanged`` is published.
    """

    __slots__ = (
        "_bus",
        "_clock",
        "_dd_limit",
        "_dd_state",
        "_last",
        "_portfolio",
        "_rate",
        "config",
        "instruments",
        "state",
    )

    def __init__(self, config: RiskConfig, portfolio: Portfolio, clock: Clock, bus: MessageBus) -> None:
        self.config = config
        self._portfolio = portfolio
        self._clock = clock
        self._bus = bus
        self.instruments = portfolio.instruments
        self.state = TradingState.ACTIVE
        self._last: dict[str, float] = {}
        self._rate: deque[int] = deque()
        self._dd_limit = None if config.max_drawdown_pct is None else config.max_drawdown_pct / 100.0
        self._dd_state = TradingState.HALTED if config.drawdown_action == "halt" else TradingState.REDUCING

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
        cfg = self.config
        iid = cmd.instrument_id
        qty = cmd.quantity
        signed = qty if cmd.side > 0 else -qty
        state = self.state
        pos = self._portfolio.position(iid)
        if state is not TradingState.ACTIVE:
            if state is TradingState.HALTED:
                return "trading_state: HALTED denies every order"
            if pos == 0.0 or (pos > 0.0) == (signed > 0.0) or abs(signed) > abs(pos) * (1.0 + 1e-9):
                return f"trading_state: REDUCING allows only reducing orders; position {pos}, order {signed}"
        inst = self.instruments.get(iid)
        if inst is None:
            return f"instrument: unknown instrument {iid!r}"
        typ = cmd.order_type
        last = self._last.get(iid, math.nan)
        if typ == OrderType.LIMIT or typ == OrderType.STOP_LIMIT:
            px = cmd.price
            if px != px:
                return f"instrument: {typ} order needs a limit price"
        elif typ == OrderType.STOP_MARKET:
            px = cmd.trigger_price
        else:
            px = math.nan
        if typ == OrderType.STOP_MARKET or typ == OrderType.STOP_LIMIT:
            trg = cmd.trigger_price
            if trg != trg:
                return f"instrument: {typ} order needs a trigger price"
            why = inst.validate_order(qty, trg)
            if why is not None:
                return f"instrument: trigger: {why}"
        why = inst.validate_order(qty, px)
        if why is not None:
            return f"instrument: {why}"
        value_px = px if px == px else last
        if px != px and inst.min_notional > 0.0 and last == last and qty * last < inst.min_notional - 1e-12:
            return f"instrument: notional {qty * last} at last price is below the minimum {inst.min_notional}"
        limit = cfg.max_order_quantity
        if limit is not None and qty > limit:
            return f"max_order_quantity: {qty} > {limit}"
        limit = cfg.max_order_notional
        if limit is not None:
            if value_px != value_px:
                return f"max_order_notional: no price to value the order (no last price for {iid})"
            notional = qty * value_px
            if notional > limit:
                return f"max_order_notional: {notional} > {limit}"
        limit = cfg.max_position
        if limit is not None:
            projected = abs(pos + signed)
            if projected > limit * (1.0 + 1e-9) and projected > abs(pos):
                return f"max_position: |{pos} + {signed}| = {projected} > {limit}"
        band = cfg.price_band_pct
        if band is not None and typ != OrderType.MARKET:
            if last != last:
                return f"price_band: no last price for {iid}"
            for name, value in (("price", cmd.price), ("trigger_price", cmd.trigger_price)):
                if value == value:
                    dist = abs(value / last - 1.0) * 100.0
                    if dist > band:
                        return f"price_band: {name} {value} is {dist:.4g}% from last {last} > {band}%"
        limit = cfg.max_open_orders
        if limit is not None and open_orders >= limit:
            return f"max_open_orders: {open_orders} open >= {limit}"
        limit = cfg.max_orders_per_window
        if limit is not None:
            now = self._clock.now_ns()
            rate = self._rate
            horizon = now - cfg.order_rate_window_ns
            while rate and rate[0] <= horizon:
                rate.popleft()
            if len(rate) >= limit:
                return f"max_order_rate: {len(rate)} orders in {cfg.order_rate_window_ns} ns >= {limit}"
            rate.append(now)
        return None

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
        if price > 0.0 and price < math.inf:
            self._last[instrument_id] = price
        limit = self._dd_limit
        if limit is not None and _SEVERITY[self.state] < _SEVERITY[self._dd_state]:
            dd = self._portfolio.drawdown()
            if dd >= limit:
                self.set_state(
                    self._dd_state,
                    f"max_drawdown: {dd * 100.0:.4g}% >= {self.config.max_drawdown_pct}% "
                    f"(equity {self._portfolio.equity()}, peak {self._portfolio.max_equity})",
                )

    def last_price(self, instrument_id: str) -> float:
        """Last price seen by the gate (NaN if none)."""
        return self._last.get(instrument_id, math.nan)
