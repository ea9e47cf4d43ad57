"""Cross-sectional momentum on real daily closes (BTC on two venues, 2020) against a pandas reference."""

from __future__ import annotations

import pandas as pd
import pytest

from tradebus.errors import ConfigError
from tradebus.strategies.momentum import CrossSectionalMomentum

from strat_helpers import BTC_DAY_BINANCE, BTC_DAY_COINBASE, DAY_NS, bars_day, run

UNIVERSE = [BTC_DAY_COINBASE, BTC_DAY_BINANCE]


def reference(frames: dict[str, pd.DataFrame], lookback: int, top: int, bottom: int, stale_ns: int):
    """Rebalance times, momentum and weights by the documented rules, from the bars with pandas."""
    first = min(int(f["ts_event"].iloc[0]) for f in frames.values())
    last = max(int(f["ts_event"].iloc[-1]) for f in frames.values())
    out = []
    t = first - first % DAY_NS + DAY_NS
    while t <= last:
        momentum = {}
        for iid, frame in frames.items():
            seen = frame[frame["ts_event"] < t]  # a timer fires before the bars stamped at its time
            if len(seen) <= lookback or t - int(seen["ts_event"].iloc[-1]) > stale_ns:
                continue
            closes = seen["close"]
            momentum[iid] = closes.iloc[-1] / closes.iloc[-1 - lookback] - 1.0
        ranked = sorted(momentum, key=lambda iid: -momentum[iid])
        longs, rest = ranked[:top], ranked[top:]
        shorts = rest[len(rest) - min(bottom, len(rest)) :] if bottom else []
        weights = {iid: 0.0 for iid in frames}
        for iid in longs:
            weights[iid] = 1.0 / (len(longs) + len(shorts))
        for iid in shorts:
            weights[iid] = -1.0 / (len(longs) + len(shorts))
        out.append((t, momentum, weights))
        t += DAY_NS
    return out


def check(strategy: CrossSectionalMomentum, expected: list) -> None:
    assert [r[0] for r in strategy.rebalances] == [r[0] for r in expected]
    for (ts, mom, weights), (_, ref_mom, ref_weights) in zip(strategy.rebalances, expected, strict=True):
        assert mom.keys() == ref_mom.keys(), ts
        for iid in mom:
            assert mom[iid] == pytest.approx(ref_mom[iid], rel=1e-9, abs=1e-12)
        assert weights == ref_weights, ts


def test_rankings_and_weights_equal_the_pandas_reference() -> None:
    frames = {BTC_DAY_COINBASE: bars_day("coinbase"), BTC_DAY_BINANCE: bars_day("binance")}
    strategy = CrossSectionalMomentum(UNIVERSE, lookback=10, rebalance="1d", top=1, bottom=1)
    kernel = run([strategy], frames)
    expected = reference(frames, 10, 1, 1, DAY_NS)
    check(strategy, expected)
    flips = sum(1 for a, b in zip(expected, expected[1:]) if a[2] != b[2])
    assert flips >= 10  # the ranking really changes on this data
    # the book ends long the leader and short the laggard, each half the equity
    final = strategy.rebalances[-1][2]
    for iid, weight in final.items():
        assert (kernel.portfolio.position(iid) > 0) == (weight > 0)


def test_an_instrument_that_stopped_updating_is_left_out_and_closed() -> None:
    coinbase, binance = bars_day("coinbase"), bars_day("binance")
    gap = binance.iloc[200:215]
    binance = binance.drop(gap.index).reset_index(drop=True)  # ten days without a Binance bar
    frames = {BTC_DAY_COINBASE: coinbase, BTC_DAY_BINANCE: binance}
    strategy = CrossSectionalMomentum(UNIVERSE, lookback=10, rebalance="1d", top=1, bottom=1)
    kernel = run([strategy], frames)
    check(strategy, reference(frames, 10, 1, 1, DAY_NS))
    gap_start, gap_end = int(gap["ts_event"].iloc[0]), int(gap["ts_event"].iloc[-1])
    during = [r for r in strategy.rebalances if gap_start + DAY_NS <= r[0] <= gap_end]
    assert during and all(BTC_DAY_BINANCE not in mom and w[BTC_DAY_BINANCE] == 0.0 for _, mom, w in during)
    assert all(w[BTC_DAY_COINBASE] == 1.0 for _, _, w in during)  # the only eligible one, long
    # the orders of the gap fill once Binance bars resume, and leave its position closed
    resume = int(binance["ts_event"][binance["ts_event"] > gap_end].iloc[0])
    out = next(f for f in kernel.result.fills if f.instrument_id == BTC_DAY_BINANCE and f.ts_event >= resume
               and f.reason == "momentum rebalance: out")
    position = sum((1 if f.side == "BUY" else -1) * f.quantity for f in kernel.result.fills
                   if f.instrument_id == BTC_DAY_BINANCE and f.ts_event <= out.ts_event)
    assert position == pytest.approx(0.0, abs=1e-6)


def test_staleness_allowance_keeps_a_briefly_silent_instrument() -> None:
    coinbase, binance = bars_day("coinbase"), bars_day("binance")
    binance = binance.drop(binance.index[[100, 101]]).reset_index(drop=True)
    frames = {BTC_DAY_COINBASE: coinbase, BTC_DAY_BINANCE: binance}
    strategy = CrossSectionalMomentum(UNIVERSE, lookback=5, rebalance="1d", max_staleness="3d")
    run([strategy], frames)
    check(strategy, reference(frames, 5, 1, 1, 3 * DAY_NS))
    assert all(len(mom) == 2 for _, mom, _ in strategy.rebalances[6:])


def test_bad_momentum_parameters_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="at least two instruments"):
        CrossSectionalMomentum([BTC_DAY_COINBASE])
    with pytest.raises(ConfigError, match="rebalance"):
        CrossSectionalMomentum(UNIVERSE, rebalance="weekly")


@pytest.mark.parametrize(
    ("params", "message"),
    [({"top": 0, "mode": "long_only"}, "top must be >= 1 in long_only"), ({"top": 0, "bottom": 0}, "top and bottom")],
)
def test_a_book_that_can_never_hold_anything_is_a_config_error(params: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        CrossSectionalMomentum(UNIVERSE, **params)


def test_identical_series_are_not_split_long_short_by_their_listing_order() -> None:
    twin = "BTC-USD.KRAKEN"  # the Coinbase closes again under another name: equal momentum at every rebalance
    frames = {BTC_DAY_COINBASE: bars_day("coinbase"), twin: bars_day("coinbase")}
    strategy = CrossSectionalMomentum([BTC_DAY_COINBASE, twin], lookback=10, rebalance="1d", top=1, bottom=1)
    kernel = run([strategy], frames)
    ranked = [r for r in strategy.rebalances if r[1]]
    assert len(ranked) > 300 and all(r[1][BTC_DAY_COINBASE] == r[1][twin] for r in ranked)
    assert all(w == {BTC_DAY_COINBASE: 0.0, twin: 0.0} for _, _, w in strategy.rebalances)
    assert kernel.result.fills == []


def test_instruments_tied_for_one_slot_share_it_equally() -> None:
    twin = "BTC-USD.KRAKEN"
    frames = {BTC_DAY_COINBASE: bars_day("coinbase"), twin: bars_day("coinbase"), BTC_DAY_BINANCE: bars_day("binance")}
    strategy = CrossSectionalMomentum([BTC_DAY_COINBASE, twin, BTC_DAY_BINANCE], lookback=10, rebalance="1d",
                                      top=1, bottom=1)
    run([strategy], frames)
    ranked = [r for r in strategy.rebalances if r[1]]
    sides = set()
    for _, mom, weights in ranked:
        # one long slot and one short slot, half the equity each; the twins share theirs
        side = 1.0 if mom[BTC_DAY_COINBASE] > mom[BTC_DAY_BINANCE] else -1.0
        sides.add(side)
        assert weights == {BTC_DAY_COINBASE: side * 0.25, twin: side * 0.25, BTC_DAY_BINANCE: -side * 0.5}
    assert sides == {1.0, -1.0} and len(ranked) > 300
