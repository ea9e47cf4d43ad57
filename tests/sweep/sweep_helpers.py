"""Configs and data shared by the sweep tests."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CATALOG = REPO / "data" / "catalog"
COINBASE_4H_2022 = REPO / "tests" / "fixtures" / "kernel" / "coinbase_btc_usd_4h_2022_1200.csv"
IID = "BTC-USD.COINBASE"


def make_config(data: dict[str, Any], **sections: Any) -> dict[str, Any]:
    """An ema_cross config on BTC-USD.COINBASE over ``data`` (a ``data:`` section)."""
    config: dict[str, Any] = {
        "data": data,
        "instruments": [
            {"venue": "COINBASE", "symbol": "BTC-USD", "base": "BTC", "quote": "USD", "tick_size": 0.01,
             "lot_size": 1.0e-8, "min_notional": 1.0, "maker_fee": 0.004, "taker_fee": 0.006, "margin": True}
        ],
        "strategy": {"name": "ema_cross", "instruments": [IID],
                     "params": {"fast": 10, "slow": 30, "mode": "long_short", "quantity": 0.5}},
        "initial_cash": 100_000.0,
        "report": {"equity_interval": "4h"},
    }
    config.update(sections)
    return config


def catalog_config(start: str = "2022-01-01", end: str = "2022-07-01", **sections: Any) -> dict[str, Any]:
    """A config over the shipped catalog's Coinbase 4h bars from ``start`` to ``end``."""
    data = {"catalog": str(CATALOG), "start": start, "end": end,
            "sources": [{"instrument": IID, "dataset": "coinbase/spot/BTC-USD/bars_4h"}]}
    return make_config(data, **sections)


def file_config(directory: Path, **sections: Any) -> dict[str, Any]:
    """A config over the 2022 Coinbase 4h fixture, copied into ``directory``."""
    shutil.copy(COINBASE_4H_2022, directory / "bars.csv")
    return make_config({"sources": [{"instrument": IID, "file": "bars.csv"}]}, **sections)


def write_yaml(path: Path, data: dict[str, Any]) -> Path:
    """Write ``data`` as YAML to ``path``; return it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path
