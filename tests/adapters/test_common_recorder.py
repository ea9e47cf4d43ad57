"""Frame recorder: round trip, crash safety, appended runs, the hftbacktest converter."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
from loguru import logger

from tradebus.adapters.binance.client import BinanceRouter
from tradebus.adapters.binance.config import BinanceConfig
from tradebus.adapters.common.recorder import (
    FrameRecorder,
    PrivateFrames,
    convert_hftbacktest,
    is_private,
    iter_hftbacktest,
    read_frames,
)
from tradebus.errors import DataError

from .binance_testdata import SPOT_CAPTURE, USDM_CAPTURE, book_arrays, capture, offline_rebuild


def test_round_trip_text_and_binary_frames(tmp_path: Path) -> None:
    path = tmp_path / "rec" / "feed.jsonl.gz"
    frames = [(1, "c:1", '{"a":1}'), (2, "c:1", b"\x00\xffbin"), (3, "c:2", 'with "quotes" and \\ and \n')]
    with FrameRecorder(path) as rec:
        for f in frames:
            rec.write(*f)
    assert list(read_frames(path)) == frames


def test_connection_ends_are_read_only_when_asked_for_and_a_private_streams_are_not_recorded(tmp_path: Path) -> None:
    """A connection's end is a line of its own (``end:``): the replay reads it, serve and imports see frames alone."""
    path = tmp_path / "feed.jsonl.gz"
    with FrameRecorder(path) as rec:
        rec.write(1, "binance-spot:1", "{}")
        rec.connection_ended(2, "binance-spot:1", "ConnectionClosedError: no close frame received or sent")
        PrivateFrames(rec, []).connection_ended(3, "binance-spot-user:1", "closed")
        rec.write(4, "binance-spot:2", "{}")
    assert list(read_frames(path)) == [(1, "binance-spot:1", "{}"), (4, "binance-spot:2", "{}")]
    assert list(read_frames(path, ends=True, private=True)) == [
        (1, "binance-spot:1", "{}"),
        (2, "end:binance-spot:1", "ConnectionClosedError: no close frame received or sent"),
        (4, "binance-spot:2", "{}"),
    ]
    rec.connection_ended(5, "binance-spot:2", "stopped")  # closed: nothing more is written, nothing raised
    assert len(list(read_frames(path, ends=True))) == 3


def test_stale_feed_episode_lines_are_read_only_when_asked_for(tmp_path: Path) -> None:
    """A recording holds a feed's stale episode (``stale:``) and its connection's proof of life (``live:``):
    the replay reads them, every other reader (serve, imports) sees frames alone."""
    path = tmp_path / "feed.jsonl.gz"
    lines = [(1, "binance-spot:1", "{}"), (5, "stale:binance-spot", "1"), (6, "live:binance-spot", "pong"), (7, "binance-spot:2", "{}")]
    with FrameRecorder(path) as rec:
        for line in lines:
            rec.write(*line)
    assert list(read_frames(path)) == [lines[0], lines[3]]
    assert list(read_frames(path, episodes=True)) == lines


def test_flushed_frames_survive_a_crash_without_trailer(tmp_path: Path) -> None:
    path = tmp_path / "feed.jsonl.gz"
    rec = FrameRecorder(path, flush_every=2)
    for i in range(5):
        rec.write(i, "c", f'{{"i":{i}}}')
    # simulate a crash: copy the file as it is on disk now (no gzip trailer, last frame unflushed)
    crashed = tmp_path / "crashed.jsonl.gz"
    shutil.copy(path, crashed)
    rec.close()
    got = list(read_frames(crashed))
    assert [t for t, _, _ in got] == [0, 1, 2, 3]


def test_appending_runs_makes_a_multi_member_file_read_in_order(tmp_path: Path) -> None:
    path = tmp_path / "feed.jsonl.gz"
    with FrameRecorder(path) as rec:
        rec.write(1, "a", "x")
    with FrameRecorder(path) as rec:
        rec.write(2, "b", "y")
    assert list(read_frames(path)) == [(1, "a", "x"), (2, "b", "y")]



@pytest.mark.parametrize("cut", [0, 12])
def test_a_run_appended_after_a_crashed_one_reads_back_both(tmp_path: Path, cut: int) -> None:
    """A daemon killed mid-run (no gzip trailer), then restarted on the same recording: the frames of both runs read back.

    ``cut`` bytes of the crashed run's last flush are missing too (a write cut short): its
    frames readable alone are read, its incomplete last line is skipped.
    """
    path = tmp_path / "feed.jsonl.gz"
    rec = FrameRecorder(path, flush_every=2)
    for i in range(6):
        rec.write(i, "c:1", f'{{"i":{i},"pad":"{"ab" * i}"}}')
    crashed = path.read_bytes()[: len(path.read_bytes()) - cut]  # the file as a SIGKILL leaves it: no trailer
    rec.close()
    path.write_bytes(crashed)
    before = [t for t, _, _ in read_frames(path)]
    assert (before == [0, 1, 2, 3, 4, 5]) if cut == 0 else (2 <= len(before) < 6)
    with FrameRecorder(path) as rec:
        for i in range(10, 13):
            rec.write(i, "c:2", f'{{"i":{i}}}')
    assert [t for t, _, _ in read_frames(path)] == [*before, 10, 11, 12]


def test_a_damaged_recording_without_a_later_run_still_raises_data_error(tmp_path: Path) -> None:
    path = tmp_path / "feed.jsonl.gz"
    with FrameRecorder(path) as rec:
        for i in range(200):
            rec.write(i, "c:1", f'{{"i":{i},"pad":"{i * 7919 % 104729:x}"}}')
    data = bytearray(path.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 8] = b"\xff" * 8
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match="corrupt gzip data"):
        list(read_frames(path))

def test_a_line_that_is_not_a_frame_record_raises_data_error_with_line_number(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl.gz"
    with gzip.open(path, "wb") as fh:
        fh.write(b'{"t":1,"c":"a","d":"x"}\n{"nope":1}\n')
    with pytest.raises(DataError, match="line 2"):
        list(read_frames(path))


def test_converter_turns_a_capture_into_the_recorder_format(tmp_path: Path) -> None:
    out = tmp_path / "spot.jsonl.gz"
    n = convert_hftbacktest(SPOT_CAPTURE, out, conn="binance-spot:1")
    source = list(iter_hftbacktest(SPOT_CAPTURE))
    got = list(read_frames(out))
    assert n == len(source) == len(got) == 4000
    assert [(t, raw) for t, _, raw in got] == source
    snapshot = [i for i, (_, raw) in enumerate(source) if raw.startswith('{"lastUpdateId"')]
    assert [i for i, (_, c, _) in enumerate(got) if c != "binance-spot:1"] == snapshot
    assert got[snapshot[0]][1] == "rest:BTCUSDT"  # as the recorder tags a fetched REST snapshot


def test_a_converted_capture_replays_into_the_book_its_snapshot_seeds(tmp_path: Path) -> None:
    out = tmp_path / "spot.jsonl.gz"
    convert_hftbacktest(SPOT_CAPTURE, out, conn="binance-spot:1")
    config = BinanceConfig(symbols=["BTCUSDT"], channels=["depth", "trade", "bookTicker"])
    router = BinanceRouter(config, lambda m: None)
    router.replay(read_frames(out))
    sync = router.books["BTCUSDT"]
    bids, asks, last, _ = offline_rebuild(capture(SPOT_CAPTURE), futures=False)
    ref_b, ref_a = book_arrays(bids, asks)
    assert sync.synced and sync.book.last_seq == last
    assert np.array_equal(sync.book.bids(), ref_b) and np.array_equal(sync.book.asks(), ref_a)


def test_converter_refuses_a_snapshot_it_cannot_attribute(tmp_path: Path) -> None:
    src = tmp_path / "two.gz"
    with gzip.open(src, "wt") as fh:
        fh.write('1 {"stream":"btcusdt@depth@100ms","data":{}}\n2 {"lastUpdateId":5,"bids":[],"asks":[]}\n')
        fh.write('3 {"stream":"ethusdt@depth@100ms","data":{}}\n')
    with pytest.raises(DataError, match="2 symbols .BTCUSDT, ETHUSDT."):
        convert_hftbacktest(src, tmp_path / "out.jsonl.gz")


def test_microsecond_captures_are_scaled_to_nanoseconds() -> None:
    first_ts, _ = next(iter_hftbacktest(USDM_CAPTURE))
    assert first_ts == 1680652700423575 * 1000  # the capture line starts "1680652700423575 {..."


def test_converter_limit_cuts_the_capture(tmp_path: Path) -> None:
    assert convert_hftbacktest(SPOT_CAPTURE, tmp_path / "cut.jsonl.gz", limit=10) == 10
    assert len(list(read_frames(tmp_path / "cut.jsonl.gz"))) == 10


def test_capture_line_without_timestamp_raises(tmp_path: Path) -> None:
    path = tmp_path / "bad.gz"
    with gzip.open(path, "wt") as fh:
        fh.write('{"stream":"x"}\n')
    with pytest.raises(DataError, match="line 1"):
        list(iter_hftbacktest(path))


def test_a_capture_cut_short_by_a_crash_reads_every_whole_line_and_says_what_it_dropped(tmp_path: Path) -> None:
    """A capture whose collector was killed (no gzip trailer, its last line half-written) raised EOFError."""
    whole = list(iter_hftbacktest(SPOT_CAPTURE))
    data = SPOT_CAPTURE.read_bytes()
    cut = tmp_path / "cut.gz"
    cut.write_bytes(data[: len(data) // 2])
    warnings: list[str] = []
    sink = logger.add(lambda message: warnings.append(str(message)), level="WARNING", format="{message}")
    try:
        got = list(iter_hftbacktest(cut))
    finally:
        logger.remove(sink)
    assert 0 < len(got) < len(whole) and got == whole[: len(got)]
    assert len(warnings) == 1 and "cut.gz: skipped an incomplete last line" in warnings[0]
    assert f"after line {len(got)}" in warnings[0]


KEY = "recKey0123456789abcdef"
SECRET = "recSecret9876543210zyx"
PASSPHRASE = "recPassphrase42"


def test_private_frames_are_tagged_skipped_by_default_and_read_back_on_request(tmp_path: Path) -> None:
    path = tmp_path / "live.jsonl.gz"
    with FrameRecorder(path) as rec:
        private = PrivateFrames(rec, [KEY, SECRET, PASSPHRASE])
        rec.write(1, "binance-spot:1", '{"e":"trade"}')
        private.write(2, "binance-user:1", '{"event":{"e":"executionReport","x":"NEW"}}')
        rec.write(3, "binance-spot:1", '{"e":"trade","t":2}')
        private.write(4, "binance-user:2", b'{"bin":1}')
    public = [(1, "binance-spot:1", '{"e":"trade"}'), (3, "binance-spot:1", '{"e":"trade","t":2}')]
    assert list(read_frames(path)) == public  # market-data readers never see the account's frames
    got = list(read_frames(path, private=True))
    assert got == [
        public[0],
        (2, "private:binance-user:1", '{"event":{"e":"executionReport","x":"NEW"}}'),
        public[1],
        (4, "private:binance-user:2", b'{"bin":1}'),
    ]
    assert [is_private(c) for _, c, _ in got] == [False, True, False, True]
    assert private.frames == 2 and private.redacted == 0


def test_private_frames_never_hold_a_credential(tmp_path: Path) -> None:
    path = tmp_path / "live.jsonl.gz"
    listen_key = "pqQ8bRQvV5ww3pMNRbOSg9zKYK0x3CwFRxbCRIRHnE5GGuS3"
    frames = [
        f'{{"result":{{"apiKey":"{KEY}","authorizedSince":1}}}}',
        f'{{"e":"listenKeyExpired","E":1,"listenKey":"{listen_key}"}}',
        f'{{"event":"login","msg":"bad key {KEY} with {PASSPHRASE}","sign": "abc"}}',
        f'{{"echo":"{SECRET}"}}'.encode(),
    ]
    with FrameRecorder(path) as rec:
        private = PrivateFrames(rec, [KEY, SECRET, PASSPHRASE, ""])
        for i, raw in enumerate(frames):
            private.write(i, "okx-private:1", raw)
    assert private.redacted == 4
    data = gzip.decompress(path.read_bytes())
    for secret in (KEY, SECRET, PASSPHRASE, listen_key, '"abc"'):
        assert secret.encode() not in data
    got = [raw if isinstance(raw, str) else raw.decode() for _, _, raw in read_frames(path, private=True)]
    assert got == [
        '{"result":{"apiKey":"<redacted>","authorizedSince":1}}',
        '{"e":"listenKeyExpired","E":1,"listenKey":"<redacted>"}',
        '{"event":"login","msg":"bad key <redacted> with <redacted>","sign": "<redacted>"}',
        '{"echo":"<redacted>"}',
    ]
    assert KEY not in repr(private) and SECRET not in repr(private)


def test_private_frames_after_the_recorder_closed_are_dropped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "live.jsonl.gz"
    rec = FrameRecorder(path)
    private = PrivateFrames(rec, [KEY])
    private.write(1, "u:1", "{}")
    rec.close()
    private.write(2, "u:1", "{}")
    assert (private.frames, private.dropped) == (1, 1)
    assert list(read_frames(path, private=True)) == [(1, "private:u:1", "{}")]
