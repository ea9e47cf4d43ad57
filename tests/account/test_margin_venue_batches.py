"""Bybit's and OKX's maintenance rules liquidate at the same bar in the batch loop as one message at a time.

A seeded random walk of bars drives 10x perpetual positions of Bybit (fee to close at the
bankruptcy price, :attr:`CloseFee.BANKRUPTCY`) and OKX (liquidation fee at the mark,
:attr:`CloseFee.MARK`) into liquidation; ``Kernel.run`` (the batch loop, which checks only
the closes beyond :attr:`Perpetuals.lo` / :attr:`Perpetuals.hi`) must book what
``Kernel.process`` books bar by bar. The liquidating bar is also found by hand from the
venues' formulas on the walk (test_margin_venue_rules.py cites them).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from tests.account.test_margin_account import H, T0, perp
from tradebus.engine.instrument import CloseFee, Instrument, MarginMode
from tradebus.engine.kernel import Kernel
from tradebus.engine.messages import Bar, OrderSide
from tradebus.execution.config import VenueConfig
from tradebus.research.lookahead import MemoryReplay, SourceFrame
from tradebus.strategies.base import Strategy

BYBIT_TAKER, OKX_TAKER = 0.00055, 0.0005


def bybit(**overrides: object) -> Instrument:
    return perp(venue="BYBIT", taker_fee=BYBIT_TAKER, maintenance_close_fee=CloseFee.BANKRUPTCY, **overrides)


def okx(**overrides: object) -> Instrument:
    return perp(venue="OKX", taker_fee=OKX_TAKER, maintenance_close_fee=CloseFee.MARK, **overrides)


class OpenOnce(Strategy):
    """Opens ``quantity`` of each instrument at market on its first bar (filled at the next bar's open), then holds."""

    def __init__(self, sides: dict[str, OrderSide], quantity: float) -> None:
        super().__init__(list(sides), strategy_id="open-once")
        self.sides = sides
        self.quantity = quantity
        self.opened: set[str] = set()

    def on_bar(self, bar: Bar) -> None:
        if bar.instrument_id not in self.opened:
            self.opened.add(bar.instrument_id)
            self.submit_market(bar.instrument_id, self.sides[bar.instrument_id], self.quantity, reason="entry")


def walk(seed: int, drift: float, n: int = 500) -> pd.DataFrame:
    """Hourly bars of a seeded log-normal walk from 20000 (each opens at the last close), in steps
    of a few USDT: finer than the fee to close (about 10), so a rule without it liquidates later."""
    rng = np.random.default_rng(seed)
    close = np.round(20_000.0 * np.exp(np.cumsum(rng.normal(drift, 0.0002, n))), 1)
    close[:2] = 20_000.0
    open_ = np.concatenate([[20_000.0], close[:-1]])
    ts = T0 + H * np.arange(1, n + 1, dtype=np.int64)
    return pd.DataFrame({
        "ts_event": ts, "ts_init": ts, "open": open_, "high": np.maximum(open_, close),
        "low": np.minimum(open_, close), "close": close, "volume": np.ones(n),
    })  # fmt: skip


def run_both(insts: list[Instrument], frames: list[pd.DataFrame], sides: list[OrderSide], cash: float) -> tuple[Kernel, Kernel]:
    def build() -> Kernel:
        kernel = Kernel(insts, venue_config=VenueConfig(fill_on="bars"), initial_cash=cash, equity_interval_ns=H)
        kernel.add_strategy(OpenOnce({i.instrument_id: s for i, s in zip(insts, sides, strict=True)}, 1.0))
        return kernel

    sources = [SourceFrame(i.instrument_id, "bars", f) for i, f in zip(insts, frames, strict=True)]
    fast = build()
    fast.run(MemoryReplay(sources, batch_rows=64))  # type: ignore[arg-type]
    slow = build()
    merged = sorted(
        ((int(r.ts_init), k, Bar(i.instrument_id, r.ts_event, r.ts_init, r.open, r.high, r.low, r.close, r.volume))
         for k, (i, f) in enumerate(zip(insts, frames, strict=True)) for r in f.itertuples(index=False)),
        key=lambda t: (t[0], t[1]),
    )  # fmt: skip
    for _, _, bar in merged:
        slow.process(bar)
    slow.stop()
    return fast, slow


def assert_same(fast: Kernel, slow: Kernel) -> None:
    assert fast.result.liquidations == slow.result.liquidations
    assert fast.result.fills == slow.result.fills
    assert fast.result.equity == slow.result.equity
    assert fast.portfolio.equity() == slow.portfolio.equity()


def close_fee(inst: Instrument, side: float, entry: float, mark: float) -> float:
    """The venue's fee to close 1 BTC counted in maintenance, by hand."""
    if inst.maintenance_close_fee == CloseFee.BANKRUPTCY:
        return entry * (1.0 - side / inst.leverage) * inst.taker_fee
    return mark * inst.taker_fee


@pytest.mark.parametrize(
    ("make", "side", "seed", "drift"),
    [(bybit, 1.0, 11, -0.0003), (okx, 1.0, 12, -0.0003), (bybit, -1.0, 13, 0.0003), (okx, -1.0, 14, 0.0003)],
    ids=["bybit-long", "okx-long", "bybit-short", "okx-short"],
)
def test_an_isolated_position_is_liquidated_at_the_same_bar_in_batches_as_by_hand(
    make: object, side: float, seed: int, drift: float
) -> None:
    """Isolated margin ``entry / 10``; liquidated at the first close ``P`` after the entry where
    ``margin + s (P - entry) < 0.005 P + fee to close``."""
    inst = make(margin_mode=MarginMode.ISOLATED)  # type: ignore[operator]
    frame = walk(seed, drift)
    fast, slow = run_both([inst], [frame], [OrderSide.BUY if side > 0 else OrderSide.SELL], 10_000.0)
    assert_same(fast, slow)
    [event] = fast.result.liquidations
    entry = float(frame["open"].iloc[1])
    closes = frame["close"].to_numpy()
    by_hand = next(
        k for k in range(1, len(frame))
        if entry / 10.0 + side * (closes[k] - entry) < 0.005 * closes[k] + close_fee(inst, side, entry, closes[k])
    )  # fmt: skip
    assert event.ts_event == int(frame["ts_event"].iloc[by_hand])
    assert event.mark_price == closes[by_hand]
    # the liquidation price lies between the last close that kept the position and the one that took it
    lo, hi = sorted((closes[by_hand - 1], closes[by_hand]))
    assert lo < event.liquidation_price < hi


def test_two_cross_positions_of_bybit_and_okx_are_liquidated_together_in_batches_as_by_hand() -> None:
    """Cross, wallet 5000 less both entry fees: a Bybit long and an OKX long share it and are
    liquidated at the first bar after which ``wallet + sum (P_i - entry_i) < sum (0.005 P_i + fee_i)``."""
    insts = [bybit(symbol="BTCUSDT"), okx(symbol="ETHUSDT", base="ETH")]
    frames = [walk(21, -0.0003), walk(22, -0.0003)]
    fast, slow = run_both(insts, frames, [OrderSide.BUY, OrderSide.BUY], 5_000.0)
    assert_same(fast, slow)
    events = fast.result.liquidations
    assert {e.instrument_id for e in events} == {i.instrument_id for i in insts}
    entries = [float(f["open"].iloc[1]) for f in frames]
    wallet = 5_000.0 - sum(e * i.taker_fee for e, i in zip(entries, insts, strict=True))
    closes = [f["close"].to_numpy() for f in frames]

    def breached(k: int, latest: list[float]) -> bool:
        pnl = sum(p - e for p, e in zip(latest, entries, strict=True))
        mm = sum(0.005 * p + close_fee(i, 1.0, e, p) for i, e, p in zip(insts, entries, latest, strict=True))
        return wallet + pnl < mm

    # the bars of both instruments come at the same ts in instrument order: after the first's close
    # the second's last close is still the previous bar's
    found = None
    for k in range(2, len(frames[0])):
        if breached(k, [closes[0][k], closes[1][k - 1]]):
            found = (k, 0)
            break
        if breached(k, [closes[0][k], closes[1][k]]):
            found = (k, 1)
            break
    assert found is not None
    k, _ = found
    assert all(e.ts_event == int(frames[0]["ts_event"].iloc[k]) for e in events)
    assert not math.isnan(events[0].liquidation_price)
