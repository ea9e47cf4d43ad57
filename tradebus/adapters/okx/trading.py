"""OKX v5 spot trading over REST, through ccxt's async client: the venue's :class:`TradingApi`.

Requests go through ccxt's implicit, signed endpoints (``private_post_trade_order`` ...):
ccxt signs them as OKX documents (``OK-ACCESS-KEY``, ``OK-ACCESS-PASSPHRASE``,
``OK-ACCESS-TIMESTAMP`` and ``OK-ACCESS-SIGN`` = base64 HMAC-SHA256 of timestamp + method +
path + body). Demo trading (the testnet) is the production host with the header
``x-simulated-trading: 1``. The order mapping (``POST /api/v5/trade/order``, ``tdMode=cash``):

=====================  ==========================================================
tradebus               OKX
=====================  ==========================================================
client_order_id        ``clOrdId`` (1-32 letters and digits; ccxt keeps one given)
MARKET                 ``ordType=market``, ``tgtCcy=base_ccy`` (size in the base asset)
LIMIT GTC / IOC / FOK  ``ordType=limit`` / ``ioc`` / ``fok`` + ``px``
LIMIT post_only        ``ordType=post_only``
STOP_*                 not supported yet (OKX algo orders): refused locally
reduce_only            not on spot cash: refused locally
=====================  ==========================================================

Query: ``GET /api/v5/trade/order`` by ``clOrdId`` (``51603``: no such order) and its fills
from ``GET /api/v5/trade/fills`` (paged, 100 a page); the fills missed while down
(:meth:`OkxTrading.fills_since`) from the same list, or ``/trade/fills-history`` beyond 3 days;
open orders ``GET /api/v5/trade/orders-pending``;
balances ``GET /api/v5/account/balance``; amend ``POST /api/v5/trade/amend-order``.
OKX reports a fee charged as a negative number; it is booked positive, in the quote asset.
Rate limit: OKX has no used-weight header; the budget is 60 requests per 2 s (the order
endpoints' limit), shared by every caller of the account.

Swaps (linear USDT perpetuals)
------------------------------

:class:`OkxSwapTrading` trades ``instType=SWAP`` (``BTC-USDT-SWAP``) on the same endpoints,
with the swap order mapping (:func:`swap_order_params`; the account in net position mode):

=====================  ==========================================================
tradebus               OKX ``POST /api/v5/trade/order``
=====================  ==========================================================
quantity               ``sz`` in **contracts** of ``ctVal`` (the instrument's
                       ``contract_size``), rounded down to ``lotSz``
margin                 ``tdMode=cross``; ``posSide=net`` (one-way: OKX's net mode)
MARKET                 ``ordType=market`` (no ``tgtCcy``: swaps count contracts)
LIMIT GTC / IOC / FOK  ``ordType=limit`` / ``ioc`` / ``fok`` + ``px``
LIMIT post_only        ``ordType=post_only``
reduce_only            ``reduceOnly=true`` (refused with ``51169`` when flat, ``51170``
                       when it is the position's own direction)
STOP_*                 not supported yet (algo orders): refused locally
=====================  ==========================================================

The first :meth:`OkxSwapTrading.balances` (the daemon's start) reads ``GET /api/v5/account/config``:
an account whose ``posMode`` is not ``net_mode`` is refused with the reason, and its ``uid``
is the account id. Positions: ``GET /api/v5/account/positions?instType=SWAP`` (``pos`` in contracts, signed in
net mode; ``long``/``short`` rows of a hedge-mode account are summed); balances as spot
(``availBal`` free, ``frozenBal`` locked, of the one USDT wallet).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

import ccxt.async_support as ccxt_async
from pydantic import SecretStr

from tradebus.adapters.common.ratelimit import WeightBudget
from tradebus.adapters.common.rest_trading import CcxtTrading, decimal_text
from tradebus.adapters.common.user_stream import quote_fee
from tradebus.adapters.okx.user_stream import positions_from_rows
from tradebus.engine.instrument import Instrument
from tradebus.engine.messages import Liquidity, OrderFilled, OrderSide, OrderStatus, OrderType, TimeInForce
from tradebus.execution.live import AccountBalance, AccountPosition, Ack, VenueRejected, cancel_one, lots_to_send
from tradebus.execution.orders import Order
from tradebus.execution.venue import OrderStatusReport

__all__ = ["STATUS", "OkxSwapTrading", "OkxTrading", "fill_from_row", "order_params", "report_from_row", "swap_order_params"]

#: OKX order state -> core status.
STATUS: dict[str, OrderStatus] = {
    "live": OrderStatus.ACCEPTED,
    "partially_filled": OrderStatus.PARTIALLY_FILLED,
    "filled": OrderStatus.FILLED,
    "canceled": OrderStatus.CANCELED,
    "mmp_canceled": OrderStatus.CANCELED,
}
ORDER_NOT_FOUND = "51603"
#: Rows of one ``GET /api/v5/trade/fills`` page (OKX's most).
FILLS_PAGE = 100
#: How far back ``/trade/fills`` reaches (3 days, less an hour of margin); older: ``/trade/fills-history``.
FILLS_RECENT_MS = (3 * 24 - 1) * 3600 * 1000
_WEIGHTS = {"private_get_account_balance": 2}


def order_params(order: Order, instrument: Instrument) -> dict[str, str]:
    """The ``POST /api/v5/trade/order`` body of ``order`` (rounded to the instrument's tick and lot).

    Raises
    ------
    VenueRejected
        For what OKX spot cash cannot take here (stops, reduce-only, nothing left once rounded).
    """
    if order.reduce_only:
        raise VenueRejected("reduce_only: OKX spot cash orders have no reduce-only")
    params = _common_params(order, instrument, "cash")
    if params["ordType"] == "market":
        params["tgtCcy"] = "base_ccy"
    return params


def swap_order_params(order: Order, instrument: Instrument) -> dict[str, Any]:
    """The ``POST /api/v5/trade/order`` body of a swap ``order`` (contracts, cross margin, net mode).

    Raises
    ------
    VenueRejected
        Stops, or nothing left once rounded to whole lots.
    """
    params: dict[str, Any] = _common_params(order, instrument, "cross")
    params["posSide"] = "net"
    if order.reduce_only:
        params["reduceOnly"] = True
    return params


def _common_params(order: Order, instrument: Instrument, td_mode: str) -> dict[str, str]:
    """What a spot and a swap order body share: size rounded down to lots, type flags, price to the tick."""
    qty = lots_to_send(order, instrument)
    params = {
        "instId": instrument.symbol,
        "tdMode": td_mode,
        "side": "buy" if order.side is OrderSide.BUY else "sell",
        "sz": decimal_text(qty, instrument.lot_size),
        "clOrdId": order.client_order_id,
    }
    typ = order.order_type
    if typ is OrderType.MARKET:
        return params | {"ordType": "market"}
    if typ is not OrderType.LIMIT:
        raise VenueRejected(f"{typ}: OKX stop orders are algo orders, not supported yet")
    tif = order.tif if isinstance(order.tif, TimeInForce) else TimeInForce(order.tif)
    kind = "post_only" if order.post_only else {TimeInForce.IOC: "ioc", TimeInForce.FOK: "fok"}.get(tif, "limit")
    return params | {"ordType": kind, "px": decimal_text(instrument.round_price(order.price), instrument.tick_size)}


def fill_from_row(raw: dict[str, Any], order: Order, instrument: Instrument) -> OrderFilled:
    """An ``OrderFilled`` from one ``GET /api/v5/trade/fills`` row."""
    px = float(raw["fillPx"])
    fee = quote_fee(-float(raw.get("fee") or 0.0), raw.get("feeCcy"), px, instrument)
    ts = int(raw["ts"]) * 1_000_000
    return OrderFilled(
        order.strategy_id,
        order.instrument_id,
        order.client_order_id,
        str(raw["ordId"]),
        str(raw["tradeId"]),
        OrderSide.BUY if raw["side"] == "buy" else OrderSide.SELL,
        float(raw["fillSz"]),
        px,
        fee,
        Liquidity.MAKER if raw.get("execType") == "M" else Liquidity.TAKER,
        ts,
        ts,
    )


def report_from_row(raw: dict[str, Any], fills: tuple[OrderFilled, ...] = ()) -> OrderStatusReport:
    """An :class:`OrderStatusReport` from one order row of OKX."""
    status = STATUS.get(str(raw["state"]))
    if status is None:
        raise VenueRejected(f"order {raw.get('clOrdId')}: unknown OKX state {raw['state']!r}")
    ts = int(raw.get("uTime") or raw.get("cTime") or 0) * 1_000_000
    return OrderStatusReport(str(raw["clOrdId"]), str(raw["ordId"]), status, float(raw.get("accFillSz") or 0.0), ts, fills)


class OkxTrading(CcxtTrading):
    """OKX v5 spot REST trading for one account (see the module docstring).

    Parameters
    ----------
    rest_url
        Base URL (``https://www.okx.com``; a local emulator in tests).
    api_key, api_secret, passphrase
        The account's key, secret and passphrase, held as secrets.
    instruments
        ``instrument_id -> Instrument`` traded on this account.
    timeout
        HTTP timeout per request, seconds.
    demo
        Demo trading (``x-simulated-trading: 1``): the testnet.
    budget
        The account's shared budget (default 60 requests per 2 s).
    """

    venue = "OKX"
    supports_amend = True
    #: The ``instType`` of the account's instruments (queries of fills and open orders).
    inst_type = "SPOT"

    def __init__(
        self,
        rest_url: str,
        api_key: SecretStr,
        api_secret: SecretStr,
        passphrase: SecretStr,
        instruments: dict[str, Instrument],
        timeout: float = 10.0,
        *,
        demo: bool = True,
        budget: WeightBudget | None = None,
    ) -> None:
        exchange = ccxt_async.okx(
            {
                "apiKey": api_key.get_secret_value(),
                "secret": api_secret.get_secret_value(),
                "password": passphrase.get_secret_value(),
                "timeout": int(timeout * 1000),
                "enableRateLimit": False,
            }
        )
        exchange.urls["api"]["rest"] = rest_url.rstrip("/")
        if demo:
            exchange.headers = {**(exchange.headers or {}), "x-simulated-trading": "1"}
        super().__init__(exchange, instruments, budget if budget is not None else WeightBudget(60, 2.0), _WEIGHTS)

    def order_params(self, order: Order, instrument: Instrument) -> dict[str, Any]:
        """The new-order body (:func:`order_params`)."""
        return order_params(order, instrument)

    async def place(self, order: Order) -> Ack:
        """``POST /api/v5/trade/order``."""
        raw = await self.call("private_post_trade_order", self.order_params(order, self.instrument(order)))
        row = raw["data"][0]
        return Ack(str(row["clOrdId"]), str(row["ordId"]), int(row.get("ts") or 0) * 1_000_000)

    async def cancel(self, order: Order) -> None:
        """``POST /api/v5/trade/cancel-order`` by ``clOrdId``."""
        inst = self.instrument(order)
        await self.call("private_post_trade_cancel_order", {"instId": inst.symbol, "clOrdId": order.client_order_id})

    async def amend(self, order: Order, quantity: float, price: float, trigger_price: float = math.nan) -> None:
        """``POST /api/v5/trade/amend-order``: the new total size and/or price (NaN: unchanged)."""
        if not math.isnan(trigger_price):
            raise VenueRejected(f"order {order.client_order_id}: OKX stop orders are not placed here, no trigger to amend")
        inst = self.instrument(order)
        params = {"instId": inst.symbol, "clOrdId": order.client_order_id}
        if not math.isnan(quantity):
            params["newSz"] = decimal_text(inst.round_quantity(quantity), inst.lot_size)
        if not math.isnan(price):
            params["newPx"] = decimal_text(inst.round_price(price), inst.tick_size)
        await self.call("private_post_trade_amend_order", params)

    async def query(self, order: Order) -> OrderStatusReport | None:
        """``GET /api/v5/trade/order`` by ``clOrdId``, and its fills."""
        inst = self.instrument(order)
        try:
            raw = await self.call("private_get_trade_order", {"instId": inst.symbol, "clOrdId": order.client_order_id})
        except VenueRejected as exc:
            if f"error {ORDER_NOT_FOUND}:" in str(exc):
                return None
            raise
        rows = raw.get("data") or []
        if not rows:
            return None
        row = rows[0]
        fills: tuple[OrderFilled, ...] = ()
        if float(row.get("accFillSz") or 0.0) > 0.0:
            params = {"instType": self.inst_type, "instId": inst.symbol, "ordId": row["ordId"]}
            fills = tuple(fill_from_row(t, order, inst) for t in reversed(await self._fill_rows("private_get_trade_fills", params)))
        return report_from_row(row, fills)

    async def _fill_rows(self, name: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        """Every row of a fills query, newest first: :data:`FILLS_PAGE` a page, the next page ``after`` the last ``billId``."""
        params = {**params, "limit": str(FILLS_PAGE)}
        rows: list[dict[str, Any]] = []
        while True:
            page = (await self.call(name, params)).get("data") or []
            rows.extend(page)
            if len(page) < FILLS_PAGE:
                return rows
            params = {**params, "after": str(page[-1]["billId"])}

    async def fills_since(self, instrument_id: str, orders: Mapping[str, Order], since_ns: int) -> list[OrderFilled]:
        """The instrument's own trades since ``since_ns``, oldest first, paged (:data:`FILLS_PAGE` rows a request).

        ``GET /api/v5/trade/fills`` (the last 3 days) or, for an older ``since_ns``,
        ``/trade/fills-history`` (3 months), both with ``begin`` = ``since_ns`` in ms; OKX
        answers newest first, each next page asked ``after`` the last row's ``billId``
        until a page is short. Trades of orders not in ``orders`` (ordId -> order) are skipped.
        """
        inst = self.instruments.get(instrument_id)
        if inst is None:
            raise VenueRejected(f"{instrument_id} is not traded on this account")
        since_ms = since_ns // 1_000_000
        recent = time.time() * 1000 - since_ms < FILLS_RECENT_MS
        name = "private_get_trade_fills" if recent else "private_get_trade_fills_history"
        rows = await self._fill_rows(name, {"instType": self.inst_type, "instId": inst.symbol, "begin": str(since_ms)})
        return [fill_from_row(r, orders[str(r["ordId"])], inst) for r in reversed(rows) if str(r["ordId"]) in orders]

    async def open_orders(self) -> list[OrderStatusReport]:
        """``GET /api/v5/trade/orders-pending`` of every traded instrument."""
        reports = []
        for inst in self.instruments.values():
            raw = await self.call("private_get_trade_orders_pending", {"instType": self.inst_type, "instId": inst.symbol})
            reports.extend(report_from_row(row) for row in raw.get("data") or [])
        return reports

    async def cancel_all(self) -> list[str]:
        """Cancel every open order of every traded instrument, one request each (a failed one is skipped)."""
        canceled = []
        for inst in self.instruments.values():
            raw = await self.call("private_get_trade_orders_pending", {"instType": self.inst_type, "instId": inst.symbol})
            for row in raw.get("data") or []:
                if await cancel_one(str(row["clOrdId"]), self.call("private_post_trade_cancel_order", {"instId": inst.symbol, "ordId": str(row["ordId"])})):
                    canceled.append(str(row["clOrdId"]))
        return canceled

    async def balances(self) -> list[AccountBalance]:
        """``GET /api/v5/account/balance``."""
        raw = await self.call("private_get_account_balance", {})
        out = []
        for account in raw.get("data") or []:
            ts = int(account.get("uTime") or 0) * 1_000_000
            for d in account.get("details") or []:
                out.append(AccountBalance(d["ccy"], float(d.get("availBal") or 0.0), float(d.get("frozenBal") or 0.0), ts))
        return out


class OkxSwapTrading(OkxTrading):
    """OKX v5 swap (linear USDT perpetual) REST trading for one account (module docstring, *Swaps*).

    Parameters as :class:`OkxTrading`; the account is in net position mode.
    """

    inst_type = "SWAP"

    def order_params(self, order: Order, instrument: Instrument) -> dict[str, Any]:
        """The new-order body (:func:`swap_order_params`)."""
        return swap_order_params(order, instrument)

    async def balances(self) -> list[AccountBalance]:
        """``GET /api/v5/account/balance``, after checking (once) that the account trades in net mode.

        Raises
        ------
        VenueRejected
            ``GET /api/v5/account/config`` says ``posMode`` is not ``net_mode``: the orders'
            ``posSide=net`` would be refused and positions read per side.
        """
        if not self.account_id:
            rows = (await self.call("private_get_account_config", {})).get("data") or [{}]
            mode = str(rows[0].get("posMode", ""))
            if mode != "net_mode":
                raise VenueRejected(f"OKX account position mode is {mode!r}: swaps are traded in net_mode (one-way); switch the account to it")
            self.account_id = str(rows[0].get("uid", ""))
        return await super().balances()

    async def positions(self) -> list[AccountPosition]:
        """``GET /api/v5/account/positions?instType=SWAP`` of the traded swaps, in contracts."""
        raw = await self.call("private_get_account_positions", {"instType": "SWAP"})
        return positions_from_rows(raw.get("data") or [], {inst.symbol: inst for inst in self.instruments.values()})
