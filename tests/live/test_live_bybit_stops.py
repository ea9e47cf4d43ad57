"""Native stops on Bybit v5 (conditional orders), spot and linear, against the local account emulator.

The order bodies are checked against Bybit's documented parameters written out by hand; the
emulator triggers a conditional order as Bybit documents it (``triggerDirection`` on linear, the
last price at placement on spot), never by the side tradebus gave the order; each live test
checks the venue's own account (its fills and requests) as well as what the kernel booked.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.live.live_harness import until
from tests.live.test_live_bybit_linear import BYBIT_IID, INST, linear_account
from tests.live.venue_kits import BYBIT, KitTape, kit_harness
from tradebus.adapters.bybit.trading import linear_order_params, order_params
from tradebus.adapters.bybit.user_stream import UserStreamParser
from tradebus.adapters.common.account_emulator import StreamFault
from tradebus.engine.instrument import Instrument
from tradebus.engine.messages import (
    CancelOrder,
    OrderAccepted,
    OrderSide,
    OrderStatus,
    OrderTriggered,
    OrderType,
    SubmitOrder,
    TimeInForce,
)
from tradebus.execution.contingent import ContingentOrders
from tradebus.execution.live import VenueRejected
from tradebus.execution.orders import Order

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "bybit" / "user_data"
SPOT = Instrument(**BYBIT.instrument)
IID = BYBIT.iid
T0 = 1_786_310_819_680_000_000


# ---------------------------------------------------------------------- mapping and parsing


def test_spot_stops_are_conditional_orders_with_a_trigger_price_and_the_stop_order_filter() -> None:
    stop = Order("c1", "s", IID, OrderSide.SELL, OrderType.STOP_MARKET, 0.0123456789, trigger_price=58_999.996)
    assert order_params(stop, SPOT) == {
        "category": "spot", "symbol": "BTCUSDT", "side": "Sell", "qty": "0.012345", "orderLinkId": "c1",
        "orderType": "Market", "marketUnit": "baseCoin", "triggerPrice": "59000.00", "orderFilter": "StopOrder",
    }
    limit = Order("c2", "s", IID, OrderSide.BUY, OrderType.STOP_LIMIT, 0.001, 61_000.004, 60_500.0, TimeInForce.IOC)
    assert order_params(limit, SPOT) == {
        "category": "spot", "symbol": "BTCUSDT", "side": "Buy", "qty": "0.001000", "orderLinkId": "c2",
        "orderType": "Limit", "price": "61000.00", "timeInForce": "IOC", "triggerPrice": "60500.00", "orderFilter": "StopOrder",
    }
    with pytest.raises(VenueRejected, match="trigger price nan"):
        order_params(Order("c3", "s", IID, OrderSide.SELL, OrderType.STOP_MARKET, 0.001), SPOT)


def test_linear_stops_carry_the_direction_of_their_side_and_the_last_price_trigger() -> None:
    stop = Order("c1", "s", BYBIT_IID, OrderSide.SELL, OrderType.STOP_MARKET, 0.0123, trigger_price=64_000.04, reduce_only=True)
    assert linear_order_params(stop, INST) == {
        "category": "linear", "symbol": "BTCUSDT", "side": "Sell", "qty": "0.012", "orderLinkId": "c1", "positionIdx": 0,
        "orderType": "Market", "triggerPrice": "64000.0", "triggerDirection": 2, "triggerBy": "LastPrice", "reduceOnly": True,
    }
    limit = Order("c2", "s", BYBIT_IID, OrderSide.BUY, OrderType.STOP_LIMIT, 0.002, 66_100.0, 66_000.0)
    assert linear_order_params(limit, INST) == {
        "category": "linear", "symbol": "BTCUSDT", "side": "Buy", "qty": "0.002", "orderLinkId": "c2", "positionIdx": 0,
        "orderType": "Limit", "price": "66100.0", "timeInForce": "GTC", "triggerPrice": "66000.0", "triggerDirection": 1,
        "triggerBy": "LastPrice",
    }


def test_untriggered_is_an_acceptance_and_triggered_a_trigger_on_the_private_stream() -> None:
    order = Order("client-1", "s1", BYBIT_IID, OrderSide.BUY, OrderType.STOP_MARKET, 0.01, trigger_price=30_000.0)
    order.status = OrderStatus.SUBMITTED
    parser = UserStreamParser({BYBIT_IID: INST}, {"client-1": order}.get)
    frame = json.loads((FIX / "ws_account_order.json").read_text())
    row = frame["data"][0]
    row.update(orderStatus="Untriggered", orderType="Market", triggerPrice="30000", triggerDirection=1, stopOrderType="Stop")
    [accepted] = parser.parse(json.dumps(frame))
    assert accepted == OrderAccepted("s1", BYBIT_IID, "client-1", "abcdef123456", 1700000005000 * 1_000_000, accepted.ts_init)
    order.status = OrderStatus.ACCEPTED
    row.update(orderStatus="Triggered", updatedTime="1700000006000")
    [triggered] = parser.parse(json.dumps(frame))
    assert triggered == OrderTriggered("s1", BYBIT_IID, "client-1", 1700000006000 * 1_000_000, triggered.ts_init)
    order.status = OrderStatus.TRIGGERED
    row.update(orderStatus="New")  # the order it became: nothing new
    assert parser.parse(json.dumps(frame)) == []


# ---------------------------------------------------------------------- spot, live


async def test_a_spot_stop_loss_waits_untriggered_then_triggers_fills_and_is_booked_once() -> None:
    async with kit_harness(BYBIT) as h:
        s = KitTape(h, IID, T0)
        await s.fill(OrderSide.BUY, 0.01, 60_000.0)
        stop = s.submit(OrderSide.SELL, 0.01, OrderType.STOP_MARKET, trigger=59_000.0)
        await until(lambda: stop.status is OrderStatus.ACCEPTED)
        rec = h.emulator.orders[stop.client_order_id]
        assert h.emulator.untriggered == {stop.client_order_id: False}  # below the last price: waits for a fall
        s.trade(59_500.0)  # above the trigger: nothing
        await h.venue.drain()
        assert stop.status is OrderStatus.ACCEPTED and not rec.fills
        s.trade(58_900.0)  # falls through it: triggers, and that trade fills the market order
        await until(lambda: stop.status is OrderStatus.FILLED)
        await h.venue.drain()
    assert [f.last_px for f in rec.fills] == [58_900.0] and rec.order_id == int(stop.venue_order_id)
    assert [t.client_order_id for t in s.triggered] == [stop.client_order_id]
    assert stop.avg_px == 58_900.0 and h.kernel.portfolio.position(IID) == pytest.approx(0.0)
    assert [f.client_order_id for f in h.kernel.result.fills].count(stop.client_order_id) == 1
    assert h.emulator.balances["BTC"] == pytest.approx(0.0, abs=1e-12)
    assert s.posts("/v5/order/create").count(stop.client_order_id) == 1


async def test_a_spot_trailing_stop_is_amended_in_place_by_its_trigger_price() -> None:
    """Long 0.01 BTC at 60,000; a trailing sell stop 500 below: 59,500. Trades at 61,000 and 62,000
    amend its trigger to 60,500 and 61,500 (``triggerPrice`` on ``/v5/order/amend``, the same order at
    the venue all along); 61,400 triggers it and sells at 61,400."""
    async with kit_harness(BYBIT) as h:
        s = KitTape(h, IID, T0)
        contingent = ContingentOrders(h.kernel)
        await s.fill(OrderSide.BUY, 0.01, 60_000.0)
        coid = contingent.trailing_stop("s1", IID, OrderSide.SELL, 0.01, offset=500.0, reduce_only=False)
        stop = h.kernel.orders.order(coid)

        def venue_trigger() -> float:
            return h.emulator.orders[coid].order.trigger_price if coid in h.emulator.untriggered else math.nan

        await until(lambda: venue_trigger() == 59_500.0)
        for price, trigger in ((61_000.0, 60_500.0), (62_000.0, 61_500.0)):
            s.trade(price)
            await until(lambda: venue_trigger() == trigger and stop.trigger_price == trigger)  # noqa: B023
        s.trade(61_400.0)
        await until(lambda: stop.status is OrderStatus.FILLED)
        await h.venue.drain()
    assert h.venue.requests["amend"] == 2 and h.venue.requests["cancel"] == 0
    assert s.posts("/v5/order/create") == [s.posts("/v5/order/create")[0], coid]  # the entry, then one stop: never re-placed
    assert [f.last_px for f in h.emulator.orders[coid].fills] == [61_400.0]
    assert h.kernel.portfolio.position(IID) == pytest.approx(0.0)


async def test_a_spot_stop_canceled_untriggered_and_one_whose_trigger_push_was_lost_are_both_canceled() -> None:
    drop = StreamFault("drop", match='"orderStatus": "Triggered"')
    async with kit_harness(BYBIT, stream_faults=[drop]) as h:
        s = KitTape(h, IID, T0)
        s.trade(60_000.0)
        waiting = s.submit(OrderSide.BUY, 0.001, OrderType.STOP_LIMIT, price=70_100.0, trigger=70_000.0)
        raced = s.submit(OrderSide.BUY, 0.001, OrderType.STOP_LIMIT, price=60_600.0, trigger=60_500.0)
        await until(lambda: waiting.status is OrderStatus.ACCEPTED and raced.status is OrderStatus.ACCEPTED)
        h.kernel.execution.cancel(CancelOrder("s1", IID, waiting.client_order_id, 0, 0))  # untriggered: orderFilter=StopOrder
        await until(lambda: waiting.status is OrderStatus.CANCELED)
        s.trade(60_700.0)  # triggers ``raced`` (its push lost), above its limit: it rests unfilled
        await until(lambda: h.emulator.orders[raced.client_order_id].order.order_type is OrderType.LIMIT)
        assert raced.status is OrderStatus.ACCEPTED
        h.kernel.execution.cancel(CancelOrder("s1", IID, raced.client_order_id, 0, 0))  # StopOrder: 170213; then Order: canceled
        await until(lambda: raced.status is OrderStatus.CANCELED)
        await h.venue.drain()
    cancels = [c for m, p, c in h.emulator.requests if p == "/v5/order/cancel"]
    assert cancels == [waiting.client_order_id, raced.client_order_id, raced.client_order_id]
    assert h.emulator.orders[raced.client_order_id].status is OrderStatus.CANCELED
    assert not h.emulator.open_orders()


# ---------------------------------------------------------------------- linear, live


async def test_a_linear_stop_loss_of_a_long_triggers_on_the_fall_and_flattens_the_position() -> None:
    async with linear_account() as h:
        h.trade(65_000.0)
        await h.fill_market(OrderSide.BUY, 0.01, 65_000.0)
        sub = SubmitOrder("s1", BYBIT_IID, "", OrderSide.SELL, 0.01, 0, 0, OrderType.STOP_MARKET, math.nan, 64_000.0, reduce_only=True)
        stop = h.kernel.execution.submit(sub)
        await until(lambda: stop.status is OrderStatus.ACCEPTED)
        assert h.emulator.conditions[stop.client_order_id] == (64_000.0, 2)
        h.trade(64_500.0, aggressor=-1)
        h.trade(63_900.0, aggressor=-1)
        await until(lambda: stop.status is OrderStatus.FILLED)
        await h.venue.drain()
        assert h.emulator.position("BTCUSDT") == pytest.approx(0.0, abs=1e-12)
        assert h.kernel.portfolio.position(BYBIT_IID) == pytest.approx(0.0, abs=1e-12)
        assert [f.last_px for f in h.emulator.orders[stop.client_order_id].fills] == [63_900.0]


async def test_a_linear_stop_whose_trigger_the_market_already_passed_is_refused_by_bybit() -> None:
    async with linear_account() as h:
        h.trade(65_000.0)
        sub = SubmitOrder("s1", BYBIT_IID, "", OrderSide.SELL, 0.01, 0, 0, OrderType.STOP_MARKET, math.nan, 66_000.0)
        stop = h.kernel.execution.submit(sub)
        await until(lambda: stop.status is OrderStatus.REJECTED)
    assert "110093" in stop.reason and stop.client_order_id not in h.emulator.orders


async def test_a_linear_stop_triggered_by_the_mark_or_index_price_is_refused_placed_or_amended() -> None:
    """The emulator watches stops against the public trades (``LastPrice``): a ``triggerBy`` it would not honour is
    refused, on ``/v5/order/create`` and on ``/v5/order/amend`` (Bybit: "Modify the type of trigger price"),
    never taken and then triggered on the trades as if it were the last price."""
    async with linear_account() as h:
        h.trade(65_000.0)
        api = h.venue.api
        order = Order("m1", "s", BYBIT_IID, OrderSide.SELL, OrderType.STOP_MARKET, 0.01, trigger_price=64_000.0)
        with pytest.raises(VenueRejected, match="10001.*triggerBy 'MarkPrice'"):
            await api.call("private_post_v5_order_create", linear_order_params(order, INST) | {"triggerBy": "MarkPrice"})
        assert "m1" not in h.emulator.orders
        sub = SubmitOrder("s1", BYBIT_IID, "", OrderSide.SELL, 0.01, 0, 0, OrderType.STOP_MARKET, math.nan, 64_000.0)
        stop = h.kernel.execution.submit(sub)
        await until(lambda: stop.status is OrderStatus.ACCEPTED)
        amend = {"category": "linear", "symbol": "BTCUSDT", "orderLinkId": stop.client_order_id}
        with pytest.raises(VenueRejected, match="10001.*triggerBy 'IndexPrice'"):
            await api.call("private_post_v5_order_amend", amend | {"triggerPrice": "64500.0", "triggerBy": "IndexPrice"})
        assert h.emulator.conditions[stop.client_order_id] == (64_000.0, 2)  # the refused amend changed nothing
        await api.call("private_post_v5_order_amend", amend | {"triggerPrice": "64500.0", "triggerBy": "LastPrice"})
        assert h.emulator.conditions[stop.client_order_id] == (64_500.0, 2)
