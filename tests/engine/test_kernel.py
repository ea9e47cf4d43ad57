"""Kernel: the batch loop and process(msg) agree, no lookahead, event routing, timers, outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from tradebus.data.catalog import Catalog
from tradebus.data.replay import MemorySource, Replay, ReplayBatch, ReplaySource
from tradebus.engine.clock import LiveClock
from tradebus.engine.instrument import Instrument
from tradebus.engine.kernel import Kernel
from tradebus.engine.messages import (
    Bar,
    OrderDenied,
    OrderFilled,
    OrderSide,
    OrderSubmitted,
    PositionChanged,
    SubmitOrder,
    TimeEvent,
    Trade,
    TradingState,
    TradingStateChanged,
)
from tradebus.errors import ConfigError, DataError, FeatureError
from tradebus.execution.config import VenueConfig
from tradebus.execution.journal import Journal
from tradebus.risk.config import RiskConfig
from tradebus.risk.gate import RiskGate
from tradebus.strategies.base import Strategy
from tradebus.strategies.ema_cross import EmaCross

IID = "BTCUSD.SIM"
MIN = 60_000_000_000
T0 = 1_700_006_400_000_000_000  # 2023-11-15T00:00:00Z, a whole day


def make_instrument(**overrides: Any) -> Instrument:
    # Margin-enabled: most kernel tests trade long and short (a cash-only spot account cannot short).
    fields: dict[str, Any] = dict(
        venue="SIM", symbol="BTCUSD", tick_size=0.01, lot_size=0.001, taker_fee=0.0002, margin=True
    )
    fields.update(overrides)
    return Instrument(**fields)


def bar_table(n: int, seed: int = 7, start: int = T0, interval: int = MIN) -> pa.Table:
    """A random walk of ``n`` bars of ``interval`` (close times ``start + k*interval``)."""
    rng = np.random.default_rng(seed)
    close = np.round(100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.004, n))), 2)
    open_ = np.concatenate([[100.0], close[:-1]])
    high = np.round(np.maximum(open_, close) * (1.0 + np.abs(rng.normal(0.0, 0.001, n))), 2)
    low = np.round(np.minimum(open_, close) * (1.0 - np.abs(rng.normal(0.0, 0.001, n))), 2)
    ts = start + interval * np.arange(1, n + 1, dtype=np.int64)
    return pa.table(
        {"ts_event": ts, "ts_init": ts, "open": open_, "high": high, "low": low, "close": close,
         "volume": np.full(n, 3.0)}
    )


def received_in_bursts(table: pa.Table, every: int) -> pa.Table:
    """The bars received at the next multiple of ``every``: runs of rows share a ``ts_init``."""
    ts_event = table.column("ts_event").to_numpy()
    return table.set_column(1, "ts_init", pa.array((ts_event + every - 1) // every * every))


def write_catalog(root: Path, table: pa.Table, dataset: str = "bars_1m") -> ReplaySource:
    catalog = Catalog(root)
    catalog.write(table, "sim", "spot", "BTCUSD", dataset, period="month", mode="overwrite")
    return ReplaySource.from_catalog(catalog, IID, "sim", "spot", "BTCUSD", dataset)


def make_kernel(strategy: Strategy | None = None, **kwargs: Any) -> Kernel:
    kwargs.setdefault("initial_cash", 10_000.0)
    kernel = Kernel([make_instrument()], **kwargs)
    if strategy is not None:
        kernel.add_strategy(strategy)
    return kernel


def run_path(kernel: Kernel, path: str, sources: list[ReplaySource]) -> None:
    """``kernel.run`` over ``sources`` (``path == "run"``), else ``kernel.process`` of each message and ``stop``."""
    if path == "run":
        kernel.run(Replay(sources))
    else:
        for msg in Replay(sources):
            kernel.process(msg)
        kernel.stop()


def fills_of(kernel: Kernel) -> list[tuple[Any, ...]]:
    return [(f.ts_event, f.side, f.quantity, f.price, f.fee, f.client_order_id) for f in kernel.result.fills]


def orders_of(kernel: Kernel) -> list[tuple[Any, ...]]:
    return [
        (o.client_order_id, o.side, o.quantity, str(o.status), o.ts_created, o.ts_last) for o in kernel.result.orders
    ]


class Recorder(Strategy):
    """Records every callback in order; optionally trades a market order every ``every`` bars."""

    def __init__(
        self, instrument_id: str = IID, every: int = 0, strategy_id: str = "rec", quantity: float = 0.01
    ) -> None:
        super().__init__(instrument_id, strategy_id=strategy_id)
        self.every = every
        self.quantity = quantity
        self.log_: list[tuple[str, Any]] = []
        self.n = 0

    def on_bar(self, bar: Bar) -> None:
        self.log_.append(("bar", bar.ts_event))
        self.n += 1
        if self.every and self.n % self.every == 0:
            side = OrderSide.BUY if (self.n // self.every) % 2 else OrderSide.SELL
            self.submit_market(self.instrument_id, side, self.quantity, reason=f"bar {self.n}")

    def on_trade(self, trade: Trade) -> None:
        self.log_.append(("trade", trade.ts_event))

    def on_order_submitted(self, event: OrderSubmitted) -> None:
        self.log_.append(("submitted", event.client_order_id))

    def on_order_filled(self, event: OrderFilled) -> None:
        self.log_.append(("filled", event.client_order_id))

    def on_order_denied(self, event: OrderDenied) -> None:
        self.log_.append(("denied", event.reason))

    def on_position_changed(self, event: PositionChanged) -> None:
        self.log_.append(("position", event.quantity))


# ----------------------------------------------------------------------------- fast loop == process()


@pytest.mark.parametrize("latency_ns", [0, 3 * MIN])
def test_batch_loop_and_process_give_identical_orders_fills_and_equity(tmp_path: Path, latency_ns: int) -> None:
    source = write_catalog(tmp_path / "cat", bar_table(3_000))
    venue = VenueConfig(latency_ns=latency_ns, slippage_bps=1.0)
    fast = make_kernel(EmaCross(IID, fast=5, slow=20, mode="long_short", quantity=0.5), venue_config=venue)
    fast.run(Replay([source], batch_rows=700))
    slow = make_kernel(EmaCross(IID, fast=5, slow=20, mode="long_short", quantity=0.5), venue_config=venue)
    for msg in Replay([source]):
        slow.process(msg)
    slow.stop()
    assert len(fast.result.fills) > 20
    assert fills_of(fast) == fills_of(slow)
    assert orders_of(fast) == orders_of(slow)
    assert fast.result.equity == slow.result.equity
    assert fast.portfolio.equity() == slow.portfolio.equity()


def test_bar_batch_with_times_out_of_order_never_moves_the_clock_back() -> None:
    table = bar_table(40)
    ts = table["ts_init"].to_numpy().copy()
    ts[[20, 21]] = ts[[21, 20]]
    columns = {name: table[name].to_numpy() for name in ("open", "high", "low", "close", "volume")}

    class OneBatch:
        def batches(self) -> Any:
            yield ReplayBatch(0, IID, "bars", ts, ts, columns)

    seen: list[int] = []

    class Clocked(Strategy):
        def on_bar(self, bar: Bar) -> None:
            seen.append(self.clock.now_ns())

    make_kernel(Clocked(IID)).run(OneBatch())
    assert len(seen) == 40 and seen == sorted(seen)
    assert seen[20] == seen[21] == ts[20]


def test_a_replay_given_chunks_whose_times_go_back_never_moves_the_clock_back() -> None:
    """A MemorySource given its chunks was checked when first read, not by this replay: the loop checks it."""
    table = bar_table(40)
    ts = table["ts_init"].to_numpy().copy()
    ts[[20, 21]] = ts[[21, 20]]
    columns = {name: table[name].to_numpy() for name in ("open", "high", "low", "close", "volume")}
    source = MemorySource(IID, "bars", ts, ts, columns, None, (40,))
    seen: list[int] = []

    class Clocked(Strategy):
        def on_bar(self, bar: Bar) -> None:
            seen.append(self.clock.now_ns())

    make_kernel(Clocked(IID)).run(Replay([source]))
    assert len(seen) == 40 and seen == sorted(seen)
    assert seen[20] == seen[21] == ts[20]


@pytest.mark.parametrize(
    "limits",
    [
        {"max_drawdown_pct": 0.5},
        {"max_drawdown_pct": 0.5, "drawdown_action": "reduce"},
        {"max_daily_loss_pct": 0.1},
        {"max_daily_loss_pct": 0.1, "daily_loss_action": "reduce"},
        {"max_gross_exposure": 0.2},
        {"max_drawdown_pct": 1.0, "max_daily_loss_pct": 0.1, "max_gross_exposure": 0.2},
    ],
)
def test_batch_loop_and_process_agree_with_breakers_across_a_utc_midnight(
    tmp_path: Path, limits: dict[str, Any]
) -> None:
    """The bars cross a UTC midnight (the daily loss re-arms there); every state change is the same."""
    source = write_catalog(tmp_path / "cat", bar_table(2_000, seed=3, start=T0 - 1_000 * MIN))
    risk = RiskConfig(**limits)
    kernels = []
    for path in ("run", "process"):
        kernel = make_kernel(Recorder(every=7, quantity=20.0), risk_config=risk)
        changes: list[tuple[Any, ...]] = []
        kernel.bus.subscribe(TradingStateChanged, lambda c, log=changes: log.append((c.state, c.reason, c.ts_event)))
        run_path(kernel, path, [source])
        kernels.append((kernel, changes))
    (fast, fast_changes), (slow, slow_changes) = kernels
    assert fast.result.denials and fast_changes, "a breaker should have tripped"
    assert fast_changes == slow_changes
    assert fills_of(fast) == fills_of(slow)
    assert [d.reason for d in fast.result.denials] == [d.reason for d in slow.result.denials]
    if len(limits) <= 2 and "max_daily_loss_pct" in limits:  # tripped the day before, re-armed at midnight
        first_two = [(why.split(":")[0], ts < T0) for _, why, ts in fast_changes[:2]]
        assert first_two == [("daily_loss", True), ("daily_loss re-armed", False)]
        assert fast_changes[1][2] == T0


class MidnightOrder(Recorder):
    """A :class:`Recorder` that also buys on the bar before ``T0`` (a UTC midnight) and at an alert at ``T0``."""

    def on_start(self) -> None:
        self.clock.set_alert("midnight", T0, self.at_midnight)

    def on_bar(self, bar: Bar) -> None:
        super().on_bar(bar)
        if bar.ts_event == T0 - MIN:
            self.submit_market(self.instrument_id, OrderSide.BUY, 1.0, reason="before midnight")

    def at_midnight(self, event: TimeEvent) -> None:
        self.log_.append(("midnight", self.clock.now_ns()))
        self.submit_market(self.instrument_id, OrderSide.BUY, 1.0, reason="midnight")


@pytest.mark.parametrize("path", ["run", "process"])
def test_an_order_at_midnight_is_checked_after_the_daily_loss_re_armed(tmp_path: Path, path: str) -> None:
    """The daily loss halted trading the day before; an order at midnight, ahead of any bar, passes.

    The breakers last saw the clock at the day's last bar (where an order was checked, and
    denied): unless the midnight order's check evaluates them at its own time, the day has not
    rolled for them and HALTED denies it too. (The bar closing at midnight trips the daily loss
    again, which cancels the order before it reaches the market at the next bar's open.)
    """
    source = write_catalog(tmp_path / "cat", bar_table(1_100, seed=3, start=T0 - 1_000 * MIN))
    kernel = make_kernel(MidnightOrder(every=7, quantity=20.0), risk_config=RiskConfig(max_daily_loss_pct=0.1))
    changes: list[TradingStateChanged] = []
    kernel.bus.subscribe(TradingStateChanged, changes.append)
    run_path(kernel, path, [source])
    status = {kernel.result.submit_reasons[o.client_order_id]: str(o.status) for o in kernel.result.orders}
    assert (status["before midnight"], status["midnight"]) == ("DENIED", "CANCELED")
    assert [(c.state, c.ts_event < T0) for c in changes[:3]] == [
        (TradingState.HALTED, True),
        (TradingState.ACTIVE, False),
        (TradingState.HALTED, False),
    ]
    assert changes[1].ts_event == T0 and changes[1].reason == "daily_loss re-armed: the UTC day rolled over"


# ----------------------------------------------------------------------------- no lookahead


def test_perturbing_bars_after_t_changes_nothing_decided_at_or_before_t(tmp_path: Path) -> None:
    base = bar_table(2_000, seed=11)
    cut = 1_200
    t = int(base.column("ts_init")[cut - 1].as_py())
    columns = {name: base.column(name).to_numpy().copy() for name in base.column_names}
    rng = np.random.default_rng(99)
    scale = 1.0 + rng.normal(0.0, 0.05, len(columns["close"]) - cut)
    for name in ("open", "high", "low", "close"):
        columns[name][cut:] = np.round(columns[name][cut:] * scale, 2)
    columns["high"] = np.maximum.reduce([columns["high"], columns["open"], columns["close"]])
    columns["low"] = np.minimum.reduce([columns["low"], columns["open"], columns["close"]])
    perturbed = pa.table(columns)

    runs = []
    for name, table in (("a", base), ("b", perturbed)):
        kernel = make_kernel(EmaCross(IID, fast=8, slow=21, mode="long_short", quantity=1.0))
        kernel.run(Replay([write_catalog(tmp_path / name, table)], batch_rows=500))
        runs.append(kernel)
    before = [[f for f in k.result.fills if f.ts_event <= t] for k in runs]
    created = [[o.client_order_id for o in k.result.orders if o.ts_created <= t] for k in runs]
    assert len(before[0]) > 10
    assert before[0] == before[1]
    assert created[0] == created[1]
    assert [s for s in runs[0].result.equity if s.ts <= t] == [s for s in runs[1].result.equity if s.ts <= t]
    assert fills_of(runs[0]) != fills_of(runs[1]), "the perturbation must matter after t"


def test_fills_happen_strictly_after_the_decision(tmp_path: Path) -> None:
    kernel = make_kernel(Recorder(every=3))
    kernel.run(Replay([write_catalog(tmp_path / "c", bar_table(300))]))
    created = {o.client_order_id: o.ts_created for o in kernel.result.orders}
    assert kernel.result.fills
    assert all(f.ts_event > created[f.client_order_id] for f in kernel.result.fills)


# ----------------------------------------------------------------------------- routing and lifecycle


def test_strategy_sees_features_updated_with_the_bar_it_receives(tmp_path: Path) -> None:
    seen: list[tuple[float, float]] = []

    class Probe(EmaCross):
        def on_bar(self, bar: Bar) -> None:
            seen.append((bar.close, self.features()[self.fast_name]))

    kernel = make_kernel(Probe(IID, fast=1 + 1, slow=3, quantity=1.0))
    kernel.run(Replay([write_catalog(tmp_path / "c", bar_table(50))]))
    closes = [c for c, _ in seen]
    k = 2.0 / 3.0
    ema = (closes[0] + closes[1]) / 2.0
    assert np.isnan(seen[0][1])
    assert seen[1][1] == ema
    for close, value in seen[2:]:
        ema = (close - ema) * k + ema
        assert value == ema


@pytest.mark.parametrize(
    "specs",
    [
        [{"name": "imb", "kind": "book_imbalance", "params": {"levels": 5}}],
        [{"name": "imb", "kind": "ofi"}, {"name": "smooth", "kind": "ema", "params": {"span": 3}, "input": "imb"}],
    ],
    ids=["book_imbalance", "ofi_and_a_feature_of_it"],
)
def test_a_feature_driven_by_book_events_is_refused_naming_it(specs: list[dict[str, Any]]) -> None:
    """The kernel feeds its banks bars, trades and quotes: a book feature would stay NaN for the whole run."""
    kernel = make_kernel(EmaCross(IID, fast=2, slow=3, quantity=1.0), features=specs)
    with pytest.raises(FeatureError, match=f"feature 'imb' of {IID} is driven by book events"):
        kernel.prepare()


def test_order_events_reach_only_the_strategy_that_sent_the_order(tmp_path: Path) -> None:
    trader = Recorder(every=5, strategy_id="trader")
    watcher = Recorder(every=0, strategy_id="watcher")
    kernel = make_kernel()
    kernel.add_strategy(trader)
    kernel.add_strategy(watcher)
    kernel.run(Replay([write_catalog(tmp_path / "c", bar_table(40))]))
    assert any(kind == "filled" for kind, _ in trader.log_)
    assert not any(kind in ("filled", "submitted") for kind, _ in watcher.log_)
    # Positions are per instrument, so every strategy on the instrument sees them.
    assert any(kind == "position" for kind, _ in watcher.log_)


def test_fill_callback_sees_the_new_position_and_position_event_follows(tmp_path: Path) -> None:
    positions: list[float] = []

    class Checker(Recorder):
        def on_order_filled(self, event: OrderFilled) -> None:
            positions.append(self.position())
            super().on_order_filled(event)

    strategy = Checker(every=4)
    kernel = make_kernel(strategy)
    kernel.run(Replay([write_catalog(tmp_path / "c", bar_table(30))]))
    kinds = [kind for kind, _ in strategy.log_]
    first_fill = kinds.index("filled")
    assert kinds[first_fill + 1] == "position"
    assert positions[0] == 0.01  # the first order (n=4) buys


def test_timer_fires_before_the_bar_that_follows_it(tmp_path: Path) -> None:
    log: list[str] = []

    class Timed(Strategy):
        def on_start(self) -> None:
            self.clock.set_alert("mid", T0 + 2 * MIN + MIN // 2, self.on_time)

        def on_time(self, event: TimeEvent) -> None:
            log.append(f"timer@{(event.ts_event - T0) / MIN}")

        def on_bar(self, bar: Bar) -> None:
            log.append(f"bar@{(bar.ts_event - T0) // MIN}")

    kernel = make_kernel(Timed(IID))
    kernel.run(Replay([write_catalog(tmp_path / "c", bar_table(40))]))
    assert log[:5] == ["bar@1", "bar@2", "timer@2.5", "bar@3", "bar@4"]
    assert len(log) == 41


def test_strategy_clock_reads_the_time_of_the_bar_being_handled(tmp_path: Path) -> None:
    times: list[tuple[int, int]] = []

    class Clocked(Strategy):
        def on_bar(self, bar: Bar) -> None:
            times.append((bar.ts_init, self.clock.now_ns()))

    kernel = make_kernel(Clocked(IID))
    kernel.run(Replay([write_catalog(tmp_path / "c", bar_table(40))]))
    assert times and all(a == b for a, b in times)


def test_denied_order_is_reported_to_the_strategy_and_recorded(tmp_path: Path) -> None:
    strategy = Recorder(every=10)
    kernel = make_kernel(strategy, risk_config=RiskConfig(max_order_quantity=0.001))
    kernel.run(Replay([write_catalog(tmp_path / "c", bar_table(30))]))
    denials = [reason for kind, reason in strategy.log_ if kind == "denied"]
    assert len(denials) == 3 and all(r.startswith("max_order_quantity") for r in denials)
    assert len(kernel.result.denials) == 3
    assert kernel.result.fills == []


def test_risk_factory_builds_the_gate_every_order_goes_through(tmp_path: Path) -> None:
    class NoSells(RiskGate):
        def check(self, cmd: SubmitOrder, open_orders: int = 0, *, order_quantity: float | None = None) -> str | None:
            if cmd.side < 0:
                return "no_sells: selling is off"
            return super().check(cmd, open_orders, order_quantity=order_quantity)

    strategy = Recorder(every=10)
    kernel = make_kernel(strategy, risk_factory=NoSells, risk_config=RiskConfig(max_order_quantity=1.0))
    assert isinstance(kernel.risk, NoSells) and kernel.execution.risk is kernel.risk
    assert kernel.risk.config == RiskConfig(max_order_quantity=1.0)
    kernel.run(Replay([write_catalog(tmp_path / "c", bar_table(40))]))
    assert [d.reason for d in kernel.result.denials] == ["no_sells: selling is off"] * 2
    assert [f.side for f in kernel.result.fills] == ["BUY", "BUY"]


def test_journal_records_every_command_before_its_events(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.sqlite")
    kernel = make_kernel(Recorder(every=10), journal=journal)
    kernel.run(Replay([write_catalog(tmp_path / "c", bar_table(30))]))
    entries = [(e.kind, type(e.message).__name__, e.message.client_order_id) for e in journal.entries()]
    journal.close()
    first, second, last = (o.client_order_id for o in kernel.result.orders)  # last: decided on the last bar
    assert entries == [
        ("command", "SubmitOrder", first), ("event", "OrderSubmitted", first),
        ("event", "OrderAccepted", first), ("event", "OrderFilled", first),
        ("command", "SubmitOrder", second), ("event", "OrderSubmitted", second),
        ("event", "OrderAccepted", second), ("event", "OrderFilled", second),
        ("command", "SubmitOrder", last), ("event", "OrderSubmitted", last),
    ]


def test_target_position_counts_working_orders(tmp_path: Path) -> None:
    ids: list[str | None] = []

    class Target(Strategy):
        def on_bar(self, bar: Bar) -> None:
            ids.append(self.target_position(self.instrument_id, 1.0, reason="target"))

    # Orders arrive 5 bars later: calls in between must not stack more orders.
    kernel = make_kernel(Target(IID), venue_config=VenueConfig(latency_ns=5 * MIN))
    kernel.run(Replay([write_catalog(tmp_path / "c", bar_table(30))]))
    assert ids[0] is not None and all(i is None for i in ids[1:])
    assert kernel.portfolio.position(IID) == 1.0


def test_equity_is_sampled_on_the_interval_grid_and_at_the_end(tmp_path: Path) -> None:
    kernel = make_kernel(Recorder(), equity_interval_ns=10 * MIN)
    kernel.run(Replay([write_catalog(tmp_path / "c", bar_table(35))]))
    assert [(s.ts - T0) // MIN for s in kernel.result.equity] == [1, 10, 20, 30, 35]
    assert all(s.equity == 10_000.0 for s in kernel.result.equity)


@pytest.mark.parametrize("path", ["run", "process"])
def test_an_equity_sample_marks_every_bar_of_its_time(tmp_path: Path, path: str) -> None:
    """Two instruments' hourly bars close together: a sample at that time marks both closes.

    The sample fell due on the first instrument's bar and was taken at once, so the second
    instrument was marked at its previous close in every sample, the last one included.
    """
    hour = 60 * MIN
    tables = [bar_table(40, seed=1, interval=hour), bar_table(40, seed=2, interval=hour)]
    sources = hourly_sources(tmp_path / "c", tables)
    ids = [src.instrument_id for src in sources]
    kernel = Kernel([make_instrument(symbol=iid.split(".")[0]) for iid in ids], equity_interval_ns=hour)
    for k, iid in enumerate(ids):
        kernel.add_strategy(EmaCross(iid, fast=3, slow=8, mode="long_short", quantity=1.0, strategy_id=f"ema{k}"))
    run_path(kernel, path, sources)
    closes = [dict(zip(t.column("ts_init").to_pylist(), t.column("close").to_pylist(), strict=True)) for t in tables]
    samples = kernel.result.equity
    assert len(samples) == 40 and len(kernel.result.fills) >= 10
    assert [s.marks for s in samples] == [tuple(c[s.ts] for c in closes) for s in samples]
    assert samples[-1].equity == kernel.portfolio.equity()


def hourly_sources(root: Path, tables: list[pa.Table]) -> list[ReplaySource]:
    """Instrument ``C{k}USD.SIM`` replays ``tables[k]`` (hourly bars)."""
    catalog = Catalog(root)
    sources = []
    for k, table in enumerate(tables):
        catalog.write(table, "sim", "spot", f"C{k}USD", "bars_1h", period="month")
        sources.append(ReplaySource.from_catalog(catalog, f"C{k}USD.SIM", "sim", "spot", f"C{k}USD", "bars_1h"))
    return sources


def stepped_bars(closes: list[float], interval: int) -> pa.Table:
    """Bars closing at ``closes`` (each opening at the previous close) every ``interval`` from ``T0``."""
    n = len(closes)
    opens = [closes[0], *closes[:-1]]
    ts = T0 + interval * np.arange(1, n + 1, dtype=np.int64)
    return pa.table(
        {"ts_event": ts, "ts_init": ts, "open": opens, "high": np.maximum(opens, closes),
         "low": np.minimum(opens, closes), "close": closes, "volume": np.full(n, 3.0)}
    )  # fmt: skip


class PairOnce(Strategy):
    """Once both instruments have a bar, buys 100 of the first and sells (or buys) 100 of the second; then holds."""

    def __init__(self, ids: list[str], hedged: bool) -> None:
        super().__init__(tuple(ids), strategy_id="pair")
        self.ids = ids
        self.hedged = hedged
        self.bars = 0

    def on_bar(self, bar: Bar) -> None:
        self.bars += 1
        if self.bars == 2:
            self.submit_market(self.ids[0], OrderSide.BUY, 100.0)
            self.submit_market(self.ids[1], OrderSide.SELL if self.hedged else OrderSide.BUY, 100.0)


@pytest.mark.parametrize("path", ["run", "process"])
@pytest.mark.parametrize("hedged", [True, False])
def test_a_drawdown_breaker_sees_every_bar_of_its_time(tmp_path: Path, path: str, hedged: bool) -> None:
    """Both instruments close at 100, 110 from hour 11, 100 again from hour 21: a breaker sees whole times.

    The breakers were evaluated on every mark, so between two instruments' bars of one time the
    equity held one leg at its new close and the other at its previous one. Hedged (long one,
    short the other, 100 each on an equity of 10,000), the book gains or loses nothing, yet
    one of the two steps put it 1,000 (10 %) below its peak in between and halted trading.
    Long both, the fall at hour 21 does halt, at the equity of the whole time (9,996 after
    fees: 10 % below the peak of 11,996) and not a halfway one.
    """
    hour = 60 * MIN
    closes = [100.0] * 10 + [110.0] * 10 + [100.0] * 20
    sources = hourly_sources(tmp_path / "c", [stepped_bars(closes, hour), stepped_bars(closes, hour)])
    ids = [src.instrument_id for src in sources]
    kernel = Kernel(
        [make_instrument(symbol=iid.split(".")[0], leverage=3.0) for iid in ids],  # 20,000 of positions
        initial_cash=10_000.0,
        equity_interval_ns=hour,
        risk_config=RiskConfig(max_drawdown_pct=5.0),
    )
    kernel.add_strategy(PairOnce(ids, hedged))
    changes: list[TradingStateChanged] = []
    kernel.bus.subscribe(TradingStateChanged, changes.append)
    run_path(kernel, path, sources)
    assert len(kernel.result.fills) == 2
    equity = {s.ts: s.equity for s in kernel.result.equity}
    if hedged:
        assert changes == []
        assert set(equity.values()) == {10_000.0, 9_996.0}
    else:
        assert [(c.state, c.ts_event) for c in changes] == [(TradingState.HALTED, T0 + 21 * hour)]
        assert changes[0].reason == "max_drawdown: 16.67% >= 5.0% below the peak 11996.0 (equity 9996.0)"
        assert equity[T0 + 21 * hour] == 9_996.0


def test_the_last_sample_marks_the_last_bar_of_a_burst(tmp_path: Path) -> None:
    """Bars received in bursts (five at one time): the sample of a burst's time marks its last bar."""
    table = bar_table(60, seed=3)
    burst = received_in_bursts(table, 5 * MIN)
    kernel = make_kernel(EmaCross(IID, fast=3, slow=8, mode="long_short", quantity=1.0), equity_interval_ns=5 * MIN)
    kernel.run(Replay([write_catalog(tmp_path / "c", burst)]))
    last_close = dict(zip(burst.column("ts_init").to_pylist(), burst.column("close").to_pylist(), strict=True))
    assert len(kernel.result.fills) >= 3
    assert [s.marks for s in kernel.result.equity] == [(last_close[s.ts],) for s in kernel.result.equity]
    assert kernel.result.equity[-1].equity == kernel.portfolio.equity()


def test_process_accepts_trades_and_runs_with_a_live_clock() -> None:
    strategy = Recorder()
    kernel = make_kernel(strategy, clock=LiveClock())
    kernel.process(Trade(IID, T0 + 1, T0 + 1, 100.0, 1.0, 1, "x1"))
    kernel.process(Bar(IID, T0 + MIN, T0 + MIN, 100.0, 101.0, 99.0, 100.5, 2.0))
    assert strategy.log_ == [("trade", T0 + 1), ("bar", T0 + MIN)]
    assert kernel.cache.price(IID) == 100.5
    assert kernel.result.trades == 1 and kernel.result.bars == 1


def test_run_with_a_live_clock_is_refused() -> None:
    kernel = make_kernel(clock=LiveClock())
    with pytest.raises(ConfigError, match="SimulatedClock"):
        kernel.run(Replay([ReplaySource(IID, "bars", path=Path("unused.csv"))]))


def test_process_rejects_unknown_instrument_and_message_type() -> None:
    kernel = make_kernel()
    with pytest.raises(DataError, match="unknown instrument 'ETH.SIM'"):
        kernel.process(Bar("ETH.SIM", 1, 1, 1.0, 1.0, 1.0, 1.0, 1.0))
    with pytest.raises(DataError, match="cannot process a TimeEvent"):
        kernel.process(TimeEvent("x", 1, 1))


def test_replay_of_an_instrument_the_kernel_does_not_know_is_a_data_error(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "c")
    catalog.write(bar_table(5), "sim", "spot", "ETHUSD", "bars_1m", period="month")
    source = ReplaySource.from_catalog(catalog, "ETHUSD.SIM", "sim", "spot", "ETHUSD", "bars_1m")
    with pytest.raises(DataError, match="unknown instrument 'ETHUSD.SIM'"):
        make_kernel().run(Replay([source]))


def test_duplicate_strategy_id_and_unknown_strategy_instrument_are_config_errors() -> None:
    kernel = make_kernel(Recorder(strategy_id="same"))
    with pytest.raises(ConfigError, match="already used"):
        kernel.add_strategy(Recorder(strategy_id="same"))
    with pytest.raises(ConfigError, match="unknown instrument"):
        kernel.add_strategy(Recorder(instrument_id="ETH.SIM", strategy_id="other"))


@pytest.mark.parametrize("reserved", ["liquidation", "ops", "killswitch"])
def test_a_strategy_with_the_id_of_a_liquidation_or_a_flatten_is_refused(reserved: str) -> None:
    """A strategy class whose own id is a liquidation's or a flatten's (a config's is refused at load): its fills would
    be taken for a close of every strategy's position by the kernel's positions and the reports."""
    kernel = make_kernel()
    with pytest.raises(ConfigError, match=f"strategy id '{reserved}' is the id of the fills no strategy sends"):
        kernel.add_strategy(Recorder(strategy_id=reserved))
    assert kernel.strategies == []


def test_adding_a_strategy_after_start_is_refused() -> None:
    kernel = make_kernel()
    kernel.start()
    with pytest.raises(ConfigError, match="after start"):
        kernel.add_strategy(Recorder())


def test_interleaved_instruments_in_small_batches_match_process(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "c")
    catalog.write(bar_table(600, seed=1), "sim", "spot", "BTCUSD", "bars_1m", period="month")
    catalog.write(bar_table(600, seed=2, start=T0 + MIN // 2), "sim", "spot", "ETHUSD", "bars_1m", period="month")
    sources = [
        ReplaySource.from_catalog(catalog, IID, "sim", "spot", "BTCUSD", "bars_1m"),
        ReplaySource.from_catalog(catalog, "ETHUSD.SIM", "sim", "spot", "ETHUSD", "bars_1m"),
    ]

    def build() -> Kernel:
        kernel = Kernel([make_instrument(), make_instrument(symbol="ETHUSD")], initial_cash=10_000.0)
        kernel.add_strategy(EmaCross(IID, fast=3, slow=9, mode="long_short", quantity=1.0, strategy_id="btc"))
        kernel.add_strategy(EmaCross("ETHUSD.SIM", fast=4, slow=11, quantity=2.0, strategy_id="eth"))
        return kernel

    fast = build()
    fast.run(Replay(sources))
    slow = build()
    for msg in Replay(sources):
        slow.process(msg)
    slow.stop()
    assert {f.instrument_id for f in fast.result.fills} == {IID, "ETHUSD.SIM"}
    assert fills_of(fast) == fills_of(slow)
    assert fast.result.equity == slow.result.equity


def test_metrics_reconcile_with_the_portfolio(tmp_path: Path) -> None:
    from tradebus.reports.metrics import compute_metrics, round_trips

    kernel = make_kernel(EmaCross(IID, fast=5, slow=20, mode="long_short", quantity=0.5))
    kernel.run(Replay([write_catalog(tmp_path / "c", bar_table(2_000))]))
    metrics = compute_metrics(kernel.result)
    assert metrics["fees_paid"] == kernel.portfolio.fees_paid
    assert metrics["final_equity"] == kernel.portfolio.equity()
    trips = round_trips(kernel.result.fills)
    assert sum(t.pnl for t in trips) == pytest.approx(kernel.portfolio.realized_pnl, rel=1e-12, abs=1e-9)


# ----------------------------------------------------------------------------- no lookahead across instruments

ETH = "ETHUSD.SIM"
FIVE = 5 * MIN


class CrossTrader(Strategy):
    """Decides on BTC's 1-minute bars and on a clock timer; trades both BTC and ETH (5-minute bars).

    Every third BTC bar: a market order on ETH; every fifth: a limit on ETH near its last close.
    A timer every 7.25 minutes (never on a bar close) trades both instruments.
    """

    def __init__(self) -> None:
        super().__init__((IID, ETH), strategy_id="cross")
        self.n = 0
        self.timer_orders: list[str] = []

    def on_start(self) -> None:
        self.clock.set_timer("mid-bar", 7 * MIN + MIN // 4, self.on_time, start_ns=T0)

    def _side(self, k: int) -> OrderSide:
        return OrderSide.BUY if k % 2 else OrderSide.SELL

    def on_time(self, event: TimeEvent) -> None:
        self.n += 1
        for iid in (IID, ETH):
            if self.cache.price(iid) == self.cache.price(iid):  # priced: the instrument has data
                self.timer_orders.append(self.submit_market(iid, self._side(self.n), 0.5, reason="timer"))

    def on_bar(self, bar: Bar) -> None:
        if bar.instrument_id != IID:
            return
        self.n += 1
        eth = self.cache.price(ETH)
        if eth != eth:
            return
        if self.n % 3 == 0:
            self.submit_market(ETH, self._side(self.n // 3), 1.0, reason="on btc bar")
        if self.n % 5 == 0:
            px = round(eth * (0.999 if self.n % 2 else 1.001), 2)
            self.submit_limit(ETH, self._side(self.n), 1.0, px, reason="limit on btc bar")


def cross_sources(
    root: Path, n: int = 600, btc: pa.Table | None = None, eth: pa.Table | None = None
) -> list[ReplaySource]:
    catalog = Catalog(root)
    catalog.write(bar_table(n, seed=5) if btc is None else btc, "sim", "spot", "BTCUSD", "bars_1m", period="month")
    catalog.write(
        bar_table(n // 5, seed=6, interval=FIVE) if eth is None else eth, "sim", "spot", "ETHUSD", "bars_5m",
        period="month",
    )
    return [
        ReplaySource.from_catalog(catalog, IID, "sim", "spot", "BTCUSD", "bars_1m"),
        ReplaySource.from_catalog(catalog, ETH, "sim", "spot", "ETHUSD", "bars_5m"),
    ]


def cross_kernel(latency_ns: int) -> Kernel:
    kernel = Kernel(
        [make_instrument(margin=True), make_instrument(symbol="ETHUSD", margin=True)],
        initial_cash=1_000_000.0,
        venue_config=VenueConfig(latency_ns=latency_ns, slippage_bps=1.0),
    )
    kernel.add_strategy(CrossTrader())
    return kernel


INTERVALS = {IID: MIN, ETH: FIVE}


@pytest.mark.parametrize("latency_ns", [0, MIN // 2, 3 * MIN // 2, 7 * MIN])
def test_bar_fills_use_only_bars_that_opened_after_arrival_across_instruments_and_timers(
    tmp_path: Path, latency_ns: int
) -> None:
    # Fails before the fix: an order decided on a BTC bar or a timer inside an ETH bar filled at
    # that ETH bar's open, a price from before the decision.
    sources = cross_sources(tmp_path / "c")
    kernel = cross_kernel(latency_ns)
    kernel.run(Replay(sources))
    bars = {(m.instrument_id, m.ts_event): m for m in Replay(sources)}
    arrival = {o.client_order_id: o.ts_created + latency_ns for o in kernel.result.orders}
    strategy = kernel.strategies[0]
    assert isinstance(strategy, CrossTrader)
    filled = {f.client_order_id for f in kernel.result.fills}
    assert len(filled) > 50 and filled & set(strategy.timer_orders)
    assert {f.instrument_id for f in kernel.result.fills} == {IID, ETH}
    for fill in kernel.result.fills:
        bar = bars[(fill.instrument_id, fill.ts_event)]
        opened = bar.ts_init - INTERVALS[fill.instrument_id]
        assert opened >= arrival[fill.client_order_id], (fill, opened - arrival[fill.client_order_id])
        assert bar.low <= fill.price <= bar.high


def test_order_decided_on_a_1h_bar_fills_at_the_next_4h_bar_open_not_the_current_one() -> None:
    hour = 60 * MIN
    kernel = Kernel([make_instrument(), make_instrument(symbol="ETHUSD")], initial_cash=10_000.0)
    filled: list[OrderFilled] = []

    class OnHourly(Strategy):
        def on_bar(self, bar: Bar) -> None:
            if bar.instrument_id == IID and bar.ts_event == T0 + 10 * hour:
                self.submit_market(ETH, OrderSide.BUY, 1.0)

        def on_order_filled(self, event: OrderFilled) -> None:
            filled.append(event)

    kernel.add_strategy(OnHourly((IID, ETH)))
    eth = {k: Bar(ETH, T0 + k * hour, T0 + k * hour, 10.0 * k, 10.0 * k + 5, 10.0 * k - 5, 10.0 * k + 1, 1.0)
           for k in (4, 8, 12, 16)}
    for k in range(1, 17):
        if k in eth:
            kernel.process(eth[k])
        kernel.process(Bar(IID, T0 + k * hour, T0 + k * hour, 100.0, 101.0, 99.0, 100.0, 1.0))
    # Decided at 10:00, inside the ETH bar stamped 12:00 (it opened at 08:00 at 120.0, a price
    # from before the decision); the first ETH bar opening after 10:00 is the one stamped 16:00.
    (fill,) = filled
    assert (fill.ts_event, fill.last_px) == (T0 + 16 * hour, 160.0)


@pytest.mark.parametrize("latency_ns", [0, 3 * MIN // 2])
def test_batch_loop_and_process_agree_across_instruments_timers_and_fractional_latency(
    tmp_path: Path, latency_ns: int
) -> None:
    sources = cross_sources(tmp_path / "c", n=2_000)
    fast = cross_kernel(latency_ns)
    fast.run(Replay(sources, batch_rows=300))
    slow = cross_kernel(latency_ns)
    for msg in Replay(sources):
        slow.process(msg)
    slow.stop()
    assert len(fast.result.fills) > 100
    assert fills_of(fast) == fills_of(slow)
    assert orders_of(fast) == orders_of(slow)
    assert fast.result.equity == slow.result.equity


@pytest.mark.parametrize(("latency_ns", "bars_to_fill"), [(0, 1), (MIN // 2, 2), (3 * MIN // 2, 3)])
def test_batch_loop_tells_the_venue_where_the_next_bar_opens_after_idle_bars(
    tmp_path: Path, latency_ns: int, bars_to_fill: int
) -> None:
    # The batch loop skips the venue while nothing works; an order must still fill on the first
    # bar opening at or after its arrival (not one bar later, not earlier), as process() does.
    class Sparse(Strategy):
        def on_bar(self, bar: Bar) -> None:
            if (bar.ts_event - T0) // MIN % 50 == 0:
                self.submit_market(IID, OrderSide.BUY, 0.01)

    source = write_catalog(tmp_path / "c", bar_table(400))
    kernel = make_kernel(Sparse(IID), venue_config=VenueConfig(latency_ns=latency_ns))
    kernel.run(Replay([source], batch_rows=400))
    created = {o.client_order_id: o.ts_created for o in kernel.result.orders}
    assert len(kernel.result.fills) == 7  # the 8th is decided on the last bar
    assert all(f.ts_event == created[f.client_order_id] + bars_to_fill * MIN for f in kernel.result.fills)


def test_perturbing_both_instruments_after_t_changes_nothing_decided_or_filled_by_t(tmp_path: Path) -> None:
    n, cut_minutes = 1_500, 900
    t = T0 + cut_minutes * MIN + MIN // 3  # inside a BTC bar and an ETH bar
    rng = np.random.default_rng(4)

    def perturbed(table: pa.Table) -> pa.Table:
        columns = {name: table.column(name).to_numpy().copy() for name in table.column_names}
        late = columns["ts_init"] > t
        scale = 1.0 + rng.normal(0.0, 0.05, int(late.sum()))
        for name in ("open", "high", "low", "close"):
            columns[name][late] = np.round(columns[name][late] * scale, 2)
        columns["high"] = np.maximum.reduce([columns["high"], columns["open"], columns["close"]])
        columns["low"] = np.minimum.reduce([columns["low"], columns["open"], columns["close"]])
        return pa.table(columns)

    btc, eth = bar_table(n, seed=5), bar_table(n // 5, seed=6, interval=FIVE)
    runs = []
    for name, (a, b) in (("a", (btc, eth)), ("b", (perturbed(btc), perturbed(eth)))):
        kernel = cross_kernel(3 * MIN // 2)
        kernel.run(Replay(cross_sources(tmp_path / name, btc=a, eth=b), batch_rows=250))
        runs.append(kernel)
    before = [[f for f in k.result.fills if f.ts_event <= t] for k in runs]
    created = [[(o.client_order_id, o.ts_created) for o in k.result.orders if o.ts_created <= t] for k in runs]
    assert len(before[0]) > 50
    assert before[0] == before[1]
    assert created[0] == created[1]
    assert [s for s in runs[0].result.equity if s.ts <= t] == [s for s in runs[1].result.equity if s.ts <= t]
    assert fills_of(runs[0]) != fills_of(runs[1]), "the perturbation must matter after t"


HOUR = 60 * MIN


def holdings_kernel() -> tuple[Kernel, list[str]]:
    """C0USD.SIM and C1USD.SIM (cash-only spot), starting with 1 C0 and 40 C1 and no USD."""
    ids = ["C0USD.SIM", "C1USD.SIM"]
    instruments = [
        Instrument(venue="SIM", symbol=iid.split(".")[0], base=iid[:2], quote="USD", tick_size=0.01, lot_size=0.001)
        for iid in ids
    ]
    kernel = Kernel(instruments, balances={"C0": 1.0, "C1": 40.0, "USD": 0.0}, equity_interval_ns=HOUR)
    kernel.add_strategy(Recorder(ids[0]))
    return kernel, ids


def late_holding_sources(root: Path) -> list[ReplaySource]:
    """C0 closes 100, 110, ... from hour 1; C1 has no bar before hour 3, then closes 10, 11, ...."""
    c0 = stepped_bars([100.0 + 10.0 * k for k in range(6)], HOUR)
    c1 = stepped_bars([10.0, 10.0, 10.0, 11.0, 12.0, 13.0], HOUR).slice(2)
    return hourly_sources(root, [c0, c1])


def test_a_daemon_samples_equity_from_the_first_time_every_starting_balance_has_a_price(tmp_path: Path) -> None:
    """40 C1 priced from hour 3 only: the equity series and initial_cash start at hour 3, with C1 in them.

    The first sample was taken at hour 1 valuing the 40 C1 at 0: initial_cash 100 (C0 alone),
    then a jump to 120 + 400 at hour 3 counted as a 420 % return.
    """
    kernel, _ = holdings_kernel()
    for msg in Replay(late_holding_sources(tmp_path / "c")):
        kernel.process(msg)
    kernel.stop()
    result = kernel.result
    assert result.initial_cash == 1 * 120.0 + 40 * 10.0
    assert [((s.ts - T0) // HOUR, s.equity) for s in result.equity] == [
        (3, 520.0), (4, 130.0 + 40 * 11.0), (5, 140.0 + 40 * 12.0), (6, 150.0 + 40 * 13.0)
    ]


def test_a_backtest_whose_starting_balance_has_no_price_at_its_start_is_refused_naming_it(tmp_path: Path) -> None:
    kernel, _ = holdings_kernel()
    sources = late_holding_sources(tmp_path / "c")
    with pytest.raises(ConfigError) as exc:
        kernel.run(Replay(sources))
    assert str(exc.value) == (
        "balances.C1: C1 is valued by C1USD.SIM, whose first price comes at 2023-11-15T03:00:00Z, after the run's "
        "start 2023-11-15T01:00:00Z: until then equity counts it 0, so initial_cash and every return would leave it "
        "out; set data.start to 2023-11-15T03:00:00Z or later (or leave it out of balances)"
    )
    # From there on every starting balance has a price: the run's returns start from 1 * 120 + 40 * 10.
    kernel, _ = holdings_kernel()
    kernel.run(Replay(sources, start_ns=T0 + 3 * HOUR))
    assert kernel.result.initial_cash == 520.0
    assert kernel.result.equity[-1].equity == 150.0 + 40 * 13.0


def test_a_backtest_whose_starting_balance_never_gets_a_price_is_refused_naming_it(tmp_path: Path) -> None:
    kernel, _ = holdings_kernel()
    c0 = stepped_bars([100.0, 110.0, 120.0], HOUR)
    with pytest.raises(ConfigError) as exc:
        kernel.run(Replay(hourly_sources(tmp_path / "c", [c0])))
    assert str(exc.value) == (
        "balances.C1: C1 is valued by C1USD.SIM, which got no price in the run (2023-11-15T01:00:00Z to "
        "2023-11-15T03:00:00Z): equity would count it 0; give C1USD.SIM data in data.sources or leave C1 out of "
        "balances"
    )
