"""``data import-recording`` of a recording a restarted daemon appended its session to.

The daemon stopped (``run:stop``) or was killed, and a new one began its session on the same file
(``run:start``): its connection ids count from 1 again, its books resync from the snapshot its
connection brings, and it knows nothing of the trades printed while it was down. ``tradebus replay
--session N`` plays each session on feeds of its own; the import reads the file through one set of
feeds, and must not carry the book across the restart as if in sync, hold the new session's
trades for a fetch no daemon made, nor leave the ids printed while it was down out without a word.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest

from tests.live.node_testdata import (
    OKX_IID,
    OKX_INSTRUMENT,
    USDM_CAPTURE,
    USDM_IID,
    config_of,
    okx_frames,
    stream_config,
    usdm_config,
)
from tradebus.adapters.binance.emulator import BinanceProtocol, split_capture
from tradebus.adapters.common.recorder import FrameRecorder, iter_hftbacktest
from tradebus.adapters.okx.emulator import OkxProtocol
from tradebus.data.catalog import Catalog
from tradebus.engine.messages import BookSnapshot, Trade
from tradebus.node.playback import RUN_START, RUN_STOP, Playback
from tradebus.node.recording_import import import_recording

from tests.data.test_data_market_ingest import trades_only_usdm_config, write_trade_gap_recording

SECOND = 1_000_000_000
CONN = "okx-public:1"  # a restarted daemon numbers its connections from 1 again


def _okx_trades(raw: str) -> list[dict[str, Any]]:
    frame = json.loads(raw)
    if frame.get("arg", {}).get("channel") != "trades" or frame["arg"]["instId"] != "BTC-USDT" or "event" in frame:
        return []
    return frame["data"]


def _is_book(raw: str) -> bool:
    frame = json.loads(raw)
    return frame.get("arg") == {"channel": "books", "instId": "BTC-USDT"} and "data" in frame


class TwoSessions(NamedTuple):
    """The OKX recording as two daemon sessions with the daemon down in between (:func:`write_two_sessions`)."""

    recording: Path
    first: list[tuple[int, str]]  # the frames of the first session
    down: list[tuple[int, str]]  # the frames the venue sent while the daemon was down (not recorded)
    second: list[tuple[int, str]]  # the frames of the second session after its snapshot
    stop_ns: int | None  # the first session's run:stop (None: killed)
    start_ns: int  # the second session's run:start
    snapshot_ns: int  # the second session's book snapshot


def write_two_sessions(path: Path, *, stopped: bool = True) -> TwoSessions:
    """The BTC-USDT data frames of the OKX recording as two sessions: the first to its 40th book update, then (with
    ``stopped``) its run:stop; the daemon down over the next 20 book updates and the trades among them; the
    second session's run:start, the snapshot of the book the emulator serves a new subscription then, and the rest.
    """
    data = [(t, raw) for t, raw in okx_frames() if _okx_trades(raw) or _is_book(raw)]
    books = [i for i, (_, raw) in enumerate(data) if _is_book(raw)]
    a, b = books[40], books[60]
    venue = OkxProtocol(data)
    for _, raw in data[:b]:
        venue.apply_book("books:BTC-USDT", raw)
    snapshot = venue.snapshot_frame("books:BTC-USDT")
    first, down, second = data[: a + 1], data[a + 1 : b], data[b:]
    stop_ns = first[-1][0] + 1_000_000 if stopped else None
    start_ns, snapshot_ns = second[0][0] - 2_000_000, second[0][0] - 1_000_000
    with FrameRecorder(path) as rec:
        rec.write(first[0][0] - SECOND, RUN_START, "")
        for t, raw in first:
            rec.write(t, CONN, raw)
        if stop_ns is not None:
            rec.write(stop_ns, RUN_STOP, "")
        rec.write(start_ns, RUN_START, "")
        rec.write(snapshot_ns, CONN, snapshot)
        for t, raw in second:
            rec.write(t, CONN, raw)
    return TwoSessions(path, first, down, second, stop_ns, start_ns, snapshot_ns)


def okx_config() -> Any:
    return config_of(stream_config(OKX_INSTRUMENT, OKX_IID, "okx", "spot", ["trades", "books"]))


def _received(frames: list[tuple[int, str]]) -> list[tuple[int, int]]:
    """``(trade id, receive time)`` of every BTC-USDT trade in ``frames``."""
    return [(int(d["tradeId"]), t) for t, raw in frames for d in _okx_trades(raw)]


@pytest.mark.parametrize("stopped", [True, False], ids=["stopped", "killed"])
def test_import_of_two_sessions_resyncs_the_book_after_the_restart_and_stores_the_trades_printed_while_down(
    tmp_path: Path, stopped: bool
) -> None:
    """The import carried the first session's book across the restart as if in sync (no unsynced stretch: a backtest
    replayed the book of 2.2 s before over the daemon's downtime), and held every trade of the second session for a
    fetch of the ids printed while the daemon was down, which no daemon made: written at the recording's last line,
    not where they were received and where the replay of that session delivers them."""
    rec = write_two_sessions(tmp_path / "two.jsonl.gz", stopped=stopped)
    down = _received(rec.down)
    assert len(down) == 10 and [i for i, _ in down] == list(range(down[0][0], down[-1][0] + 1))  # guards the fixture
    manifests = import_recording(rec.recording, okx_config(), tmp_path / "cat")
    cat = Catalog(tmp_path / "cat")

    last_book_ns = max(t for t, raw in rec.first if _is_book(raw))
    assert manifests[(OKX_IID, "book")].unsynced == [(last_book_ns, rec.snapshot_ns)]
    book_ts = np.asarray(cat.read("okx", "spot", "BTC-USDT", "book").column("ts_init"))
    assert not np.any((book_ts > last_book_ns) & (book_ts < rec.snapshot_ns))

    trades = cat.read("okx", "spot", "BTC-USDT", "trades")
    written = list(zip((int(i) for i in trades.column("trade_id").to_pylist()), trades.column("ts_init").to_pylist(),
                       strict=True))
    first, second = _received(rec.first), _received(rec.second)
    assert written == first + second  # every trade at its receive time
    assert manifests[(OKX_IID, "trades")].missed_trades == [
        (first[-1][1], second[0][1], down[0][0], down[-1][0], len(down))
    ]

    # the replay of the second session: its book from the snapshot, its trades where the import wrote them
    playback = Playback(okx_config())
    seen: list[tuple[int, int]] = []
    snapshots: list[int] = []
    playback.kernel.bus.subscribe(Trade, lambda m: seen.append((int(m.trade_id), playback.clock.now_ns())), OKX_IID)
    playback.kernel.bus.subscribe(BookSnapshot, lambda m: snapshots.append(playback.clock.now_ns()), OKX_IID)
    playback.run(rec.recording, session=2)
    assert seen == second and snapshots == [rec.snapshot_ns]


@pytest.mark.parametrize("stopped", [True, False], ids=["stopped", "killed"])
def test_import_releases_trades_held_at_the_end_of_a_session_there_not_in_the_next(
    tmp_path: Path, stopped: bool
) -> None:
    """A Binance USD-M session ended (run:stop, or killed) waiting for a trade gap's fetch; a restarted daemon appended
    its session 6 s later. The import held the first session's trades on into the second and released them with
    its trades at the recording's end; it releases them at the first session's end (its run:stop, as the replay of
    that session does; a killed one's last line), and writes the second session's at their receive times."""
    gap = write_trade_gap_recording(tmp_path / "gap.jsonl.gz")
    cut = gap.at + 20  # the first session ends 20 trades after the one that revealed the gap
    first, later = gap.kept[:cut], gap.kept[cut:]
    skipped, second = later[:5], [(t + 6 * SECOND, conn, raw) for t, conn, raw in later[5:]]
    stop_ns = first[-1][0] + 1_000_000
    recording = tmp_path / "two.jsonl.gz"
    with FrameRecorder(recording) as out:
        out.write(first[0][0] - SECOND, RUN_START, "")
        for line in first:
            out.write(*line)
        if stopped:
            out.write(stop_ns, RUN_STOP, "")
        out.write(second[0][0] - SECOND, RUN_START, "")
        for line in second:
            out.write(*line)
    manifests = import_recording(recording, trades_only_usdm_config(), tmp_path / "cat")
    table = Catalog(tmp_path / "cat").read("binance_usdm", "usdm", "BTCUSDT", "trades")
    ids = [int(json.loads(raw)["data"]["t"]) for _, _, raw in first + second]
    assert [int(i) for i in table.column("trade_id").to_pylist()] == ids
    released_ns = stop_ns if stopped else first[-1][0]
    assert table.column("ts_init").to_pylist() == [
        *(t for t, _, _ in first[: gap.at]), *[released_ns] * (cut - gap.at), *(t for t, _, _ in second)
    ]
    down = [int(json.loads(raw)["data"]["t"]) for _, _, raw in skipped]
    assert manifests[(USDM_IID, "trades")].missed_trades == [
        (first[gap.at - 1][0], first[gap.at][0], gap.missing[0], gap.missing[-1], len(gap.missing)),
        (first[-1][0], second[0][0], down[0], down[-1], len(down)),  # from the receive time of the last before
    ]
    if stopped:  # the replay of the first session delivers the held trades at its run:stop too
        playback = Playback(trades_only_usdm_config())
        seen: list[tuple[int, int]] = []
        playback.kernel.bus.subscribe(Trade, lambda m: seen.append((int(m.trade_id), playback.clock.now_ns())), USDM_IID)
        playback.run(recording, session=1)
        assert seen == list(zip(ids[:cut], table.column("ts_init").to_pylist()[:cut], strict=True))


def test_replay_of_a_killed_session_counts_the_trades_it_ends_holding_in_playback_json(tmp_path: Path) -> None:
    """A daemon killed while waiting for a trade gap's fetch never delivered the trades held behind it, and neither
    does its replay, but its ``playback.json`` said nothing of them (``trade_gaps`` lists gaps that ended): the
    import wrote 100 trades more than the replay's strategy saw without a trace in the run directory."""
    import yaml

    from tests.live.node_testdata import usdm_config
    from tradebus.node.playback import run_playback

    gap = write_trade_gap_recording(tmp_path / "gap.jsonl.gz")
    killed = tmp_path / "killed.jsonl.gz"
    with FrameRecorder(killed) as out:
        out.write(gap.kept[0][0] - SECOND, RUN_START, "")
        for line in gap.kept:
            out.write(*line)
    cfg = usdm_config(None, None)
    cfg["feeds"][0]["subscriptions"] = {USDM_IID: ["trade"]}
    (tmp_path / "paper.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    result, out_dir = run_playback(killed, tmp_path / "paper.yaml", tmp_path / "replay")
    stats = json.loads((out_dir / "playback.json").read_text(encoding="utf-8"))
    held = len(gap.kept) - gap.at
    assert stats["held_trades"] == [{"instrument_id": USDM_IID, "first_id": gap.missing[0],
                                     "last_id": gap.missing[-1], "trades": held, "since_ns": gap.kept[gap.at][0]}]
    assert stats["trade_gaps"] == []
    imported = import_recording(killed, trades_only_usdm_config(), tmp_path / "cat")[(USDM_IID, "trades")].rows
    assert (result.trades, imported) == (gap.at, gap.at + held)  # the difference is what playback.json counts

    # a session that stopped released them at its run:stop: nothing held
    stopped = tmp_path / "stopped.jsonl.gz"
    with FrameRecorder(stopped) as out:
        out.write(gap.kept[0][0] - SECOND, RUN_START, "")
        for line in gap.kept:
            out.write(*line)
        out.write(gap.kept[-1][0] + 1, RUN_STOP, "")
    _, out_dir = run_playback(stopped, tmp_path / "paper.yaml", tmp_path / "replay-stopped")
    assert json.loads((out_dir / "playback.json").read_text(encoding="utf-8"))["held_trades"] == []


def test_import_of_a_session_whose_trade_ids_restart_below_the_last_sessions_checks_them_as_its_daemon_did(
    tmp_path: Path,
) -> None:
    """A restarted daemon's first trade had ids below those the session before it expected (the venue reset its
    ids): that daemon took it as its first trade, and held the next 50 behind the 227 ids missing after it (the
    hole of the USD-M capture) until its run:stop. The import kept expecting the first session's next id, so it
    took every trade of the second session as an older one: it stored no ``missed_trades`` and wrote the 50 at
    their receive times, up to 10.7 s before ``--session 2`` delivers them."""
    gap = write_trade_gap_recording(tmp_path / "gap.jsonl.gz")
    first = gap.kept[gap.at + 50 :]  # the capture's later ids, then its earlier ones as the restarted session's
    shift = first[-1][0] - gap.kept[0][0] + 6 * SECOND
    second = [(t + shift, conn, raw) for t, conn, raw in gap.kept[: gap.at + 50]]
    stop_ns = second[-1][0] + 1
    recording = tmp_path / "two.jsonl.gz"
    with FrameRecorder(recording) as out:
        out.write(first[0][0] - SECOND, RUN_START, "")
        for line in first:
            out.write(*line)
        out.write(first[-1][0] + 1, RUN_STOP, "")
        out.write(second[0][0] - SECOND, RUN_START, "")
        for line in second:
            out.write(*line)
        out.write(stop_ns, RUN_STOP, "")
    manifests = import_recording(recording, trades_only_usdm_config(), tmp_path / "cat")
    table = Catalog(tmp_path / "cat").read("binance_usdm", "usdm", "BTCUSDT", "trades")
    written = list(zip((int(i) for i in table.column("trade_id").to_pylist()), table.column("ts_init").to_pylist(),
                       strict=True))
    at = len(first) + gap.at  # the first trade after the hole in the second session
    assert [i for i, _ in written] == [int(json.loads(raw)["data"]["t"]) for _, _, raw in first + second]
    assert [t for _, t in written] == [
        *(t for t, _, _ in first + second[: gap.at]), *[stop_ns] * (len(written) - at)
    ]
    assert manifests[(USDM_IID, "trades")].missed_trades == [
        (second[gap.at - 1][0], second[gap.at][0], gap.missing[0], gap.missing[-1], len(gap.missing))
    ]

    playback = Playback(trades_only_usdm_config())
    seen: list[tuple[int, int]] = []
    playback.kernel.bus.subscribe(Trade, lambda m: seen.append((int(m.trade_id), playback.clock.now_ns())), USDM_IID)
    playback.run(recording, session=2)
    assert seen == written[len(first) :]


def _usdm_snapshot_after(snapshot: str, depth: list[tuple[int, str]]) -> str:
    """The REST depth snapshot the emulated USD-M venue answers once it has sent the ``depth`` frames."""
    venue = BinanceProtocol(snapshot, futures=True)
    for _, raw in depth:
        venue.on_sent(raw)
    status, answer = venue.http("/fapi/v1/depth", {"symbol": ["BTCUSDT"]})  # type: ignore[misc]
    assert status == 200
    return str(answer)


@pytest.mark.parametrize("stopped", [True, False], ids=["stopped", "killed"])
def test_import_of_a_session_ending_on_a_reconnects_snapshot_resyncs_the_book_after_the_restart(
    tmp_path: Path, stopped: bool
) -> None:
    """A USD-M daemon (a recording whose REST snapshots do not name their connection: ``rest:BTCUSDT``) lost its
    connection and fetched the next one's snapshot, then stopped (or was killed) before that connection's first
    frame; a restarted daemon appended its session 5.8 s later, its snapshot first. The import kept the book the
    last snapshot seeded in sync across the restart (the restart skipped a book reseeded since the last frame): no
    ``unsynced`` stretch, a backtest replayed the first session's book over the daemon's downtime."""
    frames, snapshot = split_capture(list(iter_hftbacktest(USDM_CAPTURE)))
    assert snapshot is not None
    depth = [(t, raw) for t, raw in frames if '"e":"depthUpdate"' in raw or '"e":"trade"' in raw]
    updates = [i for i, (_, raw) in enumerate(depth) if '"e":"depthUpdate"' in raw]
    a, b = updates[300], updates[600]  # the first session to its 300th book update; down over the next 300
    first, second = depth[:a], depth[b - 1 :]  # the second from the update its snapshot's lastUpdateId ends
    reseed_ns, stop_ns = first[-1][0] + 1_000_000, first[-1][0] + 2_000_000
    start_ns, snapshot_ns = second[0][0] - 2_000_000, second[0][0] - 1_000_000
    recording = tmp_path / "two.jsonl.gz"
    with FrameRecorder(recording) as rec:
        rec.write(first[0][0] - SECOND, RUN_START, "")
        rec.write(first[0][0] - SECOND // 2, "rest:BTCUSDT", snapshot)
        for t, raw in first:
            rec.write(t, "binance-usdm:1", raw)
        rec.write(reseed_ns, "rest:BTCUSDT", _usdm_snapshot_after(snapshot, [depth[i] for i in updates[:300]]))
        if stopped:
            rec.write(stop_ns, RUN_STOP, "")
        rec.write(start_ns, RUN_START, "")
        rec.write(snapshot_ns, "rest:BTCUSDT", _usdm_snapshot_after(snapshot, [depth[i] for i in updates[:600]]))
        for t, raw in second:
            rec.write(t, "binance-usdm:1", raw)
    cfg = usdm_config(None, None, depth_speed="0ms")
    cfg["feeds"][0]["subscriptions"] = {USDM_IID: ["trade", "depth"]}
    manifests = import_recording(recording, config_of(cfg), tmp_path / "cat")

    # the reconnect's snapshot seeded the book at its line; the restarted daemon's book is out of sync to its own
    assert manifests[(USDM_IID, "book")].unsynced == [(reseed_ns, snapshot_ns)]
    book_ts = np.asarray(Catalog(tmp_path / "cat").read("binance_usdm", "usdm", "BTCUSDT", "book").column("ts_init"))
    assert np.any(book_ts == reseed_ns) and np.any(book_ts == snapshot_ns)
    assert not np.any((book_ts > reseed_ns) & (book_ts < snapshot_ns))
