"""Backtest == paper: one recorded stream run as a playback and through the daemon gives the same trading."""

from __future__ import annotations

from pathlib import Path

from tradebus.adapters.binance.emulator import BinanceProtocol
from tradebus.adapters.common.local_server import LocalVenueServer
from tradebus.node.playback import play
from tradebus.node.daemon import PaperNode

from .node_testdata import (
    SPOT_CAPTURE,
    SPOT_FRAMES,
    SPOT_QUOTES,
    SPOT_SNAPSHOT,
    SPOT_TRADE_IDS,
    binance_config,
    config_of,
    fill_keys,
    order_keys,
    run_node,
)


async def test_paper_daemon_and_playback_of_the_same_capture_give_identical_orders_and_fills(tmp_path: Path) -> None:
    # (a) the capture played back as a backtest (simulated clock at the recorded receive times)
    config = config_of(binance_config("ws://unused", "http://unused", ["trade", "bookTicker"]))
    backtest = play(SPOT_CAPTURE, config)
    # (b) the daemon (wall clock) connected to a local server replaying the same capture
    async with LocalVenueServer(BinanceProtocol(SPOT_SNAPSHOT), SPOT_FRAMES) as srv:
        data = binance_config(srv.ws_url, srv.http_url, ["trade", "bookTicker"], tmp=tmp_path, record=True)
        node = PaperNode(config_of(data), handle_signals=False)
        result = node.kernel.result
        await run_node(node, lambda: result.trades == len(SPOT_TRADE_IDS) and result.quotes == SPOT_QUOTES)
    assert result.trades == backtest.kernel.result.trades == len(SPOT_TRADE_IDS)
    assert result.quotes == backtest.kernel.result.quotes == SPOT_QUOTES
    assert len(backtest.kernel.result.fills) >= 15  # the strategy really trades on this capture
    assert fill_keys(result.fills) == fill_keys(backtest.kernel.result.fills)
    assert order_keys(result.orders) == order_keys(backtest.kernel.result.orders)
    # the daemon's own recording, played back, gives the same again
    replayed = play(tmp_path / "frames.jsonl.gz", node.config)
    assert fill_keys(replayed.kernel.result.fills) == fill_keys(result.fills)
    # receive times differ (wall clock vs recorded), so do the times the kernel stamps
    assert result.start_ns != backtest.kernel.result.start_ns
