"""Writers: repr-exact CSV, stable JSON, and the atomic run directory."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

from tradebus.engine.kernel import EquitySample, FillRecord, RunResult
from tradebus.reports.writers import RunDirectory, write_run


def make_result() -> RunResult:
    fills = [FillRecord(10, "X.SIM", "BUY", 0.1, 665.0600000000001, 0.1 + 0.2, "TAKER", "s-1", "s", "T1", "why, not")]
    equity = [EquitySample(10, 1e5, 1e5, 0.0, 0.0, 0.0, 0.0), EquitySample(20, 99_000.5, 1e5, 0.0, 0.0, 0.0, 0.0)]
    return RunResult(("X.SIM",), 1e5, start_ns=10, end_ns=20, bars=2, fills=fills, equity=equity)


def test_csv_floats_are_repr_exact_and_text_is_quoted(tmp_path: Path) -> None:
    write_run(tmp_path, make_result(), {"x": 1.0}, "a: 1\n")
    with (tmp_path / "fills.csv").open() as handle:
        row = next(csv.DictReader(handle))
    assert row["price"] == "665.0600000000001"
    assert row["fee"] == "0.30000000000000004"
    assert row["reason"] == "why, not"
    assert row["liquidity"] == "taker"
    assert row["time"] == "1970-01-01T00:00:00.00000001Z"
    with (tmp_path / "equity.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert rows[1]["drawdown"] == repr(1.0 - 99_000.5 / 1e5)


def test_metrics_json_maps_non_finite_to_null_and_keeps_key_order(tmp_path: Path) -> None:
    write_run(tmp_path, make_result(), {"b": float("inf"), "a": float("nan"), "c": [1.5]}, "")
    text = (tmp_path / "metrics.json").read_text()
    assert json.loads(text) == {"b": None, "a": None, "c": [1.5]}
    assert text.index('"b"') < text.index('"a"')


def test_run_directory_moves_into_place_only_on_success(tmp_path: Path) -> None:
    final = tmp_path / "run"
    with RunDirectory(final) as run_dir:
        (run_dir.path / "f.txt").write_text("new")
        assert run_dir.path.name == f"run.tmp-{os.getpid()}"
        assert not final.exists()
    assert (final / "f.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_run_directory_failure_keeps_the_previous_run_and_removes_the_temporary(tmp_path: Path) -> None:
    final = tmp_path / "run"
    final.mkdir()
    (final / "f.txt").write_text("old")
    with pytest.raises(RuntimeError), RunDirectory(final) as run_dir:
        (run_dir.path / "f.txt").write_text("half")
        raise RuntimeError("boom")
    assert (final / "f.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_run_directory_replaces_an_existing_run(tmp_path: Path) -> None:
    final = tmp_path / "run"
    final.mkdir()
    (final / "stale.txt").write_text("old")
    with RunDirectory(final) as run_dir:
        (run_dir.path / "f.txt").write_text("new")
    assert sorted(p.name for p in final.iterdir()) == ["f.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
