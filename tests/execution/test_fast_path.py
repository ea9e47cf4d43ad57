"""The fast order path gives the general path's results, order for order.

The fast path (``ExecutionEngine.fast_path``: ``OrderAccepted`` and ``PositionChanged`` built
only for a journal or a subscriber; ``SimulatedVenue.fast_path``: a lone working market
order matched inline on bars and trades) must change nothing but the work done. Each test
runs the same kernel on the same real data twice, with both switches on and both off, and
compares fills, orders (status, venue id, last event time, average price, fees, trade ids),
denials, equity samples, the portfolio, the account's balances and, where a journal or a
subscriber reads them, every order event.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from tradebus.data.replay import Replay, ReplaySource
from tradebus.engine.bus import MessageBus
from tradebus.engine.clock import SimulatedClock
from tradebus.engine.instrument import Instrument
from tradebus.engine.kernel import Kernel
from tradebus.engine.messages import (
    Bar,
    OrderAccepted,
    OrderFilled,
    OrderSide,
    OrderStatus,
    OrderSubmitted,
    OrderType,
    PositionChanged,
    Quote,
    SubmitOrder,
    Trade,
)
from tradebus.execution.config import VenueConfig
from tradebus.execution.costs import SlippageConfig
from tradebus.execution.engine import ExecutionEngine
from tradebus.execution.journal import Journal
from tradebus.execution.orders import OrderManager
from tradebus.execution.simulated import SimulatedVenue
from tradebus.risk.config import RiskConfig
from tradebus.strategies.base import Strategy
from tradebus.strategies.ema_cross import EmaCross
from tradebus.strategies.tick_ema import TickEmaCross

from .conftest import BAR_NS, bar, build_stack

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
#: 1,200 real Coinbase BTC-USD 4h candles (2022-01-01 to 2022-07-19).
BARS_4H = FIXTURES / "kernel" / "coinbase_btc_usd_4h_2022_1200.csv"
#: Real Binance trades: spot BTCUSDT 2021-01-08 (2,001) and USD-M BTCUSDT 2024-08-08 (4,000).
REAL_TRADES = [FIXTURES / "data" / "btcusdt-trades.parquet", FIXTURES / "features_flow" / "binance_usdm_btcusdt_trades_20240808_4k.csv"]
A, B = "BTCUSD.SIM", "BTCUSD2.SIM"


def instrument(symbol: str = "BTCUSD", margin: bool = True) -> Instrument:
    return Instrument(
        "SIM", symbol, base="BTC", quote="USDT" if symbol.endswith("USDT") else "USD", tick_size=0.01, lot_size=0.001,
        maker_fee=0.0004, taker_fee=0.0006, margin=margin,
    )  # fmt: skip


def set_fast_path(monkeypatch: pytest.MonkeyPatch, on: bool) -> None:
    monkeypatch.setattr(ExecutionEngine, "fast_path", on)
    monkeypatch.setattr(SimulatedVenue, "fast_path", on)


class EventLog(Strategy):
    """A strategy mixin that records every order event it receives (so they are all built)."""

    events: list[Any]

    def on_start(self) -> None:
        super().on_start()
        self.events = []

    def on_order_submitted(self, event: OrderSubmitted) -> None:
        self.events.append(event)

    def on_order_accepted(self, event: OrderAccepted) -> None:
        self.events.append(event)

    def on_order_filled(self, event: OrderFilled) -> None:
        self.events.append(event)

    def on_position_changed(self, event: PositionChanged) -> None:
        self.events.append(event)


class Mixer(Strategy):
    """On bars of its instruments: market orders (``target_position`` and plain), limits, stops,
    cancels, and orders the risk gate or the account refuses, so the lone-market-order case
    alternates with several orders working at once.
    """

    def __init__(self, ids: tuple[str, ...], quantity: float, strategy_id: str = "mixer") -> None:
        super().__init__(ids, strategy_id=strategy_id)
        self.quantity = quantity
        self.n = 0

    def on_bar(self, bar: Bar) -> None:
        self.n += 1
        n, iid, q = self.n, bar.instrument_id, self.quantity
        if n % 3 == 0:
            self.target_position(iid, q if (n // 3) % 2 else -q, reason="flip")
        if n % 5 == 0:
            self.submit_market(iid, OrderSide.BUY if n % 2 else OrderSide.SELL, q / 2, reason="plain")
        if n % 7 == 0:
            self.submit_limit(iid, OrderSide.BUY, q, round(bar.close * 0.99, 2), reason="dip")
        if n % 11 == 0:
            self.submit_stop(iid, OrderSide.SELL, q, round(bar.close * 0.985, 2), reason="stop")
        if n % 13 == 0:
            self.submit_market(iid, OrderSide.BUY, q * 50, reason="too big")  # above max_order_quantity
        if n % 17 == 0:
            self.cancel_all(iid)


class LoggedMixer(EventLog, Mixer):
    """A :class:`Mixer` whose order and position events are all received (and thus built)."""


class TickMixer(Strategy):
    """On trades: TickEmaCross-like market orders every few trades, with a limit now and then."""

    def __init__(self, iid: str, every: int) -> None:
        super().__init__(iid, strategy_id="tickmix")
        self.every = every
        self.n = 0

    def on_trade(self, trade: Trade) -> None:
        self.n += 1
        if self.n % self.every == 0:
            k = self.n // self.every
            self.target_position(self.instrument_id, 0.01 if k % 2 else -0.01, reason="flip")
            if k % 3 == 0:  # at the touch: fills (as a maker) once a trade prints at or below it
                self.submit_limit(self.instrument_id, OrderSide.BUY, 0.01, trade.price)
            if k % 4 == 0:
                self.submit_market(self.instrument_id, OrderSide.SELL, 0.005)
            if k % 9 == 0:
                self.cancel_all()


def outcome(kernel: Kernel) -> bytes:
    """Everything a run produced that the fast path could change, as JSON (NaN prices compare equal)."""
    portfolio = kernel.portfolio
    produced = {
        "fills": kernel.result.fills,
        "orders": [o.to_dict() for o in kernel.result.orders],
        "denials": kernel.result.denials,
        "equity": kernel.result.equity,
        "reasons": kernel.result.submit_reasons,
        "portfolio": (portfolio.cash, portfolio.fees_paid, portfolio.realized_pnl, portfolio.max_equity),
        "positions": {iid: (portfolio.position(iid), portfolio.avg_price(iid)) for iid in kernel.instruments},
        "balances": portfolio.account.balances(),
        "strategy_positions": kernel.strategy_positions,
        "venue_positions": {iid: kernel.venue.position(iid) for iid in kernel.instruments},  # type: ignore[attr-defined]
    }
    return msgspec.json.encode(produced)


def both(monkeypatch: pytest.MonkeyPatch, run: Callable[[], Kernel]) -> tuple[Kernel, Kernel]:
    """``run()`` on the fast path, then on the general path."""
    set_fast_path(monkeypatch, True)
    fast = run()
    set_fast_path(monkeypatch, False)
    general = run()
    set_fast_path(monkeypatch, True)
    return fast, general


def bar_sources(*ids: str) -> list[ReplaySource]:
    return [ReplaySource.from_file(BARS_4H, iid, "bars", interval="4h") for iid in ids]


def bar_kernel(strategies: list[Strategy], ids: tuple[str, ...], cash: float, margin: bool, **venue: Any) -> Kernel:
    kernel = Kernel(
        [instrument(iid.split(".")[0], margin) for iid in ids],
        venue_config=VenueConfig(**venue),
        risk_config=RiskConfig(max_order_quantity=5.0),
        initial_cash=cash,
    )
    for strategy in strategies:
        kernel.add_strategy(strategy)
    return kernel


def assert_same(fast: Kernel, general: Kernel, min_fills: int) -> None:
    assert len(fast.result.fills) >= min_fills
    assert outcome(fast) == outcome(general)
    # The fast path was taken: it published fewer messages (no unread OrderAccepted/PositionChanged).
    assert fast.bus.published < general.bus.published


@pytest.mark.parametrize("slippage_bps", [0.0, 3.0])
def test_ema_cross_on_real_bars_same_fills_fast_or_general(monkeypatch: pytest.MonkeyPatch, slippage_bps: float) -> None:
    def run() -> Kernel:
        kernel = bar_kernel(
            [EmaCross(A, fast=5, slow=20, mode="long_short", quantity=0.5)], (A,), 100_000.0, True, slippage_bps=slippage_bps
        )
        kernel.run(Replay(bar_sources(A)))
        return kernel

    fast, general = both(monkeypatch, run)
    assert_same(fast, general, min_fills=40)


@pytest.mark.parametrize("latency_ns", [0, 90 * 60_000_000_000])
def test_mixed_orders_on_two_instruments_same_results_fast_or_general(
    monkeypatch: pytest.MonkeyPatch, latency_ns: int
) -> None:
    # Cash-only spot with little cash: the account denies some orders at the gate and cancels
    # some fills at match time.
    def run() -> Kernel:
        kernel = bar_kernel([Mixer((A, B), 0.4)], (A, B), 30_000.0, False, slippage_bps=2.0, latency_ns=latency_ns)
        kernel.run(Replay(bar_sources(A, B)))
        return kernel

    fast, general = both(monkeypatch, run)
    assert_same(fast, general, min_fills=300)
    statuses = {o.status for o in fast.result.orders}
    assert {OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.DENIED} <= statuses
    assert any(d.reason.startswith("buying_power") for d in fast.result.denials)
    assert any(o.order_type is OrderType.LIMIT and o.status is OrderStatus.FILLED for o in fast.result.orders)
    assert any(o.order_type is OrderType.STOP_MARKET and o.status is OrderStatus.FILLED for o in fast.result.orders)


class ReduceOnlyMarkets(Strategy):
    """On bars: a market buy, then reduce-only market sells larger than the position (capped at it) and
    while flat (rejected on arrival), one order at a time: the lone-market-order arrival on bars."""

    def __init__(self, iid: str) -> None:
        super().__init__(iid, strategy_id="reducer")
        self.n = 0

    def on_bar(self, bar: Bar) -> None:
        self.n += 1
        if self.n % 4 == 1:
            self.submit_market(self.instrument_id, OrderSide.BUY, 0.3)
        elif self.n % 4 != 0:
            self.submit_market(self.instrument_id, OrderSide.SELL, 0.5, reduce_only=True)


def test_reduce_only_market_orders_on_bars_same_results_fast_or_general(monkeypatch: pytest.MonkeyPatch) -> None:
    def run() -> Kernel:
        kernel = bar_kernel([ReduceOnlyMarkets(A)], (A,), 100_000.0, True, slippage_bps=2.0)
        kernel.run(Replay(bar_sources(A)))
        return kernel

    fast, general = both(monkeypatch, run)
    assert_same(fast, general, min_fills=500)
    reducing = [o for o in fast.result.orders if o.reduce_only]
    capped = [o for o in reducing if o.status is OrderStatus.CANCELED and o.filled_qty == pytest.approx(0.3)]
    assert len(capped) >= 250 and sum(o.status is OrderStatus.REJECTED for o in reducing) >= 250


def test_subscribers_receive_the_same_events_fast_or_general(monkeypatch: pytest.MonkeyPatch) -> None:
    # A strategy that handles OrderAccepted and PositionChanged gets them built on the fast path too.
    strategies: list[LoggedMixer] = []

    def run() -> Kernel:
        strategy = LoggedMixer((A, B), 0.3)
        strategies.append(strategy)
        kernel = bar_kernel([strategy], (A, B), 1_000_000.0, True)
        kernel.run(Replay(bar_sources(A, B)))
        return kernel

    fast, general = both(monkeypatch, run)
    assert outcome(fast) == outcome(general)
    seen_fast, seen_general = strategies[0].events, strategies[1].events
    assert seen_fast == seen_general
    kinds = {type(e) for e in seen_fast}
    assert {OrderSubmitted, OrderAccepted, OrderFilled, PositionChanged} <= kinds
    assert any(d.reason.startswith("max_order_quantity") for d in fast.result.denials)


def test_journal_contents_same_fast_or_general(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    paths = iter([tmp_path / "fast.db", tmp_path / "general.db"])
    journals: list[Journal] = []

    def run() -> Kernel:
        journal = Journal(next(paths))
        journals.append(journal)
        kernel = Kernel(
            [instrument("BTCUSD", True)],
            venue_config=VenueConfig(slippage_bps=1.0),
            risk_config=RiskConfig(max_order_quantity=5.0),
            journal=journal,
            initial_cash=50_000.0,
        )
        kernel.add_strategy(Mixer((A,), 0.5))
        kernel.run(Replay(bar_sources(A)))
        return kernel

    fast, general = both(monkeypatch, run)
    assert outcome(fast) == outcome(general)
    entries = [[(e.kind, type(e.message).__name__, msgspec.json.encode(e.message)) for e in journal.entries()] for journal in journals]
    for journal in journals:
        journal.close()
    assert len(entries[0]) > 500
    assert entries[0] == entries[1]
    assert {"OrderAccepted", "OrderFilled", "OrderCanceled"} <= {name for _, name, _ in entries[0]}


def test_a_journaled_run_and_an_unjournaled_one_book_the_same(tmp_path: Path) -> None:
    # The journal turns the event-free acknowledgement off; the results must not notice.
    def run(journal: Journal | None) -> Kernel:
        kernel = Kernel([instrument()], venue_config=VenueConfig(), journal=journal, initial_cash=50_000.0)
        kernel.add_strategy(Mixer((A,), 0.5))
        kernel.run(Replay(bar_sources(A)))
        return kernel

    journal = Journal(tmp_path / "j.db")
    journaled, bare = run(journal), run(None)
    journal.close()
    assert outcome(journaled) == outcome(bare)
    assert len(bare.result.fills) > 100


@pytest.mark.parametrize("path", REAL_TRADES, ids=lambda p: p.name)
@pytest.mark.parametrize(("latency_ns", "slippage"), [(0, {}), (2_000_000, {}), (0, {"slippage_bps": 2.0})])
def test_tick_ema_cross_on_real_trades_same_fills_fast_or_general(
    monkeypatch: pytest.MonkeyPatch, path: Path, latency_ns: int, slippage: dict[str, float]
) -> None:
    def run() -> Kernel:
        kernel = Kernel(
            [instrument("BTCUSDT")],
            venue_config=VenueConfig(fill_on="trades", latency_ns=latency_ns, **slippage),
            initial_cash=100_000.0,
        )
        kernel.add_strategy(TickEmaCross("BTCUSDT.SIM", fast=5, slow=20, quantity=0.01))
        kernel.run(Replay([ReplaySource.from_file(path, "BTCUSDT.SIM", "trades")]))
        return kernel

    fast, general = both(monkeypatch, run)
    assert_same(fast, general, min_fills=30)


@pytest.mark.parametrize("path", REAL_TRADES, ids=lambda p: p.name)
def test_mixed_orders_on_real_trades_same_results_fast_or_general(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    def run() -> Kernel:
        kernel = Kernel(
            [instrument("BTCUSDT")],
            venue_config=VenueConfig(fill_on="trades", slippage_bps=1.0),
            initial_cash=100_000.0,
        )
        kernel.add_strategy(TickMixer("BTCUSDT.SIM", every=25))
        kernel.run(Replay([ReplaySource.from_file(path, "BTCUSDT.SIM", "trades")]))
        return kernel

    fast, general = both(monkeypatch, run)
    assert_same(fast, general, min_fills=40)
    assert any(o.order_type is OrderType.LIMIT and o.status is OrderStatus.FILLED for o in fast.result.orders)


# ----------------------------------------------------------------------------- order manager


def submitted(om: OrderManager, coid: str) -> Any:
    order = om.create(SubmitOrder("s", A, coid, OrderSide.BUY, 1.0, 1, 1))
    om.mark_submitted(order, 2)
    return order


def test_mark_accepted_is_apply_of_the_acknowledgement() -> None:
    quiet, loud = OrderManager(MessageBus(), SimulatedClock()), OrderManager(MessageBus(), SimulatedClock())
    a, b = submitted(quiet, "c-1"), submitted(loud, "c-1")
    assert quiet.mark_accepted(a, "SIM-1", 5)
    loud.apply(OrderAccepted("s", A, "c-1", "SIM-1", 5, 9))
    assert a.to_dict() == b.to_dict()
    assert a.status is OrderStatus.ACCEPTED and a.venue_order_id == "SIM-1" and a.ts_last == 5
    assert [o.client_order_id for o in quiet.open_orders()] == ["c-1"]


def test_mark_accepted_leaves_anything_but_a_fresh_submitted_order_to_the_event() -> None:
    om = OrderManager(MessageBus(), SimulatedClock())
    new = om.create(SubmitOrder("s", A, "c-1", OrderSide.BUY, 1.0, 1, 1))
    assert not om.mark_accepted(new, "SIM-1", 5)  # INITIALIZED: not sent yet
    accepted = submitted(om, "c-2")
    assert om.mark_accepted(accepted, "SIM-2", 5)
    assert not om.mark_accepted(accepted, "SIM-9", 6)  # a repeat is the event's (DUPLICATE_EVENT) to judge
    assert accepted.venue_order_id == "SIM-2" and accepted.ts_last == 5
    stranger = OrderManager(MessageBus(), SimulatedClock())
    foreign = submitted(stranger, "c-3")
    assert not om.mark_accepted(foreign, "SIM-3", 5)  # not this manager's order
    assert new.status is OrderStatus.INITIALIZED and foreign.status is OrderStatus.SUBMITTED


def test_mark_accepted_leaves_an_acknowledgement_something_receives_to_the_event() -> None:
    # The venue hands acknowledgements to the order manager itself; a subscriber must still get the event.
    bus = MessageBus()
    om = OrderManager(bus, SimulatedClock())
    order = submitted(om, "c-1")
    got: list[Any] = []
    bus.subscribe(OrderAccepted, got.append)
    assert not om.mark_accepted(order, "SIM-1", 5)
    assert order.status is OrderStatus.SUBMITTED and order.venue_order_id == ""
    bus.unsubscribe(OrderAccepted, got.append)
    assert om.mark_accepted(order, "SIM-1", 5) and order.status is OrderStatus.ACCEPTED


@pytest.mark.parametrize("refused", [False, True])
def test_a_market_order_filled_in_its_acceptance_step_ends_as_after_its_acknowledgement(
    monkeypatch: pytest.MonkeyPatch, refused: bool
) -> None:
    # Nothing receives OrderAccepted: a lone market order accepted and filled at a bar's open is moved by
    # its fill alone (SUBMITTED -> FILLED, the venue order id from the fill); a fill the venue refuses
    # closes it after the acknowledgement, so the order ends as on the general path either way.
    def run(fast: bool) -> tuple[dict[str, Any], list[str], list[str]]:
        set_fast_path(monkeypatch, fast)
        stack = build_stack()
        stack.bus.unsubscribe(OrderAccepted, stack.events.append)
        if refused:
            stack.venue.funds_check = lambda order, qty, px, fee: "insufficient balance (test)"
        acknowledged: list[str] = []
        bound = stack.venue._accepted  # noqa: SLF001
        if bound is not None:
            stack.venue._accepted = lambda order, vid, ts: acknowledged.append(vid) or bound(order, vid, ts)  # noqa: SLF001
        stack.feed_bar(bar(1, 100.0, 101.0, 99.0, 100.0))
        coid = stack.submit(OrderSide.BUY, 1.0)
        stack.feed_bar(bar(2, 100.5, 102.0, 100.0, 101.0))
        return stack.orders.order(coid).to_dict(), [type(e).__name__ for e in stack.events], acknowledged

    fast, general = run(True), run(False)
    set_fast_path(monkeypatch, True)
    assert fast[:2] == general[:2]
    order = fast[0]
    assert order["venue_order_id"].startswith("SIM") and order["ts_last"] == 2 * BAR_NS
    if refused:
        assert order["status"] is OrderStatus.CANCELED and fast[1][-1] == "OrderCanceled"
        assert fast[2] == [order["venue_order_id"]]  # acknowledged before its close
    else:
        assert order["status"] is OrderStatus.FILLED and order["filled_qty"] == 1.0
        assert fast[2] == []  # the fill told it


class QuoteFlipper(Strategy):
    """Every ``every`` quotes: flip the position with a market order, and sell a little more now and then."""

    def __init__(self, iid: str, every: int) -> None:
        super().__init__(iid, strategy_id="quoteflip")
        self.every = every
        self.n = 0

    def on_quote(self, quote: Quote) -> None:
        self.n += 1
        if self.n % self.every == 0:
            k = self.n // self.every
            self.target_position(self.instrument_id, 0.02 if k % 2 else -0.02)
            if k % 3 == 0:
                self.submit_market(self.instrument_id, OrderSide.SELL, 0.01)


def test_market_orders_on_quotes_same_fills_fast_or_general(monkeypatch: pytest.MonkeyPatch) -> None:
    # Quotes around the real trades (bid and ask sizes differ: the volume slippage model reads
    # the size of the side an order takes).
    iid = "BTCUSDT.SIM"
    trades = list(Replay([ReplaySource.from_file(REAL_TRADES[0], iid, "trades")]))
    quotes = [
        Quote(iid, t.ts_event, t.ts_init, t.price - 0.5, t.size, t.price + 0.5 + (k % 3) * 0.01, 2.0 * t.size)
        for k, t in enumerate(trades)
    ]

    def run() -> Kernel:
        venue = VenueConfig(fill_on="quotes", slippage=SlippageConfig(model="volume", impact_bps=20.0))
        kernel = Kernel([instrument("BTCUSDT")], venue_config=venue, initial_cash=100_000.0)
        kernel.add_strategy(QuoteFlipper(iid, every=15))
        for quote in quotes:
            kernel.process(quote)
        kernel.stop()
        return kernel

    fast, general = both(monkeypatch, run)
    assert_same(fast, general, min_fills=150)


def test_a_backtest_keeps_its_orders_out_of_the_cyclic_collector(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every order a run keeps (the manager's and the venue's record) is untracked: young-generation
    collections then do not walk them (before: two collections, ~37 ms in all, in a 1M-bar run)."""
    set_fast_path(monkeypatch, True)
    kernel = bar_kernel([EmaCross(A, fast=5, slow=20, mode="long_short", quantity=0.5)], (A,), 100_000.0, True)
    kernel.run(Replay(bar_sources(A)))
    orders = kernel.result.orders
    sims = list(kernel.venue._orders.values())  # type: ignore[attr-defined]
    assert len(orders) > 50 and len(sims) == len(orders)
    assert [o for o in orders if gc.is_tracked(o)] == []
    assert [s for s in sims if gc.is_tracked(s)] == []


def test_backtests_run_one_after_another_leave_no_garbage_the_collector_misses(monkeypatch: pytest.MonkeyPatch) -> None:
    """A finished kernel is a reference cycle: the collector must still find it when a process
    runs backtest after backtest (a sweep's worker). Freezing and unfreezing every object around
    each run hid them from its count: ~1,500 objects stayed per run, never collected."""
    set_fast_path(monkeypatch, True)
    thresholds = gc.get_threshold()
    sizes = []
    for _ in range(24):
        kernel = bar_kernel([EmaCross(A, fast=5, slow=20, quantity=0.5)], (A,), 100_000.0, True)
        kernel.run(Replay(bar_sources(A)))
        assert len(kernel.result.fills) > 20
        del kernel
        sizes.append(len(gc.get_objects()))
    assert gc.get_threshold() == thresholds
    assert sizes[-1] - sizes[7] < 8 * 1_500, sizes
