"""The OKX and Bybit account emulators refuse what the venues refuse on the wire: numbers and client ids outside their form."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from tests.live.live_harness import KEY, SECRET
from tests.live.venue_kits import BYBIT, OKX, PASSPHRASE
from tradebus.adapters.bybit.trading import BybitTrading
from tradebus.adapters.okx.trading import OkxTrading
from tradebus.execution.live import VenueRejected

_OKX = {"instId": "BTC-USDT", "tdMode": "cash", "side": "buy", "ordType": "limit", "sz": "0.001", "px": "30000.0"}
_OKX_STOP = {"instId": "BTC-USDT", "tdMode": "cash", "side": "sell", "ordType": "conditional", "sz": "0.001",
             "slTriggerPx": "20000.0", "slTriggerPxType": "last", "slOrdPx": "-1"}
_BYBIT = {"category": "spot", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Limit", "qty": "0.001", "price": "30000.0",
          "timeInForce": "GTC"}


@pytest.mark.parametrize(
    ("field", "value"),
    [("sz", "1e-05"), ("px", "3e4"), ("px", "-30000.0"), ("sz", " 0.001"),
     ("clOrdId", "a" * 33), ("clOrdId", "tb-1"), ("clOrdId", "tb_1"), ("clOrdId", "tb\u00e91")],
)
async def test_okx_refuses_a_number_in_exponent_form_or_an_illegal_clordid_with_51000(field: str, value: str) -> None:
    async with OKX.emulator() as emulator:
        api = OkxTrading(emulator.rest_url, SecretStr(KEY), SecretStr(SECRET), SecretStr(PASSPHRASE), OKX.instruments(), 2.0)
        try:
            await api.call("private_post_trade_order", _OKX | {"clOrdId": "tbOk1"})  # the well-formed order is taken
            with pytest.raises(VenueRejected, match=f"error 51000: .*Parameter {field} error"):
                await api.call("private_post_trade_order", _OKX | {"clOrdId": "tbBad2", field: value})
        finally:
            await api.close()
    assert [c for _, _, c in emulator.requests] == ["tbOk1"]  # the refused one never reached the account


@pytest.mark.parametrize(("field", "value"), [("algoClOrdId", "stop-1"), ("slTriggerPx", "2e4"), ("slOrdPx", "-2")])
async def test_okx_refuses_a_stop_with_an_illegal_algoclordid_or_price_with_51000(field: str, value: str) -> None:
    async with OKX.emulator() as emulator:
        api = OkxTrading(emulator.rest_url, SecretStr(KEY), SecretStr(SECRET), SecretStr(PASSPHRASE), OKX.instruments(), 2.0)
        try:
            with pytest.raises(VenueRejected, match=f"error 51000: .*Parameter {field} error"):
                await api.call("private_post_trade_order_algo", _OKX_STOP | {"algoClOrdId": "tbStop1", field: value})
        finally:
            await api.close()
    assert emulator.requests == []


@pytest.mark.parametrize(
    ("field", "value"),
    [("qty", "1e-05"), ("price", "3e4"), ("price", "-30000.0"), ("orderLinkId", "a" * 37), ("orderLinkId", "my order#1"),
     ("orderLinkId", "tb.a:b")],
)
async def test_bybit_refuses_a_number_in_exponent_form_or_an_illegal_orderlinkid_with_10001(field: str, value: str) -> None:
    async with BYBIT.emulator() as emulator:
        api = BybitTrading(emulator.rest_url, SecretStr(KEY), SecretStr(SECRET), BYBIT.instruments(), 2.0)
        try:
            await api.call("private_post_v5_order_create", _BYBIT | {"orderLinkId": "tb-Ok_1" + "x" * 29})  # 36: taken
            with pytest.raises(VenueRejected, match=f"error 10001: .*params error: {field}"):
                await api.call("private_post_v5_order_create", _BYBIT | {"orderLinkId": "tbBad2", field: value})
        finally:
            await api.close()
    assert [c for _, _, c in emulator.requests] == ["tb-Ok_1" + "x" * 29]
