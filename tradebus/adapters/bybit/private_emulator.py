"""A local Bybit v5 testnet account for tests and demos: signed REST and the private WebSocket on 127.0.0.1.

:class:`BybitPrivateEmulator` speaks enough of Bybit v5 (unified account, ``category=spot``)
for :class:`~tradebus.adapters.bybit.trading.BybitTrading` (ccxt, its URLs pointed here) and
the private stream of :mod:`tradebus.adapters.bybit.user_stream` to run unchanged:

* ``POST /v5/order/create``, ``/v5/order/cancel``, ``/v5/order/amend``; ``GET
  /v5/order/realtime`` (open orders, conditional ones included, paged as Bybit pages them:
  newest first, ``limit`` 1-50 default 20, ``cursor``; any recent order by ``orderLinkId``),
  ``/v5/order/history``, ``/v5/execution/list`` (paged as Bybit pages it: newest first,
  ``limit`` 1-100 default 50, ``cursor``, ``startTime``/``endTime`` at most 7 days apart),
  ``/v5/account/wallet-balance``. Every
  request must carry ``X-BAPI-API-KEY``, an ``X-BAPI-TIMESTAMP`` within
  ``X-BAPI-RECV-WINDOW`` and ``X-BAPI-SIGN`` (hex HMAC-SHA256 of timestamp + key + recv
  window + body or query string). Answers are ``{"retCode", "retMsg", "result",
  "retExtInfo", "time"}``; errors Bybit's: ``10003`` bad key, ``10004`` bad signature,
  ``10002`` timestamp, ``10001`` a parameter (``"params error: ..."``, before the account sees it: an
  ``orderLinkId`` not 1-36 letters, digits, ``-`` and ``_``, :data:`CLIENT_ID`, or a ``qty``,
  ``price`` or ``triggerPrice`` not a plain decimal, :data:`DECIMAL`, such as ``1e-05``), ``170141`` duplicate ``orderLinkId``,
  ``170213`` unknown order on a cancel or amend. A request naming another ``category``
  finds no order, fill or position.
* ``GET /v5/market/instruments-info`` (public: no key, no signature) lists the account's symbols of its
  ``category`` in one page (none of another category).
* ``/v5/private``: ``auth`` (signature of ``"GET/realtime" + expires``; refused ``"Params Error"`` when its ``expires``
  has passed on :attr:`~tradebus.adapters.common.account_emulator.AccountEmulator.venue_time`), then ``subscribe``
  to ``order``, ``execution``, ``wallet``; ``{"op": "ping"}`` is answered with ``pong``.
  A fill is an ``execution`` push followed by the ``order`` push; balances go to ``wallet``.

Matching, balances and faults are the :class:`~tradebus.adapters.common.account_emulator.AccountEmulator`'s;
a ``rate_limit`` fault is answered as Bybit does: HTTP 200, retCode ``10006`` "Too many visits",
the limit's end in ``X-Bapi-Limit-Reset-Timestamp`` (epoch ms), no ``Retry-After``; a ``ban`` fault as
Bybit's IP ban: HTTP 403, the text "access too frequent" (``Retry-After`` only if the fault's ``retry_after`` > 0). Every
authenticated answer carries Bybit's per-endpoint limit headers: ``X-Bapi-Limit``
(:attr:`BybitPrivateEmulator.endpoint_limit` requests per second, every endpoint alike),
``X-Bapi-Limit-Status`` (requests left to that endpoint in the current wall second) and
``X-Bapi-Limit-Reset-Timestamp`` (the next second, ms); going over is not refused.
Fees are in the quote asset unless a test sets ``fee_in_received``: a spot buy's fee is then taken
out of the coin it receives, as Bybit charges it, and ``execFee`` / ``feeCurrency`` (stream and
``/v5/execution/list``) and ``cumExecFee`` tell it in that coin; a maker buy's rebate (a negative
``maker_fee``) stays in the quote coin and a maker sell's is paid in the base coin (``execFee``
negative, ``feeCurrency`` ``BTC``), as Bybit's "Spot Fee Currency Instruction" has it.
Departures from Bybit: a MARKET order is acknowledged ``New`` and fills at the next public
trade, its size in the base asset (``marketUnit=baseCoin``).

Conditional orders (``triggerPrice`` on ``/v5/order/create``) wait, ``Untriggered``, outside the
matching venue, and are watched against the public trades (the last price: ``triggerBy``
``LastPrice``). Which way a trigger is reached is Bybit's rule: on linear ``triggerDirection``
(1: a trade at or above the trigger, 2: at or below; a trigger already passed by the last trade is
refused, ``110092`` "expect Rising" / ``110093`` "expect Falling"); on spot (``orderFilter=StopOrder``,
no direction) a trigger above the last price at placement waits for a rise, one at or below it for
a fall. The trade that reaches the trigger pushes ``Triggered``; the order then enters the
matching venue as its ``Market`` or ``Limit`` order under the same ``orderId`` (``New``), and that
trade already matches it. ``/v5/order/amend`` changes an untriggered order's ``triggerPrice``
(checked as at placement on linear), ``qty`` and ``price``; a ``triggerPrice`` on any other order
is refused (``10001``). On spot a cancel finds an untriggered conditional order only with
``orderFilter=StopOrder`` and any other order only without it (``Order``, the default):
``170213`` otherwise. Departures: a spot conditional order placed before any public trade is
refused (``10001``: no last price to compare its trigger with); on spot a ``triggerPrice``
without ``orderFilter=StopOrder`` is refused (``10001``) and on linear a ``triggerBy`` other than
``LastPrice``, placed or amended (a mark or index trigger is not emulated: it is refused, never
watched against the trades); a triggered order the matching venue refuses is pushed ``Cancelled`` with the
reason in ``rejectReason``.

:class:`BybitLinearEmulator` is the same account trading USDT perpetuals (``category=linear``)
in one-way mode, with the shared one-way position ledger
(:attr:`~tradebus.adapters.common.account_emulator.AccountEmulator.linear_positions`): orders
take ``positionIdx`` 0 only (``10001`` otherwise) and ``reduceOnly`` (``110017`` when it
would increase the position); ``GET /v5/position/list`` lists the position of a symbol
(``size``, ``side``, ``avgPrice``, ``leverage`` the instrument's unless a test sets
:attr:`BybitLinearEmulator.leverage`); ``GET /v5/account/info`` answers the account-wide
``marginMode`` (``ISOLATED_MARGIN`` when every instrument is isolated, else ``REGULAR_MARGIN``).
In hedge mode (:attr:`BybitLinearEmulator.hedge_mode`) the position list has a flat
``positionIdx`` 1 and 2 row per symbol and every order is refused (``10001``: one-way orders
do not match the mode; hedge-mode trading is not emulated); the wallet is the USDT margin (realized PnL and fees);
every fill is pushed on ``execution``, ``order``, ``wallet`` and ``position``. A post-only
order that would take is acknowledged and canceled at once (``rejectReason``
``EC_PostOnlyWillTakeLiquidity``), as Bybit does.

Funding is settled only when a test calls :meth:`BybitLinearEmulator.settle_funding`: the wallet
moves by ``-size * mark * rate``, listed in ``GET /v5/account/transaction-log`` (``type=SETTLEMENT``,
``funding`` what the account received, as the unified account's log documents it;
``startTime``/``endTime`` at most 7 days apart, only ``startTime``: 24 hours from it, neither: the
last 24 hours; newest first, ``limit`` 1-50 default 20, ``cursor``) and pushed as an ``execution``
row with ``execType=Funding`` then a ``wallet`` push. Assumed shape (Bybit documents the
``Funding`` execution type but shows no funding row): ``execFee`` the fee paid (negative when
received, as a trade's fee), ``feeRate`` the rate, ``execPrice`` the mark, ``execQty`` the size,
``execTime`` the log row's ``transactionTime``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import time
from typing import Any

from aiohttp import web

from tradebus.adapters.bybit.emulator import BybitProtocol
from tradebus.adapters.bybit.user_stream import wire_symbol
from tradebus.adapters.common.account_emulator import AccountEmulator, EmulatedFill, EmulatedOrder, WsSession
from tradebus.engine.instrument import Instrument
from tradebus.engine.messages import OrderSide, OrderStatus, OrderType, TimeInForce, Trade
from tradebus.execution.orders import Order

__all__ = ["CLIENT_ID", "DECIMAL", "BybitLinearEmulator", "BybitPrivateEmulator", "MatchingProtocol"]

_STATUS = {
    OrderStatus.ACCEPTED: "New",
    OrderStatus.PARTIALLY_FILLED: "PartiallyFilled",
    OrderStatus.FILLED: "Filled",
    OrderStatus.CANCELED: "Cancelled",
    OrderStatus.EXPIRED: "Deactivated",
    OrderStatus.REJECTED: "Rejected",
}
#: Rows of an execution page at most; longest ``startTime`` - ``endTime`` span, ms.
EXECUTIONS_PAGE = 100
EXECUTIONS_WINDOW_MS = 7 * 24 * 3600 * 1000
#: Rows of a transaction-log page at most.
TRANSACTION_LOG_PAGE = 50
#: Rows of an open-order page (``/v5/order/realtime``) at most, and without ``limit``.
OPEN_ORDERS_PAGE = 50
OPEN_ORDERS_DEFAULT_PAGE = 20
#: The form of Bybit's open-order ``nextPageCursor`` (URL-encoded ``page_args=<orderId>&symbol=..&``).
_CURSOR = re.compile(r"page_args%3D(\d+)%26.*")
#: Bybit's form of an ``orderLinkId``: at most 36 characters, "numbers, letters (upper and lower cases),
#: dashes, and underscores" (v5 https://bybit-exchange.github.io/docs/v5/order/create-order), and of a
#: ``qty``, ``price`` or ``triggerPrice``: a plain decimal (``"1e-05"``, ``"-1.5"`` are refused).
#: Either is retCode ``10001`` "params error".
CLIENT_ID = re.compile(r"[A-Za-z0-9_-]{1,36}")
DECIMAL = re.compile(r"[0-9]+(\.[0-9]+)?")
#: V5's answer to a private-stream ``auth`` whose ``expires`` has passed on Bybit's clock, as users meet it (pybit issues
#: 152 and 300: an ``expires`` 1 s ahead refused so where 10 s ahead passed; its message for any refused auth: "check your
#: API keys and resync your system time").
_AUTH_EXPIRED = "Params Error"
_FORMS = {"orderLinkId": CLIENT_ID, **dict.fromkeys(("qty", "price", "triggerPrice"), DECIMAL)}
_TIF = {"GTC": (TimeInForce.GTC, False), "IOC": (TimeInForce.IOC, False), "FOK": (TimeInForce.FOK, False), "PostOnly": (TimeInForce.GTC, True)}


class BybitPrivateEmulator(AccountEmulator):
    """The emulated Bybit testnet account (see the module docstring); parameters as :class:`AccountEmulator`."""

    rate_limit_code = 10006
    ws_path = "/v5/private"
    time_path = "/v5/market/time"
    rebate_in_quote = True  # "Spot Fee Currency Instruction": a maker buy's negative fee is in the quote coin
    sell_rebate_in_base = True  # ... and a maker sell's in the base coin
    #: The Bybit ``category`` this account emulates.
    category = "spot"
    #: Requests per second per endpoint (``X-Bapi-Limit``).
    endpoint_limit = 10

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Last public trade price of each symbol.
        self.last_price: dict[str, float] = {}
        #: Untriggered conditional orders: ``orderLinkId -> True`` if waiting for a rise, ``False`` a fall.
        self.untriggered: dict[str, bool] = {}
        #: ``orderLinkId -> (triggerPrice, triggerDirection)`` of every conditional order, triggered or not.
        self.conditions: dict[str, tuple[float, int]] = {}
        self._symbols = {inst.instrument_id: symbol for symbol, inst in self.instruments.items()}
        #: ``path -> (wall second, requests in it)`` of each endpoint.
        self._calls: dict[str, tuple[int, int]] = {}
        #: The ``X-Bapi-Limit-Status`` of the last answer (``None``: none sent yet).
        self.last_limit_status: int | None = None
        #: The ``ret_msg`` the next private-stream ``auth`` ops are refused with, one each, whatever they hold.
        self.auth_errors: list[str] = []

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        n = len(self.requests)
        response = await super()._rest(request)
        if len(self.requests) == n or "X-Bapi-Limit-Status" in response.headers:
            return response  # refused before authentication, or already rate limited
        second = int(time.time())
        start, calls = self._calls.get(request.path, (second, 0))
        calls = calls + 1 if start == second else 1
        self._calls[request.path] = (second, calls)
        self.last_limit_status = max(0, self.endpoint_limit - calls)
        response.headers["X-Bapi-Limit"] = str(self.endpoint_limit)
        response.headers["X-Bapi-Limit-Status"] = str(self.last_limit_status)
        response.headers["X-Bapi-Limit-Reset-Timestamp"] = str((second + 1) * 1000)
        return response

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
            ("GET", "/v5/market/instruments-info"): self._instruments_info,
        }

    def _instruments_info(self, p: dict[str, Any]) -> web.Response:
        """``GET /v5/market/instruments-info`` (public) of ``category``: the account's symbols of its category (another
        category: none), in one page; the fields the client reads only."""
        rows = [{"symbol": s, "status": "Trading", "baseCoin": inst.base, "quoteCoin": inst.quote}
                for s, inst in sorted(self.instruments.items()) if p.get("category") == self.category and p.get("symbol") in (None, s)]
        return self._ok({"category": p.get("category", ""), "list": rows, "nextPageCursor": ""})

    def time_answer(self, ms: int) -> web.Response:
        """``GET /v5/market/time``."""
        result = {"timeSecond": str(ms // 1000), "timeNano": str(ms * 1_000_000)}
        return web.json_response({"retCode": 0, "retMsg": "OK", "result": result, "retExtInfo": {}, "time": ms})

    def error(self, status: int, code: int | str, msg: str, headers: dict[str, str] | None = None) -> web.Response:
        body = {"retCode": int(code), "retMsg": msg, "result": {}, "retExtInfo": {}, "time": int(time.time() * 1000)}
        return web.json_response(body, status=status, headers=headers)

    def refused_with(self, code: str, params: dict[str, Any]) -> web.Response:
        """Bybit's refusal with retCode ``code``: HTTP 200, as Bybit answers its retCodes."""
        return self.error(200, code, f"refused ({code})")

    def rate_limited(self, seconds: float) -> web.Response:
        """Bybit's ``10006`` "Too many visits": HTTP 200, the end of the limit in ``X-Bapi-Limit-Reset-Timestamp`` (ms)."""
        reset = int((time.time() + seconds) * 1000)
        headers = {"X-Bapi-Limit-Status": "0", "X-Bapi-Limit": "10", "X-Bapi-Limit-Reset-Timestamp": str(reset)}
        return self.error(200, self.rate_limit_code, "Too many visits", headers)

    def banned(self, seconds: float) -> web.Response:
        """Bybit's IP ban: HTTP ``403`` "access too frequent", not the API's JSON, and no header saying when it ends
        (a ``Retry-After`` of ``seconds`` only when ``seconds`` > 0, which Bybit does not document: tests that go on after a ban)."""
        headers = {"Retry-After": str(seconds)} if seconds > 0 else None
        return web.Response(status=403, text="access too frequent", headers=headers)

    def _ok(self, result: dict[str, Any]) -> web.Response:
        return web.json_response({"retCode": 0, "retMsg": "OK", "result": result, "retExtInfo": {}, "time": int(time.time() * 1000)})

    def authenticate(self, request: web.Request, body: str) -> web.Response | None:
        if request.path == "/v5/market/instruments-info":  # public: no key, no signature
            return None
        h = request.headers
        if h.get("X-BAPI-API-KEY") != self.key:
            return self.error(401, 10003, "API key is invalid.")
        ts, window = h.get("X-BAPI-TIMESTAMP", ""), h.get("X-BAPI-RECV-WINDOW", "5000")
        if not ts.isdigit() or not window.isdigit() or abs(self.venue_time() * 1000 - int(ts)) > int(window):
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

    def malformed(self, params: dict[str, Any]) -> web.Response | None:
        for name, value in params.items():
            form = _FORMS.get(name)
            if form is not None and value not in ("", None) and form.fullmatch(str(value)) is None:
                return self.error(200, 10001, f"params error: {name} invalid ({form.pattern})")
        return None

    def client_id(self, params: dict[str, Any]) -> str:
        return str(params.get("orderLinkId", ""))

    def _mine(self, p: dict[str, Any]) -> bool:
        """Whether a request names this account's ``category`` (another category has no orders here)."""
        return p.get("category") == self.category

    def _find(self, p: dict[str, Any]) -> EmulatedOrder | None:
        if not self._mine(p):
            return None
        return self.find(str(p.get("orderLinkId") or ""), str(p.get("orderId") or ""))

    def _place(self, p: dict[str, Any]) -> web.Response:
        if p.get("category") != self.category:
            return self.error(200, 10001, f"category {p.get('category')!r}: only {self.category} is emulated")
        symbol = str(p.get("symbol", ""))
        inst = self.instruments.get(symbol)
        if inst is None:
            return self.error(200, 10001, "params error: symbol invalid")
        coid = str(p.get("orderLinkId", ""))
        if not coid:
            return self.error(200, 10001, "params error: orderLinkId (emulated: every order names one)")
        if coid in self.orders:
            return self.error(200, 170141, "Duplicate clientOrderId.")
        typ = {"Market": OrderType.MARKET, "Limit": OrderType.LIMIT}.get(str(p.get("orderType")))
        if typ is None:
            return self.error(200, 10001, f"params error: orderType {p.get('orderType')!r}")
        refused = self.check_order(p, typ)
        if refused is not None:
            return refused
        tif, post_only = _TIF.get(str(p.get("timeInForce", "GTC")), (TimeInForce.GTC, False))
        side = OrderSide.BUY if p.get("side") == "Buy" else OrderSide.SELL
        price = float(p["price"]) if typ is OrderType.LIMIT else math.nan
        reduce_only = self.category == "linear" and p.get("reduceOnly") in (True, "true")
        if p.get("triggerPrice") not in (None, "", "0"):
            return self._place_conditional(p, symbol, inst, typ, side, price, tif, post_only, reduce_only)
        order = Order(coid, "", inst.instrument_id, side, typ, float(p["qty"]), price, tif=tif, post_only=post_only, reduce_only=reduce_only)
        rec = self.submit(order, symbol)
        if rec.status is OrderStatus.REJECTED:
            return self.refusal(rec)
        return self._ok({"orderId": str(rec.order_id), "orderLinkId": coid})

    def _place_conditional(
        self, p: dict[str, Any], symbol: str, inst: Instrument, typ: OrderType, side: OrderSide,
        price: float, tif: TimeInForce, post_only: bool, reduce_only: bool,
    ) -> web.Response:
        """A conditional order: recorded ``Untriggered``, watched by :meth:`on_trade` (module docstring)."""
        try:
            trigger = float(p["triggerPrice"])
        except ValueError:
            return self.error(200, 10001, "params error: triggerPrice")
        if not trigger > 0.0:
            return self.error(200, 10001, "params error: triggerPrice")
        direction, refused = self.direction(p, symbol, trigger)
        if refused is not None:
            return refused
        coid = str(p["orderLinkId"])
        stop = OrderType.STOP_MARKET if typ is OrderType.MARKET else OrderType.STOP_LIMIT
        order = Order(coid, "", inst.instrument_id, side, stop, float(p["qty"]), price, trigger, tif, post_only=post_only, reduce_only=reduce_only)
        rec = self.record(order, symbol)
        self.untriggered[coid] = direction == 1
        self.conditions[coid] = (trigger, direction)
        self._push(self.order_frames(rec, None))
        return self._ok({"orderId": str(rec.order_id), "orderLinkId": coid})

    def direction(self, p: dict[str, Any], symbol: str, trigger: float) -> tuple[int, web.Response | None]:
        """Spot: the ``triggerDirection`` Bybit gives a conditional order, 1 for a trigger above the last price, else 2."""
        if p.get("orderFilter") != "StopOrder":
            return 0, self.error(200, 10001, "params error: a spot triggerPrice needs orderFilter=StopOrder (emulated)")
        last = self.last_price.get(symbol)
        if last is None:
            return 0, self.error(200, 10001, f"emulated: no public trade of {symbol} yet to place a conditional order against")
        return (1 if trigger > last else 2), None

    def check_order(self, p: dict[str, Any], typ: OrderType) -> web.Response | None:
        """The category's own checks of a new order (spot: a market order's size in the base coin)."""
        if typ is OrderType.MARKET and p.get("marketUnit") != "baseCoin":
            return self.error(200, 10001, "params error: marketUnit (emulated: baseCoin only)")
        return None

    def refusal(self, rec: EmulatedOrder) -> web.Response:
        """The answer to an order the matching venue refused."""
        return self.error(200, 170130, f"Order rejected: {rec.reason}")

    def _cancel(self, p: dict[str, Any]) -> web.Response:
        rec = self._find(p)
        if rec is not None and self.category == "spot":
            wanted = "StopOrder" if rec.order.client_order_id in self.untriggered else "Order"
            if str(p.get("orderFilter") or "Order") != wanted:
                rec = None
        if rec is not None and rec.order.client_order_id in self.untriggered:
            del self.untriggered[rec.order.client_order_id]
            rec.status, rec.update_ms = OrderStatus.CANCELED, self.now_ms()
            self._push(self.order_frames(rec, None))
        elif rec is None or not self.cancel(rec):
            return self.error(200, 170213, "Order does not exist.")
        return self._ok({"orderId": str(rec.order_id), "orderLinkId": rec.order.client_order_id})

    def _amend(self, p: dict[str, Any]) -> web.Response:
        rec = self._find(p)
        try:
            qty = float(p["qty"]) if p.get("qty") else None
            price = float(p["price"]) if p.get("price") else None
            trigger = float(p["triggerPrice"]) if p.get("triggerPrice") else None
        except ValueError:
            return self.error(200, 10001, "params error: qty/price/triggerPrice")
        if rec is not None and rec.order.client_order_id in self.untriggered:
            return self._amend_conditional(rec, p, qty, price, trigger)
        if trigger is not None:
            return self.error(200, 10001, "params error: triggerPrice of an order that is not an untriggered conditional order")
        if rec is None or not self.amend(rec, qty, price):
            return self.error(200, 170213, "Order does not exist.")
        return self._ok({"orderId": str(rec.order_id), "orderLinkId": rec.order.client_order_id})

    def _amend_conditional(self, rec: EmulatedOrder, p: dict[str, Any], qty: float | None, price: float | None, trigger: float | None) -> web.Response:
        order, coid = rec.order, rec.order.client_order_id
        if (qty is not None and not qty > 0.0) or (trigger is not None and not trigger > 0.0):
            return self.error(200, 10001, "params error: qty/triggerPrice")
        refused = self.trigger_by_refused(p)
        if refused is not None:
            return refused
        if trigger is not None:
            refused = self.check_amended_trigger(rec, trigger)
            if refused is not None:
                return refused
            order.trigger_price = trigger
            self.conditions[coid] = (trigger, self.conditions[coid][1])
        if qty is not None:
            order.quantity = qty
        if price is not None and order.order_type is OrderType.STOP_LIMIT:
            order.price = price
        rec.update_ms = self.now_ms()
        self._push(self.order_frames(rec, None))
        return self._ok({"orderId": str(rec.order_id), "orderLinkId": coid})

    def check_amended_trigger(self, rec: EmulatedOrder, trigger: float) -> web.Response | None:
        """A new trigger price of an untriggered order (spot: its direction stays the one given at placement)."""
        return None

    def trigger_by_refused(self, p: dict[str, Any]) -> web.Response | None:
        """The refusal of a ``triggerBy`` this account does not emulate (spot: none, Bybit takes it on linear only)."""
        return None

    def match(self, trade: Trade) -> None:
        """A public trade: the untriggered conditional orders it reaches trigger first, then it is matched."""
        symbol = self._symbols.get(trade.instrument_id)
        if symbol is not None:
            self.last_price[symbol] = trade.price
            for coid, rises in list(self.untriggered.items()):
                rec = self.orders[coid]
                reached = trade.price >= rec.order.trigger_price if rises else trade.price <= rec.order.trigger_price
                if rec.symbol == symbol and reached:
                    self._trigger(rec)
        super().match(trade)

    def _trigger(self, rec: EmulatedOrder) -> None:
        """The conditional order ``rec`` reached its trigger: ``Triggered``, then its Market/Limit order enters the matching venue."""
        stop = rec.order
        coid = stop.client_order_id
        del self.untriggered[coid]
        rec.update_ms = self.now_ms()
        self._push([self._push_frame("order", [self._row(rec) | {"orderStatus": "Triggered"}])])
        typ = OrderType.MARKET if stop.order_type is OrderType.STOP_MARKET else OrderType.LIMIT
        rec.order = Order(
            coid, "", stop.instrument_id, stop.side, typ, stop.quantity, stop.price, tif=stop.tif,
            post_only=stop.post_only, reduce_only=stop.reduce_only,
        )
        self.enter(rec)
        if rec.status is OrderStatus.REJECTED:
            rec.status = OrderStatus.CANCELED
            self._push(self.order_frames(rec, None))

    def _listed(self, rows: list[EmulatedOrder]) -> web.Response:
        return self._ok({"category": self.category, "list": [self._row(r) for r in rows], "nextPageCursor": ""})

    def _realtime(self, p: dict[str, Any]) -> web.Response:
        """An order by ``orderLinkId`` / ``orderId``, else one page of the open orders, as Bybit pages them.

        Newest first; ``limit`` 1-50, default 20; ``cursor``: the ``nextPageCursor`` of the
        previous page (empty on the last page).
        """
        if p.get("orderLinkId") or p.get("orderId"):
            rec = self._find(p)
            return self._listed([rec] if rec is not None and rec.status is not OrderStatus.REJECTED else [])
        try:
            limit = int(p.get("limit") or OPEN_ORDERS_DEFAULT_PAGE)
        except ValueError:
            return self.error(200, 10001, "params error: limit")
        if not 1 <= limit <= OPEN_ORDERS_PAGE:
            return self.error(200, 10001, f"params error: limit must be in [1, {OPEN_ORDERS_PAGE}]")
        cursor = str(p.get("cursor") or "")
        match = _CURSOR.fullmatch(cursor)
        if cursor and match is None:
            return self.error(200, 10001, f"params error: cursor {cursor[:20]}")
        # Ids grow with placement: newest first is by id, and the next page holds the ids below the cursor's.
        rows = sorted(self.open_orders(p.get("symbol")) if self._mine(p) else [], key=lambda r: r.order_id, reverse=True)
        if match is not None:
            rows = [r for r in rows if r.order_id < int(match.group(1))]
        page = rows[:limit]
        more = f"page_args%3D{page[-1].order_id}%26symbol%3D{len(page)}%26" if len(rows) > limit else ""
        return self._ok({"category": self.category, "list": [self._row(r) for r in page], "nextPageCursor": more})

    def _history(self, p: dict[str, Any]) -> web.Response:
        rec = self._find(p)
        return self._listed([rec] if rec is not None and rec.status is not OrderStatus.REJECTED else [])

    def _executions(self, p: dict[str, Any]) -> web.Response:
        """One page of the account's executions, newest first, as Bybit pages them.

        ``startTime`` / ``endTime`` (ms) at most 7 days apart (only one given: 7 days from or
        to it; neither: every execution -- Bybit's last 7 days, a departure: tests' fills
        carry the recording's times); ``limit`` 1-100, default 50; ``cursor``: the
        ``nextPageCursor`` of the previous page (empty on the last page). Those older than
        :attr:`trade_history_ns` and those :attr:`listed_late` holds back are left out.
        """
        try:
            limit = int(p.get("limit") or 50)
            start, end = (int(p[k]) if p.get(k) else None for k in ("startTime", "endTime"))
        except ValueError:
            return self.error(200, 10001, "params error: limit/startTime/endTime")
        if not 1 <= limit <= EXECUTIONS_PAGE:
            return self.error(200, 10001, "params error: limit must be in [1, 100]")
        if start is not None and end is not None and end - start > EXECUTIONS_WINDOW_MS:
            return self.error(200, 10001, "The time range between startTime and endTime cannot exceed 7 days")
        if start is None and end is not None:
            start = end - EXECUTIONS_WINDOW_MS
        if end is None and start is not None:
            end = start + EXECUTIONS_WINDOW_MS
        cursor = str(p.get("cursor") or "")
        if cursor and not cursor.isdigit():
            return self.error(200, 10001, f"params error: cursor {cursor[:20]}")
        rows = [
            f for f in self.fills
            if self._mine(p) and p.get("symbol") in (None, f.rec.symbol) and p.get("orderId") in (None, str(f.rec.order_id))
            and (start is None or end is None or start <= f.fill.ts_event // 1_000_000 <= end)
            and (not cursor or f.trade_id < int(cursor)) and not self.beyond_history(f) and not self.listed_late_read(f)
        ]
        rows.sort(key=lambda f: f.trade_id, reverse=True)
        page = rows[:limit]
        more = str(page[-1].trade_id) if len(rows) > limit else ""
        return self._ok({"category": self.category, "list": [self._execution(f) for f in page], "nextPageCursor": more})

    def _wallet(self, p: dict[str, Any]) -> web.Response:
        if p.get("accountType") != "UNIFIED":
            return self.error(200, 10001, "accountType only support UNIFIED")
        return self._ok({"list": [self._account(sorted(self.balances))]})

    # ------------------------------------------------------------------ wire forms

    def _execution(self, f: EmulatedFill) -> dict[str, Any]:
        fill, order = f.fill, f.rec.order
        return {
            "category": self.category,
            "symbol": f.rec.symbol,
            "orderId": str(f.rec.order_id),
            "orderLinkId": order.client_order_id,
            "side": "Buy" if fill.side is OrderSide.BUY else "Sell",
            "orderPrice": "" if math.isnan(order.price) else repr(order.price),
            "orderQty": repr(order.quantity),
            "leavesQty": repr(max(order.quantity - f.filled, 0.0)),
            "orderType": "Market" if order.order_type is OrderType.MARKET else "Limit",
            "execId": str(f.trade_id),
            "execPrice": repr(fill.last_px),
            "execQty": repr(fill.last_qty),
            "execValue": repr(fill.last_qty * fill.last_px),
            "execFee": repr(f.fee),
            "feeCurrency": f.fee_asset or self.instruments[f.rec.symbol].quote,
            "execType": "Trade",
            "execTime": str(fill.ts_event // 1_000_000),
            "isMaker": fill.liquidity == "MAKER",
        }

    def _row(self, rec: EmulatedOrder) -> dict[str, Any]:
        order = rec.order
        trigger, direction = self.conditions.get(order.client_order_id, (0.0, 0))
        booked = [f for f in self.fills if f.rec is rec]
        mine = [f.fill for f in booked]
        filled = sum(f.last_qty for f in mine)
        value = sum(f.last_qty * f.last_px for f in mine)
        return {
            "category": self.category,
            "symbol": rec.symbol,
            "orderId": str(rec.order_id),
            "orderLinkId": order.client_order_id,
            "side": "Buy" if order.side is OrderSide.BUY else "Sell",
            "orderType": "Market" if order.order_type in (OrderType.MARKET, OrderType.STOP_MARKET) else "Limit",
            "price": "0" if math.isnan(order.price) else repr(order.price),
            "qty": repr(order.quantity),
            "timeInForce": "PostOnly" if order.post_only else str(order.tif),
            "orderStatus": "Untriggered" if order.client_order_id in self.untriggered else _STATUS[rec.status],
            "triggerPrice": repr(trigger) if trigger else "0",
            "triggerDirection": direction,
            "triggerBy": "LastPrice" if trigger else "",
            "stopOrderType": "Stop" if trigger else "",
            "cancelType": "CancelByUser" if rec.status is OrderStatus.CANCELED else "UNKNOWN",
            "rejectReason": "EC_NoError" if not rec.reason else rec.reason,
            "cumExecQty": repr(filled),
            "cumExecValue": repr(value),
            "cumExecFee": repr(sum(f.fee for f in booked)),
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

    def is_keepalive(self, text: str) -> bool:
        """``{"op": "ping"}``."""
        try:
            return bool(json.loads(text).get("op") == "ping")
        except (ValueError, AttributeError):
            return False

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
            signed = (
                len(args) == 3
                and args[0] == self.key
                and hmac.compare_digest(str(args[2]), hmac.new(self.secret, f"GET/realtime{args[1]}".encode(), hashlib.sha256).hexdigest())
            )
            expired = signed and int(args[1]) <= self.venue_time() * 1000
            msg = "" if signed and not expired else _AUTH_EXPIRED if expired else "error:signature verification failed"
            if self.auth_errors:
                msg = self.auth_errors.pop(0)
            session.authed = not msg
            return [json.dumps({"success": session.authed, "ret_msg": msg, "op": "auth", "conn_id": conn})]
        if op == "subscribe":
            if not session.authed:
                return [json.dumps({"success": False, "ret_msg": "Request not authorized", "op": "subscribe", "conn_id": conn})]
            session.topics.update(str(a) for a in args)
            return [json.dumps({"success": True, "ret_msg": "", "op": "subscribe", "conn_id": conn})]
        return [json.dumps({"success": False, "ret_msg": f"error:invalid op {op}", "op": op, "conn_id": conn})]


class BybitLinearEmulator(BybitPrivateEmulator):
    """The emulated unified account trading linear perpetuals (see the module docstring); parameters as :class:`AccountEmulator`."""

    category = "linear"
    linear_positions = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Each symbol's ``leverage`` (``/v5/position/list``): the instrument's unless a test sets it.
        self.leverage: dict[str, float] = {s: inst.leverage for s, inst in self.instruments.items()}
        isolated = bool(self.instruments) and all(str(inst.margin_mode) == "isolated" for inst in self.instruments.values())
        #: The account's ``marginMode`` (``GET /v5/account/info``): the instruments' (isolated if all are) unless a test sets it.
        self.margin_mode = "ISOLATED_MARGIN" if isolated else "REGULAR_MARGIN"
        #: Hedge mode: ``/v5/position/list`` lists a ``positionIdx`` 1 and a 2 row per symbol, and orders of ``positionIdx`` 0 are refused.
        self.hedge_mode = False
        #: The account's transaction log (``GET /v5/account/transaction-log`` rows), oldest first: one row per funding settled.
        self.transaction_log: list[dict[str, Any]] = []

    def routes(self) -> dict[tuple[str, str], Any]:
        return super().routes() | {
            ("GET", "/v5/position/list"): self._positions,
            ("GET", "/v5/account/info"): self._account_info,
            ("GET", "/v5/account/transaction-log"): self._transaction_log,
        }

    def settle_funding(self, symbol: str, rate: float, mark: float) -> float:
        """Settle one funding of the position in ``symbol`` at ``mark``; the payment (positive: paid).

        The wallet moves by ``-size * contract_size * mark * rate``; the settlement is listed in
        the transaction log and pushed on ``execution`` (``execType=Funding``) and ``wallet``
        (module docstring). One settled while no client is connected reaches only the log. A
        flat symbol pays nothing: no row, no push.

        Raises
        ------
        ValueError
            A row of the symbol for the same amount is within ``VENUE_FUNDING_MATCH_NS`` of now
            (:meth:`~tradebus.adapters.common.account_emulator.AccountEmulator.refuse_twin_funding`).
        """
        inst = self.instruments[symbol]
        size = self.position(symbol)
        payment = size * inst.contract_size * mark * rate
        if payment == 0.0:
            return 0.0
        now = self.now_ms()
        self.refuse_twin_funding(symbol, -payment, now, "transaction-log row", (
            (r["symbol"], int(r["transactionTime"]), float(r["change"]), r["id"]) for r in self.transaction_log
            if r["type"] == "SETTLEMENT"))
        self.balances[inst.quote] = self.balances.get(inst.quote, 0.0) - payment
        row_id = f"funding-{len(self.transaction_log) + 1}"
        self.transaction_log.append({
            "id": row_id, "symbol": symbol, "category": "linear", "side": "Buy" if size > 0.0 else "Sell",
            "transactionTime": str(now), "type": "SETTLEMENT", "transSubType": "", "qty": repr(abs(size)), "size": repr(size),
            "currency": inst.quote, "tradePrice": repr(mark), "funding": repr(-payment), "fee": "0", "cashFlow": "0",
            "change": repr(-payment), "cashBalance": repr(self.balances[inst.quote]), "feeRate": repr(rate),
            "bonusChange": "", "tradeId": "", "orderId": "", "orderLinkId": "",
        })
        execution = {
            "category": "linear", "symbol": symbol, "orderId": "", "orderLinkId": "", "side": "Buy" if size > 0.0 else "Sell",
            "orderPrice": "0", "orderQty": "0", "orderType": "UNKNOWN", "execId": row_id, "execPrice": repr(mark),
            "execQty": repr(abs(size)), "execValue": repr(abs(size) * mark), "execFee": repr(payment), "feeRate": repr(rate),
            "feeCurrency": inst.quote, "execType": "Funding", "execTime": str(now), "isMaker": False,
        }
        self._push([self._push_frame("execution", [execution])] + self.balance_frames([inst.quote]))
        return payment

    def _transaction_log(self, p: dict[str, Any]) -> web.Response:
        """``GET /v5/account/transaction-log``: one page of the rows of ``category``, ``type`` and ``symbol`` (when given), newest first."""
        if p.get("accountType") not in (None, "UNIFIED"):
            return self.error(200, 10001, "accountType only support UNIFIED")
        try:
            limit = int(p.get("limit") or 20)
            start, end = (int(p[k]) if p.get(k) else None for k in ("startTime", "endTime"))
        except ValueError:
            return self.error(200, 10001, "params error: limit/startTime/endTime")
        if not 1 <= limit <= TRANSACTION_LOG_PAGE:
            return self.error(200, 10001, "params error: limit must be in [1, 50]")
        day = 24 * 3600 * 1000
        if start is not None and end is not None and end - start > EXECUTIONS_WINDOW_MS:
            return self.error(200, 10001, "The time range between startTime and endTime cannot exceed 7 days")
        if start is None and end is None:
            end = self.now_ms()
        start = start if start is not None else end - day  # type: ignore[operator]
        end = end if end is not None else start + day
        cursor = str(p.get("cursor") or "")
        if cursor and not cursor.isdigit():
            return self.error(200, 10001, f"params error: cursor {cursor[:20]}")
        rows = [
            (i, r) for i, r in enumerate(self.transaction_log)
            if p.get("category") in (None, r["category"]) and p.get("type") in (None, r["type"]) and p.get("symbol") in (None, r["symbol"])
            and start <= int(r["transactionTime"]) <= end and (not cursor or i < int(cursor))
        ]
        rows.reverse()
        page = rows[:limit]
        more = str(page[-1][0]) if len(rows) > limit else ""
        return self._ok({"list": [r for _, r in page], "nextPageCursor": more})

    def _account_info(self, p: dict[str, Any]) -> web.Response:
        return self._ok({
            "marginMode": self.margin_mode, "updatedTime": str(self.now_ms()), "unifiedMarginStatus": 5, "dcpStatus": "OFF",
            "timeWindow": 0, "smpGroup": 0, "isMasterTrader": False, "spotHedgingStatus": "OFF",
        })

    def check_order(self, p: dict[str, Any], typ: OrderType) -> web.Response | None:
        if self.hedge_mode or int(p.get("positionIdx") or 0) != 0:
            return self.error(200, 10001, "position idx not match position mode")
        return None

    def direction(self, p: dict[str, Any], symbol: str, trigger: float) -> tuple[int, web.Response | None]:
        """Linear: ``triggerDirection`` as given (1 or 2), refused when the last trade already passed the trigger."""
        refused = self.trigger_by_refused(p)
        if refused is not None:
            return 0, refused
        direction = str(p.get("triggerDirection", ""))
        if direction not in ("1", "2"):
            return 0, self.error(200, 10001, "params error: triggerDirection must be 1 or 2")
        return int(direction), self._passed(symbol, trigger, int(direction))

    def _passed(self, symbol: str, trigger: float, direction: int) -> web.Response | None:
        last = self.last_price.get(symbol)
        if last is not None and direction == 1 and trigger <= last:
            return self.error(200, 110092, f"expect Rising, but trigger_price[{trigger}] <= current[{last}]")
        if last is not None and direction == 2 and trigger >= last:
            return self.error(200, 110093, f"expect Falling, but trigger_price[{trigger}] >= current[{last}]")
        return None

    def trigger_by_refused(self, p: dict[str, Any]) -> web.Response | None:
        """Linear: a ``triggerBy`` other than ``LastPrice``, placed or amended, is refused (the stops here watch trades)."""
        if str(p.get("triggerBy") or "LastPrice") != "LastPrice":
            return self.error(200, 10001, f"params error: triggerBy {p.get('triggerBy')!r} (emulated: LastPrice only)")
        return None

    def check_amended_trigger(self, rec: EmulatedOrder, trigger: float) -> web.Response | None:
        return self._passed(rec.symbol, trigger, self.conditions[rec.order.client_order_id][1])

    def refusal(self, rec: EmulatedOrder) -> web.Response:
        if rec.reason.startswith("reduce_only"):
            return self.error(200, 110017, "Reduce-only rule not satisfied")
        if rec.reason.startswith("post_only"):  # Bybit takes the order, then cancels it
            rec.status, rec.reason = OrderStatus.CANCELED, "EC_PostOnlyWillTakeLiquidity"
            self._push(self.order_frames(rec, None))
            return self._ok({"orderId": str(rec.order_id), "orderLinkId": rec.order.client_order_id})
        return self.error(200, 10001, f"Order rejected: {rec.reason}")

    def _positions(self, p: dict[str, Any]) -> web.Response:
        if not self._mine(p):
            return self.error(200, 10001, f"params error: category {p.get('category')!r}")
        if not p.get("symbol") and not p.get("settleCoin"):
            return self.error(200, 10001, "params error: symbol or settleCoin is required")
        symbols = [s for s in sorted(self.instruments) if p.get("symbol") in (None, s) and p.get("settleCoin") in (None, self.instruments[s].quote)]
        rows = [row for s in symbols for row in self._rows(s, "avgPrice")]
        return self._ok({"category": "linear", "list": rows, "nextPageCursor": ""})

    def _rows(self, symbol: str, entry_key: str) -> list[dict[str, Any]]:
        """The position rows of ``symbol`` in the account's mode."""
        if self.hedge_mode:  # flat on both sides: orders here cannot open any
            return [self._position(symbol, entry_key) | {"positionIdx": idx, "size": "0", "side": ""} for idx in (1, 2)]
        return [self._position(symbol, entry_key)]

    def switch_position_mode(self, hedge: bool) -> None:
        """Switch the account to hedge mode (``True``) or one-way mode while it runs, and push its position rows.

        Assumed shape (Bybit's documentation shows no push on a switch): each symbol's rows of the
        new mode on ``position``, as ``/v5/position/list`` would list them.
        """
        self.hedge_mode = hedge
        for symbol in sorted(self.instruments):
            self._push([self._push_frame("position", self._rows(symbol, "entryPrice"))])

    def _position(self, symbol: str, entry_key: str) -> dict[str, Any]:
        size = self.position(symbol)
        entry = self.entry.get(symbol, 0.0)
        return {
            "category": "linear",
            "symbol": symbol,
            "positionIdx": 0,
            "tradeMode": 0,
            "side": "Buy" if size > 0.0 else "Sell" if size < 0.0 else "",
            "size": repr(abs(size)),
            entry_key: repr(entry),
            "positionValue": repr(abs(size) * entry),
            "leverage": f"{self.leverage[symbol]:g}",
            "unrealisedPnl": "0",
            "positionStatus": "Normal",
            "isReduceOnly": False,
            "updatedTime": str(self.now_ms()),
        }

    def _row(self, rec: EmulatedOrder) -> dict[str, Any]:
        return super()._row(rec) | {"positionIdx": 0, "reduceOnly": rec.order.reduce_only}

    def balance_frames(self, assets: list[str], symbol: str | None = None) -> list[tuple[str, str]]:
        frames = super().balance_frames(assets, symbol)
        if symbol is not None:
            frames.append(self._push_frame("position", [self._position(symbol, "entryPrice")]))
        return frames


class MatchingProtocol(BybitProtocol):
    """The public Bybit stream emulator's dialect, also feeding an account emulator every sent trade and
    best bid and ask: the top of an ``orderbook`` book once a frame updated it."""

    def __init__(self, frames: Any, *, account: AccountEmulator, instrument_ids: dict[str, str]) -> None:
        super().__init__(frames)
        self.account = account
        self.instrument_ids = instrument_ids  # wire symbol -> instrument id

    def on_sent(self, raw: str) -> None:
        super().on_sent(raw)
        if '"topic":"publicTrade.' in raw:
            for t in json.loads(raw).get("data") or []:
                iid = self.instrument_ids.get(str(t.get("s")))
                if iid is not None:
                    ts = int(t["T"]) * 1_000_000
                    self.account.on_trade(Trade(iid, ts, ts, float(t["p"]), float(t["v"]), 1 if t["S"] == "Buy" else -1, str(t["i"])))
            return
        key = self.book_key(raw)
        if key is None:
            return
        iid = self.instrument_ids.get(key.rpartition(".")[2])
        sync = self._parser.books.syncs.get(key)
        if iid is not None and sync is not None and sync.synced:
            self.account.on_book(iid, sync.book)
