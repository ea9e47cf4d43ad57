"""A fill the venue makes while a restarted live daemon warms up its feature kernels is booked once, on its order.

Session 1 leaves a resting limit order at the venue (``cancel_on_stop: false``); session 2 is held in its warm-up
(a warm-up that waits for the test, as a cold compile of 50 s or more) while the emulator fills that order. Once
the warm-up ends, the order must be FILLED by that one fill, the position must be the venue's, and no fill may be
taken for an order this process did not create. The daemon subscribed its user stream before the warm-up and
replayed its journal only after: the fill pushed meanwhile was booked as a stranger's, then again by the start-up
reconciliation (0.004 BTC held for the venue's 0.002, the instrument held). It now subscribes after the warm-up.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from tests.live.live_harness import until
from tests.live.venue_kits import KITS, VenueKit
from tradebus.adapters.common.local_server import LocalVenueServer
from tradebus.engine.messages import AnomalyKind, OrderAnomaly, OrderSide, OrderStatus, OrderType, SubmitOrder, Trade
from tradebus.features import warmup as warmup_module
from tradebus.node.live import ApiKeys, LiveNode, parse_live_config


@pytest.mark.parametrize("kit", list(KITS.values()), ids=list(KITS))
async def test_a_fill_pushed_during_the_warm_up_is_booked_once_on_its_journaled_order(
    kit: VenueKit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with kit.emulator() as emulator:
        async with LocalVenueServer(kit.make_protocol(kit.frames, emulator), kit.frames, speed=8.0) as srv:
            data = kit.config(tmp_path, srv.ws_url, emulator, cancel_on_stop=False)
            data["strategy"]["params"] |= {"fast": 500, "slow": 1000}  # never warm: only the test's order trades
            config = parse_live_config(data, "<test>")
            keys = ApiKeys.from_env(config.live, kit.env)

            first = LiveNode(config, keys, handle_signals=False)
            task = asyncio.create_task(first.run())
            try:
                await until(lambda: first.running.is_set() and not first.guard.holds, timeout=30)
                now = first.clock.now_ns()
                order = first.kernel.execution.submit(
                    SubmitOrder("TickEmaCross", kit.iid, "", OrderSide.BUY, 0.002, now, now, OrderType.LIMIT, 1_000.0)
                )
                await until(lambda: order.status is OrderStatus.ACCEPTED)
            finally:
                first.stop("session 1 done")
                await asyncio.wait_for(task, 20)
            coid = order.client_order_id
            assert emulator.orders[coid].status is OrderStatus.ACCEPTED  # left resting at the venue

            release = threading.Event()

            def held_warm_up() -> float:  # a cold compile, held until the fill is pushed
                release.wait(30.0)
                return 0.0

            monkeypatch.setattr(warmup_module, "warm_up", held_warm_up)
            second = LiveNode(parse_live_config({**data, "warm_up": True}, "<test>"), keys, handle_signals=False)
            anomalies: list[OrderAnomaly] = []
            second.kernel.bus.subscribe(OrderAnomaly, anomalies.append)
            task = asyncio.create_task(second.run())
            try:
                await until(lambda: second.warming_up, timeout=30)
                last = emulator.clock.now_ns() + 10**6
                emulator.on_trade(Trade(kit.iid, last, last, 999.0, 1.0, -1, "cross-1"))
                assert emulator.orders[coid].status is OrderStatus.FILLED
                await asyncio.sleep(1.0)  # a user stream subscribed by now would have the fill's frame
                assert second.warming_up
                release.set()
                await until(lambda: second.running.is_set() and not second.guard.holds, timeout=30)
                recovered = second.kernel.orders.get(coid)
                assert recovered is not None
                await until(lambda: recovered.status is OrderStatus.FILLED, timeout=10)
                await asyncio.sleep(0.5)  # a second booking of the fill, if any, comes now
            finally:
                release.set()
                second.stop("test done")
                await asyncio.wait_for(task, 20)
    venue_fills = sorted(str(f.trade_id) for f in emulator.fills)
    assert len(venue_fills) == 1
    assert sorted(f.trade_id for f in second.kernel.result.fills) == venue_fills
    assert recovered.filled_qty == pytest.approx(0.002)
    assert second.kernel.portfolio.position(kit.iid) == pytest.approx(emulator.balances[kit.base], abs=1e-12)
    assert [a for a in anomalies if a.kind in (AnomalyKind.UNKNOWN_ORDER, AnomalyKind.DUPLICATE_FILL)] == []
