"""An order the venue does not know yet is queried once per retry, on every live venue.

A submit that met a 503 never reached the venue: the order times out to ``UNKNOWN`` and each
query, answered "no such order" within the grace period, sets the next one ``retry_ns`` later.
Each answer used to set a retry beside the one already pending, which the answer did not
cancel: the retries multiplied (one more per answer), each one calling ``query_order`` and
logging ``query not answered now``, so that after a while one retry time logged the same
pending query dozens of times in a millisecond and sent several requests for it.

The engine's clock here is simulated and moved by the test one retry at a time, each query's
answer awaited in between: the counts do not depend on how fast the machine is. Others asking
meanwhile (the periodic check, a stream's reconnect) neither send another query nor log it again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from loguru import logger
from pydantic import SecretStr

from tests.live.live_harness import INST, KEY, SECRET
from tests.live.venue_kits import KITS, PASSPHRASE
from tradebus.adapters.binance.private_emulator import BinancePrivateEmulator
from tradebus.adapters.binance.trading import BinanceTrading
from tradebus.adapters.common.account_emulator import AccountEmulator, RestFault
from tradebus.engine.clock import SimulatedClock
from tradebus.engine.instrument import Instrument
from tradebus.engine.kernel import Kernel
from tradebus.engine.messages import OrderSide, OrderStatus, OrderType, SubmitOrder
from tradebus.execution.engine import OrderTimeouts
from tradebus.execution.live import LiveVenue
from tradebus.node.live import LiveSettings

T0 = 1_723_161_255_000_000_000
RETRY_NS = 200_000_000
RETRIES = 12  # answers "no such order" within the grace, each followed by a retry
OTHERS = 2  # queries of the order asked by others at each retry, while its query is on its way
SUBMIT_NS = 500_000_000
# The venue not knowing it is believed at the last retry's answer: grace past the submit's end.
TIMEOUTS = OrderTimeouts(submit_ns=SUBMIT_NS, cancel_ns=SUBMIT_NS, retry_ns=RETRY_NS, check_ns=None,
                         not_found_grace_ns=SUBMIT_NS + RETRIES * RETRY_NS - RETRY_NS // 2)


def _binance() -> tuple[Instrument, str, Callable[[list[RestFault]], AccountEmulator], Callable[[str], Any]]:
    def emulator(faults: list[RestFault]) -> AccountEmulator:
        return BinancePrivateEmulator(KEY, SECRET, {INST.instrument_id: INST}, {"USDT": 100_000.0}, faults)

    def api(url: str) -> Any:
        return BinanceTrading(url, SecretStr(KEY), SecretStr(SECRET), {INST.instrument_id: INST}, 1.0)

    return INST, "/api/v3/order", emulator, api


def _kit(name: str) -> tuple[Instrument, str, Callable[[list[RestFault]], AccountEmulator], Callable[[str], Any]]:
    kit = KITS[name]
    account = LiveSettings(venue=kit.venue, market=kit.market).account()

    def api(url: str) -> Any:
        options = {"passphrase": SecretStr(PASSPHRASE), "environment": "testnet"}
        return account.trading(url, SecretStr(KEY), SecretStr(SECRET), kit.instruments(), 1.0, **options)

    (inst,) = kit.instruments().values()
    return inst, kit.place_path, lambda faults: kit.emulator(faults), api


VENUES = {"binance": _binance, "okx": lambda: _kit("okx"), "bybit": lambda: _kit("bybit")}


@asynccontextmanager
async def _engine(name: str) -> AsyncIterator[tuple[Kernel, LiveVenue, SimulatedClock, Instrument]]:
    """A kernel on a simulated clock trading through the live venue of ``name``, whose first submit meets a 503."""
    inst, place_path, make_emulator, make_api = VENUES[name]()
    emulator = make_emulator([RestFault("error5xx", "POST", place_path)])
    await emulator.start()
    clock = SimulatedClock(T0)
    venue = LiveVenue(make_api(emulator.rest_url), clock)
    kernel = Kernel([inst], clock=clock, venue=venue, timeouts=TIMEOUTS, initial_cash=100_000.0)
    venue.on_answer = kernel.execution.reconcile_order
    try:
        kernel.start()
        yield kernel, venue, clock, inst
    finally:
        await venue.aclose()
        await emulator.stop()


@pytest.mark.parametrize("name", list(VENUES))
async def test_an_order_the_venue_does_not_know_yet_is_queried_and_logged_once_per_retry(name: str) -> None:
    lines: list[str] = []
    sink = logger.add(lines.append, level="INFO", format="{message}")
    try:
        async with _engine(name) as (kernel, venue, clock, inst):
            asked: list[str] = []
            query_order = venue.query_order

            def counted(client_order_id: str) -> Any:
                asked.append(client_order_id)
                return query_order(client_order_id)

            venue.query_order = counted  # type: ignore[method-assign]
            cmd = SubmitOrder("s1", inst.instrument_id, "", OrderSide.BUY, 0.01, T0, T0, OrderType.LIMIT, 1_000.0)
            order = kernel.execution.submit(cmd)
            await venue.drain()  # the 503: no answer, the order stays SUBMITTED
            now = T0 + SUBMIT_NS
            clock.advance_to(now)  # the submit times out: UNKNOWN, queried
            await venue.drain()  # "no such order": asked again in retry_ns
            assert order.status is OrderStatus.UNKNOWN
            for _ in range(RETRIES):
                now += RETRY_NS
                clock.advance_to(now)
                for _ in range(OTHERS):  # the periodic check, a stream's reconnect: the query on its way is theirs
                    kernel.execution.reconcile_order(order.client_order_id)
                await venue.drain()
            assert order.status is OrderStatus.REJECTED and "never arrived" in order.reason
            queries = venue.requests["query"]
            clock.advance_to(now + 10 * RETRY_NS)  # nothing is left to ask
            await venue.drain()
            assert venue.requests["query"] == queries
    finally:
        logger.remove(sink)
    pending = [line for line in lines if "query not answered now" in line]
    # The timeout's query, then one per retry; each is one call that sends it and one that takes its answer.
    assert queries == RETRIES + 1
    assert len(pending) == queries, pending[:3]
    assert asked == [order.client_order_id] * (2 * queries + OTHERS * RETRIES)
