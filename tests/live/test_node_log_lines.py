"""What a paper daemon of several strategies logs: its strategies by id, each denial once at WARNING."""

from __future__ import annotations

from typing import Any

import pytest
from loguru import logger

from tradebus.adapters.binance.emulator import BinanceProtocol
from tradebus.adapters.common.local_server import LocalVenueServer
from tradebus.node.daemon import PaperNode

from .node_testdata import IID, SPOT_FRAMES, SPOT_SNAPSHOT, binance_config, config_of, run_node

pytestmark = pytest.mark.usefixtures("compiled_kernels")


def _tick_ema(sid: str | None, fast: int, slow: int) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": "tradebus.strategies.tick_ema:TickEmaCross", "instruments": [IID],
                             "params": {"fast": fast, "slow": slow, "quantity": 0.01}}
    if sid is not None:
        entry["id"] = sid
    return entry


async def test_a_daemon_names_its_strategies_by_id_and_warns_each_denial_once() -> None:
    """Three TickEmaCross strategies were listed as ``strategies TickEmaCross, TickEmaCross, TickEmaCross``; and each
    denial was logged three times: INFO by the execution engine (``order ... denied: ...``), WARNING by the strategy
    (the same words) and INFO by the decision line. Every order of 0.01 here exceeds ``max_order_quantity`` 0.005."""
    records: list[dict[str, Any]] = []
    sink = logger.add(lambda m: records.append(m.record), level="DEBUG", format="{message}")
    try:
        async with LocalVenueServer(BinanceProtocol(SPOT_SNAPSHOT), SPOT_FRAMES) as srv:
            data = binance_config(srv.ws_url, srv.http_url, ["trade"], risk={"max_order_quantity": 0.005})
            del data["strategy"]
            data["strategies"] = [_tick_ema("quick", 2, 8), _tick_ema("calm", 3, 12), _tick_ema("slow", 5, 30)]
            node = PaperNode(config_of(data), handle_signals=False)
            await run_node(node, lambda: len(node.kernel.result.denials) >= 6, timeout=120.0)
    finally:
        logger.remove(sink)
    denials = node.kernel.result.denials
    assert len(denials) >= 6 and {d.strategy_id for d in denials} >= {"quick", "calm"}
    for denial in denials:
        coid = denial.client_order_id
        assert denial.reason.startswith("max_order_quantity: ")
        lines = [(r["level"].name, r["message"]) for r in records if coid in r["message"] and r["level"].no >= 20]
        assert len(lines) == 1, lines
        level, message = lines[0]
        assert level == "WARNING"
        assert message.startswith(f"decision {coid} {denial.strategy_id}: ") and f"-> denied: {denial.reason}" in message
    running = [r["message"] for r in records if "daemon running" in r["message"]]
    assert running == [
        "paper daemon running: 1 feed(s), strategies quick (TickEmaCross), calm (TickEmaCross), slow (TickEmaCross)"
    ]
