"""Bars from trades: live == batch bit for bit, and each kind against an independent pandas reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from tradebus.errors import FeatureError
from tradebus.features.bars import BarBuilder

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "data"
SECOND_NS = 1_000_000_000


def real_trades() -> pd.DataFrame:
    """2,001 real Binance spot BTCUSDT trades (2021-01-08)."""
    raw = pq.read_table(FIXTURES / "btcusdt-trades.parquet").to_pandas()
    return pd.DataFrame({
        "ts": raw["timestamp"].astype("int64").to_numpy() * 1_000_000,
        "price": raw["price"].to_numpy(),
        "size": raw["quantity"].to_numpy(),
        "side": np.where(raw["buyer_maker"] == "True", -1, 1).astype(np.int8),
    })


BUILDERS = [
    ("time", {"interval_ns": 5 * SECOND_NS}),
    ("tick", {"threshold": 37}),
    ("volume", {"threshold": 2.5}),
    ("dollar", {"threshold": 100_000.0}),
]


@pytest.mark.parametrize(("mode", "kw"), BUILDERS)
@pytest.mark.parametrize("split", [0, 1, 777, 2001])
def test_live_updates_equal_the_batch_run_bit_for_bit(mode: str, kw: dict, split: int) -> None:
    t = real_trades()
    batch_ts, batch = BarBuilder(mode, **kw).run(t.ts, t.price, t["size"], t.side)
    live = BarBuilder(mode, **kw)
    first_ts, first = live.run(t.ts[:split], t.price[:split], t["size"][:split], t.side[:split])
    got_ts, got = [*first_ts], [*first]
    for row in t.iloc[split:].itertuples(index=False):
        bar = live.update(row.ts, row.price, row.size, row.side)
        if bar is not None:
            got_ts.append(bar[0])
            got.append(bar[1])
    assert np.array_equal(np.array(got_ts, dtype=np.int64), batch_ts)
    assert np.array_equal(np.array(got).reshape(-1, 9), batch)
    assert len(batch_ts) > 5


def _reference(t: pd.DataFrame, key: np.ndarray, stamp: pd.Series) -> pd.DataFrame:
    g = t.assign(key=key, notional=t.price * t["size"], buy=np.where(t.side > 0, t["size"], 0.0),
                 sell=np.where(t.side < 0, t["size"], 0.0)).groupby("key", sort=True)
    out = pd.DataFrame({
        "open": g.price.first(), "high": g.price.max(), "low": g.price.min(), "close": g.price.last(),
        "volume": g["size"].sum(), "trades": g.price.size().astype(float), "buy": g.buy.sum(), "sell": g.sell.sum(),
    })
    out["vwap"] = g.notional.sum() / out.volume
    out["ts"] = stamp.groupby(key).last().to_numpy() if stamp is not None else None
    return out


def _compare(ts: np.ndarray, bars: np.ndarray, ref: pd.DataFrame) -> None:
    assert len(ts) == len(ref)
    assert np.array_equal(ts, ref.ts.to_numpy(dtype=np.int64))
    for i, name in enumerate(("open", "high", "low", "close")):
        assert np.array_equal(bars[:, i], ref[name].to_numpy())
    np.testing.assert_allclose(bars[:, 4], ref.volume, rtol=1e-12)
    np.testing.assert_allclose(bars[:, 5], ref.vwap, rtol=1e-12)
    assert np.array_equal(bars[:, 6], ref.trades.to_numpy())
    np.testing.assert_allclose(bars[:, 7], ref.buy, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(bars[:, 8], ref.sell, rtol=1e-12, atol=1e-15)


def test_time_bars_match_a_pandas_resample_without_the_unfinished_last_bar() -> None:
    t = real_trades()
    interval = 5 * SECOND_NS
    ts, bars = BarBuilder("time", interval_ns=interval).run(t.ts, t.price, t["size"], t.side)
    bucket = t.ts.to_numpy() // interval
    ref = _reference(t, bucket, pd.Series((bucket + 1) * interval))
    _compare(ts, bars, ref.iloc[:-1])  # the last bucket has no later trade yet: not emitted
    assert np.all(ts % interval == 0)  # stamped at the bucket's close


def test_tick_volume_and_dollar_bars_match_cumulative_references() -> None:
    t = real_trades()
    n = len(t)
    tick_ts, tick = BarBuilder("tick", threshold=37).run(t.ts, t.price, t["size"], t.side)
    key = np.arange(n) // 37
    full = key < n // 37
    _compare(tick_ts, tick, _reference(t[full], key[full], t.ts[full]))
    for mode, amount, threshold in (("volume", t["size"], 2.5), ("dollar", t.price * t["size"], 100_000.0)):
        ts, bars = BarBuilder(mode, threshold=threshold).run(t.ts, t.price, t["size"], t.side)
        # reference: bar ids by a plain loop over the amounts, each bar closed by the trade reaching the threshold
        ids, bar, acc = np.empty(n, dtype=np.int64), 0, 0.0
        for i, a in enumerate(amount.to_numpy()):
            ids[i] = bar
            acc += a
            if acc >= threshold:
                bar, acc = bar + 1, 0.0
        done = ids < bar
        _compare(ts, bars, _reference(t[done], ids[done], t.ts[done]))


def test_flush_emits_the_unfinished_bar_and_bad_parameters_are_refused() -> None:
    b = BarBuilder("time", interval_ns=10)
    assert b.update(3, 1.0, 1.0) is None and b.update(7, 2.0, 1.0) is None
    ts, values = b.flush()
    assert ts == 10 and values[0] == 1.0 and values[3] == 2.0
    assert b.flush() is None
    with pytest.raises(FeatureError):
        BarBuilder("renko", threshold=1.0)
    with pytest.raises(FeatureError):
        BarBuilder("volume")
