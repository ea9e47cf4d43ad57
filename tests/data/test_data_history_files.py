"""Bybit and OKX trade-history files (their documented CSV layouts) through `data import`, units and ids checked.

The expected values are read off the fixture text by hand, not computed by the importer.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tradebus.data.catalog import Catalog
from tradebus.data.ingest import import_path
from tradebus.errors import DataError

HISTORY = Path(__file__).resolve().parents[1] / "fixtures" / "data" / "history"


def imported(tmp_path: Path, name: str) -> list[tuple]:
    import_path(tmp_path, HISTORY / name, venue="x", market="m", symbol="S", kind="trades")
    table = Catalog(tmp_path).read("x", "m", "S", "trades")
    return list(zip(*(table.column(c).to_pylist() for c in ("ts_event", "price", "size", "aggressor", "trade_id")),
                    strict=True))


def test_bybit_derivatives_history_seconds_with_four_decimals_are_exact_to_the_microsecond(tmp_path: Path) -> None:
    rows = imported(tmp_path, "bybit_linear_XRPUSDT2024-12-01_head.csv.gz")
    assert rows[0] == (1_733_011_200_047_100_000, 2.0311, 120.0, 1, "8c8e5a6e-1b2f-5c5e-9a3e-0d8f1e2c3b4a")
    assert [r[0] for r in rows[1:]] == [1_733_011_200_123_400_000, 1_733_011_200_123_400_000, 1_733_011_201_900_100_000]
    assert [r[3] for r in rows] == [1, -1, -1, 1]  # side is the taker's: Buy = buyer aggressor


def test_bybit_spot_history_volume_and_lower_case_sides(tmp_path: Path) -> None:
    rows = imported(tmp_path, "bybit_spot_BTCUSDT_2025-05-19_head.csv")
    assert rows[0] == (1_747_612_800_074_000_000, 106453.8, 0.003718, -1, "1")
    assert [r[4] for r in rows] == ["1", "2", "3", "4"] and [r[3] for r in rows] == [-1, 1, 1, -1]


def test_okx_trade_history_created_time_in_ms_and_duplicate_ids_refused(tmp_path: Path) -> None:
    rows = imported(tmp_path, "okx_BTC-USDT-trades-2024-12-01_head.csv")
    assert rows[1] == (1_733_011_200_456_000_000, 96500.0, 0.5, -1, "485236582")
    assert [r[3] for r in rows] == [1, -1, -1, 1]
    with pytest.raises(DataError, match="okx_duplicate_trade_id.csv row 3: duplicate trade_id '485236582'"):
        import_path(tmp_path / "dup", HISTORY / "okx_duplicate_trade_id.csv", venue="x", market="m", symbol="S",
                    kind="trades")
    assert Catalog(tmp_path / "dup").datasets() == []
