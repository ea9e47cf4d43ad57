"""Property: every simulated fill lies within the data seen after the order's arrival and respects its limit."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from tradebus.engine.messages import Bar, OrderSide, OrderType, TimeInForce
from tradebus.execution.config import VenueConfig

from .conftest import BAR_NS, IID, build_stack

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
    decided: dict[str, tuple[int, OrderSide, OrderType, float, float]] = {}
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
            decided[coid] = (i, side, typ, price, trigger)
    for fill in s.fills():
        at, side, typ, price, _trigger = decided[fill.client_order_id]
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
