"""The accelerated tier: a compiled bar simulator for strategies that declare a signal kernel.

A strategy that declares a :class:`~tradebus.strategies.signal_kernel.SignalKernel` (EmaCross,
MacdCross, BollingerReversion, RsiReversion) decides, at each bar's close, a target position
from its features. :func:`run_accelerated` runs such a backtest in one compiled loop instead of
:meth:`Kernel.run <tradebus.engine.kernel.Kernel.run>`, and produces the same
:class:`~tradebus.engine.kernel.RunResult`: the same fills (time, side, quantity, price, fee,
client order and trade ids), the same equity samples and the same metrics.

What it shares with the event tier
    * the features: the instrument's :class:`~tradebus.features.bank.FeatureBank`, built by the
      kernel from the same specs; the loop calls the bank's generated ``step_bar`` driver (``on_bar``
      writing only the bar fields its features read: the same step kernels, bit for bit) on the bank's
      own workspace, and writes the last bar's fields with ``write_bar`` at the end, so the workspace
      ends as ``on_bar`` leaves it;
    * the decision: the strategy's signal kernel, then the rule of
      :meth:`~tradebus.strategies.base.Strategy.target_position` (difference to the position,
      rounded down to whole lots);
    * the venue's rules for a market order on bars with no latency (:mod:`tradebus.execution.simulated`):
      decided at bar t's close, it fills at bar t+1's open, moved by the slippage model
      (:func:`~tradebus.execution.costs.slippage_bps`) against the trader, rounded onto the tick
      grid against the trader and clamped to the bar's range; taker fee on the notional;
    * the portfolio's accounting (:mod:`tradebus.engine.portfolio`: cash, netting position,
      average price, realised PnL) and the kernel's equity sampling (with the instrument's first price where
      the first sample's time holds several bars: :meth:`Kernel.shown_first_prices`). A margin spot position's
      liquidation check at each close runs only when the close leaves the band of marks where it
      cannot hold (``_safe_marks``, recomputed at each fill).

The loop runs its own copy of each rule, operation for operation, so the floats agree exactly
(``tests/engine/test_accelerated.py`` compares both tiers fill for fill on real data).

Breakers
    ``max_drawdown_pct``, ``max_daily_loss_pct`` (halt or reduce) and ``max_gross_exposure``
    (reduce) are evaluated where the kernel evaluates them: on the equity before the first bar
    of each later time (:meth:`Kernel.before_time`, at the clock of the time before) and at
    every order's check, as :meth:`Breakers.on_mark` does. ``max_consecutive_losses`` counts
    round trips at each fill, as :meth:`Breakers.on_position` does. While REDUCING a reversal is
    sent as its close alone, as :meth:`Strategy.target_position` sends it. The daily loss re-arms at
    the UTC day roll and the gross exposure once back within its limit; the others never re-arm
    within a run. A trip cancels nothing here (nor in the event tier on the same run): the loop's only
    order, a market order decided at a bar's close, passed a check that evaluated the breakers on the
    equity they see again before the next bar, whose open fills it, so no breaker trips while it works.

What it refuses (:func:`unsupported`, checked before the run)
    Several strategies or instruments, perpetuals, fee or margin tiers, borrowing interest
    (``annual_borrow_rates``), latency, a venue that does not fill on bars, ``max_open_orders:
    0``, initial holdings, trade bars, history windows, contingent orders, data other than bars. During the run, an order below the
    instrument's minimum quantity or off its lot grid, a quantity of so many lots that
    the instrument refuses (``n * m >= 2 ** 46``, see ``_EXACT_GRID``: 703,687.44 in lots of 1e-8), or a margin spot position that reaches its
    liquidation (within ``1e-9`` of the maintenance margin, at a close), stops it with
    :class:`AcceleratedUnsupported` (the instrument words the order's reason; the event tier
    liquidates the position): the event tier handles it (``tier: auto`` falls back to it).

Denials, unpaid fills and refused prices
    An order the risk gate or the account would deny (the trading state, minimum notional, buying
    power or a margin spot instrument's initial margin, ``max_order_quantity``,
    ``max_order_notional``, ``max_position``, ``max_gross_exposure``, the order rate, in the
    gate's order) is denied in the loop, and a fill the balance (or the margin) cannot pay
    cancels its order, as the venue does, and so does a slipped price the venue refuses (of so many ticks
    that ``n * m >= 2 ** 46``, 703,687.44 on a 1e-8 tick, or not positive; module docstring of
    :mod:`tradebus.execution.simulated`, "Prices"): :func:`collect` words their reasons with the gate's
    and the account's own functions, so the denials, statuses, reasons and ids equal the event
    tier's.

No lookahead
    Row ``i``'s features and decision use bars ``<= i`` only; the order fills on bar ``i + 1``.

The loop is generated per (bank structure, signal kernel, number of its parameters), written to the Numba cache
directory next to the bank drivers and compiled with ``cache=True``; its file name hashes its
source and the source file of the signal kernel, so editing a kernel or a helper in its module
compiles a new loop (an edit of a helper in another module is not seen).
"""

from __future__ import annotations

import hashlib
import inspect
import math
import sys
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from tradebus.account.margin import margin_reason
from tradebus.account.spot import asset_names, buying_power_reason, insufficient_balance_reason
from tradebus.engine.batch import rare_gc
from tradebus.engine.instrument import (
    EXACT_GRID,
    LOTS_RTOL,
    ROUNDING_RTOL,
    TICKS_RTOL,
    Instrument,
    exact_decimal,
    grid_of,
)
from tradebus.engine.kernel import EquitySample, FillRecord, Kernel, ReplayLike, RunResult
from tradebus.engine.messages import Liquidity, OrderDenied, OrderSide, OrderStatus, OrderType
from tradebus.errors import TradebusError
from tradebus.execution.orders import Order
from tradebus.execution.simulated import SimulatedVenue, slipped_price_reason
from tradebus.features import drivers
from tradebus.features.bank import FeatureBank
from tradebus.risk.breakers import DAY_NS
from tradebus.risk.config import LIMIT_RTOL
from tradebus.risk.gate import (
    HALTED_REASON,
    gross_equity_reason,
    gross_exposure_reason,
    max_notional_reason,
    max_position_reason,
    max_quantity_reason,
    min_notional_reason,
    order_rate_reason,
    reducing_reason,
)
from tradebus.strategies.base import Strategy
from tradebus.strategies.signal_kernel import SignalKernel, declared_kernel

__all__ = [
    "AcceleratedRun", "AcceleratedUnsupported", "BarArrays", "collect", "run_accelerated", "simulate", "unsupported",
]  # fmt: skip


class AcceleratedUnsupported(TradebusError):
    """The run needs something the accelerated tier does not model (the message says what)."""


# Status codes of the compiled loop.
_OK, _FULL, _INVALID, _UNORDERED, _LIQUIDATION = 0, 1, 2, 3, 4
# What became of an order (the loop's order_index[:, 3]): sent to the venue, denied by one of the
# checks of the risk gate or the account (in the gate's order), or canceled at its fill because
# the balance could not pay it or the venue refused its slipped price.
(_SENT, _MIN_NOTIONAL, _BUYING_POWER, _MAX_QUANTITY, _MAX_NOTIONAL, _MAX_POSITION, _UNPAID, _HALTED, _REDUCING,
 _MAX_GROSS, _MAX_RATE, _REFUSED) = range(12)  # fmt: skip
# Indices of the float configuration vector.
(_QTY, _LONG_ONLY, _ON_CHANGE, _LOT, _LOT_M, _LOT_SCALE, _TICK, _TICK_M, _TICK_SCALE, _MIN_QTY, _CFG_MIN_NOTIONAL,
 _CS, _TAKER, _SLIP, _BPS, _IMPACT, _EXPONENT, _K, _MAX_BPS, _CASH_ONLY, _BUFFER, _FEE_HOLD, _MAX_ORDER_QTY,
 _CFG_MAX_NOTIONAL, _CFG_MAX_POSITION, _CASH, _QUOTE, _BASE, _FLAT_EPS, _DRAWDOWN, _DRAWDOWN_ACTION, _DAILY_LOSS,
 _DAILY_LOSS_ACTION, _GROSS, _STREAK, _STREAK_ACTION, _LEVERAGE, _MAINTENANCE) = range(38)  # fmt: skip
_N_CFG = 38
# Trading states of the loop's breakers (the gate's is the most severe).
_ACTIVE_STATE, _REDUCING_STATE, _HALTED_STATE = 0.0, 1.0, 2.0
_SLIP_MODELS = {"fixed": 0.0, "volume": 1.0, "volatility": 2.0}
# Lots (ticks) times the grid's integer ``m`` from which the loop stops, as the instrument refuses
# such an order (:data:`~tradebus.engine.instrument.EXACT_GRID`): below, ``Instrument.round_*``'s
# ``round(n * increment, digits)`` is the loop's exact ``_grid``.
_EXACT_GRID = EXACT_GRID

_TEMPLATE = '''"""Accelerated-tier loop generated by tradebus.engine.accelerated: do not edit."""
# signal kernel source hash: {signal_hash}

import math

from numba import njit

from tradebus.features.kernels import window
from tradebus.features.drivers import write_bar
from {bank_module} import bar_table as _bar_table, step_bar as _step_bar
from {signal_module} import {signal_name} as _signal


@njit(cache=True, _nrt=False)
def _grid(x, m, scale):
    return float(x * m) / scale


@njit(cache=True, error_model="numpy", _nrt=False, inline="always")
def _equity(cash, pos, cs, last):
    # Portfolio.equity() of the one instrument.
    if pos != 0.0:
        return cash + pos * cs * last
    return cash


@njit(cache=True, error_model="numpy", _nrt=False, inline="always")
def _settle(balance, amount):
    # account.spot.settle: balance + amount, exactly 0.0 within float noise of zero.
    after = balance + amount
    if abs(after) <= {lots_rtol!r} * max(abs(balance), abs(amount)):
        return 0.0
    return after


@njit(cache=True, error_model="numpy", _nrt=False, inline="always")
def _short_of_margin(pos, signed, unit, leverage, cost, quote, cs, mark):
    # MarginAccount._margin_check of a margin spot instrument alone in the account, no other
    # order working: the opening part's initial margin plus the fee against the available balance.
    if pos == 0.0 or (pos > 0.0) == (signed > 0.0):
        opening = abs(signed)
    else:
        opening = max(0.0, abs(signed) - abs(pos))
    if opening <= 0.0:
        return False
    available = quote
    if pos != 0.0:
        available += pos * cs * mark
        margin = abs(pos) * (cs * mark) / leverage
        available -= margin
        if opening < abs(signed):  # a reversal releases the position's margin
            available += margin
    return opening * unit / leverage + cost - available > {lots_rtol!r} * abs(quote)  # account.spot.exceeds


@njit(cache=True, error_model="numpy", _nrt=False, inline="always")
def _trip_fall(fall):
    # Breakers._trip_fall of the limit as a fraction: a 100 % limit trips at an equity <= 0 only.
    return fall * (1.0 - {limit_rtol!r}) if fall < 1.0 else math.inf


@njit(cache=True, error_model="numpy", _nrt=False, inline="always")
def _safe_marks(cash_only, pos, quote, cs, maintenance):
    # The marks strictly between which the liquidation check at a close (in the loop) cannot hold
    # for this position and balance: that check is linear in the mark, and its root gets a margin
    # of 1e-6 of itself, far beyond the float error of either side (a few 1e-16 of the terms,
    # over 1 - maintenance >= 1e-3). Outside the band, or with no band (empty), the check runs.
    if cash_only or pos == 0.0:
        return -math.inf, math.inf
    size = abs(pos) * cs
    if pos > 0.0:
        keep = 1.0 - maintenance - 1e-9
        if not (keep > 1e-3 and size > 0.0):
            return math.inf, -math.inf
        below = -quote / (size * keep)  # liquidated at or below
        return below + abs(below) * 1e-6, math.inf
    keep = 1.0 + maintenance + 1e-9
    if not (keep > 1e-3 and size > 0.0):
        return math.inf, -math.inf
    above = quote / (size * keep)  # liquidated at or above
    return -math.inf, above - abs(above) * 1e-6


@njit(cache=True, error_model="numpy", _nrt=False, inline="always")
def _breakers(cash, pos, cs, last, now, peak, dd, day, start, dl, gx, dd_fall, dd_action, dl_fall, dl_action, gross):
    # Breakers.on_mark on Portfolio.equity(): the drawdown's and the daily loss's memory and the
    # three breakers' states (a daily loss re-arms at the UTC day roll, the gross exposure once
    # back within its limit, a drawdown never in a run).
    equity = _equity(cash, pos, cs, last)
    if dd_fall == dd_fall:
        if not peak >= equity:
            peak = equity
        if dd == {active} and peak > 0.0 and not (equity > 0.0 and (peak - equity) / peak < _trip_fall(dd_fall)):
            dd = dd_action
    if dl_fall == dl_fall:
        today = now // {day_ns}
        if today != day:
            day = today
            start = equity
            dl = {active}
        if dl == {active} and start > 0.0 and not (equity > 0.0 and (start - equity) / start < _trip_fall(dl_fall)):
            dl = dl_action
    if gross == gross:
        notional = abs(pos * cs * last) if pos != 0.0 else 0.0
        ratio = notional / equity if equity > 0.0 else math.inf
        gx = {reducing_state} if ratio > gross * (1.0 + {limit_rtol!r}) else {active}
    return peak, dd, day, start, dl, gx


@njit(cache=True, error_model="numpy", _nrt=False)
def simulate(ws, n_fields, n_cols, ts_event, ts_init, op, hi, lo, cl, vol, sparams, sstate, cfg, tcfg, rate,
             ord_i, ord_f, smp_i, smp_f):
    n = ts_init.shape[0]
    cap_orders = ord_i.shape[0]
    cap_samples = smp_i.shape[0]
    quantity = cfg[0]
    long_only = cfg[1] != 0.0
    on_change = cfg[2] != 0.0
    lot = cfg[3]
    tick = cfg[6]
    cs = cfg[11]
    taker = cfg[12]
    slip_model = cfg[13]
    cash_only = cfg[19] != 0.0
    leverage = cfg[36]
    maintenance = cfg[37]
    cash = cfg[25]
    quote = cfg[26]
    base = cfg[27]
    flat_eps = cfg[28]
    dd_fall = cfg[29] / 100.0
    dd_action = cfg[30]
    dl_fall = cfg[31] / 100.0
    dl_action = cfg[32]
    gross = cfg[33]
    streak_limit = cfg[34]
    streak_action = cfg[35]
    breaker = dd_fall == dd_fall or dl_fall == dl_fall or gross == gross
    peak = math.nan
    dd = {active}
    day = -1
    start = math.nan
    dl = {active}
    gx = {active}
    side_held = 0  # Breakers.on_position: the sign of the position in its round trip
    trip_start = 0.0
    streak = 0
    ls = {active}
    state = {active}  # the trading state an order's check saw
    interval = tcfg[0]
    next_sample = tcfg[1]
    rate_window = tcfg[2]
    max_rate = tcfg[3]  # 0: no order-rate limit; else rate holds the times of the orders in the window
    rate_head = 0
    n_rate = 0
    pos = 0.0
    avg = 0.0
    realized = 0.0
    fees = 0.0
    last = math.nan
    target = 0.0
    n_orders = 0
    n_fills = 0
    n_samples = 0
    pending = False
    safe_low, safe_high = -math.inf, math.inf  # _safe_marks of the position
    previous = ts_init[0] if n else 0
    table = _bar_table(ws)
    params = {params}  # read once: the loop writes ws and sstate, which an array of them might alias
    for i in range(n):
        t = ts_init[i]
        if t < previous:
            return {unordered}, n_orders, n_fills, n_samples, i
        if breaker and t != previous:  # Kernel.before_time: the previous time is complete (none before the first)
            peak, dd, day, start, dl, gx = _breakers(
                cash, pos, cs, last, previous, peak, dd, day, start, dl, gx, dd_fall, dd_action, dl_fall, dl_action,
                gross,
            )
        previous = t
        o = op[i]
        h = hi[i]
        l = lo[i]
        c = cl[i]
        v = vol[i]
        if pending:
            j = n_orders - 1
            side = ord_i[j, 1]
            qty = ord_f[j, 0]
            px = o
            moved = o
            if slip_model >= 0.0:
                if slip_model == 0.0:
                    bps = cfg[14]
                elif slip_model == 1.0:
                    if not v > 0.0:
                        bps = cfg[18]
                    else:
                        bps = min(cfg[14] + cfg[15] * (qty / v) ** cfg[16], cfg[18])
                else:
                    bps = cfg[14] + cfg[17] * (h - l) / o * 10_000.0 if o > 0.0 else cfg[18]
                    bps = min(bps, cfg[18])
                slip = bps * 1e-4
                moved = px * (1.0 + slip) if side > 0 else px * (1.0 - slip)
                ticks = moved * cfg[8] / cfg[7]
                if not abs(moved / tick) * cfg[7] < {exact!r}:  # Instrument.round_price_* may keep float noise there
                    px = math.nan
                elif side > 0:
                    px = min(_grid(math.ceil(ticks - min(max(1e-9, abs(ticks) * {ticks_rtol!r}), max(1e-3, abs(ticks) * {rounding_rtol!r}))), cfg[7], cfg[8]), h)
                else:
                    px = max(_grid(math.floor(ticks + min(max(1e-9, abs(ticks) * {ticks_rtol!r}), max(1e-3, abs(ticks) * {rounding_rtol!r}))), cfg[7], cfg[8]), l)
            notional = qty * cs * px
            fee = notional * taker
            pending = False
            ord_i[j, 2] = i
            ord_f[j, 2] = px
            ord_f[j, 3] = fee
            if slip_model >= 0.0 and not px > 0.0:
                # SimulatedVenue._slipped: a slipped price it cannot round exactly, or not positive, cancels the order.
                ord_i[j, 3] = {refused}
                ord_f[j, 6] = moved
            # The account's check at fill time: a fill the balance cannot pay cancels the order.
            elif cash_only and (
                qty * px + fee - quote > {lots_rtol!r} * abs(quote) if side > 0 else qty - base > {lots_rtol!r} * abs(base)
            ):
                ord_i[j, 3] = {unpaid}
                ord_f[j, 6] = quote if side > 0 else base
            elif not cash_only and _short_of_margin(pos, qty if side > 0 else -qty, cs * px, leverage, fee, quote, cs,
                                                    last):
                ord_i[j, 3] = {unpaid}
                ord_f[j, 6] = quote
            else:
                n_fills += 1
                signed = qty if side > 0 else -qty
                cash = _settle(cash, -(signed * cs * px + fee))
                if side > 0:
                    base = _settle(base, qty)
                    quote = _settle(quote, -(qty * px + fee))
                else:
                    base = _settle(base, -qty)
                    quote = _settle(quote, qty * px - fee)
                fees += fee
                old = pos
                if old == 0.0 or (old > 0.0) == (signed > 0.0):
                    new = old + signed
                    avg = (old * avg + signed * px) / new
                    pos = new
                else:
                    closed = min(abs(signed), abs(old))
                    pnl = cs * (closed * (px - avg) if old > 0.0 else closed * (avg - px))
                    realized += pnl
                    new = old + signed
                    if abs(new) <= flat_eps:
                        pos = 0.0
                        avg = 0.0
                    else:
                        if (new > 0.0) != (old > 0.0):
                            avg = px
                        pos = new
                if last != last:
                    last = px
                safe_low, safe_high = _safe_marks(cash_only, pos, quote, cs, maintenance)
                if streak_limit == streak_limit:  # Breakers.on_position on the fill's PositionChanged
                    now_side = (pos > 0.0) - (pos < 0.0)
                    if now_side != side_held:
                        if side_held == 0:
                            trip_start = realized
                        else:
                            trip_pnl = realized - trip_start
                            trip_start = realized
                            if trip_pnl < 0.0:
                                streak += 1
                                if streak >= streak_limit:
                                    ls = streak_action
                            else:
                                streak = 0
                        side_held = now_side
        if c > 0.0 and c < math.inf:
            last = c
        if not (last > safe_low and last < safe_high) and not cash_only and pos != 0.0:
            # Perpetuals.check at this close (MarginAccount.breached): a margin spot position at
            # or within 1e-9 of its liquidation stops the loop (the event tier liquidates it).
            notional = abs(pos) * (cs * last)
            if quote + pos * cs * last <= notional * maintenance + 1e-9 * notional:
                return {liquidation}, n_orders, n_fills, n_samples, i
        _step_bar(ws, ts_event[i], o, h, l, c, v, table)
        raw = _signal(window(ws, n_fields, n_cols), o, h, l, c, v, target, params, sstate)
        if raw == raw:
            new_target = 0.0 if long_only and raw < 0.0 else raw
            if not (on_change and new_target == target):
                target = new_target
                delta = new_target * quantity - pos - 0.0
                if not abs(delta) / lot * cfg[4] < {exact!r}:  # Instrument.round_quantity may keep float noise there
                    return {invalid}, n_orders, n_fills, n_samples, i
                size = _grid(math.floor(abs(delta) * cfg[5] / cfg[4] + min(max(1e-9, abs(delta) * cfg[5] / cfg[4] * {lots_rtol!r}), max(1e-3, abs(delta) * cfg[5] / cfg[4] * {rounding_rtol!r}))), cfg[4], cfg[5])
                if size > 0.0:
                    buy = delta > 0
                    signed = size if buy else -size
                    # The risk gate (no working order) and the account's buying power, in
                    # the gate's order; a limit not set is NaN (no comparison with it holds).
                    lots = size * cfg[5] / cfg[4]
                    if size < cfg[9] - 1e-12 or abs(lots - round(lots)) > min(max(1e-6, lots * {lots_rtol!r}), max(1e-3, lots * {rounding_rtol!r})):
                        return {invalid}, n_orders, n_fills, n_samples, i
                    if n_orders >= cap_orders:
                        return {full}, n_orders, n_fills, n_samples, i
                    code = 0
                    seen = quote if buy or not cash_only else base  # the figure the denying check saw (a balance)
                    if breaker:  # RiskGate.check evaluates the breakers first, then the trading state
                        peak, dd, day, start, dl, gx = _breakers(
                            cash, pos, cs, last, t, peak, dd, day, start, dl, gx, dd_fall, dd_action, dl_fall,
                            dl_action, gross,
                        )
                    state = max(max(dd, dl), max(gx, ls))
                    if state == {reducing_state} and pos != 0.0 and buy != (pos > 0.0) and abs(delta) > abs(pos):
                        # Strategy.target_position sends a reversal as its close alone while REDUCING.
                        size = _grid(math.floor(abs(pos) * cfg[5] / cfg[4] + min(max(1e-9, abs(pos) * cfg[5] / cfg[4] * {lots_rtol!r}), max(1e-3, abs(pos) * cfg[5] / cfg[4] * {rounding_rtol!r}))), cfg[4], cfg[5])
                        signed = size if buy else -size
                        lots = size * cfg[5] / cfg[4]
                        if size < cfg[9] - 1e-12 or abs(lots - round(lots)) > min(max(1e-6, lots * {lots_rtol!r}), max(1e-3, lots * {rounding_rtol!r})):
                            return {invalid}, n_orders, n_fills, n_samples, i
                    if state == {halted_state}:
                        code = {halted}
                    elif state == {reducing_state} and (
                        pos == 0.0 or (pos > 0.0) == buy or size > abs(pos) + min(abs(pos) * {limit_rtol!r}, 0.5 * lot)
                    ):
                        code = {reducing}
                    elif cfg[10] > 0.0 and size * cs * last < cfg[10] - 1e-12:
                        code = {min_notional}
                    elif cash_only and (  # SpotCashAccount.check_order, account.spot.exceeds
                        size * (last * cfg[20]) * (1.0 + cfg[21]) - quote > {lots_rtol!r} * abs(quote) if buy
                        else size - base > {lots_rtol!r} * abs(base)
                    ):
                        code = {buying_power}
                    elif not cash_only and last == last and _short_of_margin(
                        pos, signed, cs * last, leverage, size * (cs * last) * cfg[21], quote, cs, last
                    ):
                        code = {buying_power}
                    elif size > cfg[22] + min(cfg[22] * {limit_rtol!r}, 0.5 * lot):
                        code = {max_quantity}
                    elif cfg[23] == cfg[23] and not size * cs * last <= cfg[23] + min(cfg[23] * {limit_rtol!r}, 0.5 * (lot * (cs * last))):
                        code = {max_notional}
                    elif abs(pos + signed) > cfg[24] + min(cfg[24] * {limit_rtol!r}, 0.5 * lot) and abs(pos + signed) > abs(pos):
                        code = {max_position}
                    elif gross == gross:  # RiskGate._check_gross: the worst case after the order
                        if last != last:
                            return {invalid}, n_orders, n_fills, n_samples, i
                        mark = last * cs
                        after = max(abs(pos + signed), abs(pos))  # the position with the order filled, or not
                        if after * mark > abs(pos) * mark:
                            equity = _equity(cash, pos, cs, last)
                            if equity <= 0.0 or after * mark / equity > gross + min(gross * {limit_rtol!r}, 0.5 * (lot * (mark / equity))):
                                code = {max_gross}
                                seen = equity
                    if code == 0 and max_rate > 0:  # the gate's sliding window: only orders that pass count
                        horizon = t - rate_window
                        while n_rate > 0 and rate[rate_head] <= horizon:
                            rate_head = rate_head + 1 if rate_head + 1 < max_rate else 0
                            n_rate -= 1
                        if n_rate >= max_rate:
                            code = {max_rate_code}
                        else:
                            slot = rate_head + n_rate
                            rate[slot if slot < max_rate else slot - max_rate] = t
                            n_rate += 1
                    ord_i[n_orders, 0] = i
                    ord_i[n_orders, 1] = 1 if buy else -1
                    ord_i[n_orders, 2] = -1
                    ord_i[n_orders, 3] = code
                    ord_f[n_orders, 0] = size
                    ord_f[n_orders, 1] = raw
                    ord_f[n_orders, 2] = math.nan
                    ord_f[n_orders, 3] = 0.0
                    ord_f[n_orders, 4] = last
                    ord_f[n_orders, 5] = pos
                    ord_f[n_orders, 6] = seen
                    n_orders += 1
                    pending = code == 0
        # A due sample is taken after the last bar of its time (the event tier's Kernel.before_time).
        if (t >= next_sample or i == n - 1) and (i == n - 1 or ts_init[i + 1] != t):
            if t >= next_sample:
                next_sample = (t // interval + 1) * interval
            elif n_samples > 0 and smp_i[n_samples - 1] == t:
                continue
            if n_samples >= cap_samples:
                return {full}, n_orders, n_fills, n_samples, i
            value = 0.0
            equity = cash
            unrealized = 0.0
            if pos != 0.0:
                equity += pos * cs * last
                value += pos * cs * last
                if last == last:
                    unrealized += pos * cs * (last - avg)
            smp_i[n_samples] = t
            smp_f[n_samples, 0] = equity
            smp_f[n_samples, 1] = cash
            smp_f[n_samples, 2] = value
            smp_f[n_samples, 3] = realized
            smp_f[n_samples, 4] = unrealized
            smp_f[n_samples, 5] = fees
            smp_f[n_samples, 6] = last
            margin = 0.0  # MarginAccount.initial_margin() and maintenance_margin() of a margin spot position
            maintained = 0.0
            if not cash_only and pos != 0.0 and last == last:
                margin += abs(pos) * (cs * last) / leverage
                maintained += abs(pos) * (cs * last) * maintenance
            smp_f[n_samples, 7] = margin
            smp_f[n_samples, 8] = maintained
            n_samples += 1
    if n:  # the bar's time field, which _step_bar leaves where no feature reads it
        write_bar(ws, ts_event[n - 1], op[n - 1], hi[n - 1], lo[n - 1], cl[n - 1], vol[n - 1])
    return {ok}, n_orders, n_fills, n_samples, n
'''


@dataclass(frozen=True)
class BarArrays:
    """The bars of one instrument as contiguous columns (int64 times, float64 prices)."""

    ts_event: np.ndarray
    ts_init: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    @classmethod
    def from_replay(cls, replay: ReplayLike, instrument_id: str) -> BarArrays:
        """Concatenate the replay's batches; every one must be bars of ``instrument_id``.

        Raises
        ------
        AcceleratedUnsupported
            A batch of another kind or instrument.
        """
        parts: dict[str, list[np.ndarray]] = {name: [] for name in cls.__dataclass_fields__}
        for batch in replay.batches():
            if batch.kind != "bars" or batch.instrument_id != instrument_id:
                raise AcceleratedUnsupported(
                    f"the data hold {batch.kind} of {batch.instrument_id}; the accelerated tier replays only "
                    f"the bars of {instrument_id}"
                )
            for name in parts:
                parts[name].append(getattr(batch, name))
        return cls.of(**{name: np.concatenate(p) if p else np.empty(0) for name, p in parts.items()})

    @classmethod
    def of(cls, **columns: Any) -> BarArrays:
        """Columns converted to the loop's dtypes (``ts_event``, ``ts_init``, ``open`` ... ``volume``)."""
        out = {
            name: np.ascontiguousarray(columns[name], dtype=np.int64 if name.startswith("ts_") else np.float64)
            for name in cls.__dataclass_fields__
        }
        return cls(**out)


def unsupported(kernel: Kernel) -> str | None:
    """Why the accelerated tier cannot run ``kernel``'s backtest, or ``None`` if it can.

    The kernel must have its strategies added; this starts it (builds the feature banks and
    calls ``on_start``, which a signal kernel needs) before any data, so with the clock at 0:
    a kernel it refuses is not for :meth:`Kernel.run`, which starts the strategies at the first
    message's time (build another).
    """
    kernel.start()
    if len(kernel.strategies) != 1:
        return f"it runs one strategy, the config has {len(kernel.strategies)}"
    strategy = kernel.strategies[0]
    name = type(strategy).__name__
    if declared_kernel(strategy) is None:
        return (f"strategy {strategy.strategy_id!r} ({name}) declares no signal kernel (none, or its class adds "
                "to the class that declared one)")
    if len(kernel.instruments) != 1 or tuple(strategy.instrument_ids) != tuple(kernel.instruments):
        return "it runs one instrument, traded by the strategy"
    (iid, instrument), = kernel.instruments.items()
    venue = kernel.venue
    if type(venue) is not SimulatedVenue or venue.config.fill_on != "bars":
        return "the venue must fill on bars (venue.fill_on: bars)"
    if venue.config.latency_ns:
        return f"venue.latency_ns is {venue.config.latency_ns}; the accelerated tier has no latency"
    if venue._fees[iid].tiers:  # noqa: SLF001 (the schedule in effect: tiers unless fees are overridden)
        return f"{iid} has fee tiers"
    if instrument.is_perpetual:
        return f"{iid} is a perpetual (margin, funding, liquidation)"
    if instrument.margin_tiers:
        return f"{iid} has margin tiers"
    if kernel.interest is not None:
        return "annual_borrow_rates is set: the accelerated tier charges no borrowing interest"
    risk = kernel.risk_config
    if risk.max_open_orders == 0:
        return "risk.max_open_orders is 0"
    if kernel.portfolio.has_holdings:
        return "the account starts with holdings of a non-cash asset"
    if kernel.trade_bars or kernel.histories or kernel.contingent is not None:
        return "the strategy uses trade bars, history windows or contingent orders"
    if iid not in kernel.banks:
        return f"no features on {iid}"
    return None


def _config_vector(kernel: Kernel, signal: SignalKernel) -> np.ndarray:
    (iid, inst), = kernel.instruments.items()
    venue = kernel.venue
    assert isinstance(venue, SimulatedVenue)
    slippage = venue.config.slippage_model
    account = kernel.portfolio.account
    risk = kernel.risk_config
    cfg = np.full(_N_CFG, np.nan)
    cfg[_QTY] = signal.quantity
    cfg[_LONG_ONLY] = float(signal.long_only)
    cfg[_ON_CHANGE] = float(signal.on_change)
    cfg[_LOT], cfg[_LOT_M], cfg[_LOT_SCALE] = _grid_of(inst.lot_size, "lot_size")
    cfg[_TICK], cfg[_TICK_M], cfg[_TICK_SCALE] = _grid_of(inst.tick_size, "tick_size")
    cfg[_MIN_QTY] = max(inst.min_quantity, inst.lot_size)
    cfg[_CFG_MIN_NOTIONAL] = inst.min_notional
    cfg[_CS] = inst.contract_size
    cfg[_TAKER] = venue._fees[iid].taker  # noqa: SLF001 (the rate in effect, override or instrument's)
    slips = slippage.model != "fixed" or slippage.bps > 0.0
    cfg[_SLIP] = _SLIP_MODELS[slippage.model] if slips else -1.0
    cfg[_BPS], cfg[_IMPACT], cfg[_EXPONENT] = slippage.bps, slippage.impact_bps, slippage.exponent
    cfg[_K], cfg[_MAX_BPS] = slippage.k, slippage.max_bps
    cfg[_CASH_ONLY] = float(inst.cash_only)
    cfg[_BUFFER] = account._buffer if inst.cash_only else 1.0  # type: ignore[attr-defined]  # noqa: SLF001
    cfg[_FEE_HOLD] = max(inst.maker_fee, inst.taker_fee, 0.0)
    cfg[_LEVERAGE] = inst.leverage
    cfg[_MAINTENANCE] = inst.maintenance_rate
    for index, limit in ((_MAX_ORDER_QTY, risk.max_order_quantity), (_CFG_MAX_NOTIONAL, risk.max_order_notional),
                         (_CFG_MAX_POSITION, risk.max_position)):  # fmt: skip
        cfg[index] = math.nan if limit is None else limit
    cfg[_CASH] = kernel.portfolio.cash
    base, quote = asset_names(inst)  # the account's names: an instrument may name neither asset
    cfg[_QUOTE] = account.balance(quote)
    cfg[_BASE] = account.balance(base)
    cfg[_FLAT_EPS] = kernel.portfolio.position_state(iid).flat_eps
    for limit, action, limit_index, action_index in (
        (risk.max_drawdown_pct, risk.drawdown_action, _DRAWDOWN, _DRAWDOWN_ACTION),
        (risk.max_daily_loss_pct, risk.daily_loss_action, _DAILY_LOSS, _DAILY_LOSS_ACTION),
    ):
        if limit is not None:
            cfg[limit_index] = limit
            cfg[action_index] = _HALTED_STATE if action == "halt" else _REDUCING_STATE
    if risk.max_consecutive_losses is not None:
        cfg[_STREAK] = risk.max_consecutive_losses
        cfg[_STREAK_ACTION] = _HALTED_STATE if risk.loss_streak_action == "halt" else _REDUCING_STATE
    if risk.max_gross_exposure is not None:
        cfg[_GROSS] = risk.max_gross_exposure
    return cfg


def _grid_of(increment: float, what: str) -> tuple[float, float, float]:
    """``(increment, m, scale)`` with ``increment == m / scale`` in decimal, ``scale = 10 ** digits``.

    ``Instrument.round_*`` compute ``round(n * increment, digits)``: the double nearest to the
    decimal ``n * m / scale``, which is what the correctly rounded ``float(n * m) / scale`` gives.
    """
    m, scale = grid_of(increment)
    if not exact_decimal(increment):
        raise AcceleratedUnsupported(f"{what} {increment} has no exact decimal grid")
    return increment, m, scale


_LOOPS: dict[tuple[str, Any], Any] = {}


def _loop(bank: FeatureBank, signal: SignalKernel) -> Any:
    """The compiled loop for ``bank``'s structure and ``signal`` (generated and cached on first use)."""
    bank_module = bank._module  # noqa: SLF001 (the bank's generated drivers)
    if bank_module is None:
        raise AcceleratedUnsupported("the strategy's instrument has no bar features")
    key = (bank_module.__name__, signal.fn, max(len(signal.params), 1))
    loop = _LOOPS.get(key)
    if loop is None:
        loop = _LOOPS[key] = _generate(bank_module.__name__, signal)
    return loop


def _generate(bank_module: str, signal: SignalKernel) -> Any:
    fn = signal.fn
    py = getattr(fn, "py_func", None)
    module, name = getattr(py, "__module__", None), getattr(py, "__name__", None)
    if py is None or not module or getattr(sys.modules.get(module), name or "", None) is not fn:
        raise AcceleratedUnsupported("a signal kernel must be an @njit function defined at module level")
    text = _TEMPLATE.format(
        bank_module=bank_module, signal_module=module, signal_name=name, signal_hash=_source_hash(py),
        params="(" + "".join(f"sparams[{k}], " for k in range(max(len(signal.params), 1))) + ")",
        ok=_OK, full=_FULL, invalid=_INVALID, unordered=_UNORDERED, liquidation=_LIQUIDATION, min_notional=_MIN_NOTIONAL,
        buying_power=_BUYING_POWER, max_quantity=_MAX_QUANTITY, max_notional=_MAX_NOTIONAL,
        max_position=_MAX_POSITION, unpaid=_UNPAID, refused=_REFUSED, halted=_HALTED, reducing=_REDUCING, max_gross=_MAX_GROSS,
        max_rate_code=_MAX_RATE, active=_ACTIVE_STATE, reducing_state=_REDUCING_STATE, halted_state=_HALTED_STATE,
        day_ns=DAY_NS, limit_rtol=LIMIT_RTOL, lots_rtol=LOTS_RTOL, rounding_rtol=ROUNDING_RTOL, ticks_rtol=TICKS_RTOL, exact=_EXACT_GRID,
    )  # fmt: skip
    return drivers.load_module(text).simulate


def _source_hash(py: Any) -> str:
    """A hash of the whole source file of the signal kernel ``py`` (of its own source if it has no file).

    The loop compiles the kernel and the helpers it calls into its cache entry, which Numba
    keys on the loop's file alone: the loop's name must change when any of them does. Helpers
    in other modules are not seen (as with any cached Numba function).
    """
    try:
        source = Path(inspect.getsourcefile(py) or "").read_bytes()
    except (OSError, TypeError):
        try:
            source = inspect.getsource(py).encode()
        except (OSError, TypeError):
            source = repr(py).encode()
    return hashlib.blake2b(source, digest_size=10).hexdigest()


@dataclass(frozen=True)
class AcceleratedRun:
    """The compiled loop's output, as arrays (:func:`run_accelerated` turns it into a :class:`RunResult`).

    Attributes
    ----------
    order_index
        Per order ``(bar it was decided on, side +1/-1, bar it filled on or -1, what became of it)``;
        the last column is ``0`` (sent), a denial code of the risk gate or the account (``1`` to
        ``5``: minimum notional, buying power, ``max_order_quantity``, ``max_order_notional``,
        ``max_position``; ``7`` HALTED, ``8`` REDUCING, ``9`` ``max_gross_exposure``, ``10`` the
        order rate), ``6``: canceled at its fill bar, whose cost the balance could not pay, or ``11``:
        canceled at its fill bar, whose slipped price the venue refuses (:func:`~tradebus.execution.simulated.slipped_price_reason`).
    order_values
        Per order ``(quantity, signal result, fill price, fee, last price, position, balance)``: the
        last three as the checks saw them (the balance: quote asset of a buy, base asset of a cash-only sell;
        at the fill for a canceled order; the equity for a ``max_gross_exposure`` denial; the slipped
        price before rounding for a refused one).
    fills
        How many orders filled (the orders sent, less the canceled ones and one still working at the end).
    sample_ts, sample_values
        Equity samples: ``ts`` and ``(equity, cash, position value, realised, unrealised, fees, mark,
        initial margin, maintenance margin)``.
    config
        The loop's configuration vector (instrument, venue, account and risk figures it applied).
    """

    order_index: np.ndarray
    order_values: np.ndarray
    fills: int
    sample_ts: np.ndarray
    sample_values: np.ndarray
    config: np.ndarray


def simulate(kernel: Kernel, bars: BarArrays) -> AcceleratedRun:
    """Run the kernel's strategy over ``bars`` in the compiled loop; return the loop's arrays.

    Raises
    ------
    AcceleratedUnsupported
        The run needs the event tier (the message says why; the kernel is used up either way).
    """
    strategy, signal = _signal_of(kernel)
    iid = strategy.instrument_ids[0]
    n = len(bars.ts_init)
    bank = kernel.banks[iid]
    loop = _loop(bank, signal)
    cfg = _config_vector(kernel, signal)
    interval = kernel._equity_interval  # noqa: SLF001
    risk = kernel.risk_config
    max_rate = risk.max_orders_per_window or 0
    tcfg = np.array([interval, kernel.next_sample_ns, risk.order_rate_window_ns, max_rate], dtype=np.int64)
    rate = np.empty(max(max_rate, 1), dtype=np.int64)
    span = int(bars.ts_init[-1] - bars.ts_init[0]) if n else 0
    cap_samples = min(n, span // interval + 2) + 1
    # At most one order per bar. The loop writes every row it counts, so the room is left
    # uninitialised: zeroing it would cost a memset of 88 bytes per bar whenever the allocator
    # reuses freed memory instead of mapping fresh pages.
    ord_i = np.empty((max(n, 1), 4), dtype=np.int64)
    ord_f = np.empty((max(n, 1), 7))
    smp_i = np.empty(cap_samples, dtype=np.int64)
    smp_f = np.empty((cap_samples, 9))
    ws = bank._ws  # noqa: SLF001 (the bank's own workspace: its steppers' state carries on)
    status, n_orders, n_fills, n_samples, at = loop(
        ws, drivers.N_FIELDS, len(bank.columns), bars.ts_event, bars.ts_init, bars.open, bars.high,
        bars.low, bars.close, bars.volume, signal.params_array(), np.zeros(max(signal.state_size, 1)), cfg, tcfg,
        rate, ord_i, ord_f, smp_i, smp_f,
    )  # fmt: skip
    if status == _FULL:  # the room above is enough by construction
        raise AcceleratedUnsupported(f"accelerated tier: out of room for orders or samples at bar {at}")
    if status == _INVALID:
        raise AcceleratedUnsupported(
            f"accelerated tier: the order decided at bar {at} (ts {int(bars.ts_init[at])}) breaks the "
            "instrument's minimum quantity or lot size, has no price to value its exposure, or has a quantity "
            "of more lots than the loop rounds as the instrument does (2 ** 46 over the grid's integer); the "
            "event tier handles it"
        )
    if status == _LIQUIDATION:
        raise AcceleratedUnsupported(
            f"accelerated tier: the position reaches its liquidation at bar {at} (ts {int(bars.ts_init[at])}); "
            "the event tier liquidates it"
        )
    if status == _UNORDERED:
        raise AcceleratedUnsupported(
            f"accelerated tier: the bars are not in time order (bar {at} at ts {int(bars.ts_init[at])} is earlier "
            f"than bar {at - 1} at ts {int(bars.ts_init[at - 1])})"
        )
    return AcceleratedRun(
        ord_i[:n_orders], ord_f[:n_orders], int(n_fills), smp_i[:n_samples], smp_f[:n_samples], cfg
    )


def run_accelerated(kernel: Kernel, replay: ReplayLike | BarArrays) -> RunResult:
    """Run the kernel's backtest in the accelerated tier; the result equals :meth:`Kernel.run`'s.

    Parameters
    ----------
    kernel
        A backtest kernel with its strategy added, not run yet (see :func:`unsupported`).
    replay
        The replay :meth:`Kernel.run` would get, or the bars as :class:`BarArrays`.

    Raises
    ------
    AcceleratedUnsupported
        The run needs the event tier (the message says why; nothing of the kernel is usable after).
    """
    strategy, _ = _signal_of(kernel)
    bars = replay if isinstance(replay, BarArrays) else BarArrays.from_replay(replay, strategy.instrument_ids[0])
    collect(kernel, bars, simulate(kernel, bars))
    return kernel.result


def _signal_of(kernel: Kernel) -> tuple[Strategy, SignalKernel]:
    """The kernel's one strategy and its signal kernel; raises when :func:`unsupported` objects."""
    why = unsupported(kernel)
    if why is not None:
        raise AcceleratedUnsupported(f"accelerated tier: {why}")
    strategy = kernel.strategies[0]
    signal = declared_kernel(strategy)
    assert signal is not None
    return strategy, signal


def collect(kernel: Kernel, bars: BarArrays, run: AcceleratedRun, *, equity: bool = True) -> None:
    """Fill ``kernel.result`` with the orders, fills and samples of ``run``, as :meth:`Kernel.run` would.

    ``equity=False`` leaves ``result.equity`` empty, for a caller that reads the samples from
    ``run`` (a sweep's trial computes its metrics from the columns).
    """
    strategy, signal = _signal_of(kernel)
    with rare_gc():
        _collect_objects(kernel, strategy.strategy_id, strategy.instrument_ids[0], signal, bars, run, equity)


def _collect_objects(
    kernel: Kernel, strategy_id: str, iid: str, signal: SignalKernel, bars: BarArrays, run: AcceleratedRun,
    equity_samples: bool,
) -> None:  # fmt: skip
    result = kernel.result
    n = len(bars.ts_init)
    if n:
        result.start_ns, result.end_ns = int(bars.ts_init[0]), int(bars.ts_init[-1])
        result.first_event_ns, result.last_event_ns = int(bars.ts_event.min()), int(bars.ts_event.max())
        result.bars = n
        result.last_prices = {iid: float(bars.close[-1])}
    index = run.order_index
    created = bars.ts_init[index[:, 0]].tolist()
    filled = bars.ts_event[np.maximum(index[:, 2], 0)].tolist()
    taker = Liquidity.TAKER.value
    market, filled_status = OrderType.MARKET, OrderStatus.FILLED
    buy, sell = (OrderSide.BUY, "BUY"), (OrderSide.SELL, "SELL")
    reasons = result.submit_reasons
    fills = result.fills
    coids = kernel.orders.client_ids.take(strategy_id, len(index))
    orders: list[Order] = []
    sent = 0
    for coid, side_sign, fill_bar, code, values, ts_created, ts_filled in zip(
        coids, *index[:, 1:].T.tolist(), run.order_values.tolist(), created, filled, strict=True
    ):
        qty, raw, px, fee = values[:4]
        reasons[coid] = reason = signal.reason(raw)
        side, side_name = buy if side_sign > 0 else sell
        order = Order(coid, strategy_id, iid, side, market, qty, ts_created=ts_created, ts_last=ts_created)
        orders.append(order)
        if code != _SENT and code != _UNPAID and code != _REFUSED:
            order.status = OrderStatus.DENIED
            order.reason = why = _denial(kernel, iid, side_sign > 0, code, values, run.config)
            result.denials.append(OrderDenied(strategy_id, iid, coid, why, ts_created, ts_created))
            continue
        sent += 1
        if fill_bar < 0:
            order.status = OrderStatus.SUBMITTED  # decided on the last bar: it never reached the venue
            continue
        order.venue_order_id = f"SIM-{sent}"
        order.ts_last = ts_filled
        if code == _UNPAID or code == _REFUSED:
            order.status = OrderStatus.CANCELED
            order.reason = (
                _unpaid(kernel, iid, side_sign > 0, values) if code == _UNPAID
                else slipped_price_reason(kernel.instruments[iid], values[6], px)
            )
            continue
        trade_id = f"SIM-T{len(fills) + 1}"
        order.status = filled_status
        order.filled_qty, order.avg_px, order.fee_paid = qty, px, fee
        order.trade_ids = (trade_id,)
        fills.append(FillRecord(ts_filled, iid, side_name, qty, px, fee, taker, coid, strategy_id, trade_id, reason))
    result.orders = orders
    if not equity_samples:
        return
    equity, cash, value, realized, unrealized, fees, mark, margin, maintenance = run.sample_values.T.tolist()
    samples = result.equity = list(
        map(EquitySample, run.sample_ts.tolist(), equity, cash, value, realized, unrealized, fees, repeat(0.0),
            margin, maintenance, repeat(0.0), zip(mark))
    )  # fmt: skip
    if n:
        _show_first_price(kernel, iid, bars, samples)


def _show_first_price(kernel: Kernel, iid: str, bars: BarArrays, samples: list[EquitySample]) -> None:
    """Give the first sample with a valid mark the instrument's first price, as :meth:`Kernel.sample_equity` does.

    The first bar's close is that price, shown where several bars share the first sample's time and the last of
    them moved the mark (a burst).
    """
    kernel.note_first_price(iid, int(bars.ts_init[0]), float(bars.close[0]))
    k = next((k for k, sample in enumerate(samples) if sample.marks[0] == sample.marks[0]), None)
    if k is not None:
        sample = samples[k]
        shown = kernel.shown_first_prices(sample.ts, sample.marks, samples[k - 1].marks if k else ())
        if shown:
            samples[k] = msgspec.structs.replace(sample, first_prices=shown)


def _denial(kernel: Kernel, iid: str, buy: bool, code: int, values: list[float], cfg: np.ndarray) -> str:
    """The reason the risk gate or the account gives for denial ``code`` of an order (see :func:`simulate`)."""
    qty, last, pos, balance = values[0], values[4], values[5], values[6]
    inst = kernel.instruments[iid]
    risk = kernel.risk_config
    if code == _HALTED:
        return HALTED_REASON
    if code == _REDUCING:
        return reducing_reason(pos, 0.0, qty if buy else -qty)
    if code == _MAX_RATE:
        limit = risk.max_orders_per_window
        return order_rate_reason(limit, risk.order_rate_window_ns, limit)  # type: ignore[arg-type]
    if code == _MAX_GROSS:
        equity, signed = balance, qty if buy else -qty
        if equity <= 0.0:
            return gross_equity_reason(equity)
        notional = max(abs(pos + signed), abs(pos)) * (last * inst.contract_size)
        return gross_exposure_reason(notional / equity, risk.max_gross_exposure, notional, equity)  # type: ignore[arg-type]
    if code == _MIN_NOTIONAL:
        return min_notional_reason(qty * inst.contract_size * last, inst.min_notional)
    if code == _BUYING_POWER:
        base, quote = asset_names(inst)
        if not inst.cash_only:
            cost = qty * (inst.contract_size * last) * cfg[_FEE_HOLD]
            return _margin_denial(inst, iid, "BUY" if buy else "SELL", qty if buy else -qty, last, cost, pos, last,
                                  balance)  # fmt: skip
        if not buy:
            return buying_power_reason(False, qty, iid, qty, base, balance, 0.0)
        need = qty * (last * cfg[_BUFFER]) * (1.0 + cfg[_FEE_HOLD])
        return buying_power_reason(True, qty, iid, need, quote, balance, 0.0)
    if code == _MAX_QUANTITY:
        return max_quantity_reason(qty, risk.max_order_quantity)  # type: ignore[arg-type]
    if code == _MAX_NOTIONAL:
        return max_notional_reason(iid, qty * inst.contract_size * last, risk.max_order_notional)  # type: ignore[arg-type]
    signed = qty if buy else -qty
    return max_position_reason(pos, 0.0, signed, abs(pos + signed), risk.max_position)  # type: ignore[arg-type]


def _unpaid(kernel: Kernel, iid: str, buy: bool, values: list[float]) -> str:
    """The reason the account gives for refusing the fill of a canceled order (see :func:`simulate`)."""
    qty, px, fee, balance = values[0], values[2], values[3], values[6]
    inst = kernel.instruments[iid]
    if not inst.cash_only:
        return _margin_denial(inst, iid, "fill", qty if buy else -qty, px, fee, values[5], values[4], balance)
    base, quote = asset_names(inst)
    if buy:
        return insufficient_balance_reason(qty * px + fee, quote, qty, px, balance, 0.0)
    return insufficient_balance_reason(qty, base, qty, px, balance, 0.0)


def _margin_denial(
    inst: Instrument, iid: str, what: str, signed: float, price: float, cost: float, pos: float, mark: float,
    wallet: float,
) -> str:  # fmt: skip
    """:meth:`MarginAccount._margin_check`'s reason, from the figures the loop's ``_short_of_margin`` saw."""
    qty = abs(signed)
    opening = qty if pos == 0.0 or (pos > 0.0) == (signed > 0.0) else max(0.0, qty - abs(pos))
    margin = abs(pos) * (inst.contract_size * mark) / inst.leverage if pos != 0.0 else 0.0
    available = wallet + pos * inst.contract_size * mark - margin if pos != 0.0 else wallet
    if pos != 0.0 and opening < qty:
        available += margin
    need = opening * (inst.contract_size * price) / inst.leverage + cost
    _, quote = asset_names(inst)
    return margin_reason(what, qty, iid, need, quote, available, wallet, margin)
