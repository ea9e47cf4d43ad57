"""A paper daemon on OKX or Bybit and ``tradebus replay`` of its own recording write the same outputs.

The daemon trades a real capture served by the local venue emulator (books, trades, tickers), with
market and limit orders, marketable and resting (:class:`~tests.live.mixed_orders_strategy.MixedOrders`),
and records what it received; the replay plays that recording on a simulated clock at its receive times.
What the daemon saw live is the truth: every output file must be byte for byte the daemon's, also
``orders.csv`` ``ts_created`` (the decision's time: the daemon decides on a frame at its receive time,
where the replay's clock stands). Also with the emulator dropping the connection (the new connection's
subscription brings a book snapshot on the stream) and with a corrupt OKX books checksum (a resync).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from loguru import logger
from typer.testing import CliRunner

from tradebus.adapters.bybit.emulator import BybitProtocol
from tradebus.adapters.common.local_server import Fault, FaultKind, LocalVenueServer, StreamBookProtocol
from tradebus.adapters.okx.emulator import OkxProtocol
from tradebus.cli import app
from tradebus.engine.messages import BookResynced
from tradebus.node.config import dump_paper_config
from tradebus.node.daemon import PaperNode, kept_files
from tradebus.reports.outputs import write_outputs
from tradebus.reports.writers import RunDirectory

from .node_testdata import OKX_IID, OKX_INSTRUMENT, bybit_linear_frames, config_of, okx_frames, run_node

COMPARED = ("fills.csv", "orders.csv", "equity.csv", "metrics.json", "prices.csv", "funding.csv", "trades.csv",
            "attribution.csv")

SOL_IID = "SOLUSDT-LINEAR.BYBIT"
SOL_INSTRUMENT = {"venue": "BYBIT", "symbol": "SOLUSDT-LINEAR", "kind": "perpetual", "base": "SOL", "quote": "USDT",
                  "tick_size": 0.01, "lot_size": 0.1, "taker_fee": 0.00055, "maker_fee": 0.0002}
OKX_BOOK_UPDATE = '"instId":"BTC-USDT"},"action":"update"'


@pytest.fixture(autouse=True)
def _loguru_to_current_stderr() -> Iterator[None]:
    """The CLI points loguru at the CliRunner's stderr, closed after the call: log to the live stderr again."""
    yield
    logger.remove()
    logger.add(lambda message: sys.stderr.write(message), level="DEBUG")


def okx_config() -> dict[str, Any]:
    return {
        "instruments": [OKX_INSTRUMENT],
        "strategy": {"name": "tests.live.mixed_orders_strategy:MixedOrders", "instruments": [OKX_IID],
                     "params": {"every": 2, "quantity": 0.001}},
        "venue": {"fill_on": "trades"},
        "feeds": [{"venue": "okx", "market": "spot", "subscriptions": {OKX_IID: ["trades", "tickers", "books"]},
                   "backoff": {"base": 0.05, "cap": 0.2, "min_delay": 0.01}}],
        "warm_up": False,
        "report": {"equity_interval": "1s"},
    }


def bybit_config() -> dict[str, Any]:
    return {
        "instruments": [SOL_INSTRUMENT],
        "strategy": {"name": "tests.live.mixed_orders_strategy:MixedOrders", "instruments": [SOL_IID],
                     "params": {"every": 2, "quantity": 0.1}},
        "venue": {"fill_on": "trades"},
        "feeds": [{"venue": "bybit", "market": "linear",
                   "subscriptions": {SOL_IID: ["publicTrade", "tickers", "orderbook.200"]},
                   "backoff": {"base": 0.05, "cap": 0.2, "min_delay": 0.01}}],
        "warm_up": False,
        "report": {"equity_interval": "1s"},
    }


async def paper_run(tmp_path: Path, data: dict[str, Any], protocol: StreamBookProtocol, frames: list[tuple[int, str]],
                    faults: list[Fault], speed: float | None) -> tuple[PaperNode, list[BookResynced]]:
    """Run the daemon on ``frames`` served by ``protocol`` until the emulator has served them all; write its outputs
    to ``tmp_path / "paper"`` and its recording to ``tmp_path / "frames.jsonl.gz"``."""
    async with LocalVenueServer(protocol, frames, faults, speed=speed, resume_overlap=20, lifetime=120.0) as srv:
        feed = data["feeds"][0]
        config = config_of({**data, "feeds": [{**feed, "ws_url": srv.ws_url}], "record": str(tmp_path / "frames.jsonl.gz")})
        run_dir = RunDirectory(tmp_path / "paper", "paper", keep=kept_files(config))
        node = PaperNode(config, handle_signals=False, run_dir=run_dir)
        resynced: list[BookResynced] = []
        node.kernel.bus.subscribe(BookResynced, resynced.append)
        # the served frames all sent, and a fault's resync seen: frames still unread at the stop are not handled
        await run_node(node, lambda: srv.cursor >= len(frames) and (not faults or bool(resynced)), timeout=60.0)
    write_outputs(run_dir, node.kernel.result, node.kernel.instruments, dump_paper_config(node.config), {}, node.outputs)
    run_dir.close()
    return node, resynced


def assert_replay_writes_the_daemons_outputs(tmp_path: Path, data: dict[str, Any]) -> None:
    config = tmp_path / "replay.yaml"
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    replay = tmp_path / "replay"
    res = CliRunner().invoke(app, ["replay", str(tmp_path / "frames.jsonl.gz"), "--config", str(config), "--out", str(replay)])
    assert res.exit_code == 0, res.output
    for name in COMPARED:
        paper_text = (tmp_path / "paper" / name).read_text(encoding="utf-8")
        replay_text = (replay / name).read_text(encoding="utf-8")
        assert replay_text == paper_text, name


@pytest.mark.parametrize("fault", ["none", "checksum"])
async def test_okx_paper_run_and_the_replay_of_its_recording_write_the_same_outputs(tmp_path: Path, fault: str) -> None:
    frames = okx_frames()
    faults = [Fault(FaultKind.CORRUPT, at=50, match=OKX_BOOK_UPDATE, field="checksum", value=123)] if fault != "none" else []
    data = okx_config()
    node, resynced = await paper_run(tmp_path, data, OkxProtocol(frames), frames, faults, speed=None if faults else 4.0)
    result = node.kernel.result
    assert len(result.fills) >= 10 and any(f.liquidity.lower() == "maker" for f in result.fills)
    assert any(f.liquidity.lower() == "taker" for f in result.fills)
    if faults:
        assert [r.reason for r in resynced if "checksum" in r.reason] and node.feeds[0].client.resubscriptions == 1  # type: ignore[union-attr]
    assert_replay_writes_the_daemons_outputs(tmp_path, data)


@pytest.mark.parametrize("fault", ["none", "drop"])
async def test_bybit_paper_run_and_the_replay_of_its_recording_write_the_same_outputs(tmp_path: Path, fault: str) -> None:
    frames = bybit_linear_frames()
    faults = [Fault(FaultKind.DROP, at=150, match='"topic":"orderbook.200.SOLUSDT"')] if fault != "none" else []
    data = bybit_config()
    node, resynced = await paper_run(tmp_path, data, BybitProtocol(frames), frames, faults, speed=8.0)
    result = node.kernel.result
    assert len(result.fills) >= 10 and any(f.liquidity.lower() == "maker" for f in result.fills)
    if faults:
        assert node.summary.feeds["bybit-linear"]["connections"] == 2
        assert [r.reason for r in resynced if r.reason.startswith("connection lost")]
    assert_replay_writes_the_daemons_outputs(tmp_path, data)


async def test_an_order_of_on_start_before_the_books_synced_replays_as_the_daemon_sent_it(tmp_path: Path) -> None:
    # the daemon starts its strategies before its feeds exist: the iceberg's first tip, decided in on_start, is
    # checked by no book and fills on the first trade; the replay must not deny it 'book unsynced'
    frames = okx_frames()
    data = {**okx_config(), "strategy": {"name": "tests.live.iceberg_strategy:IcebergBuy", "instruments": [OKX_IID],
                                         "params": {"quantity": 0.006, "price": 30236.0, "display": 0.002}}}
    node, _ = await paper_run(tmp_path, data, OkxProtocol(frames), frames, [], speed=None)
    first = node.kernel.result.orders[0]
    assert first.filled_qty == 0.002 and not first.reason
    assert_replay_writes_the_daemons_outputs(tmp_path, data)
