"""No trade silently lost: trades printed while the connection was down (or in a lost frame) are fetched.

The local Binance server replays the real spot capture and goes on printing while the
client is away (``Fault(DROP, missed=n)``: the frames go by without it); its REST
``historicalTrades`` serves the trades it has printed. The daemon's trades must equal the
capture's full list (ids, prices, sizes, order), and a playback of the daemon's recording
must see the same.
"""

from __future__ import annotations

import json
from pathlib import Path

from tradebus.adapters.binance.emulator import BinanceProtocol
from tradebus.adapters.common.local_server import Fault, FaultKind, LocalVenueServer
from tradebus.engine.messages import Trade, TradesMissed
from tradebus.node.daemon import PaperNode
from tradebus.node.playback import Playback

from .node_testdata import IID, SPOT_FRAMES, SPOT_SNAPSHOT, binance_config, config_of, run_node

#: Every trade of the capture, in order: (id, price, size).
CAPTURE_TRADES = [
    (str(d["t"]), float(d["p"]), float(d["q"]))
    for d in (json.loads(raw)["data"] for _, raw in SPOT_FRAMES if "@trade" in raw)
]


def _keys(trades: list[Trade]) -> list[tuple[str, float, float]]:
    return [(t.trade_id, t.price, t.size) for t in trades]


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
    play = Playback(config_of(binance_config(None, None, ["trade", "bookTicker", "depth"])))
    replayed: list = []
    play.kernel.bus.subscribe(Trade, replayed.append, IID)
    play.kernel.bus.subscribe(TradesMissed, replayed.append)
    play.run(tmp_path / "frames.jsonl.gz")
    assert [(type(m).__name__, getattr(m, "trade_id", None), m.ts_init) for m in replayed] == [
        (type(m).__name__, getattr(m, "trade_id", None), m.ts_init) for m in seen
    ]


async def test_a_trade_frame_lost_mid_stream_is_fetched_without_reconnecting(tmp_path: Path) -> None:
    faults = [Fault(FaultKind.SKIP, at=300, match="@trade")]
    node, seen, _ = await _run(tmp_path, faults, overlap=0)
    trades = [m for m in seen if isinstance(m, Trade)]
    assert node.summary.feeds["binance-spot"]["connections"] == 1
    assert _keys(trades) == CAPTURE_TRADES
    (missed,) = [m for m in seen if isinstance(m, TradesMissed)]
    assert (missed.first_id, missed.last_id, missed.recovered) == (int(CAPTURE_TRADES[300][0]), int(CAPTURE_TRADES[300][0]), 1)
