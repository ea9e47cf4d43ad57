"""Fees the venue charged in another asset than the quote (``OrderFilled.fee_asset``): balances, valuation, journal.

Every expected number is derived by hand in the comment beside it.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
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
    # 0.001 BNB at 600 USDT = 0.6 USDT: in fees_paid; the BNB balance and holding fall by 0.001, not cash
    assert portfolio.fee_value(fill) == pytest.approx(0.6)
    assert portfolio.fees_paid == pytest.approx(0.6) and portfolio.fees_unvalued == {}
    assert portfolio.cash == portfolio.account.balance("USDT") == 10_000.0 - 600.0
    assert portfolio.account.balance("BNB") == portfolio.holding("BNB") == pytest.approx(-0.001)
    # 9 400 USDT + 0.01 BTC at 60 000 - 0.001 BNB at 600
    assert portfolio.equity() == pytest.approx(10_000.0 - 0.6, abs=1e-9)


def test_a_bnb_fee_paid_out_of_a_bnb_holding_costs_the_bnb_at_its_current_price() -> None:
    portfolio = Portfolio({BTC.instrument_id: BTC, BNB.instrument_id: BNB}, 0.0, {"USDT": 10_000.0, "BNB": 1.0})
    portfolio.mark(BTC.instrument_id, 60_000.0)
    portfolio.mark(BNB.instrument_id, 500.0)
    assert portfolio.equity() == 10_500.0  # 10 000 USDT + 1 BNB at 500
    portfolio.apply_fill(_fill(OrderSide.BUY, 0.01, 60_000.0, 0.001, "BNB"))
    # fees_paid: 0.001 BNB at 500 = 0.5 USDT when booked; cash pays the notional 600 alone, as USDT does
    assert portfolio.fees_paid == pytest.approx(0.5)
    assert portfolio.cash == portfolio.account.balance("USDT") == 9_400.0
    # the portfolio's BNB is the account's: 1 - 0.001
    assert portfolio.holding("BNB") == portfolio.account.balance("BNB") == pytest.approx(0.999, abs=1e-15)
    assert portfolio.position(BNB.instrument_id) == 0.0
    assert portfolio.equity() == pytest.approx(10_499.5, abs=1e-9)  # 9 400 + 600 + 0.999 * 500
    portfolio.mark(BNB.instrument_id, 600.0)
    # 9 400 + 0.01 * 60 000 + 0.999 * 600 = 10 599.4: the fee costs 0.6 against the 10 600 of no fee
    assert portfolio.equity() == pytest.approx(10_599.4, abs=1e-9)
    assert portfolio.holdings_value() == pytest.approx(599.4, abs=1e-9)
    assert portfolio.holdings == {BNB.instrument_id: 1.0}  # the initial holdings, as the reports take them


def test_a_bnb_fee_leaves_the_bnb_the_run_bought_in_its_position_and_lowers_the_holding() -> None:
    portfolio = Portfolio({BTC.instrument_id: BTC, BNB.instrument_id: BNB}, 10_000.0)
    portfolio.apply_fill(_fill(OrderSide.BUY, 0.5, 500.0, 0.25, "", BNB.instrument_id, "b1"))
    portfolio.apply_fill(_fill(OrderSide.BUY, 0.01, 60_000.0, 0.001, "BNB", coid="b2"))
    # USDT 10 000 - 250 - 0.25 - 600 = 9 149.75; BNB 0.5 bought - 0.001 fee = 0.499
    assert portfolio.cash == portfolio.account.balance("USDT") == pytest.approx(9_149.75, abs=1e-9)
    assert portfolio.position(BNB.instrument_id) == 0.5  # what the strategy traded
    assert portfolio.position(BNB.instrument_id) + portfolio.holding("BNB") == pytest.approx(
        portfolio.account.balance("BNB"), abs=1e-15
    )
    assert portfolio.account.balance("BNB") == pytest.approx(0.499, abs=1e-15)
    assert portfolio.fees_paid == pytest.approx(0.25 + 0.5)  # 0.001 BNB at 500
    portfolio.mark(BNB.instrument_id, 600.0)
    # 9 149.75 + 0.01 * 60 000 + 0.499 * 600 = 10 049.15
    assert portfolio.equity() == pytest.approx(10_049.15, abs=1e-9)


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


def test_a_base_asset_fee_on_a_spot_buy_leaves_a_position_the_size_of_the_balance_and_sells_in_full() -> None:
    portfolio = Portfolio({BTC.instrument_id: BTC}, 10_000.0)
    bought = portfolio.apply_fill(_fill(OrderSide.BUY, 0.01, 60_000.0, 0.00001, "BTC"))
    # the venue credits 0.01 - 0.00001 = 0.00999 BTC and debits 600 USDT: position and cash follow it
    assert bought.quantity == portfolio.account.balance("BTC") == 0.01 - 0.00001
    assert bought.avg_price == pytest.approx(60_000.0, rel=1e-15)
    assert portfolio.cash == portfolio.account.balance("USDT") == 10_000.0 - 600.0
    assert portfolio.fees_paid == pytest.approx(0.6)  # 0.00001 BTC at 60 000, counted once
    portfolio.mark(BTC.instrument_id, 70_000.0)
    # 9 400 USDT + 0.00999 BTC at 70 000 = 9 400 + 699.3
    assert portfolio.equity() == pytest.approx(10_099.3, abs=1e-9)
    assert portfolio.unrealized_pnl() == pytest.approx(0.00999 * 10_000.0, abs=1e-9)  # 99.9

    # the strategy sells its whole position; a sell pays its fee in USDT (Binance charges the asset received)
    sell = SubmitOrder("s1", BTC.instrument_id, "", OrderSide.SELL, portfolio.position(BTC.instrument_id), 1, 1, OrderType.MARKET)
    assert portfolio.account.check_order(sell, 61_000.0) is None
    sold = portfolio.apply_fill(_fill(OrderSide.SELL, portfolio.position(BTC.instrument_id), 61_000.0, 0.60939, "", coid="c2"))
    assert sold.quantity == 0.0 and portfolio.account.balance("BTC") == 0.0
    # proceeds 0.00999 * 61 000 = 609.39 less its fee 0.60939: 9 400 + 609.39 - 0.60939 = 10 008.78061
    assert portfolio.cash == pytest.approx(10_008.78061, abs=1e-9)
    assert portfolio.account.balance("USDT") == pytest.approx(10_008.78061, abs=1e-9)
    # realised 0.00999 * (61 000 - 60 000) = 9.99; fees 0.6 + 0.60939 = 1.20939; 9.99 - 1.20939 = 8.78061
    assert portfolio.realized_pnl == pytest.approx(9.99, abs=1e-9)
    assert portfolio.fees_paid == pytest.approx(1.20939, abs=1e-12)
    assert portfolio.equity() - 10_000.0 == pytest.approx(8.78061, abs=1e-9)


def test_a_base_asset_fee_on_a_spot_sell_takes_the_fee_coins_from_the_position() -> None:
    portfolio = Portfolio({BTC.instrument_id: BTC}, 10_000.0)
    portfolio.apply_fill(_fill(OrderSide.BUY, 0.02, 60_000.0, 1.2, ""))
    portfolio.apply_fill(_fill(OrderSide.SELL, 0.01, 61_000.0, 0.00001, "BTC", coid="c2"))
    # BTC 0.02 - 0.01 - 0.00001 = 0.00999; USDT 10 000 - 1 200 - 1.2 + 610 = 9 408.8
    assert portfolio.position(BTC.instrument_id) == pytest.approx(0.00999, abs=1e-15)
    assert portfolio.account.balance("BTC") == pytest.approx(0.00999, abs=1e-15)
    assert portfolio.cash == pytest.approx(9_408.8, abs=1e-9)
    # realised 0.01001 * 1 000 = 10.01 (the fee coins left the position at 61 000); fees 1.2 + 0.61
    assert portfolio.realized_pnl == pytest.approx(10.01, abs=1e-9)
    assert portfolio.fees_paid == pytest.approx(1.81, abs=1e-12)
    assert portfolio.equity() - 10_000.0 == pytest.approx(10.01 - 1.81, abs=1e-9)


def test_strategies_sharing_an_instrument_each_hold_what_their_fills_left_after_a_base_asset_fee() -> None:
    from tradebus.engine.kernel import Kernel
    from tradebus.strategies.base import Strategy

    kernel = Kernel([BTC], initial_cash=10_000.0)
    kernel.add_strategy(Strategy(BTC.instrument_id, strategy_id="s1"))
    kernel.add_strategy(Strategy(BTC.instrument_id, strategy_id="s2"))
    kernel.start()
    fills = [_fill(OrderSide.BUY, 0.01, 60_000.0, 0.00001, "BTC"), _fill(OrderSide.BUY, 0.02, 60_000.0, 1.2, "", coid="c2")]
    fills[1] = msgspec.structs.replace(fills[1], strategy_id="s2")
    for fill in fills:  # as a restart replays them from the journal
        kernel.portfolio.apply_fill(fill)
        kernel.record_journaled(fill)
    # s1 bought 0.01 and paid 0.00001 of it: 0.00999; s2 bought 0.02 paying USDT: 0.02
    assert kernel.strategy_position("s1", BTC.instrument_id) == 0.01 - 0.00001
    assert kernel.strategy_position("s2", BTC.instrument_id) == 0.02
    assert kernel.portfolio.position(BTC.instrument_id) == pytest.approx(0.02999, abs=1e-15)


@pytest.mark.parametrize("fee_asset", ["BNB", ""])
def test_fees_no_instrument_prices_are_in_metrics_json_and_the_summary_only_when_there_are_some(tmp_path: Path, fee_asset: str) -> None:
    import json

    from tradebus.engine.kernel import Kernel
    from tradebus.reports.outputs import write_outputs
    from tradebus.reports.rundata import load_run
    from tradebus.reports.summary import summary_rows
    from tradebus.reports.writers import RunDirectory

    kernel = Kernel([BTC], initial_cash=10_000.0)
    kernel.start()
    for n in (1, 2):  # two buys of 0.01 @ 60 000, each paying 0.0012 BNB (or 0.6 USDT): 0.0024 BNB in all
        fill = _fill(OrderSide.BUY, 0.01, 60_000.0, 0.0012 if fee_asset else 0.6, fee_asset, coid=f"c{n}")
        kernel.record_journaled(SubmitOrder("s1", BTC.instrument_id, f"c{n}", OrderSide.BUY, 0.01, 1, 1, OrderType.MARKET, reason="entry"))
        kernel.portfolio.apply_fill(fill)
        kernel.record_journaled(fill)
    kernel.stop()
    out = tmp_path / "run"
    write_outputs(RunDirectory(out, "paper"), kernel.result, kernel.instruments, "config: 1\n")
    metrics = json.loads((out / "metrics.json").read_text())
    rows = {key: text for key, _, text in summary_rows(load_run(out))}
    if fee_asset:
        assert metrics["fees_unvalued"] == {"BNB": pytest.approx(0.0024, abs=1e-15)} and metrics["fees_paid"] == 0.0
        assert rows["fees_unvalued"] == "0.0024 BNB"
    else:
        assert "fees_unvalued" not in metrics and "fees_unvalued" not in rows
        assert metrics["fees_paid"] == pytest.approx(1.2)
