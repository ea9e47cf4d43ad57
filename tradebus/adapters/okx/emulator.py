"""OKX's dialect for the local venue emulator (:mod:`tradebus.adapters.common.local_server`).

* ``{"op": "subscribe"|"unsubscribe", "args": [{"channel": ..., "instId": ...}]}`` is
  answered with one ``{"event": "subscribe", "arg": {...}, "connId": ...}`` per arg
  (a malformed request with ``{"event": "error", "code": "60012", ...}``, a channel or
  instrument that does not exist with code ``60018``).
* The text ``"ping"`` is answered with ``"pong"``.
* Recorded frames belong to the topic ``"channel:instId"`` of their ``arg``
  (:func:`~tradebus.adapters.okx.parse.frame_stream`, as a replay reads them); recorded
  event frames, keep-alive ``"pong"`` replies and frames that do not decode are not replayed.
* Books (:class:`~tradebus.adapters.common.local_server.StreamBookProtocol`): the
  plugin rebuilds every recorded book with an :class:`~tradebus.adapters.okx.parse.OkxParser`
  and serves a late subscription a snapshot of it -- raw strings and CRC32 as OKX
  computes them, ``seqId`` of the last update (when the recording has them).
* ``GET /api/v5/market/history-trades?instId=&type=1&after=&before=&limit=`` serves the
  trades of the ``trades`` / ``trades-all`` frames the server has replayed (or skipped: a
  trade printed while a client was away is in the history), newest first, at most 100 a
  page, in OKX's envelope; each pushed element is one trade at its ``tradeId`` (the
  recordings' pushes have no ``count`` above 1).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import msgspec

from tradebus.adapters.common.local_server import Session, StreamBookProtocol
from tradebus.adapters.okx.parse import BOOK_CHANNELS, OkxParser, book_key, frame_stream
from tradebus.adapters.okx.schemas import OkxArg
from tradebus.adapters.okx.sync import okx_checksum

_HISTORY_PATH = "/api/v5/market/history-trades"
_TRADE_CHANNELS = ("trades", "trades-all")
_REST_KEYS = ("instId", "tradeId", "px", "sz", "side", "ts")

__all__ = ["OkxProtocol", "emulator"]


class _Request(msgspec.Struct):
    op: str
    args: list[OkxArg] = []


class OkxProtocol(StreamBookProtocol):
    """OKX v5 public dialect over a recording.

    Parameters
    ----------
    frames
        The same ``(recv_ns, raw)`` list given to the server (book frames are indexed by identity).
    rejected
        ``"channel:instId"`` keys OKX does not offer: subscribing one is answered with an
        ``error`` event (code 60018), as OKX answers an unknown channel or instrument.
    history_lag
        The first ``lagging_answers`` answers of ``history-trades`` leave out the ``history_lag``
        newest ids the request asks for: a REST history behind the stream (OKX: each market-data
        service has its own cache).
    lagging_answers
        How many answers lag.
    """

    name = "okx"

    def __init__(
        self,
        frames: Sequence[tuple[int, str]],
        rejected: frozenset[str] = frozenset(),
        *,
        history_lag: int = 0,
        lagging_answers: int = 1,
    ) -> None:
        self.rejected = rejected
        self.history_lag = history_lag
        self.lagging_answers = lagging_answers
        self._request = msgspec.json.Decoder(_Request)
        self._parser = OkxParser()
        self.trade_requests = 0
        #: ``instId -> {tradeId: REST element}`` of the trades printed so far.
        self.printed: dict[str, dict[int, dict[str, str]]] = {}
        super().__init__(frames)

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
            key = book_key(arg.channel, arg.instId)
            if req.op == "subscribe" and key in self.rejected:
                msg = f"Wrong URL or channel:{arg.channel},instId:{arg.instId} doesn't exist."
                error = {"event": "error", "code": "60018", "msg": msg, "connId": f"local{session.index}"}
                replies.append(json.dumps(error))
                continue
            plain = {"channel": arg.channel, "instId": arg.instId}
            replies.append(json.dumps({"event": req.op, "arg": plain, "connId": f"local{session.index}"}))
            if req.op == "unsubscribe":
                session.unsubscribe([key])
                continue
            replies += self.subscribe_book(key, session)
            session.subscribe([key])
        return replies

    def topic_of(self, raw: str) -> str | None:
        return frame_stream(raw) or "event"

    def is_stream_frame(self, raw: str) -> bool:
        return self.topic_of(raw) != "event"

    def on_sent(self, raw: str) -> None:
        super().on_sent(raw)
        if '"trades' not in raw:
            return
        frame = json.loads(raw)
        if frame.get("event") or frame.get("arg", {}).get("channel") not in _TRADE_CHANNELS:
            return
        for d in frame.get("data") or []:
            item = {k: d[k] for k in _REST_KEYS} | {"source": d.get("source", "0")}
            self.printed.setdefault(d["instId"], {})[int(d["tradeId"])] = item

    def http(self, path: str, query: dict[str, list[str]]) -> tuple[int, str] | None:
        if path != _HISTORY_PATH:
            return None
        self.trade_requests += 1
        if "instId" not in query:
            return 200, json.dumps({"code": "50014", "msg": "Parameter instId can not be empty", "data": []})
        if query.get("type", ["1"])[0] != "1":
            return 200, json.dumps({"code": "51000", "msg": "this emulator pages by tradeId only", "data": []})
        printed = self.printed.get(query["instId"][0], {})
        limit = min(int(query.get("limit", ["100"])[0]), 100)
        ids = sorted(printed, reverse=True)
        if "after" in query:
            below = int(query["after"][0])
            if self.trade_requests <= self.lagging_answers:
                below -= self.history_lag
            ids = [i for i in ids if i < below]
        if "before" in query:
            ids = [i for i in ids if i > int(query["before"][0])]
        rows = [printed[i] for i in ids[:limit]]
        return 200, json.dumps({"code": "0", "msg": "", "data": rows})

    def unknown_message(self) -> str:
        return '{"arg":{"channel":"brand-new-channel","instId":"BTC-USDT"},"data":[{"x":"1"}]}'

    def corrupt(self, raw: str, field_name: str, value: Any) -> str:
        """Set ``data[0][field_name] = value`` (e.g. a wrong ``checksum``)."""
        frame = json.loads(raw)
        frame["data"][0][field_name] = value
        return json.dumps(frame)

    # ------------------------------------------------------------------- books

    def book_key(self, raw: str) -> str | None:
        stream = frame_stream(raw)
        return stream if stream is not None and stream.partition(":")[0] in BOOK_CHANNELS else None

    def apply_book(self, key: str, raw: str) -> None:
        self._parser.parse_frame(raw, 0)

    def book_ready(self, key: str) -> bool:
        return self._parser.books.in_sync(key)

    def snapshot_frame(self, key: str) -> str:
        channel, _, inst_id = key.partition(":")
        sync = self._parser.books.syncs[key]
        book = sync.book
        bids, asks = sync.rule.raw_levels(book)  # type: ignore[attr-defined]
        data: dict[str, Any] = {
            "asks": [[p, s, "0", "1"] for p, s in asks],
            "bids": [[p, s, "0", "1"] for p, s in bids],
            "ts": str(book.ts_event // 1_000_000),
            "checksum": okx_checksum(bids, asks),
        }
        if book.last_seq != -1:
            data["seqId"] = book.last_seq
            data["prevSeqId"] = -1
        return json.dumps({"arg": {"channel": channel, "instId": inst_id}, "action": "snapshot", "data": [data]})


def emulator(frames: Sequence[tuple[int, str]], snapshot: str | None, futures: bool) -> OkxProtocol:
    """The registry's emulator factory (Okx books come in-stream: no REST snapshot, one protocol per category)."""
    return OkxProtocol(frames)
