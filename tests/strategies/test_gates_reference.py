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


@pytest.mark.parametrize(("window", "q", "rounded"), [(20, 0.1, False), (288, 0.25, False), (20, 0.1, True),
                                                      (31, 0.3, True)])
def test_quantile_gate_decides_as_np_quantile_of_each_window_without_calling_it(
        monkeypatch: pytest.MonkeyPatch, window: int, q: float, rounded: bool) -> None:
    """The gate ran np.quantile on its window twice a bar (a partition of a copy each); its thresholds are now
    the same floats from a sorted window, so every decision is the old formula's (whole-bps edges: many ties
    and edges exactly on a threshold)."""
    edges = _edges()
    if rounded:
        edges = np.round(edges)
    gates = _gates("quantile", window=window, q=q)
    calls = []
    quantile = np.quantile
    monkeypatch.setattr(np, "quantile", lambda *a, **k: calls.append(1) or quantile(*a, **k))
    history: list[float] = []
    on_threshold = decided = 0
    for edge in edges:
        direction, gate, _ = gates.update(float(edge), 10.0)
        if math.isfinite(edge) and edge != 0 and len(history) >= window:
            past = np.array(history[-window:])
            threshold = float(quantile(past, 1.0 - q)) if edge > 0 else float(quantile(past, q))
            want = edge >= threshold if edge > 0 else edge <= threshold
            assert (gate == "pass") == want
            on_threshold += edge == threshold
            decided += 1
        if math.isfinite(edge):
            history.append(float(edge))
        if len(history) >= window:  # the window the next bar is judged on, both tails, bit for bit
            past = np.array(history[-window:])
            for tail in (q, 1.0 - q):
                assert np.float64(gates._quantile(tail)).view(np.int64) == \
                    np.float64(quantile(past, tail)).view(np.int64)
    assert calls == [] and decided > 1000, on_threshold
    assert on_threshold > 0 if rounded else True


@pytest.mark.parametrize("window", [2, 20, 288])
def test_quantile_gate_turned_on_mid_run_judges_on_the_last_window_of_edges(window: int) -> None:
    """EdgeGates.config swapped for one with the quantile gate on at bar 500, off at 1,500 and on again at 1,800:
    each judged bar is decided on np.quantile of the last ``window`` finite edges, those seen while the gate was
    off included, as the history it keeps for it holds them (the sorted window, kept only while the gate is on,
    must not be an empty or stale one)."""
    edges = _edges()
    off = GatesConfig.model_validate(OFF)
    on = GatesConfig.model_validate({**OFF, "quantile": {"enabled": True, "window": window, "q": 0.25}})
    gates = EdgeGates(on)
    gates.config = off
    history: list[float] = []
    decided = 0
    for n, edge in enumerate(edges):
        if n in (500, 1_800):
            gates.config = on
        elif n == 1_500:
            gates.config = off
        _, gate, _ = gates.update(float(edge), 10.0)
        if gates.config is on and math.isfinite(edge) and edge != 0:
            want = len(history) >= window
            if want:
                past = np.array(history[-window:])
                threshold = float(np.quantile(past, 0.75 if edge > 0 else 0.25))
                want = edge >= threshold if edge > 0 else edge <= threshold
            assert (gate == "pass") == want, (n, edge)
            decided += 1
        if math.isfinite(edge):
            history.append(float(edge))
    assert decided > 1_000
