"""Bars from trades: live == batch bit for bit, and each kind against an independent pandas reference."""

from __future__ import annotations

import re
from fractions import Fraction
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


@pytest.mark.parametrize(
    ("mode", "kw", "match"),
    [
        ("volume_imbalance", {"threshold": 50.0, "span_trades": float("nan")}, "span_trades=nan"),
        ("tick_imbalance", {"threshold": 50.0, "span_bars": float("nan")}, "span_bars=nan"),
        ("volume", {"threshold": float("inf")}, "finite threshold > 0, got inf"),
        ("tick", {"threshold": float("nan")}, "finite threshold > 0, got nan"),
        ("time", {"interval_ns": float("nan")}, "interval_ns, a whole number of nanoseconds > 0, got nan"),
        ("time", {"interval_ns": float("inf")}, "got inf"),
        ("time", {"interval_ns": 1.5}, "got 1.5"),
    ],
)
def test_impossible_bar_parameters_are_refused_naming_them(mode: str, kw: dict, match: str) -> None:
    """NaN spans left imbalance bars never closing (no bar at all), inf thresholds likewise; NaN/inf intervals raised
    a bare ValueError/OverflowError and 1.5 ns became 1 ns."""
    with pytest.raises(FeatureError, match=re.escape(match)):
        BarBuilder(mode, **kw)
    assert BarBuilder("time", interval_ns=60e9).run(np.array([0, 61 * 10**9]), np.ones(2), np.ones(2))[0].tolist() == [
        60 * 10**9
    ]


IMBALANCE = [
    ("tick_imbalance", {"threshold": 20.0, "span_bars": 5, "span_trades": 50}),
    ("volume_imbalance", {"threshold": 30.0, "span_bars": 10, "span_trades": 200}),
    ("dollar_imbalance", {"threshold": 15.0, "span_bars": 3, "span_trades": 100}),
]


@pytest.mark.parametrize(("mode", "kw"), IMBALANCE)
@pytest.mark.parametrize("split", [0, 1, 1000])
def test_imbalance_bars_live_equal_batch_bit_for_bit(mode: str, kw: dict, split: int) -> None:
    t = real_trades()
    batch_ts, batch = BarBuilder(mode, **kw).run(t.ts, t.price, t["size"], t.side)
    live = BarBuilder(mode, **kw)
    first_ts, first = BarBuilder(mode, **kw).run(t.ts[:0], t.price[:0], t["size"][:0], t.side[:0])
    assert first_ts.size == 0 and first.shape == (0, 9)
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
    assert 5 < len(batch_ts) < len(t) // 2


def _imbalance_ids(price: np.ndarray, size: np.ndarray, side: np.ndarray, mode: str, threshold: float,
                   span_bars: int, span_trades: int, floor: float = 0.5) -> np.ndarray:
    """Bar ids by the rule in Lopez de Prado (2.3.2.1) with the documented clamp and floor, a plain loop."""
    a_bars, a_trades = 2 / (span_bars + 1), 2 / (span_trades + 1)
    ids = np.empty(len(price), dtype=np.int64)
    bar, theta, count, e_bx, e_x, prev_px, prev_b = 0, 0.0, 0, None, None, None, 0.0
    e_len = threshold
    for i, (p, s, a) in enumerate(zip(price, size, side)):
        if a != 0:
            b = float(np.sign(a))
        elif prev_px is None or p == prev_px:
            b = prev_b
        else:
            b = 1.0 if p > prev_px else -1.0
        prev_px, prev_b = p, b
        x = {"tick_imbalance": 1.0, "volume_imbalance": s, "dollar_imbalance": p * s}[mode]
        ids[i] = bar
        theta += b * x
        count += 1
        if e_bx is None:
            if b != 0:
                e_bx, e_x = b * x, x
            continue
        closes = abs(theta) >= e_len * max(abs(e_bx), floor * e_x)
        e_bx = e_bx + a_trades * (b * x - e_bx)
        e_x = e_x + a_trades * (x - e_x)
        if closes:
            e_len = min(2 * threshold, max(threshold / 2, e_len + a_bars * (count - e_len)))
            bar, theta, count = bar + 1, 0.0, 0
    return ids


@pytest.mark.parametrize(("mode", "kw"), IMBALANCE)
def test_imbalance_bars_match_a_plain_loop_of_the_published_rule(mode: str, kw: dict) -> None:
    t = real_trades()
    ts, bars = BarBuilder(mode, **kw).run(t.ts, t.price, t["size"], t.side)
    ids = _imbalance_ids(t.price.to_numpy(), t["size"].to_numpy(), t.side.to_numpy(), mode, kw["threshold"],
                         kw["span_bars"], kw["span_trades"])
    done = ids < ids[-1]  # the last bar is still open
    assert ids[-1] == len(ts) > 5
    _compare(ts, bars, _reference(t[done], ids[done], t.ts[done]))


def test_imbalance_bars_by_hand_aggressor_and_tick_rule() -> None:
    # aggressor signs + + + - - + + +, E[T] = 2, spans 1 (each EWMA is its last value), floor 0:
    # t1: |theta| 2 >= 2 * |1| closes [t0, t1]; E[T] = 2; then theta runs 1, 0, -1, 0, 1, 2: t7 closes [t2, t7]
    b = BarBuilder("tick_imbalance", threshold=2.0, span_bars=1, span_trades=1, floor=0.0)
    ts, bars = b.run(np.arange(8), np.full(8, 10.0), np.ones(8), np.array([1, 1, 1, -1, -1, 1, 1, 1]))
    assert ts.tolist() == [1, 7] and bars[:, 6].tolist() == [2.0, 6.0]
    assert bars[:, 7].tolist() == [2.0, 4.0] and bars[:, 8].tolist() == [0.0, 2.0]
    # tick rule, prices 10 11 11 10 9 9 10 11: signs 0 + + - - - + +; E[b x] starts at t1 (the first signed trade),
    # t2: |2| >= 2 * 1 closes [t0, t2]; E[T] = 3; t5: |-3| >= 3 * |-1| closes [t3, t5]; t6, t7 stay open
    b = BarBuilder("tick_imbalance", threshold=2.0, span_bars=1, span_trades=1, floor=0.0)
    price = np.array([10.0, 11, 11, 10, 9, 9, 10, 11])
    ts, bars = b.run(np.arange(8), price, np.ones(8))
    assert ts.tolist() == [2, 5] and bars[:, 0].tolist() == [10.0, 10.0] and bars[:, 3].tolist() == [11.0, 9.0]
    flushed_ts, flushed = b.flush()
    assert flushed_ts == 7 and flushed[0] == 10.0 and flushed[6] == 2.0


def test_imbalance_floor_keeps_balanced_flow_from_collapsing_to_one_trade_bars() -> None:
    # real trades are close to balanced: E[b x] hovers near 0 and the published rule alone (floor 0) closes a bar
    # at almost every trade; the floor makes the expected imbalance at least half a trade's amount
    t = real_trades()
    args = (t.ts, t.price, t["size"], t.side)
    bare, _ = BarBuilder("tick_imbalance", threshold=20.0, span_trades=50, floor=0.0).run(*args)
    floored, bars = BarBuilder("tick_imbalance", threshold=20.0, span_trades=50).run(*args)
    assert len(bare) > len(t) // 5  # bars of about 4 trades though E[T] is held at >= 10
    assert 10 < len(floored) < len(t) // 10 and bars[:, 6].min() >= 5  # |theta| >= E[T] / 2 * 0.5 * 1
    with pytest.raises(FeatureError, match="floor"):
        BarBuilder("volume_imbalance", threshold=1.0, floor=2.0)


def _one_by_one(mode: str, kw: dict, t: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    live, got_ts, got = BarBuilder(mode, **kw), [], []
    for row in t.itertuples(index=False):
        bar = live.update(row.ts, row.price, row.size, row.side)
        if bar is not None:
            got_ts.append(bar[0])
            got.append(bar[1])
    return np.array(got_ts, dtype=np.int64), np.array(got).reshape(-1, 9)


@pytest.mark.parametrize(("mode", "kw"), [
    ("tick", {"threshold": 1}),  # a bar per trade: the bound of the first buffer is exact
    ("volume", {"threshold": 1e-9}),  # a bar per trade, far more than the first buffer: it grows
    ("dollar", {"threshold": 100.0}),
    ("tick_imbalance", {"threshold": 0.5, "span_bars": 2, "span_trades": 2, "floor": 0.0}),
])
def test_a_batch_with_more_bars_than_its_first_buffer_equals_the_live_updates(mode: str, kw: dict) -> None:
    t = real_trades()
    batch_ts, batch = BarBuilder(mode, **kw).run(t.ts, t.price, t["size"], t.side)
    live_ts, live = _one_by_one(mode, kw, t)
    assert len(batch_ts) > 1024
    assert np.array_equal(batch_ts, live_ts) and np.array_equal(batch, live)


def test_time_bars_of_trades_out_of_time_order_equal_the_live_updates() -> None:
    # the last trade goes back to the first one's time: the bar count cannot be read off the ends
    t = real_trades()
    t = t.assign(ts=t.ts.iloc[0] + (t.ts - t.ts.iloc[0]) * 40)  # 46 s stretched to ~30 min: 1 s bars of few trades
    t = pd.concat([t, t.iloc[:1]], ignore_index=True)
    kw = {"interval_ns": SECOND_NS}
    batch_ts, batch = BarBuilder("time", **kw).run(t.ts, t.price, t["size"], t.side)
    live_ts, live = _one_by_one("time", kw, t)
    assert len(batch_ts) > 3
    assert np.array_equal(batch_ts, live_ts) and np.array_equal(batch, live)


@pytest.mark.parametrize("split", [0, 1, 700, 2001])
def test_whole_only_time_bars_drop_the_partial_first_bar_live_and_batch(split: int) -> None:
    t = real_trades()
    interval = 5 * SECOND_NS
    assert t.ts[0] % interval  # the data starts inside a 5 s interval
    every_ts, every = BarBuilder("time", interval_ns=interval).run(t.ts, t.price, t["size"], t.side)
    batch_ts, batch = BarBuilder("time", interval_ns=interval, whole_only=True).run(t.ts, t.price, t["size"], t.side)
    # the first bar (from the trades after the start of its interval only) is not emitted; the rest are
    assert every_ts[0] == (t.ts[0] // interval + 1) * interval
    assert np.array_equal(batch_ts, every_ts[1:]) and np.array_equal(batch, every[1:])
    live = BarBuilder("time", interval_ns=interval, whole_only=True)
    first_ts, first = live.run(t.ts[:split], t.price[:split], t["size"][:split], t.side[:split])
    got_ts, got = [*first_ts], [*first]
    for row in t.iloc[split:].itertuples(index=False):
        bar = live.update(row.ts, row.price, row.size, row.side)
        if bar is not None:
            got_ts.append(bar[0])
            got.append(bar[1])
    assert np.array_equal(np.array(got_ts, dtype=np.int64), batch_ts)
    assert np.array_equal(np.array(got).reshape(-1, 9), batch)


def test_whole_only_keeps_a_first_bar_opened_on_its_boundary_and_never_flushes_a_partial_one() -> None:
    b = BarBuilder("time", interval_ns=10, whole_only=True)
    assert b.update(20, 1.0, 1.0) is None and b.update(25, 2.0, 1.0) is None
    assert b.update(31, 3.0, 1.0) == (30, pytest.approx([1.0, 2.0, 1.0, 2.0, 2.0, 1.5, 2.0, 0.0, 0.0]))
    partial = BarBuilder("time", interval_ns=10, whole_only=True)
    assert partial.update(23, 1.0, 1.0) is None and partial.flush() is None
    assert partial.update(27, 2.0, 1.0) is None and partial.update(30, 3.0, 1.0) is None
    assert partial.flush()[0] == 40  # type: ignore[index]


def _feed(builder: BarBuilder, t: pd.DataFrame, live: bool) -> tuple[np.ndarray, np.ndarray]:
    """The bars ``builder`` emits over ``t``, trade by trade (``live``) or in one batch."""
    if not live:
        return builder.run(t.ts, t.price, t["size"], t.side)
    got = [bar for row in t.itertuples(index=False) if (bar := builder.update(row.ts, row.price, row.size, row.side))]
    return np.array([b[0] for b in got], dtype=np.int64), np.array([b[1] for b in got]).reshape(-1, 9)


@pytest.mark.parametrize("live", [True, False])
def test_time_bars_over_trades_lost_for_good_are_not_emitted_and_the_next_whole_one_is(live: bool) -> None:
    t = real_trades()
    interval = 2 * SECOND_NS
    # trades 900..1099 never arrive: printed between trade 899 and trade 1100 (the one revealing the gap)
    lost_from, lost_to = 900, 1100
    assert t.ts[lost_to] // interval > t.ts[lost_from - 1] // interval + 1  # the gap spans whole intervals
    every_ts, every = BarBuilder("time", interval_ns=interval).run(t.ts, t.price, t["size"], t.side)
    b = BarBuilder("time", interval_ns=interval, whole_only=True)
    before_ts, before = _feed(b, t.iloc[:lost_from], live)
    b.lose(int(t.ts[lost_to]))
    after_ts, after = _feed(b, t.iloc[lost_to:], live)
    first_lost = (t.ts[lost_from - 1] // interval + 1) * interval  # the bar the gap started in
    last_lost = (t.ts[lost_to] // interval + 1) * interval  # the bar of the trade that revealed it
    keep = (every_ts < first_lost) | (every_ts > last_lost)
    keep[0] = False  # the partial first bar (whole_only)
    assert np.array_equal(np.concatenate([before_ts, after_ts]), every_ts[keep])
    assert np.array_equal(np.concatenate([before, after]), every[keep])  # the others are whole, bit for bit
    assert after_ts[0] == last_lost + interval
    assert b.flush() is not None  # the last bar, after the gap, is whole


@pytest.mark.parametrize("live", [True, False])
@pytest.mark.parametrize(("mode", "kw"), [("tick", {"threshold": 37}), ("volume", {"threshold": 2.5}),
                                          ("volume_imbalance", {"threshold": 20})])
def test_other_bars_restart_after_trades_lost_for_good(mode: str, kw: dict, live: bool) -> None:
    t = real_trades()
    lost_from, lost_to = 900, 1100
    every_ts, every = BarBuilder(mode, **kw).run(t.ts, t.price, t["size"], t.side)
    b = BarBuilder(mode, **kw)
    before_ts, before = _feed(b, t.iloc[:lost_from], live)
    done = int(np.searchsorted(every_ts, t.ts[lost_from - 1], side="right"))
    assert np.array_equal(before_ts, every_ts[:done]) and np.array_equal(before, every[:done])
    b.lose(int(t.ts[lost_to]))
    # the bar in progress is dropped; the next one starts with the first trade after the revealing one's time
    after_ts, after = _feed(b, t.iloc[lost_to:], live)
    fresh = BarBuilder(mode, **kw)
    if mode.endswith("imbalance"):  # its expectations carry over the gap: compare bar boundaries only
        assert after_ts[0] > t.ts[lost_to] and len(after_ts) > 3
        return
    restart = t[t.ts > t.ts[lost_to]]
    fresh_ts, fresh_bars = fresh.run(restart.ts, restart.price, restart["size"], restart.side)
    assert np.array_equal(after_ts, fresh_ts) and np.array_equal(after, fresh_bars)
    assert len(after_ts) > 3


@pytest.mark.parametrize("live", [False, True])
def test_volume_and_dollar_bars_close_at_a_threshold_their_trades_reach_in_decimal(live: bool) -> None:
    """Ten trades of 0.1 BTC are a 1 BTC volume bar, though their float sum is 0.9999999999999999; ten of
    0.3 at 19.99 a 59.97 dollar bar (float sum 59.96999999999999). One lot (1e-8) short stays short."""
    def bars(mode: str, threshold: float, price: list[float], size: list[float]) -> list[int]:
        ts = np.arange(len(price), dtype=np.int64)
        b = BarBuilder(mode, threshold=threshold)
        if live:
            done = [b.update(int(t), p, s) for t, p, s in zip(ts, price, size, strict=True)]
            return [int(bar[1][6]) for bar in done if bar is not None]
        return b.run(ts, np.array(price), np.array(size))[1][:, 6].astype(int).tolist()

    # hand-derived, exact decimal: 10 * 0.1 == 1, 10 * 19.99 * 0.3 == 59.97
    assert 10 * Fraction("0.1") == 1 and 10 * Fraction("19.99") * Fraction("0.3") == Fraction("59.97")
    assert bars("volume", 1.0, [100.0] * 30, [0.1] * 30) == [10, 10, 10]
    assert bars("dollar", 59.97, [19.99] * 30, [0.3] * 30) == [10, 10, 10]
    short = [0.1] * 9 + [0.09999999] + [0.1]
    assert bars("volume", 1.0, [100.0] * 11, short) == [11]  # 0.99999999 after ten: the eleventh closes it
