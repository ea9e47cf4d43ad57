"""Execution algorithms across a restart, at the kernel level, with a venue that keeps its orders.

Kernel 1 (with a journal) starts a TWAP named ``entry`` (4 slices, one an hour) and rests a buy
limit of its own far below the market whose reason happens to begin as the TWAP's children's
(``"entry: dip buy"``). It stops with the TWAP half done. Kernel 2 replays the journal, settles
the orders with the same venue (still working) and ends the TWAP ``interrupted``: only the
TWAP's own children are its children; the strategy's limit keeps working.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tradebus.engine.instrument import Instrument
from tradebus.engine.kernel import Kernel
from tradebus.engine.messages import AlgoEnded, Bar, OrderSide, OrderStatus
from tradebus.execution.config import VenueConfig
from tradebus.execution.journal import Journal
from tradebus.strategies.algos import Twap
from tradebus.strategies.base import Strategy

IID = "BTCUSD.SIM"
H = 3_600_000_000_000
T0 = 1_700_006_400_000_000_000


class TwapAndDipBuy(Strategy):
    """In its first run: a TWAP buy ``entry`` of 4 and a resting buy limit at 50, reason ``"entry: dip buy"``."""

    def __init__(self, first_run: bool) -> None:
        super().__init__(IID, strategy_id="s")
        self.first_run = first_run
        self.algo: Twap | None = None
        self.dip = ""
        self.interrupted: list[AlgoEnded] = []

    def on_algo_interrupted(self, event: AlgoEnded) -> None:
        self.interrupted.append(event)

    def on_start(self) -> None:
        if self.first_run:
            self.algo = Twap(self, IID, OrderSide.BUY, 4.0, duration=4 * H, slices=4, name="entry")
            self.algo.start()
            self.dip = self.submit_limit(IID, OrderSide.BUY, 1.0, 50.0, reason="entry: dip buy")


def kernel(journal: Journal, first_run: bool, venue: Any = None) -> Kernel:
    inst = Instrument(venue="SIM", symbol="BTCUSD", tick_size=0.01, lot_size=0.001, margin=True)
    k = Kernel([inst], venue_config=VenueConfig(fill_on="bars"), initial_cash=1e6, journal=journal, venue=venue)
    k.add_strategy(TwapAndDipBuy(first_run))
    return k


def feed(k: Kernel, hours: range) -> None:
    for n in hours:
        k.process(Bar(IID, T0 + n * H, T0 + n * H, 100.0, 100.0, 100.0, 100.0, 10.0))


def restart(path: Path, first: Kernel) -> Kernel:
    journal = Journal(path)
    second = kernel(journal, False, venue=first.venue)
    second.venue.clock = second.clock  # type: ignore[attr-defined]
    unknown = journal.replay(
        second.orders, second.portfolio, T0 + 3 * H, risk=second.risk, on_message=second.record_journaled
    )
    for order in unknown:
        second.execution.resolve_unknown(order.client_order_id)
    return second


def test_a_restart_interrupts_only_the_algorithms_children_not_a_strategy_order_with_a_look_alike_reason(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.sqlite"
    first = kernel(Journal(path), True)
    feed(first, range(1, 3))
    strategy = first.strategies[0]
    assert isinstance(strategy, TwapAndDipBuy) and strategy.algo is not None
    twap = strategy.algo
    assert twap.status == "working" and 0 < twap.filled < 4.0 and twap.working()
    filled, children = twap.filled, list(twap.children)
    assert first.orders.order(strategy.dip).status == OrderStatus.ACCEPTED

    second = restart(path, first)
    feed(second, range(3, 5))
    restarted = second.strategies[0]
    assert isinstance(restarted, TwapAndDipBuy)
    [event] = restarted.interrupted
    assert (event.name, event.children) == ("entry", tuple(children))
    assert event.filled == pytest.approx(filled)
    # The TWAP's working child was ended (its market order filled at bar 3's open, before its cancel
    # arrived) and nothing more of it sent; the strategy's own limit keeps working.
    assert all(second.orders.order(c).status in (OrderStatus.FILLED, OrderStatus.CANCELED) for c in children)
    assert second.orders.order(strategy.dip).status == OrderStatus.ACCEPTED
    assert len(list(second.orders.orders())) == len(children) + 1
    assert second.portfolio.position(IID) == pytest.approx(sum(second.orders.order(c).filled_qty for c in children))


class Twaps(Strategy):
    """Starts a TWAP buy of 4 (4 slices, one an hour) under its default name when :meth:`buy` is called."""

    def __init__(self) -> None:
        super().__init__(IID, strategy_id="s")
        self.algos: list[Twap] = []
        self.interrupted: list[AlgoEnded] = []

    def on_algo_interrupted(self, event: AlgoEnded) -> None:
        self.interrupted.append(event)

    def buy(self) -> Twap:
        algo = Twap(self, IID, OrderSide.BUY, 4.0, duration=4 * H, slices=4)
        algo.start()
        self.algos.append(algo)
        return algo


def twaps_kernel(path: Path, venue: Any = None) -> tuple[Kernel, Twaps]:
    inst = Instrument(venue="SIM", symbol="BTCUSD", tick_size=0.01, lot_size=0.001, margin=True)
    journal = Journal(path)
    k = Kernel([inst], venue_config=VenueConfig(fill_on="bars"), initial_cash=1e6, journal=journal, venue=venue)
    strategy = Twaps()
    k.add_strategy(strategy)
    if venue is not None:
        k.venue.clock = k.clock  # type: ignore[attr-defined]
        for order in journal.replay(k.orders, k.portfolio, T0, risk=k.risk, on_message=k.record_journaled):
            k.execution.resolve_unknown(order.client_order_id)
    return k, strategy


def test_an_algorithm_a_restart_starts_while_the_journal_still_holds_one_open_is_named_anew_and_interrupted_by_the_next(
    tmp_path: Path,
) -> None:
    """Kernel 1 leaves ``twap1`` working. Kernel 2 starts a TWAP before it interrupts ``twap1`` (as a live daemon's
    strategy may from a fill its start-up reconciliation books: subscribed, not started yet) and leaves it working.
    Kernel 3 interrupts that one with its own children, not again ``twap1``."""
    path = tmp_path / "journal.sqlite"
    first, strategy = twaps_kernel(path)
    feed(first, range(1, 2))
    old = strategy.buy()
    feed(first, range(2, 3))
    assert old.name == "twap1" and old.status == "working"

    second, restarted = twaps_kernel(path, venue=first.venue)
    second.prepare()
    second.clock.advance_to(T0 + 3 * H)
    new = restarted.buy()
    second.start()
    feed(second, range(3, 5))
    [ended] = restarted.interrupted
    assert (ended.name, ended.children) == ("twap1", tuple(old.children))
    assert new.name != "twap1" and new.status == "working" and new.children

    third, last = twaps_kernel(path, venue=second.venue)
    third.start()
    [event] = last.interrupted
    assert (event.name, event.children) == (new.name, tuple(new.children))
    assert event.filled == pytest.approx(sum(third.orders.order(c).filled_qty for c in new.children))
