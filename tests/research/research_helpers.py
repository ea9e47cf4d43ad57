"""Shared test data for the research tests: the shipped Coinbase 4h bars and synthetic walks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from tradebus.data.catalog import Catalog

REPO = Path(__file__).resolve().parents[2]
CATALOG = REPO / "data" / "catalog"
DATASET = "coinbase/spot/BTC-USD/bars_4h"
IID = "BTC-USD.COINBASE"
H4 = 4 * 3600 * 1_000_000_000
DAY = 6 * H4

SPECS = [
    {"name": "r", "kind": "log_ret", "input": "close"},
    {"name": "vol", "kind": "ewm_std", "params": {"span": 20}, "input": "r"},
    {"name": "ema_fast", "kind": "ema", "params": {"span": 10}, "input": "close"},
    {"name": "ema_slow", "kind": "ema", "params": {"span": 40}, "input": "close"},
    {"name": "rsi", "kind": "rsi", "params": {"window": 14}, "input": "close"},
    {"name": "macd", "kind": "macd", "input": "close"},
    {"name": "atr", "kind": "atr", "params": {"window": 14}},
    {"name": "z", "kind": "rolling_zscore", "params": {"window": 50}, "input": "r"},
]


def btc_bars(rows: int | None = None) -> pd.DataFrame:
    """The shipped BTC-USD 4h bars (first ``rows``)."""
    table = Catalog(CATALOG).read("coinbase", "spot", "BTC-USD", "bars_4h")
    frame = table.to_pandas()
    return frame.iloc[:rows].reset_index(drop=True) if rows else frame


def daily_from_4h(bars: pd.DataFrame) -> pd.DataFrame:
    """Daily bars aggregated from 4h bars (close time = end of the UTC day; only whole days)."""
    day = (bars["ts_event"].to_numpy() - 1) // DAY
    g = bars.groupby(day)
    out = pd.DataFrame(
        {
            "ts_event": (g["ts_event"].max().index.to_numpy() + 1) * DAY,
            "open": g["open"].first().to_numpy(),
            "high": g["high"].max().to_numpy(),
            "low": g["low"].min().to_numpy(),
            "close": g["close"].last().to_numpy(),
            "volume": g["volume"].sum().to_numpy(),
            "count": g.size().to_numpy(),
        }
    )
    out = out[out["count"] == 6].drop(columns="count").reset_index(drop=True)
    out["ts_init"] = out["ts_event"]
    return out


def write_bars(root: Path, bars: pd.DataFrame, symbol: str, dataset: str, interval_ns: int) -> str:
    """Write bars to a catalog under ``sim/spot/<symbol>/<dataset>``; returns the dataset path."""
    cols = ["ts_event", "ts_init", "open", "high", "low", "close", "volume"]
    table = pa.Table.from_pandas(bars[cols].reset_index(drop=True), preserve_index=False)
    Catalog(root).write(table, "sim", "spot", symbol, dataset, period="year", kind="bars", interval_ns=interval_ns)
    return f"sim/spot/{symbol}/{dataset}"


def random_walk(n: int, seed: int = 3, start: int = 1_600_000_000 * 1_000_000_000, step: int = H4) -> pd.DataFrame:
    """OHLC random walk with positive prices and close times ``start + k*step``."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    open_ = np.concatenate([[100.0], close[:-1]]) * np.exp(rng.normal(0.0, 0.002, n))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, 0.006, n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, 0.006, n)))
    ts = start + step * np.arange(1, n + 1, dtype=np.int64)
    return pd.DataFrame(
        {"ts_event": ts, "ts_init": ts, "open": open_, "high": high, "low": low, "close": close,
         "volume": rng.uniform(1.0, 5.0, n)}
    )


def warned_quickstart(tmp_path: Path) -> Path:
    """configs/quickstart.yaml (its catalog made absolute) run by a user's EmaCross warning at each denied order
    (tests/fixtures/warned_denials): what a re-run of a research command may log."""
    import yaml

    config = yaml.safe_load((REPO / "configs" / "quickstart.yaml").read_text())
    config["data"]["catalog"] = str(REPO / "data" / "catalog")
    config["strategy"]["name"] = "warned_ema:WarnedEmaCross"
    config["strategy"]["module_dir"] = str(REPO / "tests" / "fixtures" / "warned_denials")
    path = tmp_path / "quickstart.yaml"
    path.write_text(yaml.safe_dump(config))
    return path
