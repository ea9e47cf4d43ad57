"""A local Binance spot account for tests and demos: signed REST and the user data stream on 127.0.0.1.

:class:`BinancePrivateEmulator` is the Binance spot dialect of the shared
:class:`~tradebus.adapters.common.account_emulator.AccountEmulator` (matching, balances,
faults, sessions), speaking enough of Binance spot's private API for
:class:`~tradebus.adapters.binance.trading.BinanceTrading` (ccxt, its URLs pointed here) and
:class:`~tradebus.adapters.binance.user_stream.BinanceUserStream` to run unchanged:

* ``POST /api/v3/order``, ``DELETE /api/v3/order``, ``GET /api/v3/order``,
  ``GET /api/v3/openOrders``, ``GET /api/v3/myTrades``, ``GET /api/v3/account``: every
  request must carry ``X-MBX-APIKEY`` and a valid HMAC-SHA256 ``signature`` of its
  parameters, and a ``timestamp`` within ``recvWindow``; errors are Binance's
  (``-2015`` bad key, ``-1022`` bad signature, ``-1021`` timestamp, ``-2010`` duplicate
  client order id or refused order, ``-2011`` unknown order on cancel, ``-2013`` on query).
  Every answer has ``X-MBX-USED-WEIGHT-1M`` (:data:`WEIGHTS` per request, per wall minute).
* ``/ws-api/v3``: the WebSocket API's ``userDataStream.subscribe.signature``; then every
  order and balance change as ``{"subscriptionId": 0, "event": {...}}``.

Faults are the base's (``RestFault`` defaults to ``POST /api/v3/order``, ``StreamFault`` to
``executionReport`` frames), plus ``ban``: ``418`` with ``Retry-After``.

Departures from Binance, all documented: a MARKET order is answered ``NEW`` and fills at
the next trade (Binance fills it before answering); locked balances are not tracked.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from tradebus.adapters.binance.emulator import BinanceProtocol
from tradebus.adapters.binance.parse import parse_trade
from tradebus.adapters.common import account_emulator as common
from tradebus.adapters.common.account_emulator import AccountEmulator, EmulatedFill, EmulatedOrder, WsSession
from tradebus.engine.messages import OrderSide, OrderStatus, OrderType, TimeInForce, Trade
from tradebus.execution.orders import Order

__all__ = ["WEIGHTS", "BinancePrivateEmulator", "MatchingProtocol", "RestFault", "StreamFault"]

_MS = 1_000_000
_STATUS = {
    OrderStatus.ACCEPTED: "NEW",
    OrderStatus.PARTIALLY_FILLED: "PARTIALLY_FILLED",
    OrderStatus.FILLED: "FILLED",
    OrderStatus.CANCELED: "CANCELED",
    OrderStatus.REJECTED: "REJECTED",
    OrderStatus.EXPIRED: "EXPIRED",
}
_TYPES = {
    "MARKET": OrderType.MARKET,
    "LIMIT": OrderType.LIMIT,
    "LIMIT_MAKER": OrderType.LIMIT,
    "STOP_LOSS": OrderType.STOP_MARKET,
    "TAKE_PROFIT": OrderType.STOP_MARKET,
    "STOP_LOSS_LIMIT": OrderType.STOP_LIMIT,
    "TAKE_PROFIT_LIMIT": OrderType.STOP_LIMIT,
}
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
class RestFault(common.RestFault):
    """A REST fault (see :mod:`~tradebus.adapters.common.account_emulator`), by default on order placement."""

    method: str = "POST"
    path: str = "/api/v3/order"


@dataclass
class StreamFault(common.StreamFault):
    """A user-stream fault (see :mod:`~tradebus.adapters.common.account_emulator`), by default on order events."""

    match: str = "executionReport"


class BinancePrivateEmulator(AccountEmulator):
    """The emulated Binance spot account (see the module docstring); parameters as :class:`AccountEmulator`."""

    ws_path = "/ws-api/v3"
    rate_limit_code = -1003

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Arrival time (``time.monotonic()``) of every authenticated request, in order.
        self.request_times: list[float] = []
        #: ``client order id -> time.time_ns()`` when its POST arrived (latency benchmarks).
        self.placed_ns: dict[str, int] = {}
        #: Request weight used in the current minute (sent as ``X-MBX-USED-WEIGHT-1M``).
        self.weight = 0
        self._minute = 0
        self._types: dict[str, str] = {}

    @property
    def ws_api_url(self) -> str:
        """URL of the WebSocket API (user data stream)."""
        return self.ws_url

    @property
    def trades(self) -> list[dict[str, Any]]:
        """Every fill, as ``GET /api/v3/myTrades`` rows (the account's trade list)."""
        return [self._trade_row(f) for f in self.fills]

    # ------------------------------------------------------------------ REST dialect

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        minute = int(time.time() // 60)
        if minute != self._minute:
            self._minute, self.weight = minute, 0
        self.weight += WEIGHTS.get((request.method, request.path), 1)
        n = len(self.requests)
        response = await super()._rest(request)
        if len(self.requests) > n:
            self.request_times.append(time.monotonic())
        response.headers["X-MBX-USED-WEIGHT-1M"] = str(self.weight)
        return response

    def routes(self) -> dict[tuple[str, str], Any]:
        return {
            ("POST", "/api/v3/order"): self._place,
            ("DELETE", "/api/v3/order"): self._cancel,
            ("GET", "/api/v3/order"): self._query,
            ("GET", "/api/v3/openOrders"): self._open_orders,
            ("GET", "/api/v3/myTrades"): self._my_trades,
            ("GET", "/api/v3/account"): self._account,
        }

    def error(self, status: int, code: int | str, msg: str, headers: dict[str, str] | None = None) -> web.Response:
        return web.Response(status=status, text=json.dumps({"code": code, "msg": msg}), content_type="application/json", headers=headers)

    def _json(self, body: Any) -> web.Response:
        return web.Response(text=json.dumps(body), content_type="application/json")

    def params(self, request: web.Request, body: str) -> dict[str, Any]:
        return dict(parse_qsl(request.query_string)) | dict(parse_qsl(body))

    def client_id(self, params: dict[str, Any]) -> str:
        return params.get("newClientOrderId") or params.get("origClientOrderId") or ""

    def authenticate(self, request: web.Request, body: str) -> web.Response | None:
        if request.headers.get("X-MBX-APIKEY") != self.key:
            return self.error(401, -2015, "Invalid API-key, IP, or permissions for action.")
        params = self.params(request, body)
        sig = params.get("signature", "")
        total = request.query_string + body  # Binance signs the query string followed by the body
        payload = total.replace(f"&signature={sig}", "").replace(f"signature={sig}", "")
        expected = hmac.new(self.secret, payload.encode(), hashlib.sha256).hexdigest()
        if not sig or not hmac.compare_digest(sig, expected):
            return self.error(400, -1022, "Signature for this request is not valid.")
        window = int(params.get("recvWindow", "5000"))
        if abs(time.time() * 1000 - int(params.get("timestamp", "0"))) > window:
            return self.error(400, -1021, "Timestamp for this request is outside of the recvWindow.")
        return None

    def _place(self, p: dict[str, str]) -> web.Response:
        inst = self.instruments.get(p.get("symbol", ""))
        if inst is None:
            return self.error(400, -1121, "Invalid symbol.")
        coid = p["newClientOrderId"]
        self.placed_ns.setdefault(coid, time.time_ns())
        if coid in self.orders:
            return self.error(400, -2010, "Duplicate order sent.")
        typ = p["type"]
        kind = _TYPES.get(typ)
        if kind is None:
            return self.error(400, -1116, "Invalid orderType.")
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
        self._types[coid] = typ
        rec = self.submit(order, inst.symbol)
        if rec.status is OrderStatus.REJECTED:
            return self.error(400, -2010, f"Order rejected: {rec.reason}")
        return self._json(self._order_json(rec) | {"transactTime": rec.time_ms})

    def _cancel(self, p: dict[str, str]) -> web.Response:
        rec = self.orders.get(p.get("origClientOrderId", ""))
        if rec is None or not self.cancel(rec):
            return self.error(400, -2011, "Unknown order sent.")
        return self._json(self._order_json(rec))

    def _query(self, p: dict[str, str]) -> web.Response:
        rec = self.orders.get(p.get("origClientOrderId", ""))
        if rec is None:
            return self.error(400, -2013, "Order does not exist.")
        return self._json(self._order_json(rec))

    def _open_orders(self, p: dict[str, str]) -> web.Response:
        return self._json([self._order_json(r) for r in self.open_orders(p.get("symbol"))])

    def _my_trades(self, p: dict[str, str]) -> web.Response:
        rows = [f for f in self.fills if f.rec.symbol == p.get("symbol")]
        if "orderId" in p:
            rows = [f for f in rows if f.rec.order_id == int(p["orderId"])]
        if "fromId" in p:
            rows = [f for f in rows if f.trade_id >= int(p["fromId"])]
        return self._json([self._trade_row(f) for f in rows[: int(p.get("limit", "500"))]])

    def _account(self, p: dict[str, str]) -> web.Response:
        balances = [{"asset": a, "free": f"{v:.8f}", "locked": "0.00000000"} for a, v in sorted(self.balances.items())]
        return self._json({"uid": 354937868, "canTrade": True, "accountType": "SPOT", "updateTime": self.clock.now_ns() // _MS, "balances": balances})

    # ------------------------------------------------------------------ wire forms

    def _order_json(self, rec: EmulatedOrder) -> dict[str, Any]:
        order = rec.order
        quote = sum(f.fill.last_qty * f.fill.last_px for f in self.fills if f.rec is rec)
        return {
            "symbol": rec.symbol,
            "orderId": rec.order_id,
            "orderListId": -1,
            "clientOrderId": order.client_order_id,
            "price": f"{0.0 if math.isnan(order.price) else order.price:.8f}",
            "origQty": f"{order.quantity:.8f}",
            "executedQty": f"{rec.filled:.8f}",
            "cummulativeQuoteQty": f"{quote:.8f}",
            "status": _STATUS[rec.status],
            "timeInForce": str(order.tif),
            "type": self._types[order.client_order_id],
            "side": "BUY" if order.side is OrderSide.BUY else "SELL",
            "stopPrice": f"{0.0 if math.isnan(order.trigger_price) else order.trigger_price:.8f}",
            "time": rec.time_ms,
            "updateTime": max(rec.update_ms, rec.time_ms),
            "workingTime": rec.time_ms,
            "selfTradePreventionMode": "EXPIRE_MAKER",
        }

    def _trade_row(self, f: EmulatedFill) -> dict[str, Any]:
        fill = f.fill
        notional = fill.last_qty * fill.last_px
        return {
            "symbol": f.rec.symbol,
            "id": f.trade_id,
            "orderId": f.rec.order_id,
            "orderListId": -1,
            "price": f"{fill.last_px:.8f}",
            "qty": f"{fill.last_qty:.8f}",
            "quoteQty": f"{notional:.8f}",
            "commission": f"{fill.fee:.8f}",
            "commissionAsset": self.instruments[f.rec.symbol].quote,
            "time": fill.ts_event // _MS,
            "isBuyer": fill.side is OrderSide.BUY,
            "isMaker": fill.liquidity == "MAKER",
            "isBestMatch": True,
        }

    def order_frames(self, rec: EmulatedOrder, fill: EmulatedFill | None) -> list[tuple[str, str]]:
        order = rec.order
        status = _STATUS[rec.status]
        f = fill.fill if fill is not None else None
        now_ms = max(self.clock.now_ns() // _MS, rec.time_ms)
        event = {
            "e": "executionReport",
            "E": now_ms,
            "s": rec.symbol,
            "c": order.client_order_id,
            "S": "BUY" if order.side is OrderSide.BUY else "SELL",
            "o": self._types[order.client_order_id],
            "f": str(order.tif),
            "q": f"{order.quantity:.8f}",
            "p": f"{0.0 if math.isnan(order.price) else order.price:.8f}",
            "P": f"{0.0 if math.isnan(order.trigger_price) else order.trigger_price:.8f}",
            "C": "",
            "x": "TRADE" if f is not None else status,
            "X": status,
            "r": rec.reason or "NONE",
            "i": rec.order_id,
            "l": f"{f.last_qty if f else 0.0:.8f}",
            "z": f"{rec.filled:.8f}",
            "L": f"{f.last_px if f else 0.0:.8f}",
            "n": f"{f.fee if f else 0.0:.8f}",
            "N": self.instruments[rec.symbol].quote if f else None,
            "T": (f.ts_event // _MS) if f else now_ms,
            "t": fill.trade_id if fill is not None else -1,
            "w": status == "NEW",
            "m": bool(f and f.liquidity == "MAKER"),
            "O": rec.time_ms,
        }
        return [("user", json.dumps({"subscriptionId": 0, "event": event}))]

    def balance_frames(self, assets: list[str]) -> list[tuple[str, str]]:
        now_ms = self.clock.now_ns() // _MS
        rows = [{"a": a, "f": f"{self.balances.get(a, 0.0):.8f}", "l": "0.00000000"} for a in assets]
        return [("user", json.dumps({"subscriptionId": 0, "event": {"e": "outboundAccountPosition", "E": now_ms, "u": now_ms, "B": rows}}))]

    # ------------------------------------------------------------------ WebSocket dialect

    def ws_message(self, text: str, session: WsSession) -> list[str]:
        req = json.loads(text)
        rid = req.get("id")
        if req.get("method") != "userDataStream.subscribe.signature":
            return [json.dumps({"id": rid, "status": 400, "error": {"code": -1020, "msg": "This operation is not supported."}})]
        params = dict(req.get("params") or {})
        sig = str(params.pop("signature", ""))
        payload = "&".join(f"{k}={params[k]}" for k in sorted(params))
        expected = hmac.new(self.secret, payload.encode(), hashlib.sha256).hexdigest()
        if params.get("apiKey") != self.key:
            return [json.dumps({"id": rid, "status": 401, "error": {"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."}})]
        if not hmac.compare_digest(sig, expected):
            return [json.dumps({"id": rid, "status": 400, "error": {"code": -1022, "msg": "Signature for this request is not valid."}})]
        session.authed = True
        session.topics.add("user")
        return [json.dumps({"id": rid, "status": 200, "result": {"subscriptionId": 0}})]


class MatchingProtocol(BinanceProtocol):
    """The public stream emulator's Binance protocol, also feeding every sent trade to an account emulator."""

    def __init__(self, *args: Any, account: AccountEmulator, instrument_ids: dict[str, str], **kwargs: Any) -> None:
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
