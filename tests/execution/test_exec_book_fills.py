"""``fill_on: book``: book walk, queue positions (risk-averse and probabilistic), latency, no lookahead.

Expected numbers are derived by hand in the comments (queue formulas: hftbacktest's
``RiskAverseQueueModel`` and ``ProbQueueModel`` with ``PowerProbQueueFunc``).
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
import scipy.stats

from tradebus.data.catalog import BOOK_SNAPSHOT, Catalog, schema_for
from tradebus.data.replay import Replay, ReplaySource
from tradebus.engine.messages import (
    BookDelta,
    BookSnapshot,
    CancelOrder,
    Liquidity,
    ModifyOrder,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderRejected,
    OrderSide,
    OrderStatus,
    OrderTriggered,
    OrderType,
    TimeInForce,
    Trade,
)
from tradebus.errors import ConfigError, DataError
from tradebus.execution.book_matching import BookVenue, LatencyModel
from tradebus.execution.config import BookFillConfig, VenueConfig

from .conftest import IID, Stack, build_stack

BUY, SELL = OrderSide.BUY, OrderSide.SELL
LIMIT = OrderType.LIMIT
MS = 1_000_000


def _levels(*pairs: tuple[float, float]) -> np.ndarray:
    return np.asarray(pairs, dtype=np.float64).reshape(-1, 2)


def _stack(**book: object) -> Stack:
    s = build_stack(venue=VenueConfig(fill_on="book", book=BookFillConfig(**book)), tick_size=0.1, lot_size=0.1)
    assert isinstance(s.venue, BookVenue)
    _book(s, 1 * MS, bids=((99.9, 5.0), (99.8, 3.0)), asks=((100.0, 1.0), (100.1, 2.0), (100.2, 5.0)), snapshot=True)
    return s


def _book(s: Stack, ts: int, bids: tuple = (), asks: tuple = (), snapshot: bool = False) -> None:
    s.clock.advance_to(ts)
    cls = BookSnapshot if snapshot else BookDelta
    msg = cls(IID, ts, ts, _levels(*bids), _levels(*asks))
    s.venue.on_book(msg)  # type: ignore[attr-defined]


def _trade(s: Stack, ts: int, price: float, size: float, aggressor: int) -> None:
    s.clock.advance_to(ts)
    s.engine.on_trade(Trade(IID, ts, ts, price, size, aggressor, f"t{ts}"))


def _fills(s: Stack, coid: str) -> list[tuple[float, float, Liquidity]]:
    return [(round(f.last_qty, 9), f.last_px, f.liquidity) for f in s.fills(coid)]


# ------------------------------------------------------------------------ book walk


def test_market_order_walks_the_book_level_by_level_at_vwap() -> None:
    s = _stack()
    coid = s.submit(BUY, 2.5)
    _book(s, 2 * MS)  # the next event after the order's arrival
    # 1.0 @ 100.0 then 1.5 @ 100.1: VWAP (100.0 + 1.5 * 100.1) / 2.5 = 100.06
    assert _fills(s, coid) == [(1.0, 100.0, Liquidity.TAKER), (1.5, 100.1, Liquidity.TAKER)]
    order = s.orders.order(coid)
    assert order.status == OrderStatus.FILLED and order.avg_px == pytest.approx(100.06)


def test_market_order_larger_than_the_visible_book_fills_the_depth_and_cancels_the_rest() -> None:
    s = _stack()
    coid = s.submit(BUY, 10.0)
    _book(s, 2 * MS)
    assert [q for q, _, _ in _fills(s, coid)] == [1.0, 2.0, 5.0]
    order = s.orders.order(coid)
    assert order.status == OrderStatus.CANCELED and order.filled_qty == pytest.approx(8.0)
    assert "visible depth exhausted" in s.of_type(OrderCanceled)[0].reason


def test_the_last_level_of_a_walk_fills_what_is_left_on_the_lot_grid_not_the_float_remainder() -> None:
    """Sell 0.3 into bids of 0.1 @ 99.9, 0.1 @ 99.8 and 5.0 @ 99.7 (lot 0.1): 0.1 at each price. The
    remainder 0.3 - 0.1 - 0.1 is 0.09999999999999998 in floats, the quantity of the last fill (and of its
    fills.csv row) before; the fills are compared exactly, not rounded as ``_fills`` rounds them."""
    s = _stack()
    _book(s, 2 * MS, bids=((99.9, 0.1), (99.8, 0.1), (99.7, 5.0)), snapshot=True)
    coid = s.submit(SELL, 0.3)
    _book(s, 3 * MS)
    assert [(f.last_qty, f.last_px) for f in s.fills(coid)] == [(0.1, 99.9), (0.1, 99.8), (0.1, 99.7)]
    assert s.orders.order(coid).status == OrderStatus.FILLED


def test_beyond_depth_last_level_fills_the_rest_at_the_last_price() -> None:
    s = _stack(beyond_depth="last_level")
    coid = s.submit(SELL, 10.0)
    _book(s, 2 * MS)
    assert _fills(s, coid) == [(5.0, 99.9, Liquidity.TAKER), (3.0, 99.8, Liquidity.TAKER), (2.0, 99.8, Liquidity.TAKER)]


def test_marketable_limit_takes_up_to_its_price_then_rests_the_rest() -> None:
    s = _stack()
    coid = s.submit(BUY, 5.0, LIMIT, price=100.1)
    _book(s, 2 * MS)
    assert _fills(s, coid) == [(1.0, 100.0, Liquidity.TAKER), (2.0, 100.1, Liquidity.TAKER)]
    assert s.orders.order(coid).status == OrderStatus.PARTIALLY_FILLED
    # It now rests at 100.1 (the level it emptied; nothing ahead): a sell trade there fills it as maker.
    _trade(s, 3 * MS, 100.1, 0.7, -1)
    assert _fills(s, coid)[-1] == (0.7, 100.1, Liquidity.MAKER)


def test_fok_short_of_visible_depth_expires_without_a_fill_and_ioc_keeps_what_it_got() -> None:
    s = _stack()
    fok = s.submit(BUY, 4.0, LIMIT, price=100.1, tif=TimeInForce.FOK)
    ioc = s.submit(BUY, 4.0, LIMIT, price=100.1, tif=TimeInForce.IOC)
    _book(s, 2 * MS)
    assert s.fills(fok) == [] and s.orders.order(fok).status == OrderStatus.EXPIRED
    assert sum(q for q, _, _ in _fills(s, ioc)) == pytest.approx(3.0)
    assert s.orders.order(ioc).status == OrderStatus.EXPIRED


def test_the_venue_takes_its_own_fills_off_the_book_until_the_next_update() -> None:
    s = _stack()
    first = s.submit(BUY, 1.0)
    _book(s, 2 * MS)
    second = s.submit(BUY, 1.0)
    _book(s, 3 * MS)
    assert _fills(s, first) == [(1.0, 100.0, Liquidity.TAKER)]
    assert _fills(s, second) == [(1.0, 100.1, Liquidity.TAKER)]  # 100.0 was taken by the first


def test_post_only_that_would_cross_is_rejected() -> None:
    s = _stack()
    coid = s.submit(BUY, 1.0, LIMIT, price=100.0, post_only=True)
    _book(s, 2 * MS)
    assert s.fills(coid) == [] and "post_only" in s.of_type(OrderRejected)[0].reason


def test_post_only_arriving_after_a_market_order_emptied_the_best_ask_rests_there() -> None:
    """A market buy takes the whole 100.0 ask; a post-only bid at 100.0 arriving right after it
    (same data event) meets 100.1 as the best ask: it rests. It was rejected, "would take
    liquidity at 100.0", against the best ask from before the market order's fill."""
    s = _stack()
    market = s.submit(BUY, 1.0)
    bid = s.submit(BUY, 0.5, LIMIT, price=100.0, post_only=True)
    _book(s, 2 * MS)
    assert _fills(s, market) == [(1.0, 100.0, Liquidity.TAKER)]
    assert s.of_type(OrderRejected) == [] and s.orders.order(bid).status == OrderStatus.ACCEPTED
    _trade(s, 3 * MS, 100.0, 0.5, -1)  # nothing ahead of it at 100.0 on the venue's book
    assert _fills(s, bid) == [(0.5, 100.0, Liquidity.MAKER)]


def test_post_only_modified_to_cross_keeps_its_price_and_never_takes() -> None:
    """A post-only bid at 99.9 moved to 100.1 would take the 100.0 ask: the amend is ignored."""
    s = _stack()
    coid = s.submit(BUY, 1.0, LIMIT, price=99.9, post_only=True)
    _book(s, 2 * MS)
    s.engine.modify(ModifyOrder("s", IID, coid, 2 * MS, 2 * MS, price=100.1))
    _book(s, 3 * MS)
    assert s.fills(coid) == [] and s.orders.order(coid).price == 99.9
    assert s.orders.order(coid).status == OrderStatus.ACCEPTED


@pytest.mark.parametrize(
    ("change", "reason"), [({"trigger_price": -1.0}, "bad trigger price -1.0"), ({"price": 0.0}, "bad limit price 0.0")]
)
def test_a_modify_to_an_impossible_stop_price_is_rejected_and_the_stop_keeps_its_prices(
    change: dict[str, float], reason: str
) -> None:
    """A buy stop-limit (trigger 100.5, limit 100.6) modified at the venue to a trigger of -1.0
    or a limit of 0.0 is rejected as the bar/trade venue does ("bad trigger price", "bad limit
    price"), and still triggers at 100.5 only. (Before: the trigger became -1.0 and the next
    trade, at 100.0, triggered it; a limit of 0.0 was taken.)"""
    from tradebus.engine.messages import OrderModifyRejected

    s = _stack()
    rejected: list[OrderModifyRejected] = []
    s.bus.subscribe(OrderModifyRejected, rejected.append)
    coid = s.submit(BUY, 1.0, OrderType.STOP_LIMIT, price=100.6, trigger=100.5)
    _book(s, 2 * MS)
    s.venue.modify(s.orders.order(coid), ModifyOrder("s", IID, coid, 2 * MS, 2 * MS, **change))
    _book(s, 3 * MS)
    assert [e.reason for e in rejected] == [reason]
    _trade(s, 4 * MS, 100.0, 1.0, +1)
    assert s.of_type(OrderTriggered) == [] and s.orders.order(coid).status == OrderStatus.ACCEPTED
    _trade(s, 5 * MS, 100.5, 1.0, +1)
    assert [e.client_order_id for e in s.of_type(OrderTriggered)] == [coid]
    assert sum(q for q, _, _ in _fills(s, coid)) == pytest.approx(1.0)


def test_post_only_stop_limit_that_would_take_at_its_trigger_expires() -> None:
    s = _stack()
    coid = s.submit(BUY, 1.0, OrderType.STOP_LIMIT, price=100.1, trigger=100.0, post_only=True)
    _book(s, 2 * MS)
    _trade(s, 3 * MS, 100.0, 1.0, +1)  # triggers; the 100.0 and 100.1 asks are within its limit
    assert s.fills(coid) == [] and s.orders.order(coid).status == OrderStatus.EXPIRED
    assert "post_only" in s.orders.order(coid).reason


def test_stop_market_triggers_on_a_trade_and_walks_the_book_from_then_on() -> None:
    s = _stack()
    coid = s.submit(BUY, 2.0, OrderType.STOP_MARKET, trigger=100.1)
    _book(s, 2 * MS)
    _trade(s, 3 * MS, 100.0, 1.0, +1)  # below the trigger
    assert s.fills(coid) == []
    _trade(s, 4 * MS, 100.1, 1.0, +1)
    assert _fills(s, coid) == [(1.0, 100.0, Liquidity.TAKER), (1.0, 100.1, Liquidity.TAKER)]


@pytest.mark.parametrize(("trigger", "print_px", "print_qty"), [(99.7, 99.8, 0.1), (99.8, 99.9, 6.0)])
def test_the_print_that_triggers_a_stop_limit_does_not_fill_it(trigger: float, print_px: float, print_qty: float) -> None:
    """A buy stop-limit of 2.0 at 99.9 (asks from 100.0: it rests at 99.9, behind the 5.0 bid
    there). A sell of 0.1 at 99.8 triggers it (trigger 99.7): 2.0 filled at 99.9 as maker, the
    print "passing through" a bid that joined the book after it; a sell of 6.0 at 99.9
    (trigger 99.8) filled 1.0, 6.0 past the 5.0 ahead. Neither fills now; the next sell at 99.8
    prints through the resting bid and fills it whole."""
    s = _stack()
    coid = s.submit(BUY, 2.0, OrderType.STOP_LIMIT, price=99.9, trigger=trigger)
    _book(s, 2 * MS)
    _trade(s, 3 * MS, print_px, print_qty, -1)
    assert [e.client_order_id for e in s.of_type(OrderTriggered)] == [coid]
    assert s.fills(coid) == []
    _trade(s, 4 * MS, 99.8, 0.1, -1)
    assert _fills(s, coid) == [(2.0, 99.9, Liquidity.MAKER)]


# ------------------------------------------------------------------------ queues


def _queued(model: str, power: float = 1.0) -> tuple[Stack, str]:
    """A bid at 99.7 (level 4.0 ahead), then the level grows to 10.0 and drops to 5.0 by a cancel."""
    s = _stack(queue_model=model, queue_power=power)
    _book(s, 2 * MS, bids=((99.7, 4.0),))
    coid = s.submit(BUY, 1.0, LIMIT, price=99.7)
    _book(s, 3 * MS, bids=((99.7, 10.0),))  # arrival at 0 latency: handled before this; 6.0 joins behind
    _book(s, 4 * MS, bids=((99.7, 5.0),))  # 5.0 canceled
    return s, coid


def test_risk_averse_queue_ignores_cancels_and_fills_only_past_the_queue() -> None:
    s, coid = _queued("risk_averse")
    # front = min(4.0, 5.0) = 4.0; a 3.0 sell trade leaves 1.0 ahead: no fill.
    _trade(s, 5 * MS, 99.7, 3.0, -1)
    assert s.fills(coid) == []
    # A 1.6 trade: front = -0.6 -> 0.6 filled as maker at the limit.
    _trade(s, 6 * MS, 99.7, 1.6, -1)
    assert _fills(s, coid) == [(0.6, 99.7, Liquidity.MAKER)]


def test_probabilistic_queue_advances_by_cancels_ahead() -> None:
    s, coid = _queued("prob_power", 1.0)
    # chg = 5, front = 4, back = 10 - 4 = 6, p = 6 / (6 + 4) = 0.6:
    # front = 4 - 0.4 * 5 + min(6 - 0.6 * 5, 0) = 2.0. A 3.0 trade: front = -1.0 -> 1.0 filled.
    _trade(s, 5 * MS, 99.7, 3.0, -1)
    assert _fills(s, coid) == [(1.0, 99.7, Liquidity.MAKER)]


def test_prob_power_two_weighs_the_back_more() -> None:
    s, coid = _queued("prob_power", 2.0)
    # p = 36 / (36 + 16) = 0.6923; front = 4 - 0.3077 * 5 = 2.4615. A 3.0 trade: -0.5385 -> 0.5 (lot 0.1).
    _trade(s, 5 * MS, 99.7, 3.0, -1)
    assert _fills(s, coid) == [(0.5, 99.7, Liquidity.MAKER)]


@pytest.mark.parametrize("model", ["risk_averse", "prob_power", "prob_log"])
def test_two_own_bids_at_one_price_share_a_trade_in_time_priority(model: str) -> None:
    """Bids A then B of 1.0 at 99.7, each joining behind the level's 4.0 (own orders are not in
    the data). A sell of 4.5 passes the 4.0 ahead: 0.5 of A fills and nothing of B, whose queue
    ahead is the 4.0 and A's 1.0 (before: B's queue ignored A and B filled 0.5 too, 1.0 filled
    from a trade 0.5 past the queue). A sell of 1.0 then fills A's last 0.5 and B's first 0.5
    (4.0 + 1.0 ahead of B, 5.5 traded)."""
    s = _stack(queue_model=model)
    _book(s, 2 * MS, bids=((99.7, 4.0),))
    first = s.submit(BUY, 1.0, LIMIT, price=99.7)
    second = s.submit(BUY, 1.0, LIMIT, price=99.7)
    _book(s, 3 * MS)  # both arrive (0 latency), in the order sent
    _trade(s, 4 * MS, 99.7, 4.5, -1)
    assert _fills(s, first) == [(0.5, 99.7, Liquidity.MAKER)]
    assert s.fills(second) == []
    _trade(s, 5 * MS, 99.7, 1.0, -1)
    assert _fills(s, first) == [(0.5, 99.7, Liquidity.MAKER), (0.5, 99.7, Liquidity.MAKER)]
    assert _fills(s, second) == [(0.5, 99.7, Liquidity.MAKER)]


@pytest.mark.parametrize("model", ["prob_power", "risk_averse"])
def test_a_trade_never_fills_a_resting_order_for_more_than_it_printed(model: str) -> None:
    """prob_power n=2: a bid of 1.0 joins 4.0 at 99.7, 1.0 joins behind (5.0), cancels take the
    level to 0.5: chg 4.5, front 4, back 1, p = 1 / (1 + 16) = 1/17, front = 4 - 16/17 * 4.5
    + min(1 - 4.5/17, 0) = -0.2353. A sell of 0.1 then leaves front -0.3353: hftbacktest's
    rounding fills round(3.353) = 3 lots = 0.3, three times what printed; the venue fills 0.1.
    Rounding alone (risk_averse, lot 0.1, nothing ahead): two sells of 0.04 leave front -0.08,
    which rounds to a lot, but neither printed a lot: no fill; a third print of 0.25 fills 0.2
    (0.25 rounded down to lots), not round(3.3) = 0.3."""
    s = _stack(queue_model=model, queue_power=2.0)
    if model == "prob_power":
        _book(s, 2 * MS, bids=((99.7, 4.0),))
        coid = s.submit(BUY, 1.0, LIMIT, price=99.7)
        _book(s, 3 * MS, bids=((99.7, 5.0),))
        _book(s, 4 * MS, bids=((99.7, 0.5),))
        _trade(s, 5 * MS, 99.7, 0.1, -1)
        assert _fills(s, coid) == [(0.1, 99.7, Liquidity.MAKER)]
        return
    coid = s.submit(BUY, 1.0, LIMIT, price=99.6)  # an empty level: nothing ahead
    _book(s, 2 * MS)
    _trade(s, 3 * MS, 99.6, 0.04, -1)
    _trade(s, 4 * MS, 99.6, 0.04, -1)
    assert s.fills(coid) == []
    _trade(s, 5 * MS, 99.6, 0.25, -1)
    assert _fills(s, coid) == [(0.2, 99.6, Liquidity.MAKER)]



@pytest.mark.parametrize(("printed", "filled"), [(1.0, 0.3), (2.0, 1.3), (0.9, 0.2)])
def test_a_half_lot_past_the_queue_rounds_away_from_zero_as_hftbacktest(printed: float, filled: float) -> None:
    """risk_averse, lot 0.1: a bid of 2.0 joins 0.75 at 99.7. A sell of 1.0 leaves front -0.25, 2.5 lots: hftbacktest's
    ``is_filled`` fills ``(-front / lot).round()`` lots, Rust's ``f64::round`` taking a half away from zero: 3 lots,
    0.3 (Python's ``round`` gave the even 2: 0.2). A sell of 2.0: 12.5 lots, 1.3 (1.2 before). A sell of 0.9: 1.5
    lots past the queue, 0.2, already so. The print caps none of them (its whole lots: 10, 20, 9)."""
    s = _stack(queue_model="risk_averse")
    _book(s, 2 * MS, bids=((99.7, 0.75),))
    coid = s.submit(BUY, 2.0, LIMIT, price=99.7)
    _book(s, 3 * MS)
    _trade(s, 4 * MS, 99.7, printed, -1)
    assert [(f.last_qty, f.last_px) for f in s.fills(coid)] == [(filled, 99.7)]


def test_one_trade_shares_what_it_printed_among_own_orders_at_its_price() -> None:
    """prob_power n=2: bids A of 0.2 then B of 1.0 join 4.0 at 99.7 (each with 4.0 ahead), 1.0
    joins behind, cancels take the level to 0.5: each front = -0.2353 as above. A sell of 0.3:
    A's front -0.5353 rounds to 0.5, capped by its 0.2 left; B's front -0.5353 + 0.2 = -0.3353
    rounds to 0.3, but only 0.3 - 0.2 = 0.1 of the print is left for it (before: 0.2 + 0.3 = 0.5
    filled from a print of 0.3)."""
    s = _stack(queue_model="prob_power", queue_power=2.0)
    _book(s, 2 * MS, bids=((99.7, 4.0),))
    first = s.submit(BUY, 0.2, LIMIT, price=99.7)
    second = s.submit(BUY, 1.0, LIMIT, price=99.7)
    _book(s, 3 * MS, bids=((99.7, 5.0),))
    _book(s, 4 * MS, bids=((99.7, 0.5),))
    _trade(s, 5 * MS, 99.7, 0.3, -1)
    assert _fills(s, first) == [(0.2, 99.7, Liquidity.MAKER)]
    assert _fills(s, second) == [(0.1, 99.7, Liquidity.MAKER)]


def test_a_print_of_029_past_the_queue_fills_a_resting_bid_of_029_at_a_lot_of_1e8() -> None:
    """Nothing ahead at 99.6; a sell of 0.29 prints there: the bid of 0.29 fills whole (0.29 / 1e-8
    is 28999999.999999996 lots in floats: before, 0.28999999 filled and a lot stayed open)."""
    s = build_stack(venue=VenueConfig(fill_on="book", book=BookFillConfig()), tick_size=0.1, lot_size=1e-8)
    _book(s, 1 * MS, bids=((99.9, 5.0),), asks=((100.0, 1.0),), snapshot=True)
    coid = s.submit(BUY, 0.29, LIMIT, price=99.6)
    _book(s, 2 * MS)
    _trade(s, 3 * MS, 99.6, 0.29, -1)
    assert [(f.last_qty, f.last_px) for f in s.fills(coid)] == [(0.29, 99.6)]
    assert s.orders.get(coid).status is OrderStatus.FILLED


def test_buy_side_trades_do_not_reach_a_resting_bid_but_a_trade_through_fills_it() -> None:
    s = _stack()
    coid = s.submit(BUY, 1.0, LIMIT, price=99.8)
    _book(s, 2 * MS)
    _trade(s, 3 * MS, 99.8, 50.0, +1)  # buyer-initiated: hits asks, not our bid
    assert s.fills(coid) == []
    _trade(s, 4 * MS, 99.7, 0.1, -1)  # a sell printed below our bid: it traded through us
    assert _fills(s, coid) == [(1.0, 99.8, Liquidity.MAKER)]


def test_resting_order_fills_when_the_opposite_best_moves_through_it() -> None:
    s = _stack()
    coid = s.submit(SELL, 1.0, LIMIT, price=100.1)
    _book(s, 2 * MS)
    _book(s, 3 * MS, bids=((100.1, 2.0),), asks=((100.0, 0.0), (100.1, 0.0)))  # the bid moved up through the asks
    assert _fills(s, coid) == [(1.0, 100.1, Liquidity.MAKER)]


@pytest.mark.parametrize("through", ["trade", "book"])
def test_a_print_through_several_own_asks_fills_the_best_priced_first(through: str) -> None:
    """Long 1.0, then reduce-only asks placed at 100.4, then at 100.3. A buy printing at 100.5
    (or the best bid moving to 100.5) meets the 100.3 ask first, as a venue matches the lowest
    ask first: it fills, and the 100.4 ask has no position left to reduce. (Before: the asks
    filled in the order placed: 100.4 filled, 100.3 canceled, the position sold 0.1 too high.)"""
    s = _stack()
    s.submit(BUY, 1.0)
    _book(s, 2 * MS)  # takes the 1.0 at 100.0
    high = s.submit(SELL, 1.0, LIMIT, price=100.4, reduce_only=True)
    low = s.submit(SELL, 1.0, LIMIT, price=100.3, reduce_only=True)
    _book(s, 3 * MS)
    if through == "trade":
        _trade(s, 4 * MS, 100.5, 3.0, +1)
    else:
        _book(s, 4 * MS, bids=((100.5, 3.0),), asks=((100.1, 0.0), (100.2, 0.0)))
    assert _fills(s, low) == [(1.0, 100.3, Liquidity.MAKER)]
    assert s.fills(high) == [] and s.orders.order(high).status == OrderStatus.CANCELED


def test_cancel_takes_the_order_out_of_its_queue() -> None:
    s = _stack()
    coid = s.submit(BUY, 1.0, LIMIT, price=99.9)
    _book(s, 2 * MS)
    now = s.clock.now_ns()
    s.engine.cancel(CancelOrder("s", IID, coid, now, now))
    _book(s, 3 * MS)
    _trade(s, 4 * MS, 99.8, 100.0, -1)
    assert s.fills(coid) == [] and s.orders.order(coid).status == OrderStatus.CANCELED


def test_a_resync_snapshot_read_in_two_batches_keeps_the_queue_position(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A sell resting at 100.1 behind 2.0, then the same book re-sent as a snapshot at 3 ms.

    Read 7 rows a batch, the second snapshot's bids and asks fall in two batches: its bids
    alone must not empty the asks (and put the order at the head of the queue).
    """
    rows = []
    for ts, seq in ((1 * MS, 1), (3 * MS, 3)):
        rows += [(ts, ts, seq, 1, 99.9, 5.0, BOOK_SNAPSHOT), (ts, ts, seq, 1, 99.8, 3.0, BOOK_SNAPSHOT)]
        rows += [(ts, ts, seq, -1, 100.0, 1.0, BOOK_SNAPSHOT), (ts, ts, seq, -1, 100.1, 2.0, BOOK_SNAPSHOT)]
    rows.insert(4, (2 * MS, 2 * MS, 2, 1, 99.7, 1.0, 0))
    schema = schema_for("book")
    table = pa.Table.from_arrays([pa.array(c, type=f.type) for c, f in zip(zip(*rows), schema, strict=True)], schema=schema)
    cat = Catalog(tmp_path)
    cat.write(table, "v", "spot", "X", "book", kind="book")
    for batch_rows in (65_536, 7):
        s = build_stack(venue=VenueConfig(fill_on="book"), tick_size=0.1, lot_size=0.1)
        coid = ""
        for msg in Replay([ReplaySource.from_catalog(cat, IID, "v", "spot", "X", "book")], batch_rows=batch_rows):
            s.clock.advance_to(msg.ts_init)
            s.venue.on_book(msg)  # type: ignore[attr-defined]
            coid = coid or s.submit(SELL, 1.0, LIMIT, price=100.1)
        _trade(s, 4 * MS, 100.1, 1.0, +1)  # 1.0 of the 2.0 ahead: no fill
        assert s.fills(coid) == [], batch_rows
        _trade(s, 5 * MS, 100.1, 1.5, +1)
        assert _fills(s, coid) == [(0.5, 100.1, Liquidity.MAKER)], batch_rows


def test_a_book_that_crosses_stops_the_run_naming_the_time_and_sequence(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Book rows: a snapshot (bids 99.9, 99.8; asks 100.0, 100.1) at 1 ms, then at 2 ms (seq 7) a
    bid of 100.3 while the asks at 100.0 and 100.1 stay (a lost delta left them stale): the book
    is crossed. A sell resting at 100.2 was filled there, as if the bid had moved through it, and
    the run exited 0; the venue now refuses the update, naming the instrument, time and sequence."""
    rows = [(1 * MS, 1 * MS, 1, 1, 99.9, 5.0, BOOK_SNAPSHOT), (1 * MS, 1 * MS, 1, 1, 99.8, 3.0, BOOK_SNAPSHOT),
            (1 * MS, 1 * MS, 1, -1, 100.0, 1.0, BOOK_SNAPSHOT), (1 * MS, 1 * MS, 1, -1, 100.1, 2.0, BOOK_SNAPSHOT),
            (2 * MS, 2 * MS, 7, 1, 100.3, 1.0, 0)]
    schema = schema_for("book")
    table = pa.Table.from_arrays([pa.array(c, type=f.type) for c, f in zip(zip(*rows), schema, strict=True)], schema=schema)
    cat = Catalog(tmp_path)
    cat.write(table, "v", "spot", "X", "book", kind="book")
    s = build_stack(venue=VenueConfig(fill_on="book"), tick_size=0.1, lot_size=0.1)
    msgs = list(Replay([ReplaySource.from_catalog(cat, IID, "v", "spot", "X", "book")]))
    s.clock.advance_to(1 * MS)
    s.venue.on_book(msgs[0])  # type: ignore[attr-defined]
    coid = s.submit(SELL, 1.0, LIMIT, price=100.2)
    s.clock.advance_to(2 * MS)
    with pytest.raises(DataError, match=r"BTCUSDT.BINANCE book crossed .* ts_init 2000000 \(1970-01-01T00:00:00.002000000Z\) "
                                        r"sequence 7: best bid 100.3 >= best ask 100.0"):
        s.venue.on_book(msgs[1])  # type: ignore[attr-defined]
    assert s.fills(coid) == []


def test_a_book_level_off_the_tick_grid_stops_the_run_naming_the_price_and_tick() -> None:
    """Book data of a 0.05 tick on an instrument of tick 0.1: bids 99.95 (2.0), 99.9 (3.0); asks
    100.05 (1.0), 100.1 (4.0). Rounded to ticks, 99.95 became a bid at 100.0 and 100.05's 1.0 was
    overwritten by 100.1's 4.0: a market sell of 2.0 filled at 100.0, above the book's best bid,
    and a market buy of 5.0 filled 4.0 at 100.1, the rest canceled. The venue now refuses the
    level, naming it; a price on the grid up to float noise (750.66163 on a tick of 1e-5, 75066162.99999999
    ticks) passes."""
    s = build_stack(venue=VenueConfig(fill_on="book"), tick_size=0.1, lot_size=0.1)
    s.clock.advance_to(1 * MS)
    msg = BookSnapshot(IID, 1 * MS, 1 * MS, _levels((99.95, 2.0), (99.9, 3.0)), _levels((100.05, 1.0), (100.1, 4.0)), 5)
    with pytest.raises(DataError, match=r"BTCUSDT.BINANCE book level at price 99.95 in the BookSnapshot at ts_init 1000000 "
                                        r"\(1970-01-01T00:00:00.001000000Z\) sequence 5 is not a multiple of the "
                                        r"instrument's tick_size 0.1"):
        s.venue.on_book(msg)  # type: ignore[attr-defined]
    s = build_stack(venue=VenueConfig(fill_on="book"), tick_size=1e-5, lot_size=0.1)
    _book(s, 1 * MS, bids=((750.66163, 2.0),), asks=((750.66164, 1.0),), snapshot=True)
    coid = s.submit(SELL, 2.0)
    _book(s, 2 * MS)
    assert _fills(s, coid) == [(2.0, 750.66163, Liquidity.TAKER)]


# ------------------------------------------------------------------------ latency


def test_entry_latency_sets_the_queue_from_the_book_at_arrival_not_at_decision() -> None:
    s = _stack(entry_latency_ns=5 * MS)
    coid = s.submit(BUY, 1.0, LIMIT, price=99.9)  # decided at 1 ms: the level holds 5.0
    _book(s, 2 * MS, bids=((99.9, 1.0),))  # before arrival (6 ms): the level drops to 1.0
    _book(s, 7 * MS, bids=((99.9, 9.0),))  # the first event after arrival; 8.0 joins behind
    _trade(s, 8 * MS, 99.9, 1.5, -1)  # front 1.0 (the level at arrival) -> -0.5: 0.5 filled
    assert _fills(s, coid) == [(0.5, 99.9, Liquidity.MAKER)]
    assert s.of_type(OrderAccepted)[0].ts_event == 6 * MS


def test_an_order_that_expires_before_it_reaches_the_venue_never_fills() -> None:
    s = _stack(entry_latency_ns=5 * MS)
    coid = s.submit(BUY, 1.0)  # decided at 1 ms, arrives at 6 ms
    s.venue.expire_at(coid, 3 * MS)
    for t in range(2, 10):
        _book(s, t * MS)
    assert s.fills(coid) == [] and s.of_type(OrderAccepted) == []
    assert s.orders.order(coid).status == OrderStatus.EXPIRED


def test_ack_latency_delays_the_answers_to_the_strategy() -> None:
    s = _stack(entry_latency_ns=1 * MS, ack_latency_ns=3 * MS)
    coid = s.submit(BUY, 1.0)
    _book(s, 3 * MS)  # arrival at 2 ms: filled at 2 ms on the venue
    assert s.of_type(OrderAccepted) == [] and s.fills(coid) == []
    _book(s, 5 * MS - 1)  # due at 5 ms: not before
    assert s.fills(coid) == []
    s.clock.advance_to(5 * MS)  # an alert at the due time: heard then, with no data needed
    (fill,) = s.fills(coid)
    assert fill.ts_event == 2 * MS and fill.last_px == 100.0


def test_sampled_ack_latencies_deliver_each_answer_after_the_ones_sent_before_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Market orders each accepted then filled at once: with latencies drawn from a wide
    log-normal, a fill must not overtake its order's acceptance (which would be dropped as stale)."""
    rng = np.random.default_rng(1)
    path = tmp_path / "acks.csv"
    path.write_text("\n".join(str(int(x)) for x in rng.lognormal(math.log(2 * MS), 1.0, 200)) + "\n")
    s = build_stack(
        venue=VenueConfig(fill_on="book", book=BookFillConfig(ack_latency_samples=str(path))), tick_size=0.1, lot_size=0.1
    )
    _book(s, 1 * MS, bids=((99.9, 5.0),), asks=((100.0, 100.0),), snapshot=True)
    coids = []
    for t in range(2, 40):
        coids.append(s.submit(BUY, 1.0))
        _book(s, t * MS)
    s.clock.advance_to(10_000 * MS)
    filled = [c for c in coids if s.fills(c)]
    assert len(filled) > 30
    assert {e.client_order_id for e in s.of_type(OrderAccepted)} >= set(filled)
    heard = [e.ts_event for e in s.events if isinstance(e, (OrderAccepted, OrderFilled))]
    assert heard == sorted(heard)


def test_latency_fit_matches_scipy_lognormal_mle_and_sampling_is_seeded(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(7)
    samples = rng.lognormal(math.log(2e6), 0.4, 500)
    mu, sigma = LatencyModel.fit(samples)
    shape, loc, scale = scipy.stats.lognorm.fit(samples, floc=0)
    assert mu == pytest.approx(math.log(scale), rel=1e-9) and sigma == pytest.approx(shape, rel=1e-6)
    path = tmp_path / "acks.csv"
    path.write_text("latency_ns\n" + "\n".join(str(int(x)) for x in samples) + "\n")
    cfg = BookFillConfig(ack_latency_samples=str(path), latency_seed=3)
    a, b = LatencyModel.from_config(cfg, 0), LatencyModel.from_config(cfg, 0)
    draws = [a.ack() for _ in range(2000)]
    assert draws == [b.ack() for _ in range(2000)]
    assert np.median(draws) == pytest.approx(math.exp(mu), rel=0.1)
    path.write_text("1\n2\nabc\n")
    with pytest.raises(ConfigError, match="line 3: 'abc' is not a latency"):
        LatencyModel.from_config(cfg, 0)
    with pytest.raises(ConfigError, match="at least two positive"):
        LatencyModel.fit([1.0, -2.0])


@pytest.mark.parametrize("tif", [TimeInForce.IOC, TimeInForce.FOK])
def test_a_limit_not_marketable_on_arrival_expires_saying_so(tif: TimeInForce) -> None:
    """The best ask is 100.0: an IOC or FOK buy at 99.9 can take nothing (the bar/trade venue's wording)."""
    from tradebus.engine.messages import OrderExpired

    s = _stack()
    coid = s.submit(BUY, 2.0, LIMIT, price=99.9, tif=tif)
    _book(s, 2 * MS)
    assert s.fills(coid) == [] and s.orders.order(coid).status == OrderStatus.EXPIRED
    assert [e.reason for e in s.of_type(OrderExpired)] == [f"{tif}: not marketable on arrival"]


def test_a_resting_bid_filled_by_30_prints_books_every_trade_id_once() -> None:
    """A bid of 3.0 at 99.6 (no queue ahead) met by 30 sells of 0.1 fills 30 times: past the 16 fills an order
    keeps in a tuple, every venue trade id is on the order once and its journaled form lists the 30 sorted."""
    s = _stack()
    coid = s.submit(BUY, 3.0, LIMIT, price=99.6)
    _book(s, 2 * MS)
    for i in range(30):
        _trade(s, (3 + i) * MS, 99.6, 0.1, -1)
    ids = [f.trade_id for f in s.fills(coid)]
    order = s.orders.get(coid)
    assert (len(ids), len(set(ids)), order.status, round(order.filled_qty, 9)) == (30, 30, OrderStatus.FILLED, 3.0)
    assert set(order.trade_ids) == set(ids) and len(order.trade_ids) == 30
    assert order.to_dict()["trade_ids"] == sorted(ids)


def test_a_print_of_03_past_the_queue_fills_03_on_the_lot_grid_not_3_times_01() -> None:
    """Nothing ahead at 99.6, lot 0.1: a sell of 0.3 fills 0.3 of the bid of 1.0 exactly (before:
    3 lots counted as ``0.3 / 0.1`` and built as ``3 * 0.1``, 0.30000000000000004, off the grid),
    then a sell of 0.7 the 0.7 left: the order is filled for 1.0."""
    s = _stack()
    coid = s.submit(BUY, 1.0, LIMIT, price=99.6)
    _book(s, 2 * MS)
    _trade(s, 3 * MS, 99.6, 0.3, -1)
    assert [(f.last_qty, f.last_px) for f in s.fills(coid)] == [(0.3, 99.6)]
    _trade(s, 4 * MS, 99.6, 0.7, -1)
    assert [f.last_qty for f in s.fills(coid)] == [0.3, 0.7]
    assert s.orders.get(coid).status is OrderStatus.FILLED and s.orders.get(coid).filled_qty == 1.0
