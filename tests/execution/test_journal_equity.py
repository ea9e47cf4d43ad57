"""Equity samples in the journal (schema version 5): taken back by a restarted kernel, migrated into a v4 journal.

Each sample is committed as the kernel takes it, before it is appended to the run's results (a
daemon's ``equity.csv`` row follows): a process killed between two samples loses only what it would
have sampled next. A kernel restarted on the journal resumes the run's samples, span and counts.
"""

from __future__ import annotations

import math
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

from tradebus.engine.bus import MessageBus
from tradebus.engine.clock import SimulatedClock
from tradebus.engine.kernel import JournaledSample, Kernel
from tradebus.engine.portfolio import Portfolio
from tradebus.execution.journal import SCHEMA_VERSION, Journal
from tradebus.execution.orders import OrderManager

from .conftest import IID, make_instrument, quote, trade

SECOND = 1_000_000_000


def tables(path: Path) -> set[str]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        db.close()


def kernel_on(journal: Journal, *instruments: str) -> Kernel:
    insts = [make_instrument(symbol=iid.split(".")[0]) for iid in instruments] or [make_instrument()]
    return Kernel(insts, clock=SimulatedClock(0), journal=journal, equity_interval_ns=SECOND)


def test_a_restarted_kernel_resumes_the_journaled_samples_span_and_counts(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    journal = Journal(path)
    first = kernel_on(journal)
    journal.replay(first.orders, first.portfolio, 0)
    first.start()
    for i in range(5):  # a sample at 0 s, 1 s and 2 s (each taken at the next later message)
        first.process(trade(i * SECOND // 2, 100.0 + i))
    first.process(quote(5 * SECOND // 2, 99.0, 101.0))
    first.stop()  # and the last one at the last message's time
    assert [s.ts for s in first.result.equity] == [0, SECOND, 2 * SECOND, 5 * SECOND // 2]
    journal.close()

    journal = Journal(path)
    stored = journal.samples(JournaledSample)
    assert [r.sample for r in stored] == first.result.equity
    second = kernel_on(journal)
    journal.replay(second.orders, second.portfolio, 10 * SECOND)
    second.restore_samples(stored)
    result = second.result
    assert result.equity == first.result.equity
    assert (result.trades, result.quotes, result.start_ns, result.end_ns) == (5, 1, 0, 5 * SECOND // 2)
    assert (result.first_event_ns, result.last_event_ns) == (0, 2 * SECOND)  # trades only: the quote's span is apart
    assert second.next_sample_ns == 3 * SECOND
    second.start()
    second.process(trade(20 * SECOND, 110.0))  # after the gap: sampled at once, nothing in between
    second.process(trade(20 * SECOND + 1, 111.0))
    second.stop()
    assert [s.ts for s in result.equity][4:] == [20 * SECOND, 20 * SECOND + 1]
    assert (result.trades, result.first_event_ns, result.last_event_ns) == (7, 0, 20 * SECOND + 1)
    assert [r.sample for r in journal.samples(JournaledSample)] == result.equity
    journal.close()


def test_restored_marks_follow_the_instruments_by_name(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    first = kernel_on(journal, "AAA.BINANCE", "BBB.BINANCE")
    first.start()
    first.process(trade(0, 5.0, iid="BBB.BINANCE"))
    first.stop()
    [record] = journal.samples(JournaledSample)
    assert record.instruments == ("AAA.BINANCE", "BBB.BINANCE") and math.isnan(record.sample.marks[0])
    second = kernel_on(journal, "BBB.BINANCE", "CCC.BINANCE")  # the config changed its instruments
    second.restore_samples([record])
    assert second.result.equity[0].marks[0] == 5.0 and math.isnan(second.result.equity[0].marks[1])
    journal.close()


def test_a_restarted_kernel_keeps_the_first_prices_of_its_samples(tmp_path: Path) -> None:
    """BBB's first trade comes between samples: the journaled sample keeps its first price (buy & hold
    starts there); a restart on other instruments drops it with BBB's marks, and the restarted run
    repeats no first price of an instrument its restored samples price."""
    journal = Journal(tmp_path / "j.sqlite")
    first = kernel_on(journal, "AAA.BINANCE", "BBB.BINANCE")
    first.start()
    first.process(trade(0, 5.0, iid="AAA.BINANCE"))
    first.process(trade(SECOND // 4, 7.0, iid="BBB.BINANCE"))
    first.process(trade(SECOND // 2, 8.0, iid="BBB.BINANCE"))
    first.process(trade(SECOND, 6.0, iid="AAA.BINANCE"))
    first.stop()
    records = journal.samples(JournaledSample)
    assert [r.sample.first_prices for r in records] == [(), ((SECOND // 4, "BBB.BINANCE", 7.0),)]
    assert [r.sample.ts for r in records] == [0, SECOND] and records[1].sample.marks == (6.0, 8.0)
    same = kernel_on(journal, "AAA.BINANCE", "BBB.BINANCE")
    same.restore_samples(records)
    assert [s.first_prices for s in same.result.equity] == [r.sample.first_prices for r in records]
    same.start()
    same.process(trade(3 * SECOND, 9.5, iid="AAA.BINANCE"))
    same.process(trade(3 * SECOND + SECOND // 4, 9.0, iid="BBB.BINANCE"))  # its first trade in this process
    same.process(trade(4 * SECOND, 9.7, iid="AAA.BINANCE"))
    same.stop()
    assert [s.ts for s in same.result.equity[2:]] == [3 * SECOND, 4 * SECOND]
    assert [s.first_prices for s in same.result.equity[2:]] == [(), ()]
    other = kernel_on(journal, "AAA.BINANCE", "CCC.BINANCE")  # the config dropped BBB
    other.restore_samples(records)
    assert [s.first_prices for s in other.result.equity] == [(), ()]
    journal.close()


def version_4(path: Path) -> None:
    """Make the journal at ``path`` as tradebus of schema version 4 left it: no equity table."""
    db = sqlite3.connect(path)
    db.execute("DROP TABLE equity")
    db.execute("UPDATE meta SET value = '4' WHERE key = 'schema_version'")
    db.commit()
    db.close()


def test_a_version_4_journal_is_read_as_it_is_and_migrated_by_its_first_write(tmp_path: Path) -> None:
    path = tmp_path / "v4.sqlite"
    Journal(path).close()
    version_4(path)
    reader = Journal(path)
    assert reader.schema_version == 4 and reader.samples(JournaledSample) == []
    reader.close()
    assert "equity" not in tables(path)  # only read: the tradebus that wrote it still opens it

    journal = Journal(path)
    inst = make_instrument()
    journal.replay(OrderManager(MessageBus(), SimulatedClock(0)), Portfolio({IID: inst}, 1_000.0), 0)  # writes
    assert journal.schema_version == SCHEMA_VERSION == 6 and "equity" in tables(path)
    kernel = kernel_on(journal)
    kernel.start()
    kernel.process(trade(0, 100.0))
    kernel.stop()
    assert [r.sample for r in journal.samples(JournaledSample)] == kernel.result.equity
    journal.close()


def test_a_sample_is_committed_before_it_reaches_the_results(tmp_path: Path) -> None:
    """A process killed (SIGKILL) right after a sample was appended to its results (a daemon's equity.csv row)
    leaves that sample in the journal."""
    path = tmp_path / "j.sqlite"
    child = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
        from tests.execution.conftest import make_instrument, trade
        from tradebus.engine.clock import SimulatedClock
        from tradebus.engine.kernel import Kernel
        from tradebus.execution.journal import Journal

        class Killing(list):
            def append(self, sample):
                super().append(sample)
                if len(self) == 2:
                    os.kill(os.getpid(), signal.SIGKILL)

        kernel = Kernel([make_instrument()], clock=SimulatedClock(0), journal=Journal({str(path)!r}),
                        equity_interval_ns={SECOND})
        kernel.result.equity = Killing()
        kernel.start()
        for i in range(10):
            kernel.process(trade(i * {SECOND}, 100.0 + i))
    """)
    proc = subprocess.run([sys.executable, "-c", child], capture_output=True, timeout=120)
    assert proc.returncode == -9, proc.stderr.decode()
    journal = Journal(path)
    assert [r.sample.ts for r in journal.samples(JournaledSample)] == [0, SECOND]
    journal.close()
