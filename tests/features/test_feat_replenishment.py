"""Book replenishment after depletion: hand-derived events and a real Binance USD-M depth series."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import numpy as np
import pytest

from tradebus.errors import FeatureError
from tradebus.features.replenishment import Replenishment, replenishment_events

CAPTURE = Path(__file__).resolve().parents[1] / "fixtures" / "binance" / "usdm_btcusdt_20240718.gz"


def test_hand_derived_depletion_and_refill() -> None:
    r = Replenishment(window=3, drop=0.5, horizon_ns=10)
    feed = [(0, 10.0), (1, 12.0), (2, 8.0),  # median 10
            (3, 5.0),    # 5 <= 0.5 * 10: depletion starts, before = 10
            (5, 1.0),    # lowest
            (12, 3.0),   # still inside the horizon (3 + 10 = 13)
            (13, 7.0)]   # measured: ratio 0.7, recovered (7 - 1) / (10 - 1)
    out = [r.update(t, d) for t, d in feed]
    assert out[:-1] == [None] * 6
    e = out[-1]
    assert e is not None
    assert (e.ts_start, e.ts_known, e.before, e.low, e.after) == (3, 13, 10.0, 1.0, 7.0)
    assert e.ratio == pytest.approx(0.7) and e.recovered == pytest.approx(6 / 9)
    # not before the window is full, and not on a mild dip
    r2 = Replenishment(window=3, drop=0.5, horizon_ns=10)
    assert [r2.update(t, d) for t, d in [(0, 10.0), (1, 1.0), (2, 10.0), (3, 10.0), (4, 6.0), (20, 10.0)]] == [None] * 6
    with pytest.raises(FeatureError):
        Replenishment(window=3, drop=1.5, horizon_ns=10)
    with pytest.raises(FeatureError, match="depth must be"):
        r2.update(21, float("nan"))


@pytest.mark.parametrize(
    ("kw", "shown"),
    [
        ({"horizon_ns": math.nan}, "horizon_ns (nanoseconds) must be a whole number in [1, 9223372036854775807], got nan"),
        ({"horizon_ns": math.inf}, "horizon_ns (nanoseconds) must be a whole number in [1, 9223372036854775807], got inf"),
        ({"horizon_ns": 1.5}, "horizon_ns (nanoseconds) must be a whole number in [1, 9223372036854775807], got 1.5"),
        ({"horizon_ns": 2**63}, f"horizon_ns (nanoseconds) must be a whole number in [1, 9223372036854775807], got {2**63}"),
        ({"horizon_ns": 10, "window": 2.5}, "window must be a whole number in [1, 9223372036854775807], got 2.5"),
        ({"horizon_ns": 10, "window": math.nan}, "window must be a whole number in [1, 9223372036854775807], got nan"),
        ({"horizon_ns": 10, "window": 0}, "window must be a whole number in [1, 9223372036854775807], got 0"),
        ({"horizon_ns": 10, "drop": math.nan}, "drop must be in (0, 1), got nan"),
    ],
)
def test_impossible_settings_are_refused_naming_them(kw: dict, shown: str) -> None:
    with pytest.raises(FeatureError) as err:
        Replenishment(**kw)
    assert str(err.value) == f"replenishment: {shown}"
    with pytest.raises(FeatureError) as batch:
        replenishment_events(np.array([0]), np.array([1.0]), **kw)
    assert str(batch.value) == str(err.value)


def test_whole_float_horizon_and_window_measure_like_ints() -> None:
    feed = [(0, 10.0), (1, 10.0), (2, 10.0), (3, 4.0), (8, 2.0), (13, 8.0)]
    as_float = Replenishment(window=3.0, drop=0.5, horizon_ns=10.0)
    as_int = Replenishment(window=3, drop=0.5, horizon_ns=10)
    assert [as_float.update(t, d) for t, d in feed] == [as_int.update(t, d) for t, d in feed]


def _top5_bid_depth() -> tuple[np.ndarray, np.ndarray]:
    """Top-5 bid size after the diffs of each receive time, from a dict book (futures rule: drop u < lastUpdateId)."""
    bids: dict[float, float] = {}
    last = None
    ts, depth = [], []
    with gzip.open(CAPTURE, "rt") as handle:
        for line in handle:
            recv, raw = line.split(" ", 1)
            msg = json.loads(raw)
            if "lastUpdateId" in msg:
                bids = {float(p): float(q) for p, q in msg["bids"]}
                last = msg["lastUpdateId"]
                continue
            data = msg.get("data", {})
            if data.get("e") != "depthUpdate" or last is None or data["u"] < last:
                continue
            for p, q in data["b"]:
                if float(q) == 0.0:
                    bids.pop(float(p), None)
                else:
                    bids[float(p)] = float(q)
            ts.append(int(recv))
            depth.append(sum(q for _, q in sorted(bids.items(), reverse=True)[:5]))
    t, d = np.array(ts, dtype=np.int64), np.array(depth)
    last_of_time = np.r_[t[1:] != t[:-1], True]  # one book state per receive time
    return t[last_of_time], d[last_of_time]


def test_events_on_a_real_depth_series_match_their_definition() -> None:
    ts, depth = _top5_bid_depth()
    assert ts.size > 1000
    horizon = 2_000_000_000
    events = replenishment_events(ts, depth, window=50, drop=0.3, horizon_ns=horizon)
    assert len(events) >= 3
    for e in events.itertuples():
        i = int(np.searchsorted(ts, e.ts_start))
        k = int(np.searchsorted(ts, e.ts_start + horizon))  # the first update at or after the horizon
        assert ts[k] == e.ts_known and depth[k] == e.after
        assert e.before == pytest.approx(np.median(depth[i - 50 : i]))
        assert depth[i] <= 0.3 * e.before
        assert e.low == depth[i:k].min()
        assert e.ratio == pytest.approx(e.after / e.before)
    assert (events["ts_start"].to_numpy()[1:] > events["ts_known"].to_numpy()[:-1]).all()  # one at a time
