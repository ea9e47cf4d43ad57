"""Kernel batch paths: trade batches and batches mixing instruments give exactly the fills of process()."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tradebus.data.catalog import Catalog
from tradebus.data.replay import MixedBatch, Replay, ReplaySource
from tradebus.engine.instrument import Instrument
from tradebus.engine.kernel import Kernel
from tradebus.engine.messages import Bar, OrderSide, TimeEvent, Trade
from tradebus.execution.config import VenueConfig
from tradebus.risk.config import RiskConfig
from tradebus.strategies.base import Strategy, feature_only
from tradebus.strategies.ema_cross import EmaCross
from tradebus.strategies.tick_ema import TickEmaCross

from tests.engine.test_kernel import MIN, bar_table, received_in_bursts

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


def rewrite_column(source: ReplaySource, table: pa.Table, column: str) -> None:
    """Put ``table``'s ``column`` (non-finite prices included) into the part files of the catalog dataset ``source``
    reads, row for row, and their sizes and digests into its manifest: a catalog written by another tool, which
    ``Catalog.write`` (refusing such prices) cannot make. ``table`` is the one written there, but for that column."""
    assert source.catalog_root is not None
    root = Path(source.catalog_root) / source.venue / source.market / source.symbol / source.dataset
    manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    values, start = table.column(column), 0
    for entry in manifest["files"]:
        path = root / entry["path"]
        part = pq.read_table(path)
        field = part.schema.field(column)
        part = part.set_column(part.schema.get_field_index(column), field, values.slice(start, part.num_rows).cast(field.type))
        pq.write_table(part, path)
        start += part.num_rows
        entry["size"], entry["sha256"] = path.stat().st_size, hashlib.sha256(path.read_bytes()).hexdigest()
    assert start == table.num_rows
    (root / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")


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


class RelayedTickEmaCross(TickEmaCross):
    """TickEmaCross through its own ``on_trade`` (the instrument check, then the decision)."""

    def on_trade(self, trade: Trade) -> None:
        super().on_trade(trade)


@pytest.mark.parametrize("path", REAL_TRADES, ids=lambda p: p.name)
def test_tick_ema_cross_deciding_as_the_trade_handler_trades_like_its_on_trade(path: Path) -> None:
    # One instrument on trades: the decision itself is subscribed (one call less per trade).
    # A subclass's own on_trade keeps the class's handler; both must make the same fills.
    source = ReplaySource.from_file(path, IID, "trades")
    params: dict[str, Any] = {"fast": 5, "slow": 20, "quantity": 0.01, "strategy_id": "tick"}
    direct, relayed = TickEmaCross(IID, **params), RelayedTickEmaCross(IID, **params)
    assert "on_trade" in vars(direct) and "on_trade" not in vars(relayed)
    runs = []
    for strategy in (direct, relayed):
        kernel = trade_kernel(strategy)
        kernel.run(Replay([source], batch_rows=500))
        runs.append(kernel)
    assert direct.decisions == relayed.decisions > 20
    assert_same(*runs, min_fills=20)


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


# ----------------------------------------------------------------------------- several instruments

def bar_sources(root: Path, tables: list[pa.Table], dataset: str = "bars") -> list[ReplaySource]:
    """One catalog source per table (``C0USD.SIM``, ``C1USD.SIM``, ...) of ``dataset``."""
    catalog = Catalog(root)
    sources = []
    for k, table in enumerate(tables):
        catalog.write(table, "sim", "spot", f"C{k}USD", dataset, period="month")
        sources.append(ReplaySource.from_catalog(catalog, f"C{k}USD.SIM", "sim", "spot", f"C{k}USD", dataset))
    return sources


class Watcher(Strategy):
    """Sees every instrument; logs what it sees of the others (features, history); trades across them.

    On each bar it records the bar, the history window of the next instrument and every
    instrument's EMA; every 7th bar it orders the next instrument, and a timer that never
    falls on a bar time orders the first one.
    """

    def __init__(self, ids: tuple[str, ...]) -> None:
        super().__init__(ids, strategy_id="watcher")
        self.ids = ids
        self.seen: list[tuple[Any, ...]] = []
        self.n = 0

    def history_sizes(self, instrument_id: str) -> dict[str, int]:
        return {"bars": 4}

    def on_start(self) -> None:
        self.set_timer("odd", 13 * MIN + MIN // 3, start_ns=T0)

    def on_timer(self, event: TimeEvent) -> None:
        if self.cache.price(self.ids[0]) == self.cache.price(self.ids[0]):
            self.submit_market(self.ids[0], OrderSide.BUY if self.n % 2 else OrderSide.SELL, 0.3, reason="timer")

    def on_bar(self, bar: Bar) -> None:
        self.n += 1
        other = self.ids[(self.ids.index(bar.instrument_id) + 1) % len(self.ids)]
        window = self.bars(instrument_id=other)
        emas = tuple(float(self.features(iid)[f"ema_{5 + k}"]) for k, iid in enumerate(self.ids))
        emas = tuple(x if x == x else None for x in emas)  # NaN (not ready) compares unequal to itself
        self.seen.append((bar.instrument_id, bar.ts_init, tuple(window.close.tolist()), emas))
        if self.n % 7 == 0 and self.cache.price(other) == self.cache.price(other):
            self.submit_market(other, OrderSide.BUY if self.n % 2 else OrderSide.SELL, 0.2, reason="watch")


def mixed_kernel(ids: tuple[str, ...], latency_ns: int) -> Kernel:
    kernel = Kernel(
        [Instrument("SIM", iid.split(".")[0], tick_size=0.01, lot_size=0.001, taker_fee=0.0002, margin=True) for iid in ids],
        initial_cash=1_000_000.0,
        venue_config=VenueConfig(latency_ns=latency_ns, slippage_bps=1.0),
    )
    for k, iid in enumerate(ids):
        kernel.add_strategy(EmaCross(iid, fast=5 + k, slow=17 + 2 * k, mode="long_short", quantity=1.0, strategy_id=f"ema{k}"))
    kernel.add_strategy(Watcher(ids))
    return kernel


def watcher_log(kernel: Kernel) -> list[tuple[Any, ...]]:
    (watcher,) = [s for s in kernel.strategies if isinstance(s, Watcher)]
    return watcher.seen


@pytest.mark.parametrize("count", [2, 10])
@pytest.mark.parametrize("latency_ns", [0, 3 * MIN // 2])
def test_instruments_with_identical_times_fill_like_process(tmp_path: Path, count: int, latency_ns: int) -> None:
    sources = bar_sources(tmp_path / "c", [bar_table(1_200, seed=k) for k in range(count)])
    ids = tuple(src.instrument_id for src in sources)
    replay = Replay(sources, batch_rows=500)
    assert sum(isinstance(b, MixedBatch) for b in replay.mixed_batches()) >= 3
    fast, slow = run_both(sources, lambda: mixed_kernel(ids, latency_ns), batch_rows=500)
    assert {f[1] for f in fills_of(fast)} == set(ids)
    assert_same(fast, slow, min_fills=100 * count)
    assert watcher_log(fast) == watcher_log(slow)
    assert len(watcher_log(fast)) == 1_200 * count


def test_instruments_with_staggered_times_and_intervals_fill_like_process(tmp_path: Path) -> None:
    # Different intervals, offsets, lengths and holes: the merge horizon cuts chunks everywhere.
    tables = [
        bar_table(1_500, seed=1),
        bar_table(300, seed=2, interval=5 * MIN),
        bar_table(900, seed=3, start=T0 + MIN // 2),
        bar_table(1_500, seed=4).filter(pa.array(np.arange(1_500) % 11 != 3)),
        bar_table(200, seed=5, start=T0 + 700 * MIN),
    ]
    tables.insert(0, received_in_bursts(bar_table(600, seed=6), 5 * MIN))  # first: it wins ties at a cut
    sources = bar_sources(tmp_path / "c", tables)
    ids = tuple(src.instrument_id for src in sources)
    for rows in (1, 64, 333):
        replay = Replay(sources, batch_rows=rows)
        assert [m for b in replay.mixed_batches() for m in b.messages()] == list(replay)
        assert max(len(b) for b in replay.mixed_batches()) <= rows  # merged, still no longer than one source's
    fast, slow = run_both(sources, lambda: mixed_kernel(ids, MIN // 2), batch_rows=333)
    assert_same(fast, slow, min_fills=300)
    assert watcher_log(fast) == watcher_log(slow)


class AsksOnce(Strategy):
    """At its 40th bar, submits an order the risk gate denies (``deny``) or asks the trading state; then only watches."""

    def __init__(self, ids: tuple[str, ...], action: str) -> None:
        super().__init__(ids, strategy_id="asks")
        self.ids = ids
        self.action = action
        self.n = 0

    def on_bar(self, bar: Bar) -> None:
        self.n += 1
        if self.n == 40:
            if self.action == "deny":
                self.submit_market(self.ids[1], OrderSide.BUY, 5.0)  # 500 of notional: max_order_notional denies it
            elif self.action == "state":
                self.ctx.trading_state()


class LeanAsksOnce(AsksOnce):
    @feature_only
    def on_bar(self, bar: Bar) -> None:
        super().on_bar(bar)


@pytest.mark.parametrize("lean", [False, True])
@pytest.mark.parametrize("action", ["deny", "state"])
def test_instruments_skip_execution_again_once_a_denied_order_leaves_nothing_working(
    tmp_path: Path, lean: bool, action: str
) -> None:
    # The several-instrument loops once left needs_execution set after a denied order (or a bare
    # trading_state()): every later time completed its times (before_time) and queued its bar for a
    # catch-up, as if an order worked, until another order filled.
    sources = bar_sources(tmp_path / "c", [bar_table(1_200, seed=k) for k in range(2)])
    ids = tuple(src.instrument_id for src in sources)

    def build(act: str) -> Kernel:
        kernel = Kernel(
            [Instrument("SIM", iid.split(".")[0], tick_size=0.01, lot_size=0.001, taker_fee=0.0002) for iid in ids],
            initial_cash=1_000_000.0,
            risk_config=RiskConfig(max_order_notional=100.0),
        )
        kernel.add_strategy((LeanAsksOnce if lean else AsksOnce)(ids, act))
        return kernel

    def completed_times(kernel: Kernel) -> list[int]:
        times: list[int] = []
        inner = kernel.before_time

        def counted(ts: int) -> int:
            times.append(ts)
            return inner(ts)

        kernel.before_time = counted  # type: ignore[method-assign]
        kernel.run(Replay(sources, batch_rows=500))
        return times

    idle, asked = build("none"), build(action)
    idle_times, asked_times = completed_times(idle), completed_times(asked)
    assert len(idle_times) < 100  # of 1,200 times: the loop completes only the times that need it
    if action == "deny":
        assert [str(o.status) for o in asked.result.orders] == ["DENIED"]
    # The denied order (or the state asked) costs the time after it, not every later one.
    assert len(asked_times) <= len(idle_times) + 1
    assert not asked._loop.lagging
    assert asked.result.equity == idle.result.equity


class EveryMessage(Strategy):
    """A market order on every bar or trade (alternating buy and sell, cycling through the instruments)."""

    def __init__(self, ids: tuple[str, ...], trade: bool) -> None:
        super().__init__(ids, strategy_id="every")
        self.ids = ids
        self.trade = trade
        self.n = 0

    def _act(self) -> None:
        self.n += 1
        if self.trade:
            side = OrderSide.BUY if self.n % 2 else OrderSide.SELL
            self.submit_market(self.ids[self.n % len(self.ids)], side, 0.01)

    def on_bar(self, bar: Bar) -> None:
        self._act()

    def on_trade(self, trade: Trade) -> None:
        self._act()


class LeanEveryMessage(EveryMessage):
    @feature_only
    def on_bar(self, bar: Bar | None = None) -> None:
        self._act()


@pytest.mark.parametrize(
    ("data", "lean"), [("bars", False), ("bars", True), ("mixed", False), ("mixed", True), ("trades", False)]
)
def test_without_mark_breakers_a_fill_does_not_complete_the_next_time(tmp_path: Path, data: str, lean: bool) -> None:
    # b4b4a89 had every fill (every bar or trade shown the execution engine) call before_time at the
    # next time so that drawdown and daily-loss breakers see it; without them before_time only
    # takes the hourly equity samples, and a market order on every bar completed all 1,200 times
    # (the round trip of bench/throughput.py went from 34 to 35-37 us).
    if data == "trades":
        sources = [trade_source(tmp_path, synthetic_trades(3_000, seed=7), "C0USD.SIM", "C0USD")]
    else:
        sources = bar_sources(tmp_path / "c", [bar_table(1_200, seed=k) for k in range(1 if data == "bars" else 2)])
    ids = tuple(src.instrument_id for src in sources)

    def completed_times(trade: bool) -> tuple[Kernel, list[int]]:
        kernel = Kernel(
            [Instrument("SIM", iid.split(".")[0], tick_size=0.01, lot_size=0.001, taker_fee=0.0002) for iid in ids],
            initial_cash=1_000_000.0,
            venue_config=VenueConfig(fill_on=data if data == "trades" else "bars"),
        )
        kernel.add_strategy((LeanEveryMessage if lean else EveryMessage)(ids, trade))
        times: list[int] = []
        inner = kernel.before_time

        def counted(ts: int) -> int:
            times.append(ts)
            return inner(ts)

        kernel.before_time = counted  # type: ignore[method-assign]
        kernel.run(Replay(sources, batch_rows=500))
        return kernel, times

    (_, idle_times), (busy, busy_times) = completed_times(False), completed_times(True)
    assert len(busy.result.fills) >= 1_000
    assert len(idle_times) < 100  # the hourly samples of 20 hours (or the trades' 5 minutes)
    assert busy_times == idle_times


@pytest.mark.parametrize("batched", [True, False])
def test_the_sample_that_first_prices_an_instrument_carries_its_first_price(tmp_path: Path, batched: bool) -> None:
    """C1USD's 20 bars come 0.5 ms into a millisecond of trades sampled every millisecond: the batch
    loop delivers them as a batch of their own (``bars``). The sample at the next millisecond is the
    first to price C1USD, at its last close; it carries the first close and its time (buy & hold
    starts there), and only that sample does."""
    from tradebus.reports.writers import EquityRows

    trades = synthetic_trades(1_000, seed=5)
    start = int(trades["ts_init"][300].as_py()) + 500_000
    bars = bar_table(20, seed=3, start=start, interval=10_000)
    sources = [trade_source(tmp_path / "t", trades), *bar_sources(tmp_path / "b", [bars])]

    def build() -> Kernel:
        return Kernel([instrument(), instrument("C0USD")], initial_cash=100_000.0, equity_interval_ns=1_000_000)

    fast, slow = run_both(sources, build, batch_rows=64)
    kernel = fast if batched else slow
    first_ts, first_close = int(bars["ts_init"][0].as_py()), float(bars["close"][0].as_py())
    samples = kernel.result.equity
    shown = [n for n, s in enumerate(samples) if s.first_prices]
    assert len(shown) == 1
    sample = samples[shown[0]]
    assert samples[shown[0] - 1].marks[1] != samples[shown[0] - 1].marks[1]  # NaN: not priced before
    assert sample.ts > first_ts and sample.marks[1] == float(bars["close"][-1].as_py()) != first_close
    assert sample.first_prices == ((first_ts, "C0USD.SIM", first_close),)
    rows = EquityRows(kernel.result.instruments).prices(sample)
    assert rows[0][0] == first_ts and rows[0][2:] == ("C0USD.SIM", first_close)
    assert [r[0] for r in rows[1:]] == [sample.ts, sample.ts]


@pytest.mark.parametrize("bursts", [False, True])
@pytest.mark.parametrize("mark_offset", [-3 * MIN, 0, MIN])
def test_a_perpetual_s_first_price_is_its_first_mark_or_bar_in_the_batch_loops_and_process(
    tmp_path: Path, mark_offset: int, bursts: bool
) -> None:
    """C0USD, a perpetual: marks every 7 minutes from 3 minutes before its first bar, at it, or a minute after;
    bars one a minute, or received 5 at a time (a burst at the first sample's time). The first price is the
    earlier of the first mark and the first bar (the mark at one time: it values the perpetual), and the first
    sample shows it where it came before the sample or the sample's mark is another price; both paths agree."""
    import pyarrow.compute as pc

    from tradebus.engine.instrument import InstrumentKind
    from tradebus.engine.messages import MarkPrice

    table = bar_table(200, seed=1)
    if bursts:
        table = received_in_bursts(table, 5 * MIN)
    (source,) = bar_sources(tmp_path / "c", [table])
    first_bar = int(table["ts_init"][0].as_py())
    start = first_bar + mark_offset
    marks = [MarkPrice(source.instrument_id, t, t, 100.0 + k * 0.25 + 0.003, float("nan"))
             for k, t in enumerate(range(start, first_bar + 200 * MIN, 7 * MIN))]  # fmt: skip

    def build() -> Kernel:
        kernel = Kernel([Instrument("SIM", "C0USD", kind=InstrumentKind.PERPETUAL, base="C0", quote="USD",
                                    tick_size=0.01, lot_size=0.001, leverage=5.0)],
                        initial_cash=10_000.0, equity_interval_ns=5 * MIN)  # fmt: skip
        kernel.feed_perpetual_data(marks)
        return kernel

    fast, slow = run_both([source], build, batch_rows=64)
    assert fast.result.equity == slow.result.equity
    samples = fast.result.equity
    first = samples[0]
    assert first.ts == first_bar and [s.first_prices for s in samples[1:]] == [()] * (len(samples) - 1)
    burst = table.filter(pc.equal(table["ts_init"], first_bar))["close"].to_pylist()
    if mark_offset < 0:  # the mark at start values it 3 minutes before its bars
        assert first.marks == (100.003,) and first.first_prices == ((start, "C0USD.SIM", 100.003),)
    elif mark_offset == 0:  # the mark and the bar at one time: the mark, the sample's own price
        assert first.marks == (100.003,) and first.first_prices == ()
    elif bursts:  # the burst's first close, its last the sample's
        assert first.marks == (burst[-1],) != (burst[0],)
        assert first.first_prices == ((first_bar, "C0USD.SIM", burst[0]),)
    else:
        assert first.marks == (burst[0],) and first.first_prices == ()
