"""Binance Vision bookDepth files into book_depth datasets: values against pandas, bad rows refused by row and field."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from tradebus.data.book_depth import import_book_depth
from tradebus.data.catalog import Catalog
from tradebus.data.cli import data_app
from tradebus.errors import DataError

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "data" / "history" / "binance_um_BTCUSDT-bookDepth-2023-06-01_head.csv"
NAME = "BTCUSDT-bookDepth-2023-06-01.csv"


def stored(root: Path, dataset: str = "book_depth") -> pd.DataFrame:
    return Catalog(root).read("binance", "usdm", "BTCUSDT", dataset).to_pandas()


def test_rows_match_pandas_reading_of_the_file(tmp_path: Path) -> None:
    manifest = import_book_depth(FIXTURE, tmp_path / "cat", "BTCUSDT")
    ref = pd.read_csv(FIXTURE)
    got = stored(tmp_path / "cat")
    assert manifest.rows == len(ref) == 36
    expected_ns = pd.to_datetime(ref["timestamp"], utc=True).dt.as_unit("ns").astype("int64").to_numpy()
    assert np.array_equal(got["ts_event"].to_numpy(), expected_ns)
    assert np.array_equal(got["ts_init"].to_numpy(), expected_ns)
    assert got["ts_event"].iloc[0] == 1_685_577_608 * 10**9  # 2023-06-01T00:00:08Z by hand
    for column in ("percentage", "depth", "notional"):
        assert np.array_equal(got[column].to_numpy(), ref[column].to_numpy())


def test_a_vision_zip_and_days_in_sequence(tmp_path: Path) -> None:
    day2 = tmp_path / "BTCUSDT-bookDepth-2023-06-02.zip"
    text = FIXTURE.read_text().replace("2023-06-01", "2023-06-02")
    with zipfile.ZipFile(day2, "w") as zf:
        zf.writestr("BTCUSDT-bookDepth-2023-06-02.csv", text)
    manifest = import_book_depth([FIXTURE, day2], tmp_path / "cat", "BTCUSDT")
    assert manifest.rows == 72
    with pytest.raises(DataError, match="BTCUSDT-bookDepth-2023-06-01_head.csv row 1: field timestamp: 2023-06-01 00:00:08 goes back"):
        import_book_depth([day2, FIXTURE], tmp_path / "cat", "BTCUSDT", suffix="_backwards")
    assert [d.dataset for d in Catalog(tmp_path / "cat").datasets()] == ["book_depth"]


@pytest.mark.parametrize(("damage", "expected"), [
    ("flip", "corrupt zip archive: Error -3 while decompressing data"),
    ("cut", "cannot read: File is not a zip file"),
])
def test_a_damaged_vision_zip_is_refused_naming_it_and_nothing_is_written(
        tmp_path: Path, damage: str, expected: str) -> None:
    path = tmp_path / "BTCUSDT-bookDepth-2023-06-01.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(zipfile.ZipInfo("BTCUSDT-bookDepth-2023-06-01.csv", date_time=(2023, 6, 2, 0, 0, 0)),
                    FIXTURE.read_bytes(), compress_type=zipfile.ZIP_DEFLATED)
    raw = bytearray(path.read_bytes())
    if damage == "flip":  # a byte of the deflate stream: zlib fails part-way through the rows
        raw[100] ^= 0xFF
    else:  # a download cut short: the zip has lost its directory
        raw = raw[: len(raw) // 2]
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=f"{path.name}: {expected}"):
        import_book_depth(path, tmp_path / "cat", "BTCUSDT")
    assert Catalog(tmp_path / "cat").datasets() == []


def _lines() -> list[str]:
    return FIXTURE.read_text().splitlines()


def _set(row: int, field: int, value: str) -> list[str]:
    lines = _lines()
    cells = lines[row].split(",")
    cells[field] = value
    lines[row] = ",".join(cells)
    return lines


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (_set(3, 2, "nan"), f"{NAME} row 3: field depth: 'nan' is not finite"),
        (_set(14, 3, "-1.5"), f"{NAME} row 14: field notional: '-1.5' is negative"),
        (_set(5, 1, "0"), f"{NAME} row 5: field percentage: '0' is not a non-zero band"),
        (_set(6, 1, "-1.00"), f"{NAME} row 6: field percentage: band -1.00 repeated in the snapshot of 2023-06-01 00:00:08"),
        (_set(2, 2, "1.0"), f"{NAME} row 2: field depth: 1.0 is below the narrower band's 788.954 (not cumulative)"),
        (_set(12, 3, "1"), f"{NAME} row 12: field notional: 1.0 is below the narrower band's"),
        (_set(20, 0, "2023-06-01 00:00:07"), f"{NAME} row 20: field timestamp: 2023-06-01 00:00:07 goes back"),
        (_set(9, 0, "1685577608000"), f"{NAME} row 9: field timestamp: '1685577608000' is not YYYY-MM-DD HH:MM:SS"),
        (_set(0, 2, "qty"), f"{NAME}: header"),
        ([*_lines()[:4], "2023-06-01 00:00:08,-2.00", *_lines()[5:]], f"{NAME} row 4: expected 4 fields"),
    ],
)
def test_bad_rows_are_refused_naming_row_and_field_and_nothing_is_written(tmp_path: Path, lines: list[str], expected: str) -> None:
    path = tmp_path / NAME
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as err:
        import_book_depth(path, tmp_path / "cat", "BTCUSDT")
    assert expected in str(err.value)
    assert not any(p.is_file() for p in (tmp_path / "cat").rglob("*"))


def test_cli_imports_and_exits_3_on_a_bad_file(tmp_path: Path) -> None:
    bad = tmp_path / NAME
    bad.write_text("\n".join(_set(3, 2, "-4")) + "\n")
    args = ["--symbol", "BTCUSDT", "--catalog", str(tmp_path / "cat")]
    result = CliRunner().invoke(data_app, ["import-book-depth", str(bad), *args])
    assert result.exit_code == 3 and "row 3: field depth" in result.output
    result = CliRunner().invoke(data_app, ["import-book-depth", str(FIXTURE), *args])
    assert result.exit_code == 0, result.output
    assert len(stored(tmp_path / "cat")) == 36


# --------------------------------------------------------------------------- quality and replay

T0 = 1_685_577_608 * 10**9  # 2023-06-01T00:00:08Z, the fixture's first snapshot; then +30 s, +60 s


def fixture_frame() -> pd.DataFrame:
    ref = pd.read_csv(FIXTURE)
    ts = pd.to_datetime(ref["timestamp"], utc=True).dt.as_unit("ns").astype("int64")
    return pd.DataFrame({"ts_event": ts, "ts_init": ts, "percentage": ref["percentage"], "depth": ref["depth"],
                         "notional": ref["notional"]})


def depth_counts(frame: pd.DataFrame, chunk: int) -> tuple[str, dict[str, int], dict[str, object]]:
    import pyarrow as pa

    from tradebus.data.quality import QualityCheck

    check = QualityCheck("book_depth")
    table = pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False)
    for start in range(0, table.num_rows, chunk):
        check.feed(table.slice(start, chunk))
    report = check.report()
    return report.status, {k: int(v["count"]) for k, v in report.checks.items()}, report.checks["gaps"]  # type: ignore[call-overload]


@pytest.mark.parametrize("chunk", [5, 12, 36])  # snapshots cut across chunks must count the same
def test_quality_of_the_fixture_is_clean_and_planted_snapshot_defects_are_counted(chunk: int) -> None:
    clean = fixture_frame()
    status, found, _ = depth_counts(clean, chunk)
    assert status == "ok" and not any(found.values())
    assert set(found) == {"non_monotonic_time", "duplicate_band", "non_cumulative", "negative_depth", "zero_depth",
                          "band_set_changed", "stale", "gaps"}

    no_middle = clean[clean["ts_event"] != T0 + 30 * 10**9]  # 00:00:08 then 00:01:08: one snapshot missing
    status, found, gaps = depth_counts(no_middle, chunk)
    assert (status, found["gaps"], gaps["missing"], gaps["longest"]) == ("warn", 1, 1, 1)

    repeated = clean.copy()  # the third snapshot repeats the second's bands
    repeated.loc[24:35, ["percentage", "depth", "notional"]] = clean.loc[12:23, ["percentage", "depth", "notional"]].to_numpy()
    assert depth_counts(repeated, chunk)[1]["stale"] == 1

    missing_band = clean.drop(index=[17])  # the second snapshot lacks -0.20: differs from the first and the third
    assert depth_counts(missing_band, chunk)[1]["band_set_changed"] == 2

    emptied = clean.copy()
    emptied.loc[4, "depth"] = 0.0  # -1.00 band of the first snapshot: 0 under the -0.20 band's 85.681
    status, found, _ = depth_counts(emptied, chunk)
    assert (status, found["zero_depth"], found["non_cumulative"]) == ("fail", 1, 1)

    negative = clean.copy()
    negative.loc[31, "notional"] = -1.0  # +1.00 band of the third snapshot: below the +0.20 band
    status, found, _ = depth_counts(negative, chunk)
    assert (found["negative_depth"], found["non_cumulative"]) == (1, 1)

    twice = pd.concat([clean, clean.iloc[24:36]])  # the last snapshot stored twice at its time: 12 bands repeat
    status, found, _ = depth_counts(twice, chunk)
    assert (status, found["duplicate_band"], found["band_set_changed"], found["non_monotonic_time"]) == ("fail", 12, 0, 0)

    backwards = pd.concat([clean.iloc[12:24], clean.iloc[0:12], clean.iloc[24:36]])
    assert depth_counts(backwards, chunk)[1]["non_monotonic_time"] == 1


def test_cli_quality_of_an_imported_and_of_a_gapped_book_depth_dataset(tmp_path: Path) -> None:
    import json

    import pyarrow as pa

    manifest = import_book_depth(FIXTURE, tmp_path / "cat", "BTCUSDT")
    assert manifest.quality == {"status": "ok"}  # the import ran the checks
    args = ["--catalog", str(tmp_path / "cat")]
    result = CliRunner().invoke(data_app, ["quality", "binance/usdm/BTCUSDT/book_depth", "--json", *args])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert (report["status"], report["rows"], report["checks"]["gaps"]["count"]) == ("ok", 36, 0)
    gapped = fixture_frame()
    gapped = gapped[gapped["ts_event"] != T0 + 30 * 10**9]
    Catalog(tmp_path / "cat").write(pa.Table.from_pandas(gapped, preserve_index=False), "binance", "usdm", "BTCUSDT",
                                    "book_depth_gapped", kind="book_depth")
    result = CliRunner().invoke(data_app, ["quality", "binance/usdm/BTCUSDT/book_depth_gapped", "--fail-on", "gaps", *args])
    assert result.exit_code == 3 and "gaps" in result.output


def test_book_depth_replays_as_one_message_per_band_and_reaches_a_kernel_run(tmp_path: Path) -> None:
    from tradebus.data.replay import Replay, ReplaySource
    from tradebus.engine.instrument import Instrument
    from tradebus.engine.kernel import Kernel
    from tradebus.engine.messages import BookDepth

    import_book_depth(FIXTURE, tmp_path / "cat", "BTCUSDT")
    iid = "BTCUSDT.BINANCE"
    source = ReplaySource.from_catalog(tmp_path / "cat", iid, "binance", "usdm", "BTCUSDT", "book_depth")
    messages = list(Replay([source]))
    assert len(messages) == 36 and all(type(m) is BookDepth for m in messages)
    assert messages[0] == BookDepth(iid, T0, T0, -5.0, 1166.42, 30945285.90)  # the file's first row
    assert messages[35] == BookDepth(iid, T0 + 60 * 10**9, T0 + 60 * 10**9, 5.0, 1291.807, 36029349.82)  # its last
    seen: list[BookDepth] = []
    kernel = Kernel([Instrument(venue="BINANCE", symbol="BTCUSDT", tick_size=0.1, lot_size=0.001)], initial_cash=1_000.0)
    kernel.bus.subscribe(BookDepth, seen.append)
    kernel.run(Replay([source]))
    assert seen == messages
