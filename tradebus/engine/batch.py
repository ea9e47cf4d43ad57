"""The backtest batch loop: :meth:`Kernel.run <tradebus.engine.kernel.Kernel.run>`, optimised.

:class:`BatchLoop` walks ``Replay.batches()`` (or ``Replay.mixed_batches()``) and produces
exactly the orders, fills and equity samples that :meth:`Kernel.process` would on the same
messages, faster:

- columns of a batch are read as Python lists (by the sparse trade loop, which visits few rows,
  through memoryviews) and bars are built positionally;
- a batch's features are computed in one compiled call (``FeatureBank.run_bars``); row *i*
  only uses rows <= *i* and is exposed to the strategy only when bar *i* is delivered, so
  there is no lookahead;
- the execution engine is skipped while no order is working (it would only mark prices; the
  breakers that evaluate marks wait for a time's end, where :meth:`Kernel.before_time` marks
  the portfolio at the cached prices first, and only when their answer could change: it
  returns the time to call it next and :attr:`Kernel.mark_band` the prices beyond which the
  loop calls it at the next time, as it does after a fill, a funding, a liquidation check or
  a timer). The loop remembers what it
  skipped, and :meth:`BatchLoop.catch_up` (called by :meth:`Kernel.submit` before the next
  order) makes the skipped marks and tells the simulated venue each instrument's latest bar
  close (the open of the next bar, before which a bar order cannot fill) and latest trade.
  Orders must therefore go through :meth:`Kernel.submit` (the strategy helpers do); the
  kernel marks before each equity sample and when a strategy asks for its equity
  (:meth:`Kernel.sync_marks`);
- the clock is moved by assignment (its timer heap is consulted only when a timer is due),
  after one vectorised check that the batch's times are in order;
- the cyclic garbage collector runs rarely during the loop (see :func:`rare_gc`);
- a batch with a bar close or trade price the portfolio does not mark at goes through
  :meth:`Kernel.process` (see :func:`_markable`).

Trade batches take the same path (features by ``FeatureBank.run_trades``; while nothing is
working the simulated venue is not shown the trades, and before the next order it is shown
each skipped instrument's latest trade, the only one whose price it would have kept; when every
subscriber declares the rows where it acts, :func:`~tradebus.strategies.base.wakes_at`, the
loop visits only those and the rows where something else is due, see :func:`_next_row`; one
instrument's bars do the same without perpetuals and bar histories, :meth:`BatchLoop._sparse_bars`), except
with perpetuals or bars built from trades, whose settlement and bar building act between
trades: those go through :meth:`Kernel.process` one at a time. A lone margin spot instrument
stays in the batch: its liquidation is checked at the trades priced at or beyond the bounds
the liquidation price gives (:attr:`Perpetuals.lo`, :attr:`Perpetuals.hi`) and at every trade
shown to the venue (a fill of any instrument moves the wallet that backs it); bar loops check
any watched position's at closes beyond the same bounds. As in :meth:`Kernel.process`, due
funding is settled and liquidation checked after a bar's handlers, so an order decided on
the liquidating bar is canceled by the liquidation. Several instruments' bars
(``mixed_bars`` batches) are walked with one *lane* per instrument.

When every subscriber of an instrument's bars or trades is declared
:func:`~tradebus.strategies.base.feature_only` (it reads neither its message nor the cache's
latest bar or trade), the *lean* loops call them with ``None`` and build a bar or trade only
when something may read one (see :meth:`BatchLoop._lean_bars`).

The loop reads the kernel's parts (clock, cache, banks, histories, bus, execution engine,
order manager, perpetuals, result) and calls back only its public methods (``process``,
``before_time``, ``extend_span``, ``instrument_key``, ``sync_marks``).
"""

from __future__ import annotations

import gc
import math
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from itertools import repeat
from typing import TYPE_CHECKING, Any

import numpy as np
from numba import njit

from tradebus.engine.cache import FeatureView
from tradebus.engine.clock import SimulatedClock
from tradebus.engine.history import History
from tradebus.engine.messages import (
    Bar,
    OrderAccepted,
    OrderAnomaly,
    OrderCanceled,
    OrderDenied,
    OrderExpired,
    OrderFilled,
    OrderModified,
    OrderModifyRejected,
    OrderRejected,
    OrderResolved,
    OrderSubmitted,
    OrderTimedOut,
    OrderTriggered,
    PositionChanged,
    PositionLiquidated,
    Trade,
)
from tradebus.errors import DataError
from tradebus.execution.simulated import SimulatedVenue
from tradebus.strategies.base import is_feature_only, wake_rows

if TYPE_CHECKING:
    from tradebus.engine.kernel import Kernel, ReplayLike

__all__ = ["BatchLoop", "rare_gc"]

#: Bar batches shorter than this go through :meth:`Kernel.process` row by row.
_SMALL_BATCH = 16

#: What the execution side may publish while the venue is shown a bar (a submission, and so a
#: denial, comes only from a handler of one of these).
_VENUE_EVENTS = (
    OrderAccepted, OrderRejected, OrderTriggered, OrderModified, OrderModifyRejected, OrderFilled, OrderCanceled,
    OrderExpired, OrderTimedOut, OrderResolved, OrderAnomaly, PositionChanged, PositionLiquidated,
)  # fmt: skip


class BatchLoop:
    """The optimised backtest loop of one kernel, and what it skipped while nothing worked.

    Parameters
    ----------
    kernel
        The kernel whose parts the loop drives (it builds its loop in its constructor).

    Attributes
    ----------
    needs_execution
        Whether the loop must show the execution engine the next bar or trade: an order may be
        working. Set by :meth:`catch_up` on every order (and every :meth:`Kernel.trading_state`);
        cleared at the next bar or trade once no order is working (a denied order leaves none).
    idle_trades
        Instruments whose latest trades the loop did not show the (simulated) venue.
    lagging
        Instruments whose bars the several-instrument loop did not show the venue while an
        order worked on another one.
    """

    __slots__ = ("bar_closes", "idle_trades", "kernel", "lagging", "lazy", "needs_execution")

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.needs_execution = False
        self.idle_trades: set[str] = set()
        self.lagging: set[str] = set()
        # A lean loop (feature-only subscribers, see _lean_bars) builds no bar or trade per row;
        # lazy() puts the current row's object in the cache when something may read it.
        self.lazy: Callable[[], None] | None = None
        # A lean loop that leaves the cache behind on an order (see _lean_mixed) says where an
        # instrument's latest delivered bar closed when its rows know better than the cache
        # (None: the cache's latest bar says it).
        self.bar_closes: Callable[[str], int | None] | None = None
        venue = kernel.venue
        if isinstance(venue, SimulatedVenue) and venue.config.fill_on == "bars":
            venue.bar_close_of = self.bar_close_of

    def bar_close_of(self, instrument_id: str) -> int | None:
        """Where the instrument's latest delivered bar closed (``ts_init``; ``None``: no bar yet).

        The simulated venue asks when an action for the instrument is queued (the next bar
        opens there): the loop does not show it the bars it skips while nothing works.
        """
        closes = self.bar_closes
        if closes is not None:
            close = closes(instrument_id)
            if close is not None:
                return close
        bar = self.kernel.cache.bars.get(instrument_id)
        return None if bar is None else bar.ts_init

    def catch_up(self) -> None:
        """Before an order: make up for what the loop skipped (a no-op once caught up).

        Marks the portfolio and the risk gate at the latest prices and shows the simulated
        venue each idle instrument's latest trade, which leaves the venue as
        :meth:`Kernel.process` would have (the venue asks where a bar closed when it needs
        to, :meth:`bar_close_of`).
        """
        k = self.kernel
        if self.lazy is not None:
            self.lazy()
        if not self.needs_execution:
            # The loop skipped the execution engine on this bar: catch up on its marks.
            k.sync_marks()
            if self.idle_trades:
                # Trades the loop did not show the venue: with nothing working it would
                # only have kept the last one's price (the reference of the next arrival).
                for iid in self.idle_trades:
                    k.venue.on_trade(k.cache.trades[iid])  # type: ignore[attr-defined]
                self.idle_trades.clear()
            self.lagging.clear()
            self.needs_execution = True
        elif self.lagging:
            # Bars of instruments with nothing working, skipped while another one had an order.
            k.sync_marks()
            self.lagging.clear()

    @staticmethod
    def batches(replay: ReplayLike) -> Iterator[Any]:
        """The batches of ``replay`` the loop walks (``mixed_batches()`` where the replay has them)."""
        mixed = getattr(replay, "mixed_batches", None)
        return iter(mixed() if mixed is not None else replay.batches())

    def run(self, batches: Iterable[Any], on_batch: Callable[[int], None] | None = None) -> None:
        """Feed every batch of :meth:`batches` through the kernel (started; the caller stops it).

        Raises
        ------
        DataError
            If a batch names an unknown instrument.
        """
        k = self.kernel
        with rare_gc():
            for batch in batches:
                kind = batch.kind
                for iid in batch.instrument_ids if kind == "mixed_bars" else (batch.instrument_id,):
                    if iid not in k.instruments:
                        raise DataError(f"kernel: replay batch for unknown instrument {iid!r}")
                if kind == "bars":
                    self.bars(batch)
                elif kind == "mixed_bars":
                    self.mixed_bars(batch)
                elif kind == "trades":
                    self.trades(batch)
                else:
                    for msg in batch.messages():  # quotes, book, mark prices, funding, open interest
                        k.process(msg)
                if on_batch is not None:
                    on_batch(len(batch.ts_init))

    def bars(self, batch: Any) -> None:
        """One instrument's run of bars."""
        k = self.kernel
        n = len(batch.ts_init)
        clock = k.clock
        assert isinstance(clock, SimulatedClock)
        if n < _SMALL_BATCH or not _ordered_from(batch, clock.current_ns) or not _markable(batch.close):
            # Interleaved sources give runs of a few rows: per-batch set-up would dominate.
            # Out-of-order times (not from a Replay) take the path that never moves time back.
            # A close the portfolio cannot mark at (see _markable) leaves its last good one there.
            for bar in batch.messages():
                k.process(bar)
            return
        iid = k.instrument_key(batch.instrument_id)
        if k.perpetuals is not None:
            k.perpetuals.note_bars(iid, batch.ts_event)  # where a bar after a gap opens
        if iid not in k.cache.prices:
            k.note_first_price(iid, int(batch.ts_init[0]), float(batch.close[0]))
        view, live, out, deliver, history = self._bar_lane(
            iid, batch.ts_event, batch.open, batch.high, batch.low, batch.close, batch.volume
        )
        ts_init = batch.ts_init.tolist()
        handlers = k.bus.handlers(Bar, iid)
        lean = _lean(handlers)
        # Sparse: every handler declares where it acts (wakes_at), and no staged history or
        # perpetual acts on the rows between.
        wake = _wake_rows(handlers, iid, out, n) if lean and history is None and k.perpetuals is None else None
        if wake is not None:
            self._sparse_bars(batch, iid, ts_init, out, wake, view, deliver)  # type: ignore[arg-type]
        else:
            # Column lists zipped back into one tuple per row as the loop goes: no n-element list
            # of lists for the garbage collector to walk.
            features: Iterator[Any] = repeat((), n) if out is None else zip(*out.T.tolist(), strict=True)
            if lean:
                self._lean_bars(batch, iid, ts_init, features, view, deliver)
            else:
                self._full_bars(batch, iid, ts_init, features, view, deliver)
        if history is not None:
            history.end_batch()
        if live is not None:
            view.row = live

    def _full_bars(
        self,
        batch: Any,
        iid: str,
        ts_init: list[int],
        features: Iterator[Any],
        view: FeatureView,
        deliver: Callable[[Bar | None], None],
    ) -> None:
        """The bar loop that builds every bar (its subscribers read them)."""
        k = self.kernel
        clock = k.clock
        assert isinstance(clock, SimulatedClock)
        n = len(ts_init)
        # Historical bars usually have ts_event == ts_init: share the int objects.
        ts_event = ts_init if np.array_equal(batch.ts_event, batch.ts_init) else batch.ts_event.tolist()
        execution_on_bar = k.execution.on_bar
        mark = k.execution.mark
        cache_bars = k.cache.bars
        cache_prices = k.cache.prices
        count_open = k.orders.count_open
        perps = k.perpetuals
        advance = clock.advance_to
        watch = k.watch_ns
        marks = k.risk_config.breakers_on_marks  # else before_time only samples: no recheck
        band_lo, band_hi = k.price_band(iid)
        result = k.result
        k.extend_span(ts_init[0], int(batch.ts_event.min()), int(batch.ts_event.max()))
        for te, ti, o, h, lo, c, v, row in zip(
            ts_event,
            ts_init,
            batch.open.tolist(),
            batch.high.tolist(),
            batch.low.tolist(),
            batch.close.tolist(),
            batch.volume.tolist(),
            features,
            strict=True,
        ):
            if ti >= watch:
                watch = k.before_time(ti)
                band_lo, band_hi = k.price_band(iid)
            if ti < clock.next_due:
                clock.current_ns = ti  # ordered batch, no timer due: nothing else to do
            else:
                advance(ti)
                watch = ti + 1  # a timer may move equity (interest): the breakers see it next time
            if perps is not None and ti > perps.next_funding_ns:
                # before its fills, unless held for its bar (Perpetuals)
                perps.settle_due(ti, before=True, bar=iid, opening=o, closing=te)
                watch = ti + 1
            bar = Bar(iid, te, ti, o, h, lo, c, v)
            # priced: the portfolio is marked at this close (a watched position is checked below)
            priced = self.needs_execution
            if priced:
                execution_on_bar(bar)
                self.needs_execution = count_open() > 0
                if marks:
                    watch = ti + 1  # a fill moves equity
            elif perps is not None and (c <= perps.lo or c >= perps.hi):
                mark(iid, c)  # a watched position may be liquidated at this close
                priced = True
            if marks and (c <= band_lo or c >= band_hi):
                watch = ti + 1  # a breaker may trip or its peak rise at this close
            cache_bars[iid] = bar
            cache_prices[iid] = c
            view.row = row
            deliver(bar)
            if perps is not None:  # after the handlers, as process() settles and then checks
                if ti >= perps.next_funding_ns:
                    perps.settle_due(ti)
                    watch = ti + 1
                if priced and perps.watching:
                    perps.check(ti)
                    watch = ti + 1
        result.bars += n
        result.end_ns = ts_init[-1]

    def _lean_bars(
        self,
        batch: Any,
        iid: str,
        ts_init: list[int],
        features: Iterator[Any],
        view: FeatureView,
        deliver: Callable[[Bar | None], None],
    ) -> None:
        """The bar loop for subscribers that read no bar (:func:`~tradebus.strategies.base.feature_only`).

        A bar is built only when something may read it: the execution engine while an order
        works, an order's catch-up (:meth:`catch_up`), a due timer (the previous bar) and the end
        of the batch. While it needs execution the cache is current: it comes to need it only through an
        order, whose catch-up cached the bar it was decided on. When no handler an order's
        submission or the venue's events reach reads a cached bar (see :meth:`_blind`), the
        catch-up builds none: the venue reads the bar's close from the row (``bar_closes``),
        and the cache lags by that one bar until the next one is matched.
        """
        k = self.kernel
        clock = k.clock
        assert isinstance(clock, SimulatedClock)
        n = len(ts_init)
        cache_bars = k.cache.bars
        bar_at = _bar_reader(batch, ts_init)

        def materialize(j: int) -> None:
            if j >= 0:
                cache_bars[iid] = bar_at(iid, j)

        execution_on_bar = k.execution.on_bar
        mark = k.execution.mark
        cache_prices = k.cache.prices
        count_open = k.orders.count_open
        perps = k.perpetuals
        advance = clock.advance_to
        watch = k.watch_ns
        marks = k.risk_config.breakers_on_marks  # else before_time only samples: no recheck
        band_lo, band_hi = k.price_band(iid)
        result = k.result
        k.extend_span(ts_init[0], int(batch.ts_event.min()), int(batch.ts_event.max()))
        # The current row, read by lazy() or closes() (a cell: the loop stores it without an
        # attribute write).
        j = -1  # before the first row: the cache holds the previous batch's last bar
        if self._blind((iid,), *_VENUE_EVENTS, OrderSubmitted, OrderDenied):

            def closes(instrument_id: str) -> int | None:
                # What materialize(j) would put in the cache (None: the cache holds it already).
                return ts_init[j] if instrument_id == iid and j >= 0 else None

            self.bar_closes = closes
        else:
            self.lazy = lambda: materialize(j)
        try:
            for j, ti, c, row in zip(range(n), ts_init, batch.close.tolist(), features, strict=True):
                if ti >= watch:
                    watch = k.before_time(ti)
                    band_lo, band_hi = k.price_band(iid)
                if ti < clock.next_due:
                    clock.current_ns = ti
                else:
                    # A timer's callback may read the latest bar: until this row is delivered,
                    # that is the previous one (for lazy() too).
                    j -= 1
                    materialize(j)
                    advance(ti)
                    j += 1
                    watch = ti + 1  # see _full_bars
                if perps is not None and ti > perps.next_funding_ns:
                    j -= 1  # its handlers see the previous bar, as a timer's
                    materialize(j)
                    # before its fills, unless held for its bar (Perpetuals)
                    perps.settle_due(ti, before=True, bar=iid, opening=float(batch.open[j + 1]),
                                     closing=int(batch.ts_event[j + 1]))
                    j += 1
                    watch = ti + 1
                priced = self.needs_execution
                if priced:
                    bar = bar_at(iid, j)
                    execution_on_bar(bar)
                    self.needs_execution = count_open() > 0
                    cache_bars[iid] = bar
                    if marks:
                        watch = ti + 1
                elif perps is not None and (c <= perps.lo or c >= perps.hi):
                    mark(iid, c)
                    priced = True
                if marks and (c <= band_lo or c >= band_hi):
                    watch = ti + 1
                cache_prices[iid] = c
                view.row = row
                deliver(None)
                if perps is not None:  # after the handlers, as process() settles and then checks
                    if ti >= perps.next_funding_ns:
                        perps.settle_due(ti)
                        watch = ti + 1
                    if priced and perps.watching:
                        perps.check(ti)
                        watch = ti + 1
        finally:
            self.lazy = None
            self.bar_closes = None
        materialize(n - 1)
        result.bars += n
        result.end_ns = ts_init[-1]

    def _sparse_bars(
        self,
        batch: Any,
        iid: str,
        ts_init: list[int],
        out: np.ndarray,
        wake: list[int],
        view: FeatureView,
        deliver: Callable[[Bar | None], None],
    ) -> None:
        """The lean bar loop that visits only the rows where something may happen (no perpetuals, no history).

        Those are the rows ``wake`` lists (where a handler may act, :func:`~tradebus.strategies.base.wakes_at`),
        every row while an order works, and the rows where something else is due (:func:`_next_row`: a
        timer, :meth:`Kernel.before_time <tradebus.engine.kernel.Kernel.before_time>`, a close at or beyond
        :attr:`Kernel.mark_band <tradebus.engine.kernel.Kernel.mark_band>`). The rows skipped leave the
        clock, the cache's price and the feature view at the last of them before the next row is visited,
        as delivering them would have; the cache's bar is built as :meth:`_lean_bars` builds it.
        """
        k = self.kernel
        clock = k.clock
        assert isinstance(clock, SimulatedClock)
        n = len(ts_init)
        cache_bars = k.cache.bars
        bar_at = _bar_reader(batch, ts_init)

        def materialize(j: int) -> None:
            if j >= 0:
                cache_bars[iid] = bar_at(iid, j)

        execution_on_bar = k.execution.on_bar
        cache_prices = k.cache.prices
        count_open = k.orders.count_open
        advance = clock.advance_to
        watch = k.watch_ns
        marks = k.risk_config.breakers_on_marks
        band_lo, band_hi = k.price_band(iid)
        result = k.result
        k.extend_span(ts_init[0], int(batch.ts_event.min()), int(batch.ts_event.max()))
        close_values = np.ascontiguousarray(batch.close, dtype=np.float64)
        closes = _indexable(close_values)
        span = (float(close_values.min()), float(close_values.max()))  # NaN if a close is NaN
        rows = _FeatureRows(out)
        pending = 0  # the index in wake of the next row a handler may act on
        j = -1  # the current row, read by lazy() or bar_closes() (see _lean_bars)
        if self._blind((iid,), *_VENUE_EVENTS, OrderSubmitted, OrderDenied):

            def closed(instrument_id: str) -> int | None:
                return ts_init[j] if instrument_id == iid and j >= 0 else None

            self.bar_closes = closed
        else:
            self.lazy = lambda: materialize(j)
        try:
            nxt = 0
            while nxt < n:
                if nxt > j + 1:
                    q = nxt - 1
                    clock.current_ns = ts_init[q]
                    cache_prices[iid] = closes[q]
                    view.row = rows[q]
                j = nxt
                ti = ts_init[j]
                c = closes[j]
                if ti >= watch:
                    watch = k.before_time(ti)
                    band_lo, band_hi = k.price_band(iid)
                if ti < clock.next_due:
                    clock.current_ns = ti
                else:
                    j -= 1  # a timer's callback sees the previous bar (see _lean_bars)
                    materialize(j)
                    advance(ti)
                    j += 1
                    watch = ti + 1
                if self.needs_execution:
                    bar = bar_at(iid, j)
                    execution_on_bar(bar)
                    self.needs_execution = count_open() > 0
                    cache_bars[iid] = bar
                    if marks:
                        watch = ti + 1
                if marks and (c <= band_lo or c >= band_hi):
                    watch = ti + 1
                cache_prices[iid] = c
                view.row = rows[j]
                deliver(None)
                nxt = j + 1
                if self.needs_execution or nxt >= n:
                    continue
                while wake[pending] < nxt:
                    pending += 1
                nxt = _next_row(ts_init, close_values, nxt, wake[pending], min(watch, clock.next_due), band_lo, band_hi, span)
            if j < n - 1:
                q = n - 1
                clock.current_ns = ts_init[q]
                cache_prices[iid] = closes[q]
                view.row = rows[q]
                j = q
        finally:
            self.lazy = None
            self.bar_closes = None
        materialize(n - 1)
        result.bars += n
        result.end_ns = ts_init[-1]

    def _blind(self, instrument_ids: Iterable[str], *events: type) -> bool:
        """Whether every handler of ``events`` on these instruments reads no cached bar.

        The kernel's bookkeeping and handlers declared
        :func:`~tradebus.strategies.base.feature_only` read none.
        """
        k = self.kernel
        own = k.bookkeeping
        return all(
            handler in own or is_feature_only(handler)
            for cls in events
            for iid in instrument_ids
            for handler in k.bus.handlers(cls, iid)
        )

    def _bar_lane(
        self, iid: str, ts_event: np.ndarray, o: np.ndarray, h: np.ndarray, lo: np.ndarray, c: np.ndarray, v: np.ndarray
    ) -> tuple[FeatureView, Any, np.ndarray | None, Callable[[Bar], None], History | None]:
        """Set up the batch loop's delivery of one instrument's bars (in order, any other rows between).

        Returns the instrument's feature view, its live row to restore after the batch (``None``:
        no bank), the feature values of every bar (one row per bar; ``None``: no bank), the
        delivery to the subscribers and the staged history (end its batch afterwards; ``None``:
        no bar history).
        """
        k = self.kernel
        bank = k.banks.get(iid)
        view = k.cache.feature_views.get(iid)
        out = None
        if bank is not None and view is not None:
            live = view.row
            # Until row i's bar is delivered, the strategy sees the values from before the batch.
            view.row = live.tolist()  # type: ignore[union-attr]
            out = bank.run_bars(ts_event, o, h, lo, c, v)
        else:
            view, live = FeatureView(()), None  # a throwaway view keeps the loop free of branches
        deliver = _fan_out(k.bus.handlers(Bar, iid))
        history = k.histories.get(iid)
        if history is not None and history.bar_capacity:
            # The batch is staged whole; each delivered bar makes one more row visible.
            history.begin_batch(ts_event, np.column_stack((o, h, lo, c, v)))
            deliver = _advancing(history, deliver)
        else:
            history = None
        return view, live, out, deliver, history

    def mixed_bars(self, batch: Any) -> None:
        """The loop of :meth:`bars` over rows of several instruments (``Replay.mixed_batches``)."""
        k = self.kernel
        n = len(batch.ts_init)
        clock = k.clock
        assert isinstance(clock, SimulatedClock)
        if n < _SMALL_BATCH or not _ordered_from(batch, clock.current_ns) or not _markable(batch.close):
            for bar in batch.messages():
                k.process(bar)
            return
        source = batch.source
        lanes: list[tuple[str, FeatureView, Callable[[Bar], None]] | None] = []
        values: list[tuple[np.ndarray, np.ndarray | None]] = []
        ends: list[tuple[FeatureView, Any, History | None]] = []
        for s, instrument_id in enumerate(batch.instrument_ids):
            rows = np.flatnonzero(source == s)
            if not rows.size:
                lanes.append(None)
                continue
            iid = k.instrument_key(instrument_id)
            if k.perpetuals is not None:
                k.perpetuals.note_bars(iid, batch.ts_event[rows])  # where a bar after a gap opens
            if iid not in k.cache.prices:
                k.note_first_price(iid, int(batch.ts_init[rows[0]]), float(batch.close[rows[0]]))
            view, live, out, deliver, history = self._bar_lane(
                iid,
                batch.ts_event[rows],
                batch.open[rows],
                batch.high[rows],
                batch.low[rows],
                batch.close[rows],
                batch.volume[rows],
            )
            lanes.append((iid, view, deliver))
            values.append((rows, out))
            ends.append((view, live, history))
        ts_init = batch.ts_init.tolist()
        features = _rows_in_order(n, values)
        k.extend_span(ts_init[0], int(batch.ts_event.min()), int(batch.ts_event.max()))
        if all(lane is None or _lean(k.bus.handlers(Bar, lane[0])) for lane in lanes):
            self._lean_mixed(batch, lanes, ts_init, features)
        else:
            self._full_mixed(batch, lanes, ts_init, features)
        k.result.bars += n
        k.result.end_ns = ts_init[-1]
        for view, live, history in ends:
            if history is not None:
                history.end_batch()
            if live is not None:
                view.row = live

    def _full_mixed(self, batch: Any, lanes: list[Any], ts_init: list[int], features: Iterator[Any]) -> None:
        """The loop of :meth:`mixed_bars` that builds every bar (its subscribers read them)."""
        k = self.kernel
        clock = k.clock
        assert isinstance(clock, SimulatedClock)
        ts_event = ts_init if np.array_equal(batch.ts_event, batch.ts_init) else batch.ts_event.tolist()
        execution_on_bar = k.execution.on_bar
        mark = k.execution.mark
        cache_bars = k.cache.bars
        cache_prices = k.cache.prices
        orders = k.orders
        working = orders.working_instruments
        perps = k.perpetuals
        advance = clock.advance_to
        watch = k.watch_ns
        marks = k.risk_config.breakers_on_marks  # else before_time only samples: no recheck
        band_iid, band_lo, band_hi = k.mark_band
        # While an order works on one instrument, the others' bars skip the execution engine
        # too (unless marks matter or perpetuals are watched); see submit().
        every_bar = perps is not None
        lagging = self.lagging
        for s, te, ti, o, h, lo, c, v, row in zip(
            batch.source.tolist(),
            ts_event,
            ts_init,
            batch.open.tolist(),
            batch.high.tolist(),
            batch.low.tolist(),
            batch.close.tolist(),
            batch.volume.tolist(),
            features,
            strict=True,
        ):
            iid, view, deliver = lanes[s]
            if ti >= watch:
                watch = k.before_time(ti)
                band_iid, band_lo, band_hi = k.mark_band
            if ti < clock.next_due:
                clock.current_ns = ti
            else:
                advance(ti)
                watch = ti + 1  # see _full_bars
            if perps is not None and ti > perps.next_funding_ns:
                # before its fills, unless held for its bar (Perpetuals)
                perps.settle_due(ti, before=True, bar=iid, opening=o, closing=te)
                watch = ti + 1
            bar = Bar(iid, te, ti, o, h, lo, c, v)
            priced = False
            if self.needs_execution:
                if marks:
                    watch = ti + 1
                if every_bar or iid in working:
                    execution_on_bar(bar)
                    self.needs_execution = orders.count_open() > 0
                    priced = True
                elif working:
                    lagging.add(iid)  # nothing works on it: shown to the venue before the next order
                else:
                    # Nothing works at all (the order was denied, or trading_state() caught up):
                    # as after a single-instrument loop's bar, the engine is skipped from here.
                    self.needs_execution = False
            elif perps is not None and (c <= perps.lo or c >= perps.hi):
                mark(iid, c)
                priced = True
            if marks and iid == band_iid and (c <= band_lo or c >= band_hi):
                watch = ti + 1
            cache_bars[iid] = bar
            cache_prices[iid] = c
            view.row = row
            deliver(bar)
            if perps is not None:  # after the handlers, as process() settles and then checks
                if ti >= perps.next_funding_ns:
                    perps.settle_due(ti)
                    watch = ti + 1
                if priced and perps.watching:
                    perps.check(ti)
                    watch = ti + 1

    def _lean_mixed(self, batch: Any, lanes: list[Any], ts_init: list[int], features: Iterator[Any]) -> None:
        """The loop of :meth:`mixed_bars` for feature-only subscribers (see :meth:`_lean_bars`).

        Each lane remembers the row of its latest delivered bar; :meth:`catch_up` (through
        ``lazy``), a due timer and the end of the batch put the bars not yet built in the cache.
        When no handler an order's submission or the venue's events reach reads a cached bar (the
        kernel's bookkeeping, handlers declared feature-only), the catch-up builds none and reads
        each instrument's latest close from the rows (``bar_closes``).
        """
        k = self.kernel
        clock = k.clock
        assert isinstance(clock, SimulatedClock)
        n = len(ts_init)
        cache_bars = k.cache.bars
        bar_at = _bar_reader(batch, ts_init)
        # latest[s]: the row of lane s's latest delivered bar; cached[s]: the one in the cache.
        latest = [-1] * len(lanes)
        cached = [-1] * len(lanes)

        def materialize() -> None:
            for s, j in enumerate(latest):
                if j != cached[s]:
                    iid = lanes[s][0]
                    cache_bars[iid] = bar_at(iid, j)
                    cached[s] = j

        execution_on_bar = k.execution.on_bar
        mark = k.execution.mark
        cache_prices = k.cache.prices
        orders = k.orders
        working = orders.working_instruments
        perps = k.perpetuals
        advance = clock.advance_to
        watch = k.watch_ns
        marks = k.risk_config.breakers_on_marks  # else before_time only samples: no recheck
        band_iid, band_lo, band_hi = k.mark_band
        every_bar = perps is not None
        lagging = self.lagging
        # Order events that reach only the kernel's bookkeeping and handlers declared feature-only
        # need no other instrument's bar cached.
        iids = [lane[0] for lane in lanes if lane is not None]
        quiet = self._blind(iids, *_VENUE_EVENTS)
        if quiet and self._blind(iids, OrderSubmitted, OrderDenied):
            # Nor does an order's submission: its catch-up builds no bar, and the venue reads
            # where an instrument's latest bar closed from the rows.
            lane_of = {lane[0]: s for s, lane in enumerate(lanes) if lane is not None}

            def closes(instrument_id: str) -> int | None:
                s = lane_of.get(instrument_id)  # None: an instrument of an earlier batch, in the cache
                return ts_init[latest[s]] if s is not None and latest[s] != cached[s] else None

            self.bar_closes = closes
        else:
            self.lazy = materialize
        try:
            for j, s, ti, c, row in zip(
                range(n), batch.source.tolist(), ts_init, batch.close.tolist(), features, strict=True
            ):
                iid, view, deliver = lanes[s]
                if ti >= watch:
                    watch = k.before_time(ti)
                    band_iid, band_lo, band_hi = k.mark_band
                if ti < clock.next_due:
                    clock.current_ns = ti
                else:
                    materialize()  # a timer's callback sees the bars delivered before this row
                    advance(ti)
                    watch = ti + 1  # see _full_bars
                if perps is not None and ti > perps.next_funding_ns:
                    materialize()
                    # before its fills, unless held for its bar (Perpetuals)
                    perps.settle_due(
                        ti, before=True, bar=iid, opening=float(batch.open[j]), closing=int(batch.ts_event[j])
                    )
                    watch = ti + 1
                priced = False
                if self.needs_execution:
                    if marks:
                        watch = ti + 1
                    if every_bar or iid in working:
                        if not quiet:
                            materialize()  # order events show a strategy the other instruments' latest bars
                        bar = bar_at(iid, j)
                        execution_on_bar(bar)
                        self.needs_execution = orders.count_open() > 0
                        cache_bars[iid] = bar
                        cached[s] = j
                        priced = True
                    elif working:
                        lagging.add(iid)
                    else:
                        self.needs_execution = False  # nothing works at all: see _full_mixed
                elif perps is not None and (c <= perps.lo or c >= perps.hi):
                    mark(iid, c)
                    priced = True
                if marks and iid == band_iid and (c <= band_lo or c >= band_hi):
                    watch = ti + 1
                latest[s] = j
                cache_prices[iid] = c
                view.row = row
                deliver(None)
                if perps is not None:  # after the handlers, as process() settles and then checks
                    if ti >= perps.next_funding_ns:
                        perps.settle_due(ti)
                        watch = ti + 1
                    if priced and perps.watching:
                        perps.check(ti)
                        watch = ti + 1
        finally:
            self.lazy = None
            self.bar_closes = None
        materialize()

    def trades(self, batch: Any) -> None:
        """One instrument's run of trades."""
        k = self.kernel
        n = len(batch.ts_init)
        clock = k.clock
        assert isinstance(clock, SimulatedClock)
        iid = k.instrument_key(batch.instrument_id)
        perps = k.perpetuals
        if (
            n < _SMALL_BATCH
            or (perps is not None and not perps.bounded)
            or iid in k.trade_bars
            or not _ordered_from(batch, clock.current_ns)
            or not _markable(batch.price)
        ):
            # Perpetual settlement and bars built from trades act between trades: one at a time
            # (a lone margin spot instrument's liquidation is checked below at prices out of bounds).
            for te, ti, px, sz, side, tid in zip(
                batch.ts_event.tolist(),
                batch.ts_init.tolist(),
                batch.price.tolist(),
                batch.size.tolist(),
                batch.aggressor.tolist(),
                batch.trade_id,
                strict=True,
            ):
                k.process(Trade(iid, te, ti, px, sz, side, tid))
            return
        if iid not in k.cache.prices:
            k.note_first_price(iid, int(batch.ts_init[0]), float(batch.price[0]))
        bank = k.banks.get(iid)
        view = k.cache.feature_views.get(iid)
        out: np.ndarray | None = None
        if bank is not None and view is not None:
            live = view.row
            view.row = live.tolist()  # type: ignore[union-attr]
            out = bank.run_trades(batch.ts_event, batch.price, batch.size, batch.aggressor)
        else:
            view, live = FeatureView(()), None
        handlers = k.bus.handlers(Trade, iid)
        deliver = _fan_out(handlers)
        history = k.histories.get(iid)
        history_free = history is None or not history.trade_capacity
        if not history_free:
            deliver = _appending_trade(history, deliver)
        # Only the plain simulated venue's trade handling reduces to "remember the last price"
        # while nothing is working (see submit()); any other venue sees every trade.
        skip = type(k.venue) is SimulatedVenue
        lean = skip and history_free and _lean(handlers)
        # The rows visited: every row, or (when every handler declares where it acts, wakes_at)
        # those rows and the rows where something else is due (see _next_row).
        wake = _wake_rows(handlers, iid, out, n) if lean else None
        # Listing a column costs about as much as reading every row through a memoryview: the
        # sparse loop, which visits few rows, reads its columns through memoryviews.
        read: Callable[[np.ndarray], Any] = np.ndarray.tolist if wake is None else _indexable
        ts_init = read(batch.ts_init)
        if wake is None and np.array_equal(batch.ts_event, batch.ts_init):
            ts_event = ts_init
        else:
            ts_event = read(batch.ts_event)
        idle = self.idle_trades
        execution_on_trade = k.execution.on_trade
        cache_trades = k.cache.trades
        cache_prices = k.cache.prices
        count_open = k.orders.count_open
        advance = clock.advance_to
        watch = k.watch_ns
        marks = k.risk_config.breakers_on_marks  # else before_time only samples: no recheck
        band_lo, band_hi = k.price_band(iid)
        result = k.result
        if skip and not self.needs_execution:
            idle.add(iid)
        # Whether perps.lo and perps.hi bound this instrument's own liquidation (that of the one
        # margined instrument, see Perpetuals.bounded): a trade of it shown the venue strictly
        # between them is then not checked either. They are recomputed after every fill (of any
        # instrument), liquidation, funding and interest charge, the only moves of the wallet,
        # position and maintenance margin that Perpetuals.check reads besides the mark (this price).
        own_bounds = perps is not None and perps.bounded and iid in perps.instruments
        k.extend_span(ts_init[0], int(batch.ts_event.min()), int(batch.ts_event.max()))
        if lean:
            # No subscriber reads a trade: one is built only when something may read it (see
            # _lean_bars); the venue sees none while nothing works, as in the loop below.
            columns: list[Any] = []

            def trade_at(j: int) -> Trade:
                if not columns:
                    ids = batch.trade_id  # a replay's TradeIds reads a row without the checks of indexing
                    reader = getattr(ids, "reader", None)
                    tid = ids.__getitem__ if reader is None else reader()
                    columns.extend((ts_event, prices, read(batch.size), read(batch.aggressor), tid))
                te, px, sz, side, tid = columns
                return Trade(iid, te[j], ts_init[j], px[j], sz[j], side[j], tid(j))

            def materialize(j: int) -> None:
                if j >= 0:
                    cache_trades[iid] = trade_at(j)

            prices = read(batch.price)
            rows: Any = _FeatureRows(out) if wake is not None else [()] * n if out is None else list(zip(*out.T.tolist()))
            if wake is not None:
                price_values = np.ascontiguousarray(batch.price, dtype=np.float64)
                span = (float(price_values.min()), float(price_values.max()))  # NaN if a price is NaN
                pending = 0  # the index in wake of the next row a handler may act on
            j = -1  # the current row, read by lazy() (see _lean_bars)
            self.lazy = lambda: materialize(j)
            try:
                nxt = 0
                while nxt < n:
                    if nxt > j + 1:
                        # Rows skipped: nothing was due there and no handler acts there; the
                        # cache, the feature view and the clock hold the last of them, as
                        # delivering them would have left them.
                        q = nxt - 1
                        clock.current_ns = ts_init[q]
                        cache_prices[iid] = prices[q]
                        view.row = rows[q]
                    j = nxt
                    ti = ts_init[j]
                    px = prices[j]
                    if ti >= watch:
                        watch = k.before_time(ti)
                        band_lo, band_hi = k.price_band(iid)
                    if ti < clock.next_due:
                        clock.current_ns = ti
                    else:
                        j -= 1  # the previous trade until this one is delivered (see _lean_bars)
                        materialize(j)
                        advance(ti)
                        j += 1
                        watch = ti + 1  # see _full_bars
                    shown = self.needs_execution
                    if shown:
                        trade = trade_at(j)
                        execution_on_trade(trade)
                        self.needs_execution = count_open() > 0
                        if not self.needs_execution:
                            idle.add(iid)
                        cache_trades[iid] = trade
                        if marks:
                            watch = ti + 1
                    if marks and (px <= band_lo or px >= band_hi):
                        watch = ti + 1
                    cache_prices[iid] = px
                    view.row = rows[j]
                    deliver(None)
                    if perps is not None:  # after the handlers, as process() checks
                        if shown:
                            # a fill, of any instrument, may have moved the wallet (and the bounds)
                            if perps.watching and not (own_bounds and perps.lo < px < perps.hi):
                                perps.check(ti)
                        elif px <= perps.lo or px >= perps.hi:
                            perps.on_price(iid, px, ti)
                            watch = ti + 1
                    nxt = j + 1
                    if wake is None or self.needs_execution or nxt >= n:
                        continue
                    while wake[pending] < nxt:
                        pending += 1
                    lo, hi = band_lo, band_hi
                    if perps is not None:
                        lo, hi = max(lo, perps.lo), min(hi, perps.hi)
                    nxt = _next_row(ts_init, price_values, nxt, wake[pending], min(watch, clock.next_due), lo, hi, span)
                if j < n - 1:
                    q = n - 1
                    clock.current_ns = ts_init[q]
                    cache_prices[iid] = prices[q]
                    view.row = rows[q]
                    j = q
            finally:
                self.lazy = None
            materialize(n - 1)
        else:
            features: Iterable[Any] = repeat((), n) if out is None else zip(*out.T.tolist(), strict=True)
            for te, ti, px, sz, side, tid, row in zip(
                ts_event,
                ts_init,
                batch.price.tolist(),
                batch.size.tolist(),
                batch.aggressor.tolist(),
                batch.trade_id,
                features,
                strict=True,
            ):
                if ti >= watch:
                    watch = k.before_time(ti)
                    band_lo, band_hi = k.price_band(iid)
                if ti < clock.next_due:
                    clock.current_ns = ti
                else:
                    advance(ti)
                    watch = ti + 1  # see _full_bars
                trade = Trade(iid, te, ti, px, sz, side, tid)
                shown = self.needs_execution or not skip
                if shown:
                    execution_on_trade(trade)
                    if marks:
                        watch = ti + 1
                    if skip:
                        self.needs_execution = count_open() > 0
                        if not self.needs_execution:
                            idle.add(iid)
                if marks and (px <= band_lo or px >= band_hi):
                    watch = ti + 1
                cache_trades[iid] = trade
                cache_prices[iid] = px
                view.row = row
                deliver(trade)
                if perps is not None:
                    if shown:
                        if perps.watching and not (own_bounds and perps.lo < px < perps.hi):
                            perps.check(ti)
                    elif px <= perps.lo or px >= perps.hi:
                        perps.on_price(iid, px, ti)
                        watch = ti + 1
        result.trades += n
        result.end_ns = ts_init[-1]
        if live is not None:
            view.row = live


@contextmanager
def rare_gc() -> Iterator[None]:
    """Run the cyclic garbage collector rarely for the duration of a backtest loop.

    The loop allocates many short-lived objects but no reference cycles (messages are
    ``gc=False`` structs), so the default thresholds would only spend time walking the
    long-lived objects of the run. The young-generation threshold is raised, and restored
    afterwards. Nothing is frozen: objects unfrozen into the oldest generation escape the
    collector's count of what it holds, so the garbage of earlier runs (a finished kernel is
    a reference cycle) was never collected again by a process running one backtest after
    another (a sweep's worker grew by ~0.5 MB a run).
    """
    thresholds = gc.get_threshold()
    gc.set_threshold(100_000, 50, 1_000)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)


def _bar_reader(batch: Any, ts_init: list[int]) -> Callable[[str, int], Bar]:
    """``bar_at(instrument_id, j)``: the bar of row ``j`` of a bar batch, for the lean loops.

    A bar wanted now and then (an order's catch-up and its fill) reads its six values through
    memoryviews of the arrays (a Python float or int each, twice as fast as ``ndarray.item``).
    Listing the columns costs about as much as reading half the rows that way: once a quarter of
    the batch has been wanted (an order working for a while), they are listed.
    """
    columns: list[list[Any]] = []
    arrays = (batch.ts_event, batch.open, batch.high, batch.low, batch.close, batch.volume)
    views = tuple(map(_indexable, arrays))
    item_reads = len(ts_init) // 4

    def bar_at(iid: str, j: int) -> Bar:
        nonlocal item_reads
        if not columns:
            item_reads -= 1
            if item_reads >= 0:
                te, o, h, lo, c, v = views
                return Bar(iid, te[j], ts_init[j], o[j], h[j], lo[j], c[j], v[j])
            columns.extend(a.tolist() for a in arrays)
        te, o, h, lo, c, v = columns
        return Bar(iid, te[j], ts_init[j], o[j], h[j], lo[j], c[j], v[j])

    return bar_at


def _indexable(values: np.ndarray) -> memoryview | list[Any]:
    """``values`` indexable to Python numbers: a memoryview of a native numeric array, else a list."""
    if values.dtype.kind in "fiu" and values.dtype.isnative:
        return memoryview(values)
    return values.tolist()  # type: ignore[no-any-return]


def _rows_in_order(n: int, values: list[tuple[np.ndarray, np.ndarray | None]]) -> Iterator[tuple[float, ...]]:
    """The feature values of each row of a mixed batch, in the batch's row order.

    ``values`` holds, per instrument, its rows in the batch and its feature values (one row
    each; ``None``: no bank, empty tuples). When every instrument has as many feature columns,
    the values are laid out in one matrix first, so the loop reads them in order.
    """
    widths = {0 if out is None else out.shape[1] for _, out in values}
    if len(widths) == 1:
        width = widths.pop()
        if width == 0:
            return repeat((), n)
        combined = np.empty((n, width))
        for rows, out in values:
            combined[rows] = out
        return zip(*combined.T.tolist(), strict=True)
    ordered: list[tuple[float, ...]] = [()] * n
    for rows, out in values:
        if out is not None:
            for i, row in zip(rows.tolist(), zip(*out.T.tolist(), strict=True), strict=True):
                ordered[i] = row
    return iter(ordered)


def _ordered_from(batch: Any, start: int) -> bool:
    """Whether the batch's ``ts_init`` starts at or after ``start`` and never decreases (a replay's batch is
    ``ordered``: it checked its rows as it read them, and told of the first out of order in a ``DataError``)."""
    ts = batch.ts_init
    return bool(ts[0] >= start and (getattr(batch, "ordered", False) or (ts[1:] >= ts[:-1]).all()))


def _markable(prices: np.ndarray) -> bool:
    """Whether the portfolio can be marked at every price (bar close or trade price: finite and positive,
    :meth:`Portfolio.mark <tradebus.engine.portfolio.Portfolio.mark>`).

    :meth:`Kernel.process` marks it at every bar or trade, so after a price it ignores (NaN, say) it
    values positions at the last price it took; the batch loops mark only at the cached price when
    something reads the equity, and would find the ignored price there and keep an older mark.
    """
    return bool(((prices > 0.0) & (prices < math.inf)).all())


def _wake_rows(
    handlers: tuple[Callable[[Any], None], ...], instrument_id: str, features: np.ndarray | None, n: int
) -> list[int] | None:
    """The rows of a batch at which some handler may act, then ``n`` (``None``: any row).

    Every handler must declare its rows (:func:`~tradebus.strategies.base.wakes_at`).
    """
    if features is None or not handlers:
        return None
    found = []
    for handler in handlers:
        rows = wake_rows(handler, instrument_id, features)
        if rows is None:
            return None
        found.append(rows)
    return [*(found[0] if len(found) == 1 else np.unique(np.concatenate(found))).tolist(), n]


class _FeatureRows:
    """Row ``j`` of a batch's feature values as a list, built when asked for (the sparse loop visits few rows)."""

    __slots__ = ("values",)

    def __init__(self, values: np.ndarray) -> None:
        self.values = values

    def __getitem__(self, j: int) -> list[float]:
        return self.values[j].tolist()  # type: ignore[no-any-return]


def _next_row(
    ts: Sequence[int],
    prices: np.ndarray,
    start: int,
    stop: int,
    due: int,
    lo: float,
    hi: float,
    span: tuple[float, float] = (math.nan, math.nan),
) -> int:
    """The first row from ``start`` whose time is at or after ``due`` or whose price is at or beyond ``lo`` or ``hi``.

    ``stop`` if none is before it. ``span``: the least and the greatest of ``prices`` (NaN: not known); no row
    is looked at for a price when both lie strictly between ``lo`` and ``hi``, nor for a time when the row
    before ``stop`` is before ``due``.
    """
    # start >= 1 (a row was visited): ts[stop - 1] is a row of the batch even when stop == start.
    end = stop if ts[stop - 1] < due else bisect_left(ts, due, start, stop)
    if (lo == -math.inf and hi == math.inf) or (lo < span[0] and span[1] < hi):
        return end
    return int(_first_outside(prices, start, end, float(lo), float(hi)))


@njit(cache=True)
def _first_outside(values: np.ndarray, start: int, stop: int, lo: float, hi: float) -> int:
    """The first index in ``start:stop`` whose value is ``<= lo`` or ``>= hi`` (``stop``: none; NaN is inside)."""
    for i in range(start, stop):
        v = values[i]
        if v <= lo or v >= hi:
            return i
    return stop


def _lean(handlers: tuple[Callable[[Any], None], ...]) -> bool:
    """Whether every handler was declared :func:`~tradebus.strategies.base.feature_only`."""
    return all(is_feature_only(handler) for handler in handlers)


def _fan_out(handlers: tuple[Callable[[Any], None], ...]) -> Callable[[Any], None]:
    """One callable delivering a message to every handler, in order (no loop for a single one)."""
    if len(handlers) == 1:
        return handlers[0]

    def deliver(msg: Any) -> None:
        for handler in handlers:
            handler(msg)

    return deliver


def _advancing(history: History, deliver: Callable[[Bar], None]) -> Callable[[Bar], None]:
    """``deliver`` preceded by making the bar visible in the instrument's staged history batch."""

    def advance_and_deliver(bar: Bar) -> None:
        history.cursor += 1
        deliver(bar)

    return advance_and_deliver


def _appending_trade(history: History, deliver: Callable[[Trade], None]) -> Callable[[Trade], None]:
    """``deliver`` preceded by appending the trade to the instrument's history window."""

    def append_and_deliver(trade: Trade) -> None:
        history.append_trade(trade.ts_event, trade.price, trade.size, float(trade.aggressor))
        deliver(trade)

    return append_and_deliver
