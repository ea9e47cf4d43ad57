"""The margin check of an instrument alone in its settle asset (inlined) against the general path.

``MarginAccount`` checks an order or fill of an instrument that no other margined instrument
shares a settle asset with by an inlined copy of ``available`` and ``position_notional``. The
test runs both paths on the same random states (long, short, flat, unpriced, reversals, working
orders) with wallets around what the order needs, and wants the same refusal text or ``None``
from each, for fills of the only working order (the inlined path skips the walk of the working
orders then), of one among others and of one not submitted yet. A fill counts the margin of every
other working order, and none of its own (hand-derived).
"""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from tradebus.account import MarginAccount
from tradebus.engine.bus import MessageBus
from tradebus.engine.clock import SimulatedClock
from tradebus.engine.instrument import Instrument, InstrumentKind, MarginMode
from tradebus.engine.messages import (
    Liquidity,
    OrderCanceled,
    OrderFilled,
    OrderSide,
    OrderStatus,
    OrderType,
    SubmitOrder,
    TimeInForce,
)
from tradebus.engine.portfolio import Position
from tradebus.execution.orders import Order, OrderManager


def perp(**overrides: Any) -> Instrument:
    fields: dict[str, Any] = dict(
        venue="SIM", symbol="BTCUSDT", kind=InstrumentKind.PERPETUAL, base="BTC", quote="USDT",
        tick_size=0.1, lot_size=0.001, leverage=10.0, maintenance_rate=0.005, taker_fee=0.0005, maker_fee=0.0002,
    )
    fields.update(overrides)
    return Instrument(**fields)


INSTRUMENTS = {
    "cross": perp(),
    "isolated": perp(margin_mode=MarginMode.ISOLATED, leverage=5.0),
    "inverse": perp(symbol="BTCUSD", quote="USD", inverse=True, contract_size=100.0, lot_size=1.0, leverage=20.0),
    "inverse isolated": perp(
        symbol="BTCUSD", quote="USD", inverse=True, contract_size=100.0, lot_size=1.0, margin_mode=MarginMode.ISOLATED
    ),
    "margin spot": Instrument(
        "SIM", "BTCUSDT", base="BTC", quote="USDT", tick_size=0.01, lot_size=1e-5, taker_fee=0.0002, margin=True
    ),
}


def _order(
    coid: str, iid: str, side: OrderSide, qty: float, order_type: OrderType, price: float, working: bool = False
) -> Order:
    """An order, accepted by the venue if ``working`` (as ``working()`` gives them), else not submitted yet."""
    status = OrderStatus.ACCEPTED if working else OrderStatus.INITIALIZED
    return Order(
        coid, "s", iid, side, order_type, qty, price, math.nan, TimeInForce.GTC, False, False, 0, status, ts_last=0
    )


def _state(rng: random.Random, inst: Instrument) -> tuple[MarginAccount, MarginAccount, list[Order], float]:
    """Two accounts in one random state, the second forced onto the general path; the working orders; a price."""
    iid = inst.instrument_id
    asset = "BTC" if inst.inverse else "USDT"
    entry = rng.uniform(20_000.0, 40_000.0)
    qty = rng.choice([0.0, 1.0, -1.0, 3.0, -2.5]) * (100.0 if inst.inverse else 0.01)
    mark = rng.choice([math.nan, entry * rng.uniform(0.8, 1.2)])
    unit = inst.contract_size / entry if inst.inverse else inst.contract_size * entry
    wallet = abs(qty) * unit * rng.uniform(0.05, 3.0) + rng.choice([0.0, unit * 0.01])
    working: list[Order] = []
    accounts = []
    for _ in range(2):
        pos = Position(iid, 1e-9, inst.contract_size)
        account = MarginAccount({iid: inst}, {asset: wallet}, {iid: pos})
        if qty:
            side = OrderSide.BUY if qty > 0 else OrderSide.SELL
            account.apply_fill(OrderFilled("s", iid, "f", "v", "t", side, abs(qty), entry, 0.0, Liquidity.TAKER, 0, 0))
        pos.quantity, pos.avg_price, pos.last_price = qty, entry if qty else 0.0, mark
        accounts.append(account)
    for k in range(rng.choice([0, 0, 1, 3])):
        side = rng.choice([OrderSide.BUY, OrderSide.SELL])
        order_type = rng.choice([OrderType.MARKET, OrderType.LIMIT])
        size = rng.choice([1.0, 2.0]) * (100.0 if inst.inverse else 0.01)
        working.append(_order(f"w{k}", iid, side, size, order_type, entry * rng.uniform(0.9, 1.1), True))
    last = mark if mark == mark else entry
    for account in accounts:
        account.bind(lambda: working, lambda _iid: last, lambda: len(working))
    general = accounts[1]
    general._alone = frozenset()  # the general path: _available and position_notional
    return accounts[0], general, working, last


@pytest.mark.parametrize("kind", sorted(INSTRUMENTS))
def test_the_inlined_check_of_an_instrument_alone_refuses_exactly_what_the_general_check_refuses(kind: str) -> None:
    inst = INSTRUMENTS[kind]
    iid = inst.instrument_id
    rng = random.Random(f"alone-{kind}")
    outcomes = {"passed": 0, "refused": 0}
    # fills of the only working order (the inlined check skips the walk), of one among others, of one not working
    filled = {"lone": 0, "among others": 0, "not working": 0}
    for _ in range(400):
        alone, general, working, last = _state(rng, inst)
        assert iid in alone._alone
        lot = 100.0 if inst.inverse else 0.01
        for _ in range(6):
            side = rng.choice([OrderSide.BUY, OrderSide.SELL])
            qty = round(rng.uniform(0.1, 6.0), 2) * lot
            price = last * rng.uniform(0.95, 1.05)
            cmd = SubmitOrder("s", iid, "new", side, qty, 0, 0, OrderType.LIMIT, price)
            assert alone.check_order(cmd, last) == general.check_order(cmd, last)
            market = SubmitOrder("s", iid, "new", side, qty, 0, 0)
            assert alone.check_order(market, last) == general.check_order(market, last)
            fresh = _order("new", iid, side, qty, OrderType.MARKET, math.nan)
            order = working[0] if working and rng.random() < 0.5 else fresh
            fee = qty * price * 0.0005 if not inst.inverse else qty * inst.contract_size / price * 0.0005
            fill_qty = min(qty, order.quantity)
            reason = alone.check_fill(order, fill_qty, price, fee)
            assert reason == general.check_fill(order, fill_qty, price, fee)
            outcomes["passed" if reason is None else "refused"] += 1
            filled["not working" if order is fresh else "lone" if len(working) == 1 else "among others"] += 1
    # the states straddle the boundary: both answers are common
    assert min(outcomes.values()) > 200, outcomes
    assert min(filled.values()) > 150, filled


def test_a_fill_counts_the_margin_of_the_other_working_orders_and_none_of_its_own() -> None:
    """10,000 USDT at 1x, flat, last price 20,000. A market buy of 0.25 works beside a limit buy of 0.26 at 19,000
    (its margin 4,940); the market buy fills at 21,000: 5,250 + fee 1.05 = 5,251.05 > 10,000 - 4,940 = 5,060, refused.
    With the market buy canceled, a fill of an order not working (not submitted yet) beside the lone limit is refused
    alike. With the limit canceled too and that order submitted, it is the only working order: 5,251.05 <= 10,000,
    it fills (the check skips the walk over the working orders then)."""
    inst = INSTRUMENTS["margin spot"]
    iid = inst.instrument_id
    clock = SimulatedClock(1)
    orders = OrderManager(MessageBus(), clock)
    account = MarginAccount({iid: inst}, {"USDT": 10_000.0}, {iid: Position(iid, 1e-9)})
    account.bind(orders.open_orders, lambda _iid: 20_000.0, orders.count_open)
    account.track(orders)
    working = []
    for coid, order_type, qty, price in (("m", OrderType.MARKET, 0.25, math.nan), ("l", OrderType.LIMIT, 0.26, 19e3)):
        order = orders.create(SubmitOrder("s", iid, coid, OrderSide.BUY, qty, 1, 1, order_type, price))
        orders.mark_submitted(order, 1)
        working.append(order)
    market, limit = working
    refused = (
        "margin: fill 0.25 BTCUSDT.SIM needs initial margin and fee 5251.05 USDT > available 5060 USDT "
        "(wallet 10000, position margin 0)"
    )
    assert account.check_fill(market, 0.25, 21_000.0, 1.05) == refused
    fresh = orders.create(SubmitOrder("s", iid, "n", OrderSide.BUY, 0.25, 1, 1))
    assert orders.count_open() == 2 and not fresh.is_open
    orders.apply(OrderCanceled("s", iid, "m", "", 2, 2))
    assert orders.open_orders() == [limit]
    assert account.check_fill(fresh, 0.25, 21_000.0, 1.05) == refused
    orders.apply(OrderCanceled("s", iid, "l", "", 2, 2))
    orders.mark_submitted(fresh, 3)
    assert orders.open_orders() == [fresh]
    assert account.check_fill(fresh, 0.25, 21_000.0, 1.05) is None
