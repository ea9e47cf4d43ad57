"""Binance's dialect for the local venue emulator (:mod:`tradebus.adapters.common.local_server`).

Speaks the combined-stream protocol: ``/stream?streams=a/b`` subscribes from the URL
and sends ``{"stream": ..., "data": ...}`` frames; ``/ws`` sends the bare payloads;
on either, ``{"method": "SUBSCRIBE"|"UNSUBSCRIBE"|"LIST_SUBSCRIPTIONS", "params": [...],
"id": n}`` is answered with ``{"result": null|[...], "id": n}`` (or an ``error`` object
for a malformed request or a stream the venue does not offer; a combined-stream URL naming
such a stream is refused with HTTP 400, as Binance does). Server pings are WebSocket pings (answered by the client
library). REST: ``GET /api/v3/depth``, ``/fapi/v1/depth``, ``/dapi/v1/depth`` serve the
recorded depth snapshot and, once the replay has moved past it, a snapshot rebuilt
from that recorded snapshot plus every diff the server has replayed since (with the
venue's sequence rule), so a client that resyncs mid-stream gets a consistent
snapshot. ``GET /api/v3/historicalTrades`` and ``/api/v3/aggTrades`` (and their ``/fapi/v1/``
twins) serve, by ``fromId`` and ``limit``, the trades of the trade / aggTrade frames the
server has replayed (or skipped: a trade printed while a client was away is in the history). ``GET /api/v3/exchangeInfo`` / ``/fapi/v1/exchangeInfo`` serve a given body.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
import numpy as np

from tradebus.adapters.common.book import OrderBook
from tradebus.adapters.common.local_server import Session, VenueProtocol
from tradebus.adapters.binance.sync import BinanceFuturesRule, BinanceSpotRule
from tradebus.adapters.common.sync import SequenceRule, Verdict
from tradebus.engine.messages import BookDelta, BookSnapshot

__all__ = ["BinanceProtocol", "emulator", "is_snapshot_line", "split_capture"]

_DEPTH_PATHS = ("/api/v3/depth", "/fapi/v1/depth", "/dapi/v1/depth")
_HISTORY_PATHS = ("/api/v3/historicalTrades", "/fapi/v1/historicalTrades")
_AGG_PATHS = ("/api/v3/aggTrades", "/fapi/v1/aggTrades")
_INFO_PATHS = ("/api/v3/exchangeInfo", "/fapi/v1/exchangeInfo", "/dapi/v1/exchangeInfo")
_KLINE_PATHS = ("/api/v3/klines", "/fapi/v1/klines")


def is_snapshot_line(raw: str) -> bool:
    """Whether a raw capture line is a REST depth snapshot (not a stream frame)."""
    return raw.startswith('{"lastUpdateId"')


def emulator(frames: Sequence[tuple[int, str]], snapshot: str | None, futures: bool) -> BinanceProtocol:
    """The registry's emulator factory: Binance streams, ``snapshot`` served on the REST depth path."""
    return BinanceProtocol(snapshot, futures=futures)


def split_capture(lines: list[tuple[int, str]]) -> tuple[list[tuple[int, str]], str | None]:
    """Split a hftbacktest capture into its stream frames and its REST depth snapshot (raw JSON or None)."""
    frames: list[tuple[int, str]] = []
    snapshot: str | None = None
    for recv_ns, raw in lines:
        if is_snapshot_line(raw):
            snapshot = raw
        else:
            frames.append((recv_ns, raw))
    return frames, snapshot


class BinanceProtocol(VenueProtocol):
    """Binance spot/USD-M/COIN-M market-data dialect.

    Parameters
    ----------
    snapshot
        Raw JSON of the recorded REST depth snapshot (``None``: depth requests get 404).
    futures
        Use the futures sequence rule to rebuild later snapshots (USD-M/COIN-M).
    exchange_info
        Raw JSON served for ``exchangeInfo`` (``None``: 404).
    http_failures
        The first ``http_failures`` depth requests are answered with HTTP 503.
    trade_failures
        The first ``trade_failures`` trade-history requests (``historicalTrades``,
        ``aggTrades``) are answered with HTTP 503.
    rejected_streams
        Streams the venue does not offer: a combined-stream handshake naming one is refused
        with HTTP 400, a ``SUBSCRIBE`` naming one is answered with an ``error`` object.
    klines
        ``symbol -> kline rows`` as Binance's ``klines`` REST answer writes them (``[open ms,
        "open", "high", "low", "close", "volume", close ms, ...]``, ascending), served for
        ``startTime``/``endTime`` (inclusive, on the open time) and ``limit``; ``None``: 404.
    """

    name = "binance"

    def __init__(
        self,
        snapshot: str | None = None,
        *,
        futures: bool = False,
        exchange_info: str | None = None,
        http_failures: int = 0,
        trade_failures: int = 0,
        rejected_streams: frozenset[str] = frozenset(),
        klines: dict[str, list[list[Any]]] | None = None,
    ) -> None:
        self.snapshot = snapshot
        self.klines = klines
        self.rejected_streams = rejected_streams
        self.exchange_info = exchange_info
        self.http_failures = http_failures
        self.trade_failures = trade_failures
        self.depth_requests = 0
        self.trade_requests = 0
        #: ``(symbol, "trade"|"aggTrade") -> {id: REST element}`` of the trades printed so far.
        self.printed: dict[tuple[str, str], dict[int, dict[str, Any]]] = {}
        self._rule: SequenceRule = BinanceFuturesRule() if futures else BinanceSpotRule()
        self._book = OrderBook("emulator")
        self._applied = 0
        self._event_ms = 0
        if snapshot is not None:
            snap = msgspec.json.decode(snapshot)
            bids = _levels(snap["bids"])
            asks = _levels(snap["asks"])
            self._book.load(bids, asks, int(snap["lastUpdateId"]))
            self._rule.reset(BookSnapshot("emulator", 0, 0, bids, asks, int(snap["lastUpdateId"])))

    # ------------------------------------------------------------------ stream

    def on_connect(self, session: Session) -> list[str]:
        if session.path.rstrip("/") == "/stream" and session.query.get("streams"):
            session.subscribe([s for s in session.query["streams"][0].split("/") if s])
        return []

    def on_client_message(self, text: str, session: Session) -> list[str]:
        try:
            req = msgspec.json.decode(text)
        except msgspec.DecodeError:
            return ['{"error":{"code":3,"msg":"Invalid JSON"},"id":null}']
        if not isinstance(req, dict) or not isinstance(req.get("method"), str):
            return ['{"error":{"code":2,"msg":"Invalid request: method must be a string"},"id":null}']
        req_id = req.get("id")
        params = req.get("params", [])
        if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
            return [msgspec.json.encode({"error": {"code": 2, "msg": "Invalid request: params"}, "id": req_id}).decode()]
        method = req["method"]
        refused = sorted(self.rejected_streams.intersection(params))
        if method == "SUBSCRIBE" and refused:
            error = {"code": 2, "msg": f"Invalid request: invalid stream {refused[0]}"}
            return [msgspec.json.encode({"error": error, "id": req_id}).decode()]
        if method == "SUBSCRIBE":
            session.subscribe(params)
            result: Any = None
        elif method == "UNSUBSCRIBE":
            session.unsubscribe(params)
            result = None
        elif method == "LIST_SUBSCRIPTIONS":
            result = sorted(session.subscriptions)
        else:
            return [msgspec.json.encode({"error": {"code": 0, "msg": f"Unknown method {method}"}, "id": req_id}).decode()]
        return [msgspec.json.encode({"result": result, "id": req_id}).decode()]

    def refuse_handshake(self, path: str, query: dict[str, list[str]]) -> tuple[int, str] | None:
        streams = query.get("streams", [""])[0].split("/")
        refused = sorted(self.rejected_streams.intersection(streams))
        if path.rstrip("/") == "/stream" and refused:
            body = {"code": 2, "msg": f"Invalid request: invalid stream {refused[0]}"}
            return 400, msgspec.json.encode(body).decode()
        return None

    def topic_of(self, raw: str) -> str | None:
        if raw.startswith('{"stream":"'):
            end = raw.find('"', 11)
            return raw[11:end]
        try:
            msg = msgspec.json.decode(raw)
        except msgspec.DecodeError:
            return None
        return msg.get("stream") if isinstance(msg, dict) else None

    def render(self, raw: str, session: Session) -> str:
        if session.path.startswith("/ws"):
            start = raw.find('"data":')
            if start >= 0:
                return raw[start + 7 : raw.rfind("}")]
        return raw

    def on_sent(self, raw: str) -> None:
        if '"e":"trade"' in raw or '"e":"aggTrade"' in raw:
            self._print_trade(msgspec.json.decode(raw)["data"])
            return
        if '"depthUpdate"' not in raw or self.snapshot is None:
            return
        data = msgspec.json.decode(raw)["data"]
        delta = BookDelta(
            "emulator",
            0,
            0,
            _levels(data["b"]),
            _levels(data["a"]),
            int(data["U"]),
            int(data["u"]),
            int(data.get("pu", -1)),
        )
        verdict = self._rule.check(delta)
        if verdict is Verdict.APPLY:
            self._book.apply(delta.bids, delta.asks)  # type: ignore[arg-type]
            self._rule.advance(delta)
            self._book.last_seq = delta.last_seq
            self._applied += 1
            self._event_ms = int(data["E"])

    def _print_trade(self, d: dict[str, Any]) -> None:
        if d["e"] == "trade":
            item = {"id": d["t"], "price": d["p"], "qty": d["q"], "quoteQty": repr(float(d["p"]) * float(d["q"])),
                    "time": d["T"], "isBuyerMaker": d["m"], "isBestMatch": True}
            self.printed.setdefault((d["s"], "trade"), {})[d["t"]] = item
        else:
            item = {k: d[k] for k in ("a", "p", "q", "f", "l", "T", "m")} | {"M": True}
            self.printed.setdefault((d["s"], "aggTrade"), {})[d["a"]] = item

    def _trades(self, path: str, query: dict[str, list[str]]) -> tuple[int, str]:
        self.trade_requests += 1
        if self.trade_requests <= self.trade_failures:
            return 503, '{"code":-1001,"msg":"Internal error; unable to process your request."}'
        if "symbol" not in query:
            return 400, '{"code":-1102,"msg":"Mandatory parameter \'symbol\' was not sent."}'
        kind = "aggTrade" if path in _AGG_PATHS else "trade"
        printed = self.printed.get((query["symbol"][0], kind), {})
        limit = min(int(query.get("limit", ["500"])[0]), 1000)
        ids = sorted(printed)
        from_id = int(query["fromId"][0]) if "fromId" in query else (ids[-limit] if len(ids) > limit else 0)
        rows = [printed[i] for i in ids if i >= from_id][:limit]
        return 200, msgspec.json.encode(rows).decode()

    def unknown_message(self) -> str:
        return '{"stream":"btcusdt@someNewStream","data":{"e":"someNewEvent","E":0}}'

    def corrupt(self, raw: str, field_name: str, value: Any) -> str:
        msg = msgspec.json.decode(raw)
        target = msg["data"] if isinstance(msg, dict) and isinstance(msg.get("data"), dict) else msg
        target[field_name] = value
        return msgspec.json.encode(msg).decode()

    # -------------------------------------------------------------------- http

    def http(self, path: str, query: dict[str, list[str]]) -> tuple[int, str] | None:
        if path in _INFO_PATHS:
            return None if self.exchange_info is None else (200, self.exchange_info)
        if path in _HISTORY_PATHS or path in _AGG_PATHS:
            return self._trades(path, query)
        if path in _KLINE_PATHS and self.klines is not None:
            rows = self.klines.get(query.get("symbol", [""])[0])
            if rows is None:
                return 400, '{"code":-1121,"msg":"Invalid symbol."}'
            start = int(query.get("startTime", ["0"])[0])
            end = int(query.get("endTime", [str(2**62)])[0])
            limit = int(query.get("limit", ["500"])[0])
            return 200, msgspec.json.encode([r for r in rows if start <= r[0] <= end][:limit]).decode()
        if path not in _DEPTH_PATHS or self.snapshot is None:
            return None
        self.depth_requests += 1
        if self.depth_requests <= self.http_failures:
            return 503, '{"code":-1001,"msg":"Internal error; unable to process your request."}'
        if "symbol" not in query:
            return 400, '{"code":-1102,"msg":"Mandatory parameter \'symbol\' was not sent."}'
        if self._applied == 0:
            return 200, self.snapshot
        limit = int(query.get("limit", ["1000"])[0])
        book = self._book
        body = {
            "lastUpdateId": book.last_seq,
            "E": self._event_ms,
            "T": self._event_ms,
            "bids": [[repr(p), repr(s)] for p, s in book.bids(limit).tolist()],
            "asks": [[repr(p), repr(s)] for p, s in book.asks(limit).tolist()],
        }
        return 200, msgspec.json.encode(body).decode()


def _levels(rows: list[list[str]]) -> np.ndarray:
    if not rows:
        return np.empty((0, 2), dtype=np.float64)
    return np.array(rows, dtype=np.float64).reshape(-1, 2)
