"""A local Binance spot account for tests and demos: signed REST and the user data stream on 127.0.0.1.

:class:`BinancePrivateEmulator` is an aiohttp server speaking enough of Binance spot's
private API for :class:`~tradebus.adapters.binance.trading.BinanceTrading` (ccxt, its URLs
pointed here) and :class:`~tradebus.adapters.binance.user_stream.BinanceUserStream` to
run unchanged:

* ``POST /api/v3/order``, ``DELETE /api/v3/order``, ``GET /api/v3/order``,
  ``GET /api/v3/openOrders``, ``GET /api/v3/myTrades``, ``GET /api/v3/account``: every
  request must carry ``X-MBX-APIKEY`` and a valid HMAC-SHA256 ``signature`` of its
  parameters, and a ``timestamp`` within ``recvWindow``; errors are Binance's
  (``-2015`` bad key, ``-1022`` bad signature, ``-1021`` timestamp, ``-2010`` duplicate
  client order id or refused order, ``-2011`` unknown order on cancel, ``-2013`` on query).
  Every answer has ``X-MBX-USED-WEIGHT-1M``.
* ``/ws-api/v3``: the WebSocket API's ``userDataStream.subscribe.signature``; then every
  order and balance change as ``{"subscriptionId": 0, "event": {...}}``.

Orders are matched by the :class:`~tradebus.execution.simulated.SimulatedVenue` (fills on
trades) against the public trades fed with :meth:`BinancePrivateEmulator.on_trade` --
:class:`MatchingProtocol` feeds it every trade frame the public
:class:`~tradebus.adapters.common.local_server.LocalVenueServer` sends, so the account
trades against the recorded stream the daemon sees. The emulator's clock is the time of
the last trade: an order fills at the first trade after it arrived.

Departures from Binance, all documented: a MARKET order is answered ``NEW`` and fills at
the next trade (Binance fills it before answering); locked balances are not tracked.

Fault injection (:class:`RestFault`, :class:`StreamFault`), each firing once on the
``at``-th matching request or event frame (0-based):

``lose``        REST: the request is processed, then the connection is closed unanswered
``error5xx``    REST: ``503`` before processing (nothing happens)
``rate_limit``  REST: ``429`` with ``Retry-After`` before processing
``ban``         REST: ``418`` (IP ban) with ``Retry-After`` before processing
``duplicate``   stream: the event frame is sent twice
``drop``        stream: the event frame is not sent
``delay``       stream: sent after ``seconds``
``reorder``     stream: held back and sent after the next event frame
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import math
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import WSMsgType, web
from loguru import logger

from tradebus.adapters.binance.emulator import BinanceProtocol
from tradebus.adapters.binance.parse import parse_trade
from tradebus.engine.clock import SimulatedClock
from tradebus.engine.instrument import Instrument
from tradebus.engine.messages import (
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderSide,
    OrderStatus,
    OrderType,
    TimeInForce,
    Trade,
)
from tradebus.execution.config import VenueConfig
from tradebus.execution.orders import Order
from tradebus.execution.simulated import SimulatedVenue

__all__ = ["WEIGHTS", "BinancePrivateEmulator", "MatchingProtocol", "RestFault", "StreamFault"]

_MS = 1_000_000
_BINANCE_STATUS = {
    OrderStatus.SUBMITTED: "NEW",
    OrderStatus.ACCEPTED: "NEW",
    OrderStatus.TRIGGERED: "NEW",
    OrderStatus.PARTIALLY_FILLED: "PARTIALLY_FILLED",
    OrderStatus.FILLED: "FILLED",
    OrderStatus.CANCELED: "CANCELED",
    OrderStatus.REJECTED: "REJECTED",
    OrderStatus.EXPIRED: "EXPIRED",
}
_OPEN = {"NEW", "PARTIALLY_FILLED"}
#: Request weight of each endpoint, as Binance spot documents it.
WEIGHTS = {
    ("POST", "/api/v3/order"): 1,
    ("DELETE", "/api/v3/order"): 1,
    ("GET", "/api/v3/order"): 4,
    ("GET", "/api/v3/openOrders"): 6,
    ("GET", "/api/v3/myTrades"): 20,
    ("GET", "/api/v3/account"): 20,
}


@dataclass
class RestFault:
    """One REST fault: ``kind`` on the ``at``-th request of ``method`` ``path`` (see the module docstring)."""

    kind: str
    method: str = "POST"
    path: str = "/api/v3/order"
    at: int = 0
    retry_after: int = 1
    seen: int = 0
    fired: bool = False


@dataclass
class StreamFault:
    """One user-stream fault: ``kind`` on the ``at``-th event frame containing ``match``."""

    kind: str
    match: str = "executionReport"
    at: int = 0
    seconds: float = 0.0
    seen: int = 0
    fired: bool = False


@dataclass
class _Order:
    order: Order
    symbol: str
    type: str
    order_id: int
    time_ms: int
    status: str = "NEW"


@dataclass
class _Session:
    ws: web.WebSocketResponse
    queue: asyncio.Queue[str] = field(default_factory=asyncio.Queue)


class BinancePrivateEmulator:
    """The emulated account (see the module docstring).

    Parameters
    ----------
    api_key, api_secret
        The one key pair it accepts (test values).
    instruments
        ``instrument_id -> Instrument`` it trades (by symbol).
    balances
        Starting free balances per asset.
    rest_faults, stream_faults
        Faults to inject.
    """

    def __init__(
        self,
        api_key: str,
        api_secret: str,
        instruments: dict[str, Instrument],
        balances: dict[str, float] | None = None,
        rest_faults: list[RestFault] | None = None,
        stream_faults: list[StreamFault] | None = None,
    ) -> None:
        self._key = api_key
        self._secret = api_secret.encode()
        self.instruments = {inst.symbol: inst for inst in instruments.values()}
        self.balances: dict[str, float] = dict(balances or {})
        self.rest_faults = list(rest_faults or [])
        self.stream_faults = list(stream_faults or [])
        self.clock = SimulatedClock()
        self.venue = SimulatedVenue(self.clock, dict(instruments), VenueConfig(fill_on="trades"), arrival_alerts=True)
        self.venue.bind(self._on_venue_event)
        self.orders: dict[str, _Order] = {}
        #: Every fill, as ``GET /api/v3/myTrades`` rows (the account's trade list).
        self.trades: list[dict[str, Any]] = []
        #: ``(method, path, newClientOrderId or origClientOrderId)`` of every authenticated request.
        self.requests: list[tuple[str, str, str]] = []
        #: Arrival time (``time.monotonic()``) of every authenticated request, in order.
        self.request_times: list[float] = []
        #: ``client order id -> time.time_ns()`` when its POST arrived (latency benchmarks).
        self.placed_ns: dict[str, int] = {}
        #: Request weight used in the current minute (sent as ``X-MBX-USED-WEIGHT-1M``).
        self.weight = 0
        self._minute = 0
        self._sessions: list[_Session] = []
        self._held: dict[int, str] = {}
        self._order_ids = 0
        self._placing: _Order | None = None
        self._placing_events: list[Any] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    # ------------------------------------------------------------------ server

    @property
    def rest_url(self) -> str:
        """Base URL of the REST API."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_api_url(self) -> str:
        """URL of the WebSocket API (user data stream)."""
        return f"ws://127.0.0.1:{self.port}/ws-api/v3"

    async def start(self) -> None:
        """Listen on a free port of 127.0.0.1."""
        app = web.Application()
        app.router.add_route("*", "/api/v3/{name}", self._rest)
        app.router.add_get("/ws-api/v3", self._ws)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        """Close every connection and stop listening."""
        for session in self._sessions:
            await session.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> BinancePrivateEmulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ market data

    def on_trade(self, trade: Trade) -> None:
        """A public trade: time moves to it and working orders are matched."""
        self.clock.advance_to(trade.ts_init)
        self.venue.on_trade(trade)

    # ------------------------------------------------------------------ REST

    def _fault(self, method: str, path: str) -> RestFault | None:
        for fault in self.rest_faults:
            if not fault.fired and fault.method == method and fault.path == path:
                fault.seen += 1
                if fault.seen - 1 == fault.at:
                    fault.fired = True
                    return fault
        return None

    def _error(self, status: int, code: int, msg: str, headers: dict[str, str] | None = None) -> web.Response:
        headers = {"X-MBX-USED-WEIGHT-1M": str(self.weight), **(headers or {})}
        return web.Response(status=status, text=json.dumps({"code": code, "msg": msg}), content_type="application/json", headers=headers)

    def _json(self, body: Any) -> web.Response:
        return web.Response(text=json.dumps(body), content_type="application/json", headers={"X-MBX-USED-WEIGHT-1M": str(self.weight)})

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        body = await request.text() if request.can_read_body else ""
        total = request.query_string + body  # Binance signs the query string followed by the body
        params = dict(parse_qsl(request.query_string)) | dict(parse_qsl(body))
        minute = int(time.time() // 60)
        if minute != self._minute:
            self._minute, self.weight = minute, 0
        self.weight += WEIGHTS.get((request.method, path), 1)
        if request.headers.get("X-MBX-APIKEY") != self._key:
            return self._error(401, -2015, "Invalid API-key, IP, or permissions for action.")
        sig = params.get("signature", "")
        payload = total.replace(f"&signature={sig}", "").replace(f"signature={sig}", "")
        expected = hmac.new(self._secret, payload.encode(), hashlib.sha256).hexdigest()
        if not sig or not hmac.compare_digest(sig, expected):
            return self._error(400, -1022, "Signature for this request is not valid.")
        window = int(params.get("recvWindow", "5000"))
        if abs(time.time() * 1000 - int(params.get("timestamp", "0"))) > window:
            return self._error(400, -1021, "Timestamp for this request is outside of the recvWindow.")
        coid = params.get("newClientOrderId") or params.get("origClientOrderId") or ""
        self.requests.append((request.method, path, coid))
        self.request_times.append(time.monotonic())
        fault = self._fault(request.method, path)
        if fault is not None and fault.kind == "error5xx":
            return self._error(503, -1001, "Internal error; unable to process your request. Please try again.")
        if fault is not None and fault.kind == "rate_limit":
            return self._error(429, -1003, "Too many requests.", {"Retry-After": str(fault.retry_after)})
        if fault is not None and fault.kind == "ban":
            return self._error(418, -1003, "Way too many requests; IP banned.", {"Retry-After": str(fault.retry_after)})
        handler = {
            ("POST", "/api/v3/order"): self._place,
            ("DELETE", "/api/v3/order"): self._cancel,
            ("GET", "/api/v3/order"): self._query,
            ("GET", "/api/v3/openOrders"): self._open_orders,
            ("GET", "/api/v3/myTrades"): self._my_trades,
            ("GET", "/api/v3/account"): self._account,
        }.get((request.method, path))
        if handler is None:
            return self._error(404, -1000, f"{request.method} {path} is not emulated")
        response = handler(params)
        if fault is not None and fault.kind == "lose":
            logger.info("emulator: {} {} processed, answer lost", request.method, path)
            assert request.transport is not None
            request.transport.close()
            await asyncio.sleep(0.05)
        return response

    def _place(self, p: dict[str, str]) -> web.Response:
        inst = self.instruments.get(p.get("symbol", ""))
        if inst is None:
            return self._error(400, -1121, "Invalid symbol.")
        coid = p["newClientOrderId"]
        self.placed_ns.setdefault(coid, time.time_ns())
        if coid in self.orders:
            return self._error(400, -2010, "Duplicate order sent.")
        typ = p["type"]
        kind = {
            "MARKET": OrderType.MARKET,
            "LIMIT": OrderType.LIMIT,
            "LIMIT_MAKER": OrderType.LIMIT,
            "STOP_LOSS": OrderType.STOP_MARKET,
            "TAKE_PROFIT": OrderType.STOP_MARKET,
            "STOP_LOSS_LIMIT": OrderType.STOP_LIMIT,
            "TAKE_PROFIT_LIMIT": OrderType.STOP_LIMIT,
        }.get(typ)
        if kind is None:
            return self._error(400, -1116, "Invalid orderType.")
        order = Order(
            coid,
            "",
            inst.instrument_id,
            OrderSide.BUY if p["side"] == "BUY" else OrderSide.SELL,
            kind,
            float(p["quantity"]),
            float(p.get("price", "nan")),
            float(p.get("stopPrice", "nan")),
            TimeInForce(p.get("timeInForce", "GTC")),
            post_only=typ == "LIMIT_MAKER",
        )
        now_ms = int(time.time() * 1000)
        self._order_ids += 1
        rec = _Order(order, inst.symbol, typ, self._order_ids, now_ms)
        self.orders[coid] = rec
        # The arrival is handled now; what it causes is reported after NEW, as Binance does.
        self._placing, self._placing_events = rec, []
        try:
            self.venue.submit(order)
            self.clock.advance_to(self.clock.now_ns())
        finally:
            self._placing = None
        events = self._placing_events
        refused = [e for e in events if type(e) is OrderRejected]
        if refused:
            rec.status = "REJECTED"
            return self._error(400, -2010, f"Order rejected: {refused[0].reason}")
        self._report(rec, "NEW", "NEW")
        for event in events:
            self._on_venue_event(event)
        return self._json(self._order_json(rec) | {"transactTime": now_ms})

    def _cancel(self, p: dict[str, str]) -> web.Response:
        rec = self.orders.get(p.get("origClientOrderId", ""))
        if rec is None or rec.status not in _OPEN:
            return self._error(400, -2011, "Unknown order sent.")
        self.venue.cancel(rec.order)
        self.clock.advance_to(self.clock.now_ns())
        return self._json(self._order_json(rec))

    def _query(self, p: dict[str, str]) -> web.Response:
        rec = self.orders.get(p.get("origClientOrderId", ""))
        if rec is None:
            return self._error(400, -2013, "Order does not exist.")
        return self._json(self._order_json(rec))

    def _open_orders(self, p: dict[str, str]) -> web.Response:
        symbol = p.get("symbol")
        rows = [self._order_json(r) for r in self.orders.values() if r.status in _OPEN and symbol in (None, r.symbol)]
        return self._json(rows)

    def _my_trades(self, p: dict[str, str]) -> web.Response:
        rows = [t for t in self.trades if t["symbol"] == p.get("symbol")]
        if "orderId" in p:
            rows = [t for t in rows if t["orderId"] == int(p["orderId"])]
        if "fromId" in p:
            rows = [t for t in rows if t["id"] >= int(p["fromId"])]
        return self._json(rows[: int(p.get("limit", "500"))])

    def _account(self, p: dict[str, str]) -> web.Response:
        balances = [{"asset": a, "free": f"{v:.8f}", "locked": "0.00000000"} for a, v in sorted(self.balances.items())]
        return self._json({"uid": 354937868, "canTrade": True, "accountType": "SPOT", "updateTime": self.clock.now_ns() // _MS, "balances": balances})

    def _order_json(self, rec: _Order) -> dict[str, Any]:
        order = rec.order
        report = self.venue.query_order(order.client_order_id)
        filled = report.filled_qty if report is not None else 0.0
        quote = sum(f.last_qty * f.last_px for f in (report.fills if report else ()))
        price = 0.0 if math.isnan(order.price) else order.price
        stop = 0.0 if math.isnan(order.trigger_price) else order.trigger_price
        return {
            "symbol": rec.symbol,
            "orderId": rec.order_id,
            "orderListId": -1,
            "clientOrderId": order.client_order_id,
            "price": f"{price:.8f}",
            "origQty": f"{order.quantity:.8f}",
            "executedQty": f"{filled:.8f}",
            "cummulativeQuoteQty": f"{quote:.8f}",
            "status": rec.status,
            "timeInForce": str(order.tif),
            "type": rec.type,
            "side": "BUY" if order.side is OrderSide.BUY else "SELL",
            "stopPrice": f"{stop:.8f}",
            "time": rec.time_ms,
            "updateTime": (report.ts_event // _MS) if report and report.ts_event else rec.time_ms,
            "workingTime": rec.time_ms,
            "selfTradePreventionMode": "EXPIRE_MAKER",
        }

    # ------------------------------------------------------------------ matching -> events

    def _on_venue_event(self, event: Any) -> None:
        rec = self.orders.get(getattr(event, "client_order_id", ""))
        if rec is None:
            return
        if rec is self._placing:
            self._placing_events.append(event)
            return
        cls = type(event)
        if cls is OrderAccepted:
            return  # NEW was reported when the REST request was answered
        if cls is OrderFilled:
            self._book_fill(rec, event)
            return
        if cls is OrderCanceled:
            rec.status = "CANCELED"
        elif cls is OrderExpired:
            rec.status = "EXPIRED"
        elif cls is OrderRejected:
            rec.status = "REJECTED"
        else:
            return
        self._report(rec, rec.status, rec.status, reason=getattr(event, "reason", ""))

    def _book_fill(self, rec: _Order, fill: OrderFilled) -> None:
        inst = self.instruments[rec.symbol]
        fee = fill.fee  # in the quote asset
        buy = fill.side is OrderSide.BUY
        notional = fill.last_qty * fill.last_px
        self.balances[inst.base] = self.balances.get(inst.base, 0.0) + (fill.last_qty if buy else -fill.last_qty)
        self.balances[inst.quote] = self.balances.get(inst.quote, 0.0) + (-notional if buy else notional) - fee
        trade_id = int(fill.trade_id.removeprefix("SIM-T"))
        report = self.venue.query_order(rec.order.client_order_id)
        assert report is not None
        rec.status = "FILLED" if report.status is OrderStatus.FILLED else "PARTIALLY_FILLED"
        ts_ms = fill.ts_event // _MS
        self.trades.append(
            {
                "symbol": rec.symbol,
                "id": trade_id,
                "orderId": rec.order_id,
                "orderListId": -1,
                "price": f"{fill.last_px:.8f}",
                "qty": f"{fill.last_qty:.8f}",
                "quoteQty": f"{notional:.8f}",
                "commission": f"{fee:.8f}",
                "commissionAsset": inst.quote,
                "time": ts_ms,
                "isBuyer": buy,
                "isMaker": fill.liquidity == "MAKER",
                "isBestMatch": True,
            }
        )
        self._report(rec, "TRADE", rec.status, fill=fill, cum=report.filled_qty)
        self._send(
            {
                "e": "outboundAccountPosition",
                "E": ts_ms,
                "u": ts_ms,
                "B": [{"a": a, "f": f"{self.balances.get(a, 0.0):.8f}", "l": "0.00000000"} for a in (inst.base, inst.quote)],
            }
        )

    def _report(
        self, rec: _Order, x: str, status: str, *, fill: OrderFilled | None = None, cum: float | None = None, reason: str = ""
    ) -> None:
        order = rec.order
        report = self.venue.query_order(order.client_order_id)
        filled = cum if cum is not None else (report.filled_qty if report else 0.0)
        now_ms = max(self.clock.now_ns() // _MS, rec.time_ms)
        event = {
            "e": "executionReport",
            "E": now_ms,
            "s": rec.symbol,
            "c": order.client_order_id,
            "S": "BUY" if order.side is OrderSide.BUY else "SELL",
            "o": rec.type,
            "f": str(order.tif),
            "q": f"{order.quantity:.8f}",
            "p": f"{0.0 if math.isnan(order.price) else order.price:.8f}",
            "P": f"{0.0 if math.isnan(order.trigger_price) else order.trigger_price:.8f}",
            "C": "",
            "x": x,
            "X": status,
            "r": "NONE" if not reason else reason,
            "i": rec.order_id,
            "l": f"{fill.last_qty if fill else 0.0:.8f}",
            "z": f"{filled:.8f}",
            "L": f"{fill.last_px if fill else 0.0:.8f}",
            "n": f"{fill.fee if fill else 0.0:.8f}",
            "N": self.instruments[rec.symbol].quote if fill else None,
            "T": (fill.ts_event // _MS) if fill else now_ms,
            "t": int(fill.trade_id.removeprefix("SIM-T")) if fill else -1,
            "w": status == "NEW",
            "m": bool(fill and fill.liquidity == "MAKER"),
            "O": rec.time_ms,
        }
        self._send(event)

    # ------------------------------------------------------------------ user stream

    def _send(self, event: dict[str, Any]) -> None:
        frame = json.dumps({"subscriptionId": 0, "event": event})
        frames = [frame]
        for fault in self.stream_faults:
            if fault.fired or fault.match not in frame:
                continue
            fault.seen += 1
            if fault.seen - 1 != fault.at:
                continue
            fault.fired = True
            if fault.kind == "duplicate":
                frames = [frame, frame]
            elif fault.kind == "drop":
                frames = []
            elif fault.kind == "reorder":
                self._held[id(fault)] = frame
                return
            elif fault.kind == "delay":
                asyncio.get_running_loop().call_later(fault.seconds, self._push, [frame])
                return
        held = list(self._held.values())
        self._held.clear()
        self._push(frames + held)

    def _push(self, frames: list[str]) -> None:
        for session in self._sessions:
            for frame in frames:
                session.queue.put_nowait(frame)

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        session = _Session(ws)
        sender = asyncio.create_task(self._sender(session))
        try:
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    continue
                req = json.loads(msg.data)
                await ws.send_str(json.dumps(self._ws_request(req, session)))
        finally:
            sender.cancel()
            if session in self._sessions:
                self._sessions.remove(session)
        return ws

    def _ws_request(self, req: dict[str, Any], session: _Session) -> dict[str, Any]:
        rid = req.get("id")
        if req.get("method") != "userDataStream.subscribe.signature":
            return {"id": rid, "status": 400, "error": {"code": -1020, "msg": "This operation is not supported."}}
        params = dict(req.get("params") or {})
        sig = str(params.pop("signature", ""))
        payload = "&".join(f"{k}={params[k]}" for k in sorted(params))
        expected = hmac.new(self._secret, payload.encode(), hashlib.sha256).hexdigest()
        if params.get("apiKey") != self._key:
            return {"id": rid, "status": 401, "error": {"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."}}
        if not hmac.compare_digest(sig, expected):
            return {"id": rid, "status": 400, "error": {"code": -1022, "msg": "Signature for this request is not valid."}}
        self._sessions.append(session)
        return {"id": rid, "status": 200, "result": {"subscriptionId": 0}}

    async def _sender(self, session: _Session) -> None:
        while True:
            frame = await session.queue.get()
            await session.ws.send_str(frame)


class MatchingProtocol(BinanceProtocol):
    """The public stream emulator's Binance protocol, also feeding every sent trade to an account emulator."""

    def __init__(self, *args: Any, account: BinancePrivateEmulator, instrument_ids: dict[str, str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.account = account
        self.instrument_ids = instrument_ids  # stream symbol (lower case) -> instrument id

    def on_sent(self, raw: str) -> None:
        super().on_sent(raw)
        if '@trade"' not in raw:
            return
        symbol = raw[raw.find('"stream":"') + 10 : raw.find("@trade")]
        iid = self.instrument_ids.get(symbol)
        if iid is not None:
            trade = parse_trade(raw, 0, iid)
            self.account.on_trade(Trade(iid, trade.ts_event, trade.ts_event, trade.price, trade.size, trade.aggressor, trade.trade_id))
