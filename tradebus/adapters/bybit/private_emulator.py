"""A local Bybit v5 testnet account for tests and demos: signed REST and the private WebSocket on 127.0.0.1.

:class:`BybitPrivateEmulator` speaks enough of Bybit v5 (unified account, ``category=spot``)
for :class:`~tradebus.adapters.bybit.trading.BybitTrading` (ccxt, its URLs pointed here) and
the private stream of :mod:`tradebus.adapters.bybit.user_stream` to run unchanged:

* ``POST /v5/order/create``, ``/v5/order/cancel``, ``/v5/order/amend``; ``GET
  /v5/order/realtime`` (open orders; any recent order by ``orderLinkId``),
  ``/v5/order/history``, ``/v5/execution/list``, ``/v5/account/wallet-balance``. Every
  request must carry ``X-BAPI-API-KEY``, an ``X-BAPI-TIMESTAMP`` within
  ``X-BAPI-RECV-WINDOW`` and ``X-BAPI-SIGN`` (hex HMAC-SHA256 of timestamp + key + recv
  window + body or query string). Answers are ``{"retCode", "retMsg", "result",
  "retExtInfo", "time"}``; errors Bybit's: ``10003`` bad key, ``10004`` bad signature,
  ``10002`` timestamp, ``10001`` a parameter, ``170141`` duplicate ``orderLinkId``,
  ``170213`` unknown order on a cancel or amend.
* ``/v5/private``: ``auth`` (signature of ``"GET/realtime" + expires``), then ``subscribe``
  to ``order``, ``execution``, ``wallet``; ``{"op": "ping"}`` is answered with ``pong``.
  A fill is an ``execution`` push followed by the ``order`` push; balances go to ``wallet``.

Matching, balances and faults are the :class:`~tradebus.adapters.common.account_emulator.AccountEmulator`'s.
Departures from Bybit: a MARKET order is acknowledged ``New`` and fills at the next public
trade, its size in the base asset (``marketUnit=baseCoin``); conditional orders are not emulated.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import time
from typing import Any

from aiohttp import web

from tradebus.adapters.bybit.emulator import BybitProtocol
from tradebus.adapters.bybit.user_stream import wire_symbol
from tradebus.adapters.common.account_emulator import AccountEmulator, EmulatedFill, EmulatedOrder, WsSession
from tradebus.engine.instrument import Instrument
from tradebus.engine.messages import OrderSide, OrderStatus, OrderType, TimeInForce, Trade
from tradebus.execution.orders import Order

__all__ = ["BybitPrivateEmulator", "MatchingProtocol"]

_STATUS = {
    OrderStatus.ACCEPTED: "New",
    OrderStatus.PARTIALLY_FILLED: "PartiallyFilled",
    OrderStatus.FILLED: "Filled",
    OrderStatus.CANCELED: "Cancelled",
    OrderStatus.EXPIRED: "Deactivated",
    OrderStatus.REJECTED: "Rejected",
}
_TIF = {"GTC": (TimeInForce.GTC, False), "IOC": (TimeInForce.IOC, False), "FOK": (TimeInForce.FOK, False), "PostOnly": (TimeInForce.GTC, True)}


class BybitPrivateEmulator(AccountEmulator):
    """The emulated Bybit testnet account (see the module docstring); parameters as :class:`AccountEmulator`."""

    rate_limit_code = 10006
    ws_path = "/v5/private"

    def symbol_of(self, inst: Instrument) -> str:
        return wire_symbol(inst)

    # ------------------------------------------------------------------ REST dialect

    def routes(self) -> dict[tuple[str, str], Any]:
        return {
            ("POST", "/v5/order/create"): self._place,
            ("POST", "/v5/order/cancel"): self._cancel,
            ("POST", "/v5/order/amend"): self._amend,
            ("GET", "/v5/order/realtime"): self._realtime,
            ("GET", "/v5/order/history"): self._history,
            ("GET", "/v5/execution/list"): self._executions,
            ("GET", "/v5/account/wallet-balance"): self._wallet,
        }

    def error(self, status: int, code: int | str, msg: str, headers: dict[str, str] | None = None) -> web.Response:
        body = {"retCode": int(code), "retMsg": msg, "result": {}, "retExtInfo": {}, "time": int(time.time() * 1000)}
        return web.json_response(body, status=status, headers=headers)

    def _ok(self, result: dict[str, Any]) -> web.Response:
        return web.json_response({"retCode": 0, "retMsg": "OK", "result": result, "retExtInfo": {}, "time": int(time.time() * 1000)})

    def authenticate(self, request: web.Request, body: str) -> web.Response | None:
        h = request.headers
        if h.get("X-BAPI-API-KEY") != self.key:
            return self.error(401, 10003, "API key is invalid.")
        ts, window = h.get("X-BAPI-TIMESTAMP", ""), h.get("X-BAPI-RECV-WINDOW", "5000")
        if not ts.isdigit() or not window.isdigit() or abs(time.time() * 1000 - int(ts)) > int(window):
            return self.error(200, 10002, "invalid request, please check your server timestamp or recv_window param")
        payload = ts + self.key + window + (body if request.method == "POST" else request.query_string)
        expected = hmac.new(self.secret, payload.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(h.get("X-BAPI-SIGN", ""), expected):
            return self.error(200, 10004, "error sign! origin_string[...]")
        return None

    def params(self, request: web.Request, body: str) -> dict[str, Any]:
        if request.method == "GET":
            return dict(request.query)
        loaded = json.loads(body) if body else {}
        return loaded if isinstance(loaded, dict) else {}

    def client_id(self, params: dict[str, Any]) -> str:
        return str(params.get("orderLinkId", ""))

    def _find(self, p: dict[str, Any]) -> EmulatedOrder | None:
        return self.find(str(p.get("orderLinkId") or ""), str(p.get("orderId") or ""))

    def _place(self, p: dict[str, Any]) -> web.Response:
        if p.get("category") != "spot":
            return self.error(200, 10001, f"category {p.get('category')!r}: only spot is emulated")
        symbol = str(p.get("symbol", ""))
        inst = self.instruments.get(symbol)
        if inst is None:
            return self.error(200, 10001, "params error: symbol invalid")
        coid = str(p.get("orderLinkId", ""))
        if not coid or len(coid) > 36:
            return self.error(200, 10001, "params error: orderLinkId")
        if coid in self.orders:
            return self.error(200, 170141, "Duplicate clientOrderId.")
        typ = {"Market": OrderType.MARKET, "Limit": OrderType.LIMIT}.get(str(p.get("orderType")))
        if typ is None:
            return self.error(200, 10001, f"params error: orderType {p.get('orderType')!r}")
        if typ is OrderType.MARKET and p.get("marketUnit") != "baseCoin":
            return self.error(200, 10001, "params error: marketUnit (emulated: baseCoin only)")
        tif, post_only = _TIF.get(str(p.get("timeInForce", "GTC")), (TimeInForce.GTC, False))
        side = OrderSide.BUY if p.get("side") == "Buy" else OrderSide.SELL
        price = float(p["price"]) if typ is OrderType.LIMIT else math.nan
        order = Order(coid, "", inst.instrument_id, side, typ, float(p["qty"]), price, tif=tif, post_only=post_only)
        rec = self.submit(order, symbol)
        if rec.status is OrderStatus.REJECTED:
            return self.error(200, 170130, f"Order rejected: {rec.reason}")
        return self._ok({"orderId": str(rec.order_id), "orderLinkId": coid})

    def _cancel(self, p: dict[str, Any]) -> web.Response:
        rec = self._find(p)
        if rec is None or not self.cancel(rec):
            return self.error(200, 170213, "Order does not exist.")
        return self._ok({"orderId": str(rec.order_id), "orderLinkId": rec.order.client_order_id})

    def _amend(self, p: dict[str, Any]) -> web.Response:
        rec = self._find(p)
        qty = float(p["qty"]) if p.get("qty") else None
        price = float(p["price"]) if p.get("price") else None
        if rec is None or not self.amend(rec, qty, price):
            return self.error(200, 170213, "Order does not exist.")
        return self._ok({"orderId": str(rec.order_id), "orderLinkId": rec.order.client_order_id})

    def _listed(self, rows: list[EmulatedOrder]) -> web.Response:
        return self._ok({"category": "spot", "list": [self._row(r) for r in rows], "nextPageCursor": ""})

    def _realtime(self, p: dict[str, Any]) -> web.Response:
        if p.get("orderLinkId") or p.get("orderId"):
            rec = self._find(p)
            return self._listed([rec] if rec is not None and rec.status is not OrderStatus.REJECTED else [])
        return self._listed(self.open_orders(p.get("symbol")))

    def _history(self, p: dict[str, Any]) -> web.Response:
        rec = self._find(p)
        return self._listed([rec] if rec is not None and rec.status is not OrderStatus.REJECTED else [])

    def _executions(self, p: dict[str, Any]) -> web.Response:
        rows = [f for f in self.fills if p.get("symbol") in (None, f.rec.symbol) and p.get("orderId") in (None, str(f.rec.order_id))]
        return self._ok({"category": "spot", "list": [self._execution(f) for f in reversed(rows)], "nextPageCursor": ""})

    def _wallet(self, p: dict[str, Any]) -> web.Response:
        return self._ok({"list": [self._account(sorted(self.balances))]})

    # ------------------------------------------------------------------ wire forms

    def _execution(self, f: EmulatedFill) -> dict[str, Any]:
        fill, order = f.fill, f.rec.order
        return {
            "category": "spot",
            "symbol": f.rec.symbol,
            "orderId": str(f.rec.order_id),
            "orderLinkId": order.client_order_id,
            "side": "Buy" if fill.side is OrderSide.BUY else "Sell",
            "orderPrice": "" if math.isnan(order.price) else repr(order.price),
            "orderQty": repr(order.quantity),
            "orderType": "Market" if order.order_type is OrderType.MARKET else "Limit",
            "execId": str(f.trade_id),
            "execPrice": repr(fill.last_px),
            "execQty": repr(fill.last_qty),
            "execValue": repr(fill.last_qty * fill.last_px),
            "execFee": repr(fill.fee),
            "feeCurrency": self.instruments[f.rec.symbol].quote,
            "execType": "Trade",
            "execTime": str(fill.ts_event // 1_000_000),
            "isMaker": fill.liquidity == "MAKER",
        }

    def _row(self, rec: EmulatedOrder) -> dict[str, Any]:
        order = rec.order
        mine = [f.fill for f in self.fills if f.rec is rec]
        filled = sum(f.last_qty for f in mine)
        value = sum(f.last_qty * f.last_px for f in mine)
        return {
            "category": "spot",
            "symbol": rec.symbol,
            "orderId": str(rec.order_id),
            "orderLinkId": order.client_order_id,
            "side": "Buy" if order.side is OrderSide.BUY else "Sell",
            "orderType": "Market" if order.order_type is OrderType.MARKET else "Limit",
            "price": "0" if math.isnan(order.price) else repr(order.price),
            "qty": repr(order.quantity),
            "timeInForce": "PostOnly" if order.post_only else str(order.tif),
            "orderStatus": _STATUS[rec.status],
            "cancelType": "CancelByUser" if rec.status is OrderStatus.CANCELED else "UNKNOWN",
            "rejectReason": "EC_NoError" if not rec.reason else rec.reason,
            "cumExecQty": repr(filled),
            "cumExecValue": repr(value),
            "cumExecFee": repr(sum(f.fee for f in mine)),
            "avgPrice": repr(value / filled) if filled else "",
            "leavesQty": repr(max(order.quantity - filled, 0.0) if rec.status in (OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED) else 0.0),
            "createdTime": str(rec.time_ms),
            "updatedTime": str(max(rec.update_ms, rec.time_ms)),
        }

    def _account(self, assets: list[str]) -> dict[str, Any]:
        coins = [
            {"coin": a, "walletBalance": repr(self.balances.get(a, 0.0)), "availableToWithdraw": repr(self.balances.get(a, 0.0)), "locked": "0"}
            for a in assets
        ]
        return {"accountType": "UNIFIED", "coin": coins}

    def _push_frame(self, topic: str, data: list[dict[str, Any]]) -> tuple[str, str]:
        return topic, json.dumps({"id": f"{topic}-{self.now_ms()}", "topic": topic, "creationTime": self.now_ms(), "data": data})

    def order_frames(self, rec: EmulatedOrder, fill: EmulatedFill | None) -> list[tuple[str, str]]:
        frames = [self._push_frame("execution", [self._execution(fill)])] if fill is not None else []
        return frames + [self._push_frame("order", [self._row(rec)])]

    def balance_frames(self, assets: list[str], symbol: str | None = None) -> list[tuple[str, str]]:
        return [self._push_frame("wallet", [self._account(assets)])]

    # ------------------------------------------------------------------ WebSocket dialect

    def ws_message(self, text: str, session: WsSession) -> list[str]:
        try:
            req = json.loads(text)
            op, args = str(req["op"]), list(req.get("args") or [])
        except (ValueError, KeyError, TypeError):
            return [json.dumps({"success": False, "ret_msg": f"error:invalid op: {text[:80]}", "op": ""})]
        conn = f"emu{id(session) % 10**6}"
        if op == "ping":
            return [json.dumps({"success": True, "ret_msg": "pong", "conn_id": conn, "op": "ping"})]
        if op == "auth":
            ok = (
                len(args) == 3
                and args[0] == self.key
                and int(args[1]) > time.time() * 1000
                and hmac.compare_digest(str(args[2]), hmac.new(self.secret, f"GET/realtime{args[1]}".encode(), hashlib.sha256).hexdigest())
            )
            session.authed = ok
            msg = "" if ok else "error:signature verification failed"
            return [json.dumps({"success": ok, "ret_msg": msg, "op": "auth", "conn_id": conn})]
        if op == "subscribe":
            if not session.authed:
                return [json.dumps({"success": False, "ret_msg": "Request not authorized", "op": "subscribe", "conn_id": conn})]
            session.topics.update(str(a) for a in args)
            return [json.dumps({"success": True, "ret_msg": "", "op": "subscribe", "conn_id": conn})]
        return [json.dumps({"success": False, "ret_msg": f"error:invalid op {op}", "op": op, "conn_id": conn})]


class MatchingProtocol(BybitProtocol):
    """The public Bybit stream emulator's dialect, also feeding every sent trade to an account emulator."""

    def __init__(self, frames: Any, *, account: AccountEmulator, instrument_ids: dict[str, str]) -> None:
        super().__init__(frames)
        self.account = account
        self.instrument_ids = instrument_ids  # wire symbol -> instrument id

    def on_sent(self, raw: str) -> None:
        super().on_sent(raw)
        if '"topic":"publicTrade.' not in raw:
            return
        for t in json.loads(raw).get("data") or []:
            iid = self.instrument_ids.get(str(t.get("s")))
            if iid is not None:
                ts = int(t["T"]) * 1_000_000
                self.account.on_trade(Trade(iid, ts, ts, float(t["p"]), float(t["v"]), 1 if t["S"] == "Buy" else -1, str(t["i"])))
