"""A local OKX v5 demo-trading account for tests and demos: signed REST and the private WebSocket on 127.0.0.1.

:class:`OkxPrivateEmulator` speaks enough of OKX v5 for
:class:`~tradebus.adapters.okx.trading.OkxTrading` (ccxt, its URL pointed here) and the
private stream of :mod:`tradebus.adapters.okx.user_stream` to run unchanged:

* ``POST /api/v5/trade/order``, ``/trade/cancel-order``, ``/trade/amend-order``;
  ``GET /api/v5/trade/order``, ``/trade/orders-pending``, ``/trade/fills`` and
  ``/trade/fills-history`` (``instType`` required; both keep every fill, where OKX keeps
  3 days and 3 months), paged as OKX pages them
  (newest first; ``after`` / ``before`` a ``billId``, ``begin`` / ``end`` ms, ``limit``
  1-100, default 100), ``/account/balance``. Every request must carry ``OK-ACCESS-KEY``, the passphrase, an
  ISO ``OK-ACCESS-TIMESTAMP`` within 30 s and ``OK-ACCESS-SIGN`` (base64 HMAC-SHA256 of
  timestamp + method + path with query + body), and ``x-simulated-trading: 1`` (demo keys
  work only in demo trading: ``50101`` otherwise). Errors are OKX's: ``50111`` bad key,
  ``50105`` bad passphrase, ``50113`` bad signature, ``50102`` timestamp, ``51016``
  duplicate ``clOrdId``, ``51000`` a parameter, ``51400`` cancel of an order not working,
  ``51503`` amend of one, ``51603`` unknown order on a query.
* ``/ws/v5/private``: ``login`` (signature of timestamp + ``GET/users/self/verify``), then
  ``subscribe`` to ``orders`` and ``account``; ``"ping"`` -> ``"pong"``. Every order change
  is an ``orders`` push (a fill carries ``tradeId``, ``fillSz``, ``fillPx``, ``fillFee``),
  every balance change an ``account`` push.

Matching, balances and faults are the :class:`~tradebus.adapters.common.account_emulator.AccountEmulator`'s.
Departures from OKX: a MARKET order is acknowledged ``live`` and fills at the next public
trade; a market order must give its size in the base asset (``tgtCcy=base_ccy``, as
:mod:`~tradebus.adapters.okx.trading` sends it); stop (algo) orders are not emulated.

:class:`OkxSwapEmulator` is the same account trading swaps (linear USDT perpetuals, net
mode): ``tdMode=cross``, sizes in contracts, ``reduceOnly`` (``51169`` / ``51170``),
``GET /api/v5/account/positions`` and the ``positions`` channel.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import time
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from tradebus.adapters.common.account_emulator import AccountEmulator, EmulatedFill, EmulatedOrder, WsSession
from tradebus.adapters.okx.emulator import OkxProtocol
from tradebus.engine.instrument import Instrument
from tradebus.engine.messages import OrderSide, OrderStatus, OrderType, TimeInForce, Trade
from tradebus.execution.orders import Order

__all__ = ["MatchingProtocol", "OkxPrivateEmulator", "OkxSwapEmulator"]

_STATE = {
    OrderStatus.ACCEPTED: "live",
    OrderStatus.PARTIALLY_FILLED: "partially_filled",
    OrderStatus.FILLED: "filled",
    OrderStatus.CANCELED: "canceled",
    OrderStatus.EXPIRED: "canceled",
    OrderStatus.REJECTED: "canceled",
}
_ORD_TYPES = {
    "market": (OrderType.MARKET, TimeInForce.GTC, False),
    "limit": (OrderType.LIMIT, TimeInForce.GTC, False),
    "post_only": (OrderType.LIMIT, TimeInForce.GTC, True),
    "ioc": (OrderType.LIMIT, TimeInForce.IOC, False),
    "fok": (OrderType.LIMIT, TimeInForce.FOK, False),
}
_UID = "44705892343619584"
#: Rows of a fills page at most (and by default).
FILLS_PAGE = 100


def _sign(secret: bytes, payload: str) -> str:
    return base64.b64encode(hmac.new(secret, payload.encode(), hashlib.sha256).digest()).decode()


class OkxPrivateEmulator(AccountEmulator):
    """The emulated OKX demo account (see the module docstring); parameters as :class:`AccountEmulator`."""

    rate_limit_code = 50011
    ws_path = "/ws/v5/private"
    #: The account's ``instType`` and the ``tdMode`` its orders must give.
    inst_type = "SPOT"
    td_mode = "cash"

    # ------------------------------------------------------------------ REST dialect

    def routes(self) -> dict[tuple[str, str], Any]:
        return {
            ("POST", "/api/v5/trade/order"): self._place,
            ("POST", "/api/v5/trade/cancel-order"): self._cancel,
            ("POST", "/api/v5/trade/amend-order"): self._amend,
            ("GET", "/api/v5/trade/order"): self._query,
            ("GET", "/api/v5/trade/orders-pending"): self._pending,
            ("GET", "/api/v5/trade/fills"): self._fills,
            ("GET", "/api/v5/trade/fills-history"): self._fills_history,
            ("GET", "/api/v5/account/balance"): self._balance,
        }

    def error(self, status: int, code: int | str, msg: str, headers: dict[str, str] | None = None) -> web.Response:
        return web.json_response({"code": str(code), "msg": msg, "data": []}, status=status, headers=headers)

    def _order_error(self, code: str, msg: str, p: dict[str, Any]) -> web.Response:
        row = {"clOrdId": p.get("clOrdId", ""), "ordId": p.get("ordId", ""), "tag": "", "sCode": code, "sMsg": msg}
        return web.json_response({"code": "1", "msg": "All operations failed", "data": [row]})

    def _ok(self, data: list[dict[str, Any]]) -> web.Response:
        return web.json_response({"code": "0", "msg": "", "data": data})

    def authenticate(self, request: web.Request, body: str) -> web.Response | None:
        h = request.headers
        if h.get("OK-ACCESS-KEY") != self.key:
            return self.error(401, 50111, "Invalid OK-ACCESS-KEY")
        if h.get("OK-ACCESS-PASSPHRASE") != self.passphrase:
            return self.error(401, 50105, "Invalid OK-ACCESS-PASSPHRASE")
        ts = h.get("OK-ACCESS-TIMESTAMP", "")
        try:
            sent = datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
        except ValueError:
            return self.error(400, 50102, "Timestamp request expired")
        if abs(datetime.now(UTC).timestamp() - sent) > 30:
            return self.error(400, 50102, "Timestamp request expired")
        expected = _sign(self.secret, ts + request.method + request.path_qs + body)
        if not hmac.compare_digest(h.get("OK-ACCESS-SIGN", ""), expected):
            return self.error(401, 50113, "Invalid Sign")
        if h.get("x-simulated-trading") != "1":
            return self.error(401, 50101, "APIKey does not match current environment.")
        return None

    def params(self, request: web.Request, body: str) -> dict[str, Any]:
        if request.method == "GET":
            return dict(request.query)
        loaded = json.loads(body) if body else {}
        return loaded if isinstance(loaded, dict) else {}

    def client_id(self, params: dict[str, Any]) -> str:
        return str(params.get("clOrdId", ""))

    def _find(self, p: dict[str, Any]) -> EmulatedOrder | None:
        return self.find(str(p.get("clOrdId") or ""), str(p.get("ordId") or ""))

    def _place(self, p: dict[str, Any]) -> web.Response:
        inst = self.instruments.get(str(p.get("instId", "")))
        if inst is None:
            return self._order_error("51001", "Instrument ID does not exist", p)
        coid = str(p.get("clOrdId", ""))
        if not coid.isalnum() or len(coid) > 32:
            return self._order_error("51000", "Parameter clOrdId error", p)
        if coid in self.orders:
            return self._order_error("51016", "Duplicated clOrdId", p)
        kind = _ORD_TYPES.get(str(p.get("ordType", "")))
        if kind is None or p.get("tdMode") != self.td_mode:
            return self._order_error("51000", f"Parameter ordType/tdMode error: {p.get('ordType')}/{p.get('tdMode')}", p)
        typ, tif, post_only = kind
        refused = self.check_order(p, typ, inst)
        if refused is not None:
            return self._order_error(*refused, p)
        side = OrderSide.BUY if p.get("side") == "buy" else OrderSide.SELL
        price = float(p["px"]) if typ is OrderType.LIMIT else math.nan
        reduce_only = self.linear_positions and str(p.get("reduceOnly", False)).lower() == "true"  # spot cash ignores it
        order = Order(coid, "", inst.instrument_id, side, typ, float(p["sz"]), price, tif=tif, post_only=post_only, reduce_only=reduce_only)
        rec = self.submit(order, str(p["instId"]))
        if rec.status is OrderStatus.REJECTED:
            return self._order_error(*self.refusal(rec), p)
        return self._ok([{"clOrdId": coid, "ordId": str(rec.order_id), "tag": "", "ts": str(rec.time_ms), "sCode": "0", "sMsg": "Order placed"}])

    def check_order(self, p: dict[str, Any], typ: OrderType, inst: Instrument) -> tuple[str, str] | None:
        """``(sCode, sMsg)`` of a new-order body this account refuses before matching, else ``None``."""
        if typ is OrderType.MARKET and p.get("tgtCcy") != "base_ccy":
            return "51000", "Parameter tgtCcy error (emulated: base_ccy only)"
        return None

    def refusal(self, rec: EmulatedOrder) -> tuple[str, str]:
        """``(sCode, sMsg)`` of an order the matching venue refused on arrival."""
        return "51000", f"Order failed: {rec.reason}"

    def _cancel(self, p: dict[str, Any]) -> web.Response:
        rec = self._find(p)
        if rec is None or not self.cancel(rec):
            return self._order_error("51400", "Order cancellation failed as the order has been filled, canceled or does not exist", p)
        return self._ok([{"clOrdId": rec.order.client_order_id, "ordId": str(rec.order_id), "sCode": "0", "sMsg": ""}])

    def _amend(self, p: dict[str, Any]) -> web.Response:
        rec = self._find(p)
        size = float(p["newSz"]) if p.get("newSz") else None
        price = float(p["newPx"]) if p.get("newPx") else None
        if rec is None or not self.amend(rec, size, price):
            return self._order_error("51503", "Order modification failed as the order has been filled, canceled or does not exist", p)
        return self._ok([{"clOrdId": rec.order.client_order_id, "ordId": str(rec.order_id), "reqId": "", "sCode": "0", "sMsg": ""}])

    def _query(self, p: dict[str, Any]) -> web.Response:
        rec = self._find(p)
        if rec is None or rec.status is OrderStatus.REJECTED:
            return web.json_response({"code": "51603", "msg": "Order does not exist", "data": []})
        return self._ok([self._row(rec, None)])

    def _pending(self, p: dict[str, Any]) -> web.Response:
        if p.get("instType") not in (None, self.inst_type):  # none of that type on this account
            return self._ok([])
        return self._ok([self._row(r, None) for r in self.open_orders(p.get("instId"))])

    def _fills_history(self, p: dict[str, Any]) -> web.Response:
        if not p.get("instType"):
            return self.error(200, 51000, "Parameter instType error")
        return self._fills(p)

    def _fills(self, p: dict[str, Any]) -> web.Response:
        """One page of the account's fills, newest first, as OKX pages them (every fill is kept: no 3-day / 3-month retention).

        ``after`` / ``before`` (a ``billId``): rows older / newer than it; ``begin`` / ``end``
        (ms): rows with ``ts`` from / up to them; ``limit`` 1-100 (default 100) rows, the
        newest of the range, or with ``before`` the ones just newer than it.
        """
        if p.get("instType") not in (None, self.inst_type):
            return self._ok([])
        try:
            limit = int(p.get("limit") or FILLS_PAGE)
            after, before = (int(p[k]) if p.get(k) else None for k in ("after", "before"))
            begin, end = (int(p[k]) if p.get(k) else None for k in ("begin", "end"))
        except ValueError:
            return self.error(200, 51000, "Parameter limit/after/before/begin/end error")
        if not 1 <= limit <= FILLS_PAGE:
            return self.error(200, 51000, "Parameter limit error")
        rows = [
            f for f in self.fills
            if p.get("instId") in (None, f.rec.symbol) and p.get("ordId") in (None, str(f.rec.order_id))
            and (begin or 0) <= f.fill.ts_event // 1_000_000 <= (end if end is not None else math.inf)
            and (after is None or f.trade_id < after) and (before is None or f.trade_id > before)
        ]
        rows.sort(key=lambda f: f.trade_id)
        page = rows[:limit] if before is not None else rows[-limit:]
        return self._ok([self._fill_row(f) for f in reversed(page)])  # newest first, as OKX

    def _balance(self, p: dict[str, Any]) -> web.Response:
        return self._ok([self._account(sorted(self.balances))])

    # ------------------------------------------------------------------ wire forms

    def _fill_row(self, f: EmulatedFill) -> dict[str, Any]:
        fill = f.fill
        return {
            "instType": self.inst_type,
            "instId": f.rec.symbol,
            "tradeId": str(f.trade_id),
            "ordId": str(f.rec.order_id),
            "clOrdId": f.rec.order.client_order_id,
            "billId": str(f.trade_id),
            "tag": "",
            "fillPx": repr(fill.last_px),
            "fillSz": repr(fill.last_qty),
            "side": "buy" if fill.side is OrderSide.BUY else "sell",
            "execType": "M" if fill.liquidity == "MAKER" else "T",
            "feeCcy": self.instruments[f.rec.symbol].quote,
            "fee": repr(-fill.fee),
            "ts": str(fill.ts_event // 1_000_000),
        }

    def _row(self, rec: EmulatedOrder, fill: EmulatedFill | None) -> dict[str, Any]:
        order = rec.order
        mine = [f.fill for f in self.fills if f.rec is rec]
        filled = sum(f.last_qty for f in mine)
        quote = self.instruments[rec.symbol].quote
        kind = "market" if order.order_type is OrderType.MARKET else "post_only" if order.post_only else {
            TimeInForce.IOC: "ioc", TimeInForce.FOK: "fok"
        }.get(order.tif, "limit")
        row = {
            "instType": self.inst_type,
            "instId": rec.symbol,
            "ccy": "",
            "ordId": str(rec.order_id),
            "clOrdId": order.client_order_id,
            "tag": "",
            "px": "" if math.isnan(order.price) else repr(order.price),
            "sz": repr(order.quantity),
            "ordType": kind,
            "side": "buy" if order.side is OrderSide.BUY else "sell",
            "tdMode": self.td_mode,
            "tgtCcy": "base_ccy" if kind == "market" and self.inst_type == "SPOT" else "",
            "accFillSz": repr(filled),
            "avgPx": repr(sum(f.last_qty * f.last_px for f in mine) / filled) if filled else "",
            "state": _STATE[rec.status],
            "fee": repr(-sum(f.fee for f in mine)),
            "feeCcy": quote,
            "fillPx": "",
            "fillSz": "0",
            "tradeId": "",
            "fillTime": "",
            "fillFee": "0",
            "fillFeeCcy": "",
            "execType": "",
            "cancelSource": "",
            "cancelSourceReason": "",
            "cTime": str(rec.time_ms),
            "uTime": str(max(rec.update_ms, rec.time_ms)),
        } | self.row_extras(rec)
        if fill is not None:
            f = fill.fill
            row |= {
                "fillPx": repr(f.last_px),
                "fillSz": repr(f.last_qty),
                "tradeId": str(fill.trade_id),
                "fillTime": str(f.ts_event // 1_000_000),
                "fillFee": repr(-f.fee),
                "fillFeeCcy": quote,
                "execType": "M" if f.liquidity == "MAKER" else "T",
            }
        return row

    def row_extras(self, rec: EmulatedOrder) -> dict[str, Any]:
        """Fields of an order row that only this account's instrument type has."""
        return {}

    def _account(self, assets: list[str]) -> dict[str, Any]:
        now = str(self.now_ms())
        details = [
            {"ccy": a, "availBal": repr(self.balances.get(a, 0.0)), "frozenBal": "0", "cashBal": repr(self.balances.get(a, 0.0)),
             "eq": repr(self.balances.get(a, 0.0)), "uTime": now}
            for a in assets
        ]
        return {"uTime": now, "totalEq": "", "details": details}

    def order_frames(self, rec: EmulatedOrder, fill: EmulatedFill | None) -> list[tuple[str, str]]:
        arg = {"channel": "orders", "instType": self.inst_type, "uid": _UID}
        return [("orders", json.dumps({"arg": arg, "data": [self._row(rec, fill)]}))]

    def balance_frames(self, assets: list[str], symbol: str | None = None) -> list[tuple[str, str]]:
        return [("account", json.dumps({"arg": {"channel": "account", "uid": _UID}, "data": [self._account(assets)]}))]

    # ------------------------------------------------------------------ WebSocket dialect

    def ws_message(self, text: str, session: WsSession) -> list[str]:
        if text == "ping":
            return ["pong"]
        try:
            req = json.loads(text)
            op, args = req["op"], list(req.get("args") or [])
        except (ValueError, KeyError, TypeError):
            return [json.dumps({"event": "error", "code": "60012", "msg": f"Invalid request: {text[:80]}"})]
        if op == "login":
            arg = args[0] if args else {}
            ts = str(arg.get("timestamp", ""))
            ok = (
                arg.get("apiKey") == self.key
                and arg.get("passphrase") == self.passphrase
                and ts.isdigit()
                and abs(int(ts) - time.time()) <= 30
                and hmac.compare_digest(str(arg.get("sign", "")), _sign(self.secret, f"{ts}GET/users/self/verify"))
            )
            if not ok:
                return [json.dumps({"event": "error", "code": "60009", "msg": "Login failed."})]
            session.authed = True
            return [json.dumps({"event": "login", "code": "0", "msg": "", "connId": f"emu{id(session) % 10**6}"})]
        if op == "subscribe":
            if not session.authed:
                return [json.dumps({"event": "error", "code": "60011", "msg": "Please log in"})]
            out = []
            for arg in args:
                session.topics.add(str(arg.get("channel")))
                out.append(json.dumps({"event": "subscribe", "arg": arg, "connId": f"emu{id(session) % 10**6}"}))
            return out
        return [json.dumps({"event": "error", "code": "60012", "msg": f"Invalid request: op {op}"})]


class OkxSwapEmulator(OkxPrivateEmulator):
    """The emulated OKX demo account trading swaps (linear USDT perpetuals) in net mode, cross margin.

    As :class:`OkxPrivateEmulator` (signatures, errors, faults) with the swap dialect of
    :class:`~tradebus.adapters.okx.trading.OkxSwapTrading`: ``tdMode=cross`` (``isolated``
    not emulated: ``51000``), ``posSide`` ``net`` or absent (``51000`` otherwise), ``sz`` in
    contracts and a whole number of ``lotSz`` (``51121`` otherwise), no ``tgtCcy`` (``51000``);
    ``reduceOnly=true`` refused on arrival when flat (``51169``) or in the position's own
    direction (``51170``), capped at the position at fill time. Positions are the shared
    ledger's one-way positions (:attr:`AccountEmulator.linear_positions`: contracts, entry
    price, realized PnL ``contracts * ctVal * (exit - entry)`` and fees on the USDT wallet);
    ``GET /api/v5/account/config`` tells :attr:`pos_mode` and the uid,
    ``GET /api/v5/account/positions`` lists the open ones, and a ``positions`` push (with
    ``pos`` ``0`` when closed) follows every fill, after the ``account`` push. Departures:
    no margin check, no liquidation, no funding, no mark price (``upl`` ``0``).
    """

    inst_type = "SWAP"
    td_mode = "cross"
    linear_positions = True
    #: The account's position mode (``GET /api/v5/account/config``); ``long_short_mode`` to test a refusal.
    pos_mode = "net_mode"

    def routes(self) -> dict[tuple[str, str], Any]:
        return super().routes() | {("GET", "/api/v5/account/positions"): self._positions, ("GET", "/api/v5/account/config"): self._config}

    def _config(self, p: dict[str, Any]) -> web.Response:
        return self._ok([{"uid": _UID, "mainUid": _UID, "acctLv": "2", "posMode": self.pos_mode, "autoLoan": False, "level": "Lv1"}])

    def check_order(self, p: dict[str, Any], typ: OrderType, inst: Instrument) -> tuple[str, str] | None:
        if p.get("tgtCcy"):
            return "51000", "Parameter tgtCcy error (SPOT only)"
        if p.get("posSide", "net") != "net":
            return "51000", "Parameter posSide error (the account is in net mode)"
        lots = float(p["sz"]) / inst.lot_size
        if abs(lots - round(lots)) > 1e-9 or round(lots) < 1:
            return "51121", f"Order quantity should be a multiple of the lot size {inst.lot_size}"
        return None

    def refusal(self, rec: EmulatedOrder) -> tuple[str, str]:
        if not rec.reason.startswith("reduce_only"):
            return super().refusal(rec)
        if abs(self.position(rec.symbol)) < 1e-12:
            return "51169", "Order failed because you don't have any positions in this direction for this contract to reduce or close."
        return "51170", "Failed to place order. A reduce-only order can't be the same direction as your existing position."

    def row_extras(self, rec: EmulatedOrder) -> dict[str, Any]:
        return {"posSide": "net", "reduceOnly": "true" if rec.order.reduce_only else "false", "lever": "1"}

    def _position_row(self, symbol: str) -> dict[str, Any]:
        pos, entry, now = self.position(symbol), self.entry.get(symbol, 0.0), str(self.now_ms())
        return {
            "instType": "SWAP", "instId": symbol, "mgnMode": "cross", "posSide": "net", "pos": repr(pos),
            "avgPx": repr(entry) if pos else "", "ccy": self.instruments[symbol].quote, "posCcy": "", "upl": "0",
            "lever": "1", "cTime": now, "uTime": now,
        }

    def _positions(self, p: dict[str, Any]) -> web.Response:
        if p.get("instType") not in (None, self.inst_type):
            return self._ok([])
        open_ = [s for s in sorted(self.instruments) if p.get("instId") in (None, s) and abs(self.position(s)) > 1e-12]
        return self._ok([self._position_row(s) for s in open_])

    def balance_frames(self, assets: list[str], symbol: str | None = None) -> list[tuple[str, str]]:
        frames = super().balance_frames(assets)
        if symbol is not None:
            arg = {"channel": "positions", "instType": "SWAP", "uid": _UID}
            frames.append(("positions", json.dumps({"arg": arg, "data": [self._position_row(symbol)]})))
        return frames


class MatchingProtocol(OkxProtocol):
    """The public OKX stream emulator's dialect, also feeding every sent trade to an account emulator."""

    def __init__(self, frames: Any, *, account: AccountEmulator, instrument_ids: dict[str, str]) -> None:
        super().__init__(frames)
        self.account = account
        self.instrument_ids = instrument_ids  # instId -> instrument id

    def on_sent(self, raw: str) -> None:
        super().on_sent(raw)
        if '"channel":"trades"' not in raw:
            return
        msg = json.loads(raw)
        iid = self.instrument_ids.get(str((msg.get("arg") or {}).get("instId")))
        if iid is None:
            return
        for t in msg.get("data") or []:
            ts = int(t["ts"]) * 1_000_000
            self.account.on_trade(Trade(iid, ts, ts, float(t["px"]), float(t["sz"]), 1 if t["side"] == "buy" else -1, str(t["tradeId"])))
