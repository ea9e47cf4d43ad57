"""Strategy API: order helpers, event handlers, context access, strategy resolution."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tradebus.engine.instrument import Instrument
from tradebus.engine.kernel import Kernel
from tradebus.engine.messages import (
    Bar,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderSide,
    OrderTriggered,
    PositionChanged,
    TradingState,
)
from tradebus.errors import ConfigError, OrderError
from tradebus.strategies.base import Strategy, resolve_strategy
from tradebus.strategies.ema_cross import EmaCross

IID = "ETHUSD.SIM"
MIN = 60_000_000_000
T0 = 1_700_006_400_000_000_000


def make_bar(k: int, o: float, h: float, lo: float, c: float) -> Bar:
    return Bar(IID, T0 + k * MIN, T0 + k * MIN, o, h, lo, c, 1.0)


def make_kernel(strategy: Strategy) -> Kernel:
    kernel = Kernel([Instrument("SIM", "ETHUSD", tick_size=0.01, lot_size=0.01, taker_fee=0.001, maker_fee=0.0,
                                margin=True)],
                    initial_cash=10_000.0)
    kernel.add_strategy(strategy)
    return kernel


class Scripted(Strategy):
    """Runs ``actions[k](self)`` on bar k and records order events."""

    def __init__(self, actions: dict[int, Any]) -> None:
        super().__init__(IID, strategy_id="s")
        self.actions = actions
        self.k = 0
        self.events: list[Any] = []
        self.ids: list[str | None] = []

    def on_bar(self, bar: Bar) -> None:
        action = self.actions.get(self.k)
        if action is not None:
            self.ids.append(action(self))
        self.k += 1

    def on_order_accepted(self, event: OrderAccepted) -> None:
        self.events.append(event)

    def on_order_filled(self, event: OrderFilled) -> None:
        self.events.append(event)

    def on_order_canceled(self, event: OrderCanceled) -> None:
        self.events.append(event)

    def on_order_triggered(self, event: OrderTriggered) -> None:
        self.events.append(event)

    def on_position_changed(self, event: PositionChanged) -> None:
        self.events.append(event)


def feed(kernel: Kernel, bars: list[Bar]) -> None:
    for bar in bars:
        kernel.process(bar)
    kernel.stop()


def test_limit_order_rests_then_fills_when_price_trades_through() -> None:
    strategy = Scripted({0: lambda s: s.submit_limit(IID, OrderSide.BUY, 1.0, 95.0, reason="dip")})
    kernel = make_kernel(strategy)
    feed(kernel, [make_bar(0, 100, 101, 99, 100), make_bar(1, 100, 101, 98, 99), make_bar(2, 99, 99, 94, 96)])
    kinds = [type(e).__name__ for e in strategy.events]
    assert kinds == ["OrderAccepted", "OrderFilled", "PositionChanged"]
    fill = strategy.events[1]
    assert fill.last_px == 95.0 and fill.ts_event == T0 + 2 * MIN
    assert strategy.position() == 1.0
    assert kernel.result.fills[0].reason == "dip"


def test_cancel_removes_a_working_limit_order() -> None:
    strategy = Scripted({
        0: lambda s: s.submit_limit(IID, OrderSide.SELL, 1.0, 120.0),
        2: lambda s: s.cancel(s.ids[0], reason="changed my mind"),
    })
    kernel = make_kernel(strategy)
    feed(kernel, [make_bar(k, 100, 101, 99, 100) for k in range(5)])
    assert [type(e).__name__ for e in strategy.events] == ["OrderAccepted", "OrderCanceled"]
    assert kernel.orders.order(strategy.ids[0]).status == "CANCELED"
    assert kernel.result.fills == []


def test_stop_order_triggers_and_fills() -> None:
    strategy = Scripted({0: lambda s: s.submit_stop(IID, OrderSide.BUY, 0.5, 105.0)})
    kernel = make_kernel(strategy)
    feed(kernel, [make_bar(0, 100, 101, 99, 100), make_bar(1, 100, 104, 99, 103), make_bar(2, 103, 107, 102, 106)])
    kinds = [type(e).__name__ for e in strategy.events]
    assert "OrderTriggered" in kinds and "OrderFilled" in kinds
    assert strategy.position() == 0.5


def test_cancel_all_cancels_only_this_strategys_open_orders() -> None:
    strategy = Scripted({
        0: lambda s: s.submit_limit(IID, OrderSide.BUY, 1.0, 80.0),
        1: lambda s: s.submit_limit(IID, OrderSide.BUY, 1.0, 81.0),
        2: lambda s: s.cancel_all(),
    })
    kernel = make_kernel(strategy)
    feed(kernel, [make_bar(k, 100, 101, 99, 100) for k in range(5)])
    assert strategy.ids[2] == 2
    assert kernel.orders.open_orders() == []


def test_target_position_flips_with_one_order_and_ignores_dust() -> None:
    strategy = Scripted({
        0: lambda s: s.target_position(IID, 1.0),
        2: lambda s: s.target_position(IID, -1.0),
        4: lambda s: s.target_position(IID, -1.004),  # less than one 0.01 lot away
    })
    kernel = make_kernel(strategy)
    feed(kernel, [make_bar(k, 100, 101, 99, 100) for k in range(6)])
    assert [(o.side, o.quantity) for o in kernel.result.orders] == [(OrderSide.BUY, 1.0), (OrderSide.SELL, 2.0)]
    assert strategy.ids[2] is None
    assert strategy.position() == -1.0


def test_equity_reads_positions_at_the_latest_price() -> None:
    strategy = Scripted({0: lambda s: s.submit_market(IID, OrderSide.BUY, 1.0)})
    kernel = make_kernel(strategy)
    feed(kernel, [make_bar(0, 100, 101, 99, 100), make_bar(1, 100, 101, 99, 100), make_bar(2, 100, 111, 99, 110)])
    # Bought 1 at the open of bar 1 (100) with a 0.1 % fee; marked at 110.
    assert strategy.equity() == pytest.approx(10_000.0 - 100.0 - 0.1 + 110.0)


def test_invalid_limit_and_trigger_prices_raise_order_error() -> None:
    strategy = Scripted({})
    make_kernel(strategy)
    with pytest.raises(OrderError, match="limit price"):
        strategy.submit_limit(IID, OrderSide.BUY, 1.0, float("nan"))
    with pytest.raises(OrderError, match="trigger price"):
        strategy.submit_stop(IID, OrderSide.BUY, 1.0, -3.0)
    with pytest.raises(OrderError, match="unknown instrument"):
        strategy.submit_market("XRP.SIM", OrderSide.BUY, 1.0)


def test_strategy_not_attached_to_a_kernel_says_so() -> None:
    strategy = Scripted({})
    with pytest.raises(ConfigError, match="not attached to a kernel"):
        _ = strategy.clock


def test_only_overridden_handlers_are_subscribed() -> None:
    class BarsOnly(Strategy):
        def on_bar(self, bar: Bar) -> None:
            pass

    kernel = make_kernel(BarsOnly(IID))
    kernel.start()
    assert len(kernel.bus.handlers(Bar, IID)) == 1
    assert kernel.bus.handlers(OrderAccepted, IID) == ()
    assert kernel.bus.handlers(PositionChanged, IID) == ()


@pytest.mark.parametrize(
    ("package", "source", "cause"),
    [("broken_syntax_strats", 'class S:\n    x = f"{d["k"]}"\n', "SyntaxError: f-string: unmatched '[' (at {file}:2)"),
     ("broken_name_strats", "import math\n\nVALUE = math.sqrtt(2)\n",
      "AttributeError: module 'math' has no attribute 'sqrtt' (at {file}:3)")],
)
def test_a_strategy_module_whose_own_code_raises_on_import_is_a_config_error_naming_its_line(
    tmp_path: Path, package: str, source: str, cause: str
) -> None:
    # Before: the SyntaxError escaped as a raw traceback (exit 1), under a "No module named" it was chained to.
    (tmp_path / package).mkdir()
    (tmp_path / package / "__init__.py").write_text("", encoding="utf-8")
    file = tmp_path / package / "mine.py"
    file.write_text(source, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        resolve_strategy(f"{package}.mine:S", tmp_path)
    assert str(info.value) == (
        f"strategy '{package}.mine:S': importing module '{package}.mine' raised {cause.format(file=file)}"
    )


def test_resolve_strategy_by_builtin_name_and_dotted_path() -> None:
    assert resolve_strategy("ema_cross") is EmaCross
    assert resolve_strategy("tradebus.strategies.ema_cross:EmaCross") is EmaCross
    with pytest.raises(ConfigError, match="unknown strategy 'sma'"):
        resolve_strategy("sma")
    with pytest.raises(ConfigError, match="cannot import module"):
        resolve_strategy("tradebus.nope:Thing")
    with pytest.raises(ConfigError, match="not a Strategy subclass"):
        resolve_strategy("tradebus.engine.kernel:Kernel")


def test_a_misspelt_strategy_class_is_named_missing_with_the_module_s_strategies_not_called_no_strategy() -> None:
    """``tick_ema:TickEMACross`` (for TickEmaCross) was refused as "is not a Strategy subclass", which sent the user
    looking at a class that does not exist; the error now says the module has no such name and lists its strategies."""
    with pytest.raises(ConfigError) as raised:
        resolve_strategy("tradebus.strategies.tick_ema:TickEMACross")
    assert str(raised.value) == (
        "strategy 'tradebus.strategies.tick_ema:TickEMACross': module 'tradebus.strategies.tick_ema' has no "
        "'TickEMACross' (its strategies: TickEmaCross); did you mean tradebus.strategies.tick_ema:TickEmaCross?"
    )
    with pytest.raises(ConfigError, match=r"module 'tradebus.engine.kernel' has no 'Nope' \(its strategies: none\)$"):
        resolve_strategy("tradebus.engine.kernel:Nope")


class Named(Scripted):
    """:class:`Scripted` under its own strategy id, recording its denials."""

    def __init__(self, strategy_id: str, actions: dict[int, Any]) -> None:
        super().__init__(actions)
        self.strategy_id = strategy_id
        self.denied: list[str] = []

    def on_order_denied(self, event: Any) -> None:
        self.denied.append(event.reason)


@pytest.mark.parametrize(
    ("own", "other", "target", "sold", "after"),
    [
        (1.0, 2.0, -1.0, 2.0, -1.0),  # net 3: the whole reversal reduces it to 1
        (1.0, -0.5, -1.0, 0.5, 0.5),  # net 0.5: only 0.5 of the close reduces it
        (3.0, -2.0, 0.0, 1.0, 2.0),  # net 1: a close of 3 would flip it; 1 of it passes
    ],
)
def test_target_position_while_reducing_sends_what_reduces_the_net_position(
    own: float, other: float, target: float, sold: float, after: float
) -> None:
    """Two strategies on ETHUSD: "a" holds ``own``, "b" ``other``; while REDUCING "a" targets ``target``. The gate
    checks the net position (``own + other``): a sell passes up to the net long. The reversal was cut to "a"'s own
    position, so with b long 2 "a" sold 1 and stopped flat (its target -1 reached a call later); a close larger
    than the net long was sent whole and denied (a stayed at 3). Now the order is what the gate lets through:
    ``sold``, leaving "a" at ``after``."""
    def buy(qty: float) -> Any:
        return lambda s: s.target_position(IID, qty)

    def reduce_then_target(s: Scripted) -> str | None:
        kernel.risk.set_state(TradingState.REDUCING, "operator")
        return s.target_position(IID, target)

    a = Named("a", {0: buy(own), 2: reduce_then_target})
    b = Named("b", {0: buy(other)})
    kernel = Kernel([Instrument("SIM", "ETHUSD", tick_size=0.01, lot_size=0.01, margin=True, leverage=10.0)],
                    initial_cash=10_000.0)  # fmt: skip
    kernel.add_strategy(a)
    kernel.add_strategy(b)
    feed(kernel, [make_bar(k, 100, 101, 99, 100) for k in range(4)])
    assert a.denied == [] and b.denied == []
    assert [(o.strategy_id, o.side, o.quantity) for o in kernel.result.orders][2:] == [("a", OrderSide.SELL, sold)]
    assert a.position() == after and kernel.portfolio.position(IID) == pytest.approx(own + other - sold)
