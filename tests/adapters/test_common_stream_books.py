"""StreamBooks (in-stream snapshots, resync by resubscribing), level arrays, batch trade de-duplication."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from tradebus.adapters.bybit.parse import BybitParser
from tradebus.adapters.bybit.sync import BybitRule
from tradebus.dedup import TradeDeduper
from tradebus.adapters.common.parsing import EMPTY_LEVELS, level_array
from tradebus.adapters.common.stream_books import StreamBooks
from tradebus.engine.messages import BookDelta, BookResynced, BookSnapshot, Quote
from tradebus.errors import ParseError

IID = "X.BYBIT"
KEY = "orderbook.50.X"


def snap(u: int, bid: float = 99.0) -> BookSnapshot:
    return BookSnapshot(IID, u, u, np.array([[bid, 1.0]]), np.array([[101.0, 1.0]]), u)


def delta(u: int, bid: float = 98.0) -> BookDelta:
    return BookDelta(IID, u, u, np.array([[bid, 1.0]]), EMPTY_LEVELS, u, u, u - 1)


def test_gap_resubscribes_drops_updates_until_the_in_stream_snapshot() -> None:
    async def scenario() -> tuple[list[str], list, StreamBooks]:
        asked: list[str] = []
        books: StreamBooks

        async def resubscribe(key: str) -> None:
            asked.append(key)

        books = StreamBooks(BybitRule, resubscribe)
        sync = books.open(KEY, IID)
        out = books.on_snapshot(KEY, sync, snap(10))
        out += books.on_delta(KEY, sync, delta(12))  # u=11 lost
        await asyncio.sleep(0)  # the resync task runs the requester
        out += books.on_delta(KEY, sync, delta(13))  # before the fresh snapshot: contained in it, dropped
        out += books.on_snapshot(KEY, sync, snap(13, bid=97.0))
        await books.close()
        return asked, out, books

    asked, out, books = asyncio.run(scenario())
    assert asked == [KEY]
    assert [type(m) for m in out] == [BookSnapshot, BookSnapshot, BookResynced]
    # stamped with the fresh snapshot's receive time (a replay's clock stands there), not the clock's
    assert "expected u=11" in out[2].reason and out[2].ts_init == out[1].ts_init == 13
    assert books.dropped == 1 and [k for k, _ in books.resync_requests] == [KEY]
    assert books.syncs[KEY].book.bids().tolist() == [[97.0, 1.0]]


def test_invalidated_books_wait_for_the_resubscription_without_asking() -> None:
    asked: list[str] = []

    async def resubscribe(key: str) -> None:
        asked.append(key)

    async def scenario() -> list:
        books = StreamBooks(BybitRule, resubscribe)
        sync = books.open(KEY, IID)
        books.on_snapshot(KEY, sync, snap(10))
        books.invalidate("connection lost (test)")
        await asyncio.sleep(0)
        out = books.on_snapshot(KEY, sync, snap(40))
        await books.close()
        return out

    out = asyncio.run(scenario())
    assert asked == []
    assert [type(m) for m in out] == [BookSnapshot, BookResynced] and out[1].reason == "connection lost (test)"


def test_lost_message_of_a_synced_book_resyncs_it() -> None:
    books = StreamBooks(BybitRule)
    sync = books.open(KEY, IID)
    books.on_snapshot(KEY, sync, snap(10))
    books.lost(KEY, "undecodable book message")
    assert not books.in_sync(KEY) and books.resync_requests == [(KEY, "undecodable book message")]
    books.lost(KEY, "again")  # already waiting: not asked twice
    assert len(books.resync_requests) == 1


def test_level_array_drops_extra_columns_and_names_bad_rows() -> None:
    arr = level_array([[1.5, 2.0, 0.0, 3.0], [1.4, 0.0, 0.0, 1.0]], "bids")
    assert arr.tolist() == [[1.5, 2.0], [1.4, 0.0]] and arr.flags.c_contiguous
    assert level_array([], "bids") is EMPTY_LEVELS
    with pytest.raises(ParseError, match=r"^asks\[1\]: \[2.0\]: expected \[price, size"):
        level_array([[1.0, 1.0], [2.0]], "asks")
    with pytest.raises(ParseError, match=r"^asks\[0\]: \[-1.0, 1.0\]: expected price > 0"):
        level_array([[-1.0, 1.0]], "asks")


def test_first_seen_matches_seen_one_by_one() -> None:
    batch = TradeDeduper(3)
    single = TradeDeduper(3)
    for keys in (["a"], ["b", "c"], ["c", "d"], ["e", "e"], ["a"], ["f", "g"]):
        flags = batch.first_seen(keys)
        expected = [not single.seen(k) for k in keys]
        assert (flags or [True] * len(keys)) == expected
        assert len(batch) == len(single)


def test_frame_whose_first_topic_key_is_nested_takes_the_general_path() -> None:
    parser = BybitParser("linear")
    trade = '{"T":1,"s":"X","S":"Buy","v":"1","p":"2","i":"%s"}'
    parser.parse_frame('{"topic":"publicTrade.X","type":"snapshot","ts":1,"data":[%s]}' % (trade % "a"), 1)
    nested = '{"x":{"topic":"publicTrade.X"},"topic":"publicTrade.Y","ts":1,"data":[%s]}' % (trade % "b")
    (msg,) = parser.parse_frame(nested, 2)
    assert msg.instrument_id == "Y-LINEAR.BYBIT" and msg.trade_id == "b"


def test_a_quoting_book_quotes_each_change_of_its_top_once_across_in_stream_snapshots_and_a_resync() -> None:
    """Bybit orderbook.50 as its instrument's only quotes (57c1c907): nothing before the first snapshot, a Quote
    for a change of the top and none for a deeper level, none for a snapshot resent mid-stream with the same top
    (Bybit resends them), one for a snapshot with another top, none while a gap waits, one at the resync."""
    books = StreamBooks(BybitRule)
    books.quote_keys.add(KEY)
    sync = books.open(KEY, IID)

    def quotes(out: list) -> list[tuple[int, float, float, float, float]]:
        return [(m.ts_event, m.bid_price, m.bid_size, m.ask_price, m.ask_size) for m in out if isinstance(m, Quote)]

    def levels(*rows: tuple[float, float]) -> np.ndarray:
        return np.array(rows, dtype=np.float64).reshape(-1, 2)

    def book(u: int, bids: np.ndarray, asks: np.ndarray) -> BookSnapshot:
        return BookSnapshot(IID, u, u, bids, asks, u)

    def update(u: int, bids: np.ndarray = EMPTY_LEVELS, asks: np.ndarray = EMPTY_LEVELS) -> BookDelta:
        return BookDelta(IID, u, u, bids, asks, u, u, u - 1)

    assert quotes(books.on_delta(KEY, sync, update(5, levels((99, 1))))) == []
    two = levels((101, 1), (102, 2))
    assert quotes(books.on_snapshot(KEY, sync, book(10, levels((99, 1), (98, 2)), two))) == [(10, 99, 1, 101, 1)]
    assert quotes(books.on_delta(KEY, sync, update(11, levels((97, 5))))) == []
    assert quotes(books.on_delta(KEY, sync, update(12, levels((99, 3))))) == [(12, 99, 3, 101, 1)]
    assert quotes(books.on_delta(KEY, sync, update(13, asks=levels((102, 0))))) == []
    assert quotes(books.on_snapshot(KEY, sync, book(20, levels((99, 3), (98, 2)), levels((101, 1), (103, 2))))) == []
    assert quotes(books.on_snapshot(KEY, sync, book(30, levels((99.5, 1), (99, 3)), two))) == [(30, 99.5, 1, 101, 1)]
    assert quotes(books.on_delta(KEY, sync, update(31, levels((99.5, 0))))) == [(31, 99, 3, 101, 1)]
    assert quotes(books.on_delta(KEY, sync, update(40, levels((99.7, 1))))) == []  # u=32 lost: a gap
    assert not sync.synced
    assert quotes(books.on_snapshot(KEY, sync, book(41, levels((99, 3)), two))) == [(41, 99, 3, 101, 1)]
    assert quotes(books.on_delta(KEY, sync, update(42, levels((99, 3))))) == []
