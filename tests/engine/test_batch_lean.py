"""The lean batch loops: subscribers declared feature-only get no message, and everything else
(order events, timers, the cache after a batch) sees what ``process()`` shows it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tradebus.data.replay import Replay
from tradebus.engine.kernel import Kernel
from tradebus.engine.messages import Bar, OrderDenied, OrderFilled, OrderSide, OrderSubmitted, TimeEvent, Trade
from tradebus.execution.config import VenueConfig
from tradebus.strategies.base import Strategy, feature_only, is_feature_only
from tradebus.strategies.ema_cross import EmaCross
from tradebus.strategies.tick_ema import TickEmaCross

from tests.engine.test_kernel import MIN, T0, bar_table
from tests.engine.test_kernel_batches import (
    IID,
    assert_same,
    bar_sources,
    instrument,
    run_both,
    synthetic_trades,
    trade_source,
)


def snapshot(msg: Bar | Trade | None) -> tuple[Any, ...] | None:
    if msg is None:
        return None
    if type(msg) is Bar:
        return (msg.instrument_id, msg.ts_event, msg.ts_init, msg.open, msg.high, msg.low, msg.close, msg.volume)
    return (msg.instrument_id, msg.ts_event, msg.ts_init, msg.price, msg.size, msg.aggressor, msg.trade_id)


class Looking:
    """Records the cache's latest bar and trade whenever an order event or a timer fires.

    The decisions stay EmaCross's (a feature-only handler); the timer falls between bars.
    """

    log: list[tuple[Any, ...]]
    #: The timer's interval: never on an event time.
    every = 7 * MIN + MIN // 3

    def look(self, what: str, ts: int) -> None:
        iid = self.instrument_id  # type: ignore[attr-defined]
        cache = self.cache  # type: ignore[attr-defined]
        self.log.append((what, ts, snapshot(cache.bar(iid)), snapshot(cache.trade(iid))))

    def on_start(self) -> None:
        super().on_start()  # type: ignore[misc]
        self.log = []
        self.set_timer("odd", self.every, start_ns=T0)  # type: ignore[attr-defined]

    def on_timer(self, event: TimeEvent) -> None:
        self.look("timer", event.ts_init)

    def on_order_submitted(self, event: OrderSubmitted) -> None:
        self.look("submitted", event.ts_init)

    def on_order_filled(self, event: OrderFilled) -> None:
        self.look("filled", event.ts_init)


class LookingEmaCross(Looking, EmaCross):
    """EmaCross (lean: its ``on_bar`` is declared feature-only) that looks at the cache."""


class LookingTickEmaCross(Looking, TickEmaCross):
    """TickEmaCross (lean on trades) that looks at the cache."""

    every = 1_000_000_000 + 333_333  # trades are stamped in whole milliseconds


class ReadingEmaCross(LookingEmaCross):
    """Overrides ``on_bar`` without redeclaring it: it gets every bar (the full loop)."""

    def on_bar(self, bar: Bar | None = None) -> None:
        assert type(bar) is Bar
        self.bars_seen = getattr(self, "bars_seen", 0) + 1
        super().on_bar(bar)


class DenialCountingEmaCross(EmaCross):
    """EmaCross with an order-event handler declared feature-only (it reads its event, no cached bar)."""

    @feature_only
    def on_order_denied(self, event: OrderDenied) -> None:
        self.denials = getattr(self, "denials", 0) + 1


#: The instrument of ``bar_sources``' first table.
BAR_IID = "C0USD.SIM"


def bar_kernel(cls: type[EmaCross], latency_ns: int) -> Kernel:
    kernel = Kernel([instrument("C0USD")], venue_config=VenueConfig(latency_ns=latency_ns), initial_cash=1_000_000.0)
    kernel.add_strategy(cls(BAR_IID, fast=4, slow=15, mode="long_short", quantity=1.0, strategy_id="ema"))
    return kernel


def test_the_declaration_belongs_to_the_function() -> None:
    assert is_feature_only(EmaCross.on_bar)
    assert not is_feature_only(ReadingEmaCross.on_bar)
    assert is_feature_only(LookingEmaCross(IID, fast=4, slow=15, quantity=1.0).on_bar)
    # On an order-event handler too, and through the kernel's routing of it to its own strategy.
    assert is_feature_only(DenialCountingEmaCross.on_order_denied)
    kernel = bar_kernel(DenialCountingEmaCross, 0)
    kernel.start()
    routed = [h for h in kernel.bus.handlers(OrderDenied, BAR_IID) if h not in kernel.bookkeeping]
    assert len(routed) == 1 and is_feature_only(routed[0])
    submitting = bar_kernel(SubmitLookingEmaCross, 0)
    submitting.start()
    routed = [h for h in submitting.bus.handlers(OrderSubmitted, BAR_IID) if h not in submitting.bookkeeping]
    assert len(routed) == 1 and not is_feature_only(routed[0])

    @feature_only
    def handler(msg: object) -> None: ...

    assert is_feature_only(handler)


@pytest.mark.parametrize("latency_ns", [0, 3 * MIN // 2])
def test_lean_bar_loop_shows_order_events_and_timers_the_bars_of_process(tmp_path: Path, latency_ns: int) -> None:
    sources = bar_sources(tmp_path / "b", [bar_table(2_000, seed=3)])
    fast, slow = run_both(sources, lambda: bar_kernel(LookingEmaCross, latency_ns), batch_rows=300)
    assert_same(fast, slow, min_fills=100)
    (lean,), (one_by_one,) = fast.strategies, slow.strategies
    assert {entry[0] for entry in lean.log} == {"timer", "submitted", "filled"}
    assert all(entry[2] is not None for entry in lean.log)
    assert lean.log == one_by_one.log
    assert snapshot(fast.cache.bar(BAR_IID)) == snapshot(slow.cache.bar(BAR_IID))
    # A handler that reads its bars gets every one, and the same fills.
    reading = bar_kernel(ReadingEmaCross, latency_ns)
    reading.run(Replay(sources, batch_rows=300))
    assert reading.strategies[0].bars_seen == 2_000
    assert reading.strategies[0].log == lean.log
    assert reading.result.fills == fast.result.fills


class RestingEmaCross(LookingEmaCross):
    """LookingEmaCross that, from its first fill on, also keeps a buy limit far below the market.

    An order then works on every bar, so the lean loop builds every bar: a few rows of a batch
    from single reads of its arrays, the rest from its columns listed once. While an order works
    the cache holds the bar being delivered, which this strategy records on every bar.
    """

    def on_start(self) -> None:
        super().on_start()
        self.resting = False
        self.cached: list[tuple[Any, ...] | None] = []

    @feature_only
    def on_bar(self, bar: Bar | None = None) -> None:
        if self.resting:
            self.cached.append(snapshot(self.cache.bar(self.instrument_id)))
        super().on_bar(bar)

    def on_order_filled(self, event: OrderFilled) -> None:
        super().on_order_filled(event)
        if not self.resting:
            self.resting = True
            self.submit_limit(self.instrument_id, OrderSide.BUY, 1.0, price=1.0)


@pytest.mark.parametrize("instruments", [1, 3])
@pytest.mark.parametrize("latency_ns", [0, 3 * MIN // 2])
def test_lean_bar_loops_build_every_bar_of_process_while_an_order_works(
    tmp_path: Path, latency_ns: int, instruments: int
) -> None:
    # One instrument: one-source batches; three with identical times: mixed batches.
    sources = bar_sources(tmp_path / "b", [bar_table(2_000, seed=11 + k) for k in range(instruments)])

    def build() -> Kernel:
        kernel = Kernel(
            [instrument(f"C{k}USD") for k in range(instruments)],
            venue_config=VenueConfig(latency_ns=latency_ns),
            initial_cash=1_000_000.0,
        )
        for src in sources:
            iid = src.instrument_id
            kernel.add_strategy(RestingEmaCross(iid, fast=4, slow=15, mode="long_short", quantity=1.0, strategy_id=iid))
        return kernel

    fast, slow = run_both(sources, build, batch_rows=300)
    assert_same(fast, slow, min_fills=100 * instruments)
    for lean, one_by_one in zip(fast.strategies, slow.strategies, strict=True):
        assert len(lean.cached) > 1_900
        assert lean.cached == one_by_one.cached
        assert lean.log == one_by_one.log
    assert fast.orders.count_open() >= instruments  # the resting limits


@pytest.mark.parametrize("latency_ns", [0, 2_000_000])
def test_lean_trade_loop_shows_order_events_and_timers_the_trades_of_process(tmp_path: Path, latency_ns: int) -> None:
    source = trade_source(tmp_path, synthetic_trades(30_000, seed=5))

    def build() -> Kernel:
        kernel = Kernel(
            [instrument()], venue_config=VenueConfig(fill_on="trades", latency_ns=latency_ns), initial_cash=100_000.0
        )
        kernel.add_strategy(LookingTickEmaCross(IID, fast=8, slow=40, quantity=0.05))
        return kernel

    fast, slow = run_both([source], build, batch_rows=4_000)
    assert_same(fast, slow, min_fills=100)
    (lean,), (one_by_one,) = fast.strategies, slow.strategies
    assert {entry[0] for entry in lean.log} == {"timer", "submitted", "filled"}
    assert all(entry[3] is not None for entry in lean.log)
    assert lean.log == one_by_one.log
    assert snapshot(fast.cache.trade(IID)) == snapshot(slow.cache.trade(IID))


class TimerTrading(Looking):
    """Also trades from its timer (between bars or trades): the order's catch-up must cache the
    latest delivered bar or trade, never the one the timer fires before."""

    def on_timer(self, event: TimeEvent) -> None:
        super().on_timer(event)
        self.flip = not getattr(self, "flip", False)
        self.submit_market(self.instrument_id, OrderSide.BUY if self.flip else OrderSide.SELL, self.params.quantity)  # type: ignore[attr-defined]


class TimerTradingEmaCross(TimerTrading, EmaCross):
    """EmaCross (lean) that also trades from its timer."""


class TimerTradingTickEmaCross(TimerTrading, TickEmaCross):
    """TickEmaCross (lean on trades) that also trades from its timer."""

    every = 1_000_000_000 + 333_333


def test_lean_loops_show_an_order_sent_by_a_timer_the_cache_of_process(tmp_path: Path) -> None:
    sources = bar_sources(tmp_path / "b", [bar_table(1_500, seed=4)])
    fast, slow = run_both(sources, lambda: bar_kernel(TimerTradingEmaCross, 0), batch_rows=300)
    assert_same(fast, slow, min_fills=200)
    (lean,), (one_by_one,) = fast.strategies, slow.strategies
    assert sum(entry[0] == "submitted" for entry in lean.log) > 200
    assert lean.log == one_by_one.log
    source = trade_source(tmp_path / "t", synthetic_trades(20_000, seed=6))

    def build() -> Kernel:
        kernel = Kernel([instrument()], venue_config=VenueConfig(fill_on="trades"), initial_cash=1_000_000.0)
        kernel.add_strategy(TimerTradingTickEmaCross(IID, fast=8, slow=40, quantity=0.05))
        return kernel

    fast, slow = run_both([source], build, batch_rows=4_000)
    assert_same(fast, slow, min_fills=20)
    (lean,), (one_by_one,) = fast.strategies, slow.strategies
    assert lean.log == one_by_one.log


class LookingAtAll(Looking):
    """Looks at every instrument's latest bar (not only its own) on order events and timers."""

    universe: tuple[str, ...] = ()

    def look(self, what: str, ts: int) -> None:
        cache = self.cache  # type: ignore[attr-defined]
        self.log.append((what, ts, self.instrument_id, tuple(snapshot(cache.bar(i)) for i in self.universe)))  # type: ignore[attr-defined]


class LookingAtAllEmaCross(LookingAtAll, EmaCross):
    """EmaCross (lean) that looks at the cache's bars of every instrument."""


class ReadingAllEmaCross(LookingAtAllEmaCross):
    """The same, reading its bars (the full several-instrument loop)."""

    def on_bar(self, bar: Bar | None = None) -> None:
        assert type(bar) is Bar
        super().on_bar(bar)


@pytest.mark.parametrize("latency_ns", [0, 3 * MIN // 2])
def test_lean_loop_of_several_instruments_shows_every_bar_of_process(tmp_path: Path, latency_ns: int) -> None:
    # Three instruments with identical times: one mixed batch per 300 rows; each instrument's
    # order works while the others' bars go by (skipped by the venue, cached only on demand).
    tables = [bar_table(1_200, seed=s) for s in (3, 4, 5)]
    sources = bar_sources(tmp_path / "b", tables)
    universe = tuple(src.instrument_id for src in sources)

    def build(cls: type[LookingAtAll]) -> Kernel:
        kernel = Kernel(
            [instrument(f"C{k}USD") for k in range(3)],
            venue_config=VenueConfig(latency_ns=latency_ns),
            initial_cash=1_000_000.0,
        )
        for iid in universe:
            strategy = cls(iid, fast=4, slow=15, mode="long_short", quantity=1.0, strategy_id=iid)  # type: ignore[call-arg]
            strategy.universe = universe
            kernel.add_strategy(strategy)
        return kernel

    fast, slow = run_both(sources, lambda: build(LookingAtAllEmaCross), batch_rows=300)
    assert_same(fast, slow, min_fills=150)
    for lean, one_by_one in zip(fast.strategies, slow.strategies, strict=True):
        assert {entry[0] for entry in lean.log} == {"timer", "submitted", "filled"}
        assert lean.log == one_by_one.log
    assert [snapshot(fast.cache.bar(i)) for i in universe] == [snapshot(slow.cache.bar(i)) for i in universe]
    reading = build(ReadingAllEmaCross)
    reading.run(Replay(sources, batch_rows=300))
    assert [s.log for s in reading.strategies] == [s.log for s in fast.strategies]


class SubmitLookingEmaCross(EmaCross):
    """EmaCross (lean) that looks at every instrument's latest bar when one of its orders is
    submitted, and at no other order event: an order's catch-up must cache the bars for it."""

    universe: tuple[str, ...] = ()

    def on_start(self) -> None:
        super().on_start()
        self.log: list[tuple[Any, ...]] = []

    def on_order_submitted(self, event: OrderSubmitted) -> None:
        self.log.append((event.ts_init, tuple(snapshot(self.cache.bar(i)) for i in self.universe)))


class TimerLooker(Strategy):
    """Looks at every instrument's latest bar on a timer that falls between bars; handles no order event."""

    def __init__(self, universe: tuple[str, ...]) -> None:
        super().__init__(universe, strategy_id="looker")
        self.universe = universe
        self.log: list[tuple[Any, ...]] = []

    def on_start(self) -> None:
        self.set_timer("odd", Looking.every, start_ns=T0)

    def on_timer(self, event: TimeEvent) -> None:
        self.log.append((event.ts_init, tuple(snapshot(self.cache.bar(i)) for i in self.universe)))


def test_lean_loop_of_several_instruments_caches_every_bar_for_a_submission_handler(tmp_path: Path) -> None:
    # Only the submission is watched (no venue event): the catch-up still caches the others' bars.
    sources = bar_sources(tmp_path / "b", [bar_table(1_200, seed=s) for s in (6, 7, 8)])
    universe = tuple(src.instrument_id for src in sources)

    def build() -> Kernel:
        kernel = Kernel([instrument(f"C{k}USD") for k in range(3)], initial_cash=1_000_000.0)
        for iid in universe:
            strategy = SubmitLookingEmaCross(iid, fast=4, slow=15, mode="long_short", quantity=1.0, strategy_id=iid)
            strategy.universe = universe
            kernel.add_strategy(strategy)
        return kernel

    fast, slow = run_both(sources, build, batch_rows=300)
    assert_same(fast, slow, min_fills=150)
    for lean, one_by_one in zip(fast.strategies, slow.strategies, strict=True):
        assert len(lean.log) > 50
        assert lean.log == one_by_one.log


def test_lean_loop_of_several_instruments_with_order_events_for_bookkeeping_only(tmp_path: Path) -> None:
    # No strategy handles an order event: the venue is shown a bar without the others cached,
    # yet timers, the end of the batch and the run's record are those of process().
    sources = bar_sources(tmp_path / "b", [bar_table(1_200, seed=s) for s in (6, 7, 8)])
    universe = tuple(src.instrument_id for src in sources)

    def build() -> Kernel:
        kernel = Kernel([instrument(f"C{k}USD") for k in range(3)], initial_cash=1_000_000.0)
        for iid in universe:
            kernel.add_strategy(EmaCross(iid, fast=4, slow=15, mode="long_short", quantity=1.0, strategy_id=iid))
        kernel.add_strategy(TimerLooker(universe))
        return kernel

    fast, slow = run_both(sources, build, batch_rows=300)
    assert_same(fast, slow, min_fills=150)
    assert len(fast.strategies[-1].log) > 150
    assert fast.strategies[-1].log == slow.strategies[-1].log
    assert [snapshot(fast.cache.bar(i)) for i in universe] == [snapshot(slow.cache.bar(i)) for i in universe]


class BlindTimerTrading(EmaCross):
    """EmaCross (lean) that also trades from a timer between bars and handles no order event:
    the single-instrument loop then builds no bar on an order's catch-up and tells the venue the
    latest delivered bar's close from the rows (the one before the timer's row, not that row)."""

    def on_start(self) -> None:
        super().on_start()
        self.flip = False
        self.set_timer("odd", Looking.every, start_ns=T0)

    def on_timer(self, event: TimeEvent) -> None:
        self.flip = not self.flip
        self.submit_market(self.instrument_id, OrderSide.BUY if self.flip else OrderSide.SELL, self.params.quantity)  # type: ignore[attr-defined]


@pytest.mark.parametrize("latency_ns", [0, 3 * MIN // 2])
@pytest.mark.parametrize("cls", [EmaCross, BlindTimerTrading])
def test_lean_bar_loop_with_order_events_for_bookkeeping_only(tmp_path: Path, latency_ns: int, cls: type) -> None:
    # One instrument, no order-event handler: orders (from bars and timers) catch up without a
    # bar in the cache, yet fills, timers' view of the cache and the final cache are process()'s.
    sources = bar_sources(tmp_path / "b", [bar_table(2_000, seed=9)])

    def build() -> Kernel:
        kernel = bar_kernel(cls, latency_ns)
        kernel.add_strategy(TimerLooker((BAR_IID,)))
        return kernel

    fast, slow = run_both(sources, build, batch_rows=300)
    assert_same(fast, slow, min_fills=250 if cls is BlindTimerTrading else 100)
    assert len(fast.strategies[-1].log) > 250
    assert fast.strategies[-1].log == slow.strategies[-1].log
    assert snapshot(fast.cache.bar(BAR_IID)) == snapshot(slow.cache.bar(BAR_IID))
    assert fast._loop.bar_closes is None and fast._loop.lazy is None


class FillChasing(EmaCross):
    """EmaCross (lean) that sends another market order from every other fill's callback: the
    venue is told where the bar being matched closed before the loop has delivered that bar."""

    def on_order_filled(self, event: OrderFilled) -> None:
        self.chase = not getattr(self, "chase", False)
        if self.chase:
            self.submit_market(self.instrument_id, OrderSide.BUY if event.side < 0 else OrderSide.SELL, 0.5)


@pytest.mark.parametrize("latency_ns", [0, 3 * MIN // 2])
def test_lean_bar_loop_with_orders_sent_from_a_fill(tmp_path: Path, latency_ns: int) -> None:
    sources = bar_sources(tmp_path / "b", [bar_table(2_000, seed=11)])
    fast, slow = run_both(sources, lambda: bar_kernel(FillChasing, latency_ns), batch_rows=300)
    assert_same(fast, slow, min_fills=150)
    # Decided inside bar t's matching (stamped at t's close), the order arrives at bar t+1's open
    # with no latency and at bar t+3's with 1.5 bars of it; it fills at that bar's close time.
    created = {o.client_order_id: o.ts_created for o in fast.result.orders}
    delays = {f.ts_event - created[f.client_order_id] for f in fast.result.fills if f.quantity == 0.5}
    assert delays == {MIN if latency_ns == 0 else 3 * MIN}
    assert sum(f.quantity == 0.5 for f in fast.result.fills) > 50


class RecordingEmaCross(EmaCross):
    """EmaCross that records every feature row it is shown (lean: declared feature-only)."""

    @feature_only
    def on_bar(self, bar: Bar | None = None) -> None:
        self.rows = getattr(self, "rows", [])
        self.rows.append([float(x) for x in self.features().row])
        super().on_bar(bar)


class ReadingRecordingEmaCross(RecordingEmaCross):
    """The same, reading every bar (the full loop)."""

    def on_bar(self, bar: Bar | None = None) -> None:
        assert type(bar) is Bar
        super().on_bar(bar)


@pytest.mark.parametrize("cls", [RecordingEmaCross, ReadingRecordingEmaCross])
def test_several_instruments_with_banks_of_different_widths_see_their_own_rows(tmp_path: Path, cls: type) -> None:
    # C0: one EmaCross (2 columns); C1: two (4 columns); C2: no bank. Each strategy is shown its
    # own instrument's feature values at every bar, in order, as process() shows them.
    sources = bar_sources(tmp_path / "b", [bar_table(900, seed=s) for s in (9, 10, 11)])
    c0, c1, _ = (src.instrument_id for src in sources)

    def build() -> Kernel:
        kernel = Kernel([instrument(f"C{k}USD") for k in range(3)], initial_cash=1_000_000.0)
        kernel.add_strategy(cls(c0, fast=4, slow=15, quantity=1.0, strategy_id="a"))
        kernel.add_strategy(cls(c1, fast=3, slow=9, quantity=1.0, strategy_id="b"))
        kernel.add_strategy(cls(c1, fast=5, slow=20, mode="long_short", quantity=2.0, strategy_id="c"))
        return kernel

    fast, slow = run_both(sources, build, batch_rows=300)
    assert_same(fast, slow, min_fills=60)
    assert [len(s.features().names) for s in fast.strategies] == [2, 4, 4]
    for batched, one_by_one in zip(fast.strategies, slow.strategies, strict=True):
        assert len(batched.rows) == 900
        assert np.array_equal(np.array(batched.rows), np.array(one_by_one.rows), equal_nan=True)


def test_the_lean_loops_bar_reader_gives_python_numbers_from_any_column_layout() -> None:
    from types import SimpleNamespace

    from tradebus.engine.batch import _bar_reader

    rng = np.random.default_rng(7)
    n = 40
    te = (T0 + MIN * np.arange(n)).astype(np.int64)
    cols = {k: rng.uniform(1.0, 2.0, n) for k in ("open", "high", "low", "close", "volume")}
    native = SimpleNamespace(ts_event=te, **cols)
    layouts = {
        "big-endian": SimpleNamespace(ts_event=te.astype(">i8"), **{k: v.astype(">f8") for k, v in cols.items()}),
        "strided": SimpleNamespace(
            ts_event=np.repeat(te, 2)[::2], **{k: np.repeat(v, 2)[::2] for k, v in cols.items()}
        ),
        "float32 volume": SimpleNamespace(ts_event=te, **(cols | {"volume": cols["volume"].astype(np.float32)})),
    }
    ts_init = te.tolist()
    expected = [snapshot(_bar_reader(native, ts_init)("X.V", j)) for j in range(n)]
    assert expected[3] == ("X.V", int(te[3]), ts_init[3], *(float(cols[k][3]) for k in cols))
    for name, batch in layouts.items():
        bar_at = _bar_reader(batch, ts_init)
        bars = [bar_at("X.V", j) for j in range(n)]  # past a quarter of the rows: the listed columns
        assert all(type(b.open) is float and type(b.ts_event) is int for b in bars), name
        got = [snapshot(b) for b in bars]
        if name == "float32 volume":
            expected_here = [e[:-1] + (float(np.float32(e[-1])),) for e in expected]  # type: ignore[index]
        else:
            expected_here = expected
        assert got == expected_here, name
