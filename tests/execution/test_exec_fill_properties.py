"""Property: every simulated fill lies within the data seen after the order's arrival and respects its limit.

Also across two instruments of different bar intervals, decisions between bars (timers) and
latencies that are not whole bars.
"""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from tradebus.engine.bus import MessageBus
from tradebus.engine.clock import SimulatedClock
from tradebus.engine.messages import Bar, Liquidity, OrderFilled, OrderSide, OrderType, SubmitOrder, TimeInForce
from tradebus.engine.portfolio import Portfolio
from tradebus.execution.config import VenueConfig
from tradebus.execution.engine import ExecutionEngine
from tradebus.execution.orders import OrderManager
from tradebus.execution.simulated import SimulatedVenue
from tradebus.risk.config import RiskConfig
from tradebus.risk.gate import RiskGate

from .conftest import BAR_NS, IID, build_stack, make_instrument

TICK = 0.01


@st.composite
def bar_series(draw: st.DrawFn) -> list[tuple[float, float, float, float]]:
    n = draw(st.integers(min_value=2, max_value=12))
    price = draw(st.integers(min_value=5_000, max_value=15_000))  # in ticks
    out = []
    for _ in range(n):
        o = max(100, price + draw(st.integers(-300, 300)))
        c = max(100, o + draw(st.integers(-400, 400)))
        h = max(o, c) + draw(st.integers(0, 300))
        lo = max(50, min(o, c) - draw(st.integers(0, 300)))
        out.append((o * TICK, h * TICK, lo * TICK, c * TICK))
        price = c
    return out


order_spec = st.tuples(
    st.integers(min_value=0, max_value=11),  # bar index at which it is decided
    st.sampled_from([OrderSide.BUY, OrderSide.SELL]),
    st.sampled_from(list(OrderType)),
    st.integers(min_value=-600, max_value=600),  # limit offset from the decision close, ticks
    st.integers(min_value=-600, max_value=600),  # trigger offset, ticks
    st.sampled_from(list(TimeInForce)),
    st.booleans(),  # post_only
    st.booleans(),  # reduce_only
    st.integers(min_value=1, max_value=5),  # quantity
)


@settings(max_examples=150, deadline=None)
@given(
    bars=bar_series(),
    specs=st.lists(order_spec, min_size=1, max_size=8),
    slippage=st.sampled_from([0.0, 5.0, 500.0]),
    through=st.booleans(),
)
def test_every_bar_fill_is_inside_a_bar_after_arrival_and_respects_limit(
    bars: list[tuple[float, float, float, float]],
    specs: list[tuple],
    slippage: float,
    through: bool,
) -> None:
    s = build_stack(
        venue=VenueConfig(slippage_bps=slippage, limit_fill="through" if through else "touch"), cash=1e9
    )
    decided: dict[str, tuple[int, OrderSide, OrderType, float, float, bool]] = {}
    by_bar: dict[int, list[tuple]] = {}
    for spec in specs:
        by_bar.setdefault(spec[0], []).append(spec)
    for i, (o, h, lo, c) in enumerate(bars, start=1):
        s.feed_bar(Bar(IID, i * BAR_NS, i * BAR_NS, o, h, lo, c, 1.0))
        for _, side, typ, loff, toff, tif, post, reduce, qty in by_bar.get(i - 1, ()):
            price = round(c + loff * TICK, 2) if typ in (OrderType.LIMIT, OrderType.STOP_LIMIT) else math.nan
            trigger = round(c + toff * TICK, 2) if typ in (OrderType.STOP_MARKET, OrderType.STOP_LIMIT) else math.nan
            if price == price and price <= 0 or trigger == trigger and trigger <= 0:
                continue
            coid = s.submit(side, float(qty), typ, price, trigger, tif, post, reduce)
            decided[coid] = (i, side, typ, price, trigger, post)
    for fill in s.fills():
        at, side, typ, price, _trigger, post = decided[fill.client_order_id]
        assert not (post and fill.liquidity == Liquidity.TAKER), "a post-only order took liquidity"
        k = fill.ts_event // BAR_NS
        assert k > at, "filled in the bar it was decided on (or earlier)"
        o, h, lo, c = bars[k - 1]
        assert lo - 1e-9 <= fill.last_px <= h + 1e-9, (fill, bars[k - 1])
        if typ in (OrderType.LIMIT, OrderType.STOP_LIMIT):
            if side == OrderSide.BUY:
                assert fill.last_px <= price + 1e-9
            else:
                assert fill.last_px >= price - 1e-9
    # Bookkeeping stays consistent: venue position == portfolio position, no order overfilled.
    assert abs(s.venue.position(IID) - s.portfolio.position(IID)) < 1e-9
    for order in s.orders.orders():
        assert order.filled_qty <= order.quantity + 1e-9


# ---------------------------------------------- two instruments, mid-bar decisions, fractional latency

ETH = "ETHUSDT.BINANCE"
ETH_BAR_NS = 4 * BAR_NS  # ETH bars are four times longer than BTC bars


@settings(max_examples=120, deadline=None)
@given(
    btc=bar_series(),
    eth=bar_series(),
    specs=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=4 * 12 * 4 - 1),  # decision time, quarter BTC bars
            st.sampled_from([IID, ETH]),
            st.sampled_from([OrderSide.BUY, OrderSide.SELL]),
            st.sampled_from([OrderType.MARKET, OrderType.LIMIT, OrderType.STOP_MARKET]),
            st.integers(min_value=-600, max_value=600),  # limit / trigger offset from the last close, ticks
        ),
        min_size=1,
        max_size=10,
    ),
    latency_quarters=st.integers(min_value=0, max_value=10),  # latency in quarter BTC bars: 0, 0.25, ..., 2.5
)
def test_every_bar_fill_uses_a_bar_that_opened_after_arrival_across_instruments_timers_and_latency(
    btc: list[tuple[float, float, float, float]],
    eth: list[tuple[float, float, float, float]],
    specs: list[tuple],
    latency_quarters: int,
) -> None:
    # Fails before the fix: an action arriving inside a bar was handled at that bar's open.
    quarter = BAR_NS // 4
    latency = latency_quarters * quarter
    pair = (make_instrument(margin=True), make_instrument(symbol="ETHUSDT", margin=True))
    instruments = {i.instrument_id: i for i in pair}
    bus, clock = MessageBus(), SimulatedClock(0)
    portfolio = Portfolio(instruments, 1e9)
    om = OrderManager(bus, clock)
    venue = SimulatedVenue(clock, instruments, VenueConfig(latency_ns=latency))
    gate = RiskGate(RiskConfig(), portfolio, clock, bus)
    engine = ExecutionEngine(bus, clock, instruments, gate, om, venue, portfolio)
    fills: list[OrderFilled] = []
    bus.subscribe(OrderFilled, fills.append)
    stream = [(i * BAR_NS, IID, b) for i, b in enumerate(btc, start=1)]
    stream += [(i * ETH_BAR_NS, ETH, b) for i, b in enumerate(eth, start=1)]
    stream.sort(key=lambda row: (row[0], row[1]))
    bars = {(iid, ts): b for ts, iid, b in stream}
    decisions = sorted(specs)
    arrival: dict[str, int] = {}
    last: dict[str, float] = {}
    k = 0
    for ts, iid, (o, h, lo, c) in stream:
        while k < len(decisions) and decisions[k][0] * quarter < ts:  # timers fire before later data
            at, target, side, typ, off = decisions[k]
            k += 1
            if target not in last:
                continue
            clock.advance_to(at * quarter)
            px = round(last[target] + off * TICK, 2)
            if px <= 0:
                continue
            coid = om.next_client_order_id("s")
            now = clock.now_ns()
            price = px if typ == OrderType.LIMIT else math.nan
            trigger = px if typ == OrderType.STOP_MARKET else math.nan
            engine.submit(SubmitOrder("s", target, coid, side, 1.0, now, now, typ, price, trigger))
            arrival[coid] = now + latency
        clock.advance_to(ts)
        engine.on_bar(Bar(iid, ts, ts, o, h, lo, c, 1.0))
        last[iid] = c
    interval = {IID: BAR_NS, ETH: ETH_BAR_NS}
    for fill in fills:
        o, h, lo, c = bars[(fill.instrument_id, fill.ts_event)]
        opened = fill.ts_event - interval[fill.instrument_id]
        assert opened >= arrival[fill.client_order_id], (fill, opened, arrival[fill.client_order_id])
        assert lo - 1e-9 <= fill.last_px <= h + 1e-9
