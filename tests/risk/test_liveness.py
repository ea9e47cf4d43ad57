"""BookLiveness: a book that stops changing while its instrument trades is frozen and resynced."""

from __future__ import annotations

import pytest

from tradebus.risk.liveness import BookLiveness
from tradebus.errors import ConfigError

IID = "BTCUSDT.BINANCE"
S = 1_000_000_000


class Book:
    """The feed side of one watched book: in-sync flag and the resyncs asked for."""

    def __init__(self) -> None:
        self.synced = True
        self.resyncs: list[str] = []

    def resync(self, reason: str) -> None:
        self.resyncs.append(reason)
        self.synced = False


def trade(live: BookLiveness, recv_ns: int, iid: str = IID) -> None:
    """A trade received at ``recv_ns``, printed by the venue 40 ms earlier on its own clock (1.7 s behind ours)."""
    live.on_activity(iid, recv_ns, recv_ns - 40_000_000 - 1_700_000_000)


def watched(max_idle: float = 10.0) -> tuple[BookLiveness, Book]:
    live = BookLiveness()
    book = Book()
    live.watch(IID, max_idle, lambda: book.synced, book.resync)
    return live, book


def test_trades_without_a_book_change_for_max_idle_freeze_and_resync_the_book() -> None:
    live, book = watched(10.0)
    live.on_book(IID, snapshot=True)
    for t in range(0, 10):  # a trade every second for 9 s: still within the allowance
        trade(live, t * S)
    assert live.frozen(IID) is None and book.resyncs == []
    trade(live, 10 * S)
    reason = live.frozen(IID)
    assert reason is not None and reason.startswith(f"book frozen: trades/quotes of {IID} for 10.0 s")
    assert book.resyncs == [reason] and live.freezes == {IID: 1}
    trade(live, 11 * S)  # resyncing: not judged again meanwhile
    assert len(book.resyncs) == 1


def test_book_changes_keep_it_alive_however_long_trades_flow() -> None:
    live, book = watched(10.0)
    for t in range(0, 100):
        trade(live, t * S)
        if t % 5 == 0:
            live.on_book(IID, snapshot=False)
    assert live.frozen(IID) is None and book.resyncs == []


def test_a_trade_after_a_long_quiet_spell_starts_the_window_instead_of_freezing() -> None:
    live, book = watched(10.0)
    live.on_book(IID, snapshot=True)
    trade(live, 60 * S)  # first trade in a minute: the book update for it follows
    live.on_book(IID, snapshot=False)
    trade(live, 69 * S)
    trade(live, 78 * S)  # 9 s after the first trade since the last change
    assert live.frozen(IID) is None and book.resyncs == []


def test_after_a_freeze_the_resync_snapshot_alone_does_not_clear_it_a_live_update_does() -> None:
    live, book = watched(1.0)
    trade(live, 0)
    trade(live, 2 * S)
    assert live.frozen(IID) is not None
    book.synced = True  # the resync's snapshot arrived
    live.on_book(IID, snapshot=True)
    assert live.frozen(IID) is not None  # still no proof that updates arrive
    live.on_book(IID, snapshot=False)
    assert live.frozen(IID) is None


def test_a_book_resynced_but_still_without_updates_is_resynced_again() -> None:
    live, book = watched(1.0)
    trade(live, 0)
    trade(live, 1 * S)
    book.synced = True
    live.on_book(IID, snapshot=True)
    trade(live, 2 * S)
    trade(live, 3 * S)
    assert len(book.resyncs) == 2 and live.frozen(IID) is not None


def test_a_book_that_is_not_in_sync_is_not_judged_and_unwatched_instruments_are_ignored() -> None:
    live, book = watched(1.0)
    book.synced = False
    for t in range(10):
        trade(live, t * S)
    assert book.resyncs == [] and live.frozen(IID) is None
    trade(live, 0, "ETHUSDT.BINANCE")
    live.on_book("ETHUSDT.BINANCE", snapshot=False)
    assert live.frozen("ETHUSDT.BINANCE") is None


def test_max_idle_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="max_idle must be > 0"):
        BookLiveness().watch(IID, 0.0, lambda: True, lambda r: None)


def test_a_stalled_reader_does_not_freeze_a_book_whose_updates_wait_behind_the_first_trade_read() -> None:
    """The event loop stalls 15 s after a trade; the next frame read is a trade the venue printed 3 ms
    after the first, the book update sent after it is read next: no freeze, no resync."""
    live, book = watched(10.0)
    live.on_book(IID, snapshot=False)
    live.on_activity(IID, 1 * S, 1 * S - 5_000_000)  # venue times 30 ms behind, 5 ms apart
    live.on_activity(IID, 16 * S, 1 * S - 2_000_000)  # received after the stall, printed 3 ms after
    live.on_activity(IID, 16 * S + 1000, 1 * S)
    assert live.frozen(IID) is None and book.resyncs == [] and live.freezes == {}
    live.on_book(IID, snapshot=False)  # the update waiting behind them
    assert live.frozen(IID) is None


def test_a_frozen_book_read_by_a_stalled_reader_freezes_once_the_venue_printed_max_idle_of_trades() -> None:
    live, book = watched(10.0)
    live.on_book(IID, snapshot=False)
    live.on_activity(IID, 1 * S, 0)
    live.on_activity(IID, 16 * S, S)  # stalled: 15 s received, 1 s printed
    live.on_activity(IID, 20 * S, 9 * S)
    assert book.resyncs == []
    live.on_activity(IID, 21 * S, 10 * S)  # both clocks at 10 s and more since the first trade
    assert book.resyncs and book.resyncs[0].startswith(f"book frozen: trades/quotes of {IID} for 10.0 s")


def test_quotes_without_a_venue_time_are_judged_on_receive_times_trades_among_them_on_theirs() -> None:
    """Binance spot's bookTicker carries no time (its ts_event is its receive time)."""
    live, book = watched(10.0)
    for t in range(11):  # quotes alone: receive times
        live.on_activity(IID, t * S, t * S)
    assert len(book.resyncs) == 1
    live, book = watched(10.0)
    live.on_activity(IID, 0, -S)  # a trade, then a 15 s stall, then a quote
    live.on_activity(IID, 15 * S, 15 * S)
    assert book.resyncs == []  # the venue printed nothing later than the trade yet
    live.on_activity(IID, 16 * S, 9 * S)
    assert book.resyncs and "for 10.0 s" in book.resyncs[0]


def test_timeless_quotes_after_the_last_trade_freeze_the_book_on_their_receive_times() -> None:
    """Binance spot: one trade, then the depth stream dies while bookTickers (no venue time) keep coming and
    no trade follows: the quotes alone span max_idle of receive time, as a window of them alone would."""
    live, book = watched(10.0)
    live.on_book(IID, snapshot=False)
    trade(live, 0)
    for t in range(1, 11):  # a quote a second, 10 s of them after the first one at 1 s
        live.on_activity(IID, t * S, t * S)
    assert book.resyncs == []  # 9 s of quotes since the first one after the trade
    live.on_activity(IID, 11 * S, 11 * S)
    assert book.resyncs and book.resyncs[0].startswith(f"book frozen: trades/quotes of {IID} for 10.0 s")
