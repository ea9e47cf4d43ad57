"""Risk gate v1: every limit's denial reason, trading states, the drawdown breaker, order rate."""

from __future__ import annotations

import math

import pytest

from tradebus.engine.bus import MessageBus
from tradebus.engine.clock import SimulatedClock
from tradebus.engine.instrument import Instrument
from tradebus.engine.messages import (
    Liquidity,
    OrderFilled,
    OrderSide,
    OrderType,
    SubmitOrder,
    TradingState,
    TradingStateChanged,
)
from tradebus.engine.portfolio import Portfolio
from tradebus.risk.config import RiskConfig
from tradebus.risk.gate import RiskGate

# Margin-enabled: these tests are about the limits, not about cash (tests/account covers buying power).
INST = Instrument("BINANCE", "BTCUSDT", tick_size=0.5, lot_size=0.01, min_notional=10.0, margin=True)
IID = INST.instrument_id
BUY, SELL = OrderSide.BUY, OrderSide.SELL


class Gate:
    def __init__(self, **limits: object) -> None:
        self.bus = MessageBus()
        self.clock = SimulatedClock(0)
        self.portfolio = Portfolio({IID: INST}, 10_000.0)
        self.gate = RiskGate(RiskConfig(**limits), self.portfolio, self.clock, self.bus)
        self.changes: list[TradingStateChanged] = []
        self.bus.subscribe(TradingStateChanged, self.changes.append)
        self.gate.on_price(IID, 100.0)
        self.portfolio.mark(IID, 100.0)

    def check(
        self,
        side: OrderSide = BUY,
        qty: float = 1.0,
        typ: OrderType = OrderType.MARKET,
        price: float = math.nan,
        trigger: float = math.nan,
        open_orders: int = 0,
        iid: str = IID,
    ) -> str | None:
        cmd = SubmitOrder("s", iid, "c", side, qty, 0, 0, typ, price, trigger)
        return self.gate.check(cmd, open_orders)

    def hold(self, qty: float, px: float = 100.0) -> None:
        side = BUY if qty > 0 else SELL
        self.portfolio.apply_fill(OrderFilled("s", IID, "x", "v", f"t{qty}{px}", side, abs(qty), px, 0.0, Liquidity.TAKER, 0, 0))


def test_order_within_all_limits_passes() -> None:
    g = Gate(max_order_quantity=5.0, max_order_notional=1_000.0, max_position=5.0, price_band_pct=5.0)
    assert g.check(qty=2.0) is None
    assert g.check(qty=2.0, typ=OrderType.LIMIT, price=99.0) is None


def test_max_order_quantity_denial_reason() -> None:
    assert Gate(max_order_quantity=1.0).check(qty=1.5) == "max_order_quantity: 1.5 > 1.0"


def test_max_order_notional_uses_limit_price() -> None:
    g = Gate(max_order_notional=10_000.0)
    assert g.check(qty=125.0, typ=OrderType.LIMIT, price=100.0) == "max_order_notional: 12500.0 > 10000.0"


def test_max_order_notional_for_market_order_uses_last_price() -> None:
    assert Gate(max_order_notional=150.0).check(qty=2.0) == "max_order_notional: 200.0 > 150.0"


def test_max_order_notional_without_any_price_denies() -> None:
    g = Gate(max_order_notional=150.0)
    g.gate._last.clear()
    assert g.check(qty=1.0) == f"max_order_notional: no price to value the order (no last price for {IID})"


def test_max_position_checks_projected_position_after_fill() -> None:
    g = Gate(max_position=3.0)
    g.hold(2.0)
    assert g.check(qty=1.0) is None
    assert g.check(qty=1.5) == "max_position: |2.0 + 1.5| = 3.5 > 3.0"


def test_max_position_allows_an_order_that_reduces_an_oversized_position() -> None:
    g = Gate(max_position=1.0)
    g.hold(3.0)
    assert g.check(SELL, qty=1.0) is None


def test_price_band_denies_limit_far_from_last_price() -> None:
    g = Gate(price_band_pct=5.0)
    reason = g.check(typ=OrderType.LIMIT, price=110.0)
    assert reason is not None and reason.startswith("price_band: price 110.0 is 10% from last 100.0 > 5.0%")


def test_price_band_checks_trigger_of_stop_orders() -> None:
    g = Gate(price_band_pct=5.0)
    reason = g.check(SELL, typ=OrderType.STOP_MARKET, trigger=80.0)
    assert reason is not None and reason.startswith("price_band: trigger_price 80.0")


def test_max_open_orders_denies_when_limit_reached() -> None:
    g = Gate(max_open_orders=2)
    assert g.check(open_orders=1) is None
    assert g.check(open_orders=2) == "max_open_orders: 2 open >= 2"


def test_order_rate_sliding_window_is_deterministic_on_injected_clock() -> None:
    g = Gate(max_orders_per_window=2, order_rate_window_ns=1_000)
    g.clock.advance_to(10_000)
    assert g.check() is None
    g.clock.advance_to(10_500)
    assert g.check() is None
    assert g.check() == "max_order_rate: 2 orders in 1000 ns >= 2"
    g.clock.advance_to(11_000)  # the first order left the window
    assert g.check() is None
    assert g.check() is not None


def test_denied_orders_do_not_count_toward_order_rate() -> None:
    g = Gate(max_orders_per_window=1, max_order_quantity=1.0)
    assert g.check(qty=5.0) is not None
    assert g.check(qty=1.0) is None


@pytest.mark.parametrize(
    ("qty", "price", "expected"),
    [
        (0.005, math.nan, "instrument: quantity 0.005 is below the minimum 0.01"),
        (0.015, math.nan, "instrument: quantity 0.015 is not a multiple of the lot size 0.01"),
        (0.05, 100.0, "instrument: notional 5.0 is below the minimum 10.0"),
        (1.0, 100.2, "instrument: price 100.2 is not a multiple of the tick size 0.5"),
    ],
)
def test_instrument_checks_deny_with_reason(qty: float, price: float, expected: str) -> None:
    g = Gate()
    typ = OrderType.MARKET if math.isnan(price) else OrderType.LIMIT
    assert g.check(qty=qty, typ=typ, price=price) == expected


def test_market_order_below_min_notional_at_last_price_is_denied() -> None:
    reason = Gate().check(qty=0.05)
    assert reason is not None and reason.startswith("instrument: notional")


def test_unknown_instrument_is_denied() -> None:
    assert Gate().check(iid="ETHUSDT.BINANCE") == "instrument: unknown instrument 'ETHUSDT.BINANCE'"


def test_submit_order_when_halted_is_denied() -> None:
    g = Gate()
    g.gate.set_state(TradingState.HALTED, "manual")
    assert g.check() == "trading_state: HALTED denies every order"
    assert [(c.state, c.reason) for c in g.changes] == [(TradingState.HALTED, "manual")]


def test_reducing_allows_only_orders_that_reduce_without_flipping() -> None:
    g = Gate()
    g.hold(2.0)
    g.gate.set_state(TradingState.REDUCING, "manual")
    assert g.check(SELL, qty=1.0) is None
    assert g.check(SELL, qty=2.0) is None
    assert g.check(SELL, qty=3.0) is not None  # would flip
    reason = g.check(BUY, qty=1.0)
    assert reason is not None and reason.startswith("trading_state: REDUCING")


def test_reducing_when_flat_denies_everything() -> None:
    g = Gate()
    g.gate.set_state(TradingState.REDUCING, "manual")
    assert g.check(SELL) is not None and g.check(BUY) is not None


def test_set_state_to_same_state_publishes_nothing() -> None:
    g = Gate()
    g.gate.set_state(TradingState.ACTIVE, "noop")
    assert g.changes == []


def test_drawdown_breaker_halts_once_with_reason_when_limit_reached() -> None:
    g = Gate(max_drawdown_pct=10.0)
    g.hold(100.0)  # equity 10_000 with 100 units at 100
    g.portfolio.mark(IID, 101.0)
    g.gate.on_price(IID, 101.0)  # peak 10_100
    assert g.gate.state == TradingState.ACTIVE
    g.portfolio.mark(IID, 91.0)
    g.gate.on_price(IID, 91.0)  # equity 9_100: dd = 9.9 %
    assert g.gate.state == TradingState.ACTIVE
    g.portfolio.mark(IID, 90.9)
    g.gate.on_price(IID, 90.9)  # dd = 10.0 %
    assert g.gate.state == TradingState.HALTED
    g.portfolio.mark(IID, 80.0)
    g.gate.on_price(IID, 80.0)
    (change,) = g.changes
    assert change.state == TradingState.HALTED and change.reason.startswith("max_drawdown: 10% >= 10.0%")


def test_drawdown_breaker_reduce_action_moves_to_reducing_then_manual_halt_still_possible() -> None:
    g = Gate(max_drawdown_pct=5.0, drawdown_action="reduce")
    g.hold(100.0)
    g.portfolio.mark(IID, 90.0)
    g.gate.on_price(IID, 90.0)
    assert g.gate.state == TradingState.REDUCING
    g.gate.set_state(TradingState.HALTED, "operator")
    assert [c.state for c in g.changes] == [TradingState.REDUCING, TradingState.HALTED]


def test_risk_config_rejects_unknown_field() -> None:
    with pytest.raises(ValueError, match="max_leverage"):
        RiskConfig(max_leverage=3)  # type: ignore[call-arg]
