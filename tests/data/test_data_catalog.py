"""Catalog: layout, manifest, determinism, verification, atomic writes and appends."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tradebus.data import catalog as catalog_module
from tradebus.data.catalog import BOOK_SNAPSHOT, SCHEMA_VERSION, Catalog, DatasetRef
from tradebus.data.ingest import import_file
from tradebus.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parents[2]

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "data"
HOUR_NS = 3_600_000_000_000
DAY_NS = 24 * HOUR_NS
T0_NS = 1_704_067_200_000_000_000  # 2024-01-01 00:00 UTC
T = TypeVar("T")


def make_bars(n: int, start_ns: int = T0_NS, step_ns: int = HOUR_NS) -> pa.Table:
    """Bars with close times start_ns + step, + 2 step, ... and simple increasing prices."""
    ts = start_ns + step_ns * np.arange(1, n + 1, dtype=np.int64)
    base = 100.0 + np.arange(n, dtype=np.float64)
    return pa.table(
        {
            "ts_event": ts,
            "ts_init": ts,
            "open": base,
            "high": base + 2.0,
            "low": base - 1.0,
            "close": base + 1.0,
            "volume": np.full(n, 5.0),
        }
    )


def make_trades(n: int, start_ns: int = T0_NS, step_ns: int = 1_000_000_000) -> pa.Table:
    ts = start_ns + step_ns * np.arange(n, dtype=np.int64)
    return pa.table(
        {
            "ts_event": ts,
            "ts_init": ts,
            "price": 100.0 + np.arange(n, dtype=np.float64),
            "size": np.full(n, 0.5),
            "aggressor": pa.array(np.where(np.arange(n) % 2 == 0, 1, -1).astype(np.int8)),
            "trade_id": [str(i) for i in range(n)],
        }
    )


def make_book(days: int, per_day: int, size: float, start_ns: int = T0_NS) -> pa.Table:
    """Book rows: a two-level snapshot at the start of each day, then ``per_day - 1`` updates of the bid evenly
    spaced in the day, the k-th of size ``size * k`` (the snapshot's levels of size ``size``)."""
    rows: dict[str, list[float]] = {name: [] for name in ("ts", "sequence", "side", "price", "size", "flags")}
    for day in range(days):
        first = start_ns + day * DAY_NS
        for k in range(per_day):
            levels = [(1, 99.0, size), (-1, 101.0, size)] if k == 0 else [(1, 99.0 - k % 3, size * k)]
            for side, price, amount in levels:
                for name, value in zip(rows, (first + k * (DAY_NS // per_day), day * per_day + k, side, price, amount,
                                              BOOK_SNAPSHOT if k == 0 else 0), strict=True):
                    rows[name].append(value)
    ts = np.array(rows["ts"], dtype=np.int64)
    return pa.table({"ts_event": ts, "ts_init": ts, "sequence": np.array(rows["sequence"], dtype=np.int64),
                     "side": pa.array(rows["side"], pa.int8()), "price": rows["price"], "size": rows["size"],
                     "flags": pa.array(rows["flags"], pa.int8())})


def tree_hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_write_then_read_round_trips_bars_exactly(tmp_path: Path) -> None:
    cat = Catalog(tmp_path)
    table = make_bars(100, step_ns=DAY_NS)
    manifest = cat.write(table, "binance", "spot", "BTCUSDT", "bars_1d", "month", interval_ns=DAY_NS)
    assert manifest.rows == 100
    assert manifest.schema_version == SCHEMA_VERSION
    assert manifest.start_ns == table.column("ts_init")[0].as_py()
    assert manifest.end_ns == table.column("ts_init")[-1].as_py()
    assert manifest.kind == "bars"
    assert manifest.gaps == 0 and manifest.missing_bars == 0
    assert cat.read("binance", "spot", "BTCUSDT", "bars_1d").equals(table)


def test_write_partitions_by_period_named_after_first_day(tmp_path: Path) -> None:
    cat = Catalog(tmp_path)
    manifest = cat.write(make_bars(100, step_ns=DAY_NS), "binance", "spot", "BTCUSDT", "bars_1d", "month")
    dirs = [f.path.split("/")[0] for f in manifest.files]
    assert dirs == ["date=2024-01-01", "date=2024-02-01", "date=2024-03-01", "date=2024-04-01"]
    assert [f.rows for f in manifest.files] == [30, 29, 31, 10]  # closes Jan 2..31, Feb, Mar, Apr 1..10
    base = tmp_path / "binance" / "spot" / "BTCUSDT" / "bars_1d"
    assert (base / "manifest.json").is_file()
    for entry in manifest.files:
        assert (base / entry.path).is_file()
        assert pq.ParquetFile(base / entry.path).metadata.num_rows == entry.rows


def test_write_trades_round_trip_with_day_partitions(tmp_path: Path) -> None:
    cat = Catalog(tmp_path)
    table = make_trades(10, step_ns=HOUR_NS * 6)
    manifest = cat.write(table, "binance", "spot", "BTCUSDT", "trades", "day")
    assert manifest.kind == "trades" and manifest.gaps is None
    assert [f.rows for f in manifest.files] == [4, 4, 2]
    assert cat.read("binance", "spot", "BTCUSDT", "trades").equals(table)


def test_write_twice_gives_byte_identical_files(tmp_path: Path) -> None:
    table = make_bars(5000, step_ns=HOUR_NS)
    Catalog(tmp_path / "a").write(table, "x", "spot", "S", "bars_1h", "month", interval_ns=HOUR_NS, row_group_rows=1000)
    Catalog(tmp_path / "b").write(table, "x", "spot", "S", "bars_1h", "month", interval_ns=HOUR_NS, row_group_rows=1000)
    a, b = tree_hashes(tmp_path / "a"), tree_hashes(tmp_path / "b")
    assert len(a) == 8  # 7 monthly files + manifest
    assert a == b


def test_write_drops_schema_metadata_for_determinism(tmp_path: Path) -> None:
    table = make_bars(10)
    noisy = table.replace_schema_metadata({"created": "2026-01-01T12:00:00"})
    Catalog(tmp_path / "a").write(table, "x", "spot", "S", "bars_1h", "year")
    Catalog(tmp_path / "b").write(noisy, "x", "spot", "S", "bars_1h", "year")
    assert tree_hashes(tmp_path / "a") == tree_hashes(tmp_path / "b")


def test_manifest_records_sha256_of_every_file(tmp_path: Path) -> None:
    cat = Catalog(tmp_path)
    manifest = cat.write(make_bars(50, step_ns=DAY_NS), "x", "spot", "S", "bars_1d", "month")
    base = cat.dataset_dir("x", "spot", "S", "bars_1d")
    for entry in manifest.files:
        assert hashlib.sha256((base / entry.path).read_bytes()).hexdigest() == entry.sha256
    on_disk = json.loads((base / "manifest.json").read_text())
    assert on_disk["rows"] == 50 and on_disk["period"] == "month"
    assert on_disk["columns"] == {
        "ts_event": "int64", "ts_init": "int64", "open": "double", "high": "double",
        "low": "double", "close": "double", "volume": "double",
    }


def test_gaps_and_missing_bars_are_counted(tmp_path: Path) -> None:
    table = make_bars(10)
    keep = np.ones(10, dtype=bool)
    keep[[3, 6, 7]] = False  # one gap of 1 bar, one of 2 bars
    manifest = Catalog(tmp_path).write(table.filter(pa.array(keep)), "x", "spot", "S", "bars_1h", "year", interval_ns=HOUR_NS)
    assert (manifest.gaps, manifest.missing_bars) == (2, 3)


def test_files_with_verify_detects_a_modified_file(tmp_path: Path) -> None:
    cat = Catalog(tmp_path)
    manifest = cat.write(make_bars(50, step_ns=DAY_NS), "x", "spot", "S", "bars_1d", "month")
    target = cat.dataset_dir("x", "spot", "S", "bars_1d") / manifest.files[1].path
    data = bytearray(target.read_bytes())
    data[10] ^= 0xFF
    target.write_bytes(bytes(data))
    assert len(cat.files("x", "spot", "S", "bars_1d")) == 2  # no hashing unless asked
    with pytest.raises(DataError, match=rf"{manifest.files[1].path}: sha256 [0-9a-f]+ does not match the manifest"):
        cat.files("x", "spot", "S", "bars_1d", verify=True)
    with pytest.raises(DataError, match="does not match the manifest"):
        cat.verify("x", "spot", "S", "bars_1d")


def test_files_names_a_missing_file(tmp_path: Path) -> None:
    cat = Catalog(tmp_path)
    manifest = cat.write(make_bars(50, step_ns=DAY_NS), "x", "spot", "S", "bars_1d", "month")
    (cat.dataset_dir("x", "spot", "S", "bars_1d") / manifest.files[0].path).unlink()
    with pytest.raises(DataError, match=r"date=2024-01-01/part-00000.parquet: file listed in the manifest is missing"):
        cat.files("x", "spot", "S", "bars_1d")


def test_a_part_replaced_by_another_file_of_the_same_schema_fails_every_read_not_only_verify(tmp_path: Path) -> None:
    """Another symbol's day copied over a part (same schema, rows and times, other prices) was read as this
    symbol's: only ``verify`` (a sha256 of every file) noticed. The manifest now keeps each file's size."""
    cat = Catalog(tmp_path)
    day = make_bars(48)  # two day partitions of 24 hourly bars
    other = day.set_column(day.schema.get_field_index("close"), "close", pa.array(np.linspace(2_000.0, 2_500.0, 48)))
    manifest = cat.write(day, "x", "spot", "S", "bars_1h", "day")
    theirs = cat.write(other, "x", "spot", "ETH", "bars_1h", "day")
    ours = cat.dataset_dir("x", "spot", "S", "bars_1h") / manifest.files[0].path
    copied = cat.dataset_dir("x", "spot", "ETH", "bars_1h") / theirs.files[0].path
    assert (theirs.files[0].rows, theirs.files[0].start_ns) == (manifest.files[0].rows, manifest.files[0].start_ns)
    written = ours.stat().st_size
    assert written != copied.stat().st_size
    ours.write_bytes(copied.read_bytes())
    message = rf"{manifest.files[0].path}: {copied.stat().st_size} bytes, the manifest says {written}: "
    for read in (cat.files, cat.read, cat.verify):
        with pytest.raises(DataError, match=message + "the file was replaced or changed since the catalog wrote it"):
            read("x", "spot", "S", "bars_1h")
    # a manifest written before sizes were kept reads as before
    manifest_path = cat.dataset_dir("x", "spot", "ETH", "bars_1h") / "manifest.json"
    old = json.loads(manifest_path.read_text())
    for entry in old["files"]:
        del entry["size"]
    manifest_path.write_text(json.dumps(old))
    assert cat.read("x", "spot", "ETH", "bars_1h").equals(other)


def test_verify_names_a_file_with_the_wrong_schema(tmp_path: Path) -> None:
    cat = Catalog(tmp_path)
    manifest = cat.write(make_bars(20), "x", "spot", "S", "bars_1h", "year")
    path = cat.dataset_dir("x", "spot", "S", "bars_1h") / manifest.files[0].path
    pq.write_table(make_bars(20).drop_columns(["volume"]), path)
    with pytest.raises(DataError, match=r"part-00000.parquet: schema mismatch: got \(ts_event:int64.*expected"):
        catalog_module.open_parquet(path, "bars")


def test_manifest_of_unknown_dataset_and_bad_manifest(tmp_path: Path) -> None:
    cat = Catalog(tmp_path)
    with pytest.raises(DataError, match="dataset not found"):
        cat.manifest("x", "spot", "S", "bars_1h")
    cat.write(make_bars(5), "x", "spot", "S", "bars_1h", "year")
    path = cat.dataset_dir("x", "spot", "S", "bars_1h") / "manifest.json"
    doc = json.loads(path.read_text())
    doc["schema_version"] = 99
    path.write_text(json.dumps(doc))
    with pytest.raises(DataError, match="schema_version 99 is not supported"):
        cat.manifest("x", "spot", "S", "bars_1h")
    path.write_text("{not json")
    with pytest.raises(DataError, match="manifest is not valid JSON"):
        cat.manifest("x", "spot", "S", "bars_1h")
    del doc["rows"]
    doc["schema_version"] = SCHEMA_VERSION
    path.write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"malformed manifest: .*rows"):
        cat.manifest("x", "spot", "S", "bars_1h")


def test_write_create_refuses_an_existing_dataset(tmp_path: Path) -> None:
    cat = Catalog(tmp_path)
    cat.write(make_bars(5), "x", "spot", "S", "bars_1h", "year")
    with pytest.raises(DataError, match="dataset exists"):
        cat.write(make_bars(5), "x", "spot", "S", "bars_1h", "year")


def test_write_overwrite_replaces_the_dataset(tmp_path: Path) -> None:
    cat = Catalog(tmp_path)
    cat.write(make_bars(50, step_ns=DAY_NS), "x", "spot", "S", "bars", "month")
    manifest = cat.write(make_bars(5), "x", "spot", "S", "bars", "month", mode="overwrite")
    assert manifest.rows == 5
    base = cat.dataset_dir("x", "spot", "S", "bars")
    assert sorted(p.name for p in base.iterdir()) == ["date=2024-01-01", "manifest.json"]
    assert [p.name for p in base.parent.iterdir()] == ["bars"]  # no temp or retired dirs left


def test_append_after_and_before_then_reject_overlap(tmp_path: Path) -> None:
    cat = Catalog(tmp_path)
    full = make_bars(90, step_ns=DAY_NS)
    cat.write(full.slice(30, 30), "x", "spot", "S", "bars_1d", "month", interval_ns=DAY_NS)
    cat.write(full.slice(60, 30), "x", "spot", "S", "bars_1d", "month", mode="append")
    manifest = cat.write(full.slice(0, 30), "x", "spot", "S", "bars_1d", "month", mode="append")
    assert manifest.rows == 90
    assert manifest.gaps == 0 and manifest.interval_ns == DAY_NS
    assert cat.read("x", "spot", "S", "bars_1d").equals(full)
    starts = [f.start_ns for f in manifest.files]
    assert starts == sorted(starts)
    # one partition got two parts (Feb: rows 30..59 in the first write, row 29 prepended)
    assert any(f.path.endswith("part-00001.parquet") for f in manifest.files)
    before = tree_hashes(tmp_path)
    with pytest.raises(DataError, match=r"overlap the existing range"):
        cat.write(full.slice(85, 10), "x", "spot", "S", "bars_1d", "month", mode="append")
    assert tree_hashes(tmp_path) == before


def test_append_trades_that_go_on_at_the_last_time_unless_they_repeat_a_stored_id(tmp_path: Path) -> None:
    cat = Catalog(tmp_path)
    full = make_trades(10, step_ns=0)  # ten trades in one nanosecond, ids 0..9
    later = make_trades(3, start_ns=T0_NS + 1)
    cat.write(full.slice(0, 6), "x", "spot", "S", "trades", kind="trades")
    before = tree_hashes(tmp_path)
    with pytest.raises(DataError, match=r"repeat stored trade ids \['5'\]"):
        cat.write(full.slice(5), "x", "spot", "S", "trades", kind="trades", mode="append")
    no_ids = full.slice(6).set_column(5, "trade_id", pa.array([""] * 4))
    with pytest.raises(DataError, match="overlap the existing range"):  # without ids, a repeat cannot be told
        cat.write(no_ids, "x", "spot", "S", "trades", kind="trades", mode="append")
    assert tree_hashes(tmp_path) == before
    manifest = cat.write(pa.concat_tables([full.slice(6), later]), "x", "spot", "S", "trades", kind="trades",
                         mode="append")
    assert manifest.rows == 13
    assert cat.read("x", "spot", "S", "trades").equals(pa.concat_tables([full, later]).combine_chunks())


def test_two_runs_appending_to_one_dataset_at_once_lose_no_rows(tmp_path: Path) -> None:
    """Two downloads appending January and February at once: both used to report success while the
    second commit replaced the first's (31 of 59 days stored); the second is now refused, nothing lost."""
    cat = Catalog(tmp_path)
    full = make_bars(90, step_ns=DAY_NS)
    cat.write(full.slice(0, 31), "x", "spot", "S", "bars_1d", "month", interval_ns=DAY_NS)
    jan = cat.writer("x", "spot", "S", "bars_1d", "month", kind="bars", interval_ns=DAY_NS, mode="append")
    feb = cat.writer("x", "spot", "S", "bars_1d", "month", kind="bars", interval_ns=DAY_NS, mode="append")
    jan.write(full.slice(31, 29))
    feb.write(full.slice(60, 30))
    assert jan.commit().rows == 60
    before = tree_hashes(cat.dataset_dir("x", "spot", "S", "bars_1d"))
    with pytest.raises(DataError, match=r"bars_1d: dataset changed by another run while this one was appending"):
        feb.commit()
    assert tree_hashes(cat.dataset_dir("x", "spot", "S", "bars_1d")) == before
    assert cat.read("x", "spot", "S", "bars_1d").equals(full.slice(0, 60))
    assert sorted(p.name for p in (tmp_path / "x" / "spot" / "S").iterdir()) == ["bars_1d"]  # no staging left
    assert cat.write(full.slice(60, 30), "x", "spot", "S", "bars_1d", "month", mode="append").rows == 90


def test_two_runs_creating_one_dataset_at_once_keep_the_first(tmp_path: Path) -> None:
    cat = Catalog(tmp_path)
    first = cat.writer("x", "spot", "S", "trades", kind="trades")
    second = cat.writer("x", "spot", "S", "trades", kind="trades")
    first.write(make_trades(5))
    second.write(make_trades(7))
    first.commit()
    with pytest.raises(DataError, match=r"trades: dataset created by another run while this one was writing it"):
        second.commit()
    assert cat.read("x", "spot", "S", "trades").equals(make_trades(5))
    # overwrite means replace, whoever wrote last
    third = cat.writer("x", "spot", "S", "trades", kind="trades", mode="overwrite")
    third.write(make_trades(3))
    cat.write(make_trades(4), "x", "spot", "S", "trades", kind="trades", mode="overwrite")
    assert third.commit().rows == 3


def test_append_rejects_a_different_period_or_kind(tmp_path: Path) -> None:
    cat = Catalog(tmp_path)
    cat.write(make_bars(5), "x", "spot", "S", "d", "month")
    with pytest.raises(DataError, match="cannot append with period 'day'"):
        cat.write(make_bars(5, start_ns=T0_NS + 30 * DAY_NS), "x", "spot", "S", "d", "day", mode="append")
    with pytest.raises(DataError, match="cannot append trades to a bars dataset"):
        cat.write(make_trades(5, start_ns=T0_NS + 30 * DAY_NS), "x", "spot", "S", "d", "month", mode="append")


def test_failed_write_leaves_no_partial_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cat = Catalog(tmp_path)
    cat.write(make_bars(24 * 40), "x", "spot", "S", "bars_1h", "month")
    before = tree_hashes(tmp_path)
    real_open = catalog_module._open_part_writer
    calls = []

    def fail_on_second(path: Path, kind: str) -> pq.ParquetWriter:
        calls.append(path)
        if len(calls) == 2:
            raise OSError("disk full")
        return real_open(path, kind)

    monkeypatch.setattr(catalog_module, "_open_part_writer", fail_on_second)
    with pytest.raises(ConfigError, match=r"bars_1h: writing its Parquet file date=\d{4}-\d\d-01/part-\d{5}\.parquet failed .OSError: disk full"):
        cat.write(make_bars(24 * 40, start_ns=T0_NS + 60 * DAY_NS), "x", "spot", "S", "bars_1h", "month", mode="append")
    assert tree_hashes(tmp_path) == before
    assert [p.name for p in (tmp_path / "x" / "spot" / "S").iterdir()] == ["bars_1h"]
    with pytest.raises(ConfigError, match=r"fresh: writing its Parquet file date=\d{4}-\d\d-01/part-00000\.parquet failed .OSError: disk full"):
        calls.clear()
        cat.write(make_bars(24 * 40), "x", "spot", "S", "fresh", "month")
    assert not cat.exists("x", "spot", "S", "fresh")
    assert [p.name for p in (tmp_path / "x" / "spot" / "S").iterdir()] == ["bars_1h"]


def test_write_rejects_unsorted_duplicate_and_missing_columns(tmp_path: Path) -> None:
    cat = Catalog(tmp_path)
    table = make_bars(10)
    order = np.arange(10)
    order[[4, 5]] = [5, 4]
    with pytest.raises(DataError, match=r"x/spot/S/b row 6: ts_init .* < previous"):
        cat.write(table.take(pa.array(order)), "x", "spot", "S", "b", "year")
    with pytest.raises(DataError, match=r"row 4: ts_event .* is not after previous bar"):
        cat.write(table.take(pa.array([0, 1, 2, 2, 3])), "x", "spot", "S", "b", "year")
    with pytest.raises(DataError, match=r"missing column\(s\) \['volume'\]"):
        cat.write(table.drop_columns(["volume"]), "x", "spot", "S", "b", "year", kind="bars")
    with pytest.raises(DataError, match="cannot tell bars from trades"):
        cat.write(table.select(["ts_event", "ts_init"]), "x", "spot", "S", "b", "year")
    with pytest.raises(DataError, match="not a valid name"):
        cat.write(table, "../x", "spot", "S", "b", "year")
    assert cat.datasets() == []


@pytest.mark.parametrize(("kind", "column", "row", "value"), [("bars", "high", 7, float("nan")),
                                                            ("bars", "close", 1, float("inf")),
                                                            ("trades", "price", 3, float("-inf"))])
def test_write_refuses_a_non_finite_price_naming_the_dataset_column_and_row(
    tmp_path: Path, kind: str, column: str, row: int, value: float
) -> None:
    # was written as given (import refuses it); read back, a NaN high poisons every feature of the run
    table = make_bars(10) if kind == "bars" else make_trades(10)
    values = table.column(column).to_numpy().copy()
    values[row - 1] = value
    table = table.set_column(table.schema.get_field_index(column), column, pa.array(values))
    cat = Catalog(tmp_path)
    with pytest.raises(DataError, match=rf"^x/spot/S/d row {row}: {column} {value} is not a finite price$"):
        cat.write(table, "x", "spot", "S", "d", "year")
    with pytest.raises(DataError, match=rf"^x/spot/S/d row {row + 10}: {column} {value} is not a finite price$"):
        with cat.writer("x", "spot", "S", "d", "year", kind=kind) as writer:  # a second batch: rows count on
            writer.write(make_bars(10, T0_NS - 20 * HOUR_NS) if kind == "bars" else make_trades(10, T0_NS - 20 * 10**9))
            writer.write(table)
            writer.commit()
    assert cat.datasets() == []
    assert not any(p.is_file() for p in tmp_path.rglob("*.parquet"))


def test_datasets_lists_every_dataset_sorted(tmp_path: Path) -> None:
    cat = Catalog(tmp_path)
    cat.write(make_trades(3), "okx", "perp", "BTC-USDT-SWAP", "trades", "day")
    cat.write(make_bars(3), "binance", "spot", "BTCUSDT", "bars_1h", "year")
    assert cat.datasets() == [
        DatasetRef("binance", "spot", "BTCUSDT", "bars_1h"),
        DatasetRef("okx", "perp", "BTC-USDT-SWAP", "trades"),
    ]
    assert Catalog(tmp_path / "nothing").datasets() == []


def test_files_prunes_by_time_range(tmp_path: Path) -> None:
    cat = Catalog(tmp_path)
    manifest = cat.write(make_bars(100, step_ns=DAY_NS), "x", "spot", "S", "bars_1d", "month")
    feb = manifest.files[1]
    files = cat.files("x", "spot", "S", "bars_1d", start_ns=feb.start_ns, end_ns=feb.end_ns)
    assert [p.parent.name for p in files] == ["date=2024-02-01"]


def test_import_file_uses_default_dataset_name_and_period(tmp_path: Path) -> None:
    manifest = import_file(
        tmp_path, FIXTURES / "coinbase_btc-usd_4h_cut.json.gz", venue="coinbase", market="spot", symbol="BTC-USD"
    )
    assert (manifest.dataset, manifest.period, manifest.rows) == ("bars_4h", "year", 300)
    assert (manifest.gaps, manifest.missing_bars) == (1, 3)
    assert manifest.notes == [
        "imported from coinbase_btc-usd_4h_cut.json.gz",
        "bar time: 'start' holds bar OPEN times; shifted +4h (detected) to the close stamp (ts_event = open + interval)",
    ]
    trades = import_file(
        tmp_path, FIXTURES / "btcusdt-trades.parquet", venue="binance", market="spot", symbol="BTCUSDT", kind="trades"
    )
    assert (trades.dataset, trades.period, trades.rows) == ("trades", "day", 2001)


def test_import_file_validation_error_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="bars_high_below_low.csv row 17: high 99.0 < low 100.0"):
        import_file(tmp_path, FIXTURES / "bars_high_below_low.csv", venue="x", market="spot", symbol="S")
    assert list(tmp_path.iterdir()) == []


def test_partition_cuts_match_a_per_row_calendar_conversion() -> None:
    rng = np.random.default_rng(7)
    for trial in range(600):
        base = int(rng.integers(946_684_800, 4_000_000_000)) * 10**9
        scale = (10**9, 86_400 * 10**9, 40 * 86_400 * 10**9, 400 * 86_400 * 10**9)[trial % 4]
        ts = np.sort(base + rng.integers(0, scale, int(rng.integers(1, 40)))).astype(np.int64)
        for period, unit in (("day", "D"), ("month", "M"), ("year", "Y")):
            days = ts.astype("datetime64[ns]").astype(f"datetime64[{unit}]").astype("datetime64[D]")
            cuts = (np.flatnonzero(days[1:] != days[:-1]) + 1).tolist()
            starts, got = catalog_module._partition_cuts(ts, period)
            assert got == cuts
            assert [str(s) for s in starts] == [str(d) for d in days[[0, *cuts]]]


def test_a_swap_whose_rollback_fails_says_where_the_previous_version_is_and_keeps_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder with a file put where the dataset was, between the commit's two renames (another process), made
    both the swap and its rollback fail (ENOTEMPTY, real); the error said "the dataset is left as it was" while
    it had been renamed aside, and the next write removed that only copy as a finished commit's leftover."""
    catalog = Catalog(tmp_path / "cat")
    old = make_bars(24)
    catalog.write(old, "sim", "spot", "BTCUSDT", "bars_1h")
    base = catalog.dataset_dir("sim", "spot", "BTCUSDT", "bars_1h")
    rename = os.rename

    def intruded(src: object, dst: object) -> None:
        rename(src, dst)
        if Path(src) == base:  # the dataset renamed aside: someone makes a folder where it was
            base.mkdir()
            (base / "notes.txt").write_text("mine\n")

    monkeypatch.setattr(catalog_module.os, "rename", intruded)
    with pytest.raises(ConfigError) as caught:
        catalog.write(make_bars(48), "sim", "spot", "BTCUSDT", "bars_1h", mode="overwrite")
    monkeypatch.setattr(catalog_module.os, "rename", rename)
    said = str(caught.value)
    (retired,) = [p for p in base.parent.iterdir() if p.name.startswith(".bars_1h.old-")]
    assert "left as it was" not in said, said
    assert "swapping it into the catalog failed (ENOTEMPTY: " in said, said
    assert "putting the previous version back failed too (ENOTEMPTY: " in said, said
    assert str(retired) in said and str(base) in said, said
    # What stands at the dataset's path is not a dataset: a later write keeps the previous version.
    catalog.write(make_bars(24), "sim", "spot", "BTCUSDT", "other_1h")
    assert retired.is_dir() and (base / "notes.txt").read_text() == "mine\n"
    # Once that folder is gone the catalog puts the previous version back.
    (base / "notes.txt").unlink()
    base.rmdir()
    assert catalog.read("sim", "spot", "BTCUSDT", "bars_1h").equals(old)
    assert not retired.exists()


#: Writes trades (three day files) under every file-size limit from below the largest part's row groups to past its
#: footer, each failing write followed in the same process by one without the limit; prints what stayed open.
_FAILING_WRITES = r"""
import os, resource, signal, sys
from tests.data.test_data_catalog import make_trades
from tradebus.data.catalog import Catalog
from tradebus.errors import ConfigError

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
root, largest = sys.argv[1], int(sys.argv[2])
cat, table = Catalog(root), make_trades(200_000)
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
failed, steps = 0, set()
for limit in range(largest - 3000, largest + 50, 97):
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        cat.write(table, "x", "spot", "S", "trades", period="day", mode="overwrite")
    except ConfigError as exc:  # its traceback (the writer's frames) still alive: nothing may be open
        failed += 1
        steps.add(str(exc).split(": ")[2].split(" failed")[0])
        held = [os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
                if os.path.exists(f"/proc/self/fd/{fd}") and root in os.readlink(f"/proc/self/fd/{fd}")]
        if held:
            print("open after a write under", limit, held)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    cat.write(table, "x", "spot", "S", "trades", period="day", mode="overwrite")
print("failed", failed, sorted(steps))
"""


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs Linux /proc")
def test_a_write_failing_anywhere_in_a_part_leaves_no_file_open_and_the_next_write_succeeds(tmp_path: Path) -> None:
    """A part whose row group or footer outgrows the file-size limit (a real EFBIG, as a full disk fails): the
    writer's ParquetWriter, whose close had failed, must not keep its file open until garbage collection."""
    cat = Catalog(tmp_path)
    table = make_trades(200_000)
    cat.write(table, "x", "spot", "S", "trades", period="day")
    largest = max(p.stat().st_size for p in tmp_path.rglob("*.parquet"))
    done = subprocess.run([sys.executable, "-c", _FAILING_WRITES, str(tmp_path), str(largest)], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)}, check=False)
    assert done.returncode == 0, done.stderr
    assert "open after" not in done.stdout, done.stdout
    failed, steps = done.stdout.split(" ", 2)[1:]
    assert int(failed) >= 30, done.stdout  # the limits under the largest part, its footer's included
    assert steps.strip() == "['writing its Parquet file date=2024-01-01/part-00000.parquet']", done.stdout
    assert cat.read("x", "spot", "S", "trades", verify=True).equals(table)
    assert sorted(os.listdir(tmp_path / "x" / "spot" / "S")) == ["trades"]


def test_an_append_refuses_a_part_whose_size_the_manifest_does_not_record_naming_it(tmp_path: Path) -> None:
    """A part replaced by another file since the catalog wrote it (another symbol's day, same schema and times)
    was carried into the appended dataset's new manifest; only a later read refused it."""
    cat = Catalog(tmp_path)
    day = make_bars(48)
    manifest = cat.write(day.slice(0, 24), "x", "spot", "S", "bars_1h", "day")
    other = day.set_column(day.schema.get_field_index("close"), "close", pa.array(np.linspace(2_000.0, 2_500.0, 48)))
    theirs = cat.write(other.slice(0, 24), "x", "spot", "ETH", "bars_1h", "day")
    ours = cat.dataset_dir("x", "spot", "S", "bars_1h") / manifest.files[0].path
    copied = cat.dataset_dir("x", "spot", "ETH", "bars_1h") / theirs.files[0].path
    written = ours.stat().st_size
    ours.write_bytes(copied.read_bytes())
    assert copied.stat().st_size != written
    before = tree_hashes(tmp_path)
    message = rf"{ours}: {copied.stat().st_size} bytes, the manifest says {written}: the file was replaced or changed"
    with pytest.raises(DataError, match=message):
        cat.write(day.slice(24, 24), "x", "spot", "S", "bars_1h", "day", mode="append")
    assert tree_hashes(tmp_path) == before  # nothing appended, no new manifest


def test_a_catalog_on_a_file_system_that_cannot_lock_refuses_each_write_naming_the_folder_and_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a file system without ``flock`` (ENOLCK, some network file systems) an overwrite was refused as 'cannot
    create its staging folder in x/spot/A (No locks available)', blaming the folder, and record_contract_size or
    record_sizes ended with a raw OSError. Each write now names the folder it could not lock and the file system
    problem (ConfigError, exit 2 in the CLI); nothing is written, and reads go on."""
    import errno
    import fcntl

    cat = Catalog(tmp_path)
    cat.write(make_bars(3), "x", "spot", "A", "bars_1h")
    cat.write(make_trades(3), "x", "spot", "A", "trades")
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")), tree_hashes(tmp_path)

    def no_locks(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    folder = tmp_path / "x" / "spot" / "A"
    writes = [
        lambda: cat.write(make_bars(4), "x", "spot", "A", "bars_1h", mode="overwrite"),
        lambda: cat.write(make_bars(2), "x", "spot", "B", "bars_1h"),
        lambda: cat.record_contract_size("x", "spot", "A", "trades", 0.01),
        lambda: cat.record_sizes("x", "spot", "A", "bars_1h"),
    ]
    for n, write in enumerate(writes):
        where = tmp_path / "x" / "spot" / "B" if n == 1 else folder
        with pytest.raises(ConfigError) as refused:
            write()
        said = str(refused.value)
        assert f"catalog {where}: cannot lock it (ENOLCK: No locks available: its file system cannot lock" in said
        assert "staging folder" not in said
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == before[0]
    assert tree_hashes(tmp_path) == before[1]
    assert cat.read("x", "spot", "A", "bars_1h").num_rows == 3


#: Overwrites the dataset ``count`` times, alternating two versions whose day files differ in size and rows
#: (x/spot/S/bars, or with a third argument ``trades`` x/spot/S/trades: see :func:`raced_versions`).
_OVERWRITES = r"""
import sys
from loguru import logger
from tests.data.test_data_catalog import raced_versions
from tradebus.data.catalog import Catalog
logger.remove()
cat, count, kind = Catalog(sys.argv[1]), int(sys.argv[2]), (sys.argv[3:] or ["bars"])[0]
versions = raced_versions(kind)
for i in range(count):
    table, interval_ns = versions[(i + 1) % 2]
    cat.write(table, "x", "spot", "S", kind, "day", interval_ns=interval_ns, mode="overwrite")
"""


def raced_versions(kind: str = "bars") -> list[tuple[pa.Table, int | None]]:
    """The two versions of x/spot/S/<kind> that :data:`_OVERWRITES` alternates, each with its bar interval: the
    first one the dataset is written with, then the second, and so on. Ten days and their day files differ in rows
    and size: bars hourly and half-hourly; trades every 60 s and every 30 s; a book (:func:`make_book`) with a
    snapshot a day and 23 or 47 updates after it, of other sizes."""
    if kind == "bars":
        return [(make_bars(24 * 10), HOUR_NS), (make_bars(24 * 20, step_ns=HOUR_NS // 2), HOUR_NS // 2)]
    if kind == "book":
        return [(make_book(10, 24, 1.0), None), (make_book(10, 48, 2.0), None)]
    return [(make_trades(1440 * 10, step_ns=60_000_000_000), None), (make_trades(2880 * 10, step_ns=30_000_000_000), None)]


def race_overwrites(root: Path, read: Callable[[], T], kind: str = "bars", count: int = 100) -> list[T | DataError]:
    """Call ``read`` over and over while another process overwrites x/spot/S/<kind> of the catalog ``root`` ``count``
    times (:data:`_OVERWRITES`; the dataset written with the first version of :func:`raced_versions` first): what each
    call returned, or the :class:`DataError` it raised."""
    table, interval_ns = raced_versions(kind)[0]
    Catalog(root).write(table, "x", "spot", "S", kind, "day", interval_ns=interval_ns)
    writer = subprocess.Popen([sys.executable, "-c", _OVERWRITES, str(root), str(count), kind], stderr=subprocess.PIPE,
                              text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    outcomes: list[T | DataError] = []
    while writer.poll() is None:
        try:
            outcomes.append(read())
        except DataError as exc:
            outcomes.append(exc)
    _, errors = writer.communicate(timeout=600)
    assert writer.returncode == 0, errors
    return outcomes


def test_a_read_racing_overwrites_in_another_process_gets_one_whole_version_every_time(tmp_path: Path) -> None:
    """A read loaded the manifest, then opened the files it lists; an overwrite swapping the next version in between
    made it fail on a file of another size (a clean DataError, seen once in 1,035 reads) or, where the sizes
    matched, return a mix of two versions without an error (169 of 8,246 reads against 200 overwrites of ten day
    files). A read now holds a shared lock of the symbol's folder from its manifest to its files, and a commit's swap
    the exclusive one."""
    old, new = make_bars(24 * 10), make_bars(24 * 20, step_ns=HOUR_NS // 2)
    cat = Catalog(tmp_path)
    cat.write(old, "x", "spot", "S", "bars", "day")
    writer = subprocess.Popen([sys.executable, "-c", _OVERWRITES, str(tmp_path), "100"], stderr=subprocess.PIPE,
                              text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    reads, seen, bad = 0, {old.num_rows: 0, new.num_rows: 0}, []
    while writer.poll() is None:
        try:
            table = cat.read("x", "spot", "S", "bars")
        except DataError as exc:
            bad.append(str(exc))
            continue
        reads += 1
        if table.equals(old) or table.equals(new):
            seen[table.num_rows] += 1
        else:
            bad.append(f"a mix of both versions: {table.num_rows} rows")
    _, errors = writer.communicate(timeout=600)
    assert writer.returncode == 0, errors
    assert bad == [], f"{len(bad)} of {reads + len(bad)} reads: {bad[:3]}"
    assert min(seen.values()) > 0, seen  # the reads overlapped the overwrites: both versions were read


#: A pinned read of x/spot/S/bars with the soft ``ulimit -n`` reported at 64 and the hard one unlimited, as macOS
#: reports it: raising the soft one is then refused by the system (macOS past kern.maxfilesperproc; here Linux, past
#: fs.nr_open), the way setrlimit fails there. Prints the error's type and message.
_PINNED_WHERE_THE_LIMIT_CANNOT_BE_RAISED = r"""
import resource, sys
from loguru import logger
from tradebus.data.catalog import Catalog
logger.remove()
resource.getrlimit = lambda which: (64, resource.RLIM_INFINITY)
try:
    with Catalog(sys.argv[1]).pinned("x", "spot", "S", "bars"):
        print("opened")
except Exception as exc:
    print(type(exc).__name__, exc)
"""


def test_a_pinned_read_the_system_will_not_raise_the_open_file_limit_for_is_refused_naming_ulimit(
    tmp_path: Path,
) -> None:
    """On macOS the hard ``ulimit -n`` is unlimited and raising the soft one past ``kern.maxfilesperproc`` fails:
    a replay or query that needed more descriptors than the soft limit ended in a ValueError traceback from
    ``resource.setrlimit`` ('not allowed to raise maximum limit' where this test makes the system refuse it). It
    is now the clear refusal naming the dataset, the count of files, the limit and ``ulimit -n``."""
    Catalog(tmp_path).write(make_bars(48), "x", "spot", "S", "bars", "day")
    done = subprocess.run([sys.executable, "-c", _PINNED_WHERE_THE_LIMIT_CANNOT_BE_RAISED, str(tmp_path)],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    said = " ".join(done.stdout.split())
    assert said.startswith("DataError x/spot/S/bars: a read keeps its 3 files open (the process's other reads 0), so "
                           "that a write swapping in a new version cannot change them under it; this process may open "
                           "64 files (ulimit -n) and the system refused to raise that to 259 ("), said
    assert "): narrow the time range or raise that limit" in said


def _waiting_for_flock(directory: Path) -> bool:
    """Whether some process waits for a ``flock`` of ``directory`` (a ``->`` line of ``/proc/locks``)."""
    info = directory.stat()
    inode = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
    return any(fields[1:3] == ["->", "FLOCK"] and fields[6] == inode
               for fields in map(str.split, Path("/proc/locks").read_text().splitlines()))


def read_while_a_commit_swaps(base: Path, read: Callable[[], T], method: Callable[..., object], target: Path,
                              call: int = 1) -> T | Exception:
    """Call ``read`` in a thread; at its ``call``-th call of ``method`` (a ``Path`` method) on ``target``, a commit
    swapping the dataset at ``base`` takes the symbol folder's exclusive lock and renames the dataset aside (the
    first of :func:`~tradebus.data.catalog._swap`'s two renames), or waits for that lock while the read holds it
    shared; the read then goes on, and once it is done the dataset is renamed back (the second rename). What
    ``read`` returned or raised. No timing: each step waits on the last, or on ``/proc/locks`` showing the wait."""
    import threading

    if not Path("/proc/locks").is_file():
        pytest.skip("tells a commit waiting for the lock by /proc/locks (Linux)")
    reached, go, renamed, finish = (threading.Event() for _ in range(4))
    seen, outcome = [0], []

    def profile(frame, event, _arg):  # noqa: ANN001 - sys.setprofile's signature
        if event == "call" and frame.f_code is method.__code__ and frame.f_locals.get("self") == target:
            seen[0] += 1
            if seen[0] == call:
                reached.set()
                assert go.wait(600)

    def reader() -> None:
        sys.setprofile(profile)
        try:
            outcome.append(read())
        except Exception as exc:  # noqa: BLE001 - the outcome the caller asserts on
            outcome.append(exc)
        finally:
            sys.setprofile(None)
            reached.set()

    def committer() -> None:
        retired = base.parent / f".{base.name}.old-{'0' * 32}"
        with catalog_module._locked(base.parent):
            os.rename(base, retired)
            renamed.set()
            assert finish.wait(600)
            os.rename(retired, base)

    read_thread = threading.Thread(target=reader)
    read_thread.start()
    assert reached.wait(600)
    commit_thread = None
    if read_thread.is_alive():
        commit_thread = threading.Thread(target=committer)
        commit_thread.start()
        for _ in range(60_000):  # a generous deadline: 600 s of 10 ms waits at least
            if renamed.wait(0.01) or _waiting_for_flock(base.parent):
                break
        assert renamed.is_set() or _waiting_for_flock(base.parent)
    go.set()
    read_thread.join(600)
    finish.set()
    if commit_thread is not None:
        commit_thread.join(600)
    assert (base / catalog_module.MANIFEST_NAME).is_file()
    return outcome[0]


def test_a_manifest_read_while_a_commit_swaps_the_dataset_gets_a_whole_version(tmp_path: Path) -> None:
    """Catalog.manifest read manifest.json without the read lock: one DataError ('dataset not found, but an
    interrupted write left .bars.old-...') in about 30,000 reads racing 100 overwrites, when a commit renamed the
    dataset aside between the read's check of the manifest and its reading. It now holds the shared lock the
    commit's swap waits for, as every read of the files does."""
    cat = Catalog(tmp_path)
    cat.write(make_bars(48), "x", "spot", "S", "bars", "day")
    base = cat.dataset_dir("x", "spot", "S", "bars")
    got = read_while_a_commit_swaps(base, lambda: cat.manifest("x", "spot", "S", "bars"), Path.read_bytes,
                                    base / catalog_module.MANIFEST_NAME)
    assert not isinstance(got, Exception), got
    assert (got.rows, len(got.files)) == (48, 3)
