"""Native stops on Binance USD-M (conditional orders of the Algo Service) against the local futures account emulator.

The algo-order parameters are checked against Binance's documented ``POST /fapi/v1/algoOrder``
parameters written out by hand; the emulator triggers a stop as Binance documents a
``STOP_MARKET``/``STOP`` (a buy when the working price rises to ``triggerPrice``, a sell when it
falls to it; the last trade for ``CONTRACT_PRICE``, the mark price for ``MARK_PRICE``), never by
what tradebus expects. Once triggered, the order Binance places has a new ``orderId``; its fills
are the stop's. Each live test checks the emulated account (its orders, fills and requests) as
well as what the kernel booked.
"""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

import pytest
from loguru import logger
from pydantic import SecretStr

from tests.live.live_harness import KEY, SECRET, WAIT, stepping_budget, until, usdm_harness
from tests.live.node_testdata import USDM_IID, USDM_INSTRUMENT
from tests.live.venue_kits import KIT_ANSWERED, KitTape, VenueKit, kit_harness
from tradebus.adapters.binance.private_emulator import BinanceFuturesEmulator
from tradebus.adapters.binance.trading import FUTURES_WEIGHT_LIMIT, WEIGHT_HEADER, BinanceFuturesTrading, algo_order_params
from tradebus.adapters.binance.user_stream import FuturesStreamParser
from tradebus.adapters.common.account_emulator import RestFault, StreamFault
from tradebus.engine.instrument import Instrument, InstrumentKind
from tradebus.engine.messages import (
    CancelOrder,
    ModifyOrder,
    OrderAccepted,
    OrderCanceled,
    OrderCancelRejected,
    OrderFilled,
    OrderModifyRejected,
    OrderReplaced,
    OrderSide,
    OrderStatus,
    OrderTriggered,
    OrderType,
    SubmitOrder,
    Trade,
)
from tradebus.execution.contingent import ContingentOrders
from tradebus.execution.engine import OrderTimeouts
from tradebus.execution.live import VenueRejected
from tradebus.execution.orders import Order

INST = Instrument(**{**USDM_INSTRUMENT, "kind": InstrumentKind.PERPETUAL})
SYMBOL = "BTCUSDT"
T0 = 1_786_310_819_680_000_000
ALGO = "/fapi/v1/algoOrder"
USDM = VenueKit(
    venue="binance", iid=USDM_IID, instrument=USDM_INSTRUMENT, frames=[], channels=["trade"], base="BTC",
    make_emulator=BinanceFuturesEmulator, make_protocol=lambda frames, account: None,  # type: ignore[arg-type,return-value]
    env={}, place_path="/fapi/v1/order", fill_frame='"x": "TRADE"', market="perpetual", feed_market="usdm",
)


# ---------------------------------------------------------------------- mapping and parsing


def test_stops_are_conditional_algo_orders_triggered_by_the_contract_price() -> None:
    stop = Order("c1", "s", USDM_IID, OrderSide.SELL, OrderType.STOP_MARKET, 0.0129, trigger_price=58_999.96, reduce_only=True)
    assert algo_order_params(stop, INST) == {
        "algoType": "CONDITIONAL", "symbol": "BTCUSDT", "side": "SELL", "positionSide": "BOTH", "type": "STOP_MARKET",
        "quantity": "0.012", "triggerPrice": "59000.0", "workingType": "CONTRACT_PRICE", "clientAlgoId": "c1", "reduceOnly": "true",
    }
    limit = Order("c2", "s", USDM_IID, OrderSide.BUY, OrderType.STOP_LIMIT, 0.001, 61_000.04, 60_500.0)
    assert algo_order_params(limit, INST) == {
        "algoType": "CONDITIONAL", "symbol": "BTCUSDT", "side": "BUY", "positionSide": "BOTH", "type": "STOP",
        "quantity": "0.001", "triggerPrice": "60500.0", "workingType": "CONTRACT_PRICE", "clientAlgoId": "c2",
        "price": "61000.0", "timeInForce": "GTC",
    }
    with pytest.raises(VenueRejected, match="trigger price nan"):
        algo_order_params(Order("c3", "s", USDM_IID, OrderSide.SELL, OrderType.STOP_MARKET, 0.001), INST)


def _algo_update(status: str, **o: Any) -> str:
    """An ``ALGO_UPDATE`` with the fields of Binance's documented example."""
    data = {"caid": "client1", "aid": 2148719, "at": "CONDITIONAL", "o": "STOP_MARKET", "s": "BTCUSDT", "S": "SELL", "ps": "BOTH",
            "f": "GTC", "q": "0.01", "X": status, "ai": "", "ap": "0.00000", "aq": "0.00000", "act": "0", "tp": "30000", "p": "0",
            "V": "EXPIRE_MAKER", "wt": "CONTRACT_PRICE", "pm": "NONE", "cp": False, "pP": False, "R": False, "tt": 0, "gtd": 0} | o
    return json.dumps({"e": "ALGO_UPDATE", "T": 1750515742297, "E": 1750515742303, "o": data})


def test_algo_updates_and_the_placed_order_map_back_to_the_stop() -> None:
    order = Order("client1", "s1", USDM_IID, OrderSide.SELL, OrderType.STOP_MARKET, 0.01, trigger_price=30_000.0)
    order.status = OrderStatus.SUBMITTED
    parser = FuturesStreamParser({USDM_IID: INST}, {"client1": order}.get, clock_ns=lambda: 7)
    assert parser.parse(_algo_update("NEW")) == [OrderAccepted("s1", USDM_IID, "client1", "2148719", 1750515742297 * 1_000_000, 7)]
    order.status = OrderStatus.ACCEPTED
    assert parser.parse(_algo_update("TRIGGERED", ai="88937381063", tt=1750515742290)) == [
        OrderTriggered("s1", USDM_IID, "client1", 1750515742290 * 1_000_000, 7)
    ]
    order.status = OrderStatus.TRIGGERED
    # the placed order, under a client id this process did not give it: mapped by its orderId (``ai``)
    trade = {"s": "BTCUSDT", "c": "autoclose-x", "S": "SELL", "o": "MARKET", "f": "GTC", "q": "0.01", "p": "0", "ap": "29990",
             "sp": "0", "x": "TRADE", "X": "FILLED", "i": 88937381063, "l": "0.01", "z": "0.01", "L": "29990", "N": "USDT",
             "n": "0.11996", "T": 1750515742300, "t": 77, "b": "0", "a": "0", "m": False, "R": False, "wt": "CONTRACT_PRICE",
             "ot": "STOP_MARKET", "ps": "BOTH", "cp": False, "rp": "0"}
    [fill] = parser.parse(json.dumps({"e": "ORDER_TRADE_UPDATE", "E": 1750515742301, "T": 1750515742300, "o": trade}))
    assert isinstance(fill, OrderFilled)
    assert (fill.client_order_id, fill.venue_order_id, fill.trade_id, fill.last_qty, fill.last_px) == ("client1", "88937381063", "77", 0.01, 29_990.0)
    assert parser.parse(_algo_update("FINISHED", ai="88937381063")) == []
    [failed] = parser.parse(_algo_update("REJECTED", rm="Reduce Only reject"))
    assert isinstance(failed, OrderCanceled) and failed.reason == "the triggered order was rejected by Binance: Reduce Only reject"


# ---------------------------------------------------------------------- live, against the emulator


def _trigger_of(emu: BinanceFuturesEmulator, coid: str) -> float:
    algo = emu.algos.get(coid)
    return algo.trigger_price if algo is not None and algo.status == "NEW" else math.nan


async def test_a_stop_loss_of_a_long_waits_then_triggers_fills_and_is_booked_once() -> None:
    async with kit_harness(USDM) as h:
        s = KitTape(h, USDM_IID, T0, size=100.0)
        s.trade(60_000.0)
        await s.fill(OrderSide.BUY, 0.01, 60_000.0)
        stop = s.submit(OrderSide.SELL, 0.01, OrderType.STOP_MARKET, trigger=59_000.0, reduce_only=True)
        await until(lambda: stop.status is OrderStatus.ACCEPTED)
        emu: BinanceFuturesEmulator = h.emulator  # type: ignore[assignment]
        algo = emu.algos[stop.client_order_id]
        assert stop.venue_order_id == str(algo.algo_id) and algo.status == "NEW"
        assert await h.venue.api.open_orders() == [await h.venue.api.query(stop)]  # listed among the algo orders
        s.trade(59_500.0)  # above the trigger: nothing
        await h.venue.drain()
        assert stop.status is OrderStatus.ACCEPTED and not emu.orders[stop.client_order_id].fills
        s.trade(58_900.0)  # falls through it: triggers, and that trade fills the market order it placed
        await until(lambda: stop.status is OrderStatus.FILLED)
        await h.venue.drain()
        rec = emu.orders[stop.client_order_id]
        assert algo.status == "FINISHED" and algo.actual_id == rec.order_id != algo.algo_id
        report = await h.venue.api.query(stop)  # the algo order, then the order it placed and its fills
        assert report is not None
        assert (report.client_order_id, report.venue_order_id, report.status, report.filled_qty) == (
            stop.client_order_id, str(algo.algo_id), OrderStatus.FILLED, 0.01,
        )
        assert [(f.trade_id, f.venue_order_id, f.last_px) for f in report.fills] == [(str(emu.fills[-1].trade_id), str(algo.algo_id), 58_900.0)]
        since = await h.venue.api.fills_since(USDM_IID, {stop.venue_order_id: stop}, T0)  # the reconciliation's trade history
        assert [(f.client_order_id, f.venue_order_id, f.trade_id) for f in since] == [
            (stop.client_order_id, str(algo.algo_id), str(emu.fills[-1].trade_id))
        ]
        assert await h.venue.api.open_orders() == []
    assert [t.client_order_id for t in s.triggered] == [stop.client_order_id]
    assert stop.avg_px == 58_900.0 and h.kernel.portfolio.position(USDM_IID) == pytest.approx(0.0, abs=1e-12)
    assert emu.position(SYMBOL) == pytest.approx(0.0, abs=1e-12) and rec.order.reduce_only
    assert [f.client_order_id for f in h.kernel.result.fills].count(stop.client_order_id) == 1
    assert s.posts(ALGO) == [stop.client_order_id] and stop.client_order_id not in s.posts("/fapi/v1/order")


async def test_a_trailing_stop_moved_twice_is_cancel_replaced_on_the_algo_service() -> None:
    """Long 0.01 BTC at 60,000; a trailing sell stop 500 below: 59,500. Trades at 61,000 and 62,000
    move its trigger to 60,500 and 61,500, each by a cancel of the waiting algo order and a new one
    (the Algo Service has no amend); 61,400 triggers the last and sells at 61,400 (no submit or cancel timeout:
    an answer later than one would add a query, and a stop placed again while its cancel waits)."""
    async with kit_harness(USDM, timeouts=KIT_ANSWERED, request_timeout=WAIT) as h:
        s = KitTape(h, USDM_IID, T0, size=100.0)
        contingent = ContingentOrders(h.kernel)
        s.trade(60_000.0)
        await s.fill(OrderSide.BUY, 0.01, 60_000.0)
        first = contingent.trailing_stop("s1", USDM_IID, OrderSide.SELL, 0.01, offset=500.0, reduce_only=True)
        emu: BinanceFuturesEmulator = h.emulator  # type: ignore[assignment]
        await until(lambda: _trigger_of(emu, first) == 59_500.0)
        await until(lambda: h.kernel.orders.order(first).status is OrderStatus.ACCEPTED)  # a trade moves only a working stop
        coids = [first]
        for price, trigger in ((61_000.0, 60_500.0), (62_000.0, 61_500.0)):
            s.trade(price)
            await until(lambda: any(_trigger_of(emu, c) == trigger for c in emu.algos))  # noqa: B023
            [new] = [c for c, a in emu.algos.items() if a.status == "NEW"]
            coids.append(new)
            await until(lambda: h.kernel.orders.order(new).status is OrderStatus.ACCEPTED)  # noqa: B023
        s.trade(61_400.0)
        last = h.kernel.orders.order(coids[-1])
        await until(lambda: last.status is OrderStatus.FILLED)
        await h.venue.drain()
    assert len(set(coids)) == 3 and [emu.algos[c].status for c in coids] == ["CANCELED", "CANCELED", "FINISHED"]
    assert [h.kernel.orders.order(c).status for c in coids] == [OrderStatus.CANCELED, OrderStatus.CANCELED, OrderStatus.FILLED]
    assert [emu.algos[c].trigger_price for c in coids] == [59_500.0, 60_500.0, 61_500.0]
    assert s.posts(ALGO) == coids and [c for m, p, c in emu.requests if m == "DELETE" and p == ALGO] == coids[:2]
    assert h.venue.requests["replace"] == 2
    assert [f.last_px for f in emu.orders[coids[-1]].fills] == [61_400.0] and len(emu.fills) == 2
    assert h.kernel.portfolio.position(USDM_IID) == pytest.approx(0.0, abs=1e-12)


async def test_a_trailing_stops_move_due_while_its_cancel_replace_is_unanswered_is_sent_once_it_is_answered() -> None:
    """Long 0.01 BTC at 60,000; a trailing sell stop 500 below: 59,500. 61,000 moves it to 60,500 (DELETE, then
    POST of the replacement, which the venue holds unanswered: an answer seen 1.1 s late live); 62,000 comes
    meanwhile, 61,500 due. Once the POST is answered, one more cancel-replace moves the replacement to 61,500
    (never two at once, no modify of the order being replaced), and 61,400 sells at 61,400. The move went to the
    order being replaced, refused: the replacement stayed at 60,500, and 61,400, below 61,500, could no longer
    move it (Binance refuses a stop the market has reached)."""
    release = asyncio.Event()
    held = RestFault("hold", "POST", ALGO, at=1, release=release)  # the first POST places the stop
    async with kit_harness(USDM, rest_faults=[held], timeouts=KIT_ANSWERED, request_timeout=WAIT) as h:
        s = KitTape(h, USDM_IID, T0, size=100.0)
        contingent = ContingentOrders(h.kernel)
        refused: list[OrderModifyRejected] = []
        h.kernel.bus.subscribe(OrderModifyRejected, refused.append)
        s.trade(60_000.0)
        await s.fill(OrderSide.BUY, 0.01, 60_000.0)
        first = contingent.trailing_stop("s1", USDM_IID, OrderSide.SELL, 0.01, offset=500.0, reduce_only=True)
        await until(lambda: h.kernel.orders.order(first).status is OrderStatus.ACCEPTED)
        s.trade(61_000.0)
        await until(lambda: held.fired)  # the replacement's POST reached the venue, unanswered
        s.trade(62_000.0)
        release.set()
        emu: BinanceFuturesEmulator = h.emulator  # type: ignore[assignment]
        # Both cancel-replaces done: the stop the kernel holds works and nothing is on its way.
        await until(lambda: h.venue.in_flight == 0 and [o.status for o in h.kernel.orders.open_orders()] == [OrderStatus.ACCEPTED])
        coids = s.posts(ALGO)
        assert [emu.algos[c].trigger_price for c in coids] == [59_500.0, 60_500.0, 61_500.0]
        [working] = h.kernel.orders.open_orders()
        assert working.client_order_id == coids[-1] and working.trigger_price == 61_500.0
        s.trade(61_400.0)
        await until(lambda: working.status is OrderStatus.FILLED)
        await h.venue.drain()
    assert [emu.algos[c].status for c in coids] == ["CANCELED", "CANCELED", "FINISHED"]
    # one cancel-replace after the other: the second's DELETE follows the first's POST
    assert [(m, c) for m, p, c in emu.requests if p == ALGO] == [
        ("POST", coids[0]), ("DELETE", coids[0]), ("POST", coids[1]), ("DELETE", coids[1]), ("POST", coids[2])
    ]
    assert h.venue.requests["replace"] == 2 and refused == []
    assert [f.last_px for f in emu.orders[coids[-1]].fills] == [61_400.0]
    assert h.kernel.portfolio.position(USDM_IID) == pytest.approx(0.0, abs=1e-12)


async def test_a_waiting_stop_and_one_already_triggered_are_both_canceled() -> None:
    async with kit_harness(USDM) as h:
        s = KitTape(h, USDM_IID, T0, size=100.0)
        s.trade(60_000.0)
        waiting = s.submit(OrderSide.BUY, 0.001, OrderType.STOP_LIMIT, price=70_100.0, trigger=70_000.0)
        raced = s.submit(OrderSide.BUY, 0.001, OrderType.STOP_LIMIT, price=60_600.0, trigger=60_500.0)
        await until(lambda: waiting.status is OrderStatus.ACCEPTED and raced.status is OrderStatus.ACCEPTED)
        h.kernel.execution.cancel(CancelOrder("s1", USDM_IID, waiting.client_order_id, 0, 0))  # waiting: DELETE algoOrder
        await until(lambda: waiting.status is OrderStatus.CANCELED)
        s.trade(60_700.0)  # triggers ``raced``; above its limit, the limit order it placed rests unfilled
        await until(lambda: raced.status is OrderStatus.TRIGGERED)
        h.kernel.execution.cancel(CancelOrder("s1", USDM_IID, raced.client_order_id, 0, 0))  # the order it placed: DELETE order
        await until(lambda: raced.status is OrderStatus.CANCELED)
        await h.venue.drain()
        emu: BinanceFuturesEmulator = h.emulator  # type: ignore[assignment]
        assert {c: a.status for c, a in emu.algos.items()} == {waiting.client_order_id: "CANCELED", raced.client_order_id: "FINISHED"}
        assert emu.orders[raced.client_order_id].status is OrderStatus.CANCELED and not emu.fills
        assert await h.venue.api.open_orders() == []
    deletes = [(p, c) for m, p, c in emu.requests if m == "DELETE"]
    assert deletes == [(ALGO, waiting.client_order_id), ("/fapi/v1/order", "")]  # the stop by clientAlgoId, the placed order by its orderId


async def test_a_stop_the_market_already_reached_is_refused_by_binance() -> None:
    async with kit_harness(USDM) as h:
        s = KitTape(h, USDM_IID, T0, size=100.0)
        s.trade(60_000.0)
        stop = s.submit(OrderSide.BUY, 0.001, OrderType.STOP_MARKET, trigger=59_500.0)  # a buy stop below the last price
        await until(lambda: stop.status is OrderStatus.REJECTED)
    assert "-2021" in stop.reason and stop.client_order_id not in h.emulator.orders


async def test_a_mark_price_stop_triggers_on_the_mark_not_on_trades() -> None:
    """``workingType=MARK_PRICE`` (sent by hand: tradebus's stops work on the contract price)."""
    async with BinanceFuturesEmulator(KEY, SECRET, {USDM_IID: INST}, {"USDT": 10_000.0}) as emu:
        api = BinanceFuturesTrading(emu.rest_url, SecretStr(KEY), SecretStr(SECRET), {USDM_IID: INST}, 2.0)
        try:
            emu.on_trade(Trade(USDM_IID, T0, T0, 60_000.0, 1.0, 1, "t1"))
            emu.on_mark_price(USDM_IID, 60_010.0, T0)
            order = Order("m1", "", USDM_IID, OrderSide.SELL, OrderType.STOP_MARKET, 0.001, trigger_price=59_000.0)
            params = algo_order_params(order, INST) | {"workingType": "MARK_PRICE"}
            with pytest.raises(VenueRejected, match="-2021"):  # the mark is already at or below it
                await api._call("fapiprivate_post_algoorder", params | {"triggerPrice": "60010.0", "clientAlgoId": "m0"})
            await api._call("fapiprivate_post_algoorder", params)
            emu.on_trade(Trade(USDM_IID, T0 + 1, T0 + 1, 58_000.0, 1.0, 1, "t2"))  # the last price passes it: not the mark
            assert emu.algos["m1"].status == "NEW"
            emu.on_mark_price(USDM_IID, 58_990.0, T0 + 2)
            assert emu.algos["m1"].status == "TRIGGERED" and emu.orders["m1"].order.order_type is OrderType.MARKET
            emu.on_trade(Trade(USDM_IID, T0 + 3, T0 + 3, 58_950.0, 1.0, 1, "t3"))  # the market order fills at the next trade
            assert emu.algos["m1"].status == "FINISHED" and [f.last_px for f in emu.orders["m1"].fills] == [58_950.0]
        finally:
            await api.close()


async def test_a_restart_with_a_waiting_stop_resolves_it_from_the_open_algo_orders_and_it_still_triggers(tmp_path: Any) -> None:
    from tradebus.node.reconcile import Reconciler

    journal = tmp_path / "journal.sqlite"
    emu = BinanceFuturesEmulator(KEY, SECRET, {USDM_IID: INST}, {"USDT": 100_000.0})
    kit = VenueKit(**{**USDM.__dict__, "make_emulator": lambda *a, **k: emu})  # one account across both processes
    async with kit_harness(kit, journal=journal) as h:
        s = KitTape(h, USDM_IID, T0, size=100.0)
        s.trade(60_000.0)
        await s.fill(OrderSide.BUY, 0.01, 60_000.0)
        now = h.kernel.clock.now_ns()  # the reconciliation reads the trade history from the order's creation on
        stop = h.kernel.execution.submit(
            SubmitOrder("s1", USDM_IID, "", OrderSide.SELL, 0.01, now, now, OrderType.STOP_MARKET, math.nan, 59_000.0, reduce_only=True)
        )
        await until(lambda: stop.status is OrderStatus.ACCEPTED)
        coid, algo_id = stop.client_order_id, stop.venue_order_id
    async with kit_harness(kit, journal=journal) as h:  # a new process on the same journal
        again = h.kernel.orders.order(coid)
        assert again.status is OrderStatus.UNKNOWN and again.venue_order_id == algo_id
        h.venue.track(again)
        reconciler = Reconciler(h.kernel, h.venue, lambda iid, why: None, 2.0)
        await reconciler.startup([again], await h.venue.api.open_orders())
        await until(lambda: again.status is OrderStatus.ACCEPTED)
        assert reconciler.external == [] and h.venue.requests["query"] == 0  # resolved from the open algo orders
        s = KitTape(h, USDM_IID, T0 + 10_000_000, size=100.0)
        s.trade(58_800.0)
        await until(lambda: again.status is OrderStatus.FILLED)
        await h.venue.drain()
        assert h.kernel.portfolio.position(USDM_IID) == pytest.approx(0.0, abs=1e-12)
    assert [f.last_px for f in emu.orders[coid].fills] == [58_800.0]
    assert emu.position(SYMBOL) == pytest.approx(0.0, abs=1e-12) and s.posts(ALGO) == [coid]


async def test_a_stop_whose_replacement_is_held_by_a_full_weight_window_after_its_cancel_is_placed_late_not_lost() -> None:
    """Long 0.01 BTC, a sell stop at 59,000 moved to 59,500: its DELETE's answer shows the minute's weight used
    up (2,401 of 2,400), so the replacement's POST waits ~60 s for the next window, far past its submit timeout.
    The stop is already canceled: the replacement was withdrawn (and so was the stop placed again as it was),
    the position left without a stop. It waits the window out, logged at WARNING, and the stop works."""
    resume = asyncio.Event()
    warnings: list[Any] = []
    sink = logger.add(warnings.append, level="WARNING")
    try:
        # The stream's CANCELED frame held back until the next frame (the replacement's, sent after the DELETE's
        # answer): a replacement sent on that frame before the answer was read could not know the minute was used up.
        late_cancel = StreamFault("reorder", '"X": "CANCELED"')
        async with usdm_harness([late_cancel], timeout=WAIT, budget=stepping_budget(FUTURES_WEIGHT_LIMIT, WEIGHT_HEADER, resume)) as h:
            replaced: list[OrderReplaced] = []
            h.kernel.bus.subscribe(OrderReplaced, replaced.append)
            buy = h.submit(OrderSide.BUY, 0.01)
            await until(lambda: buy.status is OrderStatus.ACCEPTED)
            h.trade(60_000.0)
            await until(lambda: buy.status is OrderStatus.FILLED)
            stop = h.kernel.execution.submit(
                SubmitOrder("s1", USDM_IID, "", OrderSide.SELL, 0.01, 0, 0, OrderType.STOP_MARKET, math.nan, 59_000.0, reduce_only=True)
            )
            await until(lambda: stop.status is OrderStatus.ACCEPTED)
            emu: BinanceFuturesEmulator = h.emulator  # type: ignore[assignment]
            budget = h.venue.api.budget  # type: ignore[attr-defined]
            emu.weight = FUTURES_WEIGHT_LIMIT  # the DELETE's answer tells the minute used up
            h.kernel.execution.modify(ModifyOrder("s1", USDM_IID, stop.client_order_id, 0, 0, trigger_price=59_500.0))
            await until(lambda: budget.waits >= 1)  # the replacement's POST waits for the next window
            assert [o.reason for o in h.kernel.orders.orders() if o.status is OrderStatus.REJECTED] == []
            assert emu.algos[stop.client_order_id].status == "CANCELED" and _algo_posts(emu) == [stop.client_order_id]
            emu.weight = 0
            resume.set()  # the next window
            await until(lambda: len(replaced) == 1)
            new = h.kernel.orders.order(replaced[0].replacement_id)
            await until(lambda: new.status is OrderStatus.ACCEPTED and stop.status is OrderStatus.CANCELED)
            assert _trigger_of(emu, new.client_order_id) == 59_500.0
            assert late_cancel.fired
            h.trade(59_400.0)  # through the moved stop
            await until(lambda: new.status is OrderStatus.FILLED)
            await h.venue.drain()
    finally:
        logger.remove(sink)
    assert _algo_posts(emu) == [stop.client_order_id, new.client_order_id] and len(h.kernel.orders.orders()) == 3
    assert h.kernel.portfolio.position(USDM_IID) == pytest.approx(0.0, abs=1e-12) and emu.position(SYMBOL) == pytest.approx(0.0, abs=1e-12)
    [held] = [r.record for r in warnings if "never withdrawn" in r.record["message"]]
    assert stop.client_order_id in held["message"] and "request budget used (2401 + 0 over 1920)" in held["message"]


def _algo_posts(emu: BinanceFuturesEmulator) -> list[str]:
    """The client ids of the algo orders placed, in order."""
    return [c for m, p, c in emu.requests if (m, p) == ("POST", ALGO)]


def test_the_parser_forgets_the_placed_orders_of_stops_the_venue_forgot() -> None:
    """The USD-M parser mapped the order every triggered stop placed to its stop for as long as the daemon ran.
    Those of stops the live venue forgot (closed and released, ``lookup`` is ``None``) are dropped."""
    orders: dict[str, Order] = {}
    parser = FuturesStreamParser({USDM_IID: INST}, orders.get, clock_ns=lambda: 7)
    for n in range(2_000):
        coid = f"stop{n}"
        orders[coid] = Order(coid, "s1", USDM_IID, OrderSide.SELL, OrderType.STOP_MARKET, 0.01, trigger_price=30_000.0)
        orders[coid].status = OrderStatus.ACCEPTED
        parser.parse(_algo_update("TRIGGERED", caid=coid, ai=str(1_000_000 + n), tt=1750515742290))
        orders.pop(f"stop{n - 10}", None)  # the venue forgets a stop once it closed and was released
    assert len(parser.placed_by) <= 512, f"{len(parser.placed_by)} placed orders of 2000 triggered stops kept"
    assert {parser.placed_by.get(str(1_000_000 + n)) for n in range(1_990, 2_000)} == {f"stop{n}" for n in range(1_990, 2_000)}


async def test_a_refused_cancel_of_a_waiting_stop_keeps_the_reason_binance_gave() -> None:
    """Binance refuses the ``DELETE /fapi/v1/algoOrder`` of a stop not triggered (its algo order still ``NEW``), with
    ``-1102`` (a parameter error). The strategy's ``OrderCancelRejected`` names Binance's refusal (before: "the Binance
    stop is NEW, nothing to cancel", the venue's code lost); the stop works on."""
    calm = OrderTimeouts(submit_ns=5_000_000_000, cancel_ns=10_000_000_000, retry_ns=200_000_000, check_ns=None)
    got: list[OrderCancelRejected] = []
    async with kit_harness(USDM, rest_faults=[RestFault("refuse", "DELETE", ALGO, code="-1102")], timeouts=calm) as h:
        h.kernel.bus.subscribe(OrderCancelRejected, got.append)
        s = KitTape(h, USDM_IID, T0, size=100.0)
        s.trade(60_000.0)
        stop = s.submit(OrderSide.BUY, 0.001, OrderType.STOP_MARKET, trigger=70_000.0)
        await until(lambda: stop.status is OrderStatus.ACCEPTED)
        h.kernel.execution.cancel(CancelOrder("s1", USDM_IID, stop.client_order_id, 0, 0))
        await until(lambda: bool(got), timeout=5.0)
        await h.venue.drain()
        emu: BinanceFuturesEmulator = h.emulator  # type: ignore[assignment]
        assert "-1102" in got[0].reason and "nothing to cancel" not in got[0].reason
        assert stop.status is OrderStatus.ACCEPTED and emu.algos[stop.client_order_id].status == "NEW"
