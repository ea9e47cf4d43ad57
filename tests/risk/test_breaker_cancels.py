"""A move to a stricter trading state cancels the working orders it no longer allows (README "## Risk")."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pytest

from tradebus.data.catalog import Catalog
from tradebus.data.replay import Replay, ReplaySource
from tradebus.engine.instrument import Instrument
from tradebus.engine.kernel import Kernel
from tradebus.engine.messages import Bar, CancelOrder, OrderSide, OrderStatus, TradingState
from tradebus.execution.journal import Journal
from tradebus.risk.config import RiskConfig
from tradebus.strategies.base import Strategy

INST = Instrument("SIM", "BTCUSD", tick_size=0.01, lot_size=0.001, margin=True, leverage=10.0)
IID = INST.instrument_id
MIN = 60_000_000_000
T0 = 1_700_006_400_000_000_000  # 2023-11-15T00:00:00Z

# Bar 1 buys 500 at market (filled at bar 2's open, 100); bar 2 places the resting orders; bar 3 closes at 88:
# equity 94 000 of 100 000, a 6 % drawdown, which trips the 5 % breaker before bar 4. Bar 4 trades up to 103,
# then down to 79.
BARS = [
    (100.0, 100.5, 99.5, 100.0),
    (100.0, 100.5, 99.5, 100.0),
    (100.0, 100.0, 87.0, 88.0),
    (88.0, 103.0, 79.0, 85.0),
    (85.0, 86.0, 84.0, 85.0),
]


class Scripted(Strategy):
    """Buys 500 at market on its first bar, runs ``script`` on its second; keeps its orders' ids by name."""

    def __init__(self, script: Callable[[Scripted], None]) -> None:
        super().__init__(IID, strategy_id="s")
        self.script = script
        self.ids: dict[str, str] = {}
        self.n = 0

    def on_bar(self, bar: Bar) -> None:
        self.n += 1
        if self.n == 1:
            self.ids["entry"] = self.submit_market(IID, OrderSide.BUY, 500.0)
        elif self.n == 2:
            self.script(self)


def run(tmp_path: Path, path: str, action: str, script: Callable[[Scripted], None]) -> tuple[Kernel, Scripted]:
    """Run :data:`BARS` through ``Kernel.run`` (``path == "run"``) or ``Kernel.process`` with a 5 % drawdown breaker."""
    kernel = Kernel([INST], risk_config=RiskConfig(max_drawdown_pct=5.0, drawdown_action=action), initial_cash=100_000.0)
    strategy = Scripted(script)
    kernel.add_strategy(strategy)
    ts = [T0 + (i + 1) * MIN for i in range(len(BARS))]
    if path == "run":
        opens, highs, lows, closes = zip(*BARS, strict=True)
        table = pa.table({"ts_event": ts, "ts_init": ts, "open": opens, "high": highs, "low": lows, "close": closes,
                          "volume": [1.0] * len(BARS)})  # fmt: skip
        catalog = Catalog(tmp_path / "catalog")
        catalog.write(table, "sim", "spot", "BTCUSD", "bars_1m", period="month", mode="overwrite")
        kernel.run(Replay([ReplaySource.from_catalog(catalog, IID, "sim", "spot", "BTCUSD", "bars_1m")]))
    else:
        for t, (o, h, low, c) in zip(ts, BARS, strict=True):
            kernel.process(Bar(IID, t, t, o, h, low, c, 1.0))
        kernel.stop()
    return kernel, strategy


@pytest.mark.parametrize("path", ["run", "process"])
def test_a_resting_buy_is_canceled_when_the_drawdown_halts_and_does_not_fill(tmp_path: Path, path: str) -> None:
    kernel, strategy = run(tmp_path, path, "halt", lambda s: s.ids.update(bid=s.submit_limit(IID, OrderSide.BUY, 100.0, 80.0)))
    assert kernel.risk.state is TradingState.HALTED
    bid = kernel.orders.order(strategy.ids["bid"])
    assert bid.status is OrderStatus.CANCELED and bid.filled_qty == 0.0
    assert bid.ts_last == T0 + 3 * MIN  # at bar 4's open (bar 3's close), before it traded down to 79
    assert kernel.portfolio.position(IID) == 500.0
    assert len(kernel.result.fills) == 1


@pytest.mark.parametrize("path", ["run", "process"])
def test_reducing_cancels_the_orders_that_would_grow_the_position_and_keeps_the_others(
    tmp_path: Path, path: str
) -> None:
    def script(s: Scripted) -> None:
        s.ids["bid"] = s.submit_limit(IID, OrderSide.BUY, 100.0, 80.0)  # adds to the long
        s.ids["exit"] = s.submit_limit(IID, OrderSide.SELL, 300.0, 101.0)  # within the position: kept
        s.ids["flip"] = s.submit_limit(IID, OrderSide.SELL, 300.0, 102.0)  # 600 working sells > 500: would go short
        s.ids["stop"] = s.submit_stop(IID, OrderSide.SELL, 500.0, 60.0, reduce_only=True)  # never grows

    kernel, strategy = run(tmp_path, path, "reduce", script)
    assert kernel.risk.state is TradingState.REDUCING
    status = {name: kernel.orders.order(coid).status for name, coid in strategy.ids.items()}
    assert status == {
        "entry": OrderStatus.FILLED,
        "bid": OrderStatus.CANCELED,
        "exit": OrderStatus.FILLED,
        "flip": OrderStatus.CANCELED,
        "stop": OrderStatus.ACCEPTED,
    }
    assert kernel.portfolio.position(IID) == 200.0


def test_a_manual_halt_cancels_every_working_order_and_journals_each_cancel_with_its_reason(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    try:
        kernel = Kernel([INST], journal=journal, initial_cash=100_000.0)
        strategy = Scripted(lambda s: s.ids.update(bid=s.submit_limit(IID, OrderSide.BUY, 1.0, 90.0)))
        kernel.add_strategy(strategy)
        for i, (o, h, low, c) in enumerate(BARS[:2], 1):
            kernel.process(Bar(IID, T0 + i * MIN, T0 + i * MIN, o, h, low, c, 1.0))
        kernel.risk.set_state(TradingState.HALTED, "operator /halt")
        kernel.process(Bar(IID, T0 + 3 * MIN, T0 + 3 * MIN, 95.0, 95.0, 85.0, 90.0, 1.0))
        kernel.stop()
        cancels = [e.message for e in journal.entries() if type(e.message) is CancelOrder]
    finally:
        journal.close()
    assert [(c.client_order_id, c.reason) for c in cancels] == [(strategy.ids["bid"], "trading state HALTED: operator /halt")]
    assert kernel.orders.order(strategy.ids["bid"]).status is OrderStatus.CANCELED
    assert kernel.portfolio.position(IID) == 500.0


def test_a_restart_applies_the_configured_action_to_a_breaker_still_tripped(tmp_path: Path) -> None:
    """Bar 3 closes at 88 with 500 held from 100: equity 94,000, 6 % below the peak of 100,000, trips the 5 %
    drawdown breaker, ``drawdown_action: halt``. The operator changes it to ``reduce`` and restarts on the journal:
    the trip held HALTED until re-armed, so the sell that would reduce the position was denied. Now the restart
    holds the trip in the configured action's state, REDUCING (a WARNING names both), and journals it: a sell of
    200 passes, a buy is denied; the other way round, ``halt`` again, denies the sell."""
    from loguru import logger

    from tradebus.engine.messages import SubmitOrder

    path = tmp_path / "j.sqlite"

    def restarted(action: str) -> tuple[Kernel, Journal]:
        journal = Journal(path)
        kernel = Kernel([INST], journal=journal, initial_cash=100_000.0,
                        risk_config=RiskConfig(max_drawdown_pct=5.0, drawdown_action=action))  # fmt: skip
        journal.replay(kernel.orders, kernel.portfolio, T0, risk=kernel.risk, on_message=kernel.record_journaled)
        return kernel, journal

    first, journal = restarted("halt")
    first.add_strategy(Scripted(lambda s: None))
    for i, (o, h, low, c) in enumerate(BARS[:3], 1):
        first.process(Bar(IID, T0 + i * MIN, T0 + i * MIN, o, h, low, c, 1.0))
    first.stop()  # the marks of bar 3's time are in: the breakers evaluate them
    assert first.risk.state is TradingState.HALTED and first.portfolio.position(IID) == 500.0
    journal.close()

    sell = SubmitOrder("s", IID, "c", OrderSide.SELL, 200.0, 0, 0)
    buy = SubmitOrder("s", IID, "c", OrderSide.BUY, 200.0, 0, 0)
    lines: list[str] = []
    sink = logger.add(lines.append, level="WARNING", format="{message}")
    try:
        second, journal = restarted("reduce")
    finally:
        logger.remove(sink)
    try:
        assert second.portfolio.position(IID) == 500.0
        assert second.risk.state is TradingState.REDUCING
        assert second.risk.check(sell) is None
        assert (second.risk.check(buy) or "").startswith("trading_state: REDUCING allows only reducing orders")
        assert journal.load_risk_state().tripped["max_drawdown"].state is TradingState.REDUCING  # type: ignore[union-attr]
    finally:
        journal.close()
    assert any(
        "breaker max_drawdown tripped before the restart moved trading to HALTED; the config's drawdown_action is now "
        "reduce: it holds trading REDUCING until re-armed" in line for line in lines
    )

    third, journal = restarted("halt")
    journal.close()
    assert third.risk.state is TradingState.HALTED
    assert third.risk.check(sell) == "trading_state: HALTED denies every order"
