"""Native contingent orders in the simulated venue (``contingent: native``) and the bar path setting.

Every expected fill is derived by hand from the bar's path. Bars are (open, high, low, close);
an order decided at bar k's close reaches the venue at bar k+1's open. A native bracket's
children go live at the entry's fill, at that point of the bar path, so the rest of the bar
can stop them out or take profit; emulated children wait for the next bar.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pydantic import ValidationError

from tradebus.engine.instrument import Instrument
from tradebus.engine.kernel import Kernel
from tradebus.engine.messages import Bar, OrderSide, Trade, TradingState
from tradebus.execution.config import VenueConfig

from .test_contingent import FLAT, IID, T0, H
from .test_contingent import Scripted as BarScripted

BUY, SELL = OrderSide.BUY, OrderSide.SELL


class Scripted(BarScripted):
    """Runs ``script[k](self)`` on bar (or trade) k, 1-based."""

    def on_trade(self, trade: Trade) -> None:
        self.on_bar(None)  # type: ignore[arg-type]


def _kernel(config: VenueConfig, script: dict[int, Callable[[Scripted], Any]]) -> Kernel:
    inst = Instrument(venue="SIM", symbol="BTCUSD", tick_size=0.01, lot_size=0.001, margin=True)
    kernel = Kernel([inst], venue_config=config, initial_cash=1e6)
    kernel.add_strategy(Scripted(script))
    return kernel


def run(
    bars: list[tuple[float, float, float, float]],
    script: dict[int, Callable[[Scripted], Any]],
    **config: Any,
) -> Kernel:
    kernel = _kernel(VenueConfig(fill_on="bars", **{"contingent": "native", **config}), script)
    for k, (o, h, lo, c) in enumerate(bars, start=1):
        kernel.process(Bar(IID, T0 + k * H, T0 + k * H, o, h, lo, c, 10.0))
    kernel.stop()
    return kernel


def fills(kernel: Kernel) -> list[tuple[str, float, int]]:
    """(side, price, bar index) of every fill."""
    return [(f.side, f.price, (f.ts_event - T0) // H) for f in kernel.result.fills]


def by_reason(kernel: Kernel) -> dict[str, Any]:
    return {kernel.result.submit_reasons[o.client_order_id]: o for o in kernel.result.orders}


def bracket(side: OrderSide = BUY, **options: Any) -> Callable[[Scripted], Any]:
    def act(s: Scripted) -> None:
        s.submit_bracket(IID, side, 1.0, **options)

    return act


LONG = {"stop_loss": 95.0, "take_profit": 110.0}


def test_limit_entry_is_stopped_out_later_in_its_own_bar() -> None:
    """Bar 2 (102, 103, 94, 96) closes below its open: path 102 -> 103 -> 94 -> 96. The buy limit
    at 100 fills on the way down (maker, 100); the stop-loss, live from there, triggers at 95 on
    the same leg and fills at 95. Emulated, the children work from bar 3 (flat at 100): no exit."""
    bars = [FLAT, (102.0, 103.0, 94.0, 96.0), FLAT]
    native = run(bars, {1: bracket(entry_price=100.0, **LONG)})
    assert fills(native) == [("BUY", 100.0, 2), ("SELL", 95.0, 2)]
    assert native.portfolio.position(IID) == 0.0
    orders = by_reason(native)
    assert str(orders["bracket take-profit"].status) == "CANCELED"
    assert orders["bracket take-profit"].reason == "OCO: sibling filled"
    emulated = run(bars, {1: bracket(entry_price=100.0, **LONG)}, contingent="emulated")
    assert fills(emulated) == [("BUY", 100.0, 2)]


def test_limit_entry_takes_profit_in_its_own_bar() -> None:
    """Bar 2 (101, 111, 99, 108) closes above its open: path 101 -> 99 -> 111 -> 108. The entry
    fills at 100 on the first leg; the take-profit 110 is reached on the way up to 111."""
    kernel = run([FLAT, (101.0, 111.0, 99.0, 108.0), (90.0, 90.0, 80.0, 85.0)], {1: bracket(entry_price=100.0, **LONG)})
    assert fills(kernel) == [("BUY", 100.0, 2), ("SELL", 110.0, 2)]
    stop = by_reason(kernel)["bracket stop-loss"]
    assert str(stop.status) == "CANCELED"
    assert (stop.ts_last - T0) // H == 2  # canceled by the venue in bar 2, not an action later


def test_the_path_before_the_fill_does_not_count() -> None:
    """Bar 2 (101, 111, 99, 100) closes below its open: path 101 -> 111 -> 99 -> 100. The high of
    111 comes before the entry fills at 100 on the way down to 99, so the take-profit (live only
    from the fill) is not reached in bar 2, nor is the stop-loss; bar 3 reaches 110."""
    kernel = run([FLAT, (101.0, 111.0, 99.0, 100.0), (100.0, 110.0, 100.0, 105.0)], {1: bracket(entry_price=100.0, **LONG)})
    assert fills(kernel) == [("BUY", 100.0, 2), ("SELL", 110.0, 3)]


# A market entry fills at bar 2's open (100); the rest of bar 2 reaches both 95 and 110.
UP = (100.0, 111.0, 94.0, 105.0)  # close >= open
DOWN = (100.0, 111.0, 94.0, 98.0)  # close < open


@pytest.mark.parametrize(
    ("bar_path", "bar2", "exit_px"),
    [
        ("close_direction", UP, 95.0),  # 100 -> 94 -> 111: the stop first
        ("close_direction", DOWN, 110.0),  # 100 -> 111 -> 94: the target first
        ("high_first", UP, 110.0),  # 100 -> 111 -> 94 on every bar
        ("high_first", DOWN, 110.0),
        ("low_first", UP, 95.0),  # 100 -> 94 -> 111 on every bar
        ("low_first", DOWN, 95.0),
        ("stop_first", UP, 95.0),  # both reached: the stop wins
        ("stop_first", DOWN, 95.0),  # the path reaches 110 first, the stop still wins
    ],
)
def test_bar_path_decides_a_same_bar_stop_and_target(
    bar_path: str, bar2: tuple[float, float, float, float], exit_px: float
) -> None:
    kernel = run([FLAT, bar2, FLAT], {1: bracket(**LONG)}, bar_path=bar_path)
    assert fills(kernel) == [("BUY", 100.0, 2), ("SELL", exit_px, 2)]
    assert kernel.portfolio.position(IID) == 0.0


@pytest.mark.parametrize(
    ("bar_path", "bar2", "exit_px"),
    [
        ("close_direction", (100.0, 106.0, 89.0, 95.0), 105.0),  # 100 -> 106: the short's stop first
        ("close_direction", (100.0, 106.0, 89.0, 101.0), 90.0),  # 100 -> 89: the target first
        ("stop_first", (100.0, 106.0, 89.0, 101.0), 105.0),
    ],
)
def test_short_bracket_mirrors_the_long(bar_path: str, bar2: tuple[float, float, float, float], exit_px: float) -> None:
    kernel = run([FLAT, bar2, FLAT], {1: bracket(SELL, stop_loss=105.0, take_profit=90.0)}, bar_path=bar_path)
    assert fills(kernel) == [("SELL", 100.0, 2), ("BUY", exit_px, 2)]


def test_stop_first_also_decides_emulated_children() -> None:
    """Emulated children work from bar 3; bar 3 (100, 111, 94, 98) walks 100 -> 111 -> 94, so the
    default path takes profit at 110, ``stop_first`` stops out at 95 (the reduce-only target
    then finds no position and is canceled)."""
    bars = [FLAT, FLAT, DOWN, FLAT]
    default = run(bars, {1: bracket(**LONG)}, contingent="emulated")
    assert fills(default) == [("BUY", 100.0, 2), ("SELL", 110.0, 3)]
    conservative = run(bars, {1: bracket(**LONG)}, contingent="emulated", bar_path="stop_first")
    assert fills(conservative) == [("BUY", 100.0, 2), ("SELL", 95.0, 3)]
    assert conservative.portfolio.position(IID) == 0.0


@pytest.mark.parametrize("contingent", ["emulated", "native"])
def test_stop_first_takes_a_profit_the_bar_opens_through_before_a_later_stop(contingent: str) -> None:
    """Long at 100 from bar 2 (stop-loss 95, take-profit 110). Bar 3 (112, 112, 94, 96) opens at
    112, through the take-profit, then falls to 94: the open is the bar's first price, so the
    target resting at 110 fills there (at the open, 112) before the path can reach the stop.
    ``stop_first`` only decides what the bar's path leaves open (it used to stop out at 95)."""
    bars = [FLAT, FLAT, (112.0, 112.0, 94.0, 96.0), FLAT]
    kernel = run(bars, {1: bracket(**LONG)}, contingent=contingent, bar_path="stop_first")
    assert fills(kernel) == [("BUY", 100.0, 2), ("SELL", 112.0, 3)]
    assert kernel.portfolio.position(IID) == 0.0


def test_a_child_crossed_at_the_fill_fills_at_the_fill_price() -> None:
    """A long sent at 100 with its stop at 99, filled at bar 2's open 98.5 (a gap below the stop): the sell
    stop is already triggered where it goes live and fills there, at 98.5 (taker). (A stop above the last
    price of a market entry is refused at submit: the market moved after it.)"""
    kernel = run([FLAT, (98.5, 99.0, 98.0, 98.5), FLAT], {1: bracket(stop_loss=99.0, take_profit=110.0)})
    assert fills(kernel) == [("BUY", 98.5, 2), ("SELL", 98.5, 2)]
    assert [str(f.liquidity) for f in kernel.result.fills] == ["TAKER", "TAKER"]


def test_arm_after_bars_still_avoids_the_same_bar_stop_out() -> None:
    """``arm_after_bars=1`` on a native venue: the children wait for bar 3's close and work from
    bar 4 (dips to 94 in bars 2 and 3 do not stop it out; bar 4's does, at 95)."""
    dip = (100.0, 100.0, 94.0, 99.0)
    kernel = run([FLAT, dip, dip, dip, FLAT], {1: bracket(arm_after_bars=1, **LONG)})
    assert fills(kernel) == [("BUY", 100.0, 2), ("SELL", 95.0, 4)]


def test_native_oco_cancels_the_sibling_inside_the_bar() -> None:
    """A buy limit 95 and a buy stop 105, one OCO group, both reached by bar 2 (100, 106, 94, 104),
    path 100 -> 94 -> 106: the limit fills at 95; native, the stop is canceled at once; emulated,
    the cancel is an action for bar 3 and the stop fills at 105 too (a double entry)."""

    def place(s: Scripted) -> None:
        s.submit_oco([s.submit_limit(IID, BUY, 1.0, 95.0), s.submit_stop(IID, BUY, 1.0, 105.0)])

    bars = [FLAT, (100.0, 106.0, 94.0, 104.0), FLAT]
    assert fills(run(bars, {1: place})) == [("BUY", 95.0, 2)]
    assert fills(run(bars, {1: place}, contingent="emulated")) == [("BUY", 95.0, 2), ("BUY", 105.0, 2)]


def test_future_bars_do_not_change_native_fills() -> None:
    base = [FLAT, (101.0, 111.0, 99.0, 108.0)]
    a = run([*base, FLAT, FLAT], {1: bracket(entry_price=100.0, **LONG)})
    b = run([*base, (50.0, 200.0, 10.0, 60.0), FLAT], {1: bracket(entry_price=100.0, **LONG)})
    assert fills(a) == fills(b) == [("BUY", 100.0, 2), ("SELL", 110.0, 2)]


def test_native_children_on_trades_skip_the_latency() -> None:
    """Trades 101, 101, 100, 94, 93, 92 (one per second), latency 1.5 s. The buy limit 100, sent at
    the first print, arrives at 2.5 s (resting: the last print is 101) and fills at the third
    print (maker, 100). Native, the stop-loss is live from that fill and fills at the fourth
    print, 94 (the first print through its trigger 95). Emulated, the children are sent at the
    third print, arrive at 4.5 s and fill at the fifth, 93."""
    prices = [101.0, 101.0, 100.0, 94.0, 93.0, 92.0]

    def play(contingent: str) -> list[tuple[str, float, int]]:
        config = VenueConfig(fill_on="trades", contingent=contingent, latency_ns=1_500_000_000)
        kernel = _kernel(config, {1: bracket(entry_price=100.0, **LONG)})
        for k, px in enumerate(prices, start=1):
            ts = T0 + k * 1_000_000_000
            kernel.process(Trade(IID, ts, ts, px, 1.0, 0, str(k)))
        kernel.stop()
        return [(f.side, f.price, (f.ts_event - T0) // 1_000_000_000) for f in kernel.result.fills]

    assert play("native") == [("BUY", 100.0, 3), ("SELL", 94.0, 4)]
    assert play("emulated") == [("BUY", 100.0, 3), ("SELL", 93.0, 5)]


def test_a_trailing_stop_loss_trails_from_the_entry_fill_not_from_before_it() -> None:
    """Trail 5 below the best price since the child went live. Bar 1 closes at 100. Bar 2
    (100, 101, 94, 97) closes below its open: path 100 -> 101 -> 94 -> 97; the buy limit 95
    fills on the way down (maker, 95), the stop-loss goes live there at 95 - 5 = 90 (the
    floor 90), and the rest of the bar (95 -> 94 -> 97) does not reach it. What bar 2 did after
    the fill tops at 97: trigger 92, sent for bar 3 (97, 98, 96.5, 97.5), which stays above it;
    after bar 3 the best is 98: trigger 93, reached in bar 4 (97.5 -> 98 -> 91): sold at 93.
    Trailing from bar 1's close (100) put the stop at 95, at the fill: stopped out at once."""
    bars = [FLAT, (100.0, 101.0, 94.0, 97.0), (97.0, 98.0, 96.5, 97.5), (97.5, 98.0, 91.0, 92.0)]
    kernel = run(bars, {1: bracket(entry_price=95.0, stop_loss=90.0, trail_offset=5.0)})
    assert fills(kernel) == [("BUY", 95.0, 2), ("SELL", 93.0, 4)]


def test_a_trailing_stop_loss_of_a_market_entry_trails_the_whole_entry_bar() -> None:
    """The market entry fills at bar 2's open (100): all of bar 2 (100 -> 99 -> 110 -> 101) is
    after it, so its high 110 counts: trigger 105, sent for bar 3, which opens at 101 below it."""
    bars = [FLAT, (100.0, 110.0, 99.0, 101.0), (101.0, 102.0, 100.5, 101.5)]
    kernel = run(bars, {1: bracket(stop_loss=90.0, trail_offset=5.0)})
    assert fills(kernel) == [("BUY", 100.0, 2), ("SELL", 101.0, 3)]


def test_a_trailing_stop_loss_on_trades_trails_from_the_entry_fill() -> None:
    """Prints 100, 100, 95, 93, 91 (one a second). The buy limit 95 fills at the third print;
    the trailing stop-loss (5 below) is live from there at 90: 93 and 91 do not reach it.
    Trailing from the print before the fill (100) put it at 95 and sold at 93."""
    config = VenueConfig(fill_on="trades", contingent="native")
    kernel = _kernel(config, {1: bracket(entry_price=95.0, stop_loss=85.0, trail_offset=5.0)})
    for k, px in enumerate([100.0, 100.0, 95.0, 93.0, 91.0], start=1):
        ts = T0 + k * 1_000_000_000
        kernel.process(Trade(IID, ts, ts, px, 1.0, 0, str(k)))
    kernel.stop()
    assert [(f.side, f.price) for f in kernel.result.fills] == [("BUY", 95.0)]
    assert by_reason(kernel)["bracket trailing stop-loss"].trigger_price == 90.0


def test_native_needs_a_venue_that_holds_orders() -> None:
    with pytest.raises(ValidationError, match="contingent: 'native' works with fill_on bars"):
        VenueConfig(fill_on="book", contingent="native")
    with pytest.raises(ValidationError, match="bar_path"):
        VenueConfig(bar_path="open_close")  # type: ignore[arg-type]


@pytest.mark.parametrize("contingent", ["emulated", "native"])
def test_a_take_profit_armed_in_reducing_is_not_denied_for_its_stop_loss(contingent: str) -> None:
    """Long 1.0 from the entry, the gate goes REDUCING before the children are armed: the stop-loss
    and the take-profit both sell the same 1.0 (an OCO pair), so both reduce; bar 5 takes profit."""
    kernel = _kernel(VenueConfig(fill_on="bars", contingent=contingent), {  # type: ignore[arg-type]
        1: bracket(arm_after_bars=1, **LONG),
        2: lambda s: kernel.risk.set_state(TradingState.REDUCING, "test"),
    })
    for k, (o, h, lo, c) in enumerate([FLAT, FLAT, FLAT, FLAT, (100.0, 111.0, 99.0, 105.0)], start=1):
        kernel.process(Bar(IID, T0 + k * H, T0 + k * H, o, h, lo, c, 10.0))
    kernel.stop()
    assert str(by_reason(kernel)["bracket take-profit"].status) == "FILLED"
    assert fills(kernel) == [("BUY", 100.0, 2), ("SELL", 110.0, 5)]
