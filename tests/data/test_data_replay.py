"""Replay: k-way merge order, batches vs messages, time ranges, validation, flat memory, sample catalog."""

from __future__ import annotations

import dataclasses
import gc
import os
import select
import shutil
import subprocess
import sys
import tempfile
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.catalog_damage import keep_sizes
from tradebus.data.catalog import BOOK_SNAPSHOT, Catalog
from tradebus.data.replay import Replay, ReplayBatch, ReplaySource
from tradebus.engine.messages import Bar, BookDelta, BookSnapshot, Trade
from tradebus.errors import DataError
from tradebus.reports.metrics import format_ns

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "data"
SAMPLE_CATALOG = REPO / "data" / "catalog"
SEC_NS = 1_000_000_000
MIN_NS = 60 * SEC_NS
HOUR_NS = 60 * MIN_NS
T0_NS = 1_704_067_200_000_000_000  # 2024-01-01 00:00 UTC


def trades_table(ts: list[int] | np.ndarray, tag: str) -> pa.Table:
    ts = np.asarray(ts, dtype=np.int64)
    n = ts.size
    return pa.table(
        {
            "ts_event": ts,
            "ts_init": ts,
            "price": 100.0 + np.arange(n, dtype=np.float64),
            "size": np.full(n, 1.0),
            "aggressor": pa.array(np.ones(n, dtype=np.int8)),
            "trade_id": [f"{tag}-{i}" for i in range(n)],
        }
    )


def bars_table(n: int, start_ns: int = T0_NS, step_ns: int = MIN_NS) -> pa.Table:
    ts = start_ns + step_ns * np.arange(1, n + 1, dtype=np.int64)
    base = 100.0 + (np.arange(n, dtype=np.float64) % 50)
    return pa.table(
        {
            "ts_event": ts,
            "ts_init": ts,
            "open": base,
            "high": base + 2.0,
            "low": base - 1.0,
            "close": base + 1.0,
            "volume": np.full(n, 3.0),
        }
    )


def trade_source(cat: Catalog, name: str, ts: list[int], row_group_rows: int = 2) -> ReplaySource:
    cat.write(trades_table(ts, name), "v", "spot", name, "trades", "day", row_group_rows=row_group_rows)
    return ReplaySource.from_catalog(cat, f"{name}.V", "v", "spot", name, "trades")


def expected_order(streams: list[list[int]]) -> list[tuple[int, int, int]]:
    """(ts_init, source, row) of every row, sorted: the replay contract."""
    return sorted((ts, s, r) for s, stream in enumerate(streams) for r, ts in enumerate(stream))


def merged_keys_from_batches(replay: Replay) -> list[tuple[int, int, int]]:
    keys = []
    for batch in replay.batches():
        rows = [int(t.split("-")[1]) for t in batch.trade_id]  # type: ignore[union-attr]
        keys.extend(zip(batch.ts_init.tolist(), [batch.source] * len(batch), rows, strict=True))
    return keys


THREE_STREAMS = [
    [T0_NS + s * SEC_NS for s in (1, 2, 2, 5, 9)],
    [T0_NS + s * SEC_NS for s in (2, 3, 5, 5, 10)],
    [T0_NS + s * SEC_NS for s in (0, 2, 5, 11)],
]


@pytest.mark.parametrize("batch_rows", [1, 2, 3, 65_536])
def test_merge_of_three_sources_orders_by_ts_then_source_then_row(tmp_path: Path, batch_rows: int) -> None:
    cat = Catalog(tmp_path)
    sources = [trade_source(cat, f"S{i}", ts) for i, ts in enumerate(THREE_STREAMS)]
    replay = Replay(sources, batch_rows=batch_rows)
    assert merged_keys_from_batches(replay) == expected_order(THREE_STREAMS)
    messages = list(replay)
    assert [(m.ts_init, m.instrument_id, m.trade_id) for m in messages] == [
        (ts, f"S{s}.V", f"S{s}-{r}") for ts, s, r in expected_order(THREE_STREAMS)
    ]


def test_batches_order_equals_iter_order_for_bars_and_trades(tmp_path: Path) -> None:
    cat = Catalog(tmp_path)
    cat.write(bars_table(50, step_ns=SEC_NS), "v", "spot", "B", "bars_1s", "day", row_group_rows=7)
    sources = [
        ReplaySource.from_catalog(cat, "B.V", "v", "spot", "B", "bars_1s"),
        trade_source(cat, "T", [T0_NS + k * SEC_NS // 2 for k in range(0, 120)], row_group_rows=11),
    ]
    replay = Replay(sources, batch_rows=5)
    from_batches: list[tuple[str, int, int]] = []
    for batch in replay.batches():
        assert isinstance(batch, ReplayBatch)
        assert len(batch.ts_event) == len(batch.ts_init) == len(batch)
        from_batches.extend((batch.instrument_id, t, batch.source) for t in batch.ts_init.tolist())
    messages = list(replay)
    from_iter = [(m.instrument_id, m.ts_init, 0 if isinstance(m, Bar) else 1) for m in messages]
    assert from_iter == from_batches
    assert len(messages) == 170
    assert all(a[1] <= b[1] for a, b in zip(from_iter, from_iter[1:], strict=False))


@settings(max_examples=25, deadline=None)
@given(
    streams=st.lists(
        st.lists(st.integers(min_value=0, max_value=20), min_size=1, max_size=15).map(sorted), min_size=1, max_size=4
    ),
    batch_rows=st.integers(min_value=1, max_value=6),
    row_group_rows=st.integers(min_value=1, max_value=6),
    window=st.tuples(st.integers(min_value=0, max_value=20), st.integers(min_value=0, max_value=20)).map(sorted),
)
def test_merge_matches_sorted_order_for_random_streams(
    streams: list[list[int]], batch_rows: int, row_group_rows: int, window: list[int]
) -> None:
    streams = [[T0_NS + x * SEC_NS for x in s] for s in streams]
    start, end = T0_NS + window[0] * SEC_NS, T0_NS + window[1] * SEC_NS
    with tempfile.TemporaryDirectory() as root:
        cat = Catalog(root)
        sources = [trade_source(cat, f"S{i}", ts, row_group_rows=row_group_rows) for i, ts in enumerate(streams)]
        replay = Replay(sources, start_ns=start, end_ns=end, batch_rows=batch_rows)
        got = merged_keys_from_batches(replay)
        from_iter = [(m.ts_init, int(m.instrument_id[1:-2]), int(m.trade_id.split("-")[1])) for m in replay]
    expected = [k for k in expected_order(streams) if start <= k[0] <= end]
    assert got == expected
    assert from_iter == expected


def test_single_source_runs_are_the_row_groups(tmp_path: Path) -> None:
    cat = Catalog(tmp_path)
    cat.write(bars_table(1000), "v", "spot", "B", "bars_1m", "year", row_group_rows=100)
    replay = Replay([ReplaySource.from_catalog(cat, "B.V", "v", "spot", "B", "bars_1m")])
    assert [len(b) for b in replay.batches()] == [100] * 10


def test_time_range_is_inclusive_and_prunes_partitions(tmp_path: Path) -> None:
    cat = Catalog(tmp_path)
    manifest = cat.write(bars_table(3 * 24 * 60), "v", "spot", "B", "bars_1m", "day", row_group_rows=60)
    assert len(manifest.files) == 4  # the last bar closes at 00:00 of day 4
    source = ReplaySource.from_catalog(cat, "B.V", "v", "spot", "B", "bars_1m")
    day2 = manifest.files[1]
    start, end = day2.start_ns + 10 * MIN_NS, day2.start_ns + 20 * MIN_NS
    bars = list(Replay([source], start_ns=start, end_ns=end))
    assert [b.ts_init for b in bars] == list(range(start, end + 1, MIN_NS))
    # files outside the range are not even opened: delete them and replay again
    base = cat.dataset_dir("v", "spot", "B", "bars_1m")
    for entry in (manifest.files[0], manifest.files[2], manifest.files[3]):
        (base / entry.path).unlink()
    assert len(list(Replay([source], start_ns=start, end_ns=end))) == 11
    with pytest.raises(DataError, match="file listed in the manifest is missing"):
        list(Replay([source]))


def test_file_source_goes_through_ingest_validation() -> None:
    good = ReplaySource.from_file(FIXTURES / "bars_valid.csv", "X.V", "bars")
    bars = list(Replay([good]))
    assert len(bars) == 20 and bars[0].ts_event == T0_NS + HOUR_NS
    bad = ReplaySource.from_file(FIXTURES / "bars_high_below_low.csv", "X.V", "bars")
    with pytest.raises(DataError, match="bars_high_below_low.csv row 17: high 99.0 < low 100.0"):
        list(Replay([bad]))
    with pytest.raises(DataError, match="trades_zero_size.csv row 5: size 0.0"):
        Replay([ReplaySource.from_file(FIXTURES / "trades_zero_size.csv", "X.V", "trades")]).validate()


def test_validate_names_parquet_file_and_row_of_a_bad_catalog_value(tmp_path: Path) -> None:
    cat = Catalog(tmp_path)
    table = bars_table(300).to_pydict()
    table["high"][250] = table["low"][250] - 1.0  # Catalog.write stores values as given
    manifest = cat.write(pa.table(table), "v", "spot", "B", "bars_1m", "year", row_group_rows=64)
    source = ReplaySource.from_catalog(cat, "B.V", "v", "spot", "B", "bars_1m")
    assert len(list(Replay([source]))) == 300  # streaming alone does not check values
    with pytest.raises(DataError, match=rf"{manifest.files[0].path} row 251: high 98.0 < low 99.0"):
        Replay([source], batch_rows=50).validate()


def shared_time_bars(tmp_path: Path, ts: np.ndarray, ts_init: np.ndarray | None = None) -> tuple[Catalog, Path]:
    """Bars written as ``data bars`` writes threshold bars (several may close at one time)."""
    cat = Catalog(tmp_path)
    table = bars_table(ts.size).set_column(0, "ts_event", pa.array(ts)).set_column(
        1, "ts_init", pa.array(ts if ts_init is None else ts_init))
    with cat.writer("v", "spot", "B", "bars_volume_1", kind="bars", distinct_times=False) as writer:
        writer.write(table)
        manifest = writer.commit()
    assert manifest.shared_times
    return cat, cat.dataset_dir("v", "spot", "B", "bars_volume_1") / "manifest.json"


def test_bars_that_may_share_a_time_replay_in_file_order_and_time_bars_still_refuse_it(tmp_path: Path) -> None:
    ts = T0_NS + SEC_NS * np.repeat(np.arange(1, 101, dtype=np.int64), 3)  # three bars closed at each time
    cat, manifest_path = shared_time_bars(tmp_path / "a", ts)
    source = ReplaySource.from_catalog(cat, "B.V", "v", "spot", "B", "bars_volume_1")
    assert Replay([source], batch_rows=7).validate() == 300  # chunk edges fall inside runs of one time
    bars = list(Replay([source], batch_rows=7))
    assert [b.ts_event for b in bars] == ts.tolist() and [b.close for b in bars] == bars_table(300)["close"].to_pylist()
    # The same rows under a manifest without the field (written before it) are refused, as time bars.
    text = manifest_path.read_text()
    manifest_path.write_text(text.replace(',\n  "shared_times": true', ""))
    assert "shared_times" in text and "shared_times" not in manifest_path.read_text()
    assert not cat.manifest("v", "spot", "B", "bars_volume_1").shared_times
    with pytest.raises(DataError, match=r"row 2: duplicate ts_event .* \(same as row 1\)"):
        Replay([source], batch_rows=7).validate()
    # A bar time going back is refused whatever the dataset says.
    back = ts.copy()
    back[150] = back[149] - 1
    cat, _ = shared_time_bars(tmp_path / "b", back, ts)
    source = ReplaySource.from_catalog(cat, "B.V", "v", "spot", "B", "bars_volume_1")
    with pytest.raises(DataError, match=r"row 151: ts_event .* is before the previous row's"):
        Replay([source], batch_rows=7).validate()


def test_a_replays_batches_say_it_checked_their_times_unless_it_was_given_the_chunks_read(tmp_path: Path) -> None:
    """The backtest loop checks again only the rows of a batch that is not ``ordered``."""
    cat = Catalog(tmp_path / "trades")
    trades = [trade_source(cat, f"S{i}", stream) for i, stream in enumerate(THREE_STREAMS)]
    batches = list(Replay(trades, batch_rows=3).batches())
    assert len(batches) > 6 and all(batch.ordered for batch in batches)  # whole chunks and cut runs
    read = Replay(trades, batch_rows=3).read_memory()
    assert all(src.chunks for src in read)  # checked when read, as a replay reads them: not again
    assert not any(batch.ordered for batch in Replay(read, batch_rows=3).batches())
    unchunked = [dataclasses.replace(src, chunks=None) for src in read]
    assert all(batch.ordered for batch in Replay(unchunked, batch_rows=3).batches())
    cat = Catalog(tmp_path / "bars")
    for name in ("A", "B"):
        cat.write(bars_table(50), "v", "spot", name, "bars_1m", "day", row_group_rows=7)
    bars = [ReplaySource.from_catalog(cat, f"{name}.V", "v", "spot", name, "bars_1m") for name in ("A", "B")]
    mixed = list(Replay(bars, batch_rows=8).mixed_batches())
    assert any(type(batch).__name__ == "MixedBatch" for batch in mixed) and all(batch.ordered for batch in mixed)
    unchunked = [dataclasses.replace(src, chunks=None) for src in Replay(bars, batch_rows=8).read_memory()]
    assert all(batch.ordered for batch in Replay(unchunked, batch_rows=8).mixed_batches())
    read = Replay(bars, batch_rows=8).read_memory()  # a step of one source's rows is a batch of its chunk
    assert not all(batch.ordered for batch in Replay(read, batch_rows=8).mixed_batches())


def test_unsorted_catalog_file_is_reported_with_file_and_row(tmp_path: Path) -> None:
    cat = Catalog(tmp_path)
    manifest = cat.write(bars_table(40), "v", "spot", "B", "bars_1m", "year", row_group_rows=10)
    path = cat.dataset_dir("v", "spot", "B", "bars_1m") / manifest.files[0].path
    order = np.arange(40)
    order[[24, 25]] = [25, 24]
    pq.write_table(bars_table(40).take(pa.array(order)), path, row_group_size=10)
    keep_sizes(path.parents[1])
    source = ReplaySource.from_catalog(cat, "B.V", "v", "spot", "B", "bars_1m")
    with pytest.raises(DataError, match=r"part-00000.parquet row 26: ts_init .* < previous .*not sorted"):
        list(Replay([source], batch_rows=100))
    with pytest.raises(DataError, match="sha256"):
        list(Replay([source], verify=True))


def test_a_file_whose_times_decode_outside_its_statistics_is_reported_as_damaged(tmp_path: Path) -> None:
    """A damaged data page that still decodes: the times leave the range the writer recorded."""
    cat = Catalog(tmp_path)
    manifest = cat.write(bars_table(40), "v", "spot", "B", "bars_1m", "year", row_group_rows=10)
    path = cat.dataset_dir("v", "spot", "B", "bars_1m") / manifest.files[0].path
    table = bars_table(40)
    # Plain, uncompressed pages: the 14th bar's ts_event is its own eight bytes in the file.
    pq.write_table(table, path, row_group_size=10, compression="none", use_dictionary=False,
                   column_encoding="PLAIN", write_statistics=True)
    data = path.read_bytes()
    value = int(table.column("ts_event")[13].as_py())
    assert data.count(value.to_bytes(8, "little")) == 2  # ts_event and ts_init, in that order
    at = data.index(value.to_bytes(8, "little"))
    path.write_bytes(data[:at] + (value + 10**18).to_bytes(8, "little") + data[at + 8:])
    assert pq.read_table(path).column("ts_event")[13].as_py() == value + 10**18  # it decodes
    keep_sizes(path.parents[1])
    source = ReplaySource.from_catalog(cat, "B.V", "v", "spot", "B", "bars_1m")
    with pytest.raises(DataError, match=rf"part-00000.parquet row 14: ts_event {value + 10**18} lies outside "
                                        r"\[\d+, \d+\], the range the file's statistics record.*damaged"):
        list(Replay([source]))


def test_a_catalog_file_parquet_cannot_decode_is_a_data_error_naming_it(tmp_path: Path) -> None:
    """The shipped 2025 bars with one byte changed: pyarrow cannot decode the row group."""
    shutil.copytree(SAMPLE_CATALOG / "coinbase", tmp_path / "coinbase")
    path = tmp_path / "coinbase" / "spot" / "BTC-USD" / "bars_4h" / "date=2025-01-01" / "part-00000.parquet"
    data = bytearray(path.read_bytes())
    data[100] = ord("X")
    path.write_bytes(bytes(data))
    with pytest.raises(OSError):
        pq.read_table(path)  # the damage this test is about
    source = ReplaySource.from_catalog(tmp_path, "BTC-USD.COINBASE", "coinbase", "spot", "BTC-USD", "bars_4h")
    with pytest.raises(DataError, match=r"date=2025-01-01/part-00000.parquet: row group 0 cannot be decoded .*damaged"):
        list(Replay([source]))


def test_replay_rejects_bad_arguments(tmp_path: Path) -> None:
    source = ReplaySource.from_file(FIXTURES / "bars_valid.csv", "X.V", "bars")
    with pytest.raises(DataError, match="at least one source"):
        Replay([])
    with pytest.raises(DataError, match="end_ns .* is before start_ns"):
        Replay([source], start_ns=2, end_ns=1)
    with pytest.raises(DataError, match="batch_rows"):
        Replay([source], batch_rows=0)
    with pytest.raises(DataError, match="dataset not found"):
        ReplaySource.from_catalog(tmp_path, "X.V", "v", "spot", "X", "bars_1m")
    with pytest.raises(DataError, match="unknown data kind"):
        ReplaySource.from_file(FIXTURES / "bars_valid.csv", "X.V", "quotes")  # type: ignore[arg-type]


def _peak_replay_bytes(source: ReplaySource) -> tuple[int, int, int]:
    """Return (Python/numpy peak bytes via tracemalloc, Arrow pool peak sampled per batch, rows).

    The Arrow figure is the pool's growth over what it held before (buffers of earlier tests in the
    same worker may still be alive, or be freed meanwhile: the pool's total is not this replay's).
    """
    gc.collect()
    before = pa.total_allocated_bytes()
    tracemalloc.start()
    try:
        rows = 0
        arrow_peak = 0
        for batch in Replay([source], batch_rows=1000).batches():
            rows += len(batch)
            arrow_peak = max(arrow_peak, pa.total_allocated_bytes() - before)
        for _ in Replay([source], batch_rows=1000):
            rows += 1
        return tracemalloc.get_traced_memory()[1], arrow_peak, rows
    finally:
        tracemalloc.stop()


def test_replay_peak_memory_is_flat_in_history_length(tmp_path: Path) -> None:
    cat = Catalog(tmp_path)
    short, long = 20_000, 200_000
    cat.write(bars_table(short), "v", "spot", "S", "bars_1m", "month", row_group_rows=1000)
    cat.write(bars_table(long), "v", "spot", "L", "bars_1m", "month", row_group_rows=1000)
    s_src = ReplaySource.from_catalog(cat, "S.V", "v", "spot", "S", "bars_1m")
    l_src = ReplaySource.from_catalog(cat, "L.V", "v", "spot", "L", "bars_1m")
    _peak_replay_bytes(s_src)  # warm-up: first-use allocations are not history
    short_peak, short_arrow, short_rows = _peak_replay_bytes(s_src)
    long_peak, long_arrow, long_rows = _peak_replay_bytes(l_src)
    assert (short_rows, long_rows) == (2 * short, 2 * long)
    # the history is 10x longer; a replay holding it would need ~10x (one bar row = 56 bytes, plus a Bar object)
    assert long_peak < 2 * short_peak, (short_peak, long_peak)
    assert long_peak < long * 56 / 4
    # Arrow buffers (not seen by tracemalloc) stay bounded too: far below the history's 11 MB. (Not a
    # multiple of the short run's: at the long history's file boundaries a few more row groups are
    # alive, 60 kB against 130-175 kB depending on what the worker ran before.)
    assert long_arrow < long * 56 / 20, (short_arrow, long_arrow)


# --------------------------------------------------------------------------- shipped sample catalog


def test_sample_catalog_replays_20695_coinbase_4h_bars_stamped_at_close() -> None:
    assert Catalog(SAMPLE_CATALOG).verify("coinbase", "spot", "BTC-USD", "bars_4h").rows == 20_695
    source = ReplaySource.from_catalog(SAMPLE_CATALOG, "BTC-USD.COINBASE", "coinbase", "spot", "BTC-USD", "bars_4h")
    replay = Replay([source])
    bars = list(replay)
    assert len(bars) == 20_695
    first, last = bars[0], bars[-1]
    four_h = 4 * HOUR_NS
    # first candle: start 1463544000 (2016-05-18 04:00 UTC), o/h/l/c 456.16/456.81/455.3/456.02
    assert first == Bar("BTC-USD.COINBASE", 1_463_544_000 * SEC_NS + four_h, 1_463_544_000 * SEC_NS + four_h,
                        456.16, 456.81, 455.3, 456.02, 561.88098307)
    # last candle: start 1761609600 (2025-10-28 00:00 UTC) closes 04:00
    assert last.ts_event == 1_761_609_600 * SEC_NS + four_h
    assert (last.open, last.close) == (114087.06, 113912.05)
    steps = np.diff([b.ts_event for b in bars])
    assert steps.min() == four_h
    assert int(np.count_nonzero(steps > four_h)) == 3
    assert replay.validate() == 20_695


def test_sample_catalog_manifest_documents_gaps() -> None:
    manifest = Catalog(SAMPLE_CATALOG).manifest("coinbase", "spot", "BTC-USD", "bars_4h")
    assert (manifest.period, manifest.interval_ns, manifest.gaps, manifest.missing_bars) == ("year", 4 * HOUR_NS, 3, 5)
    assert [f.path.split("/")[0] for f in manifest.files] == [f"date={y}-01-01" for y in range(2016, 2026)]
    assert sum(f.stat().st_size for f in (SAMPLE_CATALOG / "coinbase").rglob("*.parquet")) < 600_000
    assert sum(f.stat().st_size for f in SAMPLE_CATALOG.rglob("*.parquet")) < 1_000_000


def test_messages_of_trade_batch_are_trades(tmp_path: Path) -> None:
    cat = Catalog(tmp_path)
    source = trade_source(cat, "T", [T0_NS, T0_NS + 1])
    (trade_a, trade_b) = list(Replay([source]))
    assert trade_a == Trade("T.V", T0_NS, T0_NS, 100.0, 1.0, 1, "T-0")
    assert isinstance(trade_b, Trade)


# ----------------------------------------------------------------------------- a book window starting late


def _book_key(msg: Any) -> tuple[Any, ...]:
    return type(msg).__name__, msg.ts_event, msg.ts_init, msg.last_seq, msg.bids.tolist(), msg.asks.tolist()


def _reference_book(rows: pa.Table, before_ns: int) -> tuple[dict[float, float], dict[float, float]]:
    """The book the stored rows with ``ts_init < before_ns`` leave, applied one by one to two dicts."""
    bids: dict[float, float] = {}
    asks: dict[float, float] = {}
    prev = None
    columns = ("ts_init", "sequence", "side", "price", "size", "flags")
    for ts, seq, side, price, size, flags in zip(*(rows.column(c).to_pylist() for c in columns), strict=True):
        if ts >= before_ns:
            break
        snapshot = bool(flags & BOOK_SNAPSHOT)
        if snapshot and prev != (ts, seq, snapshot):
            bids, asks = {}, {}
        prev = (ts, seq, snapshot)
        book = bids if side > 0 else asks
        if size > 0.0:
            book[price] = size
        else:
            book.pop(price, None)
    return bids, asks


@pytest.fixture(scope="module")
def usdm_late(tmp_path_factory: pytest.TempPathFactory) -> tuple[Catalog, pa.Table, int]:
    """The USD-M capture's book and trades, with a second snapshot holding every other level of the
    book at a diff's time (so the book at a later start comes from it), in row groups of 1,000 rows."""
    from tests.data.test_data_market_ingest import _usdm_config
    from tests.live.node_testdata import USDM_CAPTURE
    from tradebus.node.recording_import import import_recording

    root = tmp_path_factory.mktemp("usdm_late")
    import_recording(USDM_CAPTURE, _usdm_config(), root / "imported")
    imported = Catalog(root / "imported")
    rows = imported.read("binance_usdm", "usdm", "BTCUSDT", "book")
    ts = np.asarray(rows.column("ts_init"))
    at = int(np.searchsorted(ts, ts[0] + 15 * SEC_NS))  # the first row of a diff 15 s in
    end = at + int(np.count_nonzero(ts == ts[at]))
    bids, asks = _reference_book(rows, int(ts[at]) + 1)
    levels = [(1, p, s) for p, s in sorted(bids.items(), reverse=True)[::2]]
    levels += [(-1, p, s) for p, s in sorted(asks.items())[::2]]
    n = len(levels)
    second = pa.table({
        "ts_event": np.full(n, rows.column("ts_event")[end - 1].as_py(), dtype=np.int64),
        "ts_init": np.full(n, ts[at], dtype=np.int64),
        "sequence": np.full(n, rows.column("sequence")[end - 1].as_py() + 1, dtype=np.int64),
        "side": pa.array([lv[0] for lv in levels], pa.int8()),
        "price": [lv[1] for lv in levels],
        "size": [lv[2] for lv in levels],
        "flags": pa.array(np.full(n, BOOK_SNAPSHOT, dtype=np.int8)),
    }).cast(rows.schema)
    rows = pa.concat_tables([rows.slice(0, end), second, rows.slice(end)])
    cat = Catalog(root / "cat")
    cat.write(rows, "binance_usdm", "usdm", "BTCUSDT", "book", kind="book", row_group_rows=1000)
    trades = imported.read("binance_usdm", "usdm", "BTCUSDT", "trades")
    cat.write(trades, "binance_usdm", "usdm", "BTCUSDT", "trades", kind="trades")
    return cat, rows, int(ts[at])


def _usdm_sources(cat: Catalog) -> list[ReplaySource]:
    iid = "BTCUSDT.BINANCE_USDM"
    return [ReplaySource.from_catalog(cat, iid, "binance_usdm", "usdm", "BTCUSDT", k) for k in ("book", "trades")]


@pytest.mark.parametrize("batch_rows", [700, 65_536])
def test_a_book_window_starting_between_snapshots_starts_from_the_book_at_its_start(
    usdm_late: tuple[Catalog, pa.Table, int], batch_rows: int
) -> None:
    """It replayed the diffs after the start onto an EMPTY book: 20 s into the capture the book rebuilt
    2 s later had 181 of 1,344 bid levels, and a fill_on: book run matched orders against that book."""
    cat, rows, second_ns = usdm_late
    sources = _usdm_sources(cat)
    full = list(Replay(sources, batch_rows=batch_rows))
    ts = np.asarray(rows.column("ts_init"))
    first_ns = int(ts[0])
    for start in (first_ns + 1, first_ns + 7 * SEC_NS, int(ts[5000]), second_ns - 1, second_ns + 1,
                  first_ns + 20 * SEC_NS, int(ts[-1])):
        replay = Replay(sources, start_ns=start, batch_rows=batch_rows)
        messages = list(replay)
        assert [_book_key(m) if hasattr(m, "bids") else m for m in messages] == [
            _book_key(m) if hasattr(m, "bids") else m for b in replay.batches() for m in b.messages()
        ]
        assert all(m.ts_init >= start for m in messages)  # nothing before the start
        book = [m for m in messages if isinstance(m, BookSnapshot | BookDelta)]
        first = book[0]
        assert type(first) is BookSnapshot and first.ts_init == start
        bids, asks = _reference_book(rows, start)
        assert len(bids) > 100
        assert dict(first.bids.tolist()) == bids and dict(first.asks.tolist()) == asks
        # ... and then exactly the messages the whole replay has from the start on
        after = [_book_key(m) for m in full if isinstance(m, BookSnapshot | BookDelta) and m.ts_init >= start]
        assert [_book_key(m) for m in book[1:]] == after
        trades = [m for m in full if isinstance(m, Trade) and m.ts_init >= start]
        assert [m for m in messages if isinstance(m, Trade)] == trades
    for start in (None, 0, first_ns, second_ns):  # from the first row or a snapshot's time: the rows as they are
        messages = list(Replay(sources, start_ns=start, batch_rows=batch_rows))
        assert [_book_key(m) if hasattr(m, "bids") else m for m in messages] == [
            _book_key(m) if hasattr(m, "bids") else m for m in full if m.ts_init >= (start or 0)
        ]


def test_a_book_window_starting_where_no_snapshot_precedes_it_is_refused(
    tmp_path: Path, usdm_late: tuple[Catalog, pa.Table, int]
) -> None:
    """Diffs before the start and no snapshot to rebuild the book from: it replayed onto an empty book."""
    _, rows, second_ns = usdm_late
    ts = np.asarray(rows.column("ts_init"))
    flags = np.asarray(rows.column("flags")).copy()
    flags[ts < second_ns] = 0  # the first snapshot is now the one at second_ns
    cat = Catalog(tmp_path / "cat")
    table = rows.set_column(rows.schema.get_field_index("flags"), "flags", pa.array(flags))
    cat.write(table, "binance_usdm", "usdm", "BTCUSDT", "book", kind="book", row_group_rows=1000)
    source = ReplaySource.from_catalog(cat, "BTCUSDT.BINANCE_USDM", "binance_usdm", "usdm", "BTCUSDT", "book")
    start = int(ts[0]) + 5 * SEC_NS
    with pytest.raises(DataError) as err:
        list(Replay([source], start_ns=start))
    assert str(err.value) == (
        f"{source.describe()}: the BTCUSDT.BINANCE_USDM book cannot be rebuilt at the start {format_ns(start)}: "
        f"no snapshot at or before it (the dataset's rows begin at {format_ns(int(ts[0]))}; the window's deltas "
        f"would update an empty book); its first snapshot is at {format_ns(second_ns)}; set data.start at or after it"
    )
    assert type(next(iter(Replay([source], start_ns=second_ns)))) is BookDelta  # the diff before it at that time
    assert len(list(Replay([source], start_ns=second_ns + 1))) > 0
    flags[:] = 0
    table = rows.set_column(rows.schema.get_field_index("flags"), "flags", pa.array(flags))
    cat.write(table, "binance_usdm", "usdm", "BTCUSDT", "book", kind="book", mode="overwrite")
    with pytest.raises(DataError, match="no snapshot at or before it .*; it holds no snapshot$"):
        list(Replay([source], start_ns=start))


#: Overwrites the dataset x/spot/S/bars with version 0 or 1 (ten day files of 24 or 48 bars) for each line read.
_OVERWRITE_ON_ASK = r"""
import sys
from loguru import logger
from tests.data.test_data_catalog import HOUR_NS, make_bars
from tradebus.data.catalog import Catalog
logger.remove()
cat = Catalog(sys.argv[1])
versions = [make_bars(24 * 10), make_bars(24 * 20, step_ns=HOUR_NS // 2)]
for line in sys.stdin:
    cat.write(versions[int(line)], "x", "spot", "S", "bars", "day", mode="overwrite")
    print("done", flush=True)
"""


def _answer(process: subprocess.Popen[str], deadline_s: float = 120.0) -> str:
    """The next line ``process`` prints, or the failure of a process that did not print one within the deadline."""
    ready, _, _ = select.select([process.stdout], [], [], deadline_s)
    assert ready, f"no answer in {deadline_s:g} s: the overwrite waited for the replay"
    assert process.stdout is not None
    return process.stdout.readline().strip()


def test_a_replay_overwritten_in_another_process_while_it_reads_goes_on_with_the_version_it_began_with(
    tmp_path: Path,
) -> None:
    """A replay opened each file of its dataset when it came to it, after the catalog's read lock was released: an
    ``--overwrite`` in another process meanwhile put the next version's files at those paths, and the replay failed
    ('... 48 rows, the manifest says 24') in every one of 40 rounds, each overwrite made after the replay's first
    day. The files are now opened when the replay starts, under the lock: all 40 replays read the whole version they
    began with, and each overwrite went through while a replay was reading (it does not wait for one)."""
    from tests.data.test_data_catalog import make_bars

    versions = [make_bars(24 * 10), make_bars(24 * 20, step_ns=HOUR_NS // 2)]  # day files of 24 and of 48 bars
    cat = Catalog(tmp_path)
    cat.write(versions[0], "x", "spot", "S", "bars", "day")
    src = ReplaySource.from_catalog(cat, "S.X", "x", "spot", "S", "bars")
    writer = subprocess.Popen([sys.executable, "-c", _OVERWRITE_ON_ASK, str(tmp_path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    rounds, whole, failed = 40, 0, []
    try:
        assert writer.stdin is not None
        for n in range(rounds):
            began = versions[n % 2]
            batches = Replay([src], batch_rows=24, prefetch=False).batches()
            first = next(batches)  # the first day's bars: the other nine days not read yet
            writer.stdin.write(f"{(n + 1) % 2}\n")
            writer.stdin.flush()
            assert _answer(writer) == "done"
            try:
                rest = list(batches)
            except DataError as exc:
                failed.append(str(exc))
                continue
            read = [np.concatenate([b.ts_init for b in (first, *rest)]),
                    np.concatenate([b.columns["close"] for b in (first, *rest)])]
            whole += all(np.array_equal(a, began.column(c).to_numpy()) for a, c in zip(read, ("ts_init", "close")))
    finally:
        with writer:  # closes its pipes and waits for it
            pass
    assert writer.returncode == 0
    assert (whole, failed[:2]) == (rounds, [])
    assert cat.read("x", "spot", "S", "bars").equals(versions[rounds % 2])


#: Replays two catalog datasets of 300 day files each (written by the test) with the soft ``ulimit -n`` at 600.
_REPLAY_TWO_UNDER_A_LOW_SOFT_LIMIT = r"""
import resource, sys
from loguru import logger
from tradebus.data import catalog
from tradebus.data.replay import Replay, ReplaySource
logger.remove()
cat = catalog.Catalog(sys.argv[1])
resource.setrlimit(resource.RLIMIT_NOFILE, (600, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
sources = [ReplaySource.from_catalog(cat, f"{s}.X", "x", "spot", s, "bars") for s in ("A", "B")]
rows = sum(len(b.ts_init) for b in Replay(sources, prefetch=False).batches())
print(rows, catalog._Pinned.count)
"""


def test_a_replay_of_two_datasets_whose_files_together_pass_the_soft_open_file_limit_raises_it(tmp_path: Path) -> None:
    """A replay holds every file of each of its catalog sources open (a write cannot change them under it); each
    source made room for its own files only, so two of 301 files each under a soft ``ulimit -n`` of 600 (the
    hard one higher) each fit, together did not, and the replay failed ('part-00000.parquet: cannot open it
    (EMFILE ...)') where it read both before the files were held open. Each read now counts the files the others
    hold: the soft limit is raised, all 14,400 bars are read, and no file is left open after."""
    import resource

    from tests.data.test_data_catalog import make_bars

    if resource.getrlimit(resource.RLIMIT_NOFILE)[1] < 2000:
        pytest.skip("the hard limit of open files leaves no room to raise the soft one above 600")
    cat = Catalog(tmp_path)
    for symbol in ("A", "B"):
        cat.write(make_bars(24 * 300), "x", "spot", symbol, "bars", "day")
    assert len(list((tmp_path / "x" / "spot" / "A" / "bars").glob("date=*"))) == 301
    done = subprocess.run([sys.executable, "-c", _REPLAY_TWO_UNDER_A_LOW_SOFT_LIMIT, str(tmp_path)], capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["14400", "0"]


def test_a_book_replay_racing_overwrites_rebuilds_its_book_at_the_start_from_the_version_it_replays(
    tmp_path: Path,
) -> None:
    """A book replay starting inside the data opened the window's files, then listed the dataset again for the rows
    before its start that rebuild the book there, and read them after the lock: an ``--overwrite`` in another
    process meanwhile made it start the window of one version from the book of the other (33 of 751 and 24 of 965
    replays racing 100 overwrites of ten day files, in two runs), or could fail on a file gone or of another size.
    One opening of the dataset now serves both: every replay is that of one version."""
    from tests.data.test_data_catalog import T0_NS, race_overwrites, raced_versions

    start = T0_NS + 5 * 24 * HOUR_NS + 7 * HOUR_NS + 1  # day 6, after its snapshot and a few updates

    def replayed(symbol: str) -> list[np.ndarray]:
        src = ReplaySource.from_catalog(Catalog(tmp_path), "S.X", "x", "spot", symbol, "book")
        batches = list(Replay([src], start_ns=start, batch_rows=64, prefetch=False).batches())
        return [np.concatenate([b.ts_init for b in batches]), *(np.concatenate([b.columns[c] for b in batches])
                                                                for c in ("price", "size", "flags"))]

    versions = []
    for n, (table, _) in enumerate(raced_versions("book")):
        Catalog(tmp_path).write(table, "x", "spot", f"V{n}", "book", "day")
        versions.append(replayed(f"V{n}"))
    # the book at the start (bids 99, 98, 97, ask 101): the last update of each level before 07:00 (hand-derived)
    assert [v[2][:4].tolist() for v in versions] == [[6.0, 7.0, 5.0, 1.0], [24.0, 26.0, 28.0, 2.0]]

    def which() -> int | str:
        got = replayed("S")
        return next((n for n, v in enumerate(versions) if all(np.array_equal(a, b) for a, b in zip(got, v, strict=True))),
                    f"neither version's: {len(got[0])} rows, book at the start {got[2][:2].tolist()}")

    outcomes = race_overwrites(tmp_path, which, "book")
    bad = [o for o in outcomes if not isinstance(o, int)]
    assert bad == [], f"{len(bad)} of {len(outcomes)} replays: {bad[:3]}"
    assert sorted(set(outcomes)) == [0, 1], len(outcomes)  # both versions were read
