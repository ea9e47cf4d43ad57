"""A paper daemon decides on a frame at the frame's receive time, as the replay of its recording does.

The daemon's handler may run well after the frame was received (a busy loop, a slow strategy);
the replay's simulated clock stands at the recorded receive time. An order decided on the frame
must arrive at the simulated venue at receive time + latency in both, or a frame received in
between is matched differently.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from tests.live.busy_strategy import AcceptWatch, BookWatch, BusyBuy
from tests.live.test_outputs_paper_vs_replay_okx_bybit import SOL_IID, bybit_config
from tradebus.adapters.binance.emulator import BinanceProtocol
from tradebus.adapters.bybit.emulator import BybitProtocol
from tradebus.adapters.common.local_server import Fault, FaultKind, LocalVenueServer
from tradebus.adapters.common.recorder import read_frames
from tradebus.engine.messages import OrderStatus
from tradebus.node.daemon import PaperNode
from tradebus.node.playback import play

from .node_testdata import (
    IID,
    SPOT_FRAMES,
    SPOT_SNAPSHOT,
    binance_config,
    bybit_linear_frames,
    config_of,
    fill_keys,
    order_keys,
    run_node,
)


def _strategy(node: Any) -> BusyBuy:
    strategy = node.kernel.strategies[0]
    assert isinstance(strategy, BusyBuy)
    return strategy


async def test_an_order_a_busy_daemon_decides_on_a_trade_arrives_and_fills_as_in_the_replay(tmp_path: Path) -> None:
    # The fifth trade holds the loop 150 ms past its receipt, then buys (latency 50 ms): trades 6-9,
    # received after the stretch, fall between receipt + latency and handling + latency. The order
    # must reach the venue before them in the daemon as in the replay, and fill at trade 6.
    trades = [frame for frame in SPOT_FRAMES if "@trade" in frame[1]][:12]
    nodes: list[PaperNode] = []

    def arrived() -> bool:
        return any(o.status is not OrderStatus.SUBMITTED for o in nodes[0].kernel.orders.orders())

    async def gate(raw: str) -> None:
        if raw == trades[9][1]:  # the rest once the daemon's order reached its venue
            while not arrived():
                await asyncio.sleep(0.01)

    strategy = {"name": "tests.live.busy_strategy:BusyBuy", "instruments": [IID],
                "params": {"hold_trade": 5, "hold_ms": 150}}
    async with LocalVenueServer(BinanceProtocol(SPOT_SNAPSHOT), trades, gate=gate) as srv:
        data = binance_config(srv.ws_url, srv.http_url, ["trade"], tmp=tmp_path, record=True, strategy=strategy)
        data["venue"]["latency_ns"] = 50_000_000
        node = PaperNode(config_of(data), handle_signals=False)
        nodes.append(node)
        await run_node(node, lambda: node.kernel.result.trades == len(trades) and bool(node.kernel.result.fills))
    paper = _strategy(node)
    recv = [t for t, conn, _ in read_frames(tmp_path / "frames.jsonl.gz") if not conn.startswith("rest")]
    assert len(recv) == len(trades) and len(paper.decided) == 1
    decided_on = paper.decided[0][1]
    assert decided_on == recv[4]
    assert recv[4] + 50_000_000 < recv[5] < recv[4] + 150_000_000 + 50_000_000  # trade 6 is received in the gap
    replay = play(tmp_path / "frames.jsonl.gz", node.config)
    assert _strategy(replay).decided == paper.decided == [(recv[4], recv[4])]  # decided at the trade's receipt
    # filled at trade 6's price, not at trade 10's (received after the order reached the daemon's venue)
    assert [f.price for f in node.kernel.result.fills] == [trade_price(trades[5][1])] != [trade_price(trades[9][1])]
    assert fill_keys(replay.kernel.result.fills) == fill_keys(node.kernel.result.fills)
    assert order_keys(replay.kernel.result.orders) == order_keys(node.kernel.result.orders)
    assert [o.ts_created for o in node.kernel.result.orders] == [o.ts_created for o in replay.kernel.result.orders]


def trade_price(raw: str) -> float:
    """The price of a recorded Binance trade frame."""
    return float(json.loads(raw)["data"]["p"])


async def test_an_order_decided_on_a_frames_first_trade_reaches_the_venue_after_the_frames_other_trades_as_in_the_replay(
    tmp_path: Path,
) -> None:
    # A Bybit frame carries several trades, all received at one instant. An order decided on the first
    # (no latency) arrives 1 ns after it: in the replay after every trade of the frame. The daemon
    # must not hand it to its venue between them (the strategy would see it accepted before the rest).
    frames = bybit_linear_frames()
    first_multi = next(i for i, (_, raw) in enumerate(frames)
                       if '"topic":"publicTrade.SOLUSDT"' in raw and len(json.loads(raw)["data"]) > 1)
    frames = frames[: first_multi + 20]
    before = sum(len(json.loads(raw)["data"]) for _, raw in frames[:first_multi] if '"topic":"publicTrade.SOLUSDT"' in raw)
    data = bybit_config()
    data["strategy"] = {"name": "tests.live.busy_strategy:AcceptWatch", "instruments": [SOL_IID],
                        "params": {"at_trade": before + 1, "below": 0.5, "quantity": 0.1}}
    async with LocalVenueServer(BybitProtocol(frames), frames, lifetime=120.0) as srv:
        feed = data["feeds"][0]
        node = PaperNode(config_of({**data, "feeds": [{**feed, "ws_url": srv.ws_url}],
                                    "record": str(tmp_path / "frames.jsonl.gz")}), handle_signals=False)
        await run_node(node, lambda: srv.cursor >= len(frames) and bool(_watch(node).accepted))
    paper = _watch(node)
    replay = play(tmp_path / "frames.jsonl.gz", node.config)
    in_frame = len(json.loads(frames[first_multi][1])["data"])
    assert _watch(replay).accepted == [(_watch(replay).accepted[0][0], before + in_frame)]
    assert paper.accepted == _watch(replay).accepted


def _watch(node: Any) -> AcceptWatch:
    strategy = node.kernel.strategies[0]
    assert isinstance(strategy, AcceptWatch)
    return strategy


async def _book_run(tmp_path: Path, on: str, faults: list[Fault]) -> tuple[BookWatch, BookWatch]:
    # Quotes from the book alone (no bookTicker): the one a (re)sync snapshot brings is emitted with it.
    frames = SPOT_FRAMES[:1500]
    depth = [raw for _, raw in frames if "@depth" in raw]
    nodes: list[PaperNode] = []

    async def gate(raw: str) -> None:
        if raw == depth[40]:  # the rest once the book is in sync: a lost depth frame later resyncs it
            while not nodes[0].feeds[0].feed.books["BTCUSDT"].synced:  # type: ignore[attr-defined]
                await asyncio.sleep(0.01)

    strategy = {"name": "tests.live.busy_strategy:BookWatch", "instruments": [IID], "params": {"on": on}}
    async with LocalVenueServer(BinanceProtocol(SPOT_SNAPSHOT), frames, faults, gate=gate, lifetime=120.0) as srv:
        data = binance_config(srv.ws_url, srv.http_url, ["depth"], tmp=tmp_path, record=True, strategy=strategy)
        data["venue"].update(fill_on="quotes", latency_ns=0)
        node = PaperNode(config_of(data), handle_signals=False)
        nodes.append(node)
        await run_node(node, lambda: srv.cursor >= len(frames) and bool(_book_watch(node).answered), timeout=60.0)
    replay = play(tmp_path / "frames.jsonl.gz", node.config)
    return _book_watch(node), _book_watch(replay)


async def test_an_order_decided_on_a_rest_snapshot_reaches_the_venue_after_the_snapshots_quote_as_in_the_replay(
    tmp_path: Path,
) -> None:
    # The REST answer of the initial sync is one recorded line: its BookSnapshot and Quote, then what is
    # due (the order decided on the snapshot with no latency, due 1 ns after). The daemon handled the
    # answer's messages one by one outside any frame and accepted the order before the quote.
    paper, replay = await _book_run(tmp_path, "snapshot", [])
    assert replay.answered == [("accepted", replay.decided[0][0] + 1, 1)]  # the snapshot's quote known
    assert paper.answered == replay.answered
    assert paper.decided == replay.decided


async def test_an_order_decided_on_a_book_resync_reaches_the_venue_after_the_resyncs_quote_as_in_the_replay(
    tmp_path: Path,
) -> None:
    paper, replay = await _book_run(tmp_path, "resynced", [Fault(FaultKind.GARBLE, at=60, match="@depth")])
    (answer,) = replay.answered
    assert answer[0] == "accepted" and answer[1] == replay.decided[0][0] + 1
    assert paper.answered == replay.answered
    assert [clock for clock, _ in paper.decided] == [clock for clock, _ in replay.decided]


class LaggingSnapshots(BinanceProtocol):
    """A venue whose REST depth answer is behind its stream, as Binance's is: the first request is
    refused (503), the retry answered with the book as it was at the first."""

    kept: tuple[int, str] | None = None

    def http(self, path: str, query: dict[str, list[str]]) -> tuple[int, str] | None:
        answer = super().http(path, query)
        if not path.endswith("/depth") or answer is None or answer[0] != 200:
            return answer
        if self.kept is None:
            self.kept = answer
            return 503, '{"code":-1001,"msg":"Internal error; unable to process your request."}'
        return self.kept


async def test_an_order_decided_on_a_rest_snapshot_behind_the_stream_is_stamped_at_its_answer_as_in_the_replay(
    tmp_path: Path,
) -> None:
    # The snapshot is older than deltas received while it was fetched: the rebuilt book carries the
    # last one's receive time. The daemon handled the answer at that time (before the answer came),
    # the replay at the answer's recorded receive time.
    strategy = {"name": "tests.live.busy_strategy:BookWatch", "instruments": [IID], "params": {"on": "snapshot"}}
    frames = SPOT_FRAMES[:1500]
    async with LocalVenueServer(LaggingSnapshots(SPOT_SNAPSHOT), frames, speed=4.0, lifetime=120.0) as srv:
        data = binance_config(srv.ws_url, srv.http_url, ["depth"], tmp=tmp_path, record=True, strategy=strategy)
        data["venue"].update(fill_on="quotes", latency_ns=0)
        node = PaperNode(config_of(data), handle_signals=False)
        await run_node(node, lambda: bool(_book_watch(node).answered), timeout=60.0)
    paper, replay = _book_watch(node), _book_watch(play(tmp_path / "frames.jsonl.gz", node.config))
    (answer_ns,) = [t for t, conn, _ in read_frames(tmp_path / "frames.jsonl.gz") if conn.startswith("rest:")]
    (decided,) = replay.decided
    assert decided[1] < decided[0] == answer_ns  # buffered deltas applied; decided at the answer
    assert paper.decided == replay.decided
    assert paper.answered == replay.answered == [("accepted", answer_ns + 1, 1)]


def _book_watch(node: Any) -> BookWatch:
    strategy = node.kernel.strategies[0]
    assert isinstance(strategy, BookWatch)
    return strategy


async def test_an_order_decided_in_on_stop_meets_the_book_the_replay_has_at_the_recorded_stop(tmp_path: Path) -> None:
    # The daemon stops its feeds before its strategies: a stop is no lost connection, the books stay as they
    # were at the stop, and an order on_stop decides is sent in the daemon as in the replay (not denied
    # 'book unsynced'). The same holds for a timer or alert falling due while the feeds close.
    strategy = {"name": "tests.live.resting_strategy:RestingBuy", "instruments": [IID],
                "params": {"price": 10_000.0, "on_stop_price": 10_001.0}}
    async with LocalVenueServer(BinanceProtocol(SPOT_SNAPSHOT), SPOT_FRAMES) as srv:
        data = binance_config(srv.ws_url, srv.http_url, ["trade", "depth"], tmp=tmp_path, record=True, strategy=strategy)
        data["warm_up"] = False
        node = PaperNode(config_of(data), handle_signals=False)
        await run_node(node, lambda: srv.cursor >= len(SPOT_FRAMES) and node.kernel.result.trades > 0)
    paper = node.kernel.result.orders
    assert paper[-1].price == 10_001.0 and paper[-1].status is not OrderStatus.DENIED, paper[-1].reason
    replay = play(tmp_path / "frames.jsonl.gz", node.config)
    assert order_keys(replay.kernel.result.orders) == order_keys(paper)
