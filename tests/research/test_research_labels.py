"""Labels: hand-derived cases and independent straightforward implementations written here."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from research_helpers import H4, btc_bars, random_walk

from tradebus.errors import DataError
from tradebus.research.labels import (
    average_uniqueness,
    concurrency,
    cusum_events,
    forward_label_end,
    forward_returns,
    mark_incomplete,
    meta_labels,
    return_attribution_weights,
    time_decay,
    triple_barrier,
    volatility,
)


def bars_of(rows: list[tuple[float, float, float, float]]) -> pd.DataFrame:
    o, h, lo, c = (np.array(col, dtype=float) for col in zip(*rows, strict=True))
    return pd.DataFrame({"ts_event": np.arange(1, len(rows) + 1, dtype=np.int64) * 10, "open": o, "high": h,
                         "low": lo, "close": c})


# ---------------------------------------------------------------------------- forward returns


def test_forward_returns_match_pandas_shift_in_every_kind() -> None:
    bars = btc_bars(500)
    c = bars["close"]
    raw = forward_returns(bars, [1, 6], "raw")
    np.testing.assert_array_equal(raw["fwd_6"].to_numpy(), (c.shift(-6) / c - 1).to_numpy())
    np.testing.assert_array_equal(raw["t1_1"].to_numpy()[:-1], bars["ts_event"].to_numpy()[1:])
    assert raw["t1_6"].iat[-6] == -1 and np.isnan(raw["fwd_6"].iat[-1])
    log = forward_returns(bars, [3], "log")
    np.testing.assert_allclose(log["fwd_3"], np.log(c.shift(-3) / c), rtol=1e-15)
    bps = forward_returns(bars, [3], "bps")
    np.testing.assert_allclose(bps["fwd_3"], (c.shift(-3) / c - 1) * 1e4, rtol=1e-15)
    clipped = forward_returns(bars, [1], "raw", clip_quantile=0.05)["fwd_1"]
    lo, hi = (c.shift(-1) / c - 1).quantile([0.05, 0.95])
    assert clipped.min() == pytest.approx(lo) and clipped.max() == pytest.approx(hi)
    with pytest.raises(DataError, match="horizons"):
        forward_returns(bars, [0])


# ---------------------------------------------------------------------------- triple barrier


def test_forward_label_end_is_the_longest_horizon_whatever_their_order() -> None:
    # irregular bars: the 1-bar gaps are 10, 100, 1, 1000, 5 ns
    ts = np.array([0, 10, 110, 111, 1111, 1116], dtype=np.int64)
    bars = pd.DataFrame({"ts_event": ts, "close": np.arange(1.0, 7.0)})
    frame = forward_returns(bars, [3, 1])
    # row i's labels are known at ts[i + 3]; the last three rows have no 3-bar label
    assert forward_label_end(frame, [3, 1]).tolist() == [111, 1111, 1116, -1, -1, -1]
    assert forward_label_end(frame, [1, 3]).tolist() == [111, 1111, 1116, -1, -1, -1]
    assert forward_label_end(frame, [1]).tolist() == [10, 110, 111, 1111, 1116, -1]
    with pytest.raises(DataError, match="no column 't1_2'"):
        forward_label_end(frame, [2])


def test_triple_barrier_hand_derived_long_and_short() -> None:
    # entry at close 100; pt = sl = 5 % (width 0.05, multipliers 1)
    bars = bars_of([(100, 100, 100, 100), (100, 103, 99, 102), (102, 106, 101, 105), (105, 105, 90, 91)])
    width = np.full(4, 0.05)
    long = triple_barrier(bars, [0], width=width, max_bars=3)
    assert long["barrier"].tolist() == [1] and long["end_index"].tolist() == [2]
    assert long["ret"].iat[0] == pytest.approx(0.05) and long["t1"].iat[0] == 30
    short = triple_barrier(bars, [0], width=width, max_bars=3, side=-1.0)
    # short: stop at 105 touched by bar 2's high 106 -> loss 5 %
    assert short["barrier"].tolist() == [-1] and short["ret"].iat[0] == pytest.approx(-0.05)
    # vertical at 1 bar: exit at close 102, label sign(+0.02)
    vert = triple_barrier(bars, [0], width=width, max_bars=1)
    assert vert["barrier"].tolist() == [0] and vert["ret"].iat[0] == pytest.approx(0.02)
    assert vert["label"].tolist() == [1] and vert["complete"].tolist() == [True]
    assert triple_barrier(bars, [0], width=width, max_bars=1, vertical_label="zero")["label"].tolist() == [0]


def test_triple_barrier_tie_break_and_gaps() -> None:
    # bar 1 spans both barriers (95 and 105); its open 96 is nearer the stop
    bars = bars_of([(100, 100, 100, 100), (96, 106, 94, 101), (101, 101, 101, 101)])
    w = np.full(3, 0.05)
    assert triple_barrier(bars, [0], width=w, max_bars=2)["barrier"].iat[0] == -1  # default: stop first
    assert triple_barrier(bars, [0], width=w, max_bars=2, tie_break="profit")["barrier"].iat[0] == 1
    assert triple_barrier(bars, [0], width=w, max_bars=2, tie_break="open")["barrier"].iat[0] == -1
    bars.loc[1, "open"] = 104.0
    assert triple_barrier(bars, [0], width=w, max_bars=2, tie_break="open")["barrier"].iat[0] == 1
    # a gap through the profit barrier exits at the open, not at the barrier
    gap = bars_of([(100, 100, 100, 100), (110, 112, 108, 111)])
    out = triple_barrier(gap, [0], width=np.full(2, 0.05), max_bars=1)
    assert out["barrier"].iat[0] == 1 and out["ret"].iat[0] == pytest.approx(0.10)


@pytest.mark.parametrize(("close", "fraction", "side", "bar", "barrier", "ret"), [
    (100.0, 0.10, 1.0, (101, 110, 100, 105), 1, 0.10),    # 100 * (1 + 0.1) is 110.00000000000001
    (10.0, 0.06, 1.0, (10, 10, 9.4, 9.5), -1, -0.06),     # 10 * (1 - 0.06) is 9.399999999999999
    (100.0, 0.09, -1.0, (100, 109, 99, 105), -1, -0.09),  # short stop 100 * (1 + 0.09)
    (10.0, 0.06, -1.0, (10, 10, 9.4, 9.5), 1, 0.06),      # short profit 10 * (1 - 0.06)
])
def test_triple_barrier_a_price_exactly_at_a_barrier_touches_it(close: float, fraction: float, side: float,
                                                                bar: tuple[float, ...], barrier: int,
                                                                ret: float) -> None:
    # plain fractions (no width); the next bar reaches the barrier exactly and no further
    bars = bars_of([(close, close, close, close), bar, (bar[3], bar[3], bar[3], bar[3])])
    out = triple_barrier(bars, [0], pt=fraction, sl=fraction, max_bars=2, side=side)
    assert out["barrier"].tolist() == [barrier] and out["end_index"].tolist() == [1]
    assert out["ret"].iat[0] == pytest.approx(ret, rel=1e-12)


def test_triple_barrier_vertical_in_time_regimes_and_incomplete_events() -> None:
    bars = bars_of([(100, 100.5, 99.5, 100)] * 6)
    out = triple_barrier(bars, [0, 4], width=np.full(6, 0.01), max_ns=25)  # times 10, 20 ..: 2 bars
    assert out["end_index"].tolist() == [2, 5]
    assert out["complete"].tolist() == [True, False]
    # both vertical barriers: the nearer one wins, and the event is complete when it lies in the data
    both = triple_barrier(bars, [0, 4], width=np.full(6, 0.01), max_ns=25, max_bars=1)
    assert both["end_index"].tolist() == [1, 5] and both["complete"].tolist() == [True, True]
    # regime 1 doubles the barriers: a 1 % move touches 0.5 % barriers but not 2 % ones
    moving = bars_of([(100, 100, 100, 100), (100, 101, 99.9, 101), (101, 101, 101, 101)])
    regime = np.array([1, 0, 0])
    plain = triple_barrier(moving, [0], width=np.full(3, 0.005), max_bars=2)
    scaled = triple_barrier(moving, [0], width=np.full(3, 0.005), max_bars=2, regime=regime,
                            regime_multipliers={1: (4.0, 4.0)})
    assert plain["barrier"].iat[0] == 1 and scaled["barrier"].iat[0] == 0
    assert scaled["pt_width"].iat[0] == pytest.approx(0.02)


def reference_triple_barrier(bars: pd.DataFrame, events: np.ndarray, width: np.ndarray, pt: float, sl: float,
                             max_bars: int, side: np.ndarray) -> list[tuple[int, int, float]]:
    """Straightforward reference: first bar (by array search) where a barrier is within the bar's range."""
    o, h, lo, c = (bars[k].to_numpy() for k in ("open", "high", "low", "close"))
    n = len(c)
    result = []
    for k, i in enumerate(events):
        s = side[k]
        upper = c[i] * (1 + (pt if s > 0 else sl) * width[i])
        lower = c[i] * (1 - (sl if s > 0 else pt) * width[i])
        last = min(n - 1, i + max_bars)
        window = slice(i + 1, last + 1)
        touch_up = np.flatnonzero(h[window] >= upper)
        touch_dn = np.flatnonzero(lo[window] <= lower)
        first_up = touch_up[0] if touch_up.size else np.inf
        first_dn = touch_dn[0] if touch_dn.size else np.inf
        if first_up == first_dn == np.inf:
            result.append((last, 0, s * (c[last] / c[i] - 1)))
            continue
        j = int(min(first_up, first_dn)) + i + 1
        up_hit, dn_hit = first_up == j - i - 1, first_dn == j - i - 1
        if o[j] >= upper:
            px, which = o[j], "up"
        elif o[j] <= lower:
            px, which = o[j], "dn"
        elif up_hit and dn_hit:  # both in one bar: the stop, i.e. the lower side for a long
            which = "dn" if s > 0 else "up"
            px = lower if which == "dn" else upper
        else:
            which = "up" if up_hit else "dn"
            px = upper if which == "up" else lower
        profit = (which == "up") == (s > 0)
        result.append((j, 1 if profit else -1, s * (px / c[i] - 1)))
    return result


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), pt=st.floats(0.5, 3.0), sl=st.floats(0.5, 3.0), max_bars=st.integers(1, 40))
def test_triple_barrier_equals_a_straightforward_reference(seed: int, pt: float, sl: float, max_bars: int) -> None:
    bars = random_walk(300, seed=seed)
    rng = np.random.default_rng(seed)
    width = volatility(bars, "ewm", span=10)
    events = np.sort(rng.choice(np.arange(20, 300), 60, replace=False))
    side = rng.choice([-1.0, 1.0], 60)
    out = triple_barrier(bars, events, width=width, pt=pt, sl=sl, max_bars=max_bars, side=side)
    ref = reference_triple_barrier(bars, events, width, pt, sl, max_bars, side)
    assert out["end_index"].tolist() == [r[0] for r in ref]
    assert out["barrier"].tolist() == [r[1] for r in ref]
    np.testing.assert_allclose(out["ret"].to_numpy(), [r[2] for r in ref], rtol=1e-12, atol=1e-15)


def test_volatility_ewm_and_atr_match_pandas_and_talib() -> None:
    talib = pytest.importorskip("talib")
    bars = btc_bars(400)
    ewm = volatility(bars, "ewm", span=20)
    r = np.log(bars["close"] / bars["close"].shift(1))
    ref = r.ewm(span=20, adjust=True).std().to_numpy()
    np.testing.assert_allclose(ewm[40:], ref[40:], rtol=1e-9)
    assert np.isnan(ewm[:5]).all()
    atr = volatility(bars, "atr", span=14)
    expected = talib.ATR(bars["high"].to_numpy(), bars["low"].to_numpy(), bars["close"].to_numpy(), 14) / bars["close"]
    np.testing.assert_allclose(atr[20:], expected.to_numpy()[20:], rtol=1e-10)


def test_meta_labels_mark_profitable_primary_trades() -> None:
    bars = bars_of([(100, 100, 100, 100), (100, 106, 99, 105), (105, 105, 98, 99)])
    tb = triple_barrier(bars, [0, 1], width=np.full(3, 0.05), max_bars=1, side=np.array([1.0, -1.0]))
    meta = meta_labels(tb)
    assert meta["meta"].tolist() == [1, 1]  # long hit profit; short from 105 closed at 99 (vertical, +)
    assert meta["t1"].tolist() == [20, 30]


def test_meta_labels_of_an_incomplete_label_are_null() -> None:
    """Event 1's vertical barrier (2 bars on) lies past the last bar and it touches nothing: its meta-label was 1,
    from its return cut at the last close (100 -> 101), as if the trade were known to have made money."""
    bars = bars_of([(100, 100, 100, 100), (100, 106, 99, 105), (100, 100, 100, 100), (100, 101, 100, 101)])
    tb = triple_barrier(bars, [0, 2], width=np.full(4, 0.05), max_bars=2)
    assert tb["complete"].tolist() == [True, False]
    meta = meta_labels(tb)
    assert meta["meta"].iat[0] == 1 and meta["meta"].isna().tolist() == [False, True]
    assert meta["ret"].iat[0] == pytest.approx(0.05) and np.isnan(meta["ret"].iat[1])
    marked = mark_incomplete(tb)
    assert marked["label"].isna().tolist() == [False, True] and marked["label"].iat[0] == 1
    assert tb["label"].tolist() == [1, 1]  # the frame given is left as it was


# ---------------------------------------------------------------------------- CUSUM


def reference_cusum(close: np.ndarray, h: np.ndarray) -> list[int]:
    events, s_pos, s_neg = [], 0.0, 0.0
    for t in range(1, len(close)):
        r = float(np.log(close[t] / close[t - 1]))
        if np.isnan(h[t]):
            continue
        s_pos, s_neg = max(0.0, s_pos + r), min(0.0, s_neg + r)
        up, down = s_pos > h[t], s_neg < -h[t]
        s_pos, s_neg = (0.0 if up else s_pos), (0.0 if down else s_neg)
        if up or down:
            events.append(t)
    return events


def test_cusum_hand_example_and_reference() -> None:
    close = np.exp(np.cumsum([0.0, 0.01, 0.01, 0.01, -0.02, -0.02, -0.005]))
    assert cusum_events(close, 0.025).tolist() == [3, 5]
    bars = btc_bars(3000)
    vol = volatility(bars, "ewm", span=50)
    c = bars["close"].to_numpy()
    for h in (np.full(len(c), 0.03), 2.0 * vol):
        assert cusum_events(c, h).tolist() == reference_cusum(c, h)


def test_cusum_both_sums_past_a_falling_threshold_reset_together() -> None:
    # returns +0.05, -0.03: S+ = 0.02, S- = -0.03 under h = 1; then h falls to 0.01 and a
    # +0.001 bar puts both past it (S+ 0.021, S- -0.029): one event at 3, both sums reset.
    # Resetting only S+ left S- = -0.029, sampled again at 4 as a fall while the price rose.
    close = 100.0 * np.exp(np.cumsum([0.0, 0.05, -0.03, 0.001, 0.001]))
    h = np.array([np.nan, 1.0, 1.0, 0.01, 0.01])
    assert cusum_events(close, h).tolist() == [3]
    assert reference_cusum(close, h) == [3]


# ---------------------------------------------------------------------------- weights


def test_uniqueness_and_concurrency_hand_derived() -> None:
    # labels [0,2], [1,3], [3,3] over 5 bars: concurrency 1,2,2,2,0
    start, end = np.array([0, 1, 3]), np.array([2, 3, 3])
    assert concurrency(start, end, 5).tolist() == [1, 2, 2, 2, 0]
    u = average_uniqueness(start, end, 5)
    np.testing.assert_allclose(u, [(1 + 0.5 + 0.5) / 3, (0.5 + 0.5 + 0.5) / 3, 0.5])


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.integers(0, 10)), min_size=1, max_size=30))
def test_uniqueness_equals_a_loop_over_an_indicator_matrix(spans: list[tuple[int, int]]) -> None:
    start = np.array([s for s, _ in spans])
    end = start + np.array([d for _, d in spans])
    n = int(end.max()) + 1
    ind = np.zeros((n, len(spans)))
    for k, (s, e) in enumerate(zip(start, end, strict=True)):
        ind[s : e + 1, k] = 1.0
    c = ind.sum(axis=1)
    expected = [np.mean(1.0 / c[ind[:, k] > 0]) for k in range(len(spans))]
    np.testing.assert_allclose(average_uniqueness(start, end, n), expected, rtol=1e-12)


def test_return_attribution_hand_derived() -> None:
    close = np.exp(np.array([0.0, 0.1, 0.3, 0.1]))  # log returns 0.1, 0.2, -0.2 at bars 1..3
    start, end = np.array([0, 1]), np.array([2, 3])  # concurrency 1, 2, 2, 1
    raw = np.array([abs(0.1 / 2 + 0.2 / 2), abs(0.2 / 2 - 0.2 / 1)])
    np.testing.assert_allclose(return_attribution_weights(start, end, close), raw * 2 / raw.sum(), rtol=1e-12)


def test_time_decay_hand_derived() -> None:
    u = np.array([0.5, 0.5, 1.0])  # cumulative 0.5, 1, 2
    np.testing.assert_allclose(time_decay(u, 1.0), [1, 1, 1])
    np.testing.assert_allclose(time_decay(u, 0.0), [0.25, 0.5, 1.0])
    np.testing.assert_allclose(time_decay(u, 0.5), [0.625, 0.75, 1.0])
    np.testing.assert_allclose(time_decay(u, -0.5), [0.0, 0.0, 1.0])  # oldest half of x gets 0
    with pytest.raises(DataError):
        time_decay(u, -1.0)


def test_labels_reject_unsorted_times_naming_the_row() -> None:
    bars = random_walk(10)
    bars.loc[5, "ts_event"] = bars.loc[4, "ts_event"] - 1
    with pytest.raises(DataError, match="row 5"):
        triple_barrier(bars, max_bars=2)
    with pytest.raises(DataError, match="row 5"):
        forward_returns(bars, [1])
    assert H4 > 0


@pytest.mark.parametrize("column", ["open", "high", "low", "close"])
def test_labels_reject_a_price_that_is_not_finite_naming_the_column_row_and_time(column: str) -> None:
    """A catalog file with one NaN close gave a triple-barrier label of -9223372036854775808 (NaN cast to int64)
    to the event whose vertical barrier ended on it, exit 0; a NaN high or low was never touched."""
    bars = bars_of([(100.0, 101.0, 99.0, 100.0)] * 6)
    bars.loc[4, column] = np.nan
    message = rf"labels: bars frame's {column} is nan at row 4 \(ts_event 1970-01-01T00:00:00.00000005Z\)"
    with pytest.raises(DataError, match=message):
        triple_barrier(bars, width=np.full(6, 0.05), max_bars=2)
    if column == "close":
        with pytest.raises(DataError, match=message):
            forward_returns(bars, [1])


def test_labels_of_bars_sharing_a_time_follow_the_file_order() -> None:
    """Threshold bars may close at one trade's time: they were refused as 'not strictly increasing'."""
    bars = bars_of([(100, 100, 100, 100), (100, 101, 100, 101), (101, 103, 101, 102),
                    (102, 102, 98, 99), (99, 100, 99, 100)])
    bars["ts_event"] = np.array([10, 20, 20, 20, 30], dtype=np.int64)
    fwd = forward_returns(bars, [1, 2])
    np.testing.assert_allclose(fwd["fwd_1"].to_numpy()[:4], [0.01, 102 / 101 - 1, 99 / 102 - 1, 100 / 99 - 1])
    assert fwd["t1_1"].tolist() == [20, 20, 20, 30, -1] and fwd["t1_2"].tolist() == [20, 20, 30, -1, -1]
    # bar 1 (t=20) enters at 101, barriers 103.02 / 98.98: bar 2 (t=20) stays inside, bar 3 (t=20) falls to 98
    tb = triple_barrier(bars, np.array([1]), pt=0.02, sl=0.02, max_ns=0)
    assert (tb["end_index"].iat[0], tb["barrier"].iat[0], tb["t1"].iat[0]) == (3, -1, 20)
    assert tb["ret"].iat[0] == pytest.approx(-0.02)
    # a vertical barrier of 0 ns ends at the last bar of the event's time, in file order
    tb = triple_barrier(bars, np.array([1, 2, 3]), pt=0.5, sl=0.5, max_ns=0)
    assert tb["end_index"].tolist() == [3, 3, 3] and tb["t1"].tolist() == [20, 20, 20]
    np.testing.assert_allclose(tb["ret"].to_numpy(), [99 / 101 - 1, 99 / 102 - 1, 0.0])
