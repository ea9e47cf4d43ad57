"""`tradebus replay`: a recording played through the venue parsers into the kernel, like a backtest."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import os
import re
import signal
import subprocess
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from loguru import logger
from typer.testing import CliRunner
from websockets.asyncio.client import connect as aconnect
from websockets.sync.client import connect

from tradebus.adapters.common.recorder import FrameRecorder, iter_hftbacktest, read_frames
from tradebus.node.playback import Playback, detect_format, play, read_recording
from tradebus.cli import app
from tradebus.engine.messages import OrderSide, SubmitOrder, TimeEvent, Trade
from tradebus.errors import DataError
from tradebus.strategies.base import Strategy

from .node_testdata import (
    BINANCE_INSTRUMENT,
    IID,
    OKX_RECORDING,
    SPOT_CAPTURE,
    SPOT_LINES,
    SPOT_QUOTES,
    SPOT_TRADE_IDS,
    binance_config,
    config_of,
    fill_keys,
)

@pytest.fixture(autouse=True)
def _loguru_to_current_stderr() -> Iterator[None]:
    """The CLI points loguru at the CliRunner's stderr, closed after the call: log to the live stderr again."""
    yield
    logger.remove()
    logger.add(lambda message: sys.stderr.write(message), level="DEBUG")


OUTPUTS = ("config.yaml", "equity.csv", "fills.csv", "metrics.json", "orders.csv", "playback.json", "prices.csv", "trades.csv")


def write_config(tmp: Path, channels: list[str]) -> Path:
    path = tmp / "paper.yaml"
    path.write_text(yaml.safe_dump(binance_config(None, None, channels)), encoding="utf-8")
    return path


def to_recorder(tmp: Path, conn: str = "binance-spot:1") -> Path:
    """The capture in the recorder format, as a daemon would have written it."""
    path = tmp / "frames.jsonl.gz"
    with FrameRecorder(path) as rec:
        for recv_ns, raw in SPOT_LINES:
            rec.write(recv_ns, "rest:BTCUSDT" if raw.startswith('{"lastUpdateId"') else conn, raw)
    return path


def test_replay_writes_backtest_outputs_and_is_byte_identical_across_runs(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, ["trade", "bookTicker", "depth"])
    runner = CliRunner()
    for out in ("a", "b"):
        res = runner.invoke(app, ["replay", str(SPOT_CAPTURE), "--config", str(cfg), "--out", str(tmp_path / out)])
        assert res.exit_code == 0, res.output
    for name in OUTPUTS:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    fills = (tmp_path / "a" / "fills.csv").read_text().splitlines()
    assert fills[0].startswith("ts_event,time,instrument,side") and len(fills) > 10


def test_recorder_file_and_hftbacktest_capture_play_identically(tmp_path: Path) -> None:
    config = config_of(binance_config(None, None, ["trade", "bookTicker", "depth"]))
    from_capture = play(SPOT_CAPTURE, config)
    from_recording = play(to_recorder(tmp_path), config)
    assert from_capture.kernel.result.trades == len(SPOT_TRADE_IDS)
    assert from_capture.kernel.result.quotes == SPOT_QUOTES
    assert fill_keys(from_recording.kernel.result.fills) == fill_keys(from_capture.kernel.result.fills)
    assert from_recording.stats.rejected == {} and from_recording.kernel.cache.book(IID).last_seq > 0


def test_on_start_reads_the_first_frame_time_and_an_alert_set_there_fires_in_the_recording(tmp_path: Path) -> None:
    class StartsAlert(Strategy):
        def __init__(self) -> None:
            super().__init__(IID, strategy_id="starts")
            self.started_at = -1
            self.fired: list[tuple[int, int | None]] = []

        def on_start(self) -> None:
            self.started_at = self.clock.now_ns()
            self.set_alert("soon", self.started_at + 5_000_000_000)  # 5 s after the start, as in a paper run

        def on_timer(self, event: TimeEvent) -> None:
            last = self.cache.trades.get(IID)
            self.fired.append((event.ts_event, None if last is None else last.ts_init))

        def on_trade(self, trade: Trade) -> None:
            pass

    playback = Playback(config_of(binance_config(None, None, ["trade"])))
    strategy = StartsAlert()
    playback.kernel.add_strategy(strategy)
    playback.run(to_recorder(tmp_path))
    first = SPOT_LINES[0][0]
    assert strategy.started_at == first
    [(at, last_trade)] = strategy.fired
    assert at == first + 5_000_000_000
    assert last_trade is not None and last_trade < at  # fired between the frames around it


def test_frames_of_a_connection_no_feed_owns_are_skipped_and_counted(tmp_path: Path) -> None:
    path = to_recorder(tmp_path, conn="okx-public:1")
    playback = Playback(config_of(binance_config(None, None, ["trade"])))
    with pytest.raises(DataError, match=r"nothing to replay: its frames are on \{'okx-public:1': "):
        playback.run(path)  # every frame was skipped: an error, not a run on nothing
    assert playback.kernel.result.trades == 0
    # the depth snapshot is Binance's, but this feed subscribes no book: skipped as well
    assert playback.stats.skipped_connections == {"okx-public:1": len(SPOT_LINES) - 1, "rest:BTCUSDT": 1}


def test_orders_are_denied_while_the_book_is_unsynced_and_allowed_once_synced() -> None:
    playback = Playback(config_of(binance_config(None, None, ["trade", "depth"])))
    kernel = playback.kernel
    kernel.start()
    frames = list(read_recording(SPOT_CAPTURE, playback.feeds))
    snapshot_at = next(i for i, (_, conn, _) in enumerate(frames) if conn.startswith("rest:"))

    def probe(n: int) -> str | None:
        now = kernel.clock.now_ns()
        kernel.submit(SubmitOrder("probe", IID, f"probe-{n}", OrderSide.BUY, 0.001, now, now))
        denied = [d.reason for d in kernel.result.denials if d.client_order_id == f"probe-{n}"]
        return denied[0] if denied else None

    for frame in frames[:snapshot_at]:
        playback.feed_frame(*frame)
    assert (probe(1) or "").startswith("book unsynced: the BTCUSDT.BINANCE order book")
    for frame in frames[snapshot_at : snapshot_at + 50]:
        playback.feed_frame(*frame)
    assert probe(2) is None


def test_replay_of_a_missing_or_foreign_file_is_a_data_error_naming_it(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, ["trade"])
    res = CliRunner().invoke(app, ["replay", str(tmp_path / "nope.gz"), "--config", str(cfg), "--out", str(tmp_path / "o")])
    assert res.exit_code == 3 and "nope.gz: recording not found" in res.output
    plain = tmp_path / "plain.txt"
    plain.write_text("hello\n")
    with pytest.raises(DataError, match="plain.txt: not a gzip recording"):
        detect_format(plain)
    odd = tmp_path / "odd.gz"
    with gzip.open(odd, "wt") as fh:
        fh.write("hello world\n")
    with pytest.raises(DataError, match="odd.gz: line 1 is neither"):
        detect_format(odd)
    assert not (tmp_path / "o").exists()


def test_replay_of_a_capture_cut_short_by_a_crash_plays_its_whole_lines(tmp_path: Path) -> None:
    """A capture whose collector was killed mid-line ended the replay with 'Aborted.' (exit 1) and no outputs."""
    cfg = write_config(tmp_path, ["trade", "bookTicker"])
    data = SPOT_CAPTURE.read_bytes()
    cut = tmp_path / "cut.gz"
    cut.write_bytes(data[: len(data) // 2])
    res = CliRunner().invoke(app, ["replay", str(cut), "--config", str(cfg), "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    assert "cut.gz: skipped an incomplete last line" in res.output
    frames = json.loads((tmp_path / "o" / "playback.json").read_text())["frames"]
    assert 0 < frames < len(SPOT_LINES) - 1


def _cut_before_first_newline(data: bytes) -> bytes:
    """The longest prefix of gzip ``data`` whose decompressed bytes hold no newline (zlib as the reference)."""
    for end in range(11, len(data)):
        if b"\n" in zlib.decompressobj(wbits=31).decompress(data[:end]):
            return data[: end - 1]
    raise AssertionError("no newline in the data")


@pytest.mark.parametrize("recording", [SPOT_CAPTURE, OKX_RECORDING], ids=["capture", "recorder"])
def test_a_recording_cut_before_its_first_line_ends_is_refused_as_holding_no_complete_frame(
    tmp_path: Path, recording: Path
) -> None:
    """It was refused as 'not a gzip recording (Compressed file ended before the end-of-stream marker ...)'."""
    cut = tmp_path / "cut.gz"
    cut.write_bytes(_cut_before_first_newline(recording.read_bytes()))
    assert zlib.decompressobj(wbits=31).decompress(cut.read_bytes())  # some bytes of line 1, no whole line
    for command in (["serve", str(cut)], ["replay", str(cut), "--config", str(write_config(tmp_path, ["trade"])),
                                          "--out", str(tmp_path / "o")]):
        res = CliRunner().invoke(app, command)
        assert res.exit_code == 3, res.output
        text = " ".join(res.output.split())
        assert f"{cut}: holds no complete frame: the recording is cut short before its first line ends" in text
        assert "not a gzip recording" not in text
    assert not (tmp_path / "o").exists()


def test_a_capture_cut_before_its_first_line_ends_then_appended_to_replays_the_appended_member(tmp_path: Path) -> None:
    """The readers skip the cut member's incomplete line and read on; the format check refused the file as not gzip."""
    cfg = write_config(tmp_path, ["trade", "bookTicker"])
    data = SPOT_CAPTURE.read_bytes()
    appended = tmp_path / "appended.gz"
    appended.write_bytes(_cut_before_first_newline(data) + data)
    assert detect_format(appended) == "hftbacktest"
    for name, path in (("whole", SPOT_CAPTURE), ("appended", appended)):
        res = CliRunner().invoke(app, ["replay", str(path), "--config", str(cfg), "--out", str(tmp_path / name)])
        assert res.exit_code == 0, res.output
    assert (tmp_path / "appended" / "fills.csv").read_bytes() == (tmp_path / "whole" / "fills.csv").read_bytes()
    frames = [json.loads((tmp_path / name / "playback.json").read_text())["frames"] for name in ("whole", "appended")]
    assert frames[0] == frames[1] > 0


def test_replay_with_an_invalid_config_fails_before_reading_the_recording(tmp_path: Path) -> None:
    data = binance_config(None, None, ["trade"])
    data["feeds"][0]["subscriptions"] = {IID: ["trades"]}  # an OKX channel name on a Binance feed
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump(data), encoding="utf-8")
    res = CliRunner().invoke(app, ["replay", str(tmp_path / "missing.gz"), "--config", str(cfg)])
    assert res.exit_code == 2
    assert "feeds.0: subscriptions.BTCUSDT.BINANCE: unknown binance channel 'trades'" in res.output


def test_serve_refuses_a_garbled_recording_or_config_with_a_clear_error(tmp_path: Path) -> None:
    """A recording that is not gzip and a --config that is not there died with a traceback (exit 1)."""
    garbled = tmp_path / "garbled.jsonl.gz"
    garbled.write_text("garbage")
    result = CliRunner().invoke(app, ["serve", str(garbled)])
    assert result.exit_code == 3 and "not a gzip recording" in result.output
    missing = CliRunner().invoke(app, ["serve", str(SPOT_CAPTURE), "--config", str(tmp_path / "nope.yaml"),
                                       "--write-config", str(tmp_path / "w.yaml")])
    assert missing.exit_code == 2 and "no such file" in missing.output
    blocked = tmp_path / "afile"
    blocked.write_text("x")
    config = tmp_path / "paper.yaml"
    config.write_text(yaml.safe_dump(binance_config("ws://127.0.0.1:1", None, ["trade"])))
    written = CliRunner().invoke(app, ["serve", str(SPOT_CAPTURE), "--speed", "0", "--config", str(config),
                                       "--write-config", str(blocked / "w.yaml")])
    assert written.exit_code == 2 and f"cannot write it (File exists: {blocked})" in " ".join(written.output.split())
    for result in (missing, written):
        assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize("speed", ["-1", "nan"])
def test_serve_refuses_a_negative_speed_naming_the_option(speed: str) -> None:
    """--speed -1 said 'local server: speed must be > 0 or None, got -1.0', after reading the recording."""
    result = CliRunner().invoke(app, ["serve", str(SPOT_CAPTURE), "--speed", speed])
    assert result.exit_code == 2, result.output
    assert f"--speed must be > 0, or 0 for at once; got {speed}" in " ".join(result.output.split())
    assert "local server" not in result.output


def _serve_with_config(
    config: Path, written: Path, recording: Path = SPOT_CAPTURE
) -> subprocess.CompletedProcess[str]:
    """``tradebus serve`` of ``recording`` (the spot capture) with ``--config config --write-config written``, in a
    subprocess, bounded: a server that starts serving runs until a signal."""
    return subprocess.run(
        [sys.executable, "-m", "tradebus.cli", "serve", str(recording), "--venue", "binance", "--speed", "0",
         "--config", str(config), "--write-config", str(written)],
        capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )


def test_serve_refuses_a_config_whose_feeds_are_of_another_venue_before_serving(tmp_path: Path) -> None:
    """A Binance server and an OKX config: the written config's feed could never subscribe (a paper run saw 0 messages, exit 0)."""
    config = tmp_path / "paper_okx.yaml"
    config.write_text(yaml.safe_dump({"feeds": [{"venue": "okx", "market": "spot", "ws_url": "wss://ws.okx.com"}]}))
    written = tmp_path / "paper_local.yaml"
    res = _serve_with_config(config, written)
    assert res.returncode == 2, res.stderr
    message = " ".join(res.stderr.split())
    assert f"--config {config}: feed 0 is of venue okx; this server speaks binance" in message
    assert not written.exists()


@pytest.mark.parametrize(
    ("recording", "venue", "recorded_by"),
    [(SPOT_CAPTURE, "okx", "binance"), (OKX_RECORDING, "binance", "okx"), (OKX_RECORDING, "bybit", "okx")],
)
def test_serve_refuses_a_recording_of_another_venue_before_serving(recording: Path, venue: str, recorded_by: str) -> None:
    """A Binance capture served as OKX: the server said 'serving 4000 frames' and a daemon got none of them."""
    # A subprocess, bounded: a server that starts serving runs until a signal.
    res = subprocess.run(
        [sys.executable, "-m", "tradebus.cli", "serve", str(recording), "--venue", venue, "--speed", "0"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    assert res.returncode == 3, res.stderr
    message = " ".join(res.stderr.split())
    assert f"{recording}: none of its" in message and f"frames is {venue} stream data" in message
    assert "serve it with the --venue of the venue that recorded it" in message and recorded_by in message
    assert "serving" not in message


@pytest.mark.parametrize("venue", ["okx", "bybit"])
def test_serve_of_a_recording_holding_an_okx_keepalive_pong_serves_or_refuses_it_without_a_traceback(
    tmp_path: Path, venue: str
) -> None:
    """An OKX daemon records the text "pong" its connection received; serving its recording (as OKX, or by mistake
    as Bybit) died with msgspec.DecodeError, exit 1: it serves (OKX), or is refused as another venue's (Bybit)."""
    recording = tmp_path / "okx_pong.jsonl.gz"
    lines = list(read_frames(OKX_RECORDING))
    with FrameRecorder(recording) as out:
        for t, conn, raw in [*lines[:50], (lines[49][0], lines[49][1], "pong"), *lines[50:]]:
            out.write(t, conn, raw)
    if venue == "okx":
        subscribe = json.dumps({"op": "subscribe", "args": [{"channel": "trades", "instId": "BTC-USDT"}]})
        with serving("--speed", "0", recording=recording, venue="okx") as ws_url:
            with connect(ws_url, open_timeout=60, close_timeout=0.1) as ws:
                ws.send(subscribe)
                assert json.loads(ws.recv(timeout=60))["event"] == "subscribe"
                assert json.loads(ws.recv(timeout=60))["arg"] == {"channel": "trades", "instId": "BTC-USDT"}
        return
    res = subprocess.run(
        [sys.executable, "-m", "tradebus.cli", "serve", str(recording), "--venue", venue, "--speed", "0"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    assert res.returncode == 3, res.stderr
    assert f"{recording}: none of its {len(lines) + 1} frames is bybit stream data" in " ".join(res.stderr.split())


def test_replay_lists_every_trade_gap_it_met_in_playback_json(tmp_path: Path) -> None:
    """playback.json told nothing of the trades missing from the replay: a user reading the run directory could
    not tell that 100 trades the venue printed were never seen by the strategy, nor that the recording ended
    before the fetch that would have recovered them."""
    from tests.data.test_data_market_ingest import write_trade_gap_recording
    from tradebus.adapters.common.trade_gaps import RETRIES

    from .node_testdata import USDM_IID, usdm_config

    data = usdm_config(None, None)
    data["feeds"][0]["subscriptions"] = {USDM_IID: ["trade"]}
    cfg = tmp_path / "paper.yaml"
    cfg.write_text(yaml.safe_dump(data), encoding="utf-8")
    rec = write_trade_gap_recording(tmp_path / "cut.jsonl.gz")
    answers = [(rec.kept[rec.at][0] + 1 + n, "rest-trades:BTCUSDT@binance-usdm", "[]") for n in range(1 + RETRIES)]
    with FrameRecorder(tmp_path / "answered.jsonl.gz") as out:
        for line in [*rec.kept[: rec.at + 1], *answers, *rec.kept[rec.at + 1:]]:
            out.write(*line)
    gap = {
        "instrument_id": USDM_IID, "first_id": rec.missing[0], "last_id": rec.missing[-1], "recovered": 0,
        "lost": len(rec.missing), "start_ns": rec.kept[rec.at - 1][0], "end_ns": rec.kept[rec.at][0],
    }
    for name, ended_ns, recording_ended in (
        ("cut", rec.kept[-1][0], True), ("answered", answers[-1][0], False)
    ):
        res = CliRunner().invoke(app, ["replay", str(tmp_path / f"{name}.jsonl.gz"), "--config", str(cfg),
                                       "--out", str(tmp_path / name)])
        assert res.exit_code == 0, res.output
        stats = json.loads((tmp_path / name / "playback.json").read_text())
        assert stats["trade_gaps"] == [{**gap, "ended_ns": ended_ns, "recording_ended": recording_ended}], name


def test_serve_refuses_a_config_subscribing_a_symbol_the_recording_lacks_naming_its_streams(tmp_path: Path) -> None:
    """An ETHUSDT config against the BTCUSDT capture: the server served, the written config pointed at it, and the
    daemon recycled its connection for 'no market data' forever; now serve exits 2 before serving, naming the
    instrument and the streams the recording has."""
    eth = {**BINANCE_INSTRUMENT, "symbol": "ETHUSDT", "base": "ETH"}
    data = binance_config("ws://127.0.0.1:1", None, ["trade"])
    data["instruments"] = [eth]
    data["strategy"]["instruments"] = ["ETHUSDT.BINANCE"]
    data["feeds"][0]["subscriptions"] = {"ETHUSDT.BINANCE": ["trade"]}
    config = tmp_path / "paper_eth.yaml"
    config.write_text(yaml.safe_dump(data))
    written = tmp_path / "paper_local.yaml"
    res = _serve_with_config(config, written)
    assert res.returncode == 2, res.stderr
    message = " ".join(res.stderr.split())
    assert (f"--config {config}: feeds.0.subscriptions: ETHUSDT.BINANCE (symbol ETHUSDT): not in the recording "
            f"{SPOT_CAPTURE}, whose streams are btcusdt@bookTicker, btcusdt@depth@100ms, btcusdt@trade:") in message
    assert "serving" not in message and not written.exists()



@pytest.mark.parametrize(("channels", "options", "stream"), [
    (["aggTrade"], {}, "btcusdt@aggTrade"),  # a channel the capture lacks
    (["trade", "depth"], {"depth_speed": "1000ms"}, "btcusdt@depth"),  # the capture's depth is @100ms
])
def test_serve_refuses_a_config_subscribing_a_stream_the_recording_lacks_naming_it(
    tmp_path: Path, channels: list[str], options: dict[str, str], stream: str
) -> None:
    """Its symbol being in the capture, the config passed: the server served, the daemon subscribed a stream it
    never sent (the server routes by the exact stream name) and recycled its connection for 'no market data'."""
    data = binance_config("ws://127.0.0.1:1", None, channels)
    data["feeds"][0].update(options)
    config = tmp_path / "paper.yaml"
    config.write_text(yaml.safe_dump(data))
    written = tmp_path / "paper_local.yaml"
    res = _serve_with_config(config, written)
    assert res.returncode == 2, res.stderr
    message = " ".join(res.stderr.split())
    assert (f"--config {config}: feeds.0: {stream}: a stream its subscriptions ask for (channel and its options: "
            f"depth speed, book depth, bar interval) is not in the recording {SPOT_CAPTURE}, whose streams are "
            "btcusdt@bookTicker, btcusdt@depth@100ms, btcusdt@trade:") in message
    assert "serving" not in message and not written.exists()


@pytest.mark.parametrize(("channels", "unserved"), [
    (["trades", "books5"], ["books5:BTC-USDT"]), (["trades", "tickers", "books"], []),
])
def test_an_okx_config_is_checked_against_the_recordings_streams(tmp_path: Path, channels: list[str],
                                                                 unserved: list[str]) -> None:
    from tradebus.adapters.okx.client import frame_stream
    from tradebus.errors import ConfigError
    from tradebus.node.playback import check_served_symbols

    from .test_node_config import okx_config

    topics = {stream for _, _, raw in read_frames(OKX_RECORDING) if (stream := frame_stream(raw)) is not None}
    assert "books:BTC-USDT" in topics and "trades:BTC-USDT" in topics
    data = okx_config(None, channels)
    if not unserved:
        check_served_symbols(data, tmp_path / "paper.yaml", OKX_RECORDING, topics)
        return
    with pytest.raises(ConfigError, match=f"feeds.0: {unserved[0]}: a stream its subscriptions ask for"):
        check_served_symbols(data, tmp_path / "paper.yaml", OKX_RECORDING, topics)


def test_serve_refuses_a_config_whose_spot_and_usdm_feeds_share_a_symbol(tmp_path: Path) -> None:
    """A spot and a USD-M BTCUSDT feed (a basis pair) against the spot capture: the copy pointed both feeds at the
    server, which sent its one btcusdt stream to both, and the paper daemon filled BTCUSDT.BINANCE_USDM at the spot
    trades (spot trade ids, the spot-only field ``M``); now serve exits 2 before serving, naming both feeds."""
    perp = {**BINANCE_INSTRUMENT, "venue": "BINANCE_USDM", "kind": "perpetual", "contract_size": 1.0, "margin": False}
    data = binance_config("ws://127.0.0.1:1", None, ["trade"])
    data["instruments"] = [BINANCE_INSTRUMENT, perp]
    data["feeds"].append({**data["feeds"][0], "market": "usdm", "subscriptions": {"BTCUSDT.BINANCE_USDM": ["trade"]}})
    config = tmp_path / "paper_basis.yaml"
    config.write_text(yaml.safe_dump(data))
    written = tmp_path / "paper_local.yaml"
    res = _serve_with_config(config, written)
    assert res.returncode == 2, res.stderr
    message = " ".join(res.stderr.split())
    assert (f"--config {config}: feeds.0 (spot: BTCUSDT.BINANCE) and feeds.1 (usdm: BTCUSDT.BINANCE_USDM) subscribe "
            f"symbol BTCUSDT, and the recording {SPOT_CAPTURE} served here has one stream of it") in message
    assert "serving" not in message and not written.exists()


def test_serve_refuses_a_stream_a_merged_recording_holds_from_two_markets(tmp_path: Path) -> None:
    """A daemon's recording of a spot and a USD-M BTCUSDT feed (connections binance-spot:1 and binance-usdm:1) served
    against a config of the spot feed alone: the server sent the spot feed the USD-M frames of btcusdt@trade (and
    bookTicker) too, as its own market's; now serve exits 2 before serving, naming the stream and both connections'
    feeds. Streams the spot connection alone carries are served, whatever other streams both carry."""
    from tradebus.node.playback import check_served_symbols

    from .node_testdata import USDM_CAPTURE

    merged = tmp_path / "frames.jsonl.gz"
    lines = [(t, "binance-spot:1", raw) for t, raw in SPOT_LINES]
    lines += [(t, "binance-usdm:1", raw) for t, raw in iter_hftbacktest(USDM_CAPTURE)]
    with FrameRecorder(merged) as rec:
        for recv_ns, conn, raw in sorted(lines, key=lambda line: line[0]):
            text = raw if isinstance(raw, str) else raw.decode()
            rec.write(recv_ns, f"rest:BTCUSDT@{conn}" if text.startswith('{"lastUpdateId"') else conn, text)
    data = binance_config("ws://127.0.0.1:1", None, ["trade"])
    config = tmp_path / "paper_spot.yaml"
    config.write_text(yaml.safe_dump(data))
    written = tmp_path / "paper_local.yaml"
    res = _serve_with_config(config, written, merged)
    assert res.returncode == 2, res.stderr
    message = " ".join(res.stderr.split())
    assert (f"--config {config}: feeds.0: btcusdt@trade (recorded by binance-spot and binance-usdm): the recording "
            f"{merged} holds this stream from connections of two markets") in message
    assert "serving" not in message and not written.exists()
    depth = binance_config("ws://127.0.0.1:1", None, ["trade", "depth"])
    depth["feeds"][0]["depth_speed"] = "100ms"
    carriers = {"btcusdt@trade": {"binance-spot"}, "btcusdt@depth@100ms": {"binance-spot"},
                "btcusdt@bookTicker": {"binance-spot", "binance-usdm"}, "btcusdt@depth@0ms": {"binance-usdm"}}
    check_served_symbols(depth, config, merged, set(carriers), carriers)


def test_serve_refuses_a_stream_the_recording_holds_from_another_market_alone(tmp_path: Path) -> None:
    """A daemon's recording of a USD-M BTCUSDT feed alone (connection binance-usdm:1) served against a config of a spot
    BTCUSDT feed: btcusdt@trade is carried by one feed, binance-usdm, and the server sent its USD-M frames to the spot
    feed as spot trades (a replay of that config reads none of them: no feed of it takes binance-usdm's frames); now
    serve exits 2 before serving, naming the stream, the feed that recorded it and the feed subscribing it."""
    from .node_testdata import USDM_CAPTURE

    recording = tmp_path / "frames.jsonl.gz"
    with FrameRecorder(recording) as rec:
        for recv_ns, raw in iter_hftbacktest(USDM_CAPTURE):
            text = raw if isinstance(raw, str) else raw.decode()
            rec.write(recv_ns, "rest:BTCUSDT@binance-usdm:1" if text.startswith('{"lastUpdateId"') else "binance-usdm:1", text)
    config = tmp_path / "paper_spot.yaml"
    config.write_text(yaml.safe_dump(binance_config("ws://127.0.0.1:1", None, ["trade"])))
    written = tmp_path / "paper_local.yaml"
    res = _serve_with_config(config, written, recording)
    assert res.returncode == 2, res.stderr
    message = " ".join(res.stderr.split())
    assert (f"--config {config}: feeds.0: btcusdt@trade (recorded by binance-usdm, not by this feed, binance-spot): "
            f"the recording {recording} holds this stream from another feed's connections") in message
    assert "serving" not in message and not written.exists()


def test_serve_refuses_bybit_spot_and_linear_feeds_of_one_stream_symbol(tmp_path: Path) -> None:
    """Bybit spot BTCUSDT and linear BTCUSDT-LINEAR are one stream symbol (publicTrade.BTCUSDT): the two-market check
    compared the instruments' symbols, which differ, and let both feeds read the recording's one stream."""
    from tradebus.adapters.bybit.parse import frame_stream
    from tradebus.errors import ConfigError
    from tradebus.node.playback import check_served_symbols

    from .node_testdata import BYBIT_INSTRUMENT, BYBIT_RECORDING

    topics = {stream for _, _, raw in read_frames(BYBIT_RECORDING) if (stream := frame_stream(raw)) is not None}
    spot = dict(BYBIT_INSTRUMENT, symbol="BTCUSDT", kind="spot")
    data = {
        "instruments": [BYBIT_INSTRUMENT, spot],
        "strategy": {"name": "tradebus.strategies.tick_ema:TickEmaCross", "instruments": ["BTCUSDT-LINEAR.BYBIT"],
                     "params": {"fast": 2, "slow": 5, "quantity": 0.001}},
        "venue": {"fill_on": "trades"},
        "feeds": [{"venue": "bybit", "market": "linear", "subscriptions": {"BTCUSDT-LINEAR.BYBIT": ["publicTrade"]}},
                  {"venue": "bybit", "market": "spot", "subscriptions": {"BTCUSDT.BYBIT": ["publicTrade"]}}],
    }
    with pytest.raises(ConfigError, match=re.escape(
        "feeds.0 (linear: BTCUSDT-LINEAR.BYBIT) and feeds.1 (spot: BTCUSDT.BYBIT) subscribe symbol BTCUSDT,"
    )):
        check_served_symbols(data, tmp_path / "paper.yaml", BYBIT_RECORDING, topics)


@pytest.mark.parametrize(("symbol", "channels", "refused"), [
    ("BTCUSDT-LINEAR", ["publicTrade", "tickers", "orderbook.200", "kline.1"], None),
    ("BTCUSDT-LINEAR", ["publicTrade", "orderbook.50"], "feeds.0: orderbook.50.BTCUSDT: a stream its subscriptions ask for"),
    ("XRPUSDT-LINEAR", ["publicTrade"], "feeds.0.subscriptions: XRPUSDT-LINEAR.BYBIT (symbol XRPUSDT-LINEAR): not in the recording"),
])
def test_a_bybit_linear_config_is_checked_against_the_recordings_streams_by_its_stream_symbol(
    tmp_path: Path, symbol: str, channels: list[str], refused: str | None
) -> None:
    """A linear instrument's symbol ends with -LINEAR, which its streams drop (publicTrade.BTCUSDT): serve refused
    BTCUSDT-LINEAR as 'not in the recording' of the Bybit recording its daemon runs on."""
    from tradebus.adapters.bybit.parse import frame_stream
    from tradebus.errors import ConfigError
    from tradebus.node.playback import check_served_symbols

    from .node_testdata import BYBIT_INSTRUMENT, BYBIT_RECORDING

    topics = {stream for _, _, raw in read_frames(BYBIT_RECORDING) if (stream := frame_stream(raw)) is not None}
    assert {"publicTrade.BTCUSDT", "orderbook.200.BTCUSDT", "tickers.BTCUSDT", "kline.1.BTCUSDT"} <= topics
    iid = f"{symbol}.BYBIT"
    data = {
        "instruments": [dict(BYBIT_INSTRUMENT, symbol=symbol)],
        "strategy": {"name": "tradebus.strategies.tick_ema:TickEmaCross", "instruments": [iid],
                     "params": {"fast": 2, "slow": 5, "quantity": 0.001}},
        "venue": {"fill_on": "trades"},
        "feeds": [{"venue": "bybit", "market": "linear", "subscriptions": {iid: channels}}],
    }
    if refused is None:
        check_served_symbols(data, tmp_path / "paper.yaml", BYBIT_RECORDING, topics)
        return
    with pytest.raises(ConfigError, match=re.escape(refused)):
        check_served_symbols(data, tmp_path / "paper.yaml", BYBIT_RECORDING, topics)


@contextlib.contextmanager
def serving(*options: str, recording: Path = SPOT_CAPTURE, venue: str = "binance") -> Iterator[str]:
    """``tradebus serve`` of ``recording`` (the spot capture) with ``options`` in a subprocess: its WebSocket URL;
    stopped with SIGINT (exit 0)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tradebus.cli", "serve", str(recording), "--venue", venue, *options],
        stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    try:
        assert proc.stderr is not None
        served = ""
        while "serving" not in served:
            served = proc.stderr.readline()
            assert served, "serve exited before serving"
        yield served.split(" on ", 1)[1].split()[0]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


async def test_serve_says_serving_once_the_copy_of_the_config_is_written_and_a_signal_stops_it_cleanly(
    tmp_path: Path,
) -> None:
    """``serving ... on ws://...`` was logged before --write-config's copy was written and before SIGINT/SIGTERM
    stopped the server: a script starting ``tradebus paper`` on the copy at that line could find no file, and a
    Ctrl-C right after it ended serve with 'stopped by SIGINT while starting; nothing was run', exit 130."""
    from tradebus.node.playback import serve_recording

    config = tmp_path / "paper.yaml"
    config.write_text(yaml.safe_dump(binance_config("ws://127.0.0.1:1", None, ["trade"])))
    written = tmp_path / "paper_local.yaml"
    default = signal.getsignal(signal.SIGINT)
    at_serving: list[tuple[bool, bool]] = []

    def sink(message: object) -> None:
        if str(message).startswith("serving "):
            at_serving.append((written.exists(), signal.getsignal(signal.SIGINT) is not default))

    sink_id = logger.add(sink, format="{message}", level="INFO")
    task = asyncio.create_task(
        serve_recording(SPOT_CAPTURE, "binance", speed=None, config=config, write_config=written)
    )
    try:
        async with asyncio.timeout(120):
            while not at_serving and not task.done():
                await asyncio.sleep(0.01)
    finally:
        logger.remove(sink_id)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        signal.signal(signal.SIGINT, default)  # the loop's removal left Python's own, not the test runner's
    assert at_serving == [(True, True)]


def test_serve_takes_a_daemons_restarts_and_reconnections_for_as_long_as_it_runs() -> None:
    """`tradebus serve` accepted 16 connections over its life, then answered every one HTTP 503 'too many
    connections': a paper daemon restarted a few times (or recycling a quiet feed every `stale_after`) could never
    connect again while the server ran on; now the 20th connection streams the recording as the first did
    (paced and held: each connection takes a trade or so of the recording, which outlasts the 20)."""
    with serving("--speed", "1", "--hold") as ws_url:
        for n in range(20):
            # close_timeout: the test does not wait for the server to answer its close (no bearing on the result).
            with connect(f"{ws_url}/stream?streams=btcusdt@trade", open_timeout=60, close_timeout=0.1) as ws:
                frame = json.loads(ws.recv(timeout=60))
            assert frame["stream"] == "btcusdt@trade", n


#: The update ids ``u`` of the capture's bookTicker frames, in recorded order.
SPOT_TICKER_IDS = [json.loads(raw)["data"]["u"] for _, raw in SPOT_LINES if "@bookTicker" in raw]


async def read_ticker_ids(ws_url: str, *, close_after: int | None = None, until: int | None = None) -> list[int]:
    """The ``u`` of each bookTicker frame one connection reads, until the one of id ``until`` or the connection's end.

    After ``close_after`` frames the client closes the connection and, as a daemon's client does, reads on
    until the server's close: it reads every frame the server sent before it learnt of the close.
    """
    ids: list[int] = []
    closing: asyncio.Task[None] | None = None
    async with asyncio.timeout(120):
        async with aconnect(f"{ws_url}/stream?streams=btcusdt@bookTicker", max_queue=None) as ws:
            async for message in ws:
                ids.append(json.loads(message)["data"]["u"])
                if len(ids) == close_after:
                    closing = asyncio.create_task(ws.close())
                if ids[-1] == until:
                    break
        if closing is not None:
            await closing
    return ids


@pytest.mark.parametrize("options", [["--speed", "0"], ["--speed", "20", "--hold"]], ids=["speed-0", "paced-hold"])
def test_a_reconnecting_client_reads_every_frame_of_the_served_stream_once_in_order(options: list[str]) -> None:
    """`tradebus serve --speed 0` re-sent the last 50 frames to each new connection: a daemon's client that read
    100 bookTickers and reconnected read 33 of them twice (the stale quotes reached its daemon as new ones), as
    did a paced one's with --hold; now a connection goes on after the last frame the server wrote to the one
    before, and the recording's bookTicker update ids come exactly once, in order."""
    with serving(*options) as ws_url:

        async def around_a_reconnect() -> list[int]:
            first = await read_ticker_ids(ws_url, close_after=100)
            assert 100 <= len(first) < len(SPOT_TICKER_IDS)  # the client closed amid the stream
            return first + await read_ticker_ids(ws_url, until=SPOT_TICKER_IDS[-1])

        ids = asyncio.run(around_a_reconnect())
    assert ids == SPOT_TICKER_IDS


def test_a_client_reconnecting_to_a_paced_serve_reads_no_frame_again() -> None:
    """Paced, a reconnecting client starts at the venue's now: it misses what was printed while it was away
    (as on the venue), and before, the last 50 frames again, stale quotes it had read; now none."""
    with serving("--speed", "1") as ws_url:

        async def around_a_reconnect() -> tuple[list[int], list[int]]:
            first = await read_ticker_ids(ws_url, close_after=100)
            return first, await read_ticker_ids(ws_url, close_after=20)

        first, second = asyncio.run(around_a_reconnect())
    assert second[0] > first[-1], (first[-3:], second[:3])
    ids = first + second
    assert ids == sorted(set(ids)) and set(ids) <= set(SPOT_TICKER_IDS)


def test_serve_of_the_bybit_recording_serves_its_linear_connection_alone_for_a_linear_config(tmp_path: Path) -> None:
    """The shipped Bybit recording holds publicTrade.BTCUSDT from its linear and its spot connections: serve refused a
    linear config of it (exit 2) saying to serve 'a recording of one market', which nothing made; ``--connection linear``
    now serves that connection's frames alone, the linear BTCUSDT trades in their recorded order, no spot trade among
    them, and the refusal names the option; a connection the recording lacks is refused naming those it has."""
    from .node_testdata import BYBIT_INSTRUMENT, BYBIT_RECORDING

    data = {
        "instruments": [BYBIT_INSTRUMENT],
        "strategy": {"name": "tradebus.strategies.tick_ema:TickEmaCross", "instruments": ["BTCUSDT-LINEAR.BYBIT"],
                     "params": {"fast": 2, "slow": 5, "quantity": 0.001}},
        "venue": {"fill_on": "trades"},
        "feeds": [{"venue": "bybit", "market": "linear", "subscriptions": {"BTCUSDT-LINEAR.BYBIT": ["publicTrade"]}}],
    }
    config = tmp_path / "paper_linear.yaml"
    config.write_text(yaml.safe_dump(data))
    written = tmp_path / "paper_local.yaml"

    def serve(*options: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tradebus.cli", "serve", str(BYBIT_RECORDING), "--venue", "bybit", "--speed", "0",
             "--config", str(config), "--write-config", str(written), *options],
            capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
        )

    refused = serve()
    assert refused.returncode == 2, refused.stderr
    message = " ".join(refused.stderr.split())
    assert "feeds.0: publicTrade.BTCUSDT (recorded by linear and spot)" in message
    assert message.endswith("serve one market's connections alone (--connection linear or --connection spot)")
    assert not written.exists()
    unknown = serve("--connection", "swap")
    assert unknown.returncode == 2 and not written.exists()
    assert f"--connection swap: the recording {BYBIT_RECORDING} has no frame of it; its connections are linear, spot" in (
        " ".join(unknown.stderr.split())
    )

    def trade_ids(conn: str | None) -> list[str]:
        frames = [raw for _, c, raw in read_frames(BYBIT_RECORDING) if conn in (None, c)]
        return [t["i"] for raw in frames if '"topic":"publicTrade.BTCUSDT"' in raw for t in json.loads(raw)["data"]]

    linear = trade_ids("linear")
    assert len(linear) < len(trade_ids(None))  # the spot connection's trades are in the file too
    read: list[str] = []
    with serving("--speed", "0", "--connection", "linear", "--config", str(config), "--write-config", str(written),
                 recording=BYBIT_RECORDING, venue="bybit") as ws_url:
        assert yaml.safe_load(written.read_text())["feeds"][0]["ws_url"] == ws_url
        with connect(ws_url, open_timeout=60, close_timeout=0.1) as ws:
            ws.send(json.dumps({"op": "subscribe", "args": ["publicTrade.BTCUSDT"]}))
            while len(read) < len(linear):
                frame = json.loads(ws.recv(timeout=60))
                read += [t["i"] for t in frame.get("data") or [] if frame.get("topic") == "publicTrade.BTCUSDT"]
    assert read == linear


def test_serve_connection_of_a_capture_or_a_connection_id_is_refused_naming_what_to_pass(tmp_path: Path) -> None:
    """``--connection`` names a recorded connection's feed. An hftbacktest capture names none: serve said "its
    connections are " and stopped there; a daemon's connection id as the file spells it (``binance-usdm:1``) was
    refused as "no frame of it" though every USD-M frame is of it. Each refusal now says what to pass."""
    from tradebus.errors import ConfigError
    from tradebus.node.playback import serve_recording

    with pytest.raises(ConfigError) as capture:
        asyncio.run(serve_recording(SPOT_CAPTURE, "binance", speed=0, connections=("binance-spot",)))
    assert str(capture.value) == (
        f"--connection binance-spot: the recording {SPOT_CAPTURE} names no connection (an hftbacktest capture, "
        "of one connection): serve it without --connection"
    )
    merged = tmp_path / "frames.jsonl.gz"
    with FrameRecorder(merged) as rec:
        for recv_ns, raw in SPOT_LINES[:50]:
            rec.write(recv_ns, "binance-spot:1", raw if isinstance(raw, str) else raw.decode())
        rec.write(SPOT_LINES[50][0], "rest:BTCUSDT@binance-usdm:2", '{"lastUpdateId":1,"bids":[],"asks":[]}')
    assert {conn for _, conn, _ in read_frames(merged)} == {"binance-spot:1", "rest:BTCUSDT@binance-usdm:2"}
    for given, named in (("binance-spot:1", "binance-spot:1 (a connection of feed binance-spot: --connection "
                                            "binance-spot)"),
                         ("binance-usdm", "binance-usdm")):
        with pytest.raises(ConfigError) as refused:
            asyncio.run(serve_recording(merged, "binance", speed=0, connections=(given,)))
        # a REST answer alone is no frame of a connection: binance-usdm is not one of those served
        assert str(refused.value) == (
            f"--connection {named}: the recording {merged} has no frame of it; its connections are binance-spot"
        )


def test_serve_points_only_its_own_venues_feeds_of_a_config_of_three_venues(tmp_path: Path) -> None:
    """One paper config trading Binance spot, OKX spot and Bybit linear (a cross-venue strategy): ``serve --config``
    refused it on each server ('feed 1 is of venue okx; this server speaks binance', exit 2), so no server could
    write the copy and each feed's URL had to be set by hand; a Bybit linear BTCUSDT-LINEAR beside Binance spot
    BTCUSDT was also taken for two markets of one symbol on one server. Now each server points its own venue's
    feeds and checks them against its recording, leaving the others as they are: three serves, each on the copy
    the one before wrote, give a config whose every feed is at its server."""
    from .node_testdata import BYBIT_INSTRUMENT, BYBIT_RECORDING, OKX_INSTRUMENT

    data = binance_config("wss://stream.binance.com:9443", "https://api.binance.com", ["trade"])
    data["instruments"] += [OKX_INSTRUMENT, BYBIT_INSTRUMENT]
    data["feeds"] += [
        {"venue": "okx", "market": "spot", "ws_url": "wss://ws.okx.com:8443/ws/v5/public",
         "subscriptions": {"BTC-USDT.OKX": ["trades"]}},
        {"venue": "bybit", "market": "linear", "ws_url": "wss://stream.bybit.com/v5/public/linear",
         "subscriptions": {"BTCUSDT-LINEAR.BYBIT": ["publicTrade"]}},
    ]
    config = tmp_path / "paper.yaml"
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    urls = {}
    with contextlib.ExitStack() as stack:
        for venue, recording, extra in [("binance", SPOT_CAPTURE, []), ("okx", OKX_RECORDING, []),
                                        ("bybit", BYBIT_RECORDING, ["--connection", "linear"])]:
            written = tmp_path / f"paper_{venue}.yaml"
            urls[venue] = stack.enter_context(serving(
                "--speed", "0", "--config", str(config), "--write-config", str(written), *extra,
                recording=recording, venue=venue,
            ))
            copy = yaml.safe_load(written.read_text(encoding="utf-8"))
            mine = [feed["ws_url"] for feed in copy["feeds"] if feed["venue"] == venue]
            assert mine == [urls[venue]], copy["feeds"]
            config = written
    feeds = {feed["venue"]: feed for feed in yaml.safe_load(config.read_text(encoding="utf-8"))["feeds"]}
    assert {venue: feed["ws_url"] for venue, feed in feeds.items()} == urls
    assert feeds["binance"]["rest_url"] == urls["binance"].replace("ws://", "http://")
    assert len(set(urls.values())) == 3


def _recording_of_markets(path: Path, *, usdm: bool = True, named: bool = True) -> dict[str, int]:
    """The spot capture (connection binance-spot:1), and with ``usdm`` the USD-M one (binance-usdm:1), as a daemon
    records them, their REST depth snapshot lines ``rest:BTCUSDT@<connection>`` (``named``) or, as before those lines
    named their connection, ``rest:BTCUSDT``: each one's snapshot ``lastUpdateId`` by connection, in file order."""
    from .node_testdata import USDM_CAPTURE

    lines = [(t, "binance-spot:1", raw) for t, raw in SPOT_LINES]
    if usdm:
        lines += [(t, "binance-usdm:1", raw) for t, raw in iter_hftbacktest(USDM_CAPTURE)]
    snapshots: dict[str, int] = {}
    with FrameRecorder(path) as rec:
        for recv_ns, conn, raw in sorted(lines, key=lambda line: line[0]):
            text = raw if isinstance(raw, str) else raw.decode()
            if text.startswith('{"lastUpdateId"'):
                snapshots.setdefault(conn, json.loads(text)["lastUpdateId"])
                conn = f"rest:BTCUSDT@{conn}" if named else "rest:BTCUSDT"
            rec.write(recv_ns, conn, text)
    return snapshots


def _refused_serve(recording: Path, *options: str) -> str:
    """The error of ``tradebus serve`` of a Binance ``recording`` at ``--speed 0`` with ``options``, which must refuse it
    (exit 2), its whitespace collapsed; bounded: a server that starts serving runs until a signal."""
    refused = subprocess.run(
        [sys.executable, "-m", "tradebus.cli", "serve", str(recording), "--venue", "binance", "--speed", "0", *options],
        capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    assert refused.returncode == 2, refused.stderr
    return " ".join(refused.stderr.split())


def test_serve_of_a_recording_of_two_markets_depth_snapshots_asks_for_one_markets_connections(tmp_path: Path) -> None:
    """A daemon's recording of a spot and a USD-M BTCUSDT feed holds each one's REST depth snapshot
    (``rest:BTCUSDT@binance-spot:1``, ``rest:BTCUSDT@binance-usdm:1``); served without ``--connection``, the server
    answered the spot feed's ``/api/v3/depth`` with the first of them, the USD-M one (lastUpdateId 2710246765483, a
    futures sequence: the spot book never syncs on it). Now serve refuses it naming the option, and with
    ``--connection binance-spot`` answers the spot capture's own snapshot."""
    import urllib.request

    merged = tmp_path / "frames.jsonl.gz"
    snapshots = _recording_of_markets(merged)
    assert snapshots == {"binance-usdm:1": 2710246765483, "binance-spot:1": 50093239218}  # the USD-M one first
    assert _refused_serve(merged).endswith(
        f"the recording {merged} holds REST depth snapshots of binance-spot, binance-usdm connections, and the server "
        "answers every depth request with the first of them (another market's book for all but one): serve one "
        "market's connections alone (--connection binance-spot or --connection binance-usdm)"
    )
    with serving("--speed", "0", "--connection", "binance-spot", recording=merged) as ws_url:
        url = ws_url.replace("ws://", "http://") + "/api/v3/depth?symbol=BTCUSDT&limit=1000"
        with urllib.request.urlopen(url, timeout=60) as answer:
            assert json.loads(answer.read())["lastUpdateId"] == snapshots["binance-spot:1"]


def test_serve_connection_of_an_older_recording_of_two_markets_refuses_its_snapshots_naming_no_connection(
    tmp_path: Path,
) -> None:
    """Snapshot lines naming no connection (``rest:BTCUSDT``) were kept under any ``--connection``: served with
    ``--connection binance-spot``, the spot feed's ``/api/v3/depth`` got the first of them, the USD-M one
    (lastUpdateId 2710246765483, on which the spot book never syncs). Whose each is cannot be told (a replay
    refuses them alike): serve refuses, exit 2, naming the line and the connections."""
    merged = tmp_path / "frames.jsonl.gz"
    assert _recording_of_markets(merged, named=False) == {"binance-usdm:1": 2710246765483, "binance-spot:1": 50093239218}
    assert _refused_serve(merged, "--connection", "binance-spot").endswith(
        f"the recording {merged} holds a REST depth snapshot line naming no connection ('rest:BTCUSDT', written "
        "before those lines named theirs) and frames of the connections binance-spot, binance-usdm: --connection "
        "cannot tell which one's book it is (the server would answer every depth request with the first snapshot, "
        "maybe another market's); serve a recording of one market's connections"
    )


def test_serve_connection_of_an_older_recording_of_one_market_answers_its_snapshot(tmp_path: Path) -> None:
    """A recording of one market's connections: its snapshot naming no connection is that market's, and kept."""
    import urllib.request

    older = tmp_path / "frames.jsonl.gz"
    snapshots = _recording_of_markets(older, usdm=False, named=False)
    with serving("--speed", "0", "--connection", "binance-spot", recording=older) as ws_url:
        url = ws_url.replace("ws://", "http://") + "/api/v3/depth?symbol=BTCUSDT&limit=1000"
        with urllib.request.urlopen(url, timeout=60) as answer:
            assert json.loads(answer.read())["lastUpdateId"] == snapshots["binance-spot:1"] == 50093239218


def test_serve_refuses_to_write_its_copy_over_the_config_or_the_recording(tmp_path: Path) -> None:
    """``--write-config`` naming the ``--config`` file (``serve ... --config m1.yaml --write-config m1.yaml``, as a
    chain of serves of several venues invites) replaced the user's config with the copy pointed at the server
    (ws_url wss://stream.binance.com:9443 -> ws://127.0.0.1:<port>, gone with the server), and naming the recording
    wrote YAML over the frames it serves. Both are now refused before anything is served (exit 2), the files
    untouched."""
    config = tmp_path / "paper.yaml"
    config.write_text(yaml.safe_dump(binance_config("wss://stream.binance.com:9443", "https://api.binance.com",
                                                    ["trade"])), encoding="utf-8")
    recording = tmp_path / "capture.gz"
    recording.write_bytes(SPOT_CAPTURE.read_bytes())
    before = {path: path.read_bytes() for path in (config, recording)}
    for target, what in ((config, "--config"), (tmp_path / "." / "capture.gz", "the recording")):
        res = subprocess.run(
            [sys.executable, "-m", "tradebus.cli", "serve", str(recording), "--venue", "binance", "--speed", "0",
             "--config", str(config), "--write-config", str(target)],
            capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
        )
        assert res.returncode == 2, res.stderr
        assert f"--write-config {target}: it is {what}" in " ".join(res.stderr.split()), res.stderr
        assert "serving" not in res.stderr
    assert {path: path.read_bytes() for path in (config, recording)} == before
