"""Every library strategy has a config in configs/ that validates and runs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tradebus.cli import run_backtest
from tradebus.config import load_config, strategy_entries

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
LIBRARY = {
    "macd_cross.yaml": "macd_cross",
    "bollinger_reversion.yaml": "bollinger_reversion",
    "rsi_reversion.yaml": "rsi_reversion",
    "donchian_breakout.yaml": "donchian_breakout",
    "pairs_btc_venues.yaml": "pairs",
    "xs_momentum.yaml": "xs_momentum",
}


@pytest.mark.parametrize("name", sorted(LIBRARY))
def test_library_config_names_its_strategy_and_trades(name: str, tmp_path: Path) -> None:
    config = load_config(CONFIGS / name)
    assert [entry.name for _, entry in strategy_entries(config)] == [LIBRARY[name]]
    overrides = ["data.end=2022-09-01"] if config.data.catalog is not None else []
    _, metrics, out = run_backtest(CONFIGS / name, tmp_path / "out", overrides=overrides)
    assert metrics["fills"] > 0
    assert json.loads((out / "metrics.json").read_text())["fills"] == metrics["fills"]


def test_multi_strategy_config_attributes_each_strategy(tmp_path: Path) -> None:
    _, _, out = run_backtest(CONFIGS / "multi_strategy.yaml", tmp_path / "out", overrides=["data.end=2022-09-01"])
    with (out / "attribution.csv").open(newline="") as handle:
        totals = {r["strategy_id"]: r for r in csv.DictReader(handle) if r["instrument"] == "ALL"}
    assert set(totals) == {"macd", "rsi", "donchian"}
    assert all(int(r["fills"]) > 0 for r in totals.values())
