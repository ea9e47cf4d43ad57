"""Brackets, OCO, trailing stops, GTD, timed exits and cooldown on bars, with hand-derived fills.

Bars are (open, high, low, close); an order decided at bar k's close reaches the venue at bar
k+1's open. The path of a bar is open -> low -> high -> close when close >= open, else
open -> high -> low -> close.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from loguru import logger

from tradebus.engine.instrument import Instrument
from tradebus.engine.kernel import Kernel
from tradebus.engine.messages import Bar, OrderDenied, OrderFilled, OrderSide, Trade, TradingState
from tradebus.errors import OrderError
from tradebus.execution.config import VenueConfig
from tradebus.execution.contingent import OrderSpec
from tradebus.reports.outputs import write_outputs
from tradebus.reports.writers import RunDirectory
from tradebus.risk.config import RiskConfig
from tradebus.strategies.base import Strategy

IID = "BTCUSD.SIM"
H = 3_600_000_000_000
T0 = 1_700_006_400_000_000_000
BUY, SELL = OrderSide.BUY, OrderSide.SELL


class Scripted(Strategy):
    """Runs ``script[k](self)`` on bar k (1-based)."""

    contingent = True

    def __init__(self, script: dict[int, Callable[[Scripted], Any]]) -> None:
        super().__init__(IID, strategy_id="s")
        self.script = script
        self.n = 0
        self.ids: dict[str, str | None] = {}

    def on_bar(self, bar: Bar) -> None:
        self.n += 1
        action = self.script.get(self.n)
        if action is not None:
            action(self)


def run(
    bars: list[tuple[float, float, float, float]], script: dict[int, Callable[[Scripted], Any]], **venue: Any
) -> Kernel:
    inst = Instrument(venue="SIM", symbol="BTCUSD", tick_size=0.01, lot_size=0.001, margin=True)
    kernel = Kernel([inst], venue_config=VenueConfig(fill_on="bars", **venue), initial_cash=1e6)
    kernel.add_strategy(Scripted(script))
    for k, (o, h, lo, c) in enumerate(bars, start=1):
        kernel.process(Bar(IID, T0 + k * H, T0 + k * H, o, h, lo, c, 10.0))
    kernel.stop()
    return kernel


def fills(kernel: Kernel) -> list[tuple[str, float, int]]:
    """(side, price, bar index) of every fill."""
    return [(f.side, f.price, (f.ts_event - T0) // H) for f in kernel.result.fills]


def strategy(kernel: Kernel) -> Scripted:
    s = kernel.strategies[0]
    assert isinstance(s, Scripted)
    return s


FLAT = (100.0, 100.0, 100.0, 100.0)


def bracket(**options: Any) -> Callable[[Scripted], Any]:
    def act(s: Scripted) -> None:
        s.ids["entry"] = s.submit_bracket(IID, BUY, 1.0, stop_loss=95.0, take_profit=110.0, **options)

    return act


def test_bracket_take_profit_fills_and_cancels_the_stop_loss() -> None:
    # the OCO cancel decided at bar 3's close reaches the venue at bar 4's open
    kernel = run([FLAT, (100.0, 101.0, 99.0, 100.0), (100.0, 111.0, 99.0, 105.0), (90.0, 90.0, 80.0, 85.0)], {1: bracket()})
    assert fills(kernel) == [("BUY", 100.0, 2), ("SELL", 110.0, 3)]
    orders = {kernel.result.submit_reasons[o.client_order_id]: o for o in kernel.result.orders}
    assert str(orders["bracket stop-loss"].status) == "CANCELED"
    assert kernel.portfolio.position(IID) == 0.0


@pytest.mark.parametrize(
    ("bar3", "expected"),
    [
        # up bar: open -> low -> high: the stop-loss (low 94) is reached first
        ((100.0, 111.0, 94.0, 105.0), ("SELL", 95.0, 3)),
        # down bar: open -> high -> low: the take-profit (high 111) is reached first
        ((100.0, 111.0, 94.0, 98.0), ("SELL", 110.0, 3)),
    ],
)
def test_same_bar_stop_and_target_follow_the_bar_path(bar3: tuple[float, ...], expected: tuple) -> None:
    kernel = run([FLAT, FLAT, bar3, FLAT], {1: bracket()})
    assert fills(kernel) == [("BUY", 100.0, 2), expected]
    assert kernel.portfolio.position(IID) == 0.0


def test_children_never_fill_in_the_entry_bar_and_a_gap_fills_at_the_open() -> None:
    """Bar 2 (the entry's) falls to 90, below the stop: not stopped there. Bar 3 opens at 93,
    through the stop at 95: it fills at the open."""
    kernel = run([FLAT, (100.0, 100.0, 90.0, 94.0), (93.0, 94.0, 92.0, 93.0)], {1: bracket()})
    assert fills(kernel) == [("BUY", 100.0, 2), ("SELL", 93.0, 3)]


def test_arm_after_bars_delays_the_children_by_whole_bars() -> None:
    dip = (100.0, 100.0, 94.0, 99.0)
    armed_now = run([FLAT, FLAT, dip, dip, FLAT], {1: bracket()})
    assert fills(armed_now) == [("BUY", 100.0, 2), ("SELL", 95.0, 3)]
    armed_later = run([FLAT, FLAT, dip, dip, FLAT], {1: bracket(arm_after_bars=1)})
    assert fills(armed_later) == [("BUY", 100.0, 2), ("SELL", 95.0, 4)]


def test_future_bars_do_not_change_earlier_fills() -> None:
    """No lookahead: changing bars after bar 3 leaves the fills up to bar 3 as they were."""
    base = [FLAT, FLAT, (100.0, 111.0, 99.0, 105.0)]
    a = run([*base, FLAT, FLAT], {1: bracket()})
    b = run([*base, (50.0, 200.0, 10.0, 60.0), (60.0, 61.0, 59.0, 60.0)], {1: bracket()})
    assert fills(a)[:2] == fills(b)[:2] == [("BUY", 100.0, 2), ("SELL", 110.0, 3)]


@pytest.mark.parametrize("trail", [{"offset": 5.0}, {"percent": 5.0}])
def test_trailing_stop_follows_the_high_and_fills_at_the_raised_trigger(trail: dict[str, float]) -> None:
    """Long from bar 2 at 100; trailing sell stop placed at bar 2's close: trigger 95.
    After bar 3 (high 104) the trigger becomes 99 (offset) / 98.8 (5 %); after bar 4 (high 108)
    103 / 102.6. Bar 5 (down bar 107 -> 102) reaches it: sell at the trigger."""
    script: dict[int, Callable[[Scripted], Any]] = {
        1: lambda s: s.submit_market(IID, BUY, 1.0),
        2: lambda s: s.ids.update(stop=s.submit_trailing_stop(IID, SELL, 1.0, **trail)),
    }
    bars = [FLAT, FLAT, (100.0, 104.0, 100.0, 104.0), (104.0, 108.0, 103.0, 108.0), (107.0, 107.0, 102.0, 103.0)]
    kernel = run(bars, script)
    expected = 103.0 if "offset" in trail else 102.6
    assert fills(kernel) == [("BUY", 100.0, 2), ("SELL", expected, 5)]


def test_a_bracket_trailing_stop_loss_trails_only_from_after_it_was_placed() -> None:
    """The market entry fills at bar 2's open (100); bar 2 (100, 110, 99, 101) tops at 110.
    Emulated, the trailing stop-loss (5 below) is placed at bar 2's close (101): trigger 96,
    working from bar 3's open. Bar 3 (high 102) raises it to 97 for bar 4, which falls from
    101.5 to 95.5 through it: sold at 97. Trailing from bar 2's high, from before the stop
    existed, put it at 105, above bar 3's open 101: sold there. The native child, live from the
    entry's fill, does see all of bar 2 (tests/execution/test_contingent_native.py)."""
    def enter(s: Scripted) -> None:
        s.submit_bracket(IID, BUY, 1.0, stop_loss=90.0, trail_offset=5.0)

    bars = [FLAT, (100.0, 110.0, 99.0, 101.0), (101.0, 102.0, 100.5, 101.5), (101.5, 101.5, 95.5, 96.0)]
    kernel = run(bars, {1: enter})
    assert fills(kernel) == [("BUY", 100.0, 2), ("SELL", 97.0, 4)]
    native = run(bars, {1: enter}, contingent="native")
    assert fills(native) == [("BUY", 100.0, 2), ("SELL", 101.0, 3)]


def test_a_trailing_stop_placed_on_a_fill_trails_only_from_the_bar_close_it_was_placed_at() -> None:
    """The same bars; the strategy places a trailing stop (5 below) when its market entry's fill
    is reported, while bar 2 is matched (at bar 2's close). It trails from that close (101, the
    trigger 96), not from bar 2's high 110 that came before it: bar 3 (high 102) raises it to
    97, sold at 97 in bar 4. Trailing from 110 put it at 105: sold at bar 3's open, 101."""
    class OnFill(Scripted):
        def on_order_filled(self, event: OrderFilled) -> None:
            if event.client_order_id == self.ids.get("entry"):
                self.ids["stop"] = self.submit_trailing_stop(IID, SELL, 1.0, offset=5.0)

    inst = Instrument(venue="SIM", symbol="BTCUSD", tick_size=0.01, lot_size=0.001, margin=True)
    kernel = Kernel([inst], venue_config=VenueConfig(fill_on="bars"), initial_cash=1e6)
    kernel.add_strategy(OnFill({1: lambda s: s.ids.update(entry=s.submit_market(IID, BUY, 1.0))}))
    bars = [FLAT, (100.0, 110.0, 99.0, 101.0), (101.0, 102.0, 100.5, 101.5), (101.5, 101.5, 95.5, 96.0)]
    for k, (o, h, lo, c) in enumerate(bars, start=1):
        kernel.process(Bar(IID, T0 + k * H, T0 + k * H, o, h, lo, c, 10.0))
    kernel.stop()
    assert fills(kernel) == [("BUY", 100.0, 2), ("SELL", 97.0, 4)]


def test_a_static_stop_at_the_same_start_would_not_have_filled() -> None:
    script: dict[int, Callable[[Scripted], Any]] = {
        1: lambda s: s.submit_market(IID, BUY, 1.0),
        2: lambda s: s.submit_stop(IID, SELL, 1.0, 95.0, reduce_only=True),
    }
    bars = [FLAT, FLAT, (100.0, 104.0, 100.0, 104.0), (104.0, 108.0, 103.0, 108.0), (107.0, 107.0, 102.0, 103.0)]
    assert fills(run(bars, script)) == [("BUY", 100.0, 2)]


def test_good_till_date_expires_at_its_time() -> None:
    """A buy limit at 90 good till bar 3's time: bar 4 trades at 89 but the order is gone."""
    def place(s: Scripted) -> None:
        coid = s.submit_limit(IID, BUY, 1.0, 90.0)
        s.ids["limit"] = coid
        s.submit_gtd(coid, T0 + 3 * H)

    bars = [FLAT, FLAT, FLAT, (95.0, 95.0, 89.0, 92.0)]
    kernel = run(bars, {1: place})
    assert fills(kernel) == []
    [order] = kernel.result.orders
    assert str(order.status) == "EXPIRED"
    # the same order without the date fills at bar 4
    control = run(bars, {1: lambda s: s.submit_limit(IID, BUY, 1.0, 90.0)})
    assert fills(control) == [("BUY", 90.0, 4)]


def test_a_modified_good_till_date_order_still_expires_at_its_time() -> None:
    """The GTD buy limit at 90 of test_good_till_date_expires_at_its_time, moved to 91 at bar 2: the simulated venue
    modifies it in place (no replacement), so it still ends EXPIRED at bar 3's time and bar 4's low 89 fills
    nothing (a live venue's cancel-replace: tests/live/test_live_amend.py)."""
    def place(s: Scripted) -> None:
        s.ids["limit"] = s.submit_limit(IID, BUY, 1.0, 90.0)
        s.submit_gtd(s.ids["limit"], T0 + 3 * H)

    bars = [FLAT, FLAT, FLAT, (95.0, 95.0, 89.0, 92.0)]
    kernel = run(bars, {1: place, 2: lambda s: s.modify(s.ids["limit"], price=91.0)})
    assert fills(kernel) == []
    [order] = kernel.result.orders
    assert (str(order.status), order.price, order.expire_ns) == ("EXPIRED", 91.0, T0 + 3 * H)


def test_good_till_date_with_latency_expires_at_its_time_on_the_venue() -> None:
    """Latency 1 min: the buy limit 90 (decided at bar 1's close) works from bar 3's open (2h),
    good till 3h. Bar 4 opens at 3h, when the venue has expired the order: its low 89 fills
    nothing. Sent as a cancel at 3h, the expiry reached the venue at 3h + 1 min, inside bar 4,
    and was handled at bar 5's open: the order bought at 90 in bar 4, after its expiry."""
    def place(s: Scripted) -> None:
        coid = s.submit_limit(IID, BUY, 1.0, 90.0)
        s.submit_gtd(coid, T0 + 3 * H)

    kernel = run([FLAT, FLAT, FLAT, (95.0, 95.0, 89.0, 92.0), FLAT], {1: place}, latency_ns=60_000_000_000)
    assert fills(kernel) == []
    [order] = kernel.result.orders
    assert str(order.status) == "EXPIRED" and order.ts_last == T0 + 3 * H


def test_good_till_date_on_trades_with_latency_fills_nothing_after_its_time() -> None:
    """Prints 100, 99, 98, 94 (one a second), latency 1.5 s. The buy limit 95 sent at the first
    print works from 2.5 s, good till 3 s: the print at 4 s (94) comes after the expiry and fills
    nothing. Sent as a cancel at 3 s, the expiry arrived at 4.5 s and the order bought at 95."""
    second = 1_000_000_000

    class OnTrades(Scripted):
        def on_trade(self, trade: Trade) -> None:
            self.on_bar(None)  # type: ignore[arg-type]

    def place(s: Scripted) -> None:
        coid = s.submit_limit(IID, BUY, 1.0, 95.0)
        s.submit_gtd(coid, T0 + 3 * second)

    inst = Instrument(venue="SIM", symbol="BTCUSD", tick_size=0.01, lot_size=0.001, margin=True)
    kernel = Kernel([inst], venue_config=VenueConfig(fill_on="trades", latency_ns=1_500_000_000), initial_cash=1e6)
    kernel.add_strategy(OnTrades({1: place}))
    for k, px in enumerate([100.0, 99.0, 98.0, 94.0], start=1):
        ts = T0 + k * second
        kernel.process(Trade(IID, ts, ts, px, 1.0, 0, str(k)))
    kernel.stop()
    assert kernel.result.fills == []
    [order] = kernel.result.orders
    assert str(order.status) == "EXPIRED" and order.ts_last == T0 + 3 * second


def test_timed_exit_after_n_bars() -> None:
    """Entry fills at bar 2; 2 bars later (bar 4's close) the exit is decided: it fills at bar 5's open."""
    def enter(s: Scripted) -> None:
        s.submit_bracket(IID, BUY, 1.0, exit_after_bars=2)

    bars = [FLAT, FLAT, (100.0, 102.0, 99.0, 101.0), (101.0, 103.0, 100.0, 102.0), (102.5, 103.0, 102.0, 102.0)]
    kernel = run(bars, {1: enter})
    assert fills(kernel) == [("BUY", 100.0, 2), ("SELL", 102.5, 5)]
    assert kernel.result.submit_reasons[kernel.result.fills[-1].client_order_id] == "timed exit"


def test_timed_exit_after_a_duration() -> None:
    def enter(s: Scripted) -> None:
        s.submit_bracket(IID, BUY, 1.0, exit_after_ns=2 * H + 1)

    bars = [FLAT, FLAT, FLAT, FLAT, (103.0, 103.0, 103.0, 103.0), (104.0, 104.0, 104.0, 104.0)]
    kernel = run(bars, {1: enter})
    # Filled at bar 2 (t = 2h); the exit is due at 4h + 1 ns, which the clock reaches when bar 5
    # (open 4h, close 5h) arrives. Decided inside bar 5, it is handled at bar 6's open.
    assert fills(kernel) == [("BUY", 100.0, 2), ("SELL", 104.0, 6)]


def test_cooldown_refuses_new_brackets_for_n_bars() -> None:
    """The take-profit fills in bar 3; with cooldown 2, brackets on bars 3 and 4 are refused, bar 5's passes."""
    def again(s: Scripted) -> None:
        s.ids[f"bar{s.n}"] = s.submit_bracket(IID, BUY, 1.0, take_profit=110.0, cooldown_bars=2)

    script = {1: lambda s: s.submit_bracket(IID, BUY, 1.0, take_profit=110.0, cooldown_bars=2),
              3: again, 4: again, 5: again}
    kernel = run([FLAT, FLAT, (100.0, 111.0, 99.0, 105.0), FLAT, FLAT, FLAT], script)
    ids = strategy(kernel).ids
    assert ids["bar3"] is None and ids["bar4"] is None and ids["bar5"] is not None
    assert fills(kernel) == [("BUY", 100.0, 2), ("SELL", 110.0, 3), ("BUY", 100.0, 6)]


def test_oco_of_two_plain_orders() -> None:
    def place(s: Scripted) -> None:
        a = s.submit_limit(IID, BUY, 1.0, 95.0)
        b = s.submit_stop(IID, BUY, 1.0, 105.0)
        s.submit_oco([a, b])

    kernel = run([FLAT, (100.0, 106.0, 99.0, 106.0), (100.0, 100.0, 90.0, 91.0)], {1: place})
    assert fills(kernel) == [("BUY", 105.0, 2)]


def test_a_raise_of_one_bracket_exit_above_its_sibling_is_denied_and_the_oco_holds() -> None:
    """Bracket: buy 1.0, stop-loss 95, take-profit 110; at bar 4 the strategy raises the take-profit to 2.0. Before, the
    raise went through, the take-profit sold the 1.0 position at 110 in bar 6 (it is reduced to the stop's 1.0 left
    at the stop's fill, never raised with it) and the stop-loss worked on after it, reduced to the take-profit's 1.0
    unfilled. Now the raise is denied with a reason naming the group; a lowering passes; the fill cancels the stop."""
    denied: list[OrderDenied] = []

    def raise_tp(s: Scripted) -> None:
        tp = next(o for o in s.ctx.orders.open_orders() if o.price == 110.0)
        s.ids["tp"] = tp.client_order_id
        s.modify(tp.client_order_id, quantity=2.0)

    def lower_tp(s: Scripted) -> None:
        s.modify(s.ids["tp"], quantity=0.9)  # type: ignore[arg-type]

    class Denials(Scripted):
        def on_order_denied(self, event: OrderDenied) -> None:
            denied.append(event)

    inst = Instrument(venue="SIM", symbol="BTCUSD", tick_size=0.01, lot_size=0.001, margin=True)
    kernel = Kernel([inst], venue_config=VenueConfig(fill_on="bars"), initial_cash=1e6)
    kernel.add_strategy(Denials({1: bracket(), 4: raise_tp, 5: lower_tp}))
    for k, (o, h, lo, c) in enumerate([FLAT, FLAT, FLAT, FLAT, FLAT, (100.0, 112.0, 99.0, 111.0), FLAT], start=1):
        kernel.process(Bar(IID, T0 + k * H, T0 + k * H, o, h, lo, c, 10.0))
    kernel.stop()
    [tp] = [o for o in kernel.orders.orders() if o.client_order_id == strategy(kernel).ids["tp"]]
    assert [(d.client_order_id, d.reason.split(" to ")[0]) for d in denied] == [(tp.client_order_id, f"modify: OCO: {tp.client_order_id}")]
    assert "above the 1 its group" in denied[0].reason
    assert fills(kernel) == [("BUY", 100.0, 2), ("SELL", 110.0, 6)]
    assert (tp.quantity, tp.filled_qty) == (0.9, 0.9)
    assert [o.status.name for o in kernel.orders.orders()] == ["FILLED", "CANCELED", "FILLED"]


def test_a_lowering_of_an_oco_member_whose_reduction_is_on_its_way_is_denied_above_the_reduction() -> None:
    """OCO of a buy limit at 95 and a buy stop at 105, both 1.0, 1.5 s of latency, trades of 1 s; a print of 0.3 at 94 fills the
    first 0.3, and its sibling's reduction to 0.7 leaves for the venue. A second later, the reduction still on its
    way, the strategy modifies the sibling from 1.0 to 0.9. Before, that passed as a lowering of the 1.0 the order
    still showed; the venue applied the reduction (0.7), then the 0.9, and the stop bought 0.9 at 106: the group
    bought 1.2 for its 1.0. Now the 0.9 is denied, above the 0.7 the group leaves it; the group buys 1.0."""
    second = 1_000_000_000
    denied: list[OrderDenied] = []

    class OnTrades(Scripted):
        def on_trade(self, trade: Trade) -> None:
            self.on_bar(None)  # type: ignore[arg-type]

        def on_order_denied(self, event: OrderDenied) -> None:
            denied.append(event)

    def place(s: Scripted) -> None:
        s.ids["a"] = s.submit_limit(IID, BUY, 1.0, 95.0)
        s.ids["b"] = s.submit_stop(IID, BUY, 1.0, 105.0)
        s.submit_oco([s.ids["a"], s.ids["b"]])  # type: ignore[list-item]

    def lower_b(s: Scripted) -> None:
        assert s.ctx.orders.order(s.ids["b"] or "").quantity == 1.0  # the reduction has not arrived
        s.modify(s.ids["b"], quantity=0.9)  # type: ignore[arg-type]

    inst = Instrument(venue="SIM", symbol="BTCUSD", tick_size=0.01, lot_size=0.001, margin=True)
    venue = VenueConfig(fill_on="trades", trade_size_limit=True, latency_ns=1_500_000_000)
    kernel = Kernel([inst], venue_config=venue, initial_cash=1e6)
    kernel.add_strategy(OnTrades({1: place, 4: lower_b}))
    prints = [(100.0, 1.0), (100.0, 1.0), (94.0, 0.3), (96.0, 1.0), (96.0, 1.0), (96.0, 1.0), (96.0, 1.0), (106.0, 5.0)]
    for k, (px, size) in enumerate(prints, start=1):
        kernel.process(Trade(IID, T0 + k * second, T0 + k * second, px, size, 0, str(k)))
    kernel.stop()
    ids = strategy(kernel).ids
    assert [(f.client_order_id, f.price, f.quantity) for f in kernel.result.fills] == [
        (ids["a"], 95.0, 0.3), (ids["b"], 106.0, 0.7)
    ]
    assert kernel.portfolio.position(IID) == pytest.approx(1.0)
    assert [(d.client_order_id, d.reason.split(" to ")[0]) for d in denied] == [(ids["b"], f"modify: OCO: {ids['b']}")]
    assert "above the 0.7 its group" in denied[0].reason


def test_an_oco_of_two_entries_reached_in_one_bar_fills_both_and_says_so_when_linked() -> None:
    """Buy limit 95 and buy stop 105, neither reduce-only; bar 2 (100, 106, 94, 100) reaches both
    (path 100 -> 94 -> 106): the limit fills at 95, the stop at 105 before the OCO cancel (an
    action, at bar 3's open) arrives. Linking them warns; a venue holding the group fills one."""
    def place(s: Scripted) -> None:
        a = s.submit_limit(IID, BUY, 1.0, 95.0)
        b = s.submit_stop(IID, BUY, 1.0, 105.0)
        s.submit_oco([a, b])

    bars = [FLAT, (100.0, 106.0, 94.0, 100.0), FLAT]
    warnings: list[str] = []
    sink = logger.add(lambda m: warnings.append(m.record["message"]), level="WARNING")
    try:
        kernel = run(bars, {1: place})
    finally:
        logger.remove(sink)
    assert fills(kernel) == [("BUY", 95.0, 2), ("BUY", 105.0, 2)]
    assert len(warnings) == 1 and "not reduce-only" in warnings[0] and "contingent: native" in warnings[0]
    native = run(bars, {1: place}, contingent="native")
    assert fills(native) == [("BUY", 95.0, 2)]


def test_a_bracket_links_its_reduce_only_children_without_a_warning() -> None:
    warnings: list[str] = []
    sink = logger.add(lambda m: warnings.append(m.record["message"]), level="WARNING")
    try:
        run([FLAT, FLAT, FLAT], {1: bracket()})
    finally:
        logger.remove(sink)
    assert warnings == []


def test_bracket_errors_and_disabled_strategy() -> None:
    with pytest.raises(OrderError, match="stop_loss 101.0 must be below the entry 100.0"):
        run([FLAT, FLAT], {1: lambda s: s.submit_bracket(IID, BUY, 1.0, entry_price=100.0, stop_loss=101.0)})

    class Plain(Strategy):
        def on_bar(self, bar: Bar) -> None:
            self.submit_bracket(IID, BUY, 1.0, stop_loss=90.0)

    inst = Instrument(venue="SIM", symbol="BTCUSD", tick_size=0.01, lot_size=0.001, margin=True)
    kernel = Kernel([inst], venue_config=VenueConfig(fill_on="bars"))
    kernel.add_strategy(Plain(IID))
    with pytest.raises(OrderError, match="need `contingent = True`"):
        kernel.process(Bar(IID, T0, T0, 1.0, 1.0, 1.0, 1.0, 1.0))


@pytest.mark.parametrize(
    ("side", "options", "message"),
    [(BUY, {"stop_loss": -5.0, "take_profit": 110.0}, "stop_loss must be a positive finite number, got -5.0"),
     (BUY, {"stop_loss": math.nan}, "stop_loss must be a positive finite number, got nan"),
     (SELL, {"take_profit": 0.0}, "take_profit must be a positive finite number, got 0.0"),
     (BUY, {"entry_price": math.inf, "stop_loss": 95.0}, "entry_price must be a positive finite number, got inf"),
     (BUY, {"stop_loss": 95.0, "trail_offset": -1.0}, "trail_offset must be a positive finite number, got -1.0"),
     (BUY, {"trail_percent": 2.0, "take_profit": 150.0},
      "trail_percent trails the stop-loss, but no stop_loss was given (the bracket would have no stop-loss at all)"),
     (SELL, {"trail_offset": 5.0}, "trail_offset trails the stop-loss, but no stop_loss was given"),
     (BUY, {"stop_loss": 110.0, "take_profit": 95.0}, "stop_loss 110.0 must be below take_profit 95.0 of a BUY"),
     (SELL, {"stop_loss": 95.0, "take_profit": 110.0}, "stop_loss 95.0 must be above take_profit 110.0 of a SELL")],
)
def test_a_bracket_whose_exit_could_never_work_is_refused_before_its_entry(
    side: OrderSide, options: dict[str, Any], message: str
) -> None:
    # Before: the market entry filled, the stop-loss child was then denied ("trigger: price -5.0 must be a positive
    # finite number"), and the position stood unprotected in a run that exited 0; swapped exits filled at once.
    # A trailing parameter without stop_loss armed the take-profit alone, or no child: no stop-loss, trailing or not.
    script = {1: lambda s: s.ids.update(entry=s.submit_bracket(IID, side, 1.0, **options))}
    with pytest.raises(OrderError, match=re.escape(f"bracket: {message}")):
        run([FLAT, FLAT, FLAT], script)


@pytest.mark.parametrize(
    ("side", "options", "message"),
    [(BUY, {"stop_loss": 90.0, "take_profit": 95.0},
      "take_profit 95.0 must be above the last price 100.0 of a market BUY entry (it would fill at once)"),
     (SELL, {"stop_loss": 110.0, "take_profit": 105.0},
      "take_profit 105.0 must be below the last price 100.0 of a market SELL entry (it would fill at once)"),
     (BUY, {"stop_loss": 101.0, "take_profit": 110.0},
      "stop_loss 101.0 must be below the last price 100.0 of a market BUY entry (it would trigger at once)"),
     (SELL, {"stop_loss": 99.0},
      "stop_loss 99.0 must be above the last price 100.0 of a market SELL entry (it would trigger at once)")],
)
def test_a_market_bracket_whose_exit_is_beyond_the_last_price_is_refused_before_its_entry(
    side: OrderSide, options: dict[str, Any], message: str
) -> None:
    # Before: a market BUY at 100 with stop_loss 90 and take_profit 95 was taken (the exits were checked only
    # against each other and a limit entry's price): the entry filled and the take-profit sold at once.
    script = {1: lambda s: s.ids.update(entry=s.submit_bracket(IID, side, 1.0, **options))}
    with pytest.raises(OrderError, match=re.escape(f"bracket: {message}")):
        run([FLAT, FLAT, FLAT], script)


@pytest.mark.parametrize(
    ("side", "options", "message"),
    [(BUY, {"entry_price": 105.0, "stop_loss": 102.0, "take_profit": 110.0},
      "stop_loss 102.0 must be below the last price 100.0, where the marketable limit BUY entry at 105.0 fills "
      "(it would trigger at once)"),
     (SELL, {"entry_price": 95.0, "stop_loss": 98.0, "take_profit": 90.0},
      "stop_loss 98.0 must be above the last price 100.0, where the marketable limit SELL entry at 95.0 fills "
      "(it would trigger at once)")],
)
def test_a_marketable_limit_bracket_whose_stop_is_beyond_the_last_price_is_refused_before_its_entry(
    side: OrderSide, options: dict[str, Any], message: str
) -> None:
    # Before: a limit BUY at 105 with the last price at 100 (it fills at once, at 100) and its stop-loss at 102
    # was taken: the stop was checked against the limit only; the entry bought at 100 and the stop sold at once.
    script = {1: lambda s: s.ids.update(entry=s.submit_bracket(IID, side, 1.0, **options))}
    with pytest.raises(OrderError, match=re.escape(f"bracket: {message}")):
        run([FLAT, FLAT, FLAT], script)


def test_a_marketable_limit_bracket_whose_exits_are_apart_from_the_last_price_fills_and_exits() -> None:
    """A limit BUY at 105 with the last price at 100, its stop at 95 and take-profit at 110: bought at bar 2's
    open 100, the take-profit sells at 110 on bar 3."""
    script = {1: lambda s: s.ids.update(entry=s.submit_bracket(IID, BUY, 1.0, entry_price=105.0, stop_loss=95.0,
                                                               take_profit=110.0))}
    kernel = run([FLAT, FLAT, (100.0, 111.0, 99.0, 105.0), FLAT], script)
    assert fills(kernel) == [("BUY", 100.0, 2), ("SELL", 110.0, 3)]


def test_a_denied_entry_leaves_no_bracket_behind() -> None:
    """The risk gate denies the entry (quantity above the instrument's lot grid): the bracket is dropped."""
    kernel = run([FLAT, FLAT, FLAT], {1: lambda s: s.ids.update(entry=s.submit_bracket(IID, BUY, 1.0005, stop_loss=95.0))})
    assert kernel.result.denials and fills(kernel) == []
    contingent = kernel.contingent
    assert contingent is not None and contingent._brackets == {}


def test_a_trailing_stop_placed_on_a_fill_starts_from_the_fill_price_not_the_bar_before() -> None:
    """A long: the market entry fills at bar 2's open (100) and the strategy places a trailing
    stop 5 below when the fill is reported. It starts from the fill, trigger 95 (bar 2's close 92
    does not raise it); bar 3 (96, 97, 95.5, 96.5) stays above 95: still long. It started from
    bar 1's close 120 (the cache had not taken bar 2 yet): trigger 115, sold at bar 3's open 96.
    The mirrored short sells at 100 after a bar 1 at 80: buy stop 105, not 85; bar 3 (104, 104.5,
    103, 104) stays below 105, where the stale 85 bought at its open 104."""
    class OnFill(Scripted):
        def __init__(self, side: OrderSide) -> None:
            super().__init__({1: lambda s: s.ids.update(entry=s.submit_market(IID, side, 1.0))})
            self.side = side

        def on_order_filled(self, event: OrderFilled) -> None:
            if event.client_order_id == self.ids.get("entry"):
                exit_side = SELL if self.side == BUY else BUY
                self.ids["stop"] = self.submit_trailing_stop(IID, exit_side, 1.0, offset=5.0)

    def trade(side: OrderSide, bars: list[tuple[float, float, float, float]]) -> Kernel:
        inst = Instrument(venue="SIM", symbol="BTCUSD", tick_size=0.01, lot_size=0.001, margin=True)
        kernel = Kernel([inst], venue_config=VenueConfig(fill_on="bars"), initial_cash=1e6)
        kernel.add_strategy(OnFill(side))
        for k, (o, h, lo, c) in enumerate(bars, start=1):
            kernel.process(Bar(IID, T0 + k * H, T0 + k * H, o, h, lo, c, 10.0))
        kernel.stop()
        return kernel

    long = trade(BUY, [(120.0, 120.0, 120.0, 120.0), (100.0, 100.0, 90.0, 92.0), (96.0, 97.0, 95.5, 96.5)])
    assert fills(long) == [("BUY", 100.0, 2)]
    assert long.orders.order(strategy(long).ids["stop"] or "").trigger_price == 95.0
    short = trade(SELL, [(80.0, 80.0, 80.0, 80.0), (100.0, 110.0, 100.0, 108.0), (104.0, 104.5, 103.0, 104.0)])
    assert fills(short) == [("SELL", 100.0, 2)]
    assert short.orders.order(strategy(short).ids["stop"] or "").trigger_price == 105.0
    # On trades: bought at the second print (100) after a first at 120; the stop starts at 95,
    # and the third print (99) leaves it alone (from 120 it was 115: sold at 99).
    class OnTrades(OnFill):
        def on_trade(self, trade: Trade) -> None:
            self.on_bar(None)  # type: ignore[arg-type]

    inst = Instrument(venue="SIM", symbol="BTCUSD", tick_size=0.01, lot_size=0.001, margin=True)
    kernel = Kernel([inst], venue_config=VenueConfig(fill_on="trades"), initial_cash=1e6)
    kernel.add_strategy(OnTrades(BUY))
    for k, px in enumerate([120.0, 100.0, 99.0], start=1):
        kernel.process(Trade(IID, T0 + k, T0 + k, px, 1.0, 0, str(k)))
    kernel.stop()
    assert [(f.side, f.price) for f in kernel.result.fills] == [("BUY", 100.0)]
    assert kernel.orders.order(strategy(kernel).ids["stop"] or "").trigger_price == 95.0


def test_a_trailing_stop_whose_modify_is_refused_trails_again_from_the_trigger_the_venue_holds() -> None:
    """Long from bar 2 at 100; trailing sell stop 5 below placed at bar 2's close: trigger 95. The
    risk gate lets 2 orders pass in 2.5 hours: the modify to 99 decided after bar 3 (high 104), the
    third check after the buy (bar 1) and the stop (bar 2), is refused, the venue keeps 95. Bar 4
    (the buy out of the window) sends 99 again; bar 6 (103.5 -> 98) reaches it: sold at 99. The stop
    forgot its refused 99 (it believed the venue held it and sent nothing), or dropped the refusal
    as the stop's end, and stayed at 95. (A halt refused the modify here before; a halt now cancels
    the stop.)"""
    inst = Instrument(venue="SIM", symbol="BTCUSD", tick_size=0.01, lot_size=0.001, margin=True)
    risk = RiskConfig(max_orders_per_window=2, order_rate_window_ns=5 * H // 2)
    kernel = Kernel([inst], venue_config=VenueConfig(fill_on="bars"), risk_config=risk, initial_cash=1e6)
    script: dict[int, Callable[[Scripted], Any]] = {
        1: lambda s: s.submit_market(IID, BUY, 1.0),
        2: lambda s: s.ids.update(stop=s.submit_trailing_stop(IID, SELL, 1.0, offset=5.0)),
    }
    kernel.add_strategy(Scripted(script))
    bars = [FLAT, FLAT, (100.0, 104.0, 100.0, 104.0), (104.0, 104.0, 103.5, 104.0), (104.0, 104.0, 103.5, 104.0),
            (103.5, 103.5, 98.0, 98.5)]  # fmt: skip
    for k, (o, h, lo, c) in enumerate(bars, start=1):
        kernel.process(Bar(IID, T0 + k * H, T0 + k * H, o, h, lo, c, 10.0))
    kernel.stop()
    assert [d.reason.split(":")[:2] for d in kernel.result.denials] == [["modify", " max_order_rate"]]
    assert any(d.reason.startswith("modify: ") for d in kernel.result.denials)
    assert fills(kernel) == [("BUY", 100.0, 2), ("SELL", 99.0, 6)]


def _oco_run(
    members: Callable[[], list[OrderSpec]], *, margin: bool, reducing: bool = False, contingent: str = "emulated",
    position: float = 1.0, **risk: float,
) -> tuple[Kernel, list[str], list[str]]:
    """Buy ``position`` at bar 1 (fills at bar 2's open, 100), then at bar 3 (REDUCING first when
    ``reducing``) submit ``members()`` as one OCO group; bar 5 (100, 111, 99, 105) reaches 110."""
    inst = Instrument(venue="SIM", symbol="BTCUSD", tick_size=0.01, lot_size=0.001, margin=margin)
    kernel = Kernel([inst], venue_config=VenueConfig(fill_on="bars", contingent=contingent),  # type: ignore[arg-type]
                    initial_cash=1e6, risk_config=RiskConfig(**risk))
    denied: list[str] = []
    group: list[str] = []

    def place(s: Scripted) -> None:
        if reducing:
            kernel.risk.set_state(TradingState.REDUCING, "test")
        group.extend(s.submit_oco(members()))

    script: dict[int, Callable[[Scripted], Any]] = {3: place}
    if position:
        script[1] = lambda s: s.submit_market(IID, BUY, position)
    kernel.add_strategy(Scripted(script))
    kernel.bus.subscribe(OrderDenied, lambda e: denied.append(e.reason))
    for k, (o, h, lo, c) in enumerate([FLAT, FLAT, FLAT, FLAT, (100.0, 111.0, 99.0, 105.0), FLAT], start=1):
        kernel.process(Bar(IID, T0 + k * H, T0 + k * H, o, h, lo, c, 10.0))
    kernel.stop()
    return kernel, group, denied


def _exits() -> list[OrderSpec]:
    return [OrderSpec(IID, SELL, 1.0, price=110.0), OrderSpec(IID, SELL, 1.0, trigger_price=95.0)]


@pytest.mark.parametrize("contingent", ["emulated", "native"])
@pytest.mark.parametrize(("margin", "reducing"), [(False, False), (False, True), (True, True)])
def test_an_oco_of_two_exits_of_the_whole_position_is_checked_as_one_group(
    margin: bool, reducing: bool, contingent: str
) -> None:
    """Long 1.0; a sell limit 1.0 at 110 and a sell stop 1.0 at 95 as one OCO group: only one can
    fill, so on a cash spot instrument (the 1.0 held once) and in REDUCING neither is denied for the
    other; the limit fills at 110 in bar 5 and the stop is canceled."""
    kernel, group, denied = _oco_run(_exits, margin=margin, reducing=reducing, contingent=contingent)
    assert denied == []
    assert [str(kernel.orders.order(c).status) for c in group] == ["FILLED", "CANCELED"]
    assert fills(kernel) == [("BUY", 100.0, 2), ("SELL", 110.0, 5)]


def test_an_oco_of_two_entries_is_checked_against_max_position_once() -> None:
    """Flat, max_position 1.0: a buy limit 1.0 at 95 and a buy stop 1.0 at 105 (OCO) reach 1.0 at most."""
    kernel, group, denied = _oco_run(
        lambda: [OrderSpec(IID, BUY, 1.0, price=95.0), OrderSpec(IID, BUY, 1.0, trigger_price=105.0)],
        margin=True, position=0.0, max_position=1.0, contingent="native",
    )
    assert denied == []
    assert [str(kernel.orders.order(c).status) for c in group] == ["CANCELED", "FILLED"]


def test_an_oco_spec_needs_a_price_or_a_trigger() -> None:
    with pytest.raises(OrderError, match="needs a price"):
        _oco_run(lambda: [OrderSpec(IID, SELL, 1.0), OrderSpec(IID, SELL, 1.0, price=110.0)], margin=True)


def _linked(script: Callable[[Scripted], Any], bars: list[tuple[float, float, float, float]]) -> Kernel:
    return run(bars, {k: script for k in range(1, len(bars) + 1)})


def test_an_order_already_in_an_oco_group_is_refused_in_another_not_silently_moved() -> None:
    """Buy limit 95 (a) and buy stop 105 (b) one OCO group, then b and a buy limit 90 (c) another: b was
    moved to the second group without a word, so when b filled only c was canceled and a filled too."""
    def place(s: Scripted) -> None:
        a = s.submit_limit(IID, BUY, 1.0, 95.0)
        b = s.submit_stop(IID, BUY, 1.0, 105.0)
        c = s.submit_limit(IID, BUY, 1.0, 90.0)
        s.submit_oco([a, b])
        s.submit_oco([b, c])

    with pytest.raises(OrderError, match=r"oco: order '\w+' is already in an OCO group with \['\w+'\]"):
        run([FLAT, FLAT], {1: place})


def test_an_order_whose_oco_sibling_was_canceled_may_join_a_new_group() -> None:
    """A group's closed members leave it: the order left alone is free to be linked again."""
    def act(s: Scripted) -> None:
        if s.n == 1:
            s.ids["a"] = s.submit_limit(IID, BUY, 1.0, 95.0)
            s.ids["b"] = s.submit_limit(IID, BUY, 1.0, 94.0)
            s.submit_oco([s.ids["a"], s.ids["b"]])
            s.cancel(s.ids["b"])  # type: ignore[arg-type]
        elif s.n == 3:
            s.ids["c"] = s.submit_stop(IID, BUY, 1.0, 105.0)
            s.submit_oco([s.ids["a"], s.ids["c"]])  # type: ignore[list-item]

    kernel = _linked(act, [FLAT, FLAT, FLAT, (100.0, 100.0, 94.5, 99.0), FLAT, FLAT])
    assert fills(kernel) == [("BUY", 95.0, 4)]
    ids = strategy(kernel).ids
    assert [str(kernel.orders.order(ids[n]).status) for n in "abc"] == ["FILLED", "CANCELED", "CANCELED"]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("members", "why"),
    [
        (lambda s: [s.ids["filled"], s.submit_limit(IID, SELL, 1.0, 120.0)], r"is FILLED, not working"),
        (lambda s: [s.ids["open"], s.ids["open"]], r"given 2 times"),
        (lambda s: [s.ids["open"], "nope"], r"'nope' no such order"),
    ],
)
def test_an_oco_member_that_is_no_working_order_or_given_twice_is_refused(
    members: Callable[[Scripted], list[str]], why: str
) -> None:
    """A filled order was linked to a working one without a word (an OCO that could cancel nothing), and an id
    given twice made a group of one order linked with itself."""
    def act(s: Scripted) -> None:
        if s.n == 1:
            s.ids["filled"] = s.submit_market(IID, BUY, 1.0)
            s.ids["open"] = s.submit_limit(IID, BUY, 1.0, 90.0)
        elif s.n == 3:
            s.submit_oco(members(s))

    with pytest.raises(OrderError, match=f"oco: order .*{why}; an OCO group links working orders"):
        _linked(act, [FLAT, FLAT, FLAT])


def _warnings_of(
    act: Callable[[Scripted], Any], bars: list[tuple[float, float, float, float]], halted: bool = False, **risk: Any
) -> tuple[Kernel, list[str]]:
    """Run ``act`` on every bar (HALTED from the start when ``halted``); the warnings logged."""
    inst = Instrument(venue="SIM", symbol="BTCUSD", tick_size=0.01, lot_size=0.001, margin=True)
    kernel = Kernel([inst], venue_config=VenueConfig(fill_on="bars"), initial_cash=1e6, risk_config=RiskConfig(**risk))
    kernel.add_strategy(Scripted({k: act for k in range(1, len(bars) + 1)}))
    if halted:
        kernel.risk.set_state(TradingState.HALTED, "test")
    warnings: list[str] = []
    sink = logger.add(lambda m: warnings.append(m.record["message"]), level="WARNING")
    try:
        for k, (o, h, lo, c) in enumerate(bars, start=1):
            kernel.process(Bar(IID, T0 + k * H, T0 + k * H, o, h, lo, c, 10.0))
        kernel.stop()
    finally:
        logger.remove(sink)
    return kernel, warnings


def test_an_oco_member_the_gate_denied_in_the_same_call_is_left_out_with_a_warning_not_raised() -> None:
    """max_open_orders 2: buy limits at 95 (a) and 94 (b) work, one at 93 (c) is denied; submit_oco([a, b, c])
    raised an OrderError (c "is DENIED, not working"), which stopped a live daemon. c is left out with a
    warning naming it and the denial; a and b are linked: a fills at 95 in bar 2 and b is canceled."""
    def act(s: Scripted) -> None:
        if s.n == 1:
            s.ids.update(a=s.submit_limit(IID, BUY, 1.0, 95.0), b=s.submit_limit(IID, BUY, 1.0, 94.0))
            s.ids["c"] = s.submit_limit(IID, BUY, 1.0, 93.0)
            s.ids["group"] = s.submit_oco([s.ids["a"], s.ids["b"], s.ids["c"]])  # type: ignore[list-item, assignment]

    kernel, warnings = _warnings_of(act, [FLAT, (100.0, 100.0, 94.5, 99.0), FLAT, FLAT], max_open_orders=2)
    ids = strategy(kernel).ids
    assert ids["group"] == [ids["a"], ids["b"], ids["c"]]
    assert [str(kernel.orders.order(ids[n]).status) for n in "abc"] == ["FILLED", "CANCELED", "DENIED"]  # type: ignore[arg-type]
    assert fills(kernel) == [("BUY", 95.0, 2)]
    [warning] = [w for w in warnings if "left out" in w]
    assert f"{ids['c']} DENIED" in warning and "max_open_orders" in warning
    assert f"{[ids['a'], ids['b']]} linked" in warning


def test_an_oco_of_members_the_gate_denied_links_nothing_and_a_lone_working_member_stays_a_plain_order() -> None:
    """HALTED: both buys of the group are denied (a strategy cannot know a breaker tripped): no group, a
    warning. max_open_orders 1: of a buy limit 95 and a buy stop 105, the stop is denied; the limit alone stays
    a plain order (the warning says so) and fills in bar 2; no cancel is sent for it."""
    def halted(s: Scripted) -> None:
        if s.n == 1:
            s.submit_oco([s.submit_limit(IID, BUY, 1.0, 95.0), s.submit_limit(IID, BUY, 1.0, 94.0)])

    kernel, warnings = _warnings_of(halted, [FLAT, FLAT], halted=True)
    assert len(kernel.result.denials) == 2 and kernel.contingent is not None and kernel.contingent._oco == {}
    [warning] = [w for w in warnings if "left out" in w]
    assert warning.count("DENIED") == 2 and "no group" in warning

    def one_left(s: Scripted) -> None:
        if s.n == 1:
            s.ids.update(a=s.submit_limit(IID, BUY, 1.0, 95.0), b=s.submit_stop(IID, BUY, 1.0, 105.0))
            s.submit_oco([s.ids["a"], s.ids["b"]])  # type: ignore[list-item]

    kernel, warnings = _warnings_of(one_left, [FLAT, (100.0, 100.0, 94.5, 99.0), FLAT], max_open_orders=1)
    ids = strategy(kernel).ids
    assert fills(kernel) == [("BUY", 95.0, 2)]
    [warning] = [w for w in warnings if "left out" in w]
    assert f"{ids['b']} DENIED" in warning and f"{ids['a']} stays a plain order" in warning
    assert not any("not reduce-only" in w for w in warnings)  # one order alone cannot fill with another


def _reasons(kernel: Kernel) -> list[tuple[str, float, int, str]]:
    """(side, price, bar index, reason) of every fill: the reason column of fills.csv and trades.csv."""
    return [(f.side, f.price, (f.ts_event - T0) // H, f.reason) for f in kernel.result.fills]


def test_orders_of_the_contingent_layer_given_no_reason_say_what_they_are() -> None:
    """A bracket's entry, a standalone trailing stop and an OCO spec given no reason were written with an
    empty reason in fills.csv, orders.csv and the exit of trades.csv, beside a bracket child's
    "bracket take-profit"; each says what it is, and a reason given is kept."""
    # the bracket of test_bracket_take_profit_fills_and_cancels_the_stop_loss: in at 100, out at 110
    kernel = run([FLAT, (100.0, 101.0, 99.0, 100.0), (100.0, 111.0, 99.0, 105.0)], {1: bracket()})
    assert _reasons(kernel)[:2] == [("BUY", 100.0, 2, "bracket entry"), ("SELL", 110.0, 3, "bracket take-profit")]
    kernel = run([FLAT, (100.0, 101.0, 99.0, 100.0), (100.0, 111.0, 99.0, 105.0)], {1: bracket(reason="dip")})
    assert _reasons(kernel)[0] == ("BUY", 100.0, 2, "dip")
    # the trailing stop of test_trailing_stop_follows_the_high_and_fills_at_the_raised_trigger: out at 103
    script: dict[int, Callable[[Scripted], Any]] = {
        1: lambda s: s.submit_market(IID, BUY, 1.0, reason="entry"),
        2: lambda s: s.submit_trailing_stop(IID, SELL, 1.0, offset=5.0),
    }
    bars = [FLAT, FLAT, (100.0, 104.0, 100.0, 104.0), (104.0, 108.0, 103.0, 108.0), (107.0, 107.0, 102.0, 103.0)]
    assert _reasons(run(bars, script)) == [("BUY", 100.0, 2, "entry"), ("SELL", 103.0, 5, "trailing stop")]
    # an OCO of a buy stop at 105 (no reason) and a buy limit at 95 ("dip"): bar 2 reaches 105 first
    kernel = run([FLAT, (100.0, 106.0, 99.0, 106.0), (100.0, 100.0, 90.0, 91.0)], {
        1: lambda s: s.submit_oco([OrderSpec(IID, BUY, 1.0, trigger_price=105.0),
                                   OrderSpec(IID, BUY, 1.0, price=95.0, reason="dip")]),
    })
    assert _reasons(kernel) == [("BUY", 105.0, 2, "oco")]
    assert sorted(kernel.result.submit_reasons.values()) == ["dip", "oco"]


def test_a_good_till_date_order_says_gtd_in_orders_csv(tmp_path: Path) -> None:
    """The GTD buy limit of test_good_till_date_expires_at_its_time ended EXPIRED ("GTD: expired") with
    time_in_force GTC in orders.csv, the tif it was sent with; it says GTD (Binance's and NautilusTrader's
    name), and a plain limit beside it GTC."""
    def place(s: Scripted) -> None:
        s.submit_gtd(s.submit_limit(IID, BUY, 1.0, 90.0, reason="dip"), T0 + 3 * H)
        s.submit_limit(IID, BUY, 1.0, 80.0, reason="deep dip")

    kernel = run([FLAT, FLAT, FLAT, (95.0, 95.0, 89.0, 92.0)], {1: place})
    out = tmp_path / "run"
    write_outputs(RunDirectory(out, "backtest"), kernel.result, kernel.instruments, "config: 1\n")
    with (out / "orders.csv").open(newline="") as handle:
        rows = {row["submit_reason"]: row for row in csv.DictReader(handle)}
    assert {k: (r["time_in_force"], r["status"], r["status_reason"]) for k, r in rows.items()} == {
        "dip": ("GTD", "EXPIRED", "GTD: expired"),
        "deep dip": ("GTC", "ACCEPTED", ""),
    }
