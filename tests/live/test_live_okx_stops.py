"""Native stops on OKX v5 (algo orders: stop-loss ``conditional``), spot and swap, against the local account emulator.

The algo-order bodies are checked against OKX's documented parameters written out by hand; the
emulator triggers a stop as OKX documents a stop loss (a sell at a last price at or below
``slTriggerPx``, a buy at or above it), never by what tradebus expects; once triggered, the
order OKX places has a new ``ordId`` and carries the stop's ``algoClOrdId``, and its fills are
the stop's. Each live test checks the venue's own account (its fills and requests) as well as
what the kernel booked.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from tests.live.live_harness import until
from tests.live.test_live_okx_swap import INST as SWAP, OKX_SWAP, SWAP_IID
from tests.live.venue_kits import OKX, KitTape, VenueKit, kit_harness
from tradebus.adapters.okx.trading import order_params
from tradebus.adapters.okx.user_stream import SUBSCRIBE, SUBSCRIBE_SWAP, UserStreamParser
from tradebus.engine.instrument import Instrument
from tradebus.engine.messages import (
    CancelOrder,
    OrderAccepted,
    OrderFilled,
    OrderSide,
    OrderStatus,
    OrderTermsReported,
    OrderTriggered,
    OrderType,
    TimeInForce,
)
from tradebus.execution.contingent import ContingentOrders
from tradebus.execution.live import VenueRejected
from tradebus.execution.orders import Order

SPOT = Instrument(**OKX.instrument)
IID = OKX.iid
T0 = 1_786_310_819_680_000_000


# ---------------------------------------------------------------------- mapping and parsing


def test_spot_stops_are_stop_loss_conditional_algo_orders() -> None:
    stop = Order("c1", "s", IID, OrderSide.SELL, OrderType.STOP_MARKET, 0.0123456789, trigger_price=58_999.96)
    assert order_params(stop, SPOT) == {
        "instId": "BTC-USDT", "tdMode": "cash", "side": "sell", "sz": "0.01234567", "algoClOrdId": "c1", "ordType": "conditional",
        "slTriggerPx": "59000.0", "slTriggerPxType": "last", "slOrdPx": "-1", "tgtCcy": "base_ccy",
    }
    limit = Order("c2", "s", IID, OrderSide.BUY, OrderType.STOP_LIMIT, 0.001, 61_000.04, 60_500.0)
    assert order_params(limit, SPOT) == {
        "instId": "BTC-USDT", "tdMode": "cash", "side": "buy", "sz": "0.00100000", "algoClOrdId": "c2", "ordType": "conditional",
        "slTriggerPx": "60500.0", "slTriggerPxType": "last", "slOrdPx": "61000.0", "tgtCcy": "base_ccy",
    }
    with pytest.raises(VenueRejected, match="trigger price nan"):
        order_params(Order("c3", "s", IID, OrderSide.SELL, OrderType.STOP_MARKET, 0.001), SPOT)
    with pytest.raises(VenueRejected, match="GTC limit"):  # OKX places a GTC limit once triggered
        order_params(Order("c4", "s", IID, OrderSide.BUY, OrderType.STOP_LIMIT, 0.001, 61_000.0, 60_500.0, TimeInForce.IOC), SPOT)


def test_the_private_stream_subscribes_to_algo_orders_and_counts_their_confirmation() -> None:
    for frame, inst_type in ((SUBSCRIBE, "SPOT"), (SUBSCRIBE_SWAP, "SWAP")):
        assert {"channel": "orders-algo", "instType": inst_type} in json.loads(frame)["args"]


def _algo_push(state: str, **row: Any) -> str:
    data = {"instType": "SPOT", "instId": "BTC-USDT", "algoId": "681096944655273984", "algoClOrdId": "client1", "clOrdId": "",
            "ordId": "", "state": state, "slTriggerPx": "30000", "triggerTime": "", "uTime": "1700000005000"} | row
    return json.dumps({"arg": {"channel": "orders-algo", "instType": "SPOT"}, "data": [data]})


def test_algo_states_and_the_triggered_order_map_back_to_the_stop() -> None:
    order = Order("client1", "s1", IID, OrderSide.SELL, OrderType.STOP_MARKET, 0.01, trigger_price=30_000.0)
    order.status = OrderStatus.SUBMITTED
    parser = UserStreamParser({IID: SPOT}, {"client1": order}.get, venue="OKX")
    [accepted] = parser.parse(_algo_push("live"))
    assert accepted == OrderAccepted("s1", IID, "client1", "681096944655273984", 1700000005000 * 1_000_000, accepted.ts_init)
    order.status = OrderStatus.ACCEPTED
    [triggered] = parser.parse(_algo_push("effective", ordId="555", triggerTime="1700000006000"))
    assert triggered == OrderTriggered("s1", IID, "client1", 1700000006000 * 1_000_000, triggered.ts_init)
    order.status = OrderStatus.TRIGGERED
    row = {"instType": "SPOT", "instId": "BTC-USDT", "ordId": "555", "clOrdId": "", "algoClOrdId": "client1", "algoId": "681096944655273984",
           "state": "filled", "side": "sell", "tradeId": "77", "fillSz": "0.01", "fillPx": "29990", "fillFee": "-0.29990",
           "feeCcy": "USDT", "execType": "T", "fillTime": "1700000006001", "uTime": "1700000006001", "accFillSz": "0.01"}
    [fill] = parser.parse(json.dumps({"arg": {"channel": "orders", "instType": "SPOT"}, "data": [row]}))
    assert isinstance(fill, OrderFilled)
    assert (fill.client_order_id, fill.venue_order_id, fill.trade_id, fill.last_qty, fill.last_px, fill.fee) == (
        "client1", "681096944655273984", "77", 0.01, 29_990.0, pytest.approx(0.2999),
    )
    [failed] = parser.parse(_algo_push("order_failed", failCode="51008"))
    assert (failed.client_order_id, failed.reason) == ("client1", "the triggered order failed: 51008")


def test_a_live_algo_push_of_an_accepted_stop_tells_its_amended_terms() -> None:
    """An ``orders-algo`` push of a waiting stop after an amend (OKX's channel fields ``sz``, ``slTriggerPx`` and
    ``slOrdPx``, ``-1`` for a market stop) gives the stop's new terms; one telling its own terms gives nothing."""
    order = Order("client1", "s1", IID, OrderSide.SELL, OrderType.STOP_MARKET, 0.01, trigger_price=30_000.0)
    order.status = OrderStatus.ACCEPTED
    parser = UserStreamParser({IID: SPOT}, {"client1": order}.get, venue="OKX")
    assert parser.parse(_algo_push("live", sz="0.01", slOrdPx="-1")) == []
    [terms] = parser.parse(_algo_push("live", sz="0.008", slTriggerPx="30500", slOrdPx="-1", amendResult="0"))
    assert isinstance(terms, OrderTermsReported)
    assert (terms.client_order_id, terms.quantity, math.isnan(terms.price), terms.trigger_price) == ("client1", 0.008, True, 30_500.0)
    assert terms.ts_event == 1700000005000 * 1_000_000


# ---------------------------------------------------------------------- spot, live


async def test_a_spot_stop_loss_waits_then_triggers_fills_and_is_booked_once() -> None:
    async with kit_harness(OKX) as h:
        s = KitTape(h, IID, T0, size=100.0)
        await s.fill(OrderSide.BUY, 0.01, 60_000.0)
        stop = s.submit(OrderSide.SELL, 0.01, OrderType.STOP_MARKET, trigger=59_000.0)
        await until(lambda: stop.status is OrderStatus.ACCEPTED)
        emu = h.emulator
        algo_id = emu.algo_ids[stop.client_order_id]
        assert emu.untriggered == {stop.client_order_id} and stop.venue_order_id == str(algo_id)
        assert await h.venue.api.open_orders() == [  # listed among the algo orders, not the ordinary ones
            (await h.venue.api.query(stop))
        ]
        s.trade(59_500.0)  # above the trigger: nothing
        await h.venue.drain()
        assert stop.status is OrderStatus.ACCEPTED and not emu.orders[stop.client_order_id].fills
        s.trade(58_900.0)  # falls through it: triggers, and that trade fills the market order it places
        await until(lambda: stop.status is OrderStatus.FILLED)
        await h.venue.drain()
        report = await h.venue.api.query(stop)  # the algo order, then the order it became, and its fills
        rec = emu.orders[stop.client_order_id]
        assert rec.order_id != algo_id  # the order OKX placed has its own ordId
        assert (report.client_order_id, report.venue_order_id, report.status, report.filled_qty) == (
            stop.client_order_id, str(algo_id), OrderStatus.FILLED, 0.01,
        )
        assert [(f.trade_id, f.venue_order_id, f.last_px) for f in report.fills] == [(str(emu.fills[-1].trade_id), str(algo_id), 58_900.0)]
        since = await h.venue.api.fills_since(IID, {stop.venue_order_id: stop}, T0)  # the reconciliation's trade history
        assert [(f.client_order_id, f.trade_id) for f in since] == [(stop.client_order_id, str(emu.fills[-1].trade_id))]
    assert [f.last_px for f in rec.fills] == [58_900.0]
    assert [t.client_order_id for t in s.triggered] == [stop.client_order_id]
    assert stop.avg_px == 58_900.0 and h.kernel.portfolio.position(IID) == pytest.approx(0.0)
    assert [f.client_order_id for f in h.kernel.result.fills].count(stop.client_order_id) == 1
    assert emu.balances["BTC"] == pytest.approx(0.0, abs=1e-12)
    assert s.posts("/api/v5/trade/order-algo") == [stop.client_order_id]
    assert stop.client_order_id not in s.posts("/api/v5/trade/order")


async def test_a_spot_trailing_stop_is_moved_by_amend_algos() -> None:
    """Long 0.01 BTC at 60,000; a trailing sell stop 500 below: 59,500. Trades at 61,000 and 62,000
    move its trigger to 60,500 and 61,500 (``newSlTriggerPx`` on ``/trade/amend-algos``, the same
    algo order all along); 61,400 triggers it and sells at 61,400."""
    async with kit_harness(OKX) as h:
        s = KitTape(h, IID, T0, size=100.0)
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
    assert s.posts("/api/v5/trade/amend-algos") == [coid, coid]
    assert s.posts("/api/v5/trade/order-algo") == [coid]  # never re-placed
    assert [f.last_px for f in h.emulator.orders[coid].fills] == [61_400.0]
    assert h.kernel.portfolio.position(IID) == pytest.approx(0.0)


async def test_a_spot_stop_canceled_waiting_and_one_already_triggered_are_both_canceled() -> None:
    async with kit_harness(OKX) as h:
        s = KitTape(h, IID, T0, size=100.0)
        s.trade(60_000.0)
        waiting = s.submit(OrderSide.BUY, 0.001, OrderType.STOP_LIMIT, price=70_100.0, trigger=70_000.0)
        raced = s.submit(OrderSide.BUY, 0.001, OrderType.STOP_LIMIT, price=60_600.0, trigger=60_500.0)
        await until(lambda: waiting.status is OrderStatus.ACCEPTED and raced.status is OrderStatus.ACCEPTED)
        h.kernel.execution.cancel(CancelOrder("s1", IID, waiting.client_order_id, 0, 0))  # waiting: cancel-algos
        await until(lambda: waiting.status is OrderStatus.CANCELED)
        s.trade(60_700.0)  # triggers ``raced``; above its limit, the limit order it placed rests unfilled
        await until(lambda: raced.status is OrderStatus.TRIGGERED)
        h.kernel.execution.cancel(CancelOrder("s1", IID, raced.client_order_id, 0, 0))  # the order it became: cancel-order by ordId
        await until(lambda: raced.status is OrderStatus.CANCELED)
        await h.venue.drain()
        emu = h.emulator
        assert emu.algo_states == {waiting.client_order_id: "canceled", raced.client_order_id: "effective"}
        assert emu.orders[raced.client_order_id].status is OrderStatus.CANCELED and not emu.open_orders()
        assert await h.venue.api.open_orders() == []
    assert s.posts("/api/v5/trade/cancel-algos") == [str(emu.algo_ids[waiting.client_order_id])]  # by its algoId
    assert s.posts("/api/v5/trade/cancel-order") == [""]  # by the ordId of the order the stop placed


async def test_a_spot_stop_whose_trigger_the_market_already_passed_is_refused_by_okx() -> None:
    async with kit_harness(OKX) as h:
        s = KitTape(h, IID, T0, size=100.0)
        s.trade(60_000.0)
        stop = s.submit(OrderSide.BUY, 0.001, OrderType.STOP_MARKET, trigger=59_500.0)  # a buy stop below the last price
        await until(lambda: stop.status is OrderStatus.REJECTED)
    assert "51278" in stop.reason and stop.client_order_id not in h.emulator.orders


# ---------------------------------------------------------------------- swap, live


async def test_a_swap_stop_loss_of_a_long_triggers_on_the_fall_and_flattens_the_position() -> None:
    async with kit_harness(OKX_SWAP) as h:
        s = KitTape(h, SWAP_IID, T0, size=100.0)
        s.trade(65_000.0)
        await s.fill(OrderSide.BUY, 3.0, 65_000.0)
        stop = s.submit(OrderSide.SELL, 3.0, OrderType.STOP_MARKET, trigger=64_000.0, reduce_only=True)
        await until(lambda: stop.status is OrderStatus.ACCEPTED)
        s.trade(64_500.0)
        s.trade(63_900.0)
        await until(lambda: stop.status is OrderStatus.FILLED)
        await h.venue.drain()
        assert h.emulator.position("BTC-USDT-SWAP") == pytest.approx(0.0, abs=1e-12)
        assert h.kernel.portfolio.position(SWAP_IID) == pytest.approx(0.0, abs=1e-12)
        assert [f.last_px for f in h.emulator.orders[stop.client_order_id].fills] == [63_900.0]
        assert h.emulator.orders[stop.client_order_id].order.reduce_only
    assert SWAP.contract_size == 0.01


@pytest.mark.parametrize(("code", "told"), [("51000", True), ("51410", False)])
async def test_a_refused_cancel_of_a_waiting_spot_stop_keeps_the_reason_okx_gave(code: str, told: bool) -> None:
    """OKX refuses the cancel-algos of a stop not triggered (still ``live``). ``51000`` (a parameter error): the
    strategy's ``OrderCancelRejected`` names it (before: "the OKX stop is live, nothing to cancel", the venue's code
    lost). ``51410`` (an earlier cancel is being done): a pending cancel, not a refusal, so the strategy is told
    nothing (before: the code was lost with it, and the strategy was told the cancel was refused)."""
    from tradebus.adapters.common.account_emulator import RestFault
    from tradebus.engine.messages import OrderCancelRejected
    from tradebus.execution.engine import OrderTimeouts

    calm = OrderTimeouts(submit_ns=5_000_000_000, cancel_ns=10_000_000_000, retry_ns=200_000_000, check_ns=None)
    got: list[OrderCancelRejected] = []
    async with kit_harness(OKX, rest_faults=[RestFault("refuse", "POST", "/api/v5/trade/cancel-algos", code=code)],
                           timeouts=calm) as h:
        h.kernel.bus.subscribe(OrderCancelRejected, got.append)
        s = KitTape(h, IID, T0, size=100.0)
        s.trade(60_000.0)
        stop = s.submit(OrderSide.BUY, 0.001, OrderType.STOP_MARKET, trigger=70_000.0)
        await until(lambda: stop.status is OrderStatus.ACCEPTED)
        h.kernel.execution.cancel(CancelOrder("s1", IID, stop.client_order_id, 0, 0))
        await until(lambda: len(s.posts("/api/v5/trade/cancel-algos")) == 1 and h.venue.in_flight == 0)
        await h.venue.drain()
        if told:
            await until(lambda: bool(got), timeout=5.0)
            assert code in got[0].reason and "nothing to cancel" not in got[0].reason
        assert bool(got) is told
        assert stop.status is OrderStatus.ACCEPTED and h.emulator.algo_states[stop.client_order_id] == "live"


@pytest.mark.parametrize("restart", [False, True], ids=["running", "after-a-restart"])
async def test_a_triggered_spot_stop_limit_is_amended_as_the_order_it_became(restart: bool, tmp_path: Path) -> None:
    """A stop-limit buy of 0.001 (trigger 60,500, limit 60,600) triggers at a trade at 60,700: OKX places a limit buy
    at 60,600 under a new ``ordId``, which rests. Its limit moved to 60,800 (and its size to 0.002), in the same
    process or after a restart on the journal, is ``/trade/amend-order`` of that ``ordId`` (the algo order is
    ``effective``: ``/trade/amend-algos`` answers ``51000`` "no waiting algo order"); a trade at 60,750 then fills
    it, which the stop's own limit would not have reached. Before, the amend went to ``/trade/amend-algos`` and was
    refused. Moving its trigger is refused: it has triggered."""
    journal = tmp_path / "journal.sqlite"
    emu = OKX.emulator()
    one_account = VenueKit(**{**OKX.__dict__, "make_emulator": lambda *a, **k: emu})  # across both processes
    async with kit_harness(one_account, journal=journal) as h:
        s = KitTape(h, IID, T0, size=100.0)
        s.trade(60_000.0)
        stop = s.submit(OrderSide.BUY, 0.001, OrderType.STOP_LIMIT, price=60_600.0, trigger=60_500.0)
        coid = stop.client_order_id
        await until(lambda: stop.status is OrderStatus.ACCEPTED)
        s.trade(60_700.0)  # triggers it; above its limit, the limit order it placed rests unfilled
        await until(lambda: stop.status is OrderStatus.TRIGGERED)
        await h.venue.drain()
        if not restart:
            await _amend_triggered(h, s, coid)
    if restart:
        async with kit_harness(one_account, journal=journal) as h:
            stop = h.kernel.orders.order(coid)
            h.venue.track(stop)
            h.kernel.execution.resolve_unknown(coid)  # as the daemon's start does: a query
            await until(lambda: stop.status is OrderStatus.TRIGGERED and h.venue.in_flight == 0)
            await _amend_triggered(h, KitTape(h, IID, T0 + 10**9, size=100.0), coid)
    rec = emu.orders[coid]
    assert emu.algo_states[coid] == "effective" and rec.order_id != emu.algo_ids[coid]
    assert (rec.order.price, rec.order.quantity, [f.last_qty for f in rec.fills]) == (60_800.0, 0.002, [0.002])
    assert [c for m, p, c in emu.requests if p == "/api/v5/trade/amend-algos"] == []
    assert h.kernel.portfolio.position(IID) == pytest.approx(0.002)


async def _amend_triggered(h: Any, s: KitTape, coid: str) -> None:
    """Move the triggered stop ``coid``'s limit to 60,800 and its size to 0.002, see it filled at 60,750, and see
    a move of its trigger refused."""
    from tradebus.engine.messages import ModifyOrder, OrderModifyRejected

    refused: list[OrderModifyRejected] = []
    h.kernel.bus.subscribe(OrderModifyRejected, refused.append)
    stop = h.kernel.orders.order(coid)
    h.kernel.execution.modify(ModifyOrder("s1", IID, coid, 0, 0, quantity=0.002, price=60_800.0))
    await until(lambda: stop.price == 60_800.0 and h.venue.in_flight == 0, timeout=5.0)
    assert not refused
    h.kernel.execution.modify(ModifyOrder("s1", IID, coid, 0, 0, trigger_price=60_900.0))
    await until(lambda: bool(refused), timeout=5.0)
    assert "triggered" in refused[0].reason
    s.trade(60_750.0)
    await until(lambda: stop.status is OrderStatus.FILLED, timeout=5.0)
    await h.venue.drain()


async def test_a_stop_triggered_by_the_mark_or_index_price_is_refused_placed_or_amended() -> None:
    """The emulator watches stops against the public trades (``last``): a ``slTriggerPxType`` it would not honour is
    refused on ``/trade/order-algo``, and a ``newSlTriggerPxType`` on ``/trade/amend-algos`` (OKX: last, index or
    mark), never taken and then triggered on the trades as if it were the last price."""
    async with kit_harness(OKX) as h:
        s = KitTape(h, IID, T0, size=100.0)
        s.trade(60_000.0)
        api = h.venue.api
        order = Order("m1", "s", IID, OrderSide.BUY, OrderType.STOP_MARKET, 0.001, trigger_price=61_000.0)
        with pytest.raises(VenueRejected, match="51000"):
            await api.call("private_post_trade_order_algo", order_params(order, SPOT) | {"slTriggerPxType": "mark"})
        assert "m1" not in h.emulator.orders
        stop = s.submit(OrderSide.BUY, 0.001, OrderType.STOP_MARKET, trigger=61_000.0)
        await until(lambda: stop.status is OrderStatus.ACCEPTED)
        amend = {"instId": "BTC-USDT", "algoClOrdId": stop.client_order_id, "newSlTriggerPx": "61500.0"}
        with pytest.raises(VenueRejected, match="51000"):
            await api.call("private_post_trade_amend_algos", amend | {"newSlTriggerPxType": "index"})
        assert h.emulator.orders[stop.client_order_id].order.trigger_price == 61_000.0  # the refused amend changed nothing
        await api.call("private_post_trade_amend_algos", amend | {"newSlTriggerPxType": "last"})
        assert h.emulator.orders[stop.client_order_id].order.trigger_price == 61_500.0
