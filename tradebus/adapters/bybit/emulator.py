"""Bybit's dialect for the local venue emulator (:mod:`tradebus.adapters.common.local_server`).

* ``{"op": "subscribe"|"unsubscribe", "args": [topics], "req_id"?: ...}`` is answered
  with ``{"success": true, "ret_msg": "", "conn_id": ..., "req_id": ..., "op": ...}``
  (``success: false`` and a message for a malformed request or a topic given in ``rejected``).
* ``{"op": "ping"}`` is answered like the linear stream does:
  ``{"success": true, "ret_msg": "pong", "conn_id": ..., "req_id": ..., "op": "ping"}``.
* Recorded frames belong to their ``topic`` (:func:`~tradebus.adapters.bybit.parse.frame_stream`, as a
  replay reads them); recorded control frames and frames that do not decode are not replayed.
* Books (:class:`~tradebus.adapters.common.local_server.StreamBookProtocol`): the
  plugin rebuilds every recorded book with a :class:`~tradebus.adapters.bybit.parse.BybitParser`
  and serves a late subscription a snapshot of it (``u`` = last applied ``u``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import msgspec

from tradebus.adapters.bybit.parse import BybitParser, frame_stream
from tradebus.adapters.common.local_server import Session, StreamBookProtocol

__all__ = ["BybitProtocol", "emulator"]


class _Request(msgspec.Struct):
    op: str
    args: list[str] = []
    req_id: str = ""


class BybitProtocol(StreamBookProtocol):
    """Bybit v5 public dialect over a recording of one connection.

    Parameters
    ----------
    frames
        The same ``(recv_ns, raw)`` list given to the server (book frames are indexed by identity).
    rejected
        Topics Bybit does not offer: a subscribe naming one is answered with
        ``success: false`` and ``ret_msg`` ``"Invalid topic: ..."`` (nothing of it is subscribed).
    """

    name = "bybit"

    def __init__(self, frames: Sequence[tuple[int, str]], rejected: frozenset[str] = frozenset()) -> None:
        self.rejected = rejected
        self._request = msgspec.json.Decoder(_Request)
        self._parser = BybitParser("linear")
        self.pings = 0
        super().__init__(frames)

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
        refused = [t for t in req.args if t in self.rejected]
        if req.op == "subscribe" and refused:
            msg = f"Invalid topic: {refused[0]}"
            return [json.dumps({"success": False, "ret_msg": msg, "conn_id": conn, "req_id": req.req_id, "op": req.op})]
        replies = [json.dumps({"success": True, "ret_msg": "", "conn_id": conn, "req_id": req.req_id, "op": req.op})]
        if req.op == "unsubscribe":
            session.unsubscribe(req.args)
            return replies
        for topic in req.args:
            replies += self.subscribe_book(topic, session)
        session.subscribe(req.args)
        return replies

    def topic_of(self, raw: str) -> str | None:
        return frame_stream(raw) or "control"

    def is_stream_frame(self, raw: str) -> bool:
        return self.topic_of(raw) != "control"

    def unknown_message(self) -> str:
        return '{"topic":"brandNewTopic.BTCUSDT","type":"snapshot","ts":1,"data":{"x":"1"}}'

    def corrupt(self, raw: str, field_name: str, value: Any) -> str:
        """Set ``data[field_name] = value`` (e.g. a wrong ``u``)."""
        frame = json.loads(raw)
        frame["data"][field_name] = value
        return json.dumps(frame)

    # ------------------------------------------------------------------- books

    def book_key(self, raw: str) -> str | None:
        topic = frame_stream(raw)
        return topic if topic is not None and topic.startswith("orderbook.") else None

    def apply_book(self, key: str, raw: str) -> None:
        self._parser.parse_frame(raw, 0)

    def book_ready(self, key: str) -> bool:
        return self._parser.books.in_sync(key)

    def snapshot_frame(self, key: str) -> str:
        book = self._parser.books.syncs[key].book
        data = {
            "s": key.rsplit(".", 1)[1],
            "b": [[repr(p), repr(s)] for p, s in book.bids().tolist()],
            "a": [[repr(p), repr(s)] for p, s in book.asks().tolist()],
            "u": book.last_seq,
            "seq": 0,
        }
        return json.dumps({"topic": key, "type": "snapshot", "ts": book.ts_event // 1_000_000, "data": data})


def emulator(frames: Sequence[tuple[int, str]], snapshot: str | None, futures: bool) -> BybitProtocol:
    """The registry's emulator factory (Bybit books come in-stream: no REST snapshot, one protocol per category)."""
    return BybitProtocol(frames)
