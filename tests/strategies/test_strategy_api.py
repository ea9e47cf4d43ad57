"""Strategy API: context, history windows (no lookahead), modify, timers and sizing helpers."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from tradebus.engine.messages import Bar, OrderModified, OrderSide, OrderStatus, TimeEvent, TimeInForce
from tradebus.errors import ConfigError, OrderError
from tradebus.execution.contingent import OrderSpec
from tradebus.strategies.base import Strategy
from tradebus.strategies.context import KernelContext

from strat_helpers import BTC_4H, DAY_NS, H4_NS, bars_4h, run

N = 30


class Windowed(Strategy):
    """Records the last ``N`` closes and volumes it can see on every bar."""

    def __init__(self) -> None:
        super().__init__(BTC_4H, strategy_id="windowed")
        self.seen: list[tuple[int, np.ndarray, np.ndarray]] = []

    def history_sizes(self, instrument_id: str) -> dict[str, int]:
        return {"bars": N}

    def on_bar(self, bar: Bar) -> None:
        window = self.bars(N)
        assert window.ts[-1] == bar.ts_event  # ends at the bar being handled
        self.seen.append((bar.ts_event, window.close, window.volume))


def test_strategy_sees_a_narrow_context_not_the_kernel() -> None:
    strategy = Windowed()
    kernel = run([strategy], {BTC_4H: bars_4h().iloc[:40]})
    assert isinstance(strategy.ctx, KernelContext)
    assert strategy.ctx is kernel.context
    assert not hasattr(strategy.ctx, "execution") and not hasattr(strategy.ctx, "run")


@pytest.mark.parametrize("path", ["batch", "small_batches", "process"])
def test_history_window_equals_pandas_rolling_window(path: str) -> None:
    frame = bars_4h().iloc[:300]
    strategy = Windowed()
    if path == "batch":
        run([strategy], {BTC_4H: frame})
    elif path == "small_batches":  # windows straddle batch ends; the ring wraps many times
        run([strategy], {BTC_4H: frame}, batch_rows=23)
    else:
        from strat_helpers import instrument
        from tradebus.engine.kernel import Kernel

        kernel = Kernel([instrument(BTC_4H)], initial_cash=1e6)
        kernel.add_strategy(strategy)
        for row in frame.itertuples(index=False):
            kernel.process(Bar(BTC_4H, row.ts_event, row.ts_init, row.open, row.high, row.low, row.close, row.volume))
        kernel.stop()
    assert len(strategy.seen) == len(frame)
    closes = frame["close"]
    for i, (ts, close, volume) in enumerate(strategy.seen):
        expected = closes.iloc[max(0, i - N + 1) : i + 1].to_numpy()
        assert ts == frame["ts_event"].iloc[i]
        np.testing.assert_array_equal(close, expected)
        np.testing.assert_array_equal(volume, frame["volume"].iloc[max(0, i - N + 1) : i + 1].to_numpy())
    # the mean of the window is pandas' rolling mean once the window is full
    means = [close.mean() for _, close, _ in strategy.seen[N - 1 :]]
    np.testing.assert_allclose(means, closes.rolling(N).mean().iloc[N - 1 :].to_numpy(), rtol=1e-12)


def test_perturbing_the_future_leaves_every_earlier_window_unchanged() -> None:
    frame = bars_4h().iloc[:400]
    cut = 250
    changed = frame.copy()
    changed.loc[cut:, ["open", "high", "low", "close"]] *= 3.0
    changed.loc[cut:, "volume"] += 1e6
    a, b = Windowed(), Windowed()
    run([a], {BTC_4H: frame})
    run([b], {BTC_4H: changed})
    for (ts_a, ca, va), (ts_b, cb, vb) in zip(a.seen[:cut], b.seen[:cut], strict=True):
        assert ts_a == ts_b
        np.testing.assert_array_equal(ca, cb)
        np.testing.assert_array_equal(va, vb)
    assert not np.array_equal(a.seen[cut][1], b.seen[cut][1])  # the perturbation is visible at the cut


def test_window_larger_than_the_kept_history_is_a_config_error() -> None:
    class Greedy(Windowed):
        def on_bar(self, bar: Bar) -> None:
            self.bars(N + 1)

    with pytest.raises(ConfigError, match="keeps 30"):
        run([Greedy()], {BTC_4H: bars_4h().iloc[:5]})


def test_history_not_asked_for_is_a_config_error_naming_the_fix() -> None:
    class NoHistory(Strategy):
        def on_bar(self, bar: Bar) -> None:
            self.bars(5)

    with pytest.raises(ConfigError, match="history_sizes"):
        run([NoHistory(BTC_4H)], {BTC_4H: bars_4h().iloc[:5]})


class Timed(Strategy):
    """Schedules a repeating timer and an alert; records firings and the bars around them."""

    def __init__(self, interval: str, alert_at: int) -> None:
        super().__init__(BTC_4H, strategy_id="timed")
        self.interval = interval
        self.alert_at = alert_at
        self.log: list[tuple[str, int, int]] = []

    def on_start(self) -> None:
        self.set_timer("tick", self.interval, start_ns=self.alert_at - DAY_NS)
        self.set_alert("once", self.alert_at)

    def on_timer(self, event: TimeEvent) -> None:
        self.log.append((event.name, event.ts_event, self.clock.now_ns()))

    def on_bar(self, bar: Bar) -> None:
        self.log.append(("bar", bar.ts_event, self.clock.now_ns()))


def test_timers_fire_at_simulated_times_in_order_and_deterministically() -> None:
    frame = bars_4h().iloc[:60]
    t0 = int(frame["ts_event"].iloc[0])
    alert_at = t0 + 10 * H4_NS + 1  # just after the 11th bar
    runs = []
    for _ in range(2):
        strategy = Timed("1d", alert_at)
        run([strategy], {BTC_4H: frame})
        runs.append(strategy.log)
    assert runs[0] == runs[1]
    log = runs[0]
    ticks = [ts for name, ts, _ in log if name == "tick"]
    end = int(frame["ts_event"].iloc[-1])
    assert ticks == list(range(alert_at, end + 1, DAY_NS))  # every day from start + 1d
    once = [i for i, (name, _, _) in enumerate(log) if name == "once"]
    assert len(once) == 1
    # the alert fires after the bar before it and before the first bar at or after it
    assert log[once[0] - 1][0] == "tick" or log[once[0] - 1][1] < alert_at
    following = next(entry for entry in log[once[0] + 1 :] if entry[0] == "bar")
    assert following[1] >= alert_at
    # a timer's clock reads its own scheduled time
    assert all(now == ts for name, ts, now in log if name != "bar")


def test_on_start_reads_the_first_message_time_and_its_timer_counts_from_there() -> None:
    class StartsTimer(Strategy):
        def __init__(self) -> None:
            super().__init__(BTC_4H, strategy_id="starts")
            self.started_at = -1
            self.ticks: list[int] = []

        def on_start(self) -> None:
            self.started_at = self.clock.now_ns()
            self.set_timer("tick", "1d")  # no start_ns: from now, as in a paper run

        def on_timer(self, event: TimeEvent) -> None:
            self.ticks.append(event.ts_event)

        def on_bar(self, bar: Bar) -> None:
            pass

    frame = bars_4h().iloc[:30]
    first, last = int(frame["ts_init"].iloc[0]), int(frame["ts_init"].iloc[-1])
    strategy = StartsTimer()
    run([strategy], {BTC_4H: frame})
    assert strategy.started_at == first
    assert strategy.ticks == list(range(first + DAY_NS, last + 1, DAY_NS))


def test_two_strategies_may_use_the_same_timer_name() -> None:
    frame = bars_4h().iloc[:20]
    t0 = int(frame["ts_event"].iloc[0])
    a, b = Timed("8h", t0 + H4_NS), Timed("8h", t0 + H4_NS)
    b.strategy_id = "timed2"
    run([a, b], {BTC_4H: frame})
    assert [e for e in a.log if e[0] != "bar"] == [e for e in b.log if e[0] != "bar"] != []


def test_bad_timer_interval_is_a_config_error() -> None:
    class Bad(Strategy):
        def on_start(self) -> None:
            self.set_timer("x", "soon")

        def on_bar(self, bar: Bar) -> None:
            pass

    with pytest.raises(ConfigError, match="timer interval"):
        run([Bad(BTC_4H)], {BTC_4H: bars_4h().iloc[:3]})


class Slipped(Strategy):
    """Sends one order of ``side`` and ``quantity`` on its third bar, of the kind ``how`` names."""

    contingent = True

    def __init__(self, how: str, side: Any, quantity: float) -> None:
        super().__init__(BTC_4H, strategy_id="slipped")
        self.how, self.side, self.quantity, self.k = how, side, quantity, 0

    def on_bar(self, bar: Bar) -> None:
        self.k += 1
        if self.k == 1:
            self.submit_market(BTC_4H, OrderSide.BUY, 0.5)  # valid: the bad one is refused beside a position
        if self.k != 3:
            return
        side, quantity = self.side, self.quantity
        if self.how == "market":
            self.submit_market(BTC_4H, side, quantity)
        elif self.how == "limit":
            self.submit_limit(BTC_4H, side, quantity, round(bar.close * 1.1, 2))
        elif self.how == "stop":
            self.submit_stop(BTC_4H, side, quantity, round(bar.close * 0.9, 2))
        elif self.how == "oco":
            self.submit_oco([OrderSpec(BTC_4H, side, quantity, price=round(bar.close * 1.1, 2)),
                             OrderSpec(BTC_4H, OrderSide.SELL, 0.25, trigger_price=round(bar.close * 0.9, 2))])
        elif self.how == "bracket":
            self.submit_bracket(BTC_4H, side, quantity, stop_loss=round(bar.close * 0.9, 2),
                                take_profit=round(bar.close * 1.1, 2))
        else:
            self.submit_trailing_stop(BTC_4H, side, quantity, percent=5.0)


KINDS = ["market", "limit", "stop", "oco", "bracket", "trailing"]


@pytest.mark.parametrize("how", KINDS)
@pytest.mark.parametrize("quantity", [-0.5, 0.0, float("nan"), float("inf")])
def test_an_order_quantity_that_is_not_a_positive_finite_number_is_an_order_error(how: str, quantity: float) -> None:
    # a sign slip (SELL -0.5) was sent on and denied by the instrument check: the run went on, exit 0
    strategy = Slipped(how, OrderSide.BUY if how == "bracket" else OrderSide.SELL, quantity)
    with pytest.raises(OrderError, match=rf"slipped: quantity must be a positive finite number, got {quantity!r}"):
        run([strategy], {BTC_4H: bars_4h().iloc[:6]})
    assert [o.quantity for o in strategy.ctx.orders.orders()] == [0.5]  # nothing of the slip was sent


@pytest.mark.parametrize("how", KINDS)
@pytest.mark.parametrize("side", ["SELL", -1, None])
def test_an_order_side_that_is_no_order_side_is_an_order_error(how: str, side: Any) -> None:
    # a str or None failed deep in the risk gate ("'>' not supported between 'str' and 'int'"); an int ran
    # the whole backtest and then failed writing orders.csv (AttributeError: 'int' object has no attribute 'name')
    strategy = Slipped(how, side, 0.25)
    with pytest.raises(OrderError, match=rf"slipped: side must be OrderSide.BUY or OrderSide.SELL, got {side!r}"):
        run([strategy], {BTC_4H: bars_4h().iloc[:6]})
    assert [o.quantity for o in strategy.ctx.orders.orders()] == [0.5]


class InForce(Strategy):
    """Sends one buy limit (or an OCO of it and a stop) of ``time_in_force`` 10 % below its second bar's close."""

    contingent = True

    def __init__(self, time_in_force: Any, how: str = "limit") -> None:
        super().__init__(BTC_4H, strategy_id="inforce")
        self.time_in_force, self.how, self.k = time_in_force, how, 0

    def on_bar(self, bar: Bar) -> None:
        self.k += 1
        if self.k != 2:
            return
        price = round(bar.close * 0.9, 2)
        if self.how == "limit":
            self.submit_limit(BTC_4H, OrderSide.BUY, 0.1, price, time_in_force=self.time_in_force)
        elif self.how == "stop_limit":
            self.submit_stop(BTC_4H, OrderSide.BUY, 0.1, round(bar.close * 1.5, 2), limit_price=price,
                             time_in_force=self.time_in_force)
        else:
            self.submit_oco([OrderSpec(BTC_4H, OrderSide.BUY, 0.1, price=price, time_in_force=self.time_in_force),
                             OrderSpec(BTC_4H, OrderSide.BUY, 0.1, trigger_price=round(bar.close * 1.5, 2))])


@pytest.mark.parametrize("how", ["limit", "stop_limit", "oco"])
@pytest.mark.parametrize("time_in_force", ["gtc", "GTD", None])
def test_a_time_in_force_that_is_no_time_in_force_is_an_order_error(how: str, time_in_force: Any) -> None:
    # the simulated venue took every value but GTC as IOC: a buy limit 10 % below the market sent "gtc"
    # (or "GTD") expired on arrival, "gtc: not marketable on arrival", and the run went on, exit 0
    strategy = InForce(time_in_force, how)
    message = rf"inforce: time_in_force must be TimeInForce.GTC, IOC or FOK .*got {time_in_force!r}"
    with pytest.raises(OrderError, match=message):
        run([strategy], {BTC_4H: bars_4h().iloc[:4]})
    assert strategy.ctx.orders.orders() == []


@pytest.mark.parametrize("how", ["limit", "oco"])
@pytest.mark.parametrize(("time_in_force", "status"), [("GTC", OrderStatus.ACCEPTED), ("IOC", OrderStatus.EXPIRED),
                                                       (TimeInForce.FOK, OrderStatus.EXPIRED)])
def test_a_time_in_force_given_by_its_value_works_as_the_member(how: str, time_in_force: Any, status: OrderStatus) -> None:
    # an OCO spec's "IOC" was checked but sent on as the str: the order's tif was no TimeInForce (tif.name failed)
    strategy = InForce(time_in_force, how)
    run([strategy], {BTC_4H: bars_4h().iloc[:4]})
    order = strategy.ctx.orders.orders()[0]
    assert (order.tif, order.status) == (TimeInForce(time_in_force), status)
    assert type(order.tif) is TimeInForce


@pytest.mark.parametrize(("field", "value"), [("quantity", -0.25), ("price", 0.0), ("trigger_price", math.nan)])
def test_a_modify_to_a_value_that_is_not_a_positive_finite_number_is_an_order_error(field: str, value: float) -> None:
    # a modify to quantity -0.25 went to the risk gate, whose denial only on_order_denied saw: the run exited 0
    class Remodel(Strategy):
        def on_bar(self, bar: Bar) -> None:
            self.modify(self.submit_limit(BTC_4H, OrderSide.BUY, 0.5, round(bar.close * 0.5, 2)), **{field: value})

    with pytest.raises(OrderError, match=rf"remodel: modify {field} must be a positive finite number, got {value!r}"):
        run([Remodel(BTC_4H, strategy_id="remodel")], {BTC_4H: bars_4h().iloc[:3]})


class Modifier(Strategy):
    """Rests a buy limit far below the market, then moves it up to the market."""

    def __init__(self) -> None:
        super().__init__(BTC_4H, strategy_id="mod")
        self.k = 0
        self.order_id = ""
        self.modified: list[OrderModified] = []

    def on_bar(self, bar: Bar) -> None:
        if self.k == 0:
            self.order_id = self.submit_limit(BTC_4H, OrderSide.BUY, 0.5, round(bar.close * 0.5, 2))
        elif self.k == 3:
            self.modify(self.order_id, price=round(bar.close * 1.02, 2), quantity=0.25)
        self.k += 1

    def on_order_modified(self, event: OrderModified) -> None:
        self.modified.append(event)


def test_modify_moves_a_resting_limit_which_then_fills_at_the_new_terms() -> None:
    strategy = Modifier()
    kernel = run([strategy], {BTC_4H: bars_4h().iloc[:10]})
    order = kernel.orders.order(strategy.order_id)
    assert len(strategy.modified) == 1
    assert order.status is OrderStatus.FILLED
    assert order.quantity == 0.25 and order.filled_qty == 0.25
    fills = kernel.result.fills
    assert len(fills) == 1 and fills[0].quantity == 0.25
    closes = bars_4h()["close"]
    assert fills[0].price <= round(closes.iloc[3] * 1.02, 2)


class Sizer(Strategy):
    """Computes the sizing helpers on the second bar."""

    def __init__(self) -> None:
        super().__init__(BTC_4H, strategy_id="sizer")
        self.out: dict[str, Any] = {}

    def on_bar(self, bar: Bar) -> None:
        if self.out:
            return
        self.out = {
            "price": bar.close,
            "equity": self.equity(),
            "notional": self.quantity_for_notional(BTC_4H, 10_000.0),
            "weight": self.quantity_for_weight(BTC_4H, -0.25),
            "risk": self.quantity_for_risk(BTC_4H, entry=bar.close, stop=bar.close - 500.0, risk=1_000.0),
            "risk_fraction": self.quantity_for_risk(BTC_4H, bar.close, bar.close * 1.05, risk_fraction=0.01),
        }
        with pytest.raises(OrderError):
            self.quantity_for_risk(BTC_4H, bar.close, bar.close, risk=1.0)
        with pytest.raises(OrderError):
            self.quantity_for_risk(BTC_4H, bar.close, bar.close - 1, risk=1.0, risk_fraction=0.1)
        self.target_weight(BTC_4H, 0.5)


def test_sizing_helpers_match_hand_derived_quantities() -> None:
    strategy = Sizer()
    kernel = run([strategy], {BTC_4H: bars_4h().iloc[:5]}, cash=200_000.0)
    out = strategy.out
    px, equity = out["price"], out["equity"]
    assert equity == 200_000.0
    lots = lambda q: np.floor(q / 1e-5 + 1e-9) * 1e-5  # noqa: E731
    assert out["notional"] == pytest.approx(lots(10_000.0 / px), abs=1e-12)
    assert out["weight"] == pytest.approx(lots(50_000.0 / px), abs=1e-12)
    assert out["risk"] == pytest.approx(2.0, abs=1e-12)  # 1,000 at risk over 500 per coin
    assert out["risk_fraction"] == pytest.approx(lots(2_000.0 / (px * 0.05)), abs=1e-12)
    assert kernel.result.fills[0].quantity == pytest.approx(lots(100_000.0 / px), abs=1e-12)
    assert kernel.result.fills[0].side == "BUY"


def test_strategy_reads_the_book_the_feed_registered_through_its_context() -> None:
    from tradebus.adapters.common.book import OrderBook

    book = OrderBook(BTC_4H)
    book.apply(np.array([[46_000.0, 1.5], [45_990.0, 2.0]]), np.array([[46_010.0, 0.7]]))
    seen: list[Any] = []

    class BookReader(Strategy):
        def on_bar(self, bar: Bar) -> None:
            seen.append(self.book())

    strategy = BookReader(BTC_4H)
    from strat_helpers import instrument
    from tradebus.engine.kernel import Kernel

    kernel = Kernel([instrument(BTC_4H)])
    kernel.add_strategy(strategy)
    kernel.cache.register_book(BTC_4H, lambda: book)
    row = bars_4h().iloc[0]
    kernel.process(Bar(BTC_4H, int(row.ts_event), int(row.ts_init), row.open, row.high, row.low, row.close, row.volume))
    assert seen == [book]
    assert seen[0].best_bid() == (46_000.0, 1.5) and seen[0].best_ask() == (46_010.0, 0.7)
    assert strategy.ctx.book("OTHER.X") is None


def test_timers_run_on_the_wall_clock_in_paper_mode() -> None:
    import asyncio

    from strat_helpers import instrument
    from tradebus.engine.clock import LiveClock
    from tradebus.engine.kernel import Kernel

    interval = 20_000_000  # 20 ms

    class Ticking(Strategy):
        def __init__(self) -> None:
            super().__init__(BTC_4H, strategy_id="ticking")
            self.fired: list[TimeEvent] = []
            self.done = asyncio.Event()

        def on_start(self) -> None:
            self.set_timer("tick", interval)

        def on_timer(self, event: TimeEvent) -> None:
            self.fired.append(event)
            if len(self.fired) == 3:
                self.cancel_timer("tick")
                self.done.set()

        def on_bar(self, bar: Bar) -> None:
            pass

    async def main() -> Ticking:
        strategy = Ticking()
        kernel = Kernel([instrument(BTC_4H)], clock=LiveClock())
        kernel.add_strategy(strategy)
        kernel.start()
        await asyncio.wait_for(strategy.done.wait(), timeout=10)
        return strategy

    strategy = asyncio.run(main())
    times = [e.ts_event for e in strategy.fired]
    assert [e.name for e in strategy.fired] == ["tick"] * 3
    assert [b - a for a, b in zip(times, times[1:])] == [interval, interval]
    assert all(e.ts_init >= e.ts_event for e in strategy.fired)  # fired on the wall clock, not early


class StopOnce(Strategy):
    """Sends ``submit_stop(**stop)`` (a buy of 1) at its first bar's close."""

    def __init__(self, **stop: Any) -> None:
        super().__init__("BTCUSD.SIM", strategy_id="stop")
        self.stop = stop
        self.sent = False

    def on_bar(self, bar: Bar) -> None:
        if not self.sent:
            self.sent = True
            self.submit_stop(bar.instrument_id, OrderSide.BUY, 1.0, **self.stop)


def _stop_run(bars: list[tuple[float, float, float, float]], **stop: Any) -> Any:
    from tradebus.engine.instrument import Instrument
    from tradebus.engine.kernel import Kernel
    from tradebus.execution.config import VenueConfig

    inst = Instrument(venue="SIM", symbol="BTCUSD", tick_size=0.01, lot_size=0.001)
    kernel = Kernel([inst], venue_config=VenueConfig(fill_on="bars"), initial_cash=1e6)
    kernel.add_strategy(StopOnce(**stop))
    t0, hour = 1_700_006_400_000_000_000, 3_600_000_000_000
    for k, (o, h, lo, c) in enumerate(bars, start=1):
        kernel.process(Bar(inst.instrument_id, t0 + k * hour, t0 + k * hour, o, h, lo, c, 10.0))
    kernel.stop()
    return kernel.result


def test_a_post_only_stop_limit_from_submit_stop_never_takes() -> None:
    """submit_stop had no post_only (only an OrderSpec could send one). A buy stop at 105 sent at bar 1's close
    (100); bar 2 (open 100, low 99, high 107) triggers it at 105. Limit 106: it would take at 105, so post-only
    it expires there (without post_only it fills at 105 as a taker). Limit 104: it rests after the trigger
    and fills as a maker at 104 when bar 3 falls to 103."""
    up = [(100.0, 100.0, 100.0, 100.0), (100.0, 107.0, 99.0, 106.0), (106.0, 106.0, 103.0, 103.0)]
    taking = _stop_run(up, trigger_price=105.0, limit_price=106.0, post_only=True)
    assert taking.fills == []
    (order,) = taking.orders
    assert (order.status, order.reason) == (OrderStatus.EXPIRED,
                                            "post_only: limit 106.0 would take liquidity at 105.0 when triggered")
    plain = _stop_run(up, trigger_price=105.0, limit_price=106.0)
    assert [(f.price, f.liquidity) for f in plain.fills] == [(105.0, "TAKER")]
    resting = _stop_run(up, trigger_price=105.0, limit_price=104.0, post_only=True)
    assert [(f.price, f.liquidity) for f in resting.fills] == [(104.0, "MAKER")]
    assert resting.orders[0].post_only
    with pytest.raises(OrderError, match="post_only needs a limit_price"):
        _stop_run(up, trigger_price=105.0, post_only=True)
