"""The Binance account emulators refuse what Binance refuses on the wire: numbers and client ids outside its legal range."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from tests.live.live_harness import INST, KEY, SECRET, USDM_INST
from tradebus.adapters.binance.private_emulator import BinanceFuturesEmulator, BinancePrivateEmulator
from tradebus.adapters.binance.trading import BinanceFuturesTrading, BinanceTrading
from tradebus.execution.live import VenueRejected

_SPOT = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.00100", "price": "50000.00"}
_USDM = {**_SPOT, "positionSide": "BOTH", "quantity": "0.001", "price": "50000.0"}


@pytest.mark.parametrize(
    ("field", "value"),
    [("quantity", "1e-05"), ("price", "5e4"), ("price", "-50000.00"), ("quantity", " 0.001"),
     ("newClientOrderId", "a" * 37), ("newClientOrderId", "my order#1")],
)
@pytest.mark.parametrize("market", ["spot", "usdm"])
async def test_a_number_in_exponent_form_or_an_illegal_client_id_is_refused_with_1100(market: str, field: str, value: str) -> None:
    spot = market == "spot"
    inst = INST if spot else USDM_INST
    emulator = (BinancePrivateEmulator if spot else BinanceFuturesEmulator)(KEY, SECRET, {inst.instrument_id: inst}, {"USDT": 100_000.0})
    await emulator.start()
    api = (BinanceTrading if spot else BinanceFuturesTrading)(emulator.rest_url, SecretStr(KEY), SecretStr(SECRET), {inst.instrument_id: inst})
    place = "private_post_order" if spot else "fapiprivate_post_order"
    base = (_SPOT if spot else _USDM) | {"newClientOrderId": "tbOk1"}
    try:
        await api._call(place, base)  # the well-formed order is taken
        with pytest.raises(VenueRejected, match=f"error -1100: .*Illegal characters found in parameter '{field}'"):
            await api._call(place, base | {"newClientOrderId": "tbBad2", field: value})
        assert [c for _, _, c in emulator.requests] == ["tbOk1"]  # the refused one never reached the account
    finally:
        await api.close()
        await emulator.stop()


@pytest.mark.parametrize("market", ["spot", "usdm"])
async def test_a_legal_client_id_with_characters_the_query_encodes_is_signed_and_taken(market: str) -> None:
    spot = market == "spot"
    inst = INST if spot else USDM_INST
    emulator = (BinancePrivateEmulator if spot else BinanceFuturesEmulator)(KEY, SECRET, {inst.instrument_id: inst}, {"USDT": 100_000.0})
    await emulator.start()
    api = (BinanceTrading if spot else BinanceFuturesTrading)(emulator.rest_url, SecretStr(KEY), SecretStr(SECRET), {inst.instrument_id: inst})
    try:  # Binance signs the query as sent, percent-encoded (":" and "/" are %3A and %2F)
        await api._call("private_post_order" if spot else "fapiprivate_post_order", (_SPOT if spot else _USDM) | {"newClientOrderId": "tb.a:b/c_d-e"})
        assert [c for _, _, c in emulator.requests] == ["tb.a:b/c_d-e"]
    finally:
        await api.close()
        await emulator.stop()
