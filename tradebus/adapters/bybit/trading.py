"""Bybit v5 spot trading over REST, through ccxt's async client: the venue's :class:`TradingApi`.

Requests go through ccxt's implicit, signed endpoints (``private_post_v5_order_create`` ...):
ccxt signs them as Bybit v5 documents (``X-BAPI-API-KEY``, ``X-BAPI-TIMESTAMP``,
``X-BAPI-RECV-WINDOW`` and ``X-BAPI-SIGN`` = hex HMAC-SHA256 of timestamp + key + recv
window + the JSON body or the query string). The testnet is its own host. The order mapping
(``POST /v5/order/create``, ``category=spot``):

=====================  ==========================================================
tradebus               Bybit
=====================  ==========================================================
client_order_id        ``orderLinkId``
MARKET                 ``orderType=Market``, ``marketUnit=baseCoin`` (size in the base asset)
LIMIT GTC / IOC / FOK  ``orderType=Limit`` + ``timeInForce`` GTC / IOC / FOK + ``price``
LIMIT post_only        ``timeInForce=PostOnly``
STOP_MARKET            a conditional order: ``orderType=Market`` + ``triggerPrice`` +
                       ``orderFilter=StopOrder`` (Bybit spot takes no ``triggerDirection``: it
                       triggers on a rise to a trigger above the last price at placement, on a
                       fall to one at or below it)
STOP_LIMIT             the same with ``orderType=Limit`` + ``price`` + ``timeInForce``
reduce_only            not on spot: refused locally
=====================  ==========================================================

A conditional order is reported ``Untriggered`` (accepted), then ``Triggered``
(``OrderTriggered``), then as the order it became (``New``, fills, ``Filled``), under the same
``orderId`` and ``orderLinkId``. Its trigger is amended by ``triggerPrice`` on ``/v5/order/amend``.
On spot, an untriggered conditional order is canceled with ``orderFilter=StopOrder`` and a
triggered one as an ordinary order (``Order``, Bybit's default); :meth:`BybitTrading.cancel` sends
the filter the order's known state implies and, on ``170213`` (no such order), the other one.

Query: ``GET /v5/order/realtime`` by ``orderLinkId`` (then ``/v5/order/history`` when the
order is no longer there) and its fills from ``GET /v5/execution/list`` (100 a page, by
``cursor``; the fills missed while down, :meth:`BybitTrading.fills_since`, from the same
list in windows of 7 days); open orders
``GET /v5/order/realtime`` (50 a page, by ``cursor``; a unified account lists conditional
orders with the others); balances ``GET /v5/account/wallet-balance`` (unified account);
amend ``POST /v5/order/amend``. Rate limit: a budget of 10 requests per second shared by
every caller of the account (Bybit's per-endpoint limits are 10-20 per second); a ``10006``
answer ("Too many visits", HTTP 200) pauses every caller until its ``X-Bapi-Limit-Reset-Timestamp``,
a ``10018`` (the IP's limit) or ``429`` (high server load) answer 1 s (:attr:`BybitTrading.errors`), an
HTTP ``403`` ("access too frequent": the IP banned) 10 minutes, as Bybit says to wait (:data:`BAN_SECONDS`).
The share of the limit left (the budget's ``left``) is the last answer's ``X-Bapi-Limit-Status``
over its ``X-Bapi-Limit`` (the endpoint just called).

Linear perpetuals
-----------------

:class:`BybitLinearTrading` trades USDT perpetuals (``category=linear``) of the same unified
account, on the same endpoints, in one-way position mode:

=====================  ==========================================================
tradebus               Bybit ``POST /v5/order/create``, ``category=linear``
=====================  ==========================================================
side                   ``side`` + ``positionIdx=0`` (one-way mode)
MARKET                 ``orderType=Market`` (``qty`` in the base coin)
LIMIT GTC / IOC / FOK  ``orderType=Limit`` + ``timeInForce`` + ``price``
LIMIT post_only        ``timeInForce=PostOnly`` (Bybit cancels it if it would take)
reduce_only            ``reduceOnly=true`` (refused with retCode ``110017`` if it would
                       increase the position)
STOP_MARKET            ``orderType=Market`` + ``triggerPrice`` + ``triggerBy=LastPrice`` +
                       ``triggerDirection`` 1 (rises to it) for a buy, 2 (falls to it) for a sell:
                       Bybit refuses a trigger already passed (``110092`` / ``110093``)
STOP_LIMIT             the same with ``orderType=Limit`` + ``price`` + ``timeInForce``
=====================  ==========================================================

Quantities are base units rounded down to the lot (Bybit's ``qtyStep``), prices to the tick.
Positions come from ``GET /v5/position/list`` (``size`` with ``side`` Buy/Sell, ``avgPrice``),
balances from the unified wallet (the USDT margin). At start (:meth:`BybitLinearTrading.margin_settings`)
each symbol's ``leverage`` (``/v5/position/list``), the account's margin mode (``marginMode`` of
``GET /v5/account/info``: account-wide on a unified account) and its position mode (rows of
``positionIdx`` 1 and 2: hedge mode, where orders of ``positionIdx`` 0 are refused) are checked
against the config. A switch to hedge mode later shows in :meth:`BybitLinearTrading.positions` as
positions that are not ``one_way`` (the reconciliation round then holds the instrument).

Funding is the venue's: each settlement is an ``execution`` push with ``execType=Funding``
(:class:`~tradebus.adapters.bybit.user_stream.UserStreamParser`); one settled while the stream
was not heard (the daemon down, the stream reconnecting) is read from
``GET /v5/account/transaction-log`` with ``type=SETTLEMENT`` (:meth:`BybitLinearTrading.funding_since`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

import ccxt.async_support as ccxt_async
from pydantic import SecretStr

from tradebus.adapters.common.ratelimit import WeightBudget
from tradebus.adapters.bybit.user_stream import position_from_row, wire_symbol
from tradebus.adapters.common.rest_trading import CcxtTrading, decimal_text
from tradebus.adapters.common.user_stream import venue_fee, venue_number
from tradebus.adapters.common.venue_errors import VenueErrors
from tradebus.engine.instrument import Instrument
from tradebus.engine.messages import FundingPaid, Liquidity, OrderFilled, OrderSide, OrderStatus, OrderType, TimeInForce
from tradebus.execution.live import AccountBalance, AccountMargin, AccountPosition, Ack, VenueRejected, cancel_one, lots_to_send
from tradebus.execution.orders import Order
from tradebus.execution.venue import OrderStatusReport

__all__ = ["STATUS", "BybitLinearTrading", "BybitTrading", "fill_from_row", "linear_order_params", "order_params", "report_from_row"]

#: Bybit order status -> core status.
STATUS: dict[str, OrderStatus] = {
    "New": OrderStatus.ACCEPTED,
    "Untriggered": OrderStatus.ACCEPTED,
    "Triggered": OrderStatus.TRIGGERED,
    "PartiallyFilled": OrderStatus.PARTIALLY_FILLED,
    "Filled": OrderStatus.FILLED,
    "Cancelled": OrderStatus.CANCELED,
    "PartiallyFilledCanceled": OrderStatus.CANCELED,
    "Rejected": OrderStatus.REJECTED,
    "Deactivated": OrderStatus.EXPIRED,
}
_TIF = {TimeInForce.GTC: "GTC", TimeInForce.IOC: "IOC", TimeInForce.FOK: "FOK"}
#: Rows of one ``GET /v5/execution/list`` page (Bybit's most).
EXECUTIONS_PAGE = 100
#: Rows of one ``GET /v5/order/realtime`` page of open orders (Bybit's most; 20 when not asked).
OPEN_ORDERS_PAGE = 50
#: Longest span between ``startTime`` and ``endTime`` of one ``/v5/execution/list`` or
#: ``/v5/account/transaction-log`` request, ms (7 days).
EXECUTIONS_WINDOW_MS = 7 * 24 * 3600 * 1000
#: Rows of one ``GET /v5/account/transaction-log`` page (Bybit's most; 20 when not asked).
TRANSACTION_LOG_PAGE = 50
#: Rows of one ``GET /v5/market/instruments-info`` page (Bybit's most; spot answers in one page).
INSTRUMENTS_PAGE = 1000
#: The header of Bybit's answers saying when a rate limit ends (epoch ms; with retCode ``10006``, HTTP 200).
RESET_HEADER = "X-Bapi-Limit-Reset-Timestamp"
#: The headers of Bybit's answers holding the requests left to the endpoint just called, and its limit.
LIMIT_STATUS_HEADER = "X-Bapi-Limit-Status"
LIMIT_HEADER = "X-Bapi-Limit"
#: HTTP status of Bybit's IP ban ("403, access too frequent": more than 600 requests in 5 s from the IP), and how
#: long every request waits after it: Bybit sends no ``Retry-After`` and says to wait at least 10 minutes.
BAN_STATUS = 403
BAN_SECONDS = 600.0
#: Bybit's retCode of a cancel or amend naming no order it has (of the ``orderFilter`` asked, on spot).
NO_SUCH_ORDER = "170213"
#: ``marginMode`` of ``GET /v5/account/info`` (account-wide on a unified account) -> the instrument's ``margin_mode``;
#: ``PORTFOLIO_MARGIN`` is neither, and differs from any config.
MARGIN_MODES = {"REGULAR_MARGIN": "cross", "ISOLATED_MARGIN": "isolated"}
_STOPS = (OrderType.STOP_MARKET, OrderType.STOP_LIMIT)


def _typed(order: Order, instrument: Instrument) -> dict[str, str]:
    """``orderType`` with its ``price`` and ``timeInForce`` (a limit) and its ``triggerPrice`` (a stop)."""
    typ = order.order_type
    out = {"orderType": "Market" if typ in (OrderType.MARKET, OrderType.STOP_MARKET) else "Limit"}
    if typ in (OrderType.LIMIT, OrderType.STOP_LIMIT):
        tif = order.tif if isinstance(order.tif, TimeInForce) else TimeInForce(order.tif)
        out["price"] = decimal_text(instrument.round_price(order.price), instrument.tick_size)
        out["timeInForce"] = "PostOnly" if order.post_only else _TIF.get(tif, "GTC")
    if typ in _STOPS:
        if not math.isfinite(order.trigger_price) or order.trigger_price <= 0.0:
            raise VenueRejected(f"{typ}: trigger price {order.trigger_price} is not a positive number")
        out["triggerPrice"] = decimal_text(instrument.round_price(order.trigger_price), instrument.tick_size)
    return out


def order_params(order: Order, instrument: Instrument) -> dict[str, str]:
    """The ``POST /v5/order/create`` body of ``order`` (rounded to the instrument's tick and lot).

    Raises
    ------
    VenueRejected
        For what Bybit spot cannot take here (reduce-only, no trigger price, nothing left once rounded).
    """
    if order.reduce_only:
        raise VenueRejected("reduce_only: Bybit spot has no reduce-only orders")
    qty = lots_to_send(order, instrument)
    params = {
        "category": "spot",
        "symbol": wire_symbol(instrument),
        "side": "Buy" if order.side is OrderSide.BUY else "Sell",
        "qty": decimal_text(qty, instrument.lot_size),
        "orderLinkId": order.client_order_id,
    }
    typ = order.order_type
    if typ not in (OrderType.MARKET, OrderType.LIMIT, *_STOPS):
        raise VenueRejected(f"{typ}: not an order type Bybit spot takes here")
    params |= _typed(order, instrument)
    if params["orderType"] == "Market":
        params["marketUnit"] = "baseCoin"
    if typ in _STOPS:
        params["orderFilter"] = "StopOrder"
    return params


def linear_order_params(order: Order, instrument: Instrument) -> dict[str, Any]:
    """The ``POST /v5/order/create`` body of a linear-perpetual ``order`` (one-way mode, rounded to tick and lot).

    Raises
    ------
    VenueRejected
        Post-only on a market order, a stop without a trigger price, nothing left once rounded.
    """
    qty = lots_to_send(order, instrument)
    typ = order.order_type
    if typ not in (OrderType.MARKET, OrderType.LIMIT, *_STOPS):
        raise VenueRejected(f"{typ}: not an order type Bybit linear takes here")
    if order.post_only and typ not in (OrderType.LIMIT, OrderType.STOP_LIMIT):
        raise VenueRejected(f"post_only: only LIMIT orders can be post-only, not {typ}")
    params: dict[str, Any] = {
        "category": "linear",
        "symbol": wire_symbol(instrument),
        "side": "Buy" if order.side is OrderSide.BUY else "Sell",
        "qty": decimal_text(qty, instrument.lot_size),
        "orderLinkId": order.client_order_id,
        "positionIdx": 0,
    }
    params |= _typed(order, instrument)
    if typ in _STOPS:
        params["triggerDirection"] = 1 if order.side is OrderSide.BUY else 2
        params["triggerBy"] = "LastPrice"
    if order.reduce_only:
        params["reduceOnly"] = True
    return params


def fill_from_row(raw: dict[str, Any], order: Order, instrument: Instrument) -> OrderFilled:
    """An ``OrderFilled`` from one ``GET /v5/execution/list`` row (fee in its ``feeCurrency``: ``fee_asset``)."""
    px = float(raw["execPrice"])
    fee, fee_asset = venue_fee(float(raw.get("execFee") or 0.0), raw.get("feeCurrency"), instrument)
    ts = int(raw["execTime"]) * 1_000_000
    return OrderFilled(
        order.strategy_id,
        order.instrument_id,
        order.client_order_id,
        str(raw["orderId"]),
        str(raw["execId"]),
        OrderSide.BUY if raw["side"] == "Buy" else OrderSide.SELL,
        float(raw["execQty"]),
        px,
        fee,
        Liquidity.MAKER if raw.get("isMaker") else Liquidity.TAKER,
        ts,
        ts,
        fee_asset,
    )


def report_from_row(raw: dict[str, Any], fills: tuple[OrderFilled, ...] = ()) -> OrderStatusReport:
    """An :class:`OrderStatusReport` from one Bybit order row, with its total ``qty``, limit ``price`` and ``triggerPrice``
    (``"0"`` or empty where the order has none: NaN)."""
    status = STATUS.get(str(raw["orderStatus"]))
    if status is None:
        raise VenueRejected(f"order {raw.get('orderLinkId')}: unknown Bybit status {raw['orderStatus']!r}")
    ts = int(raw.get("updatedTime") or raw.get("createdTime") or 0) * 1_000_000
    return OrderStatusReport(str(raw["orderLinkId"]), str(raw["orderId"]), status, float(raw.get("cumExecQty") or 0.0), ts, fills,
                             quantity=venue_number(raw.get("qty")), price=venue_number(raw.get("price")),
                             trigger_price=venue_number(raw.get("triggerPrice")))


class BybitTrading(CcxtTrading):
    """Bybit v5 spot REST trading for one account (see the module docstring).

    Parameters
    ----------
    rest_url
        Base URL (``https://api-testnet.bybit.com`` for the testnet; a local emulator in tests).
    api_key, api_secret
        The account's key pair, held as secrets.
    instruments
        ``instrument_id -> Instrument`` traded on this account.
    timeout
        HTTP timeout per request, seconds.
    budget
        The account's shared budget (default 10 requests per second).
    """

    #: Bybit's retCodes that leave the outcome unknown (v5 error codes): server timeout (``10000``, ``5004``), server
    #: error or service restarting (``10016``), spot's internal error (``170001``), backend timeout (``170007``),
    #: network error (``170032``), order creation / cancellation / modification timeout (``170146``, ``170147``,
    #: ``170310``), system error (``170234``); ccxt maps most to a plain ``ExchangeError`` or ``InvalidOrder``.
    #: Refused for a rate limit: ``10006`` (the account's limit) and ``10018`` (the IP's), which ccxt already maps to
    #: ``RateLimitExceeded``, and ``429`` ("the trading service is experiencing a high server load, please retry"),
    #: which it does not; HTTP 429 and the IP ban's 403 (ccxt's ``RateLimitExceeded`` too). A cancel or amend refused
    #: while Bybit processes the order, "please try again later" (v5 error codes): ``110079`` "the order is processing
    #: and can not be operated", spot's ``170191`` "can not cancel order".
    errors = VenueErrors(
        "Bybit",
        unknown_outcome_codes=frozenset({"5004", "10000", "10016", "170001", "170007", "170032", "170146", "170147", "170234", "170310"}),
        rate_limit_codes=frozenset({"429", "10006", "10018"}),
        rate_limit_statuses=frozenset({429, BAN_STATUS}),
        busy_codes=frozenset({"110079", "170191"}),
        # an unknown key, a signature of another secret, a permission the key lacks, an IP it is not bound to
        clock_codes=frozenset({"10002"}),
        credential_codes=frozenset({"10003", "10004", "10005", "10010"}),
    )
    supports_amend = True
    #: ``GET /v5/execution/list`` by ``orderId`` without ``startTime``/``endTime`` lists the last 7 days.
    fills_history_ns = 7 * 24 * 3600 * 1_000_000_000
    #: ``/v5/order/history`` lists a ``Cancelled`` order for 24 hours (one with fills, ``PartiallyFilledCanceled`` on
    #: spot, 7 days and beyond).
    forgets_unfilled_closed_ns: int | None = 24 * 3600 * 1_000_000_000
    #: The Bybit ``category`` of every request of this account.
    category = "spot"

    def __init__(
        self,
        rest_url: str,
        api_key: SecretStr,
        api_secret: SecretStr,
        instruments: dict[str, Instrument],
        timeout: float = 10.0,
        *,
        budget: WeightBudget | None = None,
    ) -> None:
        exchange = ccxt_async.bybit(
            {
                "apiKey": api_key.get_secret_value(),
                "secret": api_secret.get_secret_value(),
                "timeout": int(timeout * 1000),
                "enableRateLimit": False,
            }
        )
        api = exchange.urls["api"]
        api["public"] = api["private"] = rest_url.rstrip("/")
        if budget is None:
            budget = WeightBudget(
                10, 1.0, ban_status=BAN_STATUS, ban_backoff=BAN_SECONDS,
                reset_header=RESET_HEADER, remaining_header=LIMIT_STATUS_HEADER, limit_header=LIMIT_HEADER,
            )
        super().__init__(exchange, instruments, budget, {})

    async def listed_symbols(self) -> set[str]:
        """The symbols of the traded instruments ``GET /v5/market/instruments-info`` lists in the account's ``category``
        (every page, :data:`INSTRUMENTS_PAGE` a page)."""
        wire: set[str] = set()
        params: dict[str, Any] = {"category": self.category, "limit": str(INSTRUMENTS_PAGE)}
        while True:
            result = (await self.call("public_get_v5_market_instruments_info", params))["result"]
            wire |= {str(row.get("symbol")) for row in result.get("list") or []}
            cursor = str(result.get("nextPageCursor") or "")
            if not cursor:
                break
            params = {**params, "cursor": cursor}
        return {inst.symbol for inst in self.instruments.values() if wire_symbol(inst) in wire}

    def order_params(self, order: Order, instrument: Instrument) -> dict[str, Any]:
        """The new-order body (:func:`order_params`)."""
        return order_params(order, instrument)

    async def place(self, order: Order) -> Ack:
        """``POST /v5/order/create``."""
        raw = await self.call("private_post_v5_order_create", self.order_params(order, self.instrument(order)))
        result = raw["result"]
        return Ack(str(result["orderLinkId"]), str(result["orderId"]), int(raw.get("time") or 0) * 1_000_000)

    async def cancel(self, order: Order) -> None:
        """``POST /v5/order/cancel`` by ``orderLinkId`` (a spot stop: with its ``orderFilter``, see the module docstring)."""
        inst = self.instrument(order)
        params = {"category": self.category, "symbol": wire_symbol(inst), "orderLinkId": order.client_order_id}
        if self.category != "spot" or order.order_type not in _STOPS:
            await self.call("private_post_v5_order_cancel", params)
            return
        untriggered = order.status not in (OrderStatus.TRIGGERED, OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED)
        first, other = ("StopOrder", "Order") if untriggered else ("Order", "StopOrder")
        try:
            await self.call("private_post_v5_order_cancel", params | {"orderFilter": first})
        except VenueRejected as exc:
            if f"error {NO_SUCH_ORDER}" not in str(exc):
                raise
            # It triggered (or not) since this process last heard of it: the other kind has it.
            await self.call("private_post_v5_order_cancel", params | {"orderFilter": other})

    @property
    def recv_window_ms(self) -> int:
        """The ``X-BAPI-RECV-WINDOW`` every request carries (ccxt's ``recvWindow``, Bybit's default 5,000 ms)."""
        return int(self._ccxt.options["recvWindow"])

    @recv_window_ms.setter
    def recv_window_ms(self, value: int) -> None:
        self._ccxt.options["recvWindow"] = int(value)

    def amend_expiry_s(self, order: Order) -> float:
        """The request's ``X-BAPI-RECV-WINDOW`` and 1 s: Bybit takes a request while ``server_time - recv_window <=
        timestamp < server_time + 1000`` (its API guide), so one it took was stamped at most 1 s ahead of its clock."""
        return (self.recv_window_ms + 1000) / 1000

    async def amend(self, order: Order, quantity: float, price: float, trigger_price: float = math.nan) -> None:
        """``POST /v5/order/amend``: the new total quantity, price and/or trigger price (NaN: unchanged)."""
        inst = self.instrument(order)
        params = {"category": self.category, "symbol": wire_symbol(inst), "orderLinkId": order.client_order_id}
        if not math.isnan(trigger_price):
            if order.order_type not in _STOPS:
                raise VenueRejected(f"order {order.client_order_id}: a {order.order_type} order has no trigger to amend")
            params["triggerPrice"] = decimal_text(inst.round_price(trigger_price), inst.tick_size)
        if not math.isnan(quantity):
            params["qty"] = decimal_text(inst.round_quantity(quantity), inst.lot_size)
        if not math.isnan(price):
            params["price"] = decimal_text(inst.round_price(price), inst.tick_size)
        await self.call("private_post_v5_order_amend", params)

    async def query(self, order: Order) -> OrderStatusReport | None:
        """``GET /v5/order/realtime`` (else ``/v5/order/history``) by ``orderLinkId``, and its fills."""
        inst = self.instrument(order)
        params = {"category": self.category, "symbol": wire_symbol(inst), "orderLinkId": order.client_order_id}
        rows = (await self.call("private_get_v5_order_realtime", params))["result"]["list"]
        if not rows:
            rows = (await self.call("private_get_v5_order_history", params))["result"]["list"]
        if not rows:
            return None
        row = rows[0]
        fills: tuple[OrderFilled, ...] = ()
        if float(row.get("cumExecQty") or 0.0) > 0.0:
            execs = await self._executions({"category": self.category, "symbol": wire_symbol(inst), "orderId": row["orderId"]})
            fills = tuple(fill_from_row(e, order, inst) for e in reversed(execs))
        return report_from_row(row, fills)

    async def _executions(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        """Every trade execution of a ``GET /v5/execution/list`` query, newest first, following ``nextPageCursor``."""
        params = {**params, "limit": EXECUTIONS_PAGE}
        rows: list[dict[str, Any]] = []
        while True:
            result = (await self.call("private_get_v5_execution_list", params))["result"]
            rows.extend(e for e in result["list"] if e.get("execType", "Trade") == "Trade")
            cursor = result.get("nextPageCursor")
            if not cursor or not result["list"]:
                return rows
            params = {**params, "cursor": cursor}

    async def fills_since(self, instrument_id: str, orders: Mapping[str, Order], since_ns: int) -> list[OrderFilled]:
        """The symbol's own trades since ``since_ns``, oldest first (``GET /v5/execution/list``, 100 a page).

        Bybit takes at most :data:`EXECUTIONS_WINDOW_MS` between ``startTime`` and ``endTime``:
        the span from ``since_ns`` to now is asked window by window, each window page by page
        through ``nextPageCursor``. Trades of orders not in ``orders`` (orderId -> order) are skipped.
        """
        inst = self.instruments.get(instrument_id)
        if inst is None:
            raise VenueRejected(f"{instrument_id} is not traded on this account")
        start, now_ms = since_ns // 1_000_000, int(time.time() * 1000)
        rows: list[dict[str, Any]] = []
        while True:
            end = start + EXECUTIONS_WINDOW_MS - 1
            window = {"category": self.category, "symbol": wire_symbol(inst), "startTime": start, "endTime": end}
            rows[:0] = await self._executions(window)  # newest first: a later window goes in front
            if end >= now_ms:
                break
            start = end + 1
        return [fill_from_row(e, orders[str(e["orderId"])], inst) for e in reversed(rows) if str(e["orderId"]) in orders]

    async def _open_rows(self, inst: Instrument) -> list[dict[str, Any]]:
        """Every open order of ``inst``, conditional ones included: :data:`OPEN_ORDERS_PAGE` a page, following ``nextPageCursor``."""
        params: dict[str, Any] = {"category": self.category, "symbol": wire_symbol(inst), "openOnly": "0", "limit": OPEN_ORDERS_PAGE}
        rows: list[dict[str, Any]] = []
        while True:
            result = (await self.call("private_get_v5_order_realtime", params))["result"]
            rows.extend(result["list"])
            cursor = result.get("nextPageCursor")
            if not cursor or not result["list"]:
                return rows
            params = {**params, "cursor": cursor}

    async def open_orders(self) -> list[OrderStatusReport]:
        """``GET /v5/order/realtime`` of every traded symbol."""
        return [report_from_row(row) for inst in self.instruments.values() for row in await self._open_rows(inst)]

    async def cancel_all(self) -> list[str]:
        """Cancel every open order of every traded symbol, one request each (a failed one is skipped)."""
        canceled = []
        for inst in self.instruments.values():
            for row in await self._open_rows(inst):
                body = {"category": self.category, "symbol": wire_symbol(inst), "orderId": str(row["orderId"])}
                if self.category == "spot" and row.get("orderStatus") == "Untriggered":
                    body["orderFilter"] = "StopOrder"
                if await cancel_one(str(row["orderLinkId"]), lambda: self.call("private_post_v5_order_cancel", body)):
                    canceled.append(str(row["orderLinkId"]))
        return canceled

    async def balances(self) -> list[AccountBalance]:
        """``GET /v5/account/wallet-balance`` of the unified account."""
        raw = await self.call("private_get_v5_account_wallet_balance", {"accountType": "UNIFIED"})
        ts = int(raw.get("time") or 0) * 1_000_000
        out = []
        for account in raw["result"]["list"]:
            for coin in account.get("coin") or []:
                total = float(coin.get("walletBalance") or 0.0)
                locked = float(coin.get("locked") or 0.0)
                out.append(AccountBalance(coin["coin"], total - locked, locked, ts))
        return out


class BybitLinearTrading(BybitTrading):
    """Bybit v5 linear-perpetual REST trading for one unified account (see the module docstring).

    Parameters as :class:`BybitTrading` (the same hosts).
    """

    category = "linear"
    #: A linear order partly filled then canceled is ``Cancelled`` too: the 24 hours Bybit lists those tell nothing of fills.
    forgets_unfilled_closed_ns = None
    #: ``execution`` pushes with ``execType=Funding``, caught up from the transaction log (:meth:`funding_since`).
    reports_funding = True

    def order_params(self, order: Order, instrument: Instrument) -> dict[str, Any]:
        """The new-order body (:func:`linear_order_params`)."""
        return linear_order_params(order, instrument)

    async def funding_since(self, since_ns: int) -> list[FundingPaid]:
        """The account's funding payments on the traded symbols since ``since_ns``, oldest first.

        ``GET /v5/account/transaction-log`` (``accountType=UNIFIED``, ``category=linear``,
        ``type=SETTLEMENT``), window by window of :data:`EXECUTIONS_WINDOW_MS` from ``since_ns`` to
        now (Bybit's longest span), each window :data:`TRANSACTION_LOG_PAGE` rows a page through
        ``nextPageCursor``. A row's ``funding`` is what the account received (its payment is the
        negation), stamped ``transactionTime``, at the mark price ``tradePrice`` and the funding rate ``feeRate`` (empty:
        NaN); rows of symbols not traded here are skipped, and a
        row listed twice (by its ``id``) is read once.
        """
        start, now_ms = since_ns // 1_000_000, int(time.time() * 1000)
        by_symbol = {wire_symbol(inst): inst for inst in self.instruments.values()}
        seen: set[str] = set()
        out: list[FundingPaid] = []
        nan = math.nan
        while True:
            end = start + EXECUTIONS_WINDOW_MS - 1
            params: dict[str, Any] = {
                "accountType": "UNIFIED", "category": self.category, "type": "SETTLEMENT",
                "startTime": start, "endTime": end, "limit": TRANSACTION_LOG_PAGE,
            }
            window: list[FundingPaid] = []  # newest first, as Bybit lists them
            while True:
                result = (await self.call("private_get_v5_account_transaction_log", params))["result"]
                for row in result["list"]:
                    inst, row_id = by_symbol.get(str(row.get("symbol", ""))), str(row.get("id", ""))
                    if inst is None or row_id in seen or row.get("type", "SETTLEMENT") != "SETTLEMENT":
                        continue
                    received = float(row.get("funding") or 0.0)
                    if received == 0.0:
                        continue
                    seen.add(row_id)
                    ts = int(row["transactionTime"]) * 1_000_000
                    mark, rate = (float(row.get(key) or nan) for key in ("tradePrice", "feeRate"))
                    window.append(FundingPaid(inst.instrument_id, nan, mark, rate, -received, ts, time.time_ns()))
                cursor = result.get("nextPageCursor")
                if not cursor or not result["list"]:
                    break
                params = {**params, "cursor": cursor}
            out.extend(reversed(window))
            if end >= now_ms:
                return out
            start = end + 1

    async def positions(self) -> list[AccountPosition]:
        """``GET /v5/position/list`` of each traded symbol (none listed is flat).

        One-way mode lists ``positionIdx`` 0; the ``positionIdx`` 1 and 2 rows of a hedge-mode
        symbol (switched since the start) come as positions that are not ``one_way``.
        """
        out = []
        for inst in self.instruments.values():
            raw = await self.call("private_get_v5_position_list", {"category": self.category, "symbol": wire_symbol(inst)})
            for row in raw["result"]["list"]:
                if str(row.get("symbol")) == wire_symbol(inst):
                    out.append(position_from_row(row, inst))
        return out


    async def margin_settings(self) -> list[AccountMargin]:
        """Each traded symbol's ``leverage`` and position mode (``GET /v5/position/list``) and the account's margin mode.

        ``marginMode`` of ``GET /v5/account/info`` is the whole unified account's
        (:data:`MARGIN_MODES`); a symbol listed with ``positionIdx`` 1 (long) and 2 (short)
        rows is in hedge mode, which one-way orders (``positionIdx`` 0) cannot trade and
        :meth:`positions` would read as flat.
        """
        info = (await self.call("private_get_v5_account_info", {}))["result"]
        mode = str(info.get("marginMode") or "")
        mode = MARGIN_MODES.get(mode, mode)
        out = []
        for inst in self.instruments.values():
            raw = await self.call("private_get_v5_position_list", {"category": self.category, "symbol": wire_symbol(inst)})
            rows = [row for row in raw["result"]["list"] if str(row.get("symbol")) == wire_symbol(inst)]
            levers = {float(row["leverage"]) for row in rows if row.get("leverage")}
            if not levers:
                continue  # reported as not answered
            if len(levers) > 1:  # long and short apart: tell the one that differs
                levers = {lever for lever in levers if lever != inst.leverage} or levers
            one_way = all(int(row.get("positionIdx") or 0) == 0 for row in rows)
            out.append(AccountMargin(inst.instrument_id, levers.pop(), mode, one_way))
        return out
