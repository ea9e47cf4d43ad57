"""Journal: every command/event with a monotonic seq, replay, and crash recovery without duplicates."""

from __future__ import annotations

import json
import math
import re
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import msgspec
import pytest
from loguru import logger

from tradebus.engine.bus import MessageBus
from tradebus.engine.clock import SimulatedClock
from tradebus.engine.messages import (
    Liquidity,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderSide,
    OrderStatus,
    OrderSubmitted,
    OrderType,
    SubmitOrder,
    TradingState,
)
from tradebus.engine.portfolio import Portfolio
from tradebus.execution.engine import ExecutionEngine
from tradebus.errors import DataError
from tradebus.execution.journal import SCHEMA_VERSION, WAL_SIZE_LIMIT, Journal
from tradebus.execution.orders import OrderManager, OrderResolved
from tradebus.execution.simulated import SimulatedVenue
from tradebus.risk.config import RiskConfig
from tradebus.risk.gate import RiskGate

from .conftest import IID, bar, make_instrument

# A venue whose book survives the process (one JSON line per order it received), standing in
# for an exchange across a crash of the trading process.
FILE_VENUE = textwrap.dedent(
    '''
    import json
    from pathlib import Path
    from tradebus.engine.messages import OrderAccepted, OrderStatus
    from tradebus.execution.venue import OrderStatusReport, Venue
    from tradebus.errors import VenueError

    class FileVenue(Venue):
        def __init__(self, path, clock, kill_before=(), kill_after=()):
            super().__init__()
            self.path, self.clock = Path(path), clock
            self.kill_before, self.kill_after = set(kill_before), set(kill_after)  # n-th submit, from 1
            self.submits = 0

        def received(self):
            if not self.path.exists():
                return []
            return [json.loads(line) for line in self.path.read_text().splitlines()]

        def _die(self):
            import os, signal
            os.kill(os.getpid(), signal.SIGKILL)

        def submit(self, order):
            self.submits += 1
            if self.submits in self.kill_before:
                self._die()
            with self.path.open("a") as f:
                f.write(json.dumps({"coid": order.client_order_id, "vid": f"F-{order.client_order_id}"}) + "\\n")
            if self.submits in self.kill_after:
                self._die()
            now = self.clock.now_ns()
            self.emit(OrderAccepted(order.strategy_id, order.instrument_id, order.client_order_id,
                                    f"F-{order.client_order_id}", now, now))

        def cancel(self, order):
            raise VenueError("FileVenue: cancel not supported")

        def modify(self, order, cmd):
            raise VenueError("FileVenue: modify not supported")

        def query_order(self, client_order_id):
            for row in self.received():
                if row["coid"] == client_order_id:
                    return OrderStatusReport(row["coid"], row["vid"], OrderStatus.ACCEPTED, 0.0, 0)
            return None
    '''
)

CHILD = textwrap.dedent(
    '''
    import sys
    STOP_AFTER = 2
    sys.path.insert(0, sys.argv[3])
    from file_venue import FileVenue
    from tradebus.engine.bus import MessageBus
    from tradebus.engine.clock import SimulatedClock
    from tradebus.engine.instrument import Instrument
    from tradebus.engine.messages import OrderSide, OrderType, SubmitOrder
    from tradebus.engine.portfolio import Portfolio
    from tradebus.execution.engine import ExecutionEngine
    from tradebus.execution.journal import Journal
    from tradebus.execution.orders import OrderManager
    from tradebus.risk.config import RiskConfig
    from tradebus.risk.gate import RiskGate

    inst = Instrument("BINANCE", "BTCUSDT", tick_size=0.01, lot_size=0.001)
    insts = {inst.instrument_id: inst}
    bus, clock = MessageBus(), SimulatedClock(1_000)
    pf = Portfolio(insts, 10_000.0)
    om = OrderManager(bus, clock)
    venue = FileVenue(sys.argv[2], clock, kill_before={2}, kill_after={3})
    journal = Journal(sys.argv[1])
    engine = ExecutionEngine(bus, clock, insts, RiskGate(RiskConfig(), pf, clock, bus), om, venue, pf,
                             journal=journal)
    journal.replay(om, pf, 1_000)  # a fresh journal: begins epoch 1 of its client order ids
    for n in range(1, 4):
        cmd = SubmitOrder("s", inst.instrument_id, om.next_client_order_id("s"), OrderSide.BUY, 1.0,
                          1_000, 1_000, OrderType.LIMIT, 90.0)
        engine.submit(cmd)   # order 1 goes through; 2 dies before the send; 3 dies after it
        if n == STOP_AFTER:
            break
    '''
)


def journaled_ids(path: Path) -> list[str]:
    """Client order ids of the journaled ``SubmitOrder`` commands, in order (read-only)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [r[0] for r in db.execute("SELECT client_order_id FROM journal WHERE type = 'SubmitOrder' ORDER BY seq")]
    finally:
        db.close()


def _run_child(tmp_path: Path, journal: Path, book: Path) -> int:
    (tmp_path / "file_venue.py").write_text(FILE_VENUE)
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    proc = subprocess.run(
        [sys.executable, str(script), str(journal), str(book), str(tmp_path)],
        capture_output=True,
        timeout=120,
        check=False,
    )
    return proc.returncode


def _restart(tmp_path: Path, journal_path: Path, book: Path) -> tuple[OrderManager, object, ExecutionEngine, Journal]:
    sys.path.insert(0, str(tmp_path))
    try:
        from file_venue import FileVenue  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(tmp_path))
    inst = make_instrument(maker_fee=0.0, taker_fee=0.0)
    insts = {inst.instrument_id: inst}
    bus, clock = MessageBus(), SimulatedClock(5_000)
    pf = Portfolio(insts, 10_000.0)
    om = OrderManager(bus, clock)
    venue = FileVenue(book, clock)
    journal = Journal(journal_path)
    engine = ExecutionEngine(bus, clock, insts, RiskGate(RiskConfig(), pf, clock, bus), om, venue, pf, journal=journal)
    return om, venue, engine, journal


def test_kill_before_send_then_restart_resolves_without_inventing_or_duplicating(tmp_path: Path) -> None:
    journal_path, book = tmp_path / "journal.sqlite", tmp_path / "book.jsonl"
    assert _run_child(tmp_path, journal_path, book) == -9  # SIGKILL inside the send of s-2
    first, second = journaled_ids(journal_path)
    om, venue, engine, journal = _restart(tmp_path, journal_path, book)
    unknown = journal.replay(om, engine.portfolio, 5_000)
    assert [o.client_order_id for o in unknown] == [first, second]
    for order in unknown:
        engine.resolve_unknown(order.client_order_id)
    assert om.order(first).status == OrderStatus.ACCEPTED
    assert om.order(second).status == OrderStatus.REJECTED and "never arrived" in om.order(second).reason
    assert [row["coid"] for row in venue.received()] == [first]  # nothing re-sent
    assert om.next_client_order_id("s") not in (first, second)  # ids never reused


def test_kill_after_send_before_ack_restart_finds_order_at_venue_and_does_not_resend(tmp_path: Path) -> None:
    journal_path, book = tmp_path / "journal.sqlite", tmp_path / "book.jsonl"
    child = CHILD.replace("kill_before={2}", "kill_before=set()").replace("STOP_AFTER = 2", "STOP_AFTER = 9")
    (tmp_path / "file_venue.py").write_text(FILE_VENUE)
    (tmp_path / "child.py").write_text(child)
    proc = subprocess.run(
        [sys.executable, str(tmp_path / "child.py"), str(journal_path), str(book), str(tmp_path)],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == -9
    om, venue, engine, journal = _restart(tmp_path, journal_path, book)
    unknown = journal.replay(om, engine.portfolio, 5_000)
    for order in unknown:
        engine.resolve_unknown(order.client_order_id)
    assert [o.status for o in om.orders()] == [OrderStatus.ACCEPTED] * 3
    sent = [row["coid"] for row in venue.received()]
    assert sent == journaled_ids(journal_path) == [o.client_order_id for o in om.orders()]


def test_second_restart_keeps_recovered_closed_orders_and_requeries_open_ones(tmp_path: Path) -> None:
    journal_path, book = tmp_path / "journal.sqlite", tmp_path / "book.jsonl"
    _run_child(tmp_path, journal_path, book)
    om, _, engine, journal = _restart(tmp_path, journal_path, book)
    for order in journal.replay(om, engine.portfolio, 5_000):
        engine.resolve_unknown(order.client_order_id)
    journal.close()
    om2, _, engine2, journal2 = _restart(tmp_path, journal_path, book)
    first, second = journaled_ids(journal_path)
    # The second order's recovery (REJECTED) was journaled; the first is open, so its fate is asked again.
    assert [o.client_order_id for o in journal2.replay(om2, engine2.portfolio, 6_000)] == [first]
    engine2.resolve_unknown(first)
    assert [(o.client_order_id, o.status) for o in om2.orders()] == [
        (o.client_order_id, o.status) for o in om.orders()
    ]


def test_journal_records_commands_and_events_with_increasing_seq_and_replay_rebuilds_position(
    tmp_path: Path,
) -> None:
    inst = make_instrument()
    insts = {inst.instrument_id: inst}
    bus, clock = MessageBus(), SimulatedClock(0)
    pf = Portfolio(insts, 10_000.0)
    om = OrderManager(bus, clock)
    journal = Journal(tmp_path / "j.sqlite")
    engine = ExecutionEngine(
        bus, clock, insts, RiskGate(RiskConfig(), pf, clock, bus), om, SimulatedVenue(clock, insts), pf, journal
    )
    clock.advance_to(bar(1, 100.0, 101.0, 99.0, 100.0).ts_init)
    engine.on_bar(bar(1, 100.0, 101.0, 99.0, 100.0))
    engine.submit(SubmitOrder("s", IID, "", OrderSide.BUY, 2.0, 1, 1))
    engine.submit(SubmitOrder("s", IID, "", OrderSide.SELL, 0.5, 1, 1, OrderType.LIMIT, 102.0, math.nan))
    clock.advance_to(bar(2, 100.0, 103.0, 99.0, 100.0).ts_init)
    engine.on_bar(bar(2, 100.0, 103.0, 99.0, 100.0))
    entries = list(journal.entries())
    seqs = [e.seq for e in entries]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert [type(e.message).__name__ for e in entries[:2]] == ["SubmitOrder", "OrderSubmitted"]
    assert entries[0].message.client_order_id == om.orders()[0].client_order_id
    om2, pf2 = OrderManager(bus, clock), Portfolio(insts, 10_000.0)
    assert journal.replay(om2, pf2, 10) == []
    assert pf2.position(IID) == pf.position(IID) == 1.5
    assert pf2.cash == pf.cash
    assert [o.status for o in om2.orders()] == [OrderStatus.FILLED, OrderStatus.FILLED]
    assert json.dumps([o.filled_qty for o in om2.orders()]) == json.dumps([o.filled_qty for o in om.orders()])


def test_a_fill_journaled_twice_is_booked_once_on_replay(tmp_path: Path) -> None:
    inst = make_instrument()
    insts = {inst.instrument_id: inst}
    bus, clock = MessageBus(), SimulatedClock(0)
    pf = Portfolio(insts, 10_000.0)
    om = OrderManager(bus, clock)
    journal = Journal(tmp_path / "j.sqlite")
    engine = ExecutionEngine(
        bus, clock, insts, RiskGate(RiskConfig(), pf, clock, bus), om, SimulatedVenue(clock, insts), pf, journal
    )
    clock.advance_to(bar(1, 100.0, 101.0, 99.0, 100.0).ts_init)
    engine.on_bar(bar(1, 100.0, 101.0, 99.0, 100.0))
    engine.submit(SubmitOrder("s", IID, "", OrderSide.BUY, 2.0, 1, 1))
    clock.advance_to(bar(2, 100.0, 103.0, 99.0, 100.0).ts_init)
    engine.on_bar(bar(2, 100.0, 103.0, 99.0, 100.0))
    assert pf.position(IID) == 2.0
    fill = next(e.message for e in journal.entries() if type(e.message) is OrderFilled)
    journal.record_event(fill)  # a second writer (e.g. a flatten run) journaled the same venue trade
    om2, pf2 = OrderManager(bus, clock), Portfolio(insts, 10_000.0)
    seen: list = []
    journal.replay(om2, pf2, 10, on_message=seen.append)
    assert pf2.position(IID) == 2.0
    assert pf2.cash == pf.cash
    assert [m.trade_id for m in seen if type(m) is OrderFilled] == [fill.trade_id]


# ----------------------------------------------------------------------------- schema, transactions, recovery

V1_SCHEMA = """
CREATE TABLE journal (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('command', 'event')),
    type TEXT NOT NULL,
    client_order_id TEXT NOT NULL,
    ts INTEGER NOT NULL,
    payload BLOB NOT NULL
)
"""


def test_journal_has_a_schema_version_and_a_run_id_that_survive_reopening(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    run_id = journal.run_id
    assert journal.schema_version == SCHEMA_VERSION and len(run_id) == 8 and journal.epoch == 0
    journal.close()
    again = Journal(tmp_path / "j.sqlite")
    assert again.run_id == run_id and again.schema_version == SCHEMA_VERSION
    again.close()
    assert Journal(tmp_path / "other.sqlite").run_id != run_id


def test_a_journal_of_a_newer_schema_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "future.sqlite"
    Journal(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    db.commit()
    db.close()
    newer = rf"journal {re.escape(str(path))}: schema version {SCHEMA_VERSION + 1} is newer"
    with pytest.raises(DataError, match=newer):
        Journal(path)


def test_a_file_that_is_not_a_journal_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not a database, just notes " * 100)
    with pytest.raises(DataError, match=re.escape(str(path))):
        Journal(path)
    assert path.read_text().startswith("not a database")


def test_a_version_1_journal_is_migrated_and_its_entries_replay(tmp_path: Path) -> None:
    path = tmp_path / "v1.sqlite"
    db = sqlite3.connect(path)
    db.execute(V1_SCHEMA)
    cmd = SubmitOrder("s", IID, "s-1", OrderSide.BUY, 1.0, 7, 7)
    db.execute(
        "INSERT INTO journal (kind, type, client_order_id, ts, payload) VALUES (?, ?, ?, ?, ?)",
        ("command", "SubmitOrder", "s-1", 7, msgspec.msgpack.encode(cmd)),
    )
    db.execute(
        "INSERT INTO journal (kind, type, client_order_id, ts, payload) VALUES (?, ?, ?, ?, ?)",
        ("event", "OrderSubmitted", "s-1", 7, msgspec.msgpack.encode(OrderSubmitted("s", IID, "s-1", 7, 7))),
    )
    db.commit()
    db.close()
    journal = Journal(path)
    assert journal.schema_version == 1 and len(journal.run_id) == 8 and journal.load_risk_state() is None
    run_id = journal.run_id
    inst = make_instrument()
    om = OrderManager(MessageBus(), SimulatedClock(50))
    unknown = journal.replay(om, Portfolio({inst.instrument_id: inst}, 1_000.0), 50)
    assert journal.schema_version == SCHEMA_VERSION and journal.run_id == run_id
    assert [o.client_order_id for o in unknown] == ["s-1"]
    assert om.next_client_order_id("s") != "s-1"


def test_the_venues_filled_quantity_of_a_closed_order_survives_the_replay_and_an_earlier_journal_lacks_it(
    tmp_path: Path,
) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    for coid in ("s-1", "s-2", "s-3"):
        journal.record_command(SubmitOrder("s", IID, coid, OrderSide.BUY, 2.0, 7, 7, OrderType.LIMIT, 100.0), coid)
        journal.record_event(OrderSubmitted("s", IID, coid, 7, 7))
        journal.record_event(OrderAccepted("s", IID, coid, f"v-{coid}", 8, 8))
    journal.record_event(OrderCanceled("s", IID, "s-1", "canceled", 9, 9, 0.5))  # the stream's close: 0.5 filled
    journal.record_event(OrderResolved("s", IID, "s-2", OrderStatus.EXPIRED, "queried", 9, 9, 1.5))  # a query's answer
    # s-3's resolution as a tradebus before OrderResolved.filled_qty journaled it
    old = {"strategy_id": "s", "instrument_id": IID, "client_order_id": "s-3", "status": "CANCELED", "reason": "queried",
           "ts_event": 9, "ts_init": 9}  # fmt: skip
    journal.close()
    db = sqlite3.connect(tmp_path / "j.sqlite")
    db.execute("INSERT INTO journal (kind, type, client_order_id, ts, payload) VALUES (?, ?, ?, ?, ?)",
               ("event", "OrderResolved", "s-3", 9, msgspec.msgpack.encode(old)))  # fmt: skip
    db.commit()
    db.close()
    journal = Journal(tmp_path / "j.sqlite")
    inst = make_instrument()
    om = OrderManager(MessageBus(), SimulatedClock(50))
    assert journal.replay(om, Portfolio({inst.instrument_id: inst}, 1_000.0), 50) == []
    journal.close()
    assert [(om.order(c).status, om.order(c).venue_filled_qty) for c in ("s-1", "s-2")] == [
        (OrderStatus.CANCELED, 0.5), (OrderStatus.EXPIRED, 1.5)
    ]
    assert om.order("s-3").status is OrderStatus.CANCELED and math.isnan(om.order("s-3").venue_filled_qty)


def test_a_submit_and_its_decision_are_one_transaction(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    journal = Journal(path)
    cmd = SubmitOrder("s", IID, "a", OrderSide.BUY, 1.0, 7, 7)
    journal.record_command(cmd, "a")
    # Another connection (a crash, as far as the file is concerned) sees nothing of the order yet.
    assert journaled_ids(path) == []
    journal.record_event(OrderSubmitted("s", IID, "a", 7, 7))
    assert journaled_ids(path) == ["a"]
    journal.close()


def test_recovered_orders_keep_their_original_creation_time(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    journal.record_command(SubmitOrder("s", IID, "a", OrderSide.BUY, 1.0, 1_234, 1_234), "a")
    journal.record_event(OrderSubmitted("s", IID, "a", 1_240, 1_240))
    inst = make_instrument()
    om = OrderManager(MessageBus(), SimulatedClock(999_999))  # the restarted process's clock
    journal.replay(om, Portfolio({inst.instrument_id: inst}, 1_000.0), 999_999)
    assert om.order("a").ts_created == 1_234


def _gate_of(journal: Journal, clock: SimulatedClock, **limits: object) -> RiskGate:
    inst = make_instrument()
    bus = MessageBus()
    pf = Portfolio({inst.instrument_id: inst}, 10_000.0)
    gate = RiskGate(RiskConfig(**limits), pf, clock, bus)  # type: ignore[arg-type]
    journal.replay(OrderManager(bus, clock), pf, clock.now_ns(), risk=gate)
    return gate


def test_trading_state_and_breakers_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    clock = SimulatedClock(1_000)
    journal = Journal(path)
    gate = _gate_of(journal, clock, max_drawdown_pct=50.0)
    gate.on_price(IID, 100.0)
    gate.set_state(TradingState.HALTED, "operator: exchange incident")
    journal.close()
    journal = Journal(path)
    restarted = _gate_of(journal, clock, max_drawdown_pct=50.0)
    assert restarted.state == TradingState.HALTED  # a restart does not re-arm trading
    assert restarted.snapshot().manual_reason == "operator: exchange incident"
    assert restarted.snapshot().drawdown_peak == 10_000.0
    restarted.set_state(TradingState.ACTIVE, "operator: resume")
    journal.close()
    journal = Journal(path)
    assert _gate_of(journal, clock, max_drawdown_pct=50.0).state == TradingState.ACTIVE
    journal.close()


def test_journaled_messages_reach_the_callback_in_order(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    journal.record_command(SubmitOrder("s", IID, "a", OrderSide.BUY, 1.0, 1, 1, reason="why"), "a")
    journal.record_event(OrderSubmitted("s", IID, "a", 2, 2))
    fill = OrderFilled("s", IID, "a", "V", "T1", OrderSide.BUY, 1.0, 100.0, 0.0, Liquidity.TAKER, 3, 3)
    journal.record_event(OrderAccepted("s", IID, "a", "V", 3, 3))
    journal.record_event(fill)
    seen: list[object] = []
    inst = make_instrument()
    pf = Portfolio({inst.instrument_id: inst}, 1e6)
    journal.replay(OrderManager(MessageBus(), SimulatedClock(9)), pf, 9, on_message=seen.append)
    assert [type(m).__name__ for m in seen] == ["SubmitOrder", "OrderSubmitted", "OrderAccepted", "OrderFilled"]
    assert seen[-1] == fill


KILLED_IN_RISK_CHECK = textwrap.dedent(
    """
    import os, signal, sys
    from tradebus.engine.bus import MessageBus
    from tradebus.engine.clock import SimulatedClock
    from tradebus.engine.instrument import Instrument
    from tradebus.engine.messages import OrderSide, SubmitOrder
    from tradebus.engine.portfolio import Portfolio
    from tradebus.execution.engine import ExecutionEngine
    from tradebus.execution.journal import Journal
    from tradebus.execution.orders import OrderManager
    from tradebus.execution.simulated import SimulatedVenue
    from tradebus.risk.config import RiskConfig
    from tradebus.risk.gate import RiskGate

    class DyingGate(RiskGate):
        def check(self, cmd, open_orders=0):
            os.kill(os.getpid(), signal.SIGKILL)  # the process dies between the command and its decision

    inst = Instrument("BINANCE", "BTCUSDT", tick_size=0.01, lot_size=0.001)
    insts = {inst.instrument_id: inst}
    bus, clock = MessageBus(), SimulatedClock(1_000)
    pf = Portfolio(insts, 10_000.0)
    om = OrderManager(bus, clock)
    journal = Journal(sys.argv[1])
    engine = ExecutionEngine(bus, clock, insts, DyingGate(RiskConfig(), pf, clock, bus), om,
                             SimulatedVenue(clock, insts), pf, journal=journal)
    journal.replay(om, pf, 1_000)
    engine.submit(SubmitOrder("s", inst.instrument_id, "", OrderSide.BUY, 1.0, 1_000, 1_000))
    """
)


def test_sigkill_between_a_submit_and_its_decision_leaves_no_trace_of_the_order(tmp_path: Path) -> None:
    script = tmp_path / "dying.py"
    script.write_text(KILLED_IN_RISK_CHECK)
    path = tmp_path / "j.sqlite"
    proc = subprocess.run([sys.executable, str(script), str(path)], capture_output=True, timeout=120, check=False)
    assert proc.returncode == -9, proc.stderr.decode()
    journal = Journal(path)
    assert list(journal.entries()) == []  # never journaled, never sent: nothing to recover
    inst = make_instrument()
    om = OrderManager(MessageBus(), SimulatedClock(5_000))
    assert journal.replay(om, Portfolio({inst.instrument_id: inst}, 1_000.0), 5_000) == []
    assert om.orders() == [] and journal.epoch == 2
    journal.close()


def _accepted(i: int) -> OrderAccepted:
    return OrderAccepted("s", IID, f"c{i}", f"v{i}", 1_000 + i, 1_000 + i)


def test_a_daemon_journal_checkpoints_its_log_in_a_thread_and_commits_never_do(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    # A thread that waits an hour before its first checkpoint: whatever reaches the database meanwhile
    # a commit moved there. (Racing a short interval's thread against the writes made the log's size
    # depend on when it ran: a full checkpoint restarts the log.)
    journal = Journal(path, "NORMAL", checkpoint_every=3600.0)
    assert journal._db.execute("PRAGMA wal_autocheckpoint").fetchone() == (0,)
    base = path.stat().st_size
    for i in range(1_500):  # about 12 MiB of log: short of WAL_SIZE_LIMIT, past which a commit truncates it
        journal.record_event(_accepted(i))
    assert Path(f"{path}-wal").stat().st_size // 4096 > 100  # written to the log...
    assert path.stat().st_size == base  # ...and no commit checkpointed it into the database
    journal.close()

    journal = Journal(path, "NORMAL", checkpoint_every=0.05)
    base = path.stat().st_size
    for i in range(1_500, 4_500):
        journal.record_event(_accepted(i))
    deadline = time.monotonic() + 10.0
    while path.stat().st_size < base + 50 * 4096 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert path.stat().st_size >= base + 50 * 4096  # moved into the database by the thread, the writer still open
    threads = [t for t in threading.enumerate() if t.name.startswith("journal-checkpoint")]
    assert len(threads) == 1
    journal.close()
    assert not threads[0].is_alive()
    assert not Path(f"{path}-wal").exists()  # the writer closed last: its close removed the log
    reopened = Journal(path)
    assert len(list(reopened.entries())) == 4_500
    reopened.close()


SIGKILLED_WITH_CHECKPOINTS = textwrap.dedent(
    """
    import os, signal, sys, time
    from tradebus.engine.messages import OrderAccepted
    from tradebus.execution.journal import Journal

    journal = Journal(sys.argv[1], "NORMAL", checkpoint_every=0.01)
    for i in range(2_000):
        journal.record_event(OrderAccepted("s", "X.Y", f"c{i}", f"v{i}", i, i))
        if i == 1_000:
            time.sleep(0.2)  # let a checkpoint run in the middle
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_sigkill_of_a_journal_checkpointing_in_a_thread_loses_no_committed_entry(tmp_path: Path) -> None:
    script = tmp_path / "dying.py"
    script.write_text(SIGKILLED_WITH_CHECKPOINTS)
    path = tmp_path / "j.sqlite"
    proc = subprocess.run([sys.executable, str(script), str(path)], capture_output=True, timeout=120, check=False)
    assert proc.returncode == -9, proc.stderr.decode()
    journal = Journal(path)
    assert [e.message.client_order_id for e in journal.entries()] == [f"c{i}" for i in range(2_000)]
    journal.close()


# Bytes of log one commit may add past the limit: a submit and its decision write 2-3 pages.
_ONE_COMMIT = 8 * (4096 + 24)


def _write_orders(journal: Journal, first: int, n: int) -> list[int]:
    """Journal ``n`` submits with their decisions as fast as possible; return the size of the log after each."""
    wal = Path(f"{journal.path}-wal")
    sizes = []
    for i in range(first, first + n):
        journal.record_command(SubmitOrder("s", IID, f"c{i}", OrderSide.BUY, 1.0, i, i), f"c{i}")
        journal.record_event(OrderSubmitted("s", IID, f"c{i}", i, i))
        sizes.append(wal.stat().st_size)
    return sizes


def test_the_log_of_a_journal_written_faster_than_its_thread_checkpoints_stays_within_its_limit(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    # No round of the thread within the test: the log is bounded by the commits alone, at any rate.
    journal = Journal(path, "NORMAL", checkpoint_every=3_600.0, exclusive=True)
    n = 9_000  # ~9 KB of log each: ~80 MB, over 4 limits, if nothing checkpointed
    sizes = _write_orders(journal, 0, n)
    assert max(sizes) <= WAL_SIZE_LIMIT + _ONE_COMMIT
    # The log restarts at the file's start: the commits after the first restart overwrite the limit's blocks in
    # place (the file cut to the limit, never emptied), not extend a file truncated to nothing, a cost per commit.
    restarted = next(k for k in range(1, n) if sizes[k] < sizes[k - 1])
    assert min(sizes[restarted:]) == WAL_SIZE_LIMIT
    journal.close()
    reopened = Journal(path)
    assert [e.message.client_order_id for e in reopened.entries()] == [f"c{i}" for i in range(n) for _ in (0, 1)]
    reopened.close()


def test_a_reader_pinning_the_log_delays_its_checkpoint_without_failing_a_write(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    journal = Journal(path, "NORMAL", checkpoint_every=3_600.0)
    journal.record_event(_accepted(0))
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("BEGIN")
    assert reader.execute("SELECT count(*) FROM journal").fetchone() == (1,)  # a snapshot in the log, held
    warnings: list[str] = []
    sink = logger.add(warnings.append, level="WARNING", format="{message}")
    try:
        pinned = _write_orders(journal, 1, 3_000)  # ~27 MB: past the limit, not past it twice
        assert journal.failure is None
        assert pinned == sorted(pinned) and pinned[-1] > WAL_SIZE_LIMIT + _ONE_COMMIT  # never checkpointed
        assert len(warnings) == 1 and "another connection using the journal" in warnings[0], warnings
        reader.execute("COMMIT")
        reader.close()
        # Tried again once the log has grown by another limit, and nothing keeps it from completing now.
        sizes = _write_orders(journal, 3_001, 4_000)
        truncated = next(k for k in range(1, len(sizes)) if sizes[k] < sizes[k - 1])
        assert WAL_SIZE_LIMIT < sizes[truncated - 1] <= 2 * (WAL_SIZE_LIMIT + _ONE_COMMIT)
        assert max(sizes[truncated:]) <= WAL_SIZE_LIMIT + _ONE_COMMIT
        assert len(warnings) == 1
    finally:
        logger.remove(sink)
    journal.close()
    reopened = Journal(path)
    assert len(list(reopened.entries())) == 1 + 2 * 7_000
    reopened.close()


SIGKILLED_AFTER_TRUNCATING_ITS_LOG = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from tradebus.engine.messages import OrderAccepted
    from tradebus.execution.journal import WAL_SIZE_LIMIT, Journal

    journal = Journal(sys.argv[1], "NORMAL", checkpoint_every=3_600.0, exclusive=True)
    truncations, last = 0, 0
    for i in range(10_000):
        journal.record_event(OrderAccepted("s", "X.Y", f"c{i}", f"v{i}", i, i))
        size = Path(sys.argv[1] + "-wal").stat().st_size
        truncations += size < last
        last = size
    assert truncations >= 2, truncations
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_sigkill_of_a_journal_that_truncated_its_log_loses_no_committed_entry(tmp_path: Path) -> None:
    script = tmp_path / "dying.py"
    script.write_text(SIGKILLED_AFTER_TRUNCATING_ITS_LOG)
    path = tmp_path / "j.sqlite"
    proc = subprocess.run([sys.executable, str(script), str(path)], capture_output=True, timeout=120, check=False)
    assert proc.returncode == -9, proc.stderr.decode()
    journal = Journal(path)
    assert [e.message.client_order_id for e in journal.entries()] == [f"c{i}" for i in range(10_000)]
    journal.close()
