"""A recording two daemon sessions appended to (the daemon restarted on the same ``record:`` file).

A replay plays one kernel from one ``run:start``: it calls no ``on_start`` again and keeps the first
session's simulated venue, where the restarted daemon began anew. So ``tradebus replay`` refuses such
a recording, naming the file and the line of the second ``run:start``, and ``--session N`` replays
the N-th session alone, as that daemon ran it.
"""

from __future__ import annotations

import gzip
import json
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from loguru import logger
from typer.testing import CliRunner

from tradebus.adapters.binance.emulator import BinanceProtocol
from tradebus.adapters.common.local_server import LocalVenueServer
from tradebus.adapters.common.recorder import read_frames
from tradebus.cli import app
from tradebus.errors import DataError
from tradebus.node.daemon import PaperNode
from tradebus.node.playback import play

from .node_testdata import IID, SPOT_FRAMES, SPOT_SNAPSHOT, binance_config, config_of, fill_keys, order_keys, run_node

TRADES = [frame for frame in SPOT_FRAMES if "@trade" in frame[1]][:24]
STRATEGY = {"name": "tests.live.mixed_orders_strategy:MixedOrders", "instruments": [IID],
            "params": {"every": 2, "quantity": 0.001}}


@pytest.fixture(autouse=True)
def _loguru_to_current_stderr() -> Iterator[None]:
    """The CLI points loguru at the CliRunner's stderr, closed after the call: log to the live stderr again."""
    yield
    logger.remove()
    logger.add(lambda message: sys.stderr.write(message), level="DEBUG")


async def session(
    tmp_path: Path, trades: list[tuple[int, str]], *, journal: bool = False, strategy: dict[str, Any] = STRATEGY,
    before: int = 0,
) -> tuple[PaperNode, dict[str, Any]]:
    """One daemon session on ``trades``, recording into ``tmp_path / "frames.jsonl.gz"`` (appended to), and with
    ``journal`` journaling into ``tmp_path / "journal.sqlite"`` (a restart recovers from it, with the ``before``
    trades its earlier sessions counted)."""
    async with LocalVenueServer(BinanceProtocol(SPOT_SNAPSHOT), trades) as srv:
        data = binance_config(srv.ws_url, srv.http_url, ["trade"], tmp=tmp_path, record=True, strategy=strategy,
                              journal=journal)
        node = PaperNode(config_of(data), handle_signals=False)
        await run_node(node, lambda: node.kernel.result.trades == before + len(trades))
    return node, data


async def test_a_recording_a_restarted_daemon_appended_to_is_refused_and_each_session_replays_as_it_ran(
    tmp_path: Path,
) -> None:
    first, _ = await session(tmp_path, TRADES[:12])
    second, data = await session(tmp_path, TRADES[12:])
    assert first.kernel.result.fills and second.kernel.result.fills
    recording = tmp_path / "frames.jsonl.gz"
    with gzip.open(recording, "rt", encoding="utf-8") as fh:
        starts = [n for n, line in enumerate(fh, 1) if json.loads(line)["c"] == "run:start"]
    assert len(starts) == 2 and starts[0] == 1

    config = tmp_path / "replay.yaml"
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    res = CliRunner().invoke(app, ["replay", str(recording), "--config", str(config), "--out", str(tmp_path / "all")])
    assert res.exit_code == 3, res.output
    message = " ".join(res.output.split())
    assert f"{recording}: line {starts[1]}: a second run:start" in message and "--session" in message
    assert not (tmp_path / "all" / "fills.csv").exists()

    for n, node in ((1, first), (2, second)):
        replay = play(recording, node.config, session=n)
        assert fill_keys(replay.kernel.result.fills) == fill_keys(node.kernel.result.fills), n
        assert order_keys(replay.kernel.result.orders) == order_keys(node.kernel.result.orders), n
        assert replay.kernel.result.trades == node.kernel.result.trades, n
    res = CliRunner().invoke(app, ["replay", str(recording), "--config", str(config), "--out", str(tmp_path / "two"),
                                   "--session", "2"])
    assert res.exit_code == 0, res.output
    with pytest.raises(DataError, match=r"holds 2 sessions \(run:start lines\); --session 3"):
        play(recording, second.config, session=3)


def _without_run(client_order_id: str) -> str:
    """A client order id without its run component (the daemon's journal draws it, a replay's is fixed)."""
    return client_order_id[:8] + client_order_id[16:]


def _keys(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return [(_without_run(row[0]), *row[1:]) for row in rows]


async def test_a_later_session_replays_from_what_the_daemon_restored_from_its_journal(tmp_path: Path) -> None:
    # limits resting $10 behind the price stay working: the first session stops with some
    strategy = {**STRATEGY, "params": {**STRATEGY["params"], "ticks": 1000, "keep": 4}}
    first, _ = await session(tmp_path, TRADES[:11], journal=True, strategy=strategy)
    # the first session stops holding a position and working orders; the restart restores them from the journal
    assert first.kernel.portfolio.position(IID) != 0.0 and first.kernel.orders.open_orders()
    second, _ = await session(tmp_path, TRADES[11:], journal=True, strategy=strategy, before=11)
    assert second.summary.recovered_orders == len(first.kernel.result.orders)
    assert second.summary.recovered_positions == {IID: first.kernel.portfolio.position(IID)}
    daemon = second.kernel.result
    # the restarted daemon's outputs hold both sessions: the first's orders (its working ones CANCELED) and fills
    assert len(daemon.fills) > len(first.kernel.result.fills) > 0
    assert any(o.reason and "restart" in o.reason for o in daemon.orders)

    # the first session too: its daemon's fresh journal began epoch 1 of its client order ids, as its replay must
    opened = play(tmp_path / "frames.jsonl.gz", first.config, session=1).kernel.result
    assert _keys(order_keys(opened.orders)) == _keys(order_keys(first.kernel.result.orders))
    assert _keys(fill_keys(opened.fills)) == _keys(fill_keys(first.kernel.result.fills))
    replay = play(tmp_path / "frames.jsonl.gz", second.config, session=2).kernel
    result = replay.result
    assert _keys(fill_keys(result.fills)) == _keys(fill_keys(daemon.fills))
    assert _keys(order_keys(result.orders)) == _keys(order_keys(daemon.orders))
    assert [(s.ts, s.equity, s.cash) for s in result.equity] == [(s.ts, s.equity, s.cash) for s in daemon.equity]
    assert result.trades == daemon.trades
    assert replay.portfolio.position(IID) == second.kernel.portfolio.position(IID)

    # a recording made before run:start said when and what the journal restored replays alike (recovering at run:start)
    lines = gzip.open(tmp_path / "frames.jsonl.gz", "rt", encoding="utf-8").read().splitlines()
    old = tmp_path / "old.jsonl.gz"
    with gzip.open(old, "wt", encoding="utf-8") as fh:
        fh.writelines(json.dumps({**rec, "d": ""} if rec["c"] == "run:start" else rec) + "\n" for rec in map(json.loads, lines))
    assert _keys(order_keys(play(old, second.config, session=2).kernel.result.orders)) == _keys(order_keys(daemon.orders))
    # the second session alone: its daemon restored orders of a session this file does not hold
    alone = tmp_path / "alone.jsonl.gz"
    starts = [n for n, line in enumerate(lines) if json.loads(line)["c"] == "run:start"]
    with gzip.open(alone, "wt", encoding="utf-8") as fh:
        fh.writelines(line + "\n" for line in lines[starts[1]:])
    # (a journal kept across recordings): warned of, naming both counts, and played from what the file rebuilds
    warned: list[str] = []
    sink = logger.add(lambda m: warned.append(m.record["message"]), level="WARNING")
    try:
        lone = play(alone, second.config).kernel.result
    finally:
        logger.remove(sink)
    assert [w for w in warned if f"journal restored {len(first.kernel.result.orders)} order(s) as this session started, "
            "the replay of the recording's earlier sessions 0" in w]
    assert lone.orders and not [o for o in lone.orders if o.reason and "restart" in o.reason]
    # a daemon restarted and stopped before any frame in between: its empty session is played too (a new epoch)
    between = json.loads(lines[starts[1]])["t"]
    empty = tmp_path / "empty.jsonl.gz"
    with gzip.open(empty, "wt", encoding="utf-8") as fh:
        fh.writelines(line + "\n" for line in lines[: starts[1]])
        fh.write(json.dumps({"t": between - 2, "c": "run:start", "d": json.dumps({"orders": len(first.kernel.result.orders),
                                                                                   "recovered_ns": between - 3})}) + "\n")
        fh.write(json.dumps({"t": between - 1, "c": "run:stop", "d": ""}) + "\n")
        fh.writelines(line + "\n" for line in lines[starts[1]:])

    def no_epoch(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        return [(row[0][:8] + row[0][19:], *row[1:]) for row in rows]

    third = play(empty, second.config, session=3).kernel.result
    assert no_epoch(order_keys(third.orders)) == no_epoch(order_keys(daemon.orders))
    assert no_epoch(fill_keys(third.fills)) == no_epoch(fill_keys(daemon.fills))


class _FlushedByTheJournalAlone(PaperNode):
    """A daemon whose recording is never flushed by its frame count or its age: only what the journal asks."""

    record_flush_every = 1_000_000
    record_flush_interval = math.inf


async def test_a_daemon_killed_after_journaling_an_order_leaves_the_frame_it_decided_on_in_its_recording(
    tmp_path: Path,
) -> None:
    # The recording is flushed every 256 frames or 1 s; a daemon killed (kill -9) between two flushes left its
    # journal holding orders decided on frames its recording lost: the replay of the restarted session rebuilt
    # fewer orders than the daemon restored ("journal restored 6 order(s) ..., the replay ... 5") and traded on
    # from another position. The file as it is on disk while the daemon waits for more frames is what a kill
    # would leave.
    strategy = {"name": "tests.live.resting_strategy:RestingBuy", "instruments": [IID],
                "params": {"quantity": 0.001, "price": 10_000.0}}
    killed = tmp_path / "killed.jsonl.gz"
    async with LocalVenueServer(BinanceProtocol(SPOT_SNAPSHOT), TRADES[:3]) as srv:
        data = binance_config(srv.ws_url, srv.http_url, ["trade"], tmp=tmp_path, record=True, strategy=strategy,
                              journal=True)
        node = _FlushedByTheJournalAlone(config_of(data), handle_signals=False)

        async def kill() -> None:
            killed.write_bytes((tmp_path / "frames.jsonl.gz").read_bytes())

        await run_node(node, lambda: node.kernel.result.trades == 3 and bool(node.kernel.orders.orders()), act=kill)
    (order,) = node.kernel.orders.orders()
    first_trade = TRADES[0][1]
    lines = [json.loads(line) for line in gzip.open(tmp_path / "frames.jsonl.gz", "rt", encoding="utf-8")]
    decided_on = next(line["t"] for line in lines if line["c"].startswith("binance-spot") and line["d"] == first_trade)
    assert order.ts_created == decided_on
    # what the kill left holds that frame, and a replay of it rebuilds the order the journal holds
    assert decided_on in [t for t, _, _ in read_frames(killed)]
    replayed = play(killed, node.config, session=1).kernel.orders.orders()
    assert [(_without_run(o.client_order_id), o.side, o.quantity, o.price) for o in replayed] == [
        (_without_run(order.client_order_id), order.side, order.quantity, order.price)
    ]
