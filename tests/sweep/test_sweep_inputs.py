"""A resumed sweep compares the inputs its trials read: data files and the files strategy parameters name."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tradebus.config import load_config
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
