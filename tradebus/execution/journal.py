"""SQLite journal of every order command and event (paper and live daemons).

Each entry gets a monotonically increasing ``seq`` and is committed before the call returns;
the execution engine writes a command *before* it is sent to the venue and every event as it
is applied. After a crash, :meth:`Journal.replay` rebuilds the order manager and the portfolio
from the journal, then settles every order whose fate the journal cannot tell:

* an order whose command was journaled but with no risk decision (``INITIALIZED``) never left
  the process (``OrderSubmitted`` is journaled before the venue is called): it is closed as
  ``DENIED`` with the reason ``"recovered: process stopped before the order was sent"``;
* every order still open (``SUBMITTED`` and possibly sent, or working at the venue) becomes
  ``UNKNOWN`` (``OrderTimedOut``) and is returned, to be resolved by querying the venue
  (:meth:`ExecutionEngine.resolve_unknown`).

Nothing is ever re-sent by the recovery, so it cannot invent or duplicate an order.

Storage: one table ``journal(seq INTEGER PRIMARY KEY AUTOINCREMENT, kind, type, client_order_id,
ts, payload)`` with the message encoded as msgpack (NaN-safe), WAL mode.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import msgspec

from tradebus.engine import messages as _messages
from tradebus.engine.portfolio import Portfolio
from tradebus.errors import DataError
from tradebus.execution.orders import Order, OrderManager, OrderResolved, OrderTimedOut

__all__ = ["Journal", "JournalEntry"]

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
        "OrderFilled",
        "OrderCanceled",
        "OrderExpired",
    )
} | {"OrderTimedOut": OrderTimedOut, "OrderResolved": OrderResolved}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS journal (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('command', 'event')),
    type TEXT NOT NULL,
    client_order_id TEXT NOT NULL,
    ts INTEGER NOT NULL,
    payload BLOB NOT NULL
)
"""


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
    """

    def __init__(self, path: str | Path, synchronous: Literal["FULL", "NORMAL"] = "FULL") -> None:
        self.path = Path(path)
        self._db = sqlite3.connect(self.path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        self._db.execute(_SCHEMA)
        self._encoder = msgspec.msgpack.Encoder()

    def record_command(self, cmd: Any, client_order_id: str) -> int:
        """Journal a command (with the client order id it was given); return its ``seq``."""
        if isinstance(cmd, _messages.SubmitOrder) and cmd.client_order_id != client_order_id:
            cmd = msgspec.structs.replace(cmd, client_order_id=client_order_id)
        return self._insert("command", cmd, client_order_id)

    def record_event(self, event: Any) -> int:
        """Journal an order event; return its ``seq``."""
        return self._insert("event", event, event.client_order_id)

    def _insert(self, kind: str, msg: Any, client_order_id: str) -> int:
        name = type(msg).__name__
        if name not in _TYPES:
            raise DataError(f"journal {self.path}: cannot journal a {name}")
        cur = self._db.execute(
            "INSERT INTO journal (kind, type, client_order_id, ts, payload) VALUES (?, ?, ?, ?, ?)",
            (kind, name, client_order_id, msg.ts_init, self._encoder.encode(msg)),
        )
        seq = cur.lastrowid
        assert seq is not None
        return seq

    def entries(self) -> Iterator[JournalEntry]:
        """Every entry in ``seq`` order.

        Raises
        ------
        DataError
            An entry of an unknown type or an undecodable payload (names the seq).
        """
        rows = self._db.execute("SELECT seq, kind, type, payload FROM journal ORDER BY seq")
        for seq, kind, name, payload in rows:
            cls = _TYPES.get(name)
            if cls is None:
                raise DataError(f"journal {self.path}: seq {seq}: unknown message type {name!r}")
            try:
                msg = msgspec.msgpack.decode(payload, type=cls)
            except msgspec.DecodeError as exc:
                raise DataError(f"journal {self.path}: seq {seq}: bad {name} payload: {exc}") from exc
            yield JournalEntry(seq, kind, msg)

    def replay(self, orders: OrderManager, portfolio: Portfolio, now_ns: int) -> list[Order]:
        """Rebuild ``orders`` and ``portfolio`` (both fresh) from the journal and settle open orders.

        Parameters
        ----------
        orders, portfolio
            Empty order manager and portfolio of the restarted process.
        now_ns
            Timestamp of the recovery events.

        Returns
        -------
        list of Order
            Orders left UNKNOWN, in creation order: resolve each with the venue.
        """
        for entry in self.entries():
            msg = entry.message
            if entry.kind == "command":
                if isinstance(msg, _messages.SubmitOrder):
                    orders.restore(orders.create(msg))  # restore keeps the id counters ahead
                continue
            orders.apply(msg)
            if type(msg) is _messages.OrderFilled:
                portfolio.apply_fill(msg)
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
            if order.status == _messages.OrderStatus.UNKNOWN:
                unknown.append(order)
        return unknown

    def close(self) -> None:
        """Close the database."""
        self._db.close()
