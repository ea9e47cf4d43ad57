"""EmaCross: decisions at bar close on EMA crossings (checked against TA-Lib), modes, parameters."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import talib

from tradebus.data.replay import Replay, ReplaySource
from tradebus.engine.instrument import Instrument
from tradebus.engine.kernel import Kernel
from tradebus.errors import ConfigError
from tradebus.strategies.ema_cross import EmaCross, EmaCrossParams

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "kernel" / "coinbase_btc_usd_4h_2022_1200.csv"
IID = "BTC-USD.COINBASE"


def instrument() -> Instrument:
    return Instrument("COINBASE", "BTC-USD", tick_size=0.01, lot_size=1e-8, taker_fee=0.006, margin=True)


def run(strategy: EmaCross) -> tuple[Kernel, np.ndarray, np.ndarray]:
    kernel = Kernel([instrument()], initial_cash=1e6)
    kernel.add_strategy(strategy)
    replay = Replay([ReplaySource.from_file(FIXTURE, IID, "bars")])
    kernel.run(replay)
    bars = [b for b in Replay([ReplaySource.from_file(FIXTURE, IID, "bars")])]
    return kernel, np.array([b.ts_event for b in bars]), np.array([b.close for b in bars])


def expected_crossings(close: np.ndarray, fast: int, slow: int) -> list[tuple[int, bool]]:
    """(bar index, fast now above) of every crossing, from TA-Lib's EMAs."""
    f, s = talib.EMA(close, fast), talib.EMA(close, slow)
    above: bool | None = None
    out = []
    for i in range(len(close)):
        if np.isnan(f[i]) or np.isnan(s[i]) or f[i] == s[i]:
            continue
        now = bool(f[i] > s[i])
        if above is not None and now != above:
            out.append((i, now))
        above = now
    return out


def test_long_short_orders_at_every_talib_crossing_with_the_target_size() -> None:
    kernel, ts, close = run(EmaCross(IID, fast=7, slow=25, mode="long_short", quantity=0.5))
    crossings = expected_crossings(close, 7, 25)
    assert len(crossings) > 10
    orders = kernel.result.orders
    assert [(o.ts_created, o.side > 0) for o in orders] == [(int(ts[i]), up) for i, up in crossings]
    assert [o.quantity for o in orders] == [0.5] + [1.0] * (len(orders) - 1)
    assert all(o.order_type == "MARKET" for o in orders)


def test_long_only_buys_on_up_cross_and_goes_flat_on_down_cross() -> None:
    kernel, ts, close = run(EmaCross(IID, fast=7, slow=25, mode="long_only", quantity=0.5))
    crossings = expected_crossings(close, 7, 25)
    # Flat at a down-cross means nothing to do: only up-crosses and the down-crosses after them trade.
    expected = []
    long = False
    for i, up in crossings:
        if up != long:
            expected.append((int(ts[i]), up))
            long = up
    assert [(o.ts_created, o.side > 0) for o in kernel.result.orders] == expected
    positions = {kernel.portfolio.position(IID)}
    assert positions <= {0.0, 0.5}


def test_no_order_before_both_emas_are_ready() -> None:
    kernel, ts, _ = run(EmaCross(IID, fast=7, slow=25, mode="long_short", quantity=0.5))
    # The slow EMA is ready at bar 25 (index 24); the first bar only records the relation.
    assert kernel.result.orders[0].ts_created > ts[24]


def test_decisions_only_at_bar_close_and_fills_on_a_later_bar() -> None:
    kernel, ts, _ = run(EmaCross(IID, fast=7, slow=25, mode="long_short", quantity=0.5))
    bar_times = set(ts.tolist())
    created = {o.client_order_id: o.ts_created for o in kernel.result.orders}
    assert set(created.values()) <= bar_times
    assert all(f.ts_event > created[f.client_order_id] for f in kernel.result.fills)


def test_features_come_from_the_bank_with_ema_kind() -> None:
    strategy = EmaCross(IID, fast=3, slow=8, quantity=1.0)
    specs = strategy.feature_specs(IID)
    assert [(s.name, s.kind, s.params, s.input) for s in specs] == [
        ("ema_3", "ema", {"span": 3.0}, "close"), ("ema_8", "ema", {"span": 8.0}, "close")]
    assert strategy.feature_specs("OTHER.X") == ()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(fast=30, slow=10, quantity=1.0), "fast (30) must be smaller than slow (10)"),
        (dict(fast=0, slow=10, quantity=1.0), "fast"),
        (dict(fast=3, slow=10, quantity=-1.0), "quantity"),
        (dict(fast=3, slow=10, quantity=1.0, mode="both"), "mode"),
    ],
)
def test_invalid_parameters_raise_config_error(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        EmaCross(IID, **kwargs)


def test_quantity_below_the_lot_size_is_refused_by_check_params() -> None:
    lot = Instrument("COINBASE", "BTC-USD", tick_size=0.01, lot_size=0.001)
    with pytest.raises(ConfigError, match="^quantity: .*below the minimum 0.001"):
        EmaCross.check_params(EmaCrossParams(fast=3, slow=10, quantity=0.0001), [lot])
    with pytest.raises(ConfigError, match="^quantity: .*not a multiple of the lot size"):
        EmaCross.check_params(EmaCrossParams(fast=3, slow=10, quantity=0.0015), [lot])
    EmaCross.check_params(EmaCrossParams(fast=3, slow=10, quantity=0.002), [lot])
