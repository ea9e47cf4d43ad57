"""Frame recorder: round trip, crash safety, appended runs, the hftbacktest converter."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest

from tradebus.adapters.common.recorder import FrameRecorder, convert_hftbacktest, iter_hftbacktest, read_frames
from tradebus.errors import DataError

from .binance_testdata import SPOT_CAPTURE, USDM_CAPTURE


def test_round_trip_text_and_binary_frames(tmp_path: Path) -> None:
    path = tmp_path / "rec" / "feed.jsonl.gz"
    frames = [(1, "c:1", '{"a":1}'), (2, "c:1", b"\x00\xffbin"), (3, "c:2", 'with "quotes" and \\ and \n')]
    with FrameRecorder(path) as rec:
        for f in frames:
            rec.write(*f)
    assert list(read_frames(path)) == frames


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
    assert {c for _, c, _ in got} == {"binance-spot:1"}


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
