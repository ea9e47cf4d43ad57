"""The sparse lean bar loop: a handler that declares the rows where it acts
(:func:`~tradebus.strategies.base.wakes_at`) is called only there, and the bars skipped between
leave the clock, the cache's price and bar, the feature view, the equity and the breakers as
``process()`` leaves them, at every timer and order event. Several instruments' mixed batches (the
lean loop) are held to the same comparison."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tradebus.engine import batch as batch_module
from tradebus.engine.instrument import Instrument
from tradebus.engine.kernel import Kernel
from tradebus.engine.messages import OrderFilled, OrderSubmitted, TimeEvent
from tradebus.execution.config import VenueConfig
from tradebus.risk.config import RiskConfig
from tradebus.strategies.ema_cross import EmaCross

from tests.engine.test_batch_lean import snapshot
from tests.engine.test_kernel import MIN, T0, bar_table
from tests.engine.test_kernel_batches import assert_same, bar_sources, orders_of, run_both


def _seen(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


class Watching(EmaCross):
    """EmaCross (sparse: its ``on_bar`` declares where it acts) that records, on every timer and
    order event, the clock, every instrument's cached price and bar, its feature row and the equity."""

    universe: tuple[str, ...] = ()
    every = 7 * MIN + MIN // 3  # never on a bar's time

    def on_start(self) -> None:
        super().on_start()
        self.seen: list[tuple[Any, ...]] = []
        self.set_timer("watch", self.every, start_ns=T0)

    def look(self, what: str, ts: int) -> None:
        cache = self.cache
        self.seen.append(
            (
                what,
                ts,
                self.clock.now_ns(),
                tuple(cache.price(i) for i in self.universe),
                tuple(snapshot(cache.bar(i)) for i in self.universe),
                tuple(_seen(x) for x in self.features().row),
                self.equity(),
            )
        )

    def on_timer(self, event: TimeEvent) -> None:
        self.look("timer", event.ts_init)

    def on_order_submitted(self, event: OrderSubmitted) -> None:
        self.look("submitted", event.ts_init)

    def on_order_filled(self, event: OrderFilled) -> None:
        self.look("filled", event.ts_init)


def watching_kernel(
    universe: tuple[str, ...], latency_ns: int = 0, risk: RiskConfig | None = None, equity_interval_ns: int = 60 * MIN
) -> Kernel:
    """A :class:`Watching` EmaCross 6/40 on each of ``C0USD.SIM``, ``C1USD.SIM``, ... (``universe``)."""
    kernel = Kernel(
        [Instrument("SIM", f"C{k}USD", tick_size=0.01, lot_size=0.0001, taker_fee=0.0002) for k in range(len(universe))],
        venue_config=VenueConfig(latency_ns=latency_ns),
        initial_cash=10_000.0,
        risk_config=risk,
        equity_interval_ns=equity_interval_ns,
    )
    for iid in universe:
        strategy = Watching(iid, fast=6, slow=40, quantity=1.0, strategy_id=iid)
        strategy.universe = universe
        kernel.add_strategy(strategy)
    return kernel


def count_jumps(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The rows each call of the batch loops' ``_next_row`` passes over, appended as they are asked."""
    jumps: list[int] = []
    next_row = batch_module._next_row

    def counted(*args: Any) -> int:
        row = next_row(*args)
        jumps.append(row - args[2])
        return row

    monkeypatch.setattr(batch_module, "_next_row", counted)
    return jumps


@pytest.mark.parametrize("limits", ["none", "drawdown", "notional"])
@pytest.mark.parametrize("layout", ["one", "three-same-times", "three-own-times"])
@pytest.mark.parametrize("latency_ns", [0, 3 * MIN // 2])  # an order works over the next bars of the others
def test_the_sparse_bar_loops_show_timers_orders_and_breakers_what_process_shows(
    tmp_path: Path, layout: str, latency_ns: int, limits: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if layout == "one":
        tables = [bar_table(6_000, seed=21)]
    elif layout == "three-same-times":
        tables = [bar_table(2_000, seed=21 + k) for k in range(3)]
    else:  # interleaved, on times of their own, one of them starting late
        tables = [bar_table(2_000, seed=31), bar_table(2_000, seed=32, start=T0 + MIN // 3), bar_table(1_500, seed=33, start=T0 + 400 * MIN + 7)]
    sources = bar_sources(tmp_path / "b", tables)
    risk = None
    if limits == "drawdown":
        risk = RiskConfig(max_drawdown_pct=0.4, drawdown_action="reduce")
    elif limits == "notional":
        # An order of 1 is denied above the median close: one checked at a stale price is judged otherwise.
        median = float(np.median(np.concatenate([t.column("close").to_numpy() for t in tables])))
        risk = RiskConfig(max_order_notional=median)
    universe = tuple(src.instrument_id for src in sources)
    jumps = count_jumps(monkeypatch)

    def build() -> Kernel:
        return watching_kernel(universe, latency_ns, risk)

    fast, slow = run_both(sources, build, batch_rows=700)
    assert fast.perpetuals is None  # cash instruments: the sparse loop applies to one
    assert_same(fast, slow, min_fills=20 * len(tables))
    assert orders_of(fast) == orders_of(slow)
    for sparse, one_by_one in zip(fast.strategies, slow.strategies, strict=True):
        assert {entry[0] for entry in sparse.seen} == {"timer", "submitted", "filled"}
        assert sparse.seen == one_by_one.seen
    assert [snapshot(fast.cache.bar(i)) for i in universe] == [snapshot(slow.cache.bar(i)) for i in universe]
    assert [fast.cache.price(i) for i in universe] == [slow.cache.price(i) for i in universe]
    assert fast.risk.snapshot() == slow.risk.snapshot()
    assert fast.result.denials == slow.result.denials
    if limits == "drawdown":
        assert fast.risk.snapshot() != build().risk.snapshot()  # the breaker did see the equity move
    if limits == "notional":
        assert len(fast.result.denials) > 10 * len(tables)
    if layout == "one":  # the loop did skip: it passed over most bars
        assert sum(jumps) > tables[0].num_rows // 2
