"""A paper daemon with a Binance spot and a USD-M feed of one symbol: its recording replays as it ran.

Both feeds fetch their REST depth snapshot and the trades a lost frame skipped under the same
symbol (``BTCUSDT``); the recording names the feed that fetched each answer, so a replay hands
every snapshot and trade history to the book and trade line it was fetched for. A recording
made before the answers named their feed cannot tell them apart: its replay is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tradebus.adapters.binance.emulator import BinanceProtocol, split_capture
from tradebus.adapters.common.local_server import Fault, FaultKind, LocalVenueServer
from tradebus.adapters.common.recorder import FrameRecorder, iter_hftbacktest, read_frames
from tradebus.engine.messages import Trade, TradesMissed
from tradebus.errors import DataError
from tradebus.node.daemon import PaperNode
from tradebus.node.recording_import import import_recording
from tradebus.node.playback import Playback

from .node_testdata import (
    BINANCE_INSTRUMENT,
    IID,
    SPOT_FRAMES,
    SPOT_SNAPSHOT,
    USDM_CAPTURE,
    USDM_IID,
    USDM_INSTRUMENT,
    config_of,
    fill_keys,
    order_keys,
    run_node,
)

pytestmark = pytest.mark.usefixtures("compiled_kernels")

USDM_FRAMES, USDM_SNAPSHOT = split_capture(list(iter_hftbacktest(USDM_CAPTURE)))
TRADES = {
    IID: sum("@trade" in raw for _, raw in SPOT_FRAMES),
    USDM_IID: sum("@trade" in raw for _, raw in USDM_FRAMES),
}


def _feed(market: str, iid: str, url: str | None, rest: str | None, channels: list[str], speed: str) -> dict[str, Any]:
    return {
        "venue": "binance",
        "market": market,
        "ws_url": url,
        "rest_url": rest,
        "subscriptions": {iid: channels},
        "backoff": {"base": 0.05, "cap": 0.2, "min_delay": 0.01},
        "snapshot_fetcher": "http",
        "depth_speed": speed,
    }


def _config(spot: LocalVenueServer | None, usdm: LocalVenueServer | None, tmp: Path) -> dict[str, Any]:
    """A TickEmaCross on each market, a spot feed (trade, depth) and a USD-M feed (trade, bookTicker, depth).

    An order on a book out of sync is denied: the fills need both books.
    """

    def ema(iid: str, name: str) -> dict[str, Any]:
        params = {"fast": 2, "slow": 8, "quantity": 0.01}
        return {"name": "tradebus.strategies.tick_ema:TickEmaCross", "id": name, "instruments": [iid], "params": params}

    return {
        "instruments": [BINANCE_INSTRUMENT, USDM_INSTRUMENT],
        "strategies": [ema(IID, "EmaSpot"), ema(USDM_IID, "EmaUsdm")],
        "venue": {"fill_on": "trades"},
        "feeds": [
            _feed("spot", IID, spot and spot.ws_url, spot and spot.http_url, ["trade", "depth"], "100ms"),
            _feed("usdm", USDM_IID, usdm and usdm.ws_url, usdm and usdm.http_url, ["trade", "bookTicker", "depth"], "0ms"),
        ],
        "warm_up": False,
        "record": str(tmp / "frames.jsonl.gz"),
    }


def _stamps(messages: list) -> list[tuple[str, str, str | None, int]]:
    return [(type(m).__name__, m.instrument_id, getattr(m, "trade_id", None), m.ts_init) for m in messages]


async def _run(tmp: Path, spot_faults: list[Fault], usdm_faults: list[Fault]) -> tuple[PaperNode, list, list[BinanceProtocol]]:
    """Run the two-feed daemon on two local servers until it has every trade and both books are in sync."""
    protos = [BinanceProtocol(SPOT_SNAPSHOT), BinanceProtocol(USDM_SNAPSHOT, futures=True)]
    async with (
        LocalVenueServer(protos[0], SPOT_FRAMES, spot_faults, lifetime=60.0) as spot,
        LocalVenueServer(protos[1], USDM_FRAMES, usdm_faults, lifetime=60.0) as usdm,
    ):
        node = PaperNode(config_of(_config(spot, usdm, tmp)), handle_signals=False)
        seen: list = []
        for cls in (Trade, TradesMissed):
            node.kernel.bus.subscribe(cls, seen.append)
        checks = [check for feed in node.feeds for check in feed.book_checks().values()]

        def done() -> bool:
            trades = {iid: sum(isinstance(m, Trade) and m.instrument_id == iid for m in seen) for iid in TRADES}
            return trades == TRADES and all(check() for check in checks)

        await run_node(node, done, timeout=30.0)
    return node, seen, protos


def _replay(tmp: Path) -> tuple[Playback, list]:
    """The daemon's recording played through its config (without endpoints): the playback and its trades."""
    replay = Playback(config_of(_config(None, None, tmp)))
    replayed: list = []
    for cls in (Trade, TradesMissed):
        replay.kernel.bus.subscribe(cls, replayed.append)
    replay.run(tmp / "frames.jsonl.gz")
    assert replay.stats.rejected == {}
    # each book in sync to the end: the daemon's stop keeps the books as the last frame left them
    books = {sync.instrument_id: sync for feed in replay.feeds for sync in feed.feed.books.values()}  # type: ignore[attr-defined]
    assert {iid: (sync.book.last_seq > 0, sync.synced) for iid, sync in books.items()} == {
        iid: (True, True) for iid in (IID, USDM_IID)
    }
    return replay, replayed


def _recorded_answers(tmp: Path) -> list[str]:
    return sorted(conn for _, conn, _ in read_frames(tmp / "frames.jsonl.gz") if conn.startswith("rest"))


async def test_replay_of_a_spot_and_usdm_recording_syncs_both_books_and_fills_as_the_daemon(tmp_path: Path) -> None:
    node, seen, protos = await _run(tmp_path, [], [])
    assert [p.depth_requests for p in protos] == [1, 1]
    assert _recorded_answers(tmp_path) == ["rest:BTCUSDT@binance-spot:1", "rest:BTCUSDT@binance-usdm:1"]
    result = node.kernel.result
    fills = {iid: [f for f in result.fills if f.instrument_id == iid] for iid in TRADES}
    assert all(len(f) >= 10 for f in fills.values()), {iid: len(f) for iid, f in fills.items()}

    replay, replayed = _replay(tmp_path)
    assert _stamps(replayed) == _stamps(seen)
    assert fill_keys(replay.kernel.result.fills) == fill_keys(result.fills)
    assert order_keys(replay.kernel.result.orders) == order_keys(result.orders)
    # the catalog import routes the frames as the replay does: a book of each market, none refused
    manifests = import_recording(tmp_path / "frames.jsonl.gz", config_of(_config(None, None, tmp_path)), tmp_path / "cat")
    assert {key for key in manifests if key[1] == "book"} == {(IID, "book"), (USDM_IID, "book")}


async def test_replay_of_a_spot_and_usdm_recording_recovers_each_feeds_lost_trades_where_the_daemon_did(
    tmp_path: Path,
) -> None:
    # each server loses one trade frame: both feeds fetch the missing trade from their own REST history
    skip = [[Fault(FaultKind.SKIP, at=at, match="@trade")] for at in (300, 200)]
    node, seen, protos = await _run(tmp_path, *skip)
    assert [p.trade_requests for p in protos] == [1, 1]
    assert _recorded_answers(tmp_path) == [
        "rest-trades:BTCUSDT@binance-spot", "rest-trades:BTCUSDT@binance-usdm",
        "rest:BTCUSDT@binance-spot:1", "rest:BTCUSDT@binance-usdm:1",
    ]
    assert sum(isinstance(m, TradesMissed) for m in seen) == 2
    _, replayed = _replay(tmp_path)
    assert _stamps(replayed) == _stamps(seen)  # every trade, and both recoveries, where the daemon had them


def test_a_snapshot_recorded_without_its_feed_that_two_feeds_could_take_is_refused(tmp_path: Path) -> None:
    # a recording of such a daemon made before REST answers named their feed: "rest:BTCUSDT" twice
    old = tmp_path / "old.jsonl.gz"
    with FrameRecorder(old) as rec:
        rec.write(SPOT_FRAMES[0][0] - 1, "rest:BTCUSDT", SPOT_SNAPSHOT)
        for t, raw in SPOT_FRAMES[:50]:
            rec.write(t, "binance-spot:1", raw)
    with pytest.raises(DataError) as caught:
        Playback(config_of(_config(None, None, tmp_path))).run(old)
    message = str(caught.value)
    assert message.startswith(f"{old}: frame 1: ")
    assert "'rest:BTCUSDT' could be any of feeds binance-spot, binance-usdm" in message
    assert "replay it with a config that has only one of these feeds" in message
    # with one of the feeds, the same recording replays as before
    one = _config(None, None, tmp_path)
    one["instruments"], one["strategies"], one["feeds"] = one["instruments"][:1], one["strategies"][:1], one["feeds"][:1]
    playback = Playback(config_of(one))
    playback.run(old)
    assert playback.stats.per_feed == {"binance-spot": 51}
    assert playback.stats.rejected == {}
