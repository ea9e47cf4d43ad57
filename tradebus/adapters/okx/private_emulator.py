"""A local OKX v5 demo-trading account for tests and demos: signed REST and the private WebSocket on 127.0.0.1.

:class:`OkxPrivateEmulator` speaks enough of OKX v5 for
:class:`~tradebus.adapters.okx.trading.OkxTrading` (ccxt, its URL pointed here) and the
private stream of :mod:`tradebus.adapters.okx.user_stream` to run unchanged:

* ``POST /api/v5/trade/order``, ``/trade/cancel-order``, ``/trade/amend-order``;
  ``GET /api/v5/trade/order``, ``/trade/orders-pending`` (newest first, ``after`` / ``before``
  an ``ordId``, ``limit`` 1-100, default 100; ``/trade/orders-algo-pending`` alike by
  ``algoId``), ``/trade/fills`` and
  ``/trade/fills-history`` (``instType`` required; both keep every fill, where OKX keeps
  3 days and 3 months), paged as OKX pages them
  (newest first; ``after`` / ``before`` a ``billId``, ``begin`` / ``end`` ms, ``limit``
  1-100, default 100), ``/account/balance``, ``/account/instruments`` (``instType`` required: the account's
  instruments of its type). Every request must carry ``OK-ACCESS-KEY``, the passphrase, an
  ISO ``OK-ACCESS-TIMESTAMP`` within 30 s and ``OK-ACCESS-SIGN`` (base64 HMAC-SHA256 of
  timestamp + method + path with query + body), and ``x-simulated-trading: 1`` (demo keys
  work only in demo trading: ``50101`` otherwise). A ``/trade/order`` or ``/trade/amend-order`` whose ``expTime``
  header (its deadline, epoch ms) is past when it is processed (at arrival, or at a ``windowed`` hold's release) is
  refused ``50036``, nothing done (OKX: "the request will not be processed if the current system time of the server
  is after the expTime"). Errors are OKX's: ``50111`` bad key,
  ``50105`` bad passphrase, ``50113`` bad signature, ``50102`` timestamp (a test's
  :attr:`OkxPrivateEmulator.key_refusal` then answers every request, as OKX a frozen key's ``50100``), ``51016``
  duplicate ``clOrdId``, ``51000`` a parameter (``"Parameter clOrdId error"``, ``code`` of the
  whole answer, before the account sees it: a ``clOrdId`` or ``algoClOrdId`` not 1-32 letters and
  digits, :data:`CLIENT_ID`, or a size or price not a plain decimal, :data:`DECIMAL`, such as
  ``1e-05``), ``51400`` cancel of an order not working,
  ``51503`` amend of one, ``51603`` unknown order on a query.
* ``/ws/v5/private``: ``login`` (signature of timestamp + ``GET/users/self/verify``), then
  ``subscribe`` to ``orders``, ``orders-algo`` and ``account``; ``"ping"`` -> ``"pong"``. Every order change
  is an ``orders`` push (a fill carries ``tradeId``, ``fillSz``, ``fillPx``, ``fillFee``),
  every balance change an ``account`` push.

Matching, balances and faults are the :class:`~tradebus.adapters.common.account_emulator.AccountEmulator`'s.
Fees are in the quote asset unless a test sets ``fee_in_received``: a spot buy's fee is then taken
out of the coin it receives, as OKX charges it, and every wire form names that coin (``fillFeeCcy``,
``feeCcy`` of the order and of ``/trade/fills``); a maker buy's rebate (a negative ``maker_fee``) is
paid in the quote coin, as OKX's ``rebateCcy`` (``fillFeeCcy`` ``USDT``, ``fillFee`` positive; a
``/trade/fills`` row's ``fee`` positive in ``feeCcy`` ``USDT``). As OKX documents the order row, a spot
buy's ``fee`` is only what was charged (negative, in ``feeCcy``) and its rebate is ``rebate``
(positive) in ``rebateCcy``; a maker sell's ``fee`` is its fee and rebate, in the quote coin
(``rebate`` left empty). Departures from OKX: a MARKET order is acknowledged ``live`` and fills at the next public
trade; a market order must give its size in the base asset (``tgtCcy=base_ccy``, as
:mod:`~tradebus.adapters.okx.trading` sends it).

Stops are algo orders: ``POST /api/v5/trade/order-algo`` with ``ordType=conditional`` and a
stop loss (``slTriggerPx``, ``slOrdPx`` ``-1`` for market, else the limit price), identified by
``algoClOrdId`` and an ``algoId``. An algo order waits outside the matching venue and is watched
against the public trades (the last price): as OKX's stop loss, a sell triggers at a trade at
or below ``slTriggerPx``, a buy at one at or above it, and a trigger the last trade has already
reached is refused (``51280`` "SL trigger price cannot be higher than the last price" for a
sell, ``51278`` "... lower ..." for a buy). The trade that reaches it pushes the ``orders-algo``
row ``effective`` (with the new ``ordId``); the order it places then enters the matching venue
under that new ``ordId``, with ``clOrdId`` empty and the stop's ``algoClOrdId`` and ``algoId``
on every ``orders`` push and order row, and that trade already matches it; an order the matching
venue refuses makes the algo ``order_failed``. ``/trade/amend-algos`` (by ``algoId`` or
``algoClOrdId``) changes a waiting stop's ``newSlTriggerPx`` (checked as at placement),
``newSz`` and ``newSlOrdPx`` and pushes it ``live`` again; ``/trade/cancel-algos`` (a list of
``instId`` + ``algoId`` or ``algoClOrdId``) cancels a waiting one (``canceled`` pushed);
either on any other is ``51000``-refused per row. ``GET /api/v5/trade/order-algo`` (``51603``
unknown) and ``/trade/orders-algo-pending`` (``ordType`` required) list them; an algo order is
never in ``/trade/orders-pending`` nor found by ``/trade/order`` or ``/trade/cancel-order``.
Departures: only ``conditional`` stop losses (no take profit, ``trigger``, ``oco``, trailing),
triggered by the last price only (``slTriggerPxType`` ``last``, and ``newSlTriggerPxType`` on an amend:
another is ``51000``-refused, never watched against the trades as if it were the last price); a stop placed before any
public trade is refused (``51000``: no last price to compare its trigger with).

:class:`OkxSwapEmulator` is the same account trading swaps (linear USDT perpetuals, net
mode): ``tdMode`` the instrument's margin mode, sizes in contracts, ``reduceOnly`` (``51169`` / ``51170``),
``GET /api/v5/account/positions``, ``/account/leverage-info`` and the ``positions`` channel.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import re
from datetime import UTC, datetime
from typing import Any

import msgspec
from aiohttp import web

from tradebus.adapters.common.account_emulator import AccountEmulator, EmulatedFill, EmulatedOrder, WsSession
from tradebus.adapters.okx.emulator import OkxProtocol
from tradebus.adapters.okx.parse import BOOK_CHANNELS, book_key, frame_stream
from tradebus.engine.instrument import Instrument
from tradebus.engine.messages import OrderSide, OrderStatus, OrderType, TimeInForce, Trade
from tradebus.execution.orders import Order

__all__ = ["CLIENT_ID", "DECIMAL", "MatchingProtocol", "OkxPrivateEmulator", "OkxSwapEmulator"]

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
#: Rows of a fills page at most (and by default); of an order list's (``orders-pending``, ``orders-algo-pending``).
FILLS_PAGE = 100
ORDERS_PAGE = 100

#: OKX's form of a client order id: "1-32 case-sensitive alphanumeric characters" (the v5 ``clOrdId``,
#: ``algoClOrdId``; https://www.okx.com/docs-v5/en/#order-book-trading-trade-post-place-order), and
#: of a size or price: a plain decimal (``"1e-05"``, ``"-1.5"``, ``" 1"`` are refused). Either is
#: ``51000`` "Parameter <name> error", in the whole answer's ``code``.
CLIENT_ID = re.compile(r"[A-Za-z0-9]{1,32}")
DECIMAL = re.compile(r"[0-9]+(\.[0-9]+)?")
_FORMS = {
    **dict.fromkeys(("clOrdId", "algoClOrdId"), CLIENT_ID),
    **dict.fromkeys(("sz", "px", "newSz", "newPx", "slTriggerPx", "slOrdPx", "newSlTriggerPx", "newSlOrdPx"), DECIMAL),
}
#: The ``slOrdPx`` of a market stop.
_MARKET_PX = "-1"


def _sign(secret: bytes, payload: str) -> str:
    return base64.b64encode(hmac.new(secret, payload.encode(), hashlib.sha256).digest()).decode()


#: OKX's messages of its WebSocket login errors (its API docs, WebSocket error codes; the ``500xx`` its REST table's).
_LOGIN_ERRORS = {
    "50009": "Account is frozen due to stop-out.",
    "50013": "System is busy, please try again later.",
    "50017": "Position frozen and related operations restricted due to auto-deleveraging (ADL). Please try again later.",
    "50019": "Account frozen and related operations restricted due to auto-deleveraging (ADL). Please try again later.",
    "50020": "Position frozen and related operations restricted due to forced liquidation. Please try again later.",
    "50022": "Account frozen and related operations restricted due to forced liquidation. Please try again later.",
    "50023": "Funding fees frozen and related operations are restricted. Please try again later.",
    "50026": "System error. Try again later.",
    "50100": "API frozen, please contact customer service.",
    "60009": "Login failure",
    "60014": "Requests too frequent",
    "60031": "API key doesn't exist.",
    "60032": "API key doesn't exist",
    "63999": "Login failed due to internal error. Please try again later.",
}


#: The requests OKX takes an ``expTime`` header on (of those emulated): it does not process them past it.
_DEADLINED = frozenset({"/api/v5/trade/order", "/api/v5/trade/amend-order"})


class OkxPrivateEmulator(AccountEmulator):
    """The emulated OKX demo account (see the module docstring); parameters as :class:`AccountEmulator`."""

    rate_limit_code = 50011
    busy_code = "50013"
    ws_path = "/ws/v5/private"
    time_path = "/api/v5/public/time"
    rebate_in_quote = True  # a spot buy's order row: feeCcy the base coin, rebateCcy the quote one
    #: The account's ``instType`` and the ``tdMode`` its orders must give.
    inst_type = "SPOT"
    td_mode = "cash"
    #: Seconds after its ``OK-ACCESS-TIMESTAMP`` a request is refused (``50102``; OKX: "the request will expire 30
    #: seconds after the timestamp"), at arrival and, for a held ``windowed`` fault, at its release.
    timestamp_expiry_s = 30.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Last public trade price of each symbol.
        self.last_price: dict[str, float] = {}
        #: ``algoClOrdId -> algoId`` of every stop (algo order), triggered or not.
        self.algo_ids: dict[str, int] = {}
        #: ``algoClOrdId -> state`` of every stop (``live``, ``effective``, ``canceled``, ``order_failed``).
        self.algo_states: dict[str, str] = {}
        #: ``algoClOrdId`` of the stops waiting for their trigger.
        self.untriggered: set[str] = set()
        self._symbols = {inst.instrument_id: symbol for symbol, inst in self.instruments.items()}
        #: OKX error codes the next WebSocket logins are answered with, one each, before the login is judged.
        self.login_errors: list[str] = []
        #: An answer of OKX's API class (``(HTTP status, code, message)``: a key OKX froze, ``(400, "50100", "API frozen,
        #: please contact customer service.")``) every signed REST request gets once its key, passphrase and signature are
        #: judged; ``None``: none.
        self.key_refusal: tuple[int, str, str] | None = None

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
            ("POST", "/api/v5/trade/order-algo"): self._place_algo,
            ("POST", "/api/v5/trade/cancel-algos"): self._cancel_algos,
            ("POST", "/api/v5/trade/amend-algos"): self._amend_algo,
            ("GET", "/api/v5/trade/order-algo"): self._query_algo,
            ("GET", "/api/v5/trade/orders-algo-pending"): self._pending_algos,
            ("GET", "/api/v5/account/instruments"): self._instruments,
        }

    def _instruments(self, p: dict[str, Any]) -> web.Response:
        """The account's instruments of ``instType`` (required): ``GET /api/v5/account/instruments``."""
        if p.get("instType") != self.inst_type:
            return self._ok([]) if p.get("instType") else self.error(200, 51000, "Parameter instType error")
        return self._ok([
            {"instType": self.inst_type, "instId": s, "baseCcy": inst.base, "quoteCcy": inst.quote,
             "lotSz": f"{inst.lot_size:g}", "tickSz": f"{inst.tick_size:g}", "state": "live"}
            for s, inst in sorted(self.instruments.items()) if p.get("instId") in (None, s)
        ])

    def time_answer(self, ms: int) -> web.Response:
        """``GET /api/v5/public/time``: ``{"code": "0", "data": [{"ts": ms}]}``."""
        return self._ok([{"ts": str(ms)}])

    def error(self, status: int, code: int | str, msg: str, headers: dict[str, str] | None = None) -> web.Response:
        return web.json_response({"code": str(code), "msg": msg, "data": []}, status=status, headers=headers)

    def busy_answer(self) -> web.Response:
        """OKX's ``50013`` (its error table: HTTP 200, "System is busy, please try again later.")."""
        return self.error(200, self.busy_code, _LOGIN_ERRORS[self.busy_code])

    def refused_with(self, code: str, params: dict[str, Any]) -> web.Response:
        """OKX's refusal of one order: HTTP 200, ``code`` ``1`` and the order's ``sCode``."""
        return self._order_error(code, f"refused ({code})", params)

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
            return self.error(401, 50102, "Timestamp request expired")
        if abs(self.venue_time() - sent) > self.timestamp_expiry_s:
            return self.error(401, 50102, "Timestamp request expired")
        expected = _sign(self.secret, ts + request.method + request.path_qs + body)
        if not hmac.compare_digest(h.get("OK-ACCESS-SIGN", ""), expected):
            return self.error(401, 50113, "Invalid Sign")
        if h.get("x-simulated-trading") != "1":
            return self.error(401, 50101, "APIKey does not match current environment.")
        if self.key_refusal is not None:
            return self.error(*self.key_refusal)
        deadline = h.get("expTime")
        if deadline and request.path in _DEADLINED and self.venue_time() * 1000 > int(deadline):
            return self.error(200, 50036, "The expTime can't be earlier than the current system time. Please adjust the expTime and try again.")
        return None

    def params(self, request: web.Request, body: str) -> dict[str, Any]:
        if request.method == "GET":
            return dict(request.query)
        loaded = json.loads(body) if body else {}
        if isinstance(loaded, list):  # a batch endpoint (``/trade/cancel-algos``)
            return {"batch": loaded}
        return loaded if isinstance(loaded, dict) else {}

    def malformed(self, params: dict[str, Any]) -> web.Response | None:
        for row in params.get("batch") or [params]:
            for name, value in row.items() if isinstance(row, dict) else ():
                form = _FORMS.get(name)
                if form is None or value in ("", None) or (name in ("slOrdPx", "newSlOrdPx") and value == _MARKET_PX):
                    continue  # an empty optional parameter is an absent one
                if form.fullmatch(str(value)) is None:
                    return self.error(200, 51000, f"Parameter {name} error")
        return None

    def client_id(self, params: dict[str, Any]) -> str:
        batch = params.get("batch") or [{}]
        first = batch[0] if isinstance(batch[0], dict) else {}
        return str(params.get("clOrdId") or params.get("algoClOrdId") or first.get("algoClOrdId") or first.get("algoId") or "")

    def _find(self, p: dict[str, Any]) -> EmulatedOrder | None:
        """The ordinary order a request names (an algo order is not one; the order a triggered one placed has no ``clOrdId``)."""
        coid = str(p.get("clOrdId") or "")
        rec = self.find(coid, str(p.get("ordId") or ""))
        if rec is None or rec.order.client_order_id not in self.algo_ids:
            return rec
        return None if coid or rec.order.client_order_id in self.untriggered or self.algo_states.get(rec.order.client_order_id) != "effective" else rec

    def _place(self, p: dict[str, Any]) -> web.Response:
        inst = self.instruments.get(str(p.get("instId", "")))
        if inst is None:
            return self._order_error("51001", "Instrument ID does not exist", p)
        coid = str(p.get("clOrdId", ""))
        if not coid:
            return self._order_error("51000", "Parameter clOrdId error (emulated: every order names one)", p)
        if coid in self.orders:
            return self._order_error("51016", "Duplicated clOrdId", p)
        kind = _ORD_TYPES.get(str(p.get("ordType", "")))
        if kind is None or p.get("tdMode") != self.td_mode_of(str(p["instId"])):
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

    def td_mode_of(self, symbol: str) -> str:
        """The ``tdMode`` the orders of ``symbol`` must give."""
        return self.td_mode

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

    def _paged(self, p: dict[str, Any], rows: dict[int, dict[str, Any]], what: str) -> web.Response:
        """One page of ``rows`` (``id -> row``), newest (highest id) first, as OKX pages its order lists.

        ``after`` / ``before`` (an ``ordId`` or ``algoId``, ``what``): rows older / newer than it;
        ``limit`` 1-100 (default 100) rows, the newest of the range, or with ``before`` the ones
        just newer than it.
        """
        try:
            limit = int(p.get("limit") or ORDERS_PAGE)
            after, before = (int(p[k]) if p.get(k) else None for k in ("after", "before"))
        except ValueError:
            return self.error(200, 51000, f"Parameter limit/after/before error (an {what})")
        if not 1 <= limit <= ORDERS_PAGE:
            return self.error(200, 51000, "Parameter limit error")
        ids = sorted(i for i in rows if (after is None or i < after) and (before is None or i > before))
        page = ids[:limit] if before is not None else ids[-limit:]
        return self._ok([rows[i] for i in reversed(page)])

    def _pending(self, p: dict[str, Any]) -> web.Response:
        if p.get("instType") not in (None, self.inst_type):  # none of that type on this account
            return self._ok([])
        working = [r for r in self.open_orders(p.get("instId")) if r.order.client_order_id not in self.untriggered]
        return self._paged(p, {r.order_id: self._row(r, None) for r in working}, "ordId")

    def _fills_history(self, p: dict[str, Any]) -> web.Response:
        if not p.get("instType"):
            return self.error(200, 51000, "Parameter instType error")
        return self._fills(p)

    def _fills(self, p: dict[str, Any]) -> web.Response:
        """One page of the account's fills, newest first, as OKX pages them (no 3-day / 3-month retention: every
        fill is kept but those older than :attr:`trade_history_ns` and those :attr:`listed_late` holds back).

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
            and not self.beyond_history(f) and not self.listed_late_read(f)
        ]
        rows.sort(key=lambda f: f.trade_id)
        page = rows[:limit] if before is not None else rows[-limit:]
        return self._ok([self._fill_row(f) for f in reversed(page)])  # newest first, as OKX

    def _balance(self, p: dict[str, Any]) -> web.Response:
        return self._ok([self._account(sorted(self.balances))])

    # ------------------------------------------------------------------ algo orders (stops)

    def _algo_error(self, code: str, msg: str, p: dict[str, Any]) -> web.Response:
        row = {"algoId": str(p.get("algoId", "")), "algoClOrdId": str(p.get("algoClOrdId", "")), "clOrdId": "", "tag": "", "sCode": code, "sMsg": msg}
        return web.json_response({"code": "1", "msg": "All operations failed", "data": [row]})

    def _find_algo(self, p: dict[str, Any]) -> EmulatedOrder | None:
        coid = str(p.get("algoClOrdId") or "")
        if not coid:
            algo_id = str(p.get("algoId") or "")
            coid = next((c for c, a in self.algo_ids.items() if str(a) == algo_id), "")
        return self.orders.get(coid) if coid in self.algo_ids else None

    def _trigger_refused(self, symbol: str, side: OrderSide, trigger: float) -> tuple[str, str] | None:
        """OKX's refusal of a stop-loss trigger the last price has already reached, else ``None``."""
        last = self.last_price.get(symbol)
        if last is None:
            return "51000", f"emulated: no public trade of {symbol} yet to place a stop against"
        if side is OrderSide.SELL and trigger >= last:
            return "51280", "SL trigger price cannot be higher than the last price"
        if side is OrderSide.BUY and trigger <= last:
            return "51278", "SL trigger price cannot be lower than the last price"
        return None

    def _place_algo(self, p: dict[str, Any]) -> web.Response:
        symbol = str(p.get("instId", ""))
        inst = self.instruments.get(symbol)
        if inst is None:
            return self._algo_error("51001", "Instrument ID does not exist", p)
        coid = str(p.get("algoClOrdId", ""))
        if not coid:
            return self._algo_error("51000", "Parameter algoClOrdId error (emulated: every stop names one)", p)
        if coid in self.orders:
            return self._algo_error("51065", "algoClOrdId already exists.", p)
        if p.get("ordType") != "conditional" or p.get("tdMode") != self.td_mode_of(str(p["instId"])):
            return self._algo_error("51000", f"Parameter ordType/tdMode error (emulated: conditional only): {p.get('ordType')}/{p.get('tdMode')}", p)
        if p.get("tpTriggerPx") or str(p.get("slTriggerPxType") or "last") != "last":
            return self._algo_error("51000", "emulated: a stop loss triggered by the last price only", p)
        try:
            trigger, ord_px, size = float(p["slTriggerPx"]), float(p["slOrdPx"]), float(p["sz"])
        except (KeyError, ValueError):
            return self._algo_error("51000", "Parameter slTriggerPx/slOrdPx/sz error", p)
        if not trigger > 0.0 or not (ord_px == -1.0 or ord_px > 0.0) or not size > 0.0:
            return self._algo_error("51000", "Parameter slTriggerPx/slOrdPx/sz error", p)
        market = ord_px == -1.0
        refused = self.check_order(p, OrderType.MARKET if market else OrderType.LIMIT, inst)
        side = OrderSide.BUY if p.get("side") == "buy" else OrderSide.SELL
        refused = refused or self._trigger_refused(symbol, side, trigger)
        if refused is not None:
            return self._algo_error(*refused, p)
        reduce_only = self.linear_positions and str(p.get("reduceOnly", False)).lower() == "true"
        typ = OrderType.STOP_MARKET if market else OrderType.STOP_LIMIT
        order = Order(coid, "", inst.instrument_id, side, typ, size, math.nan if market else ord_px, trigger, reduce_only=reduce_only)
        rec = self.record(order, symbol)
        self.algo_ids[coid] = rec.order_id
        self.algo_states[coid] = "live"
        self.untriggered.add(coid)
        self._push(self.algo_frames(rec))
        return self._ok([{"algoId": str(rec.order_id), "clOrdId": "", "algoClOrdId": coid, "tag": "", "sCode": "0", "sMsg": "Order placed"}])

    def _cancel_algos(self, p: dict[str, Any]) -> web.Response:
        rows, failed = [], 0
        for arg in p.get("batch") or [p]:
            rec = self._find_algo(arg) if isinstance(arg, dict) else None
            coid = rec.order.client_order_id if rec is not None else ""
            if rec is None or coid not in self.untriggered or arg.get("instId") != rec.symbol:
                failed += 1
                rows.append({"algoId": str(arg.get("algoId", "")), "sCode": "51000", "sMsg": "Order cancellation failed: no waiting algo order"})
                continue
            self.untriggered.discard(coid)
            self.algo_states[coid] = "canceled"
            rec.status, rec.update_ms = OrderStatus.CANCELED, self.now_ms()
            self._push(self.algo_frames(rec))
            rows.append({"algoId": str(self.algo_ids[coid]), "sCode": "0", "sMsg": ""})
        return web.json_response({"code": "1" if failed == len(rows) else "0", "msg": "All operations failed" if failed == len(rows) else "", "data": rows})

    def _amend_algo(self, p: dict[str, Any]) -> web.Response:
        rec = self._find_algo(p)
        if rec is None or rec.order.client_order_id not in self.untriggered or p.get("instId") != rec.symbol:
            return self._algo_error("51000", "Amend failed: no waiting algo order", p)
        if p.get("newTriggerPx") or p.get("newOrdPx"):
            return self._algo_error("51000", "Parameter newTriggerPx error: a conditional order takes newSlTriggerPx/newSlOrdPx", p)
        if p.get("newTpTriggerPx") or str(p.get("newSlTriggerPxType") or "last") != "last":
            return self._algo_error("51000", "emulated: a stop loss triggered by the last price only", p)
        order = rec.order
        try:
            trigger = float(p["newSlTriggerPx"]) if p.get("newSlTriggerPx") else None
            size = float(p["newSz"]) if p.get("newSz") else None
            ord_px = float(p["newSlOrdPx"]) if p.get("newSlOrdPx") else None
        except ValueError:
            return self._algo_error("51000", "Parameter newSlTriggerPx/newSz/newSlOrdPx error", p)
        if (trigger is not None and not trigger > 0.0) or (size is not None and not size > 0.0) or (ord_px is not None and not ord_px > 0.0):
            return self._algo_error("51000", "Parameter newSlTriggerPx/newSz/newSlOrdPx error", p)
        if ord_px is not None and order.order_type is not OrderType.STOP_LIMIT:
            return self._algo_error("51000", "emulated: newSlOrdPx of a market stop", p)
        if trigger is not None:
            refused = self._trigger_refused(rec.symbol, order.side, trigger)
            if refused is not None:
                return self._algo_error(*refused, p)
            order.trigger_price = trigger
        if size is not None:
            order.quantity = size
        if ord_px is not None:
            order.price = ord_px
        rec.update_ms = self.now_ms()
        self._push(self.algo_frames(rec))
        return self._ok([{"algoId": str(rec.order_id), "algoClOrdId": order.client_order_id, "reqId": str(p.get("reqId", "")), "sCode": "0", "sMsg": ""}])

    def _query_algo(self, p: dict[str, Any]) -> web.Response:
        rec = self._find_algo(p)
        if rec is None:
            return web.json_response({"code": "51603", "msg": "Order does not exist", "data": []})
        return self._ok([self._algo_row(rec)])

    def _pending_algos(self, p: dict[str, Any]) -> web.Response:
        if not p.get("ordType"):
            return self.error(200, 51000, "Parameter ordType error")
        if "conditional" not in str(p["ordType"]).split(",") or p.get("instType") not in (None, self.inst_type):
            return self._ok([])
        rows = [self.orders[c] for c in self.untriggered]
        return self._paged(p, {self.algo_ids[r.order.client_order_id]: self._algo_row(r) for r in rows if p.get("instId") in (None, r.symbol)}, "algoId")

    def match(self, trade: Trade) -> None:
        """A public trade: the waiting stops it reaches trigger first, then it is matched."""
        symbol = self._symbols.get(trade.instrument_id)
        if symbol is not None:
            self.last_price[symbol] = trade.price
            for coid in sorted(self.untriggered, key=lambda c: self.algo_ids[c]):
                rec = self.orders[coid]
                sell = rec.order.side is OrderSide.SELL
                if rec.symbol == symbol and (trade.price <= rec.order.trigger_price if sell else trade.price >= rec.order.trigger_price):
                    self._trigger(rec)
        super().match(trade)

    def _trigger(self, rec: EmulatedOrder) -> None:
        """The stop ``rec`` reached its trigger: ``effective``, then the order it places (a new ``ordId``) enters the matching venue."""
        stop = rec.order
        coid = stop.client_order_id
        self.untriggered.discard(coid)
        self.algo_states[coid] = "effective"
        self._order_ids += 1
        rec.order_id = self._order_ids
        rec.update_ms = self.now_ms()
        self._push(self.algo_frames(rec))
        typ = OrderType.MARKET if stop.order_type is OrderType.STOP_MARKET else OrderType.LIMIT
        rec.order = Order(coid, "", stop.instrument_id, stop.side, typ, stop.quantity, stop.price, reduce_only=stop.reduce_only)
        self.enter(rec)
        if rec.status is OrderStatus.REJECTED:
            self.algo_states[coid] = "order_failed"
            rec.status = OrderStatus.CANCELED
            self._push(self.algo_frames(rec))

    def _algo_row(self, rec: EmulatedOrder) -> dict[str, Any]:
        order, coid = rec.order, rec.order.client_order_id
        state = self.algo_states[coid]
        triggered = state in ("effective", "order_failed")
        ord_id = str(rec.order_id) if state == "effective" else ""
        market = order.order_type in (OrderType.MARKET, OrderType.STOP_MARKET)
        return {
            "instType": self.inst_type,
            "instId": rec.symbol,
            "ordId": ord_id,
            "ordIdList": [ord_id] if ord_id else [],
            "algoId": str(self.algo_ids[coid]),
            "clOrdId": "",
            "algoClOrdId": coid,
            "sz": repr(order.quantity),
            "ordType": "conditional",
            "side": "buy" if order.side is OrderSide.BUY else "sell",
            "posSide": "net" if self.linear_positions else "",
            "tdMode": self.td_mode_of(rec.symbol),
            "tgtCcy": "base_ccy" if self.inst_type == "SPOT" else "",
            "state": state,
            "slTriggerPx": repr(order.trigger_price),
            "slTriggerPxType": "last",
            "slOrdPx": "-1" if market else repr(order.price),
            "tpTriggerPx": "",
            "tpOrdPx": "",
            "triggerPx": "",
            "ordPx": "",
            "actualSz": repr(order.quantity) if triggered else "",
            "actualPx": ("-1" if market else repr(order.price)) if triggered else "",
            "actualSide": "sl" if triggered else "",
            "triggerTime": str(rec.update_ms) if triggered else "",
            "reduceOnly": "true" if order.reduce_only else "false",
            "failCode": "51000" if state == "order_failed" else "",
            "cTime": str(rec.time_ms),
            "uTime": str(max(rec.update_ms, rec.time_ms)),
        }

    def algo_frames(self, rec: EmulatedOrder) -> list[tuple[str, str]]:
        """The ``orders-algo`` push of a stop's change."""
        arg = {"channel": "orders-algo", "instType": self.inst_type, "uid": _UID}
        return [("orders-algo", json.dumps({"arg": arg, "data": [self._algo_row(rec)]}))]

    # ------------------------------------------------------------------ wire forms

    def _fill_row(self, f: EmulatedFill) -> dict[str, Any]:
        fill = f.fill
        return {
            "instType": self.inst_type,
            "instId": f.rec.symbol,
            "tradeId": str(f.trade_id),
            "ordId": str(f.rec.order_id),
            "clOrdId": "" if f.rec.order.client_order_id in self.algo_ids else f.rec.order.client_order_id,
            "billId": str(f.trade_id),
            "tag": "",
            "fillPx": repr(fill.last_px),
            "fillSz": repr(fill.last_qty),
            "side": "buy" if fill.side is OrderSide.BUY else "sell",
            "execType": "M" if fill.liquidity == "MAKER" else "T",
            "feeCcy": f.fee_asset or self.instruments[f.rec.symbol].quote,
            "fee": repr(-f.fee),
            "ts": str(fill.ts_event // 1_000_000),
        }

    def _row(self, rec: EmulatedOrder, fill: EmulatedFill | None) -> dict[str, Any]:
        order = rec.order
        booked = [f for f in self.fills if f.rec is rec]
        mine = [f.fill for f in booked]
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
            "clOrdId": "" if order.client_order_id in self.algo_ids else order.client_order_id,
            "algoClOrdId": order.client_order_id if order.client_order_id in self.algo_ids else "",
            "algoId": str(self.algo_ids.get(order.client_order_id, "")),
            "tag": "",
            "px": "" if math.isnan(order.price) else repr(order.price),
            "sz": repr(order.quantity),
            "ordType": kind,
            "side": "buy" if order.side is OrderSide.BUY else "sell",
            "tdMode": self.td_mode_of(rec.symbol),
            "tgtCcy": "base_ccy" if kind == "market" and self.inst_type == "SPOT" else "",
            "accFillSz": repr(filled),
            "avgPx": repr(sum(f.last_qty * f.last_px for f in mine) / filled) if filled else "",
            "state": _STATE[rec.status],
            **self._fee_fields(rec, booked),
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
                "fillFee": repr(-fill.fee),
                "fillFeeCcy": fill.fee_asset or quote,
                "execType": "M" if f.liquidity == "MAKER" else "T",
            }
        return row

    def _fee_fields(self, rec: EmulatedOrder, booked: list[EmulatedFill]) -> dict[str, str]:
        """``fee``/``feeCcy``/``rebate``/``rebateCcy`` of an order row, as OKX splits them: a spot buy's
        ``fee`` is what was charged (negative) in its fee coin and ``rebate`` its maker rebate (positive)
        in the quote coin; a sell's (and a swap's) ``fee`` is fee and rebate together, in the quote coin."""
        inst = self.instruments[rec.symbol]
        if self.linear_positions or rec.order.side is not OrderSide.BUY:
            fee = sum(f.fee for f in booked)
            return {"fee": repr(-fee) if fee else "0", "feeCcy": booked[-1].fee_asset or inst.quote if booked else inst.quote,
                    "rebate": "", "rebateCcy": inst.quote if self.linear_positions else inst.base}
        charged = [f for f in booked if f.fee >= 0.0]
        fee, rebate = sum(f.fee for f in charged), -sum(f.fee for f in booked if f.fee < 0.0)
        fee_ccy = charged[-1].fee_asset if charged else inst.base if self.fee_in_received else ""
        return {"fee": repr(-fee) if fee else "0", "feeCcy": fee_ccy or inst.quote,
                "rebate": repr(rebate) if rebate else "", "rebateCcy": inst.quote}

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
            if self.login_errors:
                code = self.login_errors.pop(0)
                return [json.dumps({"event": "error", "code": code, "msg": _LOGIN_ERRORS.get(code, "Login failure")})]
            arg = args[0] if args else {}
            ts = str(arg.get("timestamp", ""))
            ok = (
                arg.get("apiKey") == self.key
                and arg.get("passphrase") == self.passphrase
                and ts.isdigit()
                and abs(int(ts) - self.venue_time()) <= 30
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
    :class:`~tradebus.adapters.okx.trading.OkxSwapTrading`: ``tdMode`` the swap's
    :attr:`margin_mode` (the instrument's; the other one ``51000``: one position per swap), ``posSide`` ``net`` or absent (``51000`` otherwise), ``sz`` in
    contracts and a whole number of ``lotSz`` (``51121`` otherwise), no ``tgtCcy`` (``51000``);
    ``reduceOnly=true`` refused on arrival when flat (``51169``) or in the position's own
    direction (``51170``), capped at the position at fill time. Positions are the shared
    ledger's one-way positions (:attr:`AccountEmulator.linear_positions`: contracts, entry
    price, realized PnL ``contracts * ctVal * (exit - entry)`` and fees on the USDT wallet);
    ``GET /api/v5/account/config`` tells :attr:`pos_mode` and the uid,
    ``GET /api/v5/account/positions`` lists the open ones (``mgnMode`` and ``lever`` the swap's
    :attr:`margin_mode` and :attr:`leverage`, the instrument's unless a test sets them),
    ``GET /api/v5/account/leverage-info`` (``instId`` and ``mgnMode`` required) answers the
    :attr:`leverage` of either margin mode, ``GET /api/v5/account/instruments`` (``instType``
    required) each swap's ``ctVal`` and ``ctMult`` (their product its instrument's ``contract_size``; ``ctMult`` is
    :attr:`ct_mult`'s, 1 unless a test sets it), ``lotSz`` and ``tickSz``, and a ``positions`` push (with
    ``pos`` ``0`` when closed) follows every fill, after the ``account`` push. Funding only when
    a test calls :meth:`settle_funding`: the wallet moves, an ``account`` push tells the new
    balance only (OKX itemises no payment on a private channel), and a bill of ``type`` ``8``
    (funding fee; ``subType`` ``173`` expense, ``174`` income; ``balChg`` the change) is listed by
    ``GET /api/v5/account/bills`` and ``/account/bills-archive`` (newest first; ``instType``,
    ``type``, ``instId``, ``begin`` / ``end`` ms, ``after`` / ``before`` a ``billId``, ``limit``
    1-100 default 100; both keep every bill, where OKX keeps 7 days and 3 months). Departures:
    no margin check, no liquidation, no mark price (``upl`` ``0``).
    """

    inst_type = "SWAP"
    td_mode = "cross"
    linear_positions = True
    #: The account's position mode (``GET /api/v5/account/config``); ``long_short_mode`` to test a refusal.
    pos_mode = "net_mode"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: The account's leverage of each swap (``leverage-info``, ``lever`` of positions and orders): the instrument's unless a test sets it.
        self.leverage: dict[str, float] = {s: inst.leverage for s, inst in self.instruments.items()}
        #: The margin mode (``tdMode``) each swap is traded and its position held in: the instrument's unless a test sets it.
        self.margin_mode: dict[str, str] = {s: str(inst.margin_mode) for s, inst in self.instruments.items()}
        #: Each swap's contract multiplier (``ctMult``; ``ctVal`` is the contract size over it): 1 unless a test sets it.
        self.ct_mult: dict[str, float] = dict.fromkeys(self.instruments, 1.0)
        #: The account's funding bills (``GET /api/v5/account/bills`` rows), oldest first.
        self.bills: list[dict[str, Any]] = []

    def routes(self) -> dict[tuple[str, str], Any]:
        return super().routes() | {
            ("GET", "/api/v5/account/bills"): self._bills,
            ("GET", "/api/v5/account/bills-archive"): self._bills,
            ("GET", "/api/v5/account/positions"): self._positions,
            ("GET", "/api/v5/account/config"): self._config,
            ("GET", "/api/v5/account/leverage-info"): self._leverage_info,
        }

    def _instruments(self, p: dict[str, Any]) -> web.Response:
        """The account's swaps (``instType`` required), with OKX's contract fields."""
        if p.get("instType") != self.inst_type:
            return self._ok([]) if p.get("instType") else self.error(200, 51000, "Parameter instType error")
        return self._ok([
            {"instType": self.inst_type, "instId": s, "ctType": "linear", "ctVal": f"{inst.contract_size / self.ct_mult[s]:g}",
             "ctMult": f"{self.ct_mult[s]:g}", "ctValCcy": inst.base,
             "settleCcy": inst.quote, "lotSz": f"{inst.lot_size:g}", "tickSz": f"{inst.tick_size:g}", "state": "live"}
            for s, inst in sorted(self.instruments.items()) if p.get("instId") in (None, s)
        ])

    def td_mode_of(self, symbol: str) -> str:
        return self.margin_mode.get(symbol, self.td_mode)

    def settle_funding(self, symbol: str, rate: float, mark: float) -> float:
        """Settle one funding of the position in ``symbol`` at ``mark``; the payment (positive: paid).

        The wallet moves by ``-contracts * ctVal * mark * rate``: a funding bill and an
        ``account`` push (the class docstring). A flat swap pays nothing: no bill, no push.

        Raises
        ------
        ValueError
            A bill of the swap for the same amount is within ``VENUE_FUNDING_MATCH_NS`` of now
            (:meth:`~tradebus.adapters.common.account_emulator.AccountEmulator.refuse_twin_funding`).
        """
        inst = self.instruments[symbol]
        contracts = self.position(symbol)
        payment = contracts * inst.contract_size * mark * rate
        if payment == 0.0:
            return 0.0
        now = self.now_ms()
        self.refuse_twin_funding(symbol, -payment, now, "bill",
                                 ((b["instId"], int(b["ts"]), float(b["balChg"]), b["billId"]) for b in self.bills))
        self.balances[inst.quote] = self.balances.get(inst.quote, 0.0) - payment
        self.bills.append({
            "billId": str(9_000_000_000 + len(self.bills)), "instType": "SWAP", "instId": symbol, "ccy": inst.quote,
            "mgnMode": self.margin_mode[symbol], "type": "8", "subType": "173" if payment > 0.0 else "174",
            "balChg": repr(-payment), "bal": repr(self.balances[inst.quote]), "sz": repr(abs(contracts)), "px": repr(mark),
            "pnl": repr(-payment), "fee": "0", "ordId": "", "tradeId": "", "execType": "", "ts": str(now),
        })
        self._push(self.balance_frames([inst.quote]))
        return payment

    def _bills(self, p: dict[str, Any]) -> web.Response:
        """One page of the account's bills, newest first, as OKX pages them (``billId`` order)."""
        try:
            limit = int(p.get("limit") or FILLS_PAGE)
            after, before, begin, end = (int(p[k]) if p.get(k) else None for k in ("after", "before", "begin", "end"))
        except ValueError:
            return self.error(200, 51000, "Parameter limit/after/before/begin/end error")
        if not 1 <= limit <= FILLS_PAGE:
            return self.error(200, 51000, "Parameter limit error")
        rows = [
            b for b in self.bills
            if all(p.get(k) in (None, b[k]) for k in ("instType", "instId", "type", "subType", "ccy", "mgnMode"))
            and (begin or 0) <= int(b["ts"]) <= (end if end is not None else math.inf)
            and (after is None or int(b["billId"]) < after) and (before is None or int(b["billId"]) > before)
        ]
        page = rows[:limit] if before is not None else rows[-limit:]
        return self._ok(list(reversed(page)))

    def _leverage_info(self, p: dict[str, Any]) -> web.Response:
        mode, symbols = str(p.get("mgnMode") or ""), [s for s in str(p.get("instId") or "").split(",") if s]
        if mode not in ("cross", "isolated") or not symbols:
            return self.error(200, 51000, "Parameter instId/mgnMode error")
        if any(s not in self.instruments for s in symbols):
            return self.error(200, 51001, "Instrument ID does not exist")
        return self._ok([{"instId": s, "mgnMode": mode, "posSide": "net", "lever": f"{self.leverage[s]:g}"} for s in symbols])

    def _config(self, p: dict[str, Any]) -> web.Response:
        return self._ok([{"uid": _UID, "mainUid": _UID, "acctLv": "2", "posMode": self.pos_mode, "autoLoan": False, "level": "Lv1"}])

    def check_order(self, p: dict[str, Any], typ: OrderType, inst: Instrument) -> tuple[str, str] | None:
        if p.get("tgtCcy"):
            return "51000", "Parameter tgtCcy error (SPOT only)"
        if p.get("posSide", "net") != "net":
            return "51000", "Parameter posSide error (the account is in net mode)"
        if inst.validate_order(float(p["sz"]), math.nan) is not None:  # lots counted on the decimal grid
            return "51121", f"Order quantity should be a multiple of the lot size {inst.lot_size}"
        return None

    def refusal(self, rec: EmulatedOrder) -> tuple[str, str]:
        if not rec.reason.startswith("reduce_only"):
            return super().refusal(rec)
        if abs(self.position(rec.symbol)) < 1e-12:
            return "51169", "Order failed because you don't have any positions in this direction for this contract to reduce or close."
        return "51170", "Failed to place order. A reduce-only order can't be the same direction as your existing position."

    def row_extras(self, rec: EmulatedOrder) -> dict[str, Any]:
        return {"posSide": "net", "reduceOnly": "true" if rec.order.reduce_only else "false", "lever": f"{self.leverage[rec.symbol]:g}"}

    def _position_row(self, symbol: str) -> dict[str, Any]:
        pos, entry, now = self.position(symbol), self.entry.get(symbol, 0.0), str(self.now_ms())
        return {
            "instType": "SWAP", "instId": symbol, "mgnMode": self.margin_mode[symbol], "posSide": "net", "pos": repr(pos),
            "avgPx": repr(entry) if pos else "", "ccy": self.instruments[symbol].quote, "posCcy": "", "upl": "0",
            "lever": f"{self.leverage[symbol]:g}", "cTime": now, "uTime": now,
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


#: Public channels whose pushes carry the best bid and ask (``parse_frame`` makes a Quote of each).
_QUOTE_CHANNELS = frozenset({"tickers", "bbo-tbt"})


class MatchingProtocol(OkxProtocol):
    """The public OKX stream emulator's dialect, also feeding an account emulator every sent trade and best
    bid and ask: each ``tickers`` and ``bbo-tbt`` quote, and the top of a book once a frame updated it."""

    def __init__(self, frames: Any, *, account: AccountEmulator, instrument_ids: dict[str, str]) -> None:
        super().__init__(frames)
        self.account = account
        self.instrument_ids = instrument_ids  # instId -> instrument id

    def on_sent(self, raw: str) -> None:
        super().on_sent(raw)
        if '"channel":"trades"' in raw:
            msg = json.loads(raw)
            iid = self.instrument_ids.get(str((msg.get("arg") or {}).get("instId")))
            if iid is None:
                return
            for t in msg.get("data") or []:
                ts = int(t["ts"]) * 1_000_000
                self.account.on_trade(Trade(iid, ts, ts, float(t["px"]), float(t["sz"]), 1 if t["side"] == "buy" else -1, str(t["tradeId"])))
            return
        stream = frame_stream(raw)
        if stream is None:
            return
        channel, _, inst_id = stream.partition(":")
        iid = self.instrument_ids.get(inst_id)
        if iid is None:
            return
        if channel in BOOK_CHANNELS:
            sync = self._parser.books.syncs.get(book_key(channel, inst_id))
            if sync is not None and sync.synced:
                self.account.on_book(iid, sync.book)
        elif channel in _QUOTE_CHANNELS:
            for quote in self._parser.parse_frame(raw, 0):
                self.account.on_quote(msgspec.structs.replace(quote, instrument_id=iid))
