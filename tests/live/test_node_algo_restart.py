"""Execution algorithms across a paper daemon's restart on its journal.

A daemon stopped while a TWAP of its strategy was working is restarted on the same journal:
the restart ends that TWAP ``interrupted`` (journaled, warned of) and tells the strategy, before
its ``on_start``, what the TWAP's children filled, so that the strategy works only the rest
(:mod:`tradebus.strategies.algo_recovery`).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from loguru import logger

from tests.live.twap_strategy import TwapBuy
from tradebus.adapters.binance.emulator import BinanceProtocol
from tradebus.adapters.common.local_server import LocalVenueServer
from tradebus.engine.messages import AlgoEnded, AlgoStarted, OrderStatus
from tradebus.execution.journal import Journal
from tradebus.node.daemon import PaperNode
from tradebus.strategies.algo_recovery import AlgoRecovery

from .node_testdata import IID, SPOT_FRAMES, SPOT_SNAPSHOT, binance_config, config_of, run_node

pytestmark = pytest.mark.usefixtures("compiled_kernels")

PARENT = 0.04


def _strategy(node: PaperNode) -> TwapBuy:
    strategy = node.kernel.strategies[0]
    assert isinstance(strategy, TwapBuy)
    return strategy


async def test_twap_working_at_a_stop_is_ended_interrupted_at_the_restart_and_its_parent_not_doubled(
    tmp_path: Path,
) -> None:
    strategy = {
        "name": "tests.live.twap_strategy:TwapBuy",
        "instruments": [IID],
        "params": {"quantity": PARENT, "duration": "8s", "slices": 4},
    }
    warnings: list[str] = []
    sink = logger.add(lambda m: warnings.append(m.record["message"]), level="WARNING")
    try:
        async with LocalVenueServer(BinanceProtocol(SPOT_SNAPSHOT), SPOT_FRAMES, speed=1.0) as srv:
            data = binance_config(srv.ws_url, srv.http_url, ["trade"], tmp=tmp_path, journal=True, strategy=strategy)
            first = PaperNode(config_of(data), handle_signals=False)

            def part_filled() -> bool:
                algo = _strategy(first).algo
                return algo is not None and algo.status == "working" and algo.filled > 0

            await run_node(first, part_filled, timeout=30.0)
            algo = _strategy(first).algo
            assert algo is not None and algo.status == "unfinished"
            filled = algo.filled
            assert 0 < filled < PARENT

            second = PaperNode(config_of(data), handle_signals=False)

            def resumed_done() -> bool:
                algo = _strategy(second).algo
                return algo is not None and algo.status != "working"

            await run_node(second, resumed_done, timeout=30.0)
    finally:
        logger.remove(sink)
    restarted = _strategy(second)
    # The strategy was told, before its on_start, what the interrupted TWAP filled.
    [event] = restarted.interrupted
    assert (event.name, event.kind, event.status, event.quantity) == ("twap1", "Twap", "interrupted", PARENT)
    assert event.filled == pytest.approx(filled) and event.remaining == pytest.approx(PARENT - filled)
    assert event.children == tuple(algo.children)
    assert any("twap1: interrupted by restart" in w and f"{filled} filled" in w for w in warnings), warnings
    # It worked only the rest: the parent is bought once, not twice.
    assert restarted.algo is not None and restarted.algo.status == "done"
    assert second.kernel.portfolio.position(IID) == pytest.approx(PARENT)
    assert all(second.kernel.orders.order(c).status in (OrderStatus.FILLED, OrderStatus.CANCELED) for c in algo.children)
    # Both ends are journaled: a third start finds no algorithm to interrupt.
    journal = Journal(tmp_path / "journal.sqlite")
    try:
        entries = [e.message for e in journal.entries()]
    finally:
        journal.close()
    assert [(m.name, m.status) for m in entries if type(m) is AlgoEnded] == [("twap1", "interrupted"), ("twap2", "done")]
    assert sum(type(m) is AlgoStarted for m in entries) == 2
    recovery = AlgoRecovery()
    for msg in entries:
        recovery.note(msg)
    assert not recovery.pending
