"""Bars built from live trades: the paper daemon and the playback of one capture deliver the same bars."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from tradebus.adapters.binance.emulator import BinanceProtocol
from tradebus.adapters.common.trade_gaps import RETRIES
from tradebus.adapters.common.local_server import Fault, FaultKind, LocalVenueServer
from tradebus.config import load_config
from tradebus.engine.kernel import Kernel
from tradebus.engine.messages import Bar, Trade, TradesMissed
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

TRADES_FILE = Path(__file__).resolve().parents[1] / "fixtures" / "data" / "btcusdt-trades.parquet"
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
    ts, values = BarBuilder("time", interval_ns=2_000_000_000, whole_only=True).run(
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


def test_the_first_bar_left_out_is_logged_with_its_instrument() -> None:
    """A paper run of ETHUSDT and BTCUSDT bars logged 'time bars: the bar closing at 23:54:20 is not emitted ...'
    twice, naming neither instrument."""
    from loguru import logger

    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m).rstrip()), format="{message}", level="INFO")
    try:
        playback = Playback(config_of(_with_bars(binance_config("ws://unused", "http://unused", ["trade"],
                                                                strategy=BAR_STRATEGY))))
        playback.run(SPOT_CAPTURE)
    finally:
        logger.remove(sink)
    first = json.loads(next(raw for _, raw in SPOT_FRAMES if "@trade" in raw))["data"]["T"]
    assert first % 2000  # the capture starts inside a 2 s bar
    close = np.datetime64((first // 2000 + 1) * 2_000_000_000, "ns")
    dropped = [line for line in lines if "is not emitted" in line]
    assert dropped == [f"{IID}: time bars: the bar closing at {close} is not emitted: the first trade seen came "
                       "inside it, after trades not seen (a run started mid-bar)"]


def _capture_bars() -> dict[int, tuple[float, ...]]:
    """The 2 s bars of the whole capture's trades, by close: pandas, closed and labelled right of [start, end)."""
    rows = [json.loads(raw)["data"] for _, raw in SPOT_FRAMES if "@trade" in raw]
    t = pd.DataFrame({"price": [float(d["p"]) for d in rows], "size": [float(d["q"]) for d in rows]},
                     index=pd.to_datetime([d["T"] for d in rows], unit="ms"))
    r = t.resample("2s", closed="left", label="right")
    bars = pd.DataFrame({"open": r.price.first(), "high": r.price.max(), "low": r.price.min(),
                         "close": r.price.last(), "volume": r["size"].sum()}).dropna()
    return {int(ts.value): tuple(row) for ts, row in zip(bars.index, bars.itertuples(index=False), strict=True)}


async def test_a_daemon_restarted_mid_bar_delivers_no_partial_bar(tmp_path: Path) -> None:
    # the first process stops 1.3 s into a 2 s bar; the restarted one (same journal) gets the frames after it
    trades = [json.loads(raw)["data"] for _, raw in SPOT_FRAMES if "@trade" in raw]
    cut = next(k for k, d in enumerate(trades) if d["T"] % 2000 >= 1300 and k > 300)
    at = [k for k, (_, raw) in enumerate(SPOT_FRAMES) if "@trade" in raw][cut]
    whole = _capture_bars()
    delivered: list[list[Bar]] = []
    # the restart takes back the run's counts from the journal (its trades count every session's)
    for frames, count in ((SPOT_FRAMES[:at], cut), (SPOT_FRAMES[at:], len(trades))):
        async with LocalVenueServer(BinanceProtocol(SPOT_SNAPSHOT), frames) as srv:
            data = binance_config(srv.ws_url, srv.http_url, ["trade"], tmp=tmp_path, journal=True,
                                  strategy=BAR_STRATEGY)
            node = PaperNode(config_of(_with_bars(data)), handle_signals=False)
            bars: list[Bar] = []
            node.kernel.bus.subscribe(Bar, bars.append, IID)
            result = node.kernel.result
            await run_node(node, lambda: result.trades == count)  # noqa: B023 - awaited in the loop
        assert result.trades == count
        delivered.append(bars)
    first, second = delivered
    assert len(first) >= 5 and len(second) >= 5
    # every bar either process delivered is the whole bar of the capture at that close: none partial
    for bar in first + second:
        assert (bar.open, bar.high, bar.low, bar.close) == whole[bar.ts_event][:4]
        assert bar.volume == pytest.approx(whole[bar.ts_event][4], rel=1e-12)
    # the bar the restart fell in is delivered by neither; the restarted daemon goes on from the next
    restart_bar = (trades[cut]["T"] // 2000 + 1) * 2_000_000_000
    assert first[-1].ts_event < restart_bar < second[0].ts_event == restart_bar + 2_000_000_000


async def test_no_bar_is_delivered_over_trades_lost_for_good_and_the_next_whole_one_is(tmp_path: Path) -> None:
    # five trades in a row never reach the daemon and the venue's trade history fails (HTTP 503) at every
    # attempt (the first and its RETRIES): they are lost for good. They were printed between the trade
    # before them and the one after, in two 2 s bars.
    trades = [json.loads(raw)["data"] for _, raw in SPOT_FRAMES if "@trade" in raw]
    cut = next(k for k in range(300, len(trades)) if trades[k + 5]["T"] // 2000 == trades[k - 1]["T"] // 2000 + 1)
    faults = [Fault(FaultKind.SKIP, at=k, match="@trade") for k in range(cut, cut + 5)]
    proto = BinanceProtocol(SPOT_SNAPSHOT, trade_failures=1 + RETRIES)
    async with LocalVenueServer(proto, SPOT_FRAMES, faults) as srv:
        data = binance_config(srv.ws_url, srv.http_url, ["trade"], tmp=tmp_path, strategy=BAR_STRATEGY)
        node = PaperNode(config_of(_with_bars(data)), handle_signals=False)
        bars: list[Bar] = []
        missed: list[TradesMissed] = []
        node.kernel.bus.subscribe(Bar, bars.append, IID)
        node.kernel.bus.subscribe(TradesMissed, missed.append)
        result = node.kernel.result
        await run_node(node, lambda: result.trades == len(trades) - 5)
    assert result.trades == len(trades) - 5 and proto.trade_requests == 1 + RETRIES
    assert [(m.first_id, m.last_id, m.recovered) for m in missed] == [(trades[cut]["t"], trades[cut + 4]["t"], 0)]
    whole = _capture_bars()
    lost = [(trades[k]["T"] // 2000 + 1) * 2_000_000_000 for k in (cut - 1, cut + 5)]
    closes = [b.ts_event for b in bars]
    # every bar delivered is the capture's whole bar at that close; the two over the lost trades are not delivered
    for bar in bars:
        assert (bar.open, bar.high, bar.low, bar.close) == whole[bar.ts_event][:4]
        assert bar.volume == pytest.approx(whole[bar.ts_event][4], rel=1e-12)
    assert not set(lost) & set(closes)
    assert lost[1] + 2_000_000_000 in closes and lost[0] - 2_000_000_000 in closes
    # and nothing else is missing: every close of the capture but the first (partial), the last (never over) and those two
    assert closes == [c for c in sorted(whole)[1:-1] if c not in lost]


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


def test_an_infinite_threshold_is_a_config_error_naming_its_key(tmp_path: Path) -> None:
    """``threshold: .inf`` passed config validation and stopped the run later at its kernel's build with
    'features: volume bars need a finite threshold > 0' (no file, no key), a paper config as a backtest's."""
    with pytest.raises(ConfigError, match=r"bars\.BTCUSDT\.BINANCE\.threshold: Input should be a finite number"):
        config_of({**binance_config("ws://unused", "http://unused", ["trade"]),
                   "bars": {IID: {"mode": "volume", "threshold": float("inf")}}})
    run = tmp_path / "run.yaml"
    run.write_text(yaml.safe_dump({
        "data": {"sources": [{"instrument": IID, "kind": "trades", "file": str(TRADES_FILE),
                              "bars": {"mode": "dollar", "threshold": float("inf")}}]},
        "instruments": [{"venue": "BINANCE", "symbol": "BTCUSDT", "tick_size": 0.01, "lot_size": 1e-5}],
        "strategy": BAR_STRATEGY,
    }))
    with pytest.raises(ConfigError, match=rf"{run}: invalid config:\n  data\.sources\.0\.bars\.threshold: Input "
                                          "should be a finite number"):
        load_config(run)
