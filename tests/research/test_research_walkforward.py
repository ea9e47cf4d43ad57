"""Walk-forward retraining: purged training sets, per-segment models, stitched equity, determinism."""

from __future__ import annotations

import numpy as np
import pytest
from loguru import logger
from research_helpers import IID, SPECS, btc_bars
from scipy.stats import spearmanr
from xgboost import XGBClassifier

from tradebus.engine.instrument import Instrument
from tradebus.errors import ConfigError
from tradebus.execution.config import VenueConfig
from tradebus.features.batch import compute_features
from tradebus.research.labels import forward_returns
from tradebus.research.walkforward import walk_forward

COLUMNS = ("vol", "rsi", "z", "macd.hist")
INSTRUMENT = Instrument(venue="COINBASE", symbol="BTC-USD", tick_size=0.01, lot_size=1e-8, taker_fee=0.001)


def run(bars=None, seed: int = 0):  # type: ignore[no-untyped-def]
    bars = btc_bars(3000) if bars is None else bars
    fwd = forward_returns(bars, [12])
    model = XGBClassifier(n_estimators=20, max_depth=3, n_jobs=1, subsample=0.8)
    return bars, fwd, walk_forward(
        bars, INSTRUMENT, SPECS, COLUMNS, fwd["fwd_12"].to_numpy(), fwd["t1_12"].to_numpy(), model,
        retrain_every=500, min_train=1000, quantity=0.5, venue=VenueConfig(slippage_bps=1.0), seed=seed,
    )


def test_walk_forward_segments_use_purged_past_models_and_stitch_the_equity() -> None:
    bars, fwd, out = run()
    seg = out.segments
    assert seg["segment"].tolist() == [0, 1, 2, 3] and seg["start"].iat[0] == bars["ts_event"].iat[1000]
    ts = bars["ts_event"].to_numpy()
    X = compute_features(bars, SPECS, event="bar")[list(COLUMNS)].to_numpy()
    usable = ~np.isnan(X).any(axis=1) & ~np.isnan(fwd["fwd_12"].to_numpy())
    t1 = fwd["t1_12"].to_numpy()
    for k, s in enumerate(range(1000, 3000, 500)):
        # purged: only labels known before the segment starts (12 bars of labels dropped)
        expected = int((usable[:s] & (t1[:s] < ts[s]) & (t1[:s] >= 0)).sum())
        assert seg["train_rows"].iat[k] == expected == int(usable[: s - 12].sum())
    # no output before the first segment; the outputs of segment k come from segment k's model
    assert np.isnan(out.outputs[:1000]).all()
    assert np.isfinite(out.outputs[1000:]).all()
    # pnl per segment adds up to the stitched out-of-sample equity change
    before = out.result.equity[[e.ts for e in out.result.equity].index(int(ts[999]))].equity
    assert seg["pnl"].sum() == pytest.approx(out.equity["equity"].iat[-1] - before, rel=1e-12)
    assert out.equity["ts"].iat[0] == ts[1000]
    assert seg["fills"].sum() == len(out.fills) > 0
    # IC and hit rate recomputed independently for segment 1
    o, r = out.outputs[1500:2000], fwd["fwd_12"].to_numpy()[1500:2000]
    assert seg["ic"].iat[1] == pytest.approx(spearmanr(o, r).statistic)
    assert seg["hit_rate"].iat[1] == pytest.approx(np.mean((o > 0.5) == (r > 0)))


def test_walk_forward_counts_and_warns_of_the_orders_it_denied() -> None:
    """research_btc.yaml's last segment made 0 fills with model outputs up to 0.68 > upper 0.55: each 0.5 BTC buy
    (~56,500) was denied for buying power (48,017 left), said only at INFO level, and no count showed it."""
    bars = btc_bars(3000)
    fwd = forward_returns(bars, [12])
    messages: list[str] = []
    sink = logger.add(lambda m: messages.append(m.record["message"]), level="WARNING")
    try:  # 100 BTC: within the 100,000 of cash at 2016 prices, beyond it once BTC passes 1,000 (2017-01)
        out = walk_forward(bars, INSTRUMENT, SPECS, COLUMNS, fwd["fwd_12"].to_numpy(), fwd["t1_12"].to_numpy(),
                           XGBClassifier(n_estimators=5, max_depth=2, n_jobs=1), retrain_every=500, min_train=1000,
                           quantity=100.0)
    finally:
        logger.remove(sink)
    denials = out.result.denials
    assert denials and all("buying_power" in d.reason for d in denials)
    ts = bars["ts_event"].to_numpy()
    starts = [ts[s] for s in range(1000, 3000, 500)]
    expected = [sum(1 for d in denials if a <= d.ts_event < b) for a, b in zip(starts, [*starts[1:], ts[-1] + 1],
                                                                             strict=True)]
    assert out.segments["denied"].tolist() == expected and out.summary()["denied"] == len(denials)
    assert [m for m in messages if m.startswith(f"walk-forward: {len(denials)} order(s) denied by buying_power, the first at ")]


def test_walk_forward_is_deterministic_and_the_seed_matters() -> None:
    _, _, a = run(seed=3)
    _, _, b = run(seed=3)
    _, _, c = run(seed=4)
    assert a.segments.equals(b.segments) and a.fills.equals(b.fills) and a.equity.equals(b.equity)
    assert not np.array_equal(a.outputs, c.outputs, equal_nan=True)


def test_walk_forward_rejects_impossible_windows() -> None:
    bars = btc_bars(100)
    with pytest.raises(ConfigError, match="give one of"):
        walk_forward(bars, INSTRUMENT, SPECS, COLUMNS, np.zeros(100), np.zeros(100, dtype=np.int64),
                     XGBClassifier(), min_train=10, quantity=1.0)
    with pytest.raises(ConfigError, match="min_train"):
        walk_forward(bars, INSTRUMENT, SPECS, COLUMNS, np.zeros(100), np.zeros(100, dtype=np.int64),
                     XGBClassifier(), retrain_every=10, min_train=100, quantity=1.0)
    assert IID == INSTRUMENT.instrument_id


def test_walk_forward_retrains_every_n_days() -> None:
    bars = btc_bars(3000)
    fwd = forward_returns(bars, [12])
    day = 86_400 * 10**9
    out = walk_forward(bars, INSTRUMENT, SPECS, COLUMNS, fwd["fwd_12"].to_numpy(), fwd["t1_12"].to_numpy(),
                       XGBClassifier(n_estimators=5, n_jobs=1), retrain_every_ns=60 * day, min_train=1000,
                       quantity=0.5)
    starts = out.segments["start"].to_numpy()
    ts = bars["ts_event"].to_numpy()
    assert starts[0] == ts[1000]
    # one segment per 60 days (a 4h bar series: 360 bars), each starting at the first bar at or after its mark
    marks = ts[1000] + 60 * day * np.arange(len(starts))
    assert np.array_equal(starts, ts[np.searchsorted(ts, marks)])
    assert len(starts) == int((ts[-1] - ts[1000]) // (60 * day)) + 1


def test_walk_forward_without_a_training_row_or_with_one_class_says_which() -> None:
    bars = btc_bars(600)
    fwd = forward_returns(bars, [12])
    ret, t1 = fwd["fwd_12"].to_numpy(), fwd["t1_12"].to_numpy()
    kwargs = {"retrain_every": 100, "quantity": 1.0}
    # rsi, z and macd are not ready at bar 20 (the z-score's 50-bar window): nothing to train on
    with pytest.raises(ConfigError, match=r"no training row before bar 20 \(.*\): no earlier bar has every model column"):
        walk_forward(bars, INSTRUMENT, SPECS, COLUMNS, ret, t1, XGBClassifier(n_estimators=2), min_train=20, **kwargs)
    # every ready row before bar 500 has a label that rose
    with pytest.raises(ConfigError, match=r"the \d+ training rows before bar 500 .* all have a label return > 0"):
        walk_forward(bars, INSTRUMENT, SPECS, COLUMNS, np.abs(ret), t1, XGBClassifier(n_estimators=2), min_train=500,
                     **kwargs)


def test_walk_forward_clips_each_segment_by_its_training_rows_only() -> None:
    bars = btc_bars(2000)
    fwd = forward_returns(bars, [12])
    ret, t1 = fwd["fwd_12"].to_numpy(), fwd["t1_12"].to_numpy()
    wild = ret.copy()
    wild[1500:] = np.where(np.arange(len(ret) - 1500) % 2, 5.0, -0.9)  # extreme labels from segment 1's start on

    def run(labels: np.ndarray):  # type: ignore[no-untyped-def]
        model = XGBClassifier(n_estimators=10, max_depth=2, n_jobs=1)
        return walk_forward(bars, INSTRUMENT, SPECS, COLUMNS, labels, t1, model, retrain_every=500, min_train=1000,
                            quantity=0.5, clip_quantile=0.1)

    calm, out = run(ret), run(wild)
    # segment 1 trains on labels known before bar 1500, with bounds from them: same model, same predictions
    assert np.array_equal(calm.outputs[:2000], out.outputs[:2000], equal_nan=True)
    assert calm.segments["train_rows"].equals(out.segments["train_rows"])
    # segment 1's IC: its labels clipped to the 10 % / 90 % quantiles of its training rows' returns
    ts = bars["ts_event"].to_numpy()
    X = compute_features(bars, SPECS, event="bar")[list(COLUMNS)].to_numpy()
    train = ~np.isnan(X[:1500]).any(axis=1) & ~np.isnan(ret[:1500]) & (t1[:1500] < ts[1500])
    lo, hi = np.quantile(ret[:1500][train], [0.1, 0.9])
    o, r = calm.outputs[1500:2000], ret[1500:2000]
    ok = ~np.isnan(r)
    assert calm.segments["ic"].iat[1] == pytest.approx(spearmanr(o[ok], np.clip(r[ok], lo, hi)).statistic, rel=1e-12)
    with pytest.raises(ConfigError, match=r"clip_quantile must be in \(0, 0.5\), got 0.5"):
        walk_forward(bars, INSTRUMENT, SPECS, COLUMNS, ret, t1, XGBClassifier(), retrain_every=500, min_train=1000,
                     quantity=0.5, clip_quantile=0.5)


def test_walk_forward_segments_of_bars_sharing_a_time_do_not_split_a_time() -> None:
    """Pairs of bars share a time: starts at bars 1001 and 1501 split a time; bar 1500, predicted
    by segment 1's model (the switch is by time), was counted in segment 0's IC and hit rate."""
    bars = btc_bars(2000)
    ts = bars["ts_event"].to_numpy()[::2].repeat(2)
    bars["ts_event"] = bars["ts_init"] = ts
    fwd = forward_returns(bars, [12])
    ret = fwd["fwd_12"].to_numpy()
    out = walk_forward(bars, INSTRUMENT, SPECS, COLUMNS, ret, fwd["t1_12"].to_numpy(),
                       XGBClassifier(n_estimators=5, max_depth=2, n_jobs=1), retrain_every=500, min_train=1001,
                       quantity=0.5)
    seg = out.segments
    # the segments start at bars 1000 and 1500, the first of their time
    assert seg["start"].tolist() == [ts[1000], ts[1500]] and ts[999] < ts[1000] and ts[1499] < ts[1500]
    assert np.isnan(out.outputs[:1000]).all() and np.isfinite(out.outputs[1000:]).all()
    for k, (a, b) in enumerate(((1000, 1500), (1500, 2000))):
        o, r = out.outputs[a:b], ret[a:b]
        ok = ~np.isnan(r)
        assert seg["ic"].iat[k] == pytest.approx(spearmanr(o[ok], r[ok]).statistic, rel=1e-12)
        assert seg["hit_rate"].iat[k] == pytest.approx(np.mean((o[ok] > 0.5) == (r[ok] > 0)), rel=1e-12)
    # the segments' pnl adds up to the out-of-sample equity change (a split time was counted in both)
    before = [e.equity for e in out.result.equity if e.ts < ts[1000]][-1]
    assert seg["pnl"].sum() == pytest.approx(out.equity["equity"].iat[-1] - before, rel=1e-12)
    assert seg["fills"].sum() == len(out.fills)


def test_walk_forward_segment_pnl_on_irregular_bars_is_the_equity_change_over_its_bars_hand_derived() -> None:
    """Bars 60 s, 540 s, 540 s apart: equity was sampled on a grid of the median gap (540 s), a bar
    after a 60 s gap had no sample, and a segment ending on it lost its last bar's PnL to the next."""
    bars = btc_bars(3000)
    gaps = np.where(np.arange(len(bars) - 1) % 3 == 0, 60, 540) * 1_000_000_000
    ts = int(bars["ts_event"].iat[0]) + np.concatenate(([0], np.cumsum(gaps)))
    bars["ts_event"] = bars["ts_init"] = ts
    fwd = forward_returns(bars, [12])
    out = walk_forward(bars, INSTRUMENT, SPECS, COLUMNS, fwd["fwd_12"].to_numpy(), fwd["t1_12"].to_numpy(),
                       XGBClassifier(n_estimators=5, max_depth=2, n_jobs=1), retrain_every=250, min_train=1000,
                       quantity=0.5)
    assert [e.ts for e in out.result.equity] == ts.tolist()  # one sample per bar
    fills = out.fills
    fill_ts = fills["ts_event"].to_numpy()
    qty = np.where(fills["side"] == "BUY", fills["quantity"], -fills["quantity"]).astype(float)
    cash = -qty * fills["price"].to_numpy() - fills["fee"].to_numpy()
    close = bars["close"].to_numpy()

    def equity(i: int) -> float:  # cash and position after the fills up to bar i, marked at its close
        done = fill_ts <= ts[i]
        return 100_000.0 + cash[done].sum() + qty[done].sum() * close[i]

    bounds = [*range(1000, 3000, 250), 3000]
    ends = [b - 1 for b in bounds[1:]]
    # a segment ends in a position on a bar 60 s after the one before (no sample on the 540 s grid)
    assert any(ts[i] - ts[i - 1] == 60_000_000_000 and qty[fill_ts <= ts[i]].sum() != 0.0 for i in ends)
    want = [equity(b - 1) - equity(a - 1) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    np.testing.assert_allclose(out.segments["pnl"].to_numpy(), want, rtol=0, atol=1e-9)
