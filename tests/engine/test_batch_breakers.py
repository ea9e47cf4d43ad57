"""The batch loops evaluate the drawdown and daily-loss breakers only when their answer could change.

While nothing works, ``Kernel.before_time`` tells the loops until when, and between which prices
of the one instrument that moves equity, an evaluation would change nothing
(``Portfolio.equity_band``); a fill, a funding, a liquidation check or a timer has the next time
evaluated. These seeded walks trip the breakers (drawdown, daily loss re-armed at the UTC day
roll and tripped again, several instruments, a perpetual paying funding, trades): every stored
breaker state (trip, peak, the day's start equity, each with its time) and every
``TradingStateChanged`` must be those of ``Kernel.process``, message by message. An evaluation
one bar late changes a stored peak or a trip's time and equity.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from tradebus.data.replay import ReplaySource
from tradebus.engine.instrument import Instrument, InstrumentKind
from tradebus.engine.kernel import Kernel
from tradebus.engine.messages import Bar, FundingRate, Trade, TradingState, TradingStateChanged
from tradebus.execution.config import VenueConfig
from tradebus.risk.breakers import BreakerState
from tradebus.risk.config import RiskConfig
from tradebus.strategies.base import Strategy, feature_only

from tests.engine.test_kernel import MIN, T0, bar_table
from tests.engine.test_kernel_batches import bar_sources, fills_of, run_both, synthetic_trades, trade_source

DAY = 1_440 * MIN


class Flipper(Strategy):
    """Every few messages of each instrument, targets a seeded random position in it (reads no data)."""

    def __init__(
        self,
        ids: tuple[str, ...],
        seed: int,
        quantity: float,
        traded: tuple[str, ...] = (),
        targets: tuple[float, ...] = (-1.0, 0.0, 0.0, 1.0, 2.0),
    ) -> None:
        super().__init__(ids, strategy_id="flipper")
        self.traded = traded or ids
        self.rng = random.Random(seed)
        self.quantity = quantity
        self.targets = targets
        self.count = 0

    def _act(self, instrument_id: str) -> None:
        if instrument_id not in self.traded:
            return
        self.count += 1
        if self.count % 37 == 0:
            target = self.rng.choice(self.targets) * self.quantity
            self.target_position(instrument_id, target, reason="flip")


class LeanFlipper(Flipper):
    @feature_only
    def on_bar(self, bar: Bar | None = None) -> None:
        self._act(self.traded[self.count % len(self.traded)])


class FullFlipper(Flipper):
    def on_bar(self, bar: Bar) -> None:
        self._act(bar.instrument_id)

    def on_trade(self, trade: Trade) -> None:
        self._act(trade.instrument_id)


def _recorded(kernel: Kernel) -> tuple[list[BreakerState], list[TradingStateChanged]]:
    stored: list[BreakerState] = []
    changes: list[TradingStateChanged] = []
    kernel.risk.restore(None, store=stored.append)
    kernel.bus.subscribe(TradingStateChanged, changes.append)
    return stored, changes


def _assert_same_breakers(setup: Any, sources: list[ReplaySource], batch_rows: int, min_trips: int) -> None:
    records: dict[int, tuple[list[BreakerState], list[TradingStateChanged]]] = {}

    def build() -> Kernel:
        kernel = setup()
        records[len(records)] = _recorded(kernel)
        return kernel

    fast, slow = run_both(sources, build, batch_rows)
    (fast_stored, fast_changes), (slow_stored, slow_changes) = records[0], records[1]
    trips = [c for c in slow_changes if c.state is not TradingState.ACTIVE]
    assert len(trips) >= min_trips, len(trips)  # the walk trips them: there is something to compare
    assert fast_changes == slow_changes
    assert fast_stored == slow_stored
    assert fills_of(fast) == fills_of(slow)
    assert fast.result.equity == slow.result.equity
    memory = [k.risk.snapshot() for k in (fast, slow)]  # the peak and the day's start, bit for bit
    assert memory[0] == memory[1]


def _kernel(instruments: list[Instrument], risk: RiskConfig, strategy: Strategy, **venue: Any) -> Kernel:
    kernel = Kernel(
        instruments,
        venue_config=VenueConfig(taker_fee=0.0002, **venue),
        risk_config=risk,
        initial_cash=2_000.0,
        equity_interval_ns=90 * MIN,
    )
    kernel.add_strategy(strategy)
    return kernel


def _spot(k: int) -> Instrument:
    return Instrument("SIM", f"C{k}USD", tick_size=0.01, lot_size=0.001, taker_fee=0.0002, margin=True)


@pytest.mark.parametrize("lean", [True, False])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_drawdown_trips_at_the_bar_and_equity_of_process(tmp_path: Path, seed: int, lean: bool) -> None:
    sources = bar_sources(tmp_path / "cat", [bar_table(6_000, seed=seed)])
    risk = RiskConfig(max_drawdown_pct=12.0, drawdown_action="reduce", max_daily_loss_pct=8.0,
                      daily_loss_action="reduce")  # fmt: skip
    flipper = LeanFlipper if lean else FullFlipper
    ids = tuple(s.instrument_id for s in sources)
    _assert_same_breakers(lambda: _kernel([_spot(0)], risk, flipper(ids, seed, 10.0)), sources, 512, 1)


@pytest.mark.parametrize("lean", [True, False])
def test_the_daily_loss_rearms_at_the_day_roll_and_trips_again_as_in_process(tmp_path: Path, lean: bool) -> None:
    # Four days of bars: the halt of one day ends at the next day's roll.
    sources = bar_sources(tmp_path / "cat", [bar_table(4 * 1_440, seed=11)])
    risk = RiskConfig(max_daily_loss_pct=1.0, daily_loss_action="halt")
    flipper = LeanFlipper if lean else FullFlipper
    ids = tuple(s.instrument_id for s in sources)
    _assert_same_breakers(lambda: _kernel([_spot(0)], risk, flipper(ids, 5, 10.0)), sources, 4_096, 3)


@pytest.mark.parametrize("one", [True, False], ids=["one_traded", "all_traded"])
@pytest.mark.parametrize("lean", [True, False])
def test_several_instruments_trip_as_in_process(tmp_path: Path, lean: bool, one: bool) -> None:
    # One traded: the others' prices move no equity, and the traded one's band is checked among them.
    # Margin spot: while a position is open every close is checked for liquidation (several
    # instruments give no liquidation bounds), which has the next time evaluated whatever the band;
    # the band's own check is held by the next test.
    tables = [bar_table(3_000, seed=20 + k) for k in range(3)]
    sources = bar_sources(tmp_path / "cat", tables)
    risk = RiskConfig(max_drawdown_pct=3.0, max_daily_loss_pct=2.0)
    flipper = LeanFlipper if lean else FullFlipper
    ids = tuple(s.instrument_id for s in sources)
    _assert_same_breakers(
        lambda: _kernel([_spot(k) for k in range(3)], risk, flipper(ids, 8, 5.0, ids[:1] if one else ())), sources, 700, 1
    )


@pytest.mark.parametrize("lean", [True, False])
def test_the_several_instrument_loops_evaluate_after_a_close_beyond_the_band(tmp_path: Path, lean: bool) -> None:
    # Cash spot (no margin): no liquidation check after every close while a position is open,
    # which would have the next time evaluated on its own. One instrument held long, two that
    # move no equity: the mixed loops skip before_time while the held one's closes stay inside
    # Kernel.mark_band, and only a close beyond it has the next time evaluated.
    tables = [bar_table(3_000, seed=50 + k) for k in range(3)]
    sources = bar_sources(tmp_path / "cat", tables)
    risk = RiskConfig(max_drawdown_pct=3.0, drawdown_action="reduce", max_daily_loss_pct=2.0,
                      daily_loss_action="reduce")  # fmt: skip
    flipper = LeanFlipper if lean else FullFlipper
    ids = tuple(s.instrument_id for s in sources)
    cash = [Instrument("SIM", f"C{k}USD", tick_size=0.01, lot_size=0.001, taker_fee=0.0002) for k in range(3)]

    def setup() -> Kernel:
        kernel = _kernel(cash, risk, flipper(ids, 9, 3.0, ids[:1], (0.0, 1.0, 2.0)))
        assert kernel.perpetuals is None
        return kernel

    _assert_same_breakers(setup, sources, 700, 1)


@pytest.mark.parametrize("lean", [True, False])
def test_a_perpetual_paying_funding_trips_as_in_process(tmp_path: Path, lean: bool) -> None:
    table = bar_table(4_000, seed=31)
    sources = bar_sources(tmp_path / "cat", [table])
    iid = sources[0].instrument_id
    risk = RiskConfig(max_drawdown_pct=30.0, max_daily_loss_pct=15.0)
    flipper = LeanFlipper if lean else FullFlipper
    rng = random.Random(31)
    funding = [FundingRate(iid, f, f, rng.uniform(-0.01, 0.01), f + 240 * MIN)
               for f in range(T0 + 240 * MIN, T0 + 4_000 * MIN, 240 * MIN)]  # fmt: skip

    def setup() -> Kernel:
        perp = Instrument("SIM", "C0USD", kind=InstrumentKind.PERPETUAL, base="C0", quote="USD", tick_size=0.01,
                          lot_size=0.001, taker_fee=0.0002, leverage=20.0)  # fmt: skip
        kernel = _kernel([perp], risk, flipper((iid,), 4, 40.0))
        kernel.feed_perpetual_data(funding)
        return kernel

    _assert_same_breakers(setup, sources, 1_000, 1)


def test_trades_trip_as_in_process(tmp_path: Path) -> None:
    sources = [trade_source(tmp_path, synthetic_trades(20_000, seed=41), "C0USD.SIM", "C0USD")]
    risk = RiskConfig(max_drawdown_pct=1.0, max_daily_loss_pct=0.8)
    _assert_same_breakers(
        lambda: _kernel([_spot(0)], risk, FullFlipper(("C0USD.SIM",), 6, 0.03), fill_on="trades"), sources, 2_048, 1
    )
