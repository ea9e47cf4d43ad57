"""A ``fill_on: quotes`` venue and a locked or crossed quote (bid >= ask): no order matches it.

The kernel marks nothing at such a quote (its mid is no price the market could trade at, 52425ba7);
the venue now agrees: it matches no working order against it and keeps the last sane bid and ask as
the reference of the orders arriving after it. Nautilus refuses a crossed book as an integrity error
and hftbacktest's depth clears the side a newer level crosses, so neither trades through a cross.
"""

from __future__ import annotations

import pytest

from tradebus.engine.messages import Liquidity, OrderSide, OrderStatus, OrderType
from tradebus.execution.config import VenueConfig

from .conftest import build_stack, quote

BUY, SELL = OrderSide.BUY, OrderSide.SELL


@pytest.mark.parametrize(("bid", "ask"), [(110.0, 99.0), (99.5, 99.5)])
def test_a_resting_limit_does_not_fill_against_a_crossed_or_locked_quote(bid: float, ask: float) -> None:
    s = build_stack(venue=VenueConfig(fill_on="quotes"))
    s.feed_quote(quote(1_000, 99.9, 100.1))
    buy = s.submit(BUY, 1.0, OrderType.LIMIT, price=100.0)  # below the ask 100.1: rests
    s.feed_quote(quote(1_001, 99.9, 100.1))
    assert s.orders.order(buy).status == OrderStatus.ACCEPTED
    s.feed_quote(quote(1_002, bid, ask))  # its ask at or below the limit: filled before
    assert s.fills() == []
    s.feed_quote(quote(1_003, 99.6, 99.8))  # sane again: the ask 99.8 reaches the limit 100.0
    (fill,) = s.fills(buy)
    assert (fill.last_px, fill.liquidity, fill.ts_event) == (100.0, Liquidity.MAKER, 1_003)


def test_market_orders_do_not_fill_at_a_crossed_quote_but_at_the_next_sane_one() -> None:
    s = build_stack(venue=VenueConfig(fill_on="quotes"))
    s.feed_quote(quote(1_000, 99.9, 100.1))
    buy = s.submit(BUY, 1.0)
    sell = s.submit(SELL, 1.0)
    s.feed_quote(quote(1_001, 110.0, 99.0))  # they arrive here: were filled, the buy at 99.0, the sell at 110.0
    assert s.fills() == []
    s.feed_quote(quote(1_002, 99.6, 99.8))
    assert [(f.last_px, f.liquidity, f.ts_event) for f in s.fills(buy)] == [(99.8, Liquidity.TAKER, 1_002)]
    assert [(f.last_px, f.liquidity, f.ts_event) for f in s.fills(sell)] == [(99.6, Liquidity.TAKER, 1_002)]


def test_a_post_only_limit_arriving_after_a_crossed_quote_is_judged_against_the_last_sane_ask() -> None:
    s = build_stack(venue=VenueConfig(fill_on="quotes"))
    s.feed_quote(quote(1_000, 99.9, 100.1))
    s.feed_quote(quote(1_001, 110.0, 99.0))  # crossed: not the venue's touch
    buy = s.submit(BUY, 1.0, OrderType.LIMIT, price=100.0, post_only=True)
    # it arrives at the locked quote: below the last sane ask 100.1, it rests (was rejected: at or above the
    # crossed ask 99.0, it would have taken)
    s.feed_quote(quote(1_002, 109.0, 109.0))
    assert s.fills() == [] and s.orders.order(buy).status == OrderStatus.ACCEPTED
    s.feed_quote(quote(1_003, 99.6, 99.8))
    assert [(f.last_px, f.liquidity) for f in s.fills(buy)] == [(100.0, Liquidity.MAKER)]
