"""An amend made at the venue while the live daemon runs or is down is taken as an amend of the order.

A user amends a working order on the venue's web page (the venue's own amend endpoint, signed with the account's
keys): Binance spot ``PUT /api/v3/order/amend/keepPriority`` (``x=REPLACED``) renames the order unless the user sends
its own client id. The renamed order stays the order: a round finds no external order, a query names it by its
``orderId``, a restart resumes it with the venue's quantity, a cancel cancels it.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from loguru import logger

from tests.live.live_harness import KEY, SECRET, until
from tests.live.node_testdata import BINANCE_INSTRUMENT, IID, SPOT_FRAMES, SPOT_SNAPSHOT
from tests.live.test_live_unheard_amend import _held, _journaled_modifications, _placed, _session
from tests.live.venue_kits import VenueKit
from tradebus.adapters.binance import private_emulator as binance_emu
from tradebus.adapters.common.account_emulator import AccountEmulator
from tradebus.adapters.common.local_server import VenueProtocol
from tradebus.engine.messages import CancelOrder, OrderStatus
from tradebus.node.live import LiveNode

#: Every WARNING of an amend taken from the venue.
WARNING = "amended at the venue"


def _binance_protocol(frames: list[tuple[int, str]], account: AccountEmulator) -> VenueProtocol:
    return binance_emu.MatchingProtocol(SPOT_SNAPSHOT, account=account, instrument_ids={"btcusdt": IID})


BINANCE = VenueKit(
    venue="binance",
    iid=IID,
    instrument={**BINANCE_INSTRUMENT, "margin": False},
    frames=[(t, raw) for t, raw in SPOT_FRAMES if "@trade" in raw],
    channels=["trade"],
    base="BTC",
    make_emulator=binance_emu.BinancePrivateEmulator,
    make_protocol=_binance_protocol,
    env={"TRADEBUS_BINANCE_API_KEY": KEY, "TRADEBUS_BINANCE_API_SECRET": SECRET},
    place_path="/api/v3/order",
    fill_frame='"x": "TRADE"',
)
#: A limit buy of 0.002 @ 20,000 (below every trade of the recording) cut at the venue to 0.0012, its price kept.
KEEP_PRIORITY = ((0.002, 20_000.0), (0.0012, 20_000.0))


async def _keep_priority(emulator: AccountEmulator, venue_order_id: str, qty: float, new_client_id: str = "") -> dict[str, Any]:
    """``PUT /api/v3/order/amend/keepPriority`` of the order ``venue_order_id``, signed with the account's keys as the
    venue's web page would send it (ccxt has no method for it)."""
    params = {"symbol": "BTCUSDT", "orderId": venue_order_id, "newQty": f"{qty}", "timestamp": str(int(time.time() * 1000))}
    if new_client_id:
        params["newClientOrderId"] = new_client_id
    query = urlencode(params)
    signature = hmac.new(SECRET.encode(), query.encode(), hashlib.sha256).hexdigest()
    async with aiohttp.ClientSession() as session:
        async with session.put(f"{emulator.rest_url}/api/v3/order/amend/keepPriority?{query}&signature={signature}",
                               headers={"X-MBX-APIKEY": KEY}) as response:
            body = await response.json()
            assert response.status == 200, body
            return body


def _warnings() -> tuple[list[str], int]:
    lines: list[str] = []
    return lines, logger.add(lambda m: lines.append(str(m)), level="WARNING", filter=lambda r: WARNING in r["message"])


@pytest.mark.slow
async def test_a_binance_spot_order_renamed_by_an_amend_at_the_venue_stays_the_order(tmp_path: Path) -> None:
    """Binance spot's amend keeping priority, the venue naming the order anew (the user sent no client id): while the
    daemon runs, a reconciliation round and a query find it as the order (no external order, its quantity the venue's),
    renamed twice; amended again while the daemon is down, the restart resumes it with the venue's
    quantity (the query names it by ``orderId``: its first client id names no order at the venue any more), reports
    no external order, and a cancel of it cancels it."""
    kit, ((qty, price), (new_qty, _)) = BINANCE, KEEP_PRIORITY
    seen: dict[str, Any] = {}

    async def amend_then_round(node: LiveNode) -> None:
        order = node.kernel.orders.orders()[0]
        seen["coid"] = order.client_order_id
        await _keep_priority(emulator, order.venue_order_id, new_qty)
        await node.reconciler.round()
        await until(lambda: order.quantity == new_qty)
        seen["external"] = list(node.reconciler.external)
        queries = node.venue.requests["query"]
        node.kernel.execution.reconcile_order(order.client_order_id)
        await until(lambda: node.venue.requests["query"] > queries and order.client_order_id not in node.venue._querying)  # noqa: SLF001
        seen["after_query"] = (order.status, order.quantity)
        await _keep_priority(emulator, order.venue_order_id, 0.0011)  # renamed again
        await node.reconciler.round()
        await until(lambda: order.quantity == 0.0011)
        seen["external"] += node.reconciler.external

    def done(node: LiveNode) -> bool:
        return "after_query" in seen or (_placed(node) is not None and "coid" not in seen)

    async with kit.make_emulator(KEY, SECRET, kit.instruments(), {"USDT": 100_000.0}) as emulator:
        await _session(kit, emulator, tmp_path, kit.frames, done, (qty, price), amend_then_round,
                       reconcile_interval=None, check_interval=None)
        coid = seen["coid"]
        assert seen["external"] == []
        assert seen["after_query"] == (OrderStatus.ACCEPTED, new_qty)
        # Down: the user cuts it again; the venue renames it again.
        answer = await _keep_priority(emulator, str(emulator.orders[coid].order_id), 0.001)
        assert answer["amendedOrder"]["clientOrderId"] not in (coid, "")
        lines, sink = _warnings()
        restarted: dict[str, Any] = {}

        def resumed(node: LiveNode) -> bool:
            held = node.kernel.orders.get(coid)
            if "locked" in restarted:
                return held is not None and held.status is OrderStatus.CANCELED
            if held is None or held.status is not OrderStatus.ACCEPTED or held.quantity != 0.001:
                return False
            restarted["locked"] = node.kernel.portfolio.account.locked("USDT")
            restarted["external"] = list(node.reconciler.external)
            return True

        async def cancel(node: LiveNode) -> None:
            now = node.clock.now_ns()
            node.kernel.execution.cancel(CancelOrder(node.kernel.orders.get(coid).strategy_id, kit.iid, coid, now, now))

        try:
            node = await _session(kit, emulator, tmp_path, [], resumed, (qty, price), cancel,
                                  reconcile_interval=None, check_interval=None)
        finally:
            logger.remove(sink)
        assert restarted["external"] == []
        assert restarted["locked"] == pytest.approx(_held(node, kit, 0.001, price), rel=1e-12)
        assert len(lines) == 1 and "0.0011 @ 20000.0" in lines[0] and "0.001 @ 20000.0" in lines[0], lines
        assert emulator.orders[coid].status is OrderStatus.CANCELED  # the cancel named it by its orderId
    assert [m.quantity for m in _journaled_modifications(tmp_path / "journal.sqlite", coid)] == [new_qty, 0.0011, 0.001]
