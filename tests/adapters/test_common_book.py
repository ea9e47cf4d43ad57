"""OrderBook: sorted-array L2 book kernels."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradebus.adapters.common.book import APPLIED, CROSSED, INVALID, OrderBook, apply_side, first_invalid
from tradebus.errors import BookError


def lv(*rows: tuple[float, float]) -> np.ndarray:
    return np.array(rows, dtype=np.float64).reshape(-1, 2)


def make_book(capacity: int = 4) -> OrderBook:
    book = OrderBook("TEST.VENUE", capacity)
    book.load(lv((99, 1), (100, 2), (98, 3)), lv((102, 1), (101, 2), (103, 3)), last_seq=7)
    return book


def test_load_sorts_bids_descending_and_asks_ascending() -> None:
    book = make_book()
    assert book.bids().tolist() == [[100, 2], [99, 1], [98, 3]]
    assert book.asks().tolist() == [[101, 2], [102, 1], [103, 3]]
    assert book.best_bid() == (100.0, 2.0) and book.best_ask() == (101.0, 2.0)
    assert book.last_seq == 7


def test_load_skips_zero_sizes_and_keeps_last_of_a_repeated_price() -> None:
    book = OrderBook("TEST.VENUE")
    book.load(lv((100, 1), (99, 0), (100, 5)), lv())
    assert book.bids().tolist() == [[100, 5]]
    assert book.n_asks == 0 and np.isnan(book.best_ask()[0])


def test_apply_inserts_updates_and_removes_keeping_order() -> None:
    book = make_book()
    status = book.apply(lv((99.5, 4), (100, 0), (97, 1)), lv((101, 7), (101.5, 1), (103, 0)))
    assert status == APPLIED
    assert book.bids().tolist() == [[99.5, 4], [99, 1], [98, 3], [97, 1]]
    assert book.asks().tolist() == [[101, 7], [101.5, 1], [102, 1]]


def test_removing_an_absent_level_is_a_noop() -> None:
    book = make_book()
    before = (book.bids(), book.asks())
    assert book.apply(lv((50, 0)), lv((500, 0))) == APPLIED
    assert np.array_equal(book.bids(), before[0]) and np.array_equal(book.asks(), before[1])


def test_apply_grows_capacity_when_inserting_many_levels() -> None:
    book = make_book(capacity=4)
    bids = lv(*[(90.0 - i, 1.0) for i in range(50)])
    assert book.apply(bids, lv()) == APPLIED
    assert book.n_bids == 53
    assert np.all(np.diff(book.bids()[:, 0]) < 0)


def test_apply_reports_crossed_book() -> None:
    book = make_book()
    assert book.apply(lv((101, 1)), lv()) == CROSSED
    assert book.crossed()


def test_apply_with_malformed_level_leaves_book_untouched() -> None:
    book = make_book()
    before = (book.bids(), book.asks())
    for bad in (lv((np.nan, 1)), lv((100, -1)), lv((-5, 1)), lv((100, np.inf))):
        assert book.apply(lv((99.5, 1)), bad) == INVALID
        assert np.array_equal(book.bids(), before[0]) and np.array_equal(book.asks(), before[1])


def test_apply_rejects_non_float64_arrays() -> None:
    book = make_book()
    with pytest.raises(BookError, match="float64"):
        book.apply(np.array([[100, 1]], dtype=np.int64), lv())


def test_load_rejects_bad_snapshot_levels() -> None:
    with pytest.raises(BookError, match="bids"):
        OrderBook("TEST.VENUE").load(lv((np.nan, 1)), lv())
    with pytest.raises(BookError, match="shape"):
        OrderBook("TEST.VENUE").load(np.ones((2, 3)), lv())


def test_top_returns_at_most_depth_levels() -> None:
    bids, asks = make_book().top(2)
    assert bids.tolist() == [[100, 2], [99, 1]] and asks.tolist() == [[101, 2], [102, 1]]
    bids, asks = make_book().top(10)
    assert len(bids) == 3 and len(asks) == 3


def test_equals_compares_every_level() -> None:
    a, b = make_book(), make_book(capacity=64)
    assert a.equals(b)
    b.apply(lv((98, 3.5)), lv())
    assert not a.equals(b)


levels_st = st.lists(
    st.tuples(st.integers(1, 40).map(float), st.sampled_from([0.0, 0.5, 1.0, 2.0])), min_size=0, max_size=12
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(levels_st, levels_st), min_size=1, max_size=20))
def test_apply_matches_a_dict_reference_model(batches: list[tuple[list, list]]) -> None:
    book = OrderBook("TEST.VENUE", capacity=2)
    ref_b: dict[float, float] = {}
    ref_a: dict[float, float] = {}
    for bids, asks in batches:
        book.apply(lv(*bids), lv(*[(p + 100.0, q) for p, q in asks]))
        for p, q in bids:
            ref_b.pop(p, None) if q == 0 else ref_b.__setitem__(p, q)
        for p, q in asks:
            ref_a.pop(p + 100.0, None) if q == 0 else ref_a.__setitem__(p + 100.0, q)
    assert book.bids().tolist() == [[p, q] for p, q in sorted(ref_b.items(), reverse=True)]
    assert book.asks().tolist() == [[p, q] for p, q in sorted(ref_a.items())]


def test_kernel_refuses_to_insert_into_a_full_side_instead_of_looping() -> None:
    px = np.array([1.0, 2.0])
    sz = np.array([1.0, 1.0])
    side = np.array([0, 2, 2], dtype=np.int64)
    with pytest.raises(ValueError, match="reserve"):
        apply_side(px, sz, side, lv((3.0, 1.0)), False)


def test_removed_levels_are_reused_and_the_side_stays_sorted() -> None:
    book = OrderBook("TEST.VENUE", capacity=8)
    book.load(lv(*[(float(p), 1.0) for p in range(1, 11)]), lv((20.0, 1.0)))
    book.apply(lv((3.0, 0.0), (5.0, 0.0), (7.0, 0.0)), lv())
    book.apply(lv((4.5, 2.0), (0.5, 2.0), (10.5, 2.0), (6.5, 2.0)), lv())
    prices = book.bids()[:, 0].tolist()
    assert prices == sorted(prices, reverse=True) and len(prices) == 11
    assert prices[0] == 10.5 and prices[-1] == 0.5 and 4.5 in prices and 3.0 not in prices


@pytest.mark.parametrize("read_only", ["bids", "asks", "both"])
def test_apply_accepts_read_only_level_arrays(read_only: str) -> None:
    book = make_book()
    bids, asks = lv((99.5, 4)), lv((101, 0))
    empty = np.empty((0, 2), dtype=np.float64)
    for arr in (bids, asks, empty):
        arr.setflags(write=False)
    if read_only == "bids":
        asks = lv((101, 0))
    elif read_only == "asks":
        bids = lv((99.5, 4))
    assert book.apply(bids, asks) == APPLIED
    assert book.apply(empty, lv((101.5, 2))) == APPLIED
    assert book.bids(2).tolist() == [[100, 2], [99.5, 4]]
    assert book.asks(2).tolist() == [[101.5, 2], [102, 1]]
    bad = lv((np.nan, 1))
    bad.setflags(write=False)
    assert book.apply(empty, bad) == INVALID


def test_first_invalid_names_the_first_bad_row() -> None:
    assert first_invalid(lv((1, 1), (2, 0))) == -1
    assert first_invalid(lv((1, 1), (0, 1), (np.inf, 1))) == 1
    assert first_invalid(lv((1, np.nan))) == 0
