"""``tradebus live`` on OKX: a client order id a strategy gives itself that OKX refuses is denied before it is sent."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.live.live_harness import until
from tests.live.venue_kits import OKX
from tradebus.adapters.common.local_server import LocalVenueServer
from tradebus.engine.messages import OrderStatus
from tradebus.node.live import ApiKeys, LiveNode, parse_live_config

pytestmark = pytest.mark.usefixtures("compiled_kernels")

STRATEGY_DIR = Path(__file__).resolve().parent.parent / "fixtures" / "own_ids"


async def test_an_own_id_okx_refuses_is_denied_naming_the_rule_and_never_posted(tmp_path: Path) -> None:
    coid = "tb-own-1"  # legal on Binance and Bybit, not on OKX (letters and digits only)
    async with OKX.emulator() as emulator:
        async with LocalVenueServer(OKX.make_protocol(OKX.frames, emulator), OKX.frames, speed=8.0) as srv:
            body = OKX.config(tmp_path, srv.ws_url, emulator)
            body["strategy"] = {"name": "own_ids:OwnId", "instruments": [OKX.iid], "module_dir": str(STRATEGY_DIR),
                                "params": {"client_order_id": coid, "quantity": 0.001}}
            config = parse_live_config(body, "<test>")
            node = LiveNode(config, ApiKeys.from_env(config.live, OKX.env), handle_signals=False)
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
        f"client order id {coid!r} breaks the venue's rule (OKX clOrdId: 1-32 letters and digits)"
    ]
    assert [c for m, p, c in emulator.requests if p == OKX.place_path] == []
