"""A paper daemon decides on a frame at the frame's receive time, as the replay of its recording does.

The daemon's handler may run well after the frame was received (a busy loop, a slow strategy);
the replay's simulated clock stands at the recorded receive time. An order decided on the frame
must arrive at the simulated venue at receive time + latency in both, or a frame received in
between is matched differently.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from tests.live.busy_strategy import BusyBuy
from tradebus.adapters.binance.emulator import BinanceProtocol
from tradebus.adapters.common.local_server import LocalVenueServer
from tradebus.adapters.common.recorder import read_frames
from tradebus.engine.messages import OrderStatus
from tradebus.node.daemon import PaperNode
from tradebus.node.playback import play

from .node_testdata import IID, SPOT_FRAMES, SPOT_SNAPSHOT, binance_config, config_of, fill_keys, order_keys, run_node


def _strategy(node: Any) -> BusyBuy:
    strategy = node.kernel.strategies[0]
    assert isinstance(strategy, BusyBuy)
    return strategy


async def test_an_order_a_busy_daemon_decides_on_a_trade_arrives_and_fills_as_in_the_replay(tmp_path: Path) -> None:
    # The fifth trade holds the loop 150 ms past its receipt, then buys (latency 50 ms): trades 6-9,
    # received after the stretch, fall between receipt + latency and handling + latency. The order
    # must reach the venue before them in the daemon as in the replay, and fill at trade 6.
    trades = [frame for frame in SPOT_FRAMES if "@trade" in frame[1]][:12]
    nodes: list[PaperNode] = []

    def arrived() -> bool:
        return any(o.status is not OrderStatus.SUBMITTED for o in nodes[0].kernel.orders.orders())

    async def gate(raw: str) -> None:
        if raw == trades[9][1]:  # the rest once the daemon's order reached its venue
            while not arrived():
                await asyncio.sleep(0.01)

    strategy = {"name": "tests.live.busy_strategy:BusyBuy", "instruments": [IID],
                "params": {"hold_trade": 5, "hold_ms": 150}}
    async with LocalVenueServer(BinanceProtocol(SPOT_SNAPSHOT), trades, gate=gate) as srv:
        data = binance_config(srv.ws_url, srv.http_url, ["trade"], tmp=tmp_path, record=True, strategy=strategy)
        data["venue"]["latency_ns"] = 50_000_000
        node = PaperNode(config_of(data), handle_signals=False)
        nodes.append(node)
        await run_node(node, lambda: node.kernel.result.trades == len(trades) and bool(node.kernel.result.fills))
    paper = _strategy(node)
    recv = [t for t, conn, _ in read_frames(tmp_path / "frames.jsonl.gz") if not conn.startswith("rest")]
    assert len(recv) == len(trades) and len(paper.decided) == 1
    decided_on = paper.decided[0][1]
    assert decided_on == recv[4]
    assert recv[4] + 50_000_000 < recv[5] < recv[4] + 150_000_000 + 50_000_000  # trade 6 is received in the gap
    replay = play(tmp_path / "frames.jsonl.gz", node.config)
    assert _strategy(replay).decided == paper.decided == [(recv[4], recv[4])]  # decided at the trade's receipt
    # filled at trade 6's price, not at trade 10's (received after the order reached the daemon's venue)
    assert [f.price for f in node.kernel.result.fills] == [trade_price(trades[5][1])] != [trade_price(trades[9][1])]
    assert fill_keys(replay.kernel.result.fills) == fill_keys(node.kernel.result.fills)
    assert order_keys(replay.kernel.result.orders) == order_keys(node.kernel.result.orders)
    assert [o.ts_created for o in node.kernel.result.orders] == [o.ts_created for o in replay.kernel.result.orders]


def trade_price(raw: str) -> float:
    """The price of a recorded Binance trade frame."""
    return float(json.loads(raw)["data"]["p"])
