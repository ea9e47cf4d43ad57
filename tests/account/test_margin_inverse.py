"""Inverse (coin-margined) perpetuals in the margin account, with hand-derived numbers.

Binance COIN-M BTCUSD_PERP: a contract is 100 USD; Bybit BTCUSD: 1 USD. Margin, PnL and fees are
in BTC: a long of Q contracts of size c entered at E and closed at X makes Q c (1/E - 1/X) BTC.
The account is fed the fills as the portfolio would, and its positions (the real
:class:`~tradebus.engine.portfolio.Position`) are moved after each fill as the portfolio does.
"""

from __future__ import annotations

from typing import Any

import pytest

from tradebus.account import MarginAccount
from tradebus.engine.instrument import Instrument, InstrumentKind, MarginMode
from tradebus.engine.messages import Liquidity, OrderFilled, OrderSide, SubmitOrder
from tradebus.engine.portfolio import Portfolio, Position
from tradebus.errors import ConfigError, OrderError

IID = "BTCUSD_PERP.BINANCE_COINM"


def inverse(**overrides: Any) -> Instrument:
    fields: dict[str, Any] = dict(
        venue="BINANCE_COINM", symbol="BTCUSD_PERP", kind=InstrumentKind.PERPETUAL, base="BTC", quote="USD",
        tick_size=0.1, lot_size=1.0, contract_size=100.0, leverage=10.0, maintenance_rate=0.005, inverse=True,
    )
    fields.update(overrides)
    return Instrument(**fields)


class Book:
    """A margin account over one inverse instrument and its position."""

    def __init__(self, inst: Instrument, btc: float = 1.0) -> None:
        self.inst = inst
        self.iid = inst.instrument_id
        self.pos = Position(self.iid, 1e-3, inst.contract_size)
        self.account = MarginAccount({self.iid: inst}, {"BTC": btc}, {self.iid: self.pos})

    def fill(self, side: OrderSide, qty: float, px: float, fee: float = 0.0) -> None:
        self.account.apply_fill(
            OrderFilled("s", self.iid, "c", "v", "t", side, qty, px, fee, Liquidity.TAKER, 0, 0)
        )
        self.pos.quantity += qty if side == OrderSide.BUY else -qty
        self.pos.last_price = px

    def mark(self, px: float) -> None:
        self.pos.last_price = px


def test_a_long_realises_in_btc_and_pays_its_fees_in_btc() -> None:
    book = Book(inverse())
    # 10 contracts = 1,000 USD: worth 1000/50000 = 0.02 BTC at entry; taker fee 0.05 % = 0.00001 BTC
    book.fill(OrderSide.BUY, 10, 50_000.0, fee=0.00001)
    book.mark(55_000.0)
    # unrealised 0.02 - 1000/55000 = 0.02 - 0.0181818... = 0.00181818... BTC
    assert book.account.unrealized(book.iid) == pytest.approx(0.02 - 1000 / 55_000, rel=1e-12)
    assert book.account.position_notional(book.iid) == pytest.approx(1000 / 55_000, rel=1e-12)
    book.fill(OrderSide.SELL, 10, 55_000.0, fee=0.000009)
    assert book.account.balance("BTC") == pytest.approx(1.0 + (0.02 - 1000 / 55_000) - 0.00001 - 0.000009, rel=1e-12)
    assert book.account.balance("USD") == 0.0  # nothing settles in the quote


def test_bybit_one_dollar_contracts() -> None:
    # 10,000 contracts of 1 USD from 20,000 to 25,000: 10000 (1/20000 - 1/25000) = 0.5 - 0.4 = 0.1 BTC
    book = Book(inverse(venue="BYBIT", symbol="BTCUSD", contract_size=1.0), btc=0.0)
    book.fill(OrderSide.BUY, 10_000, 20_000.0)
    book.fill(OrderSide.SELL, 10_000, 25_000.0)
    assert book.account.balance("BTC") == pytest.approx(0.1, rel=1e-12)


def test_a_short_gains_when_the_price_falls() -> None:
    book = Book(inverse())
    book.fill(OrderSide.SELL, 20, 40_000.0)  # 2,000 USD short: 0.05 BTC at entry
    book.mark(38_000.0)
    # 2000/38000 - 0.05 = 0.0526315... - 0.05 = 0.0026315... BTC
    assert book.account.unrealized(book.iid) == pytest.approx(2000 / 38_000 - 0.05, rel=1e-12)
    book.fill(OrderSide.BUY, 5, 38_000.0)  # a quarter closed: realises a quarter of it
    assert book.account.balance("BTC") == pytest.approx(1.0 + (500 / 38_000 - 0.0125), rel=1e-12)
    assert book.account.unrealized(book.iid) == pytest.approx(1500 / 38_000 - 0.0375, rel=1e-12)


def test_the_entry_is_the_harmonic_average() -> None:
    """10 at 50,000 and 10 at 40,000: entry value 0.02 + 0.025 = 0.045 BTC (harmonic average
    44,444.4); closed at 45,000 for 2000/45000 = 0.04444 BTC: a gain of 0.000556 BTC. The
    arithmetic average (45,000) would say 0."""
    book = Book(inverse(), btc=0.0)
    book.fill(OrderSide.BUY, 10, 50_000.0)
    book.fill(OrderSide.BUY, 10, 40_000.0)
    book.fill(OrderSide.SELL, 20, 45_000.0)
    assert book.account.balance("BTC") == pytest.approx(0.045 - 2000 / 45_000, rel=1e-12)
    assert book.account.balance("BTC") > 0.0005


def test_a_flip_opens_the_rest_at_the_fill_price() -> None:
    book = Book(inverse(), btc=0.0)
    book.fill(OrderSide.BUY, 10, 50_000.0)
    book.fill(OrderSide.SELL, 30, 40_000.0)  # closes 10 (0.02 - 1000/40000 = -0.005), opens 20 short at 40,000
    assert book.account.balance("BTC") == pytest.approx(-0.005, rel=1e-12)
    book.mark(40_000.0)
    assert book.account.unrealized(book.iid) == pytest.approx(0.0, abs=1e-15)
    book.mark(50_000.0)
    # short 2,000 USD from 40,000: 2000/50000 - 2000/40000 = 0.04 - 0.05 = -0.01 BTC
    assert book.account.unrealized(book.iid) == pytest.approx(-0.01, rel=1e-12)


def test_isolated_liquidation_price_and_breach() -> None:
    """Long 10 contracts at 50,000, isolated at 10x: margin E = 0.02 / 10 = 0.002 BTC, entry value
    V = 0.02, maintenance 0.5 %: P = (1 + 0.005) 1000 / (0.002 + 0.02) = 45,681.82. There the
    backing 0.002 + 0.02 - 1000/P equals 0.005 * 1000/P."""
    book = Book(inverse(margin_mode=MarginMode.ISOLATED))
    book.fill(OrderSide.BUY, 10, 50_000.0)
    price = book.account.liquidation_price(book.iid)
    assert price == pytest.approx(1005 / 0.022, rel=1e-12)
    book.mark(price + 1.0)
    assert not book.account.breached(book.iid) and book.account.liquidations() == []
    book.mark(price - 1.0)
    assert book.account.breached(book.iid) and book.account.liquidations() == [book.iid]


def test_a_short_liquidates_above_the_entry() -> None:
    """Short 10 at 50,000, isolated 10x: P = (0.005 - 1) 1000 / (0.002 - 0.02) = 995 / 0.018 = 55,277.78."""
    book = Book(inverse(margin_mode=MarginMode.ISOLATED))
    book.fill(OrderSide.SELL, 10, 50_000.0)
    assert book.account.liquidation_price(book.iid) == pytest.approx(995 / 0.018, rel=1e-12)


def test_margin_check_in_btc() -> None:
    """0.01 BTC in the wallet at 10x buys up to 0.1 BTC of contracts: 40 contracts at 50,000 are
    4,000 USD = 0.08 BTC (margin 0.008); 60 are 0.12 BTC (margin 0.012 > 0.01): denied."""
    book = Book(inverse(), btc=0.01)
    ok = SubmitOrder("s", book.iid, "c1", OrderSide.BUY, 40, 0, 0)
    too_much = SubmitOrder("s", book.iid, "c2", OrderSide.BUY, 60, 0, 0)
    assert book.account.check_order(ok, 50_000.0) is None
    reason = book.account.check_order(too_much, 50_000.0)
    assert reason is not None and reason.startswith("margin:") and "0.012 BTC > available 0.01 BTC" in reason


def test_inverse_needs_a_perpetual_and_a_run_refuses_it_for_now() -> None:
    with pytest.raises(OrderError, match="inverse applies to perpetuals"):
        Instrument(venue="X", symbol="BTCUSD", base="BTC", quote="USD", inverse=True)
    with pytest.raises(ConfigError, match="inverse .* the portfolio ledger"):
        Portfolio({IID: inverse()}, 1.0)
