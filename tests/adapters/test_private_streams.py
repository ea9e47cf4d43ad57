"""OKX and Bybit private-stream parsers against the documentation examples in tests/fixtures/*/user_data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tradebus.adapters.bybit.user_stream import UserStreamParser as BybitParser
from tradebus.adapters.common.policy import ErrorClass, FatalVenueError, classify_error
from tradebus.adapters.common.venue_clock import TimestampRefused
from tradebus.adapters.okx.user_stream import UserStreamParser as OkxParser
from tradebus.engine.instrument import Instrument, InstrumentKind
from tradebus.engine.messages import Liquidity, OrderAccepted, OrderCanceled, OrderFilled, OrderFillsReported, OrderSide, OrderStatus, OrderType
from tradebus.errors import ParseError, VenueError
from tradebus.execution.live import AccountBalance, AccountRefused, CredentialsRefused
from tradebus.execution.orders import Order

FIX = Path(__file__).resolve().parents[1] / "fixtures"
OKX_SWAP = Instrument("OKX", "BTC-USDT-SWAP", kind=InstrumentKind.PERPETUAL, base="BTC", quote="USDT", tick_size=0.1, lot_size=0.01)
BYBIT_LINEAR = Instrument("BYBIT", "BTCUSDT-LINEAR", kind=InstrumentKind.PERPETUAL, base="BTC", quote="USDT", tick_size=0.1, lot_size=0.001)


def _orders(*coids: str, iid: str) -> dict[str, Order]:
    return {c: Order(c, "strat", iid, OrderSide.BUY, OrderType.LIMIT, 1.0, 1.0) for c in coids}


def _read(venue: str, name: str) -> str:
    return (FIX / venue / "user_data" / name).read_text()


# ----------------------------------------------------------------------------- OKX


def _okx(*coids: str) -> OkxParser:
    return OkxParser({OKX_SWAP.instrument_id: OKX_SWAP}, _orders(*coids, iid=OKX_SWAP.instrument_id).get, clock_ns=lambda: 5, venue="OKX")


def test_okx_filled_update_is_one_fill_with_the_charge_as_a_positive_fee() -> None:
    (fill,) = _okx("001BTCUSDT20250106001").parse(_read("okx", "ws_orders.json"))
    assert isinstance(fill, OrderFilled)
    assert (fill.strategy_id, fill.instrument_id, fill.trade_id, fill.venue_order_id) == (
        "strat", "BTC-USDT-SWAP.OKX", "1518905529", "2497956918703120384"
    )
    assert (fill.side, fill.last_qty, fill.last_px, fill.liquidity) == (OrderSide.BUY, 0.03, 103698.9, Liquidity.MAKER)
    assert fill.filled_qty == 0.03  # the order's cumulative accFillSz
    assert fill.fee == pytest.approx(0.021776769)
    assert fill.ts_event == 1746947317402 * 1_000_000


def test_okx_live_and_canceled_states() -> None:
    row = json.loads(_read("okx", "ws_orders.json"))
    update = row["data"][0]
    update.update(state="live", tradeId="", fillSz="0", accFillSz="0")
    (accepted,) = _okx("001BTCUSDT20250106001").parse(json.dumps(row))
    assert isinstance(accepted, OrderAccepted) and accepted.venue_order_id == "2497956918703120384"
    update.update(state="canceled", accFillSz="0.01", cancelSourceReason="Order canceled by user")
    (canceled,) = _okx("001BTCUSDT20250106001").parse(json.dumps(row))
    assert isinstance(canceled, OrderCanceled) and canceled.filled_qty == 0.01 and "user" in canceled.reason
    assert _okx().parse(json.dumps(row)) == []  # not our order, no fill: dropped


def test_okx_account_balances_and_errors() -> None:
    balances = _okx().parse(_read("okx", "ws_account.json"))
    assert balances[0] == AccountBalance("USDT", 100.52768569797846, 0.0, 1751531646836 * 1_000_000)
    assert [b.asset for b in balances] == ["USDT", "BTC", "ETH"]
    assert _okx().parse('{"event":"login","code":"0","msg":""}') == []
    with pytest.raises(CredentialsRefused, match="60009"):  # a refused login
        _okx().parse('{"event":"error","code":"60009","msg":"Login failed."}')
    with pytest.raises(AccountRefused, match="50007") as account:  # the account refused, whatever its key
        _okx().parse('{"event":"error","code":"50007","msg":"User blocked."}')
    assert isinstance(account.value, CredentialsRefused) and account.value.what == "the account"
    with pytest.raises(FatalVenueError, match="60012") as other:
        _okx().parse('{"event":"error","code":"60012","msg":"Invalid request"}')
    assert not isinstance(other.value, CredentialsRefused)
    for code in ("63999", "60014", "50013", "50026"):  # a login failed on OKX's side: the stream logs in again
        with pytest.raises(VenueError, match=f"login failed, {code}") as passing:
            _okx().parse(f'{{"event":"error","code":"{code}","msg":"Login failed due to internal error."}}')
        assert classify_error(passing.value) is ErrorClass.RETRYABLE
    with pytest.raises(ParseError, match="okx"):
        _okx().parse('{"arg":{"channel":"orders"},"data":[{"state":"live"}]}')


OKX_SPOT = Instrument("OKX", "BTC-USDT", kind=InstrumentKind.SPOT, base="BTC", quote="USDT", tick_size=0.1, lot_size=0.00001)


def _okx_fill_frame(inst: Instrument = OKX_SWAP, **fields: str) -> str:
    """The documentation example's ``orders`` row (tests/fixtures/okx/user_data/ws_orders.json) with ``fields`` set.

    A field given as ``"-"`` is left out of the row (the example has no ``fillFee`` / ``fillFeeCcy``).
    """
    frame = json.loads(_read("okx", "ws_orders.json"))
    row = frame["data"][0]
    row.update(instId=inst.symbol, instType="SPOT" if inst.kind is InstrumentKind.SPOT else "SWAP", sz="0.03")
    row.update(fields)
    frame["data"][0] = {k: v for k, v in row.items() if v != "-"}
    return json.dumps(frame)


def _okx_parser(inst: Instrument = OKX_SWAP) -> OkxParser:
    return OkxParser({inst.instrument_id: inst}, _orders("001BTCUSDT20250106001", iid=inst.instrument_id).get, clock_ns=lambda: 5, venue="OKX")


# Two taker fills of one order, 0.05 % of notional: 0.01 @ 100000 -> fee 0.5, then 0.02 @ 100100 -> 1.001;
# OKX's cumulative ``fee`` is -0.5, then -1.501.
_FIRST = {"tradeId": "11", "fillSz": "0.01", "fillPx": "100000", "accFillSz": "0.01", "state": "partially_filled", "fee": "-0.5"}
_SECOND = {"tradeId": "12", "fillSz": "0.02", "fillPx": "100100", "accFillSz": "0.03", "state": "filled", "fee": "-1.501"}


@pytest.mark.parametrize("per_fill", [True, False], ids=["fillFee", "cumulative-fee-only"])
def test_okx_two_partial_fills_book_each_fill_fee_once(per_fill: bool) -> None:
    parser = _okx_parser()
    first = _FIRST | ({"fillFee": "-0.5", "fillFeeCcy": "USDT"} if per_fill else {"fillFee": "-", "fillFeeCcy": "-"})
    second = _SECOND | ({"fillFee": "-1.001", "fillFeeCcy": "USDT"} if per_fill else {"fillFee": "-", "fillFeeCcy": "-"})
    (a,) = parser.parse(_okx_fill_frame(**first))
    (b,) = parser.parse(_okx_fill_frame(**second))
    assert (a.trade_id, a.last_qty, a.filled_qty, b.trade_id, b.last_qty, b.filled_qty) == ("11", 0.01, 0.01, "12", 0.02, 0.03)
    assert (a.fee, a.fee_asset) == (pytest.approx(0.5), "")
    assert (b.fee, b.fee_asset) == (pytest.approx(1.001), "")  # not the order's total 1.501 again
    assert a.fee + b.fee == pytest.approx(1.501)


def test_okx_fill_without_fill_fee_after_unseen_fills_books_its_share_of_the_total() -> None:
    # a restarted parser whose first sight of the order is its second fill: 0.02 of 0.03 -> 2/3 of 1.5
    (fill,) = _okx_parser().parse(_okx_fill_frame(**_SECOND | {"fee": "-1.5", "fillFee": "-", "fillFeeCcy": "-"}))
    assert fill.fee == pytest.approx(1.0)


def test_okx_fee_memory_of_an_order_closed_by_a_rest_query_is_dropped() -> None:
    # the first fill is pushed (no fillFee), the final one's push is lost; a REST query books it and
    # closes the order: the parser's memory of the order's cumulative fee goes at its next frame
    orders = _orders("001BTCUSDT20250106001", "other", iid=OKX_SWAP.instrument_id)
    parser = OkxParser({OKX_SWAP.instrument_id: OKX_SWAP}, orders.get, clock_ns=lambda: 5, venue="OKX")
    parser.parse(_okx_fill_frame(**_FIRST | {"fillFee": "-", "fillFeeCcy": "-"}))
    assert list(parser._fee_booked) == ["2497956918703120384"]
    order = orders["001BTCUSDT20250106001"]
    order.status, order.filled_qty = OrderStatus.FILLED, 0.03  # what the order manager learnt from the query
    parser.parse(_okx_fill_frame(clOrdId="other", ordId="9", state="live", tradeId="", fillSz="0"))
    assert parser._fee_booked == {}


def test_okx_fill_without_fill_fee_after_a_lost_push_books_only_its_own_fee() -> None:
    # 0.01, 0.02, 0.03 @ 100000, 0.05 %: fees 0.5, 1.0, 1.5 (cumulative 0.5, 1.5, 3.0). The second
    # push is lost (its fill is booked from /trade/fills with its 1.0); the third must book 1.5, not 2.5.
    parser = _okx_parser()
    none = {"fillFee": "-", "fillFeeCcy": "-", "fillPx": "100000", "state": "partially_filled", "sz": "0.06"}
    (a,) = parser.parse(_okx_fill_frame(**none | {"tradeId": "41", "fillSz": "0.01", "accFillSz": "0.01", "fee": "-0.5"}))
    (c,) = parser.parse(_okx_fill_frame(**none | {"tradeId": "43", "fillSz": "0.03", "accFillSz": "0.06", "fee": "-3.0", "state": "filled"}))
    assert (a.fee, c.fee) == (pytest.approx(0.5), pytest.approx(1.5))


def test_okx_maker_rebate_on_a_spot_buy_is_a_negative_fee_in_the_quote_currency() -> None:
    # OKX: a spot buy's feeCcy is the base (BTC) and its rebateCcy the quote; fillFee > 0 is a
    # rebate, in fillFeeCcy, "rebate currency when fillFee >= 0". 0.01 @ 50000, rebate 0.01 % = 0.05 USDT.
    frame = _okx_fill_frame(
        OKX_SPOT, tradeId="21", fillSz="0.01", fillPx="50000", accFillSz="0.01", state="partially_filled", execType="M",
        fee="0", feeCcy="BTC", rebate="0.05", rebateCcy="USDT", fillFee="0.05", fillFeeCcy="USDT",
    )
    (fill,) = _okx_parser(OKX_SPOT).parse(frame)
    assert (fill.liquidity, fill.fee, fill.fee_asset) == (Liquidity.MAKER, pytest.approx(-0.05), "")


def test_okx_maker_rebate_on_a_spot_buy_without_fill_fee_is_read_from_the_order_rebate() -> None:
    # OKX's orders row of a spot buy: ``fee`` is "accumulated fee charged by the platform, always
    # negative" in ``feeCcy`` (BTC), the maker rebate is ``rebate`` ("always positive") in ``rebateCcy``
    # (USDT). A row without fillFee: two maker fills, 0.01 @ 50000 then 0.02 @ 50000, rebate 0.01 %:
    # 0.05 then 0.1 USDT (cumulative rebate 0.05, 0.15; fee 0 throughout).
    parser = _okx_parser(OKX_SPOT)
    row = {"fee": "0", "feeCcy": "BTC", "rebateCcy": "USDT", "execType": "M", "fillFee": "-", "fillFeeCcy": "-", "fillPx": "50000"}
    (a,) = parser.parse(_okx_fill_frame(OKX_SPOT, **row, tradeId="31", fillSz="0.01", accFillSz="0.01", state="partially_filled", rebate="0.05"))
    (b,) = parser.parse(_okx_fill_frame(OKX_SPOT, **row, tradeId="32", fillSz="0.02", accFillSz="0.03", state="filled", rebate="0.15"))
    assert (a.fee, a.fee_asset) == (pytest.approx(-0.05), "")
    assert (b.fee, b.fee_asset) == (pytest.approx(-0.1), "")


def test_okx_taker_fill_without_fill_fee_after_an_unseen_maker_rebate_books_a_fee_not_a_rebate() -> None:
    # A spot buy: 0.01 filled as maker @ 50000 (rebate 0.01 %: 0.05 USDT, fee 0), seen before a restart;
    # amended to cross, 0.01 more taken @ 50000 (0.1 %: 0.00001 BTC) in a row without fillFee. The restarted
    # parser sees rebate 0.05 and fee -0.00001 moved since nothing: a taker earns no rebate, so its fill is
    # a charge in BTC, its 0.01 / 0.02 share of the fee (0.000005), not half the rebate as a 0.025 USDT rebate.
    row = {"fee": "-0.00001", "feeCcy": "BTC", "rebate": "0.05", "rebateCcy": "USDT", "execType": "T", "side": "buy",
           "fillFee": "-", "fillFeeCcy": "-", "fillPx": "50000", "tradeId": "52", "fillSz": "0.01", "accFillSz": "0.02",
           "state": "filled", "sz": "0.02"}
    (fill,) = _okx_parser(OKX_SPOT).parse(_okx_fill_frame(OKX_SPOT, **row))
    assert (fill.liquidity, fill.fee, fill.fee_asset) == (Liquidity.TAKER, pytest.approx(0.000005), "BTC")


def test_okx_taker_fee_of_a_spot_buy_is_kept_in_the_base_currency() -> None:
    # 0.01 BTC bought, 0.1 % taken out of it: 0.00001 BTC
    frame = _okx_fill_frame(
        OKX_SPOT, tradeId="22", fillSz="0.01", fillPx="50000", accFillSz="0.01", state="partially_filled", execType="T",
        fee="-0.00001", feeCcy="BTC", fillFee="-0.00001", fillFeeCcy="BTC",
    )
    (fill,) = _okx_parser(OKX_SPOT).parse(frame)
    assert (fill.fee, fill.fee_asset) == (pytest.approx(0.00001), "BTC")


# ----------------------------------------------------------------------------- Bybit


def _bybit(*coids: str) -> BybitParser:
    return BybitParser({BYBIT_LINEAR.instrument_id: BYBIT_LINEAR}, _orders(*coids, iid=BYBIT_LINEAR.instrument_id).get, clock_ns=lambda: 5)


def test_bybit_execution_is_a_fill_on_the_linear_instrument() -> None:
    (fill,) = _bybit("test-order-link-001").parse(_read("bybit", "ws_account_execution.json"))
    assert isinstance(fill, OrderFilled)
    assert (fill.instrument_id, fill.trade_id, fill.side) == ("BTCUSDT-LINEAR.BYBIT", "0ab1bdf7-4219-438b-b30a-32ec863018f7", OrderSide.SELL)
    assert (fill.last_qty, fill.last_px, fill.fee, fill.liquidity) == (0.5, 95900.1, 26.3725275, Liquidity.TAKER)
    # 0.5 * 95900.1 * 0.00055 = 26.3725275: the fee is the venue's, in USDT
    assert fill.fee == pytest.approx(0.5 * 95900.1 * 0.00055)
    assert fill.filled_qty == 0.5  # the order's cumulative filled quantity: orderQty 0.5 - leavesQty 0
    frame = json.loads(_read("bybit", "ws_account_execution.json"))
    frame["data"][0].update(orderQty="2", leavesQty="1.25")
    (fill,) = _bybit("test-order-link-001").parse(json.dumps(frame))
    assert fill.filled_qty == 0.75
    del frame["data"][0]["leavesQty"]
    (fill,) = _bybit("test-order-link-001").parse(json.dumps(frame))
    assert fill.filled_qty == 0.0  # not said


def test_bybit_order_statuses() -> None:
    (canceled,) = _bybit("client-1").parse(_read("bybit", "ws_account_order.json"))
    assert isinstance(canceled, OrderCanceled) and canceled.filled_qty == 0.0 and canceled.reason == "CancelByUser"
    (reported,) = _bybit("test-client-order-001").parse(_read("bybit", "ws_account_order_filled.json"))
    assert reported == OrderFillsReported("strat", BYBIT_LINEAR.instrument_id, "test-client-order-001", 0.1, 1672364262457 * 1_000_000, 5)
    frame = json.loads(_read("bybit", "ws_account_order.json"))
    frame["data"][0]["orderStatus"] = "New"
    (accepted,) = _bybit("client-1").parse(json.dumps(frame))
    assert isinstance(accepted, OrderAccepted) and accepted.venue_order_id == "abcdef123456"


def test_bybit_wallet_and_auth() -> None:
    btc, usdt = _bybit().parse(_read("bybit", "ws_account_wallet.json"))
    assert btc.asset == "BTC" and btc.free == 0.00092964 and btc.locked == pytest.approx(0.0001)
    assert usdt.asset == "USDT" and usdt.free + usdt.locked == pytest.approx(9647.75537647)
    assert _bybit().parse('{"success":true,"ret_msg":"","op":"auth","conn_id":"x"}') == []
    with pytest.raises(CredentialsRefused, match="auth"):
        _bybit().parse('{"success":false,"ret_msg":"Invalid apikey","op":"auth","conn_id":"x"}')
    for expired in ("Params Error", "error:request expired"):  # V5's and v2's words for an expires already past
        with pytest.raises(TimestampRefused, match="auth refused for its expires") as stale:
            _bybit().parse(json.dumps({"success": False, "ret_msg": expired, "op": "auth", "conn_id": "x"}))
        assert not isinstance(stale.value, CredentialsRefused)
    with pytest.raises(FatalVenueError, match="subscribe refused") as other:
        _bybit().parse('{"success":false,"ret_msg":"Request not authorized","op":"subscribe","conn_id":"x"}')
    assert not isinstance(other.value, CredentialsRefused)


SPOT = Instrument("X", "BTCUSDT", base="BTC", quote="USDT", tick_size=0.01, lot_size=1e-5)


@pytest.mark.parametrize("fee_asset", ["BTC", "USDT", "BNB"])
def test_rest_fill_queries_of_every_venue_keep_the_fee_asset_and_value_a_base_asset_fee_at_the_fill_price(fee_asset: str) -> None:
    """A fee of 0.001 BTC on a fill at 50 000 is 50 USDT; a fee of 0.001 USDT stays 0.001; 0.001 BNB stays BNB."""
    from tradebus.engine.portfolio import Portfolio

    from tradebus.adapters.binance.trading import fill_from_trade
    from tradebus.adapters.bybit.trading import fill_from_row as bybit_fill
    from tradebus.adapters.okx.trading import fill_from_row as okx_fill

    order = Order("c1", "s1", SPOT.instrument_id, OrderSide.BUY, OrderType.MARKET, 0.01)
    binance = {"price": "50000", "commission": "0.001", "commissionAsset": fee_asset, "time": 1, "orderId": 7,
               "id": 8, "isBuyer": True, "isMaker": False, "qty": "0.01"}
    bybit = {"execPrice": "50000", "execFee": "0.001", "feeCurrency": fee_asset, "execTime": "1", "orderId": "7",
             "execId": "8", "side": "Buy", "execQty": "0.01", "isMaker": False}
    okx = {"fillPx": "50000", "fee": "-0.001", "feeCcy": fee_asset, "ts": "1", "ordId": "7", "tradeId": "8",
           "side": "buy", "fillSz": "0.01", "execType": "T"}
    fills = [fill_from_trade(binance, order, SPOT), bybit_fill(bybit, order, SPOT), okx_fill(okx, order, SPOT)]
    assert [(fill.fee, fill.fee_asset) for fill in fills] == [(0.001, "" if fee_asset == "USDT" else fee_asset)] * 3
    portfolio = Portfolio({SPOT.instrument_id: SPOT}, 1_000.0)
    want = {"BTC": 50.0, "USDT": 0.001, "BNB": 0.0}[fee_asset]  # no BNB price in this run
    assert [portfolio.fee_value(fill) for fill in fills] == pytest.approx([want] * 3)
