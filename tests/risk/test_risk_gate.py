"""Risk gate: every limit's denial reason, working orders, trading states, the breakers, order rate."""

from __future__ import annotations

import math
from pathlib import Path

import msgspec
import numpy as np
import pytest
from loguru import logger

from tradebus.adapters.okx.instruments import load_instruments as load_okx
from tradebus.engine.bus import MessageBus
from tradebus.engine.clock import SimulatedClock
from tradebus.engine.instrument import Instrument, InstrumentKind
from tradebus.engine.messages import (
    Liquidity,
    OrderAccepted,
    OrderFilled,
    OrderSubmitted,
    OrderSide,
    OrderType,
    SubmitOrder,
    TradingState,
    TradingStateChanged,
)
from tradebus.engine.portfolio import Portfolio
from tradebus.execution.orders import OrderManager
from tradebus.risk.config import RiskConfig
from tradebus.risk.gate import HALTED_REASON, RiskGate

# Margin-enabled at 100x: these tests are about the limits, not about cash or margin (tests/account
# covers buying power and margin).
INST = Instrument("BINANCE", "BTCUSDT", tick_size=0.5, lot_size=0.01, min_notional=10.0, margin=True, leverage=100.0)
IID = INST.instrument_id
#: The same instrument at a lot of 1e-8: a lot is less than LIMIT_RTOL (1e-9) of 20 BTC.
FIXTURES = Path(__file__).parent.parent / "fixtures"
FINE = Instrument("BINANCE", "BTCUSDT", tick_size=0.5, lot_size=1e-8, min_notional=10.0, margin=True, leverage=100.0)
BUY, SELL = OrderSide.BUY, OrderSide.SELL


class Gate:
    def __init__(self, cash: float = 10_000.0, inst: Instrument = INST, **limits: object) -> None:
        self.bus = MessageBus()
        self.clock = SimulatedClock(0)
        self.portfolio = Portfolio({IID: inst}, cash)
        self.gate = RiskGate(RiskConfig(**limits), self.portfolio, self.clock, self.bus)  # type: ignore[arg-type]
        self.orders = OrderManager(self.bus, self.clock)
        self.gate.bind_orders(self.orders)
        self.fills = 0
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
        self.fills += 1
        fill = OrderFilled("s", IID, "x", "v", f"t{self.fills}", side, abs(qty), px, 0.0, Liquidity.TAKER, 0, 0)
        self.bus.publish(self.portfolio.apply_fill(fill))

    def work(self, side: OrderSide, qty: float, price: float = 100.0) -> str:
        """A working (accepted) limit order of ``qty``."""
        coid = self.orders.next_client_order_id("s")
        self.orders.create(SubmitOrder("s", IID, coid, side, qty, 0, 0, OrderType.LIMIT, price))
        self.orders.apply(OrderSubmitted("s", IID, coid, 0, 0))
        self.orders.apply(OrderAccepted("s", IID, coid, "v" + coid, 0, 0))
        return coid

    def mark(self, price: float, ts: int | None = None) -> None:
        if ts is not None:
            self.clock.advance_to(ts)
        self.portfolio.mark(IID, price)
        self.gate.on_price(IID, price)


def test_order_within_all_limits_passes() -> None:
    g = Gate(max_order_quantity=5.0, max_order_notional=1_000.0, max_position=5.0, price_band_pct=5.0)
    assert g.check(qty=2.0) is None
    assert g.check(qty=2.0, typ=OrderType.LIMIT, price=99.0) is None


def test_max_order_quantity_denial_reason() -> None:
    assert Gate(max_order_quantity=1.0).check(qty=1.5) == "max_order_quantity: 1.5 > 1.0"


def test_max_order_quantity_allows_float_noise_and_denies_one_lot_more() -> None:
    noisy = 0.1 + 0.2  # 0.30000000000000004: on the lot grid of 0.01, and 0.3 but for float noise
    assert noisy != 0.3
    g = Gate(max_order_quantity=0.3)
    assert g.check(qty=0.3) is None
    assert g.check(qty=noisy) is None
    assert g.check(qty=0.31) == "max_order_quantity: 0.31 > 0.3"
    fine = Gate(inst=FINE, max_order_quantity=0.3)
    assert fine.check(qty=noisy) is None
    assert fine.check(qty=0.30000001) == "max_order_quantity: 0.30000001 > 0.3"
    # a limit with float noise of its own: 0.7 - 0.4 is 0.29999999999999993
    assert Gate(max_order_quantity=0.7 - 0.4).check(qty=0.3) is None


def test_max_order_notional_uses_limit_price() -> None:
    g = Gate(max_order_notional=10_000.0)
    assert g.check(qty=125.0, typ=OrderType.LIMIT, price=100.0) == "max_order_notional: 12500.0 > 10000.0"


def test_max_order_notional_for_market_order_uses_last_price() -> None:
    assert Gate(max_order_notional=150.0).check(qty=2.0) == "max_order_notional: 200.0 > 150.0"


def test_max_order_notional_allows_an_order_exactly_at_the_limit() -> None:
    # 1.1 * 100.0 is 110.00000000000001 in floats
    g = Gate(max_order_notional=110.0)
    assert g.check(qty=1.1) is None
    assert g.check(qty=1.1, typ=OrderType.LIMIT, price=100.0) is None
    assert g.check(qty=1.11) == "max_order_notional: 111.0 > 110.0"  # 1.11 * 100.0 is 111.00000000000001


def test_max_order_notional_denies_one_lot_over_and_allows_float_noise() -> None:
    """A lot of 1e-8 at 100,000 is worth 0.001, LIMIT_RTOL (1e-9) of a limit of 1,000,000: the slack is
    float noise, never a lot's notional. Before, 10.00000001 (1,000,000.001, one lot over) passed."""
    g = Gate(cash=1e6, inst=FINE, max_order_notional=1e6)
    assert g.check(qty=10.0, typ=OrderType.LIMIT, price=100_000.0) is None
    assert g.check(qty=10.00000001, typ=OrderType.LIMIT, price=100_000.0) == "max_order_notional: 1000000.001 > 1000000.0"
    noisy = sum([0.1] * 10) * 1e6  # 999999.9999999999: 1,000,000 but for float noise
    assert noisy != 1e6
    g = Gate(cash=1e6, inst=FINE, max_order_notional=noisy)
    assert g.check(qty=10.0, typ=OrderType.LIMIT, price=100_000.0) is None
    assert g.check(qty=10.00000001, typ=OrderType.LIMIT, price=100_000.0) == "max_order_notional: 1000000.001 > 1000000.0"


def test_max_gross_exposure_denies_one_lot_over_and_allows_float_noise() -> None:
    """At equity 10,000 and a price of 100, 100 BTC is a gross exposure of 1.0; one lot of 1e-8 more
    raises it by 1e-10, less than LIMIT_RTOL (1e-9) of the limit: the slack is float noise, never a lot's
    worth. Before, 100.00000001 passed a limit of 1.0 (as 100000.00000001 at equity 10,000,000, a count of
    lots the instrument now refuses)."""
    g = Gate(cash=1e4, inst=FINE, max_gross_exposure=1.0)
    assert g.check(qty=100.0) is None
    assert g.check(qty=100.00000001) == (
        "max_gross_exposure: 1 > 1.0 (gross notional 10000.000001 with working orders, equity 10000.0)"
    )
    noisy = sum([0.1] * 10)  # 0.9999999999999999: 1.0 but for float noise
    assert Gate(cash=1e4, inst=FINE, max_gross_exposure=noisy).check(qty=100.0) is None


def test_max_order_notional_without_any_price_denies() -> None:
    g = Gate(max_order_notional=150.0)
    g.gate._last.clear()
    assert g.check(qty=1.0) == f"max_order_notional: no price to value the order (no last price for {IID})"


def test_max_position_checks_projected_position_after_fill() -> None:
    g = Gate(max_position=3.0)
    g.hold(2.0)
    assert g.check(qty=1.0) is None
    assert g.check(qty=1.5) == "max_position: |2.0 + 1.5| = 3.5 > 3.0"


def test_max_position_denies_one_lot_of_1e8_over_a_limit_of_20() -> None:
    g = Gate(inst=FINE, max_position=20.0)
    assert g.check(qty=20.0) is None
    assert g.check(qty=sum([0.1] * 200)) is None  # 20.000000000000014: the limit but for float noise
    assert g.check(qty=20.00000001) == "max_position: |0.0 + 20.00000001| = 20.00000001 > 20.0"
    g.hold(19.9)
    assert g.check(qty=0.10000001) == "max_position: |19.9 + 0.10000001| = 20.00000001 > 20.0"  # 20.000000009999997


def test_denial_reasons_show_quantities_and_notionals_without_float_noise() -> None:
    """0.1 + 0.2 is 0.30000000000000004 and 3 * 0.1 * 100.0 is 30.000000000000004: the reasons showed them so."""
    g = Gate(max_position=0.25)
    g.hold(0.1)
    assert g.check(qty=0.2) == "max_position: |0.1 + 0.2| = 0.3 > 0.25"
    assert Gate(max_order_notional=25.0).check(qty=3 * 0.1) == "max_order_notional: 30.0 > 25.0"
    assert Gate(max_order_quantity=0.25).check(qty=0.1 + 0.2) == "max_order_quantity: 0.3 > 0.25"


def test_price_band_reason_shows_prices_without_float_noise() -> None:
    """A last of (0.1 + 0.2) * 1000 / 3 and a trigger of 1.1 * 100 (100.00000000000001, 110.00000000000001) showed so."""
    g = Gate(price_band_pct=5.0)
    g.mark((0.1 + 0.2) * 1000 / 3)
    assert g.check(SELL, typ=OrderType.STOP_MARKET, trigger=1.1 * 100) == (
        "price_band: trigger_price 110.0 is 10% from last 100.0 > 5.0%"
    )


def test_max_position_allows_an_order_that_reduces_an_oversized_position() -> None:
    g = Gate(max_position=1.0)
    g.hold(3.0)
    assert g.check(SELL, qty=1.0) is None


def test_price_band_denies_limit_far_from_last_price() -> None:
    g = Gate(price_band_pct=5.0)
    reason = g.check(typ=OrderType.LIMIT, price=110.0)
    assert reason is not None and reason.startswith("price_band: price 110.0 is 10% from last 100.0 > 5.0%")


def test_price_band_allows_a_price_exactly_at_the_band() -> None:
    # 105 / 100 - 1 is 0.05000000000000004 in floats: a price at the band is within it, one tick past is not
    g = Gate(price_band_pct=5.0)
    assert g.check(typ=OrderType.LIMIT, price=105.0) is None
    assert g.check(SELL, typ=OrderType.LIMIT, price=95.0) is None
    assert g.check(SELL, typ=OrderType.STOP_MARKET, trigger=95.0) is None
    assert g.check(typ=OrderType.LIMIT, price=105.5) == "price_band: price 105.5 is 5.5% from last 100.0 > 5.0%"


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


def test_waiting_reason_answers_the_passing_checks_and_counts_nothing() -> None:
    """``waiting_reason`` gives the denial ``check`` would give by a check that passes with time, and counts no
    order: asked three times with the window full, it leaves the rate as it was (the window's end lets one pass)."""
    g = Gate(max_orders_per_window=2, order_rate_window_ns=1_000, max_open_orders=3)
    g.clock.advance_to(10_000)
    assert g.gate.waiting_reason(0) is None
    assert g.check() is None
    g.clock.advance_to(10_500)
    for _ in range(3):
        assert g.gate.waiting_reason(0) is None  # would pass: one more fits the window, none is counted
    assert g.check() is None
    assert g.gate.waiting_reason(0) == g.check() == "max_order_rate: 2 orders in 1000 ns >= 2"
    assert g.gate.waiting_reason(3) == "max_open_orders: 3 open >= 3"
    g.clock.advance_to(11_000)
    assert g.gate.waiting_reason(0) is None
    g.gate.set_state(TradingState.HALTED, "test")
    assert g.gate.waiting_reason(0) == HALTED_REASON


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


def test_a_market_quantity_that_passed_lets_no_other_through_on_the_same_gate() -> None:
    """The gate remembers the last market quantity that passed the instrument checks and skips them for it:
    on one gate, every other quantity is still checked, before and after, with the instrument's reasons."""
    g = Gate()
    assert g.check(qty=0.015) == "instrument: quantity 0.015 is not a multiple of the lot size 0.01"
    assert g.check(qty=1.0) is None
    assert g.check(qty=1.0) is None
    assert g.check(qty=0.015) == "instrument: quantity 0.015 is not a multiple of the lot size 0.01"
    assert g.check(qty=0.005) == "instrument: quantity 0.005 is below the minimum 0.01"
    assert g.check(qty=math.nan) == "instrument: quantity nan must be a positive finite number"
    assert g.check(qty=0.3) is None
    assert g.check(qty=1.005) == "instrument: quantity 1.005 is not a multiple of the lot size 0.01"
    assert g.check(qty=0.3) is None


def test_a_market_order_of_12801_btc_at_a_lot_of_1e8_passes_the_instrument_checks() -> None:
    """128.01 / 1e-8 is 12800999999.999998 lots in floats: it was denied as not a multiple of the lot."""
    inst = Instrument("COINBASE", "BTC-USD", tick_size=0.01, lot_size=1e-8, margin=True, leverage=100.0)
    bus, clock = MessageBus(), SimulatedClock(0)
    portfolio = Portfolio({inst.instrument_id: inst}, 10_000_000.0)
    gate = RiskGate(RiskConfig(), portfolio, clock, bus)
    gate.bind_orders(OrderManager(bus, clock))
    gate.on_price(inst.instrument_id, 60_000.0)
    portfolio.mark(inst.instrument_id, 60_000.0)
    assert gate.check(SubmitOrder("s", inst.instrument_id, "c", BUY, 128.01, 0, 0), 0) is None


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


def test_reducing_denies_a_sell_of_20_btc_and_one_lot_of_1e8_on_a_position_of_20() -> None:
    g = Gate(inst=FINE)
    g.hold(20.0)
    g.gate.set_state(TradingState.REDUCING, "manual")
    noisy = sum([0.1] * 200)  # 20.000000000000014: exactly the position but for float noise
    assert noisy != 20.0
    assert g.check(SELL, qty=20.0) is None
    assert g.check(SELL, qty=noisy) is None
    assert g.check(SELL, qty=20.00000001) == (
        "trading_state: REDUCING allows only reducing orders; position 20.0, working on the order's side 0.0, "
        "order -20.00000001"
    )
    # a working sell one lot beyond the position would flip it: REDUCING no longer allows it
    beyond = g.work(SELL, 20.00000001, price=101.0)
    assert [o.client_order_id for o in g.gate.disallowed_orders()] == [beyond]


def test_a_reduce_only_order_larger_than_the_position_counts_as_the_position_it_closes() -> None:
    # the venue fills a reduce-only order no further than flat: it neither breaches max_position nor flips
    g = Gate(max_position=1.0)
    g.hold(1.0)
    close_all = SubmitOrder("s", IID, "c", SELL, 3.0, 0, 0, OrderType.MARKET, reduce_only=True)
    assert g.gate.check(close_all) is None
    assert g.check(SELL, qty=3.0) == "max_position: |1.0 + -3.0| = 2.0 > 1.0"
    g.gate.set_state(TradingState.REDUCING, "operator")
    assert g.gate.check(close_all) is None
    assert g.check(SELL, qty=3.0) == (
        "trading_state: REDUCING allows only reducing orders; position 1.0, working on the order's side 0.0, order -3.0"
    )
    g.work(SELL, 0.5, price=101.0)  # with half the position already being sold, it could flip it
    assert g.gate.check(close_all) == (
        "trading_state: REDUCING allows only reducing orders; position 1.0, working on the order's side -0.5, order -1.0"
    )


def test_reducing_allows_a_reduce_only_stop_beside_a_reduce_only_take_profit_of_the_whole_position() -> None:
    """Long 1 BTC with a reduce-only take-profit selling 1 at 110 (not linked as an OCO pair), a breaker moves to
    REDUCING: the reduce-only stop-loss selling 1 at 90 was denied (position 1 + working -1 = 0 to reduce), leaving
    the position without its stop. Both are reduce-only: whichever fills first closes the position and the venue
    fills the other only down to flat, so the position can never flip; the stop now passes. Beside a take-profit
    that is not reduce-only it stays denied: after the stop closed the position, that one would sell 1 more."""
    g = Gate()
    g.hold(1.0)
    coid = g.orders.next_client_order_id("s")
    g.orders.create(SubmitOrder("s", IID, coid, SELL, 1.0, 0, 0, OrderType.LIMIT, 110.0, reduce_only=True))
    g.orders.apply(OrderSubmitted("s", IID, coid, 0, 0))
    g.orders.apply(OrderAccepted("s", IID, coid, "v" + coid, 0, 0))
    g.gate.set_state(TradingState.REDUCING, "breaker")
    assert g.gate.disallowed_orders() == []
    stop = SubmitOrder("s", IID, "c", SELL, 1.0, 0, 0, OrderType.STOP_MARKET, math.nan, 90.0, reduce_only=True)
    assert g.gate.check(stop) is None
    # a plain sell beside the reduce-only take-profit could flip the position: denied, as before
    assert g.check(SELL, qty=1.0, typ=OrderType.STOP_MARKET, trigger=90.0) == (
        "trading_state: REDUCING allows only reducing orders; position 1.0, working on the order's side -1.0, order -1.0"
    )
    g.work(SELL, 0.5, price=105.0)  # a take-profit of half that is not reduce-only: the stop counts with it
    assert g.gate.check(stop) == (
        "trading_state: REDUCING allows only reducing orders; position 1.0, working on the order's side -1.5, order -1.0"
    )


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


def test_on_prices_records_the_usable_prices_and_evaluates_the_breakers_like_on_price() -> None:
    g = Gate(price_band_pct=5.0)
    g.gate.on_prices([(IID, 110.0)])
    assert g.gate.last_price(IID) == 110.0
    assert g.check(typ=OrderType.LIMIT, price=114.0) is None  # within 5 % of 110, not of 100
    g.gate.on_prices([(IID, math.nan), (IID, -1.0), (IID, math.inf)])
    assert g.gate.last_price(IID) == 110.0
    g = Gate(max_drawdown_pct=10.0)
    g.hold(100.0)
    g.portfolio.mark(IID, 90.0)
    g.gate.on_prices([(IID, 90.0)])  # equity 9_000: dd = 10 %
    assert g.gate.state == TradingState.HALTED and g.gate.last_price(IID) == 90.0


def test_deferred_marks_wait_for_evaluate_marks_or_the_next_order_check() -> None:
    g = Gate(max_drawdown_pct=10.0)
    g.gate.defer_marks()
    g.hold(100.0)
    g.mark(85.0)  # equity 8_500: 15 % below the peak, not evaluated yet
    assert g.gate.state == TradingState.ACTIVE and g.gate.last_price(IID) == 85.0
    g.mark(95.0)  # back within the limit before anything evaluated the fall
    g.gate.evaluate_marks()
    assert g.gate.state == TradingState.ACTIVE and g.changes == []
    g.mark(89.0, ts=5)
    assert g.check() == "trading_state: HALTED denies every order"  # the check evaluates first
    assert [(c.state, c.ts_event) for c in g.changes] == [(TradingState.HALTED, 5)]
    g.gate.evaluate_marks()  # nothing pending: no second evaluation
    g.mark(120.0)
    g.gate.evaluate_marks()
    assert len(g.changes) == 1 and g.gate.state == TradingState.HALTED  # manual re-arm only


def test_a_deferred_check_sees_the_utc_day_roll_without_a_new_price() -> None:
    """Live, an order at a timer after midnight: the day rolled for the breakers, with no price since."""
    day = 86_400_000_000_000
    g = Gate(max_daily_loss_pct=5.0)
    g.gate.defer_marks()
    g.clock.advance_to(3 * day + 1)
    g.hold(100.0)
    g.mark(110.0)
    g.gate.evaluate_marks()  # start-of-day equity 11_000
    g.mark(104.0, 4 * day - 1)
    g.gate.evaluate_marks()
    assert g.gate.state == TradingState.HALTED
    g.gate.evaluate_marks()  # no price since: nothing to evaluate
    g.clock.advance_to(4 * day + 5)
    assert g.check() is None
    assert [c.reason for c in g.changes][-1] == "daily_loss re-armed: the UTC day rolled over"
    assert g.changes[-1].ts_event == 4 * day + 5


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


# ----------------------------------------------------------------------------- working orders


def test_max_position_counts_working_orders_on_the_side_that_adds_exposure() -> None:
    g = Gate(max_position=3.0)
    g.hold(1.0)
    g.work(BUY, 1.5)
    assert g.check(qty=0.5) is None  # 1 + 1.5 + 0.5 = 3
    assert g.check(qty=1.0) == "max_position: |1.0 + working 1.5 + 1.0| = 3.5 > 3.0"
    g.work(SELL, 2.0)  # working sells do not make room for buys (they may never fill)
    assert g.check(qty=1.0) is not None
    assert g.check(SELL, qty=2.0) is None  # 1 - 2 - 2 = -3


def test_reducing_counts_working_reducing_orders() -> None:
    g = Gate()
    g.hold(2.0)
    g.gate.set_state(TradingState.REDUCING, "manual")
    g.work(SELL, 1.5)
    assert g.check(SELL, qty=0.5) is None  # 1.5 + 0.5 closes the 2.0 exactly
    reason = g.check(SELL, qty=1.0)  # 1.5 + 1.0 would flip the position
    assert reason is not None and reason.startswith("trading_state: REDUCING")


def test_a_modified_order_does_not_count_against_itself() -> None:
    g = Gate(max_position=2.0)
    coid = g.work(BUY, 2.0)
    as_submit = SubmitOrder("s", IID, coid, BUY, 2.0, 0, 0, OrderType.LIMIT, 99.0)
    assert g.gate.check(as_submit) is None


def test_max_gross_exposure_denies_an_order_that_working_orders_push_over_the_limit() -> None:
    g = Gate(max_gross_exposure=1.0)  # equity 10_000, price 100: at most 100 units gross
    g.hold(40.0)
    g.work(BUY, 50.0)
    assert g.check(qty=10.0) is None  # worst case 40 + 50 + 10 = 100 units
    reason = g.check(qty=11.0)
    assert reason is not None and reason.startswith("max_gross_exposure: 1.01 > 1.0")
    assert g.check(SELL, qty=30.0) is None  # lowers the worst case


def test_max_gross_exposure_values_working_orders_of_an_unpriced_instrument_at_their_price() -> None:
    """A working limit buy of 1 ETH at 50 before any ETH price: the BTC buy of 500 at 100 takes the
    worst case to 50_000 + 50 = 50_050 over equity 10_000 (it passed: the ETH row was NaN)."""
    eth = Instrument("BINANCE", "ETHUSDT", tick_size=0.01, lot_size=0.01, margin=True, leverage=100.0)
    g = Gate(max_gross_exposure=1.0)
    g.portfolio = Portfolio({IID: INST, eth.instrument_id: eth}, 10_000.0)
    g.gate = RiskGate(RiskConfig(max_gross_exposure=1.0), g.portfolio, g.clock, g.bus)
    g.gate.bind_orders(g.orders)
    g.mark(100.0)
    coid = g.orders.next_client_order_id("s")
    g.orders.create(SubmitOrder("s", eth.instrument_id, coid, BUY, 1.0, 0, 0, OrderType.LIMIT, 50.0))
    g.orders.apply(OrderSubmitted("s", eth.instrument_id, coid, 0, 0))
    assert g.check(qty=500.0) == (
        "max_gross_exposure: 5.005 > 1.0 (gross notional 50050.0 with working orders, equity 10000.0)"
    )
    assert g.check(qty=99.5) is None  # 9_950 + 50 = 10_000: at the limit
    assert g.check(qty=99.6) == (
        "max_gross_exposure: 1.001 > 1.0 (gross notional 10010.0 with working orders, equity 10000.0)"
    )


def test_a_working_market_order_of_an_unpriced_instrument_keeps_the_price_of_its_limit_order() -> None:
    """A limit buy of 1 ETH at 50, then a market buy of 1 ETH in flight, before any ETH price: ETH is
    valued at 50 (2 ETH: 100), so the BTC buy of 99 at 100 is at 9_900 + 100 = 10_000, the limit
    (the market order's NaN price replaced the limit's 50, and every order was denied for no price)."""
    eth = Instrument("BINANCE", "ETHUSDT", tick_size=0.01, lot_size=0.01, margin=True, leverage=100.0)
    g = Gate(max_gross_exposure=1.0)
    g.portfolio = Portfolio({IID: INST, eth.instrument_id: eth}, 10_000.0)
    g.gate = RiskGate(RiskConfig(max_gross_exposure=1.0), g.portfolio, g.clock, g.bus)
    g.gate.bind_orders(g.orders)
    g.mark(100.0)
    for typ, px in ((OrderType.LIMIT, 50.0), (OrderType.MARKET, float("nan"))):
        coid = g.orders.next_client_order_id("s")
        g.orders.create(SubmitOrder("s", eth.instrument_id, coid, BUY, 1.0, 0, 0, typ, px))
        g.orders.apply(OrderSubmitted("s", eth.instrument_id, coid, 0, 0))
    assert g.check(qty=99.0) is None
    assert g.check(qty=99.1) == (
        "max_gross_exposure: 1.001 > 1.0 (gross notional 10010.0 with working orders, equity 10000.0)"
    )


# ----------------------------------------------------------------------------- breakers


def test_manual_rearm_after_drawdown_resets_the_peak_so_the_breaker_does_not_trip_at_once() -> None:
    g = Gate(max_drawdown_pct=10.0)
    g.hold(100.0)
    g.mark(101.0)
    g.mark(89.0)
    assert g.gate.state == TradingState.HALTED
    g.gate.set_state(TradingState.ACTIVE, "operator: resume")
    g.mark(89.0)
    g.mark(88.5)
    assert g.gate.state == TradingState.ACTIVE
    assert [c.state for c in g.changes] == [TradingState.HALTED, TradingState.ACTIVE]
    g.mark(80.0)  # 10 % below the new peak (8_900 -> 8_000): trips again
    assert g.gate.state == TradingState.HALTED


def test_daily_loss_trips_from_start_of_day_equity_and_rearms_at_the_utc_day_roll() -> None:
    day = 86_400_000_000_000
    g = Gate(max_daily_loss_pct=5.0)
    g.clock.advance_to(3 * day + 1)
    g.hold(100.0)  # 100 units at 100: equity 10_000
    g.mark(110.0)  # first mark of the day: start-of-day equity 11_000
    g.mark(104.6)  # -4.9 %
    assert g.gate.state == TradingState.ACTIVE
    g.mark(104.5, 4 * day - 1)  # -5.0 %, still the same UTC day
    assert g.gate.state == TradingState.HALTED
    assert g.changes[-1].reason.startswith("daily_loss: 5% >= 5.0% of the UTC day's start equity 11000.0")
    g.mark(104.5, 4 * day)  # the day rolls: re-armed, new start-of-day equity 10_450
    assert g.gate.state == TradingState.ACTIVE
    assert g.changes[-1].reason == "daily_loss re-armed: the UTC day rolled over"
    g.mark(99.3)  # -4.98 % of the new day
    assert g.gate.state == TradingState.ACTIVE


def test_loss_streak_trips_after_consecutive_losing_round_trips_and_a_win_resets_it() -> None:
    g = Gate(max_consecutive_losses=2, loss_streak_action="reduce")
    g.hold(1.0, 100.0)
    g.hold(-1.0, 99.0)  # round trip 1: -1
    g.hold(1.0, 100.0)
    g.hold(-1.0, 101.0)  # win: the count restarts
    g.hold(-1.0, 100.0)
    g.hold(2.0, 101.0)  # short closed at a loss (-1) and flipped long: one round trip ends
    assert g.gate.state == TradingState.ACTIVE
    g.hold(-0.5, 100.0)  # partly closed at a loss: the round trip goes on
    assert g.gate.state == TradingState.ACTIVE
    g.hold(-0.5, 100.0)  # flat: round trip lost 1.0 -> two losses in a row
    assert g.gate.state == TradingState.REDUCING
    assert g.changes[-1].reason.startswith("loss_streak: 2 losing round trips in a row >= 2")
    g.gate.set_state(TradingState.ACTIVE, "operator")
    g.hold(1.0, 100.0)
    g.hold(-1.0, 99.0)
    assert g.gate.state == TradingState.ACTIVE  # the count restarted at the manual re-arm


def test_gross_exposure_breaker_reduces_while_above_and_rearms_by_itself() -> None:
    g = Gate(max_gross_exposure=1.5)
    g.hold(100.0)  # 10_000 notional, equity 10_000
    g.mark(100.0)
    assert g.gate.state == TradingState.ACTIVE
    g.mark(40.0)  # notional 4_000, equity 4_000: 1.0
    g.hold(50.0, 40.0)  # notional 6_000 / 4_000 = 1.5, not above
    g.mark(40.0)
    assert g.gate.state == TradingState.ACTIVE
    g.mark(35.0)  # 5_250 / 3_250 = 1.62
    assert g.gate.state == TradingState.REDUCING
    assert g.check(qty=1.0) is not None and g.check(SELL, qty=1.0) is None
    g.mark(45.0)  # 6_750 / 4_750 = 1.42
    assert g.gate.state == TradingState.ACTIVE
    assert g.changes[-1].reason == "gross_exposure re-armed: gross exposure is back within the limit"


def test_gross_exposure_breaker_does_not_trip_on_a_position_the_gate_let_through_at_the_limit() -> None:
    """1.1 units at 100 are 110.00000000000001 in floats: the gate passes the order (0.011 of the equity
    10_000 but for float noise); the mark after its fill tripped the breaker ('0.011 > 0.011')."""
    g = Gate(max_gross_exposure=0.011)
    assert g.check(qty=1.1) is None
    g.hold(1.1)
    g.mark(100.0)
    assert 1.1 * 100.0 / g.portfolio.equity() > 0.011  # the noise is there
    assert (g.gate.state, g.changes) == (TradingState.ACTIVE, [])
    assert g.check(qty=0.01) is not None  # and the limit still holds above it
    g.mark(100.01)  # 110.011 / 10_000.011: above the limit
    assert g.gate.state == TradingState.REDUCING


def test_gross_exposure_breaker_values_contracts_at_their_contract_size() -> None:
    """100 contracts of 0.01 BTC at 50,000 are 50,000 of notional: half the equity, within a limit of 1."""
    inst = Instrument("OKX", "BTC-USDT-SWAP", InstrumentKind.PERPETUAL, tick_size=0.1, lot_size=1.0, contract_size=0.01)
    bus, clock = MessageBus(), SimulatedClock(0)
    portfolio = Portfolio({inst.instrument_id: inst}, 100_000.0)
    gate = RiskGate(RiskConfig(max_gross_exposure=1.0), portfolio, clock, bus)
    fill = OrderFilled("s", inst.instrument_id, "x", "v", "t1", BUY, 100.0, 50_000.0, 0.0, Liquidity.TAKER, 0, 0)
    portfolio.apply_fill(fill)
    portfolio.mark(inst.instrument_id, 50_000.0)
    gate.on_price(inst.instrument_id, 50_000.0)
    assert gate.state == TradingState.ACTIVE
    portfolio.mark(inst.instrument_id, 250_000.0)  # 250,000 of notional on an equity of 300,000: 0.83
    gate.on_price(inst.instrument_id, 250_000.0)
    assert gate.state == TradingState.ACTIVE
    portfolio.apply_fill(msgspec.structs.replace(fill, trade_id="t2", last_qty=50.0, last_px=250_000.0))
    gate.on_price(inst.instrument_id, 250_000.0)  # 375,000 on 300,000: 1.25
    assert gate.state == TradingState.REDUCING


def test_manual_halt_is_not_lifted_by_an_automatic_rearm() -> None:
    g = Gate(max_gross_exposure=1.5)
    g.hold(200.0)
    g.mark(100.0)
    assert g.gate.state == TradingState.REDUCING
    g.gate.set_state(TradingState.HALTED, "operator")
    g.mark(100.0)
    g.hold(-150.0)
    g.mark(100.0)  # exposure back within the limit: the breaker re-arms, the operator's halt stays
    assert g.gate.state == TradingState.HALTED


def test_restore_resumes_a_halt_and_stores_every_change() -> None:
    g = Gate(max_drawdown_pct=10.0)
    g.hold(100.0)
    g.mark(100.0)
    g.mark(85.0)
    snapshot = g.gate.snapshot()
    assert snapshot.tripped["max_drawdown"].state == TradingState.HALTED
    stored: list[object] = []
    fresh = Gate(max_drawdown_pct=10.0)
    fresh.gate.restore(snapshot, stored.append)
    assert fresh.gate.state == TradingState.HALTED
    assert fresh.changes[-1].reason.startswith("restored from the journal: max_drawdown")
    fresh.gate.set_state(TradingState.ACTIVE, "operator")
    assert stored[-1].manual_state == TradingState.ACTIVE and stored[-1].tripped == {}  # type: ignore[attr-defined]


def test_a_restored_trip_of_a_breaker_no_longer_configured_is_dropped_and_logged() -> None:
    """200 BTC held on 10,000 of cash: gross 20,000 / equity 10,000 = 2 > 1.5 trips gross_exposure (REDUCING); at 85
    the equity is 7,000, 30 % below the peak, and max_drawdown trips (HALTED). A restart whose config has no
    drawdown breaker any more resumed HALTED for good (only a manual re-arm lifted it; a removed gross_exposure
    breaker never re-armed by itself either). Now a trip of a breaker not configured is dropped, with a WARNING,
    and the ones still configured hold."""
    first = Gate(max_drawdown_pct=10.0, max_gross_exposure=1.5)
    first.hold(200.0)
    first.mark(100.0)
    first.mark(85.0)
    journaled = first.gate.snapshot()
    assert set(journaled.tripped) == {"max_drawdown", "gross_exposure"}
    assert first.gate.state == TradingState.HALTED

    reducing = Gate(max_gross_exposure=1.5)
    lines: list[str] = []
    sink = logger.add(lines.append, level="WARNING", format="{message}")
    try:
        reducing.gate.restore(journaled)
    finally:
        logger.remove(sink)
    assert reducing.gate.state == TradingState.REDUCING
    assert set(reducing.gate.snapshot().tripped) == {"gross_exposure"}
    assert any(
        "breaker max_drawdown tripped before the restart is no longer configured (max_drawdown_pct)" in line
        for line in lines
    )

    unlimited = Gate()
    unlimited.gate.restore(journaled)
    assert unlimited.gate.state == TradingState.ACTIVE and unlimited.check() is None
    assert unlimited.gate.snapshot().tripped == {}


def test_a_restored_peak_is_measured_at_the_next_mark_even_at_an_unchanged_equity() -> None:
    """The breakers skip a mark whose equity and UTC day they saw already; a restore resets that."""
    g = Gate(max_drawdown_pct=10.0)
    g.hold(100.0)
    g.mark(100.0)  # peak 10_000
    peak = g.gate.snapshot()
    g.mark(92.0)  # equity 9_200: 8 % below the peak, seen by the breakers
    g.gate.restore(msgspec.structs.replace(peak, drawdown_peak=10_400.0))  # 11.5 % below the restored peak
    assert g.gate.state == TradingState.ACTIVE
    g.mark(92.0)  # the same equity and day
    assert g.gate.state == TradingState.HALTED
    assert g.changes[-1].reason.startswith("max_drawdown: 11.54% >= 10.0% below the peak 10400.0")


def test_a_restored_book_whose_instrument_never_gets_a_price_leaves_the_breakers_off_for_a_minute_not_for_good() -> None:
    """A restart holding 50 ETH, which no trade, quote or bar prices (a book-only subscription gives the gate none),
    and 50 BTC, which falls 100 -> 60: equity 8,000 at ETH's journal price, 20 % below the restored peak of 10,000.
    The breakers wait for an ETH price, but since cb65695a they waited for good: the drawdown breaker never tripped.
    Now they wait RESTORE_PRICE_WAIT_NS (60 s) of the clock, then evaluate at the journal's price of ETH."""
    from tradebus.risk.gate import RESTORE_PRICE_WAIT_NS

    eth = Instrument("BINANCE", "ETHUSDT", tick_size=0.01, lot_size=0.01, margin=True, leverage=100.0)
    insts = {IID: INST, eth.instrument_id: eth}
    first = Gate(max_drawdown_pct=10.0)
    first.gate.on_price(IID, 100.0)
    peak = msgspec.structs.replace(first.gate.snapshot(), drawdown_peak=10_000.0)
    bus, clock = MessageBus(), SimulatedClock(0)
    portfolio = Portfolio(insts, 10_000.0)
    for n, iid in enumerate(insts):
        portfolio.apply_fill(OrderFilled("s", iid, "x", "v", f"t{n}", BUY, 50.0, 100.0, 0.0, Liquidity.TAKER, 0, 0))
    gate = RiskGate(RiskConfig(max_drawdown_pct=10.0), portfolio, clock, bus)
    changes: list[TradingStateChanged] = []
    bus.subscribe(TradingStateChanged, changes.append)
    gate.restore(peak)
    for t, price in ((1, 100.0), (30, 60.0), (59, 60.0)):
        clock.set_time(t * 1_000_000_000)
        portfolio.mark(IID, price)
        gate.on_price(IID, price)
        assert gate.state == TradingState.ACTIVE and changes == []  # waiting for ETH's price
    clock.set_time(RESTORE_PRICE_WAIT_NS)
    gate.on_price(IID, 60.0)
    assert gate.state == TradingState.HALTED
    assert changes[-1].reason.startswith("max_drawdown: 20% >= 10.0% below the peak 10000.0 (equity 8000.0)")


def test_check_owner_denies_another_strategys_order() -> None:
    g = Gate()
    assert g.gate.check_owner("a", "c1", "a") is None
    assert g.gate.check_owner("b", "c1", "a") == "ownership: order c1 belongs to strategy 'a', not 'b'"


@pytest.mark.parametrize("limit", [0.5, 2.0, 7.5, 10.0])
@pytest.mark.parametrize("seed", range(6))
def test_the_drawdown_and_daily_loss_breakers_trip_at_the_first_mark_an_independent_count_says(
    limit: float, seed: int
) -> None:
    """Marks inside the quick-return band change nothing; the first mark past either limit trips.

    The reference keeps its own peak and day-start equity and applies each limit's formula at
    every mark. Prices step by whole cents, so some equities land on a limit exactly.
    """
    rng = np.random.default_rng(seed)
    g = Gate(cash=10_000.0, max_drawdown_pct=limit, max_daily_loss_pct=limit / 2.0)
    g.hold(100.0)  # all in: equity = 100 * price
    peak = start = 10_000.0  # the gate's first mark, at 0
    day = 0
    hour = 3_600_000_000_000
    price = 100.0
    for step in range(1, 5000):
        price = max(0.01, round(price + 0.01 * int(rng.integers(-60, 61)), 2))
        ts = step * hour
        g.mark(price, ts)
        g.gate.end_time()
        equity = 100.0 * price
        if not peak >= equity:
            peak = equity
        if ts // 86_400_000_000_000 != day:
            day, start = ts // 86_400_000_000_000, equity
        expected = (peak - equity) / peak >= limit / 100.0 or (start - equity) / start >= limit / 200.0
        if expected:
            break
        assert g.gate.state == TradingState.ACTIVE, f"tripped early at step {step}: {g.changes[-1].reason}"
    else:
        pytest.fail("the walk never reached a limit")
    assert g.gate.state == TradingState.HALTED, f"no breaker tripped at step {step}, where the reference's does"
    assert g.changes[-1].reason.startswith(("max_drawdown: ", "daily_loss: "))


def test_a_limit_of_100_percent_trips_at_zero_equity_and_not_before() -> None:
    g = Gate(cash=0.0, max_drawdown_pct=100.0)
    g.gate.on_price(IID, 100.0)
    g.hold(-1.0)  # short 1 at 100 from no cash: equity 0 - 1 * price + 100 = 100 - price
    g.mark(50.0, 1)  # equity 50: the peak
    g.gate.end_time()
    for price in (60.0, 99.0, 99.99):
        g.mark(price, None)
        g.gate.end_time()
        assert g.gate.state == TradingState.ACTIVE
    g.mark(100.0, None)  # equity 0: 100 % below the peak
    g.gate.end_time()
    assert g.gate.state == TradingState.HALTED


@pytest.mark.parametrize(
    ("limits", "peak", "trip_price"),
    [
        ({"max_drawdown_pct": 10.0}, 100.0, 90.0),
        ({"max_daily_loss_pct": 2.5}, 100.0, 97.5),
        # 8_500 * (1 - 0.07) rounds to 7904.999999999999, yet 7_905 is 7 % below 8_500 exactly.
        ({"max_drawdown_pct": 7.0}, 85.0, 79.05),
    ],
)
def test_an_equity_exactly_at_the_limit_trips_after_marks_just_above_it(
    limits: dict[str, float], peak: float, trip_price: float
) -> None:
    g = Gate(cash=100.0 * peak, **limits)  # type: ignore[arg-type]
    g.hold(100.0, peak)  # equity = 100 * price
    for price in (peak, trip_price + 0.02, trip_price + 0.01, trip_price + 0.01):
        g.mark(price, 1)
        g.gate.end_time()
        assert g.gate.state == TradingState.ACTIVE
    g.mark(trip_price, 1)  # (100 * peak - 100 * trip_price) / (100 * peak) is the limit exactly
    g.gate.end_time()
    assert g.gate.state == TradingState.HALTED


def test_an_oco_group_counts_once_as_its_largest_member() -> None:
    """Two buys that cancel each other (an OCO pair) fill no more than the larger of them."""
    for limits in ({"max_position": 1.0}, {"max_gross_exposure": 0.01}):  # equity 10_000, price 100: 1 unit
        g = Gate(**limits)
        first = g.work(BUY, 1.0, price=95.0)
        g.portfolio.account.link_oco([first, "c"])
        assert g.check(qty=1.0) is None, limits
        g.work(BUY, 0.5, price=95.0)  # outside the group: counted with it
        assert g.check(qty=1.0) is not None, limits
    g = Gate(max_position=2.0)
    stop, target = g.work(BUY, 1.0, price=95.0), g.work(BUY, 0.5, price=90.0)
    g.portfolio.account.link_oco([stop, target])
    assert g.check(qty=1.0) is None  # 0 + working 1.0 (the group, once) + 1.0 = 2
    assert g.check(qty=1.5) == "max_position: |0.0 + working 1.0 + 1.5| = 2.5 > 2.0"


def test_reducing_allows_a_take_profit_beside_its_stop_loss() -> None:
    g = Gate()
    g.hold(1.0)
    g.gate.set_state(TradingState.REDUCING, "manual")
    stop = g.work(SELL, 1.0, price=95.0)
    g.portfolio.account.link_oco([stop, "c"])
    assert g.check(SELL, qty=1.0, typ=OrderType.LIMIT, price=110.0) is None
    g.work(SELL, 0.5, price=120.0)  # outside the group: 1.0 - 0.5 - 1.0 would flip
    reason = g.check(SELL, qty=1.0, typ=OrderType.LIMIT, price=110.0)
    assert reason is not None and reason.startswith("trading_state: REDUCING")


def test_a_market_order_of_more_lots_than_the_float_grid_holds_is_denied_with_the_instruments_reason() -> None:
    """800,000 BTC in lots of 1e-8 is 8e13 lots, beyond 2 ** 46 over the grid's integer 1; the gate's
    inline check passed it (the accelerated tier stops there), as it passed 8,000,000,000,000.06 in lots of
    1, 0.06 of a lot off the grid, within ``LOTS_RTOL`` of the count."""
    g = Gate(cash=1e12, inst=FINE)
    assert g.check(qty=20_000.0) is None
    assert g.check(qty=703_687.44) is None
    assert g.check(qty=800_000.0) == (
        "instrument: quantity 800000.0 is 80000000000000 lots of 1e-08, more than floats hold exactly on that grid "
        "(below 70368744177664 lots: 2 ** 46 over the grid's integer 1)"
    )
    coarse = Instrument("BINANCE", "BTCUSDT", tick_size=0.5, lot_size=1.0, margin=True, leverage=100.0)
    g = Gate(cash=1e18, inst=coarse)
    assert g.check(qty=8_000_000_000_001.0) is None
    assert g.check(qty=8_000_000_000_000.06) == "instrument: quantity 8000000000000.06 is not a multiple of the lot size 1.0"


def test_the_gate_counts_lots_on_the_decimal_grid_the_instrument_validates_on() -> None:
    """A lot of 1.0000000000000009 (4 units in its last place off 1) is the decimal 1: 70,368,744,177,660.09
    is 0.09 of a lot off that grid and ``validate_order`` refuses it, but the gate's inline check counted lots
    of 1.0000000000000009 (0.03 off) and passed it."""
    noisy = Instrument("BINANCE", "BTCUSDT", tick_size=0.5, lot_size=1.0000000000000009, margin=True, leverage=100.0)
    g = Gate(cash=1e18, inst=noisy)
    quantity = 70_368_744_177_660.09375
    reason = "quantity 70368744177660.09 is not a multiple of the lot size 1.0000000000000009"
    assert noisy.validate_order(quantity, math.nan) == reason
    assert g.check(qty=quantity) == f"instrument: {reason}"
    assert g.check(qty=noisy.round_quantity(quantity)) is None


def test_the_gate_takes_what_round_quantity_gives_for_a_cheap_coin_and_its_close() -> None:
    """OKX's SC-USDT trades in lots of 1e-6: 5,000,000 SC (about 35,000 USDT in May 2022), sized by
    ``round_quantity`` from 5,000,000.0000004, was denied as more than floats hold on the grid (2 ** 50 over
    an integer 1000, 1,125,899.9 coins), and so was the sell closing it."""
    sc = load_okx(FIXTURES / "okx" / "public_instruments_SPOT_2022-05-13_fine_lots.json")["SC-USDT.OKX"]
    qty = sc.round_quantity(5_000_000.0000004)
    assert qty == 5_000_000.0
    g = Gate(cash=1e9, inst=sc)
    assert g.check(qty=qty) is None
    assert g.check(qty=qty, typ=OrderType.LIMIT, price=100.0) is None
    g.hold(qty)
    assert g.check(SELL, qty=qty) is None
