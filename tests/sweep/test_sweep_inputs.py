"""A resumed sweep compares the inputs its trials read: data files and the files strategy parameters name."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import yaml

from tradebus.config import RunConfig, load_config
from tradebus.data.catalog import BOOK_SNAPSHOT, Catalog
from tradebus.sweep.inputs import changes, data_inputs

IID = "BTCUSDT.BINANCE"


def test_a_model_file_a_strategy_parameter_names_is_an_input_whose_change_is_noticed(tmp_path: Path) -> None:
    models = tmp_path / "models.json"
    models.write_text(json.dumps({"meta": [], "hazard": []}))
    config = {
        "data": {"sources": [{"instrument": IID, "file": "trades.csv", "kind": "trades"}]},
        "instruments": [{"venue": "BINANCE", "symbol": "BTCUSDT", "base": "BTC", "quote": "USDT",
                         "tick_size": 0.01, "lot_size": 1.0e-5}],
        "strategy": {"name": "tradebus.strategies.regime_hazard:RegimeHazard", "instruments": [IID],
                     "params": {"models": "models.json", "quantity": 0.01}},
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    before = data_inputs(load_config(path), (None, None))
    assert before["strategy.params.models"]["path"] == str(models)
    models.write_text(json.dumps({"meta": [], "hazard": [], "retrained": True}))
    after = data_inputs(load_config(path), (None, None))
    assert changes(before, after) == [f"strategy.params.models ({models}): bytes 26 -> 45"]


def test_a_book_dataset_s_rows_before_the_window_are_an_input_whose_change_is_noticed(tmp_path: Path) -> None:
    """A window starting on day 2 starts from the book day 1's snapshot rebuilds: re-importing day 1 went unseen."""
    day = 86_400_000_000_000
    t0 = 1_704_067_200_000_000_000  # 2024-01-01

    def book(bid_size: float) -> pa.Table:
        ts = np.array([t0, t0, t0 + day + 5, t0 + day + 9], dtype=np.int64)
        return pa.table({
            "ts_event": ts, "ts_init": ts, "sequence": np.array([1, 1, 2, 3], dtype=np.int64),
            "side": pa.array([1, -1, 1, -1], pa.int8()), "price": [99.0, 101.0, 99.5, 100.5],
            "size": [bid_size, 1.0, 2.0, 2.0],
            "flags": pa.array([BOOK_SNAPSHOT, BOOK_SNAPSHOT, 0, 0], pa.int8()),
        })

    catalog = Catalog(tmp_path / "cat")
    catalog.write(book(1.0), "binance", "spot", "BTCUSDT", "book", kind="book")
    config = {
        "data": {"catalog": "cat",
                 "sources": [{"instrument": IID, "kind": "book", "dataset": "binance/spot/BTCUSDT/book"}]},
        "instruments": [{"venue": "BINANCE", "symbol": "BTCUSDT", "base": "BTC", "quote": "USDT",
                         "tick_size": 0.01, "lot_size": 1.0e-5}],
        "strategy": {"name": "tradebus.strategies.touch_quoter:TouchQuoter", "instruments": [IID],
                     "params": {"quantity": 0.01, "max_position": 0.05}},
        "venue": {"fill_on": "book"},
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    window = (t0 + day, None)
    before = data_inputs(load_config(path), window)
    catalog.write(book(3.0), "binance", "spot", "BTCUSDT", "book", kind="book", mode="overwrite")
    after = data_inputs(load_config(path), window)
    assert changes(before, after) == ["data.sources.0.dataset (binance/spot/BTCUSDT/book): content differs"]


def test_a_dataset_s_stale_stretches_are_an_input_whose_change_is_noticed(tmp_path: Path) -> None:
    """Editing (or re-importing with other) stretches a backtest is refused over left the fingerprint as it was."""
    day = 86_400_000_000_000
    t0 = 1_704_067_200_000_000_000  # 2024-01-01
    ts = np.array([t0, t0, t0 + day + 5, t0 + day + 9], dtype=np.int64)
    catalog = Catalog(tmp_path / "cat")
    catalog.write(pa.table({
        "ts_event": ts, "ts_init": ts, "sequence": np.array([1, 1, 2, 3], dtype=np.int64),
        "side": pa.array([1, -1, 1, -1], pa.int8()), "price": [99.0, 101.0, 99.5, 100.5],
        "size": [1.0, 1.0, 2.0, 2.0], "flags": pa.array([BOOK_SNAPSHOT, BOOK_SNAPSHOT, 0, 0], pa.int8()),
    }), "binance", "spot", "BTCUSDT", "book", kind="book")
    config = {
        "data": {"catalog": "cat",
                 "sources": [{"instrument": IID, "kind": "book", "dataset": "binance/spot/BTCUSDT/book"}]},
        "instruments": [{"venue": "BINANCE", "symbol": "BTCUSDT", "base": "BTC", "quote": "USDT",
                         "tick_size": 0.01, "lot_size": 1.0e-5}],
        "strategy": {"name": "tradebus.strategies.touch_quoter:TouchQuoter", "instruments": [IID],
                     "params": {"quantity": 0.01, "max_position": 0.05}},
        "venue": {"fill_on": "book"},
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    manifest_path = catalog.dataset_dir("binance", "spot", "BTCUSDT", "book") / "manifest.json"
    raw = json.loads(manifest_path.read_text(encoding="utf-8"))

    def with_stale(stretches: list[list[object]]) -> dict[str, dict[str, object]]:
        manifest_path.write_text(json.dumps({**raw, "stale": stretches}), encoding="utf-8")
        return data_inputs(load_config(path), window)

    window = (t0 + day, None)
    before = data_inputs(load_config(path), window)
    # A stretch the window does not reach changes nothing the runs do: a sweep from before stretches were kept resumes.
    assert with_stale([[t0 + 1, t0 + 2, "binance"]]) == before
    stale = with_stale([[t0 + day + 6, t0 + day + 8, "binance"]])
    assert changes(before, stale) == ["data.sources.0.dataset (binance/spot/BTCUSDT/book): stale 0 -> 1"]
    moved = with_stale([[t0 + day + 7, t0 + day + 8, "binance"]])
    assert changes(stale, moved) == ["data.sources.0.dataset (binance/spot/BTCUSDT/book): content differs"]
    assert changes(moved, before) == ["data.sources.0.dataset (binance/spot/BTCUSDT/book): stale 1 -> 0"]


def test_a_dataset_s_fingerprint_racing_overwrites_in_another_process_is_that_of_one_version(tmp_path: Path) -> None:
    """The fingerprint listed the dataset's files under the catalog's read lock and took each file's size after it:
    an ``--overwrite`` in another process meanwhile made it fail on a file gone (a FileNotFoundError traceback) or
    fingerprint the sizes of the next version's files with the entries of the previous one's, a data change no
    version made (2 to 20 of about 7,000 fingerprints racing 100 overwrites of ten day files, in each of 7 runs).
    The sizes are now those the catalog checked under the lock, with the manifest read there: every fingerprint is
    that of one version. A manifest written before sizes were kept fingerprints as before (the file's size)."""
    from tests.data.test_data_catalog import race_overwrites, raced_versions

    def config_of(symbol: str) -> RunConfig:
        config = {
            "data": {"catalog": "cat", "sources": [{"instrument": IID, "dataset": f"x/spot/{symbol}/bars"}]},
            "instruments": [{"venue": "BINANCE", "symbol": "BTCUSDT", "base": "BTC", "quote": "USDT",
                             "tick_size": 0.01, "lot_size": 1.0e-5}],
            "strategy": {"name": "ema_cross", "instruments": [IID], "params": {"fast": 3, "slow": 8, "quantity": 0.01}},
        }
        path = tmp_path / f"{symbol}.yaml"
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        return load_config(path)

    def fingerprint(config: RunConfig) -> str:
        return data_inputs(config, (None, None))["data.sources.0.dataset"]["sha256"]

    catalog = Catalog(tmp_path / "cat")
    versions = []
    for n, (table, interval_ns) in enumerate(raced_versions()):
        catalog.write(table, "x", "spot", f"V{n}", "bars", "day", interval_ns=interval_ns)
        versions.append(fingerprint(config_of(f"V{n}")))
    manifest_path = catalog.dataset_dir("x", "spot", "V0", "bars") / "manifest.json"
    raw = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest_path.write_text(json.dumps({**raw, "files": [{k: v for k, v in f.items() if k != "size"}
                                                          for f in raw["files"]]}), encoding="utf-8")
    assert fingerprint(config_of("V0")) == versions[0]
    raced = config_of("S")

    def version() -> int | str:
        try:
            found = fingerprint(raced)
        except OSError as exc:
            return f"{type(exc).__name__}: {exc}"
        return versions.index(found) if found in versions else "neither version's"

    outcomes = race_overwrites(tmp_path / "cat", version)
    bad = [o for o in outcomes if not isinstance(o, int)]
    assert bad == [], f"{len(bad)} of {len(outcomes)} fingerprints: {bad[:3]}"
    assert sorted(set(outcomes)) == [0, 1], len(outcomes)  # both versions were read
