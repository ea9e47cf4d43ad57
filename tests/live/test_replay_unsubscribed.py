"""A replay uses only the channels its config subscribes, whatever else the recording holds.

The OKX and Bybit recordings hold books, tickers and trades of several instruments. A live
run of a trades-only config never receives the others; a replay of the recording under that
config skipped none of them: the OKX one routed 97 ``BookDelta`` and 1 ``BookSnapshot`` of
BTC-USDT, the Bybit linear one 413 and 1 of BTCUSDT, and counted none as unsubscribed. The
frames of every stream are counted here from the raw recording (``json``), not by the parsers.
"""

from __future__ import annotations

import gzip
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


#: venue -> (the recorded variant of a stream, the config's other variant of it)
VARIANTS = {
    "okx": ("books", "books5"),
    "bybit": ("orderbook.200", "orderbook.50"),
    "bybit-kline": ("kline.1", "kline.5"),
}


def refusal(venue: str, recording: Path | str, recorded: str, subscribed: str, channels: list[str]) -> str:
    """The error naming the file, the recorded stream with its frame count, the config's, and every expected stream."""
    base = venue.partition("-")[0]
    expected = [stream_name(base, ch) for ch in channels]
    return (
        f"{recording}: the recording's streams do not match the config: {CASES[base][4]} frames of stream "
        f"{stream_name(base, recorded)!r} ({recorded_streams(base)[stream_name(base, recorded)]} in the recording), "
        f"but the config subscribes {stream_name(base, subscribed)!r}, of which it holds none "
        f"(expected streams: {expected})"
    )


@pytest.mark.usefixtures("_loguru_to_current_stderr")
@pytest.mark.parametrize("venue", list(VARIANTS))
def test_a_recording_of_another_book_depth_or_bar_size_is_refused_by_replay_and_import(
    venue: str, tmp_path: Path
) -> None:
    """A config of orderbook.50 (as the shipped paper_bybit.yaml was) replayed the shipped Bybit recording
    (orderbook.200) with no book (414 frames skipped, a WARNING), exit 0; OKX books5 against books alike. As a Binance recording of another
    depth speed is, it is refused, naming the file and both streams, and nothing is written."""
    base = venue.partition("-")[0]
    recorded, subscribed = VARIANTS[venue]
    channels = [CASES[base][5], subscribed]
    assert recorded_streams(base)[stream_name(base, recorded)] > 20  # guards the fixture: the other variant is there
    assert recorded_streams(base)[stream_name(base, subscribed)] == 0
    cfg = tmp_path / "variant.yaml"
    cfg.write_text(yaml.safe_dump(venue_config(base, channels)), encoding="utf-8")
    recording = CASES[base][0]
    out = tmp_path / "o"
    res = CliRunner().invoke(app, ["replay", str(recording), "--config", str(cfg), "--out", str(out)])
    assert res.exit_code == 3, res.output
    text = " ".join(res.output.split())
    assert refusal(venue, recording, recorded, subscribed, channels) in text, text
    assert not out.exists()
    catalog = tmp_path / "cat"
    res = CliRunner().invoke(
        app, ["data", "import-recording", str(recording), "--config", str(cfg), "--catalog", str(catalog)]
    )
    assert res.exit_code == 3, res.output
    assert refusal(venue, recording, recorded, subscribed, channels) in " ".join(res.output.split())
    assert not catalog.exists() or not any(p.is_file() for p in catalog.rglob("*"))


def test_a_recording_holding_both_depths_of_a_book_replays_under_either(tmp_path: Path) -> None:
    """A recorder subscribing ``orderbook.50`` beside ``orderbook.200``: a replay of ``orderbook.200`` alone skips the
    other depth, whose first frame comes before the first of the config's, and plays every frame of its own."""
    frames = list(read_frames(BYBIT_RECORDING))
    both = tmp_path / "both.jsonl.gz"
    with gzip.open(both, "wt", encoding="utf-8") as f:
        for t, conn, raw in frames:
            text = raw if isinstance(raw, str) else raw.decode()
            if conn == "linear" and '"topic":"orderbook.200.BTCUSDT"' in text:
                f.write(json.dumps({"t": t, "c": conn, "d": text.replace("orderbook.200.", "orderbook.50.")}) + "\n")
            f.write(json.dumps({"t": t, "c": conn, "d": text}) + "\n")
    playback = Playback(config_of(venue_config("bybit", ["publicTrade", "orderbook.200"])))
    playback.run(both)
    book_frames = recorded_streams("bybit")["orderbook.200.BTCUSDT"]
    assert (playback.router.counts["BookSnapshot"], playback.router.counts["BookDelta"]) == (1, book_frames - 1)
    assert playback.stats.unexpected_streams["bybit-linear"]["orderbook.50.BTCUSDT"] == book_frames


def _okx_with_trades_all(path: Path, *, keep_trades: bool) -> Path:
    """The OKX recording with each ``trades`` push recorded as ``trades-all`` (its pushes stand for one trade each, as
    ``trades-all``'s do), and with ``keep_trades`` the ``trades`` push too, after it."""
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for t, conn, raw in read_frames(OKX_RECORDING):
            text = raw if isinstance(raw, str) else raw.decode()
            frame = json.loads(text)
            if frame.get("arg", {}).get("channel") == "trades" and "data" in frame and "event" not in frame:
                assert all("count" not in d for d in frame["data"])  # guards the fixture
                f.write(json.dumps({"t": t, "c": conn, "d": text.replace('"channel":"trades"', '"channel":"trades-all"')})
                        + "\n")
                if not keep_trades:
                    continue
            f.write(json.dumps({"t": t, "c": conn, "d": text}) + "\n")
    return path


@pytest.mark.usefixtures("_loguru_to_current_stderr")
def test_an_okx_trades_all_recording_is_refused_under_trades_and_one_of_both_replays_under_either(
    tmp_path: Path,
) -> None:
    """OKX ``trades`` and ``trades-all`` carry every trade of an instrument, aggregated per taker order or one by one
    under other ids: variants of one stream, as ``books`` and ``books5`` are. A ``trades-all`` recording replayed
    under ``trades`` ran on no trade at all (its 69 BTC-USDT frames skipped with a WARNING), exit 0; it is refused,
    replay and import alike, naming both streams. A recording of both replays under either, the other skipped."""
    recording = _okx_with_trades_all(tmp_path / "all.jsonl.gz", keep_trades=False)
    cfg = tmp_path / "trades.yaml"
    cfg.write_text(yaml.safe_dump(venue_config("okx", ["trades"])), encoding="utf-8")
    frames = recorded_streams("okx")["trades:BTC-USDT"]
    expected = (
        f"{recording}: the recording's streams do not match the config: okx-public frames of stream "
        f"'trades-all:BTC-USDT' ({frames} in the recording), but the config subscribes 'trades:BTC-USDT', of which it "
        "holds none (expected streams: ['trades:BTC-USDT']); make the feed's book, candle or trades channel match"
    )
    res = CliRunner().invoke(app, ["replay", str(recording), "--config", str(cfg), "--out", str(tmp_path / "o")])
    assert res.exit_code == 3, res.output
    assert expected in " ".join(res.output.split())
    assert not (tmp_path / "o").exists()
    res = CliRunner().invoke(app, ["data", "import-recording", str(recording), "--config", str(cfg), "--catalog",
                                   str(tmp_path / "cat")])
    assert res.exit_code == 3, res.output
    assert expected in " ".join(res.output.split())

    trades = recorded_streams("okx", items=True)["trades:BTC-USDT"]
    business = venue_config("okx", ["trades-all"])
    business["feeds"][0]["ws_url"] = "wss://ws.okx.com:8443/ws/v5/business"  # OKX serves trades-all there only
    delivered: list[int] = []
    playback = Playback(config_of(business))
    playback.kernel.bus.subscribe(Trade, lambda m: delivered.append(1), OKX_IID)
    playback.run(recording)
    assert len(delivered) == trades > 60

    both = _okx_with_trades_all(tmp_path / "both.jsonl.gz", keep_trades=True)
    for channel, other in (("trades", "trades-all"), ("trades-all", "trades")):
        config = venue_config("okx", [channel])
        if channel == "trades-all":
            config["feeds"][0]["ws_url"] = "wss://ws.okx.com:8443/ws/v5/business"
        delivered.clear()
        playback = Playback(config_of(config))
        playback.kernel.bus.subscribe(Trade, lambda m: delivered.append(1), OKX_IID)
        playback.run(both)
        assert len(delivered) == trades, channel
        assert playback.stats.unexpected_streams["okx-public"][f"{other}:BTC-USDT"] == frames


@pytest.mark.usefixtures("_loguru_to_current_stderr")
def test_a_binance_aggtrade_recording_is_refused_under_trade(tmp_path: Path) -> None:
    """Binance ``trade`` and ``aggTrade`` carry every trade of a symbol, one by one or aggregated per taker order and
    price under other ids: variants of one stream, as two depth speeds are. The cryptofeed USD-M capture (SUSHIUSDT
    ``aggTrade``) replayed under a ``trade`` config ran on no trade at all (its frames skipped with a WARNING),
    exit 0; it is refused at the first such frame, as another depth speed is, naming both streams."""
    from tests.adapters.binance_testdata import CF_USDM, cryptofeed_frames
    from tests.live.node_testdata import SUSHI_IID, sushi_kline_config

    frames = [(t, raw) for t, raw in cryptofeed_frames(CF_USDM) if '"stream":"sushiusdt@aggTrade"' in raw]
    assert len(frames) > 10  # guards the fixture
    recording = tmp_path / "agg.jsonl.gz"
    with gzip.open(recording, "wt", encoding="utf-8") as f:
        for t, raw in frames:
            f.write(json.dumps({"t": t, "c": "binance-usdm:1", "d": raw}) + "\n")
    cfg = sushi_kline_config()
    cfg["feeds"][0]["subscriptions"] = {SUSHI_IID: ["trade"]}
    cfg["venue"]["fill_on"] = "trades"
    cfg["strategy"] = {"name": "tradebus.strategies.tick_ema:TickEmaCross", "instruments": [SUSHI_IID],
                       "params": {"fast": 2, "slow": 5, "quantity": 1.0}}
    path = tmp_path / "trade.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    res = CliRunner().invoke(app, ["replay", str(recording), "--config", str(path), "--out", str(tmp_path / "o")])
    assert res.exit_code == 3, res.output
    assert (f"{recording}: frame 1: the recording's streams do not match the config: binance usdm frames of stream "
            "'sushiusdt@aggTrade', but the config subscribes 'sushiusdt@trade' (expected streams: "
            "['sushiusdt@trade']); make the feed's depth_speed / kline_<interval> / trade or aggTrade channel match the "
            "recording") in " ".join(res.output.split())
    cfg["feeds"][0]["subscriptions"] = {SUSHI_IID: ["aggTrade"]}
    delivered: list[int] = []
    playback = Playback(config_of(cfg))
    playback.kernel.bus.subscribe(Trade, lambda m: delivered.append(1), SUSHI_IID)
    playback.run(recording)
    assert len(delivered) == len(frames)
