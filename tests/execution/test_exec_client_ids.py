"""Client order ids: legal on OKX, Binance and Bybit; unique across restarts; deterministic in backtests."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradebus.engine.bus import MessageBus
from tradebus.engine.clock import SimulatedClock
from tradebus.engine.instrument import Instrument
from tradebus.engine.kernel import Kernel
from tradebus.engine.messages import Bar, OrderSide, OrderSubmitted, SubmitOrder
from tradebus.engine.portfolio import Portfolio
from tradebus.errors import OrderError
from tradebus.execution.client_ids import MAX_EPOCH, ClientOrderIds, new_run_id
from tradebus.execution.journal import Journal
from tradebus.execution.orders import OrderManager
from tradebus.strategies.base import Strategy

# The venues' documented rules, written out independently of the module under test:
# OKX clOrdId: "a combination of case-sensitive alphanumerics, all numbers, or all letters of up to
# 32 characters"; Binance newClientOrderId: ^[\.A-Z\:/a-z0-9_-]{1,36}$; Bybit orderLinkId: "max 36
# characters; numbers, letters (upper and lower cases), dashes, and underscores".
VENUE_RULES = {
    "okx": re.compile(r"^[A-Za-z0-9]{1,32}$"),
    "binance": re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$"),
    "bybit": re.compile(r"^[A-Za-z0-9_-]{1,36}$"),
}

IID = "BTCUSDT.BINANCE"


def legal_everywhere(coid: str) -> bool:
    return all(rule.fullmatch(coid) is not None for rule in VENUE_RULES.values())


@settings(max_examples=300, deadline=None)
@given(
    strategy_id=st.text(min_size=1, max_size=60),
    run=st.integers(0, 36**8 - 1),
    epoch=st.integers(0, MAX_EPOCH),
    issued=st.integers(0, 10**13 - 2),
)
def test_every_id_is_legal_on_okx_binance_and_bybit(strategy_id: str, run: int, epoch: int, issued: int) -> None:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    run_id = "".join(digits[(run // 36**k) % 36] for k in range(7, -1, -1))
    ids = ClientOrderIds(run_id, epoch)
    first = ids.next(strategy_id)
    assert legal_everywhere(first), first
    # Far along the counter (up to its last value, the longest id): still legal, still the strategy's.
    ids.observe(first[: -1] + str(issued) if issued else first, strategy_id)
    later = ids.next(strategy_id)
    assert legal_everywhere(later), later
    assert ids.strategy_of(first) == ids.strategy_of(later) == strategy_id


def test_the_longest_id_is_32_characters_and_the_counter_never_wraps() -> None:
    ids = ClientOrderIds(new_run_id(), MAX_EPOCH)
    first = ids.next("s")
    ids.observe(first[:-1] + str(10**13 - 2), "s")
    last = ids.next("s")
    assert len(last) == 32 and legal_everywhere(last)
    with pytest.raises(OrderError, match="used up"):
        ids.next("s")


def test_taking_ids_in_bulk_gives_what_one_at_a_time_gives_and_refuses_past_the_counter() -> None:
    run = new_run_id()
    one, bulk = ClientOrderIds(run, 3), ClientOrderIds(run, 3)
    expected = [one.next("a"), one.next("b"), *(one.next("a") for _ in range(5)), one.next("a")]
    assert [*bulk.take("a", 1), *bulk.take("b", 1), *bulk.take("a", 5), *bulk.take("a", 0), bulk.next("a")] == expected
    nothing = ClientOrderIds(run, 3)
    assert nothing.take("z", 0) == [] and nothing.strategy_of(ClientOrderIds(run, 3).next("z")) is None  # no tag taken
    ids = ClientOrderIds(run, 0)
    first = ids.next("s")
    ids.observe(first[:-1] + str(10**13 - 3), "s")  # two ids left
    with pytest.raises(OrderError, match="used up"):
        ids.take("s", 3)
    assert ids.take("s", 2) == [first[:-1] + str(10**13 - 2), first[:-1] + str(10**13 - 1)]
    with pytest.raises(OrderError, match="used up"):
        ids.next("s")


def test_ids_carry_a_readable_strategy_tag_and_map_back_to_the_strategy() -> None:
    ids = ClientOrderIds()
    coid = ids.next("ema-cross/BTC")
    assert coid.startswith("emacr")
    assert ids.strategy_of(coid) == "ema-cross/BTC"
    assert ids.strategy_of("x" * 20) is None
    assert ids.strategy_of("s-1") is None


def test_two_strategies_with_the_same_tag_are_refused() -> None:
    ids = ClientOrderIds()
    ids.next("alpha")
    tag = ids.tag("alpha")
    # Find another strategy id whose tag collides (same prefix, same 3-digit hash bucket).
    other = next(f"alpha{k}" for k in range(200_000) if ClientOrderIds().tag(f"alpha{k}") == tag)
    with pytest.raises(OrderError, match="share the id tag"):
        ids.next(other)


def _trading_process(journal_path: Path, n: int) -> list[str]:
    """One process: open the journal, recover, send ``n`` orders per strategy (journaled), stop."""
    bus, clock = MessageBus(), SimulatedClock(1_000)
    inst = Instrument("BINANCE", "BTCUSDT", tick_size=0.01, lot_size=0.001)
    om = OrderManager(bus, clock)
    journal = Journal(journal_path)
    journal.replay(om, Portfolio({inst.instrument_id: inst}, 1_000.0), 1_000)
    issued = []
    for _ in range(n):
        for strategy in ("a", "b"):
            coid = om.next_client_order_id(strategy)
            journal.record_command(SubmitOrder(strategy, IID, coid, OrderSide.BUY, 1.0, 1_000, 1_000), coid)
            journal.record_event(OrderSubmitted(strategy, IID, coid, 1_000, 1_000))
            issued.append(coid)
    journal.close()
    return issued


def test_ids_are_unique_across_restarts_with_the_same_journal_and_with_a_fresh_one(tmp_path: Path) -> None:
    first = _trading_process(tmp_path / "j.sqlite", 5)
    again = _trading_process(tmp_path / "j.sqlite", 5)  # restart on the same journal
    fresh = _trading_process(tmp_path / "fresh.sqlite", 5)  # a new journal, e.g. after `rm`
    every = first + again + fresh
    assert len(set(every)) == len(every) == 30
    assert all(legal_everywhere(c) for c in every)


def test_recovery_maps_journaled_ids_back_to_their_strategies(tmp_path: Path) -> None:
    issued = _trading_process(tmp_path / "j.sqlite", 2)
    om = OrderManager(MessageBus(), SimulatedClock(0))
    inst = Instrument("BINANCE", "BTCUSDT", tick_size=0.01, lot_size=0.001)
    journal = Journal(tmp_path / "j.sqlite")
    journal.replay(om, Portfolio({inst.instrument_id: inst}, 1_000.0), 5)
    journal.close()
    assert [om.client_ids.strategy_of(c) for c in issued] == ["a", "b", "a", "b"]


def test_an_id_of_the_current_epoch_keeps_the_counter_ahead() -> None:
    ids = ClientOrderIds("abcdefgh", 3)
    journaled = ClientOrderIds("abcdefgh", 3)
    seen = [journaled.next("s") for _ in range(7)]
    ids.observe(seen[-1], "s")
    assert ids.next("s") not in seen


class Alternator(Strategy):
    def __init__(self, strategy_id: str) -> None:
        super().__init__(IID, strategy_id=strategy_id)
        self.n = 0

    def on_bar(self, bar: Bar) -> None:
        self.n += 1
        if self.n % 3 == 0:
            self.submit_market(IID, OrderSide.BUY if self.n % 2 else OrderSide.SELL, 0.01)


def _backtest() -> list[tuple[str, str]]:
    inst = Instrument("BINANCE", "BTCUSDT", tick_size=0.01, lot_size=0.001)
    kernel = Kernel([inst], initial_cash=10_000.0)
    kernel.add_strategy(Alternator("fast one"))
    kernel.add_strategy(Alternator("slow one"))
    for i in range(1, 40):
        px = 100.0 + (i % 5)
        kernel.process(Bar(IID, i * 60_000_000_000, i * 60_000_000_000, px, px + 1, px - 1, px, 1.0))
    kernel.stop()
    return [(o.client_order_id, o.strategy_id) for o in kernel.result.orders]


def test_backtest_ids_are_deterministic_legal_and_name_their_strategy() -> None:
    one, two = _backtest(), _backtest()
    assert one == two and len(one) == 26
    ids = ClientOrderIds()
    assert all(legal_everywhere(c) and ids.strategy_of(c) is None for c, _ in one)
    for coid, strategy in one:
        ids.observe(coid, strategy)
    assert all(ids.strategy_of(c) == s for c, s in one)
