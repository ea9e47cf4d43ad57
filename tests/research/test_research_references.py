"""Labels and features on real bars against references written from their definitions, and the future perturbed.

The bars are the Coinbase BTC-USD 4h fixture (tests/fixtures/bars, one missing candle), so a
vertical barrier in time (``max_ns``) and one in bars (``max_bars``) differ around the gap.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tradebus.features.batch import compute_features
from tradebus.features.registry import all_kinds
from tradebus.research.labels import average_uniqueness, cusum_events, triple_barrier, volatility

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "bars" / "coinbase_btc_usd_4h_sample.csv"
H4 = 4 * 3600 * 1_000_000_000
BAR_FIELDS = ["open", "high", "low", "close", "volume"]


def fixture_bars() -> pd.DataFrame:
    """The fixture's candles with ``ts_event`` at their close (start + 4h), in ns."""
    raw = pd.read_csv(FIXTURE)
    bars = raw[BAR_FIELDS].astype(np.float64)
    bars.insert(0, "ts_event", raw["ts"].to_numpy(dtype=np.int64) * 1_000_000 + H4)
    return bars


def perturbed_after(bars: pd.DataFrame, t: int, seed: int = 7) -> pd.DataFrame:
    """``bars`` with every row from position ``t`` on shocked by up to ~30 % (high/low kept around open/close)."""
    out = bars.copy()
    rng = np.random.default_rng(seed)
    for col in BAR_FIELDS:
        out.loc[t:, col] = out.loc[t:, col].to_numpy() * np.exp(rng.normal(0.0, 0.1, len(out) - t))
    out["high"] = out[["open", "high", "low", "close"]].max(axis=1)
    out["low"] = out[["open", "high", "low", "close"]].min(axis=1)
    return out


def loop_triple_barrier(bars: pd.DataFrame, events: np.ndarray, width: np.ndarray, pt: float, sl: float,
                        max_bars: int | None, max_ns: int | None, side: float, tie: str) -> pd.DataFrame:
    """First touch, bar by bar, as the triple-barrier method is stated (gap at the open fills at the open)."""
    ts = bars["ts_event"].to_numpy()
    o, h, lo, c = (bars[x].to_numpy() for x in ("open", "high", "low", "close"))
    n = len(bars)
    rows = []
    for i in events:
        if not (np.isfinite(width[i]) and width[i] > 0):
            continue
        profit_px = c[i] * (1 + side * pt * width[i])
        stop_px = c[i] * (1 - side * sl * width[i])
        last = n - 1
        if max_bars is not None:
            last = min(last, i + max_bars)
        if max_ns is not None:
            last = min(last, max(j for j in range(n) if ts[j] <= ts[i] + max_ns))
        end, barrier, px = last, 0, c[last]
        for j in range(i + 1, last + 1):
            # in the trade's direction: a long profits upwards, a short downwards
            best, worst, opening = (h[j], lo[j], o[j]) if side > 0 else (-lo[j], -h[j], -o[j])
            up, down = side * profit_px, side * stop_px
            if opening >= up:
                end, barrier, px = j, 1, o[j]
            elif opening <= down:
                end, barrier, px = j, -1, o[j]
            elif best >= up and worst <= down:
                first = {"stop": -1, "profit": 1,
                         "open": 1 if abs(profit_px - o[j]) < abs(stop_px - o[j]) else -1}[tie]
                end, barrier, px = j, first, profit_px if first == 1 else stop_px
            elif best >= up:
                end, barrier, px = j, 1, profit_px
            elif worst <= down:
                end, barrier, px = j, -1, stop_px
            else:
                continue
            break
        rows.append({"index": i, "end_index": end, "t1": ts[end], "barrier": barrier,
                     "ret": side * (px / c[i] - 1)})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("side", [1.0, -1.0])
@pytest.mark.parametrize("tie", ["stop", "profit", "open"])
@pytest.mark.parametrize(("max_bars", "max_ns"), [(12, None), (None, 12 * H4), (30, 5 * H4)])
def test_triple_barrier_on_real_bars_equals_a_loop_over_its_definition(side: float, tie: str, max_bars: int | None,
                                                                       max_ns: int | None) -> None:
    bars = fixture_bars()
    width = volatility(bars, "ewm", 20)
    events = cusum_events(bars["close"].to_numpy(), 1.0 * width)
    # narrow barriers so that both lie inside one bar often enough for the tie-break to matter
    got = triple_barrier(bars, events, width=width, pt=0.6, sl=0.4, max_bars=max_bars, max_ns=max_ns, side=side,
                         tie_break=tie)  # type: ignore[arg-type]
    want = loop_triple_barrier(bars, events, width, 0.6, 0.4, max_bars, max_ns, side, tie)
    assert len(got) == len(want) > 300
    for col in ("index", "end_index", "t1", "barrier"):
        assert got[col].tolist() == want[col].tolist(), col
    np.testing.assert_allclose(got["ret"].to_numpy(), want["ret"].to_numpy(), rtol=0, atol=1e-14)


def test_average_uniqueness_on_real_labels_equals_pandas_over_the_indicator_matrix() -> None:
    bars = fixture_bars()
    width = volatility(bars, "ewm", 20)
    labels = triple_barrier(bars, np.arange(100, 700), width=width, pt=1.5, sl=1.0, max_bars=12)
    start, end = labels["index"].to_numpy(), labels["end_index"].to_numpy()
    # indicator matrix: bar t x label k = 1 when t lies in [start_k, end_k]; uniqueness = 1 / concurrency there
    indicator = pd.DataFrame(0, index=range(len(bars)), columns=range(len(labels)))
    for k, (a, b) in enumerate(zip(start, end, strict=True)):
        indicator.loc[a:b, k] = 1
    unique = indicator.div(indicator.sum(axis=1).replace(0, np.nan), axis=0)
    want = [unique.loc[a:b, k].mean() for k, (a, b) in enumerate(zip(start, end, strict=True))]
    np.testing.assert_allclose(average_uniqueness(start, end, len(bars)), want, rtol=1e-12)


def test_perturbing_bars_after_t_moves_no_label_ending_before_t_nor_any_feature_at_t() -> None:
    bars = fixture_bars()
    t = 2000
    shocked = perturbed_after(bars, t)
    vol, vol_shocked = volatility(bars, "ewm", 20), volatility(shocked, "ewm", 20)
    assert np.array_equal(vol[:t], vol_shocked[:t], equal_nan=True)
    events = cusum_events(bars["close"].to_numpy(), 2.0 * vol)
    events_shocked = cusum_events(shocked["close"].to_numpy(), 2.0 * vol_shocked)
    assert np.array_equal(events[events < t], events_shocked[events_shocked < t])
    labels = triple_barrier(bars, events, width=vol, pt=1.5, sl=1.0, max_bars=12).set_index("index")
    labels_shocked = triple_barrier(shocked, events_shocked, width=vol_shocked, pt=1.5, sl=1.0,
                                    max_bars=12).set_index("index")
    known = labels[labels["end_index"] < t]
    assert len(known) > 300
    pd.testing.assert_frame_equal(known, labels_shocked.loc[known.index])
    # every bar-fed feature kind (default parameters, required ones at their lowest): rows before t unchanged
    checked = []
    for kind in all_kinds():
        if kind.name in ("garch", "hmm"):  # need parameters chosen for the data
            continue
        spec: dict[str, object] = {"name": "f", "kind": kind.name}
        required = {p.name: (p.low if p.low and p.low > 0 else 3) for p in kind.params if p.default is None}
        if required:
            spec["params"] = required
        if not set(kind.inputs) <= set(BAR_FIELDS):
            inputs = [BAR_FIELDS[(3 + k) % 5] for k in range(len(kind.inputs))]
            spec["input"] = inputs[0] if len(inputs) == 1 else inputs
        before = compute_features(bars, [spec], event="bar")
        after = compute_features(shocked, [spec], event="bar")
        pd.testing.assert_frame_equal(before.iloc[:t], after.iloc[:t], obj=kind.name)
        checked.append(kind.name)
    assert len(checked) >= 40
