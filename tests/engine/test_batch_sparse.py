"""The sparse lean trade loop: a handler that declares the rows where it acts
(:func:`~tradebus.strategies.base.wakes_at`) is called only there, and the trades skipped between
leave the clock, the cache's price and trade, the feature view, the equity, the breakers and a
margin position's liquidation as ``process()`` leaves them, at every timer and order event."""

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
from tradebus.strategies.tick_ema import TickEmaCross

from tests.engine.test_batch_lean import snapshot
from tests.engine.test_kernel_batches import (
    IID,
    T0,
    assert_same,
    orders_of,
    run_both,
    synthetic_trades,
    trade_source,
)


def _seen(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


class Watching(TickEmaCross):
    """TickEmaCross (sparse: its decision declares where it acts) that records, on every timer
    and order event, the clock, the cache's price and trade, its feature row and the equity."""

    every = 700_000_000 + 333_333  # trades are stamped in whole milliseconds

    def on_start(self) -> None:
        super().on_start()
        self.seen: list[tuple[Any, ...]] = []
        self.set_timer("watch", self.every, start_ns=T0)

    def look(self, what: str, ts: int) -> None:
        self.seen.append(
            (
                what,
                ts,
                self.clock.now_ns(),
                self.cache.price(self.instrument_id),
                snapshot(self.cache.trade(self.instrument_id)),
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


def test_the_relation_changes_are_the_rows_where_the_decision_acts() -> None:
    strategy = EmaCross("X.SIM", fast=2, slow=3, quantity=1.0)
    strategy._fast_col, strategy._slow_col = 1, 0
    nan = math.nan
    # (slow, fast): unready, tie, above, above, tie, below, NaN, below, above
    features = np.array([[nan, 1.0], [2.0, 2.0], [2.0, 3.0], [2.0, 4.0], [3.0, 3.0], [3.0, 1.0], [nan, nan], [3.0, 2.0], [1.0, 2.0]])
    assert strategy._relation_changes("X.SIM", features).tolist() == [2, 5, 8]
    strategy._above = True  # the relation a previous batch left
    assert strategy._relation_changes("X.SIM", features).tolist() == [5, 8]
    strategy._above = False
    assert strategy._relation_changes("X.SIM", features).tolist() == [2, 5, 8]
    assert strategy._relation_changes("Y.SIM", features) is None  # not the instrument it decides on
    assert strategy._relation_changes("X.SIM", features[:0]).tolist() == []


@pytest.mark.parametrize(
    ("cash", "risk"),
    [
        (100_000.0, None),
        # A margin position worth 12 times the cash: its liquidation bounds are near the price.
        (400.0, None),
        # A drawdown breaker: the equity band bounds the skipped prices.
        (100_000.0, RiskConfig(max_drawdown_pct=0.3, drawdown_action="reduce")),
    ],
    ids=["plain", "near-liquidation", "drawdown"],
)
def test_the_sparse_trade_loop_shows_timers_orders_and_breakers_what_process_shows(
    tmp_path: Path, cash: float, risk: RiskConfig | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = trade_source(tmp_path, synthetic_trades(30_000, seed=12))
    jumps = []

    def counted(*args: Any) -> int:
        row = next_row(*args)
        jumps.append(row - args[2])
        return row

    next_row = batch_module._next_row
    monkeypatch.setattr(batch_module, "_next_row", counted)

    def build() -> Kernel:
        kernel = Kernel(
            [Instrument("SIM", "BTCUSDT", tick_size=0.01, lot_size=0.0001, taker_fee=0.0002, margin=True, leverage=20.0, maintenance_rate=0.05)], venue_config=VenueConfig(fill_on="trades"), initial_cash=cash, risk_config=risk
        )
        kernel.add_strategy(Watching(IID, fast=20, slow=200, quantity=0.1))
        return kernel

    fast, slow = run_both([source], build, batch_rows=4_000)
    assert_same(fast, slow, min_fills=20)
    assert orders_of(fast) == orders_of(slow)
    (sparse,), (one_by_one,) = fast.strategies, slow.strategies
    assert {entry[0] for entry in sparse.seen} == {"timer", "submitted", "filled"}
    assert sparse.seen == one_by_one.seen
    assert snapshot(fast.cache.trade(IID)) == snapshot(slow.cache.trade(IID))
    assert fast.cache.price(IID) == slow.cache.price(IID)
    assert [k.risk.snapshot() for k in (fast, slow)][0] == slow.risk.snapshot()
    assert (fast.result.liquidations, fast.result.denials) == (slow.result.liquidations, slow.result.denials)
    # The loop did skip: most of its steps passed trades over.
    assert sum(jumps) > 10_000
