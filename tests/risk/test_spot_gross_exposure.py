"""max_gross_exposure on cash-only spot instruments: the position is the base asset held (README "## Risk").

Coins held from ``balances:`` are an exposure, and the cash-only instruments trading one asset share it:
buying BTC on BTCUSDT and selling it on BTC-USD leaves no BTC, and selling held coins lowers the exposure.
"""

from __future__ import annotations

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
from tradebus.execution.orders import OrderManager
from tradebus.risk.config import RiskConfig
from tradebus.risk.gate import RiskGate

BUY, SELL = OrderSide.BUY, OrderSide.SELL
USDT = Instrument("SIM", "BTCUSDT", tick_size=0.01, lot_size=0.001, margin=False, base="BTC", quote="USDT")
USD = Instrument("SIM", "BTC-USD", tick_size=0.01, lot_size=0.001, margin=False, base="BTC", quote="USD")


class Book:
    """A spot portfolio of BTCUSDT and BTC-USD at 100, 1000 USDT, 1000 USD and ``btc`` BTC held."""

    def __init__(self, btc: float, limit: float) -> None:
        self.bus = MessageBus()
        self.clock = SimulatedClock(0)
        instruments = {USDT.instrument_id: USDT, USD.instrument_id: USD}
        self.portfolio = Portfolio(instruments, 0.0, {"USDT": 1000.0, "USD": 1000.0, "BTC": btc})
        self.gate = RiskGate(RiskConfig(max_gross_exposure=limit), self.portfolio, self.clock, self.bus)
        self.orders = OrderManager(self.bus, self.clock)
        self.gate.bind_orders(self.orders)
        self.changes: list[TradingStateChanged] = []
        self.bus.subscribe(TradingStateChanged, self.changes.append)
        self.mark(100.0)

    def mark(self, price: float) -> None:
        for iid in (USDT.instrument_id, USD.instrument_id):
            self.portfolio.mark(iid, price)
            self.gate.on_price(iid, price)

    def check(self, inst: Instrument, side: OrderSide, qty: float) -> str | None:
        return self.gate.check(SubmitOrder("s", inst.instrument_id, "new", side, qty, 0, 0, OrderType.MARKET))

    def fill(self, inst: Instrument, side: OrderSide, qty: float) -> None:
        fill = OrderFilled("s", inst.instrument_id, "c", "v", f"t{qty}", side, qty, 100.0, 0.0, Liquidity.TAKER, 0, 0)
        self.bus.publish(self.portfolio.apply_fill(fill))


def test_the_gate_counts_coins_held_and_nets_the_instruments_sharing_them() -> None:
    """10 BTC held at 100 of an equity of 3000: 1000 of gross notional; a limit of 0.5 leaves 500 to buy."""
    book = Book(btc=10.0, limit=0.5)
    assert book.portfolio.equity() == 3000.0 and book.gate.state is TradingState.ACTIVE
    assert book.check(USDT, BUY, 5.0) is None  # 15 BTC: 1500 / 3000
    denied = book.check(USDT, BUY, 5.001)  # 1500.1 (1500.1000000000001 in floats)
    assert denied is not None and denied.startswith("max_gross_exposure: 0.500033 > 0.5 (gross notional 1500.1")
    assert book.check(USD, SELL, 10.0) is None  # sells every coin held: no exposure left
    book.fill(USD, SELL, 4.0)  # 6 BTC left: BTC-USD's position of -4 is coins of the holding sold
    assert book.check(USDT, BUY, 9.0) is None  # 15 BTC again
    denied = book.check(USDT, BUY, 9.001)
    assert denied is not None and denied.startswith("max_gross_exposure: 0.500033 > 0.5 (gross notional 1500.1")


def test_the_breaker_counts_coins_held_and_selling_them_passes_and_rearms_it() -> None:
    """30 BTC held at 100 of an equity of 5000 is 0.6 > 0.5: REDUCING from the first mark; selling
    29 of them passes (the gate took BTC-USD's -29 for 2900 of new exposure), 15 sold re-arm it."""
    book = Book(btc=30.0, limit=0.5)
    assert book.gate.state is TradingState.REDUCING
    assert book.changes[-1].reason == "gross_exposure: 0.6 > 0.5 (gross notional 3000.0, equity 5000.0)"
    assert book.check(USDT, BUY, 0.001) is not None
    assert book.check(USD, SELL, 29.0) is None
    book.fill(USD, SELL, 15.0)
    book.mark(100.0)  # 15 BTC: 1500 / 5000
    assert book.gate.state is TradingState.ACTIVE
