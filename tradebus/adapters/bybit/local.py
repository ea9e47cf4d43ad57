"""Bybit's dialect for the local venue emulator (:mod:`tradebus.adapters.common.local_server`).

* ``{"op": "subscribe"|"unsubscribe", "args": [topics], "req_id"?: ...}`` is answered
  with ``{"success": true, "ret_msg": "", "conn_id": ..., "req_id": ..., "op": ...}``
  (``success: false`` and a message for a malformed request).
* ``{"op": "ping"}`` is answered like the linear stream does:
  ``{"success": true, "ret_msg": "pong", "conn_id": ..., "req_id": ..., "op": "ping"}``.
* Recorded frames belong to their ``topic``; recorded control frames are not replayed.
* Books: the plugin rebuilds every recorded book from the replayed frames. A
  subscription made after the book's recorded snapshot went by (resubscribe,
  reconnect) gets a snapshot (``u`` = last applied ``u``) in place of the next recorded
  delta of that topic, folded into it (at once when no delta remains); deltas already
  contained in a snapshot are not re-sent to that session.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import msgspec

from tradebus.adapters.bybit.schemas import BybitBook
from tradebus.adapters.bybit.sync import BybitBookSync
from tradebus.adapters.common.local_server import Session, VenueProtocol

__all__ = ["BybitProtocol"]


class _Head(msgspec.Struct):
    topic: str = ""
    type: str = ""
    ts: int = 0


class _BookFrame(msgspec.Struct):
    data: BybitBook
    type: str = ""
    ts: int = 0


class _Request(msgspec.Struct):
    op: str
    args: list[str] = []
    req_id: str = ""


class BybitProtocol(VenueProtocol):
    """Bybit v5 public dialect over a recording of one connection.

    Parameters
    ----------
    frames
        The same ``(recv_ns, raw)`` list given to the server (book frames are indexed by identity).
    """

    name = "bybit"

    def __init__(self, frames: Sequence[tuple[int, str]]) -> None:
        self._head = msgspec.json.Decoder(_Head)
        self._request = msgspec.json.Decoder(_Request)
        self._book_frame = msgspec.json.Decoder(_BookFrame, strict=False)
        self._ordinal: dict[int, tuple[str, int]] = {}
        counts: dict[str, int] = {}
        for _, raw in frames:
            topic = self._head.decode(raw).topic
            if topic.startswith("orderbook."):
                counts[topic] = counts.get(topic, 0) + 1
                self._ordinal[id(raw)] = (topic, counts[topic])
        self._total = counts
        self._books: dict[str, BybitBookSync] = {}
        self._applied: dict[str, int] = {}
        self._ts: dict[str, int] = {}
        self._sent_upto: dict[tuple[int, str], int] = {}
        self._pending: set[tuple[int, str]] = set()
        self.snapshots_served = 0
        self.pings = 0

    def on_client_message(self, text: str, session: Session) -> list[str]:
        conn = f"local{session.index}"
        try:
            req = self._request.decode(text)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return [json.dumps({"success": False, "ret_msg": f"Invalid request: {exc}", "conn_id": conn, "op": ""})]
        if req.op == "ping":
            self.pings += 1
            return [json.dumps({"success": True, "ret_msg": "pong", "conn_id": conn, "req_id": req.req_id, "op": "ping"})]
        if req.op not in ("subscribe", "unsubscribe"):
            return [json.dumps({"success": False, "ret_msg": f"Invalid op {req.op}", "conn_id": conn, "op": req.op})]
        replies = [json.dumps({"success": True, "ret_msg": "", "conn_id": conn, "req_id": req.req_id, "op": req.op})]
        if req.op == "unsubscribe":
            session.unsubscribe(req.args)
            return replies
        for topic in req.args:
            book = self._books.get(topic)
            if book is not None and book.has_snapshot:
                if self._applied[topic] >= self._total[topic]:
                    replies.append(self._snapshot(topic, book))
                    self._sent_upto[(session.index, topic)] = self._applied[topic]
                    self.snapshots_served += 1
                else:
                    self._pending.add((session.index, topic))
        session.subscribe(req.args)
        return replies

    def topic_of(self, raw: str) -> str | None:
        return self._head.decode(raw).topic or "control"

    def render(self, raw: str, session: Session) -> str | None:  # type: ignore[override]
        """The frame for this session; ``None`` (not sent) for deltas its snapshot already holds."""
        entry = self._ordinal.get(id(raw))
        if entry is None:
            return raw
        topic, ordinal = entry
        marker = (session.index, topic)
        if marker in self._pending:
            if ordinal <= self._applied.get(topic, 0):
                return None
            self._apply(raw, topic, ordinal)
            self._pending.discard(marker)
            self._sent_upto[marker] = ordinal
            self.snapshots_served += 1
            return self._snapshot(topic, self._books[topic])
        if ordinal <= self._sent_upto.get(marker, 0):
            return None
        return raw

    def on_sent(self, raw: str) -> None:
        entry = self._ordinal.get(id(raw))
        if entry is not None and entry[1] > self._applied.get(entry[0], 0):
            self._apply(raw, *entry)

    def unknown_message(self) -> str:
        return '{"topic":"brandNewTopic.BTCUSDT","type":"snapshot","ts":1,"data":{"x":"1"}}'

    def corrupt(self, raw: str, field_name: str, value: Any) -> str:
        """Set ``data[field_name] = value`` (e.g. a wrong ``u``)."""
        frame = json.loads(raw)
        frame["data"][field_name] = value
        return json.dumps(frame)

    def _apply(self, raw: str, topic: str, ordinal: int) -> None:
        frame = self._book_frame.decode(raw)
        book = self._books.get(topic)
        if book is None:
            book = self._books[topic] = BybitBookSync(f"local {topic}")
        if frame.type == "snapshot" or frame.data.u == 1:
            book.apply_snapshot(frame.data)
        else:
            book.apply_delta(frame.data)
        self._ts[topic] = frame.ts
        self._applied[topic] = ordinal

    def _snapshot(self, topic: str, book: BybitBookSync) -> str:
        bids, asks = book.state()
        data = {
            "s": topic.rsplit(".", 1)[1],
            "b": [[repr(p), repr(s)] for p, s in bids],
            "a": [[repr(p), repr(s)] for p, s in asks],
            "u": book.last_u,
            "seq": 0,
        }
        return json.dumps({"topic": topic, "type": "snapshot", "ts": self._ts.get(topic, 0), "data": data})
