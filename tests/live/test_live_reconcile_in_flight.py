"""The periodic holding comparison while the daemon's own orders are working (Binance USD-M).

A venue's position is read by REST; the daemon's fills arrive on the user stream. An order of
the daemon that fills at the venue moves the venue's position before its fill reaches the
daemon, so for a while the two differ by the order's quantity. Found twice in a row (a strategy
flipping its position keeps an order in flight at most rounds), that difference must not stop
the instrument: it is what the orders in flight can explain. A difference larger than that
still does.

The user stream's fill frame is delayed by the emulator's stream fault, so the daemon's market
order has filled at the venue and not here while the rounds run. A resting order explains
nothing: the round's order comparison queries one the venue filled, and a market maker's
quotes, always there, would otherwise hide any mismatch.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from loguru import logger
from pydantic import SecretStr

from tests.live.live_harness import KEY, SECRET, until
from tests.live.node_testdata import USDM_CAPTURE, USDM_IID, USDM_INSTRUMENT
from tradebus.adapters.binance.emulator import split_capture
from tradebus.adapters.binance.private_emulator import BinanceFuturesEmulator, MatchingProtocol, RestFault, StreamFault
from tradebus.adapters.binance.trading import BinanceFuturesTrading
from tradebus.adapters.common.local_server import LocalVenueServer
from tradebus.adapters.common.recorder import iter_hftbacktest
from tradebus.engine.instrument import Instrument, InstrumentKind
from tradebus.engine.messages import OrderSide, OrderStatus, OrderType, SubmitOrder, Trade
from tradebus.execution.orders import Order
from tradebus.node.live import ApiKeys, LiveNode, parse_live_config

FRAMES, SNAPSHOT = split_capture(list(iter_hftbacktest(USDM_CAPTURE)))
#: The first trades of the capture: marks, too few for the strategy's EMAs (it places nothing itself).
TRADES = [(t, raw) for t, raw in FRAMES if "@trade" in raw][:20]
INST = Instrument(**{**USDM_INSTRUMENT, "kind": InstrumentKind.PERPETUAL})
#: The fill frame's delay: longer than the test's rounds take.
DELAY = 4.0


def _config(ws_url: str, emulator: BinanceFuturesEmulator) -> dict[str, Any]:
    return {
        "instruments": [USDM_INSTRUMENT],
        "strategy": {
            "name": "tradebus.strategies.tick_ema:TickEmaCross",
            "instruments": [USDM_IID],
            "params": {"fast": 2, "slow": 1000, "quantity": 0.01, "mode": "long_short"},
        },
        "venue": {"fill_on": "trades"},
        "feeds": [{"venue": "binance", "market": "usdm", "ws_url": ws_url, "subscriptions": {USDM_IID: ["trade"]}}],
        "warm_up": False,
        "initial_cash": 10_000.0,
        "live": {
            "market": "perpetual",
            "rest_url": emulator.rest_url,
            "ws_api_url": emulator.ws_url,
            "request_timeout": 3.0,
            "submit_timeout": 3.0,
            "reconcile_interval": None,  # the test runs the rounds itself
        },
    }


@asynccontextmanager
async def _node(faults: list[StreamFault]) -> AsyncIterator[tuple[LiveNode, BinanceFuturesEmulator]]:
    emulator = BinanceFuturesEmulator(KEY, SECRET, {USDM_IID: INST}, {"USDT": 10_000.0}, stream_faults=faults)
    async with emulator:
        protocol = MatchingProtocol(SNAPSHOT, futures=True, account=emulator, instrument_ids={"btcusdt": USDM_IID})  # type: ignore[arg-type]
        async with LocalVenueServer(protocol, TRADES) as srv:
            node = LiveNode(parse_live_config(_config(srv.ws_url, emulator), "<test>"), ApiKeys(SecretStr(KEY), SecretStr(SECRET)),
                            handle_signals=False)
            task = asyncio.create_task(node.run())
            try:
                await until(lambda: task.done() or (node.running.is_set() and node.kernel.result.trades == len(TRADES)
                                                    and node._startup_task is not None and node._startup_task.done()), timeout=20)
                assert not task.done() and not node.guard.holds
                yield node, emulator
            finally:
                node.stop("test done")
                await asyncio.wait_for(task, 20)


def _lost(client_order_id: str) -> StreamFault:
    """The user stream loses the fill of an order placed by hand (the daemon would book it otherwise)."""
    return StreamFault("drop", f'"c": "{client_order_id}"', at=1)  # its second frame: NEW, then the fill


def _fill_at_venue(emulator: BinanceFuturesEmulator, price: float) -> None:
    last = emulator.clock.now_ns() + 10**6
    emulator.on_trade(Trade(USDM_IID, last, last, price, 1.0, -1, f"after-{last}"))


async def _rounds(node: LiveNode, n: int) -> None:
    for _ in range(n):
        await node.reconciler.compare_balances(startup=False)


@pytest.mark.slow
async def test_a_market_order_filled_at_the_venue_and_not_yet_here_does_not_stop_the_instrument_a_larger_difference_does() -> None:
    # the first fill frame (the daemon's market order's) is delayed; the trade by hand's never arrives
    faults = [StreamFault("delay", '"x": "TRADE"', seconds=DELAY), _lost("byhand1")]
    async with _node(faults) as (node, emulator):
        now = node.clock.now_ns()
        own = node.kernel.execution.submit(SubmitOrder("TickEmaCross", USDM_IID, "", OrderSide.BUY, 0.002, now, now, OrderType.MARKET))
        await until(lambda: own.status is OrderStatus.ACCEPTED)  # the emulator fills it at the next public trade
        _fill_at_venue(emulator, 28_000.0)
        assert emulator.position("BTCUSDT") == pytest.approx(0.002)
        await _rounds(node, 3)
        assert own.status is OrderStatus.ACCEPTED and node.kernel.portfolio.position(USDM_IID) == 0.0  # still in flight here
        assert not node.guard.holds, node.guard.holds  # 0.002 apart, all of it the market order's

        # the fill arrives: both agree
        await until(lambda: own.status is OrderStatus.FILLED, timeout=DELAY + 3)
        await _rounds(node, 2)
        assert not node.guard.holds

        # a trade by hand at the venue, larger than the order in flight here: held after two rounds
        again = node.kernel.execution.submit(SubmitOrder("TickEmaCross", USDM_IID, "", OrderSide.BUY, 0.001, now, now, OrderType.MARKET))
        await until(lambda: again.status is OrderStatus.ACCEPTED)
        manual = BinanceFuturesTrading(emulator.rest_url, SecretStr(KEY), SecretStr(SECRET), {USDM_IID: INST}, 2.0)
        await manual.place(Order("byhand1", "", USDM_IID, OrderSide.BUY, OrderType.MARKET, 0.005))
        await manual.close()
        # its next frame, the fill, is delayed too: in flight here while the rounds run
        emulator.stream_faults.append(StreamFault("delay", f'"c": "{again.client_order_id}"', seconds=DELAY))
        _fill_at_venue(emulator, 28_000.0)
        assert emulator.position("BTCUSDT") == pytest.approx(0.008)
        await _rounds(node, 1)
        assert not node.guard.holds  # once is not yet a mismatch
        await _rounds(node, 1)
        assert again.status is OrderStatus.ACCEPTED
        reason = node.guard.holds.get(USDM_IID, "")
        assert "0.002 BTC position held here but 0.008 at the venue" in reason, reason


@pytest.mark.slow
async def test_a_resting_order_explains_no_difference() -> None:
    async with _node([_lost("byhand2")]) as (node, emulator):
        now = node.clock.now_ns()
        manual = BinanceFuturesTrading(emulator.rest_url, SecretStr(KEY), SecretStr(SECRET), {USDM_IID: INST}, 2.0)
        await manual.place(Order("byhand2", "", USDM_IID, OrderSide.SELL, OrderType.MARKET, 0.001))
        await manual.close()
        _fill_at_venue(emulator, 28_000.0)
        assert emulator.position("BTCUSDT") == pytest.approx(-0.001)
        # a quote resting on the side and of the size of the difference (a market maker's) hides nothing
        resting = node.kernel.execution.submit(SubmitOrder("TickEmaCross", USDM_IID, "", OrderSide.SELL, 0.001, now, now, OrderType.LIMIT, 1e6))
        await until(lambda: resting.status is OrderStatus.ACCEPTED)
        await _rounds(node, 2)
        assert resting.status is OrderStatus.ACCEPTED
        assert "0.0 BTC position held here but -0.001 at the venue" in node.guard.holds.get(USDM_IID, "")


@pytest.mark.slow
async def test_a_fill_booked_while_the_venue_answers_does_not_stop_the_instrument() -> None:
    warnings: list[str] = []
    sink = logger.add(lambda m: warnings.append(m.record["message"]), level="WARNING")
    try:
        async with _node([]) as (node, emulator):
            for k in range(2):  # twice the same difference: a mismatch if it were counted
                # the venue reads the position and its answer takes a while; an order placed meanwhile
                # fills and its fill arrives here before the answer (which does not have it)
                emulator.rest_faults.append(RestFault("slow", "GET", "/fapi/v2/positionRisk", seconds=1.5))  # < request_timeout
                asked = len(emulator.requests)
                round_ = asyncio.create_task(node.reconciler.compare_balances(startup=False))
                await until(lambda: any(p == "/fapi/v2/positionRisk" for _, p, _ in emulator.requests[asked:]))
                now = node.clock.now_ns()
                own = node.kernel.execution.submit(SubmitOrder("TickEmaCross", USDM_IID, "", OrderSide.BUY, 0.002, now, now, OrderType.MARKET))
                await until(lambda: own.status is OrderStatus.ACCEPTED)
                _fill_at_venue(emulator, 28_000.0)
                await until(lambda: own.status is OrderStatus.FILLED)
                assert not round_.done()
                await round_
                assert not [m for m in warnings if "unavailable" in m]  # answered: compared
                assert node.kernel.portfolio.position(USDM_IID) == pytest.approx(0.002 * (k + 1))  # the answer said 0.002 less
                assert not node.guard.holds, (k, node.guard.holds)
    finally:
        logger.remove(sink)


@pytest.mark.slow
async def test_a_round_books_a_market_orders_fill_the_stream_has_not_brought_and_says_so_without_alarm() -> None:
    records: list[Any] = []
    sink = logger.add(records.append, level="INFO", filter=lambda r: "querying it" in r["message"])
    try:
        async with _node([StreamFault("delay", '"x": "TRADE"', seconds=DELAY)]) as (node, emulator):
            now = node.clock.now_ns()
            own = node.kernel.execution.submit(SubmitOrder("TickEmaCross", USDM_IID, "", OrderSide.BUY, 0.002, now, now, OrderType.MARKET))
            await until(lambda: own.status is OrderStatus.ACCEPTED)
            _fill_at_venue(emulator, 28_000.0)
            await node.reconciler.round()  # the venue no longer lists it: queried, its fill booked from the trade history
            await until(lambda: own.status is OrderStatus.FILLED)  # well before the delayed frame
            assert node.kernel.portfolio.position(USDM_IID) == pytest.approx(0.002) and not node.guard.holds
    finally:
        logger.remove(sink)
    assert [r.record["level"].name for r in records] == ["INFO"]
    assert own.client_order_id in records[0].record["message"]
