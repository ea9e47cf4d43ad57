"""No trade silently lost: trades printed while the connection was down (or in a lost frame) are fetched.

The local Binance (OKX) server replays the real spot capture (the OKX v5 recording) and goes
on printing while the client is away (``Fault(DROP, missed=n)``: the frames go by without it); its REST
``historicalTrades`` (OKX ``history-trades``) serves the trades it has printed. The daemon's trades must equal the
capture's full list (ids, prices, sizes, order), and a playback of the daemon's recording
must see the same.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from loguru import logger

from tradebus.adapters.binance.emulator import BinanceProtocol
from tradebus.adapters.common.local_server import Fault, FaultKind, LocalVenueServer
from tradebus.adapters.common.recorder import FrameRecorder, read_frames
from tradebus.adapters.common.trade_gaps import TradeLine
from tradebus.adapters.okx.emulator import OkxProtocol
from tradebus.config.base import StrictModel
from tradebus.engine.messages import OrderSide, OrderSubmitted, Trade, TradesMissed
from tradebus.node.daemon import PaperNode
from tradebus.node.feeds import build_feeds
from tradebus.node.playback import Playback, play
from tradebus.strategies.base import Strategy

from .live_harness import until
from .node_testdata import (
    BYBIT_IID,
    BYBIT_INSTRUMENT,
    IID,
    OKX_IID,
    OKX_INSTRUMENT,
    SPOT_FRAMES,
    SPOT_SNAPSHOT,
    SPOT_TRADE_IDS,
    binance_config,
    config_of,
    fill_keys,
    okx_frames,
    order_keys,
    run_node,
    stream_config,
)

pytestmark = pytest.mark.usefixtures("compiled_kernels")

#: Every trade of the capture, in order: (id, price, size).
CAPTURE_TRADES = [
    (str(d["t"]), float(d["p"]), float(d["q"]))
    for d in (json.loads(raw)["data"] for _, raw in SPOT_FRAMES if "@trade" in raw)
]


def _keys(trades: list[Trade]) -> list[tuple[str, float, float]]:
    return [(t.trade_id, t.price, t.size) for t in trades]

def _stamps(messages: list) -> list[tuple[str, str | None, int]]:
    """The trades and TradesMissed a run saw: kind, trade id, receive time."""
    return [(type(m).__name__, getattr(m, "trade_id", None), m.ts_init) for m in messages]


def _replayed(config: Any, iid: str, tmp: Path) -> list[tuple[str, str | None, int]]:
    """:func:`_stamps` of a playback of the run's recording (``tmp/frames.jsonl.gz``) through ``config``."""
    play = Playback(config)
    replayed: list = []
    play.kernel.bus.subscribe(Trade, replayed.append, iid)
    play.kernel.bus.subscribe(TradesMissed, replayed.append)
    play.run(tmp / "frames.jsonl.gz")
    return _stamps(replayed)



async def _run(tmp: Path, faults: list[Fault], *, overlap: int, record: bool = False) -> tuple[PaperNode, list, BinanceProtocol]:
    proto = BinanceProtocol(SPOT_SNAPSHOT)
    seen: list = []
    async with LocalVenueServer(proto, SPOT_FRAMES, faults, resume_overlap=overlap, lifetime=60.0) as srv:
        data = binance_config(srv.ws_url, srv.http_url, ["trade", "bookTicker", "depth"], tmp=tmp, record=record)
        node = PaperNode(config_of(data), handle_signals=False)
        node.kernel.bus.subscribe(Trade, seen.append, IID)
        node.kernel.bus.subscribe(TradesMissed, seen.append)

        def done() -> bool:
            return sum(isinstance(m, Trade) for m in seen) >= len(CAPTURE_TRADES)

        await run_node(node, done, timeout=30.0)
    return node, seen, proto


async def test_trades_printed_while_the_connection_was_down_are_fetched_and_delivered_in_order(tmp_path: Path) -> None:
    # the connection drops at the 200th trade; 600 frames (trades, quotes, diffs) go by before it is back,
    # and the new connection starts 60 frames before where the venue is (some seen again, most never sent)
    faults = [Fault(FaultKind.DROP, at=200, match="@trade", missed=600)]
    node, seen, proto = await _run(tmp_path, faults, overlap=60, record=True)
    trades = [m for m in seen if isinstance(m, Trade)]
    assert node.summary.feeds["binance-spot"]["connections"] == 2
    assert _keys(trades) == CAPTURE_TRADES  # every trade once, in order, with its price and size
    (missed,) = [m for m in seen if isinstance(m, TradesMissed)]
    ids = [int(t) for t, _, _ in CAPTURE_TRADES]
    assert missed.first_id == ids[200] and missed.recovered == missed.last_id - missed.first_id + 1 > 0
    assert proto.trade_requests >= 1
    recovered = trades[200 : 200 + missed.recovered]
    assert all(t.ts_init == missed.ts_init for t in recovered)  # received with the REST answer

    # a playback of the recording recovers the same trades at the same place
    assert _replayed(config_of(binance_config(None, None, ["trade", "bookTicker", "depth"])), IID, tmp_path) == _stamps(seen)


async def test_a_trade_frame_lost_mid_stream_is_fetched_without_reconnecting(tmp_path: Path) -> None:
    faults = [Fault(FaultKind.SKIP, at=300, match="@trade")]
    node, seen, _ = await _run(tmp_path, faults, overlap=0)
    trades = [m for m in seen if isinstance(m, Trade)]
    assert node.summary.feeds["binance-spot"]["connections"] == 1
    assert _keys(trades) == CAPTURE_TRADES
    (missed,) = [m for m in seen if isinstance(m, TradesMissed)]
    assert (missed.first_id, missed.last_id, missed.recovered) == (int(CAPTURE_TRADES[300][0]), int(CAPTURE_TRADES[300][0]), 1)


async def test_orders_decided_on_trades_released_after_a_lost_frame_fill_as_in_a_replay(tmp_path: Path) -> None:
    # the trades held behind the gap are released after the REST answer, with their own (earlier)
    # receive times: an order decided on one of them arrives after all of them were received, so
    # it fills on the first trade received after it, as the replay of the recording fills it
    faults = [Fault(FaultKind.SKIP, at=300, match="@trade")]
    decided_on_held: list[OrderSubmitted] = []
    state: dict[str, Any] = {"missed": None, "trade": None}
    nodes: list[PaperNode] = []

    def synced() -> bool:
        feeds = nodes[0].feeds
        return bool(feeds) and feeds[0].feed.books["BTCUSDT"].synced  # type: ignore[attr-defined]

    async def gate(raw: str) -> None:
        # an order decided on an unsynced book is denied: a depth snapshot answered late on a loaded machine (its
        # fetch timed out and was sent again) let the whole capture go by before it, and no order was at stake
        if "@trade" in raw and not synced():
            await until(synced)

    async with LocalVenueServer(BinanceProtocol(SPOT_SNAPSHOT), SPOT_FRAMES, faults, gate=gate, lifetime=60.0) as srv:
        data = binance_config(srv.ws_url, srv.http_url, ["trade", "depth"], tmp=tmp_path, record=True)
        data["feeds"][0]["depth_speed"] = "100ms"
        node = PaperNode(config_of(data), handle_signals=False)
        nodes.append(node)
        result = node.kernel.result
        bus = node.kernel.bus
        bus.subscribe(TradesMissed, lambda m: state.update(missed=m))
        bus.subscribe(Trade, lambda t: state.update(trade=t), IID)

        def on_submitted(event: OrderSubmitted) -> None:
            missed, trade = state["missed"], state["trade"]
            if missed is not None and trade is not None and trade.ts_init < missed.ts_init:
                decided_on_held.append(event)

        bus.subscribe(OrderSubmitted, on_submitted)
        await run_node(node, lambda: result.trades == len(SPOT_TRADE_IDS))
    assert state["missed"] is not None and decided_on_held  # the case at stake happened
    replayed = play(tmp_path / "frames.jsonl.gz", node.config)
    assert fill_keys(result.fills) == fill_keys(replayed.kernel.result.fills)


class OnTradeIdsParams(StrictModel):
    """See :class:`OnTradeIds`."""

    side: OrderSide = OrderSide.BUY
    price: float
    submit_on: str
    cancel_on: str = ""
    quantity: float = 0.001


class OnTradeIds(Strategy):
    """A limit order at ``price`` decided on the trade of id ``submit_on``, canceled on the trade of id ``cancel_on``.

    ``decided`` holds the trades the decisions were taken on.
    """

    Params = OnTradeIdsParams

    def __init__(self, instrument_ids: str | Sequence[str], *, price: float, submit_on: str, cancel_on: str = "",
                 side: OrderSide = OrderSide.BUY, quantity: float = 0.001, strategy_id: str | None = None) -> None:
        super().__init__(instrument_ids, strategy_id=strategy_id)
        self.side, self.price, self.quantity = side, price, quantity
        self.submit_on, self.cancel_on = submit_on, cancel_on
        self.order = ""
        self.decided: list[Trade] = []

    def on_trade(self, trade: Trade) -> None:
        if trade.trade_id == self.submit_on:
            self.decided.append(trade)
            self.order = self.submit_limit(self.instrument_id, self.side, self.quantity, self.price)
        elif trade.trade_id == self.cancel_on:
            self.decided.append(trade)
            self.cancel(self.order)


async def _decide_on_released_trades(tmp: Path, params: dict[str, Any]) -> tuple[PaperNode, Playback, TradesMissed]:
    """A paper run of :class:`OnTradeIds` over the capture whose 300th trade frame is lost, and the replay of its
    recording. The server holds the 320th trade frame back until the daemon has released the trades held behind
    the gap: the trades after it are received after the recovery."""
    faults = [Fault(FaultKind.SKIP, at=300, match="@trade")]
    missed: list[TradesMissed] = []
    released = asyncio.Event()
    trade_frames = 0

    async def gate(raw: str) -> None:
        nonlocal trade_frames
        if "@trade" in raw:
            trade_frames += 1
            if trade_frames == 321:
                await released.wait()

    def on_missed(msg: TradesMissed) -> None:
        missed.append(msg)
        released.set()

    strategy = {"name": f"{__name__}:OnTradeIds", "instruments": [IID], "params": params}
    async with LocalVenueServer(BinanceProtocol(SPOT_SNAPSHOT), SPOT_FRAMES, faults, gate=gate, lifetime=60.0) as srv:
        data = binance_config(srv.ws_url, srv.http_url, ["trade"], tmp=tmp, record=True, strategy=strategy)
        node = PaperNode(config_of(data), handle_signals=False)
        node.kernel.bus.subscribe(TradesMissed, on_missed)
        result = node.kernel.result
        await run_node(node, lambda: result.trades == len(SPOT_TRADE_IDS))
    assert len(missed) == 1 and missed[0].first_id == int(CAPTURE_TRADES[300][0])
    return node, play(tmp / "frames.jsonl.gz", node.config), missed[0]


def _outcomes(node: PaperNode | Playback) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    result = node.kernel.result
    return order_keys(result.orders), fill_keys(result.fills)


@pytest.mark.parametrize("cancel_on", [300, 301], ids=["recovered", "held"])
async def test_a_cancel_decided_on_a_trade_released_after_a_lost_frame_arrives_as_in_a_replay(
    tmp_path: Path, cancel_on: int
) -> None:
    # a buy resting at 61829.9 (the 299th trade is at 61830.01) is canceled on the trade recovered by REST
    # (received with its answer) or on the first trade held behind the gap (received before it): the cancel
    # reaches the venue after every held trade was received, so the order still works during them and fills
    # at its limit on the 316th (61829.77), as in the replay; it was canceled at once, before them
    params = {"price": 61829.9, "submit_on": CAPTURE_TRADES[299][0], "cancel_on": CAPTURE_TRADES[cancel_on][0]}
    node, replayed, missed = await _decide_on_released_trades(tmp_path, params)
    canceled_on = node.kernel.strategies[0].decided[1]
    assert canceled_on.ts_init <= missed.ts_init  # the case at stake: decided during the release
    assert _outcomes(node) == _outcomes(replayed)
    assert [(f.price, f.liquidity) for f in node.kernel.result.fills] == [(61829.9, "MAKER")]


async def test_a_limit_decided_on_a_trade_released_after_a_lost_frame_is_judged_on_arrival_as_in_a_replay(
    tmp_path: Path,
) -> None:
    # a buy at 61829.9 decided on the first held trade (61830.0) reaches the venue after the last held
    # one (61829.77): it is marketable there and takes the next trade (61829.77), as in the replay; it
    # was accepted at once against 61830.0, rested and filled at its limit as a maker
    params = {"price": 61829.9, "submit_on": CAPTURE_TRADES[301][0]}
    node, replayed, missed = await _decide_on_released_trades(tmp_path, params)
    assert node.kernel.strategies[0].decided[0].ts_init < missed.ts_init  # the case at stake: a held trade
    assert _outcomes(node) == _outcomes(replayed)
    assert [(f.price, f.liquidity) for f in node.kernel.result.fills] == [(61829.77, "TAKER")]


# ----------------------------------------------------------------------------- OKX

#: The OKX recording's BTC-USDT trade pushes, and every trade of them in order: (tradeId, price, size).
OKX_TRADE_MATCH = '{"arg":{"channel":"trades","instId":"BTC-USDT"},"data"'
OKX_FRAMES = okx_frames()
OKX_TRADES = [
    (d["tradeId"], float(d["px"]), float(d["sz"]))
    for raw in (raw for _, raw in OKX_FRAMES if raw.startswith(OKX_TRADE_MATCH))
    for d in json.loads(raw)["data"]
]


def _okx_config(ws_url: str | None, rest_url: str | None, tmp: Path | None = None) -> dict:
    endpoints = {} if ws_url is None else {"ws_url": ws_url, "rest_url": rest_url}
    data = stream_config(OKX_INSTRUMENT, OKX_IID, "okx", "spot", ["trades", "books"], **endpoints)
    if tmp is not None:
        data["record"] = str(tmp / "frames.jsonl.gz")
    return data


async def _run_okx(tmp: Path, faults: list[Fault], *, overlap: int, history_lag: int = 0) -> tuple[PaperNode, list, OkxProtocol]:
    proto = OkxProtocol(OKX_FRAMES, history_lag=history_lag)
    seen: list = []
    async with LocalVenueServer(proto, OKX_FRAMES, faults, resume_overlap=overlap, lifetime=60.0) as srv:
        node = PaperNode(config_of(_okx_config(srv.ws_url, srv.http_url, tmp)), handle_signals=False)
        node.kernel.bus.subscribe(Trade, seen.append, OKX_IID)
        node.kernel.bus.subscribe(TradesMissed, seen.append)

        def done() -> bool:
            return sum(isinstance(m, Trade) for m in seen) >= len(OKX_TRADES)

        await run_node(node, done, timeout=30.0)
    return node, seen, proto


async def test_okx_trades_printed_while_the_connection_was_down_are_fetched_and_delivered_in_order(
    tmp_path: Path,
) -> None:
    # the connection drops at the 20th BTC-USDT trade push; 120 frames go by before it is back, and the
    # new connection starts 10 frames before where the venue is (a few seen again, most never sent)
    faults = [Fault(FaultKind.DROP, at=20, match=OKX_TRADE_MATCH, missed=120)]
    node, seen, proto = await _run_okx(tmp_path, faults, overlap=10)
    trades = [m for m in seen if isinstance(m, Trade)]
    assert node.summary.feeds["okx-public"]["connections"] == 2
    assert _keys(trades) == OKX_TRADES  # every trade once, in order, with its price and size
    (missed,) = [m for m in seen if isinstance(m, TradesMissed)]
    assert missed.first_id == int(OKX_TRADES[20][0]) and missed.recovered == missed.last_id - missed.first_id + 1 > 0
    assert proto.trade_requests >= 1
    recovered = trades[20 : 20 + missed.recovered]
    assert all(t.ts_init == missed.ts_init for t in recovered)  # received with the REST answer

    # a playback of the recording recovers the same trades at the same place
    assert _replayed(config_of(_okx_config(None, None)), OKX_IID, tmp_path) == _stamps(seen)


async def test_okx_trades_a_lagging_history_leaves_out_are_asked_for_again_and_a_playback_recovers_the_same(
    tmp_path: Path,
) -> None:
    # the history's first answer lacks the 3 newest missing ids (its cache is behind the stream): they were
    # reported lost for good; asked for again, they are recovered, and the recording holds both answers
    faults = [Fault(FaultKind.DROP, at=20, match=OKX_TRADE_MATCH, missed=120)]
    node, seen, proto = await _run_okx(tmp_path, faults, overlap=10, history_lag=3)
    trades = [m for m in seen if isinstance(m, Trade)]
    assert _keys(trades) == OKX_TRADES
    (missed,) = [m for m in seen if isinstance(m, TradesMissed)]
    assert missed.recovered == missed.last_id - missed.first_id + 1 > 3
    assert proto.trade_requests == 2
    assert all(t.ts_init == missed.ts_init for t in trades[20 : 20 + missed.recovered])
    answers = [json.loads(raw) for _, conn, raw in read_frames(tmp_path / "frames.jsonl.gz") if conn.startswith("rest-trades:")]
    assert [len(a) for a in answers] == [missed.recovered - 3, 3]

    assert _replayed(config_of(_okx_config(None, None)), OKX_IID, tmp_path) == _stamps(seen)


async def test_okx_trade_push_lost_mid_stream_is_fetched_without_reconnecting(tmp_path: Path) -> None:
    faults = [Fault(FaultKind.SKIP, at=30, match=OKX_TRADE_MATCH)]
    node, seen, _ = await _run_okx(tmp_path, faults, overlap=0)
    trades = [m for m in seen if isinstance(m, Trade)]
    assert node.summary.feeds["okx-public"]["connections"] == 1
    assert _keys(trades) == OKX_TRADES
    (missed,) = [m for m in seen if isinstance(m, TradesMissed)]
    assert (missed.first_id, missed.last_id, missed.recovered) == (int(OKX_TRADES[30][0]), int(OKX_TRADES[30][0]), 1)


def test_okx_playback_of_a_recording_ending_before_a_trade_gaps_recorded_fetch_delivers_the_held_trades(
    tmp_path: Path,
) -> None:
    """A trade push lost near the end and no recorded fetch after it (the daemon stopped during the fetch, or the
    recording was cut): the trades after the hole were held for good and the playback ended without them."""
    pushes = [i for i, (_, raw) in enumerate(OKX_FRAMES) if raw.startswith(OKX_TRADE_MATCH)]
    lost = pushes[-3]
    with FrameRecorder(tmp_path / "frames.jsonl.gz") as rec:
        for i, (recv_ns, raw) in enumerate(OKX_FRAMES):
            if i != lost:
                rec.write(recv_ns, "okx-public", raw)
    seen = _replayed(config_of(_okx_config(None, None)), OKX_IID, tmp_path)
    lost_ids = [d["tradeId"] for d in json.loads(OKX_FRAMES[lost][1])["data"]]
    assert [tid for kind, tid, _ in seen if kind == "Trade"] == [t for t, _, _ in OKX_TRADES if t not in lost_ids]
    assert [kind for kind, _, _ in seen].count("TradesMissed") == 1


def test_a_bybit_trade_feed_says_once_that_trade_continuity_cannot_be_checked() -> None:
    logs: list[str] = []
    handler = logger.add(lambda m: logs.append(m.record["message"]), level="WARNING")
    try:
        data = stream_config(BYBIT_INSTRUMENT, BYBIT_IID, "bybit", "linear", ["publicTrade", "orderbook.50"])
        build_feeds(config_of(data), [].append, live=True)
    finally:
        logger.remove(handler)
    assert [m for m in logs if "continuity" in m] == [
        "bybit-linear: Bybit public trade ids are not sequential: trade continuity cannot be checked, so trades "
        "printed while the connection is down are missing (no TradesMissed)"
    ]


# ----------------------------------------------------------------------------- a stop during a fetch


def _pending_gap(node: PaperNode) -> TradeLine | None:
    """The line of the daemon's (one) feed whose trade-gap recovery is pending, if any."""
    feed: Any = node.feeds[0] if node.feeds else None
    if feed is None:
        return None
    gaps = feed.parser.gaps if hasattr(feed, "parser") else feed.feed.gaps
    return next((line for line in gaps.lines.values() if line.held is not None), None)


async def _stop_during_the_fetch(
    tmp: Path, proto: Any, frames: Sequence[tuple[int, str]], fault: Fault, data_of: Any, strategy: dict[str, Any],
    held: int,
) -> tuple[PaperNode, list, list[str]]:
    """A paper run whose trade feed loses one trade frame (``fault``); the REST answer of the fetch of the missed
    trades is held back by the server until the daemon has stopped, ``held`` trade frames after the gap."""
    answer = asyncio.Event()
    asked: list[str] = []

    async def http_gate(path: str) -> None:
        if "rades" in path:  # historicalTrades, aggTrades, history-trades
            asked.append(path)
            await answer.wait()

    seen: list = []
    async with LocalVenueServer(proto, frames, [fault], http_gate=http_gate, lifetime=60.0) as srv:
        node = PaperNode(config_of(data_of(srv, strategy)), handle_signals=False)
        node.kernel.bus.subscribe(Trade, seen.append)
        node.kernel.bus.subscribe(TradesMissed, seen.append)

        def done() -> bool:
            line = _pending_gap(node)
            return bool(asked) and line is not None and line.held is not None and len(line.held) >= held

        try:
            await run_node(node, done, timeout=30.0)
        finally:
            answer.set()  # answered once the daemon has stopped (its client gone)
            await asyncio.sleep(0.05)
    return node, seen, asked


def _check_agrees(node: PaperNode, seen: list, asked: list[str], tmp: Path, submit_on: str) -> None:
    """The daemon's trades, ``TradesMissed``, orders and fills are its recording's replay's; nothing recorded after
    the stop; the trades held behind the gap released at the stop (``submit_on`` the held trade decided on)."""
    assert asked  # the case at stake: the fetch was in flight (its answer held) when the daemon stopped
    again: list = []
    replay = Playback(node.config)
    replay.kernel.bus.subscribe(Trade, again.append)
    replay.kernel.bus.subscribe(TradesMissed, again.append)
    replay.run(tmp / "frames.jsonl.gz")
    assert _stamps(seen) == _stamps(again)
    assert _outcomes(node) == _outcomes(replay)
    lines = list(read_frames(tmp / "frames.jsonl.gz", episodes=True, runs=True, ends=True))
    assert lines[-1][1] == "run:stop"  # nothing recorded after the stop (no late answer)
    assert not any(conn.startswith("rest-trades:") for _, conn, _ in lines)
    (missed,) = [m for m in seen if isinstance(m, TradesMissed)]
    assert (missed.recovered, missed.ts_init) == (0, lines[-1][0])  # given up at the stop, nothing recovered
    assert _pending_gap(node) is None
    assert [m.trade_id for m in node.kernel.strategies[0].decided] == [submit_on]
    assert len(node.kernel.result.orders) == 1


async def test_trades_held_behind_a_gap_whose_fetch_the_stop_cut_short_are_released_as_in_a_replay(
    tmp_path: Path,
) -> None:
    # the 300th trade frame is lost; the fetch of its trade is answered only after the daemon stopped, 20 trades
    # later: the daemon held them for good (no buy decided on the 310th) while the replay of its recording,
    # ending there, released them and decided the buy
    submit_on = CAPTURE_TRADES[310][0]
    strategy = {"name": f"{__name__}:OnTradeIds", "instruments": [IID],
                "params": {"price": 61829.9, "submit_on": submit_on}}

    def data_of(srv: LocalVenueServer, strategy: dict[str, Any]) -> dict:
        return binance_config(srv.ws_url, srv.http_url, ["trade"], tmp=tmp_path, record=True, strategy=strategy)

    fault = Fault(FaultKind.SKIP, at=300, match="@trade")
    node, seen, asked = await _stop_during_the_fetch(
        tmp_path, BinanceProtocol(SPOT_SNAPSHOT), SPOT_FRAMES, fault, data_of, strategy, held=20
    )
    _check_agrees(node, seen, asked, tmp_path, submit_on)


async def test_okx_trades_held_behind_a_gap_whose_fetch_the_stop_cut_short_are_released_as_in_a_replay(
    tmp_path: Path,
) -> None:
    pushes = [json.loads(raw)["data"] for _, raw in OKX_FRAMES if raw.startswith(OKX_TRADE_MATCH)]
    submit_on = pushes[35][0]["tradeId"]
    strategy = {"name": f"{__name__}:OnTradeIds", "instruments": [OKX_IID],
                "params": {"price": float(pushes[35][0]["px"]), "submit_on": submit_on}}

    def data_of(srv: LocalVenueServer, strategy: dict[str, Any]) -> dict:
        data = _okx_config(srv.ws_url, srv.http_url, tmp_path)
        data["strategy"] = strategy
        return data

    fault = Fault(FaultKind.SKIP, at=30, match=OKX_TRADE_MATCH)
    node, seen, asked = await _stop_during_the_fetch(
        tmp_path, OkxProtocol(OKX_FRAMES), OKX_FRAMES, fault, data_of, strategy, held=10
    )
    _check_agrees(node, seen, asked, tmp_path, submit_on)
