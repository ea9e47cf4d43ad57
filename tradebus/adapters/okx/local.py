"""OKX's dialect for the local venue emulator (:mod:`tradebus.adapters.common.local_server`).

* ``{"op": "subscribe"|"unsubscribe", "args": [{"channel": ..., "instId": ...}]}`` is
  answered with one ``{"event": "subscribe", "arg": {...}, "connId": ...}`` per arg
  (a malformed request with ``{"event": "error", "code": "60012", ...}``).
* The text ``"ping"`` is answered with ``"pong"``.
* Recorded frames belong to the topic ``"channel:instId"`` of their ``arg``; recorded
  event frames are not replayed.
* Books: the plugin rebuilds every recorded book from the frames the server has
  replayed. A subscription to a book made after its recorded snapshot went by (a
  resubscribe, a reconnect) gets a snapshot of the book -- raw strings and CRC32 as
  OKX computes them -- in place of the next recorded update of that book (the update
  is folded into it), so snapshot and updates reach the session in stream order (at
  once, with the subscribe reply, when the recording has no further update); the
  recorded updates already contained in a snapshot are not re-sent to that session.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import msgspec

from tradebus.adapters.common.local_server import Session, VenueProtocol
from tradebus.adapters.okx.parse import BOOK_CHANNELS
from tradebus.adapters.okx.schemas import OkxArg, OkxBook
from tradebus.adapters.okx.sync import OkxBookSync

__all__ = ["OkxProtocol"]


class _Head(msgspec.Struct):
    arg: OkxArg | None = None
    event: str = ""
    action: str = ""


class _BookFrame(msgspec.Struct):
    data: list[OkxBook]
    action: str = ""


class _Request(msgspec.Struct):
    op: str
    args: list[OkxArg] = []


class OkxProtocol(VenueProtocol):
    """OKX v5 public dialect over a recording.

    Parameters
    ----------
    frames
        The same ``(recv_ns, raw)`` list given to the server (book frames are indexed by identity).
    """

    name = "okx"

    def __init__(self, frames: Sequence[tuple[int, str]]) -> None:
        self._head = msgspec.json.Decoder(_Head)
        self._request = msgspec.json.Decoder(_Request)
        self._book_frame = msgspec.json.Decoder(_BookFrame, strict=False)
        self._ordinal: dict[int, tuple[str, int]] = {}
        counts: dict[str, int] = {}
        for _, raw in frames:
            head = self._head.decode(raw)
            if head.arg is not None and head.arg.channel in BOOK_CHANNELS and not head.event:
                key = f"{head.arg.channel}:{head.arg.instId}"
                counts[key] = counts.get(key, 0) + 1
                self._ordinal[id(raw)] = (key, counts[key])
        self._total = counts
        self._books: dict[str, OkxBookSync] = {}
        self._applied: dict[str, int] = {}
        self._ts: dict[str, int] = {}
        self._sent_upto: dict[tuple[int, str], int] = {}
        self._pending: set[tuple[int, str]] = set()
        self.snapshots_served = 0

    # ---------------------------------------------------------------- protocol

    def on_client_message(self, text: str, session: Session) -> list[str]:
        if text == "ping":
            return ["pong"]
        try:
            req = self._request.decode(text)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return [json.dumps({"event": "error", "code": "60012", "msg": f"Invalid request: {exc}"})]
        if req.op not in ("subscribe", "unsubscribe"):
            return [json.dumps({"event": "error", "code": "60012", "msg": f"Invalid request: op {req.op}"})]
        replies: list[str] = []
        for arg in req.args:
            key = f"{arg.channel}:{arg.instId}"
            plain = {"channel": arg.channel, "instId": arg.instId}
            if req.op == "unsubscribe":
                session.unsubscribe([key])
                replies.append(json.dumps({"event": "unsubscribe", "arg": plain, "connId": f"local{session.index}"}))
                continue
            replies.append(json.dumps({"event": "subscribe", "arg": plain, "connId": f"local{session.index}"}))
            book = self._books.get(key)
            if book is not None and book.has_snapshot:
                if self._applied[key] >= self._total[key]:
                    # the recording holds no further update of this book: answer right away
                    replies.append(self._snapshot(arg.channel, arg.instId, book))
                    self._sent_upto[(session.index, key)] = self._applied[key]
                    self.snapshots_served += 1
                else:
                    self._pending.add((session.index, key))
            session.subscribe([key])
        return replies

    def topic_of(self, raw: str) -> str | None:
        head = self._head.decode(raw)
        if head.event or head.arg is None:
            return "event"
        return f"{head.arg.channel}:{head.arg.instId}"

    def render(self, raw: str, session: Session) -> str | None:  # type: ignore[override]
        """The frame for this session; ``None`` (not sent) for book updates its snapshot already holds."""
        entry = self._ordinal.get(id(raw))
        if entry is None:
            return raw
        key, ordinal = entry
        marker = (session.index, key)
        if marker in self._pending:
            if ordinal <= self._applied.get(key, 0):
                return None
            self._apply(raw, key, ordinal)
            self._pending.discard(marker)
            self._sent_upto[marker] = ordinal
            self.snapshots_served += 1
            channel, _, inst_id = key.partition(":")
            return self._snapshot(channel, inst_id, self._books[key])
        if ordinal <= self._sent_upto.get(marker, 0):
            return None
        return raw

    def on_sent(self, raw: str) -> None:
        entry = self._ordinal.get(id(raw))
        if entry is not None and entry[1] > self._applied.get(entry[0], 0):
            self._apply(raw, *entry)

    def _apply(self, raw: str, key: str, ordinal: int) -> None:
        frame = self._book_frame.decode(raw)
        book = self._books.get(key)
        if book is None:
            book = self._books[key] = OkxBookSync(f"local {key}")
        for item in frame.data:
            if frame.action == "snapshot" or not frame.action:
                book.apply_snapshot(item)
            else:
                book.apply_update(item)
            self._ts[key] = item.ts
        self._applied[key] = ordinal

    def unknown_message(self) -> str:
        return '{"arg":{"channel":"brand-new-channel","instId":"BTC-USDT"},"data":[{"x":"1"}]}'

    def corrupt(self, raw: str, field_name: str, value: Any) -> str:
        """Set ``data[0][field_name] = value`` (e.g. a wrong ``checksum``)."""
        frame = json.loads(raw)
        frame["data"][0][field_name] = value
        return json.dumps(frame)

    # --------------------------------------------------------------- internals

    def _snapshot(self, channel: str, inst_id: str, book: OkxBookSync) -> str:
        bids, asks = book.state()
        data: dict[str, Any] = {
            "asks": [[p, s, "0", "1"] for p, s in asks],
            "bids": [[p, s, "0", "1"] for p, s in bids],
            "ts": str(self._ts.get(f"{channel}:{inst_id}", 0)),
            "checksum": book.checksum(),
        }
        if book.last_seq is not None:
            data["seqId"] = book.last_seq
            data["prevSeqId"] = -1
        return json.dumps({"arg": {"channel": channel, "instId": inst_id}, "action": "snapshot", "data": [data]})
