"""Randomized: the kernel's batch loops give what ``process()`` gives, message by message.

Each seed draws a setup: bars of one to four instruments (intervals, offsets, holes, bursts of
one receive time) or trades of one to three; EmaCross or TickEmaCross on some instruments; a
seeded random trader (market, limit and stop orders, cancels, modifications and, in half of
the setups, brackets, trailing stops, good-till-date limits and one-cancels-the-other pairs,
emulated or native) acting on its timer, on the data of some instruments or on both, with
order-event handlers or none; the venue (latency, slippage, intrabar path, limit rule), the
account (cash, margin or not), the risk limits (a drawdown breaker in a quarter of the setups,
with a daily-loss and a gross-exposure breaker in some of those),
the equity interval, the batch size, and for a third of the setups perpetuals (leverage, mark
prices, funding announced ahead of its time). ``Kernel.run`` (the lean and full loops of one
instrument, of mixed instruments and of trades) and ``Kernel.process`` over the same messages
must give the same orders, fills, denials, equity samples and final state, and show the trader
the same things at the same times: the clock, and every instrument's cached price, bar, trade,
feature row, position and bar or trade history. The trader's choices depend on what it saw, so a
difference also changes its orders. The equity samples are also checked against the replayed
prices.

A second test cuts half of the setups' data at a random time: the run up to the cut must be
the full run's prefix (no lookahead).

Each of these changes to ``tradebus/engine/batch.py`` fails at least one seed: a lean bar loop
caching the price after the delivery, caching the next bar's close, or showing a timer the bar
of its row; the lean mixed loop not caching the delivered bars before a timer or before order
events; the mixed loop forgetting an instrument it left lagging; the lean trade loop leaving
the venue while one order still works; a bar or trade history moved after the delivery. The
test found three defects, each with a test of its own: equity samples taken at the first
message of their time (``Kernel.before_time``), announced funding left by the bar loops to the
next mark (``Perpetuals.next_funding_ns``), and the risk gate not told a close equal to a
perpetual's mark price (``Portfolio.mark_moved``).
"""

from __future__ import annotations

import bisect
import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from tradebus.data.replay import Replay, ReplaySource
from tradebus.engine.instrument import Instrument, InstrumentKind
from tradebus.engine.kernel import Kernel
from tradebus.engine.messages import (
    Bar, FundingRate, MarkPrice, OrderCanceled, OrderFilled, OrderSide, OrderType, TimeEvent, Trade,
)
from tradebus.errors import FeatureError
from tradebus.execution.config import VenueConfig
from tradebus.risk.config import RiskConfig
from tradebus.strategies.base import Strategy
from tradebus.strategies.ema_cross import EmaCross
from tradebus.strategies.tick_ema import TickEmaCross

from tests.engine.test_kernel import MIN, T0, bar_table, received_in_bursts
from tests.engine.test_kernel_batches import bar_sources, fills_of, orders_of, run_both, synthetic_trades

SEEDS = range(70)
MS = 1_000_000


def _seen(x: float) -> float | None:
    return None if x != x else x  # NaN (not ready, no price) compares unequal to itself


def _row(cache: Any, instrument_id: str) -> tuple[float | None, ...] | None:
    try:
        return tuple(map(_seen, cache.features(instrument_id).row))
    except FeatureError:  # no strategy asked features of it
        return None


class TimerTrader(Strategy):
    """Trades at random on its timer and logs what it sees; its choices follow from the log.

    Each action records the clock and, for every instrument of the run, the cached price, bar
    and trade, the feature row and the position (and the bar or trade history of its last
    instrument), then draws what to do: nothing, a market, limit or stop order, a cancel or a
    modification of one of its working orders, or (with :attr:`contingent` set) a contingent
    order. It subscribes to no data, so the instruments it watches may run in the lean loops.
    """

    def __init__(self, ids: tuple[str, ...], watched: tuple[str, ...], seed: int, timer_ns: int | None,
                 history: str | None) -> None:  # fmt: skip
        super().__init__(ids, strategy_id="rand")
        self.ids = ids
        self.watched = watched
        self.rng = random.Random(seed)
        self.timer_ns = timer_ns
        self.read_history = history
        self.mine: list[str] = []
        self.seen: list[tuple[Any, ...]] = []
        #: Draws of contingent orders (``None``: it places none).
        self.contingent: random.Random | None = None
        self.gtd_unit = MIN
        #: Whether its instruments have bars (a bracket may count them: a run without refuses that).
        self.has_bars = True

    def history_sizes(self, instrument_id: str) -> dict[str, int]:
        return {self.read_history: 3} if self.read_history else {}

    def on_start(self) -> None:
        if self.timer_ns is not None:
            self.set_timer("tick", self.timer_ns, start_ns=T0)

    def on_timer(self, event: TimeEvent) -> None:
        self._act(self.ids[self.rng.randrange(len(self.ids))], ("timer", event.ts_event))

    def _look(self) -> tuple[Any, ...]:
        cache = self.cache
        looks = []
        for i in self.watched:
            bar, trade = cache.bar(i), cache.trade(i)
            looks.append((
                _seen(cache.price(i)), self.position(i),
                None if bar is None else (bar.ts_init, bar.close),
                None if trade is None else (trade.ts_init, trade.price),
                _row(cache, i),
            ))  # fmt: skip
        window = ()
        if self.read_history == "bars":
            window = tuple(self.bars(instrument_id=self.ids[-1]).close.tolist())
        elif self.read_history == "trades":
            window = tuple(self.trades(instrument_id=self.ids[-1]).price.tolist())
        return self.clock.now_ns(), tuple(looks), window

    def _act(self, iid: str, what: tuple[Any, ...]) -> None:
        self.seen.append((what, self._look()))
        price = self.cache.price(iid)
        if price != price:
            return
        rng = self.rng
        r = rng.random()
        side = OrderSide.BUY if rng.random() < 0.5 else OrderSide.SELL
        sign = 1.0 if side is OrderSide.BUY else -1.0
        qty = rng.choice((0.05, 0.2, 1.0))
        if r < 0.05:
            self.mine.append(self.submit_market(iid, side, qty, reason="rand"))
        elif r < 0.10:
            limit = round(price * (1.0 - sign * rng.uniform(-0.001, 0.004)), 2)
            self.mine.append(self.submit_limit(iid, side, qty, limit, reason="rand"))
        elif r < 0.13:
            trigger = round(price * (1.0 + sign * rng.uniform(0.0005, 0.004)), 2)
            self.mine.append(self.submit_stop(iid, side, qty, trigger, reason="rand"))
        elif r < 0.19:
            working = [c for c in self.mine if (o := self.ctx.orders.get(c)) is not None and o.is_open]
            if not working:
                return
            coid = working[rng.randrange(len(working))]
            order = self.ctx.orders.get(coid)
            if r < 0.17:
                self.cancel(coid)
            elif order is not None and order.order_type is OrderType.LIMIT:
                self.modify(coid, price=round(order.price * rng.uniform(0.998, 1.002), 2))
        elif r < 0.24 and self.contingent is not None:
            self._contingent_order(iid, side, price)

    def _contingent_order(self, iid: str, side: OrderSide, price: float) -> None:
        """A bracket, a trailing stop, a good-till-date limit or two limits one-cancels-the-other."""
        rng = self.contingent  # its own draws: the other choices stay those of the setups without
        assert rng is not None
        sign = 1.0 if side is OrderSide.BUY else -1.0
        kind = rng.randrange(4)
        if kind == 0:
            entry = round(price * (1.0 - sign * 0.001), 2) if rng.random() < 0.5 else None
            ref = entry if entry is not None else price
            take_profit = round(ref * (1.0 + sign * 0.004), 2) if rng.random() < 0.7 else None
            counts = (rng.choice((0, 0, 2)), rng.choice((None, 5, 20)), rng.choice((0, 3)))
            arm, exit_after, cooldown = counts if self.has_bars else (0, None, 0)
            self.submit_bracket(
                iid, side, 0.2, entry_price=entry, stop_loss=round(ref * (1.0 - sign * 0.004), 2),
                take_profit=take_profit, arm_after_bars=arm, exit_after_bars=exit_after, cooldown_bars=cooldown,
                reason="bracket",
            )  # fmt: skip
        elif kind == 1:
            self.submit_trailing_stop(iid, side, 0.1, percent=rng.choice((0.2, 0.5)), reduce_only=False, reason="trail")
        elif kind == 2:
            coid = self.submit_limit(iid, side, 0.1, round(price * (1.0 - sign * 0.002), 2), reason="gtd")
            self.submit_gtd(coid, self.clock.now_ns() + rng.choice((1, 4, 15)) * self.gtd_unit)
        else:
            low = self.submit_limit(iid, OrderSide.BUY, 0.1, round(price * 0.997, 2), reason="oco")
            high = self.submit_limit(iid, OrderSide.SELL, 0.1, round(price * 1.003, 2), reason="oco")
            if all((o := self.ctx.orders.get(c)) is not None and o.is_open for c in (low, high)):
                self.submit_oco([low, high])


class DataTrader(TimerTrader):
    """A :class:`TimerTrader` that also acts on every bar and trade of its own instruments."""

    def on_bar(self, bar: Bar) -> None:
        self._act(bar.instrument_id, ("bar", bar.instrument_id, bar.ts_init, bar.open, bar.close))

    def on_trade(self, trade: Trade) -> None:
        self._act(trade.instrument_id, ("trade", trade.instrument_id, trade.ts_init, trade.price, trade.trade_id))


class Watching:
    """Order-event handlers for a trader: they log what they see, and a fill may trade again."""

    def on_order_filled(self: Any, event: OrderFilled) -> None:
        self.seen.append(("filled", event.client_order_id, event.last_qty, event.last_px, self._look()))
        if self.rng.random() < 0.2:
            self._act(event.instrument_id, ("after fill", event.client_order_id))

    def on_order_canceled(self: Any, event: OrderCanceled) -> None:
        self.seen.append(("canceled", event.client_order_id, self._look()))


class WatchingTimerTrader(Watching, TimerTrader):
    pass


class WatchingDataTrader(Watching, DataTrader):
    pass


TRADERS = {(False, False): TimerTrader, (False, True): WatchingTimerTrader, (True, False): DataTrader,
           (True, True): WatchingDataTrader}  # fmt: skip


def _bar_tables(rng: random.Random, count: int) -> list[pa.Table]:
    tables = []
    for k in range(count):
        interval = rng.choice((MIN, MIN, 5 * MIN))
        start = T0 + rng.choice((0, 0, MIN // 2, 7 * MIN, 40 * MIN))
        table = bar_table(rng.randint(150, 600), seed=rng.randrange(10_000), start=start, interval=interval)
        if rng.random() < 0.3:
            every = rng.randint(5, 17)
            table = table.filter(pa.array(np.arange(table.num_rows) % every != rng.randrange(every)))
        if rng.random() < 0.25 and k == 0:
            table = received_in_bursts(table, rng.choice((3, 5)) * interval)
        tables.append(table)
    return tables


def _setup(seed: int, root: Path) -> tuple[list[ReplaySource], Any, int, list[MarkPrice | FundingRate]]:
    """The sources, a builder of the kernel (fresh strategies each call), the batch size and the perpetual data."""
    rng = random.Random(seed)
    trades = rng.random() < 0.35
    if trades:
        count = rng.randint(1, 3)
        tables = [
            synthetic_trades(rng.randint(800, 2_500), seed=rng.randrange(10_000), start=T0 + rng.choice((0, 0, 3 * MS)))
            for _ in range(count)
        ]
        sources = bar_sources(root, tables, "trades")
        latency = rng.choice((0, 0, MS, 5 * MS))
        timer = rng.choice((None, 2_500 * MS, 7_100 * MS))
    else:
        count = rng.randint(1, 4)
        tables = _bar_tables(rng, count)
        sources = bar_sources(root, tables)
        latency = rng.choice((0, 0, MIN // 2, 3 * MIN // 2))
        timer = rng.choice((None, 7 * MIN + MIN // 3, 13 * MIN))
    ids = tuple(s.instrument_id for s in sources)
    margins = [rng.random() < 0.6 for _ in ids]
    venue = VenueConfig(
        fill_on="trades" if trades else "bars",
        latency_ns=latency,
        slippage_bps=rng.choice((0.0, 1.0, 3.0)),
        bar_path=rng.choice(("close_direction", "high_first", "low_first", "stop_first")),
        limit_fill=rng.choice(("touch", "through")),
    )
    risk = RiskConfig(
        max_order_notional=rng.choice((None, None, 50.0, 120.0)),
        max_open_orders=rng.choice((None, None, 3)),
        max_position=rng.choice((None, None, 1.5)),
    )
    cash = rng.choice((150.0, 5_000.0, 1_000_000.0))
    equity_interval = rng.choice((7 * MIN, 3_600_000_000_000)) if not trades else rng.choice((1_000 * MS, 60_000 * MS))
    emas = [(iid, rng.randint(3, 8), rng.randint(12, 30), rng.choice(("long_only", "long_short"))) for iid in ids
            if rng.random() < 0.7]  # fmt: skip
    traded = tuple(iid for iid in ids if rng.random() < 0.6) or (ids[rng.randrange(len(ids))],)
    history = ("trades" if trades else "bars") if rng.random() < 0.5 else None
    trader = (rng.random() < 0.85, rng.random() < 0.5, rng.random() < 0.5, history, rng.randrange(1 << 30))
    batch_rows = rng.choice((1, 5, 64, 500, 4_096))
    perps = _perpetual_data(random.Random(f"perpetual {seed}"), ids, tables, trades)
    contingent = random.Random(f"contingent {seed}")
    contingent_seed = contingent.randrange(1 << 30) if contingent.random() < 0.5 else None
    if contingent_seed is not None:
        venue = venue.model_copy(update={"contingent": contingent.choice(("emulated", "native"))})
    breakers = random.Random(f"breakers {seed}")
    if breakers.random() < 0.25:  # breakers on marks: the loops show the venue every bar or trade
        risk = risk.model_copy(update={"max_drawdown_pct": breakers.choice((0.05, 0.5, 3.0)),
                                       "drawdown_action": breakers.choice(("halt", "reduce"))})  # fmt: skip
        if breakers.random() < 0.5:
            risk = risk.model_copy(update={"max_daily_loss_pct": breakers.choice((0.05, 0.5)),
                                           "daily_loss_action": breakers.choice(("halt", "reduce"))})  # fmt: skip
        if breakers.random() < 0.4:
            risk = risk.model_copy(update={"max_gross_exposure": breakers.choice((0.5, 2.0, 10.0))})

    def build() -> Kernel:
        instruments = [
            Instrument("SIM", iid.split(".")[0], tick_size=0.01, lot_size=0.001, taker_fee=0.0002, maker_fee=0.0001,
                       margin=margin)
            if perps is None else
            Instrument("SIM", iid.split(".")[0], kind=InstrumentKind.PERPETUAL, base=iid[:2], quote="USD",
                       tick_size=0.01, lot_size=0.001, taker_fee=0.0002, maker_fee=0.0001, leverage=perps[0])
            for iid, margin in zip(ids, margins, strict=True)
        ]  # fmt: skip
        kernel = Kernel(instruments, venue_config=venue, risk_config=risk, initial_cash=cash,
                        equity_interval_ns=equity_interval)  # fmt: skip
        if perps is not None:
            kernel.feed_perpetual_data(perps[1])
        for k, (iid, fast, slow, mode) in enumerate(emas):
            cls = TickEmaCross if trades else EmaCross
            kernel.add_strategy(cls(iid, fast=fast, slow=slow, mode=mode, quantity=0.5, strategy_id=f"ema{k}"))
        present, on_data, watching, history, trader_seed = trader
        if present:
            cls = TRADERS[on_data, watching]
            trader_ = cls(traded if on_data else ids, ids, trader_seed, timer, history)
            if contingent_seed is not None:
                trader_.contingent = random.Random(contingent_seed)
                trader_.gtd_unit = 1_000 * MS if trades else MIN
                trader_.has_bars = not trades
            kernel.add_strategy(trader_)
        return kernel

    return sources, build, batch_rows, [] if perps is None else perps[1]


def _perpetual_data(
    rng: random.Random, ids: tuple[str, ...], tables: list[pa.Table], trades: bool
) -> tuple[float, list[MarkPrice | FundingRate]] | None:
    """For a third of the setups: perpetuals' leverage, and mark prices and funding near the data."""
    if rng.random() >= 0.3:
        return None
    step, funding = (3_000 * MS, 20_000 * MS) if trades else (7 * MIN, 40 * MIN)
    data: list[MarkPrice | FundingRate] = []
    for iid, table in zip(ids, tables, strict=True):
        ts = table.column("ts_init").to_pylist()
        price = table.column("price" if trades else "close").to_pylist()
        t, j = ts[0] - step // 2, 0
        while t <= ts[-1] + step:
            while j + 1 < len(ts) and ts[j + 1] <= t:
                j += 1
            data.append(MarkPrice(iid, t, t, round(price[j] * (1.0 + rng.gauss(0.0, 0.002)), 2), math.nan))
            t += step + rng.randrange(step // 3)
        for f in range(ts[0] + funding, ts[-1], funding):
            data.append(FundingRate(iid, f, f, rng.uniform(-0.002, 0.002), f + funding // 2))
    return rng.choice((2.0, 5.0, 20.0)), data


def _trader_log(kernel: Kernel) -> list[tuple[Any, ...]]:
    return [entry for s in kernel.strategies if isinstance(s, TimerTrader) for entry in s.seen]


@pytest.mark.parametrize("seed", SEEDS)
def test_random_setups_give_the_batch_loops_the_results_of_process(tmp_path: Path, seed: int) -> None:
    sources, build, batch_rows, perpetual = _setup(seed, tmp_path / "cat")
    fast, slow = run_both(sources, build, batch_rows)
    assert _trader_log(fast) == _trader_log(slow)
    assert orders_of(fast) == orders_of(slow)
    assert fills_of(fast) == fills_of(slow)
    assert [(d.client_order_id, d.reason, d.ts_event) for d in fast.result.denials] == [
        (d.client_order_id, d.reason, d.ts_event) for d in slow.result.denials
    ]
    assert fast.result.equity == slow.result.equity
    # Each sample marks every instrument at its last price received up to the sample's time (a
    # perpetual's last mark price once it has one; those come before the data of their time).
    ids = list(fast.instruments)
    latest: dict[str, float] = {}
    marked: set[str] = set()
    marks: dict[int, tuple[float | None, ...]] = {}
    events = sorted([(m.ts_init, 0, m) for m in perpetual] + [(m.ts_init, 1, m) for m in Replay(sources)],
                    key=lambda e: e[:2])  # fmt: skip
    for ts, _, msg in events:
        if isinstance(msg, MarkPrice):
            latest[msg.instrument_id] = msg.mark_price
            marked.add(msg.instrument_id)
        elif isinstance(msg, Bar | Trade) and msg.instrument_id not in marked:
            latest[msg.instrument_id] = msg.close if isinstance(msg, Bar) else msg.price
        marks[ts] = tuple(latest.get(i) for i in ids)
    times = sorted(marks)
    for sample in fast.result.equity:
        at = times[bisect.bisect_right(times, sample.ts) - 1]
        assert tuple(map(_seen, sample.marks)) == marks[at], sample
    assert fast.portfolio.equity() == slow.portfolio.equity()
    assert fast.portfolio.positions() == slow.portfolio.positions()
    assert (fast.result.trades, fast.result.bars) == (slow.result.trades, slow.result.bars)
    assert (fast.result.start_ns, fast.result.end_ns) == (slow.result.start_ns, slow.result.end_ns)
    decisions = [[getattr(s, "decisions", None) for s in k.strategies] for k in (fast, slow)]
    assert decisions[0] == decisions[1]


@pytest.mark.parametrize("seed", SEEDS[::2])
def test_random_setups_cut_anywhere_leave_the_run_before_the_cut_unchanged(tmp_path: Path, seed: int) -> None:
    """No lookahead in the batch loops: a run of the data up to a random time is the full run's prefix.

    Everything the trader saw, the orders created, the fills and the equity samples (but the
    cut run's final one, taken at its end) are the first ones of the run over all the data.
    """
    sources, build, batch_rows, _ = _setup(seed, tmp_path / "cat")
    times = sorted({m.ts_init for m in Replay(sources)})
    cut = times[random.Random(f"cut {seed}").randrange(len(times) // 4, len(times))]
    full = build()
    full.run(Replay(sources, batch_rows=batch_rows))
    part = build()
    part.run(Replay(sources, end_ns=cut, batch_rows=batch_rows))
    log = _trader_log(part)
    assert log == _trader_log(full)[: len(log)]
    created = [[(o.client_order_id, o.side, o.quantity, o.ts_created) for o in k.result.orders] for k in (part, full)]
    assert created[0] == created[1][: len(created[0])]
    assert fills_of(part) == fills_of(full)[: len(fills_of(part))]
    samples = part.result.equity[:-1]
    assert samples == full.result.equity[: len(samples)]
    assert part.result.equity[-1].ts == cut
