"""Brackets on a cash-only spot instrument: both children work, one fills, the other is canceled.

The account holds USD 1000 and no BTC. A market buy of 1 BTC sent at bar 1's close fills at
bar 2's open, 100 (taker fee 0.2 %: 0.2 USD). The stop-loss (95) and the take-profit (110) each
sell the 1 BTC bought: as an OCO pair they hold it once, so neither is denied, and neither is
reduce-only (spot venues have none; the cash account never sells more than the balance holds).
Bars are (open, high, low, close); see :mod:`tests.execution.test_contingent_native` for the path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from loguru import logger

from tradebus.engine.instrument import Instrument
from tradebus.engine.kernel import Kernel
from tradebus.engine.messages import Bar, OrderModifyRejected, OrderSide, Trade
from tradebus.execution.config import VenueConfig
from tradebus.risk.config import RiskConfig
from tradebus.strategies.base import Strategy

from .test_contingent import FLAT, IID, T0, H, Scripted

S = 1_000_000_000


def run(
    bars: list[tuple[float, float, float, float]], contingent: str, btc: float = 0.0, bar_path: str = "close_direction"
) -> Kernel:
    inst = Instrument(
        venue="SIM", symbol="BTCUSD", tick_size=0.01, lot_size=0.001, base="BTC", quote="USD",
        maker_fee=0.001, taker_fee=0.002,
    )  # fmt: skip
    assert inst.cash_only
    kernel = Kernel([inst], venue_config=VenueConfig(fill_on="bars", contingent=contingent, bar_path=bar_path),  # type: ignore[arg-type]
                    balances={"USD": 1000.0, "BTC": btc})
    act: Callable[[Scripted], Any] = lambda s: s.submit_bracket(IID, OrderSide.BUY, 1.0, stop_loss=95.0, take_profit=110.0)
    kernel.add_strategy(Scripted({1: act}))
    for k, (o, h, lo, c) in enumerate(bars, start=1):
        kernel.process(Bar(IID, T0 + k * H, T0 + k * H, o, h, lo, c, 10.0))
    kernel.stop()
    return kernel


def outcome(kernel: Kernel) -> tuple[list[tuple[str, float, int]], dict[str, tuple[str, bool]]]:
    """(side, price, bar) of every fill; reason -> (status, reduce_only) of every order."""
    fills = [(f.side, f.price, (f.ts_event - T0) // H) for f in kernel.result.fills]
    reasons = kernel.result.submit_reasons
    return fills, {reasons[o.client_order_id]: (str(o.status), o.reduce_only) for o in kernel.result.orders}


@pytest.mark.parametrize("contingent", ["native", "emulated"])
def test_a_bracket_on_cash_spot_takes_profit_and_cancels_its_stop(contingent: str) -> None:
    """Bar 3 (100, 111, 99, 108) closes above its open: path 100 -> 99 -> 111. The stop at 95 is not
    reached, the take-profit fills at 110 (maker fee 0.11); the stop is canceled.
    USD: 1000 - 100 - 0.2 + 110 - 0.11 = 1009.69; BTC back to 0."""
    kernel = run([FLAT, FLAT, (100.0, 111.0, 99.0, 108.0), FLAT], contingent)
    fills, orders = outcome(kernel)
    assert fills == [("BUY", 100.0, 2), ("SELL", 110.0, 3)]
    assert orders["bracket take-profit"] == ("FILLED", False)
    assert orders["bracket stop-loss"] == ("CANCELED", False)
    account = kernel.portfolio.account
    assert account.balance("USD") == pytest.approx(1009.69, abs=1e-9)
    assert account.balance("BTC") == pytest.approx(0.0, abs=1e-12)
    assert account.locked("BTC") == 0.0


def test_a_native_bracket_on_cash_spot_stops_out_in_its_entry_bar() -> None:
    """Native: the children work from the entry's fill at bar 2's open. Bar 2 (100, 111, 94, 105)
    walks 100 -> 94 -> 111: the stop fills at 95 (taker fee 0.19), the take-profit is canceled by
    the venue in the same bar. USD: 1000 - 100.2 + 95 - 0.19 = 994.61."""
    kernel = run([FLAT, (100.0, 111.0, 94.0, 105.0), FLAT], "native")
    fills, orders = outcome(kernel)
    assert fills == [("BUY", 100.0, 2), ("SELL", 95.0, 2)]
    assert orders["bracket take-profit"] == ("CANCELED", False)
    assert kernel.portfolio.account.balance("USD") == pytest.approx(994.61, abs=1e-9)


def test_the_working_children_hold_the_bought_btc_once() -> None:
    """After the entry, while both children work, 1 BTC is locked (not 2) and none is free."""
    kernel = run([FLAT, FLAT], "native", btc=0.5)
    account = kernel.portfolio.account
    assert [str(o.status) for o in kernel.orders.open_orders()] == ["ACCEPTED", "ACCEPTED"]
    assert account.balance("BTC") == pytest.approx(1.5)
    assert account.locked("BTC") == pytest.approx(1.0)
    assert account.free("BTC") == pytest.approx(0.5)


@pytest.mark.parametrize("contingent", ["native", "emulated"])
@pytest.mark.parametrize(
    ("bar", "bar_path", "exit_fill", "usd"),
    [
        # closes above its open: 100 -> 94 -> 111, the stop (95, taker 0.19) is reached first
        ((100.0, 111.0, 94.0, 108.0), "close_direction", ("SELL", 95.0, 3), 994.61),
        # closes below its open: 100 -> 111 -> 94, the take-profit (110, maker 0.11) first
        ((100.0, 111.0, 94.0, 98.0), "close_direction", ("SELL", 110.0, 3), 1009.69),
        # the same bar under stop_first: the stop wins
        ((100.0, 111.0, 94.0, 98.0), "stop_first", ("SELL", 95.0, 3), 994.61),
    ],
)
def test_a_bracket_reaching_both_exits_in_one_bar_fills_one_even_with_more_btc_held(
    contingent: str, bar: tuple[float, float, float, float], bar_path: str, exit_fill: tuple[str, float, int],
    usd: float,
) -> None:
    """The account holds 2 BTC before the bracket buys 1 more: selling both exits' BTC fits the
    balance, yet the pair is one OCO and only the one the bar path reaches first fills (emulated
    filled both: 2 sells of 1 BTC, BTC 1). USD: 1000 - 100.2 + 95 - 0.19 = 994.61 after the stop,
    1000 - 100.2 + 110 - 0.11 = 1009.69 after the take-profit; BTC back to 2."""
    kernel = run([FLAT, FLAT, bar, FLAT], contingent, btc=2.0, bar_path=bar_path)
    fills, orders = outcome(kernel)
    assert fills == [("BUY", 100.0, 2), exit_fill]
    filled, canceled = ("stop-loss", "take-profit") if exit_fill[1] == 95.0 else ("take-profit", "stop-loss")
    assert orders[f"bracket {filled}"] == ("FILLED", False)
    assert orders[f"bracket {canceled}"] == ("CANCELED", False)
    account = kernel.portfolio.account
    assert account.balance("USD") == pytest.approx(usd, abs=1e-9)
    assert account.balance("BTC") == pytest.approx(2.0, abs=1e-12)
    assert account.locked("BTC") == 0.0


class _TradeBracket(Strategy):
    """Buys 1 BTC with a stop-loss at 95 and a take-profit at 110 at its first trade."""

    contingent = True

    def __init__(self) -> None:
        super().__init__(IID, strategy_id="s")
        self.sent = False

    def on_trade(self, trade: Trade) -> None:
        if not self.sent:
            self.sent = True
            self.submit_bracket(IID, OrderSide.BUY, 1.0, stop_loss=95.0, take_profit=110.0)


@pytest.mark.parametrize("contingent", ["native", "emulated"])
def test_a_stop_loss_after_a_partial_take_profit_sells_what_is_left_of_the_bracket(contingent: str) -> None:
    """On trades with fills capped at the printed size and 10 s latency, the account holding 2 BTC:
    the entry fills at 100, a 0.3 BTC print at 110.5 takes 0.3 profit at 110, then prints at 94
    stop out the other 0.7 at 94 before the OCO's reduction of the stop arrives (emulated: the stop
    was canceled whole, leaving 0.7 BTC of the bracket unprotected). BTC back to 2; USD:
    1000 - 100.2 + (33 - 0.033) + (65.8 - 0.1316) = 998.4354 (taker 0.2 %, maker 0.1 %)."""
    inst = Instrument(
        venue="SIM", symbol="BTCUSD", tick_size=0.01, lot_size=0.001, base="BTC", quote="USD",
        maker_fee=0.001, taker_fee=0.002,
    )  # fmt: skip
    venue = VenueConfig(fill_on="trades", contingent=contingent, trade_size_limit=True, latency_ns=10 * S)  # type: ignore[arg-type]
    kernel = Kernel([inst], venue_config=venue, balances={"USD": 1000.0, "BTC": 2.0})
    kernel.add_strategy(_TradeBracket())
    prints = [(100.0, 5.0)] * 8 + [(110.5, 0.3)] + [(94.0, 5.0)] * 6
    for k, (px, size) in enumerate(prints, start=1):
        kernel.process(Trade(IID, T0 + 5 * k * S, T0 + 5 * k * S, px, size, 0, f"t{k}"))
    kernel.stop()
    assert [(f.side, round(f.quantity, 9), f.price) for f in kernel.result.fills] == [
        ("BUY", 1.0, 100.0), ("SELL", 0.3, 110.0), ("SELL", 0.7, 94.0),
    ]  # fmt: skip
    account = kernel.portfolio.account
    assert account.balance("BTC") == pytest.approx(2.0, abs=1e-12)
    assert account.balance("USD") == pytest.approx(998.4354, abs=1e-9)
    assert account.locked("BTC") == pytest.approx(0.0, abs=1e-12)


def test_an_emulated_take_profit_ends_once_a_capped_stop_sold_the_rest_of_its_group() -> None:
    """The setup above, emulated: the stop-loss (1 BTC, reduced to 0.7 only later) is capped at the
    0.7 its group may still fill and sells it; the take-profit's room is then 0, so the OCO cancels
    it instead of reducing it to the stop's 0.3 unfilled (it stayed PARTIALLY_FILLED with 0.3 left
    it could never fill)."""
    inst = Instrument(
        venue="SIM", symbol="BTCUSD", tick_size=0.01, lot_size=0.001, base="BTC", quote="USD",
        maker_fee=0.001, taker_fee=0.002,
    )  # fmt: skip
    venue = VenueConfig(fill_on="trades", contingent="emulated", trade_size_limit=True, latency_ns=10 * S)  # type: ignore[arg-type]
    kernel = Kernel([inst], venue_config=venue, balances={"USD": 1000.0, "BTC": 2.0})
    kernel.add_strategy(_TradeBracket())
    prints = [(100.0, 5.0)] * 8 + [(110.5, 0.3)] + [(94.0, 5.0)] * 6
    for k, (px, size) in enumerate(prints, start=1):
        kernel.process(Trade(IID, T0 + 5 * k * S, T0 + 5 * k * S, px, size, 0, f"t{k}"))
    assert kernel.orders.open_orders() == []
    kernel.stop()
    reasons = kernel.result.submit_reasons
    target = next(o for o in kernel.result.orders if reasons[o.client_order_id] == "bracket take-profit")
    assert (str(target.status), round(target.filled_qty, 9), round(target.quantity, 9)) == ("CANCELED", 0.3, 1.0)
    assert kernel.portfolio.account.locked("BTC") == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("contingent", ["native", "emulated"])
def test_a_timed_exit_on_cash_spot_sells_once_the_childrens_cancels_are_confirmed(contingent: str) -> None:
    """``exit_after_bars=2``: the entry fills at bar 2's open, the exit is decided at bar 4's close. Its
    children hold the 1 BTC until their cancels reach the venue (bar 5's open); the exit is sent then
    and sells at bar 6's open, 100 (a reduce-only exit on margin sells at bar 5's: no balance held).
    Before, the exit went with the cancels: denied ("held by working orders 1"), the children were
    canceled and the 1 BTC stayed unprotected. USD: 1000 - 100.2 + 100 - 0.2 = 999.6."""
    inst = Instrument(
        venue="SIM", symbol="BTCUSD", tick_size=0.01, lot_size=0.001, base="BTC", quote="USD",
        maker_fee=0.001, taker_fee=0.002,
    )  # fmt: skip
    kernel = Kernel([inst], venue_config=VenueConfig(fill_on="bars", contingent=contingent),  # type: ignore[arg-type]
                    balances={"USD": 1000.0, "BTC": 0.0})
    kernel.add_strategy(Scripted({1: lambda s: s.submit_bracket(IID, OrderSide.BUY, 1.0, stop_loss=95.0,
                                                                take_profit=110.0, exit_after_bars=2)}))
    for k in range(1, 8):
        kernel.process(Bar(IID, T0 + k * H, T0 + k * H, *FLAT, 10.0))
    kernel.stop()
    fills, orders = outcome(kernel)
    assert fills == [("BUY", 100.0, 2), ("SELL", 100.0, 6)]
    assert orders["bracket stop-loss"] == orders["bracket take-profit"] == ("CANCELED", False)
    assert orders["timed exit"] == ("FILLED", False)
    account = kernel.portfolio.account
    assert account.balance("BTC") == pytest.approx(0.0, abs=1e-12)
    assert account.balance("USD") == pytest.approx(999.6, abs=1e-9)
    assert account.locked("BTC") == 0.0


class _TimedTradeBracket(Strategy):
    """Buys 1 BTC with a stop-loss at 95, a take-profit at 110 and a timed exit 30 s after the entry's fill."""

    contingent = True

    def __init__(self) -> None:
        super().__init__(IID, strategy_id="s")
        self.sent = False

    def on_trade(self, trade: Trade) -> None:
        if not self.sent:
            self.sent = True
            self.submit_bracket(IID, OrderSide.BUY, 1.0, stop_loss=95.0, take_profit=110.0, exit_after_ns=30 * S)


@pytest.mark.parametrize("contingent", ["native", "emulated"])
def test_a_timed_exit_on_cash_spot_sells_what_a_child_left_filling_before_its_cancel_came(contingent: str) -> None:
    """Trades every 5 s, fills capped at the printed size, 10 s latency: the entry fills at 20 s (100), the
    timed exit is decided at 50 s and the children's cancels reach the venue at 60 s; meanwhile a 0.3 print
    at 110.5 (55 s) fills 0.3 of the take-profit. The exit, sent once both cancels are confirmed, sells the
    0.7 left (100 at 80 s). Before, an exit of 1 BTC was denied at 50 s and 0.7 BTC stayed unprotected.
    USD: 1000 - 100.2 + (33 - 0.033) + (70 - 0.14) = 1002.627 (taker 0.2 %, maker 0.1 %)."""
    inst = Instrument(
        venue="SIM", symbol="BTCUSD", tick_size=0.01, lot_size=0.001, base="BTC", quote="USD",
        maker_fee=0.001, taker_fee=0.002,
    )  # fmt: skip
    venue = VenueConfig(fill_on="trades", contingent=contingent, trade_size_limit=True, latency_ns=10 * S)  # type: ignore[arg-type]
    kernel = Kernel([inst], venue_config=venue, balances={"USD": 1000.0, "BTC": 0.0})
    kernel.add_strategy(_TimedTradeBracket())
    prints = [(100.0, 5.0)] * 10 + [(110.5, 0.3)] + [(100.0, 5.0)] * 8
    for k, (px, size) in enumerate(prints, start=1):
        kernel.process(Trade(IID, T0 + 5 * k * S, T0 + 5 * k * S, px, size, 0, f"t{k}"))
    kernel.stop()
    assert [(f.side, round(f.quantity, 9), f.price, (f.ts_event - T0) // S) for f in kernel.result.fills] == [
        ("BUY", 1.0, 100.0, 20), ("SELL", 0.3, 110.0, 55), ("SELL", 0.7, 100.0, 80),
    ]  # fmt: skip
    _, orders = outcome(kernel)
    assert orders["bracket stop-loss"] == orders["bracket take-profit"] == ("CANCELED", False)
    assert orders["timed exit"] == ("FILLED", False)
    account = kernel.portfolio.account
    assert account.balance("BTC") == pytest.approx(0.0, abs=1e-12)
    assert account.balance("USD") == pytest.approx(1002.627, abs=1e-9)
    assert account.locked("BTC") == pytest.approx(0.0, abs=1e-12)


class _Watched(Scripted):
    """:class:`Scripted`, keeping the modifies the venue refused."""

    def __init__(self, script: dict[int, Callable[[Scripted], Any]]) -> None:
        super().__init__(script)
        self.modify_rejected: list[OrderModifyRejected] = []

    def on_order_modify_rejected(self, event: OrderModifyRejected) -> None:
        self.modify_rejected.append(event)


@pytest.mark.parametrize("contingent", ["native", "emulated"])
@pytest.mark.parametrize("margin", [False, True])
def test_a_trailing_stop_whose_take_profit_filled_is_canceled_not_moved(contingent: str, margin: bool) -> None:
    """A buy bracket with a stop-loss trailing 5 % (floor 90) and a take-profit at 110: the entry fills at bar
    2's open (100), bar 3 (100, 111, 99, 108) walks 100 -> 99 -> 111 and fills the take-profit at 110. Its high
    would trail the stop to 111 x 0.95 = 105.45, but the stop is being canceled (OCO: sibling filled): no modify
    is sent. Before, the trailing sent one with the cancel: on cash spot the account denied it (``modify:
    buying_power: SELL 1.0 ... needs 1 BTC > available 0 BTC``, one of the run's denials in its summary), on
    margin the venue refused it after the cancel. USD: 1000 - 100.2 + 110 - 0.11 = 1009.69."""
    inst = Instrument(
        venue="SIM", symbol="BTCUSD", tick_size=0.01, lot_size=0.001, base="BTC", quote="USD",
        maker_fee=0.001, taker_fee=0.002, margin=margin,
    )  # fmt: skip
    kernel = Kernel([inst], venue_config=VenueConfig(fill_on="bars", contingent=contingent),  # type: ignore[arg-type]
                    balances={"USD": 1000.0, "BTC": 0.0})
    watched = _Watched({1: lambda s: s.submit_bracket(IID, OrderSide.BUY, 1.0, stop_loss=90.0, take_profit=110.0,
                                                      trail_percent=5.0)})
    kernel.add_strategy(watched)
    for k, (o, h, lo, c) in enumerate([FLAT, FLAT, (100.0, 111.0, 99.0, 108.0), FLAT, FLAT], start=1):
        kernel.process(Bar(IID, T0 + k * H, T0 + k * H, o, h, lo, c, 10.0))
    kernel.stop()
    fills, orders = outcome(kernel)
    assert fills == [("BUY", 100.0, 2), ("SELL", 110.0, 3)]
    assert orders["bracket take-profit"][0] == "FILLED"
    assert orders["bracket trailing stop-loss"][0] == "CANCELED"
    assert kernel.result.denials == []
    assert watched.modify_rejected == []
    stop = next(o for o in kernel.result.orders if kernel.result.submit_reasons[o.client_order_id]
                == "bracket trailing stop-loss")
    assert stop.trigger_price == 95.0  # 100 x 0.95, trailed from the entry; never moved
    assert kernel.portfolio.account.balance("USD") == pytest.approx(1009.69, abs=1e-9)


@pytest.mark.parametrize("contingent", ["native", "emulated"])
def test_a_bracket_take_profit_lowered_by_modify_fills_at_its_new_price(contingent: str) -> None:
    """A freqtrade ROI step on the simulated venue: the take-profit at 110 is lowered to 105 at bar 3's close
    and fills at 105 in bar 4 (100, 106, 99, 104: path 100 -> 99 -> 106). A native venue holds the children
    as one group, as a live venue's OCO order list, but takes a modify: it is not denied (as a Binance spot
    list's leg is). USD: 1000 - 100.2 + 105 - 0.105 = 1004.695."""
    kernel = Kernel(
        [Instrument(venue="SIM", symbol="BTCUSD", tick_size=0.01, lot_size=0.001, base="BTC", quote="USD",
                    maker_fee=0.001, taker_fee=0.002)],
        venue_config=VenueConfig(fill_on="bars", contingent=contingent),  # type: ignore[arg-type]
        balances={"USD": 1000.0},
    )

    def lower(s: Scripted) -> None:
        (target,) = [o for o in s.ctx.cache.open_orders(IID) if o.order_type.name == "LIMIT"]
        s.modify(target.client_order_id, price=105.0)

    kernel.add_strategy(Scripted({1: lambda s: s.submit_bracket(IID, OrderSide.BUY, 1.0, stop_loss=95.0,
                                                                take_profit=110.0), 3: lower}))
    for k, bar in enumerate([FLAT, FLAT, FLAT, (100.0, 106.0, 99.0, 104.0), FLAT], start=1):
        kernel.process(Bar(IID, T0 + k * H, T0 + k * H, *bar, 10.0))
    kernel.stop()
    assert kernel.result.denials == []
    assert outcome(kernel)[0] == [("BUY", 100.0, 2), ("SELL", 105.0, 4)]
    assert kernel.portfolio.account.balance("USD") == pytest.approx(1004.695, abs=1e-9)


def test_a_bracket_exit_the_risk_gate_denies_is_warned_of() -> None:
    """A bracket buying 1 BTC at 100 with a stop-loss at 95 and a take-profit at 150, under a 10 % price band: the
    take-profit is denied when armed (150 is 50 % away from the last price 100), the stop-loss works alone. Before,
    only the risk gate's INFO line told it (and, at the run's end, one warning per check); now a WARNING names the
    bracket, its take-profit and the denial."""
    inst = Instrument(
        venue="SIM", symbol="BTCUSD", tick_size=0.01, lot_size=0.001, base="BTC", quote="USD",
        maker_fee=0.001, taker_fee=0.002,
    )  # fmt: skip
    kernel = Kernel([inst], venue_config=VenueConfig(fill_on="bars"), balances={"USD": 1000.0},
                    risk_config=RiskConfig(price_band_pct=10.0))
    kernel.add_strategy(Scripted({1: lambda s: s.submit_bracket(IID, OrderSide.BUY, 1.0, stop_loss=95.0,
                                                                take_profit=150.0)}))
    warnings: list[str] = []
    sink = logger.add(lambda m: warnings.append(m.record["message"]), level="WARNING")
    try:
        for k in range(1, 5):
            kernel.process(Bar(IID, T0 + k * H, T0 + k * H, *FLAT, 10.0))
    finally:
        logger.remove(sink)
    kernel.stop()
    fills, orders = outcome(kernel)
    assert fills == [("BUY", 100.0, 2)]
    assert orders["bracket take-profit"][0] == "DENIED" and orders["bracket stop-loss"][0] == "ACCEPTED"
    entry = kernel.result.orders[0].client_order_id
    said = [w for w in warnings if w.startswith(f"bracket {entry}:")]
    assert len(said) == 1 and "take-profit" in said[0] and "price_band" in said[0], warnings
