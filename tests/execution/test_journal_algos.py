"""Execution algorithms' entries in the journal (schema version 6) and the older tradebus that cannot read them.

``AlgoStarted`` and ``AlgoEnded`` entries are unknown to a tradebus of schema version 5: it must refuse
a journal holding them by its version, naming the file, not stop at the first such entry as of an
unknown message type. A version 5 journal (none of them) still opens, and its first write marks it 6.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from tradebus.engine.messages import AlgoEnded, AlgoStarted, OrderSide
from tradebus.errors import DataError
from tradebus.execution import journal as journal_module
from tradebus.execution.journal import SCHEMA_VERSION, Journal

from .conftest import IID

STARTED = AlgoStarted("s", IID, "twap1", "Twap", OrderSide.BUY, 0.04, 1, 1)
ENDED = AlgoEnded("s", IID, "twap1", "Twap", OrderSide.BUY, 0.04, "done", 0.04, 2, 2, ("c1",))


def version_5(path: Path) -> None:
    """Mark the journal at ``path`` as tradebus of schema version 5 left it (its tables are version 6's)."""
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = '5' WHERE key = 'schema_version'")
    db.commit()
    db.close()


def as_version_5_tradebus(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make this process read journals as tradebus of schema version 5 did: no execution algorithms' entries, no
    refused cancels."""
    monkeypatch.setattr(journal_module, "SCHEMA_VERSION", 5)
    monkeypatch.delitem(journal_module._TYPES, "AlgoStarted")
    monkeypatch.delitem(journal_module._TYPES, "AlgoEnded")
    monkeypatch.delitem(journal_module._TYPES, "OrderCancelRejected")


def test_a_journal_holding_algo_entries_is_refused_by_a_version_5_tradebus_by_its_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "journal.sqlite"
    journal = Journal(path)
    journal.record_command(STARTED, "")
    journal.record_command(ENDED, "")
    assert journal.schema_version == SCHEMA_VERSION == 6
    journal.close()

    as_version_5_tradebus(monkeypatch)
    newer = rf"journal {re.escape(str(path))}: schema version 6 is newer than this tradebus understands \(5\)"
    with pytest.raises(DataError, match=newer):
        Journal(path)


def test_a_version_5_journal_opens_and_its_first_algo_entry_marks_it_version_6(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "journal.sqlite"
    Journal(path).close()
    version_5(path)
    journal = Journal(path)
    assert journal.schema_version == 5 and list(journal.entries()) == []
    journal.record_command(STARTED, "")
    assert journal.schema_version == 6
    assert [e.message for e in journal.entries()] == [STARTED]
    journal.close()

    as_version_5_tradebus(monkeypatch)
    with pytest.raises(DataError, match="schema version 6 is newer"):
        Journal(path)
