"""Quotes, L2 book, mark price and funding datasets: import from real captures, replay, flat memory."""

from __future__ import annotations

import gzip
import io
import json
import re
import tracemalloc
import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from tests.live.node_testdata import USDM_CAPTURE, USDM_IID, config_of, usdm_config
from tradebus.adapters.common.recorder import FrameRecorder, read_frames
from tradebus.data.catalog import BOOK_SNAPSHOT, Catalog
from tradebus.data.cli import data_app
from tradebus.data.market_ingest import import_bybit_archive, import_tardis
from tradebus.node.recording_import import import_recording
from tradebus.data.replay import Replay, ReplaySource
from tradebus.engine.messages import BookDelta, BookSnapshot, FundingRate, MarkPrice, Quote, Trade
from tradebus.errors import DataError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
BYBIT_FRAMES = FIXTURES / "bybit" / "bybit_xrpusdt_ob500_2024-12-01.jsonl.gz"


def _usdm_config() -> object:
    cfg = usdm_config(None, None, depth_speed="0ms")
    cfg["feeds"][0]["subscriptions"] = {USDM_IID: ["trade", "bookTicker", "depth", "markPrice"]}
    return config_of(cfg)


def _raw_frames() -> list[tuple[int, dict]]:
    with gzip.open(USDM_CAPTURE, "rt") as fh:
        out = []
        for line in fh:
            ts, _, raw = line.partition(" ")
            out.append((int(ts), json.loads(raw)))
    return out


def _reference_book(frames: list[tuple[int, dict]]) -> tuple[dict[float, float], dict[float, float], int]:
    """The book by the Binance futures rules, from the raw JSON alone (the test's own reference)."""
    bids: dict[float, float] = {}
    asks: dict[float, float] = {}
    last = None
    applied = 0
    for _, msg in frames:
        if "lastUpdateId" in msg:
            bids = {float(p): float(q) for p, q in msg["bids"]}
            asks = {float(p): float(q) for p, q in msg["asks"]}
            last = msg["lastUpdateId"]
            continue
        data = msg["data"]
        if data.get("e") != "depthUpdate" or last is None or data["u"] < last:
            continue
        for side, key in ((bids, "b"), (asks, "a")):
            for p, q in data[key]:
                if float(q) == 0.0:
                    side.pop(float(p), None)
                else:
                    side[float(p)] = float(q)
        applied += 1
    return bids, asks, applied


@pytest.fixture(scope="module")
def usdm_catalog(tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    root = tmp_path_factory.mktemp("usdm")
    import_recording(USDM_CAPTURE, _usdm_config(), root)
    return Catalog(root)


def _sources(cat: Catalog, *kinds: str) -> list[ReplaySource]:
    return [ReplaySource.from_catalog(cat, USDM_IID, "binance_usdm", "usdm", "BTCUSDT", k) for k in kinds]


def test_recording_import_writes_every_stream_with_the_raw_counts(usdm_catalog: Catalog) -> None:
    frames = _raw_frames()
    streams = [m["stream"].split("@")[1] for _, m in frames if "stream" in m]
    cat = usdm_catalog
    manifests = {m.dataset: m for m in (cat.manifest(*r.relpath().parts) for r in cat.datasets())}
    assert set(manifests) == {"book", "quotes", "trades", "mark_prices", "funding_rates"}
    assert manifests["trades"].rows == streams.count("trade")
    assert manifests["quotes"].rows == streams.count("bookTicker")
    assert manifests["mark_prices"].rows == streams.count("markPrice") == manifests["funding_rates"].rows
    marks = cat.read("binance_usdm", "usdm", "BTCUSDT", "mark_prices")
    raw_marks = [(ts, float(m["data"]["p"]), float(m["data"]["i"])) for ts, m in frames if "markPrice" in m.get("stream", "")]
    assert marks.column("ts_init").to_pylist() == [t * 1000 for t, _, _ in raw_marks]  # µs capture -> ns
    assert marks.column("mark_price").to_pylist() == [p for _, p, _ in raw_marks]
    funding = cat.read("binance_usdm", "usdm", "BTCUSDT", "funding_rates")
    raw_rates = [float(m["data"]["r"]) for _, m in frames if "markPrice" in m.get("stream", "")]
    assert funding.column("rate").to_pylist() == raw_rates
    assert funding.column("next_funding_ns").to_pylist()[0] == [m["data"]["T"] for _, m in frames if "markPrice" in m.get("stream", "")][0] * 1_000_000


def test_recording_import_names_the_frames_its_parsers_reject_in_every_manifest(tmp_path: Path) -> None:
    lines = gzip.decompress(USDM_CAPTURE.read_bytes()).decode().splitlines()
    trades = [i for i, line in enumerate(lines) if "@trade" in line]
    for i in trades[100:110]:  # ten garbled prices
        lines[i] = lines[i].replace('"p":"', '"p":"x')
    garbled = tmp_path / "garbled.gz"
    garbled.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    manifests = import_recording(garbled, _usdm_config(), tmp_path / "cat")
    assert manifests[(USDM_IID, "trades")].rows == len(trades) - 10
    for manifest in manifests.values():
        assert f"10 frame(s) rejected by the parsers and left out (first: frame {trades[100] + 1}: " in manifest.notes[-1]
        assert "data.p" in manifest.notes[-1]


def test_book_rows_rebuild_the_book_of_the_raw_depth_stream(usdm_catalog: Catalog) -> None:
    ref_bids, ref_asks, applied = _reference_book(_raw_frames())
    rows = usdm_catalog.read("binance_usdm", "usdm", "BTCUSDT", "book")
    seq = np.asarray(rows.column("sequence"))
    ts = np.asarray(rows.column("ts_init"))
    assert np.all(np.diff(ts) >= 0)
    flags = np.asarray(rows.column("flags"))
    # One snapshot (the REST seed), then one message per applied diff, in sequence order.
    snap_seqs = np.unique(seq[(flags & BOOK_SNAPSHOT) != 0])
    assert snap_seqs.size == 1
    assert np.unique(seq[flags == 0]).size == applied
    assert np.all(np.diff(seq) >= 0)
    bids: dict[float, float] = {}
    asks: dict[float, float] = {}
    for side, price, size, flag in zip(rows.column("side").to_pylist(), rows.column("price").to_pylist(),
                                       rows.column("size").to_pylist(), flags.tolist(), strict=True):
        book = bids if side > 0 else asks
        if size == 0.0:
            book.pop(price, None)
        else:
            book[price] = size
        del flag
    assert bids == ref_bids and asks == ref_asks


def _capture_lines() -> list[str]:
    return gzip.decompress(USDM_CAPTURE.read_bytes()).decode().splitlines()


def _write_capture(path: Path, lines: list[str]) -> Path:
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    return path


def _rebuilt_book(rows: pa.Table) -> tuple[dict[float, float], dict[float, float]]:
    bids: dict[float, float] = {}
    asks: dict[float, float] = {}
    seq = None
    for s, side, price, size, flag in zip(*(rows.column(c).to_pylist() for c in ("sequence", "side", "price", "size",
                                                                                    "flags")), strict=True):
        if flag & BOOK_SNAPSHOT and s != seq:
            bids, asks = {}, {}
        seq = s
        book = bids if side > 0 else asks
        if size == 0.0:
            book.pop(price, None)
        else:
            book[price] = size
    return bids, asks


def test_recording_import_refuses_a_book_gap_no_snapshot_resyncs_and_writes_nothing(tmp_path: Path) -> None:
    lines = _capture_lines()
    depth = [i for i, line in enumerate(lines) if "@depth" in line]
    cut = depth[len(depth) // 2]
    del lines[cut]  # one lost depth update: the book sync goes out of sync at the next one
    recording = _write_capture(tmp_path / "cut.gz", lines)
    next_depth = next(i for i in range(cut, len(lines)) if "@depth" in lines[i])
    gap_ts = int(lines[next_depth].partition(" ")[0]) * 1000
    root = tmp_path / "cat"
    with pytest.raises(DataError) as err:
        import_recording(recording, _usdm_config(), root)
    message = str(err.value)
    assert message.startswith(f"{recording}: frame {next_depth + 1} (received {np.datetime64(gap_ts, 'ns')}Z): ")
    assert f"the {USDM_IID} book went out of sync there" in message
    assert "no snapshot follows in the recording to resync it" in message
    assert not [p for p in root.rglob("*") if p.is_file()]  # nothing written


def test_recording_import_refuses_a_subscribed_book_that_never_syncs_and_imports_it_without_the_book(
    tmp_path: Path,
) -> None:
    """A capture without its REST snapshot imported trades, quotes and marks, exited 0 and wrote no book
    dataset at all, though the config subscribed the depth stream: nothing said the book was missing."""
    lines = [line for line in _capture_lines() if "lastUpdateId" not in line]  # the one snapshot left out
    recording = _write_capture(tmp_path / "nosnapshot.gz", lines)
    root = tmp_path / "cat"
    with pytest.raises(DataError) as err:
        import_recording(recording, _usdm_config(), root)
    assert str(err.value) == (
        f"{recording}: the {USDM_IID} book the config subscribes never came in sync in the recording (no snapshot "
        "in it seeded the book its depth updates apply to): there would be no book rows at all while the other "
        "streams go on; nothing written (import it with a config that does not subscribe that book to keep the "
        "other streams)"
    )
    assert not [p for p in root.rglob("*") if p.is_file()]  # nothing written
    cfg = usdm_config(None, None, depth_speed="0ms")
    cfg["feeds"][0]["subscriptions"] = {USDM_IID: ["trade", "bookTicker", "markPrice"]}  # no depth: no book asked
    manifests = import_recording(recording, config_of(cfg), root)
    assert {kind for _, kind in manifests} == {"trades", "quotes", "mark_prices", "funding_rates"}


class ResyncedCapture(NamedTuple):
    """A USD-M capture that lost one depth update and got a snapshot later (see :func:`write_resynced_capture`)."""

    recording: Path
    lines: list[str]  # as written
    cut: int  # index of the frame after the lost one (where the sync finds the gap)
    resync: int  # index of the snapshot
    last_row_us: int  # receive time of the last depth update before the lost one
    gap_us: int  # receive time of the frame at ``cut``
    snapshot_us: int  # receive time of the snapshot


def write_resynced_capture(path: Path, depth_updates: int = 50) -> ResyncedCapture:
    """:data:`USDM_CAPTURE` with its middle depth update lost and a snapshot ``depth_updates`` updates later."""
    lines = _capture_lines()
    frames = _raw_frames()
    depth = [i for i, line in enumerate(lines) if "@depth" in line]
    at = len(depth) // 2
    cut, resync = depth[at], depth[at + depth_updates]
    # A snapshot as the live sync would have fetched after the gap: the book of the uncut stream
    # (the test's own reference) after the depth update of line ``resync``, with that update's id.
    bids, asks, _ = _reference_book(frames[: resync + 1])
    last = frames[resync][1]["data"]["u"]
    snapshot = {"lastUpdateId": last, "bids": [[str(p), str(q)] for p, q in sorted(bids.items(), reverse=True)],
                "asks": [[str(p), str(q)] for p, q in sorted(asks.items())]}
    recv_us = lines[resync].partition(" ")[0]
    lines.insert(resync + 1, f"{recv_us} {json.dumps(snapshot)}")
    gap_us = int(lines[cut + 1].partition(" ")[0])
    last_row_us = int(lines[depth[at - 1]].partition(" ")[0])
    del lines[cut]
    return ResyncedCapture(_write_capture(path, lines), lines, cut, resync, last_row_us, gap_us, int(recv_us))


def test_recording_import_names_a_book_gap_a_later_snapshot_resyncs_in_every_manifest(tmp_path: Path) -> None:
    frames = _raw_frames()
    recording, lines, cut, resync, _, gap_us, recv_us = write_resynced_capture(tmp_path / "resynced.gz")
    manifests = import_recording(recording, _usdm_config(), tmp_path / "cat")
    stretch = (f"book {USDM_IID} out of sync from frame {cut + 1} ({np.datetime64(gap_us * 1000, 'ns')}Z) to the "
               f"snapshot of frame {resync + 1} ({np.datetime64(recv_us * 1000, 'ns')}Z): no book rows in between")
    for manifest in manifests.values():
        assert manifest.notes == ["imported from recording resynced.gz", stretch]
    rows = Catalog(tmp_path / "cat").read("binance_usdm", "usdm", "BTCUSDT", "book")
    ts = np.asarray(rows.column("ts_init"))
    assert not np.any((ts > gap_us * 1000) & (ts < recv_us * 1000))  # the stretch has no rows
    assert ts[-1] == int(lines[max(i for i, line in enumerate(lines) if "@depth" in line)].partition(" ")[0]) * 1000
    ref_bids, ref_asks, _ = _reference_book(frames)
    assert _rebuilt_book(rows) == (ref_bids, ref_asks)


def test_recording_import_stores_a_resynced_stretch_in_the_book_manifest(tmp_path: Path) -> None:
    """The stretch was only a text note: a ``fill_on: book`` backtest could not know of it. It runs from
    the last book row before the lost update to the snapshot; the other datasets have rows all through."""
    capture = write_resynced_capture(tmp_path / "resynced.gz")
    manifests = import_recording(capture.recording, _usdm_config(), tmp_path / "cat")
    stretch = (capture.last_row_us * 1000, capture.snapshot_us * 1000)
    assert manifests[(USDM_IID, "book")].unsynced == [stretch]
    assert {kind for (_, kind), m in manifests.items() if m.unsynced} == {"book"}
    cat = Catalog(tmp_path / "cat")
    assert cat.manifest("binance_usdm", "usdm", "BTCUSDT", "book").unsynced == [stretch]  # as read back
    ts = np.asarray(cat.read("binance_usdm", "usdm", "BTCUSDT", "book").column("ts_init"))
    assert ts[ts <= stretch[0]][-1] == stretch[0] and ts[ts > stretch[0]][0] == stretch[1]
    info = CliRunner().invoke(data_app, ["info", "--catalog", str(tmp_path / "cat")], terminal_width=250)
    assert info.exit_code == 0
    assert (f"binance_usdm/usdm/BTCUSDT/book: book out of sync from {np.datetime64(stretch[0], 'ns')}Z to the "
            f"snapshot at {np.datetime64(stretch[1], 'ns')}Z") in " ".join(info.output.split())
    assert info.output.count("out of sync") == 1


def test_recording_import_of_a_capture_without_gap_stores_no_stretch(usdm_catalog: Catalog) -> None:
    for ref in usdm_catalog.datasets():
        assert usdm_catalog.manifest(*ref.relpath().parts).unsynced == []


class StaleRecording(NamedTuple):
    """A recorder file of the USD-M trades whose feed went silent and stale (see :func:`write_stale_recording`)."""

    recording: Path
    stale_ns: int  # the stale:binance-usdm line
    live_ns: int | None  # the live:binance-usdm line, if written
    back_ns: int  # the first trade after the silence
    last_ns: int  # the last line of the recording


def trades_only_usdm_config() -> object:
    """The USD-M capture's feed subscribed to trades alone (its connection's proof of life lifts a stale block)."""
    cfg = usdm_config(None, None)
    cfg["feeds"][0]["subscriptions"] = {USDM_IID: ["trade"]}
    return config_of(cfg)


def write_stale_recording(path: Path, *, live: bool) -> StaleRecording:
    """The trades of :data:`USDM_CAPTURE` as the recorder writes them, with a quiet market of 4 s in the middle
    of the capture (the later trades received 4 s later): the watchdog's ``stale:`` line 2 s into the silence
    and, with ``live``, a ``live:`` line (its connection answered a ping) 1 s later."""
    from tradebus.node.feeds import build_feeds
    from tradebus.node.playback import read_recording

    feeds = build_feeds(trades_only_usdm_config(), lambda msg: None, live=False, clock_ns=lambda: 0)  # type: ignore[arg-type]
    trades = [line for line in read_recording(USDM_CAPTURE, feeds) if '"e":"trade"' in str(line[2])]
    at = len(trades) // 2
    silent_from = trades[at - 1][0] + 1
    kept = [*trades[:at], *((t + 4_000_000_000, conn, raw) for t, conn, raw in trades[at:])]
    last_before, back_ns = kept[at - 1][0], kept[at][0]
    stale_ns, live_ns = silent_from + 2_000_000_000, silent_from + 3_000_000_000
    lines = [*kept, (stale_ns, "stale:binance-usdm", str(last_before))]
    if live:
        lines.append((live_ns, "live:binance-usdm", "pong"))
    lines.sort(key=lambda line: line[0])
    with FrameRecorder(path) as rec:
        for line in lines:
            rec.write(*line)
    return StaleRecording(path, stale_ns, live_ns if live else None, back_ns, lines[-1][0])


@pytest.mark.parametrize("live", [False, True])
def test_recording_import_stores_the_stale_feed_stretch_in_every_manifest(tmp_path: Path, live: bool) -> None:
    """The import left the daemon's stale-feed episode out: a backtest over the catalog could not know the daemon
    denied every order there. It is stored from the ``stale:`` line to what lifted the daemon's block: the next
    trade, or the connection's recorded proof of life, earlier, on a quiet market."""
    rec = write_stale_recording(tmp_path / "stale.jsonl.gz", live=live)
    manifests = import_recording(rec.recording, trades_only_usdm_config(), tmp_path / "cat")
    end = rec.live_ns if live else rec.back_ns
    assert rec.stale_ns < end <= rec.back_ns
    assert {key: m.stale for key, m in manifests.items()} == {(USDM_IID, "trades"): [(rec.stale_ns, end, "binance-usdm")]}
    cat = Catalog(tmp_path / "cat")
    assert cat.manifest("binance_usdm", "usdm", "BTCUSDT", "trades").stale == [(rec.stale_ns, end, "binance-usdm")]
    info = CliRunner().invoke(data_app, ["info", "--catalog", str(tmp_path / "cat")], terminal_width=250)
    assert info.exit_code == 0
    assert (f"binance_usdm/usdm/BTCUSDT/trades: feed binance-usdm stale from {np.datetime64(rec.stale_ns, 'ns')}Z "
            f"to {np.datetime64(end, 'ns')}Z (the recorded daemon denied every order on BTCUSDT in between") in " ".join(
                info.output.split())


def test_recording_import_stores_a_stale_stretch_nothing_lifts_to_the_end_of_the_recording(tmp_path: Path) -> None:
    rec = write_stale_recording(tmp_path / "stale.jsonl.gz", live=False)
    lines = [line for line in read_frames(rec.recording, episodes=True) if line[0] < rec.back_ns]  # cut in the silence
    with FrameRecorder(tmp_path / "cut.jsonl.gz") as out:
        for line in lines:
            out.write(*line)
    manifests = import_recording(tmp_path / "cut.jsonl.gz", trades_only_usdm_config(), tmp_path / "cat")
    assert manifests[(USDM_IID, "trades")].stale == [(rec.stale_ns, rec.stale_ns + 1, "binance-usdm")]


class TradeGapRecording(NamedTuple):
    """A recorder file of the USD-M trades with a hole in their ids (see :func:`write_trade_gap_recording`)."""

    recording: Path
    kept: list[tuple[int, str, str]]  # the trade frames written
    at: int  # index in ``kept`` of the first trade after the hole
    missing: list[int]  # the trade ids left out
    hole: list[tuple[int, str, str]]  # the trade frames left out


def write_trade_gap_recording(path: Path) -> TradeGapRecording:
    """The trades of :data:`USDM_CAPTURE` as the recorder writes them, without those received in a 4 s window in
    the middle and with no recorded fetch of them after: the daemon's fetch was never answered before the
    recording ended (cut, or its daemon stopped)."""
    from tradebus.node.feeds import build_feeds
    from tradebus.node.playback import read_recording

    feeds = build_feeds(trades_only_usdm_config(), lambda msg: None, live=False, clock_ns=lambda: 0)  # type: ignore[arg-type]
    trades = [line for line in read_recording(USDM_CAPTURE, feeds) if '"e":"trade"' in str(line[2])]
    hole_from = trades[len(trades) // 2][0]
    hole = [line for line in trades if hole_from <= line[0] < hole_from + 4_000_000_000]
    kept = [line for line in trades if line not in hole]
    with FrameRecorder(path) as rec:
        for line in kept:
            rec.write(*line)
    missing = [json.loads(raw)["data"]["t"] for _, _, raw in hole]
    return TradeGapRecording(path, kept, kept.index(next(line for line in kept if line[0] > hole_from)), missing, hole)


def test_recording_import_cut_before_a_trade_gaps_recorded_fetch_writes_every_trade_and_stores_the_gap(
    tmp_path: Path,
) -> None:
    """The trades after the hole were held back for the recorded fetch the recording does not reach, and the import
    exited 0 without them (327 of 427 rows). Every received trade is written; the hole is in the manifest."""
    rec = write_trade_gap_recording(tmp_path / "gap.jsonl.gz")
    assert rec.kept[-1][0] - rec.kept[rec.at][0] < 20_000_000_000  # ends within the playback's wait for the answer
    manifests = import_recording(rec.recording, trades_only_usdm_config(), tmp_path / "cat")
    cat = Catalog(tmp_path / "cat")
    rows = cat.read("binance_usdm", "usdm", "BTCUSDT", "trades")
    ids = [int(json.loads(raw)["data"]["t"]) for _, _, raw in rec.kept]
    assert [int(t) for t in rows.column("trade_id").to_pylist()] == ids
    # those held back are released at the end of the recording, where a replay's clock stands when it delivers them
    assert rows.column("ts_init").to_pylist() == [
        *(t for t, _, _ in rec.kept[: rec.at]), *[rec.kept[-1][0]] * (len(rec.kept) - rec.at)
    ]
    gap = (rec.kept[rec.at - 1][0], rec.kept[rec.at][0], rec.missing[0], rec.missing[-1], len(rec.missing))
    assert rec.missing == list(range(rec.missing[0], rec.missing[-1] + 1))
    assert manifests[(USDM_IID, "trades")].missed_trades == [gap]
    assert cat.manifest("binance_usdm", "usdm", "BTCUSDT", "trades").missed_trades == [gap]
    info = CliRunner().invoke(data_app, ["info", "--catalog", str(tmp_path / "cat")], terminal_width=250)
    assert info.exit_code == 0
    assert (f"binance_usdm/usdm/BTCUSDT/trades: trade ids {gap[2]}..{gap[3]} missing between "
            f"{np.datetime64(gap[0], 'ns')}Z and {np.datetime64(gap[1], 'ns')}Z ({len(rec.missing)} trades lost for "
            "good") in " ".join(info.output.split())


def test_replay_of_a_recording_cut_before_a_trade_gaps_recorded_fetch_sees_the_trades_the_import_writes(
    tmp_path: Path,
) -> None:
    """``tradebus replay`` dropped the held trades too: the strategy saw 327 of 427."""
    from tradebus.engine.messages import TradesMissed
    from tradebus.node.playback import Playback

    rec = write_trade_gap_recording(tmp_path / "gap.jsonl.gz")
    playback = Playback(trades_only_usdm_config())
    seen: list = []
    playback.kernel.bus.subscribe(Trade, seen.append, USDM_IID)
    playback.kernel.bus.subscribe(TradesMissed, seen.append)
    playback.run(rec.recording)
    (missed,) = [m for m in seen if isinstance(m, TradesMissed)]
    assert (missed.first_id, missed.last_id, missed.recovered) == (rec.missing[0], rec.missing[-1], 0)
    assert [int(m.trade_id) for m in seen if isinstance(m, Trade)] == [
        int(json.loads(raw)["data"]["t"]) for _, _, raw in rec.kept
    ]
    assert seen.index(missed) == rec.at  # before the trades held behind it, as live


def test_recording_import_stores_a_trade_gap_its_recorded_fetch_left_unfilled(tmp_path: Path) -> None:
    """A fetch the venue answered empty every time (it failed, or timed out) is recorded so: the held trades go on
    after its last answer, and the hole stays in the data."""
    from tradebus.adapters.common.trade_gaps import RETRIES

    rec = write_trade_gap_recording(tmp_path / "gap.jsonl.gz")
    answers = [(rec.kept[rec.at][0] + 1 + n, "rest-trades:BTCUSDT@binance-usdm", "[]") for n in range(1 + RETRIES)]
    assert answers[-1][0] < rec.kept[rec.at + 1][0]
    lines = [*rec.kept[: rec.at + 1], *answers, *rec.kept[rec.at + 1 :]]
    with FrameRecorder(tmp_path / "answered.jsonl.gz") as out:
        for line in lines:
            out.write(*line)
    manifests = import_recording(tmp_path / "answered.jsonl.gz", trades_only_usdm_config(), tmp_path / "cat")
    assert manifests[(USDM_IID, "trades")].rows == len(rec.kept)
    assert manifests[(USDM_IID, "trades")].missed_trades == [
        (rec.kept[rec.at - 1][0], rec.kept[rec.at][0], rec.missing[0], rec.missing[-1], len(rec.missing))
    ]


def test_recording_import_releases_trades_held_at_a_run_stop_at_the_stop_as_the_replay_does(tmp_path: Path) -> None:
    """The daemon stopped during the fetch, 1 s after the last frame (its ``run:stop`` line): the replay delivered the
    held trades at the stop, the import wrote them at the last frame's receive time. Both now release them at the
    stop, the recording's last line."""
    from tradebus.node.playback import Playback

    rec = write_trade_gap_recording(tmp_path / "gap.jsonl.gz")
    stop_ns = rec.kept[-1][0] + 1_000_000_000
    with FrameRecorder(tmp_path / "stopped.jsonl.gz") as out:
        for line in rec.kept:
            out.write(*line)
        out.write(stop_ns, "run:stop", "")
    import_recording(tmp_path / "stopped.jsonl.gz", trades_only_usdm_config(), tmp_path / "cat")
    table = Catalog(tmp_path / "cat").read("binance_usdm", "usdm", "BTCUSDT", "trades")
    written = list(zip(*(table.column(c).to_pylist() for c in ("trade_id", "ts_event", "ts_init", "price", "size",
                                                                 "aggressor")), strict=True))
    assert [t[2] for t in written] == [*(t for t, _, _ in rec.kept[: rec.at]), *[stop_ns] * (len(rec.kept) - rec.at)]

    playback = Playback(trades_only_usdm_config())
    seen: list = []
    playback.kernel.bus.subscribe(
        Trade, lambda m: seen.append((m.trade_id, m.ts_event, playback.clock.now_ns(), m.price, m.size, m.aggressor)),
        USDM_IID,
    )
    playback.run(tmp_path / "stopped.jsonl.gz")
    assert seen == written


def test_a_killed_sessions_held_trades_are_imported_at_its_last_line_and_stay_held_in_its_replay(
    tmp_path: Path,
) -> None:
    """A daemon killed (``run:start``, no ``run:stop``) while waiting for a trade gap's fetch never delivered the
    trades held behind it: its replay keeps them held as the daemon did, strategies and outputs alike. The import
    is of the market's data, not of the session: it writes every trade the recording received, the held ones at its
    last line (as for a recording cut short), and stores the ids no fetch recovered as lost."""
    from tradebus.engine.messages import TradesMissed
    from tradebus.node.playback import RUN_START, Playback

    rec = write_trade_gap_recording(tmp_path / "gap.jsonl.gz")
    killed = tmp_path / "killed.jsonl.gz"
    with FrameRecorder(killed) as out:
        out.write(rec.kept[0][0] - 1_000_000_000, RUN_START, "")
        for line in rec.kept:
            out.write(*line)
    manifests = import_recording(killed, trades_only_usdm_config(), tmp_path / "cat")
    table = Catalog(tmp_path / "cat").read("binance_usdm", "usdm", "BTCUSDT", "trades")
    ids = [int(json.loads(raw)["data"]["t"]) for _, _, raw in rec.kept]
    assert [int(t) for t in table.column("trade_id").to_pylist()] == ids
    assert table.column("ts_init").to_pylist() == [
        *(t for t, _, _ in rec.kept[: rec.at]), *[rec.kept[-1][0]] * (len(rec.kept) - rec.at)
    ]
    gap = (rec.kept[rec.at - 1][0], rec.kept[rec.at][0], rec.missing[0], rec.missing[-1], len(rec.missing))
    assert manifests[(USDM_IID, "trades")].missed_trades == [gap]

    playback = Playback(trades_only_usdm_config())
    seen: list = []
    playback.kernel.bus.subscribe(Trade, seen.append, USDM_IID)
    playback.kernel.bus.subscribe(TradesMissed, seen.append)
    playback.run(killed)
    # the held trades and their TradesMissed never came
    assert [int(m.trade_id) for m in seen if isinstance(m, Trade)] == ids[: rec.at]
    assert [m for m in seen if isinstance(m, TradesMissed)] == []
    assert playback.stats.trade_gaps == []


def test_recording_import_writes_trades_held_before_a_recovery_at_its_answer_as_the_replay_sees_them(
    tmp_path: Path,
) -> None:
    """The trade that revealed the gap was received, and held, before the recorded fetch's answer recovered the
    missing ones: the import wrote the recovered trades at the answer's time, then the held one at its own earlier
    receive time, and refused its own rows ("ts_init ... < previous ..."). Both are written at the answer's time,
    where the replay's kernel handles them; ts_event stays the venue's."""
    from tradebus.node.playback import Playback

    rec = write_trade_gap_recording(tmp_path / "gap.jsonl.gz")
    held_ns = rec.kept[rec.at][0]
    answer_ns = held_ns + 1
    assert answer_ns < rec.kept[rec.at + 1][0]
    rows = []
    for _, _, raw in rec.hole:
        d = json.loads(raw)["data"]
        rows.append({"id": d["t"], "price": d["p"], "qty": d["q"], "quoteQty": "0", "time": d["T"],
                     "isBuyerMaker": d["m"], "isBestMatch": True})
    lines = [*rec.kept[: rec.at + 1], (answer_ns, "rest-trades:BTCUSDT@binance-usdm", json.dumps(rows)),
             *rec.kept[rec.at + 1 :]]
    with FrameRecorder(tmp_path / "recovered.jsonl.gz") as out:
        for line in lines:
            out.write(*line)

    manifests = import_recording(tmp_path / "recovered.jsonl.gz", trades_only_usdm_config(), tmp_path / "cat")
    assert manifests[(USDM_IID, "trades")].missed_trades == []
    table = Catalog(tmp_path / "cat").read("binance_usdm", "usdm", "BTCUSDT", "trades")
    written = list(zip(*(table.column(c).to_pylist() for c in ("trade_id", "ts_event", "ts_init", "price", "size",
                                                                 "aggressor")), strict=True))
    frames = [*rec.kept[: rec.at], *rec.hole, *rec.kept[rec.at :]]
    assert [int(t[0]) for t in written] == [json.loads(raw)["data"]["t"] for _, _, raw in frames]
    assert [t[1] for t in written] == [json.loads(raw)["data"]["T"] * 1_000_000 for _, _, raw in frames]
    ts_init = [t[2] for t in written]
    assert ts_init == sorted(ts_init)
    released = len(rec.hole) + 1
    assert ts_init[rec.at : rec.at + released] == [answer_ns] * released
    assert ts_init[rec.at + released :] == [t for t, _, _ in rec.kept[rec.at + 1 :]]

    playback = Playback(trades_only_usdm_config())
    seen: list = []
    playback.kernel.bus.subscribe(
        Trade, lambda m: seen.append((m.trade_id, m.ts_event, playback.clock.now_ns(), m.price, m.size, m.aggressor)),
        USDM_IID,
    )
    playback.run(tmp_path / "recovered.jsonl.gz")
    assert seen == written


def write_book_feed_stale_recording(path: Path) -> tuple[int, int]:
    """Every frame of :data:`USDM_CAPTURE` as the recorder writes them (for :func:`_usdm_config`), with a ``stale:``
    line in the middle and a ``live:`` line right after it; returns the stale line's time and the next frame's."""
    from tradebus.node.feeds import build_feeds
    from tradebus.node.playback import read_recording

    frames = list(read_recording(USDM_CAPTURE, build_feeds(_usdm_config(), lambda msg: None, live=False, clock_ns=lambda: 0)))
    at = len(frames) // 2
    stale_ns = frames[at][0] + 1
    assert frames[at + 1][0] > stale_ns + 1
    lines = [*frames[: at + 1], (stale_ns, "stale:binance-usdm", str(frames[at][0])),
             (stale_ns + 1, "live:binance-usdm", "pong"), *frames[at + 1 :]]
    with FrameRecorder(path) as rec:
        for line in lines:
            rec.write(*line)
    return stale_ns, frames[at + 1][0]


def test_recording_import_ends_a_book_feeds_stale_stretch_at_its_next_market_data(tmp_path: Path) -> None:
    """Every dataset of the instrument holds the stretch; a book feed is not lifted by a proof of life, only by data."""
    stale_ns, next_ns = write_book_feed_stale_recording(tmp_path / "stale.jsonl.gz")
    manifests = import_recording(tmp_path / "stale.jsonl.gz", _usdm_config(), tmp_path / "cat")
    assert len(manifests) == 5
    for manifest in manifests.values():
        assert manifest.stale == [(stale_ns, next_ns, "binance-usdm")]


def test_recording_import_of_a_recording_without_stale_lines_stores_no_stale_stretch(usdm_catalog: Catalog) -> None:
    for ref in usdm_catalog.datasets():
        assert usdm_catalog.manifest(*ref.relpath().parts).stale == []


def test_recording_import_refused_midway_leaves_no_directory_in_the_catalog(tmp_path: Path) -> None:
    lines = _capture_lines()
    lines[3000] = "not a capture line"  # after every dataset (book, quotes, trades ...) was opened
    root = tmp_path / "cat"
    root.mkdir()
    with pytest.raises(DataError, match="line 3001: expected '<recv_ts> <json>'"):
        import_recording(_write_capture(tmp_path / "bad.gz", lines), _usdm_config(), root)
    assert list(root.rglob("*")) == []


def test_recording_import_of_a_capture_without_gap_adds_no_note(usdm_catalog: Catalog) -> None:
    for ref in usdm_catalog.datasets():
        assert usdm_catalog.manifest(*ref.relpath().parts).notes == [f"imported from recording {USDM_CAPTURE.name}"]


def test_replay_merges_every_kind_in_ts_init_order_and_books_by_sequence(usdm_catalog: Catalog) -> None:
    kinds = ("book", "quotes", "trades", "mark_prices", "funding_rates")
    msgs = list(Replay(_sources(usdm_catalog, *kinds), batch_rows=257))
    types = {type(m) for m in msgs}
    assert types == {BookSnapshot, BookDelta, Quote, Trade, MarkPrice, FundingRate}
    ts = [m.ts_init for m in msgs]
    assert ts == sorted(ts)
    book = [m for m in msgs if isinstance(m, (BookSnapshot, BookDelta))]
    assert isinstance(book[0], BookSnapshot)
    # Sequences never go back.
    seqs = [m.last_seq for m in book]
    assert seqs == sorted(seqs)
    ref_bids, ref_asks, _ = _reference_book(_raw_frames())
    bids: dict[float, float] = {}
    asks: dict[float, float] = {}
    for m in book:
        if isinstance(m, BookSnapshot):
            bids, asks = {}, {}
        for side, levels in ((bids, m.bids), (asks, m.asks)):
            for p, q in levels.tolist():
                if q == 0.0:
                    side.pop(p, None)
                else:
                    side[p] = q
    assert bids == ref_bids and asks == ref_asks


def _book_keys(msgs: list) -> list[tuple]:
    return [(type(m).__name__, m.ts_init, m.last_seq, m.bids.tolist(), m.asks.tolist()) for m in msgs
            if isinstance(m, (BookSnapshot, BookDelta))]


def test_a_book_message_is_replayed_whole_whatever_the_batch_size(usdm_catalog: Catalog) -> None:
    """The REST snapshot (about 2000 rows) spans many 257-row read batches: still one snapshot."""
    whole = _book_keys(list(Replay(_sources(usdm_catalog, "book", "trades"))))
    assert sum(k[0] == "BookSnapshot" for k in whole) == 1 and len(whole[0][3]) + len(whole[0][4]) > 257
    for rows in (257, 1):
        replay = Replay(_sources(usdm_catalog, "book", "trades"), batch_rows=rows)
        assert _book_keys(list(replay)) == whole
        assert _book_keys([m for b in replay.batches() if b.kind == "book" for m in b.messages()]) == whole


def test_replay_memory_stays_flat_with_a_four_times_longer_book(tmp_path: Path, usdm_catalog: Catalog) -> None:
    base = usdm_catalog.read("binance_usdm", "usdm", "BTCUSDT", "book")
    span = int(base.column("ts_init")[-1].as_py()) - int(base.column("ts_init")[0].as_py()) + 1

    def build(copies: int) -> Catalog:
        cat = Catalog(tmp_path / f"x{copies}")
        with cat.writer("v", "usdm", "S", "book", kind="book", row_group_rows=4096) as w:
            for k in range(copies):
                shifted = base.set_column(1, "ts_init", pa.array(np.asarray(base.column("ts_init")) + k * span))
                w.write(shifted)
            w.commit()
        return cat

    def peak(cat: Catalog) -> tuple[int, int]:
        replay = Replay([ReplaySource.from_catalog(cat, "S.V", "v", "usdm", "S", "book")], batch_rows=2048)
        tracemalloc.start()
        rows = 0
        for batch in replay.batches():
            rows += len(batch)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return rows, top

    rows1, peak1 = peak(build(1))
    rows4, peak4 = peak(build(4))
    assert rows4 == 4 * rows1
    assert peak4 < 1.5 * peak1, (peak1, peak4)


def test_tardis_incremental_l2_quotes_and_snapshots(tmp_path: Path) -> None:
    l2 = import_tardis(FIXTURES / "data" / "tardis_deribit_incremental_book_L2_BTC-PERPETUAL.csv", tmp_path, "deribit", "perp", "BTC-PERPETUAL")
    assert l2.kind == "book" and l2.rows == 15
    rows = Catalog(tmp_path).read("deribit", "perp", "BTC-PERPETUAL", "book")
    assert set(rows.column("flags").to_pylist()) == {BOOK_SNAPSHOT}
    assert rows.column("price").to_pylist()[:2] == [6421.5, 6422.0] and rows.column("side").to_pylist()[0] == -1
    assert rows.column("ts_init").to_pylist()[0] == 1585699200355684000
    assert rows.column("ts_event").to_pylist()[0] == 1585699200245000000
    quotes = import_tardis(FIXTURES / "data" / "tardis_huobi-dm-swap_quotes_BTC-USD.csv", tmp_path, "huobi", "swap", "BTC-USD")
    assert quotes.kind == "quotes" and quotes.rows == 10
    q = Catalog(tmp_path).read("huobi", "swap", "BTC-USD", "quotes")
    assert q.slice(0, 1).to_pylist()[0] == {
        "ts_event": 1588291201099000000, "ts_init": 1588291201234268000,
        "bid_price": 8629.2, "bid_size": 806.0, "ask_price": 8629.3, "ask_size": 5494.0,
    }
    snaps = import_tardis(FIXTURES / "data" / "tardis_binance-futures_book_snapshot_5_BTCUSDT.csv", tmp_path, "binance", "usdm", "BTCUSDT")
    assert snaps.rows == 10 * 10
    msgs = list(Replay([ReplaySource.from_catalog(tmp_path, "BTCUSDT.B", "binance", "usdm", "BTCUSDT", "book")]))
    assert len(msgs) == 10 and all(isinstance(m, BookSnapshot) for m in msgs)
    assert msgs[0].asks[0].tolist() == [11657.08, 1.714] and msgs[0].bids[0].tolist() == [11657.07, 10.896]


def test_tardis_bad_side_names_the_row_and_writes_nothing(tmp_path: Path) -> None:
    src = (FIXTURES / "data" / "tardis_deribit_incremental_book_L2_BTC-PERPETUAL.csv").read_text().splitlines()
    src[4] = src[4].replace(",ask,", ",middle,")
    path = tmp_path / "bad.csv"
    path.write_text("\n".join(src) + "\n")
    with pytest.raises(DataError, match=r"bad.csv row 5: side 'middle'"):
        import_tardis(path, tmp_path / "cat", "deribit", "perp", "X")
    assert not Catalog(tmp_path / "cat").datasets()




def test_tardis_incremental_update_before_the_first_snapshot_names_the_row_and_writes_nothing(tmp_path: Path) -> None:
    """A file cut after its initial snapshot imported with exit 0: its updates built a book from nothing
    (half a book, replayed as it was), where the Bybit and OKX imports refuse a delta before the first snapshot."""
    src = (FIXTURES / "data" / "tardis_deribit_incremental_book_L2_BTC-PERPETUAL.csv").read_text().splitlines()
    updates = [row.replace(",true,", ",false,") for row in src[1:]]
    path = tmp_path / "cut.csv"
    path.write_text("\n".join([src[0], *updates, *src[1:]]) + "\n")  # updates, then a snapshot
    with pytest.raises(DataError) as err:
        import_tardis(path, tmp_path / "cat", "deribit", "perp", "BTC-PERPETUAL")
    assert str(err.value) == (
        f"{path} row 2: an update (is_snapshot false) before the file's first snapshot: it would update a book "
        "that was never seeded (a Tardis incremental_book_L2 file starts with the snapshot of the book; was it cut?)"
    )
    assert not Catalog(tmp_path / "cat").datasets()
    path.write_text("\n".join([src[0], *src[1:], *updates]) + "\n")  # the snapshot first: imported
    assert import_tardis(path, tmp_path / "cat", "deribit", "perp", "BTC-PERPETUAL").rows == 2 * len(updates)


@pytest.mark.parametrize(
    ("column", "value", "error"),
    [
        ("price", "abc", "price 'abc' is not a finite number > 0"),
        ("price", "NaN", r"price \(empty or NaN\) is not a finite number > 0"),
        ("price", "0", "price 0.0 is not a finite number > 0"),
        ("price", "-6422", "price -6422.0 is not a finite number > 0"),
        ("amount", "", r"amount \(empty or NaN\) is not a finite number >= 0"),
        ("amount", "-3", "amount -3 is not a finite number >= 0"),
    ],
)
def test_tardis_incremental_level_not_a_price_or_size_names_the_row_and_writes_nothing(
    tmp_path: Path, column: str, value: str, error: str
) -> None:
    """Such a row was stored (or died with a bare ValueError) and replayed as a level or a delete."""
    src = [r.split(",") for r in (FIXTURES / "data" / "tardis_deribit_incremental_book_L2_BTC-PERPETUAL.csv").read_text().splitlines()]
    src[3][src[0].index(column)] = value
    path = tmp_path / "bad.csv"
    path.write_text("\n".join(",".join(r) for r in src) + "\n")
    with pytest.raises(DataError, match=r"bad.csv row 4: " + error):
        import_tardis(path, tmp_path / "cat", "deribit", "perp", "X")
    assert not Catalog(tmp_path / "cat").datasets()


@pytest.mark.parametrize(("column", "value"), [("asks[2].amount", "-0.5"), ("bids[1].price", "abc"), ("bids[3].amount", "")])
def test_tardis_snapshot_level_not_a_price_or_size_names_the_row_and_column(tmp_path: Path, column: str, value: str) -> None:
    src = [r.split(",") for r in (FIXTURES / "data" / "tardis_binance-futures_book_snapshot_5_BTCUSDT.csv").read_text().splitlines()]
    src[5][src[0].index(column)] = value
    path = tmp_path / "snap.csv"
    path.write_text("\n".join(",".join(r) for r in src) + "\n")
    with pytest.raises(DataError, match=r"snap.csv row 6: " + re.escape(column) + " .* is not a finite number"):
        import_tardis(path, tmp_path / "cat", "binance", "usdm", "X")
    assert not Catalog(tmp_path / "cat").datasets()


def test_tardis_snapshot_rows_with_fewer_levels_leave_the_empty_ones_out(tmp_path: Path) -> None:
    src = [r.split(",") for r in (FIXTURES / "data" / "tardis_binance-futures_book_snapshot_5_BTCUSDT.csv").read_text().splitlines()]
    for name in ("asks[4].price", "asks[4].amount"):
        src[2][src[0].index(name)] = ""
    path = tmp_path / "short.csv"
    path.write_text("\n".join(",".join(r) for r in src) + "\n")
    import_tardis(path, tmp_path / "cat", "binance", "usdm", "BTCUSDT")
    msgs = list(Replay([ReplaySource.from_catalog(tmp_path / "cat", "BTCUSDT.B", "binance", "usdm", "BTCUSDT", "book")]))
    assert [len(m.asks) for m in msgs[:3]] == [5, 4, 5]


def _bybit_zip(tmp_path: Path) -> Path:
    """The Bybit archive: the fixture's frames, one per line, zipped as Bybit publishes them."""
    lines = [raw if isinstance(raw, str) else raw.decode() for _, _, raw in read_frames(BYBIT_FRAMES)]
    path = tmp_path / "2024-12-01_XRPUSDT_ob500.data.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("2024-12-01_XRPUSDT_ob500.data", "\n".join(lines) + "\n")
    return path


def test_bybit_archive_import_keeps_sequences_and_rebuilds_the_book(tmp_path: Path) -> None:
    path = _bybit_zip(tmp_path)
    frames = [json.loads(line) for line in io.TextIOWrapper(zipfile.ZipFile(path).open(zipfile.ZipFile(path).namelist()[0]))]
    manifest = import_bybit_archive(path, tmp_path / "cat", "XRPUSDT")
    assert manifest.rows == sum(len(f["data"]["b"]) + len(f["data"]["a"]) for f in frames)
    msgs = list(Replay([ReplaySource.from_catalog(tmp_path / "cat", "XRPUSDT.BYBIT", "bybit", "linear", "XRPUSDT", "book")]))
    assert isinstance(msgs[0], BookSnapshot) and len(msgs) == len(frames)
    assert [m.last_seq for m in msgs] == [f["data"]["u"] for f in frames]
    assert [m.ts_init for m in msgs] == [f["ts"] * 1_000_000 for f in frames]
    bids: dict[float, float] = {}
    for f in frames:
        for p, q in f["data"]["b"]:
            if float(q) == 0.0:
                bids.pop(float(p), None)
            else:
                bids[float(p)] = float(q)
    replayed: dict[float, float] = {}
    for m in msgs:
        for p, q in m.bids.tolist():
            if q == 0.0:
                replayed.pop(p, None)
            else:
                replayed[p] = q
    assert replayed == bids


def test_bybit_archive_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "x.zip"
    bad.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="x.zip: not a zip archive"):
        import_bybit_archive(bad, tmp_path / "cat", "XRPUSDT")
    path = _bybit_zip(tmp_path)
    with pytest.raises(DataError, match="is not BTCUSDT's"):
        import_bybit_archive(path, tmp_path / "cat", "BTCUSDT")
    assert not Catalog(tmp_path / "cat").datasets()


def _bybit_zip_of(tmp_path: Path, frames: list[dict]) -> Path:
    """A Bybit archive of ``frames`` (one JSON line each)."""
    path = tmp_path / "edited_XRPUSDT_ob500.data.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("edited_XRPUSDT_ob500.data", "".join(json.dumps(f) + "\n" for f in frames))
    return path


def _bybit_frames() -> list[dict]:
    return [json.loads(raw) for _, _, raw in read_frames(BYBIT_FRAMES)]


def test_bybit_archive_with_a_delta_missing_is_refused_naming_the_line_and_both_ids(tmp_path: Path) -> None:
    frames = _bybit_frames()
    assert [f["data"]["u"] for f in frames] == list(range(20254869, 20254869 + 50))  # the real dump is gapless
    del frames[10]
    with pytest.raises(DataError, match=r"edited_XRPUSDT_ob500.data.zip:edited_XRPUSDT_ob500.data line 11: "
                                        r"delta u=20254880 after u=20254878, expected u=20254879 \(missing messages\)"):
        import_bybit_archive(_bybit_zip_of(tmp_path, frames), tmp_path / "cat", "XRPUSDT")
    assert not Catalog(tmp_path / "cat").datasets()


def test_bybit_archive_with_a_delta_repeated_or_before_the_snapshot_is_refused(tmp_path: Path) -> None:
    frames = _bybit_frames()
    frames.insert(7, frames[6])
    with pytest.raises(DataError, match=r"line 8: delta u=20254875 after u=20254875, expected u=20254876 "
                                        r"\(repeated/out-of-order messages\)"):
        import_bybit_archive(_bybit_zip_of(tmp_path, frames), tmp_path / "cat", "XRPUSDT")
    with pytest.raises(DataError, match=r"line 1: a delta \(u=20254870\) before the first snapshot"):
        import_bybit_archive(_bybit_zip_of(tmp_path, _bybit_frames()[1:]), tmp_path / "cat", "XRPUSDT")
    frames = _bybit_frames()
    del frames[3]["data"]["u"]
    with pytest.raises(DataError, match=r"line 4: malformed frame: .*`u`"):
        import_bybit_archive(_bybit_zip_of(tmp_path, frames), tmp_path / "cat", "XRPUSDT")
    assert not Catalog(tmp_path / "cat").datasets()


def test_bybit_archive_frame_of_another_type_than_snapshot_or_delta_is_refused(tmp_path: Path) -> None:
    frames = _bybit_frames()
    frames[4]["type"] = "snap"
    with pytest.raises(DataError, match=r"line 5: type 'snap' is not snapshot or delta"):
        import_bybit_archive(_bybit_zip_of(tmp_path, frames), tmp_path / "cat", "XRPUSDT")
    assert not Catalog(tmp_path / "cat").datasets()


def test_bybit_archive_frame_going_back_in_time_is_refused_naming_its_line(tmp_path: Path) -> None:
    frames = _bybit_frames()
    frames[5]["ts"] = frames[3]["ts"] - 50
    with pytest.raises(DataError, match=r"edited_XRPUSDT_ob500.data line 6: ts 1733011200840 goes back from 1733011200991"):
        import_bybit_archive(_bybit_zip_of(tmp_path, frames), tmp_path / "cat", "XRPUSDT")
    assert not Catalog(tmp_path / "cat").datasets()



@pytest.mark.parametrize(
    ("side", "level", "field"),
    [
        ("b", ["abc", "1"], r"\$\.data\.b\[0\]\[0\]"),
        ("b", ["NaN", "1"], r"\$\.data\.b\[0\]\[0\]"),
        ("a", ["0", "5"], r"\$\.data\.a\[0\]\[0\]"),
        ("a", ["inf", "5"], r"\$\.data\.a\[0\]\[0\]"),
        ("a", ["0.5123", "-5"], r"\$\.data\.a\[0\]\[1\]"),
        ("b", ["0.5123", "nan"], r"\$\.data\.b\[0\]\[1\]"),
    ],
)
def test_bybit_archive_level_the_live_parser_refuses_is_refused_naming_line_and_level(
    tmp_path: Path, side: str, level: list[str], field: str
) -> None:
    """A NaN, zero, infinite or non-numeric price, or a negative size, was stored (or died with a bare ValueError)."""
    frames = _bybit_frames()
    frames[3]["data"][side][0] = level
    with pytest.raises(DataError, match=r"edited_XRPUSDT_ob500.data line 4: malformed frame: .*" + field):
        import_bybit_archive(_bybit_zip_of(tmp_path, frames), tmp_path / "cat", "XRPUSDT")
    assert not Catalog(tmp_path / "cat").datasets()


@pytest.mark.parametrize("restart_type", ["snapshot", "delta"])
def test_bybit_archive_restart_with_u_1_replaces_the_book(tmp_path: Path, restart_type: str) -> None:
    """Bybit docs: after a service restart ``u`` is 1 and the message is a full book to overwrite the local one."""
    frames = _bybit_frames()
    restart = json.loads(json.dumps(frames[0]))
    restart["type"] = restart_type
    restart["data"]["u"] = 1
    restart["ts"] = frames[10]["ts"]
    after = frames[11:14]
    for i, f in enumerate(after, 2):
        f["data"]["u"] = i
    edited = [*frames[:10], restart, *after]
    import_bybit_archive(_bybit_zip_of(tmp_path, edited), tmp_path / "cat", "XRPUSDT")
    msgs = list(Replay([ReplaySource.from_catalog(tmp_path / "cat", "XRPUSDT.BYBIT", "bybit", "linear", "XRPUSDT", "book")]))
    assert [type(m).__name__ for m in msgs] == ["BookSnapshot"] + ["BookDelta"] * 9 + ["BookSnapshot"] + ["BookDelta"] * 3
    assert [m.last_seq for m in msgs[10:]] == [1, 2, 3, 4]
    assert msgs[10].bids.shape == (500, 2)


def test_cli_imports_tardis_and_bybit_and_names_bad_input(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from tradebus.cli import app

    runner = CliRunner()
    cat = tmp_path / "cat"
    res = runner.invoke(app, ["data", "import-tardis", str(FIXTURES / "data" / "tardis_huobi-dm-swap_quotes_BTC-USD.csv"),
                              "--venue", "huobi", "--market", "swap", "--symbol", "BTC-USD", "--catalog", str(cat)])
    assert res.exit_code == 0, res.output
    assert Catalog(cat).manifest("huobi", "swap", "BTC-USD", "quotes").rows == 10
    res = runner.invoke(app, ["data", "import-bybit-book", str(_bybit_zip(tmp_path)), "--symbol", "XRPUSDT", "--catalog", str(cat)])
    assert res.exit_code == 0, res.output
    assert Catalog(cat).manifest("bybit", "linear", "XRPUSDT", "book").kind == "book"
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"nope")
    res = runner.invoke(app, ["data", "import-bybit-book", str(bad), "--symbol", "XRPUSDT", "--catalog", str(cat)])
    assert res.exit_code != 0 and "not a zip archive" in res.output


def test_cli_import_recording_writes_the_datasets_and_refuses_to_replace_them(tmp_path: Path) -> None:
    import yaml
    from typer.testing import CliRunner

    from tradebus.cli import app

    cfg = usdm_config(None, None, depth_speed="0ms")
    cfg["feeds"][0]["subscriptions"] = {USDM_IID: ["trade", "depth", "markPrice"]}
    path = tmp_path / "paper.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    args = ["data", "import-recording", str(USDM_CAPTURE), "--config", str(path), "--catalog", str(tmp_path / "cat")]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "binance_usdm/usdm/BTCUSDT/book" in res.output
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 3 and "dataset exists; replace it with --overwrite" in again.output
    # the exit codes of every data command: bad data 3, a bad option 2
    garbled = tmp_path / "garbled[1].gz"
    garbled.write_bytes(b"not a recording")
    bad = CliRunner().invoke(app, ["data", "import-recording", str(garbled), "--config", str(path), "--catalog",
                                   str(tmp_path / "cat2")])
    assert bad.exit_code == 3 and "garbled[1].gz: not a gzip recording" in bad.output
    missing = CliRunner().invoke(app, ["data", "import-recording", str(USDM_CAPTURE), "--config",
                                       str(tmp_path / "nosuch.yaml"), "--catalog", str(tmp_path / "cat2")])
    assert missing.exit_code == 2 and "nosuch.yaml" in missing.output


def test_recording_import_writes_the_seeded_book_at_the_snapshot_answers_receive_time_as_the_replay_sees_it(
    tmp_path: Path,
) -> None:
    """The book sync seeds the book from the REST snapshot and the deltas buffered while it was fetched, and
    stamps that BookSnapshot (and the Quote of its top) with the last buffered delta's receive time, before the
    answer was received. The import wrote those rows there: a backtest of the 2024-07-18 capture quoted on the
    seeded book at 23:57:01.245920894, 35.7 ms before the answer's receive time 23:57:01.281597601, where the
    replay and the paper daemon first have it (their orders are stamped there). The rows are now written at the
    answer's receive time, where the replay's clock stands when it publishes the snapshot."""
    from tests.execution.conftest import L2_CAPTURE
    from tradebus.node.playback import Playback

    cfg = usdm_config(None, None, depth_speed="0ms")
    cfg["feeds"][0]["subscriptions"] = {USDM_IID: ["trade", "depth"]}
    config = config_of(cfg)
    lines = gzip.decompress(L2_CAPTURE.read_bytes()).decode().splitlines()
    (answer_ns,) = [int(line.partition(" ")[0]) for line in lines if '"lastUpdateId"' in line.partition(" ")[2][:20]]
    import_recording(L2_CAPTURE, config, tmp_path / "cat")
    cat = Catalog(tmp_path / "cat")
    book = cat.read("binance_usdm", "usdm", "BTCUSDT", "book")
    flags = np.asarray(book.column("flags"))
    snapshot_ts = np.unique(np.asarray(book.column("ts_init"))[(flags & BOOK_SNAPSHOT) != 0])
    assert snapshot_ts.tolist() == [answer_ns] == [1721347021281597601]
    assert np.asarray(book.column("ts_init")).min() == answer_ns
    quotes = cat.read("binance_usdm", "usdm", "BTCUSDT", "quotes")  # the top of the synced book
    assert np.asarray(quotes.column("ts_init")).min() == answer_ns

    playback = Playback(config)
    seen: list[int] = []
    playback.kernel.bus.subscribe(BookSnapshot, lambda m: seen.append(playback.clock.now_ns()), USDM_IID)
    playback.run(L2_CAPTURE)
    assert seen == [answer_ns]
