"""An execution algorithm of a live daemon across a restart, against the local Binance account emulator.

The daemon's iceberg (a 0.04 buy at 20,000 shown 0.01 at a time) has one tip filled and the next
working at the venue when the daemon stops without canceling it (``cancel_on_stop`` off, as a
crash or ``kill -9`` leaves it). Restarted on its journal, the daemon ends the iceberg
``interrupted``: the working tip is canceled at the venue once the start-up has settled it, the
strategy is told what was filled, and the iceberg of the rest it starts is all that is sent
(:mod:`tradebus.strategies.algo_recovery`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from loguru import logger
from pydantic import SecretStr

from tests.live.iceberg_strategy import IcebergBuy
from tests.live.live_harness import KEY, SECRET, until
from tests.live.node_testdata import BINANCE_INSTRUMENT, IID, SPOT_FRAMES, SPOT_SNAPSHOT, binance_config
from tradebus.adapters.binance.private_emulator import BinancePrivateEmulator, MatchingProtocol
from tradebus.adapters.common.local_server import LocalVenueServer
from tradebus.engine.messages import AlgoEnded, CancelOrder, OrderStatus, Trade
from tradebus.execution.journal import Journal
from tradebus.node.live import ApiKeys, LiveNode, parse_live_config

SPOT = {**BINANCE_INSTRUMENT, "margin": False}
PARENT, TIP = 0.04, 0.01


def _config(tmp: Path, ws_url: str, rest_url: str, emulator: BinancePrivateEmulator) -> dict[str, Any]:
    data = binance_config(
        ws_url, rest_url, ["trade"], tmp=tmp, journal=True,
        strategy={"name": "tests.live.iceberg_strategy:IcebergBuy", "instruments": [IID],
                  "params": {"quantity": PARENT, "price": 20_000.0, "display": TIP, "poll": "200ms"}},
    )  # fmt: skip
    data["instruments"] = [SPOT]
    data["warm_up"] = False
    data["live"] = {
        "rest_url": emulator.rest_url,
        "ws_api_url": emulator.ws_api_url,
        "request_timeout": 1.0,
        "submit_timeout": 1.0,
        "cancel_timeout": 1.0,
        "retry_interval": 0.3,
        "not_found_grace": 2.0,
        "cancel_on_stop": False,  # the stop leaves the working tip at the venue, as a crash does
    }
    return data


def _strategy(node: LiveNode) -> IcebergBuy:
    strategy = node.kernel.strategies[0]
    assert isinstance(strategy, IcebergBuy)
    return strategy


async def _run_until(node: LiveNode, done: Any, timeout: float = 30.0) -> None:
    import asyncio

    task = asyncio.create_task(node.run())
    try:
        await until(lambda: task.done() or (node.running.is_set() and done()), timeout=timeout)
    finally:
        node.stop("test done")
        await asyncio.wait_for(task, 20)
    assert task.exception() is None


async def test_a_restart_cancels_the_interrupted_icebergs_working_tip_at_the_venue_and_sends_only_the_rest(
    tmp_path: Path,
) -> None:
    instrument = parse_live_config(
        {"instruments": [SPOT], "strategy": {"name": "tests.live.iceberg_strategy:IcebergBuy", "instruments": [IID]},
         "feeds": [{"venue": "binance", "market": "spot", "subscriptions": {IID: ["trade"]}}],
         "venue": {"fill_on": "trades"}},
    ).instrument_map()[IID]  # fmt: skip
    emulator = BinancePrivateEmulator(KEY, SECRET, {IID: instrument}, {"USDT": 100_000.0})
    warnings: list[str] = []
    sink = logger.add(lambda m: warnings.append(m.record["message"]), level="WARNING")
    try:
        async with emulator:
            protocol = MatchingProtocol(SPOT_SNAPSHOT, account=emulator, instrument_ids={"btcusdt": IID})
            async with LocalVenueServer(protocol, SPOT_FRAMES, speed=1.0) as srv:
                config = parse_live_config(_config(tmp_path, srv.ws_url, srv.http_url, emulator), "<test>")
                keys = ApiKeys(SecretStr(KEY), SecretStr(SECRET))
                first = LiveNode(config, keys, handle_signals=False)
                filled_tip: list[str] = []

                def at_venue(algo: Any) -> list[str]:
                    """The algorithm's children the venue took (a tip sent during the start-up reconciliation is
                    denied, and the iceberg sends it again at its next poll)."""
                    return [c for c in algo.children if c in emulator.orders]

                def second_tip_working() -> bool:
                    algo = _strategy(first).algo
                    tips = [] if algo is None else at_venue(algo)
                    if not filled_tip and tips and emulator.orders[tips[0]].status is OrderStatus.ACCEPTED:
                        last = emulator.clock.now_ns()
                        emulator.on_trade(Trade(IID, last, last, 19_999.0, TIP, -1, "fill-tip-1"))
                        filled_tip.append(tips[0])
                    return len(tips) == 2 and algo.filled == pytest.approx(TIP) \
                        and first.kernel.orders.order(tips[1]).status is OrderStatus.ACCEPTED  # type: ignore[union-attr]  # fmt: skip

                await _run_until(first, second_tip_working)
                children = tuple(_strategy(first).algo.children)  # type: ignore[union-attr]
                tip1, tip2 = at_venue(_strategy(first).algo)
                assert emulator.orders[tip1].status is OrderStatus.FILLED
                assert emulator.orders[tip2].status is OrderStatus.ACCEPTED  # left working by the stop

                second = LiveNode(config, keys, handle_signals=False)

                def tip2_canceled_and_rest_resting() -> bool:
                    algo = _strategy(second).algo
                    return (emulator.orders[tip2].status is OrderStatus.CANCELED and algo is not None
                            and bool(at_venue(algo)) and second.kernel.orders.order(at_venue(algo)[0]).status
                            is OrderStatus.ACCEPTED and not second.guard.holds)  # fmt: skip

                await _run_until(second, tip2_canceled_and_rest_resting)
    finally:
        logger.remove(sink)
    restarted = _strategy(second)
    [event] = restarted.interrupted
    assert (event.kind, event.status, event.children) == ("Iceberg", "interrupted", children)
    assert event.filled == pytest.approx(TIP) and event.remaining == pytest.approx(PARENT - TIP)
    assert any("interrupted by restart" in w and tip2 in w for w in warnings), warnings
    # Canceled at the venue, once; the new iceberg works only the rest; nothing posted twice.
    assert second.kernel.orders.order(tip2).status is OrderStatus.CANCELED
    new = restarted.algo
    assert new is not None and new.quantity == pytest.approx(PARENT - TIP)
    open_at_venue = [coid for coid, o in emulator.orders.items() if o.status is OrderStatus.ACCEPTED]
    [new_tip] = [c for c in new.children if c in emulator.orders]
    assert open_at_venue == [new_tip]
    posts = [coid for method, _, coid in emulator.requests if method == "POST"]
    deletes = [coid for method, _, coid in emulator.requests if method == "DELETE"]
    assert posts == [tip1, tip2, new_tip] and deletes == [tip2]
    journal = Journal(tmp_path / "journal.sqlite")
    try:
        entries = [e.message for e in journal.entries()]
    finally:
        journal.close()
    assert [(m.client_order_id, m.reason) for m in entries if type(m) is CancelOrder] == [
        (tip2, f"{event.name}: interrupted by restart")
    ]
    assert [m.status for m in entries if type(m) is AlgoEnded] == ["interrupted"]
