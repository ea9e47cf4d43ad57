"""Borrowing interest and funding payments survive a restart on the journal.

A margin spot short pays interest at the fill that borrows and at every whole UTC hour
(:mod:`tradebus.engine.interest`). Before, the journal held the orders and fills only: a
process restarted on it rebuilt the position without the charges, so its wallet was higher
than the stopped process's, its ``interest.csv`` lacked the earlier charges and (on a
simulated clock) the hourly schedule restarted from the clock's zero.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import msgspec
import pytest

from tradebus.engine.kernel import Kernel
from tradebus.engine.messages import FundingPaid, InterestCharged, OrderSide, Trade
from tradebus.execution.config import VenueConfig
from tradebus.execution.journal import SCHEMA_VERSION, Journal

from tests.engine.test_interest import IID, YEAR_H, Script, spot
from tests.engine.test_kernel_batches import T0

H = 3_600_000_000_000
M = 60_000_000_000

# A short of 0.5 BTC sold at 20,000 at 00:20 and held over 01:00, 02:00 and 03:00, bought back at 03:10.
# The price does not move between a fill and the next hour's charge: a restarted process knows the
# journaled fills' prices only, until its first new price.
TRADES = [
    (T0 + 10 * M, 20_000.0),  # decides: sell 0.5
    (T0 + 20 * M, 20_000.0),  # fills: borrows 0.5 BTC
    (T0 + H + 5 * M, 20_000.0),  # 01:00 charged before it
    (T0 + 2 * H + 5 * M, 20_000.0),  # 02:00 at 20,000
    (T0 + 3 * H + 5 * M, 19_000.0),  # 03:00 at 20,000; decides: buy 0.5
    (T0 + 3 * H + 10 * M, 19_000.0),  # fills: repaid
    (T0 + 4 * H + 5 * M, 19_500.0),  # 04:00: nothing owed
]
ORDERS = {0: (OrderSide.SELL, 0.5), 4: (OrderSide.BUY, 0.5)}
RATES = {"BTC": 0.10}


def kernel(journal: Journal | None, orders: dict[int, tuple[OrderSide, float]]) -> Kernel:
    k = Kernel([spot()], initial_cash=10_000.0, venue_config=VenueConfig(fill_on="trades"), borrow_rates=RATES,
               journal=journal)  # fmt: skip
    k.add_strategy(Script(orders))
    return k


def feed(k: Kernel, trades: list[tuple[int, float]], first: int = 0) -> None:
    for n, (ts, price) in enumerate(trades, first):
        k.process(Trade(IID, ts, ts, price, 1.0, 1, str(n)))


def charges(k: Kernel) -> list[tuple[str, int, float, float, float]]:
    return [(c.kind, c.ts_event, c.borrowed, c.price, c.interest) for c in k.result.interest or []]


@pytest.mark.parametrize("stop_after", [2, 3, 4], ids=["before-01:00", "after-01:00", "after-02:00"])
def test_a_restart_on_the_journal_keeps_every_charge_once_and_the_wallet(tmp_path: Path, stop_after: int) -> None:
    """Stopped after trade ``stop_after - 1`` (a whole hour or more still to come), restarted on the
    journal: the restored wallet is the stopped one's; after the rest of the data, the charges, the
    wallet and equity are the uninterrupted run's (each hour charged once)."""
    whole = kernel(None, ORDERS)
    feed(whole, TRADES)
    whole.stop()
    assert [c[:2] for c in charges(whole)] == [("borrow", T0 + 20 * M), ("hour", T0 + H), ("hour", T0 + 2 * H),
                                               ("hour", T0 + 3 * H)]  # fmt: skip

    path = tmp_path / "journal.sqlite"
    journal = Journal(path)
    first = kernel(journal, ORDERS)
    feed(first, TRADES[:stop_after])
    wallet = first.portfolio.account.balance("USD"), first.portfolio.account.balance("BTC")
    cash, before = first.portfolio.cash, charges(first)
    journal.close()  # every entry was committed as it was made: a SIGKILL here loses nothing

    journal = Journal(path)
    later = {i - stop_after: order for i, order in ORDERS.items() if i >= stop_after}
    second = kernel(journal, later)
    journal.replay(second.orders, second.portfolio, TRADES[stop_after - 1][0], risk=second.risk,
                   on_message=second.record_journaled)  # fmt: skip
    assert (second.portfolio.account.balance("USD"), second.portfolio.account.balance("BTC")) == wallet
    assert second.portfolio.cash == cash
    assert charges(second) == before
    feed(second, TRADES[stop_after:], stop_after)
    second.stop()
    journal.close()
    # the hours charged before the restarted run's first price are valued at the journal's fill
    # price and marked so (here the same price: it did not move between the fill and those hours)
    missed = [c for c in charges(second) if c[0] == "hour_last_fill"]
    assert missed and all(c[1] < TRADES[stop_after][0] for c in missed)
    assert [("hour" if c[0] == "hour_last_fill" else c[0], *c[1:]) for c in charges(second)] == charges(whole)
    assert second.portfolio.account.balance("USD") == whole.portfolio.account.balance("USD")
    assert second.portfolio.equity() == whole.portfolio.equity()
    assert second.portfolio.interest_paid == pytest.approx(0.5 * 0.10 * 4 * 20_000.0 / YEAR_H, rel=1e-12)
    # The journal holds each charge once, in order with the fills.
    db = sqlite3.connect(path)
    rows = db.execute("SELECT type, payload FROM journal ORDER BY seq").fetchall()
    db.close()
    journaled = [msgspec.msgpack.decode(p, type=InterestCharged) for t, p in rows if t == "InterestCharged"]
    # the same charges; an hour that passed before the restarted run's first message is charged
    # (ts_init) when that message starts it, as a daemon charges the hours it was down at its restart
    assert [msgspec.structs.replace(c, ts_init=0, kind=c.kind.removesuffix("_last_fill")) for c in journaled] == [
        msgspec.structs.replace(c, ts_init=0) for c in whole.result.interest or []
    ]
    assert all(c.ts_init >= c.ts_event for c in journaled)
    kinds = [t for t, _ in rows if t in ("OrderFilled", "InterestCharged")]
    assert kinds == ["OrderFilled", "InterestCharged", "InterestCharged", "InterestCharged", "InterestCharged",
                     "OrderFilled"]  # fmt: skip


def test_a_funding_payment_is_journaled_and_replayed(tmp_path: Path) -> None:
    """A journaled ``FundingPaid`` is debited again from the rebuilt wallet and is in the run's funding."""
    path = tmp_path / "journal.sqlite"
    journal = Journal(path)
    paid = FundingPaid(IID, 0.5, 20_000.0, 0.0001, 1.0, T0, T0 + 1)
    journal.record_wallet(paid)
    journal.close()
    journal = Journal(path)
    k = kernel(journal, {})
    journal.replay(k.orders, k.portfolio, T0 + 2, on_message=k.record_journaled)
    journal.close()
    assert k.result.funding == [paid]
    assert k.portfolio.cash == 9_999.0 and k.portfolio.funding_paid == 1.0
    assert k.portfolio.account.balance("USD") == 9_999.0


def test_a_version_2_journal_opens_and_is_marked_the_current_version_by_its_first_write(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    Journal(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    journal = Journal(path)
    assert journal.schema_version == 2
    journal.begin_epoch()
    assert journal.schema_version == SCHEMA_VERSION >= 3
    journal.close()


def test_an_hour_missed_while_down_is_marked_and_not_silently_valued_at_a_stale_fill(tmp_path: Path) -> None:
    """A short sold at 20,000 at 00:20; the last price before 01:00 is 21,000 (00:50), when the process
    stops. Restarted at 01:05, the 01:00 charge cannot know that hour's price: the journal holds the fill's
    20,000 only. It is charged at 20,000, marked ``hour_last_fill`` and warned about (before, a plain
    ``hour`` at 20,000: an uninterrupted run charged it at 21,000)."""
    from loguru import logger

    trades = [(T0 + 10 * M, 20_000.0), (T0 + 20 * M, 20_000.0), (T0 + 50 * M, 21_000.0), (T0 + H + 5 * M, 22_000.0),
              (T0 + 2 * H + 5 * M, 22_000.0)]  # fmt: skip
    whole = kernel(None, {0: (OrderSide.SELL, 0.5)})
    feed(whole, trades)
    assert [c[:4] for c in charges(whole)] == [("borrow", T0 + 20 * M, 0.5, 20_000.0), ("hour", T0 + H, 0.5, 21_000.0),
                                               ("hour", T0 + 2 * H, 0.5, 22_000.0)]  # fmt: skip
    path = tmp_path / "journal.sqlite"
    journal = Journal(path)
    first = kernel(journal, {0: (OrderSide.SELL, 0.5)})
    feed(first, trades[:3])
    journal.close()
    journal = Journal(path)
    second = kernel(journal, {})
    journal.replay(second.orders, second.portfolio, trades[2][0], risk=second.risk, on_message=second.record_journaled)
    lines: list[str] = []
    sink = logger.add(lines.append, level="WARNING", format="{message}")
    try:
        feed(second, trades[3:], 3)
    finally:
        logger.remove(sink)
        journal.close()
    hour_price = 20_000.0  # the journal's fill: the only price the restarted process has for 01:00
    assert [c[:4] for c in charges(second)[1:]] == [("hour_last_fill", T0 + H, 0.5, hour_price),
                                                    ("hour", T0 + 2 * H, 0.5, 22_000.0)]  # fmt: skip
    assert charges(second)[1][4] == pytest.approx(0.5 * hour_price * 0.10 / YEAR_H, rel=1e-12)
    (line,) = lines
    assert "1970" not in line and "valued at 20000.0 USD, the last fill price of BTC-USD.SIM" in line
