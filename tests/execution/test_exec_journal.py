"""Journal: every command/event with a monotonic seq, replay, and crash recovery without duplicates."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

from tradebus.engine.bus import MessageBus
from tradebus.engine.clock import SimulatedClock
from tradebus.engine.messages import OrderSide, OrderStatus, OrderType, SubmitOrder
from tradebus.engine.portfolio import Portfolio
from tradebus.execution.engine import ExecutionEngine
from tradebus.execution.journal import Journal
from tradebus.execution.orders import OrderManager
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
            self.kill_before, self.kill_after = set(kill_before), set(kill_after)

        def received(self):
            if not self.path.exists():
                return []
            return [json.loads(line) for line in self.path.read_text().splitlines()]

        def _die(self):
            import os, signal
            os.kill(os.getpid(), signal.SIGKILL)

        def submit(self, order):
            if order.client_order_id in self.kill_before:
                self._die()
            with self.path.open("a") as f:
                f.write(json.dumps({"coid": order.client_order_id, "vid": f"F-{order.client_order_id}"}) + "\\n")
            if order.client_order_id in self.kill_after:
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
    venue = FileVenue(sys.argv[2], clock, kill_before={"s-2"}, kill_after={"s-3"})
    engine = ExecutionEngine(bus, clock, insts, RiskGate(RiskConfig(), pf, clock, bus), om, venue, pf,
                             journal=Journal(sys.argv[1]))
    for _ in range(3):
        cmd = SubmitOrder("s", inst.instrument_id, om.next_client_order_id("s"), OrderSide.BUY, 1.0,
                          1_000, 1_000, OrderType.LIMIT, 90.0)
        engine.submit(cmd)   # s-1 goes through; s-2 dies before the send; s-3 dies after it
        if cmd.client_order_id == "s-2":
            break
    '''
)


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
    om, venue, engine, journal = _restart(tmp_path, journal_path, book)
    unknown = journal.replay(om, engine.portfolio, 5_000)
    assert [o.client_order_id for o in unknown] == ["s-1", "s-2"]
    for order in unknown:
        engine.resolve_unknown(order.client_order_id)
    assert om.order("s-1").status == OrderStatus.ACCEPTED
    assert om.order("s-2").status == OrderStatus.REJECTED and "never arrived" in om.order("s-2").reason
    assert [row["coid"] for row in venue.received()] == ["s-1"]  # nothing re-sent
    assert om.next_client_order_id("s") == "s-3"  # ids continue, never reused


def test_kill_after_send_before_ack_restart_finds_order_at_venue_and_does_not_resend(tmp_path: Path) -> None:
    journal_path, book = tmp_path / "journal.sqlite", tmp_path / "book.jsonl"
    child = CHILD.replace('kill_before={"s-2"}', "kill_before=set()").replace(
        'if cmd.client_order_id == "s-2":', 'if cmd.client_order_id == "s-9":'
    )
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
    assert [row["coid"] for row in venue.received()] == ["s-1", "s-2", "s-3"]


def test_second_restart_keeps_recovered_closed_orders_and_requeries_open_ones(tmp_path: Path) -> None:
    journal_path, book = tmp_path / "journal.sqlite", tmp_path / "book.jsonl"
    _run_child(tmp_path, journal_path, book)
    om, _, engine, journal = _restart(tmp_path, journal_path, book)
    for order in journal.replay(om, engine.portfolio, 5_000):
        engine.resolve_unknown(order.client_order_id)
    journal.close()
    om2, _, engine2, journal2 = _restart(tmp_path, journal_path, book)
    # s-2's recovery (REJECTED) was journaled; s-1 is open, so its fate is asked again.
    assert [o.client_order_id for o in journal2.replay(om2, engine2.portfolio, 6_000)] == ["s-1"]
    engine2.resolve_unknown("s-1")
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
    assert entries[0].message.client_order_id == "s-1"
    om2, pf2 = OrderManager(bus, clock), Portfolio(insts, 10_000.0)
    assert journal.replay(om2, pf2, 10) == []
    assert pf2.position(IID) == pf.position(IID) == 1.5
    assert pf2.cash == pf.cash
    assert [o.status for o in om2.orders()] == [OrderStatus.FILLED, OrderStatus.FILLED]
    assert json.dumps([o.filled_qty for o in om2.orders()]) == json.dumps([o.filled_qty for o in om.orders()])
