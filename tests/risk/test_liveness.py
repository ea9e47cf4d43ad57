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


def watched(max_idle: float = 10.0) -> tuple[BookLiveness, Book]:
    live = BookLiveness()
    book = Book()
    live.watch(IID, max_idle, lambda: book.synced, book.resync)
    return live, book


def test_trades_without_a_book_change_for_max_idle_freeze_and_resync_the_book() -> None:
    live, book = watched(10.0)
    live.on_book(IID, snapshot=True)
    for t in range(0, 10):  # a trade every second for 9 s: still within the allowance
        live.on_activity(IID, t * S)
    assert live.frozen(IID) is None and book.resyncs == []
    live.on_activity(IID, 10 * S)
    reason = live.frozen(IID)
    assert reason is not None and reason.startswith(f"book frozen: trades/quotes of {IID} for 10.0 s")
    assert book.resyncs == [reason] and live.freezes == {IID: 1}
    live.on_activity(IID, 11 * S)  # resyncing: not judged again meanwhile
    assert len(book.resyncs) == 1


def test_book_changes_keep_it_alive_however_long_trades_flow() -> None:
    live, book = watched(10.0)
    for t in range(0, 100):
        live.on_activity(IID, t * S)
        if t % 5 == 0:
            live.on_book(IID, snapshot=False)
    assert live.frozen(IID) is None and book.resyncs == []


def test_a_trade_after_a_long_quiet_spell_starts_the_window_instead_of_freezing() -> None:
    live, book = watched(10.0)
    live.on_book(IID, snapshot=True)
    live.on_activity(IID, 60 * S)  # first trade in a minute: the book update for it follows
    live.on_book(IID, snapshot=False)
    live.on_activity(IID, 69 * S)
    live.on_activity(IID, 78 * S)  # 9 s after the first trade since the last change
    assert live.frozen(IID) is None and book.resyncs == []


def test_after_a_freeze_the_resync_snapshot_alone_does_not_clear_it_a_live_update_does() -> None:
    live, book = watched(1.0)
    live.on_activity(IID, 0)
    live.on_activity(IID, 2 * S)
    assert live.frozen(IID) is not None
    book.synced = True  # the resync's snapshot arrived
    live.on_book(IID, snapshot=True)
    assert live.frozen(IID) is not None  # still no proof that updates arrive
    live.on_book(IID, snapshot=False)
    assert live.frozen(IID) is None


def test_a_book_resynced_but_still_without_updates_is_resynced_again() -> None:
    live, book = watched(1.0)
    live.on_activity(IID, 0)
    live.on_activity(IID, 1 * S)
    book.synced = True
    live.on_book(IID, snapshot=True)
    live.on_activity(IID, 2 * S)
    live.on_activity(IID, 3 * S)
    assert len(book.resyncs) == 2 and live.frozen(IID) is not None


def test_a_book_that_is_not_in_sync_is_not_judged_and_unwatched_instruments_are_ignored() -> None:
    live, book = watched(1.0)
    book.synced = False
    for t in range(10):
        live.on_activity(IID, t * S)
    assert book.resyncs == [] and live.frozen(IID) is None
    live.on_activity("ETHUSDT.BINANCE", 0)
    live.on_book("ETHUSDT.BINANCE", snapshot=False)
    assert live.frozen("ETHUSDT.BINANCE") is None


def test_max_idle_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="max_idle must be > 0"):
        BookLiveness().watch(IID, 0.0, lambda: True, lambda r: None)
