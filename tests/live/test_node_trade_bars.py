"""Bars built from live trades: the paper daemon and the playback of one capture deliver the same bars."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tradebus.adapters.binance.emulator import BinanceProtocol
from tradebus.adapters.common.local_server import LocalVenueServer
from tradebus.engine.kernel import Kernel
from tradebus.engine.messages import Bar, Trade
from tradebus.errors import ConfigError
from tradebus.features.bars import BarBuilder
from tradebus.node.daemon import PaperNode
from tradebus.node.playback import Playback

from .node_testdata import (
    IID,
    SPOT_CAPTURE,
    SPOT_FRAMES,
    SPOT_SNAPSHOT,
    SPOT_TRADE_IDS,
    binance_config,
    config_of,
    fill_keys,
    order_keys,
    run_node,
)

BARS = {IID: {"mode": "time", "interval": "2s"}}
BAR_STRATEGY = {"name": "ema_cross", "instruments": [IID], "params": {"fast": 2, "slow": 4, "quantity": 0.01}}


def _with_bars(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "bars": BARS}


def _tape(kernel: Kernel) -> list[Trade | Bar]:
    """Every trade and bar of ``IID`` the kernel publishes, in order."""
    tape: list[Trade | Bar] = []
    kernel.bus.subscribe(Trade, tape.append, IID)
    kernel.bus.subscribe(Bar, tape.append, IID)
    return tape


def _check_against_builder(tape: list[Trade | Bar]) -> list[tuple[float, ...]]:
    """The tape's bars equal BarBuilder.run over its trades, each right after the trade completing it."""
    trades = [m for m in tape if isinstance(m, Trade)]
    bars = [m for m in tape if isinstance(m, Bar)]
    ts, values = BarBuilder("time", interval_ns=2_000_000_000).run(
        np.array([t.ts_event for t in trades]), np.array([t.price for t in trades]),
        np.array([t.size for t in trades]), np.array([int(t.aggressor) for t in trades]))
    keys = [(b.ts_event, b.open, b.high, b.low, b.close, b.volume) for b in bars]
    assert keys == [(int(t), *v[:5].tolist()) for t, v in zip(ts, values, strict=True)]
    for k, msg in enumerate(tape):
        if isinstance(msg, Bar):
            completing = tape[k - 1]
            assert isinstance(completing, Trade) and msg.ts_init == completing.ts_init
            assert completing.ts_event >= msg.ts_event  # known only once a trade shows the bar is over
    return keys


async def test_paper_daemon_and_playback_deliver_the_same_bars_built_from_trades(tmp_path: Path) -> None:
    config = config_of(_with_bars(binance_config("ws://unused", "http://unused", ["trade"], strategy=BAR_STRATEGY)))
    playback = Playback(config)
    replayed = _tape(playback.kernel)
    playback.run(SPOT_CAPTURE)
    async with LocalVenueServer(BinanceProtocol(SPOT_SNAPSHOT), SPOT_FRAMES) as srv:
        data = binance_config(srv.ws_url, srv.http_url, ["trade"], tmp=tmp_path, strategy=BAR_STRATEGY)
        node = PaperNode(config_of(_with_bars(data)), handle_signals=False)
        live = _tape(node.kernel)
        result = node.kernel.result
        await run_node(node, lambda: result.trades == len(SPOT_TRADE_IDS))
    assert result.trades == len(SPOT_TRADE_IDS)
    bars = _check_against_builder(live)
    assert len(bars) >= 15
    assert bars == _check_against_builder(replayed)
    # the bar strategy trades on them alike (fills on trades: the bars never reach the venue)
    assert len(result.fills) >= 3
    assert fill_keys(result.fills) == fill_keys(playback.kernel.result.fills)
    assert order_keys(result.orders) == order_keys(playback.kernel.result.orders)


def test_paper_bars_need_a_trades_feed_and_let_a_bar_strategy_run_on_trades() -> None:
    with pytest.raises(ConfigError, match="acts on bars, but the run has only trades"):
        config_of(binance_config("ws://unused", "http://unused", ["trade"], strategy=BAR_STRATEGY))
    with pytest.raises(ConfigError, match=r"bars\.BTCUSDT\.BINANCE: bars are built from trades"):
        config_of(_with_bars(binance_config("ws://unused", "http://unused", ["bookTicker"])))
    with pytest.raises(ConfigError, match=r"bars\.BTCUSDT\.BINANCE\.threshold"):
        config_of({**binance_config("ws://unused", "http://unused", ["trade"]),
                   "bars": {IID: {"mode": "tick", "threshold": 0}}})
    config = config_of(_with_bars(binance_config("ws://unused", "http://unused", ["trade"], strategy=BAR_STRATEGY)))
    assert config.data_kinds() == {IID: {"trades", "bars"}}
