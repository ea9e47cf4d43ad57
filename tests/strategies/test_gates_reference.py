"""EdgeGates' rolling z-score and quantile against plain references on real ETH/BTC bars.

The edge stream is the 6-bar log return (bps) of the shipped Freqtrade ETH/BTC 5-minute
closes (``data/catalog``), with its leading NaNs and its zero returns: a real, autocorrelated
series whose windows wrap the gates' history buffer many times.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tradebus.research.dataset import load_events
from tradebus.strategies.gates import EdgeGates, GatesConfig

REPO = Path(__file__).resolve().parents[2]
CATALOG = REPO / "data" / "catalog"
DATASET = "freqtrade/spot/ETH-BTC/bars_5m"
OFF = {name: {"enabled": False} for name in ("warmup", "cost", "zscore", "quantile", "persistence")}


def _edges() -> np.ndarray:
    close = load_events(CATALOG, DATASET)[1]["close"].to_numpy(dtype=np.float64)
    edges = np.log(close / np.roll(close, 6)) * 1e4
    edges[:6] = np.nan
    edges[1000:1003] = np.nan  # a gap inside the stream: NaN edges stay out of the history
    return edges


def _gates(gate: str, **params: float) -> EdgeGates:
    return EdgeGates(GatesConfig.model_validate({**OFF, gate: {"enabled": True, **params}}))


@pytest.mark.parametrize("window", [20, 288])
def test_zscore_equals_numpy_mean_and_std_of_each_window_bit_for_bit(window: int) -> None:
    edges = _edges()
    assert (edges == 0).any() and np.isnan(edges).sum() == 9
    gates = _gates("zscore", window=window, threshold=1.5)
    history: list[float] = []
    checked = 0
    for edge in edges:
        gates.update(float(edge), 10.0)
        if not math.isfinite(edge):
            assert math.isnan(gates.z)
            continue
        if len(history) < window:
            assert math.isnan(gates.z)
        else:
            past = np.array(history[-window:])  # a fresh array per window: numpy's own reductions
            std = float(past.std(ddof=1))
            want = (float(edge) - float(past.mean())) / std
            assert np.float64(gates.z).view(np.int64) == np.float64(want).view(np.int64), (checked, gates.z, want)
            checked += 1
        history.append(float(edge))
    assert checked == len(edges) - 9 - window


@pytest.mark.parametrize("window", [20, 288])
def test_zscore_matches_pandas_rolling(window: int) -> None:
    edges = _edges()
    gates = _gates("zscore", window=window, threshold=1.5)
    z = []
    for edge in edges:
        gates.update(float(edge), 10.0)
        z.append(gates.z)
    finite = pd.Series(edges).dropna()
    past = finite.shift(1).rolling(window)
    want = ((finite - past.mean()) / past.std(ddof=1)).reindex(range(len(edges)))
    got = pd.Series(z)
    assert got.isna().equals(want.isna())
    assert got.notna().sum() == len(edges) - 9 - window
    np.testing.assert_allclose(got.dropna(), want.dropna(), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(("window", "q"), [(20, 0.1), (288, 0.25)])
def test_quantile_gate_follows_pandas_rolling_quantiles(window: int, q: float) -> None:
    edges = _edges()
    gates = _gates("quantile", window=window, q=q)
    finite = pd.Series(edges).dropna()
    past = finite.shift(1).rolling(window)
    upper, lower = past.quantile(1 - q), past.quantile(q)
    passed = blocked = 0
    for i, edge in enumerate(edges):
        direction, gate, _ = gates.update(float(edge), 10.0)
        if not math.isfinite(edge) or edge == 0:
            assert gate == "edge"
            continue
        hi, lo = upper[i], lower[i]
        if math.isnan(hi):
            want = False
        else:
            want = edge >= hi if edge > 0 else edge <= lo
        assert (gate == "pass") == want, (i, edge, hi, lo, gate)
        passed += want
        blocked += not want
    assert passed > 100 and blocked > 1000
