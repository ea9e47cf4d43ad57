"""Timers and alerts of a paper daemon on a silent market, and the replay of its recording.

The daemon fires them on the wall clock whether frames arrive or not; a replay's simulated
clock fires each before the first recorded line at or after its time. The daemon records the
moment it starts its kernel, so a timer set in ``on_start`` is due at the same time in the replay,
and the moment it stops, so the replay also fires what fell due after the last frame.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from tests.live.alert_strategy import AlertBuy, TickTimer, TimerAndAlert, TimerBuy, TwoAlerts
from tradebus.adapters.common.recorder import RUN_PREFIX, read_frames
from tradebus.engine.messages import OrderStatus
from tradebus.adapters.binance.emulator import BinanceProtocol
from tradebus.adapters.common.local_server import LocalVenueServer
from tradebus.node.daemon import PaperNode
from tradebus.node.playback import play

from .node_testdata import IID, SPOT_FRAMES, SPOT_SNAPSHOT, binance_config, config_of, fill_keys, order_keys, run_node

#: A few trades, sent at once; the market is silent after them (the server keeps the connection open).
FIRST_FRAMES = [frame for frame in SPOT_FRAMES if "@trade" in frame[1]][:5]


def _decided(orders: list[Any]) -> list[tuple[Any, ...]]:
    """What the strategy decided (not what the venue made of it by the end)."""
    return [(o.client_order_id, o.side, o.order_type, o.quantity) for o in orders]


def _accepted(node: PaperNode) -> bool:
    orders = list(node.kernel.orders.orders())
    return bool(orders) and all(o.status is OrderStatus.ACCEPTED for o in orders)


def _strategy(node: PaperNode | object) -> Any:
    strategy = node.kernel.strategies[0]  # type: ignore[attr-defined]
    assert isinstance(strategy, AlertBuy | TimerBuy)
    return strategy


async def test_an_alert_due_on_a_silent_market_after_the_last_frame_fires_in_the_replay_as_in_the_daemon(
    tmp_path: Path,
) -> None:
    strategy = {"name": "tests.live.alert_strategy:AlertBuy", "instruments": [IID], "params": {"after_ms": 300}}
    async with LocalVenueServer(BinanceProtocol(SPOT_SNAPSHOT), FIRST_FRAMES) as srv:
        data = binance_config(srv.ws_url, srv.http_url, ["trade"], tmp=tmp_path, record=True, strategy=strategy)
        node = PaperNode(config_of(data), handle_signals=False)
        # until the alert fired and its order arrived at the venue (its arrival alert, on the silent market)
        await run_node(node, lambda: bool(_strategy(node).fired) and _accepted(node))
    paper = _strategy(node)
    assert paper.fired == [(paper.fired[0][0], len(FIRST_FRAMES))]  # after every trade: the market went silent
    assert len(node.kernel.result.orders) == 1
    replay = play(tmp_path / "frames.jsonl.gz", node.config)
    # The alert fell due after the last frame: the replay fires it at the daemon's stop, at the same time.
    assert _strategy(replay).fired == paper.fired
    assert _decided(replay.kernel.result.orders) == _decided(node.kernel.result.orders)
    # The order arrived at the venue during the silence (its arrival alert, before the stop): accepted, in both.
    assert [o.status for o in node.kernel.result.orders] == [OrderStatus.ACCEPTED]
    assert [o.status for o in replay.kernel.result.orders] == [o.status for o in node.kernel.result.orders]


async def test_an_alert_set_for_a_time_already_past_fires_at_once_at_the_current_time_in_the_daemon_as_in_the_replay(
    tmp_path: Path,
) -> None:
    # set on the second trade, 300 ms before it: due already, it fires as soon as the handler returns
    strategy = {"name": "tests.live.alert_strategy:AlertBuy", "instruments": [IID],
                "params": {"after_ms": -300, "at_trade": 2}}
    async with LocalVenueServer(BinanceProtocol(SPOT_SNAPSHOT), FIRST_FRAMES) as srv:
        data = binance_config(srv.ws_url, srv.http_url, ["trade"], tmp=tmp_path, record=True, strategy=strategy)
        node = PaperNode(config_of(data), handle_signals=False)
        await run_node(node, lambda: node.kernel.result.trades == len(FIRST_FRAMES) and bool(_strategy(node).fired))
    recording = tmp_path / "frames.jsonl.gz"
    second = [t for t, conn, _ in read_frames(recording) if not conn.startswith("rest")][1]  # its receive time
    paper = _strategy(node)
    # the event says when the alert was due; the strategy decides at the current time: the second trade's
    assert paper.fired == [(second - 300_000_000, 2)]
    assert paper.decided == [second]
    replay = play(recording, node.config)
    assert _strategy(replay).fired == paper.fired and _strategy(replay).decided == paper.decided
    assert [o.ts_created for o in replay.kernel.result.orders] == [o.ts_created for o in node.kernel.result.orders] == [second]
    assert order_keys(replay.kernel.result.orders) == order_keys(node.kernel.result.orders)
    assert fill_keys(replay.kernel.result.fills) == fill_keys(node.kernel.result.fills)


async def test_a_timer_set_in_on_start_is_due_and_fills_in_the_replay_exactly_as_in_the_daemon(tmp_path: Path) -> None:
    # The daemon starts its strategies before its feed connects; the replay starts them at the same
    # recorded moment, not at the first frame's receive time (the connection delay later).
    trades = [frame for frame in SPOT_FRAMES if "@trade" in frame[1]][:10]
    nodes: list[PaperNode] = []

    async def hold_the_fourth_trade_until_the_timer_fired(raw: str) -> None:
        while raw == trades[3][1] and not _strategy(nodes[0]).fired:
            await asyncio.sleep(0.01)

    strategy = {"name": "tests.live.alert_strategy:TimerBuy", "instruments": [IID], "params": {"every_ms": 500}}
    async with LocalVenueServer(BinanceProtocol(SPOT_SNAPSHOT), trades, gate=hold_the_fourth_trade_until_the_timer_fired) as srv:
        data = binance_config(srv.ws_url, srv.http_url, ["trade"], tmp=tmp_path, record=True, strategy=strategy)
        node = PaperNode(config_of(data), handle_signals=False)
        nodes.append(node)
        await run_node(node, lambda: node.kernel.result.trades == len(trades) and bool(node.kernel.result.fills))
    paper = _strategy(node)
    assert len(paper.fired) == 1
    assert len(node.kernel.result.fills) == 1
    recording = tmp_path / "frames.jsonl.gz"
    replay = play(recording, node.config)
    assert _strategy(replay).fired == paper.fired
    assert fill_keys(replay.kernel.result.fills) == fill_keys(node.kernel.result.fills)
    assert order_keys(replay.kernel.result.orders) == order_keys(node.kernel.result.orders)
    # due one interval after the recorded start, to the nanosecond
    started = [t for t, conn, _ in read_frames(recording, runs=True) if conn == RUN_PREFIX + "start"]
    assert [due for due, _ in paper.fired] == [started[0] + 500_000_000]


async def test_a_timer_the_busy_daemon_fires_late_decides_at_its_due_time_in_the_daemon_as_in_the_replay(
    tmp_path: Path,
) -> None:
    # The third trade holds the loop 150 ms past the timer's due time: the daemon fires it late, after
    # trades 4-6 were received. With a 50 ms latency its order must arrive before them in the daemon as
    # in the replay (due + latency), and fill at trade 4, not at a later trade the wall clock picked.
    trades = [frame for frame in SPOT_FRAMES if "@trade" in frame[1]][:10]
    nodes: list[PaperNode] = []

    def ordered() -> bool:
        return any(o.status is not OrderStatus.SUBMITTED for o in nodes[0].kernel.orders.orders())

    async def gate(raw: str) -> None:
        strategy = _strategy(nodes[0]) if nodes else None
        if raw == trades[2][1]:  # received before the due time, held until just before it
            while strategy is None or not strategy.due_ns or time.time_ns() < strategy.due_ns - 300_000_000:
                await asyncio.sleep(0.01)
        elif raw == trades[6][1]:  # the rest once the daemon's order reached its venue
            while not ordered():
                await asyncio.sleep(0.01)

    strategy = {"name": "tests.live.alert_strategy:HeldTimerBuy", "instruments": [IID],
                "params": {"every_ms": 1000, "hold_trade": 3, "hold_ms": 150}}
    async with LocalVenueServer(BinanceProtocol(SPOT_SNAPSHOT), trades, gate=gate) as srv:
        data = binance_config(srv.ws_url, srv.http_url, ["trade"], tmp=tmp_path, record=True, strategy=strategy)
        data["venue"]["latency_ns"] = 50_000_000
        node = PaperNode(config_of(data), handle_signals=False)
        nodes.append(node)
        await run_node(node, lambda: node.kernel.result.trades == len(trades) and bool(node.kernel.result.fills))
    paper = _strategy(node)
    assert paper.fired == [(paper.due_ns, 3)]
    recv = [t for t, conn, _ in read_frames(tmp_path / "frames.jsonl.gz") if not conn.startswith("rest")]
    assert recv[2] < paper.due_ns < paper.due_ns + 50_000_000 < recv[3]  # the late firing matters
    replay = play(tmp_path / "frames.jsonl.gz", node.config)
    assert _strategy(replay).fired == paper.fired
    assert fill_keys(replay.kernel.result.fills) == fill_keys(node.kernel.result.fills)
    assert order_keys(replay.kernel.result.orders) == order_keys(node.kernel.result.orders)
    # decided at its due time, in both
    assert [o.ts_created for o in node.kernel.result.orders] == [o.ts_created for o in replay.kernel.result.orders]


async def test_a_stopped_daemon_fires_no_timer_after_its_strategies_stopped(tmp_path: Path) -> None:
    # The replay fires what was due by the recorded stop and nothing after; the daemon's loop
    # outlives its run (asyncio.run's teardown, the caller's own loop): its timers must not.
    strategy = {"name": "tests.live.alert_strategy:TickTimer", "instruments": [IID], "params": {"every_ms": 5}}
    async with LocalVenueServer(BinanceProtocol(SPOT_SNAPSHOT), FIRST_FRAMES) as srv:
        data = binance_config(srv.ws_url, srv.http_url, ["trade"], tmp=tmp_path, record=True, strategy=strategy)
        data["warm_up"] = False
        node = PaperNode(config_of(data), handle_signals=False)
        # Two firings and a recorded trade: on a loaded machine the timer can fire twice before the first
        # frame, and a recording without frames has nothing to replay.
        await run_node(
            node, lambda: len(node.kernel.strategies[0].fired) >= 2 and node.kernel.result.trades >= 1  # type: ignore[attr-defined]
        )
    paper = node.kernel.strategies[0]
    assert isinstance(paper, TickTimer) and paper.stopped
    await asyncio.sleep(0.05)  # ten intervals of the timer, with the loop running
    assert paper.fired_after_stop == []
    replay = play(tmp_path / "frames.jsonl.gz", node.config)
    assert replay.kernel.strategies[0].fired == paper.fired  # type: ignore[attr-defined]


async def test_an_order_arriving_before_the_next_due_alert_reaches_the_venue_before_it_fires_as_in_the_replay(
    tmp_path: Path,
) -> None:
    # After the last trade (the market is silent then) the loop is held past two alerts (1 ms and 3 ms
    # after it): it finds both due at once. The first's market order (latency 0) arrives 1 ns after it,
    # before the second is due: the venue has accepted it when the second fires, in the daemon as in
    # the replay (its simulated clock fires everything in time order).
    strategy = {"name": "tests.live.alert_strategy:TwoAlerts", "instruments": [IID],
                "params": {"at_trade": len(FIRST_FRAMES)}}
    async with LocalVenueServer(BinanceProtocol(SPOT_SNAPSHOT), FIRST_FRAMES) as srv:
        data = binance_config(srv.ws_url, srv.http_url, ["trade"], tmp=tmp_path, record=True, strategy=strategy)
        data["warm_up"] = False
        node = PaperNode(config_of(data), handle_signals=False)
        await run_node(node, lambda: len(node.kernel.strategies[0].fired) == 2)  # type: ignore[attr-defined]
    paper = node.kernel.strategies[0]
    assert isinstance(paper, TwoAlerts)
    assert [(name, accepted) for name, _, accepted in paper.fired] == [("first", 0), ("second", 1)]
    replay = play(tmp_path / "frames.jsonl.gz", node.config)
    assert replay.kernel.strategies[0].fired == paper.fired  # type: ignore[attr-defined]
    assert order_keys(replay.kernel.result.orders) == order_keys(node.kernel.result.orders)


async def test_a_timer_and_an_alert_due_at_one_instant_fire_in_the_order_they_were_created_as_in_the_replay(
    tmp_path: Path,
) -> None:
    # The replay's clock fires ties in creation order, a repeating timer keeping the rank it was created
    # with at every firing: the timer (created first) before the alert due at its second firing.
    strategy = {"name": "tests.live.alert_strategy:TimerAndAlert", "instruments": [IID], "params": {"every_ms": 20}}
    async with LocalVenueServer(BinanceProtocol(SPOT_SNAPSHOT), FIRST_FRAMES) as srv:
        data = binance_config(srv.ws_url, srv.http_url, ["trade"], tmp=tmp_path, record=True, strategy=strategy)
        data["warm_up"] = False
        node = PaperNode(config_of(data), handle_signals=False)
        await run_node(node, lambda: len(node.kernel.strategies[0].fired) >= 3)  # type: ignore[attr-defined]
    paper = node.kernel.strategies[0]
    assert isinstance(paper, TimerAndAlert)
    tick = paper.every_ns
    start = paper.fired[0][1] - tick
    assert paper.fired[:3] == [("tick", start + tick), ("tick", start + 2 * tick), ("alert", start + 2 * tick)]
    replay = play(tmp_path / "frames.jsonl.gz", node.config)
    assert replay.kernel.strategies[0].fired[:3] == paper.fired[:3]  # type: ignore[attr-defined]
