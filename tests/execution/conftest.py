"""Factories and a wired execution stack for the execution tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any

import pytest

from tradebus.data.catalog import Catalog
from tradebus.engine.bus import MessageBus
from tradebus.engine.clock import SimulatedClock
from tradebus.engine.instrument import Instrument
from tradebus.engine.messages import (
    Bar,
    OrderAccepted,
    OrderCanceled,
    OrderDenied,
    OrderExpired,
    OrderFilled,
    OrderModified,
    OrderRejected,
    OrderSide,
    OrderSubmitted,
    OrderTriggered,
    OrderType,
    PositionChanged,
    Quote,
    SubmitOrder,
    TimeInForce,
    Trade,
    TradingStateChanged,
)
from tradebus.engine.portfolio import Portfolio
from tradebus.execution.config import VenueConfig
from tradebus.execution.engine import ExecutionEngine
from tradebus.execution.orders import OrderManager, OrderResolved, OrderTimedOut
from tradebus.execution.book_matching import simulated_venue
from tradebus.execution.simulated import SimulatedVenue
from tradebus.risk.config import RiskConfig
from tradebus.risk.gate import RiskGate

IID = "BTCUSDT.BINANCE"
BAR_NS = 60_000_000_000
EVENT_TYPES = (
    OrderDenied,
    OrderSubmitted,
    OrderAccepted,
    OrderRejected,
    OrderTriggered,
    OrderModified,
    OrderFilled,
    OrderCanceled,
    OrderExpired,
    OrderTimedOut,
    OrderResolved,
    PositionChanged,
    TradingStateChanged,
)


def make_instrument(**overrides: Any) -> Instrument:
    params: dict[str, Any] = {
        "venue": "BINANCE",
        "symbol": "BTCUSDT",
        "tick_size": 0.01,
        "lot_size": 0.001,
        "maker_fee": 0.0002,
        "taker_fee": 0.0005,
        "margin": True,  # the matching tests sell short; cash-only spot is tested in tests/account
    }
    params.update(overrides)
    return Instrument(**params)


def bar(i: int, o: float, h: float, lo: float, c: float, iid: str = IID) -> Bar:
    """Bar number ``i`` (closing at ``i * BAR_NS``)."""
    return Bar(iid, i * BAR_NS, i * BAR_NS, o, h, lo, c, 1.0)


def trade(ts: int, price: float, size: float = 1.0, iid: str = IID) -> Trade:
    return Trade(iid, ts, ts, price, size, 0, f"t{ts}")


def quote(ts: int, bid: float, ask: float, size: float = 1.0, iid: str = IID) -> Quote:
    return Quote(iid, ts, ts, bid, size, ask, size)


@dataclass
class Stack:
    """A wired execution stack on a simulated clock that records every published event."""

    bus: MessageBus
    clock: SimulatedClock
    instrument: Instrument
    portfolio: Portfolio
    risk: RiskGate
    orders: OrderManager
    venue: SimulatedVenue
    engine: ExecutionEngine
    events: list[Any] = field(default_factory=list)
    _n: int = 0

    def submit(
        self,
        side: OrderSide,
        qty: float,
        order_type: OrderType = OrderType.MARKET,
        price: float = float("nan"),
        trigger: float = float("nan"),
        tif: TimeInForce = TimeInForce.GTC,
        post_only: bool = False,
        reduce_only: bool = False,
    ) -> str:
        now = self.clock.now_ns()
        coid = self.orders.next_client_order_id("s")
        cmd = SubmitOrder(
            "s", IID, coid, side, qty, now, now, order_type, price, trigger, tif, post_only, reduce_only
        )
        self.engine.submit(cmd)
        return coid

    def feed_bar(self, b: Bar) -> None:
        self.clock.advance_to(b.ts_init)
        self.engine.on_bar(b)

    def feed_trade(self, t: Trade) -> None:
        self.clock.advance_to(t.ts_init)
        self.engine.on_trade(t)

    def feed_quote(self, q: Quote) -> None:
        self.clock.advance_to(q.ts_init)
        self.engine.on_quote(q)

    def of_type(self, t: type) -> list[Any]:
        return [e for e in self.events if type(e) is t]

    def fills(self, coid: str | None = None) -> list[OrderFilled]:
        return [e for e in self.of_type(OrderFilled) if coid is None or e.client_order_id == coid]


def build_stack(
    venue: VenueConfig | None = None,
    risk: RiskConfig | None = None,
    cash: float = 100_000.0,
    arrival_alerts: bool | None = None,
    **instrument: Any,
) -> Stack:
    inst = make_instrument(**instrument)
    instruments = {inst.instrument_id: inst}
    bus = MessageBus()
    clock = SimulatedClock(0)
    portfolio = Portfolio(instruments, cash)
    gate = RiskGate(risk or RiskConfig(), portfolio, clock, bus)
    om = OrderManager(bus, clock)
    sim = simulated_venue(clock, instruments, venue or VenueConfig(), arrival_alerts=arrival_alerts)
    engine = ExecutionEngine(bus, clock, instruments, gate, om, sim, portfolio)
    stack = Stack(bus, clock, inst, portfolio, gate, om, sim, engine)
    for t in EVENT_TYPES:
        bus.subscribe(t, stack.events.append)
    return stack


@pytest.fixture
def make_stack() -> Callable[..., Stack]:
    return build_stack


L2_CAPTURE = Path(__file__).resolve().parents[1] / "fixtures" / "binance" / "usdm_btcusdt_20240718.gz"
"""Binance USD-M BTCUSDT, 3 minutes: REST depth snapshot, every depth@0ms diff, trades."""


@pytest.fixture(scope="module")
def l2_capture(tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    """:data:`L2_CAPTURE` imported into a fresh catalog (book and trades under binance_usdm/usdm/BTCUSDT)."""
    from tests.live.node_testdata import USDM_IID, config_of, usdm_config
    from tradebus.node.recording_import import import_recording

    cfg = usdm_config(None, None, depth_speed="0ms")
    cfg["feeds"][0]["subscriptions"] = {USDM_IID: ["trade", "depth"]}
    root = tmp_path_factory.mktemp("l2_capture")
    import_recording(L2_CAPTURE, config_of(cfg), root)
    return Catalog(root)
