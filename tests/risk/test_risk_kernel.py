"""The gate wired in the kernel: strategies cannot touch each other's orders; working orders count."""

from __future__ import annotations

import numpy as np

from tradebus.adapters.common.book import OrderBook
from tradebus.engine.instrument import Instrument
from tradebus.engine.kernel import Kernel
from tradebus.engine.messages import (
    Bar,
    BookDelta,
    BookSnapshot,
    ModifyOrder,
    OrderDenied,
    OrderSide,
    OrderStatus,
    TradingState,
)
from tradebus.execution.config import VenueConfig
from tradebus.risk.config import RiskConfig
from tradebus.risk.gate import max_notional_reason
from tradebus.strategies.base import Strategy

INST = Instrument("BINANCE", "BTCUSDT", tick_size=0.01, lot_size=0.001)
IID = INST.instrument_id
MIN = 60_000_000_000


class Scripted(Strategy):
    """Runs ``script[n]`` (a callable taking the strategy) on its n-th bar; records its denials."""

    def __init__(self, strategy_id: str, script: dict[int, object]) -> None:
        super().__init__(IID, strategy_id=strategy_id)
        self.script = script
        self.n = 0
        self.denied: list[OrderDenied] = []
        self.ids: list[str] = []

    def on_bar(self, bar: Bar) -> None:
        self.n += 1
        action = self.script.get(self.n)
        if action is not None:
            action(self)  # type: ignore[operator]

    def on_order_denied(self, event: OrderDenied) -> None:
        self.denied.append(event)


def run(*strategies: Strategy, risk: RiskConfig | None = None, bars: int = 4) -> Kernel:
    kernel = Kernel([INST], risk_config=risk, initial_cash=100_000.0)
    for strategy in strategies:
        kernel.add_strategy(strategy)
    for i in range(1, bars + 1):
        kernel.process(Bar(IID, i * MIN, i * MIN, 100.0, 100.5, 99.5, 100.0, 1.0))
    kernel.stop()
    return kernel


def test_a_strategy_cannot_cancel_or_modify_another_strategys_order() -> None:
    owner = Scripted("owner", {1: lambda s: s.ids.append(s.submit_limit(IID, OrderSide.BUY, 1.0, 90.0))})

    def meddle(s: Scripted) -> None:
        victim = owner.ids[0]
        s.cancel(victim)
        now = s.kernel.clock.now_ns()
        s.kernel.modify(ModifyOrder("meddler", IID, victim, now, now, price=95.0))

    meddler = Scripted("meddler", {2: meddle})
    kernel = run(owner, meddler)
    victim = kernel.orders.order(owner.ids[0])
    assert victim.status == OrderStatus.ACCEPTED and victim.price == 90.0
    assert [d.reason for d in meddler.denied] == [
        f"cancel: ownership: order {victim.client_order_id} belongs to strategy 'owner', not 'meddler'",
        f"modify: ownership: order {victim.client_order_id} belongs to strategy 'owner', not 'meddler'",
    ]
    assert owner.denied == []
    assert len(kernel.result.denials) == 2


def test_its_own_order_a_strategy_may_cancel() -> None:
    def cancel_own(s: Scripted) -> None:
        s.cancel(s.ids[0])

    owner = Scripted("owner", {1: lambda s: s.ids.append(s.submit_limit(IID, OrderSide.BUY, 1.0, 90.0)), 2: cancel_own})
    kernel = run(owner)
    assert kernel.orders.order(owner.ids[0]).status == OrderStatus.CANCELED and owner.denied == []


def test_the_kernels_gate_counts_working_orders_in_max_position() -> None:
    def two_bids(s: Scripted) -> None:
        s.ids.append(s.submit_limit(IID, OrderSide.BUY, 1.0, 90.0))
        s.ids.append(s.submit_limit(IID, OrderSide.BUY, 1.0, 89.0))

    strategy = Scripted("s", {1: two_bids})
    kernel = run(strategy, risk=RiskConfig(max_position=1.5))
    first, second = (kernel.orders.order(c) for c in strategy.ids)
    assert first.status == OrderStatus.ACCEPTED and second.status == OrderStatus.DENIED
    assert strategy.denied[0].reason == "max_position: |0.0 + working 1.0 + 1.0| = 2.0 > 1.5"


# ------------------------------------------------------------------ a feed of book data only

BOOK_INST = Instrument("BINANCE", "BTCUSDT", tick_size=0.1, lot_size=0.001)


class BookBuyer(Strategy):
    """Sends ``orders`` (``(side, quantity)`` market orders) at its first book message; records denials."""

    def __init__(self, orders: list[tuple[OrderSide, float]]) -> None:
        super().__init__(IID, strategy_id="book")
        self.orders = orders
        self.denied: list[OrderDenied] = []

    def on_start(self) -> None:
        self.kernel.bus.subscribe(BookSnapshot, self.on_book, IID)
        self.kernel.bus.subscribe(BookDelta, self.on_book, IID)

    def on_book(self, msg: BookSnapshot | BookDelta) -> None:
        while self.orders:
            side, quantity = self.orders.pop(0)
            self.submit_market(IID, side, quantity)

    def on_order_denied(self, event: OrderDenied) -> None:
        self.denied.append(event)


def _levels(*pairs: tuple[float, float]) -> np.ndarray:
    return np.asarray(pairs, dtype=np.float64).reshape(-1, 2)


def _book_run(strategy: BookBuyer, risk: RiskConfig, *books: BookSnapshot | BookDelta) -> Kernel:
    kernel = Kernel([BOOK_INST], risk_config=risk, venue_config=VenueConfig(fill_on="book"), initial_cash=10_000.0)
    kernel.add_strategy(strategy)
    for msg in books:
        kernel.process(msg)
    return kernel


def test_on_book_data_only_the_gate_values_a_market_order_at_the_books_mid() -> None:
    # bid 99.9, ask 100.1: mid 100.0. 5 BTC = 500 USDT <= 1,000 passes; 20 BTC = 2,000 USDT > 1,000 is denied
    # (with no price the gate denied both: 'notional nan').
    strategy = BookBuyer([(OrderSide.BUY, 5.0), (OrderSide.BUY, 20.0)])
    snapshot = BookSnapshot(IID, MIN, MIN, _levels((99.9, 50.0)), _levels((100.1, 50.0)))
    kernel = _book_run(strategy, RiskConfig(max_order_notional=1_000.0), snapshot)
    assert kernel.cache.price(IID) == 100.0 and kernel.risk.last_price(IID) == 100.0
    assert [d.reason for d in strategy.denied] == [max_notional_reason(IID, 2_000.0, 1_000.0)]


def test_on_book_data_only_the_drawdown_breaker_trips_when_the_mid_falls() -> None:
    # 50 BTC bought at the ask, 100.1, after the order's arrival (the delta at 2 min): 5,005 USDT of 10,000.
    # The book then falls to bid 79.9 / ask 80.1, mid 80.0: the position loses 50 * 20.1 = 1,005 USDT,
    # over 10 % of the equity (a drawdown of 5 % trips the breaker). Unmarked, the run stayed ACTIVE.
    strategy = BookBuyer([(OrderSide.BUY, 50.0)])
    kernel = _book_run(
        strategy,
        RiskConfig(max_drawdown_pct=5.0),
        BookSnapshot(IID, MIN, MIN, _levels((99.9, 100.0)), _levels((100.1, 100.0))),
        BookDelta(IID, 2 * MIN, 2 * MIN, _levels((99.8, 1.0)), _levels()),
        BookSnapshot(IID, 3 * MIN, 3 * MIN, _levels((79.9, 100.0)), _levels((80.1, 100.0))),
        BookDelta(IID, 4 * MIN, 4 * MIN, _levels((79.8, 1.0)), _levels()),
    )
    assert [(f.quantity, f.price) for f in kernel.result.fills] == [(50.0, 100.1)]
    assert kernel.portfolio.last_price(IID) == 80.0
    assert kernel.risk.state == TradingState.HALTED, kernel.risk.reason


def test_a_daemons_book_messages_mark_the_gate_at_the_mid_of_the_adapters_book() -> None:
    """A paper daemon's router publishes book messages on the bus and the book is the feed adapter's (registered in
    the cache): bid 99.9 / ask 100.1, then 79.9 / 80.1, mark the gate and the cache at 100.0, then 80.0."""
    kernel = Kernel([BOOK_INST], initial_cash=10_000.0)
    book = OrderBook(IID)
    kernel.cache.register_book(IID, lambda: book)
    kernel.start()
    for minute, (bid, ask, mid) in enumerate(((99.9, 100.1, 100.0), (79.9, 80.1, 80.0)), start=1):
        book.load(_levels((bid, 1.0)), _levels((ask, 1.0)))  # the adapter applies the frame, then the router publishes
        kernel.bus.publish(BookSnapshot(IID, minute * MIN, minute * MIN, _levels((bid, 1.0)), _levels((ask, 1.0))))
        assert kernel.risk.last_price(IID) == kernel.cache.price(IID) == mid
