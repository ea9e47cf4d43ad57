"""Open-order lists longer than one venue page: reconciliation sees every order, the kill switch cancels every one in one round.

Bybit's ``GET /v5/order/realtime`` answers 20 orders a page unless asked up to 50, with a
``nextPageCursor``; OKX's ``/trade/orders-pending`` and ``/trade/orders-algo-pending`` 100 a
page, the next asked ``after`` the last id. The emulators page as the venues document; the
account holds more open orders than one page (Bybit: plain and conditional orders), placed
through the adapter with a budget of its own so the placing does not wait.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr

from tests.live.live_harness import KEY, SECRET
from tests.live.venue_kits import BYBIT, OKX, PASSPHRASE
from tradebus.adapters.bybit.trading import BybitTrading
from tradebus.adapters.common.ratelimit import WeightBudget
from tradebus.adapters.okx.trading import OkxTrading
from tradebus.engine.messages import OrderSide, OrderStatus, OrderType, Trade
from tradebus.execution.orders import Order
from tradebus.node.live import ApiKeys, kill_switch, parse_live_config

PRICE = 50_000.0


def _limit(coid: str, iid: str, n: int) -> Order:
    return Order(coid, "", iid, OrderSide.BUY, OrderType.LIMIT, 0.001, PRICE - 10.0 * (n + 1))


def _stop(coid: str, iid: str, n: int) -> Order:
    return Order(coid, "", iid, OrderSide.SELL, OrderType.STOP_MARKET, 0.001, trigger_price=PRICE - 100.0 * (n + 1))


async def test_bybit_open_orders_past_one_page_are_all_listed_and_the_kill_switch_cancels_them_in_one_round(tmp_path: Path) -> None:
    keys = ApiKeys(SecretStr(KEY), SecretStr(SECRET))
    async with BYBIT.emulator() as emulator:
        emulator.on_trade(Trade(BYBIT.iid, 1, 1, PRICE, 1.0, 1, "t0"))  # a last price for the conditional orders
        api = BybitTrading(emulator.rest_url, keys.key, keys.secret, BYBIT.instruments(), budget=WeightBudget(1_000, 1.0))
        try:
            for n in range(22):
                await api.place(_limit(f"lim{n}", BYBIT.iid, n))
            for n in range(3):
                await api.place(_stop(f"stop{n}", BYBIT.iid, n))
            placed = sorted(emulator.orders)
            assert len(emulator.open_orders()) == 25 and len(emulator.untriggered) == 3
            listed = await api.open_orders()  # what the reconciliation at start-up reads
        finally:
            await api.close()
        assert sorted(r.client_order_id for r in listed) == placed

        before = len(emulator.requests)
        config = parse_live_config(BYBIT.config(tmp_path, "ws://127.0.0.1:9", emulator), "<test>")
        canceled = await kill_switch(config, keys, "test kill")
        listings = [r for r in emulator.requests[before:] if r[:2] == ("GET", "/v5/order/realtime")]
    assert sorted(canceled) == placed
    assert {o.status for o in emulator.orders.values()} == {OrderStatus.CANCELED}
    assert len(listings) == 2  # one round: the orders listed (one page of 50), canceled, listed again (none)


async def test_okx_open_orders_and_stops_past_one_page_are_all_listed_and_canceled() -> None:
    async with OKX.emulator() as emulator:
        emulator.on_trade(Trade(OKX.iid, 1, 1, PRICE, 1.0, 1, "t0"))  # a last price for the stops
        api = OkxTrading(
            emulator.rest_url, SecretStr(KEY), SecretStr(SECRET), SecretStr(PASSPHRASE), OKX.instruments(),
            budget=WeightBudget(10_000, 1.0),
        )
        try:
            for n in range(101):
                await api.place(_limit(f"lim{n}", OKX.iid, n))
                await api.place(_stop(f"stop{n}", OKX.iid, n))
            placed = sorted(emulator.orders)
            assert len(placed) == 202 and len(emulator.untriggered) == 101
            listed = await api.open_orders()
            before = len(emulator.requests)
            canceled = await api.cancel_all()
            left = await api.open_orders()
        finally:
            await api.close()
        requests = emulator.requests[before:]
    assert sorted(r.client_order_id for r in listed) == placed
    assert sorted(canceled) == placed and left == []
    assert {o.status for o in emulator.orders.values()} == {OrderStatus.CANCELED}
    for path in ("/api/v5/trade/orders-pending", "/api/v5/trade/orders-algo-pending"):
        assert len([r for r in requests if r[1] == path]) == 2 + 1  # 100 + 1, then none
