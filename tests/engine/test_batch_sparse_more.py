"""Parity of the sparse lean trade loop with ``process()``: an order submitted from a timer while
rows are skipped, two declared strategies on one instrument and an order-rate breaker; NaN prices (which the portfolio does not mark at)."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradebus.engine import batch as batch_module
from tradebus.engine.instrument import Instrument
from tradebus.engine.kernel import Kernel
from tradebus.engine.messages import OrderSide, TimeEvent
from tradebus.execution.config import VenueConfig
from tradebus.risk.config import RiskConfig
from tradebus.strategies.tick_ema import TickEmaCross

from tests.engine.test_batch_lean import snapshot
from tests.engine.test_batch_sparse_bars import count_jumps
from tests.engine.test_kernel_batches import IID, T0, assert_same, orders_of, rewrite_column, run_both, synthetic_trades, trade_source


class TimerTrader(TickEmaCross):
    """TickEmaCross that also buys or sells a lot at market from a timer, and records what it saw there."""

    every = 1_300_000_000 + 777

    def on_start(self) -> None:
        super().on_start()
        self.seen: list[tuple[object, ...]] = []
        self.flip = False
        self.set_timer("poke", self.every, start_ns=T0)

    def on_timer(self, event: TimeEvent) -> None:
        self.seen.append((event.ts_init, self.clock.now_ns(), self.cache.price(self.instrument_id), snapshot(self.cache.trade(self.instrument_id))))
        self.flip = not self.flip
        self.submit_market(self.instrument_id, OrderSide.BUY if self.flip else OrderSide.SELL, 0.01)


def test_timer_orders_second_declared_strategy_and_order_rate_match_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = trade_source(tmp_path, synthetic_trades(30_000, seed=7))
    jumps = count_jumps(monkeypatch)

    def build() -> Kernel:
        kernel = Kernel(
            [Instrument("SIM", "BTCUSDT", tick_size=0.01, lot_size=0.0001, taker_fee=0.0002)],
            venue_config=VenueConfig(fill_on="trades", latency_ns=3_000_000),
            initial_cash=100_000.0,
            risk_config=RiskConfig(max_orders_per_window=2, order_rate_window_ns=5_000_000_000),
        )
        kernel.add_strategy(TimerTrader(IID, fast=20, slow=200, quantity=0.1, strategy_id="a"))
        kernel.add_strategy(TickEmaCross(IID, fast=7, slow=50, quantity=0.1, strategy_id="b"))
        return kernel

    fast, slow = run_both([source], build, batch_rows=4_000)
    assert_same(fast, slow, min_fills=10)
    assert orders_of(fast) == orders_of(slow)
    assert fast.strategies[0].seen == slow.strategies[0].seen
    assert len(fast.strategies[0].seen) > 10
    assert fast.result.denials == slow.result.denials
    assert snapshot(fast.cache.trade(IID)) == snapshot(slow.cache.trade(IID))
    assert sum(jumps) > 10_000  # the loop did skip rows


@settings(max_examples=400, deadline=None, derandomize=True)
@given(
    gaps=st.lists(st.integers(0, 3), min_size=2, max_size=40),
    prices=st.lists(st.sampled_from([1.0, 2.0, 3.0, 4.0, 5.0, math.nan, math.inf, -math.inf]), min_size=40, max_size=40),
    cut=st.tuples(st.integers(1, 39), st.integers(0, 39)),
    due=st.integers(-1, 130),
    bounds=st.tuples(st.sampled_from([-math.inf, 0.0, 1.0, 2.5, 3.0]), st.sampled_from([math.inf, 3.0, 3.5, 5.0, 6.0])),
    told=st.booleans(),
)  # fmt: skip
def test_the_next_row_is_the_first_row_due_or_priced_out_of_bounds(
    gaps: list[int],
    prices: list[float],
    cut: tuple[int, int],
    due: int,
    bounds: tuple[float, float],
    told: bool,
) -> None:
    """_next_row (a bisection on times, a compiled scan of prices, and their shortcuts: the row before ``stop``
    not due, every price of the batch inside the bounds) against a walk of the rows."""
    times = list(itertools.accumulate(gaps))
    n = len(times)
    values = np.array(prices[:n])
    start = min(cut[0], n - 1)
    stop = max(start, min(start + cut[1], n))
    lo, hi = bounds
    bounded = (lo, hi) != (-math.inf, math.inf)  # else no price is looked at (one of inf is no bound either)
    expected = next(
        (i for i in range(start, stop) if times[i] >= due or (bounded and (values[i] <= lo or values[i] >= hi))), stop
    )
    span = (float(values.min()), float(values.max())) if told else (math.nan, math.nan)
    ts = memoryview(np.array(times, dtype=np.int64))
    assert batch_module._next_row(ts, values, start, stop, due, lo, hi, span) == expected


def test_trade_batches_with_nan_prices_value_positions_as_process(tmp_path: Path) -> None:
    """800 of 4,000 trades' prices NaN (which the portfolio does not mark at): every equity sample
    (one each 7 ms) values the position at the last good price, as ``process()`` does."""
    table = synthetic_trades(30_000, seed=7)
    price = table.column("price").to_numpy().copy()
    price[np.random.default_rng(3).choice(np.arange(10_000, 14_000), 800, replace=False)] = np.nan
    source = trade_source(tmp_path, table)
    rewrite_column(source, table.set_column(table.schema.get_field_index("price"), "price", pa.array(price)), "price")

    def build() -> Kernel:
        kernel = Kernel(
            [Instrument("SIM", "BTCUSDT", tick_size=0.01, lot_size=0.0001, taker_fee=0.0002)],
            venue_config=VenueConfig(fill_on="trades"),
            initial_cash=100_000.0,
            equity_interval_ns=7_000_000,
        )
        kernel.add_strategy(TickEmaCross(IID, fast=5, slow=20, quantity=0.01))
        return kernel

    fast, slow = run_both([source], build, batch_rows=2_000)
    assert fast.portfolio.position(IID) != 0.0  # a position valued at every sample
    assert len(fast.result.equity) > 4_000
    assert_same(fast, slow, min_fills=1)
