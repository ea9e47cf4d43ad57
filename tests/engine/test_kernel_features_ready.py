"""A feature whose warm-up is longer than the run's data is named in a warning at the end of the run."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from loguru import logger

from tradebus.cli import run_backtest

REPO = Path(__file__).resolve().parents[2]
BARS = REPO / "tests" / "fixtures" / "kernel" / "coinbase_btc_usd_4h_2022_1200.csv"  # 1,200 bars
IID = "BTC-USD.COINBASE"


def backtest(tmp_path: Path, strategy: dict[str, Any], features: list[dict[str, Any]]) -> tuple[Any, list[str]]:
    shutil.copy(BARS, tmp_path / "bars.csv")
    body = {
        "data": {"sources": [{"instrument": IID, "file": "bars.csv"}]},
        "instruments": [{"venue": "COINBASE", "symbol": "BTC-USD", "base": "BTC", "quote": "USD", "tick_size": 0.01,
                         "lot_size": 1.0e-8, "min_notional": 1.0, "maker_fee": 0.004, "taker_fee": 0.006}],
        "strategy": {"instruments": [IID], **strategy},
        "initial_cash": 100_000.0,
    }
    if features:
        body["features"] = features
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False), encoding="utf-8")
    lines: list[str] = []
    sink = logger.add(lines.append, level="WARNING", format="{message}")
    try:
        result, _, _ = run_backtest(path, tmp_path / "out")
    finally:
        logger.remove(sink)
    return result, [line for line in lines if "not ready at the end of the run" in line]


@pytest.mark.parametrize("slow", [1500, 5000])
def test_an_ema_slower_than_the_data_is_named_and_the_ready_one_is_not(tmp_path: Path, slow: int) -> None:
    # an EMA of span 1,500 or 5,000 bars on 1,200 bars: ema_cross never traded, exit 0 and no word why
    result, warned = backtest(
        tmp_path, {"name": "ema_cross", "params": {"fast": 20, "slow": slow, "quantity": 0.1}}, []
    )
    assert result.orders == []
    assert len(warned) == 1, warned
    assert f"(ema {{'span': {slow}}}) on {IID}" in warned[0]


def test_a_config_feature_longer_than_the_data_is_named_beside_a_ready_one(tmp_path: Path) -> None:
    features = [{"name": "short", "kind": "sma", "params": {"window": 10}, "input": "close"},
                {"name": "long", "kind": "sma", "params": {"window": 1201}, "input": "close"},
                {"name": "on_long", "kind": "ema", "params": {"span": 3}, "input": "long"}]
    result, warned = backtest(tmp_path, {"name": "ema_cross", "params": {"fast": 5, "slow": 20, "quantity": 0.1}},
                              features)
    assert result.orders  # the strategy's own EMAs were ready
    assert sorted(line.split()[1] for line in warned) == ["'long'", "'on_long'"], warned


def test_a_window_of_exactly_the_data_is_ready_and_not_named(tmp_path: Path) -> None:
    features = [{"name": "long", "kind": "sma", "params": {"window": 1200}, "input": "close"}]
    _, warned = backtest(tmp_path, {"name": "ema_cross", "params": {"fast": 5, "slow": 20, "quantity": 0.1}},
                         features)
    assert warned == []
