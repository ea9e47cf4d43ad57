"""Cash-only instruments beside margined ones: a cash order may not spend the margined positions' margin.

A cash-only buy spends the quote asset, a sell the base asset. When that asset is the settle
asset of perpetuals or margin spot instruments, it backs their positions: the order may use
what new positions may (``MarginAccount.available``) less what other cash orders hold. Before,
only the spot balance was checked: a cash buy spent the USD a margin short needed and the short
was liquidated at once (or a perpetual fell below its initial margin).
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tradebus.account import MarginAccount
from tradebus.engine.instrument import Instrument, InstrumentKind, MarginTier
from tradebus.engine.kernel import Kernel, RunResult
from tradebus.engine.messages import (
    Bar,
    Liquidity,
    OrderCanceled,
    OrderDenied,
    OrderFilled,
    OrderSide,
    OrderType,
    SubmitOrder,
    Trade,
)
from tradebus.engine.portfolio import Position
from tradebus.execution.config import VenueConfig
from tradebus.research.lookahead import MemoryReplay, SourceFrame
from tradebus.strategies.base import Strategy

from tests.account.test_spot_account import exact_free_run

ETH = "ETH-USD.SIM"


def cash(quote: str = "USD", base: str = "ETH") -> Instrument:
    return Instrument("SIM", f"{base}-{quote}", base=base, quote=quote, tick_size=0.01, lot_size=0.001)


def account(margined: Instrument, other: Instrument, balances: dict[str, float]) -> tuple[MarginAccount, Position]:
    iid = margined.instrument_id
    pos = Position(iid, 1e-9, margined.contract_size)
    positions = {iid: pos, other.instrument_id: Position(other.instrument_id, 1e-9)}
    acct = MarginAccount({iid: margined, other.instrument_id: other}, balances, positions)
    acct.bind(tuple, lambda _: 2_000.0, lambda: 0)
    return acct, pos


def fill(acct: MarginAccount, pos: Position, side: OrderSide, qty: float, px: float) -> None:
    acct.apply_fill(OrderFilled("s", pos.instrument_id, "c", "v", "t", side, qty, px, 0.0, Liquidity.TAKER, 0, 0))
    pos.quantity += qty if side == OrderSide.BUY else -qty
    pos.avg_price = pos.last_price = px


def order(iid: str, side: OrderSide, qty: float, price: float) -> SubmitOrder:
    return SubmitOrder("s", iid, "cash", side, qty, 0, 0, order_type=OrderType.LIMIT, price=price)


def working(iid: str, side: OrderSide) -> Any:
    return SimpleNamespace(instrument_id=iid, side=side, client_order_id="cash", reduce_only=False, is_open=True)


def test_a_cash_buy_may_not_spend_the_usd_a_margin_short_needs() -> None:
    """1x short of 0.25 BTC at 20,000 on 10,000 USD: wallet 15,000, value -5,000, margin 5,000, available 5,000."""
    btc = Instrument("SIM", "BTC-USD", base="BTC", quote="USD", tick_size=0.01, lot_size=0.0001, margin=True)
    acct, pos = account(btc, cash(), {"USD": 10_000.0})
    fill(acct, pos, OrderSide.SELL, 0.25, 20_000.0)
    assert acct.available("USD") == 5_000.0 and acct.balance("USD") == 15_000.0
    assert acct.check_order(order(ETH, OrderSide.BUY, 2.4, 2_000.0), 2_000.0) is None
    assert acct.check_order(order(ETH, OrderSide.BUY, 2.6, 2_000.0), 2_000.0) == (
        "margin: BUY 2.6 ETH-USD.SIM needs 5200 USD > available 5000 USD (wallet 15000, position margin 5000, "
        "held by working orders 0)"
    )
    assert acct.check_fill(working(ETH, OrderSide.BUY), 2.4, 2_000.0, 0.0) is None
    assert acct.check_fill(working(ETH, OrderSide.BUY), 2.6, 2_000.0, 0.0) == (
        "margin: fill 2.6 ETH-USD.SIM needs 5200 USD > available 5000 USD (wallet 15000, position margin 5000, "
        "held by working orders 0)"
    )
    # a cash sell spends ETH, which backs nothing here: only the spot balance applies
    assert acct.check_order(order(ETH, OrderSide.SELL, 1.0, 2_000.0), 2_000.0).startswith("buying_power: SELL 1.0")


def test_a_cash_buy_may_not_spend_what_a_losing_perpetual_needs() -> None:
    """10x long of 1 BTC at 20,000 on 10,000 USDT, marked at 17,000: unrealised -3,000, margin 1,700:
    available 10,000 - 3,000 - 1,700 = 5,300 (the spot balance alone would allow 10,000)."""
    perp = Instrument("SIM", "BTCUSDT", kind=InstrumentKind.PERPETUAL, base="BTC", quote="USDT", tick_size=0.1,
                      lot_size=0.001, leverage=10.0)  # fmt: skip
    eth = cash("USDT")
    acct, pos = account(perp, eth, {"USDT": 10_000.0})
    fill(acct, pos, OrderSide.BUY, 1.0, 20_000.0)
    pos.last_price = 17_000.0
    assert acct.check_order(order(eth.instrument_id, OrderSide.BUY, 2.6, 2_000.0), 2_000.0) is None
    reason = acct.check_order(order(eth.instrument_id, OrderSide.BUY, 2.7, 2_000.0), 2_000.0)
    assert reason is not None
    assert reason.startswith("margin: BUY 2.7 ETH-USDT.SIM needs 5400 USDT > available 5300 USDT")


def test_a_cash_sell_of_btc_may_not_spend_an_inverse_perpetuals_margin() -> None:
    """An inverse perpetual settles in BTC: 200 contracts of 100 USD at 20,000 are 1 BTC of notional,
    10x: 0.1 BTC of margin out of a 1 BTC wallet; a cash BTC-USDT sell may spend 0.9 BTC."""
    inverse = Instrument("SIM", "BTCUSD_PERP", kind=InstrumentKind.PERPETUAL, base="BTC", quote="USD", tick_size=0.1,
                         lot_size=1.0, contract_size=100.0, leverage=10.0, inverse=True)  # fmt: skip
    spot = cash("USDT", "BTC")
    acct, pos = account(inverse, spot, {"BTC": 1.0})
    fill(acct, pos, OrderSide.BUY, 200.0, 20_000.0)
    assert math.isclose(acct.available("BTC"), 0.9)
    assert acct.check_order(order(spot.instrument_id, OrderSide.SELL, 0.85, 20_000.0), 20_000.0) is None
    reason = acct.check_order(order(spot.instrument_id, OrderSide.SELL, 0.95, 20_000.0), 20_000.0)
    assert reason is not None and reason.startswith("margin: SELL 0.95 BTC-USDT.SIM needs 0.95 BTC > available 0.9")


# ----------------------------------------------------------------------------- a backtest

BTC = "BTC-USD.SIM"
T0 = 1_700_000_000_000_000_000


def trades(price: float, start: int, n: int = 40) -> pd.DataFrame:
    ts = (start + np.arange(n) * 1_000_000).astype("int64")
    return pd.DataFrame({"ts_event": ts, "ts_init": ts, "price": np.full(n, price), "size": 0.5,
                         "aggressor": np.ones(n, dtype=np.int8), "trade_id": [str(k) for k in range(n)]})  # fmt: skip


class ShortThenBuyEth(Strategy):
    """Sells ``btc`` BTC on margin at its 5th BTC trade, buys ``eth`` ETH for cash at its 5th ETH trade."""

    def __init__(self, btc: float = 0.5, eth: float = 7.5) -> None:
        super().__init__([BTC, ETH], strategy_id="both")
        self.seen = {BTC: 0, ETH: 0}
        self.quantities = {BTC: (OrderSide.SELL, btc), ETH: (OrderSide.BUY, eth)}

    def on_trade(self, trade: Trade) -> None:
        iid = trade.instrument_id
        self.seen[iid] += 1
        if self.seen[iid] == 5:
            self.submit_market(iid, *self.quantities[iid])


def both_ways(
    frames: list[SourceFrame], leverage: float, btc: float, eth: float, tiers: tuple[MarginTier, ...] = ()
) -> tuple[RunResult, RunResult]:
    """The trade batch loop's result and one message at a time's, of :class:`ShortThenBuyEth` on ``frames``."""

    def build() -> Kernel:
        inst = Instrument("SIM", "BTC-USD", base="BTC", quote="USD", tick_size=0.01, lot_size=0.0001, margin=True,
                          leverage=leverage, margin_tiers=tiers)  # fmt: skip
        kernel = Kernel([inst, cash()], initial_cash=10_000.0, venue_config=VenueConfig(fill_on="trades"))
        kernel.add_strategy(ShortThenBuyEth(btc, eth))
        return kernel

    ran = build().run(MemoryReplay(frames, 1_000))  # type: ignore[arg-type]
    one = build()
    for batch in MemoryReplay(frames, 1_000).batches():  # type: ignore[arg-type]
        for msg in batch.messages():
            one.process(msg)
    one.stop()
    return ran, one.result


def test_a_backtest_denies_the_cash_buy_instead_of_liquidating_the_short() -> None:
    """1x short of 0.5 BTC at 20,000 on 10,000 USD: the 20,000 USD it holds back the short. Before,
    the 15,000 USD ETH buy went through and the short was liquidated at that trade, USD at -5,050."""
    frames = [
        SourceFrame(BTC, "trades", pd.concat([trades(20_000.0, T0), trades(20_000.0, T0 + 2_000_000_000)])),
        SourceFrame(ETH, "trades", trades(2_000.0, T0 + 1_000_000_000)),
    ]
    for result in both_ways(frames, 1.0, 0.5, 7.5):
        assert result.liquidations == []
        assert [(f.instrument_id, f.side, f.quantity) for f in result.fills] == [(BTC, "SELL", 0.5)]
        [denied] = result.denials
        assert denied.instrument_id == ETH and denied.reason.startswith(
            "margin: BUY 7.5 ETH-USD.SIM needs 15300 USD > available 0 USD (wallet 20000, position margin 10000"
        )


def test_trade_batches_liquidate_at_the_cash_fill_that_breaches_as_process() -> None:
    """At 250x the initial margin (0.4 %) is below the maintenance margin of a notional of 1,000,000 (tiers
    whose second allows 250x at 0.5 %: 5,000 - 500 = 4,500): the ETH buy fits the available 6,000 USD yet
    leaves 4,200 behind a short needing 4,500. One at a time the short is liquidated at that ETH trade;
    the trade batch loop checked a lone margin spot position only at its own instrument's prices beyond
    its bounds, and liquidated it at the next BTC trade."""
    btc_trades = pd.concat([trades(20_000.0, T0), trades(20_000.0, T0 + 2_000_000_000)])
    frames = [
        SourceFrame(BTC, "trades", btc_trades.assign(size=100.0)),
        SourceFrame(ETH, "trades", trades(2_000.0, T0 + 1_000_000_000)),
    ]
    tiers = (
        MarginTier(max_notional=500_000.0, maintenance_rate=0.004, max_leverage=250.0),
        MarginTier(max_notional=2_000_000.0, maintenance_rate=0.005, max_leverage=250.0),
    )
    ran, one = both_ways(frames, 250.0, 50.0, 2.9, tiers)  # 250x: initial margin 4,000; 5,800 USD of ETH
    eth_fill = T0 + 1_000_000_000 + 5_000_000
    for result in (one, ran):
        [event] = result.liquidations
        assert (event.ts_event, event.quantity, event.price) == (eth_fill, -50.0, 20_000.0)
    assert ran.fills == one.fills and ran.equity == one.equity


def test_a_cash_buy_of_exactly_the_free_settle_asset_passes_and_one_lot_more_is_denied() -> None:
    # USDT settles ETHUSDT (margin, never traded): 1.0 - 0.3 spent is 0.7, less 0.5 held by a resting
    # buy is 0.19999999999999996 in floats, and the margin check denied a buy of the 0.2 left.
    beside = (Instrument("SIM", "ETHUSDT", base="ETH", quote="USDT", tick_size=0.01, lot_size=0.001, margin=True),)
    kernel = exact_free_run(buy=True, last_qty=0.2, beside=beside)
    assert isinstance(kernel.portfolio.account, MarginAccount)
    assert kernel.result.denials == []
    assert [(f.quantity, f.price) for f in kernel.result.fills] == [(0.3, 1.0), (0.2, 1.0)]
    kernel = exact_free_run(buy=True, last_qty=0.201, beside=beside)
    assert [d.reason for d in kernel.result.denials] == [
        "buying_power: BUY 0.201 BTCUSDT.SIM needs 0.201 USDT > available 0.2 USDT "
        "(balance 0.7, held by working orders 0.5)"
    ]


class RestingSpotBuyThenPerpLong(Strategy):
    """Rests a spot buy of 4 ETH at 2,000 on its first ETH bar, then buys ``btc`` BTCUSDT perpetual on its
    second BTC bar (the two legs of a basis trade on one USDT wallet)."""

    def __init__(self, perp: str, spot: str, btc: float) -> None:
        super().__init__([perp, spot], strategy_id="basis")
        self.perp, self.spot, self.btc = perp, spot, btc
        self.bars = {perp: 0, spot: 0}
        self.denied: list[str] = []
        self.canceled: list[str] = []

    def on_bar(self, bar: Bar) -> None:
        self.bars[bar.instrument_id] += 1
        if bar.instrument_id == self.spot and self.bars[self.spot] == 1:
            self.submit_limit(self.spot, OrderSide.BUY, 4.0, 2_000.0)
        if bar.instrument_id == self.perp and self.bars[self.perp] == 2:
            self.submit_market(self.perp, OrderSide.BUY, self.btc)

    def on_order_denied(self, event: OrderDenied) -> None:
        self.denied.append(event.reason)

    def on_order_canceled(self, event: OrderCanceled) -> None:
        self.canceled.append(event.reason)


@pytest.mark.parametrize("btc", [0.4, 0.1])
def test_a_perpetual_order_may_not_take_the_usdt_a_resting_spot_buy_holds(btc: float) -> None:
    """10,000 USDT; a resting spot buy of 4 ETH at 2,000 holds 8,000 of them, leaving 2,000 for margin. A 1x
    perpetual long of 0.4 BTC at 20,000 needs 8,000: it was accepted (the margin check left out what cash
    orders hold) and the spot buy, reached at 1,990 on the next bar, was canceled ('needs 7960 USDT >
    available 2000 USDT'). It is now denied and the spot buy fills; a long of 0.1 BTC (2,000) fits, beside it."""
    perp = Instrument("SIM", "BTCUSDT", kind=InstrumentKind.PERPETUAL, base="BTC", quote="USDT", tick_size=0.1,
                      lot_size=0.001)  # fmt: skip
    spot = cash(quote="USDT")
    kernel = Kernel([perp, spot], venue_config=VenueConfig(fill_on="bars"), initial_cash=10_000.0)
    strategy = RestingSpotBuyThenPerpLong(perp.instrument_id, spot.instrument_id, btc)
    kernel.add_strategy(strategy)
    for k, (eth, btc_px) in enumerate([(2_100.0, 20_000.0), (2_100.0, 20_000.0), (1_990.0, 20_000.0)], start=1):
        t = T0 + k * 60_000_000_000
        kernel.process(Bar(spot.instrument_id, t, t, eth, eth, eth, eth, 1.0))
        kernel.process(Bar(perp.instrument_id, t, t, btc_px, btc_px, btc_px, btc_px, 1.0))
    assert strategy.canceled == []
    assert kernel.portfolio.position(spot.instrument_id) == 4.0
    if btc == 0.4:
        assert strategy.denied == [
            "margin: BUY 0.4 BTCUSDT.SIM needs initial margin and fee 8000 USDT > available 2000 USDT "
            "(wallet 10000, position margin 0, held by cash-only orders 8000)"
        ]
        assert kernel.portfolio.position(perp.instrument_id) == 0.0
    else:
        assert strategy.denied == []
        assert kernel.portfolio.position(perp.instrument_id) == 0.1
