"""Brackets on an instrument that gets no bars (trades or quotes only).

A bracket that counts bars (``arm_after_bars >= 1``, ``exit_after_bars``, ``cooldown_bars``)
waited for bars forever there: the entry filled and the position stayed without a stop-loss,
silently. A run that knows its data refuses such a bracket; one that does not warns at the fill.
A bracket that counts no bar arms at the first trade or quote after its entry's fill.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from loguru import logger

from tradebus.data.replay import Replay, ReplaySource
from tradebus.engine.instrument import Instrument
from tradebus.engine.kernel import Kernel
from tradebus.engine.messages import OrderFilled, OrderSide, Quote, Trade
from tradebus.errors import OrderError
from tradebus.execution.config import VenueConfig
from tradebus.config.data import TradeBarsConfig
from tradebus.strategies.base import Strategy

IID = "BTCUSD.SIM"
T0 = 1_700_006_400_000_000_000
S = 1_000_000_000
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
#: Prices that fall from 100 to 70, one a second.
FALLING = [100.0, 100.0, 99.0, 90.0, 80.0, 70.0]


class OneBracket(Strategy):
    """Submits one long bracket (stop-loss 95) at its first trade or quote."""

    contingent = True

    def __init__(self, iid: str = IID, **options: Any) -> None:
        super().__init__(iid, strategy_id="s")
        self.options = options
        self.entry: str | None = None

    def on_trade(self, trade: Trade) -> None:
        if self.entry is None:
            self.entry = self.submit_bracket(self.instrument_id, OrderSide.BUY, 0.01, stop_loss=95.0, **self.options)

    def on_quote(self, quote: Quote) -> None:
        self.on_trade(quote)  # type: ignore[arg-type]


def instrument() -> Instrument:
    return Instrument(venue="SIM", symbol="BTCUSD", tick_size=0.01, lot_size=0.001, margin=True)


def tick(kind: str, k: int, px: float) -> Trade | Quote:
    ts = T0 + k * S
    return Trade(IID, ts, ts, px, 1.0, 0, str(k)) if kind == "trades" else Quote(IID, ts, ts, px - 0.5, 1.0, px + 0.5, 1.0)


def run_ticks(kind: str, **options: Any) -> Kernel:
    kernel = Kernel([instrument()], venue_config=VenueConfig(fill_on=kind), initial_cash=1e6, bar_instruments=())
    kernel.add_strategy(OneBracket(**options))
    for k, px in enumerate(FALLING, start=1):
        kernel.process(tick(kind, k, px))
    kernel.stop()
    return kernel


@pytest.mark.parametrize("kind", ["trades", "quotes"])
@pytest.mark.parametrize(
    ("options", "named"),
    [({"arm_after_bars": 1}, "arm_after_bars=1"), ({"exit_after_bars": 2}, "exit_after_bars=2"),
     ({"cooldown_bars": 3}, "cooldown_bars=3")],
)  # fmt: skip
def test_a_bracket_counting_bars_on_an_instrument_without_bars_is_refused(
    kind: str, options: dict[str, int], named: str
) -> None:
    with pytest.raises(OrderError, match=f"bracket: {named} count.*bars of {IID}, but the run has no bars of it"):
        run_ticks(kind, **options)


@pytest.mark.parametrize("kind", ["trades", "quotes"])
def test_a_bracket_counting_no_bar_arms_at_the_next_trade_or_quote(kind: str) -> None:
    """The entry fills at the second print (100, or the ask 100.5); the stop-loss 95, placed at the
    third, works from the fourth: 90 (bid 89.5) is through it, sold there."""
    kernel = run_ticks(kind)
    sold = 90.0 if kind == "trades" else 89.5
    assert [(f.side, f.price) for f in kernel.result.fills] == [("BUY", 100.0 if kind == "trades" else 100.5), ("SELL", sold)]
    assert kernel.portfolio.position(IID) == 0.0


def test_a_run_that_does_not_know_its_bars_warns_at_the_fill() -> None:
    messages: list[str] = []
    sink = logger.add(lambda m: messages.append(m.record["message"]), level="WARNING")
    try:
        kernel = Kernel([instrument()], venue_config=VenueConfig(fill_on="trades"), initial_cash=1e6)
        kernel.add_strategy(OneBracket(arm_after_bars=1))
        for k, px in enumerate(FALLING, start=1):
            kernel.process(tick("trades", k, px))
        kernel.stop()
    finally:
        logger.remove(sink)
    [warning] = messages
    assert "arm_after_bars=1" in warning and "no bar of it has come yet" in warning


def test_a_backtest_reads_which_instruments_have_bars_from_its_replay() -> None:
    source = ReplaySource.from_file(FIXTURES / "data" / "btcusdt-trades.parquet", "BTCUSDT.SIM", "trades")
    inst = Instrument("SIM", "BTCUSDT", tick_size=0.01, lot_size=0.0001, margin=True)

    def backtest(**kernel_options: Any) -> Kernel:
        kernel = Kernel([inst], venue_config=VenueConfig(fill_on="trades"), initial_cash=1e6, **kernel_options)
        kernel.add_strategy(OneBracket("BTCUSDT.SIM", arm_after_bars=1))
        kernel.run(Replay([source], batch_rows=500))
        return kernel

    with pytest.raises(OrderError, match="the run has no bars of it"):
        backtest()
    # Bars built from the trades count: the children are armed one built bar after the fill.
    built = backtest(trade_bars={"BTCUSDT.SIM": TradeBarsConfig(mode="tick", threshold=50).builder()})
    assert built.bar_instruments == frozenset({"BTCUSDT.SIM"})
    reasons = set(built.result.submit_reasons.values())
    assert "bracket stop-loss" in reasons


class TrailOnFill(Strategy):
    """Enters with a market order at its first trade or quote and places a trailing stop 5 away when it fills."""

    contingent = True

    def __init__(self, side: OrderSide) -> None:
        super().__init__(IID, strategy_id="s")
        self.side = side
        self.entry: str | None = None
        self.stop: str | None = None

    def on_trade(self, trade: Trade) -> None:
        if self.entry is None:
            self.entry = self.submit_market(IID, self.side, 1.0)

    def on_quote(self, quote: Quote) -> None:
        self.on_trade(quote)  # type: ignore[arg-type]

    def on_order_filled(self, event: Any) -> None:
        if event.client_order_id == self.entry:
            exit_side = OrderSide.SELL if self.side == OrderSide.BUY else OrderSide.BUY
            self.stop = self.submit_trailing_stop(IID, exit_side, 1.0, offset=5.0)


@pytest.mark.parametrize(
    ("side", "mids", "expected"),
    [
        # long: bought at the ask 100.5, stop 95.5; bids 109.5, 119.5 raise it to 114.5; bid 112.5 sells
        (OrderSide.BUY, [100.0, 100.0, 110.0, 120.0, 113.0], [("BUY", 100.5), ("SELL", 112.5)]),
        # short: sold at the bid 99.5, stop 104.5; asks 90.5, 80.5 lower it to 85.5; ask 87.5 buys
        (OrderSide.SELL, [100.0, 100.0, 90.0, 80.0, 87.0], [("SELL", 99.5), ("BUY", 87.5)]),
    ],
)
def test_a_trailing_stop_trails_the_bid_or_the_ask_on_quotes_only(
    side: OrderSide, mids: list[float], expected: list[tuple[str, float]]
) -> None:
    """Quotes (mid +- 0.5) are the only prices: a sell stop trails the bid, a buy stop the ask.
    It stayed at its first trigger (95.5 / 104.5) and never filled."""
    kernel = Kernel([instrument()], venue_config=VenueConfig(fill_on="quotes"), initial_cash=1e6, bar_instruments=())
    kernel.add_strategy(TrailOnFill(side))
    for k, px in enumerate(mids, start=1):
        kernel.process(tick("quotes", k, px))
    kernel.stop()
    assert [(f.side, f.price) for f in kernel.result.fills] == expected
    assert kernel.portfolio.position(IID) == 0.0


def test_quotes_do_not_trail_a_stop_of_an_instrument_with_trades() -> None:
    """Trades 100, 100 (bought there, stop 95), 104 (stop 99), 101; a quote with the bid at 150
    between them does not move the stop (it would be 145, sold at 101)."""
    kernel = Kernel([instrument()], venue_config=VenueConfig(fill_on="trades"), initial_cash=1e6, bar_instruments=())
    strategy = TrailOnFill(OrderSide.BUY)
    kernel.add_strategy(strategy)
    events = [tick("trades", 1, 100.0), tick("trades", 2, 100.0), Quote(IID, T0 + 3 * S, T0 + 3 * S, 150.0, 1.0, 151.0, 1.0),
              tick("trades", 4, 104.0), tick("trades", 5, 101.0)]  # fmt: skip
    for event in events:
        kernel.process(event)
    kernel.stop()
    assert [(f.side, f.price) for f in kernel.result.fills] == [("BUY", 100.0)]
    assert kernel.orders.order(strategy.stop or "").trigger_price == 99.0


class CancelsAtFill(OneBracket):
    """``OneBracket`` that cancels its working orders of the instrument in ``on_order_filled``."""

    def __init__(self) -> None:
        super().__init__()
        self.open_at_fill: list[list[str]] = []

    def on_order_filled(self, event: OrderFilled) -> None:
        self.open_at_fill.append([o.client_order_id for o in self.ctx.orders.open_orders(event.instrument_id)])
        self.cancel_all(event.instrument_id)


def test_a_backtest_brackets_exits_are_armed_after_the_strategy_hears_of_its_entrys_fill() -> None:
    """Pins the hook order on a simulated venue (README, Strategy API; a live venue differs: its exits are sent
    before, tests/live/test_live_bracket_arm_at_fill.py): the entry fills at the second trade (100); its
    ``on_order_filled`` finds no open order (the stop-loss is armed at the end of that trade's handling), so its
    ``cancel_all`` cancels nothing; the stop-loss 95 then works and sells at 90."""
    kernel = Kernel([instrument()], venue_config=VenueConfig(fill_on="trades"), initial_cash=1e6, bar_instruments=())
    strategy = CancelsAtFill()
    kernel.add_strategy(strategy)
    for k, px in enumerate(FALLING, start=1):
        kernel.process(tick("trades", k, px))
    kernel.stop()
    assert strategy.open_at_fill == [[], []]  # the entry's fill, then the stop-loss's
    assert [(f.side, f.price) for f in kernel.result.fills] == [("BUY", 100.0), ("SELL", 90.0)]
