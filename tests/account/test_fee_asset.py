"""Fees the venue charged in another asset than the quote (``OrderFilled.fee_asset``): balances, valuation, journal.

Every expected number is derived by hand in the comment beside it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tradebus.engine.bus import MessageBus
from tradebus.engine.clock import SimulatedClock
from tradebus.engine.instrument import Instrument, InstrumentKind
from tradebus.engine.messages import Liquidity, OrderAccepted, OrderFilled, OrderSide, OrderType, SubmitOrder
from tradebus.engine.portfolio import Portfolio
from tradebus.execution.journal import Journal
from tradebus.execution.orders import OrderManager

BTC = Instrument("BINANCE", "BTCUSDT", base="BTC", quote="USDT", tick_size=0.01, lot_size=1e-5)
BNB = Instrument("BINANCE", "BNBUSDT", base="BNB", quote="USDT", tick_size=0.01, lot_size=1e-3)
PERP = Instrument("BINANCE_USDM", "BTCUSDT", base="BTC", quote="USDT", tick_size=0.1, lot_size=0.001, kind=InstrumentKind.PERPETUAL)


def _fill(side: OrderSide, qty: float, px: float, fee: float, fee_asset: str, iid: str = BTC.instrument_id, coid: str = "c1") -> OrderFilled:
    return OrderFilled("s1", iid, coid, "v1", f"t-{coid}", side, qty, px, fee, Liquidity.TAKER, 1, 1, fee_asset)


@pytest.mark.parametrize(
    ("side", "fee", "fee_asset", "usdt", "btc", "bnb", "fees_paid"),
    [
        # buy 0.01 @ 60 000, fee 0.6 USDT: USDT 10 000 - 600 - 0.6; BTC +0.01
        (OrderSide.BUY, 0.6, "", 9_399.4, 0.01, 0.0, 0.6),
        # fee 0.00001 BTC out of what was bought: USDT 10 000 - 600; BTC 0.01 - 0.00001; worth 0.6 USDT
        (OrderSide.BUY, 0.00001, "BTC", 9_400.0, 0.00999, 0.0, 0.6),
        # fee 0.00002 BNB: USDT 10 000 - 600 exactly, BNB 0 - 0.00002; unpriced: not in fees_paid
        (OrderSide.BUY, 0.00002, "BNB", 9_400.0, 0.01, -0.00002, 0.0),
        # sell 0.01 @ 60 000 (from 0.02 BTC), fee 0.00002 BNB: USDT 10 000 + 600 exactly
        (OrderSide.SELL, 0.00002, "BNB", 10_600.0, 0.01, -0.00002, 0.0),
    ],
)
def test_spot_fill_debits_the_asset_the_fee_was_charged_in(
    side: OrderSide, fee: float, fee_asset: str, usdt: float, btc: float, bnb: float, fees_paid: float
) -> None:
    start = {"USDT": 10_000.0, "BTC": 0.02 if side is OrderSide.SELL else 0.0}
    portfolio = Portfolio({BTC.instrument_id: BTC}, 0.0, start)
    portfolio.apply_fill(_fill(side, 0.01, 60_000.0, fee, fee_asset))
    account = portfolio.account
    assert account.balance("USDT") == pytest.approx(usdt, abs=1e-9)
    assert account.balance("BTC") == pytest.approx(btc, abs=1e-12)
    assert account.balance("BNB") == pytest.approx(bnb, abs=1e-15)
    assert portfolio.fees_paid == pytest.approx(fees_paid, abs=1e-12)
    assert portfolio.fees_unvalued == ({"BNB": pytest.approx(0.00002)} if fee_asset == "BNB" else {})


def test_a_bnb_fee_is_valued_at_the_runs_bnbusdt_price() -> None:
    portfolio = Portfolio({BTC.instrument_id: BTC, BNB.instrument_id: BNB}, 10_000.0)
    portfolio.mark(BNB.instrument_id, 600.0)
    fill = _fill(OrderSide.BUY, 0.01, 60_000.0, 0.001, "BNB")
    portfolio.apply_fill(fill)
    # 0.001 BNB at 600 USDT = 0.6 USDT: in cash and fees_paid; the BNB balance falls by 0.001
    assert portfolio.fee_value(fill) == pytest.approx(0.6)
    assert portfolio.fees_paid == pytest.approx(0.6) and portfolio.fees_unvalued == {}
    assert portfolio.cash == pytest.approx(10_000.0 - 600.0 - 0.6)
    assert portfolio.account.balance("USDT") == 10_000.0 - 600.0
    assert portfolio.account.balance("BNB") == pytest.approx(-0.001)


def test_a_perpetual_fee_in_bnb_leaves_the_usdt_wallet_to_the_realised_pnl() -> None:
    portfolio = Portfolio({PERP.instrument_id: PERP}, 10_000.0)
    portfolio.apply_fill(_fill(OrderSide.BUY, 0.1, 60_000.0, 0.001, "BNB", PERP.instrument_id, "p1"))
    portfolio.apply_fill(_fill(OrderSide.SELL, 0.1, 61_000.0, 0.001, "BNB", PERP.instrument_id, "p2"))
    # realised 0.1 * (61 000 - 60 000) = 100 USDT; two fees of 0.001 BNB from BNB
    assert portfolio.account.balance("USDT") == pytest.approx(10_100.0)
    assert portfolio.account.balance("BNB") == pytest.approx(-0.002)


def test_a_journaled_bnb_fee_is_booked_in_bnb_again_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    clock = SimulatedClock()
    journal = Journal(path)
    orders = OrderManager(MessageBus(), clock)
    portfolio = Portfolio({BTC.instrument_id: BTC}, 10_000.0)
    journal.replay(orders, portfolio, 0)
    cmd = SubmitOrder("s1", BTC.instrument_id, "", OrderSide.BUY, 0.01, 1, 1, OrderType.MARKET)
    order = orders.create(cmd)
    journal.record_command(cmd, order.client_order_id)
    accepted = OrderAccepted("s1", BTC.instrument_id, order.client_order_id, "v1", 2, 2)
    fill = _fill(OrderSide.BUY, 0.01, 60_000.0, 0.00002, "BNB", coid=order.client_order_id)
    for event in (accepted, fill):
        orders.apply(event)
        journal.record_event(event)
    journal.close()

    again = Journal(path)
    try:
        restarted = Portfolio({BTC.instrument_id: BTC}, 10_000.0)
        again.replay(OrderManager(MessageBus(), clock), restarted, 3)
    finally:
        again.close()
    assert restarted.account.balance("USDT") == 10_000.0 - 600.0
    assert restarted.account.balance("BNB") == pytest.approx(-0.00002)
    assert restarted.fees_unvalued == {"BNB": pytest.approx(0.00002)}
