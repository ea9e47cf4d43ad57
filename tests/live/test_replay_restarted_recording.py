"""A recording two daemon sessions appended to (the daemon restarted on the same ``record:`` file).

A replay plays one kernel from one ``run:start``: it calls no ``on_start`` again and keeps the first
session's simulated venue, where the restarted daemon began anew. So ``tradebus replay`` refuses such
a recording, naming the file and the line of the second ``run:start``, and ``--session N`` replays
the N-th session alone, as that daemon ran it.
"""

from __future__ import annotations

import gzip
import json
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


async def session(tmp_path: Path, trades: list[tuple[int, str]]) -> tuple[PaperNode, dict[str, Any]]:
    """One daemon session on ``trades``, recording into ``tmp_path / "frames.jsonl.gz"`` (appended to)."""
    async with LocalVenueServer(BinanceProtocol(SPOT_SNAPSHOT), trades) as srv:
        data = binance_config(srv.ws_url, srv.http_url, ["trade"], tmp=tmp_path, record=True, strategy=STRATEGY)
        node = PaperNode(config_of(data), handle_signals=False)
        await run_node(node, lambda: node.kernel.result.trades == len(trades))
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
