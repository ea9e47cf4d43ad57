"""A local Binance spot account for tests and demos: signed REST and the user data stream on 127.0.0.1.

:class:`BinancePrivateEmulator` is the Binance spot dialect of the shared
:class:`~tradebus.adapters.common.account_emulator.AccountEmulator` (matching, balances,
faults, sessions), speaking enough of Binance spot's private API for
:class:`~tradebus.adapters.binance.trading.BinanceTrading` (ccxt, its URLs pointed here) and
:class:`~tradebus.adapters.binance.user_stream.BinanceUserStream` to run unchanged:

* ``POST /api/v3/order``, ``POST /api/v3/order/cancelReplace`` (``STOP_ON_FAILURE``), ``DELETE /api/v3/order``, ``GET /api/v3/order``
  (an order named by ``orderId``, else by the client id the venue calls it now: ``origClientOrderId``, ``cancelOrigClientOrderId``),
  ``GET /api/v3/openOrders``, ``GET /api/v3/myTrades``, ``GET /api/v3/account``: every
  request must carry ``X-MBX-APIKEY`` and a valid HMAC-SHA256 ``signature`` of its
  parameters, and a ``timestamp`` within ``recvWindow``; errors are Binance's
  (``-2015`` bad key, ``-1022`` bad signature, ``-1021`` timestamp, ``-1100`` a number or client
  order id outside Binance's legal range, :data:`DECIMAL` and :data:`CLIENT_ID`, ``-2010`` duplicate
  client order id, refused order, or a stop whose ``stopPrice`` the last trade has reached
  ("Order would trigger immediately."), ``-2011`` unknown order on cancel, ``-2013`` on query,
  ``-2026`` on a query of an order CANCELED or EXPIRED with nothing executed, last updated
  ``archive_after_ms`` ago or more: archived).
  ``GET /api/v3/exchangeInfo`` (public: no key, no signature) lists the account's symbols, ``-1121``
  "Invalid symbol." for a ``symbol`` it does not trade, and the ``rateLimits`` (the order limits counted here).
  Every answer has ``X-MBX-USED-WEIGHT-1M`` (:data:`WEIGHTS` per request, per minute of ``weight_clock``:
  the wall clock unless given; a test that sets :attr:`BinancePrivateEmulator.weight` holds the window
  with a clock of its own, so that no minute turns between its setting and the request it shapes).
* Order limits of the account (:class:`OrderLimits`, :data:`SPOT_ORDER_LIMITS`: spot's ``exchangeInfo`` ``ORDERS``
  limits, 100 per 10 s and 200,000 per UTC day): a new order, a cancel-replace (1 order, counted before its cancel,
  as Binance does) and an OCO list (2) count in windows of ``order_clock`` (the wall clock unless given), told by
  ``X-MBX-ORDER-COUNT-10S`` and ``-1D`` on each accepted one; a request over either is refused unprocessed with HTTP
  ``429`` and ``-1015`` "Too many new orders; current limit is 100 orders per 10 SECOND." (the form users report
  from spot; the day's, "... per 1 DAY.", is inferred from it), without ``Retry-After``, as Binance documents.
  ``GET /api/v3/rateLimit/order`` (weight 40) lists each limit with its current window's ``count``.
  An order's first fill takes 1 off each window's count ("unfilled order count"; Binance may take more for a maker's
  fill or a large one, by amounts it does not document); the headers of an order that fills at once tell the count at
  its placement, without its own fill taken off (Binance takes it off a moment later).
* ``PUT /api/v3/order/amend/keepPriority``: what a user does on the venue's page to cut a working order's quantity
  keeping its priority (tradebus sends none): ``newQty`` below the order's quantity, price and ``orderId`` kept, the
  order renamed ``newClientOrderId`` (a random id when none is sent; the order's own keeps it), an ``executionReport``
  ``x=REPLACED`` pushed (``c`` the new id, ``C`` the one it had, unless a test sets
  :attr:`BinancePrivateEmulator.replaced_names_former_id` off; ``i`` the ``orderId``); the id it had no longer names it.
* ``/ws-api/v3``: the WebSocket API's ``userDataStream.subscribe.signature`` (its ``timestamp`` judged as a REST
  request's: ``-1021``); then every
  order and balance change as ``{"subscriptionId": 0, "event": {...}}``;
  :meth:`BinancePrivateEmulator.terminate_streams` ends the subscriptions with an
  ``eventStreamTerminated`` event (as a revoked key or a logout does), the connection left open.

* ``POST /api/v3/orderList/oco``: an OCO pair of one ``LIMIT_MAKER`` leg and one ``STOP_LOSS`` or
  ``STOP_LOSS_LIMIT`` leg (``aboveType``/``belowType``, ``aboveClientOrderId``/``belowClientOrderId``,
  ``listClientOrderId``; a sell's limit above the last price and its stop below, a buy's the
  other way); both legs share one lock, and when one fills, triggers or is canceled the venue
  cancels the other; the stream reports each leg's ``executionReport`` (``g``: the list's id)
  and a ``listStatus`` event when the list starts and when it ends.
* Trailing stops: a ``STOP_LOSS``/``STOP_LOSS_LIMIT`` with ``trailingDelta`` (an OCO leg's
  ``aboveTrailingDelta``/``belowTrailingDelta``), BIPS within :data:`TRAILING_DELTA_BIPS`
  (``-1013`` "Filter failure: TRAILING_DELTA" otherwise), ``stopPrice`` optional: the price to
  start tracking at (:class:`TrailingStop`, the Spot Trailing Stop FAQ's rules). It is held here,
  out of the matching venue, until a trade triggers it; it then enters the venue as a market
  order (a limit for ``STOP_LOSS_LIMIT``) matched against that trade, its list's limit leg
  canceled. A fill of the limit leg cancels it. A stop without ``stopPrice`` or ``trailingDelta``
  is refused (``-1102``).

Balances are locked per open order as Binance does: a sell locks its base quantity left, a buy with
a price its quote notional left (an OCO pair once, its largest leg); an order for more than is
free (``balance - locked``) is refused with ``-2010`` "Account has insufficient balance for
requested action.", and ``GET /api/v3/account`` and ``outboundAccountPosition`` report ``free``
and ``locked``. A MARKET or STOP_LOSS buy (no price) locks nothing here.

Fees are in the quote asset, or, with ``fee_in = ("BNB", price)``, in BNB while its balance covers
them, and with ``fee_in_received`` a buy's in the base asset it receives, as Binance charges without
BNB (``commissionAsset``/``N``: the asset charged). A maker rebate (a negative fee) is never paid in
BNB: BNB pays fees, so the rebate is credited as without BNB.

Faults are the base's (``RestFault`` defaults to ``POST /api/v3/order``, ``StreamFault`` to
``executionReport`` frames), plus ``ban``: ``418`` with ``Retry-After``, and ``refuse_new`` on
``POST /api/v3/order/cancelReplace``: the order canceled, the new order refused with Binance's error ``code``
(default ``-2010``), answered ``-2021`` as any new order refused after the cancel (with a ``release``, once it is set). A fill racing a request (made
between the request's arrival and its processing, its ``executionReport`` not yet sent when the answer
is): a ``hold`` fault on the request, a public trade (:meth:`~AccountEmulator.on_trade`) while it waits,
and a ``delay`` fault on ``'"x": "TRADE"'`` frames.

Departures from Binance, all documented: a MARKET order is answered ``NEW`` and fills at
the next trade (Binance fills it before answering);
``TAKE_PROFIT`` and ``TAKE_PROFIT_LIMIT`` (triggered by a move toward the order's side) are
refused (``-1116``): ``STOP_LOSS`` and ``STOP_LOSS_LIMIT`` of either side are emulated.

USD-M perpetuals
----------------

A local Binance USD-M futures account for tests and demos: signed REST and the listen-key user stream.

:class:`BinanceFuturesEmulator` is an :class:`~tradebus.adapters.common.account_emulator.AccountEmulator`
speaking enough of Binance USD-M's private API for
:class:`~tradebus.adapters.binance.trading.BinanceFuturesTrading` (ccxt ``binanceusdm``,
its URLs pointed here) and
:class:`~tradebus.adapters.binance.user_stream.BinanceFuturesUserStream`:

* ``POST``/``DELETE``/``GET /fapi/v1/order``, ``GET /fapi/v1/openOrders``,
  ``GET /fapi/v1/userTrades``, ``GET /fapi/v2/balance``, ``GET /fapi/v2/positionRisk``,
  ``GET /fapi/v1/income`` (the funding settled, :meth:`BinanceFuturesEmulator.settle_funding`):
  ``X-MBX-APIKEY`` and a valid HMAC-SHA256 ``signature`` of the query followed by the body,
  a ``timestamp`` within ``recvWindow``; Binance's errors (``-2015`` key, ``-1022``
  signature, ``-1021`` timestamp, ``-1100`` a number or client id written as spot refuses it, ``-4015`` duplicate client id, ``-2022`` reduce-only
  refused, ``-2010`` other refusal, ``-2011`` unknown order on cancel, ``-2013`` on query).
  ``positionRisk`` (v2) lists each symbol's ``leverage`` and ``marginType`` (``cross`` or
  ``isolated``, as Binance writes them), one ``BOTH`` row in one-way mode and a ``LONG`` and a
  ``SHORT`` row in hedge mode (:attr:`BinanceFuturesEmulator.dual_side`).
* ``PUT /fapi/v1/order``: a working ``LIMIT`` order modified in place (``quantity`` and ``price``
  both required, ``-1102`` otherwise; ``-2013`` for an order that is not a working limit order; a
  quantity at or below what it executed cancels it), its ``ORDER_TRADE_UPDATE`` with ``x=AMENDMENT``:
  what a user does on the web page (tradebus modifies no USD-M order in place).
* ``POST``/``PUT /fapi/v1/listenKey`` (key header only) and the stream at ``/ws/<listenKey>``:
  ``ORDER_TRADE_UPDATE`` for every order change, ``ACCOUNT_UPDATE`` (wallet balance and
  position) after every fill; :meth:`BinanceFuturesEmulator.expire_listen_key` lets the key lapse
  (``listenKeyExpired``, carrying the key, as Binance's "User Data Stream Expired" event).
* Conditional orders of the Algo Service: ``POST``/``DELETE``/``GET /fapi/v1/algoOrder``
  (``algoType=CONDITIONAL``, ``type`` ``STOP_MARKET`` or ``STOP``, ``triggerPrice``,
  ``clientAlgoId``, ``workingType`` ``CONTRACT_PRICE`` or ``MARK_PRICE``) and
  ``GET /fapi/v1/openAlgoOrders``. A buy stop triggers when its working price (the last trade,
  or the mark price given by :meth:`BinanceFuturesEmulator.on_mark_price`) rises to
  ``triggerPrice``, a sell when it falls to it; a stop placed where it would trigger at once is
  refused (``-2021`` "Order would immediately trigger."). Once triggered, the order it places
  (``MARKET``, or ``LIMIT`` at ``price``) has a new ``orderId``, the stop's client id, and enters
  the matching venue. ``ALGO_UPDATE`` reports ``NEW``, ``CANCELED``, ``TRIGGERED`` (``ai``: the
  placed order's id), ``REJECTED`` (the placed order refused) and ``FINISHED`` (the placed order
  closed); the placed order's changes come as ``ORDER_TRADE_UPDATE``. Codes not found in the
  documentation: ``-2013`` for a query of an unknown algo order, ``-2011`` for a cancel of one not
  waiting (Binance's general codes).
* Rate limits: every request but a new order (``POST /fapi/v1/order`` or ``/fapi/v1/algoOrder``, IP weight 0) adds 1
  to ``X-MBX-USED-WEIGHT-1M`` (:attr:`BinanceFuturesEmulator.weight`, never reset). New orders are counted against
  the account's order limits as on spot (:class:`OrderLimits`; :data:`FUTURES_ORDER_LIMITS`, those of USD-M's
  ``exchangeInfo``: 300 per 10 s, 1200 per minute), told by ``X-MBX-ORDER-COUNT-10S`` and ``-1M``; Binance's text
  over one: "Too many new orders; current limit is 300 orders per TEN_SECONDS.". ``GET /fapi/v1/rateLimit/order``
  lists them (the account's own: a test may set others), without a count, as Binance's "Query User Rate Limit" does.

The account is one-way USDT-margined: the position of each symbol is the matching venue's
(:meth:`~tradebus.execution.simulated.SimulatedVenue.position`; a reduce-only order that
would not reduce it is refused on arrival, one larger than it is capped at fill time), its
entry price the average of the fills that opened it; the USDT wallet moves by realized PnL
and fees (with ``fee_in``, as on spot, a fee is charged in BNB while the wallet's BNB covers it:
the BNB fee discount). Departures from Binance: MARKET orders are answered ``NEW`` and fill at the next
public trade; no margin check; funding and liquidation only when a test calls
:meth:`BinanceFuturesEmulator.settle_funding` or :meth:`BinanceFuturesEmulator.liquidate`; of the algo orders only ``STOP_MARKET``
and ``STOP`` (``TAKE_PROFIT*`` and ``TRAILING_STOP_MARKET`` are refused, ``-1116``); a stop placed
before any working price is known is accepted; no hedge mode. Faults as the base class.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from tradebus.adapters.binance.emulator import BinanceProtocol
from tradebus.adapters.binance.parse import parse_book_ticker, parse_trade
from tradebus.adapters.common import account_emulator as common
from tradebus.adapters.common.account_emulator import AccountEmulator, EmulatedFill, EmulatedOrder, WsSession
from tradebus.engine.messages import OrderFilled, OrderSide, OrderStatus, OrderType, TimeInForce, Trade
from tradebus.execution.orders import Order

__all__ = [
    "AlgoOrder",
    "BinanceFuturesEmulator",
    "BinancePrivateEmulator",
    "CLIENT_ID",
    "DECIMAL",
    "FUTURES_ORDER_LIMITS",
    "MatchingProtocol",
    "OrderLimits",
    "RestFault",
    "SPOT_ORDER_LIMITS",
    "StreamFault",
    "TRAILING_DELTA_BIPS",
    "TrailingStop",
    "WEIGHTS",
]

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
    "STOP_LOSS_LIMIT": OrderType.STOP_LIMIT,
}
#: Binance's triggers toward the order's side (a buy at a last price <= ``stopPrice``): not emulated.
_TAKE_PROFIT = frozenset({"TAKE_PROFIT", "TAKE_PROFIT_LIMIT"})
#: The ``TRAILING_DELTA`` filter of the emulated symbols (Binance spot BTCUSDT's): BIPS a trailing stop may take.
TRAILING_DELTA_BIPS = (10, 2000)


@dataclass
class TrailingStop:
    """A working Binance trailing stop (``trailingDelta``), per the Spot Trailing Stop FAQ.

    Without a ``stopPrice`` it tracks from the next trade; with one (``activation``) from the first
    trade that meets the stop price condition (a sell ``STOP_LOSS`` at a price <= it, a buy at >=).
    A tracking sell triggers at a trade ``delta`` BIPS or more below the highest trade since it
    started tracking; a buy at one ``delta`` BIPS or more above the lowest.
    """

    sell: bool
    delta: int
    activation: float = math.nan
    #: The highest (sell) or lowest (buy) trade price since it started tracking (NaN: not yet).
    extreme: float = math.nan

    def triggers_at(self, price: float) -> bool:
        """Take the trade at ``price``; whether it triggers the stop."""
        sell = self.sell
        if self.extreme != self.extreme:
            if self.activation == self.activation and not (price <= self.activation if sell else price >= self.activation):
                return False
            self.extreme = price
            return False
        if sell:
            self.extreme = max(self.extreme, price)
            return price <= self.extreme * (10_000 - self.delta) / 10_000
        self.extreme = min(self.extreme, price)
        return price >= self.extreme * (10_000 + self.delta) / 10_000


#: Request weight of each endpoint, as Binance spot documents it.
WEIGHTS = {
    ("POST", "/api/v3/order"): 1,
    ("DELETE", "/api/v3/order"): 1,
    ("GET", "/api/v3/order"): 4,
    ("GET", "/api/v3/openOrders"): 6,
    ("GET", "/api/v3/myTrades"): 20,
    ("GET", "/api/v3/account"): 20,
    ("POST", "/api/v3/orderList/oco"): 1,
    ("PUT", "/api/v3/order/amend/keepPriority"): 4,
    ("GET", "/api/v3/rateLimit/order"): 40,
}


def weight_of(method: str, path: str, query: Any) -> int:
    """Request weight of a spot request (:data:`WEIGHTS`; ``myTrades`` of one ``orderId`` weighs 5)."""
    if path == "/api/v3/myTrades" and "orderId" in query:
        return 5
    return WEIGHTS.get((method, path), 1)


#: Spot's order limits of an account (:class:`OrderLimits`), as its ``exchangeInfo`` lists them (``rateLimitType``
#: ``ORDERS``: ``SECOND`` x 10, limit 100; ``DAY`` x 1, limit 200,000).
SPOT_ORDER_LIMITS = ((10, "10 SECOND", 100, "X-MBX-ORDER-COUNT-10S"), (86_400, "1 DAY", 200_000, "X-MBX-ORDER-COUNT-1D"))


#: Binance's ``interval`` units of a rate limit and their seconds, longest first.
_INTERVALS = (("DAY", 86_400), ("HOUR", 3_600), ("MINUTE", 60), ("SECOND", 1))


class OrderLimits:
    """The order limits of an emulated Binance account (spot's "unfilled order count", USD-M's order rate limit).

    ``limits``: ``(window seconds, its name in Binance's -1015 message, orders it takes, the header telling the
    count)`` each; windows start at multiples of their length on ``order_clock`` (a day's at 00:00 UTC). A request
    placing orders is counted before it is processed; one that would take a window over its limit is refused
    unprocessed (HTTP ``429``, ``-1015``, no ``Retry-After``) and counted in :attr:`order_refusals`; an accepted one's
    answer tells each window's count in its header.
    """

    order_limits: tuple[tuple[int, str, int, str], ...] = ()
    #: The account emulator's error answer (:meth:`~tradebus.adapters.common.account_emulator.AccountEmulator.error`).
    error: Callable[..., web.Response]

    def count_orders(self, order_clock: Callable[[], float]) -> None:
        """Start counting in windows of ``order_clock`` (seconds since the epoch)."""
        #: The seconds whose windows the order limits count in.
        self.order_clock = order_clock
        #: Window seconds -> (the window's index, the orders counted in it); a test sets what another process used.
        self.order_counts: dict[int, tuple[int, int]] = {}
        #: Requests refused for an order limit (``429``, ``-1015``).
        self.order_refusals = 0

    def _counted(self, handler: Callable[[dict[str, Any]], web.Response], orders: int = 1) -> Callable[[dict[str, Any]], web.Response]:
        """``handler`` of a request placing ``orders`` orders, under the account's order limits."""

        def counted(p: dict[str, Any]) -> web.Response:
            now = self.order_clock()
            counts = {}
            for seconds, name, limit, _ in self.order_limits:
                window, count = self.order_counts.get(seconds, (-1, 0))
                counts[seconds] = (int(now // seconds), count if window == int(now // seconds) else 0)
                if counts[seconds][1] + orders > limit:
                    self.order_refusals += 1
                    return self.error(429, -1015, f"Too many new orders; current limit is {limit} orders per {name}.")
            self.order_counts = {seconds: (window, count + orders) for seconds, (window, count) in counts.items()}
            told = {header: str(self.order_counts[seconds][1]) for seconds, _, _, header in self.order_limits}
            response = handler(p)
            if response.status == 200:  # the counts at placement: not less an order that filled at once (Binance's rule)
                response.headers.update(told)
            return response

        return counted

    def order_count_rows(self, counts: bool = True) -> list[dict[str, Any]]:
        """The order limits as Binance lists them (``rateLimitType`` ``ORDERS``, ``interval``, ``intervalNum``, ``limit``),
        each with its current window's ``count`` (``counts``: spot's ``GET /api/v3/rateLimit/order``; else ``exchangeInfo``'s
        and USD-M's ``GET /fapi/v1/rateLimit/order``, which tell none)."""
        now = self.order_clock()
        rows = []
        for seconds, _, limit, _ in self.order_limits:
            unit, length = next((u, n) for u, n in _INTERVALS if seconds % n == 0)
            row: dict[str, Any] = {"rateLimitType": "ORDERS", "interval": unit, "intervalNum": seconds // length, "limit": limit}
            if counts:
                window, count = self.order_counts.get(seconds, (-1, 0))
                row["count"] = count if window == int(now // seconds) else 0
            rows.append(row)
        return rows

    def first_fill(self) -> None:
        """An order filled for the first time: 1 off the count of each current window (none below 0; spot's rule)."""
        now = self.order_clock()
        self.order_counts = {s: (w, max(0, c - 1) if w == int(now // s) else c) for s, (w, c) in self.order_counts.items()}


#: Binance's legal range of a decimal parameter and of a client order id: ``-1100`` "Illegal characters
#: found in parameter" otherwise (an exponent, a sign, a space; an id over 36 characters or with ``#``).
DECIMAL = re.compile(r"^([0-9]{1,20})(\.[0-9]{1,20})?$")
CLIENT_ID = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")
_LEGAL = {
    **dict.fromkeys(
        ("quantity", "price", "stopPrice", "triggerPrice", "abovePrice", "aboveStopPrice", "belowPrice", "belowStopPrice"), DECIMAL
    ),
    **dict.fromkeys(("newClientOrderId", "clientAlgoId", "listClientOrderId", "aboveClientOrderId", "belowClientOrderId"), CLIENT_ID),
}


def _illegal_parameter(account: AccountEmulator, p: dict[str, Any]) -> web.Response | None:
    """Binance's ``-1100`` refusal of a decimal or client order id parameter outside its legal range."""
    for name, value in p.items():
        legal = _LEGAL.get(name)
        if legal is not None and legal.fullmatch(str(value)) is None:
            return account.error(400, -1100, f"Illegal characters found in parameter '{name}'; legal range is '{legal.pattern}'.")
    return None


def _trades_request_error(account: AccountEmulator, p: dict[str, Any], window_ms: int) -> web.Response | None:
    """Binance's refusal of an own-trades request it does not take: ``limit`` over 1000, a time span over ``window_ms``, ``fromId`` with a time."""
    if int(p.get("limit", "500")) > 1000:
        return account.error(400, -1130, "Invalid data sent for a parameter: limit.")
    if "fromId" in p and ("startTime" in p or "endTime" in p) and "orderId" not in p:
        return account.error(400, -1128, "Combination of optional parameters invalid.")
    if "startTime" in p and "endTime" in p and int(p["endTime"]) - int(p["startTime"]) >= window_ms:
        return account.error(400, -1127, f"More than {window_ms // 3_600_000} hours between startTime and endTime.")
    return None


@dataclass
class RestFault(common.RestFault):
    """A REST fault (see :mod:`~tradebus.adapters.common.account_emulator`), by default on order placement."""

    method: str = "POST"
    path: str = "/api/v3/order"


@dataclass
class StreamFault(common.StreamFault):
    """A user-stream fault (see :mod:`~tradebus.adapters.common.account_emulator`), by default on order events."""

    match: str = "executionReport"


def _timestamp_refusal(emulator: AccountEmulator, params: dict[str, Any]) -> str | None:
    """Binance's ``-1021`` message for a signed request (REST or the WebSocket API's) whose ``timestamp`` is over 1 s
    ahead of the venue's time (:attr:`~tradebus.adapters.common.account_emulator.AccountEmulator.venue_time`) or over
    its ``recvWindow`` (5000 ms unless sent) behind it, as Binance words each ("Timestamp for this request was 1000ms
    ahead of the server's time.", "... is outside of the recvWindow."); ``None``: in time."""
    now_ms = emulator.venue_time() * 1000
    sent = int(params.get("timestamp", "0"))
    if sent - now_ms > 1000:
        return "Timestamp for this request was 1000ms ahead of the server's time."
    if now_ms - sent > int(params.get("recvWindow", "5000")):
        return "Timestamp for this request is outside of the recvWindow."
    return None


def _stale_timestamp(emulator: AccountEmulator, params: dict[str, Any]) -> web.Response | None:
    """The REST answer of :func:`_timestamp_refusal` (HTTP 400, ``-1021``); ``None``: in time."""
    refusal = _timestamp_refusal(emulator, params)
    return None if refusal is None else emulator.error(400, -1021, refusal)


class BinancePrivateEmulator(AccountEmulator, OrderLimits):
    """The emulated Binance spot account (see the module docstring).

    Parameters as :class:`AccountEmulator`, and ``weight_clock``: the seconds whose minutes are the
    request-weight windows (default ``time.time``, Binance's wall minutes); ``order_clock``: the seconds whose windows
    the order limits count in (:class:`OrderLimits`; default ``time.time``).
    """

    ws_path = "/ws-api/v3"
    time_path = "/api/v3/time"
    rate_limit_code = -1003
    busy_code = -1008

    order_limits = SPOT_ORDER_LIMITS
    #: The request-weight limit per minute ``exchangeInfo`` lists (Binance spot's; not enforced here).
    request_weight_limit = 6000

    def __init__(
        self, *args: Any, weight_clock: Callable[[], float] = time.time, order_clock: Callable[[], float] = time.time, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.count_orders(order_clock)
        #: Arrival time (``time.monotonic()``) of every authenticated request, in order.
        self.request_times: list[float] = []
        #: ``client order id -> time.time_ns()`` when its POST arrived (latency benchmarks).
        self.placed_ns: dict[str, int] = {}
        #: Request weight used in the current minute (sent as ``X-MBX-USED-WEIGHT-1M``).
        self.weight = 0
        self.weight_clock = weight_clock
        self._minute: int | None = None  # the window ``weight`` counts in (none before the first request)
        self._types: dict[str, str] = {}
        #: The last public trade's price of each instrument (what Binance checks a stop price against).
        self.last_price: dict[str, float] = {}
        #: ``client order id -> (order list id, list client order id, both legs' client ids)`` of OCO legs.
        self.lists: dict[str, tuple[int, str, tuple[str, str]]] = {}
        self._list_ids = 0
        #: ``client order id -> state`` of the trailing stops not triggered yet (kept out of the matching venue).
        self.trailing: dict[str, TrailingStop] = {}
        #: How long after its last update a CANCELED or EXPIRED order with nothing executed is answered by a query;
        #: then archived: ``-2026`` (Binance spot: 90 days, CHANGELOG 2023-03-13).
        self.archive_after_ms = 90 * 24 * 3600 * 1000
        #: ``client order id -> the client order id the venue calls it now`` of the orders renamed by an amend keeping
        #: priority (:meth:`_amend_keep_priority`; :attr:`orders` keeps them under the id they were placed with).
        self.renamed: dict[str, str] = {}
        self._names: dict[str, str] = {}  # the reverse: the id the venue calls an order now -> the id it was placed with
        self._replaced = False  # an amend's executionReport is being pushed (x=REPLACED) ...
        self._replaced_from = ""  # ... of the order the venue called this before
        #: Whether an amend's ``x=REPLACED`` frame names in ``C`` the client id the order had (Binance documents no such
        #: frame: unconfirmed; a test turns it off, ``C`` then empty, and the order is known by its ``orderId`` only).
        self.replaced_names_former_id = True
        #: ``orderId -> client order id`` of every order placed (what :attr:`requests` records for a request naming an
        #: order by its ``orderId``).
        self.placed_ids: dict[str, str] = {}
        self._amends = 0

    def match(self, trade: Trade) -> None:
        """A public trade: its price becomes the instrument's last price, the trailing stops it triggers
        enter the matching venue (an OCO list's other leg canceled), then working orders are matched."""
        self.last_price[trade.instrument_id] = trade.price
        if self.trailing:
            for coid, trail in list(self.trailing.items()):
                rec = self.orders[coid]
                if rec.order.instrument_id == trade.instrument_id and trail.triggers_at(trade.price):
                    self._trigger(rec)
        super().match(trade)

    def _trigger(self, rec: EmulatedOrder) -> None:
        """The trailing stop ``rec`` triggered: its list's limit leg is canceled, and it enters the matching
        venue as the order it becomes (``STOP_LOSS``: a market order; ``STOP_LOSS_LIMIT``: a limit)."""
        stop = rec.order
        coid = stop.client_order_id
        del self.trailing[coid]
        for other in self.lists.get(coid, (0, "", ()))[2]:
            if other != coid:
                self.cancel(self.orders[other])
        typ = OrderType.MARKET if stop.order_type is OrderType.STOP_MARKET else OrderType.LIMIT
        rec.order = Order(coid, "", stop.instrument_id, stop.side, typ, stop.quantity, stop.price, tif=stop.tif)
        self.enter(rec)

    def record(self, order: Order, symbol: str) -> EmulatedOrder:
        rec = super().record(order, symbol)
        self.placed_ids[str(rec.order_id)] = order.client_order_id
        return rec

    def _submit_leg(self, order: Order, symbol: str, p: dict[str, str]) -> EmulatedOrder:
        """Place ``order`` (parameters ``p``): a trailing stop is kept here until it triggers, any other order enters the venue."""
        if "trailingDelta" not in p:
            return self.submit(order, symbol)
        rec = self.record(order, symbol)
        self.trailing[order.client_order_id] = TrailingStop(order.side is OrderSide.SELL, int(p["trailingDelta"]), order.trigger_price)
        self._push(self.order_frames(rec, None))
        return rec

    def cancel(self, rec: EmulatedOrder) -> bool:
        """Cancel a working order; a trailing stop not triggered yet is canceled here (the venue never had it)."""
        if self.trailing.pop(rec.order.client_order_id, None) is None:
            return super().cancel(rec)
        rec.status, rec.update_ms = OrderStatus.CANCELED, max(self.now_ms(), rec.time_ms)
        self._push(self.order_frames(rec, None))
        return True

    def _book_fill(self, rec: EmulatedOrder, fill: OrderFilled) -> None:
        first = rec.filled == 0.0
        super()._book_fill(rec, fill)
        if first:
            self.first_fill()

    def _on_venue_event(self, event: Any) -> None:
        """As the base; a fill of an OCO leg also cancels its trailing stop leg (the venue does not hold that one)."""
        super()._on_venue_event(event)
        rec = self.orders.get(getattr(event, "client_order_id", ""))
        if type(event) is OrderFilled and rec is not None and rec is not self._placing and self.trailing:
            for other in self.lists.get(rec.order.client_order_id, (0, "", ()))[2]:
                if other in self.trailing:
                    self.cancel(self.orders[other])

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
        minute = int(self.weight_clock() // 60)
        if minute != self._minute:
            self._minute, self.weight = minute, 0
        self.weight += weight_of(request.method, request.path, request.query)
        n = len(self.requests)
        response = await super()._rest(request)
        if len(self.requests) > n:
            self.request_times.append(time.monotonic())
        response.headers["X-MBX-USED-WEIGHT-1M"] = str(self.weight)
        return response

    def routes(self) -> dict[tuple[str, str], Any]:
        return {
            ("POST", "/api/v3/order"): self._counted(self._place),
            ("POST", "/api/v3/order/cancelReplace"): self._counted(self._cancel_replace),
            ("POST", "/api/v3/orderList/oco"): self._counted(self._place_oco, 2),
            ("DELETE", "/api/v3/order"): self._cancel,
            ("GET", "/api/v3/order"): self._query,
            ("PUT", "/api/v3/order/amend/keepPriority"): self._amend_keep_priority,
            ("GET", "/api/v3/openOrders"): self._open_orders,
            ("GET", "/api/v3/myTrades"): self._my_trades,
            ("GET", "/api/v3/account"): self._account,
            ("GET", "/api/v3/exchangeInfo"): self._exchange_info,
            ("GET", "/api/v3/rateLimit/order"): self._order_counts,
        }

    def _order_counts(self, p: dict[str, Any]) -> web.Response:
        """``GET /api/v3/rateLimit/order``: each order limit's window, limit and the orders counted in its current window."""
        return self._json(self.order_count_rows())

    def _exchange_info(self, p: dict[str, Any]) -> web.Response:
        """``GET /api/v3/exchangeInfo`` (public) of the account's symbols, or of ``symbol`` (``-1121`` "Invalid symbol." for
        one the account does not trade); the fields the client reads only: the symbols' and ``rateLimits`` (its
        :attr:`order_limits` and :attr:`request_weight_limit`)."""
        symbols = sorted(self.instruments) if "symbol" not in p else [p["symbol"]]
        if any(s not in self.instruments for s in symbols):
            return self.error(400, -1121, "Invalid symbol.")
        rows = [{"symbol": s, "status": "TRADING", "baseAsset": self.instruments[s].base, "quoteAsset": self.instruments[s].quote}
                for s in symbols]
        limits = [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": self.request_weight_limit},
                  *self.order_count_rows(counts=False)]
        return self._json({"timezone": "UTC", "serverTime": int(time.time() * 1000), "rateLimits": limits, "symbols": rows})

    def error(self, status: int, code: int | str, msg: str, headers: dict[str, str] | None = None) -> web.Response:
        return web.Response(status=status, text=json.dumps({"code": int(code), "msg": msg}), content_type="application/json", headers=headers)

    def time_answer(self, ms: int) -> web.Response:
        """``GET /api/v3/time``: ``{"serverTime": ms}``."""
        return web.json_response({"serverTime": ms})

    def _json(self, body: Any) -> web.Response:
        return web.Response(text=json.dumps(body), content_type="application/json")

    def params(self, request: web.Request, body: str) -> dict[str, Any]:
        return dict(parse_qsl(request.query_string)) | dict(parse_qsl(body))

    def malformed(self, params: dict[str, Any]) -> web.Response | None:
        return _illegal_parameter(self, params)

    def client_id(self, params: dict[str, Any]) -> str:
        """The new order's id (a place, a cancel-replace's), the canceled or queried order's (named by its ``orderId``:
        the id it was placed with, even once :attr:`orders` no longer holds it), an OCO list's first leg's."""
        named = params.get("newClientOrderId") or params.get("origClientOrderId") or params.get("aboveClientOrderId")
        return str(named or self.placed_ids.get(str(params.get("orderId") or params.get("cancelOrderId") or ""), ""))

    def authenticate(self, request: web.Request, body: str) -> web.Response | None:
        if request.path == "/api/v3/exchangeInfo":  # public: neither key nor signature
            return None
        if request.headers.get("X-MBX-APIKEY") != self.key:
            return self.error(401, -2015, "Invalid API-key, IP, or permissions for action.")
        params = self.params(request, body)
        sig = params.get("signature", "")
        total = request.rel_url.raw_query_string + body  # Binance signs the query as sent (percent-encoded), then the body
        payload = total.replace(f"&signature={sig}", "").replace(f"signature={sig}", "")
        expected = hmac.new(self.secret, payload.encode(), hashlib.sha256).hexdigest()
        if not sig or not hmac.compare_digest(sig, expected):
            return self.error(400, -1022, "Signature for this request is not valid.")
        refused = _stale_timestamp(self, params)
        if refused is not None:
            return refused
        return None

    def locked(self, asset: str) -> float:
        """What the open orders hold of ``asset`` (module docstring: an OCO pair once, its largest leg)."""
        held: dict[str, float] = {}
        for rec in self.open_orders():
            what, need = self._need(rec.order, rec.symbol, rec.order.quantity - rec.filled)
            if what == asset:
                key = self.lists[rec.order.client_order_id][1] if rec.order.client_order_id in self.lists else rec.order.client_order_id
                held[key] = max(held.get(key, 0.0), need)
        return sum(held.values())

    def free(self, asset: str) -> float:
        """``balance - locked`` of ``asset``."""
        return self.balances.get(asset, 0.0) - self.locked(asset)

    def _need(self, order: Order, symbol: str, quantity: float) -> tuple[str, float]:
        """The asset and amount an order for ``quantity`` locks (a buy without a price: nothing)."""
        inst = self.instruments[symbol]
        if order.side is OrderSide.SELL:
            return inst.base, quantity
        return inst.quote, 0.0 if math.isnan(order.price) else quantity * order.price

    def _insufficient(self, order: Order, symbol: str) -> web.Response | None:
        asset, need = self._need(order, symbol, order.quantity)
        if need > self.free(asset) + 1e-12:
            return self.error(400, -2010, "Account has insufficient balance for requested action.")
        return None

    def _order(self, p: dict[str, str]) -> Order | web.Response:
        """The order of ``POST /api/v3/order`` parameters ``p``, or Binance's refusal of them."""
        inst = self.instruments.get(p.get("symbol", ""))
        if inst is None:
            return self.error(400, -1121, "Invalid symbol.")
        coid = p["newClientOrderId"]
        self.placed_ns.setdefault(coid, time.time_ns())
        if coid in self.orders or coid in self._names:
            return self.error(400, -2010, "Duplicate order sent.")
        typ = p["type"]
        if typ in _TAKE_PROFIT:
            return self.error(400, -1116, f"{typ} is not emulated here (it triggers toward the order's side).")
        kind = _TYPES.get(typ)
        if kind is None:
            return self.error(400, -1116, "Invalid orderType.")
        side = OrderSide.BUY if p["side"] == "BUY" else OrderSide.SELL
        stop, last = float(p.get("stopPrice", "nan")), self.last_price.get(inst.instrument_id, math.nan)
        trailing = "trailingDelta" in p
        if trailing:
            low, high = TRAILING_DELTA_BIPS
            if kind is OrderType.LIMIT or kind is OrderType.MARKET:
                return self.error(400, -1106, "Parameter 'trailingDelta' sent when not required.")
            if not (p["trailingDelta"].isdigit() and low <= int(p["trailingDelta"]) <= high):
                return self.error(400, -1013, "Filter failure: TRAILING_DELTA")
        elif kind is not OrderType.LIMIT and kind is not OrderType.MARKET and stop != stop:
            return self.error(400, -1102, "Mandatory parameter 'stopPrice' was not sent, was empty/null, or malformed.")
        if not trailing and kind is not OrderType.LIMIT and kind is not OrderType.MARKET and (last >= stop if side is OrderSide.BUY else last <= stop):
            # A STOP_LOSS(_LIMIT) triggers a buy at a last price >= stopPrice, a sell at <=: Binance refuses one already there.
            return self.error(400, -2010, "Order would trigger immediately.")
        return Order(
            coid,
            "",
            inst.instrument_id,
            side,
            kind,
            float(p["quantity"]),
            float(p.get("price", "nan")),
            float(p.get("stopPrice", "nan")),
            TimeInForce(p.get("timeInForce", "GTC")),
            post_only=typ == "LIMIT_MAKER",
        )

    def _place(self, p: dict[str, str]) -> web.Response:
        order = self._order(p)
        if isinstance(order, web.Response):
            return order
        refused = self._insufficient(order, p["symbol"])
        if refused is not None:
            return refused
        self._types[order.client_order_id] = p["type"]
        rec = self._submit_leg(order, p["symbol"], p)
        if rec.status is OrderStatus.REJECTED:
            return self.error(400, -2010, f"Order rejected: {rec.reason}")
        return self._json(self._order_json(rec) | {"transactTime": rec.time_ms})

    def _place_oco(self, p: dict[str, str]) -> web.Response:
        """``POST /api/v3/orderList/oco`` (module docstring): both legs, or neither."""
        symbol, side = p.get("symbol", ""), p.get("side", "")
        legs: dict[str, Order] = {}
        types: dict[str, str] = {}
        params: dict[str, dict[str, str]] = {}
        for pos in ("above", "below"):
            typ = p.get(f"{pos}Type", "")
            coid = p.get(f"{pos}ClientOrderId") or f"{pos}-{secrets.token_hex(8)}"
            leg = {"symbol": symbol, "side": side, "quantity": p.get("quantity", "0"), "type": typ, "newClientOrderId": coid}
            for field, key in (("Price", "price"), ("StopPrice", "stopPrice"), ("TrailingDelta", "trailingDelta"), ("TimeInForce", "timeInForce")):
                if f"{pos}{field}" in p:
                    leg[key] = p[f"{pos}{field}"]
            order = self._order(leg)
            if isinstance(order, web.Response):
                return order
            legs[pos], types[coid], params[pos] = order, typ, leg
        limit_pos = "above" if side == "SELL" else "below"
        stop_pos = "below" if limit_pos == "above" else "above"
        if types[legs[limit_pos].client_order_id] != "LIMIT_MAKER" or legs[stop_pos].order_type is OrderType.LIMIT:
            return self.error(400, -1167, f"OCO of a {side}: the {limit_pos} leg must be LIMIT_MAKER, the {stop_pos} leg STOP_LOSS or STOP_LOSS_LIMIT.")
        last = self.last_price.get(legs[limit_pos].instrument_id, math.nan)
        if not (legs[limit_pos].price > last if side == "SELL" else legs[limit_pos].price < last):
            return self.error(400, -2010, "Order would immediately match and take.")
        refused = self._insufficient(legs[limit_pos], symbol)
        if refused is not None:
            return refused
        self._list_ids += 1
        list_coid = p.get("listClientOrderId") or f"list-{secrets.token_hex(8)}"
        ids = (legs["above"].client_order_id, legs["below"].client_order_id)
        for coid in ids:
            self.lists[coid] = (self._list_ids, list_coid, ids)
            self._types[coid] = types[coid]
        self._push(self._list_frames(ids, "EXEC_STARTED", "EXECUTING"))
        recs = []
        for pos in (limit_pos, stop_pos):
            rec = self._submit_leg(legs[pos], symbol, params[pos])
            if rec.status is OrderStatus.REJECTED:
                for done in recs:
                    self.cancel(done)
                self._push(self._list_frames(ids, "ALL_DONE", "REJECT"))
                return self.error(400, -2010, f"Order rejected: {rec.reason}")
            recs.append(rec)
        self.venue.link_oco(list(ids))
        recs.sort(key=lambda r: ids.index(r.order.client_order_id))
        return self._json(
            {"orderListId": self._list_ids, "contingencyType": "OCO", "listStatusType": "EXEC_STARTED", "listOrderStatus": "EXECUTING",
             "listClientOrderId": list_coid, "transactionTime": recs[0].time_ms, "symbol": symbol,
             "orders": [{"symbol": symbol, "orderId": r.order_id, "clientOrderId": r.order.client_order_id} for r in recs],
             "orderReports": [self._order_json(r) | {"transactTime": r.time_ms} for r in recs]}
        )

    def _list_frames(self, ids: tuple[str, str], status_type: str, order_status: str) -> list[tuple[str, str]]:
        list_id, list_coid, _ = self.lists[ids[0]]
        rec = self.orders.get(ids[0])
        symbol = rec.symbol if rec is not None else ""
        now_ms = self.clock.now_ns() // _MS
        event = {"e": "listStatus", "E": now_ms, "s": symbol, "g": list_id, "c": "OCO", "l": status_type, "L": order_status,
                 "r": "NONE", "C": list_coid, "T": now_ms, "O": [{"s": symbol, "i": self.orders[c].order_id if c in self.orders else 0, "c": c} for c in ids]}
        return [("user", json.dumps({"subscriptionId": 0, "event": event}))]

    def _fault(self, method: str, path: str) -> common.RestFault | None:
        fault = super()._fault(method, path)
        if fault is not None and fault.kind == "refuse_new" and path != "/api/v3/order/cancelReplace":
            raise ValueError(f"a 'refuse_new' fault is for POST /api/v3/order/cancelReplace, not {method} {path}")
        return fault  # a refuse_new: the handler refuses (:attr:`firing`)

    def _cancel_replace(self, p: dict[str, str]) -> web.Response:
        """``cancelReplaceMode=STOP_ON_FAILURE``: a failed cancel places nothing (``-2022``); a refused
        new order after the cancel is ``-2021`` (HTTP 409), the cancel standing. The cancel of an order list's leg
        cancels the whole list, as Binance documents ("the same as canceling the entire orderList")."""
        refuse = self.firing if self.firing is not None and self.firing.kind == "refuse_new" else None
        if p.get("cancelReplaceMode") != "STOP_ON_FAILURE":
            return self.error(400, -1102, "Mandatory parameter 'cancelReplaceMode' was not sent or is not STOP_ON_FAILURE here.")
        rec = self.named(p, "cancelOrigClientOrderId", "cancelOrderId")
        if rec is None or rec.status not in common.OPEN or p.get("newClientOrderId", "") in self.orders:
            data = {"cancelResult": "FAILURE", "newOrderResult": "NOT_ATTEMPTED",
                    "cancelResponse": {"code": -2011, "msg": "Unknown order sent."}, "newOrderResponse": None}
            return web.Response(status=400, text=json.dumps({"code": -2022, "msg": "Order cancel-replace failed.", "data": data}),
                                content_type="application/json")
        self._cancel_list(rec)
        canceled = self._order_json(rec)
        placed = self._place(p) if refuse is None else self.error(400, int(refuse.code or -2010), "Order rejected: a refuse_new fault.")
        if placed.status != 200:
            data = {"cancelResult": "SUCCESS", "newOrderResult": "FAILURE", "cancelResponse": canceled,
                    "newOrderResponse": json.loads(placed.text or "{}")}
            return web.Response(status=409, text=json.dumps({"code": -2021, "msg": "Order cancel-replace partially failed.", "data": data}),
                                content_type="application/json")
        return self._json({"cancelResult": "SUCCESS", "newOrderResult": "SUCCESS", "cancelResponse": canceled,
                           "newOrderResponse": json.loads(placed.text or "{}")})

    def named(self, p: dict[str, str], client_id: str = "origClientOrderId", order_id: str = "orderId") -> EmulatedOrder | None:
        """The order a request names: by its venue ``order_id`` parameter when sent, else by the client id the venue calls
        it now (``client_id``; the id it was placed with no longer names an order an amend renamed)."""
        if p.get(order_id):
            return self.find("", str(p[order_id]))
        name = p.get(client_id, "")
        placed = self._names.get(name, name if name not in self.renamed else "")
        return self.orders.get(placed)

    def client_id_of(self, rec: EmulatedOrder) -> str:
        """The client order id the venue calls ``rec`` now (another than it was placed with after an amend renamed it)."""
        coid = rec.order.client_order_id
        return self.renamed.get(coid, coid)

    def _amend_keep_priority(self, p: dict[str, str]) -> web.Response:
        """``PUT /api/v3/order/amend/keepPriority``: a working order's quantity cut to ``newQty`` in place, its price,
        its priority and its ``orderId`` kept; the order called ``newClientOrderId`` from then on, a new random id when
        none is sent (the order's own sent keeps it); an ``executionReport`` with ``x=REPLACED`` (``C``: the id it had).
        ``newQty`` must be above 0 and below the order's quantity; here also above what it executed (Binance's answer
        to an amend at or below it is not emulated): ``-1013`` otherwise, a code not found in the documentation; an
        unknown or closed order ``-2013``; a ``newClientOrderId`` another order has ``-2010`` "Duplicate order sent."."""
        if not p.get("newQty") or not (p.get("orderId") or p.get("origClientOrderId")):
            return self.error(400, -1102, "Mandatory parameter 'newQty' and 'orderId' or 'origClientOrderId' were not sent, were empty/null, or malformed.")
        rec = self.named(p)
        if rec is None or rec.status not in common.OPEN or rec.symbol != p.get("symbol"):
            return self.error(400, -2013, "Order does not exist.")
        qty = float(p["newQty"])
        if not rec.filled < qty < rec.order.quantity:
            return self.error(400, -1013, "newQty must be greater than 0 and less than the order's quantity.")
        old = self.client_id_of(rec)
        self._amends += 1
        new = p.get("newClientOrderId") or f"emuAmendKeepPrio{self._amends:06d}"
        if new != old and (new in self.orders or new in self._names):
            return self.error(400, -2010, "Duplicate order sent.")
        placed = rec.order.client_order_id
        self._names.pop(old, None)
        if new != placed:
            self.renamed[placed], self._names[new] = new, placed
        else:
            self.renamed.pop(placed, None)
        self._replaced_from = old
        self._replaced = True
        try:
            self.amend(rec, qty, None)
        finally:
            self._replaced = False
        amended = self._order_json(rec)
        amended = {"symbol": amended["symbol"], "orderId": rec.order_id, "orderListId": amended["orderListId"],
                   "origClientOrderId": old, "clientOrderId": new, "price": amended["price"], "qty": amended["origQty"],
                   "executedQty": amended["executedQty"], "preventedQty": "0.00000000", "quoteOrderQty": "0.00000000",
                   "cumulativeQuoteQty": amended["cummulativeQuoteQty"], "status": amended["status"],
                   "timeInForce": amended["timeInForce"], "type": amended["type"], "side": amended["side"],
                   "workingTime": amended["workingTime"], "selfTradePreventionMode": amended["selfTradePreventionMode"]}
        return self._json({"transactTime": rec.update_ms, "executionId": self._amends, "amendedOrder": amended})

    def _cancel(self, p: dict[str, str]) -> web.Response:
        rec = self.named(p)
        if rec is None or not self._cancel_list(rec):
            return self.error(400, -2011, "Unknown order sent.")
        return self._json(self._order_json(rec))

    def _cancel_list(self, rec: EmulatedOrder) -> bool:
        """Cancel the working order ``rec`` and, when it is a leg of an order list, every other leg still working:
        Binance cancels the whole list with one leg (a cancel, and a cancel-replace's cancel); whether ``rec`` was."""
        if not self.cancel(rec):
            return False
        for other in self.lists.get(rec.order.client_order_id, (0, "", ()))[2]:
            if self.orders[other].status in common.OPEN:
                self.cancel(self.orders[other])
        return True

    def _query(self, p: dict[str, str]) -> web.Response:
        rec = self.named(p)
        if rec is None:
            return self.error(400, -2013, "Order does not exist.")
        closed = rec.status in (OrderStatus.CANCELED, OrderStatus.EXPIRED) and rec.filled == 0.0
        if closed and max(rec.update_ms, rec.time_ms) <= self.now_ms() - self.archive_after_ms:
            return self.error(400, -2026, "Order was canceled or expired with no executed qty over 90 days ago and has been archived.")
        return self._json(self._order_json(rec))

    def _open_orders(self, p: dict[str, str]) -> web.Response:
        return self._json([self._order_json(r) for r in self.open_orders(p.get("symbol"))])

    def _my_trades(self, p: dict[str, str]) -> web.Response:
        refused = _trades_request_error(self, p, 24 * 3600 * 1000)
        if refused is not None:
            return refused
        rows = self.trade_list(p.get("symbol", ""), p.get("orderId"), p.get("fromId"), p.get("startTime"), p.get("endTime"), int(p.get("limit", "500")))
        return self._json([self._trade_row(f) for f in rows])

    def _account(self, p: dict[str, str]) -> web.Response:
        balances = [{"asset": a, "free": f"{self.free(a):.8f}", "locked": f"{self.locked(a):.8f}"} for a in sorted(self.balances)]
        return self._json({"uid": 354937868, "canTrade": True, "accountType": "SPOT", "updateTime": self.clock.now_ns() // _MS, "balances": balances})

    # ------------------------------------------------------------------ wire forms

    def _order_json(self, rec: EmulatedOrder) -> dict[str, Any]:
        order = rec.order
        quote = sum(f.last_qty * f.last_px for f in rec.fills)
        return {
            "symbol": rec.symbol,
            "orderId": rec.order_id,
            "orderListId": self.lists[order.client_order_id][0] if order.client_order_id in self.lists else -1,
            "clientOrderId": self.client_id_of(rec),
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
            "commission": f"{f.fee:.8f}",
            "commissionAsset": f.fee_asset or self.instruments[f.rec.symbol].quote,
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
            "c": self.client_id_of(rec),
            "S": "BUY" if order.side is OrderSide.BUY else "SELL",
            "o": self._types[order.client_order_id],
            "f": str(order.tif),
            "q": f"{order.quantity:.8f}",
            "p": f"{0.0 if math.isnan(order.price) else order.price:.8f}",
            "P": f"{0.0 if math.isnan(order.trigger_price) else order.trigger_price:.8f}",
            "C": self._replaced_from if self._replaced and self.replaced_names_former_id else "",
            "x": "TRADE" if f is not None else "REPLACED" if self._replaced else status,
            "X": status,
            "r": rec.reason or "NONE",
            "i": rec.order_id,
            "l": f"{f.last_qty if f else 0.0:.8f}",
            "z": f"{rec.filled:.8f}",
            "L": f"{f.last_px if f else 0.0:.8f}",
            "n": f"{fill.fee if fill is not None else 0.0:.8f}",
            "N": (fill.fee_asset or self.instruments[rec.symbol].quote) if fill is not None else None,
            "T": (f.ts_event // _MS) if f else now_ms,
            "t": fill.trade_id if fill is not None else -1,
            "w": status == "NEW",
            "m": bool(f and f.liquidity == "MAKER"),
            "O": rec.time_ms,
            "g": self.lists[order.client_order_id][0] if order.client_order_id in self.lists else -1,
        }
        frames = [("user", json.dumps({"subscriptionId": 0, "event": event}))]
        legs = self.lists.get(order.client_order_id, (0, "", ()))[2]
        if legs and fill is None and rec.status not in common.OPEN and all(c in self.orders and self.orders[c].status not in common.OPEN for c in legs):
            frames += self._list_frames(legs, "ALL_DONE", "ALL_DONE")
        return frames

    def balance_frames(self, assets: list[str], symbol: str | None = None) -> list[tuple[str, str]]:
        now_ms = self.clock.now_ns() // _MS
        rows = [{"a": a, "f": f"{self.free(a):.8f}", "l": f"{self.locked(a):.8f}"} for a in assets]
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
        refusal = _timestamp_refusal(self, params)
        if refusal is not None:
            return [json.dumps({"id": rid, "status": 400, "error": {"code": -1021, "msg": refusal}})]
        session.authed = True
        session.topics.add("user")
        return [json.dumps({"id": rid, "status": 200, "result": {"subscriptionId": 0}})]

    def terminate_streams(self) -> None:
        """End every connection's subscription as Binance does (``eventStreamTerminated``; the connection stays open)."""
        frame = json.dumps({"subscriptionId": 0, "event": {"e": "eventStreamTerminated", "E": self.now_ms()}})
        for session in self.sessions:
            if "user" in session.topics:
                session.send(frame)
                session.topics.discard("user")


class MatchingProtocol(BinanceProtocol):
    """The public stream emulator's Binance protocol, also feeding an account emulator every sent trade
    and best bid and ask: each ``bookTicker``, and the top of the depth book once a diff is applied to it."""

    def __init__(self, *args: Any, account: AccountEmulator, instrument_ids: dict[str, str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.account = account
        self.instrument_ids = instrument_ids  # stream symbol (lower case) -> instrument id

    def on_sent(self, raw: str) -> None:
        applied = self._applied
        super().on_sent(raw)
        if '@trade"' in raw:
            iid = self._instrument_of(raw, "@trade")
            trade = None if iid is None else parse_trade(raw, 0, iid)
            if iid is not None and trade is not None:
                self.account.on_trade(Trade(iid, trade.ts_event, trade.ts_event, trade.price, trade.size, trade.aggressor, trade.trade_id))
        elif '@bookTicker"' in raw:
            iid = self._instrument_of(raw, "@bookTicker")
            if iid is not None:
                self.account.on_quote(parse_book_ticker(raw, 0, iid))
        elif self._applied > applied:
            iid = self._instrument_of(raw, "@depth")
            if iid is not None:
                self.account.on_book(iid, self._book)

    def _instrument_of(self, raw: str, stream: str) -> str | None:
        """The instrument id of a combined-stream frame's ``<symbol><stream>`` (``None``: not one the account trades)."""
        return self.instrument_ids.get(raw[raw.find('"stream":"') + 10 : raw.find(stream)])


_UNSIGNED = frozenset({"/fapi/v1/listenKey"})
#: The USD-M requests that place an order: counted against the order limits, IP weight 0.
_NEW_ORDERS = frozenset({("POST", "/fapi/v1/order"), ("POST", "/fapi/v1/algoOrder")})
#: USD-M's order limits of an account (:class:`OrderLimits`), as its ``exchangeInfo`` lists them.
FUTURES_ORDER_LIMITS = ((10, "TEN_SECONDS", 300, "X-MBX-ORDER-COUNT-10S"), (60, "MINUTE", 1200, "X-MBX-ORDER-COUNT-1M"))


@dataclass
class AlgoOrder:
    """One conditional order of the emulated USD-M account (``rec``: its record, the stop until triggered, then the order it placed)."""

    rec: EmulatedOrder
    algo_id: int
    type: str
    working_type: str
    #: ``NEW``, ``CANCELED``, ``TRIGGERED``, ``REJECTED`` or ``FINISHED``.
    status: str = "NEW"
    #: The ``orderId`` of the order placed once triggered (0: none yet).
    actual_id: int = 0
    trigger_price: float = math.nan
    trigger_ms: int = 0
    reason: str = ""


def _num(value: float) -> str:
    return f"{0.0 if math.isnan(value) else value:.8f}"


class BinanceFuturesEmulator(AccountEmulator, OrderLimits):
    """The emulated USD-M account (see the module docstring); parameters as :class:`AccountEmulator`, and
    ``order_clock`` as :class:`BinancePrivateEmulator`'s."""

    ws_path = "/ws/{listen_key}"
    time_path = "/fapi/v1/time"
    rate_limit_code = -1003
    busy_code = -1008
    linear_positions = True
    order_limits = FUTURES_ORDER_LIMITS

    def __init__(self, *args: Any, order_clock: Callable[[], float] = time.time, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: The active listen key ("" until one is asked for).
        self.listen_key = ""
        self.weight = 0
        self.count_orders(order_clock)
        #: ``clientAlgoId -> `` the conditional order's state (its record is in :attr:`orders` under that id).
        self.algos: dict[str, AlgoOrder] = {}
        self._algo_ids = 0
        #: The last public trade's price and the last mark price of each symbol (the two working prices).
        self.last_price: dict[str, float] = {}
        self.mark_price: dict[str, float] = {}
        self._symbols = {inst.instrument_id: symbol for symbol, inst in self.instruments.items()}
        #: The account's leverage and margin type of each symbol (``positionRisk``): the instrument's unless a test sets them.
        self.leverage: dict[str, float] = {s: inst.leverage for s, inst in self.instruments.items()}
        self.margin_type: dict[str, str] = {s: str(inst.margin_mode) for s, inst in self.instruments.items()}
        #: Hedge mode (``dualSidePosition``): ``positionRisk`` lists a ``LONG`` and a ``SHORT`` row per symbol.
        self.dual_side = False
        self._liquidation_trades = 0
        #: The account's income history (``GET /fapi/v1/income`` rows), oldest first: one row per funding settled.
        self.income: list[dict[str, Any]] = []
        self._amendment = False  # an order's frames now are of its modification (execution type AMENDMENT)

    @property
    def ws_url(self) -> str:
        """Base URL of the user stream (the client appends ``/ws/<listenKey>``)."""
        return f"ws://127.0.0.1:{self.port}"

    # ------------------------------------------------------------------ REST dialect

    def routes(self) -> dict[tuple[str, str], Any]:
        return {
            ("POST", "/fapi/v1/order"): self._counted(self._place),
            ("PUT", "/fapi/v1/order"): self._modify,
            ("DELETE", "/fapi/v1/order"): self._cancel,
            ("GET", "/fapi/v1/order"): self._query,
            ("GET", "/fapi/v1/openOrders"): self._open,
            ("GET", "/fapi/v1/userTrades"): self._trades,
            ("GET", "/fapi/v2/balance"): self._balance,
            ("GET", "/fapi/v2/positionRisk"): self._position_risk,
            ("POST", "/fapi/v1/listenKey"): self._new_listen_key,
            ("PUT", "/fapi/v1/listenKey"): self._keep_listen_key,
            ("POST", "/fapi/v1/algoOrder"): self._counted(self._place_algo),
            ("DELETE", "/fapi/v1/algoOrder"): self._cancel_algo,
            ("GET", "/fapi/v1/algoOrder"): self._query_algo,
            ("GET", "/fapi/v1/openAlgoOrders"): self._open_algos,
            ("GET", "/fapi/v1/income"): self._income,
            ("GET", "/fapi/v1/rateLimit/order"): self._order_limits,
        }

    def _order_limits(self, p: dict[str, Any]) -> web.Response:
        """``GET /fapi/v1/rateLimit/order`` (signed, weight 1): the account's order limits, without counts."""
        return self._json(self.order_count_rows(counts=False))

    def error(self, status: int, code: int | str, msg: str, headers: dict[str, str] | None = None) -> web.Response:
        headers = {"X-MBX-USED-WEIGHT-1M": str(self.weight), **(headers or {})}
        return web.json_response({"code": int(code), "msg": msg}, status=status, headers=headers)

    def time_answer(self, ms: int) -> web.Response:
        """``GET /fapi/v1/time``: ``{"serverTime": ms}``."""
        return web.json_response({"serverTime": ms})

    def _json(self, body: Any) -> web.Response:
        return web.json_response(body, headers={"X-MBX-USED-WEIGHT-1M": str(self.weight)})

    def authenticate(self, request: web.Request, body: str) -> web.Response | None:
        if (request.method, request.path) not in _NEW_ORDERS:
            self.weight += 1
        if request.headers.get("X-MBX-APIKEY") != self.key:
            return self.error(401, -2015, "Invalid API-key, IP, or permissions for action.")
        if request.path in _UNSIGNED:
            return None
        params = dict(parse_qsl(request.query_string)) | dict(parse_qsl(body))
        sig = params.get("signature", "")
        total = request.rel_url.raw_query_string + body
        payload = total.replace(f"&signature={sig}", "").replace(f"signature={sig}", "")
        expected = hmac.new(self.secret, payload.encode(), hashlib.sha256).hexdigest()
        if not sig or not hmac.compare_digest(sig, expected):
            return self.error(400, -1022, "Signature for this request is not valid.")
        refused = _stale_timestamp(self, params)
        if refused is not None:
            return refused
        return None

    def params(self, request: web.Request, body: str) -> dict[str, Any]:
        return dict(parse_qsl(request.query_string)) | dict(parse_qsl(body))

    def malformed(self, params: dict[str, Any]) -> web.Response | None:
        return _illegal_parameter(self, params)

    def client_id(self, params: dict[str, Any]) -> str:
        return str(params.get("newClientOrderId") or params.get("origClientOrderId") or params.get("clientAlgoId") or "")

    def _place(self, p: dict[str, Any]) -> web.Response:
        symbol = str(p.get("symbol", ""))
        inst = self.instruments.get(symbol)
        if inst is None:
            return self.error(400, -1121, "Invalid symbol.")
        coid = str(p.get("newClientOrderId", ""))
        if coid in self.orders:
            return self.error(400, -4015, "Client order id is not valid.")  # Binance: duplicate id
        if p.get("positionSide", "BOTH") != "BOTH":
            return self.error(400, -4061, "Order's position side does not match user's setting.")
        typ = {"MARKET": OrderType.MARKET, "LIMIT": OrderType.LIMIT}.get(str(p.get("type")))
        if typ is None:
            return self.error(400, -1116, "Invalid orderType.")
        tif = str(p.get("timeInForce", "GTC"))
        order = Order(
            coid,
            "",
            inst.instrument_id,
            OrderSide.BUY if p.get("side") == "BUY" else OrderSide.SELL,
            typ,
            float(p["quantity"]),
            float(p["price"]) if typ is OrderType.LIMIT else math.nan,
            tif=TimeInForce.GTC if tif == "GTX" else TimeInForce(tif),
            post_only=tif == "GTX",
            reduce_only=str(p.get("reduceOnly", "false")).lower() == "true",
        )
        rec = self.submit(order, symbol)
        if rec.status is OrderStatus.REJECTED:
            if rec.reason.startswith("reduce_only"):
                return self.error(400, -2022, "ReduceOnly Order is rejected.")
            return self.error(400, -2010, f"Order rejected: {rec.reason}")
        return self._json(self._order_json(rec))

    def _placed(self, rec: EmulatedOrder | None) -> EmulatedOrder | None:
        """``rec`` if it is an order of the matching engine (not a conditional order that has placed none)."""
        if rec is None:
            return None
        algo = self.algos.get(rec.order.client_order_id)
        return rec if algo is None or algo.actual_id else None

    def _cancel(self, p: dict[str, Any]) -> web.Response:
        rec = self._placed(self.find(str(p.get("origClientOrderId") or ""), str(p.get("orderId") or "")))
        if rec is None or not self.cancel(rec):
            return self.error(400, -2011, "Unknown order sent.")
        return self._json(self._order_json(rec))

    def _query(self, p: dict[str, Any]) -> web.Response:
        rec = self._placed(self.find(str(p.get("origClientOrderId") or ""), str(p.get("orderId") or "")))
        if rec is None or rec.status is OrderStatus.REJECTED:
            return self.error(400, -2013, "Order does not exist.")
        return self._json(self._order_json(rec))

    def _modify(self, p: dict[str, Any]) -> web.Response:
        """``PUT /fapi/v1/order``: a working LIMIT order's new ``quantity`` and ``price`` (both sent), in place; a
        quantity at or below what it executed cancels it, as Binance does."""
        for name in ("symbol", "side", "quantity", "price"):
            if not p.get(name):
                return self.error(400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")
        rec = self._placed(self.find(str(p.get("origClientOrderId") or ""), str(p.get("orderId") or "")))
        if rec is None or rec.status not in common.OPEN or rec.order.order_type is not OrderType.LIMIT:
            return self.error(400, -2013, "Order does not exist.")
        quantity, price = float(p["quantity"]), float(p["price"])
        if quantity <= rec.filled:
            self.cancel(rec)
            return self._json(self._order_json(rec))
        self._amendment = True
        try:
            self.amend(rec, quantity, price)
        finally:
            self._amendment = False
        return self._json(self._order_json(rec))

    def _open(self, p: dict[str, Any]) -> web.Response:
        return self._json([self._order_json(r) for r in self.open_orders(p.get("symbol")) if self._placed(r) is not None])

    # ------------------------------------------------------------------ algo (conditional) orders

    def _place_algo(self, p: dict[str, Any]) -> web.Response:
        symbol = str(p.get("symbol", ""))
        inst = self.instruments.get(symbol)
        if inst is None:
            return self.error(400, -1121, "Invalid symbol.")
        coid = str(p.get("clientAlgoId") or f"algo{self._algo_ids + 1}")
        if coid in self.orders:
            return self.error(400, -4015, "Client order id is not valid.")
        if p.get("algoType") != "CONDITIONAL":
            return self.error(400, -1102, "Mandatory parameter 'algoType' was not sent, was empty/null, or malformed.")
        if p.get("positionSide", "BOTH") != "BOTH":
            return self.error(400, -4061, "Order's position side does not match user's setting.")
        typ = str(p.get("type", ""))
        if typ not in ("STOP_MARKET", "STOP"):
            return self.error(400, -1116, f"Invalid orderType (emulated: STOP_MARKET and STOP only, not {typ}).")
        working = str(p.get("workingType", "CONTRACT_PRICE"))
        if working not in ("CONTRACT_PRICE", "MARK_PRICE"):
            return self.error(400, -1115, "Invalid workingType.")
        try:
            trigger, qty = float(p["triggerPrice"]), float(p["quantity"])
            price = float(p["price"]) if typ == "STOP" else math.nan
        except (KeyError, ValueError):
            return self.error(400, -1102, "Mandatory parameter 'triggerPrice', 'quantity' or 'price' was not sent, was empty/null, or malformed.")
        if not (trigger > 0.0 and qty > 0.0 and (typ == "STOP_MARKET" or price > 0.0)):
            return self.error(400, -1102, "A parameter was not valid: triggerPrice, quantity or price.")
        side = OrderSide.BUY if p.get("side") == "BUY" else OrderSide.SELL
        now = (self.mark_price if working == "MARK_PRICE" else self.last_price).get(symbol, math.nan)
        if now >= trigger if side is OrderSide.BUY else now <= trigger:
            return self.error(400, -2021, "Order would immediately trigger.")
        reduce_only = str(p.get("reduceOnly", "false")).lower() == "true"
        kind = OrderType.STOP_MARKET if typ == "STOP_MARKET" else OrderType.STOP_LIMIT
        tif = TimeInForce(str(p.get("timeInForce", "GTC")))
        order = Order(coid, "", inst.instrument_id, side, kind, qty, price, trigger, tif, reduce_only=reduce_only)
        rec = self.record(order, symbol)
        self._algo_ids += 1
        algo = self.algos[coid] = AlgoOrder(rec, self._algo_ids, typ, working, trigger_price=trigger)
        self._push(self._algo_frames(algo))
        return self._json(self._algo_json(algo))

    def _find_algo(self, p: dict[str, Any]) -> AlgoOrder | None:
        coid, algo_id = str(p.get("clientAlgoId") or ""), str(p.get("algoId") or "")
        if coid:
            return self.algos.get(coid)
        return next((a for a in self.algos.values() if str(a.algo_id) == algo_id), None)

    def _cancel_algo(self, p: dict[str, Any]) -> web.Response:
        algo = self._find_algo(p)
        if algo is None or algo.status != "NEW":
            return self.error(400, -2011, "Unknown order sent.")
        algo.status, algo.rec.status, algo.rec.update_ms = "CANCELED", OrderStatus.CANCELED, self.now_ms()
        self._push(self._algo_frames(algo))
        return self._json({"algoId": algo.algo_id, "clientAlgoId": algo.rec.order.client_order_id, "code": "200", "msg": "success"})

    def _query_algo(self, p: dict[str, Any]) -> web.Response:
        algo = self._find_algo(p)
        if algo is None:
            return self.error(400, -2013, "Order does not exist.")
        return self._json(self._algo_json(algo))

    def _open_algos(self, p: dict[str, Any]) -> web.Response:
        rows = [a for a in self.algos.values() if a.status == "NEW" and p.get("symbol") in (None, a.rec.symbol)]
        return self._json([self._algo_json(a) for a in rows])

    def match(self, trade: Trade) -> None:
        """A public trade: the waiting stops it reaches trigger first (``CONTRACT_PRICE``), then it is matched."""
        symbol = self._symbols.get(trade.instrument_id)
        if symbol is not None:
            self.last_price[symbol] = trade.price
            self._trigger_at(symbol, "CONTRACT_PRICE", trade.price)
        super().match(trade)

    def on_mark_price(self, instrument_id: str, price: float, ts_ns: int) -> None:
        """A mark price update: the waiting ``MARK_PRICE`` stops it reaches trigger (their orders fill on later trades)."""
        symbol = self._symbols[instrument_id]
        self.mark_price[symbol] = price
        self.clock.advance_to(max(ts_ns, self.tick()))
        self._trigger_at(symbol, "MARK_PRICE", price)

    def _trigger_at(self, symbol: str, working: str, price: float) -> None:
        for algo in sorted(self.algos.values(), key=lambda a: a.algo_id):
            stop = algo.rec.order
            if algo.status != "NEW" or algo.working_type != working or algo.rec.symbol != symbol:
                continue
            if price >= stop.trigger_price if stop.side is OrderSide.BUY else price <= stop.trigger_price:
                self._trigger(algo)

    def _trigger(self, algo: AlgoOrder) -> None:
        """``algo`` reached its trigger: ``TRIGGERED``, and the order it places (a new ``orderId``, the stop's client id) enters the matching venue."""
        rec, stop = algo.rec, algo.rec.order
        self._order_ids += 1
        rec.order_id = algo.actual_id = self._order_ids
        rec.update_ms = algo.trigger_ms = self.now_ms()
        algo.status = "TRIGGERED"
        self._push(self._algo_frames(algo))
        typ = OrderType.MARKET if stop.order_type is OrderType.STOP_MARKET else OrderType.LIMIT
        rec.order = Order(stop.client_order_id, "", stop.instrument_id, stop.side, typ, stop.quantity, stop.price, tif=stop.tif, reduce_only=stop.reduce_only)
        self.enter(rec)
        if rec.status is OrderStatus.REJECTED:
            algo.status, algo.reason = "REJECTED", rec.reason
            self._push(self._algo_frames(algo))

    def _algo_json(self, algo: AlgoOrder) -> dict[str, Any]:
        rec = algo.rec
        order = rec.order
        quote = sum(f.last_qty * f.last_px for f in rec.fills)
        return {
            "algoId": algo.algo_id, "clientAlgoId": order.client_order_id, "algoType": "CONDITIONAL", "orderType": algo.type,
            "symbol": rec.symbol, "side": "BUY" if order.side is OrderSide.BUY else "SELL", "positionSide": "BOTH",
            "timeInForce": str(order.tif), "quantity": _num(order.quantity), "algoStatus": algo.status,
            "actualOrderId": str(algo.actual_id or ""), "actualPrice": _num(quote / rec.filled if rec.filled else 0.0),
            "triggerPrice": _num(algo.trigger_price), "price": _num(order.price), "icebergQuantity": None,
            "selfTradePreventionMode": "EXPIRE_MAKER", "workingType": algo.working_type, "priceMatch": "NONE",
            "closePosition": False, "priceProtect": False, "reduceOnly": order.reduce_only,
            "createTime": rec.time_ms, "updateTime": max(rec.update_ms, rec.time_ms), "triggerTime": algo.trigger_ms, "goodTillDate": 0,
        }

    def _algo_frames(self, algo: AlgoOrder) -> list[tuple[str, str]]:
        rec = algo.rec
        order = rec.order
        now = max(self.now_ms(), rec.time_ms)
        o = {
            "caid": order.client_order_id, "aid": algo.algo_id, "at": "CONDITIONAL", "o": algo.type, "s": rec.symbol,
            "S": "BUY" if order.side is OrderSide.BUY else "SELL", "ps": "BOTH", "f": str(order.tif), "q": _num(order.quantity),
            "X": algo.status, "ai": str(algo.actual_id or ""), "ap": _num(0.0), "aq": _num(rec.filled),
            "act": ("MARKET" if algo.type == "STOP_MARKET" else "LIMIT") if algo.actual_id else "0",
            "tp": _num(algo.trigger_price), "p": _num(order.price), "V": "EXPIRE_MAKER", "wt": algo.working_type, "pm": "NONE",
            "cp": False, "pP": False, "R": order.reduce_only, "tt": algo.trigger_ms, "gtd": 0,
        }
        if algo.reason:
            o["rm"] = algo.reason
        return [("algo", json.dumps({"e": "ALGO_UPDATE", "T": now, "E": now, "o": o}))]

    def _trades(self, p: dict[str, Any]) -> web.Response:
        refused = _trades_request_error(self, p, 7 * 24 * 3600 * 1000)
        if refused is not None:
            return refused
        rows = self.trade_list(str(p.get("symbol", "")), p.get("orderId"), p.get("fromId"), p.get("startTime"), p.get("endTime"), int(p.get("limit", "500")))
        return self._json([self._trade_row(f) for f in rows])

    def _balance(self, p: dict[str, Any]) -> web.Response:
        now = self.now_ms()
        return self._json(
            [
                {"accountAlias": "tbEmu", "asset": a, "balance": _num(v), "crossWalletBalance": _num(v), "crossUnPnl": "0.00000000",
                 "availableBalance": _num(v), "maxWithdrawAmount": _num(v), "marginAvailable": True, "updateTime": now}
                for a, v in sorted(self.balances.items())
            ]
        )

    def _position_risk(self, p: dict[str, Any]) -> web.Response:
        now = self.now_ms()
        sides = ("LONG", "SHORT") if self.dual_side else ("BOTH",)
        return self._json(
            [
                {"symbol": s, "positionAmt": _num(self.position(s) if side == "BOTH" else 0.0),
                 "entryPrice": _num(self.entry.get(s, 0.0) if side == "BOTH" else 0.0), "markPrice": "0",
                 "unRealizedProfit": "0", "liquidationPrice": "0", "leverage": f"{self.leverage[s]:g}",
                 "marginType": self.margin_type[s], "positionSide": side, "updateTime": now}
                for s in sorted(self.instruments)
                for side in sides
            ]
        )

    def _income(self, p: dict[str, Any]) -> web.Response:
        """``GET /fapi/v1/income``: the rows of ``incomeType`` and ``symbol`` (when given) with ``time`` within
        ``startTime``..``endTime`` (inclusive; neither given: the last 7 days), oldest first, the first ``limit``
        (default 100, at most 1000)."""
        limit = int(p.get("limit", "100"))
        if not 1 <= limit <= 1000:
            return self.error(400, -1130, "Data sent for parameter 'limit' is not valid.")
        start, end = p.get("startTime"), p.get("endTime")
        lo = int(start) if start is not None else (-1 if end is not None else self.now_ms() - 7 * 24 * 3600 * 1000)
        hi = int(end) if end is not None else 2**62
        rows = [
            r for r in self.income
            if lo <= r["time"] <= hi and p.get("incomeType", r["incomeType"]) == r["incomeType"] and p.get("symbol", r["symbol"]) == r["symbol"]
        ]
        return self._json(rows[:limit])

    def _new_listen_key(self, p: dict[str, Any]) -> web.Response:
        self.listen_key = self.listen_key or secrets.token_hex(32)
        return self._json({"listenKey": self.listen_key})

    def expire_listen_key(self) -> str:
        """Let the listen key lapse: push ``{"e": "listenKeyExpired", "E": "<ms>", "listenKey": <key>}`` to every
        connection and forget the key (the next ``POST`` makes another; the old one is refused); return it."""
        key, self.listen_key = self.listen_key, ""
        frame = json.dumps({"e": "listenKeyExpired", "E": str(self.now_ms()), "listenKey": key})
        for session in self.sessions:
            session.send(frame)
        return key

    def _keep_listen_key(self, p: dict[str, Any]) -> web.Response:
        if p.get("listenKey") != self.listen_key or not self.listen_key:
            return self.error(400, -1125, "This listenKey does not exist.")
        return self._json({})

    # ------------------------------------------------------------------ venue-side events

    def settle_funding(self, symbol: str, rate: float, mark: float) -> float:
        """Settle one funding of the position in ``symbol`` at ``mark``; the payment (positive: paid).

        The wallet moves by ``-position * contract_size * mark * rate``, pushed as Binance documents
        it for a cross position: ``ACCOUNT_UPDATE`` with reason ``m=FUNDING_FEE``, the asset's balance
        only (``bc`` the change) and no ``P``, so no symbol (pushed so for an isolated position too,
        where Binance adds its ``P`` row); and listed in the income history (``FUNDING_FEE``,
        ``income`` the change, ``time`` the event's ``T``, a new ``tranId``). A settlement while no
        client is connected reaches only the history, as on Binance. A flat symbol pays nothing: no
        event, no row. Assumed, not documented: one update per symbol settled (``bc`` its payment
        alone, where several cross positions settle at one time), listed in the history by the time
        it is pushed (a test may hold the row back), at the same millisecond.

        Raises
        ------
        ValueError
            A row of the symbol for the same amount is within ``VENUE_FUNDING_MATCH_NS`` of now
            (:meth:`~tradebus.adapters.common.account_emulator.AccountEmulator.refuse_twin_funding`).
        """
        inst = self.instruments[symbol]
        payment = self.position(symbol) * inst.contract_size * mark * rate
        if payment == 0.0:
            return 0.0
        now = self.now_ms()
        self.refuse_twin_funding(symbol, float(_num(-payment)), now, "income row", (
            (r["symbol"], r["time"], float(r["income"]), str(r["tranId"])) for r in self.income
            if r["incomeType"] == "FUNDING_FEE"))
        self.balances[inst.quote] = self.balances.get(inst.quote, 0.0) - payment
        self.income.append({"symbol": symbol, "incomeType": "FUNDING_FEE", "income": _num(-payment), "asset": inst.quote,
                            "info": "FUNDING_FEE", "time": now, "tranId": 9_000_000_000 + len(self.income), "tradeId": ""})
        wb = _num(self.balances[inst.quote])
        balance = {"a": inst.quote, "wb": wb, "cw": wb, "bc": _num(-payment)}
        self._push([("account", json.dumps({"e": "ACCOUNT_UPDATE", "E": now, "T": now, "a": {"m": "FUNDING_FEE", "B": [balance]}}))])
        return payment

    def liquidate(self, symbol: str, price: float, fee: float, quantity: float | None = None) -> None:
        """Close the position in ``symbol`` by a liquidation order at ``price``, charging ``fee``.

        ``quantity``: a partial liquidation closing only that much (default: the whole position).
        Assumed shape (the documentation shows no partial liquidation): the same events, the
        order's ``q``, ``l`` and ``z`` the part closed, the position update the rest.

        Pushed as ``ORDER_TRADE_UPDATE`` of the order ``autoclose-<n>`` (order type
        ``LIQUIDATION``): ``x=NEW``, then the fill as ``x=CALCULATED`` ("Liquidation Execution")
        with ``l``/``L``/``n``/``t``; then ``ACCOUNT_UPDATE`` (``m=ORDER``) of the wallet and the
        flat position. Unconfirmed (the documentation has no example of a liquidation's events):
        that the fill comes as one ``CALCULATED`` event carrying ``l``, ``L``, ``n`` and ``t``. The
        fill is not in ``userTrades`` and working orders are left as they are.
        """
        inst = self.instruments[symbol]
        held = self.position(symbol)
        if held == 0.0:
            raise ValueError(f"emulator: no position in {symbol} to liquidate")
        if quantity is not None and not 0.0 < quantity <= abs(held):
            raise ValueError(f"emulator: cannot liquidate {quantity} of the {held} held in {symbol}")
        pos = held if quantity is None else math.copysign(quantity, held)  # the signed part closed
        realized = abs(pos) * (price - self.entry.get(symbol, 0.0)) * (1.0 if pos > 0.0 else -1.0) * inst.contract_size
        self.balances[inst.quote] = self.balances.get(inst.quote, 0.0) + realized - fee
        self.venue._positions[inst.instrument_id] = held - pos  # closed by the venue outside its book
        if held == pos:
            self.entry[symbol] = 0.0
        self._order_ids += 1
        self._liquidation_trades += 1
        now = self.now_ms()
        o = {
            "s": symbol, "c": f"autoclose-{now}{self._order_ids}", "S": "SELL" if pos > 0.0 else "BUY", "o": "LIQUIDATION",
            "f": "IOC", "q": _num(abs(pos)), "p": _num(price), "ap": "0", "sp": "0", "x": "NEW", "X": "NEW",
            "i": self._order_ids, "l": _num(0.0), "z": _num(0.0), "L": _num(0.0), "N": inst.quote, "n": _num(0.0),
            "T": now, "t": 0, "b": "0", "a": "0", "m": False, "R": True, "wt": "CONTRACT_PRICE", "ot": "LIQUIDATION",
            "ps": "BOTH", "cp": False, "rp": "0",
        }  # fmt: skip
        filled = {**o, "x": "CALCULATED", "X": "FILLED", "ap": _num(price), "l": _num(abs(pos)), "z": _num(abs(pos)),
                  "L": _num(price), "n": _num(fee), "t": 10**9 + self._liquidation_trades, "rp": _num(realized)}
        frames = [("order", json.dumps({"e": "ORDER_TRADE_UPDATE", "E": now, "T": now, "o": body})) for body in (o, filled)]
        self._push(frames + self.balance_frames([inst.quote], symbol))

    # ------------------------------------------------------------------ stream

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        if not self.listen_key or request.match_info.get("listen_key") != self.listen_key:
            return self.error(400, -1125, "This listenKey does not exist.")
        return await super()._ws(request)

    def ws_message(self, text: str, session: WsSession) -> list[str]:
        return []  # the listen-key stream only pushes

    async def _sender(self, session: WsSession) -> None:
        session.authed = True  # a listen-key connection receives the account's events from its opening
        session.topics.add("user")
        await super()._sender(session)

    def _deliver(self, topic: str, frames: list[str]) -> None:
        for session in self.sessions:  # a listen-key connection receives every event of the account
            for frame in frames:
                session.send(frame)

    # ------------------------------------------------------------------ wire forms

    def _order_json(self, rec: EmulatedOrder) -> dict[str, Any]:
        order = rec.order
        quote = sum(f.last_qty * f.last_px for f in rec.fills)
        return {
            "orderId": rec.order_id,
            "symbol": rec.symbol,
            "status": _STATUS[rec.status],
            "clientOrderId": order.client_order_id,
            "price": _num(order.price),
            "avgPrice": _num(quote / rec.filled if rec.filled else 0.0),
            "origQty": _num(order.quantity),
            "executedQty": _num(rec.filled),
            "cumQuote": _num(quote),
            "timeInForce": "GTX" if order.post_only else str(order.tif),
            "type": "MARKET" if order.order_type is OrderType.MARKET else "LIMIT",
            "reduceOnly": order.reduce_only,
            "closePosition": False,
            "side": "BUY" if order.side is OrderSide.BUY else "SELL",
            "positionSide": "BOTH",
            "stopPrice": "0",
            "workingType": "CONTRACT_PRICE",
            "priceProtect": False,
            "origType": "MARKET" if order.order_type is OrderType.MARKET else "LIMIT",
            "time": rec.time_ms,
            "updateTime": rec.update_ms or rec.time_ms,
        }

    def _trade_row(self, f: EmulatedFill) -> dict[str, Any]:
        fill = f.fill
        buy = fill.side is OrderSide.BUY
        return {
            "buyer": buy,
            "commission": _num(f.fee),
            "commissionAsset": f.fee_asset or self.instruments[f.rec.symbol].quote,
            "id": f.trade_id,
            "maker": fill.liquidity == "MAKER",
            "orderId": f.rec.order_id,
            "price": _num(fill.last_px),
            "qty": _num(fill.last_qty),
            "quoteQty": _num(fill.last_qty * fill.last_px),
            "realizedPnl": "0",
            "side": "BUY" if buy else "SELL",
            "positionSide": "BOTH",
            "symbol": f.rec.symbol,
            "time": fill.ts_event // 1_000_000,
        }

    def order_frames(self, rec: EmulatedOrder, fill: EmulatedFill | None) -> list[tuple[str, str]]:
        order = rec.order
        status = _STATUS.get(rec.status, "NEW")
        x = "TRADE" if fill is not None else ("AMENDMENT" if self._amendment else "NEW" if status == "NEW" else status)
        f = fill.fill if fill is not None else None
        now = max(self.now_ms(), rec.time_ms)
        o = {
            "s": rec.symbol,
            "c": order.client_order_id,
            "S": "BUY" if order.side is OrderSide.BUY else "SELL",
            "o": "MARKET" if order.order_type is OrderType.MARKET else "LIMIT",
            "f": "GTX" if order.post_only else str(order.tif),
            "q": _num(order.quantity),
            "p": _num(order.price),
            "ap": "0",
            "sp": "0",
            "x": x,
            "X": status,
            "i": rec.order_id,
            "l": _num(f.last_qty if f else 0.0),
            "z": _num(rec.filled),
            "L": _num(f.last_px if f else 0.0),
            "N": (fill.fee_asset or self.instruments[rec.symbol].quote) if fill is not None else None,
            "n": _num(fill.fee if fill is not None else 0.0),
            "T": (f.ts_event // 1_000_000) if f else now,
            "t": fill.trade_id if fill is not None else 0,
            "b": "0",
            "a": "0",
            "m": bool(f and f.liquidity == "MAKER"),
            "R": order.reduce_only,
            "wt": "CONTRACT_PRICE",
            "ot": "MARKET" if order.order_type is OrderType.MARKET else "LIMIT",
            "ps": "BOTH",
            "cp": False,
            "rp": "0",
        }
        frames = [("order", json.dumps({"e": "ORDER_TRADE_UPDATE", "E": now, "T": now, "o": o}))]
        algo = self.algos.get(order.client_order_id)
        if algo is not None and algo.status == "TRIGGERED" and rec.status not in common.OPEN:
            algo.status = "FINISHED"
            frames += self._algo_frames(algo)
        return frames

    def balance_frames(self, assets: list[str], symbol: str | None = None) -> list[tuple[str, str]]:
        now = self.now_ms()
        balances = [{"a": a, "wb": _num(self.balances.get(a, 0.0)), "cw": _num(self.balances.get(a, 0.0)), "bc": "0"} for a in assets]
        positions = []
        if symbol is not None:
            positions.append(
                {"s": symbol, "pa": _num(self.position(symbol)), "ep": _num(self.entry.get(symbol, 0.0)), "bep": "0",
                 "cr": "0", "up": "0", "mt": "cross", "iw": "0", "ps": "BOTH"}
            )
        event = {"e": "ACCOUNT_UPDATE", "E": now, "T": now, "a": {"m": "ORDER", "B": balances, "P": positions}}
        return [("account", json.dumps(event))]
