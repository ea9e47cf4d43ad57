"""Binance spot trading over REST, through ccxt's async client: the venue's :class:`TradingApi`.

Requests go through ccxt's implicit, signed endpoints (``private_post_order`` ...), so the
request is exactly Binance's documented one and ccxt signs it (HMAC-SHA256 of the query,
``X-MBX-APIKEY`` header). The order mapping:

=====================  ==========================================================
tradebus               Binance ``POST /api/v3/order``
=====================  ==========================================================
client_order_id        ``newClientOrderId`` (ccxt never replaces one given)
MARKET                 ``type=MARKET``
LIMIT                  ``type=LIMIT`` + ``timeInForce`` GTC/IOC/FOK + ``price``
LIMIT post_only        ``type=LIMIT_MAKER`` (refused by Binance if it would take)
STOP_MARKET            ``type=STOP_LOSS`` + ``stopPrice`` (a sell triggers at a last price <= it, a buy at >=)
STOP_LIMIT             ``type=STOP_LOSS_LIMIT`` + ``price``, ``stopPrice``
reduce_only            not on spot: refused locally (:class:`VenueRejected`)
=====================  ==========================================================

A bracket's two exits go as one OCO order list (:meth:`BinanceTrading.place_oco`); a stop leg
trailing by a percentage is Binance's trailing stop (``belowTrailingDelta`` in BIPS, no stop price).

A modify of a working order is a **cancel-replace** in one request, ``POST /api/v3/order/cancelReplace``
(``cancelReplaceMode=STOP_ON_FAILURE``): Binance spot has no amend of a price or a stop price. The
matching engine cancels the order and places its replacement (a new client id) in one step, so a
trailing stop is never off the book between the two; only when the replacement is refused after
the cancel (``-2021``) is the order placed again alone, one round trip later.

Every request first takes its weight (:data:`WEIGHTS`) from the account's shared
:class:`~tradebus.adapters.common.ratelimit.WeightBudget`, and every answer updates it. A request placing orders
(a new order, a cancel-replace: 1; an OCO list: 2) also takes them from a budget per order limit of the account
(:data:`SPOT_ORDER_LIMITS`, spot's ``exchangeInfo``: 100 per 10 s and 200,000 per UTC day, counting the orders that
have not filled), fed by ``X-MBX-ORDER-COUNT-10S`` and ``-1D`` and lowered by each first fill the user stream tells
(:meth:`BinanceTrading.first_fill_heard`), so a burst waits for the next 10 s instead of meeting
Binance's ``429`` (``-1015`` "Too many new orders"), whose repetition Binance answers with an IP ban (``418``). A day
used up is no burst to wait out: first the budget reads the account's count again (``GET /api/v3/rateLimit/order``,
weight 40, at most once a minute: :meth:`BinanceTrading.read_order_counts`; orders filled since have left it), then a
submit that cannot wait (within its submit timeout) is withdrawn with a reason naming the limit and its end, 00:00 UTC,
and the budget logs an ERROR once for the day (the strategy places far more orders than fill). A ``-1015`` answer
(another process on the account used the limit up) marks the window it names ("... orders per 10 SECOND.", USD-M's
"... per TEN_SECONDS.") used up until it ends (:func:`order_limit_window`); it does not pause the weight budget as
another 429 does (the IP's limit was not met): cancels and queries, which place no order, go on.

Prices go to the nearest tick, quantities down to a whole number of lots, written as
plain decimals. A failed request is classified by :attr:`BinanceTrading.errors`
(:meth:`~tradebus.adapters.common.venue_errors.VenueErrors.classify`): an HTTP 429 or 418 is
:class:`RateLimited` (Binance: "HTTP 4XX return codes are used for malformed requests; the issue
is on the sender's side", a 5XX alone leaves the execution status unknown); an answer with a
Binance error code is classified by its code, whatever ccxt class it arrives as (ccxt maps some
codes by the request's URL: on ``api.binance.com`` a ``-2021`` is its ``BadResponse``, a ``-1008``
its ``OperationFailed``; on any URL a ``-1021``, the request's timestamp outside its ``recvWindow``,
refused before the matching engine, its ``InvalidNonce``, a ``NetworkError``): a code of the
unknown-outcome codes (server busy, internal error) is :class:`NoAnswer`, any other
:class:`VenueRejected`, its message ending with what to do for a code of
:data:`ERROR_ADVICE` (a key or signature refused, the clock off, a symbol's
filter broken) (``-2013`` on a query means the venue has no such order; ``-2026`` that it archived the order,
canceled or expired with no executed quantity over 90 days ago: answered as such a close).

USD-M perpetuals
----------------

Binance USD-M perpetual trading over REST (ccxt ``binanceusdm``): the futures :class:`TradingApi`.

The same requests as spot (:class:`~tradebus.adapters.binance.trading.BinanceTrading`) on
the futures paths, with the futures order mapping (one-way position mode):

=====================  ==========================================================
tradebus               Binance ``POST /fapi/v1/order``
=====================  ==========================================================
client_order_id        ``newClientOrderId``
side                   ``side`` + ``positionSide=BOTH`` (one-way mode)
MARKET                 ``type=MARKET``
LIMIT                  ``type=LIMIT`` + ``timeInForce`` GTC/IOC/FOK + ``price``
LIMIT post_only        ``timeInForce=GTX`` (Binance cancels it if it would take)
reduce_only            ``reduceOnly=true`` (refused with ``-2022`` if it would increase the position)
STOP_MARKET            a conditional order of the Algo Service, ``POST /fapi/v1/algoOrder``:
                       ``algoType=CONDITIONAL``, ``type=STOP_MARKET``, ``triggerPrice``,
                       ``workingType=CONTRACT_PRICE`` (the last price), ``clientAlgoId`` the
                       client order id (a buy triggers at a price >= it, a sell at <=; Binance
                       refuses one already there: ``-2021`` "Order would immediately trigger.")
STOP_LIMIT             the same with ``type=STOP`` + ``price`` + ``timeInForce`` GTC/IOC/FOK
                       (a post-only stop is refused locally)
=====================  ==========================================================

A stop's venue order id is its ``algoId``. The user stream reports it by ``ALGO_UPDATE`` (``NEW``,
``TRIGGERED`` with the id ``ai`` of the order it placed, ``CANCELED``, ``REJECTED``, ``EXPIRED``,
``FINISHED``); the order placed once triggered is an ordinary order reported by
``ORDER_TRADE_UPDATE`` under the stop's client id (Binance's documentation shows no example of
that frame: the client id is inferred from users' reports, and the stream also maps it by ``ai``).
Cancel: ``DELETE /fapi/v1/algoOrder`` by ``clientAlgoId`` (a stop already triggered: ``DELETE
/fapi/v1/order`` of the order it placed, its ``actualOrderId`` read by ``GET /fapi/v1/algoOrder``);
query: ``GET /fapi/v1/algoOrder``, then the order it placed and its fills; open stops:
``GET /fapi/v1/openAlgoOrders``. The Algo Service has no amend: a waiting stop's trigger is
moved by a cancel-replace of two requests sent back to back (:meth:`BinanceFuturesTrading.replace`:
the stop is off the venue for one round trip; a refused replacement is placed again as it was).
Not confirmed by the documentation found, and taken from Binance's general codes: ``-2013``
answers a query of an unknown algo order and ``-2011`` a cancel of one no longer waiting.

Quantities are base units (a USD-M contract is one coin), rounded down to the lot; prices
to the tick. Balances come from ``GET /fapi/v2/balance`` (the wallet balance of each
asset is ``free``; margin in use is not split out), positions from
``GET /fapi/v2/positionRisk``, whose ``leverage``, ``marginType`` and ``positionSide`` are also
checked against the config at start (:meth:`BinanceFuturesTrading.margin_settings`). Funding paid
while the user stream was not heard (the daemon down, the stream reconnecting) is read from
``GET /fapi/v1/income`` with ``incomeType=FUNDING_FEE`` (:meth:`BinanceFuturesTrading.funding_since`).
Weights are USD-M's (2400 per minute); a new order (``POST /fapi/v1/order``, ``POST /fapi/v1/algoOrder``) weighs 0
there and counts instead against the account's order limits, 300 per 10 s and 1200 per minute
(:data:`FUTURES_ORDER_LIMITS`, USD-M's ``exchangeInfo``; the account's own, ``GET /fapi/v1/rateLimit/order``, are read at
start: :meth:`BinanceFuturesTrading.listed_symbols`): each is a budget of its own
(:attr:`BinanceFuturesTrading.order_budgets`), fed by ``X-MBX-ORDER-COUNT-10S`` and ``-1M`` as the weight budget is by
``X-MBX-USED-WEIGHT-1M``, so a burst of orders waits for the next window instead of meeting Binance's ``429`` (``-1015``
"Too many new orders"), whose repetition Binance answers with an IP ban (``418``). An order counts in the windows it
leaves in (:func:`~tradebus.adapters.common.ratelimit.acquire_together`): one held by the minute's limit past the end of
the 10 s window it was counted in is counted again in the 10 s window it leaves in.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

import ccxt.async_support as ccxt_async
import msgspec
from ccxt.base.errors import BaseError
from loguru import logger
from pydantic import SecretStr

from tradebus.adapters.common.policy import FatalVenueError
from tradebus.adapters.common.venue_clock import TimestampRefused, VenueClock, resynced
from tradebus.adapters.common.ratelimit import WeightBudget, acquire_together
from tradebus.adapters.common.rest_trading import decimal_text
from tradebus.adapters.common.user_stream import venue_fee, venue_number
from tradebus.adapters.common.venue_errors import VenueErrors, error_body
from tradebus.engine.instrument import Instrument
from tradebus.engine.messages import FundingPaid, Liquidity, OrderFilled, OrderSide, OrderStatus, OrderType, TimeInForce
from tradebus.errors import VenueError
from tradebus.execution.live import (
    AccountBalance, AccountMargin, AccountPosition, Ack, CredentialsRefused, FundingOutsideRun, RateLimited, ReplacementRejected,
    TradingApi, VenueRejected, cancel_one, lots_to_send, send_late,
)
from tradebus.execution.orders import Order
from tradebus.execution.venue import OrderStatusReport

__all__ = [
    "ALGO_STATUS", "BinanceFuturesTrading", "BinanceTrading", "CREDENTIAL_CODES", "ERROR_ADVICE", "FUTURES_ERROR_ADVICE",
    "FUTURES_ORDER_LIMITS", "FUTURES_WEIGHTS", "SPOT_ORDER_LIMITS", "STATUS", "TRIGGER_ADVICE", "advised", "algo_order_params",
    "algo_report", "fill_from_trade", "futures_order_params", "order_limit_budgets", "order_limit_window", "order_params",
    "report_from_order",
]

#: Binance order status -> core status.
STATUS: dict[str, OrderStatus] = {
    "NEW": OrderStatus.ACCEPTED,
    "PENDING_NEW": OrderStatus.SUBMITTED,
    "PARTIALLY_FILLED": OrderStatus.PARTIALLY_FILLED,
    "FILLED": OrderStatus.FILLED,
    "CANCELED": OrderStatus.CANCELED,
    "PENDING_CANCEL": OrderStatus.ACCEPTED,
    "REJECTED": OrderStatus.REJECTED,
    "EXPIRED": OrderStatus.EXPIRED,
    "EXPIRED_IN_MATCH": OrderStatus.EXPIRED,
}

_ORDER_NOT_FOUND = -2013
#: Binance's refusal of orders over an order limit of the account ("Too many new orders"), spot and USD-M.
_TOO_MANY_ORDERS = "-1015"
#: Binance spot's answer to a query of an order it archived (``ORDER_ARCHIVED``): one CANCELED or EXPIRED with no
#: executed quantity, last updated more than 90 days ago (``-2013`` before 2023-03-13, CHANGELOG).
_ORDER_ARCHIVED = -2026
#: How long Binance spot answers a query of a CANCELED or EXPIRED order with no executed quantity (then archived).
ARCHIVED_AFTER_NS = 90 * 24 * 3600 * 1_000_000_000

#: Request weight of each endpoint (Binance spot documentation; openOrders with a symbol).
WEIGHTS: dict[str, int] = {
    "private_post_order": 1,
    "private_post_order_cancelreplace": 1,
    "private_post_orderlist_oco": 1,
    "private_delete_order": 1,
    "private_get_order": 4,
    "private_get_openorders": 6,
    "private_get_mytrades": 20,
    "private_get_account": 20,
    "private_get_ratelimit_order": 40,
}
#: Weight of ``GET /api/v3/exchangeInfo`` (of one symbol as of all).
EXCHANGE_INFO_WEIGHT = 20
#: Weight of ``GET /api/v3/myTrades`` with an ``orderId`` (20 without).
TRADES_OF_ORDER_WEIGHT = 5
#: Rows per page of the own-trades list (Binance's maximum ``limit``).
TRADES_PAGE = 1000
#: Binance spot's request-weight limit per minute, and the header reporting the weight used.
WEIGHT_LIMIT = 6000
WEIGHT_HEADER = "X-MBX-USED-WEIGHT-1M"
#: Binance spot's order limits of an account ("unfilled order count": ``exchangeInfo`` ``rateLimits`` of type
#: ``ORDERS``, 100 per 10 s and 200,000 per UTC day since Binance raised them from 50 and 160,000; an order's first fill
#: takes it off the count): orders, window seconds, the header telling the account's count. A new order and a
#: cancel-replace count 1, an OCO list 2 (:attr:`BinanceTrading.order_endpoints`); each still weighs 1 on the IP limit.
SPOT_ORDER_LIMITS: tuple[tuple[int, float, str], ...] = ((100, 10.0, "X-MBX-ORDER-COUNT-10S"), (200_000, 86_400.0, "X-MBX-ORDER-COUNT-1D"))
_WINDOW_NAMES = {10.0: "10 s", 60.0: "minute", 86_400.0: "UTC day"}
#: Seconds of an order window from which a budget used up re-reads the account's count before holding a request to
#: the window's end (:meth:`BinanceTrading.read_order_counts`): an hour (spot's day, not its 10 s).
COUNT_REREAD_WINDOW = 3_600.0


def order_limit_budgets(limits: Sequence[tuple[int, float, str]], **options: Any) -> list[WeightBudget]:
    """One budget per order limit ``(orders, window seconds, count header)`` of a Binance account, each fed by its header
    (named "orders per 10 s", "orders per UTC day" ... in the messages of a wait); ``options``: the budgets' other
    :class:`WeightBudget` parameters (a test's clock and sleep)."""
    return [
        WeightBudget(limit, window, header=header, name=f"orders per {_WINDOW_NAMES.get(window, f'{window:g} s')}", **options)
        for limit, window, header in limits
    ]


_ORDERS_PER = re.compile(r"orders per (?:(\d+) )?([A-Z_]+)")
_UNIT_SECONDS = {"SECOND": 1.0, "MINUTE": 60.0, "HOUR": 3_600.0, "DAY": 86_400.0}
_NUMBER_WORDS = {"ONE": 1, "TWO": 2, "FIVE": 5, "TEN": 10, "FIFTEEN": 15, "THIRTY": 30}


def order_limit_window(message: str) -> float | None:
    """The window, in seconds, of the order limit named by a Binance ``-1015`` message ("Too many new orders; current
    limit is %s orders per %s."): spot's "100 orders per 10 SECOND." -> 10, USD-M's "300 orders per TEN_SECONDS."
    -> 10, "... per MINUTE." -> 60, "... per 1 DAY." -> 86400; ``None`` when it names none ("Too many new orders.")."""
    found = _ORDERS_PER.search(message)
    if found is None:
        return None
    *words, unit = found.group(2).split("_")
    seconds = _UNIT_SECONDS.get(unit.removesuffix("S"))
    if seconds is None or len(words) > 1 or (words and words[0] not in _NUMBER_WORDS):
        return None
    return int(found.group(1) or 1) * (_NUMBER_WORDS[words[0]] if words else 1) * seconds


class _QueryPost:
    """A ccxt Binance exchange that sends a POST's signed parameters in the query string, without a body.

    Binance takes the parameters of any request in the query string. Without a body, aiohttp
    writes the whole request at once from the sending task; with one (ccxt's form body),
    Python before 3.12 writes the body from a second task, which waits its turn on a busy
    event loop (``bench/live.py`` measured ~10 ms at p50 under a burst of market data).
    """

    def sign(self, path: str, api: Any = "public", method: str = "GET", params: Any = None) -> dict[str, Any]:
        request: dict[str, Any] = super().sign(path, api, method, {} if params is None else params)  # type: ignore[misc]
        if request["method"] == "POST" and request["body"]:
            request["url"] = f"{request['url']}?{request['body']}"
            request["body"] = None
            headers = dict(request["headers"] or {})
            headers.pop("Content-Type", None)
            request["headers"] = headers
        return request


class _Binance(_QueryPost, ccxt_async.binance):  # type: ignore[misc]
    """ccxt's async Binance spot with query-string POSTs."""


class _BinanceUsdm(_QueryPost, ccxt_async.binanceusdm):  # type: ignore[misc]
    """ccxt's async Binance USD-M with query-string POSTs."""


def order_params(order: Order, instrument: Instrument) -> dict[str, str]:
    """The ``POST /api/v3/order`` parameters of ``order`` (rounded to the instrument's tick and lot).

    Raises
    ------
    VenueRejected
        For what Binance spot cannot take: reduce-only, post-only on a non-limit order, a
        quantity below one lot once rounded.
    """
    if order.reduce_only:
        raise VenueRejected("reduce_only: Binance spot has no reduce-only orders")
    qty = lots_to_send(order, instrument)
    buy = order.side is OrderSide.BUY
    params: dict[str, str] = {
        "symbol": instrument.symbol,
        "side": "BUY" if buy else "SELL",
        "quantity": decimal_text(qty, instrument.lot_size),
        "newClientOrderId": order.client_order_id,
        "newOrderRespType": "RESULT",
    }
    typ = order.order_type
    if order.post_only and typ is not OrderType.LIMIT:
        raise VenueRejected(f"post_only: Binance spot takes post-only only on LIMIT orders, not {typ}")
    if typ is OrderType.MARKET:
        params["type"] = "MARKET"
        return params
    if typ in (OrderType.LIMIT, OrderType.STOP_LIMIT):
        params["price"] = decimal_text(instrument.round_price(order.price), instrument.tick_size)
    if typ in (OrderType.STOP_MARKET, OrderType.STOP_LIMIT):
        params["stopPrice"] = decimal_text(instrument.round_price(order.trigger_price), instrument.tick_size)
        # Binance's STOP_LOSS triggers a sell at a last price <= stopPrice and a buy at >= it: a stop of
        # either side. Its TAKE_PROFIT triggers the other way (a buy at <=): a buy stop sent so would
        # be refused above the market ("Order would trigger immediately.") and buy a dip below it.
        params["type"] = "STOP_LOSS" if typ is OrderType.STOP_MARKET else "STOP_LOSS_LIMIT"
        if typ is OrderType.STOP_LIMIT:
            params["timeInForce"] = str(order.tif)
        return params
    if order.post_only:
        params["type"] = "LIMIT_MAKER"
    else:
        params["type"] = "LIMIT"
        params["timeInForce"] = str(order.tif if isinstance(order.tif, TimeInForce) else TimeInForce(order.tif))
    return params


def fill_from_trade(
    raw: dict[str, Any], order: Order, instrument: Instrument, buyer: str = "isBuyer", maker: str = "isMaker"
) -> OrderFilled:
    """An ``OrderFilled`` from one ``GET /api/v3/myTrades`` row (fee in its ``commissionAsset``: ``fee_asset``).

    ``buyer`` and ``maker`` name the row's flags (USD-M ``userTrades``: ``buyer``, ``maker``).
    """
    px = float(raw["price"])
    fee, fee_asset = venue_fee(float(raw["commission"]), raw.get("commissionAsset"), instrument)
    ts = int(raw["time"]) * 1_000_000
    return OrderFilled(
        order.strategy_id,
        order.instrument_id,
        order.client_order_id,
        str(raw["orderId"]),
        str(raw["id"]),
        OrderSide.BUY if raw[buyer] else OrderSide.SELL,
        float(raw["qty"]),
        px,
        fee,
        Liquidity.MAKER if raw[maker] else Liquidity.TAKER,
        ts,
        ts,
        fee_asset,
    )


def report_from_order(
    raw: dict[str, Any], order: Order, fills: tuple[OrderFilled, ...] = ()
) -> OrderStatusReport:
    """An :class:`OrderStatusReport` from a ``GET /api/v3/order`` (``/fapi/v1/order``) answer, with its ``origQty``,
    ``price`` and ``stopPrice`` (``"0"`` where the order has none: NaN) and its ``orderListId`` (:func:`_list_id`)."""
    status = STATUS.get(str(raw["status"]))
    if status is None:
        raise VenueRejected(f"order {order.client_order_id}: unknown Binance status {raw['status']!r}")
    ts = int(raw.get("updateTime") or raw.get("time") or 0) * 1_000_000
    return OrderStatusReport(
        str(raw["clientOrderId"]), str(raw["orderId"]), status, float(raw["executedQty"]), ts, fills,
        quantity=venue_number(raw.get("origQty")), price=venue_number(raw.get("price")),
        trigger_price=venue_number(raw.get("stopPrice")), list_id=_list_id(raw),
    )


def _list_id(raw: dict[str, Any]) -> str:
    """The ``orderListId`` of an order row (``GET /api/v3/order``, ``/api/v3/openOrders``) as text: the id of the OCO
    order list the order is a leg of, ``""`` for an order in none (Binance's ``-1``; USD-M rows have no such field)."""
    value = raw.get("orderListId", -1)
    return "" if value in (None, -1, "-1") else str(value)


def order_key(order: Order, by_venue_id: bool = True) -> dict[str, str]:
    """How a request names ``order``: ``orderId`` once the venue gave one (``by_venue_id``), else ``origClientOrderId``.

    On spot an amend a user makes at the venue keeping the order's priority (``PUT /api/v3/order/amend/keepPriority``)
    gives the order a new client order id unless the user sends the same one as ``newClientOrderId``: the venue order
    id is the name that stays (:attr:`BinanceTrading.renames_on_amend`; USD-M keeps naming orders by client id).
    """
    if by_venue_id and order.venue_order_id:
        return {"orderId": order.venue_order_id}
    return {"origClientOrderId": order.client_order_id}


def _canceled_filled(answer: Mapping[str, Any]) -> float:
    """The canceled order's ``executedQty`` in a cancel-replace's answer (its ``data`` when refused); NaN if absent."""
    executed = (answer.get("cancelResponse") or {}).get("executedQty")
    return math.nan if executed is None else float(executed)


def _archived(order: Order) -> OrderStatusReport:
    """What Binance's ``-2026`` to a query of ``order`` tells: it closed (CANCELED or EXPIRED) with nothing executed."""
    status = order.status if order.status in (OrderStatus.CANCELED, OrderStatus.EXPIRED) else OrderStatus.CANCELED
    reason = "archived by Binance: canceled or expired with no executed qty over 90 days ago"
    return OrderStatusReport(order.client_order_id, order.venue_order_id, status, 0.0, time.time_ns(), (), reason)


# What to do about a Binance refusal (spot and USD-M, REST and the user stream), by error code.
#
# The codes and their texts are Binance's (https://developers.binance.com/docs/binance-spot-api-docs/errors):
# ``-2014`` "API-key format invalid.", ``-2015`` "Invalid API-key, IP, or permissions for action.", ``-1022``
# "Signature for this request is not valid.", ``-1021`` "Timestamp for this request was 1000ms ahead of the server's
# time." or "... outside of the recvWindow.", ``-1013`` "Filter failure: LOT_SIZE" (``PRICE_FILTER``, ``NOTIONAL``
# ...). USD-M (https://developers.binance.com/docs/derivatives/usds-margined-futures/error-code) shares the first four;
# its ``-1013`` is "INVALID_MESSAGE", and an order off its symbol's filters is ``-4014`` (price not a multiple of the
# tick size), ``-4023`` (quantity not a multiple of the step size), ``-1111`` (precision over the symbol's) or ``-4164``
# (notional below the symbol's minimum). A stop whose trigger the last price has already passed is refused: on spot
# ``-2010`` "Order would trigger immediately." (or "Stop price would trigger immediately."; -2010 is any new order
# refused, "Account has insufficient balance for requested action." too, and ccxt keeps only the message), on USD-M
# ``-2021`` "Order would immediately trigger.". None says which setting of the daemon to look at:
# :data:`ERROR_ADVICE` (spot), :data:`TRIGGER_ADVICE` and :data:`FUTURES_ERROR_ADVICE` (USD-M) do.

_INSTRUMENT = (
    "compare the instrument's tick_size, lot_size, min_quantity and min_notional in the config with the venue's "
    "exchangeInfo (tradebus instruments writes them from a saved answer)"
)
_KEY = (
    "check that the variables named by live.api_key_env and live.api_secret_env hold an API key of this environment "
    "and market (a mainnet key is refused on the testnet and the other way round, a spot testnet key "
    "(testnet.binance.vision) on the USD-M testnet (testnet.binancefuture.com)), that the key's IP restriction lets "
    "this machine in and that it may trade (spot: Enable Spot & Margin Trading; USD-M: Enable Futures)"
)

#: What to do about a refusal, by Binance error code (text, as :class:`~tradebus.adapters.common.venue_errors.VenueErrors`
#: reads codes).
ERROR_ADVICE: dict[str, str] = {
    "-2014": "the API key is malformed: " + _KEY + "; a stray quote, space or newline in the variable breaks it",
    "-2015": "the venue refused the API key: " + _KEY,
    "-1022": (
        "the signature does not match the key: check that the variable named by live.api_secret_env holds the secret "
        "of the key in live.api_key_env (a key regenerated on the venue has a new secret)"
    ),
    "-1021": (
        "this machine's clock is off from Binance's (a request may be at most 1 s ahead of the venue's time and "
        "5 s, its recvWindow, behind it): synchronise the clock (NTP, e.g. timedatectl set-ntp true) and start again"
    ),
    "-1013": (
        "the order breaks the symbol's filter named above: for LOT_SIZE, PRICE_FILTER, NOTIONAL or MIN_NOTIONAL "
        + _INSTRUMENT + "; for TRAILING_DELTA keep the trail's percent x 100 within the symbol's "
        "min/maxTrailingBelowDelta and AboveDelta there"
    ),
}

_TRIGGER = (
    "the stop's trigger price is already reached by the venue's last price (a BUY stop triggers at a last price at "
    "or above it, a SELL stop at or below): place a BUY stop above the last price and a SELL stop below it, leaving "
    "room for the price to move before the order reaches the venue"
)
#: What to do about a refusal of Binance spot, by a text of its message (its code, -2010, is any order refused).
TRIGGER_ADVICE: dict[str, str] = {"would trigger immediately": _TRIGGER}

_FILTER = "the order is off the symbol's filters at the venue: " + _INSTRUMENT
#: Binance's refusals of the key (malformed, unknown, its IP or permissions) and of its signature (another secret), the
#: same on spot and USD-M: :class:`~tradebus.execution.live.CredentialsRefused`.
CREDENTIAL_CODES = frozenset({"-2014", "-2015", "-1022"})
#: What to do about a refusal of Binance USD-M, by error code.
FUTURES_ERROR_ADVICE: dict[str, str] = {
    **{code: ERROR_ADVICE[code] for code in ("-2014", "-2015", "-1022", "-1021")},
    "-4014": _FILTER,
    "-4023": _FILTER,
    "-1111": _FILTER,
    "-4164": _FILTER,
    "-2021": _TRIGGER,
}


def advised(message: str, code: object) -> str:
    """``message`` followed by what to do about the Binance error ``code`` (any type), if :data:`ERROR_ADVICE` has it
    (the user streams' refusals: of the key, its signature or timestamp, the same on spot and USD-M)."""
    advice = ERROR_ADVICE.get(str(code))
    return f"{message}; {advice}" if advice else message


def stream_refusal(message: str, code: object) -> FatalVenueError | CredentialsRefused | TimestampRefused:
    """What a user stream raises for the venue's refusal ``code`` (:func:`advised`): :class:`CredentialsRefused`
    for a code of :data:`CREDENTIAL_CODES` (a key revoked while the daemon runs is refused when the stream
    reconnects), :class:`~tradebus.adapters.common.venue_clock.TimestampRefused` for ``-1021`` (the stream measures
    Binance's clock and subscribes again), else :class:`~tradebus.adapters.common.policy.FatalVenueError`."""
    refusal = CredentialsRefused if str(code) in CREDENTIAL_CODES else TimestampRefused if str(code) == "-1021" else FatalVenueError
    return refusal(advised(message, code))


class BinanceTrading(TradingApi):
    """Binance spot REST trading for one account (see the module docstring).

    Parameters
    ----------
    rest_url
        Base URL (``https://testnet.binance.vision`` for the testnet, a local emulator in tests).
    api_key, api_secret
        The account's key pair, held as secrets (never logged or written).
    instruments
        ``instrument_id -> Instrument`` traded on this account.
    timeout
        HTTP timeout per request, seconds: a request without an answer by then is :class:`NoAnswer`.
    budget
        The account's shared weight budget (default: Binance spot's 6000 per minute, fed by
        ``X-MBX-USED-WEIGHT-1M``; 429/418 pause every request). ccxt's own throttle is off.
    order_budgets
        One budget per order limit of the account, taken by every request placing orders (default: those of
        :attr:`order_limits`, :func:`order_limit_budgets`).
    """

    def __init__(
        self,
        rest_url: str,
        api_key: SecretStr,
        api_secret: SecretStr,
        instruments: dict[str, Instrument],
        timeout: float = 10.0,
        budget: WeightBudget | None = None,
        order_budgets: Sequence[WeightBudget] | None = None,
    ) -> None:
        self.instruments = instruments
        self.budget = budget if budget is not None else WeightBudget(WEIGHT_LIMIT, 60.0, header=WEIGHT_HEADER)
        self.by_symbol = {inst.symbol: inst for inst in instruments.values()}
        base = rest_url.rstrip("/")
        self._ccxt = self.ccxt_class(
            {
                "apiKey": api_key.get_secret_value(),
                "secret": api_secret.get_secret_value(),
                "timeout": int(timeout * 1000),
                "enableRateLimit": False,
                "options": {"recvWindow": 5000},
            }
        )
        self._point_at(base)
        #: The response headers of the last request (``X-MBX-USED-WEIGHT-1M`` ...).
        self.last_headers: dict[str, str] = {}
        #: The account's id (Binance ``uid``), known after :meth:`balances`.
        self.account_id = ""
        #: The account's order limits, one budget each, taken by a request of :attr:`order_endpoints`.
        self.order_budgets = tuple(order_budgets if order_budgets is not None else order_limit_budgets(self.order_limits))
        #: This machine's clock as Binance takes it: stamps the signed requests and the user stream's subscription.
        self.venue_clock = VenueClock(self.errors.venue, self._ccxt)
        #: The venue's time (ms) of the latest answer whose header told the order counts, and the ids of the orders it
        #: placed (:meth:`first_fill_heard`); ``None`` before one.
        self.counts_told_at: tuple[int, frozenset[str]] | None = None
        if self.count_endpoint is not None:
            for limit in self.order_budgets:
                if limit.window >= COUNT_REREAD_WINDOW:
                    limit.refresh = self.read_order_counts

    #: Weight of the own-trades request of one order.
    trades_of_order_weight = TRADES_OF_ORDER_WEIGHT
    #: Binance spot archives a CANCELED or EXPIRED order with no executed quantity 90 days after its last update.
    forgets_unfilled_closed_ns: int | None = ARCHIVED_AFTER_NS
    #: Longest span between ``startTime`` and ``endTime`` of one own-trades request, ms (spot: 24 h).
    trades_window_ms = 24 * 3600 * 1000
    #: The ccxt exchange class of the market.
    ccxt_class: Any = _Binance
    #: Binance spot's error answers: the codes of an answer that leaves the outcome unknown (:class:`NoAnswer`): unknown
    #: error, internal error, unexpected or no answer from the matching engine, server busy (spot's ``-1004``,
    #: ``-1008``) and ``-3000``; an HTTP 429 (rate limit) or 418 (IP ban, ccxt's ``DDoSProtection``) is :class:`RateLimited`.
    errors: VenueErrors = VenueErrors(
        "Binance",
        unknown_outcome_codes=frozenset({"-1000", "-1001", "-1004", "-1006", "-1007", "-1008", "-3000"}),
        rate_limit_statuses=frozenset({429, 418}),
        credential_codes=CREDENTIAL_CODES,
        clock_codes=frozenset({"-1021"}),
        advice=ERROR_ADVICE,
        message_advice=TRIGGER_ADVICE,
    )
    #: Request weight of each implicit endpoint.
    weights: dict[str, int] = WEIGHTS
    #: The account's order limits: orders, window seconds, the header telling the count.
    order_limits: tuple[tuple[int, float, str], ...] = SPOT_ORDER_LIMITS
    #: Whether an order's first fill takes it off the count of the order limits (spot's "unfilled order count"; USD-M
    #: counts every new order): :meth:`first_fill_heard`.
    counts_unfilled = True
    #: The implicit endpoint telling the account's count in each order window (``GET /api/v3/rateLimit/order``; ``None``:
    #: none read, USD-M's count falling with no fill): :meth:`read_order_counts`.
    count_endpoint: str | None = "private_get_ratelimit_order"
    #: The implicit endpoints that place orders, and how many each counts in every :attr:`order_budgets`.
    order_endpoints: Mapping[str, int] = {"private_post_order": 1, "private_post_order_cancelreplace": 1, "private_post_orderlist_oco": 2}
    #: The implicit endpoint of each request kind.
    endpoint: dict[str, str] = {
        "place": "private_post_order",
        "cancel": "private_delete_order",
        "query": "private_get_order",
        "open": "private_get_openorders",
        "trades": "private_get_mytrades",
    }

    def has_room_to_place(self) -> bool:
        """Whether a new order may leave before an answer on its way tells the weight used, and the orders placed if
        the account's order limits count it (:meth:`WeightBudget.has_room`)."""
        place = self.endpoint["place"]
        if self.budget is not None and not self.budget.has_room(self.weights[place]):
            return False
        orders = self.order_endpoints.get(place, 0)
        return not orders or all(budget.has_room(orders) for budget in self.order_budgets)

    def seconds_to_room(self) -> float:
        """Until every budget :meth:`has_room_to_place` finds short of room turns its window and ends its pause, seconds
        on its clock (``0.0``: room now)."""
        place = self.endpoint["place"]
        takes = [(self.budget, self.weights[place])] if self.budget is not None else []
        orders = self.order_endpoints.get(place, 0)
        takes += [(budget, orders) for budget in self.order_budgets] if orders else []
        waits = [0.0]
        for budget, weight in takes:
            if not budget.has_room(weight):
                start = budget.window_start()  # the window its clock is in now
                waits.append(max(start + budget.window, budget.blocked_until) - budget._clock())
        return max(waits)

    def _point_at(self, base: str) -> None:
        """Point ccxt's URLs at ``base`` (the venue or an emulator)."""
        api = self._ccxt.urls["api"]
        api["public"] = api["private"] = f"{base}/api/v3"

    def order_params(self, order: Order, instrument: Instrument) -> dict[str, str]:
        """The new-order request's parameters (:func:`order_params`)."""
        return order_params(order, instrument)

    def fill_from_trade(self, raw: dict[str, Any], order: Order, instrument: Instrument) -> OrderFilled:
        """An ``OrderFilled`` from one own-trade row (:func:`fill_from_trade`)."""
        return fill_from_trade(raw, order, instrument)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._ccxt.urls['api'].get('private')!r})"

    async def _call(self, name: str, params: dict[str, Any], weight: int | None = None) -> Any:
        """Send the implicit endpoint ``name``; refused for its timestamp (``-1021``), sent again after a measure of
        Binance's clock (:func:`~tradebus.adapters.common.venue_clock.resynced`)."""
        return await resynced(self.venue_clock, name, lambda: self._send(name, params, weight), self._measure_weight, self.refused)

    async def _measure_weight(self) -> None:
        """Take the weight of a request of Binance's time (1, spot's ``GET /api/v3/time`` and USD-M's ``/fapi/v1/time``)."""
        if self.budget is not None:
            await self.budget.acquire(1)

    async def _send(self, name: str, params: dict[str, Any], weight: int | None) -> Any:
        budget = self.budget
        orders = self.order_endpoints.get(name, 0)
        # The longest window first: its re-read of the counts (read_order_counts) comes before a shorter one counts this.
        takes = [(limit, float(orders)) for limit in sorted(self.order_budgets, key=lambda b: -b.window)] if orders else []
        if budget is not None:
            takes.append((budget, self.weights[name] if weight is None else weight))
        await acquire_together(takes)
        self._ccxt.last_response_headers = None
        status, code = 200, ""
        answer: Any = None
        try:
            answer = await getattr(self._ccxt, name)(params)
            return answer
        except BaseError as exc:
            error, status, code = self.errors.classify(exc, name)
            if code == _TOO_MANY_ORDERS:
                self._order_limit_met(str(error))
            raise self.refused(error) from None
        finally:
            self.last_headers = dict(self._ccxt.last_response_headers or {})
            if budget is not None:  # a -1015 is an order limit's (_order_limit_met), not the IP's: cancels still go
                budget.observe(0 if code == _TOO_MANY_ORDERS else status, self.last_headers, code)
            for limit in self.order_budgets:
                limit.observe(0, self.last_headers)  # the counts only: a 429 or a ban pauses the weight budget
            if orders:
                self._note_counts_told(answer)

    def _note_counts_told(self, answer: Any) -> None:
        """Keep the venue's time of ``answer`` (a request placing orders) in :attr:`counts_told_at` if its header told
        an order count: ``transactTime`` (a cancel-replace's new order's, an OCO list's ``transactionTime``), the latest
        told so far. An answer without one (refused) leaves it."""
        told = {k.lower() for k in self.last_headers}
        if not isinstance(answer, dict) or not any(limit.header in told for limit in self.order_budgets):
            return
        placed = answer.get("newOrderResponse") if isinstance(answer.get("newOrderResponse"), dict) else answer
        rows = placed.get("orderReports") if isinstance(placed.get("orderReports"), list) else [placed]
        try:
            at = int(placed.get("transactTime") or placed.get("transactionTime") or 0)
            ids = frozenset(str(row["orderId"]) for row in rows if isinstance(row, dict) and "orderId" in row)
        except (TypeError, ValueError):
            return
        if at and (self.counts_told_at is None or at >= self.counts_told_at[0]):
            self.counts_told_at = (at, ids if self.counts_told_at is None or at > self.counts_told_at[0] else ids | self.counts_told_at[1])

    def first_fill_heard(self, at_ms: int | None = None, order_id: str = "") -> None:
        """An order of the account filled for the first time, as the user stream told it (an order of another process
        on the account too): on spot (:attr:`counts_unfilled`) Binance takes it off the count of each current window of
        the order limits, so 1 is taken off each order budget's (Binance may take more, for an order first filled as a
        maker or a large one, by amounts it does not document: the next answer's header tells the count).

        Parameters
        ----------
        at_ms
            The fill's transaction time at the venue (``T``, ms). A fill before the answer that last told the counts
            (:attr:`counts_told_at`), or at its millisecond, is one that count already left out (its frame came after
            that answer): nothing is taken off, unless the order is one that answer placed (an order filled at once is
            told in its own answer's count). ``None``: taken off.
        order_id
            The venue's id of the order (``i``).
        """
        told = self.counts_told_at
        if told is not None and at_ms is not None and (at_ms < told[0] or at_ms == told[0] and order_id not in told[1]):
            logger.debug("rate budget: the first fill of order {} at {} ms is left out of the order counts told at {} ms",
                         order_id, at_ms, told[0])
            return
        if self.counts_unfilled:
            for limit in self.order_budgets:
                limit.release(1.0, limit.window_start())

    async def read_order_counts(self) -> None:
        """``GET /api/v3/rateLimit/order`` (weight 40): the account's count in each order window, into the order budgets
        (:meth:`take_rate_limits`). An order budget of a window of :data:`COUNT_REREAD_WINDOW` or more calls it before a
        request would wait for the window's end (at most once a minute: :attr:`WeightBudget.refresh`): orders that filled
        since the last answer told the count have left it (fills the user stream did not tell, while it reconnected, or
        ones Binance took more than 1 off for), so a day used up need not hold every order until 00:00 UTC. A failure
        is logged at WARNING and the counts last told stand."""
        assert self.count_endpoint is not None
        try:
            rows = await self._call(self.count_endpoint, {})
        except VenueError as exc:
            logger.warning("rate budget: re-reading the account's order counts failed ({}: {}); the counts last told stand",
                           type(exc).__name__, exc)
            return
        self.take_rate_limits(rows, "GET /api/v3/rateLimit/order")

    def take_rate_limits(self, rows: Any, source: str) -> None:
        """Take Binance's ``rateLimits`` rows (``exchangeInfo``'s, ``GET /api/v3/rateLimit/order``'s) into the budgets:
        the ``limit`` of each ``ORDERS`` window (``interval`` x ``intervalNum``) into the order budget of that window and
        its ``count``, if told, as its count; the ``REQUEST_WEIGHT`` minute's ``limit`` into the weight budget. A limit
        other than the budget's is logged at WARNING, naming both, a window no budget counts too (not counted here), and
        an order budget's window the answer lists no limit of (its default stands)."""
        if not isinstance(rows, list):
            logger.warning("rate budget: {} told no rate limits ({!r}); this client's stand ({})", source, rows, self._limits_kept())
            return
        listed: set[float] = set()
        for row in rows:
            try:
                kind, limit = str(row["rateLimitType"]), int(row["limit"])
                seconds = _UNIT_SECONDS[str(row["interval"])] * int(row["intervalNum"])
            except (KeyError, TypeError, ValueError):
                logger.warning("rate budget: {}: unreadable rate limit {!r}; left aside", source, row)
                continue
            if kind == "ORDERS":
                budgets = [b for b in self.order_budgets if b.window == seconds]
                listed.add(seconds)
            elif kind == "REQUEST_WEIGHT" and self.budget is not None:
                budgets = [b for b in (self.budget,) if b.window == seconds]
            else:
                continue
            if not budgets:
                logger.warning("rate budget: {} lists a limit of {} {} per {:g} s, which this client does not count", source,
                               limit, kind, seconds)
            for budget in budgets:
                if limit != budget.limit and limit > 0:
                    logger.warning("rate budget: {} lists {} {} per {:g} s (this client's default: {}): counting against {}",
                                   source, limit, kind, seconds, budget.limit, limit)
                    budget.set_limit(limit)
                if "count" in row and budget.header:
                    budget.observe(0, {budget.header: str(row["count"])})
        unlisted = [b.name for b in self.order_budgets if b.window not in listed]
        if unlisted:
            logger.warning("rate budget: {} lists no limit of {}; this client's stand ({})", source, ", ".join(unlisted),
                           self._limits_kept())

    def _limits_kept(self) -> str:
        """The budgets' limits, named (``"orders per 10 s: 300; orders per minute: 1200; request budget: 2400"``)."""
        return "; ".join(f"{b.name}: {b.limit}" for b in (*self.order_budgets, self.budget) if b is not None)

    def _order_limit_met(self, message: str) -> None:
        """The venue refused orders for an order limit of the account (``-1015``), which this process's budget left room
        in: another process used it up (Binance sends no ``Retry-After`` then). The window the message names (none or
        unknown: the shortest) is used up until it ends (:meth:`WeightBudget.exhaust`), rather than the weight budget's
        pause of 1 s, after which each order would meet the refusal again until the window ends."""
        window = order_limit_window(message)
        met = [b for b in self.order_budgets if b.window == window] or sorted(self.order_budgets, key=lambda b: b.window)[:1]
        for limit in met:
            until = limit.exhaust()
            logger.warning("rate budget: the venue refused orders for its limit of {}: none leaves until {} ({})",
                           limit.name, until, message)

    def _instrument(self, order: Order) -> Instrument:
        inst = self.instruments.get(order.instrument_id)
        if inst is None:
            raise VenueRejected(f"order {order.client_order_id}: {order.instrument_id} is not traded on this account")
        return inst

    async def place(self, order: Order) -> Ack:
        """``POST /api/v3/order``."""
        params = self.order_params(order, self._instrument(order))
        raw = await self._call(self.endpoint["place"], params)
        ts = int(raw.get("transactTime") or raw.get("updateTime") or 0) * 1_000_000
        return Ack(str(raw["clientOrderId"]), str(raw["orderId"]), ts)

    #: Spot cancel-replaces in one request (``POST /api/v3/order/cancelReplace``); USD-M does not.
    supports_replace = True
    #: An amend keeping priority at the venue renames the order unless the user sends its own id (:func:`order_key`).
    renames_on_amend = True

    async def replace(self, order: Order, replacement: Order) -> Ack:
        """``POST /api/v3/order/cancelReplace`` with ``cancelReplaceMode=STOP_ON_FAILURE``: ``order`` is canceled
        and ``replacement`` placed by the matching engine in one request (no cancel, no new order).

        Binance answers ``-2022`` when the cancel failed (the new order not attempted: nothing
        changed) and ``-2021`` when the cancel was done but the new order refused
        (:class:`ReplacementRejected`). The answer's ``cancelResponse.executedQty`` (in its ``data`` when
        ``-2021``) is the canceled order's filled quantity (:attr:`Ack.canceled_filled_qty`,
        :attr:`ReplacementRejected.canceled_filled_qty`).
        """
        params = self.order_params(replacement, self._instrument(replacement))
        cancel = {"cancelOrderId": order.venue_order_id} if order.venue_order_id else {"cancelOrigClientOrderId": order.client_order_id}
        params |= {"cancelReplaceMode": "STOP_ON_FAILURE"} | cancel
        try:
            raw = await self._call("private_post_order_cancelreplace", params)
        except VenueRejected as exc:
            if "error -2021:" in str(exc):
                raise ReplacementRejected(str(exc), _canceled_filled(error_body(exc).get("data") or {})) from None
            raise
        new = raw["newOrderResponse"]
        ts = int(new.get("transactTime") or new.get("updateTime") or 0) * 1_000_000
        return Ack(str(new["clientOrderId"]), str(new["orderId"]), ts, _canceled_filled(raw))

    def trails_in_oco(self, percent: float) -> bool:
        """Binance takes a trailing stop leg in an OCO list (``belowTrailingDelta``/``aboveTrailingDelta``)
        in whole basis points: ``percent`` × 100 must be a whole number of at least 1."""
        bips = percent * 100.0
        return bips >= 1.0 - 1e-9 and abs(bips - round(bips)) <= 1e-9

    async def place_oco(self, first: Order, second: Order, trail_percent: float | None = None) -> tuple[Ack, Ack]:
        """``POST /api/v3/orderList/oco``: the limit leg as ``LIMIT_MAKER`` (above a sell's last price, below
        a buy's), the stop leg as ``STOP_LOSS``/``STOP_LOSS_LIMIT``, each under its client order id.

        Binance locks the balance once for both legs and cancels one when the other fills or
        triggers. A limit leg that would take at once is refused (``LIMIT_MAKER``): neither is placed.
        With ``trail_percent`` the stop leg is a Binance trailing stop: ``TrailingDelta`` in BIPS
        (``trail_percent`` × 100) and no ``StopPrice`` (with one, Binance would only start trailing
        once the price reached it), so it trails the best trade price from the next trade on.
        """
        inst = self._instrument(first)
        limit, stop = (first, second) if first.order_type is OrderType.LIMIT else (second, first)
        lp, sp = order_params(limit, inst), order_params(stop, inst)
        if trail_percent is not None:
            if not self.trails_in_oco(trail_percent):
                raise VenueRejected(f"trailing stop {trail_percent} %: Binance takes a trailing delta in whole BIPS")
            del sp["stopPrice"]
            sp["trailingDelta"] = str(round(trail_percent * 100.0))
        above, below = (lp, sp) if limit.side is OrderSide.SELL else (sp, lp)
        params: dict[str, str] = {
            "symbol": inst.symbol, "side": lp["side"], "quantity": lp["quantity"], "newOrderRespType": "RESULT",
            "listClientOrderId": f"{limit.client_order_id}-oco"[:36],
        }
        lp["type"] = "LIMIT_MAKER"
        lp.pop("timeInForce", None)
        for pos, leg in (("above", above), ("below", below)):
            params[f"{pos}Type"] = leg["type"]
            params[f"{pos}ClientOrderId"] = leg["newClientOrderId"]
            for key, name in (("price", "Price"), ("stopPrice", "StopPrice"), ("trailingDelta", "TrailingDelta"), ("timeInForce", "TimeInForce")):
                if key in leg:
                    params[f"{pos}{name}"] = leg[key]
        raw = await self._call("private_post_orderlist_oco", params)
        reports = {str(r["clientOrderId"]): r for r in raw.get("orderReports", [])}
        ts = int(raw.get("transactionTime") or 0) * 1_000_000
        acks = []
        for order in (first, second):
            r = reports.get(order.client_order_id, {})
            acks.append(Ack(order.client_order_id, str(r.get("orderId", "")), int(r.get("transactTime") or 0) * 1_000_000 or ts))
        return acks[0], acks[1]

    #: Spot places an OCO pair in one request (``POST /api/v3/orderList/oco``).
    supports_oco = True

    async def cancel(self, order: Order) -> None:
        """``DELETE /api/v3/order`` by ``orderId`` once known, else by ``origClientOrderId`` (:func:`order_key`; USD-M: by
        ``origClientOrderId``)."""
        inst = self._instrument(order)
        await self._call(self.endpoint["cancel"], {"symbol": inst.symbol} | order_key(order, self.renames_on_amend))

    async def query(self, order: Order) -> OrderStatusReport | None:
        """``GET /api/v3/order`` by ``orderId`` once known, else by ``origClientOrderId`` (:func:`order_key`; USD-M: by
        ``origClientOrderId``), and its
        fills from ``GET /api/v3/myTrades``. The answer's client id is the venue's (another after an amend made at the
        venue that kept priority without sending the order's own)."""
        inst = self._instrument(order)
        try:
            raw = await self._call(self.endpoint["query"], {"symbol": inst.symbol} | order_key(order, self.renames_on_amend))
        except VenueRejected as exc:
            if f"error {_ORDER_NOT_FOUND}:" in str(exc):
                return None
            if f"error {_ORDER_ARCHIVED}:" in str(exc):
                return _archived(order)
            raise
        fills: tuple[OrderFilled, ...] = ()
        if float(raw["executedQty"]) > 0.0:
            trades = await self._trades_of_order(inst.symbol, raw["orderId"])
            fills = tuple(self.fill_from_trade(t, order, inst) for t in trades)
        return report_from_order(raw, order, fills)

    async def _trades_of_order(self, symbol: str, order_id: Any) -> list[dict[str, Any]]:
        """Every own trade of one venue order, :data:`TRADES_PAGE` a page (``orderId``, then ``fromId`` = the last id + 1).

        Binance answers 500 rows when no ``limit`` is sent: an order with more fills than a
        page would come back short.
        """
        params: dict[str, Any] = {"symbol": symbol, "orderId": order_id, "limit": TRADES_PAGE}
        trades: list[dict[str, Any]] = []
        while True:
            rows = await self._call(self.endpoint["trades"], params, self.trades_of_order_weight)
            trades += rows
            if len(rows) < TRADES_PAGE:
                return trades
            params = {**params, "fromId": int(rows[-1]["id"]) + 1}

    async def fills_since(self, instrument_id: str, orders: Mapping[str, Order], since_ns: int) -> list[OrderFilled]:
        """The symbol's own trades since ``since_ns`` (``GET /api/v3/myTrades``, :data:`TRADES_PAGE` rows a page).

        The first page is asked by ``startTime``/``endTime`` (Binance takes at most
        :attr:`trades_window_ms` between them: an empty window moves on to the next, up to
        now); every next page by ``fromId`` = the last trade id + 1, until a page is short.
        Trades of orders not in ``orders`` (venue order id -> order) are skipped.
        """
        inst = self.instruments.get(instrument_id)
        if inst is None:
            raise VenueRejected(f"{instrument_id} is not traded on this account")
        name, symbol, page = self.endpoint["trades"], inst.symbol, TRADES_PAGE
        now_ms = int(time.time() * 1000)
        start = since_ns // 1_000_000
        window = self.trades_window_ms
        params: dict[str, Any] = {"symbol": symbol, "startTime": start, "endTime": start + window - 1, "limit": page}
        fills: list[OrderFilled] = []
        while True:
            rows = await self._call(name, params)
            for raw in rows:
                order = orders.get(str(raw["orderId"]))
                if order is not None:
                    fills.append(self.fill_from_trade(raw, order, inst))
            by_time = "startTime" in params
            if rows and (len(rows) == page or (by_time and start + window <= now_ms)):
                params = {"symbol": symbol, "fromId": int(rows[-1]["id"]) + 1, "limit": page}
                continue
            if rows or not by_time or start + window > now_ms:
                return fills
            start += window
            params = {"symbol": symbol, "startTime": start, "endTime": start + window - 1, "limit": page}

    async def open_orders(self) -> list[OrderStatusReport]:
        """``GET /api/v3/openOrders`` of every traded symbol, each report naming its instrument (an ``orderId`` is
        numbered per symbol)."""
        reports = []
        for inst in self.instruments.values():
            for raw in await self._call(self.endpoint["open"], {"symbol": inst.symbol}):
                status = STATUS.get(str(raw["status"]), OrderStatus.ACCEPTED)
                reports.append(
                    OrderStatusReport(
                        str(raw["clientOrderId"]), str(raw["orderId"]), status, float(raw["executedQty"]),
                        int(raw.get("updateTime") or 0) * 1_000_000, quantity=venue_number(raw.get("origQty")),
                        price=venue_number(raw.get("price")), trigger_price=venue_number(raw.get("stopPrice")),
                        instrument_id=inst.instrument_id, list_id=_list_id(raw),
                    )
                )
        return reports

    async def cancel_all(self) -> list[str]:
        """Cancel every open order of every traded symbol, one ``DELETE /api/v3/order`` each (a failed one is skipped)."""
        canceled = []
        for inst in self.instruments.values():
            for raw in await self._call(self.endpoint["open"], {"symbol": inst.symbol}):
                coid = str(raw["clientOrderId"])
                params = {"symbol": inst.symbol, "origClientOrderId": coid}
                if await cancel_one(coid, lambda: self._call(self.endpoint["cancel"], params)):
                    canceled.append(coid)
        return canceled

    async def listed_symbols(self) -> set[str] | None:
        """The traded symbols ``GET /api/v3/exchangeInfo?symbol=`` lists, one request each (the whole list is megabytes);
        Binance answers ``-1121`` "Invalid symbol." for one it does not list. The first answer's ``rateLimits`` set the
        budgets' limits (:meth:`take_rate_limits`: the venue's may differ from this client's defaults,
        :data:`SPOT_ORDER_LIMITS` and :data:`WEIGHT_LIMIT`, which stand, logged, if it lists none)."""
        listed: set[str] = set()
        limits_read = False
        for symbol in sorted({inst.symbol for inst in self.instruments.values()}):
            try:
                raw = await self._call("public_get_exchangeinfo", {"symbol": symbol}, EXCHANGE_INFO_WEIGHT)
            except VenueRejected as exc:
                if "error -1121:" in str(exc):
                    continue
                raise
            if not limits_read:
                limits_read = True
                self.take_rate_limits(raw.get("rateLimits"), "GET /api/v3/exchangeInfo")
            listed |= {str(row.get("symbol")) for row in raw.get("symbols") or []}
        return listed

    async def balances(self) -> list[AccountBalance]:
        """``GET /api/v3/account`` balances (and the account id)."""
        raw = await self._call("private_get_account", {"omitZeroBalances": "true"})
        self.account_id = str(raw.get("uid", ""))
        ts = int(raw.get("updateTime") or 0) * 1_000_000
        return [AccountBalance(b["asset"], float(b["free"]), float(b["locked"]), ts) for b in raw.get("balances", [])]

    async def close(self) -> None:
        """Close ccxt's HTTP session."""
        await self._ccxt.close()


#: Request (IP) weight of each USD-M endpoint (Binance USD-M documentation; openOrders with a symbol). A new order weighs 0:
#: it counts against the order limits instead (:data:`FUTURES_ORDER_LIMITS`).
FUTURES_WEIGHTS: dict[str, int] = {
    "fapiprivate_post_algoorder": 0,
    "fapiprivate_delete_algoorder": 1,
    "fapiprivate_get_algoorder": 1,
    "fapiprivate_get_openalgoorders": 1,
    "fapiprivate_post_order": 0,
    "fapiprivate_delete_order": 1,
    "fapiprivate_get_order": 1,
    "fapiprivate_get_openorders": 1,
    "fapiprivate_get_usertrades": 5,
    "fapiprivatev2_get_balance": 5,
    "fapiprivatev2_get_positionrisk": 5,
    "fapiprivate_get_income": 30,
    "fapiprivate_get_ratelimit_order": 1,
}
#: Rows per page of ``GET /fapi/v1/income`` (Binance's maximum ``limit``).
INCOME_PAGE = 1000
#: USD-M's request-weight limit per minute.
FUTURES_WEIGHT_LIMIT = 2400
#: USD-M's order limits of an account (``exchangeInfo`` ``rateLimits`` of type ``ORDERS``; Binance: "1 on 10s order
#: rate limit(X-MBX-ORDER-COUNT-10S); 1 on 1min order rate limit(X-MBX-ORDER-COUNT-1M); 0 on IP rate limit" for a new
#: order, and, since 2026-06-20, for a new algo order): orders, window seconds, the header telling the account's count.
FUTURES_ORDER_LIMITS: tuple[tuple[int, float, str], ...] = ((300, 10.0, "X-MBX-ORDER-COUNT-10S"), (1200, 60.0, "X-MBX-ORDER-COUNT-1M"))


_STOPS = (OrderType.STOP_MARKET, OrderType.STOP_LIMIT)
#: Algo Service status of a conditional order -> core status (``TRIGGERED``/``FINISHED``: the order it placed tells the rest).
ALGO_STATUS: dict[str, OrderStatus] = {
    "NEW": OrderStatus.ACCEPTED,
    "TRIGGERING": OrderStatus.TRIGGERED,
    "TRIGGERED": OrderStatus.TRIGGERED,
    "FINISHED": OrderStatus.TRIGGERED,
    "CANCELED": OrderStatus.CANCELED,
    "REJECTED": OrderStatus.CANCELED,
    "EXPIRED": OrderStatus.EXPIRED,
}


def algo_order_params(order: Order, instrument: Instrument) -> dict[str, str]:
    """The ``POST /fapi/v1/algoOrder`` parameters of a stop (module docstring, *USD-M perpetuals*).

    Raises
    ------
    VenueRejected
        No positive trigger price, a post-only stop, a quantity below one lot once rounded.
    """
    typ = order.order_type
    if not math.isfinite(order.trigger_price) or order.trigger_price <= 0.0:
        raise VenueRejected(f"{typ}: trigger price {order.trigger_price} is not a positive number")
    if order.post_only:
        raise VenueRejected(f"post_only: only LIMIT orders can be post-only, not {typ}")
    qty = lots_to_send(order, instrument)
    params: dict[str, str] = {
        "algoType": "CONDITIONAL",
        "symbol": instrument.symbol,
        "side": "BUY" if order.side is OrderSide.BUY else "SELL",
        "positionSide": "BOTH",
        "type": "STOP_MARKET" if typ is OrderType.STOP_MARKET else "STOP",
        "quantity": decimal_text(qty, instrument.lot_size),
        "triggerPrice": decimal_text(instrument.round_price(order.trigger_price), instrument.tick_size),
        "workingType": "CONTRACT_PRICE",
        "clientAlgoId": order.client_order_id,
    }
    if typ is OrderType.STOP_LIMIT:
        params["price"] = decimal_text(instrument.round_price(order.price), instrument.tick_size)
        params["timeInForce"] = str(order.tif if isinstance(order.tif, TimeInForce) else TimeInForce(order.tif))
    if order.reduce_only:
        params["reduceOnly"] = "true"
    return params


def algo_report(raw: dict[str, Any]) -> OrderStatusReport:
    """An :class:`OrderStatusReport` of an algo order row (``GET /fapi/v1/algoOrder``), nothing filled: its
    ``quantity``, ``price`` (``"0"``, a market stop's: NaN) and ``triggerPrice``."""
    status = ALGO_STATUS.get(str(raw["algoStatus"]))
    if status is None:
        raise VenueRejected(f"order {raw.get('clientAlgoId')}: unknown Binance algo status {raw['algoStatus']!r}")
    ts = int(raw.get("updateTime") or raw.get("createTime") or 0) * 1_000_000
    return OrderStatusReport(str(raw["clientAlgoId"]), str(raw["algoId"]), status, 0.0, ts, quantity=venue_number(raw.get("quantity")),
                             price=venue_number(raw.get("price")), trigger_price=venue_number(raw.get("triggerPrice")))


def futures_order_params(order: Order, instrument: Instrument) -> dict[str, str]:
    """The ``POST /fapi/v1/order`` parameters of ``order`` (rounded to the instrument's tick and lot).

    Raises
    ------
    VenueRejected
        A stop (it goes to the Algo Service: :func:`algo_order_params`), post-only on a
        non-limit order, a quantity below one lot once rounded.
    """
    qty = lots_to_send(order, instrument)
    typ = order.order_type
    if typ not in (OrderType.MARKET, OrderType.LIMIT):
        raise VenueRejected(f"{typ}: a Binance USD-M stop is an algo order (POST /fapi/v1/algoOrder), not an order")
    if order.post_only and typ is not OrderType.LIMIT:
        raise VenueRejected(f"post_only: only LIMIT orders can be post-only, not {typ}")
    params: dict[str, str] = {
        "symbol": instrument.symbol,
        "side": "BUY" if order.side is OrderSide.BUY else "SELL",
        "positionSide": "BOTH",
        "type": "MARKET" if typ is OrderType.MARKET else "LIMIT",
        "quantity": decimal_text(qty, instrument.lot_size),
        "newClientOrderId": order.client_order_id,
        "newOrderRespType": "RESULT",
    }
    if order.reduce_only:
        params["reduceOnly"] = "true"
    if typ is OrderType.LIMIT:
        params["price"] = decimal_text(instrument.round_price(order.price), instrument.tick_size)
        tif = order.tif if isinstance(order.tif, TimeInForce) else TimeInForce(order.tif)
        params["timeInForce"] = "GTX" if order.post_only else str(tif)
    return params


class BinanceFuturesTrading(BinanceTrading):
    """Binance USD-M REST trading for one account (see the module docstring).

    Parameters as :class:`~tradebus.adapters.binance.trading.BinanceTrading`; ``rest_url`` is
    the futures base (``https://testnet.binancefuture.com`` for the testnet); ``order_budgets``: one budget per
    order limit of the account (default: :data:`FUTURES_ORDER_LIMITS`, each fed by its header), taken by every new order.
    """

    ccxt_class = _BinanceUsdm
    weights = FUTURES_WEIGHTS
    order_limits = FUTURES_ORDER_LIMITS
    counts_unfilled = False
    count_endpoint = None
    order_endpoints = {"fapiprivate_post_order": 1, "fapiprivate_post_algoorder": 1}
    #: USD-M's error answers: unknown error, internal error, unexpected or no answer from the matching engine, server
    #: overloaded leave the outcome unknown; an HTTP 429 or 418 is :class:`RateLimited`.
    errors = VenueErrors(
        "Binance",
        unknown_outcome_codes=frozenset({"-1000", "-1001", "-1006", "-1007", "-1008"}),
        rate_limit_statuses=frozenset({429, 418}),
        credential_codes=CREDENTIAL_CODES,
        clock_codes=frozenset({"-1021"}),
        advice=FUTURES_ERROR_ADVICE,
    )
    #: ``PUT /fapi/v1/order`` amends LIMIT orders only and USD-M has no cancel-replace.
    supports_replace = False
    #: USD-M's modify keeps the client id.
    renames_on_amend = False
    supports_oco = False
    #: ``ACCOUNT_UPDATE`` with reason ``FUNDING_FEE`` (:class:`~tradebus.adapters.binance.user_stream.FuturesStreamParser`).
    reports_funding = True
    trades_of_order_weight = FUTURES_WEIGHTS["fapiprivate_get_usertrades"]
    trades_window_ms = 7 * 24 * 3600 * 1000
    #: ``userTrades`` by ``orderId`` without ``startTime``/``endTime`` lists the last 7 days (spot's ``myTrades``:
    #: every trade of the order, no window documented).
    fills_history_ns = 7 * 24 * 3600 * 1_000_000_000
    #: ``GET /fapi/v1/order`` no longer finds a CANCELED or EXPIRED order without trades created more than 3 days
    #: ago (any order: 90 days, beyond :attr:`fills_history_ns`).
    forgets_unfilled_closed_ns = 3 * 24 * 3600 * 1_000_000_000
    endpoint = {
        "place": "fapiprivate_post_order",
        "cancel": "fapiprivate_delete_order",
        "query": "fapiprivate_get_order",
        "open": "fapiprivate_get_openorders",
        "trades": "fapiprivate_get_usertrades",
    }

    def __init__(
        self,
        rest_url: str,
        api_key: Any,
        api_secret: Any,
        instruments: dict[str, Instrument],
        timeout: float = 10.0,
        budget: WeightBudget | None = None,
        order_budgets: Sequence[WeightBudget] | None = None,
    ) -> None:
        budget = budget if budget is not None else WeightBudget(FUTURES_WEIGHT_LIMIT, 60.0, header="X-MBX-USED-WEIGHT-1M")
        super().__init__(rest_url, api_key, api_secret, instruments, timeout, budget, order_budgets)

    def _point_at(self, base: str) -> None:
        api = self._ccxt.urls["api"]
        for version in ("", "V2", "V3"):
            api[f"fapiPublic{version}"] = api[f"fapiPrivate{version}"] = f"{base}/fapi/{version.lower() or 'v1'}"

    def order_params(self, order: Order, instrument: Instrument) -> dict[str, str]:
        return futures_order_params(order, instrument)

    def fill_from_trade(self, raw: dict[str, Any], order: Order, instrument: Instrument) -> OrderFilled:
        return fill_from_trade(raw, order, instrument, buyer="buyer", maker="maker")

    def can_replace(self, order: Order) -> bool:
        """A waiting stop is cancel-replaced (:meth:`replace`); a limit order is not (the live venue's two-step path)."""
        return order.order_type in _STOPS and order.status in (OrderStatus.ACCEPTED, OrderStatus.SUBMITTED)

    async def place(self, order: Order) -> Ack:
        """``POST /fapi/v1/order``; a stop: ``POST /fapi/v1/algoOrder`` (its venue order id is the ``algoId``)."""
        if order.order_type not in _STOPS:
            return await super().place(order)
        raw = await self._call("fapiprivate_post_algoorder", algo_order_params(order, self._instrument(order)))
        ts = int(raw.get("updateTime") or raw.get("createTime") or 0) * 1_000_000
        return Ack(str(raw["clientAlgoId"]), str(raw["algoId"]), ts or time.time_ns())

    async def replace(self, order: Order, replacement: Order) -> Ack:
        """A waiting stop's cancel-replace in two requests sent back to back: ``DELETE /fapi/v1/algoOrder`` of
        ``order``, then ``POST /fapi/v1/algoOrder`` of ``replacement`` (the Algo Service has no amend).

        A refused cancel (the stop triggered or ended meanwhile) places nothing (:class:`VenueRejected`);
        a refused replacement after the cancel is :class:`ReplacementRejected`. The replacement is never
        withdrawn by the rate limit (:func:`~tradebus.execution.live.send_late`): the stop is canceled, it
        waits out a pause (or a weight window the cancel's answer shows full) however long.
        """
        params = algo_order_params(replacement, self._instrument(replacement))
        await self._call("fapiprivate_delete_algoorder", {"clientAlgoId": order.client_order_id})
        try:
            with send_late(f"the replacement {replacement.client_order_id} of stop {order.client_order_id} (canceled at the venue)"):
                raw = await self._call("fapiprivate_post_algoorder", params)
        except VenueRejected as exc:
            raise ReplacementRejected(str(exc)) from None
        ts = int(raw.get("updateTime") or raw.get("createTime") or 0) * 1_000_000
        return Ack(str(raw["clientAlgoId"]), str(raw["algoId"]), ts or time.time_ns())

    async def _algo_row(self, order: Order) -> dict[str, Any] | None:
        """``GET /fapi/v1/algoOrder`` of a stop by ``clientAlgoId`` (``None``: Binance has no such algo order)."""
        try:
            return dict(await self._call("fapiprivate_get_algoorder", {"clientAlgoId": order.client_order_id}))
        except VenueRejected as exc:
            if f"error {_ORDER_NOT_FOUND}:" in str(exc):
                return None
            raise

    async def cancel(self, order: Order) -> None:
        """``DELETE /fapi/v1/order``; a stop: ``DELETE /fapi/v1/algoOrder``, or, triggered, the order it placed."""
        if order.order_type not in _STOPS:
            await super().cancel(order)
            return
        refused: VenueRejected | None = None
        if order.status not in (OrderStatus.TRIGGERED, OrderStatus.PARTIALLY_FILLED):
            try:
                await self._call("fapiprivate_delete_algoorder", {"clientAlgoId": order.client_order_id})
                return
            except RateLimited:
                raise
            except VenueRejected as exc:
                refused = exc  # triggered since this process last heard of it (else the row below says why)
        algo = await self._algo_row(order)
        actual = str((algo or {}).get("actualOrderId") or "")
        if refused is not None and algo is not None and not actual and ALGO_STATUS.get(str(algo["algoStatus"])) is OrderStatus.ACCEPTED:
            raise refused  # not triggered: Binance refused the cancel of the stop itself, for the reason it gave
        if algo is None or not actual:
            state = algo["algoStatus"] if algo else "unknown"
            raise VenueRejected(f"order {order.client_order_id}: the Binance stop is {state}, nothing to cancel")
        await self._call("fapiprivate_delete_order", {"symbol": self._instrument(order).symbol, "orderId": actual})

    async def query(self, order: Order) -> OrderStatusReport | None:
        """``GET /fapi/v1/order``; a stop: its algo order, then the order it placed and that order's fills (under the ``algoId``)."""
        if order.order_type not in _STOPS:
            return await super().query(order)
        algo = await self._algo_row(order)
        if algo is None:
            return None
        actual = str(algo.get("actualOrderId") or "")
        if not actual or algo["algoStatus"] in ("CANCELED", "REJECTED", "EXPIRED"):
            return algo_report(algo)
        inst = self._instrument(order)
        raw = await self._call("fapiprivate_get_order", {"symbol": inst.symbol, "orderId": actual})
        fills: tuple[OrderFilled, ...] = ()
        algo_id = str(algo["algoId"])
        if float(raw["executedQty"]) > 0.0:
            trades = await self._trades_of_order(inst.symbol, actual)
            fills = tuple(self.fill_from_trade(t | {"orderId": algo_id}, order, inst) for t in trades)
        report = report_from_order(raw | {"clientOrderId": order.client_order_id, "orderId": algo_id}, order, fills)
        if report.status is OrderStatus.ACCEPTED:  # the order it placed works: the stop has triggered
            report = msgspec.structs.replace(report, status=OrderStatus.TRIGGERED)
        return report

    async def fills_since(self, instrument_id: str, orders: Mapping[str, Order], since_ns: int) -> list[OrderFilled]:
        """As :meth:`BinanceTrading.fills_since`; a stop in ``orders`` (by its ``algoId``) that has triggered is asked
        its ``actualOrderId`` (one ``GET /fapi/v1/algoOrder`` each) and that order's trades are its fills.

        A stop is never looked up by its ``algoId``: algo ids and order ids are two sequences, and
        a trade of another order may carry the same number.
        """
        keyed = {k: o for k, o in orders.items() if o.order_type not in _STOPS}
        for order in orders.values():
            if order.order_type in _STOPS and (algo := await self._algo_row(order)) is not None and algo.get("actualOrderId"):
                keyed[str(algo["actualOrderId"])] = order
        fills = await super().fills_since(instrument_id, keyed, since_ns)
        venue_id = {id(o): k for k, o in orders.items()}
        return [msgspec.structs.replace(f, venue_order_id=venue_id[id(keyed[f.venue_order_id])]) for f in fills]

    async def funding_since(self, since_ns: int) -> list[FundingPaid | FundingOutsideRun]:
        """The account's funding payments since ``since_ns``: ``GET /fapi/v1/income``
        with ``incomeType=FUNDING_FEE``, :data:`INCOME_PAGE` rows a page, oldest first.

        Each next page starts at the last row's ``time`` (``startTime`` is inclusive; the rows
        already read there are skipped by ``tranId``), or 1 ms later when a whole page shares
        that time, until a page is short. A row's ``income`` is what the account received (its
        payment is the negation); a row of a symbol not traded here is a :class:`FundingOutsideRun`
        (a cross payment the user stream told names no symbol: it may be one of those).
        """
        start = since_ns // 1_000_000
        seen: set[str] = set()
        out: list[FundingPaid | FundingOutsideRun] = []
        nan = math.nan
        while True:
            params = {"incomeType": "FUNDING_FEE", "startTime": start, "limit": INCOME_PAGE}
            rows = await self._call("fapiprivate_get_income", params)
            for row in rows:
                tran_id = str(row.get("tranId", ""))
                if tran_id in seen or row.get("incomeType", "FUNDING_FEE") != "FUNDING_FEE":
                    continue
                seen.add(tran_id)
                symbol = str(row.get("symbol", ""))
                inst = self.by_symbol.get(symbol)
                ts = int(row["time"]) * 1_000_000
                if inst is None:
                    out.append(FundingOutsideRun(symbol, str(row.get("asset", "")), -float(row["income"]), ts))
                    continue
                out.append(FundingPaid(inst.instrument_id, nan, nan, nan, -float(row["income"]), ts, time.time_ns()))
            if len(rows) < INCOME_PAGE:
                return out
            last = int(rows[-1]["time"])
            start = last if last > start else start + 1

    async def open_orders(self) -> list[OrderStatusReport]:
        """``GET /fapi/v1/openOrders`` and ``GET /fapi/v1/openAlgoOrders`` (waiting stops) of every traded symbol."""
        reports = await super().open_orders()
        for inst in self.instruments.values():
            rows = await self._call("fapiprivate_get_openalgoorders", {"symbol": inst.symbol})
            reports.extend(algo_report(r) for r in rows)
        return reports

    async def cancel_all(self) -> list[str]:
        """Cancel every open order and waiting stop of every traded symbol, one request each (a failed one is skipped)."""
        canceled = await super().cancel_all()
        for inst in self.instruments.values():
            for raw in await self._call("fapiprivate_get_openalgoorders", {"symbol": inst.symbol}):
                coid = str(raw["clientAlgoId"])
                params = {"algoId": raw["algoId"]}
                if await cancel_one(coid, lambda: self._call("fapiprivate_delete_algoorder", params)):
                    canceled.append(coid)
        return canceled

    async def balances(self) -> list[AccountBalance]:
        """``GET /fapi/v2/balance``: each asset's wallet balance (margin in use not split out)."""
        rows = await self._call("fapiprivatev2_get_balance", {})
        return [AccountBalance(r["asset"], float(r["balance"]), 0.0, int(r.get("updateTime") or 0) * 1_000_000) for r in rows]

    async def positions(self) -> list[AccountPosition]:
        """``GET /fapi/v2/positionRisk`` of the traded symbols (one-way mode: ``positionSide`` BOTH)."""
        rows = await self._call("fapiprivatev2_get_positionrisk", {})
        out = []
        for r in rows:
            inst = self.by_symbol.get(str(r["symbol"]))
            if inst is None or r.get("positionSide", "BOTH") != "BOTH":
                continue
            ts = int(r.get("updateTime") or 0) * 1_000_000
            out.append(AccountPosition(inst.instrument_id, float(r["positionAmt"]), float(r["entryPrice"]), ts))
        return out

    async def listed_symbols(self) -> set[str] | None:
        """Not read here: a symbol USD-M does not list has no leverage in ``positionRisk`` (:meth:`margin_settings`).

        This start-up read takes instead the account's own order limits, ``GET /fapi/v1/rateLimit/order`` (weight 1;
        Binance's "Query User Rate Limit": ``ORDERS`` rows without a count), into the order budgets
        (:meth:`take_rate_limits`), as spot's takes its ``exchangeInfo``'s: an account's may be lower than
        :data:`FUTURES_ORDER_LIMITS` (``exchangeInfo`` lists those, not the account's). A read refused or unanswered
        leaves the defaults, logged at WARNING naming them; a rate limit's refusal or the key's is raised (the
        start-up reads again after the pause, or stops).
        """
        try:
            rows = await self._call("fapiprivate_get_ratelimit_order", {})
        except (RateLimited, CredentialsRefused):
            raise
        except VenueError as exc:
            logger.warning("rate budget: reading the account's order limits (GET /fapi/v1/rateLimit/order) failed ({}: {}); "
                           "this client's stand ({})", type(exc).__name__, exc, self._limits_kept())
            return None
        self.take_rate_limits(rows, "GET /fapi/v1/rateLimit/order")
        return None

    async def margin_settings(self) -> list[AccountMargin] | None:
        """``GET /fapi/v2/positionRisk``: each traded symbol's ``leverage`` and ``marginType``; rows of
        ``positionSide`` ``LONG``/``SHORT`` (not ``BOTH``) mean the account is in hedge mode."""
        rows = await self._call("fapiprivatev2_get_positionrisk", {})
        out: dict[str, AccountMargin] = {}
        for r in rows:
            inst = self.by_symbol.get(str(r["symbol"]))
            if inst is None:
                continue
            hedged = r.get("positionSide", "BOTH") != "BOTH" or not out.get(inst.instrument_id, AccountMargin("", 0.0, "")).one_way
            out[inst.instrument_id] = AccountMargin(inst.instrument_id, float(r["leverage"]), str(r["marginType"]).lower(), not hedged)
        return list(out.values())
