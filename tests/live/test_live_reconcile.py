"""Periodic reconciliation while the daemon runs: a fill the private stream dropped is booked, a hand-placed order reported.

The account emulator drops the first private-stream frame carrying a fill. The engine's own
order checks are off (``check_interval: null``), so only the reconciliation rounds
(``reconcile_interval``) can notice that the order is no longer open at the venue: the
round queries it and books the fill from the venue's trade history, once. Without the rounds
the fill stays missing (the control case), which shows the test can fail.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.live.live_harness import WAIT, until
from tests.live.venue_kits import KITS, OKX, VenueKit
from tradebus.adapters.common.account_emulator import StreamFault
from tradebus.adapters.common.local_server import LocalVenueServer
from tradebus.engine.messages import OrderSide, OrderStatus, OrderType, SubmitOrder, Trade
from tradebus.execution.orders import Order
from tradebus.node.live import ApiKeys, ExternalOrder, LiveNode, parse_live_config


async def _scenario(
    kit: VenueKit, tmp_path: Path, reconcile_interval: float | None, wait: float = WAIT,
) -> tuple[LiveNode, Any, list[Any], list[str], str]:
    """Run the daemon, fill an order with its fill frame dropped, place one by hand; the trade ids booked before the
    stop, and what was still missing when ``wait`` ran out ("": nothing).

    ``wait``: how long the rounds may take to book the fill and report the order (a loaded machine delays them).
    """
    missing = ""
    drop = StreamFault("drop", kit.fill_frame)
    async with kit.emulator(stream_faults=[drop]) as emulator:
        async with LocalVenueServer(kit.make_protocol(kit.frames, emulator), kit.frames, speed=8.0) as srv:
            data = kit.config(tmp_path, srv.ws_url, emulator, check_interval=None, reconcile_interval=reconcile_interval)
            data["strategy"]["params"] |= {"fast": 500, "slow": 1000}  # never warm: only the test's orders trade
            config = parse_live_config(data, "<test>")
            keys = ApiKeys.from_env(config.live, kit.env)
            node = LiveNode(config, keys, handle_signals=False)
            externals: list[Any] = []
            booked: list[str] = []
            node.kernel.bus.subscribe(ExternalOrder, externals.append)
            task = asyncio.create_task(node.run())
            try:
                await until(lambda: node.running.is_set() and not node.guard.holds, timeout=30)
                now = node.clock.now_ns()
                order = node.kernel.execution.submit(
                    SubmitOrder("TickEmaCross", kit.iid, "", OrderSide.BUY, 0.002, now, now, OrderType.LIMIT, 1_000.0)
                )
                await until(lambda: order.status is OrderStatus.ACCEPTED)
                last = emulator.clock.now_ns() + 10**6
                emulator.on_trade(Trade(kit.iid, last, last, 999.0, 1.0, -1, "cross-1"))
                assert drop.fired and emulator.orders[order.client_order_id].status is OrderStatus.FILLED
                manual = config.live.account().trading(
                    emulator.rest_url, keys.key, keys.secret, config.instrument_map(), 2.0, **keys.options(config.live)
                )
                await manual.place(Order("byhand2", "", kit.iid, OrderSide.SELL, OrderType.LIMIT, 0.0001, 900_000.0))
                await manual.close()
                done = lambda: order.status is OrderStatus.FILLED and len(node.external_orders) == 1  # noqa: E731
                try:
                    await until(done, timeout=wait)
                except AssertionError:  # the control case expects it; the caller checks
                    missing = (f"after {wait} s: the order {order.status.name}, external orders {node.external_orders}, "
                               f"{node.reconciler.rounds} round(s), {node.reconciler.differences} difference(s)")
            finally:
                booked.extend(f.trade_id for f in node.kernel.result.fills)  # the stop's cancels query what is open
                node.stop("test done")
                await asyncio.wait_for(task, 20)
    return node, emulator, externals, booked, missing


@pytest.mark.parametrize("kit", list(KITS.values()), ids=list(KITS))
async def test_a_round_books_the_dropped_fill_once_and_reports_the_external_order(kit: VenueKit, tmp_path: Path) -> None:
    node, emulator, externals, booked, missing = await _scenario(kit, tmp_path, reconcile_interval=0.5)
    assert missing == ""
    kernel = node.kernel
    assert sorted(booked) == sorted(f.trade_id for f in kernel.result.fills) == sorted(str(f.trade_id) for f in emulator.fills)
    assert len(emulator.fills) >= 1
    assert kernel.portfolio.position(kit.iid) == pytest.approx(emulator.balances[kit.base], abs=1e-12)
    assert node.reconciler.differences >= 1
    assert [e.client_order_id for e in externals] == ["byhand2"]  # reported once, however many rounds
    assert emulator.orders["byhand2"].status is OrderStatus.ACCEPTED  # left alone
    assert not node.guard.holds


async def test_without_rounds_the_dropped_fill_stays_missing(tmp_path: Path) -> None:
    node, emulator, externals, booked, missing = await _scenario(OKX, tmp_path, reconcile_interval=None, wait=2.0)  # 4 rounds' time
    assert missing.startswith("after 2.0 s: the order ACCEPTED")
    assert emulator.fills and booked == []
    assert externals == [] and node.reconciler.rounds == 0


async def test_a_balance_difference_holds_the_instrument_only_when_it_persists() -> None:
    from tests.live.venue_kits import kit_harness
    from tradebus.node.reconcile import Reconciler

    async with kit_harness(OKX) as h:
        holds: dict[str, str] = {}

        def hold(iid: str, reason: str) -> None:
            if reason:
                holds[iid] = reason
            else:
                holds.pop(iid, None)

        reconciler = Reconciler(h.kernel, h.venue, hold, 2.0)
        await reconciler.round()
        assert holds == {}
        h.emulator.balances["BTC"] = 0.5  # a transfer into the account, not a trade of this journal
        await reconciler.round()
        assert holds == {}  # once could be a fill in flight
        await reconciler.round()
        assert "0.0 BTC held here but 0.5 at the venue" in holds[OKX.iid]
        h.emulator.balances["BTC"] = 0.0
        await reconciler.round()
        assert holds == {} and reconciler.rounds == 4 and reconciler.differences == 0
