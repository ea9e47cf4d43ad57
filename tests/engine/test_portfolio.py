"""Portfolio: netting positions, average price, realised PnL on reductions and flips, equity identity."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradebus.engine.instrument import Instrument
from tradebus.engine.messages import Liquidity, OrderFilled, OrderSide
from tradebus.engine.portfolio import Portfolio
from tradebus.errors import ConfigError, OrderError

INST = Instrument("BINANCE", "BTCUSDT", tick_size=0.01, lot_size=0.001)
IID = INST.instrument_id
_n = [0]


def fill(side: OrderSide, qty: float, px: float, fee: float = 0.0, iid: str = IID) -> OrderFilled:
    _n[0] += 1
    return OrderFilled("s", iid, f"c-{_n[0]}", "v", f"t-{_n[0]}", side, qty, px, fee, Liquidity.TAKER, 1, 1)


def _pf(cash: float = 10_000.0) -> Portfolio:
    return Portfolio({IID: INST}, cash)


def test_buy_then_partial_sell_realizes_pnl_and_keeps_avg_price() -> None:
    pf = _pf()
    pf.apply_fill(fill(OrderSide.BUY, 2.0, 100.0))
    pf.apply_fill(fill(OrderSide.BUY, 2.0, 110.0))
    assert pf.avg_price(IID) == 105.0
    change = pf.apply_fill(fill(OrderSide.SELL, 1.0, 120.0))
    assert change.quantity == 3.0 and change.avg_price == 105.0 and change.realized_pnl == 15.0
    assert pf.realized_pnl == 15.0


def test_flip_long_to_short_realizes_closed_part_and_opens_rest_at_fill_price() -> None:
    pf = _pf()
    pf.apply_fill(fill(OrderSide.BUY, 1.0, 100.0))
    change = pf.apply_fill(fill(OrderSide.SELL, 3.0, 90.0))
    assert change.quantity == -2.0 and change.avg_price == 90.0 and pf.realized_pnl == -10.0


def test_short_cover_realizes_profit_when_price_falls() -> None:
    pf = _pf()
    pf.apply_fill(fill(OrderSide.SELL, 2.0, 100.0))
    pf.apply_fill(fill(OrderSide.BUY, 2.0, 95.0))
    assert pf.position(IID) == 0.0 and pf.avg_price(IID) == 0.0 and pf.realized_pnl == 10.0


def test_fees_reduce_cash_and_equity_and_are_tracked() -> None:
    pf = _pf()
    pf.apply_fill(fill(OrderSide.BUY, 1.0, 100.0, fee=0.5))
    assert pf.fees_paid == 0.5 and pf.cash == 10_000.0 - 100.0 - 0.5
    assert pf.equity() == pytest.approx(10_000.0 - 0.5)


def test_mark_moves_unrealized_pnl_equity_and_drawdown() -> None:
    pf = _pf()
    pf.apply_fill(fill(OrderSide.BUY, 10.0, 100.0))
    pf.mark(IID, 110.0)
    assert pf.unrealized_pnl() == 100.0 and pf.max_equity == 10_100.0
    pf.mark(IID, 90.0)
    assert pf.equity() == 9_900.0
    assert pf.drawdown() == pytest.approx(200.0 / 10_100.0)


def test_mark_ignores_non_finite_or_non_positive_prices() -> None:
    pf = _pf()
    pf.apply_fill(fill(OrderSide.BUY, 1.0, 100.0))
    for bad in (math.nan, math.inf, 0.0, -5.0):
        pf.mark(IID, bad)
    assert pf.last_price(IID) == 100.0


def test_mark_moved_sets_every_moved_price_takes_the_peak_at_the_final_prices_and_returns_the_moved() -> None:
    eth = Instrument("BINANCE", "ETHUSDT", tick_size=0.01, lot_size=0.001)
    pf = Portfolio({IID: INST, eth.instrument_id: eth}, 10_000.0)
    pf.apply_fill(fill(OrderSide.BUY, 1.0, 100.0))
    pf.apply_fill(fill(OrderSide.BUY, 2.0, 50.0, iid=eth.instrument_id))
    assert pf.equity() == 10_000.0 and pf.max_equity == 10_000.0
    # BTC up 30 then ETH down 2 x 10: marked one at a time the peak would pass 10,030.
    assert pf.mark_moved({IID: 130.0, eth.instrument_id: 40.0}) == [(IID, 130.0), (eth.instrument_id, 40.0)]
    assert (pf.last_price(IID), pf.last_price(eth.instrument_id)) == (130.0, 40.0)
    assert pf.equity() == 10_010.0 and pf.max_equity == 10_010.0
    assert pf.mark_moved({IID: 130.0, eth.instrument_id: 40.0}) == []
    # Unusable prices differ from the last ones (so they are returned) but are not taken.
    moved = pf.mark_moved({IID: math.nan, eth.instrument_id: -1.0})
    assert [iid for iid, _ in moved] == [IID, eth.instrument_id]
    assert math.isnan(moved[0][1]) and moved[1][1] == -1.0
    assert (pf.last_price(IID), pf.last_price(eth.instrument_id)) == (130.0, 40.0)
    assert pf.mark_moved({IID: 90.0, eth.instrument_id: 40.0}) == [(IID, 90.0)]
    assert (pf.last_price(IID), pf.last_price(eth.instrument_id)) == (90.0, 40.0)
    assert pf.equity() == 9_970.0 and pf.max_equity == 10_010.0
    assert pf.drawdown() == pytest.approx(40.0 / 10_010.0)


@pytest.mark.parametrize("first", ["BTC-USD", "ETH-BTC"])
def test_an_instrument_quoted_in_another_instruments_base_is_refused(first: str) -> None:
    # ETH-BTC beside BTC-USD: ETH-BTC's cash flows, fees and PnL are BTC, which the ledger would
    # have added to the USD cash at par (an ETH buy of 0.26 BTC, ~9,500 USD, booked as 0.26 USD).
    btc = Instrument("X", "BTC-USD", base="BTC", quote="USD", tick_size=0.01, lot_size=0.0001)
    eth = Instrument("X", "ETH-BTC", base="ETH", quote="BTC", tick_size=1e-6, lot_size=0.001)
    both = {"BTC-USD": {btc.instrument_id: btc, eth.instrument_id: eth},
            "ETH-BTC": {eth.instrument_id: eth, btc.instrument_id: btc}}[first]
    with pytest.raises(ConfigError, match=r"ETH-BTC\.X is quoted in BTC, the base asset of BTC-USD\.X"):
        Portfolio(both, 10_000.0)
    assert Portfolio({eth.instrument_id: eth}, 1.0).reporting_currency == "BTC"  # alone, it reports in BTC

@pytest.mark.parametrize(
    ("symbols", "asset", "reporting"),
    [
        (("ETHUSDT", "ETHBTC"), "BTC", "USDT"),  # 1 BTC was counted as 1 USDT
        (("ETHBTC", "ETHUSDT"), "USDT", "BTC"),  # 3,000 USDT as 3,000 BTC
        (("BTCUSD", "BTCEUR"), "EUR", "USD"),
    ],
)
def test_a_quote_asset_not_at_par_with_the_reporting_currency_is_refused_naming_it(
    symbols: tuple[str, str], asset: str, reporting: str
) -> None:
    # No instrument converts the second quote asset: the ledger summed its amounts with the
    # reporting currency's as if 1 BTC were 1 USDT (a 10,000 USDT + 1 BTC account started at 10,001).
    insts = [Instrument("X", s, base=s[:3], quote=s[3:], tick_size=1e-5, lot_size=1e-4) for s in symbols]
    with pytest.raises(ConfigError, match=rf"{symbols[1]}\.X is quoted in {asset}.* no instrument .* {reporting}"):
        Portfolio({i.instrument_id: i for i in insts}, 10_000.0, {reporting: 10_000.0, asset: 1.0})


def test_usd_stablecoin_quotes_count_at_par_with_each_other() -> None:
    insts = [Instrument("X", s, base="BTC", quote=q, tick_size=0.01, lot_size=1e-4)
             for s, q in (("BTCUSDT", "USDT"), ("BTCUSDC", "USDC"), ("BTC-USD", "USD"))]
    pf = Portfolio({i.instrument_id: i for i in insts}, 0.0, {"USDT": 100.0, "USDC": 50.0, "USD": 25.0})
    assert pf.initial_cash == 175.0



def test_fill_for_unknown_instrument_raises_and_books_nothing() -> None:
    pf = _pf()
    with pytest.raises(OrderError, match="unknown instrument 'ETHUSDT.BINANCE'"):
        pf.apply_fill(fill(OrderSide.BUY, 1.0, 100.0, iid="ETHUSDT.BINANCE"))
    assert pf.cash == 10_000.0


def test_fill_with_nan_price_raises_and_books_nothing() -> None:
    pf = _pf()
    with pytest.raises(OrderError, match="invalid"):
        pf.apply_fill(fill(OrderSide.BUY, 1.0, math.nan))
    assert pf.cash == 10_000.0 and pf.position(IID) == 0.0


fills_strategy = st.lists(
    st.tuples(
        st.sampled_from([OrderSide.BUY, OrderSide.SELL]),
        st.integers(min_value=1, max_value=5_000),  # lots of 0.001
        st.integers(min_value=100, max_value=1_000_000),  # ticks of 0.01
        st.floats(min_value=-0.5, max_value=5.0, allow_nan=False),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(fills=fills_strategy, last=st.integers(min_value=100, max_value=1_000_000))
def test_equity_identity_holds_for_any_fill_sequence_including_flips(
    fills: list[tuple[OrderSide, int, int, float]], last: int
) -> None:
    """Tolerance: 1e-9 relative to the sum of absolute notionals (float64 accumulation)."""
    initial = 50_000.0
    pf = _pf(initial)
    flows = 0.0
    fees = 0.0
    position = 0.0
    scale = initial
    for side, lots, ticks, fee in fills:
        qty, px = lots * 0.001, ticks * 0.01
        pf.apply_fill(fill(side, qty, px, fee))
        flows -= side * qty * px
        fees += fee
        position += side * qty
        scale += qty * px
    last_px = last * 0.01
    pf.mark(IID, last_px)
    tol = 1e-9 * (scale + abs(position) * last_px)
    assert pf.position(IID) == pytest.approx(position, abs=1e-9)
    expected = initial + flows - fees + position * last_px
    assert abs(pf.equity() - expected) <= tol
    assert abs((pf.realized_pnl + pf.unrealized_pnl() - pf.fees_paid) - (pf.equity() - initial)) <= tol


def test_valuation_gives_the_equity_sample_figures_in_one_pass() -> None:
    btc = Instrument("BINANCE", "BTCUSDT", tick_size=0.01, lot_size=0.001, base="BTC", quote="USDT", margin=True)
    eth = Instrument("BINANCE", "ETHUSDT", tick_size=0.01, lot_size=0.001, base="ETH", quote="USDT", margin=True)
    pf = Portfolio({IID: btc, eth.instrument_id: eth}, 0.0, balances={"USDT": 10_000.0, "ETH": 2.0})
    # ETH never priced: the holding counts 0
    assert pf.valuation() == (10_000.0, 10_000.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    pf.apply_fill(fill(OrderSide.BUY, 1.5, 100.0, fee=0.3))
    pf.apply_fill(fill(OrderSide.SELL, 0.5, 40.0, iid=eth.instrument_id))
    pf.mark_moved({IID: 110.0, eth.instrument_id: 30.0})
    pf.apply_fill(fill(OrderSide.SELL, 0.5, 120.0, fee=0.1))  # realizes (120 - 100) x 0.5 = 10
    pf.charge_interest("USDT", 0.25)
    # The fill does not move the mark: BTC 1.0 x 110 = 110, ETH -0.5 x 30 = -15, holding 2 ETH x 30 = 60;
    # cash 10,000 - 150.3 + 20 + 59.9 - 0.25; unrealized 1.0 x (110 - 100) + 0.5 x (40 - 30)
    cash = 10_000.0 - 150.3 + 20.0 + 59.9 - 0.25
    assert pf.valuation() == pytest.approx(
        (cash + 110.0 - 15.0 + 60.0, cash, 110.0 - 15.0 + 60.0, 10.0, 10.0 + 5.0, 0.4, 0.0, 0.25), abs=1e-9
    )
    equity, cash_, value, realized, unrealized, fees, funding, interest = pf.valuation()
    assert (equity, cash_, realized, unrealized, fees, funding, interest) == (
        pf.equity(), pf.cash, pf.realized_pnl, pf.unrealized_pnl(), pf.fees_paid, pf.funding_paid, pf.interest_paid
    )
    assert value == pytest.approx(110.0 - 15.0 + pf.holdings_value(), abs=1e-9)
