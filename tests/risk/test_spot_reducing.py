"""REDUCING and max_position on cash-only spot instruments: the position is the base asset held (README "## Risk").

Coins held from ``balances:`` count: a sell of them reduces up to the holding less the working sells of
the asset (on every cash-only instrument trading it), a buy never does.
"""

from __future__ import annotations

from tradebus.engine.bus import MessageBus
from tradebus.engine.clock import SimulatedClock
from tradebus.engine.instrument import Instrument
from tradebus.engine.kernel import Kernel
from tradebus.engine.messages import (
    Bar,
    Liquidity,
    OrderAccepted,
    OrderFilled,
    OrderSide,
    OrderStatus,
    OrderSubmitted,
    OrderType,
    SubmitOrder,
    TradingState,
)
from tradebus.engine.portfolio import Portfolio
from tradebus.execution.orders import OrderManager
from tradebus.risk.config import RiskConfig
from tradebus.risk.gate import RiskGate
from tradebus.strategies.base import Strategy

BUY, SELL = OrderSide.BUY, OrderSide.SELL
USDT = Instrument("SIM", "BTCUSDT", tick_size=0.01, lot_size=0.001, margin=False, base="BTC", quote="USDT")
USD = Instrument("SIM", "BTC-USD", tick_size=0.01, lot_size=0.001, margin=False, base="BTC", quote="USD")
IID = USDT.instrument_id
MIN = 60_000_000_000
T0 = 1_700_006_400_000_000_000
REASON = "trading_state: REDUCING allows only reducing orders; "


class RestingSell(Strategy):
    """Sells 0.5 at a limit of 200 on its first bar (and ``market`` at market on it, if given)."""

    def __init__(self, market: float = 0.0) -> None:
        super().__init__(IID, strategy_id="s")
        self.market = market
        self.ids: dict[str, str] = {}

    def on_bar(self, bar: Bar) -> None:
        if not self.ids:
            self.ids["ask"] = self.submit_limit(IID, SELL, 0.5, 200.0)
            if self.market:
                self.ids["sold"] = self.submit_market(IID, SELL, self.market)


def kernel(market: float = 0.0) -> tuple[Kernel, RestingSell]:
    """A spot account starting with 1 BTC and 1000 USDT, two bars at 100 in, a sell of 0.5 resting at 200."""
    k = Kernel([USDT], balances={"USDT": 1000.0, "BTC": 1.0})
    strategy = RestingSell(market)
    k.add_strategy(strategy)
    for i in range(2):
        k.process(Bar(IID, T0 + i * MIN, T0 + i * MIN, 100.0, 101.0, 99.0, 100.0, 1.0))
    return k, strategy


def check(k: Kernel, side: OrderSide, qty: float, iid: str = IID) -> str | None:
    return k.risk.check(SubmitOrder("s", iid, "new", side, qty, 0, 0, OrderType.LIMIT, 150.0))


def test_reducing_keeps_a_resting_sell_of_coins_held_from_balances_and_it_fills() -> None:
    k, strategy = kernel()
    ask = k.orders.order(strategy.ids["ask"])
    assert ask.status is OrderStatus.ACCEPTED and k.portfolio.position(IID) == 0.0
    k.risk.set_state(TradingState.REDUCING, "operator")
    assert k.risk.disallowed_orders() == []
    k.process(Bar(IID, T0 + 2 * MIN, T0 + 2 * MIN, 150.0, 210.0, 150.0, 200.0, 1.0))
    k.stop()
    assert ask.status is OrderStatus.FILLED and ask.filled_qty == 0.5
    assert k.portfolio.account.balance("BTC") == 0.5


def test_reducing_allows_a_sell_up_to_the_coins_held_less_working_sells_and_no_buy() -> None:
    k, _ = kernel()
    k.risk.set_state(TradingState.REDUCING, "operator")
    # 1.0 BTC held, 0.5 of it offered at 200: 0.5 left to sell
    assert check(k, SELL, 0.2) is None
    assert check(k, SELL, 0.5) is None
    assert check(k, SELL, 0.501) == REASON + "position 1.0, working on the order's side -0.5, order -0.501"
    assert check(k, BUY, 0.1) == REASON + "position 1.0, working on the order's side 0.0, order 0.1"
    k.stop()


def test_reducing_denies_a_buy_back_of_coins_sold_from_balances() -> None:
    """The run sold 0.25 of its starting coin: position -0.25, but a buy adds to the 0.75 BTC held."""
    k, strategy = kernel(market=0.25)
    assert k.orders.order(strategy.ids["sold"]).status is OrderStatus.FILLED
    assert k.portfolio.position(IID) == -0.25
    k.risk.set_state(TradingState.REDUCING, "operator")
    assert check(k, BUY, 0.25) == REASON + "position 0.75, working on the order's side 0.0, order 0.25"
    assert check(k, SELL, 0.25) is None  # 0.75 held, 0.5 offered
    assert check(k, SELL, 0.251) == REASON + "position 0.75, working on the order's side -0.5, order -0.251"
    k.stop()


class Book:
    """A spot portfolio of BTCUSDT and BTC-USD sharing 1 BTC, its gate and working orders."""

    def __init__(self) -> None:
        self.bus = MessageBus()
        self.clock = SimulatedClock(0)
        self.portfolio = Portfolio(
            {IID: USDT, USD.instrument_id: USD}, 0.0, {"USDT": 1000.0, "USD": 1000.0, "BTC": 1.0}
        )
        self.gate = RiskGate(RiskConfig(), self.portfolio, self.clock, self.bus)
        self.orders = OrderManager(self.bus, self.clock)
        self.gate.bind_orders(self.orders)
        self.portfolio.account.bind(self.orders.open_orders, self.gate.last_price, lambda: self.orders.open_count)
        for iid in (IID, USD.instrument_id):
            self.portfolio.mark(iid, 100.0)
            self.gate.on_price(iid, 100.0)

    def work(self, iid: str, side: OrderSide, qty: float) -> str:
        coid = self.orders.next_client_order_id("s")
        self.orders.create(SubmitOrder("s", iid, coid, side, qty, 0, 0, OrderType.LIMIT, 200.0 if side is SELL else 50.0))
        self.orders.apply(OrderSubmitted("s", iid, coid, 0, 0))
        self.orders.apply(OrderAccepted("s", iid, coid, "v" + coid, 0, 0))
        return coid

    def check(self, iid: str, side: OrderSide, qty: float) -> str | None:
        return self.gate.check(SubmitOrder("s", iid, "new", side, qty, 0, 0, OrderType.LIMIT, 150.0))


def test_instruments_sharing_a_base_asset_share_its_holding_and_count_each_others_working_sells() -> None:
    book = Book()
    usd = USD.instrument_id
    book.work(IID, SELL, 0.5)
    bid = book.work(usd, BUY, 0.125)
    book.gate.set_state(TradingState.REDUCING, "operator")
    assert [o.client_order_id for o in book.gate.disallowed_orders()] == [bid]
    # 1.0 BTC held, 0.5 offered on BTCUSDT: 0.5 left to sell on either instrument
    assert book.check(usd, SELL, 0.5) is None
    assert book.check(usd, SELL, 0.625) == REASON + "position 1.0, working on the order's side -0.5, order -0.625"
    assert book.check(usd, BUY, 0.125) == REASON + "position 1.0, working on the order's side 0.125, order 0.125"
    second = book.work(usd, SELL, 0.25)
    third = book.work(IID, SELL, 0.5)  # 0.5 + 0.25 + 0.5 = 1.25 > 1.0: the last one placed goes
    assert [o.client_order_id for o in book.gate.disallowed_orders()] == [bid, third]
    assert book.check(IID, SELL, 0.125) == REASON + "position 1.0, working on the order's side -1.25, order -0.125"
    # BTC-USD sells 0.25 of the holding: its position is -0.25, 0.75 BTC is held, 0.5 + 0.5 offered
    fill = OrderFilled("s", usd, second, "v" + second, "t1", SELL, 0.25, 200.0, 0.0, Liquidity.MAKER, 0, 0)
    book.orders.apply(fill)
    book.portfolio.apply_fill(fill)
    assert book.portfolio.position(usd) == -0.25 and book.portfolio.spot_holding("BTC") == 0.75
    assert [o.client_order_id for o in book.gate.disallowed_orders()] == [bid, third]
    assert book.check(usd, SELL, 0.125) == REASON + "position 0.75, working on the order's side -1.0, order -0.125"
    assert book.check(usd, BUY, 0.125) is not None  # a buy back adds to what is held


def test_max_position_is_the_base_asset_held() -> None:
    """1 BTC held and a limit of 1.2: a buy of 0.201 would hold 1.201 (it passed: the run's position was 0)."""
    book = Book()
    book.gate = RiskGate(RiskConfig(max_position=1.2), book.portfolio, book.clock, book.bus)
    book.gate.bind_orders(book.orders)
    usd = USD.instrument_id
    for iid in (IID, usd):
        book.gate.on_price(iid, 100.0)
    assert book.check(IID, BUY, 0.2) is None
    assert book.check(IID, BUY, 0.201) == "max_position: |1.0 + 0.201| = 1.201 > 1.2"
    assert book.check(usd, SELL, 1.0) is None
    book.work(usd, BUY, 0.125)  # a working buy of the asset on the other instrument counts
    assert book.check(IID, BUY, 0.076) == "max_position: |1.0 + working 0.125 + 0.076| = 1.201 > 1.2"
    fill = OrderFilled("s", usd, "x", "v", "t1", SELL, 0.5, 100.0, 0.0, Liquidity.TAKER, 0, 0)
    book.portfolio.apply_fill(fill)  # 0.5 BTC held
    assert book.check(IID, BUY, 0.575) is None
    assert book.check(IID, BUY, 0.576) == "max_position: |0.5 + working 0.125 + 0.576| = 1.201 > 1.2"
