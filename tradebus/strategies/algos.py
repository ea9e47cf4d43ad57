"""Execution algorithms: work one parent order as child orders, for any strategy, in every mode.

An algorithm acts through its strategy's order helpers, so every child order carries the
strategy's id, goes through the risk gate like any order, and reaches the strategy's own
``on_order_*`` handlers. It keeps time with the run's clock (timers named
``<strategy id>/<algo name>``): simulated, deterministic times in a backtest, the wall
clock in paper and live runs. It learns the fate of its children by reading their orders
at each of its timer firings, so it needs no event plumbing in the strategy.

* :class:`Twap` -- equal slices at equal intervals.
* :class:`Vwap` -- slices proportional to the volume profile of the strategy's bar history.
* :class:`Iceberg` -- one visible limit order of ``display`` at a time until the parent is done.
* :class:`LimitChaser` -- a post-only limit at the touch, moved to the new touch while unfilled.

A denied or rejected child is handled, never lost: its quantity counts as not sent, so the
next slice (or the next child) sends it again; the last slice of a schedule sends all that
is left. A schedule (TWAP, VWAP) is ``done`` when the children of its slices filled the whole
parent (after its last slice it waits, polling at its interval, until none is working); an
iceberg or chaser when its children filled it, or filled all but a
remainder the risk gate would refuse as an order of its own (below the instrument's minimum
quantity or notional, left by a child canceled after a partial fill): that remainder is the
algorithm's :attr:`~ExecAlgorithm.dust`, logged as a warning and never sent (no child is left
to carry it, and alone it would only be denied). Any of them is
``failed`` when it ends (schedule over, ``max_retries`` refusals in a row, or a timeout
without a market fallback) with quantity left unsent, or unfilled (a child of the last slice
rejected, or canceled by the venue, with no slice left to send it again). One still ``working`` when the run ends
(the strategy's :meth:`~tradebus.strategies.base.Strategy.at_stop`, in every mode) becomes
``unfinished`` and logs a warning with what was filled, what is still working and what was
never sent; its working children are left to the run's own end (a live run's ``cancel_on_stop``).
Its start and its end (``done``, ``failed``, ``canceled``) are published as
:class:`~tradebus.engine.messages.AlgoStarted` and :class:`~tradebus.engine.messages.AlgoEnded`,
which a daemon journals: a restart on the journal ends one left working ``interrupted`` and tells
its strategy (:mod:`tradebus.strategies.algo_recovery`).

A strategy stops an algorithm with :meth:`~ExecAlgorithm.cancel`: it sends nothing more and
cancels its working children; it is ``canceling`` until a timer firing finds none of them working
(a child may still fill before the venue takes its cancel: that counts as filled), then
``canceled``, logged with what was filled. A child whose cancel the venue refused while it works
(``OrderCancelRejected``, live) has its cancel sent again at the algorithm's next timer firing, until it
closes (or the run ends, the algorithm ``unfinished``); so has a limit chaser's child canceled for its
timeout or its remainder. A child the strategy cancels itself does not stop the
algorithm: its unfilled quantity counts as not sent, as for a child the venue cancels.
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Literal
from weakref import WeakKeyDictionary

import numpy as np
from loguru import logger

from tradebus.engine.messages import (
    AlgoEnded,
    AlgoStarted,
    OrderCancelRejected,
    OrderSide,
    OrderStatus,
    OrderType,
    TimeEvent,
)
from tradebus.errors import ConfigError, OrderError
from tradebus.risk.gate import min_notional_reason
from tradebus.strategies.base import duration_ns

if TYPE_CHECKING:
    from tradebus.execution.orders import Order
    from tradebus.strategies.base import Strategy

__all__ = ["ExecAlgorithm", "Iceberg", "LimitChaser", "Twap", "Vwap", "number_after"]

_REFUSED = frozenset({OrderStatus.DENIED, OrderStatus.REJECTED})
_CLOSED = frozenset({OrderStatus.DENIED, OrderStatus.REJECTED, OrderStatus.FILLED, OrderStatus.CANCELED,
                     OrderStatus.EXPIRED})  # fmt: skip

AlgoStatus = Literal["pending", "working", "canceling", "canceled", "done", "failed", "unfinished"]

# Default names count the algorithms of each strategy, not of the process: a second run in the
# same process (a sweep worker, a notebook) names its children's reasons as the first did.
_created: WeakKeyDictionary[Strategy, int] = WeakKeyDictionary()
_NUMBER = re.compile(r"(\d+)$")


def number_after(strategy: Strategy, name: str) -> None:
    """Have the strategy's next default names count on from ``name``, an algorithm a previous process journaled.

    A restart's algorithms are then not named ``twap1``, ``iceberg2`` ... again: the
    journal's starts and ends, and a restart's recovery (:mod:`tradebus.strategies.algo_recovery`),
    tell algorithms apart by their strategy and name. A name without a trailing number changes nothing.

    Parameters
    ----------
    strategy
        The strategy the journaled algorithm belonged to.
    name
        The journaled algorithm's name (``AlgoStarted.name``).
    """
    found = _NUMBER.search(name)
    if found is not None:
        _created[strategy] = max(_created.get(strategy, 0), int(found.group(1)))


def _ns(value: str | int) -> int:
    try:
        return duration_ns(value, "execution algorithm")
    except ConfigError as exc:
        raise OrderError(str(exc)) from None


class ExecAlgorithm(ABC):
    """Common state of the algorithms: the parent order and its children.

    Parameters
    ----------
    strategy
        The strategy the children belong to (attached to a run).
    instrument_id, side, quantity
        The parent order (quantity in base units, rounded down to whole lots).
    name
        Unique per strategy (names its timer); defaults to the class name and the number of
        algorithms the strategy created so far (``twap1``, ``iceberg2``), counted on from the
        numbers its journal holds after a restart (:func:`number_after`).
    """

    def __init__(
        self, strategy: Strategy, instrument_id: str, side: OrderSide, quantity: float, *, name: str | None = None
    ) -> None:
        instrument = strategy.ctx.instruments.get(instrument_id)
        if instrument is None:
            raise OrderError(f"{strategy.strategy_id}: unknown instrument {instrument_id!r}")
        lots = instrument.round_quantity(quantity)
        if not lots > 0:
            raise OrderError(f"{strategy.strategy_id}: parent quantity {quantity!r} is less than one lot")
        count = _created.get(strategy, 0) + 1
        _created[strategy] = count
        self.strategy = strategy
        self.instrument = instrument
        self.instrument_id = instrument_id
        self.side = side
        self.quantity = lots
        self.name = name or f"{type(self).__name__.lower()}{count}"
        self.status: AlgoStatus = "pending"
        self._refusals = 0
        self._cancel_sent: set[str] = set()
        self._cancel_reason = ""
        self._timer_armed = False
        self._began = False
        #: Interval of the algorithm's timer (a TWAP's slice interval, an iceberg's or chaser's poll).
        self._poll_ns = 1
        #: Client order ids of the children, in submission order.
        self.children: list[str] = []
        # Their orders: a daemon's order manager forgets a closed child once written out
        # (OrderManager.release) while the algorithm still sums what its children filled.
        self._children: list[Order] = []
        #: ``(time, client order id, quantity)`` of every child sent.
        self.sent: list[tuple[int, str, float]] = []
        #: Quantity left unfilled at the end as too small to send alone (see the module docstring).
        self.dust = 0.0

    # ------------------------------------------------------------------ children

    def _orders(self) -> list[Order]:
        return self._children

    @property
    def filled(self) -> float:
        """Quantity filled by the children."""
        return sum(o.filled_qty for o in self._orders())

    def committed(self) -> float:
        """Quantity filled or still working (refused children and canceled remainders excluded)."""
        total = 0.0
        for order in self._orders():
            status = order.status
            if status in _REFUSED:
                continue
            total += order.filled_qty if status in _CLOSED else order.quantity
        return total

    def working(self) -> list[Order]:
        """Children still working."""
        return [o for o in self._orders() if o.status not in _CLOSED]

    def _gave_up(self, max_retries: int) -> bool:
        """Count a refused last child (a child that was not refused resets the count).

        Returns ``True``, after failing the algorithm, when ``max_retries`` refusals came in a row.
        """
        orders = self._orders()
        if not orders or orders[-1].status not in _REFUSED:
            self._refusals = 0
            return False
        self._refusals += 1
        if self._refusals >= max_retries:
            self._finish(False)
            return True
        return False

    def _lots(self, quantity: float) -> float:
        return self.instrument.round_quantity(max(0.0, quantity))

    def _refusal(self, quantity: float, price: float) -> str | None:
        """Why the risk gate would refuse a child of ``quantity`` at ``price`` by the instrument's rules, or ``None``.

        ``price`` NaN is a market order, valued for the minimum notional at the last price as the gate does.
        """
        problem = self.instrument.validate_order(quantity, price)
        if problem is not None or price == price:
            return problem
        last = self.strategy.ctx.cache.price(self.instrument_id)
        minimum = self.instrument.min_notional
        notional = self.instrument.notional(quantity, last)
        if minimum > 0.0 and last > 0.0 and notional < minimum - 1e-12:
            return min_notional_reason(notional, minimum)
        return None

    def _ended_with_dust(self, left: float, price: float) -> bool:
        """End ``done`` with ``left`` as dust if the children filled part of the parent and a child of ``left``
        at ``price`` (NaN: market) would be refused; return whether it ended."""
        problem = self._refusal(left, price)
        if problem is None or not self.filled > 0:
            return False
        if self._refusal(self.quantity, price) is not None:
            return False  # the price is the problem (off the tick grid), not the size
        self._stop_timer()
        self.status = "done"
        self.dust = left
        self._ended()
        logger.warning(
            "{} {}: done with {} of {} filled; the remaining {} is not sent, an order of its own would be refused ({})",
            self.strategy.strategy_id, self.name, self._lots(self.filled), self.quantity, left, problem,
        )  # fmt: skip
        return True

    def _sent(self, client_order_id: str, quantity: float) -> str:
        self.children.append(client_order_id)
        self._children.append(self.strategy.ctx.orders.order(client_order_id))
        self.sent.append((self.strategy.ctx.clock.now_ns(), client_order_id, quantity))
        if self.status in ("canceling", "canceled"):  # canceled by a handler its own submission ran
            self._cancel_working()
            if self.status == "canceling" and not self._timer_armed:
                self._every(self._poll_ns, self.strategy.ctx.clock.now_ns() + self._poll_ns)
        return client_order_id

    def _cancel_child(self, order: Order, why: str) -> None:
        """Ask the venue to cancel a working child, once (again once the venue refused it: :meth:`_cancel_refused`)."""
        if order.client_order_id not in self._cancel_sent:
            self._cancel_sent.add(order.client_order_id)
            self.strategy.cancel(order.client_order_id, reason=self._reason(why))

    def _cancel_refused(self, event: OrderCancelRejected) -> None:
        """The venue refused the cancel of a child that works on: the next timer firing sends it again."""
        if event.client_order_id in self._cancel_sent:
            self._cancel_sent.discard(event.client_order_id)
            logger.info("{} {}: the venue refused the cancel of {} ({}); sent again at the next poll",
                        self.strategy.strategy_id, self.name, event.client_order_id, event.reason)  # fmt: skip

    # ------------------------------------------------------------------ stopping

    def cancel(self, reason: str = "") -> None:
        """Stop the algorithm: it sends nothing more and cancels its working children.

        It is ``canceled`` at once when no child works, otherwise ``canceling`` until the
        first of its timer firings that finds none working (the venue confirmed the cancels,
        or filled a child first: what a child filled meanwhile counts in :attr:`filled`);
        it then logs what was filled. A run that ends first leaves it ``unfinished``. An
        algorithm that already ended, or is already canceling, is left as it is; one canceled
        before it started cannot start.

        Parameters
        ----------
        reason
            Why, for the log and the children's cancels.
        """
        if self.status not in ("pending", "working"):
            logger.debug("{} {}: cancel ignored, the algorithm is {}", self.strategy.strategy_id, self.name,
                         self.status)  # fmt: skip
            return
        self._cancel_reason = reason
        if self.status == "pending":
            self._canceled()
            return
        self.status = "canceling"
        self._cancel_working()

    def _cancel_working(self) -> None:
        why = f"canceled: {self._cancel_reason}" if self._cancel_reason else "canceled"
        working = self.working()
        for order in working:
            self._cancel_child(order, why)
        if working:
            self.status = "canceling"
        elif self.status != "canceled":
            self._canceled()

    def _canceled(self) -> None:
        self._stop_timer()
        self.status = "canceled"
        self._ended()
        logger.info(
            "{} {}: canceled{} with {} of {} filled",
            self.strategy.strategy_id, self.name, f" ({self._cancel_reason})" if self._cancel_reason else "",
            self._lots(self.filled), self.quantity,
        )  # fmt: skip

    def _on_timer(self, event: TimeEvent) -> None:
        status = self.status
        if status == "working":
            self._tick(event)
        elif status == "canceling":
            self._cancel_working()  # a child whose cancel was refused is sent its cancel again

    def _begin(self) -> None:
        """Mark the algorithm working and have the end of the run report it if it is still working then.

        Raises
        ------
        OrderError
            If it was started before or canceled.
        """
        if self.status != "pending":
            raise OrderError(f"{self.strategy.strategy_id} {self.name}: cannot start, the algorithm is {self.status}")
        self.strategy.at_stop(self._run_ended)
        self.status = "working"
        self._began = True
        strategy = self.strategy
        strategy.ctx.bus.subscribe(OrderCancelRejected, self._cancel_refused, self.instrument_id)
        now = strategy.ctx.clock.now_ns()
        strategy.ctx.bus.publish(AlgoStarted(strategy.strategy_id, self.instrument_id, self.name, type(self).__name__,
                                             self.side, self.quantity, now, now))  # fmt: skip

    def _ended(self) -> None:
        """Publish (and so journal) the end of the algorithm: a restart then knows it no longer works."""
        if not self._began:
            return  # canceled before it started: nothing was journaled of it
        strategy = self.strategy
        strategy.ctx.bus.unsubscribe(OrderCancelRejected, self._cancel_refused, self.instrument_id)
        now = strategy.ctx.clock.now_ns()
        strategy.ctx.bus.publish(AlgoEnded(strategy.strategy_id, self.instrument_id, self.name, type(self).__name__,
                                           self.side, self.quantity, self.status, self._lots(self.filled), now, now,
                                           tuple(self.children)))  # fmt: skip

    def _run_ended(self) -> None:
        if self.status == "canceling" and not self.working():
            self._canceled()
        if self.status not in ("working", "canceling"):
            return
        self._stop_timer()
        self.strategy.ctx.bus.unsubscribe(OrderCancelRejected, self._cancel_refused, self.instrument_id)
        self.status = "unfinished"
        working = self._lots(sum(o.quantity - o.filled_qty for o in self.working()))
        logger.warning(
            "{} {}: the run ended before the algorithm: parent {} {} {}, {} filled, {} working, {} never sent",
            self.strategy.strategy_id, self.name, self.side.name, self.quantity, self.instrument_id,
            self._lots(self.filled), working, self._lots(self.quantity - self.committed()),
        )  # fmt: skip

    def _finish(self, ok: bool) -> None:
        if self.status != "working":
            return  # canceled by a handler of the child it just sent
        self._stop_timer()
        self.status = "done" if ok else "failed"
        self._ended()
        if not ok:
            logger.warning("{} {}: ended with {} of {} filled", self.strategy.strategy_id, self.name, self.filled,
                           self.quantity)  # fmt: skip

    @property
    def _timer_name(self) -> str:
        return f"{self.strategy.strategy_id}/{self.name}"

    def _every(self, interval_ns: int, start_ns: int) -> None:
        """Fire the algorithm's timer at ``start_ns`` and every ``interval_ns`` after it (replacing one set before)."""
        clock = self.strategy.ctx.clock
        clock.cancel(self._timer_name)
        clock.set_timer(self._timer_name, interval_ns, self._on_timer, start_ns - interval_ns)
        self._timer_armed = True

    def _stop_timer(self) -> None:
        self.strategy.ctx.clock.cancel(self._timer_name)
        self._timer_armed = False

    @abstractmethod
    def _tick(self, event: TimeEvent) -> None:
        """One scheduled step: send the next child order, or finish."""

    def _reason(self, what: str) -> str:
        return f"{self.name}: {what}"


class Twap(ExecAlgorithm):
    """Time-weighted: ``slices`` market orders at equal intervals over ``duration``.

    Slice ``i`` (at ``start + i * duration / slices``) brings what was sent (filled or
    working) up to ``quantity * (i + 1) / slices`` in whole lots; the last slice sends all
    that is left, and the algorithm ends when none of its children is working any more. A
    slice after which what is left would be refused as one market order (below the
    instrument's minimum quantity or notional at the last price) sends that too.
    Call :meth:`start` to begin (default: now; a start before now is refused).
    """

    def __init__(
        self,
        strategy: Strategy,
        instrument_id: str,
        side: OrderSide,
        quantity: float,
        *,
        duration: str | int,
        slices: int,
        name: str | None = None,
    ) -> None:
        super().__init__(strategy, instrument_id, side, quantity, name=name)
        if slices < 1:
            raise OrderError(f"{self.name}: slices must be >= 1, got {slices}")
        self.duration_ns = _ns(duration)
        self.slices = slices
        self.interval_ns = max(1, self.duration_ns // slices)
        self._poll_ns = self.interval_ns
        self.start_ns = 0
        self._cumulative = np.arange(1, slices + 1) / slices
        self._schedule_over = False

    def weights(self) -> np.ndarray:
        """Share of the parent per slice (equal here)."""
        return np.full(self.slices, 1.0 / self.slices)

    def start(self, at_ns: int | None = None) -> None:
        """Schedule the slices from ``at_ns`` (default: now).

        Raises
        ------
        OrderError
            If ``at_ns`` is before now (the slices scheduled in the past would all go out at once), or
            the algorithm was started before or canceled.
        """
        now = self.strategy.ctx.clock.now_ns()
        if at_ns is not None and at_ns < now:
            raise OrderError(
                f"{self.strategy.strategy_id} {self.name}: start {np.datetime64(at_ns, 'ns')} is before now "
                f"({np.datetime64(now, 'ns')}); its past slices would all be sent at once"
            )
        self._begin()
        self.start_ns = now if at_ns is None else at_ns
        weights = self.weights()
        self._cumulative = np.cumsum(weights) / weights.sum()
        self._every(self.interval_ns, self.start_ns)

    def slice_times(self) -> list[int]:
        """The scheduled time of every slice."""
        return [self.start_ns + i * self.interval_ns for i in range(self.slices)]

    def _tick(self, event: TimeEvent) -> None:
        if not self._schedule_over:
            i = min(self.slices - 1, (event.ts_event - self.start_ns) // self.interval_ns)
            last = i == self.slices - 1
            target = self.quantity if last else self.quantity * float(self._cumulative[i])
            committed = self.committed()
            need = self._lots(target - committed)
            rest = self._lots(self.quantity - committed - need)
            if not last and need > 0 and rest > 0 and self._refusal(rest, math.nan) is not None:
                need = self._lots(self.quantity - committed)  # what is left after it is too small to send alone
            if need > 0:
                reason = self._reason(f"slice {i + 1}")
                cid = self.strategy.submit_market(self.instrument_id, self.side, need, reason=reason, parent=self.name)
                self._sent(cid, need)
            if not last:
                return
            self._schedule_over = True
        if not self.working():  # a child the venue rejects or cancels now has no slice left to carry it
            self._finish(self._lots(self.quantity - self.filled) <= 0)


class Vwap(Twap):
    """Volume-weighted: like :class:`Twap`, slice sizes follow the historical volume profile.

    The weight of slice ``i`` is the mean volume of the strategy's history bars traded in the
    slice's interval ``[t_i, t_i + interval)`` modulo ``profile_period`` (default one day): as a
    bar is stamped at its close, the bars whose time within the period falls in
    ``(t_i, t_i + interval]``. Slices with no history get the mean of the others (all equal when
    the history has no volume). The strategy keeps the bars through
    :meth:`Strategy.history_sizes <tradebus.strategies.base.Strategy.history_sizes>`.
    """

    def __init__(
        self,
        strategy: Strategy,
        instrument_id: str,
        side: OrderSide,
        quantity: float,
        *,
        duration: str | int,
        slices: int,
        profile_period: str | int = "1d",
        name: str | None = None,
    ) -> None:
        super().__init__(strategy, instrument_id, side, quantity, duration=duration, slices=slices, name=name)
        self.period_ns = _ns(profile_period)

    def weights(self) -> np.ndarray:
        """Mean historical volume per slice interval (see the class docstring)."""
        bars = self.strategy.bars(instrument_id=self.instrument_id)
        phase = bars.ts % self.period_ns
        out = np.full(self.slices, np.nan)
        for i, t in enumerate(self.slice_times()):
            lo = t % self.period_ns
            hi = lo + self.interval_ns
            inside = ((phase > lo) & (phase <= hi)) | ((phase + self.period_ns > lo) & (phase + self.period_ns <= hi))
            if inside.any():
                out[i] = float(bars.volume[inside].mean())
        if np.isnan(out).all() or np.nansum(out) <= 0:
            return np.full(self.slices, 1.0 / self.slices)
        out[np.isnan(out)] = np.nanmean(out)
        return out / out.sum()


class Iceberg(ExecAlgorithm):
    """A limit order at ``price`` shown ``display`` at a time.

    One child limit order of ``min(display, left)`` works at a time; every ``poll`` the
    algorithm checks it: once it is filled the next one goes out; a refused child is sent
    again (up to ``max_retries`` refusals in a row, then the algorithm fails). A remainder
    the instrument would refuse as an order of its own (below its minimum quantity or its
    minimum notional at ``price``) goes out with the tip before it: the last tip is then
    ``display`` plus that remainder.

    Raises
    ------
    OrderError
        At construction, for a ``price`` that is not positive and finite or is off the instrument's
        tick grid, or a ``display`` or a parent quantity below one lot, the minimum quantity or the
        minimum notional at ``price``.
    """

    def __init__(
        self,
        strategy: Strategy,
        instrument_id: str,
        side: OrderSide,
        quantity: float,
        *,
        price: float,
        display: float,
        poll: str | int = "1m",
        max_retries: int = 3,
        name: str | None = None,
    ) -> None:
        super().__init__(strategy, instrument_id, side, quantity, name=name)
        self.display = self._lots(display)
        if not self.display > 0:
            raise OrderError(f"{self.name}: display {display!r} is less than one lot")
        if not (price > 0 and math.isfinite(price)):
            raise OrderError(f"{self.name}: limit price must be a positive finite number, got {price!r}")
        problem = self.instrument.validate_order(self.display, price)
        if problem is not None:  # every child would be denied for it
            raise OrderError(f"{self.name}: {problem} ({instrument_id})")
        problem = self.instrument.validate_order(self.quantity, price)
        if problem is not None:  # a parent smaller than display: its one tip would be denied
            raise OrderError(f"{self.name}: parent quantity {self.quantity}: {problem} ({instrument_id})")
        self.price = price
        self.poll_ns = self._poll_ns = _ns(poll)
        self.max_retries = max_retries

    def start(self) -> None:
        """Send the first child and start polling."""
        self._begin()
        self._next()
        if self.status == "working":  # not canceled by a handler of its first child
            self._every(self.poll_ns, self.strategy.ctx.clock.now_ns() + self.poll_ns)

    def _next(self) -> None:
        left = self._lots(self.quantity - self.committed())
        if left <= 0 or self._ended_with_dust(left, self.price):
            return
        size = min(self.display, left)
        rest = self._lots(left - size)
        if rest > 0 and self.instrument.validate_order(rest, self.price) is not None:
            size = left
        cid = self.strategy.submit_limit(self.instrument_id, self.side, size, self.price, reason=self._reason("tip"),
                                         parent=self.name)  # fmt: skip
        self._sent(cid, size)

    def _tick(self, event: TimeEvent) -> None:
        if self.working() or self._gave_up(self.max_retries):
            return
        if self._lots(self.quantity - self.filled) <= 0:
            self._finish(True)
            return
        self._next()


class LimitChaser(ExecAlgorithm):
    """A post-only limit at the touch, moved to the touch again while it is not filled.

    The touch is the best bid (buy) or ask (sell) of the latest quote; a run without quotes
    uses the latest price one tick away (below for a buy). Every ``poll`` the working child is
    moved (:meth:`Strategy.modify <tradebus.strategies.base.Strategy.modify>`) to the touch if
    it moved; a child rejected for crossing (post-only) or denied is sent again at the touch.
    After ``timeout`` (if given) the child is canceled and, at the first poll that finds it
    closed (the venue confirmed the cancel, or filled it first), the algorithm ends; with
    ``on_timeout="market"`` it sends what is still unfilled as a market order first, and ends
    at the first poll that finds that order closed (``failed`` unless it filled the rest). A partly
    filled child whose rest the risk gate would refuse to move (below the instrument's minimum
    at the new touch) is canceled instead, and that rest ends the algorithm as its dust.

    Raises
    ------
    OrderError
        At construction, for an ``on_timeout`` other than ``"market"`` or ``"cancel"``.
    """

    def __init__(
        self,
        strategy: Strategy,
        instrument_id: str,
        side: OrderSide,
        quantity: float,
        *,
        poll: str | int = "1m",
        timeout: str | int | None = None,
        on_timeout: Literal["market", "cancel"] = "market",
        max_retries: int = 5,
        name: str | None = None,
    ) -> None:
        super().__init__(strategy, instrument_id, side, quantity, name=name)
        if on_timeout not in ("market", "cancel"):
            raise OrderError(f"{self.name}: on_timeout must be 'market' or 'cancel', got {on_timeout!r}")
        self.poll_ns = self._poll_ns = _ns(poll)
        self.timeout_ns = None if timeout is None else _ns(timeout)
        self.on_timeout = on_timeout
        self.max_retries = max_retries
        self._deadline: int | None = None
        self._fallback_sent = False
        #: ``(time, price)`` of every placement and move of the child.
        self.prices: list[tuple[int, float]] = []

    def touch(self) -> float:
        """The price to rest at now (see the class docstring)."""
        cache = self.strategy.ctx.cache
        quote = cache.quote(self.instrument_id)
        if quote is not None:
            return quote.bid_price if self.side is OrderSide.BUY else quote.ask_price
        last = cache.price(self.instrument_id)
        if not (last > 0 and math.isfinite(last)):
            raise OrderError(f"{self.name}: no price for {self.instrument_id} to rest at")
        tick = self.instrument.tick_size
        return self.instrument.round_price(last - tick if self.side is OrderSide.BUY else last + tick)

    def start(self) -> None:
        """Rest the first child at the touch and start polling."""
        now = self.strategy.ctx.clock.now_ns()
        self._begin()
        self._deadline = None if self.timeout_ns is None else now + self.timeout_ns
        self._place()
        if self.status == "working":  # not canceled by a handler of its first child
            self._every(self.poll_ns, now + self.poll_ns)

    def _place(self) -> None:
        left = self._lots(self.quantity - self.committed())
        if left <= 0:
            return
        price = self.touch()
        if self._ended_with_dust(left, price):
            return
        cid = self.strategy.submit_limit(self.instrument_id, self.side, left, price, post_only=True,
                                         reason=self._reason("rest at the touch"), parent=self.name)  # fmt: skip
        self._sent(cid, left)
        self.prices.append((self.strategy.ctx.clock.now_ns(), price))

    def _tick(self, event: TimeEvent) -> None:
        now = event.ts_event
        working = self.working()
        if self._lots(self.quantity - self.filled) <= 0 and not working:
            self._finish(True)
            return
        if self._deadline is not None and now >= self._deadline:
            for order in working:
                self._cancel_child(order, "timeout")  # once, again if the venue refused it
            if self.working():
                return  # until the venue confirms the cancel the child may still fill
            left = self._lots(self.quantity - self.filled)
            if self.on_timeout == "market" and left > 0 and not self._fallback_sent:
                self._fallback_sent = True
                if self._ended_with_dust(left, math.nan):
                    return
                cid = self.strategy.submit_market(self.instrument_id, self.side, left,
                                                  reason=self._reason("timeout: market"), parent=self.name)  # fmt: skip
                self._sent(cid, left)
                if self.working():
                    return  # its fill, or its denial, rejection or cancel, decides how the algorithm ends
            self._finish(self._lots(self.quantity - self.filled) <= 0)
            return
        if working:
            order = working[0]
            price = self.touch()
            if order.order_type is OrderType.LIMIT and price != order.price:
                rest = self._lots(order.quantity - order.filled_qty)
                if order.filled_qty > 0 and self._refusal(rest, price) is not None:
                    self._cancel_child(order, "remainder too small to move")  # it ends as dust once canceled
                    return
                self.strategy.modify(order.client_order_id, price=price)
                self.prices.append((now, price))
            return
        if not self._gave_up(self.max_retries):
            self._place()

