"""Binance user-data parsing and the REST order mapping, against the documentation examples."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from pydantic import SecretStr

from tradebus.adapters.binance.trading import order_params
from tradebus.adapters.binance.user_stream import UserStreamParser, sign_params
from tradebus.adapters.common.venue_clock import TimestampRefused
from tradebus.engine.instrument import Instrument
from tradebus.engine.messages import (
    Liquidity,
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderSide,
    OrderType,
    TimeInForce,
)
from tradebus.errors import ParseError
from tradebus.execution.live import AccountBalance, CredentialsRefused, VenueRejected
from tradebus.execution.orders import Order

DATA = Path(__file__).resolve().parents[1] / "fixtures" / "binance" / "user_data"
ETH = Instrument("BINANCE", "ETHUSDT", base="ETH", quote="USDT", tick_size=0.01, lot_size=0.0001)
BTC = Instrument("BINANCE", "BTCUSDT", base="BTC", quote="USDT", tick_size=0.01, lot_size=0.00001)


def _order(coid: str, inst: Instrument, side: OrderSide = OrderSide.BUY, **kw: object) -> Order:
    return Order(coid, "strat", inst.instrument_id, side, kw.pop("order_type", OrderType.LIMIT), **kw)  # type: ignore[arg-type]


def _parser(*orders: Order) -> UserStreamParser:
    known = {o.client_order_id: o for o in orders}
    return UserStreamParser({ETH.instrument_id: ETH, BTC.instrument_id: BTC}, known.get, clock_ns=lambda: 7)


def _frame(name: str) -> str:
    return (DATA / name).read_text()


def test_new_is_accepted_with_the_venue_order_id() -> None:
    order = _order("O-12345-test-new", ETH, quantity=1.0, price=2500.0)
    (event,) = _parser(order).parse(_frame("ws_spot_execution_report_new.json"))
    assert event == OrderAccepted("strat", "ETHUSDT.BINANCE", "O-12345-test-new", "1234567890", 1759347763167_000_000, 7)


def test_trade_is_a_fill_with_the_fee_in_the_asset_charged() -> None:
    from tradebus.engine.portfolio import Portfolio

    order = _order("O-12345-test-trade", ETH, quantity=1.0, price=2500.0)
    (fill,) = _parser(order).parse(_frame("ws_spot_execution_report_trade.json"))
    assert isinstance(fill, OrderFilled)
    assert (fill.trade_id, fill.venue_order_id, fill.side) == ("98765432", "1234567890", OrderSide.BUY)
    assert (fill.last_qty, fill.last_px, fill.filled_qty) == (0.5, 2499.5, 0.5)  # filled_qty: the order's cumulative z
    # 0.0005 ETH of commission: kept in ETH; at the fill price 2499.50 it is worth 1.24975 USDT
    assert (fill.fee, fill.fee_asset) == (0.0005, "ETH")
    portfolio = Portfolio({ETH.instrument_id: ETH}, 10_000.0)
    portfolio.apply_fill(fill)
    assert portfolio.fee_value(fill) == pytest.approx(1.24975, rel=1e-12) and portfolio.fees_paid == pytest.approx(1.24975, rel=1e-12)
    assert portfolio.account.balance("ETH") == 0.5 - 0.0005  # the buy received what the fee left
    assert portfolio.account.balance("USDT") == 10_000.0 - 0.5 * 2499.5
    assert fill.liquidity is Liquidity.MAKER


def test_only_the_first_fill_of_an_order_is_told_as_one_ours_or_not() -> None:
    """Binance spot takes an order off its unfilled-order count at its first fill only (one of another process on the
    account too): the documentation's ``TRADE`` (``l`` = ``z`` = 0.5) is told, the order's second (0.5 more, ``z`` 1.0)
    is not, and the first fill of an order not ours is."""
    order = _order("O-12345-test-trade", ETH, quantity=1.0, price=2500.0)
    told: list[None] = []
    parser = UserStreamParser({ETH.instrument_id: ETH}, {order.client_order_id: order}.get, on_first_fill=lambda *_: told.append(None))
    first = json.loads(_frame("ws_spot_execution_report_trade.json"))
    second = {**first, "data": {**first["data"], "z": "1.00000000", "X": "FILLED", "t": 98765433}}
    other = {**first, "data": {**first["data"], "c": "someoneElses1", "i": 1234567891}}
    counts = []
    for frame in (first, second, other):
        (fill,) = parser.parse(json.dumps(frame))
        assert isinstance(fill, OrderFilled)
        counts.append(len(told))
    assert counts == [1, 1, 2]


def test_trade_of_an_order_not_ours_is_kept_as_an_external_fill() -> None:
    (fill,) = _parser().parse(_frame("ws_spot_execution_report_trade.json"))
    assert isinstance(fill, OrderFilled) and fill.strategy_id == ""


@pytest.mark.parametrize(
    ("name", "coid", "cls", "filled"),
    [
        ("ws_spot_execution_report_canceled.json", "O-12345-test-cancel", OrderCanceled, 0.1),
        ("ws_spot_execution_report_expired.json", "O-12345-test-expired", OrderExpired, 0.0),
    ],
)
def test_cancel_and_expiry_carry_the_cumulative_fill(name: str, coid: str, cls: type, filled: float) -> None:
    order = _order(coid, ETH if "cancel" in name else BTC, quantity=0.5, price=2500.0)
    (event,) = _parser(order).parse(_frame(name))
    assert type(event) is cls and event.client_order_id == coid and event.filled_qty == filled


def test_rejected_names_the_reason() -> None:
    order = _order("O-12345-test-reject", BTC, quantity=0.001, price=50000.0)
    (event,) = _parser(order).parse(_frame("ws_spot_execution_report_rejected.json"))
    assert isinstance(event, OrderRejected) and "GTX_ORDER_REJECT" in event.reason


def test_events_of_unknown_orders_other_than_fills_are_dropped() -> None:
    assert _parser().parse(_frame("ws_spot_execution_report_new.json")) == []


def test_account_position_in_the_websocket_api_envelope() -> None:
    frame = json.dumps({"subscriptionId": 0, "event": json.loads(_frame("account_position.json"))})
    balances = _parser().parse(frame)
    assert balances == [
        AccountBalance("USDT", 10000.0, 2500.0, 1709654400000_000_000),
        AccountBalance("ETH", 5.0, 0.0, 1709654400000_000_000),
    ]


def test_bad_frames_are_rejected_and_a_refused_subscription_is_fatal() -> None:
    parser = _parser()
    with pytest.raises(ParseError, match="not JSON"):
        parser.parse('{"subscriptionId":0,"event":')
    bad = json.loads(_frame("ws_spot_execution_report_trade.json"))
    del bad["data"]["L"]
    with pytest.raises(ParseError, match="executionReport"):
        parser.parse(json.dumps(bad))
    with pytest.raises(CredentialsRefused, match="-1022"):  # the secret: the user's to fix (exit 2)
        parser.parse('{"id":"uds-1","status":400,"error":{"code":-1022,"msg":"Signature for this request is not valid."}}')
    with pytest.raises(TimestampRefused, match="-1021"):  # the clock, not the credentials: the stream measures it again
        parser.parse('{"id":"uds-1","status":400,"error":{"code":-1021,"msg":"Timestamp for this request is outside of the recvWindow."}}')
    assert parser.parse('{"id":"uds-1","status":200,"result":{"subscriptionId":0}}') == []


def test_ws_api_signature_matches_the_documented_example() -> None:
    # Binance's SIGNED request example (HMAC key and payload from the API docs).
    secret = SecretStr("NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j")
    params = {
        "symbol": "LTCBTC", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "1",
        "price": "0.1", "recvWindow": "5000", "timestamp": "1499827319559",
    }
    ordered = "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559"
    # sign_params sorts by name; the docs' example signs the query in its own order, so compare with that order sorted.
    import hashlib
    import hmac

    sorted_payload = "&".join(sorted(ordered.split("&"), key=lambda kv: kv.split("=")[0]))
    expected = hmac.new(secret.get_secret_value().encode(), sorted_payload.encode(), hashlib.sha256).hexdigest()
    assert sign_params(params, secret) == expected
    docs = "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
    assert hmac.new(secret.get_secret_value().encode(), ordered.encode(), hashlib.sha256).hexdigest() == docs


# ----------------------------------------------------------------------------- order mapping


def test_limit_is_rounded_to_tick_and_lot_with_the_client_id() -> None:
    order = _order("abc1", BTC, OrderSide.SELL, quantity=0.0123456, price=61234.5678, tif=TimeInForce.IOC)
    assert order_params(order, BTC) == {
        "symbol": "BTCUSDT",
        "side": "SELL",
        "quantity": "0.01234",
        "newClientOrderId": "abc1",
        "newOrderRespType": "RESULT",
        "price": "61234.57",
        "type": "LIMIT",
        "timeInForce": "IOC",
    }


def test_post_only_is_limit_maker_and_market_has_no_price() -> None:
    maker = order_params(_order("m", BTC, quantity=0.001, price=60000.0, post_only=True), BTC)
    assert maker["type"] == "LIMIT_MAKER" and "timeInForce" not in maker
    market = order_params(_order("k", BTC, order_type=OrderType.MARKET, quantity=0.001), BTC)
    assert market["type"] == "MARKET" and "price" not in market


def test_stops_map_to_binance_names() -> None:
    stop = order_params(_order("s", BTC, OrderSide.SELL, order_type=OrderType.STOP_MARKET, quantity=0.001, trigger_price=59000.004), BTC)
    assert (stop["type"], stop["stopPrice"]) == ("STOP_LOSS", "59000.00")
    limit = order_params(
        _order("t", BTC, OrderSide.BUY, order_type=OrderType.STOP_LIMIT, quantity=0.001, price=61000.0, trigger_price=60900.0), BTC
    )
    assert (limit["type"], limit["timeInForce"], limit["price"]) == ("STOP_LOSS_LIMIT", "GTC", "61000.00")
    buy = order_params(_order("b", BTC, OrderSide.BUY, order_type=OrderType.STOP_MARKET, quantity=0.001, trigger_price=61000.0), BTC)
    assert buy["type"] == "STOP_LOSS"  # Binance's TAKE_PROFIT BUY triggers at a last price <= stopPrice


async def test_a_buy_stop_above_the_market_works_and_buys_on_the_rise() -> None:
    """Last trade 60,000; a buy stop at 61,000 (a breakout entry). Binance's STOP_LOSS BUY triggers at a
    last price >= its stopPrice; it was sent as TAKE_PROFIT BUY, which triggers at <=: Binance
    refuses it above the market ("Order would trigger immediately."), and below it buys a dip."""
    from tests.live.live_harness import IID, harness, until
    from tradebus.engine.messages import OrderStatus, SubmitOrder

    async with harness() as h:
        stop = h.kernel.execution.submit(SubmitOrder("s1", IID, "", OrderSide.BUY, 0.01, 0, 0, OrderType.STOP_MARKET, trigger_price=61_000.0))
        await until(lambda: stop.status is not OrderStatus.SUBMITTED)
        assert stop.status is OrderStatus.ACCEPTED, stop.reason
        h.trade(60_500.0)
        h.trade(59_000.0)
        await h.venue.drain()
        assert stop.status is OrderStatus.ACCEPTED
        h.trade(61_100.0)
        await until(lambda: stop.status is OrderStatus.FILLED)
        await h.venue.drain()
    assert h.emulator.fills[0].fill.last_px >= 61_000.0
    assert h.kernel.portfolio.position(IID) == pytest.approx(0.01)


def test_what_spot_cannot_take_is_refused_before_sending() -> None:
    with pytest.raises(VenueRejected, match="reduce-only"):
        order_params(_order("r", BTC, quantity=0.001, price=60000.0, reduce_only=True), BTC)
    with pytest.raises(VenueRejected, match="0 lots"):
        order_params(_order("z", BTC, quantity=0.000004, price=60000.0), BTC)
    assert math.isclose(float(order_params(_order("q", BTC, quantity=0.00001, price=1.0), BTC)["quantity"]), 1e-5)
