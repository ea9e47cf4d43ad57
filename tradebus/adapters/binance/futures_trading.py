"""Binance USD-M perpetual trading over REST (ccxt ``binanceusdm``): the futures :class:`TradingApi`.

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
STOP_MARKET/STOP_LIMIT not yet: Binance moved conditional orders to the algo-order API
                       (refused locally, :class:`VenueRejected`)
=====================  ==========================================================

Quantities are base units (a USD-M contract is one coin), rounded down to the lot; prices
to the tick. Balances come from ``GET /fapi/v2/balance`` (the wallet balance of each
asset is ``free``; margin in use is not split out), positions from
``GET /fapi/v2/positionRisk``. Weights are USD-M's (2400 per minute).
"""

from __future__ import annotations

from typing import Any

import ccxt.async_support as ccxt_async

from tradebus.adapters.binance.trading import BinanceTrading, fill_from_trade
from tradebus.adapters.common.ratelimit import WeightBudget
from tradebus.adapters.common.rest_trading import decimal_text
from tradebus.engine.instrument import Instrument
from tradebus.engine.messages import OrderFilled, OrderSide, OrderType, TimeInForce
from tradebus.execution.live import AccountBalance, AccountPosition, VenueRejected
from tradebus.execution.orders import Order

__all__ = ["FUTURES_WEIGHTS", "BinanceFuturesTrading", "futures_order_params"]

#: Request weight of each USD-M endpoint (Binance USD-M documentation; openOrders with a symbol).
FUTURES_WEIGHTS: dict[str, int] = {
    "fapiprivate_post_order": 1,
    "fapiprivate_delete_order": 1,
    "fapiprivate_get_order": 1,
    "fapiprivate_get_openorders": 1,
    "fapiprivate_get_usertrades": 5,
    "fapiprivatev2_get_balance": 5,
    "fapiprivatev2_get_positionrisk": 5,
}
#: USD-M's request-weight limit per minute.
FUTURES_WEIGHT_LIMIT = 2400


def futures_order_params(order: Order, instrument: Instrument) -> dict[str, str]:
    """The ``POST /fapi/v1/order`` parameters of ``order`` (rounded to the instrument's tick and lot).

    Raises
    ------
    VenueRejected
        Stop orders (not supported yet), post-only on a non-limit order, a quantity below
        one lot once rounded.
    """
    qty = instrument.round_quantity(order.quantity - order.filled_qty)
    if not qty > 0.0:
        raise VenueRejected(f"quantity {order.quantity} rounds to 0 lots of {instrument.lot_size}")
    typ = order.order_type
    if typ not in (OrderType.MARKET, OrderType.LIMIT):
        raise VenueRejected(f"{typ}: Binance USD-M conditional orders (algo orders) are not supported yet")
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
    the futures base (``https://testnet.binancefuture.com`` for the testnet).
    """

    ccxt_class = ccxt_async.binanceusdm
    weights = FUTURES_WEIGHTS
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
    ) -> None:
        budget = budget if budget is not None else WeightBudget(FUTURES_WEIGHT_LIMIT, 60.0, header="X-MBX-USED-WEIGHT-1M")
        super().__init__(rest_url, api_key, api_secret, instruments, timeout, budget)

    def _point_at(self, base: str) -> None:
        api = self._ccxt.urls["api"]
        for version in ("", "V2", "V3"):
            api[f"fapiPublic{version}"] = api[f"fapiPrivate{version}"] = f"{base}/fapi/{version.lower() or 'v1'}"

    def order_params(self, order: Order, instrument: Instrument) -> dict[str, str]:
        return futures_order_params(order, instrument)

    def fill_from_trade(self, raw: dict[str, Any], order: Order, instrument: Instrument) -> OrderFilled:
        return fill_from_trade(raw, order, instrument, buyer="buyer", maker="maker")

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
