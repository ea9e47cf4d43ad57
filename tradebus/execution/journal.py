"""SQLite journal of every order command and event (paper and live daemons).

Each entry gets a monotonically increasing ``seq``. The execution engine writes a command
*before* it is sent to the venue and every event as it is applied. A ``SubmitOrder`` and the
risk decision that follows it (``OrderSubmitted`` or ``OrderDenied``) are one transaction,
committed before the venue is called: an order is journaled with its decision or not at all.
Every other entry is committed before the call returns. A crash (even SIGKILL) therefore
loses nothing that left the process.

After a crash, :meth:`Journal.replay` rebuilds the order manager and the portfolio from the
journal (recovered orders keep their original creation time), begins a new epoch of client
order ids (:mod:`tradebus.execution.client_ids`), restores the risk gate's trading and breaker
state, hands every journaled message to an optional callback (the kernel adds the journaled
fills to the run's results) and then settles every order whose fate the journal cannot tell:

* an order whose command was journaled but with no risk decision (``INITIALIZED``; only an
  exception between the two can leave one) never left the process: it is closed as
  ``DENIED`` with the reason ``"recovered: process stopped before the order was sent"``;
* every order still open (``SUBMITTED`` and possibly sent, or working at the venue) becomes
  ``UNKNOWN`` (``OrderTimedOut``) and is returned, to be resolved by querying the venue
  (:meth:`ExecutionEngine.resolve_unknown`).

Nothing is ever re-sent by the recovery, so it cannot invent or duplicate an order.

A write that fails (a full disk: ``database or disk is full``; a file size limit: ``disk I/O
error``) is the journal's :attr:`Journal.failure`, a :class:`~tradebus.errors.DataError` naming the
file and SQLite's error: the open transaction is rolled back (a ``SubmitOrder`` goes with its
decision: the order is not journaled, and the execution engine, which journals before it calls the
venue, does not send it), ``on_failure`` is called once, and this write and every later one raise
it. The journal on disk holds what was committed before, nothing half-written.

Wallet movements outside fills, borrowing interest (``InterestCharged``) and funding
(``FundingPaid``), are journaled as events with an empty client order id as they happen,
committed like fills (:meth:`Journal.record_wallet`). The replay books them on the portfolio in
``seq`` order with the fills, so the restored wallet is the stopped process's, and hands them to
``on_message`` (the kernel adds them to the run's interest and funding results).

Storage (WAL mode), schema version :data:`SCHEMA_VERSION`:

* ``meta(key, value)``: ``schema_version``, ``run_id`` (drawn when the journal is created; the
  run component of the client order ids), ``epoch`` (incremented by every :meth:`replay`),
  ``mode``, ``venue``, ``market``, ``environment`` (what writes the journal: :class:`JournalOwner`)
  and ``account`` (the live venue account's id, where the venue reports one:
  :meth:`Journal.check_account`), ``funding_due`` (the fundings announced or held and not paid yet, msgpack
  :class:`~tradebus.engine.perpetuals.FundingDue` entries: :meth:`Journal.save_funding_due`), ``venue_pause`` (the last pause the venue's rate limit asked a live
  daemon for, a 429 or an IP ban, as JSON :class:`VenuePause`; empty once a request was answered after it:
  :meth:`Journal.save_venue_pause`), and ``first_event_ns`` (the venue time of the runs' earliest trade or bar:
  :meth:`Journal.save_first_event`);
* ``journal(seq INTEGER PRIMARY KEY AUTOINCREMENT, kind, type, client_order_id, ts, payload)``,
  the message encoded as msgpack (NaN-safe); ``ContingentLinked`` entries (a bracket's,
  OCO group's, trailing stop's or GTD order's links, :mod:`tradebus.execution.contingent`)
  are journaled as commands: the replay hands them to ``on_message`` and the kernel gives them
  to its contingent-order manager at start; ``AlgoStarted`` and ``AlgoEnded`` entries (an
  execution algorithm's start and end) are journaled as commands too: the kernel ends at start the
  algorithms the stopped process left working (:mod:`tradebus.strategies.algo_recovery`);
* ``risk_state(id = 1, ts, payload)``: the risk gate's last trading and breaker state;
* ``equity(seq INTEGER PRIMARY KEY AUTOINCREMENT, ts, payload)``: every equity sample the kernel
  takes (at its ``equity_interval``, and the last one at a clean stop), msgpack, committed as it is
  taken (:meth:`Journal.record_sample`): the payload is the kernel's
  :class:`~tradebus.engine.kernel.JournaledSample`, the sample with the run's span and counts of
  market data at that time. A restart reads them back (:meth:`Journal.samples`), so the restarted
  run's ``equity.csv`` and metrics cover every session; a process killed (even by SIGKILL) loses
  only what it would have sampled after its last sample.

A journal of a newer schema, or an SQLite database of other tables, is refused
(:class:`~tradebus.errors.DataError` naming the file) and left as it was; an older journal is
read as it is and migrated in place by its first write (an opener that only reads it, or that the
replay's checks refuse, leaves it as it was, so the tradebus that wrote it still opens it): version 1 (no ``meta`` table) gets the tables of version 2, and
version 2 (whose entries are order commands and events only) is marked version 3, so that an
older tradebus refuses the journal by its version rather than at its first wallet entry; version 3
is marked version 4 (``meta`` names its owner), so that an older tradebus, which would not compare
the owner, refuses it; version 4 gets the ``equity`` table and is marked version 5, so that an older
tradebus, which would trade on without journaling its samples (a later restart's outputs would then
lack that session's equity), refuses it; version 5 (whose entries hold no execution algorithm's start or
end, nor any cancel the venue refused: ``OrderCancelRejected``, which the replay hands to ``on_message`` and
which leaves its order as it was) is marked version 6, so that an older tradebus refuses the journal by its version rather than
stopping at its first ``AlgoStarted`` or ``OrderCancelRejected`` entry as of an unknown message type. A field added to a journaled message with a default (``OrderResolved.filled_qty``,
the venue's filled quantity in a query's answer) changes no version: payloads are msgpack maps, so an
earlier journal's entry reads as the default and an earlier tradebus ignores the field. Nor does an
``OrderResolved`` repeating a CANCELED or EXPIRED order's status: the venue's filled quantity a query
told after a close that did not (:meth:`~tradebus.execution.orders.OrderManager.note_venue_filled`), which
an earlier tradebus drops as a repeat (it queries the order again at its start, as it did).

What writes a journal is part of it. An opener that names its :class:`JournalOwner` (every daemon
and every ``live-*`` command) is refused, before anything is written to the journal, by a journal
written by another mode (a paper journal opened by a live run, or a live journal by a paper run),
environment (testnet, mainnet) or live venue account (venue, market, account id): its orders and
positions are not that account's, and a live run or ``live-kill --flatten`` would trade on them.
A new journal is stamped with its owner when it is created; one that names none (an earlier
tradebus's) is taken by the first opener that names one, and stamped with that opener's first write
(logged; not at open: a journal the replay then refuses, another config's, is left as it was), unless
the opener is live and the journal's orders are a paper run's (the simulated venue's ``SIM-<n>``
venue order ids or ``SIM-T<n>`` trade ids): that one is refused like a paper journal; and to a paper
opener, one whose orders an exchange numbered (a venue order id of another form, the simulated
liquidation's ``liquidation-<n>`` aside) is refused like a live journal. An
opener that names none (a tool reading the journal) is neither checked nor stamps it.

Measured (``bench/journal.py``, ``synchronous=NORMAL``, 2,000 orders of 4 entries, medians of
5, on a loaded 2-core machine): a commit dominates an entry's cost, so the submit path
(``SubmitOrder`` + ``OrderSubmitted``, one commit) costs 1.2-1.6 bare autocommitted SQLite
inserts where it cost 2.0-2.3 with a commit per entry, and an entry on average 0.8 of a bare
insert where it cost 1.0-1.1.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import msgspec
from loguru import logger

from tradebus.account import MarginAccount
from tradebus.engine import messages as _messages
from tradebus.engine.perpetuals import LIQUIDATION_ID_PREFIX, FundingDue
from tradebus.engine.portfolio import Portfolio
from tradebus.errors import DataError
from tradebus.execution.client_ids import new_run_id
from tradebus.execution.orders import Order, OrderManager, OrderResolved, OrderTimedOut
from tradebus.execution.simulated import TRADE_ID_PREFIX, VENUE_ORDER_ID_PREFIX, simulated_id_number
from tradebus.locks import take_lock
from tradebus.risk.breakers import BreakerState

if TYPE_CHECKING:
    from tradebus.risk.gate import RiskGate

T = TypeVar("T")

__all__ = ["SCHEMA_VERSION", "SQLITE_COMPANIONS", "WAL_SIZE_LIMIT", "Journal", "JournalEntry", "JournalOwner", "VenuePause"]

#: Version of the journal's tables written by this code (1: ``journal`` only; 2: ``meta`` and
#: ``risk_state`` added; 3: ``InterestCharged`` and ``FundingPaid`` entries; 4: ``meta`` names
#: the journal's owner; 5: ``equity`` samples; 6: ``AlgoStarted``, ``AlgoEnded`` and ``OrderCancelRejected`` entries).
SCHEMA_VERSION = 6

#: Bytes of write-ahead log (the ``-wal`` file) past which the commit that passed them checkpoints
#: the whole log into the database and restarts it (see ``Journal(checkpoint_every=...)``); also
#: SQLite's ``journal_size_limit``, the size the file is cut to when SQLite restarts the log. A
#: restarting checkpoint cost a commit 10-45 ms whether the log held 4 or 16 MiB (its ``fsync``
#: calls dominate), so the larger limit makes a quarter as many of them (an order, a submit and
#: its decision, writes 8 KiB of log).
WAL_SIZE_LIMIT = 16 * 1024 * 1024
#: The files SQLite keeps beside a journal ``<path>``, named ``<path><suffix>``: its write-ahead log, the log's
#: shared-memory index, and the rollback journal of the writes made before WAL mode is on (a new journal's tables).
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")

# How long the checkpoint of an oversized log waits for a reader of the log to finish before the
# commit goes on without it (the connection's busy timeout otherwise, 5 s, is for writers).
_CHECKPOINT_WAIT_MS = 100
_BUSY_TIMEOUT_MS = 5_000

_TYPES: dict[str, type] = {
    name: getattr(_messages, name)
    for name in (
        "SubmitOrder",
        "CancelOrder",
        "ModifyOrder",
        "OrderDenied",
        "OrderSubmitted",
        "OrderAccepted",
        "OrderRejected",
        "OrderTriggered",
        "OrderModified",
        "OrderModifyRejected",
        "OrderCancelRejected",
        "OrderFilled",
        "OrderCanceled",
        "OrderExpired",
        "ContingentLinked",
        "AlgoStarted",
        "AlgoEnded",
        "InterestCharged",
        "FundingPaid",
    )
} | {"OrderTimedOut": OrderTimedOut, "OrderResolved": OrderResolved}

_JOURNAL_TABLE = """
CREATE TABLE IF NOT EXISTS journal (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('command', 'event')),
    type TEXT NOT NULL,
    client_order_id TEXT NOT NULL,
    ts INTEGER NOT NULL,
    payload BLOB NOT NULL
)
"""
_META_TABLE = "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
_RISK_TABLE = """
CREATE TABLE IF NOT EXISTS risk_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    ts INTEGER NOT NULL,
    payload BLOB NOT NULL
)
"""
_EQUITY_TABLE = """
CREATE TABLE IF NOT EXISTS equity (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    ts INTEGER NOT NULL,
    payload BLOB NOT NULL
)
"""
_INSERT = "INSERT INTO journal (kind, type, client_order_id, ts, payload) VALUES (?, ?, ?, ?, ?)"


class JournalOwner(msgspec.Struct, frozen=True):
    """What writes a journal: a paper daemon, or a live one on a venue account (see the module docstring).

    Parameters
    ----------
    mode
        ``"paper"`` (the simulated venue) or ``"live"`` (an exchange account).
    venue, market
        Live: the account's venue and market (``binance``, ``spot``). Paper: the venues and kinds
        of the config's instruments, kept for the record only (the replay's instrument check
        covers a paper config's changes).
    environment
        Live: ``testnet`` or ``mainnet``. Paper: ``simulated``.
    """

    mode: Literal["paper", "live"]
    venue: str
    market: str
    environment: str

    def __str__(self) -> str:
        return f"{self.mode} ({self.venue} {self.market}, {self.environment})"

    def differences(self, other: JournalOwner) -> list[str]:
        """The fields in which ``other`` is another owner than this one (``[]``: the same)."""
        compared = ("mode", "environment") if "paper" in (self.mode, other.mode) else _OWNER_KEYS
        return [key for key in compared if getattr(self, key) != getattr(other, key)]


_OWNER_KEYS = ("mode", "venue", "market", "environment")
# The meta row holding the last rate-limit pause the venue asked for (Journal.venue_pause).
_VENUE_PAUSE_KEY = "venue_pause"
_FIRST_EVENT_KEY = "first_event_ns"
# The meta row holding the fundings announced or held and not paid yet (Journal.funding_due).
_FUNDING_DUE_KEY = "funding_due"


class VenuePause(msgspec.Struct, frozen=True):
    """A pause the venue's rate limit asked for (a 429, an IP ban), kept across restarts (:attr:`Journal.venue_pause`).

    Parameters
    ----------
    observed
        When the answer asking for it came, epoch seconds (the rate budget's clock, the wall clock).
    until
        When it ends, epoch seconds (the same clock).
    reason
        What it is, as the rate budget names it (``"IP banned (418, code -1003)"``).
    """

    observed: float
    until: float
    reason: str


class JournalEntry(msgspec.Struct, frozen=True):
    """One journaled command or event."""

    seq: int
    kind: Literal["command", "event"]
    message: Any


class Journal:
    """Append-only SQLite journal of order commands and events.

    Parameters
    ----------
    path
        Database file (created if missing).
    synchronous
        SQLite ``synchronous`` pragma: ``"FULL"`` (default) survives power loss, ``"NORMAL"``
        survives a process crash only.
    checkpoint_every
        Seconds between checkpoints of the write-ahead log into the database, made by a
        thread of its own on its own connection (``None``: SQLite's automatic checkpoint, run
        by the commit that fills 1,000 pages of log). A daemon sets it so that no entry waits
        for a checkpoint: the one its commit would run costs milliseconds (a copy of the log
        and an ``fsync`` of the database), far above a commit's tens of microseconds. Either
        way every committed entry is in the database file or its log, so a crash loses none.

        The thread's checkpoints never block a commit, but SQLite restarts the log only once
        a checkpoint has copied all of it, which one that commits land in the middle of never
        does: under a sustained write rate the log would grow without bound. The commit that
        takes the log past :data:`WAL_SIZE_LIMIT` therefore waits for a ``RESTART``
        checkpoint (milliseconds to tens of them: what the thread has not yet copied and the
        ``fsync`` calls), which empties the log: the next commit writes from the file's start,
        cutting it to the limit; the log stays within the limit, one commit and what is
        committed while the thread ends a checkpoint it is in. The file is restarted, not
        truncated to nothing (``TRUNCATE``): the commits then overwrite the limit's blocks of
        the file in place, where each one after a truncation extended it, which cost a commit
        about a third more at the median and at p99 (``bench/market_data_latency.py``).
        Another connection using the journal (a reader holding a snapshot in the log) is
        waited for 0.1 s at most: the checkpoint is then left, with a warning, for when the
        log has grown by another :data:`WAL_SIZE_LIMIT`. The commit is kept either way.
        Measured (a submit and its decision per order, ``checkpoint_every=0.5``, a loaded
        2-core machine): at 1,000 orders/s the log reached 90 MB in 10 s and now peaks at
        16.8 MB, one order in about 2,000 waiting 20-45 ms; at 25 orders/s nothing changes.
    exclusive
        Hold an advisory lock (``flock``) on the file while open, as a daemon trading on the
        journal does: a second exclusive opener (another daemon) is refused, naming the process
        that holds the lock (pid, host and command line, where Linux's ``/proc/locks`` shows it). Tools that only read
        or set the trading state (``live-kill``, ``live-resume``) open it without the lock. The
        lock goes with the process, so a killed daemon never leaves it behind.
    on_failure
        Called once with :attr:`failure` when a write fails (from the code that wrote: it must
        not raise); the write raises it too. A daemon stops on it.
    owner
        What opens the journal to write it (a daemon, a ``live-*`` command): a journal of another
        owner is refused, one that names none is stamped with it by its first write. ``None``: not
        checked (a tool reading the journal).
    run_id
        The run component of client order ids a new file takes (eight base-36 digits; ``None``: drawn at
        random, as a daemon's journal does). A replay of a later daemon session journals the earlier ones
        with :data:`~tradebus.execution.client_ids.BACKTEST_RUN_ID`, so its ids are the same on every run.
        An existing journal keeps its own.

    Raises
    ------
    DataError
        The file is not a journal (another SQLite database included), a damaged one (truncated,
        pages overwritten), a journal of a newer schema version, a journal of another ``owner``
        (names what wrote it and what opens it), one that names none whose orders a paper run's
        simulated venue numbered while ``owner`` is live, or an exchange while ``owner`` is paper (names
        the first such entry), or (``exclusive``) one another daemon has open
        (names the file); the file is left as it was.
    """

    def __init__(
        self,
        path: str | Path,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
        checkpoint_every: float | None = None,
        *,
        exclusive: bool = False,
        on_failure: Callable[[DataError], None] | None = None,
        owner: JournalOwner | None = None,
        run_id: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.on_failure = on_failure
        #: Called before each write (a daemon flushes its recording: the frames an entry was decided on are on
        #: disk before the entry, so a replay of a killed session rebuilds every order its journal holds).
        self.before_write: Callable[[], None] | None = None
        self.owner = owner
        self._new_run_id = run_id
        #: The first write that failed (names the file and SQLite's error); every later write raises it.
        self.failure: DataError | None = None
        # Taken before SQLite opens the file: closing this descriptor while SQLite holds its own
        # (POSIX) locks on the file would drop them, so it is closed only after the database.
        self._lock_fd = _lock(self.path) if exclusive else None
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, timeout=_BUSY_TIMEOUT_MS / 1000)
        except sqlite3.Error as exc:
            self._unlock()
            raise DataError(f"journal {self.path}: cannot open: {exc}") from exc
        self._closed = False
        self._checkpointer: _Checkpointer | None = None
        try:
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            self._meta = self._open_schema()  # before WAL mode: a file refused here is left as it was
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
            if checkpoint_every is not None:
                self._db.execute("PRAGMA wal_autocheckpoint=0")
                self._checkpointer = _Checkpointer(self.path, checkpoint_every)
                self._checkpointer.start()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            self._unlock()
            raise _open_error(self.path, exc) from exc
        except DataError:
            self._db.close()
            self._unlock()
            raise
        self._wal_path = Path(f"{self.path}{SQLITE_COMPANIONS[0]}")
        self._wal_threshold = WAL_SIZE_LIMIT
        self._encoder = msgspec.msgpack.Encoder()
        self._risk_type = msgspec.msgpack.Decoder(BreakerState)

    def _open_schema(self) -> dict[str, str]:
        """Create a new journal's tables, or check an existing journal's; return the ``meta`` rows.

        An older journal is only read here: :meth:`_upgrade` migrates it with its first write.
        """
        db = self._db
        self._tables = tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if tables and not tables & {"journal", "meta"}:
            raise DataError(
                f"journal {self.path}: not a tradebus journal: an SQLite database of other tables "
                f"({', '.join(sorted(tables))}); give the journal a file of its own"
            )
        meta: dict[str, str] = {}
        if "meta" in tables:
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
            version = int(meta.get("schema_version", "0"))
            if version > SCHEMA_VERSION:
                raise DataError(
                    f"journal {self.path}: schema version {version} is newer than this tradebus "
                    f"understands ({SCHEMA_VERSION}); upgrade tradebus or use another journal file"
                )
            self._check_owner(meta)
        if "journal" in tables and "mode" not in meta:
            self._check_unowned()
        if tables:
            self._outdated = int(meta.get("schema_version", "0")) < SCHEMA_VERSION
            # Version 1 has no meta: its run id is drawn now and stored by the migration.
            return {"run_id": new_run_id(), "epoch": "0", "schema_version": "1"} | meta
        meta = self._migrate({} if self._new_run_id is None else {"run_id": self._new_run_id})  # a new file
        if self.owner is not None:
            meta |= self._store_owner(self.owner)
        db.execute("COMMIT")
        return meta

    def _migrate(self, meta: Mapping[str, str]) -> dict[str, str]:
        """Add what an older journal (or a new file) lacks and mark it :data:`SCHEMA_VERSION`; return its ``meta``.

        ``meta``: the rows read at open (a stored row wins). Begins the transaction (``BEGIN IMMEDIATE``)
        the caller commits; rolls it back if it raises. Versions 1 (a journal table only) to 5 differ
        from version 6 by tables and ``meta`` rows only.
        """
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(_JOURNAL_TABLE)
            db.execute(_META_TABLE)
            db.execute(_RISK_TABLE)
            db.execute(_EQUITY_TABLE)
            stored = dict(db.execute("SELECT key, value FROM meta").fetchall())
            self._check_owner(stored)  # another opener may have stamped it since it was read
            migrated = {"run_id": new_run_id(), "epoch": "0"} | dict(meta) | stored
            migrated["schema_version"] = str(SCHEMA_VERSION)
            db.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", sorted(migrated.items()))
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self._outdated = False
        self._tables = {"journal", "meta", "risk_state", "equity"}
        return migrated

    def _store_owner(self, owner: JournalOwner) -> dict[str, str]:
        """Write ``owner``'s ``meta`` rows (in the caller's transaction); return them."""
        rows = {key: getattr(owner, key) for key in _OWNER_KEYS}
        self._db.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", sorted(rows.items()))
        return rows

    def _check_owner(self, meta: Mapping[str, str]) -> None:
        """Refuse a journal whose stored owner is not :attr:`owner` (nothing is written before)."""
        if self.owner is None or "mode" not in meta:
            return
        stored = JournalOwner(**{key: meta.get(key, "") for key in _OWNER_KEYS})  # type: ignore[arg-type]
        differences = stored.differences(self.owner)
        if differences:
            raise DataError(
                f"journal {self.path}: written by a {stored} run, opened by a {self.owner} run "
                f"({', '.join(differences)} differ); its orders and positions are not this account's: nothing was "
                "written or sent. Give this config a journal of its own"
            )

    def _check_unowned(self) -> None:
        """Refuse a journal naming no owner whose orders the venue of another mode than :attr:`owner`'s numbered.

        Such a journal (an earlier tradebus's) was written by a paper run if its venue order ids are
        ``SIM-<n>`` or its trade ids ``SIM-T<n>``, a form no exchange gives; by a live run if they are of
        another form (the simulated liquidation's ``liquidation-<n>`` aside). Nothing is written before.
        """
        if self.owner is None:
            return
        live = self.owner.mode == "live"
        names = [name for name, cls in _TYPES.items() if "venue_order_id" in cls.__struct_fields__]
        rows = self._db.execute(
            f"SELECT seq, type, client_order_id, payload FROM journal WHERE kind = 'event' AND type IN "
            f"({', '.join('?' * len(names))}) ORDER BY seq",
            names,
        )
        for seq, name, client_order_id, payload in rows:
            try:
                msg = msgspec.msgpack.decode(payload, type=_TYPES[name])
            except msgspec.DecodeError as exc:
                raise DataError(f"journal {self.path}: seq {seq}: bad {name} payload: {exc}") from exc
            sign = _paper_sign(msg) if live else _live_sign(msg)
            if not sign:
                continue
            if live:
                written_by = "the simulated venue of a paper run numbered its orders"
                whose = "a paper run's orders and positions"
                writer = "paper"
            else:
                written_by = "an exchange numbered its orders, not the simulated venue of a paper run"
                whose = "a live account's orders and positions (and the live run would then be refused its journal)"
                writer = "live"
            raise DataError(
                f"journal {self.path}: it names no owner (an earlier tradebus wrote it), and {written_by} (seq {seq}, "
                f"order {client_order_id}: {sign}); a {self.owner} run would trade on {whose}: nothing was written or "
                f"sent. Give this config a journal of its own (the {writer} config that wrote it still opens it)"
            )

    # ------------------------------------------------------------------ meta

    @property
    def schema_version(self) -> int:
        """Schema version of the file (an older one becomes :data:`SCHEMA_VERSION` with the first write)."""
        return int(self._meta["schema_version"])

    @property
    def run_id(self) -> str:
        """The journal's run id (the run component of its client order ids)."""
        return self._meta["run_id"]

    @property
    def epoch(self) -> int:
        """The latest epoch begun on this journal (0 before the first :meth:`begin_epoch`)."""
        return int(self._meta["epoch"])

    @property
    def written_by(self) -> JournalOwner | None:
        """The journal's owner as stored (``None``: it names none, see the module docstring)."""
        if "mode" not in self._meta:
            return None
        return JournalOwner(**{key: self._meta.get(key, "") for key in _OWNER_KEYS})  # type: ignore[arg-type]

    @property
    def account(self) -> str:
        """The live venue account id stored by :meth:`check_account` (``""``: none known)."""
        return self._meta.get("account", "")

    def check_account(self, account_id: str) -> None:
        """Refuse the journal of another venue account; store ``account_id`` in a journal that holds none.

        Call it with the id the venue reports for the keys, before anything is sent. An empty
        ``account_id`` (the venue reports none) is not checked.

        Raises
        ------
        DataError
            The journal holds another account's id (names both), or it cannot be written
            (:attr:`failure`).
        """
        stored = self.account
        if not account_id or stored == account_id:
            return
        if stored:
            raise DataError(
                f"journal {self.path}: written for venue account {stored}, opened with the keys of account "
                f"{account_id}; its orders and positions are not this account's: nothing was sent. "
                "Give this account's config a journal of its own, or use the keys of account " + stored
            )
        self._set_meta("account", account_id)

    @property
    def venue_pause(self) -> VenuePause | None:
        """The last pause the venue's rate limit asked of a daemon on this journal (:meth:`save_venue_pause`), or ``None``.

        Raises
        ------
        DataError
            An undecodable stored pause (names the file).
        """
        stored = self._meta.get(_VENUE_PAUSE_KEY)
        if not stored:
            return None
        try:
            return msgspec.json.decode(stored, type=VenuePause)
        except msgspec.DecodeError as exc:
            raise DataError(f"journal {self.path}: bad {_VENUE_PAUSE_KEY} in its meta table: {exc}") from exc

    def save_venue_pause(self, pause: VenuePause | None) -> None:
        """Store the pause the venue's rate limit asks for (``None``: the last one is over), for a restart to wait out.

        Committed at once, as a ``meta`` row (an earlier tradebus ignores it: no schema version).

        Raises
        ------
        DataError
            The journal cannot be written (:attr:`failure`).
        """
        self._set_meta(_VENUE_PAUSE_KEY, "" if pause is None else msgspec.json.encode(pause).decode())

    def funding_due(self) -> list[FundingDue]:
        """The fundings announced or held and not paid yet when a daemon on this journal last changed them (``[]``: none).

        Raises
        ------
        DataError
            An undecodable stored list (names the file).
        """
        stored = self._meta.get(_FUNDING_DUE_KEY)
        if not stored:
            return []
        try:
            return msgspec.msgpack.decode(stored, type=list[FundingDue])
        except (msgspec.DecodeError, TypeError) as exc:
            raise DataError(f"journal {self.path}: bad {_FUNDING_DUE_KEY} in its meta table: {exc}") from exc

    def first_event(self) -> int | None:
        """The venue time of the earliest trade or bar of the runs on this journal, as last stored (``None``: none yet)."""
        stored = self._meta.get(_FIRST_EVENT_KEY)
        if stored is None:
            return None
        try:
            return int(stored)
        except ValueError:
            raise DataError(f"journal {self.path}: bad {_FIRST_EVENT_KEY} in its meta table: {stored!r}") from None

    def save_first_event(self, ts_event: int) -> None:
        """Store the venue time of the run's earliest trade or bar (each time an earlier one comes: once, unless the
        venue's times go back): a process killed before the equity sample that would journal its span leaves the span's
        beginning here for its restart.

        Committed at once, as a ``meta`` row (an earlier tradebus ignores it: no schema version).

        Raises
        ------
        DataError
            The journal cannot be written (:attr:`failure`).
        """
        self._set_meta(_FIRST_EVENT_KEY, str(ts_event))

    def save_funding_due(self, due: list[FundingDue]) -> None:
        """Store the fundings announced or held and not paid yet (replacing the last list), for a restart to settle.

        Committed at once, as a ``meta`` row (msgpack: a held funding's mark may be NaN); an earlier
        tradebus ignores it, as it did these fundings (no schema version). A payment is journaled
        (:meth:`record_wallet`) before the list without it is stored: a restart skips a stored funding
        whose payment the journal holds.

        Raises
        ------
        DataError
            The journal cannot be written (:attr:`failure`).
        """
        self._set_meta(_FUNDING_DUE_KEY, msgspec.msgpack.encode(due) if due else b"")

    def _set_meta(self, key: str, value: str | bytes) -> None:
        """Store (and commit at once) the ``meta`` row ``key``; raises :class:`DataError` as the journal's writes do."""
        try:
            self._check_writable()
            self._commit()
            self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))
        except sqlite3.Error as exc:
            raise self._failed(exc) from None
        self._meta[key] = value  # type: ignore[assignment]

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def begin_epoch(self) -> int:
        """Begin (and commit) the next epoch of client order ids; return it.

        Raises
        ------
        DataError
            The journal cannot be written (:attr:`failure`).
        """
        epoch = self.epoch + 1
        try:
            self._check_writable()
            self._commit()
            self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('epoch', ?)", (str(epoch),))
            self._bound_log()
        except sqlite3.Error as exc:
            raise self._failed(exc) from None
        self._meta["epoch"] = str(epoch)
        return epoch

    # ------------------------------------------------------------------ writing

    def record_command(self, cmd: Any, client_order_id: str) -> int:
        """Journal a command (with the client order id it was given); return its ``seq``.

        A ``SubmitOrder`` opens a transaction that its decision event commits (see the module
        docstring); any other command is committed at once.

        Raises
        ------
        DataError
            The journal cannot be written (:attr:`failure`; nothing of the transaction is kept).
        """
        try:
            self._check_writable()
            if type(cmd) is _messages.SubmitOrder:
                if cmd.client_order_id != client_order_id:
                    cmd = msgspec.structs.replace(cmd, client_order_id=client_order_id)
                if not self._db.in_transaction:
                    self._db.execute("BEGIN")
                return self._insert("command", cmd, client_order_id)
            self._commit()
            seq = self._insert("command", cmd, client_order_id)
            self._bound_log()
            return seq
        except sqlite3.Error as exc:
            raise self._failed(exc) from None

    def record_event(self, event: Any) -> int:
        """Journal an order event (committing a command waiting for it); return its ``seq``.

        Raises
        ------
        DataError
            The journal cannot be written (:attr:`failure`; nothing of the transaction is kept).
        """
        try:
            self._check_writable()
            seq = self._insert("event", event, event.client_order_id)
            self._commit()
            self._bound_log()
        except sqlite3.Error as exc:
            raise self._failed(exc) from None
        return seq

    def record_wallet(self, event: _messages.InterestCharged | _messages.FundingPaid) -> int:
        """Journal (and commit) a wallet movement outside fills: a charge of interest or a funding payment.

        Raises
        ------
        DataError
            The journal cannot be written (:attr:`failure`).
        """
        try:
            self._check_writable()
            seq = self._insert("event", event, "")
            self._commit()
            self._bound_log()
        except sqlite3.Error as exc:
            raise self._failed(exc) from None
        return seq

    def record_sample(self, ts: int, sample: Any) -> None:
        """Journal (and commit) an equity sample taken at ``ts``: ``sample`` is a msgspec struct (see the module docstring).

        Raises
        ------
        DataError
            The journal cannot be written (:attr:`failure`).
        """
        try:
            self._check_writable()
            self._db.execute("INSERT INTO equity (ts, payload) VALUES (?, ?)", (ts, self._encoder.encode(sample)))
            self._commit()
            self._bound_log()
        except sqlite3.Error as exc:
            raise self._failed(exc) from None

    def samples(self, cls: type[T]) -> list[T]:
        """Every journaled equity sample, decoded as ``cls``, in the order they were taken (``[]``: none yet).

        Raises
        ------
        DataError
            An undecodable sample (names the file and its seq), or a damaged database file.
        """
        if "equity" not in self._tables:  # a journal of schema version 4 or earlier, not yet written
            return []
        decoder = msgspec.msgpack.Decoder(cls)
        out: list[T] = []
        seq = 0
        try:
            for seq, payload in self._db.execute("SELECT seq, payload FROM equity ORDER BY seq"):
                try:
                    out.append(decoder.decode(payload))
                except msgspec.DecodeError as exc:
                    raise DataError(f"journal {self.path}: equity sample seq {seq}: bad payload: {exc}") from exc
        except sqlite3.DatabaseError as exc:
            raise DataError(
                f"journal {self.path}: the database file is damaged after equity sample seq {seq} ({exc}); "
                "restore it from a backup"
            ) from exc
        return out

    def _insert(self, kind: str, msg: Any, client_order_id: str) -> int:
        name = type(msg).__name__
        if name not in _TYPES:
            raise DataError(f"journal {self.path}: cannot journal a {name}")
        cur = self._db.execute(_INSERT, (kind, name, client_order_id, msg.ts_init, self._encoder.encode(msg)))
        seq = cur.lastrowid
        assert seq is not None
        return seq

    def _commit(self) -> None:
        if self._db.in_transaction:
            self._db.execute("COMMIT")

    def _bound_log(self) -> None:
        """After a commit: checkpoint and restart the log if it passed its limit (see ``checkpoint_every``)."""
        try:
            size = os.stat(self._wal_path).st_size
        except FileNotFoundError:
            return
        if size <= self._wal_threshold:
            return
        try:
            self._db.execute(f"PRAGMA busy_timeout={_CHECKPOINT_WAIT_MS}")
            try:
                busy, log_frames, _ = self._db.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
            finally:
                self._db.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
        except sqlite3.Error as exc:  # the entry is committed: only the log stays long
            logger.warning("journal {}: checkpoint of a {}-byte log failed: {}", self.path, size, exc)
            self._wal_threshold = size + WAL_SIZE_LIMIT
            return
        if not busy:
            self._wal_threshold = WAL_SIZE_LIMIT
        elif log_frames >= 0:  # (-1: the checkpoint thread is in a checkpoint: the next commit tries again)
            logger.warning(
                "journal {}: its log is {} bytes, and another connection using the journal keeps it from "
                "being checkpointed; trying again when it has grown by {} bytes",
                self.path,
                size,
                WAL_SIZE_LIMIT,
            )
            self._wal_threshold = size + WAL_SIZE_LIMIT

    def _check_writable(self) -> None:
        if self.failure is not None:
            raise self.failure
        if self.before_write is not None:
            self.before_write()
        if self._outdated or (self.owner is not None and "mode" not in self._meta):
            self._upgrade()

    def _upgrade(self) -> None:
        """With the first write: migrate an older journal, and store :attr:`owner` in one that names none.

        Not at open: a journal only read, or refused by the replay's checks, is left as it was.
        """
        migrated = self._outdated
        if migrated:
            meta = self._migrate(self._meta)
        else:
            self._db.execute("BEGIN IMMEDIATE")
            meta = dict(self._meta)
        stamped = self.owner is not None and "mode" not in meta
        if stamped and self.owner is not None:
            meta |= self._store_owner(self.owner)
        self._db.execute("COMMIT")  # a failure: the caller's write fails (rolled back, :attr:`failure`)
        self._meta = meta
        if migrated:
            logger.info("journal {}: migrated to schema version {} by its first write", self.path, SCHEMA_VERSION)
        if stamped:
            logger.info("journal {}: it named no owner (written by an earlier tradebus); stamped as written by a {} run: "
                        "a run of another mode, environment or account is refused from now on", self.path, self.owner)

    def _failed(self, exc: sqlite3.Error) -> DataError:
        """Keep the first failed write as :attr:`failure`, roll back what it began, tell ``on_failure``."""
        if self._db.in_transaction:
            try:
                self._db.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # SQLite rolled the transaction back itself
        if self.failure is not None:
            return self.failure
        name = getattr(exc, "sqlite_errorname", None) or type(exc).__name__
        self.failure = error = DataError(f"journal {self.path}: cannot write it ({name}: {exc})")
        logger.error("{}: nothing more is journaled, and no order is sent", error)
        if self.on_failure is not None:
            self.on_failure(error)
        return error

    def save_risk_state(self, state: BreakerState) -> None:
        """Store the risk gate's trading and breaker state (replacing the previous one).

        Raises
        ------
        DataError
            The journal cannot be written (:attr:`failure`).
        """
        try:
            self._check_writable()
            self._commit()
            self._db.execute(
                "INSERT OR REPLACE INTO risk_state (id, ts, payload) VALUES (1, ?, ?)",
                (state.ts, self._encoder.encode(state)),
            )
            self._bound_log()
        except sqlite3.Error as exc:
            raise self._failed(exc) from None

    def load_risk_state(self) -> BreakerState | None:
        """The last stored risk state, or ``None``.

        Raises
        ------
        DataError
            An undecodable stored state (names the file).
        """
        if "risk_state" not in self._tables:  # a version 1 journal not yet written
            return None
        row = self._db.execute("SELECT payload FROM risk_state WHERE id = 1").fetchone()
        if row is None:
            return None
        try:
            return self._risk_type.decode(row[0])
        except msgspec.DecodeError as exc:
            raise DataError(f"journal {self.path}: bad risk_state payload: {exc}") from exc

    # ------------------------------------------------------------------ reading

    def entries(self) -> Iterator[JournalEntry]:
        """Every entry in ``seq`` order.

        Raises
        ------
        DataError
            An entry of an unknown type or an undecodable payload (names the seq), or a
            damaged database file (names the last seq read).
        """
        for seq, kind, name, payload in self._rows():
            cls = _TYPES.get(name)
            if cls is None:
                raise DataError(f"journal {self.path}: seq {seq}: unknown message type {name!r}")
            try:
                msg = msgspec.msgpack.decode(payload, type=cls)
            except msgspec.DecodeError as exc:
                raise DataError(f"journal {self.path}: seq {seq}: bad {name} payload: {exc}") from exc
            yield JournalEntry(seq, kind, msg)

    def _rows(self) -> Iterator[tuple[int, Literal["command", "event"], str, bytes]]:
        """The raw rows in ``seq`` order; a damaged database file raises :class:`DataError` (names the last seq read)."""
        seq = 0
        if "journal" not in self._tables:  # a meta table only: no entry yet
            return
        try:
            for row in self._db.execute("SELECT seq, kind, type, payload FROM journal ORDER BY seq"):
                seq = row[0]
                yield row
        except sqlite3.DatabaseError as exc:
            raise DataError(
                f"journal {self.path}: the database file is damaged after seq {seq} ({exc}); "
                "restore it from a backup: the daemon cannot resume its orders and positions from it"
            ) from exc

    def replay(
        self,
        orders: OrderManager,
        portfolio: Portfolio,
        now_ns: int,
        *,
        risk: RiskGate | None = None,
        on_message: Callable[[Any], None] | None = None,
    ) -> list[Order]:
        """Rebuild ``orders`` and ``portfolio`` (both fresh) from the journal and settle open orders.

        Call it once before trading, on a fresh journal too: it begins the next epoch of client
        order ids in ``orders``, so ids never repeat across restarts.

        Parameters
        ----------
        orders, portfolio
            Empty order manager and portfolio of the restarted process.
        now_ns
            Timestamp of the recovery events.
        risk
            The restarted process's risk gate: its trading and breaker state is restored from
            the journal, and every later change of it is stored here.
        on_message
            Called with every journaled command and event, in ``seq`` order (a fill journaled
            twice only once), then with each recovery event (the kernel adds the journaled
            fills, interest charges and funding payments to its results).

        Raises
        ------
        DataError
            An unreadable entry (see :meth:`entries`) or an entry on an instrument ``portfolio``
            does not hold (the journal of another config), both before anything is written to
            the journal; or a journaled interest charge while ``portfolio`` has no margin account
            (the config no longer trades margin spot).

        Returns
        -------
        list of Order
            Orders left UNKNOWN, in creation order: resolve each with the venue.
        """
        entries = list(self.entries())  # read and checked before the epoch is written
        self._check_instruments(entries, portfolio.instruments)
        epoch = self.begin_epoch()  # an older journal is migrated here, its run id stored
        orders.client_ids.start(self.run_id, epoch)
        submit = _messages.SubmitOrder
        for entry in entries:
            msg = entry.message
            if entry.kind == "command":
                if on_message is not None:
                    on_message(msg)
                if type(msg) is submit:
                    order = orders.create(msg)
                    order.ts_created = order.ts_last = msg.ts_init
                    orders.restore(order)
                continue
            cls = type(msg)
            if cls is _messages.InterestCharged or cls is _messages.FundingPaid:
                self._book_wallet(entry.seq, msg, portfolio)
                if on_message is not None:
                    on_message(msg)
                continue
            applied = orders.apply(msg)
            if cls is _messages.OrderFilled:
                if applied is None and orders.get(msg.client_order_id) is not None:
                    continue  # a repeat of a trade already booked (journaled twice): neither booked nor reported again
                portfolio.apply_fill(msg)
                portfolio.mark(msg.instrument_id, msg.last_px)  # the latest price the journal knows
            if on_message is not None:
                on_message(msg)
        if risk is not None:
            risk.restore(self.load_risk_state(), self.save_risk_state)
        unknown: list[Order] = []
        for order in orders.orders():
            if order.status == _messages.OrderStatus.INITIALIZED:
                event: Any = _messages.OrderDenied(
                    order.strategy_id,
                    order.instrument_id,
                    order.client_order_id,
                    "recovered: process stopped before the order was sent",
                    now_ns,
                    now_ns,
                )
            elif order.is_open and order.status != _messages.OrderStatus.UNKNOWN:
                event = OrderTimedOut(
                    order.strategy_id,
                    order.instrument_id,
                    order.client_order_id,
                    f"recovered after restart from {order.status}",
                    now_ns,
                    now_ns,
                )
            else:
                if order.status == _messages.OrderStatus.UNKNOWN:
                    unknown.append(order)
                continue
            orders.apply(event)
            self.record_event(event)
            if on_message is not None:
                on_message(event)
            if order.status == _messages.OrderStatus.UNKNOWN:
                unknown.append(order)
        return unknown

    def _check_instruments(self, entries: list[JournalEntry], instruments: Mapping[str, Any]) -> None:
        """Refuse a journal with entries on instruments the run does not trade (it was begun by another config)."""
        first: dict[str, int] = {}
        for entry in entries:
            iid = getattr(entry.message, "instrument_id", None)
            if iid is not None and iid not in instruments and iid not in first:
                first[iid] = entry.seq
        if first:
            unknown = ", ".join(f"{iid} (first at seq {seq})" for iid, seq in first.items())
            raise DataError(
                f"journal {self.path}: it holds orders on {unknown}, which this config does not trade "
                f"(its instruments: {', '.join(instruments)}); the journal was begun by another config: "
                "give this config a journal of its own, or trade the journal's instruments"
            )

    def _book_wallet(self, seq: int, msg: _messages.InterestCharged | _messages.FundingPaid, portfolio: Portfolio) -> None:
        """Book a journaled charge of interest or funding payment on the rebuilt portfolio."""
        if type(msg) is _messages.FundingPaid:
            portfolio.pay_funding(msg.instrument_id, msg.payment)
            return
        if not isinstance(portfolio.account, MarginAccount):
            raise DataError(
                f"journal {self.path}: seq {seq}: an interest charge on a {msg.asset} loan, but the run has no "
                "margin spot instrument that could have borrowed it (the config changed since the journal began)"
            )
        portfolio.charge_interest(msg.quote, msg.interest)

    def close(self) -> None:
        """Commit what is pending, stop the checkpoint thread and close the database (once; later calls do nothing).

        A commit that fails here is :attr:`failure` (``on_failure`` is told), not raised: the database is closed anyway.
        """
        if self._closed:
            return
        self._closed = True
        if self.failure is None:
            try:
                self._commit()
            except sqlite3.Error as exc:
                self._failed(exc)
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None
        self._db.close()
        self._unlock()

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


def _paper_sign(msg: Any) -> str:
    """The id of ``msg`` (an ``OrderAccepted`` or ``OrderFilled``) in the simulated venue's form (``""``: none)."""
    trade_id = getattr(msg, "trade_id", "")
    if simulated_id_number(msg.venue_order_id, VENUE_ORDER_ID_PREFIX):
        return f"venue order id {msg.venue_order_id}"
    if simulated_id_number(trade_id, TRADE_ID_PREFIX):
        return f"trade id {trade_id}"
    return ""


def _live_sign(msg: Any) -> str:
    """The venue order id of ``msg`` if neither the simulated venue nor the simulated liquidation gives its form (``""``: none)."""
    venue_order_id = msg.venue_order_id
    if (
        not venue_order_id
        or simulated_id_number(venue_order_id, VENUE_ORDER_ID_PREFIX)
        or simulated_id_number(venue_order_id, LIQUIDATION_ID_PREFIX)
    ):
        return ""
    return f"venue order id {venue_order_id}"


def _open_error(path: Path, exc: sqlite3.DatabaseError) -> DataError:
    """What went wrong opening ``path``: not a database, a damaged one (truncated, pages overwritten), or an I/O error."""
    name = getattr(exc, "sqlite_errorname", "")
    if name == "SQLITE_NOTADB":
        return DataError(f"journal {path}: not a tradebus journal: {exc}")
    if name == "SQLITE_CORRUPT":
        return DataError(
            f"journal {path}: the database file is damaged ({exc}); restore it from a backup: the daemon "
            "cannot resume its orders and positions from it"
        )
    return DataError(f"journal {path}: cannot open it ({name or type(exc).__name__}: {exc})")


def _lock(path: Path) -> int:
    """An open descriptor of ``path`` holding an exclusive ``flock`` (see ``Journal(exclusive=True)``)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise DataError(f"journal {path}: cannot open: {exc.strerror}") from None
    holder = take_lock(fd)
    if holder is not None:
        os.close(fd)
        raise DataError(
            f"journal {path}: in use by another running daemon ({holder}); stop that daemon, "
            "or give this config a journal of its own"
        )
    return fd


class _Checkpointer(threading.Thread):
    """Checkpoints a journal's write-ahead log every ``interval`` seconds from its own connection.

    ``PASSIVE`` checkpoints copy what no reader still needs and never wait for, or block,
    the writer; ``sqlite3`` releases the GIL while SQLite works, so the writer's thread runs on.
    """

    def __init__(self, path: Path, interval: float) -> None:
        super().__init__(name=f"journal-checkpoint:{path.name}", daemon=True)
        self._path = path
        self._interval = interval
        self._stopping = threading.Event()

    def run(self) -> None:
        db = sqlite3.connect(self._path, isolation_level=None)
        try:
            while not self._stopping.wait(self._interval):
                try:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:  # the next round tries again; the log only grows meanwhile
                    logger.warning("journal {}: checkpoint failed: {}", self._path, exc)
        finally:
            db.close()

    def stop(self) -> None:
        """Stop after the current round (the writer's close checkpoints what is left)."""
        self._stopping.set()
        self.join()
