"""Cash spot account: balances per asset never go negative, working orders hold funds, quotes stay apart."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradebus.account import SpotCashAccount
from tradebus.account.spot import exceeds
from tradebus.config import RunConfig
from tradebus.engine.instrument import Instrument, InstrumentKind
from tradebus.engine.kernel import Kernel
from tradebus.engine.messages import Bar, Liquidity, OrderFilled, OrderSide, OrderType, SubmitOrder
from tradebus.engine.portfolio import Portfolio
from tradebus.errors import ConfigError
from tradebus.strategies.base import Strategy

MIN = 60_000_000_000
T0 = 1_700_006_400_000_000_000
BUY, SELL = OrderSide.BUY, OrderSide.SELL


def spot(symbol: str = "BTCUSDT", base: str = "BTC", quote: str = "USDT", **kw: Any) -> Instrument:
    fields: dict[str, Any] = dict(
        venue="SIM", symbol=symbol, base=base, quote=quote, tick_size=0.01, lot_size=0.001,
        maker_fee=0.001, taker_fee=0.002,
    )
    fields.update(kw)
    return Instrument(**fields)


class Script(Strategy):
    """Submits the orders scripted for each bar index: ``(side, type, qty, price offset)``."""

    def __init__(self, iids: tuple[str, ...], script: dict[int, list[tuple[Any, ...]]]) -> None:
        super().__init__(iids, strategy_id="script")
        self.script = script
        self.n = 0

    def on_bar(self, bar: Bar) -> None:
        if bar.instrument_id != self.instrument_id:
            return
        self.n += 1
        for iid, side, typ, qty, off in self.script.get(self.n, ()):
            last = self.cache.price(iid)
            if typ == OrderType.MARKET:
                self.submit_market(iid, side, qty)
            elif last == last:
                price = round(last * (1.0 + off), 2)
                if typ == OrderType.LIMIT:
                    self.submit_limit(iid, side, qty, price)
                else:
                    self.submit_stop(iid, side, qty, price)


def bar(iid: str, k: int, o: float, h: float, lo: float, c: float) -> Bar:
    return Bar(iid, T0 + k * MIN, T0 + k * MIN, o, h, lo, c, 1.0)


# ------------------------------------------------------------------------ the property

ohlc = st.tuples(
    st.floats(0.6, 1.6), st.floats(0.0, 0.2), st.floats(0.0, 0.2), st.floats(0.6, 1.6)
).map(lambda t: (t[0], max(t[0], t[3]) * (1 + t[1]), min(t[0], t[3]) * (1 - t[2]), t[3]))
step = st.tuples(
    st.integers(0, 1),  # instrument: BTC/USDT or ETH/USDT
    st.sampled_from([BUY, SELL]),
    st.sampled_from([OrderType.MARKET, OrderType.LIMIT, OrderType.STOP_MARKET]),
    st.integers(1, 60).map(lambda n: n / 10),  # quantity
    st.floats(-0.3, 0.3),  # limit / trigger offset from the last price
)


@settings(max_examples=120, deadline=None)
@given(
    bars=st.lists(st.tuples(ohlc, ohlc), min_size=3, max_size=25),
    orders=st.dictionaries(st.integers(1, 25), st.lists(step, max_size=4), max_size=20),
    cash=st.sampled_from([50.0, 500.0, 5_000.0]),
    btc=st.sampled_from([0.0, 1.5]),
)
def test_no_spot_balance_ever_goes_negative(
    bars: list[tuple[tuple[float, ...], tuple[float, ...]]],
    orders: dict[int, list[tuple[Any, ...]]],
    cash: float,
    btc: float,
) -> None:
    # Before the account: nothing checked buying power, cash and coins went below zero.
    instruments = [spot(), spot("ETHUSDT", "ETH")]
    iids = tuple(i.instrument_id for i in instruments)
    kernel = Kernel(instruments, balances={"USDT": cash, "BTC": btc})
    script = {k: [(iids[i], *rest) for i, *rest in v] for k, v in orders.items()}
    kernel.add_strategy(Script(iids, script))
    account = kernel.portfolio.account
    seen_negative: list[tuple[str, float]] = []
    for k, pair in enumerate(bars, start=1):
        for iid, (o, h, lo, c), scale in zip(iids, pair, (100.0, 10.0), strict=True):
            kernel.process(bar(iid, k, o * scale, h * scale, lo * scale, c * scale))
            seen_negative += [(a, v) for a, v in account.balances().items() if v < 0.0]
    kernel.stop()
    assert seen_negative == []
    # The per-asset balances are the fills, asset by asset.
    base = {"BTC": btc, "ETH": 0.0}
    quote = cash
    for f in kernel.result.fills:
        signed = f.quantity if f.side == "BUY" else -f.quantity
        base["BTC" if f.instrument_id == iids[0] else "ETH"] += signed
        quote -= signed * f.price + f.fee
    assert account.balance("BTC") == pytest.approx(base["BTC"], abs=1e-9)
    assert account.balance("ETH") == pytest.approx(base["ETH"], abs=1e-9)
    assert account.balance("USDT") == pytest.approx(quote, rel=1e-12, abs=1e-9)
    assert kernel.portfolio.cash == account.balance("USDT")


# ------------------------------------------------------------------------ working orders hold funds


def test_a_working_buy_holds_the_cash_and_a_second_buy_is_denied_naming_the_asset() -> None:
    inst = spot()
    iid = inst.instrument_id
    kernel = Kernel([inst], balances={"USDT": 1_000.0})
    script = {1: [(iid, BUY, OrderType.LIMIT, 9.0, -0.10)], 2: [(iid, BUY, OrderType.LIMIT, 3.0, -0.10)]}
    kernel.add_strategy(Script((iid,), script))
    kernel.process(bar(iid, 1, 100.0, 101.0, 99.0, 100.0))
    kernel.process(bar(iid, 2, 100.0, 101.0, 99.0, 100.0))  # the first buy (limit 90) rests
    assert [o.status.name for o in kernel.orders.open_orders()] == ["ACCEPTED"]
    # Held: 9 x 90 x 1.002 (the larger fee rate) = 811.62; the second needs 3 x 90 x 1.002 = 270.54.
    (denied,) = kernel.result.denials
    assert denied.reason == (
        "buying_power: BUY 3.0 BTCUSDT.SIM needs 270.54 USDT > available 188.38 USDT "
        "(balance 1000, held by working orders 811.62)"
    )
    assert kernel.portfolio.account.locked("USDT") == pytest.approx(811.62)
    assert kernel.portfolio.account.free("USDT") == pytest.approx(188.38)


def test_selling_spot_coins_not_held_is_denied_but_a_margin_instrument_may_short() -> None:
    cash_only, margin = spot(), spot("ETHUSDT", "ETH", margin=True)
    kernel = Kernel([cash_only, margin], balances={"USDT": 1_000.0})
    script = {1: [(cash_only.instrument_id, SELL, OrderType.MARKET, 1.0, 0.0),
                  (margin.instrument_id, SELL, OrderType.MARKET, 1.0, 0.0)]}
    kernel.add_strategy(Script((cash_only.instrument_id, margin.instrument_id), script))
    for k in (1, 2):
        kernel.process(bar(margin.instrument_id, k, 10.0, 11.0, 9.0, 10.0))
        kernel.process(bar(cash_only.instrument_id, k, 100.0, 101.0, 99.0, 100.0))
    (denied,) = kernel.result.denials
    assert denied.instrument_id == cash_only.instrument_id
    assert denied.reason.startswith("buying_power: SELL 1.0 BTCUSDT.SIM needs 1 BTC > available 0 BTC")
    assert kernel.portfolio.position(margin.instrument_id) == -1.0
    assert kernel.portfolio.account.balance("ETH") == -1.0


def test_perpetuals_are_not_cash_checked() -> None:
    perp = spot("BTCUSDT-PERP", kind=InstrumentKind.PERPETUAL)
    assert not perp.cash_only and spot().cash_only and not spot(margin=True).cash_only


def test_usd_and_usdt_balances_stay_separate() -> None:
    usd, usdt = spot("BTC-USD", quote="USD"), spot("BTCUSDT")
    kernel = Kernel([usd, usdt], balances={"USD": 1_000.0, "USDT": 5_000.0})
    # 15 BTC-USD at ~100 needs USD 1500+: denied though USDT could pay; 15 BTCUSDT is fine.
    script = {1: [(usd.instrument_id, BUY, OrderType.MARKET, 15.0, 0.0),
                  (usdt.instrument_id, BUY, OrderType.MARKET, 15.0, 0.0)]}
    kernel.add_strategy(Script((usd.instrument_id, usdt.instrument_id), script))
    for k in (1, 2):
        kernel.process(bar(usdt.instrument_id, k, 100.0, 101.0, 99.0, 100.0))
        kernel.process(bar(usd.instrument_id, k, 100.0, 101.0, 99.0, 100.0))
    (denied,) = kernel.result.denials
    assert denied.instrument_id == usd.instrument_id and " USD > available 1000 USD " in denied.reason
    (fill,) = kernel.result.fills
    account = kernel.portfolio.account
    assert account.balance("USD") == 1_000.0
    assert account.balance("USDT") == 5_000.0 - 15.0 * fill.price - fill.fee
    assert account.balance("BTC") == 15.0


def test_a_market_buy_that_gaps_above_its_estimate_is_canceled_at_fill_time() -> None:
    inst = spot()
    iid = inst.instrument_id
    kernel = Kernel([inst], balances={"USDT": 1_000.0})
    # 9.5 at 100 x 1.02 (market buffer) x 1.002 = 970.9 passes the gate; the next bar opens at 110.
    kernel.add_strategy(Script((iid,), {1: [(iid, BUY, OrderType.MARKET, 9.5, 0.0)]}))
    kernel.process(bar(iid, 1, 100.0, 101.0, 99.0, 100.0))
    kernel.process(bar(iid, 2, 110.0, 111.0, 109.0, 110.0))
    assert kernel.result.denials == [] and kernel.result.fills == []
    (order,) = kernel.orders.orders()
    assert order.status.name == "CANCELED" and order.reason.startswith("insufficient balance: ")
    assert "USDT needed to fill 9.5 at 110.0" in order.reason
    assert kernel.portfolio.account.balance("USDT") == 1_000.0


# ------------------------------------------------------------------------ balances config and equity


def test_initial_holdings_can_be_sold_and_are_valued_at_the_last_price() -> None:
    inst = spot(maker_fee=0.0, taker_fee=0.0)
    iid = inst.instrument_id
    kernel = Kernel([inst], balances={"USDT": 1_000.0, "BTC": 0.5}, equity_interval_ns=MIN)
    kernel.add_strategy(Script((iid,), {2: [(iid, SELL, OrderType.MARKET, 0.5, 0.0)]}))
    kernel.process(bar(iid, 1, 100.0, 101.0, 99.0, 100.0))
    kernel.process(bar(iid, 2, 120.0, 121.0, 119.0, 120.0))
    assert kernel.equity() == 1_000.0 + 0.5 * 120.0
    kernel.process(bar(iid, 3, 130.0, 131.0, 129.0, 130.0))  # sold at 130
    kernel.stop()
    account, portfolio = kernel.portfolio.account, kernel.portfolio
    assert account.balance("BTC") == 0.0 and account.balance("USDT") == 1_000.0 + 65.0
    assert portfolio.equity() == 1_065.0
    # Returns are measured from the first valuation of the holdings (1000 + 0.5 x 100).
    assert kernel.result.initial_cash == 1_050.0
    assert [s.equity for s in kernel.result.equity] == [1_050.0, 1_060.0, 1_065.0]
    # equity - initial_cash - holdings == realized + unrealized - fees
    identity = portfolio.realized_pnl + portfolio.unrealized_pnl() - portfolio.fees_paid
    assert portfolio.equity() - portfolio.initial_cash - portfolio.holdings_value() == pytest.approx(identity)


def test_initial_cash_is_the_first_instruments_quote_balance() -> None:
    kernel = Kernel([spot("BTC-USD", quote="USD"), spot()], initial_cash=2_500.0)
    assert kernel.portfolio.account.balances() == {"BTC": 0.0, "USD": 2_500.0, "USDT": 0.0}


def _config(**extra: Any) -> dict[str, Any]:
    return {
        "data": {"sources": [{"instrument": "BTCUSDT.SIM", "file": "x.csv"}]},
        "instruments": [{"venue": "SIM", "symbol": "BTCUSDT", "base": "BTC", "quote": "USDT",
                         "tick_size": 0.01, "lot_size": 0.001}],
        "strategy": {"name": "ema_cross", "instruments": ["BTCUSDT.SIM"]},
        **extra,
    }


def test_balances_config_accepts_assets_of_the_instruments_only_and_not_with_initial_cash() -> None:
    assert RunConfig.model_validate(_config(balances={"USDT": 10_000, "BTC": 0.5})).balances == {
        "USDT": 10_000.0, "BTC": 0.5
    }
    with pytest.raises(ValueError, match="balances.ETH: no instrument has 'ETH'"):
        RunConfig.model_validate(_config(balances={"ETH": 1.0}))
    with pytest.raises(ValueError, match="initial_cash 5.0 disagrees with balances.USDT 1.0"):
        RunConfig.model_validate(_config(balances={"USDT": 1.0}, initial_cash=5.0))
    # A dumped config (initial_cash written out) loads again with the same balances.
    config = RunConfig.model_validate(_config(balances={"USDT": 2_000, "BTC": 0.5}))
    assert config.initial_cash == 2_000.0
    again = RunConfig.model_validate(config.model_dump(mode="json"))
    assert again == config
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        RunConfig.model_validate(_config(balances={"USDT": -1.0}))


def test_account_refuses_unknown_assets_and_bad_amounts() -> None:
    instruments = {spot().instrument_id: spot()}
    with pytest.raises(ConfigError, match="'DOGE' names no instrument"):
        SpotCashAccount(instruments, {"DOGE": 1.0})
    with pytest.raises(ConfigError, match="must be finite and >= 0"):
        SpotCashAccount(instruments, {"USDT": math.nan})


# ------------------------------------------------------------------------ equity identity with balances

_fills = st.lists(
    st.tuples(
        st.integers(0, 2),  # BTC-USD, BTCUSDT, ETHUSDT
        st.sampled_from([BUY, SELL]),
        st.integers(1, 5_000).map(lambda n: n * 0.001),
        st.integers(100, 1_000_000).map(lambda n: n * 0.01),
        st.floats(-0.5, 5.0),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(fills=_fills, marks=st.tuples(*[st.integers(100, 1_000_000).map(lambda n: n * 0.01)] * 3))
def test_balances_per_asset_and_the_equity_identity_hold_for_any_fills(
    fills: list[tuple[int, OrderSide, float, float, float]], marks: tuple[float, float, float]
) -> None:
    instruments = [spot("BTC-USD", quote="USD", margin=True), spot(margin=True), spot("ETHUSDT", "ETH", margin=True)]
    by_id = {i.instrument_id: i for i in instruments}
    start = {"USD": 1_000.0, "USDT": 50_000.0, "BTC": 0.25}
    pf = Portfolio(by_id, 0.0, start)
    expected = dict(start) | {"ETH": 0.0}
    for n, (k, side, qty, px, fee) in enumerate(fills):
        inst = instruments[k]
        trade = OrderFilled("s", inst.instrument_id, f"c{n}", "v", f"t{n}", side, qty, px, fee, Liquidity.TAKER, 1, 1)
        pf.apply_fill(trade)
        expected[inst.base] += side * qty
        expected[inst.quote] -= side * qty * px + fee
    for inst, mark in zip(instruments, marks, strict=True):
        pf.mark(inst.instrument_id, mark)
    for asset, amount in expected.items():
        assert pf.account.balance(asset) == pytest.approx(amount, rel=1e-12, abs=1e-6)
    # Cash is USD and USDT at par; the BTC holding is valued at BTC-USD (the reporting currency's pair).
    assert pf.initial_cash == 51_000.0 and pf.holdings_value() == 0.25 * marks[0]
    assert pf.cash == pytest.approx(pf.account.balance("USD") + pf.account.balance("USDT"), rel=1e-12, abs=1e-6)
    scale = 51_000.0 + sum(q * p for _, _, q, p, _ in fills) + sum(marks) * 10
    lhs = pf.equity() - pf.initial_cash - pf.holdings_value()
    assert abs(lhs - (pf.realized_pnl + pf.unrealized_pnl() - pf.fees_paid)) <= 1e-9 * scale


# ------------------------------------------------------------------------ float noise of the free balance


def exact_free_run(buy: bool, last_qty: float, margin: bool = False, beside: tuple[Instrument, ...] = ()) -> Kernel:
    """1.0 of the asset spent, 0.3 of it spent at market, 0.5 held by a resting limit, then ``last_qty``.

    Sells: 1.0 BTC, prices 100, the 0.5 at 120 and the last sell at 110. Buys (no fee): 1.0 USDT,
    0.3 BTC bought at 1.0, then at a last price of 1.25 a buy of 1.0 at 0.5 (holds 0.5) and the
    last buy at 1.0. The third bar reaches the last order's limit only. ``margin``: BTCUSDT is a
    margin spot instrument; ``beside``: more instruments in the run, never traded.
    """
    inst = spot(maker_fee=0.0, taker_fee=0.0, margin=margin)
    iid = inst.instrument_id
    if buy:
        kernel = Kernel([inst, *beside], balances={"USDT": 1.0})
        levels = [(1.0, 1.0, 1.0, 1.0), (1.0, 1.25, 1.0, 1.25), (1.25, 1.25, 0.9, 1.2)]
        resting = [(iid, BUY, OrderType.LIMIT, 1.0, -0.6), (iid, BUY, OrderType.LIMIT, last_qty, -0.2)]
    else:
        kernel = Kernel([inst, *beside], balances={"BTC": 1.0})
        levels = [(100.0, 100.0, 100.0, 100.0), (100.0, 100.0, 100.0, 100.0), (100.0, 115.0, 100.0, 100.0)]
        resting = [(iid, SELL, OrderType.LIMIT, 0.5, 0.2), (iid, SELL, OrderType.LIMIT, last_qty, 0.1)]
    kernel.add_strategy(Script((iid,), {1: [(iid, BUY if buy else SELL, OrderType.MARKET, 0.3, 0.0)], 2: resting}))
    for k, (o, h, lo, c) in enumerate(levels, start=1):
        kernel.process(bar(iid, k, o, h, lo, c))
    return kernel


def test_a_spot_sell_of_exactly_the_free_balance_passes_and_fills() -> None:
    # 1.0 BTC - 0.3 sold is 0.7; 0.7 - 0.5 held is 0.19999999999999996 in floats: the sell of the
    # 0.2 left was denied "needs 0.2 BTC > available 0.2 BTC (balance 0.7, held by working orders 0.5)".
    kernel = exact_free_run(buy=False, last_qty=0.2)
    assert kernel.result.denials == []
    assert [(f.quantity, f.price) for f in kernel.result.fills] == [(0.3, 100.0), (0.2, 110.0)]
    (working,) = kernel.orders.open_orders()
    assert working.quantity == 0.5 and working.status.name == "ACCEPTED"
    assert kernel.portfolio.account.free("BTC") == pytest.approx(0.0, abs=1e-15)


def test_a_spot_sell_of_one_lot_more_than_the_free_balance_is_still_denied() -> None:
    kernel = exact_free_run(buy=False, last_qty=0.201)
    (denied,) = kernel.result.denials
    assert denied.reason == (
        "buying_power: SELL 0.201 BTCUSDT.SIM needs 0.201 BTC > available 0.2 BTC "
        "(balance 0.7, held by working orders 0.5)"
    )
    assert len(kernel.result.fills) == 1


def test_a_spot_buy_of_exactly_the_free_cash_passes_and_fills() -> None:
    # 1.0 USDT - 0.3 spent is 0.7; 0.7 - 0.5 held is 0.19999999999999996: 0.2 at 1.0 was denied.
    kernel = exact_free_run(buy=True, last_qty=0.2)
    assert kernel.result.denials == []
    assert [(f.quantity, f.price) for f in kernel.result.fills] == [(0.3, 1.0), (0.2, 1.0)]
    (working,) = kernel.orders.open_orders()
    assert working.quantity == 1.0 and working.price == 0.5


def test_a_spot_buy_of_one_lot_more_than_the_free_cash_is_still_denied() -> None:
    kernel = exact_free_run(buy=True, last_qty=0.201)
    (denied,) = kernel.result.denials
    assert denied.reason == (
        "buying_power: BUY 0.201 BTCUSDT.SIM needs 0.201 USDT > available 0.2 USDT "
        "(balance 0.7, held by working orders 0.5)"
    )


@pytest.mark.parametrize("buy", [False, True])
def test_spending_exactly_the_balance_in_three_fills_leaves_zero_not_float_noise_below_it(buy: bool) -> None:
    """1.0 spent as 0.3, 0.2 and 0.5 (no fee): ``1.0 - 0.3 - 0.2 - 0.5`` is -5.6e-17 in floats.

    Sells: 1.0 BTC at market at 100. Buys: 1.0 USDT, limits at 1.0 (a market buy's buffer would
    need more than the 0.5 left). The equity samples' cash is the USDT balance.
    """
    inst = spot(maker_fee=0.0, taker_fee=0.0)
    iid = inst.instrument_id
    asset, typ, px = ("USDT", OrderType.LIMIT, 1.0) if buy else ("BTC", OrderType.MARKET, 100.0)
    assert 1.0 - 0.3 - 0.2 - 0.5 < 0.0
    kernel = Kernel([inst], balances={asset: 1.0}, equity_interval_ns=MIN)
    side = BUY if buy else SELL
    kernel.add_strategy(Script((iid,), {n: [(iid, side, typ, qty, 0.0)] for n, qty in enumerate((0.3, 0.2, 0.5), 1)}))
    for k in range(1, 6):
        kernel.process(bar(iid, k, px, px, px, px))
    kernel.stop()
    assert [f.quantity for f in kernel.result.fills] == [0.3, 0.2, 0.5]
    account = kernel.portfolio.account
    assert account.balance(asset) == 0.0 and math.copysign(1.0, account.balance(asset)) == 1.0
    assert account.free(asset) == 0.0
    if buy:
        assert kernel.portfolio.cash == 0.0
        assert kernel.result.equity[-1].cash == 0.0
    else:
        assert account.balance("USDT") == 100.0


# ------------------------------------------------------------------------ the check and order_need agree

_KINDS = [
    (OrderType.MARKET, math.nan, math.nan),
    (OrderType.LIMIT, 20_123.45, math.nan),
    (OrderType.STOP_LIMIT, 20_200.0, 20_150.0),
    (OrderType.STOP_MARKET, math.nan, 20_300.0),
    (OrderType.STOP_MARKET, math.nan, 19_000.0),  # a trigger below the last: the last prices it
]


@pytest.mark.parametrize("side", [BUY, SELL])
@pytest.mark.parametrize(("typ", "limit", "trigger"), _KINDS)
def test_check_order_denies_with_the_need_order_need_computes(
    side: OrderSide, typ: OrderType, limit: float, trigger: float
) -> None:
    """check_order computes a cash order's need inline (speed); it must be order_need's to the last bit."""
    inst = spot()
    account = SpotCashAccount({inst.instrument_id: inst}, {"USDT": 10.0, "BTC": 0.0001})
    cmd = SubmitOrder("s", inst.instrument_id, "c-1", side, 0.5, T0, T0, typ, limit, trigger)
    need, asset = account.order_need(cmd, 20_000.0)
    reason = account.check_order(cmd, 20_000.0)
    assert reason is not None
    assert f"needs {need:.10g} {asset} >" in reason
    unpriced = SubmitOrder("s", inst.instrument_id, "c-2", side, 0.5, T0, T0)
    unpriced_need = account.order_need(unpriced, math.nan)[0]
    assert (account.check_order(unpriced, math.nan) is None) == (unpriced_need != unpriced_need)


@pytest.mark.parametrize(("quantity", "passes"), [(0.75, True), (0.75 + 5e-15, True), (0.75 + 1e-13, False)])
def test_check_order_denies_exactly_past_the_slack_exceeds_allows(quantity: float, passes: bool) -> None:
    """check_order compares the need with what is free inline (speed); it must be exceeds' verdict.

    1 BTC held, a working sell of 0.25 holding its part: 0.75 is free, with a slack of 1e-14 BTC (LOTS_RTOL of
    the balance): a sell of 0.75 + 5e-15 passes, one of 0.75 + 1e-13 is denied and the denial names the 0.25 held.
    """
    inst = spot()
    iid = inst.instrument_id
    other = SimpleNamespace(instrument_id=iid, side=SELL, client_order_id="c-2", order_type=OrderType.LIMIT,
                            price=20_000.0, trigger_price=math.nan, leaves_qty=0.25, is_open=True)
    account = SpotCashAccount({iid: inst}, {"USDT": 0.0, "BTC": 1.0})
    account.bind(lambda: [other], lambda _iid: 20_000.0, lambda: 1)
    reason = account.check_order(SubmitOrder("s", iid, "c-1", SELL, quantity, T0, T0), 20_000.0)
    assert (reason is None) is passes is (not exceeds(quantity, 1.0 - 0.25, 1.0))
    if not passes:
        assert reason is not None and reason.startswith("buying_power: SELL") and "held by working orders 0.25)" in reason


@pytest.mark.parametrize(("quantity", "passes"), [(0.75, True), (0.75 + 5e-15, True), (0.75 + 1e-13, False)])
def test_check_fill_refuses_exactly_past_the_slack_exceeds_allows(quantity: float, passes: bool) -> None:
    """check_fill compares the need with what is free inline (speed); it must be exceeds' verdict.

    1 BTC held, a working sell of 0.25 holding its part: 0.75 is free, with a slack of 1e-14 BTC (LOTS_RTOL of
    the balance): a fill of a sell of 0.75 + 5e-15 passes, one of 0.75 + 1e-13 is refused naming the 0.25 held.
    """
    inst = spot()
    iid = inst.instrument_id
    filling = SimpleNamespace(instrument_id=iid, side=SELL, client_order_id="c-1", order_type=OrderType.MARKET,
                              price=math.nan, trigger_price=math.nan, leaves_qty=quantity, is_open=True)
    other = SimpleNamespace(instrument_id=iid, side=SELL, client_order_id="c-2", order_type=OrderType.LIMIT,
                            price=20_000.0, trigger_price=math.nan, leaves_qty=0.25, is_open=True)
    account = SpotCashAccount({iid: inst}, {"USDT": 0.0, "BTC": 1.0})
    account.bind(lambda: [filling, other], lambda _iid: 20_000.0, lambda: 2)
    reason = account.check_fill(filling, quantity, 20_000.0, 0.0)
    assert (reason is None) is passes is (not exceeds(quantity, 1.0 - 0.25, 1.0))
    if not passes:
        assert reason is not None and reason.startswith("insufficient balance: ")
        assert "held by other working orders 0.25)" in reason


@pytest.mark.parametrize("side", [BUY, SELL])
@pytest.mark.parametrize("others", [0, 1])
def test_check_fill_refuses_exactly_past_the_need_fill_need_computes(side: OrderSide, others: int) -> None:
    """check_fill computes a fill's need inline (speed); it must be fill_need's: a balance of exactly that
    need (plus what another working order holds) pays the fill, one lot less does not, and the refusal names it.

    A buy of 0.5 BTC at 20,000 with a fee of 6 needs 10,006 USDT (the fee counts); a sell needs 0.5 BTC.
    """
    inst = spot()
    iid = inst.instrument_id
    filling = SimpleNamespace(instrument_id=iid, side=side, client_order_id="c-1", order_type=OrderType.MARKET,
                              price=math.nan, trigger_price=math.nan, leaves_qty=0.5, is_open=True)
    other = SimpleNamespace(instrument_id=iid, side=side, client_order_id="c-2", order_type=OrderType.LIMIT,
                            price=20_000.0, trigger_price=math.nan, leaves_qty=0.25, is_open=True)
    working = [filling, other][: 1 + others]
    probe = SpotCashAccount({iid: inst}, {"USDT": 0.0, "BTC": 0.0})
    need, asset = probe.fill_need(filling, 0.5, 20_000.0, 6.0)
    assert (need, asset) == ((10_006.0, "USDT") if side is BUY else (0.5, "BTC"))
    held = 0.0
    if others:
        probe.bind(lambda: working, lambda _iid: 20_000.0, lambda: len(working))
        held = probe.held(asset, "c-1")
        assert held == pytest.approx(0.25 * 20_000.0 * 1.002 if side is BUY else 0.25)  # a limit buy holds its taker fee
    for balance, pays in ((need + held, True), (need + held - 0.001 * (20_000.0 if side is BUY else 1.0), False)):
        account = SpotCashAccount({iid: inst}, {asset: balance})
        account.bind(lambda: working, lambda _iid: 20_000.0, lambda: len(working))
        reason = account.check_fill(filling, 0.5, 20_000.0, 6.0)
        if pays:
            assert reason is None
        else:
            assert reason is not None and reason.startswith(f"insufficient balance: {need:.10g} {asset} needed")
            assert f"held by other working orders {held:.10g})" in reason


def test_buying_power_and_fill_refusals_show_quantities_and_prices_without_float_noise() -> None:
    """0.1 + 0.2 is 0.30000000000000004 and 3 * 0.1 * 1000 is 300.00000000000006: the reasons showed them so."""
    inst = spot()
    iid = inst.instrument_id
    account = SpotCashAccount({iid: inst}, {"BTC": 0.25, "USDT": 50.0})
    account.bind(lambda: [], lambda _iid: 100.0, lambda: 0)
    qty = 0.1 + 0.2
    assert account.check_order(SubmitOrder("s", iid, "c", SELL, qty, 0, 0, OrderType.MARKET, math.nan), 100.0) == (
        "buying_power: SELL 0.3 BTCUSDT.SIM needs 0.3 BTC > available 0.25 BTC (balance 0.25, held by working orders 0)"
    )
    filling = SimpleNamespace(instrument_id=iid, side=BUY, client_order_id="c-1", order_type=OrderType.MARKET,
                              price=math.nan, trigger_price=math.nan, leaves_qty=qty, is_open=True)
    assert account.check_fill(filling, qty, 3 * 0.1 * 1000, 0.0) == (
        "insufficient balance: 90 USDT needed to fill 0.3 at 300.0 > available 50 USDT (held by other working orders 0)"
    )
