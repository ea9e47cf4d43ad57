"""``tradebus live``: an own client order id is held to the rule of the venue the account trades on, not the feed's.

A live config may take its market data from one venue's public stream and trade on another's
account (``live.venue``): every order goes to the account's venue, so its rule is the one that counts.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.live.live_harness import until
from tests.live.node_testdata import SPOT_FRAMES, SPOT_SNAPSHOT
from tests.live.venue_kits import BYBIT
from tradebus.adapters.binance.emulator import BinanceProtocol
from tradebus.adapters.common.local_server import LocalVenueServer
from tradebus.engine.messages import OrderStatus
from tradebus.node.live import ApiKeys, LiveNode, parse_live_config

STRATEGY_DIR = Path(__file__).resolve().parent.parent / "fixtures" / "own_ids"


async def test_an_own_id_the_accounts_venue_refuses_is_denied_though_the_feeds_venue_takes_it(tmp_path: Path) -> None:
    """Trading on Bybit from Binance's trades, the id 'tb.own.1' (legal on Binance, not on Bybit) was held to
    Binance's rule, which the feed's venue has, and posted to Bybit."""
    coid = "tb.own.1"
    trades = [f for f in SPOT_FRAMES if '@trade"' in f[1]][:200]
    async with BYBIT.emulator() as emulator:
        async with LocalVenueServer(BinanceProtocol(SPOT_SNAPSHOT), trades, speed=8.0) as srv:
            body = BYBIT.config(tmp_path, srv.ws_url, emulator, venue="bybit")
            body["feeds"][0] |= {"venue": "binance", "subscriptions": {BYBIT.iid: ["trade"]}}
            body["strategy"] = {"name": "own_ids:OwnId", "instruments": [BYBIT.iid], "module_dir": str(STRATEGY_DIR),
                                "params": {"client_order_id": coid, "quantity": 0.001}}
            config = parse_live_config(body, "<test>")
            node = LiveNode(config, ApiKeys.from_env(config.live, BYBIT.env), handle_signals=False)
            task = asyncio.create_task(node.run())
            try:
                def settled() -> bool:
                    order = node.kernel.orders.get(coid) if node.running.is_set() else None
                    return task.done() or (order is not None and order.status not in (OrderStatus.INITIALIZED, OrderStatus.SUBMITTED))

                await until(settled, timeout=30)
            finally:
                node.stop("test done")
                await asyncio.wait_for(task, 20)
    assert node.kernel.orders.get(coid).status is OrderStatus.DENIED
    assert [d.reason for d in node.kernel.result.denials] == [
        f"client order id {coid!r} breaks the venue's rule (Bybit orderLinkId: 1-36 letters, digits, - and _)"
    ]
    assert [c for m, p, c in emulator.requests if p == BYBIT.place_path] == []
