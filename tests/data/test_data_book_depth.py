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
