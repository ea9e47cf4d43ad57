"""Shared data makers for the feature framework tests (not a test module)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

BARS_CSV = Path(__file__).resolve().parents[1] / "fixtures" / "bars" / "coinbase_btc_usd_4h_sample.csv"


def real_bars() -> dict[str, np.ndarray]:
    """The 3,000 real Coinbase BTC-USD 4h candles of the shared fixture (ts in ms)."""
    raw = np.loadtxt(BARS_CSV, delimiter=",", skiprows=1)
    names = ("ts", "open", "high", "low", "close", "volume")
    return {name: np.ascontiguousarray(raw[:, i]) for i, name in enumerate(names)}


def messy_series(seed: int, n: int, nan_frac: float, const_run: bool, level: float = 100.0) -> np.ndarray:
    """Random walk with NaN holes, an optional constant run and an optional NaN gap."""
    rng = np.random.default_rng(seed)
    x = level * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    if const_run and n > 10:
        start = int(rng.integers(0, n - 5))
        x[start : start + int(rng.integers(3, 40))] = x[start]
    if nan_frac > 0:
        x[rng.random(n) < nan_frac] = np.nan
    return x


def kind_inputs(input_names: tuple[str, ...], seed: int, n: int, nan_frac: float, const_run: bool) -> np.ndarray:
    """(n, n_inputs) inputs shaped after their names (time increasing, side in {-1, 0, 1}, sizes > 0)."""
    rng = np.random.default_rng(seed + 7919)
    cols = []
    base = messy_series(seed, n, 0.0, const_run)
    for j, name in enumerate(input_names):
        if name == "time":
            col = 1_700_000_000.0 + np.cumsum(rng.integers(1, 7200, n)).astype(np.float64)
        elif name == "side":
            col = rng.integers(-1, 2, n).astype(np.float64)
        elif name in ("volume", "size", "qty", "bid_size", "ask_size") or name.endswith("_sz") or "sz_" in name:
            col = rng.lognormal(1.0, 1.0, n)
        elif name in ("bid", "ask") or name.startswith(("bid_px_", "ask_px_")):
            level = int(name.rsplit("_", 1)[1]) + 1 if name[-1].isdigit() else 1
            sign = -1.0 if name.startswith("bid") else 1.0
            col = base * (1.0 + sign * 0.0005 * level)
        elif name == "high":
            col = base * (1.0 + np.abs(rng.normal(0, 0.003, n)))
        elif name == "low":
            col = base * (1.0 - np.abs(rng.normal(0, 0.003, n)))
        elif j == 0 or name in ("x", "close", "price"):
            col = base.copy()
        else:
            col = messy_series(seed + j, n, 0.0, const_run)
        if nan_frac > 0:
            col[rng.random(n) < nan_frac] = np.nan
        cols.append(col)
    return np.ascontiguousarray(np.column_stack(cols)) if cols else np.zeros((n, 0))
