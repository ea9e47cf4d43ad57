"""``/flatten`` cancels every open order, waits for the venue's confirmations, then closes each position.

A paper daemon on the served USD-M capture (a strategy that never trades) holds a long
position with a resting take-profit (a SELL LIMIT of the whole position, on the closing side)
and a resting BUY LIMIT (on the opening side). ``/flatten`` from the operator's chat, through
the fake Bot API on 127.0.0.1, cancels both and closes the position at market.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tradebus.engine.instrument import Instrument
from tradebus.engine.kernel import Kernel
from tradebus.engine.messages import (
    Liquidity,
    OrderFilled,
    OrderSide,
    OrderStatus,
    OrderType,
    SubmitOrder,
    Trade,
    TradingState,
)
from tradebus.execution.config import VenueConfig
from tradebus.node.daemon import PaperNode
from tradebus.ops.config import OpsConfig
from tradebus.ops.hooks import OpsHooks

from live.node_testdata import USDM_IID, config_of

from .conftest import OnDemand, served_usdm, usdm_paper
from .fake_telegram import FakeBotApi

TOKEN = "123456:AAF-flatten-test-token"
OPERATOR = 4242


async def test_flatten_cancels_the_resting_orders_on_both_sides_and_closes_the_position(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``/flatten`` of a long 0.1 with a resting SELL LIMIT 0.1 answered "SELL 0.1 ... DENIED (trading_state:
    REDUCING allows only reducing orders; position 0.1, working on the order's side -0.1, order -0.1)" and the
    position stayed open; it canceled nothing either, so the resting BUY could open it again."""
    monkeypatch.setenv("TB_TEST_TELEGRAM_TOKEN", TOKEN)
    feed = OnDemand()  # the capture (35 s, ~12 s at speed 3) is sent only while a step waits for market data
    async with FakeBotApi(TOKEN) as api, served_usdm(speed=3.0, on_demand=feed) as srv:
        ops = {
            "telegram": {
                "chat_ids": [OPERATOR],
                "token_env": "TB_TEST_TELEGRAM_TOKEN",
                "base_url": api.base_url,
                "poll_timeout": 1,
            },
        }
        data = usdm_paper(srv, ops)
        data["strategy"]["params"] = {"fast": 2, "slow": 100_000, "quantity": 0.01}  # never trades
        node = PaperNode(config_of(data), handle_signals=False)
        kernel = node.kernel
        task = asyncio.create_task(node.run())
        try:
            await feed.until(lambda: kernel.result.trades >= 2 and node.guard.block_reason(USDM_IID) is None)
            now = node.clock.now_ns()
            kernel.submit(SubmitOrder("s", USDM_IID, "buy-1", OrderSide.BUY, 0.1, now, now, OrderType.MARKET))
            await feed.until(lambda: kernel.portfolio.position(USDM_IID) == pytest.approx(0.1))
            last = kernel.portfolio.last_price(USDM_IID)
            now = node.clock.now_ns()
            take_profit = SubmitOrder(
                "s", USDM_IID, "tp-1", OrderSide.SELL, 0.1, now, now, OrderType.LIMIT, price=round(last * 1.2, 1)
            )
            reopen = SubmitOrder(
                "s", USDM_IID, "buy-2", OrderSide.BUY, 0.1, now, now, OrderType.LIMIT, price=round(last * 0.8, 1)
            )
            kernel.submit(take_profit)
            kernel.submit(reopen)
            resting = [kernel.orders.get("tp-1"), kernel.orders.get("buy-2")]
            await feed.until(lambda: all(o.status is OrderStatus.ACCEPTED for o in resting))
            api.push(OPERATOR, "/flatten")
            await feed.until(lambda: any(t.startswith("trading state REDUCING;") for t in api.texts(OPERATOR)))
            await feed.until(lambda: kernel.portfolio.position(USDM_IID) == 0.0)
        finally:
            node.stop("test done")
            await asyncio.wait_for(task, 20)
    (reply,) = [t for t in api.texts(OPERATOR) if t.startswith("trading state REDUCING;")]
    assert [o.status for o in resting] == [OrderStatus.CANCELED, OrderStatus.CANCELED]
    (closing,) = [o for o in kernel.orders.orders() if o.strategy_id == "ops"]
    assert closing.status is OrderStatus.FILLED and closing.side is OrderSide.SELL and closing.quantity == 0.1
    assert kernel.risk.state is TradingState.REDUCING
    assert "canceled 2: tp-1, buy-2" in reply, reply
    assert f"{closing.client_order_id}: SELL 0.1 {USDM_IID}" in reply, reply


class _Daemon:
    """The little of a running daemon ``/flatten`` acts on: a kernel."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.feeds: list[Any] = []
        self.running = asyncio.Event()
        self.warming_up = False
        self.running.set()

    def stop(self, reason: str = "") -> None:
        """Nothing to stop."""


async def test_a_cancel_the_venue_does_not_confirm_in_time_is_reported_and_its_side_not_closed() -> None:
    inst = Instrument("BINANCE", "BTCUSDT", base="BTC", quote="USDT", tick_size=0.01, lot_size=1e-5, margin=True)
    iid = inst.instrument_id
    kernel = Kernel([inst], initial_cash=10_000.0, venue_config=VenueConfig(fill_on="trades"))
    kernel.start()
    kernel.process(Trade(iid, 1, 1, 60_000.0, 1.0, 1, "1"))
    kernel.portfolio.apply_fill(
        OrderFilled("s", iid, "c1", "v1", "t1", OrderSide.BUY, 0.1, 60_000.0, 0.0, Liquidity.TAKER, 1, 1)
    )
    kernel.submit(SubmitOrder("s", iid, "tp-1", OrderSide.SELL, 0.1, 2, 2, OrderType.LIMIT, price=70_000.0))
    kernel.process(Trade(iid, 2, 2, 60_000.0, 1.0, 2, "2"))
    assert kernel.orders.order("tp-1").status is OrderStatus.ACCEPTED
    hooks = OpsHooks(OpsConfig(flatten_timeout=0.2))
    hooks.target = _Daemon(kernel)
    reply = await hooks.flatten("test")  # no market data comes: the simulated venue never takes the cancel
    (order,) = [o for o in kernel.orders.orders() if o.strategy_id == "ops"]
    assert order.status is OrderStatus.DENIED
    assert reply == (
        f"trading state REDUCING; cancel not confirmed after 0.2 s: tp-1; flatten orders: {order.client_order_id}: "
        f"SELL 0.1 {iid} DENIED ({order.reason})"
    )
