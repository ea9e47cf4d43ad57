"""A journal remembers what wrote it (mode, venue, market, environment, account) and refuses another writer.

Before, a journal stored none of it: a paper journal opened by a live run (or a testnet journal by a
mainnet run) with the same instruments was taken over, and ``live-kill --flatten`` sold, out of the
real account, the positions a paper run had journaled.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from loguru import logger

from tradebus.engine.bus import MessageBus
from tradebus.engine.clock import SimulatedClock
from tradebus.engine.instrument import Instrument
from tradebus.engine.messages import Liquidity, OrderAccepted, OrderFilled, OrderSide, OrderStatus, OrderSubmitted, SubmitOrder
from tradebus.engine.portfolio import Portfolio
from tradebus.errors import DataError
from tradebus.execution.engine import ExecutionEngine
from tradebus.execution.journal import SCHEMA_VERSION, Journal, JournalOwner
from tradebus.execution.orders import OrderManager
from tradebus.execution.paper import PaperVenue
from tradebus.risk.config import RiskConfig
from tradebus.risk.gate import RiskGate

from .conftest import bar, make_instrument

IID = "BTCUSDT.BINANCE"
PAPER = JournalOwner("paper", "binance", "spot", "simulated")
TESTNET = JournalOwner("live", "binance", "spot", "testnet")
MAINNET = JournalOwner("live", "binance", "spot", "mainnet")


def journal_with_an_order(path: Path, owner: JournalOwner | None) -> None:
    journal = Journal(path, owner=owner)
    journal.record_command(SubmitOrder("s1", IID, "c1", OrderSide.BUY, 0.01, 1, 1), "c1")
    journal.record_event(OrderSubmitted("s1", IID, "c1", 1, 1))
    journal.close()


def unowned_version_3(path: Path) -> None:
    """Make the journal at ``path`` as an earlier tradebus (schema version 3) left it: naming no owner."""
    db = sqlite3.connect(path)
    db.execute("DROP TABLE equity")
    db.execute("DELETE FROM meta WHERE key IN ('mode', 'venue', 'market', 'environment')")
    db.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    db.commit()
    db.close()


def paper_journal_of_an_earlier_tradebus(path: Path, instrument: Instrument) -> None:
    """The journal of a paper run of an earlier tradebus: a buy of 0.01 the paper venue filled, no owner named."""
    iid, instruments = instrument.instrument_id, {instrument.instrument_id: instrument}
    bus, clock = MessageBus(), SimulatedClock(0)
    portfolio = Portfolio(instruments, 100_000.0)
    orders = OrderManager(bus, clock)
    journal = Journal(path)
    engine = ExecutionEngine(bus, clock, instruments, RiskGate(RiskConfig(), portfolio, clock, bus), orders,
                             PaperVenue(clock, instruments), portfolio, journal)
    journal.replay(OrderManager(bus, clock), Portfolio(instruments, 100_000.0), 0)
    for i in (1, 2):
        clock.advance_to(bar(i, 30_000.0, 30_100.0, 29_900.0, 30_000.0, iid).ts_init)
        engine.on_bar(bar(i, 30_000.0, 30_100.0, 29_900.0, 30_000.0, iid))
        if i == 1:
            engine.submit(SubmitOrder("s1", iid, "", OrderSide.BUY, 0.01, clock.now_ns(), clock.now_ns()))
    assert [o.status for o in orders.orders()] == [OrderStatus.FILLED] and portfolio.position(iid) == 0.01
    journal.close()
    unowned_version_3(path)


def rows(path: Path) -> tuple[list[tuple[str, str]], int]:
    """The ``meta`` rows and the number of entries, read without the journal's code."""
    db = sqlite3.connect(path)
    try:
        return sorted(db.execute("SELECT key, value FROM meta")), db.execute("SELECT COUNT(*) FROM journal").fetchone()[0]
    finally:
        db.close()


@pytest.mark.parametrize(
    ("written_by", "opened_by", "differ"),
    [(PAPER, TESTNET, "mode"), (TESTNET, PAPER, "mode"), (TESTNET, MAINNET, "environment"), (MAINNET, TESTNET, "environment"),
     (TESTNET, JournalOwner("live", "okx", "spot", "testnet"), "venue"),
     (TESTNET, JournalOwner("live", "binance", "perpetual", "testnet"), "market")],
    ids=["paper-then-live", "live-then-paper", "testnet-then-mainnet", "mainnet-then-testnet", "venue", "market"],
)
def test_a_journal_opened_by_another_owner_is_refused_naming_both_and_left_as_it_was(
    tmp_path: Path, written_by: JournalOwner, opened_by: JournalOwner, differ: str
) -> None:
    path = tmp_path / "journal.sqlite"
    journal_with_an_order(path, written_by)
    before = rows(path)
    with pytest.raises(DataError) as caught:
        Journal(path, owner=opened_by)
    message = str(caught.value)
    assert f"journal {path}: written by a {written_by} run, opened by a {opened_by} run ({differ}" in message
    assert "nothing was written or sent" in message
    assert rows(path) == before
    again = Journal(path, owner=written_by)  # its own writer still opens it
    assert again.written_by == written_by
    again.close()


def test_a_paper_journal_opens_for_a_paper_config_of_other_feeds(tmp_path: Path) -> None:
    """A paper journal's venues and markets are for the record: the replay checks a paper config's instruments."""
    path = tmp_path / "journal.sqlite"
    journal_with_an_order(path, PAPER)
    journal = Journal(path, owner=JournalOwner("paper", "binance,okx", "spot,swap", "simulated"))
    assert journal.written_by == PAPER
    journal.close()


def test_a_journal_of_an_earlier_tradebus_is_taken_by_its_first_owner_and_stamped(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    journal_with_an_order(path, None)
    unowned_version_3(path)
    infos: list[str] = []
    sink = logger.add(lambda m: infos.append(str(m)), level="INFO", format="{message}")
    try:
        journal = Journal(path, owner=TESTNET)
        assert journal.schema_version == 3  # not at open: the replay may still refuse it
        assert journal.written_by is None and infos == []
        journal.begin_epoch()  # its first write
    finally:
        logger.remove(sink)
    assert journal.written_by == TESTNET and journal.schema_version == SCHEMA_VERSION == 6
    journal.close()
    assert any(f"journal {path}: it named no owner" in line and str(TESTNET) in line for line in infos)
    meta, entries = rows(path)
    assert ("environment", "testnet") in meta and ("mode", "live") in meta and ("epoch", "1") in meta and entries == 2
    with pytest.raises(DataError, match="written by a live .binance spot, testnet. run, opened by a paper"):
        Journal(path, owner=PAPER)


def test_a_journal_of_an_earlier_tradebus_only_read_is_left_as_it_was(tmp_path: Path) -> None:
    """Opening it marked it version 4 at once, so the tradebus that wrote it refused it as newer."""
    path = tmp_path / "journal.sqlite"
    paper_journal_of_an_earlier_tradebus(path, make_instrument())
    before = path.read_bytes()
    eth = make_instrument(symbol="ETHUSDT")  # another config's instrument
    for owner in (None, PAPER):  # a tool reading it; a paper daemon whose replay then refuses it
        journal = Journal(path, owner=owner)
        assert [entry.seq for entry in journal.entries()][:3] == [1, 2, 3] and journal.load_risk_state() is None
        assert journal.schema_version == 3 and journal.written_by is None and journal.epoch == 1
        with pytest.raises(DataError, match="which this config does not trade"):
            journal.replay(OrderManager(MessageBus(), SimulatedClock(0)), Portfolio({eth.instrument_id: eth}, 100_000.0), 0)
        journal.close()
        assert path.read_bytes() == before


@pytest.mark.parametrize("opened_by", [TESTNET, MAINNET], ids=["testnet", "mainnet"])
def test_a_paper_journal_of_an_earlier_tradebus_is_refused_to_a_live_opener_and_left_as_it_was(
    tmp_path: Path, opened_by: JournalOwner
) -> None:
    """It named no owner, so the first live opener took it over and stamped it as its own."""
    path = tmp_path / "journal.sqlite"
    paper_journal_of_an_earlier_tradebus(path, make_instrument())
    before = rows(path)
    assert ("schema_version", "3") in before[0] and not any(key == "mode" for key, _ in before[0])
    with pytest.raises(DataError) as caught:
        Journal(path, owner=opened_by)
    message = str(caught.value)
    assert message.startswith(f"journal {path}: it names no owner (an earlier tradebus wrote it), and the simulated "
                              "venue of a paper run numbered its orders (seq 3, order ")
    assert f": venue order id SIM-1); a {opened_by} run would trade on a paper run's orders" in message
    assert "nothing was written or sent" in message
    assert rows(path) == before
    journal = Journal(path, owner=PAPER)  # a paper run still takes it over
    journal.begin_epoch()
    assert journal.written_by == PAPER
    journal.close()


def live_journal_of_an_earlier_tradebus(path: Path, iid: str = IID) -> None:
    """The journal of a live run of an earlier tradebus: a buy of 0.01 the exchange filled, no owner named."""
    journal = Journal(path)
    journal.record_command(SubmitOrder("s1", iid, "c1", OrderSide.BUY, 0.01, 1, 1), "c1")
    journal.record_event(OrderSubmitted("s1", iid, "c1", 1, 1))
    journal.record_event(OrderAccepted("s1", iid, "c1", "28457126391", 2, 2))
    journal.record_event(OrderFilled("s1", iid, "c1", "28457126391", "3527301245", OrderSide.BUY, 0.01, 30_000.0, 0.3,
                                     Liquidity.TAKER, 3, 3))
    journal.close()
    unowned_version_3(path)


def test_a_live_journal_of_an_earlier_tradebus_is_taken_by_a_live_opener(tmp_path: Path) -> None:
    """Only the simulated venue's ids mark a paper journal: an exchange's order and trade ids do not."""
    path = tmp_path / "journal.sqlite"
    live_journal_of_an_earlier_tradebus(path)
    journal = Journal(path, owner=MAINNET)
    journal.begin_epoch()
    assert journal.written_by == MAINNET
    journal.close()


def test_a_live_journal_of_an_earlier_tradebus_is_refused_to_a_paper_opener_and_left_as_it_was(tmp_path: Path) -> None:
    """It named no owner, so the first paper run took the live account's orders and positions for its own and
    stamped the journal paper: the live daemon was then refused its own journal."""
    path = tmp_path / "journal.sqlite"
    live_journal_of_an_earlier_tradebus(path)
    before = path.read_bytes()
    with pytest.raises(DataError) as caught:
        Journal(path, owner=PAPER)
    assert str(caught.value) == (
        f"journal {path}: it names no owner (an earlier tradebus wrote it), and an exchange numbered its orders, not "
        "the simulated venue of a paper run (seq 3, order c1: venue order id 28457126391); a paper (binance spot, "
        "simulated) run would trade on a live account's orders and positions (and the live run would then be refused "
        "its journal): nothing was written or sent. Give this config a journal of its own (the live config that wrote "
        "it still opens it)"
    )
    assert path.read_bytes() == before
    journal = Journal(path, owner=TESTNET)  # a live run still takes it over
    journal.begin_epoch()
    assert journal.written_by == TESTNET
    journal.close()


def test_a_paper_journal_of_an_earlier_tradebus_with_a_simulated_liquidation_is_taken_by_a_paper_opener(
    tmp_path: Path,
) -> None:
    """The simulated liquidation numbers its fills ``liquidation-<n>``: a paper run's too."""
    path = tmp_path / "journal.sqlite"
    journal = Journal(path)
    journal.record_event(OrderFilled("liquidation", IID, "liquidation-1", "liquidation-1", "liquidation-1", OrderSide.SELL,
                                     0.01, 29_000.0, 0.3, Liquidity.TAKER, 3, 3))
    journal.close()
    unowned_version_3(path)
    journal = Journal(path, owner=PAPER)
    journal.begin_epoch()
    assert journal.written_by == PAPER
    journal.close()


def test_a_new_journal_is_stamped_with_its_owner_and_a_reader_naming_none_is_not_checked(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    Journal(path, owner=MAINNET).close()
    reader = Journal(path)
    assert reader.written_by == MAINNET
    reader.close()
    unowned = tmp_path / "unowned.sqlite"
    Journal(unowned).close()
    check = Journal(unowned)
    assert check.written_by is None
    check.close()


def test_the_account_id_is_stored_once_and_another_account_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    journal = Journal(path, owner=TESTNET)
    journal.check_account("")  # the venue reports none: nothing checked, nothing stored
    assert journal.account == ""
    journal.check_account("354937868")
    journal.close()
    journal = Journal(path, owner=TESTNET)
    assert journal.account == "354937868"
    journal.check_account("354937868")
    with pytest.raises(DataError, match=rf"journal {path}: written for venue account 354937868, opened with the keys of account 42;"):
        journal.check_account("42")
    journal.close()
