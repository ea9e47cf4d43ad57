"""scripts/make_sample_data.py: deterministic build, explicit duplicate policy, gaps recorded."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
from loguru import logger

from tradebus.data.catalog import Catalog, quality_report
from tradebus.data.ingest import import_file
from tradebus.errors import DataError

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "data"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_sample_data", REPO / "scripts" / "make_sample_data.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def test_build_is_deterministic_and_records_gaps(tmp_path: Path) -> None:
    script = load_script()
    source = FIXTURES / "coinbase_btc-usd_4h_cut.json.gz"
    assert script.build(source, tmp_path / "a", drop_duplicates=False) == 300
    assert script.build(source, tmp_path / "b", drop_duplicates=False) == 300
    assert hashes(tmp_path / "a") == hashes(tmp_path / "b")
    manifest = Catalog(tmp_path / "a").manifest("coinbase", "spot", "BTC-USD", "bars_4h")
    assert (manifest.gaps, manifest.missing_bars, manifest.period) == (1, 3, "year")
    assert "1 gaps, 3 missing bars, kept as gaps (no filling)" in manifest.notes
    assert "duplicates: none (build fails on any)" in manifest.notes


def test_build_keeps_the_quality_summary_data_info_shows(tmp_path: Path) -> None:
    """data info showed quality '-' for the shipped sample: the build stored no quality summary."""
    script = load_script()
    script.build(FIXTURES / "coinbase_btc-usd_4h_cut.json.gz", tmp_path, drop_duplicates=False)
    manifest = Catalog(tmp_path).manifest("coinbase", "spot", "BTC-USD", "bars_4h")
    entries = Catalog(tmp_path).entries("coinbase", "spot", "BTC-USD", "bars_4h")[1]
    report = quality_report((path for path, _ in entries), "bars", manifest.interval_ns)
    assert manifest.quality == report.summary() and manifest.quality["gaps"] == 1


def test_every_dataset_of_the_shipped_sample_catalog_has_its_quality_status() -> None:
    catalog = Catalog(REPO / "data" / "catalog")
    for ref in catalog.datasets():
        manifest = catalog.manifest(ref.venue, ref.market, ref.symbol, ref.dataset)
        entries = catalog.entries(ref.venue, ref.market, ref.symbol, ref.dataset)[1]
        report = quality_report((path for path, _ in entries), manifest.kind, manifest.interval_ns)
        assert manifest.quality is not None and manifest.quality["status"] == report.status, ref


def test_build_stops_on_duplicates_unless_asked_to_drop_them(tmp_path: Path) -> None:
    script = load_script()
    source = FIXTURES / "coinbase_candles_duplicate.json"
    messages: list[str] = []
    sink = logger.add(lambda m: messages.append(m.record["message"]), level="WARNING")
    try:
        assert script.main([str(source), "--catalog", str(tmp_path)]) == 1
        assert any("row 5: duplicate start" in m for m in messages)
        assert any("--drop-duplicates" in m for m in messages)
        assert Catalog(tmp_path).datasets() == []
        messages.clear()
        assert script.main([str(source), "--catalog", str(tmp_path), "--drop-duplicates"]) == 0
    finally:
        logger.remove(sink)
    dropped = [m for m in messages if "dropped duplicate bar" in m]
    assert len(dropped) == 1 and dropped[0].startswith(f"{source} row 5:")
    manifest = Catalog(tmp_path).manifest("coinbase", "spot", "BTC-USD", "bars_4h")
    assert manifest.rows == 5
    assert "1 duplicate rows dropped (first kept)" in manifest.notes


def test_interrupted_swap_is_reported_with_the_retired_copy(tmp_path: Path) -> None:
    cat = Catalog(tmp_path)
    import_file(cat, FIXTURES / "bars_valid.csv", venue="x", market="spot", symbol="S")
    base = cat.dataset_dir("x", "spot", "S", "bars_1h")
    base.rename(base.parent / ".bars_1h.old-0123")  # as if the process died between the two renames
    with pytest.raises(DataError, match=r"interrupted write left .*\.bars_1h\.old-0123; rename it back"):
        cat.manifest("x", "spot", "S", "bars_1h")


def test_import_file_rejects_an_interval_for_trades(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="trades_valid.csv: interval applies to bars only"):
        import_file(tmp_path, FIXTURES / "trades_valid.csv", venue="x", market="spot", symbol="S", kind="trades", interval="1m")


def test_every_file_of_the_shipped_sample_catalog_has_its_size_in_the_manifest() -> None:
    """The shipped manifests predated sizes, so a replaced or truncated part of the Quickstart's data was read
    unchecked; each entry now records its file's length (and the Coinbase one is what the build writes)."""
    catalog = Catalog(REPO / "data" / "catalog")
    refs = catalog.datasets()
    assert {ref.relpath().as_posix() for ref in refs} >= {"coinbase/spot/BTC-USD/bars_4h", "freqtrade/spot/ETH-BTC/bars_5m"}
    for ref in refs:
        manifest = catalog.manifest(ref.venue, ref.market, ref.symbol, ref.dataset)
        base = catalog.dataset_dir(ref.venue, ref.market, ref.symbol, ref.dataset)
        for entry in manifest.files:
            assert entry.size == (base / entry.path).stat().st_size, (ref, entry.path)
            assert hashlib.sha256((base / entry.path).read_bytes()).hexdigest() == entry.sha256, (ref, entry.path)
