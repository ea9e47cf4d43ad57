"""Kernel batch paths: trade batches and batches mixing instruments give exactly the fills of process()."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from tradebus.data.catalog import Catalog
from tradebus.data.replay import Replay, ReplaySource
from tradebus.engine.instrument import Instrument
from tradebus.engine.kernel import Kernel
from tradebus.engine.messages import OrderSide, Trade
from tradebus.execution.config import VenueConfig
from tradebus.strategies.base import Strategy
from tradebus.strategies.tick_ema import TickEmaCross

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
#: Real Binance trades: spot BTCUSDT 2021-01-08 (2,001) and USD-M BTCUSDT 2024-08-08 (4,000).
REAL_TRADES = [FIXTURES / "data" / "btcusdt-trades.parquet", FIXTURES / "features_flow" / "binance_usdm_btcusdt_trades_20240808_4k.csv"]
IID = "BTCUSDT.SIM"
T0 = 1_700_006_400_000_000_000


def instrument(symbol: str = "BTCUSDT") -> Instrument:
    return Instrument("SIM", symbol, tick_size=0.01, lot_size=0.0001, taker_fee=0.0002, maker_fee=0.0001, margin=True)


def fills_of(kernel: Kernel) -> list[tuple[Any, ...]]:
    return [
        (f.ts_event, f.instrument_id, f.side, f.quantity, f.price, f.fee, f.liquidity, f.client_order_id, f.trade_id)
        for f in kernel.result.fills
    ]


def orders_of(kernel: Kernel) -> list[tuple[Any, ...]]:
    return [(o.client_order_id, o.side, o.quantity, str(o.status), o.ts_created, o.ts_last) for o in kernel.result.orders]


class LimitProbe(Strategy):
    """Every ``every`` trades with nothing working: a limit order at the last trade price, canceled later.

    Whether it is marketable on arrival depends on the last trade price the venue knows, so
    it catches a batch loop that leaves the venue's reference price stale.
    """

    def __init__(self, instrument_id: str, every: int, offset: float) -> None:
        super().__init__(instrument_id, strategy_id="probe")
        self.every = every
        self.offset = offset
        self.n = 0
        self.working: str | None = None
        self.age = 0

    def on_trade(self, trade: Trade) -> None:
        self.n += 1
        if self.working is not None:
            self.age += 1
            order = self.ctx.orders.get(self.working)
            if order is None or not order.is_open:
                self.working = None
            elif self.age == 4:
                self.cancel(self.working)
            return
        if self.n % self.every == 0:
            side = OrderSide.BUY if (self.n // self.every) % 2 else OrderSide.SELL
            price = round(trade.price + (self.offset if side is OrderSide.BUY else -self.offset), 2)
            self.working = self.submit_limit(self.instrument_id, side, 0.01, price)
            self.age = 0


def synthetic_trades(n: int, seed: int, start: int = T0) -> pa.Table:
    """A random walk of trades, several sharing each timestamp (as bursts do on a venue)."""
    rng = np.random.default_rng(seed)
    price = np.round(30_000.0 * np.exp(np.cumsum(rng.normal(0.0, 0.0004, n))), 2)
    ts = start + np.cumsum(rng.integers(0, 3, n)).astype(np.int64) * 1_000_000
    return pa.table(
        {
            "ts_event": ts,
            "ts_init": ts,
            "price": price,
            "size": np.round(rng.lognormal(-3.0, 1.0, n), 6) + 0.0001,
            "aggressor": rng.choice(np.array([-1, 1], dtype=np.int8), n),
            "trade_id": [str(k) for k in range(n)],
        }
    )


def trade_source(tmp_path: Path, table: pa.Table, iid: str = IID, symbol: str = "BTCUSDT") -> ReplaySource:
    catalog = Catalog(tmp_path / "cat")
    catalog.write(table, "sim", "spot", symbol, "trades", period="month", mode="overwrite")
    return ReplaySource.from_catalog(catalog, iid, "sim", "spot", symbol, "trades")


def run_both(sources: list[ReplaySource], build: Any, batch_rows: int) -> tuple[Kernel, Kernel]:
    """The batch loop (``run``) and one message at a time (``process``) on the same data."""
    fast = build()
    fast.run(Replay(sources, batch_rows=batch_rows))
    slow = build()
    for msg in Replay(sources):
        slow.process(msg)
    slow.stop()
    return fast, slow


def assert_same(fast: Kernel, slow: Kernel, min_fills: int) -> None:
    assert len(fast.result.fills) >= min_fills
    assert fills_of(fast) == fills_of(slow)
    assert orders_of(fast) == orders_of(slow)
    assert fast.result.equity == slow.result.equity
    assert fast.portfolio.equity() == slow.portfolio.equity()
    assert (fast.result.trades, fast.result.bars) == (slow.result.trades, slow.result.bars)
    assert (fast.result.start_ns, fast.result.end_ns) == (slow.result.start_ns, slow.result.end_ns)
    assert (fast.result.first_event_ns, fast.result.last_event_ns) == (slow.result.first_event_ns, slow.result.last_event_ns)


# ----------------------------------------------------------------------------- trades


def trade_kernel(strategy: Strategy, latency_ns: int = 0) -> Kernel:
    kernel = Kernel(
        [instrument()], venue_config=VenueConfig(fill_on="trades", latency_ns=latency_ns), initial_cash=100_000.0
    )
    kernel.add_strategy(strategy)
    return kernel


@pytest.mark.parametrize("path", REAL_TRADES, ids=lambda p: p.name)
@pytest.mark.parametrize("latency_ns", [0, 2_000_000])
def test_trade_batches_fill_like_process_on_real_trades(path: Path, latency_ns: int) -> None:
    source = ReplaySource.from_file(path, IID, "trades")

    def build() -> Kernel:
        return trade_kernel(TickEmaCross(IID, fast=5, slow=20, quantity=0.01), latency_ns)

    fast, slow = run_both([source], build, batch_rows=500)
    assert_same(fast, slow, min_fills=40)


@pytest.mark.parametrize("path", REAL_TRADES, ids=lambda p: p.name)
def test_limit_orders_after_idle_trade_batches_see_the_latest_trade_price(path: Path) -> None:
    # A limit at the last trade price +/- 1 cent: marketable on arrival or resting depends on
    # the last trade the venue knows; the batch loop skipped showing it the idle trades.
    source = ReplaySource.from_file(path, IID, "trades")
    fast, slow = run_both([source], lambda: trade_kernel(LimitProbe(IID, every=37, offset=0.01)), batch_rows=600)
    assert {f[6] for f in fills_of(fast)} == {"MAKER", "TAKER"}
    assert_same(fast, slow, min_fills=10)


@pytest.mark.parametrize("latency_ns", [0, 1_000_000])
def test_trade_batches_fill_like_process_on_synthetic_trades(tmp_path: Path, latency_ns: int) -> None:
    source = trade_source(tmp_path, synthetic_trades(20_000, seed=3))

    def build() -> Kernel:
        kernel = trade_kernel(TickEmaCross(IID, fast=8, slow=40, quantity=0.05), latency_ns)
        kernel.add_strategy(LimitProbe(IID, every=101, offset=-0.5))
        return kernel

    fast, slow = run_both([source], build, batch_rows=3_000)
    assert_same(fast, slow, min_fills=200)
