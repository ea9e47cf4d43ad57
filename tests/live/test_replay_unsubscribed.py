"""A replay uses only the channels its config subscribes, whatever else the recording holds.

The OKX and Bybit recordings hold books, tickers and trades of several instruments. A live
run of a trades-only config never receives the others; a replay of the recording under that
config skipped none of them: the OKX one routed 97 ``BookDelta`` and 1 ``BookSnapshot`` of
BTC-USDT, the Bybit linear one 413 and 1 of BTCUSDT, and counted none as unsubscribed. The
frames of every stream are counted here from the raw recording (``json``), not by the parsers.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from tradebus.adapters.common.recorder import read_frames
from tradebus.cli import app
from tradebus.engine.messages import Quote, Trade
from tradebus.node.playback import Playback

from .node_testdata import (
    BYBIT_IID,
    BYBIT_INSTRUMENT,
    BYBIT_RECORDING,
    OKX_IID,
    OKX_INSTRUMENT,
    OKX_RECORDING,
    config_of,
    stream_config,
)

#: venue -> (recording, instrument, instrument id, recorded connection, feed name, trade channel, book channel,
#: the instrument's venue symbol)
CASES: dict[str, tuple[Path, dict[str, Any], str, str, str, str, str, str]] = {
    "okx": (OKX_RECORDING, OKX_INSTRUMENT, OKX_IID, "okx-public", "okx-public", "trades", "books", "BTC-USDT"),
    "bybit": (
        BYBIT_RECORDING, BYBIT_INSTRUMENT, BYBIT_IID, "linear", "bybit-linear", "publicTrade", "orderbook.200", "BTCUSDT"
    ),
}


def recorded_streams(venue: str, items: bool = False) -> Counter[str]:
    """Data frames (``items``: the elements of their ``data``) per stream of the recording's connection, named as
    the venue's subscriptions name them."""
    recording, _, _, conn, *_ = CASES[venue]
    streams: Counter[str] = Counter()
    for _, c, raw in read_frames(recording):
        if c != conn or raw in ("pong", b"pong"):
            continue
        frame = json.loads(raw)
        if venue == "okx" and "data" in frame and "event" not in frame:
            streams[f"{frame['arg']['channel']}:{frame['arg']['instId']}"] += len(frame["data"]) if items else 1
        elif venue == "bybit" and "topic" in frame:
            streams[frame["topic"]] += len(frame["data"]) if items else 1
    return streams


def stream_name(venue: str, channel: str) -> str:
    symbol = CASES[venue][7]
    return f"{channel}:{symbol}" if venue == "okx" else f"{channel}.{symbol}"


def replay(venue: str, channels: list[str]) -> tuple[Playback, Counter[str]]:
    """The finished replay of ``venue``'s recording subscribing ``channels``, and the trades and quotes it delivered."""
    playback = Playback(config_of(venue_config(venue, channels)))
    delivered: Counter[str] = Counter()
    for cls in (Trade, Quote):
        playback.kernel.bus.subscribe(cls, lambda msg: delivered.update([type(msg).__name__]))
    playback.run(CASES[venue][0])
    return playback, delivered


def venue_config(venue: str, channels: list[str]) -> dict[str, Any]:
    _, instrument, iid, *_ = CASES[venue]
    return stream_config(instrument, iid, venue, "spot" if venue == "okx" else "linear", channels)


@pytest.mark.parametrize("venue", ["okx", "bybit"])
def test_trades_only_replay_routes_no_book_message_and_counts_every_other_stream(venue: str) -> None:
    trades, book = CASES[venue][5], CASES[venue][6]
    recorded = recorded_streams(venue)
    subscribed = stream_name(venue, trades)
    # guards the fixture: the instrument's book and trades are recorded, beside other streams
    assert recorded[stream_name(venue, book)] > 90 and recorded[subscribed] > 10 and len(recorded) > 4
    playback, delivered = replay(venue, [trades])
    counts = playback.router.counts
    assert (counts["BookDelta"], counts["BookSnapshot"]) == (0, 0)
    assert delivered == {"Trade": recorded_streams(venue, items=True)[subscribed]}  # and no ticker's quote
    skipped = {stream: n for stream, n in recorded.items() if stream != subscribed}
    assert playback.stats.unexpected_streams == {CASES[venue][4]: dict(sorted(skipped.items()))}


@pytest.mark.parametrize("venue", ["okx", "bybit"])
def test_replay_subscribing_the_book_gets_every_recorded_book_frame(venue: str) -> None:
    trades, book = CASES[venue][5], CASES[venue][6]
    frames = recorded_streams(venue)[stream_name(venue, book)]
    playback, _ = replay(venue, [trades, book])
    counts = playback.router.counts
    assert (counts["BookSnapshot"], counts["BookDelta"]) == (1, frames - 1)  # the first frame is the snapshot
    assert set(playback.stats.unexpected_streams[CASES[venue][4]]) == set(recorded_streams(venue)) - {
        stream_name(venue, trades), stream_name(venue, book)
    }


@pytest.mark.usefixtures("_loguru_to_current_stderr")
@pytest.mark.parametrize("venue", ["okx", "bybit"])
def test_replay_names_each_unsubscribed_stream_once_and_counts_them_at_the_end(venue: str, tmp_path: Path) -> None:
    trades, feed = CASES[venue][5], CASES[venue][4]
    cfg = tmp_path / "trades.yaml"
    cfg.write_text(yaml.safe_dump(venue_config(venue, [trades])), encoding="utf-8")
    res = CliRunner().invoke(app, ["replay", str(CASES[venue][0]), "--config", str(cfg), "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    subscribed = stream_name(venue, trades)
    recorded = recorded_streams(venue)
    skipped = {stream: n for stream, n in recorded.items() if stream != subscribed}
    lines = [line.partition("WARNING ")[2] for line in res.output.splitlines() if "unsubscribed stream" in line]
    first = [line for line in lines if "skipping the frames" in line]
    assert sorted(first) == sorted(
        f"{feed}: skipping the frames of unsubscribed stream {s!r} (subscribed: {subscribed}); "
        "their count is logged at the end of the run"
        for s in skipped
    )
    assert lines[len(first):] == [
        f"{feed}: skipped frames of unsubscribed streams: "
        + ", ".join(f"{s!r} {n:,}" for s, n in sorted(skipped.items()))
    ]
    stats = json.loads((tmp_path / "o" / "playback.json").read_text(encoding="utf-8"))
    assert stats["unexpected_streams"] == {feed: skipped}
