"""Execution algorithms on real 4h bars: schedules, child sizes, refusals, the chase."""

from __future__ import annotations

import asyncio
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from loguru import logger

from tradebus.engine.clock import LiveClock
from tradebus.engine.kernel import Kernel
from tradebus.engine.messages import Bar, OrderSide, OrderStatus, OrderType, SubmitOrder
from tradebus.errors import OrderError
from tradebus.execution.config import VenueConfig
from tradebus.reports.outputs import write_outputs
from tradebus.reports.stream import OutputStream
from tradebus.reports.writers import RunDirectory
from tradebus.research.lookahead import MemoryReplay, SourceFrame
from tradebus.risk.gate import RiskGate
from tradebus.strategies.algos import ExecAlgorithm, Iceberg, LimitChaser, Twap, Vwap
from tradebus.strategies.base import Strategy

from strat_helpers import BTC_4H, DAY_NS, H4_NS, bars_4h, instrument, run


class Runner(Strategy):
    """Starts ``make(self)`` at bar ``at`` and keeps the algorithm."""

    def __init__(self, make: Any, at: int = 0, history: int = 0) -> None:
        super().__init__(BTC_4H, strategy_id="algo-user")
        self.make, self.at, self.k, self.keep = make, at, 0, history
        self.algo: ExecAlgorithm | None = None
        self.denied: list[str] = []

    def history_sizes(self, instrument_id: str) -> dict[str, int]:
        return {"bars": self.keep} if self.keep else {}

    def on_bar(self, bar: Bar) -> None:
        if self.k == self.at:
            self.algo = self.make(self)
            self.algo.start()  # type: ignore[attr-defined]
        self.k += 1

    def on_order_denied(self, event: Any) -> None:
        self.denied.append(event.client_order_id)

    def on_stop(self) -> None:
        self.status_at_stop = None if self.algo is None else self.algo.status


class DenyNth(RiskGate):
    """A risk gate that also denies the ``n``-th order it checks (1-based)."""

    def __init__(self, *args: Any, n: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.n, self.seen = n, 0

    def check(self, cmd: SubmitOrder, open_orders: int = 0, *, order_quantity: float | None = None) -> str | None:
        self.seen += 1
        if self.seen == self.n:
            return "test: the n-th order is denied"
        return super().check(cmd, open_orders, order_quantity=order_quantity)


def statuses(kernel: Any, algo: ExecAlgorithm) -> list[OrderStatus]:
    return [kernel.orders.order(cid).status for cid in algo.children]


def test_twap_sends_equal_slices_on_schedule_that_sum_to_the_parent() -> None:
    frame = bars_4h().iloc[:40]
    strategy = Runner(lambda s: Twap(s, BTC_4H, OrderSide.BUY, 1.0, duration="1d", slices=6), at=2)
    kernel = run([strategy], {BTC_4H: frame})
    algo = strategy.algo
    assert isinstance(algo, Twap) and algo.status == "done"
    t0 = int(frame["ts_event"].iloc[2])
    assert algo.slice_times() == [t0 + i * H4_NS for i in range(6)]
    assert [t for t, _, _ in algo.sent] == algo.slice_times()
    quantities = [q for _, _, q in algo.sent]
    assert quantities[:5] == pytest.approx([1 / 6] * 5, abs=1e-5)
    assert sum(quantities) == pytest.approx(1.0, abs=1e-12)
    assert algo.filled == pytest.approx(1.0, abs=1e-12)
    assert kernel.portfolio.position(BTC_4H) == pytest.approx(1.0, abs=1e-12)
    assert all(f.reason.startswith(algo.name) for f in kernel.result.fills)


def test_twap_whose_first_children_a_daemon_forgot_sums_their_fills_and_ends_done(tmp_path: Path) -> None:
    """A daemon's order manager forgets closed orders once written out (past its latest ``keep_released``):
    a TWAP of more slices than that still counts what its first children filled (it failed with
    ``unknown client_order_id`` at its next slice)."""
    frame = bars_4h().iloc[:40]
    strategy = Runner(lambda s: Twap(s, BTC_4H, OrderSide.BUY, 1.0, duration="80h", slices=20), at=2)
    kernel = Kernel([instrument(BTC_4H)], initial_cash=1_000_000.0, equity_interval_ns=DAY_NS)
    kernel.add_strategy(strategy)
    kernel.orders.keep_released = 3  # released 4 h apart: past keep_released_ns (5 min) at once
    run_dir = RunDirectory(tmp_path, "paper")
    stream = OutputStream(run_dir, kernel)
    stream.start()
    kernel.run(MemoryReplay([SourceFrame(BTC_4H, "bars", frame)], 64))
    write_outputs(run_dir, kernel.result, kernel.instruments, "config: 1\n", {"node.json": "{}"}, stream)
    algo = strategy.algo
    assert isinstance(algo, Twap) and algo.status == "done"
    assert kernel.orders.get(algo.children[0]) is None  # forgotten by the order manager
    assert len(algo.sent) == 20 and algo.filled == pytest.approx(1.0, abs=1e-12)
    assert kernel.portfolio.position(BTC_4H) == pytest.approx(1.0, abs=1e-12)


def test_two_runs_in_one_process_name_their_algorithms_and_fill_reasons_alike() -> None:
    frame = bars_4h().iloc[:40]

    def fills_of_one_run() -> list[tuple[int, float, str]]:
        def make(s: Strategy) -> Twap:
            Iceberg(s, BTC_4H, OrderSide.BUY, 0.1, price=1.0, display=0.1)  # created, never started
            return Twap(s, BTC_4H, OrderSide.BUY, 1.0, duration="1d", slices=6)

        strategy = Runner(make, at=2)
        kernel = run([strategy], {BTC_4H: frame})
        assert strategy.algo is not None and strategy.algo.name == "twap2"  # the strategy's second algorithm
        return [(f.ts_event, f.quantity, f.reason) for f in kernel.result.fills]

    first = fills_of_one_run()
    assert first[0][2] == "twap2: slice 1"
    assert fills_of_one_run() == first


def test_twap_cut_short_by_the_end_of_the_run_is_reported_unfinished_with_what_it_did() -> None:
    frame = bars_4h().iloc[:40]
    strategy = Runner(lambda s: Twap(s, BTC_4H, OrderSide.BUY, 1.0, duration="1d", slices=6), at=37)
    warnings: list[str] = []
    sink = logger.add(lambda m: warnings.append(m.record["message"]), level="WARNING")
    try:
        kernel = run([strategy], {BTC_4H: frame})
    finally:
        logger.remove(sink)
    algo = strategy.algo
    assert algo is not None and algo.status == "unfinished"
    assert strategy.status_at_stop == "unfinished"  # reported before the strategy's own on_stop
    # slices 1-2 filled at the next bars' opens, slice 3 went out on the last bar and still works
    assert [kernel.orders.order(cid).status for cid in algo.children][-1] is OrderStatus.SUBMITTED
    assert warnings == [
        "algo-user twap1: the run ended before the algorithm: parent BUY 1.0 BTC-USD.COINBASE, "
        "0.33333 filled, 0.16667 working, 0.5 never sent"
    ]


class CancelsAlgo(Runner):
    """Starts ``make(self)`` at bar ``at`` and cancels it at bar ``cancel_at``, noting its status then.

    A TWAP starts at the bar's time (now in a backtest; in a paper run whose bars are stamped ahead of
    the wall clock, the time its slices are due by those bars).
    """

    def __init__(self, make: Any, at: int, cancel_at: int) -> None:
        super().__init__(make, at=at)
        self.cancel_at = cancel_at
        self.status_after_cancel: str | None = None

    def on_bar(self, bar: Bar) -> None:
        if self.k == self.at:
            algo = self.algo = self.make(self)
            if isinstance(algo, Twap):
                algo.start(bar.ts_init)
            else:
                algo.start()  # type: ignore[attr-defined]
        if self.k == self.cancel_at:
            assert self.algo is not None
            self.algo.cancel("test: the user stops it")
            self.status_after_cancel = self.algo.status
        self.k += 1


def test_twap_canceled_midway_sends_no_more_slices_and_ends_canceled_with_what_it_filled() -> None:
    strategy = CancelsAlgo(lambda s: Twap(s, BTC_4H, OrderSide.BUY, 1.0, duration="20h", slices=5), at=2, cancel_at=4)
    infos: list[str] = []
    sink = logger.add(lambda m: infos.append(m.record["message"]), level="INFO",
                      filter=lambda r: r["name"] == "tradebus.strategies.algos")  # fmt: skip
    try:
        kernel = run([strategy], {BTC_4H: bars_4h().iloc[:20]})
    finally:
        logger.remove(sink)
    # slices 1 and 2 filled; slice 3 was sent at the bar the TWAP is canceled on: the venue cancels it
    algo = strategy.algo
    assert isinstance(algo, Twap)
    assert strategy.status_after_cancel == "canceling"  # slice 3 still works until the venue confirms its cancel
    assert algo.status == "canceled" and strategy.status_at_stop == "canceled"
    assert len(algo.sent) == 3  # no slice 4 or 5
    assert statuses(kernel, algo) == [OrderStatus.FILLED, OrderStatus.FILLED, OrderStatus.CANCELED]
    assert len(kernel.result.orders) == 3
    assert algo.filled == pytest.approx(0.4, abs=1e-12)
    assert kernel.portfolio.position(BTC_4H) == pytest.approx(0.4, abs=1e-12)
    assert infos == ["algo-user twap1: canceled (test: the user stops it) with 0.4 of 1.0 filled"]


def run_paper(strategy: Strategy, frame: pd.DataFrame) -> Kernel:
    """Run ``strategy`` on a kernel on the wall clock, as the paper daemon's router drives it.

    The bars are stamped from a minute ahead of the wall clock; the timers due by a bar's time fire
    before it. An order is sent at the wall clock's time, before the stamps of these bars: the venue
    takes it at the next bar's open.
    """

    async def main() -> Kernel:
        clock = LiveClock()
        kernel = Kernel([instrument(BTC_4H)], initial_cash=1_000_000.0, clock=clock)
        kernel.add_strategy(strategy)
        base = time.time_ns() + 60 * SECOND_NS - int(frame["ts_event"].iloc[0])
        for row in frame.itertuples():
            ts = int(row.ts_event) + base
            clock.run_due(ts)
            kernel.process(Bar(BTC_4H, ts, ts, row.open, row.high, row.low, row.close, row.volume))
        kernel.stop()
        return kernel

    return asyncio.run(main())


def test_twap_canceled_midway_in_a_paper_run_sends_no_more_slices_and_ends_canceled() -> None:
    strategy = CancelsAlgo(lambda s: Twap(s, BTC_4H, OrderSide.BUY, 1.0, duration="20h", slices=5), at=2, cancel_at=4)
    infos: list[str] = []
    sink = logger.add(lambda m: infos.append(m.record["message"]), level="INFO",
                      filter=lambda r: r["name"] == "tradebus.strategies.algos")  # fmt: skip
    try:
        kernel = run_paper(strategy, bars_4h().iloc[:20])
    finally:
        logger.remove(sink)
    algo = strategy.algo
    assert isinstance(algo, Twap) and algo.status == "canceled" and strategy.status_at_stop == "canceled"
    # slices 1 and 2 were due by bar 3, slice 3 by bar 4, each filled by the bar it was due by (see run_paper)
    assert len(algo.sent) == 3 and statuses(kernel, algo) == [OrderStatus.FILLED] * 3
    assert algo.filled == pytest.approx(0.6, abs=1e-12)
    assert kernel.portfolio.position(BTC_4H) == pytest.approx(0.6, abs=1e-12)
    assert infos == ["algo-user twap1: canceled (test: the user stops it) with 0.6 of 1.0 filled"]


@pytest.mark.parametrize("mode", ["backtest", "paper"])
def test_iceberg_canceled_with_a_working_tip_cancels_it_and_sends_no_other(mode: str) -> None:
    frame = bars_4h().iloc[:20]
    price = round(float(frame["close"].iloc[2]) * 0.9, 2)  # never reached: the tip rests
    strategy = CancelsAlgo(
        lambda s: Iceberg(s, BTC_4H, OrderSide.BUY, 1.0, price=price, display=0.3, poll="4h"), at=2, cancel_at=5
    )
    kernel = run([strategy], {BTC_4H: frame}) if mode == "backtest" else run_paper(strategy, frame)
    algo = strategy.algo
    assert isinstance(algo, Iceberg)
    assert strategy.status_after_cancel == "canceling" and algo.status == "canceled"
    assert statuses(kernel, algo) == [OrderStatus.CANCELED]
    assert len(kernel.result.orders) == 1 and algo.filled == 0.0


def test_iceberg_canceled_while_its_tip_fills_counts_the_fill() -> None:
    # the user cancels the iceberg at the tip's first partial fill (0.1 of 0.3); the prints after it may fill
    # more of the tip before the venue takes the cancel: whatever filled is the algorithm's and the position
    class CancelsAtFirstFill(LimitChaserUser):
        def on_order_filled(self, event: Any) -> None:
            assert self.algo is not None
            self.algo.cancel("test: filled enough")

    strategy = CancelsAtFirstFill(lambda s: Iceberg(s, BTC_4H, OrderSide.BUY, 0.9, price=20_000.0, display=0.3))
    kernel = run_on_prints(strategy, [(20_001.0, 1.0), (20_000.0, 0.1), (20_000.0, 0.1)] + [(20_000.0, 1.0)] * 5)
    algo = strategy.algo
    assert isinstance(algo, Iceberg) and algo.status == "canceled"
    assert len(algo.children) == 1 and statuses(kernel, algo) == [OrderStatus.CANCELED]
    assert algo.filled == pytest.approx(kernel.portfolio.position(BTC_4H), abs=1e-12)
    assert algo.filled == pytest.approx(sum(f.quantity for f in kernel.result.fills), abs=1e-12)
    assert 0.1 <= algo.filled < 0.3


@pytest.mark.parametrize(("deny", "ends"), [(False, OrderStatus.CANCELED), (True, OrderStatus.DENIED)])
def test_iceberg_canceled_by_a_handler_of_its_first_tip_inside_start_cancels_that_tip(
    deny: bool, ends: OrderStatus
) -> None:
    # the strategy cancels the iceberg when its first tip is submitted (or denied): the handler runs inside
    # start(), before the iceberg knows the tip's id
    class CancelsAtFirstTip(Runner):
        def on_order_submitted(self, event: Any) -> None:
            self.first_tip_event()

        def on_order_denied(self, event: Any) -> None:
            self.first_tip_event()

        def first_tip_event(self) -> None:
            if self.algo is not None and self.algo.status == "working":
                self.algo.cancel("test: first tip")

    def make(s: Strategy) -> Iceberg:
        algo = Iceberg(s, BTC_4H, OrderSide.BUY, 1.0, price=40_000.0, display=0.3, poll="4h")
        s.algo = algo  # type: ignore[attr-defined]  # before start(): the tip's handlers run inside it
        return algo

    strategy = CancelsAtFirstTip(make, at=2)
    kernel = run([strategy], {BTC_4H: bars_4h().iloc[:20]}, risk_factory=partial(DenyNth, n=1 if deny else 0))
    algo = strategy.algo
    assert algo is not None and algo.status == "canceled" and strategy.status_at_stop == "canceled"
    assert statuses(kernel, algo) == [ends] and len(kernel.result.orders) == 1


def test_canceling_a_pending_algorithm_cancels_it_and_it_cannot_start_then() -> None:
    def make(s: Strategy) -> Twap:
        algo = Twap(s, BTC_4H, OrderSide.BUY, 1.0, duration="1d", slices=6)
        algo.cancel()
        assert algo.status == "canceled"
        with pytest.raises(OrderError, match="twap1: cannot start, the algorithm is canceled"):
            algo.start()
        algo.cancel()  # once ended, a cancel leaves it as it is
        return algo

    class MakesOnly(Runner):
        def on_bar(self, bar: Bar) -> None:
            if self.k == self.at:
                self.algo = self.make(self)
            self.k += 1

    strategy = MakesOnly(make, at=2)
    kernel = run([strategy], {BTC_4H: bars_4h().iloc[:20]})
    assert strategy.status_at_stop == "canceled" and kernel.result.orders == []


def test_twap_resends_a_denied_slice_with_the_next_one() -> None:
    frame = bars_4h().iloc[:40]
    strategy = Runner(lambda s: Twap(s, BTC_4H, OrderSide.SELL, 0.6, duration="1d", slices=6), at=1)
    kernel = run([strategy], {BTC_4H: frame}, risk_factory=partial(DenyNth, n=3))
    algo = strategy.algo
    assert algo is not None and algo.status == "done"
    assert statuses(kernel, algo)[2] is OrderStatus.DENIED and strategy.denied == [algo.children[2]]
    quantities = [q for _, _, q in algo.sent]
    assert quantities[3] == pytest.approx(0.2, abs=1e-9)  # the denied 0.1 rides with slice 4
    accepted = sum(q for (_, cid, q) in algo.sent if kernel.orders.order(cid).status is not OrderStatus.DENIED)
    assert accepted == pytest.approx(0.6, abs=1e-12)
    assert kernel.portfolio.position(BTC_4H) == pytest.approx(-0.6, abs=1e-12)


def test_twap_whose_last_slice_is_denied_fails_with_the_rest_unsent() -> None:
    frame = bars_4h().iloc[:40]
    strategy = Runner(lambda s: Twap(s, BTC_4H, OrderSide.BUY, 0.3, duration="12h", slices=3), at=0)
    kernel = run([strategy], {BTC_4H: frame}, risk_factory=partial(DenyNth, n=3))
    algo = strategy.algo
    assert algo is not None and algo.status == "failed"
    assert kernel.portfolio.position(BTC_4H) == pytest.approx(0.2, abs=1e-12)


def test_twap_whose_last_slice_the_venue_cancels_fails_and_says_what_it_filled() -> None:
    # a cash account of 10,000: slice 2 (0.2 at a last price of 20,000) passes the gate's buying power, but
    # the bar it fills in opens at 30,000 and the venue cancels it for want of cash
    frame = bars_4h().iloc[:20].copy()
    frame[["open", "high", "low", "close"]] = 20_000.0
    frame.loc[4:, ["open", "high", "low", "close"]] = 30_000.0
    strategy = Runner(lambda s: Twap(s, BTC_4H, OrderSide.BUY, 0.4, duration="8h", slices=2), at=2)
    warnings: list[str] = []
    sink = logger.add(lambda m: warnings.append(m.record["message"]), level="WARNING")
    try:
        kernel = run([strategy], {BTC_4H: frame}, cash=10_000.0, instrument_args={"margin": False, "leverage": 1.0})
    finally:
        logger.remove(sink)
    algo = strategy.algo
    assert algo is not None and statuses(kernel, algo) == [OrderStatus.FILLED, OrderStatus.CANCELED]
    assert algo.filled == pytest.approx(0.2, abs=1e-12)
    assert algo.status == "failed"
    assert warnings == ["algo-user twap1: ended with 0.2 of 0.4 filled"]


def test_vwap_slices_follow_the_time_of_day_volume_profile_of_the_history() -> None:
    frame = bars_4h().iloc[:200]
    history = 180
    strategy = Runner(lambda s: Vwap(s, BTC_4H, OrderSide.BUY, 2.0, duration="1d", slices=6), at=history,
                      history=history)  # fmt: skip
    run([strategy], {BTC_4H: frame})
    algo = strategy.algo
    assert isinstance(algo, Vwap) and algo.status == "done"
    # reference: mean volume per 4h time of day over the kept history, with pandas; the slice
    # sent at t trades in [t, t + 4h), the bar stamped (at its close) t + 4h
    past = frame.iloc[1 : history + 1]
    profile = past.groupby(past["ts_event"] % DAY_NS)["volume"].mean()
    phases = [(t + H4_NS) % DAY_NS for t in algo.slice_times()]
    weights = profile.loc[phases].to_numpy()
    expected = 2.0 * np.cumsum(weights) / weights.sum()
    sent = np.cumsum([q for _, _, q in algo.sent])
    np.testing.assert_allclose(sent, expected, atol=1e-5)
    assert sent[-1] == pytest.approx(2.0, abs=1e-12)
    assert not np.allclose(np.diff(np.concatenate([[0.0], sent])), 2.0 / 6, atol=1e-3)  # not a TWAP


def test_vwap_whose_last_slice_would_be_below_the_minimum_notional_sends_it_with_the_slice_before() -> None:
    # a flat 40,000 and a volume of 100 a bar, but 1 in the bars of the last slice's 4h of the day: its share
    # of a 0.01 parent is 0.00002, a notional of 0.8 under min_notional 10, which the gate would deny
    frame = bars_4h().iloc[:60].copy()
    frame[["open", "high", "low", "close"]] = 40_000.0
    frame["volume"] = 100.0
    history = 36
    last_phase = (int(frame["ts_event"].iloc[history]) + 6 * H4_NS) % DAY_NS
    frame.loc[frame["ts_event"] % DAY_NS == last_phase, "volume"] = 1.0
    strategy = Runner(lambda s: Vwap(s, BTC_4H, OrderSide.BUY, 0.01, duration="1d", slices=6), at=history,
                      history=history)  # fmt: skip
    kernel = run([strategy], {BTC_4H: frame}, instrument_args={"min_notional": 10.0})
    algo = strategy.algo
    assert isinstance(algo, Vwap) and strategy.denied == []
    assert algo.status == "done" and algo.filled == pytest.approx(0.01, abs=1e-12)
    assert [q for _, _, q in algo.sent] == pytest.approx([0.00199, 0.002, 0.00199, 0.002, 0.00202], abs=1e-12)
    assert [t for t, _, _ in algo.sent] == algo.slice_times()[:5]
    assert kernel.portfolio.position(BTC_4H) == pytest.approx(0.01, abs=1e-12)


def test_iceberg_shows_one_display_at_a_time_and_fills_the_parent_at_its_limit() -> None:
    frame = bars_4h().iloc[:120]
    price = float(frame["close"].iloc[5]) * 0.98

    def make(s: Strategy) -> Iceberg:
        return Iceberg(s, BTC_4H, OrderSide.BUY, 1.0, price=round(price, 2), display=0.3, poll="4h")

    strategy = Runner(make, at=5)
    kernel = run([strategy], {BTC_4H: frame})
    algo = strategy.algo
    assert isinstance(algo, Iceberg) and algo.status == "done"
    orders = [kernel.orders.order(cid) for cid in algo.children]
    assert [o.quantity for o in orders] == pytest.approx([0.3, 0.3, 0.3, 0.1])
    assert all(o.order_type is OrderType.LIMIT and o.price == round(price, 2) for o in orders)
    fills = kernel.result.fills
    assert sum(f.quantity for f in fills) == pytest.approx(1.0)
    assert all(f.price <= round(price, 2) for f in fills)
    # never two children working at once: each was sent after the previous one's last fill
    last_fill = {f.client_order_id: f.ts_event for f in fills}
    for (t_next, _, _), previous in zip(algo.sent[1:], algo.children, strict=False):
        assert t_next >= last_fill[previous]


def test_limit_chaser_rests_post_only_at_the_touch_and_follows_it() -> None:
    frame = bars_4h().iloc[:80]
    strategy = Runner(lambda s: LimitChaser(s, BTC_4H, OrderSide.BUY, 0.5, poll="4h"), at=3)
    kernel = run([strategy], {BTC_4H: frame})
    algo = strategy.algo
    assert isinstance(algo, LimitChaser) and algo.status == "done"
    closes = dict(zip(frame["ts_event"], frame["close"], strict=True))
    # every placement or move is one tick below the close of the bar before it
    for t, price in algo.prices:
        latest = max(ts for ts in closes if ts <= t)
        assert price == pytest.approx(round(closes[latest] - 0.01, 2))
    orders = [kernel.orders.order(cid) for cid in algo.children]
    assert all(o.post_only and o.order_type is OrderType.LIMIT for o in orders)
    assert sum(f.quantity for f in kernel.result.fills) == pytest.approx(0.5)
    assert all(f.liquidity == "MAKER" for f in kernel.result.fills)


def test_limit_chaser_times_out_into_a_market_order() -> None:
    frame = bars_4h().iloc[:40]
    # a sell resting one tick above a falling market never fills: the timeout takes over
    falling = frame.copy()
    falling[["open", "high", "low", "close"]] = np.linspace(50_000, 40_000, len(frame))[:, None] * [1, 1.0001, 0.9999, 1]
    strategy = Runner(lambda s: LimitChaser(s, BTC_4H, OrderSide.SELL, 0.5, poll="4h", timeout="12h"), at=2)
    kernel = run([strategy], {BTC_4H: falling})
    algo = strategy.algo
    assert algo is not None and algo.status == "done"
    kinds = [kernel.orders.order(cid).order_type for cid in algo.children]
    assert kinds[-1] is OrderType.MARKET and kernel.portfolio.position(BTC_4H) == pytest.approx(-0.5)
    # the cancel sent at the deadline (12h) reaches the venue at the next bar's open and is seen
    # at the poll after that bar (20h): only then is the rest sent at market
    assert algo.sent[-1][0] == int(frame["ts_event"].iloc[2]) + 20 * 3_600_000_000_000


def test_limit_chaser_timeout_never_fills_more_than_the_parent() -> None:
    frame = bars_4h().iloc[:20].copy()
    # a flat market below the sell resting one tick above it, until the bar that closes at the
    # deadline trades through it: that bar fills the child before the timeout's cancel arrives
    frame[["open", "high", "low", "close"]] = [50_000.0, 50_000.0, 49_990.0, 50_000.0]
    frame.loc[5, "high"] = 50_100.0
    assert int(frame["ts_event"].iloc[5]) - int(frame["ts_event"].iloc[2]) == 3 * H4_NS  # the deadline
    for venue in (VenueConfig(), VenueConfig(latency_ns=60_000_000_000)):
        strategy = Runner(lambda s: LimitChaser(s, BTC_4H, OrderSide.SELL, 0.5, poll="4h", timeout="12h"), at=2)
        kernel = run([strategy], {BTC_4H: frame}, venue_config=venue)
        algo = strategy.algo
        assert algo is not None
        assert [f.reason for f in kernel.result.fills] == [f"{algo.name}: rest at the touch"]
        assert kernel.portfolio.position(BTC_4H) == pytest.approx(-0.5)
        assert algo.filled == pytest.approx(0.5) and algo.status == "done"


def test_limit_chaser_whose_market_fallback_is_denied_fails() -> None:
    frame = bars_4h().iloc[:40]
    falling = frame.copy()
    falling[["open", "high", "low", "close"]] = np.linspace(50_000, 40_000, len(frame))[:, None] * [1, 1.0001, 0.9999, 1]

    class DenyMarket(RiskGate):
        def check(self, cmd: SubmitOrder, open_orders: int = 0, *, order_quantity: float | None = None) -> str | None:
            return "test: market orders are denied" if cmd.order_type is OrderType.MARKET else None

    strategy = Runner(lambda s: LimitChaser(s, BTC_4H, OrderSide.SELL, 0.5, poll="4h", timeout="12h"), at=2)
    kernel = run([strategy], {BTC_4H: falling}, risk_factory=DenyMarket)
    algo = strategy.algo
    assert algo is not None
    assert statuses(kernel, algo) == [OrderStatus.CANCELED, OrderStatus.DENIED]
    assert algo.filled == 0.0 and kernel.portfolio.position(BTC_4H) == 0.0
    assert algo.status == "failed"


def test_limit_chaser_whose_market_fallback_the_venue_cancels_fails() -> None:
    # a buy resting a tick under a rising market never fills; its market fallback, sent when the 20h poll finds
    # the child canceled, passes the gate's buying power (0.5 at ~41,000 of a cash account of 22,000), but the
    # bar it fills in opens at 60,000 and the venue cancels it for want of cash
    frame = bars_4h().iloc[:40].copy()
    frame[["open", "high", "low", "close"]] = np.linspace(40_000, 50_000, len(frame))[:, None] * [1, 1.0001, 0.9999, 1]
    frame.loc[8:, ["open", "high", "low", "close"]] = 60_000.0
    strategy = Runner(lambda s: LimitChaser(s, BTC_4H, OrderSide.BUY, 0.5, poll="4h", timeout="12h"), at=2)
    kernel = run([strategy], {BTC_4H: frame}, cash=22_000.0, instrument_args={"margin": False, "leverage": 1.0})
    algo = strategy.algo
    assert algo is not None and statuses(kernel, algo) == [OrderStatus.CANCELED, OrderStatus.CANCELED]
    assert kernel.orders.order(algo.children[1]).order_type is OrderType.MARKET
    assert algo.filled == 0.0 and algo.status == "failed"


def test_bad_algorithm_settings_are_order_errors() -> None:
    def make(s: Strategy) -> Any:
        with pytest.raises(OrderError, match="less than one lot"):
            Twap(s, BTC_4H, OrderSide.BUY, 1e-9, duration="1h", slices=2)
        with pytest.raises(OrderError, match="slices"):
            Twap(s, BTC_4H, OrderSide.BUY, 1.0, duration="1h", slices=0)
        with pytest.raises(OrderError, match="duration"):
            Twap(s, BTC_4H, OrderSide.BUY, 1.0, duration="soon", slices=2)
        return Twap(s, BTC_4H, OrderSide.BUY, 0.1, duration="4h", slices=1)

    run([Runner(make)], {BTC_4H: bars_4h().iloc[:5]})


def test_twap_started_before_now_is_refused_and_sends_nothing() -> None:
    frame = bars_4h().iloc[:40]
    now = int(frame["ts_event"].iloc[10])
    errors: list[str] = []

    def make(s: Strategy) -> Twap:
        algo = Twap(s, BTC_4H, OrderSide.BUY, 1.0, duration="1d", slices=6)
        with pytest.raises(OrderError) as exc:
            algo.start(now - 5 * H4_NS)  # five of its six slices in the past: all would go out at the next bar
        errors.append(str(exc.value))
        return algo

    class StartsAt(Runner):
        def on_bar(self, bar: Bar) -> None:
            if self.k == self.at:
                self.algo = self.make(self)
            self.k += 1

    strategy = StartsAt(make, at=10)
    kernel = run([strategy], {BTC_4H: frame})
    assert errors == [
        "algo-user twap1: start 2022-01-02T00:00:00.000000000 is before now (2022-01-02T20:00:00.000000000); "
        "its past slices would all be sent at once"
    ]
    assert strategy.algo is not None and strategy.algo.status == "pending" and strategy.algo.sent == []
    assert kernel.result.fills == []


def test_twap_started_now_or_later_keeps_its_schedule() -> None:
    frame = bars_4h().iloc[:40]
    now = int(frame["ts_event"].iloc[10])

    def make(s: Strategy) -> Twap:
        return Twap(s, BTC_4H, OrderSide.BUY, 1.0, duration="1d", slices=6)

    for at in (now, now + H4_NS):

        class StartsAt(Runner):
            def on_bar(self, bar: Bar, at: int = at) -> None:
                if self.k == self.at:
                    self.algo = self.make(self)
                    self.algo.start(at)  # type: ignore[attr-defined]
                self.k += 1

        strategy = StartsAt(make, at=10)
        run([strategy], {BTC_4H: frame})
        algo = strategy.algo
        assert isinstance(algo, Twap) and algo.status == "done"
        assert [t for t, _, _ in algo.sent] == [at + i * H4_NS for i in range(6)]


def test_limit_chaser_with_an_unknown_on_timeout_is_refused_at_construction() -> None:
    # "Market" was taken as "cancel": the timeout canceled the child and the chaser failed with nothing filled
    errors: list[str] = []

    def make(s: Strategy) -> LimitChaser:
        with pytest.raises(OrderError) as info:
            LimitChaser(s, BTC_4H, OrderSide.SELL, 0.5, timeout="12h", on_timeout="Market")  # type: ignore[arg-type]
        errors.append(str(info.value))
        return LimitChaser(s, BTC_4H, OrderSide.SELL, 0.5, timeout="12h", on_timeout="cancel")

    run([Runner(make)], {BTC_4H: bars_4h().iloc[:5]})
    assert errors == ["limitchaser1: on_timeout must be 'market' or 'cancel', got 'Market'"]


def test_iceberg_with_a_price_off_the_tick_grid_is_refused_at_construction_naming_price_and_tick() -> None:
    errors: list[str] = []

    def make(s: Strategy) -> Iceberg:
        for price in (46_778.7614, float("nan"), -1.0):
            with pytest.raises(OrderError) as caught:
                Iceberg(s, BTC_4H, OrderSide.BUY, 1.0, price=price, display=0.3)
            errors.append(str(caught.value))
        with pytest.raises(OrderError, match="notional"):  # min_notional 10: every tip of 1e-5 at 100 is denied
            Iceberg(s, BTC_4H, OrderSide.BUY, 1.0, price=100.0, display=1e-5)
        return Iceberg(s, BTC_4H, OrderSide.BUY, 0.3, price=46_778.76, display=0.3)  # on the grid

    strategy = Runner(make)
    run([strategy], {BTC_4H: bars_4h().iloc[:5]}, instrument_args={"min_notional": 10.0})
    assert errors[0] == f"iceberg1: price 46778.7614 is not a multiple of the tick size 0.01 ({BTC_4H})"
    assert all("price" in e for e in errors[1:])
    assert strategy.algo is not None and strategy.algo.status == "done" and strategy.denied == []


def test_iceberg_resends_a_denied_tip_and_gives_up_after_max_retries() -> None:
    frame = bars_4h().iloc[:120]
    price = round(float(frame["close"].iloc[5]) * 0.98, 2)

    def make(s: Strategy) -> Iceberg:
        return Iceberg(s, BTC_4H, OrderSide.BUY, 1.0, price=price, display=0.3, poll="4h", max_retries=2)

    strategy = Runner(make, at=5)
    kernel = run([strategy], {BTC_4H: frame}, risk_factory=partial(DenyNth, n=2))
    algo = strategy.algo
    assert isinstance(algo, Iceberg) and algo.status == "done"
    assert statuses(kernel, algo)[1] is OrderStatus.DENIED
    assert [q for _, _, q in algo.sent] == pytest.approx([0.3, 0.3, 0.3, 0.3, 0.1])  # the denied tip sent again
    assert algo.filled == pytest.approx(1.0)

    class DenyAll(RiskGate):
        def check(self, cmd: SubmitOrder, open_orders: int = 0, *, order_quantity: float | None = None) -> str | None:
            return "test: everything is denied"

    strategy = Runner(make, at=5)
    kernel = run([strategy], {BTC_4H: frame}, risk_factory=DenyAll)
    algo = strategy.algo
    assert algo is not None and algo.status == "failed" and len(algo.children) == 2
    assert kernel.result.fills == []


def test_iceberg_folds_a_remainder_below_the_minimum_notional_into_its_last_tip() -> None:
    def make(s: Strategy) -> Iceberg:
        return Iceberg(s, BTC_4H, OrderSide.BUY, 0.30001, price=46_778.76, display=0.3)  # a 0.00001 tip: 0.47 < 10

    strategy = Runner(make)
    kernel = run([strategy], {BTC_4H: bars_4h().iloc[:5]}, instrument_args={"min_notional": 10.0})
    algo = strategy.algo
    assert isinstance(algo, Iceberg) and algo.status == "done" and strategy.denied == []
    assert [q for _, _, q in algo.sent] == pytest.approx([0.30001], abs=1e-12)
    assert sum(f.quantity for f in kernel.result.fills) == pytest.approx(0.30001, abs=1e-12)

    def two_tips(s: Strategy) -> Iceberg:
        return Iceberg(s, BTC_4H, OrderSide.BUY, 0.60001, price=46_778.76, display=0.3)

    strategy = Runner(two_tips)
    run([strategy], {BTC_4H: bars_4h().iloc[:5]}, instrument_args={"min_notional": 10.0})
    assert strategy.algo is not None and strategy.algo.status == "done" and strategy.denied == []
    assert [q for _, _, q in strategy.algo.sent] == pytest.approx([0.3, 0.30001], abs=1e-12)


def test_iceberg_whose_whole_parent_is_below_the_minimum_notional_is_refused_at_construction() -> None:
    def make(s: Strategy) -> Iceberg:
        with pytest.raises(OrderError, match=r"iceberg1: parent quantity 0\.0001: notional .* below the minimum 10"):
            Iceberg(s, BTC_4H, OrderSide.BUY, 0.0001, price=46_778.76, display=0.3)
        return Iceberg(s, BTC_4H, OrderSide.BUY, 0.3, price=46_778.76, display=0.3)

    run([Runner(make)], {BTC_4H: bars_4h().iloc[:5]}, instrument_args={"min_notional": 10.0})


T0 = 1_700_000_000_000_000_000
SECOND_NS = 1_000_000_000
MINUTE_NS = 60 * SECOND_NS


def sell_prints(rows: list[tuple[float, float]], step_ns: int) -> pd.DataFrame:
    """Sell-aggressor trades of ``(price, size)``, one every ``step_ns`` from ``T0``."""
    ts = [T0 + i * step_ns for i in range(len(rows))]
    prices, sizes = zip(*rows, strict=True)
    aggressor = np.full(len(rows), -1, dtype=np.int8)
    trade_ids = [str(i) for i in range(len(rows))]
    return pd.DataFrame({"ts_event": ts, "ts_init": ts, "price": prices, "size": sizes, "aggressor": aggressor,
                         "trade_id": trade_ids})  # fmt: skip


class LimitChaserUser(Strategy):
    """Starts ``make(self)`` at the first trade."""

    def __init__(self, make: Any) -> None:
        super().__init__(BTC_4H, strategy_id="algo-user")
        self.make = make
        self.algo: ExecAlgorithm | None = None
        self.denied: list[str] = []

    def on_trade(self, trade: Any) -> None:
        if self.algo is None:
            self.algo = self.make(self)
            self.algo.start()  # type: ignore[attr-defined]

    def on_order_denied(self, event: Any) -> None:
        self.denied.append(event.reason)


class CancelsPartlyFilled(LimitChaserUser):
    """Also cancels any child as soon as it is partly filled."""

    def on_order_filled(self, event: Any) -> None:
        if self.ctx.orders.order(event.client_order_id).status is OrderStatus.PARTIALLY_FILLED:
            self.cancel(event.client_order_id, reason="test: the user cancels a partly filled child")


def run_on_prints(strategy: Strategy, rows: list[tuple[float, float]], step_ns: int = MINUTE_NS) -> Kernel:
    kernel = Kernel([instrument(BTC_4H, min_notional=10.0)], initial_cash=1_000_000.0,
                    venue_config=VenueConfig(fill_on="trades", trade_size_limit=True))  # fmt: skip
    kernel.add_strategy(strategy)
    kernel.run(MemoryReplay([SourceFrame(BTC_4H, "trades", sell_prints(rows, step_ns))]))
    return kernel


@pytest.mark.parametrize(("display", "fills"), [(0.3, [0.29999]), (0.2, [0.2, 0.09999])])
def test_iceberg_whose_partly_filled_tip_is_canceled_leaving_dust_ends_done_with_the_dust_never_sent(
    display: float, fills: list[float]
) -> None:
    # the last tip (0.3, or 0.1 after a tip of 0.2) is filled but 0.00001 and canceled: 0.00001 at 20,000 is
    # a notional of 0.2, under min_notional 10
    warnings: list[str] = []
    sink = logger.add(lambda m: warnings.append(m.record["message"]), level="WARNING")
    try:
        strategy = CancelsPartlyFilled(
            lambda s: Iceberg(s, BTC_4H, OrderSide.BUY, 0.3, price=20_000.0, display=display, poll="1m")
        )
        # each print that fills a tip is followed by two that do not, so the next tip is out before the next fill
        prints = [(20_001.0, 1.0)] + [p for q in fills for p in ((20_000.0, q), (20_001.0, 1.0), (20_001.0, 1.0))]
        prints += [(20_000.0, 1.0)] * 10
        kernel = run_on_prints(strategy, prints)
    finally:
        logger.remove(sink)
    algo = strategy.algo
    assert isinstance(algo, Iceberg)
    assert strategy.denied == []
    assert algo.status == "done" and algo.filled == pytest.approx(0.29999, abs=1e-12)
    assert algo.dust == pytest.approx(1e-5, abs=1e-12)
    assert statuses(kernel, algo)[-1] is OrderStatus.CANCELED
    assert kernel.portfolio.position(BTC_4H) == pytest.approx(0.29999, abs=1e-12)
    assert warnings == [
        "algo-user iceberg1: done with 0.29999 of 0.3 filled; the remaining 1e-05 is not sent, an order of its own "
        "would be refused (notional 0.2 is below the minimum 10.0)"
    ]


def test_limit_chaser_whose_partly_filled_child_is_canceled_leaving_dust_ends_done_with_the_dust_never_sent() -> None:
    strategy = CancelsPartlyFilled(lambda s: LimitChaser(s, BTC_4H, OrderSide.BUY, 0.3, poll="1m"))
    # the child rests at 19,999.99 (a tick under the last print) and fills 0.29999 of 0.3 before it is canceled
    prints = [(20_000.0, 1.0), (19_999.99, 0.29999)] + [(20_000.0, 1.0)] * 10
    kernel = run_on_prints(strategy, prints, step_ns=SECOND_NS * 20)
    algo = strategy.algo
    assert isinstance(algo, LimitChaser) and strategy.denied == []
    assert algo.status == "done" and algo.dust == pytest.approx(1e-5, abs=1e-12)
    assert statuses(kernel, algo) == [OrderStatus.CANCELED]


def test_limit_chaser_does_not_move_a_child_whose_unfilled_rest_is_dust_it_cancels_it_and_ends_done() -> None:
    strategy = LimitChaserUser(lambda s: LimitChaser(s, BTC_4H, OrderSide.BUY, 0.3, poll="1m"))
    # 0.29999 of the child at 19,999.99 fills; the market rises away a cent a print: moving the 0.00001 left
    # (a notional of 0.2) after it would be denied for min_notional 10
    prints = [(20_000.0, 1.0), (19_999.99, 0.29999)] + [(round(20_000.0 + 0.01 * i, 2), 1.0) for i in range(1, 10)]
    kernel = run_on_prints(strategy, prints, step_ns=SECOND_NS * 20)
    algo = strategy.algo
    assert isinstance(algo, LimitChaser) and strategy.denied == []
    assert algo.status == "done" and algo.dust == pytest.approx(1e-5, abs=1e-12)
    assert statuses(kernel, algo) == [OrderStatus.CANCELED]
    assert kernel.orders.order(algo.children[0]).filled_qty == pytest.approx(0.29999, abs=1e-12)


def test_limit_chaser_timing_out_with_only_dust_unfilled_sends_no_market_order_for_it() -> None:
    strategy = LimitChaserUser(lambda s: LimitChaser(s, BTC_4H, OrderSide.BUY, 0.3, poll="1m", timeout="3m"))
    prints = [(20_000.0, 1.0), (19_999.99, 0.29999)] + [(20_000.0, 1.0)] * 20
    kernel = run_on_prints(strategy, prints, step_ns=SECOND_NS * 20)
    algo = strategy.algo
    assert isinstance(algo, LimitChaser) and strategy.denied == []
    assert algo.status == "done" and algo.dust == pytest.approx(1e-5, abs=1e-12)
    assert [kernel.orders.order(cid).order_type for cid in algo.children] == [OrderType.LIMIT]
    assert algo.sent[0][0] + 3 * MINUTE_NS <= kernel.orders.order(algo.children[0]).ts_last  # canceled by the timeout
